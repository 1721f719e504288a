# -*- test-case-name: tests.test_relay -*-
"""
The relay: clients that send values to each other, by name, through the
server (C{sendTo}), and topics whose subscribers all receive what is
published to them (C{publish}, C{subscribe}, C{unsubscribe}).

This module holds the server's side, sans-IO: the wire format of the relay
records (types C{0x10}-C{0x15} of
L{EXTENSION_RECORD_RANGES<netstructer.channel.EXTENSION_RECORD_RANGES>}
C{["relay"]}; docs/protocol.rst, "Relay records"), the seam the routing goes
through (L{IRelayBackend}, implemented here for one server by
L{LocalRelayBackend} and, for a cluster, elsewhere), and the per-session
piece (L{RelayEndpoint}) that reads a session's relay requests, asks the
access policy (L{netstructer.relaypolicy}), hands them to the backend and
keeps the session's bounded queue of values relayed to it.  The client's
side is L{netstructer.relayclient}.

Delivery semantics, which every backend keeps:

    - B{Per-sender order.}  Values one sender sends to one recipient (or
      publishes to one topic) reach each recipient in the order they were
      sent.  Nothing is promised across senders.
    - B{No such session.}  A value for a name no session holds is dropped
      and the sender is told (L{NoSuchSession}, naming the recipient); its
      session stays open.
    - B{Bounded queues, per recipient.}  Each recipient has a queue of at
      most C{maxQueued} values waiting for its transport.  A slow recipient
      fills only its own queue; a value that finds it full is dropped and
      the sender is told (L{RecipientBusy}), never silently.
    - B{Refusals.}  A request the access policy refuses, or any request when
      relay is not turned on, is answered with L{RelayRefused}; the session
      stays open.
    - B{The sender's name} is the name of the key the sender's session
      authenticated with, set by the server: a client cannot claim another.
      A session with an anonymous key may not relay.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Callable

from twisted.internet import defer
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from zope.interface import Attribute, Interface, implementer

from netstructer.errors import (
    NoSuchSession,
    OperationTimedOut,
    RecipientBusy,
    RelayError,
    RelayRefused,
)
from netstructer.relayclient import RelayClient as _RelayClient
from netstructer.relaywire import (
    DEFAULT_RELAY_QUEUE,
    MAX_NAME_LENGTH,
    MAX_PENDING_ERRORS,
    RELAY_DELIVER,
    RELAY_ERROR,
    RELAY_PUBLISH,
    RELAY_SEND,
    RELAY_SUBSCRIBE,
    RELAY_UNSUBSCRIBE,
    RelayedValue,
    RelayErrorCode,
    RelayOp,
    RelayRequest,
    checkName,
    deliverBody,
    errorBody,
    errorFor,
    parseDeliver,
    parseError,
    parseRequest,
    requestBody,
)

__all__ = [
    "DEFAULT_RELAY_QUEUE",
    "MAX_NAME_LENGTH",
    "MAX_PENDING_ERRORS",
    "RELAY_DELIVER",
    "RELAY_ERROR",
    "RELAY_PUBLISH",
    "RELAY_SEND",
    "RELAY_SUBSCRIBE",
    "RELAY_UNSUBSCRIBE",
    "IRelayBackend",
    "IRelayEndpoint",
    "IRelayPolicy",
    "LocalRelayBackend",
    "ProtocolRelay",
    "RelayEndpoint",
    "RelayErrorCode",
    "RelayOp",
    "RelayRequest",
    "RelayedValue",
    "checkName",
    "deliverBody",
    "errorBody",
    "parseDeliver",
    "parseError",
    "parseRequest",
    "requestBody",
]

# The seam.


class IRelayEndpoint(Interface):
    """
    One session's end of the relay, as a backend sees it: where values
    relayed to the session are queued, and where errors for requests the
    session made are reported.  L{RelayEndpoint} provides it.
    """

    name = Attribute("The session's name (its key's), or None for an anonymous key.")
    session = Attribute("The session (a BridgeProtocol), for lookups and logs.")

    def enqueue(sender: str | None, topic: str | None, value: bytes) -> bool:  # noqa: N805
        """
        Queue a relayed value for the session.

        @param sender: The sender's name; L{None} for the server.
        @param topic: The topic, or L{None} for a value sent by name.
        @param value: The encoded value (already checked to decode).
        @return: L{False} if the session's bounded queue is full (or it has
            ended): the value was dropped and the caller reports it.
        """

    def relayFailed(error: RelayError, op: RelayOp) -> None:  # noqa: N805
        """
        Report to the session's client that one of its requests failed.
        Backends may call it at once or later (a remote recipient's answer).

        @param error: A L{NoSuchSession}, L{RelayRefused} or
            L{RecipientBusy} naming the recipient or topic.
        @param op: The request that failed.
        """


class IRelayBackend(Interface):
    """
    Where relayed values are routed: the sessions of one server
    (L{LocalRelayBackend}) or of a cluster of servers.

    Every method is called after the access policy allowed the request.
    Failures are never raised: they are reported to the requesting
    endpoint's L{IRelayEndpoint.relayFailed}, at once or later (for a
    request from the server itself, C{source} is L{None} and failures are
    logged).  A backend keeps per-sender order (values from one source to
    one recipient are enqueued in the order given) and never queues without
    bound: each recipient's queue is its endpoint's, and a backend that
    queues in between (towards another node) bounds that queue too and
    reports what it drops as L{RecipientBusy}.
    """

    def attach(endpoint: IRelayEndpoint) -> None:  # noqa: N805
        """
        A session opened with relay turned on: values sent to its name go
        to it from now on (the newest session of a name gets them).
        """

    def detach(endpoint: IRelayEndpoint) -> None:  # noqa: N805
        """
        The session ended: forget it and its subscriptions.
        """

    def deliver(source: IRelayEndpoint | None, recipient: str, value: bytes) -> None:  # noqa: N805
        """
        Relay a value to the session named C{recipient}, with
        C{source.name} as its sender.  Report L{NoSuchSession} if no session
        holds that name, L{RecipientBusy} if its queue is full.

        @param source: The sender's endpoint, or L{None} for the server.
        @param recipient: The recipient's name.
        @param value: The encoded value.
        """

    def publish(source: IRelayEndpoint | None, topic: str, value: bytes) -> int:  # noqa: N805
        """
        Relay a value to every subscriber of C{topic} but C{source}.  Report
        L{RecipientBusy}, naming the subscriber, for each full queue.

        @return: How many subscribers it was queued for (on this node,
            for a backend that cannot know at once).
        """

    def subscribe(endpoint: IRelayEndpoint, topic: str) -> None:  # noqa: N805
        """
        The endpoint receives what is published to C{topic} from now on.
        Subscribing twice is subscribing once.
        """

    def unsubscribe(endpoint: IRelayEndpoint, topic: str) -> None:  # noqa: N805
        """
        The endpoint stops receiving C{topic}; nothing if it was not
        subscribed.
        """

    def subscribers(topic: str) -> list[IRelayEndpoint]:  # noqa: N805
        """
        @return: The endpoints subscribed to C{topic} on this node.
        """


@implementer(IRelayBackend)
class LocalRelayBackend:
    """
    The relay of one server: names and topics resolved among its own
    sessions, as the L{RelayService<netstructer.relayservice.RelayService>}
    attaches them when they open (it observes the server's
    L{SessionRegistry<netstructer.registry.SessionRegistry>}).  When several
    sessions hold one name, the newest receives.
    """

    _log = Logger()

    def __init__(self, logger: Logger | None = None) -> None:
        if logger is not None:
            self._log = logger
        self._byName: dict[str, list[IRelayEndpoint]] = {}
        self._topics: dict[str, dict[IRelayEndpoint, None]] = {}
        self._subscribed: dict[IRelayEndpoint, set[str]] = {}

    def attach(self, endpoint: IRelayEndpoint) -> None:
        if endpoint.name is not None:
            self._byName.setdefault(endpoint.name, []).append(endpoint)

    def detach(self, endpoint: IRelayEndpoint) -> None:
        named = self._byName.get(endpoint.name) if endpoint.name is not None else None
        if named is not None and endpoint in named:
            named.remove(endpoint)
            if not named:
                del self._byName[endpoint.name]
        for topic in self._subscribed.pop(endpoint, ()):
            members = self._topics[topic]
            del members[endpoint]
            if not members:
                del self._topics[topic]

    def resolve(self, name: str) -> IRelayEndpoint | None:
        """
        @return: The endpoint of the newest session named C{name}, if any.
        """
        named = self._byName.get(name)
        return named[-1] if named else None

    def _failed(self, source: IRelayEndpoint | None, error: RelayError, op: RelayOp) -> None:
        if source is None:
            self._log.warn("The server's relayed value was dropped: {error}", error=str(error))
        else:
            source.relayFailed(error, op)

    def deliver(self, source: IRelayEndpoint | None, recipient: str, value: bytes) -> None:
        target = self.resolve(recipient)
        if target is None:
            self._failed(
                source,
                NoSuchSession(
                    f"no session named {recipient!r} is connected to the server; the value "
                    "was not delivered (check the name, or send again once it connects)",
                    recipient,
                ),
                RelayOp.SEND,
            )
            return
        if not target.enqueue(None if source is None else source.name, None, value):
            if self.resolve(recipient) is target:
                self._failed(source, _busy(recipient, None), RelayOp.SEND)
            else:
                # It ended meanwhile (its session was closing).
                self.deliver(source, recipient, value)

    def publish(self, source: IRelayEndpoint | None, topic: str, value: bytes) -> int:
        sender = None if source is None else source.name
        reached = 0
        for member in list(self._topics.get(topic, ())):
            if member is source:
                continue
            if member.enqueue(sender, topic, value):
                reached += 1
            elif member in self._subscribed:
                self._failed(source, _busy(member.name or "?", topic), RelayOp.PUBLISH)
        return reached

    def subscribe(self, endpoint: IRelayEndpoint, topic: str) -> None:
        self._topics.setdefault(topic, {})[endpoint] = None
        self._subscribed.setdefault(endpoint, set()).add(topic)

    def unsubscribe(self, endpoint: IRelayEndpoint, topic: str) -> None:
        members = self._topics.get(topic)
        if members is None or endpoint not in members:
            return
        del members[endpoint]
        if not members:
            del self._topics[topic]
        self._subscribed[endpoint].discard(topic)

    def subscribers(self, topic: str) -> list[IRelayEndpoint]:
        return list(self._topics.get(topic, ()))


def _busy(recipient: str, topic: str | None) -> RecipientBusy:
    where = f" (topic {topic!r})" if topic is not None else ""
    return RecipientBusy(
        f"the server's queue for {recipient!r}{where} is full, so the value was dropped; "
        "send more slowly, or have the recipient read faster",
        recipient,
    )


# The per-session piece.


class IRelayPolicy(Interface):
    """
    Who may relay what (see L{netstructer.relaypolicy}).  Each method is
    asked with the requesting session's name (never L{None}: anonymous
    sessions are refused before any policy is asked).
    """

    def maySend(sender: str, recipient: str) -> bool:  # noqa: N805
        """
        @return: Whether C{sender} may send values to C{recipient}.
        """

    def mayPublish(sender: str, topic: str) -> bool:  # noqa: N805
        """
        @return: Whether C{sender} may publish to C{topic}.
        """

    def maySubscribe(sender: str, topic: str) -> bool:  # noqa: N805
        """
        @return: Whether C{sender} may subscribe to C{topic}.
        """


@implementer(IRelayEndpoint)
class RelayEndpoint:
    """
    One server session's relay: parses the relay records its client sends,
    asks the policy, hands allowed requests to the backend and answers the
    others with a C{RELAY_ERROR} record; and keeps the bounded queue of
    values relayed to it, written while the session's transport accepts
    writes.

    Sans-IO: it is given functions to send a record, to say whether the
    transport is writable, to be called back once it is, and to check that
    an encoded value decodes.

    @ivar name: The session's name, or L{None}.
    @ivar session: The session, for logs.
    @ivar maxQueued: The bound of the queue, in values.
    @ivar dropped: Values dropped because the queue was full.
    """

    _log = Logger()

    def __init__(
        self,
        name: str | None,
        backend: IRelayBackend | None,
        policy: IRelayPolicy | None,
        sendRecord: Callable[[int, bytes], None],
        writable: Callable[[], bool],
        whenWritable: Callable[[Callable[[], None]], None],
        checkValue: Callable[[bytes], object],
        *,
        maxQueued: int = DEFAULT_RELAY_QUEUE,
        session: object = None,
        logger: Logger | None = None,
    ) -> None:
        """
        @param name: The session's name, or L{None} for an anonymous key.
        @param backend: Where requests go; L{None} when relay is off (every
            request is refused).
        @param policy: Who may do what; L{None} allows every named session
            everything.
        @param sendRecord: Sends one relay record to the client.
        @param writable: Whether the transport accepts writes now.
        @param whenWritable: Calls its argument once the transport accepts
            writes again.
        @param checkValue: Decodes an encoded value, raising
            L{RemoteProtocolError} (or L{DecodeError}) if it is malformed:
            nothing malformed is relayed to another client.
        @param maxQueued: The most values queued for this session.
        @param session: The session, for logs.
        @param logger: Where to log.
        """
        if maxQueued < 1:
            raise ValueError("maxQueued must be at least 1")
        self.name = name
        self.session = session
        self.maxQueued = maxQueued
        self.dropped = 0
        self._backend = backend
        self._policy = policy
        self._sendRecord = sendRecord
        self._writable = writable
        self._whenWritable = whenWritable
        self._checkValue = checkValue
        self._queue: deque[bytes] = deque()
        self._errors: OrderedDict[tuple[type, RelayOp, str], RelayError] = OrderedDict()
        self._waiting = False
        self._ended = False
        if logger is not None:
            self._log = logger
        if backend is not None:
            backend.attach(self)

    def __repr__(self) -> str:
        return f"<RelayEndpoint {self.name!r} {len(self._queue)} queued>"

    @property
    def queued(self) -> int:
        """
        Values waiting for the transport.
        """
        return len(self._queue)

    # Requests from the client.

    def recordReceived(self, recordType: int, body: bytes) -> None:
        """
        A relay record arrived from the client (a L{RecordRouter
        <netstructer.records.RecordRouter>} handler).

        @raise RemoteProtocolError: The record is malformed, is not a
            request, or carries a value that does not decode.
        """
        request = parseRequest(recordType, body)
        if request.value:
            self._checkValue(request.value)
        refusal = self._refusal(request)
        if refusal is not None:
            self._log.info(
                "Refused {op} from {sender} for {target}: {why}",
                op=request.op.name.lower(),
                sender=self.name,
                target=request.name,
                why=refusal,
            )
            self.relayFailed(RelayRefused(refusal, request.name), request.op)
            return
        backend = self._backend
        if backend is None:  # pragma: no cover (refused above)
            return
        if request.op is RelayOp.SEND:
            backend.deliver(self, request.name, request.value)
        elif request.op is RelayOp.PUBLISH:
            backend.publish(self, request.name, request.value)
        elif request.op is RelayOp.SUBSCRIBE:
            backend.subscribe(self, request.name)
        else:
            backend.unsubscribe(self, request.name)

    def _refusal(self, request: RelayRequest) -> str | None:
        """
        @return: Why the request is refused, or L{None} if it is allowed.
        """
        if self._backend is None:
            return (
                "relay is not turned on at this server; the operator can turn it on "
                "with --relay (twistd netstructer) or Server(relay=True)"
            )
        if self.name is None:
            return (
                "this session's key has no name, and anonymous sessions may not relay; "
                "ask the operator for a named key (netstructer keygen --name NAME)"
            )
        policy = self._policy
        if policy is None or request.op is RelayOp.UNSUBSCRIBE:
            return None
        if request.op is RelayOp.SEND:
            allowed = policy.maySend(self.name, request.name)
            what = f"send to {request.name!r}"
        elif request.op is RelayOp.PUBLISH:
            allowed = policy.mayPublish(self.name, request.name)
            what = f"publish to topic {request.name!r}"
        else:
            allowed = policy.maySubscribe(self.name, request.name)
            what = f"subscribe to topic {request.name!r}"
        if allowed:
            return None
        return (
            f"the server's relay policy does not let {self.name!r} {what}; "
            "ask the operator to allow it"
        )

    def relayFailed(self, error: RelayError, op: RelayOp) -> None:
        """
        Report a failed request to the client with a C{RELAY_ERROR} record,
        written at once (ahead of queued values: the sender needs it to slow
        down) while the transport accepts writes.  While it does not (a
        sender that floods and does not read), failures are counted instead,
        one record per kind, name and request, at most L{MAX_PENDING_ERRORS}
        of them (further kinds are counted under the last), and written once
        it drains: a client that never reads cannot grow the server's
        memory.
        """
        if self._ended:
            return
        if not self._errors and self._writable():
            self._sendRecord(RELAY_ERROR, errorFor(error, op))
            return
        key = (type(error), op, error.name)
        pending = self._errors.get(key)
        if pending is None and len(self._errors) >= MAX_PENDING_ERRORS:
            key = next(reversed(self._errors))
            pending = self._errors[key]
        if pending is None:
            self._errors[key] = error
        else:
            pending.count += error.count
        self._waitWritable()

    def _waitWritable(self) -> None:
        if not self._waiting:
            self._waiting = True
            self._whenWritable(self._drained)

    # Values for the client.

    def enqueue(self, sender: str | None, topic: str | None, value: bytes) -> bool:
        if self._ended:
            return False
        if len(self._queue) >= self.maxQueued:
            self.dropped += 1
            return False
        self._queue.append(deliverBody(sender, topic, value))
        self.flush()
        # Writing may have found the session closing, which ends this
        # endpoint (and detaches it): the value was not taken.
        return not self._ended

    def flush(self) -> None:
        """
        Write queued values while the transport accepts writes; once it
        stops, wait for it to drain.
        """
        errors = self._errors
        while errors and not self._ended:
            if not self._writable():
                self._waitWritable()
                return
            (_, op, _), error = errors.popitem(last=False)
            self._sendRecord(RELAY_ERROR, errorFor(error, op))
        queue = self._queue
        while queue and not self._ended:
            if not self._writable():
                self._waitWritable()
                return
            self._sendRecord(RELAY_DELIVER, queue.popleft())

    def _drained(self) -> None:
        self._waiting = False
        self.flush()

    def ended(self) -> None:
        """
        The session ended: detach from the backend and drop the queue.
        """
        if self._ended:
            return
        self._ended = True
        self._errors.clear()
        if self._queue:
            self._log.info(
                "{count} relayed value(s) for {name} were not written before its session ended",
                count=len(self._queue),
                name=self.name,
            )
            self._queue.clear()
        if self._backend is not None:
            self._backend.detach(self)


class ProtocolRelay:
    """
    The Deferreds of the relay on a Twisted session: C{recvFrom} waiters,
    with timeouts on the session's clock.  The protocol's C{sendTo},
    C{publish}, C{subscribe}, C{unsubscribe} and C{recvFrom} call this.
    """

    def __init__(
        self,
        client: _RelayClient,
        sendRecord: Callable[[int, bytes], None],
        clock: IReactorTime,
        describe: Callable[[], str],
    ) -> None:
        self.client = client
        self._sendRecord = sendRecord
        self._clock = clock
        self._describe = describe
        self._waiters: deque[defer.Deferred[RelayedValue]] = deque()
        self._closed: BaseException | None = None
        client.onChange = self._changed

    def send(self, record: tuple[int, bytes]) -> None:
        """
        Send a request record made by the L{RelayClient}.
        """
        self._sendRecord(*record)

    def recvFrom(self, timeout: float | None = None) -> defer.Deferred[RelayedValue]:
        """
        The next relayed value (see L{BridgeProtocol.recvFrom
        <netstructer.protocol.BridgeProtocol.recvFrom>}).
        """
        try:
            relayed = self.client.nextRelayed()
        except RelayError as e:
            return defer.fail(e)
        if relayed is not None:
            return defer.succeed(relayed)
        if self._closed is not None:
            return defer.fail(self._closed)
        timer: IDelayedCall | None = None

        def cancel(d: defer.Deferred[RelayedValue]) -> None:
            if timer is not None and timer.active():
                timer.cancel()
            self._waiters.remove(d)

        d: defer.Deferred[RelayedValue] = defer.Deferred(cancel)
        self._waiters.append(d)
        if timeout is not None:

            def timedOut() -> None:
                self._waiters.remove(d)
                d.errback(
                    OperationTimedOut(
                        f"no relayed value arrived from {self._describe()} within {timeout} seconds"
                    )
                )

            timer = self._clock.callLater(timeout, timedOut)

            def stopTimer(result: object) -> object:
                if timer is not None and timer.active():
                    timer.cancel()
                return result

            d.addBoth(stopTimer)
        return d

    def _changed(self) -> None:
        while self._waiters and (self.client.received or self.client.errors):
            waiter = self._waiters.popleft()
            try:
                relayed = self.client.nextRelayed()
            except RelayError as e:
                waiter.errback(e)
                continue
            if relayed is not None:
                waiter.callback(relayed)

    def connectionLost(self, reason: BaseException) -> None:
        """
        The session ended: waiting C{recvFrom} calls fail with C{reason}
        (values already relayed are still taken first).
        """
        self._closed = reason
        waiters, self._waiters = self._waiters, deque()
        for waiter in waiters:
            waiter.errback(reason)
