# -*- test-case-name: tests.test_blocking_streams -*-
"""
Streams through the blocking API: L{Link.sendFile}, L{Link.sendStream} and
L{Link.recvStream} against a blocking L{Server}'s sessions
(C{Session.sendFile}, C{Session.recvStream}), over real loopback sockets.

As in L{tests.test_blocking}, each scenario runs in a child process
(C{python -m tests.test_blocking_streams SCENARIO}) because the blocking
server runs the global reactor in a thread, which the pytest process must
not do.  Every call has a timeout and every child a hard one.

L{ConstantMemoryTests} is the continuous-integration form of the
constant-memory figure (a 256 MiB file sent and received in one process,
its peak resident set growing by less than 64 MiB, in bounded time); the
4 GiB form is C{benchmarks/bench_streams.py}.
"""

from __future__ import annotations

import hashlib
import io
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from netstructer import blocking
from netstructer.blocking import link
from netstructer.errors import (
    OperationTimedOut,
    ResumeMismatch,
    StreamRefused,
    StreamTooLarge,
)
from netstructer.keys import generateKey
from netstructer.streams import StreamReceipt
from netstructer.streams.files import PART_SUFFIX

_ROOT = Path(__file__).resolve().parent.parent
KEY = generateKey()
MiB = 1024 * 1024

_SCENARIOS: dict[str, Callable[[], None]] = {}


def _scenario(function: Callable[[], None]) -> Callable[[], None]:
    _SCENARIOS[function.__name__] = function
    return function


def _check(condition: bool, message: str = "") -> None:
    if not condition:
        raise AssertionError(message or "check failed")


def _childEnvironment() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(_ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.pop("NETSTRUCTER_KEY", None)
    return env


class _ChildTests(SynchronousTestCase):
    def runScenario(self, name: str, timeout: float = 120) -> str:
        """
        Run a scenario in a child process.

        @return: Its output, once it printed C{PASS name} and exited 0.
        """
        result = subprocess.run(
            [sys.executable, "-m", "tests.test_blocking_streams", name],
            cwd=_ROOT,
            env=_childEnvironment(),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        message = f"scenario {name} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
        self.assertEqual(result.returncode, 0, message)
        self.assertIn(f"PASS {name}", result.stdout, message)
        return result.stdout


class LinkStreamTests(_ChildTests):
    """
    Files both ways between a blocking link and a blocking server.
    """

    def test_sendAndReceive(self) -> None:
        """
        C{sendFile} with progress, C{recvStream} read with C{read(n)} and by
        iteration, C{saveTo}, values between and during the streams.
        """
        self.runScenario("sendAndReceive")

    def test_resume(self) -> None:
        """
        C{sendFile(resume=True)} goes on from the part the receiver holds
        (checked by its SHA-256); a part that does not match fails with
        L{ResumeMismatch}.
        """
        self.runScenario("resume")

    def test_refusals(self) -> None:
        """
        A stream the handler refuses, one over C{maxStreamSize}, and one
        whose name exists fail at the sender with the reason; the link goes
        on.
        """
        self.runScenario("refusals")


class ConstantMemoryTests(_ChildTests):
    """
    A large file through both adapters in constant memory.
    """

    def test_256MiB(self) -> None:
        """
        A 256 MiB file sent by a blocking link and read by the blocking
        server's session (the Twisted adapter under it), in one process,
        grows its peak resident set by less than 64 MiB, within 90 seconds.
        """
        output = self.runScenario("constantMemory", timeout=180)
        self.assertIn("RSS growth", output)


def _peakRSS() -> int:
    """
    The process's peak resident set size, in bytes.
    """
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def _writeRandom(path: Path, size: int) -> bytes:
    """
    Write C{size} random bytes to C{path}, a MiB at a time.

    @return: Their SHA-256.
    """
    hasher = hashlib.sha256()
    with open(path, "wb") as file:
        left = size
        while left:
            block = os.urandom(min(MiB, left))
            hasher.update(block)
            file.write(block)
            left -= len(block)
    return hasher.digest()


@_scenario
def sendAndReceive() -> None:
    directory = Path(tempfile.mkdtemp())
    data = os.urandom(5 * MiB + 3)
    source = directory / "source.bin"
    source.write_bytes(data)
    done = threading.Event()
    failures: list[BaseException] = []

    def handler(session: blocking.Session) -> None:
        try:
            first = session.recvStream(timeout=20)
            _check(first.meta == {"name": "source.bin"}, repr(first.meta))
            _check(first.size == len(data))
            receipt = first.saveTo(directory / "saved.bin")
            _check(receipt.path == directory / "saved.bin")
            _check(session.recvBuffer(timeout=20) == "between")
            second = session.recvStream(timeout=20)
            pieces = []
            while piece := second.read(100_000):
                pieces.append(piece)
            _check(b"".join(pieces) == data)
            _check(second.sha256 == hashlib.sha256(data).digest())
            back = session.sendFile(source, meta="back")
            _check(back.size == len(data))
            session.sendBuffer("after")
        except BaseException as e:  # noqa: BLE001 -- reported by the main thread
            failures.append(e)
        finally:
            done.set()

    with blocking.Server(("127.0.0.1", 0), KEY) as server:
        server.listen_on(handler)
        with link(("127.0.0.1", server.port), KEY, timeout=20) as bridge:
            progress: list[tuple[int, int | None]] = []
            receipt = bridge.sendFile(source, progress=lambda n, s: progress.append((n, s)))
            _check(receipt == StreamReceipt(len(data), hashlib.sha256(data).digest()))
            _check(progress[-1] == (len(data), len(data)), repr(progress[-1:]))
            bridge.sendBuffer("between")
            with open(source, "rb") as file:
                bridge.sendStream(file, "second")
            incoming = bridge.recvStream(timeout=20)
            _check(incoming.meta == "back")
            got = hashlib.sha256()
            for chunk in incoming:
                got.update(chunk)
            _check(got.digest() == hashlib.sha256(data).digest())
            _check(incoming.receipt is not None and incoming.receipt.size == len(data))
            _check(bridge.recvBuffer(timeout=20) == "after")
            _check(done.wait(20), "the handler did not finish")
            if failures:
                raise failures[0]
    _check((directory / "saved.bin").read_bytes() == data)
    _check(sorted(p.name for p in directory.iterdir()) == ["saved.bin", "source.bin"])


@_scenario
def resume() -> None:
    directory = Path(tempfile.mkdtemp())
    data = os.urandom(3 * MiB)
    source = directory / "big.bin"
    source.write_bytes(data)
    inbox = directory / "in"
    inbox.mkdir()
    (inbox / f".big.bin{PART_SUFFIX}").write_bytes(data[: MiB + 5])
    saved: list[StreamReceipt] = []

    def handler(session: blocking.Session) -> None:
        while True:
            stream = session.recvStream(timeout=20)
            try:
                saved.append(stream.saveTo(inbox / stream.meta["name"]))
            except ResumeMismatch:
                pass

    with blocking.Server(("127.0.0.1", 0), KEY) as server:
        server.listen_on(handler)
        with link(("127.0.0.1", server.port), KEY, timeout=20) as bridge:
            receipt = bridge.sendFile(source, resume=True)
            _check(receipt.offset == MiB + 5, repr(receipt))
            _check(receipt.size == len(data))
            _check((inbox / "big.bin").read_bytes() == data)
            _check(not (inbox / f".big.bin{PART_SUFFIX}").exists())
            # A part that is not the file's start is not resumed from.
            (inbox / f".other.bin{PART_SUFFIX}").write_bytes(b"x" * 1000)
            other = directory / "other.bin"
            other.write_bytes(os.urandom(5000))
            try:
                bridge.sendFile(other, resume=True)
            except ResumeMismatch as e:
                _check("not those of this file" in str(e), str(e))
            else:
                raise AssertionError("a mismatched part was resumed from")
            bridge.sendBuffer("still open")


@_scenario
def refusals() -> None:
    directory = Path(tempfile.mkdtemp())
    (directory / "exists.bin").write_bytes(b"old")

    def handler(session: blocking.Session) -> None:
        first = session.recvStream(timeout=20)
        first.refuse("not wanted here")
        second = session.recvStream(timeout=20)
        try:
            second.saveTo(directory / "exists.bin")
        except StreamRefused:
            pass
        session.sendBuffer("handled")

    with blocking.Server(("127.0.0.1", 0), KEY, maxStreamSize=MiB) as server:
        server.listen_on(handler)
        with link(("127.0.0.1", server.port), KEY, timeout=20) as bridge:
            try:
                bridge.sendStream(io.BytesIO(b"data"), "a")
            except StreamRefused as e:
                _check("not wanted here" in str(e), str(e))
            else:
                raise AssertionError("not refused")
            try:
                bridge.sendStream(io.BytesIO(b"data"), "exists.bin")
            except StreamRefused as e:
                _check("a file of that name exists" in str(e), str(e))
            else:
                raise AssertionError("overwrote")
            _check(bridge.recvBuffer(timeout=20) == "handled")
            try:
                bridge.sendStream(io.BytesIO(b"y" * (MiB + 1)), "large")
            except StreamTooLarge as e:
                _check("limit" in str(e), str(e))
            else:
                raise AssertionError("a stream over maxStreamSize was accepted")
            try:
                bridge.sendStream(io.BytesIO(b"z"), "cut", timeout=0.5)
            except OperationTimedOut:
                pass
            bridge.sendBuffer("after")
    _check((directory / "exists.bin").read_bytes() == b"old")


@_scenario
def constantMemory() -> None:
    size = 256 * MiB
    directory = Path(tempfile.mkdtemp())
    source = directory / "big.bin"
    digest = _writeRandom(source, size)
    received: list[bytes] = []

    def handler(session: blocking.Session) -> None:
        for _ in range(2):
            stream = session.recvStream(timeout=30)
            hasher = hashlib.sha256()
            for chunk in stream:
                hasher.update(chunk)
            received.append(hasher.digest())

    with blocking.Server(("127.0.0.1", 0), KEY) as server:
        server.listen_on(handler)
        with link(("127.0.0.1", server.port), KEY, timeout=30) as bridge:
            # Warm up: the first session, stream and threads.
            bridge.sendStream(io.BytesIO(os.urandom(MiB)), "warm")
            before = _peakRSS()
            started = time.monotonic()
            receipt = bridge.sendFile(source)
            elapsed = time.monotonic() - started
            growth = _peakRSS() - before
    os.unlink(source)
    _check(receipt.sha256 == digest)
    print(f"RSS growth {growth / MiB:.1f} MiB, {size / MiB / elapsed:.0f} MiB/s", flush=True)
    _check(growth < 64 * MiB, f"peak RSS grew by {growth / MiB:.1f} MiB")
    _check(elapsed < 90, f"took {elapsed:.0f} seconds")


def _main(argv: list[str]) -> int:
    _SCENARIOS[argv[1]]()
    print(f"PASS {argv[1]}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv))
