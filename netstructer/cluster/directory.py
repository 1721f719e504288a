# -*- test-case-name: tests.test_cluster_directory -*-
"""
The cluster's directory of sessions, as one node keeps it: its own part
(L{LocalPart}: the sessions connected to it and the topics they subscribe
to, and the changes not yet written to Redis) and its copy of the other
nodes' parts (L{Replica}), kept current by their events and, when one was
missed, by reading that node's part again.  Sans-IO: no transport, no
timer; L{ClusterService<netstructer.cluster.service.ClusterService>} moves
the bytes.

Each node writes only its own part, and numbers its updates (its
I{version}); an event carries the version it makes, so a copy that sees a
version skipped knows it missed one and reads that node's part again
(L{Replica.applyEvent} answers L{GAP}).

Which session a name designates: the most recently opened one in the
whole cluster (by the opening times its node's wall clock gave), as the
relay of one server picks the newest of its sessions.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from netstructer.cluster.interfaces import DirectoryChanges, NodeSnapshot, NodeState
from netstructer.cluster.messages import (
    DirectoryEvent,
    SessionDescriptor,
    decodeDescriptor,
    encodeDescriptor,
)
from netstructer.errors import DecodeError
from netstructer.registry import canonicalHost
from netstructer.values import Decoder, Encoder

__all__ = [
    "APPLIED",
    "GAP",
    "IGNORED",
    "LocalPart",
    "RemoteNode",
    "Replica",
    "matchTarget",
]

APPLIED = "applied"
"""L{Replica.applyEvent}: the event changed the copy."""
IGNORED = "ignored"
"""L{Replica.applyEvent}: the copy already held what the event says."""
GAP = "gap"
"""L{Replica.applyEvent}: an update was missed; read the node's part again."""


def _parseTarget(target: str) -> tuple[str, str]:
    """
    @return: C{("key", "ip:port")} for a session key, C{("host", ip)} for
        a bare address, C{("name", name)} otherwise.
    """
    text = target.strip()
    if text.startswith("["):
        end = text.find("]")
        rest = text[end + 1 :]
        if end != -1 and rest.startswith(":") and rest[1:].isdigit():
            host = canonicalHost(text[1:end])
            return "key", (f"[{host}]:{rest[1:]}" if ":" in host else f"{host}:{rest[1:]}")
    elif text.count(":") == 1:
        host, _, port = text.partition(":")
        if port.isascii() and port.isdigit():
            host = canonicalHost(host)
            return "key", (f"[{host}]:{port}" if ":" in host else f"{host}:{port}")
    host = canonicalHost(text)
    if host != text or any(c in text for c in ".:"):
        return "host", host
    return "name", text


def matchTarget(target: str) -> Callable[[SessionDescriptor], bool]:
    """
    @param target: A key's name, a session key (C{"ip:port"}) or a bare IP
        address, as L{SessionRegistry.get
        <netstructer.registry.SessionRegistry.get>} takes them.
    @return: A test of whether a session's descriptor matches it.
    """
    kind, token = _parseTarget(target)
    stripped = target.strip()
    if kind == "key":
        return lambda d: d.key == token or d.name == stripped
    if kind == "host":
        return lambda d: d.host == token or d.name == stripped
    return lambda d: d.name == token


def _newest(descriptors: Iterator[SessionDescriptor]) -> SessionDescriptor | None:
    best: SessionDescriptor | None = None
    for each in descriptors:
        if best is None or (each.openedAt, each.node, each.sessionId) > (
            best.openedAt,
            best.node,
            best.sessionId,
        ):
            best = each
    return best


@dataclass
class _Local:
    session: Any
    descriptor: SessionDescriptor
    encoded: bytes


class LocalPart:
    """
    This node's part of the directory.

    @ivar node: This node's name.
    @ivar version: The version of the last update handed out.
    """

    def __init__(self, node: str, encoder: Encoder, clock: Callable[[], float]) -> None:
        """
        @param node: This node's name.
        @param encoder: Encodes descriptors.
        @param clock: The wall clock, for the sessions' opening times.
        """
        self.node = node
        self.version = 0
        self._encoder = encoder
        self._clock = clock
        self._sessions: dict[str, _Local] = {}
        self._ids: dict[Any, str] = {}
        self._topics: set[str] = set()
        self._counter = 0
        self._pending = DirectoryChanges()

    def __len__(self) -> int:
        return len(self._sessions)

    def opened(self, session: Any) -> SessionDescriptor:
        """
        A session opened here.

        @param session: It (a L{BridgeProtocol
            <netstructer.protocol.BridgeProtocol>}, or anything with C{name},
            C{peer} and C{key}).
        @return: Its descriptor.
        """
        existing = self._ids.get(session)
        if existing is not None:
            return self._sessions[existing].descriptor
        self._counter += 1
        sessionId = format(self._counter, "x")
        peer = getattr(session, "peer", None)
        rawHost = getattr(peer, "host", None)
        key = str(getattr(session, "key", "") or "")
        host = canonicalHost(rawHost) if isinstance(rawHost, str) else key
        name = getattr(session, "name", None)
        descriptor = SessionDescriptor(
            self.node, sessionId, name if isinstance(name, str) else None, host, key, self._clock()
        )
        encoded = encodeDescriptor(self._encoder, descriptor.name, host, key, descriptor.openedAt)
        self._sessions[sessionId] = _Local(session, descriptor, encoded)
        self._ids[session] = sessionId
        self._pending.opened[sessionId] = encoded
        return descriptor

    def closed(self, session: Any) -> SessionDescriptor | None:
        """
        A session that opened here ended.

        @return: Its descriptor, or L{None} if it was not known.
        """
        sessionId = self._ids.pop(session, None)
        if sessionId is None:
            return None
        local = self._sessions.pop(sessionId)
        if self._pending.opened.pop(sessionId, None) is None:
            self._pending.closed.append(sessionId)
        return local.descriptor

    def subscribed(self, topic: str) -> None:
        """
        A topic has a local subscriber from now on.
        """
        if topic in self._topics:
            return
        self._topics.add(topic)
        if topic in self._pending.unsubscribed:
            self._pending.unsubscribed.remove(topic)
        else:
            self._pending.subscribed.append(topic)

    def unsubscribed(self, topic: str) -> None:
        """
        A topic has no local subscriber any more.
        """
        if topic not in self._topics:
            return
        self._topics.discard(topic)
        if topic in self._pending.subscribed:
            self._pending.subscribed.remove(topic)
        else:
            self._pending.unsubscribed.append(topic)

    def session(self, sessionId: str) -> Any:
        """
        @return: The open session with that id, or L{None}.
        """
        local = self._sessions.get(sessionId)
        return None if local is None else local.session

    def descriptorOf(self, session: Any) -> SessionDescriptor | None:
        """
        @return: The descriptor of an open session, or L{None}.
        """
        sessionId = self._ids.get(session)
        return None if sessionId is None else self._sessions[sessionId].descriptor

    def descriptors(self) -> list[SessionDescriptor]:
        """
        @return: The descriptors of this node's sessions, oldest first.
        """
        return [local.descriptor for local in self._sessions.values()]

    def takeChanges(self) -> DirectoryChanges | None:
        """
        @return: The changes since the last call (and counts a version for
            them), or L{None} if there are none.
        """
        changes, self._pending = self._pending, DirectoryChanges()
        if not changes:
            return None
        self.version += 1
        return changes

    def everything(self) -> DirectoryChanges:
        """
        @return: This node's whole part, as an update that replaces what
            Redis holds (and counts a version for it); pending changes are
            included.
        """
        self._pending = DirectoryChanges()
        self.version += 1
        return DirectoryChanges(
            opened={sessionId: local.encoded for sessionId, local in self._sessions.items()},
            subscribed=sorted(self._topics),
            reset=True,
        )


@dataclass
class RemoteNode:
    """
    Another node, as this node's copy of the directory holds it.

    @ivar name: Its name.
    @ivar incarnation: Its incarnation.
    @ivar deadline: When its entries expire, on this node's clock.
    @ivar version: The version of its part the copy holds; L{None} until
        it was read.
    @ivar sessions: Its sessions, by id.
    @ivar topics: The topics it has subscribers to.
    @ivar waiting: Events that arrived while its part was being read.
    """

    name: str
    incarnation: bytes
    deadline: float
    version: int | None = None
    sessions: dict[str, SessionDescriptor] = field(default_factory=dict)
    topics: set[str] = field(default_factory=set)
    waiting: list[DirectoryEvent] = field(default_factory=list)


class Replica:
    """
    This node's copy of the other nodes' parts of the directory.

    @ivar node: This node's name (its own entries are not copied).
    @ivar grace: Seconds a node first heard of by an event (or a read of
        its part) is taken to be alive before a heartbeat says when its
        entries expire (see L{__init__}).
    @ivar nodes: The other nodes, by name.
    @ivar malformed: How many descriptors were dropped as malformed.
    @ivar slack: How long past the expiry the last node list showed a node
        is still taken to be alive (see L{__init__}).
    """

    def __init__(
        self,
        node: str,
        decoder: Decoder,
        clock: Callable[[], float],
        grace: float = 2.0,
        slack: float = 0.0,
    ) -> None:
        """
        @param node: This node's name (its own entries are not copied).
        @param decoder: Decodes descriptors.
        @param clock: This node's clock, for liveness.
        @param grace: How long a node first heard of by an event (or a read
            of its part) is taken to be alive before a heartbeat says when
            its entries expire: the entries' lifetime.
        @param slack: How long after its entries expired (as the last node
            list read said) a node is still taken to be alive: the interval
            at which this node reads the list (its heartbeat).  Without it,
            a node whose heartbeat renewed its entries just after this node
            last read them would be taken for dead whenever this node's
            next read came a little late; with it, a dead node is dropped
            by the next list that no longer shows it alive (Redis expires
            its entries exactly), or at the latest one interval later.
        """
        self.node = node
        self.grace = grace
        self.slack = slack
        self.nodes: dict[str, RemoteNode] = {}
        self.malformed = 0
        self._decoder = decoder
        self._clock = clock
        self._byName: dict[str, dict[tuple[str, str], SessionDescriptor]] = {}
        self._topics: dict[str, set[str]] = {}

    # Liveness.

    def applyNodes(self, now: float, states: list[NodeState]) -> tuple[list[str], list[str]]:
        """
        Take in the node list a heartbeat read.

        @param now: Redis's clock when it was read.
        @return: The names of the nodes that are gone (dropped from the
            copy), and of those whose part must be read (new ones, and new
            incarnations).
        """
        local = self._clock()
        live = {s.name: s for s in states if s.alive and s.name != self.node and s.incarnation}
        gone = [name for name in self.nodes if name not in live]
        for name in gone:
            self.drop(name)
        unread = []
        for name, state in live.items():
            deadline = local + (state.expiresAt - now) + self.slack
            node = self.nodes.get(name)
            if node is not None and node.incarnation != state.incarnation:
                self.drop(name)
                gone.append(name)
                node = None
            if node is None:
                node = self.nodes[name] = RemoteNode(name, state.incarnation, deadline)
            node.deadline = deadline
            if node.version is None:
                unread.append(name)
        return gone, unread

    def alive(self, name: str) -> bool:
        """
        @return: Whether the node is in the copy and its entries have not
            expired.
        """
        node = self.nodes.get(name)
        return node is not None and node.deadline > self._clock()

    def incarnationOf(self, name: str) -> bytes | None:
        """
        @return: The incarnation of a live node, or L{None}.
        """
        node = self.nodes.get(name)
        if node is None or node.deadline <= self._clock():
            return None
        return node.incarnation

    def expired(self) -> list[str]:
        """
        @return: The nodes whose entries expired by this node's clock
            (they are dropped).
        """
        now = self._clock()
        names = [name for name, node in self.nodes.items() if node.deadline <= now]
        for name in names:
            self.drop(name)
        return names

    def drop(self, name: str) -> None:
        """
        Forget a node and its sessions.
        """
        node = self.nodes.pop(name, None)
        if node is not None:
            self._clear(node)

    def dropAll(self) -> None:
        """
        Forget every node (the connection to Redis was lost).
        """
        for name in list(self.nodes):
            self.drop(name)

    def _clear(self, node: RemoteNode) -> None:
        for descriptor in node.sessions.values():
            self._unindex(descriptor)
        node.sessions.clear()
        for topic in node.topics:
            self._unsubscribe(node.name, topic)
        node.topics.clear()

    # Updates.

    def applySnapshot(self, snapshot: NodeSnapshot, deadline: float | None = None) -> list[str]:
        """
        Replace a node's part with what was read from Redis, then apply the
        events that arrived meanwhile.

        @param deadline: When its entries expire, on this node's clock, if
            the node is new to the copy.
        @return: The names of nodes whose part must be read again (this one
            if an event is still missing).
        """
        node = self.nodes.get(snapshot.name)
        if node is None or node.incarnation != snapshot.incarnation:
            if node is not None:
                self.drop(snapshot.name)
            node = RemoteNode(
                snapshot.name,
                snapshot.incarnation,
                self._clock() + self.grace if deadline is None else deadline,
            )
            self.nodes[snapshot.name] = node
        waiting, node.waiting = node.waiting, []
        self._clear(node)
        node.version = snapshot.version
        for sessionId, encoded in snapshot.sessions.items():
            self._add(node, sessionId, encoded)
        for topic in snapshot.topics:
            self._subscribe(node, topic)
        for event in sorted(waiting, key=lambda e: e.version):
            if self.applyEvent(event, snapshot.incarnation) == GAP:
                return [snapshot.name]
        return []

    def applyEvent(self, event: DirectoryEvent, incarnation: bytes) -> str:
        """
        Apply a node's event.

        @param incarnation: The incarnation that sent it (authenticated).
        @return: L{APPLIED}, L{IGNORED} or L{GAP} (the node's part must be
            read: the event is kept until it is).
        """
        if event.node == self.node:
            return IGNORED
        node = self.nodes.get(event.node)
        if event.left:
            if node is not None and node.incarnation == incarnation:
                self.drop(event.node)
                return APPLIED
            return IGNORED
        if node is None or node.incarnation != incarnation:
            if node is not None:
                self.drop(event.node)
            node = self.nodes[event.node] = RemoteNode(
                event.node, incarnation, self._clock() + self.grace
            )
        if event.reset:
            self._clear(node)
            node.version = event.version
            node.waiting.clear()
            self._change(node, event)
            return APPLIED
        if node.version is None:
            node.waiting.append(event)
            return GAP
        if event.version <= node.version:
            return IGNORED
        if event.version != node.version + 1:
            node.waiting.append(event)
            node.version = None
            return GAP
        node.version = event.version
        self._change(node, event)
        return APPLIED

    def _change(self, node: RemoteNode, event: DirectoryEvent) -> None:
        for sessionId in event.closed:
            descriptor = node.sessions.pop(sessionId, None)
            if descriptor is not None:
                self._unindex(descriptor)
        for sessionId, encoded in event.opened.items():
            self._add(node, sessionId, encoded)
        for topic in event.unsubscribed:
            if topic in node.topics:
                node.topics.discard(topic)
                self._unsubscribe(node.name, topic)
        for topic in event.subscribed:
            self._subscribe(node, topic)

    def _add(self, node: RemoteNode, sessionId: str, encoded: bytes) -> None:
        try:
            descriptor = decodeDescriptor(self._decoder, node.name, sessionId, encoded)
        except DecodeError:
            self.malformed += 1
            return
        old = node.sessions.get(sessionId)
        if old is not None:
            self._unindex(old)
        node.sessions[sessionId] = descriptor
        if descriptor.name is not None:
            self._byName.setdefault(descriptor.name, {})[node.name, sessionId] = descriptor

    def _unindex(self, descriptor: SessionDescriptor) -> None:
        if descriptor.name is None:
            return
        named = self._byName.get(descriptor.name)
        if named is not None:
            named.pop((descriptor.node, descriptor.sessionId), None)
            if not named:
                del self._byName[descriptor.name]

    def _subscribe(self, node: RemoteNode, topic: str) -> None:
        node.topics.add(topic)
        self._topics.setdefault(topic, set()).add(node.name)

    def _unsubscribe(self, name: str, topic: str) -> None:
        members = self._topics.get(topic)
        if members is not None:
            members.discard(name)
            if not members:
                del self._topics[topic]

    # Lookups.

    def resolve(self, name: str) -> SessionDescriptor | None:
        """
        @return: The newest session of that name on another live node.
        """
        named = self._byName.get(name)
        if not named:
            return None
        now = self._clock()
        if len(named) == 1:
            (only,) = named.values()
            return only if self.nodes[only.node].deadline > now else None
        return _newest(d for d in named.values() if self.nodes[d.node].deadline > now)

    def find(self, target: str) -> SessionDescriptor | None:
        """
        @param target: A name, a session key or a bare IP address.
        @return: The newest matching session on another live node.
        """
        kind, token = _parseTarget(target)
        if kind == "name":
            return self.resolve(token)
        named = self.resolve(target.strip())
        if named is not None:
            return named
        match = matchTarget(target)
        return _newest(d for d in self.descriptors() if match(d))

    def session(self, node: str, sessionId: str) -> SessionDescriptor | None:
        """
        @return: The descriptor of one remote session, if its node is live.
        """
        remote = self.nodes.get(node)
        if remote is None or remote.deadline <= self._clock():
            return None
        return remote.sessions.get(sessionId)

    def descriptors(self) -> Iterator[SessionDescriptor]:
        """
        @return: The sessions of the other live nodes.
        """
        now = self._clock()
        for node in self.nodes.values():
            if node.deadline > now:
                yield from node.sessions.values()

    def topicNodes(self, topic: str) -> list[str]:
        """
        @return: The other live nodes with subscribers to C{topic}.
        """
        members = self._topics.get(topic)
        if not members:
            return []
        now = self._clock()
        return [name for name in members if self.nodes[name].deadline > now]
