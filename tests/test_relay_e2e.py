# -*- test-case-name: tests.test_relay_e2e -*-
"""
End-to-end test of the relay: a real C{twistd -n netstructer --relay}
process on a free loopback port, with a key file of three named keys, and
three blocking clients (L{netstructer.blocking.link}) sending to each other
by name, publishing to a topic, and learning of their failures; then a
SIGHUP that revokes one of them.

Every wait is bounded by a deadline or a socket timeout, and the server
process is always killed when the test ends.
"""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from netstructer.blocking import Link, link
from netstructer.errors import ChannelClosedError, NoSuchSession, SessionClosed
from netstructer.keys import generateKey, keyFileLine
from tests.test_twistd import (
    START_DEADLINE,
    STOP_DEADLINE,
    TWISTD,
    _environment,
    _freePort,
    _waitForPort,
)

NAMES = ("alice", "bob", "carol")


class RelayThroughTwistdTests(SynchronousTestCase):
    """
    Three named clients of one C{twistd netstructer --relay} process.
    """

    def setUp(self) -> None:
        self.home = Path(self.mktemp()).resolve()
        self.home.mkdir(parents=True)
        self.keys = {name: generateKey() for name in NAMES}
        self.keyFile = self.home / "server.key"
        self.writeKeys(NAMES)
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
                "--relay",
                "--max-relay-queue",
                "64",
            ],
            env=_environment(self.home),
            cwd=self.home,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        self.addCleanup(self.kill)
        _waitForPort(self.port, self.process, time.monotonic() + START_DEADLINE)

    def writeKeys(self, names: tuple[str, ...]) -> None:
        """
        Write the server's key file with the keys of C{names}.
        """
        lines = [keyFileLine(self.keys[name], name) for name in names]
        self.keyFile.write_text("\n".join(lines) + "\n")
        self.keyFile.chmod(0o600)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=STOP_DEADLINE)

    def connect(self, name: str) -> Link:
        bridge = link(("127.0.0.1", self.port), self.keys[name], timeout=10)
        self.addCleanup(bridge.close)
        return bridge

    def sync(self, bridge: Link, name: str) -> None:
        """
        Send a value to oneself and wait for it: the server has then handled
        every earlier request of C{bridge} (per-sender order).
        """
        bridge.sendTo(name, "sync")
        self.assertEqual(bridge.recvFrom(timeout=10), (name, "sync"))

    def log(self) -> str:
        return self.logPath.read_text(errors="replace")

    def test_threeClients(self) -> None:
        """
        Values sent by name arrive in order with their sender's name; a
        topic's subscribers get what is published, the publisher does not;
        a missing name is reported to the sender, whose link stays open; a
        SIGHUP that removes a key closes that client's session, after which
        its name has no session; SIGTERM then stops the server.
        """
        alice, bob, carol = (self.connect(name) for name in NAMES)
        for bridge, name in ((bob, "bob"), (carol, "carol")):
            bridge.subscribe("news")
            self.sync(bridge, name)
        alice.subscribe("news")
        self.sync(alice, "alice")

        values = [{"n": i, "payload": b"x" * i} for i in range(50)]
        for value in values:
            alice.sendTo("bob", value)
        self.assertEqual([bob.recvFrom(timeout=10) for _ in values], [("alice", v) for v in values])

        carol.sendTo("alice", ("from", "carol"))
        self.assertEqual(alice.recvFrom(timeout=10), ("carol", ("from", "carol")))

        alice.publish("news", "headline")
        self.assertEqual(bob.recvFrom(timeout=10), ("alice", "headline"))
        self.assertEqual(carol.recvFrom(timeout=10), ("alice", "headline"))

        alice.sendTo("nobody", 1)
        with self.assertRaises(NoSuchSession) as caught:
            alice.recvFrom(timeout=10)
        self.assertEqual(caught.exception.name, "nobody")
        # The publisher did not receive its own value: only the sync comes.
        self.sync(alice, "alice")

        # Direct values still work alongside (the echo handler).
        bob.sendBuffer("echo me")
        self.assertEqual(bob.recvBuffer(timeout=10), "echo me")

        self.writeKeys(("alice", "carol"))
        self.process.send_signal(signal.SIGHUP)
        with self.assertRaises((SessionClosed, ChannelClosedError)):
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                bob.recvFrom(timeout=10)
        self.assertIn("key revoked", str(bob.closeReason))
        alice.sendTo("bob", "after")
        with self.assertRaises(NoSuchSession):
            alice.recvFrom(timeout=10)
        carol.sendTo("alice", "still here")
        self.assertEqual(alice.recvFrom(timeout=10), ("carol", "still here"))

        alice.close()
        carol.close()
        self.process.send_signal(signal.SIGTERM)
        # twistd ends itself with the signal it received once it has shut
        # down cleanly (as in tests.test_twistd).
        self.assertIn(self.process.wait(timeout=STOP_DEADLINE), (0, -signal.SIGTERM), self.log())
        self.assertIn("1 sessions closed as revoked", self.log())
