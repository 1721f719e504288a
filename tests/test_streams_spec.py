# -*- test-case-name: tests.test_streams_spec -*-
"""
Tests that the "Streams" section of C{docs/protocol.rst} says what
L{netstructer.streams} does: its tables are the code's constants, and two
engines running its worked example send exactly the records of its hex
blocks, which C{docs/_make_streams_example.py} builds from the document
alone.  (C{tests/test_spec.py} checks that the document holds exactly the
blocks that script prints.)
"""

from __future__ import annotations

import hashlib
import importlib.util
import re
import sys
from functools import cache
from types import ModuleType

from twisted.trial.unittest import SynchronousTestCase

from netstructer.channel import EXTENSION_RECORD_RANGES, EXTENSION_VERSIONS, Role
from netstructer.streams import (
    DEFAULT_CHUNK_SIZE,
    DEFAULT_IDLE_TIMEOUT,
    DEFAULT_MAX_STREAMS,
    DEFAULT_WINDOW,
    STREAMS_VERSION,
    AbortCode,
    IncomingStream,
    wire,
)
from netstructer.streams.engine import MAX_META_SIZE
from netstructer.streams.sources import BytesSource

from ._streamshost import Collector, EngineObserver, Pair, Pieces, Sent
from .test_spec import ROOT, documentText, hexBlocks, specTable

SCRIPT = ROOT / "docs" / "_make_streams_example.py"


@cache
def streamsReference() -> ModuleType:
    """
    Run C{docs/_make_streams_example.py}, once.

    @return: The module.
    """
    name = "_netstructer_streams_spec_reference"
    spec = importlib.util.spec_from_file_location(name, SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


def section() -> str:
    """
    @return: The text of the "Streams" section.
    """
    text = documentText()
    start = text.index("\nStreams\n=======\n")
    return text[start : text.index("\n8. Worked example\n", start)]


def flat(text: str) -> str:
    """
    @return: C{text} with its line breaks and runs of spaces made single
        spaces.
    """
    return re.sub(r"\s+", " ", text)


class TablesTests(SynchronousTestCase):
    """
    The section's tables and numbers are the code's.
    """

    def test_records(self) -> None:
        """
        The record types, their names and who sends them.
        """
        rows = specTable("streams-records")
        self.assertEqual(
            {row[0]: int(row[1], 16) for row in rows},
            {name: recordType for recordType, name in wire.RECORD_NAMES.items()},
        )
        senders = {row[0]: row[2] for row in rows}
        self.assertEqual(
            {name for name, sender in senders.items() if sender == "sender"},
            {"OPEN", "DATA", "END"},
        )
        self.assertEqual(senders["ABORT"], "either side")
        types = set(wire.RECORD_NAMES) | {0x27}
        self.assertEqual(types, set(EXTENSION_RECORD_RANGES["streams"]))
        self.assertEqual(EXTENSION_VERSIONS["streams"], STREAMS_VERSION)
        self.assertIn("Type ``0x27`` is reserved", section())

    def test_abortCodes(self) -> None:
        """
        The abort codes.
        """
        rows = specTable("streams-abort-codes")
        self.assertEqual(
            {int(row[0]): row[1] for row in rows}, {c.value: c.name for c in AbortCode}
        )

    def test_numbers(self) -> None:
        """
        The flags, bounds and the reference implementation's defaults the
        section gives.
        """
        text = flat(section())
        for phrase in [
            "SIZED (``0x01``",
            "RESUME (``0x02``",
            f"1 to {MAX_META_SIZE:,} bytes".replace(",", " "),
            "the 12 bytes before it",
            f"({DEFAULT_MAX_STREAMS} in the reference implementation)",
            f"({DEFAULT_IDLE_TIMEOUT:.0f} seconds by default)",
            f"grants {DEFAULT_WINDOW // 1024} KiB",
            f"at most {DEFAULT_CHUNK_SIZE // 1024} KiB at once",
            "0 to 256 bytes of UTF-8",
        ]:
            self.assertIn(phrase, text)
        self.assertEqual((wire.OPEN_SIZED, wire.OPEN_RESUME), (0x01, 0x02))
        self.assertEqual(wire.DATA_HEADER_SIZE, 12)
        self.assertEqual((wire.MAX_REASON, wire.MAX_WINDOW), (256, 2**31 - 1))


class WorkedExampleTests(SynchronousTestCase):
    """
    The section's worked example, run by two engines.
    """

    def test_blocks(self) -> None:
        """
        Each block is the type byte and body of one of the script's
        records, and the document has them all.
        """
        ref = streamsReference()
        blocks = hexBlocks()
        for name, _, recordType, body in ref.example():
            self.assertEqual(blocks[f"streams-{name}"].data, bytes((recordType,)) + body, name)
            self.assertIsInstance(wire.parseRecord(recordType, body), wire.StreamRecord.__args__)  # type: ignore[attr-defined]

    def test_engines(self) -> None:
        """
        Two engines running the example send exactly its records, in its
        order, each side.
        """
        ref = streamsReference()

        def serverOffered(stream: IncomingStream) -> None:
            collector = Collector(stream)
            if stream.resume:
                prefix = hashlib.sha256(ref.CONTENT[: ref.HELD])
                stream.accept(collector, offset=ref.HELD, prefix=prefix, window=ref.RESUMED_WINDOW)
            else:
                stream.accept(collector, window=ref.FIRST_WINDOW)

        pair = Pair(
            serverObserver=EngineObserver(onOffered=serverOffered),
            clientObserver=EngineObserver(onOffered=lambda stream: stream.refuse(ref.REFUSAL)),
        )
        first = Sent()
        pair.client.openStream(
            BytesSource(ref.CONTENT), first, meta=ref.NAME_META, size=len(ref.CONTENT)
        )
        pair.pump()
        source = BytesSource(ref.CONTENT)
        again = Sent()

        def onResume(offset: int, digest: bytes) -> None:
            prefix = hashlib.sha256(ref.CONTENT[:offset])
            self.assertEqual(prefix.digest(), digest)
            source.seek(offset)
            resumed.resumeFrom(offset, prefix)

        again.onResume = onResume
        resumed = pair.client.openStream(
            source, again, meta=ref.NAME_META, size=len(ref.CONTENT), resume=True
        )
        pair.pump()
        log = Sent()
        pair.server.openStream(Pieces(None), log, meta=ref.LOG_META)
        pair.pump()

        digest = hashlib.sha256(ref.CONTENT).digest()
        self.assertEqual((first.confirmed, again.confirmed), ((13, digest), (13, digest)))
        self.assertEqual(log.error.code, AbortCode.REFUSED)  # type: ignore[union-attr]
        for role, sender in ((Role.SERVER, "client"), (Role.CLIENT, "server")):
            expected = [(t, body) for _, who, t, body in ref.example() if who == sender]
            self.assertEqual(pair.delivered[role].records, expected, sender)
