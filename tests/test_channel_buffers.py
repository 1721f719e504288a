# -*- test-case-name: tests.test_channel_buffers -*-
"""
Tests for the reused-buffer record paths of L{netstructer.channel}:
L{Channel.sealBuffer} writes the same frames, byte for byte, as
L{Channel.sendValue} (and L{Channel.sealRecordParts} as
L{Channel.sendRecord}), large records are opened into a reused buffer, and
L{Channel.releaseBuffers} lets the memory go.
"""

from __future__ import annotations

import array
import os

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from netstructer import channel as _channel
from netstructer._crypto import TAG_SIZE, CipherState
from netstructer.channel import Channel, RecordReceived, Role, ValueReceived
from netstructer.errors import BufferDataError, ChannelClosedError, EncodeError, IntegrityError
from netstructer.streams.wire import STREAM_DATA
from netstructer.values import Encoder, Limits, encode

from .test_channel import KEY, SUITES, handshake

_CLIENT_EPHEMERAL = bytes(range(1, 33))
_SERVER_EPHEMERAL = bytes(range(2, 34))


def fixedPair(cipher: str = "AESGCM", limits: Limits | None = None) -> tuple[Channel, Channel]:
    """
    An established Noise pair whose ephemeral keys are fixed, so that two
    such pairs seal every record identically.
    """
    extra = {} if limits is None else {"limits": limits}
    client = Channel(
        Role.CLIENT,
        KEY,
        cipher=cipher,
        ephemeralFactory=lambda: X25519PrivateKey.from_private_bytes(_CLIENT_EPHEMERAL),
        **extra,  # type: ignore[arg-type]
    )
    server = Channel(
        Role.SERVER,
        KEY,
        ephemeralFactory=lambda: X25519PrivateKey.from_private_bytes(_SERVER_EPHEMERAL),
        **extra,  # type: ignore[arg-type]
    )
    handshake(client, server)
    return client, server


def pair(suite: str, cipher: str) -> tuple[Channel, Channel]:
    """
    An established pair of the suite.
    """
    client = Channel(Role.CLIENT, KEY, suite=suite, cipher=cipher)
    server = Channel(Role.SERVER, KEY, suite=suite)
    handshake(client, server)
    return client, server


def flatValues() -> st.SearchStrategy[object]:
    """
    C{bytes}, C{bytearray} and C{memoryview} values around every header
    boundary and the reuse threshold, and some other values.
    """
    sizes = st.one_of(
        st.integers(0, 20),
        st.sampled_from([255, 256, 65535, 65536, 65537, 70000, 200_000]),
    )
    data = sizes.map(lambda size: os.urandom(size))
    return st.one_of(
        data,
        data.map(bytearray),
        data.map(memoryview),
        data.map(lambda b: memoryview(b)[1::1] if b else memoryview(b)),
        st.builds(lambda: memoryview(array.array("i", range(20000)))),
        st.just(["hi", 1, (2, 3)]),
        st.just("s" * 100_000),
    )


def expected(value: object) -> object:
    """
    @return: What the peer decodes C{value} as.
    """
    if isinstance(value, memoryview):
        return value.tobytes()
    return value


class SealBufferTests(SynchronousTestCase):
    """
    L{Channel.sealBuffer}.
    """

    @settings(max_examples=60, deadline=None)
    @given(
        st.lists(flatValues(), min_size=1, max_size=5), st.sampled_from(["AESGCM", "ChaChaPoly"])
    )
    def test_sameFramesAsSendValue(self, values: list[object], cipher: str) -> None:
        """
        Sealing values with L{Channel.sealBuffer} gives exactly the frames
        L{Channel.sendValue} gives, and they open to the values.
        """
        old, _ = fixedPair(cipher)
        new, server = fixedPair(cipher)
        for value in values:
            frame = old.sendValue(value)
            sealed = new.sealBuffer(value)
            self.assertIsInstance(sealed, memoryview)
            self.assertTrue(sealed.readonly)
            self.assertEqual(sealed.tobytes(), frame)
            event = server.receiveFrame(sealed)
            assert isinstance(event, ValueReceived)
            self.assertEqual(event.value, expected(value))
            self.assertIs(type(event.value), type(expected(value)))

    def test_framed(self) -> None:
        """
        With C{framed=True} the view starts with the 4-byte big-endian
        length of the rest.
        """
        old, _ = fixedPair()
        new, _ = fixedPair()
        value = os.urandom(300_000)
        frame = old.sendValue(value)
        sealed = new.sealBuffer(value, framed=True)
        self.assertEqual(sealed.tobytes(), len(frame).to_bytes(4, "big") + frame)

    def test_everySuite(self) -> None:
        """
        Every suite seals with it, framed or not, and the peer opens the
        records in order, interleaved with L{Channel.sendValue}.
        """
        for suite, cipher in SUITES:
            client, server = pair(suite, cipher)
            for size in (10, 70_000, 1 << 20, 70_000):
                value = os.urandom(size)
                for framed in (False, True):
                    sealed = client.sealBuffer(value, framed=framed)
                    payload = sealed[4:] if framed else sealed
                    event = server.receiveFrame(payload)
                    assert isinstance(event, ValueReceived), suite
                    self.assertEqual(event.value, value)
                event = server.receiveFrame(client.sendValue([size]))
                assert isinstance(event, ValueReceived)
                self.assertEqual(event.value, [size])

    def test_bufferReused(self) -> None:
        """
        Successive seals of values no larger than the first reuse its
        buffer: the view of an earlier frame shows the later one.
        """
        client, _ = pair("noise", "AESGCM")
        first = client.sealBuffer(b"a" * 200_000)
        before = first.tobytes()
        second = client.sealBuffer(b"b" * 100_000)
        self.assertIs(first.obj, second.obj)
        self.assertNotEqual(first.tobytes(), before)

    def test_tooLarge(self) -> None:
        """
        A value larger than the peer accepts is refused before anything is
        sealed: the next record still opens.
        """
        client, server = fixedPair(limits=Limits(maxSize=100_000))
        self.assertRaises(BufferDataError, client.sealBuffer, b"x" * 100_000)
        self.assertRaises(BufferDataError, client.sealBuffer, ["y" * 100_000])
        event = server.receiveFrame(client.sealBuffer(b"x" * 99_990))
        assert isinstance(event, ValueReceived)

    def test_unencodable(self) -> None:
        """
        An unsupported value raises L{EncodeError}; the channel stays usable.
        """
        client, server = pair("noise", "AESGCM")
        self.assertRaises(EncodeError, client.sealBuffer, object())
        event = server.receiveFrame(client.sealBuffer(b"ok"))
        assert isinstance(event, ValueReceived)

    def test_notEstablished(self) -> None:
        """
        Before the handshake, and after the close, nothing can be sealed.
        """
        client = Channel(Role.CLIENT, KEY)
        self.assertRaises(ChannelClosedError, client.sealBuffer, b"x")
        client, _ = pair("noise", "AESGCM")
        client.close()
        self.assertRaises(ChannelClosedError, client.sealBuffer, b"x")


class SealRecordPartsTests(SynchronousTestCase):
    """
    L{Channel.sealRecordParts}.
    """

    @settings(max_examples=30, deadline=None)
    @given(
        st.binary(max_size=24),
        st.sampled_from([0, 1, 4096, 65536, 70_000, 300_000]),
        st.sampled_from(["AESGCM", "ChaChaPoly"]),
    )
    def test_sameFramesAsSendRecord(self, head: bytes, size: int, cipher: str) -> None:
        """
        A record sealed in parts is the frame L{Channel.sendRecord} gives
        for the joined body, after its length prefix, and opens to it.
        """
        old, _ = fixedPair(cipher)
        new, server = fixedPair(cipher)
        payload = os.urandom(size)
        frame = old.sendRecord(STREAM_DATA, head + payload)
        sealed = new.sealRecordParts(STREAM_DATA, head, memoryview(payload))
        self.assertTrue(sealed.readonly)
        self.assertEqual(sealed.tobytes(), len(frame).to_bytes(4, "big") + frame)
        event = server.receiveFrame(sealed[4:])
        assert isinstance(event, RecordReceived)
        self.assertEqual((event.recordType, bytes(event.body)), (STREAM_DATA, head + payload))

    def test_everySuite(self) -> None:
        """
        Every suite seals records in parts, in order with values.
        """
        for suite, cipher in SUITES:
            client, server = pair(suite, cipher)
            for size in (10, 70_000, 1 << 20):
                payload = os.urandom(size)
                sealed = client.sealRecordParts(STREAM_DATA, b"head", payload)
                event = server.receiveFrame(sealed[4:])
                assert isinstance(event, RecordReceived), suite
                self.assertEqual(bytes(event.body), b"head" + payload)
                value = server.receiveFrame(client.sendValue([size]))
                assert isinstance(value, ValueReceived)

    def test_refused(self) -> None:
        """
        What L{Channel.sendRecord} refuses, this refuses before sealing
        anything: a type that is not an extension's, a body larger than
        the peer accepts, a channel not established or closed.
        """
        client, server = fixedPair(limits=Limits(maxSize=100_000))
        self.assertRaises(ValueError, client.sealRecordParts, 0x01, b"", b"x")
        self.assertRaises(
            BufferDataError, client.sealRecordParts, STREAM_DATA, b"ab", b"x" * 99_999
        )
        event = server.receiveFrame(client.sealRecordParts(STREAM_DATA, b"a", b"x" * 99_999)[4:])
        assert isinstance(event, RecordReceived)
        fresh = Channel(Role.CLIENT, KEY)
        self.assertRaises(ChannelClosedError, fresh.sealRecordParts, STREAM_DATA, b"", b"x")
        client.close()
        self.assertRaises(ChannelClosedError, client.sealRecordParts, STREAM_DATA, b"", b"x")


class OpenIntoTests(SynchronousTestCase):
    """
    Large records are opened into a reused buffer.
    """

    def test_reusedAndReleased(self) -> None:
        """
        A large record is opened into the receiving opener's reused buffer,
        which L{Channel.releaseBuffers} drops, on both sides.
        """
        client, server = pair("noise", "AESGCM")
        for _ in range(3):
            server.receiveFrame(client.sealBuffer(os.urandom(1 << 20)))
        state = server._state
        assert isinstance(state, _channel._Established)
        opener = state._receiver
        assert isinstance(opener, _channel._NoiseOpener)
        self.assertGreaterEqual(opener._plaintext.size, 1 << 20)
        server.releaseBuffers()
        self.assertEqual(opener._plaintext.size, 0)
        sender = client._state._sender  # type: ignore[attr-defined]
        self.assertGreater(sender._sealed.size, 1 << 20)
        client.releaseBuffers()
        self.assertEqual((sender._sealed.size, sender._plaintext.size), (0, 0))

    def test_tamperedLarge(self) -> None:
        """
        A tampered large record fails authentication and fails the channel.
        """
        client, server = pair("noise", "ChaChaPoly")
        frame = bytearray(client.sealBuffer(os.urandom(100_000)))
        frame[50_000] ^= 1
        self.assertRaises(IntegrityError, server.receiveFrame, memoryview(frame))

    def test_closingStateOpensLarge(self) -> None:
        """
        After this side's close, the peer's large values still open.
        """
        client, server = pair("noise", "AESGCM")
        client.close()
        event = client.receiveFrame(server.sealBuffer(b"z" * 100_000))
        assert isinstance(event, ValueReceived)
        self.assertEqual(event.value, b"z" * 100_000)
        client.releaseBuffers()


class CipherIntoTests(SynchronousTestCase):
    """
    L{CipherState.encryptInto} and L{CipherState.decryptInto}.
    """

    @settings(max_examples=50, deadline=None)
    @given(st.binary(max_size=3000), st.sampled_from(["AESGCM", "ChaChaPoly"]))
    def test_sameAsEncrypt(self, plaintext: bytes, cipher: str) -> None:
        """
        They write exactly what L{CipherState.encrypt} returns and
        L{CipherState.decrypt} opens, and advance the nonce alike.
        """
        key = bytes(range(32))
        old, new, opener = (CipherState(cipher, key) for _ in range(3))
        out = bytearray(len(plaintext) + TAG_SIZE)
        self.assertEqual(new.encryptInto(plaintext, out), len(out))
        self.assertEqual(bytes(out), old.encrypt(plaintext))
        into = bytearray(len(plaintext))
        self.assertEqual(opener.decryptInto(memoryview(out), into), len(plaintext))
        self.assertEqual(bytes(into), plaintext)
        self.assertEqual((new.nonce, opener.nonce), (1, 1))

    @settings(max_examples=50, deadline=None)
    @given(st.lists(st.binary(max_size=200), max_size=5))
    def test_partsSameAsEncrypt(self, parts: list[bytes]) -> None:
        """
        With AES-GCM, L{CipherState.encryptPartsInto} writes exactly what
        L{CipherState.encrypt} returns for the joined parts.
        """
        key = bytes(range(32))
        old, new = CipherState("AESGCM", key), CipherState("AESGCM", key)
        self.assertTrue(new.sealsParts)
        joined = b"".join(parts)
        out = bytearray(len(joined) + TAG_SIZE)
        self.assertEqual(new.encryptPartsInto([memoryview(p) for p in parts], out), len(out))
        self.assertEqual(bytes(out), old.encrypt(joined))
        self.assertEqual(new.nonce, 1)

    def test_partsRefused(self) -> None:
        """
        L{CipherState.encryptPartsInto} refuses ChaCha20-Poly1305 and an
        output of the wrong size, advancing no nonce.
        """
        chacha = CipherState("ChaChaPoly", bytes(32))
        self.assertFalse(chacha.sealsParts)
        self.assertRaises(ValueError, chacha.encryptPartsInto, [b"ab"], bytearray(18))
        aes = CipherState("AESGCM", bytes(32))
        self.assertRaises(ValueError, aes.encryptPartsInto, [b"ab", b"c"], bytearray(18))
        self.assertEqual((chacha.nonce, aes.nonce), (0, 0))

    def test_wrongSizes(self) -> None:
        """
        An output of the wrong size raises L{ValueError} and advances no
        nonce; a ciphertext shorter than a tag fails authentication.
        """
        from cryptography.exceptions import InvalidTag

        cipher = CipherState("AESGCM", bytes(32))
        self.assertRaises(ValueError, cipher.encryptInto, b"abc", bytearray(3))
        self.assertRaises(ValueError, cipher.decryptInto, bytes(20), bytearray(20))
        self.assertRaises(InvalidTag, cipher.decryptInto, bytes(5), bytearray(0))
        self.assertEqual(cipher.nonce, 0)


class EncodePartsTests(SynchronousTestCase):
    """
    L{Encoder.encodeParts}.
    """

    @settings(max_examples=100, deadline=None)
    @given(st.integers(0, 70_000), st.sampled_from([bytes, bytearray, memoryview]))
    def test_partsJoinToEncoding(self, size: int, kind: type) -> None:
        """
        The header and payload join to exactly what L{encode} writes, and
        the payload is the value itself, not a copy.
        """
        value = kind(os.urandom(size))
        parts = Encoder().encodeParts(value)
        assert parts is not None
        header, payload = parts
        self.assertEqual(header + bytes(payload), encode(value))
        if kind is not memoryview:
            self.assertIs(payload, value)

    def test_others(self) -> None:
        """
        Values that are not flat binaries, and non-contiguous views, are
        left to L{Encoder.encode}; a multi-byte format is cast to bytes.
        """
        encoder = Encoder()
        self.assertIsNone(encoder.encodeParts([b"x"]))
        self.assertIsNone(encoder.encodeParts(memoryview(b"abcd")[::2]))
        view = memoryview(array.array("i", [1, 2, 3]))
        parts = encoder.encodeParts(view)
        assert parts is not None
        self.assertEqual(parts[0] + bytes(parts[1]), encode(view))
