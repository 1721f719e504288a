# -*- test-case-name: tests.test_errors -*-
"""
The one exception hierarchy of NetStructer.

Every error the package raises on purpose derives from L{NetStructerError}.
Following h11, protocol errors say whose fault they were:
L{RemoteProtocolError} is raised only on the receive path (the peer sent
something it must not), L{LocalProtocolError} only on the send path (this
program asked for something it must not).  Any protocol error is terminal for
the channel it happened on: the connection is closed, never resynchronised.

Messages say what happened and what to do about it, and never contain key
material.

This module imports nothing but the standard library.
"""

from __future__ import annotations

__all__ = [
    "AuthenticationError",
    "BufferDataError",
    "ChannelClosedError",
    "ClusterError",
    "ClusterUnavailable",
    "ConnectionBroken",
    "DecodeError",
    "EncodeError",
    "FrameTooLarge",
    "HandshakeError",
    "HandshakeTimeout",
    "IntegrityError",
    "InvalidKey",
    "KeyFileError",
    "LocalProtocolError",
    "NetStructerError",
    "NoSuchSession",
    "OperationTimedOut",
    "PeerUnresponsive",
    "PeerVersionError",
    "ProtocolError",
    "RecipientBusy",
    "RelayError",
    "RelayRefused",
    "RemoteProtocolError",
    "ResumeMismatch",
    "ServerInitializeError",
    "SessionClosed",
    "StreamAborted",
    "StreamError",
    "StreamIntegrityError",
    "StreamProtocolError",
    "StreamRefused",
    "StreamTimeout",
    "StreamTooLarge",
    "TLSHandshakeError",
    "TooManyStreams",
    "TruncationError",
]


class NetStructerError(Exception):
    """
    Base class of every error NetStructer raises on purpose.
    """


class ProtocolError(NetStructerError):
    """
    Something broke the rules of the NetStructer protocol.

    Abstract: raise L{LocalProtocolError} or L{RemoteProtocolError}.  Either
    is terminal for the channel it happened on.
    """

    def __init__(self, *args: object) -> None:
        if type(self) is ProtocolError:
            raise TypeError(
                "ProtocolError is abstract: raise LocalProtocolError or RemoteProtocolError"
            )
        super().__init__(*args)


class LocalProtocolError(ProtocolError):
    """
    This program asked the channel for something the protocol forbids, such as
    sending a value after closing.  Raised only by send-side requests.
    """


class RemoteProtocolError(ProtocolError):
    """
    The peer sent something the protocol forbids.  Raised only on the receive
    path.
    """


class ChannelClosedError(LocalProtocolError):
    """
    A value, ping or close was requested on a channel that is closing, closed
    or failed.  Open a new connection.
    """


class SessionClosed(ChannelClosedError):
    """
    The peer closed the session with a close record: every value it sent
    before has been delivered.  Raised by C{recvBuffer} once those values
    have been taken (at once for a caller already waiting), and by sends
    after it.  Connect again to go on.

    @ivar code: The peer's close code (a
        L{netstructer.channel.CloseCode}, an C{int}).
    @ivar reason: The peer's close reason text (may be empty).
    """

    def __init__(self, message: str, code: int, reason: str = "") -> None:
        """
        @param message: What happened, for people.
        @param code: The peer's close code.
        @param reason: The peer's close reason text.
        """
        super().__init__(message)
        self.code = code
        self.reason = reason


class BufferDataError(NetStructerError):
    """
    A value or frame is larger than the limit that applies to it.

    Raised locally, before anything is written, when this side asks to send an
    encoded value larger than the peer accepts; raised on the receive path (and
    the connection closed) when the peer sends a frame larger than this side
    accepts.  The name is kept from the original package.
    """


class FrameTooLarge(BufferDataError):
    """
    The peer announced, in a frame's length prefix, a frame larger than this
    side accepts at that point of the connection (a few KiB during the
    handshake, then enough for the largest value this side accepts).  It is
    raised as soon as the prefix is read, before any of the frame is
    buffered; the connection cannot continue and must be closed.

    @ivar length: The length the peer announced, in bytes.
    @ivar limit: The largest frame this side accepted.
    """

    def __init__(self, length: int, limit: int) -> None:
        """
        @param length: The length the peer announced.
        @param limit: The largest frame accepted.
        """
        super().__init__(
            f"the peer announced a frame of {length} bytes, more than the {limit} this "
            "side accepts now; the connection must close (if the peer's values are "
            "legitimately this large, raise this side's maximum buffer size)"
        )
        self.length = length
        self.limit = limit

    def __reduce__(self) -> tuple[type[FrameTooLarge], tuple[int, int]]:
        """
        @return: How to rebuild this error (for pickling, as in a process
            pool's result).
        """
        return (type(self), (self.length, self.limit))


class ServerInitializeError(NetStructerError):
    """
    A server could not start: the port is in use or not permitted, the key is
    missing or bad, or a handler could not be loaded.  The message names the
    cause.  The name is kept from the original package.
    """


class HandshakeError(RemoteProtocolError):
    """
    The two sides could not agree on a protocol version or suite, or a
    handshake message was malformed.

    @ivar localValue: What this side offered or expected, when known.
    @ivar remoteValue: What the peer offered, when known.
    """

    def __init__(
        self,
        message: str,
        localValue: object = None,
        remoteValue: object = None,
    ) -> None:
        super().__init__(message)
        self.localValue = localValue
        self.remoteValue = remoteValue


class TLSHandshakeError(HandshakeError):
    """
    The TLS handshake under the connection failed: the peer's certificate
    did not verify (an unknown issuer, another host name) or a side sent a
    TLS alert.  The message names the cause and the fix.
    """


class AuthenticationError(HandshakeError):
    """
    The peer does not hold the same key: its handshake message failed
    authentication.  Check that both sides use the same key (or that the
    accepting side lists the connecting side's first key).
    """


class HandshakeTimeout(HandshakeError):
    """
    The handshake did not complete within its time limit.
    """


class IntegrityError(RemoteProtocolError):
    """
    A record failed authentication after the handshake: it was altered,
    replayed, reordered, reflected or dropped in transit.
    """


class TruncationError(RemoteProtocolError):
    """
    The connection ended without the peer's authenticated close record, so
    values may have been cut off in transit.
    """


class ConnectionBroken(TruncationError, ConnectionError):
    """
    The connection broke while values were flowing, before the close
    handshake completed: the peer's process died, the connection was reset
    or cut, or a write found the pipe broken.  Both adapters (the Twisted
    protocol and the blocking link) report it the same way, with the
    transport's own error as its C{__cause__}.  Values sent since the peer
    last confirmed may have been lost: connect again, and send again what
    matters.

    It is a L{TruncationError} (the authenticated close never came) and a
    L{ConnectionError}, so code catching C{OSError} keeps working.
    """


class PeerUnresponsive(ConnectionBroken):
    """
    The peer did not answer a keep-alive ping within the keep-alive
    interval: it is down, hung, or cut off.  The connection was dropped.
    """


class EncodeError(NetStructerError, TypeError):
    """
    A value cannot be encoded: it holds a type NetStructer does not carry, a
    cycle, or is nested too deeply.  The message names the offending type and
    its path in the value, e.g. C{value[3]['k']: cannot encode datetime.datetime}.

    @ivar path: The path of the offending part, e.g. C{"value[3]['k']"}.
    """

    def __init__(self, message: str, path: str = "value") -> None:
        super().__init__(message)
        self.path = path


class DecodeError(RemoteProtocolError, ValueError):
    """
    Received bytes are not a valid encoded value, or exceed a decoding limit
    (size, nesting depth, items per container, objects, integer size, or too
    many keys sharing one hash).
    """


class InvalidKey(NetStructerError, ValueError):
    """
    A key is not a Fernet-format key (32 bytes, urlsafe base64, 44
    characters), or a keyring is empty.  The message never contains key
    material.  Make a key with C{netstructer keygen}.
    """


class KeyFileError(InvalidKey):
    """
    A key file is missing, unreadable, readable by group or others, or holds no
    valid key.  The message names the file and the fix.

    @ivar path: The key file's path.
    """

    def __init__(self, message: str, path: str) -> None:
        super().__init__(message)
        self.path = path


class PeerVersionError(NetStructerError):
    """
    The peer negotiated a protocol version without the feature asked for
    (the relay needs version 2, streams version 3).  Nothing was sent, and
    the session stays open for values (and for the features its version
    has).  Upgrade the peer to use the feature.

    @ivar localValue: The version this side speaks.
    @ivar remoteValue: The version the session negotiated.
    """

    def __init__(self, message: str, localValue: int, remoteValue: int) -> None:
        super().__init__(message)
        self.localValue = localValue
        self.remoteValue = remoteValue


class OperationTimedOut(NetStructerError, TimeoutError):
    """
    An operation given a timeout (receiving a value, connecting, waiting for a
    session) did not complete in time.  Nothing was consumed.
    """


class RelayError(NetStructerError):
    """
    A relayed value (C{sendTo}, C{publish}) or a subscription could not be
    handled by the server.  The session stays open; only that request
    failed.  Subclasses say why.

    @ivar name: The recipient or topic the request named.
    @ivar count: How many requests failed this way in a row (a client keeps
        consecutive errors of one kind for one name as one).
    """

    def __init__(self, message: str, name: str, count: int = 1) -> None:
        super().__init__(message)
        self.name = name
        self.count = count

    def __str__(self) -> str:
        message = super().__str__()
        if self.count > 1:
            return f"{message} ({self.count} times in a row)"
        return message


class NoSuchSession(RelayError):
    """
    No session with that name is connected to the server, so the value was
    not delivered.  Check the name, or send again once the recipient has
    connected.
    """


class RelayRefused(RelayError):
    """
    The server's relay policy does not let this client send to that
    recipient, publish to that topic or subscribe to it (or relay is not
    turned on at the server).  Ask the operator to allow it.
    """


class RecipientBusy(RelayError):
    """
    The recipient's bounded queue on the server was full, so the value was
    dropped (never silently: this error reports it).  Send more slowly, or
    have the recipient read faster.
    """


class StreamProtocolError(RemoteProtocolError):
    """
    The peer broke the rules of streams (docs/protocol.rst, "Streams") in a
    way no well-behaved peer can: a malformed streams record, a record for a
    stream it never opened or that is closed, data past the credit this
    side granted, an ACCEPT or DONE out of turn.  Terminal for the session,
    like every L{RemoteProtocolError}.
    """


class StreamError(NetStructerError):
    """
    One stream failed: it was refused, cancelled or aborted, ran out of
    time, was larger than allowed, or arrived damaged; or the session ended
    before it completed.  Only that stream ended: the session, its values
    and its other streams go on (unless the session itself ended).
    Subclasses say why; the message says what happened and what to do.

    @ivar streamID: The stream's ID, or L{None} if it had none yet.
    @ivar code: The abort code that ended it (see
        L{netstructer.streams.AbortCode}), or L{None} if no ABORT record was
        involved (the session ended, or a local check failed before one).
    @ivar byPeer: Whether the peer ended the stream (its ABORT arrived)
        rather than this side.
    """

    def __init__(
        self,
        message: str,
        streamID: int | None = None,
        code: int | None = None,
        byPeer: bool = False,
    ) -> None:
        super().__init__(message)
        self.streamID = streamID
        self.code = code
        self.byPeer = byPeer


class StreamRefused(StreamError):
    """
    The receiver declined the stream (its application refused it, or it
    takes no streams).  Nothing of it was kept.
    """


class TooManyStreams(StreamRefused):
    """
    The receiver already had as many streams open as it allows
    (C{maxStreams}): send fewer at once, or raise its limit.
    """


class StreamTooLarge(StreamError):
    """
    The stream was, or announced to be, larger than the receiver accepts,
    or its sender sent more than it announced.
    """


class StreamAborted(StreamError):
    """
    The stream ended early: its sender cancelled it, either side's
    application or storage failed (a full disk, a source that raised), or
    the session ended first.  The message says which.
    """


class StreamIntegrityError(StreamError):
    """
    The stream arrived damaged: fewer or more bytes than its END record
    says or than were announced (a truncated stream), data out of order, or
    a SHA-256 that does not match.  Nothing of it is kept under its final
    name; send it again.
    """


class StreamTimeout(StreamError, TimeoutError):
    """
    A side waited longer than its idle timeout on the other for this
    stream: data the receiver had granted credit for, the receiver's answer
    to an OPEN, or its confirmation.
    """


class ResumeMismatch(StreamError):
    """
    A resumed transfer could not go on: the part the receiver already holds
    is not the start of what the sender has (the file changed).  Send it
    again without resuming.
    """


class ClusterError(NetStructerError):
    """
    A cluster of servers (L{netstructer.cluster}) is misconfigured: its URL
    is malformed, its key file is missing or bad, or its node name is not
    valid.  The message names the setting and the fix, and never contains a
    password or key material.
    """


class ClusterUnavailable(ClusterError):
    """
    A cluster-wide operation (counting or listing the cluster's sessions,
    reaching a session on another node) could not be done because this
    node is not connected to the cluster's Redis server right now.  Local
    sessions are served as usual meanwhile, and the node reconnects by
    itself; try again later.
    """
