"""A ZIP's central directory, held compactly while it is written and read back record by
record, so neither costs more than a few bytes per member beyond the records themselves.

Layouts from APPNOTE 6.3.10: 4.3.12 central directory file header, 4.3.14 ZIP64 end of
central directory record, 4.3.15 its locator, 4.3.16 end of central directory record,
4.5.3 the ZIP64 extended information extra field. Issue 8 item 10: rebuilding 199,000
members' directory through ``zipfile`` to verify a written ZIP took half of a 276 MiB peak.
"""

from __future__ import annotations

import array
import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import BinaryIO, overload

from handler.zipwriter.records import (
    CENTRAL_HEADER,
    CENTRAL_HEADER_SIGNATURE,
    END_OF_CENTRAL_DIRECTORY,
    END_SIGNATURE,
    EXTRA_HEADER,
    FLAG_UTF8,
    ZIP32_LIMIT,
    ZIP32_MAX_ENTRIES,
    ZIP64_END,
    ZIP64_END_SIGNATURE,
    ZIP64_EXTRA_ID,
    ZIP64_LOCATOR,
    ZIP64_LOCATOR_SIGNATURE,
    ZipEntry,
)

MAX_COMMENT = 0xFFFF
"""Longest archive comment: the end record is within this many bytes (plus its own 22)
of the end of the file."""


class CentralDirectoryError(ValueError):
    """When bytes read back are not the central directory they should be."""


class CentralRecords(Sequence[ZipEntry]):
    """The central directory records of the members written so far, packed end to end in
    one buffer (a record is 46 bytes plus the name and extras; the index adds 8).

    A read-only sequence of :class:`ZipEntry`: each item is parsed back from its record
    when asked for, so iterating holds one entry at a time.
    """

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._starts = array.array("Q")

    def append(self, entry: ZipEntry) -> None:
        """Record a finished member (its CRC and sizes are final)."""
        self._starts.append(len(self._buffer))
        self._buffer += entry.central_header()

    def __len__(self) -> int:
        return len(self._starts)

    @overload
    def __getitem__(self, index: int) -> ZipEntry: ...

    @overload
    def __getitem__(self, index: slice) -> list[ZipEntry]: ...

    def __getitem__(self, index: int | slice) -> ZipEntry | list[ZipEntry]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        position = range(len(self))[index]  # IndexError and negative indexes as lists do
        return parse_central_record(self._record(position))

    def records(self) -> Iterator[bytes]:
        """Each member's central directory record, in order, as written to the ZIP."""
        for position in range(len(self)):
            yield self._record(position)

    @property
    def size(self) -> int:
        """Bytes of all records together: the central directory's size."""
        return len(self._buffer)

    def _record(self, position: int) -> bytes:
        start = self._starts[position]
        end = self._starts[position + 1] if position + 1 < len(self._starts) else len(self._buffer)
        return bytes(self._buffer[start:end])


def parse_central_record(record: bytes) -> ZipEntry:
    """The :class:`ZipEntry` a central directory record describes, with the real sizes
    and offset from its ZIP64 extra field where the classic fields say 0xFFFFFFFF."""
    if len(record) < CENTRAL_HEADER.size:
        raise CentralDirectoryError(f"a central directory record is cut short ({len(record)} B)")
    (
        signature,
        _made_by,
        _needed,
        flags,
        method,
        dos_time,
        dos_date,
        crc,
        compressed,
        uncompressed,
        name_length,
        extra_length,
        _comment_length,
        _disk,
        _internal,
        external,
        offset,
    ) = CENTRAL_HEADER.unpack_from(record)
    if signature != CENTRAL_HEADER_SIGNATURE:
        raise CentralDirectoryError(f"a central directory record has signature {signature:#x}")
    name_end = CENTRAL_HEADER.size + name_length
    encoded = record[CENTRAL_HEADER.size : name_end]
    zip64 = ZIP32_LIMIT in (uncompressed, compressed)
    wanted = [v == ZIP32_LIMIT for v in (uncompressed, compressed, offset)]
    if any(wanted):
        values = _zip64_values(record[name_end : name_end + extra_length], sum(wanted))
        if wanted[0]:
            uncompressed = values.pop(0)
        if wanted[1]:
            compressed = values.pop(0)
        if wanted[2]:
            offset = values.pop(0)
    return ZipEntry(
        name=encoded.decode("utf-8" if flags & FLAG_UTF8 else "cp437"),
        encoded_name=encoded,
        flags=flags,
        method=method,
        dos_time=dos_time,
        dos_date=dos_date,
        external_attr=external,
        offset=offset,
        zip64=zip64,
        crc32=crc,
        compressed_size=compressed,
        uncompressed_size=uncompressed,
    )


def _zip64_values(extra: bytes, count: int) -> list[int]:
    """The first ``count`` 8-byte values of the ZIP64 extra field among ``extra``'s fields."""
    position = 0
    while position + EXTRA_HEADER.size <= len(extra):
        field_id, size = EXTRA_HEADER.unpack_from(extra, position)
        position += EXTRA_HEADER.size
        if field_id == ZIP64_EXTRA_ID:
            if size < 8 * count or position + size > len(extra):
                break
            return list(struct.unpack_from(f"<{count}Q", extra, position))
        position += size
    raise CentralDirectoryError("a record says its sizes are in a ZIP64 extra field it lacks")


@dataclass(frozen=True, slots=True)
class DirectoryLocation:
    """Where the central directory is: its record count, offset and size in bytes, and
    where the end records (ZIP64 or classic) begin, which is where it must end."""

    entries: int
    offset: int
    size: int
    end: int


def locate_central_directory(handle: BinaryIO) -> DirectoryLocation:
    """Find the end of central directory record from the end of ``handle`` (a seekable
    file), and the ZIP64 end record through its locator when there is one."""
    file_size = handle.seek(0, 2)
    tail_size = min(file_size, END_OF_CENTRAL_DIRECTORY.size + MAX_COMMENT)
    handle.seek(file_size - tail_size)
    tail = handle.read(tail_size)
    found = tail.rfind(struct.pack("<I", END_SIGNATURE))
    if found < 0 or found + END_OF_CENTRAL_DIRECTORY.size > len(tail):
        raise CentralDirectoryError("no end of central directory record")
    eocd_at = file_size - tail_size + found
    (_, _, _, _, entries, size, offset, _) = END_OF_CENTRAL_DIRECTORY.unpack_from(tail, found)
    zip64_end_at = _zip64_end_offset(handle, eocd_at)
    if zip64_end_at is None:
        if entries == ZIP32_MAX_ENTRIES or ZIP32_LIMIT in (size, offset):
            raise CentralDirectoryError("the end record needs a ZIP64 end record that is missing")
        return DirectoryLocation(entries=entries, offset=offset, size=size, end=eocd_at)
    handle.seek(zip64_end_at)
    record = handle.read(ZIP64_END.size)
    if len(record) < ZIP64_END.size:
        raise CentralDirectoryError("the ZIP64 end record is cut short")
    fields = ZIP64_END.unpack(record)
    if fields[0] != ZIP64_END_SIGNATURE:
        raise CentralDirectoryError("the ZIP64 locator points at no ZIP64 end record")
    return DirectoryLocation(entries=fields[7], offset=fields[9], size=fields[8], end=zip64_end_at)


def _zip64_end_offset(handle: BinaryIO, eocd_at: int) -> int | None:
    """Where the ZIP64 end record is, from the locator just before the end record; None
    when there is no locator."""
    locator_at = eocd_at - ZIP64_LOCATOR.size
    if locator_at < 0:
        return None
    handle.seek(locator_at)
    locator = handle.read(ZIP64_LOCATOR.size)
    signature, _, zip64_end_at, _ = ZIP64_LOCATOR.unpack(locator)
    return int(zip64_end_at) if signature == ZIP64_LOCATOR_SIGNATURE else None


def read_central_records(handle: BinaryIO) -> Iterator[bytes]:
    """Each central directory record of the ZIP in ``handle``, in order, read sequentially
    (the caller's buffering decides the reads); checks that the records fill exactly the
    space and count the end records give."""
    where = locate_central_directory(handle)
    if where.offset + where.size != where.end:
        raise CentralDirectoryError(
            f"the central directory ({where.size} B at {where.offset}) does not end where the "
            f"end records begin ({where.end})"
        )
    handle.seek(where.offset)
    consumed = 0
    for _ in range(where.entries):
        fixed = handle.read(CENTRAL_HEADER.size)
        if len(fixed) < CENTRAL_HEADER.size:
            raise CentralDirectoryError("the central directory is cut short")
        name_length, extra_length, comment_length = struct.unpack_from("<HHH", fixed, 28)
        rest = handle.read(name_length + extra_length + comment_length)
        record = fixed + rest
        consumed += len(record)
        if consumed > where.size or len(rest) < name_length + extra_length + comment_length:
            raise CentralDirectoryError("the central directory is longer than the end record says")
        yield record
    if consumed != where.size:
        raise CentralDirectoryError(
            f"{where.entries} records take {consumed} B, the end record says {where.size} B"
        )
