"""IncrementalZipper: write a ZIP (with ZIP64 where needed) one member at a time.

Members are streamed: the zipper holds at most :data:`BUFFER_LIMIT` bytes of a member
(plus one chunk). Every ZIP it writes reads in streaming readers (which trust the
local header, such as stream-unzip, libarchive's streaming reader or Java's
``ZipInputStream``):

* a member that ends within :data:`BUFFER_LIMIT` (directories, links, empty and small
  files) is buffered, so its local header carries the CRC and sizes before the data;
  a small file deflate cannot shrink is stored, as Info-ZIP's zip does;
* a larger member's local header is written first and patched after the data: in
  place on a seekable file, or in memory on a :class:`~handler.zipwriter.zipsink.PatchableSink`
  (an S3 multipart upload holds back the part with the header until it is patched);
* only a sink that can neither seek nor patch (a pipe) gets a data descriptor after a
  large member, and then the member is always deflated (``store`` becomes deflate's
  stored blocks, level 0), because a stored member relying on a data descriptor
  cannot be read in a stream (Java's ``ZipInputStream`` refuses it; stream-unzip
  raises ``NotStreamUnzippable``).

Every member goes through :meth:`IncrementalZipper.add_precompressed` or the
buffered path, so members (or blocks of one member) compressed elsewhere, on worker
threads for instance, append the same way.
"""

from __future__ import annotations

import posixpath
import stat
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Self

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
    zlib_deflate,
)
from handler.errors import CompressionError
from handler.zipwriter.centraldir import CentralRecords
from handler.zipwriter.method import incompressible, sample_of
from handler.zipwriter.records import (
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
from handler.zipwriter.zipdata import (
    CompressingStream,
    PrecompressedMember,
    iter_chunks,
    replay,
    take_prefix,
)
from handler.zipwriter.zipsink import Patcher, Sink, patcher_for
from monitor.units import MiB

__all__ = [
    "BUFFER_LIMIT",
    "CompressingStream",
    "IncrementalZipper",
    "PrecompressedMember",
    "ProgressCallback",
    "Sink",
    "ZipCounts",
    "iter_chunks",
]

BUFFER_LIMIT = 1 * MiB
"""A member whose data ends within this many bytes is buffered, so its local header
carries its CRC and sizes (no data descriptor, no patch)."""
ProgressCallback = Callable[[int, int], None]
"""Called with (bytes done, bytes total); total is 0 when unknown."""


@dataclass(frozen=True, slots=True)
class ZipCounts:
    """What went into a ZIP."""

    files: int = 0
    directories: int = 0
    links: int = 0
    uncompressed_bytes: int = 0


class IncrementalZipper:
    """Writes a ZIP archive member by member into ``sink``; call :meth:`finalize` at the end.

    ``compression`` is ``"deflate"`` (levels 0-9), ``"store"`` or ``"auto"`` (deflate,
    but a member whose first bytes do not compress is stored, see
    :mod:`handler.zipwriter.method`); ``compressor_factory`` replaces the default
    (ISA-L, else zlib) deflate implementation.
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
        self._patcher: Patcher | None = patcher_for(sink)
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
        """Compress ``chunks`` into a new file member. ``size_hint`` (the exact size, as a
        tar header declares it; None when unknown) decides whether the local header of a
        member larger than :data:`BUFFER_LIMIT` reserves ZIP64 fields."""
        self._check_new(arcname)
        raw = iter(chunks)
        prefix, complete = take_prefix(raw, BUFFER_LIMIT)
        if complete:
            data = b"".join(prefix)
            prefix.clear()
            self._advance(len(data))
            return self._add_whole(
                arcname,
                data,
                mode=stat.S_IFREG | mode,
                mtime=mtime,
                deflate=self._compression != "store",
            )
        compressor, method = self._streaming_codec(prefix)
        stream = CompressingStream(replay(prefix, raw), compressor, method, on_raw=self._advance)
        return self._add_streaming(
            arcname, stream, iter(stream), size_hint, stat.S_IFREG | mode, mtime
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
        self._check_new(name)
        return self._add_whole(name, b"", mode=stat.S_IFDIR | mode, mtime=mtime, deflate=False)

    def add_symlink(self, arcname: str, target: str, *, mtime: float | None = None) -> ZipEntry:
        """Add a symbolic link the way Info-ZIP stores it: the target is the member's data."""
        self._check_new(arcname)
        return self._add_whole(
            arcname, target.encode(), mode=stat.S_IFLNK | 0o777, mtime=mtime, deflate=False
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
        """Append a member whose data arrives already compressed (by ``member.method``).

        Raises :class:`CompressionError` for a stored member of more than
        :data:`BUFFER_LIMIT` bytes on a sink that can neither seek nor patch (it would
        need a data descriptor, which streaming readers cannot follow for stored data).
        """
        self._check_new(arcname)
        blocks = iter(member)
        prefix, complete = take_prefix(blocks, BUFFER_LIMIT)
        if complete:
            payload = b"".join(prefix)
            prefix.clear()
            return self._write_whole(
                arcname, member.method, member.crc32, member.uncompressed_size, payload, mode, mtime
            )
        if self._patcher is None and member.method == METHOD_STORED:
            raise CompressionError(
                f"member {arcname!r} is stored and larger than {BUFFER_LIMIT} bytes: on a "
                "sink that can neither seek nor patch it would need a data descriptor, "
                "which streaming readers cannot follow; deflate it, or write to a file"
            )
        return self._add_streaming(arcname, member, replay(prefix, blocks), size_hint, mode, mtime)

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

    # -- internals --------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._finalized:
            raise CompressionError("the ZIP is already finalized; start a new IncrementalZipper")

    def _check_new(self, arcname: str) -> None:
        self._check_open()
        if arcname in self._names:
            raise CompressionError(
                f"member {arcname!r} is already in the ZIP; give each member a unique name"
            )

    def _sink_position(self) -> int:
        tell = getattr(self._sink, "tell", None)
        if self._patcher is not None and callable(tell):
            return int(tell())
        return 0

    def _streaming_codec(self, prefix: Iterable[bytes]) -> tuple[Compressor, int]:
        """The compressor and method for a member too large to buffer; under ``auto``
        its first bytes decide whether it is worth deflating (:mod:`.method`)."""
        if self._compression == "deflate" or (
            self._compression == "auto" and not incompressible(sample_of(prefix), self._factory)
        ):
            return self._factory(self._level), METHOD_DEFLATED
        if self._patcher is not None:
            return StoreCompressor(), METHOD_STORED
        # A pipe: stored data would need a data descriptor; deflate's stored blocks
        # keep the bytes uncompressed (5 bytes per 64 KiB) and can be streamed.
        return zlib_deflate(0), METHOD_DEFLATED

    def _new_entry(
        self, arcname: str, method: int, flags: int, mode: int, mtime: float | None, zip64: bool
    ) -> ZipEntry:
        encoded, utf8_flag = encode_name(arcname)
        dos_time, dos_date = dos_datetime(time.time() if mtime is None else mtime)
        return ZipEntry(
            name=arcname,
            encoded_name=encoded,
            flags=utf8_flag | flags,
            method=method,
            dos_time=dos_time,
            dos_date=dos_date,
            external_attr=external_attributes(mode),
            offset=self._offset,
            zip64=zip64,
        )

    def _add_whole(
        self, arcname: str, data: bytes, *, mode: int, mtime: float | None, deflate: bool
    ) -> ZipEntry:
        """A member whose data is all here: deflated when that makes it smaller, else stored."""
        payload, method = data, METHOD_STORED
        if deflate and data:
            compressor = self._factory(self._level)
            deflated = compressor.compress(data) + compressor.flush()
            if len(deflated) < len(data):
                payload, method = deflated, METHOD_DEFLATED
        return self._write_whole(arcname, method, crc32(data), len(data), payload, mode, mtime)

    def _write_whole(
        self,
        arcname: str,
        method: int,
        crc: int,
        size: int,
        payload: bytes,
        mode: int,
        mtime: float | None,
    ) -> ZipEntry:
        """Header with CRC and sizes, then the data: nothing to patch, nothing after."""
        zip64 = max(size, len(payload)) >= ZIP32_LIMIT
        entry = self._new_entry(arcname, method, 0, mode, mtime, zip64)
        entry.crc32, entry.uncompressed_size, entry.compressed_size = crc, size, len(payload)
        self._write(entry.local_header())
        self._write(payload)
        return self._record(entry)

    def _add_streaming(
        self,
        arcname: str,
        member: PrecompressedMember,
        blocks: Iterator[bytes],
        size_hint: int | None,
        mode: int,
        mtime: float | None,
    ) -> ZipEntry:
        """Header first, data, then the CRC and sizes: patched into the header when the
        sink allows it, else in a data descriptor. ZIP64 fields are decided up front from
        ``size_hint`` (reserved when unknown), so the patched header has the same length."""
        patcher = self._patcher
        flags = 0 if patcher is not None else FLAG_DATA_DESCRIPTOR
        entry = self._new_entry(arcname, member.method, flags, mode, mtime, needs_zip64(size_hint))
        header = entry.local_header()
        if patcher is not None:
            patcher.hold(entry.offset, len(header))
        self._write(header)
        compressed_size = 0
        for block in blocks:
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
        if patcher is not None:
            patched = entry.local_header()
            assert len(patched) == len(header)
            patcher.patch(entry.offset, patched)
        else:
            self._write(entry.data_descriptor())
        return self._record(entry)

    def _record(self, entry: ZipEntry) -> ZipEntry:
        self._entries.append(entry)
        self._names.add(entry.name)
        return entry

    def _write(self, data: bytes) -> None:
        self._sink.write(data)
        self._offset += len(data)

    def _advance(self, raw_bytes: int) -> None:
        self._bytes_done += raw_bytes
        if self._progress is not None:
            self._progress(self._bytes_done, self._total_bytes)
