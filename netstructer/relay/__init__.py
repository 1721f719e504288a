# -*- test-case-name: tests.test_relay -*-
"""
The relay: clients that send values to each other, by name, through the
server (C{sendTo}), and topics whose subscribers all receive what is
published to them (C{publish}, C{subscribe}, C{unsubscribe}).

The relay is a capability of the session core (L{netstructer.session}):

    - L{netstructer.relay.wire}: the relay records (types C{0x10}-C{0x15} of
      L{EXTENSION_RECORD_RANGES<netstructer.channel.EXTENSION_RECORD_RANGES>}
      C{["relay"]}; docs/protocol.rst, "Relay records");
    - L{netstructer.relay.client}: the client's state
      (L{RelayClient<netstructer.relay.client.RelayClient>}) and the
      capability both client adapters attach;
    - L{netstructer.relay.routing}: the seam the routing goes through
      (L{IRelayBackend}, L{IRelayEndpoint}) and the backend of one server
      (L{LocalRelayBackend}); a cluster plugs its own backend in here;
    - L{netstructer.relay.endpoint}: one server session's end
      (L{RelayEndpoint}), a capability;
    - L{netstructer.relay.policy}: who may relay what (L{IRelayPolicy});
    - L{netstructer.relay.service}: the server-side service that gives each
      session its endpoint (imported by the server, not here);
    - L{netstructer.relay.deferreds}: the Twisted protocol's Deferreds.

Delivery semantics, which every backend keeps:

    - B{Per-sender order.}  Values one sender sends to one recipient (or
      publishes to one topic) reach each recipient in the order they were
      sent.  Nothing is promised across senders.
    - B{No such session.}  A value for a name no session holds is dropped
      and the sender is told (L{NoSuchSession
      <netstructer.errors.NoSuchSession>}, naming the recipient); its
      session stays open.
    - B{Bounded queues, per recipient.}  Each recipient has a queue of at
      most C{maxQueued} values waiting for its transport.  A slow recipient
      fills only its own queue; a value that finds it full is dropped and
      the sender is told (L{RecipientBusy<netstructer.errors.RecipientBusy>}),
      never silently.
    - B{Refusals.}  A request the access policy refuses, or any request when
      relay is not turned on, is answered with L{RelayRefused
      <netstructer.errors.RelayRefused>}; the session stays open.
    - B{The sender's name} is the name of the key the sender's session
      authenticated with, set by the server: a client cannot claim another.
      A session with an anonymous key may not relay.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from netstructer.relay.wire import (
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
    parseDeliver,
    parseError,
    parseRequest,
    requestBody,
)

if TYPE_CHECKING:
    from netstructer.relay.deferreds import ProtocolRelay
    from netstructer.relay.endpoint import RelayEndpoint
    from netstructer.relay.policy import IRelayPolicy
    from netstructer.relay.routing import IRelayBackend, IRelayEndpoint, LocalRelayBackend

_LAZY = {
    "ProtocolRelay": "deferreds",
    "RelayEndpoint": "endpoint",
    "IRelayPolicy": "policy",
    "IRelayBackend": "routing",
    "IRelayEndpoint": "routing",
    "LocalRelayBackend": "routing",
}
"""
Names imported from their modules when first used: those modules import
Twisted, which the blocking client (which needs only the wire format and the
client's state) never does.
"""


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(f"netstructer.relay.{module}"), name)
    globals()[name] = value
    return value


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
