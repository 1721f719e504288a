# -*- test-case-name: tests.test_streams_engine -*-
"""
Streams: values and files larger than memory, sent beside a session's
values, with per-stream flow control, progress and resume (protocol
version 3; docs/protocol.rst, "Streams").

Sans-IO, like the session core it attaches to: no sockets, no reactor, no
threads.  The pieces:

    - L{netstructer.streams.wire}: the records (OPEN, ACCEPT, DATA, END,
      WINDOW, DONE, ABORT), parsed and serialized;
    - L{StreamsEngine}: the capability of one session, holding its
      L{OutgoingStream}s and L{IncomingStream}s;
    - L{netstructer.streams.interfaces}: what the engine asks of its
      adapters (a source of bytes) and tells them (observers);
    - L{netstructer.streams.sources} and L{netstructer.streams.files}: small
      helpers for the adapters: sources over bytes, iterables and pushed
      chunks; a file source and a file sink that writes under a temporary
      name and renames only a whole, checked stream;
    - L{StreamReceipt}: a stream confirmed (its size and SHA-256).
"""

from __future__ import annotations

from netstructer.streams.engine import (
    DEFAULT_CHUNK_SIZE,
    DEFAULT_IDLE_TIMEOUT,
    DEFAULT_MAX_STREAMS,
    DEFAULT_WINDOW,
    STREAMS_VERSION,
    StreamsEngine,
)
from netstructer.streams.incoming import IncomingStream
from netstructer.streams.interfaces import (
    IIncomingStreamObserver,
    IOutgoingStreamObserver,
    IStreamsObserver,
    IStreamSource,
)
from netstructer.streams.outgoing import OutgoingStream
from netstructer.streams.receipt import StreamReceipt
from netstructer.streams.wire import AbortCode

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "DEFAULT_IDLE_TIMEOUT",
    "DEFAULT_MAX_STREAMS",
    "DEFAULT_WINDOW",
    "STREAMS_VERSION",
    "AbortCode",
    "IIncomingStreamObserver",
    "IOutgoingStreamObserver",
    "IStreamSource",
    "IStreamsObserver",
    "IncomingStream",
    "OutgoingStream",
    "StreamReceipt",
    "StreamsEngine",
]
