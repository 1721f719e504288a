# -*- test-case-name: tests.test_streaming -*-
"""
Streams on the Twisted side: what L{BridgeProtocol.sendStream
<netstructer.protocol.BridgeProtocol.sendStream>} sends and how
L{ReceivedStream} is taken, over the sans-IO engine of
L{netstructer.streams}.

    - L{netstructer.streaming.sources}: paths, files, producers and
      (async) iterables as stream sources that never block the reactor;
    - L{netstructer.streaming.received}: L{ReceivedStream}, a stream the
      peer sends (saved to a file, delivered to a consumer, read chunk by
      chunk, or refused);
    - L{netstructer.streaming.saving}: files written in the disk threads;
    - L{netstructer.streaming.disk}: the disk threads;
    - L{netstructer.streaming.session}: the streams of one session.
"""

from __future__ import annotations

from netstructer.streaming.disk import IDiskIO, ImmediateDiskIO, ThreadedDiskIO
from netstructer.streaming.received import ReceivedStream
from netstructer.streaming.saving import FileConsumer
from netstructer.streams.receipt import StreamReceipt

__all__ = [
    "FileConsumer",
    "IDiskIO",
    "ImmediateDiskIO",
    "ReceivedStream",
    "StreamReceipt",
    "ThreadedDiskIO",
]
