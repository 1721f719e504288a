# -*- test-case-name: tests.test_blocking -*-
"""
Tests for L{netstructer.blocking}.

Two kinds of test live here.

  1. In-process unit tests of the blocking client, L{Link}, with no real
     I/O: a fake socket whose other end is a real server-side
     L{Channel} (so the handshake and the records are real), and a fake
     socket whose other end is a real L{BridgeProtocol} on a
     L{StringTransport} with a L{Clock} (the interoperation of the two
     adapters, byte for byte).  They script partial reads and writes,
     C{EINTR} and timeouts.

  2. Real loopback tests (127.0.0.1, port 0) of the blocking server facade,
     which runs the global Twisted reactor in a background thread.  Each
     runs in its own child process (C{python -m tests.test_blocking
     SCENARIO}), and the test asserts on the child's exit status and
     output.  A subprocess, because a process can run the global reactor
     only once: other test modules (C{tests.test_loopback},
     C{tests.test_twistd}) use trial's asynchronous C{TestCase}, which runs
     the global reactor in the main thread of the pytest process, and a
     reactor already running in a background thread would break them (and
     they would break it).  A child process also gives every scenario a
     fresh reactor, lets the tests send a real SIGINT, and lets a scenario
     exit without closing its server to exercise the C{atexit} hook.  This
     module never starts the reactor in the pytest process: the scenarios
     run only in children.

Every blocking call in the scenarios has a timeout, every child a hard
timeout, and no test sleeps to let something happen: the one polling loop
(waiting for the main thread to block before the test sends SIGINT) has a
deadline, and the one expected timeout (no connection is accepted before
C{listen()}) is a short C{waitFor}.
"""

from __future__ import annotations

import errno
import os
import select
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from netstructer import blocking
from netstructer.blocking import Bridge, Error, GenerateKey, Link, link, parseAddress
from netstructer.channel import (
    Channel,
    CloseCode,
    CloseReceived,
    HandshakeCompleted,
    PongReceived,
    Role,
    ValueReceived,
    ValuesReceived,
    frameOverhead,
)
from netstructer.errors import (
    AuthenticationError,
    BufferDataError,
    ChannelClosedError,
    ConnectionBroken,
    EncodeError,
    HandshakeError,
    HandshakeTimeout,
    IntegrityError,
    InvalidKey,
    OperationTimedOut,
    RemoteProtocolError,
    ServerInitializeError,
    SessionClosed,
    TruncationError,
)
from netstructer.keys import Keyring, generateKey, writeKeyFile
from netstructer.protocol import BridgeConfig, BridgeProtocol
from netstructer.values import Limits

KEY = generateKey()
EXAMPLE = ["hi im haytam", 128, {b"gg": "gg"}, {1, 2, 6, 4}, (False, True)]
_PREFIX = struct.Struct("!I")
_ROOT = Path(__file__).resolve().parent.parent


def assertExact(case: SynchronousTestCase, expected: object, actual: object) -> None:
    """
    Assert that C{actual} equals C{expected} with the same types at every
    level (C{1 == 1.0 == True} would not do).
    """
    case.assertEqual(expected, actual)
    case.assertIs(type(expected), type(actual))
    if isinstance(expected, (list, tuple)):
        assert isinstance(actual, (list, tuple))
        for e, a in zip(expected, actual, strict=True):
            assertExact(case, e, a)
    elif isinstance(expected, dict):
        assert isinstance(actual, dict)
        for k in expected:
            assertExact(case, expected[k], actual[k])


class FakeSocket:
    """
    A connected socket whose other end is a real server-side L{Channel}.

    What the link writes is framed and fed to the channel as it arrives;
    what the channel queues (its handshake reply, pongs, close replies) and
    what the test delivers becomes readable.  Reads and writes can be cut
    short, and errors scripted.

    @ivar channel: The server's channel.
    @ivar readable: Bytes the link may read.
    @ivar values: Values the server received.
    @ivar events: Every event the server's channel produced.
    @ivar recvErrors: Exceptions the next reads raise, one each.
    @ivar sendErrors: Exceptions the next writes raise, one each.
    @ivar timeouts: Every timeout the link set.
    @ivar bytesRead: How many bytes the link has read.
    """

    def __init__(
        self,
        key: bytes | Keyring = KEY,
        *,
        suite: str = "noise",
        limits: Limits | None = None,
        recvChunk: int | None = None,
        sendChunk: int | None = None,
        withSendmsg: bool = True,
        answer: bool = True,
    ) -> None:
        self.channel = Channel(
            Role.SERVER, key, suite=suite, limits=limits or Limits(), acceptSuites=(suite,)
        )
        self.readable = bytearray()
        self._written = bytearray()
        self.values: list[object] = []
        self.events: list[object] = []
        self.serverErrors: list[Exception] = []
        self.recvErrors: deque[BaseException] = deque()
        self.sendErrors: deque[BaseException] = deque()
        self.timeouts: list[float | None] = []
        self.timeout: float | None = None
        self.recvChunk = recvChunk
        self.sendChunk = sendChunk
        self.answer = answer
        self.bytesRead = 0
        self.writes: list[int] = []
        self.eof = False
        self.resetAfterClose = False
        self.closed = False
        if not withSendmsg:
            self.sendmsg = None  # type: ignore[assignment]

    # The socket interface the link uses.

    def settimeout(self, timeout: float | None) -> None:
        """
        Record the timeout the link set.
        """
        self.timeout = timeout
        self.timeouts.append(timeout)

    def getpeername(self) -> tuple[str, int]:
        """
        @return: A made-up server address.
        """
        return ("127.0.0.1", 5000)

    def recv_into(self, buffer: memoryview, nbytes: int = 0) -> int:
        """
        Hand the link readable bytes, or raise what is scripted: the next
        error, or what a real socket raises when nothing is readable.
        """
        if self.closed:
            raise OSError(errno.EBADF, "closed")
        if self.recvErrors:
            raise self.recvErrors.popleft()
        if not self.readable:
            if self.eof:
                return 0
            if self.timeout is None:
                raise AssertionError("the link would block forever on an idle socket")
            if self.timeout == 0:
                raise BlockingIOError(errno.EAGAIN, "would block")
            raise TimeoutError("timed out")
        size = min(len(buffer), len(self.readable), self.recvChunk or len(self.readable))
        buffer[:size] = self.readable[:size]
        del self.readable[:size]
        self.bytesRead += size
        return size

    def sendmsg(self, buffers: Iterable[bytes | memoryview]) -> int:
        """
        Take (part of) what the link writes.
        """
        return self._accept(b"".join(bytes(b) for b in buffers))

    def send(self, data: bytes | memoryview) -> int:
        """
        Take (part of) what the link writes.
        """
        return self._accept(bytes(data))

    def shutdown(self, how: int) -> None:
        """
        Nothing to do.
        """

    def close(self) -> None:
        """
        Remember the link closed the socket.
        """
        self.closed = True

    # The server's side.

    def _accept(self, data: bytes) -> int:
        if self.closed:
            raise OSError(errno.EBADF, "closed")
        if self.sendErrors:
            raise self.sendErrors.popleft()
        size = min(len(data), self.sendChunk or len(data))
        self.writes.append(size)
        self._written += data[:size]
        if self.answer:
            self.pump()
        return size

    def pump(self) -> None:
        """
        Feed the server's channel every complete frame the link wrote.
        """
        written = self._written
        while len(written) >= 4:
            (length,) = _PREFIX.unpack_from(written)
            if len(written) < 4 + length:
                break
            frame = bytes(written[4 : 4 + length])
            del written[: 4 + length]
            try:
                event = self.channel.receiveFrame(frame)
            except RemoteProtocolError as e:
                self.serverErrors.append(e)
                event = None
            self.events.append(event)
            if isinstance(event, ValueReceived):
                self.values.append(event.value)
            elif isinstance(event, ValuesReceived):
                self.values.extend(event.values)
            for reply in self.channel.framesToSend():
                self.deliver(self.framed(reply))
            if isinstance(event, CloseReceived):
                # Both close records exchanged: a real server ends the
                # connection (when it closed first, this confirms the end),
                # or, failing, resets it.
                if self.resetAfterClose:
                    self.recvErrors.append(ConnectionResetError(errno.ECONNRESET, "reset"))
                else:
                    self.eof = True

    @staticmethod
    def framed(frame: bytes) -> bytes:
        """
        @return: C{frame} with its length prefix.
        """
        return _PREFIX.pack(len(frame)) + frame

    def deliver(self, data: bytes) -> None:
        """
        Make C{data} readable by the link.
        """
        self.readable += data

    def serverSend(self, value: object) -> bytes:
        """
        Have the server send C{value}.

        @return: The bytes delivered.
        """
        data = self.framed(self.channel.sendValue(value))
        self.deliver(data)
        return data


def connected(sock: FakeSocket, **options: Any) -> Link:
    """
    @return: A link that completed its handshake over C{sock}.
    """
    return Link(sock, KEY, **options)  # type: ignore[arg-type]


class LinkHandshakeTests(SynchronousTestCase):
    """
    L{Link} runs the handshake before it is returned.
    """

    def test_handshake(self) -> None:
        """
        The link is returned once the server has authenticated; the server
        has the key confirmation too.
        """
        sock = FakeSocket()
        bridge = connected(sock)
        self.assertTrue(bridge.open)
        self.assertEqual(bridge.suite, "noise (AESGCM)")
        self.assertEqual(bridge.peerMaxValueSize, Limits().maxSize)
        self.assertIsInstance(sock.events[-1], HandshakeCompleted)
        self.assertIn("127.0.0.1:5000", repr(bridge))

    def test_fernetAndChaCha(self) -> None:
        """
        The suite and cipher are the caller's choice.
        """
        bridge = connected(FakeSocket(suite="fernet"), suite="fernet")
        self.assertEqual(bridge.suite, "fernet")
        bridge = connected(FakeSocket(), cipher="ChaChaPoly")
        self.assertEqual(bridge.suite, "noise (ChaChaPoly)")

    def test_wrongKey(self) -> None:
        """
        A server holding another key makes the link fail with
        L{AuthenticationError}, and the socket is closed.
        """
        sock = FakeSocket(generateKey())
        self.assertRaises(AuthenticationError, connected, sock)
        self.assertTrue(sock.closed)

    def test_suiteMismatch(self) -> None:
        """
        A server refusing the suite makes the link fail with
        L{HandshakeError}.
        """
        sock = FakeSocket(suite="fernet")
        error = self.assertRaises(HandshakeError, connected, sock)
        self.assertIn("fernet", str(error))

    def test_handshakeTimeout(self) -> None:
        """
        A server that never answers makes the link fail with
        L{HandshakeTimeout} once the handshake timeout passes.
        """
        sock = FakeSocket(answer=False)
        self.assertRaises(HandshakeTimeout, connected, sock, handshakeTimeout=0.01)
        self.assertTrue(sock.closed)

    def test_closedDuringHandshake(self) -> None:
        """
        A server that closes the connection during the handshake makes the
        link fail with L{HandshakeError}.
        """
        sock = FakeSocket(answer=False)
        sock.eof = True
        self.assertRaises(HandshakeError, connected, sock)

    def test_oversizedHandshakeFrame(self) -> None:
        """
        A handshake reply announced larger than the handshake limit is
        refused from its length prefix alone.
        """
        sock = FakeSocket(answer=False)
        sock.deliver(_PREFIX.pack(10_000) + b"x" * 100)
        self.assertRaises(BufferDataError, connected, sock)

    def test_badKey(self) -> None:
        """
        A malformed key is refused before anything is written, and the
        socket closed.
        """
        sock = FakeSocket()
        self.assertRaises(InvalidKey, Link, sock, b"not a key")
        self.assertEqual(sock.writes, [])
        self.assertTrue(sock.closed)


class LinkTransferTests(SynchronousTestCase):
    """
    Values cross a L{Link} both ways, whatever the socket does to the
    bytes.
    """

    def roundTrip(self, sock: FakeSocket, bridge: Link, values: list[object]) -> None:
        """
        Send C{values} to the server, then have it send them back.
        """
        for value in values:
            bridge.sendBuffer(value)
        self.assertEqual(sock.values, values)
        for value in values:
            sock.serverSend(value)
        for value in values:
            assertExact(self, value, bridge.recvBuffer(timeout=1))

    def test_values(self) -> None:
        """
        The original package's example, and others, cross both ways with
        their exact types.
        """
        sock = FakeSocket()
        bridge = connected(sock)
        self.roundTrip(sock, bridge, [EXAMPLE, "support us", b"\x00" * 1000, None, 3.5, -(2**70)])

    def test_partialReadsAndWrites(self) -> None:
        """
        A socket that reads one byte and writes three bytes at a time
        changes nothing.
        """
        sock = FakeSocket(recvChunk=1, sendChunk=3)
        bridge = connected(sock)
        self.roundTrip(sock, bridge, [EXAMPLE, list(range(100)), "x" * 5000])
        self.assertEqual(max(sock.writes), 3)
        self.assertGreater(len(sock.writes), 5000 // 3)

    def test_partialWritesWithoutSendmsg(self) -> None:
        """
        Without C{sendmsg}, small frames are written behind their prefix
        and large ones separately, and short writes are resumed.
        """
        sock = FakeSocket(sendChunk=1000, withSendmsg=False)
        bridge = connected(sock)
        self.roundTrip(sock, bridge, [EXAMPLE, b"y" * 200_000])

    def test_interruptedRead(self) -> None:
        """
        A read interrupted by a signal (C{EINTR}) is retried.
        """
        sock = FakeSocket()
        bridge = connected(sock)
        sock.serverSend(EXAMPLE)
        sock.recvErrors.append(InterruptedError(errno.EINTR, "interrupted"))
        assertExact(self, EXAMPLE, bridge.recvBuffer(timeout=1))
        self.assertEqual(len(sock.recvErrors), 0)

    def test_interruptedWrite(self) -> None:
        """
        A write interrupted by a signal (C{EINTR}) is retried, through
        C{sendmsg} or C{send}.
        """
        for withSendmsg in (True, False):
            sock = FakeSocket(withSendmsg=withSendmsg)
            bridge = connected(sock)
            sock.sendErrors.append(InterruptedError(errno.EINTR, "interrupted"))
            bridge.sendBuffer(EXAMPLE)
            self.assertEqual(sock.values, [EXAMPLE])

    def test_largeValueInSmallReads(self) -> None:
        """
        A value of several megabytes arriving in uneven reads is received
        straight into one buffer of its size, kept for the next large value
        and never grown past it; small frames use a small buffer.
        """
        sock = FakeSocket(recvChunk=70_001)
        bridge = connected(sock)
        big = bytes(range(256)) * 16_384
        sock.serverSend(big)
        sock.serverSend("after")
        self.assertEqual(bridge.recvBuffer(timeout=1), big)
        self.assertEqual(bridge.recvBuffer(timeout=1), "after")
        small, large = bridge._session.frames.bufferSizes
        self.assertLessEqual(small, 4 * 256 * 1024)
        self.assertLess(large, len(big) + 1024)

    def test_unalignedReads(self) -> None:
        """
        Reads that end in the middle of frames keep the partial frame and
        move it to the front of the buffer, which stays bounded.
        """
        sock = FakeSocket(recvChunk=1000)
        bridge = connected(sock)
        for i in range(2000):
            sock.serverSend(("value", i))
        got = [bridge.recvBuffer(timeout=1) for _ in range(2000)]
        self.assertEqual(got, [("value", i) for i in range(2000)])
        self.assertLessEqual(max(bridge._session.frames.bufferSizes), 2 * 256 * 1024)

    def test_manyValuesInOneRead(self) -> None:
        """
        Many small frames arriving together are taken one per call, in
        order.
        """
        sock = FakeSocket()
        bridge = connected(sock)
        for i in range(1000):
            sock.serverSend(i)
        self.assertEqual([bridge.recvBuffer(timeout=1) for _ in range(1000)], list(range(1000)))

    def test_sendBuffers(self) -> None:
        """
        L{Link.sendBuffers} sends many values in order with few writes,
        through C{sendmsg} or coalesced C{send}s, resuming short writes.
        """
        for withSendmsg in (True, False):
            sock = FakeSocket(withSendmsg=withSendmsg, sendChunk=10_000)
            bridge = connected(sock)
            writesBefore = len(sock.writes)
            eventsBefore = len(sock.events)
            self.assertEqual(bridge.sendBuffers(range(1000)), 1000)
            self.assertEqual(sock.values, list(range(1000)))
            self.assertLess(len(sock.writes) - writesBefore, 50)
            # A thousand small ints fit in one batch record.
            self.assertEqual(
                [type(event) for event in sock.events[eventsBefore:]], [ValuesReceived]
            )
            self.assertEqual(bridge.sendBuffers([]), 0)

    def test_sendBuffersEncodeError(self) -> None:
        """
        A value of a batch that cannot be encoded raises L{EncodeError}
        after the values before it are sent; the link stays usable.
        """
        sock = FakeSocket()
        bridge = connected(sock)
        self.assertRaises(EncodeError, bridge.sendBuffers, [1, 2, object(), 4])
        self.assertEqual(sock.values, [1, 2])
        bridge.sendBuffers([5])
        self.assertEqual(sock.values, [1, 2, 5])

    def test_encodeErrorKeepsLink(self) -> None:
        """
        A value that cannot be encoded raises L{EncodeError}, sends nothing
        and leaves the link usable.
        """
        sock = FakeSocket()
        bridge = connected(sock)
        self.assertRaises(EncodeError, bridge.sendBuffer, object())
        bridge.sendBuffer("fine")
        self.assertEqual(sock.values, ["fine"])

    def test_tooBigToSendKeepsLink(self) -> None:
        """
        A value larger than the server accepts raises L{BufferDataError}
        before anything is written, and the link stays usable.
        """
        sock = FakeSocket(limits=Limits(maxSize=1000))
        bridge = connected(sock)
        self.assertEqual(bridge.peerMaxValueSize, 1000)
        self.assertRaises(BufferDataError, bridge.sendBuffer, b"z" * 2000)
        bridge.sendBuffer("fine")
        self.assertEqual(sock.values, ["fine"])

    def test_tamperedRecord(self) -> None:
        """
        A record altered in transit fails the link with
        L{IntegrityError}; later calls raise L{ChannelClosedError}.
        """
        sock = FakeSocket()
        bridge = connected(sock)
        frame = bytearray(FakeSocket.framed(sock.channel.sendValue(EXAMPLE)))
        frame[-1] ^= 1
        sock.deliver(bytes(frame))
        self.assertRaises(IntegrityError, bridge.recvBuffer, timeout=1)
        self.assertTrue(sock.closed)
        self.assertFalse(bridge.open)
        error = self.assertRaises(ChannelClosedError, bridge.recvBuffer, timeout=1)
        self.assertIsInstance(error.__cause__, IntegrityError)
        self.assertRaises(ChannelClosedError, bridge.sendBuffer, 1)

    def test_interruptedWriteFailsLink(self) -> None:
        """
        A write interrupted by Ctrl-C (which cannot say how much it wrote)
        leaves the stream in an unknown state: the interrupt propagates and
        the link is closed.
        """
        for withSendmsg in (True, False):
            sock = FakeSocket(withSendmsg=withSendmsg)
            bridge = connected(sock)
            sock.sendErrors.append(KeyboardInterrupt())
            self.assertRaises(KeyboardInterrupt, bridge.sendBuffer, 1)
            self.assertFalse(bridge.open)
            self.assertTrue(sock.closed)
            self.assertRaises(ChannelClosedError, bridge.sendBuffers, [1])

    def test_interruptedReadKeepsLink(self) -> None:
        """
        A read interrupted by Ctrl-C consumed nothing: the link stays
        usable.
        """
        sock = FakeSocket()
        bridge = connected(sock)
        sock.recvErrors.append(KeyboardInterrupt())
        self.assertRaises(KeyboardInterrupt, bridge.recvBuffer, timeout=1)
        sock.serverSend("still here")
        self.assertEqual(bridge.recvBuffer(timeout=1), "still here")

    def test_connectionReset(self) -> None:
        """
        A connection reset, or a broken pipe, raises L{ConnectionBroken} (an
        C{OSError} too, whose cause is the socket's error), as the Twisted
        protocol reports it, and closes the link.
        """
        sock = FakeSocket()
        bridge = connected(sock)
        reset = ConnectionResetError(errno.ECONNRESET, "reset")
        sock.recvErrors.append(reset)
        error = self.assertRaises(ConnectionBroken, bridge.recvBuffer, timeout=1)
        self.assertIsInstance(error, OSError)
        self.assertIsInstance(error, TruncationError)
        self.assertIs(error.__cause__, reset)
        self.assertIn("reset", str(error))
        self.assertIn("connect again", str(error))
        self.assertFalse(bridge.open)
        sock = FakeSocket()
        bridge = connected(sock)
        sock.sendErrors.append(BrokenPipeError(errno.EPIPE, "broken pipe"))
        error = self.assertRaises(ConnectionBroken, bridge.sendBuffer, 1)
        self.assertIsInstance(error.__cause__, BrokenPipeError)
        self.assertRaises(ChannelClosedError, bridge.sendBuffer, 1)


class LinkTimeoutTests(SynchronousTestCase):
    """
    Timeouts raise L{OperationTimedOut} and consume nothing.
    """

    def test_recvTimeout(self) -> None:
        """
        With nothing to read, L{Link.recvBuffer} raises
        L{OperationTimedOut}, and the link stays usable.
        """
        sock = FakeSocket()
        bridge = connected(sock)
        self.assertRaises(OperationTimedOut, bridge.recvBuffer, timeout=0.01)
        self.assertIsInstance(OperationTimedOut(), TimeoutError)
        sock.serverSend("later")
        self.assertEqual(bridge.recvBuffer(timeout=1), "later")

    def test_zeroTimeoutPolls(self) -> None:
        """
        A timeout of 0 reads without waiting.
        """
        sock = FakeSocket()
        bridge = connected(sock)
        self.assertRaises(OperationTimedOut, bridge.recvBuffer, timeout=0)
        self.assertEqual(sock.timeout, 0.0)
        sock.serverSend(1)
        self.assertEqual(bridge.recvBuffer(timeout=0), 1)

    def test_partialFrameKept(self) -> None:
        """
        A frame partly read when the timeout passes stays buffered, and the
        next call completes it.
        """
        sock = FakeSocket()
        bridge = connected(sock)
        data = FakeSocket.framed(sock.channel.sendValue(EXAMPLE))
        sock.deliver(data[:7])
        self.assertRaises(OperationTimedOut, bridge.recvBuffer, timeout=0.01)
        sock.deliver(data[7:-1])
        self.assertRaises(OperationTimedOut, bridge.recvBuffer, timeout=0.01)
        sock.deliver(data[-1:])
        assertExact(self, EXAMPLE, bridge.recvBuffer(timeout=1))

    def test_defaultTimeout(self) -> None:
        """
        L{Link.settimeout} sets the default of every call; the original
        package's C{TimeOut} does the same.
        """
        sock = FakeSocket()
        bridge = connected(sock, timeout=5)
        self.assertEqual(bridge.gettimeout(), 5)
        bridge.TimeOut(0.01)
        self.assertEqual(bridge.gettimeout(), 0.01)
        self.assertRaises(OperationTimedOut, bridge.recvBuffer)
        bridge.settimeout(None)
        sock.serverSend(2)
        self.assertEqual(bridge.recvBuffer(), 2)
        self.assertIsNone(sock.timeout)
        self.assertRaises(ValueError, bridge.settimeout, -1)

    def test_sendTimeoutKeepsBytes(self) -> None:
        """
        A write that times out raises L{OperationTimedOut}; the value stays
        queued and is written before the next one, so the stream stays
        intact.
        """
        for withSendmsg, attempts in ((True, 2), (False, 1)):
            sock = FakeSocket(withSendmsg=withSendmsg)
            bridge = connected(sock)
            sock.sendErrors.extend([TimeoutError("timed out")] * attempts)
            self.assertRaises(OperationTimedOut, bridge.sendBuffer, EXAMPLE, timeout=0.01)
            self.assertEqual(sock.values, [])
            self.assertEqual(len(sock.sendErrors), 0)
            bridge.sendBuffer("next")
            self.assertEqual(sock.values, [EXAMPLE, "next"])

    def test_receiveFlushesFirst(self) -> None:
        """
        L{Link.recvBuffer} first writes what a timed-out send left queued,
        since the server may be waiting for it before it answers.
        """
        sock = FakeSocket()
        bridge = connected(sock)
        sock.sendErrors.extend([TimeoutError("timed out")] * 2)
        self.assertRaises(OperationTimedOut, bridge.sendBuffer, "question", timeout=0.01)
        self.assertEqual(sock.values, [])
        sock.serverSend("answer")
        self.assertEqual(bridge.recvBuffer(timeout=1), "answer")
        self.assertEqual(sock.values, ["question"])

    def test_sendTimeoutAfterPartialWrite(self) -> None:
        """
        A write that stops halfway keeps the rest of the frame for the next
        call.
        """
        sock = FakeSocket()
        bridge = connected(sock)
        sock.sendChunk = 5
        sock.sendErrors.clear()
        real = sock._accept
        calls = []

        def acceptOnceThenTimeOut(data: bytes) -> int:
            calls.append(len(data))
            if len(calls) > 1:
                raise TimeoutError("timed out")
            return real(data)

        sock._accept = acceptOnceThenTimeOut  # type: ignore[method-assign]
        self.assertRaises(OperationTimedOut, bridge.sendBuffer, "x" * 100, timeout=0.01)
        sock._accept = real  # type: ignore[method-assign]
        sock.sendChunk = None
        bridge.sendBuffer("y")
        self.assertEqual(sock.values, ["x" * 100, "y"])


class LinkSizeLimitTests(SynchronousTestCase):
    """
    C{maxSize} (the original C{buffer_size}) refuses large values before
    reading them.
    """

    def test_prefixCheckedFirst(self) -> None:
        """
        A value whose frame is larger than C{maxSize} allows raises
        L{BufferDataError} when its length prefix arrives: the body is never
        buffered whole, the link is closed, and the server is told why.
        """
        sock = FakeSocket()
        bridge = connected(sock)
        before = sock.bytesRead
        sock.serverSend(b"v" * 2_000_000)
        error = self.assertRaises(BufferDataError, bridge.recvBuffer, timeout=1, maxSize=100_000)
        self.assertIn("100000", str(error))
        self.assertLessEqual(sock.bytesRead - before, 256 * 1024)
        self.assertTrue(sock.closed)
        closes = [e for e in sock.events if isinstance(e, CloseReceived)]
        self.assertEqual([c.code for c in closes], [CloseCode.TOO_BIG])
        self.assertRaises(ChannelClosedError, bridge.recvBuffer, timeout=1)

    def test_prefixCheckedInOneByteReads(self) -> None:
        """
        Reading one byte at a time, the link reads no more than the length
        prefix of an oversized value.
        """
        sock = FakeSocket(recvChunk=1)
        bridge = connected(sock)
        before = sock.bytesRead
        sock.serverSend(b"v" * 50_000)
        self.assertRaises(BufferDataError, bridge.recvBuffer, timeout=1, maxSize=1000)
        self.assertEqual(sock.bytesRead - before, 4)

    def test_sizeCheckedAfterDecoding(self) -> None:
        """
        A value just over C{maxSize} (within the frame's overhead) is
        refused after decryption.
        """
        sock = FakeSocket()
        bridge = connected(sock)
        sock.serverSend(b"v" * 1000)
        self.assertRaises(BufferDataError, bridge.recvBuffer, timeout=1, maxSize=1000)
        self.assertFalse(bridge.open)

    def test_limitAppliesToTheValueTaken(self) -> None:
        """
        C{maxSize} applies to the value the call returns, not to the ones
        behind it.
        """
        sock = FakeSocket()
        bridge = connected(sock)
        sock.serverSend(1)
        sock.serverSend(b"w" * 10_000)
        self.assertEqual(bridge.RecvBuffer(size=1024, buffer_size=100, timeout=1), 1)
        self.assertEqual(bridge.recvBuffer(timeout=1), b"w" * 10_000)

    def test_exactSizeAccepted(self) -> None:
        """
        A value exactly C{maxSize} bytes long is accepted.
        """
        sock = FakeSocket()
        bridge = connected(sock)
        sock.serverSend(b"e" * 1000)
        self.assertEqual(bridge.recvBuffer(timeout=1, maxSize=1003), b"e" * 1000)

    def test_channelLimit(self) -> None:
        """
        Frames over the link's own C{maxBufferSize} are refused from their
        prefix whatever the call asks.
        """
        sock = FakeSocket()
        bridge = connected(sock, maxBufferSize=4096)
        self.assertEqual(sock.channel.peerMaxValueSize, 4096)
        sock.deliver(_PREFIX.pack(frameOverhead("noise", 4096) + 1))
        self.assertRaises(BufferDataError, bridge.recvBuffer, timeout=1)

    def test_smallLimitStillReadsControlRecords(self) -> None:
        """
        A tiny C{maxSize} does not refuse the server's close record.
        """
        sock = FakeSocket()
        bridge = connected(sock)
        sock.deliver(FakeSocket.framed(sock.channel.close(CloseCode.NORMAL, "r" * 200)))
        self.assertRaises(ChannelClosedError, bridge.recvBuffer, timeout=1, maxSize=1)
        self.assertEqual(bridge.closeReason, "r" * 200)

    def test_negativeLimit(self) -> None:
        """
        A negative C{maxSize} is a mistake.
        """
        bridge = connected(FakeSocket())
        self.assertRaises(ValueError, bridge.recvBuffer, timeout=1, maxSize=-1)


class LinkControlTests(SynchronousTestCase):
    """
    Pings, the server's close, and L{Link.close}.
    """

    def test_pingAnswered(self) -> None:
        """
        A ping from the server is answered while the link waits for a value.
        """
        sock = FakeSocket()
        bridge = connected(sock)
        sock.deliver(FakeSocket.framed(sock.channel.ping(b"are you there")))
        sock.serverSend("value")
        self.assertEqual(bridge.recvBuffer(timeout=1), "value")
        self.assertIn(PongReceived(b"are you there"), sock.events)

    def test_queuedValueOverLimit(self) -> None:
        """
        A value queued by L{Link.poll} is checked against the C{maxSize} of
        the call that takes it.
        """
        sock = FakeSocket()
        bridge = connected(sock)
        sock.serverSend(b"q" * 5000)
        self.assertEqual(bridge.poll(), 1)
        self.assertRaises(BufferDataError, bridge.recvBuffer, timeout=1, maxSize=100)
        self.assertFalse(bridge.open)
        self.assertEqual(bridge.poll(), 0)

    def test_pollAnswersPings(self) -> None:
        """
        L{Link.poll} answers pings and queues values without waiting.
        """
        sock = FakeSocket()
        bridge = connected(sock)
        self.assertEqual(bridge.poll(), 0)
        sock.deliver(FakeSocket.framed(sock.channel.ping(b"p")))
        sock.serverSend("queued")
        self.assertEqual(bridge.poll(), 1)
        self.assertIn(PongReceived(b"p"), sock.events)
        self.assertEqual(bridge.recvBuffer(timeout=0), "queued")

    def test_serverCloses(self) -> None:
        """
        When the server closes, the values it sent first are received, then
        L{ChannelClosedError}; the link answered the close and closed its
        socket.
        """
        sock = FakeSocket()
        bridge = connected(sock)
        sock.serverSend(1)
        sock.serverSend(2)
        sock.deliver(FakeSocket.framed(sock.channel.close(CloseCode.GOING_AWAY, "bye")))
        self.assertEqual([bridge.recvBuffer(timeout=1), bridge.recvBuffer(timeout=1)], [1, 2])
        error = self.assertRaises(ChannelClosedError, bridge.recvBuffer, timeout=1)
        self.assertIn("GOING_AWAY: bye", str(error))
        self.assertEqual((bridge.closeCode, bridge.closeReason), (CloseCode.GOING_AWAY, "bye"))
        self.assertTrue(bridge.closedCleanly)
        self.assertTrue(sock.closed)
        self.assertIsInstance(sock.events[-1], CloseReceived)
        self.assertRaises(ChannelClosedError, bridge.sendBuffer, 3)
        bridge.close()

    def test_serverClosesThenResets(self) -> None:
        """
        The link ends the connection once its close reply is written,
        without waiting for the server's end: a reset after the server's
        close is no error for it, and the reader gets L{SessionClosed} with
        the server's code and reason.
        """
        sock = FakeSocket()
        bridge = connected(sock)
        sock.deliver(FakeSocket.framed(sock.channel.close(CloseCode.GOING_AWAY, "bye")))
        sock.resetAfterClose = True
        error = self.assertRaises(SessionClosed, bridge.recvBuffer, timeout=1)
        self.assertEqual((error.code, error.reason), (CloseCode.GOING_AWAY, "bye"))
        self.assertIsInstance(error, ChannelClosedError)
        self.assertEqual(bridge.closeCode, CloseCode.GOING_AWAY)
        self.assertTrue(bridge.closedCleanly)
        self.assertTrue(sock.closed)
        self.assertRaises(SessionClosed, bridge.recvBuffer, timeout=1)

    def test_sendNoticesServerClose(self) -> None:
        """
        L{Link.sendBuffer} notices a close the server sent meanwhile.
        """
        sock = FakeSocket()
        bridge = connected(sock)
        sock.deliver(FakeSocket.framed(sock.channel.close(CloseCode.GOING_AWAY, "")))
        bridge._session.nextPoll = 0.0
        self.assertRaises(ChannelClosedError, bridge.sendBuffer, 1)
        self.assertEqual(sock.values, [])

    def test_truncated(self) -> None:
        """
        A connection that ends without the server's close record raises
        L{TruncationError}.
        """
        sock = FakeSocket()
        bridge = connected(sock)
        sock.serverSend(1)
        sock.eof = True
        self.assertEqual(bridge.recvBuffer(timeout=1), 1)
        self.assertRaises(TruncationError, bridge.recvBuffer, timeout=1)
        self.assertRaises(ChannelClosedError, bridge.recvBuffer, timeout=1)

    def test_cleanClose(self) -> None:
        """
        L{Link.close} sends the close record, queues the values that arrive
        before the server's reply, and closes the socket; those values can
        still be taken, then L{ChannelClosedError}.
        """
        sock = FakeSocket()
        bridge = connected(sock)
        bridge.sendBuffer("last")
        sock.serverSend("in flight")
        bridge.close()
        self.assertTrue(sock.closed)
        self.assertTrue(bridge.closedCleanly)
        self.assertEqual(sock.values, ["last"])
        self.assertIsInstance(sock.events[-1], CloseReceived)
        self.assertEqual(bridge.recvBuffer(timeout=1), "in flight")
        error = self.assertRaises(ChannelClosedError, bridge.recvBuffer, timeout=1)
        self.assertEqual(str(error), "cannot receive: the link is closed")
        bridge.close()

    def test_closeTimeout(self) -> None:
        """
        L{Link.close} gives up waiting for the reply after its timeout and
        closes the socket anyway.
        """
        sock = FakeSocket()
        bridge = connected(sock)
        sock.answer = False
        bridge.close(timeout=0.01)
        self.assertTrue(sock.closed)
        self.assertFalse(bridge.closedCleanly)

    def test_contextManager(self) -> None:
        """
        Leaving a C{with} block closes the link cleanly; the original
        package's C{Close} closes it too.
        """
        sock = FakeSocket()
        with connected(sock) as bridge:
            bridge.SendBuffer(EXAMPLE)
        self.assertTrue(sock.closed)
        self.assertTrue(bridge.closedCleanly)
        sock = FakeSocket()
        bridge = connected(sock)
        bridge.Close()
        self.assertTrue(bridge.closedCleanly)


class ProtocolSocket:
    """
    A connected socket whose other end is a real server-side
    L{BridgeProtocol} on a L{StringTransport}.
    """

    def __init__(self, config: BridgeConfig) -> None:
        self.clock = Clock()
        self.opened: list[BridgeProtocol] = []
        self.closed: list[Failure] = []
        self.protocol = BridgeProtocol(Role.SERVER, config, self.clock, observer=self)
        self.transport = StringTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", 4000))
        self.protocol.makeConnection(self.transport)
        self.timeout: float | None = None

    def sessionOpened(self, session: BridgeProtocol) -> None:
        """
        Record the session.
        """
        self.opened.append(session)

    def sessionClosed(self, session: BridgeProtocol, reason: Failure) -> None:
        """
        Record why it ended.
        """
        self.closed.append(reason)

    def settimeout(self, timeout: float | None) -> None:
        """
        Record the timeout the link set.
        """
        self.timeout = timeout

    def getpeername(self) -> tuple[str, int]:
        """
        @return: A made-up server address.
        """
        return ("127.0.0.1", 5000)

    def recv_into(self, buffer: memoryview, nbytes: int = 0) -> int:
        """
        Hand the link what the protocol wrote, once the protocol's reactor
        turn has ended (values it batched then leave).
        """
        self.clock.advance(0)
        data = self.transport.value()
        if not data:
            if self.transport.disconnecting:
                return 0
            if self.timeout is None:
                raise AssertionError("the link would block forever")
            raise BlockingIOError(errno.EAGAIN, "would block")
        size = min(len(buffer), len(data))
        buffer[:size] = data[:size]
        self.transport.clear()
        self.transport.io.write(data[size:])
        return size

    def sendmsg(self, buffers: Iterable[bytes | memoryview]) -> int:
        """
        Give the protocol what the link writes.
        """
        data = b"".join(bytes(b) for b in buffers)
        self.protocol.dataReceived(data)
        return len(data)

    def shutdown(self, how: int) -> None:
        """
        Nothing to do.
        """

    def close(self) -> None:
        """
        End the protocol's connection.
        """
        if not self.transport.disconnecting:
            self.transport.loseConnection()
        self.protocol.connectionLost(Failure(ConnectionResetError()))


class ProtocolInteroperationTests(SynchronousTestCase):
    """
    The blocking client's bytes go through L{BridgeProtocol} unchanged: the
    two adapters of the channel interoperate.
    """

    def test_exchange(self) -> None:
        """
        The handshake completes, values cross both ways, the protocol's ping
        is answered, and a clean close from the link ends the protocol's
        session cleanly.
        """
        sock = ProtocolSocket(BridgeConfig.fromKey(KEY, keepAliveInterval=5.0))
        bridge = connected(sock)  # type: ignore[arg-type]
        self.assertEqual(len(sock.opened), 1)
        session = sock.opened[0]
        bridge.sendBuffer(EXAMPLE)
        assertExact(self, EXAMPLE, self.successResultOf(session.recvBuffer()))
        session.sendBuffer({"reply": [1, 2.5]})
        self.assertEqual(bridge.recvBuffer(timeout=1), {"reply": [1, 2.5]})
        sock.clock.advance(5.0)
        session.sendBuffer("after ping")
        self.assertEqual(bridge.recvBuffer(timeout=1), "after ping")
        self.assertFalse(session.core.liveness.awaitingPong)
        session.sendBuffer("late")
        bridge.close()
        self.assertTrue(bridge.closedCleanly)
        self.assertEqual(bridge.recvBuffer(timeout=0), "late")
        self.assertEqual(len(sock.closed), 1)
        self.assertEqual(sock.clock.getDelayedCalls(), [])

    def test_protocolCloses(self) -> None:
        """
        A session closed by the protocol delivers its last values to the
        link before L{ChannelClosedError}.
        """
        sock = ProtocolSocket(BridgeConfig.fromKey(KEY))
        bridge = connected(sock)  # type: ignore[arg-type]
        session = sock.opened[0]
        for i in range(10):
            session.sendBuffer(i)
        session.close("done")
        self.assertEqual([bridge.recvBuffer(timeout=1) for _ in range(10)], list(range(10)))
        self.assertRaises(ChannelClosedError, bridge.recvBuffer, timeout=1)
        self.assertEqual(bridge.closeReason, "done")
        self.assertTrue(session.transport.disconnecting)


class AddressTests(SynchronousTestCase):
    """
    L{parseAddress} reads the forms of address scripts write.
    """

    def test_forms(self) -> None:
        """
        Tuples, C{"host:port"} and bracketed IPv6 addresses.
        """
        self.assertEqual(parseAddress(("192.168.1.5", 5000)), ("192.168.1.5", 5000))
        self.assertEqual(parseAddress(("192.168.1.5", "5000")), ("192.168.1.5", 5000))
        self.assertEqual(parseAddress("example.com:80"), ("example.com", 80))
        self.assertEqual(parseAddress("[::1]:5000"), ("::1", 5000))
        self.assertEqual(parseAddress(("[::1]", 5000)), ("::1", 5000))
        self.assertEqual(parseAddress(("::1", 5000)), ("::1", 5000))
        self.assertEqual(parseAddress(("", 0), allowPortZero=True), ("", 0))

    def test_malformed(self) -> None:
        """
        Malformed addresses raise L{ValueError} saying how to write them.
        """
        for bad in (
            "5000",
            "::1:5000",
            "[::1]5000",
            "host:port",
            ("h", 70000),
            ("h", 0),
            ("h", True),
            (1, 2),
            ("h", "x"),
            ("a", "b", "c"),
            5000,
        ):
            self.assertRaises(ValueError, parseAddress, bad)  # type: ignore[arg-type]


class MigrationAliasTests(SynchronousTestCase):
    """
    The original package's spellings.
    """

    def test_namespaces(self) -> None:
        """
        C{Error} holds the original error names and C{GenerateKey} makes
        keys.
        """
        self.assertIs(Error.BufferDataError, BufferDataError)
        self.assertIs(Error.ServerInitializeError, ServerInitializeError)
        self.assertEqual(len(GenerateKey()), 44)
        self.assertIs(Bridge.link, Bridge.Link)

    def test_linkNeedsKey(self) -> None:
        """
        C{Bridge.Link} without a key says one is needed.
        """
        error = self.assertRaises(InvalidKey, Bridge.Link, ("127.0.0.1", 1))
        self.assertIn("key=key", str(error))

    def test_connectRefused(self) -> None:
        """
        L{link} to a port nobody listens on raises the socket's error.
        """
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
        probe.close()
        self.assertRaises(ConnectionRefusedError, link, ("127.0.0.1", port), KEY, timeout=5)

    def test_noTwistedInTheClient(self) -> None:
        """
        The blocking client's module does not import Twisted at module
        level (only the server facade does, lazily).
        """
        source = Path(blocking.__file__).read_text()
        header = source.split("if TYPE_CHECKING:")[0]
        self.assertNotIn("twisted", header.split('"""', 2)[2])


# Real loopback tests, each in a child process: see the module docstring.


def _childEnvironment() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(_ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.pop("NETSTRUCTER_KEY", None)
    return env


class Child:
    """
    A child process whose output is read line by line with a deadline.

    Reading is unbuffered (C{os.read} on the pipe), so that a line already
    read from the pipe is never left waiting in a buffer C{select} cannot
    see.
    """

    def __init__(self, args: list[str], cwd: Path) -> None:
        self.process = subprocess.Popen(
            args,
            cwd=cwd,
            env=_childEnvironment(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            bufsize=0,
        )
        self._pending = b""

    def readLine(self, deadline: float) -> str:
        """
        @return: The next line of output (without its newline).
        @raise AssertionError: None came before C{deadline}, or the child
            ended first.
        """
        stdout = self.process.stdout
        assert stdout is not None
        while b"\n" not in self._pending:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self.process.kill()
                raise AssertionError(f"the child printed no line in time: {self._pending!r}")
            ready, _, _ = select.select([stdout], [], [], remaining)
            if ready:
                data = os.read(stdout.fileno(), 65536)
                if not data:
                    self.finish(10)
                    raise AssertionError(f"the child ended early: {self.output}")
                self._pending += data
        line, self._pending = self._pending.split(b"\n", 1)
        return line.decode().strip()

    def finish(self, timeout: float) -> int:
        """
        Wait for the child to exit (killing it after C{timeout} seconds) and
        collect the rest of its output in L{output}.

        @return: Its exit status.
        """
        try:
            out, err = self.process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            out, err = self.process.communicate()
            self.output = (self._pending + out).decode() + "\n" + err.decode()
            raise AssertionError(f"the child did not finish in time:\n{self.output}") from None
        self.rest = (self._pending + out).decode()
        self.output = self.rest + "\n" + err.decode()
        return self.process.returncode


class LoopbackTests(SynchronousTestCase):
    """
    The blocking client and server over real loopback sockets, each
    scenario in a child process.
    """

    def runScenario(self, name: str, *args: str, timeout: float = 120) -> str:
        """
        Run a scenario of this module in a child process.

        @return: Its output, once it printed C{PASS name} and exited 0.
        """
        result = subprocess.run(
            [sys.executable, "-m", "tests.test_blocking", name, *args],
            cwd=_ROOT,
            env=_childEnvironment(),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        message = f"scenario {name} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
        self.assertEqual(result.returncode, 0, message)
        self.assertIn(f"PASS {name}", result.stdout, message)
        return result.stdout

    def test_linkToTwistedServer(self) -> None:
        """
        The blocking client talks to the Twisted server run by
        L{blocking.Server}: values of every kind both ways, a large value,
        C{maxSize}, a wrong key, and IPv6.
        """
        self.runScenario("linkToTwistedServer")

    def test_twistedClientToBlockingServer(self) -> None:
        """
        A Twisted client (L{netstructer.client.connect}, called with
        C{blockingCallFromThread}) talks to a L{blocking.Server}.
        """
        self.runScenario("twistedClientToBlockingServer")

    def test_concurrentSessions(self) -> None:
        """
        Several clients at once, each in its thread, served by handler
        threads; and several script threads serving their own sessions at
        once.
        """
        self.runScenario("concurrentSessions")

    def test_cleanShutdown(self) -> None:
        """
        Values sent just before a close arrive, in both directions, and
        values received before L{blocking.Server.close} can still be taken.
        """
        self.runScenario("cleanShutdown")

    def test_serverErrors(self) -> None:
        """
        L{blocking.Server.init} names the cause of a failure; a failing
        handler and an oversized value close only their session.
        """
        self.runScenario("serverErrors")

    def test_registry(self) -> None:
        """
        C{count}, C{all}, C{get}, C{allFrom}, C{pop}, C{clear}, C{waitFor},
        and C{listen} accepting only after C{init}.
        """
        self.runScenario("registry")

    def test_tls(self) -> None:
        """
        A link wrapped in TLS verifies the server's certificate and host
        name.
        """
        self.runScenario("tls")

    def test_clientImportsNoTwisted(self) -> None:
        """
        A script using only the blocking client never imports Twisted.
        """
        self.runScenario("clientImportsNoTwisted")

    def test_keyboardInterrupt(self) -> None:
        """
        Ctrl-C (a real SIGINT) while the main thread waits in C{waitFor} or
        C{recvBuffer} raises L{KeyboardInterrupt} there; no value is lost and
        C{close()} still works.
        """
        child = Child([sys.executable, "-m", "tests.test_blocking", "interrupt"], _ROOT)
        deadline = time.monotonic() + 60
        try:
            self.assertEqual(child.readLine(deadline), "BLOCKED waitFor")
            child.process.send_signal(signal.SIGINT)
            self.assertEqual(child.readLine(deadline), "INTERRUPTED waitFor")
            self.assertEqual(child.readLine(deadline), "BLOCKED recvBuffer")
            child.process.send_signal(signal.SIGINT)
            self.assertEqual(child.readLine(deadline), "INTERRUPTED recvBuffer")
        finally:
            status = child.finish(60)
        self.assertEqual(status, 0, child.output)
        self.assertIn("PASS interrupt", child.rest, child.output)

    def test_atexitClosesServer(self) -> None:
        """
        A script that exits without closing its server closes it cleanly
        at exit: its clients see the close record (C{GOING_AWAY}), not a
        truncated connection.  (The client runs here, in the test process:
        the blocking client needs no reactor.)
        """
        child = Child(
            [sys.executable, "-m", "tests.test_blocking", "forgetToClose", KEY.decode("ascii")],
            _ROOT,
        )
        try:
            line = child.readLine(time.monotonic() + 60)
            self.assertTrue(line.startswith("PORT "), line)
            with link(("127.0.0.1", int(line.split()[1])), KEY, timeout=20) as bridge:
                bridge.sendBuffer("hello")
                self.assertEqual(bridge.recvBuffer(), "hello back")
                error = self.assertRaises(SessionClosed, bridge.recvBuffer)
                self.assertEqual(error.code, CloseCode.GOING_AWAY)
                self.assertEqual(bridge.closeCode, CloseCode.GOING_AWAY)
                # Both close records were exchanged, but the server closed
                # first: nothing confirms the value this link sent.
                self.assertFalse(bridge.closedCleanly)
        finally:
            status = child.finish(60)
        self.assertEqual(status, 0, child.output)

    def test_migrationExample(self) -> None:
        """
        The original package's README example, with only the import and
        the key changed (the snippet README.rst shows), runs: a server
        script and a client script, each in its process.
        """
        tmp = Path(self.mktemp())
        tmp.mkdir(parents=True)
        writeKeyFile(tmp / "netstructer.key", KEY)
        script = MIGRATION_SERVER.replace(_HARNESS_LINE, _HARNESS_CODE)
        server = Child([sys.executable, "-c", script], tmp)
        try:
            line = server.readLine(time.monotonic() + 60)
            self.assertTrue(line.startswith("PORT "), line)
            client = subprocess.run(
                [sys.executable, "-c", MIGRATION_CLIENT.replace("5000", line.split()[1])],
                cwd=tmp,
                env=_childEnvironment(),
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
            self.assertEqual(client.returncode, 0, client.stderr)
        finally:
            status = server.finish(60)
        self.assertEqual(status, 0, server.output)
        self.assertEqual(
            server.rest.splitlines(),
            [
                "['hi im haytam', 128, {b'gg': 'gg'}, {1, 2, 4, 6}, (False, True)]",
                "support us on https://www.buymeacoffee.com/Arcade.m7",
            ],
        )


MIGRATION_CLIENT = """\
from netstructer.blocking import Bridge
from netstructer.keys import readKeyFile

key = readKeyFile("netstructer.key")  # the same key on both sides: `netstructer keygen`
addr = ('127.0.0.1', 5000)  # addr of the server thats you want to connect
bridge = Bridge.Link(addr, key=key)
bridge.SendBuffer(['hi im haytam', 128, {b'gg': 'gg'}, {1, 2, 6, 4}, (False, True)])
bridge.SendBuffer('support us on https://www.buymeacoffee.com/Arcade.m7')
bridge.Close()
"""
"""The client half of the migration example (README.rst shows it)."""

_HARNESS_LINE = "# (the test harness reports the port here)\n"
_HARNESS_CODE = "print('PORT', server.port, flush=True)\n"

MIGRATION_SERVER = (
    """\
from netstructer.blocking import Server
from netstructer.keys import readKeyFile

key = readKeyFile("netstructer.key")
addr = ('127.0.0.1', 0)  # address

server = Server(addr, key)
server.init()
server.listen()
"""
    + _HARNESS_LINE
    + """\
session = server.waitFor('127.0.0.1', timeout=60)  # server.get(ip) once it is connected
buff = session.RecvBuffer(size=1024*100, buffer_size=100000)
print(buff)  # ['hi im haytam', 128, {b'gg': 'gg'}, {1, 2, 4, 6}, (False, True)]
string = session.RecvBuffer()
print(string)  # 'support us on https://www.buymeacoffee.com/Arcade.m7'
server.close()
"""
)
"""The server half of the migration example (README.rst shows it)."""


# The scenarios, run in child processes by LoopbackTests.

_SCENARIOS: dict[str, Callable[[], None]] = {}


def _scenario(function: Callable[[], None]) -> Callable[[], None]:
    _SCENARIOS[function.__name__] = function
    return function


def _check(condition: bool, message: str = "") -> None:
    """
    Fail the scenario unless C{condition} holds.
    """
    if not condition:
        raise AssertionError(message or "check failed")


def _raises(
    kind: type[BaseException], function: Callable[..., object], *args: Any, **kw: Any
) -> Any:
    """
    @return: The C{kind} error C{function(*args, **kw)} raised.
    """
    try:
        function(*args, **kw)
    except kind as e:
        return e
    raise AssertionError(f"{function!r} did not raise {kind.__name__}")


def _echo(session: blocking.Session) -> None:
    """
    A handler echoing every value until the session ends.
    """
    while True:
        session.sendBuffer(session.recvBuffer(timeout=60))


def _drain(session: blocking.Session | Link, timeout: float = 20) -> list[object]:
    """
    @return: Every value until the session ends cleanly.
    """
    values = []
    while True:
        try:
            values.append(session.recvBuffer(timeout=timeout))
        except ChannelClosedError:
            return values


def _runThreads(targets: list[Callable[[], None]], timeout: float = 60) -> None:
    """
    Run each target in a thread; re-raise the first failure.
    """
    errors: list[BaseException] = []

    def guarded(target: Callable[[], None]) -> None:
        try:
            target()
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=guarded, args=(t,), daemon=True) for t in targets]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + timeout
    for thread in threads:
        thread.join(max(deadline - time.monotonic(), 0))
        _check(not thread.is_alive(), "a thread did not finish in time")
    if errors:
        raise errors[0]


@_scenario
def linkToTwistedServer() -> None:
    values: list[object] = [EXAMPLE, "text", b"bytes", 2**80, -1.5, None, {"k": [1, (2, 3)]}]
    with blocking.Server(("127.0.0.1", 0), KEY, maxBufferSize=8 * 1024 * 1024) as server:
        server.listen_on(_echo)
        with link(("127.0.0.1", server.port), KEY, timeout=20) as bridge:
            for value in values:
                bridge.sendBuffer(value)
                _check(bridge.recvBuffer() == value and type(value) is type(value))
            big = bytes(range(256)) * 16_384
            bridge.sendBuffer(big)
            _check(bridge.recvBuffer() == big)
            for i in range(2000):
                bridge.sendBuffer(i)
            _check([bridge.recvBuffer() for _ in range(2000)] == list(range(2000)))
            bridge.sendBuffers(range(5000))
            _check([bridge.recvBuffer() for _ in range(5000)] == list(range(5000)))
            bridge.sendBuffer(b"x" * 5000)
            _raises(BufferDataError, bridge.recvBuffer, maxSize=1000)
            _check(not bridge.open)
        with link(f"127.0.0.1:{server.port}", KEY, timeout=20) as bridge:
            bridge.sendBuffer("again")
            _check(bridge.recvBuffer() == "again")
        import logging

        records: list[logging.LogRecord] = []
        handler = logging.Handler()
        handler.emit = records.append  # type: ignore[assignment]
        logging.getLogger("netstructer.server").addHandler(handler)
        error = _raises(
            AuthenticationError, link, ("127.0.0.1", server.port), generateKey(), timeout=20
        )
        print("wrong key:", error)
        server.count()
        _check(
            any("authentication" in r.getMessage() for r in records),
            "the server's warning reaches the standard library's logging",
        )
        _raises(HandshakeError, link, ("127.0.0.1", server.port), KEY, timeout=20, suite="fernet")
    try:
        probe = socket.socket(socket.AF_INET6)
        probe.bind(("::1", 0))
        probe.close()
    except OSError:
        print("no IPv6 loopback: skipped")
        return
    with blocking.Server("[::1]:0", KEY) as server:
        server.listen_on(_echo)
        with link(f"[::1]:{server.port}", KEY, timeout=20) as bridge:
            bridge.sendBuffer(EXAMPLE)
            _check(bridge.recvBuffer() == EXAMPLE)
        _check(server.address[0] == "::1", repr(server.address))


@_scenario
def twistedClientToBlockingServer() -> None:
    from twisted.internet.threads import blockingCallFromThread

    from netstructer.client import connect

    with blocking.Server(("127.0.0.1", 0), KEY) as server:
        server.listen()
        reactor = blocking._REACTOR_THREAD.reactor()
        proto: BridgeProtocol = blockingCallFromThread(
            reactor,
            connect,  # type: ignore[arg-type]
            reactor,
            ("127.0.0.1", server.port),
            KEY,
            timeout=20,
        )
        local = proto.transport.getHost()
        session = server.waitFor(f"127.0.0.1:{local.port}", timeout=20)
        _check(session.peer == ("127.0.0.1", local.port), repr(session.peer))
        blockingCallFromThread(reactor, proto.sendBuffer, EXAMPLE)
        _check(session.recvBuffer(timeout=20) == EXAMPLE)
        session.sendBuffer({"reply": (1, 2)})
        received = blockingCallFromThread(reactor, proto.recvBuffer, 20)
        _check(received == {"reply": (1, 2)}, repr(received))
        for i in range(100):
            blockingCallFromThread(reactor, proto.sendBuffer, i)

        def closeClient() -> Any:
            proto.close()
            return proto.whenClosed()

        blockingCallFromThread(reactor, closeClient)
        _check(_drain(session) == list(range(100)))


@_scenario
def concurrentSessions() -> None:
    with blocking.Server(("127.0.0.1", 0), KEY) as server:
        server.listen_on(_echo)

        def client(index: int) -> Callable[[], None]:
            def run() -> None:
                with link(("127.0.0.1", server.port), KEY, timeout=30) as bridge:
                    for i in range(300):
                        bridge.sendBuffer((index, i))
                    got = [bridge.recvBuffer() for _ in range(300)]
                    _check(got == [(index, i) for i in range(300)], f"client {index}")

            return run

        _runThreads([client(i) for i in range(8)])
    with blocking.Server(("127.0.0.1", 0), KEY) as server:
        server.listen()
        links = [link(("127.0.0.1", server.port), KEY, timeout=30) for _ in range(4)]
        sessions = [
            server.waitFor(f"127.0.0.1:{b._session.io.sock.getsockname()[1]}", timeout=30)
            for b in links
        ]

        def serve(session: blocking.Session) -> Callable[[], None]:
            def run() -> None:
                total = sum(int(session.recvBuffer(timeout=30)) for _ in range(100))  # type: ignore[call-overload]
                session.sendBuffer(total)

            return run

        def feed(bridge: Link, offset: int) -> Callable[[], None]:
            def run() -> None:
                for i in range(100):
                    bridge.sendBuffer(offset + i)
                _check(bridge.recvBuffer() == sum(offset + i for i in range(100)))

            return run

        _runThreads([serve(s) for s in sessions] + [feed(b, 1000 * n) for n, b in enumerate(links)])
        shared = sessions[0]

        def sender(tag: str) -> Callable[[], None]:
            def run() -> None:
                for i in range(200):
                    shared.sendBuffer((tag, i))

            return run

        _runThreads([sender("a"), sender("b")])
        got = [links[0].recvBuffer() for _ in range(400)]
        for tag in ("a", "b"):
            _check([v for v in got if v[0] == tag] == [(tag, i) for i in range(200)])  # type: ignore[index]
        for bridge in links:
            bridge.close()


@_scenario
def cleanShutdown() -> None:
    server = blocking.Server(("127.0.0.1", 0), KEY)
    server.init()
    server.listen()
    bridge = link(("127.0.0.1", server.port), KEY, timeout=20)
    session = server.waitFor("127.0.0.1", timeout=20)
    for i in range(500):
        bridge.sendBuffer(i)
    bridge.close()
    _check(bridge.closedCleanly)
    _check(_drain(session) == list(range(500)), "client to server before the client's close")

    bridge = link(("127.0.0.1", server.port), KEY, timeout=20)
    session = server.waitFor(f"127.0.0.1:{bridge._session.io.sock.getsockname()[1]}", timeout=20)
    for i in range(500):
        session.sendBuffer(i)
    for i in range(300):
        bridge.sendBuffer(("c", i))
    received: list[object] = []
    reader = threading.Thread(target=lambda: received.extend(_drain(bridge)), daemon=True)
    reader.start()
    started = time.monotonic()
    server.close()
    reader.join(20)
    _check(not reader.is_alive())
    _check(received == list(range(500)), "server to client before the server's close")
    # The link sent values before the server's close: its reply ends the
    # connection at once, so nothing tells it they were processed.
    _check(bridge.closeCode == CloseCode.GOING_AWAY and not bridge.closedCleanly)
    _check(bridge.valuesSent == 300)
    _check(time.monotonic() - started < 5, "the close waited for a timeout")
    _check(_drain(session) == [("c", i) for i in range(300)], "values accepted before close")
    server.close()


@_scenario
def serverErrors() -> None:
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    error = _raises(ServerInitializeError, blocking.Server(("127.0.0.1", port), KEY).init)
    _check("in use" in str(error), str(error))
    taken.close()
    error = _raises(ServerInitializeError, blocking.Server(("127.0.0.1", 0), b"bad").init)
    _check("key" in str(error), str(error))
    error = _raises(ServerInitializeError, blocking.Server("nonsense", KEY).init)
    _check("nonsense" in str(error), str(error))
    _raises(ServerInitializeError, blocking.Server(("127.0.0.1", 0), KEY).count)

    def failing(session: blocking.Session) -> None:
        session.recvBuffer(timeout=20)
        raise ValueError("the handler's bug")

    with blocking.Server(("127.0.0.1", 0), KEY) as server:
        server.listen_on(failing)
        with link(("127.0.0.1", server.port), KEY, timeout=20) as bridge:
            bridge.sendBuffer(1)
            _raises(ChannelClosedError, bridge.recvBuffer)
            _check(bridge.closeCode == CloseCode.INTERNAL_ERROR, repr(bridge.closeCode))
    with blocking.Server(("127.0.0.1", 0), KEY) as server:
        server.listen()
        with link(("127.0.0.1", server.port), KEY, timeout=20) as bridge:
            session = server.waitFor("127.0.0.1", timeout=20)
            bridge.sendBuffer(b"x" * 500)
            _raises(BufferDataError, session.RecvBuffer, size=1024, buffer_size=100, timeout=20)
            _raises(ChannelClosedError, bridge.recvBuffer)
            _check(bridge.closeCode == CloseCode.TOO_BIG, repr(bridge.closeCode))
            _raises(ChannelClosedError, session.sendBuffer, 1)


@_scenario
def registry() -> None:
    with blocking.Server(("127.0.0.1", 0), KEY) as server:
        server.init()
        _check(server.count() == 0 and server.all() == [] and server.get("127.0.0.1") is None)
        attempt: list[object] = []
        early = threading.Thread(
            target=lambda: attempt.append(link(("127.0.0.1", server.port), KEY, timeout=30)),
            daemon=True,
        )
        early.start()
        _raises(OperationTimedOut, server.waitFor, "127.0.0.1", 0.3)
        _check(not attempt, "a connection was accepted before listen()")
        server.listen()
        early.join(30)
        _check(len(attempt) == 1)
        first = attempt[0]
        assert isinstance(first, Link)
        second = link(("127.0.0.1", server.port), KEY, timeout=20)
        key2 = f"127.0.0.1:{second._session.io.sock.getsockname()[1]}"
        session2 = server.waitFor(key2, timeout=20)
        _check(server.waitFor("127.0.0.1", timeout=20) is server.get("127.0.0.1"))
        _check(server.count() == 2, str(server.count()))
        _check(len(server.all()) == 2 and len(server.allFrom("127.0.0.1")) == 2)
        _check(server.get(key2) is session2 and session2.key == key2)
        _check(server.pop(key2) is session2 and server.count() == 1)
        _check(session2.open)
        session2.sendBuffer("still open")
        _check(second.recvBuffer() == "still open")
        leftovers: list[object] = []
        reader = threading.Thread(target=lambda: leftovers.extend(_drain(first)), daemon=True)
        reader.start()
        started = time.monotonic()
        server.clear()
        _check(time.monotonic() - started < 5, "clear() waited for a timeout")
        reader.join(20)
        _check(server.count() == 0 and leftovers == [])
        _check(first.closeCode == CloseCode.NORMAL)
        with session2:
            pass
        _raises(ChannelClosedError, second.recvBuffer)
        session2.waitClosed(timeout=20)
        _check(not session2.open)
        second.close()
        first.close()


@_scenario
def tls() -> None:
    import datetime
    import ipaddress
    import ssl
    import tempfile

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    privateKey = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "netstructer test")])
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(privateKey.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(privateKey, hashes.SHA256())
    )
    directory = Path(tempfile.mkdtemp())
    keyPath = directory / "server.key"
    certPath = directory / "server.pem"
    keyPath.write_bytes(
        privateKey.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    certPath.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    description = f"ssl:0:privateKey={keyPath}:certKey={certPath}:interface=127.0.0.1"
    with blocking.Server(description, KEY) as server:
        server.listen_on(_echo)
        context = ssl.create_default_context(cafile=str(certPath))
        with link(("127.0.0.1", server.port), KEY, timeout=20, tls=context) as bridge:
            _check(bridge._session.io.sendmsg is None)
            bridge.sendBuffer(EXAMPLE)
            _check(bridge.recvBuffer() == EXAMPLE)
            bridge.sendBuffers(range(1000))
            _check([bridge.recvBuffer() for _ in range(1000)] == list(range(1000)))
            big = b"t" * 3_000_000
            bridge.sendBuffer(big)
            _check(bridge.recvBuffer() == big)
        _raises(
            ssl.SSLCertVerificationError,
            link,
            ("127.0.0.1", server.port),
            KEY,
            timeout=20,
            tls=context,
            serverHostname="wrong.example",
        )
        _raises(ssl.SSLError, link, ("127.0.0.1", server.port), KEY, timeout=20, tls=True)


_NO_TWISTED_SCRIPT = """
import socket, struct, sys, threading
from netstructer.blocking import link
from netstructer.channel import Channel, Role, ValueReceived
from netstructer.keys import generateKey

key = generateKey()
listener = socket.socket()
listener.bind(("127.0.0.1", 0))
listener.listen()

def serve():
    conn, _ = listener.accept()
    conn.settimeout(20)
    channel = Channel(Role.SERVER, key)
    buffer = b""
    while True:
        data = conn.recv(65536)
        if not data:
            return
        buffer += data
        while len(buffer) >= 4 and len(buffer) >= 4 + struct.unpack("!I", buffer[:4])[0]:
            length = struct.unpack("!I", buffer[:4])[0]
            frame, buffer = buffer[4:4 + length], buffer[4 + length:]
            event = channel.receiveFrame(frame)
            out = channel.framesToSend()
            if isinstance(event, ValueReceived):
                out.append(channel.sendValue(event.value))
            for f in out:
                conn.sendall(struct.pack("!I", len(f)) + f)

thread = threading.Thread(target=serve, daemon=True)
thread.start()
with link(listener.getsockname(), key, timeout=20) as bridge:
    bridge.sendBuffer(["round", "trip"])
    assert bridge.recvBuffer() == ["round", "trip"]
thread.join(20)
loaded = sorted(m for m in sys.modules if m == "twisted" or m.startswith("twisted."))
assert not loaded, loaded
print("PASS clientImportsNoTwisted")
"""


@_scenario
def clientImportsNoTwisted() -> None:
    result = subprocess.run(
        [sys.executable, "-c", _NO_TWISTED_SCRIPT],
        env=_childEnvironment(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    _check(result.returncode == 0, result.stdout + result.stderr)


def _announceWhenBlocked(label: str) -> None:
    """
    From a helper thread, print C{BLOCKED label} once the main thread waits
    in a blocking call, so that the test's SIGINT arrives while it waits.
    """
    mainIdent = threading.main_thread().ident
    assert mainIdent is not None

    def watch() -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            frame = sys._current_frames().get(mainIdent)
            while frame is not None:
                if frame.f_code.co_name == "_callInReactor":
                    print(f"BLOCKED {label}", flush=True)
                    return
                frame = frame.f_back
            threading.Event().wait(0.01)

    threading.Thread(target=watch, daemon=True).start()


@_scenario
def interrupt() -> None:
    server = blocking.Server(("127.0.0.1", 0), KEY)
    server.listen()
    try:
        _announceWhenBlocked("waitFor")
        server.waitFor("10.255.255.1", timeout=60)
        raise AssertionError("waitFor returned")
    except KeyboardInterrupt:
        print("INTERRUPTED waitFor", flush=True)
    bridge = link(("127.0.0.1", server.port), KEY, timeout=20)
    session = server.waitFor("127.0.0.1", timeout=20)
    try:
        _announceWhenBlocked("recvBuffer")
        session.recvBuffer(timeout=60)
        raise AssertionError("recvBuffer returned")
    except KeyboardInterrupt:
        print("INTERRUPTED recvBuffer", flush=True)
    bridge.sendBuffer("after the interrupt")
    _check(session.recvBuffer(timeout=20) == "after the interrupt")
    bridge.sendBuffer("and another")
    _check(session.recvBuffer(timeout=20) == "and another")
    bridge.close()
    _check(bridge.closedCleanly)
    started = time.monotonic()
    server.close()
    _check(time.monotonic() - started < 5, "close() waited for a timeout")


@_scenario
def forgetToClose() -> None:
    server = blocking.Server(("127.0.0.1", 0), KEY)
    server.listen()
    print("PORT", server.port, flush=True)
    session = server.waitFor("127.0.0.1", timeout=30)
    _check(session.recvBuffer(timeout=30) == "hello")
    session.sendBuffer("hello back")


def _main(argv: list[str]) -> int:
    """
    Run the scenario named by C{argv[1]} (in a child process), with the key
    given by the parent in C{argv[2]}, if any.
    """
    global KEY
    name = argv[1]
    if len(argv) > 2:
        KEY = argv[2].encode("ascii")
    _SCENARIOS[name]()
    print(f"PASS {name}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv))
