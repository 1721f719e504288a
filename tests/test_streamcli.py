# -*- test-case-name: tests.test_streamcli -*-
"""
Tests for L{netstructer.streamcli}: C{netstructer send-file} and C{netstructer
listen --save-dir}.

The progress display and the arguments are tested in memory; the commands
run with L{Command.run} on the reactor trial runs, against a server on
127.0.0.1; and the last test runs both as programs, killing the sender with
SIGKILL in the middle of a transfer and resuming it.
"""

from __future__ import annotations

import hashlib
import io
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from twisted.trial.unittest import SynchronousTestCase, TestCase

from netstructer import cli, streamcli
from netstructer.handlers import SaveHandler
from netstructer.keys import ENVIRONMENT_VARIABLE, generateKey
from netstructer.server import Server
from netstructer.streams.files import PART_SUFFIX

REPO = Path(__file__).resolve().parent.parent
MiB = 1024 * 1024


def _streams(environ: dict[str, str]) -> cli.Streams:
    return cli.Streams(io.StringIO(), io.StringIO(), io.StringIO(), environ)


class FakeClock:
    """
    A clock a test moves.
    """

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class ProgressTests(SynchronousTestCase):
    """
    L{streamcli.TransferProgress}.
    """

    def test_plainLines(self) -> None:
        """
        Not on a terminal, a plain line a second: bytes, percentage, rate,
        ETA.
        """
        out, clock = io.StringIO(), FakeClock()
        progress = streamcli.TransferProgress(out, "f.bin", clock, terminal=False)
        progress.update(0, 10 * MiB)
        clock.now += 0.5
        progress.update(MiB, 10 * MiB)
        self.assertEqual(out.getvalue(), "")
        clock.now += 0.5
        progress.update(2 * MiB, 10 * MiB)
        self.assertEqual(out.getvalue(), "f.bin: 2.0 MiB of 10.0 MiB (20%), 2.0 MiB/s, ETA 0:04\n")
        progress.finish()
        self.assertTrue(out.getvalue().endswith("\n"))

    def test_bar(self) -> None:
        """
        On a terminal, a bar redrawn in place, cleared at the end.
        """
        out, clock = io.StringIO(), FakeClock()
        progress = streamcli.TransferProgress(out, "f.bin", clock, terminal=True)
        progress.update(0, 4 * MiB)
        clock.now += 1
        progress.update(2 * MiB, 4 * MiB)
        self.assertIn("\r\x1b[K[############------------] f.bin: 2.0 MiB", out.getvalue())
        progress.finish()
        self.assertTrue(out.getvalue().endswith("\r\x1b[K"))

    def test_unknownSize(self) -> None:
        """
        Without a size, no percentage and no ETA.
        """
        clock = FakeClock()
        progress = streamcli.TransferProgress(io.StringIO(), "x", clock, terminal=False)
        progress.update(0, None)
        clock.now += 2
        self.assertEqual(progress.line(3 * 1024, None), "x: 3.0 KiB, 1.5 KiB/s")

    def test_fileMeta(self) -> None:
        """
        The meta sent with a file holds its name and C{--meta}.
        """
        self.assertEqual(streamcli.fileMeta("/a/b.bin", None), {"name": "b.bin"})
        self.assertEqual(streamcli.fileMeta("b.bin", {"k": 1}), {"name": "b.bin", "k": 1})
        self.assertEqual(streamcli.fileMeta("b.bin", [1]), {"name": "b.bin", "meta": [1]})


class ArgumentTests(SynchronousTestCase):
    """
    The arguments of C{send-file} and C{listen --save-dir}.
    """

    def setUp(self) -> None:
        self.home = Path(self.mktemp()).resolve()
        self.home.mkdir(parents=True)
        self.environ = {"HOME": str(self.home), ENVIRONMENT_VARIABLE: generateKey().decode()}

    def parse(self, *argv: str) -> tuple[object, str]:
        streams = _streams(self.environ)
        result = cli.parseCommand(list(argv), streams)
        return result, streams.stderr.getvalue()  # type: ignore[attr-defined]

    def test_badMeta(self) -> None:
        """
        A C{--meta} that is not a literal is a command-line error.
        """
        stderr = io.StringIO()
        self.patch(sys, "stderr", stderr)
        result, _ = self.parse("send-file", "5000", __file__, "--meta", "not a literal")
        self.assertEqual(result, 2)
        self.assertIn("is not a Python literal", stderr.getvalue())

    def test_missingFile(self) -> None:
        """
        A FILE that is not a file is a one-line user error.
        """
        result, err = self.parse("send-file", "5000", str(self.home / "nope"))
        self.assertEqual(result, 1)
        self.assertIn("is not a file that can be sent", err)

    def test_listenSaveDir(self) -> None:
        """
        C{listen --save-dir} takes the directory, C{--overwrite} and
        C{--max-stream-size}.
        """
        result, err = self.parse(
            "listen", "0", "--save-dir", "d", "--overwrite", "--max-stream-size", "2G"
        )
        self.assertEqual(err, "")
        args = result.args  # type: ignore[attr-defined]
        self.assertEqual((args.save_dir, args.overwrite), ("d", True))
        self.assertEqual(streamcli.listenOptions(args), {"maxStreamSize": 2 * 1024**3})


class CommandTests(TestCase):
    """
    C{send-file} and C{listen --save-dir} run on the reactor.
    """

    timeout = 60

    def setUp(self) -> None:
        from twisted.internet import reactor

        self.reactor: Any = reactor
        self.home = Path(self.mktemp()).resolve()
        self.home.mkdir(parents=True)
        self.key = generateKey()
        self.environ = {"HOME": str(self.home), ENVIRONMENT_VARIABLE: self.key.decode()}
        self.addCleanup(self._stopDisk)

    def _stopDisk(self) -> None:
        from netstructer.streaming.disk import diskIOFor

        diskIOFor(self.reactor).stop()

    async def command(self, *argv: str) -> tuple[int, str, str]:
        streams = _streams(self.environ)
        command = cli.parseCommand(list(argv), streams)
        if isinstance(command, int):
            return command, streams.stdout.getvalue(), streams.stderr.getvalue()  # type: ignore[attr-defined]
        code = await command.run(self.reactor)
        return code, streams.stdout.getvalue(), streams.stderr.getvalue()  # type: ignore[attr-defined]

    async def test_sendFileToSaveHandler(self) -> None:
        """
        C{send-file} sends a file to a C{save:} handler and prints its
        confirmation; sending it again is refused on one line (exit 1), the
        session closed cleanly.
        """
        inbox = self.home / "in"
        server = Server(
            "tcp:0:interface=127.0.0.1", self.key, SaveHandler(inbox), reactor=self.reactor
        )
        port = (await server.listen()).getHost().port
        server.startService()
        self.addCleanup(server.stopService)
        data = os.urandom(3 * MiB)
        source = self.home / "data.bin"
        source.write_bytes(data)
        code, out, err = await self.command(
            "send-file", str(port), str(source), "--meta", "{'kind': 'test'}"
        )
        self.assertEqual((code, err), (0, ""))
        self.assertIn(f"sent data.bin: {len(data)} bytes, SHA-256 ", out)
        self.assertIn(hashlib.sha256(data).hexdigest(), out)
        self.assertEqual((inbox / "data.bin").read_bytes(), data)
        self.assertIn('"kind": "test"', (inbox / "data.bin.meta.json").read_text())
        code, out, err = await self.command("send-file", str(port), str(source))
        self.assertEqual(code, 1)
        self.assertEqual(len(err.splitlines()), 1, err)
        self.assertIn("a file of that name exists at the receiver", err)

    async def test_listenSaveDir(self) -> None:
        """
        C{listen --save-dir} keeps what C{send-file} sends, and says so.
        """
        streams = _streams(self.environ)
        listen = cli.parseCommand(
            ["listen", "tcp:0:interface=127.0.0.1", "--save-dir", str(self.home / "in")], streams
        )
        assert isinstance(listen, cli.Command)
        running = listen.run(self.reactor)
        port = (await listen.listening).getHost().port  # type: ignore[attr-defined]
        source = self.home / "x.bin"
        source.write_bytes(b"x" * 100_000)
        code, _, err = await self.command("send-file", str(port), str(source))
        self.assertEqual((code, err), (0, ""))
        await listen.stop()  # type: ignore[attr-defined]
        self.assertEqual(await running, 0)
        self.assertEqual((self.home / "in" / "x.bin").read_bytes(), b"x" * 100_000)
        said = streams.stderr.getvalue()  # type: ignore[attr-defined]
        self.assertIn("sends x.bin (100000 bytes)", said)
        self.assertIn("saved ", said)


class Child:
    """
    A child process whose standard error is read line by line with a
    deadline (unbuffered, so that no line waits where C{select} cannot see).
    """

    def __init__(self, argv: list[str], environ: dict[str, str], cwd: Path) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "netstructer", *argv],
            cwd=cwd,
            env=environ,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            bufsize=0,
        )
        self._pending = b""

    def readLine(self, deadline: float) -> str:
        stderr = self.process.stderr
        assert stderr is not None
        while b"\n" not in self._pending:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no line in time: {self._pending!r}")
            ready, _, _ = select.select([stderr], [], [], remaining)
            if ready:
                data = os.read(stderr.fileno(), 65536)
                if not data:
                    raise AssertionError(f"the child ended: {self._pending!r}")
                self._pending += data
        line, self._pending = self._pending.split(b"\n", 1)
        return line.decode().strip()

    def waitFor(self, fragment: str, deadline: float) -> str:
        """
        @return: The first line holding C{fragment}.
        """
        while True:
            line = self.readLine(deadline)
            if fragment in line:
                return line

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.communicate(timeout=10)


class ResumeAfterKillTests(SynchronousTestCase):
    """
    C{send-file --resume} after the sender was killed mid-transfer.
    """

    def test_resumeAfterSIGKILL(self) -> None:
        """
        A sender killed with SIGKILL leaves its part at the receiver (and
        nothing under the file's name); C{send-file --resume} goes on from
        it, checked by SHA-256, and the file arrives whole.
        """
        home = Path(self.mktemp()).resolve()
        home.mkdir(parents=True)
        environ = {
            "PATH": os.environ.get("PATH", ""),
            "HOME": str(home),
            "PYTHONPATH": str(REPO),
            ENVIRONMENT_VARIABLE: generateKey().decode(),
        }
        data = os.urandom(24 * MiB)
        (home / "big.bin").write_bytes(data)
        deadline = time.monotonic() + 60
        listen = Child(["listen", "tcp:0:interface=127.0.0.1", "--save-dir", "in"], environ, home)
        self.addCleanup(listen.kill)
        where = listen.waitFor("listening on", deadline).split("listening on ")[1].split()[0]
        sender = Child(["send-file", where, "big.bin", "--limit-rate", "4M"], environ, home)
        self.addCleanup(sender.kill)
        while True:
            line = sender.waitFor("MiB of 24.0 MiB", deadline)
            if float(line.split(": ")[1].split()[0]) >= 4:
                break
        os.kill(sender.process.pid, signal.SIGKILL)
        said = listen.waitFor("was interrupted after", deadline)
        kept = int(said.split("was interrupted after ")[1].split()[0])
        part = home / "in" / f".big.bin{PART_SUFFIX}"
        self.assertEqual(part.stat().st_size, kept)
        self.assertGreater(kept, 0)
        self.assertFalse((home / "in" / "big.bin").exists())
        resumed = subprocess.run(
            [sys.executable, "-m", "netstructer", "send-file", where, "big.bin", "--resume"],
            cwd=home,
            env=environ,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        self.assertEqual(resumed.returncode, 0, resumed.stderr)
        self.assertIn(f"(resumed at {kept} bytes)", resumed.stdout)
        self.assertEqual((home / "in" / "big.bin").read_bytes(), data)
        self.assertFalse(part.exists())
