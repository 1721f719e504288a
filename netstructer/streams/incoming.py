# -*- test-case-name: tests.test_streams_engine -*-
"""
The receiving side of one stream: L{IncomingStream}, a state machine driven
by the sender's records (through its engine) and by its owner (who accepts
or refuses it, consumes its bytes, and confirms or aborts it).

States and what moves them (every other pair is refused: a record from the
peer with L{StreamProtocolError}, a request of the owner with
L{LocalProtocolError})::

    OFFERED  --accept-->  RECEIVING  --END, checked-->  ENDED  --complete-->  COMPLETE
       |                   |   ^ DATA                     |
       +--refuse, timeout--+---+--abort, timeout,         +--abort-->  FAILED
                               |  a check failing
                               v
                           RESETTING  --the sender's END or ABORT-->  FAILED
    OFFERED, RECEIVING --the sender's ABORT-->  FAILED

RESETTING is where a stream waits, after this side's ABORT, for the
sender's last record (its answer, or an END or ABORT that crossed it): the
DATA records still in flight are dropped, within the credit granted.
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING, Final

from zope.interface import implementer

from netstructer.errors import (
    LocalProtocolError,
    StreamAborted,
    StreamError,
    StreamProtocolError,
)
from netstructer.streams._core import StreamsCore, abortError
from netstructer.streams.hashing import StreamHash
from netstructer.streams.interfaces import IIncomingStreamObserver
from netstructer.streams.wire import (
    MAX_WINDOW,
    STREAM_ABORT,
    STREAM_ACCEPT,
    STREAM_DONE,
    STREAM_WINDOW,
    AbortCode,
    StreamAbort,
    StreamData,
    StreamEnd,
    abortBody,
    acceptBody,
    doneBody,
    windowBody,
)

if TYPE_CHECKING:
    from hashlib import _Hash

__all__ = ["IncomingStream"]


class _State(enum.Enum):
    OFFERED = "offered (not accepted yet)"
    RECEIVING = "receiving"
    ENDED = "ended"
    RESETTING = "aborted by this side"
    COMPLETE = "complete"
    FAILED = "failed"


class _Input(enum.Enum):
    ACCEPT = "accept"
    DATA = "a DATA"
    END = "an END"
    PEER_ABORT = "an ABORT"
    ABORT = "an abort"
    COMPLETE = "complete"


_TRANSITIONS: Final = {
    (_State.OFFERED, _Input.ACCEPT): _State.RECEIVING,
    (_State.RECEIVING, _Input.DATA): _State.RECEIVING,
    (_State.RESETTING, _Input.DATA): _State.RESETTING,
    (_State.RECEIVING, _Input.END): _State.ENDED,
    (_State.RESETTING, _Input.END): _State.FAILED,
    (_State.OFFERED, _Input.PEER_ABORT): _State.FAILED,
    (_State.RECEIVING, _Input.PEER_ABORT): _State.FAILED,
    (_State.RESETTING, _Input.PEER_ABORT): _State.FAILED,
    (_State.OFFERED, _Input.ABORT): _State.RESETTING,
    (_State.RECEIVING, _Input.ABORT): _State.RESETTING,
    (_State.ENDED, _Input.ABORT): _State.FAILED,
    (_State.ENDED, _Input.COMPLETE): _State.COMPLETE,
}
"""Every legal move of an incoming stream."""

_OVER = (_State.RESETTING, _State.COMPLETE, _State.FAILED)


@implementer(IIncomingStreamObserver)
class _NotAccepted:
    """
    The observer of a stream not accepted (yet): it is told only of a
    failure, which the engine's observer is told too.
    """

    def dataReceived(self, data: bytes) -> None:
        raise LocalProtocolError("data arrived for a stream not accepted")

    def streamEnded(self) -> None:
        raise LocalProtocolError("a stream not accepted ended")

    def streamFailed(self, error: Exception) -> None:
        """
        Nothing: the engine's observer is told.
        """


_NOT_ACCEPTED: Final = _NotAccepted()


class IncomingStream:
    """
    A stream the peer sends this side, offered by the engine to its
    observer (L{IStreamsObserver.streamOffered
    <netstructer.streams.interfaces.IStreamsObserver.streamOffered>}).

    @ivar streamID: Its ID on this session.
    @ivar meta: Its meta, decoded.
    @ivar size: Its announced size, or L{None}.
    @ivar resume: Whether its sender can resume it (it may be accepted at
        an offset).
    @ivar offset: Where it was accepted (0 unless resumed).
    @ivar received: The bytes of the stream received so far, counted from
        its start (so at least C{offset}).
    @ivar sha256: Its SHA-256 once its END arrived and was checked.
    @ivar observer: Told of its data, end and failure, once accepted.
    """

    def __init__(
        self,
        core: StreamsCore,
        streamID: int,
        meta: object,
        size: int | None,
        resume: bool,
        maxStreamSize: int | None,
    ) -> None:
        self._core = core
        self.streamID = streamID
        self.meta = meta
        self.size = size
        self.resume = resume
        self._maxStreamSize = maxStreamSize
        self.offset = 0
        self.received = 0
        self.sha256: bytes | None = None
        self._digest = b""
        self.observer: IIncomingStreamObserver = _NOT_ACCEPTED
        self._state = _State.OFFERED
        self._hasher: StreamHash = core.newHash(None)
        self._window = 0
        self._outstanding = 0
        self._unconsumed = 0
        self._pendingCredit = 0
        self._since = core.now()

    def __repr__(self) -> str:
        return f"<IncomingStream {self.streamID} {self._state.name} {self.received} bytes>"

    def _move(self, event: _Input, fromPeer: bool) -> None:
        target = _TRANSITIONS.get((self._state, event))
        if target is None:
            what = f"{event.value} for stream {self.streamID}, which is {self._state.value}"
            if fromPeer:
                raise StreamProtocolError(f"the peer sent {what}")
            raise LocalProtocolError(f"cannot take {what}")
        self._state = target

    # Requests of the owner.

    def accept(
        self,
        observer: IIncomingStreamObserver,
        offset: int = 0,
        prefix: _Hash | None = None,
        window: int | None = None,
    ) -> None:
        """
        Take the stream: the sender may send C{window} bytes, and more as
        they are L{consumed}.

        @param observer: Told of its data, end and failure.
        @param offset: To resume: the size of the part this side holds
            already (only if the sender can resume, and at most its size).
        @param prefix: To resume: a SHA-256 hash object fed exactly that
            part; the stream's hash goes on from it, and the sender checks
            its digest against its own first C{offset} bytes.
        @param window: The credit to grant, from 1 to L{MAX_WINDOW} bytes;
            the engine's window by default.
        @raise ValueError: A bad offset, prefix or window.
        @raise LocalProtocolError: The stream was already answered, or
            failed.
        """
        window = self._core.window if window is None else window
        if not 1 <= window <= MAX_WINDOW:
            raise ValueError(f"a window is from 1 to {MAX_WINDOW} bytes, not {window}")
        if offset and not self.resume:
            raise ValueError(f"stream {self.streamID} cannot be resumed: accept it at offset 0")
        if offset < 0 or (self.size is not None and offset > self.size):
            raise ValueError(f"offset {offset} is outside stream {self.streamID}")
        if (prefix is None) != (offset == 0):
            raise ValueError("a prefix hash is given exactly when accepting at an offset")
        self._move(_Input.ACCEPT, fromPeer=False)
        self.observer = observer
        self.offset = self.received = offset
        if prefix is not None:
            self._hasher = self._core.newHash(prefix)
        self._window = self._outstanding = window
        digest = None if prefix is None else prefix.digest()
        body = acceptBody(self.streamID, window, offset, digest)
        self._core.sendControl(STREAM_ACCEPT, body, True)
        self._waitForSender()

    def refuse(self, reason: str = "", code: AbortCode = AbortCode.REFUSED) -> None:
        """
        Decline the stream: the sender sends none of it.

        @param reason: For the sender (it sees it).
        @param code: Why; L{AbortCode.REFUSED} by default.
        @raise LocalProtocolError: It was already accepted or refused.
        """
        if self._state is not _State.OFFERED:
            raise LocalProtocolError(
                f"cannot refuse stream {self.streamID}, which is {self._state.value}"
            )
        self._abort(code, reason or "declined by the receiving application")

    def consumed(self, count: int) -> None:
        """
        The owner is done with C{count} more bytes it was given: the sender
        may send as many more (the engine grants them in WINDOW records of
        at least half the window, as they add up).

        @raise ValueError: More bytes than were given and not yet consumed.
        """
        if not 0 <= count <= self._unconsumed:
            raise ValueError(
                f"consumed {count} bytes of stream {self.streamID}, of the "
                f"{self._unconsumed} delivered and not consumed yet"
            )
        self._unconsumed -= count
        if self._state is not _State.RECEIVING:
            return
        self._pendingCredit += count
        if self._pendingCredit >= max(self._window // 2, 1):
            self._grant()

    def complete(self) -> None:
        """
        The stream was kept: confirm it to the sender (a DONE record with
        its size and SHA-256).

        @raise LocalProtocolError: It has not ended, or failed.
        """
        self._move(_Input.COMPLETE, fromPeer=False)
        body = doneBody(self.streamID, self.received, self._digest)
        self._core.sendControl(STREAM_DONE, body, True)
        self._core.streamClosed(self)

    def abort(self, reason: str, code: AbortCode = AbortCode.FAILED) -> None:
        """
        End the stream because keeping it failed on this side (a full
        disk, a quota): the sender is told C{code} and C{reason}.  Nothing
        if it already ended.
        """
        if self._state in _OVER:
            return
        self._abort(code, reason)

    # Credit and time.

    def _grant(self) -> None:
        increment = self._pendingCredit
        self._pendingCredit = 0
        if self.size is not None:
            increment = min(increment, self.size - self.received - self._outstanding)
        if increment <= 0:
            return
        waiting = self._outstanding == 0
        self._outstanding += increment
        self._core.sendControl(STREAM_WINDOW, windowBody(self.streamID, increment), True)
        if waiting:
            self._waitForSender()

    def _waitForSender(self) -> None:
        self._since = self._core.now()
        if self._core.idleTimeout is not None:
            self._core.armTimer(self._since + self._core.idleTimeout)

    def deadlineReached(self, now: float) -> float | None:
        """
        Abort the stream (code TIMEOUT) if it waited on the sender, or on
        its owner's answer to the offer, for the idle timeout.

        @return: Its deadline, if it still has one.
        """
        timeout = self._core.idleTimeout
        if timeout is None:
            return None
        if self._state is _State.OFFERED:
            waited = "an answer of its application"
        elif self._state is _State.RECEIVING and self._outstanding:
            waited = "data from the sender, which had credit"
        else:
            return None
        deadline = self._since + timeout
        if now < deadline:
            return deadline
        self._abort(AbortCode.TIMEOUT, f"waited {timeout} seconds for {waited}")
        return None

    # Records from the sender.

    def dataReceived(self, record: StreamData) -> None:
        """
        The sender's next bytes.

        @raise StreamProtocolError: Not after an ACCEPT, or past the
            credit granted.
        """
        self._move(_Input.DATA, fromPeer=True)
        count = len(record.payload)
        if count > self._outstanding:
            raise StreamProtocolError(
                f"the peer sent {count} bytes on stream {self.streamID} with only "
                f"{self._outstanding} bytes of credit"
            )
        self._outstanding -= count
        if self._state is not _State.RECEIVING:
            return
        self._since = self._core.now()
        end = self.received + count
        if record.offset != self.received:
            self._abort(
                AbortCode.INTEGRITY,
                f"data at offset {record.offset} where {self.received} was next: out of order",
            )
        elif self.size is not None and end > self.size:
            self._abort(AbortCode.TOO_LARGE, f"more than the {self.size} bytes it announced")
        elif self._maxStreamSize is not None and end > self._maxStreamSize:
            self._abort(AbortCode.TOO_LARGE, f"over the limit of {self._maxStreamSize} bytes")
        else:
            # The payload is a view of the session's receive buffer: copy it
            # once, for the hash and the observer alike.
            data = bytes(record.payload)
            self._hasher.update(data)
            self.received = end
            self._unconsumed += count
            self.observer.dataReceived(data)

    def endReceived(self, record: StreamEnd) -> None:
        """
        The sender's END: check the size and SHA-256 it gives.

        @raise StreamProtocolError: Before an ACCEPT, or after an END.
        """
        self._move(_Input.END, fromPeer=True)
        if self._state is _State.FAILED:
            self._core.streamClosed(self)
            return
        digest = self._hasher.digest()
        problem = None
        if record.size != self.received:
            problem = f"its END says {record.size} bytes but {self.received} arrived"
        elif self.size is not None and record.size != self.size:
            problem = f"it ended after {record.size} of the {self.size} bytes announced"
        elif record.sha256 != digest:
            problem = "the SHA-256 of what arrived is not the one its END gives"
        if problem is not None:
            self._abort(AbortCode.INTEGRITY, f"truncated or damaged: {problem}")
            return
        self.sha256 = self._digest = digest
        self.observer.streamEnded()

    def abortReceived(self, record: StreamAbort) -> None:
        """
        The sender's ABORT: its answer to this side's, or its own.

        @raise StreamProtocolError: After its END.
        """
        wasOver = self._state is _State.RESETTING
        self._move(_Input.PEER_ABORT, fromPeer=True)
        self._core.streamClosed(self)
        if not wasOver:
            error = abortError(self.streamID, record.code, record.reason, True, True)
            self._tellFailed(error)

    # Ending.

    def _abort(self, code: AbortCode, reason: str) -> None:
        """
        Abort the stream from this side: send an ABORT, and tell the
        observers.  The stream is forgotten at once if the sender's last
        record arrived, else once it does.
        """
        error = abortError(self.streamID, code, reason, False, True)
        self._move(_Input.ABORT, fromPeer=False)
        self._core.sendControl(STREAM_ABORT, abortBody(self.streamID, code, reason), True)
        if self._state is _State.FAILED:
            self._core.streamClosed(self)
        self._tellFailed(error)

    def _tellFailed(self, error: StreamError) -> None:
        self.observer.streamFailed(error)
        self._core.streamFailed(self, error)

    def sessionLost(self, reason: BaseException) -> None:
        """
        The session ended.  A stream whose END arrived is whole: it stays
        so (only its confirmation cannot be sent).  One still arriving
        fails.
        """
        if self._state in (_State.OFFERED, _State.RECEIVING):
            self._state = _State.FAILED
            error = StreamAborted(
                f"the session with {self._core.peer} ended before stream {self.streamID} "
                f"did ({reason}): {self.received} bytes arrived",
                streamID=self.streamID,
            )
            self._tellFailed(error)
        elif self._state is _State.RESETTING:
            self._state = _State.FAILED
