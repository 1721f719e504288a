"""
The NetStructer peers of C{benchmarks/bench_streams.py}, each run in its
own process, printing JSON lines (C{_peer_common.emit}):

    _streams_peer.py server
    _streams_peer.py client PORT bulk SIZE COUNT
    _streams_peer.py client PORT stream FILE
    _streams_peer.py client PORT pings FILE [--interval SECONDS]
    _streams_peer.py blocking PORT FILE

The server is a L{netstructer.server.Server} on 127.0.0.1 with a handler
that counts values (C{_peer_common}'s count protocol, as the peers of
C{bench_peers.py} answer it), echoes C{["ping", n]}, and reads every
stream to its end (keeping nothing: its engine checks its SHA-256) before
confirming it.  It
answers C{stats} on standard input with its current and peak resident set,
and stops when standard input closes.

The clients: the Twisted client sending C{COUNT} values of C{SIZE} bytes
(waiting on C{whenWritable()} after each, as C{bench_peers.py} does for
bulk) or C{FILE} as one stream (C{sendStream(path)}); the same stream with
a round trip of a small value every C{--interval} seconds while it goes
(their latencies); and the blocking client's C{sendFile}.  Each prints its
figures and its own resident set growth.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _peer_common import (
    COUNT_COMMAND,
    DONE,
    EXAMPLE,
    KEY_VARIABLE,
    MAX_VALUE_SIZE,
    countCommand,
    currentRSS,
    emit,
    peakRSS,
)
from twisted.internet import defer, task
from twisted.internet.interfaces import IConsumer
from zope.interface import implementer

from netstructer.client import connect
from netstructer.server import Server


@implementer(IConsumer)
class _Counting:
    """
    A consumer that counts what it is given and keeps nothing (the stream
    was hashed already, by its engine).
    """

    def __init__(self) -> None:
        self.count = 0

    def registerProducer(self, producer: object, streaming: bool) -> None:
        """Nothing."""

    def unregisterProducer(self) -> None:
        """Nothing."""

    def write(self, data: bytes) -> None:
        self.count += len(data)


class _Handler:
    """
    Counts values, echoes pings, reads streams.
    """

    def __init__(self) -> None:
        self._counting: dict[Any, list[int]] = {}

    def bufferReceived(self, session: Any, value: object) -> None:
        count = countCommand(value)
        if count is not None:
            self._counting[session] = [count, 0, 0]
            return
        if isinstance(value, list) and value and value[0] == "ping":
            session.sendBuffer(value)
            return
        state = self._counting.get(session)
        if state is None:
            return
        state[1] += 1
        state[2] += len(value) if isinstance(value, bytes) else 0
        if state[1] == state[0]:
            session.sendBuffer([DONE, state[1], state[2]])
            del self._counting[session]

    def streamReceived(self, session: Any, meta: object, stream: Any) -> None:
        stream.deliverTo(_Counting()).addErrback(lambda _: None)


def server(options: argparse.Namespace) -> None:
    from twisted.internet import reactor

    service = Server(
        "tcp:0:interface=127.0.0.1",
        os.environ[KEY_VARIABLE].encode(),
        _Handler(),
        reactor=reactor,
        maxBufferSize=MAX_VALUE_SIZE,
    )

    async def run() -> None:
        port = await service.listen()
        service.startService()
        emit("listening", port=port.getHost().port, pid=os.getpid())

    defer.ensureDeferred(run())

    def commands() -> None:
        for line in sys.stdin:
            if line.strip() == "stats":
                reactor.callFromThread(emit, "stats", currentRSS=currentRSS(), peakRSS=peakRSS())
        reactor.callFromThread(reactor.stop)

    reactor.callInThread(commands)
    reactor.run()


async def _bulk(reactor: Any, session: Any, size: int, count: int) -> float:
    value = os.urandom(size)
    session.sendBuffer((COUNT_COMMAND, count))
    started = time.perf_counter()
    for _ in range(count):
        session.sendBuffer(value)
        await session.whenWritable()
    done = await session.recvBuffer(timeout=300)
    if done[:2] != [DONE, count]:
        raise RuntimeError(f"the server counted {done!r}")
    return time.perf_counter() - started


async def _pings(reactor: Any, session: Any, path: str, interval: float) -> dict[str, Any]:
    """
    Send C{path} as a stream, and meanwhile a small value every
    C{interval} seconds, each waited for (its round trip's latency).
    """
    latencies: list[float] = []
    started = time.perf_counter()
    sent = session.sendStream(path)
    n = 0
    while not sent.called:
        before = time.perf_counter()
        session.sendBuffer(["ping", n, EXAMPLE])
        await session.recvBuffer(timeout=60)
        latencies.append(time.perf_counter() - before)
        n += 1
        await task.deferLater(reactor, interval, lambda: None)
    receipt = await sent
    elapsed = time.perf_counter() - started
    return {"samples": latencies, "size": receipt.size, "seconds": elapsed}


async def client(reactor: Any, options: argparse.Namespace) -> None:
    key = os.environ[KEY_VARIABLE].encode()
    session = await connect(
        reactor, f"tcp:127.0.0.1:{options.port}", key, maxBufferSize=MAX_VALUE_SIZE
    )
    rssBefore = currentRSS()
    try:
        if options.workload == "bulk":
            size, count = int(options.args[0]), int(options.args[1])
            await _bulk(reactor, session, size, min(count, 2))
            seconds = await _bulk(reactor, session, size, count)
            emit("result", workload="bulk", size=size * count, seconds=seconds)
        elif options.workload == "stream":
            await session.sendStream(os.urandom(1024 * 1024), "warm")
            emit("starting", pid=os.getpid())
            started = time.perf_counter()
            receipt = await session.sendStream(options.args[0])
            seconds = time.perf_counter() - started
            emit("result", workload="stream", size=receipt.size, seconds=seconds)
        else:
            figures = await _pings(reactor, session, options.args[0], options.interval)
            emit("result", workload="pings", **figures)
    finally:
        emit("rss", before=rssBefore, peak=peakRSS())
        session.close()
        await session.whenClosed()


def blocking(options: argparse.Namespace) -> None:
    from netstructer.blocking import link

    key = os.environ[KEY_VARIABLE].encode()
    with link(("127.0.0.1", options.port), key, timeout=60) as bridge:
        rssBefore = currentRSS()
        started = time.perf_counter()
        receipt = bridge.sendFile(options.file)
        seconds = time.perf_counter() - started
        emit("result", workload="blocking", size=receipt.size, seconds=seconds)
        emit("rss", before=rssBefore, peak=peakRSS())


def main() -> int:
    parser = argparse.ArgumentParser()
    roles = parser.add_subparsers(dest="role", required=True)
    roles.add_parser("server")
    peer = roles.add_parser("client")
    peer.add_argument("port", type=int)
    peer.add_argument("workload", choices=("bulk", "stream", "pings"))
    peer.add_argument("args", nargs="+")
    peer.add_argument("--interval", type=float, default=0.01)
    link = roles.add_parser("blocking")
    link.add_argument("port", type=int)
    link.add_argument("file")
    options = parser.parse_args()
    try:
        if options.role == "server":
            server(options)
        elif options.role == "blocking":
            blocking(options)
        else:
            task.react(lambda reactor: defer.ensureDeferred(client(reactor, options)))
    except SystemExit as e:
        if e.code:
            raise
    except Exception as e:  # noqa: BLE001 (reported to the parent, which fails)
        emit("error", error=f"{type(e).__name__}: {e}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
