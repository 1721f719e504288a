# -*- test-case-name: tests.test_independent -*-
"""
A second implementation of the NetStructer wire protocol (version 2), written
from C{docs/protocol.rst} alone on stock libraries: C{noiseprotocol} for
Noise_NNpsk0, plain C{msgpack}, C{cryptography}'s HKDF and Fernet, and
blocking sockets.  It imports nothing from C{netstructer}: the tests use it
to check that the document is enough to talk to the reference
implementation, in both directions.
"""

from __future__ import annotations

import base64
import hashlib
import os
import socket
import struct
from dataclasses import dataclass
from typing import Any

import msgpack
from cryptography.fernet import Fernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from noise.connection import NoiseConnection

MAGIC = b"NSTR"
VERSION = 2
SUITES = {1: b"Noise_NNpsk0_25519_AESGCM_SHA256", 2: b"Noise_NNpsk0_25519_ChaChaPoly_SHA256"}
FERNET = 3
VALUE, PING, PONG, CLOSE, CONFIRM, VALUES = 1, 2, 3, 4, 5, 6
M = 16 * 1024 * 1024
U32 = struct.Struct(">I")


class ProtocolViolation(Exception):
    """
    The peer broke a rule of the document.
    """


def subkey(userKey: bytes, info: bytes) -> bytes:
    """
    Section 2.3: HKDF-SHA256 of the raw user key, no salt.
    """
    raw = base64.urlsafe_b64decode(userKey)
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(raw)


# Section 6: values.
@dataclass(frozen=True)
class _Marker:
    code: int


_MARKERS = {tuple: 1, set: 2, frozenset: 3}
_FROM_MARKER = {1: tuple, 2: set, 3: frozenset}


def _toWire(value: Any) -> Any:
    kind = type(value)
    if kind in _MARKERS:
        return [msgpack.ExtType(_MARKERS[kind], b""), *(_toWire(v) for v in value)]
    if kind is list:
        return [_toWire(v) for v in value]
    if kind is dict:
        return {_Key(_toWire(k)): _toWire(v) for k, v in value.items()}
    if kind is bytearray:
        return msgpack.ExtType(4, bytes(value))
    if kind is complex:
        return msgpack.ExtType(5, struct.pack(">dd", value.real, value.imag))
    if kind is int and not -(2**63) <= value <= 2**64 - 1:
        size = (value + (value < 0)).bit_length() // 8 + 1
        return msgpack.ExtType(6, value.to_bytes(size, "big", signed=True))
    return value


class _Key:
    """
    A dict key already converted for the wire (it may be a list, so it is
    wrapped to stay hashable until it is packed).
    """

    def __init__(self, wire: Any) -> None:
        self.wire = wire

    def __hash__(self) -> int:
        return id(self)


def _default(obj: Any) -> Any:
    raise TypeError(f"cannot encode {type(obj)!r}")


def encodeValue(value: Any) -> bytes:
    """
    Encode one value as section 6 describes.
    """
    packer = msgpack.Packer(use_bin_type=True, default=_default)
    return bytes(_pack(packer, _toWire(value)))


def _pack(packer: msgpack.Packer, wire: Any) -> bytes:
    # Maps are packed by hand so that converted keys (lists, for tuples)
    # can be written.
    if isinstance(wire, dict):
        out = bytearray(packer.pack_map_header(len(wire)))
        for key, item in wire.items():
            out += _pack(packer, key.wire)
            out += _pack(packer, item)
        return bytes(out)
    if isinstance(wire, list):
        out = bytearray(packer.pack_array_header(len(wire)))
        for item in wire:
            out += _pack(packer, item)
        return bytes(out)
    return bytes(packer.pack(wire))


def _extHook(code: int, data: bytes) -> Any:
    if code in _FROM_MARKER:
        if data:
            raise ProtocolViolation("a marker extension has a payload")
        return _Marker(code)
    if code == 4:
        return bytearray(data)
    if code == 5:
        if len(data) != 16:
            raise ProtocolViolation("a complex payload is 16 bytes")
        real, imag = struct.unpack(">dd", data)
        return complex(real, imag)
    if code == 6:
        return int.from_bytes(data, "big", signed=True)
    raise ProtocolViolation(f"unknown extension code {code}")


def _listHook(items: list[Any]) -> Any:
    if items and isinstance(items[0], _Marker):
        return _FROM_MARKER[items[0].code](items[1:])
    return items


def decodeValue(data: bytes) -> Any:
    """
    Decode one value as section 6 describes.
    """
    return msgpack.unpackb(
        data,
        raw=False,
        strict_map_key=False,
        ext_hook=_extHook,
        list_hook=_listHook,
        use_list=True,
    )


# Sections 3 to 5: frames, handshake, records.
class FrameSocket:
    """
    Frames (a u32 big-endian length, then the payload) over a socket.
    """

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock

    def send(self, payload: bytes) -> None:
        self.sock.sendall(U32.pack(len(payload)) + payload)

    def _exactly(self, count: int) -> bytes:
        data = b""
        while len(data) < count:
            chunk = self.sock.recv(count - len(data))
            if not chunk:
                raise EOFError("the connection ended")
            data += chunk
        return data

    def receive(self) -> bytes:
        (length,) = U32.unpack(self._exactly(4))
        return self._exactly(length)


class _NoiseRecords:
    def __init__(self, noise: NoiseConnection) -> None:
        self.noise = noise

    def seal(self, recordType: int, body: bytes) -> bytes:
        return bytes(self.noise.encrypt(bytes((recordType,)) + body))

    def open(self, payload: bytes) -> tuple[int, bytes]:
        plaintext = bytes(self.noise.decrypt(payload))
        if not plaintext:
            raise ProtocolViolation("an empty record")
        return plaintext[0], plaintext[1:]


class _FernetRecords:
    def __init__(self, fernet: Fernet, sessionID: bytes, direction: int) -> None:
        self.fernet, self.sessionID, self.direction = fernet, sessionID, direction
        self.sent = self.received = 0

    def seal(self, recordType: int, body: bytes) -> bytes:
        header = self.sessionID + bytes((self.direction,)) + struct.pack(">Q", self.sent)
        self.sent += 1
        return self.fernet.encrypt(header + bytes((recordType,)) + body)

    def open(self, payload: bytes) -> tuple[int, bytes]:
        plaintext = self.fernet.decrypt(payload)
        expected = self.sessionID + bytes((1 - self.direction,))
        if len(plaintext) < 42 or plaintext[:33] != expected:
            raise ProtocolViolation("a record of another session or direction")
        if struct.unpack(">Q", plaintext[33:41])[0] != self.received:
            raise ProtocolViolation("a record out of sequence")
        self.received += 1
        return plaintext[41], plaintext[42:]


def _sessionID(hello: bytes, reply: bytes) -> bytes:
    return hashlib.sha256(
        b"NetStructer/1 fernet session" + U32.pack(len(hello)) + hello + reply
    ).digest()


class Session:
    """
    One side of an established session: values and the close handshake.
    """

    def __init__(self, frames: FrameSocket, records: Any, version: int) -> None:
        self.frames, self.records, self.version = frames, records, version
        self.closeSent = False
        self.pending: list[Any] = []

    def sendValue(self, value: Any) -> None:
        self.frames.send(self.records.seal(VALUE, encodeValue(value)))

    def sendValues(self, values: list[Any]) -> None:
        body = bytes(msgpack.Packer().pack_array_header(len(values)))
        body += b"".join(encodeValue(v) for v in values)
        self.frames.send(self.records.seal(VALUES, body))

    def receive(self) -> Any:
        """
        @return: The next value, or a C{("close", code, reason)} tuple for
            the peer's CLOSE (answered at once if this side had not sent its
            own).
        """
        while not self.pending:
            recordType, body = self.records.open(self.frames.receive())
            if recordType == VALUE:
                return decodeValue(body)
            if recordType == VALUES:
                self.pending.extend(_splitValues(body))
            elif recordType == PING:
                if not self.closeSent:
                    self.frames.send(self.records.seal(PONG, body))
            elif recordType == PONG:
                continue
            elif recordType == CLOSE:
                if not 2 <= len(body) <= 258:
                    raise ProtocolViolation("a CLOSE body of the wrong size")
                if not self.closeSent:
                    self.close(struct.unpack(">H", body[:2])[0])
                return ("close", struct.unpack(">H", body[:2])[0], body[2:].decode("utf-8"))
            else:
                raise ProtocolViolation(f"unknown record type {recordType}")
        return self.pending.pop(0)

    def close(self, code: int = 0, reason: str = "") -> None:
        """
        Send this side's CLOSE; nothing follows it.
        """
        self.closeSent = True
        self.frames.send(self.records.seal(CLOSE, struct.pack(">H", code) + reason.encode()))


def _splitValues(body: bytes) -> list[Any]:
    values = decodeValue(body)
    if not isinstance(values, list) or len(values) < 2:
        raise ProtocolViolation("a VALUES body is an array of two or more values")
    return values


def connect(sock: socket.socket, userKey: bytes, suiteID: int = 1) -> Session:
    """
    Run the client's handshake (section 4) over a connected socket.
    """
    frames = FrameSocket(sock)
    header = MAGIC + bytes((VERSION, suiteID))
    if suiteID == FERNET:
        fernet = Fernet(base64.urlsafe_b64encode(subkey(userKey, b"netstructer/1 fernet")))
        nonce = os.urandom(16)
        hello = header + fernet.encrypt(nonce + U32.pack(M))
        frames.send(hello)
        reply = frames.receive()
        _checkReply(reply)
        payload = fernet.decrypt(reply[1:])
        if len(payload) != 37 or payload[16:32] != nonce:
            raise ProtocolViolation("the reply answers another hello")
        records: Any = _FernetRecords(fernet, _sessionID(hello, reply), 0)
        version = payload[36]
    else:
        noise = NoiseConnection.from_name(SUITES[suiteID])
        noise.set_as_initiator()
        noise.set_psks(subkey(userKey, b"netstructer/1 noise-psk"))
        noise.set_prologue(b"NetStructer" + header)
        noise.start_handshake()
        frames.send(header + bytes(noise.write_message(U32.pack(M))))
        reply = frames.receive()
        _checkReply(reply)
        payload = bytes(noise.read_message(reply[1:]))
        if len(payload) != 5 or not 1 <= payload[4] <= VERSION:
            raise ProtocolViolation("a version 2 reply payload is M and the version")
        records = _NoiseRecords(noise)
        version = payload[4]
    frames.send(records.seal(CONFIRM, b""))
    return Session(frames, records, version)


def _checkReply(reply: bytes) -> None:
    if reply[:1] == b"\x01":
        raise ProtocolViolation(f"rejected: reason {reply[1]}, server version {reply[2]}")
    if reply[:1] != b"\x00":
        raise ProtocolViolation("an unknown reply status")


def accept(sock: socket.socket, userKey: bytes) -> Session:
    """
    Run the server's handshake (section 4) over an accepted socket: every
    suite is accepted.
    """
    frames = FrameSocket(sock)
    hello = frames.receive()
    if len(hello) < 6 or hello[:4] != MAGIC or hello[4] < 1 or hello[5] not in (1, 2, 3):
        frames.send(bytes((1, 4, VERSION, 3, 1, 2, 3)))
        raise ProtocolViolation("not a hello this server answers")
    version, suiteID = min(hello[4], VERSION), hello[5]
    extra = bytes((version,)) if hello[4] >= 2 else b""
    if suiteID == FERNET:
        fernet = Fernet(base64.urlsafe_b64encode(subkey(userKey, b"netstructer/1 fernet")))
        payload = fernet.decrypt(hello[6:])
        if len(payload) != 20:
            raise ProtocolViolation("a fernet hello payload is 20 bytes")
        reply = b"\x00" + fernet.encrypt(os.urandom(16) + payload[:16] + U32.pack(M) + extra)
        frames.send(reply)
        records: Any = _FernetRecords(fernet, _sessionID(hello, reply), 1)
    else:
        noise = NoiseConnection.from_name(SUITES[suiteID])
        noise.set_as_responder()
        noise.set_psks(subkey(userKey, b"netstructer/1 noise-psk"))
        noise.set_prologue(b"NetStructer" + hello[:6])
        noise.start_handshake()
        payload = bytes(noise.read_message(hello[6:]))
        if len(payload) != 4:
            raise ProtocolViolation("a hello payload is M, 4 bytes")
        frames.send(b"\x00" + bytes(noise.write_message(U32.pack(M) + extra)))
        records = _NoiseRecords(noise)
    recordType, body = records.open(frames.receive())
    if recordType != CONFIRM or body:
        raise ProtocolViolation("the client's first record is not CONFIRM")
    return Session(frames, records, version)
