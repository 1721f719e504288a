# -*- test-case-name: tests.test_cluster_redis -*-
"""
L{RedisTransport}: a cluster node's connection to a real Redis (or Valkey)
server, through txredisapi's protocols (with hiredis parsing replies).

This module is imported only when a cluster is configured: it is the one
that imports txredisapi (which imports the global reactor: under C{twistd},
and in any program that installs its reactor first, that is the one
installed).

Why txredisapi rather than redis-py's asyncio client: a server runs on
whichever reactor C{twistd} or the application chose (epoll by default, and
the blocking facade runs one in a thread), and redis-py's asyncio client
would need Twisted's asyncio reactor everywhere a cluster is configured,
with every call crossing between Futures and Deferreds.  txredisapi
(maintained, 1.6.0) speaks Redis natively on Twisted, with publish-subscribe
(its C{SubscriberProtocol}), Lua scripts (C{EVALSHA} with a fallback to
C{EVAL}) and replies parsed by hiredis.  Of it, only the protocols are
used: connecting, logging in (C{AUTH}, C{SELECT}), reconnecting with
backoff, TLS (Twisted's own, with the certificate verified) and timeouts
are done here, on the injected reactor, where this module controls what is
logged (one line per loss, none per attempt) and that no password is.

Two connections are kept: one for commands (the directory's Lua scripts,
and C{PUBLISH}) and one subscribed to the node's channels.  The transport
is connected when both are (logged in, database selected, subscribed); when
either is lost both are closed, the node is told once, and connecting
starts over after a delay that doubles from C{initialDelay} up to
C{maxDelay} (with some jitter), forever, until L{RedisTransport.stop}.
Connecting, and every command, is bounded by the URL's timeout; a command
that times out closes the connection.

The Redis layout of a cluster whose prefix is C{P} (C{netstructer} by
default; the braces make every key one Redis Cluster slot)::

    {P}:nodes                  sorted set: node name -> when its entries
                               expire (ms, Redis's clock); dead nodes stay
                               listed a minute
    {P}:node:NAME              hash: incarnation, started, beat (ms),
                               heartbeat (s), version
    {P}:node:NAME:sessions     hash: session id -> descriptor (our codec:
                               [name, host, "ip:port", openedAt])
    {P}:node:NAME:topics       set of topics the node has subscribers to
    {P}:events                 channel: every node's directory changes
    {P}:to:NAME                channel: messages for node NAME

The three keys of a node live C{2 * heartbeat} seconds unless its next
heartbeat renews them.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import txredisapi
from twisted.internet import defer
from twisted.internet.endpoints import HostnameEndpoint, wrapClientTLS
from twisted.internet.interfaces import IDelayedCall, IStreamClientEndpoint
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.ssl import (
    Certificate,
    optionsForClientTLS,
    platformTrust,
    trustRootFromCertificates,
)
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from netstructer._transport import bufferingDescriptor, writeBufferEmpty
from netstructer.cluster.config import ClusterURL, redisKey
from netstructer.cluster.interfaces import (
    DirectoryChanges,
    Heartbeat,
    IClusterTransport,
    ITransportListener,
    NodeRecord,
    NodeSnapshot,
    NodeState,
)
from netstructer.cluster.memory import DEAD_NODES_KEPT
from netstructer.errors import ClusterError, ClusterUnavailable

__all__ = ["SCRIPTS", "RedisTransport"]

_log = Logger()

_LIST = """
local function now()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function list(p, at, keepDead)
  local nodes = p .. ':nodes'
  redis.call('ZREMRANGEBYSCORE', nodes, '-inf', string.format('%d', at - keepDead))
  local out = {}
  local members = redis.call('ZRANGE', nodes, 0, -1, 'WITHSCORES')
  for i = 1, #members, 2 do
    local key = p .. ':node:' .. members[i]
    local f = redis.call('HMGET', key, 'incarnation', 'beat', 'started')
    out[#out + 1] = {members[i], members[i + 1], f[1] or '', f[2] or '', f[3] or '',
                     redis.call('HLEN', key .. ':sessions')}
  end
  return out
end
local p = '{' .. ARGV[1] .. '}'
"""

SCRIPTS = {
    "heartbeat": _LIST
    + """
local at = now()
local ttl = tonumber(ARGV[6])
local info = p .. ':node:' .. ARGV[2]
local previous = redis.call('HGET', info, 'incarnation') or ''
redis.call('ZADD', p .. ':nodes', string.format('%d', at + ttl), ARGV[2])
redis.call('HSET', info, 'incarnation', ARGV[3], 'started', ARGV[4],
           'beat', string.format('%d', at), 'heartbeat', ARGV[5])
redis.call('PEXPIRE', info, ttl)
redis.call('PEXPIRE', info .. ':sessions', ttl)
redis.call('PEXPIRE', info .. ':topics', ttl)
return {at, previous, list(p, at, tonumber(ARGV[7]))}
""",
    "nodes": _LIST
    + """
local at = now()
return {at, '', list(p, at, tonumber(ARGV[2]))}
""",
    "update": """
local p = '{' .. ARGV[1] .. '}'
local info = p .. ':node:' .. ARGV[2]
local sessions, topics = info .. ':sessions', info .. ':topics'
local ttl = ARGV[4]
if ARGV[8] == '1' then redis.call('DEL', sessions, topics) end
local i = 9
local function apply(command, key, width)
  local n = tonumber(ARGV[i])
  i = i + 1
  local last = i + n * width - 1
  while i <= last do
    local upto = math.min(i + 1000 * width - 1, last)
    redis.call(command, key, unpack(ARGV, i, upto))
    i = upto + 1
  end
end
apply('HSET', sessions, 2)
apply('HDEL', sessions, 1)
apply('SADD', topics, 1)
apply('SREM', topics, 1)
redis.call('HSET', info, 'version', ARGV[5], 'incarnation', ARGV[3])
redis.call('PEXPIRE', info, ttl)
redis.call('PEXPIRE', sessions, ttl)
redis.call('PEXPIRE', topics, ttl)
if ARGV[7] ~= '' then redis.call('PUBLISH', ARGV[6], ARGV[7]) end
return 1
""",
    "snapshot": """
local info = '{' .. ARGV[1] .. '}:node:' .. ARGV[2]
local f = redis.call('HMGET', info, 'incarnation', 'version')
if not f[1] then return {} end
return {f[1], f[2] or '0', redis.call('HGETALL', info .. ':sessions'),
        redis.call('SMEMBERS', info .. ':topics')}
""",
    "count": """
local p = '{' .. ARGV[1] .. '}'
local t = redis.call('TIME')
local at = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local total = 0
local live = redis.call('ZRANGEBYSCORE', p .. ':nodes', string.format('(%d', at), '+inf')
for _, name in ipairs(live) do
  local info = p .. ':node:' .. name
  if redis.call('EXISTS', info) == 1 then
    total = total + redis.call('HLEN', info .. ':sessions')
  end
end
return total
""",
    "leave": """
local p = '{' .. ARGV[1] .. '}'
local info = p .. ':node:' .. ARGV[2]
if redis.call('HGET', info, 'incarnation') == ARGV[3] then
  redis.call('DEL', info, info .. ':sessions', info .. ':topics')
  redis.call('ZREM', p .. ':nodes', ARGV[2])
end
redis.call('PUBLISH', ARGV[4], ARGV[5])
return 1
""",
}
"""The Lua scripts of the directory's operations, by name."""


def _ms(seconds: float) -> str:
    return str(max(1, round(seconds * 1000)))


def _text(value: object) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _number(value: object) -> float | None:
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


def _states(now: float, raw: list[Any]) -> list[NodeState]:
    states = []
    for name, score, incarnation, beat, started, sessions in raw:
        expiresAt = (_number(score) or 0.0) / 1000
        heartbeatAt = _number(beat)
        states.append(
            NodeState(
                name=_text(name),
                incarnation=bytes(incarnation),
                expiresAt=expiresAt,
                heartbeatAt=None if heartbeatAt is None else heartbeatAt / 1000,
                startedAt=_number(started),
                sessions=int(sessions),
                alive=expiresAt > now and bool(incarnation),
            )
        )
    return states


def _heartbeat(reply: list[Any]) -> Heartbeat:
    now = int(reply[0]) / 1000
    return Heartbeat(now, _states(now, reply[2]), bytes(reply[1]))


def _trustRoot(url: ClusterURL) -> Any:
    if url.caFile is None:
        return platformTrust()
    try:
        pem = Path(url.caFile).read_bytes()
    except OSError as e:
        raise ClusterError(
            f"Cannot read the CA certificates of the cluster URL's ca option ({url.caFile}): "
            f"{e.strerror}"
        ) from None
    marker = b"-----END CERTIFICATE-----"
    blocks = [block + marker for block in pem.split(marker) if b"-----BEGIN" in block]
    if not blocks:
        raise ClusterError(f"The file {url.caFile} (the ca option) holds no PEM certificate")
    return trustRootFromCertificates([Certificate.loadPEM(block) for block in blocks])


class _Subscriber(txredisapi.SubscriberProtocol):
    """
    The subscribed connection: hands every message to a callable.
    """

    received: Callable[[bytes, bytes], None] = staticmethod(lambda channel, message: None)

    def messageReceived(self, pattern: object, channel: bytes, message: bytes) -> None:
        self.received(channel, message)


class _Commands(txredisapi.RedisProtocol):
    """
    The connection for commands, with a lean C{PUBLISH} (see L{publish}).
    """

    def publish(self, channel: bytes, data: bytes) -> defer.Deferred[Any]:
        """
        Publish a message: the command goes to the socket now when nothing
        waits in the transport's buffer (rather than at the reactor's next
        iteration, as through C{execute_command}), and without a timer of
        its own: the heartbeat's commands, on the same connection and in
        the same order, are timed, and a connection that stops answering
        is closed, which fails every reply still awaited.

        @return: Fires with how many subscribers received it.
        @raise txredisapi.ConnectionError: The connection is closed.
        """
        if not self.connected:
            raise txredisapi.ConnectionError("Not connected")
        command = b"*3\r\n$7\r\nPUBLISH\r\n$%d\r\n%b\r\n$%d\r\n%b\r\n" % (
            len(channel),
            channel,
            len(data),
            data,
        )
        descriptor = bufferingDescriptor(self.transport)
        if descriptor is not None and writeBufferEmpty(descriptor):
            sent = descriptor.writeSomeData(command)
            if isinstance(sent, int):
                command = command[sent:]
        if command:
            self.transport.write(command)
        reply: defer.Deferred[Any] = self.replyQueue.get()
        return reply.addCallback(self.handle_reply)


class _Factory(Factory):
    """
    Builds txredisapi protocols that keep bytes as bytes, time out on the
    given reactor, and log in only when told to (L{RedisTransport} does it
    while connecting).
    """

    noisy = False
    isLazy = True

    def __init__(self, protocolClass: Any, reactor: Any, timeout: float) -> None:
        self.protocolClass = protocolClass
        self.reactor = reactor
        self.timeout = timeout
        self.built: list[Any] = []

    def buildProtocol(self, addr: object) -> Protocol:
        p: Any = self.protocolClass(
            charset=None, replyTimeout=self.timeout, password=None, dbid=None, convertNumbers=False
        )
        p.factory = self
        p.callLater = self.reactor.callLater
        self.built.append(p)
        return cast(Protocol, p)

    # What txredisapi's protocol calls on its factory when logging in fails
    # (it never does here: RedisTransport logs in itself).

    def stopTrying(self) -> None:
        pass

    def connectionError(self, why: str) -> None:
        pass


def _tune(transport: Any) -> None:
    """
    Turn Nagle's algorithm off on a connection to Redis (a command must not
    wait for the previous one's acknowledgement), and TCP keepalives on;
    under TLS, on the TCP connection beneath.
    """
    while transport is not None:
        setTcpNoDelay = getattr(transport, "setTcpNoDelay", None)
        if setTcpNoDelay is not None:
            setTcpNoDelay(True)
            transport.setTcpKeepAlive(True)
            return
        transport = getattr(transport, "transport", None)


def _command(protocol: Any, *args: object) -> defer.Deferred[Any]:
    """
    Send one command; a connection that is already closed fails the
    Deferred rather than raising.
    """
    try:
        d: defer.Deferred[Any] = protocol.execute_command(*args)
    except txredisapi.ConnectionError as e:
        return defer.fail(e)
    return d


@implementer(IClusterTransport)
class RedisTransport:
    """
    A cluster node's connection to Redis.

    @ivar url: Where Redis is, and how to log in to it.
    """

    def __init__(
        self,
        url: ClusterURL,
        reactor: Any,
        *,
        clientName: str = "netstructer",
        initialDelay: float = 0.25,
        maxDelay: float = 5.0,
    ) -> None:
        """
        @param url: Where Redis is.
        @param reactor: The reactor (TCP and a clock).
        @param clientName: The connections' name (C{CLIENT SETNAME}).
        @param initialDelay: Seconds before the first new attempt.
        @param maxDelay: The longest delay between two attempts.
        """
        self.url = url
        self.description = url.describe()
        self.connected = False
        self._reactor = reactor
        self._clientName = clientName
        self._initialDelay = initialDelay
        self._maxDelay = maxDelay
        self._attempts = 0
        self._listener: ITransportListener | None = None
        self._channels: list[str] = []
        self._command: Any = None
        self._subscriber: Any = None
        self._attempt: defer.Deferred[None] | None = None
        self._retry: IDelayedCall | None = None
        self._ping: IDelayedCall | None = None
        self._stopped = True
        self._factories: list[_Factory] = []
        self._prefix = url.prefix
        self._nodesKey = redisKey(url.prefix, "nodes")
        if txredisapi.hiredis is None:
            _log.warn(
                "hiredis is not installed, so the cluster's Redis replies are parsed in pure "
                "Python, much more slowly: pip install 'netstructer[cluster]'"
            )

    def __repr__(self) -> str:
        state = "connected" if self.connected else "not connected"
        return f"<RedisTransport {self.description} {state}>"

    # Connecting.

    def _endpoint(self) -> IStreamClientEndpoint:
        endpoint: IStreamClientEndpoint = HostnameEndpoint(
            self._reactor, self.url.host, self.url.port, timeout=self.url.timeout
        )
        if self.url.tls:
            options = optionsForClientTLS(self.url.host, trustRoot=_trustRoot(self.url))
            endpoint = wrapClientTLS(options, endpoint)
        return endpoint

    def start(self, listener: ITransportListener, channels: list[str]) -> None:
        """
        Connect, and subscribe to C{channels} (with none, only the
        connection for commands is made: L{clusterStatus
        <netstructer.cluster.status.clusterStatus>} needs no more).  A
        transport already started is left as it is.
        """
        if not self._stopped:
            return
        self._listener = listener
        self._channels = list(channels)
        self._stopped = False
        self._connect()

    def _connect(self) -> None:
        self._retry = None
        if self._stopped:
            return
        command = _Factory(_Commands, self._reactor, self.url.timeout)
        subscriber = _Factory(_Subscriber, self._reactor, self.url.timeout)
        self._factories = [command, subscriber]
        opening = [self._open(command, False)]
        if self._channels:
            opening.append(self._open(subscriber, True))
        attempt = defer.gatherResults(opening, consumeErrors=True)
        attempt.addTimeout(self.url.timeout * 2, self._reactor)
        self._attempt = attempt.addCallbacks(self._opened, self._failed)

    def _open(self, factory: _Factory, subscribe: bool) -> defer.Deferred[Any]:
        d = self._endpoint().connect(factory)
        url = self.url

        def login(protocol: Any) -> defer.Deferred[Any]:
            _tune(protocol.transport)
            if url.password is None:
                return defer.succeed(protocol)
            args = ("AUTH", url.username, url.password) if url.username else ("AUTH", url.password)
            return _command(protocol, *args).addCallback(lambda _: protocol)

        def select(protocol: Any) -> defer.Deferred[Any]:
            if url.db == 0:
                return defer.succeed(protocol)
            return _command(protocol, "SELECT", url.db).addCallback(lambda _: protocol)

        def name(protocol: Any) -> defer.Deferred[Any]:
            named = _command(protocol, "CLIENT", "SETNAME", self._clientName)
            # Some hosted servers refuse CLIENT: the name is only a courtesy.
            named.addErrback(lambda f: f.trap(txredisapi.ResponseError))
            return named.addCallback(lambda _: protocol)

        def listen(protocol: Any) -> defer.Deferred[Any]:
            if not subscribe:
                return defer.succeed(protocol)
            protocol.received = self._received
            subscribed: defer.Deferred[Any] = protocol.subscribe(self._channels)
            return subscribed.addCallback(lambda _: protocol)

        return d.addCallback(login).addCallback(select).addCallback(name).addCallback(listen)

    def _opened(self, protocols: list[Any]) -> None:
        self._attempt = None
        if self._stopped:
            for protocol in protocols:
                protocol.transport.loseConnection()
            return
        self._command = protocols[0]
        self._subscriber = protocols[1] if len(protocols) > 1 else None
        self._attempts = 0
        self.connected = True
        for protocol in protocols:
            protocol.whenDisconnected().addCallback(self._lost)
        self._schedulePing()
        if self._listener is not None:
            self._listener.transportConnected()

    def _schedulePing(self) -> None:
        if self._subscriber is not None and not self._stopped:
            self._ping = self._reactor.callLater(self.url.timeout, self._pingSubscriber)

    def _pingSubscriber(self) -> None:
        """
        Check that the subscribed connection is alive: it receives nothing
        while the cluster is quiet, so a connection that died without
        closing would go unnoticed.  No answer within the timeout closes it
        (and both connections are made again).
        """
        self._ping = None
        subscriber = self._subscriber
        if subscriber is None:
            return
        d = _command(subscriber, "PING")
        d.addCallbacks(lambda _: self._schedulePing(), lambda _: None)

    def _cancelPing(self) -> None:
        if self._ping is not None and self._ping.active():
            self._ping.cancel()
        self._ping = None

    def _reason(self, failure: Failure) -> str:
        if isinstance(failure.value, defer.FirstError):
            failure = failure.value.subFailure
        if failure.check(defer.TimeoutError, defer.CancelledError):
            return f"no answer within {self.url.timeout * 2:g} seconds"
        return failure.getErrorMessage() or repr(failure.value)

    def _failed(self, failure: Failure) -> None:
        self._attempt = None
        self._abortAll()
        if self._stopped:
            return
        if self._listener is not None:
            self._listener.transportLost(self._reason(failure))
        self._scheduleRetry()

    def _lost(self, protocol: Any) -> None:
        if protocol is not self._command and protocol is not self._subscriber:
            return
        self._command = self._subscriber = None
        wasConnected = self.connected
        self.connected = False
        self._cancelPing()
        self._abortAll()
        if self._stopped:
            return
        if wasConnected and self._listener is not None:
            self._listener.transportLost("the connection to Redis was lost")
        self._scheduleRetry()

    def _abortAll(self) -> None:
        for factory in self._factories:
            for protocol in factory.built:
                if protocol.transport is not None and protocol.connected:
                    protocol.transport.abortConnection()

    def _scheduleRetry(self) -> None:
        if self._retry is not None or self._stopped:
            return
        self._attempts += 1
        delay = min(self._maxDelay, self._initialDelay * 2 ** min(self._attempts - 1, 16))
        delay *= random.uniform(0.9, 1.1)  # noqa: S311 (jitter, not a secret)
        self._retry = self._reactor.callLater(delay, self._connect)

    def stop(self) -> defer.Deferred[None]:
        self._stopped = True
        self.connected = False
        self._cancelPing()
        if self._retry is not None and self._retry.active():
            self._retry.cancel()
        self._retry = None
        if self._attempt is not None:
            self._attempt.cancel()
        waits = []
        for factory in self._factories:
            for protocol in factory.built:
                if protocol.transport is not None and protocol.connected:
                    waits.append(protocol.whenDisconnected())
                    protocol.transport.loseConnection()
        self._command = self._subscriber = None
        return defer.gatherResults(waits).addCallback(lambda _: None)

    def _received(self, channel: bytes, message: bytes) -> None:
        if self._listener is not None and self.connected:
            self._listener.messageReceived(_text(channel), message)

    # Operations.

    def _unavailable(self) -> ClusterUnavailable:
        return ClusterUnavailable(
            f"this node is not connected to the cluster's Redis at {self.description} now"
        )

    def _translate(self, failure: Failure) -> Failure:
        if failure.check(txredisapi.ConnectionError, defer.CancelledError):
            raise ClusterUnavailable(
                f"the cluster's Redis at {self.description} did not answer: "
                f"{failure.getErrorMessage()}"
            )
        if failure.check(txredisapi.ResponseError):
            raise ClusterError(
                f"the cluster's Redis at {self.description} refused a command: "
                f"{failure.getErrorMessage()}"
            )
        return failure

    def _eval(self, name: str, args: list[object]) -> defer.Deferred[Any]:
        if not self.connected or self._command is None:
            return defer.fail(self._unavailable())
        try:
            d: defer.Deferred[Any] = self._command.eval(
                SCRIPTS[name], [self._nodesKey], [self._prefix, *args]
            )
        except txredisapi.ConnectionError:
            return defer.fail(self._unavailable())
        return d.addErrback(self._translate)

    def publish(self, channel: str, data: bytes) -> defer.Deferred[int]:
        if not self.connected or self._command is None:
            return defer.fail(self._unavailable())
        try:
            d: defer.Deferred[int] = self._command.publish(channel.encode(), data)
        except txredisapi.ConnectionError as e:
            return defer.fail(e).addErrback(self._translate)
        return d.addErrback(self._translate)

    def heartbeat(self, node: NodeRecord) -> defer.Deferred[Heartbeat]:
        args: list[object] = [
            node.name,
            node.incarnation,
            repr(node.startedAt),
            repr(node.heartbeat),
            _ms(node.ttl),
            _ms(DEAD_NODES_KEPT),
        ]
        return self._eval("heartbeat", args).addCallback(_heartbeat)

    def nodes(self) -> defer.Deferred[Heartbeat]:
        return self._eval("nodes", [_ms(DEAD_NODES_KEPT)]).addCallback(_heartbeat)

    def update(
        self, node: NodeRecord, version: int, changes: DirectoryChanges, channel: str, event: bytes
    ) -> defer.Deferred[None]:
        args: list[object] = [
            node.name,
            node.incarnation,
            _ms(node.ttl),
            str(version),
            channel,
            event,
            "1" if changes.reset else "0",
            str(len(changes.opened)),
        ]
        for sessionId, descriptor in changes.opened.items():
            args += (sessionId, descriptor)
        for group in (changes.closed, changes.subscribed, changes.unsubscribed):
            args.append(str(len(group)))
            args.extend(group)
        return self._eval("update", args).addCallback(lambda _: None)

    def snapshot(self, name: str) -> defer.Deferred[NodeSnapshot | None]:
        def parse(reply: list[Any]) -> NodeSnapshot | None:
            if not reply:
                return None
            incarnation, version, flat, topics = reply
            sessions = {_text(flat[i]): bytes(flat[i + 1]) for i in range(0, len(flat), 2)}
            return NodeSnapshot(
                name, bytes(incarnation), int(version), sessions, frozenset(map(_text, topics))
            )

        return self._eval("snapshot", [name]).addCallback(parse)

    def count(self) -> defer.Deferred[int]:
        return self._eval("count", []).addCallback(int)

    def leave(self, node: NodeRecord, channel: str, event: bytes) -> defer.Deferred[None]:
        args: list[object] = [node.name, node.incarnation, channel, event]
        return self._eval("leave", args).addCallback(lambda _: None)
