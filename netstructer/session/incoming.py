# -*- test-case-name: tests.test_session -*-
"""
The receive side of a session that the adapters share: the queue of values
waiting for the application, with its bounds and the decisions to pause and
resume reading from the peer.
"""

from __future__ import annotations

from collections import deque

__all__ = ["ReceiveQueue"]


class ReceiveQueue:
    """
    Received values waiting for the application (C{recvBuffer}), bounded in
    values and in encoded bytes.

    Reading from the peer pauses once either bound is reached and resumes
    only once the application has taken the queue down to half of both
    bounds, so that a reader keeping just up does not flip the transport
    between paused and reading on every value.

    Each value is kept with its encoded size (for a value that came in a
    batch, its share of the batch's bytes) and whether it came in a batch,
    whose values' own sizes are known only on average.

    @ivar maxValues: The bound in values.
    @ivar maxBytes: The bound in encoded bytes.
    @ivar queuedBytes: The encoded bytes queued.
    """

    __slots__ = ("_values", "maxBytes", "maxValues", "queuedBytes")

    def __init__(self, maxValues: int, maxBytes: int) -> None:
        """
        @param maxValues: The bound in values; at least 1.
        @param maxBytes: The bound in encoded bytes; at least 1.
        @raise ValueError: A bound is below 1.
        """
        if maxValues < 1 or maxBytes < 1:
            raise ValueError("the receive queue's bounds must be at least 1")
        self.maxValues = maxValues
        self.maxBytes = maxBytes
        self.queuedBytes = 0
        self._values: deque[tuple[object, int, bool]] = deque()

    def __len__(self) -> int:
        return len(self._values)

    def __bool__(self) -> bool:
        return bool(self._values)

    def push(self, value: object, size: int, batched: bool = False) -> bool:
        """
        Queue a value.

        @param value: The value.
        @param size: Its encoded size (or its share of its batch's).
        @param batched: Whether it came in a batch.
        @return: Whether the queue is now at or over a bound: reading from
            the peer should pause.
        """
        self._values.append((value, size, batched))
        self.queuedBytes += size
        return len(self._values) >= self.maxValues or self.queuedBytes >= self.maxBytes

    def extend(self, values: list[object], share: int) -> None:
        """
        Queue the values of one batch, each with its share of the batch's
        bytes, whatever the bounds (a reader that takes values only when
        asked, like the blocking link, bounds what it reads instead).

        @param values: The values, in order.
        @param share: Each one's share of the batch's bytes.
        """
        self._values.extend((value, share, True) for value in values)
        self.queuedBytes += share * len(values)

    def pop(self) -> tuple[object, int, bool]:
        """
        Take the oldest value.

        @return: The value, its size, and whether it came in a batch.
        @raise IndexError: The queue is empty.
        """
        entry = self._values.popleft()
        self.queuedBytes -= entry[1]
        return entry

    @property
    def canResume(self) -> bool:
        """
        Whether a paused reader may resume: the queue is down to half of
        both bounds.
        """
        return len(self._values) <= self.maxValues // 2 and self.queuedBytes <= self.maxBytes // 2

    def clear(self) -> None:
        """
        Drop every queued value.
        """
        self._values.clear()
        self.queuedBytes = 0


class Delivery:
    """
    What reaches the application of one session: whether delivery is
    paused, the values of a record held back when it paused (or the session
    ended) in the middle of that record, and the receive queue.

    @ivar queue: The values waiting for the application's C{recvBuffer}.
    @ivar paused: Whether the application paused receiving.
    @ivar share: The encoded size of the value being delivered, or each
        held value's: the values of a batch share its bytes.
    """

    __slots__ = ("_held", "paused", "queue", "share")

    def __init__(self, maxValues: int, maxBytes: int) -> None:
        """
        @param maxValues: The receive queue's bound in values.
        @param maxBytes: Its bound in encoded bytes.
        """
        self.queue = ReceiveQueue(maxValues, maxBytes)
        self.paused = False
        self.share = 0
        self._held: list[object] = []

    def pause(self) -> bool:
        """
        @return: Whether delivery was running (and now is paused).
        """
        if self.paused:
            return False
        self.paused = True
        return True

    def resume(self) -> bool:
        """
        @return: Whether delivery was paused (and now runs).
        """
        if not self.paused:
            return False
        self.paused = False
        return True

    def hold(self, values: list[object], index: int, share: int) -> int:
        """
        The adapter stopped delivering the values of a record at C{index}:
        keep the rest for L{takeHeld}.

        @param values: The record's values.
        @param index: The first value not delivered.
        @param share: Each value's share of the record's bytes.
        @return: How many values are held.
        """
        self._held = values[index:]
        self.share = share
        return len(self._held)

    def takeHeld(self) -> list[object]:
        """
        @return: The values held back by L{hold}, to deliver before any
            frame; none are held afterwards.
        """
        held, self._held = self._held, []
        return held

    @property
    def holding(self) -> bool:
        """
        Whether values are held back.
        """
        return bool(self._held)
