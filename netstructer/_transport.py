# -*- test-case-name: tests.test_protocol -*-
"""
How L{BridgeProtocol<netstructer.protocol.BridgeProtocol>} writes to its
Twisted transport: the frames a session core queued, held back while
received data is handled and then sent straight to the socket, and the
transport's write flow as a producer.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable
from typing import Final, Protocol

from twisted.internet import defer
from twisted.internet.abstract import FileDescriptor
from twisted.internet.interfaces import IAddress, IPushProducer
from zope.interface import implementer

__all__ = ["IMMEDIATE_WRITE_LIMIT", "TransportWriter", "WriteFlow", "noDelay"]

_PREFIX: Final = struct.Struct("!I")

IMMEDIATE_WRITE_LIMIT: Final = 64 * 1024
"""The most bytes held back while received data is handled, to send them
straight to the socket afterwards instead of through the transport's buffer.
Beyond that, writes are limited by bandwidth, not by the latency of one more
reactor iteration, and must reach the transport's buffer, whose size pauses
writers."""


class Transport(Protocol):
    """
    What a L{BridgeProtocol<netstructer.protocol.BridgeProtocol>} uses of
    its transport: a TCP, TLS or UNIX transport (L{ITransport
    <twisted.internet.interfaces.ITransport>},
    L{IConsumer<twisted.internet.interfaces.IConsumer>},
    L{IPushProducer}, and C{abortConnection}).
    """

    def write(self, data: bytes) -> None: ...

    def writeSequence(self, data: Iterable[bytes | memoryview]) -> None: ...

    def loseConnection(self) -> None: ...

    def abortConnection(self) -> None: ...

    def getPeer(self) -> IAddress: ...

    def registerProducer(self, producer: IPushProducer, streaming: bool) -> None: ...

    def unregisterProducer(self) -> None: ...

    def pauseProducing(self) -> None: ...

    def resumeProducing(self) -> None: ...


def bufferingDescriptor(transport: object) -> FileDescriptor | None:
    """
    The transport as a L{FileDescriptor} whose write buffer may be bypassed
    (a TCP or UNIX connection of one of the select/poll/epoll/kqueue
    reactors), or L{None} for any other transport (TLS, IOCP, test
    transports).

    Bypassing the buffer needs to know whether it is empty, which
    L{FileDescriptor} keeps in C{dataBuffer}, C{offset} and
    C{_tempDataLen}: a descriptor without them is not used.

    @param transport: The protocol's transport.
    @return: The descriptor, or L{None}.
    """
    if isinstance(transport, FileDescriptor) and all(
        hasattr(transport, name) for name in ("_tempDataLen", "dataBuffer", "offset")
    ):
        return transport
    return None


def writeBufferEmpty(descriptor: FileDescriptor) -> bool:
    """
    Whether C{descriptor} holds no unwritten data, is not closing, and sends
    what is written to it to its socket unchanged (not through TLS, which
    L{startTLS<twisted.internet.interfaces.ITLSTransport.startTLS>} can
    start at any time).
    """
    return (
        not descriptor._tempDataLen
        and descriptor.offset == len(descriptor.dataBuffer)
        and bool(descriptor.connected)
        and not descriptor.disconnecting
        and not getattr(descriptor, "TLS", False)
    )


def noDelay(transport: object) -> None:
    """
    Turn Nagle's algorithm off on a TCP transport (under TLS too), as the
    blocking client does: records are whole messages, and a small one must
    not wait for the peer's delayed acknowledgement of the previous one
    (about 40 ms on Linux).  Other transports are left alone.
    """
    while transport is not None:
        setNoDelay = getattr(transport, "setTcpNoDelay", None)
        if callable(setNoDelay):
            try:
                setNoDelay(True)
            except OSError:
                # Not a socket that takes the option (a UNIX socket behind a
                # wrapper): nothing to tune.
                return
            return
        transport = getattr(transport, "transport", None)


class TransportWriter:
    """
    Writes framed bytes to a Twisted transport.

    While received data is handled (between L{cork} and L{uncork}), what is
    written is held back, up to L{IMMEDIATE_WRITE_LIMIT} bytes, and then
    sent to the socket at once, together (see L{sendNow}).  Past that limit
    (an application sending many values, or a large one, from a callback of
    a received value), what was held back and every later write go through
    the transport's buffer, so that its size pauses writers as usual.  At
    other times, writes go through the transport's buffer, without being
    copied.

    @ivar descriptor: The transport as a L{FileDescriptor} whose buffer may
        be bypassed, or L{None} (see L{bufferingDescriptor}).
    """

    def __init__(self, transport: Transport) -> None:
        self._transport = transport
        self.descriptor = bufferingDescriptor(transport)
        self._corked: list[bytes | memoryview] | None = None
        self._corkedSize = 0

    @property
    def corked(self) -> bool:
        """
        Whether writes are being held back.
        """
        return self._corked is not None

    def cork(self) -> bool:
        """
        Hold writes back, when the transport allows sending them straight
        to its socket afterwards.

        @return: Whether writes are now held back by this call (and the
            caller must call L{uncork}).
        """
        if self.descriptor is None or self._corked is not None:
            return False
        self._corked = []
        self._corkedSize = 0
        return True

    def uncork(self, frame: bytes | None = None) -> None:
        """
        Send what was held back, at once (see L{sendNow}).

        @param frame: One more frame payload to send after it (its length
            prefix is added), or L{None}.
        """
        corked, self._corked = self._corked, None
        if frame is not None:
            if corked is None:
                corked = []
            corked.append(_PREFIX.pack(len(frame)))
            corked.append(frame)
        if corked:
            self.sendNow(corked)

    def write(self, chunks: Iterable[bytes | memoryview], size: int) -> None:
        """
        Write chunks (held back while corked, within the limit).

        @param chunks: The length prefixes and frames, in order.
        @param size: Their total size.
        """
        corked = self._corked
        if corked is not None:
            total = self._corkedSize + size
            if total <= IMMEDIATE_WRITE_LIMIT:
                corked.extend(chunks)
                self._corkedSize = total
                return
            # Over the limit: what was held back goes first, and the rest of
            # this handling writes through the transport's buffer.
            if corked:
                self._transport.writeSequence(corked)
                corked.clear()
            self._corked = []
            self._corkedSize = IMMEDIATE_WRITE_LIMIT
        self._transport.writeSequence(chunks)

    def writeBorrowed(self, framed: memoryview) -> None:
        """
        Write a frame held in a buffer its channel reuses (a large value's):
        straight to the socket, as much as it takes, when nothing waits in
        the transport's buffer, and the rest (or all of it, otherwise)
        copied into the transport's buffer, since the view is valid only
        until the next large value is sealed.  Frames held back go first.

        @param framed: The length prefix and the frame.
        """
        if self._corked:
            self.sendHeldBack()
        descriptor = self.descriptor
        sent = 0
        if descriptor is not None and writeBufferEmpty(descriptor):
            total = len(framed)
            while sent < total:
                written = descriptor.writeSomeData(framed[sent:])  # type: ignore[arg-type]
                if not isinstance(written, int) or written <= 0:
                    # The socket is full, or failed: the transport reports a
                    # failure when it next writes.
                    break
                sent += written
        if sent < len(framed):
            self._transport.write(bytes(framed[sent:]))

    def sendHeldBack(self) -> None:
        """
        Send what is held back now (the transport is about to close).
        """
        corked = self._corked
        if corked:
            chunks = list(corked)
            corked.clear()
            self.sendNow(chunks)

    def sendNow(self, chunks: list[bytes | memoryview]) -> None:
        """
        Send frames in one C{send}, before returning to the reactor.

        A L{FileDescriptor} buffers every write until the reactor's next
        iteration finds the socket writable: each reply would cost an
        C{epoll_ctl} to start watching for writability, an C{epoll_wait}
        that returns at once, and an C{epoll_ctl} to stop watching, on top
        of the C{send}; for a small value, that is most of the time its
        round trip spends outside the application.  So when nothing written
        before waits in the transport's buffer, the frames go to the socket
        now, with the descriptor's own C{writeSomeData}.  What the socket
        does not take goes to the transport's buffer, as do all the frames
        on an error, which the transport then reports as usual (by losing
        the connection).

        The frames leave together, as they would through the transport's
        buffer: sending the first at once and the others later would let
        Nagle's algorithm hold those back until the peer acknowledges the
        first, which it may delay.

        @param chunks: The length prefixes and frames, in order.
        """
        data = b"".join(chunks)
        descriptor = self.descriptor
        if descriptor is not None and writeBufferEmpty(descriptor):
            sent = descriptor.writeSomeData(data)
            if isinstance(sent, int):
                if sent >= len(data):
                    return
                data = data[sent:]
        self._transport.write(data)

    def bufferEmpty(self) -> bool:
        """
        Whether everything written has left the transport's buffer for the
        socket's (L{False} if the transport cannot tell).
        """
        descriptor = self.descriptor
        return descriptor is not None and writeBufferEmpty(descriptor)

    def forget(self) -> None:
        """
        The transport is being aborted: nothing may be sent past it, and
        nothing held back is sent.  (An aborted descriptor still looks
        connected until the reactor delivers C{connectionLost}.)
        """
        self.descriptor = None
        if self._corked:
            self._corked.clear()


@implementer(IPushProducer)
class WriteFlow:
    """
    Registered with the transport as its streaming producer, so the protocol
    learns when the transport's write buffer is full and when it drains.

    @ivar paused: Whether the transport asked writers to pause.
    """

    def __init__(
        self,
        paused: Callable[[], None] | None = None,
        resumed: Callable[[], None] | None = None,
    ) -> None:
        """
        @param paused: Called when the transport pauses writers.
        @param resumed: Called when it resumes them.
        """
        self.paused = False
        self._waiting: list[defer.Deferred[None]] = []
        self._onPaused = paused
        self._onResumed = resumed

    def pauseProducing(self) -> None:
        if not self.paused and self._onPaused is not None:
            self._onPaused()
        self.paused = True

    def resumeProducing(self) -> None:
        wasPaused = self.paused
        self.paused = False
        if wasPaused and self._onResumed is not None:
            self._onResumed()
        waiting, self._waiting = self._waiting, []
        for d in waiting:
            d.callback(None)

    def stopProducing(self) -> None:
        self.resumeProducing()

    def whenWritable(self) -> defer.Deferred[None]:
        """
        @return: A Deferred that fires at once if the transport accepts
            writes, or when it next drains.
        """
        if not self.paused:
            return defer.succeed(None)
        d: defer.Deferred[None] = defer.Deferred(self._waiting.remove)
        self._waiting.append(d)
        return d
