# -*- test-case-name: tests.test_blocking -*-
"""
NetStructer for synchronous scripts: a blocking client over plain sockets,
and a blocking facade over the Twisted server.

The client
==========

L{link} connects, runs the handshake and returns a L{Link} once the server
has proved it holds the key::

    from netstructer.blocking import link

    with link(("192.168.1.5", 5000), key, timeout=10) as bridge:
        bridge.sendBuffer(["hi", 128, {b"gg": "gg"}, {1, 2}, (False, True)])
        reply = bridge.recvBuffer(maxSize=100_000)

A L{Link} is the second adapter over the sans-IO
L{netstructer.channel.Channel} (the first is the Twisted
L{netstructer.protocol.BridgeProtocol}): a plain socket, a 4-byte big-endian
length prefix per frame, no reactor, no threads, and no Twisted import at
all.  It reads in large chunks into one buffer and parses frames linearly; a
frame whose length prefix is over the limit is refused before its body is
read.  Each L{Link.sendBuffer} writes its value at once (prefix and frame in
one C{sendmsg}); L{Link.sendBuffers} writes many values with one system
call, the fast way to stream small values.

Pings from the server are answered whenever the link is inside a call (and
L{Link.sendBuffer} looks for them about once a second): a script that stays
idle, outside any call, for longer than twice the server's keep-alive
interval (60 seconds by default) may be disconnected; call L{Link.poll} now
and then to prevent that.

Ctrl-C while a link waits to read leaves it usable (nothing was consumed);
Ctrl-C in the middle of a write leaves the stream in an unknown state, so
the link is closed.

I{Thread safety}: a L{Link} is not thread-safe.  Use one link per thread, or
guard a shared one with a lock.

The server
==========

L{Server} runs the Twisted L{netstructer.server.Server} (the same service,
registry and protocol) on the global Twisted reactor, in a daemon thread
named C{netstructer-reactor}, and exposes blocking calls::

    from netstructer.blocking import Server

    server = Server(("0.0.0.0", 5000), key)
    server.init()                       # bind; ServerInitializeError names the cause
    server.listen()                     # start accepting
    session = server.waitFor("192.168.1.4", timeout=60)
    print(session.recvBuffer(maxSize=100_000))
    server.close()

I{The threading model.}  The reactor thread is started lazily, by the first
L{Server.init} in the process, and then shared by every blocking L{Server}
of the process.  A process can run the Twisted reactor only once, so a
program that runs the reactor itself (a Twisted application, C{twistd},
trial's C{TestCase}) must use L{netstructer.server.Server} directly instead:
L{Server} refuses to start if the reactor is already running, and Twisted
code must not run the reactor after a blocking L{Server} has started it.
An C{atexit} hook closes every server the script left open and stops the
reactor.

Every blocking call (L{Server.get}, L{Session.recvBuffer}, ...) hands its
work to the reactor thread and waits for the answer, so the registry and
the protocols are only ever touched by the reactor thread, and script
threads may use a L{Server} and its L{Session}s concurrently: several
threads may each serve their own session at once, and L{Session.sendBuffer}
may be called from several threads on one session (values from one thread
keep their order).  Receiving on one session is serialised: concurrent
L{Session.recvBuffer} calls on one session take values in turn, in order.
Calling a blocking method from the reactor thread itself (from Twisted
code) would deadlock and raises L{RuntimeError}.

A blocking call interrupted by Ctrl-C (L{KeyboardInterrupt} in the main
thread) raises at once; its work in the reactor thread is cancelled, and a
value that arrives for an interrupted L{Session.recvBuffer} is kept for the
next call.  L{Server.close} works afterwards.

L{Server.listen_on} runs C{handler(session)} for each new session in a pool
of daemon worker threads (at most C{maxWorkers}, 64 by default: a handler
that serves its session for the whole connection occupies a worker for that
long, and further sessions wait for a free worker).

Migrating from the original package
===================================

The original spellings are kept as thin aliases: C{Bridge.Link(address,
key=key)}, C{SendBuffer}, C{RecvBuffer(size=..., buffer_size=...)},
C{Close}, C{TimeOut}, C{Error.BufferDataError},
C{Error.ServerInitializeError}, C{GenerateKey()}, and the L{Server} methods
C{init}, C{listen}, C{listen_on}, C{count}, C{all}, C{get}, C{pop} and
C{clear}.  A script changes its import and gives both sides the same key::

    from netstructer.blocking import Bridge, Server

Values are carried by the safe codec of L{netstructer.values}: Python
objects are never pickled.
"""

from __future__ import annotations

import atexit
import logging
import queue
import socket
import ssl
import struct
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, NoReturn, TypeAlias, TypeVar, cast

from netstructer.channel import (
    BATCH_SIZE,
    PROTOCOL_VERSION,
    Channel,
    CloseCode,
    CloseReceived,
    Event,
    HandshakeCompleted,
    PingReceived,
    RecordReceived,
    Role,
    ValueReceived,
    ValuesReceived,
    frameOverhead,
)
from netstructer.closing import DEFAULT_SHUTDOWN_GRACE
from netstructer.errors import (
    BufferDataError,
    ChannelClosedError,
    EncodeError,
    HandshakeTimeout,
    InvalidKey,
    LocalProtocolError,
    NetStructerError,
    OperationTimedOut,
    RemoteProtocolError,
    ServerInitializeError,
    SessionClosed,
)
from netstructer.keyreload import KeyReload
from netstructer.keys import Keyring, generateKey
from netstructer.records import RecordRouter
from netstructer.relayclient import RelayClient
from netstructer.values import DEFAULT_LIMITS, Decoder, Limits

if TYPE_CHECKING:
    from twisted.internet.defer import Deferred
    from twisted.python.failure import Failure

    from netstructer.protocol import BridgeProtocol
    from netstructer.server import Server as _TwistedServer

__all__ = [
    "Bridge",
    "Error",
    "GenerateKey",
    "Link",
    "Server",
    "Session",
    "link",
    "parseAddress",
]

Address: TypeAlias = "tuple[str, int] | str"
KeyLike: TypeAlias = "bytes | str | Keyring | Sequence[bytes | str]"

_PREFIX: Final = struct.Struct("!I")
_CHUNK: Final = 256 * 1024
"""How much a L{Link} asks the socket for at a time."""

_MAX_IDLE_BUFFER: Final = 4 * _CHUNK
"""A receive buffer grown past this (for a large value) is dropped when empty."""

_SMALL_FRAME: Final = 64 * 1024
"""Without C{sendmsg}, frames up to this size are copied behind their prefix."""

_MAX_IOV: Final = 512
_CONTROL_SIZE_FLOOR: Final = 512
"""Frame limits never go below a frame carrying this much, so that pings and
close records always pass the length check."""

_POLL_INTERVAL: Final = 1.0
_CLOSE_POLL_INTERVAL: Final = 0.005
_DEFAULT_HANDSHAKE_TIMEOUT: Final = 10.0
_DEFAULT_CLOSE_TIMEOUT: Final = DEFAULT_SHUTDOWN_GRACE
_IMMEDIATELY: Final = float("-inf")
_WOULD_BLOCK = (BlockingIOError, TimeoutError, ssl.SSLWantReadError, ssl.SSLWantWriteError)

_ENDPOINT_TYPES = frozenset({"tcp", "tcp6", "ssl", "unix", "systemd", "tls", "onion"})

_log = logging.getLogger("netstructer.blocking")


def parseAddress(address: Address, *, allowPortZero: bool = False) -> tuple[str, int]:
    """
    Read an address given as a C{(host, port)} tuple or as text.

    @param address: C{("192.168.1.5", 5000)}, C{"192.168.1.5:5000"},
        C{"example.com:5000"}, or C{"[::1]:5000"} (an IPv6 address in text
        must be bracketed; in a tuple it need not be).
    @param allowPortZero: Whether port 0 (a free port, for servers) is
        acceptable.
    @return: The host (without brackets) and the port.
    @raise ValueError: The address is malformed or the port out of range.
    """
    if isinstance(address, str):
        text = address.strip()
        if text.startswith("["):
            host, bracket, rest = text[1:].partition("]")
            if not bracket or not rest.startswith(":"):
                raise ValueError(f"cannot read the address {address!r}: write it as '[::1]:5000'")
            portText = rest[1:]
        else:
            host, colon, portText = text.rpartition(":")
            if not colon:
                raise ValueError(
                    f"cannot read the address {address!r}: write it as 'host:port', "
                    "or give a (host, port) tuple"
                )
            if ":" in host:
                raise ValueError(
                    f"cannot read the address {address!r}: put an IPv6 address in "
                    "brackets, as '[::1]:5000'"
                )
        if not portText.strip().isdigit():
            raise ValueError(f"the port in {address!r} is not a number")
        port = int(portText)
    elif isinstance(address, (tuple, list)) and len(address) == 2:
        rawHost, rawPort = cast("tuple[object, object]", tuple(address))
        if not isinstance(rawHost, str):
            raise ValueError(f"the host in {address!r} must be text, not {type(rawHost).__name__}")
        if isinstance(rawPort, bool) or not isinstance(rawPort, (int, str)):
            raise ValueError(f"the port in {address!r} must be a number")
        if isinstance(rawPort, str) and not rawPort.strip().isdigit():
            raise ValueError(f"the port in {address!r} is not a number")
        port = int(rawPort)
        host = rawHost.strip()
        if host.startswith("[") and host.endswith("]"):
            host = host[1:-1]
    else:
        raise ValueError(
            f"cannot read the address {address!r}: give a (host, port) tuple or 'host:port'"
        )
    if not (0 if allowPortZero else 1) <= port <= 65535:
        raise ValueError(f"port {port} is out of range: choose a port from 1 to 65535")
    return host, port


def _deadlineAfter(timeout: float | None) -> float | None:
    """
    @param timeout: Seconds from now, or L{None} for no limit.
    @return: The L{time.monotonic} time by which to be done, or L{None}.
    @raise ValueError: C{timeout} is negative.
    """
    if timeout is None:
        return None
    if timeout < 0:
        raise ValueError(f"a timeout must be a non-negative number of seconds, not {timeout}")
    return time.monotonic() + timeout


class _NeedData:
    """
    The type of L{_NEED_DATA}.
    """


_NEED_DATA: Final = _NeedData()
"""What L{Link._processOne} returns when no complete frame is buffered."""


class _Queued:
    """
    The type of L{_QUEUED}.
    """


_QUEUED: Final = _Queued()
"""
What L{Link._processOne} returns when a record brought several values, which
it queued for L{Link.recvBuffer}.
"""


_ChannelT = TypeVar("_ChannelT", bound="_ValueChannel")


class _ValueChannel:
    """
    What L{Link} and L{Session} share: a context manager that closes, and
    the original package's spellings of their methods.
    """

    def sendBuffer(self, value: object) -> None:
        raise NotImplementedError

    def recvBuffer(self, timeout: float | None = None, maxSize: int | None = None) -> object:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self: _ChannelT) -> _ChannelT:
        """
        @return: This object; leaving the C{with} block closes it.
        """
        return self

    def __exit__(
        self,
        excType: type[BaseException] | None,
        excValue: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """
        Close it.
        """
        self.close()

    def SendBuffer(self, value: object) -> None:
        """
        The original package's name for C{sendBuffer}.

        @param value: The value.
        """
        self.sendBuffer(value)

    def RecvBuffer(
        self,
        size: int | None = None,
        buffer_size: int | None = None,
        timeout: float | None = None,
    ) -> object:
        """
        The original package's name for C{recvBuffer}.

        @param size: Accepted and ignored: it was the size of each
            C{socket.recv}; values are now framed exactly.
        @param buffer_size: The largest value to accept (C{recvBuffer}'s
            C{maxSize}); a larger one raises L{BufferDataError}, as before.
        @param timeout: Seconds to wait.
        @return: The value.
        """
        return self.recvBuffer(timeout=timeout, maxSize=buffer_size)

    def Close(self) -> None:
        """
        The original package's name for C{close}.
        """
        self.close()


class Link(_ValueChannel):
    """
    A blocking NetStructer connection: the client end of a session, over a
    plain socket (or any connected stream socket).

    Make one with L{link}, or wrap a socket you connected yourself with
    C{Link(sock, key)}.  Either way the handshake has completed, and the
    server has proved it holds the key, when you get it.

    Not thread-safe: use one link per thread, or guard it with a lock.

    @ivar suite: The suite the handshake agreed, e.g. C{"noise (AESGCM)"}.
    @ivar peerMaxValueSize: The largest encoded value the server accepts.
    @ivar closeCode: The server's close code, once it has closed the link.
    @ivar closeReason: The server's close reason (may be empty), once it has
        closed the link.
    @ivar closedCleanly: Whether both close records were exchanged and
        every value this link sent is known to have been processed: after
        this side's close, once the server's reply arrived; after the
        server's close, only if this link had sent no value (its reply ends
        the connection at once, and nothing confirms values the server may
        still have been reading when its grace period ran out).  To know
        that every value sent was processed, close from this side.
    @ivar valuesSent: Values this link has sent.
    """

    def __init__(
        self,
        sock: socket.socket,
        key: KeyLike,
        *,
        timeout: float | None = None,
        handshakeTimeout: float | None = None,
        suite: str = "noise",
        cipher: str = "AESGCM",
        limits: Limits | None = None,
        maxBufferSize: int | None = None,
        closeTimeout: float = _DEFAULT_CLOSE_TIMEOUT,
        protocolVersion: int = PROTOCOL_VERSION,
    ) -> None:
        """
        Run the handshake over a connected socket.

        @param sock: A connected stream socket; the link owns it from now on
            and closes it if the handshake fails.
        @param key: The key shared with the server: a Fernet-format key, a
            list of them (the first is used), or a L{Keyring}.
        @param timeout: The default timeout, in seconds, of every later
            call (see L{settimeout}); L{None} blocks as long as needed.
        @param handshakeTimeout: Seconds the handshake may take; C{timeout}
            if L{None}, or 10 seconds if that is L{None} too.
        @param suite: C{"noise"} (the default) or C{"fernet"}; the server
            must accept it.
        @param cipher: With C{"noise"}: C{"AESGCM"} or C{"ChaChaPoly"}.
        @param limits: Decoding limits for received values.
        @param maxBufferSize: The largest encoded value this side accepts
            (it replaces C{limits.maxSize}); the server is told.
        @param closeTimeout: The link's grace period: seconds L{close}
            waits for the server's close reply when no timeout is set, and
            the most the reply to the server's close may take to write
            (5 by default).
        @param protocolVersion: The highest protocol version to offer; 1
            for a server that refuses anything newer.
        @raise AuthenticationError: The server does not hold the key.
        @raise HandshakeError: The server speaks another protocol, version or
            suite, or closed the connection during the handshake.
        @raise HandshakeTimeout: The handshake took too long.
        @raise InvalidKey: The key is malformed.
        @raise ValueError: An unknown suite or cipher, or a bad limit.
        """
        self._sock = sock
        self._timeout = _checkTimeout(timeout)
        self._closeTimeout = closeTimeout
        self._sockTimeout: object = _UNSET
        self._buf = bytearray(_CHUNK)
        self._start = 0
        self._end = 0
        self._want = 0
        self._out: deque[bytes | memoryview] = deque()
        # Each value with its encoded size, and whether it came in a batch
        # (whose values' sizes are known only on average).
        self._values: deque[tuple[object, int, bool]] = deque()
        self._queuedBytes = 0
        self._error: BaseException | None = None
        self._ended = False
        self._closedHere = False
        self._nextPoll = 0.0
        self._maxFrame = 0
        self._callMaxSize: int | None = None
        self.suite = ""
        self.peerMaxValueSize = 0
        self.closeCode: CloseCode | None = None
        self.closeReason: str | None = None
        self.closedCleanly = False
        self.valuesSent = 0
        self.records = RecordRouter()
        self._relay: RelayClient | None = None
        self.records.register("relay", self._relayRecordReceived)
        sendmsg = getattr(sock, "sendmsg", None)
        self._sendmsg: Callable[[Iterable[bytes | memoryview]], int] | None = (
            None if isinstance(sock, ssl.SSLSocket) else sendmsg
        )
        try:
            if limits is None:
                limits = DEFAULT_LIMITS
            if maxBufferSize is not None:
                limits = replace(limits, maxSize=maxBufferSize)
            self._limits = limits
            self._channel = Channel(
                Role.CLIENT,
                key,
                suite=suite,
                cipher=cipher,
                limits=limits,
                protocolVersion=protocolVersion,
            )
            if handshakeTimeout is None:
                handshakeTimeout = (
                    self._timeout if self._timeout is not None else _DEFAULT_HANDSHAKE_TIMEOUT
                )
            self._handshake(_deadlineAfter(handshakeTimeout), handshakeTimeout)
        except BaseException:
            self._closeSocket()
            raise

    def __repr__(self) -> str:
        state = "open" if self.open else "closed"
        return f"<Link {self._describePeer()} {state}>"

    def _describePeer(self) -> str:
        try:
            peer = self._sock.getpeername()
        except (OSError, AttributeError):
            return "(unconnected)"
        if isinstance(peer, tuple) and len(peer) >= 2:
            host, port = peer[0], peer[1]
            return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
        return str(peer)

    @property
    def open(self) -> bool:
        """
        Whether values can still be sent: the link has not been closed by
        either side and has not failed.
        """
        return not self._ended and self._error is None

    # Timeouts.

    def settimeout(self, timeout: float | None) -> None:
        """
        Set the default timeout of L{sendBuffer}, L{recvBuffer} and
        L{close}, as C{socket.settimeout} does for a socket.

        @param timeout: Seconds, or L{None} to block as long as needed.
        @raise ValueError: C{timeout} is negative.
        """
        self._timeout = _checkTimeout(timeout)

    def gettimeout(self) -> float | None:
        """
        @return: The default timeout in seconds, or L{None}.
        """
        return self._timeout

    def _deadline(self, timeout: float | None) -> float | None:
        return _deadlineAfter(self._timeout if timeout is None else timeout)

    def _setSocketTimeout(self, deadline: float | None) -> None:
        """
        Make the socket's next operation wait at most until C{deadline}
        (not at all once it has passed; forever for L{None}).
        """
        if deadline is None:
            wanted: float | None = None
        else:
            wanted = deadline - time.monotonic()
            if wanted < 0.0:
                wanted = 0.0
        if wanted != self._sockTimeout:
            self._sock.settimeout(wanted)
            self._sockTimeout = wanted

    # The handshake.

    def _handshake(self, deadline: float | None, timeout: float) -> None:
        channel = self._channel
        for frame in channel.framesToSend():
            self._queueFrame(frame)
        try:
            self._flush(deadline)
            event = self._nextEvent(deadline, channel.maxFrameSize)
            while not isinstance(event, HandshakeCompleted):
                event = self._nextEvent(deadline, channel.maxFrameSize)
            self._flush(deadline)
        except OperationTimedOut:
            raise HandshakeTimeout(
                f"the handshake with {self._describePeer()} did not complete within "
                f"{timeout} seconds"
            ) from None
        self.suite = event.suite
        self.peerMaxValueSize = event.peerMaxValueSize
        self._maxFrame = channel.maxFrameSize

    # Sending.

    def sendBuffer(self, value: object, timeout: float | None = None) -> None:
        """
        Send a value.

        @param value: A value of a type L{netstructer.values} carries.
        @param timeout: Seconds to wait for the socket to take it; the
            link's timeout if L{None}.  On a timeout the value is not lost:
            its unsent bytes are written before anything else by the next
            call.
        @raise EncodeError: The value cannot be encoded; nothing was sent and
            the link stays usable.
        @raise BufferDataError: It encodes to more than the server accepts;
            nothing was sent and the link stays usable.
        @raise ChannelClosedError: The link is closed (by either side) or
            has failed.
        @raise OperationTimedOut: The socket did not take the value in time.
        @raise OSError: The connection failed; the link is closed.
        @raise RemoteProtocolError: Looking for the server's pings (about
            once a second), the link found the server broke the protocol;
            the link is closed.
        @raise TruncationError: Likewise, the connection had ended without
            the server's close record.
        """
        if self._ended or self._error is not None:
            raise self._closedError("send")
        if time.monotonic() >= self._nextPoll:
            self.poll()
            if self._ended:
                raise self._closedError("send")
        deadline = None if timeout is None and self._timeout is None else self._deadline(timeout)
        frame = self._channel.sendValue(value)
        self.valuesSent += 1
        sendmsg = self._sendmsg
        if sendmsg is not None and not self._out:
            prefix = _PREFIX.pack(len(frame))
            self._setSocketTimeout(deadline)
            try:
                sent = sendmsg((prefix, frame))
            except (InterruptedError, *_WOULD_BLOCK):
                sent = 0
            except OSError as e:
                self._connectionFailed(e)
                raise
            except BaseException:
                self._writeInterrupted()
                raise
            if sent == 4 + len(frame):
                return
            self._out.append(prefix)
            self._out.append(frame)
            self._advance(sent)
        else:
            self._queueFrame(frame)
        self._flush(deadline)

    def sendBuffers(self, values: Iterable[object], timeout: float | None = None) -> int:
        """
        Send several values, in order, with as few writes as possible: much
        faster than one L{sendBuffer} per value for a stream of small values
        (each L{sendBuffer} is a system call).

        @param values: The values.
        @param timeout: As for L{sendBuffer}, for the whole batch.
        @return: How many values were sent.
        @raise EncodeError: A value cannot be encoded: the values before it
            are sent, it and those after it are not, and the link stays
            usable.
        @raise BufferDataError: A value is larger than the server accepts;
            likewise.
        @raise ChannelClosedError: As for L{sendBuffer}.
        @raise OperationTimedOut: As for L{sendBuffer}.
        """
        if self._ended or self._error is not None:
            raise self._closedError("send")
        if time.monotonic() >= self._nextPoll:
            self.poll()
            if self._ended:
                raise self._closedError("send")
        deadline = None if timeout is None and self._timeout is None else self._deadline(timeout)
        channel = self._channel
        encodeValue = channel.encodeValue
        limit = channel.batchLimit
        out = self._out
        pack = _PREFIX.pack
        # Small values travel in batches, one record each (one AEAD
        # operation and one frame for many values); a value too large to
        # share a record goes alone.
        batch: list[bytes] = []
        batchSize = 0
        count = 0

        def queue(frame: bytes) -> None:
            out.append(pack(len(frame)))
            out.append(frame)

        def sealBatch() -> None:
            nonlocal batch, batchSize, count
            if batch:
                queue(channel.sendEncodedValues(batch))
                count += len(batch)
                batch = []
                batchSize = 0

        try:
            for value in values:
                if type(value) is bytes and len(value) > limit:
                    sealBatch()
                    queue(channel.sendValue(value))
                    count += 1
                else:
                    encoded = encodeValue(value)
                    size = len(encoded)
                    if size > limit:
                        sealBatch()
                        queue(channel.sendEncoded(encoded))
                        count += 1
                    else:
                        if batchSize + size > limit:
                            sealBatch()
                        batch.append(encoded)
                        batchSize += size
                if len(out) >= _MAX_IOV:
                    self._flush(deadline)
            sealBatch()
        except (EncodeError, BufferDataError):
            # The values before the one refused are sent.
            sealBatch()
            raise
        finally:
            self.valuesSent += count
            if out:
                self._flush(deadline)
        return count

    @property
    def protocolVersion(self) -> int | None:
        """
        The protocol version negotiated with the server.
        """
        return self._channel.protocolVersion

    def sendRecord(self, recordType: int, body: bytes, timeout: float | None = None) -> None:
        """
        Send one extension record (protocol version 2) after every value
        sent before it.  For the capabilities' adapters, not applications.

        @param timeout: As for L{sendBuffer}.
        @raise PeerVersionError: The server negotiated version 1.
        @raise ChannelClosedError: The link is closed or has failed.
        """
        if self._ended or self._error is not None:
            raise self._closedError("send")
        deadline = None if timeout is None and self._timeout is None else self._deadline(timeout)
        self._queueFrame(self._channel.sendRecord(recordType, body))
        self._flush(deadline)

    def _queueFrame(self, frame: bytes) -> None:
        prefix = _PREFIX.pack(len(frame))
        if self._sendmsg is None and len(frame) <= _SMALL_FRAME:
            self._out.append(prefix + frame)
        else:
            self._out.append(prefix)
            self._out.append(frame)

    def _advance(self, sent: int) -> None:
        """
        Drop C{sent} written bytes from the front of the output queue.
        """
        out = self._out
        while sent:
            first = out[0]
            size = len(first)
            if sent >= size:
                out.popleft()
                sent -= size
            else:
                out[0] = memoryview(first)[sent:]
                sent = 0

    def _flush(self, deadline: float | None) -> None:
        """
        Write the output queue.

        @param deadline: When to give up (L{_IMMEDIATELY}: write what the
            socket takes without waiting).
        @raise OperationTimedOut: The deadline passed first; the rest stays
            queued.
        @raise OSError: The connection failed; the link is closed.
        """
        out = self._out
        sock = self._sock
        sendmsg = self._sendmsg
        while out:
            self._setSocketTimeout(deadline)
            try:
                if sendmsg is not None:
                    sent = sendmsg(out if len(out) <= _MAX_IOV else list(out)[:_MAX_IOV])
                else:
                    if len(out) > 1 and len(out[0]) < _SMALL_FRAME:
                        self._coalesce()
                    sent = sock.send(out[0])
            except InterruptedError:
                continue
            except _WOULD_BLOCK:
                raise OperationTimedOut(
                    f"writing to {self._describePeer()} did not complete in time; the "
                    "unsent bytes stay queued and are written first by the next call"
                ) from None
            except OSError as e:
                self._connectionFailed(e)
                raise
            except BaseException:
                self._writeInterrupted()
                raise
            self._advance(sent)

    def _coalesce(self) -> None:
        """
        Join the small pieces at the front of the output queue into one, for
        one write where C{sendmsg} is missing (TLS).
        """
        out = self._out
        pieces: list[bytes | memoryview] = []
        size = 0
        while out and size < _SMALL_FRAME and len(out[0]) <= _SMALL_FRAME:
            piece = out.popleft()
            pieces.append(piece)
            size += len(piece)
        out.appendleft(b"".join(pieces))

    def _tryFlush(self) -> None:
        """
        Write what the socket takes now (pongs, close replies), never
        waiting; the rest is written by the next call.
        """
        if self._out:
            try:
                self._flush(_IMMEDIATELY)
            except OperationTimedOut:
                pass

    # Receiving.

    def recvBuffer(self, timeout: float | None = None, maxSize: int | None = None) -> object:
        """
        Receive the next value, in order.

        @param timeout: Seconds to wait; the link's timeout (see
            L{settimeout}) if L{None}.  A timeout consumes nothing: a value
            partly received stays buffered for the next call.
        @param maxSize: The largest encoded value to accept.  A larger value
            raises L{BufferDataError} and closes the link; its frame length
            is checked before its body is read, so it is never buffered.
        @return: The value.
        @raise OperationTimedOut: No value arrived in time.
        @raise BufferDataError: The value is larger than C{maxSize} (or than
            this side accepts); the link is closed.
        @raise ChannelClosedError: The server closed the link (after every
            value it sent before has been received), or this side did, or
            the link failed earlier.
        @raise TruncationError: The connection ended without the server's
            close record: values may have been lost.
        @raise RemoteProtocolError: The server broke the protocol (a record
            failed authentication, a value could not be decoded, ...); the
            link is closed.
        """
        if self._values:
            return self._nextQueued(maxSize)
        if self._ended or self._error is not None:
            raise self._closedError("receive")
        deadline = None if timeout is None and self._timeout is None else self._deadline(timeout)
        if self._out:
            self._flush(deadline)
        limit = self._frameLimit(maxSize)
        processOne = self._processOne
        while True:
            event = processOne(limit)
            if isinstance(event, _NeedData):
                self._fill(deadline)
                continue
            if type(event) is ValueReceived:
                if maxSize is not None and event.size > maxSize:
                    self._tooBig(event.size, maxSize)
                return event.value
            if isinstance(event, _Queued):
                return self._nextQueued(maxSize)
            self._controlEvent(event)
            if self._ended:
                raise self._closedError("receive")

    def _nextQueued(self, maxSize: int | None) -> object:
        """
        Take the next queued value.

        @param maxSize: The largest encoded value the caller accepts.
        @return: The value.
        @raise BufferDataError: It is larger than C{maxSize}; the link is
            closed.
        """
        value, size, batched = self._values.popleft()
        self._queuedBytes -= size
        if maxSize is not None:
            if batched and maxSize < BATCH_SIZE:
                # A value of a batch is smaller than the batch, but its own
                # size is known only by encoding it again.
                size = len(self._channel.encodeValue(value))
            if size > maxSize:
                self._tooBig(size, maxSize)
        return value

    def poll(self) -> int:
        """
        Without waiting, read what has arrived: answer the server's pings,
        notice its close, and queue the values for L{recvBuffer}.  Call it
        now and then in a script that otherwise stays idle for long, so that
        the server's keep-alive pings are answered.

        @return: How many values are queued for L{recvBuffer}.
        @raise RemoteProtocolError: The server broke the protocol; the link
            is closed.
        @raise TruncationError: The connection ended without the server's
            close record.
        """
        self._nextPoll = time.monotonic() + _POLL_INTERVAL
        if self._ended or self._error is not None:
            return len(self._values)
        self._tryFlush()
        limit = self._maxFrame
        budget = self._limits.maxSize
        while not self._ended and self._queuedBytes <= budget:
            event = self._processOne(limit)
            if isinstance(event, _NeedData):
                try:
                    self._fill(_IMMEDIATELY)
                except OperationTimedOut:
                    break
                continue
            if type(event) is ValueReceived:
                self._queueValue(event)
            elif not isinstance(event, _Queued):
                self._controlEvent(event)
        return len(self._values)

    def _queueValue(self, event: ValueReceived) -> None:
        self._values.append((event.value, event.size, False))
        self._queuedBytes += event.size

    def _frameLimit(self, maxSize: int | None) -> int:
        """
        @param maxSize: The largest encoded value the caller accepts.
        @return: The largest frame to read for it.
        """
        self._callMaxSize = maxSize
        if maxSize is None:
            return self._maxFrame
        if maxSize < 0:
            raise ValueError(f"maxSize must be a non-negative number of bytes, not {maxSize}")
        # A batch of small values may come in one record up to BATCH_SIZE
        # long, whatever the caller's maxSize.
        floor = max(maxSize, _CONTROL_SIZE_FLOOR, BATCH_SIZE)
        return min(self._maxFrame, frameOverhead(self._channel.suite, floor))

    def _processOne(self, limit: int) -> Event | _NeedData | _Queued | None:
        """
        Feed the next complete buffered frame to the channel.

        @param limit: The largest frame to accept; a length prefix over it
            fails the link before the frame's body is read.
        @return: The channel's event (L{None} for none), or L{_NEED_DATA}
            if no complete frame is buffered.
        """
        start = self._start
        available = self._end - start
        if available < 4:
            return _NEED_DATA
        buf = self._buf
        (length,) = _PREFIX.unpack_from(buf, start)
        if length > limit:
            self._frameTooBig(length, limit)
        if available - 4 < length:
            self._want = length + 4 - available
            return _NEED_DATA
        end = start + 4 + length
        if end == self._end:
            self._start = self._end = 0
        else:
            self._start = end
        try:
            with memoryview(buf) as view, view[start + 4 : end] as frame:
                event = self._channel.receiveFrame(frame)
        except RemoteProtocolError as e:
            for reply in self._channel.framesToSend():
                self._queueFrame(reply)
            self._tryFlush()
            self._fail(e)
            raise
        if self._end == 0 and len(buf) > _MAX_IDLE_BUFFER:
            self._buf = bytearray(_CHUNK)
        if type(event) is ValuesReceived:
            values = event.values
            share = event.size // len(values)
            self._values.extend((value, share, True) for value in values)
            self._queuedBytes += share * len(values)
            return _QUEUED
        if type(event) is not ValueReceived:
            for reply in self._channel.framesToSend():
                self._queueFrame(reply)
        return event

    def _nextEvent(self, deadline: float | None, limit: int) -> Event | None:
        """
        Process frames until one produces an event, reading as needed.
        Values of a batch are queued for L{recvBuffer}.
        """
        while True:
            event = self._processOne(limit)
            if isinstance(event, _NeedData):
                self._fill(deadline)
            elif not isinstance(event, _Queued):
                return event

    def _fill(self, deadline: float | None) -> None:
        """
        Read once from the socket into the buffer.

        @param deadline: When to give up waiting.
        @raise OperationTimedOut: Nothing arrived in time; nothing is lost.
        @raise TruncationError: The connection ended without the server's
            close record.
        @raise HandshakeError: The connection ended during the handshake.
        @raise ChannelClosedError: The connection ended after a clean close.
        @raise OSError: The connection failed.
        """
        buf = self._buf
        need = max(_CHUNK, self._want)
        self._want = 0
        if len(buf) - self._end < need:
            if self._start:
                pending = self._end - self._start
                buf[:pending] = buf[self._start : self._end]
                self._start, self._end = 0, pending
            free = len(buf) - self._end
            if free < need:
                buf.extend(bytes(need - free))
        self._setSocketTimeout(deadline)
        try:
            with memoryview(buf) as view, view[self._end :] as target:
                received = self._sock.recv_into(target)
        except InterruptedError:
            return
        except _WOULD_BLOCK:
            raise OperationTimedOut(
                f"nothing arrived from {self._describePeer()} in time; nothing was consumed"
            ) from None
        except ssl.SSLZeroReturnError:
            received = 0
        except OSError as e:
            self._connectionFailed(e)
            raise
        if not received:
            self._endOfStream()
        self._end += received

    def _endOfStream(self) -> None:
        """
        The server closed the connection.

        @raise NetStructerError: Always: the channel's verdict
            (L{TruncationError}, L{HandshakeError}), or L{ChannelClosedError}
            after a clean close.
        """
        try:
            self._channel.connectionLost()
        except NetStructerError as e:
            self._fail(e)
            raise
        error = ChannelClosedError(f"{self._describePeer()} closed the connection")
        self._fail(error)
        raise error

    def _controlEvent(self, event: Event | None) -> None:
        if isinstance(event, RecordReceived):
            try:
                self.records.recordReceived(event)
            except RemoteProtocolError as e:
                self._fail(e)
                raise
        elif isinstance(event, PingReceived):
            self._tryFlush()
        elif isinstance(event, CloseReceived):
            # The server closed first: our reply is queued.  The close
            # handshake is complete on this side once the reply is written:
            # the link ends the connection then, without waiting for the
            # server's end (docs/protocol.rst, section 5.6).
            self.closeCode = event.code
            self.closeReason = event.reason
            self._ended = True
            try:
                replied = self._sendCloseReply(_deadlineAfter(self._closeTimeout))
                self.closedCleanly = replied and not self.valuesSent
            finally:
                self._closeSocket()

    def _sendCloseReply(self, deadline: float | None) -> bool:
        """
        Write the close reply (within the grace period).  The server may
        already have ended the connection (its grace period ran out, or it
        does not wait for the reply): a reset or a broken pipe here is not an
        error, as every value it sent before its close has been received.

        @param deadline: When to stop trying.
        @return: Whether the reply was written.
        """
        try:
            self._flush(deadline)
        except (NetStructerError, OSError) as e:
            _log.debug("the close reply to %s was not written: %s", self._describePeer(), e)
            return False
        return True

    # Failing.

    def _frameTooBig(self, length: int, limit: int) -> None:
        """
        @raise BufferDataError: Always, after closing the link.
        """
        if limit < self._maxFrame:
            maxSize = self._callMaxSize
            message = (
                f"{self._describePeer()} sent a value of about {length} bytes, more than the "
                f"{maxSize} allowed (maxSize, or buffer_size)"
            )
        else:
            message = (
                f"{self._describePeer()} announced a frame of {length} bytes; the limit is "
                f"{limit} (raise maxBufferSize to accept larger values)"
            )
        self._abortTooBig(BufferDataError(message))

    def _tooBig(self, size: int, maxSize: int) -> None:
        """
        @raise BufferDataError: Always, after closing the link.
        """
        error = BufferDataError(
            f"{self._describePeer()} sent a value of {size} bytes, more than the {maxSize} "
            "allowed (maxSize, or buffer_size)"
        )
        self._abortTooBig(error)

    def _abortTooBig(self, error: BufferDataError) -> None:
        try:
            self._queueFrame(self._channel.close(CloseCode.TOO_BIG, "value too large"))
        except LocalProtocolError:
            pass
        else:
            self._tryFlush()
        self._fail(error)
        raise error

    def _writeInterrupted(self) -> None:
        """
        A write was interrupted (by Ctrl-C) without saying how much it
        wrote, so the stream is in an unknown state: the link fails.
        """
        self._fail(
            ChannelClosedError(
                "a write was interrupted, leaving the stream in an unknown state; connect again"
            )
        )

    def _connectionFailed(self, error: OSError) -> None:
        try:
            self._channel.connectionLost()
        except NetStructerError:
            pass
        self._fail(error)

    def _fail(self, error: BaseException) -> None:
        if self._error is None:
            self._error = error
        self._closeSocket()

    def _closedError(self, what: str) -> ChannelClosedError:
        if self._error is not None:
            error = ChannelClosedError(
                f"cannot {what}: the link failed ({type(self._error).__name__}: {self._error})"
            )
            error.__cause__ = self._error
            return error
        if self.closeCode is not None and not self._closedHere:
            reason = f": {self.closeReason}" if self.closeReason else ""
            return SessionClosed(
                f"cannot {what}: the server closed the link ({self.closeCode.name}{reason})",
                self.closeCode,
                self.closeReason or "",
            )
        return ChannelClosedError(f"cannot {what}: the link is closed")

    def _closeSocket(self) -> None:
        sock = self._sock
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except (OSError, AttributeError):
            pass
        sock.close()

    # Closing.

    def close(self, timeout: float | None = None) -> None:
        """
        Close the link cleanly: send the close record, keep receiving (and
        queueing, for L{recvBuffer}) the values the server sent before it saw
        it, until the server's close reply arrives or the timeout passes;
        then close the socket.  Calling it again does nothing.

        Values queued before or during the close can still be taken with
        L{recvBuffer}; after them it raises L{ChannelClosedError}.

        @param timeout: Seconds to wait for the reply: the link's timeout if
            L{None}, or the C{closeTimeout} it was made with if that is
            L{None} too.
        """
        if self._ended or self._error is not None:
            self._ended = True
            return
        self._ended = True
        self._closedHere = True
        if timeout is None:
            timeout = self._timeout if self._timeout is not None else self._closeTimeout
        deadline = _deadlineAfter(timeout)
        try:
            self._queueFrame(self._channel.close(CloseCode.NORMAL, ""))
            self._flush(deadline)
            while True:
                event = self._nextEvent(deadline, self._maxFrame)
                if type(event) is ValueReceived:
                    self._queueValue(event)
                elif isinstance(event, CloseReceived):
                    self.closeCode = event.code
                    self.closeReason = event.reason
                    self.closedCleanly = True
                    break
        except (NetStructerError, OSError) as e:
            _log.debug("closing %s was not clean: %s", self._describePeer(), e)
        finally:
            self._closeSocket()

    def TimeOut(self, seconds: float | None) -> None:
        """
        The original package's name for L{settimeout}.

        @param seconds: The timeout, or L{None}.
        """
        self.settimeout(seconds)

    # The relay (netstructer.relayclient): requests and relayed values.

    def _relayClient(self) -> RelayClient:
        if self._relay is None:
            self._relay = RelayClient(self._channel.encodeValue, Decoder(self._limits).decode)
        return self._relay

    def _relayRecordReceived(self, recordType: int, body: bytes) -> None:
        self._relayClient().recordReceived(recordType, body)

    def _pollRelay(self) -> None:
        # As sendBuffer does: now and then, read what the server sent, so
        # that a sender that never reads still learns of its failures.
        if time.monotonic() >= self._nextPoll:
            self.poll()

    def sendTo(self, name: str, value: object, timeout: float | None = None) -> None:
        """
        Send a value through the server to the session named C{name}.  The
        server answers only failures: the next relay call (L{sendTo},
        L{publish}, L{subscribe}, L{unsubscribe}, L{recvFrom}) raises them
        (L{sendTo} and L{publish} read what arrived at least once a second,
        as L{sendBuffer} does).

        @param timeout: As for L{sendBuffer}.
        @raise NoSuchSession: An earlier value went to a name no session
            holds (nothing was sent this time; the link stays open).
        @raise RelayRefused: The server's policy refused an earlier request.
        @raise RecipientBusy: An earlier value was dropped for a full queue.
        @raise PeerVersionError: The server speaks protocol version 1.
        """
        self._pollRelay()
        self.sendRecord(*self._relayClient().sendTo(name, value), timeout=timeout)

    def publish(self, topic: str, value: object, timeout: float | None = None) -> None:
        """
        Send a value through the server to every subscriber of C{topic}.

        @raise RelayError: As for L{sendTo}.
        """
        self._pollRelay()
        self.sendRecord(*self._relayClient().publish(topic, value), timeout=timeout)

    def subscribe(self, topic: str, timeout: float | None = None) -> None:
        """
        Receive, through L{recvFrom}, what is published to C{topic}.

        @raise RelayError: As for L{sendTo}.
        """
        self.sendRecord(*self._relayClient().subscribe(topic), timeout=timeout)

    def unsubscribe(self, topic: str, timeout: float | None = None) -> None:
        """
        Stop receiving C{topic}.

        @raise RelayError: As for L{sendTo}.
        """
        self.sendRecord(*self._relayClient().unsubscribe(topic), timeout=timeout)

    def recvFrom(self, timeout: float | None = None) -> tuple[str | None, object]:
        """
        Receive the next value relayed to this link, with the same timeout
        semantics as L{recvBuffer} (values that are not relayed arrive in
        the meantime are queued for L{recvBuffer}).

        @return: C{(sender, value)}; the sender is L{None} for a value the
            server published.
        @raise RelayError: An earlier relay request failed.
        @raise OperationTimedOut: Nothing was relayed in time.
        @raise ChannelClosedError: The link is closed.
        """
        client = self._relayClient()
        relayed = client.nextRelayed()
        if relayed is None:
            if self._ended or self._error is not None:
                raise self._closedError("receive")
            deadline = (
                None if timeout is None and self._timeout is None else self._deadline(timeout)
            )
            if self._out:
                self._flush(deadline)
            while relayed is None:
                event = self._processOne(self._maxFrame)
                if isinstance(event, _NeedData):
                    self._fill(deadline)
                elif type(event) is ValueReceived:
                    self._queueValue(event)
                elif not isinstance(event, _Queued):
                    self._controlEvent(event)
                    relayed = client.nextRelayed()
                    if relayed is None and self._ended:
                        raise self._closedError("receive")
        return relayed.sender, relayed.value


class _Unset:
    """
    The type of L{_UNSET}: a socket timeout not yet set by the link.
    """


_UNSET: Final = _Unset()


def _checkTimeout(timeout: float | None) -> float | None:
    if timeout is not None and not timeout >= 0:
        raise ValueError(f"a timeout must be a non-negative number of seconds, not {timeout}")
    return timeout


def _connect(
    address: Address,
    deadline: float | None,
    tls: bool | ssl.SSLContext | None,
    serverHostname: str | None,
) -> socket.socket:
    """
    Open a TCP connection (IPv4 or IPv6), with TLS if asked.

    @raise OperationTimedOut: Connecting took too long.
    @raise OSError: The connection was refused, or TLS failed (an
        L{ssl.SSLCertVerificationError} if the certificate or host name
        does not verify).
    """
    host, port = parseAddress(address)
    remaining = None if deadline is None else max(deadline - time.monotonic(), 0.001)
    try:
        sock = socket.create_connection((host, port), timeout=remaining)
    except TimeoutError:
        raise OperationTimedOut(f"connecting to {host}:{port} timed out") from None
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if tls:
            context = ssl.create_default_context() if tls is True else tls
            if deadline is not None:
                sock.settimeout(max(deadline - time.monotonic(), 0.001))
            try:
                sock = context.wrap_socket(sock, server_hostname=serverHostname or host)
            except TimeoutError:
                raise OperationTimedOut(f"the TLS handshake with {host}:{port} timed out") from None
    except BaseException:
        sock.close()
        raise
    return sock


def link(
    address: Address,
    key: KeyLike,
    *,
    timeout: float | None = None,
    suite: str = "noise",
    tls: bool | ssl.SSLContext | None = None,
    serverHostname: str | None = None,
    cipher: str = "AESGCM",
    limits: Limits | None = None,
    maxBufferSize: int | None = None,
    closeTimeout: float = _DEFAULT_CLOSE_TIMEOUT,
) -> Link:
    """
    Connect to a NetStructer server and authenticate it.

    @param address: C{(host, port)}, C{"host:port"} or C{"[::1]:port"}.
    @param key: The key shared with the server.
    @param timeout: Seconds for connecting, TLS and the handshake together
        (10 seconds for the handshake if L{None}), and the default timeout
        of the link's calls afterwards (see L{Link.settimeout}).
    @param suite: C{"noise"} (the default) or C{"fernet"}.
    @param tls: C{True} to wrap the connection in TLS with the default
        context (certificate and host name verified), an L{ssl.SSLContext}
        to use that one, or L{None} for none.  NetStructer's own encryption
        is used either way.
    @param serverHostname: The name to verify the TLS certificate against;
        the host of C{address} by default.
    @param cipher: With C{"noise"}: C{"AESGCM"} or C{"ChaChaPoly"}.
    @param limits: Decoding limits for received values.
    @param maxBufferSize: The largest encoded value to accept.
    @param closeTimeout: The link's grace period (5 s by default): seconds
        L{Link.close} waits for the server's reply when no timeout is set.
    @return: The link, once the server has authenticated.
    @raise AuthenticationError: The server does not hold the key.
    @raise HandshakeError: The server speaks another protocol, version or
        suite, or refused the connection during the handshake.
    @raise HandshakeTimeout: The handshake took too long.
    @raise OperationTimedOut: Connecting took too long.
    @raise OSError: The connection was refused or failed, or TLS failed.
    @raise ValueError: The address is malformed.
    """
    _checkTimeout(timeout)
    deadline = _deadlineAfter(timeout)
    sock = _connect(address, deadline, tls, serverHostname)
    handshakeTimeout = (
        _DEFAULT_HANDSHAKE_TIMEOUT if deadline is None else max(deadline - time.monotonic(), 0.0)
    )
    return Link(
        sock,
        key,
        timeout=timeout,
        handshakeTimeout=handshakeTimeout,
        suite=suite,
        cipher=cipher,
        limits=limits,
        maxBufferSize=maxBufferSize,
        closeTimeout=closeTimeout,
    )


# The server facade.


class _ReactorThread:
    """
    The process's one reactor thread: the global Twisted reactor, run by
    the first blocking L{Server} to start, in a daemon thread, until the
    process exits.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._reactor: Any = None
        self.servers: set[Server] = set()

    def reactor(self) -> Any:
        """
        The running global reactor, started in its thread if need be.

        @return: The reactor.
        @raise RuntimeError: The reactor is already being run by other code,
            or the reactor thread has stopped.
        """
        with self._lock:
            thread = self._thread
            if thread is None:
                thread = self._start()
            if not thread.is_alive():
                raise RuntimeError(
                    "the NetStructer reactor thread has stopped (the process is exiting)"
                )
            return self._reactor

    def _start(self) -> threading.Thread:
        from twisted.internet import reactor

        if reactor.running:
            raise RuntimeError(
                "the Twisted reactor is already running in this process: use "
                "netstructer.server.Server from Twisted code instead of "
                "netstructer.blocking.Server"
            )
        thread = threading.Thread(
            target=reactor.run,
            kwargs={"installSignalHandlers": False},
            name="netstructer-reactor",
            daemon=True,
        )
        self._reactor = reactor
        self._thread = thread
        thread.start()
        atexit.register(self.shutdown)
        return thread

    def inReactorThread(self) -> bool:
        """
        @return: Whether the caller runs in the reactor thread.
        """
        return self._thread is not None and threading.current_thread() is self._thread

    def alive(self) -> bool:
        """
        @return: Whether the reactor thread is running.
        """
        return self._thread is not None and self._thread.is_alive()

    def shutdown(self, timeout: float = 10.0) -> None:
        """
        Close every open blocking server, then stop the reactor and wait for
        its thread (at most C{timeout} seconds).  Registered with C{atexit}.

        @param timeout: Seconds to wait for the thread.
        """
        for server in list(self.servers):
            try:
                server.close()
            except (NetStructerError, OSError, RuntimeError):
                _log.exception("closing %r at exit failed", server)
        thread, reactor = self._thread, self._reactor
        if thread is None or not thread.is_alive():
            return
        reactor.callFromThread(reactor.stop)
        thread.join(timeout)


_REACTOR_THREAD: Final = _ReactorThread()


class _Call:
    """
    One piece of work handed to the reactor thread and waited for by a
    script thread.
    """

    __slots__ = ("abandoned", "deferred", "done", "failure", "result")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.result: object = None
        self.failure: Failure | None = None
        self.deferred: Deferred[Any] | None = None
        self.abandoned = False


def _callInReactor(function: Callable[..., object], *args: object) -> Any:
    """
    Run C{function(*args)} in the reactor thread and wait for its result,
    waiting for a L{Deferred} it returns.  If the wait is interrupted (by
    L{KeyboardInterrupt}), the Deferred is cancelled and the exception
    raised at once.

    @return: The result.
    @raise Exception: What C{function} raised or its Deferred failed with;
        a closed connection (C{ConnectionDone}, C{ConnectionLost}) becomes
        L{ChannelClosedError}.
    @raise RuntimeError: Called from the reactor thread (it would deadlock),
        or the reactor thread has stopped.
    """
    if _REACTOR_THREAD.inReactorThread():
        raise RuntimeError(
            "a blocking NetStructer call was made from the reactor thread, where it would "
            "deadlock: use the Twisted API (netstructer.server) there"
        )
    reactor = _REACTOR_THREAD.reactor()
    call = _Call()

    def succeeded(result: object) -> None:
        call.result = result
        call.done.set()

    def failed(failure: Failure) -> None:
        if not call.abandoned:
            call.failure = failure
        call.done.set()

    def start() -> None:
        from twisted.internet.defer import maybeDeferred

        if call.abandoned:
            return
        d = maybeDeferred(function, *args)
        call.deferred = d
        d.addCallbacks(succeeded, failed)

    def abandon() -> None:
        call.abandoned = True
        if call.deferred is not None and not call.deferred.called:
            call.deferred.cancel()

    try:
        reactor.callFromThread(start)
        while not call.done.wait(0.25):
            if not _REACTOR_THREAD.alive():
                raise RuntimeError("the NetStructer reactor thread has stopped")
    except BaseException:
        reactor.callFromThread(abandon)
        raise
    if call.failure is not None:
        _raiseFailure(call.failure)
    return call.result


def _raiseFailure(failure: Failure) -> NoReturn:
    """
    Raise what C{failure} holds, turning Twisted's connection-ended errors
    into L{ChannelClosedError}.
    """
    from twisted.internet.error import ConnectionDone, ConnectionLost

    error = failure.value
    if isinstance(error, SessionClosed):
        raise SessionClosed(str(error), error.code, error.reason) from error
    if isinstance(error, ConnectionDone):
        raise ChannelClosedError("the session is closed") from error
    if isinstance(error, ConnectionLost):
        raise ChannelClosedError(f"the connection was lost: {error}") from error
    failure.raiseException()


def _describeAddress(address: object) -> tuple[str, int] | str:
    host = getattr(address, "host", None)
    port = getattr(address, "port", None)
    if isinstance(host, str) and isinstance(port, int):
        return (host, port)
    return str(address)


class Session(_ValueChannel):
    """
    A server's session with one client, for script threads: a blocking
    wrapper of a L{netstructer.protocol.BridgeProtocol}, whose every call
    runs in the reactor thread.

    Thread-safe: several threads may send on one session; receiving is
    serialised (values are handed out in order, each once).

    @ivar key: The session's key, C{"ip:port"} (C{"[ip]:port"} for IPv6).
    @ivar peer: The client's address, C{(host, port)}.
    @ivar name: The name of the key that authenticated the client (from
        the server's key file), or L{None} for an anonymous key.
    @ivar keyId: The non-secret ID of that key (8 hexadecimal digits).
    """

    def __init__(self, protocol: BridgeProtocol) -> None:
        """
        @param protocol: The server-side protocol.
        """
        self._protocol = protocol
        self._inbox: deque[object] = deque()
        self._receiving = threading.Lock()
        self._pending: Deferred[object] | None = None
        self._ready: list[Deferred[None]] = []
        self.key = protocol.key
        self.peer = _describeAddress(protocol.peer)
        self.name = protocol.name
        self.keyId = protocol.keyId

    def __repr__(self) -> str:
        if self.name is not None:
            return f"<Session {self.name} {self.key}>"
        return f"<Session {self.key}>"

    @property
    def open(self) -> bool:
        """
        Whether the connection has not ended.
        """
        return self._protocol.closeReason is None

    def sendBuffer(self, value: object) -> None:
        """
        Send a value, waiting while the connection's write buffer is full.

        @param value: A value of a type L{netstructer.values} carries.
        @raise EncodeError: It cannot be encoded; nothing was sent.
        @raise BufferDataError: It is larger than the client accepts;
            nothing was sent.
        @raise ChannelClosedError: The session is closing or closed.
        """
        protocol = self._protocol

        def send() -> Deferred[None]:
            protocol.sendBuffer(value)
            return protocol.whenWritable()

        _callInReactor(send)

    def recvBuffer(self, timeout: float | None = None, maxSize: int | None = None) -> object:
        """
        Receive the next value, in order.

        @param timeout: Seconds to wait, or L{None} to wait as long as the
            session lasts.  A timeout consumes nothing.
        @param maxSize: The largest encoded value to accept: a larger value
            raises L{BufferDataError} and closes the session.  (The server's
            C{maxBufferSize} option is the limit checked before a value is
            read; this one is checked when it is taken.)
        @return: The value.
        @raise OperationTimedOut: No value arrived in time.
        @raise BufferDataError: The value is larger than C{maxSize}.
        @raise ChannelClosedError: The session ended cleanly, after every
            value received before has been taken.
        @raise NetStructerError: The session failed (for example
            L{TruncationError}).
        """
        deadline = _deadlineAfter(timeout)
        with self._receiving:
            while not self._inbox:
                remaining = None if deadline is None else max(deadline - time.monotonic(), 0.0)
                _callInReactor(self._whenReceived, remaining)
            value = self._inbox.popleft()
        if maxSize is not None:
            from netstructer.values import encode

            size = len(encode(value, limits=self._protocol.config.limits))
            if size > maxSize:
                self._closeInReactor("value too large", CloseCode.TOO_BIG)
                raise BufferDataError(
                    f"{self.key} sent a value of {size} bytes, more than the {maxSize} "
                    "allowed (maxSize, or buffer_size)"
                )
        return value

    def _whenReceived(self, timeout: float | None) -> Deferred[None]:
        """
        In the reactor thread: wait until the inbox holds a value.

        One C{recvBuffer} of the protocol at most is outstanding, and what
        it receives always goes to the inbox, so that a wait abandoned (by
        a timeout or Ctrl-C) never takes a value with it.

        @param timeout: Seconds to wait, or L{None}.
        @return: A Deferred firing once the inbox holds a value; failing
            with the reason the session ended, or L{OperationTimedOut}.
        """
        from twisted.internet import defer

        if self._inbox:
            return defer.succeed(None)
        timer: Any = None

        def forget(d: Deferred[None]) -> None:
            if d in self._ready:
                self._ready.remove(d)
            if timer is not None and timer.active():
                timer.cancel()

        ready: Deferred[None] = defer.Deferred(forget)
        self._ready.append(ready)
        if self._pending is None:
            pending = self._protocol.recvBuffer()
            self._pending = pending
            pending.addCallbacks(self._received, self._receiveFailed)
        if ready.called:
            return ready
        if timeout is not None:

            def timedOut() -> None:
                if ready in self._ready:
                    self._ready.remove(ready)
                ready.errback(
                    OperationTimedOut(f"no value arrived from {self.key} within {timeout} seconds")
                )

            timer = _REACTOR_THREAD.reactor().callLater(timeout, timedOut)

            def stopTimer(result: object) -> object:
                if timer.active():
                    timer.cancel()
                return result

            ready.addBoth(stopTimer)
        return ready

    def _received(self, value: object) -> None:
        self._pending = None
        self._inbox.append(value)
        ready, self._ready = self._ready, []
        for d in ready:
            d.callback(None)

    def _receiveFailed(self, failure: Failure) -> None:
        self._pending = None
        ready, self._ready = self._ready, []
        for d in ready:
            d.errback(failure)

    def _closeInReactor(self, reason: str, code: CloseCode) -> None:
        _callInReactor(self._protocol.close, reason, code)

    def close(self) -> None:
        """
        Start closing the session cleanly, and return at once: the close
        record is sent after every value already given to L{sendBuffer},
        and the connection ends when the client replies (or when the
        server's C{shutdownGrace} runs out).  Values the client sent before it saw the
        close can still be taken with L{recvBuffer}, which raises
        L{ChannelClosedError} after them.
        """
        self._closeInReactor("", CloseCode.NORMAL)

    def waitClosed(self, timeout: float | None = None) -> None:
        """
        Wait until the connection has ended.

        @param timeout: Seconds to wait, or L{None} for as long as it takes.
        @raise OperationTimedOut: It had not ended in time.
        """
        from twisted.internet.defer import TimeoutError as DeferredTimeout

        protocol = self._protocol
        reactor = _REACTOR_THREAD.reactor()

        def closed() -> Deferred[None]:
            d = protocol.whenClosed()
            if timeout is not None and not d.called:
                d.addTimeout(timeout, reactor)
            return d

        try:
            _callInReactor(closed)
        except DeferredTimeout as e:
            raise OperationTimedOut(
                f"the session {self.key} had not ended after {timeout} seconds"
            ) from e


class _WorkerPool:
    """
    Daemon worker threads running handlers, at most C{maxWorkers} at once;
    threads are started only when no idle one is waiting.  Daemon threads,
    so that a handler blocked forever cannot keep the process alive.
    """

    def __init__(self, maxWorkers: int, name: str) -> None:
        if maxWorkers < 1:
            raise ValueError("maxWorkers must be at least 1")
        self._maxWorkers = maxWorkers
        self._name = name
        self._work: queue.SimpleQueue[tuple[Callable[..., object], tuple[object, ...]] | None] = (
            queue.SimpleQueue()
        )
        self._idle = threading.Semaphore(0)
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()

    def submit(self, function: Callable[..., object], *args: object) -> None:
        """
        Run C{function(*args)} in a worker thread.
        """
        self._work.put((function, args))
        if self._idle.acquire(blocking=False):
            return
        with self._lock:
            if len(self._threads) < self._maxWorkers:
                thread = threading.Thread(
                    target=self._worker,
                    name=f"{self._name}-{len(self._threads) + 1}",
                    daemon=True,
                )
                self._threads.append(thread)
                thread.start()

    def _worker(self) -> None:
        while True:
            item = self._work.get()
            if item is None:
                return
            function, args = item
            try:
                function(*args)
            except BaseException:  # noqa: BLE001 - a worker must survive its job; logged
                _log.exception("a NetStructer worker failed")
            self._idle.release()

    def shutdown(self, timeout: float) -> bool:
        """
        Let the workers finish their handlers, then stop them.

        @param timeout: Seconds to wait.
        @return: Whether every worker stopped in time.
        """
        with self._lock:
            threads = list(self._threads)
        for _ in threads:
            self._work.put(None)
        current = threading.current_thread()
        others = [thread for thread in threads if thread is not current]
        deadline = time.monotonic() + timeout
        for thread in others:
            thread.join(max(deadline - time.monotonic(), 0.0))
        return not any(thread.is_alive() for thread in others)


class _HandlerBridge:
    """
    The handler a blocking server gives the Twisted server: runs the
    script's handler in a worker thread for each new session.
    """

    def __init__(self, server: Server, handler: Callable[[Session], object]) -> None:
        self._server = server
        self._handler = handler

    def sessionOpened(self, protocol: BridgeProtocol) -> None:
        """
        Hand the new session to the script's handler.

        @param protocol: The session.
        """
        session = self._server._wrap(protocol)
        self._server._workers().submit(self._run, session)

    def _run(self, session: Session) -> None:
        try:
            self._handler(session)
        except (ChannelClosedError, RemoteProtocolError) as e:
            _log.debug("handler for %s ended: %s", session.key, e)
        except Exception:  # noqa: BLE001 - the script's code; logged, its session closed
            _log.exception("the handler failed for %s; closing that session", session.key)
            try:
                session._closeInReactor("internal server error", CloseCode.INTERNAL_ERROR)
            except (NetStructerError, RuntimeError):
                _log.debug("closing %s after its handler failed", session.key, exc_info=True)


def _stopWithoutWaiting(service: _TwistedServer) -> Deferred[None]:
    """
    In the reactor thread: stop C{service}, and fire once it has stopped or
    every close record is on its socket, whichever comes first.  The peers'
    replies are not waited for: a link held by the very thread that closes
    the server can only answer once that thread reads again, and the rest
    of each close finishes in the reactor thread, within the grace period.

    @param service: The running Twisted server.
    @return: A Deferred firing with L{None}.
    """
    from twisted.internet import defer

    reactor = _REACTOR_THREAD.reactor()
    done: Deferred[None] = defer.Deferred()
    stopped = service.stopService()

    def check() -> None:
        if done.called:
            return
        if stopped.called or service.registry.closesWritten():
            done.callback(None)
        else:
            reactor.callLater(_CLOSE_POLL_INTERVAL, check)

    def stoppedAnyway(result: object) -> None:
        check()

    stopped.addBoth(stoppedAnyway)
    check()
    return done


class Server:
    """
    A NetStructer server for synchronous scripts: the Twisted
    L{netstructer.server.Server}, run in the reactor thread, behind
    blocking methods (see the module docstring for the threading model).

    Sessions are handed out as L{Session} objects.  Use it as a context
    manager, or call L{close}; an C{atexit} hook closes it otherwise.
    """

    def __init__(self, address: Address | int, key: KeyLike | None = None, **options: Any) -> None:
        """
        @param address: Where to listen: C{(host, port)}, C{"host:port"},
            C{"[::1]:port"} or a port number (every interface); port 0 picks
            a free port (see L{port}).  A Twisted endpoint description
            (C{"ssl:5000:privateKey=key.pem"}) is accepted too.
        @param key: The server's key, or a list of keys (every one is
            accepted), or a L{Keyring} with the keys' names; L{None} to read
            the C{keyFile} option, the key file (names and all) that
            L{reloadKeys} reads again.
        @param options: C{maxWorkers} (the most handler threads, see
            L{listen_on}; 64 by default), and the options of
            L{netstructer.server.Server}: C{maxBufferSize}, C{maxSessions},
            C{maxPerIP}, C{suite}, C{handshakeTimeout}, C{shutdownGrace}
            (the grace period of L{close}, 5 s by default), ...
            The server logs through the standard library's C{logging}, as
            C{netstructer.server} (warnings, such as a peer failing to
            authenticate, reach standard error even when logging is not
            configured), unless a Twisted C{logger} is given.
        """
        self._address = address
        self._key = key
        self._maxWorkers = int(options.pop("maxWorkers", 64))
        self._options = options
        self._service: _TwistedServer | None = None
        self._listening = False
        self._pool: _WorkerPool | None = None
        self._sessions: weakref.WeakKeyDictionary[BridgeProtocol, Session] = (
            weakref.WeakKeyDictionary()
        )
        self._lock = threading.Lock()
        self._starting = threading.RLock()

    def __repr__(self) -> str:
        state = "listening" if self._listening else "bound" if self._service else "not bound"
        return f"<blocking.Server {self._address!r} {state}>"

    def _endpoint(self) -> object:
        address: object = self._address
        if isinstance(address, int):
            return address
        if isinstance(address, str) and address.split(":", 1)[0].strip().lower() in _ENDPOINT_TYPES:
            return address
        try:
            return parseAddress(cast(Address, address), allowPortZero=True)
        except ValueError as e:
            raise ServerInitializeError(f"cannot listen on {address!r}: {e}") from e

    def _running(self) -> _TwistedServer:
        service = self._service
        if service is None:
            raise ServerInitializeError("the server is not bound: call init() first")
        return service

    def _wrap(self, protocol: BridgeProtocol) -> Session:
        with self._lock:
            session = self._sessions.get(protocol)
            if session is None:
                session = self._sessions[protocol] = Session(protocol)
            return session

    def _wrapOrNone(self, protocol: BridgeProtocol | None) -> Session | None:
        return None if protocol is None else self._wrap(protocol)

    def _workers(self) -> _WorkerPool:
        with self._lock:
            if self._pool is None:
                self._pool = _WorkerPool(self._maxWorkers, "netstructer-handler")
            return self._pool

    # Starting.

    def init(self) -> None:
        """
        Bind the listening socket.  Connections wait (in the socket's
        backlog) until L{listen} or L{listen_on}.  Calling it again does
        nothing.

        @raise ServerInitializeError: The port is in use or not permitted,
            the address is malformed, or the key is missing or bad; the
            message names the cause.
        @raise RuntimeError: The Twisted reactor is already run by other
            code in this process.
        """
        with self._starting:
            if self._service is None:
                self._bind()

    def _bind(self) -> None:
        endpoint = self._endpoint()
        key: Any = self._key
        options = dict(self._options)
        reactor = _REACTOR_THREAD.reactor()

        def bind() -> Deferred[_TwistedServer]:
            from twisted.internet.interfaces import IPushProducer

            from netstructer.server import Server as TwistedServer

            if "logger" not in options:
                from twisted.logger import Logger, STDLibLogObserver

                options["logger"] = Logger(
                    namespace="netstructer.server",
                    observer=STDLibLogObserver(name="netstructer.server"),
                )
            try:
                service = TwistedServer(endpoint, key, reactor=reactor, **options)
            except InvalidKey as e:
                raise ServerInitializeError(f"the server's key is not usable: {e}") from e
            except (TypeError, ValueError) as e:
                raise ServerInitializeError(f"cannot make the server: {e}") from e

            def bound(port: Any) -> TwistedServer:
                if IPushProducer.providedBy(port):
                    port.pauseProducing()
                return service

            return service.listen().addCallback(bound)

        service = _callInReactor(bind)
        self._service = service
        _REACTOR_THREAD.servers.add(self)

    def listen(self) -> None:
        """
        Start accepting connections (binding first if L{init} was not
        called).

        @raise ServerInitializeError: See L{init}.
        """
        with self._starting:
            self.init()
            if self._listening:
                return
            service = self._running()

            def resume() -> None:
                from twisted.internet.interfaces import IPushProducer

                port: Any = service.port
                if IPushProducer.providedBy(port):
                    port.resumeProducing()

            _callInReactor(resume)
            self._listening = True

    def listen_on(self, handler: Callable[[Session], object]) -> None:
        """
        Run C{handler(session)} in a worker thread for each session that
        opens from now on, and start accepting (binding first if need be).
        The session stays open when the handler returns; if the handler
        raises (other than because the session ended), the error is logged
        and the session closed.  Calling it again replaces the handler.

        The original package called C{func(socket, container)} once to run
        its own accept loop; here the server accepts, and the handler gets
        each session.

        @param handler: A callable taking a L{Session}.
        @raise TypeError: C{handler} is not callable.
        @raise ServerInitializeError: See L{init}.
        """
        if not callable(handler):
            raise TypeError(f"{handler!r} is not callable: give a function taking the session")
        with self._starting:
            self.init()
            service = self._running()
            _callInReactor(service.setHandler, _HandlerBridge(self, handler))
            self.listen()

    @property
    def address(self) -> tuple[str, int] | str:
        """
        The address the server is bound to, C{(host, port)}.

        @raise ServerInitializeError: It is not bound.
        """
        port = self._running().port
        return _describeAddress(port.getHost() if port is not None else None)

    @property
    def port(self) -> int:
        """
        The port number the server is bound to (useful after binding port
        0).

        @raise ServerInitializeError: It is not bound.
        """
        address = self.address
        if isinstance(address, str):
            raise ServerInitializeError(f"the server listens on {address}, not on a TCP port")
        return address[1]

    # The registry.

    def count(self) -> int:
        """
        @return: How many sessions are open (and not popped).
        """
        return int(_callInReactor(self._running().count))

    def all(self) -> list[Session]:
        """
        @return: The open sessions, oldest first.
        """
        return [self._wrap(p) for p in _callInReactor(self._running().all)]

    def get(self, ipOrKey: str) -> Session | None:
        """
        Find a session, without waiting.

        @param ipOrKey: A key's name, a session key (C{"ip:port"}) or a bare
            IP address (the most recent session of that name or from it).
        @return: The session, or L{None} if none is open (yet).
        """
        return self._wrapOrNone(_callInReactor(self._running().get, ipOrKey))

    def allFrom(self, ip: str) -> list[Session]:
        """
        @param ip: A bare IP address.
        @return: Every open session from it, oldest first.
        """
        return [self._wrap(p) for p in _callInReactor(self._running().allFrom, ip)]

    def allNamed(self, name: str) -> list[Session]:
        """
        @param name: A key's name, as in the key file line C{alice <key>}.
        @return: Every open session authenticated by a key of that name,
            oldest first.
        """
        return [self._wrap(p) for p in _callInReactor(self._running().allNamed, name)]

    def reloadKeys(self, keyring: Keyring | None = None) -> KeyReload:
        """
        Replace the accepted keys without a restart: read the C{keyFile}
        again (or take C{keyring}); new connections use the new keys at
        once, and the sessions whose key was removed (or renamed) are closed
        with the reason C{"key revoked"}.  Nothing else is disturbed.

        @param keyring: The new keys, or L{None} to read the key file.
        @return: What changed (see L{netstructer.keyreload.KeyReload}).
        @raise KeyFileError: The key file cannot be loaded; the keys in
            force are kept and the reason is logged.
        @raise ValueError: No key file was given and no C{keyring} either.
        @raise ServerInitializeError: The server is not bound.
        """
        service = self._running()
        return cast(KeyReload, _callInReactor(service.reloadKeys, keyring))

    def pop(self, ipOrKey: str) -> Session | None:
        """
        Take a session out of the registry, leaving it open.

        @param ipOrKey: A key's name, a session key or a bare IP address.
        @return: The session, or L{None}.
        """
        return self._wrapOrNone(_callInReactor(self._running().pop, ipOrKey))

    def clear(self) -> None:
        """
        Close every open session cleanly and wait until they have ended.
        """
        _callInReactor(self._running().clear)

    def waitFor(self, ipOrKey: str, timeout: float | None = None) -> Session:
        """
        Wait until a session named C{ipOrKey}, or from it, is open.

        @param ipOrKey: A key's name, a session key or a bare IP address.
        @param timeout: Seconds to wait, or L{None} to wait as long as it
            takes.
        @return: The session (at once if one is already open).
        @raise OperationTimedOut: None opened in time.
        """
        return self._wrap(_callInReactor(self._running().waitFor, ipOrKey, timeout))

    # Stopping.

    def close(self, timeout: float = 30.0) -> None:
        """
        Shut down cleanly: stop listening, close every session (each first
        sends every value already given to it, then its close record), and
        return once every session has ended or has its close record on the
        socket; then let the handler threads finish (at most C{timeout}
        seconds).  This never needs the calling thread to do anything else
        (a link it holds to this server need not answer): the clients'
        replies are taken in the background, and a connection still open
        when the C{shutdownGrace} option (5 s by default) runs out is ended
        then, with one log line.  Values
        received before the close can still be taken from their
        L{Session}s.  Calling it again does nothing.

        @param timeout: Seconds to wait for the handler threads.
        """
        with self._starting:
            service, self._service = self._service, None
            self._listening = False
        _REACTOR_THREAD.servers.discard(self)
        if service is not None:
            _callInReactor(_stopWithoutWaiting, service)
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None and not pool.shutdown(timeout):
            _log.warning("handler threads were still running %s seconds after close()", timeout)

    def __enter__(self) -> Server:
        """
        @return: This server; leaving the C{with} block closes it.
        """
        return self

    def __exit__(
        self,
        excType: type[BaseException] | None,
        excValue: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """
        Close the server.
        """
        self.close()

    # The relay (created with relay=True or relayPolicy=...).

    def publish(self, topic: str, value: object) -> int:
        """
        Send a value to every session subscribed to C{topic}, with no sender
        name (see L{netstructer.server.Server.publish}).

        @return: How many subscribers it was queued for.
        @raise RelayRefused: Relay is not turned on.
        """
        return cast(int, _callInReactor(self._running().publish, topic, value))

    def sendTo(self, name: str, value: object) -> None:
        """
        Send a value to the session named C{name}, with no sender name (see
        L{netstructer.server.Server.sendTo}).

        @raise RelayRefused: Relay is not turned on.
        """
        _callInReactor(self._running().sendTo, name, value)


class Bridge:
    """
    The original package's client spellings: C{Bridge.Link(address,
    key=key)} (or C{Bridge.link}) makes a L{Link}.
    """

    @staticmethod
    def Link(address: Address, key: KeyLike | None = None, **options: Any) -> Link:
        """
        Connect, as the original C{Bridge.Link(address)} did, but now with a
        key.

        @param address: C{(host, port)} or C{"host:port"}.
        @param key: The key shared with the server (required).
        @param options: As for L{link}.
        @return: The link.
        @raise InvalidKey: No key was given.
        """
        if key is None:
            raise InvalidKey(
                "Bridge.Link needs the key shared with the server: Bridge.Link(address, "
                "key=key); make one with `netstructer keygen` or GenerateKey()"
            )
        return link(address, key, **options)

    link = Link


class Error:
    """
    The original package's error namespace: C{Error.BufferDataError} and
    C{Error.ServerInitializeError} are L{netstructer.errors}' classes.
    """

    BufferDataError = BufferDataError
    ServerInitializeError = ServerInitializeError


def GenerateKey() -> bytes:
    """
    The original package's spelling of L{netstructer.keys.generateKey}.

    @return: A new Fernet-format key.
    """
    return generateKey()
