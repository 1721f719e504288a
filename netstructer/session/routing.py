# -*- test-case-name: tests.test_capability -*-
"""
The routing of extension records to the capabilities attached to a
session (see L{netstructer.session.capability}).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from zope.interface import implementer

from netstructer.channel import EXTENSION_RECORD_RANGES
from netstructer.errors import RemoteProtocolError
from netstructer.session.capability import ICapability

__all__ = ["CapabilityRouter", "RecordHandler"]

RecordHandler = Callable[[int, bytes], None]
"""
A capability reduced to its records: called with a record's type byte and
its authenticated body (see L{CapabilityRouter.register}).
"""


@implementer(ICapability)
class _RecordsOnly:
    """
    A capability that only receives records: what
    L{CapabilityRouter.register} attaches for a plain handler.
    """

    def __init__(self, capability: str, handler: RecordHandler) -> None:
        self.capability = capability
        self._handler = handler

    def recordReceived(self, recordType: int, body: bytes) -> None:
        self._handler(recordType, body)

    def sessionOpened(self) -> None:
        pass

    def sessionWritable(self) -> None:
        pass

    def sessionClosing(self) -> None:
        pass

    def sessionClosed(self, reason: BaseException) -> None:
        pass

    def timeReached(self, now: float) -> None:
        pass


_OWNERS: dict[int, str] = {
    recordType: name for name, types in EXTENSION_RECORD_RANGES.items() for recordType in types
}
"""The capability that owns each extension record type."""


class CapabilityRouter:
    """
    The capabilities attached to one session, and the record types each
    owns.
    """

    __slots__ = ("_byName",)

    def __init__(self) -> None:
        # By name only: the record types' owners are the same for every
        # session (_OWNERS), and a server holds a router per connection.
        self._byName: dict[str, ICapability] = {}

    def add(self, capability: ICapability) -> None:
        """
        Route the record types of C{capability.capability} to it.

        @raise ValueError: No record types are assigned to that name, or a
            capability of that name is attached already.
        """
        name = capability.capability
        if name not in EXTENSION_RECORD_RANGES:
            raise ValueError(
                f"no record types are assigned to {name!r}; "
                f"known capabilities: {', '.join(sorted(EXTENSION_RECORD_RANGES))}"
            )
        if name in self._byName:
            raise ValueError(f"a handler for {name!r} records is already registered")
        self._byName[name] = capability

    def register(self, capability: str, handler: RecordHandler) -> None:
        """
        Route every record type of C{capability} to C{handler}, a capability
        that only receives records.

        @param capability: A key of L{EXTENSION_RECORD_RANGES}.
        @param handler: Called for each record of those types.
        @raise ValueError: The capability is unknown or already registered.
        """
        self.add(_RecordsOnly(capability, handler))

    def registered(self, capability: str) -> bool:
        """
        @return: Whether a capability of that name is attached.
        """
        return capability in self._byName

    def get(self, capability: str) -> ICapability | None:
        """
        @return: The capability of that name, if one is attached.
        """
        return self._byName.get(capability)

    def __iter__(self) -> Iterator[ICapability]:
        return iter(list(self._byName.values()))

    def __bool__(self) -> bool:
        return bool(self._byName)

    def route(self, recordType: int, body: bytes) -> None:
        """
        Hand a received extension record to its capability.

        @raise RemoteProtocolError: No capability on this side handles the
            record's type: the peer used a capability this side did not
            enable (or the capability refused the record).
        """
        owner = _OWNERS.get(recordType, "unknown")
        capability = self._byName.get(owner)
        if capability is None:
            raise RemoteProtocolError(
                f"the peer sent a {owner} record (type {recordType:#04x}), "
                "which this side has not enabled"
            )
        capability.recordReceived(recordType, body)
