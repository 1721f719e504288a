# -*- test-case-name: tests.test_examples -*-
"""
Every program in C{examples/} runs, against real servers on 127.0.0.1, so
that none of them rots.

Each example is run as a script, in a subprocess, from a temporary home
directory with temporary key files.  Servers are started on port 0 and
print the port they were given; the tests read that line, and every other
line they wait for, from the program's output with a deadline (no sleeps).
The cluster's example gets a real C{redis-server} on a free loopback port
(L{tests._redis.RedisServer}), and is skipped, saying so, without one.
Every process is stopped when its test ends.
"""

from __future__ import annotations

import hashlib
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from netstructer.keys import keyFileLine, writeKeyFile
from tests._redis import RedisServer

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
DEADLINE = 30.0
"""Seconds any one step (a line of output, a program's exit) may take."""

TWISTD = [sys.executable, "-c", "from twisted.scripts.twistd import run; run()"]


def freePort() -> int:
    """
    A loopback TCP port free right now, for a program that cannot be told
    to pick one itself.
    """
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class Program:
    """
    A running example, whose output is read line by line as it comes.

    @ivar process: The process.
    @ivar output: The lines read so far.
    """

    def __init__(
        self, case: SynchronousTestCase, argv: Sequence[str], home: Path, env: dict[str, str]
    ) -> None:
        """
        Start C{argv} in C{home}; the process is stopped when C{case} ends.
        """
        self.process = subprocess.Popen(
            list(argv),
            cwd=home,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        self.output: list[str] = []
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        case.addCleanup(self.stop)

    def _read(self) -> None:
        assert self.process.stdout is not None
        for raw in self.process.stdout:
            self._lines.put(raw.decode("utf-8", "replace").rstrip("\n"))
        self._lines.put(None)

    def _next(self, deadline: float) -> str | None:
        try:
            line = self._lines.get(timeout=max(deadline - time.monotonic(), 0.0))
        except queue.Empty:
            raise AssertionError(f"no output in time; so far:\n{self.transcript()}") from None
        if line is not None:
            self.output.append(line)
        return line

    def transcript(self) -> str:
        """
        Everything the program printed so far.
        """
        return "\n".join(self.output)

    def expect(self, pattern: str) -> re.Match[str]:
        """
        Read lines until one matches C{pattern}.

        @return: The match.
        @raise AssertionError: The program ended, or the deadline passed,
            first.
        """
        return self.expectEach(pattern)[0]

    def expectEach(self, *patterns: str) -> list[re.Match[str]]:
        """
        Read lines until each of C{patterns} has matched one, in any order.

        @return: The matches, in the order of C{patterns}.
        @raise AssertionError: The program ended, or the deadline passed,
            first.
        """
        found: dict[str, re.Match[str]] = {}
        deadline = time.monotonic() + DEADLINE
        while len(found) < len(patterns):
            line = self._next(deadline)
            if line is None:
                missing = [pattern for pattern in patterns if pattern not in found]
                raise AssertionError(
                    f"the program ended without printing {missing!r}:\n{self.transcript()}"
                )
            for pattern in patterns:
                match = re.search(pattern, line)
                if pattern not in found and match is not None:
                    found[pattern] = match
        return [found[pattern] for pattern in patterns]

    def listeningPort(self) -> int:
        """
        Wait for the program to say where it listens.
        """
        return int(self.expect(r"listening on 127\.0\.0\.1:(\d+)").group(1))

    def write(self, line: str) -> None:
        """
        Type a line on the program's standard input.
        """
        assert self.process.stdin is not None
        self.process.stdin.write(line.encode("utf-8") + b"\n")
        self.process.stdin.flush()

    def finish(self, interrupt: bool = False) -> int:
        """
        Let the program end: close its input (or, with C{interrupt}, send it
        SIGTERM), then read the rest of its output.

        @return: Its exit status.
        """
        if interrupt:
            self.process.send_signal(signal.SIGTERM)
        elif self.process.stdin is not None and not self.process.stdin.closed:
            self.process.stdin.close()
        deadline = time.monotonic() + DEADLINE
        while self._next(deadline) is not None:
            pass
        return self.process.wait(timeout=DEADLINE)

    def stop(self) -> None:
        """
        End the program if it still runs, and release its pipes.
        """
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=DEADLINE)
        self._reader.join(timeout=DEADLINE)
        for stream in (self.process.stdin, self.process.stdout):
            if stream is not None:
                stream.close()


class ExampleTests(SynchronousTestCase):
    """
    Run each example against a real server.
    """

    TESTED = {
        "chat_client.py",
        "chat_server.py",
        "cluster_node.py",
        "echo_client.py",
        "echo_server.py",
        "file_server.py",
        "kv_client.py",
        "kv_server.py",
        "original_client.py",
        "original_server.py",
        "scrape_metrics.py",
        "send_file.py",
    }

    def setUp(self) -> None:
        self.home = Path(self.mktemp()).resolve()
        self.home.mkdir(parents=True)
        self.env = {
            **os.environ,
            "HOME": str(self.home),
            "XDG_CONFIG_HOME": str(self.home / ".config"),
            "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        }
        self.env.pop("NETSTRUCTER_KEY", None)
        self.keyFile = str(self.home / "shared.key")

    def start(self, script: str, *args: str) -> Program:
        """
        Start an example script.
        """
        return Program(self, [sys.executable, str(EXAMPLES / script), *args], self.home, self.env)

    def runToEnd(self, script: str, *args: str) -> list[str]:
        """
        Run an example to its end.

        @return: The lines it printed.
        @raise AssertionError: It failed.
        """
        program = self.start(script, *args)
        status = program.finish()
        self.assertEqual(status, 0, program.transcript())
        return program.output

    def test_everyExampleIsTested(self) -> None:
        """
        Each program in C{examples/} is one these tests run.
        """
        self.assertEqual({path.name for path in EXAMPLES.glob("*.py")}, self.TESTED)

    def test_echo(self) -> None:
        """
        The echo server creates the key file and sends back every value of
        the blocking client, equal; SIGTERM stops it cleanly.
        """
        server = self.start("echo_server.py", "--port", "0", "--key-file", self.keyFile)
        server.expect("created a new key")
        port = server.listeningPort()
        output = self.runToEnd("echo_client.py", f"127.0.0.1:{port}", "--key-file", self.keyFile)
        self.assertEqual(len(output), 3)
        self.assertEqual(output[0], "hello")
        self.assertEqual(server.finish(interrupt=True), 0, server.transcript())

    def test_original(self) -> None:
        """
        The original package's server receives and prints the two values of
        its client, then exits by itself.
        """
        server = self.start("original_server.py", "--port", "0", "--key-file", self.keyFile)
        port = server.listeningPort()
        self.runToEnd("original_client.py", f"127.0.0.1:{port}", "--key-file", self.keyFile)
        self.assertEqual(server.finish(), 0, server.transcript())
        self.assertEqual(
            server.output[-2:],
            [
                "['hi im haytam', 128, {b'gg': 'gg'}, {1, 2, 4, 6}, (False, True)]",
                "support the project",
            ],
        )

    def checkKeyValueClient(self, port: int) -> None:
        """
        The key-value client gets the store's answers.
        """
        output = self.runToEnd(
            "kv_client.py", f"tcp:host=127.0.0.1:port={port}", "--key-file", self.keyFile
        )
        self.assertEqual(
            [line.rpartition(" -> ")[2] for line in output],
            [
                "True",
                "{'text': 'hello', 'lang': 'en'}",
                "None",
                "('error', \"not a request: ('delete', 'greeting')\")",
            ],
        )

    def test_keyValueScript(self) -> None:
        """
        The key-value handler answers, served by its own script.
        """
        server = self.start("kv_server.py", "--port", "0", "--key-file", self.keyFile)
        self.checkKeyValueClient(server.listeningPort())
        self.assertEqual(server.finish(interrupt=True), 0, server.transcript())

    def test_keyValueTwistd(self) -> None:
        """
        The key-value handler answers under C{twistd netstructer --handler
        kv_server:handler}, as its docstring says.
        """
        writeKeyFile(self.keyFile)
        self.env["PYTHONPATH"] += os.pathsep + str(EXAMPLES)
        server = Program(
            self,
            [
                *TWISTD,
                "-n",
                "--pidfile=",
                "netstructer",
                "--port",
                "tcp:0:interface=127.0.0.1",
                "--key-file",
                self.keyFile,
                "--handler",
                "kv_server:handler",
            ],
            self.home,
            self.env,
        )
        self.checkKeyValueClient(server.listeningPort())
        # twistd ends by sending itself the signal it stopped for.
        self.assertEqual(server.finish(interrupt=True), -signal.SIGTERM, server.transcript())
        self.assertIn("Server Shut Down.", server.transcript())

    def namedKeys(self, *names: str) -> Path:
        """
        Write a named key file for each client (C{NAME.key}) and the
        server's file of all their keys.

        @return: The server's key file.
        """
        lines = []
        for name in names:
            key = writeKeyFile(self.home / f"{name}.key", name=name)
            lines.append(keyFileLine(key, name))
        serverKeys = self.home / "server.key"
        serverKeys.touch(mode=0o600)
        serverKeys.write_text("\n".join(lines) + "\n", encoding="utf-8")
        return serverKeys

    def test_chat(self) -> None:
        """
        Two chat clients, with named keys, talk through the chat server: in
        the room, privately, and to a name nobody holds.
        """
        serverKeys = self.namedKeys("alice", "bob")
        server = self.start("chat_server.py", "--port", "0", "--key-file", str(serverKeys))
        address = f"127.0.0.1:{server.listeningPort()}"

        bob = self.start("chat_client.py", address, "--key-file", str(self.home / "bob.key"))
        bob.expect(r"^bob \(to you\): you are in 'room'$")
        alice = self.start("chat_client.py", address, "--key-file", str(self.home / "alice.key"))
        alice.expect(r"^alice \(to you\): you are in 'room'$")
        bob.expect(r"^alice: \(joined\)$")

        alice.write("hello, room")
        bob.expect(r"^alice: hello, room$")
        alice.write("/msg bob just for you")
        bob.expect(r"^alice \(to you\): just for you$")
        alice.write("/msg carol anyone there?")
        alice.expect(r"^! .*carol")

        self.assertEqual(alice.finish(), 0, alice.transcript())
        self.assertEqual(bob.finish(), 0, bob.transcript())
        self.assertEqual(server.finish(interrupt=True), 0, server.transcript())

    def test_metrics(self) -> None:
        """
        The scraper reads the echo server's metrics after a client's visit,
        and its health.
        """
        metricsPort = freePort()
        server = self.start(
            "echo_server.py",
            "--port",
            "0",
            "--key-file",
            self.keyFile,
            "--metrics",
            str(metricsPort),
        )
        port = server.listeningPort()
        self.runToEnd("echo_client.py", f"127.0.0.1:{port}", "--key-file", self.keyFile)
        output = self.runToEnd("scrape_metrics.py", f"http://127.0.0.1:{metricsPort}")
        self.assertIn("handshakes (ok): 1", output)
        self.assertIn("values received: 3", output)
        self.assertIn("values sent: 3", output)
        self.assertTrue(output[-1].startswith("health: 200 ok: listening"), output)
        self.assertEqual(server.finish(interrupt=True), 0, server.transcript())

    def test_files(self) -> None:
        """
        A file of a few MiB sent with C{send_file.py} is saved whole by the
        file server, and the SHA-256 both print is the file's; the same
        name again is refused, and the file saved first stays as it was.
        """
        data = os.urandom(3 * 1024 * 1024 + 12345)
        digest = hashlib.sha256(data).hexdigest()
        source = self.home / "report.bin"
        source.write_bytes(data)
        server = self.start("file_server.py", "inbox", "--port", "0", "--key-file", self.keyFile)
        address = f"127.0.0.1:{server.listeningPort()}"

        output = self.runToEnd("send_file.py", address, str(source), "--key-file", self.keyFile)
        self.assertEqual(output[-1], f"sent {source}: {len(data)} bytes, SHA-256 {digest}")
        self.assertEqual(output[-2], f"{len(data)} of {len(data)} bytes (100%)")
        server.expect(
            rf"^saved inbox/report\.bin from 127\.0\.0\.1:\d+: {len(data)} bytes, SHA-256 {digest}$"
        )
        saved = self.home / "inbox" / "report.bin"
        self.assertEqual(saved.read_bytes(), data)

        again = self.start("send_file.py", address, str(source), "--key-file", self.keyFile)
        self.assertEqual(again.finish(), 1, again.transcript())
        self.assertIn("not sent: ", again.transcript())
        self.assertIn("a file of that name exists", again.transcript())
        server.expect(r"^not saved: report\.bin from 127\.0\.0\.1:\d+: ")
        self.assertEqual(server.finish(interrupt=True), 0, server.transcript())
        self.assertEqual(sorted(path.name for path in saved.parent.iterdir()), ["report.bin"])
        self.assertEqual(saved.read_bytes(), data)

    def sendAcross(self, sender: Program, name: str, recipient: Program, to: str) -> None:
        """
        Have C{sender} (the client C{name}) send a line to C{to} until its
        node knows where C{to} is, then check that C{recipient} got it.

        A client's name reaches the other nodes within a moment of its
        connecting; until then a value sent to it is refused at once
        (C{NoSuchSession}).  The server handles a session's requests in
        order, so a note the sender sends itself after each try comes back
        after that try's refusal, if any.
        """
        deadline = time.monotonic() + DEADLINE
        for attempt in range(1000):
            sender.write(f"/msg {to} hello from {name}")
            sender.write(f"/msg {name} try {attempt}")
            answer = sender.expect(rf"^(! .*{to}.*|{name} \(to you\): try {attempt})$")
            if not answer.group(1).startswith("!"):
                break
            self.assertLess(time.monotonic(), deadline, sender.transcript())
        recipient.expect(rf"^{name} \(to you\): hello from {name}$")

    def test_cluster(self) -> None:
        """
        Two cluster nodes share a real Redis; the chat's clients, connected
        one to each node, talk across them: privately both ways, and in the
        room.  SIGTERM stops each node cleanly.
        """
        redis = RedisServer(self.home / "redis")
        self.addCleanup(redis.stop)
        redis.start()  # SkipTest, saying how to install it, without redis-server
        serverKeys = self.namedKeys("alice", "bob")
        writeKeyFile(self.home / "cluster.key")  # the node's default --cluster-key
        addresses = {}
        nodes = []
        for name in ("n1", "n2"):
            node = self.start(
                "cluster_node.py",
                "--port",
                "0",
                "--node-name",
                name,
                "--key-file",
                str(serverKeys),
                "--cluster",
                redis.url,
            )
            listening, _ = node.expectEach(
                r"listening on 127\.0\.0\.1:(\d+)", rf"Node {name} joined the cluster at "
            )
            addresses[name] = f"127.0.0.1:{listening.group(1)}"
            nodes.append(node)

        bob = self.start(
            "chat_client.py", addresses["n2"], "--key-file", str(self.home / "bob.key")
        )
        bob.expect(r"^bob \(to you\): you are in 'room'$")
        alice = self.start(
            "chat_client.py", addresses["n1"], "--key-file", str(self.home / "alice.key")
        )
        alice.expect(r"^alice \(to you\): you are in 'room'$")

        self.sendAcross(alice, "alice", bob, "bob")
        self.sendAcross(bob, "bob", alice, "alice")
        alice.write("hello, room")
        bob.expect(r"^alice: hello, room$")

        self.assertEqual(alice.finish(), 0, alice.transcript())
        self.assertEqual(bob.finish(), 0, bob.transcript())
        for node in nodes:
            self.assertEqual(node.finish(interrupt=True), 0, node.transcript())
