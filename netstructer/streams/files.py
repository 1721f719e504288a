# -*- test-case-name: tests.test_streams_files -*-
"""
Files as streams, for the adapters: L{FileSource} reads a file in the
bounded chunks the engine asks for; L{FileSink} keeps an incoming stream
under a temporary name in its target directory and gives it its final name
only once the stream is whole and checked (never overwriting unless asked),
removes it if the stream fails, or keeps it aside to resume.
L{sanitizeName} makes a peer's name safe to create; L{storageProblem} says
in a few words why storage failed, for the ABORT the sender sees.

These do blocking file I/O: the state machines never call them.  An
adapter calls them from a thread (Twisted) or between its socket calls (the
blocking client).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import shutil
import stat
import unicodedata
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Final

from zope.interface import implementer

from netstructer.streams.interfaces import IStreamSource

try:
    import fcntl
except ImportError:  # pragma: no cover -- not POSIX
    fcntl = None  # type: ignore[assignment]

if TYPE_CHECKING:
    from hashlib import _Hash

__all__ = [
    "META_SUFFIX",
    "PART_SUFFIX",
    "FileSink",
    "FileSource",
    "hashPrefix",
    "openSink",
    "sanitizeName",
    "spaceProblem",
    "storageProblem",
    "streamName",
    "writeMeta",
]

PART_SUFFIX: Final = ".part"
"""What a sink's temporary name ends with (it starts with a dot)."""

META_SUFFIX: Final = ".meta.json"
"""What the name of the file holding a saved stream's meta ends with (its
stream's name, then this)."""

SPACE_RESERVE: Final = 64 * 1024 * 1024
"""The free space a receiver keeps on its disk: a stream announcing more
than the free space less this is refused."""

MAX_NAME_BYTES: Final = 255
"""The longest name L{sanitizeName} returns, in bytes of UTF-8."""

_READ_SIZE = 1024 * 1024
_UNSAFE = re.compile(r'[\x00-\x1f\x7f<>:"|?*]')
_RESERVED = re.compile(r"(?i)^(con|prn|aux|nul|com[0-9]|lpt[0-9])(\..*)?$")


def sanitizeName(name: str) -> str:
    """
    Make a name from the peer safe to create in a directory: its last path
    component only (either separator), without control characters or the
    characters some file systems forbid (each replaced by C{_}), without
    leading dots or spaces (no hidden files, no clash with a sink's
    temporary names) or trailing ones, not a name Windows reserves, and at
    most L{MAX_NAME_BYTES} bytes of UTF-8.

    @param name: The name the peer gave.
    @return: The name to use.
    @raise ValueError: Nothing of it is left.
    """
    if not isinstance(name, str):
        raise TypeError(f"a file name is text, not {type(name).__name__}")
    name = unicodedata.normalize("NFC", name)
    name = re.split(r"[/\\]", name)[-1]
    name = _UNSAFE.sub("_", name).lstrip(". ").rstrip(". ")
    if _RESERVED.match(name):
        name = "_" + name
    encoded = name.encode("utf-8")[:MAX_NAME_BYTES]
    name = encoded.decode("utf-8", "ignore").rstrip(". ")
    if not name:
        raise ValueError("the name has nothing left that can name a file")
    return name


def storageProblem(error: OSError) -> str:
    """
    @param error: Why writing or renaming a file failed.
    @return: What the sender is told (never a path of this side).
    """
    known = {
        errno.ENOSPC: "the receiver's disk is full",
        errno.EDQUOT: "the receiver's disk quota is exceeded",
        errno.EFBIG: "the file is too large for the receiver's file system",
        errno.EEXIST: "a file of that name exists at the receiver",
        errno.EACCES: "the receiver may not write there",
        errno.EROFS: "the receiver's file system is read-only",
    }
    return known.get(error.errno or 0, f"the receiver could not store it ({error.strerror})")


def streamName(meta: object) -> str | None:
    """
    The file name a stream's meta gives: the meta itself if it is text, or
    its C{"name"} if it is a dict with a text name; sanitized.

    @return: The name, or L{None} if the meta gives none usable.
    """
    name = meta.get("name") if isinstance(meta, dict) else meta
    if not isinstance(name, str):
        return None
    try:
        return sanitizeName(name)
    except ValueError:
        return None


def spaceProblem(directory: str | os.PathLike[str], size: int | None) -> str | None:
    """
    Whether a stream of C{size} bytes fits on the disk of C{directory},
    keeping L{SPACE_RESERVE} free.

    @param size: The size the stream announced, or L{None} (nothing is
        checked before it arrives).
    @return: Why it does not fit, for the sender; or L{None}.
    """
    if size is None:
        return None
    free = shutil.disk_usage(directory).free
    if size + SPACE_RESERVE <= free:
        return None
    return (
        f"the receiver's disk is too full: {size} bytes announced, "
        f"{max(free - SPACE_RESERVE, 0)} bytes available"
    )


def _jsonable(value: object) -> object:
    """
    A value as JSON can hold it: dicts with text keys, lists, text,
    numbers, booleans and null as they are; anything else as its C{repr}.
    """
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, dict):
        return {
            key if isinstance(key, str) else repr(key): _jsonable(item)
            for key, item in value.items()
        }
    if isinstance(value, list | tuple):
        return [_jsonable(item) for item in value]
    return repr(value)


def writeMeta(path: str | os.PathLike[str], meta: object) -> Path:
    """
    Write a saved stream's meta beside it, as JSON (what JSON cannot hold,
    as its Python C{repr}), under a temporary name renamed into place.

    @param path: The saved stream's path.
    @return: The meta's path: the stream's, with L{META_SUFFIX} added.
    @raise OSError: Writing failed.
    """
    target = Path(path)
    metaPath = target.with_name(target.name + META_SUFFIX)
    temporary = target.with_name(f".{target.name}{META_SUFFIX}{PART_SUFFIX}")
    text = json.dumps(_jsonable(meta), ensure_ascii=False, indent=2)
    with open(temporary, "w", encoding="utf-8") as file:
        file.write(text + "\n")
    os.replace(temporary, metaPath)
    return metaPath


def hashPrefix(file: BinaryIO, length: int) -> _Hash | None:
    """
    Hash the next C{length} bytes of C{file}, reading in bounded chunks.

    @return: A SHA-256 hash object fed them, or L{None} if the file ends
        first.
    """
    hasher = hashlib.sha256()
    left = length
    while left:
        data = file.read(min(left, _READ_SIZE))
        if not data:
            return None
        hasher.update(data)
        left -= len(data)
    return hasher


@implementer(IStreamSource)
class FileSource:
    """
    A file's bytes, from its current position (or its start, for a path).

    @ivar size: How many bytes are left to read when it was opened, if it is
        a regular file; else L{None}.
    """

    def __init__(self, file: str | os.PathLike[str] | BinaryIO) -> None:
        """
        @param file: A path, or a file opened for binary reading (which the
            source does not close).
        """
        if isinstance(file, str | os.PathLike):
            self._file: BinaryIO = open(file, "rb")  # noqa: SIM115 -- closed by close()
            self._owned = True
        else:
            self._file = file
            self._owned = False
        self._start = self._file.tell() if self._file.seekable() else 0
        self.size = self._regularSize()

    def _regularSize(self) -> int | None:
        try:
            status = os.fstat(self._file.fileno())
        except (OSError, AttributeError, ValueError):
            # Not a file of the system (an io.BytesIO): seekable, or not.
            return self._seekableSize()
        if not stat.S_ISREG(status.st_mode):
            return None
        return max(status.st_size - self._start, 0)

    def _seekableSize(self) -> int | None:
        file = self._file
        if not file.seekable():
            return None
        end = file.seek(0, os.SEEK_END)
        file.seek(self._start)
        return max(end - self._start, 0)

    def read(self, maximum: int) -> bytes | None:
        """
        @return: The next bytes, at most C{maximum}; C{b""} at the end;
            L{None} if a non-blocking file has none yet.
        """
        return self._file.read(maximum)

    def verifyPrefix(self, offset: int, sha256: bytes) -> _Hash | None:
        """
        Check that the first C{offset} bytes are those the receiver holds,
        for a resume: if so, the source goes on from C{offset}.

        @param offset: The size of the receiver's part.
        @param sha256: Its SHA-256.
        @return: A SHA-256 hash object fed those bytes, for
            L{OutgoingStream.resumeFrom
            <netstructer.streams.outgoing.OutgoingStream.resumeFrom>}; or
            L{None} if they differ (the source is back at its start).
        """
        self._file.seek(self._start)
        hasher = hashPrefix(self._file, offset)
        if hasher is None or hasher.digest() != sha256:
            self._file.seek(self._start)
            return None
        return hasher

    def close(self) -> None:
        """
        Close the file, if the source opened it.
        """
        if self._owned:
            self._file.close()


class FileSink:
    """
    Where an incoming stream is kept: C{.NAME.part} in the target
    directory, renamed to C{NAME} by L{commit} once the stream is whole.

    @ivar name: Its name, sanitized.
    @ivar path: The final path.
    @ivar partPath: The temporary path.
    @ivar offset: The size of the part kept from an earlier transfer, when
        resuming (else 0): accept the stream there, with L{prefixHash}.
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        name: str,
        overwrite: bool = False,
        resume: bool = False,
    ) -> None:
        """
        @param directory: Where to keep the file.
        @param name: Its name, as the peer gave it (it is sanitized).
        @param overwrite: Whether an existing file of that name may be
            replaced.
        @param resume: Whether to keep a part from an earlier transfer.
        @raise FileExistsError: A file of that name exists (and
            C{overwrite} is false), or another transfer of it is under way.
        @raise ValueError: The name has nothing usable.
        @raise OSError: The part cannot be created.
        """
        self.name = sanitizeName(name)
        self._directory = Path(directory)
        self.path = self._directory / self.name
        self.partPath = self._directory / f".{self.name}{PART_SUFFIX}"
        self._overwrite = overwrite
        if not overwrite and self.path.exists():
            raise FileExistsError(errno.EEXIST, "a file of that name exists", self.name)
        descriptor = os.open(self.partPath, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            if fcntl is not None:
                try:
                    fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    raise FileExistsError(
                        errno.EEXIST, "another transfer of it is under way", self.name
                    ) from None
            if not resume:
                os.ftruncate(descriptor, 0)
            self._file: BinaryIO = os.fdopen(descriptor, "r+b")
        except BaseException:
            os.close(descriptor)
            raise
        self.offset = self._file.seek(0, os.SEEK_END)

    def prefixHash(self) -> _Hash:
        """
        @return: A SHA-256 hash object fed the part kept (its first
            L{offset} bytes), for L{IncomingStream.accept
            <netstructer.streams.incoming.IncomingStream.accept>}.
        """
        self._file.seek(0)
        hasher = hashPrefix(self._file, self.offset)
        self._file.seek(self.offset)
        if hasher is None:
            raise OSError(errno.EIO, "the part file shrank while it was read", str(self.partPath))
        return hasher

    def truncate(self, offset: int) -> None:
        """
        Keep only the first C{offset} bytes of the part (to accept at an
        offset below what it holds).
        """
        self._file.truncate(offset)
        self.offset = self._file.seek(offset)

    def write(self, data: bytes) -> None:
        """
        Append the stream's next bytes.

        @raise OSError: Storage failed (see L{storageProblem}).
        """
        self._file.write(data)

    def commit(self) -> Path:
        """
        The stream is whole and checked: write it out to the disk and give
        it its final name, atomically.

        @return: Its final path.
        @raise FileExistsError: A file of that name appeared meanwhile (and
            C{overwrite} is false); the part is kept.
        @raise OSError: Storage failed.
        """
        self._file.flush()
        os.fsync(self._file.fileno())
        if self._overwrite:
            os.replace(self.partPath, self.path)
        else:
            # A hard link fails if the name exists, with no window between a
            # check and the rename.
            os.link(self.partPath, self.path)
            os.unlink(self.partPath)
        self._file.close()
        self._syncDirectory()
        return self.path

    def _syncDirectory(self) -> None:
        # Best effort: the rename reaches the disk with the directory, which
        # some systems cannot open or sync (the file itself was synced).
        try:
            descriptor = os.open(self._directory, os.O_RDONLY)
        except OSError:
            return
        try:
            with contextlib.suppress(OSError):
                os.fsync(descriptor)
        finally:
            os.close(descriptor)

    def discard(self) -> None:
        """
        The stream failed or was refused: remove its part.
        """
        if not self._file.closed:
            self._file.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.partPath)

    def suspend(self) -> None:
        """
        The session ended mid-stream: keep the part, written out to the
        disk, for a later transfer to resume; or remove it if it holds
        nothing.
        """
        if self._file.closed:
            return
        self._file.flush()
        if not self._file.tell() and not os.fstat(self._file.fileno()).st_size:
            self.discard()
            return
        os.fsync(self._file.fileno())
        self._file.close()


def openSink(
    path: Path, overwrite: bool, resume: bool, size: int | None
) -> tuple[FileSink, _Hash | None, str | None]:
    """
    Open the part of a stream to save at C{path} (blocking file work).

    @param overwrite: Whether an existing file of that name may be replaced.
    @param resume: Whether to keep a part an earlier transfer left.
    @param size: The stream's announced size, if any.
    @return: The sink; the hash of the part it holds (to accept the stream
        at its end), or L{None}; and why the stream does not fit on the
        disk, or L{None}.
    @raise OSError: The part cannot be made (a file of that name exists,
        another transfer of it is under way, the directory is not
        writable).
    @raise ValueError: The name has nothing usable.
    """
    sink = FileSink(path.parent, path.name, overwrite=overwrite, resume=resume)
    try:
        if sink.offset and (not resume or (size is not None and sink.offset > size)):
            sink.truncate(0)
        remaining = None if size is None else size - sink.offset
        problem = spaceProblem(path.parent, remaining)
        prefix = sink.prefixHash() if sink.offset and problem is None else None
    except BaseException:
        sink.suspend()
        raise
    return sink, prefix, problem
