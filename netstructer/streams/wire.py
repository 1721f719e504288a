# -*- test-case-name: tests.test_streams_wire -*-
"""
The wire format of streams: protocol version 3, record types C{0x20} to
C{0x26} of L{EXTENSION_RECORD_RANGES<netstructer.channel.EXTENSION_RECORD_RANGES>}
C{["streams"]} (C{0x27} is reserved); docs/protocol.rst, "Streams".

Every body starts with the stream's ID, a C{u32}; integers are big-endian::

    OPEN    0x20  id u32 | flags u8 | [size u64, if flags & SIZED] | meta
    ACCEPT  0x21  id u32 | window u32 | offset u64 | [SHA-256 of the first
                  offset bytes, 32, if offset > 0]
    DATA    0x22  id u32 | offset u64 | payload (1 byte or more)
    END     0x23  id u32 | size u64 | SHA-256 of the whole stream (32)
    WINDOW  0x24  id u32 | increment u32
    DONE    0x25  id u32 | size u64 | SHA-256 of the whole stream (32)
    ABORT   0x26  id u32 | code u8 | reason (0 to 256 bytes of UTF-8)

The parsers (L{parseRecord}) check every field and raise
L{StreamProtocolError} naming what is wrong; the serializers check their
arguments and raise C{ValueError}.  Standard library only, so that the
blocking client can use it without Twisted.
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from netstructer.errors import StreamProtocolError

__all__ = [
    "DATA_HEADER_SIZE",
    "DIGEST_SIZE",
    "MAX_REASON",
    "MAX_STREAM_ID",
    "MAX_STREAM_SIZE",
    "MAX_WINDOW",
    "OPEN_RESUME",
    "OPEN_SIZED",
    "RECORD_NAMES",
    "STREAM_ABORT",
    "STREAM_ACCEPT",
    "STREAM_DATA",
    "STREAM_DONE",
    "STREAM_END",
    "STREAM_OPEN",
    "STREAM_WINDOW",
    "AbortCode",
    "StreamAbort",
    "StreamAccept",
    "StreamData",
    "StreamDone",
    "StreamEnd",
    "StreamOpen",
    "StreamRecord",
    "StreamWindow",
    "abortBody",
    "acceptBody",
    "dataHeader",
    "doneBody",
    "endBody",
    "openBody",
    "parseRecord",
    "recordBody",
    "windowBody",
]

STREAM_OPEN: Final = 0x20
"""Sender to receiver: a new stream, its size if known, and its meta."""
STREAM_ACCEPT: Final = 0x21
"""Receiver to sender: the stream is accepted; its first credit, and where
to start (a resumed stream)."""
STREAM_DATA: Final = 0x22
"""Sender to receiver: the stream's next bytes, at their offset."""
STREAM_END: Final = 0x23
"""Sender to receiver: the stream is over; its size and SHA-256."""
STREAM_WINDOW: Final = 0x24
"""Receiver to sender: more credit, in bytes."""
STREAM_DONE: Final = 0x25
"""Receiver to sender: the whole stream arrived and was kept; its size and
SHA-256 as the receiver computed them."""
STREAM_ABORT: Final = 0x26
"""Either side: the stream ends here, unfinished; a code and a reason."""

RECORD_NAMES: Final = {
    STREAM_OPEN: "OPEN",
    STREAM_ACCEPT: "ACCEPT",
    STREAM_DATA: "DATA",
    STREAM_END: "END",
    STREAM_WINDOW: "WINDOW",
    STREAM_DONE: "DONE",
    STREAM_ABORT: "ABORT",
}
"""The name of each streams record type, for messages and logs."""

OPEN_SIZED: Final = 0x01
"""OPEN flag: a C{u64} size follows the flags; the stream is exactly that long."""
OPEN_RESUME: Final = 0x02
"""OPEN flag: the sender can resume: the receiver may accept at an offset."""
_OPEN_FLAGS = OPEN_SIZED | OPEN_RESUME

MAX_STREAM_ID: Final = 2**32 - 1
"""The largest stream ID (IDs start at 1 on a client, 2 on a server)."""
MAX_WINDOW: Final = 2**31 - 1
"""The most credit a sender may hold for one stream, and the largest
window or increment a receiver may grant."""
MAX_STREAM_SIZE: Final = 2**64 - 1
"""The largest stream: sizes and offsets are C{u64}."""
MAX_REASON: Final = 256
"""The longest ABORT reason, in bytes of UTF-8."""
DIGEST_SIZE: Final = 32
"""The size of a SHA-256 digest."""

_ID = struct.Struct("!I")
_OPEN_HEAD = struct.Struct("!IB")
_SIZE = struct.Struct("!Q")
_ACCEPT_HEAD = struct.Struct("!IIQ")
_DATA_HEAD = struct.Struct("!IQ")
_TOTAL = struct.Struct("!IQ32s")
_WINDOW = struct.Struct("!II")
_ABORT_HEAD = struct.Struct("!IB")

DATA_HEADER_SIZE: Final = _DATA_HEAD.size
"""The bytes a DATA record's body holds before its payload."""


class AbortCode(enum.IntEnum):
    """
    Why a stream was aborted (the code of an ABORT record).
    """

    CANCELLED = 1
    """The sender gave the stream up."""
    REFUSED = 2
    """The receiver's application declined it."""
    TOO_MANY = 3
    """The receiver had as many streams open as it allows."""
    TOO_LARGE = 4
    """Larger than the receiver accepts, or than the sender announced."""
    INTEGRITY = 5
    """Bytes missing, out of order or damaged: sizes or SHA-256 differ."""
    TIMEOUT = 6
    """A side waited longer than its idle timeout on the other."""
    FAILED = 7
    """An application or its storage failed (a full disk, a failing source);
    also how an unknown code is read."""
    RESUME_MISMATCH = 8
    """The receiver's part is not the start of the sender's stream."""

    @classmethod
    def fromWire(cls, code: int) -> AbortCode:
        """
        @param code: A code from an ABORT record.
        @return: The matching code; an unknown one reads as L{FAILED}.
        """
        try:
            return cls(code)
        except ValueError:
            return cls.FAILED


@dataclass(frozen=True, slots=True)
class StreamOpen:
    """
    An OPEN record.

    @ivar streamID: The new stream's ID.
    @ivar size: Its exact size in bytes, or L{None} if the sender does not
        know it.
    @ivar resume: Whether the receiver may accept it at an offset.
    @ivar meta: Its meta: one encoded value (section 6 of the document).
    """

    streamID: int
    size: int | None
    resume: bool
    meta: bytes


@dataclass(frozen=True, slots=True)
class StreamAccept:
    """
    An ACCEPT record.

    @ivar streamID: The stream accepted.
    @ivar window: The sender's first credit, in bytes.
    @ivar offset: Where the sender starts: 0, or (resuming) the size of the
        part the receiver holds.
    @ivar prefixSHA256: The SHA-256 of that part, when C{offset > 0}.
    """

    streamID: int
    window: int
    offset: int
    prefixSHA256: bytes | None


@dataclass(frozen=True, slots=True)
class StreamData:
    """
    A DATA record.

    @ivar streamID: Its stream.
    @ivar offset: Where its payload starts in the stream.
    @ivar payload: The bytes (a view of the record's body: valid only while
        the record is handled).
    """

    streamID: int
    offset: int
    payload: memoryview


@dataclass(frozen=True, slots=True)
class StreamEnd:
    """
    An END record.

    @ivar streamID: The stream that ended.
    @ivar size: Its size in bytes.
    @ivar sha256: The SHA-256 of all of it.
    """

    streamID: int
    size: int
    sha256: bytes


@dataclass(frozen=True, slots=True)
class StreamWindow:
    """
    A WINDOW record.

    @ivar streamID: Its stream.
    @ivar increment: The credit added, in bytes.
    """

    streamID: int
    increment: int


@dataclass(frozen=True, slots=True)
class StreamDone:
    """
    A DONE record.

    @ivar streamID: The stream confirmed.
    @ivar size: The size the receiver received.
    @ivar sha256: The SHA-256 the receiver computed.
    """

    streamID: int
    size: int
    sha256: bytes


@dataclass(frozen=True, slots=True)
class StreamAbort:
    """
    An ABORT record.

    @ivar streamID: The stream aborted.
    @ivar code: Why.
    @ivar reason: For people; may be empty.
    """

    streamID: int
    code: AbortCode
    reason: str


StreamRecord = (
    StreamOpen | StreamAccept | StreamData | StreamEnd | StreamWindow | StreamDone | StreamAbort
)
"""Any parsed streams record."""


# Serializing.


def _checkID(streamID: int) -> None:
    if not 1 <= streamID <= MAX_STREAM_ID:
        raise ValueError(f"a stream ID is from 1 to {MAX_STREAM_ID}, not {streamID}")


def _checkSize(size: int, what: str) -> None:
    if not 0 <= size <= MAX_STREAM_SIZE:
        raise ValueError(f"a stream {what} is from 0 to {MAX_STREAM_SIZE}, not {size}")


def _checkDigest(digest: bytes) -> None:
    if len(digest) != DIGEST_SIZE:
        raise ValueError(f"a SHA-256 digest is {DIGEST_SIZE} bytes, not {len(digest)}")


def openBody(streamID: int, meta: bytes, size: int | None = None, resume: bool = False) -> bytes:
    """
    @param streamID: The new stream's ID.
    @param meta: Its meta, one encoded value (at least one byte).
    @param size: Its exact size, or L{None} if unknown.
    @param resume: Whether the receiver may accept it at an offset.
    @return: The body of an OPEN record.
    """
    _checkID(streamID)
    if not meta:
        raise ValueError("a stream's meta is one encoded value: at least one byte")
    flags = (OPEN_SIZED if size is not None else 0) | (OPEN_RESUME if resume else 0)
    if size is None:
        return _OPEN_HEAD.pack(streamID, flags) + meta
    _checkSize(size, "size")
    return _OPEN_HEAD.pack(streamID, flags) + _SIZE.pack(size) + meta


def acceptBody(
    streamID: int, window: int, offset: int = 0, prefixSHA256: bytes | None = None
) -> bytes:
    """
    @param streamID: The stream accepted.
    @param window: The sender's first credit, from 0 to L{MAX_WINDOW}.
    @param offset: Where the sender starts (0 unless resuming).
    @param prefixSHA256: The SHA-256 of the part held, iff C{offset > 0}.
    @return: The body of an ACCEPT record.
    """
    _checkID(streamID)
    if not 0 <= window <= MAX_WINDOW:
        raise ValueError(f"a window is from 0 to {MAX_WINDOW}, not {window}")
    _checkSize(offset, "offset")
    head = _ACCEPT_HEAD.pack(streamID, window, offset)
    if offset == 0:
        if prefixSHA256 is not None:
            raise ValueError("an ACCEPT at offset 0 carries no SHA-256")
        return head
    if prefixSHA256 is None:
        raise ValueError("an ACCEPT at an offset carries the SHA-256 of the part held")
    _checkDigest(prefixSHA256)
    return head + prefixSHA256


def dataHeader(streamID: int, offset: int) -> bytes:
    """
    @param streamID: The stream.
    @param offset: Where the payload starts in it.
    @return: What a DATA record's body holds before its payload.
    """
    _checkID(streamID)
    _checkSize(offset, "offset")
    return _DATA_HEAD.pack(streamID, offset)


def endBody(streamID: int, size: int, sha256: bytes) -> bytes:
    """
    @return: The body of an END record: the stream's size and SHA-256.
    """
    _checkID(streamID)
    _checkSize(size, "size")
    _checkDigest(sha256)
    return _TOTAL.pack(streamID, size, sha256)


def doneBody(streamID: int, size: int, sha256: bytes) -> bytes:
    """
    @return: The body of a DONE record: the size and SHA-256 received.
    """
    return endBody(streamID, size, sha256)


def windowBody(streamID: int, increment: int) -> bytes:
    """
    @param increment: The credit added, from 1 to L{MAX_WINDOW}.
    @return: The body of a WINDOW record.
    """
    _checkID(streamID)
    if not 1 <= increment <= MAX_WINDOW:
        raise ValueError(f"a window increment is from 1 to {MAX_WINDOW}, not {increment}")
    return _WINDOW.pack(streamID, increment)


def abortBody(streamID: int, code: AbortCode, reason: str = "") -> bytes:
    """
    @param code: Why.
    @param reason: For people: cut to L{MAX_REASON} bytes of UTF-8, never
        inside a character.  The peer sees it, so never put secrets in it.
    @return: The body of an ABORT record.
    """
    _checkID(streamID)
    encoded = reason.encode("utf-8")[:MAX_REASON]
    encoded = encoded.decode("utf-8", "ignore").encode("utf-8")
    return _ABORT_HEAD.pack(streamID, AbortCode(code)) + encoded


def recordBody(record: StreamRecord) -> tuple[int, bytes]:
    """
    Serialize a parsed record again (the inverse of L{parseRecord}).

    @return: Its record type and body.
    """
    if isinstance(record, StreamOpen):
        return STREAM_OPEN, openBody(record.streamID, record.meta, record.size, record.resume)
    if isinstance(record, StreamAccept):
        body = acceptBody(record.streamID, record.window, record.offset, record.prefixSHA256)
        return STREAM_ACCEPT, body
    if isinstance(record, StreamData):
        return STREAM_DATA, dataHeader(record.streamID, record.offset) + bytes(record.payload)
    if isinstance(record, StreamEnd):
        return STREAM_END, endBody(record.streamID, record.size, record.sha256)
    if isinstance(record, StreamWindow):
        return STREAM_WINDOW, windowBody(record.streamID, record.increment)
    if isinstance(record, StreamDone):
        return STREAM_DONE, doneBody(record.streamID, record.size, record.sha256)
    return STREAM_ABORT, abortBody(record.streamID, record.code, record.reason)


# Parsing.


def _malformed(recordType: int, problem: str) -> StreamProtocolError:
    return StreamProtocolError(
        f"the peer sent a malformed streams {RECORD_NAMES[recordType]} record: {problem}"
    )


def _readID(recordType: int, body: bytes | memoryview) -> int:
    streamID: int = _ID.unpack_from(body)[0]
    if streamID == 0:
        raise _malformed(recordType, "stream ID 0")
    return streamID


def _expectLength(recordType: int, body: bytes | memoryview, length: int) -> None:
    if len(body) != length:
        raise _malformed(recordType, f"{len(body)} bytes, not {length}")


def _parseOpen(body: bytes | memoryview) -> StreamOpen:
    if len(body) < _OPEN_HEAD.size + 1:
        raise _malformed(STREAM_OPEN, f"{len(body)} bytes, too short for an ID, flags and meta")
    streamID = _readID(STREAM_OPEN, body)
    flags = body[4]
    if flags & ~_OPEN_FLAGS:
        raise _malformed(STREAM_OPEN, f"unknown flags {flags:#04x}")
    offset = _OPEN_HEAD.size
    size = None
    if flags & OPEN_SIZED:
        if len(body) < offset + _SIZE.size + 1:
            raise _malformed(STREAM_OPEN, f"{len(body)} bytes, too short for a size and meta")
        (size,) = _SIZE.unpack_from(body, offset)
        offset += _SIZE.size
    return StreamOpen(streamID, size, bool(flags & OPEN_RESUME), bytes(body[offset:]))


def _parseAccept(body: bytes | memoryview) -> StreamAccept:
    if len(body) not in (_ACCEPT_HEAD.size, _ACCEPT_HEAD.size + DIGEST_SIZE):
        raise _malformed(
            STREAM_ACCEPT,
            f"{len(body)} bytes, not {_ACCEPT_HEAD.size} or {_ACCEPT_HEAD.size + DIGEST_SIZE}",
        )
    streamID = _readID(STREAM_ACCEPT, body)
    _, window, offset = _ACCEPT_HEAD.unpack_from(body)
    if window > MAX_WINDOW:
        raise _malformed(STREAM_ACCEPT, f"a window of {window}, over {MAX_WINDOW}")
    hasDigest = len(body) > _ACCEPT_HEAD.size
    if hasDigest != (offset > 0):
        raise _malformed(
            STREAM_ACCEPT, "a SHA-256 must follow an offset over 0, and only such an offset"
        )
    digest = bytes(body[_ACCEPT_HEAD.size :]) if hasDigest else None
    return StreamAccept(streamID, window, offset, digest)


def _parseData(body: bytes | memoryview) -> StreamData:
    if len(body) <= _DATA_HEAD.size:
        raise _malformed(STREAM_DATA, f"{len(body)} bytes: no payload")
    streamID = _readID(STREAM_DATA, body)
    _, offset = _DATA_HEAD.unpack_from(body)
    payload = memoryview(body)[_DATA_HEAD.size :]
    if offset + len(payload) > MAX_STREAM_SIZE:
        raise _malformed(STREAM_DATA, "its payload ends past the largest stream size")
    return StreamData(streamID, offset, payload)


def _parseTotal(recordType: int, body: bytes | memoryview) -> tuple[int, int, bytes]:
    _expectLength(recordType, body, _TOTAL.size)
    streamID = _readID(recordType, body)
    _, size, digest = _TOTAL.unpack_from(body)
    return streamID, size, digest


def _parseEnd(body: bytes | memoryview) -> StreamEnd:
    return StreamEnd(*_parseTotal(STREAM_END, body))


def _parseDone(body: bytes | memoryview) -> StreamDone:
    return StreamDone(*_parseTotal(STREAM_DONE, body))


def _parseWindow(body: bytes | memoryview) -> StreamWindow:
    _expectLength(STREAM_WINDOW, body, _WINDOW.size)
    streamID = _readID(STREAM_WINDOW, body)
    _, increment = _WINDOW.unpack_from(body)
    if not 1 <= increment <= MAX_WINDOW:
        raise _malformed(STREAM_WINDOW, f"an increment of {increment}, not 1 to {MAX_WINDOW}")
    return StreamWindow(streamID, increment)


def _parseAbort(body: bytes | memoryview) -> StreamAbort:
    if not _ABORT_HEAD.size <= len(body) <= _ABORT_HEAD.size + MAX_REASON:
        raise _malformed(
            STREAM_ABORT,
            f"{len(body)} bytes, not {_ABORT_HEAD.size} to {_ABORT_HEAD.size + MAX_REASON}",
        )
    streamID = _readID(STREAM_ABORT, body)
    try:
        reason = bytes(body[_ABORT_HEAD.size :]).decode("utf-8")
    except UnicodeDecodeError:
        raise _malformed(STREAM_ABORT, "its reason is not UTF-8") from None
    return StreamAbort(streamID, AbortCode.fromWire(body[4]), reason)


_PARSERS: dict[int, Callable[[bytes | memoryview], StreamRecord]] = {
    STREAM_OPEN: _parseOpen,
    STREAM_ACCEPT: _parseAccept,
    STREAM_DATA: _parseData,
    STREAM_END: _parseEnd,
    STREAM_WINDOW: _parseWindow,
    STREAM_DONE: _parseDone,
    STREAM_ABORT: _parseAbort,
}


def parseRecord(recordType: int, body: bytes | memoryview) -> StreamRecord:
    """
    Parse a streams record.

    @param recordType: Its type byte.
    @param body: Its body.  A DATA record's payload is a view of it.
    @return: The record.
    @raise StreamProtocolError: The type is not a streams record type (the
        reserved C{0x27} included), or the body is malformed.
    """
    parser = _PARSERS.get(recordType)
    if parser is None:
        raise StreamProtocolError(
            f"the peer sent a record of type {recordType:#04x}, which streams do not use"
        )
    if len(body) < _ID.size:
        raise _malformed(recordType, f"{len(body)} bytes, too short for a stream ID")
    return parser(body)
