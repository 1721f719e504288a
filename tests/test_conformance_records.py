# -*- test-case-name: tests.test_conformance_records -*-
"""
Tests for the conformance kit's cases of sections 5 and 6
(L{netstructer.conformance._records}, L{netstructer.conformance._values}):
each case reports C{"fail"} against a server that breaks the rule it
checks, and C{"pass"} against the same small server without the defect.

The server is a L{Channel} of the server role behind a plain socket, on a
thread of the test process, serving one connection at a time.
"""

from __future__ import annotations

import socket

import msgpack
import pytest

from netstructer.channel import (
    Channel,
    CloseReceived,
    PingReceived,
    RecordReceived,
    Role,
    ValueReceived,
    ValuesReceived,
)
from netstructer.conformance import Target, runCases
from netstructer.conformance._values import decodeByHand, encodeByHand, same
from netstructer.errors import NetStructerError
from netstructer.keys import generateKey
from tests._threadedserver import U32 as _U32
from tests._threadedserver import ThreadedServer


class _Server(ThreadedServer):
    """
    A small echo server on a thread, with one defect chosen by C{mode}:

      - C{"good"}: none;
      - C{"lenient"}: a record that breaks the protocol is ignored, and the
        connection stays open;
      - C{"chatty"}: a frame is sent before the connection is dropped after
        a failure;
      - C{"noPong"}: pings are not answered;
      - C{"reversed"}: the values of a VALUES record are echoed in reverse
        order;
      - C{"plainEncoder"}: echoes are encoded with plain msgpack, tuples and
        sets as lists, no markers;
      - C{"lingering"}: the connection stays open after the close handshake;
      - C{"noRelay"}: a relay record drops the connection.
    """

    def _send(self, connection: socket.socket, channel: Channel, extra: list[bytes]) -> None:
        frames = channel.framesToSend()
        for payload in frames + extra:
            connection.sendall(_U32.pack(len(payload)) + payload)

    def handle(self, connection: socket.socket) -> None:
        channel = Channel(Role.SERVER, self.key, acceptSuites=["noise", "fernet"])
        while True:
            header = self.read(connection, 4)
            if header is None:
                return
            (length,) = _U32.unpack(header)
            if length > channel.maxFrameSize and self.mode != "lenient":
                return self._failed(connection)
            payload = self.read(connection, length)
            if payload is None:
                return
            try:
                event = channel.receiveFrame(payload)
            except NetStructerError:
                # A failure: what the channel queued (a handshake rejection).
                if self.mode == "lenient":
                    # Go on reading, and ignore everything.
                    while self.read(connection, 1) is not None:
                        pass
                    return None
                self._send(connection, channel, [])
                return self._failed(connection)
            extra: list[bytes] = []
            if isinstance(event, RecordReceived) and self.mode == "noRelay":
                return None
            if isinstance(event, PingReceived):
                pongs = channel.framesToSend()
                self._send(connection, channel, [] if self.mode == "noPong" else pongs)
                continue
            if isinstance(event, ValueReceived):
                extra = [self._echo(channel, event.value)]
            elif isinstance(event, ValuesReceived):
                values = event.values[::-1] if self.mode == "reversed" else event.values
                extra = [self._echo(channel, value) for value in values]
            self._send(connection, channel, extra)
            if isinstance(event, CloseReceived):
                if self.mode == "lingering":
                    while self.read(connection, 1) is not None:
                        pass
                return None

    def _echo(self, channel: Channel, value: object) -> bytes:
        if self.mode == "plainEncoder":
            encoded = msgpack.packb(value, use_bin_type=True, default=_plain)
            return channel.sendEncoded(encoded)
        return channel.sendValue(value)

    def _failed(self, connection: socket.socket) -> None:
        if self.mode == "chatty":
            connection.sendall(_U32.pack(3) + b"bye")


def _plain(value: object) -> object:
    """
    What a plain msgpack encoder might make of the types it lacks.
    """
    if isinstance(value, (set, frozenset)):
        return list(value)
    return repr(value)


@pytest.fixture
def key() -> bytes:
    """
    @return: A new key for the server and the kit.
    """
    return generateKey()


def _status(key: bytes, mode: str, number: str, suite: str = "noise") -> tuple[str, str]:
    server = _Server(key, mode)
    try:
        target = Target("127.0.0.1", server.port, key, deadline=1.5, suite=suite, echo=True)
        (result,) = runCases(target, only=[number])
        return result.status, result.detail
    finally:
        server.stop()


# Each case: the defect that breaks its rule.
_BROKEN = [
    ("5.1.1", "lenient"),
    ("5.2.1", "lenient"),
    ("5.2.1", "chatty"),
    ("5.2.2", "lenient"),
    ("5.2.3", "chatty"),
    ("5.2.5", "lenient"),
    ("5.2.8", "chatty"),
    ("5.4.1", "noPong"),
    ("5.4.3", "lenient"),
    ("5.4.6", "chatty"),
    ("5.4.10", "lenient"),
    ("5.4.15", "chatty"),
    ("5.4.18", "noRelay"),
    ("5.6.1", "lingering"),
    ("5.6.2", "lingering"),
    ("5.7.1", "chatty"),
    ("5.8.1", "reversed"),
    ("5.8.2", "reversed"),
    ("5.8.5", "lenient"),
    ("5.8.12", "chatty"),
    ("6.1.10", "plainEncoder"),
    ("6.1.11", "plainEncoder"),
    ("6.2.1", "plainEncoder"),
    ("6.4.2", "lenient"),
    ("6.4.14", "chatty"),
    ("6.5.2", "lenient"),
]


@pytest.mark.parametrize(("number", "mode"), _BROKEN)
def test_caseFailsAgainstDefect(key: bytes, number: str, mode: str) -> None:
    """
    The case reports C{"fail"} against a server with the defect.
    """
    status, detail = _status(key, mode, number)
    assert status == "fail", detail


@pytest.mark.parametrize("number", sorted({number for number, _ in _BROKEN}))
def test_casePassesWithoutDefect(key: bytes, number: str) -> None:
    """
    The same case passes against the same server without a defect: its
    failure above comes from the defect.
    """
    status, detail = _status(key, "good", number)
    assert status == "pass", detail


def test_streamsInVersion2(key: bytes) -> None:
    """
    Case 5.4.19 passes against a server that fails a version 2 session
    carrying a streams record.
    """
    status, detail = _status(key, "good", "5.4.19")
    assert status == "pass", detail


@pytest.mark.parametrize("number", ["5.3.1", "5.3.3", "5.2.4"])
def test_fernetCaseFailsAgainstDefect(key: bytes, number: str) -> None:
    """
    The fernet cases fail against a server that ignores bad records, and
    pass against one that does not.
    """
    status, detail = _status(key, "lenient", number, suite="fernet")
    assert status == "fail", detail
    status, detail = _status(key, "good", number, suite="fernet")
    assert status == "pass", detail


def test_fernetCasesInfoUnderNoise(key: bytes) -> None:
    """
    The fernet suite's cases are C{"info"}, not C{"fail"}, in a noise run.
    """
    status, detail = _status(key, "good", "5.3.2")
    assert status == "info", detail


def test_echoCasesNeedEcho(key: bytes) -> None:
    """
    A case that needs an echo target is C{"info"} against another.
    """
    server = _Server(key, "good")
    try:
        (result,) = runCases(Target("127.0.0.1", server.port, key, deadline=1.5), only=["6.1.1"])
    finally:
        server.stop()
    assert result.status == "info", result.detail


@pytest.mark.parametrize(
    "value",
    [
        None,
        2**64,
        -(2**127),
        -(2**63) - 1,
        1.5,
        1 + 2j,
        "a",
        b"k",
        bytearray(b"k"),
        bytearray(),
        [1, (2, 3)],
        {1, 2},
        frozenset({(1,)}),
        {b"k": [set()]},
    ],
)
def test_handEncodingMatchesCodec(value: object) -> None:
    """
    The kit's own encoding by hand agrees with L{netstructer.values}, and
    its decoding gives the value back (the kit's checks are only as good as
    these).
    """
    from netstructer.values import decode, encode

    assert encodeByHand(value) == encode(value)
    assert same(decodeByHand(encode(value)), value)
    assert same(decode(encodeByHand(value)), value)
