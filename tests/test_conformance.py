# -*- test-case-name: tests.test_conformance -*-
"""
Tests for L{netstructer.conformance}: the kit's cases against the reference
server (L{netstructer.blocking.Server} on 127.0.0.1), in a child process as
in L{tests.test_blocking}.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

_ROOT = Path(__file__).resolve().parent.parent


def _scenario() -> None:
    from netstructer import blocking
    from netstructer.conformance import Target, runCases
    from netstructer.keys import generateKey

    key = generateKey()
    with blocking.Server(("127.0.0.1", 0), key) as server:
        server.listen_on(lambda session: None)
        for result in runCases(Target("127.0.0.1", server.port, key, deadline=3)):
            print("CASE", result.number, result.status, result.detail, flush=True)


class ReferenceServerTests(SynchronousTestCase):
    """
    The reference server passes the kit's cases.
    """

    def test_cases(self) -> None:
        """
        Every case passes against the reference server.
        """
        result = subprocess.run(
            [sys.executable, "-m", "tests.test_conformance"],
            cwd=_ROOT,
            capture_output=True,
            text=True,
            timeout=90,
            check=False,
        )
        self.assertEqual(result.returncode, 0, result.stderr)
        lines = [
            line.split(" ", 3) for line in result.stdout.splitlines() if line.startswith("CASE")
        ]
        self.assertGreaterEqual(len(lines), 5, result.stdout)
        for _, number, status, detail in lines:
            self.assertEqual(status, "pass", f"{number}: {detail}")


if __name__ == "__main__":
    _scenario()
