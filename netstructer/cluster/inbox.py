# -*- test-case-name: tests.test_cluster_service -*-
"""
L{Inbox}: what a node does with the messages that arrive on its channels
in Redis.  Each is opened (L{EnvelopeOpener
<netstructer.cluster.envelope.EnvelopeOpener>}: authenticated under the
cluster's key, addressed to this node's incarnation, fresh, not replayed)
before any use; a message that does not open, or does not decode once
opened, is refused, counted and logged (L{Refusals}: the first of each
reason at once, the rest as a count at most once a minute), and never
used.  The rest is handed on: batches of values to the router, directory
events to the directory's copy.
"""

from __future__ import annotations

from collections.abc import Callable

from twisted.logger import Logger

from netstructer.cluster.envelope import BROADCAST, EnvelopeOpener, EnvelopeRefused, Kind, Opened
from netstructer.cluster.messages import DirectoryEvent, decodeEvent
from netstructer.errors import DecodeError
from netstructer.values import Decoder

__all__ = ["REFUSED_LOG_INTERVAL", "Inbox", "Refusals"]

REFUSED_LOG_INTERVAL = 60.0
"""Seconds between two log lines about refused messages of one reason."""


class Inbox:
    """
    Opens what arrives on a node's channels, refuses (and counts, and logs)
    what does not open, and hands the rest on.

    @ivar refusals: What was refused.
    """

    def __init__(
        self,
        opener: EnvelopeOpener,
        channel: str,
        events: str,
        linkReceived: Callable[[Opened], None],
        eventReceived: Callable[[DirectoryEvent, bytes], None],
        decoder: Decoder,
        clock: Callable[[], float],
        log: Logger,
    ) -> None:
        self.refusals = Refusals(clock, log)
        self._opener = opener
        self._channel = channel
        self._events = events
        self._linkReceived = linkReceived
        self._eventReceived = eventReceived
        self._decoder = decoder
        self._log = log

    def received(self, channel: str, data: bytes) -> None:
        """
        A message arrived on C{channel}.
        """
        if channel == self._events:
            if self._opener.own(data):
                return
            recipient = BROADCAST
        elif channel == self._channel:
            recipient = self._opener.incarnation
        else:
            return
        try:
            opened = self._opener.open(data, channel, recipient)
        except EnvelopeRefused as e:
            self.refusals.refused(e)
            return
        try:
            if opened.kind is Kind.LINK and channel == self._channel:
                self._linkReceived(opened)
            elif opened.kind is Kind.EVENT and channel == self._events:
                self._eventReceived(decodeEvent(self._decoder, opened.message), opened.sender)
            else:
                raise DecodeError("an envelope of this kind does not belong on this channel")
        except DecodeError as e:
            self.refusals.refused(EnvelopeRefused(str(e), "malformed"))
        except Exception:  # noqa: BLE001 (logged; the connection to Redis stays up)
            self._log.failure("Handling a message from {channel} failed", channel=channel)


class Refusals:
    """
    Counts the messages refused, by reason, and logs them: the first of
    each reason at once, the rest at most once a minute, as a count.

    @ivar counts: Refusals since the start, by reason.
    """

    def __init__(self, clock: Callable[[], float], log: Logger) -> None:
        self.counts: dict[str, int] = {}
        self._clock = clock
        self._log = log
        self._loggedAt: dict[str, float] = {}
        self._since: dict[str, int] = {}

    def refused(self, error: EnvelopeRefused) -> None:
        """
        One more message was refused.
        """
        reason = error.reason
        self.counts[reason] = self.counts.get(reason, 0) + 1
        now = self._clock()
        last = self._loggedAt.get(reason)
        if last is None or now - last >= REFUSED_LOG_INTERVAL:
            self._loggedAt[reason] = now
            self._log.warn(
                "Refused a message read from the cluster's Redis ({reason}): {error}; it was "
                "not used (later ones are counted, and logged at most once a minute)",
                reason=reason,
                error=str(error),
            )
        else:
            self._since[reason] = self._since.get(reason, 0) + 1

    def flush(self) -> None:
        """
        Log the counts a minute has passed for.
        """
        now = self._clock()
        for reason, count in list(self._since.items()):
            if now - self._loggedAt.get(reason, 0.0) >= REFUSED_LOG_INTERVAL:
                del self._since[reason]
                self._loggedAt[reason] = now
                self._log.warn(
                    "Refused {count} more messages read from the cluster's Redis ({reason})",
                    count=count,
                    reason=reason,
                )
