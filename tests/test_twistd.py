# -*- test-case-name: tests.test_twistd -*-
"""
End-to-end tests of the real C{twistd netstructer}: the plugin found from the
repository (on C{PYTHONPATH}, without installation), a server process on a
free loopback port, a client talking to it with L{connect} and with
C{netstructer send}, and a clean shutdown on SIGTERM.

Every wait is bounded by a deadline, and the server process is always killed
when the test ends.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from twisted.trial.unittest import SynchronousTestCase, TestCase

import netstructer
from netstructer import cli
from netstructer.client import connect
from netstructer.keys import ENVIRONMENT_VARIABLE, writeKeyFile

REPO = Path(__file__).resolve().parent.parent

EXAMPLE = "['hi im haytam', 128, {b'gg': 'gg'}, {1, 2, 6, 4}, (False, True)]"

TWISTD = [sys.executable, "-c", "from twisted.scripts.twistd import run; run()"]
"""
C{twistd}, run by this interpreter.  (C{python -m twisted} is C{twist},
another runner.)
"""

START_DEADLINE = 20.0
STOP_DEADLINE = 20.0


def _freePort() -> int:
    """
    @return: A TCP port on 127.0.0.1 that nothing listened on just now.
    """
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def _environment(home: Path) -> dict[str, str]:
    """
    @return: An environment with a temporary home and the repository on
        C{PYTHONPATH}, and no C{NETSTRUCTER_KEY}.
    """
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in (ENVIRONMENT_VARIABLE, "XDG_CONFIG_HOME", "PYTHONPATH")
    }
    env["HOME"] = str(home)
    env["PYTHONPATH"] = str(REPO)
    return env


def _waitForPort(port: int, process: subprocess.Popen[bytes], deadline: float) -> None:
    """
    Try to connect every 0.1 seconds until the server accepts.

    @raise AssertionError: The process exited, or the deadline passed.
    """
    while True:
        if process.poll() is not None:
            raise AssertionError(f"twistd exited with status {process.returncode} before listening")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"twistd did not listen on port {port} within {START_DEADLINE} s")
        time.sleep(0.1)


class TwistdCommandLineTests(SynchronousTestCase):
    """
    C{twistd} finds the plugin and reports start-up errors.
    """

    def setUp(self) -> None:
        """
        Make a temporary home.
        """
        self.home = Path(self.mktemp()).resolve()
        self.home.mkdir(parents=True)

    def twistd(self, *argv: str) -> subprocess.CompletedProcess[str]:
        """
        Run C{twistd} to completion, from the temporary home.
        """
        return subprocess.run(
            [*TWISTD, *argv],
            env=_environment(self.home),
            cwd=self.home,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    def test_helpListsPlugin(self) -> None:
        """
        C{twistd --help} lists C{netstructer}, and C{twistd netstructer
        --help} its options.
        """
        result = self.twistd("--help")
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertIn("netstructer", result.stdout)
        result = self.twistd("netstructer", "--help")
        self.assertEqual(result.returncode, 0, result.stderr)
        for option in ("--port", "--listen", "--interface", "--key-file", "--handler"):
            self.assertIn(option, result.stdout)

    def test_version(self) -> None:
        """
        C{twistd netstructer --version} and C{netstructer --version} print
        the same line, C{netstructer} and the version, and exit 0.
        """
        fromTwistd = self.twistd("netstructer", "--version")
        fromCommand = subprocess.run(
            [sys.executable, "-m", "netstructer", "--version"],
            env=_environment(self.home),
            cwd=self.home,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        expected = f"netstructer {netstructer.__version__}\n"
        self.assertEqual(
            (fromTwistd.returncode, fromTwistd.stdout), (0, expected), fromTwistd.stderr
        )
        self.assertEqual(
            (fromCommand.returncode, fromCommand.stdout), (0, expected), fromCommand.stderr
        )

    def test_startupError(self) -> None:
        """
        A key file readable by others stops C{twistd} with status 1 and a
        message naming the file and the fix; nothing listens.
        """
        keyFile = self.home / "server.key"
        writeKeyFile(keyFile)
        os.chmod(keyFile, 0o644)
        result = self.twistd(
            "-n",
            "--pidfile=",
            "netstructer",
            "--port",
            str(_freePort()),
            "--key-file",
            str(keyFile),
        )
        self.assertEqual(result.returncode, 1)
        self.assertIn(f"chmod 600 {keyFile}", result.stdout + result.stderr)
        self.assertNotIn("Traceback", result.stdout + result.stderr)


class TwistdEndToEndTests(TestCase):
    """
    A real C{twistd -n netstructer} process.
    """

    timeout = 60

    def setUp(self) -> None:
        """
        Make a temporary home with a key file, and find a free port.
        """
        from twisted.internet import reactor

        self.reactor: Any = reactor
        self.home = Path(self.mktemp()).resolve()
        self.home.mkdir(parents=True)
        self.keyFile = self.home / "server.key"
        self.key = writeKeyFile(self.keyFile)
        self.port = _freePort()
        self.env = _environment(self.home)

    def startTwistd(self) -> subprocess.Popen[bytes]:
        """
        Start C{twistd -n netstructer} and wait until it accepts
        connections; it is killed when the test ends.
        """
        log = open(self.home / "twistd.log", "wb")  # noqa: SIM115 (closed in cleanup)
        self.addCleanup(log.close)
        process = subprocess.Popen(
            [
                *TWISTD,
                "-n",
                "--pidfile=",
                "netstructer",
                "--port",
                str(self.port),
                "--key-file",
                str(self.keyFile),
            ],
            env=self.env,
            cwd=self.home,
            stdout=log,
            stderr=subprocess.STDOUT,
        )

        def kill() -> None:
            if process.poll() is None:
                process.kill()
                process.wait(timeout=STOP_DEADLINE)

        self.addCleanup(kill)
        _waitForPort(self.port, process, time.monotonic() + START_DEADLINE)
        return process

    def log(self) -> str:
        """
        @return: What C{twistd} logged so far.
        """
        return (self.home / "twistd.log").read_text(errors="replace")

    async def test_serveAndStop(self) -> None:
        """
        C{twistd -n netstructer --port N} serves: L{connect} and C{netstructer
        send --reply} both get the example value back exactly from the echo
        handler, and SIGTERM stops the server cleanly within the deadline.
        """
        process = self.startTwistd()

        session = await connect(self.reactor, ("127.0.0.1", self.port), self.key, timeout=10)
        session.sendBuffer(cli.EXAMPLE_VALUE)
        reply = await session.recvBuffer(timeout=10)
        self.assertEqual(reply, cli.EXAMPLE_VALUE)
        self.assertEqual(repr(reply), repr(cli.EXAMPLE_VALUE))
        session.close()
        await session.whenClosed()

        sent = subprocess.run(
            [
                sys.executable,
                "-m",
                "netstructer",
                "send",
                f"127.0.0.1:{self.port}",
                EXAMPLE,
                "--reply",
                "--key-file",
                str(self.keyFile),
                "--timeout",
                "10",
            ],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        self.assertEqual((sent.returncode, sent.stderr), (0, ""))
        [line] = sent.stdout.splitlines()
        self.assertEqual(cli.parseLiteral(line), cli.EXAMPLE_VALUE)
        self.assertEqual(line, repr(cli.EXAMPLE_VALUE))

        process.send_signal(signal.SIGTERM)
        try:
            status = process.wait(timeout=STOP_DEADLINE)
        except subprocess.TimeoutExpired:
            self.fail(f"twistd did not stop within {STOP_DEADLINE} s of SIGTERM:\n{self.log()}")
        log = self.log()
        # twistd ends itself with the signal it received, once it has shut
        # down (twisted.application.app._exitWithSignal): a clean stop on
        # SIGTERM is status -SIGTERM, or 0 on platforms that cannot do that.
        self.assertIn(status, (0, -signal.SIGTERM), log)
        self.assertIn("Server Shut Down.", log)
        self.assertNotIn("Traceback", log)
        self.assertNotIn("Unhandled", log)
