# -*- test-case-name: tests.test_fuzz_short -*-
"""
Fuzz the value decoder, L{netstructer.values.decode}: the C accelerator
against the reference implementation, a reused decoder against a fresh one,
and each decoded value against its re-encoding.

Run it with atheris (coverage-guided, libFuzzer underneath; see
C{fuzz/README.rst})::

    PYTHONPATH=. python fuzz/fuzz_values.py -max_total_time=3600 \\
        /tmp/values-corpus fuzz/corpus/values

or, without atheris, as a long hypothesis run::

    PYTHONPATH=. python fuzz/fuzz_values.py --hypothesis 100000

An input's first byte chooses the limits (bit 0: the defaults, or small
ones); the rest is the encoded value.  "The same value" below means the
same types at every level, the same floats bit for bit, lists, tuples and
dicts in the same order (sets in any order).  The oracle:

    - decoding raises only L{DecodeError};
    - a reused L{Decoder} (which keeps state between calls) and a fresh
      L{decode} agree: both refuse, or both return the same value;
    - the accelerated decoder (L{Decoder}, using the C accelerator
      C{netstructer._speedups} where it is built) and the reference one
      (C{Decoder(limits, accelerated=False)}) agree, in L{Decoder.decode}
      and in L{Decoder.decodeMany} (of the input, and of the input as the
      one value of a batch): both refuse, or both return the same value;
    - so do the accelerator's own C{decode} and C{decodeMany}, called
      directly (a refusal is then a C{ValueError}, which L{Decoder} would
      hide by running the reference): they refuse exactly the inputs the
      reference refuses, and return the same values;
    - a decoded value re-encodes (L{encode} with the same limits), and
      decoding that gives back the same value;
    - L{Decoder.decodeMany} raises only L{DecodeError} on the input, and
      on the input as the one value of a batch it gives the value
      L{decode} gives, or refuses as it does (when the batch is within
      C{maxSize}).

Anything else is a crash.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import struct
import sys
from pathlib import Path
from types import ModuleType
from typing import Any, cast

try:
    import atheris
except ImportError:  # Only the hypothesis mode and the target are usable.
    atheris = None

_instrument: contextlib.AbstractContextManager[object] = contextlib.nullcontext()
if atheris is not None and __name__ == "__main__" and "--hypothesis" not in sys.argv:
    _instrument = atheris.instrument_imports(include=["netstructer"])

with _instrument:
    from netstructer.errors import DecodeError, EncodeError
    from netstructer.values import DEFAULT_LIMITS, Decoder, Limits, decode, encode

_speedups: ModuleType | None
try:
    _speedups = importlib.import_module("netstructer._speedups")
except ImportError:  # Not built: only the reference runs, and is compared with itself.
    _speedups = None

__all__ = ["SMALL_LIMITS", "canonical", "seeds", "testOneInput"]

SMALL_LIMITS = Limits(
    maxDepth=4, maxItems=16, maxSize=512, maxIntBytes=8, maxObjects=64, maxHashCollisions=2
)
"""The small limits bit 0 of the first byte chooses."""

_DECODERS = {DEFAULT_LIMITS: Decoder(DEFAULT_LIMITS), SMALL_LIMITS: Decoder(SMALL_LIMITS)}
_REFERENCES = {
    DEFAULT_LIMITS: Decoder(DEFAULT_LIMITS, accelerated=False),
    SMALL_LIMITS: Decoder(SMALL_LIMITS, accelerated=False),
}


class FuzzFailure(AssertionError):
    """
    The codec broke its contract: a crash for the fuzzer.
    """


def canonical(value: object) -> object:
    """
    A form of C{value} that compares equal exactly when two values are the
    same: same types at every level, floats bit for bit (so C{nan} equals
    itself and C{-0.0} differs from C{0.0}), lists, tuples and dicts in
    order, sets and frozensets whatever their order.

    @param value: A decoded value.
    @return: Its canonical form.
    """
    kind = type(value)
    if kind is float:
        return ("float", struct.pack(">d", value))
    if kind is complex:
        number: complex = value  # type: ignore[assignment]
        return ("complex", struct.pack(">dd", number.real, number.imag))
    if kind is list or kind is tuple:
        return (kind.__name__, tuple(canonical(item) for item in value))  # type: ignore[attr-defined]
    if kind is set or kind is frozenset:
        members = sorted(repr(canonical(item)) for item in value)  # type: ignore[attr-defined]
        return (kind.__name__, tuple(members))
    if kind is dict:
        items = value.items()  # type: ignore[attr-defined]
        return ("dict", tuple((canonical(k), canonical(v)) for k, v in items))
    return (kind.__name__, value)


def _outcome(decodeOnce: Any, data: bytes) -> tuple[str, object]:
    """
    @return: C{("value", value)} or C{("refused", error)}.
    @raise FuzzFailure: Decoding raised anything but L{DecodeError}.
    """
    try:
        return "value", decodeOnce(data)
    except DecodeError as e:
        return "refused", e
    except Exception as e:
        raise FuzzFailure(f"decoding raised {type(e).__name__}: {e}") from e


def _fastOutcome(call: Any, data: bytes) -> tuple[str, object]:
    """
    @param call: A function of the C accelerator, with its limits bound.
    @param data: The input.
    @return: C{("value", value)} or C{("refused", error)}.
    @raise FuzzFailure: It raised anything but C{ValueError}.
    """
    try:
        return "value", call(data)
    except ValueError as e:
        return "refused", e
    except Exception as e:
        raise FuzzFailure(f"the accelerator raised {type(e).__name__}: {e}") from e


def _agree(what: str, one: tuple[str, object], other: tuple[str, object], data: bytes) -> None:
    """
    Check that two outcomes agree: both refusals, or the same value.

    @param what: Which two decoders, for the message.
    @param one: The first outcome.
    @param other: The second outcome.
    @param data: The input, for the message.
    @raise FuzzFailure: They disagree.
    """
    if one[0] != other[0]:
        raise FuzzFailure(f"{what} disagree on {data.hex()}: {one!r} and {other!r}")
    if one[0] == "value" and canonical(one[1]) != canonical(other[1]):
        raise FuzzFailure(f"{what} decode {data.hex()} differently: {one[1]!r} and {other[1]!r}")


def _compareImplementations(limits: Limits, body: bytes) -> None:
    """
    Decode an input as a value and as batches, with the accelerated and
    the reference decoders and with the C functions directly, and check
    that they all agree.

    @param limits: The limits.
    @param body: The input.
    @raise FuzzFailure: Two of them disagree, or one raised anything but
        its refusal.
    """
    reference = _REFERENCES[limits]
    fastArgs = (
        limits.maxSize,
        limits.maxDepth,
        limits.maxItems,
        limits.maxIntBytes,
        limits.maxObjects,
        limits.maxHashCollisions,
    )
    expected = _outcome(reference.decode, body)
    _agree(
        "the accelerated and reference decoders",
        _outcome(_DECODERS[limits].decode, body),
        expected,
        body,
    )
    batches = [body]
    if len(body) < limits.maxSize:
        batches.append(b"\x91" + body)
    for batch in batches:
        _agree(
            "the accelerated and reference decodeMany",
            _outcome(_DECODERS[limits].decodeMany, batch),
            _outcome(reference.decodeMany, batch),
            batch,
        )
    if _speedups is not None:
        fast = _speedups
        _agree(
            "_speedups.decode and the reference decoder",
            _fastOutcome(lambda b: fast.decode(b, *fastArgs), body),
            expected,
            body,
        )
        for batch in batches:
            _agree(
                "_speedups.decodeMany and the reference decodeMany",
                _fastOutcome(lambda b: fast.decodeMany(b, *fastArgs, limits.maxItems), batch),
                _outcome(reference.decodeMany, batch),
                batch,
            )


def testOneInput(data: bytes) -> None:
    """
    Run one input (see the module docstring for its format).

    @param data: The input.
    @raise FuzzFailure: The codec broke its contract.
    """
    if not data:
        return
    limits = SMALL_LIMITS if data[0] & 1 else DEFAULT_LIMITS
    body = data[1:]
    _compareImplementations(limits, body)
    reused, value = _outcome(_DECODERS[limits].decode, body)
    fresh, freshValue = _outcome(lambda b: decode(b, limits=limits), body)
    if reused != fresh:
        raise FuzzFailure(f"a reused Decoder says {reused}, decode() says {fresh}")
    _outcome(_DECODERS[limits].decodeMany, body)
    if len(body) < limits.maxSize:
        alone, batch = _outcome(_DECODERS[limits].decodeMany, b"\x91" + body)
        if alone != reused:
            raise FuzzFailure(f"a batch of the input says {alone}, decode() says {reused}")
        if alone == "value" and canonical(batch) != canonical([value]):
            raise FuzzFailure(f"a batch of the input gave {batch!r}, decode() gave {value!r}")
    if reused == "refused":
        return
    if canonical(value) != canonical(freshValue):
        raise FuzzFailure(f"a reused Decoder gave {value!r}, decode() gave {freshValue!r}")
    try:
        encoded = encode(value, limits=limits)
    except EncodeError as e:
        raise FuzzFailure(f"{value!r} was decoded but does not encode: {e}") from e
    # Floats always encode as float64, so the encoding may be longer.
    relaxed = dataclasses.replace(limits, maxSize=max(limits.maxSize, len(encoded)))
    try:
        again = decode(encoded, limits=relaxed)
    except DecodeError as e:
        raise FuzzFailure(f"{value!r} encodes to {encoded.hex()}, which is refused: {e}") from e
    if canonical(again) != canonical(value):
        raise FuzzFailure(f"{value!r} comes back as {again!r}")


EXAMPLE_VALUE: Any = ["hi im haytam", 128, {b"gg": "gg"}, {1, 2, 6, 4}, (False, True)]


def seeds() -> dict[str, bytes]:
    """
    The seed corpus: encodings made by the library.

    @return: File names and inputs.
    """
    return {
        "example": b"\x00" + encode(EXAMPLE_VALUE),
        "scalars": b"\x00" + encode([None, True, -1, 2**64 - 1, 1.5, -0.0, "é", b"\x00"]),
        "bigint-complex-bytearray": b"\x00" + encode([-(2**100), 3 - 4j, bytearray(b"ab")]),
        "frozenset-keys": b"\x00" + encode({frozenset({1, 2}): {(1, "a"): None}}),
        "nested-small-limits": b"\x01" + encode([[[(1,)]], {2: {3}}]),
        "timestamp-ext": b"\x00" + b"\xd6\xff\x00\x00\x00\x01",
        # Checking for timestamps once took time exponential in the nesting
        # of sets: this took about a day.
        "timestamp-nested-sets": b"\x00\x92"
        + encode(_nestedFrozensets(40))
        + b"\xd6\xff\x00\x00\x00\x00",
    }


def _nestedFrozensets(depth: int) -> frozenset[object]:
    """
    @param depth: How many frozensets to nest.
    @return: C{-1} in that many nested frozensets.
    """
    nested: object = -1
    for _ in range(depth):
        nested = frozenset([nested])
    return cast("frozenset[object]", nested)


def writeSeeds(directory: Path) -> None:
    """
    Write the seed corpus to C{directory}.
    """
    directory.mkdir(parents=True, exist_ok=True)
    for name, data in seeds().items():
        (directory / name).write_bytes(data)


def hypothesisInputs() -> Any:
    """
    @return: A hypothesis strategy of inputs in this target's format:
        encodings of generated values, sometimes mutated, and raw bytes.
    """
    from hypothesis import strategies as st

    scalars = st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.floats(),
        st.complex_numbers(),
        st.text(max_size=8),
        st.binary(max_size=8),
    )
    hashables = st.recursive(
        scalars, lambda inner: st.tuples(inner, inner) | st.frozensets(inner, max_size=3)
    )
    values = st.recursive(
        scalars,
        lambda inner: st.one_of(
            st.lists(inner, max_size=4),
            st.tuples(inner, inner),
            st.sets(hashables, max_size=4),
            st.dictionaries(hashables, inner, max_size=4),
            st.binary(max_size=8).map(bytearray),
        ),
        max_leaves=16,
    )

    def mutate(encoded: bytes, position: int, byte: int, cut: bool) -> bytes:
        """
        @return: C{encoded} cut at, or with one byte replaced at, C{position}.
        """
        if not encoded:
            return encoded
        position %= len(encoded)
        if cut:
            return encoded[:position]
        return encoded[:position] + bytes((byte,)) + encoded[position + 1 :]

    encodings = values.map(encode)
    mutated = st.builds(mutate, encodings, st.integers(0, 255), st.integers(0, 255), st.booleans())
    bodies = st.one_of(encodings, mutated, st.binary(max_size=64))
    return st.builds(lambda config, body: bytes((config,)) + body, st.integers(0, 1), bodies)


def main(argv: list[str]) -> None:
    """
    Fuzz the value decoder (see L{fuzz_channel.fuzzMain}).
    """
    from fuzz_channel import fuzzMain

    fuzzMain(argv, testOneInput, hypothesisInputs, seeds, writeSeeds)


if __name__ == "__main__":
    main(sys.argv)
