# -*- test-case-name: tests.test_streams_engine -*-
"""
The order in which a session's outgoing streams send: L{Scheduler}.

Streams waiting for a slot open in the order they were made (so their IDs
increase on the wire), once fewer than C{maxStreams} are open.  The open
streams with credit and bytes take turns, round robin, one record each (an
OPEN, one DATA record of at most the chunk size, or an END), for as long as
the session is writable: a turn is bounded, so no stream holds the others
(or the session's values) back for long, and the loop goes on while it can,
rather than sending one record per turn of the reactor.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from netstructer.streams.outgoing import OutgoingStream

__all__ = ["Scheduler"]


class Scheduler:
    """
    The turns of one session's outgoing streams.

    @ivar highestOpened: The highest ID whose OPEN was sent (0 before any).
    """

    def __init__(self, maxStreams: int, canSend: Callable[[], bool]) -> None:
        """
        @param maxStreams: How many streams may be open at once.
        @param canSend: Whether records may be sent now (the session is
            open, not closing, and writable).
        """
        self._maxStreams = maxStreams
        self._canSend = canSend
        # Lists: a session has few streams, most none, and an empty list
        # is a tenth of an empty deque.
        self._waiting: list[OutgoingStream] = []
        self._ready: list[OutgoingStream] = []
        self._open = 0
        self._running = False
        self.highestOpened = 0

    def add(self, stream: OutgoingStream) -> None:
        """
        A new stream: it opens once a slot is free, after those before it.
        """
        self._waiting.append(stream)
        self.run()

    def schedule(self, stream: OutgoingStream) -> None:
        """
        An open stream may have something to send: queue it for a turn.
        """
        if stream.openSent and not stream.queued and stream.wantsTurn():
            stream.queued = True
            self._ready.append(stream)
        self.run()

    def closed(self, stream: OutgoingStream) -> None:
        """
        A stream ended: its slot is free, if it had one.
        """
        if stream.openSent:
            self._open -= 1
            if self._waiting:
                self.run()

    def clear(self) -> None:
        """
        Forget every stream (the session ended).
        """
        self._waiting.clear()
        self._ready.clear()

    def _turns(self) -> Iterator[OutgoingStream]:
        """
        The streams to give a turn to, while records may be sent: a waiting
        stream first when a slot is free, else the next of the round robin.
        """
        while self._canSend():
            if self._waiting and self._open < self._maxStreams:
                stream = self._waiting.pop(0)
                if stream.wantsTurn():
                    self._open += 1
                    self.highestOpened = stream.streamID
                    yield stream
            elif self._ready:
                stream = self._ready.pop(0)
                stream.queued = False
                if stream.wantsTurn():
                    yield stream
            else:
                return

    def run(self) -> None:
        """
        Give turns to the streams with something to send, while records may
        be sent.  A call made while it runs (from an observer, or from the
        session as a record is sent) only adds to what the running loop goes
        through.
        """
        if self._running:
            return
        self._running = True
        try:
            for stream in self._turns():
                stream.turn()
                if not stream.queued and stream.wantsTurn():
                    stream.queued = True
                    self._ready.append(stream)
        finally:
            self._running = False
