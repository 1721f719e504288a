# -*- test-case-name: tests.test_session -*-
"""
How the end of a transport is reported, the same way through every adapter.

Whatever broke a connection while values were flowing (the peer's process
died, the connection was reset or cut, a write found the pipe broken), the
Twisted protocol and the blocking link report one error,
L{ConnectionBroken<netstructer.errors.ConnectionBroken>}, made here.
"""

from __future__ import annotations

from netstructer.errors import (
    ConnectionBroken,
    HandshakeTimeout,
    PeerUnresponsive,
    TruncationError,
)

__all__ = ["brokenConnection", "describeCause"]


def describeCause(cause: BaseException | None) -> str:
    """
    @param cause: What the transport reported, if anything.
    @return: It as a phrase for a message (C{" (connection reset by
        peer)"}), or C{""}.
    """
    if cause is None:
        return ""
    text = getattr(cause, "strerror", None) or str(cause).strip()
    if not text or text == "None":
        return ""
    return f" ({text.rstrip('.')})"


def brokenConnection(
    peer: str, truncation: TruncationError | None, cause: BaseException | None
) -> ConnectionBroken:
    """
    The error of a connection that broke.

    @param peer: How the peer is named (C{"127.0.0.1:5000"}).
    @param truncation: The channel's verdict, if the close handshake had
        not completed: values may have been lost.
    @param cause: What the transport reported, kept as the error's
        C{__cause__}.
    @return: The error, with a message that says what happened and what to
        do.
    """
    where = f"the connection to {peer or 'the peer'} broke{describeCause(cause)}"
    if truncation is None:
        error = ConnectionBroken(f"{where}; connect again")
    else:
        error = ConnectionBroken(
            f"{where} before the session was closed ({truncation}); connect again, and send "
            "again what the peer had not confirmed"
        )
    error.__cause__ = cause
    return error


def handshakeTimedOut(peer: str, seconds: float) -> HandshakeTimeout:
    """
    The error of a handshake that took too long.

    @param peer: Who the peer is, for the message.
    @param seconds: The time it had.
    """
    return HandshakeTimeout(f"the handshake with {peer} did not complete within {seconds} seconds")


def peerUnresponsive(peer: str, seconds: float) -> PeerUnresponsive:
    """
    The error of a peer that did not answer a keep-alive ping.

    @param peer: Who the peer is, for the message.
    @param seconds: The time it had to answer.
    """
    return PeerUnresponsive(
        f"no answer to a keep-alive ping from {peer} within {seconds} seconds: it may be"
        " down or cut off; connect again"
    )
