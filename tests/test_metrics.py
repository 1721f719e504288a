# -*- test-case-name: tests.test_metrics -*-
"""
Tests for L{netstructer.metrics} and L{netstructer.metricsweb}.

The end-to-end tests start a real C{twistd -n netstructer --metrics ...}
process (with L{tests.test_hostile.ServerProcess}), drive real sessions at
it over 127.0.0.1 (a good one, a wrong key, an oversized value, a replayed
record, an idle session, a SIGTERM with a peer that never answers), and read
the exact counter deltas back over HTTP from its metrics listener.  The
bounds of the HTTP side (no bodies, a connection limit, a deadline) are
tested in memory.
"""

from __future__ import annotations

import os
import re
import signal
import struct
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase

from netstructer.blocking import link
from netstructer.errors import AuthenticationError
from netstructer.keys import generateKey
from netstructer.metricsweb import MetricsSite, metricsEndpoint
from tests.test_hostile import RawPeer, ServerProcess

REPO = Path(__file__).resolve().parent.parent

_SERVING = re.compile(r"Serving metrics on 127\.0\.0\.1:(\d+)")
DEADLINE = 10.0
GRACE = 2.0
IDLE = 1.0
MAX_SIZE = 4096


def metricsPortOf(server: ServerProcess) -> int:
    """
    Wait until C{server} logs where it serves its metrics.

    @return: The metrics listener's port.
    @raise AssertionError: It did not start in time.
    """
    deadline = time.monotonic() + DEADLINE
    match = _SERVING.search(server.log())
    while match is None and time.monotonic() < deadline:
        time.sleep(0.02)
        match = _SERVING.search(server.log())
    if match is None:
        raise AssertionError(f"the metrics listener did not start:\n{server.log()}")
    return int(match.group(1))


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """
    Read C{/metrics}.

    @return: Every sample, by name and sorted labels.
    """
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode("utf-8")
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[sample.name, tuple(sorted(sample.labels.items()))] = sample.value
    return samples


def health(port: int) -> tuple[int, str]:
    """
    Read C{/healthz}.

    @return: The status code and the body.
    """
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as response:
            return response.status, response.read().decode("utf-8")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode("utf-8")


def total(
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str
) -> float:
    """
    @return: The sum of the samples called C{name} whose labels include
        C{labels}.
    """
    wanted = set(labels.items())
    return sum(
        value
        for (sampleName, sampleLabels), value in samples.items()
        if sampleName == name and wanted <= set(sampleLabels)
    )


class MetricsEndToEndTests(SynchronousTestCase):
    """
    A real server process with C{--metrics}, real sessions, and the counters
    read back over HTTP.
    """

    def setUp(self) -> None:
        home = Path(tempfile.mkdtemp(prefix="netstructer-metrics-"))
        self.server = ServerProcess(
            home,
            (
                "--metrics",
                "tcp:0:interface=127.0.0.1",
                "--max-buffer-size",
                str(MAX_SIZE),
                "--idle-timeout",
                str(IDLE),
                "--keep-alive",
                "0",
                "--shutdown-grace",
                str(GRACE),
            ),
        )
        self.addCleanup(self.server.kill)
        self.metricsPort = metricsPortOf(self.server)

    def waitFor(self, name: str, expected: float, **labels: str) -> dict:
        """
        Scrape until C{name} (with C{labels}) reaches C{expected} (the
        server counts an end a moment after the client sees it), then
        return the samples; fail if it overshoots or never gets there.
        """
        deadline = time.monotonic() + DEADLINE
        while True:
            samples = scrape(self.metricsPort)
            value = total(samples, name, **labels)
            if value >= expected or time.monotonic() > deadline:
                self.assertEqual(value, expected, f"{name} {labels}")
                return samples
            time.sleep(0.02)

    def test_sessionsAndFailures(self) -> None:
        """
        Each kind of session moves exactly the counters it should.
        """
        port = self.server.port
        before = scrape(self.metricsPort)
        self.assertEqual(total(before, "netstructer_handshakes_total"), 0)
        self.assertEqual(health(self.metricsPort)[0], 200)

        # A good session: one value each way, a normal close by the peer.
        bridge = link(("127.0.0.1", port), self.server.key, timeout=DEADLINE)
        bridge.sendBuffer({b"key": [1, 2, 3]})
        self.assertEqual(bridge.recvBuffer(timeout=DEADLINE), {b"key": [1, 2, 3]})
        during = scrape(self.metricsPort)
        self.assertEqual(total(during, "netstructer_sessions_open"), 1)
        bridge.close()
        after = self.waitFor("netstructer_closes_total", 1, code="normal", side="peer")
        self.assertEqual(total(after, "netstructer_sessions_open"), 0)
        self.assertEqual(total(after, "netstructer_sessions_total"), 1)
        self.assertEqual(total(after, "netstructer_handshakes_total", outcome="ok"), 1)
        self.assertEqual(total(after, "netstructer_values_received_total"), 1)
        self.assertEqual(total(after, "netstructer_values_sent_total"), 1)
        self.assertEqual(total(after, "netstructer_value_size_bytes_count"), 1)
        self.assertEqual(total(after, "netstructer_handshake_duration_seconds_count"), 1)
        self.assertGreater(total(after, "netstructer_bytes_received_total"), 0)

        # A wrong key: refused in the handshake, never a session.
        with self.assertRaises(AuthenticationError):
            link(("127.0.0.1", port), generateKey(), timeout=DEADLINE)
        after = self.waitFor("netstructer_handshakes_total", 1, outcome="wrong_key")
        self.assertEqual(total(after, "netstructer_sessions_total"), 1)

        # An oversized record (a client keeps to the limit the server
        # announced; this one does not): refused, and the session ends.
        peer = RawPeer(port)
        peer.handshake(self.server.key)
        peer.send(struct.pack(">I", MAX_SIZE * 4) + b"x" * 64)
        self.waitFor("netstructer_records_refused_total", 1, reason="too_big")
        peer.close()

        # A replayed record: refused as an integrity failure.
        peer = RawPeer(port)
        channel = peer.handshake(self.server.key)
        frame = channel.sendValue([1, 2])
        peer.sendFrame(frame)
        peer.sendFrame(frame)
        after = self.waitFor("netstructer_records_refused_total", 1, reason="integrity")
        peer.close()

        # An idle session: closed by the server after --idle-timeout.
        bridge = link(("127.0.0.1", port), self.server.key, timeout=DEADLINE)
        after = self.waitFor("netstructer_closes_total", 1, code="idle_timeout", side="local")
        bridge.close()

        after = self.waitFor("netstructer_sessions_total", 4)
        self.assertEqual(total(after, "netstructer_handshakes_total", outcome="ok"), 4)
        self.assertEqual(total(after, "netstructer_sessions_open"), 0)
        self.assertGreater(total(after, "process_resident_memory_bytes"), 0)
        # Nothing names a peer or a key.
        text = urllib.request.urlopen(
            f"http://127.0.0.1:{self.metricsPort}/metrics", timeout=5
        ).read()
        self.assertNotIn(b"127.0.0.1", text)
        self.assertNotIn(self.server.key, text)

    def test_healthDuringShutdown(self) -> None:
        """
        C{/healthz} answers 200 while serving and 503 from the start of a
        SIGTERM shutdown, and the server still stops within its grace
        period although a peer never answers the close.
        """
        status, body = health(self.metricsPort)
        self.assertEqual((status, body), (200, "ok: listening, 0 sessions\n"))
        peer = RawPeer(self.server.port)
        peer.handshake(self.server.key)
        self.waitFor("netstructer_sessions_open", 1)
        self.assertEqual(health(self.metricsPort), (200, "ok: listening, 1 sessions\n"))
        started = time.monotonic()
        self.server.process.send_signal(signal.SIGTERM)
        deadline = started + DEADLINE
        status = 200
        while status == 200 and time.monotonic() < deadline:
            status, body = health(self.metricsPort)
        self.assertEqual((status, body), (503, "stopping: the server is shutting down\n"))
        # twistd ends itself with the signal it received once it has shut
        # down (see tests.test_twistd).
        self.assertIn(self.server.process.wait(timeout=DEADLINE), (0, -signal.SIGTERM))
        elapsed = time.monotonic() - started
        self.assertLess(elapsed, GRACE + 3.0, self.server.log())
        # The session that outlived the grace period is named in the log.
        self.assertIn(peer.key, self.server.log())
        peer.close()


class MetricsEndpointTests(SynchronousTestCase):
    """
    L{metricsEndpoint} reads C{--metrics}.
    """

    def test_barePort(self) -> None:
        """
        A bare port means that port on 127.0.0.1 only.
        """
        self.assertEqual(metricsEndpoint("9100"), "tcp:9100:interface=127.0.0.1")
        self.assertEqual(metricsEndpoint(9100), "tcp:9100:interface=127.0.0.1")

    def test_description(self) -> None:
        """
        An endpoint description is kept.
        """
        self.assertEqual(metricsEndpoint(" unix:/tmp/m "), "unix:/tmp/m")

    def test_bad(self) -> None:
        """
        An empty value or a port out of range is refused.
        """
        self.assertRaises(ValueError, metricsEndpoint, "")
        self.assertRaises(ValueError, metricsEndpoint, "70000")


class MetricsSiteTests(SynchronousTestCase):
    """
    The metrics site bounds what an HTTP client can make it do.
    """

    def setUp(self) -> None:
        from prometheus_client.registry import CollectorRegistry

        self.clock = Clock()
        self.healthy = (True, "ok")
        self.site = MetricsSite(CollectorRegistry(), lambda: self.healthy, self.clock)

    def connect(self) -> tuple[object, StringTransport]:
        channel = self.site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 4000))
        assert channel is not None
        transport = StringTransport()
        channel.makeConnection(transport)
        return channel, transport

    def test_health(self) -> None:
        """
        C{/healthz} reflects the check: 200 or 503, one line.
        """
        channel, transport = self.connect()
        channel.dataReceived(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assertTrue(transport.value().startswith(b"HTTP/1.1 200 "))
        self.assertTrue(transport.value().endswith(b"\r\n\r\nok\n"))
        self.healthy = (False, "stopping")
        transport.clear()
        channel.dataReceived(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assertTrue(transport.value().startswith(b"HTTP/1.1 503 "))

    def test_bodyRefused(self) -> None:
        """
        A request with a body is answered 413 and the connection closed.
        """
        channel, transport = self.connect()
        channel.dataReceived(b"POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n")
        self.assertTrue(transport.value().startswith(b"HTTP/1.1 413 "))
        self.assertTrue(transport.disconnecting)

    def test_connectionLimit(self) -> None:
        """
        Beyond L{MetricsSite.maxConnections} open connections, new ones are
        refused; one ending makes room.
        """
        channels = [self.connect()[0] for _ in range(self.site.maxConnections)]
        self.assertIsNone(self.site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 4001)))
        channels[0].connectionLost(Exception("gone"))
        self.assertIsNotNone(self.site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 4001)))

    def test_deadline(self) -> None:
        """
        A client that keeps trickling bytes is cut at the connection
        deadline whatever it sends.
        """
        channel, transport = self.connect()
        elapsed = 0.0
        while elapsed < self.site.connectionDeadline - 1:
            channel.dataReceived(b"X")
            self.clock.advance(1.0)
            elapsed += 1.0
        self.assertFalse(transport.disconnecting)
        self.clock.advance(1.5)
        self.assertTrue(transport.disconnecting or transport.disconnected)


class NoImportTests(SynchronousTestCase):
    """
    Without metrics, nothing imports C{prometheus_client}.
    """

    def test_notImported(self) -> None:
        """
        Building a server and the twistd service without C{--metrics}
        leaves C{prometheus_client} and C{twisted.web} unimported.
        """
        code = (
            "import sys\n"
            "from twisted.internet.testing import MemoryReactor\n"
            "from netstructer.keys import generateKey\n"
            "from netstructer.server import Server\n"
            "from netstructer import tap\n"
            "Server('tcp:0', generateKey(), reactor=MemoryReactor()).factory\n"
            "print(sorted(m for m in sys.modules if m.startswith(('prometheus_client',"
            " 'twisted.web'))))\n"
        )
        env = dict(os.environ, PYTHONPATH=str(REPO))
        output = subprocess.run(
            [sys.executable, "-c", code],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        ).stdout
        self.assertEqual(output.strip(), "[]")


class EmbeddingTests(SynchronousTestCase):
    """
    C{Server(metricsRegistry=...)} adds the server's metrics to an
    application's own registry, without a listener of its own.
    """

    def test_registry(self) -> None:
        """
        The application's registry holds the server's metrics, which follow
        its sessions; no port is opened for them.
        """
        from prometheus_client import generate_latest
        from prometheus_client.registry import CollectorRegistry
        from twisted.internet.testing import MemoryReactor

        from netstructer.server import Server

        registry = CollectorRegistry()
        reactor = MemoryReactor()
        server = Server(
            "tcp:5000:interface=127.0.0.1", generateKey(), reactor=reactor, metricsRegistry=registry
        )
        server.listen()
        self.assertEqual(len(reactor.tcpServers), 1)
        self.assertIsNone(server.metrics.endpoint)
        self.assertIs(server.metrics.registry, registry)
        self.assertIs(server.factory.events, server.metrics.collector)
        self.assertEqual(server.metrics.health(), (True, "ok: listening, 0 sessions"))
        page = generate_latest(registry).decode("ascii")
        self.assertIn("netstructer_sessions_open", page)
        self.assertIn("process_resident_memory_bytes", page)
        server.stopService()
        self.assertEqual(server.metrics.health()[0], False)


class BenchmarkSmokeTests(SynchronousTestCase):
    """
    C{benchmarks/bench_metrics.py --quick} runs and prints its figures (no
    timing is asserted: speed is the benchmark's business).
    """

    def test_quick(self) -> None:
        """
        Both servers' rows, the ratio and the sampled page are printed.
        """
        env = dict(os.environ, PYTHONPATH=str(REPO))
        result = subprocess.run(
            [sys.executable, str(REPO / "benchmarks" / "bench_metrics.py"), "--quick", "--sample"],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        self.assertIn(result.returncode, (0, 1), result.stderr)
        self.assertIn(f"{os.cpu_count()} CPUs", result.stdout)
        self.assertRegex(result.stdout, r"without --metrics +[\d,]+")
        self.assertRegex(result.stdout, r"with --metrics +[\d,]+")
        self.assertRegex(result.stdout, r"ratio with/without: best \d\.\d{3}")
        self.assertRegex(result.stdout, r'netstructer_values_received_total\{suite="[^"]+"\} [1-9]')
