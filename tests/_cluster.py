"""
Helpers of the cluster's tests: sessions and relay endpoints that record
what reaches them, and nodes of a cluster on a L{MemoryHub}, driven by one
L{Clock}.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.logger import Logger
from zope.interface import implementer

from netstructer.cluster.memory import MemoryHub
from netstructer.cluster.service import ClusterService
from netstructer.errors import ChannelClosedError, RelayError
from netstructer.keys import Keyring, generateKey
from netstructer.relay import IRelayEndpoint, RelayOp

URL = "redis://127.0.0.1:6379/0"


class FakeSession:
    """
    A session as the cluster sees it: a name, a peer, a key, and
    C{sendBuffer}, which records the values.
    """

    _ports = iter(range(40000, 60000))

    def __init__(self, name: str | None, host: str = "127.0.0.1") -> None:
        self.name = name
        self.peer = IPv4Address("TCP", host, next(self._ports))
        self.key = f"{host}:{self.peer.port}"
        self.values: list[object] = []
        self.closed = False

    def __repr__(self) -> str:
        return f"<FakeSession {self.name} {self.key}>"

    def sendBuffer(self, value: object) -> None:
        """
        Record a value (or refuse it once closed).
        """
        if self.closed:
            raise ChannelClosedError("closed")
        self.values.append(value)


@implementer(IRelayEndpoint)
class FakeEndpoint:
    """
    A relay endpoint that records what it receives and its failures.
    """

    def __init__(self, session: FakeSession, maxQueued: int = 1000) -> None:
        self.name = session.name
        self.session = session
        self.received: list[tuple[str | None, str | None, bytes]] = []
        self.failures: list[tuple[RelayError, RelayOp]] = []
        self.maxQueued = maxQueued

    def __repr__(self) -> str:
        return f"<FakeEndpoint {self.name}>"

    def enqueue(self, sender: str | None, topic: str | None, value: bytes) -> bool:
        if len(self.received) >= self.maxQueued:
            return False
        self.received.append((sender, topic, value))
        return True

    def relayFailed(self, error: RelayError, op: RelayOp) -> None:
        self.failures.append((error, op))


@dataclass
class Node:
    """
    One node of a test cluster: its service and its sessions' endpoints.
    """

    service: ClusterService
    endpoints: dict[str, FakeEndpoint] = field(default_factory=dict)

    def open(self, name: str | None, host: str = "127.0.0.1") -> FakeEndpoint:
        """
        Open a session here, as a server's registry and relay would.
        """
        session = FakeSession(name, host)
        endpoint = FakeEndpoint(session)
        self.service.backend.attach(endpoint)
        self.service.sessionOpened(session)
        if name is not None:
            self.endpoints[name] = endpoint
        return endpoint

    def close(self, endpoint: FakeEndpoint) -> None:
        """
        End a session.
        """
        endpoint.session.closed = True
        self.service.backend.detach(endpoint)
        self.service.sessionClosed(endpoint.session, None)  # type: ignore[arg-type]


class Cluster:
    """
    Nodes sharing one L{MemoryHub}.
    """

    def __init__(self, heartbeat: float = 1.0, **options: Any) -> None:
        self.clock = Clock()
        self.clock.advance(1_700_000_000)
        self.hub = MemoryHub(self.clock, reconnectDelay=0.5)
        self.key = Keyring([generateKey()])
        self.heartbeat = heartbeat
        self.options = options
        self.events: list[dict[str, Any]] = []
        self.nodes: dict[str, Node] = {}

    def add(self, name: str, key: Keyring | None = None, start: bool = True) -> Node:
        """
        Add a node (started, unless told not to).
        """
        service = ClusterService(
            URL,
            name,
            key or self.key,
            reactor=self.clock,
            heartbeat=self.heartbeat,
            transport=self.hub.transport(name),
            logger=Logger(observer=self.events.append),
            **self.options,
        )
        node = self.nodes[name] = Node(service)
        if start:
            service.startService()
        return node

    def settle(self, seconds: float = 0.0, step: float = 0.05) -> None:
        """
        Let time pass (and every call due run).
        """
        self.clock.advance(0)
        elapsed = 0.0
        while elapsed < seconds:
            self.clock.advance(step)
            elapsed += step
        # Nodes answer batches within a few milliseconds.
        for _ in range(5):
            self.clock.advance(0.002)

    def stopAll(self) -> None:
        """
        Stop every running node.
        """
        for node in self.nodes.values():
            if node.service.running:
                node.service.stopService()
        self.settle()

    def logged(self, text: str) -> list[dict[str, Any]]:
        """
        @return: The log events whose format holds C{text}.
        """
        return [e for e in self.events if text in str(e.get("log_format", ""))]
