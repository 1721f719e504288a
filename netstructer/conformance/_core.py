# -*- test-case-name: tests.test_conformance -*-
"""
The conformance kit's machinery: the server under test (L{Target}), the
case registry (L{case}, L{CASES}), a raw framed peer (L{RawPeer}) and the
runner (L{runCases}).

Each case opens its own connection with a deadline, plays a hand-crafted or
well-formed peer (the well-formed one built on L{netstructer.channel.Channel})
and returns C{(passed, detail)}.  Add a case by writing a function taking a
L{Target} and decorating it with L{case}, in the module of its section.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from netstructer.channel import (
    Channel,
    HandshakeCompleted,
    Role,
)
from netstructer.errors import NetStructerError
from netstructer.keys import Keyring

__all__ = ["CASES", "CaseResult", "NotApplicable", "RawPeer", "Target", "case", "runCases"]

_U32 = struct.Struct(">I")


@dataclass(frozen=True)
class Target:
    """
    The server under test.

    @ivar host: Its address.
    @ivar port: Its port.
    @ivar key: The key it accepts.
    @ivar deadline: Seconds each case may take.
    @ivar suite: The suite the well-formed peer uses: C{"noise"} or
        C{"fernet"}.
    @ivar cipher: The AEAD of the C{"noise"} suite: C{"AESGCM"} or
        C{"ChaChaPoly"}.
    @ivar echo: Whether the server runs the echo handler (it sends back
        each value it receives); the cases that need it are C{"info"}
        otherwise.
    """

    host: str
    port: int
    key: bytes | str | Keyring
    deadline: float = 10.0
    suite: str = "noise"
    cipher: str = "AESGCM"
    echo: bool = False

    def channel(self, **options: object) -> Channel:
        """
        @param options: More options of L{Channel}.
        @return: A well-formed client channel for this target's suite.
        """
        return Channel(
            Role.CLIENT,
            self.key,
            suite=self.suite,
            cipher=self.cipher,
            **options,  # type: ignore[arg-type]
        )


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


class NotApplicable(Exception):
    """
    Raised by a case that cannot run against this target (for example, it
    needs the echo handler): the case is reported as C{"info"} with the
    message.
    """


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


class RawPeer:
    """
    A framed TCP connection to the target with the case's deadline on
    every call: it sends whatever it is given, and reads frames.

    @ivar sock: The socket.
    """

    def __init__(self, target: Target) -> None:
        self.sock = socket.create_connection((target.host, target.port), timeout=target.deadline)

    def send(self, payload: bytes) -> None:
        """
        Send one frame: C{payload} behind its length prefix.
        """
        self.sock.sendall(_U32.pack(len(payload)) + payload)

    def sendRaw(self, data: bytes) -> None:
        """
        Send C{data} as it is (a hand-made length prefix, garbage).
        """
        self.sock.sendall(data)

    def receive(self) -> bytes | None:
        """
        @return: The next frame's payload, or L{None} if the server ended
            the connection (a reset counts as an end).
        @raise TimeoutError: Nothing arrived within the deadline.
        """
        try:
            header = self._exactly(4)
        except ConnectionResetError:
            return None
        if header is None:
            return None
        try:
            return self._exactly(_U32.unpack(header)[0])
        except ConnectionResetError:
            return None

    def ended(self) -> bool:
        """
        Read until the server ends the connection.

        @return: Whether it ended it within the deadline, without sending
            anything more (frames it sends meanwhile make this false).
        """
        try:
            return self.receive() is None
        except TimeoutError:
            return False

    def handshake(self, target: Target, **options: object) -> Channel:
        """
        Complete a well-formed handshake with C{target} and send the
        client's key confirmation.

        @param options: More options of the client's L{Channel}.
        @return: The established client channel.
        @raise NetStructerError: The handshake failed.
        @raise ConnectionError: The server ended the connection.
        """
        channel = target.channel(**options)
        for frame in channel.framesToSend():
            self.send(frame)
        reply = self.receive()
        if reply is None:
            raise ConnectionError("the server ended the connection during the handshake")
        if not isinstance(channel.receiveFrame(reply), HandshakeCompleted):
            raise ConnectionError("the server's reply did not complete the handshake")
        for frame in channel.framesToSend():
            self.send(frame)
        return channel

    def _exactly(self, count: int) -> bytes | None:
        data = b""
        while len(data) < count:
            chunk = self.sock.recv(count - len(data))
            if not chunk:
                return None
            data += chunk
        return data

    def close(self) -> None:
        """
        Close the socket.
        """
        self.sock.close()


def _order(number: str) -> tuple[int, ...]:
    return tuple(int(part) for part in number.split("."))


def runCases(target: Target, only: Sequence[str] = ()) -> list[CaseResult]:
    """
    Run every case (or those C{only} names, or whose numbers start with
    one of them: C{"4.3"} runs 4.3.1, 4.3.2, ...) against C{target}.

    @return: The results, in case order.
    """
    results = []
    for number, section, title, function in sorted(CASES, key=lambda c: _order(c[0])):
        if only and not any(number == o or number.startswith(o + ".") for o in only):
            continue
        try:
            passed, detail = function(target)
            status = "pass" if passed else "fail"
        except NotApplicable as e:
            status, detail = "info", str(e)
        except (OSError, NetStructerError) as e:
            status, detail = "fail", f"{type(e).__name__}: {e}"
        results.append(CaseResult(number, section, title, status, detail))
    return results
