# -*- test-case-name: tests.test_blocking -*-
"""
The blocking facade over the Twisted server (L{Server}, L{Session}): the
Twisted L{netstructer.server.Server} run on the global reactor in a daemon
thread, and its sessions driven from the calling threads.  See
L{netstructer.blocking}.  Twisted is imported only once a server starts.
"""

from __future__ import annotations

import atexit
import logging
import os
import queue
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, Literal, NoReturn, cast, overload

from netstructer.blocking._link import Address, KeyLike, Link, _ValueChannel, link, parseAddress
from netstructer.blocking._serverstreams import SessionStreamReader
from netstructer.blocking._sockets import deadlineAfter
from netstructer.channel import CloseCode
from netstructer.errors import (
    BufferDataError,
    ChannelClosedError,
    InvalidKey,
    NetStructerError,
    OperationTimedOut,
    RemoteProtocolError,
    ServerInitializeError,
    SessionClosed,
)
from netstructer.keyreload import KeyReload
from netstructer.keys import Keyring, generateKey
from netstructer.streams.receipt import StreamReceipt

if TYPE_CHECKING:
    from twisted.internet.defer import Deferred
    from twisted.python.failure import Failure

    from netstructer.cluster import RemoteSession as _RemoteSession
    from netstructer.cluster import SessionDescriptor
    from netstructer.protocol import BridgeProtocol
    from netstructer.server import Server as _TwistedServer


_CLOSE_POLL_INTERVAL: Final = 0.005
_ENDPOINT_TYPES = frozenset({"tcp", "tcp6", "ssl", "unix", "systemd", "tls", "onion"})

_log = logging.getLogger("netstructer.blocking")


# The server facade.


class _ReactorThread:
    """
    The process's one reactor thread: the global Twisted reactor, run by
    the first blocking L{Server} to start, in a daemon thread, until the
    process exits.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._reactor: Any = None
        self.servers: set[Server] = set()

    def reactor(self) -> Any:
        """
        The running global reactor, started in its thread if need be.

        @return: The reactor.
        @raise RuntimeError: The reactor is already being run by other code,
            or the reactor thread has stopped.
        """
        with self._lock:
            thread = self._thread
            if thread is None:
                thread = self._start()
            if not thread.is_alive():
                raise RuntimeError(
                    "the NetStructer reactor thread has stopped (the process is exiting)"
                )
            return self._reactor

    def _start(self) -> threading.Thread:
        from twisted.internet import reactor

        if reactor.running:
            raise RuntimeError(
                "the Twisted reactor is already running in this process: use "
                "netstructer.server.Server from Twisted code instead of "
                "netstructer.blocking.Server"
            )
        thread = threading.Thread(
            target=reactor.run,
            kwargs={"installSignalHandlers": False},
            name="netstructer-reactor",
            daemon=True,
        )
        self._reactor = reactor
        self._thread = thread
        thread.start()
        atexit.register(self.shutdown)
        return thread

    def inReactorThread(self) -> bool:
        """
        @return: Whether the caller runs in the reactor thread.
        """
        return self._thread is not None and threading.current_thread() is self._thread

    def alive(self) -> bool:
        """
        @return: Whether the reactor thread is running.
        """
        return self._thread is not None and self._thread.is_alive()

    def shutdown(self, timeout: float = 10.0) -> None:
        """
        Close every open blocking server, then stop the reactor and wait for
        its thread (at most C{timeout} seconds).  Registered with C{atexit}.

        @param timeout: Seconds to wait for the thread.
        """
        for server in list(self.servers):
            try:
                server.close()
            except (NetStructerError, OSError, RuntimeError):
                _log.exception("closing %r at exit failed", server)
        thread, reactor = self._thread, self._reactor
        if thread is None or not thread.is_alive():
            return
        reactor.callFromThread(reactor.stop)
        thread.join(timeout)


_REACTOR_THREAD: Final = _ReactorThread()


class _Call:
    """
    One piece of work handed to the reactor thread and waited for by a
    script thread.
    """

    __slots__ = ("abandoned", "deferred", "done", "failure", "result")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.result: object = None
        self.failure: Failure | None = None
        self.deferred: Deferred[Any] | None = None
        self.abandoned = False


def _callInReactor(function: Callable[..., object], *args: object) -> Any:
    """
    Run C{function(*args)} in the reactor thread and wait for its result,
    waiting for a L{Deferred} it returns.  If the wait is interrupted (by
    L{KeyboardInterrupt}), the Deferred is cancelled and the exception
    raised at once.

    @return: The result.
    @raise Exception: What C{function} raised or its Deferred failed with;
        a closed connection (C{ConnectionDone}, C{ConnectionLost}) becomes
        L{ChannelClosedError}.
    @raise RuntimeError: Called from the reactor thread (it would deadlock),
        or the reactor thread has stopped.
    """
    if _REACTOR_THREAD.inReactorThread():
        raise RuntimeError(
            "a blocking NetStructer call was made from the reactor thread, where it would "
            "deadlock: use the Twisted API (netstructer.server) there"
        )
    reactor = _REACTOR_THREAD.reactor()
    call = _Call()

    def succeeded(result: object) -> None:
        call.result = result
        call.done.set()

    def failed(failure: Failure) -> None:
        if not call.abandoned:
            call.failure = failure
        call.done.set()

    def start() -> None:
        from twisted.internet.defer import maybeDeferred

        if call.abandoned:
            return
        d = maybeDeferred(function, *args)
        call.deferred = d
        d.addCallbacks(succeeded, failed)

    def abandon() -> None:
        call.abandoned = True
        if call.deferred is not None and not call.deferred.called:
            call.deferred.cancel()

    try:
        reactor.callFromThread(start)
        while not call.done.wait(0.25):
            if not _REACTOR_THREAD.alive():
                raise RuntimeError("the NetStructer reactor thread has stopped")
    except BaseException:
        reactor.callFromThread(abandon)
        raise
    if call.failure is not None:
        _raiseFailure(call.failure)
    return call.result


def _raiseFailure(failure: Failure) -> NoReturn:
    """
    Raise what C{failure} holds, turning Twisted's connection-ended errors
    into L{ChannelClosedError}.
    """
    from twisted.internet.error import ConnectionDone, ConnectionLost

    error = failure.value
    if isinstance(error, SessionClosed):
        raise SessionClosed(str(error), error.code, error.reason) from error
    if isinstance(error, ConnectionDone):
        raise ChannelClosedError("the session is closed") from error
    if isinstance(error, ConnectionLost):
        raise ChannelClosedError(f"the connection was lost: {error}") from error
    failure.raiseException()


def _describeAddress(address: object) -> tuple[str, int] | str:
    host = getattr(address, "host", None)
    port = getattr(address, "port", None)
    if isinstance(host, str) and isinstance(port, int):
        return (host, port)
    return str(address)


class Session(_ValueChannel):
    """
    A server's session with one client, for script threads: a blocking
    wrapper of a L{netstructer.protocol.BridgeProtocol}, whose every call
    runs in the reactor thread.

    Thread-safe: several threads may send on one session; receiving is
    serialised (values are handed out in order, each once).

    @ivar key: The session's key, C{"ip:port"} (C{"[ip]:port"} for IPv6).
    @ivar peer: The client's address, C{(host, port)}.
    @ivar name: The name of the key that authenticated the client (from
        the server's key file), or L{None} for an anonymous key.
    @ivar keyId: The non-secret ID of that key (8 hexadecimal digits).
    """

    def __init__(self, protocol: BridgeProtocol) -> None:
        """
        @param protocol: The server-side protocol.
        """
        self._protocol = protocol
        self._inbox: deque[object] = deque()
        self._receiving = threading.Lock()
        self._pending: Deferred[object] | None = None
        self._ready: list[Deferred[None]] = []
        self.key = protocol.key
        self.peer = _describeAddress(protocol.peer)
        self.name = protocol.name
        self.keyId = protocol.keyId

    def __repr__(self) -> str:
        if self.name is not None:
            return f"<Session {self.name} {self.key}>"
        return f"<Session {self.key}>"

    @property
    def open(self) -> bool:
        """
        Whether the connection has not ended.
        """
        return self._protocol.closeReason is None

    def sendBuffer(self, value: object) -> None:
        """
        Send a value, waiting while the connection's write buffer is full.

        @param value: A value of a type L{netstructer.values} carries.
        @raise EncodeError: It cannot be encoded; nothing was sent.
        @raise BufferDataError: It is larger than the client accepts;
            nothing was sent.
        @raise ChannelClosedError: The session is closing or closed.
        """
        protocol = self._protocol

        def send() -> Deferred[None]:
            protocol.sendBuffer(value)
            return protocol.whenWritable()

        _callInReactor(send)

    def recvBuffer(self, timeout: float | None = None, maxSize: int | None = None) -> object:
        """
        Receive the next value, in order.

        @param timeout: Seconds to wait, or L{None} to wait as long as the
            session lasts.  A timeout consumes nothing.
        @param maxSize: The largest encoded value to accept: a larger value
            raises L{BufferDataError} and closes the session.  (The server's
            C{maxBufferSize} option is the limit checked before a value is
            read; this one is checked when it is taken.)
        @return: The value.
        @raise OperationTimedOut: No value arrived in time.
        @raise BufferDataError: The value is larger than C{maxSize}.
        @raise ChannelClosedError: The session ended cleanly, after every
            value received before has been taken.
        @raise NetStructerError: The session failed (for example
            L{TruncationError}).
        """
        deadline = deadlineAfter(timeout)
        with self._receiving:
            while not self._inbox:
                remaining = None if deadline is None else max(deadline - time.monotonic(), 0.0)
                _callInReactor(self._whenReceived, remaining)
            value = self._inbox.popleft()
        if maxSize is not None:
            from netstructer.values import encode

            size = len(encode(value, limits=self._protocol.config.limits))
            if size > maxSize:
                self._closeInReactor("value too large", CloseCode.TOO_BIG)
                raise BufferDataError(
                    f"{self.key} sent a value of {size} bytes, more than the {maxSize} "
                    "allowed (maxSize, or buffer_size)"
                )
        return value

    def _whenReceived(self, timeout: float | None) -> Deferred[None]:
        """
        In the reactor thread: wait until the inbox holds a value.

        One C{recvBuffer} of the protocol at most is outstanding, and what
        it receives always goes to the inbox, so that a wait abandoned (by
        a timeout or Ctrl-C) never takes a value with it.

        @param timeout: Seconds to wait, or L{None}.
        @return: A Deferred firing once the inbox holds a value; failing
            with the reason the session ended, or L{OperationTimedOut}.
        """
        from twisted.internet import defer

        if self._inbox:
            return defer.succeed(None)
        timer: Any = None

        def forget(d: Deferred[None]) -> None:
            if d in self._ready:
                self._ready.remove(d)
            if timer is not None and timer.active():
                timer.cancel()

        ready: Deferred[None] = defer.Deferred(forget)
        self._ready.append(ready)
        if self._pending is None:
            pending = self._protocol.recvBuffer()
            self._pending = pending
            pending.addCallbacks(self._received, self._receiveFailed)
        if ready.called:
            return ready
        if timeout is not None:

            def timedOut() -> None:
                if ready in self._ready:
                    self._ready.remove(ready)
                ready.errback(
                    OperationTimedOut(f"no value arrived from {self.key} within {timeout} seconds")
                )

            timer = _REACTOR_THREAD.reactor().callLater(timeout, timedOut)

            def stopTimer(result: object) -> object:
                if timer.active():
                    timer.cancel()
                return result

            ready.addBoth(stopTimer)
        return ready

    def _received(self, value: object) -> None:
        self._pending = None
        self._inbox.append(value)
        ready, self._ready = self._ready, []
        for d in ready:
            d.callback(None)

    def _receiveFailed(self, failure: Failure) -> None:
        self._pending = None
        ready, self._ready = self._ready, []
        for d in ready:
            d.errback(failure)

    def _closeInReactor(self, reason: str, code: CloseCode) -> None:
        _callInReactor(self._protocol.close, reason, code)

    def close(self) -> None:
        """
        Start closing the session cleanly, and return at once: the close
        record is sent after every value already given to L{sendBuffer},
        and the connection ends when the client replies (or when the
        server's C{shutdownGrace} runs out).  Values the client sent before it saw the
        close can still be taken with L{recvBuffer}, which raises
        L{ChannelClosedError} after them.
        """
        self._closeInReactor("", CloseCode.NORMAL)

    # Streams (netstructer.blocking._serverstreams).

    def sendFile(
        self,
        path: str | os.PathLike[str],
        meta: object = None,
        *,
        progress: Any = None,
        resume: bool = False,
    ) -> StreamReceipt:
        """
        Send a file as a stream and wait for the client's confirmation (as
        L{Link.sendFile<netstructer.blocking.Link.sendFile>}); C{progress}
        is called in the reactor thread.
        """
        meta = {"name": os.path.basename(path)} if meta is None else meta
        return self.sendStream(path, meta, resume=resume, progress=progress)

    def sendStream(
        self,
        source: object,
        meta: object = None,
        *,
        size: int | None = None,
        resume: bool = False,
        progress: Any = None,
    ) -> StreamReceipt:
        """
        Send a file (a path or a binary file object) or an iterable of bytes
        as a stream and wait for the client's confirmation.

        @raise StreamError: It failed (refused, too large, timed out).
        """
        send = self._protocol.sendStream
        receipt: StreamReceipt = _callInReactor(
            lambda: send(source, meta, size, resume=resume, progress=progress)
        )
        return receipt

    def recvStream(self, timeout: float | None = None) -> SessionStreamReader:
        """
        Wait for the next stream the client sends.

        @raise OperationTimedOut: None arrived in time.
        """
        stream = _callInReactor(self._protocol.recvStream, timeout)
        return SessionStreamReader(stream, _callInReactor)

    def waitClosed(self, timeout: float | None = None) -> None:
        """
        Wait until the connection has ended.

        @param timeout: Seconds to wait, or L{None} for as long as it takes.
        @raise OperationTimedOut: It had not ended in time.
        """
        from twisted.internet.defer import TimeoutError as DeferredTimeout

        protocol = self._protocol
        reactor = _REACTOR_THREAD.reactor()

        def closed() -> Deferred[None]:
            d = protocol.whenClosed()
            if timeout is not None and not d.called:
                d.addTimeout(timeout, reactor)
            return d

        try:
            _callInReactor(closed)
        except DeferredTimeout as e:
            raise OperationTimedOut(
                f"the session {self.key} had not ended after {timeout} seconds"
            ) from e


class RemoteSession:
    """
    A session connected to another node of the server's cluster, as
    L{Server.get} with C{cluster=True} finds it: what the cluster's
    directory says of it, and L{sendBuffer}.

    @ivar name: The name of its key, or L{None}.
    @ivar key: Its client's C{"ip:port"}.
    @ivar host: Its client's IP address.
    @ivar node: The node it is connected to.
    @ivar openedAt: When it opened (the wall clock of its node).
    """

    remote = True
    """Unlike a L{Session}, this session is on another node."""

    def __init__(self, remote: _RemoteSession) -> None:
        self._remote = remote
        descriptor = remote.descriptor
        self.name = descriptor.name
        self.key = descriptor.key
        self.host = descriptor.host
        self.node = descriptor.node
        self.openedAt = descriptor.openedAt

    def __repr__(self) -> str:
        return f"<blocking.RemoteSession {self.name or 'anonymous'} {self.key} on {self.node}>"

    def sendBuffer(self, value: object) -> None:
        """
        Send a value to the session, through its node (see
        L{netstructer.cluster.RemoteSession.sendBuffer}): this returns once
        it is on its way; a failure after that (the session ended meanwhile)
        is logged by the server.

        @raise EncodeError: The value cannot be encoded.
        @raise ClusterUnavailable: The server cannot reach the cluster's
            Redis now.
        @raise NoSuchSession: The session's node left the cluster.
        @raise RecipientBusy: Too many values towards its node wait for an
            answer.
        """
        _callInReactor(self._remote.sendBuffer, value)


class _WorkerPool:
    """
    Daemon worker threads running handlers, at most C{maxWorkers} at once;
    threads are started only when no idle one is waiting.  Daemon threads,
    so that a handler blocked forever cannot keep the process alive.
    """

    def __init__(self, maxWorkers: int, name: str) -> None:
        if maxWorkers < 1:
            raise ValueError("maxWorkers must be at least 1")
        self._maxWorkers = maxWorkers
        self._name = name
        self._work: queue.SimpleQueue[tuple[Callable[..., object], tuple[object, ...]] | None] = (
            queue.SimpleQueue()
        )
        self._idle = threading.Semaphore(0)
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()

    def submit(self, function: Callable[..., object], *args: object) -> None:
        """
        Run C{function(*args)} in a worker thread.
        """
        self._work.put((function, args))
        if self._idle.acquire(blocking=False):
            return
        with self._lock:
            if len(self._threads) < self._maxWorkers:
                thread = threading.Thread(
                    target=self._worker,
                    name=f"{self._name}-{len(self._threads) + 1}",
                    daemon=True,
                )
                self._threads.append(thread)
                thread.start()

    def _worker(self) -> None:
        while True:
            item = self._work.get()
            if item is None:
                return
            function, args = item
            try:
                function(*args)
            except BaseException:  # noqa: BLE001 - a worker must survive its job; logged
                _log.exception("a NetStructer worker failed")
            self._idle.release()

    def shutdown(self, timeout: float) -> bool:
        """
        Let the workers finish their handlers, then stop them.

        @param timeout: Seconds to wait.
        @return: Whether every worker stopped in time.
        """
        with self._lock:
            threads = list(self._threads)
        for _ in threads:
            self._work.put(None)
        current = threading.current_thread()
        others = [thread for thread in threads if thread is not current]
        deadline = time.monotonic() + timeout
        for thread in others:
            thread.join(max(deadline - time.monotonic(), 0.0))
        return not any(thread.is_alive() for thread in others)


class _HandlerBridge:
    """
    The handler a blocking server gives the Twisted server: runs the
    script's handler in a worker thread for each new session.
    """

    def __init__(self, server: Server, handler: Callable[[Session], object]) -> None:
        self._server = server
        self._handler = handler

    def sessionOpened(self, protocol: BridgeProtocol) -> None:
        """
        Hand the new session to the script's handler.

        @param protocol: The session.
        """
        session = self._server._wrap(protocol)
        self._server._workers().submit(self._run, session)

    def streamReceived(self, protocol: BridgeProtocol, meta: object, stream: Any) -> None:
        """
        Keep a stream the client offers for C{Session.recvStream}.
        """
        from netstructer.protocol import BridgeProtocol

        BridgeProtocol.streamReceived(protocol, meta, stream)

    def _run(self, session: Session) -> None:
        try:
            self._handler(session)
        except (ChannelClosedError, RemoteProtocolError) as e:
            _log.debug("handler for %s ended: %s", session.key, e)
        except Exception:  # noqa: BLE001 - the script's code; logged, its session closed
            _log.exception("the handler failed for %s; closing that session", session.key)
            try:
                session._closeInReactor("internal server error", CloseCode.INTERNAL_ERROR)
            except (NetStructerError, RuntimeError):
                _log.debug("closing %s after its handler failed", session.key, exc_info=True)


def _stopWithoutWaiting(service: _TwistedServer) -> Deferred[None]:
    """
    In the reactor thread: stop C{service}, and fire once it has stopped or
    every close record is on its socket (and, for a node of a cluster, once
    it has left the cluster), whichever comes first.  The peers'
    replies are not waited for: a link held by the very thread that closes
    the server can only answer once that thread reads again, and the rest
    of each close finishes in the reactor thread, within the grace period.

    @param service: The running Twisted server.
    @return: A Deferred firing with L{None}.
    """
    from twisted.internet import defer

    reactor = _REACTOR_THREAD.reactor()
    done: Deferred[None] = defer.Deferred()
    stopped = service.stopService()

    cluster = service.cluster

    def check() -> None:
        if done.called:
            return
        # A node of a cluster leaves it first (its entries removed at once).
        if stopped.called or (
            service.registry.closesWritten() and (cluster is None or cluster.left)
        ):
            done.callback(None)
        else:
            reactor.callLater(_CLOSE_POLL_INTERVAL, check)

    def stoppedAnyway(result: object) -> None:
        check()

    stopped.addBoth(stoppedAnyway)
    check()
    return done


class Server:
    """
    A NetStructer server for synchronous scripts: the Twisted
    L{netstructer.server.Server}, run in the reactor thread, behind
    blocking methods (see the module docstring for the threading model).

    Sessions are handed out as L{Session} objects.  Use it as a context
    manager, or call L{close}; an C{atexit} hook closes it otherwise.
    """

    def __init__(self, address: Address | int, key: KeyLike | None = None, **options: Any) -> None:
        """
        @param address: Where to listen: C{(host, port)}, C{"host:port"},
            C{"[::1]:port"} or a port number (every interface); port 0 picks
            a free port (see L{port}).  A Twisted endpoint description
            (C{"ssl:5000:privateKey=key.pem"}) is accepted too.
        @param key: The server's key, or a list of keys (every one is
            accepted), or a L{Keyring} with the keys' names; L{None} to read
            the C{keyFile} option, the key file (names and all) that
            L{reloadKeys} reads again.
        @param options: C{maxWorkers} (the most handler threads, see
            L{listen_on}; 64 by default), and the options of
            L{netstructer.server.Server}: C{maxBufferSize}, C{maxSessions},
            C{maxPerIP}, C{suite}, C{handshakeTimeout}, C{shutdownGrace}
            (the grace period of L{close}, 5 s by default), ...
            The server logs through the standard library's C{logging}, as
            C{netstructer.server} (warnings, such as a peer failing to
            authenticate, reach standard error even when logging is not
            configured), unless a Twisted C{logger} is given.
        """
        self._address = address
        self._key = key
        self._maxWorkers = int(options.pop("maxWorkers", 64))
        self._options = options
        self._service: _TwistedServer | None = None
        self._listening = False
        self._pool: _WorkerPool | None = None
        self._sessions: weakref.WeakKeyDictionary[BridgeProtocol, Session] = (
            weakref.WeakKeyDictionary()
        )
        self._lock = threading.Lock()
        self._starting = threading.RLock()

    def __repr__(self) -> str:
        state = "listening" if self._listening else "bound" if self._service else "not bound"
        return f"<blocking.Server {self._address!r} {state}>"

    def _endpoint(self) -> object:
        address: object = self._address
        if isinstance(address, int):
            return address
        if isinstance(address, str) and address.split(":", 1)[0].strip().lower() in _ENDPOINT_TYPES:
            return address
        try:
            return parseAddress(cast(Address, address), allowPortZero=True)
        except ValueError as e:
            raise ServerInitializeError(f"cannot listen on {address!r}: {e}") from e

    def _running(self) -> _TwistedServer:
        service = self._service
        if service is None:
            raise ServerInitializeError("the server is not bound: call init() first")
        return service

    def _wrap(self, protocol: BridgeProtocol) -> Session:
        with self._lock:
            session = self._sessions.get(protocol)
            if session is None:
                session = self._sessions[protocol] = Session(protocol)
            return session

    def _wrapOrNone(self, protocol: BridgeProtocol | None) -> Session | None:
        return None if protocol is None else self._wrap(protocol)

    def _workers(self) -> _WorkerPool:
        with self._lock:
            if self._pool is None:
                self._pool = _WorkerPool(self._maxWorkers, "netstructer-handler")
            return self._pool

    # Starting.

    def init(self) -> None:
        """
        Bind the listening socket.  Connections wait (in the socket's
        backlog) until L{listen} or L{listen_on}.  Calling it again does
        nothing.

        @raise ServerInitializeError: The port is in use or not permitted,
            the address is malformed, or the key is missing or bad; the
            message names the cause.
        @raise RuntimeError: The Twisted reactor is already run by other
            code in this process.
        """
        with self._starting:
            if self._service is None:
                self._bind()

    def _bind(self) -> None:
        endpoint = self._endpoint()
        key: Any = self._key
        options = dict(self._options)
        reactor = _REACTOR_THREAD.reactor()

        def bind() -> Deferred[_TwistedServer]:
            from twisted.internet.interfaces import IPushProducer

            from netstructer.server import Server as TwistedServer

            if "logger" not in options:
                from twisted.logger import Logger, STDLibLogObserver

                options["logger"] = Logger(
                    namespace="netstructer.server",
                    observer=STDLibLogObserver(name="netstructer.server"),
                )
            try:
                service = TwistedServer(endpoint, key, reactor=reactor, **options)
            except InvalidKey as e:
                raise ServerInitializeError(f"the server's key is not usable: {e}") from e
            except (TypeError, ValueError) as e:
                raise ServerInitializeError(f"cannot make the server: {e}") from e

            def bound(port: Any) -> TwistedServer:
                if IPushProducer.providedBy(port):
                    port.pauseProducing()
                return service

            return service.listen().addCallback(bound)

        service = _callInReactor(bind)
        self._service = service
        _REACTOR_THREAD.servers.add(self)

    def listen(self) -> None:
        """
        Start accepting connections (binding first if L{init} was not
        called).

        @raise ServerInitializeError: See L{init}.
        """
        with self._starting:
            self.init()
            if self._listening:
                return
            service = self._running()

            def resume() -> None:
                from twisted.internet.interfaces import IPushProducer

                port: Any = service.port
                if IPushProducer.providedBy(port):
                    port.resumeProducing()

            _callInReactor(resume)
            self._listening = True

    def listen_on(self, handler: Callable[[Session], object]) -> None:
        """
        Run C{handler(session)} in a worker thread for each session that
        opens from now on, and start accepting (binding first if need be).
        The session stays open when the handler returns; if the handler
        raises (other than because the session ended), the error is logged
        and the session closed.  Calling it again replaces the handler.

        The original package called C{func(socket, container)} once to run
        its own accept loop; here the server accepts, and the handler gets
        each session.

        @param handler: A callable taking a L{Session}.
        @raise TypeError: C{handler} is not callable.
        @raise ServerInitializeError: See L{init}.
        """
        if not callable(handler):
            raise TypeError(f"{handler!r} is not callable: give a function taking the session")
        with self._starting:
            self.init()
            service = self._running()
            _callInReactor(service.setHandler, _HandlerBridge(self, handler))
            self.listen()

    @property
    def address(self) -> tuple[str, int] | str:
        """
        The address the server is bound to, C{(host, port)}.

        @raise ServerInitializeError: It is not bound.
        """
        port = self._running().port
        return _describeAddress(port.getHost() if port is not None else None)

    @property
    def port(self) -> int:
        """
        The port number the server is bound to (useful after binding port
        0).

        @raise ServerInitializeError: It is not bound.
        """
        address = self.address
        if isinstance(address, str):
            raise ServerInitializeError(f"the server listens on {address}, not on a TCP port")
        return address[1]

    # The registry.

    def count(self, cluster: bool = False) -> int:
        """
        @param cluster: Count the sessions of every live node of the
            server's cluster (created with C{cluster=URL}).
        @return: How many sessions are open (and not popped).
        @raise ClusterUnavailable: With C{cluster}, the server cannot reach
            the cluster's Redis now.
        """
        return int(_callInReactor(self._running().count, cluster))

    @overload
    def all(self, cluster: Literal[False] = False) -> list[Session]: ...
    @overload
    def all(self, cluster: Literal[True]) -> list[SessionDescriptor]: ...
    def all(self, cluster: bool = False) -> list[Session] | list[SessionDescriptor]:
        """
        @param cluster: List the sessions of every live node of the
            server's cluster, as descriptors (name, address, node, opening
            time).
        @return: The open sessions, oldest first.
        @raise ClusterUnavailable: With C{cluster}, the server cannot reach
            the cluster's Redis now.
        """
        if cluster:
            return list(_callInReactor(self._running().all, True))
        return [self._wrap(p) for p in _callInReactor(self._running().all)]

    def get(self, ipOrKey: str, cluster: bool = False) -> Session | RemoteSession | None:
        """
        Find a session, without waiting.

        @param ipOrKey: A key's name, a session key (C{"ip:port"}) or a bare
            IP address (the most recent session of that name or from it).
        @param cluster: Look in every live node of the server's cluster:
            the newest match may be a L{RemoteSession}.
        @return: The session, or L{None} if none is open (yet).
        @raise ClusterUnavailable: With C{cluster}, the server cannot reach
            the cluster's Redis now.
        """
        found = _callInReactor(self._running().get, ipOrKey, cluster)
        if getattr(found, "remote", False):
            return RemoteSession(found)
        return self._wrapOrNone(found)

    def allFrom(self, ip: str) -> list[Session]:
        """
        @param ip: A bare IP address.
        @return: Every open session from it, oldest first.
        """
        return [self._wrap(p) for p in _callInReactor(self._running().allFrom, ip)]

    def allNamed(self, name: str) -> list[Session]:
        """
        @param name: A key's name, as in the key file line C{alice <key>}.
        @return: Every open session authenticated by a key of that name,
            oldest first.
        """
        return [self._wrap(p) for p in _callInReactor(self._running().allNamed, name)]

    def reloadKeys(self, keyring: Keyring | None = None) -> KeyReload:
        """
        Replace the accepted keys without a restart: read the C{keyFile}
        again (or take C{keyring}); new connections use the new keys at
        once, and the sessions whose key was removed (or renamed) are closed
        with the reason C{"key revoked"}.  Nothing else is disturbed.

        @param keyring: The new keys, or L{None} to read the key file.
        @return: What changed (see L{netstructer.keyreload.KeyReload}).
        @raise KeyFileError: The key file cannot be loaded; the keys in
            force are kept and the reason is logged.
        @raise ValueError: No key file was given and no C{keyring} either.
        @raise ServerInitializeError: The server is not bound.
        """
        service = self._running()
        return cast(KeyReload, _callInReactor(service.reloadKeys, keyring))

    def pop(self, ipOrKey: str) -> Session | None:
        """
        Take a session out of the registry, leaving it open.

        @param ipOrKey: A key's name, a session key or a bare IP address.
        @return: The session, or L{None}.
        """
        return self._wrapOrNone(_callInReactor(self._running().pop, ipOrKey))

    def clear(self) -> None:
        """
        Close every open session cleanly and wait until they have ended.
        """
        _callInReactor(self._running().clear)

    def waitFor(self, ipOrKey: str, timeout: float | None = None) -> Session:
        """
        Wait until a session named C{ipOrKey}, or from it, is open.

        @param ipOrKey: A key's name, a session key or a bare IP address.
        @param timeout: Seconds to wait, or L{None} to wait as long as it
            takes.
        @return: The session (at once if one is already open).
        @raise OperationTimedOut: None opened in time.
        """
        return self._wrap(_callInReactor(self._running().waitFor, ipOrKey, timeout))

    # Stopping.

    def close(self, timeout: float = 30.0) -> None:
        """
        Shut down cleanly: stop listening, close every session (each first
        sends every value already given to it, then its close record), and
        return once every session has ended or has its close record on the
        socket; then let the handler threads finish (at most C{timeout}
        seconds).  This never needs the calling thread to do anything else
        (a link it holds to this server need not answer): the clients'
        replies are taken in the background, and a connection still open
        when the C{shutdownGrace} option (5 s by default) runs out is ended
        then, with one log line.  Values
        received before the close can still be taken from their
        L{Session}s.  Calling it again does nothing.

        @param timeout: Seconds to wait for the handler threads.
        """
        with self._starting:
            service, self._service = self._service, None
            self._listening = False
        _REACTOR_THREAD.servers.discard(self)
        if service is not None:
            _callInReactor(_stopWithoutWaiting, service)
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None and not pool.shutdown(timeout):
            _log.warning("handler threads were still running %s seconds after close()", timeout)

    def __enter__(self) -> Server:
        """
        @return: This server; leaving the C{with} block closes it.
        """
        return self

    def __exit__(
        self,
        excType: type[BaseException] | None,
        excValue: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """
        Close the server.
        """
        self.close()

    # The relay (created with relay=True or relayPolicy=...).

    def publish(self, topic: str, value: object) -> int:
        """
        Send a value to every session subscribed to C{topic}, with no sender
        name (see L{netstructer.server.Server.publish}).

        @return: How many subscribers it was queued for.
        @raise RelayRefused: Relay is not turned on.
        """
        return cast(int, _callInReactor(self._running().publish, topic, value))

    def sendTo(self, name: str, value: object) -> None:
        """
        Send a value to the session named C{name}, with no sender name (see
        L{netstructer.server.Server.sendTo}).

        @raise RelayRefused: Relay is not turned on.
        """
        _callInReactor(self._running().sendTo, name, value)


class Bridge:
    """
    The original package's client spellings: C{Bridge.Link(address,
    key=key)} (or C{Bridge.link}) makes a L{Link}.
    """

    @staticmethod
    def Link(address: Address, key: KeyLike | None = None, **options: Any) -> Link:
        """
        Connect, as the original C{Bridge.Link(address)} did, but now with a
        key.

        @param address: C{(host, port)} or C{"host:port"}.
        @param key: The key shared with the server (required).
        @param options: As for L{link}.
        @return: The link.
        @raise InvalidKey: No key was given.
        """
        if key is None:
            raise InvalidKey(
                "Bridge.Link needs the key shared with the server: Bridge.Link(address, "
                "key=key); make one with `netstructer keygen` or GenerateKey()"
            )
        return link(address, key, **options)

    link = Link


class Error:
    """
    The original package's error namespace: C{Error.BufferDataError} and
    C{Error.ServerInitializeError} are L{netstructer.errors}' classes.
    """

    BufferDataError = BufferDataError
    ServerInitializeError = ServerInitializeError


def GenerateKey() -> bytes:
    """
    The original package's spelling of L{netstructer.keys.generateKey}.

    @return: A new Fernet-format key.
    """
    return generateKey()
