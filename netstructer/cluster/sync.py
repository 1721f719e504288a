# -*- test-case-name: tests.test_cluster_service -*-
"""
L{DirectorySync}: the traffic between one node's copy of the directory and
Redis.  It writes the node's own part (each change, in one update per
reactor turn; the whole part again after every reconnection, and whenever
a heartbeat finds that Redis lost it), and keeps the node's copy of the
other nodes' parts current (their events, and a read of a node's whole part
when one of its events was missed, or when it is new).

The node's service (L{ClusterService
<netstructer.cluster.service.ClusterService>}) drives it: it says when the
connection to Redis is made and lost, and hands it the heartbeats' answers
and the events that arrive.  Every node that leaves the copy (it left, died
or restarted) is reported through C{nodeGone}, so that the values towards
it are reported failed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet import defer
from twisted.internet.interfaces import IDelayedCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from netstructer.cluster.directory import GAP, LocalPart, Replica
from netstructer.cluster.envelope import EnvelopeSealer, Kind
from netstructer.cluster.interfaces import (
    DirectoryChanges,
    Heartbeat,
    IClusterTransport,
    NodeRecord,
    NodeSnapshot,
)
from netstructer.cluster.messages import DirectoryEvent, encodeEvent
from netstructer.errors import ClusterUnavailable
from netstructer.values import Decoder, Encoder

__all__ = ["DirectorySync"]


class DirectorySync:
    """
    One node's side of the directory in Redis.

    @ivar localPart: This node's part (its sessions and topics).
    @ivar replica: This node's copy of the other nodes' parts.
    @ivar connected: Whether the connection to Redis is up.
    @ivar writing: Whether this node's whole part was written since the
        connection was made: only then are single changes written.
    @ivar active: Whether changes are written at all (the node runs).
    """

    def __init__(
        self,
        record: NodeRecord,
        transport: IClusterTransport,
        sealer: EnvelopeSealer,
        encoder: Encoder,
        decoder: Decoder,
        events: str,
        reactor: Any,
        *,
        nodeGone: Callable[[str, str], None],
        log: Logger,
    ) -> None:
        """
        @param record: What this node writes about itself.
        @param transport: The connection to Redis.
        @param sealer: Seals the events this node publishes.
        @param encoder: Encodes descriptors and events.
        @param decoder: Decodes the other nodes' descriptors.
        @param events: The channel of the directory's events.
        @param reactor: A clock, for the sessions' opening times, the
            nodes' liveness, and the update of each reactor turn.
        @param nodeGone: Called with a node's name and why, when a node
            leaves the copy.
        @param log: Where to log.
        """
        clock: Callable[[], float] = reactor.seconds
        self.localPart = LocalPart(record.name, encoder, clock)
        self.replica = Replica(
            record.name, decoder, clock, grace=record.ttl, slack=record.heartbeat
        )
        self.connected = False
        self.writing = False
        self.active = False
        self._record = record
        self._transport = transport
        self._sealer = sealer
        self._encoder = encoder
        self._events = events
        self._reactor = reactor
        self._nodeGone = nodeGone
        self._log = log
        self._reading: set[str] = set()
        self._flushCall: IDelayedCall | None = None

    # The connection.

    def connectionMade(self) -> None:
        """
        The connection to Redis is up: nothing is written until this node's
        whole part is (L{writeEverything}).
        """
        self.connected = True
        self.writing = False

    def connectionLost(self) -> None:
        """
        The connection to Redis is down: forget the other nodes (they are
        read again once it is back).
        """
        self.connected = self.writing = False
        self.replica.dropAll()
        self._reading.clear()

    def stop(self) -> defer.Deferred[None]:
        """
        Stop writing; remove this node and its entries from Redis at once,
        if it can be reached, and forget the other nodes.

        @return: Fires once that is done (or has failed: then it is logged,
            and the entries expire by themselves).
        """
        self.active = False
        if self._flushCall is not None and self._flushCall.active():
            self._flushCall.cancel()
        self._flushCall = None
        leaving: defer.Deferred[None] = defer.succeed(None)
        if self.connected and self.writing:
            record = self._record
            event = self._seal(DirectoryEvent(record.name, self.localPart.version + 1, left=True))
            leaving = self._transport.leave(record, self._events, event)
            leaving.addErrback(
                lambda f: self._log.warn(
                    "Could not remove node {node} from the cluster's directory ({why}); its "
                    "entries expire within {ttl} seconds",
                    node=record.name,
                    why=f.getErrorMessage(),
                    ttl=record.ttl,
                )
            )
        self.connected = self.writing = False
        return leaving.addCallback(lambda _: self.replica.dropAll())

    # Writing this node's part.

    def changed(self) -> None:
        """
        This node's part changed: write the changes at the end of this
        reactor turn (with the others made meanwhile).
        """
        if self._flushCall is None and self.active:
            self._flushCall = self._reactor.callLater(0, self._flush)

    def flushPending(self) -> None:
        """
        Write the changes waiting for the end of this reactor turn now:
        before a message that depends on them (a value from a session that
        just opened, which its recipient may answer at once) is published.
        Both go to Redis on one connection, in order.
        """
        if self._flushCall is not None and self._flushCall.active():
            self._flushCall.cancel()
            self._flush()

    def _flush(self) -> None:
        self._flushCall = None
        if not (self.connected and self.writing):
            # Everything is written when the connection is back.
            return
        changes = self.localPart.takeChanges()
        if changes is not None:
            self._update(changes).addErrback(self._updateFailed)

    def writeEverything(self, heartbeat: Heartbeat) -> defer.Deferred[Heartbeat]:
        """
        Write this node's whole part, replacing what Redis holds of it.

        @return: Fires with C{heartbeat} once it is written.
        """
        d = self._update(self.localPart.everything())
        self.writing = True
        return d.addCallback(lambda _: heartbeat)

    def _update(self, changes: DirectoryChanges) -> defer.Deferred[None]:
        version = self.localPart.version
        event = self._seal(
            DirectoryEvent(
                self._record.name,
                version,
                reset=changes.reset,
                opened=changes.opened,
                closed=changes.closed,
                subscribed=changes.subscribed,
                unsubscribed=changes.unsubscribed,
            )
        )
        return self._transport.update(self._record, version, changes, self._events, event)

    def _updateFailed(self, failure: Failure) -> None:
        if not failure.check(ClusterUnavailable):
            self._log.failure(
                "Updating node {node}'s directory failed", failure, node=self._record.name
            )

    def _seal(self, event: DirectoryEvent) -> bytes:
        return self._sealer.seal(Kind.EVENT, encodeEvent(self._encoder, event), self._events)

    # Reading the other nodes' parts.

    def readAll(self, heartbeat: Heartbeat) -> defer.Deferred[None]:
        """
        Take in the nodes a heartbeat listed, and read the part of each
        node not read yet.

        @return: Fires once they are read.
        """
        gone, unread = self.replica.applyNodes(heartbeat.now, heartbeat.nodes)
        for name in gone:
            self._nodeGone(name, "it left the cluster")
        reads = [self._read(name) for name in unread]
        return defer.gatherResults(reads, consumeErrors=True).addCallback(lambda _: None)

    def heartbeatDone(self, heartbeat: Heartbeat, incarnation: bytes) -> None:
        """
        A heartbeat's answer: write this node's part again if Redis lost it
        (or another process took this node's name: that is logged as an
        error), and take in the nodes it listed.

        @param incarnation: This node's incarnation.
        """
        if heartbeat.previous != incarnation:
            node, url = self._record.name, self._transport.description
            if heartbeat.previous:
                self._log.error(
                    "Another process uses the node name {node} in the cluster at {url}: give "
                    "each node its own name (--node-name)",
                    node=node,
                    url=url,
                )
            else:
                self._log.warn(
                    "Node {node}'s entries had expired (a heartbeat came late, or Redis lost "
                    "them); registering again",
                    node=node,
                )
            self.writeEverything(heartbeat).addErrback(self._updateFailed)
        gone, unread = self.replica.applyNodes(heartbeat.now, heartbeat.nodes)
        for name in gone:
            self._nodeGone(name, "it left the cluster or died")
        for name in unread:
            self._read(name)

    def eventReceived(self, event: DirectoryEvent, sender: bytes) -> None:
        """
        Another node's event arrived (opened, and authenticated as sent by
        the incarnation C{sender}).
        """
        if not self.connected:
            return
        before = self.replica.incarnationOf(event.node)
        outcome = self.replica.applyEvent(event, sender)
        if event.left and before is not None:
            self._nodeGone(event.node, "it left the cluster")
        elif before is not None and before != sender:
            self._nodeGone(event.node, "it restarted")
        if outcome == GAP:
            self._read(event.node)

    def _read(self, name: str) -> defer.Deferred[None]:
        if name in self._reading or not self.connected:
            return defer.succeed(None)
        self._reading.add(name)

        def read(snapshot: NodeSnapshot | None) -> None:
            self._reading.discard(name)
            if not self.connected:
                return
            if snapshot is None:
                self.replica.drop(name)
                self._nodeGone(name, "it left the cluster")
                return
            for again in self.replica.applySnapshot(snapshot):
                self._read(again)

        def failed(failure: Failure) -> None:
            self._reading.discard(name)
            failure.trap(ClusterUnavailable)

        return self._transport.snapshot(name).addCallbacks(read, failed)
