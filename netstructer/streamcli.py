# -*- test-case-name: tests.test_streamcli -*-
"""
The stream commands of C{netstructer}:

    - C{netstructer send-file ENDPOINT FILE [--meta VALUE] [--resume]
      [--limit-rate BYTES]}: send a file as a stream, with a progress bar
      (bytes, rate, ETA) on a terminal and a plain line a second otherwise,
      and print the receiver's confirmation (its size and SHA-256);
      C{--resume} goes on from the part an interrupted transfer of the same
      file left at the receiver, once the receiver's SHA-256 of that part
      matches the file's start;
    - C{netstructer listen ENDPOINT --save-dir DIR [--overwrite]
      [--max-stream-size BYTES]}: also keep the streams clients send as
      files in C{DIR} (the C{save:DIR} handler of C{twistd netstructer}).

The argument parsing and the commands' plumbing are in L{netstructer.cli};
this module holds what they do with streams.
"""

from __future__ import annotations

import argparse
import ast
import os
import time
from collections.abc import Callable
from typing import IO, Any

from twisted.internet import defer
from twisted.python.failure import Failure
from zope.interface import implementer

from netstructer.errors import PeerVersionError, StreamAborted, StreamError
from netstructer.handlers import EchoHandler, IHandler, IStreamHandler, SaveHandler
from netstructer.protocol import BridgeProtocol
from netstructer.streaming.received import ReceivedStream
from netstructer.streams.files import PART_SUFFIX
from netstructer.streams.receipt import StreamReceipt
from netstructer.tap import MAX_STREAM_SIZE_OPTION, parseSize

__all__ = [
    "BENCH_STREAM_SIZE",
    "TransferProgress",
    "addSaveDirArguments",
    "addSendFileArguments",
    "benchStream",
    "fileMeta",
    "listenHandler",
    "listenOptions",
    "sendFile",
]

_PROGRESS_INTERVAL = 1.0
"""Seconds between the plain progress lines written when not on a terminal."""

_BAR_INTERVAL = 0.1
"""Seconds between redraws of the progress bar on a terminal."""

_BAR_WIDTH = 24


def _literal(text: str) -> object:
    """
    argparse type for C{--meta}: a Python literal.
    """
    try:
        return ast.literal_eval(text.strip())
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a Python literal (quote text: \"'{text}'\")"
        ) from None


def _rate(text: str) -> int:
    """
    argparse type for C{--limit-rate}: bytes a second, with a unit.
    """
    try:
        return parseSize(text, "--limit-rate", maximum=MAX_STREAM_SIZE_OPTION)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _streamSize(text: str) -> int:
    """
    argparse type for C{--max-stream-size}.
    """
    try:
        return parseSize(text, "--max-stream-size", maximum=MAX_STREAM_SIZE_OPTION)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def addSendFileArguments(parser: argparse.ArgumentParser, timeout: float) -> None:
    """
    Add the arguments of C{send-file} to its parser.

    @param timeout: The default of C{--timeout}.
    """
    parser.add_argument(
        "endpoint",
        metavar="ENDPOINT",
        help="where the server is: host:port, a port on 127.0.0.1, or a client endpoint"
        " description",
    )
    parser.add_argument("file", metavar="FILE", help="the file to send")
    parser.add_argument(
        "--meta",
        metavar="VALUE",
        type=_literal,
        default=None,
        help="a Python literal describing the file, sent with it (a dict is sent with the"
        " file's name added as 'name'; anything else as {'name': ..., 'meta': VALUE})",
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="go on from what an interrupted transfer of this file left at the receiver"
        " (checked by SHA-256 first); without it the receiver starts afresh",
    )
    parser.add_argument(
        "--limit-rate",
        metavar="BYTES",
        type=_rate,
        default=None,
        help="send at most BYTES a second (K, M, G suffixes)",
    )
    parser.add_argument(
        "--timeout",
        metavar="SECONDS",
        type=float,
        default=timeout,
        help=f"how long to wait to connect (default {timeout:g}); a transfer that stalls"
        " fails after 60 seconds without progress",
    )


def addSaveDirArguments(listen: argparse.ArgumentParser) -> None:
    """
    Add C{--save-dir}, C{--overwrite} and C{--max-stream-size} to the
    parser of C{listen}.
    """
    listen.add_argument(
        "--save-dir",
        metavar="DIR",
        default=None,
        help="keep the files (streams) clients send in DIR, each under the name it was sent"
        " with, its meta in NAME.meta.json beside it; without this, streams are refused"
        " (with --echo, read and confirmed without being kept)",
    )
    listen.add_argument(
        "--overwrite",
        action="store_true",
        help="with --save-dir, let a file replace one of the same name (default: refuse it)",
    )
    listen.add_argument(
        "--max-stream-size",
        metavar="BYTES",
        type=_streamSize,
        default=None,
        help="refuse streams larger than BYTES (K, M, G, T suffixes; default no limit)",
    )


def listenOptions(args: argparse.Namespace) -> dict[str, Any]:
    """
    @return: The L{Server<netstructer.server.Server>} options of C{listen}'s
        stream arguments.
    """
    if getattr(args, "max_stream_size", None) is None:
        return {}
    return {"maxStreamSize": args.max_stream_size}


def fileMeta(path: str, meta: object) -> object:
    """
    The meta C{send-file} sends with C{path}: its name, and C{--meta}.
    """
    name = os.path.basename(path)
    if meta is None:
        return {"name": name}
    if isinstance(meta, dict):
        return {"name": name, **meta}
    return {"name": name, "meta": meta}


def _size(count: float) -> str:
    """
    A byte count for people: C{"1.5 MiB"}.
    """
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if count < 1024 or unit == "TiB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    raise AssertionError("unreachable")  # pragma: no cover


def _duration(seconds: float) -> str:
    seconds = int(seconds + 0.5)
    if seconds >= 3600:
        return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
    return f"{seconds // 60}:{seconds % 60:02d}"


class TransferProgress:
    """
    How far a transfer is, written to a terminal as a bar redrawn in place
    (bytes, percentage, rate, ETA), or elsewhere as a plain line a second.

    @ivar terminal: Whether it draws a bar (on a terminal).
    """

    def __init__(
        self,
        out: IO[str],
        name: str,
        clock: Callable[[], float] = time.monotonic,
        terminal: bool | None = None,
    ) -> None:
        """
        @param out: Where to write (standard error).
        @param name: What is sent.
        @param clock: The time.
        @param terminal: Whether C{out} is a terminal; asked of it if
            L{None}.
        """
        self._out = out
        self._name = name
        self._clock = clock
        if terminal is None:
            terminal = bool(getattr(out, "isatty", lambda: False)())
        self.terminal = terminal
        self._started = clock()
        self._first: int | None = None
        self._shownAt = self._started
        self._drawn = False

    def line(self, sent: int, size: int | None) -> str:
        """
        @return: The progress as words: bytes sent (of the size), rate, ETA.
        """
        now = self._clock()
        if self._first is None:
            self._first = sent
            self._started = now
        elapsed = now - self._started
        rate = (sent - self._first) / elapsed if elapsed > 0 else 0.0
        text = f"{self._name}: {_size(sent)}"
        if size:
            text += f" of {_size(size)} ({100 * sent / size:.0f}%)"
        text += f", {_size(rate)}/s"
        if size and rate > 0 and sent < size:
            text += f", ETA {_duration((size - sent) / rate)}"
        return text

    def update(self, sent: int, size: int | None) -> None:
        """
        The transfer reached C{sent} bytes (of C{size}).
        """
        now = self._clock()
        interval = _BAR_INTERVAL if self.terminal else _PROGRESS_INTERVAL
        if self._first is None:
            self.line(sent, size)
        if now - self._shownAt < interval:
            return
        self._shownAt = now
        text = self.line(sent, size)
        if self.terminal:
            bar = ""
            if size:
                filled = int(_BAR_WIDTH * min(sent / size, 1.0))
                bar = "[" + "#" * filled + "-" * (_BAR_WIDTH - filled) + "] "
            self._out.write(f"\r\x1b[K{bar}{text}")
            self._drawn = True
        else:
            self._out.write(text + "\n")
        self._out.flush()

    def finish(self) -> None:
        """
        The transfer is over: clear the bar.
        """
        if self._drawn:
            self._out.write("\r\x1b[K")
            self._out.flush()
            self._drawn = False

    def rate(self, count: int) -> str:
        """
        @return: The average rate of C{count} bytes since the start.
        """
        elapsed = max(self._clock() - self._started, 1e-9)
        return f"{_size(count / elapsed)}/s"


async def sendFile(
    session: BridgeProtocol,
    path: str,
    meta: object,
    resume: bool,
    limitRate: float | None,
    streams: Any,
) -> StreamReceipt:
    """
    Send a file over an open session, showing the progress, and print the
    receiver's confirmation.

    @param streams: The command's L{Streams<netstructer.cli.Streams>}.
    @return: The receipt.
    @raise StreamError: The transfer failed (the message says why).
    """
    name = os.path.basename(path)
    progress = TransferProgress(streams.stderr, name)
    try:
        receipt = await session.sendStream(
            path,
            fileMeta(path, meta),
            resume=resume,
            progress=progress.update,
            limitRate=limitRate,
        )
    finally:
        progress.finish()
    sent = receipt.size - receipt.offset
    resumed = f" (resumed at {receipt.offset} bytes)" if receipt.offset else ""
    print(
        f"sent {name}: {receipt.size} bytes, SHA-256 {receipt.hexdigest}{resumed},"
        f" {progress.rate(sent)}",
        file=streams.stdout,
        flush=True,
    )
    return receipt


@implementer(IHandler, IStreamHandler)
class _EchoingHandler:
    """
    The handler of C{listen --echo}: values and sessions as C{listen}
    shows them, streams read to their end and confirmed (as the echo
    handler does, for C{netstructer bench}).
    """

    def __init__(self, handler: Any) -> None:
        self._handler = handler
        self._echo = EchoHandler()

    def sessionOpened(self, session: BridgeProtocol) -> object:
        return self._handler.sessionOpened(session)

    def bufferReceived(self, session: BridgeProtocol, value: object) -> object:
        return self._handler.bufferReceived(session, value)

    def sessionClosed(self, session: BridgeProtocol, reason: Failure) -> object:
        return self._handler.sessionClosed(session, reason)

    def streamReceived(
        self, session: BridgeProtocol, meta: object, stream: ReceivedStream
    ) -> defer.Deferred[None] | None:
        self._echo.streamReceived(session, meta, stream)
        return None


class _SavingHandler(_EchoingHandler):
    """
    The handler of C{listen --save-dir}: values and sessions as C{listen}
    shows them, streams saved in the directory, one line each.
    """

    def __init__(self, handler: Any, saver: SaveHandler, streams: Any, quiet: bool) -> None:
        super().__init__(handler)
        self._saver = saver
        self._streams = streams
        self._quiet = quiet

    def streamReceived(
        self, session: BridgeProtocol, meta: object, stream: ReceivedStream
    ) -> defer.Deferred[None]:
        """
        Save the stream, saying so.
        """
        name = self._saver.nameFor(session, meta, stream)
        announced = "" if stream.size is None else f" ({stream.size} bytes)"
        self._note(f"{session.key} sends {name}{announced}")
        started = time.monotonic()

        def saved(receipt: StreamReceipt) -> None:
            elapsed = max(time.monotonic() - started, 1e-9)
            rate = _size((receipt.size - receipt.offset) / elapsed)
            self._note(f"saved {receipt.path or name} from {session.key}: {receipt}, {rate}/s")

        def failed(failure: Failure) -> None:
            error = failure.value
            kept = isinstance(error, StreamAborted) and error.code is None and stream.received
            if kept:
                self._note(
                    f"{name} from {session.key} was interrupted after {stream.received} bytes:"
                    f" they are kept in .{name}{PART_SUFFIX} for send-file --resume"
                )
            else:
                self._note(f"{name} from {session.key} was not saved: {error}")

        return self._saver.saveStream(session, meta, stream).addCallbacks(saved, failed)

    def _note(self, message: str) -> None:
        if not self._quiet:
            self._streams.note(message)


BENCH_STREAM_SIZE = 64 * 1024 * 1024
"""The size of the stream C{netstructer bench} sends."""


async def benchStream(session: BridgeProtocol, size: int = BENCH_STREAM_SIZE) -> tuple[str, str]:
    """
    The stream row of C{netstructer bench}: C{size} random bytes sent as
    one stream, timed until the server confirms them.

    @return: The row's name and result (MB/s, or why the server did not
        take the stream).
    """
    name = f"stream of {size // (1024 * 1024)} MiB"
    data = os.urandom(size)
    started = time.perf_counter()
    try:
        receipt = await session.sendStream(data, {"name": "bench"})
    except (StreamError, PeerVersionError) as e:
        return name, f"not measured: {e}"
    elapsed = max(time.perf_counter() - started, 1e-9)
    return name, f"{receipt.size / elapsed / 1e6:,.1f} MB/s"


def listenHandler(handler: Any, args: argparse.Namespace, streams: Any) -> Any:
    """
    The handler of C{listen}: C{handler}, saving streams with C{--save-dir}.

    @raise ServerInitializeError: The directory cannot be used.
    """
    directory = getattr(args, "save_dir", None)
    if directory is None:
        return _EchoingHandler(handler) if getattr(args, "echo", False) else handler
    saver = SaveHandler(directory, overwrite=args.overwrite)
    return _SavingHandler(handler, saver, streams, args.quiet)
