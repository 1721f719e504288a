# -*- test-case-name: tests.test_streaming -*-
"""
L{ReceivedStream}: a stream the peer sends, as the Twisted side's
application takes it.

It is offered to the application (a server handler's C{streamReceived},
a protocol's C{streamReceived} hook, or C{recvStream}) unanswered; the
application takes it in one of four ways, which accepts it, or refuses it:

    - L{ReceivedStream.saveTo}: into a file, written in the disk threads
      under a temporary name and renamed once whole and checked
      (L{netstructer.streaming.saving});
    - L{ReceivedStream.deliverTo}: to an C{IConsumer} (or a binary file,
      written in the disk threads), which may pause it (it is the
      consumer's C{IPushProducer});
    - L{ReceivedStream.nextChunk} (a Deferred per chunk) or C{async for
      chunk in stream};
    - L{ReceivedStream.refuse}.

Backpressure is the engine's credit: a chunk counts as consumed (and lets
the sender send as much more) once it was written to the consumer, handed
out by C{nextChunk}, or written to the file, so at most a window (512 KiB by
default) of a stream is held on this side, however slow its consumer.  A
stream nobody takes within the idle timeout is refused by the engine.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import AsyncIterator, Callable
from typing import Any

from twisted.internet import defer
from twisted.internet.interfaces import IConsumer, IPushProducer
from twisted.python.failure import Failure
from zope.interface import implementer

from netstructer.errors import LocalProtocolError, StreamError
from netstructer.streaming.disk import IDiskIO
from netstructer.streaming.saving import FileConsumer, FileSaver
from netstructer.streams.files import storageProblem
from netstructer.streams.incoming import IncomingStream
from netstructer.streams.interfaces import IIncomingStreamObserver
from netstructer.streams.receipt import StreamReceipt
from netstructer.streams.wire import AbortCode

__all__ = ["ReceivedStream"]


class _Mode:
    NONE = "not taken"
    CHUNKS = "read chunk by chunk"
    CONSUMER = "delivered to a consumer"
    FILE = "saved to a file"
    REFUSED = "refused"


@implementer(IPushProducer, IIncomingStreamObserver)
class ReceivedStream:
    """
    A stream the peer sends.

    @ivar meta: The value its sender described it with.
    @ivar size: Its announced size, or L{None}.
    @ivar peer: The peer, for messages.
    @ivar streamID: Its ID on the session.
    @ivar resumable: Whether its sender can resume it (L{saveTo} goes on
        from a part kept from an earlier transfer).
    @ivar receipt: Its size and SHA-256 once it was kept, else L{None}.
    @ivar error: Why it failed, if it did.
    """

    def __init__(
        self,
        stream: IncomingStream,
        disk: IDiskIO,
        peer: str,
        taken: Callable[[ReceivedStream], None] | None = None,
    ) -> None:
        """
        @param stream: The engine's stream.
        @param disk: Where file work runs.
        @param peer: The peer, for messages.
        @param taken: Called when the application takes or refuses it.
        """
        self._stream = stream
        self._disk = disk
        self.peer = peer
        self.meta = stream.meta
        self.size = stream.size
        self.streamID = stream.streamID
        self.resumable = stream.resume
        self.receipt: StreamReceipt | None = None
        self.error: BaseException | None = None
        self._mode = _Mode.NONE
        self._chunks: deque[bytes] = deque()
        self._ended = False
        self._paused = False
        self._waiting: deque[defer.Deferred[bytes]] = deque()
        self._consumer: Any = None
        self._done: defer.Deferred[StreamReceipt] | None = None
        self._taken = taken

    def __repr__(self) -> str:
        return f"<ReceivedStream {self.streamID} from {self.peer} {self._mode}>"

    @property
    def diskIO(self) -> IDiskIO:
        """
        Where its file work runs (the session's disk threads), for a
        handler's own file work about it.
        """
        return self._disk

    @property
    def stream(self) -> IncomingStream:
        """
        The engine's stream (its state machine).
        """
        return self._stream

    @property
    def received(self) -> int:
        """
        The bytes of the stream received so far (counted from its start).
        """
        return self._stream.received

    # Taking it.

    def _take(self, mode: str) -> None:
        if self._mode != _Mode.NONE:
            raise LocalProtocolError(f"stream {self.streamID} is already {self._mode}")
        if self.error is not None:
            raise self.error
        self._mode = mode
        taken, self._taken = self._taken, None
        if taken is not None:
            taken(self)

    def refuse(self, reason: str = "", code: AbortCode = AbortCode.REFUSED) -> None:
        """
        Decline the stream: its sender's Deferred fails with
        L{StreamRefused<netstructer.errors.StreamRefused>} and C{reason}.

        @raise LocalProtocolError: It was already taken.
        """
        self._take(_Mode.REFUSED)
        self._stream.refuse(reason, code)

    def abort(self, reason: str = "aborted by the receiving application") -> None:
        """
        Give the stream up after taking it: its sender is told C{reason},
        and whatever was kept of it is discarded.
        """
        self._stream.abort(reason)

    def saveTo(
        self,
        path: str | os.PathLike[str],
        *,
        overwrite: bool = False,
        resume: bool = True,
    ) -> defer.Deferred[StreamReceipt]:
        """
        Accept the stream and save it to C{path}: written (in the disk
        threads) to C{.NAME.part} beside it, renamed to C{path} once it
        arrived whole and its SHA-256 checked, then confirmed to its
        sender.  If it fails, the part is removed; if the session ends
        mid-stream, it is kept for a later transfer of it that can resume
        to go on from.

        @param path: Where to save it; its name is made safe (see
            L{sanitizeName<netstructer.streams.files.sanitizeName>}).
        @param overwrite: Whether an existing file of that name may be
            replaced (else the stream is refused if one exists).
        @param resume: Whether to go on from a part an earlier transfer of
            it left (when its sender can resume).
        @return: A Deferred firing with its L{StreamReceipt} (its C{path}
            set) once it is saved, or failing with a
            L{StreamError<netstructer.errors.StreamError>} (its sender sees
            why too).
        """
        self._take(_Mode.FILE)
        saver = FileSaver(self._stream, self._disk, path, overwrite, resume)
        return saver.start()

    def deliverTo(self, consumer: Any) -> defer.Deferred[StreamReceipt]:
        """
        Accept the stream and write it to C{consumer}, which this stream is
        registered with as a push producer: the consumer pauses it to slow
        it down (and only this stream slows down).  At the end the stream
        unregisters, and is confirmed to its sender.

        @param consumer: An C{IConsumer}; or a file opened for binary
            writing, which is written in the disk threads (and neither
            flushed nor closed: the caller owns it).
        @return: A Deferred firing with its L{StreamReceipt} once all of it
            was written, or failing with why it failed.  (A consumer whose
            C{write} raises aborts the stream.)
        """
        self._take(_Mode.CONSUMER)
        if not IConsumer.providedBy(consumer):
            if not callable(getattr(consumer, "write", None)):
                raise TypeError(
                    f"deliverTo takes an IConsumer or a binary file, not {type(consumer).__name__}"
                )
            consumer = FileConsumer(consumer, self._disk, self._storageFailed)
        self._consumer = consumer
        self._done = defer.Deferred()
        consumer.registerProducer(self, True)
        self._stream.accept(self)
        return self._done

    def nextChunk(self) -> defer.Deferred[bytes]:
        """
        Accept the stream (on the first call) and take its next chunk.
        Chunks are asked for one at a time: the sender sends as fast as
        they are taken, within the window.

        @return: A Deferred firing with the next chunk; with C{b""} once
            the stream is over, whole (it was then confirmed to its
            sender); or failing with why it failed.
        """
        if self._mode == _Mode.NONE:
            self._take(_Mode.CHUNKS)
            self._stream.accept(self)
        elif self._mode != _Mode.CHUNKS:
            raise LocalProtocolError(f"stream {self.streamID} is already {self._mode}")
        if self._chunks:
            return defer.succeed(self._handOut())
        if self.error is not None:
            return defer.fail(self.error)
        if self._ended:
            return defer.succeed(b"")
        waiter: defer.Deferred[bytes] = defer.Deferred(self._waiting.remove)
        self._waiting.append(waiter)
        return waiter

    def __aiter__(self) -> AsyncIterator[bytes]:
        """
        Iterate over its chunks: C{async for chunk in stream}.
        """
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[bytes]:
        while True:
            chunk = await self.nextChunk()
            if not chunk:
                return
            yield chunk

    def _handOut(self) -> bytes:
        chunk = self._chunks.popleft()
        self._stream.consumed(len(chunk))
        if not self._chunks and self._ended:
            self._complete()
        return chunk

    # IPushProducer, for a consumer.

    def pauseProducing(self) -> None:
        """
        Stop writing to the consumer: what arrives waits (at most a
        window of it: the sender waits too).
        """
        self._paused = True

    def resumeProducing(self) -> None:
        """
        Go on writing to the consumer.
        """
        self._paused = False
        self._deliver()

    def stopProducing(self) -> None:
        """
        The consumer gives up: the stream is aborted.
        """
        self.abort("the receiving application's consumer stopped")

    def _deliver(self) -> None:
        consumer = self._consumer
        while self._chunks and not self._paused and self.error is None:
            chunk = self._chunks.popleft()
            try:
                consumer.write(chunk)
            except Exception as e:  # noqa: BLE001 -- the consumer's failure ends its stream
                self._stream.abort(f"the receiving application's consumer failed: {e}")
                return
            self._stream.consumed(len(chunk))
        if not self._chunks and self._ended and self.error is None:
            consumer.unregisterProducer()
            if isinstance(consumer, FileConsumer):
                consumer.whenWritten().addCallbacks(lambda _: self._complete(), self._written)
            else:
                self._complete()

    def _written(self, failure: Failure) -> None:
        error = failure.value
        self._storageFailed(error if error is not None else Exception("the write failed"))

    def _storageFailed(self, error: BaseException) -> None:
        if isinstance(error, OSError):
            self._stream.abort(storageProblem(error))
        else:
            self._stream.abort(f"writing the stream failed: {error!r}")

    def _complete(self) -> None:
        stream = self._stream
        stream.complete()
        digest = stream.sha256 or b""
        self.receipt = StreamReceipt(stream.received, digest, stream.offset)
        done, self._done = self._done, None
        if done is not None:
            done.callback(self.receipt)

    # IIncomingStreamObserver.

    def dataReceived(self, data: bytes) -> None:
        """
        Its next bytes: to the consumer, or to a waiting C{nextChunk}, or
        kept until asked for.
        """
        self._chunks.append(data)
        if self._mode == _Mode.CONSUMER:
            if not self._paused:
                self._deliver()
        elif self._waiting:
            self._waiting.popleft().callback(self._handOut())

    def streamEnded(self) -> None:
        """
        All of it arrived, checked: confirm it once it was all taken.
        """
        self._ended = True
        if self._mode == _Mode.CONSUMER:
            if not self._paused:
                self._deliver()
        elif not self._chunks:
            self._complete()
            waiting, self._waiting = self._waiting, deque()
            for waiter in waiting:
                waiter.callback(b"")

    def streamFailed(self, error: Exception) -> None:
        """
        It failed: whoever waits on it learns why.
        """
        self.error = error
        self._chunks.clear()
        waiting, self._waiting = self._waiting, deque()
        for waiter in waiting:
            waiter.errback(error)
        done, self._done = self._done, None
        if self._mode == _Mode.CONSUMER and self._consumer is not None:
            self._consumer.unregisterProducer()
        if done is not None:
            done.errback(error)

    def offerFailed(self, error: StreamError) -> None:
        """
        It failed before it was taken (refused on time out, the session
        ended): remember why, for whoever takes it next.
        """
        if self._mode == _Mode.NONE:
            self.error = error
