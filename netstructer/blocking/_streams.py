# -*- test-case-name: tests.test_blocking_streams -*-
"""
Streams on a blocking L{Link<netstructer.blocking.Link>}: the link's
L{StreamsEngine<netstructer.streams.StreamsEngine>} (attached to every link,
so that a server's streams are always answered), files sent with
L{LinkStreams.send} and streams taken with L{LinkStreams.receive}, as
L{IncomingStreamReader}s.

While a call waits on a stream, the link reads and writes at once (it
waits on its socket with C{select} for either), so that a stream and the
credit, confirmations and values coming the other way never wait on each
other; values arriving meanwhile are queued for C{recvBuffer}.  The
streams' deadlines (60 seconds without news of a stream aborts it) are kept
whenever the link is inside a call.  Nothing here imports Twisted.
"""

from __future__ import annotations

import logging
import os
import select
import ssl
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from zope.interface import implementer

from netstructer._sha256 import backgroundSha256
from netstructer.blocking._reading import ChunkReader
from netstructer.blocking._sockets import IMMEDIATELY
from netstructer.channel import ValueReceived
from netstructer.errors import (
    LocalProtocolError,
    OperationTimedOut,
    StreamAborted,
    StreamError,
    StreamRefused,
    StreamTooLarge,
)
from netstructer.session.config import BridgeConfig
from netstructer.streams.engine import configuredEngine
from netstructer.streams.files import FileSink, FileSource, openSink, storageProblem
from netstructer.streams.incoming import IncomingStream
from netstructer.streams.interfaces import (
    IIncomingStreamObserver,
    IOutgoingStreamObserver,
    IStreamsObserver,
)
from netstructer.streams.outgoing import OutgoingStream
from netstructer.streams.receipt import StreamReceipt
from netstructer.streams.wire import AbortCode

if TYPE_CHECKING:
    from hashlib import _Hash

__all__ = ["IncomingStreamReader", "LinkStreams"]

_log = logging.getLogger("netstructer.blocking")

Progress = Callable[[int, "int | None"], object]


@implementer(IOutgoingStreamObserver)
class _Sending:
    """
    What happens to one stream a link sends.
    """

    def __init__(self, source: FileSource, progress: Progress | None) -> None:
        self.source = source
        self.progress = progress
        self.stream: OutgoingStream | None = None
        self.receipt: StreamReceipt | None = None
        self.error: Exception | None = None

    @property
    def over(self) -> bool:
        return self.receipt is not None or self.error is not None

    def resumeOffered(self, offset: int, sha256: bytes) -> None:
        stream = self.stream
        if stream is None:  # pragma: no cover -- offered only once open
            return
        try:
            prefix = self.source.verifyPrefix(offset, sha256)
        except OSError as e:
            stream.abort(f"reading the file to resume failed: {e}")
            return
        stream.prefixChecked(offset, prefix)

    def streamProgressed(self, sent: int) -> None:
        if self.progress is not None and self.stream is not None:
            self.progress(sent, self.stream.size)

    def streamConfirmed(self, size: int, sha256: bytes) -> None:
        offset = 0 if self.stream is None else self.stream.offset
        self.receipt = StreamReceipt(size, sha256, offset)

    def streamFailed(self, error: Exception) -> None:
        self.error = error


@implementer(IStreamsObserver)
class LinkStreams:
    """
    The streams of one blocking link.

    @ivar engine: The link's streams engine.
    """

    def __init__(self, session: Any, config: BridgeConfig, needData: object) -> None:
        """
        Attach the link's engine (before its handshake).

        @param session: The link's mechanics (its C{_LinkSession}).
        @param config: The link's configuration.
        @param needData: What C{session.processOne} returns when no whole
            frame is buffered.
        """
        self._session = session
        self._needData = needData
        self._offers: deque[IncomingStream] = deque()
        core = session.core
        self.engine = core.attach(
            lambda host: configuredEngine(
                host,
                self,
                config,
                core.channel.encodeValue,
                core.channel.decoder.decode,
                backgroundSha256,
            )
        )

    # IStreamsObserver.

    def streamOffered(self, stream: object) -> None:
        """
        Keep a stream the server offers for L{receive}.
        """
        if isinstance(stream, IncomingStream):
            self._offers.append(stream)

    def streamFailed(self, stream: object, error: Exception) -> None:
        """
        Log a stream's failure; forget a failed stream not taken.
        """
        outgoing = isinstance(stream, OutgoingStream)
        _log.info(
            "stream %s %s %s failed: %s",
            getattr(stream, "streamID", None),
            "to" if outgoing else "from",
            self._session.core.peer,
            error,
        )
        if not outgoing and stream in self._offers:
            self._offers.remove(stream)  # type: ignore[arg-type]

    # Requests.

    def send(
        self,
        file: str | os.PathLike[str] | BinaryIO,
        meta: object,
        size: int | None,
        resume: bool,
        progress: Progress | None,
        deadline: float | None,
    ) -> StreamReceipt:
        """
        Send a file as a stream and wait for the receiver's confirmation.
        """
        self._session.checkOpen("send a stream")
        source = FileSource(file)
        sending = _Sending(source, progress)
        try:
            stream = self.engine.openStream(
                source, sending, meta, source.size if size is None else size, resume
            )
            sending.stream = stream
            try:
                self.pump(lambda: sending.over, deadline, "send a stream")
            except BaseException:
                if not sending.over:
                    stream.cancel("the sender gave up")
                    self._session.tryFlush()
                raise
        finally:
            source.close()
        if sending.error is not None:
            raise sending.error
        if sending.receipt is None:  # pragma: no cover -- over means one of the two
            raise StreamAborted("the stream ended without a confirmation")
        return sending.receipt

    def receive(self, deadline: float | None, readTimeout: float | None) -> IncomingStreamReader:
        """
        Wait for the next stream the server offers.
        """
        session = self._session
        if not self._offers:
            session.checkOpen("receive a stream")
            self.pump(lambda: bool(self._offers), deadline, "receive a stream")
        return IncomingStreamReader(self, self._offers.popleft(), readTimeout)

    # The loop.

    def pump(self, done: Callable[[], bool], deadline: float | None, what: str) -> None:
        """
        Read, write and keep the streams' deadlines until C{done()}.

        @raise OperationTimedOut: C{deadline} passed first.
        @raise ChannelClosedError: The link ended first.
        """
        session = self._session
        core = session.core
        while not done():
            event = session.processOne(session.maxFrame)
            if event is not self._needData:
                if type(event) is ValueReceived:
                    core.queue.push(event.value, event.size)
                elif session.ended and not done():
                    raise session.closedError(what)
                continue
            self._write()
            if done():
                return
            self._wait(deadline)

    def _write(self) -> None:
        """
        Write what the socket takes now; while it takes everything, let the
        streams send more.
        """
        core = self._session.core
        while True:
            if core.out:
                try:
                    self._session.flush(IMMEDIATELY)
                except OperationTimedOut:
                    return
            core.flow.outputWritten()
            if not core.out:
                return

    def _wait(self, deadline: float | None) -> None:
        """
        Wait until the socket can be read (or written, if bytes wait), a
        stream's deadline, or C{deadline}; then read what arrived and act on
        the deadlines due.
        """
        session = self._session
        core = session.core
        sock = session.io.sock
        now = time.monotonic()
        wake = core.nextDeadline
        until = deadline if wake is None or (deadline is not None and deadline < wake) else wake
        readable = isinstance(sock, ssl.SSLSocket) and sock.pending() > 0
        if not readable:
            timeout = None if until is None else max(until - now, 0.0)
            readers, _, _ = select.select([sock], [sock] if core.out else [], [], timeout)
            readable = bool(readers)
        if readable:
            try:
                session.fill(IMMEDIATELY)
            except OperationTimedOut:
                pass
        now = time.monotonic()
        if wake is not None and now >= wake:
            core.timeReached(now)
            session.controlEvents()
        if deadline is not None and now >= deadline and not readable:
            raise OperationTimedOut(
                f"a stream with {core.peer} did not progress in time; the link stays open"
            )


@implementer(IIncomingStreamObserver)
class IncomingStreamReader(ChunkReader):
    """
    A stream the server sends a L{Link<netstructer.blocking.Link>}, not
    taken yet: take it by reading it (C{read}, or iterating over its
    chunks) or saving it (L{saveTo}), or L{refuse} it.  Reading it lets the
    server send more as the bytes are read, within the window (512 KiB by
    default): a slow reader slows this stream only.  A read waits as long
    as the link's timeout for its first bytes (then raises
    L{OperationTimedOut<netstructer.errors.OperationTimedOut>}); once the
    stream is over it returns C{b""}, and the stream is confirmed to the
    server.

    @ivar meta: The value its sender described it with.
    @ivar size: Its announced size, or L{None}.
    @ivar streamID: Its ID on the link.
    @ivar resumable: Whether its sender can resume it.
    @ivar receipt: Its size and SHA-256 once it was read or saved whole.
    """

    def __init__(self, streams: LinkStreams, stream: IncomingStream, timeout: float | None) -> None:
        self._streams = streams
        self._stream = stream
        self._timeout = timeout
        self.meta = stream.meta
        self.size = stream.size
        self.streamID = stream.streamID
        self.resumable = stream.resume
        self.receipt: StreamReceipt | None = None
        self._chunks: deque[bytes] = deque()
        self._ended = False
        self._error: Exception | None = None
        self._taken = False

    def __repr__(self) -> str:
        return f"<IncomingStreamReader {self.streamID} meta={self.meta!r}>"

    @property
    def sha256(self) -> bytes | None:
        """
        Its SHA-256, once all of it arrived (checked against its sender's).
        """
        return self._stream.sha256

    @property
    def received(self) -> int:
        """
        The bytes of it received so far.
        """
        return self._stream.received

    # IIncomingStreamObserver.

    def dataReceived(self, data: bytes) -> None:
        self._chunks.append(data)

    def streamEnded(self) -> None:
        self._ended = True

    def streamFailed(self, error: Exception) -> None:
        self._error = error

    # Taking it.

    def _take(self, offset: int = 0, prefix: _Hash | None = None) -> None:
        if not self._taken:
            self._taken = True
            self._stream.accept(self, offset, prefix)

    def _deadline(self) -> float | None:
        return None if self._timeout is None else time.monotonic() + self._timeout

    def _wait(self) -> None:
        """
        Wait until a chunk, the end or a failure arrives.
        """
        self._take()
        if not self._chunks and not self._ended and self._error is None:
            self._streams.pump(
                lambda: bool(self._chunks) or self._ended or self._error is not None,
                self._deadline(),
                "receive a stream",
            )

    def _nextChunk(self) -> bytes:
        """
        The next chunk, waiting for it (and counting it consumed); C{b""}
        at the end.

        @raise StreamError: It failed.
        """
        self._wait()
        if self._chunks:
            chunk = self._chunks.popleft()
            self._stream.consumed(len(chunk))
            return chunk
        if self._error is not None:
            raise self._error
        return b""

    def _next(self) -> bytes:
        """
        As L{_nextChunk}, confirming the stream at its end.
        """
        chunk = self._nextChunk()
        if not chunk:
            self._confirm()
        return chunk

    def _confirm(self, path: Path | None = None) -> None:
        if self.receipt is not None:
            return
        stream = self._stream
        stream.complete()
        self.receipt = StreamReceipt(stream.received, stream.sha256 or b"", stream.offset, path)
        self._streams._session.tryFlush()

    def _ready(self) -> bool:
        return bool(self._chunks)

    def saveTo(
        self, path: str | os.PathLike[str], *, overwrite: bool = False, resume: bool = True
    ) -> StreamReceipt:
        """
        Save the stream to C{path}: written to C{.NAME.part} beside it and
        renamed once whole and checked (a failed stream leaves nothing
        under C{path}), then confirmed.  Resumes from a part an earlier
        transfer left, if the sender can resume; keeps its part for that if
        the link ends under it.

        @param overwrite: Whether an existing file may be replaced (else the
            stream is refused if one exists).
        @param resume: Whether to go on from an earlier transfer's part.
        @return: Its receipt (C{path} set).
        @raise StreamError: It failed; its sender was told why.
        @raise LocalProtocolError: It was already taken.
        """
        if self._taken:
            raise LocalProtocolError(f"stream {self.streamID} was already taken")
        target = Path(path)
        resume = resume and self.resumable
        sink = self._open(target, overwrite, resume)
        try:
            while chunk := self._nextChunk():
                sink.write(chunk)
            saved = sink.commit()
        except OSError as e:
            self.abort(storageProblem(e))
            sink.discard()
            raise StreamAborted(
                f"saving stream {self.streamID} to {target} failed: {storageProblem(e)}",
                streamID=self.streamID,
            ) from e
        except StreamError as e:
            # Keep the part to resume if only the session ended.
            if e.code is None:
                sink.suspend()
            else:
                sink.discard()
            raise
        except BaseException:
            # Interrupted, or the link failed: the part stays to resume.
            if self._error is None and self.receipt is None:
                self._stream.abort("the receiving script gave up")
                self._streams._session.tryFlush()
            sink.suspend()
            raise
        self._confirm(saved)
        return self.receipt or StreamReceipt(self._stream.received, b"", 0, saved)

    def _open(self, target: Path, overwrite: bool, resume: bool) -> FileSink:
        stream = self._stream
        self._taken = True
        try:
            sink, prefix, problem = openSink(target, overwrite, resume, stream.size)
        except (OSError, ValueError) as e:
            reason = storageProblem(e) if isinstance(e, OSError) else str(e)
            stream.refuse(reason)
            self._streams._session.tryFlush()
            raise StreamRefused(
                f"stream {self.streamID} could not be saved as {target.name}: {reason}",
                streamID=self.streamID,
                code=int(AbortCode.REFUSED),
            ) from e
        if problem is not None:
            if sink.offset:
                sink.suspend()
            else:
                sink.discard()
            stream.refuse(problem, AbortCode.TOO_LARGE)
            self._streams._session.tryFlush()
            raise StreamTooLarge(problem, streamID=self.streamID)
        stream.accept(self, sink.offset, prefix)
        return sink

    def refuse(self, reason: str = "") -> None:
        """
        Decline the stream: the server's sender is told C{reason}.
        """
        if self._taken:
            raise LocalProtocolError(f"stream {self.streamID} was already taken")
        self._taken = True
        self._stream.refuse(reason)
        self._streams._session.tryFlush()

    def abort(self, reason: str = "aborted by the receiving script") -> None:
        """
        Give the stream up: the server's sender is told C{reason}.
        """
        self._taken = True
        self._stream.abort(reason)
        self._streams._session.tryFlush()
