"""
What one large value costs the record layer and the framing, old path
against new, in CPU time per MiB and minor page faults per value.

    PYTHONPATH=. python benchmarks/bench_largevalues.py [--quick] [--tuned] [--json]

Each case runs in a fresh process (so that one case's allocations do not
warm the allocator for the next), untuned: no C{tuneAllocator()}, as an
application embedding NetStructer runs.  C{--tuned} runs every case a
second time with C{tuneAllocator()} applied, beside.  Figures are medians
of interleaved repeats, with their range.

The cases, for 1 MiB and 16 MiB C{bytes} values (Noise, AES-GCM):

  - I{seal, old}: C{Channel.sendValue(value)} (the value joined behind its
    headers into a new buffer, sealed into another new one), then the
    prefix and frame joined into one more, as Twisted's C{doWrite} does with
    C{writeSequence([prefix, frame])};
  - I{seal, new}: C{Channel.sealBuffer(value, framed=True)}: the headers and
    value copied into a reused plaintext buffer, sealed into a reused
    output buffer with the prefix in front;
  - I{open, old}: the frame's 64 KiB reads appended to a C{bytearray}
    (C{buffer += data}), the frame decrypted into a new buffer and decoded,
    then deleted from the head of the buffer (C{del buffer[:n]}), as the
    Twisted protocol did;
  - I{open, new}: the reads fed to a L{FrameReader}, the frame opened by
    C{Channel.receiveFrame} (decrypted into a reused buffer) and decoded.

Opening always ends in a new C{bytes} of the value's size (what the
application receives), old path or new.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

_MiB = 1024 * 1024
_CASES = ("seal-old", "seal-new", "open-old", "open-new")
_CHUNK = 64 * 1024


def _pair() -> tuple[object, object]:
    from netstructer.channel import Channel, Role
    from netstructer.keys import generateKey
    from netstructer.values import Limits

    key = generateKey()
    limits = Limits(maxSize=32 * _MiB)
    client = Channel(Role.CLIENT, key, limits=limits)
    server = Channel(Role.SERVER, key, limits=limits)
    (hello,) = client.framesToSend()
    server.receiveFrame(hello)
    (reply,) = server.framesToSend()
    client.receiveFrame(reply)
    (confirmation,) = client.framesToSend()
    server.receiveFrame(confirmation)
    return client, server


def _sealOld(client: object, value: bytes) -> Callable[[], object]:
    prefix = (len(value) + 22).to_bytes(4, "big")
    sendValue = client.sendValue  # type: ignore[attr-defined]

    def seal() -> object:
        frame = sendValue(value)
        return b"".join([prefix, frame])

    return seal


def _sealNew(client: object, value: bytes) -> Callable[[], object]:
    sealBuffer = client.sealBuffer  # type: ignore[attr-defined]

    def seal() -> object:
        return sealBuffer(value, framed=True)

    return seal


def _openOld(server: object, frames: list[bytes]) -> Callable[[], object]:
    from netstructer.values import Decoder, Limits

    state = server._state  # type: ignore[attr-defined]
    decrypt = state._receiver._decrypt
    decode = Decoder(Limits(maxSize=32 * _MiB)).decode
    buffer = bytearray()
    pending = iter(frames)

    def open_() -> object:
        data = next(pending)
        for start in range(0, len(data), _CHUNK):
            buffer.extend(data[start : start + _CHUNK])
        size = len(data)
        with memoryview(buffer) as view, view[4:size] as frame:
            plaintext = decrypt(frame)
        value = decode(memoryview(plaintext)[1:])
        del buffer[:size]
        return value

    return open_


def _openNew(server: object, frames: list[bytes]) -> Callable[[], object]:
    from netstructer.session.framing import FrameReader

    reader = FrameReader(maxFrame=server.maxFrameSize)  # type: ignore[attr-defined]
    receiveFrame = server.receiveFrame  # type: ignore[attr-defined]
    pending = iter(frames)

    def open_() -> object:
        data = next(pending)
        event = None
        for start in range(0, len(data), _CHUNK):
            reader.feed(data[start : start + _CHUNK])
            frame = reader.nextFrame()
            if frame is not None:
                event = receiveFrame(frame)
        return event

    return open_


def runCase(case: str, size: int, count: int) -> dict[str, float]:
    """
    Measure one case in this process.

    @return: CPU microseconds per MiB, minor faults per value, and peak RSS
        growth in MiB over the RSS before the measured loop.
    """
    client, server = _pair()
    value = os.urandom(size)
    warm = 2
    if case.startswith("open"):
        # Frames made beforehand (their own pages are not counted): each
        # opens with the next nonce.  The chunks are bytes, as a socket read
        # gives.
        frames = [bytes(client.sendValue(value)) for _ in range(warm + count)]  # type: ignore[attr-defined]
        frames = [len(f).to_bytes(4, "big") + f for f in frames]
        run = (_openOld if case == "open-old" else _openNew)(server, frames)
    else:
        run = (_sealOld if case == "seal-old" else _sealNew)(client, value)
    for _ in range(warm):
        run()
    before = resource.getrusage(resource.RUSAGE_SELF)
    rssBefore = _rss()
    cpu = time.process_time()
    for _ in range(count):
        run()
    cpu = time.process_time() - cpu
    after = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "cpuPerMiB": cpu / (size * count / _MiB) * 1e6,
        "faultsPerValue": (after.ru_minflt - before.ru_minflt) / count,
        "peakGrowthMiB": max(0.0, after.ru_maxrss / 1024 - rssBefore),
    }


def _rss() -> float:
    """
    @return: This process's resident set now, in MiB.
    """
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _spawn(case: str, size: int, count: int, tuned: bool) -> dict[str, float]:
    command = [sys.executable, __file__, "--case", case, "--size", str(size)]
    command += ["--count", str(count)] + (["--tuned"] if tuned else [])
    result = subprocess.run(command, capture_output=True, text=True, check=True, timeout=300)
    measured: dict[str, float] = json.loads(result.stdout.strip().splitlines()[-1])
    return measured


def measure(quick: bool, tuned: bool) -> dict[tuple[str, int], list[dict[str, float]]]:
    """
    Every case and size, each repeat in a fresh process, interleaved.
    """
    plan = [(_MiB, 16 if quick else 64), (16 * _MiB, 3 if quick else 8)]
    repeats = 3 if quick else 5
    results: dict[tuple[str, int], list[dict[str, float]]] = {}
    for _ in range(repeats):
        for size, count in plan:
            for case in _CASES:
                results.setdefault((case, size), []).append(_spawn(case, size, count, tuned))
    return results


def _figure(samples: list[dict[str, float]], key: str) -> str:
    values = [s[key] for s in samples]
    return f"{statistics.median(values):8.0f} ({min(values):.0f}-{max(values):.0f})"


def table(results: dict[tuple[str, int], list[dict[str, float]]], title: str) -> str:
    """
    @return: The figures as a text table.
    """
    lines = [
        title,
        f"{'case':<22} {'CPU us/MiB':>22} {'minor faults/value':>24} {'peak RSS growth MiB':>22}",
    ]
    for (case, size), samples in sorted(results.items(), key=lambda i: (i[0][1], i[0][0])):
        lines.append(
            f"{case + ' ' + str(size // _MiB) + ' MiB':<22} {_figure(samples, 'cpuPerMiB'):>22}"
            f" {_figure(samples, 'faultsPerValue'):>24} {_figure(samples, 'peakGrowthMiB'):>22}"
        )
    return "\n".join(lines)


def main() -> None:
    """
    Run the cases (or, with C{--case}, one case in this process).
    """
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer values and repeats")
    parser.add_argument("--tuned", action="store_true", help="also run with tuneAllocator()")
    parser.add_argument("--json", action="store_true", help="print the samples as JSON too")
    parser.add_argument("--case", choices=_CASES, help=argparse.SUPPRESS)
    parser.add_argument("--size", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--count", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case is not None:
        if args.tuned:
            from netstructer.tuning import tuneAllocator

            tuneAllocator()
        print(json.dumps(runCase(args.case, args.size, args.count)))
        return
    print(f"load average {os.getloadavg()[0]:.2f}; {os.cpu_count()} CPUs; medians (min-max)")
    untuned = measure(args.quick, tuned=False)
    print(table(untuned, "untuned (as an application runs)"))
    output = {"untuned": {f"{c} {s}": v for (c, s), v in untuned.items()}}
    if args.tuned:
        tuned = measure(args.quick, tuned=True)
        print(table(tuned, "with tuneAllocator() (for operators)"))
        output["tuned"] = {f"{c} {s}": v for (c, s), v in tuned.items()}
    if args.json:
        print(json.dumps(output))


if __name__ == "__main__":
    main()
