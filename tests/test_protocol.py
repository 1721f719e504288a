# -*- test-case-name: tests.test_protocol -*-
"""
Tests for L{netstructer.protocol.BridgeProtocol}, in memory: protocols on
L{StringTransport}s, a pump moving bytes between them, and a L{Clock}.
"""

from __future__ import annotations

import struct

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet.abstract import FileDescriptor
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.internet.interfaces import IAddress
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactor, StringTransport
from twisted.logger import LogEvent, Logger, capturedLogs
from twisted.python.failure import Failure
from twisted.python.monkey import MonkeyPatcher
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer
from zope.interface.verify import verifyObject

from netstructer import channel as _channel
from netstructer._crypto import generateEphemeral
from netstructer.channel import (
    HANDSHAKE_MAX_FRAME,
    Channel,
    CloseCode,
    CloseReceived,
    Role,
    ValueReceived,
    ValuesReceived,
)
from netstructer.errors import (
    AuthenticationError,
    BufferDataError,
    ChannelClosedError,
    EncodeError,
    HandshakeTimeout,
    OperationTimedOut,
    SessionClosed,
    TruncationError,
)
from netstructer.keys import generateKey
from netstructer.protocol import (
    _IMMEDIATE_WRITE_LIMIT,
    BridgeClientFactory,
    BridgeConfig,
    BridgeProtocol,
    BridgeServerFactory,
    IConnectionGate,
    ISessionObserver,
    PeerClosed,
    sessionKey,
)
from netstructer.session.sending import ValueSender
from netstructer.values import Limits

KEY = generateKey()
EXAMPLE = ["hi im haytam", 128, {b"gg": "gg"}, {1, 2, 6, 4}, (False, True)]


@implementer(ISessionObserver)
class Recorder:
    """
    A session observer that records what it is told.
    """

    def __init__(self) -> None:
        self.opened: list[BridgeProtocol] = []
        self.closed: list[tuple[BridgeProtocol, Failure]] = []

    def sessionOpened(self, session: BridgeProtocol) -> None:
        self.opened.append(session)

    def sessionClosed(self, session: BridgeProtocol, reason: Failure) -> None:
        self.closed.append((session, reason))


class Pair:
    """
    A client and a server protocol connected through two
    L{StringTransport}s, with one clock.
    """

    def __init__(
        self,
        clientConfig: BridgeConfig | None = None,
        serverConfig: BridgeConfig | None = None,
        clientPeer: IPv4Address | IPv6Address | None = None,
    ) -> None:
        self.clock = Clock()
        self.events: list[LogEvent] = []
        logger = Logger(observer=self.events.append)
        self.observer = Recorder()
        self.client = BridgeProtocol(
            Role.CLIENT, clientConfig or BridgeConfig.fromKey(KEY), self.clock, logger=logger
        )
        self.server = BridgeProtocol(
            Role.SERVER,
            serverConfig or BridgeConfig.fromKey(KEY),
            self.clock,
            observer=self.observer,
            logger=logger,
        )
        self.clientTransport = StringTransport(
            hostAddress=IPv4Address("TCP", "127.0.0.1", 5000),
            peerAddress=IPv4Address("TCP", "127.0.0.1", 5000),
        )
        self.serverTransport = StringTransport(
            hostAddress=IPv4Address("TCP", "127.0.0.1", 5000),
            peerAddress=clientPeer or IPv4Address("TCP", "127.0.0.1", 40000),
        )
        self.server.makeConnection(self.serverTransport)
        self.client.makeConnection(self.clientTransport)

    def pump(self, chunk: int | None = None) -> None:
        """
        Move bytes both ways until neither side has anything to send,
        optionally in chunks of C{chunk} bytes.
        """
        for _ in range(1000):
            # Values sent outside a frame's handling leave at the end of the
            # reactor turn.
            self.clock.advance(0)
            moved = False
            for source, target in (
                (self.clientTransport, self.server),
                (self.serverTransport, self.client),
            ):
                data = source.value()
                if data:
                    source.clear()
                    moved = True
                    if target.closeReason is not None:
                        continue
                    if chunk is None:
                        target.dataReceived(data)
                    else:
                        for i in range(0, len(data), chunk):
                            target.dataReceived(data[i : i + chunk])
            self.deliverDisconnects()
            if not moved:
                return
        raise AssertionError("the pump did not settle")

    def deliverDisconnects(self) -> None:
        """
        Deliver C{connectionLost} to each side whose transport was closed,
        and to its peer.
        """
        for transport, proto, peer in (
            (self.clientTransport, self.client, self.server),
            (self.serverTransport, self.server, self.client),
        ):
            if (transport.disconnecting or transport.disconnected) and proto.closeReason is None:
                other = self.serverTransport if proto is self.client else self.clientTransport
                data = transport.value()
                transport.clear()
                if data and peer.closeReason is None:
                    peer.dataReceived(data)
                proto.connectionLost(Failure(ConnectionDone()))
                if peer.closeReason is None:
                    remaining = other.value()
                    other.clear()
                    del remaining
                    peer.connectionLost(Failure(ConnectionDone()))


def handshake(server: BridgeProtocol) -> tuple[StringTransport, Channel]:
    """
    Connect a server-side protocol to a L{StringTransport} and run the
    handshake up to the client's key confirmation, which the client still
    holds (in C{framesToSend}) for the caller to send, alone or with values.

    @param server: The protocol.
    @return: Its transport, and the client's channel.
    """
    transport = StringTransport(peerAddress=IPv4Address("TCP", "10.0.0.1", 1))
    server.makeConnection(transport)
    client = Channel(Role.CLIENT, KEY)
    for frame in client.framesToSend():
        server.dataReceived(struct.pack("!I", len(frame)) + frame)
    client.receiveFrame(transport.value()[4:])
    return transport, client


class HandshakeTests(SynchronousTestCase):
    """
    The handshake over the protocol, and its timer.
    """

    def test_established(self) -> None:
        """
        Both sides complete the handshake; the server tells its observer; the
        frame limit grows from the handshake size to the value size.
        """
        pair = Pair()
        self.assertEqual(pair.server.MAX_LENGTH, HANDSHAKE_MAX_FRAME)
        d = pair.client.whenEstablished()
        self.assertNoResult(d)
        pair.pump()
        self.assertIs(self.successResultOf(d), pair.client)
        self.assertTrue(pair.server.established)
        self.assertEqual(pair.observer.opened, [pair.server])
        self.assertGreater(pair.server.MAX_LENGTH, 16 * 1024 * 1024)
        self.assertEqual(pair.server.key, "127.0.0.1:40000")

    def test_establishedLogLine(self) -> None:
        """
        The server logs the new session at debug level; the client, whose
        caller learns of it otherwise, logs nothing when its handshake
        completes.
        """
        pair = Pair()
        pair.pump()
        lines = [e for e in pair.events if "established" in e.get("log_format", "")]
        self.assertEqual([e["peer"] for e in lines], ["127.0.0.1:40000"])
        self.assertEqual(lines[0]["suite"], "noise (AESGCM)")

    def test_handshakeByteByByte(self) -> None:
        """
        The handshake and values survive arbitrary fragmentation.
        """
        pair = Pair()
        pair.client.sendBuffer(EXAMPLE)
        pair.pump(chunk=1)
        self.assertEqual(self.successResultOf(pair.server.recvBuffer()), EXAMPLE)

    def test_handshakeTimeout(self) -> None:
        """
        A peer that never completes the handshake is dropped after the
        timeout, with a log line naming it, and no timer is left.
        """
        pair = Pair()
        d = pair.server.whenEstablished()
        pair.clock.advance(9.9)
        self.assertFalse(pair.serverTransport.disconnecting)
        pair.clock.advance(0.2)
        self.assertTrue(pair.serverTransport.disconnected)
        pair.server.connectionLost(Failure(ConnectionLost()))
        self.failureResultOf(d, HandshakeTimeout)
        self.assertEqual(pair.clock.getDelayedCalls(), [])
        self.assertTrue(any("127.0.0.1:40000" in str(e.get("peer")) for e in pair.events))

    def test_wrongKey(self) -> None:
        """
        A client with the wrong key fails with L{AuthenticationError}; the
        server logs the peer and tells the observer nothing opened.
        """
        pair = Pair(clientConfig=BridgeConfig.fromKey(generateKey()))
        d = pair.client.whenEstablished()
        pair.pump()
        self.failureResultOf(d, AuthenticationError)
        self.assertEqual(pair.observer.opened, [])
        self.assertEqual(len(pair.observer.closed), 1)
        self.assertEqual(pair.clock.getDelayedCalls(), [])

    def test_oversizeBeforeHandshake(self) -> None:
        """
        A length prefix over the pre-handshake limit aborts the connection
        before the frame is buffered, logging a L{BufferDataError}.
        """
        pair = Pair()
        pair.server.dataReceived(struct.pack("!I", 2**31 - 1) + b"x" * 100)
        self.assertTrue(pair.serverTransport.disconnected)
        self.assertEqual(pair.server.bufferedBytes, 0)
        pair.server.connectionLost(Failure(ConnectionLost()))
        self.assertIsInstance(pair.server.closeReason.value, BufferDataError)  # type: ignore[union-attr]

    def test_garbage(self) -> None:
        """
        A peer speaking another protocol is dropped.
        """
        pair = Pair()
        pair.server.dataReceived(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assertTrue(pair.serverTransport.disconnecting or pair.serverTransport.disconnected)


@implementer(IConnectionGate)
class Gate(Recorder):
    """
    A connection gate that admits connections while C{open} is true, and
    records what it was asked.
    """

    def __init__(self, open: bool) -> None:
        super().__init__()
        self.open = open
        self.asked: list[BridgeProtocol] = []

    def admit(self, connection: BridgeProtocol, address: IAddress) -> bool:
        self.asked.append(connection)
        return self.open


class EphemeralKeyTests(SynchronousTestCase):
    """
    A server makes its ephemeral key when its connection is made, not when
    the hello arrives, and never for a connection it refuses.
    """

    def setUp(self) -> None:
        self.made: list[X25519PrivateKey] = []

        def generate() -> X25519PrivateKey:
            key = generateEphemeral()
            self.made.append(key)
            return key

        self.patch(_channel, "generateEphemeral", generate)

    def test_serverKeyBeforeHello(self) -> None:
        """
        Once both sides are connected and before anything was delivered, the
        server has made its key (and the client none through this path); the
        server's reply carries it and the handshake completes.
        """
        pair = Pair()
        self.assertEqual(len(self.made), 1)
        self.assertEqual(pair.serverTransport.value(), b"")
        d = pair.client.whenEstablished()
        pair.pump()
        self.successResultOf(d)
        self.assertEqual(len(self.made), 1)

    def test_keyPerConnection(self) -> None:
        """
        Every accepted connection makes its own key.
        """
        for _ in range(3):
            Pair().pump()
        publics = {key.public_key().public_bytes_raw() for key in self.made}
        self.assertEqual(len(self.made), 3)
        self.assertEqual(len(publics), 3)

    def test_refusedConnection(self) -> None:
        """
        A connection the gate refuses gets no protocol and makes no key; an
        admitted one makes its key only when it is connected.
        """
        address = IPv4Address("TCP", "127.0.0.1", 40000)
        config = BridgeConfig.fromKey(KEY)
        refusing = Gate(open=False)
        factory = BridgeServerFactory(config, refusing, Clock())
        self.assertIsNone(factory.buildProtocol(address))
        self.assertEqual(len(refusing.asked), 1)
        self.assertEqual(self.made, [])
        admitting = BridgeServerFactory(config, Gate(open=True), Clock())
        proto = admitting.buildProtocol(address)
        assert proto is not None
        self.assertEqual(self.made, [])
        proto.makeConnection(StringTransport(peerAddress=address))
        self.assertEqual(len(self.made), 1)


class QuietFactoryTests(SynchronousTestCase):
    """
    A client factory serves one connection made by L{netstructer.client.connect},
    so starting and stopping it is not worth a log line each time.
    """

    def test_noFactoryLines(self) -> None:
        """
        Starting and stopping a L{BridgeClientFactory} logs nothing.
        """
        factory = BridgeClientFactory(BridgeConfig.fromKey(KEY), Clock())
        with capturedLogs() as events:
            factory.doStart()
            factory.doStop()
        self.assertEqual(events, [])


class NoDelayTransport(StringTransport):
    """
    A transport that records C{setTcpNoDelay}, as a TCP transport has it.
    """

    noDelay: bool | None = None

    def setTcpNoDelay(self, enabled: bool) -> None:
        self.noDelay = enabled


class WrappingTransport(StringTransport):
    """
    A transport over another one (as TLS is over TCP), without
    C{setTcpNoDelay} of its own.
    """

    def __init__(self, transport: StringTransport) -> None:
        super().__init__()
        self.transport = transport


class NoDelayTests(SynchronousTestCase):
    """
    Every connection turns Nagle's algorithm off, so that a small record is
    never held back waiting for the peer's delayed acknowledgement.
    """

    def connect(self, transport: StringTransport) -> None:
        protocol = BridgeProtocol(Role.SERVER, BridgeConfig.fromKey(KEY), Clock())
        protocol.makeConnection(transport)

    def test_tcp(self) -> None:
        """
        A TCP transport gets C{setTcpNoDelay(True)}.
        """
        transport = NoDelayTransport()
        self.connect(transport)
        self.assertIs(transport.noDelay, True)

    def test_wrapped(self) -> None:
        """
        A transport over TCP (TLS) has the TCP transport under it tuned.
        """
        tcp = NoDelayTransport()
        self.connect(WrappingTransport(tcp))
        self.assertIs(tcp.noDelay, True)

    def test_other(self) -> None:
        """
        A transport without the option (a UNIX socket, memory) is left alone.
        """
        transport = StringTransport()
        self.connect(transport)
        self.assertFalse(transport.disconnecting)


class ValueTests(SynchronousTestCase):
    """
    Sending and receiving values.
    """

    def test_example(self) -> None:
        """
        The example value crosses both ways, and the per-session counters
        count it.
        """
        pair = Pair()
        pair.pump()
        pair.client.sendBuffer(EXAMPLE)
        pair.server.sendBuffer("reply")
        pair.pump()
        self.assertEqual(self.successResultOf(pair.server.recvBuffer()), EXAMPLE)
        self.assertEqual(self.successResultOf(pair.client.recvBuffer()), "reply")
        self.assertEqual((pair.server.valuesIn, pair.server.valuesOut), (1, 1))
        self.assertGreater(pair.server.bytesIn, 0)

    def test_sendBeforeHandshake(self) -> None:
        """
        Values sent before the handshake wait and go out in order after it.
        """
        pair = Pair()
        for i in range(5):
            pair.client.sendBuffer(i)
        pair.pump()
        received = [self.successResultOf(pair.server.recvBuffer()) for _ in range(5)]
        self.assertEqual(received, list(range(5)))

    def test_pendingBound(self) -> None:
        """
        The number of values waiting for the handshake is bounded.
        """
        pair = Pair(clientConfig=BridgeConfig.fromKey(KEY, maxPendingValues=2))
        pair.client.sendBuffer(1)
        pair.client.sendBuffer(2)
        self.assertRaises(BufferDataError, pair.client.sendBuffer, 3)

    def test_encodeErrorKeepsConnection(self) -> None:
        """
        An unencodable value raises at once, writes nothing, and the
        connection stays usable.
        """
        pair = Pair()
        pair.pump()
        before = pair.clientTransport.value()
        self.assertRaises(EncodeError, pair.client.sendBuffer, object())
        self.assertEqual(pair.clientTransport.value(), before)
        pair.client.sendBuffer(1)
        pair.pump()
        self.assertEqual(self.successResultOf(pair.server.recvBuffer()), 1)

    def test_tooBigForPeer(self) -> None:
        """
        A value larger than the peer accepts raises L{BufferDataError} before
        anything is written.
        """
        pair = Pair(serverConfig=BridgeConfig.fromKey(KEY, limits=Limits(maxSize=1000)))
        pair.pump()
        self.assertRaises(BufferDataError, pair.client.sendBuffer, b"x" * 2000)
        self.assertEqual(pair.clientTransport.value(), b"")

    def test_recvTimeout(self) -> None:
        """
        recvBuffer with a timeout fails with L{OperationTimedOut} and consumes
        nothing: the value arriving later goes to the next call.
        """
        pair = Pair()
        pair.pump()
        d = pair.server.recvBuffer(timeout=5)
        pair.clock.advance(5)
        self.failureResultOf(d, OperationTimedOut)
        pair.client.sendBuffer("later")
        pair.pump()
        self.assertEqual(self.successResultOf(pair.server.recvBuffer()), "later")

    def test_recvCancel(self) -> None:
        """
        Cancelling recvBuffer consumes nothing.
        """
        pair = Pair()
        pair.pump()
        d = pair.server.recvBuffer(timeout=5)
        d.cancel()
        self.failureResultOf(d)
        pair.client.sendBuffer("kept")
        pair.pump()
        self.assertEqual(self.successResultOf(pair.server.recvBuffer()), "kept")
        self.assertEqual(pair.clock.getDelayedCalls()[0].getTime(), 60.0)

    def test_recvCancelWithoutTimeout(self) -> None:
        """
        Cancelling recvBuffer called without a timeout consumes nothing
        either.
        """
        pair = Pair()
        pair.pump()
        d = pair.server.recvBuffer()
        d.cancel()
        self.failureResultOf(d)
        pair.client.sendBuffer("kept")
        pair.pump()
        self.assertEqual(self.successResultOf(pair.server.recvBuffer()), "kept")

    def test_recvWaits(self) -> None:
        """
        recvBuffer called before the value arrives fires when it does.
        """
        pair = Pair()
        pair.pump()
        d = pair.server.recvBuffer()
        self.assertNoResult(d)
        pair.client.sendBuffer(7)
        pair.pump()
        self.assertEqual(self.successResultOf(d), 7)

    @settings(max_examples=30, deadline=None)
    @given(st.lists(st.binary(max_size=300), max_size=8), st.integers(1, 64))
    def test_fragmentation(self, values: list[bytes], chunk: int) -> None:
        """
        Any sequence of values survives any chunking of the stream.
        """
        pair = Pair()
        for value in values:
            pair.client.sendBuffer(value)
        pair.pump(chunk=chunk)
        received = [self.successResultOf(pair.server.recvBuffer()) for _ in values]
        self.assertEqual(received, values)

    def test_coalesced(self) -> None:
        """
        Many values sent in one reactor turn leave at its end, in one record,
        and are all delivered, in order.
        """
        pair = Pair()
        pair.pump()
        for i in range(100):
            pair.client.sendBuffer(i)
        self.assertEqual(pair.clientTransport.value(), b"")
        pair.clock.advance(0)
        data = pair.clientTransport.value()
        (length,) = struct.unpack_from("!I", data)
        self.assertEqual(len(data), 4 + length)
        self.assertEqual(pair.client.valuesOut, 100)
        pair.clientTransport.clear()
        pair.server.dataReceived(data)
        received = [self.successResultOf(pair.server.recvBuffer()) for _ in range(100)]
        self.assertEqual(received, list(range(100)))

    def test_bufferReceivedOverride(self) -> None:
        """
        A subclass overriding bufferReceived gets each value.
        """
        got: list[object] = []

        class Collecting(BridgeProtocol):
            def bufferReceived(self, value: object) -> None:
                got.append(value)

        pair = Pair()
        server = Collecting(Role.SERVER, BridgeConfig.fromKey(KEY), pair.clock)
        transport = StringTransport(peerAddress=IPv4Address("TCP", "10.0.0.1", 1))
        server.makeConnection(transport)
        client = Channel(Role.CLIENT, KEY)
        for frame in client.framesToSend():
            server.dataReceived(struct.pack("!I", len(frame)) + frame)
        reply = transport.value()[4:]
        client.receiveFrame(reply)
        for frame in [*client.framesToSend(), client.sendValue("a"), client.sendValue("b")]:
            server.dataReceived(struct.pack("!I", len(frame)) + frame)
        self.assertEqual(got, ["a", "b"])


class BackpressureTests(SynchronousTestCase):
    """
    Flow control both ways.
    """

    def test_resumeFromHandler(self) -> None:
        """
        A handler that pauses and resumes receiving while a value is being
        delivered (so the frame loop is re-entered) gets every value once, in
        order.
        """
        got: list[object] = []

        class Pausing(BridgeProtocol):
            def bufferReceived(self, value: object) -> None:
                got.append(value)
                self.pauseReceiving()
                self.resumeReceiving()

        server = Pausing(Role.SERVER, BridgeConfig.fromKey(KEY), Clock())
        _, client = handshake(server)
        frames = [*client.framesToSend(), *(client.sendValue(i) for i in range(20))]
        server.dataReceived(b"".join(struct.pack("!I", len(f)) + f for f in frames))
        self.assertEqual(got, list(range(20)))

    def test_pauseWithinBatch(self) -> None:
        """
        A handler that pauses receiving in the middle of a batch of values
        (one VALUES record) gets no more of them until it resumes; then the
        rest come, in order, before anything received later.  C{valuesIn}
        counts only the values delivered.
        """
        got: list[object] = []

        class Pausing(BridgeProtocol):
            def bufferReceived(self, value: object) -> None:
                got.append(value)
                if value == 3:
                    self.pauseReceiving()

        server = Pausing(Role.SERVER, BridgeConfig.fromKey(KEY), Clock())
        transport, client = handshake(server)
        batch = client.sendEncodedValues([client.encodeValue(i) for i in range(8)])
        frames = [*client.framesToSend(), batch, client.sendValue("later")]
        server.dataReceived(b"".join(struct.pack("!I", len(f)) + f for f in frames))
        self.assertEqual(got, [0, 1, 2, 3])
        self.assertEqual(server.valuesIn, 4)
        self.assertEqual(transport.producerState, "paused")
        server.resumeReceiving()
        self.assertEqual(got, [*range(8), "later"])
        self.assertEqual(server.valuesIn, 9)

    def test_failureWithinBatch(self) -> None:
        """
        Once the connection fails while a batch is delivered, its remaining
        values are not delivered.
        """
        got: list[object] = []

        class Failing(BridgeProtocol):
            def bufferReceived(self, value: object) -> None:
                got.append(value)
                if value == 2:
                    self.lengthLimitExceeded(2**31)

        server = Failing(Role.SERVER, BridgeConfig.fromKey(KEY), Clock())
        transport, client = handshake(server)
        batch = client.sendEncodedValues([client.encodeValue(i) for i in range(5)])
        frames = [*client.framesToSend(), batch]
        server.dataReceived(b"".join(struct.pack("!I", len(f)) + f for f in frames))
        self.assertEqual(got, [0, 1, 2])
        self.assertTrue(transport.disconnecting)

    def test_frameViewKept(self) -> None:
        """
        A C{stringReceived} override may keep the frame it was given: a frame
        that arrived alone in one read is a view of immutable bytes, and one
        of several is released when the call returns, so neither stops the
        buffer from being reused.
        """
        kept: list[memoryview] = []

        class Keeping(BridgeProtocol):
            def stringReceived(self, string: bytes) -> None:
                kept.append(string)  # type: ignore[arg-type]
                super().stringReceived(string)

        server = Keeping(Role.SERVER, BridgeConfig.fromKey(KEY), Clock())
        _, client = handshake(server)
        for frame in client.framesToSend():
            server.dataReceived(struct.pack("!I", len(frame)) + frame)
        alone = client.sendValue("alone")
        server.dataReceived(struct.pack("!I", len(alone)) + alone)
        self.assertEqual(bytes(kept[-1]), alone)
        together = [client.sendValue(1), client.sendValue(2)]
        data = b"".join(struct.pack("!I", len(f)) + f for f in together)
        server.dataReceived(data[:-3])
        server.dataReceived(data[-3:])
        self.assertEqual(
            [self.successResultOf(server.recvBuffer()) for _ in range(3)], ["alone", 1, 2]
        )

    def test_receivePauses(self) -> None:
        """
        Reading pauses when the receive queue is over its bound and resumes
        when the application catches up.
        """
        pair = Pair(serverConfig=BridgeConfig.fromKey(KEY, maxQueuedValues=4))
        pair.pump()
        for i in range(10):
            pair.client.sendBuffer(i)
        pair.pump()
        self.assertEqual(pair.serverTransport.producerState, "paused")
        self.assertEqual(pair.server.queuedValues, 4)
        received = [self.successResultOf(pair.server.recvBuffer()) for _ in range(10)]
        self.assertEqual(received, list(range(10)))
        self.assertEqual(pair.serverTransport.producerState, "producing")
        self.assertEqual(pair.server.queuedValues, 0)

    def test_whenWritable(self) -> None:
        """
        whenWritable waits while the transport has paused its producer.
        """
        pair = Pair()
        pair.pump()
        self.assertTrue(pair.client.writable)
        self.successResultOf(pair.client.whenWritable())
        pair.clientTransport.producer.pauseProducing()
        self.assertFalse(pair.client.writable)
        d = pair.client.whenWritable()
        self.assertNoResult(d)
        pair.clientTransport.producer.resumeProducing()
        self.assertTrue(pair.client.writable)
        self.successResultOf(d)


class CloseTests(SynchronousTestCase):
    """
    Clean closes, truncation, and what waiters see.
    """

    def test_cleanClose(self) -> None:
        """
        A close delivers values already sent, then both sides end with
        L{ConnectionDone}, and no timer is left.
        """
        pair = Pair()
        pair.pump()
        pair.client.sendBuffer("last")
        pair.client.close("done")
        pair.pump()
        self.assertEqual(self.successResultOf(pair.server.recvBuffer()), "last")
        self.failureResultOf(pair.server.recvBuffer(), ConnectionDone)
        self.failureResultOf(pair.client.recvBuffer(), ConnectionDone)
        self.assertEqual(pair.server.closeCode, CloseCode.NORMAL)
        self.assertEqual(pair.clock.getDelayedCalls(), [])

    def test_responderEndsAtOnce(self) -> None:
        """
        The side that receives the first close replies and ends the
        transport at once, without waiting for the peer; a reader waiting
        there learns of the close at once, as a L{PeerClosed} carrying the
        code and the reason, which is also a L{ConnectionDone}.
        """
        pair = Pair()
        pair.pump()
        waiting = pair.server.recvBuffer()
        pair.client.close("bye", CloseCode.GOING_AWAY)
        pair.server.dataReceived(pair.clientTransport.value())
        pair.clientTransport.clear()
        self.assertTrue(pair.serverTransport.disconnecting)
        error = self.failureResultOf(waiting, SessionClosed).value
        assert isinstance(error, PeerClosed)
        self.assertIsInstance(error, ConnectionDone)
        self.assertEqual((error.code, error.reason), (CloseCode.GOING_AWAY, "bye"))
        self.assertIn("bye", str(error))
        pair.server.connectionLost(Failure(ConnectionDone()))
        self.failureResultOf(pair.server.recvBuffer(), PeerClosed)
        self.assertIsNone(pair.server._timer)

    def test_responderNotReadByPeer(self) -> None:
        """
        When the reply cannot be written (the peer does not read), the
        connection is still over within the grace period.
        """
        pair = Pair(serverConfig=BridgeConfig.fromKey(KEY, shutdownGrace=2))
        pair.pump()
        pair.client.close()
        pair.server.dataReceived(pair.clientTransport.value())
        self.assertTrue(pair.serverTransport.disconnecting)
        self.assertFalse(pair.serverTransport.disconnected)
        pair.clock.advance(2)
        self.assertTrue(pair.serverTransport.disconnected)

    def test_initiatorBoundedWhileValuesArrive(self) -> None:
        """
        The side that closed first still delivers the peer's values that
        arrive after its close, but drops the connection when the grace
        period runs out, however many keep coming.
        """
        pair = Pair()
        pair.pump()
        pair.server.close()
        for _ in range(4):
            pair.clock.advance(1)
            frame = pair.client.core.channel.sendValue("late")
            pair.server.dataReceived(struct.pack("!I", len(frame)) + frame)
        self.assertFalse(pair.serverTransport.disconnected)
        self.assertEqual(pair.server.queuedValues, 4)
        pair.clock.advance(1)
        self.assertTrue(pair.serverTransport.disconnected)

    def test_closeDuringHandshake(self) -> None:
        """
        A close requested during the handshake waits for it, so that values
        already accepted are sent first.
        """
        pair = Pair()
        pair.client.sendBuffer("queued")
        pair.client.close()
        self.assertRaises(ChannelClosedError, pair.client.sendBuffer, 1)
        pair.pump()
        self.assertEqual(self.successResultOf(pair.server.recvBuffer()), "queued")
        self.failureResultOf(pair.server.recvBuffer(), ConnectionDone)

    def test_truncation(self) -> None:
        """
        A connection lost without a close record fails waiters with
        L{TruncationError}.
        """
        pair = Pair()
        pair.pump()
        d = pair.server.recvBuffer()
        pair.server.connectionLost(Failure(ConnectionLost()))
        self.failureResultOf(d, TruncationError)

    def test_closeTimeout(self) -> None:
        """
        A peer that never answers the close is dropped when the grace period
        (5 s by default) runs out: one line names the peer and the values it
        did not confirm, and the reason is a L{TruncationError}.
        """
        events: list[LogEvent] = []
        pair = Pair()
        pair.client._log = Logger(observer=events.append)
        pair.pump()
        for i in range(3):
            pair.client.sendBuffer(i)
        pair.client.flush()
        pair.client.close()
        self.assertFalse(pair.clientTransport.disconnecting)
        pair.clock.advance(4.9)
        self.assertFalse(pair.clientTransport.disconnecting)
        pair.clock.advance(0.1)
        self.assertTrue(pair.clientTransport.disconnecting)
        [line] = [e for e in events if "grace" in e["log_format"]]
        self.assertEqual(line["unconfirmed"], 3)
        self.assertEqual(line["peer"], pair.client.key)
        pair.client.connectionLost(Failure(ConnectionLost("aborted")))
        self.failureResultOf(pair.client.recvBuffer(), TruncationError)

    def test_closeDuringSilentHandshake(self) -> None:
        """
        A close requested while the server never answers the handshake is
        over within the grace period, not the handshake timeout.
        """
        pair = Pair(clientConfig=BridgeConfig.fromKey(KEY, shutdownGrace=1))
        pair.client.close()
        pair.clock.advance(1)
        self.assertTrue(pair.clientTransport.disconnecting)

    def test_pongConfirms(self) -> None:
        """
        A pong confirms every value sent before its ping: only later ones
        count as unconfirmed.
        """
        events: list[LogEvent] = []
        config = BridgeConfig.fromKey(KEY, keepAliveInterval=10)
        pair = Pair(serverConfig=config, clientConfig=config)
        pair.server._log = Logger(observer=events.append)
        pair.pump()
        pair.server.sendBuffer("one")
        pair.server.flush()
        pair.clock.advance(10)
        pair.pump()
        pair.server.sendBuffer("two")
        pair.server.flush()
        pair.server.close()
        pair.clock.advance(5)
        [line] = [e for e in events if "grace" in e["log_format"]]
        self.assertEqual(line["unconfirmed"], 1)

    def test_closeTimeoutAlias(self) -> None:
        """
        C{closeTimeout} still sets the grace period; both names read it.
        """
        config = BridgeConfig.fromKey(KEY, closeTimeout=3)
        self.assertEqual((config.shutdownGrace, config.closeTimeout), (3, 3))
        config = BridgeConfig.fromKey(KEY, shutdownGrace=2)
        self.assertEqual((config.shutdownGrace, config.closeTimeout), (2, 2))
        self.assertRaises(ValueError, BridgeConfig.fromKey, KEY, shutdownGrace=2, closeTimeout=3)
        self.assertRaises(ValueError, BridgeConfig.fromKey, KEY, shutdownGrace=0)

    def test_idleTimeout(self) -> None:
        """
        With an idle timeout, a session without values is closed with
        L{CloseCode.IDLE_TIMEOUT}.
        """
        pair = Pair(serverConfig=BridgeConfig.fromKey(KEY, idleTimeout=30))
        pair.pump()
        pair.clock.advance(20)
        pair.client.sendBuffer(1)
        pair.pump()
        pair.clock.advance(20)
        pair.pump()
        self.assertIsNone(pair.client.closeReason)
        pair.clock.advance(11)
        pair.pump()
        self.assertEqual(pair.client.closeCode, CloseCode.IDLE_TIMEOUT)
        self.assertEqual(pair.clock.getDelayedCalls(), [])

    def test_keepAlive(self) -> None:
        """
        A silent peer is pinged; one that answers stays, one that does not is
        dropped.
        """
        pair = Pair()
        pair.pump()
        pair.clock.advance(60)
        pair.pump()
        self.assertIsNone(pair.server.closeReason)
        pair.clock.advance(60)
        # The client no longer answers.
        pair.clientTransport.clear()
        pair.clock.advance(60)
        self.assertTrue(pair.serverTransport.disconnected)


class InterfaceTests(SynchronousTestCase):
    """
    Declared interfaces are provided.
    """

    def test_observer(self) -> None:
        """
        The test observer provides L{ISessionObserver}, as
        L{SessionRegistry} provides L{IConnectionGate}.
        """
        from netstructer.protocol import IConnectionGate
        from netstructer.registry import SessionRegistry

        verifyObject(ISessionObserver, Recorder())
        verifyObject(IConnectionGate, SessionRegistry(Clock()))


class SessionKeyTests(SynchronousTestCase):
    """
    Registry keys of peer addresses.
    """

    def test_keys(self) -> None:
        """
        IPv4 keys are C{ip:port}, IPv6 keys C{[ip]:port}.
        """
        self.assertEqual(sessionKey(IPv4Address("TCP", "192.168.1.4", 5000)), "192.168.1.4:5000")
        self.assertEqual(sessionKey(IPv6Address("TCP", "::1", 5000)), "[::1]:5000")


class ConfigTests(SynchronousTestCase):
    """
    L{BridgeConfig} checks its options when made.
    """

    def test_badOptions(self) -> None:
        """
        A bad suite, cipher, accepted suite, size limit or TTL raises
        L{ValueError} at once, not in C{connectionMade}.
        """
        for options in [
            {"suite": "tls"},
            {"cipher": "DES"},
            {"acceptSuites": ("noise", "ssh")},
            {"limits": Limits(maxSize=2**31)},
            {"suite": "fernet", "fernetTTL": 0.5},
            {"handshakeTimeout": 0},
            {"maxQueuedValues": 0},
        ]:
            self.assertRaises(ValueError, BridgeConfig.fromKey, KEY, **options)


class SocketDescriptor(FileDescriptor):
    """
    A L{FileDescriptor}, as the TCP transports of Twisted's reactors are,
    over an in-memory socket.

    @ivar sent: What the socket took.
    @ivar room: How many bytes the socket takes per write; L{None} for all.
    @ivar lost: Whether writing fails as on a lost connection.
    @ivar aborted: Whether the connection was aborted.
    """

    def __init__(self, reactor: MemoryReactor) -> None:
        super().__init__(reactor)
        self.connected = 1
        self.sent = bytearray()
        self.room: int | None = None
        self.lost = False
        self.aborted = False

    def writeSomeData(self, data: bytes) -> int | BaseException:
        if self.lost:
            return ConnectionLost()
        taken = len(data) if self.room is None else min(self.room, len(data))
        self.sent += data[:taken]
        return taken

    def getPeer(self) -> IPv4Address:
        return IPv4Address("TCP", "127.0.0.1", 40000)

    def getHost(self) -> IPv4Address:
        return IPv4Address("TCP", "127.0.0.1", 5000)

    def abortConnection(self) -> None:
        self.aborted = True

    @property
    def waiting(self) -> bool:
        """
        Whether data waits in the transport's buffer for the reactor to find
        the socket writable.
        """
        return self in self.reactor.getWriters()

    def flush(self) -> None:
        """
        Write the buffer as the reactor does while the socket is writable.
        """
        while self.waiting:
            self.doWrite()


class Echo(BridgeProtocol):
    """
    Sends every value back, and ends the connection after echoing
    C{"last"}.
    """

    def bufferReceived(self, value: object) -> None:
        self.sendBuffer(value)
        if value == "last":
            self.transport.loseConnection()


class ImmediateWriteTests(SynchronousTestCase):
    """
    Over a L{FileDescriptor} transport, the frames written while
    L{BridgeProtocol.dataReceived} runs go to the socket together before it
    returns, when nothing waits in the transport's buffer, instead of
    waiting for the reactor to find the socket writable.
    """

    def setUp(self) -> None:
        """
        Connect an echoing server to a L{SocketDescriptor}, and complete the
        handshake with a client L{Channel}.
        """
        self.descriptor = SocketDescriptor(MemoryReactor())
        self.clock = Clock()
        self.server = Echo(Role.SERVER, BridgeConfig.fromKey(KEY), self.clock)
        self.server.makeConnection(self.descriptor)
        self.client = Channel(Role.CLIENT, KEY)
        self.deliver(*self.client.framesToSend())
        self.assertFalse(self.descriptor.waiting)
        for frame in self.frames():
            self.client.receiveFrame(frame)
        self.deliver(*self.client.framesToSend())
        self.assertTrue(self.server.established)

    def deliver(self, *frames: bytes) -> None:
        """
        Give the server frames, in one read.
        """
        self.server.dataReceived(b"".join(struct.pack("!I", len(f)) + f for f in frames))

    def frames(self) -> list[bytes]:
        """
        Take the frames the socket took.
        """
        data = bytes(self.descriptor.sent)
        self.descriptor.sent.clear()
        frames = []
        while data:
            (length,) = struct.unpack_from("!I", data)
            frames.append(data[4 : 4 + length])
            data = data[4 + length :]
        return frames

    def values(self) -> list[object]:
        """
        Take the values the socket took.
        """
        values = []
        for frame in self.frames():
            event = self.client.receiveFrame(frame)
            if isinstance(event, ValuesReceived):
                values.extend(event.values)
            else:
                assert isinstance(event, ValueReceived)
                values.append(event.value)
        return values

    def test_replyAtOnce(self) -> None:
        """
        The reply to a value is on the socket when C{dataReceived} returns,
        with nothing left for the reactor to write.
        """
        self.deliver(self.client.sendValue(EXAMPLE))
        self.assertFalse(self.descriptor.waiting)
        self.assertEqual(self.values(), [EXAMPLE])

    def test_repliesTogether(self) -> None:
        """
        The replies to values received in one read leave together, in
        order.
        """
        self.deliver(*(self.client.sendValue(i) for i in range(3)))
        self.assertFalse(self.descriptor.waiting)
        self.assertEqual(self.values(), [0, 1, 2])

    def test_closeReplyAtOnce(self) -> None:
        """
        The reply to the peer's close record leaves at once too.
        """
        self.deliver(self.client.close())
        [reply] = self.frames()
        self.assertIsInstance(self.client.receiveFrame(reply), CloseReceived)

    def test_endAfterReply(self) -> None:
        """
        A reply written before the transport was asked to end the
        connection leaves before it ends.
        """
        self.deliver(self.client.sendValue("last"))
        self.assertEqual(self.descriptor.sent, b"")
        self.descriptor.flush()
        self.assertEqual(self.values(), ["last"])
        self.assertFalse(self.descriptor.waiting)

    def test_outsideDataReceived(self) -> None:
        """
        Values sent outside C{dataReceived} leave together at the end of the
        reactor turn, in one record, straight to the socket.
        """
        self.server.sendBuffer("unprompted")
        self.server.sendBuffer("too")
        self.assertEqual(self.descriptor.sent, b"")
        self.clock.advance(0)
        self.assertFalse(self.descriptor.waiting)
        self.assertEqual(self.values(), ["unprompted", "too"])

    def test_bufferedFirst(self) -> None:
        """
        A reply does not overtake data waiting in the transport's buffer.
        """
        self.descriptor.room = 3
        self.server.sendBuffer("first")
        self.clock.advance(0)
        self.assertTrue(self.descriptor.waiting)
        self.descriptor.room = None
        taken = bytes(self.descriptor.sent)
        self.deliver(self.client.sendValue("second"))
        self.assertEqual(self.descriptor.sent, taken)
        self.descriptor.flush()
        self.assertEqual(self.values(), ["first", "second"])

    def test_afterDrain(self) -> None:
        """
        Once the buffer has drained, replies go to the socket at once again.
        """
        self.server.sendBuffer("first")
        self.descriptor.flush()
        self.deliver(self.client.sendValue("second"))
        self.assertFalse(self.descriptor.waiting)
        self.assertEqual(self.values(), ["first", "second"])

    def test_partial(self) -> None:
        """
        What the socket does not take waits in the transport's buffer.
        """
        self.descriptor.room = 3
        self.deliver(self.client.sendValue(EXAMPLE))
        self.assertEqual(len(self.descriptor.sent), 3)
        self.assertTrue(self.descriptor.waiting)
        self.descriptor.room = None
        self.descriptor.flush()
        self.assertEqual(self.values(), [EXAMPLE])

    def test_lost(self) -> None:
        """
        When the socket fails, the reply waits in the transport's buffer, and
        the transport reports the failure when it next writes.
        """
        self.descriptor.lost = True
        self.deliver(self.client.sendValue("x"))
        self.assertTrue(self.descriptor.waiting)
        self.assertIsInstance(self.descriptor.doWrite(), ConnectionLost)

    def test_large(self) -> None:
        """
        A large value goes straight to the socket from the channel's reused
        buffer, after the frames written before it, with nothing left for
        the reactor to write.
        """
        value = b"x" * _IMMEDIATE_WRITE_LIMIT
        self.deliver(self.client.sendValue("small"), self.client.sendValue(value))
        self.assertFalse(self.descriptor.waiting)
        self.assertEqual(self.values(), ["small", value])

    def test_largePartly(self) -> None:
        """
        What the socket does not take of a large value (here, none of it) is
        copied into the transport's buffer (the channel reuses its own for the next one),
        whose size pauses writers; values keep their order.
        """
        values = [bytes([i]) * (_IMMEDIATE_WRITE_LIMIT // 3) for i in range(4)]
        self.descriptor.room = 0
        self.deliver(*(self.client.sendValue(v) for v in values))
        self.assertEqual(self.descriptor.sent, b"")
        self.assertTrue(self.descriptor.waiting)
        self.assertFalse(self.server.writable)
        self.descriptor.room = None
        self.descriptor.flush()
        self.assertTrue(self.server.writable)
        self.assertEqual(self.values(), values)

    def test_heldBackThenReply(self) -> None:
        """
        Frames written while a frame alone is handled (a handler's own
        C{flush}) and the batch of replies left after it reach the socket
        together, in order, before C{dataReceived} returns.
        """

        class Flushing(Echo):
            def bufferReceived(self, value: object) -> None:
                self.sendBuffer(("first", value))
                self.flush()
                self.sendBuffer(("then", value))

        self.server = Flushing(Role.SERVER, BridgeConfig.fromKey(KEY), self.clock)
        self.descriptor = SocketDescriptor(MemoryReactor())
        self.server.makeConnection(self.descriptor)
        self.client = Channel(Role.CLIENT, KEY)
        self.deliver(*self.client.framesToSend())
        for frame in self.frames():
            self.client.receiveFrame(frame)
        self.deliver(*self.client.framesToSend())
        self.deliver(self.client.sendValue("v"))
        self.assertFalse(self.descriptor.waiting)
        self.assertEqual(self.values(), [("first", "v"), ("then", "v")])

    def test_uncorkedOnError(self) -> None:
        """
        Should sealing the replies raise, the writer holds nothing back
        afterwards: later writes still reach the socket (here with the
        reply, still batched).
        """

        def failing(sender: ValueSender) -> None:
            raise RuntimeError("sealing failed")

        patcher = MonkeyPatcher((ValueSender, "sealBatch", failing))
        patcher.patch()
        try:
            self.assertRaises(RuntimeError, self.deliver, self.client.sendValue("v"))
        finally:
            patcher.restore()
        self.assertFalse(self.server._writer.corked)  # type: ignore[union-attr]
        self.server.sendBuffer("after")
        self.clock.advance(0)
        self.assertFalse(self.descriptor.waiting)
        self.assertEqual(self.values(), ["v", "after"])

    def test_largeAlone(self) -> None:
        """
        A large reply to a frame alone goes straight to the socket from the
        channel's reused buffer too.
        """
        value = b"y" * _IMMEDIATE_WRITE_LIMIT
        self.deliver(self.client.sendValue(value))
        self.assertFalse(self.descriptor.waiting)
        self.assertEqual(self.values(), [value])

    def test_limit(self) -> None:
        """
        Once the frames written while C{dataReceived} runs exceed
        L{_IMMEDIATE_WRITE_LIMIT} bytes in all, they and the frames written
        after them go through the transport's buffer, so that its size
        pauses writers.
        """
        values = [(i, "x" * 2000) for i in range(100)]
        self.deliver(*(self.client.sendValue(v) for v in values))
        self.assertEqual(self.descriptor.sent, b"")
        self.assertFalse(self.server.writable)
        self.descriptor.flush()
        self.assertTrue(self.server.writable)
        self.assertEqual(self.values(), values)

    def test_tls(self) -> None:
        """
        Once the transport runs TLS, frames go through it.
        """
        self.descriptor.TLS = True  # type: ignore[attr-defined]
        self.deliver(self.client.sendValue("x"))
        self.assertEqual(self.descriptor.sent, b"")
        self.assertTrue(self.descriptor.waiting)

    def test_closing(self) -> None:
        """
        Nothing goes to the socket at once after the transport was asked to
        close.
        """
        self.descriptor.loseConnection()
        self.deliver(self.client.sendValue("x"))
        self.assertEqual(self.descriptor.sent, b"")

    def test_aborted(self) -> None:
        """
        Nothing goes to the socket after the connection was aborted (an
        aborting transport discards its buffer).
        """
        self.server.abort()
        self.assertTrue(self.descriptor.aborted)
        self.deliver(self.client.sendValue("x"))
        self.assertEqual(self.descriptor.sent, b"")
