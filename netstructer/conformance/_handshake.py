# -*- test-case-name: tests.test_conformance -*-
"""
The conformance kit's cases for framing and the handshake (sections 3 and
4 of C{docs/protocol.rst}).
"""

from __future__ import annotations

from netstructer.channel import MAGIC, Channel, Role
from netstructer.conformance._core import RawPeer, Target, case


def _rejection(target: Target, hello: bytes, reason: int) -> tuple[bool, str]:
    peer = RawPeer(target)
    try:
        peer.send(hello)
        reply = peer.receive()
        if reply is None:
            return False, "the server closed without a rejection"
        if len(reply) < 4 or reply[0] != 1 or len(reply) != 4 + reply[3]:
            return False, f"not a well-formed rejection: {reply.hex()}"
        if reply[1] != reason:
            return False, f"rejected with reason {reply[1]}, not {reason}"
        ended = peer.receive() is None
        return ended, "rejected" + ("" if ended else ", but the connection stayed open")
    finally:
        peer.close()


@case("4.3.1", "4.3", "a hello without the magic is rejected with reason 4")
def _badMagic(target: Target) -> tuple[bool, str]:
    return _rejection(target, b"HTTP/1.1 200 OK", 4)


@case("4.3.2", "4.3", "a hello of version 0 is rejected with reason 1")
def _badVersion(target: Target) -> tuple[bool, str]:
    return _rejection(target, MAGIC + b"\x00\x01" + bytes(52), 1)


@case("4.3.3", "4.3", "a hello of an unknown suite is rejected with reason 2")
def _badSuite(target: Target) -> tuple[bool, str]:
    return _rejection(target, MAGIC + b"\x02\x09" + bytes(52), 2)


@case("4.3.4", "4.3", "a hello under another key is rejected with reason 3")
def _wrongKey(target: Target) -> tuple[bool, str]:
    from netstructer.keys import generateKey

    (hello,) = Channel(Role.CLIENT, generateKey(), suite=target.suite).framesToSend()
    return _rejection(target, hello, 3)
