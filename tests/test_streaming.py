# -*- test-case-name: tests.test_streaming -*-
"""
Streams on the Twisted side (L{netstructer.streaming}, the streams methods
of L{BridgeProtocol}, server handlers' C{streamReceived}, L{SaveHandler}),
over sessions connected in memory on a L{MemoryReactorClock}, with file work
run at once (L{ImmediateDiskIO}); and over real loopback TCP with the disk
threads, once.
"""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from twisted.internet import defer
from twisted.internet.interfaces import IConsumer, IPushProducer
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import LogEvent, Logger
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase, TestCase
from zope.interface import implementer
from zope.interface.verify import verifyObject

from netstructer.errors import (
    PeerVersionError,
    ResumeMismatch,
    StreamAborted,
    StreamRefused,
    StreamTimeout,
    StreamTooLarge,
)
from netstructer.handlers import (
    EchoHandler,
    IHandler,
    IStreamHandler,
    SaveHandler,
    handlerFromName,
)
from netstructer.keys import generateKey
from netstructer.protocol import BridgeConfig
from netstructer.server import Server
from netstructer.session.sending import ValueSender
from netstructer.streaming import FileConsumer, ImmediateDiskIO, ReceivedStream, StreamReceipt
from netstructer.streaming.disk import SerialDiskIO, ThreadedDiskIO, diskIOFor
from netstructer.streams import StreamsEngine
from netstructer.streams.files import PART_SUFFIX
from netstructer.streams.wire import STREAM_DATA
from tests.test_registry import Link, Network

KEY = generateKey()
MiB = 1024 * 1024


def sha(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


@implementer(IConsumer)
class SlowConsumer:
    """
    A consumer that pauses its producer after each write, until told.

    @ivar data: What was written.
    """

    def __init__(self) -> None:
        self.data = bytearray()
        self.producer: IPushProducer | None = None
        self.unregistered = False

    def registerProducer(self, producer: IPushProducer, streaming: bool) -> None:
        self.producer = producer

    def unregisterProducer(self) -> None:
        self.unregistered = True

    def write(self, data: bytes) -> None:
        self.data += data
        if self.producer is not None:
            self.producer.pauseProducing()


class PushBody:
    """
    An C{IBodyProducer}-style producer of C{count} chunks of C{chunk}
    bytes, writing them when resumed or started.
    """

    def __init__(self, chunk: bytes, count: int) -> None:
        self.chunk = chunk
        self.count = count
        self.length = len(chunk) * count
        self.paused = 0
        self.stopped = False
        self.consumer: Any = None
        self.finished: defer.Deferred[None] = defer.Deferred()

    def startProducing(self, consumer: Any) -> defer.Deferred[None]:
        self.consumer = consumer
        self.resumeProducing()
        return self.finished

    def pauseProducing(self) -> None:
        self.paused += 1
        self._pausedNow = True

    def resumeProducing(self) -> None:
        self._pausedNow = False
        while self.count and not self._pausedNow:
            self.count -= 1
            self.consumer.write(self.chunk)
        if not self.count and not self.finished.called:
            self.finished.callback(None)

    def stopProducing(self) -> None:
        self.stopped = True


class PullBody:
    """
    A producer that registers itself as a pull producer and writes one
    chunk each time it is asked.
    """

    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = list(chunks)
        self.finished: defer.Deferred[None] = defer.Deferred()
        self.asked = 0

    def startProducing(self, consumer: Any) -> defer.Deferred[None]:
        self.consumer = consumer
        consumer.registerProducer(self, False)
        return self.finished

    def resumeProducing(self) -> None:
        self.asked += 1
        if self.chunks:
            self.consumer.write(self.chunks.pop(0))
        if not self.chunks and not self.finished.called:
            self.consumer.unregisterProducer()
            self.finished.callback(None)

    def pauseProducing(self) -> None:
        """Nothing."""

    def stopProducing(self) -> None:
        """Nothing."""


class StreamsNetwork(SynchronousTestCase):
    """
    Sessions of a L{Server} on a L{MemoryReactorClock}, connected in memory,
    each with file work run at once.
    """

    def setUp(self) -> None:
        self.reactor = MemoryReactorClock()
        self.events: list[LogEvent] = []
        self.logger = Logger(observer=self.events.append)
        self.directory = Path(self.mktemp()).resolve()
        self.directory.mkdir(parents=True)

    def connect(self, handler: object = None, **options: Any) -> Link:
        """
        A server with C{handler} and one client connected to it.
        """
        self.server = Server(
            "tcp:5000", KEY, handler, reactor=self.reactor, logger=self.logger, **options
        )
        self.network = Network(self.server.factory, self.reactor, self.logger, key=KEY)
        link = self.network.connect()
        assert link is not None
        link.client.diskIO = link.server.diskIO = ImmediateDiskIO()
        self.network.pump()
        self.assertTrue(link.client.established)
        return link

    def pump(self) -> None:
        self.network.pump()

    def file(self, name: str, data: bytes) -> Path:
        path = self.directory / name
        path.write_bytes(data)
        return path

    def logged(self, text: str) -> list[str]:
        """
        The log lines containing C{text}.
        """
        from twisted.logger import formatEvent

        lines = [formatEvent(event) for event in self.events]
        return [line for line in lines if text in line]


class SendAndReceiveTests(StreamsNetwork):
    """
    C{sendStream} from each kind of source, and C{recvStream} with each
    way of taking a stream.
    """

    def received(self, link: Link) -> ReceivedStream:
        d = link.server.recvStream()
        self.pump()
        return self.successResultOf(d)

    def test_everySessionHasAnEngine(self) -> None:
        """
        Both ends of every session have a streams engine attached.
        """
        link = self.connect()
        for protocol in (link.client, link.server):
            self.assertIsInstance(protocol.streams, StreamsEngine)
            self.assertTrue(protocol.records.registered("streams"))

    def test_bytesChunkByChunk(self) -> None:
        """
        Bytes sent arrive whole, chunk by chunk; the sender's Deferred fires
        with the receiver's receipt (size and SHA-256 as sent).
        """
        link = self.connect()
        data = os.urandom(3 * MiB + 17)
        sent = link.client.sendStream(data, {"name": "x"})
        stream = self.received(link)
        self.assertEqual((stream.meta, stream.size), ({"name": "x"}, len(data)))
        chunks: list[bytes] = []

        def take(chunk: bytes) -> None:
            chunks.append(chunk)
            if chunk:
                stream.nextChunk().addCallback(take)

        stream.nextChunk().addCallback(take)
        self.pump()
        self.assertEqual(chunks[-1], b"")
        self.assertEqual(b"".join(chunks), data)
        receipt = self.successResultOf(sent)
        self.assertEqual(receipt, StreamReceipt(len(data), sha(data)))
        self.assertEqual(stream.receipt, receipt)

    def test_asyncIteration(self) -> None:
        """
        C{async for chunk in stream} takes every chunk; an async iterable is
        sent as its chunks.
        """
        link = self.connect()
        parts = [os.urandom(100_000) for _ in range(20)]

        async def produce() -> AsyncIterator[bytes]:
            for part in parts:
                yield part

        sent = link.client.sendStream(produce())
        stream = self.received(link)
        self.assertIsNone(stream.size)

        async def consume() -> bytes:
            return b"".join([chunk async for chunk in stream])

        got = defer.ensureDeferred(consume())
        self.pump()
        self.assertEqual(self.successResultOf(got), b"".join(parts))
        self.assertEqual(self.successResultOf(sent).size, 2_000_000)

    def test_iterable(self) -> None:
        """
        An iterable of bytes is sent as its chunks.
        """
        link = self.connect()
        sent = link.client.sendStream(iter([b"abc", b"", b"def"]))
        stream = self.received(link)
        consumer = SlowConsumer()
        done = stream.deliverTo(consumer)
        self.pump()
        while not done.called:
            consumer.producer.resumeProducing()  # type: ignore[union-attr]
            self.pump()
        self.assertEqual(bytes(consumer.data), b"abcdef")
        self.assertTrue(consumer.unregistered)
        self.assertEqual(self.successResultOf(sent).sha256, sha(b"abcdef"))

    def test_pathAndMetaDefault(self) -> None:
        """
        A path is read (in the disk threads) and sent with its size; its
        meta defaults to its name.
        """
        link = self.connect()
        data = os.urandom(2 * MiB + 5)
        path = self.file("source.bin", data)
        sent = link.client.sendStream(path)
        stream = self.received(link)
        self.assertEqual((stream.meta, stream.size), ({"name": "source.bin"}, len(data)))
        saved = stream.saveTo(self.directory / "copy.bin")
        self.pump()
        receipt = self.successResultOf(saved)
        self.assertEqual(receipt.path, self.directory / "copy.bin")
        self.assertEqual((self.directory / "copy.bin").read_bytes(), data)
        self.assertEqual(self.successResultOf(sent), StreamReceipt(len(data), sha(data)))

    def test_fileObject(self) -> None:
        """
        A binary file object is sent from its position.
        """
        link = self.connect()
        sent = link.client.sendStream(io.BytesIO(b"0123456789"), size=10)
        stream = self.received(link)
        consumer = FileConsumer(io.BytesIO(), ImmediateDiskIO(), self.fail)
        target = consumer._file
        done = stream.deliverTo(consumer)
        self.pump()
        self.successResultOf(done)
        self.assertEqual(target.getvalue(), b"0123456789")  # type: ignore[attr-defined]
        self.successResultOf(sent)

    def test_deliverToFile(self) -> None:
        """
        C{deliverTo} a binary file writes it in the disk threads.
        """
        link = self.connect()
        data = os.urandom(MiB)
        sent = link.client.sendStream(data)
        stream = self.received(link)
        target = io.BytesIO()
        done = stream.deliverTo(target)
        self.pump()
        self.assertEqual(self.successResultOf(done).size, MiB)
        self.assertEqual(target.getvalue(), data)
        self.successResultOf(sent)

    def test_textFileRefused(self) -> None:
        """
        A file opened in text mode, or an object of no accepted kind, fails
        the Deferred with C{TypeError}; nothing is sent.
        """
        link = self.connect()
        path = self.file("text.txt", b"hello")
        with open(path) as text:
            self.failureResultOf(link.client.sendStream(text), TypeError)
        self.failureResultOf(link.client.sendStream(42), TypeError)
        self.failureResultOf(link.client.sendStream("no-such-file"), FileNotFoundError)
        self.assertEqual(link.client.streams.outgoing, ())

    def test_pushProducer(self) -> None:
        """
        A push producer is paused while 1 MiB of it waits, and resumed as
        the stream drains it.
        """
        link = self.connect()
        body = PushBody(b"x" * 65536, 64)
        sent = link.client.sendStream(body)
        self.assertGreater(body.paused, 0)
        stream = self.received(link)
        self.assertEqual(stream.size, 4 * MiB)
        done = stream.deliverTo(io.BytesIO())
        self.pump()
        self.assertEqual(self.successResultOf(done).size, 4 * MiB)
        self.assertEqual(self.successResultOf(sent).size, 4 * MiB)

    def test_pullProducer(self) -> None:
        """
        A pull producer is asked for a chunk each time the stream wants one.
        """
        link = self.connect()
        body = PullBody([b"a" * 1000, b"b" * 1000, b"c"])
        sent = link.client.sendStream(body)
        stream = self.received(link)
        target = io.BytesIO()
        stream.deliverTo(target)
        self.pump()
        self.assertEqual(target.getvalue(), b"a" * 1000 + b"b" * 1000 + b"c")
        self.assertEqual(self.successResultOf(sent).size, 2001)

    def test_progress(self) -> None:
        """
        The progress callable is called with the bytes sent and the size.
        """
        link = self.connect()
        calls: list[tuple[int, int | None]] = []
        data = os.urandom(MiB)
        sent = link.client.sendStream(data, progress=lambda n, size: calls.append((n, size)))
        self.received(link).deliverTo(io.BytesIO())
        self.pump()
        self.successResultOf(sent)
        self.assertEqual(calls[-1], (MiB, MiB))
        self.assertEqual([n for n, _ in calls], sorted(n for n, _ in calls))

    def test_serverSendsToClient(self) -> None:
        """
        A server session sends a stream to its client, which takes it with
        its C{recvStream}.
        """
        link = self.connect()
        sent = link.server.sendStream(b"to the client", "note")
        d = link.client.recvStream()
        self.pump()
        stream = self.successResultOf(d)
        self.assertEqual(stream.meta, "note")
        chunk = stream.nextChunk()
        self.pump()
        self.assertEqual(self.successResultOf(chunk), b"to the client")
        self.assertEqual(self.successResultOf(stream.nextChunk()), b"")
        self.pump()
        self.successResultOf(sent)

    def test_recvStreamTimeout(self) -> None:
        """
        C{recvStream} fails after its timeout, consuming nothing.
        """
        from netstructer.errors import OperationTimedOut

        link = self.connect()
        d = link.server.recvStream(timeout=5)
        self.reactor.advance(5)
        self.failureResultOf(d, OperationTimedOut)

    def test_interfaces(self) -> None:
        """
        The built-in stream handlers provide L{IStreamHandler}.
        """
        verifyObject(IStreamHandler, EchoHandler())
        verifyObject(IHandler, EchoHandler())
        verifyObject(IStreamHandler, SaveHandler(self.directory))


class FlowTests(StreamsNetwork):
    """
    Backpressure, fairness and cancellation.
    """

    def test_slowConsumerStallsOnlyItsStream(self) -> None:
        """
        A consumer that pauses its stream holds at most a window of it; the
        sender waits, while another stream and values go on.
        """
        link = self.connect()
        slow = link.client.sendStream(os.urandom(16 * MiB))
        fast = link.client.sendStream(os.urandom(8 * MiB))
        first = link.server.recvStream()
        second = link.server.recvStream()
        self.pump()
        slowStream, fastStream = self.successResultOf(first), self.successResultOf(second)
        consumer = SlowConsumer()
        slowDone = slowStream.deliverTo(consumer)
        fastDone = fastStream.deliverTo(io.BytesIO())
        link.client.sendBuffer("a value")
        values = link.server.recvBuffer()
        self.pump()
        self.assertEqual(self.successResultOf(values), "a value")
        self.assertEqual(self.successResultOf(fastDone).size, 8 * MiB)
        self.assertNoResult(slowDone)
        self.assertNoResult(slow)
        held = slowStream.received - len(consumer.data)
        self.assertLessEqual(held, link.server.streams.window)
        while not slowDone.called:
            consumer.producer.resumeProducing()  # type: ignore[union-attr]
            self.pump()
        self.assertEqual(len(consumer.data), 16 * MiB)
        self.successResultOf(slow)
        self.successResultOf(fast)

    def test_cancelAbortsThatStreamOnly(self) -> None:
        """
        Cancelling C{sendStream}'s Deferred aborts that stream: the
        receiver's fails with L{StreamAborted}, the session and another
        stream go on.
        """
        link = self.connect()
        doomed = link.client.sendStream(os.urandom(16 * MiB))
        other = link.client.sendStream(b"other")
        first, second = link.server.recvStream(), link.server.recvStream()
        self.pump()
        doomedStream = self.successResultOf(first)
        consumer = SlowConsumer()
        received = doomedStream.deliverTo(consumer)
        self.successResultOf(second).deliverTo(io.BytesIO())
        self.pump()
        doomed.cancel()
        self.failureResultOf(doomed, defer.CancelledError)
        self.pump()
        error = self.failureResultOf(received, StreamAborted).value
        self.assertTrue(error.byPeer)
        self.assertIn("CANCELLED", str(error))
        self.successResultOf(other)
        self.assertTrue(link.client.established)
        self.assertTrue(self.logged("failed"))

    def test_limitRate(self) -> None:
        """
        A file sent with C{limitRate} goes no faster than asked, on the
        session's clock.
        """
        link = self.connect()
        path = self.file("paced.bin", os.urandom(4 * MiB))
        sent = link.client.sendStream(path, limitRate=MiB)
        self.pump()
        stream = self.successResultOf(link.server.recvStream())
        stream.deliverTo(io.BytesIO())
        self.pump()
        self.assertLess(stream.received, MiB // 2)
        for _ in range(25):
            self.reactor.advance(0.1)
            self.pump()
        self.assertNoResult(sent)
        self.assertTrue(2 * MiB <= stream.received <= 3 * MiB, stream.received)
        for _ in range(20):
            self.reactor.advance(0.1)
            self.pump()
        self.assertEqual(self.successResultOf(sent).size, 4 * MiB)


class RefusalTests(StreamsNetwork):
    """
    Streams nobody takes, refused, too large, or sent to a peer without
    streams.
    """

    def test_handlerObjectWithoutStreams(self) -> None:
        """
        A server whose handler object has no C{streamReceived} refuses
        streams at once; the sender learns why, and both sides log it.
        """
        from netstructer.handlers import LogHandler

        link = self.connect(LogHandler(logger=self.logger))
        sent = link.client.sendStream(b"data")
        self.pump()
        error = self.failureResultOf(sent, StreamRefused).value
        self.assertIn("takes no streams", str(error))
        self.assertEqual(len(self.logged("takes no streams")), 2)
        self.assertTrue(link.client.established)

    def test_untakenStreamTimesOut(self) -> None:
        """
        A stream nobody takes is refused after the idle timeout (TIMEOUT),
        and C{recvStream} then waits for the next.
        """
        link = self.connect()
        sent = link.client.sendStream(b"data")
        self.pump()
        self.reactor.advance(61)
        self.pump()
        self.failureResultOf(sent, StreamTimeout)
        later = link.server.recvStream()
        self.assertNoResult(later)

    def test_refuse(self) -> None:
        """
        C{refuse} fails the sender's Deferred with the reason.
        """
        link = self.connect()
        sent = link.client.sendStream(b"data")
        self.pump()
        self.successResultOf(link.server.recvStream()).refuse("not today")
        self.pump()
        self.assertIn("not today", str(self.failureResultOf(sent, StreamRefused).value))

    def test_maxStreamSize(self) -> None:
        """
        A server's C{maxStreamSize} refuses a stream announcing more, and
        aborts one passing it.
        """
        link = self.connect(maxStreamSize=MiB)
        announced = link.client.sendStream(os.urandom(MiB + 1))
        unannounced = link.client.sendStream(iter([os.urandom(MiB // 2)] * 3))
        self.pump()
        self.failureResultOf(announced, StreamTooLarge)
        stream = self.successResultOf(link.server.recvStream())
        received = stream.deliverTo(io.BytesIO())
        self.pump()
        self.failureResultOf(received, StreamTooLarge)
        self.failureResultOf(unannounced, StreamTooLarge)

    def test_handlerFailureAbortsTheStream(self) -> None:
        """
        A C{streamReceived} that raises aborts that stream, logged; the
        session stays open.
        """

        class Failing:
            def streamReceived(self, session: Any, meta: object, stream: Any) -> None:
                raise RuntimeError("boom")

        link = self.connect(Failing())
        sent = link.client.sendStream(b"data")
        self.pump()
        self.failureResultOf(sent, StreamAborted)
        self.assertTrue(self.logged("stream handler failed"))
        self.assertTrue(link.client.established)

    def test_versionTwoPeer(self) -> None:
        """
        A session of protocol version 2 has no streams: C{sendStream} fails
        with L{PeerVersionError}, and values still go through.
        """
        self.server = Server("tcp:5000", KEY, reactor=self.reactor, logger=self.logger)
        self.network = Network(self.server.factory, self.reactor, self.logger, key=KEY)
        link = self.network.connect(clientConfig=BridgeConfig.fromKey(KEY, protocolVersion=2))
        assert link is not None
        self.pump()
        self.failureResultOf(link.client.sendStream(b"x"), PeerVersionError)
        link.client.sendBuffer(1)
        d = link.server.recvBuffer()
        self.pump()
        self.assertEqual(self.successResultOf(d), 1)

    def test_dataRecordsSentInParts(self) -> None:
        """
        DATA records leave through the session's C{sendRecordParts}.
        """
        link = self.connect()
        calls: list[int] = []
        sender = link.client.core.sender
        original = ValueSender.sendRecordParts

        def recording(self: ValueSender, recordType: int, parts: Any) -> None:
            if self is sender:
                calls.append(recordType)
            original(self, recordType, parts)

        self.patch(ValueSender, "sendRecordParts", recording)
        sent = link.client.sendStream(b"x" * 1000)
        self.pump()
        self.successResultOf(link.server.recvStream()).deliverTo(io.BytesIO())
        self.pump()
        self.successResultOf(sent)
        self.assertIn(STREAM_DATA, calls)


class SavingTests(StreamsNetwork):
    """
    C{saveTo} and the C{save:DIR} handler.
    """

    def test_saveHandler(self) -> None:
        """
        C{save:DIR} keeps a stream under the name its meta gives, made
        safe, with its meta beside it.
        """
        link = self.connect(handlerFromName(f"save:{self.directory / 'in'}"))
        sent = link.client.sendStream(b"payload", {"name": "../../etc/passwd", "n": 1})
        self.pump()
        self.successResultOf(sent)
        saved = self.directory / "in" / "passwd"
        self.assertEqual(saved.read_bytes(), b"payload")
        meta = (self.directory / "in" / "passwd.meta.json").read_text()
        self.assertIn('"n": 1', meta)
        self.assertEqual(
            sorted(p.name for p in (self.directory / "in").iterdir()),
            ["passwd", "passwd.meta.json"],
        )

    def test_noOverwrite(self) -> None:
        """
        A stream whose name exists is refused, the file untouched; with
        C{save:DIR,overwrite} it replaces it.
        """
        target = self.directory / "in"
        target.mkdir()
        (target / "f.bin").write_bytes(b"old")
        link = self.connect(SaveHandler(target))
        sent = link.client.sendStream(b"new", "f.bin")
        self.pump()
        error = self.failureResultOf(sent, StreamRefused).value
        self.assertIn("a file of that name exists", str(error))
        self.assertEqual((target / "f.bin").read_bytes(), b"old")
        self.assertEqual(sorted(p.name for p in target.iterdir()), ["f.bin"])
        self.server.setHandler(handlerFromName(f"save:{target},overwrite"))
        again = link.client.sendStream(b"new", "f.bin")
        self.pump()
        self.successResultOf(again)
        self.assertEqual((target / "f.bin").read_bytes(), b"new")

    def test_abortedLeavesNothing(self) -> None:
        """
        A stream its sender cancels leaves no file, not even its part.
        """
        link = self.connect(SaveHandler(self.directory))
        never: defer.Deferred[None] = defer.Deferred()

        async def chunks() -> AsyncIterator[bytes]:
            yield b"y" * 65536
            await never

        sent = link.client.sendStream(chunks(), "cancelled.bin")
        self.pump()
        self.assertEqual(
            [p.name for p in self.directory.iterdir()], [f".cancelled.bin{PART_SUFFIX}"]
        )
        sent.cancel()
        self.failureResultOf(sent, defer.CancelledError)
        self.pump()
        self.assertEqual(sorted(p.name for p in self.directory.iterdir()), [])

    def test_sessionLostKeepsThePartToResume(self) -> None:
        """
        A stream cut by the session's end leaves its part; a later transfer
        that can resume goes on from it, after checking its hash.
        """
        link = self.connect(SaveHandler(self.directory / "in"))
        data = os.urandom(8 * MiB)
        path = self.file("big.bin", data)
        sent = link.client.sendStream(path, resume=True, limitRate=2 * MiB)
        # Let part of it through, then cut the connection.
        for _ in range(10):
            self.reactor.advance(0.1)
            self.pump()
        link.clientTransport.loseConnection()
        self.pump()
        self.failureResultOf(sent, StreamAborted)
        part = self.directory / "in" / f".big.bin{PART_SUFFIX}"
        kept = part.stat().st_size
        self.assertGreater(kept, 0)
        self.assertLess(kept, len(data))
        self.assertFalse((self.directory / "in" / "big.bin").exists())
        second = self.network.connect(port=40001)
        assert second is not None
        second.client.diskIO = second.server.diskIO = ImmediateDiskIO()
        self.pump()
        again = second.client.sendStream(path, resume=True)
        self.pump()
        receipt = self.successResultOf(again)
        self.assertEqual((receipt.size, receipt.offset), (len(data), kept))
        self.assertEqual((self.directory / "in" / "big.bin").read_bytes(), data)
        self.assertFalse(part.exists())

    def test_resumeMismatch(self) -> None:
        """
        A part that is not the start of the file is not resumed from: the
        stream fails with L{ResumeMismatch}, and the part stays.
        """
        target = self.directory / "in"
        target.mkdir()
        (target / f".f.bin{PART_SUFFIX}").write_bytes(b"not the start")
        link = self.connect(SaveHandler(target))
        path = self.file("f.bin", b"something else entirely")
        sent = link.client.sendStream(path, resume=True)
        self.pump()
        self.failureResultOf(sent, ResumeMismatch)
        self.assertFalse((target / "f.bin").exists())

    def test_notResumableStartsAfresh(self) -> None:
        """
        A stream that cannot resume overwrites a part left by an earlier
        transfer.
        """
        target = self.directory / "in"
        target.mkdir()
        (target / f".f.bin{PART_SUFFIX}").write_bytes(b"stale bytes")
        link = self.connect(SaveHandler(target))
        self.successResultOf(self._sent(link, b"fresh", "f.bin"))
        self.assertEqual((target / "f.bin").read_bytes(), b"fresh")

    def _sent(self, link: Link, data: bytes, meta: object) -> defer.Deferred[StreamReceipt]:
        sent = link.client.sendStream(data, meta)
        self.pump()
        return sent

    def test_diskFull(self) -> None:
        """
        A stream announcing more than the disk holds is refused (TOO_LARGE)
        with a message saying so.
        """
        link = self.connect(SaveHandler(self.directory))
        huge = PushBody(b"z", 1)
        huge.length = 2**60
        sent = link.client.sendStream(huge, "huge.bin")
        self.pump()
        error = self.failureResultOf(sent, StreamTooLarge).value
        self.assertIn("disk is too full", str(error))
        self.assertEqual(list(self.directory.iterdir()), [])


class SerialDiskIOTests(SynchronousTestCase):
    """
    L{SerialDiskIO} runs work in order, one piece at a time.
    """

    def test_order(self) -> None:
        """
        Each piece starts once the one before it ended, even if it failed.
        """
        started: list[int] = []
        pending: list[defer.Deferred[None]] = []

        class Manual:
            def run(self, function: Any, *args: object) -> defer.Deferred[Any]:
                started.append(args[0])  # type: ignore[arg-type]
                d: defer.Deferred[None] = defer.Deferred()
                pending.append(d)
                return d

        serial = SerialDiskIO(Manual())  # type: ignore[arg-type]
        first = serial.run(print, 1)
        second = serial.run(print, 2)
        self.assertEqual(started, [1])
        pending[0].errback(Failure(RuntimeError("disk")))
        self.failureResultOf(first, RuntimeError)
        self.assertEqual(started, [1, 2])
        pending[1].callback(None)
        self.successResultOf(second)


class LoopbackTests(TestCase):
    """
    A file sent and saved over real loopback TCP, with the disk threads.
    """

    timeout = 60

    async def test_fileOverLoopback(self) -> None:
        """
        A 24 MiB file is sent from one process's client to its server's
        save handler through the disk threads, values going both ways
        meanwhile.
        """
        from twisted.internet import reactor

        from netstructer.client import connect

        directory = Path(self.mktemp()).resolve()
        directory.mkdir(parents=True)
        data = os.urandom(24 * MiB)
        source = directory / "source.bin"
        source.write_bytes(data)
        server = Server(
            "tcp:0:interface=127.0.0.1", KEY, SaveHandler(directory / "in"), reactor=reactor
        )
        port = await server.listen()
        server.startService()
        self.addCleanup(server.stopService)
        # The server's sessions use the reactor's disk threads: stop them,
        # as the reactor's shutdown would.
        self.addCleanup(diskIOFor(reactor).stop)
        disk = ThreadedDiskIO(reactor)
        self.addCleanup(disk.stop)
        session = await connect(reactor, f"tcp:127.0.0.1:{port.getHost().port}", KEY)
        session.diskIO = disk
        self.addCleanup(session.close)
        receipt = await session.sendStream(source)
        self.assertEqual(receipt, StreamReceipt(len(data), sha(data)))
        self.assertEqual((directory / "in" / "source.bin").read_bytes(), data)
