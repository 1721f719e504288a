"""
The cost of metrics: small-value throughput of a server with
C{--metrics} against the same server without, in one run.

    PYTHONPATH=. python benchmarks/bench_metrics.py [--quick] [--sample]

Two real C{twistd -n netstructer --handler echo} processes on 127.0.0.1, one
with C{--metrics tcp:0:interface=127.0.0.1} (scraped once a second during
the run, as Prometheus would, more often than its usual 15 s), one without,
both on the same CPU (the client on another, when there are two).
A blocking client (L{netstructer.blocking.link}) sends the original
package's example value in batches of 100 and reads the 100 echoes back,
for about a second per round; the rounds alternate between the two servers
(nine each, three with C{--quick}); each figure is the best round (as in
C{bench_bridge}: the machine's noise only ever slows a round down), the
median printed beside it.  The ratio is with metrics / without, of the
best rounds; the target is at least 0.97.

C{--sample} prints the C{/metrics} page of the server with metrics at the
end.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

from netstructer.blocking import link
from netstructer.cli import EXAMPLE_VALUE
from netstructer.keys import writeKeyFile

REPO = Path(__file__).resolve().parent.parent
TWISTD = [sys.executable, "-c", "from twisted.scripts.twistd import run; run()"]
_LISTENING = re.compile(r"NetStructer server listening on 127\.0\.0\.1:(\d+)")
_SERVING = re.compile(r"Serving metrics on 127\.0\.0\.1:(\d+)")
BATCH = 100
TARGET = 0.97


class ServerProcess:
    """
    A C{twistd -n netstructer --handler echo} process.

    @ivar port: Its NetStructer port.
    @ivar metricsPort: Its metrics port, or L{None}.
    """

    def __init__(self, home: Path, key: Path, metrics: bool) -> None:
        self.logPath = home / f"twistd-{'metrics' if metrics else 'plain'}.log"
        options = ["--metrics", "tcp:0:interface=127.0.0.1"] if metrics else []
        env = dict(os.environ, PYTHONPATH=str(REPO), HOME=str(home))
        with open(self.logPath, "wb") as log:
            self.process = subprocess.Popen(
                [
                    *TWISTD,
                    "-n",
                    "--pidfile=",
                    "netstructer",
                    "--port",
                    "tcp:0:interface=127.0.0.1",
                    "--key-file",
                    str(key),
                    "--handler",
                    "echo",
                    *options,
                ],
                env=env,
                cwd=home,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=_serverCPU,
            )
        self.port = self._wait(_LISTENING)
        self.metricsPort = self._wait(_SERVING) if metrics else None

    def _wait(self, pattern: re.Pattern[str]) -> int:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            match = pattern.search(self.logPath.read_text(errors="replace"))
            if match is not None:
                return int(match.group(1))
            if self.process.poll() is not None:
                break
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"the server did not start:\n{self.logPath.read_text()}")

    def stop(self) -> None:
        """
        SIGTERM, then wait (killing it after 20 s).
        """
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def _cpus() -> list[int]:
    getter = getattr(os, "sched_getaffinity", None)
    return sorted(getter(0)) if getter is not None else []


def _serverCPU() -> None:
    """
    Run a server on the last CPU (the client takes the first), so that both
    servers get the same placement: otherwise the scheduler's choice alone
    moves one server's figure by 10% against the other's.
    """
    cpus = _cpus()
    if len(cpus) >= 2:
        os.sched_setaffinity(0, {cpus[-1]})


def scrape(port: int) -> str:
    """
    @return: The C{/metrics} page.
    """
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text: str = response.read().decode("utf-8")
    return text


def _scraper(port: int, stop: threading.Event) -> None:
    while not stop.wait(1.0):
        scrape(port)


def echoRound(port: int, key: bytes, seconds: float) -> float:
    """
    Echo the example value in batches for about C{seconds}.

    @return: Values per second (each value counted once, sent and echoed).
    """
    bridge = link(("127.0.0.1", port), key, timeout=30)
    try:
        values = 0
        started = time.perf_counter()
        while True:
            for _ in range(BATCH):
                bridge.sendBuffer(EXAMPLE_VALUE)
            for _ in range(BATCH):
                bridge.recvBuffer(timeout=30)
            values += BATCH
            elapsed = time.perf_counter() - started
            if elapsed >= seconds:
                return values / elapsed
    finally:
        bridge.close()


def run(quick: bool = False, sample: bool = False) -> int:
    """
    Measure and print.

    @return: The exit status: 0 if the target holds, 1 if not.
    """
    rounds = 3 if quick else 9
    cpus = _cpus()
    if len(cpus) >= 2:
        os.sched_setaffinity(0, {cpus[0]})
    seconds = 0.3 if quick else 1.0
    with tempfile.TemporaryDirectory(prefix="netstructer-bench-metrics-") as directory:
        home = Path(directory)
        keyPath = home / "server.key"
        key = writeKeyFile(keyPath)
        plain = ServerProcess(home, keyPath, metrics=False)
        try:
            withMetrics = ServerProcess(home, keyPath, metrics=True)
        except BaseException:
            plain.stop()
            raise
        metricsPort = withMetrics.metricsPort
        assert metricsPort is not None
        stop = threading.Event()
        scraper = threading.Thread(target=_scraper, args=(metricsPort, stop), daemon=True)
        scraper.start()
        figures: dict[str, list[float]] = {"off": [], "on": []}
        try:
            echoRound(plain.port, key, seconds / 3)
            echoRound(withMetrics.port, key, seconds / 3)
            for index in range(rounds):
                order = [("off", plain), ("on", withMetrics)]
                if index % 2:
                    order.reverse()
                for name, server in order:
                    figures[name].append(echoRound(server.port, key, seconds))
            page = scrape(metricsPort)
        finally:
            stop.set()
            scraper.join(timeout=10)
            plain.stop()
            withMetrics.stop()
    off = max(figures["off"])
    on = max(figures["on"])
    ratio = on / off
    medianRatio = statistics.median(figures["on"]) / statistics.median(figures["off"])
    print(f"# bench_metrics: {os.cpu_count()} CPUs, {rounds} alternating rounds of {seconds} s")
    print(f"{'server':<20}{'best values/s':>14}{'median':>10}   rounds")
    for name, label in (("off", "without --metrics"), ("on", "with --metrics")):
        rounds_ = " ".join(f"{value:,.0f}" for value in figures[name])
        best = max(figures[name])
        median = statistics.median(figures[name])
        print(f"{label:<20}{best:>14,.0f}{median:>10,.0f}   {rounds_}")
    verdict = "PASS" if ratio >= TARGET else "MISS"
    print(
        f"ratio with/without: best {ratio:.3f} (target >= {TARGET}) {verdict};"
        f" median {medianRatio:.3f}"
    )
    if sample:
        print("\n# /metrics of the server with metrics, after the run:")
        print(page)
    return 0 if ratio >= TARGET else 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="short rounds, for a smoke test")
    parser.add_argument("--sample", action="store_true", help="print /metrics at the end")
    arguments = parser.parse_args()
    sys.exit(run(quick=arguments.quick, sample=arguments.sample))


if __name__ == "__main__":
    main()
