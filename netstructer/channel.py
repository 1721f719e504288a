# -*- test-case-name: tests.test_channel -*-
"""
The sans-IO NetStructer connection: frame payloads in, events out; values in,
frame payloads out.

A L{Channel} is one end of one connection.  It does no I/O: the adapter (the
Twisted L{netstructer.protocol.BridgeProtocol}, or the blocking client) owns
the socket and the 4-byte big-endian length prefix, and moves frame payloads
between the socket and the channel::

    channel = Channel(Role.CLIENT, key)
    for frame in channel.framesToSend():    # the client's hello
        write(frame)
    ...
    event = channel.receiveFrame(payload)   # one frame in, at most one event out
    for frame in channel.framesToSend():    # handshake replies, pongs, close replies
        write(frame)
    write(channel.sendValue(value))         # requests return the frame to write
    write(channel.sendEncodedValues([channel.encodeValue(v) for v in values]))

Requests (L{Channel.sendValue}, L{Channel.sendEncodedValues}, L{Channel.ping},
L{Channel.close}) return the frame payload to write.  One record costs one
AEAD operation and one frame whatever it holds, so an adapter sending many
small values batches them with L{Channel.sendEncodedValues} (a VALUES record,
which the peer's channel reports as one L{ValuesReceived} event).

Large values travel without fresh buffers: L{Channel.sealBuffer} seals a
value into an output buffer the channel reuses (a C{bytes}, C{bytearray} or
C{memoryview} is encrypted from where it lies, its msgpack header beside it,
never joined to it first), returning a view valid until the next
L{Channel.sealBuffer}; a received record over 64 KiB is decrypted into a
plaintext buffer the channel reuses.  L{Channel.releaseBuffers} drops both
when a connection goes idle.

Frames the channel must send in answer to what it received (handshake
messages, the key confirmation, pongs, the reply to a close) are queued and
handed out by L{Channel.framesToSend}, which the adapter calls after
constructing the channel and after every L{Channel.receiveFrame},
I{including} one that raised: a server that refuses a handshake queues a
rejection for the peer before raising.

Errors follow h11.  L{Channel.receiveFrame} raises only
L{RemoteProtocolError} subclasses (L{HandshakeError}, L{AuthenticationError},
L{IntegrityError}, L{DecodeError}, or itself) and any of them leaves
the channel failed for good; frame lengths are the adapter's to bound, with
L{Channel.maxFrameSize}.  Requests raise L{EncodeError} or L{BufferDataError}
I{before} anything is produced, leaving the channel usable, or
L{LocalProtocolError} when the channel cannot send.

The states are small classes, one per state, and a transition replaces
C{Channel._state}.  Session keys and nonce counters exist only inside the
established states.  (A typed Automat machine was measured at about 0.8 us per
input, a fifth of a small record's whole cost, so the record hot path uses
plain method dispatch; the protocol's connection lifecycle, whose inputs are
rare, is where the Automat machine lives.)

The wire format is specified byte for byte in C{docs/protocol.rst}.
"""

from __future__ import annotations

import functools
import hashlib
import os
import struct
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Final, Protocol

from cryptography.exceptions import InvalidTag
from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from netstructer._crypto import (
    TAG_SIZE,
    CipherState,
    NNpsk0Template,
    _NonceExhaustedError,
    generateEphemeral,
)
from netstructer.errors import (
    AuthenticationError,
    BufferDataError,
    ChannelClosedError,
    HandshakeError,
    IntegrityError,
    LocalProtocolError,
    PeerVersionError,
    RemoteProtocolError,
    TruncationError,
)
from netstructer.keys import KeyIdentity, Keyring, asKeyring
from netstructer.values import DEFAULT_LIMITS, Decoder, Encoder, Limits

__all__ = [
    "BATCH_SIZE",
    "EXTENSION_RECORD_RANGES",
    "EXTENSION_VERSIONS",
    "HANDSHAKE_MAX_FRAME",
    "MAGIC",
    "MAX_BATCH_BODY",
    "MAX_BATCH_VALUES",
    "MIN_PROTOCOL_VERSION",
    "PROTOCOL_VERSION",
    "SUITES",
    "Channel",
    "CloseCode",
    "CloseReceived",
    "Event",
    "HandshakeCompleted",
    "PingReceived",
    "PongReceived",
    "RecordReceived",
    "Role",
    "ValueReceived",
    "ValuesReceived",
    "checkOptions",
    "frameOverhead",
    "warmKeyring",
]

MAGIC: Final = b"NSTR"
"""The first four bytes of every client hello."""

PROTOCOL_VERSION: Final = 3
"""The highest protocol version this implementation speaks: a client offers
it in its hello, and a server answers with the lower of it and the client's."""

MIN_PROTOCOL_VERSION: Final = 1
"""The lowest protocol version this implementation speaks.  Version 1 carries
values; version 2 adds the extension records of the relay, version 3 those
of streams (L{EXTENSION_VERSIONS})."""

EXTENSION_RECORD_RANGES: Final = {
    "relay": range(0x10, 0x18),
    "streams": range(0x20, 0x28),
}
"""
The extension record types, by the capability that owns them.  The channel
seals and opens them like any record and hands their bodies to the adapter
(L{RecordReceived}); the capability's own sans-IO module gives them meaning.
A session carries a capability's records only from the protocol version
that added them (L{EXTENSION_VERSIONS}).
"""

EXTENSION_VERSIONS: Final = {"relay": 2, "streams": 3}
"""
The protocol version that added each capability's records: a session
negotiated at a lower version never carries them (the channel refuses to
send one with L{PeerVersionError}, and fails on receiving one).
"""

_EXTENSION_OWNER = {
    recordType: name for name, types in EXTENSION_RECORD_RANGES.items() for recordType in types
}

HANDSHAKE_MAX_FRAME: Final = 512
"""The largest frame either side accepts before the handshake completes."""

MAX_VALUE_SIZE_LIMIT: Final = 2**31 - 2
"""The largest maximum value size a side may advertise: just under 2 GiB,
since one AEAD call seals at most 2**31 - 1 bytes (the value and its record
type byte)."""

_MIN_RECORD_BODY: Final = 2 + 256
"""The largest control record body (a close with the longest reason): frame
limits never go below what it needs, however small the value limit."""

_PROLOGUE_LABEL = b"NetStructer"

# Suite identifiers on the wire, and the names users give them.
_SUITE_NOISE_AESGCM = 1
_SUITE_NOISE_CHACHAPOLY = 2
_SUITE_FERNET = 3
_NOISE_CIPHER_OF_SUITE = {_SUITE_NOISE_AESGCM: "AESGCM", _SUITE_NOISE_CHACHAPOLY: "ChaChaPoly"}
_SUITE_OF_NOISE_CIPHER = {cipher: suiteID for suiteID, cipher in _NOISE_CIPHER_OF_SUITE.items()}
_SUITE_NAMES = {
    _SUITE_NOISE_AESGCM: "noise (AESGCM)",
    _SUITE_NOISE_CHACHAPOLY: "noise (ChaChaPoly)",
    _SUITE_FERNET: "fernet",
}
SUITES: Final = ("noise", "fernet")
"""The suite families a channel can be configured with."""

# Server reply status bytes and rejection reasons.
_REPLY_ACCEPT = 0x00
_REPLY_REJECT = 0x01
_REJECT_VERSION = 1
_REJECT_SUITE = 2
_REJECT_AUTHENTICATION = 3
_REJECT_MALFORMED = 4
_REJECT_REASONS = {
    _REJECT_VERSION: "unsupported protocol version",
    _REJECT_SUITE: "unsupported suite",
    _REJECT_AUTHENTICATION: "authentication failed",
    _REJECT_MALFORMED: "malformed handshake",
}

# Record types: the first byte of every record's plaintext.
_RECORD_VALUE = 0x01
_RECORD_PING = 0x02
_RECORD_PONG = 0x03
_RECORD_CLOSE = 0x04
_RECORD_CONFIRM = 0x05
_RECORD_VALUES = 0x06
_VALUE_TYPE_BYTE = b"\x01"

MAX_BATCH_VALUES: Final = 16384
"""The most values one VALUES record may hold, whatever the limits."""

MAX_BATCH_BODY: Final = 65536
"""
The longest body of a VALUES record, whatever the limits.  All of a record's
values are decoded before the first is delivered, so this bounds the memory
one record can make a receiver spend beyond what its values alone may:
a long batch could otherwise hold many values each just under C{maxObjects}.
"""

BATCH_SIZE: Final = 16 * 1024
"""
The most encoded bytes this side puts in one VALUES record (its body, array
header included), less if the peer accepts smaller values.  Large enough that
sealing and framing cost little per value; small enough that the first value
of a batch never waits long behind the others, and that a receiver's
C{maxObjects} check never needs its slow path for a batch.
"""

_MAX_PING_DATA = 64
_MAX_CLOSE_REASON = 256

_U32 = struct.Struct("!I")
_CLOSE_HEAD = struct.Struct("!BH")
_FERNET_RECORD_HEAD = struct.Struct("!32sBQB")
_FERNET_SEQUENCE_HEAD = struct.Struct("!32sBQ")
_FERNET_NONCE_SIZE = 16


class Role(Enum):
    """
    Which end of the connection a channel is.
    """

    CLIENT = "client"
    """The end that connects and sends the hello."""
    SERVER = "server"
    """The end that accepts the connection and answers the hello."""


class CloseCode(int, Enum):
    """
    The close codes that may cross the wire, in a close record.  An
    application closing a session picks one (a server's handler failing
    closes its session with L{INTERNAL_ERROR} and a generic reason: details
    stay in the server's log).  A protocol failure sends no close record at
    all: the connection is dropped, and the peer sees a truncation.
    """

    NORMAL = 0
    """The session is done: nothing went wrong."""
    GOING_AWAY = 1
    """The side is shutting down (a server stopping)."""
    PROTOCOL_ERROR = 2
    """The peer broke the protocol in a way that still allows a close."""
    TOO_BIG = 3
    """The peer sent a value larger than this side accepts."""
    IDLE_TIMEOUT = 4
    """No value moved for the idle timeout."""
    INTERNAL_ERROR = 5
    """This side failed (a server's handler raised); details stay in its log."""
    POLICY = 6
    """A policy ended the session (its key was revoked)."""

    @classmethod
    def fromWire(cls, code: int) -> CloseCode:
        """
        Map a received code to a known one; unknown codes read as
        L{INTERNAL_ERROR}.

        @param code: The code from a close record.
        @return: The matching L{CloseCode}.
        """
        try:
            return cls(code)
        except ValueError:
            return cls.INTERNAL_ERROR


@dataclass(frozen=True, slots=True)
class HandshakeCompleted:
    """
    The handshake completed: the peer holds the key, keys are fresh, and values
    may flow.

    @ivar suite: The suite in use (C{"noise (AESGCM)"}, C{"noise (ChaChaPoly)"}
        or C{"fernet"}).
    @ivar peerMaxValueSize: The largest encoded value the peer accepts.
    """

    suite: str
    peerMaxValueSize: int
    version: int = MIN_PROTOCOL_VERSION


@dataclass(slots=True)
class ValueReceived:
    """
    A value arrived.  (Not frozen, unlike the other events: one is made for
    every value, and a frozen dataclass's constructor costs three times as
    much.)

    @ivar value: The decoded value.
    @ivar size: The size of its encoding in bytes.
    """

    value: object
    size: int


@dataclass(slots=True)
class ValuesReceived:
    """
    Several values arrived in one record, in the order they were sent.

    @ivar values: The decoded values (at least two).
    @ivar size: The size of the record's body in bytes: the values'
        encodings and an array header.
    """

    values: list[object]
    size: int


@dataclass(frozen=True, slots=True)
class PingReceived:
    """
    The peer sent a ping; the pong is already queued in
    L{Channel.framesToSend}.

    @ivar data: The ping's opaque data.
    """

    data: bytes


@dataclass(frozen=True, slots=True)
class PongReceived:
    """
    The peer answered a ping.

    @ivar data: The opaque data of the ping being answered.
    """

    data: bytes


@dataclass(frozen=True, slots=True)
class CloseReceived:
    """
    The peer closed the channel with an authenticated close record.  If this
    side had not closed yet, its reply is queued in L{Channel.framesToSend};
    either way the adapter may now close the transport once its writes drain.

    @ivar code: Why the peer closed.
    @ivar reason: The peer's human-readable reason (may be empty).
    """

    code: CloseCode
    reason: str


@dataclass(frozen=True, slots=True)
class RecordReceived:
    """
    An extension record arrived (protocol version 2 or later, as
    L{EXTENSION_VERSIONS} says): one of the types in
    L{EXTENSION_RECORD_RANGES}, for the capability that owns it.

    @ivar recordType: The record's type byte.
    @ivar body: The record's body, authenticated and decrypted.
    """

    recordType: int
    body: bytes


Event = (
    HandshakeCompleted
    | ValueReceived
    | ValuesReceived
    | PingReceived
    | PongReceived
    | CloseReceived
    | RecordReceived
)
"""Every event L{Channel.receiveFrame} may return."""


def frameOverhead(suite: str, maxValueSize: int) -> int:
    """
    The largest frame payload a record carrying a value of C{maxValueSize}
    encoded bytes can need, for sizing the framer's C{MAX_LENGTH}.  The bound
    is never below what the largest control record (a close with the longest
    reason) needs, however small C{maxValueSize} is.

    @param suite: C{"noise"} or C{"fernet"}.
    @param maxValueSize: The largest encoded value.
    @return: The frame size bound in bytes.
    """
    maxValueSize = max(maxValueSize, _MIN_RECORD_BODY)
    if suite == "fernet":
        plaintext = _FERNET_RECORD_HEAD.size + maxValueSize
        # version, timestamp, IV, CBC-padded ciphertext, HMAC; then base64.
        raw = 1 + 8 + 16 + (plaintext // 16 + 1) * 16 + 32
        return 4 * ((raw + 2) // 3)
    return 1 + maxValueSize + TAG_SIZE


@functools.cache
def _suiteIDs(families: tuple[str, ...]) -> frozenset[int]:
    """
    @param families: Suite families (C{"noise"}, C{"fernet"}).
    @return: The suite IDs of the hello they accept.
    @raise ValueError: An unknown family.
    """
    return frozenset(
        suiteID
        for family in map(_checkSuite, families)
        for suiteID in (
            (_SUITE_FERNET,)
            if family == "fernet"
            else (_SUITE_NOISE_AESGCM, _SUITE_NOISE_CHACHAPOLY)
        )
    )


def _checkSuite(suite: str) -> str:
    if suite not in SUITES:
        raise ValueError(f"unknown suite {suite!r}: choose one of {', '.join(SUITES)}")
    return suite


def checkOptions(
    *,
    suite: str,
    cipher: str,
    acceptSuites: Sequence[str] | None,
    limits: Limits,
    fernetTTL: float | None,
    protocolVersion: int = PROTOCOL_VERSION,
) -> None:
    """
    Check a channel's options, as L{Channel} does, without making one (for
    configurations checked long before their first connection).

    @raise ValueError: An unknown suite or cipher, a maximum value size over
        L{MAX_VALUE_SIZE_LIMIT}, a Fernet TTL under a second, or a protocol
        version this implementation lacks.
    """
    if not MIN_PROTOCOL_VERSION <= protocolVersion <= PROTOCOL_VERSION:
        raise ValueError(
            f"protocolVersion must be from {MIN_PROTOCOL_VERSION} to {PROTOCOL_VERSION}, "
            f"not {protocolVersion}"
        )
    _checkSuite(suite)
    for accepted in acceptSuites or ():
        _checkSuite(accepted)
    if cipher not in _SUITE_OF_NOISE_CIPHER:
        raise ValueError(
            f"unknown cipher {cipher!r}: choose one of {', '.join(_SUITE_OF_NOISE_CIPHER)}"
        )
    if limits.maxSize > MAX_VALUE_SIZE_LIMIT:
        raise ValueError(f"limits.maxSize may be at most {MAX_VALUE_SIZE_LIMIT} (just under 2 GiB)")
    if fernetTTL is not None and not fernetTTL >= 1:
        raise ValueError("fernetTTL must be at least 1 second (Fernet counts whole seconds)")


class _State(Protocol):
    """
    What every channel state answers.  Each state implements only what is legal
    in it; the base behaviour (L{_Refusing}) refuses everything else.
    """

    def receiveFrame(self, frame: bytes | memoryview) -> Event | None: ...

    def sendValue(self, value: object) -> bytes: ...

    def sendEncoded(self, encoded: bytes) -> bytes: ...

    def sendEncodedValues(self, encodedValues: Sequence[bytes]) -> bytes: ...

    def sendRecord(self, recordType: int, body: bytes) -> bytes: ...

    def sealBuffer(self, value: object, framed: bool) -> memoryview: ...

    def sealRecordParts(self, recordType: int, head: bytes, payload: _Bytes) -> memoryview: ...

    def releaseBuffers(self) -> None: ...

    def ping(self, data: bytes) -> bytes: ...

    def close(self, code: CloseCode, reason: str) -> bytes: ...

    def connectionLost(self) -> None: ...


class _Refusing:
    """
    Behaviour shared by states in which values cannot flow yet or any more.

    @ivar _channel: The channel this state belongs to.
    @ivar _why: Why nothing can be sent, for error messages.
    """

    _why = "the handshake has not completed"

    def __init__(self, channel: Channel) -> None:
        self._channel = channel

    def receiveFrame(self, frame: bytes | memoryview) -> Event | None:
        raise LocalProtocolError(f"cannot receive: {self._why}")

    def sendValue(self, value: object) -> bytes:
        raise ChannelClosedError(f"cannot send a value: {self._why}")

    def sendRecord(self, recordType: int, body: bytes) -> bytes:
        raise ChannelClosedError(f"cannot send a record: {self._why}")

    def sendEncoded(self, encoded: bytes) -> bytes:
        raise ChannelClosedError(f"cannot send a value: {self._why}")

    def sendEncodedValues(self, encodedValues: Sequence[bytes]) -> bytes:
        raise ChannelClosedError(f"cannot send values: {self._why}")

    def sealBuffer(self, value: object, framed: bool) -> memoryview:
        raise ChannelClosedError(f"cannot send a value: {self._why}")

    def sealRecordParts(self, recordType: int, head: bytes, payload: _Bytes) -> memoryview:
        raise ChannelClosedError(f"cannot send a record: {self._why}")

    def releaseBuffers(self) -> None:
        return None

    def ping(self, data: bytes) -> bytes:
        raise ChannelClosedError(f"cannot send a ping: {self._why}")

    def close(self, code: CloseCode, reason: str) -> bytes:
        raise ChannelClosedError(f"cannot close: {self._why}")

    def connectionLost(self) -> None:
        self._channel._state = _Failed(self._channel, "the connection was lost")
        raise HandshakeError(
            "the connection closed during the handshake; the peer may not speak "
            "NetStructer, or may be refusing connections (check its logs)"
        )


class _Failed(_Refusing):
    """
    A protocol error happened: nothing more may be sent or received.
    """

    def __init__(self, channel: Channel, why: str) -> None:
        super().__init__(channel)
        self._why = f"the channel failed ({why})"

    def receiveFrame(self, frame: bytes | memoryview) -> Event | None:
        raise LocalProtocolError(f"cannot receive: {self._why}")

    def connectionLost(self) -> None:
        return None


class _Closed(_Refusing):
    """
    Both close records have been exchanged: the channel ended cleanly.
    """

    _why = "the channel is closed"

    def receiveFrame(self, frame: bytes | memoryview) -> Event | None:
        raise RemoteProtocolError("the peer sent a record after both sides closed")

    def connectionLost(self) -> None:
        return None


class _ClientAwaitingReply(_Refusing):
    """
    The client sent its hello and waits for the server's reply.
    """

    def __init__(self, channel: Channel, handshake: _ClientHandshake) -> None:
        super().__init__(channel)
        self._handshake = handshake

    def receiveFrame(self, frame: bytes | memoryview) -> Event | None:
        frame = bytes(frame)
        if not frame:
            raise HandshakeError("the server's handshake reply is empty")
        if frame[0] == _REPLY_REJECT:
            raise _rejectionError(frame, self._handshake.suiteID, self._channel._protocolVersion)
        if frame[0] != _REPLY_ACCEPT:
            raise HandshakeError(
                f"the server's handshake reply has an unknown status byte {frame[0]}; "
                "it may not speak NetStructer"
            )
        sender, receiver, peerMaxValueSize, version = self._handshake.readReply(frame[1:])
        channel = self._channel
        channel._state = _Established(channel, sender, receiver, peerMaxValueSize, version)
        channel._outgoing.append(sender.seal(_RECORD_CONFIRM, b""))
        return HandshakeCompleted(_SUITE_NAMES[self._handshake.suiteID], peerMaxValueSize, version)


class _ServerAwaitingHello(_Refusing):
    """
    The server waits for the client's hello.

    @ivar _ephemeral: The ephemeral key this connection's Noise reply will
        use, once L{prepare} has made it; it belongs to this connection
        alone and is handed over (and forgotten here) when the hello arrives.
    """

    def __init__(self, channel: Channel) -> None:
        super().__init__(channel)
        self._ephemeral: X25519PrivateKey | None = None

    def prepare(self) -> None:
        """
        Make the ephemeral key now, if the reply may be a Noise one, rather
        than once the hello has arrived: key generation is the costliest step
        that does not depend on the client, and done here it overlaps with the
        client's own key generation instead of delaying the reply.
        """
        channel = self._channel
        if self._ephemeral is None and not channel._acceptedSuiteIDs <= {_SUITE_FERNET}:
            self._ephemeral = channel._newEphemeral()

    def receiveFrame(self, frame: bytes | memoryview) -> Event | None:
        channel = self._channel
        # Whatever the hello holds, this key serves no other handshake.
        ephemeral, self._ephemeral = self._ephemeral, None
        frame = bytes(frame)
        if len(frame) < 6 or frame[:4] != MAGIC:
            channel._reject(_REJECT_MALFORMED)
            raise HandshakeError(
                "the client's first frame is not a NetStructer hello; it may speak another protocol"
            )
        version, suiteID = frame[4], frame[5]
        # From version 2 on, a server answers any newer client with its own
        # version; a server limited to version 1 speaks exactly as version 1
        # did, accepting only it.
        ours = channel._protocolVersion
        if version < MIN_PROTOCOL_VERSION or (ours == 1 and version != 1):
            channel._reject(_REJECT_VERSION)
            raise HandshakeError(
                f"the client speaks protocol version {version}; this server speaks "
                f"versions {MIN_PROTOCOL_VERSION} to {ours}: upgrade the older side",
                localValue=ours,
                remoteValue=version,
            )
        if suiteID not in channel._acceptedSuiteIDs:
            channel._reject(_REJECT_SUITE)
            raise HandshakeError(
                f"the client asked for suite {_SUITE_NAMES.get(suiteID, suiteID)!s}; "
                f"this server accepts {', '.join(channel._acceptedSuiteNames())}: "
                "configure both sides with the same --suite",
                localValue=channel._acceptedSuiteNames(),
                remoteValue=_SUITE_NAMES.get(suiteID, suiteID),
            )
        try:
            sender, receiver, peerMaxValueSize, reply, keyIndex = _serverHandshake(
                channel, suiteID, version, frame, ephemeral
            )
        except AuthenticationError:
            channel._reject(_REJECT_AUTHENTICATION)
            raise
        except HandshakeError:
            channel._reject(_REJECT_MALFORMED)
            raise
        channel._outgoing.append(bytes((_REPLY_ACCEPT,)) + reply)
        channel._state = _ServerAwaitingConfirmation(
            channel,
            sender,
            receiver,
            peerMaxValueSize,
            _SUITE_NAMES[suiteID],
            min(version, ours),
            channel._keyring.identity(keyIndex),
        )
        return None


class _ServerAwaitingConfirmation(_Refusing):
    """
    The server answered the hello and waits for the client's key confirmation,
    which proves the hello was not replayed.
    """

    def __init__(
        self,
        channel: Channel,
        sender: _RecordSealer,
        receiver: _RecordOpener,
        peerMaxValueSize: int,
        suiteName: str,
        version: int,
        peerKey: KeyIdentity,
    ) -> None:
        super().__init__(channel)
        self._sender = sender
        self._receiver = receiver
        self._peerMaxValueSize = peerMaxValueSize
        self._suiteName = suiteName
        self._version = version
        self._peerKey = peerKey

    def receiveFrame(self, frame: bytes | memoryview) -> Event | None:
        try:
            recordType, body = self._receiver.open(frame)
        except IntegrityError as e:
            raise AuthenticationError(
                "the client's key confirmation failed authentication: its hello may "
                "have been replayed by a third party"
            ) from e
        if recordType != _RECORD_CONFIRM:
            raise HandshakeError(
                f"the client sent record type {recordType} before its key confirmation"
            )
        if len(body):
            raise HandshakeError(
                f"the client's key confirmation has a body of {len(body)} bytes; it "
                "must be empty (docs/protocol.rst 4.4)"
            )
        channel = self._channel
        channel._state = _Established(
            channel, self._sender, self._receiver, self._peerMaxValueSize, self._version
        )
        channel._peerKey = self._peerKey
        return HandshakeCompleted(self._suiteName, self._peerMaxValueSize, self._version)


class _Established:
    """
    The handshake completed: values flow both ways.

    @ivar _sender: Seals outgoing records; holds this direction's key and
        counter.
    @ivar _receiver: Opens incoming records; holds the other direction's key
        and counter.
    @ivar _peerMaxValueSize: The largest encoded value the peer accepts.
    @ivar version: The protocol version both sides negotiated.
    """

    def __init__(
        self,
        channel: Channel,
        sender: _RecordSealer,
        receiver: _RecordOpener,
        peerMaxValueSize: int,
        version: int,
    ) -> None:
        self._channel = channel
        self._sender = sender
        self._receiver = receiver
        self.version = version
        family = "fernet" if isinstance(receiver, _FernetOpener) else "noise"
        channel._maxFrameSize = frameOverhead(family, channel._limits.maxSize)
        self._peerMaxValueSize = peerMaxValueSize
        self._decode = channel._decoder.decode
        self._decodeMany = channel._decoder.decodeMany
        self._encodeAfter = channel._encoder.encodeAfter
        self._encodeParts = channel._encoder.encodeParts

    def receiveFrame(self, frame: bytes | memoryview) -> Event | None:
        recordType, body = self._receiver.open(frame)
        if recordType == _RECORD_VALUE:
            return ValueReceived(self._decode(body), len(body))
        if recordType == _RECORD_VALUES:
            return _valuesReceived(self._decodeMany, body)
        return self._control(recordType, body)

    def _control(self, recordType: int, body: bytes | memoryview) -> Event:
        channel = self._channel
        if recordType == _RECORD_PING:
            data = bytes(body)
            if len(data) > _MAX_PING_DATA:
                raise RemoteProtocolError(f"the peer sent a ping of {len(data)} bytes")
            channel._outgoing.append(self._sender.seal(_RECORD_PONG, data))
            return PingReceived(data)
        if recordType == _RECORD_PONG:
            return PongReceived(bytes(body))
        if recordType == _RECORD_CLOSE:
            code, reason = _parseClose(body)
            channel._outgoing.append(self._sender.seal(_RECORD_CLOSE, _closeBody(code, "")))
            channel._state = _Closed(channel)
            return CloseReceived(code, reason)
        return _extensionRecord(self.version, recordType, body)

    def sendValue(self, value: object) -> bytes:
        return self._sealValue(self._encodeAfter(_VALUE_TYPE_BYTE, value))

    def sendRecord(self, recordType: int, body: bytes) -> bytes:
        self._checkRecord(recordType, len(body))
        return self._sender.seal(recordType, body)

    def sealRecordParts(self, recordType: int, head: bytes, payload: _Bytes) -> memoryview:
        self._checkRecord(recordType, len(head) + len(payload))
        return self._sender.sealParts(bytes((recordType,)) + head, payload, True)

    def _checkRecord(self, recordType: int, size: int) -> None:
        owner = _EXTENSION_OWNER.get(recordType)
        if owner is None:
            raise ValueError(f"record type {recordType:#04x} is not an extension record type")
        needed = EXTENSION_VERSIONS[owner]
        if self.version < needed:
            raise PeerVersionError(
                f"the peer speaks protocol version {self.version}, which has no {owner} "
                f"records (they need version {needed}): upgrade it to use {owner}",
                localValue=PROTOCOL_VERSION,
                remoteValue=self.version,
            )
        if size > self._peerMaxValueSize:
            raise BufferDataError(
                f"a {owner} record of {size} bytes is larger than the peer accepts "
                f"({self._peerMaxValueSize}); send smaller parts"
            )

    def sendEncoded(self, encoded: bytes) -> bytes:
        return self._sealValue(_VALUE_TYPE_BYTE + encoded)

    def sendEncodedValues(self, encodedValues: Sequence[bytes]) -> bytes:
        count = len(encodedValues)
        if count == 1:
            return self._sealValue(_VALUE_TYPE_BYTE + encodedValues[0])
        if count > MAX_BATCH_VALUES:
            raise ValueError(f"a batch holds at most {MAX_BATCH_VALUES} values, not {count}")
        header = (
            bytes((_RECORD_VALUES, 0x90 | count))
            if count < 16
            else _VALUES_HEAD16.pack(_RECORD_VALUES, 0xDC, count)
        )
        plaintext = b"".join((header, *encodedValues))
        bodySize = len(plaintext) - 1
        if count == 0 or bodySize > min(self._peerMaxValueSize, MAX_BATCH_BODY):
            # One value alone may be as large as the peer accepts; the
            # values of a batch must fit in that together.
            if count == 0:
                raise ValueError("a batch holds at least one value")
            raise BufferDataError(
                f"{count} values encode to {bodySize} bytes together but the peer "
                f"accepts at most {min(self._peerMaxValueSize, MAX_BATCH_BODY)} in one "
                "record; send fewer at once"
            )
        return self._sender.sealPlaintext(plaintext)

    def sealBuffer(self, value: object, framed: bool) -> memoryview:
        parts = self._encodeParts(value)
        if parts is None:
            encoded = self._channel._encoder.encode(value)
            self._checkValueSize(len(encoded))
            return self._sender.sealParts(_VALUE_TYPE_BYTE, encoded, framed)
        header, payload = parts
        self._checkValueSize(len(header) + len(payload))
        return self._sender.sealParts(_VALUE_TYPE_BYTE + header, payload, framed)

    def _checkValueSize(self, size: int) -> None:
        if size > self._peerMaxValueSize:
            raise BufferDataError(
                f"the value encodes to {size} bytes but the peer accepts at most "
                f"{self._peerMaxValueSize}; send it in smaller parts, or raise the "
                "peer's maximum buffer size"
            )

    def releaseBuffers(self) -> None:
        self._sender.releaseBuffers()
        self._receiver.releaseBuffers()

    def _sealValue(self, plaintext: bytes) -> bytes:
        if len(plaintext) - 1 > self._peerMaxValueSize:
            raise BufferDataError(
                f"the value encodes to {len(plaintext) - 1} bytes but the peer accepts at "
                f"most {self._peerMaxValueSize}; send it in smaller parts, or raise the "
                "peer's maximum buffer size"
            )
        return self._sender.sealPlaintext(plaintext)

    def ping(self, data: bytes) -> bytes:
        if len(data) > _MAX_PING_DATA:
            raise ValueError(f"ping data is limited to {_MAX_PING_DATA} bytes")
        return self._sender.seal(_RECORD_PING, data)

    def close(self, code: CloseCode, reason: str) -> bytes:
        frame = self._sender.seal(_RECORD_CLOSE, _closeBody(code, reason))
        self._channel._state = _Closing(self._channel, self._receiver, self.version)
        return frame

    def connectionLost(self) -> None:
        self._channel._state = _Failed(self._channel, "the connection was lost")
        raise TruncationError(
            "the connection ended without the peer's close record: values in "
            "transit may have been lost"
        )


class _Closing(_Refusing):
    """
    This side sent its close record; values the peer sent before it saw it
    are still delivered, until the peer's close record arrives.
    """

    _why = "the channel is closing"

    def __init__(self, channel: Channel, receiver: _RecordOpener, version: int) -> None:
        super().__init__(channel)
        self._receiver = receiver
        self.version = version
        self._decode = channel._decoder.decode
        self._decodeMany = channel._decoder.decodeMany

    def receiveFrame(self, frame: bytes | memoryview) -> Event | None:
        recordType, body = self._receiver.open(frame)
        if recordType == _RECORD_VALUE:
            return ValueReceived(self._decode(body), len(body))
        if recordType == _RECORD_VALUES:
            return _valuesReceived(self._decodeMany, body)
        if recordType == _RECORD_CLOSE:
            code, reason = _parseClose(body)
            self._channel._state = _Closed(self._channel)
            return CloseReceived(code, reason)
        if recordType == _RECORD_PONG:
            return PongReceived(bytes(body))
        if recordType == _RECORD_PING:
            # Answering would need a record after our close; a ping is only a
            # liveness probe, so it is dropped.
            if len(body) > _MAX_PING_DATA:
                raise RemoteProtocolError(f"the peer sent a ping of {len(body)} bytes")
            return PingReceived(bytes(body))
        return _extensionRecord(self.version, recordType, body)

    def releaseBuffers(self) -> None:
        self._receiver.releaseBuffers()

    def connectionLost(self) -> None:
        self._channel._state = _Failed(self._channel, "the connection was lost")
        raise TruncationError(
            "the connection ended before the peer confirmed the close: values sent "
            "just before the close may not have been processed"
        )


# A VALUES record's type byte and array 16 header: the longest header a
# batch of at most MAX_BATCH_VALUES values needs.
_VALUES_HEAD16 = struct.Struct("!BBH")


def _valuesReceived(
    decodeMany: Callable[[bytes | memoryview, int], list[object]], body: bytes | memoryview
) -> ValuesReceived:
    """
    Decode the body of a VALUES record.

    @param decodeMany: The channel's L{Decoder.decodeMany}.
    @param body: The record's body.
    @return: The event.
    @raise DecodeError: The body is not an array of valid values.
    @raise RemoteProtocolError: It holds fewer than two, or is longer than
        L{MAX_BATCH_BODY}.
    """
    if len(body) > MAX_BATCH_BODY:
        raise RemoteProtocolError(
            f"the peer sent a VALUES record of {len(body)} bytes; one may hold at most "
            f"{MAX_BATCH_BODY}"
        )
    values = decodeMany(body, MAX_BATCH_VALUES)
    if len(values) < 2:
        raise RemoteProtocolError(
            f"the peer sent a VALUES record holding {len(values)} value; one value "
            "travels in a VALUE record"
        )
    return ValuesReceived(values, len(body))


def _extensionRecord(version: int, recordType: int, body: bytes | memoryview) -> RecordReceived:
    """
    Check a received record of a type that is neither a value nor control.

    @raise RemoteProtocolError: The type is unknown, or belongs to a protocol
        version the two sides did not negotiate.
    """
    owner = _EXTENSION_OWNER.get(recordType)
    if owner is None:
        raise RemoteProtocolError(f"the peer sent a record of unknown type {recordType}")
    if version < EXTENSION_VERSIONS[owner]:
        raise RemoteProtocolError(
            f"the peer sent a {owner} record (type {recordType}) "
            f"in a protocol version {version} session, which has none"
        )
    return RecordReceived(recordType, bytes(body))


def _closeBody(code: CloseCode, reason: str) -> bytes:
    encoded = reason.encode("utf-8")[:_MAX_CLOSE_REASON]
    # Never cut a character in half.
    encoded = encoded.decode("utf-8", "ignore").encode("utf-8")
    return struct.pack("!H", code) + encoded


def _parseClose(body: bytes | memoryview) -> tuple[CloseCode, str]:
    if len(body) < 2 or len(body) > 2 + _MAX_CLOSE_REASON:
        raise RemoteProtocolError(f"the peer sent a malformed close record ({len(body)} bytes)")
    (code,) = struct.unpack_from("!H", body)
    try:
        reason = bytes(body[2:]).decode("utf-8")
    except UnicodeDecodeError as e:
        raise RemoteProtocolError("the peer's close reason is not UTF-8") from e
    return CloseCode.fromWire(code), reason


def _rejectionError(frame: bytes, offeredSuiteID: int, offeredVersion: int) -> HandshakeError:
    """
    Build the error for a server's rejection frame.

    @param frame: The whole reply frame, status byte included.
    @param offeredSuiteID: The suite this client asked for.
    @param offeredVersion: The protocol version this client offered.
    @return: The error to raise.
    """
    if len(frame) < 4 or len(frame) != 4 + frame[3]:
        return HandshakeError("the server rejected the handshake with a malformed reply")
    reason, serverVersion, count = frame[1], frame[2], frame[3]
    serverSuites = [_SUITE_NAMES.get(s, f"suite {s}") for s in frame[4 : 4 + count]]
    if reason == _REJECT_AUTHENTICATION:
        return AuthenticationError(
            "the server rejected this client's key: use the same key on both sides "
            "(the server must list the client's first key)"
        )
    if reason == _REJECT_VERSION:
        if MIN_PROTOCOL_VERSION <= serverVersion < offeredVersion:
            advice = f"upgrade the server, or connect with protocolVersion={serverVersion}"
        else:
            advice = "upgrade the older side"
        return HandshakeError(
            f"the server speaks protocol version {serverVersion}; this client offered "
            f"version {offeredVersion}: {advice}",
            localValue=offeredVersion,
            remoteValue=serverVersion,
        )
    if reason == _REJECT_SUITE:
        return HandshakeError(
            f"the server accepts {', '.join(serverSuites)}; this client asked for "
            f"{_SUITE_NAMES[offeredSuiteID]}: configure both sides with the same suite",
            localValue=_SUITE_NAMES[offeredSuiteID],
            remoteValue=serverSuites,
        )
    return HandshakeError(
        f"the server rejected the handshake: {_REJECT_REASONS.get(reason, 'unknown reason')}"
    )


class _RecordSealer(Protocol):
    def seal(self, recordType: int, body: bytes) -> bytes: ...

    def sealPlaintext(self, plaintext: bytes) -> bytes: ...

    def sealParts(self, head: bytes, payload: _Bytes, framed: bool) -> memoryview: ...

    def releaseBuffers(self) -> None: ...


class _RecordOpener(Protocol):
    def open(self, frame: bytes | memoryview) -> tuple[int, bytes | memoryview]: ...

    def releaseBuffers(self) -> None: ...


_Bytes = bytes | bytearray | memoryview

_REUSE_ABOVE: Final = 64 * 1024
"""
Records whose plaintext is larger than this are opened into a buffer the
channel reuses, rather than into a new one each (whose fresh pages cost a
page fault per 4 KiB with most allocators).
"""

_REUSED_GRAIN: Final = 64 * 1024
"""A reused buffer's size is rounded up to a multiple of this."""

_NO_BUFFER: Final = memoryview(bytearray())
"""No buffer: one empty view shared by every connection that holds none."""


class _ReusedBuffer:
    """
    One buffer reused for every large record of one direction: it grows (by
    replacement, so that views handed out earlier stay readable memory) when
    a record needs more, and never shrinks until released.
    """

    __slots__ = ("_view",)

    def __init__(self) -> None:
        self._view = _NO_BUFFER

    def take(self, size: int) -> memoryview:
        """
        @param size: The bytes needed.
        @return: A writable view of exactly C{size} bytes of the buffer.
        """
        view = self._view
        if len(view) < size:
            grains = -(-size // _REUSED_GRAIN)
            view = self._view = memoryview(bytearray(grains * _REUSED_GRAIN))
        return view[:size]

    def release(self) -> None:
        """
        Drop the buffer: the next L{take} makes a new one.
        """
        self._view = _NO_BUFFER

    @property
    def size(self) -> int:
        """
        The buffer's size, in bytes.
        """
        return len(self._view)


class _NoiseSealer:
    """
    Seals records with one direction's Noise transport cipher.
    """

    __slots__ = ("_encrypt", "_encryptInto", "_encryptPartsInto", "_plaintext", "_sealed")

    def __init__(self, cipher: CipherState) -> None:
        self._encrypt = cipher.encrypt
        self._encryptInto = cipher.encryptInto
        self._encryptPartsInto = cipher.encryptPartsInto if cipher.sealsParts else None
        self._plaintext = _ReusedBuffer()
        self._sealed = _ReusedBuffer()

    def sealParts(self, head: bytes, payload: _Bytes, framed: bool) -> memoryview:
        """
        Seal a record whose plaintext is C{head + payload} into the reused
        output buffer without joining the parts: AES-GCM encrypts each part
        straight into its place; ChaCha20-Poly1305 (whose interface takes
        the plaintext whole) copies them into the reused plaintext buffer
        first.

        @param framed: Whether to write the 4-byte length prefix first.
        @return: A read-only view of the sealed record (after its prefix if
            C{framed}), valid until the next call.
        """
        size = len(head) + len(payload)
        offset = _U32.size if framed else 0
        sealed = self._sealed.take(offset + size + TAG_SIZE)
        if framed:
            _U32.pack_into(sealed, 0, size + TAG_SIZE)
        try:
            if self._encryptPartsInto is not None:
                self._encryptPartsInto((head, payload), sealed[offset:])
            else:
                plaintext = self._plaintext.take(size)
                plaintext[: len(head)] = head
                plaintext[len(head) :] = payload
                self._encryptInto(plaintext, sealed[offset:])
        except _NonceExhaustedError as e:
            raise ChannelClosedError(str(e)) from None
        return sealed.toreadonly()

    def releaseBuffers(self) -> None:
        self._plaintext.release()
        self._sealed.release()

    def seal(self, recordType: int, body: bytes) -> bytes:
        return self.sealPlaintext(bytes((recordType,)) + body)

    def sealPlaintext(self, plaintext: bytes) -> bytes:
        """
        Seal a record whose plaintext (type byte first) is already built.
        """
        try:
            return self._encrypt(plaintext)
        except _NonceExhaustedError as e:
            raise ChannelClosedError(str(e)) from None


_COPY_BODY_SIZE: Final = 4096
"""Up to this size a record's body is handed out as a copy, not a view."""


class _NoiseOpener:
    """
    Opens records with the other direction's Noise transport cipher.  A
    record larger than L{_REUSE_ABOVE} is opened into a reused plaintext
    buffer, and its body handed out as a view of it: every consumer of a
    record's body (the decoder, the control records) copies what it keeps
    before L{Channel.receiveFrame} returns.
    """

    __slots__ = ("_decrypt", "_decryptInto", "_plaintext")

    def __init__(self, cipher: CipherState) -> None:
        self._decrypt = cipher.decrypt
        self._decryptInto = cipher.decryptInto
        self._plaintext = _ReusedBuffer()

    def releaseBuffers(self) -> None:
        self._plaintext.release()

    def _openInto(self, frame: bytes | memoryview) -> tuple[int, memoryview]:
        plaintext = self._plaintext.take(len(frame) - TAG_SIZE)
        try:
            self._decryptInto(frame, plaintext)
        except _NonceExhaustedError as e:
            raise RemoteProtocolError(str(e)) from None
        except InvalidTag:
            raise IntegrityError(
                "a record failed authentication: it was altered, replayed, reordered "
                "or dropped in transit"
            ) from None
        return plaintext[0], plaintext[1:]

    def open(self, frame: bytes | memoryview) -> tuple[int, bytes | memoryview]:
        if len(frame) > _REUSE_ABOVE + TAG_SIZE:
            return self._openInto(frame)
        try:
            plaintext = self._decrypt(frame)
        except _NonceExhaustedError as e:
            raise RemoteProtocolError(str(e)) from None
        except InvalidTag:
            raise IntegrityError(
                "a record failed authentication: it was altered, replayed, reordered "
                "or dropped in transit"
            ) from None
        if not plaintext:
            raise RemoteProtocolError("the peer sent an empty record")
        if len(plaintext) <= _COPY_BODY_SIZE:
            # A small body is copied: cheaper than a view, and the decoder
            # works on bytes.
            return plaintext[0], plaintext[1:]
        return plaintext[0], memoryview(plaintext)[1:]


class _FernetSealer:
    """
    Seals records as Fernet tokens bound to the session and sequence-numbered.
    """

    def __init__(
        self, fernet: Fernet, sessionID: bytes, direction: int, currentTime: Callable[[], float]
    ) -> None:
        self._fernet = fernet
        self._sessionID = sessionID
        self._direction = direction
        self._sequence = 0
        self._currentTime = currentTime

    def seal(self, recordType: int, body: bytes) -> bytes:
        return self.sealPlaintext(bytes((recordType,)) + body)

    def sealPlaintext(self, plaintext: bytes) -> bytes:
        """
        Seal a record whose plaintext (type byte first) is already built.
        """
        if self._sequence >= 2**64 - 1:
            raise ChannelClosedError("this connection has used every sequence number; reconnect")
        head = _FERNET_SEQUENCE_HEAD.pack(self._sessionID, self._direction, self._sequence)
        self._sequence += 1
        return self._fernet.encrypt_at_time(head + plaintext, int(self._currentTime()))

    def sealParts(self, head: bytes, payload: _Bytes, framed: bool) -> memoryview:
        """
        Seal a record whose plaintext is C{head + payload}; Fernet has no
        way to write into a buffer, so this joins them.

        @return: A view of a new token, prefixed with its length if
            C{framed}.
        """
        token = self.sealPlaintext(b"".join((head, payload)))
        if framed:
            token = _U32.pack(len(token)) + token
        return memoryview(token)

    def releaseBuffers(self) -> None:
        return None


class _FernetOpener:
    """
    Opens Fernet records, checking the session, direction and sequence number.
    """

    def __init__(
        self,
        fernet: Fernet,
        sessionID: bytes,
        direction: int,
        ttl: float | None,
        currentTime: Callable[[], float],
    ) -> None:
        self._fernet = fernet
        self._sessionID = sessionID
        self._direction = direction
        self._sequence = 0
        self._ttl = ttl
        self._currentTime = currentTime

    def open(self, frame: bytes | memoryview) -> tuple[int, memoryview]:
        try:
            if self._ttl is None:
                plaintext = self._fernet.decrypt(bytes(frame))
            else:
                plaintext = self._fernet.decrypt_at_time(
                    bytes(frame), int(self._ttl), int(self._currentTime())
                )
        except InvalidToken:
            raise IntegrityError(
                "a Fernet record failed authentication (or is older than its TTL)"
            ) from None
        if len(plaintext) < _FERNET_RECORD_HEAD.size:
            raise IntegrityError("a Fernet record is too short to hold its header")
        sessionID, direction, sequence, recordType = _FERNET_RECORD_HEAD.unpack_from(plaintext)
        if sessionID != self._sessionID or direction != self._direction:
            raise IntegrityError(
                "a Fernet record belongs to another connection or direction (replayed or reflected)"
            )
        if sequence != self._sequence:
            raise IntegrityError(
                f"a Fernet record arrived out of order (sequence {sequence}, "
                f"expected {self._sequence}): replayed, reordered or dropped"
            )
        self._sequence += 1
        return recordType, memoryview(plaintext)[_FERNET_RECORD_HEAD.size :]

    def releaseBuffers(self) -> None:
        return None


class _ClientHandshake(Protocol):
    suiteID: int

    def hello(self) -> bytes: ...

    def readReply(self, body: bytes) -> tuple[_RecordSealer, _RecordOpener, int, int]: ...


def _prologue(header: bytes) -> bytes:
    return _PROLOGUE_LABEL + header


def _helloHeader(suiteID: int, version: int) -> bytes:
    """
    @param suiteID: A suite identifier.
    @return: The first six bytes of a client hello asking for that suite.
    """
    return MAGIC + bytes((version, suiteID))


def _noiseTemplates(keyring: Keyring, suiteID: int, version: int) -> tuple[NNpsk0Template, ...]:
    """
    The Noise handshake templates of a keyring for a suite: what every
    handshake with that key and suite computes before its ephemeral keys come
    in, computed once for the keyring rather than once per connection.  They
    are as secret as the keys, and live as long as the keyring does.

    @param keyring: The keys.
    @param suiteID: A Noise suite.
    @return: One template per key, in the keyring's order.
    """

    def derive(keyring: Keyring) -> tuple[NNpsk0Template, ...]:
        cipherName = _NOISE_CIPHER_OF_SUITE[suiteID]
        prologue = _prologue(_helloHeader(suiteID, version))
        return tuple(NNpsk0Template(cipherName, psk, prologue) for psk in keyring.noisePSKs())

    return keyring._derived(("noise handshake templates", suiteID, version), derive)


def warmKeyring(keyring: Keyring) -> None:
    """
    Compute now, rather than in the first handshake that needs them, the
    Noise handshake templates of every key for both Noise suites of this
    protocol version: a server that reloads a large keyring calls it so
    that the next client does not wait for the whole ring's derivations.

    @param keyring: The keys.
    """
    for suiteID in (_SUITE_NOISE_AESGCM, _SUITE_NOISE_CHACHAPOLY):
        _noiseTemplates(keyring, suiteID, PROTOCOL_VERSION)


def _replyPayload(maxSize: int, helloVersion: int, ours: int) -> bytes:
    """
    The server's handshake payload: its maximum value size, then (for a hello
    of version 2 or later) the version the session speaks, the lower of the
    client's and the server's.
    """
    if helloVersion < 2:
        return _U32.pack(maxSize)
    return _U32.pack(maxSize) + bytes((min(helloVersion, ours),))


def _readReplyPayload(payload: bytes, offered: int) -> tuple[int, int]:
    """
    Read the server's handshake payload (see L{_replyPayload}).

    @param offered: The version this client's hello offered.
    @return: The server's maximum value size and the session's version.
    """
    if offered < 2:
        return _readMaxValueSize(payload, "server"), 1
    if len(payload) != _U32.size + 1:
        raise HandshakeError(
            f"the server's handshake payload has {len(payload)} bytes, not {_U32.size + 1}"
        )
    version = payload[_U32.size]
    if not MIN_PROTOCOL_VERSION <= version <= offered:
        raise HandshakeError(
            f"the server chose protocol version {version}; this client offered "
            f"versions {MIN_PROTOCOL_VERSION} to {offered}"
        )
    return _readMaxValueSize(payload[: _U32.size], "server"), version


def _readMaxValueSize(payload: bytes, who: str) -> int:
    if len(payload) != _U32.size:
        raise HandshakeError(f"the {who}'s handshake payload has {len(payload)} bytes, not 4")
    size: int = _U32.unpack(payload)[0]
    if not 1 <= size <= MAX_VALUE_SIZE_LIMIT:
        raise HandshakeError(f"the {who} advertised an invalid maximum value size {size}")
    return size


class _NoiseClientHandshake:
    """
    The client's side of the Noise_NNpsk0 handshake.
    """

    def __init__(self, channel: Channel, cipherName: str) -> None:
        self._channel = channel
        self.suiteID = _SUITE_OF_NOISE_CIPHER[cipherName]
        ephemeral = channel._ephemeralFactory() if channel._ephemeralFactory else None
        self._version = channel._protocolVersion
        self._header = _helloHeader(self.suiteID, self._version)
        templates = _noiseTemplates(channel._keyring, self.suiteID, self._version)
        self._initiator = templates[0].initiator(ephemeral)

    def hello(self) -> bytes:
        return self._header + self._initiator.writeMessage1(
            _U32.pack(self._channel._limits.maxSize)
        )

    def readReply(self, body: bytes) -> tuple[_RecordSealer, _RecordOpener, int, int]:
        try:
            payload = self._initiator.readMessage2(body)
        except InvalidTag:
            raise AuthenticationError(
                "the server's handshake reply failed authentication: it does not hold "
                "this client's key"
            ) from None
        except ValueError as e:
            raise HandshakeError(f"the server's handshake reply is malformed: {e}") from None
        peerMaxValueSize, version = _readReplyPayload(payload, self._version)
        sendCipher, receiveCipher = self._initiator.split()
        return _NoiseSealer(sendCipher), _NoiseOpener(receiveCipher), peerMaxValueSize, version


class _FernetClientHandshake:
    """
    The client's side of the Fernet handshake: nonces exchanged in Fernet
    tokens, records bound to both nonces.
    """

    suiteID = _SUITE_FERNET

    def __init__(self, channel: Channel) -> None:
        self._channel = channel
        self._fernet = Fernet(channel._keyring.fernetKeys()[0])
        self._nonce = channel._randomBytes(_FERNET_NONCE_SIZE)
        self._hello = b""

    def hello(self) -> bytes:
        channel = self._channel
        header = _helloHeader(_SUITE_FERNET, channel._protocolVersion)
        token = self._fernet.encrypt_at_time(
            self._nonce + _U32.pack(channel._limits.maxSize), int(channel._currentTime())
        )
        self._hello = header + token
        return self._hello

    def readReply(self, body: bytes) -> tuple[_RecordSealer, _RecordOpener, int, int]:
        channel = self._channel
        try:
            payload = _fernetDecrypt(self._fernet, body, channel)
        except InvalidToken:
            raise AuthenticationError(
                "the server's handshake reply failed authentication: it does not hold "
                "this client's key"
            ) from None
        offered = channel._protocolVersion
        if len(payload) != 2 * _FERNET_NONCE_SIZE + _U32.size + (offered >= 2):
            raise HandshakeError("the server's Fernet handshake payload is malformed")
        if payload[_FERNET_NONCE_SIZE : 2 * _FERNET_NONCE_SIZE] != self._nonce:
            raise AuthenticationError(
                "the server's handshake reply answers another hello: it was replayed"
            )
        peerMaxValueSize, version = _readReplyPayload(payload[2 * _FERNET_NONCE_SIZE :], offered)
        sessionID = _fernetSessionID(self._hello, bytes((_REPLY_ACCEPT,)) + body)
        return (
            _FernetSealer(self._fernet, sessionID, 0, channel._currentTime),
            _FernetOpener(self._fernet, sessionID, 1, channel._fernetTTL, channel._currentTime),
            peerMaxValueSize,
            version,
        )


def _fernetDecrypt(fernet: Fernet, token: bytes, channel: Channel) -> bytes:
    if channel._fernetTTL is None:
        return fernet.decrypt(token)
    return fernet.decrypt_at_time(token, int(channel._fernetTTL), int(channel._currentTime()))


def _fernetSessionID(hello: bytes, reply: bytes) -> bytes:
    transcript = b"NetStructer/1 fernet session" + _U32.pack(len(hello)) + hello + reply
    return hashlib.sha256(transcript).digest()


def _serverHandshake(
    channel: Channel,
    suiteID: int,
    version: int,
    hello: bytes,
    ephemeral: X25519PrivateKey | None,
) -> tuple[_RecordSealer, _RecordOpener, int, bytes, int]:
    """
    Answer a client hello whose header was already checked.

    The hello does not say which key the client holds (nothing in clear
    may tell clients apart), so each key on the ring is tried in turn: in
    Noise, a C{readMessage1} per key (a hash, an HKDF and an AEAD open of
    four bytes; no Diffie-Hellman), in Fernet an HMAC check per key.

    @param version: The protocol version the hello offers.
    @param ephemeral: The Noise ephemeral key made for this connection by
        L{Channel.prepareHandshake}, or L{None} to make one only once the hello
        has authenticated.
    @return: The sealer and opener for the session, the client's maximum value
        size, the reply body (without its status byte), and the position on
        the keyring of the key that authenticated the hello.
    @raise AuthenticationError: No key in the keyring authenticates the hello.
    @raise HandshakeError: The hello is malformed.
    """
    body = hello[6:]
    if suiteID == _SUITE_FERNET:
        return _serverFernetHandshake(channel, version, hello, body)
    if ephemeral is None and channel._ephemeralFactory is not None:
        ephemeral = channel._ephemeralFactory()
    # The header was checked, so the prologue is the one of the templates.
    payload2 = _replyPayload(channel._limits.maxSize, version, channel._protocolVersion)
    for index, template in enumerate(_noiseTemplates(channel._keyring, suiteID, version)):
        responder = template.responder(ephemeral)
        try:
            payload = responder.readMessage1(body)
        except InvalidTag:
            continue
        except ValueError as e:
            raise HandshakeError(f"the client's hello is malformed: {e}") from None
        peerMaxValueSize = _readMaxValueSize(payload, "client")
        try:
            reply = responder.writeMessage2(payload2)
        except ValueError as e:
            raise HandshakeError(f"the client's ephemeral key is unusable: {e}") from None
        sendCipher, receiveCipher = responder.split()
        return (
            _NoiseSealer(sendCipher),
            _NoiseOpener(receiveCipher),
            peerMaxValueSize,
            reply,
            index,
        )
    raise AuthenticationError(
        "the client's hello failed authentication: it does not hold any key in this "
        "server's keyring"
    )


def _serverFernetHandshake(
    channel: Channel, version: int, hello: bytes, token: bytes
) -> tuple[_RecordSealer, _RecordOpener, int, bytes, int]:
    fernets = channel._keyring._derived(
        "fernet objects", lambda ring: tuple(Fernet(key) for key in ring.fernetKeys())
    )
    for index, fernet in enumerate(fernets):
        try:
            payload = _fernetDecrypt(fernet, token, channel)
        except InvalidToken:
            continue
        if len(payload) != _FERNET_NONCE_SIZE + _U32.size:
            raise HandshakeError("the client's Fernet hello payload is malformed")
        clientNonce = payload[:_FERNET_NONCE_SIZE]
        peerMaxValueSize = _readMaxValueSize(payload[_FERNET_NONCE_SIZE:], "client")
        serverNonce = channel._randomBytes(_FERNET_NONCE_SIZE)
        reply = fernet.encrypt_at_time(
            serverNonce
            + clientNonce
            + _replyPayload(channel._limits.maxSize, version, channel._protocolVersion),
            int(channel._currentTime()),
        )
        sessionID = _fernetSessionID(hello, bytes((_REPLY_ACCEPT,)) + reply)
        sealer = _FernetSealer(fernet, sessionID, 1, channel._currentTime)
        opener = _FernetOpener(fernet, sessionID, 0, channel._fernetTTL, channel._currentTime)
        return sealer, opener, peerMaxValueSize, reply, index
    raise AuthenticationError(
        "the client's hello failed authentication: it does not hold any key in this "
        "server's keyring"
    )


class Channel:
    """
    One end of one NetStructer connection, with no I/O.

    @ivar role: Which end this is.
    @ivar suite: The suite family this side uses (client) or the first it
        accepts (server).
    @ivar maxFrameSize: The largest frame payload this side accepts now:
        L{HANDSHAKE_MAX_FRAME} until the handshake completes, then enough for a
        record carrying the largest value this side accepts.  Adapters use it
        as their framer's limit.
    """

    def __init__(
        self,
        role: Role,
        key: bytes | str | Keyring | Sequence[bytes | str],
        *,
        suite: str = "noise",
        cipher: str = "AESGCM",
        acceptSuites: Sequence[str] | None = None,
        limits: Limits = DEFAULT_LIMITS,
        fernetTTL: float | None = None,
        currentTime: Callable[[], float] = time.time,
        randomBytes: Callable[[int], bytes] = os.urandom,
        ephemeralFactory: Callable[[], X25519PrivateKey] | None = None,
        protocolVersion: int = PROTOCOL_VERSION,
    ) -> None:
        """
        @param role: L{Role.CLIENT} for the connecting side, L{Role.SERVER}
            for the accepting side.
        @param key: A Fernet-format key (bytes or str), a list of them, or a
            L{Keyring}.  A client connects with the first key; a server accepts
            every key listed.
        @param suite: C{"noise"} (the default) or C{"fernet"}.
        @param cipher: The AEAD a C{"noise"} client asks for: C{"AESGCM"}
            (fastest with AES hardware) or C{"ChaChaPoly"} (fastest without).
            A server accepts either.
        @param acceptSuites: The suite families a server accepts; default
            C{(suite,)}.
        @param limits: Decoding limits for received values; C{limits.maxSize}
            is also the largest encoded value this side accepts, advertised in
            the handshake (at most 2 GiB).
        @param fernetTTL: With the C{"fernet"} suite, refuse tokens older than
            this many seconds.
        @param currentTime: The clock for Fernet timestamps.
        @param randomBytes: The source of Fernet nonces.
        @param ephemeralFactory: Makes the Noise ephemeral key.  Only for test
            vectors and the worked example in the specification: never set it
            otherwise.
        @param protocolVersion: The highest protocol version this side
            speaks: what a client offers, and what a server answers a newer
            client with.  Only to talk to, or test, an older peer.
        @raise ValueError: An unknown suite or cipher, a maximum value size
            over 2 GiB, or a protocol version this implementation lacks.
        @raise InvalidKey: The key is malformed.
        """
        checkOptions(
            suite=suite,
            cipher=cipher,
            acceptSuites=acceptSuites,
            limits=limits,
            fernetTTL=fernetTTL,
            protocolVersion=protocolVersion,
        )
        self.role = role
        self.suite = suite
        self._protocolVersion = protocolVersion
        self._keyring = asKeyring(key)
        self._peerKey: KeyIdentity | None = None
        self._limits = limits
        self._decoder = Decoder(limits)
        self._encoder = Encoder(limits)
        self._fernetTTL = fernetTTL
        self._currentTime = currentTime
        self._randomBytes = randomBytes
        self._ephemeralFactory = ephemeralFactory
        self._outgoing: list[bytes] = []
        self._maxFrameSize = HANDSHAKE_MAX_FRAME
        self._acceptedSuiteIDs = _suiteIDs(tuple(acceptSuites or (suite,)))
        self._state: _State
        if role is Role.CLIENT:
            handshake: _ClientHandshake
            if suite == "fernet":
                handshake = _FernetClientHandshake(self)
            else:
                handshake = _NoiseClientHandshake(self, cipher)
            self._outgoing.append(handshake.hello())
            self._state = _ClientAwaitingReply(self, handshake)
        else:
            self._state = _ServerAwaitingHello(self)

    def __repr__(self) -> str:
        return f"<Channel {self.role.value} {type(self._state).__name__.lstrip('_')}>"

    @property
    def maxFrameSize(self) -> int:
        """
        The largest frame payload this side accepts in its current state.
        """
        return self._maxFrameSize

    @property
    def protocolVersion(self) -> int | None:
        """
        The protocol version the session speaks, once the handshake has
        settled it (while the channel is established or closing); L{None}
        before.
        """
        state = self._state
        return state.version if isinstance(state, (_Established, _Closing)) else None

    @property
    def peerKey(self) -> KeyIdentity | None:
        """
        On a server, once the handshake has completed: which key of its
        keyring the client proved it holds, with that key's name (L{None} for
        an anonymous key) and key ID.  L{None} before, and on a client.  The
        name comes from the server's own key file, never from the client.
        """
        return self._peerKey

    @property
    def keyring(self) -> Keyring:
        """
        The keyring this channel was made with.
        """
        return self._keyring

    @property
    def peerMaxValueSize(self) -> int | None:
        """
        The largest encoded value the peer accepts, once the handshake has
        told; L{None} before.
        """
        state = self._state
        return state._peerMaxValueSize if isinstance(state, _Established) else None

    def _newEphemeral(self) -> X25519PrivateKey:
        """
        @return: A new Noise ephemeral key (from C{ephemeralFactory} if one
            was given).
        """
        if self._ephemeralFactory is not None:
            return self._ephemeralFactory()
        return generateEphemeral()

    def prepareHandshake(self) -> None:
        """
        Do, before the peer's first frame arrives, the handshake work that does
        not depend on it, so that it overlaps with the peer's own work instead
        of delaying the reply: a server generates the ephemeral key of its
        Noise reply.  Call it once the connection is accepted (never for one
        that is refused, which would waste the work); calling it again, on a
        client, or after the hello arrived does nothing.  Without it the key is
        generated once the hello has authenticated.  Each key serves one
        connection only: it is generated for this channel, and forgotten by it
        when the hello arrives.
        """
        state = self._state
        if isinstance(state, _ServerAwaitingHello):
            state.prepare()

    def _acceptedSuiteNames(self) -> list[str]:
        return [_SUITE_NAMES[s] for s in sorted(self._acceptedSuiteIDs)]

    def _reject(self, reason: int) -> None:
        suites = sorted(self._acceptedSuiteIDs)
        self._outgoing.append(
            bytes((_REPLY_REJECT, reason, self._protocolVersion, len(suites), *suites))
        )

    def framesToSend(self) -> list[bytes]:
        """
        Take the frames the channel queued on its own account: the client's
        hello, handshake replies, the key confirmation, pongs, close replies
        and rejections.  Call after construction and after every
        L{receiveFrame}, whether it returned or raised.

        @return: The frame payloads to write, in order; the queue is emptied.
        """
        frames, self._outgoing = self._outgoing, []
        return frames

    def receiveFrame(self, frame: bytes | memoryview) -> Event | None:
        """
        Feed one received frame payload (without its length prefix).

        @param frame: The payload.  A L{memoryview} is read without copying
            and may be released once this returns.
        @return: The event the frame produced, if any.
        @raise RemoteProtocolError: The frame breaks the protocol (the
            subclass says how); the channel has failed and the connection
            must close after sending L{framesToSend}.
        @raise LocalProtocolError: The channel had already failed or closed.
        """
        try:
            return self._state.receiveFrame(frame)
        except LocalProtocolError:
            raise
        except BaseException as e:
            self._state = _Failed(self, type(e).__name__)
            raise

    def sendValue(self, value: object) -> bytes:
        """
        Encode and seal a value.

        @param value: A value of a supported type (see L{netstructer.values}).
        @return: The frame payload to write.
        @raise EncodeError: The value cannot be encoded; nothing was sealed and
            the channel stays usable.
        @raise BufferDataError: The encoded value is larger than the peer
            accepts; nothing was sealed and the channel stays usable.
        @raise LocalProtocolError: The handshake has not completed, or the
            channel is closing, closed or failed.
        """
        return self._state.sendValue(value)

    @property
    def encoder(self) -> Encoder:
        """
        This channel's encoder, which L{encodeValue} calls: adapters on a hot
        path may call its C{encode} directly.
        """
        return self._encoder

    @property
    def decoder(self) -> Decoder:
        """
        This channel's decoder (its limits are the channel's): for
        capabilities that carry encoded values in their records (the
        relay).
        """
        return self._decoder

    def encodeValue(self, value: object) -> bytes:
        """
        Encode a value with this channel's encoder, in any state: for
        adapters that encode values early (to report L{EncodeError} at once)
        and seal them with L{sendEncoded} once the handshake completes.

        @param value: A value of a supported type.
        @return: Its encoding.
        @raise EncodeError: The value cannot be encoded.
        """
        return self._encoder.encode(value)

    def sendEncoded(self, encoded: bytes) -> bytes:
        """
        Seal a value already encoded with L{netstructer.values.encode}: for
        adapters that encode early (to report L{EncodeError} at once) and seal
        once the handshake completes.

        @param encoded: The encoded value.
        @return: The frame payload to write.
        @raise BufferDataError: As for L{sendValue}.
        @raise LocalProtocolError: As for L{sendValue}.
        """
        return self._state.sendEncoded(encoded)

    def sendEncodedValues(self, encodedValues: Sequence[bytes]) -> bytes:
        """
        Seal values already encoded with L{encodeValue} in one record: a
        VALUE record for one, a VALUES record for several.  One record costs
        one AEAD operation and one frame, whatever it holds, so batching
        small values is what makes them cheap; keep a batch within
        L{batchLimit} bytes.

        @param encodedValues: The encoded values, in order (at least one).
        @return: The frame payload to write.
        @raise BufferDataError: The values (and a 3-byte array header) are
            larger together than the peer accepts in one record; nothing
            was sealed and the channel stays usable.
        @raise LocalProtocolError: As for L{sendValue}.
        """
        return self._state.sendEncodedValues(encodedValues)

    @property
    def batchLimit(self) -> int:
        """
        The most encoded bytes of values to put in one batch for
        L{sendEncodedValues}: L{BATCH_SIZE}, less the largest array header,
        or less if the peer accepts only smaller values; 0 before the
        handshake completes.
        """
        peerMax = self.peerMaxValueSize
        if peerMax is None:
            return 0
        return min(BATCH_SIZE, peerMax) - _VALUES_HEAD16.size + 1

    def sealBuffer(self, value: object, *, framed: bool = False) -> memoryview:
        """
        Encode and seal a value, as L{sendValue} does, into a buffer the
        channel owns and reuses for every call, for large values: a
        C{bytes}, C{bytearray} or C{memoryview} is copied once, its msgpack
        header beside it, into a reused plaintext buffer and sealed from
        there into a reused output buffer, so a stream of large values
        touches no new memory (any other value is encoded first, as by
        L{sendValue}, then sealed the same way).  With the Fernet suite it
        is sealed as by L{sendValue}, in a new buffer.  The frame is the
        same, byte for byte, that L{sendValue} would have returned.

        Small values cost less through L{sendEncodedValues}' batches; use
        this for values of tens of KiB and more.

        Lifetime: the returned view is valid (holds this frame) only until
        the next call to L{sealBuffer} or L{releaseBuffers}, which overwrite
        or drop the buffer it shows.  Write it out, or copy what the socket
        did not take, before then: never hand the view itself to something
        that keeps it for later (Twisted's C{transport.write} takes only
        C{bytes}; give it C{bytes(view[sent:])}).

        @param value: A value of a supported type.
        @param framed: Whether the view starts with the frame's 4-byte
            big-endian length prefix, so that it is ready for the socket.
        @return: A read-only view of the sealed frame payload (with its
            prefix, if C{framed}).
        @raise EncodeError: As for L{sendValue}.
        @raise BufferDataError: As for L{sendValue}.
        @raise LocalProtocolError: As for L{sendValue}.
        @since: 1.0
        """
        return self._state.sealBuffer(value, framed)

    def releaseBuffers(self) -> None:
        """
        Drop the buffers this channel reuses for large records (see
        L{sealBuffer}; received records larger than 64 KiB are opened into
        one too), so that an idle connection does not keep its largest
        record's worth of memory.  The next large record makes new ones.
        Views returned by L{sealBuffer} before are invalid afterwards.
        @since: 1.0
        """
        self._state.releaseBuffers()

    def sendRecord(self, recordType: int, body: bytes) -> bytes:
        """
        Seal an extension record: one of the types in
        L{EXTENSION_RECORD_RANGES}, whose body its capability's module
        defines, in a session of a version that has it
        (L{EXTENSION_VERSIONS}).  Records are sealed in call order with values and control
        records, so an adapter that batches values must flush them first.

        @param recordType: The record's type byte.
        @param body: Its body, at most the peer's maximum value size.
        @return: The frame payload to write.
        @raise ValueError: C{recordType} is not an extension type.
        @raise PeerVersionError: The session negotiated a version without
            the capability's records (1 for the relay, 1 or 2 for
            streams).
        @raise BufferDataError: The body is larger than the peer accepts.
        @raise LocalProtocolError: Values cannot flow in this state.
        """
        return self._state.sendRecord(recordType, body)

    def sealRecordParts(self, recordType: int, head: bytes, payload: _Bytes) -> memoryview:
        """
        Seal an extension record whose body is C{head + payload}, as
        L{sendRecord} would, into the buffer L{sealBuffer} reuses, without
        joining the parts (for records that carry bulk, such as a stream's
        data): the same frame, byte for byte, with its length prefix.  Its
        lifetime is that of L{sealBuffer}'s views: until the next call to
        either, or to L{releaseBuffers}.

        @return: A read-only view of the length prefix and the frame.
        @raise ValueError: As for L{sendRecord}.
        @raise PeerVersionError: As for L{sendRecord}.
        @raise BufferDataError: As for L{sendRecord}.
        @raise ChannelClosedError: Records cannot be sent in this state.
        @since: 1.0
        """
        return self._state.sealRecordParts(recordType, head, payload)

    def ping(self, data: bytes = b"") -> bytes:
        """
        Seal a ping; the peer answers with a pong carrying the same data.

        @param data: Up to 64 bytes of opaque data.
        @return: The frame payload to write.
        @raise ValueError: C{data} is longer than 64 bytes.
        @raise LocalProtocolError: Values cannot flow in this state.
        """
        return self._state.ping(data)

    def close(self, code: CloseCode = CloseCode.NORMAL, reason: str = "") -> bytes:
        """
        Seal a close record.  No value may be sent afterwards; values the peer
        sent before it saw the close are still delivered, until its own close
        record arrives (L{CloseReceived}).

        @param code: Why this side closes; the peer sees it.
        @param reason: A short human-readable reason (at most 256 UTF-8 bytes
            are sent); the peer sees it, so never put secrets in it.
        @return: The frame payload to write.
        @raise LocalProtocolError: The channel is not established.
        """
        return self._state.close(CloseCode(code), reason)

    def connectionLost(self) -> None:
        """
        Tell the channel the transport has ended.

        @raise TruncationError: Values were flowing and the peer's close
            record never came, so data may have been lost.
        @raise HandshakeError: The connection ended during the handshake.
        """
        self._state.connectionLost()
