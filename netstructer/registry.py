# -*- test-case-name: tests.test_registry -*-
"""
L{SessionRegistry}: the authenticated sessions of one server, and its flood
limits (the "Container" of the original package).

A registry is a L{twisted.application.service.Service} instance handed to a
L{netstructer.protocol.BridgeServerFactory} as its connection gate; nothing
about it is global, so two servers in one process never share sessions.  It
answers the factory's three questions (L{IConnectionGate
<netstructer.protocol.IConnectionGate>}):

    1. C{admit(address)}: may a new connection start its handshake?  Every
       admitted connection is counted, by peer IP, until it ends.
    2. C{sessionOpened(session)}: the connection authenticated; only now is
       it registered, so an unauthenticated peer is never visible.
    3. C{sessionClosed(session, reason)}: the connection ended, whether or not
       it had authenticated; it is uncounted and unregistered.

Sessions are keyed by C{"ip:port"} (C{"[ip]:port"} for IPv6, as
L{netstructer.protocol.sessionKey} makes them).  Lookups also take a bare IP
(C{"192.168.1.4"}, C{"::1"} or C{"[::1]"}), answering with the most recently
opened session from that address: several clients behind one address never
overwrite each other, and L{SessionRegistry.allFrom} lists them all.

Sessions authenticated by a named key (C{alice <key>} in the server's key
file) are found by that name too, and a name is looked up before an IP
address (names are never IP addresses: see L{netstructer.keys.checkName}):
C{get("alice")} is the most recently opened session named C{alice},
L{SessionRegistry.allNamed} lists them all, and C{pop}, C{waitFor} and
C{in} take names as well.  L{SessionRegistry.revokeKeys} closes the sessions
whose key a new keyring no longer holds.  IP
addresses are compared in canonical form (C{"0:0::1"} is C{"::1"}), and an
IPv4-mapped IPv6 address (C{"::ffff:10.0.0.1"}, as a dual-stack listener
reports IPv4 peers) counts as the IPv4 address it carries, both for lookups
and for the per-IP limit.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Callable, Iterator

from twisted.application.service import Service
from twisted.internet import defer
from twisted.internet.interfaces import IAddress, IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import Interface, implementer

from netstructer.channel import CloseCode
from netstructer.errors import OperationTimedOut
from netstructer.events import NO_EVENTS, IBridgeEvents
from netstructer.keys import Keyring
from netstructer.protocol import BridgeProtocol, IConnectionGate

__all__ = [
    "DEFAULT_MAX_PER_IP",
    "DEFAULT_MAX_SESSIONS",
    "REVOKED_REASON",
    "SHUTDOWN_REASON",
    "ISessionListener",
    "SessionRegistry",
    "canonicalHost",
]

DEFAULT_MAX_SESSIONS = 1024
"""The default limit on connections, including those still in their handshake."""

DEFAULT_MAX_PER_IP = 64
"""The default limit on connections from one IP address."""

SHUTDOWN_REASON = "server shutting down"
"""The close reason sessions see when the registry stops."""

REVOKED_REASON = "key revoked"
"""The close reason a session sees when its key is removed from the server's
key file and the keys are reloaded (close code L{CloseCode.POLICY})."""


class ISessionListener(Interface):
    """
    Told when sessions open and close (see L{SessionRegistry.addObserver}).

    Every session an observer is told opened, it is later told closed, even
    if the session was popped or cleared from the registry meanwhile.  It is
    never told about connections that did not authenticate.
    """

    def sessionOpened(session: BridgeProtocol) -> None:  # noqa: N805
        """
        A session completed its handshake and was registered.

        @param session: The session.
        """

    def sessionClosed(session: BridgeProtocol, reason: Failure) -> None:  # noqa: N805
        """
        A session that had opened ended.

        @param session: The session.
        @param reason: Why it ended: L{ConnectionDone
            <twisted.internet.error.ConnectionDone>} for a clean close.
        """


@functools.lru_cache(maxsize=4096)
def canonicalHost(host: str) -> str:
    """
    The form of a host that lookups and per-IP limits compare: brackets
    removed, an IP address in its compressed form, and an IPv4-mapped IPv6
    address as the IPv4 address it carries.  Anything that is not an IP
    address is returned unchanged.  (Remembered for the last few thousand
    hosts: parsing an address costs more than the rest of a session's
    registration.)

    @param host: An IP address, possibly in brackets, or any other text.
    @return: The canonical form.
    """
    text = host.strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return text
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ip)


def _keyOf(host: str, port: int) -> str:
    """
    Format a canonical host and a port as a session key.
    """
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _tokensOf(address: IAddress | None, fallback: str) -> tuple[str, str]:
    """
    The canonical key and host of a peer address.  An address without a host
    and port (a UNIX socket) is its own key and host.

    @param address: The peer's address.
    @param fallback: What to use when C{address} is not an IP address.
    @return: C{(key, host)}.
    """
    host = getattr(address, "host", None)
    port = getattr(address, "port", None)
    if not isinstance(host, str) or not isinstance(port, int):
        text = fallback or str(address)
        return text, text
    canonical = canonicalHost(host)
    return _keyOf(canonical, port), canonical


def _parseTarget(target: str) -> tuple[bool, str]:
    """
    Parse what a caller looks sessions up by.

    @param target: C{"ip:port"}, C{"[ipv6]:port"}, or a bare IP address
        (C{"10.0.0.1"}, C{"::1"}, C{"[::1]"}).
    @return: Whether C{target} names one connection (a key) rather than a
        host, and its canonical form.
    """
    text = target.strip()
    if text.startswith("["):
        end = text.find("]")
        rest = text[end + 1 :]
        if end != -1 and rest.startswith(":") and rest[1:].isascii() and rest[1:].isdigit():
            return True, _keyOf(canonicalHost(text[1:end]), int(rest[1:]))
    elif text.count(":") == 1:
        host, _, port = text.partition(":")
        if port.isascii() and port.isdigit():
            return True, _keyOf(canonicalHost(host), int(port))
    return False, canonicalHost(text)


@implementer(IConnectionGate)
class SessionRegistry(Service):
    """
    The authenticated sessions of one server, the flood limits on its
    connections, and their clean shutdown.

    B{Registration.}  A session is registered when its handshake completes
    (L{sessionOpened}), never before, and unregistered when it ends
    (L{sessionClosed}) or is taken out with L{pop} or L{clear}.  A session
    that was taken out and ends later never disturbs a newer session
    registered under the same key.

    B{Limits.}  L{admit} counts every connection it admits, including those
    still in their handshake and those taken out with L{pop}, until
    L{sessionClosed} is called for it (a L{BridgeProtocol
    <netstructer.protocol.BridgeProtocol>} calls it for every connection,
    authenticated or not), so the counts always return to where they were.

    B{Observers} (L{addObserver}) are told of every session that opens and,
    later, that it closed.  An observer that raises is logged and does not
    disturb the registry or the other observers.

    B{Stopping.}  L{stopService} refuses new connections, closes every
    session cleanly with L{CloseCode.GOING_AWAY}, aborts connections still in
    their handshake, and returns a Deferred that fires once every connection
    has ended.  L{startService} admits connections again; a registry that
    was never started admits them too.

    C{len(registry)}, C{iter(registry)} and C{target in registry} are
    L{count}, L{all} and L{get}C{(target) is not None}; C{session in
    registry} says whether that session object is registered.  (So, as for
    any container, an empty registry is false.)

    @ivar maxSessions: The most connections admitted at once, including
        those in their handshake.
    @ivar maxPerIP: The most connections admitted at once from one IP
        address.
    @ivar events: Told of refused connections (see L{netstructer.events});
        a no-op by default.
    """

    _log = Logger()
    events: IBridgeEvents = NO_EVENTS

    def __init__(
        self,
        clock: IReactorTime | None = None,
        *,
        maxSessions: int = DEFAULT_MAX_SESSIONS,
        maxPerIP: int = DEFAULT_MAX_PER_IP,
        logger: Logger | None = None,
    ) -> None:
        """
        @param clock: Schedules L{waitFor} timeouts; the global reactor,
            imported only when a timeout is first needed, by default.
        @param maxSessions: The most connections admitted at once.
        @param maxPerIP: The most connections admitted at once from one IP.
        @param logger: Where to log; the class's logger by default.
        @raise ValueError: A limit is less than 1.
        """
        for name, value in (("maxSessions", maxSessions), ("maxPerIP", maxPerIP)):
            if value < 1:
                raise ValueError(f"{name} must be at least 1")
        self.maxSessions = maxSessions
        self.maxPerIP = maxPerIP
        self._clock = clock
        if logger is not None:
            self._log = logger
        # Registered sessions, oldest first, with their canonical key and host.
        self._sessions: dict[BridgeProtocol, tuple[str, str]] = {}
        # Indexes of the registered sessions; each list or dict is oldest first.
        self._byKey: dict[str, list[BridgeProtocol]] = {}
        self._byHost: dict[str, dict[BridgeProtocol, None]] = {}
        self._byName: dict[str, dict[BridgeProtocol, None]] = {}
        # Sessions that opened, were taken out by pop or clear, and are open.
        self._detached: dict[BridgeProtocol, None] = {}
        # Admitted connections that have not opened yet.
        self._handshaking: dict[BridgeProtocol, None] = {}
        self._counts = _AdmissionCounts()
        self._observers = _Observers(self._log)
        self._waiters = _SessionWaiters()
        self._whenIdle: list[defer.Deferred[None]] = []
        self._stopping = False
        # The keys of the last revokeKeys: a connection whose handshake was
        # under way then may still open with a key revoked since.
        self._keyring: Keyring | None = None

    def __repr__(self) -> str:
        return (
            f"<SessionRegistry {len(self._sessions)} sessions, "
            f"{self._counts.admitted} admitted connections>"
        )

    @property
    def clock(self) -> IReactorTime:
        """
        The clock of L{waitFor} timeouts: the one given, or else the global
        reactor.
        """
        clock = self._clock
        if clock is None:
            from twisted.internet import reactor

            clock = self._clock = reactor
        return clock

    # Lookups.

    def count(self) -> int:
        """
        @return: How many sessions are registered.
        """
        return len(self._sessions)

    def connectionCount(self) -> int:
        """
        @return: How many admitted connections have not ended: the number
            L{maxSessions} limits, including connections in their handshake
            and sessions taken out with L{pop} or L{clear}.
        """
        return self._counts.admitted

    def all(self) -> list[BridgeProtocol]:
        """
        @return: The registered sessions, oldest first.
        """
        return list(self._sessions)

    def _lookup(self, target: str) -> list[BridgeProtocol]:
        named = self._byName.get(target.strip())
        if named:
            return list(named)
        isKey, token = _parseTarget(target)
        if isKey:
            return self._byKey.get(token, [])
        return list(self._byHost.get(token, ()))

    def get(self, target: str) -> BridgeProtocol | None:
        """
        Find a registered session.

        @param target: A key's name (C{"alice"}), a session key
            (C{"ip:port"} or C{"[ipv6]:port"}), or a bare IP address
            (C{"192.168.1.4"}, C{"::1"}, C{"[::1]"}).
        @return: The most recently opened session authenticated by a key of
            that name; else the session with that key, or the most recently
            opened session from that IP address; L{None} if there is none.
        """
        named = self._byName.get(target.strip())
        if named:
            return next(reversed(named))
        isKey, token = _parseTarget(target)
        if isKey:
            sessions = self._byKey.get(token)
            return sessions[-1] if sessions else None
        fromHost = self._byHost.get(token)
        return next(reversed(fromHost)) if fromHost else None

    def allFrom(self, target: str) -> list[BridgeProtocol]:
        """
        Find every registered session from one address.

        @param target: A bare IP address, or a session key.
        @return: The sessions from that IP address (or with that key),
            oldest first.
        """
        return list(self._lookup(target))

    def allNamed(self, name: str) -> list[BridgeProtocol]:
        """
        Find every registered session authenticated by a key of one name
        (several clients may share a key, or a name may have several keys
        while one is rotated).

        @param name: The name, as in the key file line C{alice <key>}.
        @return: Those sessions, oldest first; empty if there are none.
        """
        return list(self._byName.get(name.strip(), ()))

    def revokeKeys(self, keyring: Keyring, reason: str = REVOKED_REASON) -> list[BridgeProtocol]:
        """
        Close, with L{CloseCode.POLICY} and C{reason}, every session (those
        registered and those taken out with L{pop}) whose key C{keyring} no
        longer holds under the same name; the other sessions are not touched.
        Sessions without a recorded key (from a factory that does not
        authenticate with a keyring) are left alone.  A connection still in
        its handshake (which checks the keys it was accepted with) is
        closed in the same way if it opens with a key C{keyring} lacks.

        @param keyring: The keys the server accepts from now on.
        @param reason: The close reason the revoked peers see.
        @return: The sessions closed, oldest first.
        """
        revoked = [
            session
            for session in (*self._sessions, *self._detached)
            if session.peerKey is not None and not keyring.accepts(session.peerKey)
        ]
        self._keyring = keyring
        for session in revoked:
            self._log.info(
                "Closing {peer} ({name}, key {keyId}): its key was revoked",
                peer=session.key,
                name=session.name or "anonymous",
                keyId=session.keyId,
            )
            session.close(reason, CloseCode.POLICY)
        return revoked

    def pop(self, target: str | BridgeProtocol) -> BridgeProtocol | None:
        """
        Take a session out of the registry, leaving it open: it is no longer
        found by lookups, but it still counts against the limits until it
        ends, observers are still told when it closes, and L{stopService}
        still closes it.

        @param target: A session, a key's name, a session key, or a bare IP
            address (a name or an address takes the most recently opened
            session).
        @return: The session, or L{None} if there is none.
        """
        if isinstance(target, BridgeProtocol):
            session: BridgeProtocol | None = target if target in self._sessions else None
        else:
            session = self.get(target)
        if session is None:
            return None
        self._unregister(session)
        self._detached[session] = None
        return session

    def clear(
        self, reason: str = "closed by the server", code: CloseCode = CloseCode.NORMAL
    ) -> defer.Deferred[None]:
        """
        Close every registered session with a close record and empty the
        registry at once.  Each session still delivers the values it was
        sent and received before the close (see L{BridgeProtocol.close
        <netstructer.protocol.BridgeProtocol.close>}).

        @param reason: The reason the peers see.
        @param code: The close code the peers see.
        @return: A Deferred that fires with L{None} once all those sessions
            have ended.
        """
        sessions = self.all()
        for session in sessions:
            self._unregister(session)
            self._detached[session] = None
        for session in sessions:
            session.close(reason, code)
        return _whenAllClosed(sessions)

    def __len__(self) -> int:
        return len(self._sessions)

    def __iter__(self) -> Iterator[BridgeProtocol]:
        return iter(self.all())

    def __contains__(self, target: object) -> bool:
        if isinstance(target, BridgeProtocol):
            return target in self._sessions
        if isinstance(target, str):
            return self.get(target) is not None
        return False

    def waitFor(self, target: str, timeout: float | None = None) -> defer.Deferred[BridgeProtocol]:
        """
        Wait for a session to be registered.

        @param target: A key's name, a session key, or a bare IP address
            (any session of that name, or from that address, will do).
        @param timeout: Seconds to wait; L{None} waits as long as it takes.
        @return: A Deferred firing with the session: at once if one is
            already registered (the most recent, for an IP address),
            otherwise when one opens.  It fails with L{OperationTimedOut}
            after C{timeout} seconds.  Cancelling it forgets the wait and
            its timer.
        """
        existing = self.get(target)
        if existing is not None:
            return defer.succeed(existing)
        return self._waiters.wait(_parseTarget(target), target, timeout, lambda: self.clock)

    # Observers.

    def addObserver(self, observer: ISessionListener) -> None:
        """
        Tell C{observer} of sessions opening and closing from now on.

        @param observer: An L{ISessionListener} provider (or any object with
            its two methods).  An observer added while sessions are open will
            be told when they close.
        """
        self._observers.add(observer)

    def removeObserver(self, observer: ISessionListener) -> None:
        """
        Stop telling C{observer} of sessions.

        @param observer: An observer given to L{addObserver}.
        @raise ValueError: It was not observing.
        """
        self._observers.remove(observer)

    # The connection gate.

    def admit(self, connection: BridgeProtocol, address: IAddress) -> bool:
        """
        Decide whether a new connection may start its handshake, and count it
        if so, under the address it was admitted with (uncounted exactly so
        when it ends, even if its transport later names its peer
        differently); until it authenticates, L{stopService} aborts it.  The
        answer is C{False} (and a line is logged naming the peer and the
        reason) while the registry is stopping, when L{maxSessions}
        connections are already admitted, or when L{maxPerIP} are admitted
        from the same IP address.  (Peers without an IP address, such as
        those of a UNIX socket, are limited by L{maxSessions} only.)

        @param connection: The connection's protocol, built but not yet
            connected.
        @param address: The peer's address.
        @return: Whether to accept the connection.  A C{True} answer counts
            it until L{sessionClosed} is called for it.
        """
        key, host = _tokensOf(address, "")
        if self._stopping:
            self._log.info("Refusing {peer}: the server is stopping", peer=key)
            self.events.connectionRefused("stopping")
            return False
        counts = self._counts
        if counts.admitted >= self.maxSessions:
            self._log.warn(
                "Refusing {peer}: {count} connections are already open (the {limit} limit)",
                peer=key,
                count=counts.admitted,
                limit="maxSessions",
            )
            self.events.connectionRefused("max_sessions")
            return False
        fromHost = counts.fromHost(host)
        if fromHost >= self.maxPerIP and isinstance(getattr(address, "host", None), str):
            self._log.warn(
                "Refusing {peer}: {count} connections from {host} are already open "
                "(the {limit} limit)",
                peer=key,
                host=host,
                count=fromHost,
                limit="maxPerIP",
            )
            self.events.connectionRefused("max_per_ip")
            return False
        counts.count(connection, key, host)
        self._handshaking[connection] = None
        return True

    def sessionOpened(self, session: BridgeProtocol) -> None:
        """
        A connection completed its handshake: register it, tell the
        observers, then fire the L{waitFor} calls it satisfies.  While the
        registry is stopping, the session is then closed at once with
        L{CloseCode.GOING_AWAY}.

        @param session: The authenticated session.
        """
        self._handshaking.pop(session, None)
        if session in self._sessions or session in self._detached:
            return
        key, host = _tokensOf(session.peer, session.key)
        self._sessions[session] = (key, host)
        self._byKey.setdefault(key, []).append(session)
        self._byHost.setdefault(host, {})[session] = None
        if session.name is not None:
            self._byName.setdefault(session.name, {})[session] = None
        self._observers.opened(session)
        if session in self._sessions:
            self._waiters.fire((True, key), session)
            self._waiters.fire((False, host), session)
            if session.name is not None:
                # Names are never IP addresses, so this slot is the name's.
                self._waiters.fire((False, session.name), session)
        if self._stopping:
            session.close(SHUTDOWN_REASON, CloseCode.GOING_AWAY)
        elif (
            self._keyring is not None
            and session.peerKey is not None
            and not self._keyring.accepts(session.peerKey)
        ):
            self._log.info(
                "Closing {peer} ({name}, key {keyId}): its key was revoked during its handshake",
                peer=session.key,
                name=session.name or "anonymous",
                keyId=session.keyId,
            )
            session.close(REVOKED_REASON, CloseCode.POLICY)

    def sessionClosed(self, session: BridgeProtocol, reason: Failure) -> None:
        """
        A connection ended, whether or not it had authenticated: uncount it
        if it was admitted, unregister it if it is still registered (and only
        it: never a newer session with the same key), and tell the observers
        if it had opened.

        @param session: The connection.
        @param reason: Why it ended.
        """
        self._handshaking.pop(session, None)
        self._counts.uncount(session, _tokensOf(session.peer, session.key))
        opened = False
        if session in self._sessions:
            self._unregister(session)
            opened = True
        elif session in self._detached:
            del self._detached[session]
            opened = True
        if opened:
            self._observers.closed(session, reason)
        self._maybeIdle()

    def _unregister(self, session: BridgeProtocol) -> None:
        key, host = self._sessions.pop(session)
        withKey = self._byKey[key]
        withKey.remove(session)
        if not withKey:
            del self._byKey[key]
        fromHost = self._byHost[host]
        del fromHost[session]
        if not fromHost:
            del self._byHost[host]
        if session.name is not None:
            named = self._byName[session.name]
            del named[session]
            if not named:
                del self._byName[session.name]

    # The service.

    def startService(self) -> None:
        """
        Admit connections again after L{stopService}.
        """
        Service.startService(self)
        self._stopping = False

    def stopService(self) -> defer.Deferred[None]:
        """
        Shut down cleanly: refuse new connections; close every session that
        opened (registered or taken out) with L{CloseCode.GOING_AWAY} and
        L{SHUTDOWN_REASON}, which sends every value already accepted by
        C{sendBuffer} before the close record and ends the connection when
        the peer replies, or when the sessions' C{shutdownGrace} runs out
        (logging one line per session, see L{netstructer.closing}); and
        abort connections
        still in their handshake (they hold no accepted values: nothing is
        lost, and their peers see the handshake fail).

        @return: A Deferred that fires with L{None} once every admitted
            connection and every session has ended.
        """
        Service.stopService(self)
        self._stopping = True
        for connection in list(self._handshaking):
            if connection.transport is not None:
                connection.abort()
        for session in [*self._sessions, *self._detached]:
            session.close(SHUTDOWN_REASON, CloseCode.GOING_AWAY)
        d: defer.Deferred[None] = defer.Deferred()
        self._whenIdle.append(d)
        self._maybeIdle()
        return d

    def closesWritten(self) -> bool:
        """
        Whether this side's part of a shutdown is done: L{stopService} has
        started, no connection is still in its handshake, and every session
        has ended or has its close record on the socket (see
        L{BridgeProtocol.closeWritten
        <netstructer.protocol.BridgeProtocol.closeWritten>}).  The rest of
        each close (the peer's reply) finishes within the grace period,
        without anyone waiting on it.

        @return: L{True} if so.
        """
        return (
            self._stopping
            and not self._handshaking
            and all(session.closeWritten() for session in [*self._sessions, *self._detached])
        )

    def _maybeIdle(self) -> None:
        if not self._whenIdle:
            return
        if self._counts.admitted or self._sessions or self._detached or self._handshaking:
            return
        waiting, self._whenIdle = self._whenIdle, []
        for d in waiting:
            d.callback(None)


def _whenAllClosed(sessions: list[BridgeProtocol]) -> defer.Deferred[None]:
    """
    @return: A Deferred that fires with L{None} once every one of C{sessions}
        has ended.
    """
    d = defer.gatherResults([session.whenClosed() for session in sessions])
    return d.addCallback(lambda _: None)


class _AdmissionCounts:
    """
    The connections a registry admitted that have not ended: in all, and by
    the canonical key and host each was admitted under (uncounted exactly so
    when it ends, even if its transport later names its peer differently).

    @ivar admitted: How many.
    """

    def __init__(self) -> None:
        self.admitted = 0
        self._admittedAs: dict[BridgeProtocol, tuple[str, str]] = {}
        self._keys: dict[str, int] = {}
        self._hosts: dict[str, int] = {}

    def fromHost(self, host: str) -> int:
        """
        @return: How many admitted connections came from C{host}.
        """
        return self._hosts.get(host, 0)

    def count(self, connection: BridgeProtocol, key: str, host: str) -> None:
        """
        Count a connection just admitted.
        """
        self.admitted += 1
        self._hosts[host] = self._hosts.get(host, 0) + 1
        self._keys[key] = self._keys.get(key, 0) + 1
        self._admittedAs[connection] = (key, host)

    def uncount(self, connection: BridgeProtocol, fallback: tuple[str, str]) -> None:
        """
        A connection ended: uncount it, under what it was admitted as (or
        C{fallback}, its key and host now, for a connection admitted by
        someone else).  A connection never counted (built by a factory that
        does not ask L{SessionRegistry.admit}) changes nothing.
        """
        key, host = self._admittedAs.pop(connection, fallback)
        admitted = self._keys.get(key, 0)
        if not admitted:
            return
        if admitted == 1:
            del self._keys[key]
        else:
            self._keys[key] = admitted - 1
        fromHost = self._hosts[host]
        if fromHost == 1:
            del self._hosts[host]
        else:
            self._hosts[host] = fromHost - 1
        self.admitted -= 1


class _SessionWaiters:
    """
    The L{SessionRegistry.waitFor} calls waiting for a session to open, by
    the slot they wait on (C{(True, key)} for a session key, C{(False,
    host or name)} otherwise).
    """

    def __init__(self) -> None:
        self._waiting: dict[tuple[bool, str], list[defer.Deferred[BridgeProtocol]]] = {}

    def wait(
        self,
        slot: tuple[bool, str],
        target: str,
        timeout: float | None,
        clock: Callable[[], IReactorTime],
    ) -> defer.Deferred[BridgeProtocol]:
        """
        @return: A Deferred firing with the next session to open in C{slot},
            or failing with L{OperationTimedOut} after C{timeout} seconds;
            cancelling it forgets the wait and its timer.
        """
        timer: IDelayedCall | None = None

        def cancel(d: defer.Deferred[BridgeProtocol]) -> None:
            self._forget(slot, d)

        d: defer.Deferred[BridgeProtocol] = defer.Deferred(cancel)
        self._waiting.setdefault(slot, []).append(d)
        if timeout is not None:

            def timedOut() -> None:
                self._forget(slot, d)
                d.errback(
                    OperationTimedOut(
                        f"no session named or from {target} opened within {timeout} seconds"
                    )
                )

            timer = clock().callLater(timeout, timedOut)

            def stopTimer(result: object) -> object:
                if timer is not None and timer.active():
                    timer.cancel()
                return result

            d.addBoth(stopTimer)
        return d

    def _forget(self, slot: tuple[bool, str], d: defer.Deferred[BridgeProtocol]) -> None:
        waiting = self._waiting.get(slot)
        if waiting is not None and d in waiting:
            waiting.remove(d)
            if not waiting:
                del self._waiting[slot]

    def fire(self, slot: tuple[bool, str], session: BridgeProtocol) -> None:
        """
        A session opened in C{slot}: fire every wait on it.
        """
        for d in self._waiting.pop(slot, []):
            d.callback(session)


class _Observers:
    """
    The L{ISessionListener}s of a registry.  An observer that raises is
    logged and does not disturb the registry or the other observers.
    """

    def __init__(self, log: Logger) -> None:
        self._log = log
        self._observers: list[ISessionListener] = []

    def add(self, observer: ISessionListener) -> None:
        self._observers.append(observer)

    def remove(self, observer: ISessionListener) -> None:
        """
        @raise ValueError: It was not observing.
        """
        self._observers.remove(observer)

    def opened(self, session: BridgeProtocol) -> None:
        """
        Tell every observer that C{session} opened.
        """
        for observer in list(self._observers):
            try:
                observer.sessionOpened(session)
            except Exception:  # noqa: BLE001 (logged: an observer's bug stays its own)
                self._log.failure(
                    "Session observer {observer} failed when {peer} opened",
                    observer=observer,
                    peer=session.key,
                )

    def closed(self, session: BridgeProtocol, reason: Failure) -> None:
        """
        Tell every observer that C{session} closed.
        """
        for observer in list(self._observers):
            try:
                observer.sessionClosed(session, reason)
            except Exception:  # noqa: BLE001 (logged: an observer's bug stays its own)
                self._log.failure(
                    "Session observer {observer} failed when {peer} closed",
                    observer=observer,
                    peer=session.key,
                )
