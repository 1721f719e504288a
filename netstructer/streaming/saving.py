# -*- test-case-name: tests.test_streaming -*-
"""
Incoming streams written to files on the Twisted side, in the disk threads
(L{netstructer.streaming.disk}), one piece of work at a time per stream:

    - L{FileSaver}: a stream saved under its final name only once whole
      and checked (L{FileSink<netstructer.streams.files.FileSink>}: a
      C{.NAME.part} beside it, renamed), resumed from a part an earlier
      transfer left, that part kept when the session ends mid-stream;
    - L{FileConsumer}: an C{IConsumer} over a file object the application
      opened, pausing its producer while writes wait.

A stream's bytes count as consumed (and let its sender send more) once they
are written, so at most its window waits in memory.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from twisted.internet import defer
from twisted.internet.interfaces import IConsumer
from twisted.python.failure import Failure
from zope.interface import implementer

from netstructer.errors import LocalProtocolError, StreamAborted, StreamRefused, StreamTooLarge
from netstructer.streaming.disk import IDiskIO, SerialDiskIO
from netstructer.streams.files import FileSink, openSink, storageProblem
from netstructer.streams.incoming import IncomingStream
from netstructer.streams.interfaces import IIncomingStreamObserver
from netstructer.streams.receipt import StreamReceipt
from netstructer.streams.wire import AbortCode

if TYPE_CHECKING:
    from hashlib import _Hash

__all__ = ["CONSUMER_HIGH_WATER", "FileConsumer", "FileSaver"]

CONSUMER_HIGH_WATER = 4 * 1024 * 1024
"""The bytes a L{FileConsumer} lets wait for the disk before it pauses its
producer (it resumes it under a quarter of this)."""


def _writeAll(sink: FileSink | BinaryIO, chunks: Sequence[bytes]) -> int:
    """
    Write C{chunks} (in a disk thread).

    @return: How many bytes.
    """
    for chunk in chunks:
        sink.write(chunk)
    return sum(len(chunk) for chunk in chunks)


@implementer(IIncomingStreamObserver)
class FileSaver:
    """
    One stream saved to a file.
    """

    def __init__(
        self,
        stream: IncomingStream,
        disk: IDiskIO,
        path: str | os.PathLike[str],
        overwrite: bool,
        resume: bool,
    ) -> None:
        self._stream = stream
        self._io = SerialDiskIO(disk)
        self._path = Path(path)
        self._overwrite = overwrite
        self._resume = resume and stream.resume
        self._sink: FileSink | None = None
        self._pending: list[bytes] = []
        self._writing = False
        self._ended = False
        self._failed = False
        self._done: defer.Deferred[StreamReceipt] = defer.Deferred()

    def start(self) -> defer.Deferred[StreamReceipt]:
        """
        Open the part (in a disk thread), then accept the stream.

        @return: A Deferred firing with the stream's receipt once it is
            saved, or failing with why it was not.
        """
        stream = self._stream
        self._io.run(openSink, self._path, self._overwrite, self._resume, stream.size).addCallbacks(
            self._opened, self._openFailed
        )
        return self._done

    def _opened(self, opened: tuple[FileSink, _Hash | None, str | None]) -> None:
        sink, prefix, problem = opened
        stream = self._stream
        self._sink = sink
        try:
            if problem is not None:
                stream.refuse(problem, AbortCode.TOO_LARGE)
            else:
                stream.accept(self, sink.offset, prefix)
        except LocalProtocolError:
            self._sink = None
            self._io.run(sink.suspend if sink.offset else sink.discard)
            self._done.errback(
                StreamAborted(
                    f"stream {stream.streamID} ended before it could be saved (refused for "
                    "waiting too long, or the session ended)",
                    streamID=stream.streamID,
                )
            )
            return
        if problem is not None:
            self._sink = None
            self._io.run(sink.suspend if sink.offset else sink.discard)
            self._done.errback(StreamTooLarge(problem, streamID=stream.streamID))

    def _openFailed(self, failure: Failure) -> None:
        error = _errorOf(failure)
        stream = self._stream
        if isinstance(error, OSError):
            reason = storageProblem(error)
        elif isinstance(error, ValueError):
            reason = f"its name cannot name a file: {error}"
        else:
            self._done.errback(failure)
            return
        try:
            stream.refuse(reason)
        except LocalProtocolError:
            pass
        self._done.errback(
            StreamRefused(
                f"stream {stream.streamID} could not be saved as {self._path.name}: {reason}",
                streamID=stream.streamID,
                code=int(AbortCode.REFUSED),
            )
        )

    # IIncomingStreamObserver.

    def dataReceived(self, data: bytes) -> None:
        """
        Write the stream's next bytes, after those before them.
        """
        self._pending.append(data)
        self._write()

    def _write(self) -> None:
        if self._writing or not self._pending or self._sink is None:
            return
        chunks, self._pending = self._pending, []
        self._writing = True
        self._io.run(_writeAll, self._sink, chunks).addCallbacks(self._wrote, self._writeFailed)

    def _wrote(self, count: int) -> None:
        self._writing = False
        if self._failed:
            return
        self._stream.consumed(count)
        if self._pending:
            self._write()
        elif self._ended:
            self._commit()

    def _writeFailed(self, failure: Failure) -> None:
        self._writing = False
        if not self._failed:
            self._stream.abort(_problem(_errorOf(failure)))

    def streamEnded(self) -> None:
        """
        All of it arrived and was checked: commit it once it is written.
        """
        self._ended = True
        if not self._writing and not self._pending:
            self._commit()

    def _commit(self) -> None:
        sink = self._sink
        if sink is None:  # pragma: no cover -- data arrives only once it is open
            return
        self._io.run(sink.commit).addCallbacks(self._committed, self._writeFailed)

    def _committed(self, path: Path) -> None:
        stream = self._stream
        stream.complete()
        digest = stream.sha256 or b""
        self._done.callback(StreamReceipt(stream.received, digest, stream.offset, path))

    def streamFailed(self, error: Exception) -> None:
        """
        It failed: remove the part; but if the session ended under it, keep
        the part for a later transfer of it to resume from.
        """
        self._failed = True
        pending, self._pending = self._pending, []
        sink = self._sink
        if sink is None:
            self._done.errback(error)
            return
        if getattr(error, "code", 0) is None:
            # What arrived was authenticated: keep all of it.
            self._io.run(_writeAll, sink, pending)
            ended = self._io.run(sink.suspend)
        else:
            ended = self._io.run(sink.discard)
        ended.addBoth(lambda _: self._done.errback(error))


def _errorOf(failure: Failure) -> Exception:
    error = failure.value
    return error if isinstance(error, Exception) else Exception(repr(error))


def _problem(error: BaseException) -> str:
    if isinstance(error, OSError):
        return storageProblem(error)
    return f"storing the stream failed: {error!r}"


@implementer(IConsumer)
class FileConsumer:
    """
    A file object as an C{IConsumer}: each write runs in the disk threads,
    in order; the producer is paused while more than
    L{CONSUMER_HIGH_WATER} bytes wait.
    """

    def __init__(
        self, file: BinaryIO, disk: IDiskIO, failed: Callable[[BaseException], None]
    ) -> None:
        """
        @param file: A file opened for binary writing (not closed here).
        @param disk: Where the writes run.
        @param failed: Called once if a write fails.
        """
        self._file = file
        self._io = SerialDiskIO(disk)
        self._failed = failed
        self._producer: Any = None
        self._waiting = 0
        self._paused = False
        self._error: BaseException | None = None

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        """
        The producer writing to this file.
        """
        self._producer = producer

    def unregisterProducer(self) -> None:
        """
        It is done.
        """
        self._producer = None

    def write(self, data: bytes) -> None:
        """
        Write C{data} after what was written before; pause the producer if
        too much waits.
        """
        if self._error is not None:
            return
        self._waiting += len(data)
        self._io.run(_writeAll, self._file, (data,)).addCallbacks(self._wrote, self._writeFailed)
        if self._waiting > CONSUMER_HIGH_WATER and self._producer is not None and not self._paused:
            self._paused = True
            self._producer.pauseProducing()

    def _wrote(self, count: int) -> None:
        self._waiting -= count
        if self._paused and self._waiting <= CONSUMER_HIGH_WATER // 4:
            self._paused = False
            if self._producer is not None:
                self._producer.resumeProducing()

    def _writeFailed(self, failure: Failure) -> None:
        if self._error is None:
            self._error = _errorOf(failure)
            self._failed(_errorOf(failure))

    def whenWritten(self) -> defer.Deferred[None]:
        """
        @return: A Deferred firing once every write asked for so far is
            done, or failing with the first write's failure.
        """

        def check() -> None:
            if self._error is not None:
                raise self._error

        return self._io.run(check)
