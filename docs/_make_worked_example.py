# -*- test-case-name: tests.test_spec -*-
"""
An independent implementation of the NetStructer wire protocol, written from
C{docs/protocol.rst} alone, and the generator of that document's worked
example.

Nothing here comes from C{netstructer.channel}, C{netstructer._crypto} or
C{netstructer.keys}: the reference uses only C{hashlib}, C{hmac}, C{struct}
and the primitives of C{cryptography} (X25519, AES-GCM, ChaCha20-Poly1305,
Fernet), the way a client in another language would.  The one exception is
the encoding of the example's values, taken from L{netstructer.values.encode}
(section 6 of the document is checked against it separately).  It does not
decode values either: it only finds where each value of a VALUES record
begins and ends, and hands the encodings over.

Print the worked example's blocks, ready to paste into the document, with::

    PYTHONPATH=. python docs/_make_worked_example.py

C{tests/test_spec.py} runs this module and checks that the blocks in the
document are exactly what it prints, that the frames it computes are, byte
for byte, those L{netstructer.channel.Channel} produces from the same inputs,
that its intermediate values are those of L{netstructer._crypto}, and that
its client and server interoperate with L{netstructer.channel.Channel} in
every suite.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import struct
import sys
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidTag
from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives.asymmetric.x25519 import (
    X25519PrivateKey,
    X25519PublicKey,
)
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305

# Section 2: keys.
INFO_NOISE_PSK = b"netstructer/1 noise-psk"
INFO_FERNET = b"netstructer/1 fernet"
INFO_KEY_ID = b"netstructer/1 key-id"

# Section 4: the handshake.
MAGIC = b"NSTR"
VERSION = 3
MIN_VERSION = 1
SUITE_AESGCM = 1
SUITE_CHACHAPOLY = 2
SUITE_FERNET = 3
NOISE_CIPHERS = {SUITE_AESGCM: "AESGCM", SUITE_CHACHAPOLY: "ChaChaPoly"}
PROLOGUE_LABEL = b"NetStructer"
FERNET_SESSION_LABEL = b"NetStructer/1 fernet session"
FERNET_NONCE_SIZE = 16
ACCEPT = 0x00
REJECT = 0x01
REJECT_VERSION = 1
REJECT_SUITE = 2
REJECT_AUTHENTICATION = 3
REJECT_MALFORMED = 4
MAX_VALUE_SIZE_LIMIT = 2**31 - 2

# Section 5: records.
VALUE = 0x01
PING = 0x02
PONG = 0x03
CLOSE = 0x04
CONFIRM = 0x05
VALUES = 0x06
TAG_SIZE = 16

# Section 6: the msgpack first bytes that matter to a VALUES record.
FIXARRAY = 0x90
ARRAY16 = 0xDC
ARRAY32 = 0xDD
MARKER_CODES = frozenset((1, 2, 3))

U32 = struct.Struct(">I")
FERNET_RECORD_HEAD = struct.Struct(">32sBQB")


class ReferenceError(Exception):
    """
    The peer broke the protocol, or failed authentication.

    @ivar rejection: For a rejected hello, the server's reason code.
    """

    def __init__(self, message: str, rejection: int | None = None) -> None:
        super().__init__(message)
        self.rejection = rejection


def frame(payload: bytes) -> bytes:
    """
    @param payload: A frame payload.
    @return: The payload with its 4-byte big-endian length prefix.
    """
    return U32.pack(len(payload)) + payload


def hkdfSHA256(ikm: bytes, info: bytes, length: int) -> bytes:
    """
    HKDF-SHA256 (RFC 5869) with no salt, for outputs of at most 32 bytes.

    @param ikm: The input key material (the raw user key).
    @param info: The purpose string.
    @param length: The output length, at most 32.
    @return: The derived bytes.
    """
    prk = hmac.digest(bytes(32), ikm, "sha256")
    return hmac.digest(prk, info + b"\x01", "sha256")[:length]


@dataclass(frozen=True)
class Subkeys:
    """
    What one user key derives.

    @ivar raw: The 32 raw bytes of the user key.
    @ivar noisePSK: The Noise pre-shared key.
    @ivar fernetRaw: The 32 derived bytes of the Fernet key.
    @ivar fernetKey: The Fernet key (urlsafe base64 of C{fernetRaw}).
    @ivar keyIDBytes: The 16 derived bytes of the key ID.
    @ivar keyID: The key ID, 8 lowercase hex digits.
    """

    raw: bytes
    noisePSK: bytes
    fernetRaw: bytes
    fernetKey: bytes
    keyIDBytes: bytes
    keyID: str


def deriveSubkeys(userKey: str) -> Subkeys:
    """
    @param userKey: A user key: 44 characters of urlsafe base64.
    @return: Its subkeys.
    """
    raw = base64.urlsafe_b64decode(userKey)
    if len(userKey) != 44 or len(raw) != 32:
        raise ValueError("a user key is 32 bytes in 44 characters of urlsafe base64")
    fernetRaw = hkdfSHA256(raw, INFO_FERNET, 32)
    keyIDBytes = hkdfSHA256(raw, INFO_KEY_ID, 16)
    return Subkeys(
        raw=raw,
        noisePSK=hkdfSHA256(raw, INFO_NOISE_PSK, 32),
        fernetRaw=fernetRaw,
        fernetKey=base64.urlsafe_b64encode(fernetRaw),
        keyIDBytes=keyIDBytes,
        keyID=keyIDBytes[:4].hex(),
    )


def noiseHKDF(chainingKey: bytes, ikm: bytes, outputs: int) -> list[bytes]:
    """
    The Noise HKDF function over HMAC-SHA256.

    @param chainingKey: The chaining key.
    @param ikm: The input key material.
    @param outputs: 2 or 3.
    @return: The outputs, 32 bytes each.
    """
    temp = hmac.digest(chainingKey, ikm, "sha256")
    result: list[bytes] = []
    previous = b""
    for index in range(1, outputs + 1):
        previous = hmac.digest(temp, previous + bytes((index,)), "sha256")
        result.append(previous)
    return result


class NoiseCipher:
    """
    One AEAD key and its 64-bit counter nonce.

    @ivar key: The 32-byte key.
    @ivar n: The next nonce.
    """

    def __init__(self, suiteID: int, key: bytes) -> None:
        self.key = key
        self.n = 0
        if suiteID == SUITE_AESGCM:
            self._aead: AESGCM | ChaCha20Poly1305 = AESGCM(key)
            self._nonce = struct.Struct(">4xQ")
        else:
            self._aead = ChaCha20Poly1305(key)
            self._nonce = struct.Struct("<4xQ")

    def encrypt(self, plaintext: bytes, ad: bytes = b"") -> bytes:
        """
        @return: Ciphertext and tag, with the next nonce.
        """
        result = self._aead.encrypt(self._nonce.pack(self.n), plaintext, ad)
        self.n += 1
        return result

    def decrypt(self, ciphertext: bytes, ad: bytes = b"") -> bytes:
        """
        @return: The plaintext.
        @raise cryptography.exceptions.InvalidTag: It does not authenticate.
        """
        result = self._aead.decrypt(self._nonce.pack(self.n), ciphertext, ad)
        self.n += 1
        return result


class NoiseHandshake:
    """
    The symmetric state of one side of C{Noise_NNpsk0_25519_*_SHA256}, with a
    trace of every intermediate value.

    @ivar h: The handshake hash.
    @ivar ck: The chaining key.
    @ivar trace: C{(name, description, value)} for each value computed.
    """

    def __init__(self, suiteID: int, psk: bytes, header: bytes) -> None:
        self.suiteID = suiteID
        self.psk = psk
        self.trace: list[tuple[str, str, bytes]] = []
        name = f"Noise_NNpsk0_25519_{NOISE_CIPHERS[suiteID]}_SHA256".encode("ascii")
        self.h = name.ljust(32, b"\x00") if len(name) <= 32 else hashlib.sha256(name).digest()
        self.ck = self.h
        self._cipher: NoiseCipher | None = None
        self._note("h0", "h = ck = protocol name", self.h)
        self.mixHash(PROLOGUE_LABEL + header)
        self._note("h1", "h after MixHash(prologue)", self.h)

    def _note(self, name: str, description: str, value: bytes) -> None:
        self.trace.append((name, description, value))

    def mixHash(self, data: bytes) -> None:
        self.h = hashlib.sha256(self.h + data).digest()

    def mixKey(self, ikm: bytes) -> bytes:
        self.ck, key = noiseHKDF(self.ck, ikm, 2)
        self._cipher = NoiseCipher(self.suiteID, key)
        return key

    def mixKeyAndHash(self, ikm: bytes) -> bytes:
        self.ck, tempH, key = noiseHKDF(self.ck, ikm, 3)
        self.mixHash(tempH)
        self._cipher = NoiseCipher(self.suiteID, key)
        return key

    def encryptAndHash(self, plaintext: bytes) -> bytes:
        if self._cipher is None:
            raise RuntimeError("no key yet")
        ciphertext = self._cipher.encrypt(plaintext, self.h)
        self.mixHash(ciphertext)
        return ciphertext

    def decryptAndHash(self, ciphertext: bytes) -> bytes:
        if self._cipher is None:
            raise RuntimeError("no key yet")
        plaintext = self._cipher.decrypt(ciphertext, self.h)
        self.mixHash(ciphertext)
        return plaintext

    def psk0(self) -> None:
        """
        The C{psk} token of message 1.
        """
        self.mixKeyAndHash(self.psk)
        self._note("ck2", "ck after psk", self.ck)
        self._note("h2", "h after psk", self.h)

    def message1E(self, initiatorPublic: bytes) -> None:
        """
        The C{e} token of message 1 (written or read).
        """
        self.mixHash(initiatorPublic)
        key = self.mixKey(initiatorPublic)
        self._note("h3", "h after e", self.h)
        self._note("ck3", "ck after e", self.ck)
        self._note("k1", "k after e: encrypts payload 1\n(nonce 0, ad = h3)", key)

    def message2E(self, responderPublic: bytes) -> None:
        """
        The C{e} token of message 2 (written or read).
        """
        self.mixHash(responderPublic)
        self.mixKey(responderPublic)
        self._note("h5", "h after e (message 2)", self.h)
        self._note("ck4", "ck after e (message 2)", self.ck)

    def message2EE(self, sharedSecret: bytes) -> None:
        """
        The C{ee} token of message 2.
        """
        key = self.mixKey(sharedSecret)
        self._note("dh", "X25519 shared secret of the ephemerals", sharedSecret)
        self._note("ck5", "ck after ee", self.ck)
        self._note("k2", "k after ee: encrypts payload 2\n(nonce 0, ad = h5)", key)

    def split(self) -> tuple[NoiseCipher, NoiseCipher]:
        """
        @return: The client-to-server and server-to-client ciphers.
        """
        clientToServer, serverToClient = noiseHKDF(self.ck, b"", 2)
        self._note("h6", "h after payload 2: the handshake hash", self.h)
        self._note("kc2s", "Split(): client-to-server key", clientToServer)
        self._note("ks2c", "Split(): server-to-client key", serverToClient)
        return (
            NoiseCipher(self.suiteID, clientToServer),
            NoiseCipher(self.suiteID, serverToClient),
        )


def _publicBytes(privateKey: X25519PrivateKey) -> bytes:
    return privateKey.public_key().public_bytes_raw()


def _checkMaxValueSize(payload: bytes) -> int:
    if len(payload) != 4:
        raise ReferenceError("a handshake payload is 4 bytes")
    size: int = U32.unpack(payload)[0]
    if not 1 <= size <= MAX_VALUE_SIZE_LIMIT:
        raise ReferenceError("invalid maximum value size")
    return size


class NoiseRecords:
    """
    The record layer of the noise suites, for one side.
    """

    def __init__(self, sender: NoiseCipher, receiver: NoiseCipher) -> None:
        self.sender = sender
        self.receiver = receiver

    def seal(self, recordType: int, body: bytes = b"") -> bytes:
        return self.sender.encrypt(bytes((recordType,)) + body)

    def open(self, payload: bytes) -> tuple[int, bytes]:
        plaintext = self.receiver.decrypt(payload)
        if not plaintext:
            raise ReferenceError("empty record")
        return plaintext[0], plaintext[1:]


class FernetRecords:
    """
    The record layer of the fernet suite, for one side.
    """

    def __init__(self, fernet: Fernet, sessionID: bytes, direction: int) -> None:
        self.fernet = fernet
        self.sessionID = sessionID
        self.direction = direction
        self.sendSequence = 0
        self.receiveSequence = 0

    def seal(self, recordType: int, body: bytes = b"") -> bytes:
        head = FERNET_RECORD_HEAD.pack(
            self.sessionID, self.direction, self.sendSequence, recordType
        )
        self.sendSequence += 1
        return self.fernet.encrypt(head + body)

    def open(self, payload: bytes) -> tuple[int, bytes]:
        try:
            plaintext = self.fernet.decrypt(payload)
        except InvalidToken:
            raise ReferenceError("a record failed authentication") from None
        if len(plaintext) < FERNET_RECORD_HEAD.size:
            raise ReferenceError("a record is too short")
        sessionID, direction, sequence, recordType = FERNET_RECORD_HEAD.unpack_from(plaintext)
        if sessionID != self.sessionID or direction != 1 - self.direction:
            raise ReferenceError("a record of another session or direction")
        if sequence != self.receiveSequence:
            raise ReferenceError("a record out of order")
        self.receiveSequence += 1
        return recordType, plaintext[FERNET_RECORD_HEAD.size :]


def fernetSessionID(hello: bytes, reply: bytes) -> bytes:
    """
    @param hello: The whole hello frame payload.
    @param reply: The whole accepting reply frame payload, status byte first.
    @return: The session ID.
    """
    return hashlib.sha256(FERNET_SESSION_LABEL + U32.pack(len(hello)) + hello + reply).digest()


def closeBody(code: int, reason: str = "") -> bytes:
    """
    @return: The body of a close record.
    """
    encoded = reason.encode("utf-8")[:256].decode("utf-8", "ignore").encode("utf-8")
    return struct.pack(">H", code) + encoded


MAX_BATCH_VALUES = 16384
"""The most values a VALUES record may hold (section 5.8)."""

MAX_BATCH_BODY = 65536
"""The longest body of a VALUES record (section 5.8)."""


def valuesBody(encodedValues: list[bytes]) -> bytes:
    """
    The body of a VALUES record (section 5.8): one msgpack array, with the
    shortest header, of encoded values.

    @param encodedValues: At least two encoded values, in order.
    @return: The body.
    """
    count = len(encodedValues)
    if not 2 <= count <= MAX_BATCH_VALUES:
        raise ValueError("a VALUES record holds 2 to 16 384 values")
    header = bytes((FIXARRAY | count,)) if count <= 15 else struct.pack(">BH", ARRAY16, count)
    return header + b"".join(encodedValues)


# How the msgpack families (section 6.1) lay out what follows their first
# byte: for the first bytes not listed, whatever is in the first byte itself.
# Fixed: a payload of this many bytes.
_FIXED_SIZES = dict(
    zip(
        range(0xCA, 0xD9),
        # float 32, 64; uint 8 to 64; int 8 to 64; fixext 1 to 16, type included.
        (4, 8, 1, 2, 4, 8, 1, 2, 4, 8, 2, 3, 5, 9, 17),
        strict=True,
    )
)
# Sized: a big-endian length of this many bytes, then that many bytes.
_SIZED_WIDTHS = {0xC4: 1, 0xC5: 2, 0xC6: 4, 0xD9: 1, 0xDA: 2, 0xDB: 4}
# Extensions: a length of this many bytes, the type byte, the payload.
_EXT_WIDTHS = {0xC7: 1, 0xC8: 2, 0xC9: 4}
# Containers: a count of this many bytes; per counted item, this many objects.
_CONTAINER_WIDTHS = {0xDC: (2, 1), 0xDD: (4, 1), 0xDE: (2, 2), 0xDF: (4, 2)}


def _readLength(data: bytes, offset: int, width: int) -> int:
    if offset + width > len(data):
        raise ReferenceError("a VALUES record ends in the middle of a value")
    return int.from_bytes(data[offset : offset + width], "big")


def _objectEnd(data: bytes, offset: int) -> int:
    """
    Find where the msgpack object starting at C{offset} ends, without
    decoding it.

    @param data: The bytes holding the object.
    @param offset: Where it starts.
    @return: The offset just after it.
    @raise ReferenceError: C{data} ends before the object does, or holds the
        never-used byte C{c1}.
    """
    pending = 1
    while pending:
        if offset >= len(data):
            raise ReferenceError("a VALUES record ends in the middle of a value")
        first = data[offset]
        offset += 1
        pending -= 1
        if first <= 0x7F or first >= 0xE0 or first in (0xC0, 0xC2, 0xC3):
            continue
        if first <= 0x8F:
            pending += 2 * (first & 0x0F)
        elif first <= 0x9F:
            pending += first & 0x0F
        elif first <= 0xBF:
            offset += first & 0x1F
        elif first in _FIXED_SIZES:
            offset += _FIXED_SIZES[first]
        elif first in _SIZED_WIDTHS:
            width = _SIZED_WIDTHS[first]
            offset += width + _readLength(data, offset, width)
        elif first in _EXT_WIDTHS:
            width = _EXT_WIDTHS[first]
            offset += width + 1 + _readLength(data, offset, width)
        elif first in _CONTAINER_WIDTHS:
            width, objects = _CONTAINER_WIDTHS[first]
            pending += objects * _readLength(data, offset, width)
            offset += width
        else:
            raise ReferenceError("the never-used msgpack byte c1")
    if offset > len(data):
        raise ReferenceError("a VALUES record ends in the middle of a value")
    return offset


def _isMarker(data: bytes, offset: int) -> bool:
    """
    @return: Whether the object at C{offset} is a tuple, set or frozenset
        marker: an empty extension of code 1, 2 or 3.
    """
    width = _EXT_WIDTHS.get(data[offset], 0)
    end = offset + 1 + width
    return (
        width != 0
        and end < len(data)
        and not any(data[offset + 1 : end])
        and data[end] in MARKER_CODES
    )


def splitValues(body: bytes, maxValueSize: int | None = None) -> list[bytes]:
    """
    Split the body of a VALUES record (section 5.8) into the encodings of
    its values, checking its structure.  Each encoding is then decoded as
    the body of a VALUE record would be, with the same limits.

    @param body: The record's body.
    @param maxValueSize: The receiver's M, if the body is to be checked
        against it.
    @return: The encoded values, in order.
    @raise ReferenceError: The body is over M, is not exactly one array,
        holds fewer than two or more than 16 384 values, or starts with a
        marker.
    """
    if maxValueSize is not None and len(body) > maxValueSize:
        raise ReferenceError("a VALUES record over the maximum value size")
    if len(body) > MAX_BATCH_BODY:
        raise ReferenceError("a VALUES record over 65 536 bytes")
    if not body:
        raise ReferenceError("an empty VALUES record")
    first = body[0]
    if FIXARRAY <= first <= FIXARRAY | 0x0F:
        count, offset = first & 0x0F, 1
    elif first == ARRAY16:
        count, offset = _readLength(body, 1, 2), 3
    elif first == ARRAY32:
        count, offset = _readLength(body, 1, 4), 5
    else:
        raise ReferenceError("a VALUES record's body is not an array")
    if count < 2:
        raise ReferenceError("a VALUES record holds fewer than two values")
    if count > MAX_BATCH_VALUES:
        raise ReferenceError("a VALUES record holds more than 16 384 values")
    if offset < len(body) and _isMarker(body, offset):
        raise ReferenceError("a VALUES record's array starts with a marker")
    encodedValues = []
    for _ in range(count):
        end = _objectEnd(body, offset)
        encodedValues.append(body[offset:end])
        offset = end
    if offset != len(body):
        raise ReferenceError("bytes after a VALUES record's array")
    return encodedValues


class ReferenceClient:
    """
    A client: hello, reply, confirmation, then records.

    @ivar records: The record layer, once the reply is read.
    @ivar peerMaxValueSize: The server's maximum value size, once known.
    """

    def __init__(
        self,
        userKey: str,
        suiteID: int,
        maxValueSize: int = 16 * 1024 * 1024,
        ephemeral: X25519PrivateKey | None = None,
        fernetNonce: bytes | None = None,
        version: int = VERSION,
    ) -> None:
        self.subkeys = deriveSubkeys(userKey)
        self.version = version
        self.suiteID = suiteID
        self.maxValueSize = maxValueSize
        self.ephemeral = ephemeral or X25519PrivateKey.generate()
        self.fernetNonce = fernetNonce or bytes(FERNET_NONCE_SIZE)
        self.header = MAGIC + bytes((version, suiteID))
        self.records: NoiseRecords | FernetRecords | None = None
        self.peerMaxValueSize: int | None = None
        self.sessionVersion: int | None = None
        self._hello = b""
        self.handshake: NoiseHandshake | None = None

    def hello(self) -> bytes:
        """
        @return: The hello frame payload.
        """
        payload = U32.pack(self.maxValueSize)
        if self.suiteID == SUITE_FERNET:
            token = Fernet(self.subkeys.fernetKey).encrypt(self.fernetNonce + payload)
            self._hello = self.header + token
            return self._hello
        handshake = self.handshake = NoiseHandshake(
            self.suiteID, self.subkeys.noisePSK, self.header
        )
        handshake.psk0()
        ephemeralPublic = _publicBytes(self.ephemeral)
        handshake.message1E(ephemeralPublic)
        self._hello = self.header + ephemeralPublic + handshake.encryptAndHash(payload)
        handshake._note("h4", "h after payload 1", handshake.h)
        return self._hello

    def readReply(self, reply: bytes) -> bytes:
        """
        @param reply: The server's reply frame payload.
        @return: The confirmation record to send.
        @raise ReferenceError: The server rejected the hello, or failed
            authentication.
        """
        if reply[:1] == bytes((REJECT,)):
            if len(reply) < 4 or len(reply) != 4 + reply[3]:
                raise ReferenceError("malformed rejection")
            raise ReferenceError("rejected", rejection=reply[1])
        if reply[:1] != bytes((ACCEPT,)):
            raise ReferenceError("unknown status")
        body = reply[1:]
        if self.suiteID == SUITE_FERNET:
            fernet = Fernet(self.subkeys.fernetKey)
            try:
                payload = fernet.decrypt(body)
            except InvalidToken:
                raise ReferenceError("the reply failed authentication") from None
            if len(payload) < 32 or payload[16:32] != self.fernetNonce:
                raise ReferenceError("the reply answers another hello")
            self._readServerPayload(payload[32:])
            self.records = FernetRecords(fernet, fernetSessionID(self._hello, reply), 0)
        else:
            handshake = self.handshake
            if handshake is None:
                raise RuntimeError("readReply before hello")
            serverPublic = body[:32]
            handshake.message2E(serverPublic)
            handshake.message2EE(
                self.ephemeral.exchange(X25519PublicKey.from_public_bytes(serverPublic))
            )
            payload = handshake.decryptAndHash(body[32:])
            self._readServerPayload(payload)
            send, receive = handshake.split()
            self.records = NoiseRecords(send, receive)
        return self.records.seal(CONFIRM)

    def _readServerPayload(self, payload: bytes) -> None:
        # Section 4.3: from version 2 on, the server's payload carries the
        # negotiated version after M.
        if self.version < 2:
            self.peerMaxValueSize = _checkMaxValueSize(payload)
            self.sessionVersion = 1
            return
        if len(payload) != 5:
            raise ReferenceError("a reply payload of version 2 or later is 5 bytes")
        if not MIN_VERSION <= payload[4] <= self.version:
            raise ReferenceError("the server chose a version this client did not offer")
        self.peerMaxValueSize = _checkMaxValueSize(payload[:4])
        self.sessionVersion = payload[4]


class ReferenceServer:
    """
    A server accepting one suite family and a keyring.

    @ivar records: The record layer, once the hello is answered.
    @ivar confirmed: Whether the client's confirmation arrived.
    """

    def __init__(
        self,
        userKeys: list[str],
        suiteIDs: tuple[int, ...] = (SUITE_AESGCM, SUITE_CHACHAPOLY),
        maxValueSize: int = 16 * 1024 * 1024,
        ephemeral: X25519PrivateKey | None = None,
        fernetNonce: bytes | None = None,
        version: int = VERSION,
    ) -> None:
        self.subkeys = [deriveSubkeys(key) for key in userKeys]
        self.version = version
        self.sessionVersion: int | None = None
        self.suiteIDs = tuple(sorted(suiteIDs))
        self.maxValueSize = maxValueSize
        self.ephemeral = ephemeral or X25519PrivateKey.generate()
        self.fernetNonce = fernetNonce or bytes(range(FERNET_NONCE_SIZE))
        self.records: NoiseRecords | FernetRecords | None = None
        self.peerMaxValueSize: int | None = None
        self.confirmed = False

    def _reject(self, reason: int) -> bytes:
        return bytes((REJECT, reason, self.version, len(self.suiteIDs), *self.suiteIDs))

    def readHello(self, hello: bytes) -> bytes:
        """
        @param hello: The client's hello frame payload.
        @return: The reply frame payload: an acceptance or a rejection.
        """
        if len(hello) < 6 or hello[:4] != MAGIC:
            return self._reject(REJECT_MALFORMED)
        # Section 4.6: a server of version 2 or later answers any client of
        # version 1 or later; a version 1 server accepts only version 1.
        if hello[4] < MIN_VERSION or (self.version == 1 and hello[4] != 1):
            return self._reject(REJECT_VERSION)
        suiteID = hello[5]
        if suiteID not in self.suiteIDs:
            return self._reject(REJECT_SUITE)
        try:
            return self._answerHello(hello, suiteID)
        except ReferenceError:
            return self._reject(REJECT_MALFORMED)

    def _answerHello(self, hello: bytes, suiteID: int) -> bytes:
        header, body = hello[:6], hello[6:]
        if suiteID != SUITE_FERNET and len(body) < 48:
            raise ReferenceError("a noise message 1 is at least 48 bytes")
        payload = U32.pack(self.maxValueSize)
        self.sessionVersion = min(hello[4], self.version)
        if hello[4] >= 2:
            payload += bytes((self.sessionVersion,))
        for subkeys in self.subkeys:
            if suiteID == SUITE_FERNET:
                fernet = Fernet(subkeys.fernetKey)
                try:
                    clientPayload = fernet.decrypt(body)
                except InvalidToken:
                    continue
                if len(clientPayload) != 20:
                    raise ReferenceError("malformed fernet hello")
                self.peerMaxValueSize = _checkMaxValueSize(clientPayload[16:])
                reply = bytes((ACCEPT,)) + fernet.encrypt(
                    self.fernetNonce + clientPayload[:16] + payload
                )
                self.records = FernetRecords(fernet, fernetSessionID(hello, reply), 1)
                return reply
            handshake = NoiseHandshake(suiteID, subkeys.noisePSK, header)
            handshake.psk0()
            clientPublic = body[:32]
            handshake.message1E(clientPublic)
            try:
                clientPayload = handshake.decryptAndHash(body[32:])
            except InvalidTag:
                continue
            self.peerMaxValueSize = _checkMaxValueSize(clientPayload)
            serverPublic = _publicBytes(self.ephemeral)
            handshake.message2E(serverPublic)
            handshake.message2EE(
                self.ephemeral.exchange(X25519PublicKey.from_public_bytes(clientPublic))
            )
            reply = bytes((ACCEPT,)) + serverPublic + handshake.encryptAndHash(payload)
            clientToServer, serverToClient = handshake.split()
            self.records = NoiseRecords(serverToClient, clientToServer)
            return reply
        return self._reject(REJECT_AUTHENTICATION)

    def readConfirmation(self, record: bytes) -> None:
        """
        @param record: The client's first record.
        @raise ReferenceError: It is not an authentic confirmation.
        """
        if self.records is None:
            raise RuntimeError("readConfirmation before readHello")
        try:
            recordType, body = self.records.open(record)
        except InvalidTag:
            raise ReferenceError("the confirmation failed authentication") from None
        if recordType != CONFIRM or body:
            raise ReferenceError("the first record is not a confirmation")
        self.confirmed = True


# The worked example of section 8.

EXAMPLE_KEY = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
CLIENT_EPHEMERAL = bytes([0x11] * 32)
SERVER_EPHEMERAL = bytes([0x22] * 32)
EXAMPLE_MAX_VALUE_SIZE = 16 * 1024 * 1024
EXAMPLE_VALUE = ["hi im haytam", 128, {b"gg": "gg"}, {1, 2, 6, 4}, (False, True)]
EXAMPLE_VALUES = [(1, 2), "two"]

Field = tuple[bytes, str]


@dataclass
class Block:
    """
    One hex block of the document: fields, each bytes and an annotation.

    @ivar name: The block's name, as in C{.. spec-hex: NAME}.
    @ivar fields: The fields, in order.
    @ivar values: Named values, for the tests.
    """

    name: str
    fields: list[Field] = field(default_factory=list)
    values: dict[str, bytes] = field(default_factory=dict)

    def add(self, data: bytes, annotation: str, name: str | None = None) -> None:
        self.fields.append((data, annotation))
        if name is not None:
            self.values[name] = data

    @property
    def data(self) -> bytes:
        """
        The block's bytes, all fields concatenated.
        """
        return b"".join(data for data, _ in self.fields)

    def render(self) -> str:
        """
        @return: The block as it appears in the document.
        """
        lines = [f".. spec-hex: {self.name}", "", "::", ""]
        for data, annotation in self.fields:
            chunks = [data[start : start + 16] for start in range(0, len(data), 16)]
            notes = annotation.split("\n")
            for index in range(max(len(chunks), len(notes))):
                chunk = chunks[index].hex(" ") if index < len(chunks) else ""
                note = notes[index] if index < len(notes) else ""
                if index and note:
                    # Indented: the note goes on, the field does too.
                    note = "  " + note
                lines.append(f"    {chunk:<47}   {note}".rstrip())
        return "\n".join(lines) + "\n"


def _split(data: bytes, *sizes: int) -> list[bytes]:
    parts = []
    offset = 0
    for size in sizes:
        parts.append(data[offset : offset + size])
        offset += size
    if offset != len(data):
        raise AssertionError(f"fields of {offset} bytes, data of {len(data)}")
    return parts


def workedExample() -> list[Block]:
    """
    Run the worked example with the reference implementation.

    @return: The document's blocks, in order.
    """
    from netstructer.values import encode

    subkeys = deriveSubkeys(EXAMPLE_KEY)
    clientEphemeral = X25519PrivateKey.from_private_bytes(CLIENT_EPHEMERAL)
    serverEphemeral = X25519PrivateKey.from_private_bytes(SERVER_EPHEMERAL)
    client = ReferenceClient(
        EXAMPLE_KEY, SUITE_AESGCM, EXAMPLE_MAX_VALUE_SIZE, ephemeral=clientEphemeral
    )
    server = ReferenceServer(
        [EXAMPLE_KEY], maxValueSize=EXAMPLE_MAX_VALUE_SIZE, ephemeral=serverEphemeral
    )
    blocks = []

    keys = Block("example-subkeys")
    keys.add(subkeys.raw, "the user key (raw): bytes 0x00 to 0x1f", "raw")
    keys.add(subkeys.noisePSK, "Noise PSK:\ninfo netstructer/1 noise-psk, 32 bytes", "psk")
    keys.add(
        subkeys.fernetRaw,
        "Fernet key: info netstructer/1 fernet, 32 bytes;\n"
        f"base64 {subkeys.fernetKey.decode('ascii')}",
        "fernet",
    )
    keys.add(
        subkeys.keyIDBytes,
        f"key ID: info netstructer/1 key-id, 16 bytes;\nthe first 4 in hex: {subkeys.keyID}",
        "keyID",
    )
    blocks.append(keys)

    ephemerals = Block("example-ephemerals")
    ephemerals.add(CLIENT_EPHEMERAL, "client ephemeral private key (input)")
    ephemerals.add(
        _publicBytes(clientEphemeral), "client ephemeral public key, derived", "clientPublic"
    )
    ephemerals.add(SERVER_EPHEMERAL, "server ephemeral private key (input)")
    ephemerals.add(
        _publicBytes(serverEphemeral), "server ephemeral public key, derived", "serverPublic"
    )
    blocks.append(ephemerals)

    prologue = Block("example-prologue")
    prologue.add(PROLOGUE_LABEL, '"NetStructer"')
    prologue.add(client.header, f"the hello header: NSTR, version {VERSION}, suite 1")
    blocks.append(prologue)

    payloadHex = U32.pack(EXAMPLE_MAX_VALUE_SIZE).hex(" ")
    hello = client.hello()
    magic, version, suite, ePub, ciphertext, tag = _split(hello, 4, 1, 1, 32, 4, 16)
    helloBlock = Block("example-hello")
    helloBlock.add(U32.pack(len(hello)), f"length prefix: {len(hello)}")
    helloBlock.add(magic, 'magic "NSTR"')
    helloBlock.add(version, f"version {VERSION}")
    helloBlock.add(suite, "suite 1 (noise, AESGCM)")
    helloBlock.add(ePub, "message 1: e.pub of the client")
    helloBlock.add(ciphertext, f"payload {payloadHex} (M = 16 MiB), encrypted")
    helloBlock.add(tag, "AES-GCM tag")
    blocks.append(helloBlock)

    reply = server.readHello(hello)
    status, ePub, ciphertext, tag = _split(reply, 1, 32, 5, 16)
    replyBlock = Block("example-reply")
    replyBlock.add(U32.pack(len(reply)), f"length prefix: {len(reply)}")
    replyBlock.add(status, "status: accept")
    replyBlock.add(ePub, "message 2: e.pub of the server")
    replyBlock.add(
        ciphertext,
        f"payload {payloadHex} {VERSION:02x} (M = 16 MiB, version {VERSION}), encrypted",
    )
    replyBlock.add(tag, "AES-GCM tag")
    blocks.append(replyBlock)

    confirmation = client.readReply(reply)
    server.readConfirmation(confirmation)
    ciphertext, tag = _split(confirmation, 1, 16)
    confirmBlock = Block("example-confirm")
    confirmBlock.add(U32.pack(len(confirmation)), f"length prefix: {len(confirmation)}")
    confirmBlock.add(ciphertext, "plaintext 05 (CONFIRM), encrypted")
    confirmBlock.add(tag, "AES-GCM tag")
    blocks.append(confirmBlock)

    encoded = encode(EXAMPLE_VALUE)
    parts = _split(encoded, 1, 13, 2, 1, 4, 3, 1, 3, 4, 1, 3, 2)
    encoding = Block("example-encoding")
    for data, note in zip(
        parts,
        [
            "fixarray of 5 items: the list",
            'fixstr of 12 bytes: "hi im haytam"',
            "uint 8: 128",
            "fixmap of 1 entry: the dict",
            "key: bin 8 of 2 bytes: b'gg'",
            'value: fixstr of 2 bytes: "gg"',
            "fixarray of 5 items: the set",
            "marker: ext 8, length 0, code 2 (set)",
            "members 1, 2, 4, 6 (positive fixints)",
            "fixarray of 3 items: the tuple",
            "marker: ext 8, length 0, code 1 (tuple)",
            "items false, true",
        ],
        strict=True,
    ):
        encoding.add(data, note)
    blocks.append(encoding)

    if client.records is None:
        raise RuntimeError("the handshake did not complete")
    record = client.records.seal(VALUE, encoded)
    ciphertext, tag = _split(record, 1 + len(encoded), 16)
    valueBlock = Block("example-value")
    valueBlock.add(U32.pack(len(record)), f"length prefix: {len(record)}")
    valueBlock.add(
        ciphertext,
        f"plaintext 01 (VALUE) || the {len(encoded)}-byte\nencoding, encrypted",
    )
    valueBlock.add(tag, "AES-GCM tag")
    blocks.append(valueBlock)

    encodedValues = [encode(value) for value in EXAMPLE_VALUES]
    body = valuesBody(encodedValues)
    if splitValues(body) != encodedValues:
        raise AssertionError("a VALUES body does not split back into its values")
    plaintext = bytes((VALUES,)) + body
    parts = _split(plaintext, 1, 1, 1, 3, 2, 4)
    valuesPlaintext = Block("example-values-plaintext")
    for data, note in zip(
        parts,
        [
            "record type 06 (VALUES)",
            "fixarray of 2 items: the values",
            "first value (1, 2): fixarray of 3 items",
            "marker: ext 8, length 0, code 1 (tuple),\nfirst in the tuple's own array",
            "items 1, 2",
            'second value: fixstr of 3 bytes: "two"',
        ],
        strict=True,
    ):
        valuesPlaintext.add(data, note)
    blocks.append(valuesPlaintext)

    record = client.records.seal(VALUES, body)
    ciphertext, tag = _split(record, len(plaintext), 16)
    valuesBlock = Block("example-values")
    valuesBlock.add(U32.pack(len(record)), f"length prefix: {len(record)}")
    valuesBlock.add(ciphertext, f"plaintext 06 (VALUES) || the {len(body)}-byte\nbody, encrypted")
    valuesBlock.add(tag, "AES-GCM tag")
    blocks.append(valuesBlock)

    handshake = client.handshake
    if handshake is None or client.records is None:
        raise RuntimeError("the handshake did not run")
    trace = Block("example-trace")
    for name, description, value in handshake.trace:
        trace.add(value, f"{name}: {description}", name)
    blocks.append(trace)
    return blocks


def main() -> None:
    """
    Print the worked example's blocks.
    """
    for block in workedExample():
        sys.stdout.write(block.render() + "\n")


if __name__ == "__main__":
    main()
