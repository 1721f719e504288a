# -*- test-case-name: tests.test_bench_cluster -*-
"""
Smoke test of C{benchmarks/bench_cluster.py}: its C{--quick} run (a real
Redis, three real twistd nodes and a fourth run by the blocking facade, two
peers, a process holding real sessions, over loopback) prints every figure.
Nothing here asserts a timing but the directory's convergence, which has a
generous bound.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from tests._redis import redisServerPath

REPO = Path(__file__).resolve().parent.parent


class QuickRunTests(SynchronousTestCase):
    """
    C{bench_cluster.py --quick --json}.
    """

    def test_quickRun(self) -> None:
        """
        The quick run exits 0 and gives every row: the relay across nodes
        with its baseline within a node, the directory's costs, the
        heartbeat traffic, the convergence and the extrapolation.
        """
        redisServerPath()
        result = subprocess.run(
            [
                sys.executable,
                str(REPO / "benchmarks" / "bench_cluster.py"),
                "--quick",
                "--json",
                "--sessions",
                "300",
            ],
            env=dict(os.environ, PYTHONPATH=str(REPO)),
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        report = json.loads(result.stdout)
        rows = {row["name"]: row for row in report["rows"]}
        for name, row in rows.items():
            # What a session costs a node is a difference of resident
            # sizes, which a few hundred sessions may not move.
            if "RSS" not in row.get("note", "") and "of which" not in name:
                self.assertGreater(row["value"], 0, name)
        ratios = [name for name, row in rows.items() if "ratio" in row]
        self.assertEqual(
            ratios,
            [
                "relay round trip p50, across nodes (alice@n1 -> bob@n2)",
                "relay round trip p99, across nodes",
                "relay stream alice@n1 -> bob@n2 (sendTo)",
            ],
        )
        self.assertEqual(rows["sessions opened (real, over 3 twistd nodes)"]["value"], 300)
        self.assertLess(rows["directory convergence after SIGKILL of n3 (Redis)"]["value"], 3.0)
        self.assertTrue(any(n.startswith("extrapolated: Redis memory") for n in rows))
        self.assertIn("load average", report["header"])
