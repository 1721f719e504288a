# -*- test-case-name: tests.test_crypto -*-
"""
Tests for L{netstructer._crypto}: the Noise C{NNpsk0} handshake against the
published cacophony test vectors, its failure modes, and the transport
L{CipherState}.
"""

from __future__ import annotations

import doctest
import hmac
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from netstructer import _crypto
from netstructer._crypto import (
    CIPHER_NAMES,
    TAG_SIZE,
    CipherState,
    NNpsk0Initiator,
    NNpsk0Responder,
    NNpsk0Template,
    _HandshakeOrderError,
    _hkdf2,
    _hkdf3,
    _initialHash,
    _NonceExhaustedError,
    _protocolName,
    _SymmetricState,
    generateEphemeral,
)

_VECTORS_PATH = Path(__file__).parent / "NNpsk0_25519_SHA256.json"

PSK = bytes(range(32))
OTHER_PSK = bytes(range(1, 33))
PROLOGUE = b"NetStructer test prologue"
INITIATOR_EPHEMERAL = bytes.fromhex(
    "893e28b9dc6ca8d611ab664754b8ceb7bac5117349a4439a6b0569da977c464a"
)
RESPONDER_EPHEMERAL = bytes.fromhex(
    "bbdb4cdbd309f1a1f2e1456967fe288cadd6f712d65dc7b7793d5e63da6b375b"
)


def _loadVectors() -> list[dict[str, Any]]:
    """
    Load the cacophony C{NNpsk0} test vectors shipped with the tests.

    @return: The list of vectors, one per cipher.
    """
    with _VECTORS_PATH.open(encoding="utf-8") as vectorFile:
        vectors: list[dict[str, Any]] = json.load(vectorFile)["vectors"]
    return vectors


def _key(hexOrBytes: str | bytes) -> X25519PrivateKey:
    """
    Make an X25519 private key from its raw bytes.

    @param hexOrBytes: The 32 raw bytes, or their hex encoding.
    @return: The key.
    """
    raw = bytes.fromhex(hexOrBytes) if isinstance(hexOrBytes, str) else hexOrBytes
    return X25519PrivateKey.from_private_bytes(raw)


def _bitFlips(data: bytes) -> Iterator[bytes]:
    """
    Yield every copy of C{data} that differs from it in exactly one bit.

    @param data: The original bytes.
    @return: An iterator over C{8 * len(data)} altered copies.
    """
    for index in range(len(data)):
        for bit in range(8):
            altered = bytearray(data)
            altered[index] ^= 1 << bit
            yield bytes(altered)


def _handshake(
    cipherName: str,
    payload1: bytes = b"",
    payload2: bytes = b"",
) -> tuple[NNpsk0Initiator, NNpsk0Responder]:
    """
    Run a complete handshake with fresh ephemeral keys and the test PSK.

    @param cipherName: The cipher to use.
    @param payload1: The payload of message 1.
    @param payload2: The payload of message 2.
    @return: The completed initiator and responder, not yet split.
    """
    initiator = NNpsk0Initiator(cipherName, PSK, PROLOGUE)
    responder = NNpsk0Responder(cipherName, PSK, PROLOGUE)
    assert responder.readMessage1(initiator.writeMessage1(payload1)) == payload1
    assert initiator.readMessage2(responder.writeMessage2(payload2)) == payload2
    return initiator, responder


def _transport(
    cipherName: str,
) -> tuple[CipherState, CipherState, CipherState, CipherState]:
    """
    Run a complete handshake and split both sides.

    @param cipherName: The cipher to use.
    @return: C{(initiatorSend, initiatorReceive, responderSend,
        responderReceive)}.
    """
    initiator, responder = _handshake(cipherName)
    initiatorSend, initiatorReceive = initiator.split()
    responderSend, responderReceive = responder.split()
    return initiatorSend, initiatorReceive, responderSend, responderReceive


class CacophonyVectorTests(SynchronousTestCase):
    """
    The handshake and transport match the published cacophony vectors for
    C{Noise_NNpsk0_25519_*_SHA256} byte for byte.
    """

    def test_vectorsCoverBothCiphers(self) -> None:
        """
        The vector file holds one vector per supported cipher, named as
        L{_protocolName} names them.
        """
        names = sorted(vector["protocol_name"] for vector in _loadVectors())
        self.assertEqual(
            names, sorted(_protocolName(name).decode("ascii") for name in CIPHER_NAMES)
        )

    def test_vectors(self) -> None:
        """
        For each vector, messages 1 and 2, the handshake hash and every
        transport message (alternating initiator to responder and back) are
        exactly the published ciphertexts, and each decrypts on the other side
        to the published payload.
        """
        for vector in _loadVectors():
            with self.subTest(protocol=vector["protocol_name"]):
                self._checkVector(vector)

    def test_vectorsFromTemplates(self) -> None:
        """
        Handshakes started from L{NNpsk0Template}s match the vectors too, the
        second pair from the same templates as well as the first.
        """
        for vector in _loadVectors():
            cipherName = vector["protocol_name"].split("_")[3]
            initiatorTemplate = NNpsk0Template(
                cipherName,
                bytes.fromhex(vector["init_psks"][0]),
                bytes.fromhex(vector["init_prologue"]),
            )
            responderTemplate = NNpsk0Template(
                cipherName,
                bytes.fromhex(vector["resp_psks"][0]),
                bytes.fromhex(vector["resp_prologue"]),
            )
            for _ in range(2):
                with self.subTest(protocol=vector["protocol_name"]):
                    self._checkVector(
                        vector,
                        initiatorTemplate.initiator(_key(vector["init_ephemeral"])),
                        responderTemplate.responder(_key(vector["resp_ephemeral"])),
                    )

    def _checkVector(
        self,
        vector: dict[str, Any],
        initiator: NNpsk0Initiator | None = None,
        responder: NNpsk0Responder | None = None,
    ) -> None:
        """
        Check one vector.

        @param vector: The vector, as loaded from JSON.
        @param initiator: The initiator to check, made with the vector's
            PSK, prologue and ephemeral key; by default one is made here.
        @param responder: The responder to check, likewise.
        """
        cipherName = vector["protocol_name"].split("_")[3]
        self.assertEqual(_protocolName(cipherName).decode("ascii"), vector["protocol_name"])
        if initiator is None:
            initiator = NNpsk0Initiator(
                cipherName,
                bytes.fromhex(vector["init_psks"][0]),
                bytes.fromhex(vector["init_prologue"]),
                ephemeral=_key(vector["init_ephemeral"]),
            )
        if responder is None:
            responder = NNpsk0Responder(
                cipherName,
                bytes.fromhex(vector["resp_psks"][0]),
                bytes.fromhex(vector["resp_prologue"]),
                ephemeral=_key(vector["resp_ephemeral"]),
            )
        messages = [
            (bytes.fromhex(message["payload"]), bytes.fromhex(message["ciphertext"]))
            for message in vector["messages"]
        ]

        payload, expected = messages[0]
        message1 = initiator.writeMessage1(payload)
        self.assertEqual(message1.hex(), expected.hex())
        self.assertEqual(responder.readMessage1(message1), payload)

        payload, expected = messages[1]
        message2 = responder.writeMessage2(payload)
        self.assertEqual(message2.hex(), expected.hex())
        self.assertEqual(initiator.readMessage2(message2), payload)

        self.assertEqual(initiator.handshakeHash.hex(), vector["handshake_hash"])
        self.assertEqual(responder.handshakeHash.hex(), vector["handshake_hash"])

        initiatorSend, initiatorReceive = initiator.split()
        responderSend, responderReceive = responder.split()
        for index, (payload, expected) in enumerate(messages[2:]):
            if index % 2 == 0:
                sender, receiver = initiatorSend, responderReceive
            else:
                sender, receiver = responderSend, initiatorReceive
            ciphertext = sender.encrypt(payload)
            self.assertEqual(ciphertext.hex(), expected.hex())
            self.assertEqual(receiver.decrypt(ciphertext), payload)


class TemplateTests(SynchronousTestCase):
    """
    L{NNpsk0Template}: the part of a handshake fixed by its cipher, PSK and
    prologue, computed once for many handshakes.
    """

    def test_manyHandshakes(self) -> None:
        """
        One pair of templates starts any number of handshakes; each generates
        its own ephemeral keys, so no two share a message or a handshake
        hash.
        """
        for cipherName in CIPHER_NAMES:
            initiatorTemplate = NNpsk0Template(cipherName, PSK, PROLOGUE)
            responderTemplate = NNpsk0Template(cipherName, PSK, PROLOGUE)
            seen: set[bytes] = set()
            for _ in range(3):
                initiator = initiatorTemplate.initiator()
                responder = responderTemplate.responder()
                message1 = initiator.writeMessage1(b"same")
                self.assertEqual(responder.readMessage1(message1), b"same")
                message2 = responder.writeMessage2(b"")
                initiator.readMessage2(message2)
                self.assertEqual(initiator.handshakeHash, responder.handshakeHash)
                seen.update((message1[:32], message2[:32], initiator.handshakeHash))
                initiatorSend, _ = initiator.split()
                _, responderReceive = responder.split()
                self.assertEqual(responderReceive.decrypt(initiatorSend.encrypt(b"x")), b"x")
            self.assertEqual(len(seen), 9)

    def test_sameAsConstructor(self) -> None:
        """
        A handshake from a template is the handshake the constructor makes
        with the same arguments.
        """
        template = NNpsk0Template("AESGCM", PSK, PROLOGUE)
        fromTemplate = template.initiator(_key(INITIATOR_EPHEMERAL))
        direct = NNpsk0Initiator("AESGCM", PSK, PROLOGUE, _key(INITIATOR_EPHEMERAL))
        self.assertEqual(fromTemplate.writeMessage1(b"p"), direct.writeMessage1(b"p"))

    def test_wrongPskOrPrologue(self) -> None:
        """
        A responder from a template with another PSK or prologue refuses the
        initiator's message 1.
        """
        message1 = NNpsk0Template("AESGCM", PSK, PROLOGUE).initiator().writeMessage1(b"")
        for psk, prologue in ((OTHER_PSK, PROLOGUE), (PSK, PROLOGUE + b"!")):
            responder = NNpsk0Template("AESGCM", psk, prologue).responder()
            self.assertRaises(InvalidTag, responder.readMessage1, message1)

    def test_invalidArguments(self) -> None:
        """
        An unknown cipher or a PSK that is not 32 bytes is refused.
        """
        self.assertRaises(ValueError, NNpsk0Template, "AES256GCM", PSK, PROLOGUE)
        self.assertRaises(ValueError, NNpsk0Template, "AESGCM", PSK[:16], PROLOGUE)

    def test_reprHidesSecrets(self) -> None:
        """
        A template's repr names its cipher and nothing secret.
        """
        self.assertEqual(
            repr(NNpsk0Template("ChaChaPoly", PSK, PROLOGUE)), "<NNpsk0Template ChaChaPoly>"
        )

    def test_unusedKeysMakeNoCipher(self) -> None:
        """
        The key set by the C{psk} token is replaced before it encrypts
        anything, so no AEAD is built for it.
        """
        for handshake in (
            NNpsk0Template("AESGCM", PSK, PROLOGUE).responder(),
            NNpsk0Initiator("AESGCM", PSK, PROLOGUE),
        ):
            self.assertEqual(len(handshake._symmetric._key), 32)
            self.assertIsNone(handshake._symmetric._cipher)

    def test_generateEphemeral(self) -> None:
        """
        L{generateEphemeral} makes a new key every time.
        """
        publics = {generateEphemeral().public_key().public_bytes_raw() for _ in range(5)}
        self.assertEqual(len(publics), 5)


class PrimitiveTests(SynchronousTestCase):
    """
    The HKDF and C{InitializeSymmetric} building blocks follow the
    specification.
    """

    def test_hkdfIsRFC5869(self) -> None:
        """
        Noise's C{HKDF(ck, ikm, n)} is RFC 5869 HKDF-SHA256 with C{ck} as salt
        and empty info: L{_hkdf2} and L{_hkdf3} agree with C{cryptography}'s
        HKDF for empty, 32-byte and odd-sized input key material.
        """
        chainingKey = bytes(range(100, 132))
        for ikm in (b"", bytes(32), b"\xff" * 45):
            expected = HKDF(hashes.SHA256(), 96, chainingKey, b"").derive(ikm)
            self.assertEqual(
                _hkdf3(chainingKey, ikm), (expected[:32], expected[32:64], expected[64:])
            )
            self.assertEqual(_hkdf2(chainingKey, ikm), (expected[:32], expected[32:64]))

    def test_hkdfIsNoiseHKDF(self) -> None:
        """
        L{_hkdf2} and L{_hkdf3} compute Noise's C{HKDF} as the specification
        writes it with HMAC-SHA256, for input key material given as bytes or
        as a memoryview.
        """
        chainingKey = bytes(range(100, 132))
        for ikm in (b"", bytes(32), b"\xff" * 45):
            tempKey = hmac.digest(chainingKey, ikm, "sha256")
            output1 = hmac.digest(tempKey, b"\x01", "sha256")
            output2 = hmac.digest(tempKey, output1 + b"\x02", "sha256")
            output3 = hmac.digest(tempKey, output2 + b"\x03", "sha256")
            for material in (ikm, memoryview(ikm)):
                self.assertEqual(_hkdf2(chainingKey, material), (output1, output2))
                self.assertEqual(_hkdf3(chainingKey, material), (output1, output2, output3))

    def test_initialHashShortName(self) -> None:
        """
        A protocol name of at most 32 bytes is padded with zero bytes, not
        hashed; C{Noise_NNpsk0_25519_AESGCM_SHA256} is exactly 32 bytes and so
        is used as it is.
        """
        self.assertEqual(_initialHash(b"Noise_NN"), b"Noise_NN" + bytes(24))
        name = _protocolName("AESGCM")
        self.assertEqual(name, b"Noise_NNpsk0_25519_AESGCM_SHA256")
        self.assertEqual(len(name), 32)
        self.assertEqual(_initialHash(name), name)

    def test_initialHashLongName(self) -> None:
        """
        A protocol name longer than 32 bytes, such as
        C{Noise_NNpsk0_25519_ChaChaPoly_SHA256}, is hashed with SHA-256.
        """
        name = _protocolName("ChaChaPoly")
        self.assertEqual(len(name), 36)
        digest = hashes.Hash(hashes.SHA256())
        digest.update(name)
        self.assertEqual(_initialHash(name), digest.finalize())

    def test_symmetricStateWithoutKeyPassesThrough(self) -> None:
        """
        Before any key is set, C{EncryptAndHash} and C{DecryptAndHash} return
        their input unchanged and still mix it into the handshake hash.
        """
        writer = _SymmetricState("ChaChaPoly", b"prologue")
        reader = _SymmetricState("ChaChaPoly", b"prologue")
        before = writer.handshakeHash
        self.assertEqual(writer.encryptAndHash(b"clear"), b"clear")
        self.assertEqual(reader.decryptAndHash(b"clear"), b"clear")
        self.assertNotEqual(writer.handshakeHash, before)
        self.assertEqual(writer.handshakeHash, reader.handshakeHash)


class CipherStateTests(SynchronousTestCase):
    """
    L{CipherState} uses the Noise nonce formats, counts, and accepts buffers.
    """

    def test_nonceFormats(self) -> None:
        """
        The AESGCM nonce is four zero bytes and the big-endian counter; the
        ChaChaPoly nonce is four zero bytes and the little-endian counter.
        """
        key = bytes(range(32))
        cases: list[tuple[str, AESGCM | ChaCha20Poly1305, Literal["big", "little"]]] = [
            ("AESGCM", AESGCM(key), "big"),
            ("ChaChaPoly", ChaCha20Poly1305(key), "little"),
        ]
        for cipherName, raw, byteOrder in cases:
            for counter in (0, 1, 0x0102030405060708, 2**64 - 2):
                cipher = CipherState(cipherName, key)
                cipher._n = counter
                nonce = bytes(4) + counter.to_bytes(8, byteOrder)
                self.assertEqual(
                    cipher.encrypt(b"payload", b"ad"), raw.encrypt(nonce, b"payload", b"ad")
                )
                self.assertEqual(cipher.nonce, counter + 1)

    def test_tagSize(self) -> None:
        """
        A ciphertext is L{TAG_SIZE} (16) bytes longer than its plaintext.
        """
        self.assertEqual(TAG_SIZE, 16)
        for cipherName in CIPHER_NAMES:
            self.assertEqual(len(CipherState(cipherName, bytes(32)).encrypt(b"abc")), 3 + 16)

    def test_nonceCounts(self) -> None:
        """
        C{nonce} starts at zero and grows by one per successful call.
        """
        sender = CipherState("AESGCM", bytes(32))
        receiver = CipherState("AESGCM", bytes(32))
        self.assertEqual((sender.nonce, receiver.nonce), (0, 0))
        for expected in range(1, 4):
            receiver.decrypt(sender.encrypt(b"x"))
            self.assertEqual((sender.nonce, receiver.nonce), (expected, expected))

    def test_noneAdIsEmptyAd(self) -> None:
        """
        C{ad=None} authenticates the same as C{ad=b""}; another AD fails.
        """
        for cipherName in CIPHER_NAMES:
            ciphertext = CipherState(cipherName, bytes(32)).encrypt(b"x", None)
            self.assertEqual(CipherState(cipherName, bytes(32)).decrypt(ciphertext, b""), b"x")
            self.assertRaises(
                InvalidTag, CipherState(cipherName, bytes(32)).decrypt, ciphertext, b"y"
            )

    def test_buffers(self) -> None:
        """
        C{bytearray} and (sliced) C{memoryview} inputs are accepted and give
        the same results as C{bytes}.
        """
        for cipherName in CIPHER_NAMES:
            expected = CipherState(cipherName, bytes(32)).encrypt(b"middle")
            buffer = bytearray(b"--middle--")
            self.assertEqual(
                CipherState(cipherName, bytes(32)).encrypt(memoryview(buffer)[2:8]), expected
            )
            self.assertEqual(CipherState(cipherName, bytes(32)).encrypt(b"middle"), expected)
            framed = b"\x00\x00" + expected
            self.assertEqual(
                CipherState(cipherName, bytes(32)).decrypt(memoryview(framed)[2:]), b"middle"
            )
            self.assertEqual(
                CipherState(cipherName, bytes(32)).decrypt(bytearray(expected)), b"middle"
            )

    def test_failedDecryptDoesNotAdvance(self) -> None:
        """
        A failed decryption raises C{InvalidTag} unchanged and leaves the
        counter where it was, so the genuine record still decrypts.
        """
        for cipherName in CIPHER_NAMES:
            sender = CipherState(cipherName, bytes(32))
            receiver = CipherState(cipherName, bytes(32))
            ciphertext = sender.encrypt(b"genuine")
            self.assertRaises(InvalidTag, receiver.decrypt, b"\x00" + ciphertext[1:])
            self.assertEqual(receiver.nonce, 0)
            self.assertEqual(receiver.decrypt(ciphertext), b"genuine")

    def test_invalidArguments(self) -> None:
        """
        An unknown cipher name or a key that is not 32 bytes is refused with
        C{ValueError}.
        """
        self.assertRaises(ValueError, CipherState, "AESGCM256", bytes(32))
        self.assertRaises(ValueError, CipherState, "AESGCM", bytes(16))
        self.assertRaises(ValueError, CipherState, "ChaChaPoly", bytes(33))

    def test_reprHidesKey(self) -> None:
        """
        The repr shows the cipher and nonce but not the key.
        """
        key = bytes.fromhex("ab" * 32)
        cipher = CipherState("AESGCM", key)
        cipher.encrypt(b"")
        self.assertEqual(repr(cipher), "<CipherState AESGCM nonce=1>")
        self.assertNotIn("abab", repr(cipher))


class NonceExhaustionTests(SynchronousTestCase):
    """
    The reserved nonce C{2 ** 64 - 1} is never used.
    """

    def test_lastNonceThenRefuse(self) -> None:
        """
        Nonce C{2 ** 64 - 2} is still used; after it, both encrypting and
        decrypting are refused with an error telling to reconnect, and the
        counters do not move.
        """
        for cipherName in CIPHER_NAMES:
            sender, _, _, receiver = _transport(cipherName)
            sender._n = receiver._n = 2**64 - 2
            self.assertEqual(receiver.decrypt(sender.encrypt(b"last")), b"last")
            self.assertEqual((sender.nonce, receiver.nonce), (2**64 - 1, 2**64 - 1))
            error = self.assertRaises(_NonceExhaustedError, sender.encrypt, b"one more")
            self.assertIn("reconnect", str(error))
            error = self.assertRaises(_NonceExhaustedError, receiver.decrypt, bytes(20))
            self.assertIn("reconnect", str(error))
            self.assertEqual((sender.nonce, receiver.nonce), (2**64 - 1, 2**64 - 1))


class HandshakeAuthenticationTests(SynchronousTestCase):
    """
    The handshake fails, with C{InvalidTag}, unless both sides hold the same
    PSK and prologue and every handshake byte arrives unaltered.
    """

    def test_wrongPskResponder(self) -> None:
        """
        A responder with another PSK cannot read message 1.
        """
        for cipherName in CIPHER_NAMES:
            message1 = NNpsk0Initiator(cipherName, PSK, PROLOGUE).writeMessage1(b"hi")
            responder = NNpsk0Responder(cipherName, OTHER_PSK, PROLOGUE)
            self.assertRaises(InvalidTag, responder.readMessage1, message1)

    def test_wrongPskInitiator(self) -> None:
        """
        If the responder answers a message 1 made with its own PSK, an
        initiator holding another PSK cannot read that answer, even with the
        same ephemeral key and prologue.
        """
        for cipherName in CIPHER_NAMES:
            initiator = NNpsk0Initiator(
                cipherName, PSK, PROLOGUE, ephemeral=_key(INITIATOR_EPHEMERAL)
            )
            initiator.writeMessage1(b"")
            impostor = NNpsk0Initiator(
                cipherName, OTHER_PSK, PROLOGUE, ephemeral=_key(INITIATOR_EPHEMERAL)
            )
            responder = NNpsk0Responder(cipherName, OTHER_PSK, PROLOGUE)
            responder.readMessage1(impostor.writeMessage1(b""))
            message2 = responder.writeMessage2(b"")
            self.assertRaises(InvalidTag, initiator.readMessage2, message2)

    def test_prologueMismatch(self) -> None:
        """
        Different prologues make message 1 fail to authenticate.
        """
        for cipherName in CIPHER_NAMES:
            message1 = NNpsk0Initiator(cipherName, PSK, b"version 1").writeMessage1(b"")
            responder = NNpsk0Responder(cipherName, PSK, b"version 2")
            self.assertRaises(InvalidTag, responder.readMessage1, message1)

    def test_bitFlipsMessage1(self) -> None:
        """
        Every single-bit alteration of message 1, in the ephemeral key or in
        the encrypted payload, is detected.
        """
        for cipherName in CIPHER_NAMES:
            message1 = NNpsk0Initiator(cipherName, PSK, PROLOGUE).writeMessage1(b"payload")
            for altered in _bitFlips(message1):
                responder = NNpsk0Responder(cipherName, PSK, PROLOGUE)
                self.assertRaises(InvalidTag, responder.readMessage1, altered)
            self.assertEqual(
                NNpsk0Responder(cipherName, PSK, PROLOGUE).readMessage1(message1), b"payload"
            )

    def test_bitFlipsMessage2(self) -> None:
        """
        Every single-bit alteration of message 2, in the ephemeral key (even
        its top bit, which X25519 ignores) or in the encrypted payload, is
        detected.
        """
        for cipherName in CIPHER_NAMES:
            message1 = self._initiatorAfterMessage1(cipherName).writeMessage1(b"")
            responder = NNpsk0Responder(cipherName, PSK, PROLOGUE)
            responder.readMessage1(message1)
            message2 = responder.writeMessage2(b"payload")
            for altered in _bitFlips(message2):
                initiator = self._initiatorAfterMessage1(cipherName)
                initiator.writeMessage1(b"")
                self.assertRaises(InvalidTag, initiator.readMessage2, altered)
            initiator = self._initiatorAfterMessage1(cipherName)
            initiator.writeMessage1(b"")
            self.assertEqual(initiator.readMessage2(message2), b"payload")

    def _initiatorAfterMessage1(self, cipherName: str) -> NNpsk0Initiator:
        """
        Make an initiator with a fixed ephemeral key, so that every instance
        writes the same message 1.

        @param cipherName: The cipher to use.
        @return: The new initiator.
        """
        return NNpsk0Initiator(cipherName, PSK, PROLOGUE, ephemeral=_key(INITIATOR_EPHEMERAL))

    def test_shortMessages(self) -> None:
        """
        A message shorter than an ephemeral key and a tag (48 bytes) raises
        C{ValueError} on either side.
        """
        for cipherName in CIPHER_NAMES:
            responder = NNpsk0Responder(cipherName, PSK, PROLOGUE)
            self.assertRaises(ValueError, responder.readMessage1, bytes(47))
            initiator = NNpsk0Initiator(cipherName, PSK, PROLOGUE)
            initiator.writeMessage1(b"")
            self.assertRaises(ValueError, initiator.readMessage2, bytes(47))

    def test_emptyPayloadMessagesAre48Bytes(self) -> None:
        """
        With empty payloads, messages 1 and 2 are exactly 48 bytes: the
        ephemeral key and the tag.
        """
        for cipherName in CIPHER_NAMES:
            initiator = NNpsk0Initiator(cipherName, PSK, PROLOGUE)
            responder = NNpsk0Responder(cipherName, PSK, PROLOGUE)
            message1 = initiator.writeMessage1(b"")
            self.assertEqual(len(message1), 48)
            self.assertEqual(responder.readMessage1(message1), b"")
            message2 = responder.writeMessage2(b"")
            self.assertEqual(len(message2), 48)
            self.assertEqual(initiator.readMessage2(message2), b"")

    def test_handshakeMessageLimit(self) -> None:
        """
        Handshake messages keep Noise's 65 535-byte limit: the largest payload
        that fits is accepted, one byte more is refused on writing, and a
        longer message is refused on reading.
        """
        for cipherName in CIPHER_NAMES:
            largest = bytes(65535 - 48)
            initiator = NNpsk0Initiator(cipherName, PSK, PROLOGUE)
            message1 = initiator.writeMessage1(largest)
            self.assertEqual(len(message1), 65535)
            self.assertEqual(
                NNpsk0Responder(cipherName, PSK, PROLOGUE).readMessage1(message1), largest
            )
            self.assertRaises(
                ValueError,
                NNpsk0Initiator(cipherName, PSK, PROLOGUE).writeMessage1,
                largest + b"\x00",
            )
            self.assertRaises(
                ValueError,
                NNpsk0Responder(cipherName, PSK, PROLOGUE).readMessage1,
                message1 + b"\x00",
            )
            responder = NNpsk0Responder(cipherName, PSK, PROLOGUE)
            responder.readMessage1(NNpsk0Initiator(cipherName, PSK, PROLOGUE).writeMessage1(b""))
            self.assertRaises(ValueError, responder.writeMessage2, largest + b"\x00")

    def test_lowOrderEphemeralInMessage2(self) -> None:
        """
        A message 2 carrying a low-order ephemeral key (here zero) is refused
        with C{ValueError} by the Diffie-Hellman step.
        """
        for cipherName in CIPHER_NAMES:
            initiator = NNpsk0Initiator(cipherName, PSK, PROLOGUE)
            initiator.writeMessage1(b"")
            self.assertRaises(ValueError, initiator.readMessage2, bytes(48))

    def test_lowOrderEphemeralInMessage1(self) -> None:
        """
        An initiator that knows the PSK but sends a low-order ephemeral key
        gets through message 1 (which involves no Diffie-Hellman), but the
        responder refuses to write message 2 with C{ValueError}.
        """
        for cipherName in CIPHER_NAMES:
            forger = _SymmetricState(cipherName, PROLOGUE)
            forger.mixKeyAndHash(PSK)
            lowOrder = bytes(32)
            forger.mixHash(lowOrder)
            forger.mixKey(lowOrder)
            message1 = lowOrder + forger.encryptAndHash(b"")
            responder = NNpsk0Responder(cipherName, PSK, PROLOGUE)
            self.assertEqual(responder.readMessage1(message1), b"")
            self.assertRaises(ValueError, responder.writeMessage2, b"")
            self.assertRaises(_HandshakeOrderError, responder.split)


class HandshakeStateTests(SynchronousTestCase):
    """
    The handshake objects enforce the order of their calls, derive matching
    transport ciphers once, and keep failed attempts cheap and harmless.
    """

    def test_outOfOrderInitiator(self) -> None:
        """
        An initiator refuses every call made in the wrong step with
        L{_HandshakeOrderError}, a C{RuntimeError}.
        """
        self.assertTrue(issubclass(_HandshakeOrderError, RuntimeError))
        initiator = NNpsk0Initiator("AESGCM", PSK, PROLOGUE)
        self.assertRaises(_HandshakeOrderError, initiator.readMessage2, bytes(48))
        self.assertRaises(_HandshakeOrderError, initiator.split)
        self.assertRaises(_HandshakeOrderError, getattr, initiator, "handshakeHash")
        initiator.writeMessage1(b"")
        self.assertRaises(_HandshakeOrderError, initiator.writeMessage1, b"")
        self.assertRaises(_HandshakeOrderError, initiator.split)
        self.assertRaises(_HandshakeOrderError, getattr, initiator, "handshakeHash")

    def test_outOfOrderResponder(self) -> None:
        """
        A responder refuses every call made in the wrong step with
        L{_HandshakeOrderError}.
        """
        responder = NNpsk0Responder("AESGCM", PSK, PROLOGUE)
        self.assertRaises(_HandshakeOrderError, responder.writeMessage2, b"")
        self.assertRaises(_HandshakeOrderError, responder.split)
        message1 = NNpsk0Initiator("AESGCM", PSK, PROLOGUE).writeMessage1(b"")
        responder.readMessage1(message1)
        self.assertRaises(_HandshakeOrderError, responder.readMessage1, message1)
        self.assertRaises(_HandshakeOrderError, responder.split)
        self.assertRaises(_HandshakeOrderError, getattr, responder, "handshakeHash")

    def test_splitOnce(self) -> None:
        """
        C{split} works once per side; a second call, which would hand out the
        same keys and nonces again, is refused.  The handshake hash stays
        readable.
        """
        initiator, responder = _handshake("ChaChaPoly")
        initiator.split()
        responder.split()
        self.assertRaises(_HandshakeOrderError, initiator.split)
        self.assertRaises(_HandshakeOrderError, responder.split)
        self.assertEqual(initiator.handshakeHash, responder.handshakeHash)
        self.assertEqual(len(initiator.handshakeHash), 32)

    def test_splitDirections(self) -> None:
        """
        The initiator's send cipher pairs with the responder's receive cipher
        and the other way round; the two directions use different keys.
        """
        for cipherName in CIPHER_NAMES:
            initiatorSend, initiatorReceive, responderSend, responderReceive = _transport(
                cipherName
            )
            self.assertEqual(responderReceive.decrypt(initiatorSend.encrypt(b"up")), b"up")
            self.assertEqual(initiatorReceive.decrypt(responderSend.encrypt(b"down")), b"down")
            # Same nonce (1) in both directions, yet different ciphertexts.
            self.assertNotEqual(initiatorSend.encrypt(b"same"), responderSend.encrypt(b"same"))

    def test_failedReadLeavesNothing(self) -> None:
        """
        After a failed C{readMessage1} the responder holds no PSK, chaining
        key (which stands in for the PSK once the C{psk} token is processed),
        handshake key or ephemeral key, and refuses further calls.
        """
        message1 = NNpsk0Initiator("AESGCM", PSK, PROLOGUE).writeMessage1(b"")
        responder = NNpsk0Responder(
            "AESGCM", OTHER_PSK, PROLOGUE, ephemeral=_key(RESPONDER_EPHEMERAL)
        )
        self.assertRaises(InvalidTag, responder.readMessage1, message1)
        self.assertFalse(hasattr(responder, "_psk"))
        self.assertIsNone(responder._ephemeral)
        self.assertEqual(responder._remoteEphemeral, b"")
        self.assertEqual(responder._symmetric._chainingKey, b"")
        self.assertEqual(responder._symmetric._key, b"")
        self.assertIsNone(responder._symmetric._cipher)
        self.assertRaises(_HandshakeOrderError, responder.readMessage1, message1)
        self.assertRaises(_HandshakeOrderError, responder.writeMessage2, b"")

    def test_candidatePsks(self) -> None:
        """
        A responder with several candidate PSKs tries one fresh responder per
        PSK; the one holding the initiator's PSK authenticates and completes
        the handshake.
        """
        for cipherName in CIPHER_NAMES:
            candidates = [OTHER_PSK, bytes(32), PSK]
            initiator = NNpsk0Initiator(cipherName, PSK, PROLOGUE)
            message1 = initiator.writeMessage1(b"hello")
            accepted = None
            for index, candidate in enumerate(candidates):
                responder = NNpsk0Responder(cipherName, candidate, PROLOGUE)
                try:
                    payload = responder.readMessage1(message1)
                except InvalidTag:
                    continue
                accepted = index
                break
            self.assertEqual(accepted, 2)
            self.assertEqual(payload, b"hello")
            self.assertEqual(initiator.readMessage2(responder.writeMessage2(b"")), b"")
            self.assertEqual(initiator.handshakeHash, responder.handshakeHash)

    def test_ephemeralGeneratedLazily(self) -> None:
        """
        A responder generates no ephemeral key while reading message 1; it
        does so in C{writeMessage2}, and drops it once the handshake is done.
        """
        responder = NNpsk0Responder("ChaChaPoly", PSK, PROLOGUE)
        responder.readMessage1(NNpsk0Initiator("ChaChaPoly", PSK, PROLOGUE).writeMessage1(b""))
        self.assertIsNone(responder._ephemeral)
        responder.writeMessage2(b"")
        self.assertIsNone(responder._ephemeral)

    def test_freshEphemerals(self) -> None:
        """
        Without an injected key each handshake uses a fresh ephemeral key, so
        two message 1s with the same payload differ.
        """
        first = NNpsk0Initiator("AESGCM", PSK, PROLOGUE).writeMessage1(b"same")
        second = NNpsk0Initiator("AESGCM", PSK, PROLOGUE).writeMessage1(b"same")
        self.assertNotEqual(first[:32], second[:32])
        self.assertNotEqual(first[32:], second[32:])

    def test_invalidArguments(self) -> None:
        """
        An unknown cipher or a PSK that is not 32 bytes is refused with
        C{ValueError} by both classes.
        """
        for handshakeClass in (NNpsk0Initiator, NNpsk0Responder):
            self.assertRaises(ValueError, handshakeClass, "AES256GCM", PSK, PROLOGUE)
            self.assertRaises(ValueError, handshakeClass, "AESGCM", PSK[:16], PROLOGUE)
            self.assertRaises(ValueError, handshakeClass, "AESGCM", PSK + b"\x00", PROLOGUE)

    def test_reprHidesSecrets(self) -> None:
        """
        No repr of a handshake object or its symmetric state shows the PSK,
        an ephemeral key, the chaining key or the handshake hash.
        """
        psk = bytes.fromhex("cd" * 32)
        initiator = NNpsk0Initiator("AESGCM", psk, b"", ephemeral=_key(INITIATOR_EPHEMERAL))
        responder = NNpsk0Responder("AESGCM", psk, b"")
        responder.readMessage1(initiator.writeMessage1(b""))
        initiator.readMessage2(responder.writeMessage2(b""))
        secrets = [psk.hex(), INITIATOR_EPHEMERAL.hex()[:8], initiator.handshakeHash.hex()[:8]]
        for text in (repr(initiator), repr(responder), repr(initiator._symmetric)):
            for secret in secrets:
                self.assertNotIn(secret, text)
            self.assertNotIn("\\x", text)
        self.assertEqual(repr(initiator), "<NNpsk0Initiator AESGCM step='complete'>")

    def test_docstringExample(self) -> None:
        """
        The worked example in the module docstring runs as documented.
        """
        finder = doctest.DocTestFinder(recurse=False)
        output = io.StringIO()
        runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
        for test in finder.find(_crypto, "_crypto", globs=vars(_crypto).copy()):
            runner.run(test, out=output.write)
        results = runner.summarize(verbose=False)
        self.assertGreater(results.attempted, 10)
        self.assertEqual(results.failed, 0, output.getvalue())


class TransportTests(SynchronousTestCase):
    """
    Transport records are authenticated, ordered and directional, and may be
    larger than Noise's 65 535 bytes.
    """

    def test_bitFlips(self) -> None:
        """
        Every single-bit alteration of a transport record is detected, and
        none of the failures advances the receiving counter.
        """
        for cipherName in CIPHER_NAMES:
            sender, _, _, receiver = _transport(cipherName)
            record = sender.encrypt(b"a transport record")
            for altered in _bitFlips(record):
                self.assertRaises(InvalidTag, receiver.decrypt, altered)
            self.assertEqual(receiver.nonce, 0)
            self.assertEqual(receiver.decrypt(record), b"a transport record")

    def test_truncation(self) -> None:
        """
        A record cut short, even to nothing, fails.
        """
        for cipherName in CIPHER_NAMES:
            sender, _, _, receiver = _transport(cipherName)
            record = sender.encrypt(b"whole")
            for length in (0, 1, TAG_SIZE - 1, TAG_SIZE, len(record) - 1):
                self.assertRaises(InvalidTag, receiver.decrypt, record[:length])

    def test_replay(self) -> None:
        """
        A record delivered twice fails the second time.
        """
        for cipherName in CIPHER_NAMES:
            sender, _, _, receiver = _transport(cipherName)
            record = sender.encrypt(b"once")
            self.assertEqual(receiver.decrypt(record), b"once")
            self.assertRaises(InvalidTag, receiver.decrypt, record)

    def test_reorder(self) -> None:
        """
        Records delivered out of order fail; a dropped record makes every
        later one fail.
        """
        for cipherName in CIPHER_NAMES:
            sender, _, _, receiver = _transport(cipherName)
            first = sender.encrypt(b"first")
            second = sender.encrypt(b"second")
            self.assertRaises(InvalidTag, receiver.decrypt, second)
            self.assertEqual(receiver.decrypt(first), b"first")
            self.assertEqual(receiver.decrypt(second), b"second")
            sender.encrypt(b"dropped")
            self.assertRaises(InvalidTag, receiver.decrypt, sender.encrypt(b"after"))

    def test_reflection(self) -> None:
        """
        A record sent back to its sender (decrypted with the sender's own
        receive cipher, at the same nonce) fails, in both directions.
        """
        for cipherName in CIPHER_NAMES:
            initiatorSend, initiatorReceive, responderSend, responderReceive = _transport(
                cipherName
            )
            self.assertRaises(InvalidTag, initiatorReceive.decrypt, initiatorSend.encrypt(b"i"))
            self.assertRaises(InvalidTag, responderReceive.decrypt, responderSend.encrypt(b"r"))

    def test_crossSession(self) -> None:
        """
        A record from one session does not decrypt in another session made
        with the same PSK.
        """
        for cipherName in CIPHER_NAMES:
            sender = _transport(cipherName)[0]
            receiver = _transport(cipherName)[3]
            self.assertRaises(InvalidTag, receiver.decrypt, sender.encrypt(b"elsewhere"))

    def test_largeRecords(self) -> None:
        """
        Records larger than Noise's 65 535-byte message limit (64 KiB and
        1 MiB) round-trip in both directions: the transport phase deliberately
        does not impose that limit.
        """
        for cipherName in CIPHER_NAMES:
            initiatorSend, initiatorReceive, responderSend, responderReceive = _transport(
                cipherName
            )
            for size in (65536, 1024 * 1024):
                plaintext = bytes(range(256)) * (size // 256)
                record = initiatorSend.encrypt(plaintext)
                self.assertEqual(len(record), size + TAG_SIZE)
                self.assertEqual(responderReceive.decrypt(record), plaintext)
                record = responderSend.encrypt(memoryview(plaintext))
                self.assertEqual(initiatorReceive.decrypt(memoryview(record)), plaintext)


class RoundTripPropertyTests(SynchronousTestCase):
    """
    Property tests: any payloads survive a full handshake and transport.
    """

    @settings(max_examples=60, deadline=None)
    @given(
        cipherName=st.sampled_from(CIPHER_NAMES),
        payload1=st.binary(max_size=512),
        payload2=st.binary(max_size=512),
        records=st.lists(st.tuples(st.booleans(), st.binary(max_size=4096)), max_size=12),
    )
    def test_roundTrip(
        self,
        cipherName: str,
        payload1: bytes,
        payload2: bytes,
        records: list[tuple[bool, bytes]],
    ) -> None:
        """
        Random handshake payloads and a random sequence of records in both
        directions round-trip through fresh keys with either cipher, and the
        two sides agree on the handshake hash.

        @param cipherName: The cipher, drawn from L{CIPHER_NAMES}.
        @param payload1: The payload of message 1.
        @param payload2: The payload of message 2.
        @param records: C{(fromInitiator, plaintext)} pairs, sent in order.
        """
        initiator = NNpsk0Initiator(cipherName, PSK, PROLOGUE)
        responder = NNpsk0Responder(cipherName, PSK, PROLOGUE)
        message1 = initiator.writeMessage1(payload1)
        self.assertEqual(len(message1), 48 + len(payload1))
        self.assertEqual(responder.readMessage1(message1), payload1)
        message2 = responder.writeMessage2(payload2)
        self.assertEqual(len(message2), 48 + len(payload2))
        self.assertEqual(initiator.readMessage2(message2), payload2)
        self.assertEqual(initiator.handshakeHash, responder.handshakeHash)
        initiatorSend, initiatorReceive = initiator.split()
        responderSend, responderReceive = responder.split()
        for fromInitiator, plaintext in records:
            if fromInitiator:
                sender, receiver = initiatorSend, responderReceive
            else:
                sender, receiver = responderSend, initiatorReceive
            record = sender.encrypt(plaintext)
            self.assertEqual(len(record), len(plaintext) + TAG_SIZE)
            self.assertEqual(receiver.decrypt(record), plaintext)
