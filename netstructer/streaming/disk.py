# -*- test-case-name: tests.test_streaming -*-
"""
File work for streams on the Twisted side, off the reactor's thread.

Reading a chunk of a file, writing one, renaming a finished file or hashing
a part to resume can each block for as long as the disk takes (a busy or
network disk, a full page cache): none of it runs in the reactor's thread.
L{ThreadedDiskIO} runs it in a small thread pool of its own (two threads by
default, one per reactor, started when first used and stopped when the
reactor shuts down), one bounded piece of work at a time per stream: a
chunk of at most 1 MiB read, or the chunks received and not yet written
(at most a stream's window) written.  L{ImmediateDiskIO} runs it at once,
for tests and for files known never to block.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any, TypeVar

from twisted.internet import defer
from twisted.internet.threads import deferToThreadPool
from twisted.python.threadpool import ThreadPool
from zope.interface import Interface, implementer

__all__ = [
    "DISK_THREADS",
    "IDiskIO",
    "ImmediateDiskIO",
    "SerialDiskIO",
    "ThreadedDiskIO",
    "diskIOFor",
]

_T = TypeVar("_T")

DISK_THREADS = 2
"""How many threads a reactor's L{ThreadedDiskIO} runs file work in."""


class IDiskIO(Interface):
    """
    Runs blocking file work where it cannot hold the reactor up.
    """

    def run(function: Callable[..., Any], *args: object) -> defer.Deferred[Any]:  # noqa: N805
        """
        Run C{function(*args)}.

        @return: A Deferred firing (in the reactor's thread) with its
            result, or failing with what it raised.
        """


@implementer(IDiskIO)
class ThreadedDiskIO:
    """
    File work in a thread pool of its own.

    @ivar maxThreads: The pool's size.
    """

    def __init__(self, reactor: Any, maxThreads: int = DISK_THREADS) -> None:
        """
        @param reactor: Where results are delivered; the pool stops when it
            shuts down.
        @param maxThreads: The pool's size.
        """
        self._reactor = reactor
        self.maxThreads = maxThreads
        self._pool: ThreadPool | None = None

    def _started(self) -> ThreadPool:
        pool = self._pool
        if pool is None:
            pool = self._pool = ThreadPool(0, self.maxThreads, "netstructer-disk")
            pool.start()
            self._reactor.addSystemEventTrigger("during", "shutdown", self.stop)
        return pool

    def run(self, function: Callable[..., _T], *args: object) -> defer.Deferred[_T]:
        """
        Run C{function(*args)} in the pool.
        """
        return deferToThreadPool(self._reactor, self._started(), function, *args)

    def stop(self) -> None:
        """
        Stop the pool, waiting for the work under way.  It starts again if
        used afterwards.
        """
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.stop()


@implementer(IDiskIO)
class ImmediateDiskIO:
    """
    File work run at once, in the caller's thread: for tests, and for files
    that never block (a RAM disk).
    """

    def run(self, function: Callable[..., _T], *args: object) -> defer.Deferred[_T]:
        """
        Run C{function(*args)} now.
        """
        return defer.maybeDeferred(function, *args)


class SerialDiskIO:
    """
    The file work of one stream: each piece starts once the one before it
    ended (successfully or not), in the order they were asked for.
    """

    def __init__(self, disk: IDiskIO) -> None:
        self._disk = disk
        self._last: defer.Deferred[None] = defer.succeed(None)

    def run(self, function: Callable[..., _T], *args: object) -> defer.Deferred[_T]:
        """
        Run C{function(*args)} after the work asked for before it.
        """
        done: defer.Deferred[_T] = defer.Deferred()

        def start(_: object) -> defer.Deferred[None]:
            work = self._disk.run(function, *args)
            work.chainDeferred(done)
            return work.addBoth(lambda _: None)

        self._last = self._last.addCallback(start)
        return done


_PER_REACTOR: weakref.WeakKeyDictionary[Any, ThreadedDiskIO] = weakref.WeakKeyDictionary()


def diskIOFor(reactor: Any) -> ThreadedDiskIO:
    """
    The L{ThreadedDiskIO} of C{reactor}: one pool per reactor, shared by
    its sessions' streams.
    """
    disk = _PER_REACTOR.get(reactor)
    if disk is None:
        disk = _PER_REACTOR[reactor] = ThreadedDiskIO(reactor)
    return disk
