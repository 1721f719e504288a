# -*- test-case-name: tests.test_conformance -*-
"""
The conformance kit's cases for records and the close handshake (section 5
of C{docs/protocol.rst}), and for the frame bound after the handshake
(section 3).

Every case plays the client.  A record the server must refuse is followed,
in the same write, by a well-formed VALUE record (the I{canary}): the
server must end the connection sending nothing, so an echo target that
echoed the canary, or a server sending a CLOSE, fails the case.
"""

from __future__ import annotations

import struct

from netstructer.channel import (
    Channel,
    CloseCode,
    CloseReceived,
    frameOverhead,
)
from netstructer.conformance._core import (
    NotApplicable,
    RawPeer,
    Target,
    case,
    collectRecords,
    describeRecord,
    framed,
    openRecord,
    refusedAfterHandshake,
    sealPlaintext,
    splitValues,
)

_CLOSE = 4


def _closeBody(code: int, reason: bytes) -> bytes:
    return struct.pack(">H", code) + reason


def _family(target: Target) -> str:
    return "fernet" if target.suite == "fernet" else "noise"


def _closeReply(target: Target, plaintexts: list[bytes]) -> tuple[bytes | None, str, list[bytes]]:
    """
    Send C{plaintexts} as records, the last a CLOSE, and read up to the
    server's CLOSE.

    @return: The body of the server's CLOSE (L{None} if none came), what
        happened, and the raw records received before it (type byte first).
    """
    peer = RawPeer(target)
    try:
        channel = peer.handshake(target)
        peer.sendRaw(framed(*(sealPlaintext(channel, p) for p in plaintexts)))
        before: list[bytes] = []
        while True:
            try:
                incoming = peer.receive()
            except TimeoutError:
                return None, "no CLOSE reply within the deadline", before
            if incoming is None:
                return None, "the server ended the connection without a CLOSE reply", before
            recordType, body = openRecord(channel, incoming)
            if recordType == _CLOSE:
                break
            before.append(bytes((recordType,)) + body)
        try:
            after = peer.receive()
        except TimeoutError:
            return body, "the server did not end the connection after its CLOSE", before
        if after is not None:
            return body, "the server sent a frame after its CLOSE", before
        return body, "", before
    finally:
        peer.close()


# Section 3, after the handshake: the frame bound derived from M.


@case(
    "5.1.1",
    "3",
    "after the handshake, a length prefix over the bound for the server's M is refused",
)
def _frameOverBound(target: Target) -> tuple[bool, str]:
    peer = RawPeer(target)
    try:
        channel = peer.handshake(target)
        maxSize = channel.peerMaxValueSize or 0
        bound = frameOverhead(_family(target), maxSize)
        # Only the prefix: the server must refuse it before the payload.
        peer.sendRaw(struct.pack(">I", bound + 1))
        try:
            incoming = peer.receive()
        except TimeoutError:
            return False, f"a prefix of {bound + 1} (bound {bound}, M {maxSize}) was not refused"
        if incoming is not None:
            return False, f"the server answered the prefix with {describeRecord(channel, incoming)}"
        return True, f"a prefix of {bound + 1} bytes (bound {bound} for M {maxSize}) was refused"
    finally:
        peer.close()


@case(
    "5.1.2",
    "3",
    "after the handshake, a VALUE of the server's M bytes (a frame at the bound) is accepted",
)
def _frameAtBound(target: Target) -> tuple[bool, str]:
    peer = RawPeer(target)
    try:
        channel = peer.handshake(target)
        maxSize = channel.peerMaxValueSize or 0
        if maxSize > 64 * 1024 * 1024:
            raise NotApplicable(f"the server's M ({maxSize}) is too large to send")
        if maxSize < 6:
            raise NotApplicable(f"the server's M ({maxSize}) holds no bin 32 value")
        body = b"\xc6" + struct.pack(">I", maxSize - 5) + bytes(maxSize - 5)
        record = sealPlaintext(channel, b"\x01" + body)
        bound = frameOverhead(_family(target), maxSize)
        if len(record) != bound:
            return False, f"the kit sealed {len(record)} bytes, not the bound {bound}"
        peer.sendRaw(framed(record, channel.ping(b"bound")))
        encodings, _, problem = collectRecords(
            peer, channel, values=1 if target.echo else 0, pongs=1
        )
        if problem is not None:
            return False, f"after a frame of {bound} bytes: {problem}"
        if target.echo and encodings != [body]:
            return False, "the value of M bytes was not echoed exactly"
        return True, f"a frame of {bound} bytes (M {maxSize}) was accepted"
    finally:
        peer.close()


# 5.2 and 5.3: records that do not authenticate.


@case(
    "5.2.1", "5.2", "a record with one bit flipped fails the connection, nothing delivered after it"
)
def _flippedBit(target: Target) -> tuple[bool, str]:
    def build(channel: Channel) -> list[bytes]:
        record = bytearray(channel.sendValue("flipped"))
        record[len(record) // 2] ^= 0x01
        return [bytes(record)]

    return refusedAfterHandshake(target, build, "a record with a flipped bit")


@case("5.2.2", "5.2", "a replayed record (the same sealed frame twice) fails the connection")
def _replayed(target: Target) -> tuple[bool, str]:
    peer = RawPeer(target)
    try:
        channel = peer.handshake(target)
        record = channel.sendValue("replayed")
        peer.sendRaw(framed(record, channel.ping(b"first")))
        _, _, problem = collectRecords(peer, channel, values=1 if target.echo else 0, pongs=1)
        if problem is not None:
            return False, f"the first copy was not accepted: {problem}"
        try:
            peer.sendRaw(framed(record, channel.sendValue("canary")))
        except (BrokenPipeError, ConnectionResetError):
            pass
        try:
            incoming = peer.receive()
        except TimeoutError:
            return False, "the server kept the connection open after the replay"
        if incoming is not None:
            return False, f"after the replay the server sent {describeRecord(channel, incoming)}"
        return True, "the first copy was accepted; the replay ended the connection"
    finally:
        peer.close()


@case("5.2.3", "5.2", "two records reordered fail the connection")
def _reordered(target: Target) -> tuple[bool, str]:
    def build(channel: Channel) -> list[bytes]:
        first = channel.sendValue("first")
        second = channel.sendValue("second")
        return [second, first]

    return refusedAfterHandshake(target, build, "two records in reverse order")


@case("5.2.4", "5.2", "a record after a dropped one fails the connection")
def _dropped(target: Target) -> tuple[bool, str]:
    def build(channel: Channel) -> list[bytes]:
        channel.sendValue("dropped")
        return [channel.sendValue("after the dropped one")]

    return refusedAfterHandshake(target, build, "a record whose predecessor was dropped")


@case("5.2.5", "5.2", "a record reflected back (a frame the server sent) fails the connection")
def _reflected(target: Target) -> tuple[bool, str]:
    peer = RawPeer(target)
    try:
        channel = peer.handshake(target)
        peer.send(channel.ping(b"reflect me"))
        pong = peer.receive()
        if pong is None:
            return False, "the server ended the connection instead of answering a PING"
        try:
            peer.sendRaw(framed(pong, channel.sendValue("canary")))
        except (BrokenPipeError, ConnectionResetError):
            pass
        try:
            incoming = peer.receive()
        except TimeoutError:
            return False, "the server kept the connection open after its own PONG came back"
        if incoming is not None:
            return (
                False,
                f"after the reflection the server sent {describeRecord(channel, incoming)}",
            )
        return True, "the server's own PONG, sent back to it, ended the connection"
    finally:
        peer.close()


@case("5.2.6", "5.2", "a record of another connection (other keys) fails the connection")
def _otherConnection(target: Target) -> tuple[bool, str]:
    other = RawPeer(target)
    try:
        otherChannel = other.handshake(target)
        foreign = otherChannel.sendValue("from another connection")
    finally:
        other.close()
    return refusedAfterHandshake(
        target, lambda channel: [foreign], "a record sealed for another connection"
    )


@case("5.2.7", "5.2", "a frame too short to be a record (under the tag size) fails the connection")
def _tooShort(target: Target) -> tuple[bool, str]:
    return refusedAfterHandshake(target, lambda channel: [b"\x00" * 5], "a 5-byte frame")


@case("5.2.8", "5.2, 5.3", "a record whose plaintext holds no record type fails the connection")
def _noRecordType(target: Target) -> tuple[bool, str]:
    return refusedAfterHandshake(
        target, lambda channel: [sealPlaintext(channel, b"")], "a record without a type byte"
    )


def _fernetParts(channel: Channel) -> tuple[object, bytes, int]:
    sender = channel._state._sender  # type: ignore[attr-defined]
    return sender._fernet, sender._sessionID, sender._sequence


def _fernetRecord(
    channel: Channel,
    *,
    sessionID: bytes | None = None,
    direction: int = 0,
    sequence: int | None = None,
    plaintext: bytes | None = None,
) -> bytes:
    """
    Seal a fernet record token with any header.
    """
    fernet, ownSession, ownSequence = _fernetParts(channel)
    if plaintext is None:
        head = struct.pack(
            ">32sBQ",
            ownSession if sessionID is None else sessionID,
            direction,
            ownSequence if sequence is None else sequence,
        )
        plaintext = head + b"\x01\xa4fake"
    token: bytes = fernet.encrypt(plaintext)  # type: ignore[attr-defined]
    return token


def _fernetOnly(target: Target) -> None:
    if target.suite != "fernet":
        raise NotApplicable("a rule of the fernet suite; this run uses noise")


@case("5.3.1", "5.3", "a fernet record with the server's direction fails the connection")
def _fernetDirection(target: Target) -> tuple[bool, str]:
    _fernetOnly(target)
    return refusedAfterHandshake(
        target,
        lambda channel: [_fernetRecord(channel, direction=1)],
        "a record marked as sent by the server",
    )


@case("5.3.2", "5.3", "a fernet record with another session ID fails the connection")
def _fernetSession(target: Target) -> tuple[bool, str]:
    _fernetOnly(target)
    return refusedAfterHandshake(
        target,
        lambda channel: [_fernetRecord(channel, sessionID=bytes(32))],
        "a record of another session ID",
    )


@case("5.3.3", "5.3", "a fernet record with a sequence number already used fails the connection")
def _fernetSequence(target: Target) -> tuple[bool, str]:
    _fernetOnly(target)
    return refusedAfterHandshake(
        target,
        lambda channel: [_fernetRecord(channel, sequence=0)],
        "a record repeating sequence number 0 (the CONFIRM's)",
    )


@case("5.3.4", "5.3", "a fernet record whose plaintext is under 42 bytes fails the connection")
def _fernetShort(target: Target) -> tuple[bool, str]:
    _fernetOnly(target)
    return refusedAfterHandshake(
        target,
        lambda channel: [_fernetRecord(channel, plaintext=bytes(20))],
        "a token of a 20-byte plaintext",
    )


# 5.4: the record types.


def _ping(target: Target, data: bytes) -> tuple[bool, str]:
    peer = RawPeer(target)
    try:
        channel = peer.handshake(target)
        peer.send(channel.ping(data))
        _, pongs, problem = collectRecords(peer, channel, pongs=1)
        if problem is not None:
            return False, f"after a PING of {len(data)} bytes: {problem}"
        if pongs != [data]:
            return False, f"the PONG carried {pongs[0][:80].hex()}, not {data[:80].hex()}"
        return True, f"a PING of {len(data)} bytes was answered by a PONG with its data"
    finally:
        peer.close()


@case("5.4.1", "5.4", "a PING with empty data is answered by a PONG with empty data")
def _pingEmpty(target: Target) -> tuple[bool, str]:
    return _ping(target, b"")


@case("5.4.2", "5.4", "a PING of 64 bytes is answered by a PONG with the same data")
def _ping64(target: Target) -> tuple[bool, str]:
    return _ping(target, bytes(range(64)))


@case("5.4.3", "5.4", "a PING of 65 bytes fails the connection")
def _ping65(target: Target) -> tuple[bool, str]:
    return refusedAfterHandshake(
        target, lambda channel: [sealPlaintext(channel, b"\x02" + bytes(65))], "a PING of 65 bytes"
    )


@case("5.4.4", "5.4", "an unsolicited PONG (of 200 bytes) is not checked: the session goes on")
def _pongUnchecked(target: Target) -> tuple[bool, str]:
    peer = RawPeer(target)
    try:
        channel = peer.handshake(target)
        peer.sendRaw(
            framed(sealPlaintext(channel, b"\x03" + bytes(200)), channel.ping(b"after the pong"))
        )
        _, _, problem = collectRecords(peer, channel, pongs=1)
        if problem is not None:
            return False, f"after an unsolicited PONG: {problem}"
        return True, "an unsolicited PONG of 200 bytes was ignored; the next PING was answered"
    finally:
        peer.close()


@case("5.4.5", "5.4", "a CLOSE with a body of 1 byte fails the connection")
def _closeShort(target: Target) -> tuple[bool, str]:
    return refusedAfterHandshake(
        target, lambda channel: [sealPlaintext(channel, b"\x04\x00")], "a CLOSE of 1 byte"
    )


@case("5.4.6", "5.4", "a CLOSE with a body of 259 bytes (a reason of 257) fails the connection")
def _closeLong(target: Target) -> tuple[bool, str]:
    return refusedAfterHandshake(
        target,
        lambda channel: [sealPlaintext(channel, b"\x04" + _closeBody(0, b"r" * 257))],
        "a CLOSE with a 257-byte reason",
    )


@case("5.4.7", "5.4", "a CLOSE whose reason is not UTF-8 fails the connection")
def _closeNotUTF8(target: Target) -> tuple[bool, str]:
    return refusedAfterHandshake(
        target,
        lambda channel: [sealPlaintext(channel, b"\x04" + _closeBody(0, b"bye \xff\xfe"))],
        "a CLOSE with a reason that is not UTF-8",
    )


@case("5.4.8", "5.4", "a CLOSE with a reason of 256 bytes of UTF-8 is accepted and answered")
def _closeLongestReason(target: Target) -> tuple[bool, str]:
    reason = ("\u00e9" * 128).encode("utf-8")
    body, problem, _ = _closeReply(target, [b"\x04" + _closeBody(0, reason)])
    if body is None or problem:
        return False, problem or "no CLOSE reply"
    return True, "a CLOSE with a 256-byte reason was answered by a CLOSE"


@case("5.4.9", "5.4, 5.6", "a CLOSE of an unknown code is answered with code 5 (INTERNAL_ERROR)")
def _closeUnknownCode(target: Target) -> tuple[bool, str]:
    body, problem, _ = _closeReply(target, [b"\x04" + _closeBody(999, b"")])
    if body is None or problem:
        return False, problem or "no CLOSE reply"
    if body != _closeBody(CloseCode.INTERNAL_ERROR, b""):
        return False, f"the reply's body is {body.hex()}, not code 5 and an empty reason"
    return True, "CLOSE with code 999 was answered by CLOSE with code 5 and an empty reason"


@case("5.4.10", "5.4", "a CONFIRM record after the handshake fails the connection")
def _confirmAgain(target: Target) -> tuple[bool, str]:
    return refusedAfterHandshake(
        target, lambda channel: [sealPlaintext(channel, b"\x05")], "a second CONFIRM"
    )


def _unknownType(target: Target, recordType: int) -> tuple[bool, str]:
    return refusedAfterHandshake(
        target,
        lambda channel: [sealPlaintext(channel, bytes((recordType,)) + b"\xc0")],
        f"a record of type {recordType:#04x}",
    )


@case("5.4.11", "5.4", "a record of type 0x00 fails the connection")
def _type00(target: Target) -> tuple[bool, str]:
    return _unknownType(target, 0x00)


@case("5.4.12", "5.4", "a record of type 0x07 fails the connection")
def _type07(target: Target) -> tuple[bool, str]:
    return _unknownType(target, 0x07)


@case("5.4.13", "5.4", "a record of type 0x18 (between the extension ranges) fails the connection")
def _type18(target: Target) -> tuple[bool, str]:
    return _unknownType(target, 0x18)


@case("5.4.14", "5.4", "a record of type 0x28 (after the extension ranges) fails the connection")
def _type28(target: Target) -> tuple[bool, str]:
    return _unknownType(target, 0x28)


@case("5.4.15", "5.4", "a record of type 0xff fails the connection")
def _typeFF(target: Target) -> tuple[bool, str]:
    return _unknownType(target, 0xFF)


@case(
    "5.4.16",
    "5.4",
    "a relay record (0x12) in a version 1 session is an unknown type: it fails the connection",
)
def _extensionInVersion1(target: Target) -> tuple[bool, str]:
    def build(channel: Channel) -> list[bytes]:
        if channel.protocolVersion != 1:
            raise NotApplicable(f"the server answered version {channel.protocolVersion}")
        return [sealPlaintext(channel, b"\x12\x04news")]

    return refusedAfterHandshake(
        target, build, "a SUBSCRIBE record in a version 1 session", protocolVersion=1
    )


@case(
    "5.4.18",
    "5.4, relay records",
    "a relay request (SUBSCRIBE) in a session of version 2 or later does not fail it (at most an"
    " ERROR reply)",
)
def _extensionInVersion2(target: Target) -> tuple[bool, str]:
    peer = RawPeer(target)
    try:
        channel = peer.handshake(target)
        if (channel.protocolVersion or 1) < 2:
            raise NotApplicable(f"the server answered version {channel.protocolVersion}")
        peer.sendRaw(framed(channel.sendRecord(0x12, b"\x04news"), channel.ping(b"after")))
        seen = []
        while True:
            try:
                incoming = peer.receive()
            except TimeoutError:
                return False, "no PONG after the SUBSCRIBE within the deadline"
            if incoming is None:
                return False, "the server ended the connection after a SUBSCRIBE record"
            recordType, _ = openRecord(channel, incoming)
            if recordType == 3:
                break
            if recordType != 0x15:
                return (
                    False,
                    f"the server answered the SUBSCRIBE with a record of type {recordType}",
                )
            seen.append(recordType)
        answer = "an ERROR record" if seen else "nothing"
        return True, f"the SUBSCRIBE was answered with {answer}; the session went on"
    finally:
        peer.close()


@case(
    "5.4.19",
    "4.6, 5.4",
    "a streams record (0x22) in a version 2 session is an unknown type: it fails the connection",
)
def _streamsInVersion2(target: Target) -> tuple[bool, str]:
    def build(channel: Channel) -> list[bytes]:
        if channel.protocolVersion != 2:
            raise NotApplicable(f"the server answered version {channel.protocolVersion}")
        return [sealPlaintext(channel, b"\x22" + bytes(13))]

    return refusedAfterHandshake(
        target, build, "a streams DATA record in a version 2 session", protocolVersion=2
    )


@case("5.4.17", "5.4", "a VALUE record with an empty body fails the connection")
def _valueEmpty(target: Target) -> tuple[bool, str]:
    return refusedAfterHandshake(
        target, lambda channel: [sealPlaintext(channel, b"\x01")], "a VALUE with an empty body"
    )


# 5.6: the close handshake.


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


@case("5.6.2", "5.6", "the CLOSE reply carries the code received and an empty reason")
def _closeReplyCode(target: Target) -> tuple[bool, str]:
    body, problem, _ = _closeReply(target, [b"\x04" + _closeBody(4, b"idle, says the client")])
    if body is None or problem:
        return False, problem or "no CLOSE reply"
    if body != _closeBody(4, b""):
        return False, f"the reply's body is {body.hex()}, not code 4 and an empty reason"
    return True, "CLOSE with code 4 and a reason was answered by CLOSE with code 4, no reason"


@case("5.6.3", "5.4, 5.6", "a PING just before CLOSE is answered by a PONG, then the CLOSE")
def _pingBeforeClose(target: Target) -> tuple[bool, str]:
    body, problem, before = _closeReply(target, [b"\x02before close", b"\x04" + _closeBody(0, b"")])
    if body is None or problem:
        return False, problem or "no CLOSE reply"
    if before != [b"\x03before close"]:
        return False, f"before its CLOSE the server sent {[r[:16].hex() for r in before]}"
    return True, "the PING was answered before the CLOSE reply"


@case(
    "5.6.4",
    "5.6",
    "values sent before CLOSE come back (echo) in order before the server's CLOSE, none after",
)
def _valuesBeforeClose(target: Target) -> tuple[bool, str]:
    if not target.echo:
        raise NotApplicable("needs an echo target")
    sent = [b"\xa1a", b"\xa1b", b"\xa1c"]
    body, problem, before = _closeReply(
        target, [b"\x06\x92" + sent[0] + sent[1], b"\x01" + sent[2], b"\x04" + _closeBody(0, b"")]
    )
    if body is None or problem:
        return False, problem or "no CLOSE reply"
    echoed: list[bytes] = []
    for record in before:
        if record[0] == 1:
            echoed.append(record[1:])
        elif record[0] == 6:
            echoed.extend(splitValues(record[1:]))
        else:
            return False, f"before its CLOSE the server sent a record of type {record[0]}"
    if echoed != sent:
        return False, f"before its CLOSE the server echoed {echoed!r}, not {sent!r}"
    return True, "the three values came back in order, then the CLOSE, then the end"


@case(
    "5.6.5", "5.6", "a record after the client's CLOSE is not delivered: CLOSE reply, then the end"
)
def _recordAfterClose(target: Target) -> tuple[bool, str]:
    body, problem, before = _closeReply(target, [b"\x04" + _closeBody(0, b""), b"\x01\xa5after"])
    if body is None:
        return False, problem
    if before:
        return False, f"before its CLOSE the server sent {len(before)} records"
    if problem:
        return False, problem
    return True, "CLOSE answered; the VALUE after it was not echoed; the server ended"


# 5.7: failures are terminal.


@case("5.7.1", "5.7", "after a failure the server sends nothing, not a PONG nor a CLOSE")
def _failureTerminal(target: Target) -> tuple[bool, str]:
    def build(channel: Channel) -> list[bytes]:
        bad = bytearray(channel.sendValue("altered"))
        bad[-1] ^= 0x80
        return [bytes(bad), channel.ping(b"still there?"), sealPlaintext(channel, b"\x04\x00\x00")]

    return refusedAfterHandshake(target, build, "an altered record, a PING and a CLOSE")
