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
  - three nodes, n1, n2 and n3: real C{twistd -n netstructer --relay
    --cluster URL} processes, heartbeat 1 s (L{tests._clusterprocs});
  - I{bob} (on n2) and I{carol} (on n1): blocking links that send back what
    is relayed to them, or count a relayed stream and acknowledge each
    window (C{benchmarks/bench_relay.py}'s peer);
  - I{alice} (on n1): a blocking link in this process, which measures;
  - a fourth node, n4, run by the blocking facade with no session of its
    own (it counts, and shows what a copy of the directory costs);
  - a Twisted client process holding the sessions of measurement 3.

Measurements:

  1. I{Relay latency}: the round trip alice -> bob -> alice (across nodes:
     alice's and bob's values each cross Redis) against alice -> carol ->
     alice (within n1), p50 and p99 (goal: across at most 3x within, at
     p99).
  2. I{Relay throughput}: alice streams the example value to bob by
     C{sendTo} (windows of 256, at most two unacknowledged), against the
     same stream to carol, in values per second (goal: across at least
     0.5x within).
  3. I{Sessions}: N real sessions (10 000; 1 500 with C{--quick}), each
     with one of 100 named keys, spread over n1, n2 and n3.  Redis's memory
     per session (C{INFO memory}, before and after); each node's resident
     memory growth per session it holds, split into a session of its own
     (connection, session, registry, directory entry) and its copy of the
     other nodes' sessions (the growth of n4, which holds none); and the
     latency of the cluster-wide count (p50, p99), from n4.
  4. I{Heartbeat traffic}: commands and bytes per second at Redis while the
     nodes only beat (C{INFO stats}, over a few seconds).
  5. I{Convergence}: n3 is killed (SIGKILL) with its sessions open; the
     time until Redis's directory drops it (goal: within two heartbeats),
     and until n4's copy does.
  6. I{Extrapolated}: the figures of 3 to 5 scaled to 100 000 sessions over
     10 nodes, on paper (see docs/deployment.rst, "Clusters").

Machines are noisy: compare the ratios within one run.  About 30 seconds
with C{--quick}, two minutes without.
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
from tests._clusterprocs import BlockingNode, TwistdNode, waitFor
from tests._redis import RedisServer, command
from tests.test_hostile import raiseFileLimit

Row = dict[str, object]

HEARTBEAT = 1.0
"""The nodes' heartbeat, in seconds (the default)."""

_ROOT = Path(__file__).resolve().parent.parent
_WAIT = 60.0
_LOAD_KEYS = 100
"""How many named keys the sessions of the directory measurements use in
turn (a server tries its keys in turn on each handshake)."""


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


# Processes.


def _rssOf(pid: int) -> int:
    """
    @return: The resident memory of a process, in bytes.
    """
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


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


def _sessions(directory: str, count: int, ports: list[int]) -> None:
    """
    Open C{count} sessions spread over the nodes' ports, each with one of
    the keys of C{load.json} in turn (so that the sessions have names),
    print C{CONNECTED}, and close them once standard input closes.
    """
    from twisted.internet import defer, task

    from netstructer.client import connect

    with open(Path(directory) / "load.json") as f:
        keys = list(json.load(f).values())

    async def main(reactor: Any) -> None:
        gate = defer.DeferredSemaphore(64)
        sessions: list[Any] = []

        async def one(index: int) -> None:
            address = ("127.0.0.1", ports[index % len(ports)])
            sessions.append(await connect(reactor, address, keys[index % len(keys)], timeout=_WAIT))

        started = time.perf_counter()
        await defer.gatherResults([gate.run(one, i) for i in range(count)])
        print("CONNECTED", len(sessions), time.perf_counter() - started, flush=True)
        done: defer.Deferred[None] = defer.Deferred()

        def waitForStdin() -> None:
            sys.stdin.read()
            reactor.callFromThread(done.callback, None)

        threading.Thread(target=waitForStdin, daemon=True).start()
        await done
        for session in sessions:
            if session.transport is not None and session.established:
                session.close()
        await defer.DeferredList([session.whenClosed() for session in sessions])

    task.react(lambda reactor: defer.ensureDeferred(main(reactor)))


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


def _memoryUsage(port: int, key: str) -> int:
    """
    @return: What Redis says a key takes, in bytes (all of it counted).
    """
    reply = command(port, "MEMORY", "USAGE", key, "SAMPLES", "0")
    return int(reply[1:].split(b"\r\n")[0]) if reply[:1] == b":" else 0


def _sessionRows(
    redis: RedisServer, nodes: dict[str, TwistdNode], observer: BlockingNode, plan: _Plan
) -> tuple[list[Row], dict[str, float], subprocess.Popen[str]]:
    """
    Open N real sessions spread over the three nodes; measure what they
    cost Redis, each node, and the observer (a node without sessions of
    its own, which holds only its copy of the directory), and the latency
    of the cluster-wide count.

    @return: The rows, the costs, and the process holding the sessions
        open (closing its standard input closes them).
    """
    before = int(redis.info("memory")["used_memory"])
    pids = {name: node.process.pid for name, node in nodes.items()}
    pids[observer.name] = observer.process.pid
    rssBefore = {name: _rssOf(pid) for name, pid in pids.items()}
    ports = [str(node.port) for node in nodes.values()]
    load = _child("--sessions-client", str(nodes["n1"].logPath.parent), str(plan.sessions), *ports)
    opened, seconds = _ask(load, None, "CONNECTED")
    total = int(opened)
    waitFor(lambda: _redisCount(redis.port) == total, "the sessions are registered", _WAIT)
    waitFor(
        lambda: observer.ask("replica")["sessions"] == total,
        "the observer's copy holds every session",
        _WAIT,
    )
    after = int(redis.info("memory")["used_memory"])
    directory = sum(
        _memoryUsage(redis.port, f"{{netstructer}}:node:{name}:sessions") for name in nodes
    )
    rssAfter = {name: _rssOf(pid) for name, pid in pids.items()}
    counts = observer.ask(f"counts {plan.counts}")
    own = {name: total // len(nodes) + (i < total % len(nodes)) for i, name in enumerate(nodes)}
    perSession = (after - before) / total
    copy = (rssAfter[observer.name] - rssBefore[observer.name]) / total
    perOwn = statistics.mean((rssAfter[n] - rssBefore[n]) / own[n] for n in nodes)
    ownCost = statistics.mean(
        (rssAfter[n] - rssBefore[n] - copy * (total - own[n])) / own[n] for n in nodes
    )
    rows: list[Row] = [
        _info("sessions opened (real, over 3 twistd nodes)", float(total), "sessions",
              f"{float(seconds):.1f} s to open (Noise handshakes), {own['n1']:,} on n1"),
        _info("Redis memory per session", perSession, "bytes",
              f"INFO memory used_memory, {before:,} -> {after:,}"),
        _info("  of which: its directory entry", directory / total, "bytes",
              "MEMORY USAGE of the nodes' session hashes"),
        _info("node RSS growth per session it holds", perOwn, "bytes",
              "connection, session, registry, directory entry, + its copy of the others'"),
        _info("  of which: a session of its own", ownCost, "bytes",
              "the above less the copy of the other nodes' sessions"),
        _info("  of which: the copy of another node's session", copy, "bytes",
              "RSS growth of a 4th node without sessions (blocking facade)"),
        _info("cluster-wide count p50 (from the 4th node)", counts["p50"] * 1e6, "us",
              f"{plan.counts} blocking count(cluster=True) calls, one at a time"),
        _info("cluster-wide count p99 (from the 4th node)", counts["p99"] * 1e6, "us",
              "Lua: HLEN of each live node; + the blocking facade's thread handoff"),
    ]  # fmt: skip
    costs = {"redisPerSession": perSession, "ownPerSession": ownCost, "copyPerSession": copy}
    return rows, costs, load


def _trafficRows(
    redis: RedisServer, seconds: float, nodes: int
) -> tuple[list[Row], dict[str, float]]:
    """
    Measure what the heartbeats of C{nodes} idle nodes cost Redis.

    @return: The rows, and the costs per node (C{outBytes}: of a reply
        listing C{nodes} nodes).
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
        _info(f"heartbeat traffic: scripts/s at Redis ({nodes} idle nodes)", scripts,
              "scripts/s", f"over {elapsed:.1f} s, heartbeat {HEARTBEAT:g} s"),
        _info("heartbeat traffic: Redis commands/s", commands, "commands/s",
              "those run inside the scripts included"),
        _info("heartbeat traffic: bytes/s into Redis", inBytes, "bytes/s", f"{nodes} nodes"),
        _info("heartbeat traffic: bytes/s out of Redis", outBytes, "bytes/s", f"{nodes} nodes"),
    ]  # fmt: skip
    costs = {"inBytes": inBytes / nodes, "outBytes": outBytes / nodes, "scripts": scripts / nodes}
    return rows, {**costs, "listed": float(nodes)}


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


def _convergenceRows(
    redis: RedisServer, victim: TwistdNode, observer: BlockingNode, sessions: int
) -> list[Row]:
    """
    Kill a node with SIGKILL (while it holds its sessions); measure until
    Redis's directory drops it, and until another node's copy does.
    """
    name = victim.name
    total = _redisCount(redis.port)
    # Heartbeats are a second apart: the kill falls anywhere between two.
    victim.signal(signal.SIGKILL)
    killed = time.monotonic()
    redisTook = waitFor(
        lambda: command(redis.port, "EXISTS", f"{{netstructer}}:node:{name}") == b":0\r\n",
        "the killed node leaves Redis's directory",
        _WAIT,
        0.005,
    )
    waitFor(
        lambda: observer.ask("replica")["sessions"] == total - sessions,
        "the observer drops the killed node's sessions",
        _WAIT,
        0.005,
    )
    copyTook = time.monotonic() - killed
    victim.process.wait(_WAIT)
    return [
        _info(f"directory convergence after SIGKILL of {name} (Redis)", redisTook, "s",
              f"goal: within 2 heartbeats ({2 * HEARTBEAT:g} s); {sessions:,} sessions"),
        _info(f"directory convergence after SIGKILL of {name} (other nodes)", copyTook, "s",
              "until another node's copy drops its sessions (it routes no more to it)"),
    ]  # fmt: skip


def _extrapolatedRows(costs: dict[str, float]) -> list[Row]:
    """
    Scale the measured costs to 100 000 sessions over 10 nodes.
    """
    sessions, nodes = 100_000, 10
    own = sessions // nodes
    redisBytes = costs["redisPerSession"] * sessions
    nodeBytes = costs["ownPerSession"] * own + costs["copyPerSession"] * (sessions - own)
    # A heartbeat's reply lists every node (about 100 bytes each): the
    # traffic into Redis is per node, the traffic out grows with the count.
    perNodeIn = costs["inBytes"]
    perNodeOut = costs["outBytes"] / costs["listed"] * nodes
    return [
        _info("extrapolated: Redis memory, 100 000 sessions", redisBytes / 2**20, "MiB",
              "measured bytes per session x 100 000"),
        _info("extrapolated: each node's memory for its sessions", nodeBytes / 2**20, "MiB",
              "10 nodes: its own 10 000 + a copy of the other 90 000"),
        _info("extrapolated: heartbeat scripts/s, 10 nodes", costs["scripts"] * nodes,
              "scripts/s", "one script per node per heartbeat"),
        _info("extrapolated: heartbeat bytes/s, 10 nodes", (perNodeIn + perNodeOut) * nodes,
              "bytes/s", "in + out; each reply lists the 10 nodes"),
    ]  # fmt: skip


def run(quick: bool = False, sessions: int | None = None) -> list[Row]:
    """
    Run every measurement.

    @param quick: Small counts, for a smoke test.
    @param sessions: How many sessions the directory measurements open, if
        not the plan's.
    @return: Rows of C{name}, C{value}, C{unit}, and either C{baseline},
        C{baselineName} and C{ratio} (value / baseline) or a C{note}.
    """
    plan = _QUICK if quick else _FULL
    if sessions is not None:
        plan = dataclasses.replace(plan, sessions=sessions)
    raiseFileLimit()
    names = ["alice", "bob", "carol"]
    keys = {name: generateKey() for name in names}
    load = {f"u{i:03d}": generateKey() for i in range(_LOAD_KEYS)}
    rows: list[Row] = []
    children: list[subprocess.Popen[str]] = []
    processes: list[TwistdNode | BlockingNode] = []
    with tempfile.TemporaryDirectory() as directory:
        home = Path(directory)
        redis = RedisServer(home / "redis").start()
        try:
            _writeSecret(
                home / "server.key",
                "".join(keyFileLine(key, name) + "\n" for name, key in {**keys, **load}.items()),
            )
            _writeSecret(home / "cluster.key", keyFileLine(generateKey()) + "\n")
            _writeSecret(home / "keys.json", json.dumps(_text(keys)))
            _writeSecret(home / "load.json", json.dumps(_text(load)))
            limit = str(plan.sessions + 64)
            nodes = {
                name: TwistdNode(home, name, redis.url, heartbeat=HEARTBEAT,
                                 extra=("--max-sessions", limit, "--max-per-ip", limit))
                for name in ("n1", "n2", "n3")
            }  # fmt: skip
            processes.extend(nodes.values())
            deadline = time.monotonic() + _WAIT
            for node in nodes.values():
                node.waitJoined(deadline)
            for name, node in (("bob", "n2"), ("carol", "n1")):
                peer = _child("--peer", directory, str(nodes[node].port), name)
                children.append(peer)
                _ask(peer, None, "READY")
            with link(("127.0.0.1", nodes["n1"].port), keys["alice"], timeout=_WAIT) as alice:
                rows += _relayRows(alice, plan)
                for peer in ("bob", "carol"):
                    alice.sendTo(peer, {"stop": True})
            observer = BlockingNode(home, "n4", redis.url)
            processes.append(observer)
            sessionRows, costs, holder = _sessionRows(redis, nodes, observer, plan)
            children.append(holder)
            rows += sessionRows
            trafficRows, traffic = _trafficRows(redis, plan.idle, len(nodes) + 1)
            rows += trafficRows
            rows += _convergenceRows(redis, nodes["n3"], observer, plan.sessions // 3)
            rows += _extrapolatedRows({**costs, **traffic})
        finally:
            for child in reversed(children):
                _stop(child)
            for process in processes:
                process.stop()
            redis.stop()
    return rows


def _text(keys: dict[str, bytes]) -> dict[str, str]:
    return {name: key.decode("ascii") for name, key in keys.items()}


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
        "--sessions", type=int, help="sessions opened over the 3 nodes (10 000; 1 500 quick)"
    )
    parser.add_argument("--sessions-client", nargs="+", help=argparse.SUPPRESS)
    parser.add_argument("--peer", nargs=3, help=argparse.SUPPRESS)
    options = parser.parse_args(argv)
    if options.sessions_client:
        directory, count, *ports = options.sessions_client
        _sessions(directory, int(count), [int(port) for port in ports])
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
