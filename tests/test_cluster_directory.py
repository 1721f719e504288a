# -*- test-case-name: tests.test_cluster_directory -*-
"""
Tests for L{netstructer.cluster.directory}: a node's own part and its copy
of the others', kept by events, snapshots and heartbeats.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from netstructer.cluster.directory import APPLIED, GAP, IGNORED, LocalPart, Replica, matchTarget
from netstructer.cluster.interfaces import NodeSnapshot, NodeState
from netstructer.cluster.messages import DirectoryEvent, SessionDescriptor, encodeDescriptor
from netstructer.values import Decoder, Encoder
from tests._cluster import FakeSession

ENCODER = Encoder()
A = b"a" * 16
B = b"b" * 16


def descriptor(name: str | None, openedAt: float, host: str = "10.0.0.1", port: int = 5) -> bytes:
    return encodeDescriptor(ENCODER, name, host, f"{host}:{port}", openedAt)


def state(name: str, incarnation: bytes, expiresAt: float = 110.0, alive: bool = True) -> NodeState:
    return NodeState(name, incarnation, expiresAt, 99.0, 1.0, 0, alive)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class LocalPartTests(SynchronousTestCase):
    """
    L{LocalPart}.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.part = LocalPart("n1", ENCODER, self.clock)

    def test_openedAndClosed(self) -> None:
        """
        Sessions get ids and descriptors; changes are taken once, with a
        version each.
        """
        alice = FakeSession("alice", "::ffff:10.0.0.9")
        d = self.part.opened(alice)
        self.assertEqual((d.node, d.name, d.host, d.openedAt), ("n1", "alice", "10.0.0.9", 100.0))
        self.assertIs(self.part.opened(alice), d)
        self.assertIs(self.part.session(d.sessionId), alice)
        changes = self.part.takeChanges()
        assert changes is not None
        self.assertEqual(list(changes.opened), [d.sessionId])
        self.assertEqual(self.part.version, 1)
        self.assertIsNone(self.part.takeChanges())
        self.assertEqual(self.part.closed(alice), d)
        self.assertIsNone(self.part.closed(alice))
        changes = self.part.takeChanges()
        assert changes is not None
        self.assertEqual(changes.closed, [d.sessionId])
        self.assertEqual(len(self.part), 0)

    def test_openedAndClosedAtOnce(self) -> None:
        """
        A session that opens and closes between two writes is never
        written; nor is a topic subscribed and unsubscribed.
        """
        alice = FakeSession("alice")
        self.part.opened(alice)
        self.part.closed(alice)
        self.part.subscribed("t")
        self.part.unsubscribed("t")
        self.assertIsNone(self.part.takeChanges())
        self.part.subscribed("t")
        self.part.takeChanges()
        self.part.unsubscribed("t")
        self.part.subscribed("t")
        self.assertIsNone(self.part.takeChanges())

    def test_everything(self) -> None:
        """
        The whole part replaces what Redis holds.
        """
        self.part.opened(FakeSession("alice"))
        self.part.subscribed("t")
        changes = self.part.everything()
        self.assertTrue(changes.reset)
        self.assertEqual((len(changes.opened), changes.subscribed), (1, ["t"]))
        self.assertIsNone(self.part.takeChanges())


class ReplicaTests(SynchronousTestCase):
    """
    L{Replica}.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.replica = Replica("n1", Decoder(), self.clock, grace=2.0)

    def snapshot(self, name: str, incarnation: bytes, version: int, **sessions: bytes) -> None:
        self.replica.applySnapshot(NodeSnapshot(name, incarnation, version, sessions, frozenset()))

    def test_nodes(self) -> None:
        """
        A heartbeat's list adds new nodes (to be read), drops gone ones,
        and ignores this node.
        """
        gone, unread = self.replica.applyNodes(
            100.0, [state("n1", A), state("n2", A), state("n3", B, alive=False)]
        )
        self.assertEqual((gone, unread), ([], ["n2"]))
        self.snapshot("n2", A, 1)
        gone, unread = self.replica.applyNodes(100.0, [state("n2", B)])
        self.assertEqual((gone, unread), (["n2"], ["n2"]))
        gone, unread = self.replica.applyNodes(100.0, [])
        self.assertEqual((gone, unread), (["n2"], []))

    def test_deadline(self) -> None:
        """
        A node is alive until its entries expire, by this node's clock.
        """
        self.replica.applyNodes(50.0, [state("n2", A, expiresAt=52.0)])
        self.assertTrue(self.replica.alive("n2"))
        self.clock.now = 102.5
        self.assertFalse(self.replica.alive("n2"))
        self.assertIsNone(self.replica.incarnationOf("n2"))
        self.assertEqual(self.replica.expired(), ["n2"])
        self.assertEqual(self.replica.nodes, {})

    def test_slack(self) -> None:
        """
        With slack, a node stays alive that long after its entries expire
        as the last list read showed them: until the next list, which
        shows it renewed (or gone).
        """
        replica = Replica("n1", Decoder(), self.clock, grace=2.0, slack=1.0)
        self.clock.now = 100.0
        # n2 renewed its entries a hair before the list was read: the next
        # read, one heartbeat later, comes a little late.
        replica.applyNodes(50.0, [state("n2", A, expiresAt=51.001)])
        self.clock.now = 101.01
        self.assertEqual(replica.expired(), [])
        self.assertEqual(replica.incarnationOf("n2"), A)
        gone, _ = replica.applyNodes(51.01, [state("n2", A, expiresAt=52.0)])
        self.assertEqual(gone, [])
        self.clock.now = 102.99
        self.assertTrue(replica.alive("n2"))
        self.clock.now = 103.01
        self.assertEqual(replica.expired(), ["n2"])

    def test_events(self) -> None:
        """
        Events apply in order; an old one is ignored; a skipped version is a
        gap, filled by reading the node, after which waiting events apply.
        """
        self.snapshot("n2", A, 1, s1=descriptor("alice", 1.0))
        ev = DirectoryEvent
        self.assertEqual(
            self.replica.applyEvent(ev("n2", 2, opened={"s2": descriptor("bob", 2.0)}), A), APPLIED
        )
        self.assertEqual(self.replica.applyEvent(ev("n2", 2), A), IGNORED)
        self.assertEqual(self.replica.applyEvent(ev("n2", 4, closed=["s1"]), A), GAP)
        self.assertEqual(self.replica.applyEvent(ev("n2", 5, closed=["s2"]), A), GAP)
        self.assertEqual(
            self.replica.applySnapshot(
                NodeSnapshot(
                    "n2",
                    A,
                    3,
                    {"s1": descriptor("alice", 1.0), "s2": descriptor("bob", 2.0)},
                    frozenset(),
                )
            ),
            [],
        )
        self.assertIsNone(self.replica.resolve("alice"))
        self.assertIsNone(self.replica.resolve("bob"))
        self.assertEqual(self.replica.nodes["n2"].version, 5)

    def test_snapshotStillMissing(self) -> None:
        """
        A snapshot older than a gap asks to be read again.
        """
        self.snapshot("n2", A, 1)
        self.replica.applyEvent(DirectoryEvent("n2", 4), A)
        again = self.replica.applySnapshot(NodeSnapshot("n2", A, 2, {}, frozenset()))
        self.assertEqual(again, ["n2"])

    def test_reset(self) -> None:
        """
        A reset replaces a node's part, even a new incarnation's.
        """
        self.snapshot("n2", A, 3, s1=descriptor("alice", 1.0))
        event = DirectoryEvent("n2", 1, reset=True, opened={"s9": descriptor("bob", 5.0)})
        self.assertEqual(self.replica.applyEvent(event, B), APPLIED)
        self.assertIsNone(self.replica.resolve("alice"))
        self.assertEqual(self.replica.resolve("bob").sessionId, "s9")
        self.assertEqual(self.replica.incarnationOf("n2"), B)

    def test_left(self) -> None:
        """
        A node that left is forgotten; a "left" from another incarnation is
        ignored.
        """
        self.snapshot("n2", A, 1, s1=descriptor("alice", 1.0))
        self.assertEqual(self.replica.applyEvent(DirectoryEvent("n2", 2, left=True), B), IGNORED)
        self.assertEqual(self.replica.applyEvent(DirectoryEvent("n2", 2, left=True), A), APPLIED)
        self.assertIsNone(self.replica.resolve("alice"))

    def test_unknownNodeEvent(self) -> None:
        """
        An event of a node never read is a gap.
        """
        self.assertEqual(self.replica.applyEvent(DirectoryEvent("n5", 3), A), GAP)
        self.assertEqual(self.replica.applyEvent(DirectoryEvent("n1", 3), A), IGNORED)

    def test_newest(self) -> None:
        """
        A name held on several nodes resolves to its newest session; lookups
        by key and address work too.
        """
        self.snapshot("n2", A, 1, s1=descriptor("alice", 1.0, "10.0.0.2", 7))
        self.snapshot("n3", B, 1, s1=descriptor("alice", 2.0, "10.0.0.3", 8))
        self.assertEqual(self.replica.resolve("alice").node, "n3")
        self.assertEqual(self.replica.find("10.0.0.2:7").node, "n2")
        self.assertEqual(self.replica.find("10.0.0.2").node, "n2")
        self.assertIsNone(self.replica.find("10.9.9.9"))
        self.assertEqual(len(list(self.replica.descriptors())), 2)
        self.assertEqual(self.replica.session("n2", "s1").host, "10.0.0.2")

    def test_topics(self) -> None:
        """
        Topics map to the live nodes that have subscribers.
        """
        self.replica.applySnapshot(NodeSnapshot("n2", A, 1, {}, frozenset({"t"})))
        self.replica.applyEvent(DirectoryEvent("n2", 2, subscribed=["u"], unsubscribed=["t"]), A)
        self.assertEqual(self.replica.topicNodes("t"), [])
        self.assertEqual(self.replica.topicNodes("u"), ["n2"])
        self.clock.now += 5
        self.assertEqual(self.replica.topicNodes("u"), [])

    def test_malformedDescriptor(self) -> None:
        """
        A malformed descriptor is dropped and counted.
        """
        self.snapshot("n2", A, 1, s1=b"\xc1")
        self.assertEqual(self.replica.malformed, 1)


class TargetTests(SynchronousTestCase):
    """
    L{matchTarget}.
    """

    def test_targets(self) -> None:
        """
        Names, session keys and addresses match as the registry's do.
        """
        d = SessionDescriptor("n1", "1", "alice.x", "10.0.0.1", "10.0.0.1:5", 1.0)
        six = SessionDescriptor("n1", "2", None, "::1", "[::1]:6", 1.0)
        self.assertTrue(matchTarget("alice.x")(d))
        self.assertTrue(matchTarget("10.0.0.1:5")(d))
        self.assertTrue(matchTarget("10.0.0.1")(d))
        self.assertFalse(matchTarget("10.0.0.1:6")(d))
        self.assertTrue(matchTarget("[::1]:6")(six))
        self.assertTrue(matchTarget("::1")(six))
        self.assertTrue(matchTarget("0:0::1")(six))
