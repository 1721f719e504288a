# -*- test-case-name: tests.test_session -*-
"""
L{SessionCore}: one NetStructer session, sans-IO.

The core holds everything a session is, whatever carries its bytes: the
channel (handshake, record protection, the codec), the outgoing value
batch and its flush points, the queue of framed bytes for the transport,
the receive queue and the decision to pause reading, the handshake,
keep-alive and idle deadlines, the close state and its grace period, and
the capabilities attached to the session.  It never touches a socket, a
reactor or a thread: an adapter gives it the frames that arrived
(L{SessionCore.frameReceived}) and the time (L{SessionCore.timeReached}),
and takes from it the bytes to write (L{SessionCore.out}), the events to act
on (L{SessionCore.events}) and the time to be woken at
(L{SessionCore.nextDeadline}).

Values are the hot path, so they skip the event list: L{frameReceived}
returns the channel's L{ValueReceived} or L{ValuesReceived} for the adapter
to deliver.  Every other outcome is appended to L{SessionCore.events}, which
the adapter drains after each call:

    - L{HandshakeCompleted}: the peer authenticated; values flow.
    - L{CloseReceived}: the peer's close record arrived; L{closing}'s C{step}
      says whether this side's reply is sealed (end the transport once it
      is written) or the peer answered this side's close (end it now).
    - L{SessionFailed}: the session failed; end the transport (abort it, or
      close it once the queued bytes are written).
    - L{IdleClosed}: the idle timeout closed the session (the close record
      is queued).
    - L{GraceExpired}: the close's grace period ran out: end the transport
      now.

Flush points of the value batch: small values sent with L{ValueSender.sendValue
<netstructer.session.sending.ValueSender.sendValue>} wait
in a batch, which is sealed into one record when it is full, before any
other record is sealed (values and records keep their order), before a
received frame is opened (it may be the peer's close), and when the adapter
calls C{sender.flush()}: at the end of the received data it is handling, or at the
end of the current turn of its event loop when C{sendValue} says so.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar, cast

from zope.interface import implementer

from netstructer.channel import (
    HANDSHAKE_MAX_FRAME,
    CloseCode,
    CloseReceived,
    Event,
    HandshakeCompleted,
    PongReceived,
    RecordReceived,
    Role,
    ValueReceived,
    ValuesReceived,
)
from netstructer.closing import CloseMachine, CloseStep
from netstructer.errors import (
    BufferDataError,
    ChannelClosedError,
    LocalProtocolError,
    NetStructerError,
    RemoteProtocolError,
    TruncationError,
)
from netstructer.keys import KeyIdentity
from netstructer.session.capability import ICapability, ISessionHost
from netstructer.session.config import BridgeConfig
from netstructer.session.ending import brokenConnection, handshakeTimedOut, peerUnresponsive
from netstructer.session.framing import FrameReader
from netstructer.session.incoming import Delivery
from netstructer.session.liveness import Due, Liveness
from netstructer.session.outgoing import OutputQueue, WriteFlow
from netstructer.session.routing import CapabilityRouter
from netstructer.session.sending import ValueSender

__all__ = [
    "CapabilityHost",
    "ControlEvent",
    "GraceExpired",
    "IdleClosed",
    "SessionCore",
    "SessionFailed",
]


@dataclass(frozen=True, slots=True)
class SessionFailed:
    """
    The session failed; the adapter ends the transport and reports
    C{error} to the session's users.

    @ivar error: Why.
    @ivar abort: Whether to drop the transport at once (C{True}) or close
        it once the queued bytes (a rejection, for instance) are written,
        within the grace period.
    @ivar quiet: Whether the failure is routine (the peer went silent),
        worth an informational line rather than a warning.
    """

    error: Exception
    abort: bool
    quiet: bool = False


@dataclass(frozen=True, slots=True)
class IdleClosed:
    """
    No value moved for the idle timeout: the session's close record is
    queued.
    """


@dataclass(frozen=True, slots=True)
class GraceExpired:
    """
    The grace period of the close ran out before the connection ended.

    @ivar message: The line to log, naming the peer and the values it did
        not confirm.
    @ivar unconfirmed: How many values sent it did not confirm.
    """

    message: str
    unconfirmed: int


_C = TypeVar("_C", bound=ICapability)

ControlEvent = HandshakeCompleted | CloseReceived | SessionFailed | IdleClosed | GraceExpired
"""Every event L{SessionCore.events} may hold."""


class SessionCore:
    """
    One session, sans-IO (see the module's documentation).

    @ivar role: Which end of the connection this is.
    @ivar config: The session's configuration.
    @ivar now: The clock: the current time, in seconds.
    @ivar channel: The handshake and record protection.
    @ivar sender: The send side, sealing values and records into L{out}.
    @ivar frames: Splits the received bytes into frames (the adapter feeds it).
    @ivar out: The framed bytes waiting for the transport.
    @ivar flow: Whether the transport takes more (L{WriteFlow}).
    @ivar delivery: Values held back while receiving is paused; the queue.
    @ivar queue: Received values waiting for the application.
    @ivar events: Control events for the adapter, oldest first.
    @ivar closing: The close state and its grace period.
    @ivar liveness: The handshake, keep-alive, idle and wake-up deadlines.
    @ivar capabilities: The capabilities attached to the session.
    @ivar peer: How the peer is named in messages (C{"ip:port"}).
    @ivar name: On a server, the name of the client's key, if named.
    @ivar keyId: The ID of the key that authenticated the session.
    @ivar peerKey: On a server, the client key's L{KeyIdentity}.
    @ivar suite: The suite the handshake settled on (L{None} before).
    @ivar openedAt: When the handshake completed (L{None} before).
    @ivar connectedAt: When the transport connected (L{None} before).
    @ivar valuesIn: Values received and handed to the adapter.
    @ivar bytesIn: Frame bytes received.
    @ivar established: Whether the handshake has completed.
    @ivar failure: Why this side failed the session, if it did.
    @ivar ended: Whether the transport has ended.
    @ivar halted: Whether values stop: receiving paused, failed or ended.
    @ivar closeRequested: The code and reason of this side's close.
    @ivar closeCode: The peer's close code, if it sent one.
    @ivar closeMessage: The peer's close reason, if it sent one.
    @ivar lastActivity: When a frame last arrived.
    @ivar lastValueIn: When values last arrived.
    @ivar changed: Called when a capability acted outside the adapter's
        calls (a value relayed while another session's data was handled).
    """

    # Slots, as words (a server holds a core per connection).
    __slots__ = tuple(
        """
        _graceReported bytesIn capabilities changed channel closeCode
        closeMessage closeRequested closing config connectedAt delivery ended
        established events failure flow frames halted keyId lastActivity
        lastValueIn liveness name now openedAt out peer peerKey queue role
        sender suite valuesIn
        """.split()  # noqa: SIM905
    )

    def __init__(
        self,
        role: Role,
        config: BridgeConfig,
        now: Callable[[], float],
        *,
        wallClock: Callable[[], float] | None = None,
    ) -> None:
        """
        @param role: L{Role.CLIENT} or L{Role.SERVER}.
        @param config: The session's configuration.
        @param now: The clock of the session's deadlines.
        @param wallClock: The clock of Fernet timestamps; C{now} if
            L{None}.
        """
        self.role = role
        self.config = config
        self.now = now
        self.channel = channel = config.makeChannel(role, wallClock or now)
        self.frames = FrameReader(HANDSHAKE_MAX_FRAME)
        self.out = OutputQueue()
        self.flow = WriteFlow(self.out, self._writableAgain)
        self.sender = ValueSender(channel, self.out, config, now)
        self.delivery = Delivery(config.maxQueuedValues, config.maxQueuedBytes)
        self.queue = self.delivery.queue
        self.events: list[ControlEvent] = []
        self.closing = CloseMachine(config.shutdownGrace)
        self.liveness = Liveness(
            config.handshakeTimeout, config.keepAliveInterval, config.idleTimeout
        )
        self.capabilities = CapabilityRouter()
        self.peer = ""
        self.name: str | None = None
        self.keyId = ""
        self.peerKey: KeyIdentity | None = None
        self.suite: str | None = None
        self.openedAt: float | None = None
        self.connectedAt: float | None = None
        self.lastActivity = 0.0
        self.lastValueIn = 0.0
        self.valuesIn = 0
        self.bytesIn = 0
        self.established = False
        self.failure: Exception | None = None
        self.ended = False
        self.halted = False
        self.closeRequested: tuple[CloseCode, str] | None = None
        self.closeCode: CloseCode | None = None
        self.closeMessage = ""
        self.changed: Callable[[], None] = _nothing
        self._graceReported = False

    def __repr__(self) -> str:
        return f"<SessionCore {self.role.value} {self.peer or 'unconnected'}>"

    @property
    def protocolVersion(self) -> int | None:
        """
        The protocol version negotiated with the peer; L{None} before.
        """
        return self.channel.protocolVersion

    @property
    def valuesOut(self) -> int:
        """
        Values sent (batched values count once their batch is sealed).
        """
        return self.sender.valuesOut

    @property
    def lastValue(self) -> float:
        """
        When a value last moved either way (or the handshake completed).
        """
        return max(self.lastValueIn, self.sender.lastValue)

    # The connection.

    def connectionMade(self, peer: str) -> None:
        """
        The transport connected: the handshake starts (a client's hello is
        queued in L{out}) and so does its deadline.

        @param peer: How to name the peer in messages.
        """
        self.peer = self.sender.peer = peer
        self.lastActivity = self.connectedAt = self.now()
        self.liveness.connected(self.lastActivity)
        self.channel.prepareHandshake()
        self._queueChannelFrames()

    def connectionLost(self, cause: BaseException | None = None) -> Exception | None:
        """
        The transport ended.  Values still batched are lost with it, like
        a transport's unsent writes.

        @param cause: What the transport reported, for the message.
        @return: The channel's verdict: L{None} after a clean close; a
            L{ConnectionBroken} if values were flowing and the close
            handshake never completed (whatever broke the connection: a
            reset, a closed socket, a dead peer); a L{HandshakeError} if
            the connection ended during the handshake.
        """
        if self.ended:
            return None
        self.ended = self.halted = True
        self.sender.stop("the connection has ended", failed=True)
        self.sender.drop()
        self.liveness.stop(wakes=True)
        try:
            self.channel.connectionLost()
        except TruncationError as e:
            verdict: Exception | None = brokenConnection(self.peer, e, cause)
        except NetStructerError as e:
            verdict = e
        else:
            verdict = None
        reason = self.failure or verdict or ChannelClosedError(f"{self.peer} closed")
        for capability in self.capabilities:
            capability.sessionClosed(reason)
        return verdict

    def transportFailed(self, cause: OSError) -> Exception:
        """
        A write or read on the transport failed (a reset, a broken pipe).

        @return: The error to report to the session's users.
        """
        verdict = self.connectionLost(cause)
        if verdict is None:
            verdict = brokenConnection(self.peer, None, cause)
        if self.failure is None:
            self.failure = verdict
        return verdict

    # Receiving.

    def frameReceived(self, frame: bytes | memoryview) -> ValueReceived | ValuesReceived | None:
        """
        Open one received frame.

        @param frame: The frame payload (a L{memoryview} may be released
            once this returns).
        @return: The values the frame carried, for the adapter to deliver
            (already counted in L{valuesIn}), or L{None}; anything else the
            frame caused is in L{events}, and its answers in L{out}.
        """
        self.lastActivity = now = self.now()
        self.bytesIn += len(frame)
        sender = self.sender
        if sender._batch:
            # What this side sent so far must be sealed before the frame is
            # opened: it may be the peer's close, after which nothing more
            # can be sent.
            sender.flush()
        try:
            event = self.channel.receiveFrame(frame)
        except RemoteProtocolError as e:
            self._queueChannelFrames()
            self._fail(e, abort=False)
            return None
        except LocalProtocolError:
            # The channel already failed; the transport is on its way down.
            return None
        if type(event) is ValueReceived:
            self.valuesIn += 1
            self.lastValueIn = now
            return event
        if type(event) is ValuesReceived:
            self.valuesIn += len(event.values)
            self.lastValueIn = now
            return event
        self._queueChannelFrames()
        if event is not None:
            self._controlEvent(event, now)
        return None

    def _controlEvent(self, event: Event, now: float) -> None:
        if isinstance(event, RecordReceived):
            try:
                self.capabilities.route(event.recordType, event.body)
            except RemoteProtocolError as e:
                self._fail(e, abort=False)
        elif isinstance(event, HandshakeCompleted):
            self._handshakeCompleted(event, now)
        elif isinstance(event, PongReceived):
            self.liveness.pongReceived()
            self.closing.pongReceived()
        elif isinstance(event, CloseReceived):
            self._closeReceived(event, now)

    def _handshakeCompleted(self, event: HandshakeCompleted, now: float) -> None:
        channel = self.channel
        self.established = True
        self.suite = event.suite
        peerKey = channel.peerKey
        if peerKey is not None:
            self.peerKey = peerKey
            self.name = peerKey.name
            self.keyId = peerKey.keyId
        else:
            self.keyId = channel.keyring.keyIDs()[0]
        self.openedAt = self.lastValueIn = now
        try:
            self.sender.established()
        except BufferDataError as e:
            self._fail(e, abort=True)
            return
        self.liveness.established(now)
        self.events.append(event)
        for capability in self.capabilities:
            capability.sessionOpened()

    def _closeReceived(self, event: CloseReceived, now: float) -> None:
        self.closeCode = event.code
        self.closeMessage = event.reason
        self.liveness.stop()
        step = self.closing.closeReceived(now, self.sender.valuesOut)
        self.liveness.changed = True
        if step is CloseStep.REPLIED:
            # Our reply is sealed: nothing more can be sent.
            self.closeRequested = (event.code, event.reason)
            self._notifyClosing()
        self.events.append(event)

    def pauseReceiving(self) -> bool:
        """
        Stop delivering values.

        @return: Whether receiving was running (the adapter pauses its
            transport).
        """
        if not self.delivery.pause():
            return False
        self.halted = True
        return True

    def resumeReceiving(self) -> bool:
        """
        Deliver values again.

        @return: Whether receiving was paused (the adapter resumes its
            transport and delivers what is buffered).
        """
        if not self.delivery.resume():
            return False
        self.halted = self.ended or self.failure is not None
        return True

    # Flow (sending is the ValueSender's, the marks the WriteFlow's).

    @property
    def writable(self) -> bool:
        """
        Whether the transport accepts writes and the output queue is under
        its high-water mark (see L{WriteFlow}).
        """
        return self.flow.writable

    def _writableAgain(self) -> None:
        for capability in self.capabilities:
            capability.sessionWritable()

    # Closing.

    def close(self, code: CloseCode = CloseCode.NORMAL, reason: str = "") -> None:
        """
        Close the session cleanly: seal the close record after every value
        sent so far, and start the grace period.  During the handshake the
        close waits for it (L{closeRequested}; the adapter calls
        L{closeIfRequested} once it has told its users the session opened).

        @param code: Why the session closes.
        @param reason: A short reason the peer sees; never a secret.
        """
        if self.ended or self.closing.sentClose:
            return
        self._startGrace()
        if not self.established:
            self.closeRequested = (code, reason)
            self.sender.stop("the session is closing")
            return
        self.sender.flush()
        try:
            frame = self.channel.close(code, reason)
        except ChannelClosedError:
            return
        self.closeRequested = (code, reason)
        self.closing.closeSent(self.now(), self.sender.valuesOut)
        self.out.frame(frame)
        # The grace period bounds the rest: no more pings, no idle timeout.
        self.liveness.stop()
        self._notifyClosing()

    def closeIfRequested(self) -> None:
        """
        Send the close asked for during the handshake, if any.
        """
        if self.closeRequested is not None and not self.closing.sentClose:
            code, reason = self.closeRequested
            self.close(code, reason)

    def _startGrace(self) -> None:
        if self.closing.start(self.now()) is not None:
            self.liveness.changed = True

    def _notifyClosing(self) -> None:
        self.sender.stop("the session is closing")
        for capability in self.capabilities:
            capability.sessionClosing()

    # Failing.

    def _fail(self, error: Exception, abort: bool, quiet: bool = False) -> None:
        """
        Fail the session: no value is delivered or sent any more, and the
        adapter ends the transport.
        """
        if self.failure is None:
            self.failure = error
        self.halted = True
        self.sender.stop("the connection has ended", failed=True)
        self.liveness.stop()
        if not abort:
            self._startGrace()
        self.events.append(SessionFailed(error, abort, quiet))

    def failSession(self, error: Exception) -> None:
        """
        A capability found the peer broke its rules, or failed itself: the
        session fails (see L{ISessionHost.failSession
        <netstructer.session.capability.ISessionHost.failSession>}).

        @param error: Why.
        """
        if self.failure is None and not self.ended:
            self._fail(error, abort=False)

    def frameTooLarge(self, error: BufferDataError) -> None:
        """
        The peer announced a frame over the limit: the session fails at
        once, before any of the frame is read.
        """
        self._fail(error, abort=True)

    # Time.

    @property
    def nextDeadline(self) -> float | None:
        """
        When the adapter must next call L{timeReached}, or L{None}.
        """
        grace = None if self._graceReported or self.ended else self.closing.deadline
        return self.liveness.nextDeadline(grace)

    @property
    def deadlinesChanged(self) -> bool:
        """
        Whether L{nextDeadline} may have moved since the adapter last called
        L{deadlinesSeen}.
        """
        return self.liveness.changed

    def deadlinesSeen(self) -> None:
        """
        The adapter has armed its timer for L{nextDeadline}.
        """
        self.liveness.changed = False

    def timeReached(self, now: float) -> None:
        """
        The adapter's timer fired: do what is due (pings, timeouts, the end
        of the grace period, capabilities' wake-ups).  Outcomes go to
        L{events} and L{out}.

        @param now: The current time.
        """
        for due in self.liveness.due(now, self.lastActivity, self.lastValue):
            self._handleDue(due)
        if not self._graceReported and not self.ended and self.closing.expired(now):
            self._graceExpired()
        for capability in self.liveness.woken(now):
            cast(ICapability, capability).timeReached(now)

    def _handleDue(self, due: Due) -> None:
        if due is Due.HANDSHAKE_TIMEOUT:
            self._fail(handshakeTimedOut(self.peer, self.config.handshakeTimeout), abort=True)
        elif due is Due.UNRESPONSIVE:
            interval = self.config.keepAliveInterval or 0.0
            self._fail(peerUnresponsive(self.peer, interval), abort=True, quiet=True)
        elif due is Due.PING:
            self.closing.pingSent(self.sender.valuesOut)
            self.sender.sendControl(self.channel.ping)
            # Silent for an interval: give back the buffers large values
            # were received and sealed in (made again when needed).
            self.frames.releaseBuffers()
            self.channel.releaseBuffers()
        elif due is Due.IDLE:
            self.close(CloseCode.IDLE_TIMEOUT, "idle timeout")
            self.events.append(IdleClosed())

    def _graceExpired(self) -> None:
        self._graceReported = True
        self.liveness.changed = True
        valuesOut = self.sender.valuesOut
        unconfirmed = self.closing.unconfirmed(valuesOut)
        message = self.closing.expiredMessage(self.peer, valuesOut)
        self.halted = True
        if self.failure is None and self.closing.step is not CloseStep.COMPLETED:
            self.failure = TruncationError(message)
        self.events.append(GraceExpired(message, unconfirmed))

    # Capabilities.

    def attach(self, makeCapability: Callable[[ISessionHost], _C]) -> _C:
        """
        Attach a capability: it receives its record types and the
        session's events from now on (L{ICapability.sessionOpened} at once
        if the handshake has completed).

        @param makeCapability: Makes the capability, given the host it acts
            through.
        @return: The capability.
        @raise ValueError: A capability of that name is attached already.
        """
        host = CapabilityHost(self)
        capability = makeCapability(host)
        self.capabilities.add(capability)
        host.capability = capability
        if self.established and not self.ended:
            capability.sessionOpened()
        return capability

    def wakeCapabilityAt(self, capability: ICapability, when: float | None) -> None:
        """
        Wake C{capability} at C{when} (see L{ISessionHost.wakeAt
        <netstructer.session.capability.ISessionHost.wakeAt>}).
        """
        self.liveness.wake(capability, when)

    def _queueChannelFrames(self) -> None:
        for frame in self.channel.framesToSend():
            self.out.frame(frame)


def _nothing() -> None:
    """
    The default of L{SessionCore.changed}: an adapter that acts after each of
    its own calls (the blocking link) needs no more.
    """


@implementer(ISessionHost)
class CapabilityHost:
    """
    What one capability sees of its session: an L{ISessionHost} over the
    session core.

    @ivar capability: The capability it hosts, once attached.
    """

    __slots__ = (
        "_core",
        "capability",
    )

    def __init__(self, core: SessionCore) -> None:
        self._core = core
        self.capability: ICapability | None = None

    @property
    def role(self) -> object:
        return self._core.role

    @property
    def peer(self) -> str:
        return self._core.peer

    @property
    def peerVersion(self) -> int | None:
        return self._core.protocolVersion

    @property
    def maxRecordBody(self) -> int | None:
        return self._core.channel.peerMaxValueSize

    @property
    def writable(self) -> bool:
        return self._core.writable

    def now(self) -> float:
        return self._core.now()

    def sendRecord(self, recordType: int, body: bytes) -> None:
        core = self._core
        core.sender.sendRecord(recordType, body)
        core.changed()

    def sendRecordParts(self, recordType: int, parts: Sequence[bytes | memoryview]) -> None:
        core = self._core
        core.sender.sendRecordParts(recordType, parts)
        core.changed()

    def wakeAt(self, when: float | None) -> None:
        if self.capability is None:
            raise RuntimeError("a capability may ask to be woken only once it is attached")
        self._core.wakeCapabilityAt(self.capability, when)
        self._core.changed()

    def failSession(self, error: Exception) -> None:
        self._core.failSession(error)
        self._core.changed()
