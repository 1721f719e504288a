# -*- test-case-name: tests.test_cluster_redis -*-
"""
The cluster against a real Redis server (L{tests._redis}), over loopback,
with the global reactor (trial's asynchronous L{TestCase}): the transport's
operations and login (password, database, TLS); three real L{Server}s
whose clients relay to each other across nodes; a node that dies; Redis
restarted; a hostile writer publishing garbage and replayed envelopes.

Every wait is bounded, and every server, client and Redis process is
stopped when a test ends.
"""

from __future__ import annotations

import datetime
import ipaddress
import socket
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from twisted.internet import defer, task
from twisted.logger import LogEvent, Logger
from twisted.trial.unittest import TestCase
from zope.interface import implementer
from zope.interface.verify import verifyObject

from netstructer.client import connect
from netstructer.cluster import ClusterService, RemoteSession, clusterStatus, formatStatus
from netstructer.cluster.config import parseClusterURL
from netstructer.cluster.interfaces import (
    DirectoryChanges,
    IClusterTransport,
    ITransportListener,
    NodeRecord,
)
from netstructer.errors import ClusterUnavailable, NoSuchSession, OperationTimedOut
from netstructer.keys import Keyring, generateKey
from netstructer.protocol import BridgeProtocol
from netstructer.server import Server
from tests._redis import RedisServer, command, freePort, redisServerPath

NAMES = ("alice", "bob", "carol")
KEYS = {name: generateKey() for name in NAMES}
SERVER_KEYRING = Keyring(list(KEYS.values()), names=list(NAMES))
CLUSTER_KEY = Keyring([generateKey()])
HEARTBEAT = 0.25
DEADLINE = 15.0


def reactor() -> Any:
    """
    @return: The global reactor, imported when a test runs.
    """
    from twisted.internet import reactor as globalReactor  # noqa: N812

    return globalReactor


def run(coroutine: Callable[[], Coroutine[Any, Any, None]]) -> defer.Deferred[None]:
    """
    @return: A Deferred running a coroutine, for a trial test.
    """
    return defer.Deferred.fromCoroutine(coroutine())


async def sleep(seconds: float) -> None:
    """
    Wait on the reactor.
    """
    await task.deferLater(reactor(), seconds, lambda: None)


async def waitUntil(predicate: Callable[[], bool], what: str, timeout: float = DEADLINE) -> float:
    """
    Wait, polling, until C{predicate()} is true.

    @return: How long it took, in seconds.
    @raise AssertionError: It was not true within C{timeout} seconds.
    """
    start = reactor().seconds()
    while not predicate():
        if reactor().seconds() - start > timeout:
            raise AssertionError(f"{what}: not within {timeout} s")
        await sleep(0.02)
    return reactor().seconds() - start


@implementer(ITransportListener)
class Listener:
    """
    Records what a transport tells.
    """

    def __init__(self) -> None:
        self.connected = 0
        self.lost: list[str] = []
        self.messages: list[tuple[str, bytes]] = []

    def transportConnected(self) -> None:
        self.connected += 1

    def transportLost(self, reason: str) -> None:
        self.lost.append(reason)

    def messageReceived(self, channel: str, data: bytes) -> None:
        self.messages.append((channel, data))


class RedisTestCase(TestCase):
    """
    A real Redis server for each test.
    """

    timeout = 60

    def setUp(self) -> None:
        redisServerPath()
        self.redis = RedisServer(Path(self.mktemp()), extra=self.redisOptions()).start()
        self.addCleanup(self.redis.kill)

    def redisOptions(self) -> tuple[str, ...]:
        """
        @return: More options for C{redis-server}.
        """
        return ()

    def transport(self, url: str, channels: list[str]) -> tuple[Any, Listener]:
        """
        A started transport to C{url}, stopped when the test ends.
        """
        from netstructer.cluster.redistransport import RedisTransport

        transport = RedisTransport(parseClusterURL(url), reactor(), initialDelay=0.05)
        listener = Listener()
        transport.start(listener, channels)
        self.addCleanup(transport.stop)
        return transport, listener


class TransportTests(RedisTestCase):
    """
    L{RedisTransport}'s operations against a real Redis.
    """

    def test_operations(self) -> defer.Deferred[None]:
        """
        Heartbeat, update (with its event), snapshot, count, nodes and
        leave do what the memory hub does.
        """

        async def go() -> None:
            transport, listener = self.transport(self.redis.url, ["{netstructer}:events"])
            self.assertTrue(verifyObject(IClusterTransport, transport))
            await waitUntil(lambda: transport.connected, "connected")
            record = NodeRecord("n1", b"i" * 16, 1000.5, 1.0, 2.0)
            beat = await transport.heartbeat(record)
            self.assertEqual(beat.previous, b"")
            [state] = beat.nodes
            self.assertEqual((state.name, state.incarnation, state.alive), ("n1", b"i" * 16, True))
            self.assertEqual(state.startedAt, 1000.5)
            changes = DirectoryChanges(opened={"1": b"\x01", "2": b"\x02"}, subscribed=["news"])
            await transport.update(record, 1, changes, "{netstructer}:events", b"event")
            await transport.update(
                record, 2, DirectoryChanges(closed=["1"]), "{netstructer}:events", b""
            )
            snapshot = await transport.snapshot("n1")
            self.assertEqual(snapshot.version, 2)
            self.assertEqual(snapshot.sessions, {"2": b"\x02"})
            self.assertEqual(snapshot.topics, frozenset({"news"}))
            self.assertIsNone(await transport.snapshot("nobody"))
            self.assertEqual(await transport.count(), 1)
            beat = await transport.heartbeat(record)
            self.assertEqual(beat.previous, b"i" * 16)
            self.assertEqual(beat.nodes[0].sessions, 1)
            await waitUntil(lambda: listener.messages, "the event")
            self.assertEqual(listener.messages, [("{netstructer}:events", b"event")])
            self.assertEqual(await transport.publish("{netstructer}:events", b"x"), 1)
            await transport.leave(record, "{netstructer}:events", b"left")
            self.assertEqual(await transport.count(), 0)
            self.assertEqual((await transport.nodes()).nodes, [])

        return run(go)

    def test_publishBurst(self) -> defer.Deferred[None]:
        """
        Messages published back to back (sent to the socket at once) each
        get their own reply, and arrive in order; interleaved with the
        directory's commands, every reply still reaches its command.  Once
        the connection is lost, publishing fails with ClusterUnavailable.
        """

        async def go() -> None:
            transport, listener = self.transport(self.redis.url, ["c"])
            await waitUntil(lambda: transport.connected, "connected")
            record = NodeRecord("n1", b"i" * 16, 1000.5, 1.0, 2.0)
            published = [transport.publish("c", b"%d" % i) for i in range(200)]
            beat = transport.heartbeat(record)
            published += [transport.publish("c", b"x" * 100_000)]
            self.assertEqual(await defer.gatherResults(published), [1] * 201)
            self.assertEqual((await beat).nodes[0].name, "n1")
            await waitUntil(lambda: len(listener.messages) == 201, "every message")
            self.assertEqual(
                [data for _, data in listener.messages],
                [b"%d" % i for i in range(200)] + [b"x" * 100_000],
            )
            self.redis.kill()
            await waitUntil(lambda: not transport.connected, "the connection is lost")
            with self.assertRaises(ClusterUnavailable):
                await transport.publish("c", b"late")

        return run(go)

    def test_bigReset(self) -> None:
        """
        A reset with thousands of sessions is written in one script.
        """

        async def go() -> None:
            transport, _ = self.transport(self.redis.url, [])
            await waitUntil(lambda: transport.connected, "connected")
            record = NodeRecord("n1", b"i" * 16, 1.0, 1.0, 2.0)
            await transport.heartbeat(record)
            opened = {format(i, "x"): b"d" * 40 for i in range(5000)}
            await transport.update(
                record, 1, DirectoryChanges(opened=opened, reset=True), "{netstructer}:events", b""
            )
            self.assertEqual(await transport.count(), 5000)

        return run(go)

    def test_expiry(self) -> None:
        """
        A node's entries expire when its heartbeats stop.
        """

        async def go() -> None:
            transport, _ = self.transport(self.redis.url, [])
            await waitUntil(lambda: transport.connected, "connected")
            record = NodeRecord("n1", b"i" * 16, 1.0, 0.1, 0.2)
            await transport.heartbeat(record)
            await transport.update(
                record, 1, DirectoryChanges(opened={"1": b"d"}), "{netstructer}:events", b""
            )
            self.assertEqual(await transport.count(), 1)
            await sleep(0.3)
            self.assertEqual(await transport.count(), 0)
            [state] = (await transport.nodes()).nodes
            self.assertFalse(state.alive)
            self.assertIsNone(await transport.snapshot("n1"))

        return run(go)

    def test_unavailable(self) -> None:
        """
        Without Redis, operations fail at once with ClusterUnavailable, the
        listener hears of it once, and the transport connects when Redis
        is back.
        """

        async def go() -> None:
            port = freePort()
            transport, listener = self.transport(f"redis://127.0.0.1:{port}/0?timeout=1", [])
            await waitUntil(lambda: listener.lost, "the failure")
            with self.assertRaises(ClusterUnavailable):
                await transport.count()
            RedisServer(Path(self.mktemp()), port=port).start()
            self.addCleanup(command, port, "SHUTDOWN", "NOSAVE")
            await waitUntil(lambda: transport.connected, "connected again")
            self.assertEqual(await transport.count(), 0)

        return run(go)


class PingTests(RedisTestCase):
    """
    The subscribed connection is checked while nothing arrives.
    """

    def test_silentRedis(self) -> None:
        """
        A Redis that stops answering is noticed through the subscribed
        connection's pings, and reconnected to once it answers again.
        """

        async def go() -> None:
            url = f"redis://127.0.0.1:{self.redis.port}/0?timeout=0.5"
            transport, listener = self.transport(url, ["c"])
            await waitUntil(lambda: transport.connected, "connected")
            command(self.redis.port, "CLIENT", "PAUSE", "2000")
            await waitUntil(lambda: listener.lost, "the silence noticed", 5.0)
            await waitUntil(lambda: transport.connected, "connected again")
            self.assertEqual(listener.connected, 2)

        return run(go)


class LoginTests(RedisTestCase):
    """
    A password, a database number.
    """

    def redisOptions(self) -> tuple[str, ...]:
        return ("--requirepass", "s3cret-pw")

    def test_password(self) -> None:
        """
        A URL's password logs in, and a database number selects it.
        """

        async def go() -> None:
            url = f"redis://:s3cret-pw@127.0.0.1:{self.redis.port}/3"
            transport, _ = self.transport(url, ["c"])
            await waitUntil(lambda: transport.connected, "connected")
            await transport.heartbeat(NodeRecord("n1", b"i" * 16, 1.0, 1.0, 2.0))
            info = await transport._command.execute_command("CLIENT", "INFO")
            self.assertIn(b" db=3 ", info)
            self.assertIn(b" name=netstructer ", info)

        return run(go)

    def test_wrongPassword(self) -> None:
        """
        A wrong password is reported (without the password) and retried.
        """

        async def go() -> None:
            url = f"redis://:not-the-pw@127.0.0.1:{self.redis.port}/0"
            transport, listener = self.transport(url, [])
            await waitUntil(lambda: listener.lost, "the failure")
            self.assertFalse(transport.connected)
            self.assertNotIn("not-the-pw", " ".join(listener.lost))
            self.assertNotIn("not-the-pw", repr(transport))

        return run(go)


def _makeCertificates(directory: Path) -> tuple[Path, Path, Path]:
    """
    @return: A CA certificate, and a certificate for 127.0.0.1 it signed
        with its key, as PEM files.
    """
    now = datetime.datetime.now(datetime.timezone.utc)
    caKey = ec.generate_private_key(ec.SECP256R1())
    caName = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(caName)
        .issuer_name(caName)
        .public_key(caKey.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(caKey, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    certificate = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(caName)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(caKey, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    caPath, certPath, keyPath = directory / "ca.pem", directory / "cert.pem", directory / "key.pem"
    caPath.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    certPath.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    keyPath.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    return caPath, certPath, keyPath


class TLSTests(RedisTestCase):
    """
    C{rediss://}: TLS to Redis, its certificate verified.
    """

    def redisOptions(self) -> tuple[str, ...]:
        self.tlsPort = freePort()
        self.ca, cert, key = _makeCertificates(Path(self.mktemp()).resolve())
        return (
            "--tls-port",
            str(self.tlsPort),
            "--tls-cert-file",
            str(cert),
            "--tls-key-file",
            str(key),
            "--tls-ca-cert-file",
            str(self.ca),
            "--tls-auth-clients",
            "no",
        )

    def test_tls(self) -> None:
        """
        A rediss:// URL with the CA that signed Redis's certificate
        connects, and works.
        """

        async def go() -> None:
            url = f"rediss://127.0.0.1:{self.tlsPort}/0?ca={self.ca}"
            transport, _ = self.transport(url, ["c"])
            await waitUntil(lambda: transport.connected, "connected over TLS")
            self.assertEqual(await transport.publish("c", b"x"), 1)

        return run(go)

    def test_tlsUnverified(self) -> None:
        """
        Without that CA (the system's trust store), the certificate is
        refused and the transport does not connect.
        """

        async def go() -> None:
            url = f"rediss://127.0.0.1:{self.tlsPort}/0?timeout=2"
            transport, listener = self.transport(url, [])
            await waitUntil(lambda: listener.lost, "the failure")
            self.assertFalse(transport.connected)

        return run(go)


class Node:
    """
    A real server on a loopback port, node of a cluster.
    """

    def __init__(self, test: ClusterTests, name: str) -> None:
        self.name = name
        self.events: list[LogEvent] = []
        self.cluster = ClusterService(
            test.redis.url,
            name,
            CLUSTER_KEY,
            reactor=reactor(),
            heartbeat=HEARTBEAT,
            logger=Logger(observer=self.events.append),
        )
        self.cluster.transport._initialDelay = 0.05
        self.server = Server(
            "tcp:0:interface=127.0.0.1",
            SERVER_KEYRING,
            reactor=reactor(),
            relayBackend=self.cluster.backend,
            shutdownGrace=1.0,
        )
        self.server.registry.addObserver(self.cluster)
        self.cluster.setServiceParent(self.server)
        self.port = 0

    async def start(self) -> None:
        listening = await self.server.listen()
        self.port = listening.getHost().port

    def crash(self) -> None:
        """
        Stop the node as SIGKILL would, as far as the cluster can tell: its
        heartbeats stop and its connections to Redis close, without leaving.
        """
        call = self.cluster._tickCall
        if call is not None and call.active():
            call.cancel()
        self.cluster._tickCall = None
        self.cluster.transport.stop()

    def logged(self, text: str) -> list[LogEvent]:
        return [e for e in self.events if text in str(e.get("log_format", ""))]


class ClusterTests(RedisTestCase):
    """
    Three real servers, nodes of one cluster on a real Redis, with real
    clients.
    """

    async def startCluster(self) -> None:
        self.nodes = {name: Node(self, name) for name in ("n1", "n2", "n3")}
        for node in self.nodes.values():
            await node.start()
            self.addCleanup(node.server.stopService)
        await waitUntil(
            lambda: (
                all(n.cluster.available for n in self.nodes.values())
                and all(len(n.cluster.replica.nodes) == 2 for n in self.nodes.values())
            ),
            "the cluster formed",
        )
        self.clients: dict[str, BridgeProtocol] = {}
        for name, node in zip(NAMES, ("n1", "n2", "n3"), strict=True):
            client = await connect(reactor(), ("127.0.0.1", self.nodes[node].port), KEYS[name])
            self.clients[name] = client
            self.addCleanup(self.closeClient, client)

        def everyoneKnown() -> bool:
            for node in self.nodes.values():
                local = {d.name for d in node.cluster._localPart.descriptors()}
                for name in set(NAMES) - local:
                    if node.cluster.replica.resolve(name) is None:
                        return False
            return True

        await waitUntil(everyoneKnown, "every node knows every client")

    async def closeClientAsync(self, client: BridgeProtocol) -> None:
        if client.transport is not None and client.established:
            client.close()
        await client.whenClosed()

    def closeClient(self, client: BridgeProtocol) -> defer.Deferred[None]:
        return defer.Deferred.fromCoroutine(self.closeClientAsync(client))

    def test_relayAcrossNodes(self) -> None:
        """
        Clients of three nodes send to each other by name and through a
        topic; the cluster counts, lists and finds them all.
        """

        async def go() -> None:
            await self.startCluster()
            alice, bob, carol = (self.clients[n] for n in NAMES)
            for i in range(20):
                alice.sendTo("bob", i)
            got = [tuple(await bob.recvFrom(timeout=DEADLINE)) for _ in range(20)]
            self.assertEqual(got, [("alice", i) for i in range(20)])
            carol.subscribe("news")
            bob.subscribe("news")
            await waitUntil(
                lambda: len(self.nodes["n1"].cluster.replica.topicNodes("news")) == 2, "subscribed"
            )
            alice.publish("news", {"headline": True})
            for client in (bob, carol):
                relayed = await client.recvFrom(timeout=DEADLINE)
                self.assertEqual((relayed.sender, relayed.topic), ("alice", "news"))
            alice.sendTo("nobody", 1)
            with self.assertRaises(NoSuchSession):
                await alice.recvFrom(timeout=DEADLINE)
            n2 = self.nodes["n2"].cluster
            self.assertEqual(await n2.count(), 3)
            self.assertEqual(sorted(d.name for d in await n2.all()), sorted(NAMES))
            remote = await n2.get("carol")
            self.assertIsInstance(remote, RemoteSession)
            remote.sendBuffer("hello carol")
            self.assertEqual(await carol.recvBuffer(timeout=DEADLINE), "hello carol")
            status = await clusterStatus(self.redis.url, reactor=reactor())
            self.assertEqual(sorted(n.name for n in status.nodes if n.alive), ["n1", "n2", "n3"])
            self.assertEqual(len(status.sessions), 3)
            self.assertIn("carol", formatStatus(status))

        return run(go)

    def test_nodeDies(self) -> None:
        """
        A node that dies disappears from the directory, with its sessions,
        within two heartbeats; values for its clients fail for their
        senders.
        """

        async def go() -> None:
            await self.startCluster()
            n1 = self.nodes["n1"].cluster
            self.nodes["n2"].crash()
            took = 0.0
            start = reactor().seconds()
            while await n1.count() != 2:
                took = reactor().seconds() - start
                self.assertLess(took, DEADLINE)
                await sleep(0.02)
            took = reactor().seconds() - start
            # Two heartbeats, and the time a count takes on a busy machine.
            self.assertLessEqual(took, 2 * HEARTBEAT + 0.5)
            await waitUntil(lambda: "n2" not in n1.replica.nodes, "n1 forgot n2", 4 * HEARTBEAT)
            self.clients["alice"].sendTo("bob", "too late")
            with self.assertRaises(NoSuchSession):
                await self.clients["alice"].recvFrom(timeout=DEADLINE)

        return run(go)

    def test_redisRestarts(self) -> None:
        """
        When Redis restarts (empty), local service goes on, cluster
        operations fail at once, and the nodes register again: nothing of
        a live node is lost, and relay across nodes works again.
        """

        async def go() -> None:
            await self.startCluster()
            n1 = self.nodes["n1"].cluster
            self.redis.kill()
            await waitUntil(lambda: not n1.available, "n1 noticed")
            with self.assertRaises(ClusterUnavailable):
                await n1.count()
            self.redis.start()
            await waitUntil(
                lambda: all(n.cluster.available for n in self.nodes.values()), "all registered"
            )
            await waitUntil(
                lambda: all(len(n.cluster.replica.nodes) == 2 for n in self.nodes.values()),
                "all know each other",
            )
            self.assertEqual(await n1.count(), 3)
            self.clients["carol"].sendTo("alice", "after the restart")
            relayed = await self.clients["alice"].recvFrom(timeout=DEADLINE)
            self.assertEqual(tuple(relayed), ("carol", "after the restart"))
            for node in self.nodes.values():
                self.assertEqual(len(node.logged("Lost the connection to")), 1)
                self.assertEqual(len(node.logged("Reconnected to the cluster's Redis")), 1)

        return run(go)

    def test_hostileWriter(self) -> None:
        """
        Garbage, and envelopes captured and published again, on a node's
        channel are refused, logged, and never delivered.
        """

        async def go() -> None:
            await self.startCluster()
            channel = "{netstructer}:to:n2"
            spy = socket.create_connection(("127.0.0.1", self.redis.port), timeout=5)
            self.addCleanup(spy.close)
            name = channel.encode()
            spy.sendall(b"*2\r\n$9\r\nSUBSCRIBE\r\n$%d\r\n%s\r\n" % (len(name), name))
            await sleep(0.1)
            spy.recv(65536)
            self.clients["alice"].sendTo("bob", "once")
            relayed = await self.clients["bob"].recvFrom(timeout=DEADLINE)
            self.assertEqual(tuple(relayed), ("alice", "once"))
            await sleep(0.1)
            captured = _lastPayload(spy.recv(1024 * 1024))
            command(self.redis.port, "PUBLISH", channel, captured)
            command(self.redis.port, "PUBLISH", channel, b"garbage" * 20)
            n2 = self.nodes["n2"]
            await waitUntil(
                lambda: (
                    n2.cluster.refused.get("replayed") == 1
                    and n2.cluster.refused.get("malformed") == 1
                ),
                "both refused",
            )
            with self.assertRaises(OperationTimedOut):
                await self.clients["bob"].recvFrom(timeout=0.5)
            self.assertEqual(len(n2.logged("Refused a message")), 2)

        return run(go)


def _lastPayload(data: bytes) -> bytes:
    """
    @return: The payload of the last pub/sub message in raw RESP bytes.
    """
    payload = b""
    position = 0
    while True:
        start = data.find(b"*3\r\n$7\r\nmessage\r\n", position)
        if start == -1:
            return payload
        cursor = start + len(b"*3\r\n$7\r\nmessage\r\n")
        for index in range(2):
            end = data.index(b"\r\n", cursor)
            length = int(data[cursor + 1 : end])
            value = data[end + 2 : end + 2 + length]
            cursor = end + 2 + length + 2
            if index == 1:
                payload = value
        position = cursor
