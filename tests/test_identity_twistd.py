# -*- test-case-name: tests.test_identity_twistd -*-
"""
End to end: named keys and revocation on C{SIGHUP} with a real C{twistd
netstructer} process on a free loopback port, and the blocking server's
C{reloadKeys} over loopback.  Every wait is bounded, and the
process is killed when the test ends.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from twisted.internet import defer
from twisted.trial.unittest import TestCase

from netstructer import cli
from netstructer.client import connect
from netstructer.errors import SessionClosed
from netstructer.keys import generateKey
from netstructer.protocol import BridgeProtocol
from netstructer.registry import REVOKED_REASON
from tests import test_twistd as _twistd

DEADLINE = 20.0


def _writeKeys(path: Path, *lines: bytes) -> None:
    """
    Replace the server's key file (mode 0600) with C{lines}.
    """
    temporary = path.with_name(path.name + ".new")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(b"".join(line + b"\n" for line in lines))
    os.replace(temporary, path)


class SighupTests(TestCase):
    """
    C{twistd netstructer} reloads its key file on C{SIGHUP}.
    """

    timeout = 60
    startTwistd = _twistd.TwistdEndToEndTests.startTwistd
    log = _twistd.TwistdEndToEndTests.log

    def setUp(self) -> None:
        """
        A temporary home with a key file naming alice and bob, and a port.
        """
        from twisted.internet import reactor

        self.reactor: Any = reactor
        self.home = Path(self.mktemp()).resolve()
        self.home.mkdir(parents=True)
        self.keyFile = self.home / "server.key"
        self.alice, self.bob, self.carol = generateKey(), generateKey(), generateKey()
        _writeKeys(self.keyFile, b"alice " + self.alice, b"bob " + self.bob)
        self.port = _twistd._freePort()
        self.env = _twistd._environment(self.home)

    async def connect(self, key: bytes) -> BridgeProtocol:
        """
        Connect with C{key}; the session is closed when the test ends.
        """
        session = await connect(self.reactor, ("127.0.0.1", self.port), key, timeout=10)
        self.addCleanup(session.close)
        return session

    async def echo(self, session: BridgeProtocol) -> None:
        """
        The echo handler returns the example value on C{session}.
        """
        session.sendBuffer(cli.EXAMPLE_VALUE)
        self.assertEqual(await session.recvBuffer(timeout=10), cli.EXAMPLE_VALUE)

    async def waitForLog(self, text: str, count: int = 1) -> None:
        """
        Wait (at most L{DEADLINE} seconds) until the log holds C{text}
        C{count} times.
        """
        deadline = time.monotonic() + DEADLINE
        while self.log().count(text) < count:
            if time.monotonic() > deadline:
                self.fail(f"{text!r} not logged within {DEADLINE} s:\n{self.log()}")
            await _sleep(self.reactor, 0.05)

    async def test_revokeOnSighup(self) -> None:
        """
        Two named clients are connected; bob's key is removed from the file
        and carol's added, then C{SIGHUP}: bob's session is closed with
        "key revoked", alice's goes on undisturbed, carol gets in, bob cannot
        come back.  A broken key file on the next C{SIGHUP} is logged and
        changes nothing.
        """
        process = self.startTwistd()
        alice = await self.connect(self.alice)
        bob = await self.connect(self.bob)
        await self.echo(alice)
        await self.echo(bob)

        _writeKeys(self.keyFile, b"alice " + self.alice, b"carol " + self.carol)
        process.send_signal(signal.SIGHUP)
        closed = bob.recvBuffer(timeout=DEADLINE)
        with self.assertRaises(SessionClosed):
            await closed
        self.assertEqual(bob.closeMessage, REVOKED_REASON)
        await self.waitForLog("Keys reloaded")
        self.assertIn("1 added, 1 removed (bob", self.log())

        await self.echo(alice)
        carol = await self.connect(self.carol)
        await self.echo(carol)
        with self.assertRaises(Exception) as refused:
            await connect(self.reactor, ("127.0.0.1", self.port), self.bob, timeout=10)
        self.assertIn("key", str(refused.exception))

        _writeKeys(self.keyFile, b"alice " + self.alice + b" trailing")
        process.send_signal(signal.SIGHUP)
        await self.waitForLog("Keeping the current keys")
        await self.echo(alice)
        await self.echo(carol)
        self.assertIsNone(alice.closeReason)
        self.assertNotIn("Traceback", self.log())


def _sleep(reactor: Any, seconds: float) -> defer.Deferred[None]:
    """
    @return: A Deferred firing after C{seconds} on C{reactor}.
    """
    d: defer.Deferred[None] = defer.Deferred()
    reactor.callLater(seconds, d.callback, None)
    return d


_BLOCKING_SCENARIO = r"""
import os, sys
from netstructer import blocking
from netstructer.errors import SessionClosed
from netstructer.keys import generateKey

path = sys.argv[1]
alice, bob, carol = generateKey(), generateKey(), generateKey()

def write(*lines):
    fd = os.open(path + ".new", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(b"".join(line + b"\n" for line in lines))
    os.replace(path + ".new", path)

write(b"alice " + alice, b"bob " + bob)
with blocking.Server(("127.0.0.1", 0), keyFile=path) as server:
    server.listen()
    a = blocking.link(("127.0.0.1", server.port), alice, timeout=20)
    b = blocking.link(("127.0.0.1", server.port), bob, timeout=20)
    sa, sb = server.waitFor("alice", timeout=20), server.waitFor("bob", timeout=20)
    assert (sa.name, sb.name) == ("alice", "bob"), (sa.name, sb.name)
    assert [s.name for s in server.allNamed("bob")] == ["bob"]
    write(b"alice " + alice, b"carol " + carol)
    change = server.reloadKeys()
    assert [i.name for i in change.removed] == ["bob"], change
    try:
        b.recvBuffer(timeout=20)
    except SessionClosed as e:
        assert e.reason == "key revoked", e.reason
    else:
        raise AssertionError("bob's link was not closed")
    a.sendBuffer("still here")
    assert sa.recvBuffer(timeout=20) == "still here"
    c = blocking.link(("127.0.0.1", server.port), carol, timeout=20)
    assert server.waitFor("carol", timeout=20).name == "carol"
    write(b"not a key")
    try:
        server.reloadKeys()
    except Exception as e:
        assert "line 1" in str(e), e
    else:
        raise AssertionError("a broken key file was loaded")
    sa.sendBuffer("after")
    assert a.recvBuffer(timeout=20) == "after"
    for each in (a, c):
        each.close()
print("PASS")
"""


class BlockingReloadTests(TestCase):
    """
    The blocking server's C{reloadKeys}, over loopback, in a child process
    (the blocking API runs its own reactor thread).
    """

    def test_reloadKeys(self) -> None:
        """
        Named sessions are found by name; after bob's key is removed,
        C{reloadKeys} closes bob's link with "key revoked", alice's goes
        on, carol gets in; a broken file is refused and changes nothing.
        """
        home = Path(self.mktemp()).resolve()
        home.mkdir(parents=True)
        result = subprocess.run(
            [sys.executable, "-c", _BLOCKING_SCENARIO, str(home / "server.key")],
            env=_twistd._environment(home),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        self.assertIn("PASS", result.stdout)
