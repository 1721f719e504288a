"""
Tests for L{netstructer.records}: extension records reach the capability
that registered for them, on both adapters.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from netstructer.channel import EXTENSION_RECORD_RANGES, PROTOCOL_VERSION, RecordReceived
from netstructer.errors import PeerVersionError, RemoteProtocolError
from netstructer.protocol import BridgeConfig
from netstructer.records import RecordRouter

from .test_protocol import KEY, Pair


class RouterTests(SynchronousTestCase):
    """
    L{RecordRouter} in isolation.
    """

    def test_routes(self) -> None:
        """
        Every record type of a capability goes to its handler, and only
        those.
        """
        router = RecordRouter()
        relay: list[tuple[int, bytes]] = []
        streams: list[tuple[int, bytes]] = []
        router.register("relay", lambda t, b: relay.append((t, b)))
        router.register("streams", lambda t, b: streams.append((t, b)))
        for recordType in EXTENSION_RECORD_RANGES["relay"]:
            router.recordReceived(RecordReceived(recordType, b"r"))
        router.recordReceived(RecordReceived(0x20, b"s"))
        self.assertEqual([t for t, _ in relay], list(EXTENSION_RECORD_RANGES["relay"]))
        self.assertEqual(streams, [(0x20, b"s")])
        self.assertTrue(router.registered("relay"))

    def test_unregistered(self) -> None:
        """
        A record for a capability this side did not enable is a protocol
        error naming the capability.
        """
        router = RecordRouter()
        error = self.assertRaises(
            RemoteProtocolError, router.recordReceived, RecordReceived(0x21, b"")
        )
        self.assertIn("streams record", str(error))
        self.assertIn("not enabled", str(error))

    def test_registerTwice(self) -> None:
        """
        A capability has one handler; an unknown capability has none.
        """
        router = RecordRouter()
        router.register("relay", lambda t, b: None)
        self.assertRaises(ValueError, router.register, "relay", lambda t, b: None)
        error = self.assertRaises(ValueError, router.register, "telepathy", lambda t, b: None)
        self.assertIn("relay", str(error))


class ProtocolRoutingTests(SynchronousTestCase):
    """
    L{BridgeProtocol} hands extension records to its router.
    """

    def test_delivered(self) -> None:
        """
        A record sent by one side reaches the handler registered on the
        other, after the values sent before it.
        """
        pair = Pair()
        pair.pump()
        self.assertEqual(pair.client.protocolVersion, PROTOCOL_VERSION)
        got: list[object] = []
        pair.server.bufferReceived = got.append  # type: ignore[method-assign]
        pair.server.records.register("relay", lambda t, b: got.append((t, b)))
        pair.client.sendBuffer("first")
        pair.client.sendRecord(0x11, b"body")
        pair.pump()
        self.assertEqual(got, ["first", (0x11, b"body")])

    def test_notEnabled(self) -> None:
        """
        A record for a capability the receiver did not enable ends the
        session with a protocol error.
        """
        pair = Pair()
        pair.pump()
        pair.client.sendRecord(0x20, b"")
        pair.pump()
        self.assertIsNotNone(pair.server.closeReason)
        assert pair.server.closeReason is not None
        self.assertIsInstance(pair.server.closeReason.value, RemoteProtocolError)

    def test_versionOne(self) -> None:
        """
        A session negotiated at version 1 refuses to send extension
        records, and still carries values.
        """
        pair = Pair(clientConfig=BridgeConfig.fromKey(KEY, protocolVersion=1))
        pair.pump()
        self.assertEqual(pair.server.protocolVersion, 1)
        self.assertRaises(PeerVersionError, pair.server.sendRecord, 0x10, b"")
        got: list[object] = []
        pair.server.bufferReceived = got.append  # type: ignore[method-assign]
        pair.client.sendBuffer(1)
        pair.pump()
        self.assertEqual(got, [1])
