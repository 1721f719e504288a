# -*- test-case-name: tests.test_hostile -*-
"""
Hostile peers against a real server process on loopback.

Each test class starts one real C{twistd -n netstructer} process (found
from the repository on C{PYTHONPATH}, as in L{tests.test_twistd}) on a free
127.0.0.1 port, with a temporary key file, small limits (a 2-second
handshake timeout, 50 sessions, 20 per IP address, a 1-second keep-alive)
and a recording echo handler (L{HANDLER_SOURCE}), and kills it when the
class is done.  Each test then runs one attack from a raw stdlib socket
(L{RawPeer}; one that authenticates drives a sans-IO
L{Channel<netstructer.channel.Channel>} over it), while a well-behaved
blocking client (L{Checker}, over L{netstructer.blocking.link}) keeps
doing round trips, and checks that:

    - the checker's round trips keep succeeding during the attack, and a
      fresh connection is served after it;
    - the server's memory stays bounded: its resident set size (from
      C{/proc/PID/status}), sampled every few milliseconds during the
      attack, stays within L{RSS_BOUND} of what it was before;
    - the hostile connection is cut within its limit: the time until the
      server closed or reset it is read from the socket's TCP state
      (C{TCP_INFO}), so that measuring it never reads what the server
      wrote;
    - one log line names the peer (C{ip:port}) and the reason;
    - nothing a hostile peer sent reached the handler, where that is the
      point (a replayed session, a record with a flipped bit).

The attacks and their measurements are module-level functions
(L{HOSTILE_CASES}, L{runCase}) shared with C{benchmarks/reliability.py},
which publishes the figures in C{docs/reliability.rst}.

Every wait has a deadline, every socket a timeout, and the server process
is killed when its class ends, even after a failure.
"""

from __future__ import annotations

import os
import re
import resource
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from twisted.trial.unittest import SynchronousTestCase

from netstructer.blocking import Link, link
from netstructer.channel import (
    PROTOCOL_VERSION,
    Channel,
    HandshakeCompleted,
    RecordReceived,
    Role,
)
from netstructer.errors import (
    AuthenticationError,
    HandshakeError,
    NetStructerError,
    OperationTimedOut,
    RecipientBusy,
    RelayRefused,
)
from netstructer.keys import ENVIRONMENT_VARIABLE, Keyring, generateKey, keyFileLine, writeKeyFile
from netstructer.relay import RELAY_DELIVER, deliverBody
from netstructer.streams.wire import (
    STREAM_ABORT,
    STREAM_DATA,
    STREAM_END,
    STREAM_OPEN,
    AbortCode,
    StreamAbort,
    StreamAccept,
    StreamRecord,
    abortBody,
    dataHeader,
    endBody,
    openBody,
    parseRecord,
)
from netstructer.values import encode

__all__ = [
    "HANDLER_SOURCE",
    "HOSTILE_CASES",
    "HOSTILE_OPTIONS",
    "RSS_BOUND",
    "STREAM_CASES",
    "Attack",
    "CaseResult",
    "CaseSpec",
    "Checker",
    "CheckerReport",
    "RawPeer",
    "ServerProcess",
    "raiseFileLimit",
    "runCase",
    "runStreamCase",
]

REPO = Path(__file__).resolve().parent.parent

TWISTD = [sys.executable, "-c", "from twisted.scripts.twistd import run; run()"]
"""C{twistd}, run by this interpreter."""

HANDSHAKE_TIMEOUT = 2.0
KEEP_ALIVE = 1.0
MAX_SESSIONS = 50
MAX_PER_IP = 20

HOSTILE_OPTIONS: tuple[str, ...] = (
    "--handshake-timeout",
    str(HANDSHAKE_TIMEOUT),
    "--max-sessions",
    str(MAX_SESSIONS),
    "--max-per-ip",
    str(MAX_PER_IP),
    "--keep-alive",
    str(KEEP_ALIVE),
)
"""The server options of the hostile-peer tests: small limits."""

RSS_BOUND = 50 * 1024 * 1024
"""How much the server's resident set may grow during one attack."""

START_DEADLINE = 30.0
STOP_DEADLINE = 20.0
LOG_DEADLINE = 3.0

RECORD_VARIABLE = "NETSTRUCTER_TEST_RECORD"

HANDLER_MODULE = "nstest_handler"

HANDLER_SOURCE = '''\
"""
The handler of the hostile-peer and fault tests: echoes every value (it is
an EchoHandler, with its backpressure), and appends to the file named by
$NETSTRUCTER_TEST_RECORD, flushed at once, one line for each session that
opens or closes (with the registry's count of sessions) and for each value
that is a list whose first item is "REC".  A list whose second item is
"quiet" is recorded and not echoed.  SlowRecorder also stops reading for
2 ms after each value.
"""

import os

from netstructer.handlers import EchoHandler


class Recorder(EchoHandler):
    """
    Echo, and record sessions and "REC" values.
    """

    def __init__(self):
        super().__init__()
        self._file = open(os.environ["NETSTRUCTER_TEST_RECORD"], "a", buffering=1)

    def _write(self, line):
        self._file.write(line + "\\n")
        self._file.flush()

    def _count(self, session):
        registry = getattr(session.factory, "registry", None)
        return registry.count() if registry is not None else -1

    def sessionOpened(self, session):
        self._write(f"open {session.key} {self._count(session)}")

    def bufferReceived(self, session, value):
        if type(value) is list and value and value[0] == "REC":
            self._write(f"value {session.key} {value[1:]!r}")
            if len(value) > 1 and value[1] == "quiet":
                return
        super().bufferReceived(session, value)

    def sessionClosed(self, session, reason):
        self._write(f"closed {session.key} {self._count(session)} {reason.type.__name__}")


class SlowRecorder(Recorder):
    """
    A slow consumer with backpressure: after each value, stop reading from
    the peer for 2 ms.
    """

    def bufferReceived(self, session, value):
        super().bufferReceived(session, value)
        if session.closeReason is None:
            session.pauseReceiving()
            session.clock.callLater(0.002, session.resumeReceiving)


class Saver(Recorder):
    """
    Echo and record as Recorder does, and save the streams clients send in
    ./saved (the save:DIR handler).
    """

    def __init__(self):
        super().__init__()
        from netstructer.handlers import SaveHandler

        self._saver = SaveHandler(os.path.join(os.getcwd(), "saved"))

    def streamReceived(self, session, meta, stream):
        return self._saver.streamReceived(session, meta, stream)
'''
"""The source of the recording handler module the test servers load."""

_PREFIX = struct.Struct("!I")
_TCP_ESTABLISHED = 1
_LISTENING = re.compile(r"NetStructer server listening on 127\.0\.0\.1:(\d+)")


def raiseFileLimit() -> None:
    """
    Raise this process's soft limit of open files to its hard limit.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def peerKey(sock: socket.socket) -> str:
    """
    @param sock: A connected socket of this process.
    @return: The key (C{"ip:port"}) the server knows the socket by.
    """
    host, port = sock.getsockname()[:2]
    return f"{host}:{port}"


def rssOf(pid: int) -> int:
    """
    @param pid: A running process.
    @return: Its resident set size in bytes (C{VmRSS}).
    @raise ProcessLookupError: The process is gone.
    """
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except FileNotFoundError:
        raise ProcessLookupError(pid) from None
    raise ProcessLookupError(pid)


class ServerProcess:
    """
    A real C{twistd -n netstructer} process with the recording handler.

    @ivar home: Its temporary home and working directory.
    @ivar key: The key it accepts.
    @ivar port: The port it listens on.
    @ivar process: The process.
    @ivar logPath: Where its log goes.
    @ivar recordPath: The recording handler's file.
    """

    def __init__(
        self,
        home: Path,
        options: Sequence[str] = HOSTILE_OPTIONS,
        *,
        port: int = 0,
        handler: str = f"{HANDLER_MODULE}:Recorder",
        key: bytes | None = None,
        wait: bool = True,
    ) -> None:
        """
        Start the server and (by default) wait until it listens.

        @param home: A directory for its files (created if missing).
        @param options: Extra options of C{twistd netstructer}.
        @param port: The port; 0 picks a free one (read from the log).
        @param handler: The C{--handler} option.
        @param key: The key to use; a new one by default.
        @param wait: Whether to wait until it listens; if not, poll
            L{listening} (and C{port} must not be 0).
        @raise AssertionError: It did not start listening in time.
        """
        self.home = home
        home.mkdir(parents=True, exist_ok=True)
        keyFile = home / "server.key"
        if key is None:
            self.key = writeKeyFile(keyFile)
        else:
            self.key = key
            keyFile.write_bytes(key + b"\n")
            keyFile.chmod(0o600)
        (home / f"{HANDLER_MODULE}.py").write_text(HANDLER_SOURCE)
        self.recordPath = home / "records.txt"
        self.recordPath.touch()
        self.logPath = home / f"twistd-{time.monotonic_ns()}.log"
        env = {
            name: value
            for name, value in os.environ.items()
            if name not in (ENVIRONMENT_VARIABLE, "XDG_CONFIG_HOME", "PYTHONPATH")
        }
        env.update(
            HOME=str(home),
            PYTHONPATH=os.pathsep.join([str(REPO), str(home)]),
            **{RECORD_VARIABLE: str(self.recordPath)},
        )
        argv = [
            *TWISTD,
            "-n",
            "--pidfile=",
            "netstructer",
            "--port",
            str(port),
            "--key-file",
            str(keyFile),
            "--handler",
            handler,
            *options,
        ]
        with open(self.logPath, "wb") as log:
            self.process = subprocess.Popen(
                argv,
                env=env,
                cwd=home,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.port = port
        if not wait:
            return
        try:
            self.port = self._waitListening(time.monotonic() + START_DEADLINE)
        except BaseException:
            self.kill()
            raise

    def listening(self) -> bool:
        """
        @return: Whether the server has logged that it listens.
        """
        return _LISTENING.search(self.log()) is not None

    def _waitListening(self, deadline: float) -> int:
        """
        Wait for the log line saying where the server listens.

        @param deadline: When to give up (C{time.monotonic()}).
        @return: The port.
        @raise AssertionError: The process exited, or the deadline passed.
        """
        while True:
            match = _LISTENING.search(self.log())
            if match is not None:
                return int(match.group(1))
            if self.process.poll() is not None:
                raise AssertionError(
                    f"twistd exited with status {self.process.returncode} before "
                    f"listening:\n{self.log()}"
                )
            if time.monotonic() > deadline:
                raise AssertionError(f"twistd did not listen within {START_DEADLINE} s")
            time.sleep(0.02)

    @property
    def pid(self) -> int:
        """
        The server's process id.
        """
        return self.process.pid

    def rss(self) -> int:
        """
        @return: The server's resident set size in bytes.
        """
        return rssOf(self.process.pid)

    def log(self) -> str:
        """
        @return: What the server logged so far.
        """
        return self.logPath.read_text(errors="replace")

    def records(self) -> list[str]:
        """
        @return: The lines the recording handler wrote so far.
        """
        return self.recordPath.read_text(errors="replace").splitlines()

    def waitForLog(self, peer: str, reason: str, deadline: float) -> str | None:
        """
        Wait for a log line naming C{peer} and matching C{reason}.

        @param peer: The peer's C{ip:port}.
        @param reason: A regular expression the line must match.
        @param deadline: When to give up (C{time.monotonic()}).
        @return: The line, or L{None} if none appeared in time.
        """
        pattern = re.compile(reason)
        needle = f"{peer}:" if peer.count(":") == 1 else peer
        while True:
            for line in self.log().splitlines():
                # "127.0.0.1:5555:" or "127.0.0.1:5555 " so that port 555
                # does not match port 5555.
                if (needle in line or f"{peer} " in line) and pattern.search(line):
                    return line
            if time.monotonic() > deadline:
                return None
            time.sleep(0.02)

    def waitForRecord(self, pattern: str, deadline: float) -> str | None:
        """
        Wait for a line of the recording handler matching C{pattern}.

        @param pattern: A regular expression.
        @param deadline: When to give up (C{time.monotonic()}).
        @return: The line, or L{None} if none appeared in time.
        """
        compiled = re.compile(pattern)
        while True:
            for line in self.records():
                if compiled.search(line):
                    return line
            if time.monotonic() > deadline:
                return None
            time.sleep(0.01)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = STOP_DEADLINE) -> int:
        """
        Send C{sig} and wait for the process to exit (killing it after
        C{timeout} seconds).

        @return: Its exit status.
        """
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                return self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.process.returncode

    def kill(self) -> None:
        """
        Kill the process if it still runs, and reap it.
        """
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=STOP_DEADLINE)


class RawPeer:
    """
    A client on a plain socket, with timeouts: it writes whatever it is
    told to, and can authenticate by driving a sans-IO
    L{Channel<netstructer.channel.Channel>} itself.

    @ivar sock: The socket.
    @ivar key: The C{ip:port} the server knows it by.
    @ivar connectedAt: When it connected (C{time.monotonic()}).
    @ivar connectSeconds: How long connecting took.
    """

    def __init__(
        self,
        port: int,
        *,
        source: str = "127.0.0.1",
        receiveBuffer: int | None = None,
        timeout: float = 5.0,
    ) -> None:
        """
        Connect.

        @param port: The server's port on 127.0.0.1.
        @param source: The local address to connect from (any of 127/8).
        @param receiveBuffer: C{SO_RCVBUF}, set before connecting.
        @param timeout: The socket's timeout.
        """
        started = time.monotonic()
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            self.sock.settimeout(timeout)
            if receiveBuffer is not None:
                self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receiveBuffer)
            # Without it, a small write after the handshake waits up to
            # 40 ms for the server's delayed ACK (Nagle's algorithm), and
            # the cut would seem that much slower.
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.sock.bind((source, 0))
            self.sock.connect(("127.0.0.1", port))
        except BaseException:
            self.sock.close()
            raise
        self.connectedAt = time.monotonic()
        self.connectSeconds = self.connectedAt - started
        self.key = peerKey(self.sock)

    def send(self, data: bytes) -> bool:
        """
        Write C{data}.

        @return: Whether it was all written (C{False} if the server cut
            the connection first).
        """
        try:
            self.sock.sendall(data)
        except OSError:
            return False
        return True

    def sendFrame(self, payload: bytes) -> bool:
        """
        Write one length-prefixed frame.

        @return: Whether it was written.
        """
        return self.send(_PREFIX.pack(len(payload)) + payload)

    def _readExactly(self, size: int) -> bytes:
        """
        Read exactly C{size} bytes (within the socket's timeout).

        @raise EOFError: The connection ended first.
        """
        chunks = bytearray()
        while len(chunks) < size:
            chunk = self.sock.recv(size - len(chunks))
            if not chunk:
                raise EOFError(f"the server closed after {len(chunks)} of {size} bytes")
            chunks += chunk
        return bytes(chunks)

    def readFrame(self) -> bytes:
        """
        Read one frame (within the socket's timeout).

        @return: Its payload.
        @raise EOFError: The connection ended first.
        """
        (length,) = _PREFIX.unpack(self._readExactly(4))
        if length > 1 << 20:
            raise AssertionError(f"the server sent a frame of {length} bytes")
        return self._readExactly(length)

    def handshake(self, key: bytes | Keyring) -> Channel:
        """
        Authenticate as a NetStructer client.

        @param key: The key, or a keyring (its first key is used).
        @return: The established channel (its key confirmation is sent).
        """
        channel = Channel(Role.CLIENT, key)
        for frame in channel.framesToSend():
            self.sendFrame(frame)
        event = channel.receiveFrame(self.readFrame())
        if not isinstance(event, HandshakeCompleted):
            raise AssertionError(f"the handshake did not complete: {event!r}")
        for frame in channel.framesToSend():
            self.sendFrame(frame)
        return channel

    def state(self) -> int:
        """
        @return: The socket's TCP state (C{1} is established).
        """
        info = self.sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 8)
        return info[0]

    def cut(self) -> bool:
        """
        @return: Whether the server has closed or reset the connection.
        """
        return self.state() != _TCP_ESTABLISHED

    def waitForCut(self, since: float, deadline: float) -> float | None:
        """
        Wait until the server closes or resets the connection, without
        reading from it.

        @param since: When to count from (C{time.monotonic()}).
        @param deadline: When to give up.
        @return: The seconds from C{since} to the cut, or L{None} if it was
            not cut by the deadline.
        """
        while not self.cut():
            if time.monotonic() > deadline:
                return None
            time.sleep(0.0005)
        return max(time.monotonic() - since, 0.0)

    def close(self) -> None:
        """
        Close the socket.
        """
        self.sock.close()


class CutWatcher:
    """
    Watches many L{RawPeer}s in a thread, noting when each is cut, so that
    a connection blocked for a while (a SYN the kernel dropped and resent)
    delays no other's measurement.
    """

    def __init__(self) -> None:
        """
        Start watching, with no peer yet.
        """
        self._peers: list[RawPeer] = []
        self._cuts: dict[int, float] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="cuts", daemon=True)
        self._thread.start()

    def add(self, peer: RawPeer) -> None:
        """
        Watch C{peer} from now on.
        """
        with self._lock:
            self._peers.append(peer)

    def _poll(self) -> bool:
        """
        Note the peers cut since the last poll.

        @return: Whether every peer added so far is cut.
        """
        now = time.monotonic()
        with self._lock:
            peers = list(enumerate(self._peers))
        for i, peer in peers:
            if i not in self._cuts and peer.cut():
                self._cuts[i] = now - peer.connectedAt
        return len(self._cuts) == len(peers)

    def _run(self) -> None:
        """
        Poll every 2 ms until stopped.
        """
        while not self._stop.wait(0.002):
            self._poll()

    def wait(self, deadline: float) -> list[float | None]:
        """
        Wait until every peer is cut, or the deadline, and stop watching.

        @return: For each peer, in the order added, the seconds from its
            connection to its cut, or L{None} if it was not cut in time.
        """
        while not self._poll() and time.monotonic() < deadline:
            time.sleep(0.01)
        self.stop()
        return [self._cuts.get(i) for i in range(len(self._peers))]

    def stop(self) -> None:
        """
        Stop watching (before the peers' sockets are closed).
        """
        self._stop.set()
        if self._thread is not threading.current_thread():
            self._thread.join(5)


@dataclass
class CheckerReport:
    """
    What a L{Checker} saw.

    @ivar roundTrips: Round trips that succeeded.
    @ivar failures: What went wrong, if anything.
    @ivar latencies: Seconds each round trip took.
    """

    roundTrips: int = 0
    failures: list[str] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)

    @property
    def worst(self) -> float:
        """
        The slowest round trip, in seconds.
        """
        return max(self.latencies, default=0.0)


class Checker:
    """
    A well-behaved client doing round trips with the echo handler in a
    thread, while an attack runs: each value must come back, equal.

    @ivar report: What it saw.
    """

    def __init__(
        self,
        port: int,
        key: bytes,
        *,
        reconnectEvery: int | None = 10,
        pause: float = 0.02,
        deadline: float = 60.0,
    ) -> None:
        """
        @param port: The server's port.
        @param key: The server's key.
        @param reconnectEvery: Open a new connection after this many round
            trips (L{None}: keep one).
        @param pause: Seconds between round trips.
        @param deadline: Seconds after which the thread stops anyway.
        """
        self._port = port
        self._key = key
        self._reconnectEvery = reconnectEvery
        self._pause = pause
        self._deadline = time.monotonic() + deadline
        self._stop = threading.Event()
        self._warm = threading.Event()
        self._thread = threading.Thread(target=self._run, name="checker", daemon=True)
        self.report = CheckerReport()

    def _link(self) -> Link:
        """
        @return: A new authenticated link to the server.
        """
        return link(("127.0.0.1", self._port), self._key, timeout=5)

    def roundTrip(self, bridge: Link, n: int) -> None:
        """
        One round trip on C{bridge}, recorded in L{report}.
        """
        value = ["check", n, b"x" * 32]
        started = time.perf_counter()
        bridge.sendBuffer(value)
        reply = bridge.recvBuffer()
        self.report.latencies.append(time.perf_counter() - started)
        if reply != value:
            self.report.failures.append(f"sent {value!r}, got {reply!r}")
        else:
            self.report.roundTrips += 1

    def _run(self) -> None:
        """
        Make round trips until stopped or the deadline, recording failures.
        """
        bridge: Link | None = None
        n = 0
        try:
            bridge = self._link()
            while not self._stop.is_set() and time.monotonic() < self._deadline:
                self.roundTrip(bridge, n)
                self._warm.set()
                n += 1
                if self._reconnectEvery and n % self._reconnectEvery == 0:
                    bridge.close()
                    bridge = self._link()
                self._stop.wait(self._pause)
        except Exception as e:  # noqa: BLE001 (reported, and the test fails)
            self.report.failures.append(f"round trip {n}: {type(e).__name__}: {e}")
        finally:
            self._warm.set()
            if bridge is not None:
                bridge.close(timeout=2)

    def start(self) -> None:
        """
        Start, and wait for the first round trip.

        @raise AssertionError: It failed or took longer than 10 seconds.
        """
        self._thread.start()
        if not self._warm.wait(10) or self.report.failures:
            raise AssertionError(f"the checker could not start: {self.report.failures}")

    def stop(self) -> CheckerReport:
        """
        Stop, then do one round trip on a new connection.

        @return: The report.
        """
        self._stop.set()
        self._thread.join(10)
        if self._thread.is_alive():
            self.report.failures.append("the checker did not stop within 10 s")
        try:
            with self._link() as bridge:
                self.roundTrip(bridge, -1)
        except Exception as e:  # noqa: BLE001 (reported, and the test fails)
            self.report.failures.append(f"after the attack: {type(e).__name__}: {e}")
        return self.report


class RSSSampler:
    """
    Samples a process's resident set size every few milliseconds in a
    thread, keeping the peak.

    @ivar peak: The largest size seen, in bytes.
    """

    def __init__(self, pid: int, interval: float = 0.005) -> None:
        """
        Start sampling.

        @param pid: The process.
        @param interval: Seconds between samples.
        """
        self._pid = pid
        self._interval = interval
        self._stop = threading.Event()
        self.peak = rssOf(pid)
        self._thread = threading.Thread(target=self._run, name="rss", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        """
        Sample until stopped or the process is gone.
        """
        while not self._stop.wait(self._interval):
            try:
                self.peak = max(self.peak, rssOf(self._pid))
            except ProcessLookupError:
                return

    def stop(self) -> int:
        """
        @return: The peak resident set size, in bytes.
        """
        self._stop.set()
        self._thread.join(5)
        return self.peak


@dataclass
class Attack:
    """
    What an attack did and how the server answered.

    @ivar cut: Seconds until the server cut the hostile connection(s) (the
        slowest, if several); L{None} if one was not cut in time.
    @ivar logs: For each hostile peer whose cut must be logged, its
        C{ip:port} and a regular expression for the reason.
    @ivar detail: Figures worth publishing (C{"name": "value"}).
    @ivar problems: Anything that went wrong (a value that reached the
        handler, an unexpected answer).
    """

    cut: float | None
    logs: list[tuple[str, str]]
    detail: dict[str, str] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class CaseSpec:
    """
    One hostile case.

    @ivar name: Its name in the published table.
    @ivar load: What the attack does, for the table.
    @ivar attack: Runs it against a server.
    @ivar cutLimit: The most seconds the cut may take.
    @ivar reconnect: Whether the checker opens new connections while the
        attack runs (not while a flood fills the server's limits).
    """

    name: str
    load: str
    attack: Callable[[ServerProcess], Attack]
    cutLimit: float
    reconnect: bool = True


@dataclass
class CaseResult:
    """
    The measured outcome of a L{CaseSpec}.

    @ivar spec: The case.
    @ivar attack: What the attack reported.
    @ivar checker: What the well-behaved client saw.
    @ivar rssBefore: The server's resident set before, in bytes.
    @ivar rssPeak: Its peak during the attack.
    @ivar rssAfter: It after.
    @ivar logLines: The log line found for each expected peer and reason
        (L{None} where none was).
    @ivar tracebacks: Whether the server's log holds a traceback.
    """

    spec: CaseSpec
    attack: Attack
    checker: CheckerReport
    rssBefore: int
    rssPeak: int
    rssAfter: int
    logLines: list[str | None]
    tracebacks: bool

    @property
    def rssGrowth(self) -> int:
        """
        The peak growth of the resident set during the attack, in bytes.
        """
        return max(self.rssPeak, self.rssAfter) - self.rssBefore

    def problems(self) -> list[str]:
        """
        @return: Every way the case failed its checks; empty if it passed.
        """
        problems = list(self.attack.problems)
        if self.checker.failures:
            problems.append(f"the checker failed: {self.checker.failures}")
        if self.checker.roundTrips < 2:
            problems.append(f"the checker made only {self.checker.roundTrips} round trips")
        if self.attack.cut is None:
            problems.append("a hostile connection was not cut")
        elif self.attack.cut > self.spec.cutLimit:
            problems.append(
                f"the hostile connection was cut after {self.attack.cut:.3f} s, "
                f"over the {self.spec.cutLimit} s limit"
            )
        if self.rssGrowth >= RSS_BOUND:
            problems.append(f"the server's memory grew by {self.rssGrowth} bytes")
        for (peer, reason), line in zip(self.attack.logs, self.logLines, strict=True):
            if line is None:
                problems.append(f"no log line names {peer} and matches {reason!r}")
        if self.tracebacks:
            problems.append("the server logged a traceback")
        return problems


def runCase(server: ServerProcess, spec: CaseSpec) -> CaseResult:
    """
    Run one attack against C{server} while a L{Checker} makes round trips,
    sampling the server's memory.

    @param server: The server.
    @param spec: The case.
    @return: What was measured.
    """
    rssBefore = server.rss()
    sampler = RSSSampler(server.pid)
    checker = Checker(server.port, server.key, reconnectEvery=10 if spec.reconnect else None)
    try:
        checker.start()
        attack = spec.attack(server)
    finally:
        report = checker.stop()
        rssPeak = sampler.stop()
    rssAfter = server.rss()
    deadline = time.monotonic() + LOG_DEADLINE
    logLines = [server.waitForLog(peer, reason, deadline) for peer, reason in attack.logs]
    log = server.log()
    return CaseResult(
        spec=spec,
        attack=attack,
        checker=report,
        rssBefore=rssBefore,
        rssPeak=rssPeak,
        rssAfter=rssAfter,
        logLines=logLines,
        tracebacks="Traceback" in log or "Unhandled" in log,
    )


# The attacks.


def _singleCut(peer: RawPeer, since: float, limit: float) -> float | None:
    """
    Wait (up to C{limit} + 3 seconds) for C{peer} to be cut, then close it.
    """
    try:
        return peer.waitForCut(since, since + limit + 3.0)
    finally:
        peer.close()


def attackGarbage(server: ServerProcess) -> Attack:
    """
    Send an HTTP request instead of a handshake: its first four bytes read
    as a length of about 1.2 GB.
    """
    peer = RawPeer(server.port)
    since = time.monotonic()
    peer.send(b"GET / HTTP/1.1\r\nHost: netstructer\r\n\r\n")
    return Attack(_singleCut(peer, since, 1.0), [(peer.key, r"announced a frame of \d+ bytes")])


def attackGarbageFrame(server: ServerProcess) -> Attack:
    """
    Send a well-framed 200-byte frame of noise instead of a hello.
    """
    peer = RawPeer(server.port)
    since = time.monotonic()
    peer.sendFrame(os.urandom(200))
    return Attack(_singleCut(peer, since, 1.0), [(peer.key, r"not a NetStructer hello")])


def attackHugePrefix(server: ServerProcess) -> Attack:
    """
    Announce a frame of 2**31 - 1 bytes and send no body.
    """
    peer = RawPeer(server.port)
    since = time.monotonic()
    peer.send(_PREFIX.pack(2**31 - 1))
    return Attack(
        _singleCut(peer, since, 1.0), [(peer.key, r"announced a frame of 2147483647 bytes")]
    )


def attackTinyFramesBefore(server: ServerProcess) -> Attack:
    """
    Before authenticating, send 10 000 frames of one byte each.
    """
    peer = RawPeer(server.port)
    since = time.monotonic()
    peer.send(b"\x00\x00\x00\x01\x00" * 10_000)
    return Attack(_singleCut(peer, since, 1.0), [(peer.key, r"not a NetStructer hello")])


def attackTinyFramesAfter(server: ServerProcess) -> Attack:
    """
    Authenticate, then send 10 000 frames of one byte each.
    """
    peer = RawPeer(server.port)
    peer.handshake(server.key)
    since = time.monotonic()
    peer.send(b"\x00\x00\x00\x01\x00" * 10_000)
    return Attack(_singleCut(peer, since, 1.0), [(peer.key, r"record failed authentication")])


def attackSlowloris(server: ServerProcess) -> Attack:
    """
    Send a valid hello one byte every 0.2 seconds (never finishing within
    the handshake timeout).
    """
    peer = RawPeer(server.port)
    hello = Channel(Role.CLIENT, server.key).framesToSend()[0]
    data = _PREFIX.pack(len(hello)) + hello
    deadline = peer.connectedAt + HANDSHAKE_TIMEOUT + 3.0
    sent = 0
    cut = None
    try:
        for byte in data:
            if not peer.send(bytes((byte,))):
                break
            sent += 1
            cut = peer.waitForCut(peer.connectedAt, min(time.monotonic() + 0.2, deadline))
            if cut is not None or time.monotonic() > deadline:
                break
        if cut is None:
            cut = peer.waitForCut(peer.connectedAt, deadline)
    finally:
        peer.close()
    return Attack(
        cut,
        [(peer.key, r"did not complete within")],
        detail={"bytes sent": str(sent)},
    )


def attackSlowRecord(server: ServerProcess) -> Attack:
    """
    Authenticate, then send the frame of a 64 KiB value one byte every 0.2
    seconds: a partial frame is not activity, so the keep-alive must cut
    the peer.
    """
    peer = RawPeer(server.port)
    channel = peer.handshake(server.key)
    frame = channel.sendValue(b"\xa5" * 65536)
    data = _PREFIX.pack(len(frame)) + frame
    since = time.monotonic()
    deadline = since + 3 * KEEP_ALIVE + 3.0
    sent = 0
    cut = None
    try:
        for byte in data:
            if not peer.send(bytes((byte,))):
                break
            sent += 1
            cut = peer.waitForCut(since, min(time.monotonic() + 0.2, deadline))
            if cut is not None or time.monotonic() > deadline:
                break
        if cut is None:
            cut = peer.waitForCut(since, deadline)
    finally:
        peer.close()
    return Attack(
        cut,
        [(peer.key, r"no answer to a keep-alive ping")],
        detail={"bytes sent": str(sent)},
    )


def attackNonReader(server: ServerProcess) -> Attack:
    """
    Authenticate with a 4 KiB receive buffer, then send 64 KiB values to
    the echo handler and never read, until the socket stops taking them
    (or 256 MiB were sent).  The server's backpressure must stop reading
    from the peer, and its keep-alive must cut it.
    """
    peer = RawPeer(server.port, receiveBuffer=4096)
    channel = peer.handshake(server.key)
    value = b"\xa5" * 65536
    peer.sock.settimeout(0.5)
    sent = 0
    stalled = False
    deadline = time.monotonic() + 20.0
    while sent < 256 * 1024 * 1024 and time.monotonic() < deadline:
        frame = channel.sendValue(value)
        try:
            peer.sock.sendall(_PREFIX.pack(len(frame)) + frame)
        except TimeoutError:
            stalled = True
            break
        except OSError:
            break
        sent += len(frame) + 4
    since = time.monotonic()
    problems = [] if stalled else ["the socket never stopped taking values (no backpressure?)"]
    # Ping after one silent interval, drop after another: at most about
    # three intervals after the peer went silent.
    cut = _singleCut(peer, since, 3 * KEEP_ALIVE)
    return Attack(
        cut,
        [(peer.key, r"no answer to a keep-alive ping")],
        detail={"sent before the stall": f"{sent / 2**20:.1f} MiB"},
        problems=problems,
    )


def attackFlood(server: ServerProcess) -> Attack:
    """
    Open more connections than C{--max-per-ip} from each of 127.0.0.2 and
    127.0.0.3, then more than C{--max-sessions} allows from 127.0.0.4, and
    never send a byte.  Refused connections must be closed at once, the
    admitted ones at the handshake timeout.
    """
    peers: list[RawPeer] = []
    watcher = CutWatcher()
    try:
        for source, count in (("127.0.0.2", 25), ("127.0.0.3", 25), ("127.0.0.4", 15)):
            for _ in range(count):
                peer = RawPeer(server.port, source=source)
                peers.append(peer)
                watcher.add(peer)
        cuts = watcher.wait(time.monotonic() + HANDSHAKE_TIMEOUT + 4.0)
    finally:
        watcher.stop()
        for peer in peers:
            peer.close()
    refused = [
        (peer, cut) for peer, cut in zip(peers, cuts, strict=True) if cut is not None and cut < 1.0
    ]
    admitted = [
        (peer, cut) for peer, cut in zip(peers, cuts, strict=True) if (peer, cut) not in refused
    ]
    problems: list[str] = []
    logs: list[tuple[str, str]] = []
    perIP = [peer for peer, _ in refused if not peer.key.startswith("127.0.0.4:")]
    perServer = [peer for peer, _ in refused if peer.key.startswith("127.0.0.4:")]
    if len(perIP) < 10:
        problems.append(f"only {len(perIP)} connections were refused by --max-per-ip")
    else:
        logs.append((perIP[0].key, r"the maxPerIP limit"))
    if len(perServer) < 5:
        problems.append(f"only {len(perServer)} connections were refused by --max-sessions")
    else:
        logs.append((perServer[0].key, r"the maxSessions limit"))
    if admitted:
        logs.append((admitted[0][0].key, r"did not complete within"))
    allCuts = [cut for cut in cuts if cut is not None]
    slowest = None if len(allCuts) < len(cuts) else max(allCuts)
    return Attack(
        slowest,
        logs,
        detail={
            "connections": str(len(peers)),
            "refused": str(len(refused)),
            "refused within": f"{max((cut for _, cut in refused), default=0.0) * 1000:.0f} ms",
            "admitted, cut at the handshake timeout": str(len(admitted)),
            "slowest connect": f"{max(peer.connectSeconds for peer in peers) * 1000:.0f} ms",
        },
        problems=problems,
    )


class RecordingProxy:
    """
    Forwards one connection to the server in a thread, recording what the
    client sent.

    @ivar port: The port clients connect to.
    @ivar fromClient: What the client sent.
    """

    def __init__(self, serverPort: int, deadline: float = 15.0) -> None:
        """
        Listen on a free port and start forwarding in a thread.

        @param serverPort: The server's port.
        @param deadline: Seconds after which forwarding stops anyway.
        """
        self._serverPort = serverPort
        self._deadline = time.monotonic() + deadline
        self._listener = socket.socket()
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(1)
        self._listener.settimeout(5)
        self.port: int = self._listener.getsockname()[1]
        self.fromClient = bytearray()
        self._thread = threading.Thread(target=self._run, name="proxy", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        """
        Accept one client and forward both ways until both ends close.
        """
        try:
            client, _ = self._listener.accept()
        except OSError:
            return
        finally:
            self._listener.close()
        upstream = socket.create_connection(("127.0.0.1", self._serverPort), timeout=5)
        ends = {client: upstream, upstream: client}
        open_ = {client, upstream}
        try:
            while open_ and time.monotonic() < self._deadline:
                readable, _, _ = select.select(list(open_), [], [], 0.1)
                for sock in readable:
                    try:
                        data = sock.recv(65536)
                    except OSError:
                        data = b""
                    if not data:
                        open_.discard(sock)
                        try:
                            ends[sock].shutdown(socket.SHUT_WR)
                        except OSError:
                            pass
                        continue
                    if sock is client:
                        self.fromClient += data
                    ends[sock].sendall(data)
        finally:
            client.close()
            upstream.close()

    def join(self) -> None:
        """
        Wait for the forwarded connection to end (or the deadline).
        """
        self._thread.join(max(self._deadline - time.monotonic(), 0.0) + 1.0)


def attackReplay(server: ServerProcess) -> Attack:
    """
    Record a real session of the blocking client (two recorded values and
    their echoes, and a clean close), then replay what the client sent,
    byte for byte, in a new connection: nothing of it may reach the
    handler.
    """
    tag = f"replay-{time.monotonic_ns()}"
    proxy = RecordingProxy(server.port)
    with link(("127.0.0.1", proxy.port), server.key, timeout=5) as bridge:
        for n in (1, 2):
            value = ["REC", tag, n]
            bridge.sendBuffer(value)
            if bridge.recvBuffer() != value:
                raise AssertionError("the recorded session's echo differs")
    proxy.join()
    captured = bytes(proxy.fromClient)
    deadline = time.monotonic() + 5
    if server.waitForRecord(rf"{tag}', 2\]", deadline) is None:
        raise AssertionError("the recorded session's values were not recorded")
    before = len([line for line in server.records() if tag in line])
    peer = RawPeer(server.port)
    since = time.monotonic()
    peer.send(captured)
    cut = _singleCut(peer, since, 1.0)
    problems = []
    if before != 2:
        problems.append(f"the recorded session left {before} records, not 2")
    # Give a (wrongly) accepted replay time to reach the handler.
    server.waitForLog(peer.key, r"replayed", time.monotonic() + LOG_DEADLINE)
    after = [line for line in server.records() if tag in line]
    if len(after) != before:
        problems.append(f"the replay reached the handler: {after[before:]}")
    return Attack(
        cut,
        [(peer.key, r"key confirmation failed authentication.*replayed")],
        detail={"bytes replayed": str(len(captured))},
        problems=problems,
    )


def attackFlippedBits(server: ServerProcess) -> Attack:
    """
    Flip one bit of a hello (in one connection), and one bit of a value
    record after authenticating (in another): neither may reach the
    handler.
    """
    tag = f"flipped-{time.monotonic_ns()}"
    hello = bytearray(Channel(Role.CLIENT, server.key).framesToSend()[0])
    hello[20] ^= 0x04
    first = RawPeer(server.port)
    since = time.monotonic()
    first.sendFrame(bytes(hello))
    helloCut = _singleCut(first, since, 1.0)
    second = RawPeer(server.port)
    channel = second.handshake(server.key)
    record = bytearray(channel.sendValue(["REC", tag, 1]))
    record[len(record) // 2] ^= 0x10
    since = time.monotonic()
    second.sendFrame(bytes(record))
    recordCut = _singleCut(second, since, 1.0)
    server.waitForLog(second.key, r"record failed authentication", time.monotonic() + LOG_DEADLINE)
    leaked = [line for line in server.records() if tag in line]
    cuts = [helloCut, recordCut]
    return Attack(
        None if None in cuts else max(c for c in cuts if c is not None),
        [
            (first.key, r"hello failed authentication"),
            (second.key, r"record failed authentication"),
        ],
        problems=[f"a flipped record reached the handler: {leaked}"] if leaked else [],
    )


def attackWrongKey(server: ServerProcess) -> Attack:
    """
    Authenticate with another key: the server must reject it, saying why.
    """
    peer = RawPeer(server.port)
    channel = Channel(Role.CLIENT, generateKey())
    since = time.monotonic()
    for frame in channel.framesToSend():
        peer.sendFrame(frame)
    problems = []
    try:
        channel.receiveFrame(peer.readFrame())
    except AuthenticationError:
        pass
    except Exception as e:  # noqa: BLE001 (reported, and the test fails)
        problems.append(f"the rejection was not an authentication error: {e!r}")
    else:
        problems.append("the server accepted a wrong key")
    return Attack(
        _singleCut(peer, since, 1.0),
        [(peer.key, r"hello failed authentication")],
        problems=problems,
    )


def attackOldVersion(server: ServerProcess) -> Attack:
    """
    Send a hello of protocol version 0: the server must reject it, saying
    which version it speaks.
    """
    peer = RawPeer(server.port)
    channel = Channel(Role.CLIENT, server.key)
    hello = bytearray(channel.framesToSend()[0])
    hello[4] = 0
    since = time.monotonic()
    peer.sendFrame(bytes(hello))
    problems = []
    try:
        channel.receiveFrame(peer.readFrame())
    except AuthenticationError as e:
        problems.append(f"the rejection blamed the key: {e}")
    except HandshakeError as e:
        if f"version {PROTOCOL_VERSION}" not in str(e):
            problems.append(f"the rejection does not name the server's version: {e}")
    else:
        problems.append("the server accepted protocol version 0")
    return Attack(
        _singleCut(peer, since, 1.0),
        [(peer.key, r"speaks protocol version 0")],
        problems=problems,
    )


HOSTILE_CASES: tuple[CaseSpec, ...] = (
    CaseSpec("garbage", "an HTTP request instead of a hello", attackGarbage, 0.5),
    CaseSpec(
        "garbage frame", "a 200-byte frame of noise instead of a hello", attackGarbageFrame, 0.5
    ),
    CaseSpec("2^31 length prefix", "a length prefix of 2^31-1, no body", attackHugePrefix, 0.5),
    CaseSpec(
        "1-byte frames, before the handshake",
        "10 000 frames of 1 byte",
        attackTinyFramesBefore,
        0.5,
    ),
    CaseSpec(
        "1-byte frames, after the handshake",
        "10 000 frames of 1 byte",
        attackTinyFramesAfter,
        0.5,
    ),
    CaseSpec(
        "slowloris handshake",
        "a hello, 1 byte every 0.2 s",
        attackSlowloris,
        HANDSHAKE_TIMEOUT + 1.0,
    ),
    CaseSpec("replayed session", "a captured session, byte for byte", attackReplay, 0.5),
    CaseSpec("flipped bits", "1 bit of a hello; 1 bit of a record", attackFlippedBits, 0.5),
    CaseSpec("wrong key", "a hello under another key", attackWrongKey, 0.5),
    CaseSpec("old protocol version", "a hello of version 0", attackOldVersion, 0.5),
    CaseSpec(
        "slow record after the handshake",
        "a 64 KiB value's frame, 1 byte every 0.2 s",
        attackSlowRecord,
        3 * KEEP_ALIVE + 1.0,
    ),
    CaseSpec(
        "client that never reads",
        "64 KiB values to the echo handler, 4 KiB receive buffer, never read",
        attackNonReader,
        3 * KEEP_ALIVE + 1.0,
    ),
    CaseSpec(
        "connection flood",
        f"65 silent connections from 3 addresses (limits {MAX_PER_IP}/IP, {MAX_SESSIONS} in all)",
        attackFlood,
        HANDSHAKE_TIMEOUT + 1.0,
        reconnect=False,
    ),
)
"""Every hostile case, in the order of the published table."""

_CASES = {spec.attack.__name__: spec for spec in HOSTILE_CASES}


class _ServerTestCase(SynchronousTestCase):
    """
    Starts one server process for the class, and kills it when the class
    is done.
    """

    server: ClassVar[ServerProcess]

    @classmethod
    def setUpClass(cls) -> None:
        """
        Start the server.
        """
        raiseFileLimit()
        home = Path(tempfile.mkdtemp(prefix="nshostile-"))
        cls.addClassCleanup(shutil.rmtree, home, ignore_errors=True)
        cls.server = ServerProcess(home)
        cls.addClassCleanup(cls.server.kill)

    def check(self, attack: Callable[[ServerProcess], Attack]) -> CaseResult:
        """
        Run the case of C{attack} and assert that it passed.
        """
        result = runCase(self.server, _CASES[attack.__name__])
        self.assertEqual(result.problems(), [], f"log:\n{self.server.log()[-4000:]}")
        return result


class HandshakeAttackTests(_ServerTestCase):
    """
    Peers that do not, or cannot, authenticate.
    """

    def test_garbage(self) -> None:
        """
        An HTTP request instead of a hello is cut at once: its first bytes
        announce a frame far over the pre-authentication limit.
        """
        self.check(attackGarbage)

    def test_garbageFrame(self) -> None:
        """
        A well-framed frame of noise instead of a hello is cut at once.
        """
        self.check(attackGarbageFrame)

    def test_hugeLengthPrefix(self) -> None:
        """
        A length prefix of 2**31 - 1 with no body is cut at once, and the
        server allocates nothing for it.
        """
        self.check(attackHugePrefix)

    def test_tinyFramesBeforeHandshake(self) -> None:
        """
        A stream of 1-byte frames instead of a hello is cut at the first.
        """
        self.check(attackTinyFramesBefore)

    def test_tinyFramesAfterHandshake(self) -> None:
        """
        A stream of 1-byte frames after authenticating is cut at the
        first: no record is that short.
        """
        self.check(attackTinyFramesAfter)

    def test_slowloris(self) -> None:
        """
        A hello trickled one byte every 0.2 seconds is cut at the
        handshake timeout.
        """
        result = self.check(attackSlowloris)
        assert result.attack.cut is not None
        self.assertGreaterEqual(result.attack.cut, HANDSHAKE_TIMEOUT - 0.1)

    def test_replay(self) -> None:
        """
        A captured session replayed byte for byte in a new connection is
        cut at its key confirmation, and none of its values reaches the
        handler.
        """
        self.check(attackReplay)

    def test_flippedBits(self) -> None:
        """
        A hello, or a record, with one bit flipped is cut at once, and the
        record's value never reaches the handler.
        """
        self.check(attackFlippedBits)

    def test_wrongKey(self) -> None:
        """
        A hello under another key is rejected with an authentication
        error, and the connection closed.
        """
        self.check(attackWrongKey)

    def test_oldVersion(self) -> None:
        """
        A hello of protocol version 0 is rejected, naming the version the
        server speaks.
        """
        self.check(attackOldVersion)


class ResourceAttackTests(_ServerTestCase):
    """
    Peers that try to exhaust the server's memory or connections.
    """

    def test_nonReader(self) -> None:
        """
        A client that sends to the echo handler and never reads makes the
        server stop reading from it (its memory stays bounded), and is cut
        by the keep-alive.
        """
        self.check(attackNonReader)

    def test_slowRecord(self) -> None:
        """
        An authenticated peer trickling a record one byte every 0.2
        seconds is cut by the keep-alive: a partial frame is not activity.
        """
        self.check(attackSlowRecord)

    def test_flood(self) -> None:
        """
        Connections beyond C{--max-per-ip} and C{--max-sessions} are
        refused at once, each with a log line naming it and the limit;
        the admitted silent ones are cut at the handshake timeout; and an
        established session keeps working throughout.
        """
        self.check(attackFlood)


# The relay (docs/reliability.rst, "Hostile peers of the relay").

RELAY_NAMES = ("alice", "bob", "carol", "mallory", "admin")
RELAY_POLICY = "deny * send admin\nallow * * *\n"
RELAY_QUEUE = 16


@dataclass
class RelayResult:
    """
    What a relay attack measured, for the tests and the published table.

    @ivar case: The case's name.
    @ivar load: What the attacker did.
    @ivar notes: What happened, one phrase each.
    @ivar figures: Measured numbers, by name.
    """

    case: str
    load: str
    notes: list[str] = field(default_factory=list)
    figures: dict[str, float] = field(default_factory=dict)

    def summary(self) -> str:
        """
        @return: The table's result cell.
        """
        return "; ".join(self.notes)


class RelayServer:
    """
    A real C{twistd -n netstructer --relay} process with named keys, a
    policy that refuses sends to C{admin}, and small per-recipient queues.

    @ivar keys: Each name's key.
    @ivar process: The L{ServerProcess}.
    """

    def __init__(self, home: Path) -> None:
        home.mkdir(parents=True, exist_ok=True)
        self.keys = {name: generateKey() for name in RELAY_NAMES}
        policy = home / "relay.policy"
        policy.write_text(RELAY_POLICY)
        keyLines = "\n".join(keyFileLine(key, name) for name, key in self.keys.items())
        self.process = ServerProcess(
            home,
            (
                *HOSTILE_OPTIONS,
                "--relay-policy",
                str(policy),
                "--max-relay-queue",
                str(RELAY_QUEUE),
            ),
            key=keyLines.encode(),
        )

    def connect(self, name: str, receiveBuffer: int | None = None) -> Link:
        """
        A blocking link with C{name}'s key; C{receiveBuffer} shrinks its
        socket's receive buffer (a recipient that reads slowly).
        """
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if receiveBuffer is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receiveBuffer)
        sock.settimeout(10)
        sock.connect(("127.0.0.1", self.process.port))
        return Link(sock, self.keys[name], timeout=10)


def relayRefusedName(server: RelayServer) -> RelayResult:
    """
    C{mallory} sends to C{admin}, which the policy refuses.
    """
    result = RelayResult(
        "send to a refused name", "sendTo('admin', value) under 'deny * send admin'"
    )
    with server.connect("admin") as admin, server.connect("mallory") as mallory:
        started = time.monotonic()
        mallory.sendTo("admin", "let me in")
        try:
            mallory.recvFrom(timeout=10)
        except RelayRefused as e:
            elapsed = (time.monotonic() - started) * 1000
            result.notes.append(f"RelayRefused in {elapsed:.1f} ms: {e}")
        mallory.sendTo("mallory", "still open")
        result.notes.append(f"the session stays open: {mallory.recvFrom(timeout=10)!r} came back")
        try:
            admin.recvFrom(timeout=0.5)
            result.notes.append("admin RECEIVED the value")
        except OperationTimedOut:
            result.notes.append("admin received nothing")
    return result


def relayForgedSender(server: RelayServer) -> RelayResult:
    """
    C{mallory} sends a DELIVER record claiming to be C{alice}.
    """
    result = RelayResult(
        "forged sender name", "a DELIVER record (server to client only) naming alice as the sender"
    )
    with server.connect("bob") as bob, server.connect("mallory") as mallory:
        mallory.sendTo("bob", "who am I")
        result.notes.append(f"an ordinary send arrives as {bob.recvFrom(timeout=10)!r}")
        mallory.sendRecord(RELAY_DELIVER, deliverBody("alice", None, encode("forged")))
        try:
            mallory.recvFrom(timeout=10)
            result.notes.append("mallory's session was NOT closed")
        except (NetStructerError, OSError) as e:
            result.notes.append(f"mallory's session closed ({type(e).__name__})")
        try:
            bob.recvFrom(timeout=0.5)
            result.notes.append("bob RECEIVED a forged value")
        except OperationTimedOut:
            result.notes.append("bob received nothing forged")
        deadline = time.monotonic() + 5
        while "only a server sends" not in server.process.log() and time.monotonic() < deadline:
            time.sleep(0.02)
        result.notes.append(f"log: ``{_shortLog(server.process, 'only a server sends')}``")
    return result


def _shortLog(process: ServerProcess, needle: str) -> str:
    for line in process.log().splitlines():
        if needle in line:
            return re.sub(r"127\.0\.0\.1:\d+", "127.0.0.1:PORT", line.split("] ", 1)[-1])
    return "(not logged)"


def relayFloodSlowRecipient(
    server: RelayServer, count: int = 2000, size: int = 16384
) -> RelayResult:
    """
    C{mallory} floods C{bob}, whose 4 KiB receive buffer is never read,
    while C{alice} and C{carol} keep exchanging values.
    """
    result = RelayResult(
        "flood a slow recipient",
        f"{count} values of {size // 1024} KiB to a recipient that never reads (4 KiB receive"
        f" buffer), queue bound {RELAY_QUEUE}",
    )
    payload = b"x" * size
    with (
        server.connect("bob", receiveBuffer=4096),
        server.connect("mallory") as mallory,
        server.connect("alice") as alice,
        server.connect("carol") as carol,
    ):
        before = server.process.rss()
        peak = before
        slowest = 0.0
        trips = 0
        busy = 0
        for i in range(count):
            try:
                mallory.sendTo("bob", payload)
            except RecipientBusy as e:
                busy += e.count
                mallory.sendTo("bob", payload)
            if i % 100 == 0:
                started = time.monotonic()
                alice.sendTo("carol", i)
                if carol.recvFrom(timeout=10) == ("alice", i):
                    trips += 1
                slowest = max(slowest, time.monotonic() - started)
                peak = max(peak, server.process.rss())
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                mallory.recvFrom(timeout=0.5)
            except RecipientBusy as e:
                busy += e.count
            except OperationTimedOut:
                break
        peak = max(peak, server.process.rss())
        result.notes.append(
            f"{busy} drops reported to the sender as RecipientBusy (of {count} sent)"
        )
        result.notes.append(
            f"{trips} of {count // 100} round trips between two other clients OK"
            f" (slowest {slowest * 1000:.1f} ms)"
        )
        result.notes.append(f"server RSS +{(peak - before) // 1024} KiB at peak")
        result.figures.update(busy=busy, trips=trips, growth=peak - before)
    return result


RELAY_CASES = (relayRefusedName, relayForgedSender, relayFloodSlowRecipient)
"""The relay's hostile cases, in the order of the published table."""


class RelayAttackTests(SynchronousTestCase):
    """
    Hostile clients of the relay, against one real server process.
    """

    server: ClassVar[RelayServer]

    @classmethod
    def setUpClass(cls) -> None:
        """
        Start the server.
        """
        home = Path(tempfile.mkdtemp(prefix="nsrelay-"))
        cls.addClassCleanup(shutil.rmtree, home, ignore_errors=True)
        cls.server = RelayServer(home)
        cls.addClassCleanup(cls.server.process.kill)

    def test_refusedName(self) -> None:
        """
        A send the policy refuses gets RelayRefused naming the recipient;
        the sender's session stays open and the recipient gets nothing.
        """
        result = relayRefusedName(self.server)
        self.assertIn("RelayRefused", result.notes[0])
        self.assertIn("'admin'", result.notes[0])
        self.assertIn("'still open'", result.notes[1])
        self.assertEqual(result.notes[2], "admin received nothing")
        self.assertIn("Refused send from mallory for admin", self.server.process.log())

    def test_forgedSender(self) -> None:
        """
        A client cannot choose its sender name: an ordinary send carries
        its own, and a DELIVER record from a client fails its session, is
        logged, and reaches no one.
        """
        result = relayForgedSender(self.server)
        self.assertEqual(result.notes[0], "an ordinary send arrives as ('mallory', 'who am I')")
        self.assertIn("session closed", result.notes[1])
        self.assertEqual(result.notes[2], "bob received nothing forged")
        self.assertNotIn("(not logged)", result.notes[3])

    def test_floodSlowRecipient(self) -> None:
        """
        Flooding a recipient that never reads fills only its bounded queue:
        the drops are reported to the sender, other clients keep their
        round trips, and the server's memory stays bounded.
        """
        result = relayFloodSlowRecipient(self.server)
        figures = result.figures
        self.assertGreater(figures["busy"], 1000, result.summary())
        self.assertEqual(figures["trips"], 20, result.summary())
        self.assertLess(figures["growth"], RSS_BOUND, result.summary())


# Streams (docs/reliability.rst, "Hostile peers of streams").

STREAM_TIMEOUT = 2.0
STREAM_OPTIONS: tuple[str, ...] = (*HOSTILE_OPTIONS, "--stream-timeout", str(STREAM_TIMEOUT))
"""The options of the streams' hostile server: those above, and a 2-second
stream timeout."""


class StreamPeer:
    """
    An authenticated raw client that speaks the streams records itself
    (L{netstructer.streams.wire}), answering the server's pings.

    @ivar raw: Its socket.
    """

    def __init__(self, server: ServerProcess) -> None:
        self.raw = RawPeer(server.port)
        self.channel = self.raw.handshake(server.key)
        self.key = self.raw.key

    def send(self, recordType: int, body: bytes) -> bool:
        """
        Send one streams record.

        @return: Whether it was written.
        """
        return self.raw.sendFrame(self.channel.sendRecord(recordType, body))

    def next(self, deadline: float) -> StreamRecord | None:
        """
        The next streams record the server sends, answering its pings.

        @return: The record; L{None} if none came by C{deadline}.
        @raise EOFError: The server cut the connection.
        """
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            self.raw.sock.settimeout(remaining)
            try:
                frame = self.raw.readFrame()
            except TimeoutError:
                return None
            except OSError as e:
                raise EOFError(str(e)) from e
            event = self.channel.receiveFrame(frame)
            for pong in self.channel.framesToSend():
                self.raw.sendFrame(pong)
            if isinstance(event, RecordReceived):
                return parseRecord(event.recordType, event.body)

    def waitFor(self, kind: type[StreamRecord], deadline: float) -> StreamRecord | None:
        """
        @return: The next record of C{kind}, or L{None} by C{deadline}.
        @raise EOFError: The server cut the connection.
        """
        while True:
            record = self.next(deadline)
            if record is None or isinstance(record, kind):
                return record

    def open(self, streamID: int, name: str, size: int | None) -> bool:
        """
        Open a stream named C{name}.

        @return: Whether its OPEN was written.
        """
        return self.send(STREAM_OPEN, openBody(streamID, encode({"name": name}), size, False))

    def data(self, streamID: int, offset: int, payload: bytes) -> None:
        """
        Send a DATA record.
        """
        self.send(STREAM_DATA, dataHeader(streamID, offset) + payload)

    def close(self) -> None:
        self.raw.close()


@dataclass
class StreamAttack:
    """
    What a streams attack saw.

    @ivar answer: The server's answer, in words.
    @ivar seconds: How long the answer took.
    @ivar open: Whether the session was still open after it.
    @ivar logs: The peer and a regular expression for the log line.
    @ivar names: Names the attack used, which must not be left in the save
        directory (as files or parts).
    @ivar problems: Anything wrong.
    """

    answer: str
    seconds: float | None
    open: bool
    logs: list[tuple[str, str]]
    names: list[str]
    problems: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class StreamCaseSpec:
    """
    One hostile case of streams.

    @ivar name: Its name in the published table.
    @ivar load: What the attack does.
    @ivar attack: Runs it.
    @ivar limit: The most seconds the answer may take.
    @ivar keepsSession: Whether the session must stay open (only the
        stream fails) or be cut.
    """

    name: str
    load: str
    attack: Callable[[ServerProcess], StreamAttack]
    limit: float
    keepsSession: bool


@dataclass
class StreamCaseResult:
    """
    The measured outcome of a L{StreamCaseSpec}.
    """

    spec: StreamCaseSpec
    attack: StreamAttack
    checker: CheckerReport
    rssGrowth: int
    logLines: list[str | None]
    leftovers: list[str]
    tracebacks: bool

    def problems(self) -> list[str]:
        """
        @return: Every way the case failed its checks.
        """
        problems = list(self.attack.problems)
        if self.checker.failures:
            problems.append(f"the checker failed: {self.checker.failures}")
        if self.attack.seconds is None:
            problems.append("the server did not answer")
        elif self.attack.seconds > self.spec.limit:
            problems.append(f"the answer took {self.attack.seconds:.3f} s")
        if self.attack.open != self.spec.keepsSession:
            problems.append("the session was cut" if self.spec.keepsSession else "not cut")
        if self.rssGrowth >= RSS_BOUND:
            problems.append(f"the server's memory grew by {self.rssGrowth} bytes")
        for (peer, reason), line in zip(self.attack.logs, self.logLines, strict=True):
            if line is None:
                problems.append(f"no log line names {peer} and matches {reason!r}")
        if self.leftovers:
            problems.append(f"left in the save directory: {self.leftovers}")
        if self.tracebacks:
            problems.append("the server logged a traceback")
        return problems


def _stillOpen(peer: StreamPeer) -> bool:
    """
    Whether the session is open: the connection is not cut a moment later.
    """
    try:
        peer.next(time.monotonic() + 0.3)
    except EOFError:
        return False
    return not peer.raw.cut()


def _aborted(
    peer: StreamPeer, since: float, deadline: float, code: AbortCode, answer: bool = True
) -> StreamAttack:
    """
    Wait for the server's ABORT of stream 1 with C{code}; answer it, unless
    this side's last record of it was its END.
    """
    problems: list[str] = []
    try:
        record = peer.waitFor(StreamAbort, deadline)
    except EOFError:
        return StreamAttack("the session was cut", None, False, [], [], ["cut, not aborted"])
    seconds = time.monotonic() - since
    if not isinstance(record, StreamAbort):
        return StreamAttack("no ABORT", None, _stillOpen(peer), [], [], ["no ABORT came"])
    if record.code is not code:
        problems.append(f"aborted with {record.code.name}, not {code.name}")
    if answer:
        peer.send(STREAM_ABORT, abortBody(record.streamID, record.code))
    said = f"ABORT {record.code.name} ({record.reason!r})"
    return StreamAttack(said, seconds, _stillOpen(peer), [], [], problems)


def attackStreamTooLong(server: ServerProcess) -> StreamAttack:
    """
    Open a stream announcing 1000 bytes and send 2000.
    """
    peer = StreamPeer(server)
    try:
        peer.open(1, "too-long.bin", 1000)
        if peer.waitFor(StreamAccept, time.monotonic() + 5) is None:
            return StreamAttack("not accepted", None, True, [], [], ["the OPEN was not accepted"])
        since = time.monotonic()
        peer.data(1, 0, b"\xa5" * 2000)
        attack = _aborted(peer, since, since + 5, AbortCode.TOO_LARGE)
    finally:
        peer.close()
    attack.logs = [(peer.key, r"more than the 1000 bytes it announced")]
    attack.names = ["too-long.bin"]
    return attack


def attackStreamUnknown(server: ServerProcess) -> StreamAttack:
    """
    Send DATA for a stream never opened.
    """
    peer = StreamPeer(server)
    since = time.monotonic()
    peer.data(99, 0, b"\xa5" * 1000)
    cut = peer.raw.waitForCut(since, since + 5)
    peer.close()
    return StreamAttack(
        "the server closed the connection" if cut is not None else "nothing",
        cut,
        cut is None,
        [(peer.key, r"for stream 99, which it never opened")],
        [],
    )


def attackStreamTooMany(server: ServerProcess) -> StreamAttack:
    """
    Open 17 streams (the limit is 16), then, ignoring the refusals, 100.
    """
    peer = StreamPeer(server)
    names = [f"many-{n}.bin" for n in range(100)]
    problems: list[str] = []
    try:
        since = time.monotonic()
        for n in range(17):
            peer.open(2 * n + 1, names[n], 10)
        refused = None
        while refused is None:
            try:
                record = peer.next(since + 5)
            except EOFError:
                break
            if record is None:
                break
            if isinstance(record, StreamAbort):
                refused = record
        seconds = time.monotonic() - since
        if refused is None or refused.code is not AbortCode.TOO_MANY or refused.streamID != 33:
            problems.append(f"the 17th stream was not refused TOO_MANY: {refused!r}")
        for n in range(17, 100):
            if not peer.open(2 * n + 1, names[n], 10):
                break
        cut = peer.raw.waitForCut(since, time.monotonic() + 5)
    finally:
        peer.close()
    answer = "ABORT TOO_MANY for the 17th; the session cut once 80 were ignored"
    if cut is None:
        problems.append("the session was not cut after refusals were ignored")
    return StreamAttack(
        answer,
        seconds,
        False,
        [(peer.key, r"TOO_MANY"), (peer.key, r"it ignores refusals")],
        names,
        problems,
    )


def attackStreamNeverEnds(server: ServerProcess) -> StreamAttack:
    """
    Open a stream of 1 MiB, send 1000 bytes, then send nothing more (while
    answering pings).
    """
    peer = StreamPeer(server)
    try:
        peer.open(1, "never-ends.bin", 1 << 20)
        if peer.waitFor(StreamAccept, time.monotonic() + 5) is None:
            return StreamAttack("not accepted", None, True, [], [], ["the OPEN was not accepted"])
        since = time.monotonic()
        peer.data(1, 0, b"\xa5" * 1000)
        attack = _aborted(peer, since, since + STREAM_TIMEOUT + 5, AbortCode.TIMEOUT)
    finally:
        peer.close()
    attack.logs = [(peer.key, rf"waited {STREAM_TIMEOUT} seconds for data from the sender")]
    attack.names = ["never-ends.bin"]
    return attack


def attackStreamWrongHash(server: ServerProcess) -> StreamAttack:
    """
    Send a whole stream whose END gives another SHA-256.
    """
    peer = StreamPeer(server)
    try:
        peer.open(1, "wrong-hash.bin", 5000)
        if peer.waitFor(StreamAccept, time.monotonic() + 5) is None:
            return StreamAttack("not accepted", None, True, [], [], ["the OPEN was not accepted"])
        peer.data(1, 0, b"\xa5" * 5000)
        since = time.monotonic()
        peer.send(STREAM_END, endBody(1, 5000, b"\x00" * 32))
        attack = _aborted(peer, since, since + 5, AbortCode.INTEGRITY, answer=False)
    finally:
        peer.close()
    attack.logs = [(peer.key, r"SHA-256 of what arrived is not the one its END gives")]
    attack.names = ["wrong-hash.bin"]
    return attack


STREAM_CASES: tuple[StreamCaseSpec, ...] = (
    StreamCaseSpec(
        "stream larger than announced",
        "OPEN of 1 000 bytes, then 2 000",
        attackStreamTooLong,
        0.5,
        keepsSession=True,
    ),
    StreamCaseSpec(
        "data for an unknown stream",
        "DATA for stream 99, never opened",
        attackStreamUnknown,
        0.5,
        keepsSession=False,
    ),
    StreamCaseSpec(
        "too many streams",
        "17 OPENs (limit 16), then 83 more ignoring the refusals",
        attackStreamTooMany,
        1.0,
        keepsSession=False,
    ),
    StreamCaseSpec(
        "sender that never finishes",
        "OPEN of 1 MiB, 1 000 bytes, then silence (pings answered)",
        attackStreamNeverEnds,
        STREAM_TIMEOUT + 1.0,
        keepsSession=True,
    ),
    StreamCaseSpec(
        "wrong hash",
        "5 000 bytes, END with another SHA-256",
        attackStreamWrongHash,
        0.5,
        keepsSession=True,
    ),
)
"""Every hostile case of streams, in the order of the published table."""

_STREAM_CASES = {spec.attack.__name__: spec for spec in STREAM_CASES}


def _leftovers(directory: Path, names: Sequence[str], deadline: float) -> list[str]:
    """
    The files (or parts) of C{names} in C{directory}, once no more go away
    (up to C{deadline}).
    """

    def left() -> list[str]:
        if not directory.exists():
            return []
        return sorted(
            path.name for path in directory.iterdir() if any(name in path.name for name in names)
        )

    found = left()
    while found and time.monotonic() < deadline:
        time.sleep(0.02)
        found = left()
    return found


def runStreamCase(server: ServerProcess, spec: StreamCaseSpec) -> StreamCaseResult:
    """
    Run one streams attack while a L{Checker} makes round trips, sampling
    the server's memory.
    """
    rssBefore = server.rss()
    sampler = RSSSampler(server.pid)
    checker = Checker(server.port, server.key)
    try:
        checker.start()
        attack = spec.attack(server)
    finally:
        report = checker.stop()
        peak = sampler.stop()
    deadline = time.monotonic() + LOG_DEADLINE
    logLines = [server.waitForLog(peer, reason, deadline) for peer, reason in attack.logs]
    leftovers = _leftovers(server.home / "saved", attack.names, time.monotonic() + LOG_DEADLINE)
    log = server.log()
    return StreamCaseResult(
        spec=spec,
        attack=attack,
        checker=report,
        rssGrowth=max(peak, server.rss()) - rssBefore,
        logLines=logLines,
        leftovers=leftovers,
        tracebacks="Traceback" in log or "Unhandled" in log,
    )


class StreamAttackTests(SynchronousTestCase):
    """
    Hostile senders of streams against one real server process that saves
    streams (C{--stream-timeout 2}): each breaks the rules of streams in
    one way, while a well-behaved client makes round trips.  What only one
    stream can be blamed for ends that stream (an ABORT both sides log, and
    nothing left under its name); what no well-behaved peer does ends the
    session.
    """

    server: ClassVar[ServerProcess]

    @classmethod
    def setUpClass(cls) -> None:
        raiseFileLimit()
        home = Path(tempfile.mkdtemp(prefix="nsstreams-"))
        cls.addClassCleanup(shutil.rmtree, home, ignore_errors=True)
        cls.server = ServerProcess(home, STREAM_OPTIONS, handler=f"{HANDLER_MODULE}:Saver")
        cls.addClassCleanup(cls.server.kill)

    def check(self, attack: Callable[[ServerProcess], StreamAttack]) -> StreamCaseResult:
        result = runStreamCase(self.server, _STREAM_CASES[attack.__name__])
        self.assertEqual(result.problems(), [], f"log:\n{self.server.log()[-4000:]}")
        return result

    def test_largerThanAnnounced(self) -> None:
        """
        A stream sending more than it announced is aborted (TOO_LARGE); the
        session goes on.
        """
        self.check(attackStreamTooLong)

    def test_unknownStream(self) -> None:
        """
        DATA for a stream never opened fails the session.
        """
        self.check(attackStreamUnknown)

    def test_tooManyStreams(self) -> None:
        """
        A stream past C{maxStreams} is refused (TOO_MANY); a peer that goes
        on opening streams, ignoring the refusals, is cut.
        """
        self.check(attackStreamTooMany)

    def test_neverFinishes(self) -> None:
        """
        A sender that stops sending is aborted (TIMEOUT) after the stream
        timeout, though it answers pings; its part is not kept.
        """
        self.check(attackStreamNeverEnds)

    def test_wrongHash(self) -> None:
        """
        A stream whose END gives another SHA-256 is aborted (INTEGRITY), and
        nothing is saved.
        """
        self.check(attackStreamWrongHash)
