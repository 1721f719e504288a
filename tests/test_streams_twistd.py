# -*- test-case-name: tests.test_streams_twistd -*-
"""
End-to-end test of C{twistd netstructer --handler save:DIR}: a real
C{twistd -n netstructer} process on a free loopback port, sent files by a
blocking link (L{netstructer.blocking.link}), and values, while they travel.

Every wait is bounded by a deadline or a socket timeout, and the server
process is always killed when the test ends.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import time
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from netstructer.blocking import link
from netstructer.errors import StreamRefused, StreamTooLarge
from netstructer.keys import generateKey, writeKeyFile
from tests.test_twistd import (
    START_DEADLINE,
    STOP_DEADLINE,
    TWISTD,
    _environment,
    _freePort,
    _waitForPort,
)

MiB = 1024 * 1024


class SaveHandlerThroughTwistdTests(SynchronousTestCase):
    """
    One C{twistd netstructer --handler save:DIR --max-stream-size 32M}.
    """

    def setUp(self) -> None:
        self.home = Path(self.mktemp()).resolve()
        self.home.mkdir(parents=True)
        self.key = generateKey()
        self.keyFile = self.home / "server.key"
        writeKeyFile(self.keyFile, self.key)
        self.inbox = self.home / "inbox"
        self.port = _freePort()
        self.logPath = self.home / "twistd.log"
        log = open(self.logPath, "wb")  # noqa: SIM115 (closed in cleanup)
        self.addCleanup(log.close)
        self.process = subprocess.Popen(
            [
                *TWISTD,
                "-n",
                "--pidfile=",
                "netstructer",
                "--port",
                str(self.port),
                "--key-file",
                str(self.keyFile),
                "--handler",
                f"save:{self.inbox}",
                "--max-stream-size",
                "32M",
            ],
            env=_environment(self.home),
            cwd=self.home,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        self.addCleanup(self.kill)
        _waitForPort(self.port, self.process, time.monotonic() + START_DEADLINE)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=STOP_DEADLINE)

    def log(self) -> str:
        return self.logPath.read_text(errors="replace")

    def test_saveFiles(self) -> None:
        """
        A file sent is saved under its name with its meta beside it; a
        second one of that name is refused; one over C{--max-stream-size}
        is refused at once; a name with a path in it is saved in the
        directory only; every refusal is logged, and the session goes on.
        """
        data = os.urandom(9 * MiB + 1)
        source = self.home / "report.bin"
        source.write_bytes(data)
        with link(("127.0.0.1", self.port), self.key, timeout=10) as bridge:
            receipt = bridge.sendFile(source, {"name": "report.bin", "owner": "alice"})
            self.assertEqual(receipt.sha256, hashlib.sha256(data).digest())
            self.assertEqual((self.inbox / "report.bin").read_bytes(), data)
            meta = json.loads((self.inbox / "report.bin.meta.json").read_text())
            self.assertEqual(meta, {"name": "report.bin", "owner": "alice"})

            with self.assertRaises(StreamRefused) as refused:
                bridge.sendFile(source)
            self.assertIn("a file of that name exists", str(refused.exception))

            with self.assertRaises(StreamTooLarge) as large:
                bridge.sendStream(io.BytesIO(b"\0" * (33 * MiB)), "large.bin")
            self.assertIn("limit", str(large.exception))

            bridge.sendStream(io.BytesIO(b"escaped?"), {"name": "../../outside.bin"})
        self.assertEqual((self.inbox / "outside.bin").read_bytes(), b"escaped?")
        self.assertFalse((self.home / "outside.bin").exists())
        self.assertEqual(
            sorted(p.name for p in self.inbox.iterdir()),
            ["outside.bin", "outside.bin.meta.json", "report.bin", "report.bin.meta.json"],
        )
        deadline = time.monotonic() + 10
        while "a file of that name exists" not in self.log() and time.monotonic() < deadline:
            time.sleep(0.05)
        log = self.log()
        self.assertIn("Saved report.bin from 127.0.0.1:", log)
        self.assertIn("a file of that name exists", log)
        self.assertIn("over this side's limit of 33554432", log)
