"""
Real processes of a cluster for the tests and the benchmark: a
C{redis-server} (L{tests._redis.RedisServer}), nodes that are real C{twistd
-n netstructer --cluster ...} processes (L{TwistdNode}), a node run by the
blocking facade in a process of its own (L{BlockingNode}, driven through
its standard input), blocking clients, and a raw Redis subscriber that
plays a hostile peer (L{RawSubscriber}).

Everything listens on 127.0.0.1 only.  Every wait is bounded by a
deadline (polling, never a fixed sleep standing for synchronisation), and
L{ClusterProcesses.stop} kills every process it started.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from netstructer.blocking import Link, link
from netstructer.errors import ClusterUnavailable, NetStructerError, RelayError
from netstructer.keys import generateKey, keyFileLine
from tests._redis import RedisServer, command

REPO = Path(__file__).resolve().parent.parent

TWISTD = [sys.executable, "-c", "from twisted.scripts.twistd import run; run()"]

START_DEADLINE = 30.0
"""Seconds a node has to listen and join the cluster."""

WAIT = 20.0
"""Seconds any other wait may take."""

NAMES = ("alice", "bob", "carol", "dave", "erin")
"""The clients' names (each has a named key in the servers' key file)."""

_LISTENING = re.compile(rb"NetStructer server listening on 127\.0\.0\.1:(\d+)")


def waitFor(
    condition: Callable[[], object], what: str, timeout: float = WAIT, step: float = 0.02
) -> float:
    """
    Poll C{condition} until it is true.

    @return: The seconds it took.
    @raise AssertionError: It was not true within C{timeout} seconds.
    """
    started = time.monotonic()
    deadline = started + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout:g} s")
        time.sleep(step)
    return time.monotonic() - started


def _environment(home: Path) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("NETSTRUCTER_") and key not in ("XDG_CONFIG_HOME", "PYTHONPATH")
    }
    env["HOME"] = str(home)
    env["PYTHONPATH"] = str(REPO)
    return env


class TwistdNode:
    """
    One C{twistd -n netstructer --relay --cluster URL} process, on a free
    loopback port.

    @ivar name: Its node name.
    @ivar port: Its port, once it listens.
    @ivar process: The process.
    @ivar logPath: Where it logs.
    """

    def __init__(
        self,
        home: Path,
        name: str,
        url: str,
        *,
        heartbeat: float = 1.0,
        extra: tuple[str, ...] = (),
    ) -> None:
        self.name = name
        self.port = 0
        self.logPath = home / f"{name}.log"
        self._log = open(self.logPath, "wb")  # noqa: SIM115 (closed by stop)
        self.process = subprocess.Popen(
            [
                *TWISTD,
                "-n",
                "--pidfile=",
                "netstructer",
                "--port",
                "0",
                "--key-file",
                str(home / "server.key"),
                "--relay",
                "--cluster",
                url,
                "--cluster-key",
                str(home / "cluster.key"),
                "--node-name",
                name,
                "--heartbeat",
                str(heartbeat),
                *extra,
            ],
            env=_environment(home),
            cwd=home,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def log(self) -> str:
        """
        @return: What it logged so far.
        """
        return self.logPath.read_text(errors="replace")

    def logged(self, text: str) -> int:
        """
        @return: How many of its log lines hold C{text}.
        """
        return sum(1 for line in self.log().splitlines() if text in line)

    def waitJoined(self, deadline: float) -> None:
        """
        Wait until it listens and has joined the cluster.

        @raise AssertionError: It exited, or the deadline passed.
        """
        while True:
            data = self.logPath.read_bytes()
            found = _LISTENING.search(data)
            if found and f"Node {self.name} joined the cluster".encode() in data:
                self.port = int(found.group(1))
                return
            if self.process.poll() is not None:
                raise AssertionError(f"node {self.name} exited:\n{self.log()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"node {self.name} did not join in time:\n{self.log()}")
            time.sleep(0.05)

    def signal(self, number: int) -> None:
        """
        Send it a signal.
        """
        self.process.send_signal(number)

    def stop(self) -> None:
        """
        Kill it (if it runs) and close its log.
        """
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(WAIT)
        self._log.close()


class BlockingNode:
    """
    A node run by the blocking facade (L{netstructer.blocking.Server} with
    C{cluster=URL}) in a process of its own, which answers commands read
    from its standard input with JSON lines: C{count}, C{all}, C{get NAME},
    C{send NAME VALUE}.
    """

    def __init__(self, home: Path, name: str, url: str) -> None:
        self.name = name
        self.logPath = home / f"{name}.log"
        self._log = open(self.logPath, "wb")  # noqa: SIM115 (closed by stop)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests._clusterprocs", str(home), url, name],
            env=_environment(home),
            cwd=REPO,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
        )
        self.port = int(self.ask("port")["port"])

    def ask(self, line: str) -> dict[str, Any]:
        """
        Send one command and read its answer.

        @raise AssertionError: The process exited.
        """
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()
        answer = self.process.stdout.readline()
        if not answer:
            raise AssertionError(f"the blocking node exited ({self.process.wait(WAIT)})")
        result: dict[str, Any] = json.loads(answer)
        return result

    def stop(self) -> None:
        """
        Close it: end of input, then kill it if it has not exited.
        """
        if self.process.poll() is None:
            try:
                assert self.process.stdin is not None
                self.process.stdin.close()
                self.process.wait(WAIT)
            except (OSError, subprocess.TimeoutExpired):
                self.process.kill()
                self.process.wait(WAIT)
        self._log.close()


class RawSubscriber:
    """
    A raw Redis connection subscribed to channels: it reads what any
    subscriber reads (for a hostile peer's tests: it captures envelopes to
    replay).
    """

    def __init__(self, port: int, *channels: str) -> None:
        self._socket = socket.create_connection(("127.0.0.1", port), timeout=WAIT)
        self._buffer = b""
        parts = [b"SUBSCRIBE", *(c.encode() for c in channels)]
        self._socket.sendall(
            b"*%d\r\n" % len(parts) + b"".join(b"$%d\r\n%s\r\n" % (len(p), p) for p in parts)
        )
        for _ in channels:
            self._read()

    def _line(self) -> bytes:
        while b"\r\n" not in self._buffer:
            chunk = self._socket.recv(65536)
            if not chunk:
                raise AssertionError("Redis closed the subscriber's connection")
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\r\n")
        return line

    def _read(self) -> Any:
        line = self._line()
        if line[:1] == b"*":
            return [self._read() for _ in range(int(line[1:]))]
        if line[:1] == b"$":
            size = int(line[1:])
            while len(self._buffer) < size + 2:
                chunk = self._socket.recv(65536)
                if not chunk:
                    raise AssertionError("Redis closed the subscriber's connection")
                self._buffer += chunk
            data, self._buffer = self._buffer[:size], self._buffer[size + 2 :]
            return data
        return line[1:]

    def message(self, timeout: float = WAIT) -> tuple[str, bytes]:
        """
        @return: The next message's channel and data.
        """
        self._socket.settimeout(timeout)
        while True:
            reply = self._read()
            if isinstance(reply, list) and reply[0] == b"message":
                return reply[1].decode(), reply[2]

    def close(self) -> None:
        self._socket.close()


class ClusterProcesses:
    """
    A Redis server, nodes, and clients, in one temporary home.

    @ivar home: The temporary directory (key files, logs).
    @ivar redis: The Redis server.
    @ivar keys: The clients' keys, by name.
    @ivar nodes: The twistd nodes, by name.
    """

    def __init__(self, home: Path, heartbeat: float = 1.0) -> None:
        self.home = home
        self.heartbeat = heartbeat
        self.keys = {name: generateKey() for name in NAMES}
        lines = "".join(keyFileLine(key, name) + "\n" for name, key in self.keys.items())
        _secret(home / "server.key", lines)
        _secret(home / "cluster.key", keyFileLine(generateKey()) + "\n")
        self.redis = RedisServer(home / "redis")
        self.nodes: dict[str, TwistdNode] = {}
        self.blocking: list[BlockingNode] = []
        self.links: list[Link] = []

    @property
    def url(self) -> str:
        """
        The cluster's URL.
        """
        return self.redis.url

    def start(self, *names: str) -> None:
        """
        Start Redis and the nodes (together), and wait until they joined.
        """
        if self.redis.process is None:
            self.redis.start()
        for name in names:
            self.nodes[name] = TwistdNode(self.home, name, self.url, heartbeat=self.heartbeat)
        deadline = time.monotonic() + START_DEADLINE
        for name in names:
            self.nodes[name].waitJoined(deadline)

    def startBlocking(self, name: str) -> BlockingNode:
        """
        Start a node run by the blocking facade.
        """
        node = BlockingNode(self.home, name, self.url)
        self.blocking.append(node)
        return node

    def connect(self, name: str, node: str | BlockingNode) -> Link:
        """
        Connect the client C{name} to a node.
        """
        port = node.port if isinstance(node, BlockingNode) else self.nodes[node].port
        client = link(("127.0.0.1", port), self.keys[name], timeout=WAIT)
        self.links.append(client)
        return client

    def count(self) -> int:
        """
        @return: The sessions Redis's directory counts for the live nodes.
        """
        from netstructer.cluster.redistransport import SCRIPTS

        reply = command(
            self.redis.port, "EVAL", SCRIPTS["count"], "1", "{netstructer}:nodes", "netstructer"
        )
        return int(reply[1:].split(b"\r\n")[0])

    def registered(self, node: str) -> bool:
        """
        @return: Whether Redis holds the entries of C{node}.
        """
        return command(self.redis.port, "EXISTS", f"{{netstructer}}:node:{node}") == b":1\r\n"

    def stop(self) -> None:
        """
        Kill every process, then close the clients (whose connections have
        ended, so that closing takes no time).
        """
        for node in self.nodes.values():
            node.stop()
        for blocking in self.blocking:
            blocking.stop()
        self.redis.kill()
        for client in self.links:
            try:
                client.close(timeout=0.5)
            except (OSError, NetStructerError):
                # Its server is gone: the link is closed all the same.
                continue


def _secret(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)


def relayReady(sender: Link, senderName: str, recipient: Link, name: str) -> None:
    """
    Wait until values from C{sender} reach C{recipient} (its node knows the
    recipient's session): send probes until one arrives.  No probe is left
    on the way when this returns.
    """
    deadline = time.monotonic() + WAIT
    for index in range(10_000):
        try:
            sender.sendTo(name, ("probe", index))
        except RelayError:
            pass
        while True:
            try:
                who, value = recipient.recvFrom(timeout=0.2)
            except TimeoutError:
                break
            if who == senderName and value == ("probe", index):
                return
        if time.monotonic() > deadline:
            raise AssertionError(f"values from {senderName} did not reach {name} in time")
    raise AssertionError("relayReady: too many probes")


def pendingErrors(client: Link, quiet: float = 0.2) -> list[RelayError]:
    """
    Take the relay errors that arrive for C{client} until none has for
    C{quiet} seconds.

    @return: The errors.
    @raise AssertionError: A relayed value arrived instead.
    """
    errors = []
    while True:
        try:
            relayed = client.recvFrom(timeout=quiet)
        except RelayError as e:
            errors.append(e)
            continue
        except TimeoutError:
            return errors
        raise AssertionError(f"a value was relayed while only errors were expected: {relayed}")


def drainErrors(client: Link, expected: int, timeout: float = WAIT) -> int:
    """
    Receive relay errors until C{expected} values were reported failed
    (errors of one kind are counted in one), or the deadline passes.

    @return: How many values were reported failed.
    """
    failed = 0
    deadline = time.monotonic() + timeout
    while failed < expected and time.monotonic() < deadline:
        try:
            client.recvFrom(timeout=0.1)
        except RelayError as e:
            failed += e.count
        except TimeoutError:
            continue
    return failed


# The blocking node's process.


def _replicaSize(cluster: Any) -> int:
    """
    @return: How many sessions of other nodes a node's copy holds.
    """
    return sum(len(node.sessions) for node in cluster.replica.nodes.values())


def _blockingNode(home: str, url: str, name: str) -> None:
    from netstructer.blocking import Server
    from netstructer.blocking._server import _callInReactor

    server = Server(
        ("127.0.0.1", 0),
        keyFile=str(Path(home) / "server.key"),
        relay=True,
        cluster=url,
        clusterKey=str(Path(home) / "cluster.key"),
        nodeName=name,
    )
    server.listen()
    out = sys.stdout
    deadline = time.monotonic() + START_DEADLINE
    while True:
        # Joined the cluster (registered, and read the other nodes' parts).
        try:
            server.count(cluster=True)
            break
        except ClusterUnavailable:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)

    def answer(**fields: object) -> None:
        out.write(json.dumps(fields) + "\n")
        out.flush()

    for line in sys.stdin:
        word, _, rest = line.strip().partition(" ")
        try:
            if word == "port":
                answer(port=server.port)
            elif word == "count":
                answer(local=server.count(), cluster=server.count(cluster=True))
            elif word == "all":
                answer(
                    sessions=[[d.name, d.node] for d in server.all(cluster=True)],
                    local=[s.name for s in server.all()],
                )
            elif word == "get":
                found = server.get(rest, cluster=True)
                answer(
                    found=type(found).__name__,
                    node=getattr(found, "node", None),
                    name=getattr(found, "name", None),
                )
            elif word == "counts":
                times = []
                for _ in range(int(rest)):
                    started = time.perf_counter()
                    server.count(cluster=True)
                    times.append(time.perf_counter() - started)
                times.sort()
                answer(p50=times[len(times) // 2], p99=times[int(len(times) * 0.99)])
            elif word == "replica":
                answer(sessions=_callInReactor(_replicaSize, server._running().cluster))
            elif word == "send":
                target, _, value = rest.partition(" ")
                found = server.get(target, cluster=True)
                assert found is not None, target
                found.sendBuffer(value)
                answer(sent=True)
        except Exception as e:  # noqa: BLE001 (reported to the test)
            answer(error=type(e).__name__, message=str(e))
    server.close()


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    _blockingNode(*sys.argv[1:4])
