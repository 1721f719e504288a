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
from netstructer.cluster.directory import GAP, LocalPart, Replica, matchTarget
from netstructer.cluster.envelope import (
    BROADCAST,
    DEFAULT_MAX_AGE,
    EnvelopeOpener,
    EnvelopeRefused,
    EnvelopeSealer,
    Kind,
    Opened,
    newIncarnation,
)
from netstructer.cluster.interfaces import (
    DirectoryChanges,
    Heartbeat,
    IClusterTransport,
    ITransportListener,
    NodeRecord,
    NodeSnapshot,
    NodeState,
)
from netstructer.cluster.messages import (
    DirectoryEvent,
    SessionDescriptor,
    batchLimits,
    decodeDescriptor,
    decodeEvent,
    encodeEvent,
)
from netstructer.cluster.router import (
    DEFAULT_ACK_TIMEOUT,
    DEFAULT_CLUSTER_QUEUE,
    ClusterRelayBackend,
)
from netstructer.errors import ClusterError, ClusterUnavailable, DecodeError
from netstructer.keys import Keyring, StrPath
from netstructer.registry import ISessionListener
from netstructer.relay import LocalRelayBackend
from netstructer.values import DEFAULT_LIMITS, Decoder, Encoder, Limits

__all__ = ["DEFAULT_HEARTBEAT", "ClusterService", "RemoteSession"]

DEFAULT_HEARTBEAT = 1.0
"""Seconds between a node's heartbeats."""

_REFUSED_LOG_INTERVAL = 60.0


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
    key = property(lambda self: self.descriptor.key, doc='Its client\'s "ip:port".')
    host = property(lambda self: self.descriptor.host, doc="Its client's IP address.")
    node = property(lambda self: self.descriptor.node, doc="The node it is connected to.")
    openedAt = property(lambda self: self.descriptor.openedAt, doc="When it opened (wall clock).")

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


class _Inbox:
    """
    Opens what arrives on a node's channels, refuses (and counts, and logs)
    what does not open, and hands the rest on.
    """

    def __init__(
        self,
        opener: EnvelopeOpener,
        channel: str,
        events: str,
        linkReceived: Callable[[Opened], None],
        eventReceived: Callable[[DirectoryEvent, bytes], None],
        decoder: Decoder,
        clock: Callable[[], float],
        log: Logger,
    ) -> None:
        self.refusals = _Refusals(clock, log)
        self._opener = opener
        self._channel = channel
        self._events = events
        self._linkReceived = linkReceived
        self._eventReceived = eventReceived
        self._decoder = decoder
        self._log = log

    def received(self, channel: str, data: bytes) -> None:
        """
        A message arrived on C{channel}.
        """
        if channel == self._events:
            if self._opener.own(data):
                return
            recipient = BROADCAST
        elif channel == self._channel:
            recipient = self._opener.incarnation
        else:
            return
        try:
            opened = self._opener.open(data, channel, recipient)
        except EnvelopeRefused as e:
            self.refusals.refused(e)
            return
        try:
            if opened.kind is Kind.LINK and channel == self._channel:
                self._linkReceived(opened)
            elif opened.kind is Kind.EVENT and channel == self._events:
                self._eventReceived(decodeEvent(self._decoder, opened.message), opened.sender)
            else:
                raise DecodeError("an envelope of this kind does not belong on this channel")
        except DecodeError as e:
            self.refusals.refused(EnvelopeRefused(str(e), "malformed"))
        except Exception:  # noqa: BLE001 (logged; the connection to Redis stays up)
            self._log.failure("Handling a message from {channel} failed", channel=channel)


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


class _Refusals:
    """
    Counts the messages refused, by reason, and logs them: the first of
    each reason at once, the rest at most once a minute, as a count.

    @ivar counts: Refusals since the start, by reason.
    """

    def __init__(self, clock: Callable[[], float], log: Logger) -> None:
        self.counts: dict[str, int] = {}
        self._clock = clock
        self._log = log
        self._loggedAt: dict[str, float] = {}
        self._since: dict[str, int] = {}

    def refused(self, error: EnvelopeRefused) -> None:
        """
        One more message was refused.
        """
        reason = error.reason
        self.counts[reason] = self.counts.get(reason, 0) + 1
        now = self._clock()
        last = self._loggedAt.get(reason)
        if last is None or now - last >= _REFUSED_LOG_INTERVAL:
            self._loggedAt[reason] = now
            self._log.warn(
                "Refused a message read from the cluster's Redis ({reason}): {error}; it was "
                "not used (later ones are counted, and logged at most once a minute)",
                reason=reason,
                error=str(error),
            )
        else:
            self._since[reason] = self._since.get(reason, 0) + 1

    def flush(self) -> None:
        """
        Log the counts a minute has passed for.
        """
        now = self._clock()
        for reason, count in list(self._since.items()):
            if now - self._loggedAt.get(reason, 0.0) >= _REFUSED_LOG_INTERVAL:
                del self._since[reason]
                self._loggedAt[reason] = now
                self._log.warn(
                    "Refused {count} more messages read from the cluster's Redis ({reason})",
                    count=count,
                    reason=reason,
                )


@implementer(ISessionListener)
class ClusterService(Service):
    """
    One node of a cluster.

    @ivar url: Where the cluster's Redis is.
    @ivar nodeName: This node's name.
    @ivar incarnation: This run's incarnation (16 random bytes).
    @ivar backend: The relay backend to give the server's relay.
    @ivar heartbeat: Seconds between heartbeats.
    @ivar transport: The connection to Redis.
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
        keyring = clusterKeyring(clusterKey)
        clock: Callable[[], float] = reactor.seconds
        self._record = NodeRecord(
            self.nodeName, self.incarnation, clock(), heartbeat, 2 * heartbeat
        )
        self._events = eventsChannel(self.url.prefix)
        self._channel = nodeChannel(self.url.prefix, self.nodeName)
        self._sealer = EnvelopeSealer(keyring, self.incarnation, clock)
        self._encoder = Encoder(limits)
        self._decoder = Decoder(batchLimits(limits.maxSize))
        self._localPart = LocalPart(self.nodeName, self._encoder, clock)
        self.replica = Replica(self.nodeName, self._decoder, clock, grace=2 * heartbeat)
        if transport is None:
            from netstructer.cluster.redistransport import RedisTransport

            transport = RedisTransport(self.url, reactor, clientName=f"netstructer:{self.nodeName}")
        self.transport = transport
        self.backend = self._makeBackend(
            localBackend if localBackend is not None else LocalRelayBackend(logger=logger),
            maxQueued,
            max(DEFAULT_ACK_TIMEOUT, 5 * heartbeat) if ackTimeout is None else ackTimeout,
            logger,
        )
        self._connected = False
        self._writing = False
        self._registered = False
        self._everConnected = False
        self._lostAt: float | None = None
        self._lostLogged = False
        self._reading: set[str] = set()
        self._tickCall: IDelayedCall | None = None
        self._flushCall: IDelayedCall | None = None
        self._retryCall: IDelayedCall | None = None
        self._inbox = _Inbox(
            EnvelopeOpener(keyring, self.incarnation, clock, maxAge=maxAge),
            self._channel,
            self._events,
            self._linkReceived,
            self._eventReceived,
            self._decoder,
            clock,
            self._log,
        )
        self._listener = _TransportEvents(self)

    @property
    def refused(self) -> dict[str, int]:
        """
        How many messages read from Redis were refused, by reason (see
        L{netstructer.cluster.envelope.REASONS}).
        """
        return self._inbox.refusals.counts

    def _makeBackend(
        self,
        local: LocalRelayBackend,
        maxQueued: int,
        ackTimeout: float,
        logger: Logger | None,
    ) -> ClusterRelayBackend:
        prefix = self.url.prefix
        return ClusterRelayBackend(
            self.nodeName,
            local,
            self._localPart,
            self.replica,
            self.transport,
            self._sealer,
            self._encoder,
            self._decoder,
            Decoder(self._limits),
            self._reactor,
            channelOf=lambda node: nodeChannel(prefix, node),
            available=self._available,
            changed=self._changed,
            maxQueued=maxQueued,
            ackTimeout=ackTimeout,
            logger=logger,
        )

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
        return self._connected and self._registered

    # The service.

    def startService(self) -> None:
        """
        Connect to Redis (and keep doing so) and start the heartbeats.
        """
        super().startService()
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
        for call in (self._tickCall, self._flushCall, self._retryCall):
            if call is not None and call.active():
                call.cancel()
        self._tickCall = self._flushCall = self._retryCall = None
        self.backend.stop()
        leaving: defer.Deferred[None] = defer.succeed(None)
        if self._connected and self._writing:
            event = self._seal(
                DirectoryEvent(self.nodeName, self._localPart.version + 1, left=True)
            )
            leaving = self.transport.leave(self._record, self._events, event)
            leaving.addErrback(
                lambda f: self._log.warn(
                    "Could not remove node {node} from the cluster's directory ({why}); its "
                    "entries expire within {ttl} seconds",
                    node=self.nodeName,
                    why=f.getErrorMessage(),
                    ttl=self._record.ttl,
                )
            )
        self._connected = self._writing = self._registered = False

        def stopped(_: object) -> defer.Deferred[None]:
            self.backend.disconnected("this server is leaving the cluster")
            self.replica.dropAll()
            return self.transport.stop()

        return leaving.addCallback(stopped)

    # The registry's observer.

    def sessionOpened(self, session: Any) -> None:
        """
        A session opened on this node: register it.
        """
        self._localPart.opened(session)
        self._changed()

    def sessionClosed(self, session: Any, reason: Failure) -> None:
        """
        A session of this node ended: unregister it.
        """
        if self._localPart.closed(session) is not None:
            self._changed()

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
        if not self._connected:
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
        transport, node, local = self.transport, self.nodeName, self._localPart.descriptors()
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
        match = matchTarget(target)
        local = [d for d in self._localPart.descriptors() if match(d)]
        newestLocal = max(local, key=lambda d: d.openedAt, default=None)
        remote = self.replica.find(target)
        if remote is not None and (newestLocal is None or remote.openedAt > newestLocal.openedAt):
            return defer.succeed(RemoteSession(remote, self))
        if newestLocal is None:
            return defer.succeed(None)
        return defer.succeed(self._localPart.session(newestLocal.sessionId))

    def _encodeValue(self, value: object) -> bytes:
        return self._encoder.encode(value)

    # Connection.

    def _transportConnected(self) -> None:
        self._connected = True
        self._writing = self._registered = False
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
        wasConnected = self._connected
        self._connected = self._writing = self._registered = False
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
        self.replica.dropAll()
        self._reading.clear()

    def _register(self) -> None:
        d = self.transport.heartbeat(self._record)
        d.addCallback(self._writeEverything)
        d.addCallback(self._readAll)
        d.addCallbacks(self._ready, self._registrationFailed)

    def _writeEverything(self, heartbeat: Heartbeat) -> defer.Deferred[Heartbeat]:
        d = self._update(self._localPart.everything())
        self._writing = True
        return d.addCallback(lambda _: heartbeat)

    def _readAll(self, heartbeat: Heartbeat) -> defer.Deferred[None]:
        gone, unread = self.replica.applyNodes(heartbeat.now, heartbeat.nodes)
        for name in gone:
            self.backend.nodeGone(name, "it left the cluster")
        reads = [self._read(name) for name in unread]
        return defer.gatherResults(reads, consumeErrors=True).addCallback(lambda _: None)

    def _ready(self, _: object) -> None:
        if not self._connected:
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
        if self._connected and not self._registered and self.running:
            self._register()

    # The directory.

    def _changed(self) -> None:
        if self._flushCall is None and self.running:
            self._flushCall = self._reactor.callLater(0, self._flushDirectory)

    def _flushDirectory(self) -> None:
        self._flushCall = None
        if not (self._connected and self._writing):
            # Everything is written when the connection is back.
            return
        changes = self._localPart.takeChanges()
        if changes is not None:
            self._update(changes).addErrback(self._updateFailed)

    def _update(self, changes: DirectoryChanges) -> defer.Deferred[None]:
        version = self._localPart.version
        event = self._seal(
            DirectoryEvent(
                self.nodeName,
                version,
                reset=changes.reset,
                opened=changes.opened,
                closed=changes.closed,
                subscribed=changes.subscribed,
                unsubscribed=changes.unsubscribed,
            )
        )
        return self.transport.update(self._record, version, changes, self._events, event)

    def _updateFailed(self, failure: Failure) -> None:
        if not failure.check(ClusterUnavailable):
            self._log.failure(
                "Updating node {node}'s directory failed", failure, node=self.nodeName
            )

    def _seal(self, event: DirectoryEvent) -> bytes:
        return self._sealer.seal(Kind.EVENT, encodeEvent(self._encoder, event), self._events)

    def _read(self, name: str) -> defer.Deferred[None]:
        if name in self._reading or not self._connected:
            return defer.succeed(None)
        self._reading.add(name)

        def read(snapshot: NodeSnapshot | None) -> None:
            self._reading.discard(name)
            if not self._connected:
                return
            if snapshot is None:
                self.replica.drop(name)
                self.backend.nodeGone(name, "it left the cluster")
                return
            for again in self.replica.applySnapshot(snapshot):
                self._read(again)

        def failed(failure: Failure) -> None:
            self._reading.discard(name)
            failure.trap(ClusterUnavailable)

        return self.transport.snapshot(name).addCallbacks(read, failed)

    def _tick(self) -> None:
        self._tickCall = self._reactor.callLater(self.heartbeat, self._tick)
        for name in self.replica.expired():
            self.backend.nodeGone(name, "its entries expired (it stopped sending heartbeats)")
        self.backend.checkTimeouts()
        self._inbox.refusals.flush()
        if self._connected and self._registered:
            self.transport.heartbeat(self._record).addCallbacks(
                self._heartbeatDone, self._heartbeatFailed
            )

    def _heartbeatDone(self, heartbeat: Heartbeat) -> None:
        if not self._available():
            return
        if heartbeat.previous != self.incarnation:
            if heartbeat.previous:
                self._log.error(
                    "Another process uses the node name {node} in the cluster at {url}: give "
                    "each node its own name (--node-name)",
                    node=self.nodeName,
                    url=self.url.describe(),
                )
            else:
                self._log.warn(
                    "Node {node}'s entries had expired (a heartbeat came late, or Redis lost "
                    "them); registering again",
                    node=self.nodeName,
                )
            self._writeEverything(heartbeat).addErrback(self._updateFailed)
        gone, unread = self.replica.applyNodes(heartbeat.now, heartbeat.nodes)
        for name in gone:
            self.backend.nodeGone(name, "it left the cluster or died")
        for name in unread:
            self._read(name)

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

    def _eventReceived(self, event: DirectoryEvent, sender: bytes) -> None:
        if not self._connected:
            return
        before = self.replica.incarnationOf(event.node)
        outcome = self.replica.applyEvent(event, sender)
        if event.left and before is not None:
            self.backend.nodeGone(event.node, "it left the cluster")
        elif before is not None and before != sender:
            self.backend.nodeGone(event.node, "it restarted")
        if outcome == GAP:
            self._read(event.node)
