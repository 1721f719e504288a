# -*- test-case-name: tests.test_relay -*-
"""
L{RelayService}: gives every session of a server its relay endpoint
(L{RelayEndpoint<netstructer.relay.endpoint.RelayEndpoint>}).  It observes the
server's L{SessionRegistry<netstructer.registry.SessionRegistry>} (its
public L{ISessionListener<netstructer.registry.ISessionListener>} seam):
when a session opens it routes the session's relay records to a new
endpoint, attached to the backend; when the session ends the endpoint is
detached.  With relay turned off, the endpoint refuses every request.
"""

from __future__ import annotations

from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from netstructer.errors import ChannelClosedError, RelayRefused
from netstructer.protocol import BridgeProtocol
from netstructer.registry import ISessionListener
from netstructer.relay.endpoint import RelayEndpoint
from netstructer.relay.policy import IRelayPolicy
from netstructer.relay.routing import IRelayBackend
from netstructer.relay.wire import DEFAULT_RELAY_QUEUE
from netstructer.session.capability import ISessionHost
from netstructer.values import Decoder

__all__ = ["RelayService"]


@implementer(ISessionListener)
class RelayService:
    """
    The relay of one server.

    @ivar backend: Where requests are routed; L{None} when relay is off.
    @ivar policy: Who may do what; L{None} allows every named session.
    @ivar maxQueued: The bound of each recipient's queue, in values.
    """

    _log = Logger()

    def __init__(
        self,
        backend: IRelayBackend | None,
        policy: IRelayPolicy | None = None,
        *,
        maxQueued: int = DEFAULT_RELAY_QUEUE,
        logger: Logger | None = None,
    ) -> None:
        if maxQueued < 1:
            raise ValueError("maxRelayQueue must be at least 1")
        self.backend = backend
        self.policy = policy
        self.maxQueued = maxQueued
        if logger is not None:
            self._log = logger
        self._endpoints: dict[BridgeProtocol, RelayEndpoint] = {}

    def endpointOf(self, session: BridgeProtocol) -> RelayEndpoint | None:
        """
        @return: The relay endpoint of an open session, if it has one.
        """
        return self._endpoints.get(session)

    def sessionOpened(self, session: BridgeProtocol) -> None:
        """
        Give the session an endpoint.  A session that negotiated protocol
        version 1 has none: it cannot receive relay records, so no value is
        relayed to it (senders get "no such session").
        """
        if (session.protocolVersion or 1) < 2 or session.records.registered("relay"):
            return
        decoder = Decoder(session.config.limits)

        def makeEndpoint(host: ISessionHost) -> RelayEndpoint:
            def sendRecord(recordType: int, body: bytes) -> None:
                try:
                    host.sendRecord(recordType, body)
                except ChannelClosedError:
                    self._log.info(
                        "A relayed record for {name} was dropped: its session is closing",
                        name=endpoint.name,
                    )
                    endpoint.ended()

            endpoint = RelayEndpoint(
                session.name,
                self.backend,
                self.policy,
                sendRecord,
                lambda: host.writable,
                None,
                decoder.decode,
                maxQueued=self.maxQueued,
                session=session,
                logger=self._log,
            )
            return endpoint

        self._endpoints[session] = session.attachCapability(makeEndpoint)

    def sessionClosed(self, session: BridgeProtocol, reason: Failure) -> None:
        """
        Detach the session's endpoint.
        """
        endpoint = self._endpoints.pop(session, None)
        if endpoint is not None:
            endpoint.ended()

    # The server's own requests.

    def _requireBackend(self) -> IRelayBackend:
        if self.backend is None:
            raise RelayRefused(
                "relay is not turned on at this server: create it with relay=True "
                "(twistd netstructer --relay)",
                "",
            )
        return self.backend

    def publish(self, topic: str, encoded: bytes) -> int:
        """
        Publish an encoded value to every subscriber of C{topic}, with no
        sender name (the server's own values).

        @return: How many subscribers it was queued for.
        @raise RelayRefused: Relay is off.
        """
        return self._requireBackend().publish(None, topic, encoded)

    def sendTo(self, name: str, encoded: bytes) -> None:
        """
        Send an encoded value to the session named C{name}, as the server.
        Failures (no such session, a full queue) are logged.

        @raise RelayRefused: Relay is off.
        """
        self._requireBackend().deliver(None, name, encoded)
