"""
What the benchmark peers share: the example values, the count protocol the
servers answer, JSON output, and process placement.  Imported by
C{_bridge_peer.py} and C{_grpc_peer.py}.
"""

from __future__ import annotations

import json
import os
import resource
import time

from msgpack import packb

EXAMPLE: list[object] = ["hi im haytam", 128, {b"gg": "gg"}, {1, 2, 6, 4}, (False, True)]
"""The original package's example value, which NetStructer sends."""

PLAIN_EXAMPLE: list[object] = ["hi im haytam", 128, {b"gg": "gg"}, [1, 2, 6, 4], [False, True]]
"""
The example value as the baselines send it: made of msgpack's own types
(lists where NetStructer keeps a set and a tuple), so that they pack it with
plain C{msgpack.packb}, with no conversion hook on each send.
"""

TUNED_VARIABLE = "NETSTRUCTER_BENCH_TUNED"
"""Set to C{1}, every peer calls C{tuneAllocator()} first (for operators)."""

COUNT_COMMAND = "__bench_count__"
"""C{(COUNT_COMMAND, n)} asks a server to count the next C{n} values."""

DONE = "__bench_done__"
"""A server answers C{[DONE, values, bytes]} once it has counted them."""

KEY_VARIABLE = "NETSTRUCTER_BENCH_KEY"
MAX_VALUE_SIZE = 32 * 1024 * 1024
"""The largest encoded value both ends accept (16 MiB values need more than
the default 16 MiB limit)."""

BACKLOG = 1024
LIFETIME = 900.0
"""Seconds after which a server stops whatever happens."""

WORKLOAD_DEADLINE = 120.0
"""Seconds one client workload may take."""


def emit(event: str, **fields: object) -> None:
    """
    Print one JSON line.

    @param event: The kind of line.
    @param fields: Its other keys.
    """
    print(json.dumps({"event": event, **fields}), flush=True)


def raiseFileLimit(wanted: int) -> int:
    """
    Raise this process's soft C{RLIMIT_NOFILE} towards C{wanted}.

    @param wanted: The descriptors needed.
    @return: The soft limit now in force.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    limit = wanted if hard == resource.RLIM_INFINITY else min(hard, wanted)
    if limit > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, hard))
        soft = limit
    return soft


def countCommand(value: object) -> int | None:
    """
    @return: The count asked for if C{value} is a count command, else
        L{None}.
    """
    if (
        isinstance(value, list | tuple)
        and len(value) == 2
        and value[0] == COUNT_COMMAND
        and type(value[1]) is int
    ):
        return value[1]
    return None


class Tally:
    """
    Counts the values a server receives on one connection after a count
    command.

    @ivar expected: The values to count.
    @ivar values: Values counted.
    @ivar size: Bytes of C{bytes} values counted.
    """

    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.values = 0
        self.size = 0

    def add(self, value: object) -> bool:
        """
        Count C{value}.

        @return: Whether every expected value has now arrived.
        """
        self.values += 1
        if type(value) is bytes:
            self.size += len(value)
        return self.values >= self.expected

    def done(self) -> list[object]:
        """
        @return: The answer to send, and report it on standard output.
        """
        emit("counted", values=self.values, bytes=self.size)
        return [DONE, self.values, self.size]


# Plain msgpack: the baseline codec.


def plainPack(value: object) -> bytes:
    """
    Encode with plain C{msgpack.packb} and no hook: the baselines send
    msgpack's own types (see L{PLAIN_EXAMPLE}), keep no type fidelity and
    check no limits.
    """
    packed: bytes = packb(value)
    return packed


def pinTo(cpu: int | None) -> None:
    """
    Run this process (and the threads it starts afterwards) on one CPU.

    @param cpu: The CPU's number, or L{None} to leave the affinity alone.
    """
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})


def currentRSS() -> int:
    """
    @return: This process's resident set now, in KiB (0 where
        C{/proc/self/status} does not say).
    """
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def peakRSS() -> int:
    """
    @return: This process's peak resident set so far, in KiB.
    """
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


# Servers.


class Deadline:
    """
    Fails a blocking workload that overruns L{WORKLOAD_DEADLINE}.
    """

    def __init__(self, what: str) -> None:
        self._what = what
        self._end = time.monotonic() + WORKLOAD_DEADLINE

    def check(self) -> None:
        """
        @raise RuntimeError: The workload overran its deadline.
        """
        if time.monotonic() > self._end:
            raise RuntimeError(f"{self._what} overran its {WORKLOAD_DEADLINE} s deadline")


def checkCount(reply: object, count: int) -> None:
    if not (isinstance(reply, list | tuple) and list(reply[:2]) == [DONE, count]):
        raise RuntimeError(f"the server answered {reply!r} to a count of {count}")
