# -*- test-case-name: tests.test_speedups_encode -*-
"""
Tests for the encoder of L{netstructer._speedups}: it returns exactly the
bytes of the reference encoder (L{netstructer.values.Encoder}), or C{None}
for a value it leaves to the reference encoder.
"""

from __future__ import annotations

import collections
import datetime
import gc
import struct
import sys
import tracemalloc
import unittest
from collections.abc import Callable
from functools import partial

import msgpack
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from netstructer.errors import EncodeError
from netstructer.values import (
    EXT_BIGINT,
    EXT_BYTEARRAY,
    EXT_COMPLEX,
    EXT_FROZENSET,
    EXT_SET,
    EXT_TUPLE,
    Encoder,
    Limits,
    decode,
)
from tests.test_values import (
    HASHABLES,
    ORIGINAL_EXAMPLE,
    VALUES,
    Colour,
    Name,
    Point,
    Thing,
    nested,
    sameValue,
)

try:
    from netstructer import _speedups
except ImportError:  # pragma: no cover
    raise unittest.SkipTest("netstructer._speedups is not built") from None

DEFAULT_INT_BYTES = Limits().maxIntBytes
INT_LIMITS = (DEFAULT_INT_BYTES, 9, 16)

_ENCODERS: dict[int, Encoder] = {}


def reference(value: object, maxIntBytes: int = DEFAULT_INT_BYTES) -> bytes | EncodeError:
    """
    Encode a value with the reference encoder.

    @param value: The value.
    @param maxIntBytes: The limit on big integers.
    @return: Its encoding, or the L{EncodeError} the encoder raised.
    """
    encoder = _ENCODERS.get(maxIntBytes)
    if encoder is None:
        encoder = _ENCODERS[maxIntBytes] = Encoder(
            Limits(maxIntBytes=maxIntBytes), accelerated=False
        )
    try:
        return encoder.encode(value)
    except EncodeError as e:
        return e


# Powers of two around which an int changes form: msgpack's int families,
# then every byte count of a big integer up to 130 bytes (fixext 16 and ext
# 8 included), and the limits of INT_LIMITS.
_EDGE_BITS = sorted(
    {0, 4, 5, 6, 7, 8, 15, 16, 31, 32, 63, 64}
    | {8 * size - 1 for size in range(1, 131)}
    | {8 * size for size in range(1, 131)}
    | {8 * limit + shift for limit in INT_LIMITS for shift in (-1, 0, 1)}
)
EDGE_INTS = sorted(
    {sign * 2**bits + delta for bits in _EDGE_BITS for sign in (1, -1) for delta in range(-2, 3)}
)
INTS = (
    st.sampled_from(EDGE_INTS)
    | st.integers()
    | st.integers(min_value=-(2**64), max_value=2**64)
    | st.integers(min_value=-(2**8300), max_value=2**8300)
)

# Every float64 bit pattern: signalling and quiet nans with any payload,
# both zeros and infinities, subnormals.
FLOAT_BITS = st.integers(min_value=0, max_value=2**64 - 1).map(
    lambda bits: struct.unpack(">d", bits.to_bytes(8, "big"))[0]
)
FLOATS = st.floats() | FLOAT_BITS | st.sampled_from([0.0, -0.0, float("inf"), -float("inf")])
COMPLEXES = st.builds(complex, FLOATS, FLOATS) | st.complex_numbers()

# Lengths around which a str, bin, ext or container header changes form.
EDGE_LENGTHS = [0, 1, 2, 3, 4, 5, 7, 8, 9, 14, 15, 16, 17, 31, 32, 33, 255, 256, 257]
EDGE_LENGTHS += [65535, 65536, 65537]
LENGTHS = st.sampled_from(EDGE_LENGTHS) | st.integers(min_value=0, max_value=300)


def _textOfSize(args: tuple[int, str]) -> str:
    """
    A str of exactly the given UTF-8 length: a start, padded with C{x}.

    @param args: The UTF-8 length, and a start (cut if it is too long).
    @return: The str.
    """
    size, start = args
    while len(start.encode()) > size:
        start = start[:-1]
    return start + "x" * (size - len(start.encode()))


def _bytesOfSize(args: tuple[int, bytes]) -> bytes:
    """
    Bytes of exactly the given length: a start, padded with its last byte.

    @param args: The length, and a start.
    @return: The bytes.
    """
    size, start = args
    return (start + start[-1:] * size + b"\x00" * size)[:size]


SIZED_TEXT = st.tuples(LENGTHS, st.text(max_size=4)).map(_textOfSize)
SIZED_BYTES = st.tuples(LENGTHS, st.binary(max_size=4)).map(_bytesOfSize)
SIZED_BYTEARRAYS = SIZED_BYTES.map(bytearray)

EDGE_HASHABLE_SCALARS = st.none() | st.booleans() | INTS | FLOATS | COMPLEXES | SIZED_TEXT
EDGE_HASHABLE_SCALARS |= SIZED_BYTES
EDGE_HASHABLES = st.recursive(
    EDGE_HASHABLE_SCALARS | HASHABLES,
    lambda children: (
        st.lists(children, max_size=4).map(tuple) | st.frozensets(children, max_size=4)
    ),
    max_leaves=6,
)
EDGE_VALUES = st.recursive(
    EDGE_HASHABLES | SIZED_BYTEARRAYS | VALUES,
    lambda children: (
        st.lists(children, max_size=5)
        | st.lists(children, max_size=5).map(tuple)
        | st.dictionaries(EDGE_HASHABLES, children, max_size=5)
        | st.sets(EDGE_HASHABLES, max_size=5)
        | st.frozensets(EDGE_HASHABLES, max_size=5)
    ),
    max_leaves=12,
)

SETTINGS = settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def specEncode(value: object, maxIntBytes: int = DEFAULT_INT_BYTES) -> bytes:
    """
    Encode a value by the module docstring's table, by the most direct
    means: msgpack for the scalars it has a family for, the rest by hand.
    Set members go in the set's own iteration order.

    @param value: A value of supported types, with no big int over
        C{maxIntBytes}.
    @param maxIntBytes: The limit on big integers.
    @return: Its encoding.
    """
    kind = type(value)
    if kind is list or kind is tuple or kind is set or kind is frozenset:
        items = list(value)  # type: ignore[call-overload]
        marker = _MARKERS.get(kind, b"")
        count = len(items) + (1 if marker else 0)
        parts = [_containerHeader(count, 0x90), marker]
        for item in items:
            parts.append(specEncode(item, maxIntBytes))
        return b"".join(parts)
    if kind is dict:
        assert isinstance(value, dict)
        parts = [_containerHeader(len(value), 0x80)]
        for key, item in value.items():
            parts.append(specEncode(key, maxIntBytes))
            parts.append(specEncode(item, maxIntBytes))
        return b"".join(parts)
    if kind is bytearray:
        return msgpack.packb(msgpack.ExtType(EXT_BYTEARRAY, bytes(value)))  # type: ignore[arg-type]
    if kind is complex:
        assert isinstance(value, complex)
        payload = struct.pack(">dd", value.real, value.imag)
        return msgpack.packb(msgpack.ExtType(EXT_COMPLEX, payload))
    if kind is int and not -(2**63) <= value < 2**64:  # type: ignore[operator]
        assert isinstance(value, int)
        size = (value if value >= 0 else ~value).bit_length() // 8 + 1
        assert size <= maxIntBytes
        payload = value.to_bytes(size, "big", signed=True)
        return msgpack.packb(msgpack.ExtType(EXT_BIGINT, payload))
    assert kind in (type(None), bool, int, float, str, bytes), kind
    return msgpack.packb(value, use_bin_type=True, strict_types=True)


def _containerHeader(count: int, fixed: int) -> bytes:
    """
    Write an array or map header.

    @param count: How many items or entries.
    @param fixed: The first byte of the fixed form: C{0x90} for an array,
        C{0x80} for a map (whose 16- and 32-bit forms follow the array's).
    @return: The header in its shortest form.
    """
    if count <= 15:
        return bytes([fixed | count])
    first = 0xDC if fixed == 0x90 else 0xDE
    if count <= 0xFFFF:
        return struct.pack(">BH", first, count)
    return struct.pack(">BI", first + 1, count)


_MARKERS = {
    tuple: bytes([0xC7, 0, EXT_TUPLE]),
    set: bytes([0xC7, 0, EXT_SET]),
    frozenset: bytes([0xC7, 0, EXT_FROZENSET]),
}


def _parts(value: object) -> list[object]:
    """
    List a value and every object inside it.

    @param value: An acyclic value.
    @return: The value and every key, value, item and member in it.
    """
    parts = [value]
    index = 0
    while index < len(parts):
        part = parts[index]
        index += 1
        if type(part) is dict:
            parts.extend(part.keys())
            parts.extend(part.values())
        elif type(part) in (list, tuple, set, frozenset):
            parts.extend(part)  # type: ignore[call-overload]
    return parts


class _Checks(SynchronousTestCase):
    """
    Assertions comparing the C encoder with the reference encoder.
    """

    def assertSameEncoding(self, value: object, maxIntBytes: int = DEFAULT_INT_BYTES) -> bytes:
        """
        Assert that the C encoder gives the reference encoder's bytes.

        @param value: A value the reference encoder encodes.
        @param maxIntBytes: The limit on big integers.
        @return: The encoding.
        """
        expected = reference(value, maxIntBytes)
        assert isinstance(expected, bytes), expected
        self.assertEqual(_speedups.encode(value, maxIntBytes), expected)
        self.assertEqual(specEncode(value, maxIntBytes), expected)
        return expected

    def assertAgrees(self, value: object, maxIntBytes: int) -> None:
        """
        Assert that the C encoder writes a value as the reference encoder
        does, or declines exactly the values the reference encoder refuses.

        @param value: A value made of supported types, without cycles,
            nested at most 512 deep.
        @param maxIntBytes: The limit on big integers.
        """
        expected = reference(value, maxIntBytes)
        encoded = _speedups.encode(value, maxIntBytes)
        if isinstance(expected, EncodeError):
            self.assertIsNone(encoded, f"{expected}")
            return
        self.assertIsNotNone(encoded, "declined a value the reference encodes")
        self.assertEqual(encoded, specEncode(value, maxIntBytes))
        self.assertEqual(encoded, expected)

    def assertDeclined(self, value: object, maxIntBytes: int = DEFAULT_INT_BYTES) -> None:
        """
        Assert that the C encoder declines a value, and that the reference
        encoder handles it: encodes it, or raises L{EncodeError}.

        @param value: The value.
        @param maxIntBytes: The limit on big integers.
        """
        self.assertIsNone(_speedups.encode(value, maxIntBytes))
        self.assertIsInstance(reference(value, maxIntBytes), bytes | EncodeError)


class GeneratedValueTests(_Checks):
    """
    Generated values are encoded exactly as the reference encoder encodes
    them, under every limit on big integers.
    """

    @SETTINGS
    @given(VALUES)
    def test_values(self, value: object) -> None:
        """
        The strategy of the reference encoder's own tests.
        """
        for maxIntBytes in INT_LIMITS:
            self.assertAgrees(value, maxIntBytes)

    @SETTINGS
    @given(EDGE_VALUES)
    def test_edgeValues(self, value: object) -> None:
        """
        Values made of scalars at the edges of their encodings (big ints
        near every byte count, every float bit pattern, str, bytes and
        bytearrays across header lengths), nested in every container, with
        tuple and frozenset keys and members.
        """
        for maxIntBytes in INT_LIMITS:
            self.assertAgrees(value, maxIntBytes)

    @SETTINGS
    @given(st.lists(EDGE_VALUES, max_size=20))
    def test_manyItems(self, items: list[object]) -> None:
        """
        A list of generated values, and the same items in each other
        container that takes them, with a value inside a dict.
        """
        self.assertAgrees(items, DEFAULT_INT_BYTES)
        self.assertAgrees(tuple(items), DEFAULT_INT_BYTES)
        self.assertAgrees({index: item for index, item in enumerate(items)}, DEFAULT_INT_BYTES)

    @SETTINGS
    @given(st.sets(EDGE_HASHABLES, max_size=20))
    def test_setsAndKeys(self, members: set[object]) -> None:
        """
        Hashable values as set and frozenset members, and as dict keys.
        """
        for maxIntBytes in INT_LIMITS:
            self.assertAgrees(members, maxIntBytes)
            self.assertAgrees(frozenset(members), maxIntBytes)
            self.assertAgrees({key: [bytearray(b"v")] for key in members}, maxIntBytes)

    @SETTINGS
    @given(st.sampled_from(EDGE_INTS) | INTS)
    def test_ints(self, number: int) -> None:
        """
        Every int fits the smallest msgpack int family that holds it, or
        is a big int in the fewest bytes; one over the limit is declined,
        and the reference refuses it.
        """
        for maxIntBytes in INT_LIMITS:
            self.assertAgrees(number, maxIntBytes)
            self.assertAgrees([number, -number], maxIntBytes)

    @SETTINGS
    @given(FLOATS)
    def test_floats(self, number: float) -> None:
        """
        Floats are encoded bit for bit, nans with their payload.
        """
        encoded = self.assertSameEncoding(number)
        self.assertEqual(encoded, b"\xcb" + struct.pack(">d", number))

    @SETTINGS
    @given(COMPLEXES)
    def test_complex(self, number: complex) -> None:
        """
        Complex numbers are fixext 16 of their two parts, bit for bit.
        """
        encoded = self.assertSameEncoding(number)
        self.assertEqual(
            encoded,
            bytes([0xD8, EXT_COMPLEX]) + struct.pack(">dd", number.real, number.imag),
        )

    @SETTINGS
    @given(SIZED_TEXT | st.text())
    def test_text(self, text: str) -> None:
        """
        Strs of every length around the header boundaries.
        """
        self.assertSameEncoding(text)
        self.assertSameEncoding([text, (text,), {text: text}])

    @SETTINGS
    @given(SIZED_BYTES)
    def test_bytes(self, data: bytes) -> None:
        """
        Bytes and bytearrays of every length around the header boundaries.
        """
        self.assertSameEncoding(data)
        self.assertSameEncoding(bytearray(data))
        self.assertSameEncoding([data, bytearray(data), {data: bytearray(data)}])

    @SETTINGS
    @given(EDGE_VALUES)
    def test_decodes(self, value: object) -> None:
        """
        What the C encoder writes decodes to the same value.
        """
        encoded = _speedups.encode(value, DEFAULT_INT_BYTES)
        if encoded is not None:
            self.assertTrue(sameValue(decode(encoded), value))


class WireFormatTests(_Checks):
    """
    Examples written out byte by byte, and every header boundary.
    """

    def test_originalExample(self) -> None:
        """
        The original package's example, as the module docstring shows it.
        """
        encoded = self.assertSameEncoding(ORIGINAL_EXAMPLE)
        self.assertEqual(
            encoded.hex(" "),
            "95 ac 68 69 20 69 6d 20 68 61 79 74 61 6d cc 80 81 c4 02 67 67 a2 67 67 "
            "95 c7 00 02 01 02 04 06 93 c7 00 01 c2 c3",
        )

    def test_scalars(self) -> None:
        """
        Each scalar type, byte by byte.
        """
        cases: list[tuple[object, str]] = [
            (None, "c0"),
            (False, "c2"),
            (True, "c3"),
            (0, "00"),
            (127, "7f"),
            (128, "cc 80"),
            (255, "cc ff"),
            (256, "cd 01 00"),
            (65536, "ce 00 01 00 00"),
            (2**32, "cf 00 00 00 01 00 00 00 00"),
            (2**64 - 1, "cf ff ff ff ff ff ff ff ff"),
            (-1, "ff"),
            (-32, "e0"),
            (-33, "d0 df"),
            (-128, "d0 80"),
            (-129, "d1 ff 7f"),
            (-32769, "d2 ff ff 7f ff"),
            (-(2**31) - 1, "d3 ff ff ff ff 7f ff ff ff"),
            (-(2**63), "d3 80 00 00 00 00 00 00 00"),
            (2**64, "c7 09 06 01" + " 00" * 8),
            (-(2**63) - 1, "c7 09 06 ff 7f" + " ff" * 7),
            (2**127, "c7 11 06 00 80" + " 00" * 15),
            (2**127 - 1, "d8 06 7f" + " ff" * 15),
            (-(2**127), "d8 06 80" + " 00" * 15),
            (1.5, "cb 3f f8 00 00 00 00 00 00"),
            (-0.0, "cb 80 00 00 00 00 00 00 00"),
            (float("inf"), "cb 7f f0 00 00 00 00 00 00"),
            (1 - 2j, "d8 05 3f f0 00 00 00 00 00 00 c0 00 00 00 00 00 00 00"),
            ("", "a0"),
            ("é", "a2 c3 a9"),
            (b"", "c4 00"),
            (bytearray(), "c7 00 04"),
            (bytearray(b"a"), "d4 04 61"),
            (bytearray(b"ab"), "d5 04 61 62"),
            (bytearray(b"abc"), "c7 03 04 61 62 63"),
            (bytearray(b"abcd"), "d6 04 61 62 63 64"),
            (bytearray(8), "d7 04" + " 00" * 8),
            (bytearray(16), "d8 04" + " 00" * 16),
        ]
        for value, expected in cases:
            self.assertEqual(_speedups.encode(value, DEFAULT_INT_BYTES).hex(" "), expected)
            self.assertSameEncoding(value)

    def test_containers(self) -> None:
        """
        Each container type, byte by byte.
        """
        cases: list[tuple[object, str]] = [
            ([], "90"),
            ((), "91 c7 00 01"),
            ((1, 2), "93 c7 00 01 01 02"),
            (set(), "91 c7 00 02"),
            ({1}, "92 c7 00 02 01"),
            (frozenset(), "91 c7 00 03"),
            (frozenset({None}), "92 c7 00 03 c0"),
            ({}, "80"),
            ({b"k": 1.5}, "81 c4 01 6b cb 3f f8 00 00 00 00 00 00"),
            ({(1,): frozenset()}, "81 92 c7 00 01 01 91 c7 00 03"),
            ([bytearray(b"x"), [bytearray()]], "92 d4 04 78 91 c7 00 04"),
        ]
        for value, expected in cases:
            self.assertEqual(_speedups.encode(value, DEFAULT_INT_BYTES).hex(" "), expected)
            self.assertSameEncoding(value)
        self.assertEqual(EXT_TUPLE, 1)
        self.assertEqual((EXT_SET, EXT_FROZENSET, EXT_BYTEARRAY, EXT_BIGINT), (2, 3, 4, 6))

    def test_edgeInts(self) -> None:
        """
        Every int near a boundary, under each limit on big integers.
        """
        for maxIntBytes in INT_LIMITS:
            for number in EDGE_INTS:
                self.assertAgrees(number, maxIntBytes)

    def test_bigIntLimit(self) -> None:
        """
        A big int of exactly maxIntBytes bytes is encoded; one a byte longer
        is declined, and the reference encoder refuses it.
        """
        for maxIntBytes in INT_LIMITS:
            bits = 8 * maxIntBytes - 1
            for fits in (2**bits - 1, -(2**bits)):
                self.assertSameEncoding(fits, maxIntBytes)
            for over in (2**bits, -(2**bits) - 1):
                self.assertIsNone(_speedups.encode(over, maxIntBytes))
                self.assertIsNone(_speedups.encode([1, {2: over}], maxIntBytes))
                self.assertIsInstance(reference(over, maxIntBytes), EncodeError)

    def test_bigIntHeaders(self) -> None:
        """
        A big int long enough for ext 16 (and one for ext 32, under a high
        limit) is encoded as the reference encoder does.
        """
        for number in (2**2047, -(2**2047) - 1, 2**8183 - 1):
            self.assertSameEncoding(number)
        self.assertSameEncoding(2**600000, 80000)
        self.assertSameEncoding(-(2**600000), 80000)

    def test_lengths(self) -> None:
        """
        str, bytes and bytearray of each length around a header boundary,
        in ASCII and not, and containers of each count around one.
        """
        for size in EDGE_LENGTHS:
            for value in (
                "x" * size,
                ("é" * size)[: size // 2] + "x" * (size % 2),
                "€" * size,
                b"x" * size,
                bytearray(b"x" * size),
            ):
                self.assertSameEncoding(value)
            for count in (size, size - 1) if size else (0,):
                self.assertSameEncoding([None] * count)
                self.assertSameEncoding((None,) * count)
                self.assertSameEncoding(set(range(count)))
                self.assertSameEncoding(frozenset(range(count)))
                self.assertSameEncoding(dict.fromkeys(range(count)))

    def test_outputGrowth(self) -> None:
        """
        Outputs of every size up to a few kilobytes, grown in small steps
        from the first buffer, and a large value after small ones.
        """
        value: list[object] = []
        for index in range(600):
            value.append(index * 1000)
            value.append(bytearray(index % 7))
            self.assertSameEncoding(value)
        self.assertSameEncoding([b"x" * 100, b"y" * 1_000_000, "z" * 300, bytearray(70000)])

    def test_depthLimit(self) -> None:
        """
        Values nested 512 deep, in each container, are encoded; 513 deep are
        declined, though the reference encoder encodes them.
        """
        makers: list[Callable[[object], object]] = [
            lambda inner: [inner],
            lambda inner: (inner,),
            lambda inner: {1: inner},
            lambda inner: frozenset({inner}),
            lambda inner: {b"k": inner},
        ]
        for make in makers:
            value: object = None
            for _ in range(512):
                value = make(value)
            self.assertSameEncoding(value)
            deeper = make(value)
            self.assertDeclined(deeper)
            self.assertIsInstance(reference(deeper), bytes)
        # A set nested in 511 frozensets, and 512 of them in one.
        members: object = None
        for _ in range(511):
            members = frozenset({members})
        self.assertSameEncoding({members})
        self.assertDeclined({frozenset({members})})

    def test_scalarsAtDepthLimit(self) -> None:
        """
        Scalars do not count as a level: a list 512 deep holding a scalar
        is encoded; a container inside it is declined.
        """
        self.assertSameEncoding(nested(512, bytearray(b"x")))
        self.assertSameEncoding(nested(511, [2**100]))
        self.assertDeclined(nested(512, []))
        self.assertDeclined(nested(512, ()))
        self.assertDeclined(nested(511, {1: {}}))
        self.assertDeclined(nested(511, {(1, ((),)): 1}))


class DeclinedTests(_Checks):
    """
    The values the C encoder declines, each of which the reference encoder
    handles: it encodes them, or raises L{EncodeError} naming the problem.
    """

    def assertRefused(self, value: object, maxIntBytes: int = DEFAULT_INT_BYTES) -> None:
        """
        Assert that the C encoder declines a value the reference refuses.

        @param value: The value.
        @param maxIntBytes: The limit on big integers.
        """
        self.assertDeclined(value, maxIntBytes)
        self.assertIsInstance(reference(value, maxIntBytes), EncodeError)

    def test_memoryview(self) -> None:
        """
        A memoryview, anywhere, is declined: the reference encoder encodes
        it as bytes.
        """
        for value in (
            memoryview(b"abc"),
            [1, memoryview(b"")],
            {b"k": [memoryview(bytearray(b"x"))]},
            (1, memoryview(b"x" * 5000)),
        ):
            self.assertDeclined(value)
            self.assertIsInstance(reference(value), bytes)

    def test_subclasses(self) -> None:
        """
        Subclasses of supported types are declined, and refused by the
        reference encoder.
        """

        class Number(float):
            """
            A float subclass.
            """

        for value in (
            Colour.RED,
            [Colour.RED],
            collections.OrderedDict(a=1),
            collections.defaultdict(list),
            Name("x"),
            {Name("x"): 1},
            Point(1),
            [1, (2, Point(3))],
            Number(1.0),
            collections.Counter("ab"),
        ):
            self.assertRefused(value)

    def test_otherTypes(self) -> None:
        """
        Types outside the supported ones are declined, and refused by the
        reference encoder.
        """
        for value in (
            datetime.datetime(2020, 1, 1),
            [datetime.date(2020, 1, 1)],
            Thing(),
            {1: Thing()},
            object,
            range(3),
            iter([]),
            {frozenset({1}): [1, 2, Ellipsis]},
        ):
            self.assertRefused(value)

    def test_loneSurrogate(self) -> None:
        """
        A str that is not valid Unicode is declined (with no exception left
        behind), and refused by the reference encoder.
        """
        for value in ("\ud800", ["ok", "a\udfffb"], {"\udc80": 1}, {1: {("\ud800",)}}):
            self.assertRefused(value)
        self.assertSameEncoding(["ok", "fine \U0001f600"])

    def test_bigIntOverLimit(self) -> None:
        """
        A big int longer than maxIntBytes is declined, alone or nested, and
        refused by the reference encoder.
        """
        for number in (2 ** (8 * 1024), -(2 ** (8 * 1024)) - 1, 10**5000):
            self.assertRefused(number)
            self.assertRefused([1, 2, {3: (number,)}])
        self.assertRefused(2**100, 9)
        self.assertRefused(frozenset({-(2**200)}), 16)

    def test_cycles(self) -> None:
        """
        A value that contains itself is declined (at the depth limit), and
        refused by the reference encoder.
        """
        items: list[object] = [1]
        items.append(items)
        mapping: dict[object, object] = {}
        mapping["self"] = [mapping]
        self.assertRefused(items)
        self.assertRefused(mapping)
        self.assertRefused((items,))

    def test_declinedAfterGrowth(self) -> None:
        """
        A value declined after the output outgrew its first buffer leaks
        nothing.
        """
        value = [b"x" * 100_000, "y" * 5000, memoryview(b"")]
        self.assertDeclined(value)
        _speedups.encode(value, DEFAULT_INT_BYTES)
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            for _ in range(50):
                self.assertIsNone(_speedups.encode(value, DEFAULT_INT_BYTES))
            after = tracemalloc.get_traced_memory()[0]
        finally:
            tracemalloc.stop()
        self.assertLess(after - before, 100_000)


class ReferenceTests(SynchronousTestCase):
    """
    The C encoder holds no reference it does not release.
    """

    @SETTINGS
    @given(EDGE_VALUES)
    def test_noReferencesKept(self, value: object) -> None:
        """
        Encoding a value, or declining it, leaves the reference counts of
        the value and of each part of it as they were.
        """
        # A memoryview last makes the encoder walk everything, then decline.
        for whole in (value, [value, memoryview(b"")]):
            # Leave out the objects the interpreter shares (small ints may
            # be the counts themselves).
            parts = [
                part
                for part in _parts(whole)
                if not any(part is shared for shared in (None, True, False))
                and not (type(part) is int and -5 <= part <= 256)
            ]
            before = [sys.getrefcount(part) for part in parts]
            for maxIntBytes in INT_LIMITS:
                _speedups.encode(whole, maxIntBytes)
            self.assertEqual([sys.getrefcount(part) for part in parts], before)


class FinalizerTests(SynchronousTestCase):
    """
    A finalizer that the garbage collector runs during encoding (iterating a
    set allocates an iterator, which may start a collection) and that
    changes the value being encoded cannot make the encoder read freed
    memory or write a wrong encoding.
    """

    def encodeWithTrap(
        self, value: object, change: Callable[[], object], allocations: int = 1
    ) -> bytes | None:
        """
        Encode a value with a collection due at a given allocation of a
        tracked object (on CPython 3.11 and older, which collect right
        there), and garbage waiting whose finalizer changes the value.

        @param value: The value.
        @param change: What the finalizer does.
        @param allocations: Which allocation starts the collection.
        @return: What the C encoder returned.
        """
        ran: list[bool] = []

        class Trap:
            """
            Garbage in a cycle, with a finalizer.
            """

            def __del__(self) -> None:
                ran.append(True)
                change()

        enabled = gc.isenabled()
        threshold = gc.get_threshold()
        gc.collect()
        gc.disable()
        try:
            trap = Trap()
            trap.cycle = trap  # type: ignore[attr-defined]
            del trap
            # A collection starts when the count of young objects goes over
            # the threshold.
            gc.set_threshold(max(1, gc.get_count()[0] + allocations - 1))
            gc.enable()
            result = _speedups.encode(value, DEFAULT_INT_BYTES)
        finally:
            gc.set_threshold(*threshold)
            if not enabled:  # pragma: no cover
                gc.disable()
        gc.collect()
        self.assertEqual(ran, [True])
        return result

    def assertSafe(self, build: Callable[[], object], change: Callable[[object], object]) -> None:
        """
        Assert that a value changed by a finalizer during encoding, at any of
        its first allocations of tracked objects, is declined or encoded as
        it was before or after the change.

        @param build: Makes the value, the same each time.
        @param change: Changes it.
        """
        for allocations in range(1, 17):
            value = build()
            result = self.encodeWithTrap(value, partial(change, value), allocations)
            self.assertNotEqual(value, build())
            self.assertIn(result, (None, reference(build()), reference(value)))

    def test_listCleared(self) -> None:
        """
        A list emptied while its items are encoded.
        """
        self.assertSafe(
            lambda: [frozenset({1}), [b"x" * 10, {2}], frozenset({3}), "three", 4],
            lambda value: value.clear(),  # type: ignore[attr-defined]
        )

    def test_dictCleared(self) -> None:
        """
        A dict emptied while a key is encoded: its value is still held.
        """
        self.assertSafe(
            lambda: {
                frozenset({1}): ["payload" * 3, bytearray(b"b")],
                frozenset({2}): {3},
                4: frozenset({5}),
            },
            lambda value: value.clear(),  # type: ignore[attr-defined]
        )

    def test_setChanged(self) -> None:
        """
        A set that changes size while its members are encoded.
        """
        self.assertSafe(
            lambda: {frozenset({1}), frozenset({2}), 3, frozenset({4})},
            lambda value: value.update({7, 8, 9, 10}),  # type: ignore[attr-defined]
        )

    def test_nestedListChanged(self) -> None:
        """
        A list inside the value that loses items while they are encoded.
        """
        self.assertSafe(
            lambda: [[frozenset({1}), frozenset({2}), frozenset({3})], {4}],
            lambda value: value[0].pop(),  # type: ignore[index]
        )

    def test_surrogateDropped(self) -> None:
        """
        A str that is not valid Unicode, dropped from its list or dict by a
        finalizer while the encoder makes the exception that says so.
        """
        self.assertSafe(
            lambda: [chr(0xD800) + "item", 2],
            lambda value: value.clear(),  # type: ignore[attr-defined]
        )
        self.assertSafe(
            lambda: {chr(0xD800) + "key": [chr(0xDC00) + "value"], 2: 3},
            lambda value: value.clear(),  # type: ignore[attr-defined]
        )
