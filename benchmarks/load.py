# -*- test-case-name: tests.test_faults -*-
"""
Load: many concurrent authenticated sessions against one server process.

One real C{twistd -n netstructer} process (the echo handler, limits raised
to fit) and one Twisted client process, which opens every session with
L{netstructer.client.connect} (at most C{--connect-concurrency} handshakes
at a time), then has every session do its round trips at once: send a
small value, wait for the echo, check it, repeat.

Reported: the round trips' latency percentiles (p50, p99, max), round trips
per second and messages per second (a round trip is two messages, one each
way), the server's resident set size per session (its growth from before
the client connected to when every session was open, divided by the
sessions; and again after the round trips), and failures (a connection or
handshake that failed, an echo that differed or timed out, a session that
did not close cleanly): there must be none.

The soft limit of open files is raised to the hard limit in this process,
which the server and client processes inherit.

Run from the repository root::

    PYTHONPATH=. python benchmarks/load.py                    # 1 000 x 100
    PYTHONPATH=. python benchmarks/load.py --sessions 50 --round-trips 20 --json

C{tests/test_faults.py} runs the small size in CI; C{benchmarks/reliability.py}
runs the full size and publishes it in C{docs/reliability.rst}.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent

CLIENT_DEADLINE = 600.0
"""The most seconds any phase of the client may take."""


# The client process.


def _percentile(ordered: list[float], fraction: float) -> float:
    """
    @param ordered: Sorted samples.
    @param fraction: Which percentile, from 0 to 1.
    @return: The sample at that rank (nearest-rank), or 0 without samples.
    """
    if not ordered:
        return 0.0
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def _emit(record: dict[str, Any]) -> None:
    """
    Tell the orchestrator one thing, as a JSON line on standard output.
    """
    sys.stdout.write(json.dumps(record) + "\n")
    sys.stdout.flush()


async def _client(reactor: Any, args: argparse.Namespace) -> None:
    """
    Open the sessions, wait for "go", run the round trips, wait for
    "close", close the sessions; report each phase on standard output.
    """
    from twisted.internet import defer, task
    from twisted.internet.error import ConnectionDone
    from twisted.internet.stdio import StandardIO
    from twisted.protocols.basic import LineReceiver

    from netstructer.client import connect
    from netstructer.keys import readKeyFile

    commands: defer.DeferredQueue[str] = defer.DeferredQueue()

    class Control(LineReceiver):
        """
        Reads the orchestrator's commands, one a line.
        """

        delimiter = b"\n"

        def lineReceived(self, line: bytes) -> None:
            """
            Queue a command.
            """
            commands.put(line.decode().strip())

    StandardIO(Control(), reactor=reactor)
    key = readKeyFile(args.key_file)
    failures: list[str] = []
    sessions: list[Any] = []
    gate = defer.DeferredSemaphore(args.connect_concurrency)

    async def openOne(index: int) -> None:
        """
        Open session C{index}, or note why it failed.
        """
        try:
            session = await connect(reactor, ("127.0.0.1", args.port), key, timeout=60)
        except Exception as e:  # noqa: BLE001 (counted as a failure and reported)
            failures.append(f"session {index} could not connect: {type(e).__name__}: {e}")
        else:
            sessions.append(session)

    started = time.perf_counter()
    await defer.gatherResults([gate.run(openOne, i) for i in range(args.sessions)])
    _emit(
        {
            "phase": "connected",
            "sessions": len(sessions),
            "seconds": time.perf_counter() - started,
        }
    )
    await commands.get()

    latencies: list[float] = []
    payload = b"v" * args.value_size

    async def roundTrips(index: int, session: Any) -> None:
        """
        Make the round trips of session C{index}, noting failures.
        """
        try:
            if args.pause:
                # Spread the sessions' starts over one pause.
                await task.deferLater(reactor, args.pause * index / max(len(sessions), 1))
            for n in range(args.round_trips):
                value = ["load", index, n, payload]
                sent = time.perf_counter()
                session.sendBuffer(value)
                reply = await session.recvBuffer(timeout=60)
                latencies.append(time.perf_counter() - sent)
                if reply != value:
                    failures.append(f"session {index}: sent {value!r}, got {reply!r}")
                if args.pause:
                    await task.deferLater(reactor, args.pause)
        except Exception as e:  # noqa: BLE001 (counted as a failure and reported)
            failures.append(f"session {index}: {type(e).__name__}: {e}")

    started = time.perf_counter()
    await defer.gatherResults(
        [defer.ensureDeferred(roundTrips(i, s)) for i, s in enumerate(sessions)]
    )
    elapsed = time.perf_counter() - started
    latencies.sort()
    _emit(
        {
            "phase": "done",
            "roundTrips": len(latencies),
            "seconds": elapsed,
            "p50": _percentile(latencies, 0.50),
            "p99": _percentile(latencies, 0.99),
            "max": latencies[-1] if latencies else 0.0,
        }
    )
    await commands.get()
    for session in sessions:
        session.close()
    await defer.gatherResults([session.whenClosed() for session in sessions])
    for index, session in enumerate(sessions):
        if session.closeReason is None or not session.closeReason.check(ConnectionDone):
            failures.append(f"session {index} did not close cleanly: {session.closeReason}")
    _emit({"phase": "closed", "failures": failures})


def clientMain(args: argparse.Namespace) -> None:
    """
    Run the client process.
    """
    from twisted.internet import defer, task

    task.react(lambda reactor: defer.ensureDeferred(_client(reactor, args)))


# The orchestrator.


class _Lines:
    """
    Reads a child's standard output in a thread, so that every read can
    have a deadline.
    """

    def __init__(self, process: subprocess.Popen[str]) -> None:
        """
        Start reading.

        @param process: The child, with a piped standard output.
        """
        self._process = process
        self._lines: queue.Queue[str | None] = queue.Queue()
        thread = threading.Thread(target=self._read, name="client-output", daemon=True)
        thread.start()

    def _read(self) -> None:
        """
        Queue each line, then L{None} at the end.
        """
        assert self._process.stdout is not None
        for line in self._process.stdout:
            self._lines.put(line)
        self._lines.put(None)

    def phase(self, name: str, deadline: float) -> dict[str, Any]:
        """
        Wait for the client to report C{name}.

        @raise RuntimeError: It reported something else, exited, or the
            deadline passed.
        """
        try:
            line = self._lines.get(timeout=max(deadline - time.monotonic(), 0.001))
        except queue.Empty:
            raise RuntimeError(f"the client did not reach {name!r} in time") from None
        if line is None:
            raise RuntimeError(f"the client exited before {name!r}")
        record: dict[str, Any] = json.loads(line)
        if record.get("phase") != name:
            raise RuntimeError(f"the client reported {record!r}, not {name!r}")
        return record


def _tell(process: subprocess.Popen[str], command: str) -> None:
    """
    Send a command line to the client process.
    """
    assert process.stdin is not None
    process.stdin.write(command + "\n")
    process.stdin.flush()


def runLoad(
    sessions: int,
    roundTrips: int,
    *,
    valueSize: int = 16,
    connectConcurrency: int = 50,
    pause: float = 0.0,
) -> dict[str, Any]:
    """
    Start a server, run the client against it, and measure.

    @param sessions: Concurrent sessions.
    @param roundTrips: Round trips each session makes.
    @param valueSize: Bytes of payload in each value.
    @param connectConcurrency: Handshakes in flight at once while opening.
    @param pause: Seconds each session waits between its round trips (0:
        none, so that every session always has one in flight and the
        server is saturated; then the latency is mostly queueing, and the
        rate is the server's capacity; otherwise the rate is the load
        offered).
    @return: The figures (see the module docstring), and C{"failures"}, a
        list of what went wrong.
    """
    from tests.test_hostile import ServerProcess, raiseFileLimit

    raiseFileLimit()
    home = Path(tempfile.mkdtemp(prefix="nsload-"))
    limit = str(sessions + 64)
    server = ServerProcess(home, ["--max-sessions", limit, "--max-per-ip", limit], handler="echo")
    client: subprocess.Popen[str] | None = None
    try:
        time.sleep(0.5)  # let the server settle before the baseline
        rssBase = server.rss()
        env = dict(os.environ, PYTHONPATH=str(REPO))
        client = subprocess.Popen(
            [
                sys.executable,
                __file__,
                "--client",
                "--port",
                str(server.port),
                "--key-file",
                str(home / "server.key"),
                "--sessions",
                str(sessions),
                "--round-trips",
                str(roundTrips),
                "--value-size",
                str(valueSize),
                "--connect-concurrency",
                str(connectConcurrency),
                "--pause",
                str(pause),
            ],
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        lines = _Lines(client)
        deadline = time.monotonic() + CLIENT_DEADLINE
        connected = lines.phase("connected", deadline)
        rssConnected = server.rss()
        _tell(client, "go")
        done = lines.phase("done", deadline)
        rssAfter = server.rss()
        _tell(client, "close")
        closed = lines.phase("closed", deadline)
        client.wait(timeout=60)
        rssClosed = server.rss()
    finally:
        if client is not None and client.poll() is None:
            client.kill()
            client.wait(timeout=20)
        server.kill()
        shutil.rmtree(home, ignore_errors=True)
    failures: list[str] = list(closed["failures"])
    if connected["sessions"] != sessions:
        failures.append(f"only {connected['sessions']} of {sessions} sessions opened")
    expected = connected["sessions"] * roundTrips
    if done["roundTrips"] != expected:
        failures.append(f"{done['roundTrips']} of {expected} round trips completed")
    opened = max(connected["sessions"], 1)
    return {
        "sessions": sessions,
        "roundTripsEach": roundTrips,
        "valueSize": valueSize,
        "pause": pause,
        "connectSeconds": connected["seconds"],
        "roundTrips": done["roundTrips"],
        "seconds": done["seconds"],
        "roundTripsPerSecond": done["roundTrips"] / done["seconds"] if done["seconds"] else 0.0,
        "messagesPerSecond": 2 * done["roundTrips"] / done["seconds"] if done["seconds"] else 0.0,
        "p50": done["p50"],
        "p99": done["p99"],
        "max": done["max"],
        "rssBase": rssBase,
        "rssConnected": rssConnected,
        "rssAfter": rssAfter,
        "rssClosed": rssClosed,
        "rssPerSession": (rssConnected - rssBase) / opened,
        "rssPerSessionAfter": (rssAfter - rssBase) / opened,
        "failures": failures,
    }


def describe(result: dict[str, Any]) -> str:
    """
    @param result: What L{runLoad} returned.
    @return: A human summary.
    """
    return "\n".join(
        [
            f"{result['sessions']} sessions x {result['roundTripsEach']} round trips "
            f"({result['valueSize']}-byte payload"
            + (f", {result['pause']} s between round trips)" if result["pause"] else ")"),
            f"  opened in {result['connectSeconds']:.2f} s",
            f"  {result['roundTrips']} round trips in {result['seconds']:.2f} s: "
            f"{result['roundTripsPerSecond']:.0f} round trips/s, "
            f"{result['messagesPerSecond']:.0f} messages/s",
            f"  latency p50 {result['p50'] * 1000:.2f} ms, p99 {result['p99'] * 1000:.2f} ms, "
            f"max {result['max'] * 1000:.2f} ms",
            f"  server RSS {result['rssBase'] / 2**20:.1f} MiB idle, "
            f"{result['rssConnected'] / 2**20:.1f} MiB with the sessions open "
            f"({result['rssPerSession'] / 1024:.1f} KiB/session), "
            f"{result['rssAfter'] / 2**20:.1f} MiB after the round trips "
            f"({result['rssPerSessionAfter'] / 1024:.1f} KiB/session), "
            f"{result['rssClosed'] / 2**20:.1f} MiB after closing",
            f"  failures: {len(result['failures'])}",
            *(f"    {failure}" for failure in result["failures"][:20]),
        ]
    )


def parseArguments(argv: list[str]) -> argparse.Namespace:
    """
    @param argv: The arguments, without the program name.
    @return: The parsed arguments.
    """
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=1000)
    parser.add_argument("--round-trips", type=int, default=100)
    parser.add_argument("--value-size", type=int, default=16)
    parser.add_argument("--connect-concurrency", type=int, default=50)
    parser.add_argument(
        "--pause", type=float, default=0.0, help="seconds between a session's round trips"
    )
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument("--client", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--key-file", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    """
    Run the benchmark (or, with C{--client}, the client process).

    @return: The exit status: 1 if anything failed.
    """
    args = parseArguments(argv)
    if args.client:
        clientMain(args)
        return 0
    result = runLoad(
        args.sessions,
        args.round_trips,
        valueSize=args.value_size,
        connectConcurrency=args.connect_concurrency,
        pause=args.pause,
    )
    print(json.dumps(result, indent=2) if args.json else describe(result))
    return 1 if result["failures"] else 0


if __name__ == "__main__":
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    sys.exit(main(sys.argv[1:]))
