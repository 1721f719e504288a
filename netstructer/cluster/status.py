# -*- test-case-name: tests.test_cluster_status -*-
"""
What C{netstructer cluster status URL} shows: the nodes of a cluster (alive
or recently dead, their sessions, their last heartbeat) and its sessions,
read from its Redis without joining it (L{clusterStatus}), as text
(L{formatStatus}) or as JSON-ready data (L{statusData}).

No cluster key is needed: the directory's entries are in clear (values
never are).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from twisted.internet import defer
from twisted.python.failure import Failure
from zope.interface import implementer

from netstructer.cluster.config import ClusterURL, parseClusterURL
from netstructer.cluster.interfaces import (
    Heartbeat,
    IClusterTransport,
    ITransportListener,
    NodeSnapshot,
    NodeState,
)
from netstructer.cluster.messages import SessionDescriptor, decodeDescriptor
from netstructer.errors import ClusterUnavailable, DecodeError
from netstructer.values import Decoder

__all__ = ["ClusterStatus", "clusterStatus", "formatStatus", "statusData"]


@dataclass(frozen=True)
class ClusterStatus:
    """
    A cluster, as its Redis shows it.

    @ivar url: Where its Redis is (no password).
    @ivar prefix: Its keys' prefix.
    @ivar now: Redis's clock when it was read, in seconds.
    @ivar nodes: Its nodes, alive or dead for less than a minute, by name.
    @ivar sessions: The sessions of its live nodes, oldest first.
    @ivar malformed: How many session entries could not be read.
    """

    url: str
    prefix: str
    now: float
    nodes: list[NodeState]
    sessions: list[SessionDescriptor]
    malformed: int = 0


@implementer(ITransportListener)
class _Once:
    def __init__(self) -> None:
        self.ready: defer.Deferred[None] = defer.Deferred()

    def transportConnected(self) -> None:
        if not self.ready.called:
            self.ready.callback(None)

    def transportLost(self, reason: str) -> None:
        if not self.ready.called:
            self.ready.errback(ClusterUnavailable(f"cannot reach the cluster's Redis: {reason}"))

    def messageReceived(self, channel: str, data: bytes) -> None:
        pass


def clusterStatus(
    url: str | ClusterURL,
    *,
    reactor: Any = None,
    transport: IClusterTransport | None = None,
    environ: Mapping[str, str] | None = None,
) -> defer.Deferred[ClusterStatus]:
    """
    Read a cluster's status from its Redis.

    @param url: The cluster's URL (its password may come from the
        environment, see L{netstructer.cluster.config}).
    @param reactor: The reactor; the global one by default.
    @param transport: The connection to use; a L{RedisTransport
        <netstructer.cluster.redistransport.RedisTransport>} by default.
    @param environ: Where the password variable is read.
    @return: Fires with the status, or fails with L{ClusterUnavailable}
        if Redis cannot be reached (after one attempt, bounded by the URL's
        timeout).
    """
    parsed = parseClusterURL(url, environ)
    if reactor is None:
        from twisted.internet import reactor as globalReactor  # noqa: N812

        reactor = globalReactor
    if transport is None:
        from netstructer.cluster.redistransport import RedisTransport

        transport = RedisTransport(parsed, reactor, clientName="netstructer:status")
    chosen = transport
    once = _Once()
    chosen.start(once, [])
    decoder = Decoder()

    def read(_: object) -> defer.Deferred[ClusterStatus]:
        return chosen.nodes().addCallback(readSessions)

    def readSessions(heartbeat: Heartbeat) -> defer.Deferred[ClusterStatus]:
        alive = [node.name for node in heartbeat.nodes if node.alive]
        reads = [chosen.snapshot(name) for name in alive]

        def gathered(snapshots: list[NodeSnapshot | None]) -> ClusterStatus:
            sessions = []
            malformed = 0
            for snapshot in snapshots:
                if snapshot is None:
                    continue
                for sessionId, encoded in snapshot.sessions.items():
                    try:
                        sessions.append(
                            decodeDescriptor(decoder, snapshot.name, sessionId, encoded)
                        )
                    except DecodeError:
                        malformed += 1
            sessions.sort(key=lambda d: (d.openedAt, d.node, d.sessionId))
            return ClusterStatus(
                parsed.describe(),
                parsed.prefix,
                heartbeat.now,
                heartbeat.nodes,
                sessions,
                malformed,
            )

        return defer.gatherResults(reads, consumeErrors=True).addCallback(gathered)

    def unwrap(failure: Failure) -> Failure:
        if isinstance(failure.value, defer.FirstError):
            return failure.value.subFailure
        return failure

    def stop(result: object) -> defer.Deferred[object]:
        return chosen.stop().addBoth(lambda _: result)

    d = once.ready.addCallback(read).addErrback(unwrap)
    return d.addBoth(stop)


def _when(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(seconds))


def formatStatus(status: ClusterStatus, *, sessions: bool = True) -> str:
    """
    @param sessions: Whether to list the sessions too.
    @return: The status as text, for people.
    """
    alive = [node for node in status.nodes if node.alive]
    lines = [
        f"Cluster at {status.url} (prefix {status.prefix}): {len(alive)} of "
        f"{len(status.nodes)} nodes alive, {len(status.sessions)} sessions"
    ]
    rows: list[tuple[str, ...]] = [("NODE", "ALIVE", "SESSIONS", "LAST HEARTBEAT", "STARTED")]
    for node in status.nodes:
        beat = "-" if node.heartbeatAt is None else f"{status.now - node.heartbeatAt:.1f} s ago"
        if not node.alive:
            beat = f"expired {status.now - node.expiresAt:.1f} s ago"
        rows.append(
            (
                node.name,
                "yes" if node.alive else "no",
                str(node.sessions),
                beat,
                _when(node.startedAt),
            )
        )
    lines.extend(_table(rows))
    if sessions and status.sessions:
        lines.append("")
        rows = [("NAME", "ADDRESS", "NODE", "OPENED")]
        rows.extend(
            (d.name or "(anonymous)", d.key, d.node, _when(d.openedAt)) for d in status.sessions
        )
        lines.extend(_table(rows))
    if status.malformed:
        lines.append(f"({status.malformed} session entries could not be read)")
    return "\n".join(lines)


def _table(rows: list[tuple[str, ...]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]


def statusData(status: ClusterStatus) -> dict[str, Any]:
    """
    @return: The status as JSON-ready data.
    """
    return {
        "url": status.url,
        "prefix": status.prefix,
        "now": status.now,
        "nodes": [
            {
                "name": node.name,
                "alive": node.alive,
                "sessions": node.sessions,
                "heartbeatAt": node.heartbeatAt,
                "expiresAt": node.expiresAt,
                "startedAt": node.startedAt,
            }
            for node in status.nodes
        ],
        "sessions": [
            {
                "name": d.name,
                "host": d.host,
                "key": d.key,
                "node": d.node,
                "sessionId": d.sessionId,
                "openedAt": d.openedAt,
            }
            for d in status.sessions
        ],
        "malformed": status.malformed,
    }
