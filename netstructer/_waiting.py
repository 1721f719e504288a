# -*- test-case-name: tests.test_protocol -*-
"""
L{Waiters}: Deferreds waiting, in order, for what a session receives
(C{recvBuffer}, C{recvFrom}), each with an optional timeout on the
session's clock.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

from twisted.internet import defer
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.python.failure import Failure

__all__ = ["Waiters"]

_T = TypeVar("_T")


class Waiters(Generic[_T]):
    """
    Callers waiting for the next thing to arrive, first come first served.
    A waiter that times out or is cancelled consumes nothing.
    """

    def __init__(self, clock: IReactorTime, timedOut: Callable[[float], Exception]) -> None:
        """
        @param clock: Schedules the timeouts.
        @param timedOut: Makes the error a waiter fails with after its
            timeout, given the timeout.
        """
        self._clock = clock
        self._timedOut = timedOut
        # A list: there are few waiters, and an empty list is small.
        self._waiting: list[defer.Deferred[_T]] = []

    def __bool__(self) -> bool:
        return bool(self._waiting)

    def wait(self, timeout: float | None = None) -> defer.Deferred[_T]:
        """
        Wait for the next thing.

        @param timeout: Seconds to wait; L{None} waits as long as needed.
        @return: A Deferred firing with it, or failing after C{timeout}.
        """
        waiting = self._waiting
        if timeout is None:
            # The usual case, once per value for a reader waiting on each:
            # no timer and no closure to make.
            waiter: defer.Deferred[_T] = defer.Deferred(waiting.remove)
            waiting.append(waiter)
            return waiter
        timer: IDelayedCall | None = None

        def cancel(d: defer.Deferred[_T]) -> None:
            if timer is not None and timer.active():
                timer.cancel()
            waiting.remove(d)

        d: defer.Deferred[_T] = defer.Deferred(cancel)
        waiting.append(d)

        def expired() -> None:
            waiting.remove(d)
            d.errback(self._timedOut(timeout))

        timer = self._clock.callLater(timeout, expired)

        def stopTimer(result: object) -> object:
            if timer is not None and timer.active():
                timer.cancel()
            return result

        d.addBoth(stopTimer)
        return d

    def fire(self, value: _T) -> None:
        """
        Give C{value} to the oldest waiter.

        @raise IndexError: Nobody is waiting.
        """
        self._waiting.pop(0).callback(value)

    def fail(self, reason: Failure | BaseException) -> None:
        """
        Fail the oldest waiter.

        @raise IndexError: Nobody is waiting.
        """
        self._waiting.pop(0).errback(reason)

    def failAll(self, reason: Failure | BaseException) -> None:
        """
        Fail every waiter with C{reason}.
        """
        waiting, self._waiting = self._waiting, []
        for d in waiting:
            d.errback(reason)
