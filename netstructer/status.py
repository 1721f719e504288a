# -*- test-case-name: tests.test_status -*-
"""
C{netstructer status}: a short human summary of a server's C{/metrics}.

L{metricsURL} reads where the metrics are, L{Snapshot} holds the figures of
one scrape, and L{summarize} writes them (with rates, given the previous
scrape).  Reading the page is done by L{fetch} with the standard library's
HTTP client and a timeout; parsing it needs C{prometheus_client} (the
C{metrics} extra), imported only here.
"""

from __future__ import annotations

import re
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from netstructer.errors import NetStructerError

__all__ = ["Snapshot", "StatusError", "fetch", "metricsURL", "parse", "summarize", "watch"]

_ENDPOINT = re.compile(r"^tcp6?:(?P<port>\d+)(?P<rest>(?::[^:]+)*)$")


class StatusError(NetStructerError):
    """
    The metrics could not be read: the server is not reachable there, or
    the page is not NetStructer's metrics.
    """


def metricsURL(target: str) -> str:
    """
    Read where a server's metrics are.

    @param target: A URL (C{http://host:9100/metrics}, C{/metrics} added if
        the path is empty), C{host:port}, a bare port (on 127.0.0.1), or the
        TCP endpoint description given to C{--metrics}
        (C{tcp:9100:interface=127.0.0.1}).
    @return: The URL of the metrics page.
    @raise ValueError: C{target} is none of those.
    """
    text = target.strip()
    if text.startswith(("http://", "https://")):
        if "/" not in text.partition("://")[2]:
            return f"{text}/metrics"
        return text
    if text.isdigit():
        return f"http://127.0.0.1:{int(text)}/metrics"
    match = _ENDPOINT.match(text)
    if match is not None:
        host = "127.0.0.1"
        for part in match.group("rest").split(":"):
            if part.startswith("interface="):
                host = part[len("interface=") :]
        if host in ("", "0.0.0.0"):  # noqa: S104 (listening on all: scrape locally)
            host = "127.0.0.1"
        elif host == "::":
            host = "::1"
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{match.group('port')}/metrics"
    host, sep, port = text.rpartition(":")
    if sep and port.isdigit() and host:
        return f"http://{host}:{port}/metrics"
    raise ValueError(
        f"cannot tell where the metrics are from {target!r}: give a URL"
        " (http://127.0.0.1:9100/metrics), host:port, a port, or the --metrics endpoint"
    )


def fetch(url: str, timeout: float = 5.0) -> str:
    """
    Read a metrics page.

    @param url: Its URL.
    @param timeout: Seconds to wait.
    @return: The page.
    @raise StatusError: It could not be read.
    """
    if not url.startswith(("http://", "https://")):
        raise StatusError(f"cannot read {url}: only http:// and https:// URLs are read")
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 (checked)
            page: str = response.read(1 << 22).decode("utf-8", "replace")
    except (urllib.error.URLError, OSError, ValueError) as e:
        raise StatusError(
            f"cannot read {url}: {e}; is the server running with --metrics there?"
        ) from e
    return page


@dataclass(frozen=True)
class Snapshot:
    """
    The figures of one scrape.

    @ivar at: When it was taken (C{time.monotonic()}).
    @ivar sessions: Authenticated sessions open.
    @ivar connections: Admitted connections (with those authenticating).
    @ivar maxSessions: The C{--max-sessions} limit.
    @ivar handshakes: Handshakes by outcome.
    @ivar valuesIn: Values received, ever.
    @ivar valuesOut: Values sent, ever.
    @ivar bytesIn: Bytes received, ever.
    @ivar bytesOut: Bytes sent, ever.
    @ivar refused: Records refused by reason.
    @ivar closes: Closes by C{"code/side"}.
    @ivar pausedSeconds: Seconds paused by backpressure, both directions.
    """

    at: float
    sessions: float
    connections: float
    maxSessions: float
    handshakes: dict[str, float]
    valuesIn: float
    valuesOut: float
    bytesIn: float
    bytesOut: float
    refused: dict[str, float]
    closes: dict[str, float]
    pausedSeconds: float


def parse(page: str, at: float) -> Snapshot:
    """
    Read the figures from a metrics page.

    @param page: The page, in the Prometheus text format.
    @param at: When it was read.
    @return: The figures.
    @raise StatusError: The page is not NetStructer's metrics, or
        C{prometheus_client} is missing.
    """
    try:
        from prometheus_client.parser import text_string_to_metric_families
    except ImportError as e:
        raise StatusError(
            f"reading metrics needs prometheus_client ({e}): pip install 'netstructer[metrics]'"
        ) from e
    sums: dict[str, float] = {}
    byLabel: dict[str, dict[str, float]] = {}
    families: set[str] = set()
    try:
        for family in text_string_to_metric_families(page):
            families.add(family.name)
            for sample in family.samples:
                sums[sample.name] = sums.get(sample.name, 0.0) + sample.value
                label = "/".join(sample.labels[name] for name in sorted(sample.labels))
                counts = byLabel.setdefault(sample.name, {})
                counts[label] = counts.get(label, 0.0) + sample.value
    except ValueError as e:
        raise StatusError(f"the page is not in the Prometheus text format: {e}") from e
    if "netstructer_handshakes" not in families:
        raise StatusError("the page has no netstructer_ metrics: is it a NetStructer server's?")
    return Snapshot(
        at=at,
        sessions=sums.get("netstructer_sessions_open", 0.0),
        connections=sums.get("netstructer_connections_open", 0.0),
        maxSessions=sums.get("netstructer_max_sessions", 0.0),
        handshakes=byLabel.get("netstructer_handshakes_total", {}),
        valuesIn=sums.get("netstructer_values_received_total", 0.0),
        valuesOut=sums.get("netstructer_values_sent_total", 0.0),
        bytesIn=sums.get("netstructer_bytes_received_total", 0.0),
        bytesOut=sums.get("netstructer_bytes_sent_total", 0.0),
        refused=byLabel.get("netstructer_records_refused_total", {}),
        closes=byLabel.get("netstructer_closes_total", {}),
        pausedSeconds=sums.get("netstructer_backpressure_paused_seconds_total", 0.0),
    )


def _counts(counts: dict[str, float]) -> str:
    shown = [f"{name} {value:.0f}" for name, value in sorted(counts.items()) if value]
    return ", ".join(shown) if shown else "none"


def summarize(now: Snapshot, before: Snapshot | None = None) -> list[str]:
    """
    Describe a scrape.

    @param now: The figures.
    @param before: An earlier scrape of the same server, for rates over
        the interval between them.
    @return: The lines of the summary.
    """
    failed = {name: value for name, value in now.handshakes.items() if name != "ok"}
    lines = [
        f"sessions     {now.sessions:.0f} open, {now.connections:.0f} connections"
        f" of {now.maxSessions:.0f} allowed",
        f"handshakes   {now.handshakes.get('ok', 0.0):.0f} ok; failed: {_counts(failed)}",
        f"values       {now.valuesIn:.0f} received, {now.valuesOut:.0f} sent"
        f" ({now.bytesIn:.0f} / {now.bytesOut:.0f} bytes)",
        f"refused      {_counts(now.refused)}",
        f"closes       {_counts(now.closes)}",
    ]
    if before is not None and now.at > before.at:
        seconds = now.at - before.at
        failures = sum(failed.values()) - sum(
            value for name, value in before.handshakes.items() if name != "ok"
        )
        lines.append(
            f"last {seconds:.1f} s  "
            f"{(now.valuesIn - before.valuesIn) / seconds:,.0f} values/s in, "
            f"{(now.valuesOut - before.valuesOut) / seconds:,.0f} values/s out, "
            f"{failures:.0f} failed handshakes, "
            f"{(now.pausedSeconds - before.pausedSeconds) / seconds:.0%} of the time paused"
        )
    return lines


def watch(
    url: str,
    write: Callable[[Iterable[str]], None],
    *,
    interval: float = 2.0,
    count: int | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """
    Scrape and summarize, every C{interval} seconds.

    @param url: The metrics page.
    @param write: Shows one summary (a terminal clears the screen first).
    @param interval: Seconds between scrapes.
    @param count: How many summaries to show; forever if L{None}.
    @param clock: The time.
    @param sleep: Waits.
    @raise StatusError: A scrape failed.
    """
    before: Snapshot | None = None
    shown = 0
    while count is None or shown < count:
        if shown:
            sleep(interval)
        now = parse(fetch(url), clock())
        write(summarize(now, before))
        before = now
        shown += 1
