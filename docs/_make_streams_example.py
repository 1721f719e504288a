# -*- test-case-name: tests.test_streams_spec -*-
"""
The worked example of the "Streams" section of C{docs/protocol.rst}: the
bodies of the streams records of three streams, written from the document
alone.

Nothing here comes from C{netstructer.streams}: the records are built with
C{struct} and C{hashlib}, field by field, as an implementation in another
language would build them.  The one exception is the encoding of the
example's meta values, taken from L{netstructer.values.encode} (section 6
is checked against it elsewhere).

Print the blocks, ready to paste into the document, with::

    PYTHONPATH=. python docs/_make_streams_example.py

C{tests/test_streams_spec.py} checks that the document holds exactly these
blocks, and that two L{StreamsEngine<netstructer.streams.StreamsEngine>}s
running the same example send exactly these records.
"""

from __future__ import annotations

import hashlib
import importlib.util
import struct
import sys
from pathlib import Path
from types import ModuleType

# The records and their type bytes.
OPEN = 0x20
ACCEPT = 0x21
DATA = 0x22
END = 0x23
WINDOW = 0x24
DONE = 0x25
ABORT = 0x26
SIZED = 0x01
RESUME = 0x02
REFUSED = 2

# The example.
CONTENT = b"hello, world\n"
HELD = 7
NAME_META = {"name": "hello.txt"}
LOG_META = "log"
FIRST_WINDOW = 8
RESUMED_WINDOW = 65536
REFUSAL = "no logs here"

U32 = struct.Struct(">I")
U64 = struct.Struct(">Q")


def _blocks() -> ModuleType:
    """
    The block renderer of the section 8 example's script, so that both
    scripts' blocks look alike.
    """
    path = Path(__file__).with_name("_make_worked_example.py")
    name = "_netstructer_streams_example_blocks"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def example() -> list[tuple[str, str, int, bytes]]:
    """
    The example's records, in the order each side sends them.

    @return: For each record: its block name, who sends it (C{"client"} or
        C{"server"}), its type and its body.
    """
    from netstructer.values import encode

    digest = hashlib.sha256(CONTENT).digest()
    held = hashlib.sha256(CONTENT[:HELD]).digest()
    nameMeta = encode(NAME_META)
    logMeta = encode(LOG_META)
    return [
        # Stream 1: the client sends the 13 bytes; the server grants 8, then 5.
        ("open", "client", OPEN, U32.pack(1) + bytes((SIZED,)) + U64.pack(13) + nameMeta),
        ("accept", "server", ACCEPT, U32.pack(1) + U32.pack(FIRST_WINDOW) + U64.pack(0)),
        ("data", "client", DATA, U32.pack(1) + U64.pack(0) + CONTENT[:8]),
        ("window", "server", WINDOW, U32.pack(1) + U32.pack(5)),
        ("data-2", "client", DATA, U32.pack(1) + U64.pack(8) + CONTENT[8:]),
        ("end", "client", END, U32.pack(1) + U64.pack(13) + digest),
        ("done", "server", DONE, U32.pack(1) + U64.pack(13) + digest),
        # Stream 3: the same content again, resumable; the server holds 7 bytes.
        (
            "open-resume",
            "client",
            OPEN,
            U32.pack(3) + bytes((SIZED | RESUME,)) + U64.pack(13) + nameMeta,
        ),
        (
            "accept-resume",
            "server",
            ACCEPT,
            U32.pack(3) + U32.pack(RESUMED_WINDOW) + U64.pack(HELD) + held,
        ),
        ("data-resume", "client", DATA, U32.pack(3) + U64.pack(HELD) + CONTENT[HELD:]),
        ("end-resume", "client", END, U32.pack(3) + U64.pack(13) + digest),
        ("done-resume", "server", DONE, U32.pack(3) + U64.pack(13) + digest),
        # Stream 2: the server offers a log of unknown size; the client refuses.
        ("open-log", "server", OPEN, U32.pack(2) + bytes((0,)) + logMeta),
        (
            "abort",
            "client",
            ABORT,
            U32.pack(2) + bytes((REFUSED,)) + REFUSAL.encode("utf-8"),
        ),
        ("abort-answer", "server", ABORT, U32.pack(2) + bytes((REFUSED,))),
    ]


_NOTES = {
    OPEN: ["stream ID", "flags", "size", "meta"],
    ACCEPT: ["stream ID", "window", "offset", "SHA-256 of the part held"],
    DATA: ["stream ID", "offset", "payload"],
    END: ["stream ID", "size", "SHA-256"],
    WINDOW: ["stream ID", "increment"],
    DONE: ["stream ID", "size", "SHA-256"],
    ABORT: ["stream ID", "code", "reason"],
}
_NAMES = {OPEN: "OPEN", ACCEPT: "ACCEPT", DATA: "DATA", END: "END", WINDOW: "WINDOW"}
_NAMES |= {DONE: "DONE", ABORT: "ABORT"}


def _fields(recordType: int, body: bytes, metas: dict[bytes, str]) -> list[tuple[bytes, str]]:
    """
    Cut a body into its fields, each with a note.

    @param metas: What each meta encodes, for its note.
    """
    fields: list[tuple[bytes, str]] = [(bytes((recordType,)), f"record type: {_NAMES[recordType]}")]
    streamID = U32.unpack_from(body)[0]
    fields.append((body[:4], f"stream ID {streamID}"))
    rest = body[4:]
    if recordType == OPEN:
        flags = rest[0]
        names = [name for bit, name in ((SIZED, "SIZED"), (RESUME, "RESUME")) if flags & bit]
        fields.append((rest[:1], f"flags: {' | '.join(names) or 'none'}"))
        rest = rest[1:]
        if flags & SIZED:
            fields.append((rest[:8], f"size: {U64.unpack_from(rest)[0]}"))
            rest = rest[8:]
        fields.append((rest, f"meta: {metas[rest]}, encoded"))
    elif recordType == ACCEPT:
        fields.append((rest[:4], f"window: {U32.unpack_from(rest)[0]} bytes of credit"))
        fields.append((rest[4:12], f"offset: {U64.unpack_from(rest, 4)[0]}"))
        if rest[12:]:
            fields.append((rest[12:], "SHA-256 of the first bytes held"))
    elif recordType == DATA:
        fields.append((rest[:8], f"offset: {U64.unpack_from(rest)[0]}"))
        fields.append((rest[8:], f"payload: {rest[8:]!r}"))
    elif recordType in (END, DONE):
        fields.append((rest[:8], f"size: {U64.unpack_from(rest)[0]}"))
        fields.append((rest[8:], "SHA-256 of the whole stream"))
    elif recordType == WINDOW:
        fields.append((rest, f"increment: {U32.unpack_from(rest)[0]} bytes"))
    elif rest[1:]:
        fields.append((rest[:1], f"code: {rest[0]} (REFUSED)"))
        fields.append((rest[1:], f"reason: {rest[1:].decode('utf-8')!r}"))
    else:
        fields.append((rest[:1], f"code: {rest[0]} (REFUSED), and no reason"))
    return fields


def streamsExample() -> list[object]:
    """
    @return: The section's blocks (as the section 8 script's C{Block}s), in
        order.
    """
    from netstructer.values import encode

    Block = _blocks().Block
    metas = {encode(meta): repr(meta) for meta in (NAME_META, LOG_META)}
    blocks = []
    for name, sender, recordType, body in example():
        block = Block(f"streams-{name}")
        for data, note in _fields(recordType, body, metas):
            block.add(data, note)
        block.values["sender"] = sender.encode("ascii")
        blocks.append(block)
    return blocks


def main() -> None:
    """
    Print the blocks.
    """
    for block in streamsExample():
        sys.stdout.write(block.render() + "\n")  # type: ignore[attr-defined]


if __name__ == "__main__":
    main()
