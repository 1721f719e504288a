# -*- test-case-name: tests.test_server -*-
"""
L{Server}: a NetStructer server as a Twisted service.

A L{Server} is a L{MultiService} that owns a listening endpoint, the factory
of its connections (a L{BridgeServerFactory}) and their L{SessionRegistry}
(a child service), and hands each authenticated session to a handler (see
L{netstructer.handlers})::

    from netstructer.handlers import EchoHandler
    from netstructer.server import Server

    server = Server("tcp:5000:interface=127.0.0.1", key, EchoHandler())
    server.setServiceParent(application)      # or: yield server.listen()

The methods of the original package's server keep their meaning: L{count},
L{all}, L{get}, L{pop}, L{clear}, L{allFrom} and L{waitFor} ask the registry,
and L{listen_on} sets the handler.
"""

from __future__ import annotations

import dataclasses
import errno
import functools
import inspect
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal, overload

from twisted.application.service import MultiService
from twisted.internet import defer
from twisted.internet.endpoints import quoteStringArgument, serverFromString
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import (
    IAddress,
    IListeningPort,
    IReactorTime,
    IStreamServerEndpoint,
)
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from netstructer.channel import CloseCode, warmKeyring
from netstructer.errors import ClusterError, InvalidKey, KeyFileError, ServerInitializeError
from netstructer.handlers import checkHandler, isHandlerObject
from netstructer.keyreload import KeyReload, KeyReloader
from netstructer.keys import Keyring, StrPath, asKeyring, readKeyFile
from netstructer.protocol import BridgeConfig, BridgeProtocol, BridgeServerFactory
from netstructer.registry import ISessionListener, SessionRegistry
from netstructer.relay import DEFAULT_RELAY_QUEUE, IRelayBackend, IRelayPolicy, LocalRelayBackend
from netstructer.relayservice import RelayService
from netstructer.streaming.received import ReceivedStream
from netstructer.values import DEFAULT_LIMITS, Encoder, Limits

if TYPE_CHECKING:
    from netstructer.cluster import ClusterService, ClusterURL, RemoteSession, SessionDescriptor

__all__ = ["INTERNAL_ERROR_REASON", "Server", "endpointDescription"]

INTERNAL_ERROR_REASON = "internal server error"
"""The close reason a peer sees when the handler of its session fails."""

_CONFIG_OPTIONS = frozenset(f.name for f in dataclasses.fields(BridgeConfig)) - {"keyring"}
_REGISTRY_OPTIONS = frozenset({"maxSessions", "maxPerIP"})
_CLUSTER_OPTIONS = frozenset({"nodeName", "clusterKey", "clusterHeartbeat"})
_IN_USE = {errno.EADDRINUSE, getattr(errno, "WSAEADDRINUSE", errno.EADDRINUSE)}
_DENIED = {errno.EACCES, errno.EPERM, getattr(errno, "WSAEACCES", errno.EACCES)}


def _isNumber(text: str) -> bool:
    """
    @return: Whether C{text} is a non-negative decimal integer in ASCII.
    """
    return text.isascii() and text.isdigit()


def _checkPort(port: int) -> int:
    if not 0 <= port <= 65535:
        raise ServerInitializeError(
            f"port {port} is out of range: choose a port from 1 to 65535 (0 picks a free one)"
        )
    return port


def endpointDescription(endpoint: object) -> str | IStreamServerEndpoint:
    """
    Normalise the forms of endpoint a L{Server} accepts.

    @param endpoint: A L{serverFromString} description (C{"tcp:5000"},
        C{"ssl:443:privateKey=key.pem"}, C{"unix:/run/ns.sock"}); a port
        number, as an C{int} or a string of digits (C{"tcp:N"}); a C{(host,
        port)} tuple (TCP on that interface; an empty host means every
        interface, an IPv6 host may be bracketed); or an
        L{IStreamServerEndpoint} provider.
    @return: A description, or the endpoint itself.
    @raise ServerInitializeError: A port number is out of range.
    @raise TypeError: C{endpoint} is none of these forms.
    """
    if IStreamServerEndpoint.providedBy(endpoint):
        return endpoint
    if isinstance(endpoint, int) and not isinstance(endpoint, bool):
        return f"tcp:{_checkPort(endpoint)}"
    if isinstance(endpoint, str):
        if _isNumber(endpoint.strip()):
            return f"tcp:{_checkPort(int(endpoint))}"
        return endpoint
    if isinstance(endpoint, tuple) and len(endpoint) == 2:
        host, port = endpoint
        if isinstance(host, str) and isinstance(port, (int, str)) and not isinstance(port, bool):
            if isinstance(port, str) and not _isNumber(port.strip()):
                raise ServerInitializeError(f"port {port!r} is not a number")
            number = _checkPort(int(port))
            host = host.strip()
            if host.startswith("[") and host.endswith("]"):
                host = host[1:-1]
            if not host:
                return f"tcp:{number}"
            return f"tcp:{number}:interface={quoteStringArgument(host)}"
    raise TypeError(
        f"cannot listen on {endpoint!r}: give an endpoint description such as "
        "'tcp:5000:interface=127.0.0.1', a port number, a (host, port) tuple, or an "
        "IStreamServerEndpoint"
    )


def _initializeError(failure: Failure, where: str, option: str = "--port") -> Failure:
    """
    Explain why listening failed.

    @param failure: What the endpoint failed with.
    @param where: The endpoint, for the message.
    @param option: The option that chose the port, for the message.
    @return: A failure of L{ServerInitializeError} naming the cause (or the
        given failure, for cancellation).
    """
    error = failure.value
    if isinstance(error, ServerInitializeError | defer.CancelledError):
        return failure
    if isinstance(error, CannotListenError):
        code = getattr(error.socketError, "errno", None)
        port = error.port
        if code in _IN_USE:
            message = (
                f"port {port} is already in use: stop the other server or choose another {option}"
            )
        elif code in _DENIED:
            message = (
                f"permission denied to listen on port {port}: ports below 1024 need "
                f"privileges; choose another {option}"
            )
        else:
            message = (
                f"cannot listen on port {port} of {error.interface or 'every interface'}: "
                f"{error.socketError}"
            )
    else:
        message = f"cannot listen on {where}: {type(error).__name__}: {error}"
    initializeError = ServerInitializeError(message)
    initializeError.__cause__ = error
    return Failure(initializeError)


def _callableOrNone(method: object) -> Callable[..., object] | None:
    return method if callable(method) else None


class _HandlerWork:
    """
    The handler's work in flight: the Deferreds (and coroutines) its methods
    returned that have not fired yet.  A clean stop waits for them, a
    bounded time, so that what a handler does after a value or a stream
    arrived (writing a stream's meta beside it, say) is not cut short.
    """

    def __init__(self, log: Logger) -> None:
        self._pending: set[defer.Deferred[Any]] = set()
        self._waiters: list[defer.Deferred[None]] = []
        self._log = log

    def track(self, work: defer.Deferred[Any]) -> None:
        """
        Count C{work} in flight until it fires.
        """
        self._pending.add(work)
        work.addBoth(self._finished, work)

    def _finished(self, outcome: object, work: defer.Deferred[Any]) -> object:
        self._pending.discard(work)
        if not self._pending:
            waiters, self._waiters = self._waiters, []
            for waiter in waiters:
                waiter.callback(None)
        return outcome

    def settled(self, clock: IReactorTime, timeout: float) -> defer.Deferred[None]:
        """
        @return: A Deferred firing once no work is in flight, or after
            C{timeout} seconds (the unfinished work logged, and left to
            finish or not).
        """
        if not self._pending:
            return defer.succeed(None)
        waiter: defer.Deferred[None] = defer.Deferred()
        self._waiters.append(waiter)

        def expired() -> None:
            self._waiters.remove(waiter)
            self._log.warn(
                "Stopping with {count} handler calls unfinished after {timeout} seconds",
                count=len(self._pending),
                timeout=timeout,
            )
            waiter.callback(None)

        timer = clock.callLater(timeout, expired)
        return waiter.addCallback(lambda _: timer.cancel() if timer.active() else None)


@implementer(ISessionListener)
class _HandlerDispatcher:
    """
    Calls a server's handler: told of sessions by the registry, and of
    values by L{_HandlerProtocol}.

    @ivar handler: The handler, or L{None}.
    """

    def __init__(self, log: Logger) -> None:
        self._handler: object = None
        self._methods: dict[str, Callable[..., object] | None] = {}
        self._received: Callable[[BridgeProtocol, object], object] | None = None
        self._log = log
        self._failed: set[BridgeProtocol] = set()
        self.work = _HandlerWork(log)

    @property
    def handler(self) -> object:
        return self._handler

    @handler.setter
    def handler(self, handler: object) -> None:
        # Look the handler's methods up once, not for every value.
        self._handler = handler
        isObject = handler is not None and isHandlerObject(handler)
        self._methods = {
            name: _callableOrNone(getattr(handler, name, None)) if isObject else None
            for name in ("sessionOpened", "bufferReceived", "sessionClosed", "streamReceived")
        }
        self._received = self._methods["bufferReceived"]

    def _method(self, name: str) -> Callable[..., object] | None:
        return self._methods.get(name)

    def sessionOpened(self, session: BridgeProtocol) -> None:
        """
        Call the handler (or its C{sessionOpened}) with the new session.

        @param session: The session.
        """
        handler = self.handler
        if handler is None:
            return
        opened = self._method("sessionOpened") if isHandlerObject(handler) else handler
        if callable(opened):
            self._call(session, opened, session)

    def valueReceived(self, session: BridgeProtocol, value: object) -> None:
        """
        Give C{value} to the handler if it takes values (has
        C{bufferReceived}); otherwise queue it for the session's
        L{recvBuffer<BridgeProtocol.recvBuffer>}.  A value arriving after the
        handler failed on this session is dropped.
        """
        # Called for every value: the handler's method is called here
        # rather than through _call, one Python frame fewer.
        received = self._received
        if received is None:
            BridgeProtocol.bufferReceived(session, value)
            return
        if self._failed and session in self._failed:
            return
        try:
            result = received(session, value)
        except Exception:  # noqa: BLE001 (logged, and that session closed)
            self._handlerFailed(session, Failure())
            return
        if result is not None and isinstance(result, defer.Deferred):
            result.addErrback(lambda failure: self._handlerFailed(session, failure))
            self.work.track(result)

    def streamReceived(self, session: BridgeProtocol, meta: object, stream: ReceivedStream) -> None:
        """
        Give a stream the client offered to the handler's C{streamReceived};
        a handler object without one refuses it; without a handler object,
        it waits for the session's C{recvStream}.  The method may be a
        coroutine function.  A handler that raises, or whose Deferred (or
        coroutine) fails, has that stream (only) aborted.
        """
        method = self._method("streamReceived")
        if method is None:
            if self.handler is not None and isHandlerObject(self.handler):
                stream.refuse("this server's handler takes no streams")
            else:
                BridgeProtocol.streamReceived(session, meta, stream)
            return

        def failed(failure: Failure) -> None:
            self._log.failure(
                "stream handler failed for stream {streamID} from {peer}",
                failure,
                streamID=stream.streamID,
                peer=session.key,
            )
            stream.abort("the receiving application failed")

        try:
            result = method(session, meta, stream)
            if inspect.iscoroutine(result):
                result = defer.ensureDeferred(result)
        except Exception:  # noqa: BLE001 (logged, and that stream aborted)
            failed(Failure())
            return
        if isinstance(result, defer.Deferred):
            result.addErrback(failed)
            self.work.track(result)

    def sessionClosed(self, session: BridgeProtocol, reason: Failure) -> None:
        """
        Call the handler's C{sessionClosed}, logging its errors.

        @param session: The session.
        @param reason: Why it ended.
        """
        self._failed.discard(session)
        closed = self._method("sessionClosed")
        if closed is None:
            return

        def logFailure(failure: Failure) -> None:
            self._log.failure("handler failed for {peer}", failure, peer=session.key)

        self.work.track(defer.maybeDeferred(closed, session, reason).addErrback(logFailure))

    def _call(self, session: BridgeProtocol, method: Callable[..., object], *args: object) -> None:
        try:
            result = method(*args)
        except Exception:  # noqa: BLE001 (logged, and that session closed)
            self._handlerFailed(session, Failure())
            return
        if isinstance(result, defer.Deferred):
            result.addErrback(lambda failure: self._handlerFailed(session, failure))
            self.work.track(result)

    def _handlerFailed(self, session: BridgeProtocol, failure: Failure) -> None:
        self._log.failure("handler failed for {peer}", failure, peer=session.key)
        if session.closeReason is None:
            self._failed.add(session)
        session.close(INTERNAL_ERROR_REASON, CloseCode.INTERNAL_ERROR)


class _HandlerProtocol(BridgeProtocol):
    """
    A server-side L{BridgeProtocol} whose values go to the handler when it
    has C{bufferReceived}, and to the C{recvBuffer} queue otherwise.

    @ivar dispatcher: Calls the handler; set by the factory that built the
        protocol.  Without one, values are queued.
    """

    dispatcher: _HandlerDispatcher | None = None

    def _valueSink(self) -> Callable[[object], object]:
        """
        Straight to the dispatcher, one call fewer per value than through
        L{bufferReceived}.
        """
        dispatcher = self.dispatcher
        if dispatcher is None:
            return self.bufferReceived
        return functools.partial(dispatcher.valueReceived, self)

    def bufferReceived(self, value: object) -> None:
        """
        Give C{value} to the server's handler if it has C{bufferReceived};
        otherwise queue it for C{recvBuffer}.

        @param value: The decoded value.
        """
        dispatcher = self.dispatcher
        if dispatcher is None:
            super().bufferReceived(value)
        else:
            dispatcher.valueReceived(self, value)

    def streamReceived(self, meta: object, stream: ReceivedStream) -> None:
        """
        Give a stream to the server's handler if it has C{streamReceived}
        (see L{_HandlerDispatcher.streamReceived}).
        """
        dispatcher = self.dispatcher
        if dispatcher is None:
            super().streamReceived(meta, stream)
        else:
            dispatcher.streamReceived(self, meta, stream)


class _ServerFactory(BridgeServerFactory):
    """
    The factory of a L{Server}: builds L{_HandlerProtocol}s and reports each
    new connection to the registry, so that stopping can abort those still
    in their handshake.

    @ivar registry: The session registry.
    @ivar dispatcher: Calls the handler.
    """

    protocol = _HandlerProtocol

    def __init__(
        self,
        config: BridgeConfig,
        registry: SessionRegistry,
        dispatcher: _HandlerDispatcher,
        clock: IReactorTime,
        logger: Logger | None,
    ) -> None:
        super().__init__(config, registry, clock, logger)
        self.registry = registry
        self.dispatcher = dispatcher

    def buildProtocol(self, addr: IAddress) -> BridgeProtocol | None:  # type: ignore[override]
        """
        Build a protocol for a new connection, giving it the dispatcher (once,
        rather than looking it up for every value), or refuse the connection.

        @param addr: The peer's address.
        @return: A protocol, or L{None} to refuse the connection.
        """
        proto = super().buildProtocol(addr)
        if isinstance(proto, _HandlerProtocol):
            proto.dispatcher = self.dispatcher
        return proto


class Server(MultiService):
    """
    A NetStructer server: a listening endpoint, the factory of its
    connections, their L{SessionRegistry} (the child service L{registry}),
    and a handler for the sessions.

    Starting the service (L{startService}, or L{privilegedStartService}
    under C{twistd}) listens; stopping it (L{stopService}) stops listening
    first, then closes every session cleanly.

    @ivar registry: The sessions.
    @ivar relay: The relay between the sessions (L{RelayService
        <netstructer.relayservice.RelayService>}); it refuses every request
        unless relay was turned on.
    @ivar cluster: The node's L{ClusterService<netstructer.cluster.ClusterService>}
        when the server is a node of a cluster, else L{None}.
    @ivar metrics: The metrics (L{netstructer.metricsweb.ServerMetrics}), or
        L{None}.
    @ivar config: The configuration every connection shares.
    @ivar endpoint: The endpoint description, or endpoint, to listen on.
    @ivar port: The listening port once listening, else L{None}.
    @ivar _raiseSynchronously: If set before the service starts, a failure
        to listen that happens synchronously is raised from
        L{privilegedStartService} or L{startService} (as by
        L{twisted.application.internet.StreamServerEndpointService}) instead
        of being logged; C{twistd} then refuses to start.
    """

    _log = Logger()
    _raiseSynchronously = False

    def __init__(
        self,
        endpoint: object,
        key: bytes | str | Keyring | list[bytes | str] | None,
        handler: object = None,
        *,
        reactor: Any = None,
        logger: Logger | None = None,
        keyFile: StrPath | None = None,
        relay: bool = False,
        relayPolicy: IRelayPolicy | None = None,
        relayBackend: IRelayBackend | None = None,
        maxRelayQueue: int = DEFAULT_RELAY_QUEUE,
        metrics: str | int | None = None,
        metricsRegistry: Any = None,
        cluster: str | ClusterURL | ClusterService | None = None,
        **options: Any,
    ) -> None:
        """
        @param endpoint: Where to listen: see L{endpointDescription}.
        @param key: The server's key: a Fernet-format key, a list of them
            (every one is accepted), or a L{Keyring} (with the names of its
            keys); L{None} to read C{keyFile}.
        @param keyFile: The key file C{key} was read from (or is to be read
            from, if C{key} is L{None}): what L{reloadKeys} reads again.
        @param handler: What to do with each session (see
            L{netstructer.handlers}); L{None} leaves values for C{recvBuffer}.
        @param reactor: Listens and schedules timers; the global reactor by
            default.
        @param logger: Where the server, its registry and connections log.
        @param relay: Whether clients may relay values to each other (see
            L{netstructer.relay}); off by default: every request is refused.
        @param relayPolicy: Who may relay what (L{netstructer.relay.policy});
            L{None} lets every named session do everything.  It turns relay
            on.
        @param relayBackend: Where relayed values are routed: this server's
            sessions by default (L{LocalRelayBackend
            <netstructer.relay.LocalRelayBackend>}).  It turns relay on.
        @param maxRelayQueue: The bound of each recipient's relay queue.
        @param metrics: Where to serve Prometheus metrics and the health
            check (L{netstructer.metricsweb}): an endpoint description such
            as C{"tcp:9100:interface=127.0.0.1"}, or a port on 127.0.0.1;
            L{None} serves none.  It needs the C{metrics} extra.
        @param metricsRegistry: A C{prometheus_client.CollectorRegistry} to
            add this server's metrics to, for an application that serves
            its own; with C{metrics}, that registry is what is served.
        @param cluster: Join a cluster (L{netstructer.cluster}; relay, if on,
            routes through it): its Redis URL (options C{clusterKey}, C{nodeName},
            C{clusterHeartbeat}) or a L{ClusterService<netstructer.cluster.ClusterService>}.
        @param options: Fields of L{BridgeConfig} (C{shutdownGrace}, the
            grace period of every close and of L{stopService}, among them);
            the registry's limits C{maxSessions} and C{maxPerIP}; and
            C{maxBufferSize}, the largest encoded value accepted (it sets
            C{limits.maxSize}).
        @raise ServerInitializeError: The key (the message holds no key
            material), a port number, the metrics (without
            C{prometheus_client}) or a cluster's settings are not usable.
        @raise TypeError: An unknown option, or an endpoint of no accepted form.
        @raise ValueError: An option has a bad value.
        """
        super().__init__()
        registryOptions, clusterOptions = _serverOptions(options)
        self.config = BridgeConfig(keyring=_serverKeyring(key, keyFile), **options)
        self._keys = KeyReloader(self.config.keyring, keyFile)
        self.endpoint = endpointDescription(endpoint)
        self._reactor = reactor
        if logger is not None:
            self._log = logger
        self._logger = logger
        self.registry = SessionRegistry(reactor, logger=logger, **registryOptions)
        self.registry.setServiceParent(self)
        self.cluster = _joinCluster(self, cluster, clusterOptions, relayBackend)
        self.relay = _relayService(relay, relayPolicy, relayBackend, maxRelayQueue, self)
        self._dispatcher = _HandlerDispatcher(self._log)
        for observer in (self.relay, self._dispatcher):
            self.registry.addObserver(observer)
        self._initListening()
        self.metrics = _serverMetrics(self, metrics, metricsRegistry)
        if handler is not None:
            self.setHandler(handler)

    def _initListening(self) -> None:
        self._factory: _ServerFactory | None = None
        self.port: IListeningPort | None = None
        self._listening: defer.Deferred[IListeningPort] | None = None
        self._listenWaiters: list[defer.Deferred[IListeningPort]] = []
        self._listenedOnStart = self._stopping = False

    def __repr__(self) -> str:
        return f"<Server {self.endpoint!r} {self.registry.count()} sessions>"

    @property
    def reactor(self) -> Any:
        """
        The reactor that listens and schedules timers: the one given, or
        else the global reactor.
        """
        if self._reactor is None:
            from twisted.internet import reactor

            self._reactor = reactor
        return self._reactor

    @property
    def factory(self) -> BridgeServerFactory:
        """
        The factory of this server's connections, made when first needed.
        """
        if self._factory is None:
            self._factory = _ServerFactory(
                self.config, self.registry, self._dispatcher, self.reactor, self._logger
            )
            if self.metrics is not None:
                self._factory.events = self.metrics.collector
        return self._factory

    @property
    def stopping(self) -> bool:
        """
        Whether the server is shutting down: from the start of
        L{stopService} until it is started again.
        """
        return self._stopping

    # Handlers.

    @property
    def handler(self) -> object:
        """
        The current handler, or L{None}.
        """
        return self._dispatcher.handler

    def setHandler(self, handler: object) -> None:
        """
        Hand sessions that open from now on to C{handler}.  Values arriving
        on open sessions go to the new handler too, if it has
        C{bufferReceived}.

        @param handler: A callable C{handler(session)}, or an object with any
            of C{sessionOpened(session)}, C{bufferReceived(session, value)}
            and C{sessionClosed(session, reason)} (see
            L{netstructer.handlers.IHandler}); L{None} for none.
        @raise TypeError: C{handler} is not a handler.
        """
        self._dispatcher.handler = None if handler is None else checkHandler(handler)

    def listen_on(self, handler: object) -> None:
        """
        Set the handler: the original package's name for L{setHandler}, kept
        for code written against it.

        @param handler: See L{setHandler}.
        @raise TypeError: C{handler} is not a handler.
        """
        self.setHandler(handler)

    # The registry's answers.

    @overload
    def count(self, cluster: Literal[False] = False) -> int: ...
    @overload
    def count(self, cluster: Literal[True]) -> defer.Deferred[int]: ...
    def count(self, cluster: bool = False) -> int | defer.Deferred[int]:
        """
        @param cluster: Count every live node's sessions (this server must
            be a node of a cluster).
        @return: How many sessions are registered; with C{cluster}, a
            Deferred (see L{ClusterService.count
            <netstructer.cluster.ClusterService.count>}).
        @raise ClusterError: C{cluster} is set, and this server is not a node.
        """
        return _nodeOf(self).count() if cluster else self.registry.count()

    @overload
    def all(self, cluster: Literal[False] = False) -> list[BridgeProtocol]: ...
    @overload
    def all(self, cluster: Literal[True]) -> defer.Deferred[list[SessionDescriptor]]: ...
    def all(
        self, cluster: bool = False
    ) -> list[BridgeProtocol] | defer.Deferred[list[SessionDescriptor]]:
        """
        @param cluster: List every live node's sessions, as descriptors
            (name, address, node, opening time).
        @return: The registered sessions, oldest first; with C{cluster}, a
            Deferred (see L{ClusterService.all
            <netstructer.cluster.ClusterService.all>}).
        @raise ClusterError: C{cluster} is set, and this server is not a node.
        """
        return _nodeOf(self).all() if cluster else self.registry.all()

    @overload
    def get(self, target: str, cluster: Literal[False] = False) -> BridgeProtocol | None: ...
    @overload
    def get(
        self, target: str, cluster: Literal[True]
    ) -> defer.Deferred[BridgeProtocol | RemoteSession | None]: ...
    def get(
        self, target: str, cluster: bool = False
    ) -> BridgeProtocol | defer.Deferred[BridgeProtocol | RemoteSession | None] | None:
        """
        @param target: A key's name, a session key (C{"ip:port"}) or a bare
            IP address.
        @param cluster: Look in every live node: the newest match may be a
            L{RemoteSession<netstructer.cluster.RemoteSession>}, whose
            C{sendBuffer} sends through the cluster.
        @return: See L{SessionRegistry.get}; with C{cluster}, a Deferred
            (see L{ClusterService.get<netstructer.cluster.ClusterService.get>}).
        @raise ClusterError: C{cluster} is set, and this server is not a node.
        """
        return _nodeOf(self).get(target) if cluster else self.registry.get(target)

    def allFrom(self, target: str) -> list[BridgeProtocol]:
        """
        @param target: A bare IP address.
        @return: See L{SessionRegistry.allFrom}.
        """
        return self.registry.allFrom(target)

    def allNamed(self, name: str) -> list[BridgeProtocol]:
        """
        @param name: A key's name.
        @return: See L{SessionRegistry.allNamed}.
        """
        return self.registry.allNamed(name)

    def reloadKeys(self, keyring: Keyring | None = None) -> KeyReload:
        """
        Replace the keys the server accepts, without a restart: read the key
        file again (or take C{keyring}); connections made from now on use
        the new keys, and every session whose key (under its name) is no
        longer on them is closed with L{CloseCode.POLICY} and the reason
        C{"key revoked"}.  Other sessions are not touched.  C{twistd
        netstructer} calls this on C{SIGHUP}.

        @param keyring: The new keys, or L{None} to read the key file the
            server was started with.
        @return: What changed.
        @raise KeyFileError: The key file is missing, unsafe or malformed:
            the keys in force are kept, and the reason is logged.
        @raise ValueError: The server has no key file and no C{keyring} was
            given.
        """
        try:
            change = self._keys.reload(keyring)
        except KeyFileError as e:
            self._log.error(
                "Keeping the current keys: the key file cannot be loaded: {error}", error=e
            )
            raise
        self.config = dataclasses.replace(self.config, keyring=change.keyring)
        if self._factory is not None:
            self._factory.config = self.config
        warmKeyring(change.keyring)
        revoked = self.registry.revokeKeys(change.keyring)
        self._log.info(
            "Keys reloaded: {change}; {count} sessions closed as revoked",
            change=change.describe(),
            count=len(revoked),
        )
        return change

    def pop(self, target: str | BridgeProtocol) -> BridgeProtocol | None:
        """
        @param target: A session, key's name, session key or bare IP address.
        @return: See L{SessionRegistry.pop}.
        """
        return self.registry.pop(target)

    def clear(
        self, reason: str = "closed by the server", code: CloseCode = CloseCode.NORMAL
    ) -> defer.Deferred[None]:
        """
        @param reason: The reason the peers see.
        @param code: The close code the peers see.
        @return: See L{SessionRegistry.clear}.
        """
        return self.registry.clear(reason, code)

    def publish(self, topic: str, value: object) -> int:
        """
        Send a value to every session subscribed to C{topic}, with no sender
        name (subscribers' C{recvFrom} gives L{None} as the sender).  A
        subscriber whose queue is full misses it; that is logged.

        @return: How many subscribers it was queued for.
        @raise RelayRefused: Relay is not turned on.
        @raise EncodeError: The value cannot be encoded.
        """
        return self.relay.publish(topic, Encoder(self.config.limits).encode(value))

    def sendTo(self, name: str, value: object) -> None:
        """
        Send a value to the session named C{name}, with no sender name.  No
        such session, or a full queue, is logged.

        @raise RelayRefused: Relay is not turned on.
        @raise EncodeError: The value cannot be encoded.
        """
        self.relay.sendTo(name, Encoder(self.config.limits).encode(value))

    def waitFor(self, target: str, timeout: float | None = None) -> defer.Deferred[BridgeProtocol]:
        """
        @param target: A key's name, a session key or a bare IP address.
        @param timeout: Seconds to wait, or L{None}.
        @return: See L{SessionRegistry.waitFor}.
        """
        return self.registry.waitFor(target, timeout)

    # Listening.

    def listen(self) -> defer.Deferred[IListeningPort]:
        """
        Start serving: start the service (its registry) if it is not
        running yet, and listen.

        @return: A Deferred firing with the L{IListeningPort} (also in
            L{port}) once the port is bound, at once if it already is.  It
            fails with L{ServerInitializeError} naming the cause: the port is
            in use, permission was denied, or the endpoint description is
            bad; or with L{CancelledError
            <twisted.internet.defer.CancelledError>} if the server is
            stopped before the port is bound.
        """
        if not self.running:
            # Started by hand rather than by a parent service: the caller
            # hears of failures through the Deferred, so the start-up path
            # that logs them (_listenOnStart) is not taken.
            MultiService.startService(self)
            self._listenedOnStart = True
        if self.port is not None:
            return defer.succeed(self.port)
        d: defer.Deferred[IListeningPort] = defer.Deferred()
        self._listenWaiters.append(d)
        if self._listening is None:
            self._startListening()
        if self.metrics is None:
            return d
        metrics = self.metrics.listen()
        metrics.addErrback(
            _initializeError, f"the metrics endpoint {self.metrics.endpoint}", "--metrics"
        )
        return _bothListening(d, metrics)

    def _startListening(self) -> None:
        where = self.endpoint if isinstance(self.endpoint, str) else repr(self.endpoint)
        if isinstance(self.endpoint, str):
            try:
                endpoint = serverFromString(self.reactor, self.endpoint)
            except (ValueError, TypeError, KeyError, OSError, ImportError) as e:
                self._listened(
                    Failure(
                        ServerInitializeError(
                            f"bad endpoint description {self.endpoint!r}: {e}; "
                            "write it as, for example, 'tcp:5000:interface=127.0.0.1'"
                        )
                    )
                )
                return
        else:
            endpoint = self.endpoint
        listening: defer.Deferred[IListeningPort] = defer.maybeDeferred(
            endpoint.listen, self.factory
        )
        self._listening = listening
        listening.addErrback(_initializeError, where)
        listening.addBoth(self._listened)

    def _listened(self, result: IListeningPort | Failure) -> None:
        self._listening = None
        if isinstance(result, Failure):
            waiters, self._listenWaiters = self._listenWaiters, []
            for d in waiters:
                d.errback(result)
            return
        self.port = result
        self._log.info("NetStructer server listening on {address}", address=_describeHost(result))
        waiters, self._listenWaiters = self._listenWaiters, []
        for d in waiters:
            d.callback(result)

    def _listenOnStart(self) -> None:
        """
        Listen as the service starts: log a failure and stop the service
        (a later L{startService} in the same start, as C{twistd} makes after
        L{privilegedStartService}, does not try again; stop and start the
        service to retry), or raise it when L{_raiseSynchronously} is set and
        it happened at once.
        """
        self._listenedOnStart = True
        raisedNow: list[Failure] = []
        synchronous = True

        def failed(failure: Failure) -> None:
            if failure.check(defer.CancelledError):
                return
            if synchronous and self._raiseSynchronously:
                raisedNow.append(failure)
                return
            self._log.failure(
                "NetStructer server on {endpoint} could not start",
                failure,
                endpoint=self.endpoint,
            )
            self.stopService()
            self._listenedOnStart = True

        self.listen().addErrback(failed)
        synchronous = False
        self._raiseSynchronously = False
        if raisedNow:
            raisedNow[0].raiseException()

    def privilegedStartService(self) -> None:
        """
        Listen now, while privileges last (C{twistd} calls this before
        dropping them, so ports below 1024 work).
        """
        self._stopping = False
        MultiService.privilegedStartService(self)
        if not self._listenedOnStart:
            self._listenOnStart()

    def startService(self) -> None:
        """
        Start the registry, and listen unless L{privilegedStartService}
        already did.
        """
        self._stopping = False
        MultiService.startService(self)
        if not self._listenedOnStart:
            self._listenOnStart()

    def stopService(self) -> defer.Deferred[None]:
        """
        Stop listening, then stop the child services: the registry closes
        every session cleanly (see L{SessionRegistry.stopService}).

        The metrics listener, if any, stays up until every connection has
        ended, its C{/healthz} answering 503 from the start.

        @return: A Deferred firing once the port is closed, every connection
            ended and the handler's Deferreds fired (or the grace passed).
        """
        self.running = 0
        """Whether the service runs (Twisted's L{Service.running
        <twisted.application.service.Service.running>})."""
        self._stopping = True
        self._listenedOnStart = False
        if self._listening is not None:
            self._listening.cancel()
        port, self.port = self.port, None
        stopped: defer.Deferred[object] = defer.succeed(None)
        if port is not None:
            stopped = defer.maybeDeferred(port.stopListening)

            def stopListeningFailed(failure: Failure) -> None:
                self._log.failure(
                    "Could not stop listening on {endpoint}", failure, endpoint=self.endpoint
                )

            stopped.addErrback(stopListeningFailed)
        stopped.addCallback(lambda _: MultiService.stopService(self))
        grace = self.config.shutdownGrace
        stopped.addCallback(lambda _: self._dispatcher.work.settled(self.reactor, grace))
        if self.metrics is not None:
            metrics = self.metrics
            stopped.addCallback(lambda _: metrics.stop())
        return stopped.addCallback(lambda _: None)


def _serverMetrics(server: Server, endpoint: str | int | None, registry: Any) -> Any:
    """
    Make a server's metrics, if asked for (importing C{prometheus_client}
    only then).

    @return: A L{ServerMetrics<netstructer.metricsweb.ServerMetrics>}, or
        L{None}.
    @raise ServerInitializeError: C{prometheus_client} is not installed, or
        the endpoint is malformed.
    """
    if endpoint is None and registry is None:
        return None
    try:
        from netstructer.metricsweb import ServerMetrics, metricsEndpoint
    except ImportError as e:
        raise ServerInitializeError(
            f"metrics need prometheus_client ({e}): pip install 'netstructer[metrics]'"
        ) from e
    try:
        description = None if endpoint is None else metricsEndpoint(endpoint)
    except ValueError as e:
        raise ServerInitializeError(f"bad metrics endpoint: {e}") from e
    return ServerMetrics(server, description, registry)


def _bothListening(
    main: defer.Deferred[IListeningPort], metrics: defer.Deferred[Any]
) -> defer.Deferred[IListeningPort]:
    """
    @return: A Deferred firing with C{main}'s port once both have fired, or
        failing with the first failure (at once if both fired at once).
    """
    both = defer.DeferredList([main, metrics], consumeErrors=True)

    def done(outcomes: list[tuple[bool, Any]]) -> Any:
        for succeeded, result in outcomes:
            if not succeeded:
                return result
        return outcomes[0][1]

    return both.addCallback(done)


def _relayService(
    relay: bool,
    policy: IRelayPolicy | None,
    backend: IRelayBackend | None,
    maxQueued: int,
    server: Server,
) -> RelayService:
    """
    The relay of a L{Server}: on when asked for, or when a policy or a
    backend is given; then over this server's sessions (or its cluster's,
    if it is a node of one) unless a backend is given.
    """
    logger = server._logger
    if backend is None and (relay or policy is not None):
        cluster = server.cluster
        backend = LocalRelayBackend(logger=logger) if cluster is None else cluster.backend
    return RelayService(backend, policy, maxQueued=maxQueued, logger=logger)


def _nodeOf(server: Server) -> ClusterService:
    """
    @return: The cluster service of a server that is a node of a cluster.
    @raise ClusterError: It is not.
    """
    if server.cluster is None:
        raise ClusterError(
            "this server is not a node of a cluster: create it with cluster=URL "
            "(twistd netstructer --cluster URL) to ask the whole cluster"
        )
    return server.cluster


def _joinCluster(
    server: Server,
    cluster: str | ClusterURL | ClusterService | None,
    options: dict[str, Any],
    relayBackend: IRelayBackend | None,
) -> ClusterService | None:
    """
    Make a server a node of a cluster (L{netstructer.cluster}), if asked:
    the cluster's service observes its registry, and is its child after the
    registry (so that it stops first, and removes the node's entries from
    the directory at once).  Its relay, when turned on, routes through the
    cluster; the cluster does not turn relay on.  C{netstructer.cluster} is
    imported only here; Redis (txredisapi, the C{cluster} extra) only when
    a URL is given.

    @param cluster: The cluster's Redis URL, or a L{ClusterService
        <netstructer.cluster.ClusterService>}.
    @param options: With a URL: C{clusterKey}, the cluster's keys or their
        key file (required); C{nodeName}, this node's name (the host's name
        by default); C{clusterHeartbeat}, seconds between heartbeats (1 by
        default).
    @return: The cluster's service, or L{None}.
    @raise ServerInitializeError: The cluster's settings are not usable.
    @raise TypeError: Settings are given without a cluster URL, or both a
        cluster and a relay backend.
    """
    settings = ", ".join(sorted(options))
    if cluster is None:
        if options:
            raise TypeError(f"{settings} need cluster= (the cluster's URL)")
        return None
    if relayBackend is not None:
        raise TypeError("give the server a cluster or a relay backend, not both")
    from netstructer.cluster import ClusterService

    if isinstance(cluster, ClusterService):
        if options:
            raise TypeError(f"{settings} are settings of a cluster URL, not of a ClusterService")
        service = cluster
    else:
        service = _clusterService(server, cluster, options)
    server.registry.addObserver(service)
    service.setServiceParent(server)
    return service


def _clusterService(server: Server, url: str | ClusterURL, options: dict[str, Any]) -> Any:
    """
    @return: A new L{ClusterService<netstructer.cluster.ClusterService>}
        for C{server}, to C{url}.
    @raise ServerInitializeError: The settings are not usable.
    """
    import socket

    from netstructer.cluster import DEFAULT_HEARTBEAT, ClusterService

    key = options.get("clusterKey")
    if key is None:
        raise ServerInitializeError(
            "a cluster needs its key (clusterKey=, twistd netstructer --cluster-key FILE): "
            "the same key file on every node, made by `netstructer keygen`"
        )
    try:
        return ClusterService(
            url,
            options.get("nodeName") or socket.gethostname(),
            key,
            reactor=server.reactor,
            heartbeat=options.get("clusterHeartbeat", DEFAULT_HEARTBEAT),
            limits=server.config.limits,
            logger=server._logger,
        )
    except (ClusterError, KeyFileError, InvalidKey) as e:
        raise ServerInitializeError(f"the cluster's settings are not usable: {e}") from e
    except ImportError as e:
        raise ServerInitializeError(
            f"a cluster needs txredisapi ({e}): pip install 'netstructer[cluster]'"
        ) from e


def _serverOptions(options: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """
    Take the registry's and the cluster's options out of a L{Server}'s, and
    turn C{maxBufferSize} into C{limits}: what is left are L{BridgeConfig}'s.

    @param options: The options, changed in place.
    @return: The registry's options, and the cluster's.
    @raise TypeError: An option is unknown.
    """
    known = _CONFIG_OPTIONS | _REGISTRY_OPTIONS | _CLUSTER_OPTIONS | {"maxBufferSize"}
    unknown = sorted(set(options) - known)
    if unknown:
        raise TypeError(f"Server() got unknown options: {', '.join(unknown)}")
    registryOptions = {name: options.pop(name) for name in _REGISTRY_OPTIONS & set(options)}
    clusterOptions = {name: options.pop(name) for name in _CLUSTER_OPTIONS & set(options)}
    maxBufferSize = options.pop("maxBufferSize", None)
    if maxBufferSize is not None:
        options["limits"] = _withMaxSize(options.get("limits", DEFAULT_LIMITS), maxBufferSize)
    return registryOptions, clusterOptions


def _serverKeyring(key: object, keyFile: StrPath | None) -> Keyring:
    """
    The keyring of a L{Server}: C{key}, or the keys of C{keyFile}.

    @raise ServerInitializeError: Neither is usable; the message holds no
        key material.
    """
    try:
        if key is None:
            if keyFile is None:
                raise ServerInitializeError(
                    "the server's key must be a Fernet-format key (bytes or text), a list"
                    " of them, or a Keyring, not NoneType (or give keyFile= to read one);"
                    " make one with `netstructer keygen`"
                )
            return readKeyFile(keyFile)
        return asKeyring(key)  # type: ignore[arg-type]
    except KeyFileError as e:
        raise ServerInitializeError(f"the server's key file is not usable: {e}") from e
    except InvalidKey as e:
        raise ServerInitializeError(f"the server's key is not usable: {e}") from e
    except TypeError:
        raise ServerInitializeError(
            f"the server's key must be a Fernet-format key (bytes or text), a list of them, "
            f"or a Keyring, not {type(key).__name__}; make one with `netstructer keygen`"
        ) from None


def _withMaxSize(limits: Limits, maxSize: int) -> Limits:
    """
    @return: C{limits} with C{maxSize} replaced.
    """
    return dataclasses.replace(limits, maxSize=maxSize)


def _describeHost(port: IListeningPort) -> str:
    """
    @return: The address C{port} listens on, for the log.
    """
    address = port.getHost()
    host = getattr(address, "host", None)
    number = getattr(address, "port", None)
    if isinstance(host, str) and number is not None:
        return f"[{host}]:{number}" if ":" in host else f"{host}:{number}"
    return str(address)
