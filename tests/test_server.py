# -*- test-case-name: tests.test_server -*-
"""
Tests for L{netstructer.server} and L{netstructer.handlers}, in memory:
L{MemoryReactorClock} for listening and time, and client protocols connected
to the server's factory over L{StringTransport}s.
"""

from __future__ import annotations

import errno
import os
import sys
import tempfile
from typing import Any

from twisted.application.service import IService, IServiceCollection
from twisted.internet import defer
from twisted.internet.address import IPv4Address
from twisted.internet.error import CannotListenError, ConnectionDone
from twisted.internet.interfaces import IListeningPort, IStreamServerEndpoint
from twisted.internet.protocol import Factory
from twisted.internet.testing import MemoryReactorClock, RaisingMemoryReactor
from twisted.logger import LogEvent, Logger
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer
from zope.interface.verify import verifyObject

from netstructer.channel import CloseCode
from netstructer.errors import ServerInitializeError
from netstructer.handlers import (
    EchoHandler,
    IHandler,
    LogHandler,
    checkHandler,
    handlerFromName,
    isHandlerObject,
)
from netstructer.keys import Keyring, generateKey
from netstructer.protocol import BridgeProtocol
from netstructer.registry import ISessionListener, SessionRegistry
from netstructer.server import INTERNAL_ERROR_REASON, Server, endpointDescription
from tests.test_registry import Link, Network

KEY = generateKey()


# Handlers for handlerFromName, named by "tests.test_server:...".


def functionHandler(session: BridgeProtocol) -> None:
    """
    A callable handler that does nothing.
    """


class ClassHandler:
    """
    A handler class with handler methods: handlerFromName instantiates it.
    """

    def bufferReceived(self, session: BridgeProtocol, value: object) -> None:
        """
        Ignore C{value}.
        """


class PerSession:
    """
    A class without handler methods: a callable handler, one instance per
    session.
    """

    def __init__(self, session: BridgeProtocol) -> None:
        self.session = session


class NeedsArguments:
    """
    A handler class that cannot be made without arguments.
    """

    def __init__(self, required: int) -> None:
        self.required = required

    def sessionOpened(self, session: BridgeProtocol) -> None:
        """
        Nothing.
        """


class Namespace:
    """
    Holds a nested handler, for dotted attribute names.
    """

    echo = EchoHandler()


HANDLER_OBJECT = EchoHandler()
NOT_A_HANDLER = 42


@implementer(IListeningPort)
class FakePort:
    """
    A listening port whose C{stopListening} returns a Deferred the test
    fires.

    @ivar stopping: The Deferred C{stopListening} returned, once called.
    """

    def __init__(self) -> None:
        self.stopping: defer.Deferred[None] | None = None

    def startListening(self) -> None:
        """
        Nothing.
        """

    def stopListening(self) -> defer.Deferred[None]:
        """
        @return: A Deferred the test fires.
        """
        self.stopping = defer.Deferred()
        return self.stopping

    def getHost(self) -> IPv4Address:
        """
        @return: An address.
        """
        return IPv4Address("TCP", "127.0.0.1", 5000)


@implementer(IStreamServerEndpoint)
class FakeEndpoint:
    """
    An endpoint that listens on a L{FakePort}, or fails as told.

    @ivar factories: The factories it was asked to listen with.
    """

    def __init__(self, error: Exception | None = None) -> None:
        self.error = error
        self.port = FakePort()
        self.factories: list[Factory] = []

    def listen(self, protocolFactory: Factory) -> defer.Deferred[IListeningPort]:
        """
        Listen, or fail.
        """
        self.factories.append(protocolFactory)
        if self.error is not None:
            return defer.fail(self.error)
        return defer.succeed(self.port)


class ServerTestCase(SynchronousTestCase):
    """
    Servers on a L{MemoryReactorClock}, with their log, and clients.

    @ivar reactor: The reactor.
    @ivar events: What the server logged.
    @ivar clientEvents: What the clients logged.
    """

    def setUp(self) -> None:
        """
        Make the reactor and the logs.
        """
        self.reactor = MemoryReactorClock()
        self.events: list[LogEvent] = []
        self.clientEvents: list[LogEvent] = []
        self.logger = Logger(observer=self.events.append)

    def makeServer(
        self, handler: object = None, endpoint: object = "tcp:5000", **options: Any
    ) -> Server:
        """
        Make a server and a network of clients connecting to its factory.

        @return: The server.
        """
        server = Server(endpoint, KEY, handler, reactor=self.reactor, logger=self.logger, **options)
        self.network = Network(
            server.factory,
            self.reactor,
            Logger(observer=self.clientEvents.append),
            key=KEY,
        )
        return server

    def connect(self, host: str = "127.0.0.1", port: int = 40000) -> Link:
        """
        Connect a client and complete its handshake.

        @return: The connection.
        """
        link = self.network.connect(host, port)
        assert link is not None
        self.network.pump()
        return link

    def closeAll(self) -> None:
        """
        Close every connection from the client side, and check that no
        timer is left.
        """
        for link in self.network.links:
            if link.client.established:
                link.client.close()
        self.network.pump()
        self.assertEqual(self.reactor.getDelayedCalls(), [])

    def failures(self) -> list[LogEvent]:
        """
        @return: The logged failures.
        """
        return [e for e in self.events if "log_failure" in e]


class ConstructionTests(ServerTestCase):
    """
    Making a server: keys, options, endpoints.
    """

    def test_interfaces(self) -> None:
        """
        A server is a service collection whose child is its registry.
        """
        server = self.makeServer()
        verifyObject(IService, server)
        verifyObject(IServiceCollection, server)
        self.assertIsInstance(server.registry, SessionRegistry)
        self.assertEqual(list(server), [server.registry])
        verifyObject(ISessionListener, server._dispatcher)

    def test_badKey(self) -> None:
        """
        A malformed key raises L{ServerInitializeError} without showing the
        key.
        """
        bad = "this-is-not-a-valid-key-but-secret-looking"
        error = self.assertRaises(ServerInitializeError, Server, 5000, bad, reactor=self.reactor)
        self.assertNotIn(bad, str(error))
        self.assertIn("key", str(error))
        error = self.assertRaises(ServerInitializeError, Server, 5000, None, reactor=self.reactor)
        self.assertIn("NoneType", str(error))
        self.assertRaises(ServerInitializeError, Server, 5000, [], reactor=self.reactor)

    def test_keyForms(self) -> None:
        """
        Keys may be bytes, text, a list (all accepted) or a L{Keyring}.
        """
        other = generateKey()
        for key in (KEY, KEY.decode(), [KEY, other], Keyring([KEY])):
            server = Server(5000, key, reactor=self.reactor)
            self.assertIsInstance(server.config.keyring, Keyring)

    def test_options(self) -> None:
        """
        Options set the configuration and the registry's limits;
        C{maxBufferSize} sets C{limits.maxSize}.
        """
        server = self.makeServer(
            handshakeTimeout=5,
            idleTimeout=30,
            suite="fernet",
            maxSessions=10,
            maxPerIP=2,
            maxBufferSize=1000,
        )
        self.assertEqual(server.config.handshakeTimeout, 5)
        self.assertEqual(server.config.idleTimeout, 30)
        self.assertEqual(server.config.suite, "fernet")
        self.assertEqual(server.config.limits.maxSize, 1000)
        self.assertEqual((server.registry.maxSessions, server.registry.maxPerIP), (10, 2))
        self.assertIs(server.factory.config, server.config)

    def test_unknownOptions(self) -> None:
        """
        Unknown options raise L{TypeError} naming them.
        """
        error = self.assertRaises(TypeError, Server, 5000, KEY, bogus=1, maxbuffersize=2)
        self.assertIn("bogus", str(error))
        self.assertIn("maxbuffersize", str(error))
        self.assertRaises(TypeError, Server, 5000, KEY, keyring=KEY)

    def test_badOptionValue(self) -> None:
        """
        A bad option value raises L{ValueError}.
        """
        self.assertRaises(ValueError, Server, 5000, KEY, handshakeTimeout=0)
        self.assertRaises(ValueError, Server, 5000, KEY, maxSessions=0)

    def test_noGlobalReactor(self) -> None:
        """
        Making a server without a reactor does not resolve one.
        """
        server = Server(5000, KEY)
        self.assertIsNone(server._reactor)
        self.assertIsNone(server.registry._clock)

    def test_endpointForms(self) -> None:
        """
        Ports, digit strings, (host, port) tuples with IPv4, IPv6 or no
        host, descriptions and endpoints are all accepted.
        """
        endpoint = FakeEndpoint()
        cases: list[tuple[object, object]] = [
            (5000, "tcp:5000"),
            ("5000", "tcp:5000"),
            (("127.0.0.1", 5000), "tcp:5000:interface=127.0.0.1"),
            (("::1", 5000), "tcp:5000:interface=\\:\\:1"),
            (("[::1]", "5000"), "tcp:5000:interface=\\:\\:1"),
            (("", 5000), "tcp:5000"),
            ("unix:/tmp/ns.sock", "unix:/tmp/ns.sock"),
            (endpoint, endpoint),
        ]
        for given, expected in cases:
            self.assertEqual(endpointDescription(given), expected, given)

    def test_badEndpoints(self) -> None:
        """
        Ports out of range raise L{ServerInitializeError}; other things
        raise L{TypeError}.
        """
        for port in (70000, -1, ("127.0.0.1", 70000), "99999", ("h", "abc")):
            self.assertRaises(ServerInitializeError, Server, port, KEY)
        for endpoint in (5.0, None, True, ("h",), ("h", 1, 2), (1, 2)):
            self.assertRaises(TypeError, Server, endpoint, KEY)


class ListenTests(ServerTestCase):
    """
    L{Server.listen}, and starting and stopping the service.
    """

    def test_listenDescription(self) -> None:
        """
        Listening on a description binds it with the server's factory and
        fires with the port; listening again answers the same port.
        """
        server = self.makeServer(endpoint="tcp:5000:interface=127.0.0.1")
        port = self.successResultOf(server.listen())
        self.assertIs(server.port, port)
        self.assertEqual(self.reactor.tcpServers, [(5000, server.factory, 50, "127.0.0.1")])
        self.assertIs(self.successResultOf(server.listen()), port)
        self.assertEqual(len(self.reactor.tcpServers), 1)
        [event] = [e for e in self.events if "listening" in e["log_format"]]
        self.assertEqual(event["address"], "0.0.0.0:5000")

    def test_listenIPv6Tuple(self) -> None:
        """
        A C{(host, port)} tuple with an IPv6 host listens on that interface.
        """
        server = self.makeServer(endpoint=("::1", 5001))
        port = self.successResultOf(server.listen())
        self.assertEqual(self.reactor.tcpServers[0][0], 5001)
        self.assertEqual(self.reactor.tcpServers[0][3], "::1")
        self.assertEqual(port.getHost().host, "::1")

    def test_listenEachForm(self) -> None:
        """
        Every accepted form of endpoint listens with the server's factory on
        the port and interface it names.
        """
        cases: list[tuple[object, int, str]] = [
            (0, 0, ""),
            (5000, 5000, ""),
            ("5001", 5001, ""),
            (("127.0.0.1", 5002), 5002, "127.0.0.1"),
            (("", 5003), 5003, ""),
            (("::", "5004"), 5004, "::"),
            (("[fe80::1]", 5005), 5005, "fe80::1"),
            ("tcp:5006:interface=\\:\\:1", 5006, "::1"),
        ]
        for endpoint, port, interface in cases:
            self.reactor.tcpServers.clear()
            server = self.makeServer(endpoint=endpoint)
            self.successResultOf(server.listen())
            self.assertEqual(
                self.reactor.tcpServers, [(port, server.factory, 50, interface)], endpoint
            )
            self.successResultOf(server.stopService())

    def test_listenEndpoint(self) -> None:
        """
        An endpoint object is listened on with the server's factory.
        """
        endpoint = FakeEndpoint()
        server = self.makeServer(endpoint=endpoint)
        self.assertIs(self.successResultOf(server.listen()), endpoint.port)
        self.assertEqual(endpoint.factories, [server.factory])

    def test_portInUse(self) -> None:
        """
        A port in use fails with L{ServerInitializeError} saying so and
        naming the port.
        """
        error = CannotListenError("", 5000, OSError(errno.EADDRINUSE, "Address already in use"))
        server = Server("tcp:5000", KEY, reactor=RaisingMemoryReactor(listenException=error))
        failure = self.failureResultOf(server.listen(), ServerInitializeError)
        self.assertEqual(
            str(failure.value),
            "port 5000 is already in use: stop the other server or choose another --port",
        )
        self.assertIs(failure.value.__cause__, error)
        self.assertIsNone(server.port)

    def test_permissionDenied(self) -> None:
        """
        A port the process may not bind fails with L{ServerInitializeError}
        saying so.
        """
        error = CannotListenError("", 80, OSError(errno.EACCES, "Permission denied"))
        server = Server(("", 80), KEY, reactor=RaisingMemoryReactor(listenException=error))
        failure = self.failureResultOf(server.listen(), ServerInitializeError)
        self.assertTrue(str(failure.value).startswith("permission denied to listen on port 80"))

    def test_otherSocketError(self) -> None:
        """
        Other socket errors are named with the port and interface.
        """
        error = CannotListenError("10.9.9.9", 81, OSError(errno.EADDRNOTAVAIL, "Not available"))
        server = Server(81, KEY, reactor=RaisingMemoryReactor(listenException=error))
        message = str(self.failureResultOf(server.listen(), ServerInitializeError).value)
        self.assertIn("port 81", message)
        self.assertIn("10.9.9.9", message)

    def test_endpointFails(self) -> None:
        """
        An endpoint object whose listen fails with L{CannotListenError} fails
        with L{ServerInitializeError} naming the port; any other error is
        named too.  A later listen tries again.
        """
        endpoint = FakeEndpoint(CannotListenError("", 5000, OSError(errno.EADDRINUSE, "in use")))
        server = self.makeServer(endpoint=endpoint)
        failure = self.failureResultOf(server.listen(), ServerInitializeError)
        self.assertIn("port 5000 is already in use", str(failure.value))
        endpoint.error = RuntimeError("endpoint broke")
        failure = self.failureResultOf(server.listen(), ServerInitializeError)
        self.assertIn("endpoint broke", str(failure.value))
        endpoint.error = None
        self.successResultOf(server.listen())

    def test_badDescription(self) -> None:
        """
        A bad description fails with L{ServerInitializeError} naming it.
        """
        for description in ("tcp:notaport", "tcp:5000:bogus=1"):
            server = self.makeServer(endpoint=description)
            failure = self.failureResultOf(server.listen(), ServerInitializeError)
            self.assertIn(repr(description), str(failure.value))

    def test_startAndStop(self) -> None:
        """
        Starting the service starts the registry and listens; stopping stops
        listening and the registry.
        """
        server = self.makeServer()
        server.startService()
        self.assertTrue(server.running)
        self.assertTrue(server.registry.running)
        self.assertIsNotNone(server.port)
        self.assertEqual(len(self.reactor.tcpServers), 1)
        self.successResultOf(server.stopService())
        self.assertFalse(server.running)
        self.assertFalse(server.registry.running)
        self.assertIsNone(server.port)
        server.startService()
        self.assertEqual(len(self.reactor.tcpServers), 2)
        self.successResultOf(server.stopService())

    def test_privilegedStart(self) -> None:
        """
        L{Server.privilegedStartService} listens, and the following
        L{Server.startService} does not listen again.
        """
        server = self.makeServer()
        server.privilegedStartService()
        self.assertIsNotNone(server.port)
        server.startService()
        self.assertEqual(len(self.reactor.tcpServers), 1)
        self.successResultOf(server.stopService())

    def test_startFailureLogged(self) -> None:
        """
        A failure to listen while starting is logged and stops the service;
        the C{startService} that follows C{privilegedStartService} does not
        try again, but stopping and starting does.
        """
        error = CannotListenError("", 5000, OSError(errno.EADDRINUSE, "in use"))
        server = Server(
            5000, KEY, reactor=RaisingMemoryReactor(listenException=error), logger=self.logger
        )
        server.privilegedStartService()
        [event] = self.failures()
        self.assertIn("could not start", event["log_format"])
        event["log_failure"].trap(ServerInitializeError)
        self.assertFalse(server.running)
        self.assertFalse(server.registry.running)
        server.startService()
        self.assertEqual(len(self.failures()), 1)
        self.successResultOf(server.stopService())
        server.startService()
        self.assertEqual(len(self.failures()), 2)
        self.assertFalse(server.running)

    def test_startFailureRaised(self) -> None:
        """
        With C{_raiseSynchronously} set, a failure to listen is raised from
        C{startService}.
        """
        error = CannotListenError("", 5000, OSError(errno.EADDRINUSE, "in use"))
        server = Server(5000, KEY, reactor=RaisingMemoryReactor(listenException=error))
        server._raiseSynchronously = True
        raised = self.assertRaises(ServerInitializeError, server.startService)
        self.assertIn("already in use", str(raised))

    def test_stopClosesSessionsCleanly(self) -> None:
        """
        Stopping the server stops listening first, and only then closes the
        sessions with L{CloseCode.GOING_AWAY}, delivering values already
        sent; its Deferred fires once every connection has ended.
        """
        endpoint = FakeEndpoint()
        server = self.makeServer(endpoint=endpoint)
        server.startService()
        links = [self.connect("10.0.0.1", port) for port in (1, 2)]
        for link in links:
            link.server.sendBuffer("last")
        d = server.stopService()
        self.assertFalse(server.running)
        self.assertIsNotNone(endpoint.port.stopping)
        self.network.pump()
        self.assertEqual(links[0].client.closeCode, None)
        self.assertTrue(server.registry.running)
        assert endpoint.port.stopping is not None
        endpoint.port.stopping.callback(None)
        self.assertNoResult(d)
        self.assertIsNone(self.network.connect("10.0.0.1", 3))
        self.network.pump()
        self.successResultOf(d)
        for link in links:
            self.assertEqual(self.successResultOf(link.client.recvBuffer()), "last")
            self.assertEqual(link.client.closeCode, CloseCode.GOING_AWAY)
        self.assertEqual(self.reactor.getDelayedCalls(), [])

    def test_stopWaitsForHandlers(self) -> None:
        """
        A clean stop waits for the Deferreds the handler returned (for a
        value, a stream or a session's end) to fire, and no longer than the
        shutdown grace: then it logs how many were unfinished, and fires.
        """
        working: list[defer.Deferred[None]] = []

        class Handler:
            def bufferReceived(self, session: BridgeProtocol, value: object) -> object:
                working.append(defer.Deferred())
                return working[-1]

        endpoint = FakeEndpoint()
        server = self.makeServer(Handler(), endpoint=endpoint, shutdownGrace=3.0)
        server.startService()
        link = self.connect()
        for value in range(2):
            link.client.sendBuffer(value)
        self.network.pump()
        self.assertEqual(len(working), 2)
        stopped = server.stopService()
        assert endpoint.port.stopping is not None
        endpoint.port.stopping.callback(None)
        self.network.pump()
        self.assertNoResult(stopped)
        working[0].callback(None)
        self.assertNoResult(stopped)
        working[1].callback(None)
        self.successResultOf(stopped)

        # Work that never ends holds the stop for the grace, not longer.
        working.clear()
        endpoint = FakeEndpoint()
        server = self.makeServer(Handler(), endpoint=endpoint, shutdownGrace=3.0)
        server.startService()
        self.connect().client.sendBuffer("never answered")
        self.network.pump()
        stopped = server.stopService()
        assert endpoint.port.stopping is not None
        endpoint.port.stopping.callback(None)
        self.network.pump()
        self.reactor.advance(2.9)
        self.assertNoResult(stopped)
        self.reactor.advance(0.1)
        self.successResultOf(stopped)
        [warning] = [e for e in self.events if "unfinished" in e.get("log_format", "")]
        self.assertEqual((warning["count"], warning["timeout"]), (1, 3.0))
        self.assertEqual(self.reactor.getDelayedCalls(), [])

    def test_listenPending(self) -> None:
        """
        Listen calls made while the endpoint is still binding all fire with
        the port; stopping the server before it is bound cancels the attempt
        quietly.
        """
        endpoint = FakeEndpoint()
        binding: defer.Deferred[IListeningPort] = defer.Deferred()
        endpoint.listen = lambda factory: binding  # type: ignore[method-assign]
        server = self.makeServer(endpoint=endpoint)
        first, second = server.listen(), server.listen()
        self.assertNoResult(first)
        binding.callback(endpoint.port)
        self.assertIs(self.successResultOf(first), endpoint.port)
        self.assertIs(self.successResultOf(second), endpoint.port)
        stopped = server.stopService()
        assert endpoint.port.stopping is not None
        endpoint.port.stopping.callback(None)
        self.successResultOf(stopped)

        never: defer.Deferred[IListeningPort] = defer.Deferred()
        endpoint.listen = lambda factory: never  # type: ignore[method-assign]
        server = self.makeServer(endpoint=endpoint)
        server.startService()
        pending = server.listen()
        self.successResultOf(server.stopService())
        self.failureResultOf(pending, defer.CancelledError)
        self.assertEqual(self.failures(), [])
        self.assertIsNone(server.port)

    def test_stopListeningFails(self) -> None:
        """
        A port that fails to stop listening is logged, and the sessions are
        still closed.
        """
        endpoint = FakeEndpoint()
        server = self.makeServer(endpoint=endpoint)
        server.startService()
        link = self.connect()
        d = server.stopService()
        assert endpoint.port.stopping is not None
        endpoint.port.stopping.errback(RuntimeError("stuck port"))
        self.network.pump()
        self.successResultOf(d)
        [event] = self.failures()
        event["log_failure"].trap(RuntimeError)
        self.assertEqual(link.client.closeCode, CloseCode.GOING_AWAY)

    def test_repr(self) -> None:
        """
        The C{repr} names the endpoint and counts sessions.
        """
        self.assertEqual(repr(self.makeServer()), "<Server 'tcp:5000' 0 sessions>")

    def test_registryDelegates(self) -> None:
        """
        The original package's methods ask the registry.
        """
        server = self.makeServer()
        waiting = server.waitFor("10.0.0.1")
        first = self.connect("10.0.0.1", 1)
        second = self.connect("10.0.0.1", 2)
        self.assertIs(self.successResultOf(waiting), first.server)
        self.assertEqual(server.count(), 2)
        self.assertEqual(server.all(), [first.server, second.server])
        self.assertIs(server.get("10.0.0.1"), second.server)
        self.assertIs(server.get("10.0.0.1:1"), first.server)
        self.assertEqual(server.allFrom("10.0.0.1"), [first.server, second.server])
        self.assertIs(server.pop("10.0.0.1:2"), second.server)
        d = server.clear()
        self.network.pump()
        self.successResultOf(d)
        self.assertEqual(first.client.closeCode, CloseCode.NORMAL)
        self.assertEqual(server.count(), 0)
        self.closeAll()


class Recording:
    """
    A handler object recording what it is told, and failing on request.

    @ivar calls: What it was told, in order.
    @ivar failOn: A value whose arrival raises.
    """

    def __init__(self, failOn: object = None) -> None:
        self.calls: list[tuple[str, BridgeProtocol, object]] = []
        self.failOn = failOn

    def sessionOpened(self, session: BridgeProtocol) -> None:
        """
        Record.
        """
        self.calls.append(("opened", session, None))

    def bufferReceived(self, session: BridgeProtocol, value: object) -> None:
        """
        Record, or raise.
        """
        self.calls.append(("value", session, value))
        if value == self.failOn:
            raise RuntimeError("handler bug with a secret in its traceback")

    def sessionClosed(self, session: BridgeProtocol, reason: Failure) -> None:
        """
        Record.
        """
        self.calls.append(("closed", session, reason))


class HandlerTests(ServerTestCase):
    """
    Handing sessions and values to handlers.
    """

    def assertClosedByHandlerFailure(self, link: Link) -> None:
        """
        The server closed C{link} with C{INTERNAL_ERROR} and a generic
        reason, and logged the failure with the peer; the client saw no
        detail of it.
        """
        self.assertEqual(link.client.closeCode, CloseCode.INTERNAL_ERROR)
        events = [e for e in self.clientEvents if e.get("code") == "INTERNAL_ERROR"]
        self.assertTrue(events)
        for event in events:
            self.assertEqual(event["reason"], INTERNAL_ERROR_REASON)
        failures = [e for e in self.failures() if e.get("peer") == link.server.key]
        self.assertEqual(len(failures), 1)
        self.assertEqual(failures[0]["log_format"], "handler failed for {peer}")
        self.assertNotIn("secret", repr(self.clientEvents))

    def test_callable(self) -> None:
        """
        A callable handler is called once with each session as it opens;
        values stay in the session's C{recvBuffer} queue.
        """
        sessions: list[BridgeProtocol] = []
        self.makeServer(sessions.append)
        link = self.connect()
        self.assertEqual(sessions, [link.server])
        link.client.sendBuffer("queued")
        self.network.pump()
        self.assertEqual(self.successResultOf(link.server.recvBuffer()), "queued")
        self.assertEqual(sessions, [link.server])
        self.closeAll()

    def test_callableFails(self) -> None:
        """
        A callable handler that raises, or whose Deferred fails, has its
        session (only) closed with C{INTERNAL_ERROR}.
        """
        later: defer.Deferred[None] = defer.Deferred()

        def handler(session: BridgeProtocol) -> defer.Deferred[None] | None:
            if session.key.endswith(":1"):
                raise RuntimeError("secret")
            if session.key.endswith(":2"):
                return later
            return None

        self.makeServer(handler)
        raising = self.connect("10.0.0.1", 1)
        deferring = self.connect("10.0.0.1", 2)
        healthy = self.connect("10.0.0.1", 3)
        self.assertClosedByHandlerFailure(raising)
        self.assertIsNone(deferring.client.closeCode)
        later.errback(RuntimeError("secret"))
        self.network.pump()
        self.assertClosedByHandlerFailure(deferring)
        self.assertTrue(healthy.client.established)
        self.closeAll()

    def test_objectHandler(self) -> None:
        """
        A handler object is told of sessions opening and closing, and gets
        every value in order instead of the C{recvBuffer} queue.
        """
        handler = Recording()
        self.makeServer(handler)
        link = self.connect()
        for i in range(3):
            link.client.sendBuffer(i)
        self.network.pump()
        queued = link.server.recvBuffer()
        self.assertNoResult(queued)
        link.client.close()
        self.network.pump()
        self.failureResultOf(queued, ConnectionDone)
        self.assertEqual(
            [(kind, value) for kind, _, value in handler.calls[:4]],
            [("opened", None), ("value", 0), ("value", 1), ("value", 2)],
        )
        kind, session, reason = handler.calls[4]
        self.assertEqual((kind, session), ("closed", link.server))
        assert isinstance(reason, Failure)
        reason.trap(ConnectionDone)
        self.closeAll()

    def test_partialHandler(self) -> None:
        """
        A handler object without C{bufferReceived} leaves values in the
        queue; its other methods are still called.
        """
        opened: list[BridgeProtocol] = []

        class OnlyOpened:
            def sessionOpened(self, session: BridgeProtocol) -> None:
                opened.append(session)

        self.makeServer(OnlyOpened())
        link = self.connect()
        link.client.sendBuffer("x")
        self.network.pump()
        self.assertEqual(opened, [link.server])
        self.assertEqual(self.successResultOf(link.server.recvBuffer()), "x")
        self.closeAll()

    def test_bufferReceivedFails(self) -> None:
        """
        A handler raising on a value has that session (only) closed with
        C{INTERNAL_ERROR}; values arriving after that on it are dropped.
        """
        handler = Recording(failOn="boom")
        self.makeServer(handler)
        bad = self.connect("10.0.0.1", 1)
        good = self.connect("10.0.0.1", 2)
        bad.client.sendBuffer("boom")
        bad.client.sendBuffer("after")
        good.client.sendBuffer("fine")
        self.network.pump()
        self.assertClosedByHandlerFailure(bad)
        values = [(s, v) for kind, s, v in handler.calls if kind == "value"]
        self.assertEqual(values, [(bad.server, "boom"), (good.server, "fine")])
        self.assertTrue(good.client.established)
        self.closeAll()

    def test_bufferReceivedDeferredFails(self) -> None:
        """
        A handler whose C{bufferReceived} returns a L{Deferred} that fails has
        that session closed with C{INTERNAL_ERROR}, as if it had raised.
        """
        later: defer.Deferred[None] = defer.Deferred()

        class Deferring:
            def bufferReceived(self, session: BridgeProtocol, value: object) -> object:
                return later

        self.makeServer(Deferring())
        link = self.connect()
        link.client.sendBuffer("x")
        self.network.pump()
        self.assertTrue(link.client.established)
        later.errback(RuntimeError("handler bug with a secret in its traceback"))
        self.network.pump()
        self.assertClosedByHandlerFailure(link)

    def test_handlerReplaced(self) -> None:
        """
        Values arriving after the handler was replaced go to the new one,
        on sessions opened before.
        """
        first, second = Recording(), Recording()
        server = self.makeServer(first)
        link = self.connect()
        link.client.sendBuffer(1)
        self.network.pump()
        server.setHandler(second)
        link.client.sendBuffer(2)
        self.network.pump()
        self.assertEqual([c[2] for c in first.calls if c[0] == "value"], [1])
        self.assertEqual([c[2] for c in second.calls if c[0] == "value"], [2])
        self.closeAll()

    def test_handlerReplacedWithinBatch(self) -> None:
        """
        A handler replaced, while it handles a value of a batch, by one
        without C{bufferReceived} leaves the batch's remaining values in the
        session's queue, in order: none is lost.
        """
        server: Server

        class Switching:
            def __init__(self) -> None:
                self.values: list[object] = []

            def bufferReceived(self, session: BridgeProtocol, value: object) -> None:
                self.values.append(value)
                if value == 1:
                    server.setHandler(lambda session: None)

        switching = Switching()
        server = self.makeServer(switching)
        link = self.connect()
        for value in range(4):
            link.client.sendBuffer(value)
        self.network.pump()
        self.assertEqual(link.client.valuesOut, 4)
        self.assertEqual(switching.values, [0, 1])
        self.assertEqual([self.successResultOf(link.server.recvBuffer()) for _ in range(2)], [2, 3])
        self.closeAll()

    def test_sessionClosedFails(self) -> None:
        """
        A handler raising in C{sessionClosed} is logged.
        """

        class Closing:
            def sessionClosed(self, session: BridgeProtocol, reason: Failure) -> None:
                raise RuntimeError("closing bug")

        self.makeServer(Closing())
        self.connect()
        self.closeAll()
        [event] = self.failures()
        event["log_failure"].trap(RuntimeError)

    def test_setHandler(self) -> None:
        """
        L{Server.setHandler} and its original name L{Server.listen_on} set
        the handler; L{None} removes it; non-handlers raise L{TypeError}.
        """
        server = self.makeServer()
        self.assertIsNone(server.handler)
        handler = Recording()
        server.listen_on(handler)
        self.assertIs(server.handler, handler)
        server.setHandler(functionHandler)
        self.assertIs(server.handler, functionHandler)
        server.setHandler(None)
        self.assertIsNone(server.handler)
        self.assertRaises(TypeError, server.setHandler, 42)
        self.assertRaises(TypeError, server.setHandler, Recording)
        self.assertRaises(TypeError, Server, 5000, KEY, "not a handler")

    def test_handlerForms(self) -> None:
        """
        Handler objects, functions and per-session classes are handlers.
        """
        self.assertTrue(isHandlerObject(Recording()))
        self.assertFalse(isHandlerObject(functionHandler))
        self.assertFalse(isHandlerObject(Recording))
        for handler in (Recording(), functionHandler, PerSession):
            self.assertIs(checkHandler(handler), handler)


class EchoHandlerTests(ServerTestCase):
    """
    L{EchoHandler}.
    """

    def test_interface(self) -> None:
        """
        L{EchoHandler} provides L{IHandler}.
        """
        verifyObject(IHandler, EchoHandler())

    def test_echo(self) -> None:
        """
        Every value comes back, in order.
        """
        self.makeServer(EchoHandler())
        link = self.connect()
        values = ["a", 1, {"k": [1, 2]}, b"bytes"]
        for value in values:
            link.client.sendBuffer(value)
        self.network.pump()
        self.assertEqual([self.successResultOf(link.client.recvBuffer()) for _ in values], values)
        self.closeAll()

    def test_backpressure(self) -> None:
        """
        While the server's transport is not accepting writes, reading from
        the peer pauses; it resumes when the transport drains.
        """
        self.makeServer(EchoHandler())
        link = self.connect()
        link.serverTransport.producer.pauseProducing()
        link.client.sendBuffer(1)
        self.network.pump()
        self.assertEqual(link.serverTransport.producerState, "paused")
        link.client.sendBuffer(2)
        self.network.pump()
        self.assertEqual(self.successResultOf(link.client.recvBuffer()), 1)
        second = link.client.recvBuffer()
        self.assertNoResult(second)
        link.serverTransport.producer.resumeProducing()
        self.assertEqual(link.serverTransport.producerState, "producing")
        self.network.pump()
        self.assertEqual(self.successResultOf(second), 2)
        self.closeAll()

    def test_afterClose(self) -> None:
        """
        Values arriving after the server started closing are dropped, not
        errors.
        """
        server = self.makeServer(EchoHandler())
        link = self.connect()
        link.client.sendBuffer("crossing")
        server.get(link.server.key).close()  # type: ignore[union-attr]
        self.network.pump()
        self.assertEqual(self.failures(), [])
        self.assertEqual(self.reactor.getDelayedCalls(), [])

    def test_tooBigForPeer(self) -> None:
        """
        A value larger than the peer itself accepts closes the session with
        L{CloseCode.TOO_BIG}.
        """
        from netstructer.protocol import BridgeConfig
        from netstructer.values import Limits

        self.makeServer(EchoHandler())
        link = self.network.connect(
            clientConfig=BridgeConfig.fromKey(KEY, limits=Limits(maxSize=1000))
        )
        assert link is not None
        self.network.pump()
        link.client.sendBuffer(b"x" * 900)
        self.network.pump()
        self.assertEqual(self.successResultOf(link.client.recvBuffer()), b"x" * 900)
        link.client.sendBuffer(b"x" * 1000)
        self.network.pump()
        self.assertEqual(link.client.closeCode, CloseCode.TOO_BIG)
        self.assertEqual(self.failures(), [])


class LogHandlerTests(ServerTestCase):
    """
    L{LogHandler}.
    """

    def test_interface(self) -> None:
        """
        L{LogHandler} provides L{IHandler}.
        """
        verifyObject(IHandler, LogHandler())

    def test_logs(self) -> None:
        """
        Sessions opening and closing, and each value with its peer, are
        logged; values stay out of the queue.
        """
        logged: list[LogEvent] = []
        self.makeServer(LogHandler(logger=Logger(observer=logged.append)))
        link = self.connect("10.0.0.1", 1)
        link.client.sendBuffer("hello")
        self.network.pump()
        queued = link.server.recvBuffer()
        self.assertNoResult(queued)
        link.client.close()
        self.network.pump()
        self.failureResultOf(queued, ConnectionDone)
        formats = [e["log_format"] for e in logged]
        self.assertEqual(
            formats,
            ["Session {peer} opened", "{peer} sent {value}", "Session {peer} closed: {reason}"],
        )
        self.assertEqual({e["peer"] for e in logged}, {"10.0.0.1:1"})
        self.assertEqual(logged[1]["value"], "'hello'")
        self.assertEqual(logged[1]["valueType"], "str")

    def test_truncated(self) -> None:
        """
        Long values are cut to C{maxLength} characters.
        """
        handler = LogHandler(maxLength=50)
        for value in ("x" * 10000, b"x" * 10000, list(range(10000)), 10**400, {"k": "v" * 999}):
            text = handler.describe(value)
            self.assertLessEqual(len(text), 50, text)
            self.assertIn("...", text)
        self.assertEqual(handler.describe(b"ab"), "b'ab'")


class HandlerFromNameTests(SynchronousTestCase):
    """
    L{handlerFromName}.
    """

    def test_builtins(self) -> None:
        """
        C{"echo"} and C{"log"} name the built-in handlers.
        """
        self.assertIsInstance(handlerFromName("echo"), EchoHandler)
        self.assertIsInstance(handlerFromName("log"), LogHandler)
        self.assertIsInstance(handlerFromName(" Echo "), EchoHandler)

    def test_dottedPath(self) -> None:
        """
        C{"package.module:name"} imports the module and takes the attribute:
        objects and callables as they are, handler classes instantiated.
        """
        here = __name__
        self.assertIs(handlerFromName(f"{here}:HANDLER_OBJECT"), HANDLER_OBJECT)
        self.assertIs(handlerFromName(f"{here}:functionHandler"), functionHandler)
        self.assertIs(handlerFromName(f"{here}:PerSession"), PerSession)
        self.assertIs(handlerFromName(f"{here}:Namespace.echo"), Namespace.echo)
        self.assertIsInstance(handlerFromName(f"{here}:ClassHandler"), ClassHandler)

    def test_badNames(self) -> None:
        """
        Unknown names, missing modules and attributes, non-handlers and
        classes that cannot be made raise L{ServerInitializeError} saying
        which.
        """
        here = __name__
        cases = {
            "nonsense": "unknown handler",
            "no_such_module_ns:handler": "cannot import the handler module 'no_such_module_ns'",
            f"{here}:missing": "has no attribute 'missing'",
            f"{here}:NOT_A_HANDLER": "is a int, not a handler",
            f"{here}:NeedsArguments": "cannot make a handler",
            ":x": "unknown handler",
            "module:": "unknown handler",
        }
        for name, message in cases.items():
            error = self.assertRaises(ServerInitializeError, handlerFromName, name)
            self.assertIn(message, str(error), name)

    def test_importFails(self) -> None:
        """
        A handler module that raises while importing raises
        L{ServerInitializeError} naming the error.
        """
        temporary = tempfile.TemporaryDirectory()
        self.addCleanup(temporary.cleanup)
        directory = temporary.name
        with open(os.path.join(directory, "ns_broken_handler.py"), "w") as f:
            f.write("raise ZeroDivisionError('broken at import')\n")
        sys.path.insert(0, directory)
        self.addCleanup(sys.path.remove, directory)
        self.addCleanup(sys.modules.pop, "ns_broken_handler", None)
        error = self.assertRaises(
            ServerInitializeError, handlerFromName, "ns_broken_handler:handler"
        )
        self.assertIn("ZeroDivisionError: broken at import", str(error))
