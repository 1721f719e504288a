# -*- test-case-name: tests.test_spec -*-
"""
Tests that C{docs/protocol.rst}, the wire protocol specification, says what
the implementation does.

Every hex block of the document (marked C{.. spec-hex: NAME}) is reproduced
from L{netstructer.channel.Channel} with the document's fixed inputs, and
from the independent implementation in C{docs/_make_worked_example.py},
which this module runs; every table marked C{.. spec-table: NAME} is
compared with the constants of the code; every value-encoding example is
checked against L{netstructer.values}; and the independent implementation,
written from the document alone, completes handshakes and exchanges records
(VALUES records included) with L{netstructer.channel.Channel} in every suite.
"""

from __future__ import annotations

import ast
import base64
import importlib.util
import re
import struct
import sys
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

import msgpack
from cryptography.hazmat.primitives.asymmetric.x25519 import (
    X25519PrivateKey,
    X25519PublicKey,
)
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from twisted.trial.unittest import SynchronousTestCase

from netstructer import channel, errors, keys
from netstructer._crypto import TAG_SIZE, NNpsk0Initiator, _protocolName, _SymmetricState
from netstructer.channel import (
    BATCH_SIZE,
    HANDSHAKE_MAX_FRAME,
    MAGIC,
    MAX_BATCH_BODY,
    MAX_BATCH_VALUES,
    MAX_VALUE_SIZE_LIMIT,
    PROTOCOL_VERSION,
    Channel,
    CloseCode,
    CloseReceived,
    HandshakeCompleted,
    PingReceived,
    Role,
    ValueReceived,
    ValuesReceived,
    frameOverhead,
)
from netstructer.errors import (
    AuthenticationError,
    BufferDataError,
    ChannelClosedError,
    DecodeError,
    HandshakeError,
    NetStructerError,
    PeerVersionError,
    RemoteProtocolError,
    TruncationError,
)
from netstructer.keys import Keyring, generateKey, parseKey
from netstructer.values import DEFAULT_LIMITS, Limits, decode, encode

ROOT = Path(__file__).resolve().parent.parent
DOCUMENT = ROOT / "docs" / "protocol.rst"
SCRIPT = ROOT / "docs" / "_make_worked_example.py"

EXAMPLE_KEY = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
EXAMPLE_VALUE = ["hi im haytam", 128, {b"gg": "gg"}, {1, 2, 6, 4}, (False, True)]
EXAMPLE_VALUES: list[object] = [(1, 2), "two"]
CLIENT_EPHEMERAL = bytes([0x11] * 32)
SERVER_EPHEMERAL = bytes([0x22] * 32)

# A hex block line: 4 spaces, a 47-column hex field, 3 spaces, a note.  A
# note at the left of its column starts a field; the lines after it, up to
# the next such note, continue the field (their notes are indented by two
# spaces).
_HEX_COLUMN = slice(4, 51)
_NOTE_COLUMN = slice(54, None)
_HEX_BYTES = re.compile(r"[0-9a-f]{2}( [0-9a-f]{2})*")
# The start of any hex dump line, marked or not: at least 4 bytes.
_HEX_DUMP_LINE = re.compile(r"^ +([0-9a-f]{2} ){3}[0-9a-f]{2}( |$)")
_INLINE_HEX = re.compile(r"``([0-9a-f]{2}(?: [0-9a-f]{2})+)``")
_BORDER = re.compile(r"^=+( +=+)*$")


@cache
def documentText() -> str:
    """
    @return: The text of C{docs/protocol.rst}.
    """
    return DOCUMENT.read_text(encoding="utf-8")


@cache
def reference() -> ModuleType:
    """
    Run C{docs/_make_worked_example.py}, once.

    @return: The module.
    """
    name = "_netstructer_spec_reference"
    spec = importlib.util.spec_from_file_location(name, SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    # Dataclasses look their module up in sys.modules.
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


@dataclass
class HexBlock:
    """
    A C{.. spec-hex: NAME} block of the document.

    @ivar name: Its name.
    @ivar text: Its text, from the marker to the end of the literal block.
    @ivar lines: The numbers (from 0) of its lines in the document.
    @ivar fields: Its fields: the bytes of each annotated run of lines, and
        the note's lines.
    """

    name: str
    text: str
    lines: range
    fields: list[tuple[bytes, list[str]]] = field(default_factory=list)

    @property
    def data(self) -> bytes:
        """
        All the block's bytes.
        """
        return b"".join(data for data, _ in self.fields)

    def field(self, prefix: str) -> bytes:
        """
        @param prefix: The start of a field's note, e.g. C{"h3:"}.
        @return: The bytes of the one field whose note starts so.
        """
        (found,) = [data for data, notes in self.fields if notes[0].startswith(prefix)]
        return found


@cache
def hexBlocks() -> dict[str, HexBlock]:
    """
    Parse the document's C{.. spec-hex: NAME} blocks.

    @return: The blocks by name.
    """
    lines = documentText().splitlines()
    blocks: dict[str, HexBlock] = {}
    for number, line in enumerate(lines):
        marker = re.fullmatch(r"\.\. spec-hex: ([\w-]+)", line)
        if marker is None:
            continue
        name = marker.group(1)
        assert name not in blocks, f"two hex blocks are named {name}"
        assert lines[number + 1 : number + 4] == ["", "::", ""], f"{name}: not a literal block"
        end = number + 4
        while end < len(lines) and lines[end].startswith("    "):
            end += 1
        block = HexBlock(name, "\n".join(lines[number:end]) + "\n", range(number, end))
        for content in lines[number + 4 : end]:
            hexPart = content[_HEX_COLUMN].strip()
            note = content[_NOTE_COLUMN]
            data = b""
            if hexPart:
                assert _HEX_BYTES.fullmatch(hexPart), f"{name}: bad hex {hexPart!r}"
                data = bytes.fromhex(hexPart)
            if note and not note.startswith(" "):
                # A note at the left of its column starts a field.
                block.fields.append((data, [note]))
            else:
                # No note, or an indented one: the previous field goes on.
                previous, notes = block.fields[-1]
                block.fields[-1] = (previous + data, [*notes, note.strip()] if note else notes)
        blocks[name] = block
    return blocks


def _cells(line: str, starts: list[int]) -> list[str]:
    bounds = [*starts[1:], len(line) + 1]
    return [line[start:end].strip() for start, end in zip(starts, bounds, strict=True)]


@cache
def specTable(name: str) -> tuple[tuple[str, ...], ...]:
    """
    Parse the simple table after C{.. spec-table: NAME}.  Continuation lines
    (first cell empty) are joined to their row.

    @param name: The table's name.
    @return: Its body rows, as tuples of cell texts.
    """
    lines = documentText().splitlines()
    index = lines.index(f".. spec-table: {name}") + 1
    while not lines[index].strip():
        index += 1
    border = lines[index]
    assert _BORDER.match(border), f"{name}: no table after the marker"
    starts = [match.start() for match in re.finditer(r"=+", border)]
    index += 1
    while not _BORDER.match(lines[index]):
        index += 1
    index += 1
    rows: list[list[str]] = []
    while not _BORDER.match(lines[index]):
        line = lines[index]
        index += 1
        if not line.strip():
            continue
        cells = _cells(line, starts)
        if not cells[0] and rows:
            rows[-1] = [f"{old} {new}".strip() for old, new in zip(rows[-1], cells, strict=True)]
        else:
            rows.append(cells)
    return tuple(tuple(row) for row in rows)


def literal(cell: str) -> str:
    """
    @param cell: A table cell.
    @return: The text of its first C{``literal``}, or the whole cell.
    """
    match = re.search(r"``(.*?)``", cell)
    return match.group(1) if match else cell


_CALLS = {"bytearray": bytearray, "frozenset": frozenset, "set": set}
_OPERATORS = {
    ast.Add: lambda a, b: a + b,
    ast.Sub: lambda a, b: a - b,
    ast.Pow: lambda a, b: a**b,
}


def _evaluate(node: ast.AST) -> object:
    if isinstance(node, ast.Expression):
        return _evaluate(node.body)
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        return -_evaluate(node.operand)  # type: ignore[operator]
    if isinstance(node, ast.BinOp) and type(node.op) in _OPERATORS:
        return _OPERATORS[type(node.op)](_evaluate(node.left), _evaluate(node.right))
    if isinstance(node, ast.Tuple):
        return tuple(_evaluate(item) for item in node.elts)
    if isinstance(node, ast.List):
        return [_evaluate(item) for item in node.elts]
    if isinstance(node, ast.Set):
        return {_evaluate(item) for item in node.elts}
    if isinstance(node, ast.Dict):
        return {
            _evaluate(key): _evaluate(value)  # type: ignore[arg-type]
            for key, value in zip(node.keys, node.values, strict=True)
        }
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id in _CALLS
        and not node.keywords
    ):
        return _CALLS[node.func.id](*(_evaluate(arg) for arg in node.args))
    raise ValueError(f"not a literal: {ast.dump(node)}")


def pythonValue(text: str) -> object:
    """
    Evaluate a value written in the document, without C{eval}: literals,
    arithmetic on numbers, and C{bytearray}, C{frozenset} and C{set} calls.

    @param text: The value's Python source.
    @return: The value.
    """
    return _evaluate(ast.parse(text, mode="eval"))


def hexBytes(text: str) -> bytes:
    """
    @param text: Hex bytes separated by spaces, or C{(empty)}.
    @return: The bytes.
    """
    return b"" if text == "(empty)" else bytes.fromhex(text)


def assertExact(testCase: SynchronousTestCase, expected: object, actual: object) -> None:
    """
    Assert two values are equal with the same types at every level.
    """
    testCase.assertIs(type(actual), type(expected))
    testCase.assertEqual(actual, expected)
    if isinstance(expected, list | tuple):
        assert isinstance(actual, list | tuple)
        for e, a in zip(expected, actual, strict=True):
            assertExact(testCase, e, a)
    elif isinstance(expected, dict):
        assert isinstance(actual, dict)
        for key, item in expected.items():
            (actualKey,) = [k for k in actual if k == key]
            testCase.assertIs(type(actualKey), type(key))
            assertExact(testCase, item, actual[key])


def prefixed(payload: bytes) -> bytes:
    """
    @return: C{payload} with its 4-byte big-endian length prefix.
    """
    return struct.pack(">I", len(payload)) + payload


@dataclass
class ExampleRun:
    """
    The worked example, run by L{Channel}.

    @ivar hello: The client's hello frame payload.
    @ivar reply: The server's reply frame payload.
    @ivar confirmation: The client's CONFIRM record.
    @ivar value: The client's VALUE record carrying the example value.
    @ivar values: The client's VALUES record carrying the example's two
        values.
    @ivar client: The client's channel.
    @ivar server: The server's channel.
    """

    hello: bytes
    reply: bytes
    confirmation: bytes
    value: bytes
    values: bytes
    client: Channel
    server: Channel


def runExample() -> ExampleRun:
    """
    Run the worked example of section 8 with two L{Channel}s.

    @return: The frames and the channels.
    """
    client = Channel(
        Role.CLIENT,
        EXAMPLE_KEY,
        ephemeralFactory=lambda: X25519PrivateKey.from_private_bytes(CLIENT_EPHEMERAL),
    )
    server = Channel(
        Role.SERVER,
        EXAMPLE_KEY,
        ephemeralFactory=lambda: X25519PrivateKey.from_private_bytes(SERVER_EPHEMERAL),
    )
    (hello,) = client.framesToSend()
    assert server.receiveFrame(hello) is None
    (reply,) = server.framesToSend()
    assert isinstance(client.receiveFrame(reply), HandshakeCompleted)
    (confirmation,) = client.framesToSend()
    assert isinstance(server.receiveFrame(confirmation), HandshakeCompleted)
    value = client.sendValue(EXAMPLE_VALUE)
    event = server.receiveFrame(value)
    assert isinstance(event, ValueReceived)
    values = client.sendEncodedValues([client.encodeValue(v) for v in EXAMPLE_VALUES])
    event = server.receiveFrame(values)
    assert isinstance(event, ValuesReceived)
    assert event.values == EXAMPLE_VALUES
    return ExampleRun(hello, reply, confirmation, value, values, client, server)


class DocumentStructureTests(SynchronousTestCase):
    """
    The document's hex blocks are all marked, and are exactly what the
    worked example's script prints.
    """

    def test_everyHexDumpIsMarked(self) -> None:
        """
        Every line of the document that looks like a hex dump belongs to a
        C{.. spec-hex} block, so that no hex escapes these tests.
        """
        covered: set[int] = set()
        for block in hexBlocks().values():
            covered.update(block.lines)
        lines = documentText().splitlines()
        unmarked = [
            number + 1
            for number, line in enumerate(lines)
            if _HEX_DUMP_LINE.match(line) and number not in covered
        ]
        self.assertEqual(unmarked, [])

    def test_blocksAreTheScriptOutput(self) -> None:
        """
        The document holds exactly the blocks C{docs/_make_worked_example.py}
        and C{docs/_make_streams_example.py} (the streams section's) print,
        character for character, and no others.
        """
        from .test_streams_spec import streamsReference

        blocks = [*reference().workedExample(), *streamsReference().streamsExample()]
        expected = {block.name: block.render() for block in blocks}
        self.assertEqual(sorted(hexBlocks()), sorted(expected))
        for name, text in expected.items():
            self.assertEqual(hexBlocks()[name].text, text, name)

    def test_inlineHex(self) -> None:
        """
        Every multi-byte hex string written inline outside the checked tables
        is one of these, each checked against the code.
        """
        tableLines: set[int] = set()
        lines = documentText().splitlines()
        for number, line in enumerate(lines):
            if line.startswith(".. spec-table: "):
                end = number + 1
                borders = 0
                while borders < 3:
                    borders += bool(_BORDER.match(lines[end]))
                    end += 1
                tableLines.update(range(number, end))
        checks = {
            "4e 53 54 52": lambda data: data == MAGIC,
            "01 00 00 00": lambda data: data == struct.pack(">I", DEFAULT_LIMITS.maxSize),
            # A non-minimal int, which decoders accept and encoders never write.
            "d0 01": lambda data: decode(data) == 1 and encode(1) != data,
        }
        found = {
            match.group(1)
            for number, line in enumerate(lines)
            if number not in tableLines
            for match in _INLINE_HEX.finditer(line)
        }
        self.assertEqual(found, set(checks))
        for text, check in checks.items():
            self.assertTrue(check(bytes.fromhex(text)), text)

    def test_errorNames(self) -> None:
        """
        Every exception the document names exists in L{netstructer.errors},
        but for Python's own C{ValueError}.
        """
        names = set(re.findall(r"``(\w+(?:Error|Timeout))``", documentText()))
        self.assertIn("TruncationError", names)
        self.assertEqual(names - set(errors.__all__), {"ValueError"})
        for name in names - {"ValueError"}:
            self.assertTrue(issubclass(getattr(errors, name), NetStructerError))
        for name in ("HandshakeError", "AuthenticationError", "IntegrityError", "DecodeError"):
            self.assertTrue(issubclass(getattr(errors, name), RemoteProtocolError))
        self.assertTrue(issubclass(errors.TruncationError, RemoteProtocolError))
        self.assertTrue(issubclass(errors.ChannelClosedError, errors.LocalProtocolError))


class ConstantsTests(SynchronousTestCase):
    """
    The tables of constants in the document match the code.
    """

    def test_constants(self) -> None:
        """
        The table of protocol constants.
        """
        expected = {
            "magic": MAGIC,
            "protocol version": PROTOCOL_VERSION,
            "handshake frame limit": HANDSHAKE_MAX_FRAME,
            "largest maximum value size M": MAX_VALUE_SIZE_LIMIT,
            "default maximum value size M": DEFAULT_LIMITS.maxSize,
            "prologue label": channel._PROLOGUE_LABEL,
            "Fernet nonce size": channel._FERNET_NONCE_SIZE,
            "Fernet session label": reference().FERNET_SESSION_LABEL,
            "AEAD tag size": TAG_SIZE,
            "largest ping data": channel._MAX_PING_DATA,
            "largest close reason": channel._MAX_CLOSE_REASON,
        }
        rows = specTable("constants")
        self.assertEqual([row[0] for row in rows], list(expected))
        for name, value, _ in rows:
            self.assertEqual(pythonValue(literal(value)), expected[name], name)

    def test_fernetSessionLabel(self) -> None:
        """
        The Fernet session label is the one the code hashes (the interop
        tests check the whole session ID).
        """
        self.assertEqual(
            channel._fernetSessionID(b"h", b"r"),
            reference().fernetSessionID(b"h", b"r"),
        )

    def test_hkdf(self) -> None:
        """
        The HKDF info strings and lengths of the subkeys.
        """
        rows = specTable("hkdf")
        infos = {row[0]: (pythonValue(literal(row[1])), int(row[2])) for row in rows}
        self.assertEqual(
            infos,
            {
                "noise PSK": (keys._INFO_NOISE_PSK, 32),
                "fernet key": (keys._INFO_FERNET, 32),
                "key ID": (keys._INFO_KEY_ID, 16),
            },
        )
        self.assertIsNone(keys._HKDF_SALT)
        keyring = Keyring([generateKey()])
        self.assertEqual(len(keyring.noisePSKs()[0]), 32)
        self.assertEqual(len(base64.urlsafe_b64decode(keyring.fernetKeys()[0])), 32)
        self.assertEqual(len(keyring.keyIDs()[0]), 8)

    def test_suites(self) -> None:
        """
        The suite IDs, their names and their Noise protocol names.
        """
        rows = specTable("suites")
        self.assertEqual({int(row[0]): row[1] for row in rows}, channel._SUITE_NAMES)
        self.assertEqual(
            {int(row[0]) for row in rows if row[2].startswith("``")},
            set(channel._NOISE_CIPHER_OF_SUITE),
        )
        for suiteID, cipher in channel._NOISE_CIPHER_OF_SUITE.items():
            (row,) = [row for row in rows if int(row[0]) == suiteID]
            self.assertEqual(literal(row[2]).encode("ascii"), _protocolName(cipher))
        self.assertEqual(len(_protocolName("AESGCM")), 32)
        self.assertEqual(len(_protocolName("ChaChaPoly")), 36)

    def test_replyStatus(self) -> None:
        """
        The status bytes of the server's reply.
        """
        rows = specTable("reply-status")
        self.assertEqual(
            {row[1]: pythonValue(literal(row[0])) for row in rows},
            {"accept": channel._REPLY_ACCEPT, "reject": channel._REPLY_REJECT},
        )

    def test_rejectReasons(self) -> None:
        """
        The rejection reasons and their meanings.
        """
        rows = specTable("reject-reasons")
        self.assertEqual({int(row[0]): row[1] for row in rows}, channel._REJECT_REASONS)
        self.assertEqual(
            (
                channel._REJECT_VERSION,
                channel._REJECT_SUITE,
                channel._REJECT_AUTHENTICATION,
                channel._REJECT_MALFORMED,
            ),
            (1, 2, 3, 4),
        )

    def test_recordTypes(self) -> None:
        """
        The record types.
        """
        rows = specTable("record-types")
        self.assertEqual(
            {row[1]: int(row[0]) for row in rows},
            {
                "VALUE": channel._RECORD_VALUE,
                "PING": channel._RECORD_PING,
                "PONG": channel._RECORD_PONG,
                "CLOSE": channel._RECORD_CLOSE,
                "CONFIRM": channel._RECORD_CONFIRM,
                "VALUES": channel._RECORD_VALUES,
            },
        )
        ref = reference()
        self.assertEqual(
            (ref.VALUE, ref.PING, ref.PONG, ref.CLOSE, ref.CONFIRM, ref.VALUES),
            (1, 2, 3, 4, 5, 6),
        )

    def test_valuesHeaders(self) -> None:
        """
        The array headers of a VALUES record's body: for each example count,
        L{Channel.sendEncodedValues} and the reference write the header the
        document gives, each reads the other's, and the header is the
        shortest msgpack array header for the count.
        """
        ref = reference()
        rows = specTable("values-headers")
        self.assertEqual([row[1] for row in rows], ["fixarray", "array 16"])
        examples = {
            int(count.replace(" ", "")): bytes.fromhex(header)
            for row in rows
            for header, count in re.findall(r"``([0-9a-f ]+)`` \(([\d ]+)\)", row[2])
        }
        self.assertEqual(sorted(examples), [2, 15, 16, MAX_BATCH_VALUES])
        for count, header in examples.items():
            encodedValues = [encode(index % 100) for index in range(count)]
            body = ref.valuesBody(encodedValues)
            self.assertEqual(body[: len(header)], header, count)
            self.assertEqual(body[len(header) :], b"".join(encodedValues))
            self.assertEqual(header, msgpack.Packer().pack_array_header(count), count)

            client, server = referenceServerSession(SUITE_CASES[0])
            recordType, sent = server.records.open(client.sendEncodedValues(encodedValues))
            self.assertEqual((recordType, sent), (ref.VALUES, body))
            self.assertEqual(ref.splitValues(sent), encodedValues)

            refClient, serverChannel = referenceClientSession(SUITE_CASES[0])
            event = serverChannel.receiveFrame(refClient.records.seal(ref.VALUES, body))
            assert isinstance(event, ValuesReceived)
            self.assertEqual(event.values, [index % 100 for index in range(count)])
            self.assertEqual(event.size, len(body))

    def test_closeCodes(self) -> None:
        """
        The close codes are exactly L{CloseCode}, and unknown codes read as
        INTERNAL_ERROR.
        """
        rows = specTable("close-codes")
        self.assertEqual(
            {row[1]: int(row[0]) for row in rows},
            {code.name: code.value for code in CloseCode},
        )
        self.assertIs(CloseCode.fromWire(200), CloseCode.INTERNAL_ERROR)

    def test_extCodes(self) -> None:
        """
        The msgpack extension codes.
        """
        from netstructer import values

        rows = specTable("ext-codes")
        self.assertEqual(
            {int(row[0]): literal(row[1]) for row in rows},
            {
                values.EXT_TUPLE: "tuple",
                values.EXT_SET: "set",
                values.EXT_FROZENSET: "frozenset",
                values.EXT_BYTEARRAY: "bytearray",
                values.EXT_COMPLEX: "complex",
                values.EXT_BIGINT: "int",
            },
        )

    def test_limits(self) -> None:
        """
        The decoding limits and their defaults.
        """
        rows = specTable("limits")
        self.assertEqual(
            {row[0]: pythonValue(literal(row[1])) for row in rows},
            {
                "maxSize": DEFAULT_LIMITS.maxSize,
                "maxDepth": DEFAULT_LIMITS.maxDepth,
                "maxItems": DEFAULT_LIMITS.maxItems,
                "maxIntBytes": DEFAULT_LIMITS.maxIntBytes,
                "maxObjects": DEFAULT_LIMITS.maxObjects,
                "maxHashCollisions": DEFAULT_LIMITS.maxHashCollisions,
            },
        )


def documentFrameBound(suite: str, maxValueSize: int) -> int:
    """
    The frame bound as section 3 of the document computes it.
    """
    maxValueSize = max(maxValueSize, 258)
    if suite == "noise":
        return 1 + maxValueSize + 16
    plaintext = 42 + maxValueSize
    token = 1 + 8 + 16 + 16 * (plaintext // 16 + 1) + 32
    return 4 * -(-token // 3)


def handshake(client: Channel, server: Channel) -> tuple[bytes, bytes, bytes]:
    """
    Run a handshake between two channels.

    @return: The hello, the reply and the confirmation.
    """
    (hello,) = client.framesToSend()
    server.receiveFrame(hello)
    (reply,) = server.framesToSend()
    assert isinstance(client.receiveFrame(reply), HandshakeCompleted)
    (confirmation,) = client.framesToSend()
    assert isinstance(server.receiveFrame(confirmation), HandshakeCompleted)
    return hello, reply, confirmation


SUITE_CASES = [
    ("noise", "AESGCM", 1),
    ("noise", "ChaChaPoly", 2),
    ("fernet", "AESGCM", 3),
]


def referenceClientSession(
    case: tuple[str, str, int], limits: Limits = DEFAULT_LIMITS
) -> tuple[Any, Channel]:
    """
    Connect a reference client to a L{Channel} server.

    @param case: One of L{SUITE_CASES}.
    @param limits: The server's limits.
    @return: The reference client and the server channel, both past the
        handshake.
    """
    suite, _, suiteID = case
    client = reference().ReferenceClient(EXAMPLE_KEY, suiteID)
    server = Channel(Role.SERVER, EXAMPLE_KEY, suite=suite, limits=limits)
    assert server.receiveFrame(client.hello()) is None
    (reply,) = server.framesToSend()
    assert isinstance(server.receiveFrame(client.readReply(reply)), HandshakeCompleted)
    return client, server


def referenceServerSession(
    case: tuple[str, str, int], maxValueSize: int = DEFAULT_LIMITS.maxSize
) -> tuple[Channel, Any]:
    """
    Connect a L{Channel} client to a reference server.

    @param case: One of L{SUITE_CASES}.
    @param maxValueSize: The reference server's maximum value size.
    @return: The client channel and the reference server, both past the
        handshake.
    """
    suite, cipher, suiteID = case
    client = Channel(Role.CLIENT, EXAMPLE_KEY, suite=suite, cipher=cipher)
    server = reference().ReferenceServer([EXAMPLE_KEY], (suiteID,), maxValueSize)
    (hello,) = client.framesToSend()
    assert isinstance(client.receiveFrame(server.readHello(hello)), HandshakeCompleted)
    (confirmation,) = client.framesToSend()
    server.readConfirmation(confirmation)
    return client, server


class FramingTests(SynchronousTestCase):
    """
    Section 3: frame bounds and handshake frame sizes.
    """

    def test_boundFormula(self) -> None:
        """
        The document's formulas give what L{frameOverhead} computes.
        """
        sizes = [*range(1, 300), 1000, 65535, 65536, 16 * 1024 * 1024, MAX_VALUE_SIZE_LIMIT]
        for suite in ("noise", "fernet"):
            for size in sizes:
                self.assertEqual(
                    documentFrameBound(suite, size), frameOverhead(suite, size), (suite, size)
                )

    def test_boundTable(self) -> None:
        """
        The table of example bounds.
        """
        for suite, size, bound in specTable("frame-bounds"):
            self.assertEqual(frameOverhead(suite, int(size)), int(bound))

    def test_channelBounds(self) -> None:
        """
        A channel's bound is the handshake limit until its handshake
        completes, then the one for its own maximum value size.
        """
        for suite in ("noise", "fernet"):
            client = Channel(Role.CLIENT, EXAMPLE_KEY, suite=suite, limits=Limits(maxSize=1000))
            server = Channel(Role.SERVER, EXAMPLE_KEY, suite=suite, limits=Limits(maxSize=2000))
            self.assertEqual(client.maxFrameSize, HANDSHAKE_MAX_FRAME)
            (hello,) = client.framesToSend()
            server.receiveFrame(hello)
            (reply,) = server.framesToSend()
            client.receiveFrame(reply)
            self.assertEqual(client.maxFrameSize, documentFrameBound(suite, 1000))
            self.assertEqual(server.maxFrameSize, HANDSHAKE_MAX_FRAME)
            (confirmation,) = client.framesToSend()
            server.receiveFrame(confirmation)
            self.assertEqual(server.maxFrameSize, documentFrameBound(suite, 2000))

    def test_handshakeSizes(self) -> None:
        """
        The sizes of the handshake frames of each suite.
        """
        rows = specTable("handshake-sizes")
        for column, suite in ((1, "noise"), (2, "fernet")):
            frames = handshake(
                Channel(Role.CLIENT, EXAMPLE_KEY, suite=suite),
                Channel(Role.SERVER, EXAMPLE_KEY, suite=suite),
            )
            self.assertEqual([int(row[column]) for row in rows], [len(f) for f in frames])
            for frame in frames:
                self.assertLessEqual(len(frame), HANDSHAKE_MAX_FRAME)


class WorkedExampleTests(SynchronousTestCase):
    """
    Section 8: every block of the worked example is what the code computes.
    """

    def setUp(self) -> None:
        self.run_ = runExample()
        self.blocks = hexBlocks()

    def test_subkeys(self) -> None:
        """
        The example key's raw bytes and subkeys.
        """
        block = self.blocks["example-subkeys"]
        keyring = Keyring([EXAMPLE_KEY])
        raw, psk, fernet, keyID = (data for data, _ in block.fields)
        self.assertEqual(raw, parseKey(EXAMPLE_KEY))
        self.assertEqual(raw, bytes(range(32)))
        self.assertEqual(psk, keyring.noisePSKs()[0])
        self.assertEqual(base64.urlsafe_b64encode(fernet), keyring.fernetKeys()[0])
        self.assertIn(keyring.fernetKeys()[0].decode("ascii"), " ".join(block.fields[2][1]))
        self.assertEqual(len(keyID), 16)
        self.assertIn(f"in hex: {keyring.keyIDs()[0]}", " ".join(block.fields[3][1]))
        self.assertEqual(keyID[:4].hex(), keyring.keyIDs()[0])

    def test_ephemerals(self) -> None:
        """
        The ephemeral keys and their public halves.
        """
        block = self.blocks["example-ephemerals"]
        clientPrivate, clientPublic, serverPrivate, serverPublic = (
            data for data, _ in block.fields
        )
        self.assertEqual(clientPrivate, CLIENT_EPHEMERAL)
        self.assertEqual(serverPrivate, SERVER_EPHEMERAL)
        for private, public in ((clientPrivate, clientPublic), (serverPrivate, serverPublic)):
            self.assertEqual(
                X25519PrivateKey.from_private_bytes(private).public_key().public_bytes_raw(),
                public,
            )
        self.assertEqual(self.run_.hello[6:38], clientPublic)
        self.assertEqual(self.run_.reply[1:33], serverPublic)

    def test_prologue(self) -> None:
        """
        The prologue is the label and the hello header.
        """
        self.assertEqual(
            self.blocks["example-prologue"].data, channel._prologue(self.run_.hello[:6])
        )

    def test_hello(self) -> None:
        """
        The hello frame, length prefix included.
        """
        self.assertEqual(self.blocks["example-hello"].data, prefixed(self.run_.hello))

    def test_reply(self) -> None:
        """
        The reply frame.
        """
        self.assertEqual(self.blocks["example-reply"].data, prefixed(self.run_.reply))

    def test_confirmation(self) -> None:
        """
        The CONFIRM record's frame.
        """
        self.assertEqual(self.blocks["example-confirm"].data, prefixed(self.run_.confirmation))

    def test_encoding(self) -> None:
        """
        The example value's encoding, and that it decodes back.
        """
        data = self.blocks["example-encoding"].data
        self.assertEqual(data, encode(EXAMPLE_VALUE))
        assertExact(self, EXAMPLE_VALUE, decode(data))

    def test_value(self) -> None:
        """
        The VALUE record's frame.
        """
        self.assertEqual(self.blocks["example-value"].data, prefixed(self.run_.value))

    def test_valuesPlaintext(self) -> None:
        """
        The VALUES record's plaintext: its type byte, then the two values'
        encodings in a fixarray, which decode back as the server received
        them.
        """
        data = self.blocks["example-values-plaintext"].data
        encodings = [encode(value) for value in EXAMPLE_VALUES]
        self.assertEqual(data, bytes((channel._RECORD_VALUES, 0x92, *b"".join(encodings))))
        self.assertEqual(reference().splitValues(data[1:]), encodings)
        self.assertEqual(data[2:3], b"\x93")
        for expected, encoded in zip(EXAMPLE_VALUES, encodings, strict=True):
            assertExact(self, expected, decode(encoded))

    def test_values(self) -> None:
        """
        The VALUES record's frame.
        """
        self.assertEqual(self.blocks["example-values"].data, prefixed(self.run_.values))

    def test_traceHashes(self) -> None:
        """
        Every C{h} and C{ck} of the trace is what L{netstructer._crypto}'s
        symmetric state holds at that step.
        """
        trace = self.blocks["example-trace"]
        psk = Keyring([EXAMPLE_KEY]).noisePSKs()[0]
        clientPublic = self.run_.hello[6:38]
        serverPublic = self.run_.reply[1:33]
        state = _SymmetricState("AESGCM", channel._prologue(self.run_.hello[:6]))
        self.assertEqual(trace.field("h0:"), _protocolName("AESGCM"))
        self.assertEqual(trace.field("h1:"), state.handshakeHash)
        state.mixKeyAndHash(psk)
        self.assertEqual(trace.field("ck2:"), state._chainingKey)
        self.assertEqual(trace.field("h2:"), state.handshakeHash)
        state.mixHash(clientPublic)
        state.mixKey(clientPublic)
        self.assertEqual(trace.field("h3:"), state.handshakeHash)
        self.assertEqual(trace.field("ck3:"), state._chainingKey)
        self.assertEqual(state.encryptAndHash(struct.pack(">I", 2**24)), self.run_.hello[38:])
        self.assertEqual(trace.field("h4:"), state.handshakeHash)
        state.mixHash(serverPublic)
        state.mixKey(serverPublic)
        self.assertEqual(trace.field("h5:"), state.handshakeHash)
        self.assertEqual(trace.field("ck4:"), state._chainingKey)
        shared = X25519PrivateKey.from_private_bytes(CLIENT_EPHEMERAL).exchange(
            X25519PublicKey.from_public_bytes(serverPublic)
        )
        self.assertEqual(trace.field("dh:"), shared)
        state.mixKey(shared)
        self.assertEqual(trace.field("ck5:"), state._chainingKey)
        self.assertEqual(
            state.encryptAndHash(struct.pack(">IB", 2**24, PROTOCOL_VERSION)), self.run_.reply[33:]
        )
        self.assertEqual(trace.field("h6:"), state.handshakeHash)

        initiator = NNpsk0Initiator(
            "AESGCM",
            psk,
            channel._prologue(self.run_.hello[:6]),
            X25519PrivateKey.from_private_bytes(CLIENT_EPHEMERAL),
        )
        initiator.writeMessage1(struct.pack(">I", 2**24))
        initiator.readMessage2(self.run_.reply[1:])
        self.assertEqual(trace.field("h6:"), initiator.handshakeHash)

    def test_traceKeys(self) -> None:
        """
        Every key of the trace encrypts what the channels sent with it: C{k1}
        the hello's payload, C{k2} the reply's, C{kc2s} the client's records
        (the VALUES record with nonce 2) and C{ks2c} the server's.
        """
        trace = self.blocks["example-trace"]
        payload = struct.pack(">I", DEFAULT_LIMITS.maxSize)
        nonce = struct.Struct(">4xQ").pack
        self.assertEqual(
            AESGCM(trace.field("k1:")).encrypt(nonce(0), payload, trace.field("h3:")),
            self.run_.hello[38:],
        )
        self.assertEqual(
            AESGCM(trace.field("k2:")).encrypt(
                nonce(0), payload + bytes((PROTOCOL_VERSION,)), trace.field("h5:")
            ),
            self.run_.reply[33:],
        )
        clientToServer = AESGCM(trace.field("kc2s:"))
        self.assertEqual(clientToServer.encrypt(nonce(0), b"\x05", None), self.run_.confirmation)
        self.assertEqual(
            clientToServer.encrypt(nonce(1), b"\x01" + encode(EXAMPLE_VALUE), None),
            self.run_.value,
        )
        self.assertEqual(
            clientToServer.decrypt(nonce(2), self.run_.values, None),
            self.blocks["example-values-plaintext"].data,
        )
        ping = self.run_.server.ping(b"ping")
        self.assertEqual(AESGCM(trace.field("ks2c:")).decrypt(nonce(0), ping, None), b"\x02ping")


class ReferenceInteropTests(SynchronousTestCase):
    """
    The independent implementation written from the document interoperates
    with L{Channel} in every suite, in both roles.
    """

    def exchange(self, client: Any, server: Channel) -> None:
        """
        Check records in both directions between a reference client and a
        server channel whose handshake completed, then close from the
        reference side.
        """
        ref = reference()
        values: list[object] = [EXAMPLE_VALUE, b"x" * 1000, {"n": 2**70}, (1.5, None), "last"]
        for value in values:
            event = server.receiveFrame(client.records.seal(ref.VALUE, encode(value)))
            assert isinstance(event, ValueReceived)
            assertExact(self, value, event.value)
            recordType, body = client.records.open(server.sendValue(value))
            self.assertEqual(recordType, ref.VALUE)
            assertExact(self, value, decode(body))
        batches: list[list[object]] = [
            EXAMPLE_VALUES,
            values,
            [(), {1}, frozenset({2}), bytearray(b"b")],
            list(range(16)),
            [None, [[[1]]]],
        ]
        for batch in batches:
            self.valuesToChannel(client, server, batch)
            self.valuesFromChannel(server, client, batch)
            # Each VALUES record took one nonce: a VALUE record follows.
            event = server.receiveFrame(client.records.seal(ref.VALUE, encode(len(batch))))
            self.assertEqual(event, ValueReceived(len(batch), 1))
            self.assertEqual(client.records.open(server.sendValue(None)), (ref.VALUE, b"\xc0"))
        recordType, body = client.records.open(server.ping(b"data"))
        self.assertEqual((recordType, body), (ref.PING, b"data"))
        event = server.receiveFrame(client.records.seal(ref.PING, b"back"))
        self.assertEqual(event, PingReceived(b"back"))
        (pong,) = server.framesToSend()
        self.assertEqual(client.records.open(pong), (ref.PONG, b"back"))
        event = server.receiveFrame(client.records.seal(ref.CLOSE, ref.closeBody(4, "idle")))
        self.assertEqual(event, CloseReceived(CloseCode.IDLE_TIMEOUT, "idle"))
        (closeReply,) = server.framesToSend()
        self.assertEqual(client.records.open(closeReply), (ref.CLOSE, b"\x00\x04"))
        server.connectionLost()

    def valuesToChannel(self, sender: Any, receiver: Channel, batch: list[object]) -> None:
        """
        A VALUES record from the reference reaches a channel as one
        L{ValuesReceived} event holding the values, in order, with their
        types.

        @param sender: A reference client or server, past the handshake.
        @param receiver: Its peer.
        @param batch: At least two values.
        """
        ref = reference()
        body = ref.valuesBody([encode(value) for value in batch])
        event = receiver.receiveFrame(sender.records.seal(ref.VALUES, body))
        assert isinstance(event, ValuesReceived)
        assertExact(self, batch, event.values)
        self.assertEqual(event.size, len(body))

    def valuesFromChannel(self, sender: Channel, receiver: Any, batch: list[object]) -> None:
        """
        L{Channel.sendEncodedValues} seals a VALUES record the reference
        splits into the values' encodings, which decode to the values.

        @param sender: A channel past the handshake.
        @param receiver: Its reference peer.
        @param batch: At least two values.
        """
        ref = reference()
        frame = sender.sendEncodedValues([sender.encodeValue(value) for value in batch])
        recordType, body = receiver.records.open(frame)
        self.assertEqual(recordType, ref.VALUES)
        encodedValues = ref.splitValues(body, receiver.maxValueSize)
        assertExact(self, batch, [decode(encoded) for encoded in encodedValues])

    def test_referenceClient(self) -> None:
        """
        A reference client connects to a L{Channel} server of each suite,
        announcing its own maximum value size, and exchanges records.
        """
        ref = reference()
        for suite, _, suiteID in SUITE_CASES:
            client = ref.ReferenceClient(EXAMPLE_KEY, suiteID, maxValueSize=5000)
            server = Channel(Role.SERVER, EXAMPLE_KEY, suite=suite)
            self.assertIsNone(server.receiveFrame(client.hello()))
            (reply,) = server.framesToSend()
            confirmation = client.readReply(reply)
            self.assertEqual(client.peerMaxValueSize, DEFAULT_LIMITS.maxSize)
            event = server.receiveFrame(confirmation)
            assert isinstance(event, HandshakeCompleted)
            self.assertEqual(event.suite, channel._SUITE_NAMES[suiteID])
            self.assertEqual(event.peerMaxValueSize, 5000)
            self.exchange(client, server)

    def test_referenceServer(self) -> None:
        """
        A L{Channel} client connects to a reference server of each suite and
        exchanges records.
        """
        ref = reference()
        for suite, cipher, suiteID in SUITE_CASES:
            client = Channel(
                Role.CLIENT,
                EXAMPLE_KEY,
                suite=suite,
                cipher=cipher,
                limits=Limits(maxSize=7000),
            )
            server = ref.ReferenceServer([generateKey().decode(), EXAMPLE_KEY], (suiteID,), 6000)
            (hello,) = client.framesToSend()
            reply = server.readHello(hello)
            event = client.receiveFrame(reply)
            self.assertEqual(
                event, HandshakeCompleted(channel._SUITE_NAMES[suiteID], 6000, PROTOCOL_VERSION)
            )
            self.assertEqual(server.peerMaxValueSize, 7000)
            self.assertEqual(server.sessionVersion, PROTOCOL_VERSION)
            (confirmation,) = client.framesToSend()
            server.readConfirmation(confirmation)
            for index in range(3):
                recordType, body = server.records.open(client.sendValue(index))
                self.assertEqual((recordType, decode(body)), (ref.VALUE, index))
                event = client.receiveFrame(server.records.seal(ref.VALUE, encode([index])))
                self.assertEqual(event, ValueReceived([index], 2))
                batch = [index, {"i": [index]}, (index,)]
                self.valuesFromChannel(client, server, batch)
                self.valuesToChannel(server, client, batch)
            event = client.receiveFrame(server.records.seal(ref.CLOSE, ref.closeBody(1, "bye")))
            self.assertEqual(event, CloseReceived(CloseCode.GOING_AWAY, "bye"))
            (closeReply,) = client.framesToSend()
            self.assertEqual(server.records.open(closeReply), (ref.CLOSE, b"\x00\x01"))

    def test_keyring(self) -> None:
        """
        A server accepts a client using any key of its keyring.
        """
        ref = reference()
        old, new = generateKey(), generateKey()
        for suite, _, suiteID in SUITE_CASES:
            client = ref.ReferenceClient(new.decode(), suiteID)
            server = Channel(Role.SERVER, [old, new], suite=suite)
            server.receiveFrame(client.hello())
            (reply,) = server.framesToSend()
            event = server.receiveFrame(client.readReply(reply))
            self.assertIsInstance(event, HandshakeCompleted)

    def test_rejections(self) -> None:
        """
        The reference server and a L{Channel} server reject the same hellos
        with the same bytes, and the server raises what section 7 says.
        """
        ref = reference()
        client = ref.ReferenceClient(generateKey().decode(), 1, version=1)
        wrongKey = client.hello()
        cases = [
            (b"NST", HandshakeError, None),
            (b"HTTP/1.1 200", HandshakeError, None),
            (MAGIC + b"\x02\x01" + wrongKey[6:], HandshakeError, (1, 2)),
            (
                MAGIC + b"\x01\x03" + wrongKey[6:],
                HandshakeError,
                (["noise (AESGCM)", "noise (ChaChaPoly)"], "fernet"),
            ),
            (wrongKey, AuthenticationError, None),
        ]
        for hello, errorType, values in cases:
            server = Channel(Role.SERVER, EXAMPLE_KEY, protocolVersion=1)
            error = self.assertRaises(errorType, server.receiveFrame, hello)
            self.assertIs(type(error), errorType)
            if values is not None:
                self.assertEqual((error.localValue, error.remoteValue), values)
            (rejection,) = server.framesToSend()
            self.assertEqual(
                rejection, ref.ReferenceServer([EXAMPLE_KEY], version=1).readHello(hello)
            )
            self.assertEqual(rejection[0], 1)
            self.assertEqual(len(rejection), 4 + rejection[3])
            self.assertEqual(rejection[2:], b"\x01\x02\x01\x02")

    def test_malformedHelloRejected(self) -> None:
        """
        A hello with a valid header but a malformed noise message is refused
        with reason 4, by the channel and by the reference alike.
        """
        hello = MAGIC + b"\x01\x01" + bytes(47)
        server = Channel(Role.SERVER, EXAMPLE_KEY, protocolVersion=1)
        self.assertRaises(HandshakeError, server.receiveFrame, hello)
        self.assertEqual(server.framesToSend(), [b"\x01\x04\x01\x02\x01\x02"])

    def test_clientRejected(self) -> None:
        """
        A client reports each rejection reason as section 7.1 says.
        """
        cases = [
            (b"\x01\x03\x01\x02\x01\x02", AuthenticationError, None),
            (b"\x01\x01\x02\x01\x01", HandshakeError, (1, 2)),
            (b"\x01\x02\x01\x01\x03", HandshakeError, ("noise (AESGCM)", ["fernet"])),
            (b"\x01\x04\x01\x01\x01", HandshakeError, None),
            (b"\x01\x02\x01\x02\x01", HandshakeError, None),
            (b"", HandshakeError, None),
            (b"\x02", HandshakeError, None),
        ]
        for reply, errorType, values in cases:
            client = Channel(Role.CLIENT, EXAMPLE_KEY, protocolVersion=1)
            client.framesToSend()
            error = self.assertRaises(errorType, client.receiveFrame, reply)
            self.assertIs(type(error), errorType)
            if values is not None:
                self.assertEqual((error.localValue, error.remoteValue), values)

    def test_replayedHello(self) -> None:
        """
        A replayed hello is answered, but the replayer cannot confirm it, so
        no session is reported.
        """
        ref = reference()
        for suite, _, suiteID in SUITE_CASES:
            client = ref.ReferenceClient(EXAMPLE_KEY, suiteID)
            hello = client.hello()
            first = Channel(Role.SERVER, EXAMPLE_KEY, suite=suite)
            first.receiveFrame(hello)
            (reply,) = first.framesToSend()
            confirmation = client.readReply(reply)
            replayed = Channel(Role.SERVER, EXAMPLE_KEY, suite=suite)
            self.assertIsNone(replayed.receiveFrame(hello))
            self.assertRaises(AuthenticationError, replayed.receiveFrame, confirmation)


# Bodies of VALUES records that section 5.8 refuses, and what the channel
# raises for each (section 7.3).
REFUSED_VALUES_BODIES: list[tuple[bytes, type[RemoteProtocolError], str]] = [
    (b"", DecodeError, "an empty body"),
    (b"\x90", DecodeError, "an empty array"),
    (b"\x91\x01", RemoteProtocolError, "an array of one value"),
    (b"\xdc\x00\x01\x01", RemoteProtocolError, "one value, with an array 16 header"),
    (b"\x01", DecodeError, "not an array: an int"),
    (b"\x81\x01\x02", DecodeError, "not an array: a map"),
    (b"\xc4\x02\x01\x02", DecodeError, "not an array: bin"),
    (b"\x92\xc7\x00\x01\x01", DecodeError, "a tuple marker first"),
    (b"\x93\xc7\x00\x02\x01\x02", DecodeError, "a set marker first"),
    (b"\x92\xc8\x00\x00\x03\x01", DecodeError, "a frozenset marker first, as ext 16"),
    (b"\x92\x01\x02\x03", DecodeError, "trailing bytes"),
    (b"\x92\x01\x02\x92\x01\x02", DecodeError, "two arrays"),
    (b"\x92\x01", DecodeError, "fewer values than the header counts"),
    (b"\x92\x01\xc1", DecodeError, "the never-used byte as a value"),
    (b"\x92\x01\xc7\x00\x01", DecodeError, "a marker as a value"),
    (b"\x92\x01\xa1\xff", DecodeError, "a value that is not UTF-8"),
    (b"\xdc\x40\x01" + b"\x00" * 16385, DecodeError, "16 385 values"),
    (
        b"\x92\xc6\x00\x01\x00\x00" + bytes(65536) + b"\x01",
        RemoteProtocolError,
        "a body over 65 536 bytes",
    ),
]


class ValuesRecordTests(SynchronousTestCase):
    """
    Section 5.8: what a VALUES record may hold, checked against L{Channel}
    and the reference alike.
    """

    def referenceRefuses(self, body: bytes, limits: Limits = DEFAULT_LIMITS) -> bool:
        """
        @return: Whether the reference refuses C{body} as a VALUES record's
            body: it does not split into values, or a value does not decode
            as a VALUE record's body would.
        """
        ref = reference()
        try:
            encodedValues = ref.splitValues(body, limits.maxSize)
        except ref.ReferenceError:
            return True
        try:
            for encoded in encodedValues:
                decode(encoded, limits=limits)
        except DecodeError:
            return True
        return False

    def test_refused(self) -> None:
        """
        Every malformed VALUES record fails the channel, in every suite, with
        a L{RemoteProtocolError}; nothing can be sent afterwards.  The
        reference refuses the same bodies.
        """
        ref = reference()
        for case in SUITE_CASES:
            for body, errorType, why in REFUSED_VALUES_BODIES:
                client, server = referenceClientSession(case)
                record = client.records.seal(ref.VALUES, body)
                error = self.assertRaises(RemoteProtocolError, server.receiveFrame, record)
                self.assertIs(type(error), errorType, (case, why))
                self.assertEqual(server.framesToSend(), [])
                self.assertRaises(ChannelClosedError, server.sendValue, 1)
                self.assertTrue(self.referenceRefuses(body), why)

    def test_anyHeader(self) -> None:
        """
        A receiver accepts an array 16 or array 32 header for a few values,
        though a sender writes the shortest.
        """
        ref = reference()
        for header in (b"\xdc\x00\x02", b"\xdd\x00\x00\x00\x02"):
            body = header + encode((1, 2)) + encode("two")
            self.assertEqual(ref.splitValues(body), [encode((1, 2)), encode("two")])
            for case in SUITE_CASES:
                client, server = referenceClientSession(case)
                event = server.receiveFrame(client.records.seal(ref.VALUES, body))
                self.assertEqual(event, ValuesReceived([(1, 2), "two"], len(body)))

    def test_limits(self) -> None:
        """
        Each value of a VALUES record is checked as if it had come alone:
        depth counts from the value, C{maxObjects} counts each value's
        objects and C{maxItems} bounds each value's arrays, not the number
        of values (which 16 384 bounds, whatever the limits); C{maxSize}
        bounds the whole body.
        """
        ref = reference()
        cases: list[tuple[Limits, list[object], bool]] = [
            (Limits(maxDepth=1), [[1], [2]], True),
            (Limits(maxDepth=1), [[[1]], 2], False),
            (Limits(maxItems=3), [1, 2, 3], True),
            (Limits(maxItems=3), [[1, 2, 3], [4, 5, 6]], True),
            (Limits(maxItems=3), [1, 2, 3, 4], True),
            (Limits(maxItems=3), [[1, 2, 3], [4, 5, 6], 7, 8], True),
            (Limits(maxItems=3), [1, 2, [3, 4, 5, 6]], False),
            (Limits(maxObjects=4), [[1, 2, 3], [4, 5, 6]], True),
            (Limits(maxObjects=4), [[1, 2, 3, 4], 5], False),
            (Limits(maxSize=11), ["aaaa", "bbbb"], True),
            (Limits(maxSize=11), ["aaaa", "bbbbb"], False),
        ]
        for limits, batch, accepted in cases:
            body = ref.valuesBody([encode(value) for value in batch])
            self.assertEqual(self.referenceRefuses(body, limits), not accepted)
            for case in SUITE_CASES:
                client, server = referenceClientSession(case, limits)
                record = client.records.seal(ref.VALUES, body)
                if accepted:
                    event = server.receiveFrame(record)
                    self.assertEqual(event, ValuesReceived(batch, len(body)))
                else:
                    self.assertRaises(DecodeError, server.receiveFrame, record)

    def test_senderBound(self) -> None:
        """
        A VALUES record's body, array header included, may be as large as
        the peer's M and no larger: a larger batch is refused before
        anything is sealed, and the channel stays usable.
        """
        ref = reference()
        for case in SUITE_CASES:
            client, server = referenceServerSession(case, maxValueSize=100)
            tooLarge = [encode(b"x" * 47), encode(b"y" * 49)]
            self.assertEqual(len(ref.valuesBody(tooLarge)), 101)
            self.assertRaises(BufferDataError, client.sendEncodedValues, tooLarge)
            largest = [encode(b"x" * 47), encode(b"y" * 48)]
            recordType, body = server.records.open(client.sendEncodedValues(largest))
            self.assertEqual((recordType, len(body)), (ref.VALUES, 100))
            self.assertEqual(ref.splitValues(body, 100), largest)
            self.assertRaises(ref.ReferenceError, ref.splitValues, body, 99)

    def test_singleValue(self) -> None:
        """
        A single value travels in a VALUE record, even when handed over as
        a batch.
        """
        ref = reference()
        for case in SUITE_CASES:
            client, server = referenceServerSession(case)
            recordType, body = server.records.open(client.sendEncodedValues([encode(5)]))
            self.assertEqual((recordType, body), (ref.VALUE, b"\x05"))
        self.assertRaises(ValueError, ref.valuesBody, [encode(5)])

    def test_bodyBound(self) -> None:
        """
        A sender refuses, before sealing anything, a VALUES record over
        65 536 bytes even when the peer's M is larger, and stays usable.
        """
        ref = reference()
        client, server = referenceServerSession(SUITE_CASES[0])
        big = [encode(bytes(40000)), encode(bytes(40000))]
        self.assertRaises(BufferDataError, client.sendEncodedValues, big)
        recordType, body = server.records.open(client.sendEncodedValues([big[0], encode(1)]))
        self.assertEqual(recordType, ref.VALUES)
        self.assertEqual(len(ref.splitValues(body)), 2)

    def test_batchSize(self) -> None:
        """
        The reference implementation's batches are as section 5.8 says: a
        body of at most 16 KiB, or the peer's M if smaller, so fewer than
        16 384 values.
        """
        text = " ".join(documentText().split())
        self.assertIn("16 KiB (``netstructer.channel.BATCH_SIZE``)", text)
        self.assertIn("so these batches hold fewer than 16 384 values", text)
        self.assertIn("at most 16 384 items, whatever the receiver's limits", text)
        ref = reference()
        self.assertEqual(MAX_BATCH_VALUES, ref.MAX_BATCH_VALUES)
        self.assertEqual(MAX_BATCH_BODY, ref.MAX_BATCH_BODY, 65536)
        self.assertIn("and at most 65 536 bytes whatever M", text)
        self.assertEqual(BATCH_SIZE, 16 * 1024)
        for maxValueSize, bound in ((DEFAULT_LIMITS.maxSize, BATCH_SIZE), (1000, 1000)):
            client, server = referenceServerSession(SUITE_CASES[0], maxValueSize)
            encodedValues = [b"\x00"] * client.batchLimit
            recordType, body = server.records.open(client.sendEncodedValues(encodedValues))
            self.assertEqual(recordType, ref.VALUES)
            self.assertLessEqual(len(body), bound)
            self.assertLess(len(ref.splitValues(body, maxValueSize)), 16384)


class CloseHandshakeTests(SynchronousTestCase):
    """
    Section 5.6, with a reference peer.
    """

    def test_closingSideStillReceives(self) -> None:
        """
        After sending its CLOSE a side still gets values (in VALUE and
        VALUES records), ignores pings,
        and is closed by the peer's CLOSE without replying; a record after
        that fails it.
        """
        ref = reference()
        for suite, _, suiteID in SUITE_CASES:
            client = ref.ReferenceClient(EXAMPLE_KEY, suiteID)
            server = Channel(Role.SERVER, EXAMPLE_KEY, suite=suite)
            server.receiveFrame(client.hello())
            (reply,) = server.framesToSend()
            server.receiveFrame(client.readReply(reply))
            recordType, body = client.records.open(server.close(CloseCode.NORMAL, "bye"))
            self.assertEqual((recordType, body), (ref.CLOSE, b"\x00\x00bye"))
            event = server.receiveFrame(client.records.seal(ref.VALUE, encode(1)))
            self.assertEqual(event, ValueReceived(1, 1))
            body = ref.valuesBody([encode(2), encode("3")])
            event = server.receiveFrame(client.records.seal(ref.VALUES, body))
            self.assertEqual(event, ValuesReceived([2, "3"], 4))
            event = server.receiveFrame(client.records.seal(ref.PING, b""))
            self.assertEqual(event, PingReceived(b""))
            self.assertEqual(server.framesToSend(), [])
            event = server.receiveFrame(client.records.seal(ref.CLOSE, ref.closeBody(0)))
            self.assertEqual(event, CloseReceived(CloseCode.NORMAL, ""))
            self.assertEqual(server.framesToSend(), [])
            server.connectionLost()
            self.assertRaises(
                RemoteProtocolError,
                server.receiveFrame,
                client.records.seal(ref.VALUE, encode(2)),
            )

    def test_truncation(self) -> None:
        """
        The transport ending before the peer's CLOSE is a truncation.
        """
        run = runExample()
        self.assertRaises(TruncationError, run.server.connectionLost)
        run.client.close()
        self.assertRaises(TruncationError, run.client.connectionLost)

    def test_unknownCloseCode(self) -> None:
        """
        An unknown close code reads as INTERNAL_ERROR and is echoed as such.
        """
        ref = reference()
        client = ref.ReferenceClient(EXAMPLE_KEY, 2)
        server = Channel(Role.SERVER, EXAMPLE_KEY)
        server.receiveFrame(client.hello())
        (reply,) = server.framesToSend()
        server.receiveFrame(client.readReply(reply))
        event = server.receiveFrame(client.records.seal(ref.CLOSE, ref.closeBody(999, "x")))
        self.assertEqual(event, CloseReceived(CloseCode.INTERNAL_ERROR, "x"))
        (closeReply,) = server.framesToSend()
        self.assertEqual(client.records.open(closeReply), (ref.CLOSE, b"\x00\x05"))


class ValueEncodingTests(SynchronousTestCase):
    """
    Section 6: the encoding examples, the accepted forms and the refusals.
    """

    def test_examples(self) -> None:
        """
        Each example value encodes as the document says, and decodes back
        with the same types.
        """
        rows = specTable("value-examples")
        self.assertGreater(len(rows), 20)
        for valueText, encodingText in rows:
            value = pythonValue(literal(valueText))
            encoded = hexBytes(literal(encodingText))
            self.assertEqual(encode(value), encoded, valueText)
            assertExact(self, value, decode(encoded))

    def test_moduleDocstringExamples(self) -> None:
        """
        The examples of L{netstructer.values}' docstring agree with the
        document.
        """
        from netstructer import values

        docstring = " ".join((values.__doc__ or "").split())
        table = {literal(row[0]): literal(row[1]) for row in specTable("value-examples")}
        self.assertIn(f"C{{(1, 2)}} is C{{{table['(1, 2)']}}}", docstring)
        nested = table['["a", {b"k": 1.5}]']
        self.assertIn("C{['a', {b'k': 1.5}]} is C{" + nested + "}", docstring)
        self.assertIn(encode(EXAMPLE_VALUE).hex(" "), docstring)

    def test_accepted(self) -> None:
        """
        Each non-canonical encoding the document lists decodes to its value.
        """
        for encodingText, valueText in specTable("accepted-values"):
            assertExact(
                self, pythonValue(literal(valueText)), decode(hexBytes(literal(encodingText)))
            )

    def test_refused(self) -> None:
        """
        Each encoding the document lists as refused raises L{DecodeError}.
        """
        rows = specTable("refused-values")
        self.assertGreater(len(rows), 10)
        for encodingText, _why in rows:
            data = hexBytes(literal(encodingText))
            self.assertRaises(DecodeError, decode, data)

    def test_hashCollisions(self) -> None:
        """
        Section 6.5: ints equal modulo C{2**61 - 1} collide, and more than
        C{maxHashCollisions} colliding keys are refused.
        """
        self.assertEqual(hash(-1), hash(-2))
        keys_ = [1 + n * (2**61 - 1) for n in range(DEFAULT_LIMITS.maxHashCollisions + 1)]
        self.assertEqual(len({hash(k) for k in keys_}), 1)
        self.assertRaises(DecodeError, decode, encode(dict.fromkeys(keys_)))
        decode(encode(dict.fromkeys(keys_[:-1])))


class VersionNegotiationTests(SynchronousTestCase):
    """
    Section 4.6: version 3 is the default, a newer server answers an older
    client in the client's version (1 or 2), a newer client and a version 2
    server agree on version 2, and a server limited to version 1 rejects a
    newer client with the documented advice.
    """

    def test_defaultIsVersion3(self) -> None:
        """
        Without configuration both sides offer version 3, the server's reply
        carries it, and both sides report it.
        """
        ref = reference()
        self.assertEqual(ref.VERSION, PROTOCOL_VERSION)
        self.assertEqual(PROTOCOL_VERSION, 3)
        for suite, cipher, suiteID in SUITE_CASES:
            client = ref.ReferenceClient(EXAMPLE_KEY, suiteID)
            self.assertEqual(client.hello()[4], 3)
            server = Channel(Role.SERVER, EXAMPLE_KEY, suite=suite)
            server.receiveFrame(client.hello())
            (reply,) = server.framesToSend()
            event = server.receiveFrame(client.readReply(reply))
            assert isinstance(event, HandshakeCompleted)
            self.assertEqual((event.version, client.sessionVersion), (3, 3))
            channelClient = Channel(Role.CLIENT, EXAMPLE_KEY, suite=suite, cipher=cipher)
            refServer = ref.ReferenceServer([EXAMPLE_KEY], (suiteID,))
            (hello,) = channelClient.framesToSend()
            event = channelClient.receiveFrame(refServer.readHello(hello))
            assert isinstance(event, HandshakeCompleted)
            self.assertEqual((event.version, refServer.sessionVersion), (3, 3))

    def test_version3ClientVersion2Server(self) -> None:
        """
        A version 3 client and a version 2 server (the reference, or a
        L{Channel} limited to version 2) agree on version 2, in both
        directions: its reply's version byte is 2.  The session carries
        relay records, but neither side sends a streams record in it
        (L{PeerVersionError}, the session going on) nor accepts one.
        """
        ref = reference()
        for suite, cipher, suiteID in SUITE_CASES:
            client = Channel(Role.CLIENT, EXAMPLE_KEY, suite=suite, cipher=cipher)
            refServer = ref.ReferenceServer([EXAMPLE_KEY], (suiteID,), version=2)
            (hello,) = client.framesToSend()
            event = client.receiveFrame(refServer.readHello(hello))
            assert isinstance(event, HandshakeCompleted)
            self.assertEqual((event.version, refServer.sessionVersion), (2, 2))

            refClient = ref.ReferenceClient(EXAMPLE_KEY, suiteID)
            server = Channel(Role.SERVER, EXAMPLE_KEY, suite=suite, protocolVersion=2)
            server.receiveFrame(refClient.hello())
            (reply,) = server.framesToSend()
            event = server.receiveFrame(refClient.readReply(reply))
            assert isinstance(event, HandshakeCompleted)
            self.assertEqual((event.version, refClient.sessionVersion), (2, 2))
            self.assertEqual(
                refClient.records.open(server.sendRecord(0x14, b"\x00\x00\xc0")),
                (0x14, b"\x00\x00\xc0"),
            )
            error = self.assertRaises(PeerVersionError, server.sendRecord, 0x22, b"")
            self.assertEqual((error.localValue, error.remoteValue), (PROTOCOL_VERSION, 2))
            self.assertIn("need version 3", str(error))
            recordType, body = refClient.records.open(server.sendValue(1))
            self.assertEqual((recordType, decode(body)), (ref.VALUE, 1))
            self.assertRaises(
                RemoteProtocolError,
                server.receiveFrame,
                refClient.records.seal(0x22, bytes(13)),
            )

    def test_version1ClientNewerServer(self) -> None:
        """
        A version 1 client gets a version 1 reply (no version byte: the noise
        reply is 53 bytes) from a version 3 server, in both directions
        between the reference and L{Channel}.
        """
        ref = reference()
        for suite, cipher, suiteID in SUITE_CASES:
            client = ref.ReferenceClient(EXAMPLE_KEY, suiteID, version=1)
            server = Channel(Role.SERVER, EXAMPLE_KEY, suite=suite)
            server.receiveFrame(client.hello())
            (reply,) = server.framesToSend()
            if suite == "noise":
                self.assertEqual(len(reply), 53)
            event = server.receiveFrame(client.readReply(reply))
            assert isinstance(event, HandshakeCompleted)
            self.assertEqual((event.version, client.sessionVersion), (1, 1))
            self.assertEqual(decode(client.records.open(server.sendValue("v1"))[1]), "v1")

            channelClient = Channel(
                Role.CLIENT, EXAMPLE_KEY, suite=suite, cipher=cipher, protocolVersion=1
            )
            refServer = ref.ReferenceServer([EXAMPLE_KEY], (suiteID,))
            (hello,) = channelClient.framesToSend()
            self.assertEqual(hello[4], 1)
            event = channelClient.receiveFrame(refServer.readHello(hello))
            assert isinstance(event, HandshakeCompleted)
            self.assertEqual((event.version, refServer.sessionVersion), (1, 1))

    def test_newerClientVersion1Server(self) -> None:
        """
        A server limited to version 1 rejects a version 3 hello with reason
        1 and its version 1; the client reports it with the advice to
        connect with C{protocolVersion=1}.
        """
        ref = reference()
        for suite, cipher, _ in SUITE_CASES:
            client = Channel(Role.CLIENT, EXAMPLE_KEY, suite=suite, cipher=cipher)
            (hello,) = client.framesToSend()
            accepted = (3,) if suite == "fernet" else (1, 2)
            refRejection = ref.ReferenceServer([EXAMPLE_KEY], accepted, version=1).readHello(hello)
            server = Channel(Role.SERVER, EXAMPLE_KEY, suite=suite, protocolVersion=1)
            self.assertRaises(HandshakeError, server.receiveFrame, hello)
            (rejection,) = server.framesToSend()
            self.assertEqual(rejection, refRejection)
            self.assertEqual(rejection[:3], b"\x01\x01\x01")
            error = self.assertRaises(HandshakeError, client.receiveFrame, rejection)
            self.assertEqual((error.localValue, error.remoteValue), (PROTOCOL_VERSION, 1))
            self.assertIn("protocolVersion=1", str(error))

    def test_version0Rejected(self) -> None:
        """
        A hello of version 0 is rejected with reason 1 by a version 3 server,
        whose rejection gives its version 3.
        """
        ref = reference()
        hello = ref.ReferenceClient(EXAMPLE_KEY, 1, version=0).hello()
        server = Channel(Role.SERVER, EXAMPLE_KEY)
        self.assertRaises(HandshakeError, server.receiveFrame, hello)
        (rejection,) = server.framesToSend()
        self.assertEqual(rejection, ref.ReferenceServer([EXAMPLE_KEY]).readHello(hello))
        self.assertEqual(rejection, b"\x01\x01\x03\x02\x01\x02")
