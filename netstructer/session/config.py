# -*- test-case-name: tests.test_protocol -*-
"""
L{BridgeConfig}: everything one session needs to know, shared by every
connection a factory (or a blocking link) makes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from netstructer.channel import PROTOCOL_VERSION, Channel, Role, checkOptions
from netstructer.closing import DEFAULT_SHUTDOWN_GRACE
from netstructer.keys import Keyring, asKeyring
from netstructer.values import DEFAULT_LIMITS, Limits

__all__ = ["BridgeConfig"]


@dataclass(frozen=True)
class BridgeConfig:
    """
    Everything a L{BridgeProtocol} needs to know, shared by every connection a
    factory makes.

    @ivar keyring: The keys; a client connects with the first, a server accepts
        every one.
    @ivar suite: C{"noise"} (default) or C{"fernet"}.
    @ivar cipher: The AEAD a noise client asks for (C{"AESGCM"} or
        C{"ChaChaPoly"}).
    @ivar acceptSuites: The suites a server accepts; default C{(suite,)}.
    @ivar limits: Decoding limits; C{limits.maxSize} is the largest encoded
        value this side accepts (default 16 MiB, at most 2 GiB).
    @ivar handshakeTimeout: Seconds a connection may take to authenticate.
    @ivar keepAliveInterval: Send a ping after this many seconds without
        hearing from the peer, and drop the connection if another interval
        passes in silence; L{None} disables keep-alive.
    @ivar idleTimeout: Close the session (with L{CloseCode.IDLE_TIMEOUT})
        after this many seconds without a value in either direction; L{None}
        (the default) never does.
    @ivar shutdownGrace: The grace period of every close, in seconds
        (default 5): a close that has not completed by then (the peer did not
        reply, or does not read) ends the connection anyway, logging how
        many values the peer had not confirmed (see L{netstructer.closing}).
    @ivar closeTimeout: Deprecated alias of C{shutdownGrace}, kept for
        existing callers; after construction both hold the grace period.
    @ivar maxPendingValues: Values L{BridgeProtocol.sendBuffer} may hold
        while the handshake is still running.
    @ivar maxQueuedValues: Received values queued for
        L{BridgeProtocol.recvBuffer} before reading from the peer pauses.
    @ivar maxQueuedBytes: Encoded bytes of received values queued before
        reading from the peer pauses.
    @ivar fernetTTL: With the fernet suite, the token TTL in seconds.
    @ivar protocolVersion: The highest protocol version to offer (a client)
        or accept (a server); 1 speaks exactly as version 1 did, for a peer
        that refuses anything newer.
    @ivar maxStreams: How many streams each way a session may have open at
        once; L{None} for the streams engine's default (16).
    @ivar streamIdleTimeout: Seconds a stream waits on the peer (for data
        it was granted credit for, an answer, a confirmation) before it is
        aborted (TIMEOUT); L{None} waits for ever.  60 by default.
    @ivar streamWindow: The credit each incoming stream is granted, in
        bytes: the most of it in flight; L{None} for the streams engine's
        default (512 KiB, for a local link).  Raise it to a round trip's
        worth of bandwidth on a link with a long round trip (values sent
        meanwhile wait behind up to that much of a stream).
    @ivar maxStreamSize: The largest stream a session accepts, in bytes;
        L{None} (the default) for no limit.  A larger one is refused
        (TOO_LARGE) when it announces its size, or aborted when it passes
        the limit.
    """

    keyring: Keyring
    suite: str = "noise"
    cipher: str = "AESGCM"
    acceptSuites: tuple[str, ...] | None = None
    limits: Limits = DEFAULT_LIMITS
    handshakeTimeout: float = 10.0
    keepAliveInterval: float | None = 60.0
    idleTimeout: float | None = None
    shutdownGrace: float = DEFAULT_SHUTDOWN_GRACE
    closeTimeout: float | None = None
    maxPendingValues: int = 1000
    maxQueuedValues: int = 1000
    maxQueuedBytes: int = 64 * 1024 * 1024
    fernetTTL: float | None = None
    protocolVersion: int = PROTOCOL_VERSION
    maxStreams: int | None = None
    streamIdleTimeout: float | None = 60.0
    streamWindow: int | None = None
    maxStreamSize: int | None = None

    def __post_init__(self) -> None:
        if self.closeTimeout is not None:
            if self.shutdownGrace not in (DEFAULT_SHUTDOWN_GRACE, self.closeTimeout):
                raise ValueError(
                    "closeTimeout is an alias of shutdownGrace: give only shutdownGrace"
                )
            object.__setattr__(self, "shutdownGrace", self.closeTimeout)
        object.__setattr__(self, "closeTimeout", self.shutdownGrace)
        for name in ("handshakeTimeout", "shutdownGrace"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be a positive number of seconds")
        for name in ("keepAliveInterval", "idleTimeout", "fernetTTL", "streamIdleTimeout"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ValueError(f"{name} must be a positive number of seconds or None")
        for name in ("maxPendingValues", "maxQueuedValues", "maxQueuedBytes"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        if self.maxStreams is not None and self.maxStreams < 1:
            raise ValueError("maxStreams must be at least 1, or None")
        if self.streamWindow is not None and not 1 <= self.streamWindow < 2**31:
            raise ValueError("streamWindow must be from 1 to 2**31 - 1 bytes, or None")
        if self.maxStreamSize is not None and self.maxStreamSize < 0:
            raise ValueError("maxStreamSize must be a number of bytes, or None")
        # Check what the channel would, now rather than in connectionMade.
        checkOptions(
            suite=self.suite,
            cipher=self.cipher,
            acceptSuites=self.acceptSuites,
            limits=self.limits,
            fernetTTL=self.fernetTTL,
        )

    @classmethod
    def fromKey(
        cls, key: bytes | str | Keyring | list[bytes | str], **options: Any
    ) -> BridgeConfig:
        """
        Build a configuration from any accepted form of key.

        @param key: A Fernet-format key, a list of them, or a L{Keyring}.
        @param options: Any other field of L{BridgeConfig}.
        @return: The configuration.
        """
        return cls(keyring=asKeyring(key), **options)

    def makeChannel(self, role: Role, currentTime: Callable[[], float]) -> Channel:
        """
        Make the sans-IO channel for one connection.

        @param role: Which end the connection is.
        @param currentTime: The clock for Fernet timestamps.
        @return: A new channel.
        """
        return Channel(
            role,
            self.keyring,
            suite=self.suite,
            cipher=self.cipher,
            acceptSuites=self.acceptSuites,
            limits=self.limits,
            fernetTTL=self.fernetTTL,
            currentTime=currentTime,
            protocolVersion=self.protocolVersion,
        )
