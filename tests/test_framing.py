# -*- test-case-name: tests.test_framing -*-
"""
Tests for L{netstructer.session.framing}: frames come out intact and in
order whatever the chunking, limits hold before anything is buffered, and
memory stays bounded.
"""

from __future__ import annotations

import copy
import struct
from itertools import pairwise

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from netstructer.errors import BufferDataError, FrameTooLarge
from netstructer.session.framing import PREFIX_SIZE, FrameReader

_PREFIX = struct.Struct("!I")


def frame(payload: bytes) -> bytes:
    """
    @return: C{payload} with its length prefix.
    """
    return _PREFIX.pack(len(payload)) + payload


def payloads(maxSize: int) -> st.SearchStrategy[list[bytes]]:
    """
    Lists of distinct-looking payloads (each filled with its own index, so a
    misplaced byte shows).
    """
    return st.lists(st.integers(0, maxSize), max_size=12).map(
        lambda sizes: [bytes([index % 251]) * size for index, size in enumerate(sizes)]
    )


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    """
    @return: C{data} cut at the given offsets (taken modulo its length).
    """
    if not data:
        return []
    points = sorted({cut % len(data) for cut in cuts} | {0, len(data)})
    return [data[a:b] for a, b in pairwise(points)]


def drain(reader: FrameReader) -> list[bytes]:
    """
    @return: Every complete frame the reader holds, copied.
    """
    frames = []
    while (view := reader.nextFrame()) is not None:
        frames.append(bytes(view))
    return frames


class FakeSocket:
    """
    A socket whose C{recv_into} returns at most C{sizes[i]} bytes on call i
    (cycling), from a fixed stream.
    """

    def __init__(self, data: bytes, sizes: list[int]) -> None:
        self._data = memoryview(data)
        self._offset = 0
        self._sizes = sizes or [len(data) or 1]
        self._calls = 0

    @property
    def exhausted(self) -> bool:
        return self._offset >= len(self._data)

    def recv_into(self, buffer: memoryview) -> int:
        limit = self._sizes[self._calls % len(self._sizes)]
        self._calls += 1
        count = min(len(buffer), limit, len(self._data) - self._offset)
        buffer[:count] = self._data[self._offset : self._offset + count]
        self._offset += count
        return count


class FeedTests(SynchronousTestCase):
    """
    L{FrameReader.feed} and L{FrameReader.nextFrame}.
    """

    @settings(max_examples=300, deadline=None)
    @given(payloads(300), st.lists(st.integers(0, 10_000), max_size=30), st.integers(1, 200))
    def test_anyChunking(self, sent: list[bytes], cuts: list[int], largeFrame: int) -> None:
        """
        Frames fed in any chunks, one C{nextFrame} loop after each chunk,
        come out intact and in order, small and large alike, and nothing
        stays pending.
        """
        reader = FrameReader(maxFrame=300, largeFrame=largeFrame)
        received: list[bytes] = []
        for chunk in split(b"".join(frame(p) for p in sent), cuts):
            reader.feed(chunk)
            received += drain(reader)
        self.assertEqual(received, sent)
        self.assertEqual((reader.pending, reader.wanted), (0, PREFIX_SIZE))

    @settings(max_examples=100, deadline=None)
    @given(payloads(300), st.integers(1, 200))
    def test_oneFeed(self, sent: list[bytes], largeFrame: int) -> None:
        """
        One C{feed} may hold many frames; they all come out, in order.
        """
        reader = FrameReader(maxFrame=300, largeFrame=largeFrame)
        reader.feed(b"".join(frame(p) for p in sent))
        self.assertEqual(drain(reader), sent)

    def test_partialPrefix(self) -> None:
        """
        A prefix split over chunks is read once whole; C{pending} and
        C{wanted} say how much is there and how much is missing.
        """
        reader = FrameReader(maxFrame=100)
        data = frame(b"abcdef")
        reader.feed(data[:2])
        self.assertIsNone(reader.nextFrame())
        self.assertEqual((reader.pending, reader.wanted), (2, 2))
        reader.feed(data[2:5])
        self.assertIsNone(reader.nextFrame())
        self.assertEqual((reader.pending, reader.wanted), (5, 5))
        reader.feed(data[5:])
        self.assertEqual(reader.wanted, 0)
        self.assertEqual(bytes(reader.nextFrame() or b"?"), b"abcdef")
        self.assertIsNone(reader.nextFrame())

    def test_wantedLarge(self) -> None:
        """
        While a large frame arrives, C{wanted} is what it still lacks.
        """
        reader = FrameReader(maxFrame=1000, largeFrame=10)
        reader.feed(frame(b"x" * 100)[:30])
        self.assertIsNone(reader.nextFrame())
        self.assertEqual((reader.pending, reader.wanted), (26, 74))

    def test_emptyFrame(self) -> None:
        """
        A frame of length 0 comes out as an empty view.
        """
        reader = FrameReader(maxFrame=10)
        reader.feed(frame(b"") + frame(b"a"))
        self.assertEqual(drain(reader), [b"", b"a"])

    def test_mutableInputCopied(self) -> None:
        """
        A C{bytearray} fed is copied: changing it afterwards changes no
        frame.
        """
        reader = FrameReader(maxFrame=10)
        data = bytearray(frame(b"abc"))
        reader.feed(data)
        data[4:] = b"zzz"
        self.assertEqual(drain(reader), [b"abc"])

    def test_smallFrameIsAViewOfTheChunk(self) -> None:
        """
        A small frame wholly within one chunk is handed out without a copy.
        """
        reader = FrameReader(maxFrame=10)
        data = frame(b"abc")
        reader.feed(data)
        view = reader.nextFrame()
        assert view is not None
        self.assertIs(view.obj, data)


class ReceiveIntoTests(SynchronousTestCase):
    """
    L{FrameReader.receiveBuffer} and L{FrameReader.received}, as the
    blocking adapter uses them.
    """

    @settings(max_examples=300, deadline=None)
    @given(
        payloads(3000),
        st.lists(st.integers(1, 5000), max_size=10),
        st.integers(1, 2000),
    )
    def test_anyReads(self, sent: list[bytes], sizes: list[int], largeFrame: int) -> None:
        """
        Frames read from a socket in reads of any size come out intact and
        in order.
        """
        reader = FrameReader(maxFrame=3000, largeFrame=largeFrame)
        sock = FakeSocket(b"".join(frame(p) for p in sent), sizes)
        received: list[bytes] = []
        while not sock.exhausted:
            view = reader.receiveBuffer()
            self.assertGreater(len(view), 0)
            reader.received(sock.recv_into(view))
            received += drain(reader)
        self.assertEqual(received, sent)
        self.assertEqual(reader.pending, 0)

    def test_largeFrameReceivedInPlace(self) -> None:
        """
        Once a large frame's prefix is read, C{receiveBuffer} is the rest of
        that frame's own buffer, exactly.
        """
        reader = FrameReader(maxFrame=10**6, largeFrame=1000)
        data = frame(b"q" * 5000)
        reader.receiveBuffer()[:100] = data[:100]
        reader.received(100)
        self.assertIsNone(reader.nextFrame())
        view = reader.receiveBuffer()
        self.assertEqual(len(view), 5000 - 96)
        view[:] = data[100:]
        reader.received(len(view))
        self.assertEqual(bytes(reader.nextFrame() or b""), b"q" * 5000)
        self.assertEqual(reader.bufferSizes[1], 5000)

    @settings(max_examples=100, deadline=None)
    @given(payloads(400), st.lists(st.integers(0, 5000), max_size=10), st.integers(1, 300))
    def test_mixed(self, sent: list[bytes], cuts: list[int], largeFrame: int) -> None:
        """
        Alternating C{feed} and C{receiveBuffer} keeps the order.
        """
        reader = FrameReader(maxFrame=400, largeFrame=largeFrame)
        received: list[bytes] = []
        for index, chunk in enumerate(split(b"".join(frame(p) for p in sent), cuts)):
            if index % 2:
                reader.feed(chunk)
            else:
                for byte in chunk:
                    view = reader.receiveBuffer()
                    view[0] = byte
                    reader.received(1)
            received += drain(reader)
        self.assertEqual(received, sent)

    def test_receivedTooMuch(self) -> None:
        """
        Recording more bytes than the view offered is refused.
        """
        reader = FrameReader(maxFrame=10)
        view = reader.receiveBuffer()
        self.assertRaises(ValueError, reader.received, len(view) + 1)
        self.assertRaises(ValueError, reader.received, -1)


class LimitTests(SynchronousTestCase):
    """
    C{maxFrame}.
    """

    def test_atTheLimit(self) -> None:
        """
        A frame of exactly C{maxFrame} bytes is accepted.
        """
        for largeFrame in (5, 1000):
            reader = FrameReader(maxFrame=100, largeFrame=largeFrame)
            reader.feed(frame(b"m" * 100))
            self.assertEqual(drain(reader), [b"m" * 100])

    def test_pastTheLimitBeforeBuffering(self) -> None:
        """
        A prefix one over C{maxFrame} raises L{FrameTooLarge} as soon as the
        prefix is read, with nothing of the frame buffered, and again on
        every later call.
        """
        for largeFrame in (5, 1000):
            reader = FrameReader(maxFrame=100, largeFrame=largeFrame)
            reader.feed(_PREFIX.pack(101))
            error = self.assertRaises(FrameTooLarge, reader.nextFrame)
            self.assertEqual((error.length, error.limit), (101, 100))
            self.assertEqual(reader.bufferSizes[1], 0)
            self.assertRaises(FrameTooLarge, reader.nextFrame)
            self.assertRaises(FrameTooLarge, reader.feed, b"x")
            self.assertRaises(FrameTooLarge, reader.receiveBuffer)

    def test_earlierFramesFirst(self) -> None:
        """
        Frames before an oversized one come out before the error.
        """
        reader = FrameReader(maxFrame=10)
        reader.feed(frame(b"ok") + _PREFIX.pack(2**32 - 1))
        self.assertEqual(bytes(reader.nextFrame() or b""), b"ok")
        self.assertRaises(FrameTooLarge, reader.nextFrame)

    def test_blockingPath(self) -> None:
        """
        Through C{receiveBuffer}, the error comes once the prefix is in.
        """
        reader = FrameReader(maxFrame=10)
        reader.receiveBuffer()[:4] = _PREFIX.pack(11)
        reader.received(4)
        self.assertRaises(FrameTooLarge, reader.nextFrame)

    def test_raisedLimit(self) -> None:
        """
        A limit raised after a frame applies to the frames fed with it and
        not yet read (the handshake's last frame, then values).
        """
        reader = FrameReader(maxFrame=10)
        reader.feed(frame(b"hello") + frame(b"v" * 50))
        self.assertEqual(bytes(reader.nextFrame() or b""), b"hello")
        reader.maxFrame = 100
        self.assertEqual(drain(reader), [b"v" * 50])

    def test_badArguments(self) -> None:
        """
        A negative limit, or a large-frame threshold under 1, is refused.
        """
        self.assertRaises(ValueError, FrameReader, -1)
        self.assertRaises(ValueError, FrameReader, 10, 0)
        reader = FrameReader(10)
        with self.assertRaises(ValueError):
            reader.maxFrame = -5

    def test_error(self) -> None:
        """
        L{FrameTooLarge} is a L{BufferDataError} that says what happened and
        what to do, and survives copying (and so pickling).
        """
        error = FrameTooLarge(70000, 65536)
        self.assertIsInstance(error, BufferDataError)
        self.assertIn("70000", str(error))
        self.assertIn("65536", str(error))
        self.assertIn("raise this side's maximum buffer size", str(error))
        copied = copy.copy(error)
        self.assertEqual((copied.length, copied.limit, str(copied)), (70000, 65536, str(error)))

    @settings(max_examples=300, deadline=None)
    @given(st.binary(max_size=400), st.lists(st.integers(0, 400), max_size=8))
    def test_garbage(self, data: bytes, cuts: list[int]) -> None:
        """
        Arbitrary bytes give the frames a reference parser finds, then
        L{FrameTooLarge} where it finds an oversized prefix, and nothing
        else.
        """
        expected: list[bytes] = []
        offset, tooLarge = 0, False
        while len(data) - offset >= 4:
            (length,) = _PREFIX.unpack_from(data, offset)
            if length > 64:
                tooLarge = True
                break
            if offset + 4 + length > len(data):
                break
            expected.append(data[offset + 4 : offset + 4 + length])
            offset += 4 + length
        reader = FrameReader(maxFrame=64, largeFrame=16)
        received: list[bytes] = []
        raised = False
        try:
            for chunk in split(data, cuts):
                reader.feed(chunk)
                received += drain(reader)
        except FrameTooLarge:
            raised = True
        self.assertEqual((received, raised), (expected, tooLarge))


class MemoryTests(SynchronousTestCase):
    """
    No buffer larger than needed.
    """

    def test_largeBufferReused(self) -> None:
        """
        Large frames are received into one buffer of exactly the largest
        announced length, reused by the frames that fit in it; the
        small-frame buffer stays at its first size.
        """
        reader = FrameReader(maxFrame=2**24, largeFrame=256 * 1024)
        smallSize = reader.bufferSizes[0]
        for size in (1 << 20, 1 << 20, 300_000, 1 << 20):
            data = frame(bytes([size % 7]) * size)
            for start in range(0, len(data), 65536):
                reader.feed(data[start : start + 65536])
                frames = drain(reader)
            self.assertEqual([len(f) for f in frames], [size])
            self.assertEqual(reader.bufferSizes, (smallSize, 1 << 20))
        reader.releaseBuffers()
        self.assertEqual(reader.bufferSizes, (smallSize, 0))

    def test_smallBufferBounded(self) -> None:
        """
        Small frames split across chunks grow the small-frame buffer no
        further than the largest small frame needs.
        """
        reader = FrameReader(maxFrame=2**20, largeFrame=200_000)
        for size in (150_000, 10, 199_999, 70_000):
            data = frame(b"s" * size)
            for start in range(0, len(data), 1000):
                reader.feed(data[start : start + 1000])
                drain(reader)
            small, large = reader.bufferSizes
            self.assertLessEqual(small, PREFIX_SIZE + 199_999)
            self.assertEqual(large, 0)

    def test_blockingSmallBufferBounded(self) -> None:
        """
        Through C{receiveBuffer}, many frames read at once keep the small
        buffer at most as large as one frame needs.
        """
        reader = FrameReader(maxFrame=2**20, largeFrame=100_000)
        stream = b"".join(frame(bytes([i % 256]) * (i * 997 % 90_000)) for i in range(40))
        sock = FakeSocket(stream, [70_000, 3, 100_000])
        while not sock.exhausted:
            reader.received(sock.recv_into(reader.receiveBuffer()))
            drain(reader)
            self.assertLessEqual(reader.bufferSizes[0], 2 * 100_000)
        self.assertEqual(reader.bufferSizes[1], 0)
