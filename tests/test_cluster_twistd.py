# -*- test-case-name: tests.test_cluster_twistd -*-
"""
A cluster of real processes on loopback: a real C{redis-server}, three real
C{twistd -n netstructer --relay --cluster URL} nodes (n1, n2, n3), a node
run by the blocking facade (in its own process), and blocking clients
spread over them (L{tests._clusterprocs}).

What a deployment relies on: relay (C{sendTo}, C{publish}) across nodes,
in order; the cluster-wide count, listing and lookup; C{netstructer
cluster status}; a node killed with SIGKILL leaving the directory within
two heartbeats, with its values in flight reported failed; Redis lost (the
nodes serve their own sessions, cluster operations fail at once, one log
line each way) and restarted empty (the nodes register again and relay
again); and a hostile writer on the cluster's channels (refused, logged,
never delivered).
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from netstructer.errors import NoSuchSession, RecipientBusy
from tests._clusterprocs import (
    REPO,
    WAIT,
    ClusterProcesses,
    RawSubscriber,
    drainErrors,
    pendingErrors,
    relayReady,
    waitFor,
)
from tests._redis import command, freePort, redisServerPath

HEARTBEAT = 1.0
"""The nodes' heartbeat: the default."""


class ClusterTestCase(SynchronousTestCase):
    """
    Redis, and the nodes n1, n2 and n3; alice on n1, bob on n2, carol on
    n3.
    """

    def setUp(self) -> None:
        redisServerPath()
        home = Path(self.mktemp()).resolve()
        home.mkdir(parents=True)
        self.cluster = ClusterProcesses(home, heartbeat=HEARTBEAT)
        self.addCleanup(self.cluster.stop)
        self.cluster.start("n1", "n2", "n3")
        self.nodes = self.cluster.nodes
        self.alice = self.cluster.connect("alice", "n1")
        self.bob = self.cluster.connect("bob", "n2")
        self.carol = self.cluster.connect("carol", "n3")
        waitFor(lambda: self.cluster.count() == 3, "the three sessions are registered")

    def status(self, *options: str, url: str | None = None) -> subprocess.CompletedProcess[str]:
        """
        Run C{netstructer cluster status}.
        """
        return subprocess.run(
            [
                sys.executable,
                "-m",
                "netstructer",
                "cluster",
                "status",
                url or self.cluster.url,
                *options,
            ],
            env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    def assertNoTraceback(self) -> None:
        for node in self.nodes.values():
            self.assertNotIn("Traceback", node.log(), node.name)
            self.assertNotIn("Unhandled", node.log(), node.name)


class RelayTests(ClusterTestCase):
    """
    What clients and servers of different nodes do to each other.
    """

    def test_relayAcrossNodes(self) -> None:
        """
        A client on n1 reaches a client on n2, in order; C{publish} reaches
        subscribers on every node; a value for a name no node holds, or
        for a client that left, fails for its sender.
        """
        relayReady(self.alice, "alice", self.bob, "bob")
        values = [{"n": i, "blob": b"x" * (i % 50)} for i in range(300)]
        for value in values:
            self.alice.sendTo("bob", value)
        received = [self.bob.recvFrom(timeout=WAIT) for _ in values]
        self.assertEqual(received, [("alice", value) for value in values])

        self.alice.subscribe("news")
        self.bob.subscribe("news")
        relayReady(self.carol, "carol", self.alice, "alice")
        relayReady(self.carol, "carol", self.bob, "bob")
        waitFor(
            lambda: all(
                command(
                    self.cluster.redis.port, "SISMEMBER", f"{{netstructer}}:node:{n}:topics", "news"
                )
                == b":1\r\n"
                for n in ("n1", "n2")
            ),
            "the subscriptions are in the directory",
        )
        # The nodes' copies follow the directory's events: publish until
        # both subscribers have the value (a node that did not know of the
        # other's subscriber yet delivered only its own).
        for index in range(100):
            self.carol.publish("news", ("extra", index))
            got = [self.alice.recvFrom(timeout=WAIT), self.bob.recvFrom(timeout=WAIT)]
            if got == [("carol", ("extra", index))] * 2:
                break
        self.assertEqual(got, [("carol", ("extra", index))] * 2)

        self.alice.sendTo("nobody", 1)
        error = self.assertRaises(NoSuchSession, self.alice.recvFrom, timeout=WAIT)
        self.assertEqual(error.name, "nobody")
        self.carol.close(timeout=WAIT)
        waitFor(lambda: self.cluster.count() == 2, "carol's session is unregistered")
        # n1 may hear of it just after Redis did: a value sent meanwhile is
        # answered by n3 ("no such session"), one sent later by n1.
        self.alice.sendTo("carol", 1)
        error = self.assertRaises(NoSuchSession, self.alice.recvFrom, timeout=WAIT)
        self.assertEqual(error.name, "carol")
        self.assertNoTraceback()

    def test_clusterWideQueries(self) -> None:
        """
        A node run by the blocking facade counts, lists and finds every
        node's sessions, and sends a value to a session of another node;
        C{netstructer cluster status} lists the nodes and sessions.
        """
        n4 = self.cluster.startBlocking("n4")
        dave = self.cluster.connect("dave", n4)
        waitFor(lambda: self.cluster.count() == 4, "dave's session is registered")
        self.assertEqual(n4.ask("count"), {"local": 1, "cluster": 4})
        listed = n4.ask("all")
        self.assertEqual(listed["local"], ["dave"])
        self.assertEqual(
            sorted(map(tuple, listed["sessions"])),
            [("alice", "n1"), ("bob", "n2"), ("carol", "n3"), ("dave", "n4")],
        )
        waitFor(lambda: n4.ask("get carol")["found"] == "RemoteSession", "n4 knows of carol")
        self.assertEqual(n4.ask("get carol")["node"], "n3")
        self.assertEqual(n4.ask("get dave")["found"], "Session")
        self.assertEqual(n4.ask("get nobody")["found"], "NoneType")
        self.assertEqual(n4.ask("send carol hello from n4"), {"sent": True})
        self.assertEqual(self.carol.recvBuffer(timeout=WAIT), "hello from n4")
        relayReady(self.alice, "alice", dave, "dave")

        result = self.status()
        self.assertEqual((result.returncode, result.stderr), (0, ""))
        lines = result.stdout.splitlines()
        self.assertIn("4 of 4 nodes alive, 4 sessions", lines[0])
        for name in ("n1", "n2", "n3", "n4"):
            self.assertTrue(any(line.split()[:2] == [name, "yes"] for line in lines), lines)
        for name, node in (("alice", "n1"), ("bob", "n2"), ("carol", "n3"), ("dave", "n4")):
            self.assertTrue(
                any(line.split()[:1] == [name] and node in line.split() for line in lines), lines
            )
        data = json.loads(self.status("--json").stdout)
        self.assertEqual(
            sorted(n["name"] for n in data["nodes"] if n["alive"]), ["n1", "n2", "n3", "n4"]
        )
        self.assertEqual(len(data["sessions"]), 4)
        self.assertNotIn("sessions", json.loads(self.status("--json", "--no-sessions").stdout))

        # Closing the blocking server removes its node at once (its entries
        # would expire two heartbeats later).
        dave.close(timeout=WAIT)
        n4.stop()
        took = waitFor(lambda: not self.cluster.registered("n4"), "n4 left the directory")
        self.assertLess(took, HEARTBEAT)

        nowhere = self.status(url=f"redis://127.0.0.1:{freePort()}/0")
        self.assertEqual(nowhere.returncode, 1)
        self.assertIn("cannot reach the cluster's Redis", nowhere.stderr)
        self.assertNoTraceback()


class FailureTests(ClusterTestCase):
    """
    Nodes that die, Redis lost and restarted, and hostile writers.
    """

    def test_killedNode(self) -> None:
        """
        A node killed with SIGKILL leaves the directory within two
        heartbeats; the values on their way to it are reported failed to
        their senders, and the other nodes go on relaying.
        """
        relayReady(self.alice, "alice", self.carol, "carol")
        # n3 answers n1's batches with its own batches towards n1: once
        # carol's value reaches alice, alice's probes are answered (none is
        # on its way any more).
        relayReady(self.carol, "carol", self.alice, "alice")
        relayReady(self.alice, "alice", self.bob, "bob")
        n3 = self.nodes["n3"]
        n3.signal(signal.SIGSTOP)
        stopped = time.monotonic()
        for i in range(50):
            self.alice.sendTo("carol", i)
        # n1 routes alice's values in order: once bob has the marker, the
        # 50 values are published towards n3, which does not answer.
        self.alice.sendTo("bob", "marker")
        self.assertEqual(self.bob.recvFrom(timeout=WAIT), ("alice", "marker"))
        n3.signal(signal.SIGKILL)
        waitFor(lambda: not self.cluster.registered("n3"), "n3 leaves the directory")
        took = time.monotonic() - stopped
        self.assertLess(took, 2 * HEARTBEAT + 0.25)
        self.assertEqual(self.cluster.count(), 2)
        self.assertEqual(drainErrors(self.alice, 50), 50)
        self.assertRaises(TimeoutError, self.alice.recvFrom, timeout=0.2)
        relayReady(self.bob, "bob", self.alice, "alice")
        self.assertEqual(self.nodes["n1"].logged("Lost the connection"), 0)
        self.assertNoTraceback()

    def test_redisLostAndRestarted(self) -> None:
        """
        While Redis is down, each node serves its own sessions and cluster
        operations fail at once; once Redis is back (empty), every node
        registers again and relays again.  One line is logged when the
        connection is lost, one when it is back.
        """
        n4 = self.cluster.startBlocking("n4")
        erin = self.cluster.connect("erin", "n1")
        relayReady(self.alice, "alice", self.bob, "bob")
        relayReady(self.bob, "bob", self.alice, "alice")
        self.cluster.redis.kill()
        waitFor(
            lambda: all(node.logged("Lost the connection") for node in self.nodes.values()),
            "every node noticed",
        )
        # The last probe of each may not have been answered yet (a node
        # answers within a few milliseconds): it is reported failed.
        for client in (self.alice, self.bob):
            for error in pendingErrors(client):
                self.assertIn("lost its connection to the cluster's Redis", str(error))
        started = time.monotonic()
        answer = n4.ask("count")
        self.assertEqual(answer["error"], "ClusterUnavailable")
        self.assertLess(time.monotonic() - started, 1.0)
        self.alice.sendTo("bob", "lost")
        error = self.assertRaises(RecipientBusy, self.alice.recvFrom, timeout=WAIT)
        self.assertIn("cannot reach the rest of the cluster", str(error))
        relayReady(self.alice, "alice", erin, "erin")

        self.cluster.redis.start()
        waitFor(lambda: self.cluster.count() == 4, "the nodes registered again")
        relayReady(self.alice, "alice", self.bob, "bob")
        relayReady(self.carol, "carol", erin, "erin")
        waitFor(lambda: "cluster" in n4.ask("count"), "n4 registered again")
        self.assertEqual(n4.ask("count"), {"local": 0, "cluster": 4})
        for node in self.nodes.values():
            self.assertEqual(node.logged("Lost the connection to the cluster's Redis"), 1)
            self.assertEqual(node.logged("Reconnected to the cluster's Redis"), 1)
        self.assertNoTraceback()

    def test_hostilePeer(self) -> None:
        """
        Messages published on the cluster's channels by anyone without the
        cluster's key (garbage, a forgery, a replay of a real envelope, an
        envelope sealed with another key) are refused and logged, and
        nothing of them is delivered.
        """
        relayReady(self.alice, "alice", self.bob, "bob")
        spy = RawSubscriber(self.cluster.redis.port, "{netstructer}:to:n2")
        self.addCleanup(spy.close)
        self.alice.sendTo("bob", "genuine")
        self.assertEqual(self.bob.recvFrom(timeout=WAIT), ("alice", "genuine"))
        channel, envelope = spy.message()
        self.assertNotIn(b"genuine", envelope)
        port = self.cluster.redis.port
        # A later sequence number than any seen: the header is
        # authenticated, so the envelope fails as forged.
        forged = bytearray(envelope)
        forged[24:32] = (2**62).to_bytes(8, "big")
        otherKey = bytearray(envelope)
        otherKey[4:8] = b"\x00\x01\x02\x03"
        for data in (b"garbage", bytes(forged), envelope, bytes(otherKey)):
            command(port, "PUBLISH", channel, data)
            command(port, "PUBLISH", "{netstructer}:events", data)
        n2 = self.nodes["n2"]
        for reason in ("malformed", "forged", "replayed", "unknown key"):
            waitFor(
                lambda reason=reason: n2.logged(
                    f"Refused a message read from the cluster's Redis ({reason})"
                ),
                f"n2 logged a refusal ({reason})",
            )
        self.alice.sendTo("bob", "after")
        self.assertEqual(self.bob.recvFrom(timeout=WAIT), ("alice", "after"))
        self.assertRaises(TimeoutError, self.bob.recvFrom, timeout=0.2)
        self.assertNoTraceback()
