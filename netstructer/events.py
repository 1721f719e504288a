# -*- test-case-name: tests.test_metrics -*-
"""
L{IBridgeEvents}: what connections and the session registry tell an
observer beyond sessions opening and closing (see L{ISessionListener
<netstructer.registry.ISessionListener>}), for metrics.

Events are emitted at the few points where the thing already happens (most
of them already log a line there), never per value: a received record is
reported once with the number of values it held.  L{NO_EVENTS} is the
default observer of every connection and registry, and does nothing.
"""

from __future__ import annotations

from typing import Any, Protocol

from twisted.internet.interfaces import IReactorTime
from twisted.python.failure import Failure
from zope.interface import Interface, implementer

from netstructer.channel import CloseCode

__all__ = ["NO_EVENTS", "Connection", "IBridgeEvents", "NoEvents"]


class Connection(Protocol):
    """
    What an observer of events may read of the connection an event is about
    (a L{BridgeProtocol<netstructer.protocol.BridgeProtocol>} provides it):
    declared here, below the protocol, so that this module does not depend
    on it.
    """

    key: str
    """The session's registry key, C{"ip:port"}."""
    clock: IReactorTime
    """The clock of its timers."""
    transport: Any
    """Its transport."""

    @property
    def established(self) -> bool:
        """
        Whether its handshake completed and it has not ended.
        """

    @property
    def suite(self) -> str | None:
        """
        The suite its handshake settled on.
        """

    @property
    def openedAt(self) -> float | None:
        """
        When its handshake completed.
        """

    @property
    def connectedAt(self) -> float | None:
        """
        When it connected.
        """

    @property
    def valuesIn(self) -> int:
        """
        Values it received.
        """

    @property
    def valuesOut(self) -> int:
        """
        Values it sent.
        """

    @property
    def bytesIn(self) -> int:
        """
        Frame bytes it received.
        """

    @property
    def bytesOut(self) -> int:
        """
        Frame bytes of values it sent.
        """

    @property
    def closeCode(self) -> CloseCode | None:
        """
        The peer's close code, if it sent one.
        """

    @property
    def closeSent(self) -> CloseCode | None:
        """
        The close code this side sent, if it sent one.
        """

    @property
    def failedLocally(self) -> bool:
        """
        Whether this side ended it for a protocol error or a timeout.
        """


class IBridgeEvents(Interface):
    """
    Told of what happens to a server's connections, for metrics.  Every
    method must return quickly and must not raise.
    """

    def connectionRefused(reason: str) -> None:  # noqa: N805
        """
        The registry refused a new connection before its handshake.

        @param reason: C{"max_sessions"}, C{"max_per_ip"} or C{"stopping"}.
        """

    def connectionEnded(connection: Connection, reason: Failure) -> None:  # noqa: N805
        """
        An admitted connection ended, whether or not it had authenticated.
        Its C{established}, C{openedAt}, C{closeCode} and L{closeSent
        <netstructer.protocol.BridgeProtocol.closeSent>} say how far it got
        and how it closed.

        @param connection: The connection.
        @param reason: Why it ended (its C{closeReason}).
        """

    def valuesReceived(connection: Connection, count: int, size: int) -> None:  # noqa: N805
        """
        One record of values arrived and is being delivered.

        @param connection: The connection.
        @param count: How many values the record held.
        @param size: The encoded size of each value (the record's values
            share its bytes equally).
        """

    def receivingPaused(connection: Connection) -> None:  # noqa: N805
        """
        The connection stopped reading from its peer: its receive queue is
        full, or the application paused it.

        @param connection: The connection.
        """

    def receivingResumed(connection: Connection) -> None:  # noqa: N805
        """
        The connection reads from its peer again.

        @param connection: The connection.
        """

    def writingPaused(connection: Connection) -> None:  # noqa: N805
        """
        The transport's write buffer filled up: the peer reads slower than
        values are sent.

        @param connection: The connection.
        """

    def writingResumed(connection: Connection) -> None:  # noqa: N805
        """
        The transport's write buffer drained.

        @param connection: The connection.
        """


@implementer(IBridgeEvents)
class NoEvents:
    """
    The observer that ignores every event: the default.
    """

    def connectionRefused(self, reason: str) -> None:
        """
        Ignored.
        """

    def connectionEnded(self, connection: Connection, reason: Failure) -> None:
        """
        Ignored.
        """

    def valuesReceived(self, connection: Connection, count: int, size: int) -> None:
        """
        Ignored.
        """

    def receivingPaused(self, connection: Connection) -> None:
        """
        Ignored.
        """

    def receivingResumed(self, connection: Connection) -> None:
        """
        Ignored.
        """

    def writingPaused(self, connection: Connection) -> None:
        """
        Ignored.
        """

    def writingResumed(self, connection: Connection) -> None:
        """
        Ignored.
        """


NO_EVENTS: IBridgeEvents = NoEvents()
"""The shared do-nothing observer."""
