# -*- test-case-name: tests.test_keys -*-
"""
Keys, key files and keyrings.

The secret a user handles is a I{Fernet-format key}: 32 random bytes in
urlsafe base64 with padding, 44 ASCII characters.  Keys made by
C{cryptography.fernet.Fernet.generate_key()} work, and L{generateKey} makes
new ones.  There is no default or built-in key anywhere: a program that
wants to talk must be given one.

A L{Keyring} holds one or more keys, in order.  The first key is the one used
to connect and send; every listed key is accepted.  That allows rotation
without downtime: add the new key second everywhere, then move it first
everywhere, then remove the old one.

A user key is never used directly.  Every use derives its own subkey with
HKDF-SHA256 (RFC 5869), with no salt (so HKDF's default, 32 zero bytes) and a
distinct C{info} string per purpose:

  - C{b"netstructer/1 noise-psk"}, 32 bytes: the Noise pre-shared key
    (L{Keyring.noisePSKs});
  - C{b"netstructer/1 fernet"}, 32 bytes, urlsafe-base64 encoded: a Fernet
    key (L{Keyring.fernetKeys});
  - C{b"netstructer/1 key-id"}, 16 bytes, of which the first 4 are written as
    8 lowercase hexadecimal digits: a non-secret key identifier, safe to log
    (L{Keyring.keyIDs}).

Key files hold one key per line, optionally preceded by a I{name} and
whitespace: C{alice <key>}.  A server's keyring may hold one key per client
(or per group of clients sharing a name): the session a key authenticates is
known by that key's name (L{KeyIdentity.name}), and a line without a name
stands for anonymous clients.  Names never travel on the wire: the server
learns which key the client holds from the handshake itself, so a client
cannot claim a name whose key it does not hold.  Blank lines and comments (a
C{#} at the start of a line, or after whitespace) are ignored.  L{readKeyFile} refuses
files that are missing, unreadable, not regular files, readable or writable
by group or others (on POSIX), empty of keys, or that hold a malformed line.
L{writeKeyFile} writes them with mode 0600, atomically.

Error messages name files, line numbers and what to do; they never contain
key material.

This module imports nothing but the standard library and C{cryptography}.
"""

from __future__ import annotations

import base64
import functools
import hmac
import ipaddress
import os
import re
import secrets
import shlex
import stat
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeAlias, TypeVar, Union, cast

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from netstructer.errors import InvalidKey, KeyFileError

__all__ = [
    "ENVIRONMENT_VARIABLE",
    "KEY_LENGTH",
    "MAX_NAME_LENGTH",
    "KeyIdentity",
    "Keyring",
    "asKeyring",
    "checkName",
    "defaultKeyPath",
    "generateKey",
    "keyFileLine",
    "loadOrCreateKeyFile",
    "parseKey",
    "readKeyFile",
    "writeKeyFile",
]

StrPath: TypeAlias = Union[str, "os.PathLike[str]"]
"""A file system path: a string, or a L{pathlib.Path} or other path-like object."""

_T = TypeVar("_T")

KEY_LENGTH = 32
"""
The length in bytes of a raw key.
"""

ENVIRONMENT_VARIABLE = "NETSTRUCTER_KEY"
"""
The environment variable L{Keyring.fromEnvironment} reads: one key, or
several separated by commas, primary first.
"""

MAX_NAME_LENGTH = 64
"""
The longest name a key may carry, in characters.
"""

_ENCODED_LENGTH = 44
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.@+-]*\Z")
_URLSAFE_ALPHABET = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
# 32 bytes are 256 bits, and 43 characters carry 258: the last character before
# the "=" holds 4 bits of key and 2 bits that must be zero.  Only these 16
# characters (every fourth of the alphabet) are canonical there.
_CANONICAL_LAST = frozenset("AEIMQUYcgkosw048")

_HKDF_SALT: bytes | None = None
_INFO_NOISE_PSK = b"netstructer/1 noise-psk"
_INFO_FERNET = b"netstructer/1 fernet"
_INFO_KEY_ID = b"netstructer/1 key-id"

_BY_FINGERPRINT = "names by fingerprint"
_MAX_KEY_FILE_SIZE = 512 * 1024
_COMMENT = re.compile(rb"\s#.*\Z", re.DOTALL)
_UTF8_BOM = b"\xef\xbb\xbf"

_KEYGEN_ADVICE = "Make one with `netstructer keygen`."


def generateKey() -> bytes:
    """
    Make a new key from the operating system's random number generator.

    @return: A Fernet-format key: 32 random bytes in urlsafe base64 with
        padding, 44 ASCII bytes.
    """
    return base64.urlsafe_b64encode(secrets.token_bytes(KEY_LENGTH))


def _keyText(key: bytes | str) -> str:
    """
    Turn a key given as bytes or text into stripped text, without failing.

    @param key: The key as given by the user.
    @return: C{key} without surrounding whitespace; bytes are decoded as
        Latin-1 so that every byte maps to one character and non-ASCII input
        can be reported rather than crash the decoder.
    @raise TypeError: If C{key} is neither bytes nor text.
    """
    if isinstance(key, str):
        return key.strip()
    if isinstance(key, (bytes, bytearray)):
        return bytes(key).strip().decode("latin-1")
    raise TypeError(f"a key must be bytes or str (a Fernet-format key), not {type(key).__name__}")


def _keyProblems(text: str) -> list[str]:
    """
    Say what is wrong with a stripped key, without quoting any of it.

    @param text: The key, stripped of surrounding whitespace.
    @return: A list of problems, empty if C{text} is a valid key.  No problem
        mentions any character of C{text}.
    """
    if not text:
        return ["it is empty"]
    problems = []
    if len(text) == KEY_LENGTH:
        problems.append(
            f"it is {KEY_LENGTH} characters long, not {_ENCODED_LENGTH} (a raw 32-byte"
            f" secret must be given in its urlsafe base64 form)"
        )
    elif len(text) != _ENCODED_LENGTH:
        problems.append(f"it is {len(text)} characters long, not {_ENCODED_LENGTH}")
    if not text.isascii():
        problems.append("it contains non-ASCII characters")
    if any(c.isspace() for c in text):
        problems.append("it contains whitespace (one key per line, or keys separated by commas)")
    if "+" in text or "/" in text:
        problems.append(
            "it uses the standard base64 alphabet ('+' or '/'); keys use the urlsafe"
            " alphabet ('-' and '_')"
        )
    if any(
        c.isascii() and not c.isspace() and c not in _URLSAFE_ALPHABET and c not in "+/="
        for c in text
    ):
        problems.append(
            "it contains characters that are not urlsafe base64 (letters, digits, '-', '_')"
        )
    if not text.endswith("=") or "=" in text[:-1]:
        problems.append("it must end with exactly one '=' padding character")
    if not problems and text[-2] not in _CANONICAL_LAST:
        problems.append(
            "it does not encode exactly 32 bytes (the character before the '=' is wrong;"
            " the key is probably corrupted)"
        )
    return problems


def _explain(problems: Sequence[str]) -> str:
    """
    Join a list of key problems into one clause.

    @param problems: Problems from L{_keyProblems}.
    @return: The problems, separated by semicolons.
    """
    return "; ".join(problems)


def parseKey(key: bytes | str) -> bytes:
    """
    Check a Fernet-format key and return its raw secret.

    A valid key is, after stripping surrounding whitespace, exactly 44
    characters of urlsafe base64 (C{A-Z}, C{a-z}, C{0-9}, C{-}, C{_}) ending
    in one C{=}, and is the canonical encoding of 32 bytes.  This is what
    C{Fernet.generate_key()} makes; it is slightly stricter than what
    C{Fernet} itself decodes, which silently ignores stray characters.

    @param key: The key, as ASCII bytes or text.
    @return: The 32 raw bytes of the key.
    @raise InvalidKey: If C{key} is malformed.  The message says what is
        wrong (length, alphabet, padding) and never contains key material.
    @raise TypeError: If C{key} is neither bytes nor text.
    """
    text = _keyText(key)
    problems = _keyProblems(text)
    if problems:
        raise InvalidKey(
            f"Not a valid NetStructer key: {_explain(problems)}."
            f" A key is 44 characters of urlsafe base64. {_KEYGEN_ADVICE}"
        )
    raw = base64.urlsafe_b64decode(text)
    if len(raw) != KEY_LENGTH:  # pragma: no cover - excluded by _keyProblems
        raise AssertionError("a 44-character key must decode to 32 bytes")
    return raw


def _nameProblem(name: str) -> str | None:
    """
    Say what is wrong with a key's name.

    @param name: The name.
    @return: The problem, or L{None} if C{name} is valid.
    """
    if not name:
        return "it is empty"
    if len(name) > MAX_NAME_LENGTH:
        return f"it is longer than {MAX_NAME_LENGTH} characters"
    if not name.isascii() or _NAME.match(name) is None:
        return (
            "a name is ASCII letters, digits, '_', '.', '@', '+' and '-', starting with"
            " a letter, digit or '_'"
        )
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return None
    return "it is an IP address (sessions are also looked up by IP address)"


def checkName(name: str) -> str:
    """
    Check the name a key is to carry.

    @param name: The name, as in C{alice <key>}.
    @return: C{name}.
    @raise InvalidKey: If C{name} is empty, longer than L{MAX_NAME_LENGTH},
        holds characters other than ASCII letters, digits, C{_}, C{.}, C{@},
        C{+} and C{-} (or starts with one of the last four), or is an IP
        address.
    """
    if not isinstance(name, str):
        raise TypeError(f"a key's name must be str, not {type(name).__name__}")
    problem = _nameProblem(name)
    if problem is not None:
        raise InvalidKey(f"Not a valid key name: {problem}.")
    return name


@dataclass(frozen=True, slots=True)
class KeyIdentity:
    """
    Which key of a keyring authenticated a session: nothing secret.

    @ivar name: The key's name from the key file (C{alice} for C{alice
        <key>}), or L{None} for an unnamed (anonymous) key.
    @ivar keyId: The key's short identifier (L{Keyring.keyIDs}), safe to
        log and show.
    @ivar fingerprint: 16 bytes that tell keys apart where 8 hexadecimal
        digits might not (HKDF-SHA256 of the raw key, C{info=b"netstructer/1
        key-id"}; not secret).
    """

    name: str | None
    keyId: str
    fingerprint: bytes = b""

    def __repr__(self) -> str:
        """
        @return: The name and key ID.
        """
        return f"<KeyIdentity {self.name or '(anonymous)'} {self.keyId}>"


def _derive(raw: bytes, info: bytes, length: int) -> bytes:
    """
    Derive a subkey from a raw key with HKDF-SHA256.

    @param raw: The raw 32-byte key.
    @param info: The purpose of the subkey; distinct for every purpose.
    @param length: How many bytes to derive.
    @return: C{length} derived bytes.
    """
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=_HKDF_SALT, info=info).derive(raw)


class Keyring:
    """
    One or more keys, in order, and the subkeys derived from them, each key
    with an optional name (L{names}, L{identities}): the identity a server
    gives the sessions that key authenticates.

    The first key (the I{primary}) is the one used to connect and send; every
    key on the ring is accepted from peers.  A keyring is immutable and never
    shows key material in its C{repr}; only key IDs, which are safe to log.

    All derivations are computed once, when the keyring is made.

    @ivar _keys: The raw 32-byte keys, primary first, without duplicates.
    @ivar _noisePSKs: One Noise pre-shared key per key.
    @ivar _fernetKeys: One derived Fernet-format key per key.
    @ivar _keyIDs: One key ID per key.
    @ivar _memo: What other modules derived from the keys through
        L{_derived}.
    """

    __slots__ = (
        "_fernetKeys",
        "_identities",
        "_keyIDs",
        "_keys",
        "_memo",
        "_names",
        "_noisePSKs",
    )

    _keys: tuple[bytes, ...]
    _names: tuple[str | None, ...]
    _identities: tuple[KeyIdentity, ...]
    _noisePSKs: tuple[bytes, ...]
    _fernetKeys: tuple[bytes, ...]
    _keyIDs: tuple[str, ...]
    _memo: dict[Hashable, object]

    def __init__(
        self, keys: Sequence[bytes | str], names: Sequence[str | None] | None = None
    ) -> None:
        """
        @param keys: Fernet-format keys, as bytes or text, primary first.
            Duplicates are removed, keeping the first occurrence.
        @param names: The name of each key (L{None} for an anonymous one), as
            many as C{keys}; all anonymous if not given.  Several keys may
            share a name (a client's old and new key while it rotates).
        @raise InvalidKey: If C{keys} is empty, holds a malformed key (the
            message says which, counting from 1), C{names} holds an invalid
            name or has another length, or one key appears under two
            different names.
        @raise TypeError: If C{keys} is a single key rather than a sequence of
            keys (use L{asKeyring} or a list), or holds something that is not
            bytes or text.
        """
        if isinstance(keys, (str, bytes, bytearray)):
            raise TypeError(
                "Keyring takes a sequence of keys; wrap a single key in a list, or use asKeyring()"
            )
        given = list(keys)
        if not given:
            raise InvalidKey(f"A keyring needs at least one key. {_KEYGEN_ADVICE}")
        givenNames: list[str | None] = [None] * len(given) if names is None else list(names)
        if len(givenNames) != len(given):
            raise InvalidKey(
                f"A keyring of {len(given)} keys was given {len(givenNames)} names; give one"
                f" name (or None) per key."
            )
        raws: list[bytes] = []
        keptNames: list[str | None] = []
        seen: dict[bytes, int] = {}
        for number, (key, name) in enumerate(zip(given, givenNames, strict=True), start=1):
            problems = _keyProblems(_keyText(key))
            if problems:
                raise InvalidKey(
                    f"Key {number} of {len(given)} is not a valid NetStructer key:"
                    f" {_explain(problems)}. {_KEYGEN_ADVICE}"
                )
            if name is not None:
                problem = _nameProblem(name) if isinstance(name, str) else "it is not text"
                if problem is not None:
                    raise InvalidKey(f"The name of key {number} is not valid: {problem}.")
            raw = base64.urlsafe_b64decode(_keyText(key))
            if raw in seen:
                if keptNames[seen[raw]] != name:
                    raise InvalidKey(
                        f"Key {number} of {len(given)} is also key {seen[raw] + 1} under another"
                        f" name: a key authenticates one name. Give each client its own key."
                    )
                continue
            seen[raw] = len(raws)
            raws.append(raw)
            keptNames.append(name)
        fingerprints = tuple(_derive(raw, _INFO_KEY_ID, 16) for raw in raws)
        keyIDs = tuple(fingerprint[:4].hex() for fingerprint in fingerprints)
        self._set("_keys", tuple(raws))
        self._set("_names", tuple(keptNames))
        self._set(
            "_identities",
            tuple(KeyIdentity(*each) for each in zip(keptNames, keyIDs, fingerprints, strict=True)),
        )
        self._set("_noisePSKs", tuple(_derive(raw, _INFO_NOISE_PSK, 32) for raw in raws))
        self._set(
            "_fernetKeys",
            tuple(base64.urlsafe_b64encode(_derive(raw, _INFO_FERNET, 32)) for raw in raws),
        )
        self._set("_keyIDs", keyIDs)
        self._set("_memo", {})

    def _derived(self, purpose: Hashable, derive: Callable[[Keyring], _T]) -> _T:
        """
        Material another module derives from these keys (the Noise handshake
        templates of L{netstructer.channel}), computed on first use rather
        than for every connection, and kept as long as the keyring: it is as
        secret as the keys, and goes with them.

        @param purpose: Names the material; the same purpose must always be
            derived the same way.
        @param derive: Computes it from this keyring.
        @return: The material, computed now or earlier.
        """
        memo = self._memo
        try:
            return cast(_T, memo[purpose])
        except KeyError:
            # Two threads may both compute it; either result is right.
            return cast(_T, memo.setdefault(purpose, derive(self)))

    def _set(self, name: str, value: object) -> None:
        """
        Set an attribute during construction, bypassing immutability.

        @param name: The attribute's name.
        @param value: Its value.
        """
        object.__setattr__(self, name, value)

    def __setattr__(self, name: str, value: object) -> None:
        """
        Refuse to change a keyring.

        @param name: The attribute's name.
        @param value: Its would-be value.
        @raise AttributeError: Always.
        """
        raise AttributeError("Keyring is immutable; make a new one")

    def __delattr__(self, name: str) -> None:
        """
        Refuse to change a keyring.

        @param name: The attribute's name.
        @raise AttributeError: Always.
        """
        raise AttributeError("Keyring is immutable; make a new one")

    def __copy__(self) -> Keyring:
        """
        @return: This keyring: it is immutable, so a copy is itself.
        """
        return self

    def __deepcopy__(self, memo: dict[int, object]) -> Keyring:
        """
        @param memo: The C{copy.deepcopy} memo.
        @return: This keyring: it is immutable, so a copy is itself.
        """
        return self

    def __reduce__(self) -> str | tuple[object, ...]:
        """
        Refuse to be pickled, which would write raw keys where they may be
        stored or sent.

        @raise TypeError: Always.
        """
        raise TypeError(
            "Keyring cannot be pickled: that would expose key material. Pass the key file"
            " path or the keys themselves instead."
        )

    @classmethod
    def fromFile(cls, path: StrPath) -> Keyring:
        """
        Read a keyring from a key file, with all the checks of L{readKeyFile}.

        @param path: The key file.
        @return: The keys in the file, in order.
        @raise KeyFileError: If the file is missing, unsafe or malformed.
        """
        return readKeyFile(path)

    @classmethod
    def fromEnvironment(cls, environ: Mapping[str, str] | None = None) -> Keyring | None:
        """
        Read a keyring from the C{NETSTRUCTER_KEY} environment variable.

        The variable holds one key, or several separated by commas (with
        optional whitespace), primary first.  Empty items, such as one after a
        trailing comma, are ignored.

        @param environ: The environment to read; L{os.environ} if L{None}.
        @return: The keyring, or L{None} if the variable is not set.
        @raise InvalidKey: If the variable is set but holds no key or a
            malformed one; the message names the variable, never its value.
        """
        if environ is None:
            environ = os.environ
        value = environ.get(ENVIRONMENT_VARIABLE)
        if value is None:
            return None
        items = [item.strip() for item in value.split(",")]
        keys = [item for item in items if item]
        if not keys:
            raise InvalidKey(
                f"The environment variable {ENVIRONMENT_VARIABLE} is set but holds no key;"
                f" unset it, or set it to one or more comma-separated keys. {_KEYGEN_ADVICE}"
            )
        for number, key in enumerate(keys, start=1):
            problems = _keyProblems(key)
            if problems:
                raise InvalidKey(
                    f"The environment variable {ENVIRONMENT_VARIABLE} holds a bad key"
                    f" (key {number} of {len(keys)}): {_explain(problems)}. {_KEYGEN_ADVICE}"
                )
        return cls(keys)

    def noisePSKs(self) -> tuple[bytes, ...]:
        """
        The Noise pre-shared keys.

        @return: One 32-byte PSK per key, primary first: HKDF-SHA256 of the
            raw key, no salt, C{info=b"netstructer/1 noise-psk"}.
        """
        return self._noisePSKs

    def fernetKeys(self) -> tuple[bytes, ...]:
        """
        Fernet keys derived from the keys, so that a user key is never used
        in two schemes.

        @return: One Fernet-format key per key, primary first: the urlsafe
            base64 of 32 bytes of HKDF-SHA256 of the raw key, no salt,
            C{info=b"netstructer/1 fernet"}.
        """
        return self._fernetKeys

    def subkeys(self, info: bytes, length: int = 32) -> tuple[bytes, ...]:
        """
        Subkeys for another purpose than the connection's (the encrypted
        envelope of a cluster, L{netstructer.cluster.envelope}), derived
        once per keyring and purpose.

        @param info: The purpose, distinct from every other (this module's
            own purposes are refused).
        @param length: How many bytes each subkey has.
        @return: One subkey per key, primary first: C{length} bytes of
            HKDF-SHA256 of the raw key, no salt, with C{info}.
        @raise ValueError: C{info} is one of this module's own purposes.
        """
        if info in (_INFO_NOISE_PSK, _INFO_FERNET, _INFO_KEY_ID):
            raise ValueError("that purpose is reserved for the connection's own keys")
        return self._derived(
            ("subkeys", info, length),
            lambda ring: tuple(_derive(raw, info, length) for raw in ring._keys),
        )

    def keyIDs(self) -> tuple[str, ...]:
        """
        Short identifiers of the keys, safe to log and show.

        @return: One identifier per key, primary first: 8 lowercase hex
            digits, the first 4 bytes of 16 bytes of HKDF-SHA256 of the raw
            key, no salt, C{info=b"netstructer/1 key-id"}.
        """
        return self._keyIDs

    def names(self) -> tuple[str | None, ...]:
        """
        The keys' names.

        @return: One name per key, primary first; L{None} for an anonymous
            key.
        """
        return self._names

    def identities(self) -> tuple[KeyIdentity, ...]:
        """
        What a session authenticated by each key is known by.

        @return: One L{KeyIdentity} per key, primary first.
        """
        return self._identities

    def identity(self, index: int) -> KeyIdentity:
        """
        @param index: A key's position on the ring, from 0.
        @return: Its L{KeyIdentity}.
        @raise IndexError: There is no such key.
        """
        return self._identities[index]

    def accepts(self, identity: KeyIdentity) -> bool:
        """
        Whether a session authenticated as C{identity} (by this keyring or
        another) may stay open under this one: its key is on this ring, under
        the same name.

        @param identity: A L{KeyIdentity}, of this keyring or an earlier one.
        @return: Whether the key is still accepted with that name.
        """
        # Fingerprints are not secret, so a dictionary may compare them.
        known = self._derived(
            _BY_FINGERPRINT,
            lambda ring: {each.fingerprint: each.name for each in ring._identities},
        )
        return identity.fingerprint in known and known[identity.fingerprint] == identity.name

    @property
    def _primary(self) -> bytes:
        """
        The raw primary key.  Private: use the derived material instead.
        """
        return self._keys[0]

    def __len__(self) -> int:
        """
        @return: How many distinct keys are on the ring.
        """
        return len(self._keys)

    def __repr__(self) -> str:
        """
        @return: The number of keys and their IDs, primary first; never key
            material.
        """
        count = len(self._keys)
        noun = "key" if count == 1 else "keys"
        return f"<Keyring of {count} {noun}, IDs {', '.join(self._keyIDs)}>"

    def __eq__(self, other: object) -> bool:
        """
        Keyrings are equal if they hold the same keys in the same order, with
        the same names.

        @param other: Another object.
        @return: Whether C{other} is an equal keyring.
        """
        if not isinstance(other, Keyring):
            return NotImplemented
        return (
            len(self._keys) == len(other._keys)
            and self._names == other._names
            and hmac.compare_digest(b"".join(self._keys), b"".join(other._keys))
        )

    def __hash__(self) -> int:
        """
        @return: A hash of the (non-secret) key IDs.
        """
        return hash(self._keyIDs)


def asKeyring(key: bytes | str | Keyring | Sequence[bytes | str]) -> Keyring:
    """
    Accept a key in any of the forms NetStructer's APIs take.

    @param key: A Fernet-format key as bytes or text, a L{Keyring}, or a
        sequence of Fernet-format keys, primary first.
    @return: A keyring holding those keys.
    @raise InvalidKey: If a key is malformed or the sequence is empty.
    @raise TypeError: If C{key} is none of those forms, or a sequence holds
        something that is not bytes or text.
    """
    if isinstance(key, Keyring):
        return key
    if isinstance(key, (str, bytes)):
        return _keyringOf(key)
    return Keyring(key)


@functools.lru_cache(maxsize=16)
def _keyringOf(key: bytes | str) -> Keyring:
    """
    The keyring of one key, the same for the same key: a program that
    connects again and again with a key (C{connect(reactor, address, key)})
    checks it and derives its handshake material once, not for each
    connection.  The keyrings of the 16 keys used last are kept; they hold
    nothing a program that passes its key around does not hold already.

    @param key: A Fernet-format key as bytes or text.
    @return: Its keyring.
    @raise InvalidKey: The key is malformed (not remembered).
    """
    return Keyring([key])


def _pathText(path: StrPath) -> str:
    """
    @param path: A filesystem path.
    @return: C{path} as text, for messages and L{KeyFileError.path}.
    """
    return os.fspath(path)


def _parseKeyFile(data: bytes, name: str) -> Keyring:
    """
    Parse the contents of a key file.

    @param data: The file's bytes.
    @param name: The file's name, for messages.
    @return: The keys in the file, in order.
    @raise KeyFileError: If a line is malformed (the message gives its number,
        never its content) or the file holds no key.
    """
    if data.startswith(_UTF8_BOM):
        data = data[len(_UTF8_BOM) :]
    keys: list[bytes] = []
    names: list[str | None] = []
    numbers: list[int] = []
    for number, line in enumerate(data.split(b"\n"), start=1):
        content = line.strip()
        if not content or content.startswith(b"#"):
            continue
        content = _COMMENT.sub(b"", content).strip()
        fields = content.split()
        keyName: str | None = None
        if len(fields) > 2:
            raise KeyFileError(
                f"{name}, line {number}: {len(fields)} words where a line is a key, or a"
                f" name, a space and a key ('alice <key>'). Fix that line; '#' starts a"
                f" comment.",
                name,
            )
        if len(fields) == 2:
            nameField, content = fields
            problem = _nameProblem(nameField.decode("latin-1"))
            if problem is not None:
                raise KeyFileError(
                    f"{name}, line {number}: the name before the key is not valid: {problem}."
                    f" A line is a key, or a name, a space and a key ('alice <key>').",
                    name,
                )
            keyName = nameField.decode("ascii")
        problems = _keyProblems(_keyText(content))
        if problems:
            raise KeyFileError(
                f"{name}, line {number}: not a valid key: {_explain(problems)}."
                f" Fix or remove that line (one key per line, optionally after a name and"
                f" a space; '#' starts a comment). {_KEYGEN_ADVICE}",
                name,
            )
        keys.append(content)
        names.append(keyName)
        numbers.append(number)
    if not keys:
        raise KeyFileError(
            f"{name} holds no key. Put a key in it, one per line. {_KEYGEN_ADVICE}", name
        )
    try:
        return Keyring(keys, names)
    except InvalidKey as e:
        # Only a key listed twice under two names gets here; say which lines.
        raise KeyFileError(
            f"{name}: {e} (keys are counted from the first key line, line {numbers[0]}).",
            name,
        ) from None


def _readUpTo(fd: int, limit: int) -> bytes:
    """
    Read from a file descriptor until end of file or C{limit} bytes.

    @param fd: An open file descriptor.
    @param limit: The most bytes to read.
    @return: What was read.
    @raise OSError: If reading fails.
    """
    chunks: list[bytes] = []
    remaining = limit
    while remaining > 0:
        chunk = os.read(fd, remaining)
        if not chunk:
            break
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def _readKeyFile(path: StrPath) -> Keyring:
    """
    Read a key file, letting L{FileNotFoundError} through so that callers
    can tell a missing file from a bad one.

    @param path: The key file.
    @return: The keys in the file, in order.
    @raise FileNotFoundError: If the file (or a parent directory) is missing.
    @raise KeyFileError: For every other refusal; see L{readKeyFile}.
    """
    name = _pathText(path)
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise
    except PermissionError as e:
        raise KeyFileError(
            f"{name} cannot be read: permission denied. Make it readable by the user"
            f" running NetStructer (and only by them: `chmod 600 {shlex.quote(name)}`).",
            name,
        ) from e
    except IsADirectoryError as e:
        raise KeyFileError(
            f"{name} is a directory, not a key file. Give the path of the key file itself.",
            name,
        ) from e
    except OSError as e:
        raise KeyFileError(f"{name} cannot be opened: {e.strerror}.", name) from e
    try:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise KeyFileError(
                f"{name} is a directory, not a key file. Give the path of the key file itself.",
                name,
            )
        if not stat.S_ISREG(info.st_mode):
            raise KeyFileError(
                f"{name} is not a regular file. A key file must be a regular file.", name
            )
        if os.name == "posix" and info.st_mode & 0o077:
            raise KeyFileError(
                f"{name} is readable or writable by group or others"
                f" (mode {stat.S_IMODE(info.st_mode):04o}), so the key may be exposed."
                f" Run `chmod 600 {shlex.quote(name)}`, and make a new key if others"
                f" may have read it.",
                name,
            )
        try:
            data = _readUpTo(fd, _MAX_KEY_FILE_SIZE + 1)
        except OSError as e:
            raise KeyFileError(f"{name} cannot be read: {e.strerror}.", name) from e
    finally:
        os.close(fd)
    if len(data) > _MAX_KEY_FILE_SIZE:
        raise KeyFileError(
            f"{name} is larger than {_MAX_KEY_FILE_SIZE} bytes, too large to be a key file.",
            name,
        )
    return _parseKeyFile(data, name)


def _missing(name: str) -> KeyFileError:
    """
    @param name: The missing key file.
    @return: The error saying it is missing and how to make it.
    """
    return KeyFileError(
        f"{name} does not exist. Create one with `netstructer keygen -o {shlex.quote(name)}`.",
        name,
    )


def readKeyFile(path: StrPath) -> Keyring:
    """
    Read a key file: one key per line, primary first, each optionally
    preceded by its name and whitespace (C{alice <key>}; see
    L{checkName}).  Blank lines and comments (from a C{#} at the start of a
    line or after whitespace) are ignored.

    @param path: The key file.
    @return: The keys in the file, in order, without duplicates, with
        their names (L{Keyring.names}).
    @raise KeyFileError: If the file is missing, cannot be read, is not a
        regular file, is readable or writable by group or others (on POSIX
        only), is larger than 512 KiB, holds no key, holds a malformed line
        (a bad key or name, or more than two words), or holds one key under
        two names.  The message names
        the file and the fix, and gives the number (never the content) of a
        malformed line.
    """
    try:
        return _readKeyFile(path)
    except FileNotFoundError as e:
        raise _missing(_pathText(path)) from e


def _makeParents(directory: Path) -> None:
    """
    Create C{directory} and its missing ancestors with mode 0700.  Existing
    directories are left alone.

    @param directory: The directory that must exist.
    @raise OSError: If a directory cannot be created.
    """
    missing: list[Path] = []
    current = directory
    while not current.exists():
        missing.append(current)
        if current.parent == current:
            break
        current = current.parent
    for each in reversed(missing):
        try:
            os.mkdir(each, 0o700)
        except FileExistsError:
            if not each.is_dir():
                raise


def _writeAll(fd: int, data: bytes) -> None:
    """
    Write all of C{data} to a file descriptor, flush it to disk and close it.

    @param fd: An open file descriptor, which this closes.
    @param data: What to write.
    @raise OSError: If writing fails.
    """
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def keyFileLine(key: bytes | str, name: str | None = None) -> str:
    """
    The line of a key file that holds a key, with its name if it has one:
    what an operator adds to a server's key file for a new client.

    @param key: A valid Fernet-format key.
    @param name: The key's name, or L{None} for an anonymous key.
    @return: C{"<key>"} or C{"<name> <key>"}, without a newline.
    @raise InvalidKey: If C{key} or C{name} is malformed.
    """
    parseKey(key)
    text = _keyText(key)
    return text if name is None else f"{checkName(name)} {text}"


def _keyFileContents(key: bytes, name: str | None = None) -> bytes:
    """
    @param key: A valid Fernet-format key.
    @param name: Its name, or L{None}.
    @return: The text of a key file holding it, with a comment header.
    """
    keyID = Keyring([key]).keyIDs()[0]
    return (
        b"# NetStructer key " + keyID.encode("ascii") + b". Keep this file secret"
        b" (mode 0600); one key per line, the first is used to connect.\n"
        + keyFileLine(key, name).encode("ascii")
        + b"\n"
    )


def _writeNewKeyFile(path: StrPath, contents: bytes) -> None:
    """
    Create a key file that must not exist yet, with mode 0600.

    @param path: The key file.
    @param contents: What to write.
    @raise FileExistsError: If C{path} exists (even as a dangling symlink).
    @raise OSError: If it cannot be created or written; a partly written file
        is removed.
    """
    fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY | getattr(os, "O_BINARY", 0), 0o600)
    try:
        _writeAll(fd, contents)
    except BaseException:
        os.unlink(path)
        raise


def _replaceKeyFile(path: StrPath, contents: bytes) -> None:
    """
    Atomically write a key file, replacing any existing one: write a
    temporary file with mode 0600 in the same directory, flush it to disk,
    then rename it over C{path}.

    @param path: The key file.
    @param contents: What to write.
    @raise OSError: If the file cannot be written or replaced; the temporary
        file is removed.
    """
    target = Path(path)
    temporary = target.with_name(f".{target.name}.{secrets.token_hex(8)}.tmp")
    fd = os.open(
        temporary, os.O_CREAT | os.O_EXCL | os.O_WRONLY | getattr(os, "O_BINARY", 0), 0o600
    )
    try:
        _writeAll(fd, contents)
        os.replace(temporary, target)
    except BaseException:
        os.unlink(temporary)
        raise


def _writeKeyFile(
    path: StrPath, key: bytes | str | None, overwrite: bool, name: str | None = None
) -> bytes:
    """
    Write a key file, letting L{OSError} (notably L{FileExistsError})
    through.

    @param path: The key file.
    @param key: The Fernet-format key to write, or L{None} to make a new one.
    @param overwrite: Whether to replace an existing file.
    @return: The key written, as 44 ASCII bytes.
    @raise InvalidKey: If C{key} is malformed.
    @raise OSError: If the file exists and C{overwrite} is false, or it
        cannot be written.
    """
    if key is None:
        key = generateKey()
    parseKey(key)
    encoded = _keyText(key).encode("ascii")
    contents = _keyFileContents(encoded, name)
    _makeParents(Path(path).parent)
    if overwrite:
        _replaceKeyFile(path, contents)
    else:
        _writeNewKeyFile(path, contents)
    return encoded


def _exists(name: str) -> KeyFileError:
    """
    @param name: The key file that already exists.
    @return: The error refusing to overwrite it.
    """
    return KeyFileError(
        f"{name} already exists; refusing to overwrite it. Choose another path, or"
        f" remove the old file first if its key is no longer needed.",
        name,
    )


def writeKeyFile(
    path: StrPath,
    key: bytes | str | None = None,
    *,
    overwrite: bool = False,
    name: str | None = None,
) -> bytes:
    """
    Write a key file holding one key, with a comment header, mode 0600.
    With a C{name}, the key's line is C{"<name> <key>"}: the same line a
    server's key file holds for that client.

    Missing parent directories are created with mode 0700.  Without
    C{overwrite} the file is created exclusively, so an existing file is
    never touched; with it the key is written to a temporary file in the
    same directory and renamed over the old file, so readers see either the
    old or the new file, never a mix.

    @param path: The key file.
    @param key: The Fernet-format key to write, or L{None} to make a new one.
    @param overwrite: Whether to replace an existing file.
    @param name: The key's name, or L{None}.
    @return: The key written, as 44 ASCII bytes.
    @raise InvalidKey: If C{key} or C{name} is malformed.
    @raise KeyFileError: If the file exists and C{overwrite} is false, or it
        cannot be written.
    """
    fileName = _pathText(path)
    try:
        if name is not None:
            checkName(name)
        return _writeKeyFile(path, key, overwrite, name)
    except FileExistsError as e:
        raise _exists(fileName) from e
    except OSError as e:
        raise KeyFileError(f"{fileName} cannot be written: {e.strerror}.", fileName) from e


def defaultKeyPath(environ: Mapping[str, str] | None = None) -> Path:
    """
    Where the key file lives when no path is given.

    @param environ: The environment to read; L{os.environ} if L{None}.
    @return: C{$XDG_CONFIG_HOME/netstructer/key} if C{XDG_CONFIG_HOME} is set
        to an absolute path, otherwise C{~/.config/netstructer/key}, where
        C{~} is C{HOME} from C{environ} if set there, else the current user's
        home directory.
    """
    if environ is None:
        environ = os.environ
    configHome = environ.get("XDG_CONFIG_HOME", "")
    if configHome and os.path.isabs(configHome):
        return Path(configHome) / "netstructer" / "key"
    home = environ.get("HOME")
    base = Path(home) if home else Path.home()
    return base / ".config" / "netstructer" / "key"


def loadOrCreateKeyFile(path: StrPath) -> tuple[Keyring, bool]:
    """
    Read a key file, or create it with a new key if it does not exist.

    Used on a server's first start.  An existing file gets all the checks of
    L{readKeyFile}; a new one gets mode 0600, and missing parent directories
    mode 0700.

    @param path: The key file.
    @return: The keyring, and whether the file was created.
    @raise KeyFileError: If an existing file is refused, or a new one cannot
        be written.
    """
    name = _pathText(path)
    try:
        existing: Keyring | None = _readKeyFile(path)
    except FileNotFoundError:
        existing = None
    if existing is not None:
        return existing, False
    try:
        key = _writeKeyFile(path, None, overwrite=False)
    except FileExistsError:
        # Another process created it between our read and our write.
        return readKeyFile(path), False
    except OSError as e:
        raise KeyFileError(f"{name} cannot be created: {e.strerror}.", name) from e
    return Keyring([key]), True
