# -*- test-case-name: tests.test_status -*-
"""
Tests for L{netstructer.status} and C{netstructer status}: the summary of a
real server's C{/metrics}, read over HTTP from 127.0.0.1.
"""

from __future__ import annotations

import io
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from netstructer import blocking
from netstructer.cli import Streams, parseCommand
from netstructer.status import StatusError, metricsURL, parse, summarize, watch
from tests.test_hostile import ServerProcess
from tests.test_metrics import metricsPortOf

PAGE = """\
# TYPE netstructer_sessions_open gauge
netstructer_sessions_open{suite="noise (AESGCM)"} 3.0
# TYPE netstructer_connections_open gauge
netstructer_connections_open 4.0
# TYPE netstructer_max_sessions gauge
netstructer_max_sessions 1024.0
# TYPE netstructer_handshakes counter
netstructer_handshakes_total{outcome="ok"} 10.0
netstructer_handshakes_total{outcome="wrong_key"} 2.0
# TYPE netstructer_values_received counter
netstructer_values_received_total{suite="noise (AESGCM)"} %(valuesIn)s
# TYPE netstructer_values_sent counter
netstructer_values_sent_total{suite="noise (AESGCM)"} 50.0
# TYPE netstructer_closes counter
netstructer_closes_total{code="normal",side="peer"} 7.0
# TYPE netstructer_backpressure_paused_seconds counter
netstructer_backpressure_paused_seconds_total{direction="receive"} %(paused)s
"""


def page(valuesIn: float = 100.0, paused: float = 0.0) -> str:
    return PAGE % {"valuesIn": valuesIn, "paused": paused}


class MetricsURLTests(SynchronousTestCase):
    """
    L{metricsURL} reads every way of saying where the metrics are.
    """

    def test_forms(self) -> None:
        """
        A port, host:port, the C{--metrics} endpoint and URLs.
        """
        cases = {
            "9100": "http://127.0.0.1:9100/metrics",
            "10.0.0.2:9100": "http://10.0.0.2:9100/metrics",
            "tcp:9100:interface=127.0.0.1": "http://127.0.0.1:9100/metrics",
            "tcp:9100": "http://127.0.0.1:9100/metrics",
            "tcp:9100:interface=0.0.0.0": "http://127.0.0.1:9100/metrics",
            "http://h:1": "http://h:1/metrics",
            "http://h:1/other": "http://h:1/other",
        }
        for target, url in cases.items():
            self.assertEqual(metricsURL(target), url, target)

    def test_bad(self) -> None:
        """
        Anything else is refused with a message saying what to give.
        """
        error = self.assertRaises(ValueError, metricsURL, "nonsense")
        self.assertIn("give a URL", str(error))


class SummaryTests(SynchronousTestCase):
    """
    L{parse} and L{summarize}.
    """

    def test_summary(self) -> None:
        """
        The summary gives sessions, the limit, handshake failures by
        outcome, values and closes.
        """
        lines = summarize(parse(page(), 0.0))
        text = "\n".join(lines)
        self.assertIn("3 open, 4 connections of 1024 allowed", text)
        self.assertIn("10 ok; failed: wrong_key 2", text)
        self.assertIn("100 received, 50 sent", text)
        self.assertIn("normal/peer 7", text)
        self.assertNotIn("last", text)

    def test_rates(self) -> None:
        """
        Given an earlier scrape, the summary adds rates over the interval.
        """
        before = parse(page(100.0, 0.0), 10.0)
        now = parse(page(300.0, 1.0), 12.0)
        last = summarize(now, before)[-1]
        self.assertIn("last 2.0 s", last)
        self.assertIn("100 values/s in", last)
        self.assertIn("0 failed handshakes", last)
        self.assertIn("50% of the time paused", last)

    def test_notMetrics(self) -> None:
        """
        A page without NetStructer's metrics is refused.
        """
        self.assertRaises(StatusError, parse, "# TYPE other gauge\nother 1.0\n", 0.0)


class LiveServerTests(SynchronousTestCase):
    """
    C{netstructer status} against a real C{twistd netstructer --metrics}
    process (a child process: the global reactor stays out of the test
    process, whose other modules run it in trial's asynchronous tests).
    """

    def setUp(self) -> None:
        home = Path(self.mktemp()).resolve()
        self.server = ServerProcess(
            home, ("--metrics", "tcp:0:interface=127.0.0.1"), handler="echo"
        )
        self.addCleanup(self.server.kill)
        self.key = self.server.key
        self.metricsPort = metricsPortOf(self.server)

    def test_command(self) -> None:
        """
        C{netstructer status PORT} prints the summary of two scrapes, with
        the session a client holds open.
        """
        with blocking.link(("127.0.0.1", self.server.port), self.key, timeout=10) as bridge:
            bridge.sendBuffer([1, 2])
            self.assertEqual(bridge.recvBuffer(10), [1, 2])
            out = io.StringIO()
            err = io.StringIO()
            status = parseCommand(
                ["status", str(self.metricsPort), "--interval", "0.05"],
                Streams(stdout=out, stderr=err),
            )
        self.assertEqual((status, err.getvalue()), (0, ""))
        text = out.getvalue()
        self.assertIn("sessions     1 open", text)
        self.assertIn("1 ok; failed: none", text)
        self.assertIn("1 received", text)
        self.assertIn("values/s in", text)

    def test_watch(self) -> None:
        """
        L{watch} shows one summary per scrape, the later ones with rates.
        """
        shown: list[list[str]] = []
        waits: list[float] = []
        watch(
            metricsURL(str(self.metricsPort)),
            lambda lines: shown.append(list(lines)),
            interval=0.5,
            count=3,
            sleep=waits.append,
        )
        self.assertEqual(len(shown), 3)
        self.assertEqual(waits, [0.5, 0.5])
        self.assertNotIn("last", shown[0][-1])
        self.assertIn("values/s in", shown[2][-1])

    def test_unreachable(self) -> None:
        """
        A port where nothing serves metrics is a one-line user error.
        """
        self.server.kill()
        err = io.StringIO()
        status = parseCommand(
            ["status", str(self.metricsPort)], Streams(stdout=io.StringIO(), stderr=err)
        )
        self.assertEqual(status, 1)
        self.assertIn("is the server running with --metrics there?", err.getvalue())
