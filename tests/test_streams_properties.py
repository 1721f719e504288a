# -*- test-case-name: tests.test_streams_properties -*-
"""
Property tests of streams: random interleavings of several streams both
ways, chunk sizes, windows, pauses, blocked sessions and values through the
same session arrive whole, in order, confirmed, within the memory the
windows allow; a long stream costs constant memory; and the parser and the
engine take any garbage with a L{RemoteProtocolError} and nothing else.
"""

from __future__ import annotations

import random
import tracemalloc
from dataclasses import dataclass

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer

from netstructer.channel import Role
from netstructer.errors import RemoteProtocolError, StreamProtocolError
from netstructer.streams import IncomingStream, IStreamSource, StreamsEngine
from netstructer.streams.sources import BytesSource
from netstructer.streams.wire import (
    STREAM_ABORT,
    STREAM_ACCEPT,
    STREAM_DATA,
    STREAM_DONE,
    STREAM_END,
    STREAM_OPEN,
    STREAM_WINDOW,
    AbortCode,
    abortBody,
    acceptBody,
    dataHeader,
    endBody,
    openBody,
    parseRecord,
    recordBody,
    windowBody,
)

from ._streamshost import Collector, EngineObserver, FakeHost, Pair, Sent, sha256


@dataclass
class Spec:
    """
    One stream of a scenario.

    @ivar fromClient: Whether the client sends it.
    @ivar size: How many bytes.
    @ivar announce: Whether its size is announced.
    @ivar seed: Makes its bytes.
    """

    fromClient: bool
    size: int
    announce: bool
    seed: int

    def data(self) -> bytes:
        return random.Random(self.seed).randbytes(self.size)


specs = st.builds(
    Spec,
    fromClient=st.booleans(),
    size=st.one_of(st.integers(0, 3), st.integers(0, 40_000)),
    announce=st.booleans(),
    seed=st.integers(0, 2**32),
)

actions = st.lists(
    st.one_of(
        st.tuples(st.just("deliver"), st.booleans(), st.integers(1, 20)),
        st.tuples(st.just("consume"), st.integers(0, 7), st.integers(0, 50_000)),
        st.tuples(st.just("block"), st.booleans(), st.booleans()),
        st.tuples(st.just("value"), st.booleans(), st.integers(1, 3)),
    ),
    max_size=60,
)


class InterleavingTests(SynchronousTestCase):
    """
    Whatever happens in between, every stream arrives whole.
    """

    @settings(
        max_examples=150,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(
        streams=st.lists(specs, min_size=1, max_size=6),
        chunkSize=st.integers(1, 6000),
        window=st.integers(1, 30_000),
        maxStreams=st.integers(1, 4),
        highWater=st.integers(1, 50_000),
        steps=actions,
    )
    def test_interleavings(
        self,
        streams: list[Spec],
        chunkSize: int,
        window: int,
        maxStreams: int,
        highWater: int,
        steps: list[tuple[str, object, object]],
    ) -> None:
        """
        Several streams both ways, values between them, random deliveries,
        consumption, and blocked sessions: each stream arrives in order and
        whole, both sides agree on its SHA-256, no side ever holds more of
        a stream than its window, and nothing is left over.
        """
        collectors: dict[int, Collector] = {}

        def offered(stream: IncomingStream) -> None:
            collector = collectors[stream.meta] = Collector(stream, consume=False)  # type: ignore[index]
            stream.accept(collector)

        options = {"chunkSize": chunkSize, "window": window, "maxStreams": maxStreams}
        pair = Pair(
            clientObserver=EngineObserver(onOffered=offered),
            serverObserver=EngineObserver(onOffered=offered),
            clientOptions=options,
            serverOptions=options,
            highWater=highWater,
            lowWater=highWater // 4,
        )
        sents = []
        for index, spec in enumerate(streams):
            engine = pair.client if spec.fromClient else pair.server
            data = spec.data()
            sent = Sent()
            engine.openStream(
                BytesSource(data), sent, meta=index, size=len(data) if spec.announce else None
            )
            sents.append(sent)
        hosts = {True: pair.clientHost, False: pair.serverHost}
        valuesSent: dict[bool, list[int]] = {True: [], False: []}

        def sendValues(fromClient: bool, count: int) -> None:
            for _ in range(count):
                value = len(valuesSent[fromClient])
                valuesSent[fromClient].append(value)
                hosts[fromClient].sendValue(value)

        for action, first, second in steps:
            if action == "deliver":
                sender = pair.clientHost if first else pair.serverHost
                receiver, engine = (
                    (pair.serverHost, pair.server) if first else (pair.clientHost, pair.client)
                )
                for _ in range(int(second)):  # type: ignore[call-overload]
                    pair.deliverOne(sender, receiver, engine)
            elif action == "consume":
                if collectors:
                    collector = list(collectors.values())[int(first) % len(collectors)]  # type: ignore[call-overload]
                    count = min(int(second), collector.unconsumed)  # type: ignore[call-overload]
                    collector.unconsumed -= count
                    collector.stream.consumed(count)
            elif action == "block":
                host = hosts[bool(first)]
                if second:
                    host.blocked = True
                else:
                    host.unblock()
            else:
                sendValues(bool(first), int(second))  # type: ignore[call-overload]
            self.assertEqual(pair.errors, {})

        for host in hosts.values():
            host.unblock()
        for _ in range(100_000):
            moved = pair.pump()
            for collector in list(collectors.values()):
                if collector.unconsumed:
                    collector.consumeAll()
                    moved += 1
            if not moved:
                break
        self.assertEqual(pair.errors, {})
        for index, (spec, sent) in enumerate(zip(streams, sents, strict=True)):
            data = spec.data()
            self.assertIsNone(sent.error, f"stream {index}")
            self.assertEqual(sent.confirmed, (len(data), sha256(data)), f"stream {index}")
            self.assertEqual(collectors[index].data, data)
            self.assertTrue(collectors[index].ended)
            self.assertLessEqual(collectors[index].maxUnconsumed, window)
        self.assertEqual(pair.delivered[Role.SERVER].values, valuesSent[True])
        self.assertEqual(pair.delivered[Role.CLIENT].values, valuesSent[False])
        for engine in (pair.client, pair.server):
            self.assertEqual(engine.outgoing + engine.incoming, ())
        self.assertEqual(pair.clientObserver.failed + pair.serverObserver.failed, [])


@implementer(IStreamSource)
class Repeated:
    """
    A long stream made of one block, over and over: no memory of its own.
    """

    def __init__(self, block: bytes, size: int) -> None:
        self._block = block
        self._left = size
        self.total = 0

    def read(self, maximum: int) -> bytes:
        count = min(maximum, len(self._block), self._left)
        self._left -= count
        self.total += count
        return self._block if count == len(self._block) else self._block[:count]


class Discarder(Collector):
    """
    Consumes everything at once, keeping none of it.
    """

    def dataReceived(self, data: bytes) -> None:
        self.unconsumed += len(data)
        self.maxUnconsumed = max(self.maxUnconsumed, self.unconsumed)
        self.consumeAll()


class MemoryTests(SynchronousTestCase):
    """
    A long stream through the engines costs constant memory.
    """

    def test_constantMemory(self) -> None:
        """
        128 MiB through the fake session: the memory the engines allocate
        beyond what they started with stays under 16 MiB (the window, the
        session's queue and a few chunks), and the sender reads no more than
        it sent.
        """
        size = 128 * 1024 * 1024
        chunk = 256 * 1024

        def offered(stream: IncomingStream) -> None:
            stream.accept(Discarder(stream))

        pair = Pair(serverObserver=EngineObserver(onOffered=offered))
        pair.keepRecords = False
        source = Repeated(bytes(range(256)) * (chunk // 256), size)
        sent = Sent()
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            stream = pair.client.openStream(source, sent, size=size)
            pair.pump(limit=10_000_000)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        self.assertIsNotNone(sent.confirmed)
        self.assertEqual(stream.sent, size)
        self.assertEqual(source.total, size)
        self.assertLess(peak - before, 16 * 1024 * 1024)
        self.assertLessEqual(pair.clientHost.maxQueued, pair.clientHost.highWater + chunk + 64)

    def test_pausedReceiverHoldsItsWindow(self) -> None:
        """
        A receiver that does not consume holds its window of the stream,
        and the sender reads no more than that.
        """
        pair = Pair(serverObserver=EngineObserver(consume=False), serverOptions={"window": 100_000})
        source = Repeated(bytes(1000), 10_000_000)
        stream = pair.client.openStream(source, Sent(), size=10_000_000)
        pair.pump()
        self.assertEqual(source.total, 100_000)
        self.assertEqual(stream.sent, 100_000)
        self.assertEqual(pair.serverObserver.collectors[stream.streamID].unconsumed, 100_000)


records = st.one_of(
    st.builds(
        lambda i, m, s, r: (STREAM_OPEN, openBody(i, m, s, r)),
        st.integers(1, 9),
        st.sampled_from([b"\xc0", b"\x01", b"\xc1", b"\x92\x01"]),
        st.none() | st.integers(0, 100),
        st.booleans(),
    ),
    st.builds(
        lambda i, w, o: (
            STREAM_ACCEPT,
            acceptBody(i, w, o, bytes(32) if o else None),
        ),
        st.integers(1, 9),
        st.integers(0, 200),
        st.integers(0, 5),
    ),
    st.builds(
        lambda i, o, p: (STREAM_DATA, dataHeader(i, o) + p),
        st.integers(1, 9),
        st.integers(0, 100),
        st.binary(min_size=1, max_size=50),
    ),
    st.builds(
        lambda t, i, s, d: (t, endBody(i, s, d)),
        st.sampled_from([STREAM_END, STREAM_DONE]),
        st.integers(1, 9),
        st.integers(0, 100),
        st.sampled_from([bytes(32), sha256(b""), sha256(b"\x00")]),
    ),
    st.builds(
        lambda i, n: (STREAM_WINDOW, windowBody(i, n)), st.integers(1, 9), st.integers(1, 2**31 - 1)
    ),
    st.builds(
        lambda i, c, r: (STREAM_ABORT, abortBody(i, c, r)),
        st.integers(1, 9),
        st.sampled_from(list(AbortCode)),
        st.text(max_size=20),
    ),
    st.tuples(st.integers(0x20, 0x27), st.binary(max_size=60)),
)


class FuzzTests(SynchronousTestCase):
    """
    Garbage is refused with a protocol error, never anything else.
    """

    @settings(max_examples=500, deadline=None)
    @given(st.integers(0, 255), st.binary(max_size=100))
    def test_parser(self, recordType: int, body: bytes) -> None:
        """
        L{parseRecord} returns a record or raises L{StreamProtocolError};
        a record it returns serializes back to the same body (but an ABORT
        of an unknown code, read as FAILED).
        """
        try:
            record = parseRecord(recordType, body)
        except StreamProtocolError:
            return
        again = recordBody(record)
        if recordType == STREAM_ABORT and body[4] not in list(AbortCode):
            self.assertEqual(again[1][5:], body[5:])
        else:
            self.assertEqual(again, (recordType, body))

    @settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(st.lists(records, max_size=30), st.booleans(), st.booleans())
    def test_engine(self, sequence: list[tuple[int, bytes]], server: bool, accept: bool) -> None:
        """
        An engine fed any sequence of streams records, well-formed or not,
        handles each or raises a L{RemoteProtocolError} (the session then
        fails, so the sequence stops there); it never raises anything else.
        Its streams stay within its limits.
        """
        pair = Pair()
        host = FakeHost(Role.SERVER if server else Role.CLIENT, pair.clock)
        engine = StreamsEngine(
            host, EngineObserver(accept=accept, consume=False), maxStreams=2, window=100
        )
        engine.sessionOpened()
        engine.openStream(BytesSource(b"x" * 300), Sent(), size=300)
        engine.openStream(BytesSource(b"y" * 5), Sent(), resume=True)
        for recordType, body in sequence:
            try:
                engine.recordReceived(recordType, body)
            except RemoteProtocolError:
                break
            self.assertLessEqual(len(engine.incoming), 2 + 64)
        pair.clock.advance(1000)
        engine.timeReached(pair.clock.seconds())
        engine.sessionClosed(ConnectionError("end"))
        self.assertEqual(engine.outgoing + engine.incoming, ())
