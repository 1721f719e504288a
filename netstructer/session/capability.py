# -*- test-case-name: tests.test_capability -*-
"""
The capability seam: how a capability (the relay, streams, a cluster's
routing, ...) attaches to one session.

A capability is a sans-IO object owning a range of extension record types
(L{EXTENSION_RECORD_RANGES<netstructer.channel.EXTENSION_RECORD_RANGES>}).
The session core hands it:

    - every authenticated record of its types (L{ICapability.recordReceived});
    - the session's events: opened (L{ICapability.sessionOpened}), writable
      again (L{ICapability.sessionWritable}), closing
      (L{ICapability.sessionClosing}) and closed
      (L{ICapability.sessionClosed});
    - the time it asked to be woken at (L{ICapability.timeReached}).

It acts through its L{ISessionHost}: it sends records (in order with the
session's values, under the session's flow control: it sends while
L{ISessionHost.writable} and is told by L{ICapability.sessionWritable} when
to go on), asks to be woken (L{ISessionHost.wakeAt}) and fails the session
when the peer breaks its rules (L{ISessionHost.failSession}).

Each adapter (L{BridgeProtocol<netstructer.protocol.BridgeProtocol>}, the
blocking L{Link<netstructer.blocking.Link>}) exposes a capability through a
few thin methods that turn its results into Deferreds or blocking calls; no
rule of a capability is written in an adapter.
"""

from __future__ import annotations

from collections.abc import Sequence

from zope.interface import Attribute, Interface

__all__ = ["ICapability", "ISessionHost"]


class ISessionHost(Interface):
    """
    What a capability may use of the session it is attached to (the session
    core provides it).  Every method returns at once: nothing here waits.
    """

    role = Attribute("The session's L{Role<netstructer.channel.Role>}: CLIENT or SERVER.")
    peer = Attribute('A description of the peer for messages and logs, e.g. "127.0.0.1:50212".')
    peerVersion = Attribute(
        "The protocol version negotiated with the peer, or None before the handshake."
    )
    maxRecordBody = Attribute(
        "The largest record body the peer accepts (its announced value size limit), "
        "or None before the handshake."
    )
    writable = Attribute(
        "Whether the session's send queue is under its high-water mark: a capability "
        "sends bulk records only while this is true, and is told by sessionWritable() "
        "when it is true again."
    )

    def now() -> float:
        """
        @return: The current time, in seconds, on the session's clock.
        """

    def sendRecord(recordType: int, body: bytes) -> None:  # noqa: N805
        """
        Seal and queue one record of the capability's types, after every
        value and record sent before it.

        @param recordType: A type of the capability's range.
        @param body: The record body.
        @raise ChannelClosedError: The session is closing or closed.
        @raise PeerVersionError: The peer negotiated a version without this
            capability's records.
        """

    def sendRecordParts(recordType: int, parts: Sequence[bytes | memoryview]) -> None:  # noqa: N805
        """
        As L{sendRecord}, for a body given in parts (a header and a large
        payload, say), which the session seals without the caller joining
        them first.

        @param recordType: A type of the capability's range.
        @param parts: The body's parts, in order.
        @raise ChannelClosedError: As for L{sendRecord}.
        @raise PeerVersionError: As for L{sendRecord}.
        """

    def wakeAt(when: float | None) -> None:  # noqa: N805
        """
        Ask to be called at L{ICapability.timeReached} at (or soon after)
        C{when}, replacing any earlier request; L{None} cancels it.

        @param when: A time on the session's clock.
        """

    def failSession(error: Exception) -> None:  # noqa: N805
        """
        End the session because the peer broke the capability's rules (a
        L{RemoteProtocolError<netstructer.errors.RemoteProtocolError>}) or
        because of a local fault: the session closes with an error code and
        C{error} is what its users see.

        @param error: Why.
        """


class ICapability(Interface):
    """
    A capability attached to one session.
    """

    capability = Attribute(
        'The key of EXTENSION_RECORD_RANGES whose record types it owns, e.g. "relay".'
    )

    def recordReceived(recordType: int, body: bytes) -> None:  # noqa: N805
        """
        An authenticated record of the capability's types arrived.

        @param recordType: Its type.
        @param body: Its body (a C{bytes} or a C{memoryview} valid only
            during this call: copy what is kept).
        @raise RemoteProtocolError: The record breaks the capability's
            rules; the session fails.
        """

    def sessionOpened() -> None:
        """
        The handshake completed (or had completed when the capability was
        attached): records may be sent from now on.
        """

    def sessionWritable() -> None:
        """
        The session's send queue fell under its low-water mark after having
        reached its high-water mark: bulk sending may go on.
        """

    def sessionClosing() -> None:
        """
        The session's close began (on either side): no record may be sent
        after this call returns, though records may still arrive.
        """

    def sessionClosed(reason: BaseException) -> None:  # noqa: N805
        """
        The session ended; nothing more arrives or leaves.

        @param reason: Why it ended (a L{ConnectionDone
            <twisted.internet.error.ConnectionDone>}-like clean end, or the
            error).
        """

    def timeReached(now: float) -> None:  # noqa: N805
        """
        The time asked for with L{ISessionHost.wakeAt} came.

        @param now: The current time.
        """
