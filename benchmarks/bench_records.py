"""
The record layer, measured against its parts, in one run.

    PYTHONPATH=. python benchmarks/bench_records.py [--quick]

Three ratios, each of two rates measured in the same run (best of several
repeats, so the noise of a shared 2-core machine mostly cancels):

  - 1 MiB bytes values: channel seal+open rate / the same AEAD's raw
    encrypt+decrypt rate (target >= 0.7: the record layer adds no needless
    copies);
  - the example value: channel seal+open (with the codec) cost / (codec +
    raw AEAD) cost (target <= 1.5);
  - complete client+server handshakes per second, for each suite.
"""

from __future__ import annotations

import argparse
import os
import timeit
from collections.abc import Callable

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from netstructer.channel import Channel, Role, ValueReceived
from netstructer.keys import generateKey
from netstructer.values import Decoder, Encoder

EXAMPLE = ["hi im haytam", 128, {b"gg": "gg"}, {1, 2, 6, 4}, (False, True)]
KEY = generateKey()


def _pair(suite: str = "noise", cipher: str = "AESGCM") -> tuple[Channel, Channel]:
    client = Channel(Role.CLIENT, KEY, suite=suite, cipher=cipher)
    server = Channel(Role.SERVER, KEY, suite=suite)
    (hello,) = client.framesToSend()
    server.receiveFrame(hello)
    (reply,) = server.framesToSend()
    client.receiveFrame(reply)
    (confirmation,) = client.framesToSend()
    server.receiveFrame(confirmation)
    return client, server


def _best(function: Callable[[], object], number: int, repeat: int) -> float:
    """
    The best time of one call, in seconds.
    """
    return min(timeit.repeat(function, number=number, repeat=repeat)) / number


def run(quick: bool = False) -> list[dict[str, object]]:
    """
    Measure, and return rows of C{name}, C{value}, C{unit}.

    @param quick: Fewer repeats, for a smoke run.
    """
    repeat = 3 if quick else 7
    rows: list[dict[str, object]] = []

    # 1 MiB: channel vs raw AEAD.
    big = os.urandom(1024 * 1024)
    client, server = _pair()

    def sealOpenBig() -> None:
        event = server.receiveFrame(client.sendValue(big))
        assert type(event) is ValueReceived

    aead = AESGCM(os.urandom(32))
    nonce = bytes(12)

    def rawBig() -> None:
        aead.decrypt(nonce, aead.encrypt(nonce, big, None), None)

    number = 5 if quick else 20
    channelBig = _best(sealOpenBig, number, repeat)
    rawBigTime = _best(rawBig, number, repeat)
    rows += [
        {"name": "1 MiB: channel seal+open", "value": len(big) / channelBig / 1e6, "unit": "MB/s"},
        {
            "name": "1 MiB: raw AES-GCM enc+dec",
            "value": len(big) / rawBigTime / 1e6,
            "unit": "MB/s",
        },
        {
            "name": "1 MiB: channel / raw (target >= 0.7)",
            "value": rawBigTime / channelBig,
            "unit": "x",
        },
    ]

    # The example value: channel (codec included) vs codec + raw AEAD.
    client, server = _pair()
    encoder, decoder = Encoder(), Decoder()
    encoded = encoder.encode(EXAMPLE)

    def sealOpenSmall() -> None:
        server.receiveFrame(client.sendValue(EXAMPLE))

    def codecAndRaw() -> None:
        decoder.decode(
            aead.decrypt(nonce, aead.encrypt(nonce, encoder.encode(EXAMPLE), None), None)
        )

    number = 20_000 if quick else 100_000
    channelSmall = _best(sealOpenSmall, number, repeat)
    partsSmall = _best(codecAndRaw, number, repeat)
    rows += [
        {"name": "example: channel seal+open", "value": 1 / channelSmall, "unit": "values/s"},
        {"name": "example: codec + raw AEAD", "value": 1 / partsSmall, "unit": "values/s"},
        {
            "name": "example: channel cost / parts cost (target <= 1.5)",
            "value": channelSmall / partsSmall,
            "unit": "x",
        },
        {"name": "example: encoded size", "value": len(encoded), "unit": "bytes"},
    ]

    # Handshakes.
    number = 100 if quick else 500
    for suite, cipher in (("noise", "AESGCM"), ("noise", "ChaChaPoly"), ("fernet", "AESGCM")):
        seconds = _best(lambda s=suite, c=cipher: _pair(s, c), number, repeat)
        label = suite if suite == "fernet" else f"noise {cipher}"
        rows.append({"name": f"handshakes ({label})", "value": 1 / seconds, "unit": "/s"})
    return rows


def main() -> None:
    """
    Print the measurements as a table.
    """
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats")
    args = parser.parse_args()
    for row in run(quick=args.quick):
        print(f"{row['name']:<52} {row['value']:>14.2f} {row['unit']}")


if __name__ == "__main__":
    main()
