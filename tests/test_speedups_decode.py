# -*- test-case-name: tests.test_speedups_decode -*-
"""
Tests for the decoder of the C accelerator, C{netstructer._speedups}: its
C{decode} and C{decodeMany} must accept exactly the inputs the reference
decoder (L{Decoder} with C{accelerated=False}) accepts, return values that
are the same down to the bit (types at every level, floats bit for bit,
dicts and sets in the same iteration order), and raise C{ValueError} for
every input the reference refuses.

The C functions are called directly, not through L{Decoder}, whose
fallback to the reference would hide a wrong refusal.
"""

from __future__ import annotations

import array
import math
import reprlib
import struct
from collections import Counter
from importlib import import_module
from types import ModuleType
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from netstructer.errors import DecodeError
from netstructer.values import DEFAULT_LIMITS, Decoder, Limits, encode
from tests.test_values import (
    HASHABLES,
    SET_MARKER,
    TUPLE_MARKER,
    VALUES,
    arrayHeader,
    bigIntExt,
    mapHeader,
    sameValue,
)

_speedups: ModuleType | None
try:
    _speedups = import_module("netstructer._speedups")
except ImportError:  # pragma: no cover (built wherever a C compiler is)
    _speedups = None
    skip = "netstructer._speedups is not built (no C compiler): nothing to compare"

FROZENSET_MARKER = b"\xc7\x00\x03"

P61 = 2**61 - 1
"""The modulus of Python's numeric hash: its multiples all hash to 0."""

SMALL = Limits(
    maxDepth=3, maxItems=4, maxObjects=10, maxIntBytes=9, maxHashCollisions=2, maxSize=64
)
"""Small limits, which generated and damaged inputs often reach."""

LIMITS = [
    DEFAULT_LIMITS,
    SMALL,
    Limits(maxDepth=2, maxItems=6, maxObjects=16, maxIntBytes=16, maxHashCollisions=1, maxSize=40),
    Limits(maxDepth=4, maxItems=8, maxObjects=24, maxIntBytes=12, maxHashCollisions=3),
    Limits(maxDepth=1, maxItems=3, maxObjects=5, maxIntBytes=10, maxHashCollisions=2),
]
"""The limits the generated tests pick from."""

DIFFERENTIAL = settings(
    max_examples=300,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
"""Settings of the generated tests: bounded, and the same on every run."""


def short(value: object) -> str:
    """
    @param value: A value, maybe large or nested a thousand deep.
    @return: A short C{repr} of it, for a message.
    """
    return reprlib.repr(value)


def fastLimits(limits: Limits) -> tuple[int, int, int, int, int, int]:
    """
    @param limits: Some limits.
    @return: The limit arguments of the C functions, in their order.
    """
    return (
        limits.maxSize,
        limits.maxDepth,
        limits.maxItems,
        limits.maxIntBytes,
        limits.maxObjects,
        limits.maxHashCollisions,
    )


def fastDecode(data: Any, limits: Limits = DEFAULT_LIMITS) -> object:
    """
    Decode with the C function itself.

    @param data: The input.
    @param limits: The limits.
    @return: The value.
    @raise ValueError: If it refuses the input.
    """
    assert _speedups is not None
    return _speedups.decode(data, *fastLimits(limits))


def fastDecodeMany(data: Any, limits: Limits = DEFAULT_LIMITS, maxValues: Any = None) -> object:
    """
    Decode a batch with the C function itself.

    @param data: The input.
    @param limits: The limits.
    @param maxValues: The most values; C{maxItems} if C{None}, as
        L{Decoder.decodeMany} passes it.
    @return: The values.
    @raise ValueError: If it refuses the input.
    """
    assert _speedups is not None
    if maxValues is None:
        maxValues = limits.maxItems
    return _speedups.decodeMany(data, *fastLimits(limits), maxValues)


_REFERENCES: dict[Limits, Decoder] = {}


def reference(limits: Limits = DEFAULT_LIMITS) -> Decoder:
    """
    @param limits: Some limits.
    @return: A reference decoder (reused, as a connection reuses its own).
    """
    decoder = _REFERENCES.get(limits)
    if decoder is None:
        decoder = _REFERENCES[limits] = Decoder(limits, accelerated=False)
    return decoder


def holdsNan(value: object) -> bool:
    """
    @param value: A decoded value.
    @return: Whether a nan is anywhere in it (whose hash is its address, so
        that the iteration order of a set holding it is not reproducible).
    """
    pending = [value]
    while pending:
        item = pending.pop()
        if type(item) is float:
            if math.isnan(item):
                return True
        elif type(item) is complex:
            if math.isnan(item.real) or math.isnan(item.imag):
                return True
        elif type(item) is dict:
            pending.extend(item)
            pending.extend(item.values())
        elif type(item) in (list, tuple, set, frozenset):
            members: Any = item
            pending.extend(members)
    return False


def exactlySame(a: object, b: object) -> bool:
    """
    Compare two decoded values more strictly than L{sameValue}: same types
    at every level, floats (nan included) and complex numbers bit for bit,
    lists, tuples and dicts in order, and sets and frozensets in the same
    iteration order (unless a nan is in them).  Iterative, so that values
    nested a thousand deep compare.

    @param a: One value.
    @param b: The other.
    @return: Whether they are the same.
    """
    pending: list[tuple[Any, Any]] = [(a, b)]
    while pending:
        x, y = pending.pop()
        kind = type(x)
        if kind is not type(y):
            return False
        if kind is float:
            if struct.pack(">d", x) != struct.pack(">d", y):
                return False
        elif kind is complex:
            if struct.pack(">dd", x.real, x.imag) != struct.pack(">dd", y.real, y.imag):
                return False
        elif kind is list or kind is tuple:
            if len(x) != len(y):
                return False
            pending.extend(zip(x, y, strict=True))
        elif kind is dict:
            if len(x) != len(y):
                return False
            for (keyX, valueX), (keyY, valueY) in zip(x.items(), y.items(), strict=True):
                pending.append((keyX, keyY))
                pending.append((valueX, valueY))
        elif kind is set or kind is frozenset:
            if len(x) != len(y):
                return False
            if holdsNan(x) or holdsNan(y):
                if not sameValue(x, y):
                    return False
            else:
                pending.extend(zip(x, y, strict=True))
        elif x != y:
            return False
    return True


def bigIntBytes(number: int) -> int:
    """
    @param number: An int.
    @return: The bytes of its shortest two's complement form.
    """
    return (number if number >= 0 else ~number).bit_length() // 8 + 1


def costs(value: object) -> dict[str, int]:
    """
    Measure what a value costs, by the definitions of the module docstring
    of L{netstructer.values}: the smallest limits that accept it.

    @param value: A value of the supported types.
    @return: C{maxDepth}, C{maxItems}, C{maxObjects}, C{maxIntBytes} and
        C{maxHashCollisions} (0 where nothing counts).
    """
    result = dict.fromkeys(
        ["maxDepth", "maxItems", "maxObjects", "maxIntBytes", "maxHashCollisions"], 0
    )
    pending: list[tuple[object, int]] = [(value, 0)]
    while pending:
        item, depth = pending.pop()
        kind = type(item)
        if kind is int:
            number: Any = item
            if not -(2**63) <= number < 2**64:
                result["maxIntBytes"] = max(result["maxIntBytes"], bigIntBytes(number))
            continue
        if kind not in (list, tuple, set, frozenset, dict):
            continue
        container: Any = item
        result["maxDepth"] = max(result["maxDepth"], depth + 1)
        children = list(container.keys()) + list(container.values()) if kind is dict else container
        items = len(container) + (kind is not list and kind is not dict)
        result["maxItems"] = max(result["maxItems"], items)
        result["maxObjects"] += 1 + (2 * len(container) if kind is dict else items)
        if kind is not list and kind is not tuple:
            hashes = Counter(map(hash, container))
            result["maxHashCollisions"] = max([result["maxHashCollisions"], *hashes.values()])
        pending.extend((child, depth + 1) for child in children)
    return result


def tupleNest(depth: int, innermost: object) -> tuple[object, ...]:
    """
    @param depth: How many tuples, at least one.
    @param innermost: What the innermost one holds.
    @return: C{depth} nested one-item tuples around C{innermost}.
    """
    value = (innermost,)
    for _ in range(depth - 1):
        value = (value,)
    return value


def nestedLists(depth: int, innermost: bytes = b"\xc0") -> bytes:
    """
    @param depth: How many one-item arrays.
    @param innermost: The encoding they hold.
    @return: C{depth} nested arrays around C{innermost}.
    """
    return b"\x91" * depth + innermost


def ext(code: int, payload: bytes, form: str = "shortest") -> bytes:
    """
    Write an extension in a chosen form.

    @param code: The extension code, -128 to 127.
    @param payload: The payload.
    @param form: C{"fixext"}, C{"ext8"}, C{"ext16"}, C{"ext32"} or
        C{"shortest"}.
    @return: The extension.
    """
    codeByte = bytes([code & 0xFF])
    size = len(payload)
    fixed = {1: 0xD4, 2: 0xD5, 4: 0xD6, 8: 0xD7, 16: 0xD8}
    if form == "shortest":
        form = "fixext" if size in fixed else "ext8" if size < 256 else "ext16"
    if form == "fixext":
        return bytes([fixed[size]]) + codeByte + payload
    if form == "ext8":
        return bytes([0xC7, size]) + codeByte + payload
    if form == "ext16":
        return b"\xc8" + struct.pack(">H", size) + codeByte + payload
    return b"\xc9" + struct.pack(">I", size) + codeByte + payload


def setOf(*members: bytes, marker: bytes = SET_MARKER) -> bytes:
    """
    @param members: Encoded members.
    @param marker: The marker (a set's by default).
    @return: The encoding of a set (or tuple, or frozenset) of them.
    """
    return bytes([0x90 + len(members) + 1]) + marker + b"".join(members)


def mapOf(*parts: bytes) -> bytes:
    """
    @param parts: Encoded keys and values, alternately.
    @return: The encoding of a map of them.
    """
    return bytes([0x80 + len(parts) // 2]) + b"".join(parts)


def enc(value: object) -> bytes:
    """
    @param value: A value.
    @return: Its encoding, by the reference encoder.
    """
    return encode(value, accelerated=False)


class DifferentialTestCase(SynchronousTestCase):
    """
    Assertions comparing the C functions with the reference decoder.
    """

    def assertAgree(
        self,
        data: Any,
        limits: Limits = DEFAULT_LIMITS,
        many: bool = False,
        maxValues: Any = None,
    ) -> tuple[bool, object]:
        """
        Assert that the C function and the reference decoder both refuse
        C{data}, or both decode it to exactly the same value.

        @param data: The input, of any type the C function takes.
        @param limits: The limits to decode with.
        @param many: Whether to decode a batch (C{decodeMany}).
        @param maxValues: For a batch, the most values it may hold.
        @return: Whether it was accepted, and the value.
        """
        shown = bytes(data)[:200].hex()
        try:
            if many:
                expected = reference(limits).decodeMany(data, maxValues)
            else:
                expected = reference(limits).decode(data)
        except DecodeError as e:
            try:
                got = fastDecodeMany(data, limits, maxValues) if many else fastDecode(data, limits)
            except ValueError:
                return False, None
            self.fail(
                f"C decodes {shown} ({limits}) as {short(got)}; the reference refuses it: {e}"
            )
        try:
            got = fastDecodeMany(data, limits, maxValues) if many else fastDecode(data, limits)
        except ValueError as e:
            self.fail(
                f"C refuses {shown} ({limits}): {e}; the reference decodes it as {short(expected)}"
            )
        self.assertTrue(
            exactlySame(expected, got),
            f"{shown}: C gives {short(got)}, the reference {short(expected)}",
        )
        return True, got

    def assertAccepted(self, data: Any, expected: object, limits: Limits = DEFAULT_LIMITS) -> None:
        """
        Assert that both decoders accept C{data}, as C{expected}.

        @param data: The input.
        @param expected: The value it encodes.
        @param limits: The limits to decode with.
        """
        accepted, value = self.assertAgree(data, limits)
        self.assertTrue(accepted, f"{bytes(data).hex()} is refused ({limits})")
        self.assertTrue(sameValue(value, expected), f"{short(value)} is not {short(expected)}")

    def assertRefused(self, data: Any, limits: Limits = DEFAULT_LIMITS) -> None:
        """
        Assert that both decoders refuse C{data}.

        @param data: The input.
        @param limits: The limits to decode with.
        """
        accepted, value = self.assertAgree(data, limits)
        self.assertFalse(accepted, f"{bytes(data).hex()} is decoded as {short(value)} ({limits})")

    def assertBatchAccepted(
        self,
        data: bytes,
        expected: list[object],
        limits: Limits = DEFAULT_LIMITS,
        maxValues: Any = None,
    ) -> None:
        """
        Assert that both decoders accept the batch C{data}, as C{expected}.
        """
        accepted, value = self.assertAgree(data, limits, True, maxValues)
        self.assertTrue(accepted, f"batch {data[:100].hex()} is refused ({limits})")
        self.assertTrue(sameValue(value, expected), f"{short(value)} is not {short(expected)}")

    def assertBatchRefused(
        self, data: bytes, limits: Limits = DEFAULT_LIMITS, maxValues: Any = None
    ) -> None:
        """
        Assert that both decoders refuse the batch C{data}.
        """
        accepted, value = self.assertAgree(data, limits, True, maxValues)
        self.assertFalse(accepted, f"batch {data[:100].hex()} is decoded as {short(value)}")


def batchOf(encodings: list[bytes], form: str = "fixarray") -> bytes:
    """
    @param encodings: Encoded values.
    @param form: The array header: C{"fixarray"}, C{"array16"} or
        C{"array32"}.
    @return: A batch of them.
    """
    count = len(encodings)
    if form == "fixarray":
        header = bytes([0x90 + count])
    elif form == "array16":
        header = b"\xdc" + struct.pack(">H", count)
    else:
        header = arrayHeader(count)
    return header + b"".join(encodings)


# Headers and other pieces spliced into encodings to damage them in ways
# that reach the decoder's rarer paths.
SPLICES = [
    b"\x90",
    b"\x91",
    b"\x93",
    b"\x9f",
    b"\x80",
    b"\x81",
    b"\x8f",
    b"\xdc\x00\x01",
    b"\xdd\x00\x00\x00\x02",
    b"\xde\x00\x01",
    b"\xdf\x00\x00\x00\x01",
    TUPLE_MARKER,
    SET_MARKER,
    FROZENSET_MARKER,
    b"\xc8\x00\x00\x01",
    b"\xc9\x00\x00\x00\x00\x02",
    b"\xd4\x01\x00",
    b"\xc7\x01\x03",
    b"\xd4\x06\x00",
    b"\xc7\x09\x06",
    b"\xd4\x04",
    b"\xd6\xff",
    b"\xc1",
    b"\xc0",
    b"\xff",
    b"\xc3",
    b"\xca",
    b"\xcb",
    b"\xd9\x01",
    b"\xc4\x01",
    b"\xed\xa0\x80",
    b"\xcf\xff",
    b"\xd3\x80",
]


@st.composite
def damaged(draw: st.DrawFn, values: st.SearchStrategy[object] = VALUES) -> bytes:
    """
    A valid encoding, damaged: bits flipped, bytes cut, inserted, deleted
    or overwritten, headers and markers spliced in, a part repeated.

    @param draw: Hypothesis's draw function.
    @param values: The values to encode.
    @return: The damaged encoding.
    """
    data = bytearray(encode(draw(values), accelerated=False))
    for _ in range(draw(st.integers(1, 4))):
        if not data:
            break
        index = draw(st.integers(0, len(data) - 1))
        kind = draw(
            st.sampled_from(["flip", "cut", "insert", "delete", "splice", "overwrite", "repeat"])
        )
        if kind == "flip":
            data[index] ^= 1 << draw(st.integers(0, 7))
        elif kind == "cut":
            del data[index:]
        elif kind == "insert":
            data[index:index] = draw(st.binary(min_size=1, max_size=4))
        elif kind == "delete":
            del data[index : index + draw(st.integers(1, 3))]
        elif kind == "splice":
            data[index:index] = draw(st.sampled_from(SPLICES))
        elif kind == "overwrite":
            piece = draw(st.sampled_from(SPLICES))
            data[index : index + len(piece)] = piece
        else:
            end = draw(st.integers(index, len(data)))
            data[end:end] = data[index:end]
    return bytes(data)


class GeneratedValueTests(DifferentialTestCase):
    """
    Values encoded by the reference encoder decode in C exactly as the
    reference decodes them.
    """

    @DIFFERENTIAL
    @given(VALUES)
    def test_values(self, value: object) -> None:
        """
        Any value comes back from C as it went in, and exactly as the
        reference decoder gives it back; from bytes, a bytearray and a
        memoryview alike.
        """
        encoded = encode(value, accelerated=False)
        accepted, decoded = self.assertAgree(encoded)
        self.assertTrue(accepted)
        self.assertTrue(sameValue(decoded, value), f"{short(value)} came back as {short(decoded)}")
        for view in (bytearray(encoded), memoryview(b"x" + encoded)[1:]):
            self.assertTrue(exactlySame(fastDecode(view), decoded))

    @DIFFERENTIAL
    @given(
        st.lists(VALUES, min_size=1, max_size=6),
        st.sampled_from(["fixarray", "array16", "array32"]),
    )
    def test_batches(self, items: list[object], form: str) -> None:
        """
        Any list of values comes back from a batch of their encodings, with
        any array header, exactly as the reference decoder gives it back.
        """
        body = batchOf([encode(item, accelerated=False) for item in items], form)
        accepted, decoded = self.assertAgree(body, many=True)
        self.assertTrue(accepted)
        self.assertTrue(sameValue(decoded, items), f"{short(items)} came back as {short(decoded)}")

    @DIFFERENTIAL
    @given(VALUES, st.sampled_from(LIMITS))
    def test_valuesUnderLimits(self, value: object, limits: Limits) -> None:
        """
        Under small limits, which many values exceed, C refuses exactly the
        values the reference refuses, alone and in a batch.
        """
        encoded = encode(value, accelerated=False)
        self.assertAgree(encoded, limits)
        self.assertAgree(b"\x92" + encoded + encoded, limits, many=True)

    @settings(DIFFERENTIAL, max_examples=150)
    @given(VALUES)
    def test_limitsBindExactly(self, value: object) -> None:
        """
        Each limit set to exactly what a value costs (by the module
        docstring's definitions) accepts it, and one less refuses it, in C
        as in the reference; C{maxObjects} included, which always binds
        since a value takes at least one byte per object.
        """
        encoded = encode(value, accelerated=False)
        spent = costs(value)
        spent["maxSize"] = len(encoded)
        for name, cost in spent.items():
            if not cost:
                continue
            # A batch of one value takes one byte more.
            batchCost = cost + 1 if name == "maxSize" else cost
            self.assertAccepted(encoded, value, Limits(**{name: cost}))
            self.assertBatchAccepted(b"\x91" + encoded, [value], Limits(**{name: batchCost}))
            if cost > 1:
                self.assertRefused(encoded, Limits(**{name: cost - 1}))
                self.assertBatchRefused(b"\x91" + encoded, Limits(**{name: batchCost - 1}))


class DamagedInputTests(DifferentialTestCase):
    """
    Damaged encodings and arbitrary bytes: C accepts exactly what the
    reference accepts, with the same values.
    """

    @settings(DIFFERENTIAL, max_examples=600)
    @given(damaged(), st.sampled_from(LIMITS))
    def test_damaged(self, data: bytes, limits: Limits) -> None:
        """
        A damaged encoding is decoded the same way, or refused by both.
        """
        self.assertAgree(data, limits)

    @settings(DIFFERENTIAL, max_examples=300)
    @given(damaged(HASHABLES), st.sampled_from(LIMITS))
    def test_damagedKeys(self, data: bytes, limits: Limits) -> None:
        """
        Damaged dict keys and set members (which are hashed, compared and
        checked for collisions) are decoded the same way, or refused by both.
        """
        self.assertAgree(b"\x81" + data + b"\xc0", limits)
        self.assertAgree(setOf(data, b"\x01"), limits)

    @settings(DIFFERENTIAL, max_examples=300)
    @given(
        st.lists(VALUES, min_size=1, max_size=4),
        st.sampled_from(["fixarray", "array16", "array32"]),
        st.data(),
        st.sampled_from(LIMITS),
    )
    def test_damagedBatches(
        self, items: list[object], form: str, data: st.DataObject, limits: Limits
    ) -> None:
        """
        A damaged batch is decoded the same way, or refused by both.
        """
        body = bytearray(batchOf([encode(item, accelerated=False) for item in items], form))
        for _ in range(data.draw(st.integers(1, 3))):
            index = data.draw(st.integers(0, len(body)))
            kind = data.draw(st.sampled_from(["flip", "cut", "splice"]))
            if kind == "flip" and index < len(body):
                body[index] ^= 1 << data.draw(st.integers(0, 7))
            elif kind == "cut":
                del body[index:]
            else:
                body[index:index] = data.draw(st.sampled_from(SPLICES))
        maxValues = data.draw(st.sampled_from([None, 1, 2, 3, 4, 5]))
        self.assertAgree(bytes(body), limits, many=True, maxValues=maxValues)

    @settings(DIFFERENTIAL, max_examples=600)
    @given(st.binary(max_size=48), st.sampled_from(LIMITS))
    def test_garbage(self, data: bytes, limits: Limits) -> None:
        """
        Arbitrary bytes are decoded the same way, or refused by both, alone
        and as a batch.
        """
        self.assertAgree(data, limits)
        self.assertAgree(data, limits, many=True)
        self.assertAgree(b"\x92" + data, limits, many=True)

    def test_shortInputs(self) -> None:
        """
        Every input of one byte, and every two-byte input starting with a
        header byte, is decoded the same way or refused by both.
        """
        for first in range(256):
            self.assertAgree(bytes([first]))
            self.assertAgree(bytes([0x91, first]), many=True)
        for first in [*range(0x80, 0x83), *range(0x90, 0x93), *range(0xC0, 0xE0)]:
            for second in range(256):
                self.assertAgree(bytes([first, second]))
                self.assertAgree(bytes([first, second, 0x01]), SMALL)


class DepthTests(DifferentialTestCase):
    """
    C{maxDepth} binds exactly: every container on the longest path counts,
    empty ones included, whichever kind it is, for short and long inputs.
    """

    # Long inputs reach the reference's checking pass (over 64 bytes), its
    # depth pass without counting headers (over 4 kB), and its unpacker
    # that is not reused (over 64 kB).
    PADDINGS = [0, 100, 5000, 70000]

    def shapes(self, depth: int, pad: int) -> dict[str, object]:
        """
        @param depth: The depth wanted.
        @param pad: The length of a C{bytes} in the innermost container.
        @return: Values of that depth, by name.
        """
        filler = b"x" * pad
        value: Any = [filler]
        tupled: Any = (filler,)
        frozen: Any = frozenset({filler})
        mapped: Any = {1: filler}
        empty: Any = []
        for _ in range(depth - 1):
            value = [value]
            tupled = (tupled,)
            frozen = frozenset({frozen})
            mapped = {1: mapped}
            empty = [empty]
        shapes = {
            "list": value,
            "tuple": tupled,
            "frozenset": frozen,
            "dict": mapped,
            "emptyInnermost": [*empty, filler] if depth > 1 else empty,
        }
        if depth >= 2:
            # A set holding frozensets; a dict whose key is a tuple.
            shapes["set"] = set(frozen)
            shapes["tupleKey"] = {tupleNest(depth - 1, filler): None}
        if depth >= 3:
            shapes["tupleKeyInList"] = [{tupleNest(depth - 2, filler): None}]
        return shapes

    def assertDepthBinds(self, maxDepth: int, pads: list[int]) -> None:
        """
        Assert that values exactly C{maxDepth} deep are accepted, and one
        level deeper refused, alone and in a batch.

        @param maxDepth: The limit.
        @param pads: The paddings to try.
        """
        limits = Limits(maxDepth=maxDepth)
        for pad in pads:
            exact = self.shapes(maxDepth, pad)
            deeper = self.shapes(maxDepth + 1, pad)
            for name, value in exact.items():
                encoded = encode(value, accelerated=False)
                self.assertEqual(costs(value)["maxDepth"], maxDepth, name)
                self.assertAccepted(encoded, value, limits)
                self.assertBatchAccepted(b"\x92\xc0" + encoded, [None, value], limits)
            for name, value in deeper.items():
                encoded = encode(value, accelerated=False)
                self.assertEqual(costs(value)["maxDepth"], maxDepth + 1, name)
                self.assertRefused(encoded, limits)
                self.assertBatchRefused(b"\x92\xc0" + encoded, limits)

    def test_smallDepth(self) -> None:
        """
        With C{maxDepth} 1, 2 and 3, every kind of container binds exactly.
        """
        for maxDepth in (1, 2, 3):
            self.assertDepthBinds(maxDepth, self.PADDINGS)

    def test_defaultDepth(self) -> None:
        """
        With the default C{maxDepth} (64), every kind of container binds
        exactly, in short and long inputs.
        """
        self.assertDepthBinds(DEFAULT_LIMITS.maxDepth, self.PADDINGS)

    def test_deepestDepth(self) -> None:
        """
        With the deepest C{maxDepth} msgpack's parser allows (1024), arrays
        and maps bind exactly, alone and in a batch (which the reference
        then decodes a value at a time).
        """
        limits = Limits(maxDepth=1024)
        for maxDepth, accepted in ((1024, True), (1025, False)):
            for encoded in (
                nestedLists(maxDepth),
                nestedLists(maxDepth - 1, b"\x90"),
                b"\x81\xc0" * (maxDepth - 1) + b"\x80",
                nestedLists(maxDepth - 1, b"\x92\xc5\x13\x88" + b"z" * 5000 + b"\xc0"),
            ):
                self.assertEqual(self.assertAgree(encoded, limits)[0], accepted)
                self.assertEqual(
                    self.assertAgree(b"\x92\xc0" + encoded, limits, many=True)[0], accepted
                )

    def test_depthOverflowsNothing(self) -> None:
        """
        Inputs far deeper than any limit are refused, not decoded
        recursively.
        """
        for encoded in (nestedLists(100_000), b"\x81\xc0" * 50_000 + b"\xc0"):
            self.assertRefused(encoded)
            self.assertRefused(encoded, Limits(maxDepth=1024))
            self.assertBatchRefused(b"\x91" + encoded)

    def test_depthLimitBeyondParser(self) -> None:
        """
        A C{maxDepth} over what msgpack's parser allows (and so what
        L{Limits} allows) makes the C functions refuse every input, which
        leaves it to the reference decoder, rather than recurse that deep.
        """
        assert _speedups is not None
        limits = (*fastLimits(DEFAULT_LIMITS)[:1], 1025, *fastLimits(DEFAULT_LIMITS)[2:])
        self.assertRaises(ValueError, _speedups.decode, b"\xc0", *limits)
        self.assertRaises(ValueError, _speedups.decodeMany, b"\x91\xc0", *limits, 10)


class ItemAndObjectLimitTests(DifferentialTestCase):
    """
    C{maxItems}, C{maxObjects} and C{maxSize} bind exactly.
    """

    def test_maxItems(self) -> None:
        """
        A list of C{maxItems} items, a tuple, set or frozenset of one fewer
        (its marker counts), and a dict of C{maxItems} entries are
        accepted; one more is refused; with any array or map header.
        """
        limits = Limits(maxItems=4)
        for count, accepted in ((4, True), (5, False)):
            # Short items, and items long enough for the reference's
            # checking pass.
            for items in (
                [enc(number) for number in range(count)],
                [enc(bytes([number]) * 40) for number in range(count)],
            ):
                members = items[: count - 1]
                entries = b"".join(item + b"\xc0" for item in items)
                for encoded in (
                    bytes([0x90 + count]) + b"".join(items),
                    b"\xdc" + struct.pack(">H", count) + b"".join(items),
                    arrayHeader(count) + b"".join(items),
                    setOf(*members, marker=TUPLE_MARKER),
                    setOf(*members),
                    setOf(*members, marker=FROZENSET_MARKER),
                    arrayHeader(count) + SET_MARKER + b"".join(members),
                    bytes([0x80 + count]) + entries,
                    b"\xde" + struct.pack(">H", count) + entries,
                    mapHeader(count) + entries,
                    b"\x92\xc0" + mapHeader(count) + entries,
                ):
                    self.assertEqual(self.assertAgree(encoded, limits)[0], accepted, encoded.hex())
                    self.assertEqual(
                        self.assertAgree(b"\x91" + encoded, limits, many=True)[0], accepted
                    )

    def test_maxObjects(self) -> None:
        """
        A value making exactly C{maxObjects} objects (one per container,
        one per item, two per dict entry, markers counted) is accepted and
        one more is refused, in inputs long enough for the limit to bind;
        in a batch the limit applies to each value.
        """
        limits = Limits(maxObjects=20)
        exactly: list[object] = [
            [None] * 19,
            [[None] * 8, [None] * 7],
            [{number: None for number in range(8)}, None],
            (None,) * 18,
            [(1, 2), {3: 4}, {5}, frozenset(), [None]],
            [b"x" * 100] * 19,
        ]
        for value in exactly:
            encoded = enc(value)
            self.assertEqual(costs(value)["maxObjects"], 20, repr(value))
            self.assertGreater(len(encoded), limits.maxObjects // 2)
            self.assertAccepted(encoded, value, limits)
            self.assertBatchAccepted(b"\x93" + encoded * 3, [value] * 3, limits)
        for value in (
            [None] * 20,
            [[None] * 8, [None] * 8],
            {number: None for number in range(10)},
            (None,) * 19,
            [(1, 2), {3: 4}, {5}, frozenset(), [None, None]],
        ):
            encoded = enc(value)
            self.assertEqual(costs(value)["maxObjects"], 21, repr(value))
            self.assertRefused(encoded, limits)
            self.assertBatchRefused(b"\x92\xc0" + encoded, limits)

    def test_maxObjectsLarge(self) -> None:
        """
        The default C{maxObjects} (2**20) binds exactly on an input long
        enough (over half a megabyte).
        """
        # 3 + (1 + first) + (1 + second) objects.
        first = 2**19 - 2
        exact = b"\x92" + arrayHeader(first) + b"\xc0" * first
        exact += arrayHeader(first - 1) + b"\xc0" * (first - 1)
        self.assertTrue(self.assertAgree(exact)[0])
        over = b"\x92" + arrayHeader(first) + b"\xc0" * first
        over += arrayHeader(first) + b"\xc0" * first
        self.assertRefused(over)

    def test_maxSize(self) -> None:
        """
        An input of exactly C{maxSize} bytes is accepted, and one more byte
        refused, whatever kind of value it is.
        """
        for value in ([b"x" * 30], "y" * 40, {1: (2, 3)}, 2**80):
            encoded = encode(value, accelerated=False)
            self.assertAccepted(encoded, value, Limits(maxSize=len(encoded)))
            self.assertRefused(encoded, Limits(maxSize=len(encoded) - 1))
            self.assertBatchAccepted(b"\x91" + encoded, [value], Limits(maxSize=len(encoded) + 1))
            self.assertBatchRefused(b"\x91" + encoded, Limits(maxSize=len(encoded)))


class IntegerTests(DifferentialTestCase):
    """
    64-bit ints in every form, and big ints at every boundary.
    """

    def test_nonShortestInts(self) -> None:
        """
        Ints in forms longer than needed are accepted, as the same int.
        """
        for encoded, number in [
            (b"\xcc\x01", 1),
            (b"\xcd\x00\x01", 1),
            (b"\xce\x00\x00\x00\x01", 1),
            (b"\xcf" + (1).to_bytes(8, "big"), 1),
            (b"\xd0\x01", 1),
            (b"\xd0\xff", -1),
            (b"\xd1\xff\xff", -1),
            (b"\xd2\xff\xff\xff\xff", -1),
            (b"\xd3" + b"\xff" * 8, -1),
            (b"\xd3" + (2**63 - 1).to_bytes(8, "big"), 2**63 - 1),
            (b"\xd3\x80" + b"\x00" * 7, -(2**63)),
            (b"\xcf" + b"\xff" * 8, 2**64 - 1),
            (b"\xcf\x80" + b"\x00" * 7, 2**63),
            (b"\xce\xff\xff\xff\xff", 2**32 - 1),
            (b"\xd2\x80\x00\x00\x00", -(2**31)),
        ]:
            self.assertAccepted(encoded, number)
            self.assertIs(type(fastDecode(encoded)), int)

    def test_bigIntBoundaries(self) -> None:
        """
        A big int extension is accepted exactly when it is outside 64 bits,
        in its shortest form, and within C{maxIntBytes}: around 2**63,
        2**64, -2**63 and -2**64 and longer, in payloads of 1 to 12 bytes,
        with and without a redundant leading byte, in every ext form.
        """
        numbers = [
            0,
            -1,
            2**63 - 1,
            2**63,
            2**64 - 1,
            2**64,
            2**64 + 1,
            -(2**63),
            -(2**63) - 1,
            -(2**64) + 1,
            -(2**64),
            -(2**64) - 1,
            2**71 - 1,
            2**71,
            -(2**71),
            -(2**71) - 1,
            2**79,
            -(2**88),
        ]
        for maxIntBytes in (8, 9, 10, 11, 16, DEFAULT_LIMITS.maxIntBytes):
            limits = Limits(maxIntBytes=maxIntBytes)
            for number in numbers:
                for length in range(1, 13):
                    try:
                        payload = number.to_bytes(length, "big", signed=True)
                    except OverflowError:
                        continue
                    valid = (
                        not -(2**63) <= number < 2**64
                        and length == bigIntBytes(number)
                        and length <= maxIntBytes
                    )
                    forms = ["ext8", "ext16", "ext32"] + (
                        ["fixext"] if length in (1, 2, 4, 8) else []
                    )
                    for form in forms:
                        encoded = ext(6, payload, form)
                        accepted, value = self.assertAgree(encoded, limits)
                        self.assertEqual(accepted, valid, f"{number} in {encoded.hex()}")
                        if accepted:
                            self.assertEqual(value, number)
        self.assertAccepted(bigIntExt(2**64), 2**64)
        self.assertAccepted(bigIntExt(-(2**63) - 1), -(2**63) - 1)
        self.assertRefused(ext(6, b""))
        self.assertRefused(ext(6, b"\x00" * 16, "fixext"))
        self.assertAccepted(ext(6, b"\x01" + b"\x00" * 15, "fixext"), 2**120)

    def test_bigIntLengths(self) -> None:
        """
        With C{maxIntBytes} from 9 to 16, a big int of exactly that many
        bytes is accepted and one byte longer refused.
        """
        for maxIntBytes in range(9, 17):
            limits = Limits(maxIntBytes=maxIntBytes)
            for number in (2 ** (8 * maxIntBytes - 1) - 1, -(2 ** (8 * maxIntBytes - 1))):
                self.assertEqual(bigIntBytes(number), maxIntBytes)
                self.assertAccepted(bigIntExt(number), number, limits)
                self.assertRefused(bigIntExt(number * 256), limits)
                self.assertAccepted(bigIntExt(number * 256), number * 256)


class FloatTests(DifferentialTestCase):
    """
    Floats come back bit for bit.
    """

    def test_float64(self) -> None:
        """
        A float 64 is decoded bit for bit: signalling and quiet nans with
        payloads, infinities, -0.0, subnormals.
        """
        for bits in [
            "0000000000000000",
            "8000000000000000",
            "7ff0000000000000",
            "fff0000000000000",
            "7ff8000000000000",
            "7ff0000000000001",
            "fff8000000000123",
            "7fffffffffffffff",
            "0000000000000001",
            "3ff8000000000000",
        ]:
            encoded = b"\xcb" + bytes.fromhex(bits)
            accepted, value = self.assertAgree(encoded)
            self.assertTrue(accepted)
            self.assertEqual(struct.pack(">d", value).hex(), bits)

    def test_float32(self) -> None:
        """
        A float 32 (C{ca}, which NetStructer never writes but accepts) is
        decoded to the same float 64 bits as the reference gives: nans,
        -0.0, infinities and subnormals included.
        """
        for bits in [
            "00000000",
            "80000000",
            "7f800000",
            "ff800000",
            "7fc00000",
            "ffc00001",
            "7f800001",
            "7fbfffff",
            "00000001",
            "3fc00000",
            "7f7fffff",
        ]:
            encoded = b"\xca" + bytes.fromhex(bits)
            accepted, value = self.assertAgree(encoded)
            self.assertTrue(accepted)
            self.assertIs(type(value), float)
            if not math.isnan(struct.unpack(">f", bytes.fromhex(bits))[0]):
                self.assertEqual(struct.pack(">f", value).hex(), bits)
            self.assertTrue(self.assertAgree(b"\x92" + encoded + encoded)[0])

    def test_complex(self) -> None:
        """
        A complex extension is decoded bit for bit when its payload is 16
        bytes, in any ext form, and refused otherwise.
        """
        payload = bytes.fromhex("7ff0000000000001" + "8000000000000000")
        for form in ("fixext", "ext8", "ext16", "ext32"):
            accepted, value = self.assertAgree(ext(5, payload, form))
            self.assertTrue(accepted)
            assert isinstance(value, complex)
            self.assertEqual(struct.pack(">dd", value.real, value.imag), payload)
        for size in (0, 1, 8, 15, 17, 32):
            self.assertRefused(ext(5, b"\x00" * size))


class DuplicateAndHashTests(DifferentialTestCase):
    """
    Repeated, colliding and unhashable dict keys and set members.
    """

    def test_duplicates(self) -> None:
        """
        Keys or members that Python takes for the same are refused, in
        dicts, sets and frozensets: 1 and True, 0.0 and -0.0, 1 and 1.0
        and 1+0j, equal tuples and frozensets of different types.
        """
        for first, second in [
            (b"\x01", b"\xc3"),
            (b"\x00", b"\xc2"),
            (enc(0.0), enc(-0.0)),
            (b"\x01", enc(1.0)),
            (b"\x01", enc(1 + 0j)),
            (b"\xa1a", b"\xd9\x01a"),
            (b"\xc4\x01a", b"\xc5\x00\x01a"),
            (enc((1, 2)), enc((True, 2.0))),
            (enc(frozenset({1})), enc(frozenset({True}))),
            (bigIntExt(2**64), b"\xc7\x09\x06\x01" + b"\x00" * 8),
        ]:
            for limits in (DEFAULT_LIMITS, Limits(maxHashCollisions=1)):
                self.assertRefused(mapOf(first, b"\x01", second, b"\x02"), limits)
                self.assertRefused(setOf(first, second), limits)
                self.assertRefused(setOf(first, second, marker=FROZENSET_MARKER), limits)
                self.assertRefused(mapOf(b"\x05", b"\x00", first, b"\x01", second, b"\x02"), limits)
                # Repeats in a tuple are fine.
                self.assertTrue(self.assertAgree(setOf(first, second, marker=TUPLE_MARKER))[0])

    def test_nans(self) -> None:
        """
        Two nans are two keys, or two members: Python does not take them
        for the same (and neither are two tuples holding a nan each).
        """
        nan = enc(float("nan"))
        nanTuple = b"\x92" + TUPLE_MARKER + nan
        for limits in (DEFAULT_LIMITS, Limits(maxHashCollisions=1)):
            for encoded, size in [
                (setOf(nan, nan), 2),
                (setOf(nan, nan, nan, marker=FROZENSET_MARKER), 3),
                (mapOf(nan, b"\x01", nan, b"\x02"), 2),
                (setOf(nanTuple, nanTuple), 2),
                (mapOf(nanTuple, b"\x01", nanTuple, b"\x02"), 2),
            ]:
                accepted, value = self.assertAgree(encoded, limits)
                self.assertTrue(accepted)
                self.assertEqual(len(value), size)

    def test_collisions(self) -> None:
        """
        Members or keys whose hashes collide (-1 and -2; 0 and the
        multiples of 2**61-1) are accepted up to C{maxHashCollisions}
        sharing one hash, and refused beyond; whether or not the container
        holds more members than the limit.
        """
        colliding = [enc(k * P61) for k in range(6)]
        others = [b"\xa1" + bytes([ord("a") + k]) for k in range(6)]
        for maxCollisions in (1, 2, 3, 5):
            limits = Limits(maxHashCollisions=maxCollisions)
            for share in (maxCollisions, maxCollisions + 1):
                for extra in (0, 1, 3):
                    members = colliding[:share] + others[:extra]
                    accepted = share <= maxCollisions
                    entries = [part for member in members for part in (member, b"\xc0")]
                    for encoded in (
                        setOf(*members),
                        setOf(*members, marker=FROZENSET_MARKER),
                        mapOf(*entries),
                        b"\x91" + mapOf(*entries),
                    ):
                        self.assertEqual(self.assertAgree(encoded, limits)[0], accepted)
        # -1 and -2 share the hash -2.
        self.assertRefused(setOf(b"\xff", b"\xfe"), Limits(maxHashCollisions=1))
        self.assertRefused(setOf(b"\xff", b"\xfe", b"\x01"), Limits(maxHashCollisions=1))
        self.assertAccepted(
            setOf(b"\xff", b"\xfe", b"\x01"), {-1, -2, 1}, Limits(maxHashCollisions=2)
        )
        self.assertRefused(mapOf(b"\xff", b"\xc0", b"\xfe", b"\xc0"), Limits(maxHashCollisions=1))
        # Tuples of colliding members collide too.
        tuples = [b"\x92" + TUPLE_MARKER + member for member in colliding[:3]]
        self.assertRefused(setOf(*tuples), Limits(maxHashCollisions=2))
        self.assertTrue(self.assertAgree(setOf(*tuples), Limits(maxHashCollisions=3))[0])

    def test_unhashable(self) -> None:
        """
        A list, dict, set or bytearray as a key or member, or inside a tuple
        or frozenset that is one, is refused, whether or not the container
        holds more members than C{maxHashCollisions}.
        """
        for bad in [
            b"\x90",
            b"\x91\x01",
            b"\x80",
            b"\x81\x01\x02",
            b"\x91" + SET_MARKER,
            ext(4, b"ab"),
            b"\x92" + TUPLE_MARKER + b"\x90",
            b"\x93" + TUPLE_MARKER + b"\x01\x81\x01\x01",
            b"\x92" + TUPLE_MARKER + b"\x92" + TUPLE_MARKER + ext(4, b""),
        ]:
            for limits in (DEFAULT_LIMITS, Limits(maxHashCollisions=1)):
                self.assertRefused(mapOf(bad, b"\x01"), limits)
                self.assertRefused(mapOf(b"\x01", b"\x01", bad, b"\x01"), limits)
                self.assertRefused(setOf(bad), limits)
                self.assertRefused(setOf(b"\x01", bad, marker=FROZENSET_MARKER), limits)
                # As a value or a tuple item it is fine.
                self.assertTrue(self.assertAgree(mapOf(b"\x01", bad), limits)[0])
                self.assertTrue(self.assertAgree(setOf(bad, marker=TUPLE_MARKER), limits)[0])
        # A frozenset of a list is refused even as a value.
        self.assertRefused(b"\x92" + FROZENSET_MARKER + b"\x90")
        self.assertRefused(b"\x92" + SET_MARKER + b"\x91\x01", Limits(maxHashCollisions=1))


class FormTests(DifferentialTestCase):
    """
    Every msgpack form NetStructer does not write but must accept, and every
    one it must refuse.
    """

    def test_nonShortestForms(self) -> None:
        """
        str, bin, ext, array and map headers longer than needed are
        accepted, as the same values.
        """
        for encoded, value in [
            (b"\xd9\x01a", "a"),
            (b"\xda\x00\x01a", "a"),
            (b"\xdb\x00\x00\x00\x01a", "a"),
            (b"\xd9\x00", ""),
            (b"\xc4\x00", b""),
            (b"\xc5\x00\x01a", b"a"),
            (b"\xc6\x00\x00\x00\x01a", b"a"),
            (ext(4, b"a", "ext8"), bytearray(b"a")),
            (ext(4, b"a", "ext16"), bytearray(b"a")),
            (ext(4, b"a", "ext32"), bytearray(b"a")),
            (ext(4, b"", "ext32"), bytearray()),
            (ext(4, b"abcd", "fixext"), bytearray(b"abcd")),
            (ext(4, b"x" * 16, "ext8"), bytearray(b"x" * 16)),
            (b"\xdc\x00\x00", []),
            (b"\xdc\x00\x01\x01", [1]),
            (b"\xdd\x00\x00\x00\x01\x01", [1]),
            (b"\xdc\x00\x02" + TUPLE_MARKER + b"\x01", (1,)),
            (b"\xde\x00\x00", {}),
            (b"\xde\x00\x01\x01\x02", {1: 2}),
            (b"\xdf\x00\x00\x00\x01\x01\x02", {1: 2}),
            (b"\x91\xc8\x00\x00\x01", ()),
            (b"\x92\xc9\x00\x00\x00\x00\x02\x01", {1}),
            (b"\x92\xc8\x00\x00\x03\x01", frozenset({1})),
        ]:
            self.assertAccepted(encoded, value)
            self.assertAccepted(b"\x91" + encoded, [value])

    def test_hugeClaims(self) -> None:
        """
        Lengths claiming more bytes or items than the input holds are
        refused: ext 32 up to 4 GiB, bin, str, arrays and maps.
        """
        for encoded in [
            b"\xc9\xff\xff\xff\xff\x04",
            b"\xc9\xff\xff\xff\xff\x04" + b"x" * 100,
            b"\xc9\x00\x00\x00\x10\x05" + b"\x00" * 15,
            b"\xc6\xff\xff\xff\xff" + b"x" * 100,
            b"\xdb\xff\xff\xff\xff" + b"x" * 100,
            b"\xdd\xff\xff\xff\xff" + b"\xc0" * 100,
            b"\xdf\xff\xff\xff\xff" + b"\xc0" * 100,
            b"\xdc\x00\x03\xc0\xc0",
            b"\xde\x00\x02\xc0\xc0\xc0",
            b"\x93\xc0\xc0",
            b"\x82\xc0\xc0\xc0",
            b"\xc4\x05abcd",
            b"\xa5abcd",
        ]:
            self.assertRefused(encoded)
            self.assertRefused(b"\x92\xc0" + encoded)

    def test_truncations(self) -> None:
        """
        Every proper prefix of a value holding every type is refused, and
        so is the value with a byte more.
        """
        value = [
            None,
            True,
            -1,
            2**64 - 1,
            -(2**63),
            2**100,
            -(2**100),
            1.5,
            -0.0,
            3 - 4j,
            "é" * 20,
            b"x" * 300,
            bytearray(b"ab"),
            (1, (2,)),
            {3, frozenset({4})},
            {"k": [{5: 6}], (7,): None},
            "s" * 70000,
        ]
        encoded = encode(value, accelerated=False)
        self.assertAccepted(encoded, value)
        for end in [*range(len(encoded) - 70010), *range(len(encoded) - 10, len(encoded))]:
            self.assertRefused(encoded[:end])
        for extra in (b"\x00", b"\xc0", b"\xc1", b"\x91"):
            self.assertRefused(encoded + extra)
            self.assertRefused(b"\x01" + extra)
        self.assertRefused(b"")
        self.assertBatchRefused(b"")

    def test_reservedByte(self) -> None:
        """
        The never-used byte C{c1} is refused anywhere.
        """
        for encoded in (b"\xc1", b"\x91\xc1", b"\x81\xc1\x01", b"\x81\x01\xc1", setOf(b"\xc1")):
            self.assertRefused(encoded)
            self.assertBatchRefused(b"\x91" + encoded)

    def test_markersWithPayloads(self) -> None:
        """
        A marker code with a payload is refused, in any ext form, first in
        an array or anywhere else.
        """
        for code in (1, 2, 3):
            for payload, form in [
                (b"\x00", "fixext"),
                (b"\x00\x00", "fixext"),
                (b"\x00", "ext8"),
                (b"\x00", "ext16"),
                (b"\x00" * 3, "ext32"),
            ]:
                marker = ext(code, payload, form)
                for encoded in (
                    marker,
                    b"\x91" + marker,
                    b"\x92" + marker + b"\x01",
                    b"\x92\x01" + marker,
                ):
                    self.assertRefused(encoded)

    def test_misplacedMarkers(self) -> None:
        """
        A marker is accepted only first in an array, in any ext 8/16/32
        form; anywhere else it is refused: alone, second in an array, after
        another marker, as a map key or value, nested, first in a batch.
        """
        for marker in (
            TUPLE_MARKER,
            SET_MARKER,
            FROZENSET_MARKER,
            b"\xc8\x00\x00\x01",
            b"\xc9\x00\x00\x00\x00\x02",
        ):
            self.assertTrue(self.assertAgree(b"\x91" + marker)[0])
            self.assertTrue(self.assertAgree(b"\x92" + marker + b"\x01")[0])
            for encoded in (
                marker,
                b"\x92\x01" + marker,
                b"\x92" + marker + marker,
                b"\x93" + TUPLE_MARKER + b"\x01" + marker,
                mapOf(marker, b"\x01"),
                mapOf(b"\x01", marker),
                b"\x91\x92\x01" + marker,
                b"\x92\x91" + marker + marker,
                b"\x92" + TUPLE_MARKER + b"\x92\x01" + marker,
                mapOf(b"\x01", b"\x92\x02" + marker),
                b"\xdc\x00\x02\x01" + marker,
            ):
                self.assertRefused(encoded)
                self.assertBatchRefused(b"\x91" + encoded)
            for body in (
                b"\x91" + marker,
                b"\x92" + marker + b"\x01",
                b"\xdc\x00\x02" + marker + b"\x01",
                arrayHeader(2) + marker + b"\x01",
                b"\x92\x01" + marker,
            ):
                self.assertBatchRefused(body)

    def test_unknownExtensions(self) -> None:
        """
        Extension codes other than 1 to 6 are refused, in every form: 0, 7,
        127, -128, -2 and -1 (msgpack's timestamp, in its valid lengths
        too), alone, in a container, and as a key.
        """
        for code in (0, 7, 8, 127, -128, -2, -1):
            for payload, form in [
                (b"", "ext8"),
                (b"\x00", "fixext"),
                (b"\x00" * 4, "fixext"),
                (b"\x00" * 8, "fixext"),
                (b"\x00" * 16, "fixext"),
                (b"\x00" * 12, "ext8"),
                (b"\x00" * 4, "ext16"),
                (b"\x00" * 8, "ext32"),
            ]:
                encoded = ext(code, payload, form)
                self.assertRefused(encoded)
                self.assertRefused(b"\x92\x01" + encoded)
                self.assertRefused(mapOf(encoded, b"\x01"))
                self.assertRefused(setOf(encoded))
                self.assertBatchRefused(b"\x92\x01" + encoded)

    def test_utf8(self) -> None:
        """
        A str is accepted exactly when it is valid UTF-8: not encoded
        surrogates, overlong forms, truncated sequences, stray continuation
        bytes or code points over U+10FFFF.
        """
        for raw in [
            b"",
            b"a",
            "é".encode(),
            "\U0010ffff".encode(),
            "\ufeff".encode(),
            b"\xed\xa0\x80",
            b"\xed\xbf\xbf",
            b"\xed\x9f\xbf",
            b"\xc0\x80",
            b"\xe0\x80\x80",
            b"\xf4\x90\x80\x80",
            b"\xf4\x8f\xbf\xbf",
            b"\xf0\x9f\x98",
            b"\x80",
            b"\xff",
            b"a\x00b",
            b"x" * 40 + b"\xc3",
        ]:
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                text = None
            header = bytes([0xA0 + len(raw)]) if len(raw) < 32 else b"\xd9" + bytes([len(raw)])
            encoded = header + raw
            for whole in (encoded, b"\x91" + encoded, mapOf(encoded, b"\x01")):
                accepted, _ = self.assertAgree(whole)
                self.assertEqual(accepted, text is not None, raw.hex())
            if text is not None:
                self.assertAccepted(encoded, text)


class InputTypeTests(DifferentialTestCase):
    """
    The C functions take any buffer of bytes, contiguous or not; anything
    else they leave to the reference decoder.
    """

    SAMPLES = [
        encode(
            ["hi im haytam", 128, {b"gg": "gg"}, {1, 2, 6, 4}, (False, True)], accelerated=False
        ),
        b"\xc0",
        b"\x91",
        b"\xc1",
        b"\x92\x01\x02\x03",
        encode([b"x" * 5000], accelerated=False),
        b"\xc5\x13\x88" + b"z" * 5000,
        b"\xda\x13\x88" + b"z" * 5000,
        b"\xda\x13\x88" + b"z" * 4999,
    ]

    def views(self, data: bytes) -> list[Any]:
        """
        @param data: Some bytes.
        @return: Buffers showing them: a bytearray, memoryviews contiguous
            and not, an array.
        """
        spread = bytes(
            byte for pair in zip(data, b"\xaa" * len(data), strict=True) for byte in pair
        )
        return [
            bytearray(data),
            memoryview(data),
            memoryview(b"xy" + data)[2:],
            memoryview(spread)[::2],
            memoryview(bytearray(data)).toreadonly(),
            array.array("B", data),
            memoryview(data).cast("c"),
        ]

    def test_buffers(self) -> None:
        """
        A bytearray, a memoryview (with a step or not) or an array of bytes
        is decoded as the same bytes are, or refused as they are.
        """
        for data in self.SAMPLES:
            accepted, value = self.assertAgree(data)
            for view in self.views(data):
                if accepted:
                    self.assertTrue(exactlySame(fastDecode(view), value), type(view))
                    self.assertTrue(exactlySame(Decoder().decode(view), value))
                else:
                    self.assertRaises(ValueError, fastDecode, view)
                    self.assertRaises(DecodeError, Decoder().decode, view)
                self.assertEqual(self.assertAgree(view)[0], accepted)
            body = b"\x92\xc0" + data
            accepted, value = self.assertAgree(body, many=True)
            for view in self.views(body):
                self.assertEqual(self.assertAgree(view, many=True)[0], accepted)

    def test_notBytes(self) -> None:
        """
        A buffer of items longer than a byte, and an object that is no
        buffer at all, are refused by the C functions, so that the
        reference decoder decides what they mean; an accelerated
        L{Decoder} then does exactly what the reference does.
        """
        for data in (
            memoryview(b"\x92\x01\x02\x03").cast("H"),
            memoryview(b"\xc4\x02ab").cast("I"),
            array.array("H", [0x91C0]),
            [0x91, 0xC0],
            "abc",
            7,
        ):
            self.assertRaises(ValueError, fastDecode, data)
            self.assertRaises(ValueError, fastDecodeMany, data)
            for method in ("decode", "decodeMany"):
                try:
                    expected: object = getattr(Decoder(accelerated=False), method)(data)
                except (TypeError, ValueError, BufferError) as e:
                    expected = type(e)
                try:
                    got: object = getattr(Decoder(), method)(data)
                except (TypeError, ValueError, BufferError) as e:
                    got = type(e)
                self.assertTrue(
                    sameValue(got, expected), f"{short(data)}: {short(got)} != {short(expected)}"
                )

    def test_hugeLimits(self) -> None:
        """
        Limits beyond the range of a C size (L{Limits} takes any positive
        int) are as good as infinite, and C{maxValues} too; a C{maxValues}
        that is no int is left to the reference decoder.
        """
        huge = Limits(
            maxSize=2**80,
            maxItems=2**70,
            maxIntBytes=2**65,
            maxObjects=2**100,
            maxHashCollisions=2**64,
        )
        data = encode([2**5000, {1: (2,)}, "x"], accelerated=False)
        self.assertAccepted(data, [2**5000, {1: (2,)}, "x"], huge)
        self.assertTrue(sameValue(Decoder(huge).decode(data), [2**5000, {1: (2,)}, "x"]))
        self.assertBatchAccepted(b"\x92\x01\x02", [1, 2], huge, 2**70)
        self.assertBatchAccepted(b"\x92\x01\x02", [1, 2], DEFAULT_LIMITS, 2**70)
        self.assertBatchRefused(b"\x92\x01\x02", DEFAULT_LIMITS, -(2**70))
        self.assertBatchRefused(b"\x92\x01\x02", DEFAULT_LIMITS, 0)
        self.assertBatchRefused(b"\x92\x01\x02", DEFAULT_LIMITS, -1)
        self.assertRaises(ValueError, fastDecodeMany, b"\x92\x01\x02", DEFAULT_LIMITS, 2.5)
        self.assertEqual(Decoder().decodeMany(b"\x92\x01\x02", 2.5), [1, 2])
        self.assertRaises(DecodeError, Decoder().decodeMany, b"\x92\x01\x02", 1.5)


class DecodeManyTests(DifferentialTestCase):
    """
    Batches: the header, the count and C{maxValues}, and limits applied to
    each value.
    """

    def test_headers(self) -> None:
        """
        A batch may start with any array header; not with a map or anything
        else, nor hold no value, nor a truncated header.
        """
        for form in ("fixarray", "array16", "array32"):
            self.assertBatchAccepted(batchOf([b"\x01", b"\xa1x"], form), [1, "x"])
            self.assertBatchAccepted(batchOf([b"\x91\x01"], form), [[1]])
            self.assertBatchRefused(batchOf([], form))
        for body in (
            b"\x90",
            b"\xdc\x00\x00",
            arrayHeader(0),
            b"\xdc\x00",
            b"\xdd\x00\x00\x01",
            b"\x81\x01\x01",
            b"\xde\x00\x01\x01\x01",
            b"\x01",
            b"\xc0",
            b"\xc4\x01a",
        ):
            self.assertBatchRefused(body)

    def test_counts(self) -> None:
        """
        A batch of exactly C{maxValues} values is accepted and one more
        refused; so is one claiming more values than it has bytes left, or
        followed by more bytes.
        """
        for maxValues in (1, 2, 5):
            for form in ("fixarray", "array16", "array32"):
                body = batchOf([b"\xc0"] * maxValues, form)
                self.assertBatchAccepted(body, [None] * maxValues, maxValues=maxValues)
                self.assertBatchRefused(body, maxValues=maxValues - 1)
                self.assertBatchRefused(
                    batchOf([b"\xc0"] * (maxValues + 1), form), maxValues=maxValues
                )
                self.assertBatchRefused(body + b"\xc0", maxValues=maxValues + 1)
                self.assertBatchRefused(body[:-1])
        self.assertBatchRefused(b"\xdd\x00\x00\xff\xff\x01")
        self.assertBatchRefused(b"\xdc\xff\xff" + b"\xc0" * 100)
        self.assertBatchRefused(b"\x92\x01\x02\x03")

    def test_moreValuesThanMaxItems(self) -> None:
        """
        A batch may hold more values than C{maxItems} when C{maxValues}
        allows it (the reference then decodes a value at a time).
        """
        limits = Limits(maxItems=3)
        body = batchOf([b"\x01"] * 6, "array16")
        self.assertBatchAccepted(body, [1] * 6, limits, maxValues=6)
        self.assertBatchRefused(body, limits)
        self.assertBatchRefused(batchOf([b"\x94\x01\x01\x01\x01"] * 6), limits, maxValues=6)

    def test_eachValueLimited(self) -> None:
        """
        C{maxDepth}, C{maxItems} and C{maxObjects} apply to each value of a
        batch, not to the batch: values at each limit are accepted however
        many there are, and one over is refused wherever it is.
        """
        depth = Limits(maxDepth=3)
        objects = Limits(maxObjects=10)
        items = Limits(maxItems=4)
        atDepth = nestedLists(3)
        overDepth = nestedLists(4)
        atObjects = encode([[1, 2], [3, 4, 5]], accelerated=False)  # 3 + 3 + 4 objects.
        overObjects = encode([[1, 2], [3, 4, 5, 6]], accelerated=False)
        atItems = b"\x94\x01\x02\x03\x04"
        overItems = b"\x95\x01\x02\x03\x04\x05"
        for limits, good, bad in (
            (depth, atDepth, overDepth),
            (objects, atObjects, overObjects),
            (items, atItems, overItems),
        ):
            for count in (1, 2, 7):
                goodValue = fastDecode(good)
                self.assertBatchAccepted(
                    batchOf([good] * count), [goodValue] * count, limits, maxValues=100
                )
                self.assertBatchAccepted(
                    batchOf([good] * count + [b"\xc4\x40" + b"p" * 64], "array32"),
                    [goodValue] * count + [b"p" * 64],
                    limits,
                    maxValues=100,
                )
                for where in range(count):
                    values = [good] * count
                    values[where] = bad
                    self.assertBatchRefused(batchOf(values), limits, maxValues=100)

    def test_markersInBatches(self) -> None:
        """
        A batch whose first value is a marker (which would make it a tuple or
        set) is refused, in any ext form; so is a marker later on; a tuple or
        set as a value is fine.
        """
        for marker in (
            TUPLE_MARKER,
            SET_MARKER,
            FROZENSET_MARKER,
            b"\xc8\x00\x00\x02",
            b"\xc9\x00\x00\x00\x00\x03",
        ):
            self.assertBatchRefused(b"\x91" + marker)
            self.assertBatchRefused(b"\x92" + marker + b"\x01")
            self.assertBatchRefused(b"\x92\x01" + marker)
            self.assertBatchAccepted(
                b"\x91\x92" + marker + b"\x01", [fastDecode(b"\x92" + marker + b"\x01")]
            )
        self.assertBatchRefused(b"\x92\xd4\x01\x00\x01")
        self.assertBatchAccepted(b"\x92\xc7\x00\x04\x01", [bytearray(), 1])
