# -*- test-case-name: tests.test_cluster_service -*-
"""
L{ClusterService}: one node of a cluster of NetStructer servers that share
one directory of sessions and route values between them through Redis.

A server gives its relay the service's L{backend<ClusterService.backend>}
(an L{IRelayBackend<netstructer.relay.IRelayBackend>}) and adds the service
as an observer of its registry (an L{ISessionListener
<netstructer.registry.ISessionListener>}); that is all it takes.  The
service then:

    - registers the node and its sessions in Redis, under entries that live
      C{2 * heartbeat} seconds unless a heartbeat renews them: a node that
      dies disappears with its sessions within two heartbeats, a node that
      stops removes them at once;
    - keeps a copy of the other nodes' sessions and topics, current through
      their events (L{netstructer.cluster.directory});
    - routes relayed values to other nodes (L{netstructer.cluster.router});
    - answers cluster-wide L{count}, L{all} and L{get}.

When Redis cannot be reached, local sessions are served as before, cluster
operations fail at once with L{ClusterUnavailable}, and the node reconnects
with backoff and registers again; one line is logged when the connection
is lost and one when it is back.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.application.service import Service
from twisted.internet import defer
from twisted.internet.interfaces import IDelayedCall
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from netstructer.cluster.config import (
    ClusterURL,
    checkNodeName,
    clusterKeyring,
    eventsChannel,
    nodeChannel,
    parseClusterURL,
)
from netstructer.cluster.directory import matchTarget
from netstructer.cluster.envelope import (
    DEFAULT_MAX_AGE,
    EnvelopeOpener,
    EnvelopeSealer,
    Opened,
    newIncarnation,
)
from netstructer.cluster.inbox import Inbox
from netstructer.cluster.interfaces import (
    Heartbeat,
    IClusterTransport,
    ITransportListener,
    NodeRecord,
    NodeSnapshot,
    NodeState,
)
from netstructer.cluster.messages import (
    SessionDescriptor,
    batchLimits,
    decodeDescriptor,
)
from netstructer.cluster.router import (
    DEFAULT_ACK_TIMEOUT,
    DEFAULT_CLUSTER_QUEUE,
    ClusterRelayBackend,
)
from netstructer.cluster.sync import DirectorySync
from netstructer.errors import ClusterError, ClusterUnavailable, DecodeError
from netstructer.keys import Keyring, StrPath
from netstructer.registry import ISessionListener
from netstructer.relay import LocalRelayBackend
from netstructer.values import DEFAULT_LIMITS, Decoder, Encoder, Limits

__all__ = ["DEFAULT_HEARTBEAT", "ClusterService", "RemoteSession"]

DEFAULT_HEARTBEAT = 1.0
"""Seconds between a node's heartbeats."""


class RemoteSession:
    """
    A session connected to another node of the cluster, as
    L{ClusterService.get} finds it: its descriptor, and L{sendBuffer}, which
    sends it a value through Redis.

    @ivar descriptor: What the directory says of it.
    """

    remote = True
    """Unlike a local session's, this session is on another node."""

    def __init__(self, descriptor: SessionDescriptor, cluster: ClusterService) -> None:
        self.descriptor = descriptor
        self._cluster = cluster

    name = property(lambda self: self.descriptor.name, doc="The name of its key, or None.")
    """The name of the key it authenticated with, or L{None}."""
    key = property(lambda self: self.descriptor.key, doc='Its client\'s "ip:port".')
    """Its client's C{"ip:port"} (C{"[ip]:port"} for IPv6)."""
    host = property(lambda self: self.descriptor.host, doc="Its client's IP address.")
    """Its client's IP address (canonical form)."""
    node = property(lambda self: self.descriptor.node, doc="The node it is connected to.")
    """The name of the node it is connected to."""
    openedAt = property(lambda self: self.descriptor.openedAt, doc="When it opened (wall clock).")
    """When its handshake completed, on its node's wall clock (seconds since
    the epoch)."""

    def __repr__(self) -> str:
        d = self.descriptor
        return f"<RemoteSession {d.name or 'anonymous'} {d.key} on node {d.node}>"

    def sendBuffer(self, value: object) -> None:
        """
        Send a value to the session, through its node.  Failures after it
        left (the session ended, its node left) are logged by this node.

        @raise EncodeError: The value cannot be encoded.
        @raise ClusterUnavailable: This node is not connected to Redis now.
        @raise NoSuchSession: Its node left the cluster.
        @raise RecipientBusy: Too many values towards its node are not
            answered yet.
        """
        self._cluster.backend.sendValue(self.descriptor, self._cluster._encodeValue(value))


@implementer(ITransportListener)
class _TransportEvents:
    """
    What the transport tells the service, kept off its public surface.
    """

    def __init__(self, service: ClusterService) -> None:
        self._service = service

    def transportConnected(self) -> None:
        self._service._transportConnected()

    def transportLost(self, reason: str) -> None:
        self._service._transportLost(reason)

    def messageReceived(self, channel: str, data: bytes) -> None:
        self._service._inbox.received(channel, data)


def _allSessions(
    heartbeat: Heartbeat,
    transport: IClusterTransport,
    node: str,
    local: list[SessionDescriptor],
    decoder: Decoder,
    log: Logger,
) -> defer.Deferred[list[SessionDescriptor]]:
    """
    Read every other live node's sessions, and add this node's.

    @return: Fires with the sessions, oldest first.
    """
    others = [n.name for n in heartbeat.nodes if n.alive and n.name != node]
    reads = [transport.snapshot(name) for name in others]

    def gathered(snapshots: list[NodeSnapshot | None]) -> list[SessionDescriptor]:
        found = list(local)
        for snapshot in snapshots:
            if snapshot is None:
                continue
            for sessionId, encoded in snapshot.sessions.items():
                try:
                    found.append(decodeDescriptor(decoder, snapshot.name, sessionId, encoded))
                except DecodeError:
                    log.warn("Node {node}'s directory holds a malformed entry", node=snapshot.name)
        return sorted(found, key=lambda d: (d.openedAt, d.node, d.sessionId))

    return defer.gatherResults(reads, consumeErrors=True).addCallback(gathered)


@implementer(ISessionListener)
class ClusterService(Service):
    """
    One node of a cluster.

    The service owns the node's connection to Redis and its life in the
    cluster (registering, heartbeats, leaving); what it writes to the
    directory and reads of it is L{DirectorySync
    <netstructer.cluster.sync.DirectorySync>}'s, what arrives on its
    channels is opened by an L{Inbox<netstructer.cluster.inbox.Inbox>}, and
    values are routed by its L{backend}.

    @ivar url: Where the cluster's Redis is.
    @ivar nodeName: This node's name.
    @ivar incarnation: This run's incarnation (16 random bytes).
    @ivar backend: The relay backend to give the server's relay.
    @ivar heartbeat: Seconds between heartbeats.
    @ivar transport: The connection to Redis.
    @ivar replica: This node's copy of the other nodes' parts of the
        directory.
    @ivar refused: How many messages read from Redis were refused, by
        reason (see L{netstructer.cluster.envelope.REASONS}).
    """

    _log = Logger()

    def __init__(
        self,
        url: str | ClusterURL,
        nodeName: str,
        clusterKey: Keyring | StrPath,
        *,
        localBackend: LocalRelayBackend | None = None,
        reactor: Any = None,
        heartbeat: float = DEFAULT_HEARTBEAT,
        maxQueued: int = DEFAULT_CLUSTER_QUEUE,
        ackTimeout: float | None = None,
        maxAge: float = DEFAULT_MAX_AGE,
        limits: Limits = DEFAULT_LIMITS,
        transport: IClusterTransport | None = None,
        logger: Logger | None = None,
    ) -> None:
        """
        @param url: The cluster's Redis URL (see L{netstructer.cluster.config}).
        @param nodeName: This node's name, unique in the cluster.
        @param clusterKey: The cluster's keys, or the path of their key file
            (the same on every node).
        @param localBackend: The relay of this node's own sessions; a new
            one by default.
        @param reactor: The reactor (a clock, and TCP for Redis); the
            global one, imported now, by default.
        @param heartbeat: Seconds between heartbeats; a node's entries live
            twice as long.
        @param maxQueued: The bound of the values towards one other node not
            yet answered.
        @param ackTimeout: Seconds another node has to answer a batch;
            C{max(10, 5 * heartbeat)} by default.
        @param maxAge: How far apart the nodes' clocks may be, in seconds.
        @param limits: The limits of the values relayed (the servers').
        @param transport: The connection to Redis; a L{RedisTransport
            <netstructer.cluster.redistransport.RedisTransport>} to C{url}
            (which imports txredisapi) by default.
        @param logger: Where to log.
        @raise ClusterError: A setting is not valid.
        """
        super().__init__()
        if not heartbeat > 0:
            raise ClusterError("The cluster's heartbeat must be a number of seconds above 0.")
        if reactor is None:
            from twisted.internet import reactor as globalReactor  # noqa: N812

            reactor = globalReactor
        if logger is not None:
            self._log = logger
        self.url = parseClusterURL(url)
        self.nodeName = checkNodeName(nodeName)
        self.incarnation = newIncarnation()
        self.heartbeat = heartbeat
        self._reactor = reactor
        self._limits = limits
        self._record = NodeRecord(
            self.nodeName, self.incarnation, reactor.seconds(), heartbeat, 2 * heartbeat
        )
        self._events = eventsChannel(self.url.prefix)
        self._channel = nodeChannel(self.url.prefix, self.nodeName)
        self._encoder = Encoder(limits)
        self._decoder = Decoder(batchLimits(limits.maxSize))
        self.transport = transport if transport is not None else self._redisTransport()
        if ackTimeout is None:
            ackTimeout = max(DEFAULT_ACK_TIMEOUT, 5 * heartbeat)
        self._initConnectionState()
        self._assemble(
            clusterKeyring(clusterKey), localBackend, maxQueued, ackTimeout, maxAge, logger
        )

    def _assemble(
        self,
        keyring: Keyring,
        localBackend: LocalRelayBackend | None,
        maxQueued: int,
        ackTimeout: float,
        maxAge: float,
        logger: Logger | None,
    ) -> None:
        """
        Make the node's parts: its side of the directory, its relay backend
        and its inbox.
        """
        clock: Callable[[], float] = self._reactor.seconds
        sealer = EnvelopeSealer(keyring, self.incarnation, clock)
        self._sync = DirectorySync(
            self._record,
            self.transport,
            sealer,
            self._encoder,
            self._decoder,
            self._events,
            self._reactor,
            nodeGone=lambda name, why: self.backend.nodeGone(name, why),
            log=self._log,
        )
        self._localPart = self._sync.localPart
        self.replica = self._sync.replica
        if localBackend is None:
            localBackend = LocalRelayBackend(logger=logger)
        self.backend = self._makeBackend(localBackend, sealer, maxQueued, ackTimeout, logger)
        opener = EnvelopeOpener(keyring, self.incarnation, clock, maxAge=maxAge)
        self._inbox = Inbox(
            opener,
            self._channel,
            self._events,
            self._linkReceived,
            self._sync.eventReceived,
            self._decoder,
            clock,
            self._log,
        )
        self._listener = _TransportEvents(self)

    def _redisTransport(self) -> IClusterTransport:
        from netstructer.cluster.redistransport import RedisTransport

        return RedisTransport(self.url, self._reactor, clientName=f"netstructer:{self.nodeName}")

    def _makeBackend(
        self,
        local: LocalRelayBackend,
        sealer: EnvelopeSealer,
        maxQueued: int,
        ackTimeout: float,
        logger: Logger | None,
    ) -> ClusterRelayBackend:
        prefix = self.url.prefix
        return ClusterRelayBackend(
            self.nodeName,
            local,
            self._sync.localPart,
            self._sync.replica,
            self.transport,
            sealer,
            self._encoder,
            self._decoder,
            Decoder(self._limits),
            self._reactor,
            channelOf=lambda node: nodeChannel(prefix, node),
            available=self._available,
            changed=self._sync.changed,
            beforePublish=self._sync.flushPending,
            maxQueued=maxQueued,
            ackTimeout=ackTimeout,
            logger=logger,
        )

    def _initConnectionState(self) -> None:
        self._left = True
        self._registered = False
        self._everConnected = False
        self._lostAt: float | None = None
        self._lostLogged = False
        self._tickCall: IDelayedCall | None = None
        self._retryCall: IDelayedCall | None = None

    @property
    def refused(self) -> dict[str, int]:
        """
        How many messages read from Redis were refused, by reason (see
        L{netstructer.cluster.envelope.REASONS}).
        """
        return self._inbox.refusals.counts

    def __repr__(self) -> str:
        state = "available" if self._available() else "unavailable"
        return f"<ClusterService node {self.nodeName} at {self.url.describe()} {state}>"

    @property
    def available(self) -> bool:
        """
        Whether cluster operations can be done now: this node is connected
        to Redis, registered, and has read the other nodes' parts.
        """
        return self._available()

    def _available(self) -> bool:
        return self._sync.connected and self._registered

    # The service.

    def startService(self) -> None:
        """
        Connect to Redis (and keep doing so) and start the heartbeats.  A
        service already running is left as it is (a server under C{twistd}
        starts its children both before and after dropping privileges).
        """
        if self.running:
            return
        super().startService()
        self._left = False
        self._sync.active = True
        self.transport.start(self._listener, [self._events, self._channel])
        self._tickCall = self._reactor.callLater(self.heartbeat, self._tick)

    def stopService(self) -> defer.Deferred[None]:
        """
        Leave the cluster: this node's entries are removed at once (if Redis
        can be reached), values not yet answered are reported failed, and
        the connection is closed.

        @return: Fires once the connection is closed.
        """
        super().stopService()
        for call in (self._tickCall, self._retryCall):
            if call is not None and call.active():
                call.cancel()
        self._tickCall = self._retryCall = None
        self.backend.stop()
        self._registered = False

        def stopped(_: object) -> defer.Deferred[None]:
            self.backend.disconnected("this server is leaving the cluster")
            return self.transport.stop()

        def done(result: object) -> object:
            self._left = True
            return result

        return self._sync.stop().addCallback(stopped).addBoth(done)

    @property
    def left(self) -> bool:
        """
        Whether the node is out of the cluster: not started, or stopped and
        done leaving (its entries removed, or given up on, and its
        connection to Redis closed).
        """
        return self._left

    # The registry's observer.

    def sessionOpened(self, session: Any) -> None:
        """
        A session opened on this node: register it.
        """
        self._sync.localPart.opened(session)
        self._sync.changed()

    def sessionClosed(self, session: Any, reason: Failure) -> None:
        """
        A session of this node ended: unregister it.
        """
        if self._sync.localPart.closed(session) is not None:
            self._sync.changed()

    # Cluster-wide lookups.

    def _unavailable(self, what: str) -> ClusterUnavailable:
        return ClusterUnavailable(
            f"cannot {what}: this node ({self.nodeName}) is not connected to the cluster's "
            f"Redis at {self.url.describe()} now; its own sessions are still served, and it "
            "reconnects by itself"
        )

    def count(self) -> defer.Deferred[int]:
        """
        @return: Fires with how many sessions the cluster's live nodes have,
            or fails with L{ClusterUnavailable}.
        """
        if not self._available():
            return defer.fail(self._unavailable("count the cluster's sessions"))
        return self.transport.count()

    def nodes(self) -> defer.Deferred[list[NodeState]]:
        """
        @return: Fires with the nodes the directory lists (alive, or dead
            for less than a minute), or fails with L{ClusterUnavailable}.
        """
        if not self._sync.connected:
            return defer.fail(self._unavailable("list the cluster's nodes"))
        return self.transport.nodes().addCallback(lambda heartbeat: heartbeat.nodes)

    def all(self) -> defer.Deferred[list[SessionDescriptor]]:
        """
        @return: Fires with the descriptors of every session of the
            cluster's live nodes, oldest first, or fails with
            L{ClusterUnavailable}.
        """
        if not self._available():
            return defer.fail(self._unavailable("list the cluster's sessions"))
        transport, node = self.transport, self.nodeName
        local = self._sync.localPart.descriptors()
        return transport.nodes().addCallback(
            _allSessions, transport, node, local, self._decoder, self._log
        )

    def get(self, target: str) -> defer.Deferred[Any]:
        """
        Find the newest session of the cluster by name, session key or IP
        address (as L{SessionRegistry.get
        <netstructer.registry.SessionRegistry.get>} does for one server).

        @return: Fires with a session of this node, a L{RemoteSession}, or
            L{None}; or fails with L{ClusterUnavailable}.
        """
        if not self._available():
            return defer.fail(self._unavailable(f"look {target!r} up in the cluster"))
        localPart = self._sync.localPart
        match = matchTarget(target)
        local = [d for d in localPart.descriptors() if match(d)]
        newestLocal = max(local, key=lambda d: d.openedAt, default=None)
        remote = self.replica.find(target)
        if remote is not None and (newestLocal is None or remote.openedAt > newestLocal.openedAt):
            return defer.succeed(RemoteSession(remote, self))
        if newestLocal is None:
            return defer.succeed(None)
        return defer.succeed(localPart.session(newestLocal.sessionId))

    def _encodeValue(self, value: object) -> bytes:
        return self._encoder.encode(value)

    # Connection.

    def _transportConnected(self) -> None:
        self._sync.connectionMade()
        self._registered = False
        if self._lostAt is not None and self._lostLogged:
            self._log.info(
                "Reconnected to the cluster's Redis at {url} after {seconds:.1f} s; registering "
                "node {node} again",
                url=self.url.describe(),
                seconds=self._reactor.seconds() - self._lostAt,
                node=self.nodeName,
            )
        self._lostAt = None
        self._lostLogged = False
        self._register()

    def _transportLost(self, reason: str) -> None:
        wasConnected = self._sync.connected
        self._registered = False
        self._sync.connectionLost()
        if self._lostAt is None:
            self._lostAt = self._reactor.seconds()
        if not self._lostLogged and self.running:
            self._lostLogged = True
            if wasConnected or self._everConnected:
                template = "Lost the connection to the cluster's Redis at {url} ({reason})"
            else:
                template = "Cannot connect to the cluster's Redis at {url} ({reason})"
            self._log.warn(
                template + "; node {node} serves its own sessions meanwhile, and reconnects "
                "by itself",
                url=self.url.describe(),
                reason=reason,
                node=self.nodeName,
            )
        self.backend.disconnected("this server lost its connection to the cluster's Redis")

    def _register(self) -> None:
        d = self.transport.heartbeat(self._record)
        d.addCallback(self._sync.writeEverything)
        d.addCallback(self._sync.readAll)
        d.addCallbacks(self._ready, self._registrationFailed)

    def _ready(self, _: object) -> None:
        if not self._sync.connected:
            return
        self._registered = True
        if not self._everConnected:
            self._everConnected = True
            self._log.info(
                "Node {node} joined the cluster at {url} ({count} other nodes)",
                node=self.nodeName,
                url=self.url.describe(),
                count=len(self.replica.nodes),
            )

    def _registrationFailed(self, failure: Failure) -> None:
        if failure.check(ClusterUnavailable):
            # The connection was lost meanwhile: registering starts over
            # once it is back.
            return
        self._log.failure(
            "Registering node {node} failed; trying again in {delay} s",
            failure,
            node=self.nodeName,
            delay=self.heartbeat,
        )
        self._retryCall = self._reactor.callLater(self.heartbeat, self._registerAgain)

    def _registerAgain(self) -> None:
        self._retryCall = None
        if self._sync.connected and not self._registered and self.running:
            self._register()

    # Heartbeats.

    def _tick(self) -> None:
        self._tickCall = self._reactor.callLater(self.heartbeat, self._tick)
        for name in self.replica.expired():
            self.backend.nodeGone(name, "its entries expired (it stopped sending heartbeats)")
        self.backend.checkTimeouts()
        self._inbox.refusals.flush()
        if self._available():
            self.transport.heartbeat(self._record).addCallbacks(
                self._heartbeatDone, self._heartbeatFailed
            )

    def _heartbeatDone(self, heartbeat: Heartbeat) -> None:
        if self._available():
            self._sync.heartbeatDone(heartbeat, self.incarnation)

    def _heartbeatFailed(self, failure: Failure) -> None:
        if not failure.check(ClusterUnavailable):
            self._log.warn(
                "Node {node}'s heartbeat failed: {why}",
                node=self.nodeName,
                why=failure.getErrorMessage(),
            )

    # Messages.

    def _linkReceived(self, opened: Opened) -> None:
        if self._available():
            self.backend.linkReceived(opened)
