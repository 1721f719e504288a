# -*- test-case-name: tests.test_metrics -*-
"""
Prometheus metrics of a server: L{BridgeMetrics}, a C{prometheus_client}
collector fed by the events of a server's connections (L{IBridgeEvents
<netstructer.events.IBridgeEvents>}) and its session registry
(L{ISessionListener<netstructer.registry.ISessionListener>}).

Nothing here touches a socket or a reactor: the HTTP side (C{/metrics} and
C{/healthz}) is L{netstructer.metricsweb}.  This module imports
C{prometheus_client}, which is the optional C{metrics} extra
(C{pip install 'netstructer[metrics]'}); nothing imports it unless metrics
are asked for.

Counters are kept cheaply: the values and bytes each session moved are
counted by the session itself, and are read when Prometheus scrapes (and
added to the totals when the session ends); received records are reported
once per record, with how many values they held, for the value size
histogram.  Labels are the suite, an outcome or reason, a close code and a
side, never a peer's address or a key, so that the number of series stays
bounded.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable, Iterator, Sequence

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import REGISTRY, CollectorRegistry
from twisted.internet.error import ConnectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from netstructer.errors import (
    AuthenticationError,
    BufferDataError,
    DecodeError,
    HandshakeError,
    HandshakeTimeout,
    IntegrityError,
    SessionClosed,
    TLSHandshakeError,
)
from netstructer.events import Connection, IBridgeEvents
from netstructer.protocol import BridgeProtocol
from netstructer.registry import ISessionListener, SessionRegistry

__all__ = [
    "HANDSHAKE_BUCKETS",
    "VALUE_SIZE_BUCKETS",
    "BridgeMetrics",
    "classifyEnd",
    "classifyHandshakeFailure",
]

VALUE_SIZE_BUCKETS: tuple[float, ...] = tuple(float(4**n) for n in range(2, 13))
"""Upper bounds, in bytes, of the value size histogram: 16 B to 16 MiB."""

HANDSHAKE_BUCKETS: tuple[float, ...] = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)
"""Upper bounds, in seconds, of the handshake duration histogram."""


class _Histogram:
    """
    Cumulative-bucket counts that take a weight: one received record of
    C{count} values observes its per-value size C{count} times in one call.

    @ivar bounds: The buckets' upper bounds, ascending (C{+Inf} is implied).
    @ivar counts: Observations per bucket (not cumulative), the last one
        for C{+Inf}.
    @ivar total: The sum of the observed values.
    """

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = tuple(bounds)
        self.counts = [0] * (len(self.bounds) + 1)
        self.total = 0.0

    def observe(self, value: float, weight: int = 1) -> None:
        """
        Count C{value}, C{weight} times.

        @param value: The observation.
        @param weight: How many observations of it.
        """
        self.counts[bisect_left(self.bounds, value)] += weight
        self.total += value * weight

    def addTo(self, family: HistogramMetricFamily, labelValues: Sequence[str] = ()) -> None:
        """
        Add this histogram's samples to C{family}.

        @param family: A histogram family.
        @param labelValues: The values of its labels for these samples.
        """
        buckets: list[tuple[str, float]] = []
        running = 0
        for bound, count in zip(self.bounds, self.counts, strict=False):
            running += count
            buckets.append((_bound(bound), running))
        running += self.counts[-1]
        buckets.append(("+Inf", running))
        family.add_metric(list(labelValues), buckets, self.total)


def _bound(value: float) -> str:
    """
    @return: A bucket bound as Prometheus writes it (C{"16.0"}, C{"0.001"}).
    """
    return repr(float(value))


def classifyHandshakeFailure(reason: Failure) -> str:
    """
    Name why a connection ended before its handshake completed.

    @param reason: Why it ended.
    @return: C{"wrong_key"}, C{"timeout"}, C{"bad_version"},
        C{"bad_suite"}, C{"tls"}, C{"malformed"} (not a NetStructer hello,
        or a frame over the limit before authentication) or C{"lost"} (the
        peer went away without failing the handshake).
    """
    error = reason.value
    if isinstance(error, TLSHandshakeError):
        return "tls"
    if isinstance(error, AuthenticationError):
        return "wrong_key"
    if isinstance(error, HandshakeTimeout):
        return "timeout"
    if isinstance(error, HandshakeError):
        if isinstance(error.remoteValue, int) and isinstance(error.localValue, int):
            return "bad_version"
        if error.localValue is not None:
            return "bad_suite"
    if isinstance(error, HandshakeError | BufferDataError):
        return "malformed"
    return "lost"


def classifyEnd(connection: Connection, reason: Failure) -> tuple[str, str, str | None]:
    """
    Name how an established session ended.

    @param connection: The session.
    @param reason: Why it ended.
    @return: C{(code, side, refused)}: the close code's name in lower case
        (C{"normal"}, C{"going_away"}, C{"idle_timeout"}, ...) or C{"none"}
        if no close record was sent; which side ended it (C{"local"} or
        C{"peer"}); and, when this side refused a record, why
        (C{"too_big"}, C{"integrity"}: altered, replayed or reordered,
        C{"undecodable"}), else L{None}.
    """
    error = reason.value
    refused: str | None = None
    if isinstance(error, BufferDataError):
        refused = "too_big"
    elif isinstance(error, IntegrityError):
        refused = "integrity"
    elif isinstance(error, DecodeError):
        refused = "undecodable"
    if isinstance(error, SessionClosed) and isinstance(error, ConnectionDone):
        code = connection.closeCode
        return (code.name.lower() if code is not None else "none"), "peer", refused
    sent = connection.closeSent
    if sent is not None:
        return sent.name.lower(), "local", refused
    return "none", ("local" if connection.failedLocally else "peer"), refused


def _unsentBytes(connection: Connection) -> int:
    """
    @return: The bytes a session's transport holds that its socket has not
        taken yet (0 for transports that do not say, such as TLS).
    """
    transport = connection.transport
    buffered = getattr(transport, "dataBuffer", None)
    if not isinstance(buffered, bytes | bytearray):
        return 0
    unsent = len(buffered) - int(getattr(transport, "offset", 0))
    return unsent + int(getattr(transport, "_tempDataLen", 0))


@implementer(IBridgeEvents, ISessionListener)
class BridgeMetrics:
    """
    The metrics of one server, as a C{prometheus_client} collector.

    Attach it with L{attach} (a L{Server<netstructer.server.Server>} given
    C{metrics=} does), and register it with a C{prometheus_client}
    C{CollectorRegistry} (done by L{register}).

    @ivar sessions: The open sessions, with their suite.
    """

    _log = Logger()

    def __init__(self, sessions: SessionRegistry | None = None) -> None:
        """
        @param sessions: The session registry whose connection count and
            limit are reported, if any.
        """
        self._registry = sessions
        self.sessions: dict[Connection, str] = {}
        self._sessionsTotal: dict[str, int] = {}
        self._handshakes: dict[str, int] = {}
        self._refused: dict[str, int] = {}
        self._closes: dict[tuple[str, str], int] = {}
        # Values in, values out, bytes in, bytes out of ended sessions.
        self._moved: dict[str, list[int]] = {}
        self._pauses = {"receive": 0, "send": 0}
        self._pausedSeconds = {"receive": 0.0, "send": 0.0}
        self._pausedSince: dict[tuple[str, Connection], float] = {}
        self._valueSizes = _Histogram(VALUE_SIZE_BUCKETS)
        self._handshakeSeconds: dict[str, _Histogram] = {}

    def attach(self, sessions: SessionRegistry, factory: object = None) -> None:
        """
        Observe a server: its registry's sessions and refusals, and every
        connection its factory builds from now on.

        @param sessions: The server's session registry.
        @param factory: Its L{BridgeServerFactory
            <netstructer.protocol.BridgeServerFactory>}, if already made (a
            L{Server<netstructer.server.Server>} hands its metrics to the
            factory it makes).
        """
        self._registry = sessions
        sessions.events = self
        sessions.addObserver(self)
        if factory is not None:
            factory.events = self  # type: ignore[attr-defined]

    def register(self, registry: CollectorRegistry | None = None) -> CollectorRegistry:
        """
        Register this collector, and the process collector (RSS, CPU, open
        file descriptors) unless C{registry} is the default one, which
        already has it.

        @param registry: Where to register; a new one by default.
        @return: The registry.
        """
        if registry is None:
            registry = CollectorRegistry()
        registry.register(self)
        if registry is not REGISTRY:
            ProcessCollector(registry=registry)
        return registry

    # Events (ISessionListener, from the registry).

    def sessionOpened(self, session: BridgeProtocol) -> None:
        """
        A session authenticated: count it and its handshake's duration.

        @param session: The session.
        """
        suite = session.suite or "unknown"
        self.sessions[session] = suite
        self._sessionsTotal[suite] = self._sessionsTotal.get(suite, 0) + 1
        self._handshakes["ok"] = self._handshakes.get("ok", 0) + 1
        if session.openedAt is not None and session.connectedAt is not None:
            histogram = self._handshakeSeconds.get(suite)
            if histogram is None:
                histogram = self._handshakeSeconds[suite] = _Histogram(HANDSHAKE_BUCKETS)
            histogram.observe(session.openedAt - session.connectedAt)

    def sessionClosed(self, session: BridgeProtocol, reason: Failure) -> None:
        """
        Nothing: L{connectionEnded} has already counted the end.
        """

    # Events (IBridgeEvents, from the connections and the registry).

    def connectionRefused(self, reason: str) -> None:
        """
        Count a connection refused by the registry's limits or shutdown.

        @param reason: Why (see L{IBridgeEvents.connectionRefused}).
        """
        outcome = "stopping" if reason == "stopping" else "refused_limits"
        self._handshakes[outcome] = self._handshakes.get(outcome, 0) + 1

    def connectionEnded(self, connection: Connection, reason: Failure) -> None:
        """
        Count a connection's end: a failed handshake, or a session's close
        (its code and side, a refused record) and what it moved.

        @param connection: The connection.
        @param reason: Why it ended.
        """
        for direction in ("receive", "send"):
            self._resumed(direction, connection)
        suite = self.sessions.pop(connection, None)
        if suite is None:
            if connection.openedAt is None:
                outcome = classifyHandshakeFailure(reason)
                self._handshakes[outcome] = self._handshakes.get(outcome, 0) + 1
                return
            suite = connection.suite or "unknown"
        code, side, refused = classifyEnd(connection, reason)
        self._closes[code, side] = self._closes.get((code, side), 0) + 1
        if refused is not None:
            self._refused[refused] = self._refused.get(refused, 0) + 1
        moved = self._moved.get(suite)
        if moved is None:
            moved = self._moved[suite] = [0, 0, 0, 0]
        moved[0] += connection.valuesIn
        moved[1] += connection.valuesOut
        moved[2] += connection.bytesIn
        moved[3] += connection.bytesOut

    def valuesReceived(self, connection: Connection, count: int, size: int) -> None:
        """
        Count a received record's values in the value size histogram.

        @param connection: The session.
        @param count: Values in the record.
        @param size: Each one's encoded size.
        """
        self._valueSizes.observe(size, count)

    def receivingPaused(self, connection: Connection) -> None:
        """
        A session stopped reading: count a receive pause.
        """
        self._paused("receive", connection)

    def receivingResumed(self, connection: Connection) -> None:
        """
        A session reads again: count the time paused.
        """
        self._resumed("receive", connection)

    def writingPaused(self, connection: Connection) -> None:
        """
        A session's transport buffer filled: count a send pause.
        """
        self._paused("send", connection)

    def writingResumed(self, connection: Connection) -> None:
        """
        A session's transport buffer drained: count the time paused.
        """
        self._resumed("send", connection)

    def _paused(self, direction: str, connection: Connection) -> None:
        key = (direction, connection)
        if key not in self._pausedSince:
            self._pauses[direction] += 1
            self._pausedSince[key] = connection.clock.seconds()

    def _resumed(self, direction: str, connection: Connection) -> None:
        since = self._pausedSince.pop((direction, connection), None)
        if since is not None:
            self._pausedSeconds[direction] += max(connection.clock.seconds() - since, 0.0)

    # The collector.

    def describe(self) -> Iterable[Metric]:
        """
        Nothing: the registry then calls L{collect} to learn the names.
        """
        return ()

    def collect(self) -> Iterator[Metric]:
        """
        The metrics now (called by C{prometheus_client} on each scrape, in
        the reactor's thread).

        @return: The metric families.
        """
        openBySuite: dict[str, int] = {}
        moved = {suite: list(counts) for suite, counts in self._moved.items()}
        for session, suite in self.sessions.items():
            openBySuite[suite] = openBySuite.get(suite, 0) + 1
            counts = moved.setdefault(suite, [0, 0, 0, 0])
            counts[0] += session.valuesIn
            counts[1] += session.valuesOut
            counts[2] += session.bytesIn
            counts[3] += session.bytesOut
        suites = sorted(set(openBySuite) | set(self._sessionsTotal))

        gauge = GaugeMetricFamily(
            "netstructer_sessions_open", "Authenticated sessions open now.", labels=["suite"]
        )
        for suite in suites:
            gauge.add_metric([suite], openBySuite.get(suite, 0))
        yield gauge
        counter = CounterMetricFamily(
            "netstructer_sessions", "Sessions that authenticated.", labels=["suite"]
        )
        for suite in suites:
            counter.add_metric([suite], self._sessionsTotal.get(suite, 0))
        yield counter
        registry = self._registry
        if registry is not None:
            yield GaugeMetricFamily(
                "netstructer_connections_open",
                "Admitted connections, including those still in their handshake "
                "(what --max-sessions limits).",
                value=registry.connectionCount(),
            )
            yield GaugeMetricFamily(
                "netstructer_max_sessions",
                "The --max-sessions limit.",
                value=registry.maxSessions,
            )
        yield _counter(
            "netstructer_handshakes",
            "Handshakes by outcome (ok, wrong_key, timeout, bad_version, bad_suite, tls, "
            "malformed, lost, refused_limits, stopping).",
            "outcome",
            self._handshakes,
        )
        for index, (name, documentation) in enumerate(_MOVED):
            counter = CounterMetricFamily(name, documentation, labels=["suite"])
            for suite in sorted(moved):
                counter.add_metric([suite], moved[suite][index])
            yield counter
        yield from self._collectEnds()

    def _collectEnds(self) -> Iterator[Metric]:
        """
        The metrics of how sessions ended, paused, and what they hold.
        """
        unsent = sum(_unsentBytes(session) for session in self.sessions)
        yield _counter(
            "netstructer_records_refused",
            "Received records refused, ending their session, by reason "
            "(too_big, integrity: altered or replayed, undecodable).",
            "reason",
            self._refused,
        )
        counter = CounterMetricFamily(
            "netstructer_closes", "Sessions ended, by close code and side.", labels=["code", "side"]
        )
        for (code, side), count in sorted(self._closes.items()):
            counter.add_metric([code, side], count)
        yield counter
        yield _counter(
            "netstructer_backpressure_pauses",
            "Backpressure pauses: receive (the application is slow to take values) "
            "and send (the peer is slow to read).",
            "direction",
            self._pauses,
        )
        paused = dict(self._pausedSeconds)
        for direction, session in self._pausedSince:
            paused[direction] += max(
                session.clock.seconds() - self._pausedSince[direction, session], 0.0
            )
        yield _counter(
            "netstructer_backpressure_paused_seconds",
            "Seconds sessions spent paused by backpressure.",
            "direction",
            paused,
        )
        yield GaugeMetricFamily(
            "netstructer_send_queue_bytes",
            "Bytes written to sessions' transports that their sockets have not taken yet.",
            value=unsent,
        )
        family = HistogramMetricFamily(
            "netstructer_value_size_bytes",
            "Encoded size of received values (values batched in one record each count "
            "as the record's average).",
        )
        self._valueSizes.addTo(family)
        yield family
        family = HistogramMetricFamily(
            "netstructer_handshake_duration_seconds",
            "Time from connection to authenticated session.",
            labels=["suite"],
        )
        for suite, histogram in sorted(self._handshakeSeconds.items()):
            histogram.addTo(family, [suite])
        yield family


_MOVED = (
    ("netstructer_values_received", "Values received from peers."),
    ("netstructer_values_sent", "Values sent to peers."),
    ("netstructer_bytes_received", "Frame bytes received from peers."),
    ("netstructer_bytes_sent", "Frame bytes of values sent to peers."),
)


def _counter(
    name: str, documentation: str, label: str, counts: dict[str, int] | dict[str, float]
) -> Metric:
    """
    @return: A counter family with one sample per key of C{counts}.
    """
    family = CounterMetricFamily(name, documentation, labels=[label])
    for key, count in sorted(counts.items()):
        family.add_metric([key], count)
    return family
