# -*- test-case-name: tests.test_session -*-
"""
The session core: what one authenticated NetStructer session is, whatever
carries its bytes.

Sans-IO, in the manner of h2's connection and h11: the core is given the
bytes that arrived and the current time, and hands back the bytes to write,
the events to deliver and the time it next needs to be woken.  It never
touches a socket, a reactor or a thread.  The Twisted protocol
(L{netstructer.protocol.BridgeProtocol}) and the blocking link
(L{netstructer.blocking.Link}) are its two adapters.

Capabilities (the relay, streams, ...) attach to a session through the seam
of L{netstructer.session.capability}: they receive their extension records
and the session's events, and send records under the session's flow
control.
"""

from __future__ import annotations

from netstructer.session.capability import ICapability, ISessionHost

__all__ = ["ICapability", "ISessionHost"]
