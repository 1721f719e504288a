# -*- test-case-name: tests.test_crypto -*-
"""
Benchmarks for L{netstructer._crypto}.

Measures, in one run and taking the best of several repeats:

  1. complete C{NNpsk0} handshakes per second (initiator and responder in
     one process, both sides split), for each cipher;
  2. raw AES-GCM and ChaCha20-Poly1305 encrypt+decrypt throughput through
     C{cryptography} directly (one AEAD object, one fixed nonce: the cheapest
     possible loop), for a 1 MiB and a 60-byte message;
  3. the same through a pair of L{CipherState}s, and the ratio of (3) to (2).
     The target is at least 0.95 for 1 MiB records.

Throughput counts plaintext bytes per encrypt+decrypt pair, in MB/s
(10 ** 6 bytes per second).  Raw and L{CipherState} measurements alternate
within each repeat so that frequency scaling affects both alike.

Run from the repository root::

    PYTHONPATH=. python benchmarks/bench_crypto.py [--quick]
"""

from __future__ import annotations

import argparse
import os
import timeit
from collections.abc import Callable
from functools import partial

from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305

from netstructer._crypto import CIPHER_NAMES, CipherState, NNpsk0Initiator, NNpsk0Responder

_RAW_CLASSES: dict[str, type[AESGCM] | type[ChaCha20Poly1305]] = {
    "AESGCM": AESGCM,
    "ChaChaPoly": ChaCha20Poly1305,
}

_SIZES: tuple[tuple[str, int], ...] = (("1MiB", 1024 * 1024), ("60B", 60))

Row = dict[str, object]


def _secondsPerCall(function: Callable[[], object], number: int, repeat: int) -> float:
    """
    Time C{function}, best of C{repeat} runs of C{number} calls.

    @param function: The function to time.
    @param number: Calls per run.
    @param repeat: Runs.
    @return: The best run's seconds per call.
    """
    return min(timeit.repeat(function, number=number, repeat=repeat)) / number


def _handshakeOnce(cipherName: str, psk: bytes, prologue: bytes) -> None:
    """
    Run one complete handshake, both sides, and split both.

    @param cipherName: The cipher.
    @param psk: The PSK both sides hold.
    @param prologue: The prologue both sides use.
    """
    initiator = NNpsk0Initiator(cipherName, psk, prologue)
    responder = NNpsk0Responder(cipherName, psk, prologue)
    responder.readMessage1(initiator.writeMessage1(b"\x00\x00\x10\x00"))
    initiator.readMessage2(responder.writeMessage2(b"\x00\x00\x10\x00"))
    initiator.split()
    responder.split()


def _rawRoundTrip(cipherName: str, key: bytes, data: bytes) -> Callable[[], object]:
    """
    Make a function doing one raw C{cryptography} encrypt and decrypt.

    @param cipherName: The Noise cipher name.
    @param key: The 32-byte key.
    @param data: The plaintext.
    @return: The function.
    """
    aead = _RAW_CLASSES[cipherName](key)
    encrypt, decrypt = aead.encrypt, aead.decrypt
    nonce = bytes(12)

    def roundTrip() -> object:
        return decrypt(nonce, encrypt(nonce, data, None), None)

    return roundTrip


def _cipherStateRoundTrip(cipherName: str, key: bytes, data: bytes) -> Callable[[], object]:
    """
    Make a function doing one L{CipherState} encrypt and the matching decrypt.

    @param cipherName: The Noise cipher name.
    @param key: The 32-byte key.
    @param data: The plaintext.
    @return: The function.
    """
    encrypt = CipherState(cipherName, key).encrypt
    decrypt = CipherState(cipherName, key).decrypt

    def roundTrip() -> object:
        return decrypt(encrypt(data))

    return roundTrip


def run(quick: bool = False) -> list[Row]:
    """
    Run every measurement.

    @param quick: Use few iterations (a smoke test; figures are rough).
    @return: Rows with C{name}, C{value} and C{unit}, in measurement order.
    """
    repeat = 3 if quick else 7
    rows: list[Row] = []
    psk = os.urandom(32)
    prologue = b"NetStructer benchmark"

    for cipherName in CIPHER_NAMES:
        seconds = _secondsPerCall(
            partial(_handshakeOnce, cipherName, psk, prologue),
            number=50 if quick else 500,
            repeat=repeat,
        )
        rows.append(
            {"name": f"handshake {cipherName}", "value": 1 / seconds, "unit": "handshakes/s"}
        )

    key = os.urandom(32)
    for cipherName in CIPHER_NAMES:
        rawName = _RAW_CLASSES[cipherName].__name__
        for sizeName, size in _SIZES:
            data = os.urandom(size)
            number = (5 if quick else 50) if size > 4096 else (2000 if quick else 50000)
            raw = _rawRoundTrip(cipherName, key, data)
            wrapped = _cipherStateRoundTrip(cipherName, key, data)
            rawBest = wrappedBest = float("inf")
            for _ in range(repeat):
                rawBest = min(rawBest, _secondsPerCall(raw, number, 1))
                wrappedBest = min(wrappedBest, _secondsPerCall(wrapped, number, 1))
            rawRate = size / rawBest / 1e6
            wrappedRate = size / wrappedBest / 1e6
            rows.append({"name": f"raw {rawName} {sizeName}", "value": rawRate, "unit": "MB/s"})
            rows.append(
                {
                    "name": f"CipherState {cipherName} {sizeName}",
                    "value": wrappedRate,
                    "unit": "MB/s",
                }
            )
            rows.append(
                {
                    "name": f"ratio CipherState/raw {cipherName} {sizeName}",
                    "value": wrappedRate / rawRate,
                    "unit": "x",
                }
            )
    return rows


def main() -> None:
    """
    Parse the command line, run the benchmarks and print a table.
    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="few iterations (smoke test)")
    options = parser.parse_args()
    for row in run(quick=options.quick):
        value = row["value"]
        assert isinstance(value, float)
        print(f"{row['name']:<45} {value:>12.2f} {row['unit']}")


if __name__ == "__main__":
    main()
