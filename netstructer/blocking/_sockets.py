# -*- test-case-name: tests.test_blocking -*-
"""
The socket side of the blocking link: deadlines as socket timeouts, writes
of a session core's output queue (several frames per C{sendmsg}), and reads
straight into the buffers of a L{FrameReader
<netstructer.session.framing.FrameReader>}.
"""

from __future__ import annotations

import socket
import ssl
import struct
import time
from collections.abc import Callable, Iterable
from typing import Final

from netstructer.errors import OperationTimedOut
from netstructer.session.outgoing import OutputQueue

_PREFIX: Final = struct.Struct("!I")
_SMALL_FRAME: Final = 64 * 1024
"""Without C{sendmsg}, chunks up to this size are joined before a write."""

_MAX_IOV: Final = 512
"""The most chunks handed to one C{sendmsg}."""

IMMEDIATELY: Final = float("-inf")
"""A deadline that has passed: write what the socket takes, never wait."""

WOULD_BLOCK: Final = (BlockingIOError, TimeoutError, ssl.SSLWantReadError, ssl.SSLWantWriteError)


def deadlineAfter(timeout: float | None) -> float | None:
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


class _Unset:
    """
    The type of L{_UNSET}: a socket timeout not yet set.
    """


_UNSET: Final = _Unset()


class WriteInterrupted(Exception):
    """
    A write was interrupted (by Ctrl-C) without saying how much it wrote:
    the stream is in an unknown state.
    """


class SocketIO:
    """
    One connected stream socket, with deadlines.

    @ivar sock: The socket.
    """

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._timeout: object = _UNSET
        sendmsg = getattr(sock, "sendmsg", None)
        self.sendmsg: Callable[[Iterable[bytes | memoryview]], int] | None = (
            None if isinstance(sock, ssl.SSLSocket) else sendmsg
        )

    def describePeer(self) -> str:
        """
        @return: The peer's address as C{"host:port"} (C{"[host]:port"} for
            IPv6), or C{"(unconnected)"}.
        """
        try:
            peer = self.sock.getpeername()
        except (OSError, AttributeError):
            return "(unconnected)"
        if isinstance(peer, tuple) and len(peer) >= 2:
            host, port = peer[0], peer[1]
            return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
        return str(peer)

    def setDeadline(self, deadline: float | None) -> None:
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
        if wanted != self._timeout:
            self.sock.settimeout(wanted)
            self._timeout = wanted

    def write(self, out: OutputQueue, deadline: float | None) -> None:
        """
        Write the output queue, dropping what the socket took.

        @param deadline: When to give up (L{IMMEDIATELY}: write what the
            socket takes without waiting).
        @raise OperationTimedOut: The deadline passed first; the rest stays
            queued.
        @raise WriteInterrupted: A write was interrupted mid-way.
        @raise OSError: The connection failed.
        """
        sendmsg = self.sendmsg
        chunks = out.chunks()
        while chunks:
            self.setDeadline(deadline)
            try:
                if sendmsg is not None:
                    sent = sendmsg(chunks if len(chunks) <= _MAX_IOV else list(chunks)[:_MAX_IOV])
                else:
                    if len(chunks) > 1 and len(chunks[0]) < _SMALL_FRAME:
                        out.coalesceFront(_SMALL_FRAME)
                    sent = self.sock.send(chunks[0])
            except InterruptedError:
                continue
            except WOULD_BLOCK:
                raise OperationTimedOut(
                    f"writing to {self.describePeer()} did not complete in time; the "
                    "unsent bytes stay queued and are written first by the next call"
                ) from None
            except OSError:
                raise
            except BaseException as e:
                raise WriteInterrupted() from e
            out.advance(sent)

    def readInto(self, target: memoryview, deadline: float | None) -> int | None:
        """
        Read once.

        @param target: Where to read to.
        @param deadline: When to give up waiting.
        @return: How many bytes arrived (0 at the end of the stream), or
            L{None} if the read was interrupted by a signal and should be
            tried again.
        @raise OperationTimedOut: Nothing arrived in time; nothing is lost.
        @raise OSError: The connection failed.
        """
        self.setDeadline(deadline)
        try:
            return self.sock.recv_into(target)
        except InterruptedError:
            return None
        except WOULD_BLOCK:
            raise OperationTimedOut(
                f"nothing arrived from {self.describePeer()} in time; nothing was consumed"
            ) from None
        except ssl.SSLZeroReturnError:
            return 0

    def close(self) -> None:
        """
        Shut the socket down both ways and close it.
        """
        sock = self.sock
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except (OSError, AttributeError):
            pass
        sock.close()
