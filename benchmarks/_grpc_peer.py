"""
The gRPC peers of C{benchmarks/bench_peers.py}: grpcio over TLS (the
benchmark's throwaway self-signed certificate), with generic handlers and
no generated code, carrying plain msgpack like the other baselines.

    _bridge_peer.py grpcserver --cert-dir DIR
    _bridge_peer.py grpcclient PORT --cert-dir DIR [--stream N] [--echo N]
        [--bulk SIZE:COUNT ...] [--connect N] [--cpu N]

The service C{bench.Bench} has three methods, each taking and returning
msgpack bytes:

  - C{Values}, a bidirectional stream: the client's example values one way
    (a count command first, then the values; the server answers once it
    has counted them), and round trips (each value echoed);
  - C{Bulk}, a client stream: a count command, then the large values; one
    answer once they are all counted;
  - C{Echo}, unary: one value echoed, for a fresh secure channel's first
    round trip.

Each client channel has its own subchannel pool, so that a new channel
makes a new connection and TLS handshake, as a new NetStructer connection
does.
"""

from __future__ import annotations

import argparse
import os
import queue
import sys
import time
from collections.abc import Callable, Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

from _peer_common import (
    COUNT_COMMAND,
    LIFETIME,
    MAX_VALUE_SIZE,
    PLAIN_EXAMPLE,
    WORKLOAD_DEADLINE,
    Deadline,
    Tally,
    checkCount,
    countCommand,
    currentRSS,
    emit,
    peakRSS,
    pinTo,
    plainPack,
)
from msgpack import unpackb

_SERVICE = "bench.Bench"
_OPTIONS = [
    ("grpc.max_send_message_length", MAX_VALUE_SIZE),
    ("grpc.max_receive_message_length", MAX_VALUE_SIZE),
]


def addGRPCRoles(roles: Any, sizeCount: Callable[[str], tuple[int, int]]) -> None:
    """
    Add the C{grpcserver} and C{grpcclient} roles to the peer's parser.

    @param roles: The parser's subparsers.
    @param sizeCount: Parses C{SIZE:COUNT}.
    """
    server = roles.add_parser("grpcserver")
    server.add_argument("--cert-dir", required=True)
    client = roles.add_parser("grpcclient")
    client.add_argument("port", type=int)
    client.add_argument("--cert-dir", required=True)
    client.add_argument("--stream", type=int, default=0)
    client.add_argument("--echo", type=int, default=0)
    client.add_argument("--bulk", type=sizeCount, action="append", default=[])
    client.add_argument("--connect", type=int, default=0)
    client.add_argument("--cpu", type=int, help="run on this CPU only")


def _counted(messages: Iterator[bytes]) -> Iterator[bytes]:
    """
    The server's logic over one stream: count values after a count command
    (answering once they are all in), echo every other value.

    @return: The answers.
    """
    tally: Tally | None = None
    for message in messages:
        value = unpackb(message)
        if tally is not None:
            if tally.add(value):
                yield plainPack(tally.done())
                tally = None
            continue
        expected = countCommand(value)
        if expected is not None:
            tally = Tally(expected)
            continue
        yield plainPack(value)


def grpcServer(options: argparse.Namespace) -> None:
    """
    Serve C{bench.Bench} over TLS on 127.0.0.1 until standard input closes.
    """
    import grpc

    certDir = Path(options.cert_dir)
    credentials = grpc.ssl_server_credentials(
        [((certDir / "key.pem").read_bytes(), (certDir / "trust" / "cert.pem").read_bytes())]
    )

    def values(requests: Iterator[bytes], context: Any) -> Iterator[bytes]:
        return _counted(requests)

    def bulk(requests: Iterator[bytes], context: Any) -> bytes:
        for answer in _counted(requests):
            return answer
        raise RuntimeError("the bulk stream ended before its values were counted")

    def echo(request: bytes, context: Any) -> bytes:
        return plainPack(unpackb(request))

    handler = grpc.method_handlers_generic_handler(
        _SERVICE,
        {
            "Values": grpc.stream_stream_rpc_method_handler(values),
            "Bulk": grpc.stream_unary_rpc_method_handler(bulk),
            "Echo": grpc.unary_unary_rpc_method_handler(echo),
        },
    )
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8), options=_OPTIONS)
    server.add_generic_rpc_handlers((handler,))
    port = server.add_secure_port("127.0.0.1:0", credentials)
    server.start()
    emit("listening", port=port, pid=os.getpid())
    ends = time.monotonic() + LIFETIME
    try:
        for line in sys.stdin:
            if line.strip() == "quit" or time.monotonic() > ends:
                break
            if line.strip() == "stats":
                emit("stats", sessions=0, peakRSS=peakRSS())
    finally:
        server.stop(0)


class _Client:
    """
    The workloads, over channels of one TLS configuration.
    """

    def __init__(self, port: int, certDir: Path) -> None:
        import grpc

        self._grpc = grpc
        self._target = f"127.0.0.1:{port}"
        self._credentials = grpc.ssl_channel_credentials(
            root_certificates=(certDir / "trust" / "cert.pem").read_bytes()
        )

    def channel(self) -> Any:
        """
        @return: A new secure channel, with a connection of its own.
        """
        return self._grpc.secure_channel(
            self._target,
            self._credentials,
            options=[*_OPTIONS, ("grpc.use_local_subchannel_pool", 1)],
        )

    def countRun(self, channel: Any, method: str, value: object, count: int) -> float:
        """
        Send a count command and C{count} values (each encoded as it is
        sent) on one stream, and wait for the server's count.

        @return: The seconds from the first value to the answer.
        """

        def requests() -> Iterator[bytes]:
            yield plainPack((COUNT_COMMAND, count))
            for _ in range(count):
                yield plainPack(value)

        started = time.perf_counter()
        if method == "Bulk":
            call = channel.stream_unary(f"/{_SERVICE}/Bulk")
            reply = unpackb(call(requests(), timeout=WORKLOAD_DEADLINE))
        else:
            call = channel.stream_stream(f"/{_SERVICE}/Values")
            reply = unpackb(next(iter(call(requests(), timeout=WORKLOAD_DEADLINE))))
        elapsed = time.perf_counter() - started
        checkCount(reply, count)
        return elapsed

    def echo(self, count: int) -> list[float]:
        """
        Round trips on one bidirectional stream.

        @return: Each round trip's seconds.
        """
        sending: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()

        def requests() -> Iterator[bytes]:
            while (item := sending.get()) is not None:
                yield item

        deadline = Deadline("echo")
        with self.channel() as channel:
            call = channel.stream_stream(f"/{_SERVICE}/Values")
            responses = iter(call(requests(), timeout=WORKLOAD_DEADLINE))
            for _ in range(min(200, count)):
                sending.put(plainPack(PLAIN_EXAMPLE))
                reply = unpackb(next(responses))
            if reply != PLAIN_EXAMPLE:
                raise RuntimeError(f"the echo {reply!r} differs from the value sent")
            clock = time.perf_counter
            times: list[float] = []
            for _ in range(count):
                started = clock()
                sending.put(plainPack(PLAIN_EXAMPLE))
                unpackb(next(responses))
                times.append(clock() - started)
            sending.put(None)
            deadline.check()
        return times

    def connect(self, count: int) -> list[float]:
        """
        Fresh secure channels, each with its first round trip (a unary
        call), one after another.

        @return: Each connection's seconds.
        """
        deadline = Deadline("connect")
        samples: list[float] = []
        warm = min(5, count)
        for i in range(warm + count):
            started = time.perf_counter()
            channel = self.channel()
            call = channel.unary_unary(f"/{_SERVICE}/Echo")
            unpackb(call(plainPack(PLAIN_EXAMPLE), timeout=WORKLOAD_DEADLINE))
            elapsed = time.perf_counter() - started
            channel.close()
            if i >= warm:
                samples.append(elapsed)
            deadline.check()
        return samples


def grpcClient(options: argparse.Namespace) -> int:
    """
    Run the workloads asked for, in order, printing a result line for each.

    @return: The exit status.
    """
    pinTo(options.cpu)
    client = _Client(options.port, Path(options.cert_dir))
    try:
        if options.echo:
            emit("result", workload="echo", samples=client.echo(options.echo))
        if options.stream:
            with client.channel() as channel:
                client.countRun(channel, "Values", PLAIN_EXAMPLE, min(2000, options.stream))
                seconds = client.countRun(channel, "Values", PLAIN_EXAMPLE, options.stream)
            emit(
                "result",
                workload="stream",
                values=options.stream,
                seconds=seconds,
                rate=options.stream / seconds,
            )
        for size, count in options.bulk:
            value = os.urandom(size)
            rssBefore = currentRSS()
            with client.channel() as channel:
                client.countRun(channel, "Bulk", value, 1)
                seconds = client.countRun(channel, "Bulk", value, count)
            emit(
                "result",
                workload="bulk",
                size=size,
                values=count,
                seconds=seconds,
                rate=size * count / seconds / 1e6,
                peakRSS=peakRSS(),
                rssBefore=rssBefore,
            )
        if options.connect:
            emit("result", workload="connect", samples=client.connect(options.connect))
    except Exception as e:  # noqa: BLE001 (reported to the parent, which fails)
        emit("error", where="grpc client", error=f"{type(e).__name__}: {e}")
        return 1
    return 0
