# -*- test-case-name: tests.test_tlsfailure -*-
"""
Name why a TLS handshake failed, from the error OpenSSL (through Twisted's
TLS) or C{service_identity} ended the connection with.

Sans-IO: these functions only read an exception; the Twisted protocol hands
them the reason its connection was lost.
"""

from __future__ import annotations

from typing import Any

from service_identity import VerificationError

from netstructer.errors import TLSHandshakeError

__all__ = [
    "TLSFailureLimiter",
    "describeTLSFailure",
    "serverTLSFailure",
    "tlsHandshakeError",
]

_FIX = (
    "give the client the certificate's CA: trustRoots=DIR for a directory of .pem files "
    "(Twisted loads only *.pem from it; rename server.crt to server.pem), or for the "
    "blocking client a tls= ssl.SSLContext that trusts it"
)


def _opensslReasons(error: BaseException) -> list[str] | None:
    try:
        from OpenSSL import SSL
    except ImportError:  # pragma: no cover - pyOpenSSL comes with Twisted's TLS
        return None
    if not isinstance(error, SSL.Error):
        return None
    reasons = []
    for entry in error.args[0] if error.args and isinstance(error.args[0], list) else []:
        if isinstance(entry, tuple) and entry:
            reasons.append(str(entry[-1]))
    return reasons or [str(error)]


def describeTLSFailure(error: BaseException | None) -> str | None:
    """
    Say why a TLS handshake failed.

    @param error: The exception the connection was lost with.
    @return: A short description (the OpenSSL reasons, or the host name
        mismatch), or L{None} if C{error} is not a TLS failure.
    """
    if error is None:
        return None
    if isinstance(error, VerificationError):
        return f"host name verification failed: {error}"
    reasons = _opensslReasons(error)
    if reasons is None:
        return None
    return "; ".join(reasons)


def tlsHandshakeError(error: BaseException | None) -> TLSHandshakeError | None:
    """
    Build the client's error for a failed TLS handshake.

    @param error: The exception the connection was lost with.
    @return: The error naming certificate verification, the host name or the
        TLS alert, with the fix; or L{None} if C{error} is not a TLS failure.
    """
    description = describeTLSFailure(error)
    if description is None:
        return None
    lowered = description.lower()
    if "certificate verify failed" in lowered:
        return TLSHandshakeError(
            f"TLS certificate verification failed ({description}): the server's "
            f"certificate is not signed by a root this client trusts; {_FIX}"
        )
    if lowered.startswith("host name verification failed"):
        return TLSHandshakeError(
            f"TLS {description}: connect with a host name the server's certificate "
            "names, or give the server a certificate for this name"
        )
    if "alert" in lowered:
        return TLSHandshakeError(
            f"the TLS handshake failed with an alert ({description}): the peer refused "
            "this side's TLS (its certificate, or none where one is required); check "
            "both sides' TLS options"
        )
    return TLSHandshakeError(f"the TLS handshake failed ({description}); check both sides' TLS")


class TLSFailureLimiter:
    """
    Decide which failed TLS handshakes a server logs: at most one line per
    C{interval} seconds, counting the ones skipped.

    @ivar skipped: Failures not logged since the last line.
    """

    def __init__(self, interval: float = 10.0) -> None:
        """
        @param interval: Seconds between two logged lines.
        """
        self._interval = interval
        self._last: float | None = None
        self.skipped = 0

    def shouldLog(self, now: float) -> int | None:
        """
        @param now: The current time, in seconds.
        @return: L{None} to skip this failure, else how many were skipped
            before it (and the count restarts).
        """
        if self._last is not None and now - self._last < self._interval:
            self.skipped += 1
            return None
        self._last = now
        skipped, self.skipped = self.skipped, 0
        return skipped


def serverTLSFailure(
    error: BaseException | None,
    limiter: TLSFailureLimiter | None,
    now: float,
    log: Any,
    peer: str,
) -> TLSHandshakeError | None:
    """
    Name a server's failed TLS handshake, and log it (at most one line per
    C{limiter}'s interval, counting those skipped).

    @param error: Why the connection was lost during the handshake.
    @param limiter: The server's limiter, or L{None} to log every failure.
    @param now: The current time.
    @param log: A L{Logger<twisted.logger.Logger>}, to warn with.
    @param peer: The client's address, for the line.
    @return: The error naming the TLS failure, or L{None} if it was not one.
    """
    named = tlsHandshakeError(error)
    if named is None:
        return None
    skipped = limiter.shouldLog(now) if limiter is not None else 0
    if skipped is not None:
        log.warn(
            "TLS handshake with {peer} failed: {reason} ({skipped} similar failures "
            "not logged since the last line)",
            peer=peer,
            reason=describeTLSFailure(error),
            skipped=skipped,
        )
    return named
