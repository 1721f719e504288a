# -*- test-case-name: tests.test_streams_hashing -*-
"""
SHA-256 in a thread of its own, for streams.

Hashing a stream costs about as much CPU as sealing and sending it; done in
the thread that seals and sends (a reactor's), it halves a stream's speed.
L{BackgroundSha256} hands its bytes to one worker thread per process, which
hashes them in order while the caller goes on (C{hashlib} releases the GIL
while it hashes a large buffer), and waits for it only when asked for the
digest, or when more than L{PENDING_LIMIT} bytes wait to be hashed (so
memory stays bounded, and a caller faster than the worker is slowed down to
its pace instead of queuing without end).
"""

from __future__ import annotations

import hashlib
import os
import threading
from queue import SimpleQueue
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from hashlib import _Hash

__all__ = ["INLINE_BELOW", "PENDING_LIMIT", "BackgroundSha256", "backgroundSha256"]

PENDING_LIMIT: Final = 4 * 1024 * 1024
"""The most bytes one hash holds waiting for the worker: C{update} waits
while more do.  At about 1.5 GB/s this is under 3 ms of hashing, the
longest a C{digest} waits."""

WORKER_NICENESS: Final = 10
"""The niceness the worker thread sets itself (on Linux, where a thread has
its own): when the CPUs are busy, it runs after the reactor."""

INLINE_BELOW: Final = 16 * 1024
"""Smaller updates are hashed at once in the caller's thread when nothing
waits before them: handing them over would cost more than hashing them."""


class _Worker:
    """
    The thread that hashes for every L{BackgroundSha256} of the process, in
    the order their bytes were given (so in order for each hash).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._queue: SimpleQueue[tuple[BackgroundSha256, bytes | memoryview]] = SimpleQueue()
        self._thread: threading.Thread | None = None

    def submit(self, owner: BackgroundSha256, data: bytes | memoryview) -> None:
        if self._thread is None:
            with self._lock:
                if self._thread is None:
                    thread = threading.Thread(
                        target=self._run, name="netstructer-sha256", daemon=True
                    )
                    thread.start()
                    self._thread = thread
        self._queue.put((owner, data))

    def _run(self) -> None:
        _yieldToOthers()
        get = self._queue.get
        while True:
            owner, data = get()
            owner._absorb(data)
            # Drop the references before waiting for the next piece.
            del owner, data

    def forked(self) -> None:
        """
        In a child process just forked: the thread did not come along.
        """
        self._lock = threading.Lock()
        self._queue = SimpleQueue()
        self._thread = None


def _yieldToOthers() -> None:
    """
    Make the calling thread (the worker) give way to the process's other
    threads when the CPUs are busy: hashing can wait, the reactor's
    answers to small values cannot.  Where threads have no priority of
    their own, nothing changes.
    """
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), WORKER_NICENESS)
    except (AttributeError, OSError):
        # No per-thread priority here (not Linux), or not allowed to lower
        # it: the worker runs at the process's priority.
        return


_WORKER = _Worker()
os.register_at_fork(after_in_child=_WORKER.forked)


def _frozen(data: bytes | memoryview) -> bytes | memoryview:
    """
    C{data} as it is now, for as long as the worker needs it: itself when
    it cannot change (C{bytes}, a read-only view of C{bytes}), else a copy.
    """
    if type(data) is bytes:
        return data
    if isinstance(data, memoryview) and data.readonly and isinstance(data.obj, bytes):
        return data
    return bytes(data)


class BackgroundSha256:
    """
    A SHA-256 computed by the worker thread: L{update} returns at once (or
    once the worker caught up to L{PENDING_LIMIT}), L{digest} waits for
    every byte given.  Fed from one thread at a time, like any hash object.
    """

    def __init__(self, prefix: _Hash | None = None) -> None:
        """
        @param prefix: A C{hashlib} SHA-256 to go on from (a copy of it is
            taken), or L{None} to start afresh.
        """
        self._hash = hashlib.sha256() if prefix is None else prefix.copy()
        self._pending = 0
        self._condition = threading.Condition(threading.Lock())
        self._error: Exception | None = None

    def __repr__(self) -> str:
        return f"<BackgroundSha256 {self._pending} bytes pending>"

    def update(self, data: bytes | memoryview, /) -> None:
        """
        Give the worker C{data} to hash after what it was given before.
        """
        size = len(data)
        if not size:
            return
        if size < INLINE_BELOW and not self._pending:
            # The worker holds nothing of this hash: hash here, in order.
            self._hash.update(data)
            return
        data = _frozen(data)
        with self._condition:
            while self._pending >= PENDING_LIMIT:
                self._condition.wait()
            self._pending += size
        _WORKER.submit(self, data)

    def _absorb(self, data: bytes | memoryview) -> None:
        """
        In the worker: hash C{data}.
        """
        try:
            self._hash.update(data)
        except Exception as e:  # noqa: BLE001 -- kept for digest() to raise
            self._error = e
        with self._condition:
            self._pending -= len(data)
            self._condition.notify_all()

    def digest(self) -> bytes:
        """
        @return: The SHA-256 of every byte given, once the worker hashed
            them all.
        @raise Exception: What hashing raised in the worker.
        """
        with self._condition:
            while self._pending:
                self._condition.wait()
        if self._error is not None:
            raise self._error
        return self._hash.digest()

    def hexdigest(self) -> str:
        """
        @return: L{digest}, in hexadecimal.
        """
        return self.digest().hex()


def backgroundSha256(prefix: _Hash | None = None) -> BackgroundSha256:
    """
    A L{netstructer.streams.hashing.HashFactory} whose hashes are computed
    by the worker thread.
    """
    return BackgroundSha256(prefix)
