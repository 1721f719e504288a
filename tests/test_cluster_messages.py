# -*- test-case-name: tests.test_cluster_messages -*-
"""
Tests for L{netstructer.cluster.messages}: batches, events and descriptors
round-trip, and anything else is refused as malformed.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from netstructer.cluster.messages import (
    Delivery,
    DirectoryEvent,
    MalformedMessage,
    Result,
    SessionValue,
    batchLimits,
    decodeBatch,
    decodeDescriptor,
    decodeEvent,
    deliverItem,
    encodeBatch,
    encodeDescriptor,
    encodeEvent,
    failureOf,
    publishItem,
    resultItem,
    valueItem,
)
from netstructer.errors import DecodeError, NoSuchSession, RecipientBusy
from netstructer.relay import RelayOp
from netstructer.values import Decoder, Encoder, encode

ENCODER = Encoder()
DECODER = Decoder(batchLimits(16 * 1024 * 1024))


class BatchTests(SynchronousTestCase):
    """
    Link batches.
    """

    def test_roundTrip(self) -> None:
        """
        Every kind of item comes back as it was.
        """
        items = [
            deliverItem("alice", "bob", encode(1)),
            deliverItem(None, "bob", encode(2)),
            publishItem("alice", "news", encode(3)),
            valueItem("1f", encode(4)),
            resultItem(
                7,
                [
                    failureOf(5, 0, NoSuchSession("gone", "bob"), RelayOp.SEND),
                    failureOf(6, 2, RecipientBusy("full", "news", 3), RelayOp.PUBLISH),
                ],
            ),
        ]
        node, decoded = decodeBatch(DECODER, encodeBatch(ENCODER, "n1", items))
        self.assertEqual(node, "n1")
        self.assertEqual(
            decoded[:4],
            [
                Delivery("alice", "bob", None, encode(1)),
                Delivery(None, "bob", None, encode(2)),
                Delivery("alice", None, "news", encode(3)),
                SessionValue("1f", encode(4)),
            ],
        )
        result = decoded[4]
        assert isinstance(result, Result)
        self.assertEqual(result.acknowledged, 7)
        first, second = result.failures
        self.assertIsInstance(first.error, NoSuchSession)
        self.assertEqual((first.sequence, first.index, first.op), (5, 0, RelayOp.SEND))
        self.assertEqual((str(first.error), first.error.name), ("gone", "bob"))
        self.assertIsInstance(second.error, RecipientBusy)
        self.assertEqual((second.error.count, second.op), (3, RelayOp.PUBLISH))

    def test_malformed(self) -> None:
        """
        Batches that do not follow the layout are refused.
        """
        for bad in (
            1,
            [],
            ["n1"],
            [1, []],
            ["n1", {}],
            ["n1", [1]],
            ["n1", [[9, 1, 2]]],
            ["n1", [[1, "a", "b", "not bytes"]]],
            ["n1", [[1, 1, "b", b"v"]]],
            ["n1", [[1, "a", "b"]]],
            ["n1", [[3, "s", "v"]]],
            ["n1", [[4, -1, []]]],
            ["n1", [[4, 1, [[1, 2]]]]],
            ["n1", [[4, 1, [[1, 2, 99, 1, "n", "m", 1]]]]],
            ["n1", [[4, 1, [[1, 2, 1, 99, "n", "m", 1]]]]],
            ["n1", [[4, 1, [[1, 2, 1, 1, "n", "m", 0]]]]],
            ["n1", [[4, 1, [[1, 2, 1, 1, b"n", "m", 1]]]]],
        ):
            self.assertRaises(MalformedMessage, decodeBatch, DECODER, encode(bad))
        self.assertRaises(DecodeError, decodeBatch, DECODER, b"\xc1")


class EventTests(SynchronousTestCase):
    """
    Directory events.
    """

    def test_roundTrip(self) -> None:
        """
        An event comes back as it was.
        """
        event = DirectoryEvent("n2", 5, False, False, {"1": b"d1"}, ["2"], ["news"], ["old"])
        self.assertEqual(decodeEvent(DECODER, encodeEvent(ENCODER, event)), event)
        left = DirectoryEvent("n2", 6, left=True)
        self.assertEqual(decodeEvent(DECODER, encodeEvent(ENCODER, left)), left)

    def test_malformed(self) -> None:
        """
        Events that do not follow the layout are refused.
        """
        good = ["n", 1, False, False, [], [], [], []]
        for index, bad in ((0, 1), (1, -1), (2, 1), (4, {}), (4, [["1"]]), (5, [1]), (6, [b"t"])):
            event = list(good)
            event[index] = bad
            self.assertRaises(MalformedMessage, decodeEvent, DECODER, encode(event))
        self.assertRaises(MalformedMessage, decodeEvent, DECODER, encode(good[:7]))


class DescriptorTests(SynchronousTestCase):
    """
    Session descriptors.
    """

    def test_roundTrip(self) -> None:
        """
        A descriptor comes back with its node and id.
        """
        encoded = encodeDescriptor(ENCODER, "alice", "10.0.0.1", "10.0.0.1:5", 12.5)
        d = decodeDescriptor(DECODER, "n1", "a", encoded)
        self.assertEqual(
            (d.node, d.sessionId, d.name, d.host, d.key, d.openedAt),
            ("n1", "a", "alice", "10.0.0.1", "10.0.0.1:5", 12.5),
        )
        anonymous = encodeDescriptor(ENCODER, None, "::1", "[::1]:5", 1)
        self.assertIsNone(decodeDescriptor(DECODER, "n1", "b", anonymous).name)

    def test_malformed(self) -> None:
        """
        Malformed descriptors are refused.
        """
        for bad in ([1, "h", "k", 1.0], [None, "h", "k", 1], [None, "h", "k"], "x"):
            self.assertRaises(MalformedMessage, decodeDescriptor, DECODER, "n", "s", encode(bad))
