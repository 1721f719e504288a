# -*- test-case-name: tests.test_cluster_envelope -*-
"""
Tests for L{netstructer.cluster.envelope}: what is sealed opens only for
its recipient, on its channel, once, in time, under the cluster's keys.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from netstructer.cluster.envelope import (
    BROADCAST,
    HEADER_SIZE,
    EnvelopeOpener,
    EnvelopeRefused,
    EnvelopeSealer,
    Kind,
    newIncarnation,
)
from netstructer.errors import IntegrityError
from netstructer.keys import Keyring, generateKey

KEY_TEXT = generateKey()
KEY = Keyring([KEY_TEXT])


class Clock:
    """
    A wall clock that stands still unless moved.
    """

    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


class EnvelopeTests(SynchronousTestCase):
    """
    L{EnvelopeSealer} and L{EnvelopeOpener}.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.sender = newIncarnation()
        self.recipient = newIncarnation()
        self.sealer = EnvelopeSealer(KEY, self.sender, self.clock)
        self.opener = EnvelopeOpener(KEY, self.recipient, self.clock)

    def refused(self, data: bytes, channel: str = "c", recipient: bytes | None = None) -> str:
        error = self.assertRaises(EnvelopeRefused, self.opener.open, data, channel, recipient)
        self.assertIsInstance(error, IntegrityError)
        return error.reason

    def test_roundTrip(self) -> None:
        """
        An envelope opens to its message, sender, kind and number.
        """
        data = self.sealer.seal(Kind.LINK, b"hello", "c", self.recipient)
        self.assertNotIn(b"hello", data)
        opened = self.opener.open(data, "c")
        self.assertEqual(
            (opened.kind, opened.sender, opened.sequence, opened.message),
            (Kind.LINK, self.sender, 1, b"hello"),
        )
        self.assertEqual(opened.sentAt, self.clock.now)
        self.assertEqual(self.sealer.sequence, 1)

    def test_broadcast(self) -> None:
        """
        A broadcast opens as one, and not as a message to one node.
        """
        data = self.sealer.seal(Kind.EVENT, b"e", "events")
        self.assertEqual(self.opener.open(data, "events", BROADCAST).message, b"e")
        data = self.sealer.seal(Kind.EVENT, b"e", "events")
        self.assertEqual(self.refused(data, "events"), "forged")

    def test_otherRecipient(self) -> None:
        """
        An envelope for another node does not open.
        """
        data = self.sealer.seal(Kind.LINK, b"x", "c", newIncarnation())
        self.assertEqual(self.refused(data), "forged")

    def test_otherChannel(self) -> None:
        """
        An envelope moved to another channel does not open.
        """
        data = self.sealer.seal(Kind.LINK, b"x", "c", self.recipient)
        self.assertEqual(self.refused(data, "d"), "forged")

    def test_tampered(self) -> None:
        """
        Any changed byte, of the header or the ciphertext, is refused.
        """
        data = self.sealer.seal(Kind.LINK, b"value", "c", self.recipient)
        for index in (3, 9, HEADER_SIZE - 1, HEADER_SIZE, len(data) - 1):
            changed = bytearray(data)
            changed[index] ^= 1
            self.assertIn(self.refused(bytes(changed)), ("forged", "malformed", "unknown key"))
        self.assertEqual(self.opener.open(data, "c").message, b"value")

    def test_replayed(self) -> None:
        """
        An envelope opens once; an older one after a newer is refused.
        """
        first = self.sealer.seal(Kind.LINK, b"1", "c", self.recipient)
        second = self.sealer.seal(Kind.LINK, b"2", "c", self.recipient)
        self.opener.open(second, "c")
        self.assertEqual(self.refused(second), "replayed")
        self.assertEqual(self.refused(first), "replayed")
        self.assertEqual(self.opener.refused["replayed"], 2)

    def test_failedDoesNotCount(self) -> None:
        """
        A refused envelope does not move its sender's last number.
        """
        data = self.sealer.seal(Kind.LINK, b"1", "c", self.recipient)
        self.refused(data, "other")
        self.assertEqual(self.opener.open(data, "c").message, b"1")

    def test_stale(self) -> None:
        """
        An envelope from too far in the past or future is refused.
        """
        data = self.sealer.seal(Kind.LINK, b"1", "c", self.recipient)
        self.clock.now += 121
        self.assertEqual(self.refused(data), "stale")
        self.clock.now -= 2 * 121
        self.assertEqual(self.refused(data), "stale")

    def test_unknownKey(self) -> None:
        """
        An envelope sealed with another key is refused as such.
        """
        stranger = EnvelopeSealer(Keyring([generateKey()]), self.sender, self.clock)
        self.assertEqual(
            self.refused(stranger.seal(Kind.LINK, b"x", "c", self.recipient)), "unknown key"
        )

    def test_rotation(self) -> None:
        """
        A node whose keyring lists the old key second opens what a node
        still sealing with the old key sends.
        """
        new = generateKey()
        rotated = EnvelopeOpener(Keyring([new, KEY_TEXT]), self.recipient, self.clock)
        data = self.sealer.seal(Kind.LINK, b"x", "c", self.recipient)
        self.assertEqual(rotated.open(data, "c").message, b"x")

    def test_malformed(self) -> None:
        """
        Bytes that are not an envelope are refused as malformed.
        """
        self.assertEqual(self.refused(b""), "malformed")
        self.assertEqual(self.refused(b"x" * 100), "malformed")
        data = bytearray(self.sealer.seal(Kind.LINK, b"x", "c", self.recipient))
        data[3] = 99
        self.assertEqual(self.refused(bytes(data)), "malformed")

    def test_own(self) -> None:
        """
        A node recognizes its own broadcasts.
        """
        mine = EnvelopeSealer(KEY, self.recipient, self.clock).seal(Kind.EVENT, b"e", "events")
        self.assertTrue(self.opener.own(mine))
        self.assertFalse(self.opener.own(self.sealer.seal(Kind.EVENT, b"e", "events")))

    def test_incarnationSize(self) -> None:
        """
        An incarnation is 16 bytes.
        """
        self.assertRaises(ValueError, EnvelopeSealer, KEY, b"short", self.clock)

    def test_forgetsSilentSenders(self) -> None:
        """
        The longest silent senders are forgotten once there are too many,
        but only after they could no longer be replayed.
        """
        opener = EnvelopeOpener(KEY, self.recipient, self.clock, maxSenders=2)
        for _ in range(3):
            sealer = EnvelopeSealer(KEY, newIncarnation(), self.clock)
            opener.open(sealer.seal(Kind.LINK, b"x", "c", self.recipient), "c")
        self.assertEqual(len(opener._last), 3)
        self.clock.now += 300
        sealer = EnvelopeSealer(KEY, newIncarnation(), self.clock)
        opener.open(sealer.seal(Kind.LINK, b"x", "c", self.recipient), "c")
        self.assertEqual(len(opener._last), 2)
