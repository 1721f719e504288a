# -*- test-case-name: tests.test_conformance_handshake -*-
"""
Tests for the conformance kit's cases of sections 3 and 4
(L{netstructer.conformance._handshake}): each case reports C{"fail"}
against a server that breaks the rule it checks, and C{"pass"} against the
same small server without the defect.

The server runs on a thread of the test process, serving one connection at
a time; its well-behaved form is a L{Channel} of the server role behind a
plain socket.
"""

from __future__ import annotations

import socket

import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from netstructer._crypto import NNpsk0Template
from netstructer.channel import HANDSHAKE_MAX_FRAME, Channel, Role, ValueReceived
from netstructer.conformance import Target, runCases
from netstructer.errors import NetStructerError
from netstructer.keys import asKeyring, generateKey
from tests._threadedserver import U32 as _U32
from tests._threadedserver import ThreadedServer


class _Server(ThreadedServer):
    """
    A small echo server on a thread, with one defect chosen by C{mode}:

      - C{"good"}: none;
      - C{"unbounded"}: a length prefix is not checked against the handshake
        frame limit, and the whole payload is awaited;
      - C{"descending"}: every hello is rejected with the suite IDs in
        descending order;
      - C{"reason3"}: every hello is rejected with reason 3;
      - C{"sameEphemeral"}: one ephemeral key serves every connection;
      - C{"noConfirm"}: no key confirmation: any record may come first,
        values are echoed and records that do not open are ignored.
    """

    connectionTimeout = 3.0
    dropped = (OSError, NetStructerError, ValueError)

    def __init__(self, key: bytes, mode: str) -> None:
        self.ephemeral = X25519PrivateKey.generate()
        super().__init__(key, mode)

    def _frame(self, connection: socket.socket, bound: int | None) -> bytes | None:
        header = self.read(connection, 4)
        if header is None:
            return None
        (length,) = _U32.unpack(header)
        if bound is not None and length > bound:
            return None
        return self.read(connection, length)

    def _send(self, connection: socket.socket, *payloads: bytes) -> None:
        for payload in payloads:
            connection.sendall(_U32.pack(len(payload)) + payload)

    def handle(self, connection: socket.socket) -> None:
        if self.mode in ("descending", "reason3"):
            if self._frame(connection, HANDSHAKE_MAX_FRAME) is not None:
                reply = (
                    b"\x01\x02\x02\x03\x03\x02\x01"
                    if self.mode == "descending"
                    else b"\x01\x03\x02\x03\x01\x02\x03"
                )
                self._send(connection, reply)
            return None
        if self.mode == "noConfirm":
            return self._noConfirm(connection)
        factory = (lambda: self.ephemeral) if self.mode == "sameEphemeral" else None
        channel = Channel(
            Role.SERVER, self.key, acceptSuites=["noise", "fernet"], ephemeralFactory=factory
        )
        while True:
            bound = None if self.mode == "unbounded" else channel.maxFrameSize
            payload = self._frame(connection, bound)
            if payload is None:
                return None
            try:
                event = channel.receiveFrame(payload)
            except NetStructerError:
                self._send(connection, *channel.framesToSend())
                return None
            extra = [channel.sendValue(event.value)] if isinstance(event, ValueReceived) else []
            self._send(connection, *channel.framesToSend(), *extra)

    def _noConfirm(self, connection: socket.socket) -> None:
        hello = self._frame(connection, HANDSHAKE_MAX_FRAME)
        if hello is None:
            return None
        psk = asKeyring(self.key).noisePSKs()[0]
        template = NNpsk0Template("AESGCM", psk, b"NetStructer" + hello[:6])
        responder = template.responder()
        responder.readMessage1(hello[6:])
        reply = responder.writeMessage2(_U32.pack(1000) + b"\x02")
        self._send(connection, b"\x00" + reply)
        send, receive = responder.split()
        while (frame := self._frame(connection, None)) is not None:
            try:
                plaintext = receive.decrypt(frame)
            except InvalidTag:
                continue
            if plaintext[:1] == b"\x01":
                self._send(connection, send.encrypt(plaintext))


@pytest.fixture
def key() -> bytes:
    """
    @return: A new key for the server and the kit.
    """
    return generateKey()


def _status(key: bytes, mode: str, number: str) -> tuple[str, str]:
    server = _Server(key, mode)
    try:
        target = Target("127.0.0.1", server.port, key, deadline=1, echo=True)
        (result,) = runCases(target, only=[number])
        return result.status, result.detail
    finally:
        server.stop()


# Each case: the defect that breaks its rule.
_BROKEN = [
    ("3.1", "unbounded"),
    ("4.3.8", "descending"),
    ("4.3.5", "reason3"),
    ("4.4.3", "reason3"),
    ("4.4.9", "sameEphemeral"),
    ("4.4.6", "noConfirm"),
    ("4.4.7", "noConfirm"),
    ("4.4.8", "noConfirm"),
]


@pytest.mark.parametrize(("number", "mode"), _BROKEN)
def test_brokenServerFails(key: bytes, number: str, mode: str) -> None:
    """
    A case fails against a server with the defect that breaks its rule.
    """
    status, detail = _status(key, mode, number)
    assert status == "fail", detail


@pytest.mark.parametrize("number", sorted({number for number, _ in _BROKEN}))
def test_goodServerPasses(key: bytes, number: str) -> None:
    """
    The same cases pass against the small server without a defect.
    """
    status, detail = _status(key, "good", number)
    assert status == "pass", detail
