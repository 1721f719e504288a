# -*- test-case-name: tests.test_server -*-
"""
Handlers: what a L{netstructer.server.Server} does with its sessions.

A handler is either

    - a B{callable}, C{handler(session)}, called once for each session when
      it opens (after its handshake).  It may return a L{Deferred
      <twisted.internet.defer.Deferred>}; it reads
      values with C{session.recvBuffer()} and sends with
      C{session.sendBuffer(value)}.  A class whose instances take the session
      is such a callable: one instance per session.
    - or an B{object} with any of the methods of L{IHandler}
      (C{sessionOpened}, C{bufferReceived}, C{sessionClosed}) and
      L{IStreamHandler} (C{streamReceived}); those it lacks are skipped.  If
      it has C{bufferReceived}, every value goes to it as it arrives instead
      of the C{recvBuffer} queue.  If it has C{streamReceived}, every stream
      a client sends is offered to it; a handler object without it refuses
      streams (a callable handler finds them with C{session.recvStream()}).

A handler that raises, or returns a L{Deferred<twisted.internet.defer.Deferred>} that fails, from
C{sessionOpened}, C{bufferReceived} or the callable form has that session,
and only that session, closed with L{CloseCode.INTERNAL_ERROR
<netstructer.channel.CloseCode.INTERNAL_ERROR>}; the error is logged locally
and never crosses the wire.

This module holds the interfaces, the built-in handlers (L{EchoHandler},
L{LogHandler}, L{SaveHandler}) and L{handlerFromName}, which the command
line uses to load one by name.
"""

from __future__ import annotations

import importlib
import reprlib
import time
from pathlib import Path
from typing import Any

from twisted.internet import defer
from twisted.internet.interfaces import IConsumer
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import Interface, implementer

from netstructer.channel import CloseCode
from netstructer.errors import (
    BufferDataError,
    ChannelClosedError,
    ServerInitializeError,
    StreamError,
)
from netstructer.protocol import BridgeProtocol
from netstructer.streaming.received import ReceivedStream
from netstructer.streams.files import sanitizeName, streamName, writeMeta
from netstructer.streams.receipt import StreamReceipt

__all__ = [
    "HANDLER_METHODS",
    "EchoHandler",
    "IHandler",
    "IStreamHandler",
    "LogHandler",
    "SaveHandler",
    "checkHandler",
    "handlerFromName",
    "isHandlerObject",
]

HANDLER_METHODS = ("sessionOpened", "bufferReceived", "sessionClosed", "streamReceived")
"""The methods a handler object may have; any subset will do."""


class IHandler(Interface):
    """
    What a server does with its sessions.  Every method is optional: a
    handler object may provide any subset, and the server skips the others
    (so C{zope.interface.verify.verifyObject} applies only to handlers that
    provide all three, such as the built-in ones).

    A method may return a L{Deferred<twisted.internet.defer.Deferred>}; if
    it fails (or the method raises),
    the session is closed with C{CloseCode.INTERNAL_ERROR}, except for
    L{sessionClosed}, whose errors are only logged.
    """

    def sessionOpened(session: BridgeProtocol) -> Any:  # noqa: N805
        """
        A session completed its handshake.

        @param session: The session; send with C{session.sendBuffer(value)}.
        @return: Anything, or a L{Deferred<twisted.internet.defer.Deferred>}.
        """

    def bufferReceived(session: BridgeProtocol, value: object) -> Any:  # noqa: N805
        """
        A value arrived on a session.  Values arrive in order, each once,
        after L{sessionOpened}.  While a handler has this method, values do
        not go to the session's C{recvBuffer} queue, so nothing pauses
        reading from the peer: a slow handler should pause it itself.

        @param session: The session.
        @param value: The decoded value.
        @return: Anything, or a L{Deferred<twisted.internet.defer.Deferred>}.
        """

    def sessionClosed(session: BridgeProtocol, reason: Failure) -> Any:  # noqa: N805
        """
        A session that had opened ended.

        @param session: The session.
        @param reason: Why: L{ConnectionDone
            <twisted.internet.error.ConnectionDone>} for a clean close.
        @return: Anything; errors are logged.
        """


class IStreamHandler(Interface):
    """
    What a server does with the streams its clients send (files and values
    larger than memory, L{netstructer.streaming}).  Optional, like every
    method of a handler.
    """

    def streamReceived(
        session: BridgeProtocol,  # noqa: N805
        meta: object,
        stream: ReceivedStream,
    ) -> Any:
        """
        A client offered a stream.  Take it (C{stream.saveTo(path)},
        C{stream.deliverTo(consumer)}, C{stream.nextChunk()} or C{async for
        chunk in stream}) or refuse it (C{stream.refuse(reason)}), now or
        later: one neither taken nor refused within the idle timeout (60
        seconds) is refused.  Only that stream fails if the method raises
        or its Deferred fails: it is aborted, the session goes on.

        @param session: The session.
        @param meta: The value its sender described it with.
        @param stream: The stream.
        @return: Anything, or a C{Deferred}.
        """


def isHandlerObject(handler: object) -> bool:
    """
    Whether C{handler} is a handler object (as opposed to a callable
    handler): an instance with at least one method of L{IHandler}.

    @param handler: A would-be handler.
    @return: C{True} for a handler object.
    """
    if isinstance(handler, type):
        return False
    return any(callable(getattr(handler, name, None)) for name in HANDLER_METHODS)


def checkHandler(handler: object) -> object:
    """
    Check that C{handler} is a handler.

    @param handler: A handler object or a callable handler.
    @return: C{handler}.
    @raise TypeError: It is neither, or it is a class with handler methods
        (an instance of it was probably meant).
    """
    if isHandlerObject(handler):
        return handler
    if isinstance(handler, type) and any(
        callable(getattr(handler, name, None)) for name in HANDLER_METHODS
    ):
        raise TypeError(
            f"{handler.__qualname__} is a handler class: pass an instance of it, "
            f"{handler.__qualname__}(), not the class"
        )
    if callable(handler):
        return handler
    raise TypeError(
        f"{handler!r} is not a handler: give a callable taking the session, or an "
        "object with sessionOpened, bufferReceived or sessionClosed methods"
    )


@implementer(IConsumer)
class _Discard:
    """
    A consumer that keeps nothing.
    """

    def registerProducer(self, producer: object, streaming: bool) -> None:
        """Nothing."""

    def unregisterProducer(self) -> None:
        """Nothing."""

    def write(self, data: bytes) -> None:
        """Nothing."""


@implementer(IHandler, IStreamHandler)
class EchoHandler:
    """
    Sends every value back to the session it came from; reads every stream
    to its end and confirms it, keeping nothing (so that C{netstructer
    bench} can measure streams against it).

    Backpressure: when the session's transport stops accepting writes,
    reading from the peer pauses until it drains, so a peer that sends
    without reading cannot make the server buffer without bound.  A value
    larger than the peer itself accepts closes the session with
    L{CloseCode.TOO_BIG}; values arriving after the session started closing
    are dropped (nothing more can be sent).
    """

    _log = Logger()

    def __init__(self, logger: Logger | None = None) -> None:
        """
        @param logger: Where to log; the class's logger by default.
        """
        if logger is not None:
            self._log = logger

    def sessionOpened(self, session: BridgeProtocol) -> None:
        """
        Nothing to do.

        @param session: The session.
        """

    def bufferReceived(self, session: BridgeProtocol, value: object) -> None:
        """
        Send C{value} back, and pause reading from the peer while the
        transport's write buffer is full.

        @param session: The session.
        @param value: The value.
        """
        try:
            session.sendBuffer(value)
        except ChannelClosedError:
            return
        except BufferDataError as e:
            self._log.warn("Cannot echo a value to {peer}: {error}", peer=session.key, error=e)
            session.close("the value is larger than you accept", CloseCode.TOO_BIG)
            return
        if session.writable:
            return
        writable = session.whenWritable()
        if writable.called or _closing(session):
            return
        session.pauseReceiving()

        def resume(_: object) -> None:
            if not _closing(session):
                session.resumeReceiving()

        writable.addCallback(resume)

    def streamReceived(self, session: BridgeProtocol, meta: object, stream: ReceivedStream) -> None:
        """
        Read the stream to its end, keeping nothing, and confirm it.

        @param session: The session.
        @param meta: Its meta.
        @param stream: The stream.
        """
        stream.deliverTo(_Discard()).addErrback(lambda _: None)

    def sessionClosed(self, session: BridgeProtocol, reason: Failure) -> None:
        """
        Nothing to do.

        @param session: The session.
        @param reason: Why it ended.
        """


def _closing(session: BridgeProtocol) -> bool:
    """
    Whether the session's transport is closing or closed, so that reading
    from it can no longer be paused or resumed.
    """
    return session.closeReason is not None or bool(
        getattr(session.transport, "disconnecting", False)
    )


class _TruncatingRepr(reprlib.Repr):
    """
    A L{reprlib.Repr} that also truncates bytes without building the whole
    representation first.
    """

    def repr_bytes(self, value: bytes, level: int) -> str:
        text = repr(value[: self.maxstring])
        return text + "..." if len(value) > self.maxstring else text

    repr_bytearray = repr_bytes


@implementer(IHandler)
class LogHandler:
    """
    Logs every session opening and closing and every value received, with
    the peer, at the C{info} level.  Values are logged as their C{repr}, cut
    to C{maxLength} characters.  Use it for debugging: it logs what the
    peers send.

    @ivar maxLength: The longest value representation logged.
    """

    _log = Logger()

    def __init__(self, maxLength: int = 200, logger: Logger | None = None) -> None:
        """
        @param maxLength: The longest value representation logged (at least
            16).
        @param logger: Where to log; the class's logger by default.
        """
        self.maxLength = max(16, maxLength)
        self._repr = _TruncatingRepr()
        self._repr.maxstring = self.maxLength
        self._repr.maxother = self.maxLength
        self._repr.maxlong = self.maxLength
        if logger is not None:
            self._log = logger

    def describe(self, value: object) -> str:
        """
        The representation of C{value} that is logged.

        @param value: A received value.
        @return: Its C{repr}, at most L{maxLength} characters.
        """
        text = self._repr.repr(value)
        if len(text) > self.maxLength:
            text = text[: self.maxLength - 3] + "..."
        return text

    def sessionOpened(self, session: BridgeProtocol) -> None:
        """
        Log the session.

        @param session: The session.
        """
        self._log.info("Session {peer} opened", peer=session.key)

    def bufferReceived(self, session: BridgeProtocol, value: object) -> None:
        """
        Log the value and its peer.

        @param session: The session.
        @param value: The value.
        """
        self._log.info(
            "{peer} sent {value}",
            peer=session.key,
            value=self.describe(value),
            valueType=type(value).__name__,
        )

    def sessionClosed(self, session: BridgeProtocol, reason: Failure) -> None:
        """
        Log the end of the session.

        @param session: The session.
        @param reason: Why it ended.
        """
        self._log.info(
            "Session {peer} closed: {reason}", peer=session.key, reason=reason.getErrorMessage()
        )


@implementer(IHandler, IStreamHandler)
class SaveHandler:
    """
    Keeps the streams clients send as files in a directory: each under the
    name its meta gives (its C{"name"}, or the meta itself if it is text),
    made safe (its last path component only, no hidden or reserved names:
    see L{sanitizeName<netstructer.streams.files.sanitizeName>}), or a name
    made of its peer, time and ID; with its meta beside it in
    C{NAME.meta.json}.

    A stream is written to C{.NAME.part} and renamed only once whole and
    its SHA-256 checked, then confirmed to its sender; one that fails leaves
    no file under its final name.  A stream whose sender can resume goes on
    from the part an interrupted transfer of it left.  Refused, with the
    reason its sender sees and a log line: a name that exists (unless
    C{overwrite}), a stream announcing more than the disk holds, or more
    than the server's C{maxStreamSize}.  Values are not kept: each is
    logged and dropped.

    @ivar directory: Where the files go.
    @ivar overwrite: Whether a stream may replace a file of its name.
    """

    _log = Logger()

    def __init__(
        self, directory: str | Path, overwrite: bool = False, logger: Logger | None = None
    ) -> None:
        """
        @param directory: Where the files go; made if missing.
        @param overwrite: Whether a stream may replace a file of its name.
        @param logger: Where to log; the class's logger by default.
        @raise ServerInitializeError: The directory cannot be made, or is
            not a directory.
        """
        self.directory = Path(directory).expanduser()
        self.overwrite = overwrite
        if logger is not None:
            self._log = logger
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise ServerInitializeError(
                f"cannot use {self.directory} to save streams: {e.strerror or e}"
            ) from e

    def sessionOpened(self, session: BridgeProtocol) -> None:
        """
        Nothing to do.
        """

    def bufferReceived(self, session: BridgeProtocol, value: object) -> None:
        """
        Log and drop a value: this handler keeps only streams.
        """
        self._log.info(
            "{peer} sent a value, which this server does not keep (it saves streams to"
            " {directory})",
            peer=session.key,
            directory=str(self.directory),
        )

    def sessionClosed(self, session: BridgeProtocol, reason: Failure) -> None:
        """
        Nothing to do.
        """

    def nameFor(self, session: BridgeProtocol, meta: object, stream: ReceivedStream) -> str:
        """
        The name a stream is saved under.

        @return: The name its meta gives, made safe; else one made of its
            peer, the time and its ID.
        """
        name = streamName(meta)
        if name is not None:
            return name
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
        return sanitizeName(f"stream-{session.key}-{stamp}-{stream.streamID}")

    def streamReceived(
        self, session: BridgeProtocol, meta: object, stream: ReceivedStream
    ) -> defer.Deferred[StreamReceipt | None]:
        """
        Save the stream (see L{saveStream}).

        @return: A Deferred firing once it is saved (its meta written
            beside), or with L{None} once its failure is logged.
        """
        return self.saveStream(session, meta, stream).addErrback(lambda _: None)

    def saveStream(
        self, session: BridgeProtocol, meta: object, stream: ReceivedStream
    ) -> defer.Deferred[StreamReceipt]:
        """
        Save the stream and write its meta beside it.

        @return: A Deferred firing with its receipt once it is saved, or
            failing with why it was not (logged already).
        """
        name = self.nameFor(session, meta, stream)
        path = self.directory / name
        self._log.info(
            "Saving stream {streamID} from {peer} as {name} ({size} bytes announced)",
            streamID=stream.streamID,
            peer=session.key,
            name=name,
            size=stream.size,
        )
        saved = stream.saveTo(path, overwrite=self.overwrite)

        def keepMeta(receipt: StreamReceipt) -> defer.Deferred[StreamReceipt]:
            written = stream.diskIO.run(writeMeta, receipt.path or path, meta)
            return written.addCallback(lambda _: receipt)

        def done(receipt: StreamReceipt) -> StreamReceipt:
            self._log.info(
                "Saved {name} from {peer}: {receipt}",
                name=name,
                peer=session.key,
                receipt=str(receipt),
            )
            return receipt

        def failed(failure: Failure) -> Failure:
            # The stream's failure was logged by its session; a failure to
            # write the meta is this handler's.
            if not failure.check(StreamError):
                self._log.failure(
                    "Saving {name} from {peer} failed", failure, name=name, peer=session.key
                )
            return failure

        return saved.addCallback(keepMeta).addCallback(done).addErrback(failed)


_BUILTIN_HANDLERS: dict[str, type[EchoHandler] | type[LogHandler]] = {
    "echo": EchoHandler,
    "log": LogHandler,
}


_SAVE = "save:"
_OVERWRITE = ",overwrite"


def _saveHandler(argument: str) -> SaveHandler:
    """
    The handler of C{save:DIR} (or C{save:DIR,overwrite}).
    """
    overwrite = argument.lower().endswith(_OVERWRITE)
    directory = argument[: -len(_OVERWRITE)] if overwrite else argument
    if not directory.strip():
        raise ServerInitializeError(
            "save: needs a directory: --handler save:DIR (or save:DIR,overwrite)"
        )
    return SaveHandler(directory.strip(), overwrite=overwrite)


def handlerFromName(name: str) -> object:
    """
    Load a handler by name.

    @param name: C{"echo"} (an L{EchoHandler}), C{"log"} (a L{LogHandler}),
        C{"save:DIR"} (a L{SaveHandler} keeping streams in C{DIR};
        C{"save:DIR,overwrite"} lets them replace files of their name),
        or C{"package.module:name"}, which imports C{package.module} and
        takes its attribute C{name} (dots in C{name} reach nested
        attributes).  That attribute may be a handler object, a callable
        handler, or a class with handler methods, which is instantiated with
        no arguments.  (A class without handler methods is a callable
        handler: it gets one instance per session, made with the session.)
    @return: The handler.
    @raise ServerInitializeError: The name is none of these, the module
        cannot be imported, the attribute is missing, or it is not a
        handler; the message says which.
    """
    builtin = _BUILTIN_HANDLERS.get(name.strip().lower())
    if builtin is not None:
        return builtin()
    if name.strip().lower().startswith(_SAVE):
        return _saveHandler(name.strip()[len(_SAVE) :])
    moduleName, separator, attribute = name.strip().partition(":")
    if not separator or not moduleName or not attribute:
        raise ServerInitializeError(
            f"unknown handler {name!r}: use 'echo', 'log', 'save:DIR', or "
            "'package.module:name' naming your own handler"
        )
    try:
        module = importlib.import_module(moduleName)
    except ImportError as e:
        raise ServerInitializeError(
            f"cannot import the handler module {moduleName!r}: {e}; check the name and "
            "that the module is on PYTHONPATH"
        ) from e
    except Exception as e:
        raise ServerInitializeError(
            f"importing the handler module {moduleName!r} failed: {type(e).__name__}: {e}"
        ) from e
    found: object = module
    for part in attribute.split("."):
        try:
            found = getattr(found, part)
        except AttributeError:
            raise ServerInitializeError(
                f"the handler module {moduleName!r} has no attribute {attribute!r}"
            ) from None
    if isinstance(found, type) and any(
        callable(getattr(found, method, None)) for method in HANDLER_METHODS
    ):
        try:
            found = found()
        except Exception as e:
            raise ServerInitializeError(
                f"cannot make a handler from {name!r}: {type(e).__name__}: {e}"
            ) from e
    if not callable(found) and not isHandlerObject(found):
        raise ServerInitializeError(
            f"{name!r} is a {type(found).__name__}, not a handler: give a callable taking "
            "the session, or an object with sessionOpened, bufferReceived or sessionClosed "
            "methods"
        )
    return found
