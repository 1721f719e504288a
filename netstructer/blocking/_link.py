# -*- test-case-name: tests.test_blocking -*-
"""
L{Link}: the blocking client, the socket adapter of the session core
(L{netstructer.session.core.SessionCore}); and L{link}, which connects one.
See L{netstructer.blocking}.  Nothing here imports Twisted.
"""

from __future__ import annotations

import logging
import os
import socket
import ssl
import struct
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from types import TracebackType
from typing import Any, BinaryIO, Final, NoReturn, TypeAlias, TypeVar, cast

from netstructer.blocking._sockets import (
    IMMEDIATELY,
    WOULD_BLOCK,
    SocketIO,
    WriteInterrupted,
    deadlineAfter,
)
from netstructer.blocking._streams import IncomingStreamReader, LinkStreams, Progress
from netstructer.channel import (
    BATCH_SIZE,
    PROTOCOL_VERSION,
    CloseCode,
    CloseReceived,
    HandshakeCompleted,
    Role,
    ValueReceived,
    ValuesReceived,
    frameOverhead,
)
from netstructer.closing import DEFAULT_SHUTDOWN_GRACE
from netstructer.errors import (
    BufferDataError,
    ChannelClosedError,
    FrameTooLarge,
    HandshakeTimeout,
    NetStructerError,
    OperationTimedOut,
    SessionClosed,
)
from netstructer.keys import Keyring, asKeyring
from netstructer.relay.client import RelayClient, RelayClientCapability
from netstructer.session.config import BridgeConfig
from netstructer.session.core import SessionCore, SessionFailed
from netstructer.session.routing import CapabilityRouter
from netstructer.streams.receipt import StreamReceipt
from netstructer.values import DEFAULT_LIMITS, Limits

Address: TypeAlias = "tuple[str, int] | str"
KeyLike: TypeAlias = "bytes | str | Keyring | Sequence[bytes | str]"

_PREFIX: Final = struct.Struct("!I")
_MAX_IOV: Final = 512
_SMALL_VALUE: Final = 16 * 1024
"""Larger C{bytes} values are sealed in the channel's reused buffer."""
_CONTROL_SIZE_FLOOR: Final = 512
"""Frame limits never go below a frame carrying this much, so that pings and
close records always pass the length check."""

_POLL_INTERVAL: Final = 1.0
_DEFAULT_HANDSHAKE_TIMEOUT: Final = 10.0

_log = logging.getLogger("netstructer.blocking")


class _NeedData:
    """
    The type of L{_NEED_DATA}.
    """


_NEED_DATA: Final = _NeedData()
"""What L{_LinkSession.processOne} returns when no complete frame is buffered."""


class _Queued:
    """
    The type of L{_QUEUED}.
    """


_QUEUED: Final = _Queued()
"""
What L{_LinkSession.processOne} returns when a record brought several
values, which it queued.
"""


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


def _checkTimeout(timeout: float | None) -> float | None:
    if timeout is not None and not timeout >= 0:
        raise ValueError(f"a timeout must be a non-negative number of seconds, not {timeout}")
    return timeout


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


class _LinkSession:
    """
    The mechanics of a L{Link}: bytes between its socket and its session
    core, the core's events turned into return values and exceptions, and
    the link's end.

    @ivar io: The socket.
    @ivar frames: The bytes received and not yet handled.
    @ivar core: The session.
    @ivar relay: The session's relay capability.
    @ivar error: Why the link failed, if it did.
    @ivar ended: Whether the link is closed (by either side) or failed.
    @ivar closedHere: Whether this side closed it.
    @ivar maxFrame: The largest frame this side accepts.
    """

    def __init__(self, sock: socket.socket, config: BridgeConfig, closeTimeout: float) -> None:
        self.io = SocketIO(sock)
        self.closeTimeout = closeTimeout
        self.limits = config.limits
        self.error: BaseException | None = None
        self.ended = False
        self.closedHere = False
        self.nextPoll = 0.0
        self.maxFrame = 0
        self.callMaxSize: int | None = None
        self.suite = ""
        self.peerMaxValueSize = 0
        self.closeCode: CloseCode | None = None
        self.closeReason: str | None = None
        self.closedCleanly = False
        self.core = core = SessionCore(Role.CLIENT, config, time.monotonic, wallClock=time.time)
        self.frames = core.frames
        client = RelayClient(core.channel.encodeValue, core.channel.decoder.decode)
        self.relay = core.attach(lambda host: RelayClientCapability(host, client))

    def checkOpen(self, what: str) -> None:
        """
        @raise ChannelClosedError: The link is closed or has failed.
        """
        if self.ended or self.error is not None:
            raise self.closedError(what)

    def handshake(self, deadline: float | None, timeout: float) -> None:
        core = self.core
        core.connectionMade(self.io.describePeer())
        try:
            self.flush(deadline)
            event = self.nextEvent(deadline, core.channel.maxFrameSize)
            while not isinstance(event, HandshakeCompleted):
                event = self.nextEvent(deadline, core.channel.maxFrameSize)
            self.flush(deadline)
        except OperationTimedOut:
            raise HandshakeTimeout(
                f"the handshake with {core.peer} did not complete within {timeout} seconds"
            ) from None
        self.suite = event.suite
        self.peerMaxValueSize = event.peerMaxValueSize
        self.maxFrame = core.channel.maxFrameSize

    def flush(self, deadline: float | None) -> None:
        """
        Write what the core queued.

        @raise OperationTimedOut: The deadline passed first; the rest stays
            queued.
        @raise ConnectionBroken: The connection failed; the link is closed.
        """
        try:
            self.io.write(self.core.out, deadline)
        except WriteInterrupted as e:
            self.writeInterrupted()
            raise cast(BaseException, e.__cause__) from None
        except OperationTimedOut:
            raise
        except OSError as e:
            raise self.connectionFailed(e) from e

    def tryFlush(self) -> None:
        """
        Write what the socket takes now (pongs, close replies), never
        waiting; the rest is written by the next call.
        """
        if self.core.out:
            try:
                self.flush(IMMEDIATELY)
            except OperationTimedOut:
                pass

    def nextQueued(self, maxSize: int | None) -> object:
        """
        Take the next queued value.

        @raise BufferDataError: It is larger than C{maxSize}; the link is
            closed.
        """
        value, size, batched = self.core.queue.pop()
        if maxSize is not None:
            if batched and maxSize < BATCH_SIZE:
                # A value of a batch is smaller than the batch, but its own
                # size is known only by encoding it again.
                size = len(self.core.channel.encodeValue(value))
            if size > maxSize:
                self.tooBig(size, maxSize)
        return value

    def frameLimit(self, maxSize: int | None) -> int:
        """
        @return: The largest frame to read for a value of C{maxSize}.
        """
        self.callMaxSize = maxSize
        if maxSize is None:
            return self.maxFrame
        if maxSize < 0:
            raise ValueError(f"maxSize must be a non-negative number of bytes, not {maxSize}")
        # A batch of small values may come in one record up to BATCH_SIZE
        # long, whatever the caller's maxSize.
        floor = max(maxSize, _CONTROL_SIZE_FLOOR, BATCH_SIZE)
        return min(self.maxFrame, frameOverhead(self.core.channel.suite, floor))

    def processOne(self, limit: int) -> object:
        """
        Feed the next complete buffered frame to the session core.

        @param limit: The largest frame to accept; a length prefix over it
            fails the link before the frame's body is read.
        @return: A L{ValueReceived}; L{_QUEUED} when a batch of values was
            queued; L{_NEED_DATA} if no complete frame is buffered; or the
            control event the frame caused (L{HandshakeCompleted},
            L{CloseReceived}), or L{None}.
        """
        core = self.core
        frames = self.frames
        frames.maxFrame = limit
        try:
            frame = frames.nextFrame()
        except FrameTooLarge as e:
            self.frameTooBig(e.length, limit)
        if frame is None:
            return _NEED_DATA
        event = core.frameReceived(frame)
        if type(event) is ValuesReceived:
            values = event.values
            core.queue.extend(values, event.size // len(values))
            return _QUEUED
        if event is not None:
            return event
        control = self.controlEvents()
        if core.out:
            self.tryFlush()
        return control

    def controlEvents(self) -> object:
        """
        Act on the core's events: a failure raises, a close from the server
        is answered; the last handshake or close event is returned.
        """
        result: object = None
        events = self.core.events
        while events:
            event = events.pop(0)
            if isinstance(event, SessionFailed):
                self.tryFlush()
                self.fail(event.error)
                raise event.error
            if isinstance(event, CloseReceived):
                self.closeReceived(event)
            result = event
        return result

    def closeReceived(self, event: CloseReceived) -> None:
        self.closeCode = event.code
        self.closeReason = event.reason
        if self.closedHere:
            self.closedCleanly = True
            return
        # The server closed first: our reply is queued.  The close handshake
        # is complete on this side once the reply is written: the link ends
        # the connection then, without waiting for the server's end
        # (docs/protocol.rst, section 5.6).
        self.ended = True
        try:
            replied = self.sendCloseReply(deadlineAfter(self.closeTimeout))
            self.closedCleanly = replied and not self.core.valuesOut
        finally:
            self.io.close()

    def nextEvent(self, deadline: float | None, limit: int) -> object:
        """
        Process frames until one produces an event, reading as needed.
        Values of a batch are queued for L{Link.recvBuffer}.
        """
        while True:
            event = self.processOne(limit)
            if event is _NEED_DATA:
                self.fill(deadline)
            elif event is not _QUEUED and event is not None:
                return event

    def fill(self, deadline: float | None) -> None:
        """
        Read once from the socket.

        @raise OperationTimedOut: Nothing arrived in time; nothing is lost.
        @raise ConnectionBroken: The connection ended without the server's
            close record, or failed.
        @raise HandshakeError: The connection ended during the handshake.
        @raise ChannelClosedError: The connection ended after a clean close.
        """
        frames = self.frames
        try:
            received = self.io.readInto(frames.receiveBuffer(), deadline)
        except OperationTimedOut:
            raise
        except OSError as e:
            raise self.connectionFailed(e) from e
        if received == 0:
            self.endOfStream()
        if received:
            frames.received(received)

    def endOfStream(self) -> NoReturn:
        """
        The server closed the connection.

        @raise NetStructerError: Always: the core's verdict
            (L{ConnectionBroken}, L{HandshakeError}), or
            L{ChannelClosedError} after a clean close.
        """
        verdict = self.core.connectionLost(None)
        error = verdict or ChannelClosedError(f"{self.core.peer} closed the connection")
        self.fail(error)
        raise error

    def sendCloseReply(self, deadline: float | None) -> bool:
        """
        Write the close reply (within the grace period).  The server may
        already have ended the connection: a reset or a broken pipe here is
        not an error, as every value it sent before its close has been
        received.

        @return: Whether the reply was written.
        """
        try:
            self.flush(deadline)
        except (NetStructerError, OSError) as e:
            _log.debug("the close reply to %s was not written: %s", self.core.peer, e)
            return False
        return True

    def frameTooBig(self, length: int, limit: int) -> NoReturn:
        """
        @raise BufferDataError: Always, after closing the link.
        """
        if limit < self.maxFrame:
            message = (
                f"{self.core.peer} sent a value of about {length} bytes, more than the "
                f"{self.callMaxSize} allowed (maxSize, or buffer_size)"
            )
        else:
            message = (
                f"{self.core.peer} announced a frame of {length} bytes; the limit is "
                f"{limit} (raise maxBufferSize to accept larger values)"
            )
        self.abortTooBig(BufferDataError(message))

    def tooBig(self, size: int, maxSize: int) -> NoReturn:
        """
        @raise BufferDataError: Always, after closing the link.
        """
        self.abortTooBig(
            BufferDataError(
                f"{self.core.peer} sent a value of {size} bytes, more than the {maxSize} "
                "allowed (maxSize, or buffer_size)"
            )
        )

    def abortTooBig(self, error: BufferDataError) -> NoReturn:
        core = self.core
        if core.established and not core.closing.sentClose and core.closeRequested is None:
            core.close(CloseCode.TOO_BIG, "value too large")
            self.tryFlush()
        self.fail(error)
        raise error

    def writeInterrupted(self) -> None:
        """
        A write was interrupted (by Ctrl-C) without saying how much it
        wrote, so the stream is in an unknown state: the link fails.
        """
        self.fail(
            ChannelClosedError(
                "a write was interrupted, leaving the stream in an unknown state; connect again"
            )
        )

    def connectionFailed(self, error: OSError) -> Exception:
        """
        The socket failed: the link is closed.

        @return: The error to raise (the core's L{ConnectionBroken}).
        """
        reported = self.core.transportFailed(error)
        self.fail(reported)
        return reported

    def fail(self, error: BaseException) -> None:
        if self.error is None:
            self.error = error
        self.io.close()

    def closedError(self, what: str) -> ChannelClosedError:
        if self.error is not None:
            error = ChannelClosedError(
                f"cannot {what}: the link failed ({type(self.error).__name__}: {self.error})"
            )
            error.__cause__ = self.error
            return error
        if self.closeCode is not None and not self.closedHere:
            reason = f": {self.closeReason}" if self.closeReason else ""
            return SessionClosed(
                f"cannot {what}: the server closed the link ({self.closeCode.name}{reason})",
                self.closeCode,
                self.closeReason or "",
            )
        return ChannelClosedError(f"cannot {what}: the link is closed")

    def runUntil(self, done: Callable[[], bool], deadline: float | None, what: str) -> None:
        """
        Read and handle frames, queueing the values that arrive for
        C{recvBuffer}, until C{done()} (a capability got what its caller
        waits for).

        @param done: Whether to stop.
        @param deadline: When to give up waiting.
        @param what: What the caller does, for the error if the link ends.
        @raise OperationTimedOut: C{done()} did not become true in time.
        @raise ChannelClosedError: The link ended first.
        """
        if self.core.out:
            self.flush(deadline)
        while not done():
            event = self.processOne(self.maxFrame)
            if event is _NEED_DATA:
                self.fill(deadline)
            elif type(event) is ValueReceived:
                self.core.queue.push(event.value, event.size)
            elif self.ended and not done():
                raise self.closedError(what)

    def poll(self) -> int:
        """
        Handle what has arrived, without waiting (see L{Link.poll}).

        @return: How many values are queued.
        """
        self.nextPoll = time.monotonic() + _POLL_INTERVAL
        queue = self.core.queue
        if self.ended or self.error is not None:
            return len(queue)
        self.tryFlush()
        budget = self.limits.maxSize
        while not self.ended and queue.queuedBytes <= budget:
            event = self.processOne(self.maxFrame)
            if event is _NEED_DATA:
                try:
                    self.fill(IMMEDIATELY)
                except OperationTimedOut:
                    break
            elif type(event) is ValueReceived:
                queue.push(event.value, event.size)
        return len(queue)

    def closeCleanly(self, deadline: float | None) -> None:
        """
        Send the close record and wait for the reply, queueing the values
        that arrive meanwhile; then close the socket.
        """
        self.ended = self.closedHere = True
        try:
            self.core.close(CloseCode.NORMAL, "")
            self.flush(deadline)
            while not self.closedCleanly:
                event = self.nextEvent(deadline, self.maxFrame)
                if type(event) is ValueReceived:
                    self.core.queue.push(event.value, event.size)
        except (NetStructerError, OSError) as e:
            _log.debug("closing %s was not clean: %s", self.core.peer, e)
        finally:
            self.io.close()


def _fromSession(name: str) -> Any:
    """
    A read-only attribute of a L{Link} that is its session's.
    """
    return property(lambda self: getattr(self._session, name))


def _linkLimits(limits: Limits | None, maxBufferSize: int | None) -> Limits:
    if limits is None:
        limits = DEFAULT_LIMITS
    if maxBufferSize is not None:
        limits = replace(limits, maxSize=maxBufferSize)
    return limits


class Link(_ValueChannel):
    """
    A blocking NetStructer connection: the client end of a session, over a
    plain socket (or any connected stream socket).

    Make one with L{link}, or wrap a socket you connected yourself with
    C{Link(sock, key)}.  Either way the handshake has completed, and the
    server has proved it holds the key, when you get it.

    The link is the socket adapter of the session core
    (L{netstructer.session.core.SessionCore}), which the Twisted protocol
    adapts too: the link only moves bytes, waits with timeouts, and turns
    the core's events into return values and exceptions.

    Not thread-safe: use one link per thread, or guard it with a lock.
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
        closeTimeout: float = DEFAULT_SHUTDOWN_GRACE,
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
        self._timeout = _checkTimeout(timeout)
        try:
            if handshakeTimeout is None:
                handshakeTimeout = (
                    self._timeout if self._timeout is not None else _DEFAULT_HANDSHAKE_TIMEOUT
                )
            config = BridgeConfig(
                keyring=asKeyring(key),
                suite=suite,
                cipher=cipher,
                limits=_linkLimits(limits, maxBufferSize),
                handshakeTimeout=max(handshakeTimeout, 0.001),
                keepAliveInterval=None,
                shutdownGrace=closeTimeout if closeTimeout > 0 else DEFAULT_SHUTDOWN_GRACE,
                protocolVersion=protocolVersion,
            )
            self._session = _LinkSession(sock, config, closeTimeout)
            self._streams = LinkStreams(self._session, config, _NEED_DATA)
            self._session.handshake(deadlineAfter(handshakeTimeout), handshakeTimeout)
        except BaseException:
            SocketIO(sock).close()
            raise

    def __repr__(self) -> str:
        state = "open" if self.open else "closed"
        return f"<Link {self._session.io.describePeer()} {state}>"

    @property
    def open(self) -> bool:
        """
        Whether values can still be sent: the link has not been closed by
        either side and has not failed.
        """
        return not self._session.ended and self._session.error is None

    suite: str = _fromSession("suite")
    """The suite the handshake agreed, e.g. C{"noise (AESGCM)"}."""
    peerMaxValueSize: int = _fromSession("peerMaxValueSize")
    """The largest encoded value the server accepts."""
    closeCode: CloseCode | None = _fromSession("closeCode")
    """The server's close code, once it has closed the link."""
    closeReason: str | None = _fromSession("closeReason")
    """The server's close reason (may be empty), once it has closed the link."""
    closedCleanly: bool = _fromSession("closedCleanly")
    """
    Whether both close records were exchanged and every value this link
    sent is known to have been processed: after this side's close, once the
    server's reply arrived; after the server's close, only if this link had
    sent no value.  To know that every value sent was processed, close from
    this side.
    """

    @property
    def valuesSent(self) -> int:
        """
        Values this link has sent.
        """
        return self._session.core.valuesOut

    @property
    def protocolVersion(self) -> int | None:
        """
        The protocol version negotiated with the server.
        """
        return self._session.core.protocolVersion

    @property
    def records(self) -> CapabilityRouter:
        """
        The capabilities attached to this link, by the record types they own.
        """
        return self._session.core.capabilities

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

    def TimeOut(self, seconds: float | None) -> None:
        """The original package's name for L{settimeout}."""
        self.settimeout(seconds)

    def _deadline(self, timeout: float | None) -> float | None:
        if timeout is None and self._timeout is None:
            return None
        return deadlineAfter(self._timeout if timeout is None else timeout)

    # Sending.

    def _checkSend(self) -> None:
        session = self._session
        session.checkOpen("send")
        if time.monotonic() >= session.nextPoll:
            # Now and then, read what the server sent, so that a sender that
            # never reads still answers pings and learns of a close.
            self.poll()
            session.checkOpen("send")

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
        @raise ConnectionBroken: The connection broke (the server's process
            died, or the connection was reset); the link is closed.
        @raise RemoteProtocolError: Looking for the server's pings (about
            once a second), the link found the server broke the protocol;
            the link is closed.
        """
        self._checkSend()
        session = self._session
        deadline = self._deadline(timeout)
        core = session.core
        out = core.out
        sendmsg = session.io.sendmsg
        if sendmsg is None or out or (type(value) is bytes and len(value) > _SMALL_VALUE):
            # A large value is sealed in the channel's reused buffer and
            # written from there; what a timeout leaves of it is copied.
            core.sender.sendValueAlone(value)
            try:
                session.flush(deadline)
            finally:
                out.settleBorrowed()
            return
        # The common case: prefix and frame in one sendmsg, with no queue in
        # between.
        frame = core.channel.sendValue(value)
        core.sender.valuesOut += 1
        session.io.setDeadline(deadline)
        try:
            sent = sendmsg((_PREFIX.pack(len(frame)), frame))
        except (InterruptedError, *WOULD_BLOCK):
            sent = 0
        except OSError as e:
            raise session.connectionFailed(e) from e
        except BaseException:
            session.writeInterrupted()
            raise
        if sent < 4 + len(frame):
            out.frame(frame)
            out.advance(sent)
            session.flush(deadline)

    def sendBuffers(self, values: Iterable[object], timeout: float | None = None) -> int:
        """
        Send several values, in order, with as few writes as possible: much
        faster than one L{sendBuffer} per value for a stream of small values
        (each L{sendBuffer} is a system call).  Small values travel in
        batches, one record each.

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
        self._checkSend()
        session = self._session
        deadline = self._deadline(timeout)
        sender = session.core.sender
        out = session.core.out
        before = sender.valuesOut
        try:
            for value in values:
                sender.sendValue(value)
                if len(out) >= _MAX_IOV or out.borrowed is not None:
                    session.flush(deadline)
        finally:
            # The values before one refused are sent.
            sender.flush()
            try:
                if out and session.error is None:
                    session.flush(deadline)
            finally:
                out.settleBorrowed()
        return sender.valuesOut - before

    def sendRecord(self, recordType: int, body: bytes, timeout: float | None = None) -> None:
        """
        Send one extension record after every value sent before it.  For
        the capabilities' adapters, not applications.

        @param timeout: As for L{sendBuffer}.
        @raise PeerVersionError: The server negotiated an older version.
        @raise ChannelClosedError: The link is closed or has failed.
        """
        self._session.checkOpen("send")
        self._session.core.sender.sendRecord(recordType, body)
        self._session.flush(self._deadline(timeout))

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
        @raise ConnectionBroken: The connection ended without the server's
            close record: values may have been lost.
        @raise RemoteProtocolError: The server broke the protocol (a record
            failed authentication, a value could not be decoded, ...); the
            link is closed.
        """
        session = self._session
        if session.core.queue:
            return session.nextQueued(maxSize)
        session.checkOpen("receive")
        deadline = self._deadline(timeout)
        if session.core.out:
            session.flush(deadline)
        limit = session.frameLimit(maxSize)
        processOne = session.processOne
        while True:
            event = processOne(limit)
            if event is _NEED_DATA:
                session.fill(deadline)
            elif type(event) is ValueReceived:
                if maxSize is not None and event.size > maxSize:
                    session.tooBig(event.size, maxSize)
                return event.value
            elif event is _QUEUED:
                return session.nextQueued(maxSize)
            elif session.ended:
                raise session.closedError("receive")

    def poll(self) -> int:
        """
        Without waiting, read what has arrived: answer the server's pings,
        notice its close, and queue the values for L{recvBuffer}.  Call it
        now and then in a script that otherwise stays idle for long, so that
        the server's keep-alive pings are answered.

        @return: How many values are queued for L{recvBuffer}.
        @raise RemoteProtocolError: The server broke the protocol; the link
            is closed.
        @raise ConnectionBroken: The connection ended without the server's
            close record.
        """
        return self._session.poll()

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
        session = self._session
        if session.ended or session.error is not None:
            session.ended = True
            return
        if timeout is None:
            timeout = self._timeout if self._timeout is not None else session.closeTimeout
        session.closeCleanly(deadlineAfter(timeout))

    # Streams (netstructer.blocking._streams).

    def sendFile(
        self,
        path: os.PathLike[str] | str,
        meta: object = None,
        *,
        progress: Progress | None = None,
        resume: bool = False,
        timeout: float | None = None,
    ) -> StreamReceipt:
        """
        Send a file as a stream, as L{sendStream} does (C{meta} defaults to
        C{{"name": its name}}); with C{resume}, the server may go on from the
        part an interrupted transfer left, checked by its SHA-256.
        """
        meta = {"name": os.path.basename(path)} if meta is None else meta
        return self._streams.send(path, meta, None, resume, progress, deadlineAfter(timeout))

    def sendStream(
        self,
        file: BinaryIO,
        meta: object = None,
        *,
        size: int | None = None,
        progress: Progress | None = None,
        timeout: float | None = None,
    ) -> StreamReceipt:
        """
        Send a binary file's bytes (from its position) as a stream, beside
        the values, and return the server's L{StreamReceipt} (bytes received,
        SHA-256).  C{progress(sent, size)} is called as it goes; C{timeout}
        bounds the whole transfer (the default waits while it progresses).

        @raise StreamError: It failed (refused, too large, timed out).
        """
        return self._streams.send(file, meta, size, False, progress, deadlineAfter(timeout))

    def recvStream(self, timeout: float | None = None) -> IncomingStreamReader:
        """
        Wait for the next stream the server sends; read it (C{read(n)},
        iteration), save it (C{saveTo(path)}) or refuse it.

        @raise OperationTimedOut: None arrived in time.
        """
        return self._streams.receive(self._deadline(timeout), self._timeout)

    # The relay (netstructer.relay.client): requests and relayed values.

    def _relayRequest(self, request: Callable[[], None], timeout: float | None) -> None:
        session = self._session
        session.checkOpen("send")
        request()
        session.flush(self._deadline(timeout))

    def _pollRelay(self) -> None:
        # As sendBuffer does: now and then, read what the server sent, so
        # that a sender that never reads still learns of its failures.
        if time.monotonic() >= self._session.nextPoll:
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
        relay = self._session.relay
        self._relayRequest(lambda: relay.sendTo(name, value), timeout)

    def publish(self, topic: str, value: object, timeout: float | None = None) -> None:
        """
        Send a value through the server to every subscriber of C{topic}.

        @raise RelayError: As for L{sendTo}.
        """
        self._pollRelay()
        relay = self._session.relay
        self._relayRequest(lambda: relay.publish(topic, value), timeout)

    def subscribe(self, topic: str, timeout: float | None = None) -> None:
        """
        Receive, through L{recvFrom}, what is published to C{topic}.

        @raise RelayError: As for L{sendTo}.
        """
        relay = self._session.relay
        self._relayRequest(lambda: relay.subscribe(topic), timeout)

    def unsubscribe(self, topic: str, timeout: float | None = None) -> None:
        """
        Stop receiving C{topic}.

        @raise RelayError: As for L{sendTo}.
        """
        relay = self._session.relay
        self._relayRequest(lambda: relay.unsubscribe(topic), timeout)

    def recvFrom(self, timeout: float | None = None) -> tuple[str | None, object]:
        """
        Receive the next value relayed to this link, with the same timeout
        semantics as L{recvBuffer} (values that are not relayed and arrive
        in the meantime are queued for L{recvBuffer}).

        @return: C{(sender, value)}; the sender is L{None} for a value the
            server published.
        @raise RelayError: An earlier relay request failed.
        @raise OperationTimedOut: Nothing was relayed in time.
        @raise ChannelClosedError: The link is closed.
        """
        session = self._session
        client = session.relay.client
        relayed = client.nextRelayed()
        if relayed is None:
            session.checkOpen("receive")
            session.runUntil(
                lambda: bool(client.received or client.errors), self._deadline(timeout), "receive"
            )
            relayed = client.nextRelayed()
            if relayed is None:  # pragma: no cover (runUntil returns with one)
                raise session.closedError("receive")
        return relayed.sender, relayed.value


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
    closeTimeout: float = DEFAULT_SHUTDOWN_GRACE,
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
    deadline = deadlineAfter(timeout)
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
