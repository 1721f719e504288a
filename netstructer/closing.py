# -*- test-case-name: tests.test_closing -*-
"""
The close of one session, bounded by a grace period: a sans-IO state
machine that L{netstructer.protocol.BridgeProtocol} drives.

The close rule (docs/protocol.rst, section 5.6): each side ends the
transport as soon as the close handshake completes on its side.  The side
that receives a close record first (L{CloseMachine.closeReceived} returns
L{CloseStep.REPLIED}) has sealed its reply and ends the transport once
that reply is written; the side that sent the close record first ends it
when the reply arrives (L{CloseStep.COMPLETED}).  Nobody waits on the peer
longer than the grace period: once it runs out (L{CloseMachine.deadline}),
the adapter ends the connection anyway and logs
L{CloseMachine.expiredMessage}.

I{Confirmed} values: a value this side sent is confirmed once a record the
peer sent after receiving it has arrived: the peer's pong to a ping sent
after the value, or the peer's close reply (records are opened in order, so
both prove the peer's implementation received every value sent before the
ping or the close).  The rest are unconfirmed: written, but perhaps never
read by the peer.
"""

from __future__ import annotations

from enum import Enum

__all__ = ["DEFAULT_SHUTDOWN_GRACE", "CloseMachine", "CloseStep"]

DEFAULT_SHUTDOWN_GRACE = 5.0
"""Seconds a close may wait on the peer before the connection is ended
anyway."""


class CloseStep(Enum):
    """
    What the adapter must do after a close record arrived.

    @cvar REPLIED: The peer closed first and this side's reply is sealed:
        end the transport once the reply is written.
    @cvar COMPLETED: This side closed first and the peer's reply arrived:
        end the transport.
    """

    REPLIED = "replied"
    COMPLETED = "completed"


class CloseMachine:
    """
    The close state of one session, and the count of values the peer has
    confirmed.  No clock and no transport: the adapter passes the time and
    the number of values it has written, and acts on what is returned.

    @ivar grace: The grace period, in seconds.
    @ivar deadline: When the close must be over (L{None} before it starts).
    @ivar confirmed: How many of the values sent the peer has confirmed.
    @ivar step: How the handshake ended, once a close record has arrived.
    """

    __slots__ = (
        "_closeSentAfter",
        "_pingSentAfter",
        "_sentClose",
        "confirmed",
        "deadline",
        "grace",
        "step",
    )

    def __init__(self, grace: float) -> None:
        """
        @param grace: The grace period, in seconds; positive.
        @raise ValueError: It is not.
        """
        if not grace > 0:
            raise ValueError("the shutdown grace period must be a positive number of seconds")
        self.grace = grace
        self.deadline: float | None = None
        self.confirmed = 0
        self.step: CloseStep | None = None
        self._sentClose = False
        self._closeSentAfter = 0
        self._pingSentAfter: int | None = None

    @property
    def closing(self) -> bool:
        """
        Whether the close has started (on either side).
        """
        return self.deadline is not None

    @property
    def sentClose(self) -> bool:
        """
        Whether this side sent its own close record first.
        """
        return self._sentClose

    def pingSent(self, valuesSent: int) -> None:
        """
        This side sent a ping.

        @param valuesSent: Values written before it.
        """
        if self._pingSentAfter is None:
            self._pingSentAfter = valuesSent

    def pongReceived(self) -> None:
        """
        The peer answered the ping: every value written before the ping is
        confirmed.
        """
        if self._pingSentAfter is not None:
            self.confirmed = max(self.confirmed, self._pingSentAfter)
            self._pingSentAfter = None

    def start(self, now: float) -> float | None:
        """
        The close starts (a close is requested, during or after the
        handshake, or a close record arrives).

        @param now: The current time.
        @return: The deadline if it started now (the adapter schedules its
            timer for it), or L{None} if it had already started.
        """
        if self.deadline is not None:
            return None
        self.deadline = now + self.grace
        return self.deadline

    def closeSent(self, now: float, valuesSent: int) -> float | None:
        """
        This side sealed its close record first.

        @param now: The current time.
        @param valuesSent: Values written before the close record.
        @return: As L{start}.
        """
        self._sentClose = True
        self._closeSentAfter = valuesSent
        return self.start(now)

    def closeReceived(self, now: float, valuesSent: int) -> CloseStep:
        """
        The peer's close record arrived.

        @param now: The current time.
        @param valuesSent: Values written so far.
        @return: What to do next: L{CloseStep.COMPLETED} when it answers
            this side's close, L{CloseStep.REPLIED} otherwise.
        """
        self.start(now)
        if self._sentClose:
            self.step = CloseStep.COMPLETED
            self.confirmed = max(self.confirmed, self._closeSentAfter)
        else:
            # The reply comes after every value written so far; the peer
            # does not confirm it (it sends nothing after its close).
            self.step = CloseStep.REPLIED
        return self.step

    def unconfirmed(self, valuesSent: int) -> int:
        """
        @param valuesSent: Values written so far.
        @return: How many of them the peer has not confirmed.
        """
        return max(valuesSent - self.confirmed, 0)

    def expired(self, now: float) -> bool:
        """
        @param now: The current time.
        @return: Whether the grace period has run out.
        """
        return self.deadline is not None and now >= self.deadline

    def expiredMessage(self, peer: str, valuesSent: int) -> str:
        """
        The one line logged when the grace period runs out.

        @param peer: The session's key.
        @param valuesSent: Values written so far.
        @return: The line, naming the peer and the values it did not
            confirm.
        """
        if self.step is CloseStep.REPLIED:
            waitingFor = "the connection to end after this side's close reply"
        elif self._sentClose:
            waitingFor = "the reply to this side's close"
        else:
            waitingFor = "the handshake, to close"
        return (
            f"the {self.grace:g} s shutdown grace period ran out for {peer} while waiting for "
            f"{waitingFor}; ending the connection with {self.unconfirmed(valuesSent)} "
            "values sent to it unconfirmed"
        )
