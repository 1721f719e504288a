# -*- test-case-name: tests.test_fuzz_short -*-
"""
Fuzz the frame input of L{netstructer.channel.Channel}, in every state.

Run it with atheris (coverage-guided, libFuzzer underneath; see
C{fuzz/README.rst})::

    PYTHONPATH=. python fuzz/fuzz_channel.py -max_total_time=3600 \\
        /tmp/channel-corpus fuzz/corpus/channel

or, without atheris, as a long hypothesis run::

    PYTHONPATH=. python fuzz/fuzz_channel.py --hypothesis 100000

Each input sets up a real client and server channel (deterministic
ephemeral keys, clock and nonces, so that every input replays exactly),
brings them to a starting state, and feeds frames to the channel under
test.  Its first byte chooses:

    - bits 0-2, the starting state (modulo 5): 0 a server awaiting the
      hello, 1 a client awaiting the server's reply, 2 a server awaiting
      the key confirmation, 3 an established channel, 4 a closing one
      (it sent its close record, which the peer has not seen);
    - bit 3, the suite (noise, fernet);
    - bit 4, the side under test in states 3 and 4 (server, client);
    - bit 5, the noise cipher (AESGCM, ChaChaPoly);
    - bit 6, the limits (the defaults, or small ones).

The rest is a sequence of operations, each C{[op][length: 2 bytes,
big-endian][payload]} (a last one cut short takes what is left).  C{op}
modulo 4 is:

    - 0: feed C{payload} as a frame;
    - 1: feed the peer's next real frame (the hello, the reply, the key
      confirmation, a pong, a close reply: whatever the real peer queued),
      or, if it queued none and is established, a record it seals with
      type C{payload[0]} and body C{payload[1:]}; C{payload} as is
      otherwise;
    - 2: as 1, with one bit flipped (chosen by C{payload});
    - 3: a value record the peer seals with C{payload} as the encoded
      value (so the value decoder sees fuzzed bytes inside an authentic
      record), or C{payload} as is if the peer cannot seal.

Frames are fed as the Twisted adapter feeds them: as a C{memoryview} of a
buffer that is overwritten after the call.

What the channel under test sends is fed to the peer, which keeps the two
in step.  At the end, the transport is reported lost.

The oracle: L{Channel.receiveFrame} raises only L{RemoteProtocolError}
(the first time) and then only L{LocalProtocolError}, never anything
else: an error is terminal; every event is one of the documented ones;
every received value holds only the types values decode to, re-encodes,
and does not change when the frame's buffer is overwritten; the peer, fed what the channel sends,
raises only L{NetStructerError}; and C{connectionLost} raises only
L{NetStructerError}.  Anything else is a crash.
"""

from __future__ import annotations

import contextlib
import struct
import sys
import warnings
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

try:
    import atheris
except ImportError:  # Only the hypothesis mode and the target are usable.
    atheris = None

_instrument: contextlib.AbstractContextManager[object] = contextlib.nullcontext()
if atheris is not None and __name__ == "__main__" and "--hypothesis" not in sys.argv:
    _instrument = atheris.instrument_imports(include=["netstructer"])

with _instrument:
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

    from netstructer.channel import (
        EXTENSION_RECORD_RANGES,
        Channel,
        CloseCode,
        CloseReceived,
        HandshakeCompleted,
        PingReceived,
        PongReceived,
        RecordReceived,
        Role,
        ValueReceived,
        ValuesReceived,
    )
    from netstructer.errors import (
        LocalProtocolError,
        NetStructerError,
        RemoteProtocolError,
    )
    from netstructer.values import DEFAULT_LIMITS, Encoder, Limits, encode

__all__ = ["KEY", "SMALL_LIMITS", "makeInput", "seeds", "testOneInput"]

KEY = b"cQmnvFlLU9KuTTacn1CwRBQaFlx3QU65zZnPcmh6JIg="
"""The fixed key of every channel the fuzzer makes."""

SMALL_LIMITS = Limits(
    maxDepth=4, maxItems=16, maxSize=512, maxIntBytes=8, maxObjects=64, maxHashCollisions=2
)
"""The small limits bit 6 of the first byte chooses."""

_CLIENT_EPHEMERAL = X25519PrivateKey.from_private_bytes(bytes(range(1, 33)))
_SERVER_EPHEMERAL = X25519PrivateKey.from_private_bytes(bytes(range(33, 65)))
_EVENTS = (
    HandshakeCompleted,
    ValueReceived,
    ValuesReceived,
    PingReceived,
    PongReceived,
    CloseReceived,
    RecordReceived,
)
_OP = struct.Struct("!BH")

STATES = 5


class FuzzFailure(AssertionError):
    """
    The channel broke its contract: a crash for the fuzzer.
    """


def _clock() -> float:
    """
    @return: A fixed time, for Fernet timestamps.
    """
    return 1_700_000_000.0


def _nonces(size: int) -> bytes:
    """
    @return: Fixed bytes, for Fernet nonces.
    """
    return b"\x5a" * size


def _channel(role: Role, config: int) -> Channel:
    """
    @return: A deterministic channel configured by the first byte C{config}.
    """
    suite = "fernet" if config & 0x08 else "noise"
    cipher = "ChaChaPoly" if config & 0x20 else "AESGCM"
    limits = SMALL_LIMITS if config & 0x40 else DEFAULT_LIMITS
    ephemeral = _CLIENT_EPHEMERAL if role is Role.CLIENT else _SERVER_EPHEMERAL
    return Channel(
        role,
        KEY,
        suite=suite,
        cipher=cipher,
        limits=limits,
        currentTime=_clock,
        randomBytes=_nonces,
        ephemeralFactory=lambda: ephemeral,
    )


class _Pair:
    """
    The channel under test and its real peer, brought to a starting state.

    @ivar target: The channel under test.
    @ivar peer: Its peer.
    @ivar pending: Frames the peer queued and has not sent yet.
    @ivar failed: Whether the target raised a protocol error.
    @ivar peerFailed: Whether the peer did.
    """

    def __init__(self, config: int) -> None:
        """
        Make both channels and bring them to the state C{config} chooses.
        """
        state = (config & 0x07) % STATES
        client = _channel(Role.CLIENT, config)
        server = _channel(Role.SERVER, config)
        self.limits = SMALL_LIMITS if config & 0x40 else DEFAULT_LIMITS
        self.encoder = Encoder(self.limits)
        self.failed = False
        self.peerFailed = False
        self.pending: deque[bytes] = deque()
        if state == 0:
            self.target, self.peer = server, client
            self.pending.extend(client.framesToSend())
            return
        for frame in client.framesToSend():
            server.receiveFrame(frame)
        if state == 1:
            self.target, self.peer = client, server
            self.pending.extend(server.framesToSend())
            return
        for frame in server.framesToSend():
            client.receiveFrame(frame)
        if state == 2:
            self.target, self.peer = server, client
            self.pending.extend(client.framesToSend())
            return
        for frame in client.framesToSend():
            server.receiveFrame(frame)
        if config & 0x10:
            self.target, self.peer = client, server
        else:
            self.target, self.peer = server, client
        if state == 4:
            # The close record is held back: the peer has not seen it, so
            # it still sends values, pings and its own close.
            self.target.close(CloseCode.GOING_AWAY, "fuzz")

    def seal(self, recordType: int, body: bytes) -> bytes | None:
        """
        @return: A record sealed by the peer, or L{None} if it cannot seal.
        """
        sender = getattr(self.peer._state, "_sender", None)
        if sender is None or self.peerFailed:
            return None
        try:
            frame: bytes = sender.seal(recordType, body)
        except NetStructerError:
            return None
        return frame

    def peerFrame(self, payload: bytes) -> bytes:
        """
        @return: The peer's next real frame, or a record it seals from
            C{payload}, or C{payload}.
        """
        if self.pending:
            return self.pending.popleft()
        sealed = self.seal(payload[0], payload[1:]) if payload else None
        return payload if sealed is None else sealed

    def feed(self, frame: bytes) -> None:
        """
        Feed one frame to the target and check what it does.

        @raise FuzzFailure: The target broke its contract.
        """
        target = self.target
        # Fed as the Twisted adapter feeds it: a view of its buffer, which
        # is overwritten afterwards.
        buffer = bytearray(frame)
        try:
            with memoryview(buffer) as view:
                event = target.receiveFrame(view)
        except LocalProtocolError as e:
            if not self.failed and not _closedState(target):
                raise FuzzFailure(f"LocalProtocolError before any failure: {e!r}") from e
        except RemoteProtocolError as e:
            if self.failed:
                raise FuzzFailure(f"a failed channel raised {e!r}, not LocalProtocolError") from e
            self.failed = True
        except NetStructerError as e:
            raise FuzzFailure(f"receiveFrame raised {e!r}, not a protocol error") from e
        else:
            if self.failed:
                raise FuzzFailure(f"a failed channel accepted a frame: {event!r}")
            if event is not None and not isinstance(event, _EVENTS):
                raise FuzzFailure(f"an unknown event {event!r}")
            if isinstance(event, RecordReceived) and not any(
                event.recordType in types for types in EXTENSION_RECORD_RANGES.values()
            ):
                raise FuzzFailure(f"a record of a type no capability owns: {event!r}")
            if isinstance(event, ValueReceived | ValuesReceived):
                values = [event.value] if isinstance(event, ValueReceived) else event.values
                if isinstance(event, ValuesReceived) and len(values) < 2:
                    raise FuzzFailure(f"a batch of {len(values)} values")
                for value in values:
                    _checkTypes(value)
                try:
                    encoded = [self.encoder.encode(value) for value in values]
                except NetStructerError as e:
                    raise FuzzFailure(f"a received value does not re-encode: {e!r}") from e
                buffer[:] = bytes(len(buffer))
                if [self.encoder.encode(value) for value in values] != encoded:
                    raise FuzzFailure("a received value changed with the frame's buffer")
        frames = target.framesToSend()
        if not all(type(each) is bytes for each in frames):
            raise FuzzFailure(f"framesToSend returned {frames!r}")
        for each in frames:
            self.feedPeer(each)

    def feedPeer(self, frame: bytes) -> None:
        """
        Feed a frame the target sent to the peer.

        @raise FuzzFailure: The peer raised something other than a
            L{NetStructerError}.
        """
        if self.peerFailed:
            return
        try:
            self.peer.receiveFrame(frame)
        except NetStructerError:
            self.peerFailed = True
            return
        self.pending.extend(self.peer.framesToSend())

    def end(self) -> None:
        """
        Report the transport lost.

        @raise FuzzFailure: C{connectionLost} raised something other than a
            L{NetStructerError}.
        """
        try:
            self.target.connectionLost()
        except NetStructerError:
            pass


_VALUE_TYPES = frozenset(
    {
        type(None),
        bool,
        int,
        float,
        complex,
        str,
        bytes,
        bytearray,
        list,
        tuple,
        set,
        frozenset,
        dict,
    }
)


def _checkTypes(value: object) -> None:
    """
    @raise FuzzFailure: C{value} holds an object of a type values never
        decode to (such as a C{memoryview} of the record).
    """
    stack = [value]
    while stack:
        item = stack.pop()
        if type(item) not in _VALUE_TYPES:
            raise FuzzFailure(f"a received value holds a {type(item).__name__}")
        if isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list | tuple | set | frozenset):
            stack.extend(item)


def _closedState(channel: Channel) -> bool:
    """
    @return: Whether the channel is closed (both close records exchanged),
        where C{LocalProtocolError} is what receiving raises.
    """
    return type(channel._state).__name__ in ("_Closed", "_Failed")


def operations(data: bytes) -> Iterator[tuple[int, bytes]]:
    """
    Split the operations of an input (after its first byte).

    @param data: The operations.
    @return: Each operation's code (modulo 4) and payload.
    """
    offset = 0
    while offset < len(data):
        if len(data) - offset < _OP.size:
            yield 0, data[offset:]
            return
        op, length = _OP.unpack_from(data, offset)
        offset += _OP.size
        yield op % 4, data[offset : offset + length]
        offset += length


def testOneInput(data: bytes) -> None:
    """
    Run one input (see the module docstring for its format).

    @param data: The input.
    @raise FuzzFailure: The channel broke its contract.
    @raise Exception: Anything else escaping is a crash too.
    """
    if not data:
        return
    pair = _Pair(data[0])
    for op, payload in operations(data[1:]):
        if op == 0:
            frame = payload
        elif op == 3:
            sealed = pair.seal(0x01, payload)
            frame = payload if sealed is None else sealed
        else:
            frame = pair.peerFrame(payload)
            if op == 2 and frame:
                bit = sum(payload) % (8 * len(frame))
                flipped = bytearray(frame)
                flipped[bit // 8] ^= 1 << (bit % 8)
                frame = bytes(flipped)
        pair.feed(frame)
    pair.end()


def makeInput(config: int, ops: list[tuple[int, bytes]]) -> bytes:
    """
    Build an input.

    @param config: The first byte.
    @param ops: The operations: codes and payloads.
    @return: The input.
    """
    return bytes((config,)) + b"".join(_OP.pack(op, len(payload)) + payload for op, payload in ops)


EXAMPLE_VALUE: Any = ["hi im haytam", 128, {b"gg": "gg"}, {1, 2, 6, 4}, (False, True)]


def seeds() -> dict[str, bytes]:
    """
    The seed corpus: real sessions, built with the library.

    @return: File names and inputs.
    """
    value = encode(EXAMPLE_VALUE)
    ping = b"\x02" + b"probe"
    close = b"\x04" + struct.pack("!H", 0) + b"bye"
    return {
        "hello-noise": makeInput(0x00, [(1, b"")]),
        "reply-chachapoly": makeInput(0x21, [(1, b"")]),
        "confirm-then-value": makeInput(0x02, [(1, b""), (3, value), (1, ping)]),
        "established-server": makeInput(0x03, [(3, value), (1, ping), (1, close)]),
        "established-client-fernet": makeInput(0x1B, [(3, value), (1, b"\x03pong"), (1, close)]),
        "closing-small-limits": makeInput(0x44, [(3, encode([1, (2, 3)])), (1, close)]),
        "established-batch": makeInput(0x03, [(1, b"\x06\x92" + value + encode((1, b"x")))]),
        "garbage-hello": makeInput(0x00, [(0, b"NSTR\x01\x01" + bytes(48))]),
    }


def writeSeeds(directory: Path) -> None:
    """
    Write the seed corpus to C{directory}.
    """
    directory.mkdir(parents=True, exist_ok=True)
    for name, data in seeds().items():
        (directory / name).write_bytes(data)


def hypothesisInputs() -> Any:
    """
    @return: A hypothesis strategy of inputs in this target's format.
    """
    from hypothesis import strategies as st

    scalars = st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.floats(),
        st.text(max_size=8),
        st.binary(max_size=8),
    )
    values = st.recursive(
        scalars,
        lambda inner: st.one_of(
            st.lists(inner, max_size=4),
            st.tuples(inner, inner),
            st.dictionaries(st.one_of(st.integers(), st.text(max_size=4)), inner, max_size=4),
        ),
        max_leaves=12,
    )
    batches = st.lists(values, min_size=1, max_size=4).map(
        lambda items: b"\x06" + bytes((0x90 | len(items),)) + b"".join(map(encode, items))
    )
    payloads = st.one_of(st.binary(max_size=64), values.map(encode), batches)
    ops = st.lists(st.tuples(st.integers(0, 3), payloads), max_size=6)
    return st.builds(makeInput, st.integers(0, 127), ops)


def runHypothesis(
    target: Callable[[bytes], None], strategy: Any, examples: int, seedInputs: list[bytes]
) -> int:
    """
    Run C{target} over the seeds, then over C{examples} generated inputs.

    @return: How many inputs ran.
    """
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis.errors import HypothesisWarning

    count = 0

    def counted(data: bytes) -> None:
        """
        Count and run one input.
        """
        nonlocal count
        count += 1
        target(data)

    for data in seedInputs:
        counted(data)

    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        phases=[Phase.generate, Phase.shrink],
        suppress_health_check=list(HealthCheck),
    )
    @given(strategy)
    def run(data: bytes) -> None:
        """
        Run one generated input.
        """
        counted(data)

    with warnings.catch_warnings():
        # Large generated inputs make hypothesis warn about their repr.
        warnings.simplefilter("ignore", HypothesisWarning)
        run()
    return count


def fuzzMain(
    argv: list[str],
    target: Callable[[bytes], None],
    inputs: Callable[[], Any],
    seedsOf: Callable[[], dict[str, bytes]],
    writeSeedsTo: Callable[[Path], None],
) -> None:
    """
    Run one fuzz target from the command line: with atheris (libFuzzer's
    options and corpus directories in C{argv}), or C{--hypothesis N}, or
    write the seeds with C{--make-corpus DIR}.

    @param argv: The command line.
    @param target: Takes one input; raises on a finding.
    @param inputs: Makes the hypothesis strategy of inputs.
    @param seedsOf: Makes the seed inputs.
    @param writeSeedsTo: Writes the seeds into a directory.
    """
    if len(argv) == 3 and argv[1] == "--make-corpus":
        writeSeedsTo(Path(argv[2]))
        return
    if len(argv) == 3 and argv[1] == "--hypothesis":
        count = runHypothesis(target, inputs(), int(argv[2]), list(seedsOf().values()))
        print(f"{count} inputs, no failure")
        return
    if atheris is None:
        raise SystemExit("atheris is not installed: pip install atheris, or use --hypothesis N")
    atheris.Setup(argv, target)
    atheris.Fuzz()


def main(argv: list[str]) -> None:
    """
    Fuzz the channel (see L{fuzzMain}).
    """
    fuzzMain(argv, testOneInput, hypothesisInputs, seeds, writeSeeds)


if __name__ == "__main__":
    main(sys.argv)
