"""
The peer processes of C{benchmarks/bench_bridge.py}: one server or one client
per process, so that the two ends of a connection never share an
interpreter.

Every peer prints JSON lines on its standard output, each an object with an
C{"event"} key: C{"listening"} (with C{"port"} and C{"pid"}), C{"result"},
C{"stats"}, C{"counted"}, C{"warm"}, C{"held"} or C{"error"}.

Servers pick a free port by binding port 0 and print it, then serve until
their standard input closes (or reads C{quit}); C{stats} on standard input
makes them collect garbage and print their session count::

    _bridge_peer.py server ns|plain|tls [--cert-dir DIR] [--max-sessions N]
    _bridge_peer.py client ns|plain|tls|blocking PORT [--stream N] [--batch N]
        [--echo N] [--bulk SIZE:COUNT ...] [--connect N] [--hold N --warm N]
        [--cert-dir DIR] [--cpu N]
    _bridge_peer.py zmqserver
    _bridge_peer.py zmqclient PORT SERVERKEY [--stream N] [--echo N]
        [--bulk SIZE:COUNT ...] [--cpu N]
    _bridge_peer.py grpcserver --cert-dir DIR
    _bridge_peer.py grpcclient PORT --cert-dir DIR [--stream N] [--echo N]
        [--bulk SIZE:COUNT ...] [--connect N] [--cpu N]
    _bridge_peer.py rawsink
    _bridge_peer.py rawsource PORT SIZE:COUNT ...

C{--cpu N} runs a client on CPU N only.  Peers run untuned, as applications
embedding NetStructer run; with C{NETSTRUCTER_BENCH_TUNED=1} in the
environment each calls C{tuneAllocator()} first.  The baselines send
L{PLAIN_EXAMPLE}, made of msgpack's own types, packed with no hook.

C{ns} is NetStructer (L{netstructer.server.Server} and
L{netstructer.client.connect}), C{plain} a stock L{Int32StringReceiver} with
plain C{msgpack.packb}/C{unpackb}, and C{tls} the same over TLS (a Twisted
C{ssl:} server endpoint and a C{tls:} client endpoint).  The C{blocking}
client is NetStructer's blocking L{netstructer.blocking.link}, talking to the
C{ns} server.  C{zmqserver} and C{zmqclient} are pyzmq ROUTER and DEALER
sockets with CURVE encryption carrying plain msgpack (the server prints its
CURVE public key with its port).  C{rawsink} and C{rawsource} copy bytes
through blocking sockets: the transport's ceiling.  C{grpcserver} and
C{grpcclient} are grpcio over TLS (see C{_grpc_peer.py}).

NetStructer's key comes from the C{NETSTRUCTER_BENCH_KEY} environment
variable.  Every wait is bounded: a peer gives up, prints an C{"error"}
event and exits non-zero when a workload overruns its deadline.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import os
import select
import socket
import struct
import sys
import time
from collections import deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from msgpack import packb, unpackb
from twisted.internet import defer
from twisted.internet.endpoints import (
    clientFromString,
    connectProtocol,
    quoteStringArgument,
    serverFromString,
)
from twisted.internet.interfaces import IPushProducer
from twisted.internet.protocol import Factory
from twisted.protocols.basic import Int32StringReceiver, LineReceiver
from twisted.python.failure import Failure
from zope.interface import implementer

from netstructer.tuning import tuneAllocator

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _grpc_peer import addGRPCRoles, grpcClient, grpcServer
from _peer_common import (
    BACKLOG,
    COUNT_COMMAND,
    DONE,
    EXAMPLE,
    KEY_VARIABLE,
    LIFETIME,
    MAX_VALUE_SIZE,
    PLAIN_EXAMPLE,
    TUNED_VARIABLE,
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
    raiseFileLimit,
)

# Servers.


class NetStructerHandler:
    """
    The NetStructer server's handler: counts values after a count command,
    and echoes every other value with the library's L{EchoHandler}.
    """

    def __init__(self) -> None:
        from netstructer.handlers import EchoHandler

        self._echo = EchoHandler()
        self._tallies: dict[object, Tally] = {}

    def sessionOpened(self, session: Any) -> None:
        """
        Nothing to do.
        """

    def bufferReceived(self, session: Any, value: object) -> None:
        """
        Count or echo C{value}.
        """
        tally = self._tallies.get(session)
        if tally is not None:
            if tally.add(value):
                del self._tallies[session]
                session.sendBuffer(tally.done())
            return
        expected = countCommand(value)
        if expected is not None:
            self._tallies[session] = Tally(expected)
            return
        self._echo.bufferReceived(session, value)

    def sessionClosed(self, session: Any, reason: Failure) -> None:
        """
        Forget the session's tally.
        """
        self._tallies.pop(session, None)


class PlainServer(Int32StringReceiver):
    """
    The baseline server: C{Int32StringReceiver} and plain msgpack, counting
    or echoing like L{NetStructerHandler}.
    """

    MAX_LENGTH = MAX_VALUE_SIZE
    factory: PlainServerFactory

    def connectionMade(self) -> None:
        self._tally: Tally | None = None
        self.factory.connections += 1

    def connectionLost(self, reason: Failure | None = None) -> None:
        self.factory.connections -= 1

    def stringReceived(self, string: bytes) -> None:
        value = unpackb(string)
        tally = self._tally
        if tally is not None:
            if tally.add(value):
                self._tally = None
                self.sendString(plainPack(tally.done()))
            return
        expected = countCommand(value)
        if expected is not None:
            self._tally = Tally(expected)
            return
        self.sendString(packb(value))


class PlainServerFactory(Factory):
    """
    Builds L{PlainServer}s and counts their connections.
    """

    protocol = PlainServer  # type: ignore[assignment]

    def __init__(self) -> None:
        self.connections = 0


class Commands(LineReceiver):
    """
    Reads commands, one a line, from standard input; its end stops the
    reactor.
    """

    delimiter = b"\n"

    def __init__(self, reactor: Any, handle: Callable[[str], None]) -> None:
        self._reactor = reactor
        self._handle = handle

    def lineReceived(self, line: bytes) -> None:
        self._handle(line.decode("ascii", "replace").strip())

    def connectionLost(self, reason: Failure | None = None) -> None:
        if self._reactor.running:
            self._reactor.stop()


def readCommands(reactor: Any, protocol: LineReceiver) -> None:
    """
    Feed standard input to C{protocol}.  Its output goes to C{/dev/null}:
    L{StandardIO} would otherwise make file descriptor 1 non-blocking, and
    C{print} to a full pipe would then lose result lines.
    """
    from twisted.internet.stdio import StandardIO

    StandardIO(  # type: ignore[call-arg]
        protocol, stdout=os.open(os.devnull, os.O_WRONLY), reactor=reactor
    )


def serve(options: argparse.Namespace) -> None:
    """
    Listen on 127.0.0.1, port 0, print the port, and serve until standard
    input closes.
    """
    from twisted.internet import reactor

    raiseFileLimit(options.max_sessions + 256)
    tcp = f"tcp:0:interface=127.0.0.1:backlog={BACKLOG}"
    sessions: Callable[[], int]
    if options.impl == "ns":
        from netstructer.server import Server

        server = Server(
            tcp,
            os.environ[KEY_VARIABLE],
            NetStructerHandler(),
            reactor=reactor,
            maxBufferSize=MAX_VALUE_SIZE,
            maxSessions=options.max_sessions,
            maxPerIP=options.max_sessions,
        )
        listening = server.listen()
        sessions = server.count
    else:
        factory = PlainServerFactory()
        if options.impl == "tls":
            certDir = Path(options.cert_dir)
            description = (
                f"ssl:0:interface=127.0.0.1:backlog={BACKLOG}"
                f":privateKey={quoteStringArgument(str(certDir / 'key.pem'))}"
                f":certKey={quoteStringArgument(str(certDir / 'trust' / 'cert.pem'))}"
            )
        else:
            description = tcp
        listening = serverFromString(reactor, description).listen(factory)

        def sessions() -> int:
            return factory.connections

    def listened(port: Any) -> None:
        emit("listening", port=port.getHost().port, pid=os.getpid())

    def failed(failure: Failure) -> None:
        emit("error", where="listen", error=failure.getErrorMessage())
        reactor.stop()

    listening.addCallbacks(listened, failed)

    def handle(command: str) -> None:
        if command == "stats":
            gc.collect()
            emit("stats", sessions=sessions(), peakRSS=peakRSS())
        elif command == "quit":
            reactor.stop()

    readCommands(reactor, Commands(reactor, handle))
    reactor.callLater(LIFETIME, reactor.stop)
    reactor.run()


# Clients.


@dataclass
class Link:
    """
    One client connection, whichever the implementation: the callables are
    the implementation's own bound methods, so the workloads add no layer.

    @ivar send: Sends a value.
    @ivar receive: Returns a Deferred firing with the next value.
    @ivar whenWritable: Returns a Deferred firing once the transport's write
        buffer has room.
    @ivar close: Closes cleanly; returns a Deferred firing once closed.
    @ivar abort: Drops the connection.
    @ivar details: Facts about the connection (the TLS version).
    """

    send: Callable[[object], None]
    receive: Callable[[], defer.Deferred[object]]
    whenWritable: Callable[[], defer.Deferred[None]]
    close: Callable[[], defer.Deferred[None]]
    abort: Callable[[], None]
    details: dict[str, str]


@implementer(IPushProducer)
class WriteFlow:
    """
    The baseline's write backpressure: the transport's streaming producer,
    as NetStructer's own.
    """

    def __init__(self) -> None:
        self.paused = False
        self._waiting: list[defer.Deferred[None]] = []

    def pauseProducing(self) -> None:
        self.paused = True

    def resumeProducing(self) -> None:
        self.paused = False
        waiting, self._waiting = self._waiting, []
        for d in waiting:
            d.callback(None)

    def stopProducing(self) -> None:
        self.resumeProducing()

    def whenWritable(self) -> defer.Deferred[None]:
        if not self.paused:
            return defer.succeed(None)
        d: defer.Deferred[None] = defer.Deferred()
        self._waiting.append(d)
        return d


class PlainClient(Int32StringReceiver):
    """
    The baseline client: C{Int32StringReceiver} and plain msgpack, with a
    receive queue and write backpressure.
    """

    MAX_LENGTH = MAX_VALUE_SIZE

    def __init__(self) -> None:
        self._values: deque[object] = deque()
        self._waiters: deque[defer.Deferred[object]] = deque()
        self._flow = WriteFlow()
        self._closed: defer.Deferred[None] = defer.Deferred()
        self._reason: Failure | None = None

    @property
    def _tcp(self) -> Any:
        """
        The transport, as the TCP or TLS transport it is.
        """
        return self.transport

    def connectionMade(self) -> None:
        self._tcp.registerProducer(self._flow, True)

    def stringReceived(self, string: bytes) -> None:
        value = unpackb(string)
        if self._waiters:
            self._waiters.popleft().callback(value)
        else:
            self._values.append(value)

    def send(self, value: object) -> None:
        self.sendString(packb(value))

    def receive(self) -> defer.Deferred[object]:
        if self._values:
            return defer.succeed(self._values.popleft())
        if self._reason is not None:
            return defer.fail(self._reason)
        d: defer.Deferred[object] = defer.Deferred()
        self._waiters.append(d)
        return d

    def close(self) -> defer.Deferred[None]:
        if self._reason is None:
            self._tcp.unregisterProducer()
            self._tcp.loseConnection()
        return self._closed

    def abort(self) -> None:
        self._tcp.abortConnection()

    def connectionLost(self, reason: Failure | None = None) -> None:
        self._reason = reason or Failure(ConnectionError("connection lost"))
        waiters, self._waiters = self._waiters, deque()
        for d in waiters:
            d.errback(self._reason)
        self._flow.stopProducing()
        self._closed.callback(None)

    def link(self) -> Link:
        details: dict[str, str] = {}
        getHandle = getattr(self.transport, "getHandle", None)
        handle = getHandle() if getHandle is not None else None
        version = getattr(handle, "get_protocol_version_name", None)
        if version is not None:
            details["tls"] = version()
        return Link(
            self.send, self.receive, self._flow.whenWritable, self.close, self.abort, details
        )


Opener = Callable[[], Coroutine[Any, Any, Link]]


def netStructerOpener(reactor: Any, port: int) -> Opener:
    """
    @return: A function connecting a NetStructer session (fired once the
        handshake has authenticated the server).
    """
    from netstructer.client import connect
    from netstructer.keys import asKeyring

    # As README.rst shows: connect(reactor, "host:port", key).
    endpoint = f"127.0.0.1:{port}"
    keyring = asKeyring(os.environ[KEY_VARIABLE])

    async def openLink() -> Link:
        session = await connect(
            reactor, endpoint, keyring, timeout=10, maxBufferSize=MAX_VALUE_SIZE
        )

        def close() -> defer.Deferred[None]:
            session.close()
            return session.whenClosed()

        return Link(
            session.sendBuffer, session.recvBuffer, session.whenWritable, close, session.abort, {}
        )

    return openLink


def plainOpener(reactor: Any, port: int, certDir: str | None) -> Opener:
    """
    @return: A function connecting the baseline client, over TCP, or over TLS
        if C{certDir} (holding C{trust/cert.pem}) is given.
    """
    tcp = f"tcp:host=127.0.0.1:port={port}:timeout=10"
    if certDir is None:
        endpoint = clientFromString(reactor, tcp)
    else:
        trust = quoteStringArgument(str(Path(certDir) / "trust"))
        endpoint = clientFromString(
            reactor,
            f"tls:host=127.0.0.1:port={port}:trustRoots={trust}"
            f":endpoint={quoteStringArgument(tcp)}",
        )

    async def openLink() -> Link:
        protocol: PlainClient = await connectProtocol(endpoint, PlainClient())
        return protocol.link()

    return openLink


def _deadline(reactor: Any, workload: Coroutine[Any, Any, None], what: str) -> defer.Deferred[None]:
    """
    Run a workload, failing it with a L{RuntimeError} naming C{what} if it
    overruns L{WORKLOAD_DEADLINE}.
    """
    d = defer.ensureDeferred(workload)
    d.addTimeout(WORKLOAD_DEADLINE, reactor)

    def explain(failure: Failure) -> Failure:
        failure.trap(defer.TimeoutError)
        raise RuntimeError(f"{what} overran its {WORKLOAD_DEADLINE} s deadline")

    return d.addErrback(explain)


async def _countRun(link: Link, value: object, count: int, batch: int) -> float:
    """
    Send C{count} copies of C{value}, waiting for room between batches, and
    wait for the server's count.

    @return: The seconds from the first send to the server's answer.
    """
    send, whenWritable = link.send, link.whenWritable
    send((COUNT_COMMAND, count))
    answer = link.receive()
    started = time.perf_counter()
    sent = 0
    while sent < count:
        n = min(batch, count - sent)
        for _ in range(n):
            send(value)
        sent += n
        await whenWritable()
    reply = await answer
    elapsed = time.perf_counter() - started
    if not (isinstance(reply, list) and reply[:2] == [DONE, count]):
        raise RuntimeError(f"the server answered {reply!r} to a count of {count}")
    return elapsed


async def streamWorkload(opener: Opener, value: object, count: int, batch: int = 100) -> None:
    """
    One-way example values: values per second counted by the server.

    @param value: The example value, as this peer sends it.
    @param batch: Values sent between two waits on C{whenWritable()}.
    """
    link = await opener()
    await _countRun(link, value, min(2000, count), batch)
    seconds = await _countRun(link, value, count, batch)
    await link.close()
    emit("result", workload="stream", values=count, seconds=seconds, rate=count / seconds)


async def bulkWorkload(opener: Opener, size: int, count: int) -> None:
    """
    One-way C{bytes} values of C{size} bytes: MB/s delivered to the server's
    application.
    """
    link = await opener()
    value = os.urandom(size)
    rssBefore = currentRSS()
    await _countRun(link, value, 1, 1)
    seconds = await _countRun(link, value, count, 1)
    await link.close()
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


async def echoWorkload(opener: Opener, value: object, count: int) -> None:
    """
    Round trips of the example value, one at a time.
    """
    link = await opener()
    send, receive = link.send, link.receive
    for _ in range(min(200, count)):
        send(value)
        reply = await receive()
    if reply != value:
        raise RuntimeError(f"the echo {reply!r} differs from the value sent")
    clock = time.perf_counter
    times: list[float] = []
    for _ in range(count):
        started = clock()
        send(value)
        await receive()
        times.append(clock() - started)
    await link.close()
    emit("result", workload="echo", samples=times)


async def connectWorkload(opener: Opener, value: object, count: int) -> None:
    """
    Fresh connection, handshake and first round trip, one after another.
    """
    clock = time.perf_counter
    times: list[float] = []
    details: dict[str, str] = {}
    warm = min(5, count)
    for i in range(warm + count):
        started = clock()
        link = await opener()
        link.send(value)
        await link.receive()
        elapsed = clock() - started
        details = link.details
        await link.close()
        if i >= warm:
            times.append(elapsed)
    emit("result", workload="connect", samples=times, **details)


async def _openMany(opener: Opener, count: int, parallel: int = 32) -> list[Link]:
    links: list[Link] = []
    while len(links) < count:
        batch = min(parallel, count - len(links))
        opened: list[Link] = await defer.gatherResults(
            [defer.ensureDeferred(opener()) for _ in range(batch)],
            consumeErrors=True,
        )
        links.extend(opened)
    return links


async def holdWorkload(opener: Opener, count: int, warm: int, commands: CommandQueue) -> None:
    """
    Open C{warm} connections and print C{warm}; on C{go}, open C{count} more
    and print C{held}; on C{release} (or the end of standard input), drop
    them all.
    """
    links = await _openMany(opener, warm)
    emit("warm", count=len(links))
    if await commands.next() == "go":
        links += await _openMany(opener, count)
        emit("held", count=len(links))
        await commands.next()
    for link in links:
        link.abort()


class CommandQueue:
    """
    The commands a client reads from standard input, in order.
    """

    def __init__(self) -> None:
        self._lines: deque[str] = deque()
        self._waiters: deque[defer.Deferred[str]] = deque()
        self._ended = False

    def put(self, line: str) -> None:
        if self._waiters:
            self._waiters.popleft().callback(line)
        else:
            self._lines.append(line)

    def end(self) -> None:
        self._ended = True
        while self._waiters:
            self._waiters.popleft().callback("")

    def next(self) -> defer.Deferred[str]:
        if self._lines:
            return defer.succeed(self._lines.popleft())
        if self._ended:
            return defer.succeed("")
        d: defer.Deferred[str] = defer.Deferred()
        self._waiters.append(d)
        return d


class _ClientCommands(LineReceiver):
    delimiter = b"\n"

    def __init__(self, queue: CommandQueue) -> None:
        self._queue = queue

    def lineReceived(self, line: bytes) -> None:
        self._queue.put(line.decode("ascii", "replace").strip())

    def connectionLost(self, reason: Failure | None = None) -> None:
        self._queue.end()


def client(options: argparse.Namespace) -> int:
    """
    Run the workloads asked for, in order, printing a result line for each.

    @return: The exit status.
    """
    from twisted.internet import reactor

    raiseFileLimit(options.hold + options.warm + 256)
    pinTo(options.cpu)
    value = EXAMPLE if options.impl == "ns" else PLAIN_EXAMPLE
    if options.impl == "ns":
        opener = netStructerOpener(reactor, options.port)
    else:
        opener = plainOpener(reactor, options.port, options.cert_dir)
    commands = CommandQueue()
    readCommands(reactor, _ClientCommands(commands))
    status = [0]

    async def workloads() -> None:
        try:
            if options.echo:
                await _deadline(reactor, echoWorkload(opener, value, options.echo), "echo")
            if options.stream:
                await _deadline(
                    reactor, streamWorkload(opener, value, options.stream, options.batch), "stream"
                )
            for size, count in options.bulk:
                await _deadline(reactor, bulkWorkload(opener, size, count), "bulk")
            if options.connect:
                await _deadline(reactor, connectWorkload(opener, value, options.connect), "connect")
            if options.hold:
                await _deadline(
                    reactor, holdWorkload(opener, options.hold, options.warm, commands), "hold"
                )
        except Exception as e:  # noqa: BLE001 (reported to the parent, which fails)
            emit("error", where="client", error=f"{type(e).__name__}: {e}")
            status[0] = 1

    def start() -> None:
        defer.ensureDeferred(workloads()).addBoth(lambda _: reactor.stop())

    reactor.callWhenRunning(start)
    reactor.run()
    return status[0]


# The blocking NetStructer client and pyzmq: blocking sockets, no reactor.


def blockingClient(options: argparse.Namespace) -> int:
    """
    The workloads over NetStructer's blocking L{link
    <netstructer.blocking.link>}: one L{sendBuffer
    <netstructer.blocking.Link.sendBuffer>} per value (or, with
    C{--batch N} over 1, L{sendBuffers
    <netstructer.blocking.Link.sendBuffers>} of N values), and
    C{recvBuffer} for answers.

    @return: The exit status.
    """
    from netstructer.blocking import link
    from netstructer.keys import asKeyring

    keyring = asKeyring(os.environ[KEY_VARIABLE])
    address = ("127.0.0.1", options.port)
    pinTo(options.cpu)

    def openLink() -> Any:
        return link(address, keyring, timeout=WORKLOAD_DEADLINE, maxBufferSize=MAX_VALUE_SIZE)

    def countRun(session: Any, value: object, count: int, batch: int) -> float:
        session.sendBuffer((COUNT_COMMAND, count))
        started = time.perf_counter()
        if batch > 1:
            values = [value] * batch
            sendBuffers = session.sendBuffers
            sent = 0
            while sent < count:
                n = min(batch, count - sent)
                sendBuffers(values if n == batch else values[:n])
                sent += n
        else:
            sendBuffer = session.sendBuffer
            for _ in range(count):
                sendBuffer(value)
        reply = session.recvBuffer()
        elapsed = time.perf_counter() - started
        checkCount(reply, count)
        return elapsed

    try:
        if options.echo:
            deadline = Deadline("echo")
            with openLink() as session:
                send, receive = session.sendBuffer, session.recvBuffer
                for _ in range(min(200, options.echo)):
                    send(EXAMPLE)
                    reply = receive()
                if reply != EXAMPLE:
                    raise RuntimeError(f"the echo {reply!r} differs from the value sent")
                clock = time.perf_counter
                times: list[float] = []
                for _ in range(options.echo):
                    started = clock()
                    send(EXAMPLE)
                    receive()
                    times.append(clock() - started)
                deadline.check()
            emit("result", workload="echo", samples=times)
        if options.stream:
            with openLink() as session:
                countRun(session, EXAMPLE, min(2000, options.stream), options.batch)
                seconds = countRun(session, EXAMPLE, options.stream, options.batch)
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
            with openLink() as session:
                countRun(session, value, 1, 1)
                seconds = countRun(session, value, count, 1)
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
            deadline = Deadline("connect")
            samples: list[float] = []
            warm = min(5, options.connect)
            for i in range(warm + options.connect):
                started = time.perf_counter()
                session = openLink()
                session.sendBuffer(EXAMPLE)
                session.recvBuffer()
                elapsed = time.perf_counter() - started
                session.close()
                if i >= warm:
                    samples.append(elapsed)
                deadline.check()
            emit("result", workload="connect", samples=samples)
    except Exception as e:  # noqa: BLE001 (reported to the parent, which fails)
        emit("error", where="blocking client", error=f"{type(e).__name__}: {e}")
        return 1
    return 0


def zmqServer(options: argparse.Namespace) -> None:
    """
    A pyzmq ROUTER socket with CURVE encryption (a fresh server key pair),
    on 127.0.0.1: counts values after a count command and echoes the
    others, decoding each with plain msgpack like L{PlainServer}.  Prints
    its port and public key, and serves until standard input closes.
    """
    import zmq

    context = zmq.Context()
    public, secret = zmq.curve_keypair()
    router = context.socket(zmq.ROUTER)
    router.curve_server = True
    router.curve_publickey = public
    router.curve_secretkey = secret
    router.maxmsgsize = MAX_VALUE_SIZE
    router.linger = 0
    port = router.bind_to_random_port("tcp://127.0.0.1")
    emit("listening", port=port, pid=os.getpid(), curveKey=public.decode("ascii"))
    poller = zmq.Poller()
    poller.register(router, zmq.POLLIN)
    poller.register(sys.stdin.fileno(), zmq.POLLIN)
    tallies: dict[bytes, Tally] = {}
    recv, send = router.recv_multipart, router.send_multipart
    ends = time.monotonic() + LIFETIME
    try:
        while time.monotonic() < ends:
            ready = dict(poller.poll(1000))
            if sys.stdin.fileno() in ready:
                line = sys.stdin.readline()
                if not line or line.strip() == "quit":
                    return
            if router not in ready:
                continue
            while True:
                try:
                    identity, payload = recv(zmq.NOBLOCK, copy=False)
                except zmq.Again:
                    break
                value = unpackb(payload.buffer)
                key = identity.bytes
                tally = tallies.get(key)
                if tally is not None:
                    if tally.add(value):
                        del tallies[key]
                        send([key, plainPack(tally.done())])
                    continue
                expected = countCommand(value)
                if expected is not None:
                    tallies[key] = Tally(expected)
                    continue
                send([key, plainPack(value)])
    finally:
        router.close(0)
        context.term()


def zmqClient(options: argparse.Namespace) -> int:
    """
    The workloads over a pyzmq DEALER socket with CURVE encryption: one
    blocking C{send} per value (C{copy=False} for bulk values, as pyzmq
    advises for large messages; its high-water mark is the backpressure),
    one C{recv} per answer.

    @return: The exit status.
    """
    import zmq

    pinTo(options.cpu)
    context = zmq.Context()

    def openSocket() -> Any:
        dealer = context.socket(zmq.DEALER)
        public, secret = zmq.curve_keypair()
        dealer.curve_serverkey = options.server_key.encode("ascii")
        dealer.curve_publickey = public
        dealer.curve_secretkey = secret
        dealer.maxmsgsize = MAX_VALUE_SIZE
        dealer.linger = 1000
        dealer.rcvtimeo = int(WORKLOAD_DEADLINE * 1000)
        dealer.sndtimeo = int(WORKLOAD_DEADLINE * 1000)
        dealer.connect(f"tcp://127.0.0.1:{options.port}")
        return dealer

    def receive(dealer: Any) -> object:
        return unpackb(dealer.recv(copy=False).buffer)

    def countRun(dealer: Any, value: object, count: int) -> float:
        dealer.send(plainPack((COUNT_COMMAND, count)))
        started = time.perf_counter()
        if type(value) is bytes and len(value) > 65536:
            for _ in range(count):
                # One encoding per value, as for every other peer.
                dealer.send(plainPack(value), copy=False)
        else:
            send = dealer.send
            for _ in range(count):
                send(plainPack(value))
        reply = receive(dealer)
        elapsed = time.perf_counter() - started
        checkCount(reply, count)
        return elapsed

    try:
        if options.echo:
            deadline = Deadline("echo")
            dealer = openSocket()
            for _ in range(min(200, options.echo)):
                dealer.send(plainPack(PLAIN_EXAMPLE))
                receive(dealer)
            clock = time.perf_counter
            times: list[float] = []
            send = dealer.send
            for _ in range(options.echo):
                started = clock()
                send(plainPack(PLAIN_EXAMPLE))
                receive(dealer)
                times.append(clock() - started)
            deadline.check()
            dealer.close()
            emit("result", workload="echo", samples=times)
        if options.stream:
            dealer = openSocket()
            countRun(dealer, PLAIN_EXAMPLE, min(2000, options.stream))
            seconds = countRun(dealer, PLAIN_EXAMPLE, options.stream)
            dealer.close()
            emit(
                "result",
                workload="stream",
                values=options.stream,
                seconds=seconds,
                rate=options.stream / seconds,
            )
        for size, count in options.bulk:
            value = os.urandom(size)
            dealer = openSocket()
            countRun(dealer, value, 1)
            seconds = countRun(dealer, value, count)
            dealer.close()
            emit(
                "result",
                workload="bulk",
                size=size,
                values=count,
                seconds=seconds,
                rate=size * count / seconds / 1e6,
            )
    except Exception as e:  # noqa: BLE001 (reported to the parent, which fails)
        emit("error", where="zmq client", error=f"{type(e).__name__}: {e}")
        return 1
    finally:
        context.term()
    return 0


# Raw sockets: the transport's ceiling.

_RAW_HEADER = struct.Struct("!QQ")
_RAW_TIMEOUT = 60.0


def _receiveExactly(connection: socket.socket, view: memoryview) -> None:
    got = 0
    size = len(view)
    while got < size:
        n = connection.recv_into(view[got:])
        if not n:
            raise ConnectionError("the raw source closed early")
        got += n


def rawSink(options: argparse.Namespace) -> None:
    """
    Accept connections one after another; on each, read a header (value
    size, count), receive that many values, each into one buffer, with
    C{recv_into}, and answer one byte.  A size of 0, the end of standard
    input, or a long enough wait for a connection stops.
    """
    with socket.create_server(("127.0.0.1", 0)) as listener:
        emit("listening", port=listener.getsockname()[1], pid=os.getpid())
        for _ in range(1000):
            ready, _, _ = select.select([listener, sys.stdin], [], [], LIFETIME)
            if listener not in ready:
                return
            connection, _ = listener.accept()
            with connection:
                connection.settimeout(_RAW_TIMEOUT)
                header = bytearray(_RAW_HEADER.size)
                _receiveExactly(connection, memoryview(header))
                size, count = _RAW_HEADER.unpack(header)
                if not size:
                    return
                view = memoryview(bytearray(size))
                for _ in range(count):
                    _receiveExactly(connection, view)
                connection.sendall(b"k")


def _rawRun(port: int, data: bytes, count: int) -> float:
    with socket.create_connection(("127.0.0.1", port), timeout=_RAW_TIMEOUT) as connection:
        started = time.perf_counter()
        connection.sendall(_RAW_HEADER.pack(len(data), count))
        for _ in range(count):
            connection.sendall(data)
        if connection.recv(1) != b"k":
            raise ConnectionError("the raw sink did not answer")
        return time.perf_counter() - started


def rawSource(options: argparse.Namespace) -> None:
    """
    For each C{SIZE:COUNT}, send C{COUNT} buffers of C{SIZE} bytes with
    C{sendall} (after one unmeasured buffer), and print the rate.
    """
    for size, count in options.bulk:
        data = os.urandom(size)
        _rawRun(options.port, data, 1)
        seconds = _rawRun(options.port, data, count)
        emit(
            "result",
            workload="raw",
            size=size,
            values=count,
            seconds=seconds,
            rate=size * count / seconds / 1e6,
        )


def _sizeCount(text: str) -> tuple[int, int]:
    size, _, count = text.partition(":")
    return int(size), int(count)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="A peer process of bench_bridge.py.")
    parser.add_argument("--profile", metavar="PATH", help="write cProfile stats to PATH")
    roles = parser.add_subparsers(dest="role", required=True)
    server = roles.add_parser("server")
    server.add_argument("impl", choices=("ns", "plain", "tls"))
    server.add_argument("--cert-dir")
    server.add_argument("--max-sessions", type=int, default=1100)
    peer = roles.add_parser("client")
    peer.add_argument("impl", choices=("ns", "plain", "tls", "blocking"))
    peer.add_argument("port", type=int)
    peer.add_argument("--cert-dir")
    peer.add_argument("--stream", type=int, default=0)
    peer.add_argument("--batch", type=int, default=100)
    peer.add_argument("--echo", type=int, default=0)
    peer.add_argument("--bulk", type=_sizeCount, action="append", default=[])
    peer.add_argument("--connect", type=int, default=0)
    peer.add_argument("--hold", type=int, default=0)
    peer.add_argument("--cpu", type=int, help="run on this CPU only")
    peer.add_argument("--warm", type=int, default=10)
    roles.add_parser("zmqserver")
    zmqPeer = roles.add_parser("zmqclient")
    zmqPeer.add_argument("port", type=int)
    zmqPeer.add_argument("server_key")
    zmqPeer.add_argument("--stream", type=int, default=0)
    zmqPeer.add_argument("--echo", type=int, default=0)
    zmqPeer.add_argument("--bulk", type=_sizeCount, action="append", default=[])
    zmqPeer.add_argument("--cpu", type=int, help="run on this CPU only")
    addGRPCRoles(roles, _sizeCount)
    roles.add_parser("rawsink")
    source = roles.add_parser("rawsource")
    source.add_argument("port", type=int)
    source.add_argument("bulk", type=_sizeCount, nargs="+")
    return parser


def main() -> int:
    """
    Run the peer named on the command line.

    @return: The exit status.
    """
    options = _parser().parse_args()
    # Peers run as an application embedding NetStructer runs them: with no
    # process-wide tuning the library does not apply itself.  For operators,
    # NETSTRUCTER_BENCH_TUNED=1 applies what the twistd plugin and the
    # netstructer command apply, to every peer alike.
    if os.environ.get(TUNED_VARIABLE) == "1":
        tuneAllocator()
    if options.role == "client" and options.impl == "tls" and not options.cert_dir:
        raise SystemExit("a tls client needs --cert-dir")
    roles: dict[str, Callable[[argparse.Namespace], int | None]] = {
        "server": serve,
        "client": blockingClient
        if options.role == "client" and options.impl == "blocking"
        else client,
        "zmqserver": zmqServer,
        "zmqclient": zmqClient,
        "grpcserver": grpcServer,
        "grpcclient": grpcClient,
        "rawsink": rawSink,
        "rawsource": rawSource,
    }
    profiler = cProfile.Profile() if options.profile else None
    if profiler is not None:
        profiler.enable()
    try:
        status = roles[options.role](options)
    finally:
        if profiler is not None:
            profiler.disable()
            profiler.dump_stats(options.profile)
    return status or 0


if __name__ == "__main__":
    sys.exit(main())
