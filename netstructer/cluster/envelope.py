# -*- test-case-name: tests.test_cluster_envelope -*-
"""
The encrypted envelope of a cluster's messages: everything one node sends
another through Redis travels sealed in one, so that Redis (or anyone who
can write to it) can neither read a value nor inject, alter, replay or
redirect a message.  Sans-IO: bytes in, bytes out.

Layout (big-endian)::

    magic "NC" (2) | version 1 (1) | kind (1) | key id (4)
    | sender's incarnation (16) | sequence number (8) | sent at, ms (8)
    | AES-256-GCM ciphertext of the message, with its 16-byte tag

The 40-byte header is not encrypted but is authenticated, together with the
recipient's incarnation (16 zero bytes for a message to every node) and the
name of the channel it was published on.  The sender's key is derived from
the cluster key (L{netstructer.keys.Keyring.subkeys}, C{info}
C{b"netstructer/1 cluster"}) and the sender's incarnation (HKDF-SHA256 with
the incarnation as salt), so that no two senders ever share a key and the
nonce (four zero bytes and the sequence number) is never used twice under
one key.  An incarnation is 16 random bytes a node draws each time it
starts.

An opener refuses (L{EnvelopeRefused}, whose C{reason} is one of
L{REASONS}): bytes that are not an envelope (C{"malformed"}); an envelope
sealed under a key it does not hold (C{"unknown key"}); one that fails
authentication, which includes an envelope meant for another node or another
channel (C{"forged"}); one sent more than C{maxAge} seconds from its own
clock, either way (C{"stale"}); and one whose sequence number is not above
the last it opened from that sender (C{"replayed"}).  A sender's last number
is remembered for at least C{maxAge} seconds after its last message, so a
replayed envelope is refused as stale or as replayed, whatever its age.  The
nodes' clocks must agree within C{maxAge} (120 s by default).
"""

from __future__ import annotations

import enum
import os
import struct
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from netstructer.errors import IntegrityError
from netstructer.keys import Keyring

__all__ = [
    "BROADCAST",
    "DEFAULT_MAX_AGE",
    "HEADER_SIZE",
    "INCARNATION_SIZE",
    "REASONS",
    "EnvelopeOpener",
    "EnvelopeRefused",
    "EnvelopeSealer",
    "Kind",
    "Opened",
    "newIncarnation",
]

MAGIC = b"NC"
"""The first two bytes of every envelope."""

VERSION = 1
"""The version of the envelopes' layout, the only one this module seals and opens."""

INCARNATION_SIZE = 16
"""The size of a node's incarnation, in bytes."""

BROADCAST = bytes(INCARNATION_SIZE)
"""The recipient of a message meant for every node."""

DEFAULT_MAX_AGE = 120.0
"""How far apart, in seconds, a sender's clock and an opener's may be."""

REASONS = ("malformed", "unknown key", "forged", "stale", "replayed")
"""Why an envelope is refused."""

_HEADER = struct.Struct("!2sBB4s16sQQ")
HEADER_SIZE = _HEADER.size
"""The size of an envelope's header, in bytes."""

_TAG_SIZE = 16
_INFO_ROOT = b"netstructer/1 cluster"
_INFO_SENDER = b"netstructer/1 cluster sender"
_NONCE = struct.Struct("!4xQ")
_MAX_SEQUENCE = 2**64 - 1


class Kind(enum.IntEnum):
    """
    What an envelope carries.
    """

    LINK = 1
    """Messages from one node to another (values, acknowledgements)."""
    EVENT = 2
    """A change of a node's part of the directory, for every node."""


class EnvelopeRefused(IntegrityError):
    """
    An envelope read from Redis was refused: it is not an envelope, was not
    sealed with the cluster's key, was altered, redirected, replayed or is
    too old.  Nothing in it was used.

    @ivar reason: One of L{REASONS}.
    """

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Opened:
    """
    An envelope's contents, authenticated.

    @ivar kind: What it carries.
    @ivar sender: The sender's incarnation.
    @ivar sequence: Its sequence number, above every earlier one of its
        sender's.
    @ivar sentAt: When it was sealed, in seconds, on the sender's clock.
    @ivar message: The plaintext.
    """

    kind: Kind
    sender: bytes
    sequence: int
    sentAt: float
    message: bytes


def newIncarnation() -> bytes:
    """
    @return: A new incarnation: 16 random bytes.
    """
    return os.urandom(INCARNATION_SIZE)


def _senderKey(root: bytes, incarnation: bytes) -> AESGCM:
    """
    @return: The AEAD of one sender under one cluster key.
    """
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=incarnation, info=_INFO_SENDER).derive(
        root
    )
    return AESGCM(key)


def _keyIDs(keyring: Keyring) -> tuple[bytes, ...]:
    return tuple(bytes.fromhex(keyId) for keyId in keyring.keyIDs())


def _associated(header: bytes, recipient: bytes, channel: bytes) -> bytes:
    return header + recipient + channel


class EnvelopeSealer:
    """
    Seals one node's messages, with the first key of the cluster's keyring.

    @ivar incarnation: The sender's incarnation.
    """

    def __init__(self, keyring: Keyring, incarnation: bytes, clock: Callable[[], float]) -> None:
        """
        @param keyring: The cluster's keys; the first seals.
        @param incarnation: This node's incarnation (L{newIncarnation}).
        @param clock: The wall clock, in seconds.
        """
        if len(incarnation) != INCARNATION_SIZE:
            raise ValueError(f"an incarnation is {INCARNATION_SIZE} bytes")
        self.incarnation = incarnation
        self._keyId = _keyIDs(keyring)[0]
        self._aead = _senderKey(keyring.subkeys(_INFO_ROOT)[0], incarnation)
        self._clock = clock
        self._sequence = 0

    @property
    def sequence(self) -> int:
        """
        The sequence number of the last envelope sealed (0 before any).
        """
        return self._sequence

    def seal(self, kind: Kind, message: bytes, channel: str, recipient: bytes = BROADCAST) -> bytes:
        """
        Seal a message.

        @param kind: What it carries.
        @param message: The plaintext.
        @param channel: The channel it is published on.
        @param recipient: The recipient's incarnation, or L{BROADCAST}.
        @return: The envelope.
        """
        if self._sequence >= _MAX_SEQUENCE:  # pragma: no cover (2**64 messages)
            raise OverflowError("this incarnation has sealed all the messages it may")
        self._sequence += 1
        sequence = self._sequence
        header = _HEADER.pack(
            MAGIC,
            VERSION,
            kind,
            self._keyId,
            self.incarnation,
            sequence,
            max(0, int(self._clock() * 1000)),
        )
        sealed = self._aead.encrypt(
            _NONCE.pack(sequence), message, _associated(header, recipient, channel.encode())
        )
        return header + sealed


class EnvelopeOpener:
    """
    Opens the envelopes one node receives, with any key of the cluster's
    keyring, and refuses the others.

    @ivar incarnation: This node's incarnation: envelopes for another node
        are refused, and this node's own are not opened.
    @ivar refused: How many envelopes were refused, by reason.
    """

    def __init__(
        self,
        keyring: Keyring,
        incarnation: bytes,
        clock: Callable[[], float],
        *,
        maxAge: float = DEFAULT_MAX_AGE,
        maxSenders: int = 4096,
    ) -> None:
        """
        @param keyring: The cluster's keys.
        @param incarnation: This node's incarnation: envelopes for another
            node are refused, and this node's own are ignored.
        @param clock: The wall clock, in seconds.
        @param maxAge: How far apart a sender's clock and this one may be.
        @param maxSenders: How many senders' last sequence numbers are
            kept (the longest silent are forgotten first, once older than
            C{maxAge}).
        """
        self.incarnation = incarnation
        self._roots = dict(zip(_keyIDs(keyring), keyring.subkeys(_INFO_ROOT), strict=True))
        self._clock = clock
        self._maxAge = maxAge
        self._maxSenders = maxSenders
        self._aeads: OrderedDict[tuple[bytes, bytes], AESGCM] = OrderedDict()
        # sender -> (last sequence number, when it was opened), oldest first.
        self._last: OrderedDict[bytes, tuple[int, float]] = OrderedDict()
        self.refused = dict.fromkeys(REASONS, 0)

    def _refuse(self, reason: str, message: str) -> EnvelopeRefused:
        self.refused[reason] += 1
        return EnvelopeRefused(message, reason)

    def _aead(self, keyId: bytes, sender: bytes) -> AESGCM | None:
        cached = self._aeads.get((keyId, sender))
        if cached is not None:
            self._aeads.move_to_end((keyId, sender))
            return cached
        root = self._roots.get(keyId)
        if root is None:
            return None
        aead = self._aeads[keyId, sender] = _senderKey(root, sender)
        if len(self._aeads) > 256:
            self._aeads.popitem(last=False)
        return aead

    def own(self, data: bytes) -> bool:
        """
        @return: Whether C{data} claims to come from this node (a broadcast
            it hears itself); such an envelope is not opened.
        """
        return data[8:24] == self.incarnation and len(data) >= HEADER_SIZE

    def open(self, data: bytes, channel: str, recipient: bytes | None = None) -> Opened:
        """
        Authenticate and open an envelope.

        @param data: The envelope, as read from Redis.
        @param channel: The channel it arrived on.
        @param recipient: Its recipient: this node's incarnation for a
            message to this node (the default), L{BROADCAST} for one to
            every node.
        @return: Its contents.
        @raise EnvelopeRefused: It was refused; nothing in it may be used.
        """
        if len(data) < HEADER_SIZE + _TAG_SIZE:
            raise self._refuse("malformed", "a cluster message is too short to be an envelope")
        magic, version, kind, keyId, sender, sequence, sentAt = _HEADER.unpack_from(data)
        if magic != MAGIC or version != VERSION or kind not in Kind._value2member_map_:
            raise self._refuse(
                "malformed", "a cluster message is not an envelope of a version this node reads"
            )
        aead = self._aead(keyId, sender)
        if aead is None:
            raise self._refuse(
                "unknown key",
                f"a cluster message was sealed with key {keyId.hex()}, which this node's "
                "cluster key file does not hold",
            )
        now = self._clock()
        if abs(now - sentAt / 1000) > self._maxAge:
            raise self._refuse(
                "stale",
                f"a cluster message was sent {now - sentAt / 1000:.0f} s from this node's "
                f"clock (at most {self._maxAge:.0f} s are accepted; check the nodes' clocks)",
            )
        last = self._last.get(sender)
        if last is not None and sequence <= last[0]:
            raise self._refuse("replayed", "a cluster message was replayed")
        header = bytes(data[:HEADER_SIZE])
        target = self.incarnation if recipient is None else recipient
        try:
            message = aead.decrypt(
                _NONCE.pack(sequence),
                bytes(data[HEADER_SIZE:]),
                _associated(header, target, channel.encode()),
            )
        except InvalidTag:
            raise self._refuse(
                "forged",
                "a cluster message failed authentication: it was altered, sent to another "
                "node or channel, or sealed with another cluster key",
            ) from None
        self._last[sender] = (sequence, now)
        self._last.move_to_end(sender)
        self._forget(now)
        return Opened(Kind(kind), sender, sequence, sentAt / 1000, message)

    def _forget(self, now: float) -> None:
        """
        Forget the longest silent senders while there are too many, never
        one heard from within C{maxAge} (so none of them can be replayed).
        """
        last = self._last
        while len(last) > self._maxSenders:
            sender, (_, seen) = next(iter(last.items()))
            if now - seen <= self._maxAge * 2:
                break
            del last[sender]
