# -*- test-case-name: tests.test_faults -*-
"""
Faults and load against a real server process on loopback.

    - A client killed in the middle of a frame: the server drops that
      session only, and its registry's count of sessions returns to what
      it was (read from the recording handler of L{tests.test_hostile}).
    - The server stopped with SIGTERM while clients send numbered values:
      every value a client's C{sendBuffer} accepted is either processed by
      the server's handler (which records it, flushed, at once) or
      reported to that client as failed (its link did not end with a clean
      close); none vanishes silently.
    - The server restarted: a L{ReconnectingClient
      <netstructer.client.ReconnectingClient>} resumes within a second of
      the server listening again, and the value queued while it was down
      is delivered.
    - A small load (C{benchmarks/load.py} at 50 sessions x 20 round trips):
      no failure.

The measurements are module-level functions shared with
C{benchmarks/reliability.py}.  Every wait has a deadline, and every process
a test starts is killed when it ends.
"""

from __future__ import annotations

import ast
import json
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from twisted.internet import task
from twisted.trial.unittest import SynchronousTestCase, TestCase

from netstructer.blocking import Link, link
from netstructer.client import ReconnectingClient
from netstructer.errors import NetStructerError
from netstructer.keys import readKeyFile
from tests.test_hostile import HANDLER_MODULE, REPO, RawPeer, ServerProcess, raiseFileLimit

__all__ = [
    "measureKilledClient",
    "measureReconnect",
    "measureSigterm",
    "victimMain",
]

RECORD_DEADLINE = 10.0

SLOW_HANDLER = f"{HANDLER_MODULE}:SlowRecorder"
"""The recording handler that stops reading for 2 ms after each value."""

FAULT_OPTIONS = ("--handshake-timeout", "5")
"""The fault tests' server options: the default keep-alive (60 seconds), so
that an idle blocking client is not dropped between its calls."""


def victimMain() -> None:
    """
    The client that gets killed (run in a child process with the port and
    key file as arguments): authenticate, send one whole recorded value,
    then half of the frame of another, print its C{ip:port}, and wait for
    standard input to end.
    """
    port, keyFile = int(sys.argv[1]), sys.argv[2]
    peer = RawPeer(port)
    channel = peer.handshake(readKeyFile(keyFile))
    peer.sendFrame(channel.sendValue(["REC", "victim", 1]))
    frame = channel.sendValue(["REC", "victim", 2, b"x" * 1000])
    whole = len(frame).to_bytes(4, "big") + frame
    peer.send(whole[: len(whole) // 2])
    print(peer.key, flush=True)
    sys.stdin.read()


def _readLine(process: subprocess.Popen[str], deadline: float) -> str:
    """
    Read one line of a child's output, within a deadline.
    """
    assert process.stdout is not None
    ready, _, _ = select.select([process.stdout], [], [], max(deadline - time.monotonic(), 0))
    if not ready:
        raise AssertionError("the child printed nothing in time")
    return process.stdout.readline().strip()


def _roundTrip(bridge: Link, n: int) -> None:
    """
    One round trip with the echo handler.

    @raise AssertionError: The echo differs.
    """
    value = ["check", n]
    bridge.sendBuffer(value)
    reply = bridge.recvBuffer(timeout=5)
    if reply != value:
        raise AssertionError(f"sent {value!r}, got {reply!r}")


def measureKilledClient(server: ServerProcess) -> dict[str, Any]:
    """
    Kill (SIGKILL) a client that wrote half a frame, while another session
    stays open.

    @return: C{before} (the sessions before the victim), C{during},
        C{after} (from the handler's records), C{bystander} (round trips
        the other session made after the kill), C{seconds} (from the kill
        to the server dropping the session), C{problems}.
    """
    problems: list[str] = []
    deadline = time.monotonic() + RECORD_DEADLINE
    env = dict(os.environ, PYTHONPATH=str(REPO))
    with link(("127.0.0.1", server.port), server.key, timeout=5) as bystander:
        _roundTrip(bystander, 0)
        opened = server.waitForRecord(r"^open \S+ \d+$", deadline)
        before = int(opened.split()[2]) if opened else -1
        victim = subprocess.Popen(
            [
                sys.executable,
                "-c",
                "from tests.test_faults import victimMain; victimMain()",
                str(server.port),
                str(server.home / "server.key"),
            ],
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            key = _readLine(victim, deadline)
            during = server.waitForRecord(rf"^open {re.escape(key)} \d+$", deadline)
            if server.waitForRecord(rf"^value {re.escape(key)} \['victim', 1\]", deadline) is None:
                problems.append("the victim's whole value was not processed")
            killed = time.monotonic()
            victim.kill()
            victim.wait(timeout=10)
        finally:
            if victim.poll() is None:
                victim.kill()
                victim.wait(timeout=10)
            assert victim.stdin is not None and victim.stdout is not None
            victim.stdin.close()
            victim.stdout.close()
        closed = server.waitForRecord(rf"^closed {re.escape(key)} ", deadline)
        seconds = time.monotonic() - killed
        rounds = 0
        for n in range(1, 6):
            _roundTrip(bystander, n)
            rounds += 1
    if closed is None:
        problems.append("the victim's session was never dropped")
    if any("'victim', 2" in line for line in server.records()):
        problems.append("half a frame reached the handler")
    return {
        "before": before,
        "during": int(during.split()[2]) if during else -1,
        "after": int(closed.split()[2]) if closed else -1,
        "closedWith": closed.split()[3] if closed else None,
        "bystander": rounds,
        "seconds": seconds,
        "problems": problems,
    }


_QUIET = re.compile(r"^value \S+ (\['quiet', .*\])$")


def measureSigterm(
    server: ServerProcess, clients: int = 4, minimum: int = 200, limit: int = 10_000_000
) -> dict[str, Any]:
    """
    Stop the server with SIGTERM while C{clients} blocking clients send
    numbered values (recorded, not echoed, by the handler) as fast as they
    can.

    @param server: The server; it is stopped.
    @param clients: How many clients send.
    @param minimum: Each client sends at least this many before SIGTERM.
    @param limit: Each client sends at most this many.
    @return: C{sent}, C{delivered}, C{reportedFailed} and C{silentlyLost}
        (totals over the clients), C{clean} (clients whose link ended with
        a clean close), C{status} (the server's exit status), C{problems}.
    """
    counts = [0] * clients
    outcomes: list[dict[str, Any]] = [{} for _ in range(clients)]
    deadline = time.monotonic() + 30.0

    def send(index: int) -> None:
        """
        Send numbered values on one link until it ends, noting how it ended.
        """
        error: BaseException | None = None
        try:
            bridge = link(("127.0.0.1", server.port), server.key, timeout=10)
        except (NetStructerError, OSError) as e:
            outcomes[index].update(clean=False, code=None, error=f"{type(e).__name__}: {e}")
            return
        try:
            while counts[index] < limit and time.monotonic() < deadline:
                bridge.sendBuffer(["REC", "quiet", index, counts[index]])
                counts[index] += 1
        except (NetStructerError, OSError) as e:
            error = e
        finally:
            # After the server's close this does nothing; otherwise (the
            # limit or the deadline came first) it closes from this side.
            bridge.close()
        outcomes[index].update(
            clean=bridge.closedCleanly,
            code=bridge.closeCode.name if bridge.closeCode is not None else None,
            error=None if error is None else f"{type(error).__name__}: {error}",
        )

    threads = [threading.Thread(target=send, args=(i,), daemon=True) for i in range(clients)]
    for thread in threads:
        thread.start()
    while min(counts) < minimum and time.monotonic() < deadline:
        time.sleep(0.01)
    signalled = time.monotonic()
    status = server.stop(signal.SIGTERM)
    stopped = time.monotonic() - signalled
    for thread in threads:
        thread.join(max(deadline - time.monotonic(), 1.0))
    problems = [f"client {i} is still sending" for i, t in enumerate(threads) if t.is_alive()]
    delivered: list[list[int]] = [[] for _ in range(clients)]
    for line in server.records():
        match = _QUIET.match(line)
        if match is not None:
            _, index, n = ast.literal_eval(match.group(1))
            delivered[index].append(n)
    reportedFailed = silentlyLost = 0
    for index in range(clients):
        got = delivered[index]
        if got != list(range(len(got))):
            problems.append(f"client {index}: values delivered out of order or twice")
        missing = counts[index] - len(got)
        if missing < 0:
            problems.append(f"client {index}: more values delivered than sent")
        elif missing and outcomes[index].get("clean"):
            silentlyLost += missing
            problems.append(f"client {index}: {missing} values lost, yet its link closed cleanly")
        else:
            reportedFailed += missing
    return {
        "clients": clients,
        "sent": sum(counts),
        "delivered": sum(len(got) for got in delivered),
        "reportedFailed": reportedFailed,
        "silentlyLost": silentlyLost,
        "clean": sum(1 for outcome in outcomes if outcome.get("clean")),
        "outcomes": outcomes,
        "stopSeconds": stopped,
        "status": status,
        "problems": problems,
    }


async def _waitUntil(
    reactor: Any, predicate: Callable[[], bool], seconds: float, what: str
) -> float:
    """
    Poll C{predicate} every 5 ms without blocking the reactor.

    @return: When it became true (C{time.monotonic()}).
    @raise AssertionError: It did not within C{seconds}.
    """
    deadline = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {seconds} s")
        await task.deferLater(reactor, 0.005)
    return time.monotonic()


async def measureReconnect(
    reactor: Any,
    home: Path,
    retryPolicy: Callable[[int], float] | None,
    servers: list[ServerProcess],
    description: bool = False,
) -> dict[str, Any]:
    """
    Restart the server under a connected L{ReconnectingClient}.

    @param reactor: The running reactor.
    @param home: A directory for the servers' files.
    @param retryPolicy: The client's retry policy (L{None}: its default).
    @param servers: Every server started is appended, for the caller to
        kill.
    @param description: Connect through the endpoint description
        C{tcp:host=127.0.0.1:port=N} rather than the tuple C{("127.0.0.1",
        N)}: the tuple means a L{HostnameEndpoint
        <twisted.internet.endpoints.HostnameEndpoint>}, which takes 0.3
        seconds to report a refused connection.
    @return: C{down} (seconds the server could not serve), C{gap} (seconds
        from the new server first serving a session, as a probe sees it
        trying every 10 ms, to the client's new session), C{echoed}
        (whether the value queued while down came back), C{problems}.
    """
    first = ServerProcess(home, FAULT_OPTIONS)
    servers.append(first)
    client = ReconnectingClient(
        f"tcp:host=127.0.0.1:port={first.port}" if description else ("127.0.0.1", first.port),
        first.key,
        reactor=reactor,
        retryPolicy=retryPolicy,
    )
    client.startService()
    problems: list[str] = []
    try:
        await client.whenConnected(failAfterFailures=5)
        client.sendBuffer(["check", 1])
        if await client.recvBuffer(timeout=5) != ["check", 1]:
            problems.append("the first echo differs")
        first.process.send_signal(signal.SIGTERM)
        await _waitUntil(reactor, lambda: first.process.poll() is not None, 20, "stopping")
        stoppedAt = await _waitUntil(reactor, lambda: client.session is None, 10, "the drop")
        queued = client.sendBuffer(["REC", "queued", 1])
        second = ServerProcess(home, FAULT_OPTIONS, port=first.port, key=first.key, wait=False)
        servers.append(second)
        probe = _ServingProbe(first.port, first.key)
        await client.whenConnected()
        connectedAt = time.monotonic()
        await _waitUntil(reactor, probe.done.is_set, 30, "the probe")
        await queued
        echoed = await client.recvBuffer(timeout=5) == ["REC", "queued", 1]
    finally:
        await client.stopService()
    if probe.servedAt is None:
        raise AssertionError("the restarted server never served the probe")
    return {
        "down": probe.servedAt - stoppedAt,
        "gap": max(connectedAt - probe.servedAt, 0.0),
        "echoed": echoed,
        "problems": problems,
    }


class _ServingProbe:
    """
    Tries, in a thread, to open a session (connect and authenticate) every
    10 ms, to tell when a restarted server serves again.

    @ivar servedAt: When the first session opened (C{time.monotonic()}).
    @ivar done: Set once it did, or the deadline passed.
    """

    def __init__(self, port: int, key: bytes, deadline: float = 30.0) -> None:
        """
        Start probing.

        @param port: The server's port.
        @param key: Its key.
        @param deadline: Seconds after which the probe gives up.
        """
        self._port = port
        self._key = key
        self._deadline = time.monotonic() + deadline
        self.servedAt: float | None = None
        self.done = threading.Event()
        threading.Thread(target=self._run, name="probe", daemon=True).start()

    def _run(self) -> None:
        """
        Try to open a session every 10 ms until one opens.
        """
        try:
            while time.monotonic() < self._deadline:
                try:
                    bridge = link(("127.0.0.1", self._port), self._key, timeout=1)
                except (NetStructerError, OSError):
                    time.sleep(0.01)
                    continue
                self.servedAt = time.monotonic()
                bridge.close(timeout=1)
                return
        finally:
            self.done.set()


def reconnectMain() -> None:
    """
    Print L{measureReconnect}'s result as JSON (for
    C{benchmarks/reliability.py}, which is not a Twisted program).  The
    first argument is a fixed retry delay, or C{default} for the client's
    default policy; a second argument C{tcp} connects through an endpoint
    description rather than a C{(host, port)} tuple.
    """
    from twisted.internet import defer

    home = Path(tempfile.mkdtemp(prefix="nsreconnect-"))
    servers: list[ServerProcess] = []
    delay = None if sys.argv[1:2] in ([], ["default"]) else float(sys.argv[1])
    description = sys.argv[2:3] == ["tcp"]

    async def main(reactor: Any) -> None:
        """
        Measure, kill the servers, and print the result.
        """
        policy = None if delay is None else (lambda attempt: delay)
        try:
            result = await measureReconnect(reactor, home, policy, servers, description)
        finally:
            for server in servers:
                server.kill()
            shutil.rmtree(home, ignore_errors=True)
        print(json.dumps(result), flush=True)

    task.react(lambda reactor: defer.ensureDeferred(main(reactor)))


class _FreshServerMixin:
    """
    A server process per test, killed when it ends.
    """

    def startServer(self: Any) -> ServerProcess:
        """
        @return: A new server, with the recording handler.
        """
        raiseFileLimit()
        home = Path(self.mktemp()).resolve()
        server = ServerProcess(home, FAULT_OPTIONS)
        self.addCleanup(server.kill)
        return server


class FaultTests(_FreshServerMixin, SynchronousTestCase):
    """
    Clients killed, servers stopped.
    """

    def test_clientKilledMidFrame(self) -> None:
        """
        A client killed after writing half a frame has its session, and
        only it, dropped: the count of sessions returns to what it was,
        the half frame never reaches the handler, and another session
        keeps working.
        """
        server = self.startServer()
        result = measureKilledClient(server)
        self.assertEqual(result["problems"], [])
        self.assertEqual(result["during"], result["before"] + 1)
        self.assertEqual(result["after"], result["before"])
        self.assertEqual(result["bystander"], 5)
        self.assertLess(result["seconds"], 5.0)
        self.assertNotIn("Traceback", server.log())

    def test_sigtermWhileSending(self) -> None:
        """
        Stopping the server with SIGTERM while four clients send numbered
        values loses none silently: every value a client's C{sendBuffer}
        accepted was processed by the handler, in order and once, unless
        that client's link reported a failure.
        """
        server = self.startServer()
        result = measureSigterm(server)
        self.assertEqual(result["problems"], [], result)
        self.assertEqual(result["silentlyLost"], 0)
        self.assertEqual(result["delivered"] + result["reportedFailed"], result["sent"])
        self.assertIn(result["status"], (0, -signal.SIGTERM))
        self.assertNotIn("Traceback", server.log())


class SlowConsumerTests(_FreshServerMixin, SynchronousTestCase):
    """
    SIGTERM while the server's handler is slower than its client.
    """

    def test_sigtermSlowConsumer(self) -> None:
        """
        Stopping the server with SIGTERM while its handler (which stops
        reading for 2 ms after each value) is behind a client loses no
        value silently.
        """
        raiseFileLimit()
        server = ServerProcess(Path(self.mktemp()).resolve(), FAULT_OPTIONS, handler=SLOW_HANDLER)
        self.addCleanup(server.kill)
        result = measureSigterm(server, clients=1, minimum=2000, limit=200_000)
        self.assertEqual(result["silentlyLost"], 0, result)


class ReconnectTests(TestCase):
    """
    A reconnecting client across a server restart.
    """

    timeout = 90

    async def test_serverRestart(self) -> None:
        """
        After the server restarts (SIGTERM, then a new process on the same
        port), a L{ReconnectingClient} with a retry delay capped at 0.3
        seconds has a new session within a second of the server serving
        again, and the value it queued meanwhile is delivered and echoed.
        """
        from twisted.internet import reactor

        servers: list[ServerProcess] = []

        def killAll() -> None:
            """
            Kill every server the measurement started.
            """
            for server in servers:
                server.kill()

        self.addCleanup(killAll)
        result = await measureReconnect(
            reactor,
            Path(self.mktemp()).resolve(),
            lambda attempt: min(0.05 * 2**attempt, 0.3),
            servers,
        )
        self.assertEqual(result["problems"], [])
        self.assertTrue(result["echoed"])
        self.assertLess(result["gap"], 1.0, result)


class LoadTests(SynchronousTestCase):
    """
    C{benchmarks/load.py} at a CI size.
    """

    def test_smallLoad(self) -> None:
        """
        50 concurrent sessions making 20 round trips each, against one
        server process: every round trip succeeds and every session closes
        cleanly.
        """
        result = subprocess.run(
            [
                sys.executable,
                str(REPO / "benchmarks" / "load.py"),
                "--sessions",
                "50",
                "--round-trips",
                "20",
                "--json",
            ],
            env=dict(os.environ, PYTHONPATH=str(REPO)),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        figures = json.loads(result.stdout)
        self.assertEqual(figures["failures"], [])
        self.assertEqual(figures["roundTrips"], 1000)
