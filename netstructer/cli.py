# -*- test-case-name: tests.test_cli -*-
"""
The C{netstructer} command.

    - C{netstructer keygen [-o FILE] [--force] [--name NAME]}: make a key;
      to standard output, or to a new file with mode 0600.  With a name, the
      key's line is C{NAME <key>}, and that line (to add to the server's key
      file) is printed.
    - C{netstructer send ENDPOINT VALUE... [--reply]}: send Python literals
      (and print the replies).
    - C{netstructer listen ENDPOINT}: a server printing every value it
      receives, with its sender (a secure C{nc -l}); with C{--save-dir DIR},
      keeping the files clients send.
    - C{netstructer send-file ENDPOINT FILE}: send a file as a stream
      (L{netstructer.streamcli}).
    - C{netstructer bench [ENDPOINT]} (or C{bench --peers}, the comparison with
      other peers): measure messages per second, round-trip
      latency and bulk throughput, against a running echo server or against
      a server the command starts itself.
    - C{netstructer status ENDPOINT_OR_URL [--watch]}: a summary of a
      server's C{/metrics}.
    - C{netstructer conformance ENDPOINT [--echo] [--json]} (or C{--serve
      PORT}): check a server (or a client) against the MUSTs of
      C{docs/protocol.rst}, one numbered case each
      (L{netstructer.conformance}).
    - C{netstructer cluster status URL [--json] [--no-sessions]}: the nodes
      of a cluster (alive, sessions, last heartbeat) and its sessions, read
      from its Redis (L{netstructer.cluster.status}).

Keys are found as by C{twistd netstructer}: C{--key-file}, then the
C{NETSTRUCTER_KEY} environment variable, then the default key file
(C{~/.config/netstructer/key}), which only the server commands create.

User errors (a bad value, a missing key, a refused connection, a wrong key)
are one line, C{netstructer: error: ...}, saying what to do, and exit with
status 1 (2 for a bad command line).  Anything else is a bug and shows its
traceback.

The parsing half (L{parseCommand}) runs without the reactor; the networking
half (L{Command.run}) takes the reactor as an argument, so both can be tested
without L{main}, which runs the global reactor with L{react<twisted.internet.task.react>}.
"""

from __future__ import annotations

import argparse
import ast
import math
import os
import re
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import IO, Any, NoReturn

from twisted.internet import defer
from twisted.internet.error import (
    ConnectError,
    ConnectionClosed,
    ConnectionDone,
    ProcessExitedAlready,
)
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.internet.protocol import ProcessProtocol
from twisted.python.failure import Failure
from twisted.python.usage import UsageError as OptionsError
from zope.interface import implementer

import netstructer
from netstructer import streamcli, values
from netstructer._argtypes import positiveFloat, positiveInt, sizeArgument
from netstructer._version import versionLine
from netstructer.client import clientEndpoint, connect
from netstructer.errors import NetStructerError, OperationTimedOut, StreamError
from netstructer.handlers import EchoHandler, IHandler
from netstructer.keys import (
    ENVIRONMENT_VARIABLE,
    Keyring,
    checkName,
    generateKey,
    keyFileLine,
    writeKeyFile,
)
from netstructer.protocol import BridgeProtocol
from netstructer.server import Server
from netstructer.tap import (
    DEFAULT_INTERFACE,
    KeySource,
    loadKeyring,
    serverDescription,
)
from netstructer.tuning import tuneAllocator

__all__ = ["EXAMPLE_VALUE", "Command", "Streams", "commandNames", "main", "parseCommand"]

EXAMPLE_VALUE: object = ["hi im haytam", 128, {b"gg": "gg"}, {1, 2, 6, 4}, (False, True)]
"""The example value of the README, sent by C{netstructer bench}."""

_PROG = "netstructer"
_DEFAULT_TIMEOUT = 30.0
_REPLY_WINDOW = 64
_BULK_SIZE = 1024 * 1024
_SMALL_WINDOW = 256
_BULK_WINDOW = 4
_SERVER_START_TIMEOUT = 20.0
_LISTENING = re.compile(r"listening on (\S+)")


class UserError(Exception):
    """
    A mistake the user can fix: reported as one line, C{netstructer: error:
    <message>}, with exit status 1.
    """


@dataclass
class Streams:
    """
    Where a command reads and writes, and the environment it reads.

    @ivar stdin: Standard input (text).
    @ivar stdout: Standard output (text): values, replies, results.
    @ivar stderr: Standard error (text): progress and messages.
    @ivar environ: The environment (C{NETSTRUCTER_KEY}, C{HOME}, ...).
    """

    stdin: IO[str] = field(default_factory=lambda: sys.stdin)
    stdout: IO[str] = field(default_factory=lambda: sys.stdout)
    stderr: IO[str] = field(default_factory=lambda: sys.stderr)
    environ: Mapping[str, str] = field(default_factory=lambda: os.environ)

    def error(self, message: str) -> None:
        """
        Report a user error on one line.

        @param message: What is wrong and how to fix it.
        """
        text = " ".join(str(message).split())
        print(f"{_PROG}: error: {text}", file=self.stderr, flush=True)

    def note(self, message: str) -> None:
        """
        Tell the user something, on standard error.

        @param message: The note.
        """
        print(f"{_PROG}: {message}", file=self.stderr, flush=True)


class _ArgumentParser(argparse.ArgumentParser):
    """
    An argument parser whose errors are one line naming the problem and
    where to read about the fix.
    """

    def error(self, message: str) -> NoReturn:
        """
        Report a command-line mistake on one line and exit with status 2.

        @param message: What argparse found wrong.
        """
        self.exit(2, f"{_PROG}: error: {message} (see `{self.prog} --help`)\n")


# Values.


def _shorten(text: str, limit: int = 60) -> str:
    """
    @return: C{text}, cut to C{limit} characters with an ellipsis.
    """
    return text if len(text) <= limit else text[: limit - 3] + "..."


def parseLiteral(text: str, where: str = "VALUE") -> object:
    """
    Parse one Python literal.

    @param text: The literal, such as C{"[1, 'two', {3: b'4'}]"}.
    @param where: Names the value in messages (C{"VALUE 2"}, C{"stdin line
        3"}).
    @return: The value.
    @raise UserError: C{text} is not a Python literal; the message names it.
    """
    try:
        return ast.literal_eval(text.strip())
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        hint = ""
        if re.fullmatch(r"\s*[A-Za-z_][\w.-]*\s*", text):
            hint = f" (to send the string, quote it: \"'{text.strip()}'\")"
        raise UserError(
            f"{where} {_shorten(text)!r} is not a Python literal{hint}; values are literals"
            " such as 42, 'text', b'bytes', [1, 2], {'k': (True, None)} or {1, 2}"
        ) from None


def _readValues(texts: Sequence[str], stdin: IO[str]) -> list[object]:
    """
    Parse the C{VALUE} arguments of C{send}: each a literal, or C{-} for one
    literal per line of standard input (blank lines are skipped).

    @param texts: The arguments.
    @param stdin: Standard input.
    @return: The values, in order.
    @raise UserError: One is not a literal.
    """
    values: list[object] = []
    for index, text in enumerate(texts, start=1):
        if text == "-":
            for number, line in enumerate(stdin, start=1):
                if line.strip():
                    values.append(parseLiteral(line, f"stdin line {number}:"))
        else:
            values.append(parseLiteral(text, f"VALUE {index}" if len(texts) > 1 else "VALUE"))
    return values


def _makeParser() -> _ArgumentParser:
    """
    @return: The parser of the C{netstructer} command line.
    """
    parser = _ArgumentParser(
        prog=_PROG,
        description="Move Python values between programs, encrypted and authenticated.",
        epilog=(
            f"Keys: --key-file FILE, else the {ENVIRONMENT_VARIABLE} environment variable,"
            " else ~/.config/netstructer/key ($XDG_CONFIG_HOME/netstructer/key), which the"
            " server creates on its first start. Run `twistd -n netstructer` for a server."
        ),
    )
    parser.add_argument("--version", action="version", version=versionLine())
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="log what the library does (sessions opening and closing, warnings)",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    keyOptions = _keyOptions()
    _addStatusParser(commands)
    from netstructer.conformance._cli import addParser as addConformanceParser

    addConformanceParser(commands)
    _addKeygenParser(commands)
    _addSendParser(commands, keyOptions)
    _addListenParser(commands, keyOptions)
    _addBenchParser(commands, keyOptions)
    _addClusterParser(commands)
    return parser


def _keyOptions() -> _ArgumentParser:
    """
    @return: The options of the commands that connect or listen: the key,
        the suite and the value size limit.
    """
    keyOptions = _ArgumentParser(add_help=False)
    keyOptions.add_argument(
        "-k",
        "--key-file",
        metavar="FILE",
        help=f"the key file (default: ${ENVIRONMENT_VARIABLE}, else ~/.config/netstructer/key)",
    )
    keyOptions.add_argument(
        "--suite",
        choices=("noise", "fernet"),
        default="noise",
        help="the channel suite (default: noise)",
    )
    keyOptions.add_argument(
        "--max-buffer-size",
        metavar="BYTES",
        type=sizeArgument,
        default=None,
        help="the largest encoded value accepted (default 16M; K, M, G suffixes)",
    )

    return keyOptions


def _addStatusParser(commands: Any) -> None:
    """
    Add C{netstructer status}.
    """
    status = commands.add_parser(
        "status",
        help="summarize a server's metrics",
        description=(
            "Read a server's /metrics (twistd netstructer --metrics ...) twice, --interval"
            " seconds apart, and print its sessions, failures and rates; with --watch, keep"
            " refreshing."
        ),
    )
    status.add_argument(
        "target",
        metavar="ENDPOINT_OR_URL",
        help="the metrics URL, host:port, a port on 127.0.0.1, or the --metrics endpoint",
    )
    status.add_argument(
        "--watch", action="store_true", help="refresh every --interval seconds until Ctrl-C"
    )
    status.add_argument(
        "--interval",
        metavar="SECONDS",
        type=float,
        default=2.0,
        help="seconds between the scrapes (default 2)",
    )


def _addKeygenParser(commands: Any) -> None:
    """
    Add C{netstructer keygen}.
    """
    keygen = commands.add_parser(
        "keygen",
        help="make a new key",
        description="Make a new key: print it, or write it to a new file with mode 0600.",
    )
    keygen.add_argument("-o", "--output", metavar="FILE", help="write the key to FILE (mode 0600)")
    keygen.add_argument(
        "--force", action="store_true", help="replace FILE if it exists (its old key is lost)"
    )
    keygen.add_argument(
        "--name",
        metavar="NAME",
        help="name the key (a client's identity on the server): the key's line is"
        " 'NAME <key>', printed to add to the server's key file",
    )


def _addSendParser(commands: Any, keyOptions: _ArgumentParser) -> None:
    """
    Add C{netstructer send}.
    """
    send = commands.add_parser(
        "send",
        parents=[keyOptions],
        help="send Python values to a server",
        description=(
            "Send Python literals to a server, in order.  Quote them for the shell:"
            " netstructer send 127.0.0.1:5000 \"['hi', 128, {b'gg': 'gg'}]\""
        ),
    )
    send.add_argument(
        "endpoint",
        metavar="ENDPOINT",
        help="where the server is: host:port, a port on 127.0.0.1, or a client endpoint"
        " description (tcp:host=127.0.0.1:port=5000, tls:example.org:5000, unix:path=...)",
    )
    send.add_argument(
        "values",
        metavar="VALUE",
        nargs="+",
        help="a Python literal, or - to read one literal per line from standard input",
    )
    send.add_argument(
        "--reply",
        action="store_true",
        help="wait for one reply per value and print each as its Python repr",
    )
    send.add_argument(
        "--timeout",
        metavar="SECONDS",
        type=positiveFloat,
        default=_DEFAULT_TIMEOUT,
        help=f"how long to wait to connect, and for each reply (default {_DEFAULT_TIMEOUT:g})",
    )


def _addListenParser(commands: Any, keyOptions: _ArgumentParser) -> None:
    """
    Add C{netstructer listen}.
    """
    listen = commands.add_parser(
        "listen",
        parents=[keyOptions],
        help="print the values clients send",
        description="Run a server that prints each value it receives, with its sender.",
    )
    listen.add_argument(
        "endpoint",
        metavar="ENDPOINT",
        help="a port number (on --interface) or a server endpoint description"
        " (tcp:5000:interface=0.0.0.0, unix:/run/netstructer.sock)",
    )
    listen.add_argument(
        "--interface",
        default=DEFAULT_INTERFACE,
        help=f"the interface a port number listens on (default {DEFAULT_INTERFACE})",
    )
    listen.add_argument("--echo", action="store_true", help="also send every value back")
    listen.add_argument(
        "-q", "--quiet", action="store_true", help="print nothing about values or sessions"
    )
    streamcli.addSaveDirArguments(listen)
    _addSendFileParser(commands, keyOptions)


def _addBenchParser(commands: Any, keyOptions: _ArgumentParser) -> None:
    """
    Add C{netstructer bench}.
    """
    bench = commands.add_parser(
        "bench",
        parents=[keyOptions],
        help="measure throughput and latency",
        description=(
            "Measure small-value messages per second, round-trip latency percentiles and"
            " bulk (1 MiB values) throughput, against a running echo server (twistd -n"
            " netstructer) or, without ENDPOINT, against a server this command starts on a"
            " free loopback port with a throwaway key."
        ),
    )
    bench.add_argument(
        "endpoint",
        metavar="ENDPOINT",
        nargs="?",
        help="a running echo server, as for send (default: start one)",
    )
    bench.add_argument(
        "--duration",
        metavar="SECONDS",
        type=positiveFloat,
        default=None,
        help="the total running time, shared by the three tests (default 10, or no limit"
        " with --count)",
    )
    bench.add_argument(
        "--count",
        metavar="N",
        type=positiveInt,
        default=None,
        help="stop each test after N round trips",
    )
    bench.add_argument(
        "--timeout",
        metavar="SECONDS",
        type=positiveFloat,
        default=_DEFAULT_TIMEOUT,
        help=f"how long to wait to connect, and for each reply (default {_DEFAULT_TIMEOUT:g})",
    )
    bench.add_argument(
        "--peers",
        action="store_true",
        help="instead, compare with the peers users pick (Int32StringReceiver+msgpack, Twisted"
        " TLS 1.3, pyzmq with CURVE, raw sockets) and print every performance goal as PASS or"
        " MISS: the quick form of benchmarks/bench_peers.py, from a source checkout with"
        ' pip install -e ".[bench]" (under a minute)',
    )


def _addClusterParser(commands: Any) -> None:
    """
    Add C{netstructer cluster status}.
    """
    cluster = commands.add_parser(
        "cluster",
        help="inspect a cluster of servers",
        description="Inspect a cluster of servers (twistd netstructer --cluster URL).",
    )
    actions = cluster.add_subparsers(dest="clusterCommand", metavar="ACTION", required=True)
    status = actions.add_parser(
        "status",
        help="list a cluster's nodes and sessions",
        description=(
            "Read a cluster's directory from its Redis (no cluster key needed) and print its"
            " nodes (alive, sessions, last heartbeat) and its sessions (name, address, node,"
            " opening time)."
        ),
    )
    status.add_argument(
        "url",
        metavar="URL",
        help="the cluster's Redis URL, as given to --cluster (redis://HOST:6379/0,"
        " rediss:// for TLS; the password may be in NETSTRUCTER_CLUSTER_PASSWORD)",
    )
    status.add_argument("--json", action="store_true", help="print JSON instead of tables")
    status.add_argument(
        "--no-sessions", action="store_true", help="list the nodes only, not every session"
    )


def _addSendFileParser(commands: Any, keyOptions: argparse.ArgumentParser) -> None:
    """
    Add C{send-file} (L{netstructer.streamcli}) to the subcommands.
    """
    sendFile = commands.add_parser(
        "send-file",
        parents=[keyOptions],
        help="send a file to a server, with progress and resume",
        description="Send a file as a stream (beside any values, in constant memory) to a"
        " server that keeps files (listen --save-dir DIR, twistd netstructer --handler"
        " save:DIR), and print its confirmation: the bytes it received and their SHA-256.",
    )
    streamcli.addSendFileArguments(sendFile, _DEFAULT_TIMEOUT)


# Commands.


def _clientEndpoint(reactor: Any, text: str) -> IStreamClientEndpoint:
    """
    Turn an C{ENDPOINT} argument into a client endpoint.

    @param reactor: The reactor.
    @param text: C{host:port}, a bare port (on 127.0.0.1) or a client
        endpoint description.
    @return: The endpoint.
    @raise UserError: It is none of these.
    """
    description = text.strip()
    if description.isdigit():
        description = f"tcp:host=127.0.0.1:port={description}"
    try:
        return clientEndpoint(reactor, description)
    except (ValueError, TypeError, KeyError) as e:
        raise UserError(
            f"ENDPOINT {text!r} is not usable ({e}); give host:port (127.0.0.1:5000) or a"
            " client endpoint description (tcp:host=127.0.0.1:port=5000)"
        ) from None


def _clientKey(args: argparse.Namespace, streams: Streams) -> Keyring:
    """
    @return: The keys a client command uses.
    @raise UserError: There is no usable key.
    """
    try:
        keyring, _ = loadKeyring(args.key_file, streams.environ, create=False)
    except NetStructerError as e:
        raise UserError(str(e)) from None
    return keyring


def _sizeOptions(args: argparse.Namespace) -> dict[str, Any]:
    """
    @return: The C{maxBufferSize} option, if given.
    """
    if args.max_buffer_size is None:
        return {}
    return {"maxBufferSize": args.max_buffer_size}


def _describeFailure(failure: Failure | BaseException) -> str:
    """
    @return: A one-line description of why a connection or session failed.
    """
    error = failure.value if isinstance(failure, Failure) else failure
    text = str(error).strip() or type(error).__name__
    return " ".join(text.split())


def _userFailure(error: BaseException) -> bool:
    """
    Whether an exception is something the user can fix (a connection
    problem, a key problem, a TLS failure, a timeout), rather than a bug.

    @param error: The exception.
    @return: C{True} for a user error.
    """
    if isinstance(error, UserError | NetStructerError | ConnectError | ConnectionClosed | OSError):
        return True
    try:
        from OpenSSL.SSL import Error as OpenSSLError
    except ImportError:  # pragma: no cover - twisted[tls] brings pyOpenSSL
        return False
    return isinstance(error, OpenSSLError)


async def _closeSession(reactor: Any, session: BridgeProtocol, timeout: float, where: str) -> None:
    """
    Close a session cleanly and wait, at most C{timeout} seconds, for the
    connection to end.

    @param reactor: Schedules the timeout.
    @param session: The session.
    @param timeout: Seconds to wait.
    @param where: Names the server in messages.
    @raise UserError: The connection did not end in time; it is aborted.
    """
    session.close()
    closed = session.whenClosed()
    closed.addTimeout(timeout, reactor)
    try:
        await closed
    except defer.TimeoutError:
        session.abort()
        raise UserError(
            f"the connection to {where} did not close within {timeout:g} seconds"
        ) from None


class Command:
    """
    A parsed command that needs the reactor.

    @ivar args: The parsed arguments.
    @ivar streams: Where it reads and writes.
    """

    def __init__(self, args: argparse.Namespace, streams: Streams) -> None:
        """
        @param args: The parsed arguments.
        @param streams: Where it reads and writes.
        """
        self.args = args
        self.streams = streams

    async def execute(self, reactor: Any) -> int:
        """
        Do the command's work.

        @param reactor: The reactor.
        @return: The exit status.
        @raise UserError: Something the user can fix went wrong.
        """
        raise NotImplementedError()

    def run(self, reactor: Any) -> defer.Deferred[int]:
        """
        Run the command, reporting user errors on one line.

        @param reactor: The reactor.
        @return: A Deferred firing with the exit status: 0 for success, 1 for
            a user error (reported on standard error).  A bug fails it.
        """

        async def guarded() -> int:
            try:
                return await self.execute(reactor)
            except Exception as e:
                if not _userFailure(e):
                    raise
                self.streams.error(_describeFailure(e))
                return 1

        return defer.ensureDeferred(guarded())


class _SendCommand(Command):
    """
    C{netstructer send}.

    @ivar values: The values to send.
    @ivar keyring: The key.
    """

    def __init__(self, args: argparse.Namespace, streams: Streams) -> None:
        super().__init__(args, streams)
        self.values = _readValues(args.values, streams.stdin)
        self.keyring = _clientKey(args, streams)

    async def execute(self, reactor: Any) -> int:
        """
        Connect, send every value (printing a reply for each with
        C{--reply}), and close cleanly, so that the server has seen every
        value when this returns 0.
        """
        args = self.args
        endpoint = _clientEndpoint(reactor, args.endpoint)
        try:
            session = await connect(
                reactor,
                endpoint,
                self.keyring,
                suite=args.suite,
                timeout=args.timeout,
                **_sizeOptions(args),
            )
        except Exception as e:
            if not _userFailure(e):
                raise
            raise UserError(f"cannot connect to {args.endpoint}: {_describeFailure(e)}") from None
        try:
            await self._exchange(session)
        except BaseException:
            if session.closeReason is None:
                session.abort()
            raise
        await _closeSession(reactor, session, args.timeout, args.endpoint)
        reason = session.closeReason
        if reason is not None and not reason.check(ConnectionDone):
            raise UserError(
                f"the session with {args.endpoint} ended badly: {_describeFailure(reason)};"
                " the values may not all have arrived"
            )
        return 0

    async def _exchange(self, session: BridgeProtocol) -> None:
        """
        Send the values, reading replies as they come with C{--reply}.

        @param session: The connected L{BridgeProtocol}.
        """
        out = self.streams.stdout
        outstanding = 0
        for index, value in enumerate(self.values, start=1):
            if self.args.reply and outstanding >= _REPLY_WINDOW:
                await self._printReply(session)
                outstanding -= 1
            try:
                session.sendBuffer(value)
            except NetStructerError as e:
                raise UserError(f"cannot send value {index}: {_describeFailure(e)}") from None
            outstanding += 1
            await session.whenWritable()
        if self.args.reply:
            for _ in range(outstanding):
                await self._printReply(session)
        out.flush()

    async def _printReply(self, session: BridgeProtocol) -> None:
        try:
            reply = await session.recvBuffer(timeout=self.args.timeout)
        except OperationTimedOut:
            raise UserError(
                f"no reply from {self.args.endpoint} within {self.args.timeout:g} seconds"
                " (does its handler reply? `twistd netstructer --handler echo` does)"
            ) from None
        except ConnectionDone:
            raise UserError(
                f"{self.args.endpoint} closed the session before replying to every value"
            ) from None
        print(repr(reply), file=self.streams.stdout, flush=True)


class _SendFileCommand(_SendCommand):
    """
    C{netstructer send-file}: connect as C{send} does, then send the file.
    """

    def __init__(self, args: argparse.Namespace, streams: Streams) -> None:
        args.values, args.reply = [], False
        super().__init__(args, streams)
        if not os.path.isfile(args.file):
            raise UserError(f"FILE {args.file} is not a file that can be sent")

    async def _exchange(self, session: BridgeProtocol) -> None:
        args = self.args
        try:
            await streamcli.sendFile(
                session, args.file, args.meta, args.resume, args.limit_rate, self.streams
            )
        except StreamError as e:
            # Only the stream failed: end the session cleanly, then say why.
            if session.closeReason is None:
                await _closeSession(session.clock, session, args.timeout, args.endpoint)
            raise UserError(f"{args.file} was not sent: {_describeFailure(e)}") from None


@implementer(IHandler)
class _PrintHandler:
    """
    The handler of C{netstructer listen}: prints every value with its sender
    on standard output, and sessions opening and closing on standard error;
    optionally echoes every value back.
    """

    def __init__(self, streams: Streams, echo: bool, quiet: bool) -> None:
        """
        @param streams: Where to print.
        @param echo: Whether to send every value back.
        @param quiet: Whether to print nothing.
        """
        self.streams = streams
        self.quiet = quiet
        self._echo = EchoHandler() if echo else None

    def sessionOpened(self, session: BridgeProtocol) -> None:
        """
        Say who connected.

        @param session: The session.
        """
        if not self.quiet:
            self.streams.note(f"{session.key} connected")

    def bufferReceived(self, session: BridgeProtocol, value: object) -> None:
        """
        Print the value and its sender; echo it if asked.

        @param session: The session.
        @param value: The value.
        """
        if not self.quiet:
            print(f"{session.key} {value!r}", file=self.streams.stdout, flush=True)
        if self._echo is not None:
            self._echo.bufferReceived(session, value)

    def sessionClosed(self, session: BridgeProtocol, reason: Failure) -> None:
        """
        Say who left, and why if it was not a clean close.

        @param session: The session.
        @param reason: Why the session ended.
        """
        if self.quiet:
            return
        if reason.check(ConnectionDone):
            self.streams.note(f"{session.key} disconnected")
        else:
            self.streams.note(f"{session.key} disconnected: {_describeFailure(reason)}")


class _ListenCommand(Command):
    """
    C{netstructer listen}.

    @ivar keyring: The key.
    @ivar keySource: Where it came from.
    @ivar listening: Fires with the listening port once the server listens.
    @ivar server: The server, once made.
    """

    def __init__(self, args: argparse.Namespace, streams: Streams) -> None:
        super().__init__(args, streams)
        try:
            self.description = serverDescription(args.endpoint, args.interface.strip())
        except OptionsError as e:
            raise UserError(f"ENDPOINT {args.endpoint}: {e}") from None
        try:
            self.keyring, self.keySource = loadKeyring(args.key_file, streams.environ, create=True)
        except NetStructerError as e:
            raise UserError(str(e)) from None
        self.listening: defer.Deferred[Any] = defer.Deferred()
        self.server: Any = None
        self._done: defer.Deferred[None] = defer.Deferred()

    async def execute(self, reactor: Any) -> int:
        """
        Listen until L{stop} is called or the reactor shuts down.
        """
        args = self.args
        source: KeySource = self.keySource
        if source.created:
            self.streams.note(
                f"created a new key file {source.path} (key ID {self.keyring.keyIDs()[0]});"
                " give this key to the clients"
            )
        try:
            server = Server(
                self.description,
                self.keyring,
                streamcli.listenHandler(
                    _PrintHandler(self.streams, args.echo, args.quiet), args, self.streams
                ),
                reactor=reactor,
                suite=args.suite,
                **_sizeOptions(args),
                **streamcli.listenOptions(args),
            )
        except (ValueError, TypeError) as e:
            raise UserError(f"ENDPOINT {args.endpoint}: {e}") from None
        self.server = server
        try:
            port = await server.listen()
        except Exception as e:
            self.listening.errback(e)
            self.listening.addErrback(lambda _: None)
            raise
        server.startService()
        address = port.getHost()
        host, number = getattr(address, "host", None), getattr(address, "port", None)
        where = (
            (f"[{host}]:{number}" if ":" in host else f"{host}:{number}")
            if isinstance(host, str)
            else str(getattr(address, "name", address))
        )
        self.streams.note(f"listening on {where} (key ID {self.keyring.keyIDs()[0]})")
        trigger = reactor.addSystemEventTrigger("before", "shutdown", self.stop)
        self.listening.callback(port)
        await self._done
        try:
            reactor.removeSystemEventTrigger(trigger)
        except (ValueError, KeyError):
            pass
        return 0

    def stop(self) -> defer.Deferred[None]:
        """
        Stop listening and close every session cleanly.

        @return: A Deferred firing when that is done.
        """
        if self.server is None or self._done.called:
            return defer.succeed(None)
        stopped: defer.Deferred[None] = defer.maybeDeferred(self.server.stopService)

        def finished(result: object) -> object:
            if not self._done.called:
                self._done.callback(None)
            return result

        return stopped.addBoth(finished)


# The benchmark.


def _percentile(samples: Sequence[float], fraction: float) -> float:
    """
    The nearest-rank percentile.

    @param samples: Sorted samples, at least one.
    @param fraction: From 0 to 1.
    @return: The sample at that rank.
    """
    index = max(0, min(len(samples) - 1, math.ceil(fraction * len(samples)) - 1))
    return samples[index]


class _ServerProcess(ProcessProtocol):
    """
    A C{netstructer listen --echo} child process, for C{bench} without an
    endpoint.

    @ivar listening: Fires with the child's C{host:port} once it listens.
    @ivar ended: Fires once the child has exited.
    """

    def __init__(self) -> None:
        self.listening: defer.Deferred[str] = defer.Deferred()
        self.ended: defer.Deferred[None] = defer.Deferred()
        self._buffer = ""
        self._lines: list[str] = []

    def errReceived(self, data: bytes) -> None:
        """
        Look for the line saying where the child listens.

        @param data: What the child wrote to its standard error.
        """
        self._buffer += data.decode("utf-8", "replace")
        *lines, self._buffer = self._buffer.split("\n")
        for line in lines:
            self._lines = [*self._lines[-9:], line]
            match = _LISTENING.search(line)
            if match is not None and not self.listening.called:
                self.listening.callback(match.group(1))

    def signal(self, name: str) -> None:
        """
        Send the child a signal, unless it has exited.

        @param name: The signal's name, such as C{"TERM"}.
        """
        if self.transport is None or self.ended.called:
            return
        try:
            self.transport.signalProcess(name)
        except ProcessExitedAlready:
            pass

    def processEnded(self, reason: Failure) -> None:
        """
        The child exited: fail L{listening} if it never listened.

        @param reason: How it exited.
        """
        if not self.listening.called:
            said = " ".join(line.strip() for line in self._lines[-3:] if line.strip())
            self.listening.errback(
                UserError(f"the benchmark server exited before listening: {said or reason.value}")
            )
        self.ended.callback(None)


def peersBenchmark(root: str) -> str | None:
    """
    @param root: The directory holding the C{netstructer} package.
    @return: The path of C{benchmarks/bench_peers.py} under C{root}, if it
        is there (in a source checkout).
    """
    script = os.path.join(root, "benchmarks", "bench_peers.py")
    return script if os.path.isfile(script) else None


class _BenchCommand(Command):
    """
    C{netstructer bench}.

    @ivar keyring: The key.
    """

    def __init__(self, args: argparse.Namespace, streams: Streams) -> None:
        super().__init__(args, streams)
        if args.peers and args.endpoint is not None:
            raise UserError("bench --peers starts its own servers: give no ENDPOINT")
        self.spawned = args.endpoint is None
        if self.spawned:
            self.key = generateKey()
            self.keyring = Keyring([self.key])
        else:
            self.keyring = _clientKey(args, streams)
        self.duration: float | None = args.duration
        if self.duration is None and args.count is None:
            self.duration = 10.0
        self._progressAt = 0.0
        self._showProgress = bool(getattr(streams.stderr, "isatty", lambda: False)())

    async def execute(self, reactor: Any) -> int:
        """
        Run the three tests and print the table (or, with C{--peers}, the
        comparison with other peers).
        """
        if self.args.peers:
            return await self._comparePeers(reactor)
        child: _ServerProcess | None = None
        where = self.args.endpoint
        try:
            if self.spawned:
                child, where = await self._spawnServer(reactor)
            results = await self._benchmark(reactor, where)
        finally:
            if child is not None:
                await self._stopServer(reactor, child)
        self._printTable(where, results)
        return 0

    async def _comparePeers(self, reactor: Any) -> int:
        """
        Run C{benchmarks/bench_peers.py --quick} and print its table.

        @return: Its exit status.
        @raise UserError: It is not there (an installation from a wheel has
            no benchmarks), or it failed.
        """
        from twisted.internet.utils import getProcessOutputAndValue

        root = os.path.dirname(os.path.dirname(os.path.abspath(netstructer.__file__)))
        script = peersBenchmark(root)
        if script is None:
            raise UserError(
                "bench --peers runs benchmarks/bench_peers.py from a source checkout of"
                ' NetStructer installed with pip install -e ".[bench]"; this installation'
                " has no benchmarks"
            )
        environ = dict(self.streams.environ)
        environ["PYTHONPATH"] = os.pathsep.join([root, *filter(None, [environ.get("PYTHONPATH")])])
        out, err, code = await getProcessOutputAndValue(
            sys.executable, [script, "--quick"], env=environ, path=root, reactor=reactor
        )
        self.streams.stdout.write(out.decode("utf-8", "replace"))
        self.streams.stdout.flush()
        if code:
            said = err.decode("utf-8", "replace").strip().splitlines()
            raise UserError(f"the peer comparison failed: {said[-1] if said else code}")
        return 0

    async def _spawnServer(self, reactor: Any) -> tuple[_ServerProcess, str]:
        child = _ServerProcess()
        environ = dict(self.streams.environ)
        environ[ENVIRONMENT_VARIABLE] = self.key.decode("ascii")
        root = os.path.dirname(os.path.dirname(os.path.abspath(netstructer.__file__)))
        environ["PYTHONPATH"] = os.pathsep.join([root, *filter(None, [environ.get("PYTHONPATH")])])
        argv = [
            sys.executable,
            "-m",
            "netstructer",
            "listen",
            "--echo",
            "--quiet",
            "--suite",
            self.args.suite,
            "--max-buffer-size",
            str(max(_BULK_SIZE * 2, self.args.max_buffer_size or 0)),
            "tcp:0:interface=127.0.0.1",
        ]
        reactor.spawnProcess(child, sys.executable, argv, env=environ)
        timer = reactor.callLater(_SERVER_START_TIMEOUT, child.listening.cancel)
        try:
            where = await child.listening
        except defer.CancelledError:
            child.signal("KILL")
            raise UserError(
                f"the benchmark server did not start within {_SERVER_START_TIMEOUT:g} seconds"
            ) from None
        except BaseException:
            await child.ended
            raise
        finally:
            if timer.active():
                timer.cancel()
        return child, where

    async def _stopServer(self, reactor: Any, child: _ServerProcess) -> None:
        if child.ended.called:
            return
        child.signal("TERM")
        timer = reactor.callLater(10, child.signal, "KILL")
        await child.ended
        if timer.active():
            timer.cancel()

    def _progress(self, test: str, done: int, started: float) -> None:
        if not self._showProgress:
            return
        now = time.perf_counter()
        if now - self._progressAt < 0.2:
            return
        self._progressAt = now
        print(
            f"\r\x1b[K{test}: {done} round trips, {now - started:.1f} s",
            end="",
            file=self.streams.stderr,
            flush=True,
        )

    def _endProgress(self) -> None:
        if self._showProgress:
            print("\r\x1b[K", end="", file=self.streams.stderr, flush=True)

    def _deadline(self, share: float) -> float:
        if self.duration is None:
            return float("inf")
        return time.perf_counter() + self.duration * share

    async def _benchmark(self, reactor: Any, where: str) -> dict[str, tuple[int, float, str]]:
        args = self.args
        endpoint = _clientEndpoint(reactor, where)
        try:
            session = await connect(
                reactor,
                endpoint,
                self.keyring,
                suite=args.suite,
                timeout=args.timeout,
                maxBufferSize=max(_BULK_SIZE * 2, args.max_buffer_size or 0),
            )
        except Exception as e:
            if not _userFailure(e):
                raise
            raise UserError(f"cannot connect to {where}: {_describeFailure(e)}") from None
        results: dict[str, tuple[int, float, str]] = {}
        try:
            count, elapsed, latencies = await self._roundTrips(session, 0.3)
            ms = sorted(sample * 1000 for sample in latencies)
            results["latency p50 / p90 / p99"] = (
                count,
                elapsed,
                " / ".join(f"{_percentile(ms, f):.3f}" for f in (0.5, 0.9, 0.99)) + " ms",
            )
            count, elapsed = await self._pipelined(
                session, EXAMPLE_VALUE, _SMALL_WINDOW, 0.4, "small values"
            )
            results["small values"] = (count, elapsed, f"{count / elapsed:,.0f} msgs/s")
            bulk = os.urandom(_BULK_SIZE)
            count, elapsed = await self._pipelined(session, bulk, _BULK_WINDOW, 0.3, "1 MiB values")
            results["1 MiB values"] = (
                count,
                elapsed,
                f"{count * _BULK_SIZE / elapsed / 1e6:,.1f} MB/s",
            )
            started = time.perf_counter()
            name, result = await streamcli.benchStream(session)
            results[name] = (1, time.perf_counter() - started, result)
        finally:
            self._endProgress()
            if session.closeReason is None:
                await _closeSession(reactor, session, args.timeout, where)
        return results

    async def _reply(self, session: BridgeProtocol) -> object:
        try:
            return await session.recvBuffer(timeout=self.args.timeout)
        except OperationTimedOut:
            raise UserError(
                f"no echo within {self.args.timeout:g} seconds: is the server running the echo"
                " handler (twistd -n netstructer --handler echo)?"
            ) from None

    async def _roundTrips(
        self, session: BridgeProtocol, share: float
    ) -> tuple[int, float, list[float]]:
        deadline = self._deadline(share)
        count = self.args.count
        samples: list[float] = []
        started = time.perf_counter()
        while (count is None or len(samples) < count) and time.perf_counter() < deadline:
            sent = time.perf_counter()
            session.sendBuffer(EXAMPLE_VALUE)
            await self._reply(session)
            samples.append(time.perf_counter() - sent)
            self._progress("latency", len(samples), started)
        return len(samples), time.perf_counter() - started, samples

    async def _pipelined(
        self, session: BridgeProtocol, value: object, window: int, share: float, test: str
    ) -> tuple[int, float]:
        deadline = self._deadline(share)
        count = self.args.count
        sent = received = 0
        started = time.perf_counter()
        while True:
            while (
                sent - received < window
                and (count is None or sent < count)
                and time.perf_counter() < deadline
            ):
                session.sendBuffer(value)
                sent += 1
            if received == sent:
                break
            await self._reply(session)
            received += 1
            self._progress(test, received, started)
        return received, max(time.perf_counter() - started, 1e-9)

    def _printTable(self, where: str, results: dict[str, tuple[int, float, str]]) -> None:
        out = self.streams.stdout
        origin = "a server started by this command" if self.spawned else where
        print(
            f"NetStructer {netstructer.__version__} benchmark, {self.args.suite} suite,"
            f" value codec {'in C' if values.ACCELERATED else 'in pure Python'},"
            f" against {origin}",
            file=out,
        )
        print(f"{'test':<26}{'round trips':>12}{'seconds':>10}  result", file=out)
        for test, (count, elapsed, result) in results.items():
            print(f"{test:<26}{count:>12}{elapsed:>10.2f}  {result}", file=out)
        out.flush()


class _ClusterCommand(Command):
    """
    C{netstructer cluster status}.  A cluster that cannot be reached, or a
    malformed URL, is a user error (exit status 1).
    """

    async def execute(self, reactor: Any) -> int:
        import json

        from netstructer.cluster.status import clusterStatus, formatStatus, statusData

        args = self.args
        status = await clusterStatus(args.url, reactor=reactor, environ=self.streams.environ)
        if args.json:
            data = statusData(status)
            if args.no_sessions:
                del data["sessions"]
            text = json.dumps(data, indent=2)
        else:
            text = formatStatus(status, sessions=not args.no_sessions)
        print(text, file=self.streams.stdout, flush=True)
        return 0


_COMMANDS: dict[str, type[Command]] = {
    "send": _SendCommand,
    "send-file": _SendFileCommand,
    "listen": _ListenCommand,
    "bench": _BenchCommand,
    "cluster": _ClusterCommand,
}


def _status(args: argparse.Namespace, streams: Streams) -> int:
    """
    C{netstructer status}.

    @return: The exit status (0; 130 after Ctrl-C with C{--watch}).
    @raise UserError: The target is malformed, or the metrics cannot be
        read.
    """
    from netstructer.status import StatusError, metricsURL, watch

    interval: float = args.interval
    if not interval > 0:
        raise UserError(f"--interval must be a positive number of seconds, not {interval}")
    try:
        url = metricsURL(args.target)
    except ValueError as e:
        raise UserError(str(e)) from None
    terminal = args.watch and streams.stdout.isatty()
    summaries: list[list[str]] = []

    def write(lines: Iterable[str]) -> None:
        if args.watch:
            if terminal:
                streams.stdout.write("\x1b[H\x1b[2J")
            streams.stdout.write(f"{url}\n" + "\n".join(lines) + "\n\n")
            streams.stdout.flush()
        else:
            summaries.append(list(lines))

    try:
        watch(url, write, interval=interval, count=None if args.watch else 2)
    except StatusError as e:
        raise UserError(str(e)) from None
    except KeyboardInterrupt:
        return 130
    if summaries:
        streams.stdout.write("\n".join(summaries[-1]) + "\n")
    return 0


def _keygen(args: argparse.Namespace, streams: Streams) -> int:
    """
    C{netstructer keygen}.

    @return: The exit status.
    @raise UserError: The file exists (without C{--force}) or cannot be
        written.
    """
    name: str | None = args.name
    if name is not None:
        try:
            checkName(name)
        except NetStructerError as e:
            raise UserError(f"--name: {e}") from None
    if args.output is None:
        if args.force:
            raise UserError("--force only applies with -o FILE")
        key = generateKey()
        print(keyFileLine(key, name), file=streams.stdout, flush=True)
        if name is not None:
            keyID = Keyring([key]).keyIDs()[0]
            streams.note(
                f"that line is the client's key file (save it with mode 0600, or use -o FILE)"
                f" and the line to add to the server's key file; key ID {keyID}"
            )
        return 0
    path = os.path.expanduser(args.output)
    try:
        key = writeKeyFile(path, overwrite=args.force, name=name)
    except NetStructerError as e:
        message = str(e)
        if "already exists" in message:
            message += " Or pass --force to replace it."
        raise UserError(message) from None
    keyID = Keyring([key]).keyIDs()[0]
    if name is None:
        streams.note(f"wrote a new key to {path} (mode 0600, key ID {keyID})")
        return 0
    print(keyFileLine(key, name), file=streams.stdout, flush=True)
    streams.note(
        f"wrote {name}'s key file {path} (mode 0600, key ID {keyID}); add the line above"
        f" to the server's key file and reload it (SIGHUP) to let {name} in"
    )
    return 0


def commandNames() -> list[str]:
    """
    @return: The names of the C{netstructer} command's subcommands, in the
        order C{netstructer --help} lists them.
    """
    for action in _makeParser()._actions:
        if isinstance(action, argparse._SubParsersAction):
            return list(action.choices)
    raise AssertionError("the netstructer command line has no subcommands")


def parseCommand(argv: Sequence[str] | None, streams: Streams | None = None) -> Command | int:
    """
    Parse a command line and do everything that needs no reactor: parse
    the values, load the key, and run C{keygen}.

    @param argv: The arguments, without the program name; C{sys.argv[1:]}
        if L{None}.
    @param streams: Where to read and write; the process's by default.
    @return: The command to run with the reactor, or an exit status if
        there is nothing more to do (0 after C{keygen} or C{--help}, 1 after
        a user error, 2 after a command-line error, each reported on
        standard error).
    """
    if streams is None:
        streams = Streams()
    parser = _makeParser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:
        return _exitCode(e.code)
    try:
        if args.command == "keygen":
            return _keygen(args, streams)
        if args.command == "status":
            return _status(args, streams)
        if args.command == "conformance":
            from netstructer.conformance._cli import runConformance

            return runConformance(args, streams)
        return _COMMANDS[args.command](args, streams)
    except UserError as e:
        streams.error(str(e))
        return 1


def _exitCode(code: object) -> int:
    """
    @return: The exit status a L{SystemExit} code stands for.
    """
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return 1


def _startLogging(command: Command) -> None:
    """
    Show what the library logs (never values) on standard error while a
    command runs: with C{--verbose}, everything from the C{info} level; else
    warnings for C{listen} (peers that fail to authenticate, say), and only
    errors for the client commands, which report their own failures.

    @param command: The command about to run.
    """
    from twisted.logger import (
        FilteringLogObserver,
        LogLevel,
        LogLevelFilterPredicate,
        globalLogBeginner,
        textFileLogObserver,
    )

    if command.args.verbose:
        level = LogLevel.info
    elif isinstance(command, _ListenCommand):
        level = LogLevel.warn
    else:
        level = LogLevel.error
    observer = FilteringLogObserver(
        textFileLogObserver(command.streams.stderr),
        [LogLevelFilterPredicate(defaultLogLevel=level)],
    )
    globalLogBeginner.beginLoggingTo([observer], redirectStandardIO=False)


def main(argv: Sequence[str] | None = None) -> int:
    """
    Run the C{netstructer} command.

    @param argv: The arguments, without the program name; C{sys.argv[1:]}
        if L{None}.
    @return: The exit status: 0 for success, 1 for a user error, 2 for a
        command-line error.
    """
    from twisted.internet.task import react

    streams = Streams()
    command = parseCommand(argv, streams)
    if isinstance(command, int):
        return command
    _startLogging(command)
    tuneAllocator()

    async def reactMain(reactor: Any) -> None:
        code = await command.run(reactor)
        if code:
            raise SystemExit(code)

    try:
        react(reactMain)
    except SystemExit as e:
        return _exitCode(e.code)
