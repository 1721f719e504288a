# -*- test-case-name: tests.test_client -*-
"""
Tests for L{netstructer.client}, in memory: connections are made on a
L{MemoryReactorClock}, whose captured factories build the client protocols;
those are connected to L{StringTransport}s, and a small pump moves bytes
between them and a real server-side L{BridgeProtocol}.  Time is the memory
reactor's clock.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, cast

from twisted.application.internet import backoffPolicy
from twisted.application.service import IService
from twisted.internet.abstract import isIPv6Address
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.endpoints import (
    HostnameEndpoint,
    TCP4ClientEndpoint,
    TCP6ClientEndpoint,
    UNIXClientEndpoint,
)
from twisted.internet.error import (
    ConnectionDone,
    ConnectionLost,
    ConnectionRefusedError,
)
from twisted.internet.interfaces import (
    IAddress,
    IHostnameResolver,
    IHostResolution,
    IProtocol,
    IProtocolFactory,
    IResolutionReceiver,
    IStreamClientEndpoint,
)
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.logger import ILogObserver, LogEvent, Logger
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer
from zope.interface.verify import verifyObject

from netstructer.channel import Role
from netstructer.client import (
    CLIENT_OPTIONS,
    ReconnectingClient,
    clientEndpoint,
    connect,
)
from netstructer.errors import (
    AuthenticationError,
    BufferDataError,
    ChannelClosedError,
    EncodeError,
    HandshakeError,
    OperationTimedOut,
    TruncationError,
)
from netstructer.keys import generateKey
from netstructer.protocol import BridgeConfig, BridgeProtocol
from netstructer.values import Limits

KEY = generateKey()
EXAMPLE = ["hi im haytam", 128, {b"gg": "gg"}, {1, 2, 6, 4}, (False, True)]
SERVER = IPv4Address("TCP", "127.0.0.1", 5000)
DESCRIPTION = "tcp:host=127.0.0.1:port=5000"


class Wire:
    """
    One connection in memory: a client-side protocol (as an endpoint's
    factory built it) and a server-side L{BridgeProtocol}, each on a
    L{StringTransport}.

    @ivar closed: Whether both sides have been told the connection ended.
    """

    def __init__(
        self,
        client: IProtocol,
        server: BridgeProtocol,
        clientAddress: IAddress | None = None,
        serverAddress: IAddress | None = None,
    ) -> None:
        """
        Connect both sides (the server first, as a listening port would).

        @param client: The client side's protocol.
        @param server: The server side's protocol.
        @param clientAddress: The client's address.
        @param serverAddress: The server's address.
        """
        clientAddress = clientAddress or IPv4Address("TCP", "127.0.0.1", 40000)
        serverAddress = serverAddress or SERVER
        self.client = client
        self.server = server
        self.clientTransport = StringTransport(clientAddress, serverAddress)
        self.serverTransport = StringTransport(serverAddress, clientAddress)
        self.closed = False
        server.makeConnection(self.serverTransport)
        client.makeConnection(self.clientTransport)

    def pump(self) -> None:
        """
        Move bytes both ways until neither side has anything to send, then
        end the connection if either side closed or aborted it.
        """
        for _ in range(1000):
            # Values sent outside a frame's handling leave at the end of the
            # reactor turn.
            self.server.clock.advance(0)  # type: ignore[attr-defined]
            moved = self._move(self.clientTransport, self.server)
            moved = self._move(self.serverTransport, self.client) or moved
            self._maybeEnd()
            if not moved:
                return
        raise AssertionError("the pump did not settle")

    def _move(self, source: StringTransport, target: IProtocol) -> bool:
        data = source.value()
        if not data:
            return False
        source.clear()
        if not self.closed:
            target.dataReceived(data)
        return True

    def _maybeEnd(self) -> None:
        if self.closed:
            return
        transports = (self.clientTransport, self.serverTransport)
        if any(t.disconnected for t in transports):
            self.end(Failure(ConnectionLost("aborted")))
        elif any(t.disconnecting and not t.value() for t in transports):
            self.end(Failure(ConnectionDone("closed")))

    def end(self, reason: Failure) -> None:
        """
        Tell both sides the connection ended.

        @param reason: Why.
        """
        if self.closed:
            return
        self.closed = True
        self.client.connectionLost(reason)
        self.server.connectionLost(reason)


def serverProtocol(
    reactor: MemoryReactorClock, key: bytes = KEY, logger: Logger | None = None, **options: Any
) -> BridgeProtocol:
    """
    Make a server-side protocol.

    @param reactor: Its clock.
    @param key: Its key.
    @param logger: Where it logs.
    @param options: Other L{BridgeConfig} fields.
    @return: The protocol.
    """
    config = BridgeConfig.fromKey(key, **options)
    return BridgeProtocol(Role.SERVER, config, reactor, logger=logger or recordingLogger([]))


def recordingLogger(events: list[LogEvent]) -> Logger:
    """
    Make a logger that appends its events to a list.

    @param events: The list.
    @return: The logger.
    """
    return Logger(observer=cast(ILogObserver, events.append))


def buildClient(factory: IProtocolFactory, address: IAddress) -> IProtocol:
    """
    Build the client protocol of a connection the reactor was asked for.

    @param factory: The factory the endpoint gave the reactor.
    @param address: The server's address.
    @return: The protocol.
    """
    client = factory.buildProtocol(address)
    assert client is not None
    return client


def accept(
    reactor: MemoryReactorClock, server: BridgeProtocol | None = None, index: int = -1
) -> Wire:
    """
    Accept the connection the reactor was asked to make, connecting it to a
    server-side protocol.

    @param reactor: The reactor.
    @param server: The server side; a default one by default.
    @param index: Which of the reactor's TCP connection requests.
    @return: The wire.
    """
    host, port, factory, _, _ = reactor.tcpClients[index]
    address: IAddress
    if isIPv6Address(host):
        address = IPv6Address("TCP", host, port)
    else:
        address = IPv4Address("TCP", host, port)
    return Wire(
        buildClient(factory, address), server or serverProtocol(reactor), serverAddress=address
    )


def refuse(reactor: MemoryReactorClock, index: int = -1) -> None:
    """
    Refuse a connection the reactor was asked to make.

    @param reactor: The reactor.
    @param index: Which of the reactor's TCP connection requests.
    """
    _, _, factory, _, _ = reactor.tcpClients[index]
    factory.clientConnectionFailed(reactor.connectors[index], Failure(ConnectionRefusedError()))


@implementer(IHostResolution)
class _Resolution:
    def __init__(self, name: str) -> None:
        self.name = name

    def cancel(self) -> None:
        pass


@implementer(IHostnameResolver)
class LiteralResolver:
    """
    Resolves IP literals to themselves and every other name to 127.0.0.1, at
    once, remembering the names asked for.

    @ivar names: The names asked for.
    """

    def __init__(self) -> None:
        self.names: list[str] = []

    def resolveHostName(
        self,
        resolutionReceiver: IResolutionReceiver,
        hostName: str,
        portNumber: int = 0,
        addressTypes: Sequence[type[IAddress]] | None = None,
        transportSemantics: str = "TCP",
    ) -> IHostResolution:
        """
        Resolve at once.
        """
        self.names.append(hostName)
        resolution = _Resolution(hostName)
        resolutionReceiver.resolutionBegan(resolution)
        if isIPv6Address(hostName):
            resolutionReceiver.addressResolved(IPv6Address("TCP", hostName, portNumber))
        else:
            host = hostName if hostName[:1].isdigit() else "127.0.0.1"
            resolutionReceiver.addressResolved(IPv4Address("TCP", host, portNumber))
        resolutionReceiver.resolutionComplete()
        return resolution


def memoryReactor() -> tuple[MemoryReactorClock, LiteralResolver]:
    """
    Make a memory reactor resolving names with a L{LiteralResolver}.

    @return: The reactor and its resolver.
    """
    reactor = MemoryReactorClock()
    resolver = LiteralResolver()
    reactor.installNameResolver(resolver)
    return reactor, resolver


class ConnectTests(SynchronousTestCase):
    """
    L{connect} fires only once the server has authenticated, and reports
    each way a connection can fail.
    """

    def setUp(self) -> None:
        self.reactor, self.resolver = memoryReactor()

    def assertNoTimers(self) -> None:
        """
        No delayed call is left on the reactor.
        """
        self.assertEqual(self.reactor.getDelayedCalls(), [])

    def test_firesAfterHandshake(self) -> None:
        """
        The result fires with the established L{BridgeProtocol} only once the
        handshake has completed, and values then flow both ways; the timeout
        timer is gone.
        """
        d = connect(self.reactor, DESCRIPTION, KEY)
        self.assertEqual(self.reactor.tcpClients[0][:2], ("127.0.0.1", 5000))
        wire = accept(self.reactor)
        self.assertNoResult(d)
        wire.pump()
        session = self.successResultOf(d)
        self.assertIsInstance(session, BridgeProtocol)
        self.assertTrue(session.established)
        self.assertEqual(session.role, Role.CLIENT)
        session.sendBuffer(EXAMPLE)
        wire.server.sendBuffer("reply")
        wire.pump()
        self.assertEqual(self.successResultOf(wire.server.recvBuffer()), EXAMPLE)
        self.assertEqual(self.successResultOf(session.recvBuffer()), "reply")
        # Only the sessions' keep-alive timers remain.
        self.assertEqual(len(self.reactor.getDelayedCalls()), 2)
        session.close()
        wire.pump()
        self.assertTrue(wire.closed)
        self.assertIsInstance(session.closeReason.value, ConnectionDone)  # type: ignore[union-attr]
        self.assertNoTimers()

    def test_sendBeforeResult(self) -> None:
        """
        The session is usable from the moment the result fires: a value sent
        in the result's callback reaches the server.
        """
        d = connect(self.reactor, DESCRIPTION, KEY)
        d.addCallback(lambda session: session.sendBuffer(EXAMPLE))
        wire = accept(self.reactor)
        wire.pump()
        self.assertEqual(self.successResultOf(wire.server.recvBuffer()), EXAMPLE)

    def test_wrongKey(self) -> None:
        """
        A server holding another key fails the result with
        L{AuthenticationError}, and no timer is left.
        """
        d = connect(self.reactor, DESCRIPTION, generateKey())
        wire = accept(self.reactor)
        wire.pump()
        self.failureResultOf(d, AuthenticationError)
        self.assertTrue(wire.closed)
        self.assertNoTimers()

    def test_suiteMismatch(self) -> None:
        """
        A server that does not accept the client's suite fails the result
        with L{HandshakeError} (not an authentication error).
        """
        d = connect(self.reactor, DESCRIPTION, KEY, suite="fernet")
        wire = accept(self.reactor)
        wire.pump()
        failure = self.failureResultOf(d, HandshakeError)
        self.assertNotIsInstance(failure.value, AuthenticationError)
        self.assertIn("suite", str(failure.value))
        self.assertNoTimers()

    def test_fernetSuite(self) -> None:
        """
        The suite is configurable: a fernet client connects to a fernet
        server.
        """
        d = connect(self.reactor, DESCRIPTION, KEY, suite="fernet")
        wire = accept(self.reactor, serverProtocol(self.reactor, suite="fernet"))
        wire.pump()
        self.assertTrue(self.successResultOf(d).established)

    def test_refused(self) -> None:
        """
        A refused connection fails the result with the endpoint's
        L{ConnectionRefusedError}, and no timer is left.
        """
        d = connect(self.reactor, DESCRIPTION, KEY)
        refuse(self.reactor)
        self.failureResultOf(d, ConnectionRefusedError)
        self.assertNoTimers()

    def test_endpointFailsAtOnce(self) -> None:
        """
        An endpoint that fails synchronously fails the result, leaving no
        timer.
        """

        @implementer(IStreamClientEndpoint)
        class Failing:
            def connect(self, factory: object) -> Deferred[IProtocol]:
                raise ConnectionRefusedError("no")

        d = connect(self.reactor, Failing(), KEY)
        self.failureResultOf(d, ConnectionRefusedError)
        self.assertNoTimers()

    def test_timeoutWhileConnecting(self) -> None:
        """
        A connection not made within C{timeout} seconds fails the result
        with L{OperationTimedOut}; the endpoint's attempt is cancelled and no
        timer is left.
        """
        d = connect(self.reactor, DESCRIPTION, KEY, timeout=5)
        self.reactor.advance(4.9)
        self.assertNoResult(d)
        self.reactor.advance(0.1)
        failure = self.failureResultOf(d, OperationTimedOut)
        self.assertIn("5", str(failure.value))
        self.assertTrue(self.reactor.connectors[0].stoppedConnecting)
        self.assertNoTimers()

    def test_timeoutDuringHandshake(self) -> None:
        """
        A server that accepts the connection but never answers the handshake
        makes the result fail with L{OperationTimedOut} after C{timeout}
        seconds (the timeout covers the handshake too); the connection is
        aborted and, once it has ended, no timer is left.
        """
        d = connect(self.reactor, DESCRIPTION, KEY, timeout=5)
        _host, _port, factory, _, _ = self.reactor.tcpClients[0]
        client = buildClient(factory, SERVER)
        transport = StringTransport(peerAddress=SERVER)
        client.makeConnection(transport)
        self.reactor.advance(5)
        self.failureResultOf(d, OperationTimedOut)
        self.assertTrue(transport.disconnected)
        client.connectionLost(Failure(ConnectionLost()))
        self.assertNoTimers()

    def test_handshakeTimeoutFirst(self) -> None:
        """
        With a handshake timeout shorter than the overall timeout, the
        session's L{HandshakeError} (a L{HandshakeTimeout}) is reported.
        """
        d = connect(self.reactor, DESCRIPTION, KEY, timeout=30, handshakeTimeout=2)
        _host, _port, factory, _, _ = self.reactor.tcpClients[0]
        client = buildClient(factory, SERVER)
        transport = StringTransport(peerAddress=SERVER)
        client.makeConnection(transport)
        self.reactor.advance(2)
        client.connectionLost(Failure(ConnectionLost()))
        self.failureResultOf(d, HandshakeError)
        self.assertNoTimers()

    def test_noTimeout(self) -> None:
        """
        C{timeout=None} schedules no overall timer.
        """
        d = connect(self.reactor, DESCRIPTION, KEY, timeout=None)
        self.assertNoTimers()
        d.cancel()
        self.failureResultOf(d, CancelledError)

    def test_cancelWhileConnecting(self) -> None:
        """
        Cancelling the result while connecting cancels the endpoint's
        attempt, fails the result with L{CancelledError}, and leaves no
        timer.
        """
        d = connect(self.reactor, DESCRIPTION, KEY)
        d.cancel()
        self.failureResultOf(d, CancelledError)
        self.assertTrue(self.reactor.connectors[0].stoppedConnecting)
        self.assertNoTimers()

    def test_cancelDuringHandshake(self) -> None:
        """
        Cancelling the result during the handshake aborts the connection.
        """
        d = connect(self.reactor, DESCRIPTION, KEY)
        wire = accept(self.reactor)
        d.cancel()
        self.failureResultOf(d, CancelledError)
        self.assertTrue(wire.clientTransport.disconnected)
        wire.pump()
        self.assertTrue(wire.closed)
        self.assertNoTimers()

    def test_cancelAfterResult(self) -> None:
        """
        Cancelling a result that already fired changes nothing.
        """
        d = connect(self.reactor, DESCRIPTION, KEY)
        wire = accept(self.reactor)
        wire.pump()
        session = self.successResultOf(d)
        d.cancel()
        self.assertTrue(session.established)
        self.assertFalse(wire.clientTransport.disconnected)

    def test_options(self) -> None:
        """
        Keyword options are L{BridgeConfig} fields; C{maxBufferSize} sets
        C{limits.maxSize}.
        """
        d = connect(
            self.reactor,
            DESCRIPTION,
            KEY,
            maxBufferSize=1000,
            keepAliveInterval=None,
            cipher="ChaChaPoly",
        )
        wire = accept(self.reactor)
        wire.pump()
        session = self.successResultOf(d)
        self.assertEqual(session.config.limits.maxSize, 1000)
        self.assertEqual(session.config.cipher, "ChaChaPoly")
        self.assertIsNone(session.config.keepAliveInterval)
        # This side told the server it accepts at most 1000 bytes.
        self.assertRaises(BufferDataError, wire.server.sendBuffer, b"x" * 2000)

    def test_unknownOptions(self) -> None:
        """
        Unknown options raise L{TypeError} naming every one of them, before
        anything is attempted.
        """
        e = self.assertRaises(
            TypeError, connect, self.reactor, DESCRIPTION, KEY, colour="red", keyring=KEY
        )
        self.assertIn("colour", str(e))
        self.assertIn("keyring", str(e))
        self.assertEqual(self.reactor.tcpClients, [])
        self.assertIn("maxBufferSize", CLIENT_OPTIONS)
        self.assertNotIn("acceptSuites", CLIENT_OPTIONS)

    def test_badArguments(self) -> None:
        """
        An unknown suite or cipher, or a non-positive timeout, raises
        L{ValueError} at once, before anything is attempted.
        """
        self.assertRaises(ValueError, connect, self.reactor, DESCRIPTION, KEY, suite="rot13")
        self.assertRaises(ValueError, connect, self.reactor, DESCRIPTION, KEY, cipher="rot13")
        self.assertRaises(ValueError, connect, self.reactor, DESCRIPTION, KEY, timeout=0)
        self.assertRaises(
            ValueError, ReconnectingClient, DESCRIPTION, KEY, reactor=self.reactor, timeout=-1
        )
        self.assertEqual(self.reactor.tcpClients, [])


class EndpointTests(SynchronousTestCase):
    """
    Every accepted form of "where to connect".
    """

    def setUp(self) -> None:
        self.reactor, self.resolver = memoryReactor()

    def connectTo(self, where: object) -> Deferred[BridgeProtocol]:
        """
        Connect to C{where} and complete the handshake with the connection
        the reactor was asked for.

        @param where: The endpoint argument.
        @return: The result of L{connect}.
        """
        d = connect(self.reactor, where, KEY)  # type: ignore[arg-type]
        accept(self.reactor).pump()
        return d

    def test_description(self) -> None:
        """
        A C{clientFromString} description makes that endpoint.
        """
        endpoint = clientEndpoint(self.reactor, DESCRIPTION)
        self.assertIsInstance(endpoint, TCP4ClientEndpoint)
        self.assertTrue(self.successResultOf(self.connectTo(DESCRIPTION)).established)
        self.assertEqual(self.reactor.tcpClients[0][:2], ("127.0.0.1", 5000))

    def test_descriptionPositional(self) -> None:
        """
        A description with positional host and port is a description too,
        not a C{host:port} shorthand.
        """
        self.assertIsInstance(
            clientEndpoint(self.reactor, "tcp:example.org:5000"), TCP4ClientEndpoint
        )

    def test_unixDescription(self) -> None:
        """
        A UNIX socket description connects to that path.
        """
        endpoint = clientEndpoint(self.reactor, "unix:path=/run/netstructer.sock")
        self.assertIsInstance(endpoint, UNIXClientEndpoint)
        connect(self.reactor, "unix:path=/run/netstructer.sock", KEY)
        self.assertEqual(self.reactor.unixClients[0][0], "/run/netstructer.sock")

    def test_tlsDescription(self) -> None:
        """
        A C{tls:} description (an endpoint plugin) is recognised as a
        description.
        """
        endpoint = clientEndpoint(self.reactor, "tls:example.org:5000")
        self.assertTrue(IStreamClientEndpoint.providedBy(endpoint))
        self.assertNotIsInstance(endpoint, HostnameEndpoint)

    def test_tuple(self) -> None:
        """
        A C{(host, port)} tuple makes a plain TCP endpoint for an IP address
        (a refused connection is reported at once) and a L{HostnameEndpoint}
        for a name.
        """
        self.assertIsInstance(clientEndpoint(self.reactor, ("127.0.0.1", 5000)), TCP4ClientEndpoint)
        self.assertIsInstance(clientEndpoint(self.reactor, ("example.org", 5000)), HostnameEndpoint)
        self.assertTrue(self.successResultOf(self.connectTo(("127.0.0.1", 5000))).established)
        self.assertEqual(self.reactor.tcpClients[0][:2], ("127.0.0.1", 5000))

    def test_tupleIPv6(self) -> None:
        """
        A tuple with an IPv6 address connects over IPv6.
        """
        self.assertTrue(self.successResultOf(self.connectTo(("::1", 5000))).established)
        self.assertEqual(self.reactor.tcpClients[0][:2], ("::1", 5000))

    def test_hostPort(self) -> None:
        """
        C{"host:port"} makes a L{HostnameEndpoint} resolving the host.
        """
        self.assertIsInstance(clientEndpoint(self.reactor, "example.org:5000"), HostnameEndpoint)
        self.assertTrue(self.successResultOf(self.connectTo("localhost:5000")).established)
        self.assertEqual(self.resolver.names, ["localhost"])
        self.assertEqual(self.reactor.tcpClients[0][:2], ("127.0.0.1", 5000))

    def test_hostPortIPv4(self) -> None:
        """
        C{"192.0.2.1:5000"} connects to that address.
        """
        self.successResultOf(self.connectTo("192.0.2.1:5000"))
        self.assertEqual(self.reactor.tcpClients[0][:2], ("192.0.2.1", 5000))

    def test_hostPortIPv6(self) -> None:
        """
        C{"[::1]:5000"} connects to C{::1} over IPv6.
        """
        self.assertIsInstance(clientEndpoint(self.reactor, "[::1]:5000"), TCP6ClientEndpoint)
        self.assertTrue(self.successResultOf(self.connectTo("[::1]:5000")).established)
        self.assertEqual(self.reactor.tcpClients[0][:2], ("::1", 5000))

    def test_endpointObject(self) -> None:
        """
        An endpoint object is used as it is.
        """
        endpoint = TCP4ClientEndpoint(self.reactor, "127.0.0.1", 5000)
        self.assertIs(clientEndpoint(self.reactor, endpoint), endpoint)
        self.assertTrue(self.successResultOf(self.connectTo(endpoint)).established)

    def test_badForms(self) -> None:
        """
        Out-of-range ports and malformed tuples raise L{ValueError}; other
        types raise L{TypeError}; an unknown endpoint type raises
        L{ValueError} from C{clientFromString}.
        """
        self.assertRaises(ValueError, clientEndpoint, self.reactor, "example.org:99999")
        self.assertRaises(ValueError, clientEndpoint, self.reactor, "[::1]:0")
        self.assertRaises(ValueError, clientEndpoint, self.reactor, ("example.org", "5000"))
        self.assertRaises(ValueError, clientEndpoint, self.reactor, ("example.org", True))
        self.assertRaises(TypeError, clientEndpoint, self.reactor, ("example.org",))
        self.assertRaises(TypeError, clientEndpoint, self.reactor, 5000)
        self.assertRaises(ValueError, clientEndpoint, self.reactor, "carrier-pigeon:x=1")
        self.assertRaises(ValueError, clientEndpoint, self.reactor, "tcp:5000")
        self.assertRaises(ValueError, clientEndpoint, self.reactor, "localhost")


def retryEvery(base: float = 1.0) -> Callable[[int], float]:
    """
    A jitter-free exponential backoff: C{base * 2 ** attempt} seconds.

    @param base: The first delay, before doubling.
    @return: The policy.
    """
    return backoffPolicy(initialDelay=base, factor=2.0, maxDelay=60.0, jitter=lambda: 0.0)


class ReconnectingTests(SynchronousTestCase):
    """
    L{ReconnectingClient} hands out only authenticated sessions, reconnects
    with a backoff, and queues values while disconnected.
    """

    def setUp(self) -> None:
        self.reactor, self.resolver = memoryReactor()
        self.events: list[LogEvent] = []

    def makeClient(self, start: bool = True, **options: object) -> ReconnectingClient:
        """
        Make a reconnecting client on the memory reactor, retrying after 2,
        4, 8, ... seconds.

        @param start: Whether to start it.
        @param options: More keyword arguments.
        @return: The client.
        """
        client = ReconnectingClient(
            DESCRIPTION,
            KEY,
            reactor=self.reactor,
            retryPolicy=retryEvery(),
            logger=recordingLogger(self.events),
            **options,  # type: ignore[arg-type]
        )
        if start:
            client.startService()
        return client

    def connected(self, client: ReconnectingClient, index: int = -1) -> tuple[Wire, BridgeProtocol]:
        """
        Accept the client's latest connection and complete its handshake.

        @param client: The client.
        @param index: Which connection request to accept.
        @return: The wire and the client's session.
        """
        wire = accept(self.reactor, index=index)
        wire.pump()
        session = self.successResultOf(client.whenConnected())
        return wire, session

    def stop(self, client: ReconnectingClient, wire: Wire | None = None) -> None:
        """
        Stop the client, pumping its connection if it has one, and check
        that it stopped and left no timer.

        @param client: The client.
        @param wire: Its connection.
        """
        d = client.stopService()
        if wire is not None:
            wire.pump()
        self.successResultOf(d)
        self.assertEqual(self.reactor.getDelayedCalls(), [])

    def test_isService(self) -> None:
        """
        The client is an L{IService}.
        """
        client = self.makeClient(start=False)
        self.assertTrue(verifyObject(IService, client))
        self.assertIn(DESCRIPTION, repr(client))

    def test_whenConnectedAfterHandshake(self) -> None:
        """
        L{whenConnected} fires only once the handshake has authenticated the
        server, with the session.
        """
        client = self.makeClient()
        d = client.whenConnected()
        self.assertEqual(len(self.reactor.tcpClients), 1)
        wire = accept(self.reactor)
        self.assertNoResult(d)
        self.assertIsNone(client.session)
        wire.pump()
        session = self.successResultOf(d)
        self.assertTrue(session.established)
        self.assertIs(client.session, session)
        self.assertIs(self.successResultOf(client.whenConnected()), session)
        self.stop(client, wire)

    def test_reconnectsAfterDrop(self) -> None:
        """
        When the session drops, the client reconnects after the backoff
        delay and hands out the new session; the drop is logged.
        """
        client = self.makeClient()
        wire, first = self.connected(client)
        wire.serverTransport.abortConnection()
        wire.pump()
        self.assertIsInstance(first.closeReason.value, TruncationError)  # type: ignore[union-attr]
        self.assertIsNone(client.session)
        d = client.whenConnected()
        self.reactor.advance(1.9)
        self.assertEqual(len(self.reactor.tcpClients), 1)
        self.reactor.advance(0.1)
        self.assertEqual(len(self.reactor.tcpClients), 2)
        self.assertNoResult(d)
        wire2 = accept(self.reactor)
        wire2.pump()
        second = self.successResultOf(d)
        self.assertIsNot(second, first)
        self.assertTrue(second.established)
        self.assertTrue(any(e.get("error") is first.closeReason.value for e in self.events))  # type: ignore[union-attr]
        self.stop(client, wire2)

    def test_backoff(self) -> None:
        """
        Failed attempts are retried after growing delays, and the delay
        starts over after a success.
        """
        client = self.makeClient()
        refuse(self.reactor)
        for delay, attempts in ((2, 2), (4, 3), (8, 4)):
            self.reactor.advance(delay - 0.01)
            self.assertEqual(len(self.reactor.tcpClients), attempts - 1)
            self.reactor.advance(0.01)
            self.assertEqual(len(self.reactor.tcpClients), attempts)
            if attempts < 4:
                refuse(self.reactor)
        wire, _session = self.connected(client)
        wire.end(Failure(ConnectionLost()))
        self.reactor.advance(2)
        self.assertEqual(len(self.reactor.tcpClients), 5)
        self.stop(client)

    def test_failAfterFailures(self) -> None:
        """
        L{whenConnected} with C{failAfterFailures} reports the attempts'
        error, here a refused connection.
        """
        client = self.makeClient()
        d = client.whenConnected(failAfterFailures=1)
        refuse(self.reactor)
        self.failureResultOf(d, ConnectionRefusedError)
        self.stop(client)

    def test_wrongKeyRetried(self) -> None:
        """
        A failed handshake counts as a failed attempt: it is reported to
        L{whenConnected} with C{failAfterFailures}, logged, and retried with
        the backoff, without any error escaping into the reactor.
        """
        client = self.makeClient()
        d = client.whenConnected(failAfterFailures=1)
        pending = client.whenConnected()
        wire = accept(self.reactor, serverProtocol(self.reactor, key=generateKey()))
        wire.pump()
        self.failureResultOf(d, AuthenticationError)
        self.assertTrue(wire.closed)
        self.assertNoResult(pending)
        self.assertTrue(any(isinstance(e.get("error"), AuthenticationError) for e in self.events))
        self.reactor.advance(2)
        self.assertEqual(len(self.reactor.tcpClients), 2)
        wire2 = accept(self.reactor)
        wire2.pump()
        self.assertTrue(self.successResultOf(pending).established)
        self.stop(client, wire2)

    def test_handshakeTimeoutRetried(self) -> None:
        """
        A server that never answers the handshake is dropped after the
        attempt's timeout, and the client tries again.
        """
        client = self.makeClient(timeout=5)
        wire = accept(self.reactor, serverProtocol(self.reactor))
        # The server never sees the hello.
        wire.clientTransport.clear()
        self.reactor.advance(5)
        self.assertTrue(wire.clientTransport.disconnected)
        wire.end(Failure(ConnectionLost()))
        self.reactor.advance(2)
        self.assertEqual(len(self.reactor.tcpClients), 2)
        wire2, _session = self.connected(client)
        self.stop(client, wire2)

    def test_queueWhileDisconnected(self) -> None:
        """
        Values sent before a session is up are queued, then sent in order as
        soon as the session authenticates, before any value sent later.
        """
        client = self.makeClient()
        sent = [client.sendBuffer(i) for i in range(3)]
        self.assertEqual(client.queued, 3)
        for d in sent:
            self.assertNoResult(d)
        wire = accept(self.reactor)
        wire.pump()
        for d in sent:
            self.assertIsNone(self.successResultOf(d))
        self.assertEqual(client.queued, 0)
        self.successResultOf(client.sendBuffer(3))
        wire.pump()
        received = [self.successResultOf(wire.server.recvBuffer()) for _ in range(4)]
        self.assertEqual(received, [0, 1, 2, 3])
        self.stop(client, wire)

    def test_queueAcrossReconnect(self) -> None:
        """
        Values sent between sessions go to the next session.
        """
        client = self.makeClient()
        wire, _first = self.connected(client)
        wire.end(Failure(ConnectionLost()))
        d = client.sendBuffer(EXAMPLE)
        self.assertNoResult(d)
        self.reactor.advance(2)
        wire2, _second = self.connected(client)
        self.successResultOf(d)
        wire2.pump()
        self.assertEqual(self.successResultOf(wire2.server.recvBuffer()), EXAMPLE)
        self.stop(client, wire2)

    def test_queueWhileClosing(self) -> None:
        """
        A value sent while the session is closing is queued for the next
        session rather than refused.
        """
        client = self.makeClient()
        wire, first = self.connected(client)
        first.close()
        d = client.sendBuffer("later")
        self.assertNoResult(d)
        wire.pump()
        self.reactor.advance(2)
        wire2, _second = self.connected(client)
        self.successResultOf(d)
        wire2.pump()
        self.assertEqual(self.successResultOf(wire2.server.recvBuffer()), "later")
        self.stop(client, wire2)

    def test_queueBound(self) -> None:
        """
        At most C{maxPendingValues} values wait; one more raises
        L{BufferDataError} and is not queued.
        """
        client = self.makeClient(maxPendingValues=2)
        queued = [client.sendBuffer(1), client.sendBuffer(2)]
        self.assertRaises(BufferDataError, client.sendBuffer, 3)
        self.assertEqual(client.queued, 2)
        self.stop(client)
        for d in queued:
            self.failureResultOf(d, ChannelClosedError)

    def test_queueTooBig(self) -> None:
        """
        A value larger than this side accepts is refused rather than queued.
        """
        client = self.makeClient(maxBufferSize=100)
        self.assertRaises(BufferDataError, client.sendBuffer, b"x" * 200)
        self.assertEqual(client.queued, 0)
        self.stop(client)

    def test_queueEncodeError(self) -> None:
        """
        A value that cannot be encoded raises L{EncodeError} at once and is
        not queued.
        """
        client = self.makeClient()
        self.assertRaises(EncodeError, client.sendBuffer, object())
        self.assertEqual(client.queued, 0)
        self.stop(client)

    def test_cancelQueued(self) -> None:
        """
        Cancelling a queued value's L{Deferred} takes it out of the queue.
        """
        client = self.makeClient()
        d = client.sendBuffer("dropped")
        kept = client.sendBuffer("kept")
        d.cancel()
        self.failureResultOf(d, CancelledError)
        self.assertEqual(client.queued, 1)
        wire, _session = self.connected(client)
        self.successResultOf(kept)
        wire.pump()
        self.assertEqual(self.successResultOf(wire.server.recvBuffer()), "kept")
        self.stop(client, wire)

    def test_stopReportsQueued(self) -> None:
        """
        Stopping the client fails the L{Deferred} of every value still queued
        with L{ChannelClosedError} saying it was never sent, and logs how
        many.
        """
        client = self.makeClient()
        refuse(self.reactor)
        sent = [client.sendBuffer(i) for i in range(2)]
        self.stop(client)
        for d in sent:
            failure = self.failureResultOf(d, ChannelClosedError)
            self.assertIn("never sent", str(failure.value))
        self.assertTrue(any(e.get("count") == 2 for e in self.events))
        self.assertEqual(client.queued, 0)

    def test_sendWhenStopped(self) -> None:
        """
        Sending on a client that is not running raises L{ChannelClosedError}.
        """
        client = self.makeClient(start=False)
        self.assertRaises(ChannelClosedError, client.sendBuffer, 1)

    def test_stopClosesCleanly(self) -> None:
        """
        Stopping a connected client closes the session cleanly (both sides
        see L{ConnectionDone}), stops reconnecting, and leaves no timer.
        """
        client = self.makeClient()
        wire, session = self.connected(client)
        d = client.whenConnected()
        self.successResultOf(d)
        self.stop(client, wire)
        self.assertIsInstance(session.closeReason.value, ConnectionDone)  # type: ignore[union-attr]
        self.assertIsInstance(wire.server.closeReason.value, ConnectionDone)  # type: ignore[union-attr]
        self.reactor.advance(120)
        self.assertEqual(len(self.reactor.tcpClients), 1)
        self.failureResultOf(client.whenConnected(), CancelledError)

    def test_stopWhileWaiting(self) -> None:
        """
        Stopping between attempts cancels the retry and fails
        L{whenConnected} with L{CancelledError}.
        """
        client = self.makeClient()
        d = client.whenConnected()
        refuse(self.reactor)
        self.stop(client)
        self.failureResultOf(d, CancelledError)

    def test_stopDuringHandshake(self) -> None:
        """
        Stopping during a handshake aborts that connection.
        """
        client = self.makeClient()
        wire = accept(self.reactor)
        d = client.stopService()
        self.assertTrue(wire.clientTransport.disconnected)
        wire.pump()
        self.successResultOf(d)
        self.assertEqual(self.reactor.getDelayedCalls(), [])

    def test_restart(self) -> None:
        """
        A stopped client can be started again.
        """
        client = self.makeClient()
        wire, _ = self.connected(client)
        self.stop(client, wire)
        client.startService()
        self.assertEqual(len(self.reactor.tcpClients), 2)
        wire2, session = self.connected(client)
        self.assertTrue(session.established)
        self.stop(client, wire2)

    def test_whenConnectedDuringLoss(self) -> None:
        """
        L{whenConnected} called as the session ends (before the service has
        noticed) waits for the next session instead of handing out the one
        that ended.
        """
        client = self.makeClient()
        wire, first = self.connected(client)
        asked: list[Deferred[BridgeProtocol]] = []
        first.whenClosed().addCallback(lambda _: asked.append(client.whenConnected()))
        wire.end(Failure(ConnectionLost()))
        self.assertNoResult(asked[0])
        self.reactor.advance(2)
        wire2, second = self.connected(client)
        self.assertIs(self.successResultOf(asked[0]), second)
        self.stop(client, wire2)

    def test_recvBuffer(self) -> None:
        """
        L{ReconnectingClient.recvBuffer} waits for a session, then delivers
        values in order.
        """
        client = self.makeClient()
        d = client.recvBuffer()
        wire, _session = self.connected(client)
        self.assertNoResult(d)
        wire.server.sendBuffer(EXAMPLE)
        wire.server.sendBuffer("second")
        wire.pump()
        self.assertEqual(self.successResultOf(d), EXAMPLE)
        self.assertEqual(self.successResultOf(client.recvBuffer()), "second")
        self.stop(client, wire)

    def test_recvAcrossReconnect(self) -> None:
        """
        Values left in a session that ended are delivered first; a receive
        waiting when a session ends goes on waiting on the next session.
        """
        client = self.makeClient()
        wire, _first = self.connected(client)
        wire.server.sendBuffer("from the first")
        wire.server.close()
        wire.pump()
        self.assertTrue(wire.closed)
        self.assertEqual(self.successResultOf(client.recvBuffer()), "from the first")
        d = client.recvBuffer()
        self.assertNoResult(d)
        self.reactor.advance(2)
        wire2, _second = self.connected(client)
        self.assertNoResult(d)
        wire2.server.sendBuffer("from the second")
        wire2.pump()
        self.assertEqual(self.successResultOf(d), "from the second")
        self.stop(client, wire2)

    def test_recvWaitingAcrossDrop(self) -> None:
        """
        A receive waiting on a session that drops waits for the next one.
        """
        client = self.makeClient()
        wire, _first = self.connected(client)
        d = client.recvBuffer()
        wire.end(Failure(ConnectionLost()))
        self.assertNoResult(d)
        self.reactor.advance(2)
        wire2, _second = self.connected(client)
        wire2.server.sendBuffer(1)
        wire2.pump()
        self.assertEqual(self.successResultOf(d), 1)
        self.stop(client, wire2)

    def test_recvTimeout(self) -> None:
        """
        A receive with a timeout fails with L{OperationTimedOut}, consumes
        nothing, and leaves no timer of its own.
        """
        client = self.makeClient()
        wire, _session = self.connected(client)
        before = len(self.reactor.getDelayedCalls())
        d = client.recvBuffer(timeout=5)
        self.reactor.advance(5)
        self.failureResultOf(d, OperationTimedOut)
        self.assertEqual(len(self.reactor.getDelayedCalls()), before)
        wire.server.sendBuffer("kept")
        wire.pump()
        self.assertEqual(self.successResultOf(client.recvBuffer()), "kept")
        self.stop(client, wire)

    def test_recvTimeoutWhileDisconnected(self) -> None:
        """
        The timeout also covers waiting for a session.
        """
        client = self.makeClient()
        d = client.recvBuffer(timeout=1)
        self.reactor.advance(1)
        self.failureResultOf(d, OperationTimedOut)
        wire, _session = self.connected(client)
        self.stop(client, wire)

    def test_recvCancel(self) -> None:
        """
        Cancelling a receive consumes nothing.
        """
        client = self.makeClient()
        wire, _session = self.connected(client)
        d = client.recvBuffer()
        d.cancel()
        self.failureResultOf(d, CancelledError)
        wire.server.sendBuffer("kept")
        wire.pump()
        self.assertEqual(self.successResultOf(client.recvBuffer()), "kept")
        self.stop(client, wire)

    def test_recvAfterStop(self) -> None:
        """
        After the client stops, values already received are still delivered,
        then receiving fails with L{ChannelClosedError}; a receive waiting
        when it stops fails too.
        """
        client = self.makeClient()
        waiting = client.recvBuffer()
        refuse(self.reactor)
        self.stop(client)
        self.failureResultOf(waiting, ChannelClosedError)
        client.startService()
        wire, _session = self.connected(client)
        wire.server.sendBuffer("last")
        wire.pump()
        self.stop(client, wire)
        self.assertEqual(self.successResultOf(client.recvBuffer()), "last")
        self.failureResultOf(client.recvBuffer(), ChannelClosedError)

    def test_flushTooBigForServer(self) -> None:
        """
        A queued value larger than the server accepts (which only the
        handshake tells) fails its own L{Deferred} with L{BufferDataError}
        when the session starts; the values after it are still sent.
        """
        client = self.makeClient()
        small = client.sendBuffer("small")
        big = client.sendBuffer(b"x" * 2000)
        after = client.sendBuffer("after")
        wire = accept(self.reactor, serverProtocol(self.reactor, limits=Limits(maxSize=1000)))
        wire.pump()
        self.successResultOf(small)
        self.failureResultOf(big, BufferDataError)
        self.successResultOf(after)
        self.stop(client, wire)

    def test_unreadSessionsBounded(self) -> None:
        """
        Sessions that ended with values nobody read are kept for
        L{ReconnectingClient.recvBuffer}, but only the 16 latest: older
        ones are dropped with a warning naming how many values were lost.
        """
        client = self.makeClient()
        for i in range(18):
            wire, _session = self.connected(client)
            wire.server.sendBuffer(i)
            wire.server.close()
            wire.pump()
            self.assertTrue(wire.closed)
            self.reactor.advance(2)
        dropped = [e for e in self.events if "never read" in e.get("log_format", "")]
        self.assertEqual([e["count"] for e in dropped], [1, 1])
        received = [self.successResultOf(client.recvBuffer()) for _ in range(16)]
        self.assertEqual(received, list(range(2, 18)))
        wire, _session = self.connected(client)
        self.stop(client, wire)

    def test_readSessionsForgotten(self) -> None:
        """
        A session that ended with every value read is not kept.
        """
        client = self.makeClient()
        wire, _session = self.connected(client)
        wire.server.sendBuffer("read")
        wire.pump()
        self.assertEqual(self.successResultOf(client.recvBuffer()), "read")
        wire.end(Failure(ConnectionLost()))
        self.assertEqual(list(client._reading), [])
        self.stop(client)

    def test_startStopTwice(self) -> None:
        """
        Starting a running client, or stopping a stopped one, does nothing.
        """
        client = self.makeClient()
        client.startService()
        self.assertEqual(len(self.reactor.tcpClients), 1)
        self.stop(client)
        self.successResultOf(client.stopService())

    def test_whenConnectedBeforeStart(self) -> None:
        """
        L{whenConnected} called before the client starts waits for the
        first session.
        """
        client = self.makeClient(start=False)
        d = client.whenConnected()
        self.assertEqual(self.reactor.tcpClients, [])
        client.startService()
        wire = accept(self.reactor)
        wire.pump()
        self.assertTrue(self.successResultOf(d).established)
        self.stop(client, wire)
