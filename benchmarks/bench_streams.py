"""
Streams against the ways a user would otherwise move a large file, over
loopback, every peer in its own process (C{benchmarks/_streams_peer.py},
and C{benchmarks/_bridge_peer.py} for gRPC):

  - I{throughput}: one file sent as one stream (the Twisted client's
    C{sendStream(path)}, and the blocking client's C{sendFile}) against the
    same bytes sent as 16 MiB values on the same kind of connection
    (C{sendBuffer}, waiting on C{whenWritable()} after each, counted by the
    server's application) and against gRPC client-streaming the same bytes
    in 1 MiB messages (grpcio over TLS, as in C{bench_peers.py}); medians
    of interleaved repeats (MB/s, 10 ** 6 bytes a second, confirmed by the
    receiver);
  - I{fairness}: small values' round trips (a value every 10 ms, each
    waited for) while a large stream goes on the same connection: p50 and
    p99;
  - I{memory}: the peak resident set growth of each side while a very
    large file (4 GiB; 512 MiB with C{--quick}) is sent and received, over
    a fresh server: C{VmRSS} of both processes sampled every 5 ms, from
    just before the stream (after a first small one) to its confirmation.

Goals (the streams issue): a stream reaches at least 0.9x the 16 MiB-value
bulk throughput and at least gRPC's; small values' p99 stays within 5 ms
during a 1 GiB stream; either side's resident set grows by less than 64 MiB
for a 4 GiB file.  Each is printed as PASS or MISS, with the machine's load.

Run from the repository root (the gRPC figure needs the C{bench} extra)::

    PYTHONPATH=. python benchmarks/bench_streams.py [--quick] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import IO, Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _peer_common import KEY_VARIABLE

from netstructer.keys import generateKey

_HERE = Path(__file__).resolve().parent
_ROOT = _HERE.parent
_MiB = 1024 * 1024
_TIMEOUT = 900.0


class _Peer:
    """
    A peer process whose JSON lines are read in a thread.
    """

    def __init__(self, script: str, args: list[str], env: dict[str, str], log: IO[str]) -> None:
        self.process = subprocess.Popen(
            [sys.executable, str(_HERE / script), *args],
            cwd=_ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
        )
        self.lines: list[dict[str, Any]] = []
        self._ready = threading.Condition()
        self._ended = False
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            try:
                item = json.loads(line)
            except ValueError:
                continue
            with self._ready:
                self.lines.append(item)
                self._ready.notify_all()
        with self._ready:
            self._ended = True
            self._ready.notify_all()

    def expect(self, event: str, timeout: float = _TIMEOUT) -> dict[str, Any]:
        """
        @return: The next line of C{event} not taken yet.
        @raise RuntimeError: The peer failed, ended, or said nothing in time.
        """
        deadline = time.monotonic() + timeout
        with self._ready:
            while True:
                for index, item in enumerate(self.lines):
                    if item.get("event") == "error":
                        raise RuntimeError(f"a peer failed: {item.get('error')}")
                    if item.get("event") == event:
                        return self.lines.pop(index)
                if self._ended:
                    raise RuntimeError(f"a peer ended before a {event!r} line")
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise RuntimeError(f"no {event!r} line in {timeout} s")
                self._ready.wait(remaining)

    def command(self, line: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()

    def stop(self) -> None:
        if self.process.poll() is None:
            try:
                assert self.process.stdin is not None
                self.process.stdin.close()
            except OSError:
                pass
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


class _Run:
    """
    The peers of one run.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.env = {**os.environ, KEY_VARIABLE: generateKey().decode("ascii")}
        self.env["PYTHONPATH"] = os.pathsep.join(
            [str(_ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
        )
        self.log = open(directory / "peers.err", "w")  # noqa: SIM115 (closed in close())
        self.peers: list[_Peer] = []

    def spawn(self, script: str, *args: str) -> _Peer:
        peer = _Peer(script, list(args), self.env, self.log)
        self.peers.append(peer)
        return peer

    def server(self) -> tuple[_Peer, int]:
        peer = self.spawn("_streams_peer.py", "server")
        return peer, int(peer.expect("listening", 60)["port"])

    def client(self, *args: str) -> tuple[dict[str, Any], dict[str, Any]]:
        """
        Run a client to its end.

        @return: Its result line and its memory line.
        """
        peer = self.spawn("_streams_peer.py", *args)
        result = peer.expect("result")
        rss = peer.expect("rss")
        if peer.process.wait(timeout=60):
            raise RuntimeError(f"the client {args} failed")
        return result, rss

    def close(self) -> None:
        for peer in self.peers:
            peer.stop()
        self.log.close()


def writeFile(path: Path, size: int) -> None:
    """
    Write C{size} random-looking bytes to C{path} (a random MiB repeated,
    each copy changed, so that nothing compresses it).
    """
    block = bytearray(os.urandom(_MiB))
    with open(path, "wb") as file:
        for index in range(size // _MiB):
            block[:8] = index.to_bytes(8, "big")
            file.write(block)
        file.write(os.urandom(size % _MiB))


def vmRSS(pid: int) -> int:
    """
    @return: The resident set of process C{pid}, in bytes (0 once it is
        gone).
    """
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def memoryRun(run: _Run, source: Path) -> dict[str, Any]:
    """
    Send C{source} as one stream to a fresh server, sampling both
    processes' resident sets every 5 ms from just before the stream starts
    (after a first small stream) until it is confirmed.

    @return: Each side's growth over its size at the start, and the rate.
    """
    server, port = run.server()
    serverPID = server.process.pid
    client = run.spawn("_streams_peer.py", "client", str(port), "stream", str(source))
    client.expect("starting", 120)
    base = {"server": vmRSS(serverPID), "client": vmRSS(client.process.pid)}
    peak = dict(base)
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.005):
            peak["server"] = max(peak["server"], vmRSS(serverPID))
            peak["client"] = max(peak["client"], vmRSS(client.process.pid))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        result = client.expect("result")
    finally:
        done.set()
        sampler.join(5)
    client.process.wait(timeout=60)
    server.stop()
    return {
        "server": peak["server"] - base["server"],
        "client": peak["client"] - base["client"],
        "rate": _rate(result),
    }


def _rate(result: dict[str, Any]) -> float:
    return float(result["size"]) / float(result["seconds"]) / 1e6


def _grpc(run: _Run, size: int, repeats: int) -> list[float]:
    """
    gRPC client-streaming C{size} bytes in 1 MiB messages, C{repeats}
    times: MB/s each.
    """
    try:
        import grpc  # noqa: F401 (only checked for)
    except ImportError:
        return []
    from bench_bridge import makeCertificate

    certDir = run.directory / "cert"
    certDir.mkdir(mode=0o700, exist_ok=True)
    makeCertificate(certDir)
    server = run.spawn("_bridge_peer.py", "grpcserver", "--cert-dir", str(certDir))
    port = str(server.expect("listening", 60)["port"])
    rates = []
    for _ in range(repeats):
        peer = run.spawn(
            "_bridge_peer.py",
            *("grpcclient", port, "--cert-dir", str(certDir)),
            *("--bulk", f"{_MiB}:{size // _MiB}"),
        )
        rates.append(float(peer.expect("result")["rate"]))
        peer.process.wait(timeout=60)
    server.stop()
    return rates


def measure(quick: bool, directory: Path) -> dict[str, Any]:
    """
    Run every workload.

    @return: The figures.
    """
    size = 256 * _MiB if quick else 1024 * _MiB
    big = 512 * _MiB if quick else 4096 * _MiB
    repeats = 2 if quick else 3
    source = directory / "file.bin"
    writeFile(source, size)
    run = _Run(directory)
    figures: dict[str, Any] = {"size": size, "big": big, "load": os.getloadavg()[0]}
    try:
        server, port = run.server()
        rates: dict[str, list[float]] = {"bulk": [], "stream": [], "blocking": []}
        for _ in range(repeats):
            rates["bulk"].append(
                _rate(
                    run.client(
                        "client", str(port), "bulk", str(16 * _MiB), str(size // 16 // _MiB)
                    )[0]
                )
            )
            rates["stream"].append(_rate(run.client("client", str(port), "stream", str(source))[0]))
            rates["blocking"].append(_rate(run.client("blocking", str(port), str(source))[0]))
        rates["grpc"] = _grpc(run, size, repeats)
        figures["rates"] = rates
        pings, _ = run.client("client", str(port), "pings", str(source))
        samples = sorted(pings["samples"])
        figures["pings"] = {
            "count": len(samples),
            "p50": samples[len(samples) // 2] * 1000,
            "p99": samples[min(len(samples) - 1, int(len(samples) * 0.99))] * 1000,
            "stream": _rate(pings),
        }
        server.stop()
        os.unlink(source)
        writeFile(source, big)
        figures["memory"] = memoryRun(run, source)
    finally:
        run.close()
        source.unlink(missing_ok=True)
    return figures


def report(figures: dict[str, Any]) -> str:
    """
    @return: The table, with every goal as PASS or MISS.
    """
    rates = figures["rates"]
    median = {name: statistics.median(values) for name, values in rates.items() if values}
    spread = {
        name: f"{min(values):,.0f}-{max(values):,.0f}" for name, values in rates.items() if values
    }
    size = figures["size"] // _MiB
    lines = [
        f"Streams over loopback, {size} MiB, load average {figures['load']:.2f} at the start",
        f"{'workload':<44}{'MB/s':>10}  spread",
    ]
    names = {
        "bulk": "16 MiB values (Twisted client)",
        "stream": "one stream, sendStream(path) (Twisted)",
        "blocking": "one stream, Link.sendFile (blocking)",
        "grpc": "gRPC client stream, 1 MiB messages (TLS)",
    }
    for name, label in names.items():
        if name in median:
            lines.append(f"{label:<44}{median[name]:>10,.0f}  {spread[name]}")

    def goal(text: str, ok: bool) -> str:
        return f"{'PASS' if ok else 'MISS'}  {text}"

    ratio = median["stream"] / median["bulk"]
    lines.append(goal(f"stream / 16 MiB values = {ratio:.2f} (goal >= 0.9)", ratio >= 0.9))
    if "grpc" in median:
        versus = median["stream"] / median["grpc"]
        lines.append(goal(f"stream / gRPC = {versus:.2f} (goal >= 1.0)", versus >= 1.0))
    pings = figures["pings"]
    lines.append(
        goal(
            f"small values during a {size} MiB stream: p50 {pings['p50']:.2f} ms, p99"
            f" {pings['p99']:.2f} ms over {pings['count']} round trips, the stream at"
            f" {pings['stream']:,.0f} MB/s (goal p99 <= 5 ms)",
            pings["p99"] <= 5.0,
        )
    )
    memory = figures["memory"]
    for side in ("server", "client"):
        growth = memory[side] / _MiB
        lines.append(
            goal(
                f"{side} RSS growth for a {figures['big'] // _MiB} MiB stream: {growth:.1f} MiB"
                f" (at {memory['rate']:,.0f} MB/s; goal < 64 MiB)",
                growth < 64,
            )
        )
    return "\n".join(lines)


def run(quick: bool = False) -> list[dict[str, Any]]:
    """
    @return: The figures, as one row.
    """
    with tempfile.TemporaryDirectory(prefix="nsstreams-bench-") as directory:
        return [measure(quick, Path(directory))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="256 MiB, 2 repeats, 512 MiB RSS")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON too")
    parser.add_argument(
        "--memory-only", action="store_true", help="only the memory figure (4 GiB; 512 MiB quick)"
    )
    options = parser.parse_args()
    if options.memory_only:
        big = 512 * _MiB if options.quick else 4096 * _MiB
        with tempfile.TemporaryDirectory(prefix="nsstreams-bench-") as directory:
            source = Path(directory) / "big.bin"
            writeFile(source, big)
            peers = _Run(Path(directory))
            try:
                memory = memoryRun(peers, source)
            finally:
                peers.close()
        growth = {side: memory[side] / _MiB for side in ("server", "client")}
        print(
            f"{big // _MiB} MiB stream at {memory['rate']:,.0f} MB/s, load average"
            f" {os.getloadavg()[0]:.2f}: server RSS growth {growth['server']:.1f} MiB,"
            f" client {growth['client']:.1f} MiB (goal < 64 MiB each)"
        )
        return
    figures = run(options.quick)[0]
    print(report(figures))
    if options.json:
        print(json.dumps(figures))


if __name__ == "__main__":
    main()
