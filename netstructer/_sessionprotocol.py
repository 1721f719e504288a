# -*- test-case-name: tests.test_protocol -*-
"""
L{SessionProtocol}: the Twisted adapter of one session core
(L{netstructer.session.core.SessionCore}), the layer of
L{BridgeProtocol<netstructer.protocol.BridgeProtocol>} that talks to the
transport and the reactor.

It frames the byte stream (as L{Int32StringReceiver
<twisted.protocols.basic.Int32StringReceiver>}, whose interface it keeps),
feeds frames to the core and delivers the values they carry, writes what the
core queues (held back while received data is handled, then sent
straight to the socket: see L{netstructer._transport}), turns the core's
deadlines into one C{IReactorTime} timer and its events into transport
actions and log lines.  The application's API (values, Deferreds, the relay)
is L{BridgeProtocol<netstructer.protocol.BridgeProtocol>}'s, through three
hooks: L{SessionProtocol._sessionOpened}, L{SessionProtocol._peerClosedSession}
and L{SessionProtocol._sessionEnded}.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import IAddress, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from netstructer._framing import FrameReceiver
from netstructer._transport import Transport, TransportWriter, WriteFlow, noDelay
from netstructer.channel import (
    HANDSHAKE_MAX_FRAME,
    CloseCode,
    CloseReceived,
    HandshakeCompleted,
    Role,
    ValueReceived,
    ValuesReceived,
)
from netstructer.closing import CloseStep
from netstructer.errors import BufferDataError, NetStructerError, SessionClosed
from netstructer.events import NO_EVENTS, IBridgeEvents
from netstructer.keys import KeyIdentity
from netstructer.session.config import BridgeConfig
from netstructer.session.core import GraceExpired, IdleClosed, SessionCore, SessionFailed
from netstructer.session.routing import CapabilityRouter
from netstructer.tlsfailure import serverTLSFailure, tlsHandshakeError

if TYPE_CHECKING:
    from twisted.internet.interfaces import IDelayedCall


_PREFIX = struct.Struct("!I")


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


class PeerClosed(SessionClosed, ConnectionDone):
    """
    The peer closed the session with a close record: a L{SessionClosed}
    (with its C{code} and C{reason}) that is also Twisted's
    L{ConnectionDone}, so that code checking for a clean end keeps working.
    """

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "the peer closed the session"


def _fromCore(name: str, doc: str) -> Any:
    """
    A read-only attribute of the protocol that is its session core's.
    """
    return property(lambda self: getattr(self.core, name), doc=doc)


class SessionProtocol(FrameReceiver):
    """
    The Twisted adapter of one session core: the transport and the reactor's
    side of a L{BridgeProtocol<netstructer.protocol.BridgeProtocol>}.

    @ivar core: The sans-IO session this protocol adapts.
    @ivar role: Which end of the connection this is.
    @ivar config: The session's configuration.
    @ivar clock: Schedules the timer.
    @ivar key: The session's registry key, C{"ip:port"}.
    @ivar peer: The peer's address.
    @ivar closeReason: Why the connection ended, once it has (L{ConnectionDone}
        for a clean close).
    @ivar events: Told of what happens to the connection, for metrics (see
        L{netstructer.events}); a no-op by default.
    """

    MAX_LENGTH = HANDSHAKE_MAX_FRAME
    _log = Logger()
    events: IBridgeEvents = NO_EVENTS
    transport: Transport  # type: ignore[assignment]

    name = _fromCore("name", "On a server, the name of the client's key (L{None} if anonymous).")
    keyId = _fromCore("keyId", 'The ID of the key that authenticated the session (C{""} before).')
    peerKey: KeyIdentity | None = _fromCore("peerKey", "On a server, the client's L{KeyIdentity}.")
    openedAt = _fromCore("openedAt", "When the handshake completed (L{None} before).")
    connectedAt = _fromCore("connectedAt", "When the connection was made (L{None} before).")
    suite = _fromCore("suite", "The suite the handshake settled on (L{None} before).")
    lastActivity = _fromCore("lastActivity", "When a frame was last received.")
    valuesIn = _fromCore("valuesIn", "Values delivered to the application.")
    valuesOut = _fromCore("valuesOut", "Values written (batched ones once their batch is).")
    bytesIn = _fromCore("bytesIn", "Frame bytes received (after the length prefix).")
    closeCode = _fromCore("closeCode", "The peer's close code, if it sent one.")
    closeMessage = _fromCore("closeMessage", "The peer's close reason, if it sent one.")
    protocolVersion = _fromCore("protocolVersion", "The protocol version negotiated.")

    def __init__(
        self,
        role: Role,
        config: BridgeConfig,
        clock: IReactorTime,
        logger: Logger | None = None,
    ) -> None:
        """
        @param role: L{Role.CLIENT} or L{Role.SERVER}.
        @param config: The connection's configuration.
        @param clock: Schedules the timers.
        @param logger: Where to log; the class's logger by default.
        """
        self.role = role
        self.config = config
        self.clock = clock
        if logger is not None:
            self._log = logger
        self.core = core = SessionCore(role, config, clock.seconds)
        core.changed = self._afterCore
        super().__init__(core.frames)
        self._sender = core.sender
        self.key = ""
        self.peer: IAddress | None = None
        self.closeReason: Failure | None = None
        self._inEvents = False
        self._writeFlow = WriteFlow(self._writingPaused, self._writingResumed)
        self._writer: TransportWriter | None = None
        self._timer: IDelayedCall | None = None
        self._flushCall: IDelayedCall | None = None
        self._abortCall: IDelayedCall | None = None
        self._producerRegistered = False
        self._peerClosed: Failure | None = None
        self._uncorkAfter = False

    @property
    def established(self) -> bool:
        """
        Whether the handshake has completed and the connection has not ended.
        """
        return self.core.established and self.closeReason is None

    @property
    def bytesOut(self) -> int:
        """
        Frame bytes of values sent.
        """
        return self._sender.bytesOut

    @property
    def records(self) -> CapabilityRouter:
        """
        The capabilities attached to this session, by the record types they
        own (C{records.registered("relay")}).
        """
        return self.core.capabilities

    @property
    def closeSent(self) -> CloseCode | None:
        """
        The close code of the close record this side sent, or is to send
        (a close asked for during the handshake, or the reply to the
        peer's close); L{None} if it never closed with a record.
        """
        requested = self.core.closeRequested
        return None if requested is None else requested[0]

    @property
    def failedLocally(self) -> bool:
        """
        Whether this side ended the connection because of a protocol error
        or a timeout (rather than the peer, or a clean close, ending it).
        """
        return self.core.failure is not None

    # The application's hooks (BridgeProtocol's).

    def bufferReceived(self, value: object) -> None:
        """
        A value arrived.

        @param value: The decoded value.
        """
        raise NotImplementedError()

    def _sessionOpened(self) -> None:
        """
        The handshake completed: tell the application.
        """

    def _peerClosedSession(self, reason: Failure) -> None:
        """
        The peer closed the session first: nothing more arrives.

        @param reason: The L{PeerClosed} failure readers get.
        """

    def _sessionEnded(self, reason: Failure) -> None:
        """
        The connection ended: settle whatever waits on the session.

        @param reason: Why it ended (C{closeReason}).
        """

    # Connection lifecycle.

    def connectionMade(self) -> None:
        """
        Start the handshake and its timer.
        """
        self.peer = self.transport.getPeer()
        self.key = sessionKey(self.peer)
        noDelay(self.transport)
        self.transport.registerProducer(self._writeFlow, True)
        self._producerRegistered = True
        writer = self._writer = TransportWriter(self.transport)
        # A server makes its ephemeral key now, while the client makes its own
        # and sends its hello, rather than once the hello has arrived.  (Not
        # in __init__: a refused connection never gets here.)  The hello goes
        # to the socket at once, not a reactor turn later.
        corked = writer.cork()
        try:
            self.core.connectionMade(self.key)
            self._afterCore()
        finally:
            if corked:
                writer.uncork()

    # FrameReceiver hands frames to stringReceived between these hooks;
    # meanwhile, frames written are held back, then sent at once, together.

    def _frameAlone(self, frame: memoryview) -> None:
        # The round trip's path: a request (or its answer) alone in one read.
        writer = self._writer
        corked = writer is not None and writer.cork()
        sender = self._sender
        sender.receiving = True
        try:
            self.stringReceived(frame)  # type: ignore[arg-type]
        finally:
            sender.receiving = False
            core = self.core
            reply = None
            try:
                if corked and not (core.events or core.liveness.changed or core.out.size):
                    # Only replies, if any: sent with what was held back.
                    reply = sender.sealBatch() if self.closeReason is None else None
                else:
                    sender.flush()
                    if core.events or core.liveness.changed:
                        self._afterCore()
                    elif core.out.size:
                        self._writeOutput()
            finally:
                if corked:
                    writer.uncork(reply)  # type: ignore[union-attr]

    def _updateBlocked(self) -> None:
        delivery = self.core.delivery
        self._receiveBlocked = delivery.paused or delivery.holding

    def _receivingStarted(self) -> None:
        writer = self._writer
        self._uncorkAfter = writer is not None and writer.cork()
        self._sender.receiving = True

    def _framesHandled(self) -> None:
        # Values sent while these frames were handled (answers, echoes)
        # leave in one record per batch.
        self._sender.receiving = False
        try:
            self._sender.flush()
            self._afterCore()
        finally:
            if self._uncorkAfter:
                self._uncorkAfter = False
                self._writer.uncork()  # type: ignore[union-attr]

    def _receivingEnded(self) -> bool:
        return self.closeReason is not None or self.core.failure is not None

    def _resumeHeld(self) -> None:
        core = self.core
        if core.delivery.holding:
            held = core.delivery.takeHeld()
            self._updateBlocked()
            core.valuesIn += len(held)
            self._deliver(held, core.delivery.share)

    def lengthLimitExceeded(self, length: int) -> None:
        """
        The peer announced a frame over C{MAX_LENGTH} (never buffered): log a
        L{BufferDataError} naming the peer and abort the connection.
        """
        self.core.frameTooLarge(
            BufferDataError(
                f"{self.key} announced a frame of {length} bytes; the limit "
                f"{'before authentication ' if not self.core.established else ''}is "
                f"{self.MAX_LENGTH}"
            )
        )
        self._afterCore()

    def stringReceived(self, string: bytes) -> None:
        """
        Feed one frame (a L{memoryview} valid only during this call) to the
        session core and deliver the values it carried.
        """
        core = self.core
        event = core.frameReceived(string)
        if event is not None:
            events = self.events
            if type(event) is ValueReceived:
                if events is not NO_EVENTS:
                    events.valuesReceived(self, 1, event.size)
                core.delivery.share = event.size
                self._valueSink()(event.value)
            else:
                values = cast(ValuesReceived, event).values
                share = event.size // len(values)
                if events is not NO_EVENTS:
                    events.valuesReceived(self, len(values), share)
                self._deliver(values, share)
        if core.events:
            self._handleEvents()

    def _deliver(self, values: list[object], share: int) -> None:
        """
        Hand the values of one record (each with C{share} of its bytes) to
        L{bufferReceived}, one by one, holding back those left when a handler
        pauses receiving or the connection ends.
        """
        core = self.core
        core.delivery.share = share
        received = self._valueSink()
        for index, value in enumerate(values):
            if core.halted:
                core.valuesIn -= core.delivery.hold(values, index, share)
                self._updateBlocked()
                return
            received(value)

    def _valueSink(self) -> Callable[[object], object]:
        """
        What received values go to, looked up once per record: here,
        L{bufferReceived}; a subclass may hand them straight to whatever its
        C{bufferReceived} would call, saving a call per value.
        """
        return self.bufferReceived

    def _afterCore(self) -> None:
        """
        Act on what the core queued: events, bytes to write, a deadline.
        """
        core = self.core
        if core.events:
            self._handleEvents()
        if core.out.size:
            self._writeOutput()
        if core.liveness.changed:
            self._armTimer()

    def _writeOutput(self) -> None:
        out = self.core.out
        writer = self._writer
        if writer is None or self.closeReason is not None:
            return
        size = out.size
        borrowed = out.borrowed
        chunks = out.take()
        if borrowed is None:
            writer.write(chunks, size)
        else:
            # A large value, sealed in the channel's reused buffer, goes to
            # the socket at once, in its place among the chunks.
            for chunk in chunks:
                if chunk is borrowed:
                    writer.writeBorrowed(borrowed)
                else:
                    writer.write((chunk,), len(chunk))
        self.core.flow.outputWritten()

    def _armTimer(self) -> None:
        core = self.core
        core.deadlinesSeen()
        deadline = core.nextDeadline
        timer = self._timer
        if deadline is None:
            if timer is not None:
                timer.cancel()
                self._timer = None
            return
        delay = max(deadline - self.clock.seconds(), 0.0)
        if timer is not None:
            timer.reset(delay)
        else:
            self._timer = self.clock.callLater(delay, self._timeReached)

    def _timeReached(self) -> None:
        self._timer = None
        self.core.liveness.changed = True
        self.core.timeReached(self.clock.seconds())
        self._afterCore()

    def _handleEvents(self) -> None:
        if self._inEvents:
            return
        self._inEvents = True
        events = self.core.events
        try:
            while events:
                event = events.pop(0)
                if isinstance(event, HandshakeCompleted):
                    self.setFrameLimit(self.core.channel.maxFrameSize)
                    self._sessionOpened()
                elif isinstance(event, CloseReceived):
                    self._closeReceived(event)
                elif isinstance(event, SessionFailed):
                    self._sessionFailed(event)
                elif isinstance(event, GraceExpired):
                    self._graceExpired(event)
                elif isinstance(event, IdleClosed):
                    self._log.info("Closing idle session {peer}", peer=self.key)
        finally:
            self._inEvents = False

    def _closeReceived(self, event: CloseReceived) -> None:
        """
        The peer's close record arrived: the close handshake is complete on
        this side, which ends the transport now (after the reply, already
        queued, when the peer closed first).
        """
        if self.core.closing.step is CloseStep.REPLIED:
            # Nothing more arrives, so a reader waiting now learns of the
            # close now.
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
            self._peerClosedSession(self._peerClosed)
        self._cancelFlush()
        self._loseConnection()

    def _sessionFailed(self, event: SessionFailed) -> None:
        log = self._log.info if event.quiet else self._log.warn
        log("Dropping {peer}: {error}", peer=self.key, error=event.error)
        self._cancelFlush()
        if event.abort:
            self._abortTransport()
        else:
            self._loseConnection()

    def _graceExpired(self, event: GraceExpired) -> None:
        """
        The grace period ran out before the connection ended: log one line
        naming the peer and the values it did not confirm, and end the
        connection: with a FIN if everything written has reached the socket
        (a peer that is not reading still finds every value and the close
        record, in order), or else by aborting it.
        """
        self._log.warn(
            "Shutdown grace period ({grace} s) ran out for {peer}: ending the connection; "
            "{unconfirmed} values sent to it unconfirmed",
            grace=self.core.closing.grace,
            peer=self.key,
            unconfirmed=event.unconfirmed,
        )
        writer = self._writer
        if writer is not None and writer.bufferEmpty():
            self._loseConnection()
            # The end is immediate with nothing left to write; should it not
            # be, abort shortly after.
            self._abortCall = self.clock.callLater(0.5, self._abortTransport)
        else:
            self._abortTransport()

    def _loseConnection(self) -> None:
        """
        Close the transport once pending writes drain.  The write-flow
        producer is unregistered first: TLS transports postpone their
        shutdown while a producer is registered.  Frames held back (a close
        reply) go to the socket at once.
        """
        if self.core.out.size:
            self._writeOutput()
        if self._writer is not None:
            self._writer.sendHeldBack()
        if self._producerRegistered:
            self._producerRegistered = False
            self.transport.unregisterProducer()
        self.transport.loseConnection()

    def _abortTransport(self) -> None:
        self._abortCall = None
        if self._writer is not None:
            self._writer.forget()
        self.transport.abortConnection()

    def _cancelFlush(self) -> None:
        if self._flushCall is not None:
            if self._flushCall.active():
                self._flushCall.cancel()
            self._flushCall = None

    def _writingPaused(self) -> None:
        self.events.writingPaused(self)
        self.core.flow.transportPaused()

    def _writingResumed(self) -> None:
        self.events.writingResumed(self)
        self.core.flow.transportResumed()
        self._afterCore()

    def connectionLost(self, reason: Failure = Failure(ConnectionDone())) -> None:  # noqa: B008
        """
        Settle every waiter: queued values remain for C{recvBuffer}; after
        them it fails with the reason the connection ended.
        """
        core = self.core
        for call in (self._timer, self._flushCall, self._abortCall):
            if call is not None and call.active():
                call.cancel()
        self._timer = self._flushCall = self._abortCall = None
        failed = core.failure
        verdict = core.connectionLost(reason.value)
        if failed is not None:
            failure = Failure(failed)
        elif verdict is not None:
            failure = Failure(self._tlsFailure(reason) or verdict)
            if core.established:
                # The peer went away without closing (the transport's own
                # reason is in the message).
                self._log.info(
                    "Lost session {peer}: {reason}", peer=self.key, reason=failure.getErrorMessage()
                )
        elif self._peerClosed is not None:
            failure = self._peerClosed
        else:
            failure = Failure(ConnectionDone("the session closed cleanly"))
        self.closeReason = failure
        self._sessionEnded(failure)
        self._writeFlow.stopProducing()

    def _tlsFailure(self, reason: Failure) -> NetStructerError | None:
        """
        Name a TLS handshake failure, and on a server log it, rate-limited by
        the factory's limiter (see L{netstructer.tlsfailure.serverTLSFailure}).
        """
        if self.role is not Role.SERVER:
            return tlsHandshakeError(reason.value)
        limiter = getattr(getattr(self, "factory", None), "tlsFailures", None)
        return serverTLSFailure(reason.value, limiter, self.clock.seconds(), self._log, self.key)
