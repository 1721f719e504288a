# -*- test-case-name: tests.test_protocol -*-
"""
L{BridgeProtocol}: the Twisted adapter over one sans-IO
L{netstructer.channel.Channel}.

The protocol owns framing (a 4-byte big-endian length prefix, as
L{Int32StringReceiver}), timers, queues and backpressure; the channel owns the
handshake, record protection and the value codec.  No cryptography or codec
logic lives here.
"""

from __future__ import annotations

import struct
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, cast

from twisted.internet import defer
from twisted.internet.abstract import FileDescriptor
from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.internet.interfaces import IAddress, IPushProducer, IReactorTime
from twisted.internet.protocol import ClientFactory, Factory
from twisted.logger import Logger
from twisted.protocols.basic import Int32StringReceiver
from twisted.python.failure import Failure
from zope.interface import Interface, implementer

from netstructer.channel import (
    HANDSHAKE_MAX_FRAME,
    PROTOCOL_VERSION,
    Channel,
    CloseCode,
    CloseReceived,
    Event,
    HandshakeCompleted,
    PongReceived,
    RecordReceived,
    Role,
    ValueReceived,
    ValuesReceived,
    checkOptions,
)
from netstructer.closing import DEFAULT_SHUTDOWN_GRACE, CloseMachine, CloseStep
from netstructer.errors import (
    BufferDataError,
    ChannelClosedError,
    HandshakeTimeout,
    LocalProtocolError,
    NetStructerError,
    OperationTimedOut,
    RemoteProtocolError,
    SessionClosed,
    TruncationError,
)
from netstructer.events import NO_EVENTS, IBridgeEvents
from netstructer.keys import KeyIdentity, Keyring, asKeyring
from netstructer.records import RecordRouter
from netstructer.relay import ProtocolRelay, RelayedValue
from netstructer.relayclient import RelayClient
from netstructer.tlsfailure import TLSFailureLimiter, describeTLSFailure, tlsHandshakeError
from netstructer.values import DEFAULT_LIMITS, Decoder, Limits

if TYPE_CHECKING:
    from twisted.internet.interfaces import IDelayedCall

__all__ = [
    "BridgeClientFactory",
    "BridgeConfig",
    "BridgeProtocol",
    "BridgeServerFactory",
    "IConnectionGate",
    "ISessionObserver",
    "PeerClosed",
    "sessionKey",
]

_PREFIX = struct.Struct("!I")

_IMMEDIATE_WRITE_LIMIT = 64 * 1024
"""The most bytes L{BridgeProtocol} holds back while it handles received
data, to send them straight to the socket afterwards instead of through the
transport's buffer.  Beyond that, writes are limited by bandwidth, not by
the latency of one more reactor iteration, and must reach the transport's
buffer, whose size pauses writers (L{BridgeProtocol.whenWritable})."""


@dataclass(frozen=True)
class BridgeConfig:
    """
    Everything a L{BridgeProtocol} needs to know, shared by every connection a
    factory makes.

    @ivar keyring: The keys; a client connects with the first, a server accepts
        every one.
    @ivar suite: C{"noise"} (default) or C{"fernet"}.
    @ivar cipher: The AEAD a noise client asks for (C{"AESGCM"} or
        C{"ChaChaPoly"}).
    @ivar acceptSuites: The suites a server accepts; default C{(suite,)}.
    @ivar limits: Decoding limits; C{limits.maxSize} is the largest encoded
        value this side accepts (default 16 MiB, at most 2 GiB).
    @ivar handshakeTimeout: Seconds a connection may take to authenticate.
    @ivar keepAliveInterval: Send a ping after this many seconds without
        hearing from the peer, and drop the connection if another interval
        passes in silence; L{None} disables keep-alive.
    @ivar idleTimeout: Close the session (with L{CloseCode.IDLE_TIMEOUT})
        after this many seconds without a value in either direction; L{None}
        (the default) never does.
    @ivar shutdownGrace: The grace period of every close, in seconds
        (default 5): a close that has not completed by then (the peer did not
        reply, or does not read) ends the connection anyway, logging how
        many values the peer had not confirmed (see L{netstructer.closing}).
    @ivar closeTimeout: Deprecated alias of C{shutdownGrace}, kept for
        existing callers; after construction both hold the grace period.
    @ivar maxPendingValues: Values L{BridgeProtocol.sendBuffer} may hold
        while the handshake is still running.
    @ivar maxQueuedValues: Received values queued for
        L{BridgeProtocol.recvBuffer} before reading from the peer pauses.
    @ivar maxQueuedBytes: Encoded bytes of received values queued before
        reading from the peer pauses.
    @ivar fernetTTL: With the fernet suite, the token TTL in seconds.
    @ivar protocolVersion: The highest protocol version to offer (a client)
        or accept (a server); 1 speaks exactly as version 1 did, for a peer
        that refuses anything newer.
    """

    keyring: Keyring
    suite: str = "noise"
    cipher: str = "AESGCM"
    acceptSuites: tuple[str, ...] | None = None
    limits: Limits = DEFAULT_LIMITS
    handshakeTimeout: float = 10.0
    keepAliveInterval: float | None = 60.0
    idleTimeout: float | None = None
    shutdownGrace: float = DEFAULT_SHUTDOWN_GRACE
    closeTimeout: float | None = None
    maxPendingValues: int = 1000
    maxQueuedValues: int = 1000
    maxQueuedBytes: int = 64 * 1024 * 1024
    fernetTTL: float | None = None
    protocolVersion: int = PROTOCOL_VERSION

    def __post_init__(self) -> None:
        if self.closeTimeout is not None:
            if self.shutdownGrace not in (DEFAULT_SHUTDOWN_GRACE, self.closeTimeout):
                raise ValueError(
                    "closeTimeout is an alias of shutdownGrace: give only shutdownGrace"
                )
            object.__setattr__(self, "shutdownGrace", self.closeTimeout)
        object.__setattr__(self, "closeTimeout", self.shutdownGrace)
        for name in ("handshakeTimeout", "shutdownGrace"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be a positive number of seconds")
        for name in ("keepAliveInterval", "idleTimeout", "fernetTTL"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ValueError(f"{name} must be a positive number of seconds or None")
        for name in ("maxPendingValues", "maxQueuedValues", "maxQueuedBytes"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        # Check what the channel would, now rather than in connectionMade.
        checkOptions(
            suite=self.suite,
            cipher=self.cipher,
            acceptSuites=self.acceptSuites,
            limits=self.limits,
            fernetTTL=self.fernetTTL,
        )

    @classmethod
    def fromKey(
        cls, key: bytes | str | Keyring | list[bytes | str], **options: Any
    ) -> BridgeConfig:
        """
        Build a configuration from any accepted form of key.

        @param key: A Fernet-format key, a list of them, or a L{Keyring}.
        @param options: Any other field of L{BridgeConfig}.
        @return: The configuration.
        """
        return cls(keyring=asKeyring(key), **options)

    def makeChannel(self, role: Role, currentTime: Callable[[], float]) -> Channel:
        """
        Make the sans-IO channel for one connection.

        @param role: Which end the connection is.
        @param currentTime: The clock for Fernet timestamps.
        @return: A new channel.
        """
        return Channel(
            role,
            self.keyring,
            suite=self.suite,
            cipher=self.cipher,
            acceptSuites=self.acceptSuites,
            limits=self.limits,
            fernetTTL=self.fernetTTL,
            currentTime=currentTime,
            protocolVersion=self.protocolVersion,
        )


class ISessionObserver(Interface):
    """
    Told by a L{BridgeProtocol} when its connection authenticates and when
    it ends.  A session registry is one.
    """

    def sessionOpened(session: BridgeProtocol) -> None:  # noqa: N805
        """
        The session's handshake completed.

        @param session: The protocol.
        """

    def sessionClosed(session: BridgeProtocol, reason: Failure) -> None:  # noqa: N805
        """
        The connection ended, whether or not it had authenticated.

        @param session: The protocol.
        @param reason: Why it ended: L{ConnectionDone} for a clean close.
        """


def sessionKey(address: IAddress | None) -> str:
    """
    The registry key of a peer address: C{"ip:port"}, or C{"[ip]:port"} for
    IPv6; other addresses (UNIX sockets) by their string form.

    @param address: The peer's address.
    @return: The key.
    """
    host = getattr(address, "host", None)
    port = getattr(address, "port", None)
    if host is None or port is None:
        return str(address)
    if ":" in host:
        return f"[{host}]:{port}"
    return f"{host}:{port}"


def _bufferingDescriptor(transport: object) -> FileDescriptor | None:
    """
    The transport as a L{FileDescriptor} whose write buffer
    L{BridgeProtocol} may bypass (a TCP or UNIX connection of one of the
    select/poll/epoll/kqueue reactors: see L{BridgeProtocol._sendNow}), or
    L{None} for any other transport (TLS, IOCP, test transports).

    Bypassing the buffer needs to know whether it is empty, which
    L{FileDescriptor} keeps in C{dataBuffer}, C{offset} and
    C{_tempDataLen}: a descriptor without them is not used.

    @param transport: The protocol's transport.
    @return: The descriptor, or L{None}.
    """
    if isinstance(transport, FileDescriptor) and all(
        hasattr(transport, name) for name in ("_tempDataLen", "dataBuffer", "offset")
    ):
        return transport
    return None


def _writeBufferEmpty(descriptor: FileDescriptor) -> bool:
    """
    Whether C{descriptor} holds no unwritten data, is not closing, and sends
    what is written to it to its socket unchanged (not through TLS, which
    L{startTLS<twisted.internet.interfaces.ITLSTransport.startTLS>} can
    start at any time).
    """
    return (
        not descriptor._tempDataLen
        and descriptor.offset == len(descriptor.dataBuffer)
        and bool(descriptor.connected)
        and not descriptor.disconnecting
        and not getattr(descriptor, "TLS", False)
    )


class _Transport(Protocol):
    """
    What L{BridgeProtocol} uses of its transport: a TCP, TLS or UNIX
    transport (L{ITransport}, L{IConsumer}, L{IPushProducer}, and
    C{abortConnection}).
    """

    def write(self, data: bytes) -> None: ...

    def writeSequence(self, data: list[bytes]) -> None: ...

    def loseConnection(self) -> None: ...

    def abortConnection(self) -> None: ...

    def getPeer(self) -> IAddress: ...

    def registerProducer(self, producer: IPushProducer, streaming: bool) -> None: ...

    def unregisterProducer(self) -> None: ...

    def pauseProducing(self) -> None: ...

    def resumeProducing(self) -> None: ...


@implementer(IPushProducer)
class _WriteFlow:
    """
    Registered with the transport as its streaming producer, so the protocol
    learns when the transport's write buffer is full and when it drains.

    @ivar paused: Whether the transport asked writers to pause.
    """

    def __init__(self, owner: BridgeProtocol | None = None) -> None:
        self.paused = False
        self._waiting: list[defer.Deferred[None]] = []
        self._owner = owner

    def pauseProducing(self) -> None:
        if not self.paused and self._owner is not None:
            self._owner.events.writingPaused(self._owner)
        self.paused = True

    def resumeProducing(self) -> None:
        if self.paused and self._owner is not None:
            self._owner.events.writingResumed(self._owner)
        self.paused = False
        waiting, self._waiting = self._waiting, []
        for d in waiting:
            d.callback(None)

    def stopProducing(self) -> None:
        self.resumeProducing()

    def whenWritable(self) -> defer.Deferred[None]:
        if not self.paused:
            return defer.succeed(None)
        d: defer.Deferred[None] = defer.Deferred(self._waiting.remove)
        self._waiting.append(d)
        return d


class PeerClosed(SessionClosed, ConnectionDone):
    """
    The peer closed the session with a close record: a L{SessionClosed}
    (with its C{code} and C{reason}) that is also Twisted's
    L{ConnectionDone}, so that code checking for a clean end keeps working.
    """

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "the peer closed the session"


def _noDelay(transport: object) -> None:
    """
    Turn Nagle's algorithm off on a TCP transport (under TLS too), as the
    blocking client does: records are whole messages, and a small one must
    not wait for the peer's delayed acknowledgement of the previous one
    (about 40 ms on Linux).  Other transports are left alone.
    """
    while transport is not None:
        setNoDelay = getattr(transport, "setTcpNoDelay", None)
        if callable(setNoDelay):
            try:
                setNoDelay(True)
            except OSError:
                # Not a socket that takes the option (a UNIX socket behind a
                # wrapper): nothing to tune.
                return
            return
        transport = getattr(transport, "transport", None)


class BridgeProtocol(Int32StringReceiver):
    """
    An encrypted, authenticated connection carrying Python values.

    Frames are length-prefixed as by L{Int32StringReceiver} (whose interface,
    C{stringReceived}, C{sendString}, C{MAX_LENGTH} and
    C{lengthLimitExceeded}, it keeps), but buffering is linear in the frame
    size, and C{MAX_LENGTH} is small until the peer has authenticated.

    Applications send with L{sendBuffer} and receive either by overriding
    L{bufferReceived} or by calling L{recvBuffer}.

    Small values are batched: those sent during one reactor turn (or while
    one received frame is handled) leave in one VALUES record, one AEAD
    operation and one frame for all of them; a received batch is delivered
    one value at a time.  Over a TCP or UNIX transport, what is written
    while received data is handled goes to the socket in one C{send} before
    control returns to the reactor (see L{_sendNow}).

    @ivar key: The session's registry key, C{"ip:port"}.
    @ivar name: On a server, the name of the key that authenticated the
        session (C{alice} for the key file line C{alice <key>}), once the
        handshake has completed; L{None} for an anonymous key, before the
        handshake, and on a client.
    @ivar keyId: The non-secret ID of the key that authenticated the
        session (8 hexadecimal digits, as C{netstructer keygen} shows it):
        on a server the client's key, on a client the key it connected with;
        C{""} before the handshake completes.
    @ivar peerKey: On a server, the L{KeyIdentity} of the client's key once
        the handshake has completed (what a key reload checks); else
        L{None}.
    @ivar peer: The peer's address.
    @ivar openedAt: When the handshake completed (L{None} before).
    @ivar lastActivity: When a frame was last received.
    @ivar valuesIn: Values delivered to the application.
    @ivar valuesOut: Values written (batched values count once their batch
        is).
    @ivar bytesIn: Frame bytes received (after the length prefix).
    @ivar bytesOut: Frame bytes of values sent.
    @ivar closeReason: Why the connection ended, once it has: a L{Failure}
        of L{ConnectionDone} for a clean close.
    @ivar closeCode: The peer's close code, if it sent one.
    @ivar closeMessage: The peer's close reason text, if it sent one.
    @ivar records: Routes the extension records of protocol version 2 to
        the capabilities (relay, streams) attached to this session.
    @ivar events: Told of handshake outcomes, received records, pauses and
        the end of the connection (see L{netstructer.events}); set by the
        server factory, a no-op by default.
    @ivar connectedAt: When the connection was made (L{None} before).
    @ivar suite: The suite the handshake settled on (L{None} before).
    """

    MAX_LENGTH = HANDSHAKE_MAX_FRAME
    _log = Logger()
    events: IBridgeEvents = NO_EVENTS
    connectedAt: float | None = None
    suite: str | None = None
    transport: _Transport  # type: ignore[assignment]

    def __init__(
        self,
        role: Role,
        config: BridgeConfig,
        clock: IReactorTime,
        observer: ISessionObserver | None = None,
        logger: Logger | None = None,
    ) -> None:
        """
        @param role: L{Role.CLIENT} or L{Role.SERVER}.
        @param config: The connection's configuration.
        @param clock: Schedules the timers.
        @param observer: Told when the session opens and closes.
        @param logger: Where to log; the class's logger by default.
        """
        self.role = role
        self.config = config
        self.clock = clock
        self.observer = observer
        if logger is not None:
            self._log = logger
        self.key = ""
        self.name: str | None = None
        self.keyId = ""
        self.peerKey: KeyIdentity | None = None
        self.peer: IAddress | None = None
        self.closeReason: Failure | None = None
        self.closeCode: CloseCode | None = None
        self.closeMessage = ""
        self.openedAt: float | None = None
        self.lastActivity = 0.0
        self.valuesIn = 0
        self.valuesOut = 0
        self.bytesIn = 0
        self.bytesOut = 0
        self._pending: deque[bytes] = deque()
        self._channel: Channel = config.makeChannel(role, clock.seconds)
        self.records = RecordRouter()
        self._relay: ProtocolRelay | None = None
        if role is Role.CLIENT:
            self.records.register("relay", self._relayRecordReceived)
        self._buffer = bytearray()
        self._processing = False
        self._receivePaused = False
        # Whether values must stop being delivered: receiving is paused, or
        # the connection failed or ended.
        self._halted = False
        self._established = False
        self._closeRequested: tuple[CloseCode, str] | None = None
        self._failure: Failure | None = None
        self._queue: deque[tuple[object, int]] = deque()
        self._queuedBytes = 0
        self._waiters: deque[defer.Deferred[object]] = deque()
        self._whenEstablished: list[defer.Deferred[BridgeProtocol]] = []
        self._whenClosed: list[defer.Deferred[None]] = []
        self._writeFlow = _WriteFlow(self)
        self._handshakeTimer: IDelayedCall | None = None
        self._keepAliveTimer: IDelayedCall | None = None
        self._idleTimer: IDelayedCall | None = None
        self._closeTimer: IDelayedCall | None = None
        self._awaitingPong = False
        self._lastValue = 0.0
        self._receivedSize = 0
        self._held: list[object] = []
        self._batch: list[bytes] = []
        self._batchSize = 0
        self._batchLimit = 0
        self._flushCall: IDelayedCall | None = None
        self._encode: Callable[[object], bytes] = self._channel.encoder.encode
        self._producerRegistered = False
        self._closing = CloseMachine(config.shutdownGrace)
        self._peerClosed: Failure | None = None
        self._descriptor: FileDescriptor | None = None
        self._corked: list[bytes] | None = None
        self._corkedSize = 0

    @property
    def queuedValues(self) -> int:
        """
        Received values waiting for L{recvBuffer}.
        """
        return len(self._queue)

    @property
    def established(self) -> bool:
        """
        Whether the handshake has completed and the connection has not ended.
        """
        return self._established and self.closeReason is None

    @property
    def protocolVersion(self) -> int | None:
        """
        The protocol version negotiated with the peer; L{None} until the
        handshake settles it.
        """
        return self._channel.protocolVersion

    def sendRecord(self, recordType: int, body: bytes) -> None:
        """
        Send one extension record (protocol version 2) after every value
        sent before it.  For the capabilities' adapters, not applications.

        @raise PeerVersionError: The peer negotiated version 1.
        @raise ChannelClosedError: The session is not established.
        """
        self.flush()
        self.sendString(self._channel.sendRecord(recordType, body))

    def __repr__(self) -> str:
        return f"<BridgeProtocol {self.role.value} {self.key or 'unconnected'}>"

    # Connection lifecycle.

    def connectionMade(self) -> None:
        """
        Start the handshake and its timer.
        """
        self.peer = self.transport.getPeer()
        self.key = sessionKey(self.peer)
        now = self.clock.seconds()
        self.lastActivity = self.connectedAt = now
        _noDelay(self.transport)
        self.transport.registerProducer(self._writeFlow, True)
        self._producerRegistered = True
        self._descriptor = _bufferingDescriptor(self.transport)
        self._handshakeTimer = self.clock.callLater(
            self.config.handshakeTimeout, self._handshakeTimedOut
        )
        # A server makes its ephemeral key now, while the client makes its own
        # and sends its hello, rather than once the hello has arrived.  (Not
        # in __init__: a refused connection never gets here.)
        self._channel.prepareHandshake()
        self._flushChannel()

    def _handshakeTimedOut(self) -> None:
        self._handshakeTimer = None
        error = HandshakeTimeout(
            f"the handshake with {self.key} did not complete within "
            f"{self.config.handshakeTimeout} seconds"
        )
        self._log.warn("Dropping {peer}: {error}", peer=self.key, error=error)
        self._fail(error)

    def dataReceived(self, data: bytes) -> None:
        """
        Split the stream into frames in linear time and hand each to
        L{stringReceived}.  A length prefix over C{MAX_LENGTH} calls
        L{lengthLimitExceeded} before the frame is buffered.

        Over a TCP or UNIX transport of a select/poll/epoll reactor (see
        L{_bufferingDescriptor}), the frames written while these frames are
        handled (replies to values, handshake messages) are held back and
        then sent to the socket at once, together: see L{_transmit}.
        """
        if self._descriptor is None or self._corked is not None:
            self._receive(data)
            return
        corked: list[bytes] = []
        self._corked = corked
        self._corkedSize = 0
        try:
            self._receive(data)
        finally:
            self._corked = None
            if corked:
                self._sendNow(corked)

    def _receive(self, data: bytes) -> None:
        """
        Handle received bytes: at once when they are exactly one frame and
        nothing else waits (a request, or its answer, in one read), through
        the buffer otherwise.
        """
        if (
            not self._buffer
            and not self._processing
            and not self._receivePaused
            and not self._held
            and len(data) >= 4
        ):
            (length,) = _PREFIX.unpack_from(data)
            if len(data) == 4 + length and length <= self.MAX_LENGTH:
                # The frame is read in place: C{data} is immutable, so a
                # view of it that outlives this call harms nothing.
                self._processing = True
                try:
                    self.stringReceived(memoryview(data)[4:])  # type: ignore[arg-type]
                finally:
                    self._processing = False
                    if self._batch:
                        self.flush()
                return
        self._buffer += data
        self._processBuffer()

    def _sendingTogether(self, call: Callable[[], None]) -> None:
        """
        Call C{call}, holding back the frames written meanwhile, and then
        send them to the socket at once, together (see L{_sendNow}), when
        the transport allows it.

        @param call: What writes the frames.
        """
        if self._descriptor is None or self._corked is not None:
            call()
            return
        corked: list[bytes] = []
        self._corked = corked
        self._corkedSize = 0
        try:
            call()
        finally:
            self._corked = None
            if corked:
                self._sendNow(corked)

    def _processBuffer(self) -> None:
        if self._processing:
            # Called from a handler (resumeReceiving) while a frame is being
            # delivered: the running loop goes on with the next frame.
            return
        self._processing = True
        buffer = self._buffer
        offset = 0
        available = len(buffer)
        try:
            if self._held:
                held, self._held = self._held, []
                self._deliver(held, self._receivedSize)
            while available - offset >= 4 and not self._receivePaused:
                (length,) = _PREFIX.unpack_from(buffer, offset)
                if length > self.MAX_LENGTH:
                    del buffer[:]
                    self.lengthLimitExceeded(length)
                    return
                end = offset + 4 + length
                if end > available:
                    break
                with memoryview(buffer) as view, view[offset + 4 : end] as frame:
                    offset = end
                    self.stringReceived(frame)  # type: ignore[arg-type]
                if self.closeReason is not None or self._failure is not None:
                    del buffer[:]
                    return
        finally:
            self._processing = False
            if offset:
                del buffer[:offset]
            if self._batch:
                # Values sent while these frames were handled (answers,
                # echoes) leave in one record per batch.
                self.flush()

    def lengthLimitExceeded(self, length: int) -> None:
        """
        The peer announced a frame over C{MAX_LENGTH}: log a
        L{BufferDataError} naming the peer and abort the connection.  The
        frame is never buffered.

        @param length: The announced length.
        """
        error = BufferDataError(
            f"{self.key} announced a frame of {length} bytes; the limit "
            f"{'before authentication ' if not self._established else ''}is "
            f"{self.MAX_LENGTH}"
        )
        self._log.warn("Dropping {peer}: {error}", peer=self.key, error=error)
        self._fail(error)

    def stringReceived(self, string: bytes) -> None:
        """
        Feed one frame to the channel and act on the event it produces.

        @param string: The frame payload (a L{memoryview} valid only during
            this call, when called by L{dataReceived}).
        """
        channel = self._channel
        self.lastActivity = now = self.clock.seconds()
        self.bytesIn += len(string)
        if self._batch:
            # What this side sent so far must be sealed before the frame is
            # opened: it may be the peer's close, after which nothing more
            # can be sent.
            self.flush()
        try:
            event = channel.receiveFrame(string)
        except RemoteProtocolError as e:
            self._log.warn("Dropping {peer}: {error}", peer=self.key, error=e)
            self._flushChannel()
            self._fail(e, abort=False)
            return
        except LocalProtocolError:
            # The channel already failed; the transport is on its way down.
            return
        if type(event) is ValueReceived:
            self.valuesIn += 1
            self._lastValue = now
            self._receivedSize = event.size
            self.events.valuesReceived(self, 1, event.size)
            self._valueSink()(event.value)
            return
        if type(event) is ValuesReceived:
            self._lastValue = now
            self.events.valuesReceived(self, len(event.values), event.size // len(event.values))
            self._deliver(event.values, event.size // len(event.values))
            return
        self._flushChannel()
        if event is not None:
            self._controlEvent(event)

    def _deliver(self, values: list[object], size: int) -> None:
        """
        Hand the values of one record to L{bufferReceived}, one by one,
        holding back those left when a handler pauses receiving or the
        connection ends.

        @param values: The values, in order.
        @param size: Each one's share of the record's bytes, for the
            receive queue's byte bound.
        """
        self._receivedSize = size
        received = self._valueSink()
        self.valuesIn += len(values)
        for index, value in enumerate(values):
            if self._halted:
                self._held = values[index:]
                self.valuesIn -= len(values) - index
                return
            received(value)

    def _valueSink(self) -> Callable[[object], object]:
        """
        What received values go to, looked up once per record: here,
        L{bufferReceived}; a subclass may hand them straight to whatever its
        C{bufferReceived} would call, saving a call per value.
        """
        return self.bufferReceived

    def _controlEvent(self, event: Event) -> None:
        if isinstance(event, HandshakeCompleted):
            self._handshakeCompleted(event)
        elif isinstance(event, RecordReceived):
            try:
                self.records.recordReceived(event)
            except RemoteProtocolError as e:
                self._log.warn("Dropping {peer}: {error}", peer=self.key, error=e)
                self._fail(e, abort=False)
        elif isinstance(event, PongReceived):
            self._awaitingPong = False
            self._closing.pongReceived()
        elif isinstance(event, CloseReceived):
            self._closeReceived(event)

    def _closeReceived(self, event: CloseReceived) -> None:
        """
        The peer's close record arrived: the close handshake is complete on
        this side, which ends the transport now (after the reply, already
        written, when the peer closed first).  The grace timer stays until
        the connection has ended.
        """
        self.closeCode = event.code
        self.closeMessage = event.reason
        self._cancelTimers(keepGrace=True)
        step = self._closing.closeReceived(self.clock.seconds(), self.valuesOut)
        self._armGrace()
        if step is CloseStep.REPLIED:
            # Our reply is sealed: nothing more can be sent, and nothing
            # more arrives, so a reader waiting now learns of the close now.
            self._closeRequested = (event.code, event.reason)
            if event.code is not CloseCode.NORMAL:
                self._log.info(
                    "{peer} closed the session: {code} {reason}",
                    peer=self.key,
                    code=event.code.name,
                    reason=event.reason,
                )
            reason = f": {event.reason}" if event.reason else ""
            self._peerClosed = Failure(
                PeerClosed(
                    f"{self.key} closed the session ({event.code.name}{reason})",
                    event.code,
                    event.reason,
                )
            )
            waiters, self._waiters = self._waiters, deque()
            for d in waiters:
                d.errback(self._peerClosed)
        self._loseConnection()

    def _loseConnection(self) -> None:
        """
        Close the transport once pending writes drain.  The write-flow
        producer is unregistered first: TLS transports postpone their
        shutdown while a producer is registered.  Frames held back (a close
        reply) go to the socket at once, as L{dataReceived} would send them.
        """
        corked = self._corked
        if corked:
            chunks = list(corked)
            corked.clear()
            self._sendNow(chunks)
        if self._producerRegistered:
            self._producerRegistered = False
            self.transport.unregisterProducer()
        self.transport.loseConnection()

    def _handshakeCompleted(self, event: HandshakeCompleted) -> None:
        if self._handshakeTimer is not None:
            self._handshakeTimer.cancel()
            self._handshakeTimer = None
        self._established = True
        self.suite = event.suite
        self.MAX_LENGTH = self._channel.maxFrameSize
        peerKey = self._channel.peerKey
        if peerKey is not None:
            self.peerKey = peerKey
            self.name = peerKey.name
            self.keyId = peerKey.keyId
        else:
            self.keyId = self._channel.keyring.keyIDs()[0]
        now = self.clock.seconds()
        self.openedAt = now
        self._lastValue = now
        if self.role is Role.SERVER:
            # Not on clients: whoever connects learns of the session from what
            # it waits on (connect()'s Deferred), and emitting a line costs
            # about as much as the rest of this method, just before the first
            # values go out.
            self._log.debug(
                "Session {peer} established ({suite})", peer=self.key, suite=event.suite
            )
        self._batchLimit = self._channel.batchLimit
        self._encode = self._channel.encoder.encode
        pending = self._pending
        try:
            while pending:
                self._batchEncoded(pending[0])
                pending.popleft()
        except BufferDataError as e:
            self._log.warn(
                "A value queued during the handshake with {peer} is larger than the peer "
                "accepts: {error}",
                peer=self.key,
                error=e,
            )
            self._fail(e)
            return
        if self.config.keepAliveInterval is not None:
            self._keepAliveTimer = self.clock.callLater(
                self.config.keepAliveInterval, self._keepAliveCheck, self.config.keepAliveInterval
            )
        if self.config.idleTimeout is not None:
            self._idleTimer = self.clock.callLater(
                self.config.idleTimeout, self._idleCheck, self.config.idleTimeout
            )
        if self.observer is not None:
            try:
                self.observer.sessionOpened(self)
            except Exception:  # noqa: BLE001 -- observers are application code; log, go on
                self._log.failure("Session observer failed when {peer} opened", peer=self.key)
        self.handshakeCompleted()
        waiting, self._whenEstablished = self._whenEstablished, []
        for d in waiting:
            d.callback(self)
        if self._closeRequested is not None:
            code, reason = self._closeRequested
            self.close(reason, code)

    def handshakeCompleted(self) -> None:
        """
        Called once the peer has authenticated, before values flow.  Override
        it to start sending; the default does nothing.
        """

    def _keepAliveCheck(self, interval: float) -> None:
        silent = self.clock.seconds() - self.lastActivity
        if self._awaitingPong and silent >= interval:
            error = ConnectionLost(f"{self.key} did not answer a keep-alive ping")
            self._log.info("Dropping {peer}: no answer to a keep-alive ping", peer=self.key)
            self._keepAliveTimer = None
            self._fail(error)
            return
        if silent >= interval and not self._awaitingPong:
            self._awaitingPong = True
            if self._batch:
                self.flush()
            self._closing.pingSent(self.valuesOut)
            self._write(self._channel.ping())
            delay = interval
        else:
            delay = max(interval - silent, 0.001) if not self._awaitingPong else interval
        self._keepAliveTimer = self.clock.callLater(delay, self._keepAliveCheck, interval)

    def _idleCheck(self, timeout: float) -> None:
        idle = self.clock.seconds() - self._lastValue
        if idle >= timeout:
            self._idleTimer = None
            self._log.info("Closing idle session {peer}", peer=self.key)
            self.close("idle timeout", CloseCode.IDLE_TIMEOUT)
            return
        self._idleTimer = self.clock.callLater(timeout - idle, self._idleCheck, timeout)

    # Sending.

    def sendString(self, string: bytes) -> None:
        """
        Write one frame payload with its length prefix (see L{_transmit}).

        @param string: The payload.
        @raise BufferDataError: It is too long for the 4-byte prefix.
        """
        if len(string) >= 2**32:
            raise BufferDataError(f"a frame of {len(string)} bytes cannot be length-prefixed")
        self._transmit(_PREFIX.pack(len(string)), string)

    def _transmit(self, prefix: bytes, frame: bytes) -> None:
        """
        Write a frame and its length prefix.

        While L{dataReceived} holds writes back (see L{_sendNow}), the frame
        joins them, up to L{_IMMEDIATE_WRITE_LIMIT} bytes in all.  Past that
        (an application sending many values, or a large one, from a callback
        of a received value), what was held back and every later frame go
        through the transport's buffer, so that its size pauses writers as
        usual.  At other times, frames go through the transport's buffer,
        without being copied.

        @param prefix: The length prefix.
        @param frame: The frame payload.
        """
        corked = self._corked
        if corked is not None:
            size = self._corkedSize + len(prefix) + len(frame)
            if size <= _IMMEDIATE_WRITE_LIMIT:
                corked.append(prefix)
                corked.append(frame)
                self._corkedSize = size
                return
            self._uncork()
            self._corked = None
        self.transport.writeSequence([prefix, frame])

    def _uncork(self) -> None:
        """
        Hand the frames held back so far to the transport's buffer, so that
        what is written next, or closing the transport, comes after them.
        """
        corked = self._corked
        if corked:
            self.transport.writeSequence(corked)
            corked.clear()

    def _sendNow(self, chunks: list[bytes]) -> None:
        """
        Send the frames written while L{dataReceived} ran, in one C{send},
        before returning to the reactor.

        A L{FileDescriptor} buffers every write until the reactor's next
        iteration finds the socket writable: each reply would cost an
        C{epoll_ctl} to start watching for writability, an C{epoll_wait}
        that returns at once, and an C{epoll_ctl} to stop watching, on top
        of the C{send}; for a small value, that is most of the time its
        round trip spends outside the application.  So when nothing written
        before waits in the transport's buffer, the frames go to the socket
        now, with the descriptor's own C{writeSomeData}.  What the socket
        does not take goes to the transport's buffer, as do all the frames
        on an error, which the transport then reports as usual (by losing
        the connection).

        The frames leave together, as they did through the transport's
        buffer: sending the first at once and the others later would let
        Nagle's algorithm hold those back until the peer acknowledges the
        first, which it may delay.

        @param chunks: The length prefixes and frames, in order.
        """
        data = b"".join(chunks)
        descriptor = self._descriptor
        if descriptor is not None and _writeBufferEmpty(descriptor):
            sent = descriptor.writeSomeData(data)
            if isinstance(sent, int):
                if sent >= len(data):
                    return
                data = data[sent:]
        self.transport.write(data)

    def _write(self, frame: bytes) -> None:
        self.sendString(frame)

    def _writeValueFrame(self, frame: bytes, count: int = 1) -> None:
        self._transmit(_PREFIX.pack(len(frame)), frame)
        self.valuesOut += count
        self.bytesOut += len(frame)
        self._lastValue = self.clock.seconds()

    def _batchEncoded(self, encoded: bytes) -> None:
        """
        Add an encoded value to the batch of values to send in one record,
        writing the batch first if the value does not fit in it, and the
        value alone if it is too large to share a record.

        @param encoded: The encoded value.
        @raise BufferDataError: The value is larger than the peer accepts;
            nothing of it was written.
        """
        size = len(encoded)
        if size > self._batchLimit:
            # Records are sealed in the order they are written (their nonces
            # count up), so the batch goes first.
            if self._batch:
                self.flush()
            self._writeValueFrame(self._channel.sendEncoded(encoded))
            return
        if self._batchSize + size > self._batchLimit:
            self.flush()
        self._batch.append(encoded)
        self._batchSize += size
        if self._flushCall is None and not self._processing:
            # Sent from outside a frame's handling (a timer, a Deferred
            # firing, application code): the batch leaves at the end of
            # this reactor turn, with every value sent during it.
            self._flushCall = self.clock.callLater(0, self._flushLater)

    def _flushLater(self) -> None:
        self._flushCall = None
        self._sendingTogether(self.flush)

    def flush(self) -> None:
        """
        Write the values that L{sendBuffer} has batched, now, in one record.

        L{sendBuffer} batches small values and writes them at the end of the
        frame being handled, or else at the end of the current reactor turn;
        call this only to write them sooner.
        """
        if self._flushCall is not None:
            self._flushCall.cancel()
            self._flushCall = None
        batch = self._batch
        if not batch:
            return
        self._batch = []
        self._batchSize = 0
        if self._failure is not None or self.closeReason is not None:
            # The connection failed or ended before the batch could leave:
            # like writes a failed transport discards, these values are
            # lost, and the connection's close reason says why.
            return
        self._writeValueFrame(self._channel.sendEncodedValues(batch), len(batch))

    def _flushChannel(self) -> None:
        for frame in self._channel.framesToSend():
            self.sendString(frame)

    def sendBuffer(self, value: object) -> None:
        """
        Send a value.  The value is encoded at once (so that an L{EncodeError}
        is raised here), and small values are batched: every value sent while
        a received frame is handled leaves, in one record, when that handling
        ends; every value sent otherwise (from a timer, a Deferred callback,
        application code) leaves at the end of the current reactor turn, or
        as soon as 16 KiB of them are waiting.  A large value goes in a
        record of its own.  Values always leave in the order they were
        sent.  (A test driving the protocol with a L{task.Clock
        <twisted.internet.task.Clock>} sees them written when it calls
        C{clock.advance(0)}, or L{flush}.)  Before the handshake completes,
        values wait (up to C{config.maxPendingValues} of them) and leave, in
        order, when it does.

        This never blocks and never waits for the peer; a writer producing
        many values should wait on L{whenWritable} between them so that memory
        stays bounded.

        @param value: A value of a type L{netstructer.values} supports.
        @raise EncodeError: The value cannot be encoded; nothing was sent and
            the connection stays usable.
        @raise BufferDataError: The encoded value is larger than the peer
            accepts (or, before the handshake, than this side accepts), or
            too many values wait for the handshake; nothing was sent.
        @raise ChannelClosedError: The connection is closing or closed.
        """
        if self.closeReason is not None or self._failure is not None:
            raise ChannelClosedError(
                f"cannot send to {self.key or 'an unconnected peer'}: the connection has ended"
            )
        if self._closeRequested is not None:
            raise ChannelClosedError(f"cannot send to {self.key}: the session is closing")
        if self._established:
            if type(value) is bytes and len(value) > self._batchLimit:
                # Large bytes go alone, sealed without an extra copy.
                if self._batch:
                    self.flush()
                self._writeValueFrame(self._channel.sendValue(value))
                return
            encoded = self._encode(value)
            size = len(encoded)
            if size > self._batchLimit - self._batchSize:
                self._batchEncoded(encoded)
                return
            # The common case, inline: the value joins the batch.
            self._batch.append(encoded)
            self._batchSize += size
            if self._flushCall is None and not self._processing:
                self._flushCall = self.clock.callLater(0, self._flushLater)
            return
        encoded = self._channel.encodeValue(value)
        if len(encoded) > self.config.limits.maxSize:
            raise BufferDataError(
                f"the value encodes to {len(encoded)} bytes, more than the "
                f"{self.config.limits.maxSize} this side accepts; send it in smaller parts"
            )
        if len(self._pending) >= self.config.maxPendingValues:
            raise BufferDataError(
                f"{self.config.maxPendingValues} values already wait for the handshake "
                f"with {self.key or 'the server'}; wait for it before sending more"
            )
        self._pending.append(encoded)

    @property
    def writable(self) -> bool:
        """
        Whether the transport is accepting writes, that is, whether
        L{whenWritable} would fire at once.  Checking it costs less than
        calling L{whenWritable} after every value.
        """
        return not self._writeFlow.paused

    def whenWritable(self) -> defer.Deferred[None]:
        """
        Wait until the transport's write buffer has room.

        @return: A Deferred that fires at once if the transport is accepting
            writes, or when it next drains.
        """
        return self._writeFlow.whenWritable()

    # Receiving.

    def bufferReceived(self, value: object) -> None:
        """
        A value arrived.  Override this to handle values as they come; by
        default the value is queued for L{recvBuffer}, and reading from the
        peer pauses while the queue is over its bounds.

        @param value: The decoded value.
        """
        if self._waiters:
            self._waiters.popleft().callback(value)
            return
        size = self._receivedSize
        self._queue.append((value, size))
        self._queuedBytes += size
        if (
            len(self._queue) >= self.config.maxQueuedValues
            or self._queuedBytes >= self.config.maxQueuedBytes
        ):
            self.pauseReceiving()

    def recvBuffer(self, timeout: float | None = None) -> defer.Deferred[object]:
        """
        Receive the next value, in order.

        @param timeout: Seconds to wait; L{None} waits as long as the
            connection lasts.
        @return: A Deferred firing with the value.  It fails with the reason
            the connection ended (L{ConnectionDone} for a clean close,
            L{ConnectionLost}, L{AuthenticationError}, ...) once every value
            received before that has been taken, or with
            L{OperationTimedOut} after C{timeout} seconds.  A timeout or a
            cancellation consumes nothing.
        """
        if self._queue:
            value, size = self._queue.popleft()
            self._queuedBytes -= size
            self._maybeResumeReceiving()
            return defer.succeed(value)
        if self.closeReason is not None:
            return defer.fail(self.closeReason)
        if self._peerClosed is not None:
            return defer.fail(self._peerClosed)
        if timeout is None:
            # The usual case, once per value for a reader waiting on each:
            # no timer and no closure to make.
            waiter: defer.Deferred[object] = defer.Deferred(self._forgetWaiter)
            self._waiters.append(waiter)
            return waiter
        timer: IDelayedCall | None = None

        def cancel(d: defer.Deferred[object]) -> None:
            if timer is not None and timer.active():
                timer.cancel()
            self._waiters.remove(d)

        d: defer.Deferred[object] = defer.Deferred(cancel)
        self._waiters.append(d)

        def timedOut() -> None:
            self._waiters.remove(d)
            d.errback(
                OperationTimedOut(f"no value arrived from {self.key} within {timeout} seconds")
            )

        timer = self.clock.callLater(timeout, timedOut)

        def stopTimer(result: object) -> object:
            if timer is not None and timer.active():
                timer.cancel()
            return result

        d.addBoth(stopTimer)
        return d

    def _forgetWaiter(self, waiter: defer.Deferred[object]) -> None:
        """
        Cancel a L{recvBuffer} call that has no timeout.

        @param waiter: Its Deferred.
        """
        self._waiters.remove(waiter)

    def pauseReceiving(self) -> None:
        """
        Stop reading from the peer (for a L{bufferReceived} override that
        cannot keep up); frames already buffered wait too.
        """
        if not self._receivePaused:
            self._receivePaused = self._halted = True
            self.events.receivingPaused(self)
            self.transport.pauseProducing()

    def resumeReceiving(self) -> None:
        """
        Resume reading after L{pauseReceiving}, delivering buffered frames
        first.
        """
        if self._receivePaused:
            self._receivePaused = False
            self.events.receivingResumed(self)
            self._halted = self.closeReason is not None or self._failure is not None
            if self.closeReason is None:
                self.transport.resumeProducing()
                self._processBuffer()

    def _maybeResumeReceiving(self) -> None:
        if (
            self._receivePaused
            and len(self._queue) <= self.config.maxQueuedValues // 2
            and self._queuedBytes <= self.config.maxQueuedBytes // 2
        ):
            self.resumeReceiving()

    # Closing.

    def close(self, reason: str | None = None, code: CloseCode = CloseCode.NORMAL) -> None:
        """
        Close the session cleanly: send an authenticated close record (the
        peer sees C{code} and C{reason}) after every value already given to
        L{sendBuffer}, keep delivering the values the peer sent before it
        saw it, and close the transport as soon as the peer replies.  During
        the handshake, the close waits for it, so that values already passed
        to L{sendBuffer} are sent first.  Whatever the peer does, the
        connection ends within C{config.shutdownGrace} seconds of this call:
        see L{_graceExpired}.

        @param reason: A short reason the peer will see; never a secret.
        @param code: Why the session closes.
        """
        if self.closeReason is not None or self._closing.sentClose:
            return
        self._armGrace()
        if not self._established:
            self._closeRequested = (code, reason or "")
            return
        channel = self._channel
        if self._batch:
            self.flush()
        try:
            frame = channel.close(code, reason or "")
        except ChannelClosedError:
            return
        self._closeRequested = (code, reason or "")
        self._closing.closeSent(self.clock.seconds(), self.valuesOut)
        self._write(frame)

    def closeWritten(self) -> bool:
        """
        Whether this side's part of the close is done: the connection has
        ended, or the close record (and everything before it) has left the
        transport's buffer for the socket's.

        @return: L{True} if so; L{False} if not, or if the transport cannot
            tell (TLS, or a transport that is not a socket).
        """
        if self.closeReason is not None:
            return True
        descriptor = self._descriptor
        return (
            self._closing.closing
            and (self._closing.sentClose or self._closing.step is not None)
            and descriptor is not None
            and _writeBufferEmpty(descriptor)
        )

    def _armGrace(self) -> None:
        """
        Start the grace period of the close, if it is not running yet.
        """
        now = self.clock.seconds()
        self._closing.start(now)
        if self._closeTimer is None and self._closing.deadline is not None:
            self._closeTimer = self.clock.callLater(
                max(self._closing.deadline - now, 0.0), self._graceExpired
            )

    def _graceExpired(self) -> None:
        """
        The grace period ran out before the connection ended: log one line
        naming the peer and the values it did not confirm, and end the
        connection: with a FIN if everything written has reached the
        socket (a peer that is not reading still finds every value and the
        close record, in order), or else by aborting it.
        """
        self._closeTimer = None
        unconfirmed = self._closing.unconfirmed(self.valuesOut)
        message = self._closing.expiredMessage(self.key, self.valuesOut)
        self._log.warn(
            "Shutdown grace period ({grace} s) ran out for {peer}: ending the connection; "
            "{unconfirmed} values sent to it unconfirmed",
            grace=self._closing.grace,
            peer=self.key,
            unconfirmed=unconfirmed,
        )
        self._halted = True
        if self._failure is None and self._closing.step is not CloseStep.COMPLETED:
            self._failure = Failure(TruncationError(message))
        descriptor = self._descriptor
        if descriptor is not None and _writeBufferEmpty(descriptor):
            self._loseConnection()
            # The end is immediate with nothing left to write; should it not
            # be, abort shortly after.
            self._closeTimer = self.clock.callLater(0.5, self._abortTransport)
        else:
            self._abortTransport()

    def abort(self) -> None:
        """
        Drop the connection at once, discarding pending writes.
        """
        self._abortTransport()

    def _abortTransport(self) -> None:
        # An aborted descriptor still looks connected until the reactor
        # delivers connectionLost: nothing may be sent past it any more.
        self._descriptor = None
        if self._corked:
            self._corked.clear()
        self.transport.abortConnection()

    def _fail(self, error: BaseException, abort: bool = True) -> None:
        if self._failure is None:
            self._failure = Failure(error)
        self._halted = True
        self._cancelTimers()
        if abort:
            self._abortTransport()
        else:
            self._loseConnection()
            self._armGrace()

    def _cancelTimers(self, keepGrace: bool = False) -> None:
        names = ["_handshakeTimer", "_keepAliveTimer", "_idleTimer", "_flushCall"]
        if not keepGrace:
            names.append("_closeTimer")
        for name in names:
            timer = getattr(self, name)
            if timer is not None:
                if timer.active():
                    timer.cancel()
                setattr(self, name, None)

    def connectionLost(self, reason: Failure = Failure(ConnectionDone())) -> None:  # noqa: B008
        """
        Settle every waiter: queued values remain for L{recvBuffer}; after
        them it fails with the reason the connection ended.
        """
        self._cancelTimers()
        # Values still batched never reached the transport; like its unsent
        # writes, they are lost with the connection.
        self._batch = []
        self._batchSize = 0
        failure = self._failure
        try:
            self._channel.connectionLost()
        except NetStructerError as e:
            if failure is None:
                failure = Failure(self._tlsFailure(reason) or e)
        if failure is None and self._peerClosed is not None:
            failure = self._peerClosed
        elif failure is None:
            failure = Failure(ConnectionDone("the session closed cleanly"))
        elif self._established and self._failure is None:
            # The peer went away without closing (the transport's own
            # reason is in the message).
            self._log.info(
                "Lost session {peer}: {reason}", peer=self.key, reason=failure.getErrorMessage()
            )
        self.closeReason = failure
        self._halted = True
        waiters, self._waiters = self._waiters, deque()
        for d in waiters:
            d.errback(failure)
        established, self._whenEstablished = self._whenEstablished, []
        for opened in established:
            opened.errback(failure)
        self.events.connectionEnded(self, failure)
        if self.observer is not None:
            try:
                self.observer.sessionClosed(self, failure)
            except Exception:  # noqa: BLE001 -- observers are application code; log, go on
                self._log.failure("Session observer failed when {peer} closed", peer=self.key)
        closed, self._whenClosed = self._whenClosed, []
        for ended in closed:
            ended.callback(None)
        self._writeFlow.stopProducing()

    def _tlsFailure(self, reason: Failure) -> NetStructerError | None:
        """
        Name a TLS handshake failure, and on a server log it (rate-limited
        by the factory's L{TLSFailureLimiter}).

        @param reason: Why the connection was lost during the handshake.
        @return: The error naming the TLS failure, or L{None} if it was not one.
        """
        error = tlsHandshakeError(reason.value)
        if error is None or self.role is not Role.SERVER:
            return error
        limiter = getattr(getattr(self, "factory", None), "tlsFailures", None)
        skipped = limiter.shouldLog(self.clock.seconds()) if limiter is not None else 0
        if skipped is not None:
            self._log.warn(
                "TLS handshake with {peer} failed: {reason} ({skipped} similar failures "
                "not logged since the last line)",
                peer=self.key,
                reason=describeTLSFailure(reason.value),
                skipped=skipped,
            )
        return error

    def whenEstablished(self) -> defer.Deferred[BridgeProtocol]:
        """
        Wait for the handshake.

        @return: A Deferred firing with this protocol once the peer has
            authenticated, or failing with the reason the connection ended
            first.
        """
        if self.closeReason is not None:
            return defer.fail(self.closeReason)
        if self._established:
            return defer.succeed(self)
        d: defer.Deferred[BridgeProtocol] = defer.Deferred()
        self._whenEstablished.append(d)
        return d

    def whenClosed(self) -> defer.Deferred[None]:
        """
        Wait for the connection to end.

        @return: A Deferred firing with L{None} once the connection has ended;
            the reason is then in L{closeReason}.
        """
        if self.closeReason is not None:
            return defer.succeed(None)
        d: defer.Deferred[None] = defer.Deferred()
        self._whenClosed.append(d)
        return d

    # The relay (netstructer.relayclient): requests and relayed values.

    def _relayState(self) -> ProtocolRelay:
        if self._relay is None:
            relay = self._relay = ProtocolRelay(
                RelayClient(self._channel.encodeValue, Decoder(self.config.limits).decode),
                self.sendRecord,
                self.clock,
                lambda: self.key or "the server",
            )
            self.whenClosed().addCallback(lambda _: relay.connectionLost(self._relayClosedError()))
        return self._relay

    def _relayClosedError(self) -> BaseException:
        reason = self.closeReason
        value = None if reason is None else reason.value
        return value if isinstance(value, BaseException) else ConnectionDone()

    def _relayRecordReceived(self, recordType: int, body: bytes) -> None:
        self._relayState().client.recordReceived(recordType, body)

    def sendTo(self, name: str, value: object) -> None:
        """
        Send a value through the server to the session named C{name}.  The
        server answers only failures, which the next relay call raises (or
        a waiting L{recvFrom} fails with).

        @raise RelayError: An earlier relay request failed
            (L{NoSuchSession}, L{RelayRefused}, L{RecipientBusy}); nothing
            was sent.
        @raise PeerVersionError: The server speaks protocol version 1.
        """
        relay = self._relayState()
        relay.send(relay.client.sendTo(name, value))

    def publish(self, topic: str, value: object) -> None:
        """
        Send a value through the server to every subscriber of C{topic}.

        @raise RelayError: As for L{sendTo}.
        """
        relay = self._relayState()
        relay.send(relay.client.publish(topic, value))

    def subscribe(self, topic: str) -> None:
        """
        Receive, through L{recvFrom}, what is published to C{topic}.

        @raise RelayError: As for L{sendTo}.
        """
        relay = self._relayState()
        relay.send(relay.client.subscribe(topic))

    def unsubscribe(self, topic: str) -> None:
        """
        Stop receiving C{topic}.

        @raise RelayError: As for L{sendTo}.
        """
        relay = self._relayState()
        relay.send(relay.client.unsubscribe(topic))

    def recvFrom(self, timeout: float | None = None) -> defer.Deferred[RelayedValue]:
        """
        Receive the next value relayed to this session.

        @param timeout: Seconds to wait; L{None} waits as long as the
            connection lasts.
        @return: A Deferred firing with a L{RelayedValue} (it unpacks as
            C{(sender, value)}), failing with a relay error not yet raised,
            with L{OperationTimedOut} after C{timeout} seconds (consuming
            nothing), or with the reason the connection ended.
        """
        return self._relayState().recvFrom(timeout)

    @property
    def closeSent(self) -> CloseCode | None:
        """
        The close code of the close record this side sent, or is to send
        (a close asked for during the handshake, or the reply to the
        peer's close); L{None} if it never closed with a record.
        """
        requested = self._closeRequested
        return None if requested is None else requested[0]

    @property
    def failedLocally(self) -> bool:
        """
        Whether this side ended the connection because of a protocol error
        or a timeout (rather than the peer, or a clean close, ending it).
        """
        return self._failure is not None


class IConnectionGate(ISessionObserver):
    """
    Decides whether a new connection may start its handshake (flood limits),
    and is told when its sessions open and close.
    """

    def admit(connection: BridgeProtocol, address: IAddress) -> bool:  # noqa: N805
        """
        Whether a new connection may start its handshake; refused ones are
        closed before any handshake work.

        @param connection: Its protocol, built but not yet connected.
        @param address: The peer's address.
        @return: C{True} to accept it, which counts it until
            L{ISessionObserver.sessionClosed} is called for it.
        """


def _maybeGlobalReactor(clock: IReactorTime | None) -> IReactorTime:
    """
    The given clock, or the global reactor, imported only when needed.
    """
    if clock is not None:
        return clock
    from twisted.internet import reactor

    return cast(IReactorTime, reactor)


class BridgeServerFactory(Factory):
    """
    Builds server-side L{BridgeProtocol}s sharing one configuration and one
    connection gate (the session registry).  Its only state limits the log
    lines of failed TLS handshakes.

    @ivar config: The configuration of every connection.
    @ivar gate: Admits connections and is told of sessions opening and
        closing.
    @ivar clock: Schedules the protocols' timers.
    @ivar tlsFailures: Limits the log lines of failed TLS handshakes to one per
        10 seconds.
    """

    protocol: type[BridgeProtocol] = BridgeProtocol
    _log = Logger()

    def __init__(
        self,
        config: BridgeConfig,
        gate: IConnectionGate,
        clock: IReactorTime | None = None,
        logger: Logger | None = None,
    ) -> None:
        """
        @param config: The configuration of every connection.
        @param gate: The session registry.
        @param clock: Schedules timers; the global reactor by default.
        @param logger: Where protocols log.
        """
        self.config = config
        self.gate = gate
        self.clock = _maybeGlobalReactor(clock)
        self.tlsFailures = TLSFailureLimiter()
        self.events: IBridgeEvents = NO_EVENTS
        if logger is not None:
            self._log = logger

    def buildProtocol(self, addr: IAddress) -> BridgeProtocol | None:  # type: ignore[override]
        """
        Build a protocol for a new connection, or refuse it (closing it before
        any handshake work) when the gate's limits are reached.

        @param addr: The peer's address.
        @return: A protocol, or L{None} to refuse the connection.
        """
        proto = self.protocol(Role.SERVER, self.config, self.clock, self.gate, self._log)
        if not self.gate.admit(proto, addr):
            return None
        proto.factory = self
        proto.events = self.events
        return proto


class BridgeClientFactory(ClientFactory):
    """
    Builds client-side L{BridgeProtocol}s sharing one configuration.

    @ivar config: The configuration of every connection.
    @ivar clock: Schedules the protocols' timers.
    """

    protocol: type[BridgeProtocol] = BridgeProtocol
    _log = Logger()
    # connect() makes a factory per connection: Factory's "Starting factory"
    # and "Stopping factory" lines would be logged for every one, on the
    # connection's critical path.
    noisy = False

    def __init__(
        self,
        config: BridgeConfig,
        clock: IReactorTime | None = None,
        logger: Logger | None = None,
    ) -> None:
        """
        @param config: The configuration of every connection.
        @param clock: Schedules timers; the global reactor by default.
        @param logger: Where protocols log.
        """
        self.config = config
        self.clock = _maybeGlobalReactor(clock)
        if logger is not None:
            self._log = logger

    def buildProtocol(self, addr: IAddress | None) -> BridgeProtocol:
        """
        Build a protocol for a new connection.

        @param addr: The server's address.
        @return: The protocol.
        """
        proto = self.protocol(Role.CLIENT, self.config, self.clock, None, self._log)
        proto.factory = self
        return proto
