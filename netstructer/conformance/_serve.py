# -*- test-case-name: tests.test_conformance_cli -*-
"""
The conformance kit's client-side cases (C{netstructer conformance --serve
PORT}): the kit listens, accepts one client connection, plays a well-formed
server built on L{netstructer.channel.Channel} with L{Role.SERVER}, and
checks the client's MUSTs of C{docs/protocol.rst} sections 4 to 6 on what
that one connection shows.

The cases share the connection, so they run as steps in order: each step
records the result of its case, and a case whose step was not reached
(an earlier one failed) is reported C{"info"}.
"""

from __future__ import annotations

import socket
import struct
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from netstructer.channel import (
    MAGIC,
    PROTOCOL_VERSION,
    Channel,
    CloseCode,
    CloseReceived,
    HandshakeCompleted,
    PingReceived,
    PongReceived,
    Role,
    ValueReceived,
    ValuesReceived,
)
from netstructer.conformance._core import CaseResult, readExactly
from netstructer.errors import NetStructerError
from netstructer.keys import Keyring

__all__ = ["SERVE_CASES", "serveCases"]

_U32 = struct.Struct(">I")
_HANDSHAKE_FRAME_LIMIT = 512
_HELLO_SIZES = {1: 58, 2: 58, 3: 126}
_CONFIRM_SIZES = {1: 17, 2: 17, 3: 140}
_SUITE_NAMES = {1: "noise (AESGCM)", 2: "noise (ChaChaPoly)", 3: "fernet"}
_KIT_CLOSE_CODE = CloseCode.GOING_AWAY
_KIT_CLOSE_REASON = "conformance kit closing"
_SETTLE = 0.5

SERVE_CASES: list[tuple[str, str, str]] = [
    (
        "4.2.1",
        "4.2",
        "the hello is well formed: magic, highest version, known suite, message length",
    ),
    ("4.2.2", "4.2", "the hello's suite message authenticates under the key with M in range"),
    ("4.4.1", "4.4", "the client's first record is CONFIRM, alone in its frame"),
    ("5.4.1", "5.4", "the values the client sends decode under the rules of section 6"),
    (
        "5.6.1",
        "5.6",
        "the client answers the kit's CLOSE with one CLOSE of the same code, empty reason",
    ),
    ("5.6.2", "5.6", "the client ends the transport once the close handshake completes"),
]
"""The client-side cases: number, section, title, in the order they run."""


class _Stop(Exception):
    """
    The connection cannot go on: the later steps are not reached.
    """


@dataclass
class _Connection:
    """
    The accepted client connection, every call bounded by the deadline.

    @ivar sock: Its socket (with the deadline as its timeout).
    """

    sock: socket.socket

    def send(self, payloads: Sequence[bytes]) -> None:
        """
        Send frames, each behind its length prefix, in one write.
        """
        self.sock.sendall(b"".join(_U32.pack(len(p)) + p for p in payloads))

    def receive(self, bound: int) -> bytes | None:
        """
        @param bound: The largest payload accepted.
        @return: The next frame's payload, or L{None} if the client ended
            the connection (a reset counts as an end).
        @raise TimeoutError: Nothing arrived within the deadline.
        @raise ValueError: The length prefix is over C{bound}.
        """
        try:
            header = self._exactly(4)
            if header is None:
                return None
            (length,) = _U32.unpack(header)
            if length > bound:
                raise ValueError(f"a length prefix of {length} bytes, over the bound of {bound}")
            return self._exactly(length)
        except ConnectionResetError:
            return None

    def _exactly(self, count: int) -> bytes | None:
        return readExactly(self.sock, count)


class _Run:
    """
    The steps of one client connection, each recording its case's result.

    @ivar results: The results so far, by case number: C{(status, detail)}.
    """

    def __init__(self, connection: _Connection, keyring: Keyring) -> None:
        self.connection = connection
        self.channel = Channel(Role.SERVER, keyring, acceptSuites=("noise", "fernet"))
        self.channel.prepareHandshake()
        self.results: dict[str, tuple[str, str]] = {}
        self.suiteID = 0
        self.clientClosed: CloseReceived | None = None

    def record(self, number: str, passed: bool, detail: str) -> None:
        self.results[number] = ("pass" if passed else "fail", detail)

    def flush(self) -> None:
        frames = self.channel.framesToSend()
        if frames:
            try:
                self.connection.send(frames)
            except OSError as e:
                raise _Stop(f"the kit could not write to the client ({type(e).__name__})") from e

    def frame(self, number: str, bound: int, waiting: str) -> bytes:
        """
        Receive a frame for case C{number}, recording its failure if none
        comes.

        @raise _Stop: None came.
        """
        try:
            payload = self.connection.receive(bound)
        except TimeoutError:
            self.record(number, False, f"nothing arrived within the deadline while {waiting}")
            raise _Stop(f"case {number} failed") from None
        except ValueError as e:
            self.record(number, False, f"{e} while {waiting}")
            raise _Stop(f"case {number} failed") from None
        if payload is None:
            self.record(number, False, f"the client ended the connection while {waiting}")
            raise _Stop(f"case {number} failed")
        return payload

    def hello(self) -> None:
        payload = self.frame("4.2.1", _HANDSHAKE_FRAME_LIMIT, "the kit waited for the hello")
        problems = []
        if payload[:4] != MAGIC:
            problems.append(f"it starts {payload[:4].hex()}, not the magic {MAGIC.hex()}")
        elif len(payload) < 6:
            problems.append(f"it is {len(payload)} bytes, shorter than its 6-byte header")
        else:
            version, self.suiteID = payload[4], payload[5]
            if version != PROTOCOL_VERSION:
                problems.append(f"version byte {version}, not {PROTOCOL_VERSION}")
            if self.suiteID not in _HELLO_SIZES:
                problems.append(f"unknown suite ID {self.suiteID}")
            elif len(payload) != _HELLO_SIZES[self.suiteID]:
                problems.append(
                    f"{len(payload)} bytes, not the {_HELLO_SIZES[self.suiteID]} of a"
                    f" {_SUITE_NAMES[self.suiteID]} hello"
                )
        if problems:
            self.record("4.2.1", False, "the hello is malformed: " + "; ".join(problems))
        else:
            self.record(
                "4.2.1",
                True,
                f"a {len(payload)}-byte hello, version {PROTOCOL_VERSION},"
                f" suite {_SUITE_NAMES[self.suiteID]}",
            )
        try:
            self.channel.receiveFrame(payload)
        except NetStructerError as e:
            self.record("4.2.2", False, f"the kit refused the hello: {type(e).__name__}: {e}")
            self.flush()
            raise _Stop("the hello was refused") from None
        self.record("4.2.2", True, "the hello authenticated and the kit accepted it")
        self.flush()

    def confirmation(self) -> None:
        payload = self.frame(
            "4.4.1", _HANDSHAKE_FRAME_LIMIT, "the kit waited for the client's first record"
        )
        expected = _CONFIRM_SIZES.get(self.suiteID)
        try:
            event = self.channel.receiveFrame(payload)
        except NetStructerError as e:
            self.record("4.4.1", False, f"the client's first record: {type(e).__name__}: {e}")
            raise _Stop("no key confirmation") from None
        if not isinstance(event, HandshakeCompleted):
            self.record("4.4.1", False, f"the client's first record gave {event!r}")
            raise _Stop("no key confirmation")
        if len(payload) != expected:
            self.record(
                "4.4.1",
                False,
                f"a CONFIRM record in a {len(payload)}-byte frame, not {expected}: the frame"
                " holds more than the empty CONFIRM",
            )
            raise _Stop("a malformed key confirmation")
        self.record("4.4.1", True, f"a CONFIRM record alone in a {len(payload)}-byte frame")

    def values(self) -> None:
        deadline = self.connection.sock.gettimeout()
        try:
            self._values(deadline)
        finally:
            self.connection.sock.settimeout(deadline)

    def _values(self, deadline: float | None) -> None:
        """
        Receive what the client sends until it closes, or has been quiet for
        L{_SETTLE} seconds after its first value, or sent nothing within the
        deadline: so that a client closing right after its values is seen
        closing first, rather than crossing the kit's CLOSE.
        """
        count = 0
        while True:
            try:
                payload = self.connection.receive(self.channel.maxFrameSize)
            except TimeoutError:
                break
            except ValueError as e:
                self.record("5.4.1", False, str(e))
                raise _Stop("an oversized frame") from None
            if payload is None:
                self.record(
                    "5.4.1",
                    False,
                    f"the client ended the connection without a CLOSE after {count} values",
                )
                raise _Stop("the transport ended")
            try:
                event = self.channel.receiveFrame(payload)
            except NetStructerError as e:
                self.record("5.4.1", False, f"after {count} values: {type(e).__name__}: {e}")
                raise _Stop("a record failed") from None
            self.flush()
            if isinstance(event, ValueReceived | ValuesReceived):
                count += 1 if isinstance(event, ValueReceived) else len(event.values)
                self.connection.sock.settimeout(min(_SETTLE, deadline or _SETTLE))
                continue
            if isinstance(event, CloseReceived):
                self.clientClosed = event
                break
            if not isinstance(event, PingReceived | PongReceived):
                self.record("5.4.1", False, f"the client sent {event!r}")
                raise _Stop("an unexpected record")
        if count:
            self.results["5.4.1"] = ("pass", f"{count} value(s) decoded")
        elif self.clientClosed is not None:
            self.results["5.4.1"] = ("info", "the client closed without sending a value")
        else:
            self.results["5.4.1"] = (
                "info",
                "the client sent no value within the deadline",
            )

    def close(self) -> None:
        if self.clientClosed is not None:
            self.results["5.6.1"] = (
                "info",
                f"the client closed first (code {int(self.clientClosed.code)}); the kit replied",
            )
        else:
            try:
                self.connection.send([self.channel.close(_KIT_CLOSE_CODE, _KIT_CLOSE_REASON)])
            except OSError as e:
                self.record("5.6.1", False, f"the kit could not send its CLOSE: {e}")
                raise _Stop("no CLOSE sent") from None
            values = 0
            while True:
                payload = self.frame("5.6.1", self.channel.maxFrameSize, "the kit waited for CLOSE")
                try:
                    event = self.channel.receiveFrame(payload)
                except NetStructerError as e:
                    self.record("5.6.1", False, f"after the kit's CLOSE: {type(e).__name__}: {e}")
                    raise _Stop("a record failed") from None
                if isinstance(event, CloseReceived):
                    break
                if isinstance(event, ValueReceived):
                    values += 1
                elif isinstance(event, ValuesReceived):
                    values += len(event.values)
            if event.code != _KIT_CLOSE_CODE or event.reason:
                self.record(
                    "5.6.1",
                    False,
                    f"the client's CLOSE has code {int(event.code)} and reason {event.reason!r},"
                    f" not code {int(_KIT_CLOSE_CODE)} and an empty reason (unless the client"
                    " closed on its own just as the kit did: then run again)",
                )
            else:
                self.record(
                    "5.6.1",
                    True,
                    f"the client replied CLOSE (code {int(event.code)}) after {values}"
                    " value(s) it had sent before",
                )
        self.flush()
        started = time.monotonic()
        try:
            after = self.connection.receive(self.channel.maxFrameSize)
        except TimeoutError:
            self.record(
                "5.6.2", False, "the client kept the connection open after the close handshake"
            )
            return
        except ValueError as e:
            self.record("5.6.2", False, f"after the close handshake: {e}")
            return
        if after is not None:
            self.record(
                "5.6.2",
                False,
                f"the client sent a {len(after)}-byte frame after the close handshake",
            )
            return
        self.record(
            "5.6.2",
            True,
            f"the client ended the transport {time.monotonic() - started:.2f} s after the"
            " close handshake",
        )


def serveCases(
    port: int,
    keyring: Keyring,
    deadline: float = 10.0,
    announce: Callable[[int], None] = lambda port: None,
    only: Sequence[str] = (),
) -> list[CaseResult]:
    """
    Listen on C{127.0.0.1:port}, accept one client connection, and run the
    client-side cases on it.

    @param port: The port; 0 picks a free one.
    @param keyring: The keys the client may use.
    @param deadline: Seconds for the accept and for each step.
    @param announce: Called with the port once the kit listens, before it
        accepts.
    @param only: Report only these cases (or those whose numbers start with
        one of them); all the steps run anyway.
    @return: The results, in case order.
    @raise OSError: The port cannot be listened on.
    """
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    results: dict[str, tuple[str, str]] = {}
    stopped = ""
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", port))
        listener.listen(1)
        listener.settimeout(deadline)
        announce(listener.getsockname()[1])
        try:
            sock, _ = listener.accept()
        except TimeoutError:
            results["4.2.1"] = ("fail", f"no client connected within {deadline:g} seconds")
            stopped = "no client connected"
        else:
            sock.settimeout(deadline)
            run = _Run(_Connection(sock), keyring)
            try:
                for step in (run.hello, run.confirmation, run.values, run.close):
                    step()
            except _Stop as e:
                stopped = str(e)
            finally:
                sock.close()
            results = run.results
    finally:
        listener.close()
    reported = []
    for number, section, title in SERVE_CASES:
        if only and not any(number == o or number.startswith(o + ".") for o in only):
            continue
        status, detail = results.get(number, ("info", f"not reached: {stopped}"))
        reported.append(CaseResult(number, section, title, status, detail))
    return reported
