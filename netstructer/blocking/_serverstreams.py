# -*- test-case-name: tests.test_blocking_streams -*-
"""
Streams on the sessions of a blocking L{Server<netstructer.blocking.Server>}:
each call runs the Twisted session's (L{netstructer.streaming}) in the
reactor thread and waits for it, as every blocking call of a server does.
L{SessionStreamReader} is a stream a client sends, as a script thread
reads or saves it.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from netstructer.blocking._reading import ChunkReader
from netstructer.streams.receipt import StreamReceipt

if TYPE_CHECKING:
    from netstructer.streaming.received import ReceivedStream

__all__ = ["SessionStreamReader"]


class SessionStreamReader(ChunkReader):
    """
    A stream a client sends to a blocking server's session, not taken yet:
    read it (C{read}, or iterate over its chunks), save it (L{saveTo}), or
    L{refuse} it.  It is read as the script reads it: a slow reader slows
    this stream only.  Once it is over, a read returns C{b""}, and the
    stream is confirmed to its sender.

    @ivar meta: The value its sender described it with.
    @ivar size: Its announced size, or L{None}.
    @ivar streamID: Its ID on the session.
    @ivar resumable: Whether its sender can resume it.
    """

    def __init__(self, stream: ReceivedStream, call: Callable[..., Any]) -> None:
        """
        @param stream: The Twisted session's stream.
        @param call: Runs a function in the reactor thread and waits for
            its result (or Deferred).
        """
        self._stream = stream
        self._call = call
        self.meta = stream.meta
        self.size = stream.size
        self.streamID = stream.streamID
        self.resumable = stream.resumable

    def __repr__(self) -> str:
        return f"<SessionStreamReader {self.streamID} meta={self.meta!r}>"

    @property
    def receipt(self) -> StreamReceipt | None:
        """
        Its size and SHA-256, once it was read or saved whole.
        """
        return self._stream.receipt

    @property
    def sha256(self) -> bytes | None:
        """
        Its SHA-256, once all of it arrived (checked against its sender's).
        """
        return self._stream.stream.sha256

    def _next(self) -> bytes:
        chunk: bytes = self._call(self._stream.nextChunk)
        return chunk

    def saveTo(
        self, path: str | os.PathLike[str], *, overwrite: bool = False, resume: bool = True
    ) -> StreamReceipt:
        """
        Save it to C{path} (see L{ReceivedStream.saveTo
        <netstructer.streaming.received.ReceivedStream.saveTo>}).

        @return: Its receipt.
        @raise StreamError: It failed; its sender was told why.
        """
        stream = self._stream
        receipt: StreamReceipt = self._call(
            lambda: stream.saveTo(path, overwrite=overwrite, resume=resume)
        )
        return receipt

    def refuse(self, reason: str = "") -> None:
        """
        Decline it: its sender is told C{reason}.
        """
        self._call(self._stream.refuse, reason)

    def abort(self, reason: str = "aborted by the receiving script") -> None:
        """
        Give it up: its sender is told C{reason}.
        """
        self._call(self._stream.abort, reason)
