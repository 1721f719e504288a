# -*- test-case-name: tests.test_cluster_memory -*-
"""
The seam between a cluster node's logic and its Redis server: the small
set of operations the directory and the router need
(L{IClusterTransport}), and what a transport tells its node
(L{ITransportListener}).

Two transports provide it: L{RedisTransport
<netstructer.cluster.redistransport.RedisTransport>} (a real Redis or Valkey
server, through txredisapi) and L{MemoryHub<netstructer.cluster.memory.MemoryHub>}'s
(one process's nodes sharing a dictionary, for tests).  Each operation that
writes the directory is atomic in Redis (one Lua script), so a node that
dies between two of them never leaves half an update behind.

Times that come back from a transport are Redis's clock, in seconds.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from twisted.internet.defer import Deferred
from zope.interface import Attribute, Interface

__all__ = [
    "DirectoryChanges",
    "Heartbeat",
    "IClusterTransport",
    "ITransportListener",
    "NodeRecord",
    "NodeSnapshot",
    "NodeState",
]


@dataclass(frozen=True, slots=True)
class NodeRecord:
    """
    What a node writes about itself at each heartbeat.

    @ivar name: The node's name.
    @ivar incarnation: The node's incarnation (16 random bytes a node draws
        when it starts).
    @ivar startedAt: When the node started, on its wall clock, in seconds.
    @ivar heartbeat: Its heartbeat interval, in seconds.
    @ivar ttl: How long its entries live without a new heartbeat, in
        seconds.
    """

    name: str
    incarnation: bytes
    startedAt: float
    heartbeat: float
    ttl: float


@dataclass(frozen=True, slots=True)
class NodeState:
    """
    A node as the directory in Redis shows it.

    @ivar name: Its name.
    @ivar incarnation: Its incarnation, or C{b""} once its entries expired.
    @ivar expiresAt: When its entries expire without a new heartbeat (Redis's
        clock, seconds).
    @ivar heartbeatAt: When it last sent a heartbeat (Redis's clock), or
        L{None} once its entries expired.
    @ivar startedAt: When it started (its own clock), or L{None}.
    @ivar sessions: How many sessions it has registered.
    @ivar alive: Whether its entries have not expired.
    """

    name: str
    incarnation: bytes
    expiresAt: float
    heartbeatAt: float | None
    startedAt: float | None
    sessions: int
    alive: bool


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """
    What a heartbeat learns.

    @ivar now: Redis's clock when it ran, in seconds.
    @ivar nodes: Every node listed in the directory, alive or recently dead,
        this one included.
    @ivar previous: The incarnation this node's entry held before, C{b""}
        if none: another incarnation than this node's means another process
        uses the same node name (or this node restarted).
    """

    now: float
    nodes: list[NodeState]
    previous: bytes


@dataclass(slots=True)
class DirectoryChanges:
    """
    Changes of one node's part of the directory, written at once.

    @ivar opened: Sessions opened, by session id: their encoded descriptors.
    @ivar closed: The ids of sessions closed.
    @ivar subscribed: Topics that have local subscribers from now on.
    @ivar unsubscribed: Topics that have no local subscriber any more.
    @ivar reset: Whether the node's part is replaced rather than changed
        (its sessions and topics are exactly C{opened} and C{subscribed}).
    """

    opened: dict[str, bytes] = field(default_factory=dict)
    closed: list[str] = field(default_factory=list)
    subscribed: list[str] = field(default_factory=list)
    unsubscribed: list[str] = field(default_factory=list)
    reset: bool = False

    def __bool__(self) -> bool:
        return bool(
            self.reset or self.opened or self.closed or self.subscribed or self.unsubscribed
        )


@dataclass(frozen=True, slots=True)
class NodeSnapshot:
    """
    One node's part of the directory, read at once.

    @ivar name: The node's name.
    @ivar incarnation: Its incarnation.
    @ivar version: The version of its part (it counts the node's updates).
    @ivar sessions: Its sessions' encoded descriptors, by session id.
    @ivar topics: The topics it has subscribers to.
    """

    name: str
    incarnation: bytes
    version: int
    sessions: dict[str, bytes]
    topics: frozenset[str]


class ITransportListener(Interface):
    """
    What a transport tells the node it serves.
    """

    def transportConnected() -> None:
        """
        The transport is connected (logged in, database selected,
        subscribed to its channels): every operation may be used.
        """

    def transportLost(reason: str) -> None:  # noqa: N805
        """
        The transport lost its connection (or could not make it); every
        operation fails with L{ClusterUnavailable
        <netstructer.errors.ClusterUnavailable>} until
        L{transportConnected} is called again.  It reconnects by itself.

        @param reason: Why, for the log (never a password).
        """

    def messageReceived(channel: str, data: bytes) -> None:  # noqa: N805
        """
        A message arrived on one of the transport's channels.  Untrusted: it
        is opened with L{EnvelopeOpener
        <netstructer.cluster.envelope.EnvelopeOpener>} before any use.
        """


class IClusterTransport(Interface):
    """
    A cluster node's connection to Redis: publish-subscribe, and the
    directory's atomic operations.  Every method returning a Deferred fails
    it with L{ClusterUnavailable<netstructer.errors.ClusterUnavailable>} at
    once while the transport is not connected.
    """

    connected = Attribute("Whether every operation may be used now.")
    description = Attribute("Where the transport connects, for logs (no password).")

    def start(listener: ITransportListener, channels: list[str]) -> None:  # noqa: N805
        """
        Connect, subscribe to C{channels}, and keep doing so (with
        backoff) until L{stop}.
        """

    def stop() -> Deferred[None]:
        """
        Disconnect for good.

        @return: Fires once the connections are closed.
        """

    def publish(channel: str, data: bytes) -> Deferred[int]:  # noqa: N805
        """
        Publish a message.

        @return: Fires with how many subscribers received it.
        """

    def heartbeat(node: NodeRecord) -> Deferred[Heartbeat]:  # noqa: N805
        """
        Register the node (or renew its registration) for C{node.ttl}
        seconds, renew its sessions' and topics' entries for as long, forget
        nodes dead for a while, and list the nodes.
        """

    def update(
        node: NodeRecord,  # noqa: N805
        version: int,
        changes: DirectoryChanges,
        channel: str,
        event: bytes,
    ) -> Deferred[None]:
        """
        Apply C{changes} to the node's part of the directory, set its
        version to C{version}, and publish C{event} on C{channel}: all at
        once.
        """

    def snapshot(name: str) -> Deferred[NodeSnapshot | None]:  # noqa: N805
        """
        Read one node's part of the directory at once.

        @return: Fires with it, or L{None} if that node is not registered.
        """

    def nodes() -> Deferred[Heartbeat]:
        """
        List the nodes without registering one (C{previous} is C{b""}).
        """

    def count() -> Deferred[int]:
        """
        @return: Fires with how many sessions the live nodes have
            registered.
        """

    def leave(node: NodeRecord, channel: str, event: bytes) -> Deferred[None]:  # noqa: N805
        """
        Remove the node and everything it registered, and publish C{event}
        on C{channel}, at once: a clean stop.
        """
