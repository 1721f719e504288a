# -*- test-case-name: tests.test_cli -*-
"""
Tests for L{netstructer.cli}, the C{netstructer} command.

Argument handling, C{keygen} and value parsing run in memory.  The commands
that talk (C{send}, C{listen}, C{bench}) are run with L{Command.run} on the
reactor trial runs, against servers on 127.0.0.1 port 0, with timeouts; the
last tests run C{python -m netstructer} as a subprocess.
"""

from __future__ import annotations

import io
import os
import socket
import stat
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

from twisted.internet import defer
from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase, TestCase

import netstructer
from netstructer import cli, tap
from netstructer._version import versionLine
from netstructer.client import connect
from netstructer.handlers import EchoHandler
from netstructer.keys import (
    ENVIRONMENT_VARIABLE,
    Keyring,
    generateKey,
    parseKey,
    readKeyFile,
    writeKeyFile,
)
from netstructer.server import Server
from tests.test_tap import makeCertificates

REPO = Path(__file__).resolve().parent.parent

EXAMPLE = "['hi im haytam', 128, {b'gg': 'gg'}, {1, 2, 6, 4}, (False, True)]"


def _streams(environ: dict[str, str], stdin: str = "") -> cli.Streams:
    """
    @return: In-memory streams and the given environment.
    """
    return cli.Streams(io.StringIO(stdin), io.StringIO(), io.StringIO(), environ)


def _output(streams: cli.Streams) -> tuple[str, str]:
    """
    @return: What was written to standard output and standard error.
    """
    out, err = streams.stdout, streams.stderr
    assert isinstance(out, io.StringIO) and isinstance(err, io.StringIO)
    return out.getvalue(), err.getvalue()


def _freePort() -> int:
    """
    @return: A TCP port on 127.0.0.1 that nothing listens on (just now).
    """
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


class _CommandLineTests(SynchronousTestCase):
    """
    Runs L{cli.parseCommand} and L{cli.main} in a temporary home directory.
    """

    def setUp(self) -> None:
        """
        Make the home directory and capture the process's streams.
        """
        self.home = Path(self.mktemp()).resolve()
        self.home.mkdir(parents=True)
        self.environ: dict[str, str] = {"HOME": str(self.home)}
        self.key = generateKey()
        self.keyFile = self.home / "key"
        writeKeyFile(self.keyFile, self.key)

    def parse(self, *argv: str, stdin: str = "") -> tuple[cli.Command | int, str, str]:
        """
        Parse a command line.

        @return: What L{cli.parseCommand} returned, and its output and error
            output.
        """
        streams = _streams(self.environ, stdin)
        result = cli.parseCommand(list(argv), streams)
        out, err = _output(streams)
        return result, out, err

    def main(self, *argv: str) -> tuple[int, str, str]:
        """
        Run L{cli.main} with the process's streams captured.

        @return: The exit status, output and error output.
        """
        out, err = io.StringIO(), io.StringIO()
        self.patch(sys, "stdout", out)
        self.patch(sys, "stderr", err)
        self.patch(os, "environ", self.environ)
        code = cli.main(list(argv))
        return code, out.getvalue(), err.getvalue()

    def assertOneLineError(self, err: str, *fragments: str) -> None:
        """
        Assert that C{err} is one C{netstructer: error:} line holding every
        fragment, and no traceback.
        """
        lines = err.splitlines()
        self.assertEqual(len(lines), 1, err)
        self.assertTrue(lines[0].startswith("netstructer: error: "), err)
        for fragment in fragments:
            self.assertIn(fragment, lines[0])


class KeygenTests(_CommandLineTests):
    """
    Tests for C{netstructer keygen}.
    """

    def test_stdout(self) -> None:
        """
        Without C{-o}, the key is the only line of output.
        """
        code, out, err = self.main("keygen")
        self.assertEqual((code, err), (0, ""))
        [line] = out.splitlines()
        parseKey(line)

    def test_file(self) -> None:
        """
        C{-o FILE} writes a new key file with mode 0600 and prints nothing
        but a note naming it on standard error.
        """
        path = self.home / "new" / "server.key"
        code, out, err = self.main("keygen", "-o", str(path))
        self.assertEqual((code, out), (0, ""))
        self.assertIn(str(path), err)
        self.assertEqual(stat.S_IMODE(path.stat().st_mode), 0o600)
        self.assertEqual(len(readKeyFile(path)), 1)

    def test_refusesToOverwrite(self) -> None:
        """
        An existing file is left alone unless C{--force} is given.
        """
        before = self.keyFile.read_bytes()
        code, _, err = self.main("keygen", "-o", str(self.keyFile))
        self.assertEqual(code, 1)
        self.assertOneLineError(err, str(self.keyFile), "--force")
        self.assertEqual(self.keyFile.read_bytes(), before)
        code, _, _ = self.main("keygen", "-o", str(self.keyFile), "--force")
        self.assertEqual(code, 0)
        self.assertNotEqual(readKeyFile(self.keyFile), Keyring([self.key]))
        self.assertEqual(stat.S_IMODE(self.keyFile.stat().st_mode), 0o600)

    def test_namedStdout(self) -> None:
        """
        C{--name} without C{-o} prints C{"NAME <key>"}, the line for both the
        client's and the server's key file, and a note saying so.
        """
        code, out, err = self.main("keygen", "--name", "alice")
        self.assertEqual(code, 0)
        [line] = out.splitlines()
        name, key = line.split(" ")
        self.assertEqual(name, "alice")
        parseKey(key)
        self.assertIn("server's key file", err)
        self.assertNotIn(key, err)

    def test_namedFile(self) -> None:
        """
        C{--name} with C{-o FILE} writes the client's key file holding
        C{"NAME <key>"} and prints that line, to add on the server.
        """
        path = self.home / "alice.key"
        code, out, err = self.main("keygen", "--name", "alice", "-o", str(path))
        self.assertEqual(code, 0)
        ring = readKeyFile(path)
        self.assertEqual(ring.names(), ("alice",))
        [line] = out.splitlines()
        self.assertIn(line.encode("ascii"), path.read_bytes())
        self.assertIn(ring.keyIDs()[0], err)
        self.assertIn("SIGHUP", err)

    def test_badName(self) -> None:
        """
        An invalid name is a one-line error and writes nothing.
        """
        code, out, err = self.main("keygen", "--name", "10.0.0.5")
        self.assertEqual((code, out), (1, ""))
        self.assertOneLineError(err, "--name", "IP address")

    def test_forceNeedsOutput(self) -> None:
        """
        C{--force} without C{-o} is an error.
        """
        code, out, err = self.main("keygen", "--force")
        self.assertEqual((code, out), (1, ""))
        self.assertOneLineError(err, "--force")


class ArgumentTests(_CommandLineTests):
    """
    Tests for command-line errors and value parsing.
    """

    def test_noCommand(self) -> None:
        """
        A command is required; the error is one line, with exit status 2.
        """
        code, out, err = self.main()
        self.assertEqual((code, out), (2, ""))
        self.assertOneLineError(err, "COMMAND", "netstructer --help")

    def test_help(self) -> None:
        """
        C{--help} prints the usage and exits 0.
        """
        code, out, _ = self.main("send", "--help")
        self.assertEqual(code, 0)
        self.assertIn("--reply", out)

    def test_version(self) -> None:
        """
        C{--version} prints C{netstructer} and the version, as C{twistd
        netstructer --version} does, and exits 0.
        """
        code, out, _ = self.main("--version")
        self.assertEqual((code, out), (0, f"netstructer {netstructer.__version__}\n"))
        self.assertEqual(out.strip(), versionLine())

    def test_commandNames(self) -> None:
        """
        L{cli.commandNames} lists every subcommand, and each one's C{--help}
        exits 0 with its usage.
        """
        names = cli.commandNames()
        self.assertEqual(
            sorted(names),
            ["bench", "cluster", "conformance", "keygen", "listen", "send", "send-file", "status"],
        )
        for name in names:
            code, out, err = self.main(name, "--help")
            self.assertEqual((code, err), (0, ""), name)
            self.assertTrue(out.startswith(f"usage: netstructer {name}"), out)

    def test_sendArguments(self) -> None:
        """
        C{send} needs an endpoint and a value; a bad option value names the
        option.
        """
        for argv, fragment in [
            (["send"], "ENDPOINT"),
            (["send", "127.0.0.1:5000"], "VALUE"),
            (["send", "127.0.0.1:5000", "1", "--timeout", "0"], "--timeout"),
            (["send", "127.0.0.1:5000", "1", "--suite", "rot13"], "--suite"),
            (["send", "127.0.0.1:5000", "1", "--max-buffer-size", "3G"], "--max-buffer-size"),
            (["listen"], "ENDPOINT"),
            (["bench", "--duration", "-1"], "--duration"),
            (["bench", "--count", "0"], "--count"),
        ]:
            code, out, err = self.main(*argv)
            self.assertEqual((code, out), (2, ""), argv)
            self.assertOneLineError(err, fragment)

    def test_benchPeersNoEndpoint(self) -> None:
        """
        C{bench --peers} starts its own servers: an endpoint is a one-line
        error, with exit status 1.
        """
        result, out, err = self.parse("bench", "--peers", "127.0.0.1:5000")
        self.assertEqual((result, out), (1, ""))
        self.assertOneLineError(err, "--peers", "ENDPOINT")

    def test_notALiteral(self) -> None:
        """
        A value that is not a Python literal is a one-line error naming it,
        with exit status 1; a bare word gets the quoting hint.
        """
        for value, fragments in [
            ("hello", ["'hello'", "quote it"]),
            ("[1, 2", ["'[1, 2'"]),
            ("__import__('os')", ["__import__"]),
        ]:
            result, out, err = self.parse("send", "127.0.0.1:5000", value)
            self.assertEqual((result, out), (1, ""))
            self.assertOneLineError(err, "not a Python literal", *fragments)

    def test_whichValue(self) -> None:
        """
        With several values, the error says which one is wrong.
        """
        result, _, err = self.parse("send", "127.0.0.1:5000", "1", "two")
        self.assertEqual(result, 1)
        self.assertOneLineError(err, "VALUE 2")

    def test_literals(self) -> None:
        """
        Values are parsed as Python literals, C{-} standing for the lines
        of standard input (blank lines skipped), in order.
        """
        result, _, err = self.parse(
            "send",
            "127.0.0.1:5000",
            EXAMPLE,
            "-",
            "b'\\x00'",
            "--key-file",
            str(self.keyFile),
            stdin="1\n\n  'two'  \n{3: None}\n",
        )
        self.assertEqual(err, "")
        assert isinstance(result, cli._SendCommand)
        self.assertEqual(
            result.values,
            [
                ["hi im haytam", 128, {b"gg": "gg"}, {1, 2, 6, 4}, (False, True)],
                1,
                "two",
                {3: None},
                b"\x00",
            ],
        )

    def test_stdinLineError(self) -> None:
        """
        A bad line of standard input is named by its number.
        """
        result, _, err = self.parse("send", "127.0.0.1:5000", "-", stdin="1\n\nnope(\n")
        self.assertEqual(result, 1)
        self.assertOneLineError(err, "stdin line 3")

    def test_exampleValue(self) -> None:
        """
        The example value survives its own C{repr}.
        """
        self.assertEqual(cli.parseLiteral(repr(cli.EXAMPLE_VALUE)), cli.EXAMPLE_VALUE)

    def test_noKey(self) -> None:
        """
        Without C{--key-file}, C{NETSTRUCTER_KEY} or a default key file,
        C{send} says how to get a key, and creates none.
        """
        result, _, err = self.parse("send", "127.0.0.1:5000", "1")
        self.assertEqual(result, 1)
        self.assertOneLineError(err, "--key-file", ENVIRONMENT_VARIABLE, "netstructer keygen")
        self.assertFalse((self.home / ".config").exists())

    def test_badKeyFile(self) -> None:
        """
        A group-readable key file is refused with the fix.
        """
        os.chmod(self.keyFile, 0o640)
        result, _, err = self.parse("send", "1.2.3.4:5", "1", "-k", str(self.keyFile))
        self.assertEqual(result, 1)
        self.assertOneLineError(err, f"chmod 600 {self.keyFile}")

    def test_environmentKey(self) -> None:
        """
        C{NETSTRUCTER_KEY} is used when there is no C{--key-file}.
        """
        self.environ[ENVIRONMENT_VARIABLE] = self.key.decode("ascii")
        result, _, _ = self.parse("send", "127.0.0.1:5000", "1")
        assert isinstance(result, cli._SendCommand)
        self.assertEqual(result.keyring, Keyring([self.key]))

    def test_badEndpoint(self) -> None:
        """
        An endpoint that does not parse is a one-line error naming it.
        """
        result, _, _ = self.parse("send", "carrier-pigeon:coop=1", "1", "-k", str(self.keyFile))
        assert isinstance(result, cli.Command)
        streams = result.streams
        code = self.successResultOf(result.run(MemoryReactorClock()))
        self.assertEqual(code, 1)
        self.assertOneLineError(_output(streams)[1], "carrier-pigeon:coop=1")

    def test_listenBadPort(self) -> None:
        """
        C{listen} refuses a port number out of range.
        """
        result, _, err = self.parse("listen", "70000")
        self.assertEqual(result, 1)
        self.assertOneLineError(err, "70000")

    def test_percentile(self) -> None:
        """
        Percentiles are nearest-rank.
        """
        samples = [float(n) for n in range(1, 101)]
        self.assertEqual(
            [cli._percentile(samples, f) for f in (0.5, 0.9, 0.99, 1.0)],
            [50.0, 90.0, 99.0, 100.0],
        )
        self.assertEqual(cli._percentile([7.0], 0.99), 7.0)


class _RecordingHandler:
    """
    A handler that keeps the values it receives and never replies.
    """

    def __init__(self) -> None:
        self.values: list[object] = []

    def bufferReceived(self, session: Any, value: object) -> None:
        """
        Keep C{value}.
        """
        self.values.append(value)


class NetworkTests(TestCase):
    """
    C{send}, C{listen} and C{bench} against real servers on 127.0.0.1.
    """

    timeout = 60

    def setUp(self) -> None:
        """
        Make a home directory and a key.
        """
        from twisted.internet import reactor

        self.reactor: Any = reactor
        self.home = Path(self.mktemp()).resolve()
        self.home.mkdir(parents=True)
        self.key = generateKey()
        self.environ: dict[str, str] = {
            "HOME": str(self.home),
            ENVIRONMENT_VARIABLE: self.key.decode("ascii"),
        }

    async def startServer(
        self, handler: object = None, key: bytes | None = None, **options: Any
    ) -> int:
        """
        Start a server on 127.0.0.1, stopped when the test ends.

        @return: Its port.
        """
        server = Server(
            "tcp:0:interface=127.0.0.1",
            key or self.key,
            handler or EchoHandler(),
            reactor=self.reactor,
            **options,
        )
        port = await server.listen()
        server.startService()
        self.addCleanup(server.stopService)
        number: int = port.getHost().port
        return number

    async def command(self, *argv: str, stdin: str = "") -> tuple[int, str, str]:
        """
        Parse and run a command with the reactor.

        @return: The exit status, output and error output.
        """
        streams = _streams(self.environ, stdin)
        command = cli.parseCommand(list(argv), streams)
        if isinstance(command, int):
            return (command, *_output(streams))
        code = await command.run(self.reactor)
        return (code, *_output(streams))

    async def test_sendReply(self) -> None:
        """
        C{send --reply} prints the repr of each reply on its own line: the
        echo handler returns the example value exactly.
        """
        port = await self.startServer()
        code, out, err = await self.command(
            "send", f"127.0.0.1:{port}", EXAMPLE, "-", "--reply", stdin="1\nb'2'\n"
        )
        self.assertEqual((code, err), (0, ""))
        lines = out.splitlines()
        self.assertEqual(len(lines), 3)
        self.assertEqual(cli.parseLiteral(lines[0]), cli.EXAMPLE_VALUE)
        self.assertEqual(lines[1:], ["1", "b'2'"])

    async def test_sendManyReplies(self) -> None:
        """
        More values than the reply window all get their replies, in order.
        """
        port = await self.startServer()
        values = "".join(f"{n}\n" for n in range(500))
        code, out, _ = await self.command("send", str(port), "-", "--reply", stdin=values)
        self.assertEqual(code, 0)
        self.assertEqual(out.splitlines(), [str(n) for n in range(500)])

    async def test_sendDelivers(self) -> None:
        """
        Without C{--reply}, C{send} prints nothing and returns once the
        server has received every value.
        """
        handler = _RecordingHandler()
        port = await self.startServer(handler)
        code, out, err = await self.command(
            "send", f"tcp:host=127.0.0.1:port={port}", "1", "'two'", "{3}"
        )
        self.assertEqual((code, out, err), (0, "", ""))
        self.assertEqual(handler.values, [1, "two", {3}])

    async def test_noReply(self) -> None:
        """
        A server that does not reply makes C{send --reply} fail after
        C{--timeout}, saying so on one line.
        """
        port = await self.startServer(_RecordingHandler())
        code, out, err = await self.command(
            "send", f"127.0.0.1:{port}", "1", "--reply", "--timeout", "0.2"
        )
        self.assertEqual((code, out), (1, ""))
        self.assertIn("no reply", err)
        self.assertEqual(len(err.splitlines()), 1)

    async def test_wrongKey(self) -> None:
        """
        A server with another key is a one-line error about the key.
        """
        port = await self.startServer(key=generateKey())
        code, _, err = await self.command("send", f"127.0.0.1:{port}", "1")
        self.assertEqual(code, 1)
        self.assertEqual(len(err.splitlines()), 1)
        self.assertIn("key", err)

    async def test_refused(self) -> None:
        """
        A refused connection is a one-line error naming the endpoint.
        """
        port = _freePort()
        code, _, err = await self.command("send", f"127.0.0.1:{port}", "1", "--timeout", "5")
        self.assertEqual(code, 1)
        self.assertEqual(len(err.splitlines()), 1)
        self.assertIn(f"cannot connect to 127.0.0.1:{port}", err)

    async def test_tooBig(self) -> None:
        """
        A value larger than the server accepts is a one-line error.
        """
        port = await self.startServer(maxBufferSize=1024)
        code, _, err = await self.command(
            "send", f"127.0.0.1:{port}", "b'x' * 0 + b'" + "x" * 2000 + "'"
        )
        self.assertEqual(code, 1, err)
        self.assertEqual(len(err.splitlines()), 1)

    async def listen(self, *argv: str) -> tuple[cli._ListenCommand, defer.Deferred[int], int]:
        """
        Start C{netstructer listen} on a free port.

        @return: The command, its result and its port.
        """
        streams = _streams(self.environ)
        command = cli.parseCommand(["listen", "tcp:0:interface=127.0.0.1", *argv], streams)
        assert isinstance(command, cli._ListenCommand)
        result = command.run(self.reactor)
        self.addCleanup(command.stop)
        port = await command.listening
        number: int = port.getHost().port
        return command, result, number

    async def test_listen(self) -> None:
        """
        C{listen} prints each value with its sender on standard output, and
        sessions opening and closing on standard error; it stops cleanly.
        """
        command, result, port = await self.listen()
        session = await connect(self.reactor, ("127.0.0.1", port), self.key)
        sender = f"127.0.0.1:{session.transport.getHost().port}"
        session.sendBuffer(cli.EXAMPLE_VALUE)
        session.sendBuffer(42)
        session.close()
        await session.whenClosed()
        await command.stop()
        self.assertEqual(await result, 0)
        out, err = _output(command.streams)
        self.assertEqual(out.splitlines(), [f"{sender} {cli.EXAMPLE_VALUE!r}", f"{sender} 42"])
        self.assertIn(f"listening on 127.0.0.1:{port}", err)
        self.assertIn(f"{sender} connected", err)
        self.assertIn(f"{sender} disconnected", err)

    async def test_listenEcho(self) -> None:
        """
        C{listen --echo --quiet} sends values back and prints none.
        """
        command, result, port = await self.listen("--echo", "--quiet")
        session = await connect(self.reactor, ("127.0.0.1", port), self.key)
        session.sendBuffer(cli.EXAMPLE_VALUE)
        self.assertEqual(await session.recvBuffer(timeout=10), cli.EXAMPLE_VALUE)
        session.close()
        await session.whenClosed()
        await command.stop()
        self.assertEqual(await result, 0)
        self.assertEqual(_output(command.streams)[0], "")

    async def test_listenCreatesKey(self) -> None:
        """
        C{listen} without a key creates the default key file, like the
        server, and says so.
        """
        del self.environ[ENVIRONMENT_VARIABLE]
        command, _, _ = await self.listen()
        path = self.home / ".config" / "netstructer" / "key"
        self.assertEqual(stat.S_IMODE(path.stat().st_mode), 0o600)
        self.assertIn(f"created a new key file {path}", _output(command.streams)[1])

    async def test_listenPortInUse(self) -> None:
        """
        C{listen} on a port in use is a one-line error.
        """
        with socket.socket() as busy:
            busy.bind(("127.0.0.1", 0))
            busy.listen()
            port = busy.getsockname()[1]
            code, _, err = await self.command("listen", str(port))
        self.assertEqual(code, 1)
        self.assertEqual(len(err.splitlines()), 1)
        self.assertIn(f"port {port} is already in use", err)

    async def test_bench(self) -> None:
        """
        C{bench ENDPOINT --count N} runs the three tests against a running
        echo server and prints the table.
        """
        port = await self.startServer()
        code, out, err = await self.command("bench", f"127.0.0.1:{port}", "--count", "5")
        self.assertEqual((code, err), (0, ""))
        self.assertIn("latency p50 / p90 / p99", out)
        self.assertIn("msgs/s", out)
        self.assertIn("MB/s", out)

    async def test_benchNoEcho(self) -> None:
        """
        C{bench} against a server that does not echo fails after
        C{--timeout}, saying what it needs.
        """
        port = await self.startServer(_RecordingHandler())
        code, _, err = await self.command(
            "bench", f"127.0.0.1:{port}", "--count", "1", "--timeout", "0.2"
        )
        self.assertEqual(code, 1)
        self.assertIn("echo", err)


class TLSTests(TestCase):
    """
    TLS under the NetStructer channel: a server made by L{tap.makeService}
    with C{--tls-cert} and C{--tls-ca}, and C{send} with C{tls:} client
    descriptions, which check the server's name and certificate.
    """

    timeout = 60

    def setUp(self) -> None:
        """
        Make certificates and a key.
        """
        from twisted.internet import reactor

        self.reactor: Any = reactor
        self.home = Path(self.mktemp()).resolve()
        self.home.mkdir(parents=True)
        self.certificates = makeCertificates(self.home)
        self.key = generateKey()
        self.environ = {"HOME": str(self.home), ENVIRONMENT_VARIABLE: self.key.decode("ascii")}
        # Twisted's own ssl: and tls: description parsers still hand
        # pyOpenSSL objects to pyOpenSSL, which deprecates that; the warning
        # is not ours to fix, so it must not fail a run under -W error.
        ignoring = warnings.catch_warnings()
        ignoring.__enter__()
        self.addCleanup(ignoring.__exit__, None, None, None)
        warnings.filterwarnings("ignore", message="Passing pyOpenSSL", category=DeprecationWarning)

    async def startServer(self, *argv: str) -> int:
        """
        Start C{twistd netstructer}'s service on a free port.

        @return: The port.
        """
        options = tap.Options(environ=self.environ)
        if "--port" not in argv:
            argv = ("--port", "tcp:0:interface=127.0.0.1", *argv)
        options.parseOptions(list(argv))
        service = tap.makeService(options, self.reactor)
        service.startService()
        self.addCleanup(service.stopService)
        assert isinstance(service, Server)
        port = await service.listen()
        number: int = port.getHost().port
        return number

    async def send(self, description: str) -> tuple[int, str, str]:
        """
        Run C{send --reply} with the example value.
        """
        streams = _streams(self.environ)
        command = cli.parseCommand(
            ["send", description, EXAMPLE, "--reply", "--timeout", "10"], streams
        )
        assert isinstance(command, cli.Command)
        code = await command.run(self.reactor)
        return (code, *_output(streams))

    def tls(self, host: str, port: int, client: str | None = "client") -> str:
        """
        @return: A C{tls:} client description trusting the test CA.
        """
        description = f"tls:{host}:{port}:trustRoots={self.certificates['trustRoots']}"
        if client is not None:
            description += (
                f":certificate={self.certificates[client + 'Cert']}"
                f":privateKey={self.certificates[client + 'Key']}"
            )
        return description

    async def test_serverTLS(self) -> None:
        """
        With C{--tls-cert}, a C{tls:} client that trusts the CA talks to the
        server by IP address or by name.
        """
        port = await self.startServer("--tls-cert", str(self.certificates["server"]))
        for host in ("127.0.0.1", "localhost"):
            code, out, err = await self.send(self.tls(host, port, client=None))
            self.assertEqual((code, err), (0, ""))
            self.assertEqual(cli.parseLiteral(out), cli.EXAMPLE_VALUE)

    async def test_sslEndpoint(self) -> None:
        """
        An C{ssl:} server endpoint description gives TLS too.
        """
        port = await self.startServer(
            "--port", f"ssl:0:interface=127.0.0.1:privateKey={self.certificates['server']}"
        )
        code, out, err = await self.send(self.tls("localhost", port, client=None))
        self.assertEqual((code, err), (0, ""))
        self.assertEqual(cli.parseLiteral(out), cli.EXAMPLE_VALUE)

    async def test_untrustedServer(self) -> None:
        """
        A client that does not trust the server's CA refuses it: one line,
        exit status 1.
        """
        port = await self.startServer("--tls-cert", str(self.certificates["server"]))
        otherRoots = self.home / "other-roots"
        otherRoots.mkdir()
        (otherRoots / "other.pem").write_bytes(self.certificates["otherClientCert"].read_bytes())
        code, out, err = await self.send(f"tls:127.0.0.1:{port}:trustRoots={otherRoots}")
        self.assertEqual((code, out), (1, ""))
        self.assertEqual(len(err.splitlines()), 1, err)

    async def test_mutualTLS(self) -> None:
        """
        With C{--tls-ca}, a client certificate from that CA is required:
        with one the value goes through; without one, or with one from
        another CA, the connection fails with one line.
        """
        port = await self.startServer(
            "--tls-cert",
            str(self.certificates["serverCert"]),
            "--tls-key",
            str(self.certificates["serverKey"]),
            "--tls-ca",
            str(self.certificates["ca"]),
        )
        code, out, err = await self.send(self.tls("127.0.0.1", port))
        self.assertEqual((code, err), (0, ""))
        self.assertEqual(cli.parseLiteral(out), cli.EXAMPLE_VALUE)
        for client in (None, "otherClient"):
            code, out, err = await self.send(self.tls("127.0.0.1", port, client))
            self.assertEqual((code, out), (1, ""), client)
            self.assertEqual(len(err.splitlines()), 1, err)


class SubprocessTests(SynchronousTestCase):
    """
    C{python -m netstructer} as a program.
    """

    def run_(
        self, *argv: str, environ: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        """
        Run C{python -m netstructer} with the repository on C{PYTHONPATH}.
        """
        home = Path(self.mktemp()).resolve()
        home.mkdir(parents=True)
        env = {
            "PATH": os.environ.get("PATH", ""),
            "HOME": str(home),
            "PYTHONPATH": str(REPO),
            **(environ or {}),
        }
        return subprocess.run(
            [sys.executable, "-m", "netstructer", *argv],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    def test_module(self) -> None:
        """
        C{python -m netstructer keygen} prints a key.
        """
        result = self.run_("keygen")
        self.assertEqual((result.returncode, result.stderr), (0, ""))
        parseKey(result.stdout.strip())

    def test_userErrorNoTraceback(self) -> None:
        """
        A refused connection exits 1 with one line and no traceback.
        """
        result = self.run_(
            "send",
            f"127.0.0.1:{_freePort()}",
            "1",
            environ={ENVIRONMENT_VARIABLE: generateKey().decode("ascii")},
        )
        self.assertEqual(result.returncode, 1)
        self.assertEqual(len(result.stderr.splitlines()), 1, result.stderr)
        self.assertTrue(result.stderr.startswith("netstructer: error: cannot connect"))

    def test_benchPeersScript(self) -> None:
        """
        C{bench --peers} runs C{benchmarks/bench_peers.py} of the source
        checkout holding the package, and finds none elsewhere.
        """
        root = Path(cli.netstructer.__file__).resolve().parent.parent
        self.assertEqual(cli.peersBenchmark(str(root)), str(root / "benchmarks" / "bench_peers.py"))
        self.assertIsNone(cli.peersBenchmark(self.mktemp()))

    def test_benchSpawnsServer(self) -> None:
        """
        C{bench} without an endpoint starts its own server and prints the
        table.
        """
        result = self.run_("bench", "--count", "3")
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertIn("a server started by this command", result.stdout)
        self.assertIn("MB/s", result.stdout)
