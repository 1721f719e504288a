"""
NetStructer against the peers its users would pick instead, over loopback,
every figure a median of interleaved repeats within one run, with its spread,
and every goal of the performance issue printed as PASS or MISS.

Every server and every client runs in its own process (spawned from
C{benchmarks/_bridge_peer.py}), on 127.0.0.1.  The clients take turns, one
after another, in each repeat, so that whatever else the machine does
touches them all alike.  Every peer runs as its users run it: no
C{tuneAllocator()} nor any other process-wide tuning that the library does
not apply by itself.  C{--tuned} measures everything a second time with
C{tuneAllocator()} applied in every peer (what the C{twistd} plugin and the
C{netstructer} command do), and prints those ratios beside, for operators.

NetStructer is used the way the README shows: a L{netstructer.server.Server}
whose handler's C{bufferReceived} counts the values; the Twisted client
C{p = await connect(reactor, endpoint, key)} sending with C{p.sendBuffer(v)}
in a loop, waiting on C{p.whenWritable()} every 32 values (every value for
bulk), and round trips as C{p.sendBuffer(v); await p.recvBuffer()}; and the
blocking client C{link(address, key)} sending with one C{sendBuffer} per
value.

The peers:

  - I{plain}: a stock L{Int32StringReceiver} with C{msgpack.packb} /
    C{unpackb}, no encryption (the same loops, the same backpressure),
    sending msgpack's own types (lists for NetStructer's set and tuple), so
    with no conversion on each send;
  - I{TLS}: the same over Twisted's TLS 1.3 (a throwaway self-signed ECDSA
    P-256 certificate, verified by the client);
  - I{pyzmq}: DEALER (client) and ROUTER (server) sockets with CURVE,
    carrying plain msgpack; blocking C{send}/C{recv}, one message a value;
  - I{gRPC}: grpcio over TLS (the same certificate), generic handlers with
    no generated code: one bidirectional stream for the small values and
    the round trips, a client stream for bulk, a fresh secure channel (its
    own connection) for each connect;
  - I{raw}: C{sendall}/C{recv_into} between two blocking sockets: the
    transport's ceiling for bulk;
  - I{pure}: NetStructer with its pure-Python value codec at both ends
    (C{NETSTRUCTER_PURE_PYTHON=1}), against the accelerated figures.

Workloads: the example value
C{['hi im haytam', 128, {b'gg': 'gg'}, {1, 2, 6, 4}, (False, True)]} one
way (values per second, counted by the server's application once it has
decoded them); the example value echoed one at a time (median and p99),
with client and server pinned to the same CPU and to different CPUs
(C{os.sched_setaffinity}); 1 MiB and 16 MiB C{bytes} values one way (MB/s,
10 ** 6 bytes per second, delivered to the server's application) and the
peak RSS of either NetStructer side; a fresh connection, its handshake and
a first round trip (median); and the server's memory per idle session.

Run from the repository root, with the C{bench} extra installed
(C{pip install -e ".[bench]"})::

    PYTHONPATH=. python benchmarks/bench_peers.py [--quick] [--tuned] [--json] [--profile DIR]

The full run takes about five minutes (twice that with C{--tuned}),
C{--quick} about two.
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
from importlib import metadata
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _peer_common import TUNED_VARIABLE
from bench_bridge import Peer, Peers, _memory, _peers, _percentile, makeCertificate, vmRSS

Row = dict[str, Any]

_MiB = 1024 * 1024
_PLAIN = "Int32StringReceiver+msgpack"
_TLS = "Twisted TLS 1.3 + " + _PLAIN
_ZMQ = "pyzmq DEALER/ROUTER + CURVE"
_GRPC = "gRPC (grpcio) over TLS"
_RAW = "raw blocking sockets"
_BATCH = 32
"""Values the Twisted clients send between two waits on C{whenWritable()}."""
_PURE = {"NETSTRUCTER_PURE_PYTHON": "1"}
_ECHO_PEERS = ("ns", "blocking", "plain", "zmq", "grpc", "pure")


@dataclass(frozen=True)
class _Plan:
    """
    How much each workload does.

    @ivar stream: Example values sent one way, per repeat.
    @ivar echo: Round trips, per repeat and placement.
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


def _version(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "absent"


def machine() -> dict[str, Any]:
    """
    @return: What the figures were measured on: CPUs (C{os.cpu_count()} and
        this process's affinity), the CPU model, the load average, Python,
        the versions of the libraries measured, and the value codec.
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
    return {
        "cpuCount": os.cpu_count(),
        "affinity": sorted(os.sched_getaffinity(0)),
        "cpuModel": model or platform.processor(),
        "python": platform.python_version(),
        "versions": {
            name: _version(name)
            for name in ("netstructer", "twisted", "cryptography", "msgpack", "pyzmq", "grpcio")
        },
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
        if "peakRSS" in result:
            size = result["size"]
            figures[f"{impl} bulk {size} peak RSS"].append(result["peakRSS"] * 1024)
            growth = result["peakRSS"] - result["rssBefore"]
            figures[f"{impl} bulk {size} peak RSS growth"].append(growth * 1024)
    else:
        figures[f"{impl} {workload}"].append(result["rate"])


def _pin(peer: Peer, cpus: set[int]) -> None:
    """
    Set the CPU affinity of every thread of a running peer.
    """
    pid = peer.process.pid
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            os.sched_setaffinity(int(task), cpus)
        except (ProcessLookupError, FileNotFoundError):
            # A thread that ended meanwhile.
            continue


def _placements() -> list[tuple[str, int, int]]:
    """
    @return: C{(name, server CPU, client CPU)} for each placement this
        machine allows: the same CPU, and different CPUs if there are two.
    """
    cpus = sorted(os.sched_getaffinity(0))
    placements = [("same CPU", cpus[0], cpus[0])]
    if len(cpus) > 1:
        placements.append(("cross CPU", cpus[0], cpus[1]))
    return placements


class _Run:
    """
    One measurement of every peer, untuned or tuned.
    """

    def __init__(
        self,
        plan: _Plan,
        tuned: bool,
        peers: Peers,
        directory: Path,
        baseline: Path | None = None,
    ) -> None:
        self.plan = plan
        self.peers = peers
        self.baseline = {"PYTHONPATH": str(baseline)} if baseline is not None else None
        self.env = {TUNED_VARIABLE: "1"} if tuned else {}
        self.tag = "tuned" if tuned else "untuned"
        self.figures: dict[str, list[float]] = defaultdict(list)
        self.certDir = directory / f"cert-{self.tag}"
        self.certDir.mkdir(mode=0o700)
        makeCertificate(self.certDir)

    def startServers(self) -> None:
        """
        Start every server.
        """
        peers, env, tls = self.peers, self.env, ["--cert-dir", str(self.certDir)]
        self.servers: dict[str, Peer] = {}
        self.ports: dict[str, int] = {}
        for impl, args, extra in (
            ("ns", ["server", "ns"], {}),
            ("pure", ["server", "ns"], _PURE),
            ("plain", ["server", "plain"], {}),
            ("tls", ["server", "tls", *tls], {}),
            ("raw", ["rawsink"], {}),
            ("grpc", ["grpcserver", *tls], {}),
            *([("before", ["server", "ns"], self.baseline)] if self.baseline else []),
        ):
            peer, port = peers.server(f"server-{impl}-{self.tag}", args, {**env, **extra})
            self.servers[impl], self.ports[impl] = peer, port
        self.serverStartRSS = vmRSS(self.servers["ns"].process.pid)
        zmq = peers.spawn(f"server-zmq-{self.tag}", ["zmqserver"], env)
        listening = zmq.expect("listening", 60)
        self.servers["zmq"] = zmq
        self.ports["zmq"] = int(listening["port"])
        self.zmqKey = str(listening["curveKey"])

    def _clients(self) -> list[tuple[str, list[str], int, dict[str, str]]]:
        """
        @return: The throughput and connect clients: C{(impl, arguments,
            results expected, extra environment)}.
        """
        plan, ports = self.plan, self.ports
        bulk = [f"{size}:{count}" for size, count in plan.bulk]
        bulkArgs = [arg for spec in bulk for arg in ("--bulk", spec)]
        stream = ["--stream", str(plan.stream)]
        connect = ["--connect", str(plan.connect)]
        tls = ["--cert-dir", str(self.certDir)]
        twisted = [*stream, "--batch", str(_BATCH), *bulkArgs, *connect]
        n = len(bulk)
        before = (
            [
                ("before", ["client", "ns", str(ports["before"]), *twisted], 2 + n, self.baseline),
                (
                    "blocking-before",
                    ["client", "blocking", str(ports["before"]), *stream, *bulkArgs, *connect],
                    2 + n,
                    self.baseline,
                ),
            ]
            if self.baseline
            else []
        )
        return [
            *before,
            ("ns", ["client", "ns", str(ports["ns"]), *twisted], 2 + n, {}),
            (
                "blocking",
                ["client", "blocking", str(ports["ns"]), *stream, *bulkArgs, *connect],
                2 + n,
                {},
            ),
            (
                "blocking-batched",
                ["client", "blocking", str(ports["ns"]), *stream, "--batch", str(_BATCH)],
                1,
                {},
            ),
            ("plain", ["client", "plain", str(ports["plain"]), *twisted], 2 + n, {}),
            ("tls", ["client", "tls", str(ports["tls"]), *tls, *twisted], 2 + n, {}),
            ("zmq", ["zmqclient", str(ports["zmq"]), self.zmqKey, *stream, *bulkArgs], 1 + n, {}),
            (
                "grpc",
                ["grpcclient", str(ports["grpc"]), *tls, *stream, *bulkArgs, *connect],
                2 + n,
                {},
            ),
            ("raw", ["rawsource", str(ports["raw"]), *bulk], n, {}),
            (
                "pure",
                [
                    *("client", "ns", str(ports["pure"]), *stream),
                    *("--batch", str(_BATCH), "--bulk", bulk[0], *connect),
                ],
                3,
                _PURE,
            ),
        ]

    def _echoArgs(self, impl: str, cpu: int) -> tuple[list[str], str, dict[str, str]]:
        """
        @return: The echo client's arguments, the server it talks to, and
            its extra environment.
        """
        echo, ports = ["--echo", str(self.plan.echo), "--cpu", str(cpu)], self.ports
        if impl == "zmq":
            return ["zmqclient", str(ports["zmq"]), self.zmqKey, *echo], "zmq", {}
        if impl == "grpc":
            tls = ["--cert-dir", str(self.certDir)]
            return ["grpcclient", str(ports["grpc"]), *tls, *echo], "grpc", {}
        if impl == "before" and self.baseline is not None:
            return ["client", "ns", str(ports["before"]), *echo], "before", self.baseline
        server = "ns" if impl == "blocking" else impl
        extra = _PURE if impl == "pure" else {}
        return (
            ["client", impl if impl != "pure" else "ns", str(ports[server]), *echo],
            server,
            extra,
        )

    def repeat(self, index: int) -> None:
        """
        Run every client once, starting with a different one each repeat,
        then the round trips in each placement.
        """
        clients = self._clients()
        shift = index % len(clients)
        for impl, args, expected, extra in clients[shift:] + clients[:shift]:
            name = f"client-{impl}-{self.tag}-{index}"
            for result in self.peers.client(name, args, expected, env={**self.env, **extra}):
                _record(self.figures, impl, result)
        everywhere = os.sched_getaffinity(0)
        echoPeers = _ECHO_PEERS + (("before",) if self.baseline else ())
        for placement, serverCPU, clientCPU in _placements():
            shift = index % len(echoPeers)
            for impl in echoPeers[shift:] + echoPeers[:shift]:
                args, server, extra = self._echoArgs(impl, clientCPU)
                _pin(self.servers[server], {serverCPU})
                try:
                    name = f"echo-{impl}-{placement.split()[0]}-{self.tag}-{index}"
                    for result in self.peers.client(name, args, 1, env={**self.env, **extra}):
                        _record(self.figures, f"{impl} {placement}", result)
                finally:
                    _pin(self.servers[server], everywhere)

    def finish(self) -> None:
        """
        Ask the NetStructer server for its peak RSS, stop the servers, and
        measure the memory of idle sessions.
        """
        server = self.servers["ns"]
        server.command("stats")
        peak = server.expect("stats", 30)["peakRSS"]
        self.figures["ns server peak RSS"].append(peak * 1024)
        self.figures["ns server peak RSS growth"].append((peak - self.serverStartRSS) * 1024)
        self.peers.stopAll()
        for impl in ("ns", "plain"):
            self.figures[f"{impl} memory"].append(_memory(self.peers, impl, self.plan.sessions))


def _measure(
    plan: _Plan, tuned: bool, profileDir: Path | None, baseline: Path | None = None
) -> dict[str, list[float]]:
    """
    Run every workload of every peer, C{plan.repeats} times, interleaved.

    @return: Each figure's value in each repeat, by figure name.
    """
    with _peers(profileDir) as (peers, directory):
        run = _Run(plan, tuned, peers, directory, baseline)
        run.startServers()
        for index in range(plan.repeats):
            run.repeat(index)
        run.finish()
    return run.figures


def _row(
    figures: dict[str, list[float]],
    name: str,
    figure: str,
    unit: str,
    baseline: str,
    baselineName: str,
    target: tuple[str, float] | None = None,
    scale: float = 1.0,
) -> Row:
    """
    A comparison row: NetStructer's median and spread, the baseline's
    median, their ratio, and the target's verdict.

    @param figure: NetStructer's figure's name.
    @param baseline: The baseline figure's name, or a number as text (a
        fixed reference, such as a value's size).
    @param target: C{(">=", bound)} or C{("<=", bound)} on the ratio, or
        L{None} for a row reported for information.
    @param scale: Multiplies both figures (seconds to microseconds...).
    """
    samples = [v * scale for v in figures[figure]]
    if baseline in figures:
        baselineValue = statistics.median(figures[baseline]) * scale
    else:
        baselineValue = float(baseline) * scale
    value = statistics.median(samples)
    ratio = value / baselineValue
    row: Row = {
        "name": name,
        "value": value,
        "spread": [min(samples), max(samples)],
        "unit": unit,
        "baseline": baselineValue,
        "baselineName": baselineName,
        "ratio": ratio,
    }
    if target is not None:
        op, bound = target
        row["target"] = f"{op} {bound:.2f}x"
        passed = ratio >= bound if op == ">=" else ratio <= bound
        row["status"] = "PASS" if passed else "MISS"
    return row


def rows(figures: dict[str, list[float]], plan: _Plan) -> list[Row]:
    """
    @return: The table's rows, each goal of the performance issue with its
        C{target} and C{status}.
    """
    f = figures
    us, mbs, vps = "us", "MB/s", "values/s"
    out: list[Row] = []
    for baseline, name in (("plain", _PLAIN), ("tls", _TLS), ("zmq", _ZMQ), ("grpc", _GRPC)):
        out.append(
            _row(f, "small one way, Twisted client", "ns stream", vps, f"{baseline} stream", name,
                 (">=", 1.0))
        )  # fmt: skip
    for baseline, name in (("plain", _PLAIN), ("zmq", _ZMQ)):
        out.append(
            _row(f, "small one way, blocking link", "blocking stream", vps, f"{baseline} stream",
                 name, (">=", 1.0))
        )  # fmt: skip
    out.append(
        _row(f, "small one way, blocking sendBuffers", "blocking-batched stream", vps,
             "zmq stream", _ZMQ)
    )  # fmt: skip
    for placement, _, _ in _placements():
        for impl, label in (("ns", "Twisted client"), ("blocking", "blocking link")):
            goal = ("<=", 1.0) if impl == "ns" else None
            for baseline, name in (("plain", _PLAIN), ("grpc", _GRPC), ("zmq", _ZMQ)):
                if impl == "ns" and baseline == "zmq":
                    continue
                out.append(
                    _row(f, f"round trip median, {placement}, {label}",
                         f"{impl} {placement} echo median", us,
                         f"{baseline} {placement} echo median", name, goal, 1e6)
                )  # fmt: skip
        out.append(
            _row(f, f"round trip p99, {placement}, Twisted client",
                 f"ns {placement} echo p99", us, f"plain {placement} echo p99", _PLAIN, None, 1e6)
        )  # fmt: skip
    for size, _ in plan.bulk:
        label = f"bulk {size // _MiB} MiB one way"
        ns = f"ns bulk {size}"
        if size == _MiB:
            out.append(_row(f, label, ns, mbs, f"zmq bulk {size}", _ZMQ, (">=", 1.0)))
            out.append(_row(f, label, ns, mbs, f"grpc bulk {size}", _GRPC, (">=", 1.0)))
        out.append(_row(f, label, ns, mbs, f"raw bulk {size}", _RAW, (">=", 0.5)))
        out.append(_row(f, label, ns, mbs, f"tls bulk {size}", _TLS))
        out.append(
            _row(f, label + ", blocking link", f"blocking bulk {size}", mbs, f"raw bulk {size}",
                 _RAW)
        )  # fmt: skip
    return out + _otherRows(figures, plan)


def _otherRows(figures: dict[str, list[float]], plan: _Plan) -> list[Row]:
    """
    @return: The memory, connect and pure-Python rows.
    """
    f = figures
    us, mbs, vps, ms, mib = "us", "MB/s", "values/s", "ms", "MiB"
    out: list[Row] = []
    largest = max(size for size, _ in plan.bulk)
    big = f"bulk {largest // _MiB} MiB"
    sizeName = f"the value size ({largest // _MiB} MiB)"
    # Growth: the peak over the process's resident set before the workload
    # (a Python process with Twisted and NetStructer imported holds about
    # 50 MiB before it touches a value); the whole peak is shown beside.
    for label, figure in (
        ("Twisted client", f"ns bulk {largest} peak RSS"),
        ("server", "ns server peak RSS"),
        ("plain client", f"plain bulk {largest} peak RSS"),
    ):
        goal = None if label == "plain client" else ("<=", 4.0)
        out.append(
            _row(f, f"{big} peak RSS growth, {label}", figure + " growth", mib, str(largest),
                 sizeName, goal, 1 / _MiB)
        )  # fmt: skip
        out.append(
            _row(f, f"{big} peak RSS (whole process), {label}", figure, mib, str(largest),
                 sizeName, None, 1 / _MiB)
        )  # fmt: skip
    for impl, label in (("ns", ""), ("blocking", ", blocking")):
        for baseline, name in (("tls", _TLS), ("grpc", _GRPC)):
            out.append(
                _row(f, f"connect + handshake + 1st RT{label}", f"{impl} connect median", ms,
                     f"{baseline} connect median", name, ("<=", 0.5), 1e3)
            )  # fmt: skip
    c = "NetStructer with the C codec"
    first = plan.bulk[0][0]
    out += [
        _row(f, "pure Python: small one way", "pure stream", vps, "ns stream", c, (">=", 1 / 3)),
        _row(f, "pure Python: round trip median, same CPU", "pure same CPU echo median", us,
             "ns same CPU echo median", c, ("<=", 3.0), 1e6),
        _row(f, f"pure Python: bulk {first // _MiB} MiB", f"pure bulk {first}", mbs,
             f"ns bulk {first}", c, (">=", 1 / 3)),
        _row(f, "pure Python: connect + handshake + 1st RT", "pure connect median", ms,
             "ns connect median", c, ("<=", 3.0), 1e3),
        _row(f, f"server RSS per idle session ({plan.sessions})", "ns memory", "KiB",
             "plain memory", f"{_PLAIN} per TCP connection"),
    ]  # fmt: skip
    return out


def beforeRows(figures: dict[str, list[float]], plan: _Plan) -> list[Row]:
    """
    @return: This checkout against the baseline checkout (C{--baseline}),
        workload by workload, within the same run.
    """
    f = figures
    before = "the baseline checkout"
    out = [
        _row(f, "before/after: small one way, Twisted", "ns stream", "values/s",
             "before stream", before),
        _row(f, "before/after: small one way, blocking", "blocking stream", "values/s",
             "blocking-before stream", before),
    ]  # fmt: skip
    for placement, _, _ in _placements():
        out.append(
            _row(f, f"before/after: round trip median, {placement}",
                 f"ns {placement} echo median", "us", f"before {placement} echo median",
                 before, None, 1e6)
        )  # fmt: skip
    for size, _ in plan.bulk:
        for impl, other, label in (
            ("ns", "before", "Twisted"),
            ("blocking", "blocking-before", "blocking"),
        ):
            out.append(
                _row(f, f"before/after: bulk {size // _MiB} MiB, {label}", f"{impl} bulk {size}",
                     "MB/s", f"{other} bulk {size}", before)
            )  # fmt: skip
    for impl, other, label in (
        ("ns", "before", "Twisted"),
        ("blocking", "blocking-before", "blocking"),
    ):
        out.append(
            _row(f, f"before/after: connect + 1st RT, {label}", f"{impl} connect median", "ms",
                 f"{other} connect median", before, None, 1e3)
        )  # fmt: skip
    return out


def _number(value: float) -> str:
    return f"{value:,.0f}" if value >= 1000 else f"{value:,.1f}" if value >= 10 else f"{value:.3f}"


def formatTable(untuned: list[Row], tuned: list[Row] | None) -> str:
    """
    Format the rows as a table, with the tuned ratios beside if measured.

    @return: The table.
    """
    header = (
        f"{'measurement':<48} {'NetStructer':>11} {'(min-max)':>17} {'baseline':>11}"
        f" {'unit':<8} {'ratio':>6} {'target':>8} {'':<4}"
    )
    if tuned is not None:
        header += f" {'tuned':>6} {'':<4}"
    lines = [header + "  baseline"]
    for index, row in enumerate(untuned):
        low, high = row["spread"]
        line = (
            f"{row['name']:<48} {_number(row['value']):>11}"
            f" {'(' + _number(low) + '-' + _number(high) + ')':>17}"
            f" {_number(row['baseline']):>11} {row['unit']:<8} {row['ratio']:>5.2f}x"
            f" {row.get('target', ''):>8} {row.get('status', ''):<4}"
        )
        if tuned is not None:
            other = tuned[index]
            line += f" {other['ratio']:>5.2f}x {other.get('status', ''):<4}"
        lines.append(line + f"  {row['baselineName']}")
    return "\n".join(lines)


def describe(described: dict[str, Any], repeats: int, tuned: bool) -> str:
    """
    @return: Lines naming the machine, the software and the conditions.
    """
    load = described["loadAverage"]
    versions = ", ".join(f"{name} {v}" for name, v in described["versions"].items())
    return (
        f"{described['cpuCount']} CPUs (os.cpu_count()), usable {described['affinity']}"
        f" (sched_getaffinity), {described['cpuModel']}; load average"
        f" {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} at the start\n"
        f"Python {described['python']}; {versions}\n"
        f"value codec {'in C' if described['accelerated'] else 'in pure Python'};"
        f" allocator untuned (as applications run)"
        f"{'; tuned ratios (tuneAllocator() in every peer) beside' if tuned else ''};"
        f" medians of {repeats} interleaved repeats, spread min-max"
    )


def main() -> None:
    """
    Parse the command line, run the benchmark and print the table.
    """
    parser = argparse.ArgumentParser(description="NetStructer against the peers users pick.")
    parser.add_argument("--quick", action="store_true", help="a short run (rough figures)")
    parser.add_argument(
        "--tuned", action="store_true", help="also measure with tuneAllocator() in every peer"
    )
    parser.add_argument("--profile", metavar="DIR", type=Path, help="write peer profiles to DIR")
    parser.add_argument("--json", action="store_true", help="print the rows as JSON too")
    parser.add_argument(
        "--baseline",
        metavar="DIR",
        type=Path,
        help="also run NetStructer from the checkout DIR (its C codec built in place), beside"
        " this one in the same interleaved run, and print the before/after rows",
    )
    options = parser.parse_args()
    try:
        import grpc  # noqa: F401 (only checked for)
        import zmq  # noqa: F401 (only checked for)
    except ImportError:
        raise SystemExit('bench_peers needs pyzmq and grpcio: pip install -e ".[bench]"') from None
    if options.profile is not None:
        options.profile.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    plan = _QUICK if options.quick else _FULL
    described = machine()
    untunedFigures = _measure(plan, False, options.profile, options.baseline)
    untuned = rows(untunedFigures, plan)
    tuned = rows(_measure(plan, True, options.profile), plan) if options.tuned else None
    print(describe(described, plan.repeats, options.tuned))
    print(formatTable(untuned, tuned))
    if options.baseline is not None:
        print()
        print(f"Before/after: this checkout against {options.baseline}, in the same run")
        print(formatTable(beforeRows(untunedFigures, plan), None))
    goals = [row for row in untuned if "status" in row]
    missed = sum(1 for row in goals if row["status"] == "MISS")
    print(
        f"{len(goals) - missed} of {len(goals)} goals PASS untuned"
        f" (load average {os.getloadavg()[0]:.2f} at the end;"
        f" {time.monotonic() - started:.0f} s)"
    )
    if options.json:
        print(json.dumps({"machine": described, "untuned": untuned, "tuned": tuned}))


if __name__ == "__main__":
    main()
