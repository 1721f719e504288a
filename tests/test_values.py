# -*- test-case-name: tests.test_values -*-
"""
Tests for L{netstructer.values}, the safe value codec.
"""

from __future__ import annotations

import collections
import datetime
import enum
import math
import struct
import tracemalloc
from dataclasses import FrozenInstanceError
from typing import NamedTuple

import msgpack
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from netstructer import values
from netstructer.errors import DecodeError, EncodeError, RemoteProtocolError
from netstructer.values import (
    DEFAULT_LIMITS,
    EXT_BIGINT,
    EXT_BYTEARRAY,
    EXT_COMPLEX,
    EXT_FROZENSET,
    EXT_SET,
    EXT_TUPLE,
    Decoder,
    Encoder,
    Limits,
    decode,
    encode,
)

ORIGINAL_EXAMPLE: list[object] = ["hi im haytam", 128, {b"gg": "gg"}, {1, 2, 6, 4}, (False, True)]


def sameValue(a: object, b: object) -> bool:
    """
    Compare two values exactly: same types at every level, floats equal bit
    for bit in sign (so C{-0.0} differs from C{0.0}), and nan equal to nan.

    @param a: One value.
    @param b: The other.
    @return: Whether they are the same.
    """
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        assert isinstance(b, float)
        if math.isnan(a):
            return math.isnan(b)
        return a == b and math.copysign(1.0, a) == math.copysign(1.0, b)
    if isinstance(a, complex):
        assert isinstance(b, complex)
        return sameValue(a.real, b.real) and sameValue(a.imag, b.imag)
    if isinstance(a, list | tuple):
        assert isinstance(b, list | tuple)
        return len(a) == len(b) and all(map(sameValue, a, b))
    if isinstance(a, dict):
        assert isinstance(b, dict)
        return len(a) == len(b) and all(
            sameValue(ka, kb) and sameValue(va, vb)
            for (ka, va), (kb, vb) in zip(a.items(), b.items(), strict=True)
        )
    if isinstance(a, set | frozenset):
        assert isinstance(b, set | frozenset)
        if len(a) != len(b):
            return False
        unmatched = list(b)
        for member in a:
            for index, candidate in enumerate(unmatched):
                if sameValue(member, candidate):
                    del unmatched[index]
                    break
            else:
                return False
        return True
    return a == b


ALLOWED_TYPES = frozenset(
    {type(None), bool, int, float, complex, str, bytes, bytearray}
    | {list, tuple, dict, set, frozenset}
)


def onlyAllowedTypes(value: object) -> bool:
    """
    Say whether a value is made of the supported types only.

    @param value: A decoded value.
    @return: Whether every part of it has a supported type.
    """
    stack = [value]
    while stack:
        item = stack.pop()
        if type(item) not in ALLOWED_TYPES:
            return False
        if isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list | tuple | set | frozenset):
            stack.extend(item)
    return True


FLOATS = st.floats(allow_nan=True, allow_infinity=True)
INTS = st.integers() | st.integers(min_value=-(2**500), max_value=2**500)
HASHABLE_SCALARS = (
    st.none()
    | st.booleans()
    | INTS
    | FLOATS
    | st.complex_numbers(allow_nan=True, allow_infinity=True)
    | st.text()
    | st.binary()
)
HASHABLES = st.recursive(
    HASHABLE_SCALARS,
    lambda children: (
        st.lists(children, max_size=4).map(tuple) | st.frozensets(children, max_size=4)
    ),
    max_leaves=8,
)
SCALARS = HASHABLE_SCALARS | st.binary().map(bytearray)
VALUES = st.recursive(
    SCALARS | HASHABLES,
    lambda children: (
        st.lists(children, max_size=5)
        | st.lists(children, max_size=5).map(tuple)
        | st.dictionaries(HASHABLES, children, max_size=5)
        | st.sets(HASHABLES, max_size=5)
        | st.frozensets(HASHABLES, max_size=5)
    ),
    max_leaves=25,
)


def nested(depth: int, innermost: object = None) -> object:
    """
    Build lists nested C{depth} deep, without recursion.

    @param depth: How many lists.
    @param innermost: What the innermost list holds.
    @return: C{[[...[innermost]...]]}.
    """
    value: object = innermost
    for _ in range(depth):
        value = [value]
    return value


class RoundTripTests(SynchronousTestCase):
    """
    Values come back equal and of exactly the same types at every level.
    """

    def assertRoundTrips(self, value: object) -> bytes:
        """
        Assert that C{value} round trips through every way of encoding and
        decoding it.

        @param value: The value.
        @return: Its encoding.
        """
        encoded = encode(value)
        self.assertEqual(Encoder().encode(value), encoded)
        for decoded in (
            decode(encoded),
            Decoder().decode(encoded),
            decode(memoryview(b"x" + encoded)[1:]),
            decode(bytearray(encoded)),
        ):
            self.assertTrue(sameValue(value, decoded), f"{value!r} came back as {decoded!r}")
        return encoded

    def test_originalExample(self) -> None:
        """
        The original package's example comes back equal, with the same types
        at every level, and is encoded as the module docstring shows.
        """
        encoded = self.assertRoundTrips(ORIGINAL_EXAMPLE)
        self.assertEqual(
            encoded.hex(" "),
            "95 ac 68 69 20 69 6d 20 68 61 79 74 61 6d cc 80 81 c4 02 67 67 a2 67 67 "
            "95 c7 00 02 01 02 04 06 93 c7 00 01 c2 c3",
        )
        decoded = decode(encoded)
        assert isinstance(decoded, list)
        self.assertEqual(decoded, ORIGINAL_EXAMPLE)
        self.assertEqual([type(item) for item in decoded], [str, int, dict, set, tuple])
        self.assertEqual([type(key) for key in decoded[2]], [bytes])
        self.assertEqual({type(member) for member in decoded[3]}, {int})
        self.assertEqual([type(item) for item in decoded[4]], [bool, bool])

    @settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
    @given(VALUES)
    def test_anyValue(self, value: object) -> None:
        """
        Any value made of the supported types, nested freely, round trips.
        """
        self.assertRoundTrips(value)

    @settings(max_examples=200)
    @given(st.dictionaries(HASHABLES, SCALARS, max_size=8))
    def test_anyKeys(self, value: dict[object, object]) -> None:
        """
        Dict keys of every hashable supported type round trip, in order.
        """
        self.assertRoundTrips(value)

    def test_scalars(self) -> None:
        """
        Edge values of every scalar type round trip.
        """
        for value in [
            None,
            True,
            False,
            0,
            -1,
            2**63 - 1,
            -(2**63),
            2**64 - 1,
            2**64,
            -(2**63) - 1,
            2**127,
            -(2**127),
            2**8183,
            -(2**8183),
            0.0,
            -0.0,
            math.inf,
            -math.inf,
            math.nan,
            5e-324,
            complex(-0.0, -0.0),
            complex(math.nan, math.inf),
            "",
            "\x00\U0010ffff",
            b"",
            bytes(range(256)),
            bytearray(),
            bytearray(b"\x00\xff"),
        ]:
            self.assertRoundTrips(value)

    def test_containers(self) -> None:
        """
        Empty and nested containers of every kind, and keys and members of
        every hashable kind, round trip.
        """
        for value in [
            [],
            (),
            {},
            set(),
            frozenset(),
            [[], (), {}, set(), frozenset()],
            ((),),
            {(1, (2, b"x")): frozenset({(), frozenset({1})})},
            {frozenset({1, 2}): [bytearray(b"a")], b"k": 1, 1: 2, False: 3.5, None: 0},
            {1.5: 1, -0.0: 2, math.inf: 3, complex(1, 2): 4, 2**100: 5},
            {(1, 2), frozenset({"a"}), b"x", 3, None},
            [(1, [2, (3, {4: (5,)})])],
            nested(60, (bytearray(b"deep"),)),
        ]:
            self.assertRoundTrips(value)

    def test_bytearrayAnywhere(self) -> None:
        """
        A C{bytearray} comes back as one wherever it is: in short and long
        lists, tuples and dict values, beside small items or large ones.
        """
        found = bytearray(b"found")
        for value in [
            [found],
            [1] * 20 + [(2, [found])],
            [b"x"] * 20 + [{"k": (found,)}],
            [b"y" * 1000] * 20 + [[found]],
            (*range(30), found),
            {str(i): i for i in range(30)} | {"last": [found]},
            {"big": b"z" * 100_000, "items": [0] * 17 + [found]},
            [[1] * 17, (2,) * 17, {"a": (1, 2)}, frozenset({b"m"}), found],
            [{1, 2}, frozenset({(b"k",)}), {b"k": ({"v": [found]},)}],
            ("s" * 300, {"k": [{"d": found}]}),
            ["t" * 1000, bytearray(b"u" * 300)],
            {"v": bytearray(b"w" * 70_000)},
            bytearray(b"x" * 300),
        ]:
            self.assertRoundTrips(value)
        for value in [[1] * 20, [b"x"] * 20 + [(1, 2)], [[b"q"]] * 20, {"a": [b"b"] * 20}]:
            self.assertRoundTrips(value)

    def test_bytesNotBytearray(self) -> None:
        """
        C{bytes} stays C{bytes} beside C{bytearray}s and in outputs long and
        short, whether or not a bin header byte appears in the encoding
        (as a header, or only inside some payload), and a value without a
        bytearray is encoded without the extension.
        """
        for value in [
            [b"a", bytearray(b"b"), {b"c": b"d"}, (b"e", bytearray(b"f"))],
            ["\xc4" * 200, b"g" * 300],
            [2**15 + 0xC5, "h" * 1000],
            ["i" * 1000, 0xC6],
            {b"j" * 300: [b"k"] * 40},
        ]:
            encoded = self.assertRoundTrips(value)
            if "bytearray" not in repr(value):
                self.assertEqual(encoded, msgpack.packb(value, use_bin_type=True))

    def test_dictOrder(self) -> None:
        """
        A dict's entries come back in the same order.
        """
        value = {key: key for key in [5, "a", 1, b"z", (0,), -3]}
        decoded = decode(encode(value))
        assert isinstance(decoded, dict)
        self.assertEqual(list(decoded), list(value))

    def test_memoryview(self) -> None:
        """
        A C{memoryview} is encoded as the bytes it shows and so decodes as
        bytes.
        """
        view = memoryview(b"abcdef")[1:4]
        self.assertEqual(decode(encode([view, {"k": view}])), [b"bcd", {"k": b"bcd"}])
        strided = memoryview(b"abcdef")[::2]
        self.assertEqual(decode(encode([strided])), [b"ace"])
        writable = memoryview(bytearray(b"w"))
        found = bytearray(b"f")
        for value, expected in [
            ([1] * 20 + [writable], [1] * 20 + [b"w"]),
            ([1] * 20 + [writable, found], [1] * 20 + [b"w", found]),
            ({memoryview(b"k"): [strided, found]}, {b"k": [b"ace", found]}),
        ]:
            self.assertTrue(sameValue(decode(encode(value)), expected))
            self.assertTrue(sameValue(decode(Encoder().encode(value)), expected))

    def test_bigIntLimit(self) -> None:
        """
        A big integer of exactly C{maxIntBytes} bytes round trips; one byte
        more is refused by the encoder, naming its path.
        """
        largest = 2 ** (8 * 1024 - 1) - 1
        self.assertRoundTrips([largest, -largest - 1])
        error = self.assertRaises(EncodeError, encode, {"n": [largest + 1]})
        self.assertEqual(error.path, "value['n'][0]")
        self.assertIn("maxIntBytes=1024", str(error))
        error = self.assertRaises(EncodeError, Encoder().encode, [-largest - 2])
        self.assertEqual(error.path, "value[0]")
        limits = Limits(maxIntBytes=9)
        self.assertEqual(encode(2**64, limits=limits), encode(2**64))
        self.assertRaises(EncodeError, encode, 2**72, limits=limits)
        self.assertRaises(EncodeError, Encoder(limits).encode, 2**72)


class WireFormatTests(SynchronousTestCase):
    """
    The encodings the module docstring documents, byte for byte.
    """

    def test_extensionCodes(self) -> None:
        """
        The extension codes are the documented constants.
        """
        self.assertEqual(
            (EXT_TUPLE, EXT_SET, EXT_FROZENSET, EXT_BYTEARRAY, EXT_COMPLEX, EXT_BIGINT),
            (1, 2, 3, 4, 5, 6),
        )

    def test_encodings(self) -> None:
        """
        Each type is encoded as the module docstring says.
        """
        cases: list[tuple[object, str]] = [
            (None, "c0"),
            (False, "c2"),
            (True, "c3"),
            (1, "01"),
            (-1, "ff"),
            (2**64 - 1, "cf ff ff ff ff ff ff ff ff"),
            (2**64, "c7 09 06 01 00 00 00 00 00 00 00 00"),
            (-(2**63) - 1, "c7 09 06 ff 7f ff ff ff ff ff ff ff"),
            (1.5, "cb 3f f8 00 00 00 00 00 00"),
            (-0.0, "cb 80 00 00 00 00 00 00 00"),
            (complex(1, -2), "d8 05 3f f0 00 00 00 00 00 00 c0 00 00 00 00 00 00 00"),
            ("a", "a1 61"),
            (b"a", "c4 01 61"),
            (bytearray(b"ab"), "d5 04 61 62"),
            (bytearray(), "c7 00 04"),
            ([1], "91 01"),
            ((1, 2), "93 c7 00 01 01 02"),
            ((), "91 c7 00 01"),
            ({1}, "92 c7 00 02 01"),
            (frozenset(), "91 c7 00 03"),
            ({b"k": 1.5}, "81 c4 01 6b cb 3f f8 00 00 00 00 00 00"),
            (["a", {b"k": 1.5}], "92 a1 61 81 c4 01 6b cb 3f f8 00 00 00 00 00 00"),
        ]
        for value, expected in cases:
            self.assertEqual(encode(value).hex(" "), expected, repr(value))


class Thing:
    """
    A class the codec does not support.
    """


class Colour(enum.IntEnum):
    """
    An C{int} subclass.
    """

    RED = 1


class Point(NamedTuple):
    """
    A C{tuple} subclass.
    """

    x: int


class Name(str):
    """
    A C{str} subclass.
    """


class EncodeErrorTests(SynchronousTestCase):
    """
    Values that cannot be encoded raise L{EncodeError} naming the offending
    part's path.
    """

    def assertEncodeError(self, value: object, path: str, fragment: str) -> EncodeError:
        """
        Assert that both L{encode} and L{Encoder.encode} refuse C{value}.

        @param value: The value.
        @param path: The expected path.
        @param fragment: Text the message must hold.
        @return: The error.
        """
        error: EncodeError = self.assertRaises(EncodeError, encode, value)
        self.assertEqual(error.path, path)
        self.assertTrue(str(error).startswith(f"{path}: "), str(error))
        self.assertIn(fragment, str(error))
        encoder = Encoder()
        otherError = self.assertRaises(EncodeError, encoder.encode, value)
        self.assertEqual(str(otherError), str(error))
        self.assertEqual(encoder.encode([1]), b"\x91\x01")
        return error

    def test_isTypeError(self) -> None:
        """
        L{EncodeError} is a C{TypeError}.
        """
        self.assertRaises(TypeError, encode, object())

    def test_datetime(self) -> None:
        """
        A datetime inside a dict inside a list is named with its path.
        """
        error = self.assertEncodeError(
            [1, 2, 3, {"k": datetime.datetime(2020, 1, 1)}],
            "value[3]['k']",
            "cannot encode datetime.datetime",
        )
        self.assertEqual(str(error), "value[3]['k']: cannot encode datetime.datetime")

    def test_function(self) -> None:
        """
        A function is refused.
        """
        self.assertEncodeError({"f": [len]}, "value['f'][0]", "builtin_function_or_method")
        self.assertEncodeError((lambda: None,), "value[0]", "cannot encode function")

    def test_object(self) -> None:
        """
        An instance of an arbitrary class is refused, at the top level too.
        """
        self.assertEncodeError(Thing(), "value", "cannot encode tests.test_values.Thing")

    def test_keysAndMembers(self) -> None:
        """
        Dict keys and set members have paths of their own, and values under
        keys that are not short scalars are named by position.
        """
        self.assertEncodeError({"a": 1, Thing(): 2}, "value{key #1}", "Thing")
        self.assertEncodeError({(1, 2): Thing()}, "value[<key #0>]", "Thing")
        self.assertEncodeError({"x" * 50: Thing()}, "value[<key #0>]", "Thing")
        self.assertEncodeError({b"k": {2: Thing()}}, "value[b'k'][2]", "Thing")
        self.assertEncodeError({(1, Thing())}, "value{#0}[1]", "Thing")
        self.assertEncodeError(frozenset({Colour.RED}), "value{#0}", "Colour")

    def test_cycle(self) -> None:
        """
        A value that contains itself is refused, naming where the cycle
        closes and what it leads back to.
        """
        loop: list[object] = [1]
        loop.append({"again": loop})
        error = self.assertEncodeError(loop, "value[1]['again']", "cycle")
        self.assertIn("is value itself", str(error))
        table: dict[str, object] = {}
        table["self"] = [table]
        self.assertEncodeError([table], "value[0]['self'][0]", "is value[0] itself")

    def test_sharedIsNotACycle(self) -> None:
        """
        The same object twice, without a cycle, is encoded twice.
        """
        shared = [bytearray(b"x")]
        self.assertEqual(decode(encode([shared, shared])), [shared, shared])

    def test_subclasses(self) -> None:
        """
        Subclasses of supported types are refused: they would not come back
        as themselves.
        """
        for value, name in [
            (collections.OrderedDict(a=1), "collections.OrderedDict"),
            (Colour.RED, "tests.test_values.Colour"),
            (Point(1), "tests.test_values.Point"),
            (Name("n"), "tests.test_values.Name"),
            (collections.defaultdict(int), "collections.defaultdict"),
        ]:
            error = self.assertEncodeError([value], "value[0]", name)
            self.assertIn("subclass", str(error))

    def test_loneSurrogate(self) -> None:
        """
        A str that is not valid Unicode is refused.
        """
        self.assertEncodeError(["ok", "\ud800"], "value[1]", "lone surrogate")

    def test_tooDeepForMsgpack(self) -> None:
        """
        A value nested deeper than msgpack can encode is refused, naming the
        level where it goes too deep, without recursing in Python.
        """
        error = self.assertEncodeError(nested(5000), "value" + "[0]" * 1025, "nested deeper")
        self.assertIn("1025", str(error))

    def test_sizeNotChecked(self) -> None:
        """
        Encoding does not check C{maxSize}: the channel checks what it sends
        against the limit its peer announced.
        """
        limits = Limits(maxSize=10)
        self.assertEqual(encode(b"123456789", limits=limits), b"\xc4\x09123456789")


def bigIntExt(number: int) -> bytes:
    """
    Encode an int as a big int extension by hand, whatever its size.

    @param number: The int.
    @return: Its extension, as an ext 8 or ext 16.
    """
    size = (number if number >= 0 else ~number).bit_length() // 8 + 1
    payload = number.to_bytes(size, "big", signed=True)
    if size < 256:
        return bytes([0xC7, size, EXT_BIGINT]) + payload
    return b"\xc8" + struct.pack(">HB", size, EXT_BIGINT) + payload


def arrayHeader(count: int) -> bytes:
    """
    @param count: How many items.
    @return: An array 32 header.
    """
    return b"\xdd" + struct.pack(">I", count)


def mapHeader(count: int) -> bytes:
    """
    @param count: How many entries.
    @return: A map 32 header.
    """
    return b"\xdf" + struct.pack(">I", count)


TUPLE_MARKER = b"\xc7\x00\x01"
SET_MARKER = b"\xc7\x00\x02"


class MalformedInputTests(SynchronousTestCase):
    """
    Malformed input raises L{DecodeError} and nothing else.
    """

    def assertDecodeError(
        self, data: bytes, fragment: str, limits: Limits = DEFAULT_LIMITS
    ) -> DecodeError:
        """
        Assert that L{decode} and a reused L{Decoder} refuse C{data}, and
        that the decoder still works afterwards.

        @param data: The input.
        @param fragment: Text the message must hold.
        @param limits: The limits to decode with.
        @return: The error.
        """
        error: DecodeError = self.assertRaises(DecodeError, decode, data, limits=limits)
        self.assertIn(fragment, str(error))
        decoder = Decoder(limits)
        otherError = self.assertRaises(DecodeError, decoder.decode, data)
        self.assertEqual(str(otherError), str(error))
        for good in ([1], list(range(40))):
            self.assertEqual(decoder.decode(encode(good)), good)
        return error

    def test_decoderReuse(self) -> None:
        """
        One L{Decoder} decodes inputs of every size in turn, before and after
        refusing some.
        """
        decoder = Decoder()
        small = {"k": list(range(40))}
        deep = nested(40, "x" * 40)
        large = [b"x" * 70_000, list(range(100))]
        for value in [small, large, deep, small, large, small, deep]:
            self.assertEqual(decoder.decode(encode(value)), value)
        for bad in [encode(small) + b"\x00", encode(large)[:-1], encode(large) + b"\x00"]:
            self.assertRaises(DecodeError, decoder.decode, bad)
            self.assertEqual(decoder.decode(encode(small)), small)
            self.assertEqual(decoder.decode(encode(deep)), deep)

    def test_errorType(self) -> None:
        """
        L{DecodeError} is a L{RemoteProtocolError} and a C{ValueError}.
        """
        error = self.assertDecodeError(b"", "empty")
        self.assertIsInstance(error, RemoteProtocolError)
        self.assertIsInstance(error, ValueError)

    def test_truncated(self) -> None:
        """
        Every proper prefix of an encoding is refused.
        """
        encoded = encode([ORIGINAL_EXAMPLE, list(range(30)), "x" * 40, 2**70, 1j])
        for end in range(len(encoded)):
            self.assertRaises(DecodeError, decode, encoded[:end])
        self.assertDecodeError(encoded[:-1], "truncated")
        self.assertDecodeError(b"\x92\x01", "truncated")

    def test_trailingBytes(self) -> None:
        """
        Bytes after the end of the value are refused, whatever the input's
        size.
        """
        for value in [1, list(range(100)), b"x" * 70_000]:
            self.assertDecodeError(encode(value) + b"\xc0", "after the end")

    def test_reservedByte(self) -> None:
        """
        The never-used byte C{c1} is refused.
        """
        self.assertDecodeError(b"\xc1", "c1")
        self.assertDecodeError(b"\x92\x01\xc1", "c1")

    def test_invalidUTF8(self) -> None:
        """
        A str that is not valid UTF-8 is refused.
        """
        self.assertDecodeError(b"\xa1\xff", "UTF-8")
        self.assertDecodeError(b"\xa3\xed\xa0\x80", "UTF-8")

    def test_unknownExtension(self) -> None:
        """
        Extension codes other than 1 to 6 are refused, msgpack's timestamp
        (-1) included.
        """
        for code in [0, 7, 127, -2, -128]:
            self.assertDecodeError(bytes([0xC7, 0x00, code & 0xFF]), "unknown extension")
            self.assertDecodeError(bytes([0xD4, code & 0xFF, 0x00]), "unknown extension")
        for timestamp in [
            b"\xd6\xff\x00\x00\x00\x01",
            b"\xd7\xff" + bytes(8),
            b"\xc7\x0c\xff" + bytes(12),
            b"\x92\x01\xd6\xff\x00\x00\x00\x01",
            b"\x81\xd6\xff\x00\x00\x00\x01\xc0",
        ]:
            self.assertDecodeError(timestamp, "timestamp")
        self.assertDecodeError(b"\xc7\x03\xff\x00\x00\x00", "timestamp")
        padded = b"\x92" + encode("x" * 70) + b"\xd6\xff\x00\x00\x00\x01"
        self.assertDecodeError(padded, "timestamp")

    def test_wrongExtensionLength(self) -> None:
        """
        Extensions with payloads of the wrong length are refused.
        """
        self.assertDecodeError(b"\xc7\x0f\x05" + bytes(15), "complex")
        self.assertDecodeError(b"\xd4\x01\x00", "payload")
        self.assertDecodeError(b"\x92\xd4\x02\x00\x01", "payload")
        self.assertDecodeError(b"\xd4\x06\x05", "one valid form")
        self.assertDecodeError(b"\xc7\x00\x06", "one valid form")
        self.assertDecodeError(b"\xc7\x0a\x06\x00\x01" + bytes(8), "one valid form")
        self.assertDecodeError(b"\xc7\x0a\x06\xff\xff" + bytes(8), "one valid form")
        self.assertDecodeError(b"\xd7\x06\x7f" + b"\xff" * 7, "one valid form")

    def test_misplacedMarker(self) -> None:
        """
        A marker anywhere but first in an array is refused.
        """
        for data in [
            TUPLE_MARKER,
            b"\x92\x01" + TUPLE_MARKER,
            b"\x93" + TUPLE_MARKER + b"\x01" + TUPLE_MARKER,
            b"\x81" + TUPLE_MARKER + b"\xc0",
            b"\x81\xc0" + SET_MARKER,
            b"\x92" + SET_MARKER + TUPLE_MARKER,
            b"\x91\x91" + b"\x92\x00" + TUPLE_MARKER,
        ]:
            self.assertDecodeError(data, "marker")

    def test_unhashable(self) -> None:
        """
        A list, dict or set as a dict key or set member is refused.
        """
        self.assertDecodeError(b"\x81\x90\xc0", "cannot hash")
        self.assertDecodeError(b"\x81\x80\xc0", "cannot hash")
        self.assertDecodeError(b"\x81" + b"\x91" + SET_MARKER + b"\xc0", "cannot hash")
        self.assertDecodeError(b"\x92" + SET_MARKER + b"\x90", "cannot hash")
        self.assertDecodeError(b"\x92" + SET_MARKER + b"\x92" + TUPLE_MARKER + b"\x90", "hash")
        many = b"\x9a" + SET_MARKER + bytes(range(8)) + b"\x90"
        self.assertDecodeError(many, "cannot hash")
        manyKeys = b"\x8a" + b"".join(bytes([i, 0]) for i in range(9)) + b"\x90\x00"
        self.assertDecodeError(manyKeys, "cannot hash")

    def test_duplicates(self) -> None:
        """
        The same key twice in a map, or member twice in a set, is refused,
        including values Python holds equal (C{1} and C{True}, C{0.0} and
        C{-0.0}).
        """
        self.assertDecodeError(b"\x82\x01\xc0\x01\xc0", "same key twice")
        self.assertDecodeError(b"\x82\x01\xc0\xc3\xc0", "same key twice")
        self.assertDecodeError(b"\x82\xa1a\x01\xa1a\x02", "same key twice")
        self.assertDecodeError(b"\x93" + SET_MARKER + b"\x05\x05", "same member twice")
        self.assertDecodeError(
            b"\x93" + SET_MARKER + encode(0.0) + encode(-0.0), "same member twice"
        )
        self.assertDecodeError(
            b"\x93\xc7\x00\x03" + encode((1,)) + encode((1,)), "same member twice"
        )

    def test_onlyArraysAndMapsNest(self) -> None:
        """
        Values decoded from garbage hold only supported types.
        """
        self.assertEqual(decode(b"\xca\x3f\xc0\x00\x00"), 1.5)
        self.assertEqual(decode(b"\xd0\x01"), 1)


class LimitsTests(SynchronousTestCase):
    """
    L{Limits} and each limit it sets.
    """

    def test_defaults(self) -> None:
        """
        The defaults are safe ones.
        """
        self.assertEqual(
            DEFAULT_LIMITS,
            Limits(
                maxDepth=64,
                maxItems=1_000_000,
                maxSize=16 * 1024 * 1024,
                maxIntBytes=1024,
                maxObjects=2**20,
                maxHashCollisions=8,
            ),
        )

    def test_frozen(self) -> None:
        """
        Limits cannot be changed once made.
        """
        limits = Limits()
        self.assertRaises(FrozenInstanceError, setattr, limits, "maxDepth", 1)
        self.assertFalse(hasattr(limits, "__dict__"))

    def test_invalid(self) -> None:
        """
        Each limit must be a positive int; C{maxDepth} at most what msgpack's
        C parser supports.
        """
        for name in [
            "maxDepth",
            "maxItems",
            "maxSize",
            "maxIntBytes",
            "maxObjects",
            "maxHashCollisions",
        ]:
            for bad in [0, -1, 1.5, True, "3", None]:
                error = self.assertRaises(ValueError, Limits, **{name: bad})
                self.assertIn(name, str(error))
        self.assertRaises(ValueError, Limits, maxDepth=1025)
        self.assertEqual(Limits(maxDepth=1024).maxDepth, 1024)

    def test_maxSize(self) -> None:
        """
        Input longer than C{maxSize} is refused before it is parsed.
        """
        limits = Limits(maxSize=70)
        self.assertEqual(decode(encode(b"x" * 60), limits=limits), b"x" * 60)
        error = self.assertRaises(DecodeError, decode, encode(b"x" * 70), limits=limits)
        self.assertIn("maxSize=70", str(error))
        self.assertRaises(DecodeError, decode, b"\xc1" * (17 * 1024 * 1024))

    def test_maxDepth(self) -> None:
        """
        Values nested exactly C{maxDepth} deep decode; one level more is
        refused, however the levels are made and however long the input.
        """
        for depth, limits in [(64, DEFAULT_LIMITS), (3, Limits(maxDepth=3))]:
            cases: list[tuple[object, int]] = [
                (None, depth),
                ("x" * 70, depth),
                ([], depth - 1),
                ((), depth - 1),
                ({}, depth - 1),
                (frozenset(), depth - 1),
            ]
            for innermost, levels in cases:
                ok = encode(nested(levels, innermost))
                self.assertEqual(decode(ok, limits=limits), nested(levels, innermost))
                self.assertEqual(Decoder(limits).decode(ok), nested(levels, innermost))
                tooDeep = encode(nested(levels + 1, innermost))
                error = self.assertRaises(DecodeError, decode, tooDeep, limits=limits)
                self.assertIn(f"maxDepth={depth}", str(error))
                self.assertRaises(DecodeError, Decoder(limits).decode, tooDeep)
        deepTuple = encode({"k": [(((((1,),),),),)]})
        self.assertRaises(DecodeError, decode, deepTuple, limits=Limits(maxDepth=6))
        self.assertEqual(decode(deepTuple, limits=Limits(maxDepth=7)), {"k": [(((((1,),),),),)]})
        padded = encode([nested(64), b"x" * 100_000])
        self.assertRaises(DecodeError, decode, padded)

    def test_depthBombs(self) -> None:
        """
        Inputs nested more than 100 000 levels deep, of each container kind,
        are refused without recursion.
        """
        levels = 100_001
        for opening, closing in [
            (b"\x91", b"\xc0"),
            (b"\x92" + TUPLE_MARKER, b"\xc0"),
            (b"\x92" + SET_MARKER, b"\xc0"),
            (b"\x92\xc7\x00\x03", b"\xc0"),
            (b"\x81\xc0", b"\xc0"),
            (b"\x81", b"\xc0\xc0"),
        ]:
            bomb = opening * levels + b"\xc0" + (closing * levels if opening == b"\x81" else b"")
            for decoder in [Decoder(), Decoder(Limits(maxDepth=1024))]:
                error = self.assertRaises(DecodeError, decoder.decode, bomb)
                self.assertIn("maxDepth", str(error))

    def test_maxItems(self) -> None:
        """
        Lists, tuples, sets (counting their marker) and dicts with more than
        C{maxItems} items are refused.
        """
        limits = Limits(maxItems=3)
        for good in [[1, 2, 3], (1, 2), {1, 2}, {1: 1, 2: 2, 3: 3}]:
            self.assertEqual(decode(encode(good), limits=limits), good)
        for bad in [[1, 2, 3, 4], (1, 2, 3), {1, 2, 3}, {1: 1, 2: 2, 3: 3, 4: 4}]:
            error = self.assertRaises(DecodeError, decode, encode(bad), limits=limits)
            self.assertIn("maxItems=3", str(error))
        self.assertRaises(DecodeError, decode, encode(list(range(1_000_001))))

    def test_claimsMoreThanInput(self) -> None:
        """
        An array or map claiming more items than the input could hold is
        refused, even within C{maxItems}.
        """
        error = self.assertRaises(DecodeError, decode, arrayHeader(1000) + b"\x01\x02")
        self.assertIn("truncated", str(error))
        self.assertRaises(DecodeError, decode, mapHeader(1000) + b"\x01\x02")

    def test_maxIntBytes(self) -> None:
        """
        Big integers longer than C{maxIntBytes} are refused.
        """
        limits = Limits(maxIntBytes=9)
        self.assertEqual(decode(encode(2**64), limits=limits), 2**64)
        error = self.assertRaises(DecodeError, decode, encode(2**72), limits=limits)
        self.assertIn("maxIntBytes=9", str(error))
        self.assertRaises(DecodeError, decode, bigIntExt(2**8200))

    def test_maxObjects(self) -> None:
        """
        A value making more than C{maxObjects} objects (one for each
        container and one for each item) is refused.
        """
        limits = Limits(maxObjects=100)
        self.assertEqual(decode(encode(list(range(99))), limits=limits), list(range(99)))
        self.assertRaises(DecodeError, decode, encode(list(range(100))), limits=limits)
        self.assertEqual(decode(encode([[]] * 49), limits=limits), [[]] * 49)
        error = self.assertRaises(DecodeError, decode, encode([[]] * 50), limits=limits)
        self.assertIn("maxObjects=100", str(error))
        entries = {i: None for i in range(49)}
        self.assertEqual(decode(encode(entries), limits=limits), entries)
        self.assertRaises(DecodeError, decode, encode({i: None for i in range(50)}), limits=limits)
        self.assertEqual(decode(encode([None] * 40), limits=limits), [None] * 40)

    def test_maxHashCollisions(self) -> None:
        """
        Sets and dicts with more than C{maxHashCollisions} members or keys
        sharing one hash value are refused; up to that many are fine.
        """
        colliding = [k * (2**61 - 1) for k in range(1, 10)]
        self.assertEqual({hash(k) for k in colliding}, {0})
        ok = set(colliding[:8])
        self.assertEqual(decode(encode(ok)), ok)
        self.assertEqual(decode(encode(dict.fromkeys(ok))), dict.fromkeys(ok))
        for bad in [set(colliding), frozenset(colliding), dict.fromkeys(colliding)]:
            error = self.assertRaises(DecodeError, decode, encode(bad))
            self.assertIn("maxHashCollisions=8", str(error))
        limits = Limits(maxHashCollisions=1)
        self.assertRaises(DecodeError, decode, encode({-1, -2}), limits=limits)
        self.assertEqual(decode(encode({-1, -3}), limits=limits), {-1, -3})


class AttackTests(SynchronousTestCase):
    """
    Inputs crafted to exhaust time or memory are refused cheaply.
    """

    def test_timestampInNestedSets(self) -> None:
        """
        A timestamp beside frozensets nested deeply is refused in linear
        time, by both implementations (checking for foreign objects once
        visited every set member twice per level: 40 levels took a day).
        """
        nested: object = -1
        for _ in range(40):
            nested = frozenset([nested])
        bomb = b"\x92" + encode(nested) + b"\xd6\xff\x00\x00\x00\x00"
        for decoder in (Decoder(), Decoder(accelerated=False)):
            error = self.assertRaises(DecodeError, decoder.decode, bomb)
            self.assertIn("timestamp", str(error))
            many = self.assertRaises(DecodeError, decoder.decodeMany, b"\x91" + bomb)
            self.assertIn("timestamp", str(many))

    def test_keyTooDeepForPython(self) -> None:
        """
        Set members nested within C{maxDepth} but too deeply for Python to
        compare them are refused with L{DecodeError}, not C{RecursionError}.
        """
        deep: object = 1
        for _ in range(1015):
            deep = (deep,)
        member = encode(deep)
        data = arrayHeader(3) + SET_MARKER + member + member
        limits = Limits(maxDepth=1024)
        error = self.assertRaises(DecodeError, Decoder(limits, accelerated=False).decode, data)
        self.assertIn("too deeply for Python", str(error))

    def test_hashFloodingSet(self) -> None:
        """
        A ~1 MB set whose members all share one hash value is refused by the
        collision check, before the set (which would take quadratic time)
        is built.
        """
        count = 80_000
        members = b"".join(bigIntExt(k * (2**61 - 1)) for k in range(9, 9 + count))
        bomb = arrayHeader(count + 1) + SET_MARKER + members
        self.assertGreater(len(bomb), 900_000)
        error = self.assertRaises(DecodeError, decode, bomb)
        self.assertIn("hash flooding", str(error))
        self.assertIn(f"{count} members", str(error))

    def test_hashFloodingDict(self) -> None:
        """
        A ~1 MB dict whose keys all share one hash value is refused by the
        collision check, before the dict is built.
        """
        count = 80_000
        entries = b"".join(bigIntExt(-k * (2**61 - 1)) + b"\xc0" for k in range(9, 9 + count))
        bomb = mapHeader(count) + entries
        error = self.assertRaises(DecodeError, decode, bomb)
        self.assertIn(f"{count} keys", str(error))

    def test_manyDistinctMembers(self) -> None:
        """
        Large sets and dicts of distinct keys decode.
        """
        members = set(range(-50_000, 50_000))
        self.assertEqual(decode(encode(members)), members)
        entries = {str(i): i for i in range(50_000)}
        self.assertEqual(decode(encode(entries)), entries)

    def test_emptyListBomb(self) -> None:
        """
        A 16 MB input of empty lists is refused once it has made
        C{maxObjects} objects, with memory use a small multiple of its size.
        """
        inner = 1_000_000
        bomb = arrayHeader(16) + (arrayHeader(inner) + b"\x90" * inner) * 16
        self.assertLessEqual(len(bomb), DEFAULT_LIMITS.maxSize)
        flat = arrayHeader(16 * 1024 * 1024 - 5) + b"\x90" * (16 * 1024 * 1024 - 5)
        tracemalloc.start()
        try:
            error = self.assertRaises(DecodeError, decode, bomb)
            self.assertRaises(DecodeError, decode, flat)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        self.assertIn("maxObjects", str(error))
        self.assertLessEqual(peak, 8 * len(bomb))

    def test_lyingHeaders(self) -> None:
        """
        Nested array and map headers that claim many items the input does
        not hold reserve no memory for them.
        """
        for header in [arrayHeader(1_000_000), b"\xdc\xff\xff", mapHeader(500_000)]:
            bomb = header * 60 + b"\x00" * 2000
            tracemalloc.start()
            try:
                self.assertRaises(DecodeError, decode, bomb)
                peak = tracemalloc.get_traced_memory()[1]
            finally:
                tracemalloc.stop()
            self.assertLess(peak, 200_000)

    def test_manyObjects(self) -> None:
        """
        A realistic value with hundreds of thousands of objects decodes.
        """
        value = [{"id": i, "name": f"n{i}"} for i in range(150_000)]
        encoded = encode(value)
        self.assertGreater(len(encoded), DEFAULT_LIMITS.maxObjects // 2)
        self.assertEqual(Decoder().decode(encoded), value)


def mutations() -> st.SearchStrategy[bytes]:
    """
    Valid encodings, damaged: bits flipped, bytes cut, inserted or deleted.

    @return: A strategy of damaged encodings.
    """

    @st.composite
    def mutated(draw: st.DrawFn) -> bytes:
        """
        Draw a value, encode it and damage the encoding.

        @param draw: Hypothesis's draw function.
        @return: The damaged encoding.
        """
        data = bytearray(encode(draw(VALUES)))
        for _ in range(draw(st.integers(1, 4))):
            kind = draw(st.sampled_from(["flip", "cut", "insert", "delete"]))
            if not data:
                break
            index = draw(st.integers(0, len(data) - 1))
            if kind == "flip":
                data[index] ^= 1 << draw(st.integers(0, 7))
            elif kind == "cut":
                del data[index:]
            elif kind == "insert":
                data[index:index] = draw(st.binary(min_size=1, max_size=4))
            else:
                del data[index]
        return bytes(data)

    return mutated()


class FuzzTests(SynchronousTestCase):
    """
    Any input decodes to a value of supported types, or raises
    L{DecodeError}: nothing else escapes.
    """

    def assertDecodesOrRefuses(self, data: bytes) -> None:
        """
        Assert that C{data} decodes to a value of supported types that
        round trips, or is refused with L{DecodeError}.

        @param data: Any bytes.
        """
        try:
            value = decode(data)
        except DecodeError:
            self.assertRaises(DecodeError, Decoder().decode, data)
            return
        self.assertTrue(onlyAllowedTypes(value), repr(value))
        self.assertTrue(sameValue(Decoder().decode(data), value))
        self.assertTrue(sameValue(decode(encode(value)), value))

    @settings(max_examples=1500, suppress_health_check=[HealthCheck.too_slow])
    @given(st.binary(max_size=200))
    def test_garbage(self, data: bytes) -> None:
        """
        Random bytes decode or raise L{DecodeError}.
        """
        self.assertDecodesOrRefuses(data)

    @settings(max_examples=1500, suppress_health_check=[HealthCheck.too_slow])
    @given(mutations())
    def test_mutated(self, data: bytes) -> None:
        """
        Damaged valid encodings decode or raise L{DecodeError}.
        """
        self.assertDecodesOrRefuses(data)

    def test_structuredGarbage(self) -> None:
        """
        Every three-byte input starting with an extension or container
        header decodes or raises L{DecodeError}.
        """
        for first in [0x80, 0x81, 0x90, 0x91, 0x92, 0xC7, 0xD4, 0xD5, 0xDC, 0xDE]:
            for second in range(256):
                for third in [0x00, 0x01, 0x02, 0x03, 0x06, 0x90, 0xC7, 0xFF]:
                    self.assertDecodesOrRefuses(bytes([first, second, third]))


def batch(encodings: list[bytes], header: bytes | None = None) -> bytes:
    """
    Build a batch body from encoded values.

    @param encodings: The encoded values.
    @param header: The array header to use; by default the shortest.
    @return: The body.
    """
    if header is None:
        header = msgpack.packb([None] * len(encodings))[: -len(encodings) or None]
    return header + b"".join(encodings)


class DecodeManyTests(SynchronousTestCase):
    """
    L{Decoder.decodeMany} decodes an array of encoded values, checking each
    one as L{Decoder.decode} would alone.
    """

    def assertBatchRefused(
        self,
        data: bytes,
        fragment: str,
        limits: Limits = DEFAULT_LIMITS,
        maxValues: int | None = None,
    ) -> None:
        """
        Assert that a new and a reused L{Decoder} refuse C{data} with the
        same message, and that the reused one still works afterwards.

        @param data: The input.
        @param fragment: Text the message must hold.
        @param limits: The limits to decode with.
        @param maxValues: The most values the batch may hold.
        """
        error = self.assertRaises(DecodeError, Decoder(limits).decodeMany, data, maxValues)
        self.assertIn(fragment, str(error))
        decoder = Decoder(limits)
        self.assertEqual(decoder.decodeMany(b"\x92\x01\xa1x"), [1, "x"])
        otherError = self.assertRaises(DecodeError, decoder.decodeMany, data, maxValues)
        self.assertEqual(str(otherError), str(error))
        self.assertEqual(decoder.decodeMany(b"\x92\x01\xa1x"), [1, "x"])
        self.assertEqual(decoder.decode(encode([1, (2,)])), [1, (2,)])

    @given(st.lists(VALUES, min_size=1, max_size=20))
    def test_anyValues(self, items: list[object]) -> None:
        """
        Any list of values comes back equal, with exactly the same types,
        from a batch of their encodings, whichever array header it uses.
        """
        encodings = [encode(item) for item in items]
        count = len(items)
        headers = [b"\xdc" + struct.pack(">H", count), b"\xdd" + struct.pack(">I", count)]
        if count < 16:
            headers.append(bytes([0x90 + count]))
        decoder = Decoder()
        for header in headers:
            for decoded in (
                decoder.decodeMany(batch(encodings, header)),
                Decoder().decodeMany(bytearray(batch(encodings, header))),
                decoder.decodeMany(memoryview(b"x" + batch(encodings, header))[1:]),
            ):
                self.assertIs(type(decoded), list)
                self.assertTrue(sameValue(decoded, items), f"{items!r} came back as {decoded!r}")

    def test_manySmallValues(self) -> None:
        """
        A body of hundreds of small values, the kind the batch record
        carries, comes back whole; so does one over the size where
        C{maxObjects} is counted, which is decoded a value at a time.
        """
        items = [ORIGINAL_EXAMPLE, (1, 2), {3: frozenset({4})}, bytearray(b"b"), 2**70] * 60
        body = batch([encode(item) for item in items])
        self.assertLess(len(body), 16 * 1024)
        self.assertTrue(sameValue(Decoder().decodeMany(body), items))
        small = Limits(maxObjects=100)
        self.assertTrue(sameValue(Decoder(small).decodeMany(body), items))

    def test_eachValueAlone(self) -> None:
        """
        A batch of one value gives what L{Decoder.decode} gives for the
        value, or is refused as it is.
        """
        for good in [None, [], ORIGINAL_EXAMPLE, (1,), {2}, frozenset(), bytearray(b"a")]:
            self.assertTrue(sameValue(Decoder().decodeMany(batch([encode(good)])), [good]))
        for bad, fragment in [
            (b"\xc7\x00\x05", "complex"),
            (b"\xd6\xff\x00\x00\x00\x01", "timestamp"),
            (b"\x92\x01\xc7\x00\x01", "marker"),
            (b"\x93\x01\x01" + SET_MARKER, "marker"),
            (b"\x93" + SET_MARKER + b"\x01\x01", "twice"),
            (b"\x82\x01\x01\x01\x02", "twice"),
            (b"\x81\x90\x01", "hash"),
            (b"\xa1\xff", "UTF-8"),
            (bigIntExt(5), "valid form"),
        ]:
            self.assertRaises(DecodeError, decode, bad)
            self.assertBatchRefused(batch([b"\x01", bad]), fragment)

    def test_depthPerValue(self) -> None:
        """
        C{maxDepth} applies to each value: the outer array is not a level.
        A value nested exactly C{maxDepth} deep is accepted, one level
        deeper is refused, in short and long batches alike.
        """
        for depth, limits in [
            (64, DEFAULT_LIMITS),
            (3, Limits(maxDepth=3)),
            (1024, Limits(maxDepth=1024)),
        ]:
            for padding in [[], [b"x" * 5000]]:
                # Compared by encoding: == on 1024 levels would recurse too deeply.
                fits = batch([encode(v) for v in [*padding, nested(depth - 1, []), 1]])
                decoded = Decoder(limits).decodeMany(fits)
                self.assertEqual(batch([encode(v) for v in decoded]), fits)
                tooDeep = batch([encode(v) for v in [*padding, nested(depth, []), 1]])
                self.assertBatchRefused(tooDeep, f"maxDepth={depth}", limits)

    def test_maxObjectsPerValue(self) -> None:
        """
        On inputs long enough for C{maxObjects} to bind, it binds for each
        value, not for the whole batch.
        """
        limits = Limits(maxObjects=20)
        fits = [list(range(19))] * 3
        self.assertEqual(Decoder(limits).decodeMany(batch([encode(v) for v in fits])), fits)
        tooMany = batch([encode(v) for v in [list(range(19)), list(range(20))]])
        self.assertBatchRefused(tooMany, "maxObjects=20", limits)

    def test_otherLimits(self) -> None:
        """
        C{maxItems}, C{maxIntBytes} and C{maxHashCollisions} apply to each
        value, and C{maxSize} to the whole input.  The number of values is
        bounded by C{maxValues} (C{maxItems} by default), not by
        C{maxItems}: more values than C{maxItems} are decoded one by one,
        each still within C{maxItems}.
        """
        self.assertBatchRefused(
            batch([b"\x01", encode([1, 2, 3, 4])]), "maxItems=3", Limits(maxItems=3)
        )
        self.assertBatchRefused(batch([b"\x01"] * 4), "more than the 3", Limits(maxItems=3))
        self.assertEqual(Decoder(Limits(maxItems=3)).decodeMany(batch([b"\x01"] * 3)), [1, 1, 1])
        decoder = Decoder(Limits(maxItems=3))
        values = [[1, 2, 3], (4, 5), {6}, "x", [7]]
        self.assertEqual(
            decoder.decodeMany(batch([encode(v) for v in values]), maxValues=5), values
        )
        self.assertBatchRefused(
            batch([encode([1, 2, 3]), encode([1, 2, 3, 4]), b"\x01", b"\x02"]),
            "maxItems=3",
            Limits(maxItems=3),
            maxValues=4,
        )
        self.assertRaises(DecodeError, decoder.decodeMany, batch([b"\x01"] * 6), maxValues=5)
        self.assertBatchRefused(batch([encode(2**72)]), "maxIntBytes=9", Limits(maxIntBytes=9))
        colliding = {-1, -2, 2**61 - 1, 2 * (2**61 - 1)}
        self.assertBatchRefused(
            batch([encode(colliding)]), "maxHashCollisions=1", Limits(maxHashCollisions=1)
        )
        body = batch([encode(b"x" * 30)] * 3)
        self.assertEqual(Decoder(Limits(maxSize=len(body))).decodeMany(body), [b"x" * 30] * 3)
        self.assertBatchRefused(body, f"maxSize={len(body) - 1}", Limits(maxSize=len(body) - 1))

    def test_notAPlainArray(self) -> None:
        """
        An input that is empty, not an array, an empty array, or an array
        whose first item is a marker (in any extension form) is refused.
        """
        for data, fragment in [
            (b"", "empty"),
            (b"\x01", "not a msgpack array"),
            (encode({1: 2}), "not a msgpack array"),
            (encode(b"\x91\x01"), "not a msgpack array"),
            (b"\x90", "no values"),
            (b"\xdc\x00\x00", "no values"),
            (b"\xdd\x00\x00\x00\x00", "no values"),
            (b"\x92" + TUPLE_MARKER + b"\x01", "starts with a tuple, set or frozenset marker"),
            (b"\x92" + SET_MARKER + b"\x01", "marker"),
            (b"\x91\xc7\x00\x03", "marker"),
            (b"\x92\xc8\x00\x00\x01\x01", "marker"),
            (b"\x92\xc9\x00\x00\x00\x00\x02\x01", "marker"),
            (encode((1, 2)), "marker"),
        ]:
            self.assertBatchRefused(data, fragment)
        # An empty extension of another code is a value, not a marker.
        self.assertEqual(Decoder().decodeMany(b"\x91\xc7\x00\x04"), [bytearray()])

    def test_framing(self) -> None:
        """
        A batch followed by more bytes, or cut short anywhere, is refused,
        on short and long inputs and when values are decoded one at a time.
        """
        for limits in [DEFAULT_LIMITS, Limits(maxObjects=24)]:
            for items in [[1, "a"], [ORIGINAL_EXAMPLE] * 20]:
                body = batch([encode(item) for item in items])
                self.assertEqual(Decoder(limits).decodeMany(body), items)
                self.assertBatchRefused(body + b"\x00", "after the end", limits)
                self.assertBatchRefused(
                    batch([encode(item) for item in items]) + body, "after", limits
                )
                for cut in range(1, len(body)):
                    self.assertRaises(DecodeError, Decoder(limits).decodeMany, body[:cut])
                self.assertBatchRefused(body[:-1], "truncated", limits)
        self.assertBatchRefused(b"\xdc\x00", "truncated")
        self.assertBatchRefused(arrayHeader(1000) + b"\x01\x02", "truncated")
        self.assertBatchRefused(b"\x92\x01", "claims 2 values")

    @settings(max_examples=1500, suppress_health_check=[HealthCheck.too_slow])
    @given(st.binary(max_size=200) | mutations().map(lambda data: b"\x93\x01" + data + b"\x02"))
    def test_garbage(self, data: bytes) -> None:
        """
        Random bytes, and batches holding a damaged encoding, decode to a
        list of values of supported types, or raise L{DecodeError}; a
        reused decoder and a new one agree, with counted objects or not.
        """
        outcomes = []
        for decoder in [Decoder(), Decoder(), Decoder(Limits(maxObjects=2))]:
            try:
                outcomes.append(decoder.decodeMany(data))
            except DecodeError as e:
                outcomes.append(e)
        first = outcomes[0]
        if isinstance(first, DecodeError):
            self.assertIsInstance(outcomes[1], DecodeError)
            return
        self.assertIs(type(first), list)
        self.assertTrue(onlyAllowedTypes(first), repr(first))
        self.assertTrue(sameValue(outcomes[1], first))
        again = Decoder().decodeMany(batch([encode(item) for item in first]))
        self.assertTrue(sameValue(again, first))


class ModuleTests(SynchronousTestCase):
    """
    The module's public names and its independence from I/O.
    """

    def test_all(self) -> None:
        """
        C{__all__} lists the public API, all of which exists.
        """
        self.assertEqual(
            sorted(values.__all__),
            sorted(
                [
                    "ACCELERATED",
                    "DEFAULT_LIMITS",
                    "EXT_BIGINT",
                    "EXT_BYTEARRAY",
                    "EXT_COMPLEX",
                    "EXT_FROZENSET",
                    "EXT_SET",
                    "EXT_TUPLE",
                    "Decoder",
                    "Encoder",
                    "Limits",
                    "decode",
                    "encode",
                ]
            ),
        )
        for name in values.__all__:
            self.assertTrue(hasattr(values, name), name)

    def test_msgpackDepths(self) -> None:
        """
        The nesting limits measured from msgpack are the ones the
        documentation states.
        """
        self.assertEqual(values._PARSER_DEPTH, 1024)
        self.assertEqual(values._PACKER_DEPTH, 1025)
        self.assertEqual(msgpack.version[0], 1)


class EncodeAfterTests(SynchronousTestCase):
    """
    L{Encoder.encodeAfter} puts bytes before an encoding, copying large
    C{bytes} values once.
    """

    def test_sameAsConcatenation(self) -> None:
        """
        For small and large values of every kind, the result is the prefix
        followed by what L{Encoder.encode} gives.
        """
        encoder = Encoder()
        for value in [
            1,
            "short",
            b"short",
            b"x" * 5000,
            b"y" * 70000,
            "z" * 70000,
            [b"w" * 70000],
            bytearray(b"v" * 70000),
        ]:
            self.assertEqual(encoder.encodeAfter(b"\x01", value), b"\x01" + encoder.encode(value))

    def test_largeBytesDecode(self) -> None:
        """
        A large C{bytes} value encoded this way decodes, from a memoryview
        past the prefix, to the same bytes.
        """
        value = bytes(range(256)) * 1000
        record = Encoder().encodeAfter(b"\x01", value)
        self.assertEqual(decode(memoryview(record)[1:]), value)


class EncoderMemoryTests(SynchronousTestCase):
    """
    An encoder does not keep its largest value's worth of memory.
    """

    def test_packerReplacedAfterLargeValue(self) -> None:
        """
        After encoding a value over a megabyte, the reference encoder packs
        with a new packer (whose buffer starts small), and still encodes
        correctly.  (The C accelerator keeps no buffer between values.)
        """
        encoder = Encoder(accelerated=False)
        before = encoder._pack
        encoder.encode("x" * 100)
        self.assertIs(encoder._pack, before)
        encoder.encode("x" * (2 * 1024 * 1024))
        self.assertIsNot(encoder._pack, before)
        self.assertEqual(decode(encoder.encode([1, "a"])), [1, "a"])
