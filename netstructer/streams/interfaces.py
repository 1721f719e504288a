# -*- test-case-name: tests.test_streams_engine -*-
"""
The seams of streams: what the engine (L{StreamsEngine
<netstructer.streams.engine.StreamsEngine>}) asks of the adapters that use
it, and what it tells them.

    - L{IStreamSource}: where an outgoing stream's bytes come from, pulled
      by the engine when the stream has credit and the session is writable.
    - L{IOutgoingStreamObserver}: what the owner of an outgoing stream is
      told (resume offered, progress, confirmed, failed).
    - L{IIncomingStreamObserver}: what the consumer of an incoming stream is
      told (data, end, failure).
    - L{IStreamsObserver}: what the engine tells its session's adapter:
      a stream offered by the peer, and every stream that failed (for the
      log line each refusal deserves).

Each method is called by the engine synchronously, from within whatever
input (a record, a request, the clock) caused it; it may call back into
the engine (cancel a stream, open another).
"""

from __future__ import annotations

from zope.interface import Interface

__all__ = [
    "IIncomingStreamObserver",
    "IOutgoingStreamObserver",
    "IStreamSource",
    "IStreamsObserver",
]


class IStreamSource(Interface):
    """
    The bytes of an outgoing stream, pulled by the engine.  Sans-IO: a
    source answers at once.  A source whose bytes come later (a Twisted
    producer, an async iterable, a thread reading a file) answers L{None}
    and tells the stream when it has more, with
    L{OutgoingStream.sourceReady
    <netstructer.streams.outgoing.OutgoingStream.sourceReady>}.
    """

    def read(maximum: int) -> bytes | memoryview | None:  # noqa: N805
        """
        Take the stream's next bytes.

        @param maximum: The most bytes to return (at least 1).
        @return: From 1 to C{maximum} bytes (C{bytes}, or a C{memoryview}
            the source does not change afterwards); C{b""} once the stream's
            bytes are all taken; or L{None} if none are available yet.
        @raise Exception: Any failure: the engine aborts the stream (code
            FAILED) and reports the exception to the stream's observer.
        """


class IOutgoingStreamObserver(Interface):
    """
    What the owner of an outgoing stream is told.  Exactly one of
    L{streamConfirmed} and L{streamFailed} is called, once.
    """

    def resumeOffered(offset: int, sha256: bytes) -> None:  # noqa: N805
        """
        The receiver holds the first C{offset} bytes of the stream already,
        whose SHA-256 is C{sha256} (only for a stream opened with
        C{resume=True}).  Check that they are the start of the source, then
        call L{resumeFrom<netstructer.streams.outgoing.OutgoingStream.resumeFrom>}
        with the source positioned at C{offset}, or
        L{abort<netstructer.streams.outgoing.OutgoingStream.abort>} with
        code RESUME_MISMATCH.
        """

    def streamProgressed(sent: int) -> None:  # noqa: N805
        """
        More of the stream was handed to the session.

        @param sent: The bytes of the stream sent so far, counted from its
            start (a resumed stream's part already held included).
        """

    def streamConfirmed(size: int, sha256: bytes) -> None:  # noqa: N805
        """
        The receiver confirmed the whole stream (a DONE record): it
        received C{size} bytes whose SHA-256 is C{sha256}, both as sent.
        """

    def streamFailed(error: Exception) -> None:  # noqa: N805
        """
        The stream failed; nothing more happens to it.

        @param error: A L{StreamError<netstructer.errors.StreamError>}
            (its subclass says why), or L{PeerVersionError
            <netstructer.errors.PeerVersionError>} if the session's version
            turned out to have no streams.
        """


class IIncomingStreamObserver(Interface):
    """
    What the consumer of an accepted incoming stream is told.  Exactly one
    of L{streamEnded} and L{streamFailed} is called, once.
    """

    def dataReceived(data: bytes) -> None:  # noqa: N805
        """
        The stream's next bytes, in order.  Call L{IncomingStream.consumed
        <netstructer.streams.incoming.IncomingStream.consumed>} once they
        are used: that is what lets the sender send more (backpressure is
        not calling it).
        """

    def streamEnded() -> None:
        """
        All of the stream arrived, and its size and SHA-256 are those the
        sender's END record gives (and its announced size).  Keep it, then
        call L{IncomingStream.complete
        <netstructer.streams.incoming.IncomingStream.complete>} to confirm
        it to the sender (or L{IncomingStream.abort
        <netstructer.streams.incoming.IncomingStream.abort>} if keeping it
        failed).
        """

    def streamFailed(error: Exception) -> None:  # noqa: N805
        """
        The stream failed before its end: discard what arrived of it (or
        keep it aside, to resume, if the session ended).

        @param error: A L{StreamError<netstructer.errors.StreamError>}.
        """


class IStreamsObserver(Interface):
    """
    What a session's streams engine tells its adapter.
    """

    def streamOffered(stream: object) -> None:  # noqa: N805
        """
        The peer opened a stream: an L{IncomingStream
        <netstructer.streams.incoming.IncomingStream>} waiting for
        C{accept} or C{refuse}.  (Until one is called, the sender sends
        nothing; if neither is called within the idle timeout, the engine
        refuses it.)
        """

    def streamFailed(stream: object, error: Exception) -> None:  # noqa: N805
        """
        A stream of the session, either way, failed: for the log line every
        refusal gets.  (Its own observer is told too.)

        @param stream: The L{IncomingStream
            <netstructer.streams.incoming.IncomingStream>} or
            L{OutgoingStream<netstructer.streams.outgoing.OutgoingStream>}.
        @param error: Why, as its observer is told.
        """
