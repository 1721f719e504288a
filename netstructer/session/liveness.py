# -*- test-case-name: tests.test_session -*-
"""
The deadlines that keep a session alive or end it: the handshake timeout,
keep-alive pings and the idle timeout, as pure state given the time.

L{Liveness} never schedules anything.  The session core asks it for its
next deadline (L{Liveness.nextDeadline}), the adapter arranges to be woken
then, and the core hands it the time (L{Liveness.due}); it answers with what
is due.  Activity (a frame received, a value sent or received) moves no
deadline earlier, so an adapter re-arms its timer only when
L{Liveness.changed} says a deadline did move.
"""

from __future__ import annotations

import enum

__all__ = ["Due", "Liveness"]


class Due(enum.Enum):
    """
    What L{Liveness.due} found due.

    @cvar HANDSHAKE_TIMEOUT: The handshake took too long: fail the session.
    @cvar PING: The peer has been silent for a keep-alive interval: send a
        ping.
    @cvar UNRESPONSIVE: The peer did not answer the ping within another
        interval: fail the session.
    @cvar IDLE: No value moved either way for the idle timeout: close the
        session.
    """

    HANDSHAKE_TIMEOUT = "handshake timeout"
    PING = "ping"
    UNRESPONSIVE = "unresponsive"
    IDLE = "idle"


class Liveness:
    """
    The handshake, keep-alive and idle deadlines of one session.

    @ivar handshakeTimeout: Seconds the handshake may take.
    @ivar keepAliveInterval: Seconds of silence before a ping, and again
        before giving up on the pong; L{None} disables keep-alive.
    @ivar idleTimeout: Seconds without a value before closing; L{None}
        never.
    @ivar awaitingPong: Whether a ping is unanswered.
    @ivar changed: Whether a deadline moved since the adapter last read
        L{nextDeadline} (the adapter clears it).
    """

    __slots__ = (
        "_handshakeAt",
        "_idleAt",
        "_keepAliveAt",
        "_wakes",
        "awaitingPong",
        "changed",
        "handshakeTimeout",
        "idleTimeout",
        "keepAliveInterval",
    )

    def __init__(
        self,
        handshakeTimeout: float,
        keepAliveInterval: float | None,
        idleTimeout: float | None,
    ) -> None:
        self.handshakeTimeout = handshakeTimeout
        self.keepAliveInterval = keepAliveInterval
        self.idleTimeout = idleTimeout
        self.awaitingPong = False
        self.changed = False
        self._handshakeAt: float | None = None
        self._keepAliveAt: float | None = None
        self._idleAt: float | None = None
        self._wakes: dict[object, float] = {}

    def connected(self, now: float) -> None:
        """
        The connection was made: the handshake's clock starts.

        @param now: The current time.
        """
        self._handshakeAt = now + self.handshakeTimeout
        self.changed = True

    def established(self, now: float) -> None:
        """
        The handshake completed: its deadline goes, keep-alive and idle
        checks start.

        @param now: The current time.
        """
        self._handshakeAt = None
        if self.keepAliveInterval is not None:
            self._keepAliveAt = now + self.keepAliveInterval
        if self.idleTimeout is not None:
            self._idleAt = now + self.idleTimeout
        self.changed = True

    def pongReceived(self) -> None:
        """
        The peer answered a ping.
        """
        self.awaitingPong = False

    def stop(self, wakes: bool = False) -> None:
        """
        The session is closing or has ended: the handshake, keep-alive and
        idle deadlines no longer apply.

        @param wakes: Whether the wake-ups go too (the session has ended).
        """
        if wakes and self._wakes:
            self._wakes.clear()
            self.changed = True
        if (self._handshakeAt, self._keepAliveAt, self._idleAt) != (None, None, None):
            self.changed = True
        self._handshakeAt = self._keepAliveAt = self._idleAt = None

    def wake(self, who: object, when: float | None) -> None:
        """
        Wake C{who} (a capability) at C{when}, replacing its earlier wake-up;
        L{None} cancels it.

        @param who: Whoever asked.
        @param when: The time.
        """
        if when is None:
            self._wakes.pop(who, None)
        else:
            self._wakes[who] = when
        self.changed = True

    def woken(self, now: float) -> list[object]:
        """
        @param now: The current time.
        @return: Those whose wake-up time has come, forgotten from now on.
        """
        if not self._wakes:
            return []
        due = [who for who, when in self._wakes.items() if now >= when]
        for who in due:
            del self._wakes[who]
        if due:
            self.changed = True
        return due

    def nextDeadline(self, *others: float | None) -> float | None:
        """
        The earliest time something may be due, or L{None}.

        @param others: Further deadlines to consider (the close's grace
            period).
        """
        earliest: float | None = None
        for when in (self._handshakeAt, self._keepAliveAt, self._idleAt, *others):
            if when is not None and (earliest is None or when < earliest):
                earliest = when
        if self._wakes:
            soonest = min(self._wakes.values())
            if earliest is None or soonest < earliest:
                earliest = soonest
        return earliest

    def due(self, now: float, lastActivity: float, lastValue: float) -> list[Due]:
        """
        What is due at C{now}; the deadlines move on accordingly.

        @param now: The current time.
        @param lastActivity: When a frame last arrived.
        @param lastValue: When a value last moved either way (or the
            handshake completed).
        @return: What to do, in order; L{Due.HANDSHAKE_TIMEOUT} and
            L{Due.UNRESPONSIVE} end the list (the session fails).
        """
        result: list[Due] = []
        if self._handshakeAt is not None and now >= self._handshakeAt:
            self.stop()
            return [Due.HANDSHAKE_TIMEOUT]
        interval = self.keepAliveInterval
        if interval is not None and self._keepAliveAt is not None and now >= self._keepAliveAt:
            self.changed = True
            silent = now - lastActivity
            if self.awaitingPong and silent >= interval:
                self.stop()
                return [Due.UNRESPONSIVE]
            if silent >= interval and not self.awaitingPong:
                self.awaitingPong = True
                result.append(Due.PING)
                self._keepAliveAt = now + interval
            elif self.awaitingPong:
                self._keepAliveAt = now + interval
            else:
                self._keepAliveAt = now + max(interval - silent, 0.001)
        timeout = self.idleTimeout
        if timeout is not None and self._idleAt is not None and now >= self._idleAt:
            self.changed = True
            idle = now - lastValue
            if idle >= timeout:
                self._idleAt = None
                result.append(Due.IDLE)
            else:
                self._idleAt = now + (timeout - idle)
        return result
