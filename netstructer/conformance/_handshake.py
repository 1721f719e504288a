# -*- test-case-name: tests.test_conformance -*-
"""
The conformance kit's cases for framing and the handshake (sections 3 and
4 of C{docs/protocol.rst}).
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import replace

import msgpack
from cryptography.fernet import Fernet

from netstructer._crypto import CipherState, NNpsk0Initiator, NNpsk0Template
from netstructer.channel import (
    HANDSHAKE_MAX_FRAME,
    MAGIC,
    PROTOCOL_VERSION,
    Channel,
    HandshakeCompleted,
    Role,
    ValueReceived,
)
from netstructer.conformance._core import NotApplicable, RawPeer, Target, case, framed
from netstructer.keys import asKeyring, generateKey


def _rejection(
    target: Target, hello: bytes, reason: int, suiteID: int | None = None
) -> tuple[bool, str]:
    """
    Check that the server rejects C{hello} with C{reason}, then closes.

    @param suiteID: The suite the hello asks for, if the case needs it: a
        server that does not accept it (a rejection with reason 2 not
        listing it) makes the case not applicable.
    @raise NotApplicable: The server does not accept C{suiteID}.
    """
    peer = RawPeer(target)
    try:
        peer.send(hello)
        reply = peer.receive()
        if reply is None:
            return False, "the server closed without a rejection"
        if len(reply) < 4 or reply[0] != 1 or len(reply) != 4 + reply[3]:
            return False, f"not a well-formed rejection: {reply.hex()}"
        if suiteID is not None and reply[1] == 2 and suiteID not in reply[4:]:
            raise NotApplicable(f"the server does not accept suite {suiteID}")
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
    (hello,) = Channel(Role.CLIENT, generateKey(), suite=target.suite).framesToSend()
    return _rejection(target, hello, 3)


# Helpers for the cases below: hellos built by hand.

_SUITE_IDS = {"AESGCM": 1, "ChaChaPoly": 2, "fernet": 3}


def _header(suiteID: int, version: int = 2) -> bytes:
    return MAGIC + bytes((version, suiteID))


def _template(target: Target, cipher: str, version: int = 2) -> NNpsk0Template:
    psk = asKeyring(target.key).noisePSKs()[0]
    return NNpsk0Template(cipher, psk, b"NetStructer" + _header(_SUITE_IDS[cipher], version))


def _noiseHello(target: Target, payload: bytes, version: int = 2) -> tuple[bytes, NNpsk0Initiator]:
    """
    @param payload: The plaintext of message 1 (normally the client's M).
    @param version: The hello's version byte.
    @return: An authentic noise hello of the target's cipher, and the
        initiator that wrote it.
    """
    initiator = _template(target, target.cipher, version).initiator()
    header = _header(_SUITE_IDS[target.cipher], version)
    return header + initiator.writeMessage1(payload), initiator


def _keyedHello(target: Target, ephemeralPublic: bytes) -> bytes:
    """
    @param ephemeralPublic: The ephemeral public key to send (one no private
        key gives, such as a low-order point).
    @return: A noise hello with that key, whose payload authenticates.
    """
    symmetric = _template(target, target.cipher)._symmetricState()
    symmetric.mixHash(ephemeralPublic)
    symmetric.mixKey(ephemeralPublic)
    payload = symmetric.encryptAndHash(struct.pack(">I", 1000))
    return _header(_SUITE_IDS[target.cipher]) + ephemeralPublic + payload


def _requireNoise(target: Target) -> None:
    if target.suite != "noise":
        raise NotApplicable("the case needs a noise target")


def _dropped(peer: RawPeer, what: str) -> tuple[bool, str]:
    """
    @return: Whether the server ended the connection after C{what},
        sending nothing.
    """
    try:
        incoming = peer.receive()
    except TimeoutError:
        return False, f"the server kept the connection open after {what}"
    if incoming is None:
        return True, f"the server ended the connection after {what}, sending nothing"
    return False, f"after {what} the server sent a {len(incoming)}-byte frame"


def _checkRejection(reply: bytes) -> str | None:
    """
    @return: What is wrong with a rejection's layout, or L{None}.
    """
    if len(reply) < 4 or reply[0] != 1:
        return f"not a rejection: {reply[:16].hex()}"
    if len(reply) != 4 + reply[3]:
        return f"a rejection of {len(reply)} bytes announcing {reply[3]} suites"
    return None


def _noiseEstablished(target: Target, cipher: str) -> tuple[bool, str]:
    """
    A handshake of one noise cipher (or fernet) completes, and the session
    carries a value (echo targets) or stays open.
    """
    suite = "fernet" if cipher == "fernet" else "noise"
    target = replace(target, suite=suite, cipher="AESGCM" if suite == "fernet" else cipher)
    peer = RawPeer(target)
    try:
        channel = target.channel()
        (hello,) = channel.framesToSend()
        peer.send(hello)
        reply = peer.receive()
        if reply is None:
            return False, "the server ended the connection instead of replying"
        if reply[:1] == b"\x01":
            problem = _checkRejection(reply)
            if problem is None and reply[1] == 2 and _SUITE_IDS[cipher] not in reply[4:]:
                raise NotApplicable(
                    f"the server does not accept {cipher} (suites {list(reply[4:])})"
                )
            return False, f"the server rejected the hello: {reply.hex()}"
        completed = channel.receiveFrame(reply)
        if not isinstance(completed, HandshakeCompleted):
            return False, "the reply did not complete the handshake"
        frames = channel.framesToSend()
        if target.echo:
            frames.append(channel.sendValue("conformance"))
        peer.sendRaw(framed(*frames))
        if not target.echo:
            return True, f"the {cipher} handshake completed (version {completed.version})"
        incoming = peer.receive()
        if incoming is None:
            return False, "the server ended the connection after CONFIRM"
        event = channel.receiveFrame(incoming)
        return (
            isinstance(event, ValueReceived) and event.value == "conformance",
            f"the {cipher} handshake completed and the server answered {event!r}",
        )
    finally:
        peer.close()


@case("3.1", "3", "a length prefix above the handshake frame limit is refused before the hello")
def _oversizedPrefix(target: Target) -> tuple[bool, str]:
    peer = RawPeer(target)
    try:
        # The prefix announces one byte more than the limit; a server that
        # waits to buffer the payload before checking never sees it all.
        peer.sendRaw(struct.pack(">I", HANDSHAKE_MAX_FRAME + 1) + _header(1) + bytes(64))
        try:
            incoming = peer.receive()
        except TimeoutError:
            return False, "the server kept waiting for the oversized frame's payload"
        if incoming is None:
            return True, "the server ended the connection on the oversized length prefix"
        problem = _checkRejection(incoming)
        if problem is not None:
            return False, f"the server answered the oversized frame: {problem}"
        return peer.ended(), f"the server rejected the oversized frame (reason {incoming[1]})"
    finally:
        peer.close()


@case("3.2", "3", "a hello frame of exactly the handshake frame limit is read and answered")
def _largestHello(target: Target) -> tuple[bool, str]:
    peer = RawPeer(target)
    try:
        peer.send(_header(_SUITE_IDS[target.cipher]) + bytes(HANDSHAKE_MAX_FRAME - 6))
        incoming = peer.receive()
        if incoming is None:
            return False, "the server ended the connection without a rejection"
        problem = _checkRejection(incoming)
        return (
            problem is None,
            problem or f"a {HANDSHAKE_MAX_FRAME}-byte hello was rejected with reason {incoming[1]}",
        )
    finally:
        peer.close()


@case("4.2.1", "4.2", "a noise hello with M = 0 is rejected with reason 4")
def _zeroMaxSize(target: Target) -> tuple[bool, str]:
    _requireNoise(target)
    return _rejection(target, _noiseHello(target, struct.pack(">I", 0))[0], 4)


@case("4.2.2", "4.2", "a noise hello with M above 2**31 - 2 is rejected with reason 4")
def _hugeMaxSize(target: Target) -> tuple[bool, str]:
    _requireNoise(target)
    return _rejection(target, _noiseHello(target, struct.pack(">I", 2**31 - 1))[0], 4)


@case("4.2.3", "4.2", "a noise hello whose payload is not a u32 is rejected with reason 4")
def _shortPayload(target: Target) -> tuple[bool, str]:
    _requireNoise(target)
    return _rejection(target, _noiseHello(target, b"\x00\x10\x00")[0], 4)


@case("4.3.5", "4.3", "an empty hello is rejected with reason 4")
def _emptyHello(target: Target) -> tuple[bool, str]:
    return _rejection(target, b"", 4)


@case("4.3.6", "4.3", "a hello shorter than the 6-byte header is rejected with reason 4")
def _shortHello(target: Target) -> tuple[bool, str]:
    return _rejection(target, MAGIC + b"\x02", 4)


@case(
    "4.3.7", "4.3", "a hello whose noise message is shorter than 48 bytes is rejected with reason 4"
)
def _truncatedNoise(target: Target) -> tuple[bool, str]:
    _requireNoise(target)
    hello, _ = _noiseHello(target, struct.pack(">I", 1000))
    return _rejection(target, hello[: 6 + 47], 4)


@case(
    "4.3.8",
    "4.3",
    f"a rejection carries the server's version {PROTOCOL_VERSION} and its suite IDs in"
    " ascending order",
)
def _rejectionLayout(target: Target) -> tuple[bool, str]:
    peer = RawPeer(target)
    try:
        peer.send(_header(0x09) + bytes(52))
        reply = peer.receive()
        if reply is None:
            return False, "the server closed without a rejection"
        problem = _checkRejection(reply)
        if problem is not None:
            return False, problem
        suites = list(reply[4:])
        ordered = suites == sorted(set(suites)) and bool(suites)
        detail = f"version {reply[2]}, suites {suites}"
        own = _SUITE_IDS["fernet" if target.suite == "fernet" else target.cipher]
        return reply[2] == PROTOCOL_VERSION and ordered and own in suites, detail
    finally:
        peer.close()


@case(
    "4.3.9",
    "4.3",
    "the version is checked before the suite: version 0 of an unknown suite gets reason 1",
)
def _versionFirst(target: Target) -> tuple[bool, str]:
    return _rejection(target, MAGIC + b"\x00\x09" + bytes(52), 1)


@case(
    "4.3.10",
    "4.3",
    "the magic is checked before the version: a non-magic version-0 hello gets reason 4",
)
def _magicFirst(target: Target) -> tuple[bool, str]:
    return _rejection(target, b"NSTX\x00\x01" + bytes(52), 4)


@case("4.4.1", "4.4", "a noise (AESGCM) handshake completes")
def _aesgcm(target: Target) -> tuple[bool, str]:
    return _noiseEstablished(target, "AESGCM")


@case("4.4.2", "4.4", "a noise (ChaChaPoly) handshake completes")
def _chachapoly(target: Target) -> tuple[bool, str]:
    return _noiseEstablished(target, "ChaChaPoly")


@case("4.4.3", "4.4", "an all-zero (low-order) ephemeral key in an authentic hello is refused")
def _zeroEphemeral(target: Target) -> tuple[bool, str]:
    _requireNoise(target)
    hello = _keyedHello(target, bytes(32))
    return _rejection(target, hello, 4)


@case(
    "4.4.4",
    "4.4",
    f"a hello of a version above the server's is answered with version {PROTOCOL_VERSION}",
)
def _newerClient(target: Target) -> tuple[bool, str]:
    _requireNoise(target)
    newer = PROTOCOL_VERSION + 1
    hello, initiator = _noiseHello(target, struct.pack(">I", 1000), version=newer)
    peer = RawPeer(target)
    try:
        peer.send(hello)
        reply = peer.receive()
        if reply is None or reply[:1] != b"\x00":
            return False, f"the version {newer} hello was not accepted: {reply!r}"
        payload = initiator.readMessage2(reply[1:])
        ok = payload[4:] == bytes((PROTOCOL_VERSION,))
        return ok, f"the server's payload is {payload.hex()}"
    finally:
        peer.close()


@case("4.4.5", "4.4", "a version 1 hello gets a version 1 reply, without a version byte")
def _versionOne(target: Target) -> tuple[bool, str]:
    _requireNoise(target)
    peer = RawPeer(target)
    try:
        channel = target.channel(protocolVersion=1)
        peer.send(channel.framesToSend()[0])
        reply = peer.receive()
        if reply is None:
            return False, "the server ended the connection instead of replying"
        event = channel.receiveFrame(reply)
        ok = isinstance(event, HandshakeCompleted) and event.version == 1 and len(reply) == 53
        return ok, f"a {len(reply)}-byte reply, {event!r}"
    finally:
        peer.close()


def _firstRecord(
    target: Target, record: Callable[[CipherState], bytes], what: str
) -> tuple[bool, str]:
    """
    After an accepting reply, send C{record} (given the client's sending
    cipher at nonce 0) and a well-formed VALUE after it: the server ends the
    connection, delivering nothing.
    """
    _requireNoise(target)
    hello, initiator = _noiseHello(target, struct.pack(">I", 1000))
    peer = RawPeer(target)
    try:
        peer.send(hello)
        reply = peer.receive()
        if reply is None or reply[:1] != b"\x00":
            return False, f"the hello was not accepted: {reply!r}"
        initiator.readMessage2(reply[1:])
        send, _ = initiator.split()
        first = record(send)
        canary = send.encrypt(b"\x01" + msgpack.packb("conformance canary"))
        try:
            peer.sendRaw(framed(first, canary))
        except (BrokenPipeError, ConnectionResetError):
            pass
        return _dropped(peer, what)
    finally:
        peer.close()


@case("4.4.6", "4.4", "a VALUE record before CONFIRM ends the connection, delivering nothing")
def _valueFirst(target: Target) -> tuple[bool, str]:
    return _firstRecord(
        target, lambda send: send.encrypt(b"\x01" + msgpack.packb("early")), "a VALUE first"
    )


@case("4.4.10", "4.4", "a CONFIRM with a body ends the connection, delivering nothing")
def _confirmWithBody(target: Target) -> tuple[bool, str]:
    return _firstRecord(
        target, lambda send: send.encrypt(b"\x05body"), "a CONFIRM with a 4-byte body"
    )


@case("4.4.7", "4.4", "a first record that does not authenticate ends the connection")
def _garbageFirst(target: Target) -> tuple[bool, str]:
    return _firstRecord(target, lambda send: bytes(17), "a garbage first record")


@case("4.4.8", "4.4", "a replayed hello and CONFIRM are refused at key confirmation")
def _replay(target: Target) -> tuple[bool, str]:
    first = RawPeer(target)
    try:
        channel = target.channel()
        (hello,) = channel.framesToSend()
        first.send(hello)
        reply = first.receive()
        if reply is None:
            return False, "the server ended the first connection instead of replying"
        channel.receiveFrame(reply)
        (confirm,) = channel.framesToSend()
        first.send(confirm)
    finally:
        first.close()
    peer = RawPeer(target)
    try:
        peer.send(hello)
        replayed = peer.receive()
        if replayed is None:
            return True, "the server ended the connection on the replayed hello"
        if replayed[:1] != b"\x00":
            return True, f"the server rejected the replayed hello (reason {replayed[1:2].hex()})"
        try:
            peer.sendRaw(framed(confirm, confirm))
        except (BrokenPipeError, ConnectionResetError):
            pass
        return _dropped(peer, "the replayed CONFIRM")
    finally:
        peer.close()


@case("4.4.9", "4.4", "the server uses a fresh ephemeral key for each connection")
def _freshEphemeral(target: Target) -> tuple[bool, str]:
    _requireNoise(target)
    keys = []
    for _ in range(2):
        peer = RawPeer(target)
        try:
            peer.send(target.channel().framesToSend()[0])
            reply = peer.receive()
            if reply is None or reply[:1] != b"\x00":
                return False, f"the hello was not accepted: {reply!r}"
            keys.append(reply[1:33])
        finally:
            peer.close()
    return keys[0] != keys[1], f"ephemeral keys {keys[0].hex()[:16]}... and {keys[1].hex()[:16]}..."


@case("4.5.1", "4.5", "a fernet handshake completes")
def _fernet(target: Target) -> tuple[bool, str]:
    return _noiseEstablished(target, "fernet")


@case("4.5.2", "4.5", "a fernet hello whose plaintext is not 20 bytes is rejected with reason 4")
def _fernetShort(target: Target) -> tuple[bool, str]:
    token = Fernet(asKeyring(target.key).fernetKeys()[0]).encrypt(bytes(16) + b"\x00\x10\x00")
    return _rejection(target, _header(3) + token, 4, suiteID=3)


@case("4.5.3", "4.5", "a fernet hello under another key is rejected with reason 3")
def _fernetWrongKey(target: Target) -> tuple[bool, str]:
    token = Fernet(asKeyring(generateKey()).fernetKeys()[0]).encrypt(
        bytes(16) + b"\x00\x00\x03\xe8"
    )
    return _rejection(target, _header(3) + token, 3, suiteID=3)
