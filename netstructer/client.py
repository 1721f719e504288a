# -*- test-case-name: tests.test_client,tests.test_loopback -*-
"""
Connecting to a NetStructer server.

L{connect} makes one connection and fires with its L{BridgeProtocol} only
once the handshake has authenticated the server::

    from twisted.internet.defer import ensureDeferred
    from twisted.internet.task import react
    from netstructer.client import connect

    async def main(reactor):
        session = await connect(reactor, "127.0.0.1:5000", key)
        session.sendBuffer(["hi im haytam", 128, {b"gg": "gg"}, {1, 2, 6, 4}, (False, True)])
        print(await session.recvBuffer(timeout=10))
        session.close()
        await session.whenClosed()

    react(lambda reactor: ensureDeferred(main(reactor)))

L{ReconnectingClient} keeps a session up across drops, reconnecting with an
exponential backoff, on top of Twisted's
L{ClientService<twisted.application.internet.ClientService>}.

Where to connect is given as any of:

    - an L{IStreamClientEndpoint} provider;
    - a C{clientFromString} description, such as
      C{"tcp:host=127.0.0.1:port=5000"}, C{"tls:example.org:5000"} or
      C{"unix:path=/run/app.sock"};
    - a C{(host, port)} tuple, or the shorthand C{"host:port"} (C{"[::1]:5000"}
      for IPv6), both meaning a L{HostnameEndpoint}, which resolves names and
      connects over IPv4 or IPv6, whichever answers first.

A string is read as the C{"host:port"} shorthand when it is exactly a host and
an all-digit port (or a bracketed IPv6 address and a port), and the host is
not the name of an endpoint type (C{tcp}, C{ssl}, C{unix} or a plugin such
as C{tls}); anything else is an endpoint description.
"""

from __future__ import annotations

import dataclasses
import functools
import ipaddress
import re
from collections import deque
from collections.abc import Callable
from typing import Any, Generic, TypeAlias, TypeVar, cast

from twisted.application.internet import ClientService, backoffPolicy
from twisted.application.service import Service
from twisted.internet import defer
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.endpoints import (
    HostnameEndpoint,
    TCP4ClientEndpoint,
    TCP6ClientEndpoint,
    clientFromString,
)
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import (
    IAddress,
    IDelayedCall,
    IProtocol,
    IProtocolFactory,
    IReactorTime,
    IStreamClientEndpoint,
    IStreamClientEndpointStringParserWithReactor,
    ITransport,
)
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.plugin import getPlugins
from twisted.python.failure import Failure
from zope.interface import implementer

from netstructer.channel import MAX_VALUE_SIZE_LIMIT, Role
from netstructer.errors import (
    BufferDataError,
    ChannelClosedError,
    NetStructerError,
    OperationTimedOut,
)
from netstructer.keys import Keyring
from netstructer.protocol import BridgeClientFactory, BridgeConfig, BridgeProtocol
from netstructer.values import DEFAULT_LIMITS, Limits, encode

__all__ = [
    "CLIENT_OPTIONS",
    "ReconnectingClient",
    "clientEndpoint",
    "connect",
]

KeyLike: TypeAlias = "bytes | str | Keyring | list[bytes | str]"
"""Every form of key L{BridgeConfig.fromKey} accepts."""

EndpointLike: TypeAlias = "IStreamClientEndpoint | str | tuple[str | bytes, int]"
"""Every form of "where to connect" L{clientEndpoint} accepts."""

CLIENT_OPTIONS: frozenset[str] = frozenset(
    {field.name for field in dataclasses.fields(BridgeConfig)}
    - {"keyring", "suite", "acceptSuites"}
) | {"maxBufferSize"}
"""
The keyword options L{connect} and L{ReconnectingClient} accept: the fields of
L{BridgeConfig} a client uses, and C{maxBufferSize}, shorthand for
C{limits=Limits(maxSize=maxBufferSize)}.
"""

_BUILTIN_ENDPOINT_TYPES = frozenset({"tcp", "ssl", "unix"})

_HOST_PORT = re.compile(
    r"\A(?:\[(?P<ipv6>[0-9A-Fa-f:.]+(?:%[^\]]+)?)\]|(?P<host>[^:=\[\]\s]+)):(?P<port>[0-9]+)\Z"
)

_MAX_ENDED_UNREAD = 16

_T = TypeVar("_T")
_P = TypeVar("_P")


def _maybeGlobalReactor(maybeReactor: _T | None) -> _T:
    """
    The given reactor, or the global reactor, imported only when needed.

    @param maybeReactor: A reactor, or L{None}.
    @return: C{maybeReactor}, or the global reactor if it is L{None}.
    """
    if maybeReactor is not None:
        return maybeReactor
    from twisted.internet import reactor

    return cast(_T, reactor)


@functools.cache
def _endpointTypes() -> frozenset[str]:
    """
    The endpoint type names C{clientFromString} knows: the built-in ones and
    those installed as plugins.  Looked up once per process (finding the
    plugins reads the plugin directories, which would otherwise cost every
    connection to C{"host:port"} a few hundred microseconds).

    @return: The names, in lower case.
    """
    plugins = getPlugins(IStreamClientEndpointStringParserWithReactor)
    return _BUILTIN_ENDPOINT_TYPES | {plugin.prefix.lower() for plugin in plugins}


def _isAddress(host: str) -> bool:
    """
    @return: Whether C{host} is an IP address (never an endpoint type).
    """
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _checkPort(port: object, where: object) -> int:
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
        raise ValueError(f"{where!r}: the port must be a number from 1 to 65535")
    return port


def clientEndpoint(reactor: Any, endpoint: EndpointLike) -> IStreamClientEndpoint:
    """
    Turn any accepted form of "where to connect" into an endpoint.

    @param reactor: The reactor the endpoint connects with (it must provide
        what the endpoint type needs: L{IReactorTCP
        <twisted.internet.interfaces.IReactorTCP>} and L{IReactorTime} for
        TCP).  L{None} means the global reactor.
    @param endpoint: An L{IStreamClientEndpoint} provider (returned as is), a
        C{clientFromString} description, a C{(host, port)} tuple, or a
        C{"host:port"} / C{"[ipv6]:port"} string.
    @return: The endpoint.
    @raise ValueError: The description is malformed, names an unknown
        endpoint type, or the port is out of range.
    @raise TypeError: C{endpoint} is none of the accepted forms.
    """
    if IStreamClientEndpoint.providedBy(endpoint):
        return endpoint
    reactor = _maybeGlobalReactor(reactor)
    if isinstance(endpoint, tuple):
        if len(endpoint) != 2 or not isinstance(endpoint[0], str | bytes):
            raise TypeError(f"{endpoint!r}: a tuple must be (host, port)")
        host, port = endpoint
        return _hostEndpoint(reactor, host, _checkPort(port, endpoint))
    if not isinstance(endpoint, str):
        raise TypeError(
            f"cannot connect to {endpoint!r}: give an IStreamClientEndpoint, an endpoint "
            "description such as 'tcp:host=example.org:port=5000', a (host, port) tuple "
            "or 'host:port'"
        )
    match = _HOST_PORT.match(endpoint)
    if match is not None:
        ipv6, host = match.group("ipv6"), match.group("host")
        if ipv6 is not None:
            return _hostEndpoint(reactor, ipv6, _checkPort(int(match.group("port")), endpoint))
        if _isAddress(host) or host.lower() not in _endpointTypes():
            return _hostEndpoint(reactor, host, _checkPort(int(match.group("port")), endpoint))
    try:
        return cast(IStreamClientEndpoint, clientFromString(reactor, endpoint))
    except (TypeError, KeyError, ValueError) as e:
        raise ValueError(
            f"{endpoint!r} is neither 'host:port' nor a valid endpoint description "
            f"such as 'tcp:host=example.org:port=5000' ({e})"
        ) from e


_DEFAULT_RETRY_POLICY = backoffPolicy(initialDelay=0.1, maxDelay=1.0)
"""Retry after 0.1 s, doubling (with jitter) up to a second: a restarted
server is reached again within about a second."""


def _hostEndpoint(reactor: Any, host: str | bytes, port: int) -> IStreamClientEndpoint:
    """
    An endpoint for a host and port: a plain TCP endpoint for an IP address
    (a refused connection is reported at once), a L{HostnameEndpoint} for a
    name (resolved, with every address tried).
    """
    text = host.decode("ascii") if isinstance(host, bytes) else host
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return HostnameEndpoint(reactor, host, port)
    if address.version == 6:
        return TCP6ClientEndpoint(reactor, text, port)
    return TCP4ClientEndpoint(reactor, text, port)


def _describe(endpoint: object) -> str:
    """
    Name where a client connects, for messages.

    @param endpoint: What the caller passed.
    @return: A short description.
    """
    if isinstance(endpoint, str):
        return endpoint
    if isinstance(endpoint, tuple) and len(endpoint) == 2:
        host, port = endpoint
        if isinstance(host, bytes):
            host = host.decode("ascii", "backslashreplace")
        return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
    return repr(endpoint)


def _clientConfig(key: KeyLike, suite: str, options: dict[str, Any]) -> BridgeConfig:
    """
    Build a client configuration, checking the option names.

    @param key: The key, in any form L{BridgeConfig.fromKey} accepts.
    @param suite: The suite.
    @param options: The caller's keyword options.
    @return: The configuration.
    @raise TypeError: An option is unknown.
    @raise ValueError: An option, the suite or the cipher is invalid.
    @raise InvalidKey: The key is malformed.
    """
    unknown = sorted(set(options) - CLIENT_OPTIONS)
    if unknown:
        raise TypeError(
            f"unknown option{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}; "
            f"the options are {', '.join(sorted(CLIENT_OPTIONS))}"
        )
    options = dict(options)
    maxBufferSize = options.pop("maxBufferSize", None)
    if maxBufferSize is not None:
        limits: Limits = options.get("limits", DEFAULT_LIMITS)
        options["limits"] = dataclasses.replace(limits, maxSize=maxBufferSize)
    # BridgeConfig checks every option (suite, cipher and limits included),
    # so a bad value raises here rather than inside the reactor.
    return BridgeConfig.fromKey(key, suite=suite, **options)


def _checkTimeout(timeout: float | None) -> None:
    if timeout is not None and not timeout > 0:
        raise ValueError("timeout must be a positive number of seconds or None")


class _Settling(Generic[_T]):
    """
    Something that ends once, with a result or a failure, maybe on a timer.

    @ivar result: Fires, once, with the outcome.
    """

    result: Deferred[_T]
    _timer: IDelayedCall | None

    def _settle(self, outcome: _T | Failure) -> None:
        """
        Stop the timer and fire L{result}, unless it already fired.

        @param outcome: The result, or a failure.
        """
        if self._timer is not None:
            if self._timer.active():
                self._timer.cancel()
            self._timer = None
        if self.result.called:
            return
        if isinstance(outcome, Failure):
            self.result.errback(outcome)
        else:
            self.result.callback(outcome)


class _ConnectAttempt(_Settling[_P]):
    """
    One connection attempt: connect through an endpoint, then wait for the
    session's handshake.  The result fires only once the server has
    authenticated; a timeout or a cancellation stops whichever stage is
    running (cancelling the endpoint's L{Deferred}, or aborting the
    connection) and leaves no timer behind.

    @ivar result: Fires with the protocol the endpoint connected (C{_P}) once
        its session is established; fails with the endpoint's error, the
        handshake's error, L{OperationTimedOut} or L{CancelledError}.
    """

    def __init__(
        self,
        endpoint: IStreamClientEndpoint,
        factory: IProtocolFactory,
        sessionOf: Callable[[_P], BridgeProtocol],
        clock: IReactorTime,
        timeout: float | None,
        where: str,
    ) -> None:
        """
        @param endpoint: Where to connect.
        @param factory: Builds the connection's protocol.
        @param sessionOf: Finds the session in the protocol the endpoint
            returns.
        @param clock: Schedules the timeout.
        @param timeout: Seconds the whole attempt may take; L{None} for no
            limit.
        @param where: Names the server in messages.
        """
        self._endpoint = endpoint
        self._factory = factory
        self._sessionOf = sessionOf
        self._clock = clock
        self._timeout = timeout
        self._where = where
        self._connecting: Deferred[_P] | None = None
        self._session: BridgeProtocol | None = None
        self._timer: IDelayedCall | None = None
        self.result: Deferred[_P] = Deferred(self._cancel)

    def start(self) -> Deferred[_P]:
        """
        Start connecting.

        @return: L{result}.
        """
        if self._timeout is not None:
            self._timer = self._clock.callLater(self._timeout, self._timedOut)
        connecting = cast(
            "Deferred[_P]", defer.maybeDeferred(self._endpoint.connect, self._factory)
        )
        self._connecting = connecting
        prepare = getattr(self._factory, "prepare", None)
        if prepare is not None and not connecting.called:
            # The connection is on its way: build its protocol meanwhile.
            prepare()
        connecting.addCallbacks(self._connected, self._connectFailed)
        return self.result

    def _connected(self, protocol: _P) -> None:
        self._connecting = None
        session = self._sessionOf(protocol)
        if self.result.called:
            session.abort()
            return
        self._session = session
        session.whenEstablished().addCallbacks(
            self._established, self._settle, callbackArgs=(protocol,)
        )

    def _connectFailed(self, failure: Failure) -> None:
        self._connecting = None
        self._settle(failure)

    def _established(self, session: BridgeProtocol, protocol: _P) -> None:
        if self.result.called:
            # Too late: the attempt timed out or was cancelled meanwhile.
            if session.closeReason is None:
                session.abort()
            return
        self._settle(protocol)

    def _abandon(self) -> None:
        connecting, self._connecting = self._connecting, None
        if connecting is not None:
            connecting.cancel()
        elif self._session is not None and self._session.closeReason is None:
            self._session.abort()

    def _timedOut(self) -> None:
        self._timer = None
        self._settle(
            Failure(
                OperationTimedOut(
                    f"could not connect to {self._where} and authenticate it within "
                    f"{self._timeout} seconds"
                )
            )
        )
        self._abandon()

    def _cancel(self, result: Deferred[_P]) -> None:
        self._settle(Failure(CancelledError(f"the connection to {self._where} was cancelled")))
        self._abandon()


def connect(
    reactor: Any,
    endpoint: EndpointLike,
    key: KeyLike,
    *,
    suite: str = "noise",
    timeout: float | None = 30,
    clock: IReactorTime | None = None,
    **options: Any,
) -> Deferred[BridgeProtocol]:
    """
    Connect to a NetStructer server and authenticate it.

    @param reactor: The reactor to connect with; L{None} means the global
        reactor, imported only now.
    @param endpoint: Where to connect: see L{clientEndpoint}.
    @param key: The key (a Fernet-format key, a list of them, or a
        L{Keyring}; the first key is used).
    @param suite: C{"noise"} (the default) or C{"fernet"}.
    @param timeout: Seconds connecting and the handshake may take together;
        L{None} for no overall limit (C{handshakeTimeout} and the endpoint's
        own connect timeout still apply).
    @param clock: Schedules the timeout and the session's timers; the reactor
        by default.
    @param options: Any of L{CLIENT_OPTIONS}: C{cipher}, C{limits},
        C{maxBufferSize} (shorthand for C{limits=Limits(maxSize=...)}; given
        with C{limits}, it replaces that C{maxSize}),
        C{handshakeTimeout}, C{keepAliveInterval}, C{idleTimeout},
        C{shutdownGrace} (C{closeTimeout}), C{maxPendingValues}, C{maxQueuedValues},
        C{maxQueuedBytes}, C{fernetTTL}.
    @return: A L{Deferred} firing with the L{BridgeProtocol} once the server
        has authenticated.  It fails with L{AuthenticationError
        <netstructer.errors.AuthenticationError>} if the server holds another
        key, L{HandshakeError <netstructer.errors.HandshakeError>} if the two
        sides disagree on the version or suite (or the server closed the
        connection during the handshake), the endpoint's error if the
        connection could not be made (for example
        L{ConnectionRefusedError<twisted.internet.error.ConnectionRefusedError>}),
        or L{OperationTimedOut} after C{timeout} seconds.  Cancelling it
        cancels the attempt (the endpoint's connection attempt, or the
        connection if the handshake is running) and fails it with
        L{CancelledError}.
    @raise TypeError: An option is unknown, or C{endpoint} has no accepted
        form.
    @raise ValueError: An option, the suite, the timeout or the endpoint
        description is invalid.
    @raise InvalidKey: The key is malformed.
    """
    _checkTimeout(timeout)
    reactor = _maybeGlobalReactor(reactor)
    theClock: IReactorTime = reactor if clock is None else clock
    config = _clientConfig(key, suite, options)
    factory = BridgeClientFactory(config, theClock)
    attempt: _ConnectAttempt[BridgeProtocol] = _ConnectAttempt(
        clientEndpoint(reactor, endpoint),
        factory,
        _itself,
        theClock,
        timeout,
        _describe(endpoint),
    )
    return attempt.start()


def _itself(session: BridgeProtocol) -> BridgeProtocol:
    return session


# The reconnecting client.
#
# ClientService's prepareConnection hook cannot be what waits for the
# handshake: a connection whose handshake fails is lost before ClientService
# counts it as connected, and ClientService (Twisted 26.10) has no transition
# for a connection lost in its Connecting or Waiting states, so
# _ReconnectingProtocolProxy.connectionLost raises automat's NoTransition into
# the reactor.  Instead, the endpoint handed to ClientService (_SessionEndpoint)
# fires only once the handshake has authenticated the server, and the
# transport talks to a _Gate that tells ClientService about the loss of a
# connection only if that connection was handed to it.


class _Session(BridgeProtocol):
    """
    A reconnecting client's session: a L{BridgeProtocol} that counts the
    values it received, so that the client knows whether an ended session
    still holds values nobody has read.

    @ivar received: Values received.
    @ivar taken: Values the client's L{ReconnectingClient.recvBuffer} took.
    """

    received = 0
    taken = 0

    def bufferReceived(self, value: object) -> None:
        """
        Count the value and queue it for L{recvBuffer}.

        @param value: The value.
        """
        self.received += 1
        super().bufferReceived(value)

    @property
    def unread(self) -> int:
        """
        Values received and not taken.
        """
        return self.received - self.taken


class _SessionFactory(BridgeClientFactory):
    """
    The protocol factory a L{ReconnectingClient} hands to L{ClientService}:
    builds L{_Session}s and remembers the last one, for the L{_GateFactory}
    that asked L{ClientService}'s wrapper to build it.
    """

    protocol = _Session
    lastBuilt: _Session | None = None

    def buildProtocol(self, addr: IAddress | None) -> _Session:
        """
        Build a session and remember it.

        @param addr: The server's address.
        @return: The session.
        """
        session = _Session(Role.CLIENT, self.config, self.clock, None, self._log)
        session.factory = self
        self.lastBuilt = session
        return session

    def takeLastBuilt(self) -> _Session | None:
        """
        Take the session built last, forgetting it.

        @return: The session, or L{None} if none was built since the last
            call.
        """
        session, self.lastBuilt = self.lastBuilt, None
        return session


class _Gate(Protocol):
    """
    The protocol a reconnecting client's transport talks to.  It hands
    everything to the session, and delivers the end of the connection through
    L{ClientService}'s protocol wrapper only if the connection was handed to
    L{ClientService}, that is, only if its session authenticated.

    @ivar session: The session.
    @ivar handedOver: Whether L{ClientService} knows of this connection.
    """

    def __init__(self, session: _Session, proxy: IProtocol, lost: Callable[[], None]) -> None:
        """
        @param session: The session.
        @param proxy: L{ClientService}'s wrapper around C{session}.
        @param lost: Called after the connection ended and
            L{ClientService} (if it knew of it) was told.
        """
        self.session = session
        self.handedOver = False
        self._proxy = proxy
        self._lost = lost

    def makeConnection(self, transport: ITransport) -> None:
        """
        Connect the session (through L{ClientService}'s wrapper, which
        remembers the transport).

        @param transport: The transport.
        """
        self.transport = transport
        self.connected = 1
        self._proxy.makeConnection(transport)

    def dataReceived(self, data: bytes) -> None:
        """
        Hand the bytes to the session.

        @param data: The bytes.
        """
        self.session.dataReceived(data)

    def connectionLost(self, reason: Failure = Failure(ConnectionDone())) -> None:  # noqa: B008
        """
        Tell the session, and L{ClientService} if it knows of the connection.

        @param reason: Why the connection ended.
        """
        self.connected = 0
        try:
            if self.handedOver:
                self._proxy.connectionLost(reason)
            else:
                self.session.connectionLost(reason)
        finally:
            self._lost()

    def handOver(self) -> IProtocol:
        """
        The session authenticated: L{ClientService} may have it.

        @return: L{ClientService}'s wrapper, which its endpoint must return.
        """
        self.handedOver = True
        return self._proxy


@implementer(IProtocolFactory)
class _GateFactory:
    """
    Builds a L{_Gate} around the session L{ClientService}'s factory wrapper
    builds, for one connection attempt.
    """

    def __init__(
        self, serviceFactory: IProtocolFactory, sessions: _SessionFactory, lost: Callable[[], None]
    ) -> None:
        """
        @param serviceFactory: L{ClientService}'s wrapper around C{sessions}.
        @param sessions: Builds the sessions.
        @param lost: Called after each connection ended.
        """
        self._serviceFactory = serviceFactory
        self._sessions = sessions
        self._lost = lost

    def doStart(self) -> None:
        """
        Nothing to do when an endpoint starts using this factory.
        """

    def doStop(self) -> None:
        """
        Nothing to do when an endpoint stops using this factory.
        """

    def buildProtocol(self, addr: IAddress) -> _Gate | None:
        """
        Build the gate.

        @param addr: The server's address.
        @return: The gate, or L{None} if L{ClientService} refused.
        """
        self._sessions.takeLastBuilt()
        proxy = self._serviceFactory.buildProtocol(addr)
        session = self._sessions.takeLastBuilt()
        if proxy is None or session is None:
            return None
        return _Gate(session, proxy, self._lost)


def _sessionOfGate(gate: _Gate) -> BridgeProtocol:
    return gate.session


@implementer(IStreamClientEndpoint)
class _SessionEndpoint:
    """
    The endpoint a L{ReconnectingClient} hands to L{ClientService}: connects
    through the real endpoint and fires only once the session has
    authenticated the server, so L{ClientService} counts a failed handshake
    as a failed connection attempt (and retries with its backoff).
    """

    _log = Logger()

    def __init__(
        self,
        endpoint: IStreamClientEndpoint,
        sessions: _SessionFactory,
        clock: IReactorTime,
        timeout: float | None,
        where: str,
        started: Callable[[_Session], None],
        lost: Callable[[], None],
        logger: Logger,
    ) -> None:
        """
        @param endpoint: The real endpoint.
        @param sessions: The factory L{ClientService} was given.
        @param clock: Schedules the timeout.
        @param timeout: Seconds an attempt may take.
        @param where: Names the server in messages.
        @param started: Called with each session once it authenticated,
            before L{ClientService} hands it out.
        @param lost: Called after each connection ended.
        @param logger: Where to log failed attempts.
        """
        self._endpoint = endpoint
        self._sessions = sessions
        self._clock = clock
        self._timeout = timeout
        self._where = where
        self._started = started
        self._lost = lost
        self._log = logger

    def __repr__(self) -> str:
        return f"<authenticated {self._where}>"

    def connect(self, protocolFactory: IProtocolFactory) -> Deferred[IProtocol]:
        """
        Connect and authenticate.

        @param protocolFactory: L{ClientService}'s factory wrapper.
        @return: A L{Deferred} firing with L{ClientService}'s protocol wrapper
            once the session authenticated.
        """
        attempt: _ConnectAttempt[_Gate] = _ConnectAttempt(
            self._endpoint,
            _GateFactory(protocolFactory, self._sessions, self._lost),
            _sessionOfGate,
            self._clock,
            self._timeout,
            self._where,
        )
        return attempt.start().addCallbacks(self._authenticated, self._failed)

    def _authenticated(self, gate: _Gate) -> IProtocol:
        self._started(gate.session)
        return gate.handOver()

    def _failed(self, failure: Failure) -> Failure:
        if not failure.check(CancelledError):
            self._log.warn(
                "Could not connect to {where}: {error}", where=self._where, error=failure.value
            )
        return failure


class _Receive(_Settling[object]):
    """
    One L{ReconnectingClient.recvBuffer} call: takes the next value from the
    oldest session that may still hold one, moving on to the next session
    when one ends, until a value comes, the timeout passes, or the client
    stops.

    @ivar result: Fires with the value.
    """

    def __init__(self, client: ReconnectingClient, timeout: float | None) -> None:
        """
        @param client: The client.
        @param timeout: Seconds to wait, or L{None}.
        """
        self._client = client
        self._timeout = timeout
        self._inner: Deferred[Any] | None = None
        self._timer: IDelayedCall | None = None
        self.result: Deferred[object] = Deferred(self._cancel)

    def start(self) -> Deferred[object]:
        """
        Start waiting.

        @return: L{result}.
        """
        if self._timeout is not None:
            self._timer = self._client.clock.callLater(self._timeout, self._timedOut)
        self._next()
        return self.result

    def _next(self) -> None:
        if self.result.called:
            return
        session = self._client._readableSession()
        if session is None:
            if not self._client.running:
                self._settle(
                    Failure(
                        ChannelClosedError(
                            "the reconnecting client is stopped and no value is left to read"
                        )
                    )
                )
                return
            waiting = self._client._whenSessionStarts()
            self._inner = waiting
            waiting.addCallbacks(self._sessionStarted, self._stopped)
            return
        receiving = session.recvBuffer()
        self._inner = receiving
        receiving.addCallbacks(
            self._received, self._sessionEnded, callbackArgs=(session,), errbackArgs=(session,)
        )

    def _sessionStarted(self, ignored: None) -> None:
        self._inner = None
        self._next()

    def _stopped(self, failure: Failure) -> None:
        self._inner = None
        if not self.result.called:
            self._next()

    def _received(self, value: object, session: _Session) -> None:
        self._inner = None
        session.taken += 1
        self._settle(value)

    def _sessionEnded(self, failure: Failure, session: _Session) -> None:
        self._inner = None
        if self.result.called:
            return
        self._client._doneReading(session)
        self._next()

    def _abandon(self) -> None:
        inner, self._inner = self._inner, None
        if inner is not None:
            inner.cancel()

    def _timedOut(self) -> None:
        self._timer = None
        self._settle(
            Failure(
                OperationTimedOut(
                    f"no value arrived from {self._client.where} within {self._timeout} seconds"
                )
            )
        )
        self._abandon()

    def _cancel(self, result: Deferred[object]) -> None:
        self._settle(Failure(CancelledError("recvBuffer was cancelled")))
        self._abandon()


class ReconnectingClient(Service):
    """
    A client that keeps one authenticated session to a server, reconnecting
    with an exponential backoff whenever the connection drops or cannot be
    made (a refused connection, a failed or timed-out handshake, a wrong
    key: all are retried).

    Start it with L{startService} (or attach it to an application with
    C{setServiceParent}); L{whenConnected} hands out the current session, or
    the next, and only ever one whose handshake has authenticated the
    server.

    B{Sending while disconnected.}  L{sendBuffer} sends at once when a session
    is up.  Otherwise (no session yet, between sessions, or the session is
    closing) the value is queued, up to C{maxPendingValues} values (1000 by
    default), and sent in order as soon as the next session authenticates;
    a full queue raises L{BufferDataError}.  The L{Deferred} L{sendBuffer}
    returns says what became of the value: it fires with L{None} once the
    value was handed to an authenticated session, and fails with
    L{ChannelClosedError} if the client stopped first (the value was never
    sent; a warning is logged with the count).  Queued values are encoded
    again when sent, so do not change them while they wait.

    B{Delivery is at most once across reconnects.}  A value handed to a
    session that then drops may have been lost in transit: that session ends
    with L{TruncationError<netstructer.errors.TruncationError>} (logged, and
    visible as the session's C{closeReason}), and the value is not sent again.
    Applications needing exactly-once delivery must acknowledge values
    themselves.

    B{Receiving.}  L{recvBuffer} takes values in order: first those left in
    sessions that ended, then those of the current session, waiting across
    reconnects.  Unread values of at most 16 ended sessions are kept; those
    of older sessions are dropped, with a warning giving their number.

    @ivar config: The configuration of every session.
    @ivar endpoint: The endpoint connected to.
    @ivar where: Names the server in messages.
    @ivar clock: Schedules retries and timeouts.
    """

    _log = Logger()

    def __init__(
        self,
        endpoint: EndpointLike,
        key: KeyLike,
        *,
        reactor: Any = None,
        clock: IReactorTime | None = None,
        suite: str = "noise",
        retryPolicy: Callable[[int], float] | None = None,
        timeout: float | None = 30,
        logger: Logger | None = None,
        **options: Any,
    ) -> None:
        """
        @param endpoint: Where to connect: see L{clientEndpoint}.
        @param key: The key, as for L{connect}.
        @param reactor: Connects; L{None} means the global reactor, imported
            only now.
        @param clock: Schedules retries, timeouts and the sessions' timers;
            the reactor by default.
        @param suite: C{"noise"} (the default) or C{"fernet"}.
        @param retryPolicy: Given the number of failed attempts in a row,
            returns the seconds to wait before the next; by default 0.1
            seconds, doubling up to a second (with jitter), so that a
            restarted server is reached again within about a second.
        @param timeout: Seconds each attempt (connecting and the handshake)
            may take.
        @param logger: Where to log; the class's logger by default.
        @param options: Any of L{CLIENT_OPTIONS}, as for L{connect}; here
            C{maxPendingValues} also bounds the values queued while
            disconnected.
        @raise TypeError: An option is unknown, or C{endpoint} has no accepted
            form.
        @raise ValueError: An option, the suite, the timeout or the endpoint
            description is invalid.
        @raise InvalidKey: The key is malformed.
        """
        _checkTimeout(timeout)
        reactor = _maybeGlobalReactor(reactor)
        self.clock: IReactorTime = reactor if clock is None else clock
        if logger is not None:
            self._log = logger
        self.config = _clientConfig(key, suite, options)
        # Values queued while disconnected are checked against every limit
        # but the size, which is checked here to raise BufferDataError.
        self._queueLimits = dataclasses.replace(self.config.limits, maxSize=MAX_VALUE_SIZE_LIMIT)
        self.endpoint = clientEndpoint(reactor, endpoint)
        self.where = _describe(endpoint)
        sessions = _SessionFactory(self.config, self.clock, logger)
        self._service = ClientService(
            _SessionEndpoint(
                self.endpoint,
                sessions,
                self.clock,
                timeout,
                self.where,
                self._sessionStarted,
                self._connectionEnded,
                self._log,
            ),
            sessions,
            retryPolicy=_DEFAULT_RETRY_POLICY if retryPolicy is None else retryPolicy,
            clock=self.clock,
        )
        self._current: _Session | None = None
        self._queue: deque[tuple[object, Deferred[None]]] = deque()
        self._reading: deque[_Session] = deque()
        self._sessionWaiters: list[Deferred[None]] = []
        self._lossWaiters: list[Deferred[None]] = []

    def __repr__(self) -> str:
        return f"<ReconnectingClient {self.where}>"

    @property
    def session(self) -> BridgeProtocol | None:
        """
        The current authenticated session, or L{None} between sessions.
        """
        session = self._current
        return session if session is not None and session.established else None

    @property
    def queued(self) -> int:
        """
        The number of values waiting for a session.
        """
        return len(self._queue)

    # Service.

    def startService(self) -> None:
        """
        Start connecting, and reconnecting whenever the session ends.
        """
        if self.running:
            return
        super().startService()
        self._service.startService()

    def stopService(self) -> Deferred[None]:
        """
        Stop: fail the values still queued (they were never sent) with
        L{ChannelClosedError}, close the current session cleanly (the server
        sees a normal close), and stop reconnecting.

        @return: A L{Deferred} firing once the session has closed and no
            attempt is running.
        """
        if not self.running:
            return defer.succeed(None)
        super().stopService()
        self._dropQueue()
        waiters, self._sessionWaiters = self._sessionWaiters, []
        for d in waiters:
            d.errback(ChannelClosedError("the reconnecting client stopped"))
        session = self.session
        if session is None:
            return self._service.stopService()
        session.close("the client is stopping")
        closed = session.whenClosed()
        closed.addCallback(lambda _: self._service.stopService())
        return closed

    def _dropQueue(self) -> None:
        queue, self._queue = self._queue, deque()
        if not queue:
            return
        self._log.warn(
            "{count} values queued for {where} were never sent: the client stopped "
            "before a session could take them",
            count=len(queue),
            where=self.where,
        )
        for _, d in queue:
            d.errback(
                ChannelClosedError(
                    f"the client stopped before this value could be sent to {self.where}; "
                    "it was never sent"
                )
            )

    # Sessions.

    def whenConnected(self, failAfterFailures: int | None = None) -> Deferred[BridgeProtocol]:
        """
        Wait for an authenticated session.

        @param failAfterFailures: Fail after this many connection attempts in
            a row have failed (L{None}: wait as long as the client runs).
        @return: A L{Deferred} firing with the current session, or the next
            one to authenticate.  It fails with the last attempt's error
            (L{ConnectionRefusedError
            <twisted.internet.error.ConnectionRefusedError>},
            L{AuthenticationError<netstructer.errors.AuthenticationError>},
            ...) after C{failAfterFailures} failed attempts, or with
            L{CancelledError} if the client stops (or was stopped).  Before
            the client first starts, it waits.
        """
        session = self.session
        if session is not None:
            return defer.succeed(session)
        waiting = self._service.whenConnected(failAfterFailures)
        return waiting.addCallback(self._checkConnected, failAfterFailures)

    def _checkConnected(
        self, protocol: IProtocol, failAfterFailures: int | None
    ) -> BridgeProtocol | Deferred[BridgeProtocol]:
        session = cast(_Session, protocol)
        if session.established:
            return session
        # The session ended and ClientService has not been told yet (it is
        # told after the session's own connectionLost): ask again once it
        # has.
        lost: Deferred[None] = Deferred()
        self._lossWaiters.append(lost)
        return lost.addCallback(lambda _: self.whenConnected(failAfterFailures))

    def _sessionStarted(self, session: _Session) -> None:
        self._log.info("Connected to {where} ({peer})", where=self.where, peer=session.key)
        self._current = session
        self._reading.append(session)
        session.whenClosed().addCallback(self._sessionEnded, session)
        self._flush(session)
        waiters, self._sessionWaiters = self._sessionWaiters, []
        for d in waiters:
            d.callback(None)

    def _sessionEnded(self, ignored: None, session: _Session) -> None:
        if self._current is session:
            self._current = None
        reason = session.closeReason
        if reason is not None and not reason.check(ConnectionDone):
            self._log.warn(
                "The session with {where} ended: {error}; values sent just before may "
                "have been lost",
                where=self.where,
                error=reason.value,
            )
        if session.unread == 0 and session in self._reading:
            self._reading.remove(session)
        ended = [s for s in self._reading if s is not self._current]
        while len(ended) > _MAX_ENDED_UNREAD:
            dropped = ended.pop(0)
            self._reading.remove(dropped)
            self._log.warn(
                "Dropping {count} values received from {where} that were never read",
                count=dropped.unread,
                where=self.where,
            )

    def _connectionEnded(self) -> None:
        waiters, self._lossWaiters = self._lossWaiters, []
        for d in waiters:
            d.callback(None)

    # Sending.

    def sendBuffer(self, value: object) -> Deferred[None]:
        """
        Send a value now, or as soon as a session is up.

        @param value: A value of a type L{netstructer.values} supports.
        @return: A L{Deferred} firing with L{None} once the value was handed
            to an authenticated session (which does not mean the server got
            it: see the class docstring), or failing with
            L{ChannelClosedError} if the client stopped before any session
            could take it.  Cancelling it takes a still-queued value out of
            the queue.
        @raise EncodeError: The value cannot be encoded; nothing was queued.
        @raise BufferDataError: The encoded value is larger than the server
            (or, while disconnected, this side) accepts, or
            C{maxPendingValues} values already wait; nothing was queued.
        @raise ChannelClosedError: The client is not running.
        """
        if not self.running:
            raise ChannelClosedError(
                f"cannot send to {self.where}: the reconnecting client is not running"
            )
        session = self.session
        if session is not None and not self._queue:
            try:
                session.sendBuffer(value)
            except ChannelClosedError:
                pass  # The session is closing: queue the value for the next one.
            else:
                return defer.succeed(None)
        size = len(encode(value, limits=self._queueLimits))
        if size > self.config.limits.maxSize:
            raise BufferDataError(
                f"the value encodes to {size} bytes, more than the "
                f"{self.config.limits.maxSize} this side accepts; send it in smaller parts"
            )
        if len(self._queue) >= self.config.maxPendingValues:
            raise BufferDataError(
                f"{self.config.maxPendingValues} values already wait for a session with "
                f"{self.where}; wait for whenConnected() before sending more"
            )
        sent: Deferred[None] = Deferred(self._unqueue)
        self._queue.append((value, sent))
        return sent

    def _unqueue(self, sent: Deferred[None]) -> None:
        for i, (_, queued) in enumerate(self._queue):
            if queued is sent:
                del self._queue[i]
                return

    def _flush(self, session: _Session) -> None:
        queue = self._queue
        while queue and self._current is session:
            value, d = queue[0]
            try:
                session.sendBuffer(value)
            except ChannelClosedError:
                return
            except NetStructerError as e:
                queue.popleft()
                d.errback(e)
                continue
            queue.popleft()
            d.callback(None)

    # Receiving.

    def recvBuffer(self, timeout: float | None = None) -> Deferred[object]:
        """
        Receive the next value, in order, waiting across reconnects.

        @param timeout: Seconds to wait; L{None} waits as long as the client
            runs.
        @return: A L{Deferred} firing with the value.  It fails with
            L{OperationTimedOut} after C{timeout} seconds, or with
            L{ChannelClosedError} once the client has stopped and every value
            received before has been taken.  A timeout or a cancellation
            consumes nothing.
        """
        return _Receive(self, timeout).start()

    def _readableSession(self) -> _Session | None:
        return self._reading[0] if self._reading else None

    def _doneReading(self, session: _Session) -> None:
        if session in self._reading:
            self._reading.remove(session)

    def _whenSessionStarts(self) -> Deferred[None]:
        def cancel(d: Deferred[None]) -> None:
            if d in self._sessionWaiters:
                self._sessionWaiters.remove(d)

        d: Deferred[None] = Deferred(cancel)
        self._sessionWaiters.append(d)
        return d
