# -*- test-case-name: tests.test_streaming -*-
"""
L{StreamMethods}: the streams methods of L{BridgeProtocol
<netstructer.protocol.BridgeProtocol>}, each a line over the session's
L{SessionStreams<netstructer.streaming.session.SessionStreams>}.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from twisted.internet import defer
from twisted.internet.interfaces import IReactorTime

from netstructer.streaming.disk import IDiskIO, diskIOFor
from netstructer.streaming.received import ReceivedStream
from netstructer.streaming.session import Progress, SessionStreams
from netstructer.streams.engine import StreamsEngine
from netstructer.streams.receipt import StreamReceipt

__all__ = ["StreamMethods"]


class StreamMethods:
    """
    Streams on a session: values and files larger than memory, sent beside
    its values (see L{netstructer.streaming}).

    @ivar diskIO: Where the file work of its streams runs (reading a file
        sent, writing one saved); the reactor's disk threads
        (L{netstructer.streaming.disk}) if L{None}.
    @ivar clock: The session's reactor (the protocol's).
    """

    diskIO: IDiskIO | None = None
    if TYPE_CHECKING:
        clock: IReactorTime
        _streams: SessionStreams

    def _diskIO(self) -> IDiskIO:
        return self.diskIO if self.diskIO is not None else diskIOFor(self.clock)

    @property
    def streams(self) -> StreamsEngine:
        """
        The session's streams engine (its capability): its streams under
        way (C{outgoing}, C{incoming}) and its settings.
        """
        engine = self._streams.engine
        if engine is None:  # pragma: no cover -- attached in __init__
            raise RuntimeError("the session has no streams engine")
        return engine

    def sendStream(
        self,
        source: object,
        meta: object = None,
        size: int | None = None,
        *,
        resume: bool = False,
        progress: Progress | None = None,
        limitRate: float | None = None,
    ) -> defer.Deferred[StreamReceipt]:
        """
        Send a stream: bytes larger than memory, beside the session's
        values (which are not held up by it), in chunks the receiver asks
        for as it consumes them.  See L{netstructer.streaming}.

        @param source: A path or a binary file (read in the disk threads),
            an C{IBodyProducer}-style producer, an iterable or async
            iterable of bytes, or bytes.
        @param meta: A value describing it, given to the receiver (a
            receiver's C{save:} handler saves it under C{meta["name"]});
            for a path, C{{"name": its name}} by default.
        @param size: Its size, if known and not given by the source (a
            file's is): the receiver can refuse it at once, and checks it.
        @param resume: Whether the receiver may go on from a part an
            earlier, interrupted transfer of the same file left (a file
            source only: its first bytes are checked against the part's
            SHA-256 first).
        @param progress: Called with C{(sent, size)} as it goes.
        @param limitRate: At most this many bytes a second (a file source
            only), or L{None} for as fast as the receiver takes them.
        @return: A Deferred firing with the receiver's confirmation, a
            L{StreamReceipt} (the bytes it received and their SHA-256, both
            as sent), or failing with a L{StreamError
            <netstructer.errors.StreamError>} saying why (refused, too
            large, timed out, damaged, the session ended), L{PeerVersionError
            <netstructer.errors.PeerVersionError>} for a peer without
            streams, or C{TypeError} for a source of no accepted kind.
            Cancelling it aborts this stream only.
        """
        return self._streams.sendStream(source, meta, size, resume, progress, limitRate)

    def streamReceived(self, meta: object, stream: ReceivedStream) -> None:
        """
        The peer offered a stream.  Override this to take streams as they
        come (C{stream.saveTo(path)}, C{stream.deliverTo(consumer)},
        C{stream.nextChunk()} or C{async for}, or C{stream.refuse()}); by
        default it waits for L{recvStream}, and is refused if nobody takes
        it within the streams' idle timeout (60 seconds).

        @param meta: The value its sender described it with.
        @param stream: The stream, not taken yet.
        """
        self._streams.queue(stream)

    def recvStream(self, timeout: float | None = None) -> defer.Deferred[ReceivedStream]:
        """
        Wait for the next stream the peer offers (and that L{streamReceived}
        left for this).

        @param timeout: Seconds to wait; L{None} waits as long as the
            session lasts.
        @return: A Deferred firing with the L{ReceivedStream}, not taken
            yet; failing with L{OperationTimedOut} after C{timeout} seconds,
            or with the reason the session ended.
        """
        return self._streams.recvStream(timeout)
