# -*- test-case-name: tests.test_keys -*-
"""
Tests for L{netstructer.keys}.
"""

from __future__ import annotations

import base64
import copy
import errno
import hashlib
import hmac
import os
import pickle
import stat
from pathlib import Path

from cryptography.fernet import Fernet
from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from netstructer import keys
from netstructer.errors import InvalidKey, KeyFileError
from netstructer.keys import (
    ENVIRONMENT_VARIABLE,
    Keyring,
    asKeyring,
    defaultKeyPath,
    generateKey,
    loadOrCreateKeyFile,
    parseKey,
    readKeyFile,
    writeKeyFile,
)

RAW_ONE = bytes(range(32))
KEY_ONE = base64.urlsafe_b64encode(RAW_ONE)
RAW_TWO = bytes(range(100, 132))
KEY_TWO = base64.urlsafe_b64encode(RAW_TWO)
RAW_THREE = bytes(range(200, 232))
KEY_THREE = base64.urlsafe_b64encode(RAW_THREE)

# A key whose standard base64 form uses '+' and '/'.
_STANDARD = base64.b64encode(bytes([0xFB, 0xEF, 0xBE] * 10 + [0xFF, 0xFE])).decode("ascii")

BAD_KEYS: list[bytes | str] = [
    KEY_ONE[:-1],
    KEY_ONE[:-2],
    KEY_ONE + b"Q",
    KEY_ONE.decode("ascii")[:-1] + "Q",
    KEY_ONE.decode("ascii")[:-2] + "h=",
    KEY_ONE.decode("ascii")[:20] + "=" + KEY_ONE.decode("ascii")[21:],
    _STANDARD,
    '"' + KEY_TWO.decode("ascii") + '"',
    KEY_ONE + b" " + KEY_TWO,
    KEY_THREE.decode("ascii")[:10] + "\u00e9" + KEY_THREE.decode("ascii")[11:],
    KEY_THREE[:10] + b"\xff" + KEY_THREE[11:],
    RAW_TWO,
    RAW_THREE.hex(),
    "=" + KEY_TWO.decode("ascii")[:-1],
]
"""
Malformed keys of every kind.  None of their 4-character substrings occurs in
the messages by chance, so any such substring in a message is a leak.
"""


def _hkdf(raw: bytes, info: bytes, length: int) -> bytes:
    """
    An independent HKDF-SHA256 (RFC 5869) with no salt, for checking the
    module's derivations.

    @param raw: The input keying material.
    @param info: The context string.
    @param length: How many bytes to derive (at most 32 here).
    @return: The derived bytes.
    """
    prk = hmac.new(b"\x00" * 32, raw, hashlib.sha256).digest()
    return hmac.new(prk, info + b"\x01", hashlib.sha256).digest()[:length]


def _asText(key: bytes | str) -> str:
    """
    @param key: A key as given to the module.
    @return: The key as text, bytes decoded as Latin-1.
    """
    return key if isinstance(key, str) else key.decode("latin-1")


class _LeakAssertions(SynchronousTestCase):
    """
    Helpers to check that messages carry no key material.
    """

    def assertNoKeyMaterial(self, message: str, key: bytes | str) -> None:
        """
        Fail if C{message} contains C{key} or any 4-character substring of it.

        @param message: An error message.
        @param key: The key that was being checked.
        """
        text = _asText(key).strip()
        for start in range(len(text) - 3):
            fragment = text[start : start + 4]
            self.assertNotIn(fragment, message, f"message leaks key material: {message!r}")


class GenerateKeyTests(SynchronousTestCase):
    """
    Tests for L{generateKey}.
    """

    def test_format(self) -> None:
        """
        A new key is 44 ASCII bytes of padded urlsafe base64 that decode to
        32 bytes, and is accepted by both L{parseKey} and C{Fernet}.
        """
        key = generateKey()
        self.assertIsInstance(key, bytes)
        self.assertEqual(len(key), 44)
        self.assertTrue(key.endswith(b"="))
        self.assertEqual(len(base64.urlsafe_b64decode(key)), 32)
        self.assertEqual(parseKey(key), base64.urlsafe_b64decode(key))
        Fernet(key)

    def test_unique(self) -> None:
        """
        Every call makes a different key.
        """
        keys = {generateKey() for _ in range(64)}
        self.assertEqual(len(keys), 64)


class ParseKeyTests(_LeakAssertions):
    """
    Tests for L{parseKey}.
    """

    def test_fernetKeys(self) -> None:
        """
        Keys made by C{Fernet.generate_key()} are accepted.
        """
        for _ in range(200):
            key = Fernet.generate_key()
            self.assertEqual(parseKey(key), base64.urlsafe_b64decode(key))

    def test_bytesAndText(self) -> None:
        """
        A key is accepted as bytes or text, with the same result.
        """
        self.assertEqual(parseKey(KEY_ONE), RAW_ONE)
        self.assertEqual(parseKey(KEY_ONE.decode("ascii")), RAW_ONE)

    def test_whitespace(self) -> None:
        """
        Surrounding whitespace, such as a trailing newline, is ignored.
        """
        self.assertEqual(parseKey(b"  " + KEY_ONE + b"\r\n"), RAW_ONE)
        self.assertEqual(parseKey("\t" + KEY_ONE.decode("ascii") + "\n"), RAW_ONE)

    def test_urlsafeCharacters(self) -> None:
        """
        Keys using C{-} and C{_} are accepted.
        """
        raw = bytes([0xFB, 0xEF, 0xBE] * 10 + [0xFF, 0xF0])
        key = base64.urlsafe_b64encode(raw)
        self.assertIn(b"-", key)
        self.assertIn(b"_", key)
        self.assertEqual(parseKey(key), raw)

    def test_malformed(self) -> None:
        """
        Every malformed key raises L{InvalidKey}, whose message says what to
        do and contains no key material.
        """
        for key in BAD_KEYS:
            error = self.assertRaises(InvalidKey, parseKey, key)
            message = str(error)
            self.assertIn("netstructer keygen", message)
            self.assertNoKeyMaterial(message, key)

    def test_messageNamesProblem(self) -> None:
        """
        The message says what is wrong: the length, the alphabet, the
        padding or the encoding.
        """
        cases: list[tuple[bytes | str, str]] = [
            (b"", "empty"),
            (b"   \n", "empty"),
            (KEY_ONE[:-1], "43 characters long, not 44"),
            (RAW_ONE, "raw 32-byte secret"),
            (_STANDARD, "standard base64 alphabet"),
            ('"' + KEY_ONE.decode("ascii") + '"', "not urlsafe base64"),
            (KEY_ONE + b" " + KEY_TWO, "whitespace"),
            (KEY_ONE.decode("ascii")[:10] + "\u00e9" + KEY_ONE.decode("ascii")[11:], "non-ASCII"),
            (KEY_ONE[:-1] + b"Q", "padding"),
            (KEY_ONE.decode("ascii")[:-2] + "h=", "32 bytes"),
        ]
        for key, expected in cases:
            error = self.assertRaises(InvalidKey, parseKey, key)
            self.assertIn(expected, str(error))

    def test_messageIndependentOfKey(self) -> None:
        """
        Two keys with the same problem get the same message, so the message
        cannot depend on the key's content.
        """
        first = self.assertRaises(InvalidKey, parseKey, KEY_ONE[:-1])
        second = self.assertRaises(InvalidKey, parseKey, KEY_TWO[:-1])
        self.assertEqual(str(first), str(second))

    def test_wrongType(self) -> None:
        """
        Something that is neither bytes nor text raises L{TypeError}.
        """
        self.assertRaises(TypeError, parseKey, 12345)

    @given(st.text())
    def test_arbitraryText(self, text: str) -> None:
        """
        Arbitrary text either parses to 32 bytes or raises L{InvalidKey}.

        @param text: The candidate key.
        """
        try:
            raw = parseKey(text)
        except InvalidKey:
            return
        self.assertEqual(len(raw), 32)

    @given(st.binary())
    def test_arbitraryBytes(self, data: bytes) -> None:
        """
        Arbitrary bytes either parse to 32 bytes or raise L{InvalidKey}.

        @param data: The candidate key.
        """
        try:
            raw = parseKey(data)
        except InvalidKey:
            return
        self.assertEqual(len(raw), 32)

    @given(st.binary(min_size=32, max_size=32))
    def test_roundTrip(self, raw: bytes) -> None:
        """
        The urlsafe base64 form of any 32 bytes parses back to them.

        @param raw: The raw key.
        """
        self.assertEqual(parseKey(base64.urlsafe_b64encode(raw)), raw)


class KeyringTests(_LeakAssertions):
    """
    Tests for L{Keyring} and L{asKeyring}.
    """

    def test_order(self) -> None:
        """
        Keys keep their order, primary first, in every derivation.
        """
        forward = Keyring([KEY_ONE, KEY_TWO])
        backward = Keyring([KEY_TWO, KEY_ONE])
        self.assertEqual(len(forward), 2)
        self.assertEqual(forward.noisePSKs(), tuple(reversed(backward.noisePSKs())))
        self.assertEqual(forward.fernetKeys(), tuple(reversed(backward.fernetKeys())))
        self.assertEqual(forward.keyIDs(), tuple(reversed(backward.keyIDs())))
        self.assertEqual(forward._primary, RAW_ONE)
        self.assertEqual(backward._primary, RAW_TWO)
        self.assertNotEqual(forward, backward)

    def test_dedupe(self) -> None:
        """
        Duplicate keys, even written differently, are removed, keeping the
        first occurrence.
        """
        keyring = Keyring([KEY_TWO, KEY_ONE, KEY_TWO.decode("ascii"), b" " + KEY_ONE])
        self.assertEqual(len(keyring), 2)
        self.assertEqual(keyring, Keyring([KEY_TWO, KEY_ONE]))

    def test_empty(self) -> None:
        """
        An empty keyring is refused.
        """
        error = self.assertRaises(InvalidKey, Keyring, [])
        self.assertIn("netstructer keygen", str(error))

    def test_malformedMember(self) -> None:
        """
        A malformed key on the ring raises L{InvalidKey} saying which one,
        without key material.
        """
        for bad in BAD_KEYS:
            error = self.assertRaises(InvalidKey, Keyring, [KEY_ONE, bad])
            self.assertIn("Key 2 of 2", str(error))
            self.assertNoKeyMaterial(str(error), bad)

    def test_singleKey(self) -> None:
        """
        Passing one key instead of a sequence of keys raises L{TypeError}
        rather than treating each character as a key.
        """
        self.assertRaises(TypeError, Keyring, KEY_ONE)
        self.assertRaises(TypeError, Keyring, KEY_ONE.decode("ascii"))

    def test_knownAnswers(self) -> None:
        """
        The derivations are fixed: they are part of the protocol and must
        not change silently.
        """
        keyring = Keyring([KEY_ONE])
        self.assertEqual(
            keyring.noisePSKs(),
            (bytes.fromhex("128be920dad3dac36d2ff84194f96394984166e98aea8911e50c04a4159ebf18"),),
        )
        self.assertEqual(keyring.fernetKeys(), (b"N4rftO240pZQUlMELGMSfFyhAh4qWKvwLKJmmCu98hY=",))
        self.assertEqual(keyring.keyIDs(), ("d50c1697",))

    def test_derivationsAreHKDF(self) -> None:
        """
        The derivations are HKDF-SHA256 with no salt and the documented
        C{info} strings, checked against an independent implementation.
        """
        keyring = Keyring([KEY_ONE, KEY_TWO])
        for index, raw in enumerate([RAW_ONE, RAW_TWO]):
            self.assertEqual(keyring.noisePSKs()[index], _hkdf(raw, b"netstructer/1 noise-psk", 32))
            self.assertEqual(
                keyring.fernetKeys()[index],
                base64.urlsafe_b64encode(_hkdf(raw, b"netstructer/1 fernet", 32)),
            )
            self.assertEqual(
                keyring.keyIDs()[index], _hkdf(raw, b"netstructer/1 key-id", 16)[:4].hex()
            )

    def test_derivationsDiffer(self) -> None:
        """
        The subkeys differ from each other, from the user key and between
        keys.
        """
        keyring = Keyring([KEY_ONE, KEY_TWO])
        psks = keyring.noisePSKs()
        fernets = [base64.urlsafe_b64decode(key) for key in keyring.fernetKeys()]
        for index, raw in enumerate([RAW_ONE, RAW_TWO]):
            self.assertEqual(len(psks[index]), 32)
            self.assertEqual(len(fernets[index]), 32)
            self.assertNotEqual(psks[index], fernets[index])
            self.assertNotEqual(psks[index], raw)
            self.assertNotEqual(fernets[index], raw)
            self.assertNotIn(keyring.keyIDs()[index], raw.hex())
        self.assertNotEqual(psks[0], psks[1])
        self.assertNotEqual(fernets[0], fernets[1])
        self.assertNotEqual(keyring.keyIDs()[0], keyring.keyIDs()[1])

    def test_deterministic(self) -> None:
        """
        The same keys always give the same derivations.
        """
        first = Keyring([KEY_ONE, KEY_TWO])
        second = Keyring([KEY_ONE.decode("ascii"), KEY_TWO.decode("ascii")])
        self.assertEqual(first.noisePSKs(), second.noisePSKs())
        self.assertEqual(first.fernetKeys(), second.fernetKeys())
        self.assertEqual(first.keyIDs(), second.keyIDs())
        self.assertEqual(first, second)
        self.assertEqual(hash(first), hash(second))

    def test_fernetKeysWork(self) -> None:
        """
        The derived Fernet keys are valid Fernet keys.
        """
        for key in Keyring([KEY_ONE, KEY_TWO]).fernetKeys():
            fernet = Fernet(key)
            self.assertEqual(fernet.decrypt(fernet.encrypt(b"x")), b"x")

    def test_keyIDFormat(self) -> None:
        """
        Key IDs are 8 lowercase hexadecimal digits.
        """
        for keyID in Keyring([KEY_ONE, KEY_TWO, KEY_THREE]).keyIDs():
            self.assertEqual(len(keyID), 8)
            self.assertEqual(keyID, keyID.lower())
            int(keyID, 16)

    def test_reprHasNoMaterial(self) -> None:
        """
        The C{repr} and C{str} of a keyring show the count and the key IDs,
        never key material, raw or derived.
        """
        keyring = Keyring([KEY_ONE, KEY_TWO])
        for text in [repr(keyring), str(keyring)]:
            self.assertIn("2 keys", text)
            for keyID in keyring.keyIDs():
                self.assertIn(keyID, text)
            for key in [KEY_ONE, KEY_TWO, *keyring.fernetKeys()]:
                self.assertNoKeyMaterial(text, key)
            for secret in [RAW_ONE, RAW_TWO, *keyring.noisePSKs()]:
                self.assertNotIn(secret.hex()[:8], text)
        self.assertIn("1 key,", repr(Keyring([KEY_ONE])))

    def test_immutable(self) -> None:
        """
        A keyring cannot be changed.
        """
        keyring = Keyring([KEY_ONE])
        self.assertRaises(AttributeError, setattr, keyring, "_keys", (RAW_TWO,))
        self.assertRaises(AttributeError, delattr, keyring, "_keys")
        self.assertRaises(AttributeError, setattr, keyring, "other", 1)
        self.assertEqual(keyring._primary, RAW_ONE)

    def test_derivedOnce(self) -> None:
        """
        Material derived through C{_derived} is computed on first use only,
        once per purpose, and kept by that keyring alone; it changes neither
        equality nor the repr.
        """
        keyring = Keyring([KEY_ONE])
        calls: list[Keyring] = []

        def derive(ring: Keyring) -> tuple[bytes, ...]:
            calls.append(ring)
            return ring.noisePSKs()

        before = repr(keyring)
        first = keyring._derived("test", derive)
        self.assertIs(keyring._derived("test", derive), first)
        self.assertEqual(calls, [keyring])
        keyring._derived("other test", derive)
        Keyring([KEY_ONE])._derived("test", derive)
        self.assertEqual(len(calls), 3)
        self.assertEqual(keyring, Keyring([KEY_ONE]))
        self.assertEqual(repr(keyring), before)

    def test_copy(self) -> None:
        """
        Copying a keyring gives the keyring itself, since it is immutable.
        """
        keyring = Keyring([KEY_ONE])
        self.assertIs(copy.copy(keyring), keyring)
        self.assertIs(copy.deepcopy(keyring), keyring)

    def test_noPickle(self) -> None:
        """
        A keyring refuses to be pickled, which would expose its keys.
        """
        self.assertRaises(TypeError, pickle.dumps, Keyring([KEY_ONE]))

    def test_equality(self) -> None:
        """
        Keyrings are equal when they hold the same keys in the same order,
        and never equal to other types.
        """
        self.assertEqual(Keyring([KEY_ONE]), Keyring([KEY_ONE]))
        self.assertNotEqual(Keyring([KEY_ONE]), Keyring([KEY_TWO]))
        self.assertNotEqual(Keyring([KEY_ONE]), Keyring([KEY_ONE, KEY_TWO]))
        self.assertNotEqual(Keyring([KEY_ONE]), KEY_ONE)

    def test_asKeyring(self) -> None:
        """
        L{asKeyring} accepts a key as bytes or text, a keyring, or a
        sequence of keys.
        """
        keyring = Keyring([KEY_ONE, KEY_TWO])
        self.assertIs(asKeyring(keyring), keyring)
        self.assertEqual(asKeyring(KEY_ONE), Keyring([KEY_ONE]))
        self.assertEqual(asKeyring(KEY_ONE.decode("ascii")), Keyring([KEY_ONE]))
        self.assertEqual(asKeyring([KEY_ONE, KEY_TWO]), keyring)
        self.assertEqual(asKeyring((KEY_ONE, KEY_TWO.decode("ascii"))), keyring)

    def test_asKeyringRefuses(self) -> None:
        """
        L{asKeyring} raises L{InvalidKey} for malformed keys and empty lists,
        and L{TypeError} for things that are not keys.
        """
        self.assertRaises(InvalidKey, asKeyring, KEY_ONE[:-1])
        self.assertRaises(InvalidKey, asKeyring, [])
        self.assertRaises(TypeError, asKeyring, 42)
        self.assertRaises(TypeError, asKeyring, [42])

    def test_asKeyringSameKey(self) -> None:
        """
        L{asKeyring} gives the same keyring for the same key, so that a
        program connecting again and again with its key checks it and
        derives the handshake's material once; a malformed key is refused
        every time.
        """
        self.assertIs(asKeyring(KEY_ONE), asKeyring(KEY_ONE))
        self.assertIs(asKeyring(KEY_TWO.decode("ascii")), asKeyring(KEY_TWO.decode("ascii")))
        self.assertIsNot(asKeyring([KEY_ONE]), asKeyring([KEY_ONE]))
        for _ in range(2):
            self.assertRaises(InvalidKey, asKeyring, KEY_ONE[:-1])


class EnvironmentTests(_LeakAssertions):
    """
    Tests for L{Keyring.fromEnvironment}.
    """

    def test_absent(self) -> None:
        """
        Without the variable there is no keyring.
        """
        self.assertIsNone(Keyring.fromEnvironment({}))
        self.assertIsNone(Keyring.fromEnvironment({"OTHER": KEY_ONE.decode("ascii")}))

    def test_one(self) -> None:
        """
        One key gives a keyring of one key.
        """
        environ = {ENVIRONMENT_VARIABLE: KEY_ONE.decode("ascii")}
        self.assertEqual(Keyring.fromEnvironment(environ), Keyring([KEY_ONE]))

    def test_several(self) -> None:
        """
        Several comma-separated keys, with spaces and a trailing comma, give
        a keyring of those keys in order.
        """
        value = f" {KEY_TWO.decode()} , {KEY_ONE.decode()},{KEY_THREE.decode()} ,"
        keyring = Keyring.fromEnvironment({ENVIRONMENT_VARIABLE: value})
        self.assertEqual(keyring, Keyring([KEY_TWO, KEY_ONE, KEY_THREE]))

    def test_malformed(self) -> None:
        """
        A malformed key raises L{InvalidKey} naming the variable and the
        position of the key, without key material.
        """
        for bad in BAD_KEYS:
            text = _asText(bad)
            if "," in text:
                continue
            value = KEY_ONE.decode("ascii") + "," + text
            if not text.strip():
                continue
            error = self.assertRaises(
                InvalidKey, Keyring.fromEnvironment, {ENVIRONMENT_VARIABLE: value}
            )
            self.assertIn(ENVIRONMENT_VARIABLE, str(error))
            self.assertIn("key 2 of 2", str(error))
            self.assertNoKeyMaterial(str(error), bad)

    def test_empty(self) -> None:
        """
        A variable that is set but holds no key raises L{InvalidKey} naming
        the variable.
        """
        for value in ["", "  ", " , "]:
            error = self.assertRaises(
                InvalidKey, Keyring.fromEnvironment, {ENVIRONMENT_VARIABLE: value}
            )
            self.assertIn(ENVIRONMENT_VARIABLE, str(error))

    def test_osEnviron(self) -> None:
        """
        Without an explicit mapping, L{os.environ} is read.
        """
        self.patch(os, "environ", {ENVIRONMENT_VARIABLE: KEY_TWO.decode("ascii")})
        self.assertEqual(Keyring.fromEnvironment(), Keyring([KEY_TWO]))


def _writeFile(path: str, data: bytes, mode: int = 0o600) -> None:
    """
    Write a file with the given mode, for tests.

    @param path: The file.
    @param data: Its contents.
    @param mode: Its permission bits.
    """
    Path(path).write_bytes(data)
    os.chmod(path, mode)


_POSIX = os.name == "posix"


class ReadKeyFileTests(_LeakAssertions):
    """
    Tests for L{readKeyFile} and L{Keyring.fromFile}.
    """

    def test_comments(self) -> None:
        """
        Blank lines, whole-line comments and trailing comments are ignored;
        keys keep their order.
        """
        path = self.mktemp()
        _writeFile(
            path,
            b"# NetStructer keys\n\n   # indented comment\n"
            + KEY_TWO
            + b"  # the new key\r\n"
            + b"\t"
            + KEY_ONE
            + b"\t#old\n\n",
        )
        self.assertEqual(readKeyFile(path), Keyring([KEY_TWO, KEY_ONE]))
        self.assertEqual(Keyring.fromFile(Path(path)), Keyring([KEY_TWO, KEY_ONE]))

    def test_multipleKeys(self) -> None:
        """
        A file of several keys gives a keyring of them all, in order, without
        duplicates.
        """
        path = self.mktemp()
        _writeFile(path, b"\n".join([KEY_THREE, KEY_ONE, KEY_TWO, KEY_ONE]))
        self.assertEqual(readKeyFile(path), Keyring([KEY_THREE, KEY_ONE, KEY_TWO]))

    def test_byteOrderMark(self) -> None:
        """
        A UTF-8 byte order mark, as some editors write, is ignored.
        """
        path = self.mktemp()
        _writeFile(path, b"\xef\xbb\xbf" + KEY_ONE + b"\n")
        self.assertEqual(readKeyFile(path), Keyring([KEY_ONE]))

    def test_missing(self) -> None:
        """
        A missing file raises L{KeyFileError} naming the file and saying how
        to create it.
        """
        path = self.mktemp()
        error = self.assertRaises(KeyFileError, readKeyFile, path)
        self.assertEqual(error.path, path)
        self.assertIn(path, str(error))
        self.assertIn(f"netstructer keygen -o {path}", str(error))

    def test_badMode(self) -> None:
        """
        On POSIX, a file readable or writable by group or others raises
        L{KeyFileError} naming the file and saying to C{chmod 600} it.
        """
        if not _POSIX:
            raise self.skipTest("file modes are only checked on POSIX")
        for mode in [0o644, 0o640, 0o604, 0o620, 0o602, 0o660]:
            path = self.mktemp()
            _writeFile(path, KEY_ONE + b"\n", mode)
            error = self.assertRaises(KeyFileError, readKeyFile, path)
            self.assertIn("chmod 600", str(error))
            self.assertIn(f"chmod 600 {path}", str(error))
            self.assertEqual(error.path, path)
            self.assertNoKeyMaterial(str(error), KEY_ONE)

    def test_goodModes(self) -> None:
        """
        Modes that give group and others nothing are accepted.
        """
        for mode in [0o600, 0o400]:
            path = self.mktemp()
            _writeFile(path, KEY_ONE + b"\n", mode)
            self.assertEqual(readKeyFile(path), Keyring([KEY_ONE]))

    def test_directory(self) -> None:
        """
        A directory raises L{KeyFileError}.
        """
        path = self.mktemp()
        os.mkdir(path, 0o700)
        error = self.assertRaises(KeyFileError, readKeyFile, path)
        self.assertIn("directory", str(error))
        self.assertEqual(error.path, path)

    def test_notRegular(self) -> None:
        """
        A FIFO raises L{KeyFileError} rather than blocking.
        """
        if not hasattr(os, "mkfifo"):
            raise self.skipTest("no FIFOs on this platform")
        path = self.mktemp()
        os.mkfifo(path, 0o600)
        error = self.assertRaises(KeyFileError, readKeyFile, path)
        self.assertIn("not a regular file", str(error))

    def test_unreadable(self) -> None:
        """
        A file this user may not read raises L{KeyFileError} naming it.
        """
        if not _POSIX or os.geteuid() == 0:
            raise self.skipTest("needs POSIX permissions and a user that is not root")
        path = self.mktemp()
        _writeFile(path, KEY_ONE + b"\n", 0o200)
        error = self.assertRaises(KeyFileError, readKeyFile, path)
        self.assertIn("permission denied", str(error))
        self.assertIn(path, str(error))

    def test_permissionDenied(self) -> None:
        """
        If opening the file is not permitted, L{KeyFileError} names the file
        and says it cannot be read.  (Simulated, so that it runs as root.)
        """
        path = self.mktemp()
        _writeFile(path, KEY_ONE + b"\n")

        def refuse(*args: object, **kwargs: object) -> int:
            raise PermissionError(errno.EACCES, "Permission denied")

        self.patch(os, "open", refuse)
        error = self.assertRaises(KeyFileError, readKeyFile, path)
        self.assertIn("permission denied", str(error))
        self.assertIn(path, str(error))
        self.assertIsInstance(error.__cause__, PermissionError)

    def test_cannotOpen(self) -> None:
        """
        Other failures to open the file, such as a symbolic link loop, raise
        L{KeyFileError} naming the file.
        """
        if not _POSIX:
            raise self.skipTest("needs symbolic links")
        path = self.mktemp()
        os.symlink(os.path.basename(path), path)
        error = self.assertRaises(KeyFileError, readKeyFile, path)
        self.assertIn("cannot be opened", str(error))
        self.assertEqual(error.path, path)

    def test_readFails(self) -> None:
        """
        A failure while reading raises L{KeyFileError} naming the file.
        """
        path = self.mktemp()
        _writeFile(path, KEY_ONE + b"\n")

        def fail(fd: int, size: int) -> bytes:
            raise OSError(errno.EIO, "Input/output error")

        self.patch(os, "read", fail)
        error = self.assertRaises(KeyFileError, readKeyFile, path)
        self.assertIn("cannot be read", str(error))
        self.assertEqual(error.path, path)

    def test_badLine(self) -> None:
        """
        A malformed line raises L{KeyFileError} giving its line number, never
        its content.
        """
        for bad in BAD_KEYS:
            raw = bad if isinstance(bad, bytes) else bad.encode("utf-8")
            if b"\n" in raw or not raw.strip():
                continue
            path = self.mktemp()
            _writeFile(path, b"# keys\n" + KEY_ONE + b"\n\n" + raw + b"\n" + KEY_TWO + b"\n")
            error = self.assertRaises(KeyFileError, readKeyFile, path)
            self.assertIn(f"{path}, line 4", str(error))
            self.assertEqual(error.path, path)
            self.assertNoKeyMaterial(str(error), bad)

    def test_commentNeedsWhitespace(self) -> None:
        """
        A C{#} directly after a key does not start a comment, so the line is
        malformed.
        """
        path = self.mktemp()
        _writeFile(path, KEY_ONE + b"#comment\n")
        error = self.assertRaises(KeyFileError, readKeyFile, path)
        self.assertIn("line 1", str(error))

    def test_empty(self) -> None:
        """
        A file with no key, only blank lines and comments, raises
        L{KeyFileError}.
        """
        for contents in [b"", b"\n\n", b"# only a comment\n  \n"]:
            path = self.mktemp()
            _writeFile(path, contents)
            error = self.assertRaises(KeyFileError, readKeyFile, path)
            self.assertIn("holds no key", str(error))
            self.assertIn(path, str(error))

    def test_tooLarge(self) -> None:
        """
        A file too large to be a key file raises L{KeyFileError}.
        """
        path = self.mktemp()
        _writeFile(path, b"#" * (1024 * 1024))
        error = self.assertRaises(KeyFileError, readKeyFile, path)
        self.assertIn("too large", str(error))

    def test_isInvalidKey(self) -> None:
        """
        L{KeyFileError} is an L{InvalidKey}, so callers can catch either.
        """
        error = self.assertRaises(InvalidKey, readKeyFile, self.mktemp())
        self.assertIsInstance(error, KeyFileError)


class WriteKeyFileTests(SynchronousTestCase):
    """
    Tests for L{writeKeyFile}.
    """

    def test_newKey(self) -> None:
        """
        Without a key, a new one is made, written and returned; the file has
        a comment header naming the key ID and reads back as that key.
        """
        path = self.mktemp()
        key = writeKeyFile(path)
        self.assertEqual(len(key), 44)
        parseKey(key)
        data = Path(path).read_bytes()
        self.assertTrue(data.startswith(b"# "))
        self.assertIn(Keyring([key]).keyIDs()[0].encode("ascii"), data.splitlines()[0])
        self.assertEqual(data.splitlines()[1], key)
        self.assertEqual(readKeyFile(path), Keyring([key]))

    def test_givenKey(self) -> None:
        """
        A given key, as bytes or text, is written stripped and returned as
        bytes.
        """
        path = self.mktemp()
        self.assertEqual(writeKeyFile(path, KEY_ONE), KEY_ONE)
        self.assertEqual(readKeyFile(path), Keyring([KEY_ONE]))
        other = self.mktemp()
        self.assertEqual(writeKeyFile(other, " " + KEY_TWO.decode("ascii") + "\n"), KEY_TWO)
        self.assertEqual(readKeyFile(other), Keyring([KEY_TWO]))

    def test_badKey(self) -> None:
        """
        A malformed key raises L{InvalidKey} and creates nothing.
        """
        path = self.mktemp()
        self.assertRaises(InvalidKey, writeKeyFile, path, KEY_ONE[:-1])
        self.assertFalse(os.path.lexists(path))

    def test_modes(self) -> None:
        """
        The file gets mode 0600 and missing parent directories mode 0700.
        """
        if not _POSIX:
            raise self.skipTest("file modes are only meaningful on POSIX")
        base = Path(self.mktemp())
        path = base / "config" / "netstructer" / "key"
        writeKeyFile(path)
        self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o600)
        for directory in [base, base / "config", base / "config" / "netstructer"]:
            self.assertEqual(stat.S_IMODE(os.stat(directory).st_mode), 0o700)

    def test_existingParentsUntouched(self) -> None:
        """
        Existing parent directories keep their mode.
        """
        if not _POSIX:
            raise self.skipTest("file modes are only meaningful on POSIX")
        base = Path(self.mktemp())
        base.mkdir()
        os.chmod(base, 0o750)  # noqa: S103 - a mode that is not 0700, on purpose
        writeKeyFile(base / "key")
        self.assertEqual(stat.S_IMODE(os.stat(base).st_mode), 0o750)

    def test_noOverwrite(self) -> None:
        """
        An existing file is not overwritten: L{KeyFileError} names it and the
        file is unchanged.
        """
        path = self.mktemp()
        writeKeyFile(path, KEY_ONE)
        before = Path(path).read_bytes()
        error = self.assertRaises(KeyFileError, writeKeyFile, path, KEY_TWO)
        self.assertIn("already exists", str(error))
        self.assertEqual(error.path, path)
        self.assertEqual(Path(path).read_bytes(), before)
        self.assertRaises(KeyFileError, writeKeyFile, path)
        self.assertEqual(Path(path).read_bytes(), before)

    def test_noOverwriteSymlink(self) -> None:
        """
        A dangling symbolic link is not followed: L{KeyFileError} is raised
        and nothing is created at its target.
        """
        if not _POSIX:
            raise self.skipTest("needs symbolic links")
        base = Path(self.mktemp())
        base.mkdir()
        target = base / "target"
        link = base / "key"
        link.symlink_to(target)
        self.assertRaises(KeyFileError, writeKeyFile, link)
        self.assertFalse(target.exists())

    def test_overwrite(self) -> None:
        """
        With C{overwrite=True} the file is replaced with mode 0600, and no
        temporary file is left behind.
        """
        base = Path(self.mktemp())
        path = base / "key"
        writeKeyFile(path, KEY_ONE)
        if _POSIX:
            os.chmod(path, 0o644)
        self.assertEqual(writeKeyFile(path, KEY_TWO, overwrite=True), KEY_TWO)
        self.assertEqual(readKeyFile(path), Keyring([KEY_TWO]))
        self.assertEqual(os.listdir(base), ["key"])

    def test_overwriteMissing(self) -> None:
        """
        C{overwrite=True} also creates a file that does not exist yet.
        """
        path = self.mktemp()
        writeKeyFile(path, KEY_ONE, overwrite=True)
        self.assertEqual(readKeyFile(path), Keyring([KEY_ONE]))

    def test_overwriteDirectory(self) -> None:
        """
        Replacing a directory fails with L{KeyFileError} and leaves no
        temporary file behind.
        """
        base = Path(self.mktemp())
        path = base / "key"
        path.mkdir(parents=True)
        error = self.assertRaises(KeyFileError, writeKeyFile, path, KEY_ONE, overwrite=True)
        self.assertEqual(error.path, str(path))
        self.assertEqual(os.listdir(base), ["key"])
        self.assertTrue(path.is_dir())

    def test_writeFailureCleansUp(self) -> None:
        """
        If writing fails, L{KeyFileError} is raised and no partial or
        temporary file is left behind, with or without C{overwrite}.
        """

        def fail(fd: int) -> None:
            raise OSError(errno.ENOSPC, "No space left on device")

        self.patch(os, "fsync", fail)
        base = Path(self.mktemp())
        base.mkdir()
        path = base / "key"
        error = self.assertRaises(KeyFileError, writeKeyFile, path, KEY_ONE)
        self.assertIn("No space left on device", str(error))
        self.assertEqual(os.listdir(base), [])
        error = self.assertRaises(KeyFileError, writeKeyFile, path, KEY_ONE, overwrite=True)
        self.assertEqual(os.listdir(base), [])

    def test_unwritableParent(self) -> None:
        """
        A parent that is a file, not a directory, raises L{KeyFileError}.
        """
        parent = self.mktemp()
        _writeFile(parent, b"not a directory")
        path = os.path.join(parent, "key")
        error = self.assertRaises(KeyFileError, writeKeyFile, path)
        self.assertIn("cannot be written", str(error))
        self.assertEqual(error.path, path)


class LoadOrCreateKeyFileTests(SynchronousTestCase):
    """
    Tests for L{loadOrCreateKeyFile}.
    """

    def test_createThenReuse(self) -> None:
        """
        The first call creates the file (mode 0600, parents 0700) and says
        so; the second reads the same key and says it did not create it.
        """
        base = Path(self.mktemp())
        path = base / "netstructer" / "key"
        first, created = loadOrCreateKeyFile(path)
        self.assertTrue(created)
        self.assertEqual(len(first), 1)
        if _POSIX:
            self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o600)
            self.assertEqual(stat.S_IMODE(os.stat(path.parent).st_mode), 0o700)
        second, createdAgain = loadOrCreateKeyFile(path)
        self.assertFalse(createdAgain)
        self.assertEqual(second, first)
        self.assertEqual(readKeyFile(path), first)

    def test_existing(self) -> None:
        """
        An existing file is read, not replaced.
        """
        path = self.mktemp()
        writeKeyFile(path, KEY_ONE)
        self.assertEqual(loadOrCreateKeyFile(path), (Keyring([KEY_ONE]), False))

    def test_existingUnsafe(self) -> None:
        """
        An existing file that fails the checks raises L{KeyFileError} and is
        left alone.
        """
        if not _POSIX:
            raise self.skipTest("file modes are only checked on POSIX")
        path = self.mktemp()
        _writeFile(path, KEY_ONE + b"\n", 0o644)
        error = self.assertRaises(KeyFileError, loadOrCreateKeyFile, path)
        self.assertIn("chmod 600", str(error))
        self.assertEqual(Path(path).read_bytes(), KEY_ONE + b"\n")

    def test_existingMalformed(self) -> None:
        """
        An existing file holding no key raises L{KeyFileError} rather than
        being filled in.
        """
        path = self.mktemp()
        _writeFile(path, b"# nothing\n")
        self.assertRaises(KeyFileError, loadOrCreateKeyFile, path)
        self.assertEqual(Path(path).read_bytes(), b"# nothing\n")

    def test_createdMeanwhile(self) -> None:
        """
        If another process creates the file between the read and the write,
        that file is read rather than overwritten.
        """
        path = self.mktemp()
        original = keys._readKeyFile
        calls = []

        def racingRead(target: str) -> Keyring:
            calls.append(target)
            if len(calls) == 1:
                writeKeyFile(target, KEY_TWO)
                raise FileNotFoundError(errno.ENOENT, "No such file or directory")
            return original(target)

        self.patch(keys, "_readKeyFile", racingRead)
        self.assertEqual(loadOrCreateKeyFile(path), (Keyring([KEY_TWO]), False))
        self.assertEqual(len(calls), 2)

    def test_cannotOpen(self) -> None:
        """
        A path that cannot be opened, because a parent is a file, raises
        L{KeyFileError} naming it.
        """
        parent = self.mktemp()
        _writeFile(parent, b"not a directory")
        path = os.path.join(parent, "key")
        error = self.assertRaises(KeyFileError, loadOrCreateKeyFile, path)
        self.assertEqual(error.path, path)

    def test_cannotCreate(self) -> None:
        """
        A missing file that cannot be created raises L{KeyFileError} naming
        it.  (Simulated, so that it runs as root.)
        """

        def refuse(path: object, mode: int = 0o777) -> None:
            raise PermissionError(errno.EACCES, "Permission denied")

        path = os.path.join(self.mktemp(), "sub", "key")
        self.patch(os, "mkdir", refuse)
        error = self.assertRaises(KeyFileError, loadOrCreateKeyFile, path)
        self.assertIn("cannot be created", str(error))
        self.assertEqual(error.path, path)


class DefaultKeyPathTests(SynchronousTestCase):
    """
    Tests for L{defaultKeyPath}.
    """

    def test_xdgConfigHome(self) -> None:
        """
        C{$XDG_CONFIG_HOME/netstructer/key} when that is set.
        """
        environ = {"XDG_CONFIG_HOME": "/xdg", "HOME": "/home/user"}
        self.assertEqual(defaultKeyPath(environ), Path("/xdg/netstructer/key"))

    def test_home(self) -> None:
        """
        C{~/.config/netstructer/key} otherwise, with C{HOME} from the given
        environment.
        """
        self.assertEqual(
            defaultKeyPath({"HOME": "/home/user"}), Path("/home/user/.config/netstructer/key")
        )

    def test_ignoredXDG(self) -> None:
        """
        An empty or relative C{XDG_CONFIG_HOME} is ignored, as the XDG
        specification requires.
        """
        for value in ["", "relative/dir"]:
            environ = {"XDG_CONFIG_HOME": value, "HOME": "/home/user"}
            self.assertEqual(defaultKeyPath(environ), Path("/home/user/.config/netstructer/key"))

    def test_noHome(self) -> None:
        """
        Without C{HOME} in the environment, the user's home directory is
        used.
        """
        self.assertEqual(defaultKeyPath({}), Path.home() / ".config" / "netstructer" / "key")

    def test_osEnviron(self) -> None:
        """
        Without an explicit mapping, L{os.environ} is read.
        """
        self.patch(os, "environ", {"XDG_CONFIG_HOME": "/from/os"})
        self.assertEqual(defaultKeyPath(), Path("/from/os/netstructer/key"))
