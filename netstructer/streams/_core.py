# -*- test-case-name: tests.test_streams_engine -*-
"""
What a stream's state machine needs of its engine (L{StreamsCore}), and the
errors a stream fails with.  Private: shared by L{netstructer.streams.outgoing},
L{netstructer.streams.incoming} and L{netstructer.streams.engine}, so that
neither stream module imports the engine.
"""

from __future__ import annotations

import enum
from typing import Any, Protocol

from netstructer.errors import (
    ResumeMismatch,
    StreamAborted,
    StreamError,
    StreamIntegrityError,
    StreamRefused,
    StreamTimeout,
    StreamTooLarge,
    TooManyStreams,
)
from netstructer.streams.hashing import HashFactory
from netstructer.streams.wire import AbortCode

__all__ = ["StreamsCore", "abortError"]


class StreamsCore(Protocol):
    """
    The engine, as its streams see it.

    @ivar chunkSize: The most payload bytes one DATA record carries.
    @ivar window: The credit an incoming stream is accepted with by default.
    @ivar idleTimeout: Seconds a stream waits on the peer, or L{None}.
    @ivar peer: The peer, for messages.
    @ivar newHash: Makes a stream's SHA-256.
    """

    window: int
    idleTimeout: float | None
    newHash: HashFactory

    @property
    def peer(self) -> str:
        """
        The peer, for messages.
        """

    @property
    def chunkSize(self) -> int:
        """
        The most payload bytes one DATA record carries.
        """

    def now(self) -> float:
        """
        @return: The session's time.
        """

    def sendControl(self, recordType: int, body: bytes, answer: bool) -> None:
        """
        Send a small record of a stream (any but DATA), unless the session
        is closing.

        @param answer: Whether it answers the peer (ACCEPT, WINDOW, DONE, a
            refusal, an ABORT answering an ABORT): those are bounded while
            the session is not writable.
        """

    def sendData(self, streamID: int, offset: int, payload: bytes | memoryview) -> None:
        """
        Send a DATA record.
        """

    # The streams are typed Any here: the stream modules import this one,
    # not the other way round.

    def schedule(self, stream: Any) -> None:
        """
        An outgoing stream may have something to send: give it a turn.
        """

    def armTimer(self, deadline: float) -> None:
        """
        A stream needs the engine's C{timeReached} at C{deadline} at the
        latest.
        """

    def streamClosed(self, stream: Any) -> None:
        """
        A stream reached its end on both sides: forget it, and free its
        slot.
        """

    def streamFailed(self, stream: Any, error: Exception) -> None:
        """
        A stream failed: tell the engine's observer.
        """


class _Who(enum.Enum):
    SENDER = "the sender"
    RECEIVER = "the receiver"


_ERRORS: dict[AbortCode, type[StreamError]] = {
    AbortCode.CANCELLED: StreamAborted,
    AbortCode.REFUSED: StreamRefused,
    AbortCode.TOO_MANY: TooManyStreams,
    AbortCode.TOO_LARGE: StreamTooLarge,
    AbortCode.INTEGRITY: StreamIntegrityError,
    AbortCode.TIMEOUT: StreamTimeout,
    AbortCode.FAILED: StreamAborted,
    AbortCode.RESUME_MISMATCH: ResumeMismatch,
}

_ADVICE = {
    AbortCode.CANCELLED: "it was given up",
    AbortCode.REFUSED: "its application declined it",
    AbortCode.TOO_MANY: "send fewer streams at once, or raise the receiver's maxStreams",
    AbortCode.TOO_LARGE: "send less, or raise the receiver's limit",
    AbortCode.INTEGRITY: "send it again",
    AbortCode.TIMEOUT: "check that the other side is alive and reading, or raise idleTimeout",
    AbortCode.FAILED: "see that side's log",
    AbortCode.RESUME_MISMATCH: "the source changed: send it again without resuming",
}


def abortError(
    streamID: int, code: AbortCode, reason: str, byPeer: bool, receiving: bool
) -> StreamError:
    """
    The error a stream fails with when it is aborted.

    @param streamID: The stream.
    @param code: The ABORT's code.
    @param reason: The ABORT's reason (may be empty).
    @param byPeer: Whether the peer sent the ABORT (else this side did).
    @param receiving: Whether this side receives the stream.
    @return: The L{StreamError} subclass for C{code}, with a message naming
        who aborted, why, and what to do.
    """
    if byPeer:
        who = _Who.SENDER if receiving else _Who.RECEIVER
    else:
        who = _Who.RECEIVER if receiving else _Who.SENDER
    side = "the peer" if byPeer else "this side"
    because = f": {reason}" if reason else ""
    message = (
        f"{who.value} ({side}) aborted stream {streamID} with {code.name}{because} "
        f"({_ADVICE[code]})"
    )
    return _ERRORS[code](message, streamID=streamID, code=int(code), byPeer=byPeer)
