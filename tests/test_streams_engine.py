# -*- test-case-name: tests.test_streams_engine -*-
"""
Tests for L{netstructer.streams.engine}: two engines connected in memory
(L{tests._streamshost.Pair}), with no reactor, through every rule and every
refusal of docs/protocol.rst, "Streams".
"""

from __future__ import annotations

import dataclasses
import hashlib

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from netstructer.channel import Role
from netstructer.errors import (
    BufferDataError,
    ChannelClosedError,
    DecodeError,
    LocalProtocolError,
    PeerVersionError,
    ResumeMismatch,
    StreamAborted,
    StreamError,
    StreamIntegrityError,
    StreamProtocolError,
    StreamRefused,
    StreamTimeout,
    StreamTooLarge,
    TooManyStreams,
)
from netstructer.keys import generateKey
from netstructer.session.capability import ICapability, ISessionHost
from netstructer.session.config import BridgeConfig
from netstructer.streams import (
    AbortCode,
    IIncomingStreamObserver,
    IncomingStream,
    IOutgoingStreamObserver,
    IStreamsObserver,
    IStreamSource,
    StreamsEngine,
)
from netstructer.streams.engine import (
    DEFAULT_IDLE_TIMEOUT,
    DEFAULT_MAX_STREAMS,
    DEFAULT_WINDOW,
    MAX_BLOCKED_ANSWERS,
    MAX_META_SIZE,
    configuredEngine,
)
from netstructer.streams.hashing import StreamHash, inlineSha256
from netstructer.streams.sources import BytesSource
from netstructer.streams.wire import (
    STREAM_ABORT,
    STREAM_ACCEPT,
    STREAM_DATA,
    STREAM_DONE,
    STREAM_END,
    STREAM_OPEN,
    STREAM_WINDOW,
    abortBody,
    acceptBody,
    dataHeader,
    doneBody,
    endBody,
    openBody,
    windowBody,
)
from netstructer.values import decode, encode

from ._streamshost import Collector, EngineObserver, FakeHost, Pair, Pieces, Sent, sha256

DATA = bytes(range(256)) * 1000  # 256 000 bytes


def sha256Of(prefix: object) -> StreamHash:
    """
    A hash factory other than the engine's default.
    """
    return hashlib.sha256()


def types(records: list[tuple[int, bytes]]) -> list[int]:
    """
    @return: The types of C{records}, in order.
    """
    return [recordType for recordType, _ in records]


class InterfaceTests(SynchronousTestCase):
    """
    The engine and the test doubles provide the interfaces they claim.
    """

    def test_interfaces(self) -> None:
        """
        L{StreamsEngine} is an L{ICapability} of capability C{"streams"};
        the fake host and observers provide theirs.
        """
        pair = Pair()
        self.assertTrue(verifyObject(ICapability, pair.client))
        self.assertEqual(pair.client.capability, "streams")
        self.assertTrue(verifyObject(ISessionHost, pair.clientHost))
        self.assertTrue(verifyObject(IStreamsObserver, pair.clientObserver))
        self.assertTrue(verifyObject(IOutgoingStreamObserver, Sent()))
        self.assertTrue(verifyObject(IStreamSource, Pieces()))
        stream = pair.client.openStream(Pieces(b"x"), Sent())
        pair.pump()
        collector = pair.serverObserver.collectors[stream.streamID]
        self.assertTrue(verifyObject(IIncomingStreamObserver, collector))

    def test_configured(self) -> None:
        """
        L{configuredEngine} takes a session's stream settings from its
        configuration, and the engine's defaults for those left unset.
        """
        host = FakeHost(Role.CLIENT, Clock())
        config = dataclasses.replace(
            BridgeConfig.fromKey(generateKey()),
            maxStreams=3,
            streamWindow=1000,
            streamIdleTimeout=5.0,
            maxStreamSize=10,
        )
        engine = configuredEngine(host, EngineObserver(), config, encode, decode)
        self.assertEqual(
            (engine._maxStreams, engine.window, engine.idleTimeout, engine.maxStreamSize),
            (3, 1000, 5.0, 10),
        )
        self.assertIs(engine.newHash, inlineSha256)
        plain = configuredEngine(
            host, EngineObserver(), BridgeConfig.fromKey(generateKey()), encode, decode, sha256Of
        )
        self.assertEqual(
            (plain._maxStreams, plain.window, plain.idleTimeout),
            (DEFAULT_MAX_STREAMS, DEFAULT_WINDOW, DEFAULT_IDLE_TIMEOUT),
        )
        self.assertIs(plain.newHash, sha256Of)

    def test_settings(self) -> None:
        """
        Settings out of range are refused when the engine is made.
        """
        host = FakeHost(Role.CLIENT, Pair().clock)
        for options in (
            {"maxStreams": 0},
            {"window": 0},
            {"window": 2**31},
            {"chunkSize": 0},
            {"idleTimeout": 0},
            {"maxStreamSize": -1},
        ):
            self.assertRaises(ValueError, StreamsEngine, host, EngineObserver(), **options)


class TransferTests(SynchronousTestCase):
    """
    Streams arrive whole and confirmed.
    """

    def send(
        self, pair: Pair, data: bytes, size: int | None = -1, meta: object = None
    ) -> tuple[Sent, Collector]:
        sent = Sent()
        stream = pair.client.openStream(
            BytesSource(data), sent, meta=meta, size=len(data) if size == -1 else size
        )
        pair.pump()
        return sent, pair.serverObserver.collectors[stream.streamID]

    def test_roundTrip(self) -> None:
        """
        A stream's bytes arrive in order; the receiver checks the END's size
        and SHA-256, confirms, and the sender is told the same; both engines
        forget the stream.
        """
        pair = Pair()
        sent, collector = self.send(pair, DATA, meta={"name": "data.bin"})
        self.assertEqual(collector.data, DATA)
        self.assertTrue(collector.ended)
        self.assertEqual(collector.stream.meta, {"name": "data.bin"})
        self.assertEqual(collector.stream.size, len(DATA))
        self.assertEqual(collector.stream.sha256, sha256(DATA))
        self.assertEqual(sent.confirmed, (len(DATA), sha256(DATA)))
        self.assertEqual(sent.progress[-1], len(DATA))
        self.assertEqual(sent.error, None)
        self.assertEqual((pair.client.outgoing, pair.server.incoming), ((), ()))
        self.assertEqual(pair.clientObserver.failed + pair.serverObserver.failed, [])
        records = pair.delivered[Role.SERVER].records
        self.assertEqual(types(records)[0], STREAM_OPEN)
        self.assertEqual(types(records)[-1], STREAM_END)
        self.assertEqual(types(pair.delivered[Role.CLIENT].records)[-1], STREAM_DONE)

    def test_unknownSize(self) -> None:
        """
        A stream of unknown size ends when its source does.
        """
        pair = Pair()
        sent, collector = self.send(pair, DATA, size=None)
        self.assertEqual(collector.data, DATA)
        self.assertIsNone(collector.stream.size)
        self.assertEqual(sent.confirmed, (len(DATA), sha256(DATA)))

    def test_empty(self) -> None:
        """
        An empty stream is an OPEN, an END and a DONE.
        """
        for size in (0, None):
            pair = Pair()
            sent, collector = self.send(pair, b"", size=size)
            self.assertEqual(sent.confirmed, (0, sha256(b"")))
            self.assertTrue(collector.ended)
            self.assertEqual(types(pair.delivered[Role.SERVER].records), [STREAM_OPEN, STREAM_END])

    def test_chunkSize(self) -> None:
        """
        DATA records carry at most the chunk size, and at most what the
        peer accepts in a record (its M) less the DATA header.
        """
        pair = Pair(clientOptions={"chunkSize": 1000})
        self.send(pair, DATA)
        payloads = [len(b) - 12 for t, b in pair.delivered[Role.SERVER].records if t == STREAM_DATA]
        self.assertEqual(max(payloads), 1000)
        pair = Pair(maxRecordBody=700)
        self.assertEqual(pair.client.chunkSize, 688)
        _sent, collector = self.send(pair, DATA)
        self.assertEqual(collector.data, DATA)
        bodies = [len(b) for _, b in pair.delivered[Role.SERVER].records]
        self.assertLessEqual(max(bodies), 700)

    def test_valuesInterleaved(self) -> None:
        """
        Values sent while a stream goes arrive in order, between its
        records, and the stream arrives whole.
        """
        pair = Pair(clientOptions={"chunkSize": 10000})
        stream = pair.client.openStream(BytesSource(DATA), Sent(), size=len(DATA))
        for index in range(20):
            pair.clientHost.sendValue(index)
            for _ in range(3):
                pair.deliverOne(pair.clientHost, pair.serverHost, pair.server)
                pair.deliverOne(pair.serverHost, pair.clientHost, pair.client)
        pair.pump()
        self.assertEqual(pair.delivered[Role.SERVER].values, list(range(20)))
        self.assertEqual(pair.serverObserver.collectors[stream.streamID].data, DATA)

    def test_sourceNotReady(self) -> None:
        """
        A source that has nothing yet answers L{None}: the stream waits,
        without polling, until told with C{sourceReady}.
        """
        pair = Pair()
        source = Pieces(b"abc", None)
        sent = Sent()
        stream = pair.client.openStream(source, sent)
        pair.pump()
        reads = source.reads
        pair.pump()
        pair.client.sessionWritable()
        self.assertEqual(source.reads, reads)
        source.add(b"def")
        stream.sourceReady()
        pair.pump()
        self.assertEqual(sent.confirmed, (6, sha256(b"abcdef")))
        self.assertEqual(pair.serverObserver.collectors[stream.streamID].data, b"abcdef")


class FlowControlTests(SynchronousTestCase):
    """
    A sender sends only the credit its receiver granted, and the session's
    writability; a receiver grants credit as its owner consumes.
    """

    def test_window(self) -> None:
        """
        A receiver that does not consume lets the sender send its window and
        no more; as it consumes, the sender goes on.
        """
        pair = Pair(
            serverObserver=EngineObserver(consume=False),
            serverOptions={"window": 50000},
            clientOptions={"chunkSize": 8192},
        )
        sent = Sent()
        stream = pair.client.openStream(BytesSource(DATA), sent, size=len(DATA))
        pair.pump()
        collector = pair.serverObserver.collectors[stream.streamID]
        self.assertEqual(len(collector.data), 50000)
        self.assertEqual(stream.sent, 50000)
        pair.pump()
        self.assertEqual(len(collector.data), 50000)
        while not collector.ended:
            collector.consumeAll()
            pair.pump()
            self.assertLessEqual(collector.unconsumed, 50000)
        self.assertEqual(collector.data, DATA)
        self.assertEqual(sent.confirmed, (len(DATA), sha256(DATA)))

    def test_windowUpdatesBounded(self) -> None:
        """
        Credit returns in WINDOW records of at least half the window, so a
        receiver consuming byte by byte sends few of them; none is sent for
        credit the sender cannot use.
        """
        pair = Pair(serverObserver=EngineObserver(consume=False), serverOptions={"window": 10000})
        stream = pair.client.openStream(BytesSource(DATA), Sent(), size=len(DATA))
        pair.pump()
        collector = pair.serverObserver.collectors[stream.streamID]
        while not collector.ended:
            for _ in range(collector.unconsumed):
                collector.stream.consumed(1)
            collector.unconsumed = 0
            pair.pump()
        windows = [b for t, b in pair.delivered[Role.CLIENT].records if t == STREAM_WINDOW]
        self.assertLessEqual(len(windows), len(DATA) // 5000)
        increments = [int.from_bytes(b[4:], "big") for b in windows]
        self.assertGreaterEqual(min(increments[:-1]), 5000)
        self.assertEqual(sum(increments) + 10000, len(DATA))

    def test_consumedTooMuch(self) -> None:
        """
        Consuming more than was delivered is a mistake of the owner.
        """
        pair = Pair(serverObserver=EngineObserver(consume=False))
        stream = pair.client.openStream(BytesSource(b"abc"), Sent(), size=3)
        pair.pump()
        incoming = pair.serverObserver.collectors[stream.streamID].stream
        self.assertRaises(ValueError, incoming.consumed, 4)
        self.assertRaises(ValueError, incoming.consumed, -1)
        incoming.consumed(3)

    def test_writable(self) -> None:
        """
        While the session is not writable no DATA is sent; once it is, the
        stream goes on.  The send queue never holds much more than its
        high-water mark.
        """
        pair = Pair(highWater=100_000, lowWater=10_000, clientOptions={"chunkSize": 30000})
        pair.clientHost.blocked = True
        sent = Sent()
        pair.client.openStream(BytesSource(DATA), sent, size=len(DATA))
        self.assertEqual(len(pair.clientHost.outbox), 0)
        pair.clientHost.unblock()
        pair.pump()
        self.assertEqual(sent.confirmed, (len(DATA), sha256(DATA)))
        self.assertLessEqual(pair.clientHost.maxQueued, 100_000 + 30000)

    def test_roundRobin(self) -> None:
        """
        Streams with credit take turns of one DATA record each.
        """
        pair = Pair(clientOptions={"chunkSize": 1000})
        first = pair.client.openStream(BytesSource(DATA[:5000]), Sent(), size=5000)
        second = pair.client.openStream(BytesSource(DATA[:5000]), Sent(), size=5000)
        pair.clientHost.blocked = True
        pair.pump()
        pair.clientHost.unblock()
        pair.pump()
        order = [
            int.from_bytes(body[:4], "big")
            for recordType, body in pair.delivered[Role.SERVER].records
            if recordType == STREAM_DATA
        ]
        self.assertEqual(order, [first.streamID, second.streamID] * 5)

    def test_slowConsumerStallsItsStreamOnly(self) -> None:
        """
        A stream whose receiver does not consume stalls, and the others go
        on to their end.
        """
        stalled: list[int] = []

        def offered(stream: IncomingStream) -> None:
            consume = stream.meta != "slow"
            collector = Collector(stream, consume=consume)
            pair.serverObserver.collectors[stream.streamID] = collector
            stream.accept(collector, window=20000)
            if not consume:
                stalled.append(stream.streamID)

        pair = Pair(serverObserver=EngineObserver(onOffered=offered))
        slow, fast = Sent(), Sent()
        pair.client.openStream(BytesSource(DATA), slow, meta="slow", size=len(DATA))
        pair.client.openStream(BytesSource(DATA), fast, meta="fast", size=len(DATA))
        pair.pump()
        self.assertEqual(fast.confirmed, (len(DATA), sha256(DATA)))
        self.assertIsNone(slow.confirmed)
        self.assertEqual(len(pair.serverObserver.collectors[stalled[0]].data), 20000)

    def test_dataPastCredit(self) -> None:
        """
        DATA past the credit granted fails the session.
        """
        pair = Pair(serverOptions={"window": 10})
        pair.client.openStream(Pieces(None), Sent(), size=100)
        pair.pump()
        error = self.assertRaises(
            StreamProtocolError,
            pair.server.recordReceived,
            STREAM_DATA,
            dataHeader(1, 0) + bytes(11),
        )
        self.assertIn("only 10 bytes of credit", str(error))

    def test_windowOverflow(self) -> None:
        """
        A WINDOW that would give a sender credit over 2**31 - 1 fails the
        session; so does a WINDOW before the ACCEPT.
        """
        pair = Pair(serverObserver=EngineObserver(accept=False))
        pair.client.openStream(Pieces(None), Sent())
        pair.pump()
        self.assertRaises(
            StreamProtocolError, pair.client.recordReceived, STREAM_WINDOW, windowBody(1, 5)
        )
        pair = Pair(serverOptions={"window": 2**31 - 1})
        pair.client.openStream(Pieces(None), Sent())
        pair.pump()
        error = self.assertRaises(
            StreamProtocolError, pair.client.recordReceived, STREAM_WINDOW, windowBody(1, 1)
        )
        self.assertIn("credit over", str(error))


class LimitTests(SynchronousTestCase):
    """
    Stream counts and sizes are bounded, and refusals reach both sides.
    """

    def test_outgoingWaitsForASlot(self) -> None:
        """
        Past C{maxStreams}, a stream's OPEN waits until one of this side's
        streams ends; IDs increase in the order streams were opened.
        """
        pair = Pair(serverObserver=EngineObserver(complete=False), clientOptions={"maxStreams": 2})
        streams = [pair.client.openStream(BytesSource(b"x"), Sent(), size=1) for _ in range(3)]
        self.assertEqual([s.streamID for s in streams], [1, 3, 5])
        pair.pump()
        self.assertEqual(sorted(pair.serverObserver.collectors), [1, 3])
        pair.serverObserver.collectors[1].stream.complete()
        pair.pump()
        self.assertEqual(sorted(pair.serverObserver.collectors), [1, 3, 5])
        opens = [b[:4] for t, b in pair.delivered[Role.SERVER].records if t == STREAM_OPEN]
        self.assertEqual([int.from_bytes(b, "big") for b in opens], [1, 3, 5])

    def test_tooMany(self) -> None:
        """
        A receiver with C{maxStreams} streams open refuses the next with
        TOO_MANY: the sender fails it with L{TooManyStreams}, both engines'
        observers hear of it, and the sender's answer frees the receiver.
        """
        pair = Pair(
            serverObserver=EngineObserver(complete=False),
            serverOptions={"maxStreams": 2},
            clientOptions={"maxStreams": 3},
        )
        sents = [Sent() for _ in range(3)]
        for sent in sents:
            pair.client.openStream(BytesSource(b"x"), sent, size=1)
        pair.pump()
        self.assertIsInstance(sents[2].error, TooManyStreams)
        self.assertIsInstance(sents[2].error, StreamRefused)
        assert sents[2].error is not None
        self.assertIn("2 streams are open already", str(sents[2].error))
        self.assertTrue(sents[2].error.byPeer)  # type: ignore[attr-defined]
        [(_, error)] = pair.serverObserver.failed
        self.assertIsInstance(error, TooManyStreams)
        self.assertEqual(len(pair.server.incoming), 2)
        self.assertEqual(types(pair.delivered[Role.SERVER].records)[-1], STREAM_ABORT)

    def test_peerIgnoresLimit(self) -> None:
        """
        A peer that keeps opening streams past the limit without answering
        the refusals fails the session.
        """
        pair = Pair(serverOptions={"maxStreams": 1})
        with self.assertRaises(StreamProtocolError) as caught:
            for streamID in range(1, 200, 2):
                pair.server.recordReceived(STREAM_OPEN, openBody(streamID, b"\xc0"))
        self.assertIn("ignores refusals", str(caught.exception))

    def test_announcedTooLarge(self) -> None:
        """
        A stream announcing more than the receiver's C{maxStreamSize} is
        refused at once, without its application seeing it.
        """
        pair = Pair(serverOptions={"maxStreamSize": 1000})
        sent = Sent()
        pair.client.openStream(BytesSource(DATA), sent, size=len(DATA))
        pair.pump()
        self.assertIsInstance(sent.error, StreamTooLarge)
        self.assertIn("over this side's limit of 1000", str(sent.error))
        self.assertEqual(pair.serverObserver.offered, [])
        self.assertEqual(pair.client.outgoing + pair.server.incoming, ())

    def test_growsTooLarge(self) -> None:
        """
        A stream of unknown size that grows past C{maxStreamSize} is aborted
        there: its consumer is told, and its sender stops.
        """
        pair = Pair(
            serverOptions={"maxStreamSize": 1000, "window": 2000}, clientOptions={"chunkSize": 300}
        )
        sent = Sent()
        stream = pair.client.openStream(BytesSource(DATA), sent)
        pair.pump()
        collector = pair.serverObserver.collectors[stream.streamID]
        self.assertEqual(len(collector.data), 900)
        self.assertIsInstance(collector.error, StreamTooLarge)
        self.assertIsInstance(sent.error, StreamTooLarge)
        self.assertLessEqual(stream.sent, 2000)
        self.assertEqual(pair.client.outgoing + pair.server.incoming, ())

    def test_moreThanAnnounced(self) -> None:
        """
        A sender whose source holds more than it announced does not send
        it: the stream fails on its side, and the receiver is told.  One
        whose source ends early fails too.
        """
        for data, problem in ((b"abcd", "more than the 3 bytes"), (b"ab", "after 2 of the 3")):
            pair = Pair()
            sent = Sent()
            stream = pair.client.openStream(BytesSource(data), sent, size=3)
            pair.pump()
            self.assertIsInstance(sent.error, StreamAborted)
            self.assertIn(problem, str(sent.error))
            collector = pair.serverObserver.collectors[stream.streamID]
            self.assertIsInstance(collector.error, StreamAborted)
            self.assertFalse(collector.ended)

    def test_dataPastAnnounced(self) -> None:
        """
        A receiver given more bytes than announced aborts the stream with
        TOO_LARGE.
        """
        pair = Pair()
        pair.client.openStream(Pieces(None), Sent(), size=3)
        pair.pump()
        pair.server.recordReceived(STREAM_DATA, dataHeader(1, 0) + b"abcd")
        collector = pair.serverObserver.collectors[1]
        self.assertIsInstance(collector.error, StreamTooLarge)
        self.assertIn("more than the 3 bytes it announced", str(collector.error))
        pair.pump()
        self.assertEqual(pair.errors, {})

    def test_metaTooLarge(self) -> None:
        """
        A meta too large for receivers is refused locally, before anything
        is sent; one received is refused with TOO_LARGE.
        """
        pair = Pair()
        self.assertRaises(
            BufferDataError, pair.client.openStream, Pieces(), Sent(), meta=b"x" * MAX_META_SIZE
        )
        pair = Pair(maxRecordBody=1000)
        self.assertRaises(
            BufferDataError, pair.client.openStream, Pieces(), Sent(), meta=b"x" * 1000
        )
        self.assertEqual(pair.clientHost.outbox, type(pair.clientHost.outbox)())
        pair = Pair()
        pair.server.recordReceived(STREAM_OPEN, openBody(1, b"\xc0" * (MAX_META_SIZE + 1)))
        [(_, error)] = pair.serverObserver.failed
        self.assertIsInstance(error, StreamTooLarge)

    def test_badMeta(self) -> None:
        """
        A meta that does not decode fails the session.
        """
        pair = Pair()
        self.assertRaises(
            DecodeError, pair.server.recordReceived, STREAM_OPEN, openBody(1, b"\xc1")
        )


class IntegrityTests(SynchronousTestCase):
    """
    A receiver checks every stream's order, size and SHA-256.
    """

    def setUp(self) -> None:
        self.pair = Pair()
        self.sent = Sent()
        self.stream = self.pair.client.openStream(Pieces(None), self.sent, size=6)
        self.pair.pump()
        self.collector = self.pair.serverObserver.collectors[self.stream.streamID]

    def assertDamaged(self, problem: str) -> None:
        """
        The receiver found the stream damaged, and told the sender.  (The
        records were forged as if from the sender, whose engine would not
        answer the ABORT of a stream whose END it sent: only the receiver's
        records are delivered.)
        """
        self.assertIsInstance(self.collector.error, StreamIntegrityError)
        self.assertIn(problem, str(self.collector.error))
        self.assertFalse(self.collector.ended)
        self.assertEqual(self.pair.server.incoming, ())
        while self.pair.deliverOne(self.pair.serverHost, self.pair.clientHost, self.pair.client):
            pass
        self.assertIsInstance(self.sent.error, StreamIntegrityError)

    def test_outOfOrder(self) -> None:
        """
        DATA at another offset than the next is damage; the sender answers
        the receiver's ABORT.
        """
        self.pair.server.recordReceived(STREAM_DATA, dataHeader(1, 3) + b"def")
        self.assertIsInstance(self.collector.error, StreamIntegrityError)
        self.assertIn("data at offset 3 where 0 was next", str(self.collector.error))
        self.pair.pump()
        self.assertIsInstance(self.sent.error, StreamIntegrityError)
        self.assertEqual(self.pair.errors, {})
        self.assertEqual(self.pair.server.incoming, ())

    def test_truncated(self) -> None:
        """
        An END after fewer bytes than announced is a truncation.
        """
        self.pair.server.recordReceived(STREAM_DATA, dataHeader(1, 0) + b"abc")
        self.pair.server.recordReceived(STREAM_END, endBody(1, 3, sha256(b"abc")))
        self.assertDamaged("ended after 3 of the 6 bytes announced")

    def test_endSize(self) -> None:
        """
        An END whose size is not what arrived is damage.
        """
        self.pair.server.recordReceived(STREAM_DATA, dataHeader(1, 0) + b"abc")
        self.pair.server.recordReceived(STREAM_END, endBody(1, 6, sha256(b"abcdef")))
        self.assertDamaged("its END says 6 bytes but 3 arrived")

    def test_digest(self) -> None:
        """
        An END whose SHA-256 is not that of what arrived is damage.
        """
        self.pair.server.recordReceived(STREAM_DATA, dataHeader(1, 0) + b"abcdef")
        self.pair.server.recordReceived(STREAM_END, endBody(1, 6, sha256(b"abcdeg")))
        self.assertDamaged("SHA-256")

    def test_dataInFlightAfterAbort(self) -> None:
        """
        After aborting, a receiver drops the DATA still in flight, within
        the credit it granted, until the sender's answer; then the stream
        is closed, and a record for it fails the session.
        """
        self.pair.server.recordReceived(STREAM_DATA, dataHeader(1, 3) + b"def")
        self.pair.server.recordReceived(STREAM_DATA, dataHeader(1, 6) + b"ghi")
        self.assertEqual(len(self.pair.server.incoming), 1)
        self.pair.server.recordReceived(STREAM_ABORT, abortBody(1, AbortCode.INTEGRITY))
        self.assertEqual(self.pair.server.incoming, ())
        error = self.assertRaises(
            StreamProtocolError,
            self.pair.server.recordReceived,
            STREAM_DATA,
            dataHeader(1, 9) + b"x",
        )
        self.assertIn("which is closed", str(error))


class ProtocolErrorTests(SynchronousTestCase):
    """
    Records no well-behaved peer sends fail the session with
    L{StreamProtocolError}.
    """

    def assertRefused(self, engine: StreamsEngine, recordType: int, body: bytes, text: str) -> None:
        error = self.assertRaises(StreamProtocolError, engine.recordReceived, recordType, body)
        self.assertIn(text, str(error))

    def test_unknownStream(self) -> None:
        """
        DATA, END or ABORT for a stream the peer never opened.
        """
        pair = Pair()
        for recordType, body in (
            (STREAM_DATA, dataHeader(1, 0) + b"x"),
            (STREAM_END, endBody(1, 0, sha256(b""))),
            (STREAM_ABORT, abortBody(1, AbortCode.CANCELLED)),
        ):
            self.assertRefused(pair.server, recordType, body, "which it never opened")

    def test_wrongDirection(self) -> None:
        """
        A sender's record for a stream this side sends, or a receiver's for
        a stream the peer sends.
        """
        pair = Pair()
        self.assertRefused(pair.server, STREAM_DATA, dataHeader(2, 0) + b"x", "this side sends")
        self.assertRefused(pair.server, STREAM_WINDOW, windowBody(1, 1), "which the peer sends")
        self.assertRefused(pair.server, STREAM_OPEN, openBody(2, b"\xc0"), "an ID of this side")

    def test_idsIncrease(self) -> None:
        """
        Stream IDs increase.
        """
        pair = Pair()
        pair.server.recordReceived(STREAM_OPEN, openBody(5, b"\xc0"))
        self.assertRefused(pair.server, STREAM_OPEN, openBody(3, b"\xc0"), "must increase")
        self.assertRefused(pair.server, STREAM_OPEN, openBody(5, b"\xc0"), "must increase")

    def test_outOfTurn(self) -> None:
        """
        DATA before ACCEPT; ACCEPT twice; DONE before END; ACCEPT for a
        stream never opened (or waiting for a slot); END twice.
        """
        pair = Pair(serverObserver=EngineObserver(accept=False), clientOptions={"maxStreams": 1})
        pair.client.openStream(Pieces(None), Sent(), size=10)
        pair.client.openStream(Pieces(None), Sent(), size=10)
        pair.pump()
        self.assertRefused(pair.server, STREAM_DATA, dataHeader(1, 0) + b"x", "not accepted yet")
        self.assertRefused(pair.client, STREAM_DONE, doneBody(1, 0, bytes(32)), "opening")
        self.assertRefused(pair.client, STREAM_ACCEPT, acceptBody(3, 10), "never opened")
        pair.client.recordReceived(STREAM_ACCEPT, acceptBody(1, 10))
        self.assertRefused(pair.client, STREAM_ACCEPT, acceptBody(1, 10), "sending")
        pair = Pair(serverObserver=EngineObserver(complete=False))
        pair.client.openStream(BytesSource(b""), Sent(), size=0)
        pair.pump()
        self.assertRefused(pair.server, STREAM_END, endBody(1, 0, sha256(b"")), "ended")
        self.assertRefused(pair.server, STREAM_ABORT, abortBody(1, AbortCode.CANCELLED), "ended")

    def test_acceptAtOffsetNotAsked(self) -> None:
        """
        An ACCEPT at an offset for a stream that may not resume, or past
        its size.
        """
        pair = Pair(serverObserver=EngineObserver(accept=False))
        pair.client.openStream(Pieces(None), Sent(), size=10)
        pair.pump()
        self.assertRefused(
            pair.client, STREAM_ACCEPT, acceptBody(1, 10, 5, bytes(32)), "which it may not"
        )
        pair = Pair(serverObserver=EngineObserver(accept=False))
        pair.client.openStream(Pieces(None), Sent(), size=10, resume=True)
        pair.pump()
        self.assertRefused(
            pair.client, STREAM_ACCEPT, acceptBody(1, 10, 11, bytes(32)), "which it may not"
        )

    def test_reserved(self) -> None:
        """
        The reserved type 0x27, and malformed bodies.
        """
        pair = Pair()
        self.assertRefused(pair.server, 0x27, b"\x00\x00\x00\x01", "streams do not use")
        self.assertRefused(pair.server, STREAM_DATA, dataHeader(1, 0), "no payload")

    def test_lateRecordsForCancelled(self) -> None:
        """
        Records for a stream this side ended (cancelled) while they were in
        flight are ignored.
        """
        pair = Pair(serverObserver=EngineObserver(accept=False))
        stream = pair.client.openStream(Pieces(None), Sent(), size=10)
        pair.pump()
        stream.cancel()
        for recordType, body in (
            (STREAM_ACCEPT, acceptBody(1, 10)),
            (STREAM_WINDOW, windowBody(1, 10)),
            (STREAM_DONE, doneBody(1, 0, bytes(32))),
            (STREAM_ABORT, abortBody(1, AbortCode.REFUSED)),
        ):
            pair.client.recordReceived(recordType, body)
        self.assertEqual(pair.client.outgoing, ())


class RefusalTests(SynchronousTestCase):
    """
    Refusals, cancellations and aborts end one stream, reported on both
    sides, and leave the session and its other streams alone.
    """

    def test_refused(self) -> None:
        """
        A stream the receiving application refuses fails on the sender
        with L{StreamRefused} carrying its reason.
        """
        observer = EngineObserver(onOffered=lambda s: s.refuse("no room for logs"))
        pair = Pair(serverObserver=observer)
        sent = Sent()
        pair.client.openStream(BytesSource(DATA), sent, meta="log", size=len(DATA))
        pair.pump()
        self.assertIsInstance(sent.error, StreamRefused)
        self.assertIn("no room for logs", str(sent.error))
        self.assertEqual(types(pair.delivered[Role.SERVER].records), [STREAM_OPEN, STREAM_ABORT])
        self.assertEqual(pair.client.outgoing + pair.server.incoming, ())
        self.assertEqual(len(pair.clientObserver.failed), 1)
        self.assertEqual(len(pair.serverObserver.failed), 1)

    def test_refuseTwice(self) -> None:
        """
        An offer is answered once.
        """
        observer = EngineObserver(accept=False)
        pair = Pair(serverObserver=observer)
        pair.client.openStream(Pieces(None), Sent())
        pair.pump()
        (offer,) = observer.offered
        offer.refuse()
        self.assertRaises(LocalProtocolError, offer.refuse)
        self.assertRaises(LocalProtocolError, offer.accept, Collector(offer))

    def test_cancel(self) -> None:
        """
        A sender that cancels mid-stream: the receiver's consumer is told
        (L{StreamAborted}, code CANCELLED), the DATA still in flight is
        dropped, and the other streams go on.
        """
        pair = Pair(clientOptions={"chunkSize": 1000}, serverOptions={"window": 5000})
        sent, other = Sent(), Sent()
        stream = pair.client.openStream(BytesSource(DATA), sent, size=len(DATA))
        pair.client.openStream(BytesSource(DATA), other, size=len(DATA))
        for _ in range(6):
            pair.deliverOne(pair.clientHost, pair.serverHost, pair.server)
            pair.deliverOne(pair.serverHost, pair.clientHost, pair.client)
        stream.cancel("changed my mind")
        stream.cancel()
        pair.pump()
        collector = pair.serverObserver.collectors[stream.streamID]
        self.assertIsInstance(collector.error, StreamAborted)
        self.assertEqual(collector.error.code, AbortCode.CANCELLED)  # type: ignore[union-attr]
        self.assertIn("changed my mind", str(collector.error))
        self.assertIsInstance(sent.error, StreamAborted)
        self.assertEqual(other.confirmed, (len(DATA), sha256(DATA)))
        self.assertEqual(pair.errors, {})

    def test_cancelBeforeOpen(self) -> None:
        """
        A stream cancelled while waiting for a slot never reaches the wire.
        """
        pair = Pair(clientOptions={"maxStreams": 1}, serverObserver=EngineObserver(accept=False))
        pair.client.openStream(Pieces(None), Sent())
        waiting = pair.client.openStream(Pieces(None), Sent())
        waiting.cancel()
        pair.pump()
        self.assertEqual(types(pair.delivered[Role.SERVER].records), [STREAM_OPEN])

    def test_cancelAfterEnd(self) -> None:
        """
        A stream cancelled after its END stops waiting for the DONE, which
        is then ignored; nothing is sent.
        """
        pair = Pair(serverObserver=EngineObserver(complete=False))
        sent = Sent()
        stream = pair.client.openStream(BytesSource(b"abc"), sent, size=3)
        pair.pump()
        stream.cancel()
        self.assertEqual(len(pair.clientHost.outbox), 0)
        pair.serverObserver.collectors[stream.streamID].stream.complete()
        pair.pump()
        self.assertIsInstance(sent.error, StreamAborted)
        self.assertIsNone(sent.confirmed)
        self.assertEqual(pair.errors, {})

    def test_receiverAborts(self) -> None:
        """
        A receiver whose storage fails aborts the stream: the sender fails
        with the reason, answers, and the receiver forgets the stream once
        the answer arrives.
        """
        pair = Pair(serverObserver=EngineObserver(consume=False), clientOptions={"chunkSize": 1000})
        sent = Sent()
        stream = pair.client.openStream(BytesSource(DATA), sent, size=len(DATA))
        for _ in range(4):
            pair.deliverOne(pair.clientHost, pair.serverHost, pair.server)
            pair.deliverOne(pair.serverHost, pair.clientHost, pair.client)
        collector = pair.serverObserver.collectors[stream.streamID]
        collector.stream.abort("the disk is full")
        collector.stream.abort("again")
        self.assertEqual(len(pair.server.incoming), 1)
        pair.pump()
        self.assertIsInstance(sent.error, StreamAborted)
        self.assertIn("the disk is full", str(sent.error))
        self.assertEqual(pair.server.incoming, ())
        self.assertEqual(pair.errors, {})

    def test_abortAfterEnd(self) -> None:
        """
        A receiver whose keeping of a whole stream fails aborts instead of
        confirming.
        """
        pair = Pair(serverObserver=EngineObserver(complete=False))
        sent = Sent()
        stream = pair.client.openStream(BytesSource(b"abc"), sent, size=3)
        pair.pump()
        pair.serverObserver.collectors[stream.streamID].stream.abort("quota exceeded")
        pair.pump()
        self.assertIsInstance(sent.error, StreamAborted)
        self.assertIn("quota exceeded", str(sent.error))
        self.assertEqual(pair.client.outgoing + pair.server.incoming, ())

    def test_failingSource(self) -> None:
        """
        A source that raises fails its stream only, reporting the
        exception, and the receiver is told.
        """

        class Broken:
            def read(self, maximum: int) -> bytes:
                raise OSError("read error")

        pair = Pair()
        sent = Sent()
        stream = pair.client.openStream(Broken(), sent, size=10)
        pair.pump()
        self.assertIsInstance(sent.error, StreamAborted)
        assert sent.error is not None
        self.assertIsInstance(sent.error.__cause__, OSError)
        self.assertIsInstance(pair.serverObserver.collectors[stream.streamID].error, StreamAborted)

    def test_sourceOverreads(self) -> None:
        """
        A source that returns more than asked for fails its stream.
        """

        class Greedy:
            def read(self, maximum: int) -> bytes:
                return bytes(maximum + 1)

        pair = Pair()
        sent = Sent()
        pair.client.openStream(Greedy(), sent)
        pair.pump()
        self.assertIn("when asked for", str(sent.error))


class TimeoutTests(SynchronousTestCase):
    """
    A stream waits on the peer for its idle timeout at most.
    """

    def test_senderStalls(self) -> None:
        """
        A receiver that granted credit and got no data for the idle timeout
        aborts the stream with TIMEOUT: both sides fail with
        L{StreamTimeout}.
        """
        pair = Pair(serverOptions={"idleTimeout": 10})
        sent = Sent()
        stream = pair.client.openStream(Pieces(b"abc", None), sent, size=10)
        pair.pump()
        pair.advance(9)
        collector = pair.serverObserver.collectors[stream.streamID]
        self.assertIsNone(collector.error)
        pair.advance(2)
        self.assertIsInstance(collector.error, StreamTimeout)
        pair.pump()
        self.assertIsInstance(sent.error, StreamTimeout)
        self.assertEqual(pair.client.outgoing + pair.server.incoming, ())

    def test_dataKeepsAlive(self) -> None:
        """
        Each DATA restarts the receiver's idle time.
        """
        pair = Pair(serverOptions={"idleTimeout": 10})
        source = Pieces(b"a", None)
        sent = Sent()
        stream = pair.client.openStream(source, sent, size=5)
        pair.pump()
        for _ in range(4):
            pair.advance(8)
            source.add(b"b", None)
            stream.sourceReady()
            pair.pump()
        source.add(b"")
        self.assertIsNone(sent.error)

    def test_pausedReceiverDoesNotTimeOut(self) -> None:
        """
        A receiver whose owner does not consume (so the sender has no
        credit) is not waiting on the sender: no timeout.
        """
        pair = Pair(
            serverObserver=EngineObserver(consume=False),
            serverOptions={"idleTimeout": 10, "window": 100},
        )
        stream = pair.client.openStream(BytesSource(DATA), Sent(), size=len(DATA))
        pair.pump()
        pair.advance(100)
        collector = pair.serverObserver.collectors[stream.streamID]
        self.assertIsNone(collector.error)
        collector.consumeAll()
        pair.pump()
        self.assertEqual(len(collector.data), 200)

    def test_offerNotAnswered(self) -> None:
        """
        An offer its application does not answer is refused with TIMEOUT.
        """
        pair = Pair(serverObserver=EngineObserver(accept=False), serverOptions={"idleTimeout": 5})
        sent = Sent()
        pair.client.openStream(Pieces(None), sent, size=1)
        pair.pump()
        pair.advance(6)
        pair.pump()
        self.assertIsInstance(sent.error, StreamTimeout)
        self.assertIn("an answer of its application", str(sent.error))

    def test_senderWaits(self) -> None:
        """
        A sender waits for the answer to its OPEN, and for the DONE after
        its END, for its idle timeout; then it fails (and aborts the
        stream, if the receiver still expects something of it).
        """
        pair = Pair(
            serverObserver=EngineObserver(onOffered=lambda s: None),
            clientOptions={"idleTimeout": 5},
            serverOptions={"idleTimeout": None},
        )
        sent = Sent()
        pair.client.openStream(Pieces(None), sent, size=1)
        pair.pump()
        pair.advance(6)
        self.assertIsInstance(sent.error, StreamTimeout)
        self.assertIn("an answer to its OPEN", str(sent.error))
        self.assertEqual(types(list(pair.clientHost.outbox))[-1:], [STREAM_ABORT])
        pair = Pair(serverObserver=EngineObserver(complete=False), clientOptions={"idleTimeout": 5})
        sent = Sent()
        pair.client.openStream(BytesSource(b"a"), sent, size=1)
        pair.pump()
        pair.advance(6)
        self.assertIn("its confirmation", str(sent.error))
        self.assertEqual(len(pair.clientHost.outbox), 0)

    def test_oneWakeUp(self) -> None:
        """
        The engine asks its host for one wake-up, the earliest its streams
        need, and none once they ended.
        """
        pair = Pair(serverObserver=EngineObserver(accept=False), serverOptions={"idleTimeout": 5})
        pair.client.openStream(Pieces(None), Sent(), size=1)
        pair.pump()
        pair.clock.advance(1)
        pair.client.openStream(Pieces(None), Sent(), size=1)
        pair.pump()
        self.assertEqual(pair.serverHost.wakeTime, 5)
        pair.advance(4)
        self.assertEqual(len(pair.serverObserver.failed), 1)
        self.assertEqual(pair.serverHost.wakeTime, 6)
        pair.advance(1)
        self.assertEqual(len(pair.serverObserver.failed), 2)
        self.assertIsNone(pair.serverHost.wakeTime)


class ResumeTests(SynchronousTestCase):
    """
    A receiver holding the start of a stream accepts it at that offset; the
    sender checks the part and goes on from there.
    """

    def resume(self, held: bytes, source: bytes) -> tuple[Pair, Sent, Collector]:
        def offered(stream: IncomingStream) -> None:
            collector = Collector(stream)
            pair.serverObserver.collectors[stream.streamID] = collector
            stream.accept(collector, offset=len(held), prefix=hashlib.sha256(held))

        pair = Pair(serverObserver=EngineObserver(onOffered=offered))
        sent = Sent()
        bytesSource = BytesSource(source)

        def onResume(offset: int, digest: bytes) -> None:
            prefix = hashlib.sha256(source[:offset])
            if prefix.digest() != digest:
                stream.abort("the file changed", AbortCode.RESUME_MISMATCH)
                return
            bytesSource.seek(offset)
            stream.resumeFrom(offset, prefix)

        sent.onResume = onResume
        stream = pair.client.openStream(bytesSource, sent, size=len(source), resume=True)
        pair.pump()
        return pair, sent, pair.serverObserver.collectors[stream.streamID]

    def test_resume(self) -> None:
        """
        Only the rest is sent; both sides' SHA-256 is that of the whole.
        """
        pair, sent, collector = self.resume(DATA[:100_000], DATA)
        self.assertEqual(sent.offers, [(100_000, sha256(DATA[:100_000]))])
        self.assertEqual(collector.data, DATA[100_000:])
        self.assertEqual(collector.stream.offset, 100_000)
        self.assertEqual(sent.confirmed, (len(DATA), sha256(DATA)))
        first = next(b for t, b in pair.delivered[Role.SERVER].records if t == STREAM_DATA)
        self.assertEqual(int.from_bytes(first[4:12], "big"), 100_000)

    def test_mismatch(self) -> None:
        """
        A part that is not the start of the source: the sender aborts with
        RESUME_MISMATCH, and both sides fail with L{ResumeMismatch}.
        """
        _pair, sent, collector = self.resume(b"x" * 1000, DATA)
        self.assertIsInstance(sent.error, ResumeMismatch)
        self.assertIsInstance(collector.error, ResumeMismatch)
        self.assertIn("without resuming", str(collector.error))

    def checkedResume(self, held: bytes) -> Sent:
        """
        Send L{DATA}, resumable, to a receiver that holds C{held}; the
        sender answers the offer with C{prefixChecked}.
        """

        def offered(stream: IncomingStream) -> None:
            collector = Collector(stream)
            pair.serverObserver.collectors[stream.streamID] = collector
            stream.accept(collector, offset=len(held), prefix=hashlib.sha256(held))

        pair = Pair(serverObserver=EngineObserver(onOffered=offered))
        sent = Sent()
        source = BytesSource(DATA)

        def onResume(offset: int, digest: bytes) -> None:
            own = hashlib.sha256(DATA[:offset])
            if own.digest() == digest:
                source.seek(offset)
                stream.prefixChecked(offset, own)
            else:
                stream.prefixChecked(offset, None)

        sent.onResume = onResume
        stream = pair.client.openStream(source, sent, size=len(DATA), resume=True)
        pair.pump()
        return sent

    def test_prefixChecked(self) -> None:
        """
        C{prefixChecked} resumes with a prefix that matched, and aborts with
        RESUME_MISMATCH without one.
        """
        sent = self.checkedResume(DATA[:50_000])
        self.assertEqual(sent.confirmed, (len(DATA), sha256(DATA)))
        sent = self.checkedResume(b"y" * 50_000)
        self.assertIsInstance(sent.error, ResumeMismatch)
        self.assertIn("not those of this file", str(sent.error))

    def test_resumeChecks(self) -> None:
        """
        C{resumeFrom} needs an offer at that offset and the matching hash;
        C{accept} at an offset needs a stream that may resume, and a prefix.
        """
        pair, _sent, _collector = self.resume(DATA[:10], DATA)
        self.assertRaises(ValueError, pair.client.openStream, BytesSource(b""), resume=True)
        stream = pair.client.openStream(BytesSource(b"abc"), Sent(), size=3)
        self.assertRaises(LocalProtocolError, stream.resumeFrom, 0, hashlib.sha256())
        observer = EngineObserver(accept=False)
        pair = Pair(serverObserver=observer)
        pair.client.openStream(Pieces(None), Sent(), size=10)
        pair.client.openStream(Pieces(None), Sent(), size=10, resume=True)
        pair.pump()
        plain, resumable = observer.offered
        self.assertRaises(ValueError, plain.accept, Collector(plain), 5, hashlib.sha256(b"x"))
        self.assertRaises(ValueError, resumable.accept, Collector(resumable), 5)
        self.assertRaises(ValueError, resumable.accept, Collector(resumable), 11, hashlib.sha256())
        self.assertRaises(ValueError, resumable.accept, Collector(resumable), window=0)


class SessionTests(SynchronousTestCase):
    """
    The session's version, closing and end.
    """

    def test_olderPeer(self) -> None:
        """
        With a peer of version 2, opening a stream raises
        L{PeerVersionError} and sends nothing.
        """
        pair = Pair(peerVersion=2)
        error = self.assertRaises(PeerVersionError, pair.client.openStream, Pieces(), Sent())
        self.assertEqual((error.localValue, error.remoteValue), (3, 2))
        self.assertIn("need version 3", str(error))
        self.assertEqual(len(pair.clientHost.outbox), 0)
        self.assertEqual(pair.client.outgoing, ())

    def test_versionLearnedLater(self) -> None:
        """
        A stream opened before the handshake completed fails with
        L{PeerVersionError} if the session's version has no streams.
        """
        host = FakeHost(Role.CLIENT, Pair().clock, peerVersion=None)
        engine = StreamsEngine(host, EngineObserver())
        sent = Sent()
        engine.openStream(Pieces(b"x"), sent)
        self.assertEqual(len(host.outbox), 0)
        host.peerVersion = 2
        engine.sessionOpened()
        self.assertIsInstance(sent.error, PeerVersionError)
        self.assertEqual(len(host.outbox), 0)

    def test_closing(self) -> None:
        """
        When the session starts closing, outgoing streams fail and nothing
        more is sent; incoming ones still receive what was in flight, and
        one that arrives whole stays whole when the session ends.
        """
        pair = Pair(serverObserver=EngineObserver(complete=False))
        sent = Sent()
        pair.client.openStream(BytesSource(DATA), sent, size=len(DATA))
        back = pair.server.openStream(BytesSource(b"abc"), Sent(), size=3)
        pair.pump()
        collector = pair.serverObserver.collectors[1]
        self.assertTrue(collector.ended)
        incoming = pair.clientObserver.collectors[back.streamID]
        pair.server.sessionClosing()
        pair.serverHost.closing = True
        self.assertRaises(ChannelClosedError, pair.server.openStream, Pieces(), Sent())
        collector.stream.complete()
        pair.server.sessionClosed(ConnectionError("done"))
        pair.client.sessionClosed(ConnectionError("done"))
        self.assertTrue(collector.ended)
        self.assertIsNone(collector.error)
        self.assertEqual(sent.confirmed, None)
        self.assertIsInstance(sent.error, StreamAborted)
        self.assertTrue(incoming.ended)

    def test_lostMidStream(self) -> None:
        """
        A session that ends mid-stream fails the stream on both sides with
        L{StreamAborted} naming the reason.
        """
        pair = Pair(clientOptions={"chunkSize": 1000})
        sent = Sent()
        stream = pair.client.openStream(BytesSource(DATA), sent, size=len(DATA))
        for _ in range(4):
            pair.deliverOne(pair.clientHost, pair.serverHost, pair.server)
            pair.deliverOne(pair.serverHost, pair.clientHost, pair.client)
        pair.client.sessionClosed(ConnectionResetError("reset"))
        pair.server.sessionClosed(ConnectionResetError("reset"))
        collector = pair.serverObserver.collectors[stream.streamID]
        self.assertIsInstance(collector.error, StreamAborted)
        self.assertIn("reset", str(collector.error))
        self.assertIsInstance(sent.error, StreamAborted)
        self.assertEqual(pair.client.outgoing + pair.server.incoming, ())

    def test_closedUnannounced(self) -> None:
        """
        A session that refuses records (it began closing) before telling
        the engine: the engine closes then, failing its outgoing streams.
        """
        pair = Pair(serverObserver=EngineObserver(consume=False), serverOptions={"window": 1000})
        sent = Sent()
        pair.client.openStream(BytesSource(DATA), sent, size=len(DATA))
        pair.pump()
        pair.clientHost.closing = True
        pair.client.recordReceived(STREAM_WINDOW, windowBody(1, 1000))
        self.assertIsInstance(sent.error, StreamAborted)
        self.assertIn("is closing", str(sent.error))
        self.assertEqual(pair.client.outgoing, ())
        self.assertRaises(ChannelClosedError, pair.client.openStream, Pieces(), Sent())

    def test_excessiveAnswers(self) -> None:
        """
        A peer that keeps opening and cancelling streams while this side's
        session is not writable (it does not read) makes this side fail
        the session once the answers waiting pass the bound.
        """
        pair = Pair()
        sent = Sent()
        pair.server.openStream(Pieces(None), sent)
        pair.serverHost.blocked = True
        streamID = 1
        while not pair.serverHost.failures:
            pair.server.recordReceived(STREAM_OPEN, openBody(streamID, b"\xc0"))
            pair.server.recordReceived(STREAM_ABORT, abortBody(streamID, AbortCode.CANCELLED))
            streamID += 2
        (error,) = pair.serverHost.failures
        self.assertIsInstance(error, StreamProtocolError)
        self.assertIn("without reading", str(error))
        self.assertLessEqual(pair.serverHost.queued, MAX_BLOCKED_ANSWERS + 100)
        queued = pair.serverHost.queued
        pair.server.recordReceived(STREAM_OPEN, openBody(streamID, b"\xc0"))
        self.assertEqual(pair.serverHost.queued, queued)
        pair.server.sessionClosed(ConnectionError("failed"))
        self.assertIsInstance(sent.error, StreamAborted)

    def test_reentrant(self) -> None:
        """
        An observer may open a stream when told one was confirmed, and
        cancel one as it progresses.
        """
        pair = Pair(clientOptions={"chunkSize": 1000})
        second = Sent()

        class Chained(Sent):
            def streamConfirmed(self, size: int, sha256: bytes) -> None:
                super().streamConfirmed(size, sha256)
                pair.client.openStream(BytesSource(b"next"), second, size=4)

        class Quitter(Sent):
            def streamProgressed(self, sent: int) -> None:
                super().streamProgressed(sent)
                if sent >= 3000:
                    quitter.cancel()

        first = Chained()
        pair.client.openStream(BytesSource(b"first"), first, size=5)
        quitterSent = Quitter()
        quitter = pair.client.openStream(BytesSource(DATA), quitterSent, size=len(DATA))
        pair.pump()
        self.assertEqual(second.confirmed, (4, sha256(b"next")))
        self.assertEqual(quitterSent.progress[-1], 3000)
        self.assertIsInstance(quitterSent.error, StreamAborted)

    def test_streamErrorsAreStreamErrors(self) -> None:
        """
        Every stream failure is a L{StreamError}, and never a protocol
        error of the session.
        """
        for cls in (
            StreamRefused,
            TooManyStreams,
            StreamTooLarge,
            StreamAborted,
            StreamIntegrityError,
            StreamTimeout,
            ResumeMismatch,
        ):
            self.assertTrue(issubclass(cls, StreamError))
        self.assertTrue(issubclass(StreamTimeout, TimeoutError))
