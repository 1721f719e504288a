"""
Network benchmark of NetStructer over loopback, against baselines measured
in the same run.

Every server and every client runs in its own process (spawned from
C{benchmarks/_bridge_peer.py}), on 127.0.0.1, so that the two ends of a
connection never share an interpreter.  Workloads:

  1. I{one way}: the original package's example value,
     C{['hi im haytam', 128, {b'gg': 'gg'}, {1, 2, 6, 4}, (False, True)]},
     sent as fast as backpressure allows (batches of 100, waiting on
     C{whenWritable()} between them); values per second counted by the
     server's application, which answers once it has them all;
  2. I{round trip}: the example value echoed, one at a time (the server
     uses L{netstructer.handlers.EchoHandler}); median and p99 latency;
  3. I{bulk}: 1 MiB and 16 MiB C{bytes} values one way; MB/s (10 ** 6
     bytes per second) delivered to the server's application;
  4. I{connect}: a fresh connection, its handshake and a first round trip;
     median over the connections;
  5. I{memory}: the server's VmRSS per idle authenticated session, with
     1 000 sessions (200 with C{--quick}) opened by one client process.

Baselines, measured in the same run:

  (a) a stock L{twisted.protocols.basic.Int32StringReceiver} with plain
      C{msgpack.packb}/C{unpackb}, no encryption, for workloads 1-5;
  (b) a raw blocking-socket copy between two processes (C{sendall} of
      whole values, C{recv_into} one buffer): the transport's ceiling for
      bulk;
  (c) for workload 4, TLS 1.3 (a Twisted C{ssl:} server endpoint and a
      C{tls:} client endpoint over TCP, with a throwaway self-signed ECDSA
      P-256 certificate) carrying (a).

The client measurements of NetStructer and of (a) alternate, one process
each, for five repeats (two with C{--quick}); each figure is the best repeat.
Ratios are NetStructer / baseline within this run, and each target prints
PASS or MISS.

Run from the repository root::

    PYTHONPATH=. python benchmarks/bench_bridge.py [--quick] [--profile DIR] [--json]

C{--profile DIR} writes every peer's cProfile statistics to C{DIR} (for
C{python -m pstats}); the figures are then slower.  C{--json} also prints
the rows as JSON.
"""

from __future__ import annotations

import argparse
import datetime
import ipaddress
import json
import os
import queue
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

Row = dict[str, object]

_ROOT = Path(__file__).resolve().parent.parent
_PEER = Path(__file__).resolve().with_name("_bridge_peer.py")
_KEY_VARIABLE = "NETSTRUCTER_BENCH_KEY"
_MiB = 1024 * 1024
_WARM_SESSIONS = 20
_PLAIN = "Int32StringReceiver+msgpack"


@dataclass(frozen=True)
class _Plan:
    """
    How much each workload does.

    @ivar stream: Example values sent one way, per repeat.
    @ivar echo: Round trips, per repeat.
    @ivar bulk: C{(size, count)} of the bulk values, per repeat.
    @ivar connect: Connections, per repeat.
    @ivar sessions: Idle sessions held for the memory measurement.
    @ivar repeats: Repeats of workloads 1-4.
    """

    stream: int
    echo: int
    bulk: tuple[tuple[int, int], ...]
    connect: int
    sessions: int
    repeats: int


_QUICK = _Plan(
    stream=40_000,
    echo=3_000,
    bulk=((_MiB, 128), (16 * _MiB, 8)),
    connect=40,
    sessions=200,
    repeats=2,
)
_FULL = _Plan(
    stream=100_000,
    echo=5_000,
    bulk=((_MiB, 256), (16 * _MiB, 16)),
    connect=50,
    sessions=1_000,
    repeats=5,
)


def vmRSS(pid: int) -> int:
    """
    @param pid: A process id.
    @return: The process's resident set size (VmRSS in C{/proc/PID/status}),
        in KiB.
    """
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS in /proc/{pid}/status")


def makeCertificate(directory: Path) -> None:
    """
    Write a throwaway self-signed ECDSA P-256 certificate for 127.0.0.1 to
    C{directory/trust/cert.pem} (the client's trust root directory) and its
    key to C{directory/key.pem}.

    @param directory: An existing, private directory.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    (directory / "trust").mkdir()
    (directory / "trust" / "cert.pem").write_bytes(
        certificate.public_bytes(serialization.Encoding.PEM)
    )
    keyPath = directory / "key.pem"
    keyPath.touch(mode=0o600)
    keyPath.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


class PeerError(RuntimeError):
    """
    A peer process failed, printed an error, or overran its deadline.
    """


class Peer:
    """
    One spawned peer process, whose JSON lines a thread reads.

    @ivar name: Names the peer in messages and files.
    @ivar process: The process.
    """

    def __init__(self, name: str, args: list[str], env: dict[str, str], logDir: Path) -> None:
        """
        @param name: Names the peer.
        @param args: The arguments of C{_bridge_peer.py}.
        @param env: The environment.
        @param logDir: Where its standard error goes (C{NAME.err}).
        """
        self.name = name
        self._stderrPath = logDir / f"{name}.err"
        self._stderr: IO[str] = self._stderrPath.open("w")
        self.process = subprocess.Popen(
            [sys.executable, str(_PEER), *args],
            cwd=_ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
        )
        self._lines: queue.Queue[dict[str, Any] | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            try:
                item = json.loads(line)
            except ValueError:
                continue
            if isinstance(item, dict):
                self._lines.put(item)
        self._lines.put(None)

    def _failure(self, what: str) -> PeerError:
        try:
            tail = self._stderrPath.read_text()[-2000:]
        except OSError:
            tail = ""
        return PeerError(f"{self.name}: {what}" + (f"\n{tail}" if tail else ""))

    def expect(self, event: str, timeout: float) -> dict[str, Any]:
        """
        Wait for a line of the given event, skipping others.

        @param event: The event.
        @param timeout: Seconds to wait.
        @return: The line.
        @raise PeerError: The peer printed an error, exited, or said nothing
            in time.
        """
        deadline = time.monotonic() + timeout
        while True:
            try:
                item = self._lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise self._failure(f"no {event!r} line within {timeout} s") from None
            if item is None:
                raise self._failure(f"exited ({self.process.wait()}) before a {event!r} line")
            if item.get("event") == "error":
                raise self._failure(f"error: {item.get('error')}")
            if item.get("event") == event:
                return item

    def results(self, timeout: float) -> list[dict[str, Any]]:
        """
        Collect the result lines of a client until it exits.

        @param timeout: Seconds the client may take.
        @return: The result lines.
        @raise PeerError: The client failed or overran.
        """
        deadline = time.monotonic() + timeout
        results: list[dict[str, Any]] = []
        while True:
            try:
                item = self._lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise self._failure(f"did not finish within {timeout} s") from None
            if item is None:
                break
            if item.get("event") == "error":
                raise self._failure(f"error: {item.get('error')}")
            if item.get("event") == "result":
                results.append(item)
        try:
            status = self.process.wait(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            raise self._failure("closed its output but did not exit") from None
        if status:
            raise self._failure(f"exited with status {status}")
        return results

    def command(self, line: str) -> None:
        """
        Write one command line to the peer's standard input.
        """
        assert self.process.stdin is not None
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()

    def stop(self, grace: float = 10.0) -> None:
        """
        Close the peer's standard input (servers and clients stop then),
        wait up to C{grace} seconds, then kill it.
        """
        if self.process.poll() is None:
            try:
                assert self.process.stdin is not None
                self.process.stdin.close()
            except OSError:
                pass
            try:
                self.process.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self._stderr.close()


class Peers:
    """
    Spawns peers and stops every one of them, on success or error.
    """

    def __init__(self, env: dict[str, str], logDir: Path, profileDir: Path | None) -> None:
        self._env = env
        self._logDir = logDir
        self._profileDir = profileDir
        self._peers: list[Peer] = []

    def spawn(self, name: str, args: list[str], env: dict[str, str] | None = None) -> Peer:
        """
        Start a peer.

        @param name: Its name (unique within the run).
        @param args: The arguments of C{_bridge_peer.py}.
        @param env: Variables to add to its environment.
        @return: The peer.
        """
        if self._profileDir is not None:
            args = ["--profile", str(self._profileDir / f"{name}.prof"), *args]
        peer = Peer(name, args, {**self._env, **(env or {})}, self._logDir)
        self._peers.append(peer)
        return peer

    def server(
        self, name: str, args: list[str], env: dict[str, str] | None = None
    ) -> tuple[Peer, int]:
        """
        Start a server and wait for its port.

        @return: The peer and its port.
        """
        peer = self.spawn(name, args, env)
        port = peer.expect("listening", 60)["port"]
        assert isinstance(port, int)
        return peer, port

    def client(
        self,
        name: str,
        args: list[str],
        expected: int,
        timeout: float = 300,
        env: dict[str, str] | None = None,
    ) -> list[dict[str, Any]]:
        """
        Run a client to its end.

        @param expected: The result lines it must print.
        @param env: Variables to add to its environment.
        @return: Its result lines.
        @raise PeerError: It failed, overran, or printed another number of
            results.
        """
        peer = self.spawn(name, args, env)
        try:
            results = peer.results(timeout)
        finally:
            peer.stop()
        if len(results) != expected:
            raise PeerError(f"{name}: {len(results)} results instead of {expected}")
        return results

    def stopAll(self) -> None:
        """
        Stop every peer still running, newest first.
        """
        while self._peers:
            self._peers.pop().stop()


@contextmanager
def _peers(profileDir: Path | None) -> Iterator[tuple[Peers, Path]]:
    from netstructer.keys import generateKey

    with tempfile.TemporaryDirectory(prefix="bench_bridge-") as tmp:
        directory = Path(tmp)
        env = dict(os.environ)
        env[_KEY_VARIABLE] = generateKey().decode("ascii")
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(_ROOT), env.get("PYTHONPATH", "")) if p)
        peers = Peers(env, directory, profileDir)
        try:
            yield peers, directory
        finally:
            peers.stopAll()


def _bulkArgs(plan: _Plan) -> list[str]:
    return [f"{size}:{count}" for size, count in plan.bulk]


def _percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))]


def _sessionsNow(server: Peer, expected: int, timeout: float = 30) -> int:
    """
    Ask a server for its session count until it reaches C{expected}.

    @return: The count.
    """
    deadline = time.monotonic() + timeout
    while True:
        server.command("stats")
        sessions = server.expect("stats", 30)["sessions"]
        assert isinstance(sessions, int)
        if sessions >= expected or time.monotonic() > deadline:
            return sessions
        time.sleep(0.05)


def _memory(peers: Peers, impl: str, sessions: int) -> float:
    """
    Measure a fresh server's VmRSS growth per idle session.

    @return: KiB per session.
    @raise PeerError: The server did not count every session.
    """
    server, port = peers.server(
        f"memory-server-{impl}", ["server", impl, "--max-sessions", str(sessions + 200)]
    )
    holder = peers.spawn(
        f"memory-client-{impl}",
        ["client", impl, str(port), "--hold", str(sessions), "--warm", str(_WARM_SESSIONS)],
    )
    holder.expect("warm", 60)
    _sessionsNow(server, _WARM_SESSIONS)
    before = vmRSS(server.process.pid)
    holder.command("go")
    holder.expect("held", 300)
    counted = _sessionsNow(server, _WARM_SESSIONS + sessions)
    after = vmRSS(server.process.pid)
    holder.command("release")
    holder.stop()
    server.stop()
    if counted != _WARM_SESSIONS + sessions:
        raise PeerError(
            f"the {impl} server counted {counted - _WARM_SESSIONS} of {sessions} sessions"
        )
    return (after - before) / sessions


def _measure(plan: _Plan, profileDir: Path | None) -> tuple[dict[str, list[float]], set[str]]:
    """
    Run every workload.

    @return: Each figure's value in each repeat, by figure name; and the
        TLS versions the TLS baseline negotiated.
    """
    figures: dict[str, list[float]] = defaultdict(list)
    tlsVersions: set[str] = set()
    with _peers(profileDir) as (peers, directory):
        certDir = directory / "cert"
        certDir.mkdir(mode=0o700)
        makeCertificate(certDir)
        ports = {
            "ns": peers.server("server-ns", ["server", "ns"])[1],
            "plain": peers.server("server-plain", ["server", "plain"])[1],
            "tls": peers.server("server-tls", ["server", "tls", "--cert-dir", str(certDir)])[1],
            "raw": peers.server("rawsink", ["rawsink"])[1],
        }
        workloads = [
            *("--echo", str(plan.echo), "--stream", str(plan.stream)),
            *(arg for spec in _bulkArgs(plan) for arg in ("--bulk", spec)),
            *("--connect", str(plan.connect)),
        ]
        for repeat in range(plan.repeats):
            for impl in ("ns", "plain"):
                results = peers.client(
                    f"client-{impl}-{repeat}",
                    ["client", impl, str(ports[impl]), *workloads],
                    expected=3 + len(plan.bulk),
                )
                for result in results:
                    _record(figures, impl, result)
            for result in peers.client(
                f"client-tls-{repeat}",
                [
                    *("client", "tls", str(ports["tls"]), "--cert-dir", str(certDir)),
                    *("--connect", str(plan.connect)),
                ],
                expected=1,
            ):
                _record(figures, "tls", result)
                tlsVersions.add(str(result.get("tls")))
            for result in peers.client(
                f"rawsource-{repeat}",
                ["rawsource", str(ports["raw"]), *_bulkArgs(plan)],
                expected=len(plan.bulk),
            ):
                _record(figures, "raw", result)
        peers.stopAll()
        for impl in ("ns", "plain"):
            figures[f"{impl} memory"].append(_memory(peers, impl, plan.sessions))
    return figures, tlsVersions


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


def _row(
    name: str,
    value: float,
    unit: str,
    baseline: float,
    baselineName: str,
    target: tuple[str, float] | None = None,
) -> Row:
    """
    A comparison row: NetStructer's figure, the baseline's, their ratio, and
    the target's verdict.

    @param target: C{(">=", bound)} or C{("<=", bound)} on the ratio, or
        L{None} for a row reported for information.
    """
    ratio = value / baseline
    row: Row = {
        "name": name,
        "value": value,
        "unit": unit,
        "baseline": baseline,
        "baselineName": baselineName,
        "ratio": ratio,
    }
    if target is not None:
        op, bound = target
        row["target"] = f"{op} {bound:.2f}x"
        passed = ratio >= bound if op == ">=" else ratio <= bound
        row["status"] = "PASS" if passed else "MISS"
    return row


def run(quick: bool = False, profileDir: Path | None = None) -> list[Row]:
    """
    Run every measurement.

    @param quick: Do less of each workload, twice (about 15 seconds; the
        figures are rough).
    @param profileDir: Where the peers write their cProfile statistics, if
        anywhere.
    @return: Rows with C{name}, C{value} (NetStructer's figure) and C{unit},
        and, where there is one, C{baseline}, C{baselineName}, C{ratio}
        (NetStructer / baseline), C{target} and C{status} (C{"PASS"} or
        C{"MISS"}).
    """
    plan = _QUICK if quick else _FULL
    figures, tlsVersions = _measure(plan, profileDir)

    def best(name: str) -> float:
        return max(figures[name])

    def least(name: str) -> float:
        return min(figures[name])

    tls = f"TLS ({', '.join(sorted(tlsVersions))}, ECDSA P-256) + {_PLAIN}"
    rows = [
        _row(
            "example value one way",
            best("ns stream"),
            "values/s",
            best("plain stream"),
            _PLAIN,
            (">=", 1.0),
        ),
        _row(
            "example value round trip, median",
            least("ns echo median") * 1e6,
            "us",
            least("plain echo median") * 1e6,
            _PLAIN,
            ("<=", 1.0),
        ),
        _row(
            "example value round trip, p99",
            least("ns echo p99") * 1e6,
            "us",
            least("plain echo p99") * 1e6,
            _PLAIN,
        ),
    ]
    for size, _ in plan.bulk:
        label = f"{size // _MiB} MiB"
        rows.append(
            _row(
                f"bulk {label} values one way",
                best(f"ns bulk {size}"),
                "MB/s",
                best(f"raw bulk {size}"),
                "raw blocking sockets",
                (">=", 0.3),
            )
        )
        rows.append(
            _row(
                f"bulk {label} values one way",
                best(f"ns bulk {size}"),
                "MB/s",
                best(f"plain bulk {size}"),
                _PLAIN,
            )
        )
    rows += [
        _row(
            "connect + handshake + first round trip",
            least("ns connect median") * 1e3,
            "ms",
            least("tls connect median") * 1e3,
            tls,
            ("<=", 0.5),
        ),
        _row(
            "connect + handshake + first round trip",
            least("ns connect median") * 1e3,
            "ms",
            least("plain connect median") * 1e3,
            f"{_PLAIN} (no TLS)",
        ),
        _row(
            f"server RSS per idle session ({plan.sessions} sessions)",
            figures["ns memory"][0],
            "KiB",
            figures["plain memory"][0],
            f"{_PLAIN} (no TLS)",
        ),
    ]
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
        f"{'measurement':<42} {'NetStructer':>12} {'baseline':>12} {'unit':<9}"
        f" {'ratio':>6} {'target':>9} {'':<4}  baseline"
    ]
    for row in rows:
        value, baseline, ratio = row["value"], row["baseline"], row["ratio"]
        assert isinstance(value, float) and isinstance(baseline, float)
        assert isinstance(ratio, float)
        lines.append(
            f"{row['name']:<42} {_number(value):>12} {_number(baseline):>12} {row['unit']:<9}"
            f" {ratio:>5.2f}x {row.get('target', ''):>9} {row.get('status', ''):<4}"
            f"  {row['baselineName']}"
        )
    return "\n".join(lines)


def main() -> None:
    """
    Parse the command line, run the benchmark and print a table.
    """
    parser = argparse.ArgumentParser(description="NetStructer's network benchmark.")
    parser.add_argument("--quick", action="store_true", help="a short run (~15 s, rough figures)")
    parser.add_argument("--profile", metavar="DIR", type=Path, help="write peer profiles to DIR")
    parser.add_argument("--json", action="store_true", help="print the rows as JSON too")
    options = parser.parse_args()
    if options.profile is not None:
        options.profile.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    rows = run(quick=options.quick, profileDir=options.profile)
    print(formatTable(rows))
    print(f"({time.monotonic() - started:.0f} s)")
    if options.json:
        print(json.dumps(rows))


if __name__ == "__main__":
    main()
