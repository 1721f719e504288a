# -*- test-case-name: tests.test_cluster_messages -*-
"""
What the envelopes of a cluster carry (L{netstructer.cluster.envelope}),
encoded by NetStructer's own codec (L{netstructer.values}) and checked
field by field when read.  Sans-IO.

A link envelope (L{Kind.LINK<netstructer.cluster.envelope.Kind.LINK>}), from
one node to another, carries a batch: C{[node, items]}, the sending node's
name and a list of items, each a list whose first element says what it
is::

    [DELIVER, sender, recipient, value]   a value sent to a name (sendTo)
    [PUBLISH, sender, topic, value]       a value published to a topic
    [VALUE, sessionId, value]             a value for one session (sendBuffer)
    [RESULT, acknowledged, failures]      the recipient's answer to batches

C{value} is a value already encoded by the codec (and checked to decode
by the node the sender's session is on); C{sender} is the sending session's
name, or L{None} for a server.  A result acknowledges every batch of the
recipient's with a sequence number up to C{acknowledged} and lists, for
the items that failed, C{[sequence, index, code, op, name, message, count]}
(C{code} a L{RelayErrorCode<netstructer.relaywire.RelayErrorCode>}, C{op} a
L{RelayOp<netstructer.relaywire.RelayOp>}).

An event envelope (L{Kind.EVENT<netstructer.cluster.envelope.Kind.EVENT>}),
to every node, carries one update of a node's part of the directory::

    [node, version, reset, left, opened, closed, subscribed, unsubscribed]

with C{opened} a list of C{[sessionId, descriptor]}.  A descriptor is
C{[name, host, key, openedAt]}: what the directory in Redis holds for a
session (in clear: names, addresses and times, never values).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

from netstructer.errors import DecodeError, NoSuchSession, RecipientBusy, RelayError, RelayRefused
from netstructer.relay import RelayErrorCode, RelayOp
from netstructer.values import Decoder, Encoder, Limits

__all__ = [
    "Delivery",
    "DirectoryEvent",
    "Item",
    "ItemFailure",
    "MalformedMessage",
    "Result",
    "SessionDescriptor",
    "SessionValue",
    "decodeBatch",
    "decodeDescriptor",
    "decodeEvent",
    "encodeBatch",
    "encodeDescriptor",
    "encodeEvent",
    "errorOf",
    "failureOf",
]


class Code(enum.IntEnum):
    """
    What an item of a batch is.
    """

    DELIVER = 1
    """A value sent to a session by name (a L{Delivery})."""
    PUBLISH = 2
    """A value published to a topic (a L{Delivery})."""
    VALUE = 3
    """A value for one session, by id (a L{SessionValue})."""
    RESULT = 4
    """The recipient's answer to the sender's batches (a L{Result})."""


# Plain ints: comparing enum members costs more, once per value.
_DELIVER, _PUBLISH, _VALUE, _RESULT = (int(code) for code in Code)


class MalformedMessage(DecodeError):
    """
    An authenticated cluster message does not follow this module's layout:
    a node of another version, or a bug.  It is dropped and logged.
    """


@dataclass(frozen=True, slots=True)
class SessionDescriptor:
    """
    A session of the cluster, as the directory describes it.

    @ivar node: The name of the node it is connected to.
    @ivar sessionId: Its id, unique on its node.
    @ivar name: The name of the key it authenticated with, or L{None}.
    @ivar host: The client's IP address (canonical form).
    @ivar key: The client's C{"ip:port"} (C{"[ip]:port"} for IPv6).
    @ivar openedAt: When its handshake completed, on its node's wall clock
        (seconds since the epoch).
    """

    node: str
    sessionId: str
    name: str | None
    host: str
    key: str
    openedAt: float


@dataclass(frozen=True, slots=True)
class Delivery:
    """
    A relayed value: to a name (C{topic} is L{None}) or published to a
    topic (C{recipient} is L{None}).

    @ivar sender: The sending session's name, or L{None} for a server.
    @ivar recipient: The name of the session it is sent to, or L{None}.
    @ivar topic: The topic it is published to, or L{None}.
    @ivar value: The value, encoded by the codec.
    """

    sender: str | None
    recipient: str | None
    topic: str | None
    value: bytes


@dataclass(frozen=True, slots=True)
class SessionValue:
    """
    A value for one session, by id.

    @ivar sessionId: The session's id, on the node the batch is sent to.
    @ivar value: The value, encoded by the codec.
    """

    sessionId: str
    value: bytes


@dataclass(frozen=True, slots=True)
class ItemFailure:
    """
    One failed item of a batch.

    @ivar sequence: The sequence number of the envelope that carried the
        batch.
    @ivar index: The item's position in the batch's items (from 0).
    @ivar error: Why it failed.
    @ivar op: The request that failed (a value sent or published).
    """

    sequence: int
    index: int
    error: RelayError
    op: RelayOp


@dataclass(frozen=True, slots=True)
class Result:
    """
    The answer to batches.

    @ivar acknowledged: A sequence number: every batch of the result's
        recipient whose envelope's number is up to it is acknowledged.
    @ivar failures: The items of those batches that failed.
    """

    acknowledged: int
    failures: list[ItemFailure]


Item = Delivery | SessionValue | Result
"""An item of a batch, as L{decodeBatch} reads it."""


@dataclass(slots=True)
class DirectoryEvent:
    """
    One update of a node's part of the directory.

    @ivar node: The name of the node whose part it updates.
    @ivar version: The part's version after the update: one above the
        last update's, so that a missed update shows.
    @ivar reset: Whether it replaces the whole part (C{opened} and
        C{subscribed} then list everything in it) rather than changing it.
    @ivar left: Whether the node left the cluster (its part is dropped).
    @ivar opened: The sessions opened, their encoded descriptors by id.
    @ivar closed: The ids of the sessions closed.
    @ivar subscribed: The topics the node now has subscribers to.
    @ivar unsubscribed: The topics the node no longer has subscribers to.
    """

    node: str
    version: int
    reset: bool = False
    left: bool = False
    opened: dict[str, bytes] = field(default_factory=dict)
    closed: list[str] = field(default_factory=list)
    subscribed: list[str] = field(default_factory=list)
    unsubscribed: list[str] = field(default_factory=list)


_ERROR_CLASSES: dict[RelayErrorCode, type[RelayError]] = {
    RelayErrorCode.NO_SUCH_SESSION: NoSuchSession,
    RelayErrorCode.REFUSED: RelayRefused,
    RelayErrorCode.BUSY: RecipientBusy,
}
_ERROR_CODES = {cls: code for code, cls in _ERROR_CLASSES.items()}


def _check(condition: bool, what: str) -> None:
    if not condition:
        raise MalformedMessage(f"a cluster message is malformed: {what}")


def _list(value: object, length: int | None, what: str) -> list[Any]:
    if type(value) is not list or (length is not None and len(value) != length):
        size = "a list" if length is None else f"a list of {length}"
        raise MalformedMessage(f"a cluster message is malformed: {what} is not {size}")
    return value


def _isText(value: object) -> bool:
    return type(value) is str


def _isOptionalText(value: object) -> bool:
    return value is None or type(value) is str


def _isCount(value: object) -> bool:
    return type(value) is int and value >= 0


def encodeBatch(encoder: Encoder, node: str, items: list[list[object]]) -> bytes:
    """
    @param node: The sending node's name.
    @param items: Items made by L{deliverItem}, L{publishItem},
        L{valueItem} and L{resultItem}.
    @return: A link envelope's message.
    """
    return encoder.encode([node, items])


def deliverItem(sender: str | None, recipient: str, value: bytes) -> list[object]:
    """
    @return: The item relaying C{value} to the session named C{recipient}.
    """
    return [_DELIVER, sender, recipient, value]


def publishItem(sender: str | None, topic: str, value: bytes) -> list[object]:
    """
    @return: The item publishing C{value} to C{topic}.
    """
    return [_PUBLISH, sender, topic, value]


def valueItem(sessionId: str, value: bytes) -> list[object]:
    """
    @return: The item sending C{value} to the session C{sessionId}.
    """
    return [_VALUE, sessionId, value]


def failureOf(sequence: int, index: int, error: RelayError, op: RelayOp) -> list[object]:
    """
    @return: A failure, as a result lists it.
    """
    message = str(error.args[0]) if error.args else ""
    return [
        sequence,
        index,
        _ERROR_CODES[type(error)].value,
        op.value,
        error.name,
        message,
        error.count,
    ]


def resultItem(acknowledged: int, failures: list[list[object]]) -> list[object]:
    """
    @return: The item acknowledging batches up to C{acknowledged}.
    """
    return [_RESULT, acknowledged, failures]


def errorOf(code: int, name: str, message: str, count: int = 1) -> RelayError:
    """
    @return: The relay error of a code.
    """
    return _ERROR_CLASSES[RelayErrorCode(code)](message, name, count)


def _decodeFailure(raw: object) -> ItemFailure:
    sequence, index, code, op, name, message, count = _list(raw, 7, "a failure")
    _check(_isCount(sequence) and _isCount(index), "a failure's position is not a count")
    _check(code in RelayErrorCode._value2member_map_, "a failure's code is unknown")
    _check(op in RelayOp._value2member_map_, "a failure's request is unknown")
    _check(_isText(name) and _isText(message), "a failure's name or message is not text")
    _check(_isCount(count) and count >= 1, "a failure's count is not positive")
    return ItemFailure(sequence, index, errorOf(code, name, message, count), RelayOp(op))


def _decodeItem(raw: object) -> Item:
    raw = _list(raw, None, "an item")
    _check(len(raw) >= 3, "an item is too short")
    code = raw[0]
    if code in (_DELIVER, _PUBLISH):
        _check(len(raw) == 4, "a delivery is not a list of 4")
        _, sender, target, value = raw
        _check(_isOptionalText(sender) and _isText(target), "a delivery's names are not text")
        _check(type(value) is bytes, "a delivery's value is not bytes")
        if code == _DELIVER:
            return Delivery(sender, target, None, value)
        return Delivery(sender, None, target, value)
    if code == _VALUE:
        _check(len(raw) == 3, "a session value is not a list of 3")
        _, sessionId, value = raw
        _check(_isText(sessionId) and type(value) is bytes, "a session value is malformed")
        return SessionValue(sessionId, value)
    if code == _RESULT:
        _, acknowledged, failures = raw
        _check(_isCount(acknowledged), "a result's acknowledgement is not a count")
        failures = _list(failures, None, "a result's failures")
        return Result(acknowledged, [_decodeFailure(each) for each in failures])
    raise MalformedMessage(f"a cluster message holds an item of unknown kind {code!r}")


def decodeBatch(decoder: Decoder, message: bytes) -> tuple[str, list[Item]]:
    """
    @return: The sending node's name and the items of a link envelope's
        message.
    @raise MalformedMessage: It does not follow the layout.
    @raise DecodeError: It does not decode.
    """
    node, items = _list(decoder.decode(message), 2, "a batch")
    _check(_isText(node), "a batch's node is not text")
    items = _list(items, None, "a batch's items")
    return str(node), [_decodeItem(each) for each in items]


def encodeEvent(encoder: Encoder, event: DirectoryEvent) -> bytes:
    """
    @return: An event envelope's message.
    """
    return encoder.encode(
        [
            event.node,
            event.version,
            event.reset,
            event.left,
            [[sessionId, descriptor] for sessionId, descriptor in event.opened.items()],
            event.closed,
            event.subscribed,
            event.unsubscribed,
        ]
    )


def decodeEvent(decoder: Decoder, message: bytes) -> DirectoryEvent:
    """
    @return: The event of an event envelope's message.
    @raise MalformedMessage: It does not follow the layout.
    @raise DecodeError: It does not decode.
    """
    raw = _list(decoder.decode(message), 8, "an event")
    node, version, reset, left, opened, closed, subscribed, unsubscribed = raw
    _check(_isText(node) and _isCount(version), "an event's node or version is malformed")
    _check(type(reset) is bool and type(left) is bool, "an event's flags are not booleans")
    for each in (opened, closed, subscribed, unsubscribed):
        _check(type(each) is list, "an event's changes are not lists")
    openedById: dict[str, bytes] = {}
    for entry in opened:
        _check(
            type(entry) is list
            and len(entry) == 2
            and _isText(entry[0])
            and type(entry[1]) is bytes,
            "an opened session is malformed",
        )
        openedById[entry[0]] = entry[1]
    for each in (*closed, *subscribed, *unsubscribed):
        _check(_isText(each), "an event's session id or topic is not text")
    return DirectoryEvent(
        node, version, reset, left, openedById, list(closed), list(subscribed), list(unsubscribed)
    )


def encodeDescriptor(
    encoder: Encoder, name: str | None, host: str, key: str, openedAt: float
) -> bytes:
    """
    @return: A session's descriptor, as the directory holds it.
    """
    return encoder.encode([name, host, key, float(openedAt)])


def decodeDescriptor(
    decoder: Decoder, node: str, sessionId: str, encoded: bytes
) -> SessionDescriptor:
    """
    @return: The descriptor of the session C{sessionId} of C{node}.
    @raise MalformedMessage: It does not follow the layout.
    @raise DecodeError: It does not decode.
    """
    name, host, key, openedAt = _list(decoder.decode(encoded), 4, "a session descriptor")
    _check(_isOptionalText(name) and _isText(host) and _isText(key), "a descriptor's text")
    _check(type(openedAt) is float, "a descriptor's time is not a number")
    return SessionDescriptor(node, sessionId, name, host, key, openedAt)


def batchLimits(maxValueSize: int) -> Limits:
    """
    @return: The limits a batch is decoded with, given the largest value
        it may carry.
    """
    return Limits(maxSize=maxValueSize + 1024 * 1024)
