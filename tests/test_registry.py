# -*- test-case-name: tests.test_registry -*-
"""
Tests for L{netstructer.registry.SessionRegistry}, in memory: real
L{BridgeProtocol} pairs on L{StringTransport}s, connected through the server
factory (so admission is exercised), a pump moving bytes between them, and a
L{Clock}.
"""

from __future__ import annotations

from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress
from twisted.internet.defer import CancelledError
from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.internet.interfaces import IAddress
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.logger import LogEvent, Logger
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer
from zope.interface.verify import verifyObject

from netstructer.channel import CloseCode, Role
from netstructer.errors import OperationTimedOut, TruncationError
from netstructer.keys import generateKey
from netstructer.protocol import BridgeConfig, BridgeProtocol, BridgeServerFactory
from netstructer.registry import (
    SHUTDOWN_REASON,
    ISessionListener,
    SessionRegistry,
    canonicalHost,
)

KEY = generateKey()
SERVER_ADDRESS = IPv4Address("TCP", "127.0.0.1", 5000)


class Link:
    """
    One in-memory connection: a client protocol and a server protocol, each
    on its L{StringTransport}.

    @ivar client: The client protocol.
    @ivar server: The server protocol.
    @ivar clientTransport: The client's transport.
    @ivar serverTransport: The server's transport.
    """

    def __init__(
        self,
        client: BridgeProtocol,
        server: BridgeProtocol,
        clientTransport: StringTransport,
        serverTransport: StringTransport,
    ) -> None:
        self.client = client
        self.server = server
        self.clientTransport = clientTransport
        self.serverTransport = serverTransport

    def pump(self) -> bool:
        """
        Move the bytes waiting in each transport to the other side, as a TCP
        connection would: not to a side whose transport is paused (they wait)
        or closed, and then end each side whose transport was closed.

        @return: Whether anything happened.
        """
        moved = False
        for source, target, targetTransport in (
            (self.clientTransport, self.server, self.serverTransport),
            (self.serverTransport, self.client, self.clientTransport),
        ):
            data = source.value()
            if not data or targetTransport.producerState == "paused":
                continue
            source.clear()
            moved = True
            if target.closeReason is None and not targetTransport.disconnecting:
                target.dataReceived(data)
        for transport, proto, peerTransport, peer in (
            (self.clientTransport, self.client, self.serverTransport, self.server),
            (self.serverTransport, self.server, self.clientTransport, self.client),
        ):
            if proto.closeReason is not None or not transport.disconnecting:
                continue
            if transport.value() and not transport.disconnected:
                # A clean close flushes the write buffer first.
                continue
            moved = True
            transport.clear()
            reason = ConnectionLost() if transport.disconnected else ConnectionDone()
            proto.connectionLost(Failure(reason))
            if peer.closeReason is None:
                peerTransport.clear()
                peer.connectionLost(Failure(reason))
        return moved


class Network:
    """
    Clients connecting to one server factory, in memory.

    @ivar factory: The server's factory.
    @ivar clock: The clock of every protocol.
    @ivar logger: The clients' logger.
    @ivar links: Every connection made.
    """

    def __init__(
        self,
        factory: BridgeServerFactory,
        clock: Clock,
        logger: Logger | None = None,
        key: bytes = KEY,
    ) -> None:
        """
        @param factory: The server's factory.
        @param clock: The clock of every protocol.
        @param logger: The clients' logger.
        @param key: The clients' key.
        """
        self.key = key
        self.factory = factory
        self.clock = clock
        self.logger = logger
        self.links: list[Link] = []

    def connect(
        self, host: str = "127.0.0.1", port: int = 40000, clientConfig: BridgeConfig | None = None
    ) -> Link | None:
        """
        Connect a client from C{host}:C{port}.

        @return: The connection, or L{None} if the factory refused it.
        """
        address: IPv4Address | IPv6Address = (
            IPv6Address("TCP", host, port) if ":" in host else IPv4Address("TCP", host, port)
        )
        return self.connectFrom(address, clientConfig)

    def connectFrom(
        self, address: IAddress, clientConfig: BridgeConfig | None = None
    ) -> Link | None:
        """
        Connect a client from C{address}.

        @return: The connection, or L{None} if the factory refused it.
        """
        server = self.factory.buildProtocol(address)
        if server is None:
            return None
        client = BridgeProtocol(
            Role.CLIENT,
            clientConfig or BridgeConfig.fromKey(self.key),
            self.clock,
            logger=self.logger,
        )
        serverTransport = StringTransport(hostAddress=SERVER_ADDRESS, peerAddress=address)
        clientTransport = StringTransport(hostAddress=address, peerAddress=SERVER_ADDRESS)
        server.makeConnection(serverTransport)
        client.makeConnection(clientTransport)
        link = Link(client, server, clientTransport, serverTransport)
        self.links.append(link)
        return link

    def pump(self) -> None:
        """
        Move bytes on every connection until nothing moves.
        """
        for _ in range(10000):
            # Values sent outside a frame's handling leave at the end of the
            # reactor turn.
            self.clock.advance(0)
            moved = False
            for link in self.links:
                moved = link.pump() or moved
            if not moved:
                return
        raise AssertionError("the network did not settle")


@implementer(ISessionListener)
class Recorder:
    """
    A session observer that records what it is told.

    @ivar opened: The sessions it was told opened.
    @ivar closed: The sessions it was told closed, with the reasons.
    """

    def __init__(self) -> None:
        self.opened: list[BridgeProtocol] = []
        self.closed: list[tuple[BridgeProtocol, Failure]] = []

    def sessionOpened(self, session: BridgeProtocol) -> None:
        """
        Record C{session}.
        """
        self.opened.append(session)

    def sessionClosed(self, session: BridgeProtocol, reason: Failure) -> None:
        """
        Record C{session} and C{reason}.
        """
        self.closed.append((session, reason))


@implementer(ISessionListener)
class Raising:
    """
    A session observer that raises whatever it is told.
    """

    def sessionOpened(self, session: BridgeProtocol) -> None:
        """
        Raise.
        """
        raise RuntimeError("observer bug (opened)")

    def sessionClosed(self, session: BridgeProtocol, reason: Failure) -> None:
        """
        Raise.
        """
        raise RuntimeError("observer bug (closed)")


class RegistryTestCase(SynchronousTestCase):
    """
    A registry behind a server factory, a network of clients, a clock and a
    log.

    @ivar clock: The clock.
    @ivar events: What was logged.
    @ivar registry: The registry under test.
    @ivar network: Clients connecting to it.
    """

    maxSessions = 1024
    maxPerIP = 64

    def setUp(self) -> None:
        """
        Build the registry and the network.
        """
        self.clock = Clock()
        self.events: list[LogEvent] = []
        logger = Logger(observer=self.events.append)
        self.registry = SessionRegistry(
            self.clock, maxSessions=self.maxSessions, maxPerIP=self.maxPerIP, logger=logger
        )
        factory = BridgeServerFactory(BridgeConfig.fromKey(KEY), self.registry, self.clock, logger)
        self.network = Network(factory, self.clock, logger)

    def connect(self, host: str = "127.0.0.1", port: int = 40000, pump: bool = True) -> Link:
        """
        Connect a client that must be admitted, and (by default) complete
        its handshake.

        @return: The connection.
        """
        link = self.network.connect(host, port)
        assert link is not None, f"{host}:{port} was refused"
        if pump:
            self.network.pump()
        return link

    def closeAll(self) -> None:
        """
        Close every connection from the client side.
        """
        for link in self.network.links:
            if link.client.established:
                link.client.close()
            elif link.client.closeReason is None:
                link.client.abort()
        self.network.pump()

    def assertSettled(self) -> None:
        """
        Nothing is left: no connection counted, no session registered, no
        timer.
        """
        self.assertEqual(self.registry.connectionCount(), 0)
        self.assertEqual(self.registry.count(), 0)
        self.assertEqual(self.registry._counts._hosts, {})
        self.assertEqual(self.registry._counts._keys, {})
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def logged(self, text: str) -> list[LogEvent]:
        """
        @return: The logged events whose format contains C{text}.
        """
        return [e for e in self.events if text in (e.get("log_format") or "")]


class RegistrationTests(RegistryTestCase):
    """
    Sessions are registered when they authenticate and unregistered when
    they end.
    """

    def test_registeredAfterHandshake(self) -> None:
        """
        A connection counts at once but is registered only once its
        handshake completes, under its C{ip:port} key.
        """
        link = self.connect(pump=False)
        self.assertEqual(self.registry.connectionCount(), 1)
        self.assertEqual(self.registry.count(), 0)
        self.assertIsNone(self.registry.get("127.0.0.1:40000"))
        self.network.pump()
        self.assertEqual(self.registry.count(), 1)
        self.assertIs(self.registry.get("127.0.0.1:40000"), link.server)
        self.closeAll()
        self.assertSettled()

    def test_wrongKeyNeverRegistered(self) -> None:
        """
        A client with the wrong key is never registered, observers hear
        nothing, and its connection is uncounted when it ends.
        """
        recorder = Recorder()
        self.registry.addObserver(recorder)
        link = self.network.connect(
            "10.0.0.9", 1234, clientConfig=BridgeConfig.fromKey(generateKey())
        )
        assert link is not None
        self.network.pump()
        self.assertIsNotNone(link.server.closeReason)
        self.assertEqual(self.registry.count(), 0)
        self.assertEqual((recorder.opened, recorder.closed), ([], []))
        self.assertSettled()

    def test_handshakeTimeoutUncounted(self) -> None:
        """
        A connection that never completes its handshake is dropped by its
        timeout and uncounted.
        """
        link = self.connect(pump=False)
        link.clientTransport.clear()
        self.clock.advance(10)
        self.network.pump()
        self.assertIsNotNone(link.server.closeReason)
        self.assertSettled()

    def test_unregisteredWhenClosed(self) -> None:
        """
        A session that closes is unregistered.
        """
        link = self.connect()
        link.client.close()
        self.network.pump()
        self.assertNotIn(link.server, self.registry)
        self.assertNotIn("127.0.0.1:40000", self.registry)
        self.assertSettled()

    def test_observedWithoutAdmission(self) -> None:
        """
        A session whose connection was never admitted (its protocol was
        built without asking the registry) is registered and unregistered,
        and the counts are untouched.
        """
        session = BridgeProtocol(Role.SERVER, BridgeConfig.fromKey(KEY), self.clock)
        session.makeConnection(StringTransport(peerAddress=IPv4Address("TCP", "10.1.1.1", 7)))
        self.registry.sessionOpened(session)
        self.assertIs(self.registry.get("10.1.1.1"), session)
        self.registry.sessionClosed(session, Failure(ConnectionDone()))
        self.assertEqual(self.registry.count(), 0)
        self.assertEqual(self.registry.connectionCount(), 0)
        session.connectionLost(Failure(ConnectionDone()))


class LookupTests(RegistryTestCase):
    """
    Finding sessions by key, by bare IP, and by IPv6 address.
    """

    def test_severalFromOneIP(self) -> None:
        """
        Several clients behind one address never overwrite each other: each
        is found by its key, the bare IP finds the most recent, and
        L{SessionRegistry.allFrom} lists them all, oldest first.
        """
        links = [self.connect("192.168.1.4", port) for port in (1000, 1001, 1002)]
        other = self.connect("192.168.1.5", 1000)
        sessions = [link.server for link in links]
        for port, session in zip((1000, 1001, 1002), sessions, strict=True):
            self.assertIs(self.registry.get(f"192.168.1.4:{port}"), session)
        self.assertIs(self.registry.get("192.168.1.4"), sessions[-1])
        self.assertEqual(self.registry.allFrom("192.168.1.4"), sessions)
        self.assertEqual(self.registry.allFrom("192.168.1.5"), [other.server])
        self.assertEqual(self.registry.all(), [*sessions, other.server])
        self.assertEqual(self.registry.count(), 4)
        self.closeAll()
        self.assertSettled()

    def test_mostRecentAfterClose(self) -> None:
        """
        When the most recent session from an IP closes, a bare-IP lookup
        finds the one before it.
        """
        first = self.connect("192.168.1.4", 1000)
        second = self.connect("192.168.1.4", 1001)
        second.client.close()
        self.network.pump()
        self.assertIs(self.registry.get("192.168.1.4"), first.server)
        self.assertEqual(self.registry.allFrom("192.168.1.4"), [first.server])
        self.closeAll()
        self.assertSettled()

    def test_ipv6(self) -> None:
        """
        IPv6 sessions are keyed C{[ip]:port} and found by key, by bare IP
        with or without brackets, and by any spelling of the address.
        """
        first = self.connect("::1", 5000)
        second = self.connect("::1", 5001)
        self.assertEqual(second.server.key, "[::1]:5001")
        self.assertIs(self.registry.get("[::1]:5000"), first.server)
        self.assertIs(self.registry.get("[0:0:0:0:0:0:0:1]:5000"), first.server)
        for bare in ("::1", "[::1]", "0:0::1"):
            self.assertIs(self.registry.get(bare), second.server, bare)
        self.assertEqual(self.registry.allFrom("::1"), [first.server, second.server])
        self.assertIn("[::1]", self.registry)
        self.closeAll()
        self.assertSettled()

    def test_ipv4Mapped(self) -> None:
        """
        An IPv4 peer seen through a dual-stack listener (C{::ffff:a.b.c.d})
        is found by its IPv4 address, and by its own key.
        """
        link = self.connect("::ffff:10.0.0.1", 4000)
        self.assertIs(self.registry.get("10.0.0.1"), link.server)
        self.assertIs(self.registry.get("10.0.0.1:4000"), link.server)
        self.assertIs(self.registry.get(link.server.key), link.server)
        self.closeAll()
        self.assertSettled()

    def test_missing(self) -> None:
        """
        Lookups of absent sessions answer L{None}, empty lists and C{False}.
        """
        self.connect("10.0.0.1", 1)
        for target in ("10.0.0.2", "10.0.0.1:2", "[::1]:1", "::1", "not an address", ""):
            self.assertIsNone(self.registry.get(target), target)
            self.assertEqual(self.registry.allFrom(target), [])
            self.assertNotIn(target, self.registry)
            self.assertIsNone(self.registry.pop(target))
        self.assertNotIn(object(), self.registry)
        self.closeAll()

    def test_containerProtocol(self) -> None:
        """
        C{len}, iteration and C{in} work by key, bare IP and session object.
        """
        first = self.connect("10.0.0.1", 1)
        second = self.connect("10.0.0.2", 2)
        self.assertEqual(len(self.registry), 2)
        self.assertEqual(list(self.registry), [first.server, second.server])
        for target in ("10.0.0.1:1", "10.0.0.1", first.server, second.server):
            self.assertIn(target, self.registry)
        self.assertNotIn(first.client, self.registry)
        self.closeAll()
        self.assertEqual(len(self.registry), 0)

    def test_unixPeers(self) -> None:
        """
        Peers without an IP address (UNIX sockets) share one key, yet never
        overwrite each other: the key finds the most recent, and each is
        unregistered on its own.
        """
        links = [self.network.connectFrom(UNIXAddress(None)) for _ in range(3)]
        self.network.pump()
        sessions = [link.server for link in links if link is not None]
        self.assertEqual(len(sessions), 3)
        key = sessions[0].key
        self.assertIs(self.registry.get(key), sessions[-1])
        self.assertEqual(self.registry.allFrom(key), sessions)
        assert links[2] is not None
        links[2].client.close()
        self.network.pump()
        self.assertIs(self.registry.get(key), sessions[1])
        self.assertEqual(self.registry.all(), sessions[:2])
        self.closeAll()
        self.assertSettled()

    def test_openedTwice(self) -> None:
        """
        Being told twice that a session opened registers it once.
        """
        recorder = Recorder()
        self.registry.addObserver(recorder)
        link = self.connect()
        self.registry.sessionOpened(link.server)
        self.assertEqual(self.registry.all(), [link.server])
        self.assertEqual(recorder.opened, [link.server])
        self.closeAll()
        self.assertSettled()

    def test_repr(self) -> None:
        """
        The C{repr} counts sessions and connections.
        """
        self.connect()
        self.assertEqual(
            repr(self.registry), "<SessionRegistry 1 sessions, 1 admitted connections>"
        )
        self.closeAll()

    def test_canonicalHost(self) -> None:
        """
        Hosts compare in canonical form.
        """
        self.assertEqual(canonicalHost("[::1]"), "::1")
        self.assertEqual(canonicalHost("0:0:0:0:0:0:0:1"), "::1")
        self.assertEqual(canonicalHost("::FFFF:10.0.0.1"), "10.0.0.1")
        self.assertEqual(canonicalHost(" 10.0.0.1 "), "10.0.0.1")
        self.assertEqual(canonicalHost("example.org"), "example.org")


class PopAndClearTests(RegistryTestCase):
    """
    Taking sessions out of the registry.
    """

    def test_popKeepsSessionOpen(self) -> None:
        """
        A popped session is no longer registered but stays open and usable,
        and still counts against the limits.
        """
        link = self.connect("10.0.0.1", 1)
        self.assertIs(self.registry.pop("10.0.0.1:1"), link.server)
        self.assertEqual(self.registry.count(), 0)
        self.assertIsNone(self.registry.get("10.0.0.1"))
        self.assertEqual(self.registry.connectionCount(), 1)
        link.server.sendBuffer("still here")
        self.network.pump()
        self.assertEqual(self.successResultOf(link.client.recvBuffer()), "still here")
        self.closeAll()
        self.assertSettled()

    def test_popBySessionAndIP(self) -> None:
        """
        L{SessionRegistry.pop} takes a session object, or the most recent
        session from a bare IP.
        """
        first = self.connect("10.0.0.1", 1)
        second = self.connect("10.0.0.1", 2)
        self.assertIs(self.registry.pop("10.0.0.1"), second.server)
        self.assertIs(self.registry.pop(first.server), first.server)
        self.assertIsNone(self.registry.pop(first.server))
        self.closeAll()
        self.assertSettled()

    def test_poppedCloseSparesNewerSession(self) -> None:
        """
        When a popped session ends, a newer session registered under the
        same key stays registered; observers hear of both.
        """
        recorder = Recorder()
        self.registry.addObserver(recorder)
        old = self.connect("10.0.0.1", 1)
        self.registry.pop("10.0.0.1:1")
        new = self.connect("10.0.0.1", 1)
        self.assertIs(self.registry.get("10.0.0.1:1"), new.server)
        old.client.close()
        self.network.pump()
        self.assertIsNotNone(old.server.closeReason)
        self.assertIs(self.registry.get("10.0.0.1:1"), new.server)
        self.assertEqual([s for s, _ in recorder.closed], [old.server])
        self.assertEqual(self.registry.connectionCount(), 1)
        self.closeAll()
        self.assertSettled()

    def test_clear(self) -> None:
        """
        L{SessionRegistry.clear} empties the registry at once and closes
        every session with a close record; values already sent arrive; its
        Deferred fires once all have closed.
        """
        links = [self.connect("10.0.0.1", port) for port in (1, 2)]
        for link in links:
            link.server.sendBuffer("bye")
        d = self.registry.clear()
        self.assertEqual(self.registry.count(), 0)
        self.assertNoResult(d)
        self.network.pump()
        self.assertIsNone(self.successResultOf(d))
        for link in links:
            self.assertEqual(self.successResultOf(link.client.recvBuffer()), "bye")
            self.assertEqual(link.client.closeCode, CloseCode.NORMAL)
            self.failureResultOf(link.client.recvBuffer(), ConnectionDone)
        self.assertSettled()

    def test_clearEmpty(self) -> None:
        """
        Clearing an empty registry fires at once.
        """
        self.assertIsNone(self.successResultOf(self.registry.clear()))


class WaitForTests(RegistryTestCase):
    """
    L{SessionRegistry.waitFor}.
    """

    def test_alreadyRegistered(self) -> None:
        """
        A session already registered is returned at once.
        """
        link = self.connect("10.0.0.1", 1)
        self.assertIs(self.successResultOf(self.registry.waitFor("10.0.0.1")), link.server)
        self.assertIs(self.successResultOf(self.registry.waitFor("10.0.0.1:1")), link.server)
        self.closeAll()

    def test_later(self) -> None:
        """
        Waiting by bare IP or by key fires when a matching session opens,
        not when another one does, and not before the handshake.
        """
        byIP = self.registry.waitFor("10.0.0.1")
        byKey = self.registry.waitFor("[::1]:7")
        self.connect("10.0.0.2", 1)
        link = self.connect("10.0.0.1", 1, pump=False)
        self.assertNoResult(byIP)
        self.network.pump()
        self.assertIs(self.successResultOf(byIP), link.server)
        self.assertNoResult(byKey)
        v6 = self.connect("::1", 7)
        self.assertIs(self.successResultOf(byKey), v6.server)
        self.closeAll()
        self.assertSettled()

    def test_timeout(self) -> None:
        """
        With a timeout, the wait fails with L{OperationTimedOut}; no timer or
        waiter is left, and a later session is unaffected.
        """
        d = self.registry.waitFor("10.0.0.1", timeout=5)
        self.clock.advance(4.9)
        self.assertNoResult(d)
        self.clock.advance(0.1)
        failure = self.failureResultOf(d, OperationTimedOut)
        self.assertIn("10.0.0.1", str(failure.value))
        self.assertEqual(self.registry._waiters._waiting, {})
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.connect("10.0.0.1", 1)
        self.closeAll()
        self.assertSettled()

    def test_firedCancelsTimer(self) -> None:
        """
        A wait that is satisfied cancels its timer.
        """
        d = self.registry.waitFor("10.0.0.1", timeout=30)
        link = self.connect("10.0.0.1", 1)
        self.assertIs(self.successResultOf(d), link.server)
        self.closeAll()
        self.assertSettled()

    def test_cancel(self) -> None:
        """
        Cancelling a wait forgets it and its timer.
        """
        d = self.registry.waitFor("10.0.0.1", timeout=5)
        other = self.registry.waitFor("10.0.0.1")
        d.cancel()
        self.failureResultOf(d, CancelledError)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        other.cancel()
        self.failureResultOf(other, CancelledError)
        self.assertEqual(self.registry._waiters._waiting, {})

    def test_globalReactorOnlyWhenNeeded(self) -> None:
        """
        A registry made without a clock does not need one until a timeout
        is asked for.
        """
        registry = SessionRegistry()
        d = registry.waitFor("10.0.0.1")
        d.cancel()
        self.failureResultOf(d, CancelledError)
        self.assertIsNone(registry._clock)


class ObserverTests(RegistryTestCase):
    """
    Observers are told of sessions opening and closing.
    """

    def test_interface(self) -> None:
        """
        The test observers provide L{ISessionListener}.
        """
        verifyObject(ISessionListener, Recorder())
        verifyObject(ISessionListener, Raising())

    def test_openedAndClosed(self) -> None:
        """
        Observers hear of each session opening and closing, once.
        """
        recorder = Recorder()
        self.registry.addObserver(recorder)
        link = self.connect()
        self.assertEqual(recorder.opened, [link.server])
        link.client.close()
        self.network.pump()
        [(session, reason)] = recorder.closed
        self.assertIs(session, link.server)
        reason.trap(ConnectionDone)

    def test_raisingObserver(self) -> None:
        """
        An observer that raises is logged with the peer, and neither the
        registry nor the other observers are disturbed.
        """
        recorder = Recorder()
        self.registry.addObserver(Raising())
        self.registry.addObserver(recorder)
        link = self.connect("10.0.0.1", 1)
        self.assertIs(self.registry.get("10.0.0.1"), link.server)
        self.assertEqual(recorder.opened, [link.server])
        self.assertTrue(link.client.established)
        self.closeAll()
        self.assertEqual(len(recorder.closed), 1)
        failures = [e for e in self.events if "log_failure" in e]
        self.assertEqual(len(failures), 2)
        self.assertEqual({e["peer"] for e in failures}, {"10.0.0.1:1"})
        for event in failures:
            event["log_failure"].trap(RuntimeError)
        self.flushLoggedErrors(RuntimeError)
        self.assertSettled()

    def test_removeObserver(self) -> None:
        """
        A removed observer hears nothing more; removing a stranger raises.
        """
        recorder = Recorder()
        self.registry.addObserver(recorder)
        self.registry.removeObserver(recorder)
        self.connect()
        self.assertEqual(recorder.opened, [])
        self.assertRaises(ValueError, self.registry.removeObserver, recorder)
        self.closeAll()


class LimitTests(RegistryTestCase):
    """
    Flood limits count every admitted connection, handshaking or not.
    """

    maxSessions = 3
    maxPerIP = 2

    def test_perIP(self) -> None:
        """
        Connections from one IP beyond C{maxPerIP} are refused before any
        handshake work, with a log line naming the peer and the limit, while
        other IPs are admitted.
        """
        self.connect("10.0.0.1", 1, pump=False)
        self.connect("10.0.0.1", 2, pump=False)
        self.assertIsNone(self.network.connect("10.0.0.1", 3))
        [event] = self.logged("Refusing")
        self.assertEqual((event["peer"], event["limit"]), ("10.0.0.1:3", "maxPerIP"))
        self.connect("10.0.0.2", 1, pump=False)
        self.network.pump()
        self.assertEqual(self.registry.count(), 3)
        self.closeAll()
        self.assertSettled()

    def test_perIPCountsMappedAddresses(self) -> None:
        """
        An IPv4 address counts as one IP whether it arrives as IPv4 or as
        IPv4-mapped IPv6.
        """
        self.connect("10.0.0.1", 1, pump=False)
        self.connect("::ffff:10.0.0.1", 2, pump=False)
        self.assertIsNone(self.network.connect("10.0.0.1", 3))
        self.closeAll()
        self.assertSettled()

    def test_total(self) -> None:
        """
        Connections beyond C{maxSessions} are refused, counting those still
        in their handshake; once one ends, a new one is admitted.
        """
        first = self.connect("10.0.0.1", 1)
        self.connect("10.0.0.2", 1, pump=False)
        self.connect("10.0.0.3", 1, pump=False)
        self.assertEqual(self.registry.count(), 1)
        self.assertIsNone(self.network.connect("10.0.0.4", 1))
        [event] = self.logged("Refusing")
        self.assertEqual((event["peer"], event["limit"]), ("10.0.0.4:1", "maxSessions"))
        first.client.close()
        self.network.pump()
        self.assertIsNotNone(self.network.connect("10.0.0.4", 1))
        self.closeAll()
        self.assertSettled()

    def test_countsReturnToBaseline(self) -> None:
        """
        Authenticated, unauthenticated, aborted and popped connections are
        all uncounted when they end, exactly.
        """
        good = self.connect("10.0.0.1", 1)
        bad = self.network.connect("10.0.0.1", 2, clientConfig=BridgeConfig.fromKey(generateKey()))
        assert bad is not None
        self.network.pump()
        self.assertEqual(self.registry.connectionCount(), 1)
        popped = self.connect("10.0.0.2", 1)
        self.registry.pop(popped.server)
        aborted = self.connect("10.0.0.3", 1, pump=False)
        self.assertEqual(self.registry.connectionCount(), 3)
        aborted.server.abort()
        self.network.pump()
        self.assertEqual(self.registry.connectionCount(), 2)
        del good
        self.closeAll()
        self.assertSettled()

    def test_unixPeersLimitedInTotalOnly(self) -> None:
        """
        Peers without an IP address are not limited per IP (they all look
        alike), only in total.
        """
        for _ in range(3):
            self.assertIsNotNone(self.network.connectFrom(UNIXAddress(None)))
        self.assertIsNone(self.network.connectFrom(UNIXAddress(None)))
        [event] = self.logged("Refusing")
        self.assertEqual(event["limit"], "maxSessions")
        self.closeAll()
        self.assertSettled()

    def test_reportedConnectionUncountedAsAdmitted(self) -> None:
        """
        A connection is uncounted under the address it was admitted with,
        even if its transport names its peer differently (as a proxying
        transport may).
        """
        admitted = IPv4Address("TCP", "10.0.0.1", 1)
        link = self.network.connectFrom(admitted)
        assert link is not None
        link.server.peer = IPv4Address("TCP", "192.0.2.7", 9)
        link.server.abort()
        self.network.pump()
        self.assertSettled()
        self.assertEqual(self.registry._counts._admittedAs, {})

    def test_admitDirectly(self) -> None:
        """
        L{SessionRegistry.admit} counts what it admits; C{sessionClosed} for
        that address uncounts it, and is harmless for an address never
        admitted.
        """
        address = IPv4Address("TCP", "10.0.0.1", 1)
        session = BridgeProtocol(Role.SERVER, BridgeConfig.fromKey(KEY), self.clock)
        self.assertTrue(self.registry.admit(session, address))
        self.assertEqual(self.registry.connectionCount(), 1)
        stranger = BridgeProtocol(Role.SERVER, BridgeConfig.fromKey(KEY), self.clock)
        stranger.makeConnection(StringTransport(peerAddress=IPv4Address("TCP", "10.0.0.9", 1)))
        self.registry.sessionClosed(stranger, Failure(ConnectionDone()))
        self.assertEqual(self.registry.connectionCount(), 1)
        session.makeConnection(StringTransport(peerAddress=address))
        self.registry.sessionClosed(session, Failure(ConnectionDone()))
        for proto in (stranger, session):
            proto.connectionLost(Failure(ConnectionDone()))
        self.assertSettled()

    def test_badLimits(self) -> None:
        """
        Limits below 1 are refused.
        """
        self.assertRaises(ValueError, SessionRegistry, maxSessions=0)
        self.assertRaises(ValueError, SessionRegistry, maxPerIP=0)


class StopTests(RegistryTestCase):
    """
    Stopping the registry shuts every connection down cleanly.
    """

    def test_cleanShutdownLosesNothing(self) -> None:
        """
        Stopping closes every session with L{CloseCode.GOING_AWAY} after the
        values already accepted in both directions: the peers receive all of
        them, and the Deferred fires only once every connection has ended,
        leaving no timer.
        """
        links = [self.connect("10.0.0.1", port) for port in (1, 2, 3)]
        popped = self.registry.pop("10.0.0.1:3")
        assert popped is not None
        for link in links:
            for i in range(50):
                link.server.sendBuffer(i)
                link.client.sendBuffer(-i)
        d = self.registry.stopService()
        self.assertFalse(self.registry.running)
        self.assertNoResult(d)
        for link in links[:-1]:
            link.pump()
            self.assertNoResult(d)
        self.network.pump()
        self.assertIsNone(self.successResultOf(d))
        for link in links:
            received = [self.successResultOf(link.client.recvBuffer()) for _ in range(50)]
            self.assertEqual(received, list(range(50)))
            self.failureResultOf(link.client.recvBuffer(), ConnectionDone)
            self.assertEqual(link.client.closeCode, CloseCode.GOING_AWAY)
            fromClient = [self.successResultOf(link.server.recvBuffer()) for _ in range(50)]
            self.assertEqual(fromClient, [-i for i in range(50)])
        self.assertSettled()

    def test_silentPeerHoldsShutdown(self) -> None:
        """
        A peer that never answers the close holds the shutdown only until
        the grace period (5 s) runs out: the session is dropped, one line
        names the peer and its unconfirmed values, the Deferred fires and no
        timer is left.
        """
        quiet = self.connect("10.0.0.1", 1)
        chatty = self.connect("10.0.0.2", 1)
        d = self.registry.stopService()
        quiet.serverTransport.clear()
        self.network.pump()
        self.assertIsNotNone(chatty.server.closeReason)
        self.assertIsNone(quiet.server.closeReason)
        self.assertNoResult(d)
        self.clock.advance(4.9)
        self.network.pump()
        self.assertNoResult(d)
        self.clock.advance(0.1)
        self.network.pump()
        self.successResultOf(d)
        [line] = [e for e in self.events if "grace" in e.get("log_format", "")]
        self.assertEqual(line["peer"], quiet.server.key)
        self.assertEqual(line["unconfirmed"], 0)
        reason = quiet.server.closeReason
        assert reason is not None
        self.assertIsInstance(reason.value, TruncationError)
        self.assertEqual(chatty.client.closeCode, CloseCode.GOING_AWAY)
        self.assertSettled()

    def test_peerSeesReason(self) -> None:
        """
        The peers see the shutdown reason in the close record.
        """
        link = self.connect()
        self.registry.stopService()
        self.network.pump()
        self.assertEqual(link.client.closeCode, CloseCode.GOING_AWAY)
        self.assertEqual(SHUTDOWN_REASON, "server shutting down")

    def test_refusesWhileStopping(self) -> None:
        """
        While stopping (and once stopped), new connections are refused with
        a log line saying so; starting again admits them.
        """
        link = self.connect()
        d = self.registry.stopService()
        self.assertIsNone(self.network.connect("10.0.0.5", 1))
        self.assertEqual(len(self.logged("stopping")), 1)
        self.network.pump()
        self.successResultOf(d)
        del link
        self.assertIsNone(self.network.connect("10.0.0.5", 2))
        self.registry.startService()
        self.assertTrue(self.registry.running)
        self.connect("10.0.0.5", 3)
        self.closeAll()
        self.assertSettled()

    def test_abortsHandshakes(self) -> None:
        """
        Connections still in their handshake are aborted: their clients see
        the handshake
        fail, and the Deferred waits for them to end.
        """
        link = self.connect(pump=False)
        established = link.client.whenEstablished()
        d = self.registry.stopService()
        self.assertTrue(link.serverTransport.disconnected)
        self.assertNoResult(d)
        self.network.pump()
        self.successResultOf(d)
        self.failureResultOf(established)
        self.assertSettled()

    def test_stopEmpty(self) -> None:
        """
        Stopping a registry without connections fires at once.
        """
        self.registry.startService()
        self.assertIsNone(self.successResultOf(self.registry.stopService()))
