# -*- test-case-name: tests.test_streams_hashing -*-
"""
Tests for how streams are hashed: L{netstructer.streams.hashing} (the
engine's factory of hashes) and L{netstructer._sha256} (SHA-256 in a worker
thread, which the adapters use).
"""

from __future__ import annotations

import hashlib
import os
import signal
import sys
import threading
from typing import TYPE_CHECKING

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SkipTest, SynchronousTestCase

from netstructer import _sha256
from netstructer._sha256 import INLINE_BELOW, BackgroundSha256, backgroundSha256
from netstructer.streams.hashing import StreamHash, inlineSha256
from netstructer.streams.sources import BytesSource

from ._streamshost import Collector, EngineObserver, Pair, Sent, sha256

if TYPE_CHECKING:
    from hashlib import _Hash

_SIZES = st.sampled_from([0, 1, 100, INLINE_BELOW - 1, INLINE_BELOW, 70_000, 300_000])


def _piece(size: int, kind: str) -> bytes | bytearray | memoryview:
    data = os.urandom(size)
    if kind == "bytearray":
        return bytearray(data)
    if kind == "view":
        return memoryview(data)
    if kind == "slice":
        return memoryview(b"x" + data)[1:]
    return data


class InlineTests(SynchronousTestCase):
    """
    L{inlineSha256}, the engine's default.
    """

    def test_fresh(self) -> None:
        """
        Given nothing, a new SHA-256.
        """
        hasher = inlineSha256(None)
        hasher.update(b"abc")
        self.assertEqual(hasher.digest(), hashlib.sha256(b"abc").digest())

    def test_prefix(self) -> None:
        """
        Given a prefix, a copy of it: feeding one leaves the other as it was.
        """
        prefix = hashlib.sha256(b"ab")
        hasher = inlineSha256(prefix)
        hasher.update(b"c")
        self.assertEqual(hasher.digest(), hashlib.sha256(b"abc").digest())
        self.assertEqual(prefix.digest(), hashlib.sha256(b"ab").digest())


class BackgroundTests(SynchronousTestCase):
    """
    L{BackgroundSha256}.
    """

    @settings(max_examples=40, deadline=None)
    @given(
        st.lists(
            st.tuples(_SIZES, st.sampled_from(["bytes", "bytearray", "view", "slice"])),
            max_size=12,
        )
    )
    def test_sameAsHashlib(self, pieces: list[tuple[int, str]]) -> None:
        """
        Whatever the sizes and kinds of the pieces, hashed at once or by
        the worker, the digest is C{hashlib}'s of them in order.
        """
        reference = hashlib.sha256()
        hasher = BackgroundSha256()
        for size, kind in pieces:
            piece = _piece(size, kind)
            reference.update(piece)
            hasher.update(piece)
        self.assertEqual(hasher.digest(), reference.digest())
        self.assertEqual(hasher.hexdigest(), reference.hexdigest())

    def test_mutableCopied(self) -> None:
        """
        A C{bytearray} (or a view of one) changed after it was given is
        hashed as it was when given.
        """
        data = bytearray(os.urandom(200_000))
        before = bytes(data)
        hasher = BackgroundSha256()
        hasher.update(data)
        hasher.update(memoryview(data))
        data[:] = bytes(len(data))
        self.assertEqual(hasher.digest(), hashlib.sha256(before + before).digest())

    def test_prefixAndGoingOn(self) -> None:
        """
        It goes on from a prefix's copy, and after a digest it can be fed
        more.
        """
        prefix = hashlib.sha256(b"start")
        hasher = backgroundSha256(prefix)
        middle = os.urandom(100_000)
        hasher.update(middle)
        self.assertEqual(hasher.digest(), hashlib.sha256(b"start" + middle).digest())
        hasher.update(b"end")
        self.assertEqual(hasher.digest(), hashlib.sha256(b"start" + middle + b"end").digest())
        self.assertEqual(prefix.digest(), hashlib.sha256(b"start").digest())

    def test_boundedPending(self) -> None:
        """
        With the limit of bytes waiting for the worker lowered to one, each
        large update waits for the worker first; the digest is the same.
        """
        self.patch(_sha256, "PENDING_LIMIT", 1)
        pieces = [os.urandom(50_000) for _ in range(20)]
        hasher = BackgroundSha256()
        for piece in pieces:
            hasher.update(piece)
            self.assertLessEqual(hasher._pending, 50_000)
        self.assertEqual(hasher.digest(), hashlib.sha256(b"".join(pieces)).digest())

    def test_interleaved(self) -> None:
        """
        Hashes fed in turn share the worker and keep their own order.
        """
        pieces = [os.urandom(40_000) for _ in range(10)]
        hashers = [BackgroundSha256() for _ in range(3)]
        for piece in pieces:
            for index, hasher in enumerate(hashers):
                hasher.update(piece[index:])
        for index, hasher in enumerate(hashers):
            expected = hashlib.sha256(b"".join(piece[index:] for piece in pieces))
            self.assertEqual(hasher.digest(), expected.digest())

    def test_workerError(self) -> None:
        """
        An error hashing in the worker is raised by C{digest}, not lost;
        the worker goes on hashing for the others.
        """

        class Broken:
            def update(self, data: object) -> None:
                raise MemoryError("no room")

        broken = BackgroundSha256()
        broken._hash = Broken()  # type: ignore[assignment]
        broken.update(os.urandom(100_000))
        self.assertRaises(MemoryError, broken.digest)
        healthy = BackgroundSha256()
        healthy.update(b"y" * 100_000)
        self.assertEqual(healthy.digest(), hashlib.sha256(b"y" * 100_000).digest())

    def test_workerGivesWay(self) -> None:
        """
        On Linux the worker thread lowers its own priority (its niceness,
        from the process's), so that busy CPUs run the reactor first.
        """
        if not sys.platform.startswith("linux"):
            raise SkipTest("threads have priorities of their own on Linux only")
        hasher = BackgroundSha256()
        hasher.update(b"p" * 100_000)
        hasher.digest()
        thread = _sha256._WORKER._thread
        assert thread is not None and thread.native_id is not None
        own = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
        expected = min(own + _sha256.WORKER_NICENESS, 19)
        self.assertEqual(os.getpriority(os.PRIO_PROCESS, thread.native_id), expected)

    def test_afterFork(self) -> None:
        """
        In a child forked after the worker started, hashing still works
        (the child starts a worker of its own).
        """
        warm = BackgroundSha256()
        warm.update(b"w" * 100_000)
        warm.digest()
        pid = os.fork()
        if pid == 0:  # pragma: no cover -- the child reports by its status
            status = 1
            try:
                signal.alarm(20)
                hasher = BackgroundSha256()
                hasher.update(b"z" * 100_000)
                if hasher.digest() == hashlib.sha256(b"z" * 100_000).digest():
                    status = 0
            finally:
                os._exit(status)
        # The child's alarm bounds this wait: it ends within 20 seconds.
        _, status = os.waitpid(pid, 0)
        self.assertEqual(os.waitstatus_to_exitcode(status), 0)


class EngineHashingTests(SynchronousTestCase):
    """
    The engine makes every stream's hash with its C{hashing} factory.
    """

    def test_factoryUsed(self) -> None:
        """
        Each side's streams are hashed by hashes of its factory (resumed
        ones going on from the prefix given), and the SHA-256 checked and
        confirmed is theirs.
        """
        made: list[tuple[str, bytes | None]] = []

        def factory(side: str) -> object:
            def make(prefix: _Hash | None) -> StreamHash:
                made.append((side, None if prefix is None else prefix.digest()))
                return BackgroundSha256(prefix)

            return make

        data = os.urandom(300_000)
        held = data[:100_000]

        def offered(stream: object) -> None:
            collector = Collector(stream)  # type: ignore[arg-type]
            pair.serverObserver.collectors[stream.streamID] = collector  # type: ignore[attr-defined]
            stream.accept(collector, offset=len(held), prefix=hashlib.sha256(held))  # type: ignore[attr-defined]

        pair = Pair(
            serverObserver=EngineObserver(onOffered=offered),
            clientOptions={"hashing": factory("client")},
            serverOptions={"hashing": factory("server")},
        )
        sent = Sent()
        source = BytesSource(data)

        def onResume(offset: int, digest: bytes) -> None:
            source.seek(offset)
            stream.resumeFrom(offset, hashlib.sha256(data[:offset]))

        sent.onResume = onResume
        stream = pair.client.openStream(source, sent, size=len(data), resume=True)
        pair.pump()
        self.assertEqual(sent.confirmed, (len(data), sha256(data)))
        prefix = hashlib.sha256(held).digest()
        self.assertEqual(
            sorted(made, key=repr),
            sorted(
                [("client", None), ("client", prefix), ("server", None), ("server", prefix)],
                key=repr,
            ),
        )
