# -*- test-case-name: tests.test_streams_wire -*-
"""
Tests for L{netstructer.streams.wire}: each record's layout, and each way a
body can be malformed.
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from netstructer.errors import RemoteProtocolError, StreamProtocolError
from netstructer.streams.wire import (
    MAX_STREAM_SIZE,
    MAX_WINDOW,
    STREAM_ABORT,
    STREAM_ACCEPT,
    STREAM_DATA,
    STREAM_DONE,
    STREAM_END,
    STREAM_OPEN,
    STREAM_WINDOW,
    AbortCode,
    StreamAbort,
    StreamAccept,
    StreamData,
    StreamDone,
    StreamEnd,
    StreamOpen,
    StreamWindow,
    abortBody,
    acceptBody,
    dataHeader,
    doneBody,
    endBody,
    openBody,
    parseRecord,
    recordBody,
    windowBody,
)

DIGEST = bytes(range(32))


class LayoutTests(SynchronousTestCase):
    """
    Each record's body, byte for byte, and back.
    """

    def test_open(self) -> None:
        """
        OPEN: ID, flags, the size only when SIZED, the meta.
        """
        self.assertEqual(openBody(1, b"\xc0"), bytes.fromhex("0000000100c0"))
        self.assertEqual(
            openBody(3, b"\xa1x", 5, resume=True), bytes.fromhex("0000000303 0000000000000005 a178")
        )
        self.assertEqual(
            parseRecord(STREAM_OPEN, openBody(3, b"\xa1x", 5, True)),
            StreamOpen(3, 5, True, b"\xa1x"),
        )
        self.assertEqual(
            parseRecord(STREAM_OPEN, openBody(2, b"\x01")), StreamOpen(2, None, False, b"\x01")
        )

    def test_accept(self) -> None:
        """
        ACCEPT: ID, window, offset, and a SHA-256 only after an offset.
        """
        self.assertEqual(acceptBody(1, 8), bytes.fromhex("00000001 00000008 0000000000000000"))
        self.assertEqual(
            parseRecord(STREAM_ACCEPT, acceptBody(1, 8, 7, DIGEST)), StreamAccept(1, 8, 7, DIGEST)
        )
        self.assertEqual(parseRecord(STREAM_ACCEPT, acceptBody(1, 0)), StreamAccept(1, 0, 0, None))

    def test_data(self) -> None:
        """
        DATA: ID, offset, payload (a view of the body).
        """
        body = dataHeader(1, 8) + b"orld\n"
        self.assertEqual(body, bytes.fromhex("00000001 0000000000000008 6f726c640a"))
        record = parseRecord(STREAM_DATA, body)
        assert isinstance(record, StreamData)
        self.assertEqual((record.streamID, record.offset, bytes(record.payload)), (1, 8, b"orld\n"))
        self.assertIsInstance(record.payload, memoryview)

    def test_endDoneWindowAbort(self) -> None:
        """
        END and DONE: ID, size, SHA-256; WINDOW: ID, increment; ABORT: ID,
        code, reason.
        """
        self.assertEqual(parseRecord(STREAM_END, endBody(1, 13, DIGEST)), StreamEnd(1, 13, DIGEST))
        self.assertEqual(
            parseRecord(STREAM_DONE, doneBody(1, 13, DIGEST)), StreamDone(1, 13, DIGEST)
        )
        self.assertEqual(windowBody(1, 5), bytes.fromhex("00000001 00000005"))
        self.assertEqual(parseRecord(STREAM_WINDOW, windowBody(1, 5)), StreamWindow(1, 5))
        self.assertEqual(abortBody(2, AbortCode.REFUSED, "no"), bytes.fromhex("00000002 02 6e6f"))
        self.assertEqual(
            parseRecord(STREAM_ABORT, abortBody(2, AbortCode.REFUSED, "no")),
            StreamAbort(2, AbortCode.REFUSED, "no"),
        )

    def test_abortReason(self) -> None:
        """
        A long reason is cut to 256 bytes, never inside a character; an
        unknown code reads as FAILED.
        """
        body = abortBody(1, AbortCode.FAILED, "é" * 200)
        self.assertEqual(len(body), 5 + 256)
        self.assertEqual(parseRecord(STREAM_ABORT, body).reason, "é" * 128)  # type: ignore[union-attr]
        record = parseRecord(STREAM_ABORT, bytes.fromhex("00000001 63"))
        self.assertEqual(record, StreamAbort(1, AbortCode.FAILED, ""))
        self.assertEqual(AbortCode.fromWire(3), AbortCode.TOO_MANY)

    @given(
        st.integers(1, 2**32 - 1),
        st.integers(0, MAX_STREAM_SIZE),
        st.integers(0, MAX_WINDOW),
        st.binary(min_size=1, max_size=40),
    )
    def test_roundTrip(self, streamID: int, size: int, window: int, data: bytes) -> None:
        """
        Every record parses back to itself.
        """
        offset = min(size, MAX_STREAM_SIZE - len(data))
        for record in (
            StreamOpen(streamID, size, True, data),
            StreamOpen(streamID, None, False, data),
            StreamAccept(streamID, window, offset, DIGEST if offset else None),
            StreamEnd(streamID, size, DIGEST),
            StreamDone(streamID, size, DIGEST),
            StreamWindow(streamID, max(window, 1)),
            StreamAbort(streamID, AbortCode.TIMEOUT, data.hex()[:100]),
        ):
            recordType, body = recordBody(record)
            self.assertEqual(parseRecord(recordType, body), record)
        recordType, body = recordBody(StreamData(streamID, offset, memoryview(data)))
        parsed = parseRecord(recordType, body)
        assert isinstance(parsed, StreamData)
        self.assertEqual(
            (parsed.streamID, parsed.offset, bytes(parsed.payload)), (streamID, offset, data)
        )


class MalformedTests(SynchronousTestCase):
    """
    Every malformed body is refused with a L{StreamProtocolError} (a
    L{RemoteProtocolError}) saying what is wrong.
    """

    def assertMalformed(self, recordType: int, body: bytes, problem: str) -> None:
        error = self.assertRaises(StreamProtocolError, parseRecord, recordType, body)
        self.assertIsInstance(error, RemoteProtocolError)
        self.assertIn(problem, str(error))

    def test_cases(self) -> None:
        """
        Each field's rule.
        """
        for recordType, body, problem in [
            (STREAM_OPEN, b"\x00\x00\x00", "too short for a stream ID"),
            (STREAM_OPEN, bytes.fromhex("00000000 00 c0"), "stream ID 0"),
            (STREAM_OPEN, bytes.fromhex("00000001 00"), "too short for an ID, flags and meta"),
            (STREAM_OPEN, bytes.fromhex("00000001 04 c0"), "unknown flags 0x04"),
            (STREAM_OPEN, bytes.fromhex("00000001 01 0000000000000001"), "too short for a size"),
            (STREAM_ACCEPT, bytes.fromhex("00000001 00000001 00000000"), "not 16 or 48"),
            (STREAM_ACCEPT, bytes.fromhex("00000001 80000000 0000000000000000"), "over"),
            (STREAM_ACCEPT, bytes.fromhex("00000001 00000001 0000000000000001"), "SHA-256 must"),
            (STREAM_ACCEPT, acceptBody(1, 1) + DIGEST, "SHA-256 must"),
            (STREAM_DATA, dataHeader(1, 0), "no payload"),
            (STREAM_DATA, bytes.fromhex("00000001 ffffffffffffffff 00"), "past the largest"),
            (STREAM_END, endBody(1, 0, DIGEST)[:-1], "43 bytes, not 44"),
            (STREAM_DONE, doneBody(1, 0, DIGEST) + b"\x00", "45 bytes, not 44"),
            (STREAM_WINDOW, bytes.fromhex("00000001 00000000"), "an increment of 0"),
            (STREAM_WINDOW, bytes.fromhex("00000001 80000000"), "an increment of 2147483648"),
            (STREAM_WINDOW, bytes.fromhex("00000001 0000000100"), "9 bytes, not 8"),
            (STREAM_ABORT, bytes.fromhex("00000001"), "4 bytes, not 5 to 261"),
            (STREAM_ABORT, bytes.fromhex("00000001 01") + b"x" * 257, "262 bytes"),
            (STREAM_ABORT, bytes.fromhex("00000001 01 ff"), "not UTF-8"),
            (0x27, bytes(8), "streams do not use"),
            (0x10, bytes(8), "streams do not use"),
        ]:
            with self.subTest(recordType=recordType, body=body.hex()):
                self.assertMalformed(recordType, body, problem)

    def test_serializersCheck(self) -> None:
        """
        The serializers refuse what no record may hold.
        """
        for call in (
            lambda: openBody(0, b"\xc0"),
            lambda: openBody(2**32, b"\xc0"),
            lambda: openBody(1, b""),
            lambda: openBody(1, b"\xc0", size=-1),
            lambda: acceptBody(1, MAX_WINDOW + 1),
            lambda: acceptBody(1, 1, 5),
            lambda: acceptBody(1, 1, 0, DIGEST),
            lambda: acceptBody(1, 1, 5, b"short"),
            lambda: dataHeader(1, MAX_STREAM_SIZE + 1),
            lambda: endBody(1, 0, b""),
            lambda: windowBody(1, 0),
            lambda: windowBody(1, MAX_WINDOW + 1),
        ):
            self.assertRaises(ValueError, call)
