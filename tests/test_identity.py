# -*- test-case-name: tests.test_identity -*-
"""
Tests for named keys: key file lines with names, the keyring's identities,
which key the server's handshake matched (L{Channel.peerKey}), sessions found
by name in the registry, and reloading the keys (L{KeyReloader},
L{Server.reloadKeys}, C{SIGHUP} in C{twistd}), all in memory.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import LogEvent, Logger
from twisted.trial.unittest import SynchronousTestCase

from netstructer import tap
from netstructer.blocking import Session
from netstructer.channel import Channel, CloseCode, Role
from netstructer.errors import AuthenticationError, InvalidKey, KeyFileError, OperationTimedOut
from netstructer.keyreload import KeyReloader
from netstructer.keys import (
    Keyring,
    checkName,
    generateKey,
    keyFileLine,
    readKeyFile,
    writeKeyFile,
)
from netstructer.protocol import BridgeConfig, PeerClosed
from netstructer.registry import REVOKED_REASON
from netstructer.server import Server
from netstructer.tap import KeyReloadOnSignal
from tests.test_registry import Link, Network

ALICE, BOB, CAROL, ANON = (generateKey() for _ in range(4))


def _writeFile(path: str | Path, data: bytes) -> None:
    """
    Write a file with mode 0600.
    """
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def _keyFile(*lines: bytes) -> bytes:
    return b"".join(line + b"\n" for line in lines)


def _handshake(client: Channel, server: Channel) -> None:
    """
    Run a handshake between two channels in memory.
    """
    for frame in client.framesToSend():
        server.receiveFrame(frame)
    for frame in server.framesToSend():
        client.receiveFrame(frame)
    for frame in client.framesToSend():
        server.receiveFrame(frame)


class KeyFileNameTests(SynchronousTestCase):
    """
    Names in key files and keyrings.
    """

    def test_namedAndAnonymousLines(self) -> None:
        """
        A line is a key, or a name, whitespace and a key; both kinds mix in a
        file, with comments; the names are in the keyring's order.
        """
        path = self.mktemp()
        _writeFile(
            path,
            _keyFile(
                b"# clients",
                b"alice " + ALICE + b"  # alice's laptop",
                b"\tbob\t" + BOB,
                ANON,
            ),
        )
        ring = readKeyFile(path)
        self.assertEqual(ring.names(), ("alice", "bob", None))
        self.assertEqual([i.name for i in ring.identities()], ["alice", "bob", None])
        self.assertEqual([i.keyId for i in ring.identities()], list(ring.keyIDs()))
        self.assertEqual(ring, Keyring([ALICE, BOB, ANON], ["alice", "bob", None]))
        self.assertNotEqual(ring, Keyring([ALICE, BOB, ANON]))

    def test_badNameNotQuoted(self) -> None:
        """
        An invalid name is refused with the line's number, and the message
        quotes nothing of the line.
        """
        path = self.mktemp()
        _writeFile(path, _keyFile(ANON, b"al!ce " + ALICE))
        error = self.assertRaises(KeyFileError, readKeyFile, path)
        self.assertIn("line 2", str(error))
        self.assertIn("name", str(error))
        self.assertNotIn("al!ce", str(error))
        self.assertNotIn(ALICE.decode("ascii")[:10], str(error))

    def test_threeFieldsRefused(self) -> None:
        """
        A line with three fields is not a key.
        """
        path = self.mktemp()
        _writeFile(path, _keyFile(b"alice smith " + ALICE))
        error = self.assertRaises(KeyFileError, readKeyFile, path)
        self.assertIn("line 1: 3 words", str(error))
        self.assertNotIn("smith", str(error))

    def test_oneKeyTwoNames(self) -> None:
        """
        One key may not authenticate two names: the file is refused.  The
        same key twice under one name is one key.
        """
        path = self.mktemp()
        _writeFile(path, _keyFile(b"alice " + ALICE, b"bob " + ALICE))
        error = self.assertRaises(KeyFileError, readKeyFile, path)
        self.assertIn("another name", str(error))
        self.assertEqual(len(Keyring([ALICE, ALICE], ["alice", "alice"])), 1)

    def test_nameMayHaveSeveralKeys(self) -> None:
        """
        Several keys may share a name (a client rotating its key, or a
        group).
        """
        ring = Keyring([ALICE, BOB], ["team", "team"])
        self.assertEqual(ring.names(), ("team", "team"))
        self.assertNotEqual(ring.identity(0), ring.identity(1))

    def test_checkName(self) -> None:
        """
        Names are ASCII letters, digits and C{_.@+-}, at most 64 characters,
        never an IP address.
        """
        for good in ("alice", "bob.example", "worker-7", "svc@host", "_x", "a" * 64):
            self.assertEqual(checkName(good), good)
        for bad in ("", "a" * 65, "-x", "al ice", "ålice", "10.0.0.5", "::1", "a:b", "x/y"):
            self.assertRaises(InvalidKey, checkName, bad)

    def test_namesLength(self) -> None:
        """
        C{names} must have one entry per key.
        """
        self.assertRaises(InvalidKey, Keyring, [ALICE, BOB], ["alice"])

    def test_writeNamed(self) -> None:
        """
        L{writeKeyFile} with a name writes C{"name <key>"}, which reads back
        as that name; L{keyFileLine} is that line.
        """
        path = self.mktemp()
        key = writeKeyFile(path, name="alice")
        ring = readKeyFile(path)
        self.assertEqual(ring.names(), ("alice",))
        self.assertIn(keyFileLine(key, "alice").encode("ascii") + b"\n", Path(path).read_bytes())
        self.assertEqual(keyFileLine(key), key.decode("ascii"))
        self.assertRaises(InvalidKey, writeKeyFile, self.mktemp(), name="bad name")

    def test_accepts(self) -> None:
        """
        A keyring accepts an identity whose key it holds under the same
        name; another name, or a missing key, is not accepted.
        """
        old = Keyring([ALICE, BOB], ["alice", "bob"])
        self.assertTrue(Keyring([BOB, ALICE], ["bob", "alice"]).accepts(old.identity(0)))
        self.assertFalse(Keyring([BOB], ["bob"]).accepts(old.identity(0)))
        self.assertFalse(Keyring([ALICE], ["mallory"]).accepts(old.identity(0)))
        self.assertFalse(Keyring([ALICE]).accepts(old.identity(0)))

    def test_reprHasNoKey(self) -> None:
        """
        An identity shows its name and key ID, nothing secret.
        """
        identity = Keyring([ALICE], ["alice"]).identity(0)
        self.assertEqual(repr(identity), f"<KeyIdentity alice {identity.keyId}>")


class ChannelPeerKeyTests(SynchronousTestCase):
    """
    The server's channel says which key the client holds.
    """

    ring = Keyring([ALICE, BOB, ANON], ["alice", "bob", None])

    def test_matchedKey(self) -> None:
        """
        In every suite, the server's channel records the identity of the key
        the client connected with; the client's records none.
        """
        for suite in ("noise", "fernet"):
            for key, name in ((ALICE, "alice"), (BOB, "bob"), (ANON, None)):
                client = Channel(Role.CLIENT, key, suite=suite)
                server = Channel(Role.SERVER, self.ring, suite=suite)
                self.assertIsNone(server.peerKey)
                _handshake(client, server)
                peerKey = server.peerKey
                assert peerKey is not None
                self.assertEqual(peerKey.name, name)
                self.assertEqual(peerKey.keyId, Keyring([key]).keyIDs()[0])
                self.assertIsNone(client.peerKey)

    def test_nameNotInHello(self) -> None:
        """
        No name travels in the hello: the same client key gives hellos of
        the same length whatever name the server's key file gives it, and
        the name's bytes are not in it.
        """
        client = Channel(Role.CLIENT, ALICE)
        [hello] = client.framesToSend()
        self.assertNotIn(b"alice", hello)
        self.assertEqual(len(hello), len(Channel(Role.CLIENT, ANON).framesToSend()[0]))

    def test_unknownKey(self) -> None:
        """
        A client whose key is not on the ring cannot claim any name: the
        hello fails authentication.
        """
        client = Channel(Role.CLIENT, CAROL)
        server = Channel(Role.SERVER, self.ring)
        [hello] = client.framesToSend()
        self.assertRaises(AuthenticationError, server.receiveFrame, hello)
        self.assertIsNone(server.peerKey)

    @settings(max_examples=25, deadline=None)
    @given(st.integers(min_value=1, max_value=12), st.data())
    def test_anyPosition(self, count: int, data: st.DataObject) -> None:
        """
        Whatever the ring's size and the client key's position on it, the
        server matches that key and no other.
        """
        keys = [generateKey() for _ in range(count)]
        ring = Keyring(keys, [f"client{i}" for i in range(count)])
        index = data.draw(st.integers(min_value=0, max_value=count - 1))
        client = Channel(Role.CLIENT, keys[index])
        server = Channel(Role.SERVER, ring)
        _handshake(client, server)
        self.assertEqual(server.peerKey, ring.identity(index))


class KeyReloaderTests(SynchronousTestCase):
    """
    L{KeyReloader} computes what a reload changes, without I/O beyond the
    key file.
    """

    def setUp(self) -> None:
        self.path = self.mktemp()
        _writeFile(self.path, _keyFile(b"alice " + ALICE, b"bob " + BOB))
        self.reloader = KeyReloader(readKeyFile(self.path), self.path)

    def test_addedAndRemoved(self) -> None:
        """
        Removing a line removes that key; a new line adds one; identities of
        the removed key are revoked, the others are not.
        """
        bob = self.reloader.keyring.identity(1)
        alice = self.reloader.keyring.identity(0)
        _writeFile(self.path, _keyFile(b"alice " + ALICE, b"carol " + CAROL))
        change = self.reloader.reload()
        self.assertEqual([i.name for i in change.added], ["carol"])
        self.assertEqual(change.removed, (bob,))
        self.assertTrue(change.revokes(bob))
        self.assertFalse(change.revokes(alice))
        self.assertFalse(change.revokes(None))
        self.assertIs(self.reloader.keyring, change.keyring)
        self.assertIn("1 added, 1 removed (bob ", change.describe())

    def test_renameRevokes(self) -> None:
        """
        A key given another name revokes the sessions admitted under the
        old name.
        """
        alice = self.reloader.keyring.identity(0)
        _writeFile(self.path, _keyFile(b"mallory " + ALICE, b"bob " + BOB))
        change = self.reloader.reload()
        self.assertTrue(change.revokes(alice))

    def test_badFileKeepsKeys(self) -> None:
        """
        A key file that fails to parse raises L{KeyFileError} and the keys
        in force stay.
        """
        before = self.reloader.keyring
        _writeFile(self.path, _keyFile(b"alice " + ALICE[:-3]))
        self.assertRaises(KeyFileError, self.reloader.reload)
        self.assertIs(self.reloader.keyring, before)

    def test_noFile(self) -> None:
        """
        Without a key file, only a given keyring can be loaded.
        """
        reloader = KeyReloader(Keyring([ALICE]))
        self.assertRaises(ValueError, reloader.reload)
        change = reloader.reload(Keyring([BOB]))
        self.assertEqual(len(change.removed), 1)


class ServerIdentityTests(SynchronousTestCase):
    """
    A L{Server} on a memory reactor with named keys: sessions carry names,
    the registry finds them by name, and L{Server.reloadKeys} revokes.
    """

    def setUp(self) -> None:
        self.reactor = MemoryReactorClock()
        self.events: list[LogEvent] = []
        self.path = self.mktemp()
        _writeFile(self.path, _keyFile(b"alice " + ALICE, b"bob " + BOB, ANON))
        self.server = Server(
            "tcp:5000",
            None,
            keyFile=self.path,
            reactor=self.reactor,
            logger=Logger(observer=self.events.append),
        )
        self.network = Network(self.server.factory, self.reactor)

    def connect(self, key: bytes, host: str = "127.0.0.1", port: int = 40000) -> Link:
        """
        Connect a client holding C{key} and complete its handshake.
        """
        link = self.network.connect(host, port, BridgeConfig.fromKey(key))
        assert link is not None
        self.network.pump()
        return link

    def test_names(self) -> None:
        """
        Each server session carries the name and key ID of the client's key;
        the client's session carries its own key ID and no name.
        """
        alice = self.connect(ALICE, port=40001)
        anonymous = self.connect(ANON, port=40002)
        self.assertEqual(alice.server.name, "alice")
        self.assertEqual(alice.server.keyId, Keyring([ALICE]).keyIDs()[0])
        self.assertEqual(alice.client.keyId, alice.server.keyId)
        self.assertIsNone(alice.client.name)
        self.assertIsNone(anonymous.server.name)
        self.assertEqual(anonymous.server.keyId, Keyring([ANON]).keyIDs()[0])

    def test_lookups(self) -> None:
        """
        C{get}, C{allNamed}, C{pop} and C{in} take names, newest session
        first, before IP addresses; IP addresses keep working.
        """
        first = self.connect(ALICE, "10.0.0.5", 40001)
        bob = self.connect(BOB, "10.0.0.5", 40002)
        second = self.connect(ALICE, "10.0.0.6", 40003)
        self.assertIs(self.server.get("alice"), second.server)
        self.assertEqual(self.server.allNamed("alice"), [first.server, second.server])
        self.assertEqual(self.server.allNamed("nobody"), [])
        self.assertIs(self.server.get("10.0.0.5"), bob.server)
        self.assertIs(self.server.get("10.0.0.5:40001"), first.server)
        self.assertIn("bob", self.server.registry)
        self.assertIs(self.server.pop("alice"), second.server)
        self.assertIs(self.server.get("alice"), first.server)
        bob.client.close()
        self.network.pump()
        self.assertIsNone(self.server.get("bob"))
        self.assertNotIn("bob", self.server.registry)

    def test_waitForName(self) -> None:
        """
        L{Server.waitFor} with a name fires when a session of that name
        opens, not for another name; it times out as with an address.
        """
        d = self.server.waitFor("bob")
        self.connect(ALICE, port=40001)
        self.assertNoResult(d)
        bob = self.connect(BOB, port=40002)
        self.assertIs(self.successResultOf(d), bob.server)
        self.assertIs(self.successResultOf(self.server.waitFor("bob")), bob.server)
        late = self.server.waitFor("carol", timeout=5)
        self.reactor.advance(5)
        self.failureResultOf(late, OperationTimedOut)

    def test_reloadRevokes(self) -> None:
        """
        After bob's line is removed and carol's added, L{Server.reloadKeys}
        closes bob's session with L{CloseCode.POLICY} and "key revoked",
        leaves alice's and the anonymous session open and working, and
        accepts carol at once.
        """
        alice = self.connect(ALICE, port=40001)
        bob = self.connect(BOB, port=40002)
        anonymous = self.connect(ANON, port=40003)
        _writeFile(self.path, _keyFile(b"alice " + ALICE, ANON, b"carol " + CAROL))
        change = self.server.reloadKeys()
        self.assertEqual([i.name for i in change.removed], ["bob"])
        self.network.pump()
        self.assertIsNotNone(bob.client.closeReason)
        assert bob.client.closeReason is not None
        error = bob.client.closeReason.value
        self.assertIsInstance(error, PeerClosed)
        self.assertEqual(bob.client.closeCode, CloseCode.POLICY)
        self.assertEqual(bob.client.closeMessage, REVOKED_REASON)
        for link in (alice, anonymous):
            self.assertIsNone(link.client.closeReason)
            link.client.sendBuffer("still here")
        self.network.pump()
        self.assertEqual(self.successResultOf(alice.server.recvBuffer()), "still here")
        self.assertEqual(self.successResultOf(anonymous.server.recvBuffer()), "still here")
        carol = self.connect(CAROL, port=40004)
        self.assertTrue(carol.server.established)
        self.assertEqual(carol.server.name, "carol")
        refused = self.connect(BOB, port=40005)
        self.assertFalse(refused.server.established)
        self.assertTrue(any("bob" in str(e.get("change", "")) for e in self.events))

    def test_revokedDuringHandshake(self) -> None:
        """
        A connection accepted before the reload, whose hello arrives after
        it, is closed with "key revoked" as soon as it opens; one with a
        key still accepted opens normally.
        """
        bob = self.network.connect("127.0.0.1", 40002, BridgeConfig.fromKey(BOB))
        alice = self.network.connect("127.0.0.1", 40001, BridgeConfig.fromKey(ALICE))
        assert bob is not None and alice is not None
        self.server.reloadKeys(Keyring([ALICE], ["alice"]))
        self.network.pump()
        self.assertEqual(bob.client.closeCode, CloseCode.POLICY)
        self.assertEqual(bob.client.closeMessage, REVOKED_REASON)
        self.assertIsNone(self.server.get("bob"))
        self.assertIsNone(alice.client.closeReason)
        self.assertIs(self.server.get("alice"), alice.server)

    def test_reloadRevokesPopped(self) -> None:
        """
        A session taken out with C{pop} is still revoked.
        """
        bob = self.connect(BOB, port=40002)
        self.server.pop("bob")
        self.server.reloadKeys(Keyring([ALICE], ["alice"]))
        self.network.pump()
        self.assertEqual(bob.client.closeMessage, REVOKED_REASON)

    def test_badReloadKeepsKeys(self) -> None:
        """
        A key file that fails to parse on reload is logged and raised; the
        old keys stay in force and no session is disturbed.
        """
        bob = self.connect(BOB, port=40002)
        _writeFile(self.path, b"alice not-a-key\n")
        self.assertRaises(KeyFileError, self.server.reloadKeys)
        self.network.pump()
        self.assertIsNone(bob.client.closeReason)
        self.assertTrue(self.connect(BOB, port=40003).server.established)
        [logged] = [e for e in self.events if "Keeping the current keys" in e["log_format"]]
        self.assertIn("line 1", str(logged["error"]))


class FakeReactor:
    """
    Records the calls a signal handler hands to the reactor.
    """

    def __init__(self) -> None:
        self.calls: list[Any] = []

    def callFromThread(self, function: Any, *args: Any) -> None:
        self.calls.append((function, args))


class SignalTests(SynchronousTestCase):
    """
    L{KeyReloadOnSignal} reloads the server's keys on its signal.
    """

    def test_reloadOnSignal(self) -> None:
        """
        The signal handler hands L{KeyReloadOnSignal.reload} to the reactor,
        which reloads the server's keys; a bad key file is left to the
        server's log.  Stopping restores the previous handler.
        """
        if not hasattr(signal, "SIGUSR2"):
            raise self.skipTest("needs SIGUSR2")
        reloads: list[object] = []

        class FakeServer:
            def reloadKeys(self) -> None:
                reloads.append(None)
                if len(reloads) == 2:
                    raise KeyFileError("bad", "path")

        reactor = FakeReactor()
        previous = signal.getsignal(signal.SIGUSR2)
        service = KeyReloadOnSignal(FakeServer(), reactor, signal.SIGUSR2)
        service.startService()
        try:
            os.kill(os.getpid(), signal.SIGUSR2)
            [(function, args)] = reactor.calls
            function(*args)
            function(*args)
        finally:
            service.stopService()
        self.assertEqual(len(reloads), 2)
        self.assertEqual(signal.getsignal(signal.SIGUSR2), previous)


class MakeServiceSignalTests(SynchronousTestCase):
    """
    C{twistd netstructer} reloads on C{SIGHUP} only keys that came from a
    key file.
    """

    def setUp(self) -> None:
        self.home = Path(self.mktemp()).resolve()
        self.home.mkdir(parents=True)

    def makeService(self, *argv: str, environ: dict[str, str]) -> Server:
        options = tap.Options(environ={"HOME": str(self.home), **environ})
        options.parseOptions(list(argv))
        service = tap.makeService(options, MemoryReactorClock())
        assert isinstance(service, Server)
        return service

    def test_keyFile(self) -> None:
        """
        With C{--key-file}, a L{KeyReloadOnSignal} for C{SIGHUP} is a child
        of the server, and the server reloads that file.
        """
        path = self.home / "server.key"
        _writeFile(path, _keyFile(b"alice " + ALICE))
        service = self.makeService("--key-file", str(path), environ={})
        [reloader] = [s for s in service if isinstance(s, KeyReloadOnSignal)]
        self.assertIs(reloader.server, service)
        self.assertEqual(service.config.keyring.names(), ("alice",))
        _writeFile(path, _keyFile(b"bob " + BOB))
        self.assertEqual([i.name for i in service.reloadKeys().added], ["bob"])

    def test_environment(self) -> None:
        """
        Keys from C{NETSTRUCTER_KEY} cannot be reloaded: no signal service.
        """
        service = self.makeService(environ={"NETSTRUCTER_KEY": ALICE.decode("ascii")})
        self.assertEqual([s for s in service if isinstance(s, KeyReloadOnSignal)], [])
        self.assertRaises(ValueError, service.reloadKeys)


class BlockingSessionTests(SynchronousTestCase):
    """
    The blocking server's L{Session} shows the protocol's name and key ID.
    """

    def test_nameAndKeyId(self) -> None:
        """
        A L{Session} copies C{name} and C{keyId} from its protocol.
        """
        reactor = MemoryReactorClock()
        server = Server("tcp:5000", Keyring([ALICE], ["alice"]), reactor=reactor)
        network = Network(server.factory, reactor)
        link = network.connect("127.0.0.1", 40000, BridgeConfig.fromKey(ALICE))
        assert link is not None
        network.pump()
        session = Session(link.server)
        self.assertEqual(session.name, "alice")
        self.assertEqual(session.keyId, Keyring([ALICE]).keyIDs()[0])
        self.assertIn("alice", repr(session))
