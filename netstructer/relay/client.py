# -*- test-case-name: tests.test_relay -*-
"""
The client's side of the relay (see L{netstructer.relay}): one sans-IO state
machine, L{RelayClient}, attached to a session core as a capability by
L{RelayClientCapability} and shared that way by the Twisted
L{BridgeProtocol<netstructer.protocol.BridgeProtocol>} and the blocking
L{Link<netstructer.blocking.Link>}; L{ProtocolRelay
<netstructer.relay.deferreds.ProtocolRelay>} is the few lines of Deferreds
the Twisted protocol adds on top of it.

Requests (C{sendTo}, C{publish}, C{subscribe}, C{unsubscribe}) become relay
records to send.  Records from the server become relayed values, queued for
C{recvFrom}, or errors.  Standard library only (the blocking client imports
it without Twisted).  The server answers only failed requests, so an
error arrives after the call that caused it returned: it is kept, and raised
by the next request or C{recvFrom} (or fails a C{recvFrom} already waiting,
on Twisted).  Consecutive errors of one kind for one name (a flood of values
dropped for a full queue) are kept as one, whose C{count} says how many.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

from zope.interface import implementer

from netstructer.errors import RelayError, RemoteProtocolError
from netstructer.relay.wire import (
    RELAY_DELIVER,
    RELAY_ERROR,
    RELAY_PUBLISH,
    RELAY_SEND,
    RELAY_SUBSCRIBE,
    RELAY_UNSUBSCRIBE,
    RelayedValue,
    parseDeliver,
    parseError,
    requestBody,
)
from netstructer.session.capability import ICapability, ISessionHost

__all__ = ["RelayClient", "RelayClientCapability"]


class RelayClient:
    """
    The relay state of one client session, sans-IO.

    @ivar received: Relayed values not yet taken, oldest first.
    @ivar errors: Errors not yet raised, oldest first.
    """

    def __init__(
        self,
        encode: Callable[[object], bytes],
        decode: Callable[[bytes], object],
        maxQueued: int = 65536,
    ) -> None:
        """
        @param encode: Encodes a value (the session's encoder).
        @param decode: Decodes a relayed value (the session's limits).
        @param maxQueued: The most relayed values kept for L{nextRelayed};
            above it the server is sending faster than the application
            reads, which the transport's backpressure should have
            prevented, and the session fails.
        """
        self._encode = encode
        self._decode = decode
        self._maxQueued = maxQueued
        self.received: deque[RelayedValue] = deque()
        self.errors: deque[RelayError] = deque()
        self.onChange: Callable[[], None] | None = None
        """Called when a relayed value or an error arrives (the Twisted
        protocol's Deferreds wait on it)."""

    # Requests.

    def _request(self, recordType: int, name: str, value: bytes, what: str) -> tuple[int, bytes]:
        self.raisePending()
        return recordType, requestBody(name, value, what)

    def sendTo(self, name: str, value: object) -> tuple[int, bytes]:
        """
        @return: The record that sends C{value} to the session named
            C{name}.
        @raise RelayError: An earlier request failed (nothing is sent).
        @raise ValueError: The name is empty or too long.
        @raise EncodeError: The value cannot be encoded.
        """
        self.raisePending()
        return RELAY_SEND, requestBody(name, self._encode(value))

    def publish(self, topic: str, value: object) -> tuple[int, bytes]:
        """
        @return: The record that publishes C{value} to C{topic}.
        @raise RelayError: An earlier request failed (nothing is sent).
        """
        self.raisePending()
        return RELAY_PUBLISH, requestBody(topic, self._encode(value), "topic")

    def subscribe(self, topic: str) -> tuple[int, bytes]:
        """
        @return: The record that subscribes to C{topic}.
        @raise RelayError: An earlier request failed (nothing is sent).
        """
        return self._request(RELAY_SUBSCRIBE, topic, b"", "topic")

    def unsubscribe(self, topic: str) -> tuple[int, bytes]:
        """
        @return: The record that unsubscribes from C{topic}.
        @raise RelayError: An earlier request failed (nothing is sent).
        """
        return self._request(RELAY_UNSUBSCRIBE, topic, b"", "topic")

    # What the server sent.

    def recordReceived(self, recordType: int, body: bytes) -> None:
        """
        A relay record arrived from the server.

        @raise RemoteProtocolError: It is malformed, is a request (only
            clients send those), or its value does not decode.
        """
        if recordType == RELAY_DELIVER:
            sender, topic, encoded = parseDeliver(body)
            if len(self.received) >= self._maxQueued:
                raise RemoteProtocolError(
                    f"the server relayed more than {self._maxQueued} values this side has "
                    "not read; read them with recvFrom"
                )
            self.received.append(RelayedValue(sender, self._decode(encoded), topic))
        elif recordType == RELAY_ERROR:
            _, error = parseError(body)
            self._addError(error)
        else:
            raise RemoteProtocolError(
                f"the server sent relay record type {recordType:#04x}, which only clients send"
            )
        if self.onChange is not None:
            self.onChange()

    def _addError(self, error: RelayError) -> None:
        if self.errors:
            last = self.errors[-1]
            if type(last) is type(error) and last.name == error.name:
                last.count += error.count
                return
        self.errors.append(error)

    def raisePending(self) -> None:
        """
        @raise RelayError: The oldest error not yet raised, if any.
        """
        if self.errors:
            raise self.errors.popleft()

    def nextRelayed(self) -> RelayedValue | None:
        """
        Take the oldest relayed value.

        @return: It, or L{None} if none is queued.
        @raise RelayError: An error not yet raised (they come first).
        """
        self.raisePending()
        if self.received:
            return self.received.popleft()
        return None


@implementer(ICapability)
class RelayClientCapability:
    """
    A client session's relay, attached to its session core: requests go out
    as records through the session's host, and what the server sends goes
    to the L{RelayClient}.

    @ivar client: The relay state.
    @ivar closed: Why the session ended, once it has.
    """

    capability = "relay"

    def __init__(self, host: ISessionHost, client: RelayClient) -> None:
        """
        @param host: The session.
        @param client: The relay state.
        """
        self._host = host
        self.client = client
        self.closed: BaseException | None = None

    def send(self, record: tuple[int, bytes]) -> None:
        """
        Send a request record the L{RelayClient} made.

        @param record: Its type and body.
        """
        self._host.sendRecord(*record)

    def sendTo(self, name: str, value: object) -> None:
        """
        Send C{value} through the server to the session named C{name} (see
        L{RelayClient.sendTo}).
        """
        self.send(self.client.sendTo(name, value))

    def publish(self, topic: str, value: object) -> None:
        """
        Publish C{value} to C{topic} (see L{RelayClient.publish}).
        """
        self.send(self.client.publish(topic, value))

    def subscribe(self, topic: str) -> None:
        """
        Subscribe to C{topic} (see L{RelayClient.subscribe}).
        """
        self.send(self.client.subscribe(topic))

    def unsubscribe(self, topic: str) -> None:
        """
        Unsubscribe from C{topic} (see L{RelayClient.unsubscribe}).
        """
        self.send(self.client.unsubscribe(topic))

    def recordReceived(self, recordType: int, body: bytes) -> None:
        self.client.recordReceived(recordType, body)

    def sessionOpened(self) -> None:
        pass

    def sessionWritable(self) -> None:
        pass

    def sessionClosing(self) -> None:
        pass

    def sessionClosed(self, reason: BaseException) -> None:
        self.closed = reason

    def timeReached(self, now: float) -> None:
        pass
