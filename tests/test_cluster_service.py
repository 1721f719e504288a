# -*- test-case-name: tests.test_cluster_service -*-
"""
Tests for L{netstructer.cluster.service}: three nodes of a cluster on one
in-memory Redis (L{MemoryHub}), driven by a L{Clock}: the cluster-wide
directory, routing between nodes, and every failure (a node killed, Redis
lost and restarted, a hostile writer on the channels).
"""

from __future__ import annotations

import subprocess
import sys

from twisted.internet import defer
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from netstructer.cluster import ClusterService, IClusterTransport, RemoteSession
from netstructer.cluster.envelope import BROADCAST, EnvelopeSealer, Kind
from netstructer.cluster.messages import deliverItem, encodeBatch
from netstructer.errors import BufferDataError, ClusterUnavailable, NoSuchSession, RecipientBusy
from netstructer.keys import Keyring, generateKey
from netstructer.registry import ISessionListener
from netstructer.relay import IRelayBackend, RelayOp
from netstructer.values import Encoder, encode
from tests._cluster import Cluster, FakeSession


class ClusterTestCase(SynchronousTestCase):
    """
    Three started nodes, n1, n2 and n3.
    """

    def setUp(self) -> None:
        self.cluster = Cluster()
        self.n1 = self.cluster.add("n1")
        self.n2 = self.cluster.add("n2")
        self.n3 = self.cluster.add("n3")
        self.cluster.settle(1.5)
        self.addCleanup(self.cluster.stopAll)

    def count(self, service: ClusterService) -> int:
        return self.successResultOf(service.count())


class InterfaceTests(ClusterTestCase):
    """
    The seams the server uses.
    """

    def test_interfaces(self) -> None:
        """
        The service observes a registry; its backend is a relay backend.
        """
        self.assertTrue(verifyObject(ISessionListener, self.n1.service))
        self.assertTrue(verifyObject(IRelayBackend, self.n1.service.backend))

    def test_transport(self) -> None:
        """
        The in-memory transport provides the transport's interface.
        """
        self.assertTrue(verifyObject(IClusterTransport, self.n1.service.transport))

    def test_available(self) -> None:
        """
        Started nodes are available, and know each other.
        """
        for node in (self.n1, self.n2, self.n3):
            self.assertTrue(node.service.available)
            self.assertEqual(len(node.service.replica.nodes), 2)

    def test_repr(self) -> None:
        """
        A service's repr names its node and URL, never a password.
        """
        self.assertIn("n1", repr(self.n1.service))
        self.assertIn("redis://127.0.0.1:6379/0", repr(self.n1.service))


class DirectoryTests(ClusterTestCase):
    """
    Cluster-wide count, all and get.
    """

    def test_count(self) -> None:
        """
        The count covers every node's sessions, as they open and close.
        """
        self.n1.open("alice")
        self.n2.open("bob")
        carol = self.n3.open("carol")
        self.n3.open(None)
        self.cluster.settle()
        self.assertEqual(self.count(self.n1.service), 4)
        self.n3.close(carol)
        self.cluster.settle()
        self.assertEqual(self.count(self.n2.service), 3)

    def test_all(self) -> None:
        """
        All lists every session's descriptor, with its node, oldest first.
        """
        self.n1.open("alice", "10.0.0.1")
        self.cluster.settle(0.1)
        self.n2.open("bob", "10.0.0.2")
        self.cluster.settle()
        found = self.successResultOf(self.n3.service.all())
        self.assertEqual(
            [(d.name, d.node, d.host) for d in found],
            [("alice", "n1", "10.0.0.1"), ("bob", "n2", "10.0.0.2")],
        )
        self.assertLess(found[0].openedAt, found[1].openedAt)

    def test_getLocal(self) -> None:
        """
        A session of the node itself is found as itself.
        """
        alice = self.n1.open("alice")
        self.cluster.settle()
        self.assertIs(self.successResultOf(self.n1.service.get("alice")), alice.session)

    def test_getRemote(self) -> None:
        """
        A session of another node is found as a proxy, by name, key or IP.
        """
        bob = self.n2.open("bob", "10.1.2.3")
        self.cluster.settle()
        for target in ("bob", bob.session.key, "10.1.2.3"):
            found = self.successResultOf(self.n1.service.get(target))
            self.assertIsInstance(found, RemoteSession)
            self.assertEqual((found.name, found.node, found.key), ("bob", "n2", bob.session.key))
        self.assertIsNone(self.successResultOf(self.n1.service.get("nobody")))

    def test_getNewest(self) -> None:
        """
        A name held on two nodes designates its newest session.
        """
        self.n1.open("alice")
        self.cluster.settle(0.1)
        newer = self.n2.open("alice")
        self.cluster.settle()
        self.assertIsInstance(self.successResultOf(self.n1.service.get("alice")), RemoteSession)
        self.assertIs(self.successResultOf(self.n2.service.get("alice")), newer.session)

    def test_remoteSendBuffer(self) -> None:
        """
        A remote session's sendBuffer reaches the session on its node.
        """
        bob = self.n2.open("bob")
        self.cluster.settle()
        remote = self.successResultOf(self.n1.service.get("bob"))
        remote.sendBuffer({"hello": [1, 2]})
        remote.sendBuffer(b"two")
        self.cluster.settle()
        self.assertEqual(bob.session.values, [{"hello": [1, 2]}, b"two"])
        self.assertIn("bob", repr(remote))

    def test_remoteSendBufferRefused(self) -> None:
        """
        A value the remote session cannot take is reported by its node, and
        logged by the sender's.
        """
        bob = self.n2.open("bob")
        self.cluster.settle()
        remote = self.successResultOf(self.n1.service.get("bob"))

        def refuse(value: object) -> None:
            raise BufferDataError("too big for bob's client")

        bob.session.sendBuffer = refuse  # type: ignore[method-assign]
        remote.sendBuffer("x")
        self.cluster.settle()
        [event] = self.cluster.logged("A server's value for {name} was dropped")
        self.assertIn("too big", event["error"])

    def test_remoteSendBufferEnded(self) -> None:
        """
        A value for a remote session that ended is logged by the sender.
        """
        bob = self.n2.open("bob")
        self.cluster.settle()
        remote = self.successResultOf(self.n1.service.get("bob"))
        self.n2.close(bob)
        remote.sendBuffer("late")
        self.cluster.settle()
        self.assertEqual(bob.session.values, [])
        self.assertTrue(self.cluster.logged("A server's value for {name} was dropped"))


class RelayTests(ClusterTestCase):
    """
    sendTo and publish across nodes.
    """

    def test_sendToRemote(self) -> None:
        """
        A value sent to a name on another node reaches it, in order.
        """
        alice = self.n1.open("alice")
        bob = self.n2.open("bob")
        self.cluster.settle()
        for i in range(5):
            self.n1.service.backend.deliver(alice, "bob", encode(i))
        self.cluster.settle()
        self.assertEqual(bob.received, [("alice", None, encode(i)) for i in range(5)])
        self.assertEqual(alice.failures, [])
        self.assertEqual(self.n1.service.backend.inFlight(), 0)

    def test_answersBatched(self) -> None:
        """
        A node answers the batches it received within a few milliseconds,
        once for all of them.
        """
        alice = self.n1.open("alice")
        self.n2.open("bob")
        self.cluster.settle()
        published = self.cluster.hub.published
        for _ in range(3):
            self.n1.service.backend.deliver(alice, "bob", encode(1))
            self.cluster.clock.advance(0)
            self.cluster.clock.advance(0)
        self.assertEqual(self.cluster.hub.published - published, 3)
        self.assertEqual(self.n1.service.backend.inFlight(), 3)
        self.cluster.clock.advance(0.005)
        self.cluster.clock.advance(0)
        self.assertEqual(self.cluster.hub.published - published, 4)
        self.assertEqual(self.n1.service.backend.inFlight(), 0)

    def test_publishedAtOnce(self) -> None:
        """
        A value towards a node with nothing on its way to Redis is
        published at once; values given while a publication awaits its
        reply are batched, and published together at the end of the
        reactor turn.
        """
        alice = self.n1.open("alice")
        bob = self.n2.open("bob")
        self.cluster.settle()
        transport = self.n1.service.transport
        original = transport.publish
        replies: list[tuple[defer.Deferred[int], defer.Deferred[int]]] = []

        def publish(channel: str, data: bytes) -> defer.Deferred[int]:
            reply: defer.Deferred[int] = defer.Deferred()
            replies.append((original(channel, data), reply))
            return reply

        transport.publish = publish  # type: ignore[method-assign]
        published = self.cluster.hub.published
        self.n1.service.backend.deliver(alice, "bob", encode(0))
        self.assertEqual(self.cluster.hub.published - published, 1)
        for i in range(1, 4):
            self.n1.service.backend.deliver(alice, "bob", encode(i))
        self.assertEqual(self.cluster.hub.published - published, 1)
        self.cluster.clock.advance(0)
        self.assertEqual(self.cluster.hub.published - published, 2)
        for done, reply in replies:
            done.chainDeferred(reply)
        transport.publish = original  # type: ignore[method-assign]
        self.cluster.settle()
        self.assertEqual(bob.received, [("alice", None, encode(i)) for i in range(4)])
        self.assertEqual(alice.failures, [])

    def test_registeredBeforeItsValues(self) -> None:
        """
        A session that opened and sends at once is in the directory before
        its value reaches the other node, which may answer it at once.
        """
        bob = self.n2.open("bob")
        self.cluster.settle()
        self.cluster.hub._queue.clear()
        dave = self.n1.open("dave")
        self.n1.service.backend.deliver(dave, "bob", encode("hi"))
        channels = [channel for channel, _ in self.cluster.hub._queue]
        self.assertEqual(channels, ["{netstructer}:events", "{netstructer}:to:n2"])
        self.cluster.settle()
        self.assertEqual(bob.received, [("dave", None, encode("hi"))])
        self.assertIsNotNone(self.n2.service.replica.resolve("dave"))

    def test_sendToLocal(self) -> None:
        """
        A value for a session of the same node stays local.
        """
        alice = self.n1.open("alice")
        bob = self.n1.open("bob")
        self.cluster.settle()
        published = self.cluster.hub.published
        self.n1.service.backend.deliver(alice, "bob", encode("hi"))
        self.assertEqual(bob.received, [("alice", None, encode("hi"))])
        self.assertEqual(self.cluster.hub.published, published)

    def test_sendToNobody(self) -> None:
        """
        A value for a name no node holds is refused with NoSuchSession.
        """
        alice = self.n1.open("alice")
        self.cluster.settle()
        self.n1.service.backend.deliver(alice, "nobody", encode(1))
        [(error, op)] = alice.failures
        self.assertIsInstance(error, NoSuchSession)
        self.assertEqual((error.name, op), ("nobody", RelayOp.SEND))

    def test_sendToVanished(self) -> None:
        """
        A value for a session that ended after it was routed comes back as
        NoSuchSession from the recipient's node.
        """
        alice = self.n1.open("alice")
        bob = self.n2.open("bob")
        self.cluster.settle()
        self.n2.close(bob)
        self.n1.service.backend.deliver(alice, "bob", encode(1))
        self.cluster.settle()
        [(error, op)] = alice.failures
        self.assertIsInstance(error, NoSuchSession)
        self.assertEqual((error.name, op), ("bob", RelayOp.SEND))

    def test_recipientBusyRemote(self) -> None:
        """
        A full queue on the recipient's node comes back as RecipientBusy.
        """
        alice = self.n1.open("alice")
        bob = self.n2.open("bob")
        bob.maxQueued = 2
        self.cluster.settle()
        for i in range(4):
            self.n1.service.backend.deliver(alice, "bob", encode(i))
        self.cluster.settle()
        self.assertEqual(len(bob.received), 2)
        self.assertEqual([type(e) for e, _ in alice.failures], [RecipientBusy] * 2)

    def test_boundedTowardsNode(self) -> None:
        """
        Values towards one node not yet answered are bounded: past the
        bound they are refused at once as RecipientBusy.
        """
        cluster = Cluster(maxQueued=3)
        n1, n2 = cluster.add("n1"), cluster.add("n2")
        cluster.settle(1.5)
        self.addCleanup(cluster.stopAll)
        alice, bob = n1.open("alice"), n2.open("bob")
        cluster.settle()
        for i in range(5):
            n1.service.backend.deliver(alice, "bob", encode(i))
        self.assertEqual([type(e) for e, _ in alice.failures], [RecipientBusy] * 2)
        self.assertIn("node n2", str(alice.failures[0][0]))
        cluster.settle()
        self.assertEqual(len(bob.received), 3)
        self.assertEqual(n1.service.backend.inFlight(), 0)

    def test_publish(self) -> None:
        """
        A value published reaches the topic's subscribers on every node,
        but not its sender.
        """
        alice = self.n1.open("alice")
        bob = self.n2.open("bob")
        carol = self.n3.open("carol")
        dave = self.n1.open("dave")
        for node, endpoint in ((self.n1, alice), (self.n2, bob), (self.n3, carol), (self.n1, dave)):
            node.service.backend.subscribe(endpoint, "news")
        self.cluster.settle()
        reached = self.n1.service.backend.publish(alice, "news", encode("hot"))
        self.assertEqual(reached, 1)
        self.cluster.settle()
        for endpoint in (bob, carol, dave):
            self.assertEqual(endpoint.received, [("alice", "news", encode("hot"))])
        self.assertEqual(alice.received, [])

    def test_unsubscribe(self) -> None:
        """
        A node whose last subscriber left a topic no longer receives it.
        """
        alice = self.n1.open("alice")
        bob = self.n2.open("bob")
        self.n2.service.backend.subscribe(bob, "news")
        self.cluster.settle()
        self.assertEqual(self.n1.service.replica.topicNodes("news"), ["n2"])
        self.n2.service.backend.unsubscribe(bob, "news")
        self.cluster.settle()
        self.assertEqual(self.n1.service.replica.topicNodes("news"), [])
        published = self.cluster.hub.published
        self.n1.service.backend.publish(alice, "news", encode(1))
        self.cluster.settle()
        self.assertEqual(self.cluster.hub.published, published)

    def test_detachUnsubscribes(self) -> None:
        """
        A session that ends takes its subscriptions with it.
        """
        bob = self.n2.open("bob")
        self.n2.service.backend.subscribe(bob, "news")
        self.cluster.settle()
        self.n2.close(bob)
        self.cluster.settle()
        self.assertEqual(self.n1.service.replica.topicNodes("news"), [])

    def test_serverSendTo(self) -> None:
        """
        A server's own value (no source) reaches a remote session; its
        failures are logged.
        """
        bob = self.n2.open("bob")
        self.cluster.settle()
        self.n1.service.backend.deliver(None, "bob", encode("from the server"))
        self.cluster.settle()
        self.assertEqual(bob.received, [(None, None, encode("from the server"))])


class FailureTests(ClusterTestCase):
    """
    Nodes that die or stop, Redis lost and restarted.
    """

    def test_cleanStop(self) -> None:
        """
        A node that stops removes its entries at once.
        """
        self.n1.open("alice")
        self.n2.open("bob")
        self.cluster.settle()
        self.assertEqual(self.count(self.n1.service), 2)
        self.successResultOf(self.n2.service.stopService())
        self.assertTrue(self.n2.service.left)
        self.assertEqual(self.count(self.n1.service), 1)
        self.cluster.settle()
        self.assertNotIn("n2", self.n1.service.replica.nodes)

    def test_killedNodeDisappears(self) -> None:
        """
        A node killed disappears, with its sessions, within two heartbeats,
        and values in flight to it are reported failed to their senders.
        """
        alice = self.n1.open("alice")
        bob = self.n2.open("bob")
        self.cluster.settle()
        self.cluster.hub.sever("n2")
        self.n1.service.backend.deliver(alice, "bob", encode("lost"))
        self.cluster.settle()
        [(error, _)] = alice.failures
        self.assertIsInstance(error, NoSuchSession)
        self.assertEqual(bob.received, [])
        self.cluster.settle(2.0)
        self.assertEqual(self.count(self.n1.service), 1)
        self.cluster.settle(1.0)
        self.assertNotIn("n2", self.n1.service.replica.nodes)
        self.assertIsNone(self.successResultOf(self.n3.service.get("bob")))

    def test_inFlightWhenNodeDies(self) -> None:
        """
        Values a node received but never answered before it died are
        reported failed once it is gone.
        """
        alice = self.n1.open("alice")
        bob = self.n2.open("bob")
        self.cluster.settle()
        # n2 takes the value, then dies before it answers.
        self.n2.service.backend._scheduleAnswer = lambda link: None  # type: ignore[method-assign]
        self.n1.service.backend.deliver(alice, "bob", encode("x"))
        self.cluster.settle()
        self.assertEqual(len(bob.received), 1)
        self.cluster.hub.sever("n2")
        self.cluster.settle()
        self.assertEqual(alice.failures, [])
        self.assertEqual(self.n1.service.backend.inFlight(), 1)
        self.cluster.settle(3.5)
        [(error, _)] = alice.failures
        self.assertIsInstance(error, NoSuchSession)
        self.assertIn("n2", str(error))
        self.assertEqual(self.n1.service.backend.inFlight(), 0)

    def test_redisDown(self) -> None:
        """
        While Redis is down, local sessions are served, cluster operations
        fail at once with ClusterUnavailable, one line is logged; when it is
        back (empty), nodes register again and routing works.
        """
        alice = self.n1.open("alice")
        bob = self.n1.open("bob")
        carol = self.n2.open("carol")
        self.cluster.settle()
        self.cluster.hub.stopServer()
        self.failureResultOf(self.n1.service.count(), ClusterUnavailable)
        self.failureResultOf(self.n1.service.all(), ClusterUnavailable)
        self.failureResultOf(self.n1.service.get("carol"), ClusterUnavailable)
        self.n1.service.backend.deliver(alice, "bob", encode("local"))
        self.assertEqual(bob.received, [("alice", None, encode("local"))])
        self.n1.service.backend.deliver(alice, "carol", encode("remote"))
        [(error, _)] = alice.failures
        self.assertIsInstance(error, RecipientBusy)
        self.assertIn("cannot reach the rest of the cluster", str(error))
        self.cluster.settle(5.0)
        self.assertEqual(len(self.cluster.logged("Lost the connection to")), 3)
        self.cluster.hub.startServer()
        self.cluster.settle(2.0)
        self.assertEqual(len(self.cluster.logged("Reconnected to the cluster's Redis")), 3)
        self.assertEqual(self.count(self.n3.service), 3)
        self.n1.service.backend.deliver(alice, "carol", encode("again"))
        self.cluster.settle()
        self.assertEqual(carol.received, [("alice", None, encode("again"))])

    def test_serverValuesLoggedOnce(self) -> None:
        """
        The server's own values dropped while Redis is down are logged in
        one line, then counted in one line every ten seconds at most.
        """
        self.n2.open("bob")
        self.cluster.settle()
        # Registered on n1 (it has no session of that name), so n1 routes.
        self.cluster.hub.stopServer()
        for _ in range(50):
            self.n1.service.backend.deliver(None, "bob", encode(1))
        self.assertEqual(len(self.cluster.logged("A server's value for {name} was dropped")), 1)
        self.cluster.settle(11.0)
        [summary] = self.cluster.logged("more of the server's values for other nodes")
        self.assertEqual(summary["count"], 49)

    def test_nodeLosesRedis(self) -> None:
        """
        One node that loses its connection reports what it had in flight,
        and registers again when it is back.
        """
        alice = self.n1.open("alice")
        self.n2.open("bob")
        self.cluster.settle()
        self.n1.service.backend.deliver(alice, "bob", encode(1))
        self.cluster.hub.disconnect("n1")
        [(error, _)] = alice.failures
        self.assertIsInstance(error, RecipientBusy)
        self.cluster.settle(1.0)
        self.assertTrue(self.n1.service.available)
        self.assertEqual(self.count(self.n2.service), 2)

    def test_lateHeartbeat(self) -> None:
        """
        A node whose entries expired (its heartbeats came late) registers
        again at its next heartbeat.
        """
        self.n1.open("alice")
        self.cluster.settle()
        self.cluster.hub._nodes["n1"].expiresAt = 0
        self.assertEqual(self.count(self.n2.service), 0)
        self.cluster.settle(1.0)
        self.assertEqual(self.count(self.n2.service), 1)
        self.assertTrue(self.cluster.logged("entries had expired"))

    def test_sameName(self) -> None:
        """
        Two processes with one node name are reported.
        """
        self.cluster.add("n1")
        self.cluster.settle(1.5)
        self.assertTrue(self.cluster.logged("Another process uses the node name"))


class HostileTests(ClusterTestCase):
    """
    What a hostile writer to Redis's channels can do: nothing but be
    refused and logged.
    """

    def setUp(self) -> None:
        super().setUp()
        self.alice = self.n1.open("alice")
        self.bob = self.n2.open("bob")
        self.cluster.settle()

    def test_garbage(self) -> None:
        """
        Garbage on a node's channel and on the events channel is refused,
        logged once, and never delivered.
        """
        for _ in range(3):
            self.cluster.hub.inject("{netstructer}:to:n2", b"garbage" * 10)
            self.cluster.hub.inject("{netstructer}:events", b"\x00" * 100)
        self.cluster.settle()
        self.assertEqual(self.bob.received, [])
        self.assertEqual(self.n2.service.refused["malformed"], 6)
        self.assertEqual(len(self.cluster.logged("Refused a message")), 3 * 1)

    def test_forged(self) -> None:
        """
        An envelope sealed with another key is refused.
        """
        stranger = EnvelopeSealer(Keyring([generateKey()]), b"s" * 16, self.cluster.clock.seconds)
        batch = encodeBatch(Encoder(), "n1", [deliverItem("alice", "bob", encode("evil"))])
        channel = "{netstructer}:to:n2"
        self.cluster.hub.inject(
            channel,
            stranger.seal(Kind.LINK, batch, channel, self.n2.service.incarnation),
        )
        self.cluster.settle()
        self.assertEqual(self.bob.received, [])
        self.assertEqual(self.n2.service.refused, {"unknown key": 1})

    def test_sameKeyWrongRecipient(self) -> None:
        """
        An envelope sealed with the cluster's key for another node, or as a
        broadcast, is refused as forged.
        """
        insider = EnvelopeSealer(self.cluster.key, b"i" * 16, self.cluster.clock.seconds)
        batch = encodeBatch(Encoder(), "n1", [deliverItem("alice", "bob", encode("evil"))])
        channel = "{netstructer}:to:n2"
        self.cluster.hub.inject(channel, insider.seal(Kind.LINK, batch, channel, BROADCAST))
        self.cluster.hub.inject(
            channel, insider.seal(Kind.LINK, batch, channel, self.n3.service.incarnation)
        )
        self.cluster.settle()
        self.assertEqual(self.bob.received, [])
        self.assertEqual(self.n2.service.refused["forged"], 2)

    def test_replayed(self) -> None:
        """
        Envelopes captured from the channels and published again are
        refused as replayed, never delivered twice.
        """
        captured: list[tuple[str, bytes]] = []
        original = self.cluster.hub._publish

        def capture(channel: str, data: bytes) -> int:
            captured.append((channel, data))
            return original(channel, data)

        self.cluster.hub._publish = capture  # type: ignore[method-assign]
        self.n1.service.backend.deliver(self.alice, "bob", encode("once"))
        self.cluster.settle()
        self.cluster.hub._publish = original  # type: ignore[method-assign]
        self.assertEqual(len(self.bob.received), 1)
        for channel, data in captured:
            self.cluster.hub.inject(channel, data)
        self.cluster.settle()
        self.assertEqual(len(self.bob.received), 1)
        self.assertGreaterEqual(self.n2.service.refused["replayed"], 1)
        self.assertTrue(self.cluster.logged("Refused a message"))


class ImportTests(SynchronousTestCase):
    """
    Without a cluster, no Redis client is imported.
    """

    def test_noRedisImport(self) -> None:
        """
        Importing the server, the twistd plugin's tap and the cluster
        package imports neither txredisapi nor redis.
        """
        code = (
            "import sys\n"
            "import netstructer.server, netstructer.tap, netstructer.cluster\n"
            "import twisted.plugins.netstructer_plugin\n"
            "from netstructer.cluster.memory import MemoryHub\n"
            "bad = [m for m in ('txredisapi', 'redis', 'hiredis') if m in sys.modules]\n"
            "print(','.join(bad))\n"
        )
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
        )
        self.assertEqual(out.stdout.strip(), "")


class SessionsTests(SynchronousTestCase):
    """
    The registry's observer.
    """

    def test_closedUnknown(self) -> None:
        """
        A session the service never heard of closing changes nothing.
        """
        cluster = Cluster()
        node = cluster.add("n1")
        cluster.settle(1.5)
        self.addCleanup(cluster.stopAll)
        node.service.sessionClosed(FakeSession("ghost"), None)  # type: ignore[arg-type]
        cluster.settle()
        self.assertEqual(self.successResultOf(node.service.count()), 0)


class StartTests(SynchronousTestCase):
    """
    Starting a node.
    """

    def test_startTwice(self) -> None:
        """
        Starting a running node again (as C{twistd} does, through a server's
        C{privilegedStartService} and then C{startService}) connects once and
        beats once per heartbeat.
        """
        cluster = Cluster()
        node = cluster.add("n1", start=False)
        self.addCleanup(cluster.stopAll)
        transport = node.service.transport
        starts: list[object] = []
        original = transport.start

        def start(*args: object) -> None:
            starts.append(args)
            original(*args)  # type: ignore[arg-type]

        transport.start = start  # type: ignore[method-assign]
        self.assertTrue(node.service.left)
        node.service.startService()
        node.service.startService()
        self.assertFalse(node.service.left)
        cluster.settle(1.5)
        self.assertEqual(len(starts), 1)
        self.assertTrue(node.service.available)
        self.assertEqual(
            len([c for c in cluster.clock.getDelayedCalls() if c.func == node.service._tick]), 1
        )
