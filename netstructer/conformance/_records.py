# -*- test-case-name: tests.test_conformance -*-
"""
The conformance kit's cases for records and the close handshake (section 5
of C{docs/protocol.rst}).
"""

from __future__ import annotations

from netstructer.channel import CloseCode, CloseReceived
from netstructer.conformance._core import RawPeer, Target, case


@case("5.6.1", "5.6", "the close handshake: CLOSE answered by CLOSE, then the server ends")
def _closeHandshake(target: Target) -> tuple[bool, str]:
    # Written against the rule "each side closes the transport as soon as
    # the close handshake completes on its side".
    peer = RawPeer(target)
    try:
        channel = peer.handshake(target)
        peer.send(channel.close(CloseCode.NORMAL, "conformance"))
        while True:
            incoming = peer.receive()
            if incoming is None:
                return False, "the server ended the connection without its CLOSE"
            if isinstance(channel.receiveFrame(incoming), CloseReceived):
                break
        if peer.receive() is not None:
            return False, "the server sent a frame after its CLOSE"
        return True, "CLOSE answered, then the server ended the connection"
    except TimeoutError:
        return False, "the server did not end the connection after its CLOSE reply"
    finally:
        peer.close()
