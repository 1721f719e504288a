# -*- test-case-name: tests.test_relay -*-
"""
The wire format of the relay records (protocol version 2, types
C{0x10}-C{0x15} of
L{EXTENSION_RECORD_RANGES<netstructer.channel.EXTENSION_RECORD_RANGES>}
C{["relay"]}; docs/protocol.rst, "Relay records"), and L{RelayedValue}.

Standard library only, so that the blocking client can use it without
importing Twisted.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass

from netstructer.errors import (
    NoSuchSession,
    RecipientBusy,
    RelayError,
    RelayRefused,
    RemoteProtocolError,
)

__all__ = [
    "DEFAULT_RELAY_QUEUE",
    "MAX_NAME_LENGTH",
    "MAX_PENDING_ERRORS",
    "RELAY_DELIVER",
    "RELAY_ERROR",
    "RELAY_PUBLISH",
    "RELAY_SEND",
    "RELAY_SUBSCRIBE",
    "RELAY_UNSUBSCRIBE",
    "RelayErrorCode",
    "RelayOp",
    "RelayRequest",
    "RelayedValue",
    "checkName",
    "deliverBody",
    "errorBody",
    "errorFor",
    "parseDeliver",
    "parseError",
    "parseRequest",
    "requestBody",
]

RELAY_SEND = 0x10
"""Client to server: relay a value to the session of a name."""
RELAY_PUBLISH = 0x11
"""Client to server: relay a value to every subscriber of a topic."""
RELAY_SUBSCRIBE = 0x12
"""Client to server: receive what is published to a topic from now on."""
RELAY_UNSUBSCRIBE = 0x13
"""Client to server: stop receiving a topic."""
RELAY_DELIVER = 0x14
"""Server to client: a relayed value, with its sender's name (and topic)."""
RELAY_ERROR = 0x15
"""Server to client: a request of this client failed (names what and why)."""

MAX_NAME_LENGTH = 255
"""The longest name or topic, in bytes of UTF-8."""

DEFAULT_RELAY_QUEUE = 1024
"""The default bound of each recipient's queue, in values."""

MAX_PENDING_ERRORS = 1024
"""The most kinds of failure a server counts for a client whose transport
is not taking writes (see L{RelayEndpoint.relayFailed
<netstructer.relay.RelayEndpoint.relayFailed>})."""

_U8 = struct.Struct("!B")
_U32 = struct.Struct("!I")


class RelayOp(enum.IntEnum):
    """
    The request a relay error answers (carried in a C{RELAY_ERROR} record).
    """

    SEND = 1
    """A value sent to a session by name."""
    PUBLISH = 2
    """A value published to a topic."""
    SUBSCRIBE = 3
    """A subscription to a topic."""
    UNSUBSCRIBE = 4
    """The end of a subscription."""


class RelayErrorCode(enum.IntEnum):
    """
    Why a relay request failed (carried in a C{RELAY_ERROR} record).
    """

    NO_SUCH_SESSION = 1
    """No session holds the name (L{NoSuchSession})."""
    REFUSED = 2
    """Relay is off, or the policy refused it (L{RelayRefused})."""
    BUSY = 3
    """The recipient's queue was full (L{RecipientBusy})."""


_REQUEST_OPS = {
    RELAY_SEND: RelayOp.SEND,
    RELAY_PUBLISH: RelayOp.PUBLISH,
    RELAY_SUBSCRIBE: RelayOp.SUBSCRIBE,
    RELAY_UNSUBSCRIBE: RelayOp.UNSUBSCRIBE,
}
_OP_TYPES = {op: recordType for recordType, op in _REQUEST_OPS.items()}
_ERROR_CLASSES: dict[RelayErrorCode, type[RelayError]] = {
    RelayErrorCode.NO_SUCH_SESSION: NoSuchSession,
    RelayErrorCode.REFUSED: RelayRefused,
    RelayErrorCode.BUSY: RecipientBusy,
}
_ERROR_CODES = {cls: code for code, cls in _ERROR_CLASSES.items()}


@dataclass(frozen=True)
class RelayedValue:
    """
    A value relayed by the server from another client (or published by the
    server itself).  It unpacks as C{(sender, value)}.

    @ivar sender: The name of the sender's key; L{None} for a value the
        server published.
    @ivar value: The decoded value.
    @ivar topic: The topic it was published to, or L{None} for a value sent
        to this client by name.
    """

    sender: str | None
    value: object
    topic: str | None = None

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter((self.sender, self.value))


# The wire format.


def checkName(name: str, what: str = "name") -> bytes:
    """
    Check a recipient's name or a topic and encode it.

    @param name: The name.
    @param what: What it is, for the message (C{"name"}, C{"topic"}).
    @return: Its UTF-8 encoding.
    @raise ValueError: It is empty, not text, or longer than
        L{MAX_NAME_LENGTH} bytes.
    """
    if not isinstance(name, str):
        raise TypeError(f"a relay {what} must be text, not {type(name).__name__}")
    encoded = name.encode("utf-8")
    if not encoded or len(encoded) > MAX_NAME_LENGTH:
        raise ValueError(
            f"a relay {what} must be 1 to {MAX_NAME_LENGTH} bytes of UTF-8, "
            f"not {len(encoded)}: {name[:40]!r}"
        )
    return encoded


def _name(text: str | None) -> bytes:
    encoded = b"" if text is None else text.encode("utf-8")
    return _U8.pack(len(encoded)) + encoded


def _readName(body: bytes, offset: int, what: str) -> tuple[str, int]:
    if offset >= len(body):
        raise RemoteProtocolError(f"a relay record ended before its {what}")
    length = body[offset]
    end = offset + 1 + length
    if end > len(body):
        raise RemoteProtocolError(f"a relay record's {what} runs past its end")
    try:
        return body[offset + 1 : end].decode("utf-8"), end
    except UnicodeDecodeError:
        raise RemoteProtocolError(f"a relay record's {what} is not UTF-8") from None


@dataclass(frozen=True)
class RelayRequest:
    """
    A client's relay request, parsed.

    @ivar op: Which request.
    @ivar name: The recipient's name or the topic.
    @ivar value: The encoded value (C{b""} for L{RelayOp.SUBSCRIBE} and
        L{RelayOp.UNSUBSCRIBE}).
    """

    op: RelayOp
    name: str
    value: bytes


def requestBody(name: str, value: bytes = b"", what: str = "name") -> bytes:
    """
    The body of a C{RELAY_SEND}, C{RELAY_PUBLISH}, C{RELAY_SUBSCRIBE} or
    C{RELAY_UNSUBSCRIBE} record: the name's length (one byte), the name
    (UTF-8), then the encoded value, if any.

    @param name: The recipient's name or the topic.
    @param value: The value, encoded by L{netstructer.values}.
    @param what: What C{name} is, for error messages.
    @raise ValueError: The name is empty or too long.
    """
    encoded = checkName(name, what)
    return _U8.pack(len(encoded)) + encoded + value


def requestType(op: RelayOp) -> int:
    """
    @return: The record type of a request.
    """
    return _OP_TYPES[op]


def parseRequest(recordType: int, body: bytes) -> RelayRequest:
    """
    Parse a client's relay request.

    @raise RemoteProtocolError: The record is not a request, its name is
        empty or malformed, or a subscription carries a value.
    """
    op = _REQUEST_OPS.get(recordType)
    if op is None:
        raise RemoteProtocolError(
            f"a client sent relay record type {recordType:#04x}, which only a server sends"
        )
    name, offset = _readName(body, 0, "name")
    if not name:
        raise RemoteProtocolError("a relay request names no recipient or topic")
    value = body[offset:]
    if op in (RelayOp.SEND, RelayOp.PUBLISH):
        if not value:
            raise RemoteProtocolError("a relay request carries no value")
    elif value:
        raise RemoteProtocolError("a relay subscription carries trailing bytes")
    return RelayRequest(op, name, value)


def deliverBody(sender: str | None, topic: str | None, value: bytes) -> bytes:
    """
    The body of a C{RELAY_DELIVER} record: the sender's name (length byte,
    UTF-8; empty for the server), the topic (likewise; empty for a value
    sent by name), then the encoded value.
    """
    return _name(sender) + _name(topic) + value


def parseDeliver(body: bytes) -> tuple[str | None, str | None, bytes]:
    """
    Parse a C{RELAY_DELIVER} record.

    @return: C{(sender, topic, encoded value)}; L{None} for an empty sender
        or topic.
    @raise RemoteProtocolError: The record is malformed.
    """
    sender, offset = _readName(body, 0, "sender")
    topic, offset = _readName(body, offset, "topic")
    value = body[offset:]
    if not value:
        raise RemoteProtocolError("a relayed value record carries no value")
    return sender or None, topic or None, value


def errorBody(code: RelayErrorCode, op: RelayOp, name: str, message: str, count: int = 1) -> bytes:
    """
    The body of a C{RELAY_ERROR} record: the code (one byte), the request
    (one byte), how many requests failed so (C{u32}, at least 1), the name
    or topic (length byte, UTF-8), then the message (UTF-8, to the end).
    """
    return (
        _U8.pack(code)
        + _U8.pack(op)
        + _U32.pack(min(max(count, 1), 0xFFFFFFFF))
        + _name(name)
        + message.encode("utf-8")
    )


def errorFor(error: RelayError, op: RelayOp) -> bytes:
    """
    @return: The body of the C{RELAY_ERROR} record reporting C{error}
        (and its C{count}).
    """
    message = str(error.args[0]) if error.args else ""
    return errorBody(_ERROR_CODES[type(error)], op, error.name, message, error.count)


def parseError(body: bytes) -> tuple[RelayOp, RelayError]:
    """
    Parse a C{RELAY_ERROR} record.

    @return: The request it answers and the error to raise (with its
        C{count}).
    @raise RemoteProtocolError: The record is malformed.
    """
    if len(body) < 6:
        raise RemoteProtocolError("a relay error record is too short")
    try:
        code = RelayErrorCode(body[0])
        op = RelayOp(body[1])
    except ValueError:
        raise RemoteProtocolError(
            f"a relay error record has an unknown code {body[0]} or request {body[1]}"
        ) from None
    (count,) = _U32.unpack_from(body, 2)
    if count == 0:
        raise RemoteProtocolError("a relay error record counts no failed request")
    name, offset = _readName(body, 6, "name")
    try:
        message = body[offset:].decode("utf-8")
    except UnicodeDecodeError:
        raise RemoteProtocolError("a relay error record's message is not UTF-8") from None
    return op, _ERROR_CLASSES[code](message, name, count)
