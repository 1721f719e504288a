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
    from netstructer.handlers import EchoHandler
    from netstructer.keys import generateKey

    key = generateKey()
    # The reference echo target: the handler of "twistd netstructer --handler
    # echo", accepting both suite families.
    with blocking.Server(
        ("127.0.0.1", 0), key, handler=EchoHandler(), acceptSuites=["noise", "fernet"]
    ) as server:
        server.listen()
        runs = [
            ("noise", Target("127.0.0.1", server.port, key, deadline=3, echo=True), ()),
            (
                "fernet",
                Target("127.0.0.1", server.port, key, deadline=3, suite="fernet", echo=True),
                ("5", "6"),
            ),
        ]
        for suite, target, only in runs:
            for result in runCases(target, only=only):
                print("CASE", result.number, result.status, f"[{suite}]", result.detail, flush=True)


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
            timeout=240,
            check=False,
        )
        self.assertEqual(result.returncode, 0, result.stderr)
        lines = [
            line.split(" ", 3) for line in result.stdout.splitlines() if line.startswith("CASE")
        ]
        self.assertGreaterEqual(len(lines), 5, result.stdout)
        passed = set()
        for _, number, status, detail in lines:
            # A case of one suite only is "info" in the other run.
            self.assertIn(status, ("pass", "info"), f"{number}: {detail}")
            if status == "pass":
                passed.add(number)
        for _, number, _, detail in lines:
            self.assertIn(number, passed, f"{number} passed in no run: {detail}")


if __name__ == "__main__":
    _scenario()
