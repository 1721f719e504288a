# -*- test-case-name: tests.test_conformance -*-
"""
The conformance kit's server cases: numbered checks of the MUSTs of
C{docs/protocol.rst} against a NetStructer server at a TCP address.

Each case opens its own connection with a deadline, plays a hand-crafted or
well-formed peer (the well-formed one built on L{netstructer.channel.Channel})
and returns a L{CaseResult}.  Add a case by writing a function taking a
L{Target} and decorating it with L{case}.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass

from netstructer.channel import (
    MAGIC,
    Channel,
    CloseCode,
    CloseReceived,
    HandshakeCompleted,
    Role,
)
from netstructer.errors import NetStructerError
from netstructer.keys import Keyring

__all__ = ["CASES", "CaseResult", "Target", "case", "runCases"]

_U32 = struct.Struct(">I")


@dataclass(frozen=True)
class Target:
    """
    The server under test.

    @ivar host: Its address.
    @ivar port: Its port.
    @ivar key: The key it accepts.
    @ivar deadline: Seconds each case may take.
    """

    host: str
    port: int
    key: bytes | str | Keyring
    deadline: float = 10.0


@dataclass(frozen=True)
class CaseResult:
    """
    @ivar number: The case's number.
    @ivar section: The section of the document whose MUST it checks.
    @ivar title: What it checks.
    @ivar status: C{"pass"}, C{"fail"} or C{"info"}.
    @ivar detail: What was observed.
    """

    number: str
    section: str
    title: str
    status: str
    detail: str


_CaseFunction = Callable[[Target], tuple[bool, str]]
CASES: list[tuple[str, str, str, _CaseFunction]] = []


def case(number: str, section: str, title: str) -> Callable[[_CaseFunction], _CaseFunction]:
    """
    Register a case.

    @param number: Its number, such as C{"4.3.1"}.
    @param section: The document's section.
    @param title: What it checks.
    """

    def register(function: _CaseFunction) -> _CaseFunction:
        CASES.append((number, section, title, function))
        return function

    return register


class _Peer:
    def __init__(self, target: Target) -> None:
        self.sock = socket.create_connection((target.host, target.port), timeout=target.deadline)

    def send(self, payload: bytes) -> None:
        self.sock.sendall(_U32.pack(len(payload)) + payload)

    def receive(self) -> bytes | None:
        header = self._exactly(4)
        if header is None:
            return None
        return self._exactly(_U32.unpack(header)[0])

    def _exactly(self, count: int) -> bytes | None:
        data = b""
        while len(data) < count:
            chunk = self.sock.recv(count - len(data))
            if not chunk:
                return None
            data += chunk
        return data

    def close(self) -> None:
        self.sock.close()


def _rejection(target: Target, hello: bytes, reason: int) -> tuple[bool, str]:
    peer = _Peer(target)
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

    (hello,) = Channel(Role.CLIENT, generateKey()).framesToSend()
    return _rejection(target, hello, 3)


@case("5.6.1", "5.6", "the close handshake: CLOSE answered by CLOSE, then the server ends")
def _closeHandshake(target: Target) -> tuple[bool, str]:
    # Written against the rule "each side closes the transport as soon as
    # the close handshake completes on its side".
    peer = _Peer(target)
    try:
        channel = Channel(Role.CLIENT, target.key)
        for frame in channel.framesToSend():
            peer.send(frame)
        reply = peer.receive()
        if reply is None or not isinstance(channel.receiveFrame(reply), HandshakeCompleted):
            return False, "the handshake did not complete"
        for frame in channel.framesToSend():
            peer.send(frame)
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


def runCases(target: Target) -> list[CaseResult]:
    """
    Run every case against C{target}.

    @return: The results, in case order.
    """
    results = []
    for number, section, title, function in CASES:
        try:
            passed, detail = function(target)
            status = "pass" if passed else "fail"
        except (OSError, NetStructerError) as e:
            status, detail = "fail", f"{type(e).__name__}: {e}"
        results.append(CaseResult(number, section, title, status, detail))
    return results
