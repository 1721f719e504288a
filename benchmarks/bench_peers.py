"""
NetStructer against the peers its users would pick instead, over loopback,
every figure a median of interleaved repeats within one run, and every goal
of the performance issue printed as PASS or MISS.

Every server and every client runs in its own process (spawned from
C{benchmarks/_bridge_peer.py}), on 127.0.0.1.  The clients take turns, one
after another, in each repeat, so that whatever else the machine does
touches them all alike.

NetStructer is used the way the README shows: a L{netstructer.server.Server}
whose handler's C{bufferReceived} counts the values; the Twisted client
C{p = await connect(reactor, endpoint, key)} sending with C{p.sendBuffer(v)}
in a loop, waiting on C{p.whenWritable()} every 32 values, and round trips
as C{p.sendBuffer(v); await p.recvBuffer()}; and the blocking client
C{link(address, key)} sending with one C{sendBuffer} per value.

The peers:

  - I{plain}: a stock L{Int32StringReceiver} with C{msgpack.packb} /
    C{unpackb}, no encryption (the same loops, the same backpressure);
  - I{TLS}: the same over Twisted's TLS 1.3 (a throwaway self-signed ECDSA
    P-256 certificate, verified by the client), throughput and connecting;
  - I{pyzmq}: DEALER (client) and ROUTER (server) sockets with CURVE,
    carrying plain msgpack; blocking C{send}/C{recv}, one message a value;
  - I{raw}: C{sendall}/C{recv_into} between two blocking sockets: the
    transport's ceiling for bulk;
  - I{pure}: NetStructer with its pure-Python value codec at both ends
    (C{NETSTRUCTER_PURE_PYTHON=1}), against the accelerated figures.

Workloads: the example value
C{['hi im haytam', 128, {b'gg': 'gg'}, {1, 2, 6, 4}, (False, True)]} one
way (values per second, counted by the server's application once it has
decoded them); the example value echoed one at a time (median and p99);
1 MiB and 16 MiB C{bytes} values one way (MB/s, 10 ** 6 bytes per second,
delivered to the server's application); a fresh connection, its handshake
and a first round trip (median); and the server's memory per idle session.

Run from the repository root, with the C{bench} extra installed
(C{pip install -e ".[bench]"})::

    PYTHONPATH=. python benchmarks/bench_peers.py [--quick] [--json] [--profile DIR]

The full run takes two to three minutes, C{--quick} under a minute.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_bridge import (
    Row,
    _memory,
    _peers,
    _percentile,
    _row,
    formatTable,
    makeCertificate,
)

_MiB = 1024 * 1024
_PLAIN = "Int32StringReceiver+msgpack"
_TLS = "Twisted TLS 1.3 + " + _PLAIN
_ZMQ = "pyzmq DEALER/ROUTER + CURVE"
_RAW = "raw blocking sockets"
_BATCH = 32
"""Values the Twisted clients send between two waits on C{whenWritable()}."""
_PURE = {"NETSTRUCTER_PURE_PYTHON": "1"}


@dataclass(frozen=True)
class _Plan:
    """
    How much each workload does.

    @ivar stream: Example values sent one way, per repeat.
    @ivar echo: Round trips, per repeat.
    @ivar bulk: C{(size, count)} of the bulk values, per repeat.
    @ivar connect: Connections, per repeat.
    @ivar sessions: Idle sessions held for the memory measurement.
    @ivar repeats: Repeats of every workload; figures are their medians.
    """

    stream: int
    echo: int
    bulk: tuple[tuple[int, int], ...]
    connect: int
    sessions: int
    repeats: int


_QUICK = _Plan(
    stream=20_000,
    echo=1_000,
    bulk=((_MiB, 64), (16 * _MiB, 4)),
    connect=15,
    sessions=100,
    repeats=3,
)
_FULL = _Plan(
    stream=60_000,
    echo=3_000,
    bulk=((_MiB, 256), (16 * _MiB, 16)),
    connect=40,
    sessions=500,
    repeats=5,
)


def machine() -> dict[str, object]:
    """
    @return: What the figures were measured on: CPUs (C{os.cpu_count()} and
        this process's affinity), the CPU model, Python, the value codec,
        and the load average when the run started.
    """
    from netstructer import values

    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.partition(":")[2].strip()
                break
    except OSError:
        pass
    try:
        affinity: int | None = len(os.sched_getaffinity(0))
    except AttributeError:
        affinity = None
    return {
        "cpuCount": os.cpu_count(),
        "affinity": affinity,
        "cpuModel": model or platform.processor(),
        "python": platform.python_version(),
        "accelerated": values.ACCELERATED,
        "loadAverage": os.getloadavg(),
    }


def _record(figures: dict[str, list[float]], impl: str, result: dict[str, Any]) -> None:
    workload = result["workload"]
    if workload in ("echo", "connect"):
        samples = result["samples"]
        figures[f"{impl} {workload} median"].append(statistics.median(samples))
        figures[f"{impl} {workload} p99"].append(_percentile(samples, 0.99))
    elif workload in ("bulk", "raw"):
        figures[f"{impl} bulk {result['size']}"].append(result["rate"])
    else:
        figures[f"{impl} {workload}"].append(result["rate"])


def _measure(plan: _Plan, profileDir: Path | None) -> dict[str, list[float]]:
    """
    Run every workload of every peer, C{plan.repeats} times, interleaved.

    @return: Each figure's value in each repeat, by figure name.
    """
    figures: dict[str, list[float]] = defaultdict(list)
    bulk = [f"{size}:{count}" for size, count in plan.bulk]
    bulkArgs = [arg for spec in bulk for arg in ("--bulk", spec)]
    stream = ["--stream", str(plan.stream)]
    echo = ["--echo", str(plan.echo)]
    connect = ["--connect", str(plan.connect)]
    with _peers(profileDir) as (peers, directory):
        certDir = directory / "cert"
        certDir.mkdir(mode=0o700)
        makeCertificate(certDir)
        tlsCert = ["--cert-dir", str(certDir)]
        ports = {
            "ns": peers.server("server-ns", ["server", "ns"])[1],
            "pure": peers.server("server-pure", ["server", "ns"], _PURE)[1],
            "plain": peers.server("server-plain", ["server", "plain"])[1],
            "tls": peers.server("server-tls", ["server", "tls", *tlsCert])[1],
            "raw": peers.server("rawsink", ["rawsink"])[1],
        }
        zmqServer = peers.spawn("server-zmq", ["zmqserver"])
        listening = zmqServer.expect("listening", 60)
        zmqPort, zmqKey = str(listening["port"]), str(listening["curveKey"])
        batch = ["--batch", str(_BATCH)]
        twisted = [*echo, *stream, *batch, *bulkArgs, *connect]
        clients: list[tuple[str, list[str], int, dict[str, str] | None]] = [
            ("ns", ["client", "ns", str(ports["ns"]), *twisted], 3 + len(bulk), None),
            (
                "blocking",
                ["client", "blocking", str(ports["ns"]), *echo, *stream, *bulkArgs, *connect],
                3 + len(bulk),
                None,
            ),
            (
                "blocking-batched",
                ["client", "blocking", str(ports["ns"]), *stream, *batch],
                1,
                None,
            ),
            ("plain", ["client", "plain", str(ports["plain"]), *twisted], 3 + len(bulk), None),
            (
                "tls",
                ["client", "tls", str(ports["tls"]), *tlsCert, *twisted],
                3 + len(bulk),
                None,
            ),
            ("zmq", ["zmqclient", zmqPort, zmqKey, *echo, *stream, *bulkArgs], 2 + len(bulk), None),
            ("raw", ["rawsource", str(ports["raw"]), *bulk], len(bulk), None),
            (
                "pure",
                [
                    *("client", "ns", str(ports["pure"]), *echo, *stream, *batch),
                    *("--bulk", bulk[0], *connect),
                ],
                4,
                _PURE,
            ),
        ]
        for repeat in range(plan.repeats):
            # A different client first in each repeat.
            shift = repeat % len(clients)
            for impl, args, expected, env in clients[shift:] + clients[:shift]:
                for result in peers.client(f"client-{impl}-{repeat}", args, expected, env=env):
                    _record(figures, impl, result)
        peers.stopAll()
        for impl in ("ns", "plain"):
            figures[f"{impl} memory"].append(_memory(peers, impl, plan.sessions))
    return figures


def run(quick: bool = False, profileDir: Path | None = None) -> tuple[dict[str, object], list[Row]]:
    """
    Run every measurement.

    @param quick: Do less of each workload, three times (under a minute;
        the figures are rough).
    @param profileDir: Where the peers write their cProfile statistics, if
        anywhere.
    @return: The machine (see L{machine}), and rows as
        L{bench_bridge.run} returns them, each goal of the performance
        issue with its C{target} and C{status}.
    """
    plan = _QUICK if quick else _FULL
    described = machine()
    figures = _measure(plan, profileDir)
    described["repeats"] = plan.repeats

    def median(name: str) -> float:
        return statistics.median(figures[name])

    us, mbs, vps, ms = "us", "MB/s", "values/s", "ms"
    rows: list[Row] = [
        _row(
            "small one way, Twisted client",
            median("ns stream"),
            vps,
            median("plain stream"),
            _PLAIN,
            (">=", 1.0),
        ),
        _row(
            "small one way, Twisted client",
            median("ns stream"),
            vps,
            median("tls stream"),
            _TLS,
            (">=", 1.0),
        ),
        _row(
            "small one way, Twisted client",
            median("ns stream"),
            vps,
            median("zmq stream"),
            _ZMQ,
            (">=", 1.0),
        ),
        _row(
            "small one way, blocking link",
            median("blocking stream"),
            vps,
            median("zmq stream"),
            _ZMQ,
            (">=", 1.0),
        ),
        _row(
            "small one way, blocking link",
            median("blocking stream"),
            vps,
            median("plain stream"),
            _PLAIN,
            (">=", 1.0),
        ),
        _row(
            "small one way, blocking sendBuffers",
            median("blocking-batched stream"),
            vps,
            median("zmq stream"),
            _ZMQ,
        ),
        _row(
            "round trip median, Twisted client",
            median("ns echo median") * 1e6,
            us,
            median("plain echo median") * 1e6,
            _PLAIN,
            ("<=", 1.0),
        ),
        _row(
            "round trip p99, Twisted client",
            median("ns echo p99") * 1e6,
            us,
            median("plain echo p99") * 1e6,
            _PLAIN,
            ("<=", 1.0),
        ),
        _row(
            "round trip median, blocking link",
            median("blocking echo median") * 1e6,
            us,
            median("zmq echo median") * 1e6,
            _ZMQ,
        ),
    ]
    for size, _ in plan.bulk:
        label = f"bulk {size // _MiB} MiB one way"
        ns = median(f"ns bulk {size}")
        if size == _MiB:
            rows.append(_row(label, ns, mbs, median(f"zmq bulk {size}"), _ZMQ, (">=", 1.0)))
        rows.append(_row(label, ns, mbs, median(f"raw bulk {size}"), _RAW, (">=", 0.5)))
        rows.append(_row(label, ns, mbs, median(f"tls bulk {size}"), _TLS))
        rows.append(
            _row(
                label + ", blocking link",
                median(f"blocking bulk {size}"),
                mbs,
                median(f"raw bulk {size}"),
                _RAW,
            )
        )
    rows += [
        _row(
            "connect + handshake + 1st round trip",
            median("ns connect median") * 1e3,
            ms,
            median("tls connect median") * 1e3,
            _TLS,
            ("<=", 0.5),
        ),
        _row(
            "connect + handshake + 1st RT, blocking",
            median("blocking connect median") * 1e3,
            ms,
            median("tls connect median") * 1e3,
            _TLS,
            ("<=", 0.5),
        ),
        # The pure-Python codec: within 3x of the accelerated figures.
        _row(
            "pure Python: small one way",
            median("pure stream"),
            vps,
            median("ns stream"),
            "NetStructer with the C codec",
            (">=", 1 / 3),
        ),
        _row(
            "pure Python: round trip median",
            median("pure echo median") * 1e6,
            us,
            median("ns echo median") * 1e6,
            "NetStructer with the C codec",
            ("<=", 3.0),
        ),
        _row(
            f"pure Python: bulk {plan.bulk[0][0] // _MiB} MiB",
            median(f"pure bulk {plan.bulk[0][0]}"),
            mbs,
            median(f"ns bulk {plan.bulk[0][0]}"),
            "NetStructer with the C codec",
            (">=", 1 / 3),
        ),
        _row(
            "pure Python: connect + handshake + 1st RT",
            median("pure connect median") * 1e3,
            ms,
            median("ns connect median") * 1e3,
            "NetStructer with the C codec",
            ("<=", 3.0),
        ),
        _row(
            f"server RSS per idle session ({plan.sessions})",
            figures["ns memory"][0],
            "KiB",
            figures["plain memory"][0],
            f"{_PLAIN} per TCP connection",
        ),
    ]
    return described, rows


def describe(described: dict[str, object]) -> str:
    """
    @param described: What L{run} returned first.
    @return: One line naming the machine, the CPU count beside every figure.
    """
    load = described["loadAverage"]
    assert isinstance(load, tuple)
    return (
        f"{described['cpuCount']} CPUs (os.cpu_count()), {described['affinity']} usable"
        f" (sched_getaffinity), {described['cpuModel']}; Python {described['python']};"
        f" value codec {'in C' if described['accelerated'] else 'in pure Python'};"
        f" load average {load[0]:.2f} at the start; medians of {described['repeats']}"
        " interleaved repeats"
    )


def main() -> None:
    """
    Parse the command line, run the benchmark and print the table.
    """
    parser = argparse.ArgumentParser(description="NetStructer against the peers users pick.")
    parser.add_argument("--quick", action="store_true", help="a short run (< 60 s, rough figures)")
    parser.add_argument("--profile", metavar="DIR", type=Path, help="write peer profiles to DIR")
    parser.add_argument("--json", action="store_true", help="print the rows as JSON too")
    options = parser.parse_args()
    try:
        import zmq  # noqa: F401 (only checked for)
    except ImportError:
        raise SystemExit('bench_peers needs pyzmq: pip install -e ".[bench]"') from None
    if options.profile is not None:
        options.profile.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    described, rows = run(quick=options.quick, profileDir=options.profile)
    print(describe(described))
    print(formatTable(rows))
    goals = [row for row in rows if "status" in row]
    missed = sum(1 for row in goals if row["status"] == "MISS")
    print(f"{len(goals) - missed} of {len(goals)} goals PASS ({time.monotonic() - started:.0f} s)")
    if options.json:
        print(json.dumps({"machine": described, "rows": rows}))


if __name__ == "__main__":
    main()
