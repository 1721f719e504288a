# -*- test-case-name: tests.test_bench_relay -*-
"""
Smoke test of C{benchmarks/bench_relay.py}: its C{--quick} run, over real
loopback sockets (a server process, a blocking peer and a Twisted fan-out
process), prints every figure.  Nothing here asserts a timing.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

REPO = Path(__file__).resolve().parent.parent

RATIO_ROWS = (
    "relay round trip p50 (alice->bob->alice)",
    "relay round trip p99 (alice->bob->alice)",
    "relay one leg p50 (round trip / 2)",
    "relay one leg p99 (round trip / 2)",
    "relay stream alice->bob (sendTo)",
)
"""Rows compared with a direct baseline measured in the same run."""

FANOUT_ROWS = (
    "publish -> last delivery p50",
    "publish -> last delivery max",
    "publishes/s",
    "deliveries/s",
    "connect + subscribe",
)
"""Rows printed for each subscriber count (10 and 100 with C{--quick})."""


def _figure(table: str, name: str) -> tuple[float, str]:
    """
    @return: The NetStructer figure of the row called C{name}, and the rest
        of its line.
    @raise AssertionError: No such row, or it has no figure.
    """
    for line in table.splitlines():
        if line.startswith(name):
            match = re.match(r"\s+([\d,]+(?:\.\d+)?)\s+(.*)$", line[len(name) :])
            assert match is not None, line
            return float(match.group(1).replace(",", "")), match.group(2)
    raise AssertionError(f"no row {name!r} in:\n{table}")


class QuickRunTests(SynchronousTestCase):
    """
    C{bench_relay.py --quick}.
    """

    def test_quickRunPrintsEveryFigure(self) -> None:
        """
        The quick run exits 0 and prints the CPU count, the relay rows each
        with a direct baseline and a ratio, the fan-out rows for 10 and 100
        subscribers, and the reload rows of C{bench_reload.py} (exactly the
        revoked session closed, none other dropped).
        """
        result = subprocess.run(
            [sys.executable, str(REPO / "benchmarks" / "bench_relay.py"), "--quick"],
            env=dict(os.environ, PYTHONPATH=str(REPO)),
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        table = result.stdout
        self.assertIn(f"os.cpu_count() = {os.cpu_count()}", table.splitlines()[0])
        for name in RATIO_ROWS:
            value, rest = _figure(table, name)
            self.assertGreater(value, 0, name)
            self.assertRegex(rest, r"^[\d,.]+ +\S+ +\d+\.\d\dx  direct ", name)
        for count in (10, 100):
            for name in FANOUT_ROWS:
                value, _ = _figure(table, f"fan-out {count} subscribers: {name}")
                self.assertGreater(value, 0, (count, name))
        self.assertGreater(_figure(table, "100 sessions: reloadKeys, 1 key removed")[0], 0)
        self.assertEqual(_figure(table, "100 sessions: closed by the reload")[0], 1)
        self.assertEqual(_figure(table, "100 sessions: others dropped")[0], 0)
