# -*- test-case-name: tests.test_blocking_streams -*-
"""
L{ChunkReader}: reading a stream that arrives in chunks as a file is read
(C{read(n)}) or as an iterator of its chunks; shared by the stream readers
of the blocking link and of the blocking server's sessions.
"""

from __future__ import annotations

from collections.abc import Iterator

__all__ = ["ChunkReader"]


class ChunkReader:
    """
    C{read} and iteration over a stream's chunks, given L{_next}.  A part
    of a chunk that a C{read} did not take is kept for the next one.
    """

    _rest = b""

    def _next(self) -> bytes:
        """
        The next chunk, waiting for it; C{b""} once the stream is over.
        """
        raise NotImplementedError()

    def _ready(self) -> bool:
        """
        Whether a chunk is here already, so that a C{read} that has bytes
        may take it without waiting.
        """
        return False

    def read(self, n: int = -1) -> bytes:
        """
        Read up to C{n} bytes (all that is left for a negative C{n}, held in
        memory), waiting only for the first of them.

        @return: The bytes; C{b""} once the stream is over.
        @raise StreamError: It failed.
        """
        if n < 0:
            return b"".join(iter(self))
        parts: list[bytes] = []
        count = 0
        while count < n:
            if self._rest:
                chunk, self._rest = self._rest, b""
            elif count and not self._ready():
                break
            else:
                chunk = self._next()
                if not chunk:
                    break
            if len(chunk) > n - count:
                chunk, self._rest = chunk[: n - count], chunk[n - count :]
            parts.append(chunk)
            count += len(chunk)
        return b"".join(parts)

    def __iter__(self) -> Iterator[bytes]:
        """
        Its chunks as they arrive.
        """
        if self._rest:
            rest, self._rest = self._rest, b""
            yield rest
        while chunk := self._next():
            yield chunk
