# -*- test-case-name: tests.test_tap -*-
"""
The C{twistd netstructer} plugin: L{Options} and L{makeService}.

C{twistd -n netstructer} runs a L{Server<netstructer.server.Server>} with
the echo handler on C{127.0.0.1:5000}, with the key from
C{~/.config/netstructer/key} (made on first start).  Every choice has an
option; C{twistd netstructer --help} lists them.

Decisions an operator should know:

    - B{Interface.}  A bare port number (C{--port 5000}, the default) listens
      on C{--interface}, which is C{127.0.0.1}: a new server is not reachable
      from other machines until the operator says so (C{--interface 0.0.0.0},
      C{--interface ::} or a full endpoint description such as
      C{tcp:5000:interface=192.0.2.7}).
    - B{Key.}  An explicit C{--key-file} wins; then the C{NETSTRUCTER_KEY}
      environment variable; then the default key file
      (L{defaultKeyPath<netstructer.keys.defaultKeyPath>}), which is created
      with a new key (mode 0600) if it does not exist, and its path logged.
      An explicit key file is never created: a missing, unreadable, group- or
      world-readable or malformed one stops start-up with a message naming
      the file and the fix.
    - B{Handler.}  C{echo}: every value is sent back, so that C{netstructer
      send --reply} and C{netstructer bench} work against a fresh server,
      and nothing the peers send is written to the logs.
    - B{TLS.}  C{--port ssl:...} gives TLS under the NetStructer channel
      through the endpoint description.  C{--tls-cert} (with C{--tls-key})
      wraps every listening endpoint in TLS instead, and C{--tls-ca} then
      requires client certificates issued by that CA (mutual TLS).

Every start-up error found while parsing the options (a bad value, a key
file, a handler that cannot be loaded, an endpoint description that does not
parse, an unreadable certificate) is a L{usage.UsageError} naming the option:
C{twistd} prints it and exits with status 1.
"""

from __future__ import annotations

import os
import re
import signal
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Final, NoReturn, TypeVar, cast

from twisted.application.internet import StreamServerEndpointService
from twisted.application.service import IService, Service
from twisted.internet import defer
from twisted.internet.endpoints import quoteStringArgument, serverFromString
from twisted.internet.interfaces import (
    IListeningPort,
    IProtocolFactory,
    IStreamServerEndpoint,
)
from twisted.logger import Logger
from twisted.python import usage
from zope.interface import implementer

from netstructer._version import versionLine
from netstructer.channel import MAX_VALUE_SIZE_LIMIT
from netstructer.errors import InvalidKey, KeyFileError, NetStructerError
from netstructer.keys import (
    ENVIRONMENT_VARIABLE,
    Keyring,
    defaultKeyPath,
    loadOrCreateKeyFile,
    readKeyFile,
)
from netstructer.tuning import tuneAllocator

__all__ = [
    "DEFAULT_INTERFACE",
    "DEFAULT_PORT",
    "KeyReloadOnSignal",
    "KeySource",
    "Options",
    "TLSServerEndpoint",
    "loadKeyring",
    "makeService",
    "parseSize",
    "serverDescription",
]

DEFAULT_PORT = "5000"
"""The port a server listens on when C{--port} is not given."""

DEFAULT_INTERFACE = "127.0.0.1"
"""The interface a bare port number listens on when C{--interface} is not given."""

DEFAULT_MAX_BUFFER_SIZE = 16 * 1024 * 1024
"""The default largest encoded value a server accepts (16 MiB)."""

MAX_BUFFER_SIZE = MAX_VALUE_SIZE_LIMIT
"""The largest C{--max-buffer-size} allowed (just under 2 GiB)."""

_STREAM_TIMEOUT: Final = 60.0

MAX_STREAM_SIZE_OPTION: Final = 2**62
"""The largest C{--max-stream-size} allowed."""

_LISTEN_BACKLOG = 1024
"""The accept queue of a bare C{--port} number."""

_SUITES = ("noise", "fernet")
_SIZE = re.compile(r"\A\s*(\d+)\s*([kmgt]?)(i?b)?\s*\Z", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}

_log = Logger()

_T = TypeVar("_T")


# Coercion.  usage.Options reports a ValueError from a coerce function as
# "Parameter type enforcement failed: <message>", so every message names its
# option.


def _metricsEndpoint(value: str) -> str:
    """
    Read C{--metrics}, checking that C{prometheus_client} is installed.

    @param value: The option's value.
    @return: The endpoint description.
    @raise ValueError: The value is malformed, or the C{metrics} extra is
        missing; the message names the option.
    """
    try:
        from netstructer.metricsweb import metricsEndpoint
    except ImportError as e:
        raise ValueError(
            f"--metrics needs prometheus_client ({e}): pip install 'netstructer[metrics]'"
        ) from e
    try:
        return metricsEndpoint(value)
    except ValueError as e:
        raise ValueError(f"--metrics: {e}") from e


def parseSize(
    text: str, option: str = "--max-buffer-size", *, maximum: int = MAX_BUFFER_SIZE
) -> int:
    """
    Parse a size in bytes, with an optional binary unit.

    @param text: A positive whole number of bytes, optionally followed by
        C{K}, C{M} or C{G} (also C{KiB}, C{MB}, ...: all units are powers of
        1024).
    @param option: The option the size was given for, for messages.
    @param maximum: The largest size allowed.
    @return: The size in bytes.
    @raise ValueError: C{text} is not such a size, is zero, or exceeds
        C{maximum}; the message names C{option}.
    """
    match = _SIZE.match(text)
    if match is None:
        raise ValueError(
            f"{option} must be a number of bytes, optionally with a unit (16777216, 16M, 1G),"
            f" not {text!r}"
        )
    size = int(match.group(1)) * _SIZE_UNITS[match.group(2).lower()]
    if size < 1:
        raise ValueError(f"{option} must be at least 1 byte")
    if size > maximum:
        raise ValueError(f"{option} must be at most {maximum} bytes ({maximum // 1024**3} GiB)")
    return size


def _streamSize(text: str) -> int:
    """
    Parse C{--max-stream-size}.
    """
    return parseSize(text, "--max-stream-size", maximum=MAX_STREAM_SIZE_OPTION)


def _positiveInt(option: str) -> Callable[[str], int]:
    """
    Make a coerce function for a whole number of at least 1.

    @param option: The option's name, for messages.
    @return: The coerce function.
    """

    def coerce(text: str) -> int:
        try:
            value = int(text.strip())
        except ValueError:
            raise ValueError(f"{option} must be a whole number, not {text!r}") from None
        if value < 1:
            raise ValueError(f"{option} must be at least 1, not {value}")
        return value

    return coerce


def _seconds(option: str, *, zeroMeansNever: bool) -> Callable[[str], float | None]:
    """
    Make a coerce function for a duration in seconds.

    @param option: The option's name, for messages.
    @param zeroMeansNever: Whether C{0} is allowed, meaning "no limit"
        (coerced to L{None}).
    @return: The coerce function.
    """

    def coerce(text: str) -> float | None:
        try:
            value = float(text.strip())
        except ValueError:
            raise ValueError(f"{option} must be a number of seconds, not {text!r}") from None
        if value != value or value in (float("inf"), float("-inf")):
            raise ValueError(f"{option} must be a finite number of seconds, not {text!r}")
        if zeroMeansNever and value == 0:
            return None
        if value <= 0:
            floor = "0 (never) or more" if zeroMeansNever else "more than 0"
            raise ValueError(f"{option} must be {floor} seconds, not {text!r}")
        return value

    return coerce


def _suites(text: str) -> tuple[str, ...]:
    """
    Coerce C{--suite}: one suite, or several separated by commas.

    @param text: The option's value.
    @return: The suites, in order, without duplicates.
    @raise ValueError: A suite is unknown, or none is given.
    """
    suites: list[str] = []
    for item in text.split(","):
        suite = item.strip().lower()
        if not suite:
            continue
        if suite not in _SUITES:
            raise ValueError(
                f"--suite must be {' or '.join(_SUITES)} (or both, comma-separated),"
                f" not {item.strip()!r}"
            )
        if suite not in suites:
            suites.append(suite)
    if not suites:
        raise ValueError(f"--suite must be {' or '.join(_SUITES)}, not {text!r}")
    return tuple(suites)


def _nonEmpty(option: str) -> Callable[[str], str]:
    """
    Make a coerce function refusing empty text.

    @param option: The option's name, for messages.
    @return: The coerce function.
    """

    def coerce(text: str) -> str:
        if not text.strip():
            raise ValueError(f"{option} must not be empty")
        return text.strip()

    return coerce


def _path(option: str) -> Callable[[str], str]:
    """
    Make a coerce function for a file name, expanding C{~}.

    @param option: The option's name, for messages.
    @return: The coerce function.
    """

    def coerce(text: str) -> str:
        if not text.strip():
            raise ValueError(f"{option} must be a file name, not an empty string")
        return os.path.expanduser(text)

    return coerce


# Keys.


class KeySource:
    """
    Where a keyring came from, for logging and messages.

    @ivar description: Names the source: a key file's path, or the
        environment variable.
    @ivar path: The key file, if the keys came from one.
    @ivar created: Whether the key file was created just now.
    """

    def __init__(self, description: str, path: Path | None = None, created: bool = False) -> None:
        """
        @param description: Names the source.
        @param path: The key file, if any.
        @param created: Whether the key file was created just now.
        """
        self.description = description
        self.path = path
        self.created = created

    def __repr__(self) -> str:
        """
        @return: The source, for debugging; never key material.
        """
        return f"<KeySource {self.description} created={self.created}>"


def loadKeyring(
    keyFile: str | os.PathLike[str] | None,
    environ: Mapping[str, str] | None = None,
    *,
    create: bool,
) -> tuple[Keyring, KeySource]:
    """
    Find the keys to use, the same way for C{twistd netstructer} and the
    C{netstructer} command: an explicit key file wins; then the
    C{NETSTRUCTER_KEY} environment variable; then the default key file.

    @param keyFile: The key file given explicitly, or L{None}.
    @param environ: The environment; L{os.environ} if L{None}.
    @param create: Whether to create the default key file, with a new key,
        if it does not exist (servers do; clients, which need the server's
        key, do not).  An explicit key file is never created.
    @return: The keyring and where it came from.
    @raise InvalidKey: No usable key: the explicit or default key file is
        missing, unreadable, readable by group or others, or malformed (a
        L{KeyFileError<netstructer.errors.KeyFileError>} naming the file and
        the fix), or the environment variable holds a bad key.
    """
    if environ is None:
        environ = os.environ
    if keyFile is not None:
        path = Path(os.path.expanduser(os.fspath(keyFile)))
        return readKeyFile(path), KeySource(f"key file {path}", path)
    fromEnvironment = Keyring.fromEnvironment(environ)
    if fromEnvironment is not None:
        return fromEnvironment, KeySource(f"the environment variable {ENVIRONMENT_VARIABLE}")
    path = defaultKeyPath(environ)
    if create:
        keyring, created = loadOrCreateKeyFile(path)
        return keyring, KeySource(f"key file {path}", path, created)
    if not os.path.lexists(path):
        raise InvalidKey(
            f"no key: {path} does not exist and {ENVIRONMENT_VARIABLE} is not set."
            f" Give the server's key file with --key-file, or set {ENVIRONMENT_VARIABLE}"
            f" (a server run as this user creates {path} on its first start;"
            f" `netstructer keygen -o FILE` makes a new key)."
        )
    return readKeyFile(path), KeySource(f"key file {path}", path)


# TLS.


def _readFile(option: str, path: str) -> bytes:
    """
    Read a certificate or key file for an option.

    @param option: The option, for messages.
    @param path: The file.
    @return: Its bytes.
    @raise usage.UsageError: It cannot be read.
    """
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise usage.UsageError(f"{option} {path}: cannot read it: {e.strerror}") from e


def _tlsOptions(certFile: str, keyFile: str | None, caFile: str | None) -> Any:
    """
    Build the TLS context factory of C{--tls-cert}, C{--tls-key} and
    C{--tls-ca}.

    @param certFile: PEM file with the server's certificate first, then
        optionally its chain (and its private key, if C{keyFile} is
        L{None}).
    @param keyFile: PEM file with the server's private key, or L{None}.
    @param caFile: PEM file with the certificates of the CAs whose client
        certificates are accepted; L{None} for no client certificates.
    @return: A L{CertificateOptions<twisted.internet.ssl.CertificateOptions>}.
    @raise usage.UsageError: A file cannot be read or parsed.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding, load_pem_private_key
    from OpenSSL.SSL import Error as OpenSSLError
    from twisted.internet import ssl

    certPEM = _readFile("--tls-cert", certFile)
    keyPEM = certPEM if keyFile is None else _readFile("--tls-key", keyFile)
    try:
        chain = x509.load_pem_x509_certificates(certPEM)
    except ValueError as e:
        raise usage.UsageError(f"--tls-cert {certFile}: no PEM certificate in it ({e})") from e
    try:
        privateKey = load_pem_private_key(keyPEM, password=None)
    except (ValueError, TypeError) as e:
        where = f"--tls-key {keyFile}" if keyFile is not None else f"--tls-cert {certFile}"
        raise usage.UsageError(
            f"{where}: no usable PEM private key in it (an unencrypted key is needed;"
            " give it with --tls-key if it is in another file)"
        ) from e
    trustRoot = None
    if caFile is not None:
        caPEM = _readFile("--tls-ca", caFile)
        try:
            authorities = x509.load_pem_x509_certificates(caPEM)
        except ValueError as e:
            raise usage.UsageError(f"--tls-ca {caFile}: no PEM certificate in it ({e})") from e
        trustRoot = ssl.trustRootFromCertificates(
            [ssl.Certificate.loadPEM(each.public_bytes(Encoding.PEM)) for each in authorities]
        )
    try:
        # pyOpenSSL takes cryptography's objects (and deprecates its own).
        options = ssl.CertificateOptions(
            privateKey=cast(Any, privateKey),
            certificate=cast(Any, chain[0]),
            extraCertChain=cast(Any, chain[1:]),
            trustRoot=trustRoot,
        )
        # Build the context now, so that a key that does not match the
        # certificate stops start-up rather than the first connection.
        options.getContext()
    except (OpenSSLError, ValueError) as e:
        raise usage.UsageError(
            f"--tls-cert {certFile}: the private key does not match the certificate: {e}"
        ) from e
    return options


@implementer(IStreamServerEndpoint)
class TLSServerEndpoint:
    """
    Wraps any stream server endpoint (TCP, UNIX, ...) in TLS: the server
    side of C{--tls-cert}, the counterpart of L{wrapClientTLS
    <twisted.internet.endpoints.wrapClientTLS>}.

    @ivar wrapped: The endpoint listened on.
    @ivar contextFactory: The TLS options (an C{IOpenSSLServerConnectionCreator}
        such as L{CertificateOptions<twisted.internet.ssl.CertificateOptions>}).
    """

    def __init__(self, wrapped: IStreamServerEndpoint, contextFactory: Any) -> None:
        """
        @param wrapped: The endpoint to listen on.
        @param contextFactory: The server's TLS options.
        """
        self.wrapped = wrapped
        self.contextFactory = contextFactory

    def __repr__(self) -> str:
        """
        @return: The wrapped endpoint, for messages.
        """
        return f"<TLSServerEndpoint over {self.wrapped!r}>"

    def listen(self, protocolFactory: IProtocolFactory) -> defer.Deferred[IListeningPort]:
        """
        Listen on the wrapped endpoint, speaking TLS to every connection.

        @param protocolFactory: Builds the protocol each connection carries
            inside TLS.
        @return: The wrapped endpoint's L{Deferred<twisted.internet.defer.Deferred>}.
        """
        from twisted.protocols.tls import TLSMemoryBIOFactory

        result: defer.Deferred[IListeningPort] = self.wrapped.listen(
            TLSMemoryBIOFactory(self.contextFactory, False, protocolFactory)
        )
        return result


# Options.


def serverDescription(port: str, interface: str = DEFAULT_INTERFACE) -> str:
    """
    Turn a C{--port} or C{--listen} value into an endpoint description.

    @param port: A port number, or any server endpoint description.
    @param interface: The interface a bare port number listens on.
    @return: The description: C{tcp:N:interface=...:backlog=1024} for a
        bare number.
    @raise usage.UsageError: A bare port number is out of range.
    """
    text = port.strip()
    if text.isdigit():
        if int(text) > 65535:
            raise usage.UsageError(
                f"port {int(text)} is out of range: choose 1 to 65535 (0 picks a free one)"
            )
        # A deeper accept queue than Twisted's default (50), so a burst of
        # connections is not slowed by SYNs the kernel drops.
        if interface:
            return (
                f"tcp:{int(text)}:interface={quoteStringArgument(interface)}"
                f":backlog={_LISTEN_BACKLOG}"
            )
        return f"tcp:{int(text)}:backlog={_LISTEN_BACKLOG}"
    return text


def _withoutBacklog(description: str) -> str:
    """
    An endpoint description without its C{backlog} argument, which does not
    change where it listens.
    """
    return re.sub(r":backlog=\d+", "", description)


def _checkDescription(option: str, value: str, description: str) -> None:
    """
    Check that an endpoint description parses, without listening.

    @param option: The option it came from, for messages.
    @param value: What the operator wrote.
    @param description: The description it became.
    @raise usage.UsageError: It does not parse, names an unknown endpoint
        type, or names a certificate file that cannot be read or parsed.
    """
    from OpenSSL.crypto import Error as CryptoError
    from OpenSSL.SSL import Error as OpenSSLError

    try:
        # The built-in endpoint parsers only record the reactor, so none is
        # needed to check a description.  (ssl: reads its PEM files here.)
        serverFromString(None, description)
    except OSError as e:
        raise usage.UsageError(
            f"{option} {value}: cannot read {e.filename or 'a file it names'}: {e.strerror}"
        ) from e
    except (ValueError, TypeError, KeyError, CryptoError, OpenSSLError) as e:
        raise usage.UsageError(
            f"{option} {value}: not a usable endpoint description ({type(e).__name__}: {e});"
            " give a port number or a description such as tcp:5000:interface=127.0.0.1,"
            " unix:/run/netstructer.sock or ssl:5000:privateKey=key.pem:certKey=cert.pem"
        ) from e
    except Exception:  # noqa: BLE001
        # An endpoint plugin that needs a real reactor to parse its
        # description: it is checked when the server listens.
        _log.debug("{description} is checked when the server listens", description=description)


class Options(usage.Options):
    """
    The options of C{twistd netstructer}.

    After C{parseOptions}, besides the option values, the instance holds:

    @ivar endpoints: The endpoint descriptions to listen on, C{--port}
        first, then each C{--listen}.
    @ivar keyring: The server's keys.
    @ivar keySource: Where they came from.
    @ivar handler: The handler object named by C{--handler}.
    @ivar relayPolicy: The policy of C{--relay-policy}, or L{None}.
    @ivar tlsOptions: The TLS context factory of C{--tls-cert}, or L{None}.
    @ivar cluster: The parsed URL of C{--cluster} (a L{ClusterURL
        <netstructer.cluster.ClusterURL>}), or L{None}.
    @ivar clusterKeyring: The keys of C{--cluster-key}, or L{None}.
    @ivar environ: The environment read for C{NETSTRUCTER_KEY} and the
        default key file.
    """

    synopsis = "[options]"
    """What C{twistd netstructer --help} shows after the command."""
    longdesc = (
        "Run a NetStructer server: encrypted, authenticated Python values over TCP."
        " By default it listens on 127.0.0.1:5000, echoes every value back, and uses the"
        " key in ~/.config/netstructer/key (or $XDG_CONFIG_HOME/netstructer/key), which it"
        " creates on first start.  Keys: an explicit --key-file wins, then the"
        f" {ENVIRONMENT_VARIABLE} environment variable, then that default file."
    )
    """The description C{twistd netstructer --help} shows."""

    optParameters: list[Sequence[Any]] = [
        [
            "port",
            "p",
            DEFAULT_PORT,
            "Where to listen: a port number (on --interface) or any server endpoint"
            " description (tcp:5000:interface=0.0.0.0, unix:/run/netstructer.sock,"
            " ssl:5000:privateKey=key.pem:certKey=cert.pem).",
            _nonEmpty("--port"),
        ],
        [
            "interface",
            None,
            None,
            f"The interface bare port numbers listen on (default {DEFAULT_INTERFACE}, which"
            " keeps the server local; 0.0.0.0 or :: for every interface).",
            str.strip,
        ],
        [
            "key-file",
            "k",
            None,
            "The key file (mode 0600, one key per line, the first is the primary; a"
            " line 'NAME <key>' names a client's key).  SIGHUP reloads it: removed keys'"
            " sessions are closed ('key revoked'), new keys are accepted at once."
            f" Default: {ENVIRONMENT_VARIABLE} if set, else ~/.config/netstructer/key,"
            " created with a new key on first start.",
            _path("--key-file"),
        ],
        [
            "suite",
            None,
            "noise",
            "The suites clients may use: noise, fernet, or noise,fernet.",
            _suites,
        ],
        [
            "handler",
            None,
            "echo",
            "What to do with the values received: echo (send them back), log (log"
            " them), save:DIR (keep the streams clients send as files in DIR, never"
            " replacing a file unless save:DIR,overwrite), or package.module:name (your"
            " own handler).",
            _nonEmpty("--handler"),
        ],
        [
            "max-buffer-size",
            None,
            DEFAULT_MAX_BUFFER_SIZE,
            "The largest encoded value accepted, in bytes (K, M and G suffixes allowed;"
            " at most 2G).",
            parseSize,
        ],
        [
            "max-sessions",
            None,
            None,
            "The most connections at once, including those still authenticating (default 1024).",
            _positiveInt("--max-sessions"),
        ],
        [
            "max-per-ip",
            None,
            None,
            "The most connections at once from one IP address (default 64).",
            _positiveInt("--max-per-ip"),
        ],
        [
            "handshake-timeout",
            None,
            10.0,
            "Seconds a connection may take to authenticate.",
            _seconds("--handshake-timeout", zeroMeansNever=False),
        ],
        [
            "shutdown-grace",
            None,
            5.0,
            "Seconds a shutdown (SIGTERM, SIGINT) waits for each peer's close reply; "
            "connections still open then are ended, one log line each.",
            _seconds("--shutdown-grace", zeroMeansNever=False),
        ],
        [
            "idle-timeout",
            None,
            None,
            "Close a session after this many seconds without a value (default: never;"
            " 0 means never).",
            _seconds("--idle-timeout", zeroMeansNever=True),
        ],
        [
            "keep-alive",
            None,
            60.0,
            "Ping a silent peer after this many seconds, and drop it if another"
            " interval passes without an answer (0 turns keep-alive off).",
            _seconds("--keep-alive", zeroMeansNever=True),
        ],
        [
            "tls-cert",
            None,
            None,
            "Speak TLS under the NetStructer channel on every endpoint: a PEM file with"
            " the server's certificate (then its chain; and its key unless --tls-key).",
            _path("--tls-cert"),
        ],
        [
            "tls-key",
            None,
            None,
            "The PEM private key of --tls-cert, if not in that file.",
            _path("--tls-key"),
        ],
        [
            "relay-policy",
            None,
            None,
            "Turn relay on (as --relay does) under this policy file: lines of"
            " 'allow|deny WHO send|publish|subscribe|* TARGET', first match decides,"
            " no match refuses.",
            _path("--relay-policy"),
        ],
        [
            "max-relay-queue",
            None,
            1024,
            "The most relayed values queued on the server for one slow recipient;"
            " more are dropped and each sender is told.",
            _positiveInt("--max-relay-queue"),
        ],
        [
            "tls-ca",
            None,
            None,
            "Require TLS client certificates issued by the CA certificates in this PEM"
            " file (mutual TLS; needs --tls-cert).",
            _path("--tls-ca"),
        ],
        [
            "max-stream-size",
            None,
            None,
            "The largest stream (a file sent with netstructer send-file) a client may send,"
            " in bytes (K, M, G and T suffixes); larger ones are refused, or aborted once"
            " they pass it (default: no limit).",
            _streamSize,
        ],
        [
            "stream-timeout",
            None,
            _STREAM_TIMEOUT,
            "Abort a stream (a file being sent) after this many seconds without news of"
            " it from the peer (0 means never).",
            _seconds("--stream-timeout", zeroMeansNever=True),
        ],
        [
            "metrics",
            None,
            None,
            "Serve Prometheus metrics (GET /metrics) and a health check (GET /healthz) on"
            " this endpoint, such as tcp:9100:interface=127.0.0.1 (a bare port means that"
            " port on 127.0.0.1); needs pip install 'netstructer[metrics]'.",
            _metricsEndpoint,
        ],
        [
            "cluster",
            None,
            None,
            "Make this server a node of a cluster that shares its sessions' directory and"
            " routes relayed values through this Redis or Valkey server:"
            " redis://[[USER]:PASSWORD@]HOST[:PORT][/DB][?prefix=NAME], or rediss://"
            " for TLS (a password is better given in NETSTRUCTER_CLUSTER_PASSWORD);"
            " needs --cluster-key and pip install 'netstructer[cluster]'.",
            _nonEmpty("--cluster"),
        ],
        [
            "cluster-key",
            None,
            None,
            "The cluster's key file (mode 0600, made by netstructer keygen): the same"
            " file on every node; it seals every value and message crossing Redis.",
            _path("--cluster-key"),
        ],
        [
            "node-name",
            None,
            None,
            "This node's name in the cluster, unique among its nodes (default: the host's name).",
            _nonEmpty("--node-name"),
        ],
        [
            "heartbeat",
            None,
            1.0,
            "Seconds between this node's heartbeats to the cluster's Redis: a node that"
            " dies leaves the cluster's directory within two of them.",
            _seconds("--heartbeat", zeroMeansNever=False),
        ],
    ]
    """The options that take a value (see L{usage.Options})."""

    optFlags: list[Sequence[Any]] = [
        [
            "relay",
            None,
            "Let clients with named keys send values to each other by name and publish"
            " and subscribe to topics (--handler relay does the same, with the echo"
            " handler).",
        ],
    ]
    """The options that take no value (see L{usage.Options})."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        """
        @param environ: The environment read for C{NETSTRUCTER_KEY} and the
            default key file's location; L{os.environ} if L{None}.
        """
        super().__init__()
        self.environ: Mapping[str, str] = os.environ if environ is None else environ
        self["listen"] = []
        self.endpoints: list[str] = []
        self.keyring: Keyring | None = None
        self.keySource: KeySource | None = None
        self.handler: object = None
        self.relayPolicy: Any = None
        self.tlsOptions: Any = None
        self.cluster: Any = None
        self.clusterKeyring: Keyring | None = None

    def opt_listen(self, description: str) -> None:
        """Also listen on this endpoint; repeatable (--listen unix:/run/netstructer.sock)."""
        if not description.strip():
            raise usage.UsageError("--listen must not be empty")
        self["listen"].append(description.strip())

    opt_l = opt_listen

    def opt_version(self) -> NoReturn:
        """Display NetStructer's version and exit."""
        print(versionLine())
        sys.exit(0)

    def postOptions(self) -> None:
        """
        Check the options together and load what they name: the endpoints,
        the key, the handler and the TLS files.

        @raise usage.UsageError: Something is wrong; the message names the
            option and the fix.
        """
        if isinstance(self["suite"], str):
            self["suite"] = _suites(self["suite"])
        self._checkEndpoints()
        self._loadHandler()
        self._loadTLS()
        self._loadCluster()
        # Last: on a first start this creates the key file, which makeService
        # then announces; nothing after this may fail and skip that.
        self._loadKey()

    def _checkEndpoints(self) -> None:
        """
        Turn C{--port} and every C{--listen} into checked endpoint
        descriptions, in L{endpoints}.

        @raise usage.UsageError: One is bad, given twice, or C{--interface}
            has no bare port number to apply to.
        """
        values = [("--port", self["port"])] + [("--listen", each) for each in self["listen"]]
        interface = self["interface"]
        if interface is not None and not any(value.strip().isdigit() for _, value in values):
            raise usage.UsageError(
                "--interface applies only to bare port numbers; put interface= in the"
                f" endpoint description instead (tcp:PORT:interface={interface})"
            )
        self.endpoints = []
        for option, value in values:
            try:
                description = serverDescription(
                    value, DEFAULT_INTERFACE if interface is None else interface
                )
            except usage.UsageError as e:
                raise usage.UsageError(f"{option} {value}: {e}") from None
            _checkDescription(option, value, description)
            if _withoutBacklog(description) in map(_withoutBacklog, self.endpoints):
                raise usage.UsageError(f"{option} {value}: that endpoint is given twice")
            self.endpoints.append(description)

    def _loadKey(self) -> None:
        """
        Load (or, on a first start, create) the server's keys.

        @raise usage.UsageError: There is no usable key; the message names
            the file or variable and the fix.
        """
        try:
            self.keyring, self.keySource = loadKeyring(self["key-file"], self.environ, create=True)
        except InvalidKey as e:
            prefix = "--key-file: " if self["key-file"] is not None else ""
            raise usage.UsageError(f"{prefix}{e}") from e

    def _loadHandler(self) -> None:
        """
        Load the handler C{--handler} names.

        @raise usage.UsageError: It cannot be loaded; the message says why.
        """
        from netstructer.handlers import handlerFromName

        name = self["handler"]
        if name.strip().lower() == "relay":
            self["relay"] = True
            name = "echo"
        try:
            self.handler = handlerFromName(name)
        except NetStructerError as e:
            raise usage.UsageError(f"--handler {self['handler']}: {e}") from e
        self.relayPolicy = None
        if self["relay-policy"] is not None:
            from netstructer.relaypolicy import loadPolicy

            try:
                self.relayPolicy = loadPolicy(self["relay-policy"])
            except NetStructerError as e:
                raise usage.UsageError(f"--relay-policy: {e}") from e

    def _loadTLS(self) -> None:
        """
        Load the certificates of C{--tls-cert}, C{--tls-key} and
        C{--tls-ca}.

        @raise usage.UsageError: They are inconsistent, unreadable or bad.
        """
        if self["tls-cert"] is None:
            for option in ("tls-key", "tls-ca"):
                if self[option] is not None:
                    raise usage.UsageError(
                        f"--{option} needs --tls-cert (the server's certificate)"
                    )
            return
        for description in self.endpoints:
            if description.split(":", 1)[0].strip().lower() == "ssl":
                raise usage.UsageError(
                    f"--tls-cert wraps every endpoint in TLS, but {description} already is"
                    " a TLS endpoint: give the certificate either in the ssl: description"
                    " or with --tls-cert on a tcp: or unix: endpoint, not both"
                )
        self.tlsOptions = _tlsOptions(self["tls-cert"], self["tls-key"], self["tls-ca"])

    def _loadCluster(self) -> None:
        """
        Check C{--cluster}, C{--cluster-key} and C{--node-name}, and read
        the cluster's key file.  Nothing of the cluster (nor Redis) is
        imported without C{--cluster}.

        @raise usage.UsageError: They are inconsistent, or not valid; the
            message never holds the URL's password.
        """
        if self["cluster"] is None:
            for option in ("cluster-key", "node-name"):
                if self[option] is not None:
                    raise usage.UsageError(f"--{option} needs --cluster (the cluster's Redis URL)")
            return
        import importlib.util

        from netstructer.cluster.config import checkNodeName, clusterKeyring, parseClusterURL
        from netstructer.errors import ClusterError

        try:
            self.cluster = parseClusterURL(self["cluster"], self.environ)
        except ClusterError as e:
            raise usage.UsageError(f"--cluster: {e}") from None
        if importlib.util.find_spec("txredisapi") is None:
            raise usage.UsageError("--cluster needs txredisapi: pip install 'netstructer[cluster]'")
        if self["cluster-key"] is None:
            raise usage.UsageError(
                "--cluster needs --cluster-key FILE: the cluster's key file, the same on every"
                " node (make one with: netstructer keygen -o FILE)"
            )
        try:
            self.clusterKeyring = clusterKeyring(self["cluster-key"])
        except NetStructerError as e:
            raise usage.UsageError(f"--cluster-key: {e}") from None
        if self["node-name"] is None:
            import socket

            self["node-name"] = socket.gethostname()
        try:
            checkNodeName(self["node-name"])
        except ClusterError as e:
            raise usage.UsageError(f"--node-name: {e} (give another with --node-name)") from None

    def serverOptions(self) -> dict[str, Any]:
        """
        The keyword options of L{Server<netstructer.server.Server>} these
        options set.

        @return: The options.
        """
        suites: tuple[str, ...] = tuple(self["suite"])
        options: dict[str, Any] = {
            "suite": suites[0],
            "acceptSuites": suites,
            "maxBufferSize": self["max-buffer-size"],
            "handshakeTimeout": self["handshake-timeout"],
            "shutdownGrace": self["shutdown-grace"],
            "idleTimeout": self["idle-timeout"],
            "keepAliveInterval": self["keep-alive"],
        }
        if self["max-sessions"] is not None:
            options["maxSessions"] = self["max-sessions"]
        if self["max-per-ip"] is not None:
            options["maxPerIP"] = self["max-per-ip"]
        if self["relay"] or self.relayPolicy is not None:
            options["relay"] = True
            options["relayPolicy"] = self.relayPolicy
            options["maxRelayQueue"] = self["max-relay-queue"]
        if self["metrics"] is not None:
            options["metrics"] = self["metrics"]
        if self["max-stream-size"] is not None:
            options["maxStreamSize"] = self["max-stream-size"]
        if self["stream-timeout"] != _STREAM_TIMEOUT:
            options["streamIdleTimeout"] = self["stream-timeout"]
        if self.cluster is not None:
            options["cluster"] = self.cluster
            options["clusterKey"] = self.clusterKeyring
            options["nodeName"] = self["node-name"]
            options["clusterHeartbeat"] = self["heartbeat"]
        return options


def _required(value: _T | None, what: str) -> _T:
    """
    @param value: Something L{Options.postOptions} sets.
    @param what: Names it, for the message.
    @return: C{value}, which must have been set by L{Options.postOptions}.
    @raise ValueError: It was not: the options were not parsed.
    """
    if value is None:
        raise ValueError(f"{what} is missing: call Options.parseOptions() first")
    return value


def _endpoint(reactor: Any, description: str, tlsOptions: Any) -> IStreamServerEndpoint:
    """
    Make an endpoint from its description, wrapped in TLS if asked.

    @param reactor: The reactor it listens with.
    @param description: The endpoint description.
    @param tlsOptions: The TLS context factory, or L{None}.
    @return: The endpoint.
    """
    endpoint: IStreamServerEndpoint = serverFromString(reactor, description)
    if tlsOptions is not None:
        endpoint = TLSServerEndpoint(endpoint, tlsOptions)
    return endpoint


class KeyReloadOnSignal(Service):
    """
    Reload a server's keys when the process receives C{SIGHUP}: the signal
    handler only asks the reactor to call L{reload}, which calls
    L{Server.reloadKeys<netstructer.server.Server.reloadKeys>} (that logs
    what changed, or why the key file was refused and the old keys kept).
    Started and stopped with the server; stopping restores the previous
    handler.

    @ivar server: The server whose keys are reloaded.
    """

    _log = Logger()

    def __init__(self, server: Any, reactor: Any, signalNumber: int | None = None) -> None:
        """
        @param server: A L{Server<netstructer.server.Server>}.
        @param reactor: Runs L{reload} in its thread (C{callFromThread}).
        @param signalNumber: The signal to reload on: C{SIGHUP} by default.
        """
        self.server = server
        self._reactor = reactor
        self._signal = signalNumber if signalNumber is not None else _SIGHUP
        self._previous: Any = None

    def startService(self) -> None:
        """
        Install the signal handler (where the platform has the signal).
        """
        Service.startService(self)
        if self._signal is not None:
            self._previous = signal.signal(self._signal, self._signalled)

    def stopService(self) -> None:
        """
        Put the previous handler back.
        """
        Service.stopService(self)
        if self._signal is not None and self._previous is not None:
            signal.signal(self._signal, self._previous)
            self._previous = None

    def _signalled(self, signalNumber: int, frame: object) -> None:
        """
        The signal arrived: reload from the reactor, not from the handler.
        """
        self._reactor.callFromThread(self.reload)

    def reload(self) -> None:
        """
        Reload the keys now.  A key file that cannot be loaded was already
        logged by the server, which keeps its keys: nothing more to do.
        """
        self._log.info("Reloading the keys (signal received)")
        try:
            self.server.reloadKeys()
        except KeyFileError:
            return
        except ValueError as e:
            self._log.warn("Cannot reload the keys: {error}", error=e)


_SIGHUP: int | None = getattr(signal, "SIGHUP", None)


def _announceCluster(options: Options) -> None:
    """
    Log which cluster the server joins (never the URL's password), and warn
    when that password was given on the command line.
    """
    from urllib.parse import urlsplit

    from netstructer.cluster.config import PASSWORD_VARIABLE

    _log.info(
        "Node {node} of the cluster at {url} (prefix {prefix}), heartbeat {heartbeat} s",
        node=options["node-name"],
        url=options.cluster.describe(),
        prefix=options.cluster.prefix,
        heartbeat=options["heartbeat"],
    )
    try:
        inURL = urlsplit(options["cluster"]).password is not None
    except ValueError:
        inURL = False
    if inURL:
        _log.warn(
            "The Redis password in --cluster can be read by other users of this machine"
            " (in the process list): give it in the environment variable {variable} instead",
            variable=PASSWORD_VARIABLE,
        )


def makeService(options: Options, reactor: Any = None) -> IService:
    """
    Build the whole server from parsed options: its registry, factory and
    protocol (a L{Server<netstructer.server.Server>}), listening on
    C{--port} and on every C{--listen} endpoint, all sharing one factory,
    one session registry and its limits.

    @param options: Parsed L{Options}.
    @param reactor: Listens and schedules timers; the global reactor (the
        one C{twistd} installed) by default.
    @return: The service (the L{Server<netstructer.server.Server>}); it
        listens when started, and a port that cannot be bound then raises
        L{ServerInitializeError<netstructer.errors.ServerInitializeError>},
        which stops C{twistd}.
    """
    from netstructer.server import Server

    if reactor is None:
        from twisted.internet import reactor
    if tuneAllocator():
        _log.debug("Tuned the allocator for large values (NETSTRUCTER_MALLOC_TUNING=0: don't)")
    keyring = _required(options.keyring, "the keyring")
    source = _required(options.keySource, "the key source")
    if source.created:
        _log.info(
            "Created a new key file {path} (key ID {keyID}); give this key to the clients"
            " that may connect",
            path=str(source.path),
            keyID=keyring.keyIDs()[0],
        )
    _log.info(
        "Using {count} key(s) from {source}, key IDs {keyIDs}",
        count=len(keyring),
        source=source.description,
        keyIDs=", ".join(keyring.keyIDs()),
    )
    server = Server(
        _endpoint(reactor, options.endpoints[0], options.tlsOptions),
        keyring,
        options.handler,
        reactor=reactor,
        keyFile=source.path,
        **options.serverOptions(),
    )
    if options.cluster is not None:
        _announceCluster(options)
    named = sum(1 for name in keyring.names() if name is not None)
    if named:
        _log.info("{named} of the keys are named", named=named)
    if source.path is not None:
        KeyReloadOnSignal(server, reactor).setServiceParent(server)
    # As strports.service does: under twistd, a port that cannot be bound
    # raises from privilegedStartService, and twistd stops.
    server._raiseSynchronously = True
    for description in options.endpoints[1:]:
        extra = StreamServerEndpointService(
            _endpoint(reactor, description, options.tlsOptions), server.factory
        )
        extra._raiseSynchronously = True
        extra.setServiceParent(server)
    return server
