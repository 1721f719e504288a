# -*- test-case-name: tests.test_streaming -*-
"""
L{SessionStreams}: the streams of one Twisted session, between its
L{StreamsEngine<netstructer.streams.StreamsEngine>} (attached to every
session, so that a peer's streams are always answered) and the
application's API on L{BridgeProtocol<netstructer.protocol.BridgeProtocol>}:
C{sendStream} (a Deferred per stream), the C{streamReceived} hook and
C{recvStream}; and a log line for every stream that fails, either way.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from twisted.internet import defer
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from zope.interface import implementer

from netstructer._sha256 import backgroundSha256
from netstructer._waiting import Waiters
from netstructer.errors import OperationTimedOut, StreamError
from netstructer.session.capability import ISessionHost
from netstructer.session.config import BridgeConfig
from netstructer.streaming.disk import IDiskIO
from netstructer.streaming.received import ReceivedStream
from netstructer.streaming.sources import Feed, Pace, feedFor
from netstructer.streams.engine import StreamsEngine, configuredEngine
from netstructer.streams.incoming import IncomingStream
from netstructer.streams.interfaces import IOutgoingStreamObserver, IStreamsObserver
from netstructer.streams.outgoing import OutgoingStream
from netstructer.streams.receipt import StreamReceipt

__all__ = ["Progress", "SessionStreams"]

Progress = Callable[[int, "int | None"], object]
"""A progress callable: C{progress(sent, size)}, C{size} L{None} if not
known."""


@implementer(IOutgoingStreamObserver)
class _Transfer:
    """
    One stream this side sends: its Deferred, progress callable and feed.
    """

    def __init__(self, progress: Progress | None, log: Logger, peer: str) -> None:
        self.deferred: defer.Deferred[StreamReceipt] = defer.Deferred(self._cancel)
        self.stream: OutgoingStream | None = None
        self.feed: Feed | None = None
        self.size: int | None = None
        self._progress = progress
        self._log = log
        self._peer = peer
        self._cancelled = False

    def open(
        self, engine: StreamsEngine, feed: Feed, meta: object, size: int | None, resume: bool
    ) -> None:
        """
        Open the stream once its feed is ready.
        """
        if self._cancelled:
            feed.stop()
            return
        self.feed = feed
        self.size = feed.size if size is None else size
        try:
            stream = engine.openStream(
                feed.source, self, meta, self.size, resume and feed.resumable
            )
        except Exception as e:  # noqa: BLE001 -- the caller's Deferred reports it
            feed.stop()
            self.deferred.errback(e)
            return
        self.stream = stream
        feed.attach(stream)

    def _cancel(self, deferred: defer.Deferred[StreamReceipt]) -> None:
        self._cancelled = True
        if self.stream is not None:
            self.stream.cancel("cancelled by the sending application")
        if self.feed is not None:
            self.feed.stop()

    # IOutgoingStreamObserver.

    def resumeOffered(self, offset: int, sha256: bytes) -> None:
        if self.feed is not None and self.stream is not None:
            self.feed.resume(self.stream, offset, sha256)

    def streamProgressed(self, sent: int) -> None:
        if self._progress is None:
            return
        try:
            self._progress(sent, self.size)
        except Exception:  # noqa: BLE001 -- the application's callable; log, go on
            self._log.failure("The progress callable of a stream to {peer} failed", peer=self._peer)

    def streamConfirmed(self, size: int, sha256: bytes) -> None:
        if self.feed is not None:
            self.feed.stop()
        offset = 0 if self.stream is None else self.stream.offset
        self.deferred.callback(StreamReceipt(size, sha256, offset))

    def streamFailed(self, error: Exception) -> None:
        if self.feed is not None:
            self.feed.stop()
        if not self._cancelled:
            self.deferred.errback(error)


@implementer(IStreamsObserver)
class SessionStreams:
    """
    The streams of one session on the Twisted side.

    @ivar engine: The session's streams engine, once attached.
    """

    def __init__(
        self,
        clock: IReactorTime,
        disk: Callable[[], IDiskIO],
        peer: Callable[[], str],
        offered: Callable[[object, ReceivedStream], object],
        log: Logger,
    ) -> None:
        """
        @param clock: Times out C{recvStream}.
        @param disk: Gives where file work runs (looked up when needed).
        @param peer: Describes the peer.
        @param offered: The application's hook, given each stream offered.
        @param log: Where failed streams are logged.
        """
        self.engine: StreamsEngine | None = None
        self._clock = clock
        self._disk = disk
        self._peer = peer
        self._offered = offered
        self._log = log
        self._untaken: dict[IncomingStream, ReceivedStream] = {}
        self._queue: list[ReceivedStream] = []
        self._waiters: Waiters[ReceivedStream] = Waiters(clock, self._timedOut)
        self._closed: BaseException | None = None

    def makeEngine(
        self,
        host: ISessionHost,
        config: BridgeConfig,
        encode: Callable[[object], bytes],
        decode: Callable[[bytes], object],
    ) -> StreamsEngine:
        """
        Make the session's engine (to attach it).
        """
        self.engine = configuredEngine(host, self, config, encode, decode, backgroundSha256)
        return self.engine

    def _timedOut(self, timeout: float) -> Exception:
        return OperationTimedOut(f"no stream arrived from {self._peer()} within {timeout} seconds")

    # Sending.

    def sendStream(
        self,
        source: object,
        meta: object,
        size: int | None,
        resume: bool,
        progress: Progress | None,
        limitRate: float | None = None,
    ) -> defer.Deferred[StreamReceipt]:
        """
        Send a stream (see L{BridgeProtocol.sendStream
        <netstructer.protocol.BridgeProtocol.sendStream>}).
        """
        engine = self.engine
        if engine is None:  # pragma: no cover -- made when the session is
            return defer.fail(RuntimeError("the session has no streams engine"))
        if meta is None and isinstance(source, str | os.PathLike):
            meta = {"name": os.path.basename(os.fspath(source))}
        transfer = _Transfer(progress, self._log, self._peer())
        try:
            pace = None if limitRate is None else Pace(self._clock, limitRate)
            feed = feedFor(source, self._disk(), pace)
        except (TypeError, OSError, ValueError) as e:
            return defer.fail(e)
        if isinstance(feed, defer.Deferred):
            feed.addCallbacks(
                lambda ready: transfer.open(engine, ready, meta, size, resume),
                transfer.deferred.errback,
            )
        else:
            transfer.open(engine, feed, meta, size, resume)
        return transfer.deferred

    # Receiving.

    def recvStream(self, timeout: float | None) -> defer.Deferred[ReceivedStream]:
        """
        The next stream offered and not taken (see L{BridgeProtocol.recvStream
        <netstructer.protocol.BridgeProtocol.recvStream>}).
        """
        if self._queue:
            return defer.succeed(self._queue.pop(0))
        if self._closed is not None:
            return defer.fail(self._closed)
        return self._waiters.wait(timeout)

    def queue(self, stream: ReceivedStream) -> None:
        """
        Hand an offered stream to C{recvStream} (the default of the
        protocol's C{streamReceived} hook).
        """
        if self._waiters:
            self._waiters.fire(stream)
        else:
            self._queue.append(stream)

    def sessionEnded(self, reason: BaseException) -> None:
        """
        The session ended: C{recvStream} fails from now on.
        """
        self._closed = reason
        self._waiters.failAll(reason)

    # IStreamsObserver.

    def streamOffered(self, stream: object) -> None:
        """
        Give a stream the peer opened to the application.
        """
        if not isinstance(stream, IncomingStream):  # pragma: no cover
            raise TypeError(f"not an incoming stream: {stream!r}")
        received = ReceivedStream(stream, self._disk(), self._peer(), self._taken)
        self._untaken[stream] = received
        try:
            self._offered(received.meta, received)
        except Exception:  # noqa: BLE001 -- the application's hook; log, refuse the stream
            self._log.failure(
                "Handling stream {streamID} from {peer} failed",
                streamID=stream.streamID,
                peer=self._peer(),
            )
            if stream in self._untaken:
                received.refuse("the receiving application failed")

    def _taken(self, received: ReceivedStream) -> None:
        self._untaken.pop(received.stream, None)

    def streamFailed(self, stream: object, error: Exception) -> None:
        """
        Log the failure of a stream; forget a failed stream nobody took.
        """
        outgoing = isinstance(stream, OutgoingStream)
        self._log.info(
            "Stream {streamID} {direction} {peer} failed: {error}",
            streamID=getattr(stream, "streamID", None),
            direction="to" if outgoing else "from",
            peer=self._peer(),
            error=error,
        )
        if outgoing:
            return
        received = self._untaken.pop(stream, None)  # type: ignore[call-overload]
        if received is not None and isinstance(error, StreamError):
            received.offerFailed(error)
            if received in self._queue:
                self._queue.remove(received)
