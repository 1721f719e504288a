# -*- test-case-name: tests.test_independent -*-
"""
The reference implementation talks to the independent one of
L{tests._independent}, written from C{docs/protocol.rst} alone, over real
loopback sockets (127.0.0.1), in every suite and both directions: the
independent client against L{netstructer.blocking.Server} (the Twisted
server), and the blocking L{netstructer.blocking.Link} against the
independent server.  Each scenario runs in a child process, as in
L{tests.test_blocking}, because the blocking server runs the global reactor
in a thread.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

_ROOT = Path(__file__).resolve().parent.parent
_SUITES = {1: ("noise", "AESGCM"), 2: ("noise", "ChaChaPoly"), 3: ("fernet", "AESGCM")}


def sampleValues() -> list[Any]:
    """
    @return: Values of every type of section 6 of the document.
    """
    return [
        None,
        True,
        False,
        0,
        -1,
        2**63 - 1,
        -(2**63),
        2**64 - 1,
        2**64,
        -(2**64) - 1,
        3**200,
        1.5,
        -0.0,
        complex(1.5, -2.0),
        "text é",
        b"bytes",
        bytearray(b"\x00\xff"),
        [1, [2, 3]],
        (1, "two", (3,)),
        (),
        {1, 2, 3},
        frozenset({"a", "b"}),
        set(),
        {b"key": "value", "n": {1: (1, 2)}, (1, 2): frozenset({3})},
        {"nested": [(1, {2, 3}), {b"x": bytearray(b"y")}, [complex(0, 1), 2**100]]},
        bytes(range(256)) * 40,
    ]


def _check(condition: bool, message: str = "check failed") -> None:
    if not condition:
        raise AssertionError(message)


def _same(a: Any, b: Any) -> bool:
    if type(a) is not type(b):
        return False
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, float) and a == 0:
        return str(a) == str(b)
    return bool(a == b)


def scenarioIndependentClient(suiteID: int) -> None:
    """
    The independent client against the reference (Twisted) server, run by
    L{netstructer.blocking.Server}, echoing.
    """
    from netstructer import blocking
    from netstructer.keys import generateKey
    from tests import _independent

    key = generateKey()
    suite, _ = _SUITES[suiteID]

    def echo(session: blocking.Session) -> None:
        while True:
            session.sendBuffer(session.recvBuffer(timeout=30))

    with blocking.Server(("127.0.0.1", 0), key, suite=suite) as server:
        server.listen_on(echo)
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=20)
        session = _independent.connect(sock, key, suiteID)
        _check(session.version == 2, "the session is not version 2")
        for value in sampleValues():
            session.sendValue(value)
            back = session.receive()
            _check(_same(back, value), f"{value!r} came back as {back!r}")
        session.sendValues([1, (2,), {3}])
        _check([session.receive() for _ in range(3)] == [1, (2,), {3}], "VALUES")
        session.close(0, "bye")
        reply = session.receive()
        _check(reply == ("close", 0, ""), f"close reply {reply!r}")
        sock.close()


def _independentServer(
    key: bytes, values: list[Any]
) -> tuple[tuple[str, int], threading.Thread, list[BaseException]]:
    """
    Start the independent server on a thread: it accepts one connection,
    echoes C{len(values)} values, closes the session first (code 1,
    C{"done"}) and checks the client's CLOSE reply and its end of the
    connection.

    @return: Its address, its thread, and the errors it met.
    """
    from tests import _independent

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    listener.settimeout(20)
    errors: list[BaseException] = []

    def serve() -> None:
        try:
            conn, _ = listener.accept()
            conn.settimeout(20)
            session = _independent.accept(conn, key)
            _check(session.version == 2, "the session is not version 2")
            for _ in values:
                session.sendValue(session.receive())
            session.close(1, "done")
            reply = session.receive()
            _check(reply == ("close", 1, ""), f"close reply {reply!r}")
            _check(conn.recv(1) == b"", "the client sent more after its CLOSE")
            conn.close()
        except BaseException as e:  # noqa: BLE001 - reported by the scenario
            errors.append(e)
        finally:
            listener.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return listener.getsockname(), thread, errors


def _joined(thread: threading.Thread, errors: list[BaseException]) -> None:
    thread.join(20)
    _check(not thread.is_alive(), "the independent server did not finish")
    if errors:
        raise errors[0]


def scenarioIndependentServer(suiteID: int) -> None:
    """
    The blocking link against the independent server, which echoes and
    closes the session first.
    """
    from netstructer import blocking
    from netstructer.keys import generateKey

    key = generateKey()
    suite, cipher = _SUITES[suiteID]
    values = sampleValues()
    address, thread, errors = _independentServer(key, values)
    sock = socket.create_connection(address, timeout=20)
    link = blocking.Link(sock, key, timeout=20, suite=suite, cipher=cipher)
    _check(link.protocolVersion == 2, "the link is not version 2")
    for value in values:
        link.sendBuffer(value)
        back = link.recvBuffer()
        _check(_same(back, value), f"{value!r} came back as {back!r}")
    try:
        link.recvBuffer()
    except Exception as e:  # noqa: BLE001 - the peer's close is expected
        _check("done" in str(e) or "clos" in str(e).lower(), f"unexpected end: {e!r}")
    link.close()
    _joined(thread, errors)


def scenarioIndependentServerTwisted(suiteID: int) -> None:
    """
    The Twisted client (L{netstructer.client.connect}) against the
    independent server, which echoes and closes the session first: the
    client sees L{SessionClosed} with the server's reason and answers the
    CLOSE.
    """
    from twisted.internet.task import react

    from netstructer.client import connect
    from netstructer.errors import SessionClosed
    from netstructer.keys import generateKey

    key = generateKey()
    suite, cipher = _SUITES[suiteID]
    values = sampleValues()
    address, thread, errors = _independentServer(key, values)

    async def main(reactor: Any) -> None:
        session = await connect(reactor, address, key, suite=suite, cipher=cipher, timeout=20)
        for value in values:
            session.sendBuffer(value)
            back = await session.recvBuffer(timeout=20)
            _check(_same(back, value), f"{value!r} came back as {back!r}")
        try:
            await session.recvBuffer(timeout=20)
        except SessionClosed as e:
            _check(e.reason == "done", f"closed with {e.reason!r}")
        else:
            raise AssertionError("no close after the values")
        await session.whenClosed()

    def run(reactor: Any) -> Any:
        from twisted.internet.defer import Deferred

        return Deferred.fromCoroutine(main(reactor))

    try:
        react(run)
    except SystemExit as e:
        _check(e.code in (0, None), f"the reactor ended with {e.code!r}")
    _joined(thread, errors)


_SCENARIOS = {
    "client": scenarioIndependentClient,
    "server": scenarioIndependentServer,
    "twisted": scenarioIndependentServerTwisted,
}


class IndependentImplementationTests(SynchronousTestCase):
    """
    The reference and the independent implementation interoperate.
    """

    def runScenario(self, name: str, suiteID: int) -> None:
        result = subprocess.run(
            [sys.executable, "-m", "tests.test_independent", name, str(suiteID)],
            cwd=_ROOT,
            capture_output=True,
            text=True,
            timeout=90,
            check=False,
        )
        message = f"{name} {suiteID} failed:\n{result.stdout}\n{result.stderr}"
        self.assertEqual(result.returncode, 0, message)
        self.assertIn(f"PASS {name} {suiteID}", result.stdout, message)

    def test_independentClient(self) -> None:
        """
        The independent client talks to the reference server in every suite:
        every type of value, a VALUES record, the close handshake.
        """
        for suiteID in _SUITES:
            self.runScenario("client", suiteID)

    def test_independentServer(self) -> None:
        """
        The blocking link talks to the independent server in every suite,
        and answers its CLOSE.
        """
        for suiteID in _SUITES:
            self.runScenario("server", suiteID)

    def test_independentServerTwistedClient(self) -> None:
        """
        The Twisted client talks to the independent server in every suite,
        learns of its CLOSE with the reason, and answers it.
        """
        for suiteID in _SUITES:
            self.runScenario("twisted", suiteID)

    def test_codecMatchesReference(self) -> None:
        """
        The independent codec writes the bytes L{netstructer.values.encode}
        writes, and each decodes the other's.
        """
        from netstructer.values import decode, encode
        from tests import _independent

        for value in sampleValues():
            self.assertEqual(_independent.encodeValue(value), encode(value), repr(value))
            self.assertTrue(_same(_independent.decodeValue(encode(value)), value), repr(value))
            self.assertTrue(_same(decode(_independent.encodeValue(value)), value), repr(value))


if __name__ == "__main__":
    _SCENARIOS[sys.argv[1]](int(sys.argv[2]))
    print("PASS", sys.argv[1], sys.argv[2])
