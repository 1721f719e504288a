# -*- test-case-name: tests.test_session -*-
"""
Tests for L{netstructer.session}: the sans-IO session core, without a
reactor, a socket or a thread.  Two cores are joined by an in-memory wire
that does what an adapter does (moves frames, delivers values, acts on
events), and a fake clock gives them the time.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass, field

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer
from zope.interface.verify import verifyObject

from netstructer.channel import CloseCode, CloseReceived, HandshakeCompleted, Role
from netstructer.closing import CloseStep
from netstructer.errors import (
    BufferDataError,
    ChannelClosedError,
    ConnectionBroken,
    HandshakeError,
    HandshakeTimeout,
    PeerUnresponsive,
    RemoteProtocolError,
    TruncationError,
)
from netstructer.keys import generateKey
from netstructer.session.capability import ICapability, ISessionHost
from netstructer.session.config import BridgeConfig
from netstructer.session.core import (
    GraceExpired,
    IdleClosed,
    SessionCore,
    SessionFailed,
)
from netstructer.session.incoming import Delivery, ReceiveQueue
from netstructer.session.liveness import Due, Liveness
from netstructer.session.outgoing import OutputQueue, WriteFlow

KEY = generateKey()
_PREFIX = struct.Struct("!I")


class FakeClock:
    """
    A clock the tests move by hand.
    """

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def frames(out: OutputQueue) -> list[bytes]:
    """
    Take every frame payload queued, checking each length prefix.
    """
    data = b"".join(bytes(chunk) for chunk in out.take())
    result = []
    while data:
        (length,) = _PREFIX.unpack_from(data)
        result.append(data[4 : 4 + length])
        data = data[4 + length :]
    return result


@dataclass
class End:
    """
    One end of a L{Wire}: its core, what it delivered, and its events.
    """

    core: SessionCore
    values: list[object] = field(default_factory=list)
    events: list[object] = field(default_factory=list)
    inbox: list[bytes] = field(default_factory=list)


class Wire:
    """
    Two session cores joined in memory, with the adapters' part written as
    plainly as possible.
    """

    def __init__(
        self,
        clientConfig: BridgeConfig | None = None,
        serverConfig: BridgeConfig | None = None,
    ) -> None:
        self.clock = FakeClock()
        self.client = End(
            SessionCore(Role.CLIENT, clientConfig or BridgeConfig.fromKey(KEY), self.clock)
        )
        self.server = End(
            SessionCore(Role.SERVER, serverConfig or BridgeConfig.fromKey(KEY), self.clock)
        )
        self.server.core.connectionMade("client:1")
        self.client.core.connectionMade("server:2")

    def ends(self) -> tuple[tuple[End, End], tuple[End, End]]:
        return (self.client, self.server), (self.server, self.client)

    def move(self) -> bool:
        """
        Move every queued frame to the other side's inbox.

        @return: Whether anything moved.
        """
        moved = False
        for source, target in self.ends():
            for frame in frames(source.core.out):
                target.inbox.append(frame)
                moved = True
        return moved

    def deliver(self, end: End, limit: int | None = None) -> None:
        """
        Feed C{end} the frames in its inbox (at most C{limit}), unless
        receiving is paused, delivering the values they carry.
        """
        core = end.core
        count = 0
        while end.inbox and not core.delivery.paused and (limit is None or count < limit):
            if core.ended:
                end.inbox.clear()
                return
            event = core.frameReceived(end.inbox.pop(0))
            count += 1
            if event is not None:
                values = [event.value] if hasattr(event, "value") else list(event.values)
                end.values.extend(values)
            end.events.extend(core.events)
            core.events.clear()

    def pump(self) -> None:
        """
        Flush both sides' batches and move and deliver frames until nothing
        moves.
        """
        for _ in range(100):
            for end in (self.client, self.server):
                end.core.sender.flush()
            if not self.move() and not any(end.inbox for end in (self.client, self.server)):
                return
            for end in (self.client, self.server):
                self.deliver(end)


class QueueTests(SynchronousTestCase):
    """
    L{ReceiveQueue}, L{Delivery}, L{OutputQueue} and L{WriteFlow}.
    """

    def test_receiveBounds(self) -> None:
        """
        The queue says to pause at either bound, and allows resuming only
        at half of both.
        """
        queue = ReceiveQueue(4, 100)
        self.assertFalse(queue.push("a", 10))
        self.assertFalse(queue.push("b", 10))
        self.assertFalse(queue.push("c", 10))
        self.assertTrue(queue.push("d", 10))
        self.assertFalse(queue.canResume)
        self.assertEqual(queue.pop(), ("a", 10, False))
        self.assertFalse(queue.canResume)
        queue.pop()
        self.assertTrue(queue.canResume)
        self.assertTrue(queue.push("big", 100))
        self.assertEqual(queue.queuedBytes, 120)
        queue.extend([1, 2], 3)
        self.assertEqual(len(queue), 5)
        queue.clear()
        self.assertFalse(queue)
        self.assertRaises(ValueError, ReceiveQueue, 0, 1)

    def test_delivery(self) -> None:
        """
        Pausing and resuming report whether they changed anything; held
        values come back once.
        """
        delivery = Delivery(10, 10)
        self.assertTrue(delivery.pause())
        self.assertFalse(delivery.pause())
        self.assertEqual(delivery.hold([1, 2, 3, 4], 2, 7), 2)
        self.assertTrue(delivery.holding)
        self.assertEqual(delivery.share, 7)
        self.assertEqual(delivery.takeHeld(), [3, 4])
        self.assertFalse(delivery.holding)
        self.assertTrue(delivery.resume())
        self.assertFalse(delivery.resume())

    def test_outputAdvance(self) -> None:
        """
        Frames are queued as prefix and payload, uncopied; partial writes
        drop exactly what was written.
        """
        out = OutputQueue(highWater=100, lowWater=10)
        payload = b"x" * 60
        out.frame(payload)
        self.assertIs(out.chunks()[1], payload)
        self.assertEqual(out.size, 64)
        out.frame(b"y" * 40)
        self.assertTrue(out.full)
        out.advance(66)
        self.assertEqual(out.size, 42)
        self.assertEqual(bytes(out.chunks()[0]), struct.pack("!I", 40)[2:])
        self.assertFalse(out.drained)
        out.advance(42)
        self.assertTrue(out.drained)
        self.assertFalse(out)
        self.assertRaises(ValueError, OutputQueue, 10, 10)

    def test_coalesce(self) -> None:
        """
        Small chunks at the front are joined for a one-buffer writer.
        """
        out = OutputQueue()
        for body in (b"a", b"bb", b"ccc"):
            out.frame(body)
        out.coalesceFront(1024)
        self.assertEqual(len(out), 1)
        self.assertEqual(frames(out), [b"a", b"bb", b"ccc"])

    def test_writeFlow(self) -> None:
        """
        Whoever found the session unwritable is told once, when the
        transport resumed and the queue drained.
        """
        out = OutputQueue(highWater=100, lowWater=10)
        told: list[None] = []
        flow = WriteFlow(out, lambda: told.append(None))
        self.assertTrue(flow.writable)
        flow.outputWritten()
        self.assertEqual(told, [])
        flow.transportPaused()
        self.assertFalse(flow.writable)
        out.frame(b"x" * 100)
        flow.transportResumed()
        self.assertEqual(told, [])
        self.assertFalse(flow.writable)
        out.advance(100)
        flow.outputWritten()
        self.assertEqual(told, [None])
        flow.outputWritten()
        self.assertEqual(told, [None])


class LivenessTests(SynchronousTestCase):
    """
    L{Liveness}: the deadlines as pure state.
    """

    def test_handshake(self) -> None:
        """
        The handshake's deadline comes first; once established it goes.
        """
        liveness = Liveness(10.0, 60.0, None)
        liveness.connected(0.0)
        self.assertEqual(liveness.nextDeadline(), 10.0)
        self.assertEqual(liveness.due(9.9, 0.0, 0.0), [])
        self.assertEqual(liveness.due(10.0, 0.0, 0.0), [Due.HANDSHAKE_TIMEOUT])
        self.assertIsNone(liveness.nextDeadline())

    def test_keepAlive(self) -> None:
        """
        A ping after one silent interval; the peer is unresponsive after
        another without a pong; activity postpones the ping.
        """
        liveness = Liveness(10.0, 60.0, None)
        liveness.connected(0.0)
        liveness.established(1.0)
        self.assertEqual(liveness.nextDeadline(), 61.0)
        self.assertEqual(liveness.due(61.0, 30.0, 30.0), [])
        self.assertEqual(liveness.nextDeadline(), 90.0)
        self.assertEqual(liveness.due(90.0, 30.0, 30.0), [Due.PING])
        self.assertTrue(liveness.awaitingPong)
        self.assertEqual(liveness.due(150.0, 30.0, 30.0), [Due.UNRESPONSIVE])
        liveness = Liveness(10.0, 60.0, None)
        liveness.established(0.0)
        self.assertEqual(liveness.due(60.0, 0.0, 0.0), [Due.PING])
        liveness.pongReceived()
        self.assertEqual(liveness.due(120.0, 60.5, 0.0), [])

    def test_idle(self) -> None:
        """
        The idle deadline follows the last value, either way.
        """
        liveness = Liveness(10.0, None, 30.0)
        liveness.established(0.0)
        self.assertEqual(liveness.due(30.0, 0.0, 20.0), [])
        self.assertEqual(liveness.nextDeadline(), 50.0)
        self.assertEqual(liveness.due(50.0, 0.0, 20.0), [Due.IDLE])
        self.assertIsNone(liveness.nextDeadline())

    def test_wakes(self) -> None:
        """
        Wake-ups join the deadlines and are forgotten once woken.
        """
        liveness = Liveness(10.0, None, None)
        liveness.wake("a", 5.0)
        liveness.wake("b", 7.0)
        self.assertEqual(liveness.nextDeadline(8.0), 5.0)
        self.assertEqual(liveness.woken(6.0), ["a"])
        liveness.wake("b", None)
        self.assertEqual(liveness.woken(100.0), [])
        self.assertIsNone(liveness.nextDeadline())


class CoreTests(SynchronousTestCase):
    """
    L{SessionCore}: two of them over a L{Wire}.
    """

    def test_handshakeAndValues(self) -> None:
        """
        The handshake completes on both sides; values sent before it wait,
        then leave in order with those sent after.
        """
        wire = Wire()
        self.assertFalse(wire.client.core.sender.sendValue("early"))
        wire.pump()
        self.assertTrue(wire.client.core.established)
        self.assertTrue(wire.server.core.established)
        self.assertTrue(any(isinstance(e, HandshakeCompleted) for e in wire.server.events))
        wire.client.core.sender.sendValue(1)
        wire.client.core.sender.sendValue([2, {b"k": (3,)}])
        wire.pump()
        self.assertEqual(wire.server.values, ["early", 1, [2, {b"k": (3,)}]])
        self.assertEqual(wire.server.core.valuesIn, 3)
        self.assertEqual(wire.client.core.valuesOut, 3)

    def test_flushPoints(self) -> None:
        """
        L{sendValue} asks for an end-of-turn flush unless received data is
        being handled, and never holds a batch past a record.
        """
        wire = Wire()
        wire.pump()
        sender = wire.client.core.sender
        self.assertTrue(sender.sendValue("a"))
        sender.receiving = True
        self.assertFalse(sender.sendValue("b"))
        sender.receiving = False
        self.assertEqual(sender.batched, 2)
        wire.client.core.attach(lambda host: Recorder(host))
        wire.server.core.attach(lambda host: Recorder(host))
        sender.sendRecord(0x10, b"r")
        self.assertEqual(sender.batched, 0)
        wire.pump()
        self.assertEqual(wire.server.values, ["a", "b"])

    def test_pendingBound(self) -> None:
        """
        Too many values waiting for the handshake are refused.
        """
        wire = Wire(clientConfig=BridgeConfig.fromKey(KEY, maxPendingValues=2))
        wire.client.core.sender.sendValue(1)
        wire.client.core.sender.sendValue(2)
        self.assertRaises(BufferDataError, wire.client.core.sender.sendValue, 3)

    def test_closeHandshake(self) -> None:
        """
        The side that closes first completes when the reply arrives; the
        other replies; neither may send afterwards.
        """
        wire = Wire()
        wire.pump()
        wire.client.core.sender.sendValue("last")
        wire.client.core.close(CloseCode.GOING_AWAY, "bye")
        self.assertRaises(ChannelClosedError, wire.client.core.sender.sendValue, 1)
        wire.pump()
        self.assertEqual(wire.server.values, ["last"])
        self.assertIs(wire.server.core.closing.step, CloseStep.REPLIED)
        self.assertIs(wire.client.core.closing.step, CloseStep.COMPLETED)
        self.assertEqual(wire.server.core.closeCode, CloseCode.GOING_AWAY)
        self.assertTrue(any(isinstance(e, CloseReceived) for e in wire.client.events))
        self.assertRaises(ChannelClosedError, wire.server.core.sender.sendValue, 1)
        self.assertIsNone(wire.client.core.connectionLost())
        self.assertIsNone(wire.server.core.connectionLost())

    def test_closeDuringHandshake(self) -> None:
        """
        A close asked for during the handshake waits for it.
        """
        wire = Wire()
        wire.client.core.close(CloseCode.NORMAL, "")
        self.assertEqual(wire.client.core.closeRequested, (CloseCode.NORMAL, ""))
        self.assertRaises(ChannelClosedError, wire.client.core.sender.sendValue, 1)
        wire.pump()
        wire.client.core.closeIfRequested()
        wire.pump()
        self.assertIs(wire.client.core.closing.step, CloseStep.COMPLETED)

    def test_graceExpires(self) -> None:
        """
        A close the peer never answers ends with L{GraceExpired} at the
        deadline, naming the unconfirmed values.
        """
        wire = Wire(clientConfig=BridgeConfig.fromKey(KEY, shutdownGrace=2.0))
        wire.pump()
        wire.client.core.sender.sendValue(1)
        wire.client.core.close()
        self.assertEqual(wire.client.core.nextDeadline, 2.0)
        wire.clock.now = 2.0
        wire.client.core.timeReached(2.0)
        [event] = wire.client.core.events
        assert isinstance(event, GraceExpired)
        self.assertEqual(event.unconfirmed, 1)
        self.assertIsInstance(wire.client.core.failure, TruncationError)

    def test_keepAlive(self) -> None:
        """
        A silent peer is pinged, and failed when it does not answer.
        """
        config = BridgeConfig.fromKey(KEY, keepAliveInterval=5.0)
        wire = Wire(serverConfig=config)
        wire.pump()
        core = wire.server.core
        wire.clock.now = 5.0
        core.timeReached(5.0)
        self.assertTrue(core.out)
        wire.clock.now = 10.0
        core.timeReached(10.0)
        [event] = core.events
        assert isinstance(event, SessionFailed)
        self.assertIsInstance(event.error, PeerUnresponsive)
        self.assertIn("no answer to a keep-alive ping", str(event.error))
        self.assertTrue(event.abort)

    def test_pongKeepsAlive(self) -> None:
        """
        A peer that answers pings stays.
        """
        wire = Wire(serverConfig=BridgeConfig.fromKey(KEY, keepAliveInterval=5.0))
        wire.pump()
        for step in range(1, 5):
            wire.clock.now = 5.0 * step
            wire.server.core.timeReached(wire.clock.now)
            wire.pump()
        self.assertEqual(wire.server.core.events, [])
        self.assertFalse(wire.server.core.liveness.awaitingPong)

    def test_idle(self) -> None:
        """
        No value for the idle timeout closes the session.
        """
        wire = Wire(serverConfig=BridgeConfig.fromKey(KEY, idleTimeout=30.0))
        wire.pump()
        wire.clock.now = 30.0
        wire.server.core.timeReached(30.0)
        self.assertIsInstance(wire.server.core.events[-1], IdleClosed)
        wire.pump()
        self.assertEqual(wire.client.core.closeCode, CloseCode.IDLE_TIMEOUT)

    def test_handshakeTimeout(self) -> None:
        """
        A handshake that does not complete in time fails the session.
        """
        wire = Wire()
        wire.clock.now = 10.0
        wire.server.core.timeReached(10.0)
        [event] = wire.server.core.events
        assert isinstance(event, SessionFailed)
        self.assertIsInstance(event.error, HandshakeTimeout)

    def test_tampered(self) -> None:
        """
        A record that fails authentication fails the receiving session; the
        transport is closed, not aborted, within the grace period.
        """
        wire = Wire()
        wire.pump()
        wire.client.core.sender.sendValue("x")
        wire.client.core.sender.flush()
        [frame] = frames(wire.client.core.out)
        wire.server.core.frameReceived(frame[:-1] + bytes([frame[-1] ^ 1]))
        [event] = wire.server.core.events
        assert isinstance(event, SessionFailed)
        self.assertIsInstance(event.error, RemoteProtocolError)
        self.assertFalse(event.abort)
        self.assertIsNotNone(wire.server.core.nextDeadline)

    def test_brokenConnection(self) -> None:
        """
        A transport that breaks while values flow is reported as
        L{ConnectionBroken}, an C{OSError} with the transport's error as
        its cause; during the handshake, as a handshake error.
        """
        wire = Wire()
        wire.pump()
        reset = ConnectionResetError(104, "Connection reset by peer")
        error = wire.client.core.transportFailed(reset)
        self.assertIsInstance(error, ConnectionBroken)
        self.assertIsInstance(error, OSError)
        self.assertIs(error.__cause__, reset)
        self.assertIn("Connection reset by peer", str(error))
        self.assertIn("server:2", str(error))
        self.assertIsInstance(wire.server.core.connectionLost(None), ConnectionBroken)
        fresh = Wire()
        self.assertIsInstance(fresh.client.core.connectionLost(None), HandshakeError)


@implementer(ICapability)
class Recorder:
    """
    A capability of the relay's record types that records what it is told,
    and sends or fails when asked.
    """

    capability = "relay"

    def __init__(self, host: ISessionHost) -> None:
        self.host = host
        self.told: list[object] = []

    def recordReceived(self, recordType: int, body: bytes) -> None:
        if body == b"bad":
            raise RemoteProtocolError("a bad record")
        self.told.append((recordType, bytes(body)))

    def sessionOpened(self) -> None:
        self.told.append("opened")

    def sessionWritable(self) -> None:
        self.told.append("writable")

    def sessionClosing(self) -> None:
        self.told.append("closing")

    def sessionClosed(self, reason: BaseException) -> None:
        self.told.append(("closed", type(reason)))

    def timeReached(self, now: float) -> None:
        self.told.append(("time", now))


class CapabilityTests(SynchronousTestCase):
    """
    The capability seam: records, events, time and failure.
    """

    def test_seam(self) -> None:
        """
        A capability gets its records in order with values, and every
        event of the session's life.
        """
        wire = Wire()
        client = wire.client.core.attach(Recorder)
        verifyObject(ICapability, client)
        verifyObject(ISessionHost, client.host)
        server = wire.server.core.attach(Recorder)
        wire.pump()
        self.assertEqual(client.told, ["opened"])
        late = wire.server.core.attach(lambda host: _Named(host, "streams"))
        self.assertEqual(late.told, ["opened"])
        wire.client.core.sender.sendValue("before")
        client.host.sendRecord(0x11, b"payload")
        wire.pump()
        self.assertEqual(server.told[-1], (0x11, b"payload"))
        self.assertEqual(wire.server.values, ["before"])
        wire.client.core.close()
        wire.pump()
        self.assertIn("closing", client.told)
        self.assertIn("closing", server.told)
        wire.server.core.connectionLost()
        self.assertEqual(server.told[-1], ("closed", ChannelClosedError))
        self.assertRaises(ValueError, wire.client.core.attach, Recorder)

    def test_failSession(self) -> None:
        """
        A record the capability refuses fails the session; so does the
        capability asking.
        """
        wire = Wire()
        wire.client.core.attach(Recorder)
        server = wire.server.core.attach(Recorder)
        wire.pump()
        server.host.failSession(RemoteProtocolError("refused"))
        [event] = wire.server.core.events
        assert isinstance(event, SessionFailed)
        wire = Wire()
        client = wire.client.core.attach(Recorder)
        wire.server.core.attach(Recorder)
        wire.pump()
        client.host.sendRecord(0x10, b"bad")
        wire.move()
        wire.deliver(wire.server)
        self.assertTrue(any(isinstance(e, SessionFailed) for e in wire.server.events))

    def test_unattached(self) -> None:
        """
        A record of a capability the receiver did not attach fails it.
        """
        wire = Wire()
        client = wire.client.core.attach(Recorder)
        wire.pump()
        client.host.sendRecord(0x12, b"x")
        wire.move()
        wire.deliver(wire.server)
        [event] = [e for e in wire.server.events if isinstance(e, SessionFailed)]
        self.assertIn("has not enabled", str(event.error))

    def test_recordParts(self) -> None:
        """
        A record sent in parts is sealed into the channel's reused buffer,
        queued as borrowed; sealing the next one first copies what is still
        queued of it, so both arrive whole, in order with values.
        """
        wire = Wire()
        client = wire.client.core.attach(Recorder)
        server = wire.server.core.attach(Recorder)
        wire.pump()
        out = wire.client.core.out
        first, second = os.urandom(100_000), os.urandom(90_000)
        client.host.sendRecordParts(0x11, (b"one", memoryview(first)))
        borrowed = out.borrowed
        self.assertIsNotNone(borrowed)
        wire.client.core.sender.sendValue("between")
        client.host.sendRecordParts(0x11, (b"two", second))
        self.assertIsNot(out.borrowed, borrowed)
        client.host.sendRecordParts(0x11, [b"th", b"r", b"ee"])
        wire.pump()
        self.assertEqual(
            server.told[-3:], [(0x11, b"one" + first), (0x11, b"two" + second), (0x11, b"three")]
        )
        self.assertEqual(wire.server.values, ["between"])

    def test_sealBatch(self) -> None:
        """
        C{sealBatch} seals the batch into one record and returns its frame
        without queuing it, counting its values; with nothing batched it
        returns L{None}.
        """
        wire = Wire()
        wire.pump()
        sender = wire.client.core.sender
        self.assertIsNone(sender.sealBatch())
        sender.receiving = True
        sender.sendValue("a")
        sender.sendValue(["b", 2])
        before = sender.valuesOut
        frame = sender.sealBatch()
        assert frame is not None
        self.assertEqual(sender.valuesOut - before, 2)
        self.assertEqual(sender.batched, 0)
        self.assertEqual(wire.client.core.out.size, 0)
        wire.server.inbox.append(frame)
        wire.deliver(wire.server)
        self.assertEqual(wire.server.values, ["a", ["b", 2]])

    def test_time(self) -> None:
        """
        A capability is woken at the time it asked for, once.
        """
        wire = Wire()
        capability = wire.client.core.attach(Recorder)
        capability.host.wakeAt(3.0)
        self.assertEqual(wire.client.core.nextDeadline, 3.0)
        wire.client.core.timeReached(2.0)
        wire.client.core.timeReached(3.0)
        wire.client.core.timeReached(4.0)
        self.assertEqual([t for t in capability.told if isinstance(t, tuple)], [("time", 3.0)])

    def test_writable(self) -> None:
        """
        A capability that found the session unwritable is told when it is
        writable again.
        """
        wire = Wire()
        capability = wire.client.core.attach(Recorder)
        wire.pump()
        wire.client.core.flow.transportPaused()
        self.assertFalse(capability.host.writable)
        wire.client.core.flow.transportResumed()
        self.assertEqual(capability.told[-1], "writable")


@implementer(ICapability)
class _Named(Recorder):
    def __init__(self, host: ISessionHost, name: str) -> None:
        super().__init__(host)
        self.capability = name


operations = st.lists(
    st.one_of(
        st.tuples(st.just("send"), st.sampled_from(["client", "server"]), st.integers(0, 10**6)),
        st.tuples(st.just("big"), st.sampled_from(["client", "server"]), st.integers(1, 3 * 16384)),
        st.tuples(st.just("flush"), st.sampled_from(["client", "server"])),
        st.tuples(st.just("move")),
        st.tuples(st.just("deliver"), st.sampled_from(["client", "server"]), st.integers(1, 3)),
        st.tuples(st.just("pause"), st.sampled_from(["client", "server"])),
        st.tuples(st.just("resume"), st.sampled_from(["client", "server"])),
        st.tuples(st.just("ping"), st.sampled_from(["client", "server"])),
        st.tuples(st.just("close"), st.sampled_from(["client", "server"])),
    ),
    max_size=60,
)


class ModelTests(SynchronousTestCase):
    """
    Random interleavings of sends, receives, pings, pauses and closes give
    the same values in the same order through the core as through the
    reference model: each side receives exactly what the other sent before
    its close, in order, and nothing after.
    """

    @settings(max_examples=150, deadline=None)
    @given(operations)
    def test_model(self, steps: list[tuple[object, ...]]) -> None:
        config = BridgeConfig.fromKey(KEY, keepAliveInterval=5.0)
        wire = Wire(clientConfig=config, serverConfig=config)
        wire.pump()
        ends = {"client": wire.client, "server": wire.server}
        sent: dict[str, list[object]] = {"client": [], "server": []}
        for step in steps:
            kind = step[0]
            end = ends[str(step[1])] if len(step) > 1 else None
            if kind in ("send", "big") and end is not None:
                value: object = step[2] if kind == "send" else b"v" * int(step[2])  # type: ignore[operator]
                try:
                    end.core.sender.sendValue(value)
                except ChannelClosedError:
                    continue
                sent[str(step[1])].append(value)
            elif kind == "flush" and end is not None:
                end.core.sender.flush()
            elif kind == "move":
                wire.move()
            elif kind == "deliver" and end is not None:
                wire.deliver(end, int(step[2]))  # type: ignore[call-overload]
            elif kind == "pause" and end is not None:
                end.core.pauseReceiving()
            elif kind == "resume" and end is not None:
                end.core.resumeReceiving()
            elif kind == "ping" and end is not None and not end.core.liveness.awaitingPong:
                # A ping once the side has been silent for an interval (and
                # not a second one, after which a peer that did not answer
                # the first is rightly dropped).
                wire.clock.now += 5.0
                end.core.lastActivity = wire.clock.now - 5.0
                end.core.timeReached(wire.clock.now)
                end.events.extend(end.core.events)
                end.core.events.clear()
            elif kind == "close" and end is not None:
                end.core.close()
        for end in ends.values():
            end.core.resumeReceiving()
        wire.pump()
        self.assertEqual(wire.server.values, sent["client"])
        self.assertEqual(wire.client.values, sent["server"])
        for end in ends.values():
            self.assertFalse(
                [e for e in end.events if isinstance(e, SessionFailed)], "no side may fail"
            )
