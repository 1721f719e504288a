# -*- test-case-name: tests.test_bench_peers -*-
"""
Checks of C{benchmarks/bench_peers.py} that need no long run: its table and
goals from given figures, the fairness of its baseline's value, and (when
grpcio is installed, as the C{bench} extra installs it) the gRPC peer
answering every workload.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from unittest import skipIf

import msgpack
from twisted.trial.unittest import SynchronousTestCase

REPO = Path(__file__).resolve().parent.parent
BENCHMARKS = REPO / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import _peer_common  # noqa: E402
import bench_peers  # noqa: E402

_HAVE_GRPC = importlib.util.find_spec("grpc") is not None


class Figures(dict[str, list[float]]):
    """
    Figures for every row, as three repeats would give them: NetStructer's
    samples 2.0, 1.5 and 2.5, every baseline's 1.0.
    """

    def __contains__(self, name: object) -> bool:
        # Rows compare some figures with a fixed number (a value's size).
        return not str(name).isdigit()

    def __missing__(self, name: str) -> list[float]:
        ours = name.split()[0] in ("ns", "blocking", "blocking-batched", "pure")
        samples = self[name] = [2.0, 1.5, 2.5] if ours else [1.0, 1.0, 1.0]
        return samples


class TableTests(SynchronousTestCase):
    """
    The rows and the table.
    """

    def test_goalsAndSpread(self) -> None:
        """
        Every goal of the issue has a row with a target and a verdict;
        medians and min-max spreads are NetStructer's own samples.
        """
        plan = bench_peers._QUICK
        rows = bench_peers.rows(Figures(), plan)
        names = {row["name"] for row in rows if "status" in row}
        for expected in (
            "small one way, Twisted client",
            "round trip median, same CPU, Twisted client",
            "bulk 1 MiB one way",
            "bulk 16 MiB one way",
            "bulk 16 MiB peak RSS growth, server",
            "connect + handshake + 1st RT",
        ):
            self.assertIn(expected, names)
        baselines = {row["baselineName"] for row in rows if row["name"].startswith("small")}
        self.assertIn(bench_peers._GRPC, baselines)
        table = bench_peers.formatTable(rows, rows)
        self.assertIn("(1.500-2.500)", table)
        self.assertIn("PASS", table)
        self.assertEqual(len(table.splitlines()), len(rows) + 1)

    def test_fairBaseline(self) -> None:
        """
        The baselines' example value is made of msgpack's own types: plain
        C{packb}, with no hook, packs it and it unpacks equal.
        """
        packed = msgpack.packb(_peer_common.PLAIN_EXAMPLE)
        self.assertEqual(msgpack.unpackb(packed), _peer_common.PLAIN_EXAMPLE)
        self.assertEqual(_peer_common.plainPack(_peer_common.PLAIN_EXAMPLE), packed)


@skipIf(not _HAVE_GRPC, "grpcio is not installed (pip install -e '.[bench]')")
class GRPCPeerTests(SynchronousTestCase):
    """
    The gRPC peer, over real loopback TLS.
    """

    def test_workloads(self) -> None:
        """
        The gRPC client runs every workload against the gRPC server and
        prints a result for each.
        """
        from bench_bridge import makeCertificate

        with tempfile.TemporaryDirectory() as tmp:
            certDir = Path(tmp) / "cert"
            certDir.mkdir()
            makeCertificate(certDir)
            env = dict(os.environ, PYTHONPATH=str(REPO))
            peer = [sys.executable, str(BENCHMARKS / "_bridge_peer.py")]
            server = subprocess.Popen(
                [*peer, "grpcserver", "--cert-dir", str(certDir)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                env=env,
                text=True,
            )
            try:
                assert server.stdout is not None
                port = json.loads(server.stdout.readline())["port"]
                workloads = [
                    "--stream",
                    "300",
                    "--echo",
                    "50",
                    "--bulk",
                    "100000:3",
                    "--connect",
                    "2",
                ]
                result = subprocess.run(
                    [*peer, "grpcclient", str(port), "--cert-dir", str(certDir), *workloads],
                    env=env,
                    capture_output=True,
                    text=True,
                    timeout=120,
                    check=False,
                )
            finally:
                assert server.stdin is not None
                server.stdin.close()
                server.wait(timeout=30)
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        printed = [json.loads(line)["workload"] for line in result.stdout.splitlines()]
        self.assertEqual(printed, ["echo", "stream", "bulk", "connect"])
