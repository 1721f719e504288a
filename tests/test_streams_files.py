# -*- test-case-name: tests.test_streams_files -*-
"""
Tests for L{netstructer.streams.files} and L{netstructer.streams.sources}:
files and other sources as streams, sinks that keep a stream under its
final name only once it is whole, and names made safe.
"""

from __future__ import annotations

import errno
import hashlib
import io
import os
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from netstructer.streams import AbortCode, IncomingStream, IStreamSource
from netstructer.streams.files import (
    MAX_NAME_BYTES,
    PART_SUFFIX,
    FileSink,
    FileSource,
    sanitizeName,
    storageProblem,
)
from netstructer.streams.sources import BytesSource, IterableSource, PushSource

from ._streamshost import Collector, EngineObserver, Pair, Sent, sha256

DATA = os.urandom(300_000)


class SanitizeNameTests(SynchronousTestCase):
    """
    L{sanitizeName} keeps names inside their directory.
    """

    def test_examples(self) -> None:
        """
        Path components, hidden names, unsafe characters and reserved names
        are taken care of; ordinary names are kept.
        """
        for name, expected in [
            ("report.pdf", "report.pdf"),
            ("../../etc/passwd", "passwd"),
            ("..\\..\\boot.ini", "boot.ini"),
            ("/absolute/name.txt", "name.txt"),
            (".bashrc", "bashrc"),
            ("..hidden..", "hidden"),
            ("a\x00b\nc", "a_b_c"),
            ('what?<>:"|*', "what_______"),
            ("CON", "_CON"),
            ("lpt1.txt", "_lpt1.txt"),
            ("café", "café"),
            (" spaced . ", "spaced"),
        ]:
            self.assertEqual(sanitizeName(name), expected, name)

    def test_nothingLeft(self) -> None:
        """
        A name with nothing usable is refused.
        """
        for name in ("", ".", "..", "a/", "../", " . "):
            self.assertRaises(ValueError, sanitizeName, name)
        self.assertRaises(TypeError, sanitizeName, b"bytes")

    def test_long(self) -> None:
        """
        A long name is cut to 255 bytes of UTF-8, never inside a character.
        """
        name = sanitizeName("é" * 200)
        self.assertLessEqual(len(name.encode("utf-8")), MAX_NAME_BYTES)
        self.assertEqual(name, "é" * 127)

    @given(st.text(max_size=300))
    def test_anyName(self, name: str) -> None:
        """
        Whatever the name, the result is one component of a directory that
        is neither hidden nor special, or a C{ValueError}.
        """
        try:
            safe = sanitizeName(name)
        except ValueError:
            return
        self.assertNotIn("/", safe)
        self.assertNotIn("\\", safe)
        self.assertNotIn("\x00", safe)
        self.assertFalse(safe.startswith("."))
        self.assertNotIn(safe, ("", ".", ".."))
        self.assertLessEqual(len(safe.encode("utf-8")), MAX_NAME_BYTES)
        self.assertEqual(Path("/d", safe).parent, Path("/d"))


class SourceTests(SynchronousTestCase):
    """
    Sources without I/O.
    """

    def test_interfaces(self) -> None:
        """
        Every source provides L{IStreamSource}.
        """
        path = Path(self.mktemp())
        path.write_bytes(b"x")
        for source in (BytesSource(b""), IterableSource([]), PushSource(), FileSource(path)):
            self.assertTrue(verifyObject(IStreamSource, source))

    def test_bytes(self) -> None:
        """
        L{BytesSource} hands out its bytes in pieces, then C{b""}.
        """
        source = BytesSource(bytearray(b"abcdef"))
        self.assertEqual(source.size, 6)
        self.assertEqual([source.read(4), source.read(4), source.read(4)], [b"abcd", b"ef", b""])
        source.seek(2)
        self.assertEqual(source.read(10), b"cdef")
        self.assertRaises(ValueError, source.seek, 7)

    def test_iterable(self) -> None:
        """
        L{IterableSource} cuts its chunks to the size asked for and skips
        empty ones; anything but bytes is refused.
        """
        source = IterableSource([b"abc", b"", b"defgh"])
        self.assertEqual(
            [source.read(2), source.read(2), source.read(10), source.read(1)],
            [b"ab", b"c", b"defgh", b""],
        )
        self.assertRaises(TypeError, IterableSource(["text"]).read, 1)  # type: ignore[list-item]

    def test_push(self) -> None:
        """
        L{PushSource} buffers what is written, says when it is full, tells
        the adapter when it drained, and wakes a starved stream.
        """
        drained: list[bool] = []
        source = PushSource(highWater=10, onDrained=lambda: drained.append(True))
        self.assertIsNone(source.read(5))
        source.write(b"abcdefgh")
        self.assertFalse(source.full)
        source.write(b"ijkl")
        self.assertTrue(source.full)
        self.assertEqual(source.read(3), b"abc")
        self.assertEqual(drained, [])
        self.assertEqual(source.read(6), b"defghi")
        self.assertEqual(drained, [True])
        source.finish()
        self.assertRaises(ValueError, source.write, b"more")
        self.assertEqual(source.read(100), b"jkl")
        self.assertEqual(source.read(100), b"")

    def test_pushFails(self) -> None:
        """
        A L{PushSource} that failed raises, once what was buffered is read.
        """
        source = PushSource()
        source.write(b"ab")
        source.fail(OSError("gone"))
        self.assertEqual(source.read(5), b"ab")
        self.assertRaises(OSError, source.read, 5)

    def test_pushThroughEngine(self) -> None:
        """
        A stream fed by a L{PushSource} goes on as chunks are pushed.
        """
        pair = Pair()
        source = PushSource()
        sent = Sent()
        stream = pair.client.openStream(source, sent)
        source.attach(stream)
        pair.pump()
        for index in range(0, len(DATA), 7000):
            source.write(DATA[index : index + 7000])
            pair.pump()
        source.finish()
        pair.pump()
        self.assertEqual(sent.confirmed, (len(DATA), sha256(DATA)))
        self.assertEqual(pair.serverObserver.collectors[stream.streamID].data, DATA)


class FileSourceTests(SynchronousTestCase):
    """
    L{FileSource}.
    """

    def test_path(self) -> None:
        """
        A path's whole file, its size known.
        """
        path = Path(self.mktemp())
        path.write_bytes(DATA)
        source = FileSource(path)
        self.assertEqual(source.size, len(DATA))
        chunks = []
        while chunk := source.read(65536):
            chunks.append(chunk)
        self.assertEqual(b"".join(chunks), DATA)
        source.close()

    def test_openFile(self) -> None:
        """
        An open file, from its position; not closed by the source.  A
        seekable file object that is not a file of the system (a
        C{BytesIO}) has the size left from its position; a pipe has none.
        """
        path = Path(self.mktemp())
        path.write_bytes(DATA)
        with path.open("rb") as file:
            file.seek(1000)
            source = FileSource(file)
            self.assertEqual(source.size, len(DATA) - 1000)
            self.assertEqual(source.read(5), DATA[1000:1005])
            source.close()
            self.assertFalse(file.closed)
        self.assertEqual(FileSource(io.BytesIO(b"abc")).size, 3)
        reader, writer = os.pipe()
        with os.fdopen(reader, "rb") as pipe, os.fdopen(writer, "wb"):
            self.assertIsNone(FileSource(pipe).size)

    def test_verifyPrefix(self) -> None:
        """
        The source checks a receiver's part against its own start.
        """
        path = Path(self.mktemp())
        path.write_bytes(DATA)
        source = FileSource(path)
        hasher = source.verifyPrefix(1000, sha256(DATA[:1000]))
        assert hasher is not None
        self.assertEqual(hasher.digest(), sha256(DATA[:1000]))
        self.assertEqual(source.read(10), DATA[1000:1010])
        self.assertIsNone(source.verifyPrefix(1000, sha256(b"other")))
        self.assertEqual(source.read(10), DATA[:10])
        self.assertIsNone(source.verifyPrefix(len(DATA) + 1, sha256(DATA)))
        source.close()


class FileSinkTests(SynchronousTestCase):
    """
    L{FileSink}.
    """

    def setUp(self) -> None:
        self.directory = Path(self.mktemp())
        self.directory.mkdir()

    def test_commit(self) -> None:
        """
        A stream is written under a temporary name, and appears under its
        final name only when committed.
        """
        sink = FileSink(self.directory, "../report.bin")
        sink.write(b"abc")
        sink.write(b"def")
        self.assertEqual(os.listdir(self.directory), [".report.bin" + PART_SUFFIX])
        path = sink.commit()
        self.assertEqual(path, self.directory / "report.bin")
        self.assertEqual(path.read_bytes(), b"abcdef")
        self.assertEqual(os.listdir(self.directory), ["report.bin"])

    def test_discard(self) -> None:
        """
        A failed stream leaves nothing behind.
        """
        sink = FileSink(self.directory, "gone.bin")
        sink.write(b"abc")
        sink.discard()
        sink.discard()
        self.assertEqual(os.listdir(self.directory), [])

    def test_noOverwrite(self) -> None:
        """
        An existing file is kept unless overwriting was asked for, whether
        it was there first or appeared meanwhile.
        """
        (self.directory / "taken").write_bytes(b"old")
        self.assertRaises(FileExistsError, FileSink, self.directory, "taken")
        sink = FileSink(self.directory, "late")
        sink.write(b"new")
        (self.directory / "late").write_bytes(b"first")
        self.assertRaises(FileExistsError, sink.commit)
        self.assertEqual((self.directory / "late").read_bytes(), b"first")
        sink.discard()
        sink = FileSink(self.directory, "taken", overwrite=True)
        sink.write(b"new")
        sink.commit()
        self.assertEqual((self.directory / "taken").read_bytes(), b"new")

    def test_oneTransferAtATime(self) -> None:
        """
        Two transfers of one name at once: the second is refused.
        """
        first = FileSink(self.directory, "same")
        self.assertRaises(FileExistsError, FileSink, self.directory, "same")
        first.discard()
        FileSink(self.directory, "same").discard()

    def test_resume(self) -> None:
        """
        A suspended part is found again by a sink that resumes, with its
        size and hash; one that does not resume starts over.
        """
        sink = FileSink(self.directory, "big.bin", resume=True)
        self.assertEqual(sink.offset, 0)
        sink.write(DATA[:5000])
        sink.suspend()
        sink = FileSink(self.directory, "big.bin", resume=True)
        self.assertEqual(sink.offset, 5000)
        self.assertEqual(sink.prefixHash().digest(), sha256(DATA[:5000]))
        sink.truncate(4000)
        self.assertEqual(sink.offset, 4000)
        sink.write(DATA[4000:])
        sink.commit()
        self.assertEqual((self.directory / "big.bin").read_bytes(), DATA)
        sink = FileSink(self.directory, "other.bin", resume=True)
        sink.write(b"abc")
        sink.suspend()
        sink = FileSink(self.directory, "other.bin")
        self.assertEqual(sink.offset, 0)
        sink.discard()

    def test_storageProblem(self) -> None:
        """
        Storage failures are told in a few words, without paths.
        """
        self.assertEqual(
            storageProblem(OSError(errno.ENOSPC, "No space", "/secret/path")),
            "the receiver's disk is full",
        )
        self.assertIn("quota", storageProblem(OSError(errno.EDQUOT, "Quota")))
        self.assertNotIn("/x", storageProblem(OSError(errno.EIO, "I/O error", "/x")))


class FileTransferTests(SynchronousTestCase):
    """
    A file through two engines to a sink, as an adapter would do it, with
    an interruption and a resume.
    """

    def test_interruptedAndResumed(self) -> None:
        """
        A transfer cut off mid-stream leaves a part and no file; the next
        transfer resumes from the part and the file is whole.
        """
        source = Path(self.mktemp())
        source.write_bytes(DATA)
        directory = Path(self.mktemp())
        directory.mkdir()
        sinks: list[FileSink] = []

        class Saver(Collector):
            def dataReceived(self, data: bytes) -> None:
                sinks[-1].write(data)
                self.stream.consumed(len(data))

            def streamEnded(self) -> None:
                sinks[-1].commit()
                self.stream.complete()

            def streamFailed(self, error: Exception) -> None:
                sinks[-1].suspend()

        def offered(stream: IncomingStream) -> None:
            assert isinstance(stream.meta, dict)
            sink = FileSink(directory, stream.meta["name"], resume=stream.resume)
            sinks.append(sink)
            prefix = sink.prefixHash() if sink.offset else None
            stream.accept(Saver(stream), offset=sink.offset, prefix=prefix)

        def transfer(rounds: int | None) -> tuple[Pair, Sent]:
            pair = Pair(
                serverObserver=EngineObserver(onOffered=offered), clientOptions={"chunkSize": 8192}
            )
            fileSource = FileSource(source)
            sent = Sent()

            def onResume(offset: int, digest: bytes) -> None:
                prefix = fileSource.verifyPrefix(offset, digest)
                if prefix is None:
                    stream.abort("changed", AbortCode.RESUME_MISMATCH)
                else:
                    stream.resumeFrom(offset, prefix)

            sent.onResume = onResume
            stream = pair.client.openStream(
                fileSource, sent, meta={"name": "data.bin"}, size=fileSource.size, resume=True
            )
            if rounds is None:
                pair.pump()
            else:
                for _ in range(rounds):
                    pair.deliverOne(pair.clientHost, pair.serverHost, pair.server)
                    pair.deliverOne(pair.serverHost, pair.clientHost, pair.client)
                pair.server.sessionClosed(ConnectionResetError("cut"))
                pair.client.sessionClosed(ConnectionResetError("cut"))
            fileSource.close()
            return pair, sent

        _, sent = transfer(rounds=10)
        self.assertIsNotNone(sent.error)
        self.assertEqual(os.listdir(directory), [".data.bin" + PART_SUFFIX])
        held = (directory / (".data.bin" + PART_SUFFIX)).stat().st_size
        self.assertGreater(held, 0)
        pair, sent = transfer(rounds=None)
        self.assertEqual(sent.offers, [(held, sha256(DATA[:held]))])
        self.assertEqual(sent.confirmed, (len(DATA), hashlib.sha256(DATA).digest()))
        self.assertEqual((directory / "data.bin").read_bytes(), DATA)
        self.assertEqual(os.listdir(directory), ["data.bin"])
        sentBytes = sum(
            len(body) - 12
            for recordType, body in pair.delivered[pair.serverHost.role].records
            if recordType == 0x22
        )
        self.assertEqual(sentBytes, len(DATA) - held)
