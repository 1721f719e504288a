# -*- test-case-name: tests.test_cluster_status -*-
"""
Tests for L{netstructer.cluster.status}: what C{netstructer cluster status}
reads and shows.
"""

from __future__ import annotations

import json

from twisted.trial.unittest import SynchronousTestCase

from netstructer.cluster import clusterStatus, formatStatus
from netstructer.cluster.status import statusData
from netstructer.errors import ClusterUnavailable
from tests._cluster import URL, Cluster


class StatusTests(SynchronousTestCase):
    """
    A cluster of two nodes, one of which dies.
    """

    def setUp(self) -> None:
        self.cluster = Cluster()
        self.n1 = self.cluster.add("n1")
        self.n2 = self.cluster.add("n2")
        self.cluster.settle(1.5)
        self.addCleanup(self.cluster.stopAll)
        self.n1.open("alice", "10.0.0.1")
        self.n2.open("bob", "10.0.0.2")
        self.n2.open(None, "10.0.0.3")
        self.cluster.settle()

    def status(self) -> object:
        d = clusterStatus(URL, reactor=self.cluster.clock, transport=self.cluster.hub.transport())
        self.cluster.settle()
        return self.successResultOf(d)

    def test_status(self) -> None:
        """
        The status lists the nodes and their sessions.
        """
        status = self.status()
        self.assertEqual(
            [(n.name, n.alive, n.sessions) for n in status.nodes],
            [
                ("n1", True, 1),
                ("n2", True, 2),
            ],
        )
        self.assertEqual(
            sorted(d.key.split(":")[0] for d in status.sessions),
            [
                "10.0.0.1",
                "10.0.0.2",
                "10.0.0.3",
            ],
        )
        text = formatStatus(status)
        self.assertIn("2 of 2 nodes alive, 3 sessions", text)
        self.assertIn("(anonymous)", text)
        self.assertNotIn("alice", formatStatus(status, sessions=False))
        data = json.loads(json.dumps(statusData(status)))
        self.assertEqual(len(data["nodes"]), 2)

    def test_deadNode(self) -> None:
        """
        A node that died is shown dead for a while, without its sessions.
        """
        self.cluster.hub.sever("n2")
        self.cluster.settle(2.5)
        status = self.status()
        self.assertEqual([(n.name, n.alive) for n in status.nodes], [("n1", True), ("n2", False)])
        self.assertEqual(len(status.sessions), 1)
        self.assertIn("expired", formatStatus(status))

    def test_unavailable(self) -> None:
        """
        Without Redis, the status fails with ClusterUnavailable.
        """
        self.cluster.hub.stopServer()
        transport = self.cluster.hub.transport()
        d = clusterStatus(URL, reactor=self.cluster.clock, transport=transport)
        self.cluster.settle()
        self.failureResultOf(d, ClusterUnavailable)
