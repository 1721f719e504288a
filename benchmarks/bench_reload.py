"""
Named keys: the handshake's cost with many keys, and reloading the keys of a
server with many live sessions.

    PYTHONPATH=. python benchmarks/bench_reload.py [--quick] [--sessions N]

Two measurements, in memory (no sockets, so the figures are CPU time):

  - the server's handshake time (the client's hello, and its key
    confirmation) with 1 key and with 1 000 named keys on the server's
    keyring, the client's key first on the ring, last, and absent (a
    refused hello): the server tries the keys in turn, since nothing in the
    hello says which key the client holds;
  - a server (L{netstructer.server.Server} on a memory reactor) with 1 000
    named keys and one live session per key; one line is removed from the
    key file and L{Server.reloadKeys} called: its time (reading and
    parsing the file, the new keyring's derivations, and the revocation
    scan), then every session is checked: exactly one closed (the
    revoked key's, with "key revoked"), every other still established and
    carrying a value both ways.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from netstructer.channel import Channel, Role, warmKeyring
from netstructer.errors import AuthenticationError
from netstructer.keys import Keyring, generateKey, keyFileLine
from netstructer.protocol import BridgeConfig, BridgeProtocol
from netstructer.registry import REVOKED_REASON
from netstructer.server import Server

SERVER_ADDRESS = IPv4Address("TCP", "127.0.0.1", 5000)


def _serverHandshake(client: Channel, server: Channel) -> float:
    """
    @return: The seconds the server spent on the client's hello and key
        confirmation (nothing if the hello was refused).
    """
    (hello,) = client.framesToSend()
    started = time.perf_counter()
    try:
        server.receiveFrame(hello)
    except AuthenticationError:
        return time.perf_counter() - started
    elapsed = time.perf_counter() - started
    for frame in server.framesToSend():
        client.receiveFrame(frame)
    (confirmation,) = client.framesToSend()
    started = time.perf_counter()
    server.receiveFrame(confirmation)
    return elapsed + time.perf_counter() - started


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[len(ordered) // 2]


def handshakeRows(quick: bool) -> list[dict[str, object]]:
    """
    The server's handshake time with 1 and 1 000 keys.
    """
    rows: list[dict[str, object]] = []
    for suite in ("noise", "fernet"):
        for count in (1, 1000):
            keys = [generateKey() for _ in range(count)]
            ring = Keyring(keys, [f"client{i}" for i in range(count)])
            warmKeyring(ring)
            cases = [("first", keys[0]), ("last", keys[-1]), ("absent", generateKey())]
            if count == 1:
                cases = [("only", keys[0]), ("absent", cases[-1][1])]
            for where, key in cases:
                repeat = (50 if quick else 200) if count > 1 else (200 if quick else 1000)
                times = [
                    _serverHandshake(
                        Channel(Role.CLIENT, key, suite=suite),
                        Channel(Role.SERVER, ring, suite=suite),
                    )
                    for _ in range(repeat)
                ]
                rows.append(
                    {
                        "name": f"{suite}: server handshake, {count} keys, client key {where}",
                        "value": _median(times) * 1e3,
                        "unit": "ms",
                    }
                )
    return rows


class _Link:
    """
    One in-memory connection to the server's factory.
    """

    def __init__(self, server: Server, clock: Clock, key: bytes, port: int) -> None:
        address = IPv4Address("TCP", "10.0.0.1", port)
        proto = server.factory.buildProtocol(address)
        assert proto is not None
        self.server = proto
        self.client = BridgeProtocol(Role.CLIENT, BridgeConfig.fromKey(key), clock)
        self.serverTransport = StringTransport(hostAddress=SERVER_ADDRESS, peerAddress=address)
        self.clientTransport = StringTransport(hostAddress=address, peerAddress=SERVER_ADDRESS)
        self.server.makeConnection(self.serverTransport)
        self.client.makeConnection(self.clientTransport)

    def pump(self) -> bool:
        """
        Move the bytes each side wrote to the other; end a side whose
        transport closed.

        @return: Whether anything moved.
        """
        moved = False
        for source, target in (
            (self.clientTransport, self.server),
            (self.serverTransport, self.client),
        ):
            data = source.value()
            if data:
                source.clear()
                moved = True
                if target.closeReason is None:
                    target.dataReceived(data)
        from twisted.internet.error import ConnectionDone
        from twisted.python.failure import Failure

        for transport, proto in (
            (self.clientTransport, self.client),
            (self.serverTransport, self.server),
        ):
            if transport.disconnecting and proto.closeReason is None and not transport.value():
                proto.connectionLost(Failure(ConnectionDone()))
                moved = True
        return moved


def _pumpAll(links: list[_Link], clock: Clock) -> None:
    for _ in range(100):
        clock.advance(0)
        moved = False
        for link in links:
            moved = link.pump() or moved
        if not moved:
            return
    raise AssertionError("the links did not settle")


def _writeKeys(path: Path, lines: list[str]) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write("".join(line + "\n" for line in lines))


def reloadRows(sessions: int) -> list[dict[str, object]]:
    """
    Reload the keys of a server with C{sessions} live named sessions,
    revoking one.
    """
    keys = [generateKey() for _ in range(sessions)]
    lines = [keyFileLine(key, f"client{i}") for i, key in enumerate(keys)]
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "server.key"
        _writeKeys(path, lines)
        clock = Clock()
        server = Server(
            "tcp:5000",
            None,
            keyFile=path,
            reactor=clock,
            maxSessions=sessions + 10,
            maxPerIP=sessions + 10,
            keepAliveInterval=None,
        )
        started = time.perf_counter()
        links = [_Link(server, clock, key, 10000 + i) for i, key in enumerate(keys)]
        _pumpAll(links, clock)
        connectSeconds = time.perf_counter() - started
        assert all(link.server.established for link in links), "a session did not open"
        assert server.count() == sessions
        revoked = sessions // 2
        _writeKeys(path, lines[:revoked] + lines[revoked + 1 :])
        started = time.perf_counter()
        change = server.reloadKeys()
        reloadSeconds = time.perf_counter() - started
        _pumpAll(links, clock)
        closed = [i for i, link in enumerate(links) if link.client.closeReason is not None]
        assert closed == [revoked], f"closed: {closed}"
        assert links[revoked].client.closeMessage == REVOKED_REASON
        assert [each.name for each in change.removed] == [f"client{revoked}"]
        for i, link in enumerate(links):
            if i != revoked:
                link.client.sendBuffer(i)
                link.server.sendBuffer(-i)
        _pumpAll(links, clock)
        carried = 0
        for i, link in enumerate(links):
            if i == revoked:
                continue
            fromClient = link.server.recvBuffer()
            fromServer = link.client.recvBuffer()
            if fromClient.called and fromServer.called:
                carried += 1
        dropped = sessions - 1 - carried
        # A reload that changes nothing, for comparison.
        started = time.perf_counter()
        server.reloadKeys()
        unchangedSeconds = time.perf_counter() - started
    return [
        {"name": f"{sessions} sessions: open (in memory)", "value": connectSeconds, "unit": "s"},
        {
            "name": f"{sessions} sessions: reloadKeys, 1 key removed",
            "value": reloadSeconds * 1e3,
            "unit": "ms",
        },
        {
            "name": f"{sessions} sessions: reloadKeys, nothing changed",
            "value": unchangedSeconds * 1e3,
            "unit": "ms",
        },
        {
            "name": f"{sessions} sessions: closed by the reload",
            "value": len(closed),
            "unit": "sessions",
        },
        {"name": f"{sessions} sessions: others dropped", "value": dropped, "unit": "sessions"},
    ]


def run(quick: bool = False, sessions: int = 1000) -> list[dict[str, object]]:
    """
    Measure, and return rows of C{name}, C{value}, C{unit}.

    @param quick: Fewer repeats of the handshakes, for a smoke run.
    @param sessions: Live sessions (and keys) for the reload.
    """
    return handshakeRows(quick) + reloadRows(sessions)


def main() -> None:
    """
    Print the measurements as a table.
    """
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats")
    parser.add_argument("--sessions", type=int, default=1000, help="live sessions to reload")
    args = parser.parse_args()
    for row in run(quick=args.quick, sessions=args.sessions):
        print(f"{row['name']:<60} {row['value']:>12.3f} {row['unit']}")


if __name__ == "__main__":
    main()
