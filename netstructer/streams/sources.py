# -*- test-case-name: tests.test_streams_sources -*-
"""
Sources of outgoing streams (L{IStreamSource}) that do no I/O: over bytes
in memory (L{BytesSource}), over an iterable of chunks (L{IterableSource}),
and over chunks pushed by an adapter (L{PushSource}: a Twisted producer, an
async iterable, a thread reading a file), which says when its buffer is full
so that the adapter pauses whatever pushes into it.

Files are in L{netstructer.streams.files}.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator

from zope.interface import implementer

from netstructer.streams.interfaces import IStreamSource
from netstructer.streams.outgoing import OutgoingStream

__all__ = ["BytesSource", "IterableSource", "PushSource"]


@implementer(IStreamSource)
class BytesSource:
    """
    The bytes of a stream held in memory.

    @ivar size: How many there are.
    """

    def __init__(self, data: bytes | bytearray | memoryview) -> None:
        self._view = memoryview(data).cast("B")
        self.size = len(self._view)
        self._offset = 0

    def read(self, maximum: int) -> bytes:
        """
        @return: The next bytes, at most C{maximum}; C{b""} at the end.
        """
        start = self._offset
        self._offset = min(start + maximum, self.size)
        return bytes(self._view[start : self._offset])

    def seek(self, offset: int) -> None:
        """
        Go on from C{offset} (to resume).
        """
        if not 0 <= offset <= self.size:
            raise ValueError(f"offset {offset} is outside {self.size} bytes")
        self._offset = offset


@implementer(IStreamSource)
class IterableSource:
    """
    The bytes of an iterable of chunks, each cut to the size asked for;
    empty chunks are skipped.  The iterable must not block: it is read from
    within the session's work (an adapter pushes a blocking one through a
    L{PushSource} instead).
    """

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks: Iterator[bytes] = iter(chunks)
        self._rest = b""

    def read(self, maximum: int) -> bytes:
        """
        @return: The next bytes, at most C{maximum}; C{b""} at the end.
        @raise TypeError: The iterable gave something that is not bytes.
        """
        while not self._rest:
            chunk = next(self._chunks, None)
            if chunk is None:
                return b""
            if not isinstance(chunk, bytes | bytearray | memoryview):
                raise TypeError(f"a stream's chunks are bytes, not {type(chunk).__name__}")
            self._rest = bytes(chunk)
        data, self._rest = self._rest[:maximum], self._rest[maximum:]
        return data


@implementer(IStreamSource)
class PushSource:
    """
    Bytes pushed by an adapter, buffered until the stream takes them.

    The adapter calls L{write} with each chunk and L{finish} at the end (or
    L{fail}); it stops pushing while L{full} and goes on when told by
    C{onDrained}.  The stream is told when bytes arrive after it found the
    buffer empty.

    @ivar buffered: The bytes buffered.
    @ivar highWater: The bytes buffered at which L{full} becomes true.
    """

    def __init__(
        self,
        highWater: int = 1024 * 1024,
        onDrained: Callable[[], None] | None = None,
    ) -> None:
        """
        @param highWater: The bytes buffered at which L{full} becomes true.
        @param onDrained: Called when the buffer falls under half of
            C{highWater} after having been full: the adapter resumes its
            producer.
        """
        self.highWater = highWater
        self._onDrained = onDrained
        self._chunks: deque[bytes] = deque()
        self.buffered = 0
        self._finished = False
        self._failure: Exception | None = None
        self._stream: OutgoingStream | None = None
        self._starved = False
        self._wasFull = False

    def attach(self, stream: OutgoingStream) -> None:
        """
        The stream this source feeds: told when bytes arrive after it found
        none.
        """
        self._stream = stream

    @property
    def finished(self) -> bool:
        """
        Whether L{finish} (or L{fail}) was called.
        """
        return self._finished

    @property
    def full(self) -> bool:
        """
        Whether the adapter should stop pushing.
        """
        return self.buffered >= self.highWater

    def write(self, data: bytes) -> None:
        """
        Buffer the stream's next bytes.

        @raise ValueError: After L{finish} or L{fail}.
        """
        if self._finished:
            raise ValueError("cannot write to a finished stream source")
        if data:
            self._chunks.append(bytes(data))
            self.buffered += len(data)
            self._wasFull = self._wasFull or self.full
            self._wake()

    def finish(self) -> None:
        """
        The stream's bytes are all written.
        """
        self._finished = True
        self._wake()

    def fail(self, error: Exception) -> None:
        """
        Whatever pushed the bytes failed: the stream is aborted (code
        FAILED) with C{error} once it reads past what was buffered.
        """
        self._failure = error
        self.finish()

    def _wake(self) -> None:
        if self._starved and self._stream is not None:
            self._starved = False
            self._stream.sourceReady()

    def read(self, maximum: int) -> bytes | None:
        """
        @return: The next buffered bytes, at most C{maximum}; C{b""} at the
            end; L{None} if none are buffered yet.
        @raise Exception: What L{fail} was given, once the buffer is empty.
        """
        if not self._chunks:
            if self._failure is not None:
                raise self._failure
            if self._finished:
                return b""
            self._starved = True
            return None
        parts = []
        count = 0
        while self._chunks and count < maximum:
            chunk = self._chunks.popleft()
            if count + len(chunk) > maximum:
                cut = maximum - count
                self._chunks.appendleft(chunk[cut:])
                chunk = chunk[:cut]
            parts.append(chunk)
            count += len(chunk)
        self.buffered -= count
        if self._wasFull and self.buffered <= self.highWater // 2:
            self._wasFull = False
            if self._onDrained is not None:
                self._onDrained()
        return parts[0] if len(parts) == 1 else b"".join(parts)
