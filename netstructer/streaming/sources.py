# -*- test-case-name: tests.test_streaming -*-
"""
What L{BridgeProtocol.sendStream<netstructer.protocol.BridgeProtocol.sendStream>}
sends, made into stream sources (L{IStreamSource
<netstructer.streams.interfaces.IStreamSource>}) that never block the
reactor:

    - a path or a file object: L{ThreadedFileSource}, which reads ahead in
      chunks of 1 MiB in the disk threads (L{netstructer.streaming.disk}),
      at most 4 MiB ahead of what the stream sent;
    - a producer: an C{IBodyProducer}-style object (C{startProducing
      (consumer)} returning a Deferred that fires at its end, C{length},
      C{pauseProducing}, C{resumeProducing}, C{stopProducing}), which is
      paused while 1 MiB of it waits; or one that registers itself with
      the consumer it is given as a pull producer (C{streaming=False}),
      asked for a chunk each time the stream wants one;
      L{ProducerSource};
    - an async iterable of bytes, iterated while less than 1 MiB of it
      waits: L{AsyncIterableSource};
    - an iterable of bytes, iterated in the reactor's thread as the stream
      takes its chunks (it must not block), and bytes in memory.

Each is a L{Feed}: the source, its size if known, what to do to resume it
at an offset, and how to stop it.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import AsyncIterable, Iterable
from typing import TYPE_CHECKING, Any, BinaryIO

from twisted.internet import defer
from twisted.internet.interfaces import IConsumer, IDelayedCall, IPushProducer, IReactorTime
from twisted.python.failure import Failure
from zope.interface import implementer

from netstructer.streaming.disk import IDiskIO, SerialDiskIO
from netstructer.streams.files import FileSource
from netstructer.streams.interfaces import IStreamSource
from netstructer.streams.outgoing import OutgoingStream
from netstructer.streams.sources import BytesSource, IterableSource, PushSource
from netstructer.streams.wire import AbortCode

if TYPE_CHECKING:
    from hashlib import _Hash

__all__ = [
    "READ_AHEAD",
    "READ_SIZE",
    "AsyncIterableSource",
    "Feed",
    "Pace",
    "ProducerSource",
    "ThreadedFileSource",
    "feedFor",
]

READ_SIZE = 1024 * 1024
"""The bytes a file source reads at once, in a disk thread."""

READ_AHEAD = 4 * 1024 * 1024
"""The most bytes a file source holds read and not yet sent."""

PUSH_HIGH_WATER = 1024 * 1024
"""The bytes a producer or an async iterable may have waiting before it is
paused."""


class Pace:
    """
    A rate limit: at most C{rate} bytes a second on average, measured on a
    clock from the first bytes taken (with a burst of at most a tenth of a
    second's worth).

    @ivar clock: The clock.
    @ivar rate: Bytes a second.
    """

    def __init__(self, clock: IReactorTime, rate: float) -> None:
        """
        @raise ValueError: C{rate} is not positive.
        """
        if not rate > 0:
            raise ValueError(f"a rate limit is a positive number of bytes a second, not {rate}")
        self.clock = clock
        self.rate = rate
        self._start: float | None = None
        self._taken = 0

    def allowed(self) -> int:
        """
        @return: How many bytes may be taken now (0 or less: none).
        """
        now = self.clock.seconds()
        if self._start is None:
            self._start = now
        burst = max(self.rate / 10, 1)
        return int(self.rate * (now - self._start) + burst) - self._taken

    def took(self, count: int) -> None:
        """
        C{count} bytes were taken.
        """
        self._taken += count

    def delay(self) -> float:
        """
        @return: Seconds until some bytes may be taken again.
        """
        return max(-self.allowed() / self.rate, 0.0) + 0.01


class Feed:
    """
    The source of one outgoing stream, as the protocol drives it.

    @ivar source: What the stream pulls its bytes from.
    @ivar size: The stream's size, if known.
    @ivar resumable: Whether the stream can resume at an offset (a file).
    """

    size: int | None = None
    resumable = False

    def __init__(self, source: IStreamSource) -> None:
        self.source = source

    def attach(self, stream: OutgoingStream) -> None:
        """
        The stream this feed's source feeds: told when its bytes are ready.
        """

    def resume(self, stream: OutgoingStream, offset: int, sha256: bytes) -> None:
        """
        The receiver holds the stream's first C{offset} bytes already: go
        on from there if they match, else abort (only for a resumable
        feed).
        """
        stream.abort("this source cannot resume", AbortCode.RESUME_MISMATCH)

    def stop(self) -> None:
        """
        The stream ended: stop producing, and release what the feed holds.
        """


@implementer(IStreamSource)
class ThreadedFileSource(Feed):
    """
    A file, read ahead in the disk threads.

    @ivar size: The bytes left in the file from where it was opened, if it
        is a regular file.
    @ivar resumable: True: a file can resume at an offset.
    """

    resumable = True

    def __init__(
        self, file: FileSource, disk: IDiskIO, owned: bool, pace: Pace | None = None
    ) -> None:
        """
        @param file: The file.
        @param disk: Where its reads run.
        @param owned: Whether to close it at the end.
        @param pace: A rate limit, or L{None}.
        """
        super().__init__(self)
        self._file = file
        self._disk = SerialDiskIO(disk)
        self._owned = owned
        self.size = file.size
        self._chunks: deque[memoryview] = deque()
        self._buffered = 0
        self._reading = False
        self._ended = False
        self._stopped = False
        self._error: BaseException | None = None
        self._stream: OutgoingStream | None = None
        self._starved = False
        self._generation = 0
        self._pace = pace
        self._paceCall: IDelayedCall | None = None

    def attach(self, stream: OutgoingStream) -> None:
        self._stream = stream

    def read(self, maximum: int) -> bytes | memoryview | None:
        """
        The next bytes read ahead, at most C{maximum} (a view of a chunk, not
        a copy); C{b""} at the end; L{None} until a read completes.

        @raise Exception: What reading the file raised.
        """
        chunks = self._chunks
        if not chunks:
            # A read may complete at once (an immediate disk).
            self._readAhead()
            if not chunks:
                if self._error is not None:
                    raise self._error
                if self._ended:
                    return b""
                self._starved = True
                return None
        pace = self._pace
        if pace is not None:
            allowed = pace.allowed()
            if allowed <= 0:
                self._starved = True
                if self._paceCall is None:
                    self._paceCall = pace.clock.callLater(pace.delay(), self._paced)
                return None
            maximum = min(maximum, allowed)
            pace.took(min(maximum, len(chunks[0])))
        chunk = chunks[0]
        if len(chunk) <= maximum:
            chunks.popleft()
        else:
            chunks[0] = chunk[maximum:]
            chunk = chunk[:maximum]
        self._buffered -= len(chunk)
        self._readAhead()
        return chunk

    def _readAhead(self) -> None:
        if self._reading or self._ended or self._stopped or self._buffered >= READ_AHEAD:
            return
        self._reading = True
        generation = self._generation
        self._disk.run(self._file.read, READ_SIZE).addCallbacks(
            self._arrived, self._failed, callbackArgs=(generation,), errbackArgs=(generation,)
        )

    def _arrived(self, data: bytes | None, generation: int) -> None:
        self._reading = False
        if self._stopped or generation != self._generation:
            self._readAhead()
            return
        if data is None:
            # A non-blocking file with nothing yet: try again later.
            return
        if data:
            self._chunks.append(memoryview(data))
            self._buffered += len(data)
        else:
            self._ended = True
        self._wake()
        self._readAhead()

    def _failed(self, failure: Failure, generation: int) -> None:
        self._reading = False
        if generation == self._generation:
            self._error = _errorOf(failure)
            self._wake()

    def _paced(self) -> None:
        self._paceCall = None
        self._wake()

    def _wake(self) -> None:
        if self._starved and self._stream is not None:
            self._starved = False
            self._stream.sourceReady()

    def resume(self, stream: OutgoingStream, offset: int, sha256: bytes) -> None:
        """
        Check, in a disk thread, that the file's first C{offset} bytes hash
        to C{sha256}; go on from there if so, else abort with
        RESUME_MISMATCH.
        """
        self._generation += 1
        self._chunks.clear()
        self._buffered = 0

        def checked(prefix: _Hash | None) -> None:
            if not self._stopped:
                stream.prefixChecked(offset, prefix)

        def failed(failure: Failure) -> None:
            if not self._stopped:
                stream.abort(f"reading the file to resume failed: {_errorOf(failure)}")

        self._disk.run(self._file.verifyPrefix, offset, sha256).addCallbacks(checked, failed)

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        self._chunks.clear()
        if self._paceCall is not None and self._paceCall.active():
            self._paceCall.cancel()
        self._paceCall = None
        if self._owned:
            self._disk.run(self._file.close)


@implementer(IConsumer, IStreamSource)
class ProducerSource(Feed):
    """
    A producer's bytes, through a L{PushSource}: the consumer the producer
    writes to, pausing it (a push producer) while its bytes wait, or asking
    it for each chunk (a pull producer).

    @ivar size: The producer's C{length}, if it is a number of bytes.
    """

    def __init__(self, producer: Any) -> None:
        self._push = PushSource(PUSH_HIGH_WATER, self._drained)
        super().__init__(self)
        self._body = producer
        self._producer: Any = None
        self._streaming = True
        self._paused = False
        self._stopped = False
        length = getattr(producer, "length", None)
        self.size = length if isinstance(length, int) and length >= 0 else None

    def attach(self, stream: OutgoingStream) -> None:
        self._push.attach(stream)
        try:
            started = self._body.startProducing(self)
        except Exception as e:  # noqa: BLE001 -- the producer's failure ends its stream
            self._push.fail(e)
            return
        if isinstance(started, defer.Deferred):
            started.addCallbacks(lambda _: self._push.finish(), self._producerFailed)

    def _producerFailed(self, failure: Failure) -> None:
        if not self._stopped:
            self._push.fail(_errorOf(failure))

    def read(self, maximum: int) -> bytes | None:
        """
        The next bytes written, asking a pull producer for more when none
        are.
        """
        data = self._push.read(maximum)
        if data is None and not self._streaming and self._producer is not None:
            # A pull producer writes its next chunk now, or later.
            self._producer.resumeProducing()
            data = self._push.read(maximum)
        return data

    # IConsumer.

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        """
        The producer that writes to this consumer.
        """
        self._producer = producer
        self._streaming = bool(streaming)

    def unregisterProducer(self) -> None:
        """
        It stopped writing.
        """
        self._producer = None

    def write(self, data: bytes) -> None:
        """
        The producer's next bytes: buffered; a push producer is paused while
        they fill the buffer.
        """
        if self._stopped:
            return
        self._push.write(data)
        if self._push.full and not self._paused:
            self._paused = True
            self._pausable().pauseProducing()

    def _pausable(self) -> Any:
        return self._producer if self._producer is not None else self._body

    def _drained(self) -> None:
        if self._paused and not self._stopped:
            self._paused = False
            self._pausable().resumeProducing()

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        if not self._push.finished:
            try:
                self._pausable().stopProducing()
            except Exception:  # noqa: BLE001, S110 -- a producer that fails to stop is done anyway
                pass


class AsyncIterableSource(Feed):
    """
    An async iterable's bytes, through a L{PushSource}, iterated while
    under its high-water mark.
    """

    def __init__(self, chunks: AsyncIterable[bytes]) -> None:
        self._push = PushSource(PUSH_HIGH_WATER, self._drained)
        super().__init__(self._push)
        self._chunks = chunks
        self._resumed: defer.Deferred[None] | None = None
        self._run: defer.Deferred[None] | None = None

    def attach(self, stream: OutgoingStream) -> None:
        self._push.attach(stream)
        self._run = defer.ensureDeferred(self._iterate())
        self._run.addErrback(self._iterationFailed)

    async def _iterate(self) -> None:
        push = self._push
        async for chunk in self._chunks:
            if not isinstance(chunk, bytes | bytearray | memoryview):
                raise TypeError(f"a stream's chunks are bytes, not {type(chunk).__name__}")
            push.write(bytes(chunk))
            if push.full:
                self._resumed = defer.Deferred()
                await self._resumed
        push.finish()

    def _iterationFailed(self, failure: Failure) -> None:
        if not failure.check(defer.CancelledError):
            self._push.fail(_errorOf(failure))

    def _drained(self) -> None:
        resumed, self._resumed = self._resumed, None
        if resumed is not None:
            resumed.callback(None)

    def stop(self) -> None:
        run, self._run = self._run, None
        if run is not None and not run.called:
            run.cancel()


def _errorOf(failure: Failure) -> Exception:
    """
    The exception a failure holds, as an C{Exception}.
    """
    error = failure.value
    return error if isinstance(error, Exception) else Exception(repr(error))


def _isPath(source: object) -> bool:
    return isinstance(source, str | os.PathLike)


def feedFor(source: object, disk: IDiskIO, pace: Pace | None = None) -> Feed | defer.Deferred[Feed]:
    """
    The feed of what C{sendStream} was given.

    @param source: A path, a binary file object, a producer, an async
        iterable or an iterable of bytes, or bytes.
    @param disk: Where file work runs.
    @param pace: A rate limit for a file, or L{None}.
    @return: The feed; or, for a path, a Deferred firing with it once the
        file is open (in a disk thread).
    @raise TypeError: C{source} is none of these (text, say).
    """
    if _isPath(source):
        return disk.run(FileSource, source).addCallback(
            lambda file: ThreadedFileSource(file, disk, owned=True, pace=pace)
        )
    if isinstance(source, bytes | bytearray | memoryview):
        data = BytesSource(source)
        feed = Feed(data)
        feed.size = data.size
        return feed
    if callable(getattr(source, "read", None)):
        return ThreadedFileSource(FileSource(_binary(source)), disk, owned=False, pace=pace)
    if hasattr(source, "startProducing"):
        return ProducerSource(source)
    if IPushProducer.providedBy(source) and not hasattr(source, "startProducing"):
        raise TypeError(
            "a push producer to stream needs startProducing(consumer) (as an IBodyProducer "
            "has), returning a Deferred that fires at its end"
        )
    if isinstance(source, AsyncIterable):
        return AsyncIterableSource(source)
    if isinstance(source, Iterable) and not isinstance(source, str):
        return Feed(IterableSource(source))
    raise TypeError(
        f"cannot stream a {type(source).__name__}: give a path, a binary file, a producer "
        "(IBodyProducer), an iterable or async iterable of bytes, or bytes"
    )


def _binary(file: Any) -> BinaryIO:
    mode = getattr(file, "mode", "b")
    if isinstance(mode, str) and "b" not in mode:
        raise TypeError("a file to stream is opened in binary mode ('rb'), not text mode")
    return file  # type: ignore[no-any-return]
