# -*- test-case-name: tests.test_records -*-
"""
Routing of extension records (protocol version 2) to the capabilities that
own them: L{RecordRouter}, the router of a session's capabilities
(L{CapabilityRouter<netstructer.session.routing.CapabilityRouter>}) taking
the channel's L{RecordReceived<netstructer.channel.RecordReceived>} events.

The session core (L{netstructer.session.core}) routes the records of the
capabilities attached to it (L{netstructer.session.capability}); this module
keeps the routing available to code that drives a
L{Channel<netstructer.channel.Channel>} itself.
"""

from __future__ import annotations

from netstructer.channel import RecordReceived
from netstructer.session.routing import CapabilityRouter, RecordHandler

__all__ = ["RecordHandler", "RecordRouter"]


class RecordRouter(CapabilityRouter):
    """
    Extension record types, by capability, to the handlers registered for
    them (see L{CapabilityRouter.register}).
    """

    def recordReceived(self, event: RecordReceived) -> None:
        """
        Hand a received extension record to its capability.

        @param event: The channel's event for the record.
        @raise RemoteProtocolError: No capability on this side handles the
            record's type.
        """
        self.route(event.recordType, event.body)
