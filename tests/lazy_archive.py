"""Archives produced on the fly: a tar (or tar.gz) of any size that is never stored.

A :class:`LazyTar` is a :class:`handler.locations.local.Source` whose stream generates the
archive as it is read (tar headers from ``tarfile``, member data from a seed), the way an
S3 GetObject body arrives: front to back, never seekable. Its reads can be cut short at
any chunking, and every read size asked of it is recorded, so tests can show what the
pipeline reads and that nothing buffers a whole member.
"""

from __future__ import annotations

import hashlib
import random
import tarfile
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import BinaryIO, cast

from handler.streams import ReadOnlyStream
from monitor.units import KiB

TAR_BLOCK = 512
TAR_RECORD = 20 * TAR_BLOCK
"""tarfile pads an archive to a whole record of 20 blocks (10,240 bytes)."""
PATTERN = 4 * KiB
"""Member data repeats a 4 KiB random block: deflate shrinks it about 250 times."""
FIXED_MTIME = 1_700_000_000


@dataclass(frozen=True, slots=True)
class LazyMember:
    """One file member: its name, size in bytes, and the seed of its data."""

    name: str
    size: int
    seed: int = 0

    def chunks(self, chunk: int = 1 << 20) -> Iterator[bytes]:
        """The member's bytes, ``chunk`` at a time (one PATTERN-aligned block reused)."""
        block = random.Random(self.seed).randbytes(PATTERN)
        unit = block * max(chunk // PATTERN, 1)
        remaining = self.size
        while remaining > 0:
            piece = unit if remaining >= len(unit) else unit[:remaining]
            yield piece
            remaining -= len(piece)

    def sha256(self) -> str:
        digest = hashlib.sha256()
        for piece in self.chunks():
            digest.update(piece)
        return digest.hexdigest()


def _padding(size: int, unit: int) -> bytes:
    return bytes(-size % unit)


def tar_chunks(members: Sequence[LazyMember]) -> Iterator[bytes]:
    """A PAX tar of ``members`` (directories implied by names), generated piece by piece."""
    total = 0
    for member in members:
        info = tarfile.TarInfo(member.name)
        info.size = member.size
        info.mode = 0o644
        info.mtime = FIXED_MTIME
        header = info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")
        yield header
        total += len(header)
        yield from member.chunks()
        pad = _padding(member.size, TAR_BLOCK)
        yield pad
        total += member.size + len(pad)
    end = bytes(2 * TAR_BLOCK)
    total += len(end)
    yield end + _padding(total, TAR_RECORD)


def gzip_chunks(chunks: Iterator[bytes], level: int = 1) -> Iterator[bytes]:
    """``chunks`` compressed on the fly into one gzip member."""
    compressor = zlib.compressobj(level, zlib.DEFLATED, 31)
    for piece in chunks:
        out = compressor.compress(piece)
        if out:
            yield out
    yield compressor.flush()


class ChunkStream(ReadOnlyStream):
    """A file-like view of an iterator of chunks that never holds more than one chunk.

    ``max_read`` cuts every read short to at most that many bytes (a network body's
    short reads); ``requests`` records the size of every read asked of it.
    """

    def __init__(self, chunks: Iterator[bytes], *, max_read: int | None = None) -> None:
        self._chunks = chunks
        self._current = memoryview(b"")
        self._max_read = max_read
        self.requests: list[int] = []

    def read(self, size: int = -1) -> bytes:
        self.requests.append(size)
        if size < 0:
            return b"".join([bytes(self._current), *self._chunks])
        if self._max_read is not None:
            size = min(size, self._max_read)
        while not self._current:
            nxt = next(self._chunks, None)
            if nxt is None:
                return b""
            self._current = memoryview(nxt)
        data = bytes(self._current[:size])
        self._current = self._current[size:]
        return data


@dataclass
class LazyTar:
    """A tar or tar.gz source generated as it is read (see the module docstring)."""

    members: Sequence[LazyMember]
    gzip: bool = False
    max_read: int | None = None
    label: str = "lazy"
    streams: list[ChunkStream] = field(default_factory=list)
    _size: int | None = None

    @property
    def name(self) -> str:
        return f"{self.label}.tar{'.gz' if self.gzip else ''}"

    def _chunks(self) -> Iterator[bytes]:
        chunks = tar_chunks(self.members)
        return gzip_chunks(chunks) if self.gzip else chunks

    def size(self) -> int:
        """The archive's size in bytes (what an S3 HEAD reports); counted once, by
        generating it (tar sizes follow from the headers, gzip's must be measured)."""
        if self._size is None:
            self._size = sum(len(piece) for piece in self._chunks())
        return self._size

    @property
    def uncompressed_bytes(self) -> int:
        return sum(m.size for m in self.members)

    def open_stream(self) -> BinaryIO:
        stream = ChunkStream(self._chunks(), max_read=self.max_read)
        self.streams.append(stream)
        return cast(BinaryIO, stream)

    def open_random_access(self) -> BinaryIO:
        raise NotImplementedError("a lazy tar is read front to back only")
