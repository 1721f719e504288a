# -*- test-case-name: tests.test_session -*-
"""
The send side of a session that the adapters share: the queue of framed
bytes waiting for the transport, with its high- and low-water marks.
"""

from __future__ import annotations

import struct
from collections import deque
from collections.abc import Callable
from typing import Final

__all__ = ["DEFAULT_HIGH_WATER", "DEFAULT_LOW_WATER", "OutputQueue", "WriteFlow"]

_PREFIX: Final = struct.Struct("!I")

DEFAULT_HIGH_WATER: Final = 4 * 1024 * 1024
"""Bytes queued for the transport at which a session stops being writable:
capabilities that send bulk records (streams) wait, and so do blocking
writers."""

DEFAULT_LOW_WATER: Final = 1024 * 1024
"""Bytes queued at or under which a session that stopped being writable is
writable again."""


class OutputQueue:
    """
    Length-prefixed frames waiting for the transport, in order, as chunks
    (each frame's 4-byte prefix and its payload, never joined here: a large
    payload is not copied).

    The Twisted adapter takes every chunk at once and hands them to its
    transport, whose buffer does the waiting (L{take}); the blocking adapter
    writes what its socket takes and drops it (L{advance}).

    @ivar size: The bytes queued.
    @ivar borrowed: The queued chunk held in the channel's reused buffer, if
        any: a writer that cannot send it at once copies it (see
        L{frameBorrowed}).
    @ivar highWater: The size at which the queue is full.
    @ivar lowWater: The size at or under which a full queue has drained.
    """

    __slots__ = ("_chunks", "borrowed", "highWater", "lowWater", "size")

    def __init__(
        self, highWater: int = DEFAULT_HIGH_WATER, lowWater: int = DEFAULT_LOW_WATER
    ) -> None:
        """
        @param highWater: The size at which the queue is full.
        @param lowWater: The size at or under which it has drained.
        @raise ValueError: The marks are not C{0 <= lowWater < highWater}.
        """
        if not 0 <= lowWater < highWater:
            raise ValueError("the output queue's marks must satisfy 0 <= lowWater < highWater")
        self.highWater = highWater
        self.lowWater = lowWater
        self.size = 0
        self._chunks: deque[bytes | memoryview] = deque()
        self.borrowed: memoryview | None = None

    def __bool__(self) -> bool:
        return bool(self._chunks)

    def __len__(self) -> int:
        """
        @return: The number of chunks queued.
        """
        return len(self._chunks)

    def frame(self, payload: bytes | memoryview) -> None:
        """
        Queue one frame: its length prefix and C{payload}.

        @param payload: The frame payload (kept, not copied).
        """
        self._chunks.append(_PREFIX.pack(len(payload)))
        self._chunks.append(payload)
        self.size += 4 + len(payload)

    def frameBorrowed(self, framed: memoryview) -> None:
        """
        Queue one frame, prefix included, held in a buffer the channel
        reuses (L{Channel.sealBuffer<netstructer.channel.Channel.sealBuffer>}):
        it is valid only until the next such frame is sealed, so whatever
        of it is still queued then is copied first (L{settleBorrowed}).

        @param framed: The prefix and payload, in the channel's buffer.
        """
        self.settleBorrowed()
        self._chunks.append(framed)
        self.borrowed = framed
        self.size += len(framed)

    def settleBorrowed(self) -> None:
        """
        Copy what is still queued of the borrowed frame, so that the
        channel may reuse its buffer.
        """
        borrowed = self.borrowed
        if borrowed is None:
            return
        self.borrowed = None
        chunks = self._chunks
        for index, chunk in enumerate(chunks):
            if chunk is borrowed:
                chunks[index] = bytes(borrowed)
                return

    def take(self) -> deque[bytes | memoryview]:
        """
        Take every queued chunk, emptying the queue.

        @return: The chunks, in order.
        """
        chunks = self._chunks
        self._chunks = deque()
        self.size = 0
        self.borrowed = None
        return chunks

    def chunks(self) -> deque[bytes | memoryview]:
        """
        @return: The queued chunks, in order, left in place (for a writer
            that writes what its socket takes, then calls L{advance}).
        """
        return self._chunks

    def advance(self, sent: int) -> None:
        """
        Drop C{sent} written bytes from the front of the queue.

        @param sent: How many bytes the transport took; at most L{size}.
        """
        self.size -= sent
        chunks = self._chunks
        while sent:
            first = chunks[0]
            length = len(first)
            if sent >= length:
                chunks.popleft()
                sent -= length
                if first is self.borrowed:
                    self.borrowed = None
            else:
                rest = chunks[0] = memoryview(first)[sent:]
                if first is self.borrowed:
                    self.borrowed = rest
                sent = 0

    def coalesceFront(self, limit: int) -> None:
        """
        Join the small chunks at the front of the queue into one of at most
        about C{limit} bytes, for a transport that writes one buffer at a
        time (no C{sendmsg}, as under TLS).

        @param limit: The size under which chunks are joined.
        """
        chunks = self._chunks
        pieces: list[bytes | memoryview] = []
        size = 0
        while chunks and size < limit and len(chunks[0]) <= limit:
            piece = chunks.popleft()
            pieces.append(piece)
            size += len(piece)
        chunks.appendleft(b"".join(pieces))

    @property
    def full(self) -> bool:
        """
        Whether the queue is at or over its high-water mark.
        """
        return self.size >= self.highWater

    @property
    def drained(self) -> bool:
        """
        Whether the queue is at or under its low-water mark.
        """
        return self.size <= self.lowWater

    def clear(self) -> None:
        """
        Drop everything queued (the connection is gone).
        """
        self._chunks.clear()
        self.size = 0
        self.borrowed = None


class WriteFlow:
    """
    Whether a session may write more: its transport has not asked writers
    to pause, and its L{OutputQueue} is under its high-water mark.  Whoever
    found it unwritable is told once it is writable again: the transport
    resumed and the queue is at or under its low-water mark.
    """

    __slots__ = ("_notify", "_out", "_transportPaused", "_wanted")

    def __init__(self, out: OutputQueue, notify: Callable[[], None]) -> None:
        """
        @param out: The session's output queue.
        @param notify: Called when the session is writable again.
        """
        self._out = out
        self._notify = notify
        self._transportPaused = False
        self._wanted = False

    @property
    def writable(self) -> bool:
        """
        Whether the session may write more now.  Asking marks the asker as
        waiting: a C{False} answer is followed by a notification.
        """
        if self._transportPaused or self._out.full:
            self._wanted = True
            return False
        return True

    def transportPaused(self) -> None:
        """
        The transport's buffer is full.
        """
        self._transportPaused = True
        self._wanted = True

    def transportResumed(self) -> None:
        """
        The transport's buffer drained.
        """
        self._transportPaused = False
        self.outputWritten()

    def outputWritten(self) -> None:
        """
        The adapter wrote queued bytes to the transport: notify, if the
        session is writable again and someone was waiting.
        """
        if self._wanted and not self._transportPaused and self._out.drained:
            self._wanted = False
            self._notify()
