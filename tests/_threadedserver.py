"""
A small server on a thread of the test process, for the conformance kit's
tests: it serves one connection at a time until stopped, and a subclass
says what it does with each (L{ThreadedServer.handle}), usually a
L{netstructer.channel.Channel} of the server role with one defect.
"""

from __future__ import annotations

import socket
import struct
import threading

from netstructer.conformance import readExactly
from netstructer.errors import NetStructerError

U32 = struct.Struct(">I")


class ThreadedServer:
    """
    @ivar key: The key it accepts.
    @ivar mode: The defect its subclass plays (C{"good"} for none).
    @ivar port: The port it listens on, on 127.0.0.1.
    """

    connectionTimeout = 5.0
    """Seconds each read and write of a connection may take."""

    dropped: tuple[type[BaseException], ...] = (OSError, NetStructerError)
    """What ends a connection quietly: it broke the protocol or went away."""

    def __init__(self, key: bytes, mode: str) -> None:
        self.key = key
        self.mode = mode
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(8)
        self.listener.settimeout(0.2)
        self.port = self.listener.getsockname()[1]
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        """
        Stop accepting, and wait for the thread (at most 10 seconds).
        """
        self.stopping.set()
        self.thread.join(10)
        self.listener.close()

    def handle(self, connection: socket.socket) -> None:
        """
        Serve one connection; returning ends it.
        """
        raise NotImplementedError

    def read(self, connection: socket.socket, count: int) -> bytes | None:
        """
        @return: C{count} bytes, or L{None} if the client ended first.
        """
        return readExactly(connection, count)

    def _serve(self) -> None:
        while not self.stopping.is_set():
            try:
                connection, _ = self.listener.accept()
            except TimeoutError:
                continue
            with connection:
                connection.settimeout(self.connectionTimeout)
                try:
                    self.handle(connection)
                except self.dropped:
                    # The connection ended or broke the protocol: drop it.
                    pass
