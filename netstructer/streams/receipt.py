# -*- test-case-name: tests.test_streams_engine -*-
"""
What a stream's sender learns when the receiver confirmed it, and what its
receiver learns when it kept it: L{StreamReceipt}.  Both adapters return
it (the Twisted protocol's Deferreds, the blocking link's calls).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

__all__ = ["StreamReceipt"]


@dataclass(frozen=True)
class StreamReceipt:
    """
    A stream that arrived whole and was kept.

    @ivar size: Its size in bytes, as the receiver counted it.
    @ivar sha256: Its SHA-256, as the receiver computed it (the sender
        checked it is the one it sent).
    @ivar offset: Where the transfer started: the size of the part the
        receiver held already when a transfer resumed, else 0.
    @ivar path: Where the receiver saved it, on the receiving side when it
        saved it to a file; else L{None}.
    """

    size: int
    sha256: bytes
    offset: int = 0
    path: Path | None = None

    @property
    def hexdigest(self) -> str:
        """
        The SHA-256 in hexadecimal, as C{sha256sum} prints it.
        """
        return self.sha256.hex()

    def __str__(self) -> str:
        resumed = f", resumed at {self.offset}" if self.offset else ""
        return f"{self.size} bytes, SHA-256 {self.hexdigest}{resumed}"
