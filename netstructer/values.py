# -*- test-case-name: tests.test_values -*-
"""
The safe value codec: Python values to bytes and back, over msgpack.

L{encode} turns a value into bytes and L{decode} turns bytes from a peer back
into an equal value of exactly the same types, at every level.  Decoding
never runs code, never imports anything, builds nothing but the types listed
below, and refuses (with L{DecodeError}) anything malformed or larger than its
L{Limits}.  This module does no I/O and does not import Twisted.

A connection should build one L{Encoder} and one L{Decoder} and use them for
every record: they keep their msgpack packer and unpackers between calls,
which makes each call cheaper than the module-level L{encode} and L{decode}
functions (those build a fresh codec on every call so that they share no
state between calls or threads).  L{Encoder} and L{Decoder} objects are not
thread-safe; use one per connection or per thread.


Wire format
===========

A value is one msgpack object
(U{https://github.com/msgpack/msgpack/blob/master/spec.md}).  The Python
types msgpack has a family for use that family; the others use msgpack
extension types ("ext") with the codes below.  An extension is written in
msgpack's shortest form: fixext 1, 2, 4, 8 or 16 (C{d4}-C{d8} then the
code) when its payload has exactly that length, otherwise ext 8, 16 or 32
(C{c7}-C{c9}, the length, then the code); a decoder accepts any form.  An
extension used as a I{marker} has an empty payload (so it is always the
three bytes C{c7 00 <code>}) and may appear only as the first item of an
array.  The encoding of each type::

 ====================  ===================================================
 Python type           msgpack encoding
 ====================  ===================================================
 C{None}               nil (C{c0})
 C{bool}               false / true (C{c2} / C{c3})
 C{int}, 64-bit        the smallest int family that holds it (positive
                       fixint, negative fixint, C{cc}-C{cf}, C{d0}-C{d3});
                       every int in [-2**63, 2**64-1]
 C{int}, larger        ext L{EXT_BIGINT} (6): signed big-endian two's
                       complement in the fewest bytes that hold it, at most
                       L{Limits.maxIntBytes} bytes; never used for an int
                       that fits 64 bits
 C{float}              float 64 (C{cb} + 8 bytes IEEE 754 big-endian), always;
                       nan, the infinities and -0.0 included
 C{complex}            ext L{EXT_COMPLEX} (5) (so C{d8 05} + 16 bytes): real
                       then imaginary part, each an IEEE 754 float64
                       big-endian
 C{str}                str (fixstr, C{d9}-C{db}), UTF-8
 C{bytes}              bin (C{c4}-C{c6})
 C{bytearray}          ext L{EXT_BYTEARRAY} (4), payload the bytes
 C{list}               array (fixarray, C{dc}, C{dd}) of the items
 C{tuple}              array: marker ext L{EXT_TUPLE} (1), then the items
 C{set}                array: marker ext L{EXT_SET} (2), then the members
 C{frozenset}          array: marker ext L{EXT_FROZENSET} (3), then the members
 C{dict}               map (fixmap, C{de}, C{df}), keys and values in the
                       dict's iteration order
 ====================  ===================================================

For example C{(1, 2)} is C{93 c7 00 01 01 02} and C{['a', {b'k': 1.5}]} is
C{92 a1 61 81 c4 01 6b cb 3f f8 00 00 00 00 00 00}.  The original package's
example C{['hi im haytam', 128, {b'gg': 'gg'}, {1, 2, 6, 4}, (False, True)]}
is::

    95 ac 68 69 20 69 6d 20 68 61 79 74 61 6d cc 80 81 c4 02 67 67 a2 67 67
    95 c7 00 02 01 02 04 06 93 c7 00 01 c2 c3

(set members in the set's iteration order).  Dict keys and set members may
be any hashable value of these types: bytes, ints, floats, tuples and
frozensets included.  Exact types only: subclasses (C{OrderedDict}, an
C{IntEnum}, a namedtuple, a C{str} subclass...) and every other type are
refused with L{EncodeError}, because they could not come back as
themselves.  So are values that contain themselves.  As a convenience a
C{memoryview} is encoded as the bytes it shows, and so decodes as C{bytes}.

A decoder refuses, with L{DecodeError}: bytes that are not exactly one
msgpack object (truncated, trailing bytes, the never-used byte C{c1}); a
marker anywhere but first in an array, or with a payload; an extension code
other than 1 to 6 (msgpack's timestamp, code -1, included); a complex payload
that is not 16 bytes; a big integer that fits 64 bits, has a redundant
leading byte, or is longer than L{Limits.maxIntBytes}; a str that is not
valid UTF-8; a list, dict or set as a dict key or set member; the same key
twice in a map or the same member twice in a set (so C{1} and C{True}, or
C{0.0} and C{-0.0}, may not both be keys: Python could not have built such a
dict); and anything over a limit.


Limits
======

L{Limits} bounds what one decoded value may cost:

  - C{maxSize}: bytes of input (checked first, before any parsing).
  - C{maxDepth}: nesting depth, the number of containers (list, tuple, set,
    frozenset, dict, empty ones included) on the longest path from the top
    value down.  C{[]} and C{[1]} have depth 1, C{[[]]} and C{{1: (2,)}}
    depth 2, a scalar depth 0.
  - C{maxItems}: items in one list, tuple, set or frozenset (a tuple, set or
    frozenset counts its marker too), or entries in one dict.
  - C{maxIntBytes}: bytes of one big integer's two's complement form.
  - C{maxObjects}: the objects one value may create, counted as one for each
    container plus one for each item in it (two for each dict entry: key and
    value).  Every msgpack object takes at least one byte, so this can bind
    only when the input is longer than C{maxObjects // 2} bytes.
  - C{maxHashCollisions}: how many keys of one dict, or members of one set,
    may share one hash value.  The hashes of ints, floats, tuples,
    frozensets and complex numbers are not randomised, so a peer could
    otherwise send a set whose members all collide and make building it
    take quadratic time.

An encoder refuses, with L{EncodeError}, a big integer longer than
C{maxIntBytes}, which its peer (using the same limits) would refuse, so
that the mistake shows up locally, naming its path.  It checks no other
limit (that would need a walk of every value; the channel checks the size
of what it sends), but refuses values nested deeper than msgpack's C packer
goes (1025 levels).


How it works
============

There are two implementations of this codec, which give the same results.

The C accelerator, C{netstructer._speedups}, is built when NetStructer is
installed on a machine with a C compiler, and used by default (see
L{ACCELERATED}).  Its encoder writes exactly the bytes described above, and
leaves every value it does not handle itself (a C{memoryview}, an
unsupported type, a str that is not valid Unicode, a big integer over
C{maxIntBytes}, nesting deeper than 512 levels, a cycle) to the reference
encoder below, which encodes it or names the offending part.  Its decoder
parses the input itself, checking every length against the bytes that
remain and every limit before it builds anything, and accepts exactly the
inputs the reference decoder accepts; whatever it refuses is decoded again
by the reference decoder, which raises the L{DecodeError} that explains it.
The tests compare the two on generated, mutated and hostile inputs, and run
the accelerator under AddressSanitizer and UndefinedBehaviorSanitizer.

The reference implementation, in this module, is pure Python over msgpack.
C{accelerated=False} (on L{Encoder}, L{Decoder}, L{encode} and L{decode}),
or C{NETSTRUCTER_PURE_PYTHON=1} in the environment, uses it alone.

Encoding calls msgpack's C packer (C{strict_types=True}, so that subclasses
and tuples reach the C{default} hook) with a C{default} hook that turns
tuples, sets and frozensets into marked arrays and complex numbers and big
integers into extensions.  msgpack's C packer writes C{bytearray} (and
C{memoryview}) as bin without consulting the hook, so when the output holds
a bin header byte (C{c4}, C{c5} or C{c6}; found by a regular expression in
a short output, by C{memchr} in a long one) the value is searched for
bytearrays, and a value holding one is encoded again from a copy in which
each is replaced by its extension.  (That search is the price of an exact
C{bytearray}: it walks lists, tuples and dict values in Python.)  When the C
packer refuses a value, a slow, iterative walk of the value finds the first
offending part and names its path in the L{EncodeError} message, e.g.
C{value[3]['k']: cannot encode datetime.datetime}.  Path steps are C{[3]} for
an item of a list or tuple, C{['k']} for the value under key C{'k'} of a
dict (a key that is not a short plain scalar shows as C{<key #2>}, counting
entries in iteration order), C{{key #2}} for the key itself of entry 2, and
C{{#2}} for member 2, in iteration order, of a set or frozenset.

Decoding never recurses in Python, and builds the value in one call of
msgpack's C C{unpackb}, whose C{list_hook}, C{object_pairs_hook} and
C{ext_hook} turn marked arrays into tuples, sets and frozensets, check keys
and members for hash collisions and repeats before any dict or set is
built, and decode the extensions.  When the value is an array or map and
the input is longer than 64 bytes (or than C{maxDepth}), a pass of
msgpack's C unpacker that builds nothing (C{Unpacker.skip}) runs first.  It
proves the input is one complete object, so that no array or map can
reserve memory for items the input does not hold; and, when the input has
room for more than C{maxDepth} containers, it runs over the input wrapped
in as many one-item arrays as leave exactly C{maxDepth} levels of
msgpack's fixed C parser stack free, so that a value nested too deeply is
refused before anything is built.  Markers are counted as they are made
and as they are consumed, so one left anywhere but first in an array is
found.  msgpack decodes extension code -1 (its timestamp) by itself,
without calling C{ext_hook}; such a value needs an C{ff} byte in the
input, and only for such inputs do the hooks check the types of the items
they are given (each object once, as an item of its container), and the
decoder the type of the value.

L{Decoder.decodeMany} decodes a batch, one msgpack array whose items are
encoded values, in the same single C{unpackb} call (after the same checking
pass, with one more level allowed for the outer array), and refuses a batch
whose first item is a marker, which would make it a tuple or set.  Only an
input long enough that C{maxObjects} could bind, which must then bind for
each value, is decoded a value at a time: a C{skip} pass finds where each
value ends, and each is decoded as L{Decoder.decode} decodes it.
"""

from __future__ import annotations

import importlib
import os
import re
import struct
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from itertools import chain, compress
from operator import itemgetter
from types import ModuleType
from typing import Any, Final, cast

import msgpack

from netstructer.errors import DecodeError, EncodeError


def _loadAccelerator() -> ModuleType | None:
    """
    Import the C accelerator, C{netstructer._speedups}.

    @return: The module; or C{None} where it was not built (no C compiler
        at install time), or when C{NETSTRUCTER_PURE_PYTHON} is set in the
        environment.
    """
    if os.environ.get("NETSTRUCTER_PURE_PYTHON"):
        return None
    try:
        return importlib.import_module("netstructer._speedups")
    except ImportError:  # pragma: no cover (built wherever a C compiler is)
        return None


_speedups: Final = _loadAccelerator()

__all__ = [
    "ACCELERATED",
    "DEFAULT_LIMITS",
    "EXT_BIGINT",
    "EXT_BYTEARRAY",
    "EXT_COMPLEX",
    "EXT_FROZENSET",
    "EXT_SET",
    "EXT_TUPLE",
    "Decoder",
    "Encoder",
    "Limits",
    "decode",
    "encode",
]

ACCELERATED: Final = _speedups is not None
"""
Whether the C accelerator (C{netstructer._speedups}) is in use: it was
built when NetStructer was installed, and C{NETSTRUCTER_PURE_PYTHON} was not
set in the environment when this module was imported.
"""

EXT_TUPLE: Final = 1
"""Marker extension code: the array it starts is a C{tuple}."""

EXT_SET: Final = 2
"""Marker extension code: the array it starts is a C{set}."""

EXT_FROZENSET: Final = 3
"""Marker extension code: the array it starts is a C{frozenset}."""

EXT_BYTEARRAY: Final = 4
"""Extension code of a C{bytearray}; the payload is its bytes."""

EXT_COMPLEX: Final = 5
"""Extension code of a C{complex}; the payload is two big-endian float64s."""

EXT_BIGINT: Final = 6
"""
Extension code of an C{int} outside [-2**63, 2**64-1]; the payload is its
signed big-endian two's complement in the fewest bytes.
"""


if msgpack.Unpacker.__module__ == "msgpack.fallback":  # pragma: no cover
    raise ImportError(
        "netstructer.values needs msgpack's C extension; the pure-Python "
        "fallback (MSGPACK_PUREPYTHON, or a platform without a wheel) has no "
        "fixed nesting limit to enforce Limits.maxDepth with"
    )


def _probeParserDepth() -> int:
    """
    Measure how many nested arrays msgpack's C unpacker accepts.

    @return: The largest number of containers on one path that
        C{msgpack.Unpacker.skip} accepts (1024 with msgpack 1.2, whose C
        parser has a fixed stack of that many entries).
    """
    low, high = 1, 1 << 16
    while low < high:
        middle = (low + high + 1) // 2
        unpacker = msgpack.Unpacker(max_buffer_size=middle + 1)
        unpacker.feed(b"\x91" * middle + b"\xc0")
        try:
            unpacker.skip()
        except msgpack.StackError:
            high = middle - 1
        else:
            low = middle
    return low


def _probePackerDepth() -> int:
    """
    Measure how deeply nested a list msgpack's C packer accepts.

    @return: The largest number of nested lists C{msgpack.packb} packs (1025
        with msgpack 1.2).
    """
    low, high = 1, 1 << 12
    while low < high:
        middle = (low + high + 1) // 2
        nested: list[object] = []
        for _ in range(middle - 1):
            nested = [nested]
        try:
            msgpack.packb(nested)
        except ValueError:
            high = middle - 1
        else:
            low = middle
    return low


_PARSER_DEPTH: Final = _probeParserDepth()
_PACKER_DEPTH: Final = _probePackerDepth()

# Inputs up to this size are decoded without the checking pass: unpackb is
# told that no array or map holds more items than the input has bytes, so
# such an input cannot make msgpack reserve much memory for items it does
# not hold.
_QUICK_SIZE: Final = 64

# A Decoder reuses its checking unpacker for inputs up to this size; larger
# inputs get a fresh one, so that a connection does not keep a big buffer.
_REUSE_SIZE: Final = 64 * 1024

# Up to this size, counting the bytes that could start an array or map is
# cheaper than the depth-checking pass it may make unnecessary.
_COUNT_HEADERS_SIZE: Final = 4096

# The first bytes of arrays and maps: fixmap, fixarray, array 16/32, map 16/32.
_CONTAINER_HEADERS: Final = frozenset(range(0x80, 0xA0)) | frozenset(range(0xDC, 0xE0))

# Every byte that is not a container header (fixmap, fixarray, array 16/32,
# map 16/32): deleting these leaves an upper bound on the containers.
_NOT_HEADERS: Final = bytes(
    byte for byte in range(256) if not (0x80 <= byte <= 0x9F or 0xDC <= byte <= 0xDF)
)

_INT64_MIN: Final = -(2**63)
_UINT64_MAX: Final = 2**64 - 1
_COMPLEX_STRUCT: Final = struct.Struct(">dd")


@dataclass(frozen=True, slots=True)
class Limits:
    """
    Limits on what decoding one value may cost, with safe defaults.

    Both sides of a connection should use the same limits: a decoder refuses
    input over them, and an encoder refuses big integers a decoder would
    refuse.  Raise a limit only for peers you trust.

    @ivar maxDepth: The deepest nesting of containers (see the module
        docstring for how depth counts); at most the depth msgpack's C
        parser supports (1024).
    @ivar maxItems: The most items in one list, tuple, set or frozenset (a
        marker included), or entries in one dict.
    @ivar maxSize: The most bytes one encoded value may take.
    @ivar maxIntBytes: The most bytes of one big integer's two's complement.
    @ivar maxObjects: The most objects one decoded value may create: one for
        each container plus one for each item in it (two for a dict entry).
    @ivar maxHashCollisions: The most keys of one dict, or members of one
        set or frozenset, that may share one hash value.
    """

    maxDepth: int = 64
    maxItems: int = 1_000_000
    maxSize: int = 16 * 1024 * 1024
    maxIntBytes: int = 1024
    maxObjects: int = 2**20
    maxHashCollisions: int = 8

    def __post_init__(self) -> None:
        """
        Check every limit.

        @raise ValueError: If a limit is not a positive C{int}, or
            C{maxDepth} is deeper than msgpack's C parser goes.
        """
        for name in (
            "maxDepth",
            "maxItems",
            "maxSize",
            "maxIntBytes",
            "maxObjects",
            "maxHashCollisions",
        ):
            limit = getattr(self, name)
            if type(limit) is not int or limit < 1:
                raise ValueError(f"Limits.{name} must be a positive int, not {limit!r}")
        if self.maxDepth > _PARSER_DEPTH:
            raise ValueError(
                f"Limits.maxDepth={self.maxDepth} is deeper than msgpack's C parser "
                f"supports ({_PARSER_DEPTH}); use at most {_PARSER_DEPTH}"
            )


DEFAULT_LIMITS: Final = Limits()
"""The default L{Limits}."""


class _Marker:
    """
    What a marker extension decodes to, until the array it starts is built.

    @ivar code: The marker's extension code.
    """

    __slots__ = ("code",)

    def __init__(self, code: int) -> None:
        """
        @param code: The marker's extension code.
        """
        self.code = code

    def __repr__(self) -> str:
        """
        @return: A description for debugging.
        """
        return f"<marker {self.code}>"


_TUPLE_MARKER: Final = _Marker(EXT_TUPLE)
_SET_MARKER: Final = _Marker(EXT_SET)
_FROZENSET_MARKER: Final = _Marker(EXT_FROZENSET)
_MARKERS: Final = {
    EXT_TUPLE: _TUPLE_MARKER,
    EXT_SET: _SET_MARKER,
    EXT_FROZENSET: _FROZENSET_MARKER,
}

_TUPLE_EXT: Final = msgpack.ExtType(EXT_TUPLE, b"")
_SET_EXT: Final = msgpack.ExtType(EXT_SET, b"")
_FROZENSET_EXT: Final = msgpack.ExtType(EXT_FROZENSET, b"")


def _typeName(kind: type) -> str:
    """
    Name a type for a message.

    @param kind: The type.
    @return: Its qualified name, with its module unless that is C{builtins}.
    """
    if kind.__module__ == "builtins":
        return kind.__qualname__
    return f"{kind.__module__}.{kind.__qualname__}"


def _bigIntBytes(number: int) -> int:
    """
    Count the bytes of an integer's shortest two's complement form.

    @param number: Any integer.
    @return: The fewest bytes that hold C{number} as a signed integer.
    """
    return (number if number >= 0 else ~number).bit_length() // 8 + 1


class _EncodeHooks:
    """
    The C{default} hook of msgpack's packer for one set of limits.  Holds no
    state that changes, so one instance may serve every thread.

    @ivar maxIntBytes: The longest big integer, in bytes, to encode.
    """

    __slots__ = ("maxIntBytes",)

    def __init__(self, maxIntBytes: int) -> None:
        """
        @param maxIntBytes: The longest big integer, in bytes, to encode.
        """
        self.maxIntBytes = maxIntBytes

    def default(self, obj: object) -> object:
        """
        Turn a value msgpack has no family for into one it has.

        @param obj: A value msgpack's packer could not pack by itself.
        @return: A marked list for a tuple, set or frozenset; an extension
            for a complex number or an integer outside 64 bits.
        @raise TypeError: For any other value (or an integer too long); the
            caller then walks the value to say which part and why.
        """
        if type(obj) is tuple:
            return [_TUPLE_EXT, *obj]
        if type(obj) is set:
            return [_SET_EXT, *obj]
        if type(obj) is frozenset:
            return [_FROZENSET_EXT, *obj]
        if type(obj) is complex:
            return msgpack.ExtType(EXT_COMPLEX, _COMPLEX_STRUCT.pack(obj.real, obj.imag))
        if type(obj) is int:
            size = _bigIntBytes(obj)
            if size <= self.maxIntBytes:
                return msgpack.ExtType(EXT_BIGINT, obj.to_bytes(size, "big", signed=True))
        raise TypeError(f"cannot encode {_typeName(type(obj))}")


_DEFAULT_ENCODE_HOOKS: Final = _EncodeHooks(DEFAULT_LIMITS.maxIntBytes)


def _shortRepr(obj: object, index: int, what: str) -> str:
    """
    Show a dict key inside a path.

    @param obj: The key.
    @param index: Its entry's position in iteration order.
    @param what: What to call it when it is not shown itself.
    @return: The key's C{repr}, if it is a short plain scalar; otherwise
        C{<what #index>}.
    """
    if type(obj) is str or type(obj) is bytes:
        if len(obj) <= 40:
            return repr(obj)
    elif type(obj) is int:
        if obj.bit_length() <= 64:
            return repr(obj)
    elif type(obj) is float or type(obj) is bool or obj is None:
        return repr(obj)
    return f"<{what} #{index}>"


_SCALARS: Final = frozenset({type(None), bool, int, float, complex, str, bytes})
_CONTAINERS: Final = frozenset({list, tuple, set, frozenset, dict})
_SEARCHED: Final = frozenset({bytearray, list, tuple, dict})
_LEAVES: Final = _SCALARS | {bytearray, memoryview}


_HAS_BIN_HEADER: Final = re.compile(b"[\xc4-\xc6]").search
"""Find a byte that may start a bin (or lie in some payload): one C pass."""

# Up to this size the regular expression finds a bin header byte fastest;
# beyond it, three memchr scans of C{in} are much faster than its byte loop.
_SCAN_SIZE: Final = 256


def _hashable(items: Iterable[object]) -> bool:
    """
    Say whether items can all be hashed: then none is, or holds, a list,
    dict, set or C{bytearray}.

    @param items: The items.
    @return: Whether C{hash} accepts a tuple of them.
    """
    try:
        hash(tuple(items))
    except (TypeError, ValueError):
        # One is unhashable, or a writable memoryview.
        return False
    return True


def _holdsBytearray(value: object, encoded: bytes) -> bool:
    """
    Say whether an acyclic value holds a C{bytearray}, which msgpack's
    C packer writes as bin without consulting the C{default} hook.
    Iterative.  Dict keys and set members are not searched: a
    C{bytearray} cannot be hashed, so it cannot be one, nor be inside
    one.

    @param value: A value msgpack's packer has just packed (so it is
        acyclic and made of supported types and C{memoryview}s).
    @param encoded: Its encoding: without a bin header byte (C{c4},
        C{c5} or C{c6}) anywhere it holds no bytes-like object at all.
    @return: Whether it holds a C{bytearray} anywhere.
    """
    size = len(encoded)
    if size <= _SCAN_SIZE:
        if _HAS_BIN_HEADER(encoded) is None:
            return False
    elif b"\xc4" not in encoded and b"\xc5" not in encoded and b"\xc6" not in encoded:
        return False
    # Any: the items' types are tested as they are used.
    items: Any = value
    kind = type(items)
    if kind is dict:
        items = items.values()
    elif kind is not list and kind is not tuple:
        return kind is bytearray
    # Containers still to search.  The value itself is searched without
    # a push and a pop: for small values the per-container overhead is
    # most of the cost.
    pending: list[Any] = []
    while True:
        if len(items) <= 16:
            for item in items:
                if type(item) in _SEARCHED:
                    pending.append(item)
        elif size <= 32 * len(items) and _hashable(items):
            # Hashing items that take few bytes each is the fastest
            # search there is: it runs in C and fails, with TypeError,
            # on the first list, dict, set or bytearray at any depth.
            pass
        else:
            # Look at the item types in C: most hold nothing to search.
            kinds = set(map(type, items))
            if bytearray in kinds:
                return True
            if not kinds.isdisjoint(_SEARCHED):
                pending.extend(compress(items, map(_SEARCHED.__contains__, map(type, items))))
        if not pending:
            return False
        items = pending.pop()
        kind = type(items)
        if kind is dict:
            items = items.values()
        elif kind is bytearray:
            return True


class _Frame:
    """
    One container being walked by L{_walk}.

    @ivar container: The container.
    @ivar items: Its items in walk order: for a dict, each key then its
        value.
    @ivar index: How many of C{items} have been walked.
    @ivar built: The copies of the items walked so far.
    @ivar path: The container's path.
    """

    __slots__ = ("built", "container", "index", "items", "path")

    def __init__(self, container: object, path: str) -> None:
        """
        @param container: The container.
        @param path: Its path.
        """
        self.container = container
        if type(container) is dict:
            self.items: list[object] = [part for entry in container.items() for part in entry]
        else:
            self.items = list(cast("Iterable[object]", container))
        self.index = 0
        self.built: list[object] = []
        self.path = path

    def pathOf(self, index: int) -> str:
        """
        Name an item's path.

        @param index: The item's position in C{items}.
        @return: Its path.
        """
        kind = type(self.container)
        if kind is list or kind is tuple:
            return f"{self.path}[{index}]"
        if kind is dict:
            entry = index // 2
            if index % 2 == 0:
                return f"{self.path}{{key #{entry}}}"
            return f"{self.path}[{_shortRepr(self.items[index - 1], entry, 'key')}]"
        return f"{self.path}{{#{index}}}"

    def rebuild(self) -> object:
        """
        Build the container's copy from its items' copies; a set or
        frozenset is its own copy.

        @return: A copy of the same type, or the set or frozenset itself.
        """
        built = self.built
        kind = type(self.container)
        if kind is dict:
            return dict(zip(built[::2], built[1::2], strict=True))
        if kind is tuple:
            return tuple(built)
        if kind is set or kind is frozenset:
            # Members are hashable, so they neither are nor hold bytearrays:
            # the packer takes the set as it is, in its own iteration order,
            # which a rebuilt set need not keep.
            return self.container
        return built


def _unsupported(kind: type) -> str:
    """
    Say why a value of an unsupported type cannot be encoded.

    @param kind: The type.
    @return: The reason, with a hint when one helps.
    """
    hint = ""
    if any(base in _SCALARS or base in _CONTAINERS for base in kind.__mro__[1:]):
        hint = (
            " (a subclass of a supported type would not come back as itself; "
            "convert it to its base type)"
        )
    return f"cannot encode {_typeName(kind)}{hint}"


def _checkLeaf(item: object, limits: Limits) -> str | None:
    """
    Check one value that is not a container, for L{_walk}.

    @param item: The value.
    @param limits: The limits the peer is assumed to use.
    @return: Why it cannot be encoded, or C{None} if it can.
    """
    if type(item) is int:
        if not _INT64_MIN <= item <= _UINT64_MAX:
            size = _bigIntBytes(item)
            if size > limits.maxIntBytes:
                return (
                    f"cannot encode an int of {size} bytes, more than maxIntBytes="
                    f"{limits.maxIntBytes}; raise Limits.maxIntBytes on both sides, "
                    "or send it as a str"
                )
    elif type(item) is str:
        try:
            item.encode("utf-8")
        except UnicodeEncodeError as e:
            return (
                f"cannot encode a str that is not valid Unicode (a lone surrogate "
                f"at index {e.start}); fix or escape it"
            )
    elif type(item) not in _LEAVES:
        return _unsupported(type(item))
    return None


def _walk(value: object, limits: Limits) -> object:
    """
    Walk a value without recursion, checking everything an encoder checks,
    and copy it with each C{bytearray} replaced by its extension.

    This is the slow path, taken only when the C packer refused a value or
    the value holds a C{bytearray}.  Paths are only named when needed.

    @param value: The value to check.
    @param limits: The limits the peer is assumed to use.
    @return: A copy of C{value} that msgpack's packer can pack with
        L{_EncodeHooks.default}: every C{bytearray} replaced by an
        L{EXT_BYTEARRAY} extension.
    @raise EncodeError: Naming the first offending part's path: an
        unsupported type, a cycle, nesting deeper than msgpack can encode, a
        big integer too long, or a str that is not valid Unicode.
    """
    frames: list[_Frame] = []
    onPath: dict[int, _Frame] = {}
    done: list[object] = []
    item = value
    while True:
        kind = type(item)
        if kind in _CONTAINERS:
            path = frames[-1].pathOf(frames[-1].index - 1) if frames else "value"
            seenAt = onPath.get(id(item))
            if seenAt is not None:
                raise EncodeError(
                    f"{path}: cannot encode a cycle: this {kind.__name__} is "
                    f"{seenAt.path} itself; encode a copy without the cycle",
                    path,
                )
            if len(frames) >= _PACKER_DEPTH:
                raise EncodeError(
                    f"{path}: value nested deeper than msgpack can encode "
                    f"({_PACKER_DEPTH} levels); flatten it",
                    path,
                )
            frame = _Frame(item, path)
            onPath[id(item)] = frame
            frames.append(frame)
        else:
            problem = _checkLeaf(item, limits)
            if problem is not None:
                path = frames[-1].pathOf(frames[-1].index - 1) if frames else "value"
                raise EncodeError(f"{path}: {problem}", path)
            if kind is bytearray:
                item = msgpack.ExtType(EXT_BYTEARRAY, bytes(cast(bytearray, item)))
            elif kind is memoryview:
                item = cast(memoryview, item).tobytes()
            (frames[-1].built if frames else done).append(item)
        # Go on to the next item, finishing each container that has none left.
        while frames:
            frame = frames[-1]
            if frame.index < len(frame.items):
                item = frame.items[frame.index]
                frame.index += 1
                break
            frames.pop()
            del onPath[id(frame.container)]
            (frames[-1].built if frames else done).append(frame.rebuild())
        else:
            return done[0]


_PACKER_ERRORS: Final = (TypeError, ValueError, OverflowError, BufferError)


def _encodeSlowly(
    value: object, limits: Limits, hooks: _EncodeHooks, cause: BaseException | None
) -> bytes:
    """
    Encode a value the fast path could not: walk it to name the offending
    part, or to replace its C{bytearray}s, and pack the copy.

    @param value: The value.
    @param limits: The limits the peer is assumed to use.
    @param hooks: The packer hooks for C{limits}.
    @param cause: What the fast path raised, if it raised.
    @return: The encoded value.
    @raise EncodeError: Naming the offending part.
    """
    copy = _walk(value, limits)
    try:
        encoded: bytes = msgpack.packb(
            copy, default=hooks.default, strict_types=True, use_bin_type=True, datetime=False
        )
    except _PACKER_ERRORS as e:
        raise EncodeError(f"value: cannot encode: {e}", "value") from (cause or e)
    return encoded


def encode(value: object, *, limits: Limits = DEFAULT_LIMITS, accelerated: bool = True) -> bytes:
    """
    Encode a value.

    Shares no state between calls or threads; a connection should rather
    keep an L{Encoder}, which is faster.

    @param value: A value made of the supported types (see the module
        docstring), nested freely.
    @param limits: The limits the peer uses, to refuse here big integers it
        would refuse.
    @param accelerated: Whether to use the C accelerator, if there is one
        (see L{ACCELERATED}); C{False} runs the reference implementation.
    @return: The value's encoding.
    @raise EncodeError: If the value holds an unsupported type (subclasses
        included), a cycle, or is over a limit; the message names the
        offending part's path.
    """
    if accelerated and _speedups is not None:
        fast: bytes | None = _speedups.encode(value, limits.maxIntBytes)
        if fast is not None:
            return fast
    hooks = _DEFAULT_ENCODE_HOOKS if limits is DEFAULT_LIMITS else _EncodeHooks(limits.maxIntBytes)
    try:
        encoded: bytes = msgpack.packb(
            value, default=hooks.default, strict_types=True, use_bin_type=True, datetime=False
        )
    except _PACKER_ERRORS as e:
        encoded = _encodeSlowly(value, limits, hooks, e)
    else:
        if _holdsBytearray(value, encoded):
            encoded = _encodeSlowly(value, limits, hooks, None)
    return encoded


class Encoder:
    """
    A reusable encoder that keeps one msgpack packer, for one connection.
    Not thread-safe: use one per connection or thread.

    @ivar limits: The limits the peer is assumed to use.
    """

    def __init__(self, limits: Limits = DEFAULT_LIMITS, *, accelerated: bool = True) -> None:
        """
        @param limits: The limits the peer uses, to refuse here big integers
            it would refuse.
        @param accelerated: Whether to use the C accelerator, if there is
            one (see L{ACCELERATED}); C{False} runs the reference
            implementation.
        """
        self.limits = limits
        self._fastEncode: Callable[[object, int], bytes | None] | None = (
            _speedups.encode if accelerated and _speedups is not None else None
        )
        self._maxIntBytes = limits.maxIntBytes
        self._hooks = (
            _DEFAULT_ENCODE_HOOKS if limits is DEFAULT_LIMITS else _EncodeHooks(limits.maxIntBytes)
        )
        self._pack = self._newPack()

    def _newPack(self) -> Callable[[object], bytes]:
        """
        A new packer's C{pack}, starting with a small buffer: it grows as
        values need, and L{encode} replaces a packer grown large, so that an
        idle connection does not keep its largest value's worth of memory.
        """
        pack: Callable[[object], bytes] = msgpack.Packer(
            default=self._hooks.default,
            strict_types=True,
            use_bin_type=True,
            datetime=False,
            autoreset=True,
            buf_size=_PACKER_BUFFER,
        ).pack
        return pack

    def encode(self, value: object) -> bytes:
        """
        Encode a value.

        @param value: A value made of the supported types.
        @return: The value's encoding.
        @raise EncodeError: As L{encode} does.
        """
        fast = self._fastEncode
        if fast is not None:
            # The accelerator encodes exactly as the code below does, or
            # leaves the value to it (an unsupported type, a cycle...).
            encoded = fast(value, self._maxIntBytes)
            if encoded is not None:
                return encoded
        try:
            encoded = self._pack(value)
        except _PACKER_ERRORS as e:
            encoded = _encodeSlowly(value, self.limits, self._hooks, e)
        else:
            # A bin header byte (or such a byte inside some payload) may
            # mean a bytearray the packer wrote as bytes.
            if _holdsBytearray(value, encoded):
                encoded = _encodeSlowly(value, self.limits, self._hooks, None)
            if len(encoded) > _PACKER_KEEP:
                self._pack = self._newPack()
        return encoded

    def encodeAfter(self, prefix: bytes, value: object) -> bytes:
        """
        Encode a value behind some bytes, in one buffer: C{prefix +
        self.encode(value)}, with a large C{bytes} value copied only once
        (the packer would copy it twice, and the concatenation once more).

        @param prefix: Bytes to put first (a record type byte, say).
        @param value: A value made of the supported types.
        @return: C{prefix} followed by the value's encoding.
        @raise EncodeError: As L{encode} does.
        """
        if type(value) is bytes and len(value) > _COUNT_HEADERS_SIZE:
            size = len(value)
            if size <= 0xFFFF:
                header = _BIN16_HEADER.pack(0xC5, size)
            elif size <= 0xFFFFFFFF:
                header = _BIN32_HEADER.pack(0xC6, size)
            else:
                raise EncodeError(f"value: bytes of {size} bytes cannot be encoded (over 4 GiB)")
            return b"".join((prefix, header, value))
        return prefix + self.encode(value)

    def encodeParts(self, value: object) -> tuple[bytes, bytes | bytearray | memoryview] | None:
        """
        Split the encoding of a flat binary value into its msgpack header and
        its payload, without copying the payload: for a caller that writes
        both parts straight where they go (a record's plaintext buffer),
        instead of joining them into a new buffer first.  C{header +
        bytes(payload)} is exactly C{self.encode(value)}.

        @param value: Any value.  Only a C{bytes}, a C{bytearray} or a
            C-contiguous C{memoryview} is split; see the return value for
            the rest.
        @return: C{(header, payload)}: the msgpack bin header (for C{bytes}
            and a C{memoryview}) or ext header with its type byte (for a
            C{bytearray}), and the value itself as the payload (a
            C{memoryview} of another format than bytes, or of several
            dimensions, is cast to a flat view of its bytes).  The payload
            is the caller's object, not a copy: it must not change before
            the caller is done with it.  L{None} for any other value (or a
            non-contiguous C{memoryview}), which L{encode} handles.
        @raise EncodeError: The value is over 4 GiB.
        """
        kind = type(value)
        if kind is bytes:
            return _binHeader(len(cast(bytes, value))), cast(bytes, value)
        if kind is bytearray:
            return _bytearrayHeader(len(cast(bytearray, value))), cast(bytearray, value)
        if kind is memoryview:
            view = cast(memoryview, value)
            if not view.c_contiguous:
                return None
            if view.ndim != 1 or view.format != "B":
                view = view.cast("B")
            return _binHeader(view.nbytes), view
        return None


def _binHeader(size: int) -> bytes:
    """
    The msgpack bin header of C{size} bytes, as L{encode} writes it.

    @param size: The length of the bytes.
    @return: 2, 3 or 5 bytes.
    @raise EncodeError: C{size} is over 4 GiB.
    """
    if size <= 0xFF:
        return _BIN8_HEADER.pack(0xC4, size)
    if size <= 0xFFFF:
        return _BIN16_HEADER.pack(0xC5, size)
    if size <= 0xFFFFFFFF:
        return _BIN32_HEADER.pack(0xC6, size)
    raise EncodeError(f"value: bytes of {size} bytes cannot be encoded (over 4 GiB)")


def _bytearrayHeader(size: int) -> bytes:
    """
    The msgpack ext header and type byte of a C{bytearray} of C{size}
    bytes, as L{encode} writes it (fixext for 1, 2, 4, 8 and 16 bytes).

    @raise EncodeError: C{size} is over 4 GiB.
    """
    fixed = _FIXEXT_HEADERS.get(size)
    if fixed is not None:
        return fixed
    if size <= 0xFF:
        return _EXT8_HEADER.pack(0xC7, size, EXT_BYTEARRAY)
    if size <= 0xFFFF:
        return _EXT16_HEADER.pack(0xC8, size, EXT_BYTEARRAY)
    if size <= 0xFFFFFFFF:
        return _EXT32_HEADER.pack(0xC9, size, EXT_BYTEARRAY)
    raise EncodeError(f"value: bytearray of {size} bytes cannot be encoded (over 4 GiB)")


_PACKER_BUFFER: Final = 1024
"""A new packer's buffer size."""

_PACKER_KEEP: Final = 1024 * 1024
"""A packer that produced more than this is replaced by a new one."""

_BIN8_HEADER: Final = struct.Struct(">BB")
_BIN16_HEADER: Final = struct.Struct(">BH")
_BIN32_HEADER: Final = struct.Struct(">BI")
_EXT8_HEADER: Final = struct.Struct(">BBB")
_EXT16_HEADER: Final = struct.Struct(">BHB")
_EXT32_HEADER: Final = struct.Struct(">BIB")
_FIXEXT_HEADERS: Final = {
    size: bytes((code, EXT_BYTEARRAY))
    for size, code in ((1, 0xD4), (2, 0xD5), (4, 0xD6), (8, 0xD7), (16, 0xD8))
}

_ArrayHook = Callable[[list[object]], object]
_MapHook = Callable[[list[tuple[object, object]]], dict[object, object]]
_ExtHook = Callable[[int, bytes], object]

# Where the hooks of one Decoder count, in a list each call resets: the
# markers made minus those consumed, and the objects the value may still
# make.
_UNCLAIMED: Final = 0
_BUDGET: Final = 1


def _checkHashes(keys: list[object], what: str, maxCollisions: int) -> None:
    """
    Refuse keys that would make building a dict or set slow, in linear time
    and before building it.

    @param keys: The keys or members.
    @param what: What they are, for the message.
    @param maxCollisions: C{Limits.maxHashCollisions}.
    @raise DecodeError: If more than C{maxCollisions} share one hash value,
        or one cannot be hashed.
    """
    try:
        hashes = list(map(hash, keys))
    except TypeError as e:
        raise DecodeError(
            f"one of the {what} is a list, dict or set, which Python cannot "
            "hash; the peer is not a NetStructer peer"
        ) from e
    # Distinct hash values of the supported types are distinct ints of less
    # than 2**61 in size, each its own hash: this set cannot collide.
    if len(set(hashes)) == len(hashes):
        return
    most = max(Counter(hashes).values())
    if most > maxCollisions:
        raise DecodeError(
            f"{most} {what} share one hash value, more than maxHashCollisions="
            f"{maxCollisions}; the peer may be trying to slow this program "
            "down (hash flooding)"
        )


def _buildSet(items: list[object], mutable: bool, maxCollisions: int) -> object:
    """
    Build a decoded set or frozenset.

    @param items: Its members.
    @param mutable: C{True} for a set, C{False} for a frozenset.
    @param maxCollisions: The most members that may share one hash.
    @return: The set.
    @raise DecodeError: If members collide, repeat or cannot be hashed.
    """
    count = len(items)
    if count > maxCollisions:
        _checkHashes(items, "members of one set", maxCollisions)
    try:
        members = set(items) if mutable else frozenset(items)
    except TypeError as e:
        raise DecodeError(
            "a set member is a list, dict or set, which Python cannot "
            "hash; the peer is not a NetStructer peer"
        ) from e
    if len(members) != count:
        raise DecodeError("a set holds the same member twice; the peer is not a NetStructer peer")
    return members


def _decodeComplex(data: bytes) -> complex:
    """
    @param data: The payload of a complex extension.
    @return: The complex number.
    @raise DecodeError: The payload has the wrong size.
    """
    if len(data) != _COMPLEX_STRUCT.size:
        raise DecodeError(
            f"complex extension has {len(data)} bytes instead of {_COMPLEX_STRUCT.size}"
        )
    return complex(*_COMPLEX_STRUCT.unpack(data))


def _decodeBigInt(data: bytes, maxIntBytes: int) -> int:
    """
    @param data: The payload of a big int extension.
    @param maxIntBytes: The longest payload accepted.
    @return: The integer.
    @raise DecodeError: It is too long, or not in its one valid form.
    """
    size = len(data)
    if size > maxIntBytes:
        raise DecodeError(
            f"an int of {size} bytes is longer than maxIntBytes={maxIntBytes}; "
            "raise Limits.maxIntBytes if you trust the peer"
        )
    number = int.from_bytes(data, "big", signed=True)
    if _INT64_MIN <= number <= _UINT64_MAX or _bigIntBytes(number) != size:
        raise DecodeError(
            "big int extension is not in its one valid form (it fits 64 "
            "bits, or has a redundant leading byte)"
        )
    return number


def _makeHooks(limits: Limits) -> tuple[_ArrayHook, _MapHook, _ExtHook, list[int]]:
    """
    Make the hooks that build values for msgpack's unpacker.

    They are closures rather than methods because msgpack calls them for
    every array, map and extension, and a closure call is cheaper.

    @param limits: The limits they enforce.
    @return: The C{list_hook}, C{object_pairs_hook} and C{ext_hook}, and the
        list where they count (see L{_UNCLAIMED} and L{_BUDGET}).
    """
    maxCollisions = limits.maxHashCollisions
    maxIntBytes = limits.maxIntBytes
    counts = [0, 0]

    def arrayReceived(items: list[object]) -> object:
        """
        Build the value of a decoded msgpack array: C{items}, or the tuple,
        set or frozenset its marker asks for (see L{_buildSet}).
        """
        if items and type(items[0]) is _Marker:
            marker = items[0]
            del items[0]
            counts[_UNCLAIMED] -= 1
            if marker is _TUPLE_MARKER:
                return tuple(items)
            return _buildSet(items, marker is _SET_MARKER, maxCollisions)
        return items

    def mapReceived(pairs: list[tuple[object, object]]) -> dict[object, object]:
        """
        Build the dict of a decoded msgpack map.

        @param pairs: The map's (key, value) pairs.
        @return: The dict.
        @raise DecodeError: If keys collide, repeat or cannot be hashed.
        """
        count = len(pairs)
        if count > maxCollisions:
            _checkHashes(list(map(_first, pairs)), "keys of one dict", maxCollisions)
        try:
            result = dict(pairs)
        except TypeError as e:
            raise DecodeError(
                "a dict key is a list, dict or set, which Python cannot hash; "
                "the peer is not a NetStructer peer"
            ) from e
        if len(result) != count:
            raise DecodeError("a dict holds the same key twice; the peer is not a NetStructer peer")
        return result

    def extReceived(code: int, data: bytes) -> object:
        """
        Decode a msgpack extension: a marker, a bytearray, a complex or a
        big integer; a L{DecodeError} for an unknown code or a bad payload.
        """
        marker = _MARKERS.get(code)
        if marker is not None:
            if data:
                raise DecodeError(
                    f"marker extension {code} has a payload of {len(data)} bytes; markers have none"
                )
            counts[_UNCLAIMED] += 1
            return marker
        if code == EXT_BYTEARRAY:
            return bytearray(data)
        if code == EXT_COMPLEX:
            return _decodeComplex(data)
        if code == EXT_BIGINT:
            return _decodeBigInt(data, maxIntBytes)
        raise DecodeError(
            f"unknown extension code {code}; the peer speaks another protocol "
            "version, or is not a NetStructer peer"
        )

    return arrayReceived, mapReceived, extReceived, counts


def _makeCountedHooks(
    arrayReceived: _ArrayHook, mapReceived: _MapHook, counts: list[int], maxObjects: int
) -> tuple[_ArrayHook, _MapHook]:
    """
    Make hooks that count the objects a value makes, for inputs long enough
    to make more than C{maxObjects}.

    @param arrayReceived: The C{list_hook} to count for.
    @param mapReceived: The C{object_pairs_hook} to count for.
    @param counts: Where they count; C{counts[_BUDGET]} is reset by each call.
    @param maxObjects: C{Limits.maxObjects}.
    @return: The counting C{list_hook} and C{object_pairs_hook}.
    """

    def tooManyObjects() -> DecodeError:
        """
        @return: The error for a value that makes too many objects.
        """
        return DecodeError(
            f"value makes more than maxObjects={maxObjects} objects; raise "
            "Limits.maxObjects if you trust the peer"
        )

    def arrayCounted(items: list[object]) -> object:
        """
        L{arrayReceived}, counting objects against C{maxObjects}.

        @param items: The array's items.
        @return: The array's value.
        @raise DecodeError: Once the value has made too many objects.
        """
        counts[_BUDGET] -= len(items) + 1
        if counts[_BUDGET] < 0:
            raise tooManyObjects()
        return arrayReceived(items)

    def mapCounted(pairs: list[tuple[object, object]]) -> dict[object, object]:
        """
        L{mapReceived}, counting objects against C{maxObjects}.

        @param pairs: The map's (key, value) pairs.
        @return: The dict.
        @raise DecodeError: Once the value has made too many objects.
        """
        counts[_BUDGET] -= 2 * len(pairs) + 1
        if counts[_BUDGET] < 0:
            raise tooManyObjects()
        return mapReceived(pairs)

    return arrayCounted, mapCounted


_DECODED_TYPES: Final = _SCALARS | _CONTAINERS | {bytearray, _Marker}
"""Every type msgpack and the hooks make: any other is a foreign object."""


def _makeForeignHooks(
    arrayReceived: _ArrayHook, mapReceived: _MapHook
) -> tuple[_ArrayHook, _MapHook]:
    """
    Make hooks that refuse objects of foreign types among the items they are
    given: msgpack's timestamps, which it decodes by itself.  Each decoded
    object is an item of one container, so they look at each once.

    @param arrayReceived: The C{list_hook} to check for.
    @param mapReceived: The C{object_pairs_hook} to check for.
    @return: The checking C{list_hook} and C{object_pairs_hook}.
    """
    known = _DECODED_TYPES.issuperset

    def arrayChecked(items: list[object]) -> object:
        """
        L{arrayReceived}, once no item is foreign.

        @param items: The array's items.
        @return: The array's value.
        @raise DecodeError: If an item is foreign.
        """
        if not known(map(type, items)):
            raise _timestampError()
        return arrayReceived(items)

    def mapChecked(pairs: list[tuple[object, object]]) -> dict[object, object]:
        """
        L{mapReceived}, once no key or value is foreign.

        @param pairs: The map's (key, value) pairs.
        @return: The dict.
        @raise DecodeError: If a key or value is foreign.
        """
        if not known(map(type, chain.from_iterable(pairs))):
            raise _timestampError()
        return mapReceived(pairs)

    return arrayChecked, mapChecked


_first: Final = itemgetter(0)
_unpackb: Final = msgpack.unpackb

# The first bytes of str 8/16/32 and bin 8/16/32: values that cannot nest.
_FLAT_HEADERS: Final = frozenset({0xC4, 0xC5, 0xC6, 0xD9, 0xDA, 0xDB})
# The sizes of the array 16/32 headers a batch may start with, and of the
# length field of ext 8/16/32.
_BATCH_HEADER_SIZES: Final = {0xDC: 3, 0xDD: 5}
_EXT_LENGTH_SIZES: Final = {0xC7: 1, 0xC8: 2, 0xC9: 4}
_CLAIM: Final = re.compile(r"(\d+) exceeds max_(array|map)_len")
_UNPACK_ERRORS: Final = (msgpack.UnpackException, ValueError, TypeError)


def _acceleratorLimits(limits: Limits) -> tuple[int, int, int, int, int, int]:
    """
    @param limits: Limits to decode with.
    @return: Them as the accelerator's C{decode} and C{decodeMany} take
        them, after the input.
    """
    return (
        limits.maxSize,
        limits.maxDepth,
        limits.maxItems,
        limits.maxIntBytes,
        limits.maxObjects,
        limits.maxHashCollisions,
    )


class Decoder:
    """
    A reusable decoder, for one connection: keeps its hooks, and the
    unpacker of its checking pass, between calls.  Not thread-safe: use one
    per connection or thread.

    @ivar limits: The limits to enforce.
    """

    def __init__(self, limits: Limits = DEFAULT_LIMITS, *, accelerated: bool = True) -> None:
        """
        @param limits: The limits to enforce.
        @param accelerated: Whether to use the C accelerator, if there is
            one (see L{ACCELERATED}); C{False} runs the reference
            implementation.
        """
        self.limits = limits
        self._fast = _speedups if accelerated else None
        self._fastLimits = _acceleratorLimits(limits)
        self._arrayHook, self._mapHook, self._extHook, self._counts = _makeHooks(limits)
        self._countedHooks: tuple[_ArrayHook, _MapHook] | None = None
        self._maxItems = limits.maxItems
        self._quickSize = min(_QUICK_SIZE, limits.maxDepth, limits.maxSize)
        # A value takes at least one byte for each container and each item,
        # so a shorter input cannot make more than maxObjects objects.
        self._countAbove = limits.maxObjects // 2
        self._skipper: msgpack.Unpacker | None = None
        self._skipped = 0

    def decode(self, data: bytes | bytearray | memoryview) -> object:
        """
        Decode one value.

        @param data: Exactly one encoded value.  A C{bytearray} or
            C{memoryview} (which must be of bytes, like
            C{memoryview(record)[1:]}) is copied to C{bytes} first: the
            checks this decoder makes run fastest on C{bytes}.
        @return: The value.
        @raise DecodeError: If C{data} is not exactly one valid encoded
            value, or is over a limit.  The decoder stays usable.
        """
        fast = self._fast
        if fast is not None:
            try:
                return fast.decode(data, *self._fastLimits)
            except ValueError:
                # Refused: the reference implementation below says why.
                pass
        if type(data) is not bytes:
            if len(data) > _COUNT_HEADERS_SIZE and data[0] in _FLAT_HEADERS:
                # A large str or bin: nothing in it can nest, hold an
                # extension or be hashed, so msgpack reads it in place,
                # without the copy to bytes (and its page faults).
                return self._decodeFlat(data)
            data = bytes(data)
        size = len(data)
        counts = self._counts
        counts[_UNCLAIMED] = 0
        arrayHook = self._arrayHook
        mapHook = self._mapHook
        if size > self._quickSize:
            if size > self.limits.maxSize:
                raise self._overSize(size)
            # A value that is not an array or map cannot nest, and msgpack
            # reserves nothing for a str, bin or ext before reading it.
            if data[0] in _CONTAINER_HEADERS:
                self._check(data, size, self.limits.maxDepth)
        if size > self._countAbove:
            counts[_BUDGET] = self.limits.maxObjects
            if self._countedHooks is None:
                self._countedHooks = _makeCountedHooks(
                    arrayHook, mapHook, counts, self.limits.maxObjects
                )
            arrayHook, mapHook = self._countedHooks
        return self._unpack(data, size, arrayHook, mapHook)

    def decodeMany(
        self, data: bytes | bytearray | memoryview, maxValues: int | None = None
    ) -> list[object]:
        """
        Decode a batch of values: one msgpack array (of any array header)
        whose items are encoded values, each exactly as L{encode} writes it
        alone.

        Each value is checked as L{decode} checks it alone: C{maxDepth},
        C{maxItems} and C{maxObjects} apply to each value (the outer array
        is not a level of any value), and C{maxSize} to the whole input.

        @param data: Exactly one batch.  A C{bytearray} or C{memoryview} is
            copied to C{bytes} first, as by L{decode}.
        @param maxValues: The most values the batch may hold; C{maxItems}
            by default.
        @return: The values, in order; at least one.
        @raise DecodeError: If C{data} is not one array of at least one
            value, if the array starts with a tuple, set or frozenset marker
            (a batch is not a tuple or set), if bytes follow it, or if any
            value is not a valid encoded value or is over a limit.  The
            decoder stays usable.
        """
        fast = self._fast
        if fast is not None:
            try:
                return cast(
                    "list[object]",
                    fast.decodeMany(
                        data,
                        *self._fastLimits,
                        self._maxItems if maxValues is None else maxValues,
                    ),
                )
            except ValueError:
                pass
        if type(data) is not bytes:
            data = bytes(data)
        size = len(data)
        if size > self.limits.maxSize:
            raise self._overSize(size)
        start, count = self._batchHeader(
            data, size, self._maxItems if maxValues is None else maxValues
        )
        levels = self.limits.maxDepth + 1
        if size > self._countAbove or levels > _PARSER_DEPTH or count > self._maxItems:
            # The objects are counted for each value, or the outer array
            # would leave msgpack's fixed parser stack one level short, or
            # unpackb's array length limit, which binds every array, would
            # have to exceed maxItems for the outer one.
            return self._decodeEach(data, size, start, count)
        self._counts[_UNCLAIMED] = 0
        if size > self._quickSize:
            self._check(data, size, levels)
        batch = self._unpack(data, size, self._arrayHook, self._mapHook)
        # The first item is no marker (checked above), so the hook left the
        # outer array a list.
        return cast("list[object]", batch)

    def _unpack(self, data: bytes, size: int, arrayHook: _ArrayHook, mapHook: _MapHook) -> object:
        """
        Build the value of an input with one C{unpackb} call, once the
        checks its size calls for have passed.

        @param data: The input.
        @param size: Its length.
        @param arrayHook: The C{list_hook} to build with.
        @param mapHook: The C{object_pairs_hook} to build with.
        @return: The value.
        @raise DecodeError: If the input is not one valid encoded value.
        """
        foreign = 0xFF in data
        if foreign:
            arrayHook, mapHook = _makeForeignHooks(arrayHook, mapHook)
        maxItems = self._maxItems
        try:
            value = _unpackb(
                data,
                list_hook=arrayHook,
                object_pairs_hook=mapHook,
                ext_hook=self._extHook,
                strict_map_key=False,
                max_array_len=size if size < maxItems else maxItems,
                max_map_len=size // 2 if size // 2 < maxItems else maxItems,
            )
        except DecodeError:
            raise
        except _UNPACK_ERRORS as e:
            if not size:
                raise DecodeError("input is empty; a value takes at least one byte") from e
            raise self._explain(e) from e
        except RecursionError as e:
            raise _tooDeepForPython() from e
        if self._counts[_UNCLAIMED]:
            raise _misplacedMarker()
        if foreign and type(value) not in _DECODED_TYPES:
            raise _timestampError()
        return value

    def _batchHeader(self, data: bytes, size: int, maxValues: int) -> tuple[int, int]:
        """
        Read a batch's array header, and refuse a batch whose first item
        is a marker.

        @param data: The input.
        @param size: Its length, at most C{maxSize}.
        @param maxValues: The most values it may hold.
        @return: Where the first value starts, and how many values there are.
        @raise DecodeError: If C{data} does not start with the header of an
            array of at least one and at most C{maxValues} values that fit
            in it, or its first value is a tuple, set or frozenset marker.
        """
        if not size:
            raise DecodeError("input is empty; a batch is an array of at least one value")
        first = data[0]
        if 0x90 <= first <= 0x9F:
            start = 1
            count = first & 0x0F
        else:
            start = _BATCH_HEADER_SIZES.get(first, 0)
            if not start:
                raise DecodeError(
                    f"a batch is not a msgpack array (it starts with byte {first:02x}); "
                    "the peer is not a NetStructer peer"
                )
            if size < start:
                raise DecodeError("input ends in the middle of a value (truncated)")
            count = int.from_bytes(data[1:start], "big")
        if not count:
            raise DecodeError("a batch holds no values; a batch is an array of at least one value")
        if count > maxValues:
            raise DecodeError(
                f"a batch holds {count} values, more than the {maxValues} one batch may hold"
            )
        if count > size - start:
            raise DecodeError(
                f"a batch claims {count} values, more than the input holds (truncated or corrupt)"
            )
        # An empty extension of a marker code first would make the outer
        # array a tuple, set or frozenset; its length may take 1, 2 or 4 bytes.
        width = _EXT_LENGTH_SIZES.get(data[start], 0)
        codeAt = start + 1 + width
        if (
            width
            and codeAt < size
            and not any(data[start + 1 : codeAt])
            and data[codeAt] in _MARKERS
        ):
            raise DecodeError(
                "a batch starts with a tuple, set or frozenset marker; a batch "
                "is a plain array of values, so the peer is not a NetStructer peer"
            )
        return start, count

    def _decodeEach(self, data: bytes, size: int, start: int, count: int) -> list[object]:
        """
        Decode a batch one value at a time, with L{decode}: for inputs long
        enough that C{maxObjects} may bind, which must bind for each value.

        @param data: The input.
        @param size: Its length.
        @param start: Where its first value starts.
        @param count: How many values its header claims.
        @return: The values.
        @raise DecodeError: As L{decodeMany} does.
        """
        # A pass that builds nothing finds where each value ends.
        finder = msgpack.Unpacker(max_buffer_size=size)
        finder.feed(memoryview(data)[start:])
        decodeOne = self.decode
        batch: list[object] = []
        end = start
        for _ in range(count):
            try:
                finder.skip()
            except (msgpack.UnpackException, ValueError) as e:
                raise self._explain(e) from e
            begin, end = end, start + finder.tell()
            batch.append(decodeOne(data[begin:end]))
        if end != size:
            raise self._explain(msgpack.ExtraData(None, b""))
        return batch

    def _overSize(self, size: int) -> DecodeError:
        """
        @param size: The length of an input over C{maxSize}.
        @return: The error to raise for it.
        """
        return DecodeError(
            f"input of {size} bytes is over maxSize={self.limits.maxSize}; "
            "raise Limits.maxSize if you trust the peer"
        )

    def _decodeFlat(self, data: bytes | bytearray | memoryview) -> object:
        """
        Decode a large str or bin value from a buffer, without copying it
        first.

        @param data: The input; its first byte is a str 8/16/32 or bin
            8/16/32 header.
        @return: The value.
        @raise DecodeError: If it is over C{maxSize}, truncated, followed by
            more bytes, or (for a str) not UTF-8.
        """
        size = len(data)
        if size > self.limits.maxSize:
            raise self._overSize(size)
        try:
            return _unpackb(data, max_ext_len=0, max_array_len=0, max_map_len=0)
        except _UNPACK_ERRORS as e:
            raise self._explain(e) from e

    def _check(self, data: bytes, size: int, levels: int) -> None:
        """
        Check, building nothing, that an input is one complete msgpack
        object, and not too deep.

        @param data: The input.
        @param size: Its length.
        @param levels: How many containers it may nest: C{maxDepth}, or one
            more for a batch's outer array.  At most L{_PARSER_DEPTH}.
        @raise DecodeError: If it is not.
        """
        prefix = b""
        if size > levels and (
            size > _COUNT_HEADERS_SIZE or len(data.translate(None, _NOT_HEADERS)) > levels
        ):
            prefix = b"\x91" * (_PARSER_DEPTH - levels)
        if size > _REUSE_SIZE:
            skipper = msgpack.Unpacker(max_buffer_size=size + len(prefix))
            start = 0
        else:
            if self._skipper is None:
                self._skipper = msgpack.Unpacker(
                    read_size=4096, max_buffer_size=_REUSE_SIZE + _PARSER_DEPTH
                )
                self._skipped = 0
            skipper = self._skipper
            start = self._skipped
        try:
            if prefix:
                skipper.feed(prefix)
            skipper.feed(data)
            skipper.skip()
            end = start + len(prefix) + size
            if skipper.tell() != end:
                raise msgpack.ExtraData(None, b"")
        except (msgpack.UnpackException, ValueError) as e:
            if skipper is self._skipper:
                self._skipper = None
            raise self._explain(e) from e
        if skipper is self._skipper:
            self._skipped = end

    def _explain(self, error: Exception) -> DecodeError:
        """
        Say what a msgpack error means for the peer's input.

        @param error: What unpacking raised.
        @return: An error for the caller to raise.
        """
        if isinstance(error, msgpack.StackError):
            return DecodeError(
                f"value nested deeper than maxDepth={self.limits.maxDepth}; raise "
                "Limits.maxDepth if you trust the peer"
            )
        if isinstance(error, msgpack.ExtraData):
            return DecodeError(
                "input holds bytes after the end of the value; the peer framed "
                "its records wrongly, or is not a NetStructer peer"
            )
        if isinstance(error, msgpack.FormatError):
            return DecodeError("input is not msgpack (it holds the never-used byte c1)")
        if isinstance(error, UnicodeDecodeError):
            return DecodeError(f"a str is not valid UTF-8 ({error.reason})")
        message = str(error)
        if isinstance(error, msgpack.OutOfData) or "incomplete" in message:
            return DecodeError("input ends in the middle of a value (truncated)")
        claim = _CLAIM.match(message)
        if claim is not None:
            items = int(claim.group(1))
            if items > self.limits.maxItems:
                return DecodeError(
                    f"a list, tuple, set or dict holds {items} items, more than "
                    f"maxItems={self.limits.maxItems}; raise Limits.maxItems if "
                    "you trust the peer"
                )
            return DecodeError(
                f"an array or map claims {items} items, more than the input "
                "holds (truncated or corrupt)"
            )
        if "timestamp" in message:
            return _timestampError()
        return DecodeError(f"input is not a valid encoded value ({message})")


def _misplacedMarker() -> DecodeError:
    """
    @return: The error for a marker that is not the first item of an array.
    """
    return DecodeError(
        "a tuple, set or frozenset marker appears other than as the "
        "first item of an array; the peer is not a NetStructer peer"
    )


def _timestampError() -> DecodeError:
    """
    @return: The error for msgpack's timestamp extension.
    """
    return DecodeError(
        "input holds a msgpack timestamp (extension -1), which is not part of "
        "the protocol; the peer is not a NetStructer peer"
    )


def _tooDeepForPython() -> DecodeError:
    """
    @return: The error for a value within C{maxDepth} that Python cannot
        build: a dict key or set member nested so deeply (near 1000 levels)
        that hashing or comparing it exhausts Python's recursion limit.
    """
    return DecodeError(
        "a dict key or set member is nested too deeply for Python to hash or "
        "compare it; keep Limits.maxDepth well below Python's recursion limit"
    )


def decode(
    data: bytes | bytearray | memoryview,
    *,
    limits: Limits = DEFAULT_LIMITS,
    accelerated: bool = True,
) -> object:
    """
    Decode one value.

    Shares no state between calls or threads; a connection should rather
    keep a L{Decoder}, which is faster.

    @param data: Exactly one encoded value.
    @param limits: The limits to enforce.
    @param accelerated: Whether to use the C accelerator, if there is one
        (see L{ACCELERATED}); C{False} runs the reference implementation.
    @return: The value.
    @raise DecodeError: If C{data} is not exactly one valid encoded value,
        or is over a limit.
    """
    if accelerated and _speedups is not None:
        try:
            return _speedups.decode(data, *_acceleratorLimits(limits))
        except ValueError:
            # Refused: the reference decoder says why.
            pass
    return Decoder(limits, accelerated=False).decode(data)
