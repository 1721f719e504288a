# -*- test-case-name: tests.test_relay -*-
"""
Tests for the relay: the wire format (L{netstructer.relaywire}), the
backend and per-session endpoint (L{netstructer.relay}) without a reactor,
the access policy (L{netstructer.relaypolicy}), the client's state machine
(L{netstructer.relayclient}), and the whole path in memory: clients
connected to a L{Server}'s factory over L{StringTransport}s.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import LogEvent, Logger
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from netstructer import tap
from netstructer.errors import (
    DecodeError,
    NoSuchSession,
    OperationTimedOut,
    RecipientBusy,
    RelayRefused,
    RemoteProtocolError,
    ServerInitializeError,
)
from netstructer.keys import Keyring, generateKey
from netstructer.protocol import BridgeConfig
from netstructer.relay import (
    MAX_PENDING_ERRORS,
    RELAY_DELIVER,
    RELAY_ERROR,
    RELAY_PUBLISH,
    RELAY_SEND,
    RELAY_SUBSCRIBE,
    RELAY_UNSUBSCRIBE,
    IRelayBackend,
    IRelayEndpoint,
    IRelayPolicy,
    LocalRelayBackend,
    RelayedValue,
    RelayEndpoint,
    RelayErrorCode,
    RelayOp,
    deliverBody,
    errorBody,
    parseDeliver,
    parseError,
    parseRequest,
    requestBody,
)
from netstructer.relayclient import RelayClient
from netstructer.relaypolicy import AllowNamed, RelayPolicy, loadPolicy, parsePolicy
from netstructer.server import Server
from netstructer.values import decode, encode
from tests.test_registry import Link, Network
from tests.test_tap import _TemporaryHome

KEY = generateKey()

names = st.text(min_size=1, max_size=60).filter(lambda n: len(n.encode("utf-8")) <= 255)


class WireTests(SynchronousTestCase):
    """
    The bodies of relay records.
    """

    @given(names, st.binary(min_size=1, max_size=50))
    def test_requestRoundTrip(self, name: str, value: bytes) -> None:
        """
        A send or publish request parses back to its name and value.
        """
        for recordType, op in ((RELAY_SEND, RelayOp.SEND), (RELAY_PUBLISH, RelayOp.PUBLISH)):
            request = parseRequest(recordType, requestBody(name, value))
            self.assertEqual((request.op, request.name, request.value), (op, name, value))

    @given(st.one_of(st.none(), names), st.one_of(st.none(), names), st.binary(min_size=1))
    def test_deliverRoundTrip(self, sender: str | None, topic: str | None, value: bytes) -> None:
        """
        A delivery parses back to its sender, topic and value.
        """
        self.assertEqual(parseDeliver(deliverBody(sender, topic, value)), (sender, topic, value))

    def test_errorRoundTrip(self) -> None:
        """
        An error record parses back to the error class of its code, with
        its name and message.
        """
        for code, cls in (
            (RelayErrorCode.NO_SUCH_SESSION, NoSuchSession),
            (RelayErrorCode.REFUSED, RelayRefused),
            (RelayErrorCode.BUSY, RecipientBusy),
        ):
            op, error = parseError(errorBody(code, RelayOp.PUBLISH, "bob", "why"))
            self.assertIs(op, RelayOp.PUBLISH)
            self.assertIsInstance(error, cls)
            self.assertEqual((error.name, str(error)), ("bob", "why"))

    def test_subscribeBody(self) -> None:
        """
        A subscription carries only its topic.
        """
        self.assertEqual(requestBody("news", what="topic"), b"\x04news")
        request = parseRequest(RELAY_UNSUBSCRIBE, b"\x04news")
        self.assertEqual((request.op, request.name), (RelayOp.UNSUBSCRIBE, "news"))

    def test_badNames(self) -> None:
        """
        Empty, overlong or non-text names are refused on the send path.
        """
        self.assertRaises(ValueError, requestBody, "", b"x")
        self.assertRaises(ValueError, requestBody, "a" * 256, b"x")
        self.assertRaises(TypeError, requestBody, b"bob", b"x")

    def test_malformed(self) -> None:
        """
        Malformed bodies are the peer's protocol errors.
        """
        for recordType, body in (
            (RELAY_SEND, b""),
            (RELAY_SEND, b"\x05bob"),
            (RELAY_SEND, b"\x03bob"),
            (RELAY_SEND, b"\x00\x90"),
            (RELAY_SEND, b"\x02\xff\xfe\x90"),
            (RELAY_SUBSCRIBE, b"\x04newsX"),
            (RELAY_DELIVER, b"\x03bob\x00\x90"),
            (0x17, b"\x03bob\x90"),
        ):
            self.assertRaises(RemoteProtocolError, parseRequest, recordType, body)
        self.assertRaises(RemoteProtocolError, parseDeliver, b"\x03bob\x00")
        self.assertRaises(RemoteProtocolError, parseDeliver, b"\x09bob")
        self.assertRaises(RemoteProtocolError, parseError, b"\x01")
        self.assertRaises(RemoteProtocolError, parseError, b"\x09\x01\x00")
        self.assertRaises(RemoteProtocolError, parseError, b"\x01\x01\x00\x00\x00\x01\x00\xff")
        self.assertRaises(RemoteProtocolError, parseError, b"\x01\x01\x00\x00\x00\x00\x00")

    def test_relayedValueUnpacks(self) -> None:
        """
        A L{RelayedValue} unpacks as C{(sender, value)}.
        """
        sender, value = RelayedValue("alice", [1, 2], "news")
        self.assertEqual((sender, value), ("alice", [1, 2]))


class FakeSession:
    """
    What a L{RelayEndpoint} is given by its adapter, recorded.

    @ivar sent: The records sent, as C{(type, body)}.
    @ivar writable: Whether the transport accepts writes.
    @ivar waiting: Callbacks waiting for the transport to drain.
    """

    def __init__(self) -> None:
        self.sent: list[tuple[int, bytes]] = []
        self.writable = True
        self.waiting: list[Any] = []

    def drain(self) -> None:
        """
        The transport accepts writes again.
        """
        self.writable = True
        waiting, self.waiting = self.waiting, []
        for call in waiting:
            call()

    def deliveries(self) -> list[tuple[str | None, str | None, object]]:
        """
        @return: The relayed values sent, decoded.
        """
        out = []
        for recordType, body in self.sent:
            if recordType == RELAY_DELIVER:
                sender, topic, value = parseDeliver(body)
                out.append((sender, topic, decode(value)))
        return out

    def errors(self) -> list[tuple[RelayOp, Exception]]:
        """
        @return: The errors sent.
        """
        return [parseError(body) for t, body in self.sent if t == RELAY_ERROR]


class EndpointTests(SynchronousTestCase):
    """
    L{RelayEndpoint} and L{LocalRelayBackend}, without a reactor.
    """

    def setUp(self) -> None:
        self.events: list[LogEvent] = []
        self.logger = Logger(observer=self.events.append)
        self.backend = LocalRelayBackend(logger=self.logger)

    def endpoint(
        self,
        name: str | None,
        policy: IRelayPolicy | None = None,
        maxQueued: int = 4,
        backend: Any = "default",
    ) -> tuple[RelayEndpoint, FakeSession]:
        session = FakeSession()
        endpoint = RelayEndpoint(
            name,
            self.backend if backend == "default" else backend,
            policy,
            lambda t, b: session.sent.append((t, b)),
            lambda: session.writable,
            session.waiting.append,
            decode,
            maxQueued=maxQueued,
            session=session,
            logger=self.logger,
        )
        return endpoint, session

    def test_interfaces(self) -> None:
        """
        The backend and endpoint provide their interfaces; so do policies.
        """
        endpoint, _ = self.endpoint("alice")
        verifyObject(IRelayBackend, self.backend)
        verifyObject(IRelayEndpoint, endpoint)
        verifyObject(IRelayPolicy, AllowNamed())
        verifyObject(IRelayPolicy, parsePolicy(""))

    def test_sendTo(self) -> None:
        """
        A value sent to a name reaches that session with the sender's name,
        in order.
        """
        alice, _ = self.endpoint("alice")
        _, bobSession = self.endpoint("bob")
        for i in range(3):
            alice.recordReceived(RELAY_SEND, requestBody("bob", encode(i)))
        self.assertEqual(
            bobSession.deliveries(), [("alice", None, 0), ("alice", None, 1), ("alice", None, 2)]
        )

    def test_noSuchSession(self) -> None:
        """
        A value for a name no session holds is reported to the sender, naming
        the recipient.
        """
        alice, aliceSession = self.endpoint("alice")
        alice.recordReceived(RELAY_SEND, requestBody("carol", encode(1)))
        [(op, error)] = aliceSession.errors()
        self.assertIs(op, RelayOp.SEND)
        self.assertIsInstance(error, NoSuchSession)
        self.assertEqual(error.name, "carol")
        self.assertIn("'carol'", str(error))

    def test_newestOfName(self) -> None:
        """
        The newest session of a name receives; when it ends, the older one
        does again.
        """
        alice, _ = self.endpoint("alice")
        _, old = self.endpoint("bob")
        new, newSession = self.endpoint("bob")
        alice.recordReceived(RELAY_SEND, requestBody("bob", encode(1)))
        new.ended()
        alice.recordReceived(RELAY_SEND, requestBody("bob", encode(2)))
        self.assertEqual(newSession.deliveries(), [("alice", None, 1)])
        self.assertEqual(old.deliveries(), [("alice", None, 2)])

    def test_boundedQueue(self) -> None:
        """
        A recipient whose transport is full queues up to its bound; further
        values are dropped and each drop is reported to the sender.  When the
        transport drains, the queue is written in order.
        """
        alice, aliceSession = self.endpoint("alice")
        bob, bobSession = self.endpoint("bob", maxQueued=3)
        _, carolSession = self.endpoint("carol")
        bobSession.writable = False
        for i in range(5):
            alice.recordReceived(RELAY_SEND, requestBody("bob", encode(i)))
        alice.recordReceived(RELAY_SEND, requestBody("carol", encode("c")))
        self.assertEqual(bob.queued, 3)
        self.assertEqual(bob.dropped, 2)
        errors = aliceSession.errors()
        self.assertEqual(len(errors), 2)
        self.assertTrue(all(isinstance(e, RecipientBusy) and e.name == "bob" for _, e in errors))
        # Only bob's queue is affected.
        self.assertEqual(carolSession.deliveries(), [("alice", None, "c")])
        self.assertEqual(bobSession.deliveries(), [])
        self.assertEqual(len(bobSession.waiting), 1)
        bobSession.drain()
        self.assertEqual([v for _, _, v in bobSession.deliveries()], [0, 1, 2])
        self.assertEqual(bob.queued, 0)

    def test_errorsCountedWhileNotReading(self) -> None:
        """
        While a sender's transport takes no writes, its failures are
        counted, one record per kind and name, a bounded number of them, and
        written once it drains.
        """
        alice, aliceSession = self.endpoint("alice")
        aliceSession.writable = False
        for _ in range(100):
            alice.recordReceived(RELAY_SEND, requestBody("carol", encode(1)))
        for _ in range(50):
            alice.recordReceived(RELAY_SEND, requestBody("dave", encode(1)))
        for i in range(MAX_PENDING_ERRORS + 10):
            alice.recordReceived(RELAY_SEND, requestBody(f"n{i}", encode(1)))
        self.assertEqual(aliceSession.sent, [])
        aliceSession.drain()
        errors = aliceSession.errors()
        self.assertEqual(len(errors), MAX_PENDING_ERRORS)
        self.assertEqual([(e.name, e.count) for _, e in errors[:2]], [("carol", 100), ("dave", 50)])
        self.assertEqual(sum(e.count for _, e in errors), 150 + MAX_PENDING_ERRORS + 10)
        self.assertIn("100 times in a row", str(errors[0][1]))

    def test_publish(self) -> None:
        """
        A value published to a topic reaches every subscriber but the
        publisher; unsubscribing and ending stop it.
        """
        alice, aliceSession = self.endpoint("alice")
        bob, bobSession = self.endpoint("bob")
        carol, carolSession = self.endpoint("carol")
        for endpoint in (alice, bob, carol):
            endpoint.recordReceived(RELAY_SUBSCRIBE, requestBody("news", what="topic"))
        alice.recordReceived(RELAY_SUBSCRIBE, requestBody("news", what="topic"))
        alice.recordReceived(RELAY_PUBLISH, requestBody("news", encode("one")))
        carol.recordReceived(RELAY_UNSUBSCRIBE, requestBody("news", what="topic"))
        alice.recordReceived(RELAY_PUBLISH, requestBody("news", encode("two")))
        bob.ended()
        self.assertEqual(self.backend.subscribers("news"), [alice])
        self.assertEqual(self.backend.publish(None, "news", encode("three")), 1)
        self.assertEqual(
            bobSession.deliveries(), [("alice", "news", "one"), ("alice", "news", "two")]
        )
        self.assertEqual(carolSession.deliveries(), [("alice", "news", "one")])
        self.assertEqual(aliceSession.deliveries(), [(None, "news", "three")])
        carol.recordReceived(RELAY_UNSUBSCRIBE, requestBody("other", what="topic"))
        alice.ended()
        self.assertEqual(self.backend.subscribers("news"), [])

    def test_publishToFullQueue(self) -> None:
        """
        A subscriber with a full queue misses the value; the publisher is
        told which one.
        """
        alice, aliceSession = self.endpoint("alice")
        bob, bobSession = self.endpoint("bob", maxQueued=1)
        bob.recordReceived(RELAY_SUBSCRIBE, requestBody("news", what="topic"))
        bobSession.writable = False
        alice.recordReceived(RELAY_PUBLISH, requestBody("news", encode(1)))
        alice.recordReceived(RELAY_PUBLISH, requestBody("news", encode(2)))
        [(op, error)] = aliceSession.errors()
        self.assertEqual((op, type(error), error.name), (RelayOp.PUBLISH, RecipientBusy, "bob"))
        self.assertIn("news", str(error))

    def test_relayOff(self) -> None:
        """
        Without a backend every request is refused, saying how to turn
        relay on.
        """
        alice, aliceSession = self.endpoint("alice", backend=None)
        alice.recordReceived(RELAY_SEND, requestBody("bob", encode(1)))
        alice.recordReceived(RELAY_SUBSCRIBE, requestBody("news", what="topic"))
        errors = aliceSession.errors()
        self.assertEqual([op for op, _ in errors], [RelayOp.SEND, RelayOp.SUBSCRIBE])
        self.assertTrue(all(isinstance(e, RelayRefused) for _, e in errors))
        self.assertIn("--relay", str(errors[0][1]))

    def test_anonymousRefused(self) -> None:
        """
        A session with an anonymous key may not relay, and cannot be sent
        to.
        """
        anonymous, anonymousSession = self.endpoint(None)
        anonymous.recordReceived(RELAY_SEND, requestBody("bob", encode(1)))
        [(_, error)] = anonymousSession.errors()
        self.assertIsInstance(error, RelayRefused)
        self.assertIn("no name", str(error))

    def test_policy(self) -> None:
        """
        The policy decides each request; a refusal names what was refused.
        """
        policy = parsePolicy(
            "allow alice send bob\nallow * subscribe news.*\nallow feed publish news.*\n"
        )
        alice, aliceSession = self.endpoint("alice", policy)
        bob, bobSession = self.endpoint("bob", policy)
        feed, feedSession = self.endpoint("feed", policy)
        alice.recordReceived(RELAY_SEND, requestBody("bob", encode(1)))
        bob.recordReceived(RELAY_SEND, requestBody("alice", encode(2)))
        bob.recordReceived(RELAY_SUBSCRIBE, requestBody("news.eu", what="topic"))
        bob.recordReceived(RELAY_SUBSCRIBE, requestBody("secret", what="topic"))
        alice.recordReceived(RELAY_PUBLISH, requestBody("news.eu", encode(3)))
        feed.recordReceived(RELAY_PUBLISH, requestBody("news.eu", encode(4)))
        self.assertEqual(bobSession.deliveries(), [("alice", None, 1), ("feed", "news.eu", 4)])
        self.assertEqual(
            [(op, e.name) for op, e in bobSession.errors()],
            [(RelayOp.SEND, "alice"), (RelayOp.SUBSCRIBE, "secret")],
        )
        [(op, error)] = aliceSession.errors()
        self.assertEqual((op, error.name), (RelayOp.PUBLISH, "news.eu"))
        self.assertIn("relay policy does not let 'alice' publish", str(error))
        self.assertEqual(feedSession.errors(), [])
        self.assertTrue(any("Refused" in e["log_format"] for e in self.events))

    def test_badValueNotRelayed(self) -> None:
        """
        A value that does not decode is the sender's protocol error; nothing
        reaches the recipient.
        """
        alice, _ = self.endpoint("alice")
        _, bobSession = self.endpoint("bob")
        body = requestBody("bob", b"\xc1")
        self.assertRaises(DecodeError, alice.recordReceived, RELAY_SEND, body)
        self.assertEqual(bobSession.sent, [])

    def test_forgedDelivery(self) -> None:
        """
        A client cannot send a delivery record (which would carry a sender
        name of its choosing): it is a protocol error.
        """
        alice, _ = self.endpoint("alice")
        self.endpoint("bob")
        self.assertRaises(
            RemoteProtocolError,
            alice.recordReceived,
            RELAY_DELIVER,
            deliverBody("admin", None, encode(1)),
        )

    def test_endedDropsQueue(self) -> None:
        """
        An ended endpoint takes no more values and its queue is dropped,
        logged.
        """
        bob, bobSession = self.endpoint("bob")
        bobSession.writable = False
        self.assertTrue(bob.enqueue("alice", None, encode(1)))
        bob.ended()
        bob.ended()
        self.assertFalse(bob.enqueue("alice", None, encode(2)))
        self.assertEqual(bob.queued, 0)
        bob.relayFailed(NoSuchSession("x", "x"), RelayOp.SEND)
        self.assertEqual(bobSession.sent, [])


class PolicyTests(SynchronousTestCase):
    """
    L{netstructer.relaypolicy}.
    """

    def test_firstMatchDecides(self) -> None:
        """
        Rules are tried in order; no match refuses.
        """
        policy = parsePolicy("# comment\n\ndeny * send admin\nallow * * *\n", "p")
        self.assertFalse(policy.maySend("alice", "admin"))
        self.assertTrue(policy.maySend("alice", "bob"))
        self.assertTrue(policy.mayPublish("alice", "t"))
        self.assertTrue(policy.maySubscribe("alice", "t"))
        self.assertFalse(RelayPolicy([]).maySend("a", "b"))

    def test_badLines(self) -> None:
        """
        A malformed line is reported with its number.
        """
        for text in ("allow alice send", "permit a send b", "allow a shout b"):
            error = self.assertRaises(ValueError, parsePolicy, "\n" + text, "policy.txt")
            self.assertIn("policy.txt, line 2", str(error))

    def test_loadPolicy(self) -> None:
        """
        A policy file is read; an unreadable or malformed one is a server
        initialisation error.
        """
        path = self.mktemp()
        with open(path, "w") as f:
            f.write("allow a send b\n")
        self.assertTrue(loadPolicy(path).maySend("a", "b"))
        self.assertRaises(ServerInitializeError, loadPolicy, path + ".missing")
        with open(path, "w") as f:
            f.write("allow a\n")
        self.assertRaises(ServerInitializeError, loadPolicy, path)


class ClientTests(SynchronousTestCase):
    """
    L{RelayClient}, the client's state machine.
    """

    def setUp(self) -> None:
        self.client = RelayClient(encode, decode)

    def test_requests(self) -> None:
        """
        Each request is one record.
        """
        self.assertEqual(self.client.sendTo("bob", 1), (RELAY_SEND, requestBody("bob", encode(1))))
        self.assertEqual(self.client.publish("t", 1), (RELAY_PUBLISH, requestBody("t", encode(1))))
        self.assertEqual(self.client.subscribe("t"), (RELAY_SUBSCRIBE, b"\x01t"))
        self.assertEqual(self.client.unsubscribe("t"), (RELAY_UNSUBSCRIBE, b"\x01t"))

    def test_errorsRaisedNext(self) -> None:
        """
        An error is raised by the next request, before it is sent;
        consecutive errors of one kind for one name are raised once, with
        their count.
        """
        body = errorBody(RelayErrorCode.BUSY, RelayOp.SEND, "bob", "full")
        for _ in range(3):
            self.client.recordReceived(RELAY_ERROR, body)
        self.client.recordReceived(
            RELAY_ERROR, errorBody(RelayErrorCode.NO_SUCH_SESSION, RelayOp.SEND, "x", "gone")
        )
        error = self.assertRaises(RecipientBusy, self.client.sendTo, "bob", 1)
        self.assertEqual(error.count, 3)
        self.assertIn("3 times in a row", str(error))
        self.assertRaises(NoSuchSession, self.client.nextRelayed)
        self.assertIsNone(self.client.nextRelayed())

    def test_deliveries(self) -> None:
        """
        Deliveries are decoded and queued in order.
        """
        self.client.recordReceived(RELAY_DELIVER, deliverBody("alice", None, encode([1])))
        self.client.recordReceived(RELAY_DELIVER, deliverBody(None, "t", encode(2)))
        self.assertEqual(self.client.nextRelayed(), RelayedValue("alice", [1], None))
        self.assertEqual(self.client.nextRelayed(), RelayedValue(None, 2, "t"))

    def test_serverOnlyRecords(self) -> None:
        """
        A request record from the server, or too many unread values, is a
        protocol error.
        """
        self.assertRaises(RemoteProtocolError, self.client.recordReceived, RELAY_SEND, b"\x01a\x01")
        small = RelayClient(encode, decode, maxQueued=1)
        small.recordReceived(RELAY_DELIVER, deliverBody("a", None, encode(1)))
        self.assertRaises(
            RemoteProtocolError,
            small.recordReceived,
            RELAY_DELIVER,
            deliverBody("a", None, encode(2)),
        )


NAMES = ("alice", "bob", "carol", "mallory")
NAMED_KEYS = {name: generateKey() for name in NAMES}
ANONYMOUS_KEY = generateKey()
SERVER_KEYRING = Keyring([*NAMED_KEYS.values(), ANONYMOUS_KEY], names=[*NAMES, None])


class RelayNetwork(SynchronousTestCase):
    """
    A L{Server} on a L{MemoryReactorClock} with clients connected to its
    factory in memory, each with the key of its name.
    """

    def setUp(self) -> None:
        self.reactor = MemoryReactorClock()
        self.events: list[LogEvent] = []
        self.logger = Logger(observer=self.events.append)

    def makeServer(self, **options: Any) -> Server:
        self.server = Server(
            "tcp:5000", SERVER_KEYRING, reactor=self.reactor, logger=self.logger, **options
        )
        self.network = Network(self.server.factory, self.reactor, self.logger)
        self._port = 40000
        return self.server

    def connect(self, name: str | None) -> Link:
        """
        Connect a client with the key named C{name} (L{None}: an anonymous
        key).
        """
        self._port += 1
        key = ANONYMOUS_KEY if name is None else NAMED_KEYS[name]
        link = self.network.connect("127.0.0.1", self._port, BridgeConfig.fromKey(key))
        assert link is not None
        self.network.pump()
        self.assertTrue(link.client.established)
        self.assertEqual(link.server.name, name)
        return link

    def pump(self) -> None:
        self.network.pump()


class EndToEndMemoryTests(RelayNetwork):
    """
    C{sendTo}, C{recvFrom}, C{publish} and the errors, through a server's
    sessions in memory.
    """

    def test_sendTo(self) -> None:
        """
        A value sent to a name arrives at that client with the sender's
        name; values arrive in order.
        """
        self.makeServer(relay=True)
        alice, bob = self.connect("alice"), self.connect("bob")
        received = []
        bob.client.recvFrom().addCallback(received.append)
        for i in range(3):
            alice.client.sendTo("bob", {"n": i})
        self.pump()
        self.assertEqual(received, [RelayedValue("alice", {"n": 0})])
        rest = [self.successResultOf(bob.client.recvFrom()) for _ in range(2)]
        self.assertEqual([tuple(r) for r in rest], [("alice", {"n": 1}), ("alice", {"n": 2})])

    def test_noSuchSession(self) -> None:
        """
        A send to a name no session holds is reported to the sender by its
        next call; the session stays open.
        """
        self.makeServer(relay=True)
        alice = self.connect("alice")
        alice.client.sendTo("carol", 1)
        self.pump()
        error = self.assertRaises(NoSuchSession, alice.client.sendTo, "carol", 2)
        self.assertEqual(error.name, "carol")
        self.assertTrue(alice.client.established)

    def test_waitingRecvFromFails(self) -> None:
        """
        An error fails a waiting C{recvFrom}.
        """
        self.makeServer(relay=True)
        alice = self.connect("alice")
        d = alice.client.recvFrom()
        alice.client.sendTo("carol", 1)
        self.pump()
        self.failureResultOf(d, NoSuchSession)

    def test_recvFromTimeout(self) -> None:
        """
        C{recvFrom} times out on the session's clock, consuming nothing.
        """
        self.makeServer(relay=True)
        alice, bob = self.connect("alice"), self.connect("bob")
        d = bob.client.recvFrom(timeout=5)
        self.reactor.advance(5)
        self.failureResultOf(d, OperationTimedOut)
        alice.client.sendTo("bob", "late")
        self.pump()
        self.assertEqual(tuple(self.successResultOf(bob.client.recvFrom(1))), ("alice", "late"))
        # Only the sessions' own timers (their keep-alive deadlines) are left.
        self.assertEqual(
            [c for c in self.reactor.getDelayedCalls() if "_timeReached" not in repr(c)], []
        )

    def test_recvFromAfterClose(self) -> None:
        """
        A waiting C{recvFrom} fails when the session ends.
        """
        self.makeServer(relay=True)
        bob = self.connect("bob")
        d = bob.client.recvFrom()
        bob.client.close()
        self.pump()
        self.failureResultOf(d)
        self.failureResultOf(bob.client.recvFrom())

    def test_relayOff(self) -> None:
        """
        A server without relay refuses, clearly, and keeps the session.
        """
        self.makeServer()
        alice, _ = self.connect("alice"), self.connect("bob")
        alice.client.sendTo("bob", 1)
        self.pump()
        self.failureResultOf(alice.client.recvFrom(), RelayRefused)
        self.assertTrue(alice.client.established)
        self.assertRaises(RelayRefused, self.server.publish, "t", 1)

    def test_publish(self) -> None:
        """
        Subscribers receive what is published, from clients and from the
        server.
        """
        self.makeServer(relay=True)
        alice, bob, carol = self.connect("alice"), self.connect("bob"), self.connect("carol")
        bob.client.subscribe("news")
        carol.client.subscribe("news")
        self.pump()
        alice.client.publish("news", "hello")
        self.pump()
        self.assertEqual(self.server.publish("news", "from the server"), 2)
        self.pump()
        for link in (bob, carol):
            first = self.successResultOf(link.client.recvFrom())
            second = self.successResultOf(link.client.recvFrom())
            self.assertEqual((first.sender, first.value, first.topic), ("alice", "hello", "news"))
            self.assertEqual(tuple(second), (None, "from the server"))
        carol.client.unsubscribe("news")
        self.pump()
        alice.client.publish("news", "again")
        self.pump()
        self.assertNoResult(carol.client.recvFrom())
        self.assertEqual(self.successResultOf(bob.client.recvFrom()).value, "again")

    def test_serverSendTo(self) -> None:
        """
        The server sends to a name with no sender name; a missing name is
        logged.
        """
        self.makeServer(relay=True)
        bob = self.connect("bob")
        self.server.sendTo("bob", 7)
        self.server.sendTo("nobody", 8)
        self.pump()
        self.assertEqual(tuple(self.successResultOf(bob.client.recvFrom())), (None, 7))
        self.assertTrue(any("nobody" in str(e.get("error")) for e in self.events))

    def test_slowRecipient(self) -> None:
        """
        A recipient whose transport does not drain is backpressured alone:
        its queue fills, the rest is dropped and reported to the sender, and
        others still receive.  Once it drains, its queue is delivered in
        order.
        """
        self.makeServer(relay=True, maxRelayQueue=5)
        alice, bob, carol = self.connect("alice"), self.connect("bob"), self.connect("carol")
        producer = bob.serverTransport.producer
        producer.pauseProducing()
        for i in range(8):
            alice.client.sendTo("bob", i)
        alice.client.sendTo("carol", "fine")
        self.pump()
        self.assertEqual(tuple(self.successResultOf(carol.client.recvFrom())), ("alice", "fine"))
        error = self.assertRaises(RecipientBusy, alice.client.sendTo, "bob", 99)
        self.assertEqual((error.name, error.count), ("bob", 3))
        producer.resumeProducing()
        self.pump()
        got = [self.successResultOf(bob.client.recvFrom()).value for _ in range(5)]
        self.assertEqual(got, [0, 1, 2, 3, 4])
        self.assertNoResult(bob.client.recvFrom())

    def test_policyRefusal(self) -> None:
        """
        A send the policy refuses is reported as refused; an allowed one
        goes through.
        """
        self.makeServer(relayPolicy=parsePolicy("allow alice send bob\n"))
        alice, bob = self.connect("alice"), self.connect("bob")
        bob.client.sendTo("alice", "no")
        alice.client.sendTo("bob", "yes")
        self.pump()
        # The error comes first, then the value.
        self.failureResultOf(bob.client.recvFrom(), RelayRefused)
        self.assertEqual(tuple(self.successResultOf(bob.client.recvFrom())), ("alice", "yes"))
        bob.client.sendTo("alice", "again")
        self.pump()
        self.assertRaises(RelayRefused, bob.client.subscribe, "t")
        self.assertNoResult(alice.client.recvFrom())

    def test_forgedSender(self) -> None:
        """
        A client that sends a delivery record (to claim a sender name) has
        its session failed; the named recipient receives nothing.
        """
        self.makeServer(relay=True)
        mallory, bob = self.connect("mallory"), self.connect("bob")
        mallory.client.sendRecord(RELAY_DELIVER, deliverBody("alice", None, encode("x")))
        self.pump()
        self.assertIsNotNone(mallory.server.closeReason)
        self.assertNoResult(bob.client.recvFrom())
        self.assertTrue(bob.client.established)

    def test_valuesAndRelayTogether(self) -> None:
        """
        Relayed values do not disturb a session's own values.
        """
        self.makeServer(relay=True)
        alice, bob = self.connect("alice"), self.connect("bob")
        alice.client.sendTo("bob", "relayed")
        bob.server.sendBuffer("direct")
        self.pump()
        self.assertEqual(self.successResultOf(bob.client.recvBuffer()), "direct")
        self.assertEqual(self.successResultOf(bob.client.recvFrom()).value, "relayed")


class TapTests(_TemporaryHome):
    """
    C{twistd netstructer --relay}, C{--handler relay}, C{--relay-policy}
    and C{--max-relay-queue}.
    """

    def test_relayOffByDefault(self) -> None:
        """
        Without the options relay stays off.
        """
        self.assertNotIn("relay", self.parse().serverOptions())

    def test_relayFlag(self) -> None:
        """
        C{--relay} and C{--handler relay} turn it on; the latter keeps the
        echo handler.
        """
        for argv in (["--relay"], ["--handler", "relay"]):
            options = self.parse(*argv, "--max-relay-queue", "7")
            server = options.serverOptions()
            self.assertEqual(
                (server["relay"], server["relayPolicy"], server["maxRelayQueue"]), (True, None, 7)
            )
        self.assertEqual(type(options.handler).__name__, "EchoHandler")

    def test_policyFile(self) -> None:
        """
        C{--relay-policy} loads the file and turns relay on; a bad file is a
        usage error naming the line.
        """
        path = self.home / "policy"
        path.write_text("allow alice send bob\n")
        policy = self.parse("--relay-policy", str(path)).serverOptions()["relayPolicy"]
        self.assertTrue(policy.maySend("alice", "bob"))
        self.assertFalse(policy.maySend("bob", "alice"))
        path.write_text("allow alice\n")
        self.assertIn("line 1", self.parseError("--relay-policy", str(path)))

    def test_makeService(self) -> None:
        """
        The service made from C{--relay} relays.
        """
        server = tap.makeService(self.parse("--relay"), MemoryReactorClock())
        self.assertIsNotNone(server.relay.backend)


class SpecExampleTests(SynchronousTestCase):
    """
    The worked example of docs/protocol.rst's "Relay records" section is
    what the code writes.
    """

    def test_workedExample(self) -> None:
        """
        Each body of the example, its groups joined, is the record the
        reference implementation makes.
        """
        from pathlib import Path

        text = (Path(__file__).resolve().parent.parent / "docs" / "protocol.rst").read_text()
        section = text[text.index("Relay records\n=====") : text.index("8. Worked example")]
        rows = [
            line.split(")", 1)[1].split()
            for line in section.splitlines()
            if line.startswith("    ") and "(0x1" in line
        ]
        bodies = [bytes.fromhex("".join(groups)) for groups in rows]
        value = encode([1, "hi"])
        self.assertEqual(
            bodies,
            [
                requestBody("news", what="topic"),
                requestBody("bob", value),
                deliverBody("alice", None, value),
                requestBody("news", value),
                deliverBody("alice", "news", value),
            ],
        )
        error = errorBody(RelayErrorCode.NO_SUCH_SESSION, RelayOp.SEND, "carol", "m")
        self.assertIn("begins ``01 01 00000001 05 6361726f6c``", " ".join(section.split()))
        self.assertEqual(error[:12], bytes.fromhex("01010000000105") + b"carol")


class IdentityTests(RelayNetwork):
    """
    The relay over named keys: anonymous keys, revocation.
    """

    def test_anonymousKey(self) -> None:
        """
        A client with an anonymous key is refused, and cannot be addressed.
        """
        self.makeServer(relay=True)
        anonymous, alice = self.connect(None), self.connect("alice")
        anonymous.client.sendTo("alice", 1)
        self.pump()
        error = self.failureResultOf(anonymous.client.recvFrom(), RelayRefused).value
        self.assertIn("no name", str(error))
        self.assertNoResult(alice.client.recvFrom())

    def test_revokedKey(self) -> None:
        """
        Once a key is revoked by a reload, its session is closed and values
        sent to its name are reported as having no such session; the others
        are untouched.
        """
        self.makeServer(relay=True)
        alice, bob, carol = self.connect("alice"), self.connect("bob"), self.connect("carol")
        self.server.reloadKeys(
            Keyring([NAMED_KEYS["alice"], NAMED_KEYS["carol"]], names=["alice", "carol"])
        )
        self.pump()
        self.assertIsNotNone(bob.server.closeReason)
        alice.client.sendTo("bob", 1)
        alice.client.sendTo("carol", 2)
        self.pump()
        self.failureResultOf(alice.client.recvFrom(), NoSuchSession)
        self.assertEqual(tuple(self.successResultOf(carol.client.recvFrom())), ("alice", 2))
