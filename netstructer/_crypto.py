# -*- test-case-name: tests.test_crypto -*-
"""
The Noise C{NNpsk0} handshake and the transport ciphers of NetStructer.

This module implements, over C{cryptography}, exactly the part of the Noise
Protocol Framework (revision 34) that NetStructer needs: the handshake pattern
C{NNpsk0} with DH C{25519}, hash C{SHA256} and either cipher C{AESGCM} or
C{ChaChaPoly}, so the protocol names are C{Noise_NNpsk0_25519_AESGCM_SHA256}
and C{Noise_NNpsk0_25519_ChaChaPoly_SHA256}::

    NNpsk0:
      -> psk, e
      <- e, ee

The classes are pure: they take and return bytes and never do I/O.  The
handshake objects enforce the order of their calls; calling a method out of
order is a bug in the caller and raises L{_HandshakeOrderError} (a
C{RuntimeError}).  Any failure while processing a handshake message leaves the
handshake object unusable (every later call raises L{_HandshakeOrderError}) and
drops the secrets it held.

Byte layouts (C{||} is concatenation; C{AEAD(k, n, ad, p)} is ciphertext
followed by the 16-byte tag)::

    message 1 (initiator -> responder), 48 + len(payload1) bytes:
        e.pub (32 bytes, raw X25519)
        || AEAD(k1, 0, h1, payload1)      (len(payload1) + 16 bytes)

    message 2 (responder -> initiator), 48 + len(payload2) bytes:
        e.pub (32 bytes, raw X25519)
        || AEAD(k2, 0, h2, payload2)      (len(payload2) + 16 bytes)

    transport record (either direction), len(plaintext) + 16 bytes:
        AEAD(k, n, ad, plaintext)         (no nonce on the wire: n counts)

where C{k1} is derived from the PSK, the prologue and the initiator's
ephemeral key, C{k2} additionally from the responder's ephemeral key and the
Diffie-Hellman result, and C{h1}/C{h2} are the handshake hashes at that point
(so the prologue and every byte sent before are authenticated).  There is no
length field, no version byte and no padding in these messages; framing is the
caller's business.

Departure from the specification: Noise limits every message to 65 535 bytes.
The handshake messages here keep that limit (they are tiny anyway), but
L{CipherState} deliberately does I{not} impose it on transport records,
because NetStructer records may be as large as the negotiated maximum frame
size (for example 16 MiB).  The AEADs themselves are safe for such sizes (both
accept up to 2 ** 31 - 1 bytes per call through C{cryptography}).

Everything else follows the specification: the counter nonce C{2 ** 64 - 1} is
reserved and never used (encrypting or decrypting beyond C{2 ** 64 - 2} raises
L{_NonceExhaustedError}), a failed decryption does not advance the counter,
and the C{AESGCM} nonce is four zero bytes followed by the counter in
big-endian order while the C{ChaChaPoly} nonce is four zero bytes followed by
the counter in little-endian order.

A worked example, with injected ephemeral keys so that it is reproducible (in
real use leave C{ephemeral} out and a fresh key is generated)::

    >>> from cryptography.hazmat.primitives.asymmetric.x25519 import (
    ...     X25519PrivateKey)
    >>> psk = bytes(range(32))
    >>> initiator = NNpsk0Initiator(
    ...     "ChaChaPoly", psk, b"NetStructer example",
    ...     ephemeral=X25519PrivateKey.from_private_bytes(bytes([1] * 32)))
    >>> responder = NNpsk0Responder(
    ...     "ChaChaPoly", psk, b"NetStructer example",
    ...     ephemeral=X25519PrivateKey.from_private_bytes(bytes([2] * 32)))
    >>> message1 = initiator.writeMessage1(b"hello")
    >>> len(message1), message1[:4].hex()
    (53, 'a4e09292')
    >>> responder.readMessage1(message1)
    b'hello'
    >>> message2 = responder.writeMessage2(b"")
    >>> len(message2), message2[:4].hex()
    (48, 'ce8d3ad1')
    >>> initiator.readMessage2(message2)
    b''
    >>> initiator.handshakeHash == responder.handshakeHash
    True
    >>> initiator.handshakeHash.hex()[:16]
    '2bb640b981eecf59'
    >>> iSend, iReceive = initiator.split()
    >>> rSend, rReceive = responder.split()
    >>> record = iSend.encrypt(b"a value")
    >>> len(record)
    23
    >>> rReceive.decrypt(record)
    b'a value'
    >>> iReceive.decrypt(rSend.encrypt(b"a reply"))
    b'a reply'

A responder holding several candidate PSKs (key rotation) builds one
L{NNpsk0Responder} per PSK and calls L{NNpsk0Responder.readMessage1} on each
until one does not raise C{InvalidTag}.  Construction costs two SHA-256 and an
HKDF (nothing at all from an L{NNpsk0Template}) and reading message 1 costs no
Diffie-Hellman and generates no key (a responder given no ephemeral key
generates it only in L{NNpsk0Responder.writeMessage2}), so each failed attempt
is cheap and leaves nothing behind.

Everything before the C{e} token depends only on the cipher, the PSK and the
prologue; an L{NNpsk0Template} computes it once for any number of handshakes,
each of which still generates its own ephemeral key.  A responder may also be
given an ephemeral key made by L{generateEphemeral} before message 1 arrives,
so that generating it does not delay message 2; such a key, like any ephemeral
key, must serve one handshake only.

Python cannot reliably erase C{bytes} from memory; this module drops its
references to secrets as soon as it no longer needs them and never shows them
in a C{repr}, which is the most it can do.

This module imports only the standard library and C{cryptography}.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Callable, Sequence
from typing import Final, TypeAlias

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric.x25519 import (
    X25519PrivateKey,
    X25519PublicKey,
)
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

__all__ = [
    "CIPHER_NAMES",
    "TAG_SIZE",
    "CipherState",
    "NNpsk0Initiator",
    "NNpsk0Responder",
    "NNpsk0Template",
    "generateEphemeral",
]

_BytesLike: TypeAlias = "bytes | bytearray | memoryview"
"""
What the methods taking data accept: anything C{cryptography} and C{hashlib}
read without copying (a C{memoryview} must be contiguous).
"""

_WritableBuffer: TypeAlias = "bytearray | memoryview"
"""
Where the C{...Into} methods write: a C{bytearray}, or a writable,
contiguous C{memoryview} of bytes (a slice of a larger buffer, say).
"""

CIPHER_NAMES: Final = ("AESGCM", "ChaChaPoly")
"""
The Noise names of the ciphers this module supports, in NetStructer's order of
preference.
"""

TAG_SIZE: Final = 16
"""
The size in bytes of the authentication tag every AEAD ciphertext carries.
"""

_HASH_LEN: Final = 32
_DH_LEN: Final = 32
_KEY_SIZE: Final = 32
_PSK_SIZE: Final = 32
_MAX_HANDSHAKE_MESSAGE: Final = 65535
_MIN_HANDSHAKE_MESSAGE: Final = _DH_LEN + TAG_SIZE
_MAX_HANDSHAKE_PAYLOAD: Final = _MAX_HANDSHAKE_MESSAGE - _MIN_HANDSHAKE_MESSAGE
_SHA256: Final = SHA256()
_LAST_NONCE: Final = 2**64 - 2
"""
The last counter value that may be used: C{2 ** 64 - 1} is reserved by Noise.
"""

_AEAD_CLASSES: Final[dict[str, type[AESGCM] | type[ChaCha20Poly1305]]] = {
    "AESGCM": AESGCM,
    "ChaChaPoly": ChaCha20Poly1305,
}

_NONCE_STRUCTS: Final = {
    # 4 zero bytes, then the 64-bit counter: big-endian for AES-GCM ...
    "AESGCM": struct.Struct(">4xQ"),
    # ... and little-endian for ChaCha20-Poly1305 (Noise, section 12, "Cipher functions").
    "ChaChaPoly": struct.Struct("<4xQ"),
}


class _HandshakeOrderError(RuntimeError):
    """
    A handshake method was called out of order, twice, or after the handshake
    failed.  This is a bug in the caller, never the peer's doing.
    """


class _NonceExhaustedError(Exception):
    """
    A L{CipherState} has used every counter value Noise allows (the last one,
    C{2 ** 64 - 1}, is reserved).  The connection must be closed and a new one
    made.  At a million records a second this would take over half a million
    years, so in practice it signals a corrupted counter.
    """


def _protocolName(cipherName: str) -> bytes:
    """
    Return the Noise protocol name for C{NNpsk0} with the given cipher.

    @param cipherName: One of L{CIPHER_NAMES}.
    @return: For instance C{b"Noise_NNpsk0_25519_AESGCM_SHA256"}.
    """
    return f"Noise_NNpsk0_25519_{cipherName}_SHA256".encode("ascii")


def _initialHash(protocolName: bytes) -> bytes:
    """
    Compute the initial C{h} of C{InitializeSymmetric}.

    @param protocolName: The full Noise protocol name.
    @return: The name padded with zero bytes to 32 bytes if it fits, otherwise
        its SHA-256 digest.
    """
    if len(protocolName) <= _HASH_LEN:
        return protocolName.ljust(_HASH_LEN, b"\x00")
    return hashlib.sha256(protocolName).digest()


_INITIAL_HASHES: Final = {name: _initialHash(_protocolName(name)) for name in CIPHER_NAMES}
"""
C{InitializeSymmetric}'s C{h} (and C{ck}) per cipher, computed once.
"""


def _checkCipherName(cipherName: str) -> None:
    """
    Refuse a cipher name this module does not implement.

    @param cipherName: The name to check.
    @raise ValueError: If C{cipherName} is not in L{CIPHER_NAMES}.
    """
    if cipherName not in _AEAD_CLASSES:
        raise ValueError(
            f"unsupported Noise cipher {cipherName!r}: use one of {', '.join(CIPHER_NAMES)}"
        )


def _hkdf(chainingKey: bytes, ikm: _BytesLike, outputs: int) -> bytes:
    """
    The Noise C{HKDF} function: C{tempKey = HMAC(ck, ikm)}, C{output1 =
    HMAC(tempKey, 0x01)}, C{output2 = HMAC(tempKey, output1 || 0x02)}, and
    so on, over HMAC-SHA256.  That is exactly RFC 5869 HKDF-SHA256 with the
    chaining key as the salt and empty info, which C{cryptography} computes
    in one call, faster than the separate HMACs.

    @param chainingKey: The 32-byte chaining key, used as the HMAC key.
    @param ikm: The input key material.
    @param outputs: How many 32-byte outputs to make.
    @return: The outputs, concatenated.
    """
    return HKDF(_SHA256, outputs * _HASH_LEN, chainingKey, b"").derive(ikm)


def _hkdf2(chainingKey: bytes, ikm: _BytesLike) -> tuple[bytes, bytes]:
    """
    The Noise C{HKDF} function with two outputs, over HMAC-SHA256.

    @param chainingKey: The 32-byte chaining key, used as the HMAC key.
    @param ikm: The input key material (zero bytes, 32 bytes or a DH output).
    @return: C{(output1, output2)}, 32 bytes each.
    """
    output = _hkdf(chainingKey, ikm, 2)
    return output[:_HASH_LEN], output[_HASH_LEN:]


def _hkdf3(chainingKey: bytes, ikm: _BytesLike) -> tuple[bytes, bytes, bytes]:
    """
    The Noise C{HKDF} function with three outputs, over HMAC-SHA256.

    @param chainingKey: The 32-byte chaining key, used as the HMAC key.
    @param ikm: The input key material (here: the PSK).
    @return: C{(output1, output2, output3)}, 32 bytes each.
    """
    output = _hkdf(chainingKey, ikm, 3)
    return output[:_HASH_LEN], output[_HASH_LEN : 2 * _HASH_LEN], output[2 * _HASH_LEN :]


def generateEphemeral() -> X25519PrivateKey:
    """
    Generate a fresh ephemeral key, for a responder that wants its key ready
    before message 1 arrives (see the C{ephemeral} parameter of
    L{NNpsk0Responder}).  Use each key for one handshake only.

    @return: A new X25519 private key from the operating system's random
        number generator.
    """
    return X25519PrivateKey.generate()


class CipherState:
    """
    A Noise C{CipherState} with a key: an AEAD and a 64-bit counter nonce.

    This is the record-layer hot path.  The AEAD object and the nonce packer
    are built once; C{bytes}, C{bytearray} and contiguous C{memoryview}
    arguments are handed to C{cryptography} as they are, without copying.

    Unlike Noise, this class does not limit a message to 65 535 bytes: see the
    module docstring.  It does not implement C{Rekey}; NetStructer reconnects
    instead.

    @ivar cipherName: The Noise name of the cipher, one of L{CIPHER_NAMES}.
    """

    __slots__ = (
        "_aeadDecrypt",
        "_aeadDecryptInto",
        "_aeadEncrypt",
        "_aeadEncryptInto",
        "_aes",
        "_aesKey",
        "_n",
        "_packNonce",
        "cipherName",
    )

    _aeadEncrypt: Callable[[bytes, _BytesLike, bytes | None], bytes]
    _aeadDecrypt: Callable[[bytes, _BytesLike, bytes | None], bytes]
    _aeadEncryptInto: Callable[[bytes, _BytesLike, bytes | None, _WritableBuffer], int]
    _aeadDecryptInto: Callable[[bytes, _BytesLike, bytes | None, _WritableBuffer], int]
    _packNonce: Callable[[int], bytes]
    _aes: algorithms.AES | None
    _aesKey: bytes | None
    _n: int
    cipherName: str

    def __init__(self, cipherName: str, key: bytes) -> None:
        """
        @param cipherName: One of L{CIPHER_NAMES}.
        @param key: The 32-byte key.
        @raise ValueError: If the cipher is unknown or the key is not 32 bytes.
        """
        _checkCipherName(cipherName)
        if len(key) != _KEY_SIZE:
            raise ValueError(f"a Noise cipher key is {_KEY_SIZE} bytes, not {len(key)}")
        aead = _AEAD_CLASSES[cipherName](key)
        self.cipherName = cipherName
        self._aeadEncrypt = aead.encrypt
        self._aeadDecrypt = aead.decrypt
        self._aeadEncryptInto = aead.encrypt_into
        self._aeadDecryptInto = aead.decrypt_into
        # The AES key schedule for encryptPartsInto is made on first use:
        # most connections never seal a large value.
        self._aes = None
        self._aesKey = key if cipherName == "AESGCM" else None
        self._packNonce = _NONCE_STRUCTS[cipherName].pack
        self._n = 0

    def __repr__(self) -> str:
        """
        @return: The cipher name and the next nonce, never the key.
        """
        return f"<CipherState {self.cipherName} nonce={self._n}>"

    @property
    def nonce(self) -> int:
        """
        The counter value the next L{encrypt} or L{decrypt} will use.
        """
        return self._n

    def encrypt(self, plaintext: _BytesLike, ad: bytes | None = None) -> bytes:
        """
        Encrypt with the next nonce (Noise C{EncryptWithAd}) and advance it.

        @param plaintext: The bytes to protect, of any length C{cryptography}
            accepts (up to 2 ** 31 - 1 bytes).
        @param ad: Associated data to authenticate, or L{None} for none (which
            is the same as C{b""}).
        @return: The ciphertext followed by the L{TAG_SIZE}-byte tag.
        @raise _NonceExhaustedError: If every usable nonce has been used.
        """
        n = self._n
        if n > _LAST_NONCE:
            raise _NonceExhaustedError(
                "this connection has used every nonce it may; close it and reconnect"
            )
        ciphertext = self._aeadEncrypt(self._packNonce(n), plaintext, ad)
        self._n = n + 1
        return ciphertext

    def encryptInto(
        self, plaintext: _BytesLike, out: _WritableBuffer, ad: bytes | None = None
    ) -> int:
        """
        Encrypt with the next nonce, as L{encrypt} does, writing the
        ciphertext and its tag into C{out} instead of a new C{bytes}: a
        connection that reuses C{out} for every large record touches no new
        memory.  C{out} must not overlap C{plaintext}.

        @param plaintext: The bytes to protect.
        @param out: Exactly C{len(plaintext) + TAG_SIZE} bytes to write to.
        @param ad: Associated data, as for L{encrypt}.
        @return: The number of bytes written, C{len(out)}.
        @raise ValueError: C{out} is not exactly the right size; nothing was
            written and the nonce was not advanced.
        @raise _NonceExhaustedError: If every usable nonce has been used.
        """
        n = self._n
        if n > _LAST_NONCE:
            raise _NonceExhaustedError(
                "this connection has used every nonce it may; close it and reconnect"
            )
        if len(out) != len(plaintext) + TAG_SIZE:
            raise ValueError(
                f"encryptInto needs an output of {len(plaintext) + TAG_SIZE} bytes "
                f"(the plaintext and the tag), not {len(out)}"
            )
        written = self._aeadEncryptInto(self._packNonce(n), plaintext, ad, out)
        self._n = n + 1
        return written

    @property
    def sealsParts(self) -> bool:
        """
        Whether L{encryptPartsInto} is available: with AES-GCM, whose
        C{cryptography} interface encrypts a message in parts.
        """
        return self._aesKey is not None

    def encryptPartsInto(self, parts: Sequence[_BytesLike], out: _WritableBuffer) -> int:
        """
        Encrypt, with the next nonce and no associated data, the
        concatenation of C{parts}, without joining them: each is encrypted
        straight into its place in C{out}, and the tag written last.  The
        result is exactly what L{encrypt} returns for C{b"".join(parts)}.
        Only with AES-GCM (see L{sealsParts}).  C{out} must not overlap any
        part.

        @param parts: The plaintext, in order, in any number of pieces.
        @param out: Exactly the plaintext's length plus L{TAG_SIZE} bytes.
        @return: The number of bytes written, C{len(out)}.
        @raise ValueError: C{out} is not exactly the right size, or the
            cipher is not AES-GCM; nothing was written and the nonce was not
            advanced.
        @raise _NonceExhaustedError: If every usable nonce has been used.
        """
        aes = self._aes
        if aes is None:
            if self._aesKey is None:
                raise ValueError(f"encryptPartsInto needs AES-GCM, not {self.cipherName}")
            aes = self._aes = algorithms.AES(self._aesKey)
        n = self._n
        if n > _LAST_NONCE:
            raise _NonceExhaustedError(
                "this connection has used every nonce it may; close it and reconnect"
            )
        size = sum(len(part) for part in parts)
        if len(out) != size + TAG_SIZE:
            raise ValueError(
                f"encryptPartsInto needs an output of {size + TAG_SIZE} bytes "
                f"(the plaintext and the tag), not {len(out)}"
            )
        view = memoryview(out)
        encryptor = Cipher(aes, modes.GCM(self._packNonce(n))).encryptor()
        written = 0
        for part in parts:
            if len(part):
                # The view runs on over the tag's place: update_into wants a
                # block's worth of room beyond the part.
                written += encryptor.update_into(part, view[written:])
        encryptor.finalize()
        view[written:] = encryptor.tag
        self._n = n + 1
        return written + TAG_SIZE

    def decryptInto(
        self, ciphertext: _BytesLike, out: _WritableBuffer, ad: bytes | None = None
    ) -> int:
        """
        Authenticate and decrypt with the next nonce, as L{decrypt} does,
        writing the plaintext into C{out} instead of a new C{bytes}.  C{out}
        must not overlap C{ciphertext}.  When authentication fails, what
        C{out} holds is undefined (never the plaintext to act on) and the
        nonce is not advanced.

        @param ciphertext: Ciphertext followed by its tag.
        @param out: Exactly C{len(ciphertext) - TAG_SIZE} bytes to write to.
        @param ad: The associated data given to L{encrypt}, or L{None}.
        @return: The number of bytes written, C{len(out)}.
        @raise cryptography.exceptions.InvalidTag: As for L{decrypt}, and
            when C{ciphertext} is shorter than a tag.
        @raise ValueError: C{out} is not exactly the right size.
        @raise _NonceExhaustedError: If every usable nonce has been used.
        """
        n = self._n
        if n > _LAST_NONCE:
            raise _NonceExhaustedError(
                "this connection has used every nonce it may; close it and reconnect"
            )
        if len(ciphertext) < TAG_SIZE:
            raise InvalidTag()
        if len(out) != len(ciphertext) - TAG_SIZE:
            raise ValueError(
                f"decryptInto needs an output of {len(ciphertext) - TAG_SIZE} bytes "
                f"(the ciphertext less its tag), not {len(out)}"
            )
        written = self._aeadDecryptInto(self._packNonce(n), ciphertext, ad, out)
        self._n = n + 1
        return written

    def decrypt(self, ciphertext: _BytesLike, ad: bytes | None = None) -> bytes:
        """
        Authenticate and decrypt with the next nonce (Noise C{DecryptWithAd}),
        advancing it only on success.

        @param ciphertext: Ciphertext followed by its tag.
        @param ad: The associated data given to L{encrypt}, or L{None}.
        @return: The plaintext.
        @raise cryptography.exceptions.InvalidTag: If the ciphertext, tag, key,
            nonce or associated data do not match (tampering, replay,
            reordering, reflection, truncation).  The nonce is not advanced.
        @raise _NonceExhaustedError: If every usable nonce has been used.
        """
        n = self._n
        if n > _LAST_NONCE:
            raise _NonceExhaustedError(
                "this connection has used every nonce it may; close it and reconnect"
            )
        plaintext = self._aeadDecrypt(self._packNonce(n), ciphertext, ad)
        self._n = n + 1
        return plaintext


class _SymmetricState:
    """
    The Noise C{SymmetricState}: the chaining key C{ck}, the handshake hash
    C{h} and the handshake's current key C{k} (if one is set).

    The L{CipherState} of a key is built when the key first encrypts or
    decrypts, not when it is set: in C{NNpsk0} the keys set by the C{psk}
    token and by the responder's C{e} token are replaced before they are ever
    used, and building their AEADs would be wasted work on every handshake.

    @ivar cipherName: The Noise name of the cipher.
    """

    __slots__ = ("_chainingKey", "_cipher", "_h", "_key", "cipherName")

    _chainingKey: bytes
    _h: bytes
    _key: bytes
    _cipher: CipherState | None
    cipherName: str

    def __init__(self, cipherName: str, prologue: bytes) -> None:
        """
        C{InitializeSymmetric(protocolName)} followed by C{MixHash(prologue)}.

        @param cipherName: One of L{CIPHER_NAMES}.
        @param prologue: The prologue both sides must agree on.
        """
        self.cipherName = cipherName
        self._h = _INITIAL_HASHES[cipherName]
        self._chainingKey = self._h
        self._key = b""
        self._cipher = None
        self.mixHash(prologue)

    @classmethod
    def _resume(cls, cipherName: str, chainingKey: bytes, h: bytes, key: bytes) -> _SymmetricState:
        """
        Make a symmetric state holding values saved from another one (see
        L{NNpsk0Template}).

        @param cipherName: One of L{CIPHER_NAMES}.
        @param chainingKey: C{ck}.
        @param h: C{h}.
        @param key: C{k}, or C{b""} if no key is set.
        @return: The state; its key, if any, has not been used yet.
        """
        state = cls.__new__(cls)
        state.cipherName = cipherName
        state._chainingKey = chainingKey
        state._h = h
        state._key = key
        state._cipher = None
        return state

    def __repr__(self) -> str:
        """
        @return: The cipher name and whether a key is set, never a secret.
        """
        return f"<_SymmetricState {self.cipherName} hasKey={bool(self._key)}>"

    def _currentCipher(self) -> CipherState | None:
        """
        @return: The L{CipherState} of the current key, built on its first
            use, or L{None} if no key is set.
        """
        cipher = self._cipher
        if cipher is None and self._key:
            cipher = self._cipher = CipherState(self.cipherName, self._key)
        return cipher

    @property
    def handshakeHash(self) -> bytes:
        """
        The current handshake hash C{h}.
        """
        return self._h

    def mixHash(self, data: _BytesLike) -> None:
        """
        C{h = SHA256(h || data)}.

        @param data: The bytes to mix in.
        """
        hasher = hashlib.sha256(self._h)
        hasher.update(data)
        self._h = hasher.digest()

    def mixKey(self, ikm: _BytesLike) -> None:
        """
        C{ck, tempK = HKDF(ck, ikm, 2)}, then use C{tempK} as the key.

        @param ikm: The input key material.
        """
        self._chainingKey, self._key = _hkdf2(self._chainingKey, ikm)
        self._cipher = None

    def mixKeyAndHash(self, ikm: bytes) -> None:
        """
        C{ck, tempH, tempK = HKDF(ck, ikm, 3)}, then C{MixHash(tempH)} and use
        C{tempK} as the key.

        @param ikm: The input key material (the PSK).
        """
        self._chainingKey, tempHash, self._key = _hkdf3(self._chainingKey, ikm)
        self.mixHash(tempHash)
        self._cipher = None

    def encryptAndHash(self, plaintext: _BytesLike) -> bytes:
        """
        Encrypt with C{h} as associated data if a key is set (otherwise pass
        the plaintext through), then mix the result into C{h}.

        @param plaintext: The payload.
        @return: The ciphertext (or plaintext, if no key is set).
        """
        cipher = self._currentCipher()
        ciphertext = bytes(plaintext) if cipher is None else cipher.encrypt(plaintext, self._h)
        self.mixHash(ciphertext)
        return ciphertext

    def decryptAndHash(self, ciphertext: _BytesLike) -> bytes:
        """
        Decrypt with C{h} as associated data if a key is set (otherwise pass
        the bytes through), then mix the ciphertext into C{h}.

        @param ciphertext: The encrypted payload and its tag.
        @return: The plaintext.
        @raise cryptography.exceptions.InvalidTag: If authentication fails.
        """
        cipher = self._currentCipher()
        plaintext = bytes(ciphertext) if cipher is None else cipher.decrypt(ciphertext, self._h)
        self.mixHash(ciphertext)
        return plaintext

    def split(self) -> tuple[CipherState, CipherState]:
        """
        C{tempK1, tempK2 = HKDF(ck, b"", 2)}: derive the transport keys.

        @return: C{(initiatorToResponder, responderToInitiator)}.
        """
        key1, key2 = _hkdf2(self._chainingKey, b"")
        return CipherState(self.cipherName, key1), CipherState(self.cipherName, key2)

    def discardSecrets(self) -> None:
        """
        Drop the chaining key and the handshake key.  C{h} is kept: it is
        public to both parties and serves as the handshake hash.
        """
        self._chainingKey = b""
        self._key = b""
        self._cipher = None


# The steps of the handshake objects.  Each method checks that the object is in
# the step it needs, moves it to _FAILED while it works and to the next step
# only when it succeeded.
_START: Final = "start"
_AWAITING_MESSAGE_2: Final = "awaiting message 2"
_MESSAGE_1_READ: Final = "message 1 read"
_COMPLETE: Final = "complete"
_SPLIT: Final = "split"
_FAILED: Final = "failed"


def _checkHandshakeMessage(message: _BytesLike) -> memoryview:
    """
    Check the length of a received handshake message.

    @param message: The message as received.
    @return: A memoryview over C{message}, to slice without copying.
    @raise ValueError: If the message is shorter than an ephemeral key and a
        tag, or longer than Noise's 65 535-byte limit.
    """
    view = memoryview(message)
    if len(view) < _MIN_HANDSHAKE_MESSAGE:
        raise ValueError(
            f"handshake message of {len(view)} bytes is shorter than the "
            f"{_MIN_HANDSHAKE_MESSAGE} bytes of an ephemeral key and a tag"
        )
    if len(view) > _MAX_HANDSHAKE_MESSAGE:
        raise ValueError(
            f"handshake message of {len(view)} bytes exceeds Noise's limit of "
            f"{_MAX_HANDSHAKE_MESSAGE} bytes"
        )
    return view


def _checkHandshakePayload(payload: _BytesLike) -> None:
    """
    Check that a payload fits in a handshake message.

    @param payload: The payload to send.
    @raise ValueError: If the message would exceed 65 535 bytes.
    """
    if len(payload) > _MAX_HANDSHAKE_PAYLOAD:
        raise ValueError(
            f"handshake payload of {len(payload)} bytes exceeds the "
            f"{_MAX_HANDSHAKE_PAYLOAD} bytes a Noise handshake message can carry"
        )


class NNpsk0Template:
    """
    What every C{NNpsk0} handshake with a given cipher, PSK and prologue
    starts from: C{Initialize()} and the C{psk} token (C{MixHash(prologue)},
    then C{MixKeyAndHash(psk)}), whose results depend on nothing else.

    A program making many handshakes with the same PSK computes them once
    here and starts each handshake from them with L{initiator} or
    L{responder}.  Every handshake still generates its own ephemeral key, so
    nothing secret is shared between handshakes beyond the PSK itself (the
    key set by the C{psk} token is replaced by the C{e} token before it
    encrypts anything).

    A template holds a chaining key derived from the PSK, which is as good as
    the PSK for making handshakes: keep it as secret as the PSK.

    @ivar cipherName: The Noise name of the cipher.
    """

    __slots__ = ("_chainingKey", "_h", "_key", "cipherName")

    _chainingKey: bytes
    _h: bytes
    _key: bytes
    cipherName: str

    def __init__(self, cipherName: str, psk: bytes, prologue: bytes) -> None:
        """
        @param cipherName: One of L{CIPHER_NAMES}.
        @param psk: The 32-byte pre-shared key.
        @param prologue: Bytes both sides must agree on (they are
            authenticated, not sent).
        @raise ValueError: If the cipher is unknown or the PSK is not 32 bytes.
        """
        _checkCipherName(cipherName)
        if len(psk) != _PSK_SIZE:
            raise ValueError(f"a Noise PSK is {_PSK_SIZE} bytes, not {len(psk)}")
        symmetric = _SymmetricState(cipherName, bytes(prologue))
        symmetric.mixKeyAndHash(bytes(psk))
        self.cipherName = cipherName
        self._chainingKey = symmetric._chainingKey
        self._h = symmetric._h
        self._key = symmetric._key

    def __repr__(self) -> str:
        """
        @return: The class and cipher, never a key.
        """
        return f"<NNpsk0Template {self.cipherName}>"

    def _symmetricState(self) -> _SymmetricState:
        """
        @return: A new symmetric state in the state this template saved.
        """
        return _SymmetricState._resume(self.cipherName, self._chainingKey, self._h, self._key)

    def initiator(self, ephemeral: X25519PrivateKey | None = None) -> NNpsk0Initiator:
        """
        Start an initiator's handshake.

        @param ephemeral: As for L{NNpsk0Initiator}: leave it out outside
            tests.
        @return: A new initiator, ready for L{NNpsk0Initiator.writeMessage1}.
        """
        initiator = NNpsk0Initiator.__new__(NNpsk0Initiator)
        initiator._setUp(self, ephemeral)
        return initiator

    def responder(self, ephemeral: X25519PrivateKey | None = None) -> NNpsk0Responder:
        """
        Start a responder's handshake.

        @param ephemeral: As for L{NNpsk0Responder}.
        @return: A new responder, ready for L{NNpsk0Responder.readMessage1}.
        """
        responder = NNpsk0Responder.__new__(NNpsk0Responder)
        responder._setUp(self, ephemeral)
        return responder


class _NNpsk0Handshake:
    """
    What the two sides of an C{NNpsk0} handshake share: construction, step
    checking, the handshake hash and C{Split}.

    @ivar cipherName: The Noise name of the cipher.
    """

    __slots__ = (
        "_ephemeral",
        "_handshakeHash",
        "_remoteEphemeral",
        "_step",
        "_symmetric",
        "cipherName",
    )

    _ephemeral: X25519PrivateKey | None
    _remoteEphemeral: bytes
    _handshakeHash: bytes
    _step: str
    _symmetric: _SymmetricState
    cipherName: str

    def __init__(
        self,
        cipherName: str,
        psk: bytes,
        prologue: bytes,
        ephemeral: X25519PrivateKey | None = None,
    ) -> None:
        """
        C{Initialize()} for C{NNpsk0} (no pre-message keys, one PSK), and the
        first token of message 1, C{psk}, which depends on nothing else: see
        L{NNpsk0Template}, which does this once for many handshakes.

        @param cipherName: One of L{CIPHER_NAMES}.
        @param psk: The 32-byte pre-shared key.
        @param prologue: Bytes both sides must agree on (they are
            authenticated, not sent).
        @param ephemeral: This side's ephemeral key; L{None} (the default)
            generates a fresh one when the first message that needs it is
            written.  Outside tests, give one only if it was made by
            L{generateEphemeral} for this handshake alone.
        @raise ValueError: If the cipher is unknown or the PSK is not 32 bytes.
        """
        self._setUp(NNpsk0Template(cipherName, psk, prologue), ephemeral)

    def _setUp(self, template: NNpsk0Template, ephemeral: X25519PrivateKey | None) -> None:
        """
        Start the handshake from a template.

        @param template: The cipher, and the state after the C{psk} token.
        @param ephemeral: This side's ephemeral key, or L{None}.
        """
        self.cipherName = template.cipherName
        self._ephemeral = ephemeral
        self._remoteEphemeral = b""
        self._handshakeHash = b""
        self._step = _START
        self._symmetric = template._symmetricState()

    def __repr__(self) -> str:
        """
        @return: The class, cipher and step, never a key.
        """
        return f"<{type(self).__name__} {self.cipherName} step={self._step!r}>"

    def _begin(self, expected: str, methodName: str) -> None:
        """
        Check the step and mark the handshake as failed until the calling
        method reaches its next step.

        @param expected: The step the calling method needs.
        @param methodName: The calling method's name, for the error message.
        @raise _HandshakeOrderError: If the handshake is in another step.
        """
        if self._step != expected:
            raise _HandshakeOrderError(
                f"{type(self).__name__}.{methodName} called in step {self._step!r}; "
                f"it needs step {expected!r}"
            )
        self._step = _FAILED

    def _discardSecrets(self) -> None:
        """
        Drop every secret the handshake still holds.
        """
        self._ephemeral = None
        self._remoteEphemeral = b""
        self._symmetric.discardSecrets()

    def _finish(self, nextStep: str) -> None:
        """
        Record that the current method succeeded, or drop the secrets if it did
        not.  Called from a C{finally} clause.

        @param nextStep: The step to move to if the method succeeded, which it
            signals by having set C{self._step} to it already.
        """
        if self._step != nextStep:
            self._discardSecrets()

    def _mixEphemeral(self, ephemeralPublic: _BytesLike) -> None:
        """
        Process the C{e} token (written or read): C{MixHash(e.pub)} and,
        because this handshake uses a PSK, C{MixKey(e.pub)}.

        @param ephemeralPublic: The raw 32-byte ephemeral public key sent in
            the message.
        """
        self._symmetric.mixHash(ephemeralPublic)
        self._symmetric.mixKey(ephemeralPublic)

    def _mixDiffieHellman(self, remotePublic: _BytesLike) -> None:
        """
        Process the C{ee} token: C{MixKey(DH(e, re))}.

        @param remotePublic: The peer's raw ephemeral public key.
        @raise ValueError: If the peer's key is a low-order point (the shared
            secret would be all zeros); C{cryptography} refuses those.
        """
        peerKey = X25519PublicKey.from_public_bytes(bytes(remotePublic))
        self._symmetric.mixKey(self._ourEphemeral().exchange(peerKey))

    def _ourEphemeral(self) -> X25519PrivateKey:
        """
        @return: This side's ephemeral key, generating it on first use.
        """
        if self._ephemeral is None:
            self._ephemeral = X25519PrivateKey.generate()
        return self._ephemeral

    def _ourEphemeralPublic(self) -> bytes:
        """
        @return: The raw 32-byte public half of this side's ephemeral key,
            generating the key on first use.
        """
        return self._ourEphemeral().public_key().public_bytes_raw()

    def _complete(self) -> None:
        """
        Record the final handshake hash and drop what is no longer needed.
        """
        self._handshakeHash = self._symmetric.handshakeHash
        self._ephemeral = None
        self._remoteEphemeral = b""

    @property
    def handshakeHash(self) -> bytes:
        """
        The final handshake hash C{h}, the same on both sides; usable for
        channel binding.

        @raise _HandshakeOrderError: Before the handshake has completed.
        """
        if self._step not in (_COMPLETE, _SPLIT):
            raise _HandshakeOrderError(
                f"{type(self).__name__}.handshakeHash read in step {self._step!r}; "
                "the handshake has not completed"
            )
        return self._handshakeHash

    def _split(self) -> tuple[CipherState, CipherState]:
        """
        C{Split()} once, then forget the chaining key.

        @return: C{(initiatorToResponder, responderToInitiator)}.
        @raise _HandshakeOrderError: Before the handshake has completed, or if
            called a second time (which would reuse keys and nonces).
        """
        self._begin(_COMPLETE, "split")
        try:
            ciphers = self._symmetric.split()
            self._symmetric.discardSecrets()
            self._step = _SPLIT
        finally:
            self._finish(_SPLIT)
        return ciphers


class NNpsk0Initiator(_NNpsk0Handshake):
    """
    The initiator (connecting side) of an C{NNpsk0} handshake.

    Call L{writeMessage1}, then L{readMessage2}, then L{split}, once each and
    in that order.
    """

    __slots__ = ()

    def writeMessage1(self, payload: _BytesLike) -> bytes:
        """
        Write message 1: tokens C{psk} (already processed when the handshake
        was made), C{e}, then the encrypted payload.

        @param payload: The payload, authenticated with the PSK (though not
            forward secret, and replayable to the responder).
        @return: C{e.pub} (32 bytes) followed by the encrypted payload and its
            16-byte tag.
        @raise ValueError: If the payload does not fit in a handshake message.
        @raise _HandshakeOrderError: If not called first, or called twice.
        """
        self._begin(_START, "writeMessage1")
        try:
            _checkHandshakePayload(payload)
            ephemeralPublic = self._ourEphemeralPublic()
            self._mixEphemeral(ephemeralPublic)
            message = ephemeralPublic + self._symmetric.encryptAndHash(payload)
            self._step = _AWAITING_MESSAGE_2
        finally:
            self._finish(_AWAITING_MESSAGE_2)
        return message

    def readMessage2(self, message: _BytesLike) -> bytes:
        """
        Read message 2: tokens C{e, ee}, then decrypt the payload.

        @param message: Message 2 as received.
        @return: The responder's payload.
        @raise cryptography.exceptions.InvalidTag: If the responder used
            another PSK or prologue, or the message was altered.
        @raise ValueError: If the message is shorter than 48 bytes or longer
            than 65 535, or carries a low-order ephemeral key.
        @raise _HandshakeOrderError: If not called right after
            L{writeMessage1}.
        """
        self._begin(_AWAITING_MESSAGE_2, "readMessage2")
        try:
            view = _checkHandshakeMessage(message)
            remotePublic = view[:_DH_LEN]
            self._mixEphemeral(remotePublic)
            self._mixDiffieHellman(remotePublic)
            payload = self._symmetric.decryptAndHash(view[_DH_LEN:])
            self._complete()
            self._step = _COMPLETE
        finally:
            self._finish(_COMPLETE)
        return payload

    def split(self) -> tuple[CipherState, CipherState]:
        """
        Derive the transport ciphers, once, after L{readMessage2}.

        @return: C{(sendCipher, receiveCipher)} from the initiator's point of
            view.
        @raise _HandshakeOrderError: Before L{readMessage2} succeeded, or if
            called twice.
        """
        initiatorToResponder, responderToInitiator = self._split()
        return initiatorToResponder, responderToInitiator


class NNpsk0Responder(_NNpsk0Handshake):
    """
    The responder (accepting side) of an C{NNpsk0} handshake.

    Call L{readMessage1}, then L{writeMessage2}, then L{split}, once each and
    in that order.  Construction (especially from an L{NNpsk0Template}) and
    L{readMessage1} are cheap (no Diffie-Hellman, no key generation), so a
    responder may try one instance per candidate PSK.
    """

    __slots__ = ()

    def readMessage1(self, message: _BytesLike) -> bytes:
        """
        Read message 1: tokens C{psk} (already processed when the handshake
        was made), C{e}, then decrypt the payload.

        @param message: Message 1 as received.
        @return: The initiator's payload.
        @raise cryptography.exceptions.InvalidTag: If the initiator used
            another PSK or prologue, or the message was altered.
        @raise ValueError: If the message is shorter than 48 bytes or longer
            than 65 535.
        @raise _HandshakeOrderError: If not called first, or called twice.
        """
        self._begin(_START, "readMessage1")
        try:
            view = _checkHandshakeMessage(message)
            remotePublic = bytes(view[:_DH_LEN])
            self._mixEphemeral(remotePublic)
            payload = self._symmetric.decryptAndHash(view[_DH_LEN:])
            self._remoteEphemeral = remotePublic
            self._step = _MESSAGE_1_READ
        finally:
            self._finish(_MESSAGE_1_READ)
        return payload

    def writeMessage2(self, payload: _BytesLike) -> bytes:
        """
        Write message 2: tokens C{e, ee}, then the encrypted payload.  This
        generates the responder's ephemeral key unless one was injected.

        @param payload: The payload, encrypted with keys that depend on both
            ephemeral keys and the PSK.
        @return: C{e.pub} (32 bytes) followed by the encrypted payload and its
            16-byte tag.
        @raise ValueError: If the payload does not fit in a handshake message,
            or the initiator's ephemeral key is a low-order point.
        @raise _HandshakeOrderError: If not called right after
            L{readMessage1}.
        """
        self._begin(_MESSAGE_1_READ, "writeMessage2")
        try:
            _checkHandshakePayload(payload)
            ephemeralPublic = self._ourEphemeralPublic()
            self._mixEphemeral(ephemeralPublic)
            self._mixDiffieHellman(self._remoteEphemeral)
            message = ephemeralPublic + self._symmetric.encryptAndHash(payload)
            self._complete()
            self._step = _COMPLETE
        finally:
            self._finish(_COMPLETE)
        return message

    def split(self) -> tuple[CipherState, CipherState]:
        """
        Derive the transport ciphers, once, after L{writeMessage2}.

        @return: C{(sendCipher, receiveCipher)} from the responder's point of
            view.
        @raise _HandshakeOrderError: Before L{writeMessage2} succeeded, or if
            called twice.
        """
        initiatorToResponder, responderToInitiator = self._split()
        return responderToInitiator, initiatorToResponder
