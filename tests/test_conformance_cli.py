# -*- test-case-name: tests.test_conformance_cli -*-
"""
Tests for C{netstructer conformance}: against a real C{twistd netstructer
--handler echo} in each suite, with C{--serve} against the reference
clients and against hand-made misbehaving ones, and its usage errors.
"""

from __future__ import annotations

import io
import json
import os
import select
import socket
import struct
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from netstructer.blocking import link
from netstructer.channel import PROTOCOL_VERSION, Channel, HandshakeCompleted, Role
from netstructer.cli import Streams, parseCommand
from netstructer.conformance._cli import parseEndpoint
from netstructer.errors import NetStructerError
from netstructer.keys import ENVIRONMENT_VARIABLE, writeKeyFile
from tests.test_hostile import REPO, ServerProcess

_DEADLINE = 60.0
_U32 = struct.Struct(">I")


def _environ(home: Path, **more: str) -> dict[str, str]:
    """
    @return: The environment of a child C{netstructer} command: this
        repository on its path, no key from the environment unless given.
    """
    env = {
        name: value
        for name, value in os.environ.items()
        if name not in (ENVIRONMENT_VARIABLE, "XDG_CONFIG_HOME", "PYTHONPATH")
    }
    env.update(HOME=str(home), PYTHONPATH=str(REPO), **more)
    return env


def _command(*arguments: str) -> list[str]:
    return [sys.executable, "-m", "netstructer", "conformance", *arguments]


class _Serving:
    """
    A child C{netstructer conformance --serve 0}.

    @ivar process: The child.
    @ivar port: The port it listens on.
    """

    def __init__(self, home: Path, *arguments: str) -> None:
        self.process = subprocess.Popen(
            _command("--serve", "0", *arguments),
            env=_environ(home),
            cwd=home,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        ready, _, _ = select.select([self.process.stdout], [], [], _DEADLINE)
        if not ready:
            self.process.kill()
            raise AssertionError("conformance --serve printed nothing")
        line = self.process.stdout.readline()
        if not line.startswith("Listening on 127.0.0.1:"):
            self.process.kill()
            raise AssertionError(f"not the listening line: {line!r} {self.finish()}")
        self.port = int(line.rsplit(":", 1)[1])

    def finish(self) -> tuple[int, str, str]:
        """
        @return: The child's exit status, the rest of its output and its
            standard error.
        """
        try:
            out, err = self.process.communicate(timeout=_DEADLINE)
        except subprocess.TimeoutExpired:
            self.process.kill()
            out, err = self.process.communicate()
        return self.process.returncode, out, err


class _Home:
    """
    A temporary directory with a key file of mode 0600.
    """

    def setUpHome(self, case: SynchronousTestCase) -> None:
        directory = tempfile.TemporaryDirectory()
        case.addCleanup(directory.cleanup)
        self.home = Path(directory.name)
        self.keyFile = self.home / "key"
        self.key = writeKeyFile(self.keyFile)
        self.keyFile.chmod(0o600)


class ServerConformanceTests(SynchronousTestCase):
    """
    C{netstructer conformance ENDPOINT} against a real C{twistd netstructer
    --handler echo}.
    """

    def setUp(self) -> None:
        home = _Home()
        home.setUpHome(self)
        self.home, self.keyFile, self.key = home.home, home.keyFile, home.key

    def server(self, *options: str) -> ServerProcess:
        server = ServerProcess(self.home / "server", options, handler="echo", key=self.key)
        self.addCleanup(server.kill)
        return server

    def runJSON(self, *arguments: str, env: dict[str, str] | None = None) -> dict[str, object]:
        done = subprocess.run(
            _command(*arguments, "--json", "--echo", "--deadline", "10"),
            env=env or _environ(self.home),
            cwd=self.home,
            capture_output=True,
            text=True,
            timeout=300,
        )
        self.assertEqual(done.returncode, 0, done.stdout + done.stderr)
        document: dict[str, object] = json.loads(done.stdout)
        return document

    def checkAllPassed(self, document: dict[str, object], suite: str) -> None:
        cases = document["cases"]
        assert isinstance(cases, list)
        self.assertGreater(len(cases), 10)
        for result in cases:
            self.assertIn(result["status"], ("pass", "info"), result)
            self.assertEqual(
                set(result), {"number", "section", "title", "status", "detail"}, result
            )
        passed = [result for result in cases if result["status"] == "pass"]
        self.assertGreater(len(passed), len(cases) // 2)
        target = document["target"]
        assert isinstance(target, dict)
        self.assertEqual(target["suite"], suite)
        self.assertIn("description", target)

    def test_noiseAESGCM(self) -> None:
        """
        Every case passes (or is info) against the noise suite with AESGCM;
        the key comes from C{NETSTRUCTER_KEY} here.
        """
        server = self.server()
        env = _environ(self.home, **{ENVIRONMENT_VARIABLE: self.key.decode("ascii")})
        document = self.runJSON(str(server.port), env=env)
        self.checkAllPassed(document, "noise (AESGCM)")

    def test_noiseChaChaPoly(self) -> None:
        """
        Every case passes (or is info) with C{--cipher ChaChaPoly}.
        """
        server = self.server()
        document = self.runJSON(
            f"127.0.0.1:{server.port}", "--key-file", str(self.keyFile), "--cipher", "ChaChaPoly"
        )
        self.checkAllPassed(document, "noise (ChaChaPoly)")

    def test_fernet(self) -> None:
        """
        Every case passes (or is info) against a C{--suite fernet} server,
        the fernet cases of section 5.3 among the passed ones.
        """
        server = self.server("--suite", "fernet")
        document = self.runJSON(
            f"127.0.0.1:{server.port}", "--key-file", str(self.keyFile), "--suite", "fernet"
        )
        self.checkAllPassed(document, "fernet")
        cases = document["cases"]
        assert isinstance(cases, list)
        fernetCases = [result for result in cases if result["number"].startswith("5.3.")]
        self.assertTrue(fernetCases)
        self.assertTrue(all(result["status"] == "pass" for result in fernetCases), fernetCases)

    def test_text(self) -> None:
        """
        Without C{--json} the command prints a table: a heading, one line
        per case with its status, the details under them, and the summary.
        """
        server = self.server()
        done = subprocess.run(
            _command(
                str(server.port),
                *("--key-file", str(self.keyFile), "--case", "4.3.1", "--case", "4.3.4"),
            ),
            env=_environ(self.home),
            cwd=self.home,
            capture_output=True,
            text=True,
            timeout=120,
        )
        self.assertEqual(done.returncode, 0, done.stdout + done.stderr)
        lines = done.stdout.splitlines()
        self.assertIn("the server at 127.0.0.1:", lines[0])
        self.assertTrue(lines[1].startswith("Case"), lines)
        caseLines = [line for line in lines if line.startswith("4.3.")]
        self.assertEqual([line.split()[0] for line in caseLines], ["4.3.1", "4.3.4"], lines)
        for line in caseLines:
            self.assertEqual(line.split()[1:3], ["4.3", "PASS"], line)
        self.assertEqual(lines[-1], "2 passed, 0 failed, 0 info")

    def test_fails(self) -> None:
        """
        A case that fails makes the exit status 1: against a noise server,
        the fernet cases' handshakes are refused.
        """
        server = self.server()
        done = subprocess.run(
            _command(
                str(server.port),
                "--key-file",
                str(self.keyFile),
                "--suite",
                "fernet",
                "--case",
                "5.3.1",
                "--deadline",
                "5",
                "--json",
            ),
            env=_environ(self.home),
            cwd=self.home,
            capture_output=True,
            text=True,
            timeout=120,
        )
        self.assertEqual(done.returncode, 1, done.stdout + done.stderr)
        document = json.loads(done.stdout)
        self.assertEqual([result["status"] for result in document["cases"]], ["fail"])


class _RawClient(threading.Thread):
    """
    A hand-made client on a socket thread: a well-formed handshake and one
    value, then one misbehaviour.

    @ivar mode: C{"silent"} (never answers the kit's CLOSE),
        C{"lingering"} (answers it but keeps the connection open),
        C{"version1"} (a well-formed version 1 client: not its highest
        version) or C{"early"} (a VALUE record before CONFIRM).
    """

    def __init__(self, port: int, key: bytes, mode: str) -> None:
        super().__init__(daemon=True)
        self.port, self.key, self.mode = port, key, mode
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self._run()
        except (OSError, NetStructerError) as e:
            self.error = e

    def _send(self, sock: socket.socket, frames: list[bytes]) -> None:
        sock.sendall(b"".join(_U32.pack(len(f)) + f for f in frames))

    def _receive(self, sock: socket.socket) -> bytes | None:
        data = b""
        while len(data) < 4:
            chunk = sock.recv(4 - len(data))
            if not chunk:
                return None
            data += chunk
        (length,) = _U32.unpack(data)
        data = b""
        while len(data) < length:
            chunk = sock.recv(length - len(data))
            if not chunk:
                return None
            data += chunk
        return data

    def _run(self) -> None:
        version = 1 if self.mode == "version1" else PROTOCOL_VERSION
        channel = Channel(Role.CLIENT, self.key, protocolVersion=version)
        with socket.create_connection(("127.0.0.1", self.port), timeout=_DEADLINE) as sock:
            self._send(sock, channel.framesToSend())
            reply = self._receive(sock)
            assert reply is not None
            assert isinstance(channel.receiveFrame(reply), HandshakeCompleted)
            confirm = channel.framesToSend()
            value = channel.sendValue("hello")
            if self.mode == "early":
                self._send(sock, [value, *confirm])
            else:
                self._send(sock, [*confirm, value])
            while True:
                incoming = self._receive(sock)
                if incoming is None:
                    return
                if self.mode == "silent":
                    continue
                channel.receiveFrame(incoming)
                self._send(sock, channel.framesToSend())
                if self.mode == "lingering":
                    continue
                return


class ServeTests(SynchronousTestCase):
    """
    C{netstructer conformance --serve 0} against the reference clients and
    against misbehaving ones.
    """

    def setUp(self) -> None:
        home = _Home()
        home.setUpHome(self)
        self.home, self.keyFile, self.key = home.home, home.keyFile, home.key

    def serve(self, *arguments: str) -> _Serving:
        serving = _Serving(self.home, "--key-file", str(self.keyFile), "--json", *arguments)
        self.addCleanup(lambda: serving.process.poll() is None and serving.process.kill())
        return serving

    def results(self, serving: _Serving, expected: int) -> dict[str, tuple[str, str]]:
        code, out, err = serving.finish()
        self.assertEqual(code, expected, out + err)
        document = json.loads(out)
        self.assertEqual(document["target"]["mode"], "client")
        self.assertEqual(document["target"]["port"], serving.port)
        return {r["number"]: (r["status"], r["detail"]) for r in document["cases"]}

    def checkPassed(self, results: dict[str, tuple[str, str]], info: tuple[str, ...] = ()) -> None:
        self.assertEqual(sorted(results), ["4.2.1", "4.2.2", "4.4.1", "5.4.1", "5.6.1", "5.6.2"])
        for number, (status, detail) in results.items():
            self.assertEqual(status, "info" if number in info else "pass", (number, detail))

    def blockingClient(self, suite: str) -> None:
        serving = self.serve()
        session = link(("127.0.0.1", serving.port), self.key, timeout=_DEADLINE, suite=suite)
        try:
            session.sendBuffer(["one value", 1, {b"k": (True, None)}])
            try:
                session.recvBuffer()
            except NetStructerError:
                # SessionClosed: the kit closes after the value.
                pass
        finally:
            session.close()
        results = self.results(serving, 0)
        self.checkPassed(results)
        self.assertIn("code 1", results["5.6.1"][1])

    def test_blockingNoise(self) -> None:
        """
        The blocking client in the noise suite passes every client case,
        answering the kit's CLOSE and then ending the transport.
        """
        self.blockingClient("noise")

    def test_blockingFernet(self) -> None:
        """
        The blocking client in the fernet suite passes every client case.
        """
        self.blockingClient("fernet")

    def test_twistedClient(self) -> None:
        """
        The Twisted client (C{netstructer send}) passes: it closes first
        after its values, so 5.6.1 (answering the kit's CLOSE) is info.
        """
        serving = self.serve()
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "netstructer",
                "send",
                f"127.0.0.1:{serving.port}",
                "['hi', 128, {b'gg': 'gg'}]",
                "--key-file",
                str(self.keyFile),
            ],
            env=_environ(self.home),
            cwd=self.home,
            capture_output=True,
            text=True,
            timeout=_DEADLINE,
        )
        self.assertEqual(done.returncode, 0, done.stderr)
        results = self.results(serving, 0)
        self.checkPassed(results, info=("5.6.1",))

    def rawClient(self, mode: str, *arguments: str) -> dict[str, tuple[str, str]]:
        serving = self.serve("--deadline", "2", *arguments)
        client = _RawClient(serving.port, self.key, mode)
        client.start()
        results = self.results(serving, 1)
        client.join(_DEADLINE)
        self.assertFalse(client.is_alive())
        return results

    def test_silentClient(self) -> None:
        """
        A client that never answers the kit's CLOSE fails 5.6.1, and the
        command exits with status 1.
        """
        results = self.rawClient("silent")
        self.assertEqual(results["5.6.1"][0], "fail")
        self.assertIn("nothing arrived within the deadline", results["5.6.1"][1])
        self.assertEqual(results["5.6.2"][0], "info")
        for number in ("4.2.1", "4.2.2", "4.4.1", "5.4.1"):
            self.assertEqual(results[number][0], "pass", results[number])

    def test_lingeringClient(self) -> None:
        """
        A client that answers CLOSE but keeps the transport open fails
        5.6.2.
        """
        results = self.rawClient("lingering")
        self.assertEqual(results["5.6.1"][0], "pass", results["5.6.1"])
        self.assertEqual(results["5.6.2"][0], "fail")
        self.assertIn("kept the connection open", results["5.6.2"][1])

    def test_version1Client(self) -> None:
        """
        A hello of version 1 from a client whose highest is 3 fails 4.2.1;
        the session itself goes on.
        """
        results = self.rawClient("version1")
        self.assertEqual(results["4.2.1"][0], "fail")
        self.assertIn(f"version byte 1, not {PROTOCOL_VERSION}", results["4.2.1"][1])
        self.assertEqual(results["4.4.1"][0], "pass")

    def test_earlyValue(self) -> None:
        """
        A VALUE record before CONFIRM fails 4.4.1, and the later cases are
        not reached (info); C{--case 4.4} reports only that one.
        """
        results = self.rawClient("early", "--case", "4.4")
        self.assertEqual(list(results), ["4.4.1"])
        self.assertEqual(results["4.4.1"][0], "fail")
        self.assertIn("the client's first record", results["4.4.1"][1])

    def test_noClient(self) -> None:
        """
        When no client connects within the deadline, 4.2.1 fails.
        """
        serving = self.serve("--deadline", "0.5")
        results = self.results(serving, 1)
        self.assertEqual(results["4.2.1"][0], "fail")
        self.assertIn("no client connected", results["4.2.1"][1])
        self.assertEqual(results["5.6.2"][0], "info")


class UsageTests(SynchronousTestCase):
    """
    Usage errors exit with status 2 and one line saying what to do.
    """

    def setUp(self) -> None:
        home = _Home()
        home.setUpHome(self)
        self.home, self.keyFile = home.home, home.keyFile

    def usage(self, *arguments: str, environ: dict[str, str] | None = None) -> str:
        err = io.StringIO()
        streams = Streams(
            stdin=io.StringIO(),
            stdout=io.StringIO(),
            stderr=err,
            environ=environ if environ is not None else {"HOME": str(self.home)},
        )
        # argparse writes its errors to the process's standard error.
        self.patch(sys, "stderr", err)
        code = parseCommand(["conformance", *arguments], streams)
        self.assertEqual(code, 2, err.getvalue())
        message = err.getvalue()
        self.assertTrue(message.startswith("netstructer: error: "), message)
        self.assertEqual(message.count("\n"), 1, message)
        return message

    def test_badEndpoint(self) -> None:
        """
        An ENDPOINT that is not host:port, [::1]:port or a port.
        """
        for endpoint in ("nowhere", "127.0.0.1:", "[::1]5000", "127.0.0.1:70000", "0"):
            message = self.usage(endpoint, "--key-file", str(self.keyFile))
            self.assertIn("ENDPOINT", message)

    def test_missingKeyFile(self) -> None:
        """
        A key file that does not exist is named.
        """
        missing = self.home / "missing.key"
        message = self.usage("5000", "--key-file", str(missing))
        self.assertIn(str(missing), message)

    def test_keyFileReadableByOthers(self) -> None:
        """
        A key file readable by others is refused, as by the other commands.
        """
        self.keyFile.chmod(0o644)
        message = self.usage("5000", "--key-file", str(self.keyFile))
        self.assertIn(str(self.keyFile), message)

    def test_noKey(self) -> None:
        """
        Without C{--key-file}, C{NETSTRUCTER_KEY} or the default key file,
        the message says how to give the key.
        """
        message = self.usage("5000")
        self.assertIn("--key-file", message)
        self.assertIn(ENVIRONMENT_VARIABLE, message)

    def test_badEnvironmentKey(self) -> None:
        """
        A malformed C{NETSTRUCTER_KEY}.
        """
        self.usage("5000", environ={"HOME": str(self.home), ENVIRONMENT_VARIABLE: "nope"})

    def test_endpointAndServe(self) -> None:
        """
        ENDPOINT and C{--serve} together, or neither.
        """
        self.assertIn("--serve", self.usage("5000", "--serve", "0", "--key-file", "k"))
        self.assertIn("--serve", self.usage("--key-file", "k"))

    def test_badServePortOrDeadline(self) -> None:
        """
        A C{--serve} that is not a port, a C{--deadline} that is not
        positive.
        """
        self.assertIn("--serve", self.usage("--serve", "x"))
        self.assertIn("--deadline", self.usage("5000", "--deadline", "0"))

    def test_unknownCase(self) -> None:
        """
        A C{--case} naming no case lists the cases.
        """
        message = self.usage("5000", "--key-file", str(self.keyFile), "--case", "9.9")
        self.assertIn("4.3.1", message)
        message = self.usage("--serve", "0", "--key-file", str(self.keyFile), "--case", "4.3")
        self.assertIn("5.6.2", message)

    def test_parseEndpoint(self) -> None:
        """
        The three forms of ENDPOINT.
        """
        self.assertEqual(parseEndpoint("5000"), ("127.0.0.1", 5000))
        self.assertEqual(parseEndpoint("example.org:80"), ("example.org", 80))
        self.assertEqual(parseEndpoint("[::1]:5000"), ("::1", 5000))
