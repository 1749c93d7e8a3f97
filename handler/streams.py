"""Small stream adapters: count bytes, push back a sniffed head, translate errors."""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Protocol

from monitor.units import MiB

CHUNK_SIZE = 1 * MiB
"""Bytes per read of a stream: a member's data, the tar reader's and the gzip decoder's
blocks, the zipper's reads (see :mod:`handler.memory` for what they add up to)."""


class Readable(Protocol):
    """Anything with ``read(size)`` returning bytes: files, sockets' bodies, decompressors."""

    def read(self, size: int = -1, /) -> bytes: ...


def read_into(stream: Readable, buffer: memoryview | bytearray) -> int:
    """Fill up to ``len(buffer)`` bytes of ``buffer`` from ``stream``; 0 at EOF. Through the
    stream's own ``readinto`` when it has one (a file reads straight into the buffer,
    no bytes object in between: the gzip reader's 8 MiB input blocks were each copied
    once more, 0.09 CPU-s per GiB on ISA-L's inflate thread, the local path's slowest
    stage; ``perf``, 2026-11-30), else through ``read``."""
    readinto: Callable[[memoryview | bytearray], int | None] | None = getattr(
        stream, "readinto", None
    )
    if readinto is None:
        data = stream.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)
    count = readinto(buffer)
    if count is None:  # pragma: no cover - only non-blocking streams, which none of ours is
        raise BlockingIOError("a non-blocking stream has no data yet")
    return count


class ReadOnlyStream(io.RawIOBase):
    """A readable raw stream defined by its ``read``; ``readinto`` and ``readall`` follow."""

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:  # pragma: no cover - abstract
        raise NotImplementedError

    def readinto(self, buffer: memoryview | bytearray) -> int:  # type: ignore[override]
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def readall(self) -> bytes:
        chunks = []
        while chunk := self.read(CHUNK_SIZE):
            chunks.append(chunk)
        return b"".join(chunks)


class CountingReader(ReadOnlyStream):
    """Reads from ``inner`` and counts the bytes; ``on_read(total)`` runs after each read."""

    def __init__(self, inner: Readable, on_read: Callable[[int], None] | None = None) -> None:
        self._inner = inner
        self._on_read = on_read
        self.count = 0

    def read(self, size: int = -1) -> bytes:
        data = self._inner.read(size)
        self._counted(len(data))
        return data

    def readinto(self, buffer: memoryview | bytearray) -> int:  # type: ignore[override]
        count = read_into(self._inner, buffer)
        self._counted(count)
        return count

    def _counted(self, size: int) -> None:
        self.count += size
        if self._on_read is not None:
            self._on_read(self.count)


class PrefixedReader(ReadOnlyStream):
    """Gives back ``head`` (bytes already read to sniff the format), then ``rest``."""

    def __init__(self, head: bytes, rest: Readable) -> None:
        self._head = head
        self._rest = rest

    def read(self, size: int = -1) -> bytes:
        if not self._head:
            return self._rest.read(size)
        if 0 <= size < len(self._head):
            head, self._head = self._head[:size], self._head[size:]
            return head
        head, self._head = self._head, b""
        if size < 0:
            return head + self._rest.read()
        return head + (self._rest.read(size - len(head)) if size > len(head) else b"")

    def readinto(self, buffer: memoryview | bytearray) -> int:  # type: ignore[override]
        if not self._head:
            return read_into(self._rest, buffer)
        size = min(len(buffer), len(self._head))
        buffer[:size] = self._head[:size]
        self._head = self._head[size:]
        if self._head or size == len(buffer):
            return size
        with memoryview(buffer) as view:
            return size + read_into(self._rest, view[size:])


class GuardedReader(ReadOnlyStream):
    """Reads ``inner``; any exception from it passes through ``translate`` first.
    ``read1`` is ``inner``'s own when it has one, else its ``read``."""

    def __init__(self, inner: Readable, translate: Callable[[Exception], Exception]) -> None:
        self._inner = inner
        self._translate = translate

    def read(self, size: int = -1) -> bytes:
        try:
            return self._inner.read(size)
        except Exception as exc:
            raise self._translate(exc) from exc

    def read1(self, size: int = -1) -> bytes:
        read1: Callable[[int], bytes] = getattr(self._inner, "read1", self._inner.read)
        try:
            return read1(size)
        except Exception as exc:
            raise self._translate(exc) from exc

    def readinto(self, buffer: memoryview | bytearray) -> int:  # type: ignore[override]
        try:
            return read_into(self._inner, buffer)
        except Exception as exc:
            raise self._translate(exc) from exc


MAX_FORWARD_READ = 8 * MiB
"""Most bytes one ``read`` of a :class:`ForwardReader` returns at once (a tar header's
extension, read whole by tarfile, is refused above it: see :class:`ForwardReader`)."""


class ForwardReader(ReadOnlyStream):
    """Reads ``inner`` and knows its position: ``tell``, and ``seek`` forward only, by
    reading and dropping the bytes in between (at most :data:`CHUNK_SIZE` at a time).

    What :mod:`tarfile` needs of a file object to read an archive in its seeking mode
    (``r:``) from a stream that cannot seek; unlike its stream mode (``r|``), whose
    buffer joins and slices every block (three copies of each byte on the way to the
    member's reader), a read here is one read of ``inner``. A seek backwards raises
    :class:`io.UnsupportedOperation`; a seek past the end stops at the end (the next
    read returns ``b""``).

    ``read(size)`` returns ``size`` bytes unless the stream ends first, reading
    ``inner`` again after a short read (tarfile takes a short read for the end of the
    archive). tarfile reads a pax or GNU long-name header's extension whole, at the size
    its header gives: a ``size`` below -1 or over ``max_read`` raises :class:`ValueError`
    naming it, so a corrupt size field is a corrupt archive, not a ``MemoryError`` or an
    error of the source.
    """

    def __init__(self, inner: Readable, max_read: int = MAX_FORWARD_READ) -> None:
        self._inner = inner
        self._max_read = max_read
        self._position = 0

    def read(self, size: int = -1) -> bytes:
        if size < -1 or size > self._max_read:
            raise ValueError(
                f"a size field asks for {size:,} bytes at byte {self._position:,} of the "
                f"tar stream (at most {self._max_read:,} are read at once)"
            )
        data = self._inner.read() if size == -1 else read_head(self._inner, size)
        self._position += len(data)
        return data

    def read1(self, size: int) -> bytes:
        """One read of ``inner``: at most ``size`` bytes (and at most ``max_read``),
        possibly fewer before the end; ``b""`` only at the end. A member's data passes
        this way, so a reader that hands out whole blocks,
        :class:`handler.inflate.InflatingReader`, is not copied into one of ``size``."""
        data = self._inner.read(max(0, min(size, self._max_read)))
        self._position += len(data)
        return data

    def readinto(self, buffer: memoryview | bytearray) -> int:  # type: ignore[override]
        count = read_into(self._inner, buffer)
        self._position += count
        return count

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        target = {io.SEEK_SET: offset, io.SEEK_CUR: self._position + offset}.get(whence)
        if target is None or target < self._position:
            raise io.UnsupportedOperation(
                f"this stream seeks forward only (from byte {self._position:,})"
            )
        if target > self._position:
            scratch = bytearray(min(target - self._position, CHUNK_SIZE))
            with memoryview(scratch) as view:
                while (left := target - self._position) > 0:
                    if not self.readinto(view[: min(left, len(view))]):
                        break
        return self._position


def read_head(stream: Readable, size: int) -> bytes:
    """Read up to ``size`` bytes, looping over short reads, stopping early only at EOF."""
    return read_full(stream.read, size)


def read_full(read: Callable[[int], bytes], size: int) -> bytes:
    """Call ``read`` until it has given ``size`` bytes or ``b""``; the bytes it gave, as
    the one bytes object of the first call when that call gave them all (no copy)."""
    parts: list[bytes] = []
    remaining = size
    while remaining > 0:
        chunk = read(remaining)
        if not chunk:
            break
        parts.append(chunk)
        remaining -= len(chunk)
    return b"".join(parts)
