# -*- test-case-name: tests.test_blocking -*-
"""
NetStructer for synchronous scripts: a blocking client over plain sockets,
and a blocking facade over the Twisted server.

The client
==========

L{link} connects, runs the handshake and returns a L{Link} once the server
has proved it holds the key::

    from netstructer.blocking import link

    with link(("192.168.1.5", 5000), key, timeout=10) as bridge:
        bridge.sendBuffer(["hi", 128, {b"gg": "gg"}, {1, 2}, (False, True)])
        reply = bridge.recvBuffer(maxSize=100_000)

A L{Link} is the second adapter over the sans-IO
L{netstructer.channel.Channel} (the first is the Twisted
L{netstructer.protocol.BridgeProtocol}): a plain socket, a 4-byte big-endian
length prefix per frame, no reactor, no threads, and no Twisted import at
all.  It reads in large chunks into one buffer and parses frames linearly; a
frame whose length prefix is over the limit is refused before its body is
read.  Each L{Link.sendBuffer} writes its value at once (prefix and frame in
one C{sendmsg}); L{Link.sendBuffers} writes many values with one system
call, the fast way to stream small values.

Pings from the server are answered whenever the link is inside a call (and
L{Link.sendBuffer} looks for them about once a second): a script that stays
idle, outside any call, for longer than twice the server's keep-alive
interval (60 seconds by default) may be disconnected; call L{Link.poll} now
and then to prevent that.

Ctrl-C while a link waits to read leaves it usable (nothing was consumed);
Ctrl-C in the middle of a write leaves the stream in an unknown state, so
the link is closed.

I{Thread safety}: a L{Link} is not thread-safe.  Use one link per thread, or
guard a shared one with a lock.

The server
==========

L{Server} runs the Twisted L{netstructer.server.Server} (the same service,
registry and protocol) on the global Twisted reactor, in a daemon thread
named C{netstructer-reactor}, and exposes blocking calls::

    from netstructer.blocking import Server

    server = Server(("0.0.0.0", 5000), key)
    server.init()                       # bind; ServerInitializeError names the cause
    server.listen()                     # start accepting
    session = server.waitFor("192.168.1.4", timeout=60)
    print(session.recvBuffer(maxSize=100_000))
    server.close()

I{The threading model.}  The reactor thread is started lazily, by the first
L{Server.init} in the process, and then shared by every blocking L{Server}
of the process.  A process can run the Twisted reactor only once, so a
program that runs the reactor itself (a Twisted application, C{twistd},
trial's C{TestCase}) must use L{netstructer.server.Server} directly instead:
L{Server} refuses to start if the reactor is already running, and Twisted
code must not run the reactor after a blocking L{Server} has started it.
An C{atexit} hook closes every server the script left open and stops the
reactor.

Every blocking call (L{Server.get}, L{Session.recvBuffer}, ...) hands its
work to the reactor thread and waits for the answer, so the registry and
the protocols are only ever touched by the reactor thread, and script
threads may use a L{Server} and its L{Session}s concurrently: several
threads may each serve their own session at once, and L{Session.sendBuffer}
may be called from several threads on one session (values from one thread
keep their order).  Receiving on one session is serialised: concurrent
L{Session.recvBuffer} calls on one session take values in turn, in order.
Calling a blocking method from the reactor thread itself (from Twisted
code) would deadlock and raises L{RuntimeError}.

A blocking call interrupted by Ctrl-C (L{KeyboardInterrupt} in the main
thread) raises at once; its work in the reactor thread is cancelled, and a
value that arrives for an interrupted L{Session.recvBuffer} is kept for the
next call.  L{Server.close} works afterwards.

L{Server.listen_on} runs C{handler(session)} for each new session in a pool
of daemon worker threads (at most C{maxWorkers}, 64 by default: a handler
that serves its session for the whole connection occupies a worker for that
long, and further sessions wait for a free worker).

Migrating from the original package
===================================

The original spellings are kept as thin aliases: C{Bridge.Link(address,
key=key)}, C{SendBuffer}, C{RecvBuffer(size=..., buffer_size=...)},
C{Close}, C{TimeOut}, C{Error.BufferDataError},
C{Error.ServerInitializeError}, C{GenerateKey()}, and the L{Server} methods
C{init}, C{listen}, C{listen_on}, C{count}, C{all}, C{get}, C{pop} and
C{clear}.  A script changes its import and gives both sides the same key::

    from netstructer.blocking import Bridge, Server

Values are carried by the safe codec of L{netstructer.values}: Python
objects are never pickled.
"""

from __future__ import annotations

from netstructer.blocking._link import Link, link, parseAddress
from netstructer.blocking._server import (
    _REACTOR_THREAD,  # noqa: F401 -- the tests' way to the reactor thread
    Bridge,
    Error,
    GenerateKey,
    RemoteSession,
    Server,
    Session,
)

__all__ = [
    "Bridge",
    "Error",
    "GenerateKey",
    "Link",
    "RemoteSession",
    "Server",
    "Session",
    "link",
    "parseAddress",
]
