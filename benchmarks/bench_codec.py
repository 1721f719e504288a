# -*- test-case-name: tests.test_values -*-
"""
Benchmarks for L{netstructer.values}, the safe value codec, against pickle.

Measures, in one run and taking the best of several repeats, the rate of
encode+decode round trips of:

  1. the original package's example value,
     C{['hi im haytam', 128, {b'gg': 'gg'}, {1, 2, 6, 4}, (False, True)]};
  2. a 1 MiB C{bytes} value;
  3. a list of 100 000 small ints (C{range(100000)}).

Each is measured four ways: with an L{Encoder} and a L{Decoder} kept
between calls (what a connection does), with the module-level L{encode} and
L{decode} functions (which build their state on every call), with a kept
L{Encoder} and L{Decoder} without the C accelerator (C{accelerated=False}:
the pure-Python reference implementation), and with C{pickle.dumps} and
C{pickle.loads}; then the ratio of each codec rate to pickle's.  The target
is at least 0.5.  The ways alternate within each repeat so that frequency
scaling affects them alike.

Then, for the example value alone, the rate of L{Encoder.encode} and of
L{Decoder.decode}, and the rate of values decoded from a batch body of 300
example values (about 12 KiB) by L{Decoder.decodeMany}, against decoding
the same 300 encodings one L{Decoder.decode} call each; and the first three
again without the accelerator.

Run from the repository root::

    python benchmarks/bench_codec.py [--quick]
"""

from __future__ import annotations

import argparse
import pickle
import sys
import timeit
from collections.abc import Callable
from pathlib import Path

try:
    from netstructer.values import Decoder, Encoder, decode, encode
except ModuleNotFoundError:
    # Run as a script from a checkout, without PYTHONPATH.
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from netstructer.values import Decoder, Encoder, decode, encode

Row = dict[str, object]

EXAMPLE: list[object] = ["hi im haytam", 128, {b"gg": "gg"}, {1, 2, 6, 4}, (False, True)]


def _cases() -> list[tuple[str, object, int]]:
    """
    @return: The values to measure, as (name, value, round trips per run).
    """
    return [
        ("example", EXAMPLE, 20_000),
        ("1 MiB bytes", bytes(range(256)) * 4096, 200),
        ("100k ints", list(range(100_000)), 10),
    ]


def _roundTrips(value: object) -> dict[str, Callable[[], object]]:
    """
    Make the functions that round trip C{value}, one for each way.

    @param value: The value.
    @return: The functions, by name.
    """
    encoder = Encoder()
    decoder = Decoder()
    objectEncode = encoder.encode
    objectDecode = decoder.decode
    referenceEncode = Encoder(accelerated=False).encode
    referenceDecode = Decoder(accelerated=False).decode
    dumps = pickle.dumps
    loads = pickle.loads

    def objects() -> object:
        """
        @return: The value, through a kept L{Encoder} and L{Decoder}.
        """
        return objectDecode(objectEncode(value))

    def reference() -> object:
        """
        @return: The value, through a kept L{Encoder} and L{Decoder} without
            the C accelerator.
        """
        return referenceDecode(referenceEncode(value))

    def functions() -> object:
        """
        @return: The value, through L{encode} and L{decode}.
        """
        return decode(encode(value))

    def pickled() -> object:
        """
        @return: The value, through pickle.
        """
        return loads(dumps(value))

    return {
        "Encoder+Decoder": objects,
        "encode+decode": functions,
        "reference Encoder+Decoder": reference,
        "pickle": pickled,
    }


BATCH = 300
"""How many example values the batch body holds."""


def _oneWay() -> dict[str, tuple[Callable[[], object], int]]:
    """
    Make the functions that encode or decode the example value alone, or
    decode a batch of it.

    @return: The functions, by name, with how many values one call handles.
    """
    encoder = Encoder()
    decoder = Decoder()
    encoded = encoder.encode(EXAMPLE)
    encodings = [encoder.encode(EXAMPLE) for _ in range(BATCH)]
    body = b"\xdc" + BATCH.to_bytes(2, "big") + b"".join(encodings)
    objectEncode = encoder.encode
    objectDecode = decoder.decode
    decodeMany = decoder.decodeMany
    referenceEncode = Encoder(accelerated=False).encode
    referenceDecoder = Decoder(accelerated=False)
    referenceDecode = referenceDecoder.decode
    referenceDecodeMany = referenceDecoder.decodeMany

    def encodeOne() -> object:
        """
        @return: The example's encoding.
        """
        return objectEncode(EXAMPLE)

    def decodeOne() -> object:
        """
        @return: The example, decoded.
        """
        return objectDecode(encoded)

    def decodeBatch() -> object:
        """
        @return: The batch's values, from one L{Decoder.decodeMany} call.
        """
        return decodeMany(body)

    def decodeEach() -> object:
        """
        @return: The batch's values, from one L{Decoder.decode} call each.
        """
        return list(map(objectDecode, encodings))

    return {
        "example: Encoder.encode": (encodeOne, 1),
        "example: Decoder.decode": (decodeOne, 1),
        f"batch of {BATCH}: decodeMany": (decodeBatch, BATCH),
        f"batch of {BATCH}: decode each": (decodeEach, BATCH),
        "example: reference Encoder.encode": (lambda: referenceEncode(EXAMPLE), 1),
        "example: reference Decoder.decode": (lambda: referenceDecode(encoded), 1),
        f"batch of {BATCH}: reference decodeMany": (lambda: referenceDecodeMany(body), BATCH),
    }


def run(quick: bool = False) -> list[Row]:
    """
    Run every measurement.

    @param quick: Use few iterations (a smoke test; figures are rough).
    @return: Rows with C{name}, C{value} and C{unit}, in measurement order.
    """
    repeat = 3 if quick else 9
    rows: list[Row] = []
    for caseName, value, number in _cases():
        if quick:
            number = max(1, number // 20)
        functions = _roundTrips(value)
        best = dict.fromkeys(functions, float("inf"))
        for _ in range(repeat):
            for name, function in functions.items():
                seconds = min(timeit.repeat(function, number=number, repeat=1)) / number
                best[name] = min(best[name], seconds)
        for name, seconds in best.items():
            rows.append(
                {"name": f"{caseName}: {name}", "value": 1 / seconds, "unit": "round trips/s"}
            )
        for name in ("Encoder+Decoder", "encode+decode", "reference Encoder+Decoder"):
            rows.append(
                {
                    "name": f"{caseName}: ratio {name}/pickle",
                    "value": best["pickle"] / best[name],
                    "unit": "x",
                }
            )
    ways = _oneWay()
    best = dict.fromkeys(ways, float("inf"))
    number = 200 if quick else 4000
    for _ in range(repeat):
        for name, (function, count) in ways.items():
            calls = max(1, number // count)
            seconds = min(timeit.repeat(function, number=calls, repeat=1)) / (calls * count)
            best[name] = min(best[name], seconds)
    for name, seconds in best.items():
        rows.append({"name": name, "value": 1 / seconds, "unit": "values/s"})
    return rows


def main() -> None:
    """
    Parse the command line, run the benchmarks and print a table.
    """
    parser = argparse.ArgumentParser(description="Benchmark the value codec against pickle.")
    parser.add_argument("--quick", action="store_true", help="few iterations (smoke test)")
    options = parser.parse_args()
    for row in run(quick=options.quick):
        value = row["value"]
        assert isinstance(value, float)
        print(f"{row['name']:<52} {value:>14.2f} {row['unit']}")


if __name__ == "__main__":
    main()
