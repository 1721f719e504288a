# -*- test-case-name: tests.test_bench_cluster -*-
"""
A cluster of three NetStructer servers on one Redis, over loopback: relay
across nodes against relay within a node, the directory's convergence when
a node dies, and what sessions cost (Redis memory, each node's memory, the
cluster-wide count), with the figures extrapolated to 100 000 sessions over
10 nodes.

    PYTHONPATH=. python benchmarks/bench_cluster.py [--quick] [--json] [--sessions N]

Every party is its own process, on 127.0.0.1:

  - C{redis-server} (started by the benchmark, without persistence);
  - three nodes, n1, n2 and n3: each a L{Server<netstructer.server.Server>}
    whose relay routes through a L{ClusterService
    <netstructer.cluster.ClusterService>} (the wiring C{--cluster} makes),
    heartbeat 1 s;
  - I{bob} (on n2) and I{carol} (on n1): blocking links that send back what
    is relayed to them, or count a relayed stream and acknowledge each
    window (C{benchmarks/bench_relay.py}'s peer);
  - I{alice} (on n1): a blocking link in this process, which measures.

Measurements:

  1. I{Relay latency}: the round trip alice -> bob -> alice (across nodes:
     alice's and bob's values each cross Redis) against alice -> carol ->
     alice (within n1), p50 and p99 (goal: across at most 3x within, at
     p99).
  2. I{Relay throughput}: alice streams the example value to bob by
     C{sendTo} (windows of 256, at most two unacknowledged), against the
     same stream to carol, in values per second (goal: across at least
     0.5x within).
  3. I{Sessions}: each node registers a third of N sessions (10 000; 1 500
     with C{--quick}) in its directory (synthetic sessions, given to the
     cluster as a registry would: this measures the cluster's share, not a
     connection's own memory, which C{bench_peers.py} covers).  Redis's
     memory per session (C{INFO memory}, before and after), each node's
     resident memory growth per session (its own entries and its copy of
     the others'), and the latency of the cluster-wide count (p50, p99),
     read from n1.
  4. I{Heartbeat traffic}: commands and bytes per second at Redis while the
     three nodes only beat (C{INFO stats}, over a few seconds).
  5. I{Convergence}: n3 is killed (SIGKILL); the time until Redis's
     directory no longer counts its sessions (goal: within two heartbeats).
  6. I{Extrapolated}: the figures of 3 to 5 scaled to 100 000 sessions over
     10 nodes, on paper (see docs/deployment.rst, "Clusters").

Machines are noisy: compare the ratios within one run.  About 30 seconds
with C{--quick}.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench_relay import (
    EXAMPLE,
    WINDOW,
    _bob,
    _info,
    _percentile,
    _roundTrips,
    _row,
    _stream,
    _writeSecret,
    formatTable,
)

import netstructer
from netstructer.blocking import Link, link
from netstructer.keys import generateKey, keyFileLine
from tests._redis import RedisServer, command

Row = dict[str, object]

HEARTBEAT = 1.0
"""The nodes' heartbeat, in seconds (the default)."""

_ROOT = Path(__file__).resolve().parent.parent
_WAIT = 60.0


@dataclass(frozen=True)
class _Plan:
    """
    How much each measurement does.
    """

    trips: int
    stream: int
    repeats: int
    sessions: int
    counts: int
    idle: float


_QUICK = _Plan(trips=300, stream=5_120, repeats=2, sessions=1_500, counts=50, idle=3.0)
_FULL = _Plan(trips=2_000, stream=40_960, repeats=3, sessions=10_000, counts=500, idle=10.0)


# A node.


def _rss() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


class _Synthetic:
    """
    A session as a registry hands it to the cluster.
    """

    def __init__(self, node: str, index: int) -> None:
        from twisted.internet.address import IPv4Address

        self.name = f"{node}.u{index}"
        self.peer = IPv4Address(
            "TCP", f"10.{index >> 16 & 255}.{index >> 8 & 255}.{index & 255}", 40000
        )
        self.key = f"{self.peer.host}:40000"

    def sendBuffer(self, value: object) -> None:
        pass


def _node(directory: str, url: str, name: str) -> None:
    """
    Run one node until standard input closes; print its port once it has
    joined the cluster, then answer commands read from standard input.
    """
    from twisted.internet import reactor

    from netstructer.cluster import ClusterService
    from netstructer.server import Server

    cluster = ClusterService(url, name, Path(directory) / "cluster.key", reactor=reactor)
    server = Server(
        ("127.0.0.1", 0),
        None,
        keyFile=Path(directory) / "server.key",
        reactor=reactor,
        relayBackend=cluster.backend,
    )
    server.registry.addObserver(cluster)
    cluster.setServiceParent(server)
    synthetic: list[_Synthetic] = []

    def joined(port: Any) -> None:
        if not cluster.available:
            reactor.callLater(0.05, joined, port)
            return
        print("PORT", port.getHost().port, flush=True)

    def sessions(count: int) -> None:
        for index in range(len(synthetic), len(synthetic) + count):
            session = _Synthetic(name, index)
            synthetic.append(session)
            cluster.sessionOpened(session)
        print("OK", flush=True)

    def counts(repeats: int) -> None:
        times: list[float] = []
        value = [0]

        def one(_: object = None) -> None:
            if len(times) == repeats:
                print(
                    "COUNT",
                    statistics.median(times),
                    _percentile(times, 0.99),
                    value[0],
                    flush=True,
                )
                return
            started = time.perf_counter()

            def done(result: int) -> None:
                times.append(time.perf_counter() - started)
                value[0] = result
                one()

            cluster.count().addCallback(done)

        one()

    def handle(line: str) -> None:
        word, *args = line.split()
        if word == "SESSIONS":
            sessions(int(args[0]))
        elif word == "RSS":
            print("RSS", _rss(), flush=True)
        elif word == "COUNT":
            counts(int(args[0]))

    server.listen().addCallback(joined)

    def readCommands() -> None:
        for line in sys.stdin:
            reactor.callFromThread(handle, line)  # type: ignore[attr-defined]
        reactor.callFromThread(lambda: server.stopService().addBoth(lambda _: reactor.stop()))  # type: ignore[attr-defined]

    threading.Thread(target=readCommands, daemon=True).start()
    reactor.run()


# The run.


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


def _ask(child: subprocess.Popen[str], line: str | None, word: str) -> list[str]:
    assert child.stdin is not None and child.stdout is not None
    if line is not None:
        child.stdin.write(line + "\n")
        child.stdin.flush()
    answer = child.stdout.readline().split()
    if not answer or answer[0] != word:
        raise RuntimeError(
            f"a benchmark process did not answer {word} ({' '.join(answer) or 'it exited'})"
        )
    return answer[1:]


def _stop(child: subprocess.Popen[str]) -> None:
    if child.poll() is None:
        try:
            child.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            child.kill()
            child.communicate()


def _relayRows(alice: Link, plan: _Plan) -> list[Row]:
    """
    Relay across nodes (to bob) against relay within a node (to carol).
    """
    value = EXAMPLE
    sendTo, recvFrom = alice.sendTo, alice.recvFrom

    def trip(peer: str) -> Any:
        def go() -> None:
            sendTo(peer, value)
            sender, _ = recvFrom()
            assert sender == peer, sender

        return go

    def acknowledged(peer: str) -> Any:
        def go() -> int:
            sender, count = recvFrom()
            assert sender == peer and isinstance(count, int), (sender, count)
            return count

        return go

    control = {"stream": plan.stream, "window": WINDOW}
    for peer in ("bob", "carol"):
        _roundTrips(trip(peer), plan.trips)
    figures: dict[str, list[float]] = {}
    for _ in range(plan.repeats):
        for kind, peer in (("across", "bob"), ("within", "carol")):
            times = _roundTrips(trip(peer), plan.trips)
            figures.setdefault(f"{kind} p50", []).append(statistics.median(times) * 1e6)
            figures.setdefault(f"{kind} p99", []).append(_percentile(times, 0.99) * 1e6)
            figures.setdefault(f"{kind} stream", []).append(
                _stream(
                    lambda peer=peer: sendTo(peer, control),
                    lambda peer=peer: sendTo(peer, value),
                    acknowledged(peer),
                    plan.stream,
                )
            )
    m = {name: statistics.median(values) for name, values in figures.items()}
    within = "relay within n1 (alice -> carol -> alice)"
    return [
        _row("relay round trip p50, across nodes (alice@n1 -> bob@n2)", m["across p50"], "us",
             m["within p50"], within + " p50"),
        _row("relay round trip p99, across nodes", m["across p99"], "us",
             m["within p99"], within + " p99"),
        _row("relay stream alice@n1 -> bob@n2 (sendTo)", m["across stream"], "values/s",
             m["within stream"], "relay stream alice -> carol, both on n1"),
    ]  # fmt: skip


def _redisCount(port: int) -> int:
    from netstructer.cluster.redistransport import SCRIPTS

    reply = command(port, "EVAL", SCRIPTS["count"], "1", "{netstructer}:nodes", "netstructer")
    return int(reply[1:].split(b"\r\n")[0])


def _sessionRows(
    redis: RedisServer, nodes: dict[str, subprocess.Popen[str]], plan: _Plan
) -> tuple[list[Row], dict[str, float]]:
    """
    Register N sessions over the three nodes; measure what they cost.
    """
    before = int(redis.info("memory")["used_memory"])
    rssBefore = {name: int(_ask(child, "RSS", "RSS")[0]) for name, child in nodes.items()}
    each = plan.sessions // len(nodes)
    for child in nodes.values():
        _ask(child, f"SESSIONS {each}", "OK")
    total = each * len(nodes)
    deadline = time.monotonic() + _WAIT
    while _redisCount(redis.port) < total:
        if time.monotonic() > deadline:
            raise RuntimeError("the sessions were not registered in time")
        time.sleep(0.05)
    time.sleep(2 * HEARTBEAT)
    after = int(redis.info("memory")["used_memory"])
    rssAfter = {name: int(_ask(child, "RSS", "RSS")[0]) for name, child in nodes.items()}
    p50, p99, counted = _ask(nodes["n1"], f"COUNT {plan.counts}", "COUNT")
    perSession = (after - before) / total
    rssPerSession = statistics.mean(rssAfter[n] - rssBefore[n] for n in nodes) / total
    rows: list[Row] = [
        _info("sessions registered (synthetic, over 3 nodes)", float(counted), "sessions",
              f"{each:,} per node"),
        _info("Redis memory per session", perSession, "bytes",
              f"INFO memory used_memory, {before:,} -> {after:,}"),
        _info("node RSS growth per session of the cluster", rssPerSession, "bytes",
              "own entries + copy of the other nodes' (mean of 3 nodes)"),
        _info("cluster-wide count p50 (from n1)", float(p50) * 1e6, "us",
              f"{plan.counts} counts, one at a time"),
        _info("cluster-wide count p99 (from n1)", float(p99) * 1e6, "us",
              "Lua: HLEN of each live node"),
    ]  # fmt: skip
    return rows, {"redisPerSession": perSession, "rssPerSession": rssPerSession}


def _trafficRows(redis: RedisServer, seconds: float) -> tuple[list[Row], dict[str, float]]:
    """
    Measure what the heartbeats of three idle nodes cost Redis.
    """
    fields = ("total_commands_processed", "total_net_input_bytes", "total_net_output_bytes")
    first, firstScripts = redis.info("stats"), _scripts(redis)
    started = time.monotonic()
    time.sleep(seconds)
    last, lastScripts = redis.info("stats"), _scripts(redis)
    elapsed = time.monotonic() - started
    # The INFO commands themselves are in the deltas: a few hundred bytes.
    commands, inBytes, outBytes = ((int(last[f]) - int(first[f])) / elapsed for f in fields)
    scripts = (lastScripts - firstScripts) / elapsed
    rows: list[Row] = [
        _info("heartbeat traffic: scripts/s at Redis (3 idle nodes)", scripts, "scripts/s",
              f"over {elapsed:.1f} s, heartbeat {HEARTBEAT:g} s"),
        _info("heartbeat traffic: Redis commands/s", commands, "commands/s",
              "those run inside the scripts included"),
        _info("heartbeat traffic: bytes/s into Redis", inBytes, "bytes/s", "3 nodes"),
        _info("heartbeat traffic: bytes/s out of Redis", outBytes, "bytes/s", "3 nodes"),
    ]  # fmt: skip
    return rows, {"inBytes": inBytes / 3, "outBytes": outBytes / 3, "scripts": scripts / 3}


def _scripts(redis: RedisServer) -> int:
    """
    @return: How many scripts Redis has run.
    """
    stats = redis.info("commandstats")
    total = 0
    for name in ("cmdstat_eval", "cmdstat_evalsha"):
        if name in stats:
            total += int(stats[name].split(",")[0].split("=")[1])
    return total


def _convergenceRows(redis: RedisServer, victim: subprocess.Popen[str], sessions: int) -> list[Row]:
    """
    Kill a node; measure until Redis's directory drops its sessions.
    """
    total = _redisCount(redis.port)
    # Heartbeats are a second apart: kill at a random point between two.
    victim.send_signal(signal.SIGKILL)
    killed = time.monotonic()
    deadline = killed + _WAIT
    while _redisCount(redis.port) > total - sessions:
        if time.monotonic() > deadline:
            raise RuntimeError("the killed node's sessions did not disappear")
        time.sleep(0.01)
    took = time.monotonic() - killed
    victim.wait()
    return [
        _info("directory convergence after SIGKILL of n3", took, "s",
              f"goal: within 2 heartbeats ({2 * HEARTBEAT:g} s)"),
    ]  # fmt: skip


def _extrapolatedRows(costs: dict[str, float]) -> list[Row]:
    """
    Scale the measured costs to 100 000 sessions over 10 nodes.
    """
    sessions, nodes = 100_000, 10
    redisBytes = costs["redisPerSession"] * sessions
    nodeBytes = costs["rssPerSession"] * sessions
    # A heartbeat's reply lists every node (about 100 bytes each): the
    # traffic into Redis is per node, the traffic out grows with the count.
    perNodeIn = costs["inBytes"]
    perNodeOut = costs["outBytes"] / 3 * nodes
    return [
        _info("extrapolated: Redis memory, 100 000 sessions", redisBytes / 2**20, "MiB",
              "measured bytes per session x 100 000"),
        _info("extrapolated: each node's memory for the directory", nodeBytes / 2**20, "MiB",
              "10 nodes: its 10 000 + a copy of the other 90 000"),
        _info("extrapolated: heartbeat scripts/s, 10 nodes", costs["scripts"] * nodes,
              "scripts/s", "one script per node per heartbeat"),
        _info("extrapolated: heartbeat bytes/s, 10 nodes", (perNodeIn + perNodeOut) * nodes,
              "bytes/s", "in + out; each reply lists the 10 nodes"),
    ]  # fmt: skip


def run(quick: bool = False, sessions: int | None = None) -> list[Row]:
    """
    Run every measurement.

    @param quick: Small counts, for a smoke test.
    @param sessions: How many sessions the directory measurements register,
        if not the plan's.
    @return: Rows of C{name}, C{value}, C{unit}, and either C{baseline},
        C{baselineName} and C{ratio} (value / baseline) or a C{note}.
    """
    plan = _QUICK if quick else _FULL
    if sessions is not None:
        plan = dataclasses.replace(plan, sessions=sessions)
    names = ["alice", "bob", "carol"]
    keys = {name: generateKey() for name in names}
    rows: list[Row] = []
    children: list[subprocess.Popen[str]] = []
    with tempfile.TemporaryDirectory() as directory:
        redis = RedisServer(Path(directory) / "redis").start()
        try:
            _writeSecret(
                Path(directory) / "server.key",
                "".join(keyFileLine(keys[name], name) + "\n" for name in names),
            )
            _writeSecret(Path(directory) / "cluster.key", keyFileLine(generateKey()) + "\n")
            _writeSecret(
                Path(directory) / "keys.json",
                json.dumps({name: key.decode("ascii") for name, key in keys.items()}),
            )
            nodes: dict[str, subprocess.Popen[str]] = {}
            ports: dict[str, int] = {}
            for name in ("n1", "n2", "n3"):
                nodes[name] = _child("--node", directory, redis.url, name)
                children.append(nodes[name])
                ports[name] = int(_ask(nodes[name], None, "PORT")[0])
            peers = []
            for name, node in (("bob", "n2"), ("carol", "n1")):
                peer = _child("--peer", directory, str(ports[node]), name)
                children.append(peer)
                peers.append(peer)
                _ask(peer, None, "READY")
            with link(("127.0.0.1", ports["n1"]), keys["alice"], timeout=_WAIT) as alice:
                rows += _relayRows(alice, plan)
                for peer in ("bob", "carol"):
                    alice.sendTo(peer, {"stop": True})
            sessionRows, costs = _sessionRows(redis, nodes, plan)
            rows += sessionRows
            trafficRows, traffic = _trafficRows(redis, plan.idle)
            rows += trafficRows
            rows += _convergenceRows(redis, nodes["n3"], plan.sessions // 3)
            rows += _extrapolatedRows({**costs, **traffic})
        finally:
            for child in reversed(children):
                _stop(child)
            redis.stop()
    return rows


def _peer(directory: str, port: int, name: str) -> None:
    """
    Bob's part of C{bench_relay.py}, under another name.
    """
    with open(Path(directory) / "keys.json") as f:
        keys = json.load(f)
    # bench_relay's peer reads the key named "bob".
    if name != "bob":
        keys["bob"] = keys[name]
        alias = Path(directory) / name
        alias.mkdir(exist_ok=True)
        _writeSecret(alias / "keys.json", json.dumps(keys))
        directory = str(alias)
    _bob(directory, port)


def header(quick: bool) -> str:
    """
    @return: The line printed above the table.
    """
    load = os.getloadavg()
    return (
        f"NetStructer {netstructer.__version__} cluster benchmark"
        f" ({'quick' if quick else 'full'} run); os.cpu_count() = {os.cpu_count()};"
        f" load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f};"
        f" Python {platform.python_version()}; {redisVersion()}"
    )


def redisVersion() -> str:
    """
    @return: The version of C{redis-server}.
    """
    from tests._redis import redisServerPath

    out = subprocess.run(
        [redisServerPath(), "--version"], capture_output=True, text=True, check=False
    )
    return " ".join(out.stdout.split()[:3])


def main(argv: list[str] | None = None) -> int:
    """
    Run the benchmark and print a table (or, with C{--json}, the rows).
    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--quick", action="store_true", help="small counts (a smoke test)")
    parser.add_argument("--json", action="store_true", help="print the rows as JSON")
    parser.add_argument(
        "--sessions", type=int, help="sessions registered over the 3 nodes (10 000; 1 500 quick)"
    )
    parser.add_argument("--node", nargs=3, help=argparse.SUPPRESS)
    parser.add_argument("--peer", nargs=3, help=argparse.SUPPRESS)
    options = parser.parse_args(argv)
    if options.node:
        _node(*options.node)
        return 0
    if options.peer:
        _peer(options.peer[0], int(options.peer[1]), options.peer[2])
        return 0
    started = time.monotonic()
    head = header(options.quick)
    rows = run(quick=options.quick, sessions=options.sessions)
    if options.json:
        print(
            json.dumps(
                {"cpuCount": os.cpu_count(), "quick": options.quick, "header": head, "rows": rows}
            )
        )
    else:
        print(head)
        print(formatTable(rows))
        print(f"({time.monotonic() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
