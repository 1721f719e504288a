# -*- test-case-name: tests.test_bench_relay -*-
"""
The relay (named clients sending to each other through the server, and
topics) over loopback, against direct values in the same run.

    PYTHONPATH=. python benchmarks/bench_relay.py [--quick] [--json] [--nodelay]

Every party is its own process, on 127.0.0.1, using the public API only:

  - the server: L{netstructer.server.Server} with C{relay=True} on the
    Twisted reactor, its keys read from a key file of named keys
    (C{alice}, C{bob}, C{pub}, then one per subscriber, C{sub0} ...), and a
    handler that echoes values (L{netstructer.handlers.EchoHandler}) or,
    when asked, counts a stream of them and acknowledges each window;
  - I{bob}: a blocking L{netstructer.blocking.link} that sends back what is
    relayed to it (C{recvFrom} then C{sendTo}), or counts a relayed stream
    and acknowledges each window by C{sendTo};
  - I{alice}: a blocking link in this process, which measures;
  - the fan-out peer: one Twisted process (L{netstructer.client.connect})
    holding one publisher session and every subscriber session.

The example value is the one of C{bench_bridge.py} and C{bench_peers.py}:
C{['hi im haytam', 128, {b'gg': 'gg'}, {1, 2, 6, 4}, (False, True)]}.

Measurements:

  1. I{Latency}: alice C{sendTo("bob", v)}, bob C{recvFrom()} and
     C{sendTo("alice", v)}, alice C{recvFrom()}: the relay round trip (four
     hops, two through the server), its p50 and p99, against the direct
     echo round trip (C{sendBuffer(v)}, the server echoes, C{recvBuffer()}:
     two hops).  The I{one leg} rows halve the relay round trip (alice to
     bob through the server, two hops like the direct round trip).
  2. I{Throughput}: alice streams the value to bob by C{sendTo}, one call
     per value, in windows of 256 (at most two windows unacknowledged; bob
     acknowledges each window by C{sendTo}), in values per second received
     by bob; against alice streaming it to the server's application by
     C{sendBuffer}, acknowledged the same way by the server's handler.
  3. I{Fan-out}: one publisher, 100 and then 1 000 subscribers (10 and 100
     with C{--quick}), every one a real session on its own socket.  The
     time from C{publish} to the last subscriber's C{recvFrom} firing
     (p50 and the largest, over several publishes made one at a time), and
     a burst of publishes: publishes per second and deliveries per second
     (publishes x subscribers).
  4. I{Reload}: C{Server.reloadKeys} with 1 000 live sessions (100 with
     C{--quick}), one key removed: measured by C{benchmarks/bench_reload.py}
     (in memory), whose rows are printed here.

C{--nodelay} makes the server's handler turn on C{TCP_NODELAY} on its side
of every session (C{session.transport.setTcpNoDelay(True)} in
C{sessionOpened}).  Twisted leaves Nagle's algorithm on, and the blocking
client turns it off; a relayed stream is the case where the server sends
many small records in a row to a peer that does not answer until the window
ends, so the last record of a window can wait for the peer's delayed ACK
(about 40 ms on Linux): compare the relay stream with and without it.

Figures 1 and 2 are the median of interleaved repeats.  Machines are noisy:
compare the ratios within one run.  About 15 seconds with C{--quick}, one
to two minutes without.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_reload import reloadRows

import netstructer
from netstructer.blocking import Link, link
from netstructer.handlers import EchoHandler
from netstructer.keys import generateKey, keyFileLine

Row = dict[str, object]

EXAMPLE: list[object] = ["hi im haytam", 128, {b"gg": "gg"}, {1, 2, 6, 4}, (False, True)]
"""The value every measurement sends."""

WINDOW = 256
"""Values per acknowledged window of a stream."""

TOPIC = "news"
_ROOT = Path(__file__).resolve().parent.parent
_CONNECT_BATCH = 50
"""Subscribers connecting at once (below the listening socket's backlog)."""
_WAIT = 60.0
"""Seconds any single wait may take before the run is declared failed."""


@dataclass(frozen=True)
class _Plan:
    """
    How much each measurement does.

    @ivar trips: Round trips per repeat (after a warm-up of as many).
    @ivar stream: Values per stream, per repeat.
    @ivar repeats: Repeats of the latency and throughput measurements.
    @ivar fanout: Subscriber counts, increasing.
    @ivar latencyPublishes: Publishes made one at a time, per count.
    @ivar burstPublishes: Publishes of the burst, per count.
    @ivar reloadSessions: Live sessions of the reload measurement.
    """

    trips: int
    stream: int
    repeats: int
    fanout: tuple[int, ...]
    latencyPublishes: int
    burstPublishes: int
    reloadSessions: int


_QUICK = _Plan(
    trips=300,
    stream=5_120,
    repeats=2,
    fanout=(10, 100),
    latencyPublishes=5,
    burstPublishes=20,
    reloadSessions=100,
)
_FULL = _Plan(
    trips=2_000,
    stream=40_960,
    repeats=3,
    fanout=(100, 1000),
    latencyPublishes=20,
    burstPublishes=100,
    reloadSessions=1000,
)


def raiseFileLimit(needed: int) -> None:
    """
    Raise this process's soft limit of open files to C{needed} if it is
    lower (children inherit it).

    @raise RuntimeError: The hard limit is lower than C{needed}.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= needed:
        return
    if hard != resource.RLIM_INFINITY and hard < needed:
        raise RuntimeError(
            f"the fan-out needs {needed} open files but the hard limit is {hard}:"
            f" raise it (ulimit -Hn) or run with --quick"
        )
    resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))


def _readKeys(directory: str) -> dict[str, bytes]:
    with open(Path(directory) / "keys.json") as f:
        return {name: key.encode("ascii") for name, key in json.load(f).items()}


def _writeSecret(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)


def _percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))]


# The server.


class StreamOrEchoHandler:
    """
    The server's handler: echoes every value (as L{EchoHandler}), except
    that C{{"stream": n, "window": w}} starts counting the next C{n} values
    of that session, acknowledging every C{w}-th (and the last) by sending
    the count so far.
    """

    def __init__(self, noDelay: bool = False) -> None:
        """
        @param noDelay: Turn on C{TCP_NODELAY} on every session's transport
            (Twisted leaves Nagle's algorithm on).
        """
        self._echo = EchoHandler()
        self._noDelay = noDelay
        self._streams: dict[object, list[int]] = {}

    def sessionOpened(self, session: Any) -> None:
        """
        Turn on C{TCP_NODELAY} if asked to.
        """
        if self._noDelay:
            session.transport.setTcpNoDelay(True)

    def bufferReceived(self, session: Any, value: object) -> None:
        """
        Count or echo C{value}.
        """
        stream = self._streams.get(session)
        if stream is not None:
            stream[0] += 1
            received, window, total = stream
            if received == total:
                del self._streams[session]
                session.sendBuffer(received)
            elif received % window == 0:
                session.sendBuffer(received)
        elif type(value) is dict and "stream" in value:
            self._streams[session] = [0, value["window"], value["stream"]]
        else:
            self._echo.bufferReceived(session, value)

    def sessionClosed(self, session: Any, reason: object) -> None:
        """
        Forget the session's stream.
        """
        self._streams.pop(session, None)


def _serve(directory: str, maxSessions: int, noDelay: bool) -> None:
    """
    Run the relay server until standard input closes; print its port first.
    """
    raiseFileLimit(maxSessions + 100)
    from twisted.internet import reactor

    from netstructer.server import Server

    server = Server(
        ("127.0.0.1", 0),
        None,
        StreamOrEchoHandler(noDelay),
        keyFile=Path(directory) / "server.key",
        reactor=reactor,
        relay=True,
        maxSessions=maxSessions,
        maxPerIP=maxSessions,
    )

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


# Bob.


def _bob(directory: str, port: int) -> None:
    """
    Send back what is relayed, or count a relayed stream, until told to
    stop.
    """
    key = _readKeys(directory)["bob"]
    with link(("127.0.0.1", port), key, timeout=_WAIT) as bridge:
        recvFrom, sendTo = bridge.recvFrom, bridge.sendTo
        print("READY", flush=True)
        while True:
            sender, value = recvFrom()
            assert sender is not None
            if type(value) is not dict:
                sendTo(sender, value)
            elif value.get("stop"):
                return
            else:
                total, window = value["stream"], value["window"]
                for received in range(1, total + 1):
                    recvFrom()
                    if received % window == 0 or received == total:
                        sendTo(sender, received)


# Alice: latency and throughput.


def _roundTrips(trip: Callable[[], object], count: int) -> list[float]:
    clock = time.perf_counter
    times = []
    for _ in range(count):
        started = clock()
        trip()
        times.append(clock() - started)
    return times


def _stream(
    start: Callable[[], None],
    send: Callable[[], None],
    acknowledged: Callable[[], int],
    total: int,
) -> float:
    """
    Stream C{total} values in windows, at most two unacknowledged.

    @return: Values per second, from the first value sent to the last
        acknowledgement received.
    """
    start()
    started = time.perf_counter()
    sent = acked = 0
    while sent < total:
        batch = min(WINDOW, total - sent)
        for _ in range(batch):
            send()
        sent += batch
        if sent - acked > WINDOW:
            acked = acknowledged()
    while acked < total:
        acked = acknowledged()
    return total / (time.perf_counter() - started)


def _relayRows(alice: Link, plan: _Plan) -> list[Row]:
    """
    Measure relayed against direct values, interleaved.
    """
    value = EXAMPLE
    sendTo, recvFrom = alice.sendTo, alice.recvFrom
    sendBuffer, recvBuffer = alice.sendBuffer, alice.recvBuffer

    def relayTrip() -> None:
        sendTo("bob", value)
        sender, _ = recvFrom()
        assert sender == "bob", sender

    def directTrip() -> None:
        sendBuffer(value)
        recvBuffer()

    def relayAck() -> int:
        sender, count = recvFrom()
        assert sender == "bob" and isinstance(count, int), (sender, count)
        return count

    def directAck() -> int:
        count = recvBuffer()
        assert isinstance(count, int), count
        return count

    control = {"stream": plan.stream, "window": WINDOW}
    _roundTrips(relayTrip, plan.trips)
    _roundTrips(directTrip, plan.trips)
    figures: dict[str, list[float]] = {}
    for _ in range(plan.repeats):
        for kind, trip in (("relay", relayTrip), ("direct", directTrip)):
            times = _roundTrips(trip, plan.trips)
            figures.setdefault(f"{kind} p50", []).append(statistics.median(times) * 1e6)
            figures.setdefault(f"{kind} p99", []).append(_percentile(times, 0.99) * 1e6)
        figures.setdefault("relay stream", []).append(
            _stream(
                lambda: sendTo("bob", control),
                lambda: sendTo("bob", value),
                relayAck,
                plan.stream,
            )
        )
        figures.setdefault("direct stream", []).append(
            _stream(lambda: sendBuffer(control), lambda: sendBuffer(value), directAck, plan.stream)
        )
    median = {name: statistics.median(values) for name, values in figures.items()}
    direct = "direct echo round trip (alice -> server -> alice)"
    return [
        _row("relay round trip p50 (alice->bob->alice)", median["relay p50"], "us",
             median["direct p50"], direct + " p50"),
        _row("relay round trip p99 (alice->bob->alice)", median["relay p99"], "us",
             median["direct p99"], direct + " p99"),
        _row("relay one leg p50 (round trip / 2)", median["relay p50"] / 2, "us",
             median["direct p50"], direct + " p50"),
        _row("relay one leg p99 (round trip / 2)", median["relay p99"] / 2, "us",
             median["direct p99"], direct + " p99"),
        _row("relay stream alice->bob (sendTo)", median["relay stream"], "values/s",
             median["direct stream"], "direct stream alice -> server app (sendBuffer)"),
    ]  # fmt: skip


# The fan-out peer.


class _Subscribers:
    """
    The subscriber sessions, each read by its own loop, and the count of
    values they received.

    @ivar expected: The count at which L{done} fires (with the time).
    """

    def __init__(self) -> None:
        self.sessions: list[Any] = []
        self.received = 0
        self.expected = 0
        self.last = 0.0
        self.done: Any = None
        self.errors: list[str] = []
        self.closing = False

    def add(self, session: Any) -> None:
        from twisted.internet import defer

        self.sessions.append(session)
        defer.ensureDeferred(self._read(session))

    async def _read(self, session: Any) -> None:
        clock = time.perf_counter
        while True:
            try:
                await session.recvFrom()
            except Exception as e:  # noqa: BLE001 (whatever ended the session is recorded)
                if not self.closing:
                    self.errors.append(f"a subscriber failed: {e!r}")
                    self._finish()
                return
            self.received += 1
            if self.received == self.expected:
                self.last = clock()
                self._finish()

    def _finish(self) -> None:
        done, self.done = self.done, None
        if done is not None:
            done.callback(None)

    async def deliver(self, reactor: Any, publisher: Any, publishes: int) -> float:
        """
        Publish C{publishes} example values at once.

        @return: Seconds from the first publish to the last delivery.
        """
        from twisted.internet import defer

        self.expected = self.received + publishes * len(self.sessions)
        done: defer.Deferred[None] = defer.Deferred()
        self.done = done
        timer = reactor.callLater(_WAIT, self._finish)
        started = time.perf_counter()
        for _ in range(publishes):
            publisher.publish(TOPIC, EXAMPLE)
        await done
        if timer.active():
            timer.cancel()
        if self.errors or self.received != self.expected:
            raise RuntimeError(
                f"{self.received - self.expected + publishes * len(self.sessions)} of"
                f" {publishes * len(self.sessions)} deliveries arrived; {self.errors}"
            )
        return self.last - started


def _fanout(directory: str, port: int, counts: list[int], single: int, burst: int) -> None:
    """
    Connect the subscribers, measure, and print the results as JSON.
    """
    raiseFileLimit(max(counts) + 100)
    from twisted.internet import defer, task

    from netstructer.client import connect

    keys = _readKeys(directory)
    address = ("127.0.0.1", port)

    async def measure(reactor: Any) -> None:
        subscribers = _Subscribers()
        publisher = await connect(reactor, address, keys["pub"], timeout=_WAIT)
        results = []
        for count in counts:
            started = time.perf_counter()
            while len(subscribers.sessions) < count:
                first = len(subscribers.sessions)
                names = [f"sub{i}" for i in range(first, min(count, first + _CONNECT_BATCH))]
                sessions = await defer.gatherResults(
                    [connect(reactor, address, keys[name], timeout=_WAIT) for name in names]
                )
                for name, session in zip(names, sessions, strict=True):
                    session.subscribe(TOPIC)
                    session.sendTo(name, "subscribed")
                # Per-sender order: the value to itself comes back once the
                # server has handled the subscription.
                await defer.gatherResults([s.recvFrom(timeout=_WAIT) for s in sessions])
                for session in sessions:
                    subscribers.add(session)
            connected = time.perf_counter() - started
            await subscribers.deliver(reactor, publisher, 1)
            latencies = [await subscribers.deliver(reactor, publisher, 1) for _ in range(single)]
            burstSeconds = await subscribers.deliver(reactor, publisher, burst)
            results.append(
                {
                    "subscribers": count,
                    "connected": connected,
                    "p50": statistics.median(latencies),
                    "max": max(latencies),
                    "publishesPerSecond": burst / burstSeconds,
                    "deliveriesPerSecond": burst * count / burstSeconds,
                }
            )
        subscribers.closing = True
        print(json.dumps(results), flush=True)

    task.react(lambda reactor: defer.ensureDeferred(measure(reactor)))


def _fanoutRows(results: list[dict[str, float]], plan: _Plan) -> list[Row]:
    rows: list[Row] = []
    previous = 0
    for result in results:
        count = int(result["subscribers"])
        prefix = f"fan-out {count:,} subscribers:"
        rows += [
            _info(f"{prefix} publish -> last delivery p50", result["p50"] * 1e3, "ms",
                  f"{plan.latencyPublishes} publishes, one at a time"),
            _info(f"{prefix} publish -> last delivery max", result["max"] * 1e3, "ms",
                  f"{plan.latencyPublishes} publishes, one at a time"),
            _info(f"{prefix} publishes/s", result["publishesPerSecond"], "pub/s",
                  f"a burst of {plan.burstPublishes}"),
            _info(f"{prefix} deliveries/s", result["deliveriesPerSecond"], "values/s",
                  f"publishes/s x {count:,}"),
            _info(f"{prefix} connect + subscribe", result["connected"], "s",
                  f"{count - previous:,} new sessions, {_CONNECT_BATCH} at a time"),
        ]  # fmt: skip
        previous = count
    return rows


# Rows and the run.


def _row(name: str, value: float, unit: str, baseline: float, baselineName: str) -> Row:
    return {
        "name": name,
        "value": value,
        "unit": unit,
        "baseline": baseline,
        "baselineName": baselineName,
        "ratio": value / baseline,
    }


def _info(name: str, value: float, unit: str, note: str) -> Row:
    return {"name": name, "value": value, "unit": unit, "note": note}


def _child(*args: str) -> subprocess.Popen[str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(_ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return subprocess.Popen(
        [sys.executable, __file__, *args],
        cwd=_ROOT,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


def _expect(child: subprocess.Popen[str], word: str) -> list[str]:
    assert child.stdout is not None
    line = child.stdout.readline().split()
    if not line or line[0] != word:
        raise RuntimeError(f"a benchmark peer did not start ({' '.join(line) or 'it exited'})")
    return line[1:]


def _stop(child: subprocess.Popen[str]) -> None:
    if child.poll() is None:
        try:
            child.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            child.kill()
            child.communicate()


def run(quick: bool = False, noDelay: bool = False) -> list[Row]:
    """
    Run every measurement.

    @param quick: Small counts, for a smoke test (about 15 seconds).
    @param noDelay: Turn on C{TCP_NODELAY} on the server's side of every
        session (see L{StreamOrEchoHandler}).
    @return: Rows of C{name}, C{value}, C{unit}, and either C{baseline},
        C{baselineName} and C{ratio} (value / baseline) or a C{note}.
    """
    plan = _QUICK if quick else _FULL
    subscribers = max(plan.fanout)
    raiseFileLimit(subscribers + 100)
    names = ["alice", "bob", "pub"] + [f"sub{i}" for i in range(subscribers)]
    keys = {name: generateKey() for name in names}
    rows: list[Row] = []
    children: list[subprocess.Popen[str]] = []
    try:
        with tempfile.TemporaryDirectory() as directory:
            _writeSecret(
                Path(directory) / "server.key",
                "".join(keyFileLine(keys[name], name) + "\n" for name in names),
            )
            _writeSecret(
                Path(directory) / "keys.json",
                json.dumps({name: key.decode("ascii") for name, key in keys.items()}),
            )
            server = _child("--serve", directory, str(subscribers + 10), str(int(noDelay)))
            children.append(server)
            (port,) = _expect(server, "PORT")
            bob = _child("--bob", directory, port)
            children.append(bob)
            _expect(bob, "READY")
            with link(("127.0.0.1", int(port)), keys["alice"], timeout=_WAIT) as alice:
                rows += _relayRows(alice, plan)
                alice.sendTo("bob", {"stop": True})
            fanout = _child(
                "--fanout",
                directory,
                port,
                ",".join(map(str, plan.fanout)),
                str(plan.latencyPublishes),
                str(plan.burstPublishes),
            )
            children.append(fanout)
            out, _ = fanout.communicate(timeout=300)
            if fanout.returncode:
                raise RuntimeError(f"the fan-out peer failed ({fanout.returncode})")
            rows += _fanoutRows(json.loads(out), plan)
    finally:
        for child in reversed(children):
            _stop(child)
    for row in reloadRows(plan.reloadSessions):
        value = row["value"]
        assert isinstance(value, (int, float))
        rows.append(_info(str(row["name"]), float(value), str(row["unit"]), "bench_reload.py"))
    return rows


def _number(value: float) -> str:
    return f"{value:,.0f}" if value >= 1000 else f"{value:,.1f}" if value >= 10 else f"{value:.3f}"


def formatTable(rows: list[Row]) -> str:
    """
    Format rows as a table.

    @param rows: What L{run} returned.
    @return: The table.
    """
    lines = [
        f"{'measurement':<58} {'NetStructer':>12} {'baseline':>12} {'unit':<9}"
        f" {'ratio':>6}  baseline or note"
    ]
    for row in rows:
        value = row["value"]
        assert isinstance(value, float)
        if "baseline" in row:
            baseline, ratio = row["baseline"], row["ratio"]
            assert isinstance(baseline, float) and isinstance(ratio, float)
            lines.append(
                f"{row['name']:<58} {_number(value):>12} {_number(baseline):>12}"
                f" {row['unit']:<9} {ratio:>5.2f}x  {row['baselineName']}"
            )
        else:
            lines.append(
                f"{row['name']:<58} {_number(value):>12} {'-':>12} {row['unit']:<9}"
                f" {'-':>6}  {row['note']}"
            )
    return "\n".join(lines)


def header(quick: bool, noDelay: bool = False) -> str:
    """
    @return: The line printed above the table.
    """
    return (
        f"NetStructer {netstructer.__version__} relay benchmark"
        f" ({'quick' if quick else 'full'} run"
        f"{', server TCP_NODELAY' if noDelay else ''}); os.cpu_count() = {os.cpu_count()};"
        f" Python {platform.python_version()}"
    )


def main(argv: list[str] | None = None) -> int:
    """
    Run the benchmark and print a table (or, with C{--json}, the rows).

    @param argv: The arguments; C{sys.argv[1:]} by default.
    @return: The exit status.
    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--quick", action="store_true", help="small counts (a smoke test)")
    parser.add_argument("--json", action="store_true", help="print the rows as JSON")
    parser.add_argument(
        "--nodelay",
        action="store_true",
        help="turn on TCP_NODELAY on the server's side of every session",
    )
    parser.add_argument("--serve", nargs=3, help=argparse.SUPPRESS)
    parser.add_argument("--bob", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--fanout", nargs=5, help=argparse.SUPPRESS)
    options = parser.parse_args(argv)
    if options.serve:
        _serve(options.serve[0], int(options.serve[1]), options.serve[2] == "1")
        return 0
    if options.bob:
        _bob(options.bob[0], int(options.bob[1]))
        return 0
    if options.fanout:
        directory, port, counts, single, burst = options.fanout
        _fanout(directory, int(port), [int(c) for c in counts.split(",")], int(single), int(burst))
        return 0
    started = time.monotonic()
    rows = run(quick=options.quick, noDelay=options.nodelay)
    if options.json:
        print(
            json.dumps(
                {
                    "cpuCount": os.cpu_count(),
                    "quick": options.quick,
                    "noDelay": options.nodelay,
                    "rows": rows,
                }
            )
        )
    else:
        print(header(options.quick, options.nodelay))
        print(formatTable(rows))
        print(f"({time.monotonic() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
