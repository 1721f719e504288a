# -*- test-case-name: tests.test_cluster_router -*-
"""
L{ClusterRelayBackend}: the relay of a cluster, behind the relay's own seam
(L{IRelayBackend<netstructer.relay.IRelayBackend>}).  It wraps a
L{LocalRelayBackend<netstructer.relay.LocalRelayBackend>} for this node's
sessions and routes the rest through Redis, to the node the directory says
holds the recipient (or to every node with subscribers to a topic).

Between two nodes, values travel in batches (L{netstructer.cluster.messages})
on the recipient node's channel, in the order they were given: per-sender
order holds across nodes.  A value towards a node with nothing on its way
to Redis is published at once, alone (the latency of a lone value); values
given while a publication awaits Redis's reply are batched until the end of
the reactor turn (the throughput of a stream: one envelope for many
values).
The recipient node hands each value to its own relay, and answers each
batch with a result (the batches it took, and the values that failed, with
the relay's error: L{NoSuchSession}, L{RecipientBusy}) that reaches the
sender's L{IRelayEndpoint.relayFailed
<netstructer.relay.IRelayEndpoint.relayFailed>}.

Nothing is lost silently.  Values towards one node are bounded
(C{maxQueued}, counting those not yet answered; a value over the bound is
refused as L{RecipientBusy}); a value whose batch reached no subscriber
(the node is not connected to Redis), or that is not answered when its
node leaves the cluster or dies, when this node loses Redis, or within
C{ackTimeout} seconds, is reported failed to its sender (it may or may not
have been delivered: at most once).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from netstructer.cluster.directory import LocalPart, Replica
from netstructer.cluster.envelope import EnvelopeSealer, Kind, Opened
from netstructer.cluster.interfaces import IClusterTransport
from netstructer.cluster.messages import (
    Delivery,
    Result,
    SessionDescriptor,
    SessionValue,
    decodeBatch,
    deliverItem,
    encodeBatch,
    failureOf,
    publishItem,
    resultItem,
    valueItem,
)
from netstructer.errors import (
    ChannelClosedError,
    ClusterUnavailable,
    NetStructerError,
    NoSuchSession,
    RecipientBusy,
    RelayError,
)
from netstructer.relay import IRelayBackend, IRelayEndpoint, LocalRelayBackend, RelayOp
from netstructer.values import Decoder, Encoder

__all__ = [
    "DEFAULT_ACK_TIMEOUT",
    "DEFAULT_CLUSTER_QUEUE",
    "MAX_BATCH_BYTES",
    "ClusterRelayBackend",
]

DEFAULT_CLUSTER_QUEUE = 4096
"""The default bound of the values towards one node not yet answered."""

DEFAULT_ACK_TIMEOUT = 10.0
"""Seconds a node has to answer a batch before its values are reported failed."""

MAX_BATCH_BYTES = 256 * 1024
"""A batch is sent at once when its values reach this size."""

MAX_BATCH_ITEMS = 1024
"""... or this many items."""

ANSWER_DELAY = 0.005
"""Seconds a node waits to answer batches on their own (rather than with a
batch of its own towards their sender)."""

_DROPPED_LOG_INTERVAL = 10.0


@dataclass(slots=True)
class _Entry:
    """
    A value towards another node, waiting for its answer.
    """

    source: IRelayEndpoint | None
    op: RelayOp
    name: str


@dataclass(slots=True)
class _Batch:
    entries: list[_Entry | None]
    sentAt: float
    count: int


@dataclass
class _Link:
    """
    Everything between this node and another one.
    """

    node: str
    incarnation: bytes
    items: list[list[object]] = field(default_factory=list)
    entries: list[_Entry | None] = field(default_factory=list)
    size: int = 0
    pending: int = 0
    inFlight: OrderedDict[int, _Batch] = field(default_factory=OrderedDict)
    acknowledge: int | None = None
    failures: list[list[object]] = field(default_factory=list)
    answering: IDelayedCall | None = None
    publishing: int = 0


@implementer(IRelayEndpoint)
class _RemoteSender:
    """
    The sender of a value that came from another node, as this node's relay
    sees it: never a recipient; its failures go back to its node.
    """

    __slots__ = ("_index", "_link", "_router", "_sequence", "name", "session")

    def __init__(
        self, router: ClusterRelayBackend, link: _Link, sequence: int, index: int, name: str | None
    ) -> None:
        self.name = name
        self.session = None
        self._router = router
        self._link = link
        self._sequence = sequence
        self._index = index

    def enqueue(self, sender: str | None, topic: str | None, value: bytes) -> bool:
        return False

    def relayFailed(self, error: RelayError, op: RelayOp) -> None:
        self._router._itemFailed(self._link, self._sequence, self._index, error, op)


def _quiet(link: _Link) -> None:
    """
    Cancel a link's pending answer (the link is dropped).
    """
    if link.answering is not None and link.answering.active():
        link.answering.cancel()
    link.answering = None


def _unavailable(name: str, why: str) -> RecipientBusy:
    return RecipientBusy(
        f"the value for {name!r} was not delivered: {why}; this server keeps serving its "
        "own sessions and reconnects by itself, so send again later",
        name,
    )


@implementer(IRelayBackend)
class ClusterRelayBackend:
    """
    The relay of one node of a cluster.

    @ivar node: This node's name.
    @ivar local: The relay of this node's own sessions.
    @ivar maxQueued: The bound of the values towards one node not yet
        answered.
    @ivar ackTimeout: Seconds a node has to answer.
    """

    _log = Logger()

    def __init__(
        self,
        node: str,
        local: LocalRelayBackend,
        localPart: LocalPart,
        replica: Replica,
        transport: IClusterTransport,
        sealer: EnvelopeSealer,
        encoder: Encoder,
        decoder: Decoder,
        valueDecoder: Decoder,
        clock: IReactorTime,
        *,
        channelOf: Callable[[str], str],
        available: Callable[[], bool],
        changed: Callable[[], None],
        beforePublish: Callable[[], None] = lambda: None,
        maxQueued: int = DEFAULT_CLUSTER_QUEUE,
        ackTimeout: float = DEFAULT_ACK_TIMEOUT,
        logger: Logger | None = None,
    ) -> None:
        if maxQueued < 1:
            raise ValueError("maxQueued must be at least 1")
        self.node = node
        self.local = local
        self.maxQueued = maxQueued
        self.ackTimeout = ackTimeout
        self._localPart = localPart
        self._replica = replica
        self._transport = transport
        self._sealer = sealer
        self._encoder = encoder
        self._decoder = decoder
        self._valueDecoder = valueDecoder
        self._clock = clock
        self._channelOf = channelOf
        self._available = available
        self._changed = changed
        self._beforePublish = beforePublish
        self._links: dict[str, _Link] = {}
        self._subscribers: dict[str, set[IRelayEndpoint]] = {}
        self._flushCall: IDelayedCall | None = None
        self._droppedLoggedAt = float("-inf")
        self._droppedSince = 0
        if logger is not None:
            self._log = logger

    # IRelayBackend.

    def attach(self, endpoint: IRelayEndpoint) -> None:
        self.local.attach(endpoint)

    def detach(self, endpoint: IRelayEndpoint) -> None:
        self.local.detach(endpoint)
        for topic in [t for t, members in self._subscribers.items() if endpoint in members]:
            self._dropSubscriber(endpoint, topic)

    def subscribe(self, endpoint: IRelayEndpoint, topic: str) -> None:
        self.local.subscribe(endpoint, topic)
        members = self._subscribers.setdefault(topic, set())
        if not members:
            self._localPart.subscribed(topic)
            self._changed()
        members.add(endpoint)

    def unsubscribe(self, endpoint: IRelayEndpoint, topic: str) -> None:
        self.local.unsubscribe(endpoint, topic)
        self._dropSubscriber(endpoint, topic)

    def _dropSubscriber(self, endpoint: IRelayEndpoint, topic: str) -> None:
        members = self._subscribers.get(topic)
        if members is None or endpoint not in members:
            return
        members.discard(endpoint)
        if not members:
            del self._subscribers[topic]
            self._localPart.unsubscribed(topic)
            self._changed()

    def subscribers(self, topic: str) -> list[IRelayEndpoint]:
        return self.local.subscribers(topic)

    def deliver(self, source: IRelayEndpoint | None, recipient: str, value: bytes) -> None:
        localEndpoint = self.local.resolve(recipient)
        if not self._available():
            if localEndpoint is None:
                self._report(
                    source,
                    _unavailable(
                        recipient,
                        "no session of that name is connected to this server, and this "
                        "server cannot reach the rest of the cluster now",
                    ),
                    RelayOp.SEND,
                )
            else:
                self.local.deliver(source, recipient, value)
            return
        remote = self._replica.resolve(recipient)
        if remote is not None and (localEndpoint is None or self._newerThan(remote, localEndpoint)):
            sender = None if source is None else source.name
            self._route(
                remote.node,
                deliverItem(sender, recipient, value),
                _Entry(source, RelayOp.SEND, recipient),
                len(value),
            )
            return
        self.local.deliver(source, recipient, value)

    def _newerThan(self, remote: SessionDescriptor, localEndpoint: IRelayEndpoint) -> bool:
        descriptor = self._localPart.descriptorOf(localEndpoint.session)
        return descriptor is not None and remote.openedAt > descriptor.openedAt

    def publish(self, source: IRelayEndpoint | None, topic: str, value: bytes) -> int:
        reached = self.local.publish(source, topic, value)
        nodes = self._replica.topicNodes(topic)
        if not nodes:
            return reached
        if not self._available():
            self._report(
                source,
                _unavailable(
                    topic, "subscribers on other servers of the cluster cannot be reached"
                ),
                RelayOp.PUBLISH,
            )
            return reached
        sender = None if source is None else source.name
        item = publishItem(sender, topic, value)
        for node in nodes:
            self._route(node, item, _Entry(source, RelayOp.PUBLISH, topic), len(value))
        return reached

    # Values for one remote session (RemoteSession.sendBuffer).

    def sendValue(self, descriptor: SessionDescriptor, encoded: bytes) -> None:
        """
        Send an encoded value to one session of another node, as the
        server.  Its failures are logged.

        @raise ClusterUnavailable: This node is not connected to Redis.
        @raise NoSuchSession: That session's node is not in the cluster
            any more.
        @raise RecipientBusy: Too many values towards that node are not
            answered yet.
        """
        if not self._available():
            raise ClusterUnavailable(
                f"the session {descriptor.key} ({descriptor.name or 'anonymous'}) is on node "
                f"{descriptor.node}, and this node is not connected to the cluster's Redis now"
            )
        label = descriptor.name or descriptor.key
        error = self._route(
            descriptor.node,
            valueItem(descriptor.sessionId, encoded),
            _Entry(None, RelayOp.SEND, label),
            len(encoded),
            raiseErrors=True,
        )
        if error is not None:
            raise error

    # Routing.

    def _link(self, node: str, incarnation: bytes) -> _Link:
        link = self._links.get(node)
        if link is not None and link.incarnation != incarnation:
            self.nodeGone(node, "it restarted")
            link = None
        if link is None:
            link = self._links[node] = _Link(node, incarnation)
        return link

    def _route(
        self,
        node: str,
        item: list[object],
        entry: _Entry,
        size: int,
        *,
        raiseErrors: bool = False,
    ) -> RelayError | None:
        incarnation = self._replica.incarnationOf(node)
        error: RelayError | None = None
        if incarnation is None:
            error = self._goneError(entry, node, "it left the cluster")
        else:
            link = self._link(node, incarnation)
            if link.pending >= self.maxQueued:
                error = RecipientBusy(
                    f"the cluster's queue towards node {node} (which {entry.name!r} is on) "
                    f"holds {link.pending} values not yet answered, so the value was dropped; "
                    "send more slowly",
                    entry.name,
                )
            else:
                link.items.append(item)
                link.entries.append(entry)
                link.size += size
                link.pending += 1
                if (
                    not link.publishing
                    or link.size >= MAX_BATCH_BYTES
                    or len(link.items) >= MAX_BATCH_ITEMS
                ):
                    # Nothing on its way to Redis for that node: send at
                    # once.  Otherwise batch until the end of this turn.
                    self._flushLink(link)
                else:
                    self._scheduleFlush()
                return None
        if raiseErrors:
            return error
        self._report(entry.source, error, entry.op, entry.name)
        return None

    def _scheduleFlush(self) -> None:
        if self._flushCall is None:
            self._flushCall = self._clock.callLater(0, self._flushAll)

    def _flushAll(self) -> None:
        self._flushCall = None
        for link in list(self._links.values()):
            self._flushLink(link)

    def _flushLink(self, link: _Link) -> None:
        items, entries = link.items, link.entries
        if link.answering is not None:
            if link.answering.active():
                link.answering.cancel()
            link.answering = None
        if link.acknowledge is not None or link.failures:
            items.insert(0, resultItem(link.acknowledge or 0, link.failures))
            entries.insert(0, None)
            link.acknowledge, link.failures = None, []
        if not items:
            return
        link.items, link.entries, link.size = [], [], 0
        # The directory's changes first (a sender's session that just
        # opened must be known before the recipient answers it).
        self._beforePublish()
        message = encodeBatch(self._encoder, self.node, items)
        channel = self._channelOf(link.node)
        envelope = self._sealer.seal(Kind.LINK, message, channel, link.incarnation)
        sequence = self._sealer.sequence
        count = sum(1 for entry in entries if entry is not None)
        if count:
            link.inFlight[sequence] = _Batch(entries, self._clock.seconds(), count)
        link.publishing += 1
        d = self._transport.publish(channel, envelope)
        d.addCallbacks(
            self._published,
            self._publishFailed,
            callbackArgs=(link, sequence),
            errbackArgs=(link, sequence),
        )

    def _published(self, reached: int, link: _Link, sequence: int) -> None:
        link.publishing -= 1
        if reached == 0:
            self._failBatch(
                link,
                sequence,
                lambda entry: self._goneError(
                    entry, link.node, "it is not connected to the cluster"
                ),
            )

    def _publishFailed(self, failure: Failure, link: _Link, sequence: int) -> None:
        link.publishing -= 1
        why = failure.getErrorMessage()
        self._failBatch(
            link,
            sequence,
            lambda entry: _unavailable(entry.name, f"it could not be published to Redis ({why})"),
        )

    def _failBatch(
        self, link: _Link, sequence: int, errorFor: Callable[[_Entry], RelayError]
    ) -> None:
        batch = link.inFlight.pop(sequence, None)
        if batch is None:
            return
        link.pending -= batch.count
        for entry in batch.entries:
            if entry is not None:
                self._report(entry.source, errorFor(entry), entry.op, entry.name)

    def _goneError(self, entry: _Entry, node: str, why: str) -> RelayError:
        if entry.op is RelayOp.PUBLISH:
            return RecipientBusy(
                f"subscribers of {entry.name!r} on node {node} may not have received the value: "
                f"{why}",
                entry.name,
            )
        return NoSuchSession(
            f"the value for {entry.name!r} may not have been delivered: its server, node "
            f"{node}, {why} (send again once it has reconnected)",
            entry.name,
        )

    def _report(
        self, source: IRelayEndpoint | None, error: RelayError, op: RelayOp, name: str = ""
    ) -> None:
        if source is not None:
            source.relayFailed(error, op)
            return
        # A server's own value: logged, the first at once and the others
        # counted, in one line every ten seconds at most.
        now = self._clock.seconds()
        if now - self._droppedLoggedAt >= _DROPPED_LOG_INTERVAL:
            self._droppedLoggedAt = now
            self._log.warn(
                "A server's value for {name} was dropped: {error}", name=name, error=str(error)
            )
        else:
            self._droppedSince += 1

    def _logDropped(self) -> None:
        if self._droppedSince and (
            self._clock.seconds() - self._droppedLoggedAt >= _DROPPED_LOG_INTERVAL
        ):
            self._log.warn(
                "{count} more of the server's values for other nodes were dropped",
                count=self._droppedSince,
            )
            self._droppedSince = 0
            self._droppedLoggedAt = self._clock.seconds()

    # Failures of whole nodes.

    def nodeGone(self, node: str, why: str) -> None:
        """
        A node left the cluster, died or restarted: report every value
        towards it that it did not answer.
        """
        link = self._links.pop(node, None)
        if link is None:
            return
        _quiet(link)
        for entry in link.entries:
            if entry is not None:
                self._report(entry.source, self._goneError(entry, node, why), entry.op, entry.name)
        for sequence in list(link.inFlight):
            self._failBatch(link, sequence, lambda entry: self._goneError(entry, node, why))

    def disconnected(self, why: str) -> None:
        """
        This node lost Redis: report every value not answered.
        """
        for name in list(self._links):
            link = self._links.pop(name)
            _quiet(link)
            for entry in link.entries:
                if entry is not None:
                    self._report(entry.source, _unavailable(entry.name, why), entry.op, entry.name)
            for sequence in list(link.inFlight):
                self._failBatch(link, sequence, lambda entry: _unavailable(entry.name, why))

    def checkTimeouts(self) -> None:
        """
        Report the values whose batch was not answered in time (and log
        how many of the server's own values were dropped lately).
        """
        self._logDropped()
        limit = self._clock.seconds() - self.ackTimeout
        why = f"did not confirm it within {self.ackTimeout:g} s"
        for link in list(self._links.values()):
            late = [s for s, batch in link.inFlight.items() if batch.sentAt <= limit]

            def lateError(entry: _Entry, node: str = link.node) -> RelayError:
                return self._goneError(entry, node, why)

            for sequence in late:
                self._failBatch(link, sequence, lateError)

    def inFlight(self) -> int:
        """
        @return: How many values towards other nodes are not answered.
        """
        return sum(link.pending for link in self._links.values())

    # What other nodes send.

    def linkReceived(self, opened: Opened) -> None:
        """
        A batch from another node was opened: hand its values to this
        node's relay and sessions, and take its results.

        @raise DecodeError: It is malformed (nothing in it was used).
        """
        node, items = decodeBatch(self._decoder, opened.message)
        link = self._link(node, opened.sender)
        answer = False
        for index, item in enumerate(items):
            if isinstance(item, Result):
                self._resultReceived(link, item)
                continue
            answer = True
            if isinstance(item, Delivery):
                sender = _RemoteSender(self, link, opened.sequence, index, item.sender)
                if item.topic is not None:
                    self.local.publish(sender, item.topic, item.value)
                elif item.recipient is not None:
                    self.local.deliver(sender, item.recipient, item.value)
            else:
                self._sessionValue(link, opened.sequence, index, item)
        if answer:
            link.acknowledge = opened.sequence
            self._scheduleAnswer(link)

    def _sessionValue(self, link: _Link, sequence: int, index: int, item: SessionValue) -> None:
        session: Any = self._localPart.session(item.sessionId)
        error: RelayError | None = None
        if session is None:
            error = NoSuchSession(
                f"session {item.sessionId} of node {self.node} has ended", item.sessionId
            )
        else:
            try:
                session.sendBuffer(self._valueDecoder.decode(item.value))
            except ChannelClosedError:
                error = NoSuchSession(
                    f"session {item.sessionId} of node {self.node} is closing", item.sessionId
                )
            except NetStructerError as e:
                # It does not decode here, or is larger than the session's
                # peer accepts.
                error = RecipientBusy(
                    f"session {item.sessionId} of node {self.node} cannot take the value: {e}",
                    item.sessionId,
                )
        if error is not None:
            self._itemFailed(link, sequence, index, error, RelayOp.SEND)

    def _itemFailed(
        self, link: _Link, sequence: int, index: int, error: RelayError, op: RelayOp
    ) -> None:
        link.failures.append(failureOf(sequence, index, error, op))
        self._scheduleAnswer(link)

    def _scheduleAnswer(self, link: _Link) -> None:
        """
        Answer a node's batches soon: with the next batch towards it, or
        on their own after L{ANSWER_DELAY}, so that a stream is answered
        once every few milliseconds rather than once per batch.
        """
        if link.answering is None:
            link.answering = self._clock.callLater(ANSWER_DELAY, self._answer, link)

    def _answer(self, link: _Link) -> None:
        link.answering = None
        if self._links.get(link.node) is link:
            self._flushLink(link)

    def _resultReceived(self, link: _Link, result: Result) -> None:
        for failure in result.failures:
            batch = link.inFlight.get(failure.sequence)
            if batch is None or failure.index >= len(batch.entries):
                continue
            entry = batch.entries[failure.index]
            if entry is not None:
                self._report(entry.source, failure.error, failure.op, entry.name)
        for sequence in [s for s in link.inFlight if s <= result.acknowledged]:
            batch = link.inFlight.pop(sequence)
            link.pending -= batch.count

    def stop(self) -> None:
        """
        Send what is batched now (a clean stop), and stop scheduling.
        """
        if self._flushCall is not None and self._flushCall.active():
            self._flushCall.cancel()
        self._flushCall = None
        for link in list(self._links.values()):
            self._flushLink(link)
