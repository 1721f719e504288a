# -*- test-case-name: tests.test_cluster_server -*-
"""
Three real L{Server}s, each a node of one cluster on an in-memory Redis
(L{MemoryHub}), with real clients connected in memory: what clients see of
a cluster (C{sendTo}, C{publish}, their errors, a server's C{sendBuffer} to
a session of another node), with the wiring a server makes for a cluster
(its relay on the cluster's backend, the cluster observing its registry).
"""

from __future__ import annotations

from twisted.internet.testing import MemoryReactorClock
from twisted.logger import LogEvent, Logger
from twisted.trial.unittest import SynchronousTestCase

from netstructer.cluster import ClusterService, RemoteSession
from netstructer.cluster.memory import MemoryHub
from netstructer.errors import NoSuchSession
from netstructer.keys import Keyring, generateKey
from netstructer.protocol import BridgeConfig
from netstructer.relay import RelayedValue
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
                relayBackend=cluster.backend,
            )
            server.registry.addObserver(cluster)
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
