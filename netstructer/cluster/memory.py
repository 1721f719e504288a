# -*- test-case-name: tests.test_cluster_memory -*-
"""
A cluster's Redis, in memory: L{MemoryHub} keeps the directory and the
channels of several nodes in one process, on a given clock, with the same
semantics as the Lua scripts of L{netstructer.cluster.redistransport}
(entries that expire, atomic updates, publish-subscribe that tells how many
subscribers a message reached).  For tests (driven by a
L{Clock<twisted.internet.task.Clock>}) and for trying a cluster out without
a Redis server.

A hub also plays the faults of a real deployment: L{MemoryHub.stopServer}
and L{MemoryHub.startServer} (a Redis restart, which forgets everything),
L{MemoryHub.disconnect} (one node loses its connection),
L{MemoryHub.sever} (a node killed: its connection goes silent and nothing
tells it) and L{MemoryHub.inject} (a hostile writer on a channel).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from twisted.internet import defer
from twisted.internet.interfaces import IReactorTime
from zope.interface import implementer

from netstructer.cluster.interfaces import (
    DirectoryChanges,
    Heartbeat,
    IClusterTransport,
    ITransportListener,
    NodeRecord,
    NodeSnapshot,
    NodeState,
)
from netstructer.errors import ClusterUnavailable

__all__ = ["DEAD_NODES_KEPT", "MemoryHub", "MemoryTransport"]

DEAD_NODES_KEPT = 60.0
"""Seconds a node stays listed (as dead) after its entries expired."""


@dataclass
class _Node:
    incarnation: bytes = b""
    startedAt: float | None = None
    heartbeatAt: float | None = None
    version: int = 0
    sessions: dict[str, bytes] = field(default_factory=dict)
    topics: set[str] = field(default_factory=set)
    expiresAt: float = 0.0


class MemoryHub:
    """
    The shared state of the nodes of one process: what a Redis server would
    hold.

    @ivar clock: The hub's clock (Redis's clock, to the nodes).
    @ivar running: Whether the "server" is up.
    @ivar reconnectDelay: Seconds a disconnected transport waits before it
        reconnects (while the server is up).
    @ivar published: How many messages were published.
    """

    def __init__(self, clock: IReactorTime, *, reconnectDelay: float = 0.5) -> None:
        self.clock = clock
        self.running = True
        self.reconnectDelay = reconnectDelay
        self.published = 0
        self._zset: dict[str, float] = {}
        self._nodes: dict[str, _Node] = {}
        self._transports: list[MemoryTransport] = []
        self._queue: list[tuple[str, bytes]] = []
        self._flushing = False

    def transport(self, name: str = "") -> MemoryTransport:
        """
        @param name: What the transport is known by in L{disconnect} and
            L{sever} (the node's name, by convention).
        @return: A new transport to this hub.
        """
        transport = MemoryTransport(self, name)
        self._transports.append(transport)
        return transport

    # Faults.

    def stopServer(self) -> None:
        """
        The server stops: every transport loses its connection.
        """
        self.running = False
        for transport in list(self._transports):
            transport._lost("the Redis server closed the connection")

    def startServer(self, *, forget: bool = True) -> None:
        """
        The server starts again (empty, unless C{forget} is false); the
        transports reconnect after their delay.
        """
        self.running = True
        if forget:
            self._zset.clear()
            self._nodes.clear()
        for transport in list(self._transports):
            transport._scheduleReconnect()

    def disconnect(self, name: str) -> None:
        """
        The transports known by C{name} lose their connection, and
        reconnect after their delay.
        """
        for transport in self._byName(name):
            transport._lost("the connection to Redis was lost")
            transport._scheduleReconnect()

    def sever(self, name: str) -> None:
        """
        The transports known by C{name} go silent for good, as when their
        process is killed: they never publish, write or receive again, and
        their node is not told (its entries expire).
        """
        for transport in self._byName(name):
            transport._severed = True
            transport.connected = False

    def inject(self, channel: str, data: bytes) -> None:
        """
        Publish raw bytes on a channel, as a hostile writer would.
        """
        self._publish(channel, data)

    def _byName(self, name: str) -> list[MemoryTransport]:
        return [t for t in self._transports if t.name == name]

    # Publish-subscribe.

    def _publish(self, channel: str, data: bytes) -> int:
        self.published += 1
        reached = sum(1 for t in self._transports if t.connected and channel in t._channels)
        self._queue.append((channel, data))
        if not self._flushing:
            self._flushing = True
            self.clock.callLater(0, self._flush)
        return reached

    def _flush(self) -> None:
        self._flushing = False
        queue, self._queue = self._queue, []
        for channel, data in queue:
            for transport in list(self._transports):
                if transport.connected and channel in transport._channels:
                    listener = transport._listener
                    if listener is not None:
                        listener.messageReceived(channel, data)

    # The directory.

    def _now(self) -> float:
        return self.clock.seconds()

    def _live(self, name: str) -> _Node | None:
        node = self._nodes.get(name)
        if node is None or node.expiresAt <= self._now():
            return None
        return node

    def _node(self, name: str, ttl: float) -> _Node:
        node = self._live(name)
        if node is None:
            node = self._nodes[name] = _Node()
        node.expiresAt = self._now() + ttl
        return node

    def _states(self) -> list[NodeState]:
        now = self._now()
        for name, expiresAt in list(self._zset.items()):
            if expiresAt <= now - DEAD_NODES_KEPT:
                del self._zset[name]
        states = []
        for name, expiresAt in sorted(self._zset.items()):
            node = self._live(name)
            states.append(
                NodeState(
                    name=name,
                    incarnation=node.incarnation if node else b"",
                    expiresAt=expiresAt,
                    heartbeatAt=node.heartbeatAt if node else None,
                    startedAt=node.startedAt if node else None,
                    sessions=len(node.sessions) if node else 0,
                    alive=expiresAt > now and node is not None,
                )
            )
        return states

    def _heartbeat(self, record: NodeRecord) -> Heartbeat:
        previous = self._live(record.name)
        before = previous.incarnation if previous is not None else b""
        node = self._node(record.name, record.ttl)
        node.incarnation = record.incarnation
        node.startedAt = record.startedAt
        node.heartbeatAt = self._now()
        self._zset[record.name] = node.expiresAt
        return Heartbeat(self._now(), self._states(), before)

    def _update(
        self,
        record: NodeRecord,
        version: int,
        changes: DirectoryChanges,
        channel: str,
        event: bytes,
    ) -> None:
        node = self._node(record.name, record.ttl)
        node.incarnation = record.incarnation
        if changes.reset:
            node.sessions.clear()
            node.topics.clear()
        node.sessions.update(changes.opened)
        for sessionId in changes.closed:
            node.sessions.pop(sessionId, None)
        node.topics.update(changes.subscribed)
        node.topics.difference_update(changes.unsubscribed)
        node.version = version
        if event:
            self._publish(channel, event)

    def _snapshot(self, name: str) -> NodeSnapshot | None:
        node = self._live(name)
        if node is None:
            return None
        return NodeSnapshot(
            name, node.incarnation, node.version, dict(node.sessions), frozenset(node.topics)
        )

    def _count(self) -> int:
        now = self._now()
        total = 0
        for name, expiresAt in self._zset.items():
            node = self._live(name)
            if expiresAt > now and node is not None:
                total += len(node.sessions)
        return total

    def _leave(self, record: NodeRecord, channel: str, event: bytes) -> None:
        node = self._live(record.name)
        if node is not None and node.incarnation == record.incarnation:
            del self._nodes[record.name]
            self._zset.pop(record.name, None)
        self._publish(channel, event)


@implementer(IClusterTransport)
class MemoryTransport:
    """
    One node's connection to a L{MemoryHub}.

    @ivar hub: The hub it connects to.
    @ivar name: What it is known by in L{MemoryHub.disconnect} and
        L{MemoryHub.sever} (the node's name, by convention).
    """

    def __init__(self, hub: MemoryHub, name: str) -> None:
        self.hub = hub
        self.name = name
        self.connected = False
        self.description = f"memory hub {name or id(hub)}"
        self._listener: ITransportListener | None = None
        self._channels: frozenset[str] = frozenset()
        self._stopped = False
        self._severed = False
        self._reconnecting = False
        self._toldDown = False

    def start(self, listener: ITransportListener, channels: list[str]) -> None:
        self._listener = listener
        self._channels = frozenset(channels)
        self._stopped = False
        self._scheduleReconnect(0)

    def stop(self) -> defer.Deferred[None]:
        self._stopped = True
        self.connected = False
        return defer.succeed(None)

    def _scheduleReconnect(self, delay: float | None = None) -> None:
        if self._reconnecting or self._stopped or self._severed or self._listener is None:
            return
        self._reconnecting = True
        self.hub.clock.callLater(
            self.hub.reconnectDelay if delay is None else delay, self._reconnect
        )

    def _reconnect(self) -> None:
        self._reconnecting = False
        if self._stopped or self._severed or self.connected or self._listener is None:
            return
        if not self.hub.running:
            if not self._toldDown:
                # A real transport reports a failed first attempt too.
                self._toldDown = True
                self._listener.transportLost("the Redis server refused the connection")
            self._scheduleReconnect()
            return
        self.connected = True
        self._toldDown = False
        self._listener.transportConnected()

    def _lost(self, reason: str) -> None:
        if not self.connected or self._severed:
            return
        self.connected = False
        self._toldDown = True
        if self._listener is not None:
            self._listener.transportLost(reason)

    def _unavailable(self) -> ClusterUnavailable:
        return ClusterUnavailable(
            f"this node is not connected to the cluster's Redis ({self.description})"
        )

    def _ready(self) -> bool:
        return self.connected and self.hub.running and not self._severed

    def publish(self, channel: str, data: bytes) -> defer.Deferred[int]:
        if not self._ready():
            return defer.fail(self._unavailable())
        return defer.succeed(self.hub._publish(channel, data))

    def heartbeat(self, node: NodeRecord) -> defer.Deferred[Heartbeat]:
        if not self._ready():
            return defer.fail(self._unavailable())
        return defer.succeed(self.hub._heartbeat(node))

    def update(
        self, node: NodeRecord, version: int, changes: DirectoryChanges, channel: str, event: bytes
    ) -> defer.Deferred[None]:
        if not self._ready():
            return defer.fail(self._unavailable())
        self.hub._update(node, version, changes, channel, event)
        return defer.succeed(None)

    def snapshot(self, name: str) -> defer.Deferred[NodeSnapshot | None]:
        if not self._ready():
            return defer.fail(self._unavailable())
        return defer.succeed(self.hub._snapshot(name))

    def nodes(self) -> defer.Deferred[Heartbeat]:
        if not self._ready():
            return defer.fail(self._unavailable())
        return defer.succeed(Heartbeat(self.hub._now(), self.hub._states(), b""))

    def count(self) -> defer.Deferred[int]:
        if not self._ready():
            return defer.fail(self._unavailable())
        return defer.succeed(self.hub._count())

    def leave(self, node: NodeRecord, channel: str, event: bytes) -> defer.Deferred[None]:
        if not self._ready():
            return defer.fail(self._unavailable())
        self.hub._leave(node, channel, event)
        return defer.succeed(None)
