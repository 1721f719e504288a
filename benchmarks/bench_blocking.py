# -*- test-case-name: tests.test_blocking -*-
"""
Benchmark of the blocking client, L{netstructer.blocking.Link}, against the
Twisted client, L{netstructer.client.connect}, both talking to the same
Twisted server.

One run starts, in child processes so that no two loops share a CPU core's
Python interpreter:

  - a server: L{netstructer.server.Server} with L{EchoHandler}, on
    127.0.0.1, port 0;
  - the Twisted client, which connects to it and runs both measurements;

and runs the blocking client in this process, against the same server, for
the same measurements:

  1. I{stream}: small values sent in windows of 256 (send 256, then take
     their 256 echoes), as fast as possible: values per second, counting
     each value once.  The blocking client sends each value with its own
     C{sendBuffer} call (one system call each; the ratio row compares
     this), and again with one L{Link.sendBuffers} call per window (the
     C{blocking batched} row);
  2. I{round trip}: one small value at a time, sent and its echo awaited:
     round trips per second and the mean and median latency.

Every process is pinned to one CPU (where C{os.sched_setaffinity} exists;
C{--no-pin} turns it off).  On a machine where waking a process on another
CPU is expensive (virtual machines), the server and the client otherwise
land on the same CPU or on two at the scheduler's whim, and the results
swing by a factor of four between runs; pinned, they are stable, and they
measure what each client costs per message.  Unpinned, the blocking
client's C{sendBuffer} (one system call, so one wake-up of the server, per
value) suffers most from cross-CPU wake-ups, and C{sendBuffers} is the way
to stream.

Both clients first run a short warm-up.  Each measurement is the best of
several repeats.  The ratio rows give blocking / Twisted; the target is at
least 0.8.

Run from the repository root::

    PYTHONPATH=. python benchmarks/bench_blocking.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Generator
from pathlib import Path
from typing import Any

from netstructer.blocking import link
from netstructer.keys import generateKey

Row = dict[str, object]

VALUE: object = ["hi im haytam", 128, b"x" * 32]
"""The small value every measurement sends."""

WINDOW = 256
_KEY_VARIABLE = "NETSTRUCTER_BENCH_KEY"
_ROOT = Path(__file__).resolve().parent.parent


def _sizes(quick: bool) -> tuple[int, int, int]:
    """
    @return: Values per stream run, round trips per run, and repeats.
    """
    return (20_480, 2_000, 3) if quick else (102_400, 10_000, 5)


WARM_UP = 2_000
"""Round trips each client makes before measuring."""


def _summarise(
    client: str, streamSeconds: list[float], rtts: list[list[float]], n: int
) -> list[Row]:
    """
    Turn timings into rows.

    @param client: C{"blocking"} or C{"twisted"}.
    @param streamSeconds: The seconds of each stream repeat.
    @param rtts: The round-trip times of each repeat, in seconds.
    @param n: Values per stream repeat.
    @return: A stream row and a round-trip row.
    """
    best = min(rtts, key=sum)
    return [
        {
            "benchmark": "stream",
            "client": client,
            "messagesPerSecond": n / min(streamSeconds),
        },
        {
            "benchmark": "round trip",
            "client": client,
            "messagesPerSecond": len(best) / sum(best),
            "meanLatencyMicroseconds": statistics.fmean(best) * 1e6,
            "medianLatencyMicroseconds": statistics.median(best) * 1e6,
        },
    ]


def _blockingClient(port: int, key: bytes, quick: bool) -> list[Row]:
    """
    Measure the blocking client.
    """
    n, trips, repeats = _sizes(quick)
    streamSeconds: list[float] = []
    rtts: list[list[float]] = []
    batchedSeconds: list[float] = []
    with link(("127.0.0.1", port), key, timeout=60) as bridge:
        send, receive = bridge.sendBuffer, bridge.recvBuffer
        for _ in range(WARM_UP):
            send(VALUE)
            receive()
        window = [VALUE] * WINDOW
        for _ in range(repeats):
            started = time.perf_counter()
            for _ in range(n // WINDOW):
                for _ in range(WINDOW):
                    send(VALUE)
                for _ in range(WINDOW):
                    receive()
            streamSeconds.append(time.perf_counter() - started)
            started = time.perf_counter()
            for _ in range(n // WINDOW):
                bridge.sendBuffers(window)
                for _ in range(WINDOW):
                    receive()
            batchedSeconds.append(time.perf_counter() - started)
            times = []
            clock = time.perf_counter
            for _ in range(trips):
                started = clock()
                send(VALUE)
                receive()
                times.append(clock() - started)
            rtts.append(times)
    rows = _summarise("blocking", streamSeconds, rtts, n)
    rows.append(
        {
            "benchmark": "stream",
            "client": "blocking batched",
            "messagesPerSecond": n / min(batchedSeconds),
        }
    )
    return rows


def _twistedClient(port: int, key: bytes, quick: bool) -> None:
    """
    Measure the Twisted client (in a child process: it runs the reactor),
    print the rows as JSON and exit.
    """
    from twisted.internet import defer, task

    from netstructer.client import connect

    @defer.inlineCallbacks
    def measure(reactor: Any) -> Generator[Any, Any, None]:
        n, trips, repeats = _sizes(quick)
        session = yield connect(reactor, ("127.0.0.1", port), key, timeout=60)
        for _ in range(WARM_UP):
            session.sendBuffer(VALUE)
            yield session.recvBuffer()
        streamSeconds: list[float] = []
        rtts: list[list[float]] = []
        for _ in range(repeats):
            started = time.perf_counter()
            for _ in range(n // WINDOW):
                for _ in range(WINDOW):
                    session.sendBuffer(VALUE)
                yield defer.gatherResults([session.recvBuffer() for _ in range(WINDOW)])
            streamSeconds.append(time.perf_counter() - started)
            times = []
            for _ in range(trips):
                started = time.perf_counter()
                session.sendBuffer(VALUE)
                yield session.recvBuffer()
                times.append(time.perf_counter() - started)
            rtts.append(times)
        session.close()
        yield session.whenClosed()
        print(json.dumps(_summarise("twisted", streamSeconds, rtts, n)), flush=True)

    task.react(lambda reactor: measure(reactor))


def _serve() -> None:
    """
    Run the echo server until standard input closes; print its port first.
    """
    from twisted.internet import reactor

    from netstructer.handlers import EchoHandler
    from netstructer.server import Server

    server = Server(("127.0.0.1", 0), os.environ[_KEY_VARIABLE], EchoHandler())

    def listening(port: Any) -> None:
        print("PORT", port.getHost().port, flush=True)

    def failed(failure: Any) -> None:
        print("FAILED", failure.getErrorMessage(), flush=True)
        reactor.stop()

    server.listen().addCallbacks(listening, failed)

    def waitForStdin() -> None:
        sys.stdin.read()
        reactor.callFromThread(reactor.stop)  # type: ignore[attr-defined]

    threading.Thread(target=waitForStdin, daemon=True).start()
    reactor.run()


def _child(*args: str, key: bytes) -> subprocess.Popen[str]:
    env = dict(os.environ)
    env[_KEY_VARIABLE] = key.decode("ascii")
    env["PYTHONPATH"] = os.pathsep.join([str(_ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return subprocess.Popen(
        [sys.executable, __file__, *args],
        cwd=_ROOT,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


def run(quick: bool = False, pin: bool = True) -> list[Row]:
    """
    Run the benchmark.

    @param quick: Fewer values and repeats, for a smoke test.
    @param pin: Run every process on one CPU, where the platform allows.
    @return: One row per client and measurement, then one ratio row per
        measurement (C{"ratio"}: blocking / Twisted messages per second).
    """
    setAffinity = getattr(os, "sched_setaffinity", None)
    if pin and setAffinity is not None:
        allowed = os.sched_getaffinity(0)
        setAffinity(0, {min(allowed)})
        try:
            return run(quick, pin=False)
        finally:
            setAffinity(0, allowed)
    key = generateKey()
    server = _child("--serve", key=key)
    try:
        assert server.stdout is not None
        line = server.stdout.readline().split()
        if not line or line[0] != "PORT":
            raise RuntimeError(f"the benchmark server did not start: {line}")
        port = int(line[1])
        twisted = _child("--twisted-client", str(port), *(["--quick"] if quick else []), key=key)
        twistedOut, _ = twisted.communicate(timeout=600)
        if twisted.returncode:
            raise RuntimeError(f"the Twisted client failed ({twisted.returncode})")
        rows: list[Row] = json.loads(twistedOut)
        rows.extend(_blockingClient(port, key, quick))
    finally:
        server.communicate(timeout=60)
    for benchmark in ("stream", "round trip"):
        rates = {r["client"]: r["messagesPerSecond"] for r in rows if r["benchmark"] == benchmark}
        blockingRate, twistedRate = rates["blocking"], rates["twisted"]
        assert isinstance(blockingRate, float) and isinstance(twistedRate, float)
        rows.append(
            {"benchmark": benchmark, "client": "ratio", "ratio": blockingRate / twistedRate}
        )
    return rows


def _format(rows: list[Row]) -> str:
    lines = [f"{'benchmark':<12} {'client':<16} {'msg/s':>10} {'mean us':>9} {'median us':>9}"]
    for row in rows:
        if row["client"] == "ratio":
            lines.append(
                f"{row['benchmark']:<12} {'ratio':<16} {row['ratio']:>10.2f}"
                "  (blocking / Twisted; target >= 0.8)"
            )
            continue
        mean = row.get("meanLatencyMicroseconds")
        median = row.get("medianLatencyMicroseconds")
        lines.append(
            f"{row['benchmark']:<12} {row['client']:<16} {row['messagesPerSecond']:>10.0f}"
            + (f" {mean:>9.1f} {median:>9.1f}" if mean is not None else "")
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """
    Run the benchmark and print a table (or, with C{--json}, the rows).

    @param argv: The arguments; C{sys.argv[1:]} by default.
    @return: The exit status.
    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--quick", action="store_true", help="fewer values and repeats")
    parser.add_argument("--json", action="store_true", help="print the rows as JSON")
    parser.add_argument("--no-pin", action="store_true", help="do not pin the processes to one CPU")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--twisted-client", type=int, metavar="PORT", help=argparse.SUPPRESS)
    options = parser.parse_args(argv)
    if options.serve:
        _serve()
        return 0
    if options.twisted_client is not None:
        _twistedClient(options.twisted_client, os.environ[_KEY_VARIABLE].encode(), options.quick)
        return 0
    rows = run(quick=options.quick, pin=not options.no_pin)
    print(json.dumps(rows, indent=2) if options.json else _format(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
