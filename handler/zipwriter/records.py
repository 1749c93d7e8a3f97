"""The ZIP file format's records (APPNOTE 6.3.10), packed as bytes; no I/O here."""

from __future__ import annotations

import stat
import struct
import time
from dataclasses import dataclass

from monitor.units import MiB

LOCAL_HEADER = struct.Struct("<IHHHHHIIIHH")
DATA_DESCRIPTOR_32 = struct.Struct("<IIII")
DATA_DESCRIPTOR_64 = struct.Struct("<IIQQ")
CENTRAL_HEADER = struct.Struct("<IHHHHHHIIIHHHHHII")
ZIP64_END = struct.Struct("<IQHHIIQQQQ")
ZIP64_LOCATOR = struct.Struct("<IIQI")
END_OF_CENTRAL_DIRECTORY = struct.Struct("<IHHHHIIH")
EXTRA_HEADER = struct.Struct("<HH")

LOCAL_HEADER_SIGNATURE = 0x04034B50
DATA_DESCRIPTOR_SIGNATURE = 0x08074B50
CENTRAL_HEADER_SIGNATURE = 0x02014B50
ZIP64_END_SIGNATURE = 0x06064B50
ZIP64_LOCATOR_SIGNATURE = 0x07064B50
END_SIGNATURE = 0x06054B50
ZIP64_EXTRA_ID = 0x0001

METHOD_STORED = 0
METHOD_DEFLATED = 8
FLAG_DATA_DESCRIPTOR = 0x0008
FLAG_UTF8 = 0x0800
MADE_BY_UNIX = 3 << 8
VERSION_DEFAULT = 20
VERSION_ZIP64 = 45
MSDOS_DIRECTORY = 0x10

ZIP32_LIMIT = 0xFFFFFFFF
"""Largest size or offset a classic (non-ZIP64) field holds; this value itself means 'see ZIP64'."""
ZIP32_MAX_ENTRIES = 0xFFFF
"""Largest member count the classic end record holds; this value itself means 'see ZIP64'."""
# Deflate can grow incompressible input slightly; a member whose size plus this margin
# reaches the classic limit gets ZIP64 fields from the start.
ZIP64_MARGIN_FACTOR = 1.01
ZIP64_MARGIN_BYTES = 1 * MiB


DOS_EPOCH = 315_532_800  # 1980-01-01
DOS_END = 4_354_819_199  # 2107-12-31


def needs_zip64(size_hint: int | None) -> bool:
    """Whether a member of this uncompressed size (None: unknown) must reserve ZIP64 fields."""
    if size_hint is None:
        return True
    return size_hint * ZIP64_MARGIN_FACTOR + ZIP64_MARGIN_BYTES >= ZIP32_LIMIT


def dos_datetime(mtime: float) -> tuple[int, int]:
    """MS-DOS (time, date) for a POSIX mtime, clamped to the 1980-2107 range ZIP can hold
    (an mtime the platform cannot even represent, or NaN, becomes 1980-01-01)."""
    try:
        t = time.localtime(mtime)
    except (OverflowError, OSError, ValueError):
        t = time.localtime(DOS_EPOCH if not mtime > 0 else DOS_END)
    year = min(max(t.tm_year, 1980), 2107)
    if year != t.tm_year:
        month, day, hour, minute, second = (1, 1, 0, 0, 0) if year == 1980 else (12, 31, 23, 59, 58)
    else:
        month, day, hour, minute, second = t.tm_mon, t.tm_mday, t.tm_hour, t.tm_min, t.tm_sec
    dos_time = (hour << 11) | (minute << 5) | (second // 2)
    dos_date = ((year - 1980) << 9) | (month << 5) | day
    return dos_time, dos_date


def external_attributes(unix_mode: int) -> int:
    """The external attributes field: Unix type and permissions high, MS-DOS flags low."""
    attributes = (unix_mode & 0xFFFF) << 16
    if stat.S_ISDIR(unix_mode):
        attributes |= MSDOS_DIRECTORY
    return attributes


def encode_name(name: str) -> tuple[bytes, int]:
    """The name's bytes and the flag telling readers it is UTF-8 (when not plain ASCII)."""
    if name.isascii():
        return name.encode("ascii"), 0
    return name.encode("utf-8"), FLAG_UTF8


@dataclass(slots=True)
class ZipEntry:
    """What the central directory records of one member; sizes are known once it is written."""

    name: str
    encoded_name: bytes
    flags: int
    method: int
    dos_time: int
    dos_date: int
    external_attr: int
    offset: int
    zip64: bool
    crc32: int = 0
    compressed_size: int = 0
    uncompressed_size: int = 0

    @property
    def is_dir(self) -> bool:
        return self.name.endswith("/")

    def version_needed(self) -> int:
        return VERSION_ZIP64 if self.zip64 or self.offset >= ZIP32_LIMIT else VERSION_DEFAULT

    def local_header(self) -> bytes:
        """The local file header as first written: real values when known, else zero (or ZIP64)."""
        if self.zip64:
            sizes = (ZIP32_LIMIT, ZIP32_LIMIT)
            extra = zip64_extra(self.uncompressed_size, self.compressed_size)
        else:
            sizes = (self.compressed_size, self.uncompressed_size)
            extra = b""
        return (
            LOCAL_HEADER.pack(
                LOCAL_HEADER_SIGNATURE,
                self.version_needed(),
                self.flags,
                self.method,
                self.dos_time,
                self.dos_date,
                self.crc32,
                *sizes,
                len(self.encoded_name),
                len(extra),
            )
            + self.encoded_name
            + extra
        )

    def data_descriptor(self) -> bytes:
        """The record after the data that carries CRC and sizes when the sink cannot seek."""
        record = DATA_DESCRIPTOR_64 if self.zip64 else DATA_DESCRIPTOR_32
        return record.pack(
            DATA_DESCRIPTOR_SIGNATURE, self.crc32, self.compressed_size, self.uncompressed_size
        )

    def central_header(self) -> bytes:
        """This member's central directory record, with ZIP64 fields where they are needed."""
        fields: list[int] = []
        uncompressed, compressed, offset = (
            self.uncompressed_size,
            self.compressed_size,
            self.offset,
        )
        if self.zip64 or uncompressed >= ZIP32_LIMIT or compressed >= ZIP32_LIMIT:
            fields += [uncompressed, compressed]
            uncompressed = compressed = ZIP32_LIMIT
        if offset >= ZIP32_LIMIT:
            fields.append(offset)
            offset = ZIP32_LIMIT
        extra = zip64_extra(*fields) if fields else b""
        return (
            CENTRAL_HEADER.pack(
                CENTRAL_HEADER_SIGNATURE,
                MADE_BY_UNIX | self.version_needed(),
                self.version_needed(),
                self.flags,
                self.method,
                self.dos_time,
                self.dos_date,
                self.crc32,
                compressed,
                uncompressed,
                len(self.encoded_name),
                len(extra),
                0,
                0,
                0,
                self.external_attr,
                offset,
            )
            + self.encoded_name
            + extra
        )


def zip64_extra(*values: int) -> bytes:
    """The ZIP64 extended information extra field holding the given 8-byte values."""
    return EXTRA_HEADER.pack(ZIP64_EXTRA_ID, 8 * len(values)) + struct.pack(
        f"<{len(values)}Q", *values
    )


def end_records(entry_count: int, directory_offset: int, directory_size: int) -> bytes:
    """The end of central directory record, preceded by the ZIP64 ones when needed."""
    zip64 = (
        entry_count >= ZIP32_MAX_ENTRIES
        or directory_offset >= ZIP32_LIMIT
        or directory_size >= ZIP32_LIMIT
    )
    records = b""
    if zip64:
        zip64_end_offset = directory_offset + directory_size
        records += ZIP64_END.pack(
            ZIP64_END_SIGNATURE,
            ZIP64_END.size - 12,
            MADE_BY_UNIX | VERSION_ZIP64,
            VERSION_ZIP64,
            0,
            0,
            entry_count,
            entry_count,
            directory_size,
            directory_offset,
        )
        records += ZIP64_LOCATOR.pack(ZIP64_LOCATOR_SIGNATURE, 0, zip64_end_offset, 1)
    records += END_OF_CENTRAL_DIRECTORY.pack(
        END_SIGNATURE,
        0,
        0,
        min(entry_count, ZIP32_MAX_ENTRIES),
        min(entry_count, ZIP32_MAX_ENTRIES),
        min(directory_size, ZIP32_LIMIT),
        min(directory_offset, ZIP32_LIMIT),
        0,
    )
    return records
