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

__all__ = [
    "CASES",
    "CaseResult",
    "NotApplicable",
    "RawPeer",
    "Target",
    "case",
    "readExactly",
    "runCases",
]

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


def readExactly(sock: socket.socket, count: int) -> bytes | None:
    """
    Read C{count} bytes from C{sock} (within its timeout).

    @return: The bytes, or L{None} if the other side ended the connection
        first.
    @raise TimeoutError: They did not arrive in time.
    """
    data = bytearray()
    while len(data) < count:
        chunk = sock.recv(count - len(data))
        if not chunk:
            return None
        data += chunk
    return bytes(data)


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
        return readExactly(self.sock, count)

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


# Helpers for the cases of sections 5 and 6: records built by hand.


def framed(*payloads: bytes) -> bytes:
    """
    @param payloads: Frame payloads.
    @return: The frames, each behind its 4-byte big-endian length prefix,
        concatenated: to be written at once, so that a server ending the
        connection after the first cannot make the write of the others fail.
    """
    return b"".join(_U32.pack(len(payload)) + payload for payload in payloads)


def sealPlaintext(channel: Channel, plaintext: bytes) -> bytes:
    """
    Seal any record plaintext (its type byte first, or nothing at all) with
    an established channel's sending key and its next nonce or sequence
    number, as the channel would seal its own records: for records no
    well-behaved peer sends (an unknown type, a CONFIRM after the handshake,
    a malformed CLOSE).

    @param channel: An established client channel.
    @param plaintext: The record's plaintext (for the fernet suite, what
        follows the 41-byte session, direction and sequence header).
    @return: The frame payload.
    @raise ValueError: The channel is not established.
    """
    sender = getattr(channel._state, "_sender", None)
    if sender is None:
        raise ValueError(f"{channel!r} cannot seal records")
    payload: bytes = sender.sealPlaintext(plaintext)
    return payload


def openRecord(channel: Channel, payload: bytes) -> tuple[int, bytes]:
    """
    Open a record the server sent, without acting on it (a CLOSE does not
    close the channel, a PING queues no PONG): to read its raw body.

    @param channel: An established (or closing) client channel.
    @param payload: The frame payload.
    @return: The record's type and body.
    @raise NetStructerError: The record does not authenticate.
    @raise ValueError: The channel cannot open records.
    """
    receiver = getattr(channel._state, "_receiver", None)
    if receiver is None:
        raise ValueError(f"{channel!r} cannot open records")
    recordType, body = receiver.open(payload)
    return recordType, bytes(body)


def describeRecord(channel: Channel, payload: bytes) -> str:
    """
    @param channel: The client channel the record is for.
    @param payload: A frame payload the server sent.
    @return: What it is, for a case's detail: its record type, and for a
        CLOSE its code, or why it could not be opened.
    """
    try:
        recordType, body = openRecord(channel, payload)
    except (NetStructerError, ValueError) as e:
        return f"a {len(payload)}-byte frame that does not open ({type(e).__name__})"
    names = {1: "VALUE", 2: "PING", 3: "PONG", 4: "CLOSE", 5: "CONFIRM", 6: "VALUES"}
    name = names.get(recordType, f"type {recordType:#04x}")
    if recordType == 4 and len(body) >= 2:
        return f"a CLOSE record (code {int.from_bytes(body[:2], 'big')})"
    return f"a {name} record of {len(body)} bytes"


def refusedAfterHandshake(
    target: Target,
    build: Callable[[Channel], Sequence[bytes]],
    what: str,
    canary: bool = True,
    **options: object,
) -> tuple[bool, str]:
    """
    Check a rule of section 5.7: after the handshake, the frames C{build}
    makes (sent in one write) make the server end the connection, sending
    nothing more (no CLOSE, no PONG, no echo).

    @param target: The server.
    @param build: Called with the established client channel; returns the
        frame payloads to send.
    @param what: What they are, for the detail.
    @param canary: Whether to send a well-formed VALUE record after them: an
        echo target that echoed it would have delivered a value after the
        failure.
    @param options: More options of the client's channel.
    @return: The case's result.
    """
    peer = RawPeer(target)
    try:
        channel = peer.handshake(target, **options)
        payloads = list(build(channel))
        if canary:
            payloads.append(channel.sendValue("conformance canary"))
        try:
            peer.sendRaw(framed(*payloads))
        except (BrokenPipeError, ConnectionResetError):
            # The server ended the connection before the whole write.
            pass
        try:
            incoming = peer.receive()
        except TimeoutError:
            return False, f"the server kept the connection open after {what}"
        if incoming is None:
            return True, f"the server ended the connection after {what}, sending nothing"
        return False, (
            f"after {what} the server sent {describeRecord(channel, incoming)} "
            "instead of ending the connection"
        )
    finally:
        peer.close()


def splitValues(body: bytes) -> list[bytes]:
    """
    Split the body of a VALUES record into the encodings of its values.

    @param body: The body: one msgpack array.
    @return: The encoding of each item, in order.
    @raise ValueError: The body is not one msgpack array.
    """
    import msgpack

    unpacker = msgpack.Unpacker(max_buffer_size=max(len(body), 1))
    unpacker.feed(body)
    try:
        count = unpacker.read_array_header()
        items = []
        start = unpacker.tell()
        for _ in range(count):
            unpacker.skip()
            end = unpacker.tell()
            items.append(body[start:end])
            start = end
    except (msgpack.UnpackException, msgpack.OutOfData, ValueError) as e:
        raise ValueError(f"not a msgpack array of values: {e}") from e
    if start != len(body):
        raise ValueError("bytes after the array")
    return items


def collectRecords(
    peer: RawPeer, channel: Channel, *, values: int = 0, pongs: int = 0
) -> tuple[list[bytes], list[bytes], str | None]:
    """
    Receive records from the server until C{values} values (from VALUE
    records and the items of VALUES records) and C{pongs} PONG records have
    arrived.

    @param peer: The connection.
    @param channel: Its established client channel.
    @param values: How many values to wait for.
    @param pongs: How many PONG records to wait for.
    @return: The encodings of the values received, the data of the PONGs
        received, and what went wrong (L{None} if nothing did: the server
        ended the connection, sent a CLOSE or an unexpected record, or
        nothing arrived within the deadline).
    """
    encodings: list[bytes] = []
    pongData: list[bytes] = []
    while len(encodings) < values or len(pongData) < pongs:
        try:
            incoming = peer.receive()
        except TimeoutError:
            return encodings, pongData, "nothing more arrived within the deadline"
        if incoming is None:
            return encodings, pongData, "the server ended the connection"
        try:
            recordType, body = openRecord(channel, incoming)
        except NetStructerError as e:
            return encodings, pongData, f"a record from the server did not open: {e}"
        if recordType == 1:
            encodings.append(body)
        elif recordType == 6:
            try:
                encodings.extend(splitValues(body))
            except ValueError as e:
                return encodings, pongData, f"the server sent a malformed VALUES record: {e}"
        elif recordType == 3:
            pongData.append(body)
        elif recordType == 4:
            return encodings, pongData, "the server sent a CLOSE record"
        else:
            return encodings, pongData, f"the server sent a record of type {recordType}"
    return encodings, pongData, None
