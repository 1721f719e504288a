# -*- test-case-name: tests.test_records -*-
"""
Routing of extension records (protocol version 2) to the capabilities that
own them.

The L{Channel<netstructer.channel.Channel>} seals and opens every record;
for a record of a type in
L{EXTENSION_RECORD_RANGES<netstructer.channel.EXTENSION_RECORD_RANGES>} it
hands the adapter a L{RecordReceived<netstructer.channel.RecordReceived>}.
The adapter (L{BridgeProtocol<netstructer.protocol.BridgeProtocol>} or the
blocking L{Link<netstructer.blocking.Link>}) passes it to its
L{RecordRouter}, which finds the capability that registered for the type.
Each capability (relay, streams) is a sans-IO state machine in a module of
its own; the router is the only place the adapters know about them.
"""

from __future__ import annotations

from collections.abc import Callable

from netstructer.channel import EXTENSION_RECORD_RANGES, RecordReceived
from netstructer.errors import RemoteProtocolError

__all__ = ["RecordHandler", "RecordRouter"]

RecordHandler = Callable[[int, bytes], None]
"""
What a capability registers: called with a record's type byte and its
authenticated body.  It may raise L{RemoteProtocolError} for a body that
breaks the capability's rules; the adapter then fails the session.
"""


class RecordRouter:
    """
    Extension record types, by capability, to the handlers registered for
    them.
    """

    def __init__(self) -> None:
        self._handlers: dict[int, RecordHandler] = {}
        self._names: dict[str, RecordHandler] = {}

    def register(self, capability: str, handler: RecordHandler) -> None:
        """
        Route every record type of C{capability} to C{handler}.

        @param capability: A key of L{EXTENSION_RECORD_RANGES}.
        @param handler: Called for each record of those types.
        @raise ValueError: The capability is unknown or already registered.
        """
        try:
            types = EXTENSION_RECORD_RANGES[capability]
        except KeyError:
            raise ValueError(
                f"no record types are assigned to {capability!r}; "
                f"known capabilities: {', '.join(sorted(EXTENSION_RECORD_RANGES))}"
            ) from None
        if capability in self._names:
            raise ValueError(f"a handler for {capability!r} records is already registered")
        self._names[capability] = handler
        for recordType in types:
            self._handlers[recordType] = handler

    def registered(self, capability: str) -> bool:
        """
        @return: Whether a handler for C{capability} is registered.
        """
        return capability in self._names

    def recordReceived(self, event: RecordReceived) -> None:
        """
        Hand a received extension record to its capability.

        @raise RemoteProtocolError: No capability on this side handles the
            record's type: the peer used a capability this side did not
            enable.
        """
        handler = self._handlers.get(event.recordType)
        if handler is None:
            owner = next(
                (
                    name
                    for name, types in EXTENSION_RECORD_RANGES.items()
                    if event.recordType in types
                ),
                "unknown",
            )
            raise RemoteProtocolError(
                f"the peer sent a {owner} record (type {event.recordType:#04x}), "
                "which this side has not enabled"
            )
        handler(event.recordType, event.body)
