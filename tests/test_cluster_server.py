# -*- test-case-name: tests.test_cluster_server -*-
"""
Three real L{Server}s, each a node of one cluster on an in-memory Redis
(L{MemoryHub}), with real clients connected in memory: what clients see of
a cluster (C{sendTo}, C{publish}, their errors, a server's C{sendBuffer} to
a session of another node), through the wiring C{Server(cluster=...)} makes
(its relay on the cluster's backend, the cluster observing its registry and
stopping before it), and that wiring's settings.
"""

from __future__ import annotations

import socket

from twisted.internet.testing import MemoryReactorClock
from twisted.logger import LogEvent, Logger
from twisted.trial.unittest import SynchronousTestCase

from netstructer.cluster import ClusterService, RemoteSession
from netstructer.cluster.memory import MemoryHub
from netstructer.errors import ClusterError, NoSuchSession, RelayRefused, ServerInitializeError
from netstructer.keys import Keyring, generateKey
from netstructer.protocol import BridgeConfig
from netstructer.relay import LocalRelayBackend, RelayedValue
from netstructer.relay.policy import AllowNamed
from netstructer.server import Server
from tests.test_registry import Link, Network

NAMES = ("alice", "bob", "carol")
KEYS = {name: generateKey() for name in NAMES}
SERVER_KEYRING = Keyring(list(KEYS.values()), names=list(NAMES))
CLUSTER_KEY = Keyring([generateKey()])


class ThreeServers(SynchronousTestCase):
    """
    Nodes n1, n2 and n3, and a client per name: alice on n1, bob on n2,
    carol on n3.
    """

    def setUp(self) -> None:
        self.reactor = MemoryReactorClock()
        self.reactor.advance(1_700_000_000)
        self.events: list[LogEvent] = []
        self.logger = Logger(observer=self.events.append)
        self.hub = MemoryHub(self.reactor)
        self.servers: dict[str, Server] = {}
        self.clusters: dict[str, ClusterService] = {}
        self.networks: dict[str, Network] = {}
        for node in ("n1", "n2", "n3"):
            cluster = ClusterService(
                "redis://127.0.0.1/0",
                node,
                CLUSTER_KEY,
                reactor=self.reactor,
                transport=self.hub.transport(node),
                logger=self.logger,
            )
            server = Server(
                "tcp:5000",
                SERVER_KEYRING,
                reactor=self.reactor,
                logger=self.logger,
                relay=True,
                cluster=cluster,
            )
            cluster.startService()
            self.addCleanup(cluster.stopService)
            self.servers[node] = server
            self.clusters[node] = cluster
            self.networks[node] = Network(server.factory, self.reactor, self.logger)
        self.settle(1.5)
        self.port = 40000
        self.alice = self.connect("n1", "alice")
        self.bob = self.connect("n2", "bob")
        self.carol = self.connect("n3", "carol")

    def settle(self, seconds: float = 0.0) -> None:
        """
        Move bytes and let time pass.
        """
        elapsed = 0.0
        while True:
            for network in self.networks.values():
                network.pump()
            if elapsed >= seconds:
                break
            self.reactor.advance(0.05)
            elapsed += 0.05
        for _ in range(5):
            # Nodes answer batches within a few milliseconds.
            self.reactor.advance(0.002)
            for network in self.networks.values():
                network.pump()

    def connect(self, node: str, name: str) -> Link:
        """
        Connect the client of C{name} to the server of C{node}.
        """
        self.port += 1
        link = self.networks[node].connect("127.0.0.1", self.port, BridgeConfig.fromKey(KEYS[name]))
        assert link is not None
        self.settle()
        self.assertTrue(link.client.established)
        return link


class ClientTests(ThreeServers):
    """
    What clients of different nodes do to each other.
    """

    def test_sendToAcrossNodes(self) -> None:
        """
        A client's values reach a client of another node, in order, with
        the sender's name.
        """
        for i in range(10):
            self.alice.client.sendTo("bob", {"n": i})
        self.settle()
        received = [tuple(self.successResultOf(self.bob.client.recvFrom())) for _ in range(10)]
        self.assertEqual(received, [("alice", {"n": i}) for i in range(10)])

    def test_noSuchSessionAcrossNodes(self) -> None:
        """
        A send to a name no node holds fails for the sender, whose session
        stays open.
        """
        self.alice.client.sendTo("nobody", 1)
        self.settle()
        error = self.assertRaises(NoSuchSession, self.alice.client.sendTo, "nobody", 2)
        self.assertEqual(error.name, "nobody")
        self.assertTrue(self.alice.client.established)

    def test_vanishedAcrossNodes(self) -> None:
        """
        A send to a client that disconnected from its node meanwhile fails
        for the sender with NoSuchSession.
        """
        self.bob.client.close()
        self.settle()
        self.alice.client.sendTo("bob", 1)
        self.settle()
        d = self.alice.client.recvFrom()
        self.failureResultOf(d, NoSuchSession)

    def test_publishAcrossNodes(self) -> None:
        """
        A value published reaches subscribers on every node.
        """
        self.bob.client.subscribe("news")
        self.carol.client.subscribe("news")
        self.settle()
        self.alice.client.publish("news", "extra")
        self.settle()
        for link in (self.bob, self.carol):
            self.assertEqual(
                self.successResultOf(link.client.recvFrom()),
                RelayedValue("alice", "extra", "news"),
            )

    def test_serverSendBufferToRemoteSession(self) -> None:
        """
        A server finds a client of another node with the cluster's get, and
        sends it a value.
        """
        remote = self.successResultOf(self.clusters["n1"].get("carol"))
        self.assertIsInstance(remote, RemoteSession)
        remote.sendBuffer(["from", "n1"])
        self.settle()
        self.assertEqual(self.successResultOf(self.carol.client.recvBuffer()), ["from", "n1"])

    def test_countAndAll(self) -> None:
        """
        The cluster counts and lists every node's clients.
        """
        self.assertEqual(self.successResultOf(self.clusters["n2"].count()), 3)
        found = self.successResultOf(self.clusters["n3"].all())
        self.assertEqual(
            sorted((d.name, d.node) for d in found),
            [("alice", "n1"), ("bob", "n2"), ("carol", "n3")],
        )

    def test_serverCountAllGet(self) -> None:
        """
        A server's C{count}, C{all} and C{get} answer for itself, and, with
        C{cluster=True}, for the whole cluster (Deferreds).
        """
        server = self.servers["n2"]
        self.assertEqual(server.count(), 1)
        self.assertEqual(self.successResultOf(server.count(cluster=True)), 3)
        self.assertEqual([p.name for p in server.all()], ["bob"])
        found = self.successResultOf(server.all(cluster=True))
        self.assertEqual(sorted(d.name for d in found), ["alice", "bob", "carol"])
        self.assertIsNone(server.get("alice"))
        remote = self.successResultOf(server.get("alice", cluster=True))
        self.assertIsInstance(remote, RemoteSession)
        self.assertEqual(remote.node, "n1")
        local = self.successResultOf(server.get("bob", cluster=True))
        self.assertIs(local, server.get("bob"))
        remote.sendBuffer("hello from n2")
        self.settle()
        self.assertEqual(self.successResultOf(self.alice.client.recvBuffer()), "hello from n2")

    def test_serverSendToAndPublish(self) -> None:
        """
        A server's own C{sendTo} and C{publish} reach clients of other
        nodes.
        """
        self.carol.client.subscribe("news")
        self.settle()
        self.servers["n1"].sendTo("bob", "to bob")
        self.servers["n2"].publish("news", "to carol")
        self.settle()
        self.assertEqual(
            self.successResultOf(self.bob.client.recvFrom()), RelayedValue(None, "to bob", None)
        )
        self.assertEqual(
            self.successResultOf(self.carol.client.recvFrom()),
            RelayedValue(None, "to carol", "news"),
        )


class WiringTests(SynchronousTestCase):
    """
    What C{Server(cluster=...)} builds, and the settings it refuses.
    """

    def cluster(self, reactor: MemoryReactorClock, name: str = "n1") -> ClusterService:
        return ClusterService(
            "redis://127.0.0.1/0",
            name,
            CLUSTER_KEY,
            reactor=reactor,
            transport=MemoryHub(reactor).transport(name),
        )

    def test_noCluster(self) -> None:
        """
        Without C{cluster}, a server has none, and the cluster-wide lookups
        say so.
        """
        server = Server("tcp:5000", SERVER_KEYRING, reactor=MemoryReactorClock())
        self.assertIsNone(server.cluster)
        for call in (
            lambda: server.count(cluster=True),
            lambda: server.all(cluster=True),
            lambda: server.get("alice", cluster=True),
        ):
            error = self.assertRaises(ClusterError, call)
            self.assertIn("not a node of a cluster", str(error))

    def test_childAfterRegistry(self) -> None:
        """
        The cluster observes the registry, and is the server's child after
        it: it stops first.
        """
        reactor = MemoryReactorClock()
        cluster = self.cluster(reactor)
        server = Server("tcp:5000", SERVER_KEYRING, reactor=reactor, cluster=cluster)
        self.assertIs(server.cluster, cluster)
        children = list(server)
        self.assertLess(children.index(server.registry), children.index(cluster))
        self.assertIn(cluster, server.registry._observers._observers)

    def test_relayStaysOff(self) -> None:
        """
        A cluster does not turn relay on; with relay on, the relay routes
        through the cluster.
        """
        reactor = MemoryReactorClock()
        off = Server("tcp:5000", SERVER_KEYRING, reactor=reactor, cluster=self.cluster(reactor))
        self.assertIsNone(off.relay.backend)
        self.assertRaises(RelayRefused, off.sendTo, "bob", 1)
        cluster = self.cluster(reactor, "n2")
        on = Server("tcp:5000", SERVER_KEYRING, reactor=reactor, cluster=cluster, relay=True)
        self.assertIs(on.relay.backend, cluster.backend)
        policy = AllowNamed()
        cluster = self.cluster(reactor, "n3")
        ruled = Server(
            "tcp:5000", SERVER_KEYRING, reactor=reactor, cluster=cluster, relayPolicy=policy
        )
        self.assertIs(ruled.relay.backend, cluster.backend)

    def test_fromURL(self) -> None:
        """
        With a URL, the server makes the cluster's service: its node name,
        key and heartbeat from the options, its limits from the server's.
        """
        server = Server(
            "tcp:5000",
            SERVER_KEYRING,
            reactor=MemoryReactorClock(),
            cluster="redis://127.0.0.1:6390/2?prefix=test",
            clusterKey=CLUSTER_KEY,
            nodeName="n7",
            clusterHeartbeat=0.5,
            maxBufferSize=1000,
        )
        cluster = server.cluster
        assert cluster is not None
        self.assertEqual((cluster.nodeName, cluster.heartbeat), ("n7", 0.5))
        self.assertEqual((cluster.url.port, cluster.url.db, cluster.url.prefix), (6390, 2, "test"))
        self.assertEqual(cluster._limits.maxSize, 1000)

    def test_defaultNodeName(self) -> None:
        """
        The node's name is the host's name by default.
        """
        server = Server(
            "tcp:5000",
            SERVER_KEYRING,
            reactor=MemoryReactorClock(),
            cluster="redis://127.0.0.1/0",
            clusterKey=CLUSTER_KEY,
        )
        assert server.cluster is not None
        self.assertEqual(server.cluster.nodeName, socket.gethostname())

    def test_refused(self) -> None:
        """
        A URL without a key, a bad URL or node name, cluster settings
        without a cluster, and a cluster with a relay backend are refused,
        naming the problem and never the password.
        """
        reactor = MemoryReactorClock()

        def make(**options: object) -> Server:
            return Server("tcp:5000", SERVER_KEYRING, reactor=reactor, **options)

        error = self.assertRaises(ServerInitializeError, make, cluster="redis://127.0.0.1/0")
        self.assertIn("--cluster-key", str(error))
        error = self.assertRaises(
            ServerInitializeError,
            make,
            cluster="http://user:s3cret@127.0.0.1/0",
            clusterKey=CLUSTER_KEY,
        )
        self.assertIn("redis://", str(error))
        self.assertNotIn("s3cret", str(error))
        error = self.assertRaises(
            ServerInitializeError,
            make,
            cluster="redis://127.0.0.1/0",
            clusterKey=CLUSTER_KEY,
            nodeName="bad name",
        )
        self.assertIn("bad name", str(error))
        error = self.assertRaises(TypeError, make, nodeName="n1")
        self.assertIn("cluster=", str(error))
        error = self.assertRaises(
            TypeError, make, cluster=self.cluster(reactor), clusterKey=CLUSTER_KEY
        )
        self.assertIn("clusterKey", str(error))
        error = self.assertRaises(
            TypeError,
            make,
            cluster=self.cluster(reactor),
            relayBackend=LocalRelayBackend(),
        )
        self.assertIn("not both", str(error))
