# -*- test-case-name: tests.test_conformance -*-
"""
The conformance kit's cases for values: VALUES records (section 5.8) and
the value encoding (section 6 of C{docs/protocol.rst}).

The values are encoded here by hand, with plain C{msgpack} and the
extension codes of section 6.1, and the echoes decoded the same way, so
that the kit checks the server against the document rather than against
L{netstructer.values}.  The cases of limits assume the document's default
limits (section 6.5).  Cases that need the server to send values back need
an echo target; the others (values the server must refuse) run anywhere.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence

import msgpack

from netstructer.conformance._core import (
    NotApplicable,
    RawPeer,
    Target,
    case,
    collectRecords,
    framed,
    refusedAfterHandshake,
    sealPlaintext,
)

_MARKERS: dict[type, bytes] = {
    tuple: b"\xc7\x00\x01",
    set: b"\xc7\x00\x02",
    frozenset: b"\xc7\x00\x03",
}
_MARKER_TYPES = {1: tuple, 2: set, 3: frozenset}
_INT64 = range(-(2**63), 2**64)


def _header(count: int, fix: int, family: int) -> bytes:
    if count < 16:
        return bytes((fix | count,))
    if count < 2**16:
        return struct.pack(">BH", family, count)
    return struct.pack(">BI", family + 1, count)


def _bigInt(value: int) -> bytes:
    # The sign bit needs a bit of its own: 2**127 takes 17 bytes, -2**127 16.
    length = ((value if value >= 0 else ~value).bit_length() + 8) // 8
    payload = value.to_bytes(length, "big", signed=True)
    return bytes(msgpack.packb(msgpack.ExtType(6, payload)))


def encodeByHand(value: object) -> bytes:
    """
    Encode C{value} as section 6.1 of the document says, with plain
    C{msgpack} for the scalars.

    @param value: A value of one of the types of section 6.1.
    @return: Its encoding.
    @raise TypeError: Another type.
    """
    kind = type(value)
    if value is None or kind in (bool, str, bytes):
        return bytes(msgpack.packb(value, use_bin_type=True))
    if kind is int and isinstance(value, int):
        if value in _INT64:
            return bytes(msgpack.packb(value))
        return _bigInt(value)
    if kind is float:
        return struct.pack(">Bd", 0xCB, value)
    if kind is complex and isinstance(value, complex):
        payload = struct.pack(">dd", value.real, value.imag)
        return bytes(msgpack.packb(msgpack.ExtType(5, payload)))
    if kind is bytearray and isinstance(value, bytearray):
        if not value:
            return b"\xc7\x00\x04"
        return bytes(msgpack.packb(msgpack.ExtType(4, bytes(value))))
    if kind is list and isinstance(value, list):
        return _header(len(value), 0x90, 0xDC) + b"".join(encodeByHand(v) for v in value)
    if isinstance(value, (tuple, set, frozenset)) and kind in _MARKERS:
        return (
            _header(len(value) + 1, 0x90, 0xDC)
            + _MARKERS[kind]
            + b"".join(encodeByHand(v) for v in value)
        )
    if kind is dict and isinstance(value, dict):
        return _header(len(value), 0x80, 0xDE) + b"".join(
            encodeByHand(k) + encodeByHand(v) for k, v in value.items()
        )
    raise TypeError(f"section 6.1 has no encoding for {kind.__name__}")


def _extension(code: int, data: bytes) -> object:
    if code in _MARKER_TYPES:
        return msgpack.ExtType(code, data)
    if code == 4:
        return bytearray(data)
    if code == 5:
        real, imag = struct.unpack(">dd", data)
        return complex(real, imag)
    if code == 6:
        return int.from_bytes(data, "big", signed=True)
    raise ValueError(f"extension code {code}")


def _convert(item: object) -> object:
    if isinstance(item, tuple) and not isinstance(item, msgpack.ExtType):
        if item and isinstance(item[0], msgpack.ExtType) and item[0].code in _MARKER_TYPES:
            return _MARKER_TYPES[item[0].code](_convert(i) for i in item[1:])
        return [_convert(i) for i in item]
    if isinstance(item, dict):
        return {_convertKey(k): _convert(v) for k, v in item.items()}
    return item


def _convertKey(key: object) -> object:
    converted = _convert(key)
    if isinstance(converted, list):
        raise ValueError("a list as a key")
    return converted


def decodeByHand(encoding: bytes) -> object:
    """
    Decode an encoding as section 6.1 of the document says, with plain
    C{msgpack}.

    @param encoding: One encoded value.
    @return: The value.
    @raise ValueError: It is not one.
    """
    try:
        raw = msgpack.unpackb(
            encoding,
            raw=False,
            use_list=False,
            strict_map_key=False,
            ext_hook=_extension,
        )
    except (msgpack.UnpackException, msgpack.ExtraData, ValueError, TypeError) as e:
        raise ValueError(f"not one encoded value: {e}") from e
    return _convert(raw)


def same(a: object, b: object) -> bool:
    """
    @return: Whether C{a} and C{b} are the same value of the same types all
        the way down (floats compared by their bits, nan equal to nan).
    """
    if type(a) is not type(b):
        return False
    if isinstance(a, float) and isinstance(b, float):
        return (math.isnan(a) and math.isnan(b)) or struct.pack(">d", a) == struct.pack(">d", b)
    if isinstance(a, complex) and isinstance(b, complex):
        return same(a.real, b.real) and same(a.imag, b.imag)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return len(a) == len(b) and all(
            same(ka, kb) and same(va, vb)
            for (ka, va), (kb, vb) in zip(a.items(), b.items(), strict=True)
        )
    if isinstance(a, (set, frozenset)) and isinstance(b, (set, frozenset)):
        return len(a) == len(b) and all(any(same(x, y) for y in b if y == x) for x in a)
    return a == b


def _echoTarget(target: Target) -> None:
    if not target.echo:
        raise NotApplicable("needs an echo target (the server sends back each value)")


def _echo(
    target: Target, bodies: Sequence[bytes], batch: bool = False
) -> tuple[list[bytes], str | None]:
    """
    Send each encoding in C{bodies} in a VALUE record of its own (or all in
    one VALUES record), and read the echoes.

    @return: The encodings echoed, and what went wrong, if anything.
    """
    peer = RawPeer(target)
    try:
        channel = peer.handshake(target)
        if batch:
            body = _header(len(bodies), 0x90, 0xDC) + b"".join(bodies)
            payloads = [sealPlaintext(channel, b"\x06" + body)]
        else:
            payloads = [sealPlaintext(channel, b"\x01" + body) for body in bodies]
        echoed: list[bytes] = []
        # A few records per write, so that an echo server that stops
        # reading while its writes drain cannot deadlock the kit.
        for start in range(0, len(payloads), 16):
            peer.sendRaw(framed(*payloads[start : start + 16]))
            count = len(bodies) if batch else len(payloads[start : start + 16])
            encodings, _, problem = collectRecords(peer, channel, values=count)
            echoed.extend(encodings)
            if problem is not None:
                return echoed, problem
        return echoed, None
    finally:
        peer.close()


def _echoValues(target: Target, values: Sequence[object], batch: bool = False) -> tuple[bool, str]:
    """
    The values, encoded by hand, come back as themselves.
    """
    _echoTarget(target)
    bodies = [encodeByHand(v) for v in values]
    echoed, problem = _echo(target, bodies, batch)
    if problem is not None:
        return False, f"after {len(echoed)} of {len(values)} echoes: {problem}"
    for value, encoding in zip(values, echoed, strict=True):
        try:
            back = decodeByHand(encoding)
        except ValueError as e:
            return False, f"the echo of {_short(value)} does not decode: {e}"
        if not same(back, value):
            return False, f"{_short(value)} came back as {_short(back)}"
    return True, f"{len(values)} values came back as themselves"


def _echoForms(
    target: Target, rows: Sequence[tuple[str, object]], canonical: bool
) -> tuple[bool, str]:
    """
    Each encoding of C{rows} (hex) is accepted and its value echoed: the
    echo decodes to the value of the row and, if C{canonical}, is the
    row's encoding itself; otherwise the encoding section 6.1 gives the
    value.
    """
    _echoTarget(target)
    bodies = [bytes.fromhex(hexed) for hexed, _ in rows]
    echoed, problem = _echo(target, bodies)
    if problem is not None:
        return False, f"after {len(echoed)} of {len(rows)} echoes: {problem}"
    for (hexed, value), body, encoding in zip(rows, bodies, echoed, strict=True):
        expected = body if canonical else encodeByHand(value)
        if encoding != expected:
            return False, f"{hexed} came back as {encoding.hex()}, not {expected.hex()}"
        try:
            back = decodeByHand(encoding)
        except ValueError as e:
            return False, f"the echo of {hexed} does not decode: {e}"
        if not same(back, value):
            return False, f"{hexed} came back as {_short(back)}, not {_short(value)}"
    return True, f"{len(rows)} encodings of the document were echoed as the document says"


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _refusedValue(target: Target, body: bytes, why: str) -> tuple[bool, str]:
    return refusedAfterHandshake(
        target,
        lambda channel: [sealPlaintext(channel, b"\x01" + body)],
        f"a VALUE holding {why} ({body[:12].hex()}{'...' if len(body) > 12 else ''})",
    )


def _refusedValues(target: Target, body: bytes, why: str) -> tuple[bool, str]:
    return refusedAfterHandshake(
        target,
        lambda channel: [sealPlaintext(channel, b"\x06" + body)],
        f"a VALUES record {why}",
    )


# 5.8: several values in one record.


@case("5.8.1", "5.8", "a VALUES record of two values is accepted, each value delivered in order")
def _valuesTwo(target: Target) -> tuple[bool, str]:
    return _echoValues(target, ["first", (1, 2)], batch=True)


@case(
    "5.8.2",
    "5.8",
    "a VALUES record of 16 384 values (the most) is accepted, each delivered in order",
)
def _valuesMany(target: Target) -> tuple[bool, str]:
    return _echoValues(target, list(range(16384)), batch=True)


@case("5.8.3", "5.8", "a VALUES record with an array 16 header for two values is accepted")
def _valuesArray16(target: Target) -> tuple[bool, str]:
    _echoTarget(target)
    return _sendValuesBody(target, b"\xdc\x00\x02\xa1a\xa1b", [b"\xa1a", b"\xa1b"])


@case("5.8.4", "5.8", "a VALUES record with an array 32 header for two values is accepted")
def _valuesArray32(target: Target) -> tuple[bool, str]:
    _echoTarget(target)
    return _sendValuesBody(target, b"\xdd\x00\x00\x00\x02\x01\x02", [b"\x01", b"\x02"])


def _sendValuesBody(target: Target, body: bytes, expected: list[bytes]) -> tuple[bool, str]:
    peer = RawPeer(target)
    try:
        channel = peer.handshake(target)
        peer.send(sealPlaintext(channel, b"\x06" + body))
        echoed, _, problem = collectRecords(peer, channel, values=len(expected))
        if problem is not None:
            return False, f"after the VALUES record {body[:8].hex()}: {problem}"
        if echoed != expected:
            return (
                False,
                f"echoed {[e[:16].hex() for e in echoed]}, not {[e[:16].hex() for e in expected]}",
            )
        return True, f"the VALUES record {body[:8].hex()} was accepted and its values echoed"
    finally:
        peer.close()


@case("5.8.5", "5.8", "a VALUES record of one value fails the connection")
def _valuesOne(target: Target) -> tuple[bool, str]:
    return _refusedValues(target, b"\x91\xa3one", "of one value")


@case("5.8.6", "5.8", "a VALUES record of an empty array fails the connection")
def _valuesNone(target: Target) -> tuple[bool, str]:
    return _refusedValues(target, b"\x90", "of an empty array")


@case("5.8.7", "5.8", "a VALUES record with an empty body fails the connection")
def _valuesEmpty(target: Target) -> tuple[bool, str]:
    return _refusedValues(target, b"", "with an empty body")


@case("5.8.8", "5.8", "a VALUES record of 16 385 values fails the connection")
def _valuesTooMany(target: Target) -> tuple[bool, str]:
    return _refusedValues(target, b"\xdc\x40\x01" + b"\xc0" * 16385, "of 16 385 values")


@case(
    "5.8.9", "5.8", "a VALUES record of 65 537 bytes fails the connection, whatever the server's M"
)
def _valuesTooLong(target: Target) -> tuple[bool, str]:
    # Two values: a bin 32 and a nil, 65 537 bytes in all.
    body = b"\x92\xc6" + struct.pack(">I", 65537 - 7) + bytes(65537 - 7) + b"\xc0"
    return _refusedValues(target, body, "of 65 537 bytes")


@case("5.8.10", "5.8", "a VALUES record of exactly 65 536 bytes is accepted")
def _valuesLongest(target: Target) -> tuple[bool, str]:
    _echoTarget(target)
    first = b"\xc5" + struct.pack(">H", 65536 - 5) + bytes(65536 - 5)
    body = b"\x92" + first + b"\xc0"
    return _sendValuesBody(target, body, [first, b"\xc0"])


@case(
    "5.8.11", "5.8", "a VALUES record whose array starts with a tuple marker fails the connection"
)
def _valuesMarker(target: Target) -> tuple[bool, str]:
    return _refusedValues(target, b"\x93\xc7\x00\x01\x01\x02", "starting with a marker")


@case(
    "5.8.12",
    "5.8",
    "a VALUES record with one invalid value fails the connection, delivering none of it",
)
def _valuesOneBad(target: Target) -> tuple[bool, str]:
    return _refusedValues(target, b"\x93\xa1a\xa1b\xc1", "whose third value is the byte c1")


@case("5.8.13", "5.8", "a VALUES record with bytes after its array fails the connection")
def _valuesTrailing(target: Target) -> tuple[bool, str]:
    return _refusedValues(target, b"\x92\x01\x02\x03", "with a byte after its array")


def _nested(depth: int) -> object:
    value: object = 0
    for _ in range(depth):
        value = [value]
    return value


@case(
    "5.8.14",
    "5.8, 6.5",
    "in a VALUES record depth counts from each value: a value of depth 64 is accepted",
)
def _valuesDepth(target: Target) -> tuple[bool, str]:
    return _echoValues(target, [_nested(64), "next"], batch=True)


@case("5.8.15", "5.8, 6.5", "a VALUES record holding a value of depth 65 fails the connection")
def _valuesTooDeep(target: Target) -> tuple[bool, str]:
    body = b"\x92" + encodeByHand(_nested(65)) + b"\xc0"
    return _refusedValues(target, body, "holding a value of depth 65")


@case(
    "5.8.16", "5.8", "values of a VALUES record are delivered before those of a later VALUE record"
)
def _valuesThenValue(target: Target) -> tuple[bool, str]:
    _echoTarget(target)
    peer = RawPeer(target)
    try:
        channel = peer.handshake(target)
        sent = [b"\xa1a", b"\xa1b", b"\xa1c", b"\xa1d"]
        peer.sendRaw(
            framed(
                sealPlaintext(channel, b"\x06\x92" + sent[0] + sent[1]),
                sealPlaintext(channel, b"\x01" + sent[2]),
                sealPlaintext(channel, b"\x01" + sent[3]),
            )
        )
        echoed, _, problem = collectRecords(peer, channel, values=4)
        if problem is not None:
            return False, problem
        if echoed != sent:
            return False, f"echoed {echoed!r}, not {sent!r}"
        return True, "a, b (one VALUES record), c, d (VALUE records) came back in order"
    finally:
        peer.close()


# 6.1: every type, encoded by hand, comes back as itself.


@case("6.1.1", "6.1", "None and the booleans are echoed as themselves")
def _scalars(target: Target) -> tuple[bool, str]:
    return _echoValues(target, [None, False, True])


@case("6.1.2", "6.1", "ints of every 64-bit family are echoed as themselves")
def _ints(target: Target) -> tuple[bool, str]:
    edges = [0, 1, 127, 128, 255, 256, 2**16 - 1, 2**16, 2**32 - 1, 2**32, 2**64 - 1]
    edges += [-1, -32, -33, -128, -129, -(2**15), -(2**15) - 1, -(2**31), -(2**31) - 1, -(2**63)]
    return _echoValues(target, edges)


@case("6.1.3", "6.1", "big ints (ext 6) are echoed as themselves, up to 1 024 bytes")
def _bigInts(target: Target) -> tuple[bool, str]:
    values = [2**64, -(2**63) - 1, 2**127, -(2**127), 2**1000 + 12345, -(3**600)]
    values += [2 ** (1024 * 8 - 1) - 1, -(2 ** (1024 * 8 - 1))]
    return _echoValues(target, values)


@case("6.1.4", "6.1", "floats (nan, the infinities, -0.0 included) are echoed as themselves")
def _floats(target: Target) -> tuple[bool, str]:
    values = [0.0, -0.0, 1.5, -2.25, 1e308, 5e-324, math.inf, -math.inf, math.nan, 0.1]
    return _echoValues(target, values)


@case("6.1.5", "6.1", "complex numbers (ext 5) are echoed as themselves")
def _complexes(target: Target) -> tuple[bool, str]:
    return _echoValues(target, [1 + 2j, complex(0.0, -0.0), complex(math.inf, math.nan), 0j])


@case("6.1.6", "6.1", "str of every width (fixstr, str 8, 16 and 32) is echoed as itself")
def _strs(target: Target) -> tuple[bool, str]:
    values = ["", "a", "h\u00e9llo \u2603 \U0001f600", "x" * 31, "y" * 32, "z" * 255, "w" * 256]
    values += ["\u00e9" * 40000]
    return _echoValues(target, values)


@case("6.1.7", "6.1", "bytes of every width (bin 8, 16 and 32) are echoed as themselves")
def _bytes(target: Target) -> tuple[bool, str]:
    return _echoValues(target, [b"", b"\x00\xff", bytes(255), bytes(256), bytes(range(256)) * 300])


@case("6.1.8", "6.1", "bytearrays (ext 4, every ext family) are echoed as themselves")
def _bytearrays(target: Target) -> tuple[bool, str]:
    lengths = [0, 1, 2, 3, 4, 8, 16, 17, 255, 256, 70000]
    return _echoValues(target, [bytearray(b"\x5a" * n) for n in lengths])


@case("6.1.9", "6.1", "lists (fixarray, array 16, array 32) are echoed as themselves")
def _lists(target: Target) -> tuple[bool, str]:
    return _echoValues(target, [[], [1, "a", None], list(range(15)), list(range(16)), [0] * 65536])


@case("6.1.10", "6.1", "tuples (marker ext 1) are echoed as themselves")
def _tuples(target: Target) -> tuple[bool, str]:
    return _echoValues(target, [(), (1,), (1, 2), tuple(range(15)), ((),), ([], (None,))])


@case("6.1.11", "6.1", "sets (marker ext 2) are echoed as themselves")
def _sets(target: Target) -> tuple[bool, str]:
    values = [set(), {1}, {1, 2, 6, 4}, {"a", b"a", (1, 2), frozenset({3})}, set(range(100))]
    return _echoValues(target, values)


@case("6.1.12", "6.1", "frozensets (marker ext 3) are echoed as themselves")
def _frozensets(target: Target) -> tuple[bool, str]:
    values = [frozenset(), frozenset({1}), frozenset({frozenset({1}), (2,), None})]
    return _echoValues(target, values)


@case(
    "6.1.13",
    "6.1",
    "dicts (fixmap, map 16, map 32) are echoed in their order, bytes and other keys included",
)
def _dicts(target: Target) -> tuple[bool, str]:
    values: list[object] = [
        {},
        {b"k": 1.5, b"": None},
        {"b": 1, "a": 2},
        {None: 1, True: 2, 0: 3, 1.5: 4, 2j: 5, (1, 2): 6, frozenset({1}): 7, b"x": 8},
        {i: str(i) for i in range(15, -1, -1)},
        {i: None for i in range(65536)},
    ]
    return _echoValues(target, values)


@case("6.1.14", "6.1, 6.2", "nested values (the original example value) are echoed as themselves")
def _nesting(target: Target) -> tuple[bool, str]:
    original = ["hi im haytam", 128, {b"gg": "gg"}, {1, 2, 6, 4}, (False, True)]
    deep = {"a": [(1, {b"b": [frozenset({(2, 3)})]}), bytearray(b"c")], "d": {"e": {"f": [[], ()]}}}
    return _echoValues(target, [original, deep])


# 6.2 and 6.3: the document's own encodings.

_EXAMPLES: list[tuple[str, object]] = [
    ("c0", None),
    ("c3", True),
    ("7f", 127),
    ("cc80", 128),
    ("d0df", -33),
    ("cfffffffffffffffff", 2**64 - 1),
    ("d38000000000000000", -(2**63)),
    ("c70906010000000000000000", 2**64),
    ("c70906ff7fffffffffffffff", -(2**63) - 1),
    ("cb3ff8000000000000", 1.5),
    ("cb8000000000000000", -0.0),
    ("d8053ff00000000000004000000000000000", 1 + 2j),
    ("a161", "a"),
    ("c4016b", b"k"),
    ("d4046b", bytearray(b"k")),
    ("c70004", bytearray()),
    ("90", []),
    ("91c70001", ()),
    ("93c700010102", (1, 2)),
    ("91c70002", set()),
    ("95c7000201020406", {1, 2, 6, 4}),
    ("92c7000301", frozenset({1})),
    ("80", {}),
    ("8193c700010102c0", {(1, 2): None}),
    ("92a16181c4016bcb3ff8000000000000", ["a", {b"k": 1.5}]),
]

_ACCEPTED: list[tuple[str, object]] = [
    ("d001", 1),
    ("cd0001", 1),
    ("ca3fc00000", 1.5),
    ("d90161", "a"),
    ("c500016b", b"k"),
    ("dc000101", [1]),
    ("de00010102", {1: 2}),
    ("92c8000001" + "01", (1,)),
    ("d5046162", bytearray(b"ab")),
    ("c6000000016b", b"k"),
    ("db0000000161", "a"),
    ("dd0000000101", [1]),
    ("df000000010102", {1: 2}),
    ("92c9000000000101", (1,)),
    ("c7020461" + "62", bytearray(b"ab")),
]


@case(
    "6.2.1",
    "6.2",
    "every example of section 6.2 is accepted and echoed exactly in the document's form",
)
def _examples(target: Target) -> tuple[bool, str]:
    return _echoForms(target, _EXAMPLES, canonical=True)


@case(
    "6.3.1", "6.3", "the other widths of section 6.3 are accepted, and echoed in the shortest form"
)
def _otherWidths(target: Target) -> tuple[bool, str]:
    return _echoForms(target, _ACCEPTED, canonical=False)


# 6.4: what a decoder refuses.

_REFUSED: list[tuple[str, str, str]] = [
    ("6.4.1", "", "an empty body"),
    ("6.4.2", "c1", "the never-used byte c1"),
    ("6.4.3", "0101", "trailing bytes"),
    ("6.4.4", "9201", "a truncated array"),
    ("6.4.5", "c70001", "a marker that does not start an array"),
    ("6.4.6", "9201c70001", "a marker that is not the first item"),
    ("6.4.7", "92c7010100" + "01", "a marker with a payload"),
    ("6.4.8", "d6ff00000000", "msgpack's timestamp (ext -1)"),
    ("6.4.9", "c7010700", "the unknown extension code 7"),
    ("6.4.10", "d40500", "a complex payload that is not 16 bytes"),
    ("6.4.11", "c70806" + "0000000000000001", "a big int that fits 64 bits"),
    ("6.4.12", "a1ff", "a str that is not UTF-8"),
    ("6.4.13", "8190c0", "a list as a dict key"),
    ("6.4.14", "8201c001c0", "the same key twice"),
    ("6.4.15", "8201c0c3c0", "1 and True as keys"),
    ("6.4.16", "93c700020101", "the same set member twice"),
    ("6.4.17", "c70a06" + "000100000000000000" + "00", "a big int with a redundant leading byte"),
    ("6.4.18", "c80401" + "06" + "01" + "00" * 1024, "a big int of 1 025 bytes (over maxIntBytes)"),
    ("6.4.19", "92c7000290", "a list as a set member"),
    ("6.4.20", "81d40461c0", "a bytearray as a dict key"),
    ("6.4.21", "8180c0", "a dict as a dict key"),
    ("6.4.22", "8201c0cb3ff0000000000000c0", "1 and 1.0 as keys"),
    ("6.4.23", "82cb0000000000000000c0cb8000000000000000c0", "0.0 and -0.0 as keys"),
    ("6.4.24", "93c700030202", "the same frozenset member twice"),
    ("6.4.25", "d40000", "the extension code 0"),
    ("6.4.26", "92c70001c70002", "two markers in one array"),
    ("6.4.27", "92c7000291c70002", "a set as a set member"),
]


def _refusedCase(number: str, hexed: str, why: str) -> None:
    @case(number, "6.4", f"a VALUE holding {why} fails the connection")
    def check(target: Target) -> tuple[bool, str]:
        return _refusedValue(target, bytes.fromhex(hexed), why)


for _number, _hexed, _why in _REFUSED:
    _refusedCase(_number, _hexed, _why)


# 6.5: limits (the document's defaults).


@case("6.5.1", "6.5", "a value of depth 64 (maxDepth) is accepted")
def _depth64(target: Target) -> tuple[bool, str]:
    value: object = None
    for level in range(64):
        value = [value] if level % 3 == 0 else (value,) if level % 3 == 1 else {"k": value}
    return _echoValues(target, [value, _nested(64)])


@case("6.5.2", "6.5", "a value of depth 65 fails the connection")
def _depth65(target: Target) -> tuple[bool, str]:
    return _refusedValue(target, encodeByHand(_nested(65)), "a value of depth 65")


@case(
    "6.5.3", "6.5", "empty containers count for depth: 65 nested empty tuples fail the connection"
)
def _depth65Empty(target: Target) -> tuple[bool, str]:
    value: object = ()
    for _ in range(64):
        value = (value,)
    return _refusedValue(target, encodeByHand(value), "65 nested tuples, the innermost empty")


@case("6.5.4", "6.5", "a list of 1 000 000 items (maxItems) is accepted")
def _items(target: Target) -> tuple[bool, str]:
    return _echoValues(target, [[None] * 1_000_000])


@case("6.5.5", "6.5", "a list of 1 000 001 items fails the connection")
def _itemsOver(target: Target) -> tuple[bool, str]:
    return _refusedValue(
        target,
        b"\xdd" + struct.pack(">I", 1_000_001) + b"\xc0" * 1_000_001,
        "a list of 1 000 001 items",
    )


@case(
    "6.5.6", "6.5", "the marker counts as an item: a tuple of 1 000 000 items fails the connection"
)
def _itemsMarker(target: Target) -> tuple[bool, str]:
    body = b"\xdd" + struct.pack(">I", 1_000_001) + b"\xc7\x00\x01" + b"\xc0" * 1_000_000
    return _refusedValue(target, body, "a tuple of 1 000 000 items")


@case(
    "6.5.7", "6.5", "a value creating more than 1 048 576 objects (maxObjects) fails the connection"
)
def _objects(target: Target) -> tuple[bool, str]:
    inner = b"\xdc" + struct.pack(">H", 1024) + b"\xc0" * 1024
    body = b"\xdc" + struct.pack(">H", 1025) + inner * 1025
    return _refusedValue(target, body, "1 025 lists of 1 024 items in a list")


def _colliding(count: int) -> list[int]:
    # CPython hashes ints modulo 2**61 - 1: these all hash to 1.
    return [1 + k * (2**61 - 1) for k in range(count)]


@case("6.5.8", "6.5", "a dict of 8 keys sharing one hash (maxHashCollisions) is accepted")
def _collisions(target: Target) -> tuple[bool, str]:
    return _echoValues(target, [dict.fromkeys(_colliding(8)), set(_colliding(8))])


@case("6.5.9", "6.5", "a dict of 9 keys sharing one hash fails the connection")
def _collisionsDict(target: Target) -> tuple[bool, str]:
    return _refusedValue(target, encodeByHand(dict.fromkeys(_colliding(9))), "9 colliding keys")


@case("6.5.10", "6.5", "a set of 9 members sharing one hash fails the connection")
def _collisionsSet(target: Target) -> tuple[bool, str]:
    return _refusedValue(target, encodeByHand(set(_colliding(9))), "a set of 9 colliding members")
