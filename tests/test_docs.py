# -*- test-case-name: tests.test_docs -*-
"""
Every Python example in README.rst and in the documentation site (every
page under docs/) runs, so the documentation cannot rot.

Each C{.. code-block:: python} block is run as a script in a subprocess,
with a temporary home directory and port 5000 replaced by a free loopback
port.  A block preceded by the reST comment C{.. test: needs-echo-server}
first gets an echo server on that port (C{netstructer listen --echo}), using
the key the server creates in the temporary home, as the set-up command's
server would.

A C{.. code-block:: none} block preceded by C{.. test: relay-policy} is a
relay policy file, which must parse.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from netstructer.relaypolicy import parsePolicy

ROOT = Path(__file__).resolve().parent.parent
DOCUMENTS = [
    ROOT / "README.rst",
    *sorted(
        path
        for path in (ROOT / "docs").rglob("*.rst")
        if "_build" not in path.relative_to(ROOT / "docs").parts
    ),
]
_BLOCK = re.compile(
    r"(?P<marker>\.\. test: needs-echo-server\n\n)?"
    r"\.\. code-block:: python\n\n(?P<body>(?:(?:    .*)?\n)+)"
)
_POLICY = re.compile(
    r"\.\. test: relay-policy\n\n\.\. code-block:: none\n\n(?P<body>(?:(?:    .*)?\n)+)"
)
TIMEOUT = 60.0


def examples(path: Path) -> list[tuple[int, bool, str]]:
    """
    The Python examples of a reST document.

    @param path: The document.
    @return: For each example, its line number, whether it needs an echo
        server, and its code.
    """
    text = path.read_text(encoding="utf-8")
    found = []
    for match in _BLOCK.finditer(text):
        line = text.count("\n", 0, match.start("body")) + 1
        code = "\n".join(row[4:] for row in match.group("body").splitlines())
        found.append((line, match.group("marker") is not None, code))
    return found


def policies(path: Path) -> list[tuple[int, str]]:
    """
    The relay policy files shown in a reST document.

    @param path: The document.
    @return: For each, its line number and its text.
    """
    text = path.read_text(encoding="utf-8")
    return [
        (
            text.count("\n", 0, match.start("body")) + 1,
            "\n".join(row[4:] for row in match.group("body").splitlines()),
        )
        for match in _POLICY.finditer(text)
    ]


def freePort() -> int:
    """
    A loopback TCP port free right now.
    """
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def waitForPort(port: int, process: subprocess.Popen[bytes], deadline: float) -> None:
    """
    Wait, polling with a deadline, until something accepts on C{port}.

    @raise AssertionError: The process exited or the deadline passed.
    """
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"the echo server exited with {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"nothing accepted on port {port} in time")


class ExamplesTests(SynchronousTestCase):
    """
    Run the documentation's Python examples.
    """

    def test_foundExamples(self) -> None:
        """
        The README has Python examples, so the other test checks something.
        """
        self.assertGreaterEqual(len(examples(ROOT / "README.rst")), 3)

    def test_foundSitePages(self) -> None:
        """
        The site's pages, in subdirectories too, are among the documents
        checked, and some of them have Python examples.
        """
        names = {path.relative_to(ROOT).as_posix() for path in DOCUMENTS}
        self.assertIn("docs/getting-started.rst", names)
        self.assertIn("docs/howto/embedding.rst", names)
        self.assertGreaterEqual(
            len(examples(ROOT / "docs" / "getting-started.rst"))
            + len(examples(ROOT / "docs" / "howto" / "embedding.rst")),
            2,
        )

    def test_examplesRun(self) -> None:
        """
        Every example exits with status 0 within its time limit.
        """
        for document in DOCUMENTS:
            for line, needsServer, code in examples(document):
                with self.subTest(document=str(document.relative_to(ROOT)), line=line):
                    self.runExample(code, needsServer)

    def test_policiesParse(self) -> None:
        """
        Every relay policy file the documentation shows parses, and there
        are some.
        """
        found = 0
        for document in DOCUMENTS:
            for line, text in policies(document):
                found += 1
                with self.subTest(document=str(document.relative_to(ROOT)), line=line):
                    self.assertTrue(parsePolicy(text, f"{document.name}:{line}").rules)
        self.assertGreaterEqual(found, 2)

    def runExample(self, code: str, needsServer: bool) -> None:
        """
        Run one example, with an echo server first if it needs one.
        """
        home = Path(self.mktemp()).resolve()
        home.mkdir(parents=True)
        port = freePort()
        env = {
            **os.environ,
            "HOME": str(home),
            "XDG_CONFIG_HOME": str(home / ".config"),
            "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        }
        env.pop("NETSTRUCTER_KEY", None)
        script = home / "example.py"
        script.write_text(re.sub(r"\b5000\b", str(port), code), encoding="utf-8")
        server = None
        try:
            if needsServer:
                server = subprocess.Popen(
                    [sys.executable, "-m", "netstructer", "listen", "--echo", "-q", str(port)],
                    env=env,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.PIPE,
                )
                waitForPort(port, server, time.monotonic() + TIMEOUT)
            result = subprocess.run(
                [sys.executable, str(script)],
                env=env,
                capture_output=True,
                timeout=TIMEOUT,
                check=False,
            )
            self.assertEqual(
                result.returncode,
                0,
                f"example failed:\n{code}\n--- stderr:\n{result.stderr.decode(errors='replace')}",
            )
        finally:
            if server is not None:
                server.terminate()
                try:
                    server.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    server.kill()
                    server.wait()
                if server.stderr is not None:
                    server.stderr.close()
