# -*- test-case-name: tests.test_cluster_config -*-
"""
The settings of a cluster: where its Redis (or Valkey) server is
(L{ClusterURL}, parsed by L{parseClusterURL}), what this node is called
(L{checkNodeName}) and the key its messages are sealed with
(L{clusterKeyring}).

A cluster URL is C{redis://[[USER]:PASSWORD@]HOST[:PORT][/DB][?OPTIONS]}, or
C{rediss://...} for TLS to Redis (the server's certificate is verified
against the system's trust store, or against C{ca=PATH}).  The password may
also come from the environment variable L{PASSWORD_VARIABLE}, so that it
never appears on a command line.  Options:

    - C{prefix=NAME}: the prefix of every Redis key and channel of the
      cluster (C{netstructer} by default), so that several clusters can
      share one Redis database;
    - C{timeout=SECONDS}: how long connecting to Redis and each command may
      take (5 by default);
    - C{ca=PATH}: a file of CA certificates that verify a C{rediss://}
      server.

No password ever appears in a C{repr}, a message or a log line: a URL is
shown by L{ClusterURL.describe}.

Standard library only (and L{netstructer.keys}).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, unquote, urlsplit

from netstructer.errors import ClusterError, InvalidKey
from netstructer.keys import Keyring, StrPath, checkName, readKeyFile

__all__ = [
    "DEFAULT_PORT",
    "DEFAULT_PREFIX",
    "DEFAULT_TIMEOUT",
    "PASSWORD_VARIABLE",
    "ClusterURL",
    "checkNodeName",
    "clusterKeyring",
    "eventsChannel",
    "nodeChannel",
    "parseClusterURL",
    "redisKey",
]

DEFAULT_PORT = 6379
"""Redis's port, when a URL names none."""

DEFAULT_PREFIX = "netstructer"
"""The prefix of the cluster's Redis keys and channels, by default."""

DEFAULT_TIMEOUT = 5.0
"""Seconds that connecting to Redis, and each command, may take."""

PASSWORD_VARIABLE = "NETSTRUCTER_CLUSTER_PASSWORD"  # noqa: S105 (a variable's name)
"""The environment variable holding Redis's password when the URL has none."""

_PREFIX = re.compile(r"[A-Za-z0-9_.-]{1,64}\Z")
_OPTIONS = frozenset({"prefix", "timeout", "ca"})


@dataclass(frozen=True)
class ClusterURL:
    """
    Where a cluster's Redis server is, and how to log in to it.

    @ivar host: Redis's host name or IP address.
    @ivar port: Redis's port.
    @ivar db: The database number.
    @ivar tls: Whether to speak TLS to Redis (C{rediss://}).
    @ivar username: The ACL user name, or L{None}.
    @ivar password: The password, or L{None}; never shown.
    @ivar prefix: The prefix of the cluster's keys and channels.
    @ivar timeout: Seconds that connecting, and each command, may take.
    @ivar caFile: CA certificates verifying a TLS server, or L{None} for the
        system's trust store.
    """

    host: str
    port: int = DEFAULT_PORT
    db: int = 0
    tls: bool = False
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    prefix: str = DEFAULT_PREFIX
    timeout: float = DEFAULT_TIMEOUT
    caFile: str | None = None

    def describe(self) -> str:
        """
        @return: The URL without its password, for messages and logs.
        """
        scheme = "rediss" if self.tls else "redis"
        login = ""
        if self.username is not None or self.password is not None:
            login = f"{self.username or ''}{':***' if self.password is not None else ''}@"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{scheme}://{login}{host}:{self.port}/{self.db}"

    def __repr__(self) -> str:
        return f"<ClusterURL {self.describe()} prefix={self.prefix!r}>"

    __str__ = describe


def _bad(url: str, problem: str) -> ClusterError:
    # The URL itself is never repeated: it may hold a password.
    return ClusterError(
        f"The cluster URL is not valid: {problem}. Write it as "
        "redis://[[USER]:PASSWORD@]HOST[:PORT][/DB][?prefix=NAME&timeout=SECONDS] "
        "(rediss:// for TLS), or give the password in the environment variable "
        f"{PASSWORD_VARIABLE}."
    )


def parseClusterURL(url: str | ClusterURL, environ: Mapping[str, str] | None = None) -> ClusterURL:
    """
    Parse a cluster URL.

    @param url: A C{redis://} or C{rediss://} URL (or an already parsed
        one, returned as it is).
    @param environ: Where L{PASSWORD_VARIABLE} is read when the URL holds
        no password; L{os.environ} by default.
    @return: The parsed URL.
    @raise ClusterError: The URL is malformed; the message never holds the
        password.
    """
    if isinstance(url, ClusterURL):
        return url
    if not isinstance(url, str):
        raise TypeError(f"a cluster URL is text, not {type(url).__name__}")
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as e:
        raise _bad(url, f"its host or port cannot be read ({e})") from None
    if parts.scheme not in ("redis", "rediss"):
        raise _bad(url, "it must start with redis:// or rediss://")
    if not parts.hostname:
        raise _bad(url, "it names no host")
    db = 0
    path = parts.path.strip("/")
    if path:
        if not (path.isascii() and path.isdigit()):
            raise _bad(url, "its path must be a database number, such as /0")
        db = int(path)
    options: dict[str, str] = {}
    for name, value in parse_qsl(parts.query, keep_blank_values=True, strict_parsing=False):
        if name not in _OPTIONS:
            raise _bad(url, f"it has an unknown option {name!r} (known: prefix, timeout, ca)")
        options[name] = value
    prefix = options.get("prefix", DEFAULT_PREFIX)
    if _PREFIX.match(prefix) is None:
        raise _bad(url, "its prefix must be 1 to 64 letters, digits, '_', '.' or '-'")
    timeout = DEFAULT_TIMEOUT
    if "timeout" in options:
        try:
            timeout = float(options["timeout"])
        except ValueError:
            timeout = -1.0
        if not 0 < timeout <= 3600:
            raise _bad(url, "its timeout must be a number of seconds above 0")
    tls = parts.scheme == "rediss"
    if "ca" in options and not tls:
        raise _bad(url, "the ca option needs TLS: use rediss://")
    password = unquote(parts.password) if parts.password is not None else None
    if password is None:
        password = (os.environ if environ is None else environ).get(PASSWORD_VARIABLE) or None
    username = unquote(parts.username) if parts.username else None
    return ClusterURL(
        host=parts.hostname,
        port=port if port is not None else DEFAULT_PORT,
        db=db,
        tls=tls,
        username=username,
        password=password,
        prefix=prefix,
        timeout=timeout,
        caFile=options.get("ca") or None,
    )


def checkNodeName(name: str) -> str:
    """
    Check the name of a node: it appears in Redis keys and channel names,
    in logs and in the sessions' descriptors.

    @param name: The name, e.g. C{"n1"} or the host's name.
    @return: C{name}.
    @raise ClusterError: It is not a valid name (the rules of a key's
        name: ASCII letters, digits, C{_}, C{.}, C{@}, C{+} and C{-}, at most
        64 characters, not an IP address).
    """
    try:
        return checkName(name)
    except InvalidKey as e:
        raise ClusterError(f"The node name {name!r} is not valid: {e}") from None


def clusterKeyring(key: Keyring | StrPath) -> Keyring:
    """
    The cluster's key: the keys every node seals and opens the cluster's
    messages with (the first seals; all open, for rotation without
    downtime, as for a server's keys).

    @param key: A L{Keyring}, or the path of a key file (made by
        C{netstructer keygen}; the same file on every node).
    @return: The keyring.
    @raise KeyFileError: The file is missing, unsafe or malformed.
    """
    if isinstance(key, Keyring):
        return key
    return readKeyFile(key)


def redisKey(prefix: str, *parts: str) -> str:
    """
    The name of one of the cluster's Redis keys or channels.  The prefix is
    in braces (a Redis Cluster hash tag), so that every key of a cluster is
    in one slot and its scripts may use them together.

    @param prefix: The cluster's prefix (L{ClusterURL.prefix}).
    @param parts: The rest of the name.
    @return: C{"{prefix}:part:part"}.
    """
    return ":".join(("{" + prefix + "}", *parts))


def eventsChannel(prefix: str) -> str:
    """
    @return: The channel every node publishes its directory's changes on.
    """
    return redisKey(prefix, "events")


def nodeChannel(prefix: str, node: str) -> str:
    """
    @return: The channel of the messages for one node.
    """
    return redisKey(prefix, "to", node)
