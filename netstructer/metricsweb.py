# -*- test-case-name: tests.test_metrics -*-
"""
The metrics listener: C{GET /metrics} (the Prometheus text format, or
OpenMetrics when the scraper asks for it, written by C{prometheus_client})
and C{GET /healthz} (200 while the server listens and is not stopping, 503
once shutdown starts), on a C{twisted.web} site of its own, separate from
the server's NetStructer port.

Requests are bounded so that a slow or hostile HTTP client costs little
and never holds the reactor: request lines and headers are limited
(L{_BoundedChannel.totalHeadersSize}), a request with a body is refused
with 413, a connection idle for L{MetricsSite.idleTimeout} seconds is
closed and any connection is dropped L{MetricsSite.connectionDeadline}
seconds after it was made, and at most L{MetricsSite.maxConnections} are
open at once.  The metrics are generated in the reactor's thread, which
owns the sessions they read (C{prometheus_client.twisted.MetricsResource}
would generate them in a thread pool, racing the reactor).

Imported only when metrics are asked for: it imports C{twisted.web} and
C{prometheus_client}.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import CollectorRegistry
from twisted.application.service import Service
from twisted.internet import defer
from twisted.internet.endpoints import serverFromString
from twisted.internet.interfaces import IAddress, IDelayedCall, IListeningPort
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.http import HTTPChannel, Request
from twisted.web.resource import Resource
from twisted.web.server import Site

from netstructer.metrics import BridgeMetrics
from netstructer.registry import SessionRegistry


class ObservedServer(Protocol):
    """
    What L{ServerMetrics} reads of the server it observes (a
    L{Server<netstructer.server.Server>} provides it): declared here, below
    the server, so that this module does not depend on it.
    """

    @property
    def registry(self) -> SessionRegistry:
        """
        The server's session registry.
        """

    @property
    def stopping(self) -> bool:
        """
        Whether the server is shutting down.
        """

    @property
    def port(self) -> Any:
        """
        The listening port, or L{None} while not listening.
        """

    @property
    def reactor(self) -> Any:
        """
        The reactor the server runs on.
        """


__all__ = [
    "HealthResource",
    "MetricsResource",
    "MetricsService",
    "MetricsSite",
    "ServerMetrics",
    "metricsEndpoint",
]

HealthCheck = Callable[[], tuple[bool, str]]
"""Answers whether the server is healthy, and a one-line reason."""


class MetricsResource(Resource):
    """
    C{/metrics}: the collectors of a C{prometheus_client}
    C{CollectorRegistry}, in the format the scraper's C{Accept} header asks
    for.

    @cvar isLeaf: Set, so that C{twisted.web} hands it every path below
        C{/metrics} too.
    """

    isLeaf = True

    def __init__(self, registry: CollectorRegistry) -> None:
        """
        @param registry: What to expose.
        """
        super().__init__()
        self._registry = registry

    def render_GET(self, request: Request) -> bytes:
        """
        @return: The metrics.
        """
        accept = request.getHeader(b"accept")
        encoder, contentType = choose_encoder(accept.decode("latin-1") if accept else "")
        request.setHeader(b"Content-Type", contentType.encode("ascii"))
        return encoder(self._registry)

    render_HEAD = render_GET


class HealthResource(Resource):
    """
    C{/healthz}: 200 and C{"ok ..."} while the check passes, 503 and the
    reason otherwise; always one line.

    @cvar isLeaf: Set, so that C{twisted.web} hands it every path below
        C{/healthz} too.
    """

    isLeaf = True

    def __init__(self, check: HealthCheck) -> None:
        """
        @param check: The health check.
        """
        super().__init__()
        self._check = check

    def render_GET(self, request: Request) -> bytes:
        """
        @return: The one-line status.
        """
        healthy, reason = self._check()
        request.setResponseCode(200 if healthy else 503)
        request.setHeader(b"Content-Type", b"text/plain; charset=utf-8")
        request.setHeader(b"Cache-Control", b"no-store")
        return (reason.replace("\n", " ") + "\n").encode("utf-8")

    render_HEAD = render_GET


class _BoundedChannel(HTTPChannel):
    """
    An HTTP channel taking only small requests without a body, for a
    bounded time.
    """

    maxHeaders = 50
    totalHeadersSize = 8192
    abortTimeout = 5
    _deadline: IDelayedCall | None = None

    def connectionMade(self) -> None:
        """
        Start the connection's deadline.
        """
        super().connectionMade()
        site = getattr(self, "site", None)
        delay = getattr(site, "connectionDeadline", MetricsSite.connectionDeadline)
        self._deadline = self.callLater(delay, self._deadlinePassed)
        if isinstance(site, MetricsSite):
            site.connections.add(self)

    def _deadlinePassed(self) -> None:
        self._deadline = None
        self.forceAbortClient()

    def connectionLost(self, reason: Failure) -> None:  # type: ignore[override]
        """
        Cancel the deadline.
        """
        if self._deadline is not None and self._deadline.active():
            self._deadline.cancel()
        self._deadline = None
        site = getattr(self, "site", None)
        if isinstance(site, MetricsSite):
            site.connections.discard(self)
        super().connectionLost(reason)

    def allHeadersReceived(self) -> None:
        """
        Refuse a request with a body (the listener serves only C{GET}).
        """
        chunked = self._transferDecoder is not None and self.length is None
        if (chunked or (self.length or 0) > 0) and self.transport is not None:
            self.transport.write(
                b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            )
            self.loseConnection()
            return
        super().allHeadersReceived()


class MetricsSite(Site):
    """
    The site of the metrics listener: C{/metrics} and C{/healthz}, bounded
    requests, no access log.

    @cvar idleTimeout: Seconds a connection may stay silent.
    @cvar connectionDeadline: Seconds any connection may last.
    @cvar maxConnections: Connections open at once.
    @cvar noisy: Unset: the listener does not log each start and stop of
        its factory.
    @ivar connections: The connections open now.
    """

    protocol = _BoundedChannel  # type: ignore[assignment]
    idleTimeout = 10.0
    connectionDeadline = 30.0
    maxConnections = 32
    noisy = False

    def __init__(self, registry: CollectorRegistry, health: HealthCheck, reactor: Any) -> None:
        """
        @param registry: The metrics to expose.
        @param health: The health check.
        @param reactor: Schedules the timeouts.
        """
        root = Resource()
        root.putChild(b"metrics", MetricsResource(registry))
        root.putChild(b"healthz", HealthResource(health))
        super().__init__(root, timeout=self.idleTimeout, reactor=reactor)
        self.connections: set[HTTPChannel] = set()

    def buildProtocol(self, addr: IAddress) -> HTTPChannel | None:  # type: ignore[override]
        """
        Refuse a connection beyond L{maxConnections}.

        @param addr: The client's address.
        @return: The channel, or L{None} to close the connection.
        """
        if len(self.connections) >= self.maxConnections:
            return None
        channel: HTTPChannel | None = super().buildProtocol(addr)
        return channel

    def log(self, request: Request) -> None:
        """
        Log nothing per request: scrapes are frequent, and addresses stay
        out of the log.
        """


class MetricsService(Service):
    """
    Listens on an endpoint with a L{MetricsSite}.

    @ivar endpoint: The endpoint description.
    @ivar site: The site it serves.
    @ivar port: The listening port once listening, else L{None}.
    """

    _log = Logger()

    def __init__(
        self, endpoint: str, registry: CollectorRegistry, health: HealthCheck, reactor: Any
    ) -> None:
        """
        @param endpoint: A L{serverFromString} description, such as
            C{"tcp:9100:interface=127.0.0.1"}.
        @param registry: The metrics to expose.
        @param health: The health check.
        @param reactor: Listens and schedules the timeouts.
        """
        self.endpoint = endpoint
        self._reactor = reactor
        self.site = MetricsSite(registry, health, reactor)
        self.port: IListeningPort | None = None
        self._listening: defer.Deferred[IListeningPort] | None = None

    def listen(self) -> defer.Deferred[IListeningPort]:
        """
        Listen, if not listening yet.

        @return: A Deferred firing with the port once bound.
        """
        if self.port is not None:
            return defer.succeed(self.port)
        if self._listening is None:
            try:
                endpoint = serverFromString(self._reactor, self.endpoint)
            except (ValueError, TypeError, KeyError) as e:
                return defer.fail(
                    ValueError(
                        f"bad metrics endpoint description {self.endpoint!r}: {e}; write it"
                        " as, for example, 'tcp:9100:interface=127.0.0.1'"
                    )
                )
            listening = endpoint.listen(self.site)

            def listened(port: IListeningPort) -> IListeningPort:
                self.port = port
                self._listening = None
                self._log.info(
                    "Serving metrics on {address}", address=_describeAddress(port.getHost())
                )
                return port

            def failed(failure: Failure) -> Failure:
                self._listening = None
                return failure

            self._listening = listening.addCallbacks(listened, failed)
        d: defer.Deferred[IListeningPort] = defer.Deferred()
        self._listening.addBoth(_relay, d)
        return d

    def startService(self) -> None:
        """
        Listen, logging a failure.
        """
        Service.startService(self)

        def failed(failure: Failure) -> None:
            self._log.failure(
                "Could not serve metrics on {endpoint}", failure, endpoint=self.endpoint
            )

        self.listen().addErrback(failed)

    def stopService(self) -> defer.Deferred[None]:
        """
        Stop listening.

        @return: A Deferred firing once the port is closed.
        """
        Service.stopService(self)
        port, self.port = self.port, None
        if port is None:
            return defer.succeed(None)
        return defer.maybeDeferred(port.stopListening).addCallback(lambda _: None)


def _relay(result: object, d: defer.Deferred[IListeningPort]) -> object:
    """
    Fire C{d} with C{result}, passing it on.
    """
    if isinstance(result, Failure):
        d.errback(result)
        return None
    d.callback(result)  # type: ignore[arg-type]
    return result


def _describeAddress(address: IAddress) -> str:
    """
    @return: C{"host:port"}, or the address's string form.
    """
    host = getattr(address, "host", None)
    port = getattr(address, "port", None)
    if isinstance(host, str) and port is not None:
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return str(address)


def metricsEndpoint(description: str | int) -> str:
    """
    Read the C{--metrics} option.

    @param description: A server endpoint description
        (C{"tcp:9100:interface=127.0.0.1"}, C{"unix:/run/ns-metrics"}), or
        a bare port number, which means that port on 127.0.0.1 only.
    @return: The endpoint description.
    @raise ValueError: The description is empty, or the port is out of
        range.
    """
    text = str(description).strip()
    if not text:
        raise ValueError("the metrics endpoint is empty: give a port or an endpoint description")
    if text.isdigit():
        port = int(text)
        if not 0 <= port <= 65535:
            raise ValueError(f"metrics port {port} is out of range (0 to 65535)")
        return f"tcp:{port}:interface=127.0.0.1"
    return text


class ServerMetrics:
    """
    The metrics of one L{Server<netstructer.server.Server>}: its
    L{BridgeMetrics} collector, the C{CollectorRegistry} it is registered
    with, and, when an endpoint was given, the listener serving them with
    the server's health.

    @ivar collector: The collector.
    @ivar registry: Where it is registered.
    @ivar endpoint: The listener's endpoint description, or L{None} when
        the metrics are only collected (the application serves
        C{registry} itself).
    @ivar service: The listener once made, else L{None}.
    """

    def __init__(
        self, server: ObservedServer, endpoint: str | None, registry: CollectorRegistry | None
    ) -> None:
        """
        @param server: The server to observe; its registry and the
            connections its factory makes report to the collector.
        @param endpoint: Where to serve C{/metrics} and C{/healthz}, or
            L{None}.
        @param registry: The registry to add the collector to; a new one
            (with the process collector) by default.
        """
        self._server = server
        self.collector = BridgeMetrics(server.registry)
        self.collector.attach(server.registry)
        self.registry = self.collector.register(registry)
        self.endpoint = endpoint
        self.service: MetricsService | None = None

    def health(self) -> tuple[bool, str]:
        """
        The server's health, for C{/healthz}.

        @return: Healthy while the server listens and is not stopping, and
            a one-line reason (no addresses).
        """
        server = self._server
        if server.stopping:
            return False, "stopping: the server is shutting down"
        if server.port is None:
            return False, "not listening"
        return True, f"ok: listening, {server.registry.count()} sessions"

    def listen(self) -> defer.Deferred[IListeningPort | None]:
        """
        Serve the metrics, if an endpoint was given.

        @return: A Deferred firing with the listening port (L{None} without
            an endpoint).
        """
        if self.endpoint is None:
            return defer.succeed(None)
        if self.service is None:
            self.service = MetricsService(
                self.endpoint, self.registry, self.health, self._server.reactor
            )
        listening: defer.Deferred[IListeningPort | None] = self.service.listen()  # type: ignore[assignment]
        return listening

    def stop(self) -> defer.Deferred[None]:
        """
        Stop serving the metrics.

        @return: A Deferred firing once the listener is closed.
        """
        if self.service is None:
            return defer.succeed(None)
        return self.service.stopService()
