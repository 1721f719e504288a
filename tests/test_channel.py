# -*- test-case-name: tests.test_channel -*-
"""
Tests for L{netstructer.channel}: two channels wired back to back, with no
I/O, through every handshake outcome and every attack on the record layer.
"""

from __future__ import annotations

import base64
from collections.abc import Callable

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from netstructer import channel as _channel
from netstructer._crypto import generateEphemeral
from netstructer.channel import (
    HANDSHAKE_MAX_FRAME,
    MAGIC,
    PROTOCOL_VERSION,
    Channel,
    CloseCode,
    CloseReceived,
    HandshakeCompleted,
    PingReceived,
    PongReceived,
    RecordReceived,
    Role,
    ValueReceived,
    frameOverhead,
)
from netstructer.errors import (
    AuthenticationError,
    BufferDataError,
    ChannelClosedError,
    EncodeError,
    HandshakeError,
    IntegrityError,
    LocalProtocolError,
    NetStructerError,
    PeerVersionError,
    RemoteProtocolError,
    TruncationError,
)
from netstructer.keys import Keyring, generateKey
from netstructer.values import Limits

KEY = generateKey()
OTHER_KEY = generateKey()
EXAMPLE = ["hi im haytam", 128, {b"gg": "gg"}, {1, 2, 6, 4}, (False, True)]

SUITES = [("noise", "AESGCM"), ("noise", "ChaChaPoly"), ("fernet", "AESGCM")]


def handshake(
    client: Channel, server: Channel
) -> tuple[HandshakeCompleted | None, HandshakeCompleted | None]:
    """
    Run the handshake between two fresh channels.

    @return: The client's and the server's L{HandshakeCompleted} events.
    """
    (hello,) = client.framesToSend()
    assert server.receiveFrame(hello) is None
    (reply,) = server.framesToSend()
    clientEvent = client.receiveFrame(reply)
    (confirmation,) = client.framesToSend()
    serverEvent = server.receiveFrame(confirmation)
    assert isinstance(clientEvent, HandshakeCompleted)
    assert isinstance(serverEvent, HandshakeCompleted)
    return clientEvent, serverEvent


def makePair(
    suite: str = "noise",
    cipher: str = "AESGCM",
    clientKey: object = KEY,
    serverKey: object = KEY,
    **kwargs: object,
) -> tuple[Channel, Channel]:
    """
    Make an established client/server pair.
    """
    client = Channel(Role.CLIENT, clientKey, suite=suite, cipher=cipher, **kwargs)  # type: ignore[arg-type]
    server = Channel(Role.SERVER, serverKey, suite=suite, **kwargs)  # type: ignore[arg-type]
    handshake(client, server)
    return client, server


def assertExact(testCase: SynchronousTestCase, expected: object, actual: object) -> None:
    """
    Assert two values are equal with the same type at every level.
    """
    testCase.assertIs(type(actual), type(expected))
    testCase.assertEqual(actual, expected)
    if isinstance(expected, list | tuple):
        assert isinstance(actual, list | tuple)
        for e, a in zip(expected, actual, strict=True):
            assertExact(testCase, e, a)
    elif isinstance(expected, dict):
        assert isinstance(actual, dict)
        for k in expected:
            (ak,) = [a for a in actual if a == k]
            testCase.assertIs(type(ak), type(k))
            assertExact(testCase, expected[k], actual[k])


class HandshakeTests(SynchronousTestCase):
    """
    The handshake of each suite, and each way it can fail.
    """

    def test_success(self) -> None:
        """
        Each suite completes its handshake in three frames, and both sides
        learn the suite and the peer's maximum value size.
        """
        for suite, cipher in SUITES:
            client = Channel(
                Role.CLIENT, KEY, suite=suite, cipher=cipher, limits=Limits(maxSize=1000)
            )
            server = Channel(Role.SERVER, KEY, suite=suite)
            clientEvent, serverEvent = handshake(client, server)
            assert clientEvent is not None and serverEvent is not None
            self.assertEqual(clientEvent.suite, serverEvent.suite)
            self.assertIn(suite, clientEvent.suite)
            self.assertEqual(serverEvent.peerMaxValueSize, 1000)
            self.assertEqual(clientEvent.peerMaxValueSize, 16 * 1024 * 1024)
            self.assertEqual(server.peerMaxValueSize, 1000)

    def test_helloHeader(self) -> None:
        """
        The hello starts with the magic, the version and the suite.
        """
        (hello,) = Channel(Role.CLIENT, KEY).framesToSend()
        self.assertEqual(hello[:6], MAGIC + bytes((PROTOCOL_VERSION, 1)))
        (hello,) = Channel(Role.CLIENT, KEY, cipher="ChaChaPoly").framesToSend()
        self.assertEqual(hello[:6], MAGIC + bytes((PROTOCOL_VERSION, 2)))
        (hello,) = Channel(Role.CLIENT, KEY, suite="fernet").framesToSend()
        self.assertEqual(hello[:6], MAGIC + bytes((PROTOCOL_VERSION, 3)))

    def test_maxFrameSize(self) -> None:
        """
        Before the handshake a channel accepts only small frames; after it,
        frames large enough for its largest value.
        """
        client = Channel(Role.CLIENT, KEY, limits=Limits(maxSize=5000))
        server = Channel(Role.SERVER, KEY, limits=Limits(maxSize=5000))
        self.assertEqual(client.maxFrameSize, HANDSHAKE_MAX_FRAME)
        self.assertEqual(server.maxFrameSize, HANDSHAKE_MAX_FRAME)
        handshake(client, server)
        self.assertEqual(server.maxFrameSize, frameOverhead("noise", 5000))
        self.assertEqual(client.maxFrameSize, 5000 + 17)

    def test_maxFrameSizeFollowsNegotiatedSuite(self) -> None:
        """
        A server configured for noise that also accepts fernet sizes its frame
        limit for the suite the client chose.
        """
        client = Channel(Role.CLIENT, KEY, suite="fernet")
        server = Channel(Role.SERVER, KEY, suite="noise", acceptSuites=["noise", "fernet"])
        handshake(client, server)
        self.assertEqual(server.maxFrameSize, frameOverhead("fernet", 16 * 1024 * 1024))
        self.assertGreater(server.maxFrameSize, frameOverhead("noise", 16 * 1024 * 1024))

    def test_tinyValueLimitStillCloses(self) -> None:
        """
        However small the value limit, the frame limit admits every close
        record, so the close handshake completes.
        """
        client = Channel(Role.CLIENT, KEY)
        server = Channel(Role.SERVER, KEY, limits=Limits(maxSize=1))
        handshake(client, server)
        frame = client.close(CloseCode.POLICY, "x" * 300)
        self.assertLessEqual(len(frame), server.maxFrameSize)
        self.assertIsInstance(server.receiveFrame(frame), CloseReceived)

    def test_handshakeFramesAreSmall(self) -> None:
        """
        Every handshake frame of every suite fits in L{HANDSHAKE_MAX_FRAME}.
        """
        for suite, cipher in SUITES:
            client = Channel(Role.CLIENT, KEY, suite=suite, cipher=cipher)
            server = Channel(Role.SERVER, KEY, suite=suite)
            (hello,) = client.framesToSend()
            server.receiveFrame(hello)
            (reply,) = server.framesToSend()
            client.receiveFrame(reply)
            (confirmation,) = client.framesToSend()
            for frame in (hello, reply, confirmation):
                self.assertLessEqual(len(frame), HANDSHAKE_MAX_FRAME)

    def test_wrongKey(self) -> None:
        """
        A client with the wrong key gets L{AuthenticationError}; the server
        raises L{AuthenticationError} too, after queueing a rejection, and no
        message carries key material.
        """
        for suite, cipher in SUITES:
            client = Channel(Role.CLIENT, OTHER_KEY, suite=suite, cipher=cipher)
            server = Channel(Role.SERVER, KEY, suite=suite)
            (hello,) = client.framesToSend()
            serverError = self.assertRaises(AuthenticationError, server.receiveFrame, hello)
            (rejection,) = server.framesToSend()
            clientError = self.assertRaises(AuthenticationError, client.receiveFrame, rejection)
            for error in (serverError, clientError):
                self.assertNotIn(KEY.decode()[:8], str(error))
                self.assertNotIn(OTHER_KEY.decode()[:8], str(error))
            self.assertRaises(LocalProtocolError, server.receiveFrame, hello)

    def test_impostorServer(self) -> None:
        """
        A server that answers without the client's key fails the client's
        authentication, even if it does not reject.
        """
        for suite, cipher in SUITES:
            client = Channel(Role.CLIENT, KEY, suite=suite, cipher=cipher)
            impostor = Channel(Role.CLIENT, OTHER_KEY, suite=suite, cipher=cipher)
            server = Channel(Role.SERVER, OTHER_KEY, suite=suite)
            client.framesToSend()
            (impostorHello,) = impostor.framesToSend()
            server.receiveFrame(impostorHello)
            (reply,) = server.framesToSend()
            self.assertRaises(AuthenticationError, client.receiveFrame, reply)

    def test_keyRotation(self) -> None:
        """
        A server whose keyring lists several keys accepts clients using any of
        them, during every step of a rotation.
        """
        old, new = generateKey(), generateKey()
        for suite, cipher in SUITES:
            for serverKeys, clientKeys in [
                ([old, new], [old]),
                ([old, new], [new, old]),
                ([new, old], [old]),
                ([new], [new, old]),
            ]:
                makePair(suite, cipher, Keyring(clientKeys), Keyring(serverKeys))

    def test_wrongVersion(self) -> None:
        """
        A client speaking another protocol version gets a L{HandshakeError}
        naming both versions, as does the server.
        """
        client = Channel(Role.CLIENT, KEY)
        server = Channel(Role.SERVER, KEY)
        (hello,) = client.framesToSend()
        oldHello = hello[:4] + b"\x00" + hello[5:]
        serverError = self.assertRaises(HandshakeError, server.receiveFrame, oldHello)
        self.assertEqual((serverError.localValue, serverError.remoteValue), (PROTOCOL_VERSION, 0))
        self.assertIn("version 0", str(serverError))
        (rejection,) = server.framesToSend()
        # The rejection is read by a client; pretend it came from a newer server.
        newer = PROTOCOL_VERSION + 1
        newerRejection = rejection[:2] + bytes((newer,)) + rejection[3:]
        clientError = self.assertRaises(HandshakeError, client.receiveFrame, newerRejection)
        self.assertNotIsInstance(clientError, AuthenticationError)
        self.assertEqual(
            (clientError.localValue, clientError.remoteValue), (PROTOCOL_VERSION, newer)
        )
        self.assertIn(f"version {newer}", str(clientError))
        self.assertIn("upgrade the older side", str(clientError))

    def test_olderServer(self) -> None:
        """
        A client rejected by a server of an older version is told to upgrade
        it or to connect with that version.
        """
        client = Channel(Role.CLIENT, KEY)
        old = Channel(Role.SERVER, KEY, protocolVersion=1)
        (hello,) = client.framesToSend()
        self.assertRaises(HandshakeError, old.receiveFrame, hello)
        (rejection,) = old.framesToSend()
        error = self.assertRaises(HandshakeError, client.receiveFrame, rejection)
        self.assertEqual((error.localValue, error.remoteValue), (PROTOCOL_VERSION, 1))
        self.assertIn("connect with protocolVersion=1", str(error))

    def test_negotiatedVersion(self) -> None:
        """
        Each side learns the lower of the two versions: a version 1 client
        and a current server agree on 1, two current sides on the current
        version, and only the latter may send extension records.
        """
        for clientVersion, expected in ((1, 1), (PROTOCOL_VERSION, PROTOCOL_VERSION)):
            client = Channel(Role.CLIENT, KEY, protocolVersion=clientVersion)
            server = Channel(Role.SERVER, KEY)
            events = handshake(client, server)
            self.assertEqual([e.version for e in events if e], [expected, expected])
            self.assertEqual((client.protocolVersion, server.protocolVersion), (expected, expected))
            if expected == 1:
                self.assertRaises(PeerVersionError, client.sendRecord, 0x10, b"x")
            else:
                event = server.receiveFrame(client.sendRecord(0x10, b"x"))
                self.assertEqual(event, RecordReceived(0x10, b"x"))

    def test_extensionVersions(self) -> None:
        """
        Each capability's records travel only in sessions of the version
        that added them or later: the relay's from version 2, streams' from
        version 3.  Asking to send one in an older session raises
        L{PeerVersionError} naming the version needed, before anything is
        sealed (values still flow after it); receiving one fails the channel.
        A newer client and a server limited to an older version agree on the
        server's.
        """
        for serverVersion in (1, 2, 3):
            # A server limited to version 1 accepts only version 1 hellos.
            client = Channel(Role.CLIENT, KEY, protocolVersion=1 if serverVersion == 1 else 3)
            server = Channel(Role.SERVER, KEY, protocolVersion=serverVersion)
            handshake(client, server)
            self.assertEqual(client.protocolVersion, serverVersion)
            for recordType, needed in ((0x10, 2), (0x20, 3)):
                if serverVersion >= needed:
                    event = server.receiveFrame(client.sendRecord(recordType, b"x"))
                    self.assertEqual(event, RecordReceived(recordType, b"x"))
                    continue
                error = self.assertRaises(PeerVersionError, client.sendRecord, recordType, b"x")
                self.assertEqual((error.localValue, error.remoteValue), (3, serverVersion))
                self.assertIn(f"need version {needed}", str(error))
                event = server.receiveFrame(client.sendValue("still"))
                self.assertEqual(event, ValueReceived("still", 6))
        # A streams record in a version 2 session fails the receiver.
        client = Channel(Role.CLIENT, KEY)
        server = Channel(Role.SERVER, KEY, protocolVersion=2)
        handshake(client, server)
        forged = client._state._sender.seal(0x22, bytes(13))  # type: ignore[union-attr]
        error = self.assertRaises(RemoteProtocolError, server.receiveFrame, forged)
        self.assertIn("protocol version 2 session", str(error))

    def test_suiteMismatch(self) -> None:
        """
        A fernet client and a noise server fail with L{HandshakeError}s naming
        both suites.
        """
        client = Channel(Role.CLIENT, KEY, suite="fernet")
        server = Channel(Role.SERVER, KEY, suite="noise")
        (hello,) = client.framesToSend()
        serverError = self.assertRaises(HandshakeError, server.receiveFrame, hello)
        self.assertIn("fernet", str(serverError))
        self.assertIn("noise", str(serverError))
        (rejection,) = server.framesToSend()
        clientError = self.assertRaises(HandshakeError, client.receiveFrame, rejection)
        self.assertIn("fernet", str(clientError))
        self.assertIn("noise (AESGCM)", str(clientError))

    def test_serverAcceptsSeveralSuites(self) -> None:
        """
        A server may accept several suite families at once.
        """
        for suite, cipher in SUITES:
            client = Channel(Role.CLIENT, KEY, suite=suite, cipher=cipher)
            server = Channel(Role.SERVER, KEY, acceptSuites=["noise", "fernet"])
            handshake(client, server)

    def test_notNetStructer(self) -> None:
        """
        A first frame that is not a hello is a L{HandshakeError}.
        """
        server = Channel(Role.SERVER, KEY)
        self.assertRaises(HandshakeError, server.receiveFrame, b"GET / HTTP/1.1\r\n")
        self.assertEqual(len(server.framesToSend()), 1)

    def test_replayedHello(self) -> None:
        """
        A recorded hello replayed to a server gets a reply, but the replaying
        party cannot confirm the key, so no session is ever established; the
        original confirmation does not fit the new keys either.
        """
        for suite, cipher in SUITES:
            client = Channel(Role.CLIENT, KEY, suite=suite, cipher=cipher)
            server = Channel(Role.SERVER, KEY, suite=suite)
            (hello,) = client.framesToSend()
            server.receiveFrame(hello)
            (reply,) = server.framesToSend()
            client.receiveFrame(reply)
            (confirmation,) = client.framesToSend()
            record = client.sendValue("secret")

            victim = Channel(Role.SERVER, KEY, suite=suite)
            self.assertIsNone(victim.receiveFrame(hello))
            victim.framesToSend()
            self.assertRaises(AuthenticationError, victim.receiveFrame, confirmation)
            victim2 = Channel(Role.SERVER, KEY, suite=suite)
            victim2.receiveFrame(hello)
            self.assertRaises(HandshakeError, victim2.receiveFrame, record)

    def test_valueBeforeConfirmation(self) -> None:
        """
        A server will not take a value record in place of the key
        confirmation.
        """
        client = Channel(Role.CLIENT, KEY)
        server = Channel(Role.SERVER, KEY)
        (hello,) = client.framesToSend()
        server.receiveFrame(hello)
        (reply,) = server.framesToSend()
        client.receiveFrame(reply)
        client.framesToSend()
        self.assertRaises(HandshakeError, server.receiveFrame, client.sendValue(1))

    def test_confirmationWithBody(self) -> None:
        """
        A key confirmation must have an empty body: one with a body fails
        the handshake, in each suite, and no session is reported.
        """
        from netstructer import channel as module

        for sealer in (module._NoiseSealer, module._FernetSealer):
            original = sealer.seal

            def seal(self: object, recordType: int, body: bytes, original=original) -> bytes:
                return original(self, recordType, b"body" if recordType == 5 else body)

            self.patch(sealer, "seal", seal)
        for suite in ("noise", "fernet"):
            client = Channel(Role.CLIENT, KEY, suite=suite)
            server = Channel(Role.SERVER, KEY, suite=suite)
            (hello,) = client.framesToSend()
            server.receiveFrame(hello)
            (reply,) = server.framesToSend()
            client.receiveFrame(reply)
            (confirmation,) = client.framesToSend()
            error = self.assertRaises(HandshakeError, server.receiveFrame, confirmation)
            self.assertIn("must be empty", str(error))
            self.assertIsNone(server.peerKey, suite)

    def test_lostDuringHandshake(self) -> None:
        """
        A connection lost during the handshake is a L{HandshakeError}.
        """
        client = Channel(Role.CLIENT, KEY)
        self.assertRaises(HandshakeError, client.connectionLost)
        server = Channel(Role.SERVER, KEY)
        self.assertRaises(HandshakeError, server.connectionLost)

    def test_sendBeforeHandshake(self) -> None:
        """
        Values cannot be sent before the handshake completes.
        """
        client = Channel(Role.CLIENT, KEY)
        self.assertRaises(LocalProtocolError, client.sendValue, 1)
        self.assertRaises(LocalProtocolError, client.ping)
        self.assertRaises(LocalProtocolError, client.close)

    def test_badArguments(self) -> None:
        """
        Unknown suites and ciphers, and oversized limits, are refused.
        """
        self.assertRaises(ValueError, Channel, Role.CLIENT, KEY, suite="tls")
        self.assertRaises(ValueError, Channel, Role.CLIENT, KEY, cipher="DES")
        self.assertRaises(ValueError, Channel, Role.CLIENT, KEY, limits=Limits(maxSize=2**31 + 1))


class PreparedHandshakeTests(SynchronousTestCase):
    """
    L{Channel.prepareHandshake}: a server makes the ephemeral key of its
    Noise reply once the connection is accepted, before the hello arrives.
    """

    def recordKeys(self) -> list[X25519PrivateKey]:
        """
        Record every ephemeral key the channel module generates.

        @return: The list the keys are appended to.
        """
        made: list[X25519PrivateKey] = []

        def generate() -> X25519PrivateKey:
            key = generateEphemeral()
            made.append(key)
            return key

        self.patch(_channel, "generateEphemeral", generate)
        return made

    def test_keyMadeBeforeHello(self) -> None:
        """
        A server makes its key when asked, before any frame, once however
        often it is asked; its reply carries that key, and the handshake
        completes.
        """
        made = self.recordKeys()
        for cipher in ("AESGCM", "ChaChaPoly"):
            del made[:]
            client = Channel(Role.CLIENT, KEY, cipher=cipher)
            server = Channel(Role.SERVER, KEY)
            self.assertEqual(made, [])
            server.prepareHandshake()
            server.prepareHandshake()
            self.assertEqual(len(made), 1)
            (hello,) = client.framesToSend()
            self.assertIsNone(server.receiveFrame(hello))
            (reply,) = server.framesToSend()
            self.assertEqual(reply[1:33], made[0].public_key().public_bytes_raw())
            self.assertIsInstance(client.receiveFrame(reply), HandshakeCompleted)
            (confirmation,) = client.framesToSend()
            self.assertIsInstance(server.receiveFrame(confirmation), HandshakeCompleted)
            self.assertEqual(len(made), 1)

    def test_freshKeyPerConnection(self) -> None:
        """
        Every connection gets its own key: prepared servers never send the
        same ephemeral key twice.
        """
        seen = set()
        for _ in range(5):
            client = Channel(Role.CLIENT, KEY)
            server = Channel(Role.SERVER, KEY)
            server.prepareHandshake()
            (hello,) = client.framesToSend()
            server.receiveFrame(hello)
            (reply,) = server.framesToSend()
            seen.add(reply[1:33])
            seen.add(hello[6:38])
        self.assertEqual(len(seen), 10)

    def test_keyUsedOnce(self) -> None:
        """
        Once the hello has arrived, whether or not it authenticated, the
        server holds no prepared key and makes none any more.
        """
        made = self.recordKeys()
        for clientKey in (KEY, OTHER_KEY):
            del made[:]
            server = Channel(Role.SERVER, KEY)
            server.prepareHandshake()
            (hello,) = Channel(Role.CLIENT, clientKey).framesToSend()
            try:
                server.receiveFrame(hello)
            except AuthenticationError:
                pass
            server.prepareHandshake()
            self.assertEqual(len(made), 1)
            self.assertNotIsInstance(server._state, _channel._ServerAwaitingHello)

    def test_keyRotation(self) -> None:
        """
        A server with several keys answers with its prepared key whichever
        key the client holds.
        """
        made = self.recordKeys()
        old, new = generateKey(), generateKey()
        for clientKey in (old, new):
            del made[:]
            client = Channel(Role.CLIENT, clientKey)
            server = Channel(Role.SERVER, Keyring([old, new]))
            server.prepareHandshake()
            handshake(client, server)
            self.assertEqual(len(made), 1)

    def test_nothingToPrepare(self) -> None:
        """
        A client, and a server that accepts only the Fernet suite, make no
        key when asked to prepare; a server that accepts both suites does.
        """
        made = self.recordKeys()
        client = Channel(Role.CLIENT, KEY)
        client.prepareHandshake()
        Channel(Role.SERVER, KEY, suite="fernet").prepareHandshake()
        self.assertEqual(made, [])
        self.assertEqual(len(client.framesToSend()), 1)
        both = Channel(Role.SERVER, KEY, suite="fernet", acceptSuites=["fernet", "noise"])
        both.prepareHandshake()
        self.assertEqual(len(made), 1)
        fernetClient = Channel(Role.CLIENT, KEY, suite="fernet")
        handshake(fernetClient, both)

    def test_ephemeralFactory(self) -> None:
        """
        A server given an C{ephemeralFactory} prepares its key with it.
        """
        key = X25519PrivateKey.from_private_bytes(bytes(range(32)))
        server = Channel(Role.SERVER, KEY, ephemeralFactory=lambda: key)
        server.prepareHandshake()
        (hello,) = Channel(Role.CLIENT, KEY).framesToSend()
        server.receiveFrame(hello)
        (reply,) = server.framesToSend()
        self.assertEqual(reply[1:33], key.public_key().public_bytes_raw())


class RecordTests(SynchronousTestCase):
    """
    Values, pings and closes after the handshake, and every attack on them.
    """

    def test_example(self) -> None:
        """
        The original package's example crosses both ways exactly, in each
        suite.
        """
        for suite, cipher in SUITES:
            client, server = makePair(suite, cipher)
            event = server.receiveFrame(client.sendValue(EXAMPLE))
            assert isinstance(event, ValueReceived)
            assertExact(self, EXAMPLE, event.value)
            event = client.receiveFrame(server.sendValue(EXAMPLE))
            assert isinstance(event, ValueReceived)
            assertExact(self, EXAMPLE, event.value)

    @settings(max_examples=50, deadline=None)
    @given(
        st.lists(st.tuples(st.booleans(), st.integers() | st.text() | st.binary()), max_size=20),
        st.sampled_from(SUITES),
    )
    def test_interleavings(self, script: list[tuple[bool, object]], suite: tuple[str, str]) -> None:
        """
        Values sent both ways in any interleaving, delivered at any later
        point, arrive in order.
        """
        client, server = makePair(*suite)
        toServer: list[bytes] = []
        toClient: list[bytes] = []
        sentToServer: list[object] = []
        sentToClient: list[object] = []
        for fromClient, value in script:
            if fromClient:
                toServer.append(client.sendValue(value))
                sentToServer.append(value)
            else:
                toClient.append(server.sendValue(value))
                sentToClient.append(value)
        received = [server.receiveFrame(f) for f in toServer]
        self.assertEqual([e.value for e in received if isinstance(e, ValueReceived)], sentToServer)
        received = [client.receiveFrame(f) for f in toClient]
        self.assertEqual([e.value for e in received if isinstance(e, ValueReceived)], sentToClient)

    def test_everyBitFlip(self) -> None:
        """
        Flipping any single bit of a value record makes it fail
        authentication.
        """
        for suite, cipher in SUITES:
            frameLength = len(makePair(suite, cipher)[0].sendValue(EXAMPLE))
            for bit in range(frameLength * 8):
                client, server = makePair(suite, cipher)
                frame = client.sendValue(EXAMPLE)
                flipped = bytearray(frame)
                flipped[bit // 8] ^= 1 << (bit % 8)
                if suite == "fernet" and _sameToken(bytes(flipped), frame):
                    # Base64's unused low bits: the token itself is unchanged.
                    continue
                self.assertRaises(IntegrityError, server.receiveFrame, bytes(flipped))
                self.assertRaises(LocalProtocolError, server.receiveFrame, frame)

    def test_everyBitFlipOfControlRecords(self) -> None:
        """
        Pings and closes are authenticated like values.
        """
        client, _ = makePair()
        for frame in (client.ping(b"abc"), client.close(CloseCode.NORMAL, "bye")):
            for bit in range(len(frame) * 8):
                flipped = bytearray(frame)
                flipped[bit // 8] ^= 1 << (bit % 8)
                _, receiver = makePair()
                self.assertRaises(IntegrityError, receiver.receiveFrame, bytes(flipped))

    def test_replay(self) -> None:
        """
        A record delivered twice fails the second time.
        """
        for suite, cipher in SUITES:
            client, server = makePair(suite, cipher)
            frame = client.sendValue(1)
            server.receiveFrame(frame)
            self.assertRaises(IntegrityError, server.receiveFrame, frame)

    def test_reorder(self) -> None:
        """
        Records delivered out of order fail.
        """
        for suite, cipher in SUITES:
            client, server = makePair(suite, cipher)
            first, second = client.sendValue(1), client.sendValue(2)
            self.assertRaises(IntegrityError, server.receiveFrame, second)
            del first

    def test_drop(self) -> None:
        """
        A dropped record makes the next one fail.
        """
        for suite, cipher in SUITES:
            client, server = makePair(suite, cipher)
            client.sendValue(1)
            self.assertRaises(IntegrityError, server.receiveFrame, client.sendValue(2))

    def test_reflection(self) -> None:
        """
        A record sent back to the side that sealed it fails.
        """
        for suite, cipher in SUITES:
            client, server = makePair(suite, cipher)
            self.assertRaises(IntegrityError, client.receiveFrame, client.sendValue(1))
            self.assertRaises(IntegrityError, server.receiveFrame, server.sendValue(1))

    def test_crossConnection(self) -> None:
        """
        A record from one connection does not open on another connection with
        the same key.
        """
        for suite, cipher in SUITES:
            client1, _ = makePair(suite, cipher)
            _, server2 = makePair(suite, cipher)
            self.assertRaises(IntegrityError, server2.receiveFrame, client1.sendValue(1))

    def test_truncation(self) -> None:
        """
        A connection that ends without a close record is a truncation; one
        that ends after the close exchange is clean.
        """
        client, server = makePair()
        server.receiveFrame(client.sendValue(1))
        self.assertRaises(TruncationError, server.connectionLost)

        client, server = makePair()
        event = server.receiveFrame(client.close(CloseCode.GOING_AWAY, "bye"))
        self.assertEqual(event, CloseReceived(CloseCode.GOING_AWAY, "bye"))
        (reply,) = server.framesToSend()
        self.assertEqual(client.receiveFrame(reply), CloseReceived(CloseCode.GOING_AWAY, ""))
        server.connectionLost()
        client.connectionLost()

    def test_closeBeforeReply(self) -> None:
        """
        A side that closed still receives the values the peer sent before it
        saw the close, but cannot send; the connection ending before the
        peer's close reply is a truncation.
        """
        client, server = makePair()
        inFlight = server.sendValue("late")
        closeFrame = client.close()
        self.assertRaises(ChannelClosedError, client.sendValue, 1)
        event = client.receiveFrame(inFlight)
        self.assertEqual(event, ValueReceived("late", len(b"\xa4late")))
        server.receiveFrame(closeFrame)
        self.assertRaises(ChannelClosedError, server.sendValue, 1)
        self.assertRaises(TruncationError, client.connectionLost)

    def test_simultaneousClose(self) -> None:
        """
        Both sides closing at once end cleanly, with no reply to a reply.
        """
        client, server = makePair()
        fromClient, fromServer = client.close(), server.close()
        self.assertIsInstance(server.receiveFrame(fromClient), CloseReceived)
        self.assertIsInstance(client.receiveFrame(fromServer), CloseReceived)
        self.assertEqual(server.framesToSend() + client.framesToSend(), [])
        client.connectionLost()
        server.connectionLost()

    def test_recordAfterClose(self) -> None:
        """
        A record after both sides closed is a protocol error.
        """
        client, server = makePair()
        server.receiveFrame(client.close())
        (reply,) = server.framesToSend()
        lateFrame = server._state  # the server can no longer seal anything
        self.assertRaises(ChannelClosedError, server.sendValue, 1)
        del lateFrame
        client.receiveFrame(reply)
        self.assertRaises(RemoteProtocolError, client.receiveFrame, b"x" * 40)

    def test_closeReason(self) -> None:
        """
        Close reasons are limited to 256 UTF-8 bytes, cut on a character
        boundary, and unknown codes read as internal errors.
        """
        client, server = makePair()
        event = server.receiveFrame(client.close(CloseCode.POLICY, "\u00e9" * 200))
        assert isinstance(event, CloseReceived)
        self.assertEqual(event.reason, "\u00e9" * 128)
        self.assertEqual(CloseCode.fromWire(999), CloseCode.INTERNAL_ERROR)

    def test_ping(self) -> None:
        """
        A ping is answered by a pong with the same data, queued by the peer.
        """
        client, server = makePair()
        self.assertEqual(server.receiveFrame(client.ping(b"42")), PingReceived(b"42"))
        (pong,) = server.framesToSend()
        self.assertEqual(client.receiveFrame(pong), PongReceived(b"42"))
        self.assertRaises(ValueError, client.ping, b"x" * 65)

    def test_oversize(self) -> None:
        """
        A value larger than the peer accepts is refused locally with
        L{BufferDataError} before anything is sealed; the channel stays usable.
        """
        client = Channel(Role.CLIENT, KEY)
        server = Channel(Role.SERVER, KEY, limits=Limits(maxSize=100))
        handshake(client, server)
        self.assertRaises(BufferDataError, client.sendValue, b"x" * 101)
        event = server.receiveFrame(client.sendValue(b"x" * 90))
        assert isinstance(event, ValueReceived)
        self.assertEqual(event.value, b"x" * 90)

    def test_unencodable(self) -> None:
        """
        An unencodable value raises L{EncodeError} and leaves the channel
        usable: the next value still opens on the other side.
        """
        client, server = makePair()
        self.assertRaises(EncodeError, client.sendValue, [object()])
        event = server.receiveFrame(client.sendValue(2))
        self.assertEqual(event, ValueReceived(2, 1))

    def test_sendEncoded(self) -> None:
        """
        A value encoded earlier can be sealed later.
        """
        from netstructer.values import encode

        client, server = makePair()
        event = server.receiveFrame(client.sendEncoded(encode(EXAMPLE)))
        assert isinstance(event, ValueReceived)
        assertExact(self, EXAMPLE, event.value)


def _sameToken(flipped: bytes, original: bytes) -> bool:
    try:
        return base64.urlsafe_b64decode(flipped) == base64.urlsafe_b64decode(original)
    except ValueError:
        return False


class FuzzTests(SynchronousTestCase):
    """
    Garbage fed to a channel in every state raises only NetStructer errors.
    """

    def states(self) -> list[Callable[[], Channel]]:
        """
        Factories for channels in each receiving state.
        """

        def serverAwaitingHello() -> Channel:
            return Channel(Role.SERVER, KEY)

        def clientAwaitingReply() -> Channel:
            return Channel(Role.CLIENT, KEY)

        def serverAwaitingConfirmation() -> Channel:
            client, server = Channel(Role.CLIENT, KEY), Channel(Role.SERVER, KEY)
            server.receiveFrame(client.framesToSend()[0])
            return server

        def established() -> Channel:
            return makePair()[1]

        def fernetEstablished() -> Channel:
            return makePair("fernet")[1]

        def closing() -> Channel:
            client, _ = makePair()
            client.close()
            return client

        return [
            serverAwaitingHello,
            clientAwaitingReply,
            serverAwaitingConfirmation,
            established,
            fernetEstablished,
            closing,
        ]

    @settings(max_examples=300, deadline=None)
    @given(st.binary(max_size=200), st.integers(min_value=0, max_value=5))
    def test_garbage(self, frame: bytes, stateIndex: int) -> None:
        """
        Random frames raise nothing but L{NetStructerError}s.
        """
        channel = self.states()[stateIndex]()
        try:
            channel.receiveFrame(frame)
        except NetStructerError:
            pass

    @settings(max_examples=300, deadline=None)
    @given(st.data())
    def test_mutatedHandshake(self, data: st.DataObject) -> None:
        """
        Mutated real handshake frames raise nothing but L{NetStructerError}s.
        """
        suite, cipher = data.draw(st.sampled_from(SUITES))
        client = Channel(Role.CLIENT, KEY, suite=suite, cipher=cipher)
        server = Channel(Role.SERVER, KEY, acceptSuites=["noise", "fernet"])
        (hello,) = client.framesToSend()
        mutated = _mutate(data, hello)
        try:
            server.receiveFrame(mutated)
        except NetStructerError:
            return
        (reply,) = server.framesToSend()
        try:
            client.receiveFrame(_mutate(data, reply))
        except NetStructerError:
            pass


def _mutate(data: st.DataObject, frame: bytes) -> bytes:
    mutation = data.draw(st.sampled_from(["flip", "truncate", "extend", "keep"]))
    if mutation == "flip" and frame:
        index = data.draw(st.integers(0, len(frame) - 1))
        return (
            frame[:index]
            + bytes([frame[index] ^ data.draw(st.integers(1, 255))])
            + frame[index + 1 :]
        )
    if mutation == "truncate":
        return frame[: data.draw(st.integers(0, len(frame)))]
    if mutation == "extend":
        return frame + data.draw(st.binary(min_size=1, max_size=20))
    return frame
