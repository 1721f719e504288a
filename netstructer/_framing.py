# -*- test-case-name: tests.test_protocol -*-
"""
L{FrameReceiver}: length-prefixed frames out of a Twisted byte stream, in
linear time, with the pauses a session needs.
"""

from __future__ import annotations

import struct

from twisted.protocols.basic import Int32StringReceiver

from netstructer.errors import FrameTooLarge
from netstructer.session.framing import FrameReader

__all__ = ["FrameReceiver"]

_PREFIX = struct.Struct("!I")


class FrameReceiver(Int32StringReceiver):
    """
    Frames prefixed with their 4-byte big-endian length, as
    L{Int32StringReceiver} reads them (whose interface, C{stringReceived},
    C{MAX_LENGTH} and C{lengthLimitExceeded}, it keeps), but split by a
    L{FrameReader<netstructer.session.framing.FrameReader>}: in linear time,
    a frame that arrives within one read handed over in place, without a
    copy, and a large frame received into one buffer of its announced
    length that the connection reuses.  A subclass may stop the frames from
    being handed over (L{_receiveBlocked}) and end them (L{_receivingEnded}).

    A frame is handed to C{stringReceived} as a L{memoryview}, valid only
    during that call.
    """

    def __init__(self, frames: FrameReader | None = None) -> None:
        """
        @param frames: The reader to split frames with; a new one by default.
        """
        self._frames = frames if frames is not None else FrameReader(self.MAX_LENGTH)
        self._frames.maxFrame = self.MAX_LENGTH
        self._framesFailed = False
        self._processing = False
        # Whether the reader holds no byte: kept here (set when fed, found
        # again when its frames were handed over) so that the common case,
        # a frame alone in one read, need not ask it.
        self._readerEmpty = not self._frames.pending

    # The subclass's hooks.

    _receiveBlocked = False
    """Whether frames must wait (reading is paused, or something of an
    earlier frame is held back); a subclass keeps it."""

    def _frameAlone(self, frame: memoryview) -> None:
        """
        Handle a frame that arrived alone, in one read, with nothing
        buffered: as one frame of L{_processBuffer}.

        @param frame: The frame's payload, in place.
        """
        self._receivingStarted()
        try:
            self.stringReceived(frame)
        finally:
            self._framesHandled()

    def _receivingStarted(self) -> None:
        """
        Frames are about to be handed over.
        """

    def _framesHandled(self) -> None:
        """
        The frames of the data received were handed over (or the data held
        none).
        """

    def _receivingEnded(self) -> bool:
        """
        @return: Whether the connection failed or ended while a frame was
            handled: the rest of the buffer is dropped.
        """
        return False

    def _resumeHeld(self) -> None:
        """
        Deliver what an earlier frame left when receiving paused, before
        the next frame.
        """

    # Framing.

    def dataReceived(self, data: bytes) -> None:
        """
        Split the stream into frames and hand each to C{stringReceived}
        (see L{FrameReader<netstructer.session.framing.FrameReader>}: a
        frame that arrives within one read is handed over in place, a large
        one is received into a buffer of its own).  A length prefix over
        C{MAX_LENGTH} calls C{lengthLimitExceeded} before the frame is
        buffered; nothing is read after it.
        """
        if self._framesFailed:
            return
        frames = self._frames
        if not self._receiveBlocked and not self._processing and len(data) >= 4:
            (length,) = _PREFIX.unpack_from(data)
            if len(data) == 4 + length and length <= self.MAX_LENGTH and self._readerEmpty:
                # Exactly one frame, and nothing else waits (a request, or
                # its answer, in one read): handed over in place.  C{data}
                # is immutable, so a view of it that outlives this call
                # harms nothing.
                self._processing = True
                try:
                    self._frameAlone(memoryview(data)[4:])
                finally:
                    self._processing = False
                return
        self._readerEmpty = False
        frames.feed(data)
        self._processBuffer()

    def setFrameLimit(self, limit: int) -> None:
        """
        Accept frames of up to C{limit} bytes from now on (larger once the
        peer has authenticated).

        @param limit: The new C{MAX_LENGTH}.
        """
        self.MAX_LENGTH = limit
        self._frames.maxFrame = limit

    def _processBuffer(self) -> None:
        """
        Hand over the complete frames buffered, while receiving may go on.
        """
        if self._processing:
            # Called from a handler (resumeReceiving) while a frame is being
            # delivered: the running loop goes on with the next frame.
            return
        self._processing = True
        self._receivingStarted()
        frames = self._frames
        try:
            self._resumeHeld()
            while not self._receiveBlocked:
                try:
                    frame = frames.nextFrame()
                except FrameTooLarge as e:
                    self._dropFrames()
                    self.lengthLimitExceeded(e.length)
                    return
                if frame is None:
                    break
                self.stringReceived(frame)
                if self._receivingEnded():
                    self._dropFrames()
                    return
        finally:
            self._processing = False
            self._readerEmpty = not self._frames.pending
            self._framesHandled()

    def _dropFrames(self) -> None:
        """
        Nothing more is read from this connection: forget what is buffered.
        """
        self._framesFailed = True
        self._frames = FrameReader(0)
        self._readerEmpty = True

    @property
    def bufferedBytes(self) -> int:
        """
        Bytes received and not yet handed over.
        """
        return self._frames.pending
