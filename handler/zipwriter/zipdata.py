"""A member's data on its way into the ZIP: compressed blocks that carry their CRC and
size, and the prefix the zipper buffers to learn whether a member is small. No ZIP
records here (see :mod:`handler.zipwriter.records`)."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import BinaryIO, Protocol

from handler.codec import Compressor, crc32
from handler.streams import CHUNK_SIZE


class PrecompressedMember(Protocol):
    """A member's compressed chunks; ``crc32`` and ``uncompressed_size`` are valid once
    iteration is done (so a producer may compute them while it streams)."""

    method: int

    def __iter__(self) -> Iterator[bytes]: ...

    @property
    def crc32(self) -> int: ...

    @property
    def uncompressed_size(self) -> int: ...


class CompressingStream:
    """Compresses raw chunks on the fly with one compressor, tracking CRC and size."""

    def __init__(
        self,
        chunks: Iterable[bytes],
        compressor: Compressor,
        method: int,
        on_raw: Callable[[int], None] | None = None,
    ) -> None:
        self.method = method
        self._chunks = chunks
        self._compressor = compressor
        self._on_raw = on_raw
        self._crc = 0
        self._size = 0

    @property
    def crc32(self) -> int:
        return self._crc

    @property
    def uncompressed_size(self) -> int:
        return self._size

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self._chunks:
            if not chunk:
                continue
            self._crc = crc32(chunk, self._crc)
            self._size += len(chunk)
            if self._on_raw is not None:
                self._on_raw(len(chunk))
            compressed = self._compressor.compress(chunk)
            if compressed:
                yield compressed
        tail = self._compressor.flush()
        if tail:
            yield tail


def take_prefix(blocks: Iterator[bytes], limit: int) -> tuple[deque[bytes], bool]:
    """Pull blocks until more than ``limit`` bytes came or ``blocks`` ended: (the blocks,
    whether that was all of them). Holds at most ``limit`` bytes plus one block."""
    prefix: deque[bytes] = deque()
    size = 0
    for block in blocks:
        if not block:
            continue
        prefix.append(block)
        size += len(block)
        if size > limit:
            return prefix, False
    return prefix, True


def replay(prefix: deque[bytes], rest: Iterator[bytes]) -> Iterator[bytes]:
    """The blocks already taken, each let go once yielded, then the rest."""
    while prefix:
        yield prefix.popleft()
    yield from rest


def iter_chunks(stream: BinaryIO, chunk_size: int = CHUNK_SIZE) -> Iterator[bytes]:
    """Read ``stream`` in chunks of at most ``chunk_size`` until it ends: through its
    ``read1`` when it has one (a chunk may then be short, and is not joined from two
    reads: :class:`handler.archive.tar_members.TarMemberData`), else its ``read``."""
    read: Callable[[int], bytes] = getattr(stream, "read1", stream.read)
    while chunk := read(chunk_size):
        yield chunk
