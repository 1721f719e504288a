# -*- test-case-name: tests.test_framing -*-
"""
Splitting a byte stream into NetStructer frames, with no I/O.

Every NetStructer frame is a 4-byte big-endian length followed by that many
bytes of payload (C{docs/protocol.rst}, section 2).  A L{FrameReader} is fed
the bytes as they arrive, in chunks of any size, and hands back the payloads,
in order, as views of its own buffers::

    reader = FrameReader(maxFrame=HANDSHAKE_MAX_FRAME)

    # The Twisted adapter: chunks from dataReceived.
    reader.feed(data)
    while (frame := reader.nextFrame()) is not None:
        channel.receiveFrame(frame)

    # The blocking adapter: the socket writes straight into the reader.
    received = sock.recv_into(reader.receiveBuffer())
    reader.received(received)
    while (frame := reader.nextFrame()) is not None:
        channel.receiveFrame(frame)

Memory: a small frame (under L{FrameReader.largeFrame} bytes) is parsed in
place from one compacting buffer, or handed out as a view of the chunk it
arrived in when it lies wholly within one.  A large frame is received into a
buffer of its announced length, kept and reused for the next large frame
that fits in it, so a stream of large values is copied once, into the same
memory each time, and never grows a buffer by concatenation nor shifts one
by deleting its head.  A length over L{FrameReader.maxFrame} raises
L{FrameTooLarge} as soon as the prefix is read, before any of that frame is
copied.

This module imports nothing but the standard library and
L{netstructer.errors}.
"""

from __future__ import annotations

import struct
from collections import deque
from typing import Final

from netstructer.errors import FrameTooLarge

__all__ = ["PREFIX_SIZE", "FrameReader"]

_PREFIX: Final = struct.Struct("!I")

PREFIX_SIZE: Final = _PREFIX.size
"""The size of a frame's length prefix: 4 bytes."""

_SMALL_BUFFER: Final = 64 * 1024
"""The size the small-frame buffer shrinks back to (it is made when first
needed, of the size needed)."""

_MIN_RECEIVE: Final = 16 * 1024
"""L{FrameReader.receiveBuffer} offers at least this much room."""

_NO_BUFFER: Final = memoryview(bytearray())
"""No buffer: one empty view shared by every connection that holds none."""


class FrameReader:
    """
    A sans-IO splitter of length-prefixed frames.

    Lifetime of what it hands out: a view returned by L{nextFrame} holds the
    frame only until the next call to L{feed}, L{nextFrame},
    L{receiveBuffer} or L{releaseBuffers}, which may overwrite or move the
    memory it shows: consume (decrypt, decode, copy) the frame before then.
    A view returned by L{receiveBuffer} is for writing into at once, then
    L{received}.

    Use either L{feed} or L{receiveBuffer} and L{received} on one reader,
    not both at once (mixing them is correct, but costs copies).

    @ivar largeFrame: Frames of at least this many bytes are received into a
        buffer of their own (see the module docstring).
    """

    def __init__(self, maxFrame: int, largeFrame: int = 256 * 1024) -> None:
        """
        @param maxFrame: The largest frame payload accepted, in bytes (see
            L{maxFrame}).
        @param largeFrame: See L{largeFrame}; at least 1.
        @raise ValueError: A negative C{maxFrame} or a C{largeFrame} under 1.
        """
        if largeFrame < 1:
            raise ValueError(f"largeFrame must be at least 1, not {largeFrame}")
        if maxFrame < 0:
            raise ValueError(f"maxFrame must not be negative, not {maxFrame}")
        self._maxFrame = maxFrame
        self.largeFrame = largeFrame
        # Fed chunks not yet parsed, the first from offset _head on.
        self._chunks: deque[bytes] = deque()
        self._head = 0
        self._queued = 0
        # The small-frame buffer: unparsed bytes at [_start:_end].
        # Made when first needed: a connection whose frames all arrive
        # whole, one read each, never needs it.
        self._small = _NO_BUFFER
        self._start = 0
        self._end = 0
        # The large frame in progress (_largeSize > 0), _largeFilled bytes
        # of it received; the buffer is kept for the next one.
        self._large = _NO_BUFFER
        self._largeSize = 0
        self._largeFilled = 0
        self._error: FrameTooLarge | None = None

    @property
    def maxFrame(self) -> int:
        """
        The largest frame payload accepted, in bytes: a prefix announcing
        more raises L{FrameTooLarge}.  Set it small before the handshake and
        larger after it: the new limit applies to every prefix read after,
        including those of frames already fed but not yet returned.
        """
        return self._maxFrame

    @maxFrame.setter
    def maxFrame(self, limit: int) -> None:
        """
        @raise ValueError: The limit is negative.
        """
        if limit < 0:
            raise ValueError(f"maxFrame must not be negative, not {limit}")
        self._maxFrame = limit

    @property
    def pending(self) -> int:
        """
        The bytes received and not yet handed out as part of a frame
        (length prefixes included).
        """
        large = self._largeFilled if self._largeSize else 0
        return self._queued + (self._end - self._start) + large

    @property
    def wanted(self) -> int:
        """
        The bytes that must still arrive before the frame in progress is
        complete, when L{nextFrame} has returned L{None}: the rest of the
        frame if its prefix has arrived, else the rest of the prefix.  0
        when a complete frame is buffered.
        """
        if self._largeSize:
            return max(0, self._largeSize - self._largeFilled - self._queued)
        buffered = self._end - self._start + self._queued
        if buffered < PREFIX_SIZE:
            return PREFIX_SIZE - buffered
        if self._end - self._start >= PREFIX_SIZE:
            (length,) = _PREFIX.unpack_from(self._small, self._start)
        else:
            (length,) = _PREFIX.unpack(self._peekPrefix())
        wanted: int = max(0, PREFIX_SIZE + length - buffered)
        return wanted

    def feed(self, data: bytes) -> None:
        """
        Add received bytes.  They are kept as they are (not copied) until
        L{nextFrame} parses them; a C{bytearray} or C{memoryview} is copied
        first, since its owner may change it.

        @param data: The next bytes of the stream, any number of them.
        @raise FrameTooLarge: An earlier L{nextFrame} raised it: the stream
            cannot be read further.
        """
        self._checkFailed()
        if not data:
            return
        if type(data) is not bytes:
            data = bytes(data)
        self._chunks.append(data)
        self._queued += len(data)

    def nextFrame(self) -> memoryview | None:
        """
        Take the next complete frame.

        @return: The frame's payload (without its prefix), valid until the
            next call to this reader (see L{FrameReader}); or L{None} when
            more bytes are needed.
        @raise FrameTooLarge: The next frame's prefix announces more than
            L{maxFrame}; this and every later call raise it again.
        """
        self._checkFailed()
        if self._largeSize:
            return self._fillLarge()
        if self._end == self._start:
            self._start = self._end = 0
            if len(self._small) > max(_SMALL_BUFFER, PREFIX_SIZE + self.largeFrame):
                # Grown past what any small frame needs (by receiveBuffer
                # after feed): made again when next needed.
                self._small = _NO_BUFFER
            if self._queued:
                frame = self._frameFromChunk()
                if frame is not None:
                    return frame
        return self._frameFromSmall()

    def receiveBuffer(self) -> memoryview:
        """
        Where the socket's C{recv_into} should write next: the rest of a
        large frame's own buffer while one is being received, else the free
        space of the small-frame buffer (room for at least the rest of the
        frame in progress, when its length is known).  Then call
        L{received} with the number of bytes written.

        @return: A writable view, at least 1 byte long.
        @raise FrameTooLarge: As for L{feed}.
        """
        self._checkFailed()
        if self._queued:
            self._drainChunks()
        if self._largeFilled < self._largeSize:
            return self._large[self._largeFilled : self._largeSize]
        # No large frame in progress, or one complete and not yet taken:
        # what follows goes to the small buffer.
        buffered = self._end - self._start
        need = PREFIX_SIZE
        if not self._largeSize and buffered >= PREFIX_SIZE:
            (length,) = _PREFIX.unpack_from(self._small, self._start)
            if length < self.largeFrame:
                need = PREFIX_SIZE + length
        self._makeRoom(max(need - buffered, _MIN_RECEIVE), _SMALL_BUFFER)
        return self._small[self._end :]

    def received(self, count: int) -> None:
        """
        Record that C{count} bytes were written into the view L{receiveBuffer}
        returned last.

        @param count: The bytes written, at most the view's length.
        @raise ValueError: C{count} is negative or larger than that view.
        """
        if self._largeSize and self._largeFilled < self._largeSize:
            room = self._largeSize - self._largeFilled
            if not 0 <= count <= room:
                raise ValueError(f"received {count} bytes into a view of {room}")
            self._largeFilled += count
            return
        room = len(self._small) - self._end
        if not 0 <= count <= room:
            raise ValueError(f"received {count} bytes into a view of {room}")
        self._end += count

    def releaseBuffers(self) -> None:
        """
        Drop the large-frame buffer (unless a large frame is in progress)
        and shrink the small-frame buffer back to its first size when it
        holds little, so that an idle connection keeps little memory.
        """
        if not self._largeSize:
            self._large = _NO_BUFFER
        buffered = self._end - self._start
        if not buffered:
            self._small, self._start, self._end = _NO_BUFFER, 0, 0
        elif len(self._small) > _SMALL_BUFFER and buffered <= _SMALL_BUFFER:
            small = memoryview(bytearray(_SMALL_BUFFER))
            small[:buffered] = self._small[self._start : self._end]
            self._small, self._start, self._end = small, 0, buffered

    @property
    def bufferSizes(self) -> tuple[int, int]:
        """
        The sizes of the small-frame and large-frame buffers, in bytes (for
        tests and memory accounting).
        """
        return len(self._small), len(self._large)

    # Internals.

    def _checkFailed(self) -> None:
        if self._error is not None:
            raise self._error

    def _checkLength(self, length: int) -> None:
        if length > self._maxFrame:
            self._error = FrameTooLarge(length, self._maxFrame)
            raise self._error

    def _peekPrefix(self) -> bytes:
        """
        @return: The next 4 bytes of the stream, from the small buffer and
            the chunks, without consuming them (at least 4 must be there).
        """
        parts = [bytes(self._small[self._start : self._end])]
        have = len(parts[0])
        offset = self._head
        for chunk in self._chunks:
            parts.append(chunk[offset : offset + PREFIX_SIZE - have])
            have += len(parts[-1])
            offset = 0
            if have >= PREFIX_SIZE:
                break
        return b"".join(parts)[:PREFIX_SIZE]

    def _frameFromChunk(self) -> memoryview | None:
        """
        With the small buffer empty: hand out the next frame as a view of
        the first chunk when it lies wholly within it, start a large frame
        when its prefix is there, else leave the bytes for L{_frameFromSmall}.
        """
        chunk = self._chunks[0]
        head = self._head
        available = len(chunk) - head
        if available < PREFIX_SIZE:
            return None
        (length,) = _PREFIX.unpack_from(chunk, head)
        self._checkLength(length)
        if length >= self.largeFrame:
            self._consume(PREFIX_SIZE)
            self._startLarge(length)
            return self._fillLarge()
        end = head + PREFIX_SIZE + length
        if end > len(chunk):
            return None
        self._consume(PREFIX_SIZE + length)
        return memoryview(chunk)[head + PREFIX_SIZE : end]

    def _frameFromSmall(self) -> memoryview | None:
        """
        Parse the next frame from the small buffer, moving fed bytes into it
        as the frame needs them.
        """
        buffered = self._end - self._start
        if buffered < PREFIX_SIZE:
            self._pull(PREFIX_SIZE - buffered)
            buffered = self._end - self._start
            if buffered < PREFIX_SIZE:
                return None
        start = self._start
        (length,) = _PREFIX.unpack_from(self._small, start)
        self._checkLength(length)
        if length >= self.largeFrame:
            # Its first bytes came with earlier ones: move them over once.
            self._start += PREFIX_SIZE
            self._startLarge(length)
            have = min(self._end - self._start, length)
            self._large[:have] = self._small[self._start : self._start + have]
            self._largeFilled = have
            self._start += have
            return self._fillLarge()
        size = PREFIX_SIZE + length
        if buffered < size:
            self._pull(size - buffered)
            if self._end - self._start < size:
                return None
            start = self._start
        self._start = start + size
        return self._small[start + PREFIX_SIZE : start + size]

    def _pull(self, count: int) -> None:
        """
        Move up to C{count} fed bytes into the small buffer, making room.
        """
        count = min(count, self._queued)
        if not count:
            return
        self._makeRoom(count, 0)
        while count:
            chunk = self._chunks[0]
            head = self._head
            take = min(count, len(chunk) - head)
            self._small[self._end : self._end + take] = memoryview(chunk)[head : head + take]
            self._end += take
            count -= take
            self._consume(take)

    def _makeRoom(self, need: int, spare: int) -> None:
        """
        Make C{need} bytes of free space after the buffered ones (and
        C{spare} more if that costs nothing), compacting the small buffer,
        or replacing it with a larger one.
        """
        small = self._small
        buffered = self._end - self._start
        if len(small) - self._end >= need:
            return
        if len(small) - buffered >= need:
            small[:buffered] = small[self._start : self._end]
        else:
            size = max(buffered + need, min(buffered + need + spare, 2 * len(small)))
            grown = self._small = memoryview(bytearray(size))
            grown[:buffered] = small[self._start : self._end]
        self._start, self._end = 0, buffered

    def _consume(self, count: int) -> None:
        """
        Advance past C{count} fed bytes, dropping chunks used up.
        """
        self._queued -= count
        head = self._head + count
        chunks = self._chunks
        while chunks and head >= len(chunks[0]):
            head -= len(chunks.popleft())
        self._head = head

    def _startLarge(self, length: int) -> None:
        """
        Begin a large frame of C{length} bytes, reusing the large buffer if
        it is big enough.
        """
        if len(self._large) < length:
            # Dropped first, so that the old and new never coexist here.
            self._large = _NO_BUFFER
            self._large = memoryview(bytearray(length))
        self._largeSize = length
        self._largeFilled = 0

    def _copyIntoLarge(self) -> None:
        """
        Move fed bytes into the large frame in progress, up to its end.
        """
        size = self._largeSize
        large = self._large
        while self._largeFilled < size and self._queued:
            chunk = self._chunks[0]
            head = self._head
            filled = self._largeFilled
            take = min(size - filled, len(chunk) - head)
            large[filled : filled + take] = memoryview(chunk)[head : head + take]
            self._largeFilled = filled + take
            self._consume(take)

    def _fillLarge(self) -> memoryview | None:
        """
        Move fed bytes into the large frame; hand it out once complete.
        """
        self._copyIntoLarge()
        size = self._largeSize
        if self._largeFilled < size:
            return None
        self._largeSize = self._largeFilled = 0
        return self._large[:size]

    def _drainChunks(self) -> None:
        """
        Move every fed byte into the buffers, for L{receiveBuffer}.
        """
        if self._largeSize:
            self._copyIntoLarge()
        if self._queued:
            self._pull(self._queued)
