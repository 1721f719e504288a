# -*- test-case-name: tests.test_streams_engine -*-
"""
The sending side of one stream: L{OutgoingStream}, a state machine driven
by its engine (which gives it turns to send and hands it the receiver's
records) and by its owner (who cancels it, or resumes it).

States and what moves them (every other pair is refused: a record from the
peer with L{StreamProtocolError}, a request of the owner with
L{LocalProtocolError})::

    PENDING  --OPEN sent-->  OPENING  --ACCEPT-->  SENDING  --END sent-->  ENDING
                               |                     ^                       |
                               +--ACCEPT at offset-->RESUMING               DONE
                                                  (resumeFrom)               v
                                                                         CONFIRMED
    any state but the last two --ABORT (either side), a timeout, a failing
    source, the session's end-->  FAILED
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING, Final

from netstructer.errors import (
    LocalProtocolError,
    StreamAborted,
    StreamError,
    StreamIntegrityError,
    StreamProtocolError,
    StreamTimeout,
)
from netstructer.streams._core import StreamsCore, abortError
from netstructer.streams.hashing import StreamHash
from netstructer.streams.interfaces import IOutgoingStreamObserver, IStreamSource
from netstructer.streams.wire import (
    MAX_WINDOW,
    STREAM_ABORT,
    STREAM_END,
    STREAM_OPEN,
    AbortCode,
    StreamAbort,
    StreamAccept,
    StreamDone,
    StreamWindow,
    abortBody,
    endBody,
    openBody,
)

if TYPE_CHECKING:
    from hashlib import _Hash

__all__ = ["OutgoingStream"]


class _State(enum.Enum):
    PENDING = "pending"
    OPENING = "opening"
    RESUMING = "resuming"
    SENDING = "sending"
    ENDING = "ending"
    CONFIRMED = "confirmed"
    FAILED = "failed"


class _Input(enum.Enum):
    OPEN_SENT = "the OPEN was sent"
    ACCEPTED = "an ACCEPT"
    ACCEPTED_AT_OFFSET = "an ACCEPT at an offset"
    RESUMED = "resumeFrom"
    END_SENT = "the END was sent"
    WINDOW = "a WINDOW"
    DONE = "a DONE"
    FAILED = "a failure"


_LIVE = (_State.OPENING, _State.RESUMING, _State.SENDING, _State.ENDING)

_TRANSITIONS: Final = {
    (_State.PENDING, _Input.OPEN_SENT): _State.OPENING,
    (_State.OPENING, _Input.ACCEPTED): _State.SENDING,
    (_State.OPENING, _Input.ACCEPTED_AT_OFFSET): _State.RESUMING,
    (_State.RESUMING, _Input.RESUMED): _State.SENDING,
    (_State.SENDING, _Input.END_SENT): _State.ENDING,
    (_State.RESUMING, _Input.WINDOW): _State.RESUMING,
    (_State.SENDING, _Input.WINDOW): _State.SENDING,
    (_State.ENDING, _Input.WINDOW): _State.ENDING,
    (_State.ENDING, _Input.DONE): _State.CONFIRMED,
    **{(state, _Input.FAILED): _State.FAILED for state in (_State.PENDING, *_LIVE)},
}
"""Every legal move of an outgoing stream."""


class OutgoingStream:
    """
    A stream this side sends.  Made by L{StreamsEngine.openStream
    <netstructer.streams.engine.StreamsEngine.openStream>}.

    @ivar streamID: Its ID on this session.
    @ivar meta: Its meta, as given.
    @ivar size: Its announced size, or L{None}.
    @ivar resume: Whether the receiver may accept it at an offset.
    @ivar offset: Where sending started: the receiver's offset when
        resuming, else 0.
    @ivar sent: The bytes of the stream sent so far, counted from its
        start (so at least C{offset}).
    @ivar sha256: The stream's SHA-256 once its END was sent, else L{None}.
    @ivar observer: Told of progress, confirmation and failure.
    @ivar openSent: Whether its OPEN was sent (records for it may arrive).
    @ivar queued: Whether it is in the engine's queue of turns.
    """

    def __init__(
        self,
        core: StreamsCore,
        streamID: int,
        source: IStreamSource,
        meta: object,
        metaEncoded: bytes,
        size: int | None,
        resume: bool,
        observer: IOutgoingStreamObserver,
    ) -> None:
        self._core = core
        self.streamID = streamID
        self._source = source
        self.meta = meta
        self._metaEncoded = metaEncoded
        self.size = size
        self.resume = resume
        self.observer = observer
        self.offset = 0
        self.sent = 0
        self.sha256: bytes | None = None
        self._state = _State.PENDING
        self._credit = 0
        self._starved = False
        self._hasher: StreamHash = core.newHash(None)
        self._deadline: float | None = None
        self._offeredDigest: bytes | None = None
        # Whether its OPEN was sent (records for it may arrive), and whether
        # it is in the engine's queue of turns.
        self.openSent = False
        self.queued = False

    def __repr__(self) -> str:
        return f"<OutgoingStream {self.streamID} {self._state.value} {self.sent} bytes sent>"

    def _move(self, event: _Input, fromPeer: bool) -> None:
        target = _TRANSITIONS.get((self._state, event))
        if target is None:
            what = f"{event.value} for stream {self.streamID}, which is {self._state.value}"
            if fromPeer:
                raise StreamProtocolError(f"the peer sent {what}")
            raise LocalProtocolError(f"cannot take {what}")
        self._state = target

    # Requests of the owner.

    def cancel(self, reason: str = "") -> None:
        """
        Give the stream up: the receiver discards what it received of it.
        Nothing if it already ended.  After its END was sent the receiver
        may keep it anyway; this side stops waiting for its confirmation.

        @param reason: For the receiver's log (it sees it).
        """
        if self._state in (_State.CONFIRMED, _State.FAILED):
            return
        error = StreamAborted(
            f"stream {self.streamID} was cancelled{': ' + reason if reason else ''}",
            streamID=self.streamID,
            code=int(AbortCode.CANCELLED),
        )
        self._fail(error, AbortCode.CANCELLED, reason)

    def abort(self, reason: str, code: AbortCode = AbortCode.FAILED) -> None:
        """
        End the stream because something failed on this side: the receiver
        is told C{code} and C{reason}.  To give up a resumed stream whose
        prefix does not match, use C{code=AbortCode.RESUME_MISMATCH}.

        @raise LocalProtocolError: The stream already ended.
        """
        if self._state in (_State.CONFIRMED, _State.FAILED):
            raise LocalProtocolError(f"stream {self.streamID} already ended")
        self._fail(abortError(self.streamID, code, reason, False, False), code, reason)

    def resumeFrom(self, offset: int, prefix: _Hash) -> None:
        """
        Go on from C{offset}, once L{IOutgoingStreamObserver.resumeOffered}
        was called with it and the source's first C{offset} bytes were found
        to match: the source's next bytes are those at C{offset}.

        @param offset: The offset offered.
        @param prefix: A SHA-256 hash object fed exactly the source's first
            C{offset} bytes (the stream's hash goes on from it).
        @raise LocalProtocolError: No resume was offered at C{offset}, or
            C{prefix} is not that of the part the receiver holds.
        """
        if self._state is not _State.RESUMING or offset != self.offset:
            raise LocalProtocolError(
                f"stream {self.streamID} was offered no resume at offset {offset}"
            )
        if prefix.digest() != self._offeredDigest:
            raise LocalProtocolError(
                f"the source's first {offset} bytes do not match the receiver's part: "
                "abort the stream with RESUME_MISMATCH instead"
            )
        self._move(_Input.RESUMED, fromPeer=False)
        self._hasher = self._core.newHash(prefix)
        self.sent = offset
        self._core.schedule(self)

    def prefixChecked(self, offset: int, prefix: _Hash | None) -> None:
        """
        The source's first C{offset} bytes were compared with the part the
        receiver offered to resume from: go on from C{offset} if they
        match (L{resumeFrom}), else abort with RESUME_MISMATCH.

        @param offset: The offset offered.
        @param prefix: A SHA-256 hash object fed those bytes if they match,
            or L{None} if they do not.
        """
        if prefix is None:
            self.abort(
                f"the receiver's first {offset} bytes are not those of this file",
                AbortCode.RESUME_MISMATCH,
            )
        else:
            self.resumeFrom(offset, prefix)

    def sourceReady(self) -> None:
        """
        The source has bytes again (or its end) after answering L{None}.
        """
        self._starved = False
        self._core.schedule(self)

    # The engine's side.

    def wantsTurn(self) -> bool:
        """
        @return: Whether the stream has something to send now.
        """
        if self._state is _State.PENDING:
            return True
        if self._state is not _State.SENDING or self._starved:
            return False
        return self._credit > 0 or self.sent == self.size

    def turn(self) -> None:
        """
        Send what the stream can: its OPEN, one DATA record of at most the
        engine's chunk size and the stream's credit, or its END.
        """
        if self._state is _State.PENDING:
            self._sendOpen()
        elif self._state is _State.SENDING and not self._starved:
            self._sendData()

    def _sendOpen(self) -> None:
        body = openBody(self.streamID, self._metaEncoded, self.size, self.resume)
        self._move(_Input.OPEN_SENT, fromPeer=False)
        self.openSent = True
        self._core.sendControl(STREAM_OPEN, body, answer=False)
        self._setDeadline()

    def _read(self, maximum: int) -> bytes | memoryview | None:
        try:
            data = self._source.read(maximum)
        except Exception as e:  # noqa: BLE001 -- a failing source ends its stream only
            error = StreamAborted(
                f"the source of stream {self.streamID} failed: {e!r}",
                streamID=self.streamID,
                code=int(AbortCode.FAILED),
            )
            error.__cause__ = e
            self._fail(error, AbortCode.FAILED, "the sender's source failed")
            return None
        if data is not None and len(data) > maximum:
            self._failLocally(f"its source returned {len(data)} bytes when asked for {maximum}")
            return None
        return data

    def _sendData(self) -> None:
        remaining = None if self.size is None else self.size - self.sent
        if remaining == 0:
            # Read once more: a source longer than announced is a fault.
            probe = self._read(1)
            if self._state is not _State.SENDING:
                return
            if probe is None:
                self._starved = True
            elif probe:
                self._failLocally(f"its source holds more than the {self.size} bytes announced")
            else:
                self._sendEnd()
            return
        maximum = min(self._core.chunkSize, self._credit)
        if remaining is not None:
            maximum = min(maximum, remaining)
        data = self._read(maximum)
        if self._state is not _State.SENDING:
            return
        if data is None:
            self._starved = True
            return
        if not data:
            if remaining is not None:
                self._failLocally(
                    f"its source ended after {self.sent} of the {self.size} bytes announced"
                )
                return
            self._sendEnd()
            return
        self._hasher.update(data)
        offset = self.sent
        self.sent += len(data)
        self._credit -= len(data)
        self._core.sendData(self.streamID, offset, data)
        if self._state is _State.SENDING:
            self.observer.streamProgressed(self.sent)

    def _sendEnd(self) -> None:
        self.sha256 = self._hasher.digest()
        self._move(_Input.END_SENT, fromPeer=False)
        self._core.sendControl(STREAM_END, endBody(self.streamID, self.sent, self.sha256), False)
        self._setDeadline()

    def _failLocally(self, problem: str) -> None:
        error = StreamAborted(
            f"stream {self.streamID} failed on this side: {problem}",
            streamID=self.streamID,
            code=int(AbortCode.FAILED),
        )
        self._fail(error, AbortCode.FAILED, problem)

    def _fail(self, error: Exception, code: AbortCode | None, reason: str) -> None:
        """
        End the stream in failure: send an ABORT if the receiver knows of
        the stream and this side's last record was not its END, forget it,
        and tell the observers.
        """
        tellPeer = code is not None and self._state in (
            _State.OPENING,
            _State.RESUMING,
            _State.SENDING,
        )
        self._move(_Input.FAILED, fromPeer=False)
        self._deadline = None
        if tellPeer and code is not None:
            self._core.sendControl(STREAM_ABORT, abortBody(self.streamID, code, reason), False)
        self._core.streamClosed(self)
        self.observer.streamFailed(error)
        self._core.streamFailed(self, error)

    def _setDeadline(self) -> None:
        timeout = self._core.idleTimeout
        if timeout is None:
            self._deadline = None
            return
        self._deadline = self._core.now() + timeout
        self._core.armTimer(self._deadline)

    # Records from the receiver.

    def acceptReceived(self, record: StreamAccept) -> None:
        """
        The receiver accepted the stream.

        @raise StreamProtocolError: Not after an OPEN, or at an offset for
            a stream that may not resume, or past its size.
        """
        if record.offset == 0:
            self._move(_Input.ACCEPTED, fromPeer=True)
        else:
            if not self.resume or (self.size is not None and record.offset > self.size):
                raise StreamProtocolError(
                    f"the peer accepted stream {self.streamID} at offset {record.offset}, "
                    f"which it may not (resume {'asked' if self.resume else 'not asked'}, "
                    f"size {self.size})"
                )
            self._move(_Input.ACCEPTED_AT_OFFSET, fromPeer=True)
        self._deadline = None
        self._credit = record.window
        digest = record.prefixSHA256
        if digest is None:
            self._core.schedule(self)
            return
        self.offset = record.offset
        self._offeredDigest = digest
        self.observer.resumeOffered(record.offset, digest)

    def windowReceived(self, record: StreamWindow) -> None:
        """
        More credit.

        @raise StreamProtocolError: Before the ACCEPT, or past
            L{MAX_WINDOW}.
        """
        self._move(_Input.WINDOW, fromPeer=True)
        if self._credit + record.increment > MAX_WINDOW:
            raise StreamProtocolError(
                f"the peer granted stream {self.streamID} credit over {MAX_WINDOW} bytes"
            )
        self._credit += record.increment
        if self._state is _State.SENDING:
            self._core.schedule(self)

    def doneReceived(self, record: StreamDone) -> None:
        """
        The receiver confirmed the stream.

        @raise StreamProtocolError: Before the END.
        """
        if self._state is not _State.ENDING:
            self._move(_Input.DONE, fromPeer=True)
        self._deadline = None
        if (record.size, record.sha256) != (self.sent, self.sha256):
            error = StreamIntegrityError(
                f"the receiver confirmed stream {self.streamID} with {record.size} bytes and "
                f"SHA-256 {record.sha256.hex()}, not the {self.sent} bytes and "
                f"{(self.sha256 or b'').hex()} sent: send it again",
                streamID=self.streamID,
            )
            self._move(_Input.FAILED, fromPeer=True)
            self._core.streamClosed(self)
            self.observer.streamFailed(error)
            self._core.streamFailed(self, error)
            return
        self._move(_Input.DONE, fromPeer=True)
        self._core.streamClosed(self)
        self.observer.streamConfirmed(record.size, record.sha256)

    def abortReceived(self, record: StreamAbort) -> None:
        """
        The receiver aborted the stream: answer with an ABORT (unless this
        side's END was sent), and fail.
        """
        error = abortError(self.streamID, record.code, record.reason, True, False)
        answer = self._state in (_State.OPENING, _State.RESUMING, _State.SENDING)
        self._move(_Input.FAILED, fromPeer=True)
        self._deadline = None
        if answer:
            self._core.sendControl(STREAM_ABORT, abortBody(self.streamID, record.code), True)
        self._core.streamClosed(self)
        self.observer.streamFailed(error)
        self._core.streamFailed(self, error)

    # Time and the session.

    def deadlineReached(self, now: float) -> float | None:
        """
        Fail the stream if its deadline passed.

        @return: Its deadline, if it still has one.
        """
        if self._deadline is None or now < self._deadline:
            return self._deadline
        waited = "an answer to its OPEN" if self._state is _State.OPENING else "its confirmation"
        error = StreamTimeout(
            f"stream {self.streamID} waited {self._core.idleTimeout} seconds for {waited} "
            f"from {self._core.peer}: check that the peer is alive and reading",
            streamID=self.streamID,
            code=int(AbortCode.TIMEOUT),
        )
        self._fail(error, AbortCode.TIMEOUT, f"no answer for {self._core.idleTimeout} seconds")
        return None

    def sessionLost(self, error: StreamError | Exception) -> None:
        """
        The session is closing or ended: fail, sending nothing.
        """
        if self._state in (_State.CONFIRMED, _State.FAILED):
            return
        self._fail(error, None, "")
