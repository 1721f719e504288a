# -*- test-case-name: tests.test_streams_engine -*-
"""
Two streams engines connected in memory, for tests: each has a fake
session host (L{FakeHost}) whose records go to the other engine when the
test delivers them, with a send queue whose high- and low-water marks (and
a test's own say) set C{writable}, a shared clock, and values (records of
another type) travelling through the same queue.
"""

from __future__ import annotations

import hashlib
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from twisted.internet.task import Clock
from zope.interface import implementer

from netstructer.channel import EXTENSION_RECORD_RANGES, Role
from netstructer.errors import BufferDataError, ChannelClosedError, RemoteProtocolError
from netstructer.session.capability import ISessionHost
from netstructer.streams import (
    IIncomingStreamObserver,
    IncomingStream,
    IOutgoingStreamObserver,
    IStreamsObserver,
    IStreamSource,
    OutgoingStream,
    StreamsEngine,
)

VALUE = 0x01


@implementer(ISessionHost)
class FakeHost:
    """
    A session host with no session: records are queued in L{outbox} for the
    test to deliver.

    @ivar outbox: The records sent and not delivered yet, oldest first, as
        C{(type, body)}; a value is C{(VALUE, value)}.
    @ivar queued: The bytes of record bodies in the outbox.
    @ivar blocked: Set by a test: the host is not writable, whatever its
        queue holds.
    @ivar wakeTime: The time the engine asked to be woken at.
    @ivar failures: What the engine failed the session with.
    @ivar maxQueued: The most bytes the outbox ever held.
    @ivar partsSent: How many records were sent in parts.
    """

    def __init__(
        self,
        role: Role,
        clock: Clock,
        peerVersion: int | None = 3,
        maxRecordBody: int | None = 16 * 1024 * 1024,
        highWater: int = 1024 * 1024,
        lowWater: int = 256 * 1024,
    ) -> None:
        self.role = role
        self.peer = f"fake {role.value} peer"
        self.peerVersion = peerVersion
        self.maxRecordBody = maxRecordBody
        self._clock = clock
        self.highWater = highWater
        self.lowWater = lowWater
        self.outbox: deque[tuple[int, object]] = deque()
        self.queued = 0
        self.maxQueued = 0
        self.blocked = False
        self._full = False
        self.closing = False
        self.wakeTime: float | None = None
        self.failures: list[Exception] = []
        self.partsSent = 0
        self.engine: StreamsEngine | None = None

    @property
    def writable(self) -> bool:
        """
        Whether the queue is under its high-water mark (since it last fell
        under its low-water mark) and the test does not block it.
        """
        return not (self.blocked or self._full)

    def now(self) -> float:
        return self._clock.seconds()

    def sendRecord(self, recordType: int, body: bytes) -> None:
        if self.closing:
            raise ChannelClosedError("the fake session is closing")
        if recordType not in EXTENSION_RECORD_RANGES["streams"]:
            raise ValueError(f"not a streams record type: {recordType:#04x}")
        if not isinstance(body, bytes):
            raise TypeError(f"a record body is bytes, not {type(body).__name__}")
        if self.maxRecordBody is not None and len(body) > self.maxRecordBody:
            raise BufferDataError(f"a record of {len(body)} bytes, over {self.maxRecordBody}")
        self._queue(recordType, body, len(body))

    def sendRecordParts(self, recordType: int, parts: Sequence[bytes | memoryview]) -> None:
        """
        As the session does: the parts sealed as one body.
        """
        self.partsSent += 1
        self.sendRecord(recordType, b"".join(parts))

    def sendValue(self, value: object) -> None:
        """
        Queue a value, as the session would, after the records before it.
        """
        self._queue(VALUE, value, 16)

    def _queue(self, recordType: int, body: object, size: int) -> None:
        self.outbox.append((recordType, body))
        self.queued += size
        self.maxQueued = max(self.maxQueued, self.queued)
        if self.queued >= self.highWater:
            self._full = True

    def take(self) -> tuple[int, object]:
        """
        Take the oldest record of the outbox (to deliver it); tell the
        engine the host is writable again if the queue fell under its
        low-water mark.
        """
        recordType, body = self.outbox.popleft()
        self.queued -= len(body) if isinstance(body, bytes) else 16
        if self._full and self.queued <= self.lowWater:
            self._full = False
            if not self.blocked and self.engine is not None and not self.closing:
                self.engine.sessionWritable()
        return recordType, body

    def unblock(self) -> None:
        """
        Stop blocking: the engine is told the host is writable, if it is.
        """
        self.blocked = False
        if self.writable and self.engine is not None:
            self.engine.sessionWritable()

    def wakeAt(self, when: float | None) -> None:
        self.wakeTime = when

    def failSession(self, error: Exception) -> None:
        self.failures.append(error)
        self.closing = True


@implementer(IStreamsObserver)
class EngineObserver:
    """
    Records what an engine tells its adapter; accepts every stream offered
    with a L{Collector} if C{accept} is set.

    @ivar offered: The streams offered, in order.
    @ivar failed: C{(stream, error)} for each stream that failed.
    @ivar collectors: The collector of each stream accepted, by ID.
    """

    def __init__(
        self,
        accept: bool = True,
        consume: bool = True,
        complete: bool = True,
        onOffered: Callable[[IncomingStream], None] | None = None,
    ) -> None:
        self.accept = accept
        self.consume = consume
        self.complete = complete
        self.onOffered = onOffered
        self.offered: list[IncomingStream] = []
        self.failed: list[tuple[object, Exception]] = []
        self.collectors: dict[int, Collector] = {}

    def streamOffered(self, stream: IncomingStream) -> None:  # type: ignore[override]
        self.offered.append(stream)
        if self.onOffered is not None:
            self.onOffered(stream)
        elif self.accept:
            collector = self.collectors[stream.streamID] = Collector(
                stream, consume=self.consume, complete=self.complete
            )
            stream.accept(collector)

    def streamFailed(self, stream: object, error: Exception) -> None:
        self.failed.append((stream, error))


@implementer(IIncomingStreamObserver)
class Collector:
    """
    The consumer of one incoming stream: keeps its bytes; consumes them at
    once (C{consume}) or when told; confirms the stream once it ends
    (C{complete}).

    @ivar chunks: The bytes received, in order.
    @ivar unconsumed: How many of them were not consumed yet.
    @ivar ended: Whether the stream ended whole.
    @ivar error: Why it failed, if it did.
    """

    def __init__(self, stream: IncomingStream, consume: bool = True, complete: bool = True):
        self.stream = stream
        self.consume = consume
        self.complete = complete
        self.chunks: list[bytes] = []
        self.unconsumed = 0
        self.maxUnconsumed = 0
        self.ended = False
        self.error: Exception | None = None

    @property
    def data(self) -> bytes:
        """
        Everything received, joined.
        """
        return b"".join(self.chunks)

    def dataReceived(self, data: bytes) -> None:
        self.chunks.append(data)
        self.unconsumed += len(data)
        self.maxUnconsumed = max(self.maxUnconsumed, self.unconsumed)
        if self.consume:
            self.consumeAll()

    def consumeAll(self) -> None:
        """
        Consume everything received and not consumed yet.
        """
        count, self.unconsumed = self.unconsumed, 0
        self.stream.consumed(count)

    def streamEnded(self) -> None:
        self.ended = True
        if self.complete:
            self.stream.complete()

    def streamFailed(self, error: Exception) -> None:
        self.error = error


@implementer(IOutgoingStreamObserver)
class Sent:
    """
    What the owner of an outgoing stream is told.

    @ivar progress: Each C{sent} reported.
    @ivar confirmed: C{(size, sha256)} once confirmed.
    @ivar error: Why it failed, if it did.
    @ivar offers: C{(offset, sha256)} of each resume offered.
    """

    def __init__(self) -> None:
        self.progress: list[int] = []
        self.confirmed: tuple[int, bytes] | None = None
        self.error: Exception | None = None
        self.offers: list[tuple[int, bytes]] = []
        self.onResume: Callable[[int, bytes], None] | None = None

    def resumeOffered(self, offset: int, sha256: bytes) -> None:
        self.offers.append((offset, sha256))
        if self.onResume is not None:
            self.onResume(offset, sha256)

    def streamProgressed(self, sent: int) -> None:
        self.progress.append(sent)

    def streamConfirmed(self, size: int, sha256: bytes) -> None:
        self.confirmed = (size, sha256)

    def streamFailed(self, error: Exception) -> None:
        self.error = error


@implementer(IStreamSource)
class Pieces:
    """
    A source answering with the pieces it is given, each cut to the size
    asked for; L{None} (not ready) where a piece is L{None}.
    """

    def __init__(self, *pieces: bytes | None) -> None:
        self._pieces: deque[bytes | None] = deque(pieces)
        self.reads = 0

    def read(self, maximum: int) -> bytes | None:
        self.reads += 1
        if not self._pieces:
            return b""
        piece = self._pieces.popleft()
        if piece is None:
            return None
        if len(piece) > maximum:
            self._pieces.appendleft(piece[maximum:])
            piece = piece[:maximum]
        return piece

    def add(self, *pieces: bytes | None) -> None:
        """
        More pieces, after those not read yet.
        """
        self._pieces.extend(pieces)


@dataclass
class Delivered:
    """
    What reached one side: values and streams records, in order.
    """

    values: list[object] = field(default_factory=list)
    records: list[tuple[int, bytes]] = field(default_factory=list)


class Pair:
    """
    A client and a server engine, connected in memory.

    @ivar clock: The time of both sides.
    @ivar clientHost: The client's host; C{client} its engine.
    @ivar serverHost: The server's host; C{server} its engine.
    @ivar errors: The error that failed each side's session, by role.
    """

    def __init__(
        self,
        clientObserver: EngineObserver | None = None,
        serverObserver: EngineObserver | None = None,
        clientOptions: dict[str, object] | None = None,
        serverOptions: dict[str, object] | None = None,
        **hostOptions: object,
    ) -> None:
        self.clock = Clock()
        self.clientHost = FakeHost(Role.CLIENT, self.clock, **hostOptions)  # type: ignore[arg-type]
        self.serverHost = FakeHost(Role.SERVER, self.clock, **hostOptions)  # type: ignore[arg-type]
        self.clientObserver = clientObserver or EngineObserver()
        self.serverObserver = serverObserver or EngineObserver()
        self.client = StreamsEngine(
            self.clientHost,
            self.clientObserver,
            **(clientOptions or {}),  # type: ignore[arg-type]
        )
        self.server = StreamsEngine(
            self.serverHost,
            self.serverObserver,
            **(serverOptions or {}),  # type: ignore[arg-type]
        )
        self.clientHost.engine = self.client
        self.serverHost.engine = self.server
        self.delivered = {Role.CLIENT: Delivered(), Role.SERVER: Delivered()}
        self.errors: dict[Role, Exception] = {}
        self.keepRecords = True
        self.client.sessionOpened()
        self.server.sessionOpened()

    def hosts(self) -> tuple[tuple[FakeHost, FakeHost, StreamsEngine], ...]:
        """
        @return: For each direction: the sending host, the receiving host
            and the receiving engine.
        """
        return (
            (self.clientHost, self.serverHost, self.server),
            (self.serverHost, self.clientHost, self.client),
        )

    def deliverOne(self, sender: FakeHost, receiver: FakeHost, engine: StreamsEngine) -> bool:
        """
        Deliver the oldest record the sender queued.

        @return: Whether there was one.
        """
        if not sender.outbox or receiver.role in self.errors:
            return False
        recordType, body = sender.take()
        delivered = self.delivered[receiver.role]
        if recordType == VALUE:
            delivered.values.append(body)
            return True
        assert isinstance(body, bytes)
        if self.keepRecords:
            delivered.records.append((recordType, body))
        try:
            engine.recordReceived(recordType, body)
        except RemoteProtocolError as e:
            self.errors[receiver.role] = e
        return True

    def pump(self, limit: int = 1_000_000) -> int:
        """
        Deliver records both ways until none is left.

        @return: How many were delivered.
        """
        count = 0
        while count < limit:
            moved = False
            for sender, receiver, engine in self.hosts():
                moved = self.deliverOne(sender, receiver, engine) or moved
            if not moved:
                return count
            count += 1
        raise AssertionError(f"still delivering after {limit} rounds")

    def advance(self, seconds: float) -> None:
        """
        Let time pass, waking each engine whose time came.
        """
        self.clock.advance(seconds)
        for host, engine in ((self.clientHost, self.client), (self.serverHost, self.server)):
            if host.wakeTime is not None and host.wakeTime <= self.clock.seconds():
                host.wakeTime = None
                engine.timeReached(self.clock.seconds())

    def inject(self, engine: StreamsEngine, recordType: int, body: bytes) -> None:
        """
        Hand an engine a record no engine sent (a misbehaving peer's).
        """
        engine.recordReceived(recordType, body)


def sha256(data: bytes) -> bytes:
    """
    @return: The SHA-256 digest of C{data}.
    """
    return hashlib.sha256(data).digest()


__all__ = [
    "VALUE",
    "Collector",
    "EngineObserver",
    "FakeHost",
    "OutgoingStream",
    "Pair",
    "Pieces",
    "Sent",
    "sha256",
]
