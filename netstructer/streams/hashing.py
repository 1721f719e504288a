# -*- test-case-name: tests.test_streams_hashing -*-
"""
How a stream's SHA-256 is computed: what the engine asks of a hash
(L{StreamHash}), and the factory it makes one with (L{HashFactory}).

The engine feeds each stream's hash every byte sent or received, in order,
and asks for the digest once at the END.  By default it hashes inline
(L{inlineSha256}), which keeps the engine free of threads; an adapter that
has a core to spare passes a factory that hashes elsewhere (the Twisted
protocol and the blocking link use L{netstructer._sha256}'s worker
thread), so that hashing a stream runs beside sealing and sending it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from hashlib import _Hash

__all__ = ["HashFactory", "StreamHash", "inlineSha256"]


class StreamHash(Protocol):
    """
    A SHA-256 being computed over a stream's bytes.
    """

    def update(self, data: bytes | memoryview, /) -> None:
        """
        Feed it the stream's next bytes.  A hash that reads them later
        (elsewhere) keeps them as they are now: it copies what could
        change (a C{bytearray}, a view of one).
        """

    def digest(self) -> bytes:
        """
        @return: The SHA-256 of every byte fed so far.
        """


HashFactory = Callable[["_Hash | None"], StreamHash]
"""
Makes a stream's hash: given L{None}, a new SHA-256; given a C{hashlib}
SHA-256 object already fed a stream's first bytes (to resume it), a hash
that goes on from a copy of it.
"""


def inlineSha256(prefix: _Hash | None = None) -> StreamHash:
    """
    The default L{HashFactory}: C{hashlib}'s SHA-256, computed at once in
    the caller's thread.
    """
    return hashlib.sha256() if prefix is None else prefix.copy()
