# -*- test-case-name: tests.test_protocol -*-
"""
L{FrameReceiver}: length-prefixed frames out of a Twisted byte stream, in
linear time, with the pauses a session needs.
"""

from __future__ import annotations

import struct

from twisted.protocols.basic import Int32StringReceiver

__all__ = ["FrameReceiver"]

_PREFIX = struct.Struct("!I")


class FrameReceiver(Int32StringReceiver):
    """
    Frames prefixed with their 4-byte big-endian length, as
    L{Int32StringReceiver} reads them (whose interface, C{stringReceived},
    C{MAX_LENGTH} and C{lengthLimitExceeded}, it keeps), but buffering is
    linear in the frame size, a frame that arrives alone in one read is
    handed over in place, without a copy, and a subclass may stop the
    frames from being handed over (L{_mayReceive}) and end them
    (L{_receivingEnded}).

    A frame is handed to C{stringReceived} as a L{memoryview}, valid only
    during that call.
    """

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._processing = False

    # The subclass's hooks.

    def _mayReceive(self) -> bool:
        """
        @return: Whether frames may be handed over now (reading is not
            paused, nothing of an earlier frame is held back).
        """
        return True

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
        Split the stream into frames in linear time and hand each to
        C{stringReceived}.  A length prefix over C{MAX_LENGTH} calls
        C{lengthLimitExceeded} before the frame is buffered.
        """
        if not self._buffer and not self._processing and len(data) >= 4 and self._mayReceive():
            (length,) = _PREFIX.unpack_from(data)
            if len(data) == 4 + length and length <= self.MAX_LENGTH:
                # The frame is read in place (a request, or its answer, in
                # one read): C{data} is immutable, so a view of it that
                # outlives this call harms nothing.
                self._processing = True
                self._receivingStarted()
                try:
                    self.stringReceived(memoryview(data)[4:])
                finally:
                    self._processing = False
                    self._framesHandled()
                return
        self._buffer += data
        self._processBuffer()

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
        buffer = self._buffer
        offset = 0
        available = len(buffer)
        try:
            self._resumeHeld()
            while available - offset >= 4 and self._mayReceive():
                (length,) = _PREFIX.unpack_from(buffer, offset)
                if length > self.MAX_LENGTH:
                    del buffer[:]
                    self.lengthLimitExceeded(length)
                    return
                end = offset + 4 + length
                if end > available:
                    break
                with memoryview(buffer) as view, view[offset + 4 : end] as frame:
                    offset = end
                    self.stringReceived(frame)
                if self._receivingEnded():
                    del buffer[:]
                    return
        finally:
            self._processing = False
            if offset:
                del buffer[:offset]
            self._framesHandled()

    @property
    def bufferedBytes(self) -> int:
        """
        Bytes received and not yet handed over.
        """
        return len(self._buffer)
