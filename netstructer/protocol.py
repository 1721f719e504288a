# -*- test-case-name: tests.test_protocol -*-
"""
L{BridgeProtocol}: the Twisted adapter over one sans-IO session core
(L{netstructer.session.core.SessionCore}), and its factories.

The core owns what a session is: the channel (handshake, record protection,
the codec), value batching, the receive queue's bounds, the keep-alive, idle
and close deadlines, and the capabilities attached to the session.  The
protocol only moves bytes between the core and the transport, turns the
core's deadlines into one C{IReactorTime} timer, its events into Deferreds,
callbacks and log lines, and wires the transport's producer and consumer.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar, cast

from twisted.internet import defer
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import IAddress, IReactorTime
from twisted.internet.protocol import ClientFactory, Factory
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import Interface

from netstructer._sessionprotocol import PeerClosed, SessionProtocol, sessionKey
from netstructer._transport import (
    IMMEDIATE_WRITE_LIMIT,
)
from netstructer._waiting import Waiters
from netstructer.channel import (
    CloseCode,
    Role,
)
from netstructer.errors import BufferDataError, OperationTimedOut
from netstructer.events import NO_EVENTS, IBridgeEvents
from netstructer.relay.client import RelayClient, RelayClientCapability
from netstructer.relay.deferreds import ProtocolRelay
from netstructer.relay.wire import RelayedValue
from netstructer.session.capability import ICapability, ISessionHost
from netstructer.session.config import BridgeConfig
from netstructer.streaming.methods import StreamMethods
from netstructer.streaming.session import SessionStreams
from netstructer.tlsfailure import TLSFailureLimiter

if TYPE_CHECKING:
    pass

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
_IMMEDIATE_WRITE_LIMIT = IMMEDIATE_WRITE_LIMIT
_C = TypeVar("_C", bound=ICapability)


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


class BridgeProtocol(StreamMethods, SessionProtocol):
    """
    An encrypted, authenticated connection carrying Python values.

    Frames are length-prefixed as by L{Int32StringReceiver
    <twisted.protocols.basic.Int32StringReceiver>} (whose interface,
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
    control returns to the reactor (see L{TransportWriter.sendNow
    <netstructer._transport.TransportWriter.sendNow>}).

    Its transport and reactor side (framing, writes, the timer of the
    session's deadlines, the session core's events) is
    L{SessionProtocol<netstructer._sessionprotocol.SessionProtocol>}'s.

    Streams (files and values larger than memory, beside the values) are
    L{StreamMethods}': C{sendStream}, C{streamReceived}, C{recvStream}.

    @ivar observer: Told when the session opens and closes.
    """

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
        super().__init__(role, config, clock, logger)
        self.observer = observer
        self._waiters: Waiters[object] = Waiters(clock, self._receiveTimedOut)
        self._whenEstablished: list[defer.Deferred[BridgeProtocol]] = []
        self._whenClosed: list[defer.Deferred[None]] = []
        self._relay: ProtocolRelay | None = None
        self._relayClient: RelayClientCapability | None = None
        if role is Role.CLIENT:
            # The server may relay values to a client before it makes any
            # relay request of its own.
            self._relayClient = self._attachRelayClient()
        # Every session answers its peer's streams, if only to refuse them.
        self._streams = SessionStreams(
            clock,
            self._diskIO,
            lambda: self.key or "the peer",
            lambda meta, stream: self.streamReceived(meta, stream),
            self._log,
        )
        self.core.attach(
            lambda host: self._streams.makeEngine(
                host, config, self.core.channel.encodeValue, self.core.channel.decoder.decode
            )
        )

    def _peerClosedSession(self, reason: Failure) -> None:
        # Nothing more arrives, so a reader waiting now learns of the close
        # now.
        self._waiters.failAll(reason)

    def _sessionEnded(self, reason: Failure) -> None:
        self._waiters.failAll(reason)
        self._streams.sessionEnded(reason.value or ConnectionDone())
        established, self._whenEstablished = self._whenEstablished, []
        for opened in established:
            opened.errback(reason)
        self.events.connectionEnded(self, reason)
        if self.observer is not None:
            try:
                self.observer.sessionClosed(self, reason)
            except Exception:  # noqa: BLE001 -- observers are application code; log, go on
                self._log.failure("Session observer failed when {peer} closed", peer=self.key)
        closed, self._whenClosed = self._whenClosed, []
        for ended in closed:
            ended.callback(None)

    def __repr__(self) -> str:
        return f"<BridgeProtocol {self.role.value} {self.key or 'unconnected'}>"

    @property
    def queuedValues(self) -> int:
        """
        Received values waiting for L{recvBuffer}.
        """
        return len(self.core.queue)

    def _sessionOpened(self) -> None:
        if self.role is Role.SERVER:
            # Not on clients: whoever connects learns of the session from what
            # it waits on (connect()'s Deferred), and emitting a line costs
            # about as much as the rest of this method, just before the first
            # values go out.
            self._log.debug("Session {peer} established ({suite})", peer=self.key, suite=self.suite)
        if self.observer is not None:
            try:
                self.observer.sessionOpened(self)
            except Exception:  # noqa: BLE001 -- observers are application code; log, go on
                self._log.failure("Session observer failed when {peer} opened", peer=self.key)
        self.handshakeCompleted()
        waiting, self._whenEstablished = self._whenEstablished, []
        for d in waiting:
            d.callback(self)
        self.core.closeIfRequested()

    def handshakeCompleted(self) -> None:
        """
        Called once the peer has authenticated, before values flow.  Override
        it to start sending; the default does nothing.
        """

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
        if self._sender.sendValue(value) and self._flushCall is None:
            # Sent from outside a frame's handling (a timer, a Deferred
            # firing, application code): the batch leaves at the end of
            # this reactor turn, with every value sent during it.
            self._flushCall = self.clock.callLater(0, self._flushLater)
        if self.core.out.size:
            self._writeOutput()

    def sendRecord(self, recordType: int, body: bytes) -> None:
        """
        Send one extension record after every value sent before it.  For
        the capabilities' adapters, not applications.

        @raise PeerVersionError: The peer negotiated an older version.
        @raise ChannelClosedError: The session is not established.
        """
        self._sender.sendRecord(recordType, body)
        self._writeOutput()

    def sendString(self, string: bytes) -> None:
        """
        Write one frame payload with its length prefix.

        @param string: The payload.
        @raise BufferDataError: It is too long for the 4-byte prefix.
        """
        if len(string) >= 2**32:
            raise BufferDataError(f"a frame of {len(string)} bytes cannot be length-prefixed")
        self.core.out.frame(string)
        self._writeOutput()

    def flush(self) -> None:
        """
        Write the values that L{sendBuffer} has batched, now, in one record.

        L{sendBuffer} batches small values and writes them at the end of the
        frame being handled, or else at the end of the current reactor turn;
        call this only to write them sooner.
        """
        self._cancelFlush()
        self._sender.flush()
        if self.core.out.size:
            self._writeOutput()

    def _flushLater(self) -> None:
        self._flushCall = None
        writer = self._writer
        corked = writer is not None and writer.cork()
        try:
            self.flush()
        finally:
            if corked and writer is not None:
                writer.uncork()

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
        closing = self.core.closing
        return (
            closing.closing
            and (closing.sentClose or closing.step is not None)
            and self._writer is not None
            and self._writer.bufferEmpty()
        )

    def abort(self) -> None:
        """
        Drop the connection at once, discarding pending writes.
        """
        self._abortTransport()

    def bufferReceived(self, value: object) -> None:
        """
        A value arrived.  Override this to handle values as they come; by
        default the value is queued for L{recvBuffer}, and reading from the
        peer pauses while the queue is over its bounds.

        @param value: The decoded value.
        """
        if self._waiters:
            self._waiters.fire(value)
            return
        if self.core.queue.push(value, self.core.delivery.share):
            self.pauseReceiving()

    def recvBuffer(self, timeout: float | None = None) -> defer.Deferred[object]:
        """
        Receive the next value, in order.

        @param timeout: Seconds to wait; L{None} waits as long as the
            connection lasts.
        @return: A Deferred firing with the value.  It fails with the reason
            the connection ended (L{ConnectionDone} for a clean close,
            L{ConnectionBroken<netstructer.errors.ConnectionBroken>},
            L{AuthenticationError<netstructer.errors.AuthenticationError>},
            ...) once every value received before that has been taken, or
            with L{OperationTimedOut} after C{timeout} seconds.  A timeout
            or a cancellation consumes nothing.
        """
        queue = self.core.queue
        if queue:
            value = queue.pop()[0]
            if self.core.delivery.paused and queue.canResume:
                self.resumeReceiving()
            return defer.succeed(value)
        if self.closeReason is not None:
            return defer.fail(self.closeReason)
        if self._peerClosed is not None:
            return defer.fail(self._peerClosed)
        return self._waiters.wait(timeout)

    def _receiveTimedOut(self, timeout: float) -> Exception:
        return OperationTimedOut(f"no value arrived from {self.key} within {timeout} seconds")

    def pauseReceiving(self) -> None:
        """
        Stop reading from the peer (for a L{bufferReceived} override that
        cannot keep up); frames already buffered wait too.
        """
        if self.core.pauseReceiving():
            self._updateBlocked()
            self.events.receivingPaused(self)
            self.transport.pauseProducing()

    def resumeReceiving(self) -> None:
        """
        Resume reading after L{pauseReceiving}, delivering buffered frames
        first.
        """
        if self.core.resumeReceiving():
            self._updateBlocked()
            self.events.receivingResumed(self)
            if self.closeReason is None:
                self.transport.resumeProducing()
                self._processBuffer()

    def close(self, reason: str | None = None, code: CloseCode = CloseCode.NORMAL) -> None:
        """
        Close the session cleanly: send an authenticated close record (the
        peer sees C{code} and C{reason}) after every value already given to
        L{sendBuffer}, keep delivering the values the peer sent before it
        saw it, and close the transport as soon as the peer replies.  During
        the handshake, the close waits for it, so that values already passed
        to L{sendBuffer} are sent first.  Whatever the peer does, the
        connection ends within C{config.shutdownGrace} seconds of this call.

        @param reason: A short reason the peer will see; never a secret.
        @param code: Why the session closes.
        """
        if self.closeReason is not None:
            return
        self._cancelFlush()
        self.core.close(code, reason or "")
        self._afterCore()

    def whenEstablished(self) -> defer.Deferred[BridgeProtocol]:
        """
        Wait for the handshake.

        @return: A Deferred firing with this protocol once the peer has
            authenticated, or failing with the reason the connection ended
            first.
        """
        if self.closeReason is not None:
            return defer.fail(self.closeReason)
        if self.core.established:
            return defer.succeed(self)
        d: defer.Deferred[BridgeProtocol] = defer.Deferred()
        self._whenEstablished.append(d)
        return d

    def whenClosed(self) -> defer.Deferred[None]:
        """
        Wait for the connection to end.

        @return: A Deferred firing with L{None} once the connection has ended;
            the reason is then in C{closeReason}.
        """
        if self.closeReason is not None:
            return defer.succeed(None)
        d: defer.Deferred[None] = defer.Deferred()
        self._whenClosed.append(d)
        return d

    def attachCapability(self, makeCapability: Callable[[ISessionHost], _C]) -> _C:
        """
        Attach a capability to this session (see
        L{netstructer.session.capability}).

        @param makeCapability: Makes it, given the host it acts through.
        @return: The capability.
        """
        capability = self.core.attach(makeCapability)
        self._afterCore()
        return capability

    def _attachRelayClient(self) -> RelayClientCapability:
        client = RelayClient(self.core.channel.encodeValue, self.core.channel.decoder.decode)
        return self.core.attach(lambda host: RelayClientCapability(host, client))

    def _relayFacade(self) -> ProtocolRelay:
        if self._relay is None:
            capability = self._relayClient or self._attachRelayClient()
            relay = self._relay = ProtocolRelay(
                capability.client,
                lambda recordType, body: capability.send((recordType, body)),
                self.clock,
                lambda: self.key or "the server",
            )
            self.whenClosed().addCallback(lambda _: relay.connectionLost(self._relayClosedError()))
        return self._relay

    def _relayClosedError(self) -> BaseException:
        reason = self.closeReason
        value = None if reason is None else reason.value
        return value if isinstance(value, BaseException) else ConnectionDone()

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
        relay = self._relayFacade()
        relay.send(relay.client.sendTo(name, value))

    def publish(self, topic: str, value: object) -> None:
        """
        Send a value through the server to every subscriber of C{topic}.

        @raise RelayError: As for L{sendTo}.
        """
        relay = self._relayFacade()
        relay.send(relay.client.publish(topic, value))

    def subscribe(self, topic: str) -> None:
        """
        Receive, through L{recvFrom}, what is published to C{topic}.

        @raise RelayError: As for L{sendTo}.
        """
        relay = self._relayFacade()
        relay.send(relay.client.subscribe(topic))

    def unsubscribe(self, topic: str) -> None:
        """
        Stop receiving C{topic}.

        @raise RelayError: As for L{sendTo}.
        """
        relay = self._relayFacade()
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
        return self._relayFacade().recvFrom(timeout)


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
        """Told of what happens to the connections (set by the server's
        metrics; a no-op by default)."""
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
    """No "Starting factory" and "Stopping factory" lines."""

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
        self._prepared: BridgeProtocol | None = None
        if logger is not None:
            self._log = logger

    def prepare(self) -> None:
        """
        Build the protocol of the next connection now (its channel makes
        its ephemeral key and hello), while the connection is being made,
        rather than once it is: call it right after asking an endpoint to
        connect.
        """
        if self._prepared is None:
            self._prepared = self._build()

    def buildProtocol(self, addr: IAddress | None) -> BridgeProtocol:
        """
        Build a protocol for a new connection (the one L{prepare} built, if
        any).

        @param addr: The server's address.
        @return: The protocol.
        """
        proto, self._prepared = self._prepared, None
        return proto if proto is not None else self._build()

    def _build(self) -> BridgeProtocol:
        proto = self.protocol(Role.CLIENT, self.config, self.clock, None, self._log)
        proto.factory = self
        return proto
