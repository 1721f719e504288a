# -*- test-case-name: tests.test_relay -*-
"""
L{ProtocolRelay}: the few lines of Deferreds the Twisted protocol adds on
top of the client's relay state (L{netstructer.relay.client}).
"""

from __future__ import annotations

from collections.abc import Callable

from twisted.internet import defer
from twisted.internet.interfaces import IReactorTime

from netstructer._waiting import Waiters
from netstructer.errors import OperationTimedOut, RelayError
from netstructer.relay.client import RelayClient
from netstructer.relay.wire import RelayedValue

__all__ = ["ProtocolRelay"]


class ProtocolRelay:
    """
    The Deferreds of the relay on a Twisted session: C{recvFrom} waiters,
    with timeouts on the session's clock.  The protocol's C{sendTo},
    C{publish}, C{subscribe}, C{unsubscribe} and C{recvFrom} call this.
    """

    def __init__(
        self,
        client: RelayClient,
        sendRecord: Callable[[int, bytes], None],
        clock: IReactorTime,
        describe: Callable[[], str],
    ) -> None:
        self.client = client
        """The relay state the requests are made with."""
        self._sendRecord = sendRecord
        self._clock = clock
        self._describe = describe
        self._waiters: Waiters[RelayedValue] = Waiters(
            clock,
            lambda timeout: OperationTimedOut(
                f"no relayed value arrived from {describe()} within {timeout} seconds"
            ),
        )
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
        return self._waiters.wait(timeout)

    def _changed(self) -> None:
        waiters = self._waiters
        while waiters and (self.client.received or self.client.errors):
            try:
                relayed = self.client.nextRelayed()
            except RelayError as e:
                waiters.fail(e)
                continue
            if relayed is not None:
                waiters.fire(relayed)

    def connectionLost(self, reason: BaseException) -> None:
        """
        The session ended: waiting C{recvFrom} calls fail with C{reason}
        (values already relayed are still taken first).
        """
        self._closed = reason
        self._waiters.failAll(reason)
