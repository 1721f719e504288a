# -*- test-case-name: tests.test_streams_engine -*-
"""
The streams of one session: L{StreamsEngine}, the capability
(L{ICapability<netstructer.session.capability.ICapability>}) that sends and
receives streams beside the session's values, sans-IO.

It owns the streams record types (L{netstructer.streams.wire}) and keeps,
per session:

    - the outgoing streams (L{OutgoingStream}), at most C{maxStreams} open at
      once (more wait for a slot, in order), each sending only within the
      credit its receiver granted;
    - the incoming streams (L{IncomingStream}), at most C{maxStreams} (more
      are refused with TOO_MANY), each granting credit as its owner consumes
      it;
    - a fair schedule: while the session is writable, the streams that have
      credit and bytes take turns of one DATA record (at most C{chunkSize}
      bytes) each, round robin, for as long as the session stays writable
      (not one record per turn of the reactor);
    - the idle deadlines of its streams, behind one wake-up asked of the
      session (L{ISessionHost.wakeAt
      <netstructer.session.capability.ISessionHost.wakeAt>});
    - a bound on the records it sends in answer to the peer while the
      session is not writable, so that a peer that asks without reading
      cannot grow this side's memory (as h2 bounds its control frames).

What breaks the rules in a way no well-behaved peer can (a malformed
record, a record for a stream never opened or closed, data past the credit
granted) raises L{StreamProtocolError} from L{StreamsEngine.recordReceived},
which fails the session.  Everything a well-behaved peer can meet (a
refusal, a stream too large or too many, a damaged or late stream) ends that
stream only, with an ABORT record both sides report.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from zope.interface import implementer

from netstructer.channel import Role
from netstructer.errors import (
    BufferDataError,
    ChannelClosedError,
    LocalProtocolError,
    PeerVersionError,
    StreamAborted,
    StreamProtocolError,
)
from netstructer.session.capability import ICapability, ISessionHost
from netstructer.session.config import BridgeConfig
from netstructer.streams.hashing import HashFactory, inlineSha256
from netstructer.streams.incoming import IncomingStream
from netstructer.streams.interfaces import (
    IOutgoingStreamObserver,
    IStreamsObserver,
    IStreamSource,
)
from netstructer.streams.outgoing import OutgoingStream
from netstructer.streams.schedule import Scheduler
from netstructer.streams.wire import (
    DATA_HEADER_SIZE,
    MAX_STREAM_ID,
    MAX_STREAM_SIZE,
    MAX_WINDOW,
    RECORD_NAMES,
    STREAM_DATA,
    AbortCode,
    StreamAbort,
    StreamAccept,
    StreamData,
    StreamDone,
    StreamEnd,
    StreamOpen,
    StreamRecord,
    StreamWindow,
    dataHeader,
    openBody,
    parseRecord,
)
from netstructer.values import decode as _decode
from netstructer.values import encode as _encode

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "DEFAULT_IDLE_TIMEOUT",
    "DEFAULT_MAX_STREAMS",
    "DEFAULT_WINDOW",
    "MAX_BLOCKED_ANSWERS",
    "MAX_META_SIZE",
    "STREAMS_VERSION",
    "StreamsEngine",
    "configuredEngine",
]

STREAMS_VERSION: Final = 3
"""The protocol version that added streams."""

DEFAULT_MAX_STREAMS: Final = 16
"""How many streams each way a session has open at once, by default."""

DEFAULT_WINDOW: Final = 512 * 1024
"""The credit an incoming stream is granted, by default: what its receiver
holds of it at most, unconsumed, and so the most of it in flight.  Large
enough to keep a local link busy (a WINDOW record goes back every 256 KiB
consumed), small enough that a value sent behind it waits for at most about
half a MiB of the stream (about 1 ms at 500 MB/s); a link with a long round
trip needs more (C{BridgeConfig.streamWindow}): a window of one round
trip's worth of bandwidth."""

DEFAULT_CHUNK_SIZE: Final = 256 * 1024
"""The most payload bytes in one DATA record, by default (less if the peer
accepts only smaller records): one AEAD operation and one frame per 256 KiB
costs little, and a small value sent meanwhile waits for one record at most."""

DEFAULT_IDLE_TIMEOUT: Final = 60.0
"""Seconds a stream waits on the peer (for data it granted credit for, an
answer to its OPEN, its confirmation) before it is aborted, by default."""

MAX_META_SIZE: Final = 65536
"""The longest encoded meta a receiver accepts; a longer one is refused
(TOO_LARGE)."""

MAX_BLOCKED_ANSWERS: Final = 64 * 1024
"""The most bytes of records answering the peer (ACCEPT, WINDOW, DONE,
refusals) the engine queues while the session is not writable: past it, the
peer is asking without reading, and the session fails."""

_REFUSED_SLACK: Final = 64
"""How many streams past C{maxStreams} the peer may have refused and not
yet answered before the session fails."""


@implementer(IOutgoingStreamObserver)
class _NullObserver:
    """
    An L{IOutgoingStreamObserver} that ignores everything, for streams
    whose owner polls them.
    """

    def resumeOffered(self, offset: int, sha256: bytes) -> None:
        """Ignored (a stream that may resume needs a real observer)."""

    def streamProgressed(self, sent: int) -> None:
        """Ignored."""

    def streamConfirmed(self, size: int, sha256: bytes) -> None:
        """Ignored."""

    def streamFailed(self, error: Exception) -> None:
        """Ignored."""


@implementer(ICapability)
class StreamsEngine:
    """
    The streams capability of one session.

    @ivar capability: C{"streams"}.
    @ivar window: The credit incoming streams are accepted with by default.
    @ivar idleTimeout: Seconds a stream waits on the peer, or L{None}.
    @ivar maxStreamSize: The largest incoming stream accepted, or L{None}
        for no limit; a change applies to the streams offered after it.
    @ivar observer: Told of the streams the peer offers and of every
        stream that fails; an adapter may replace it (a server hands its
        sessions' streams to its handler).
    @ivar newHash: Makes each stream's SHA-256 (L{HashFactory}).
    """

    capability = "streams"

    def __init__(
        self,
        host: ISessionHost,
        observer: IStreamsObserver,
        *,
        maxStreams: int = DEFAULT_MAX_STREAMS,
        window: int = DEFAULT_WINDOW,
        chunkSize: int = DEFAULT_CHUNK_SIZE,
        idleTimeout: float | None = DEFAULT_IDLE_TIMEOUT,
        maxStreamSize: int | None = None,
        encode: Callable[[object], bytes] = _encode,
        decode: Callable[[bytes], object] = _decode,
        hashing: HashFactory = inlineSha256,
    ) -> None:
        """
        @param host: The session.
        @param observer: Told of streams the peer opens, and of every
            stream that fails.
        @param maxStreams: How many streams each way may be open at once.
        @param window: The credit incoming streams are accepted with by
            default (1 to L{MAX_WINDOW} bytes).
        @param chunkSize: The most payload bytes per DATA record.
        @param idleTimeout: Seconds a stream waits on the peer before it is
            aborted; L{None} waits for ever.
        @param maxStreamSize: The largest incoming stream accepted, or
            L{None} for no limit.
        @param encode: Encodes a stream's meta (the session's encoder).
        @param decode: Decodes a received meta (the session's limits); a
            meta that does not decode fails the session.
        @param hashing: Makes each stream's SHA-256 (inline by default; see
            L{netstructer.streams.hashing}).
        @raise ValueError: A setting out of range.
        """
        if maxStreams < 1:
            raise ValueError(f"maxStreams must be at least 1, not {maxStreams}")
        if not 1 <= window <= MAX_WINDOW:
            raise ValueError(f"window must be from 1 to {MAX_WINDOW} bytes, not {window}")
        if chunkSize < 1:
            raise ValueError(f"chunkSize must be at least 1 byte, not {chunkSize}")
        if idleTimeout is not None and not idleTimeout > 0:
            raise ValueError(f"idleTimeout must be positive or None, not {idleTimeout}")
        if maxStreamSize is not None and not 0 <= maxStreamSize <= MAX_STREAM_SIZE:
            raise ValueError(f"maxStreamSize must be from 0 to {MAX_STREAM_SIZE} or None")
        self._host = host
        self.observer = observer
        self._maxStreams = maxStreams
        self.window = window
        self._chunkSize = chunkSize
        self.idleTimeout = idleTimeout
        self.maxStreamSize = maxStreamSize
        self._encode = encode
        self._decode = decode
        self.newHash = hashing
        self._ownParity = 1 if host.role is Role.CLIENT else 0
        self._nextID = 1 if self._ownParity else 2
        self._outgoing: dict[int, OutgoingStream] = {}
        self._scheduler = Scheduler(maxStreams, self._canSend)
        self._incoming: dict[int, IncomingStream] = {}
        self._highestIncoming = 0
        self._opened = False
        self._closing = False
        self._closed = False
        # Set once this engine failed the session: it sends nothing more,
        # and its streams end when the session tells it it is closing.
        self._failed = False
        self._blockedAnswers = 0
        self._wakeTime: float | None = None

    def __repr__(self) -> str:
        return f"<StreamsEngine {self.peer}: {len(self._outgoing)} out, {len(self._incoming)} in>"

    @property
    def peer(self) -> str:
        """
        The peer, for messages (the host's, which is known once the
        connection is made).
        """
        return str(self._host.peer)

    @property
    def chunkSize(self) -> int:
        """
        The most payload bytes one DATA record carries: the configured chunk
        size, or less if the peer accepts only smaller records.
        """
        limit = self._host.maxRecordBody
        if limit is None:
            return self._chunkSize
        return max(1, min(self._chunkSize, int(limit) - DATA_HEADER_SIZE))

    @property
    def outgoing(self) -> tuple[OutgoingStream, ...]:
        """
        The outgoing streams not ended yet, waiting ones included.
        """
        return tuple(self._outgoing.values())

    @property
    def incoming(self) -> tuple[IncomingStream, ...]:
        """
        The incoming streams not ended yet, refused ones still waiting for
        the sender's answer included.
        """
        return tuple(self._incoming.values())

    # Requests.

    def openStream(
        self,
        source: IStreamSource,
        observer: IOutgoingStreamObserver | None = None,
        meta: object = None,
        size: int | None = None,
        resume: bool = False,
    ) -> OutgoingStream:
        """
        Send a stream: its OPEN leaves once fewer than C{maxStreams} of this
        side's streams are open, and its bytes as its receiver grants
        credit, pulled from C{source}.

        @param source: Where its bytes come from.
        @param observer: Told of its progress, confirmation and failure.
        @param meta: A value describing it (a name, a type...), sent in its
            OPEN and given to the receiver.
        @param size: Its exact size, if known: the receiver can refuse it at
            once if it is too large, and checks it.
        @param resume: Whether the receiver may accept it at an offset: the
            observer is then told with L{IOutgoingStreamObserver.resumeOffered}.
        @return: The stream.
        @raise PeerVersionError: The session's version has no streams;
            nothing was sent.
        @raise ChannelClosedError: The session is closing or closed.
        @raise EncodeError: C{meta} cannot be encoded.
        @raise BufferDataError: C{meta} encodes to more than the peer
            accepts.
        @raise ValueError: A size out of range.
        @raise LocalProtocolError: The session used all its stream IDs.
        """
        versionError = self._versionError()
        if versionError is not None:
            raise versionError
        if self._closing or self._closed:
            raise ChannelClosedError("cannot open a stream: the session is closing or closed")
        if size is not None and not 0 <= size <= MAX_STREAM_SIZE:
            raise ValueError(f"a stream's size is from 0 to {MAX_STREAM_SIZE}, not {size}")
        if resume and observer is None:
            raise ValueError("a stream that may resume needs an observer, to be offered the resume")
        if self._nextID > MAX_STREAM_ID:
            raise LocalProtocolError("this session used all its stream IDs: open a new session")
        metaEncoded = self._encode(meta)
        bodySize = len(openBody(1, metaEncoded, size, resume))
        maxBody = self._host.maxRecordBody
        if len(metaEncoded) > MAX_META_SIZE or (maxBody is not None and bodySize > maxBody):
            raise BufferDataError(
                f"a stream's meta encodes to {len(metaEncoded)} bytes; receivers take at "
                f"most {MAX_META_SIZE} (and records of {maxBody} bytes): send a smaller "
                "meta, and the rest in the stream"
            )
        stream = OutgoingStream(
            self,
            self._nextID,
            source,
            meta,
            metaEncoded,
            size,
            resume,
            observer or _NullObserver(),
        )
        self._nextID += 2
        self._outgoing[stream.streamID] = stream
        self._scheduler.add(stream)
        return stream

    # ICapability.

    def sessionOpened(self) -> None:
        """
        The handshake completed: streams opened already may go, unless the
        session's version has none (they fail with L{PeerVersionError}).
        """
        self._opened = True
        versionError = self._versionError()
        if versionError is not None:
            for stream in list(self._outgoing.values()):
                stream.sessionLost(versionError)
            return
        self._scheduler.run()

    def _versionError(self) -> PeerVersionError | None:
        """
        @return: The error for a session whose version has no streams, or
            L{None} (its version has them, or is not known yet).
        """
        version = self._host.peerVersion
        if version is None or version >= STREAMS_VERSION:
            return None
        return PeerVersionError(
            f"the peer ({self.peer}) speaks protocol version {version}, which has no "
            f"streams (they need version {STREAMS_VERSION}): upgrade it to send streams; "
            "values still go through",
            localValue=STREAMS_VERSION,
            remoteValue=int(version),
        )

    def sessionWritable(self) -> None:
        """
        The session's send queue drained: go on sending.
        """
        self._blockedAnswers = 0
        self._scheduler.run()

    def sessionClosing(self) -> None:
        """
        The session is closing: no record leaves from now on.  Outgoing
        streams fail; incoming ones may still receive what was in flight.
        """
        if self._closing:
            return
        self._closing = True
        for stream in list(self._outgoing.values()):
            stream.sessionLost(
                StreamAborted(
                    f"the session with {self.peer} is closing: stream {stream.streamID} did "
                    f"not complete ({stream.sent} bytes sent); send it again on a new session",
                    streamID=stream.streamID,
                )
            )

    def sessionClosed(self, reason: BaseException) -> None:
        """
        The session ended: every stream still under way fails, but an
        incoming stream that arrived whole.
        """
        self.sessionClosing()
        self._closed = True
        for stream in list(self._incoming.values()):
            stream.sessionLost(reason)
        self._incoming.clear()
        self._scheduler.clear()
        if self._wakeTime is not None:
            self._wakeTime = None
            self._host.wakeAt(None)

    def timeReached(self, now: float) -> None:
        """
        Abort the streams whose deadline passed, and ask to be woken for
        the next.
        """
        self._wakeTime = None
        if self._closed:
            return
        streams: list[IncomingStream | OutgoingStream] = [
            *self._incoming.values(),
            *self._outgoing.values(),
        ]
        following = [
            deadline for stream in streams if (deadline := stream.deadlineReached(now)) is not None
        ]
        if following:
            self.armTimer(min(following))

    def recordReceived(self, recordType: int, body: bytes) -> None:
        """
        A streams record arrived.

        @raise StreamProtocolError: It breaks the rules of streams; the
            session fails.
        @raise DecodeError: An OPEN's meta does not decode.
        """
        record = parseRecord(recordType, body)
        if isinstance(record, StreamData):
            self._incomingFor(record.streamID, recordType).dataReceived(record)
        elif isinstance(record, StreamOpen):
            self._openReceived(record)
        elif isinstance(record, StreamEnd):
            self._incomingFor(record.streamID, recordType).endReceived(record)
        elif isinstance(record, StreamAbort) and record.streamID % 2 != self._ownParity:
            self._incomingFor(record.streamID, recordType).abortReceived(record)
        else:
            self._outgoingRecord(recordType, record)

    # Received records.

    def _incomingFor(self, streamID: int, recordType: int) -> IncomingStream:
        name = RECORD_NAMES[recordType]
        if streamID % 2 == self._ownParity:
            raise StreamProtocolError(
                f"the peer sent a {name} record for stream {streamID}, which this side sends"
            )
        stream = self._incoming.get(streamID)
        if stream is None:
            state = "it never opened" if streamID > self._highestIncoming else "is closed"
            raise StreamProtocolError(
                f"the peer sent a {name} record for stream {streamID}, which {state}"
            )
        return stream

    def _outgoingRecord(self, recordType: int, record: StreamRecord) -> None:
        name = RECORD_NAMES[recordType]
        streamID = record.streamID
        if streamID % 2 != self._ownParity:
            raise StreamProtocolError(
                f"the peer sent a {name} record for stream {streamID}, which the peer sends"
            )
        if streamID > self._scheduler.highestOpened:
            raise StreamProtocolError(
                f"the peer sent a {name} record for stream {streamID}, which this side never opened"
            )
        stream = self._outgoing.get(streamID)
        if stream is None:
            # Ended here (cancelled, timed out) while the record was in flight.
            return
        if isinstance(record, StreamAccept):
            stream.acceptReceived(record)
        elif isinstance(record, StreamWindow):
            stream.windowReceived(record)
        elif isinstance(record, StreamDone):
            stream.doneReceived(record)
        elif isinstance(record, StreamAbort):
            stream.abortReceived(record)
        else:
            raise AssertionError(f"not a record of a stream this side sends: {record!r}")

    def _openReceived(self, record: StreamOpen) -> None:
        streamID = record.streamID
        if streamID % 2 == self._ownParity:
            raise StreamProtocolError(
                f"the peer opened stream {streamID}, an ID of this side's streams"
            )
        if streamID <= self._highestIncoming:
            raise StreamProtocolError(
                f"the peer opened stream {streamID} after stream {self._highestIncoming}: "
                "stream IDs must increase"
            )
        self._highestIncoming = streamID
        if len(self._incoming) >= self._maxStreams + _REFUSED_SLACK:
            raise StreamProtocolError(
                f"the peer has {len(self._incoming)} streams open or refused and not "
                f"answered, over the limit of {self._maxStreams}: it ignores refusals"
            )
        tooLong = len(record.meta) > MAX_META_SIZE
        meta = None if tooLong else self._decode(record.meta)
        stream = IncomingStream(
            self, streamID, meta, record.size, record.resume, self.maxStreamSize
        )
        self._incoming[streamID] = stream
        limit = self.maxStreamSize
        if len(self._incoming) > self._maxStreams:
            stream.refuse(
                f"{self._maxStreams} streams are open already, the most this side allows",
                AbortCode.TOO_MANY,
            )
        elif tooLong:
            stream.refuse(
                f"its meta is {len(record.meta)} bytes, over {MAX_META_SIZE}",
                AbortCode.TOO_LARGE,
            )
        elif limit is not None and record.size is not None and record.size > limit:
            stream.refuse(
                f"it announced {record.size} bytes, over this side's limit of {limit}",
                AbortCode.TOO_LARGE,
            )
        else:
            if self.idleTimeout is not None:
                self.armTimer(self.now() + self.idleTimeout)
            self.observer.streamOffered(stream)

    # What the streams use (StreamsCore).

    def now(self) -> float:
        """
        @return: The session's time.
        """
        return float(self._host.now())

    def sendControl(self, recordType: int, body: bytes, answer: bool) -> None:
        """
        Send a stream's record other than DATA, unless the session is
        closing.  An answer to the peer sent while the session is not
        writable counts against L{MAX_BLOCKED_ANSWERS}; past it, the session
        fails.
        """
        if self._closing or self._closed or self._failed:
            return
        if answer and not self._host.writable:
            self._blockedAnswers += len(body) + 1
            if self._blockedAnswers > MAX_BLOCKED_ANSWERS:
                self._failed = True
                self._host.failSession(
                    StreamProtocolError(
                        f"the peer ({self.peer}) made this side queue over "
                        f"{MAX_BLOCKED_ANSWERS} bytes of answers to its streams records "
                        "without reading them"
                    )
                )
                return
        self._send(recordType, body)

    def sendData(self, streamID: int, offset: int, payload: bytes | memoryview) -> None:
        """
        Send a DATA record: its header and payload as two parts, which the
        session seals without joining them first.
        """
        try:
            self._host.sendRecordParts(STREAM_DATA, (dataHeader(streamID, offset), payload))
        except ChannelClosedError:
            self.sessionClosing()

    def _send(self, recordType: int, body: bytes) -> None:
        """
        Hand a record to the session.  A session that began closing before
        it told this engine refuses it: the engine closes then.
        """
        try:
            self._host.sendRecord(recordType, body)
        except ChannelClosedError:
            self.sessionClosing()

    def schedule(self, stream: OutgoingStream) -> None:
        """
        An outgoing stream may have something to send: queue it for a turn,
        and send while the session is writable.
        """
        self._scheduler.schedule(stream)

    def armTimer(self, deadline: float) -> None:
        """
        Ask the session to wake this engine at C{deadline}, unless it will
        earlier.
        """
        if self._closed:
            return
        if self._wakeTime is None or deadline < self._wakeTime:
            self._wakeTime = deadline
            self._host.wakeAt(deadline)

    def streamClosed(self, stream: IncomingStream | OutgoingStream) -> None:
        """
        A stream ended on both sides: forget it, and let a waiting stream
        have its slot.
        """
        if isinstance(stream, OutgoingStream):
            if self._outgoing.pop(stream.streamID, None) is not None:
                self._scheduler.closed(stream)
        else:
            self._incoming.pop(stream.streamID, None)

    def streamFailed(self, stream: IncomingStream | OutgoingStream, error: Exception) -> None:
        """
        Tell the observer a stream failed.
        """
        self.observer.streamFailed(stream, error)

    # Sending.

    def _canSend(self) -> bool:
        """
        @return: Whether a stream may send a record now.
        """
        return self._opened and not (self._closing or self._failed) and bool(self._host.writable)


def configuredEngine(
    host: ISessionHost,
    observer: IStreamsObserver,
    config: BridgeConfig,
    encode: Callable[[object], bytes],
    decode: Callable[[bytes], object],
    hashing: HashFactory = inlineSha256,
) -> StreamsEngine:
    """
    The streams engine of a session configured by C{config} (its
    C{maxStreams}, C{streamWindow}, C{streamIdleTimeout} and
    C{maxStreamSize}, the engine's defaults where they are L{None}), as
    both adapters attach it.

    @param host: The session.
    @param observer: Told of offered and failed streams.
    @param config: The session's configuration.
    @param encode: Encodes a stream's meta (the session's encoder).
    @param decode: Decodes a received meta (the session's limits).
    @param hashing: Makes each stream's SHA-256.
    """
    return StreamsEngine(
        host,
        observer,
        maxStreams=config.maxStreams or DEFAULT_MAX_STREAMS,
        idleTimeout=config.streamIdleTimeout,
        window=config.streamWindow or DEFAULT_WINDOW,
        maxStreamSize=config.maxStreamSize,
        encode=encode,
        decode=decode,
        hashing=hashing,
    )
