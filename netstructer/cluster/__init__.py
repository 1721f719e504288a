# -*- test-case-name: tests.test_cluster_service -*-
"""
Clusters: several NetStructer servers (nodes) behind one TCP load balancer
share one directory of sessions and route relayed values between them
through a Redis (or Valkey) server, as Socket.IO's Redis adapter or
channels_redis do.

    - L{ClusterService}: one node (a Twisted service for the server to run):
      its relay backend, the cluster-wide C{count}, C{all} and C{get}, and
      the registry observer that keeps the directory current.
    - L{clusterStatus}: what C{netstructer cluster status} shows.
    - L{parseClusterURL}, L{clusterKeyring}: the settings.

Redis is trusted with routing and presence only: every value, and every
message a node acts on, crosses it encrypted and authenticated under the
cluster's key (L{netstructer.cluster.envelope}).  Session descriptors
(name, address, node, opening time) are kept in clear, so that an operator
can see them.

Importing this package does not import a Redis client: only connecting to
a real Redis does (L{netstructer.cluster.redistransport}).
"""

from __future__ import annotations

from netstructer.cluster.config import ClusterURL, clusterKeyring, parseClusterURL
from netstructer.cluster.interfaces import IClusterTransport, NodeState
from netstructer.cluster.messages import SessionDescriptor
from netstructer.cluster.router import ClusterRelayBackend
from netstructer.cluster.service import DEFAULT_HEARTBEAT, ClusterService, RemoteSession
from netstructer.cluster.status import ClusterStatus, clusterStatus, formatStatus

__all__ = [
    "DEFAULT_HEARTBEAT",
    "ClusterRelayBackend",
    "ClusterService",
    "ClusterStatus",
    "ClusterURL",
    "IClusterTransport",
    "NodeState",
    "RemoteSession",
    "SessionDescriptor",
    "clusterKeyring",
    "clusterStatus",
    "formatStatus",
    "parseClusterURL",
]
