"""
A real Redis server for the cluster's tests: L{RedisServer} starts
C{redis-server} on a free loopback port, without persistence (C{--save ''
--appendonly no}), in a temporary directory; waits (bounded) until it
answers C{PING}; and stops it (or kills it, or restarts it on the same
port).  L{redisServerPath} finds the program, and raises L{SkipTest} with
the way to install it only when it truly cannot be found.

CI installs the program (C{.ci/run}: C{apt-get install redis-server}).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from twisted.trial.unittest import SkipTest

START_DEADLINE = 10.0
"""Seconds a server has to answer after it was started."""

STOP_DEADLINE = 5.0
"""Seconds a server has to exit after SIGTERM, before it is killed."""


def redisServerPath() -> str:
    """
    @return: The path of C{redis-server}.
    @raise SkipTest: It is not installed.
    """
    found = shutil.which("redis-server")
    if found is None:
        for candidate in ("/usr/bin/redis-server", "/usr/local/bin/redis-server"):
            if os.access(candidate, os.X_OK):
                found = candidate
                break
    if found is None:
        raise SkipTest(
            "redis-server is not installed, so the cluster's tests against a real Redis "
            "are skipped (install it: apt-get install redis-server)"
        )
    return found


def freePort() -> int:
    """
    @return: A TCP port free on 127.0.0.1 now.
    """
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def command(port: int, *args: str | bytes, timeout: float = 5.0) -> bytes:
    """
    Send one command to a Redis server and read its whole reply (for
    tests: a reply that fits in one read of 1 MiB, after a short wait).

    @return: The raw reply.
    """
    parts = [a.encode() if isinstance(a, str) else a for a in args]
    request = b"*%d\r\n" % len(parts) + b"".join(
        b"$%d\r\n%s\r\n" % (len(part), part) for part in parts
    )
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(request)
        reply = b""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            chunk = s.recv(1024 * 1024)
            if not chunk:
                break
            reply += chunk
            if reply.endswith(b"\r\n") and _complete(reply):
                break
        return reply


def _complete(reply: bytes) -> bool:
    if reply[:1] == b"$":
        length = int(reply[1 : reply.index(b"\r\n")])
        return length < 0 or len(reply) >= reply.index(b"\r\n") + 2 + length + 2
    return reply[:1] in (b"+", b"-", b":")


class RedisServer:
    """
    One C{redis-server} process on 127.0.0.1.

    @ivar port: Its port.
    @ivar directory: Its working directory.
    @ivar process: The process, while it runs.
    """

    def __init__(self, directory: Path, *, port: int | None = None, extra: tuple[str, ...] = ()):
        self.directory = Path(directory).resolve()
        self.directory.mkdir(parents=True, exist_ok=True)
        self.port = port if port is not None else freePort()
        self.extra = extra
        self.process: subprocess.Popen[bytes] | None = None
        self._log = self.directory / "redis.log"

    @property
    def url(self) -> str:
        """
        The server's URL (database 0).
        """
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        """
        Start the server and wait until it answers.

        @raise AssertionError: It did not answer within L{START_DEADLINE}.
        """
        program = redisServerPath()
        args = [
            program,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(self.directory),
            "--logfile",
            str(self._log),
            *self.extra,
        ]
        self.process = subprocess.Popen(args, cwd=self.directory)
        deadline = time.monotonic() + START_DEADLINE
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"redis-server exited at once: {self.logText()}")
            try:
                # Any answer will do (a server with a password answers NOAUTH).
                if command(self.port, "PING", timeout=0.5)[:1] in (b"+", b"-"):
                    return self
            except OSError:
                pass
            time.sleep(0.05)
        self.kill()
        raise AssertionError(f"redis-server did not answer within {START_DEADLINE} s")

    def logText(self) -> str:
        """
        @return: The server's log.
        """
        try:
            return self._log.read_text(errors="replace")
        except OSError:
            return ""

    def stop(self) -> None:
        """
        Stop the server (SIGTERM, then SIGKILL after L{STOP_DEADLINE}).
        """
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(STOP_DEADLINE)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(STOP_DEADLINE)

    def kill(self) -> None:
        """
        Kill the server (SIGKILL).
        """
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.kill()
            process.wait(STOP_DEADLINE)

    def restart(self) -> None:
        """
        Kill the server and start a new, empty one on the same port.
        """
        self.kill()
        self.start()

    def info(self, section: str) -> dict[str, str]:
        """
        @return: The fields of one section of C{INFO}.
        """
        reply = command(self.port, "INFO", section)
        text = reply.split(b"\r\n", 1)[1].decode()
        fields = {}
        for line in text.splitlines():
            if ":" in line and not line.startswith("#"):
                name, _, value = line.partition(":")
                fields[name] = value
        return fields
