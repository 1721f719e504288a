# -*- test-case-name: tests.test_shutdown -*-
"""
End-to-end tests of bounded shutdown, in subprocesses over loopback: twistd
SIGTERM with a connected client that does not read, a blocking server
closed by the thread that also holds a link to it, and Ctrl-C in a
blocking script.  The cases are those of C{benchmarks/bench_shutdown.py};
every wait is bounded and every process is killed by PID afterwards.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

from twisted.trial.unittest import SynchronousTestCase

REPO = Path(__file__).resolve().parent.parent


def _bench() -> ModuleType:
    """
    @return: The C{benchmarks/bench_shutdown.py} module.
    """
    spec = importlib.util.spec_from_file_location(
        "bench_shutdown", REPO / "benchmarks" / "bench_shutdown.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class ShutdownEndToEndTests(SynchronousTestCase):
    """
    Shutdown is bounded by the grace period whatever the peers do, and
    takes milliseconds when nobody needs to answer.
    """

    def setUp(self) -> None:
        """
        Load the cases.
        """
        self.bench = _bench()

    def test_sigtermNonReadingClient(self) -> None:
        """
        twistd with a blocking client that does not read stops within the
        grace period (1 s here) plus a second after SIGTERM, logs "Server
        Shut Down." and one grace line naming the two values it did not
        confirm (the echoes of its two values), and no traceback.
        """
        result = self.bench.sigterm(REPO, 0, True, grace=1)
        self.assertLess(result["seconds"], 2.0, result["log"])
        self.assertTrue(result["shutDown"], result["log"])
        self.assertFalse(result["traceback"], result["log"])
        self.assertEqual(result["graceLines"], 1, result["log"])
        self.assertIn("2 values sent to it unconfirmed", result["log"])

    def test_nonReadingClientReadsLater(self) -> None:
        """
        A client that was not reading when the server stopped finds, on its
        next calls, first the value sent to it before the close, then
        L{SessionClosed}.
        """
        result = self.bench.sigterm(REPO, 0, True, grace=0.5, readAfter=2)
        self.assertTrue(result["shutDown"], result["log"])
        self.assertEqual(result["nonReadingReceived"], "['two', 'SessionClosed']", result["log"])

    def test_sigtermIdleClient(self) -> None:
        """
        A Twisted client that answers the close lets twistd stop in well
        under the grace period.
        """
        result = self.bench.sigterm(REPO, 1, False)
        self.assertLess(result["seconds"], 3.0, result["log"])
        self.assertTrue(result["shutDown"], result["log"])
        self.assertEqual(result["graceLines"], 0, result["log"])

    def test_sameThreadClose(self) -> None:
        """
        C{server.close()} from the thread that holds a link returns in well
        under a second; the link then gets the value sent before the close
        and L{SessionClosed}.
        """
        result = self.bench.sameThread(REPO)
        self.assertLess(result["seconds"], 1.0)
        self.assertEqual(result["received"], ["two", "SessionClosed"])

    def test_ctrlC(self) -> None:
        """
        SIGINT to a script in C{with blocking.Server(...)}, blocked in
        C{time.sleep}, a link's C{recvBuffer}, the server's C{waitFor} or a
        session's C{recvBuffer}, raises L{KeyboardInterrupt} and the process
        exits promptly.
        """
        for blockedIn in self.bench.CTRL_C_CALLS:
            with self.subTest(blockedIn=blockedIn):
                result = self.bench.ctrlC(REPO, blockedIn)
                self.assertTrue(result["keyboardInterrupt"], blockedIn)
                self.assertLess(result["seconds"], 3.0, blockedIn)
