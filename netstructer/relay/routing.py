# -*- test-case-name: tests.test_relay -*-
"""
The relay's routing: clients that send values to each other, by name, through the
server (C{sendTo}), and topics whose subscribers all receive what is
published to them (C{publish}, C{subscribe}, C{unsubscribe}).

This module holds the seam the routing goes through: L{IRelayEndpoint}
(one session's end of the relay, L{RelayEndpoint
<netstructer.relay.endpoint.RelayEndpoint>}) and L{IRelayBackend} (where
relayed values go), implemented here for one server by
L{LocalRelayBackend} and, for a cluster, by a backend of its own.

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

from twisted.logger import Logger
from zope.interface import Attribute, Interface, implementer

from netstructer.errors import NoSuchSession, RecipientBusy, RelayError
from netstructer.relay.wire import RelayOp

__all__ = ["IRelayBackend", "IRelayEndpoint", "LocalRelayBackend", "busyError"]


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
                self._failed(source, busyError(recipient, None), RelayOp.SEND)
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
                self._failed(source, busyError(member.name or "?", topic), RelayOp.PUBLISH)
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


def busyError(recipient: str, topic: str | None) -> RecipientBusy:
    """
    The error reported to a sender whose value found its recipient's
    queue full.

    @param recipient: The recipient's name.
    @param topic: The topic, for a published value.
    @return: The error.
    """
    where = f" (topic {topic!r})" if topic is not None else ""
    return RecipientBusy(
        f"the server's queue for {recipient!r}{where} is full, so the value was dropped; "
        "send more slowly, or have the recipient read faster",
        recipient,
    )
