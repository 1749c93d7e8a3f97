"""IncrementalZipper: write a ZIP (with ZIP64 where needed) one member at a time.

Members are streamed: the zipper never holds more than one chunk of a member.
On a seekable sink each local header is patched with CRC and sizes after the data;
on a non-seekable sink (a pipe, an S3 multipart upload) the values follow the data
in a data descriptor. Every member goes through one path,
:meth:`IncrementalZipper.add_precompressed`, so members (or blocks of one member)
compressed elsewhere, on worker threads for instance, append the same way.
"""

from __future__ import annotations

import os
import posixpath
import stat
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import BinaryIO, Protocol, Self

from handler.centraldir import CentralRecords
from handler.codec import (
    DEFAULT_LEVEL,
    Compression,
    Compressor,
    CompressorFactory,
    StoreCompressor,
    check_compression,
    check_level,
    crc32,
    fastest_deflate,
)
from handler.errors import CompressionError
from handler.zipformat import (
    FLAG_DATA_DESCRIPTOR,
    METHOD_DEFLATED,
    METHOD_STORED,
    ZIP32_LIMIT,
    ZipEntry,
    dos_datetime,
    encode_name,
    end_records,
    external_attributes,
    needs_zip64,
)
from monitor.units import MiB

CHUNK_SIZE = 1 * MiB
ProgressCallback = Callable[[int, int], None]
"""Called with (bytes done, bytes total); total is 0 when unknown."""


@dataclass(frozen=True, slots=True)
class ZipCounts:
    """What went into a ZIP."""

    files: int = 0
    directories: int = 0
    links: int = 0
    uncompressed_bytes: int = 0


class Sink(Protocol):
    """Where the ZIP's bytes go: a file, a pipe, an upload. Only ``write`` is required."""

    def write(self, data: bytes, /) -> object: ...


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


def _seek_function(sink: Sink) -> Callable[[int], object] | None:
    """The sink's ``seek`` if it can really seek (files can; pipes and uploads cannot)."""
    probe = getattr(sink, "seekable", None)
    seek = getattr(sink, "seek", None)
    try:
        able = bool(probe()) if callable(probe) else False
    except OSError:
        able = False
    return seek if able and callable(seek) else None


class IncrementalZipper:
    """Writes a ZIP archive member by member into ``sink``; call :meth:`finalize` at the end.

    ``compression`` is ``"deflate"`` (levels 0-9) or ``"store"``; ``compressor_factory``
    replaces the default (ISA-L, else zlib) deflate implementation.
    """

    def __init__(
        self,
        sink: Sink,
        *,
        compression: Compression = "deflate",
        level: int = DEFAULT_LEVEL,
        compressor_factory: CompressorFactory = fastest_deflate,
        progress_callback: ProgressCallback | None = None,
        total_bytes: int = 0,
    ) -> None:
        check_compression(compression)
        check_level(level)
        self._sink = sink
        self._compression = compression
        self._level = level
        self._factory = compressor_factory
        self._progress = progress_callback
        self._total_bytes = total_bytes
        self._bytes_done = 0
        self._seek = _seek_function(sink)
        self._seekable = self._seek is not None
        self._offset = self._sink_position()
        self._start_offset = self._offset
        self._entries = CentralRecords()  # compact: the records, not ZipEntry objects
        self._names: set[str] = set()
        self._finalized = False

    # -- public API -------------------------------------------------------------------

    @property
    def entries(self) -> Sequence[ZipEntry]:
        """The members written so far, in order (a read-only view; each entry is made
        from its central directory record when asked for)."""
        return self._entries

    @property
    def bytes_written(self) -> int:
        """Bytes of ZIP written to the sink so far."""
        return self._offset - self._start_offset

    def add_stream(
        self,
        arcname: str,
        chunks: Iterable[bytes],
        *,
        size_hint: int | None = None,
        mode: int = 0o644,
        mtime: float | None = None,
    ) -> ZipEntry:
        """Compress ``chunks`` into a new file member; ``size_hint`` (exact size, if known)
        lets small members skip ZIP64 fields."""
        if self._compression == "store":
            compressor: Compressor = StoreCompressor()
            method = METHOD_STORED
        else:
            compressor = self._factory(self._level)
            method = METHOD_DEFLATED
        stream = CompressingStream(chunks, compressor, method, on_raw=self._advance)
        return self.add_precompressed(
            arcname, stream, size_hint=size_hint, mode=stat.S_IFREG | mode, mtime=mtime
        )

    def add_file_streaming(self, path: str | Path, arcname: str | None = None) -> ZipEntry:
        """Add a file from disk, read in chunks, keeping its permissions and mtime."""
        source = Path(path)
        info = source.stat()
        with source.open("rb") as handle:
            return self.add_stream(
                arcname if arcname is not None else source.name,
                iter_chunks(handle),
                size_hint=info.st_size,
                mode=stat.S_IMODE(info.st_mode),
                mtime=info.st_mtime,
            )

    def add_directory(
        self, arcname: str, *, mode: int = 0o755, mtime: float | None = None
    ) -> ZipEntry:
        """Add a directory entry (``name/``), so empty directories survive."""
        name = arcname if arcname.endswith("/") else arcname + "/"
        stored = CompressingStream((), StoreCompressor(), METHOD_STORED)
        return self.add_precompressed(
            name, stored, size_hint=0, mode=stat.S_IFDIR | mode, mtime=mtime
        )

    def add_symlink(self, arcname: str, target: str, *, mtime: float | None = None) -> ZipEntry:
        """Add a symbolic link the way Info-ZIP stores it: the target is the member's data."""
        stored = CompressingStream((target.encode(),), StoreCompressor(), METHOD_STORED)
        return self.add_precompressed(
            arcname, stored, size_hint=len(target.encode()), mode=stat.S_IFLNK | 0o777, mtime=mtime
        )

    def add_hardlink(self, arcname: str, target: str, *, mtime: float | None = None) -> ZipEntry:
        """ZIP has no hard links: store one as a relative symbolic link to ``target``
        (an earlier member's name)."""
        relative = posixpath.relpath(target, posixpath.dirname(arcname) or ".")
        return self.add_symlink(arcname, relative, mtime=mtime)

    def add_precompressed(
        self,
        arcname: str,
        member: PrecompressedMember,
        *,
        size_hint: int | None = None,
        mode: int = stat.S_IFREG | 0o644,
        mtime: float | None = None,
    ) -> ZipEntry:
        """Append a member whose data arrives already compressed (by ``member.method``)."""
        self._check_open()
        if arcname in self._names:
            raise CompressionError(
                f"member {arcname!r} is already in the ZIP; give each member a unique name"
            )
        encoded, utf8_flag = encode_name(arcname)
        dos_time, dos_date = dos_datetime(time.time() if mtime is None else mtime)
        entry = ZipEntry(
            name=arcname,
            encoded_name=encoded,
            flags=utf8_flag | (0 if self._seekable else FLAG_DATA_DESCRIPTOR),
            method=member.method,
            dos_time=dos_time,
            dos_date=dos_date,
            external_attr=external_attributes(mode),
            offset=self._offset,
            zip64=needs_zip64(size_hint),
        )
        self._write(entry.local_header())
        compressed_size = 0
        for block in member:
            self._write(block)
            compressed_size += len(block)
        entry.crc32 = member.crc32
        entry.uncompressed_size = member.uncompressed_size
        entry.compressed_size = compressed_size
        if not entry.zip64 and max(compressed_size, entry.uncompressed_size) >= ZIP32_LIMIT:
            raise CompressionError(
                f"member {arcname!r} grew past 4 GiB although it was announced as "
                f"{size_hint} bytes; pass the true size (or none) as size_hint"
            )
        if self._seekable:
            self._patch_local_header(entry)
        else:
            self._write(entry.data_descriptor())
        self._entries.append(entry)
        self._names.add(arcname)
        return entry

    def finalize(self) -> int:
        """Write the central directory and end records; returns the ZIP's size in bytes."""
        self._check_open()
        directory_offset = self._offset
        directory_size = 0
        for record in self._entries.records():
            self._write(record)
            directory_size += len(record)
        self._write(end_records(len(self._entries), directory_offset, directory_size))
        self._finalized = True
        return self.bytes_written

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None and not self._finalized:
            self.finalize()

    def add_tree(self, source_dir: str | Path) -> ZipCounts:
        """Add a directory tree: sorted, relative names, permissions and mtimes kept,
        symbolic links kept as links (never followed)."""
        root = Path(source_dir)
        files = directories = links = size = 0
        first_path: dict[tuple[int, int], str] = {}  # hard links: (device, inode) -> arcname

        def fail(error: OSError) -> None:
            raise error

        for directory, subdirs, names in os.walk(root, onerror=fail):
            subdirs.sort()
            base = Path(directory)
            if base != root:
                info = base.stat()
                self.add_directory(
                    base.relative_to(root).as_posix(),
                    mode=stat.S_IMODE(info.st_mode),
                    mtime=info.st_mtime,
                )
                directories += 1
            linked_dirs = [d for d in subdirs if (base / d).is_symlink()]
            for name in sorted(names) + linked_dirs:
                path = base / name
                arcname = path.relative_to(root).as_posix()
                info = path.lstat()
                key = (info.st_dev, info.st_ino)
                if path.is_symlink():
                    self.add_symlink(arcname, str(path.readlink()))
                    links += 1
                elif info.st_nlink > 1 and key in first_path:
                    self.add_hardlink(arcname, first_path[key])
                    links += 1
                else:
                    first_path[key] = arcname
                    size += self.add_file_streaming(path, arcname).uncompressed_size
                    files += 1
        return ZipCounts(files, directories, links, size)

    @classmethod
    def create_zip_streaming(
        cls,
        source_dir: str | Path,
        zip_path: str | Path,
        progress_callback: ProgressCallback | None = None,
        *,
        compression: Compression = "deflate",
        level: int = DEFAULT_LEVEL,
    ) -> list[ZipEntry]:
        """Zip a directory tree file by file into ``zip_path`` (see :meth:`add_tree`).

        Writes ``zip_path`` directly; use :mod:`handler.locations` for an atomic,
        verified destination.
        """
        root = Path(source_dir)
        total = sum(p.stat().st_size for p in root.rglob("*") if p.is_file() and not p.is_symlink())
        with Path(zip_path).open("wb") as out:
            zipper = cls(
                out,
                compression=compression,
                level=level,
                progress_callback=progress_callback,
                total_bytes=total,
            )
            zipper.add_tree(root)
            zipper.finalize()
        return list(zipper.entries)

    # -- internals --------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._finalized:
            raise CompressionError("the ZIP is already finalized; start a new IncrementalZipper")

    def _sink_position(self) -> int:
        if self._seekable:
            tell = getattr(self._sink, "tell", None)
            if callable(tell):
                return int(tell())
        return 0

    def _write(self, data: bytes) -> None:
        self._sink.write(data)
        self._offset += len(data)

    def _patch_local_header(self, entry: ZipEntry) -> None:
        assert self._seek is not None
        self._seek(entry.offset)
        self._sink.write(entry.local_header())
        self._seek(self._offset)

    def _advance(self, raw_bytes: int) -> None:
        self._bytes_done += raw_bytes
        if self._progress is not None:
            self._progress(self._bytes_done, self._total_bytes)


def iter_chunks(stream: BinaryIO, chunk_size: int = CHUNK_SIZE) -> Iterator[bytes]:
    """Read ``stream`` in chunks of at most ``chunk_size`` until it ends."""
    while chunk := stream.read(chunk_size):
        yield chunk
