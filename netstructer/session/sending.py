# -*- test-case-name: tests.test_session -*-
"""
L{ValueSender}: the send side of a session core, where values become
records: the outgoing batch and its flush points, the values waiting for
the handshake, and the records of capabilities, all sealed in order into
the session's L{OutputQueue<netstructer.session.outgoing.OutputQueue>}.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from netstructer.channel import Channel
from netstructer.errors import BufferDataError, ChannelClosedError
from netstructer.session.config import BridgeConfig
from netstructer.session.outgoing import OutputQueue

__all__ = ["ValueSender"]

_LARGE = 64 * 1024
"""Values of at least this many bytes that a writer sends alone are sealed
into the channel's reused buffer (see L{ValueSender._sealLarge})."""


class ValueSender:
    """
    Seals values and records into the output queue, in the order they are
    sent.

    Small values wait in a batch, sealed into one record (one AEAD operation
    and one frame for all of them) when it is full, before any other record
    is sealed, and whenever L{flush} is called: the session core calls it
    before opening a received frame, the adapter at the end of the received
    data it is handling, or at the end of the turn of its loop in which a
    value joined an empty batch (L{sendValue} says when).

    @ivar valuesOut: Values sealed (batched values count once their batch
        is).
    @ivar bytesOut: Frame bytes of values sealed.
    @ivar lastValue: When a value was last sealed.
    @ivar receiving: Whether the adapter is handling received data, so that
        the batch will be flushed when it is done.
    @ivar peer: How the peer is named in messages.
    """

    __slots__ = (
        "_batch",
        "_batchLimit",
        "_batchSize",
        "_channel",
        "_config",
        "_encode",
        "_established",
        "_failed",
        "_now",
        "_out",
        "_pending",
        "_stopped",
        "bytesOut",
        "lastValue",
        "peer",
        "receiving",
        "valuesOut",
    )

    def __init__(
        self,
        channel: Channel,
        out: OutputQueue,
        config: BridgeConfig,
        now: Callable[[], float],
    ) -> None:
        """
        @param channel: Seals the records.
        @param out: Where sealed frames go.
        @param config: The limits of values waiting for the handshake.
        @param now: The clock.
        """
        self.valuesOut = 0
        self.bytesOut = 0
        self.lastValue = 0.0
        self.receiving = False
        self.peer = ""
        self._channel = channel
        self._out = out
        self._config = config
        self._now = now
        self._stopped: str | None = None
        self._failed = False
        self._established = False
        # A list: values wait here only before the handshake completes.
        self._pending: list[bytes] = []
        self._batch: list[bytes] = []
        self._batchSize = 0
        self._batchLimit = 0
        self._encode: Callable[[object], bytes] = channel.encoder.encode

    @property
    def batched(self) -> int:
        """
        Values waiting in the batch for a flush point.
        """
        return len(self._batch)

    @property
    def pendingValues(self) -> int:
        """
        Values sent before the handshake completed, waiting for it.
        """
        return len(self._pending)

    def stop(self, why: str, failed: bool = False) -> None:
        """
        No value or record may be sent from now on.

        @param why: The end of the message of the L{ChannelClosedError}
            raised to senders (C{"the session is closing"}).
        @param failed: Whether the session failed or ended, so that values
            still batched are dropped rather than sealed.
        """
        if self._stopped is None or failed:
            self._stopped = why
        if failed:
            self._failed = True

    def _refuse(self) -> ChannelClosedError:
        return ChannelClosedError(
            f"cannot send to {self.peer or 'an unconnected peer'}: {self._stopped}"
        )

    def established(self) -> None:
        """
        The handshake completed: values sent while it ran join the batch, in
        order.

        @raise BufferDataError: One of them is larger than the peer
            accepts; the session must fail.
        """
        channel = self._channel
        self._established = True
        self._batchLimit = channel.batchLimit
        self._encode = channel.encoder.encode
        pending = self._pending
        while pending:
            self._batchEncoded(pending[0])
            del pending[0]

    def sendValue(self, value: object) -> bool:
        """
        Send a value: encode it now (an L{EncodeError} is raised here), add
        it to the batch, or, when it is too large to share a record, seal it
        alone.  Before the handshake completes the value waits for it.

        @param value: A value of a type L{netstructer.values} carries.
        @return: Whether the adapter should flush at the end of the current
            turn of its loop: a value joined the batch while no received
            data is being handled.
        @raise EncodeError: The value cannot be encoded; nothing was sent.
        @raise BufferDataError: It is larger than the peer accepts, or too
            many values wait for the handshake; nothing was sent.
        @raise ChannelClosedError: The session is closing or has ended.
        """
        if self._stopped is not None:
            raise self._refuse()
        if self._established:
            if type(value) is bytes and len(value) > self._batchLimit:
                self._sealLarge(value)
                return False
            encoded = self._encode(value)
            size = len(encoded)
            if size > self._batchLimit - self._batchSize:
                self._batchEncoded(encoded)
                return not self.receiving
            # The common case, inline: the value joins the batch.
            self._batch.append(encoded)
            self._batchSize += size
            return not self.receiving
        self._sendPending(value)
        return False

    def _sealLarge(self, value: bytes) -> None:
        """
        Seal a large value alone, into the channel's reused buffer (no fresh
        buffer per value: see L{OutputQueue.frameBorrowed}).
        """
        if self._batch:
            self.flush()
        out = self._out
        out.settleBorrowed()
        framed = self._channel.sealBuffer(value, framed=True)
        out.frameBorrowed(framed)
        self.valuesOut += 1
        self.bytesOut += len(framed) - 4
        self.lastValue = self._now()

    def _sendPending(self, value: object) -> None:
        encoded = self._channel.encodeValue(value)
        config = self._config
        if len(encoded) > config.limits.maxSize:
            raise BufferDataError(
                f"the value encodes to {len(encoded)} bytes, more than the "
                f"{config.limits.maxSize} this side accepts; send it in smaller parts"
            )
        if len(self._pending) >= config.maxPendingValues:
            raise BufferDataError(
                f"{config.maxPendingValues} values already wait for the handshake "
                f"with {self.peer or 'the server'}; wait for it before sending more"
            )
        self._pending.append(encoded)

    def sendValueAlone(self, value: object) -> None:
        """
        Send a value in a record of its own, now (for a writer that writes
        each value as it is sent, as the blocking link does).

        @raise EncodeError: As for L{sendValue}.
        @raise BufferDataError: It is larger than the peer accepts.
        @raise ChannelClosedError: As for L{sendValue}.
        """
        if self._stopped is not None:
            raise self._refuse()
        if type(value) is bytes and len(value) > _LARGE:
            self._sealLarge(value)
            return
        if self._batch:
            self.flush()
        self._sealed(self._channel.sendValue(value), 1)

    def _batchEncoded(self, encoded: bytes) -> None:
        """
        Add an encoded value to the batch, sealing the batch first if the
        value does not fit in it, and the value alone if it is too large to
        share a record.

        @raise BufferDataError: The value is larger than the peer accepts.
        """
        size = len(encoded)
        if size > self._batchLimit:
            # Records are sealed in the order they are written (their nonces
            # count up), so the batch goes first.
            if self._batch:
                self.flush()
            self._sealed(self._channel.sendEncoded(encoded), 1)
            return
        if self._batchSize + size > self._batchLimit:
            self.flush()
        self._batch.append(encoded)
        self._batchSize += size

    def flush(self) -> None:
        """
        Seal the batched values into one record, now.  Once sending has
        stopped because the session failed or ended, batched values are
        dropped: like a failed transport's unsent writes, they are lost, and
        the session's close reason says why.
        """
        frame = self.sealBatch()
        if frame is not None:
            self._out.frame(frame)

    def sealBatch(self) -> bytes | None:
        """
        Seal the batched values into one record and return its frame, for
        an adapter that writes it at once, when nothing else is queued
        before it (L{flush} queues it).

        @return: The frame payload, or L{None} if no value is batched (or
            sending stopped because the session failed: see L{flush}).
        """
        batch = self._batch
        if not batch:
            return None
        self._batch = []
        self._batchSize = 0
        if self._failed:
            return None
        frame = self._channel.sendEncodedValues(batch)
        self.valuesOut += len(batch)
        self.bytesOut += len(frame)
        self.lastValue = self._now()
        return frame

    def drop(self) -> None:
        """
        Forget the batch: the transport is gone.
        """
        self._batch = []
        self._batchSize = 0

    def _sealed(self, frame: bytes | memoryview, count: int) -> None:
        self._out.frame(frame)
        self.valuesOut += count
        self.bytesOut += len(frame)
        self.lastValue = self._now()

    def sendRecord(self, recordType: int, body: bytes) -> None:
        """
        Send one extension record, after every value sent before it.

        @raise PeerVersionError: The peer's version lacks the record's
            capability.
        @raise ChannelClosedError: The session is not established, closing
            or ended.
        """
        if self._stopped is not None:
            raise self._refuse()
        if self._batch:
            self.flush()
        self._out.frame(self._channel.sendRecord(recordType, body))

    def sendRecordParts(self, recordType: int, parts: Sequence[bytes | memoryview]) -> None:
        """
        As L{sendRecord}, for a body in parts.

        @raise PeerVersionError: As for L{sendRecord}.
        @raise ChannelClosedError: As for L{sendRecord}.
        """
        if self._stopped is not None:
            raise self._refuse()
        if len(parts) != 2:
            self.sendRecord(recordType, b"".join(parts))
            return
        if self._batch:
            self.flush()
        head, payload = parts
        # Sealed into the channel's reused buffer, like a large value: no
        # fresh buffer, and no copy of the payload but the cipher's.
        out = self._out
        out.settleBorrowed()
        out.frameBorrowed(self._channel.sealRecordParts(recordType, bytes(head), payload))

    def sendControl(self, seal: Callable[[], bytes]) -> None:
        """
        Seal and queue a control record (a ping, this side's close) after
        the batch: the batch is sealed first, since records are opened in
        the order they are sealed.

        @param seal: Seals the record (C{channel.ping}, say) and returns the
            frame.
        """
        if self._batch:
            self.flush()
        self._out.frame(seal())
