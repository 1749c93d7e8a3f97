"""Readers that trust the local headers, and the checks that a ZIP suits them.

A streaming reader reads a ZIP front to back and never looks at the central directory:
each local header must give the member's method, CRC and sizes (APPNOTE 6.3.10,
4.3.7), or a data descriptor must follow the data (4.3.9), which some readers refuse
(stream-unzip for stored members, Java's ``ZipInputStream`` for any stored member).
The checks here walk the local headers the same way, and run stream-unzip, zipfile,
Info-ZIP's ``unzip -t``, 7-Zip's ``7z t`` and libarchive's ``bsdtar`` reading a pipe.
"""

from __future__ import annotations

import io
import struct
import subprocess
import zipfile
from dataclasses import dataclass
from pathlib import Path

from stream_unzip import stream_unzip

from handler.locations.parts import Part, PartCutter
from handler.zipwriter.records import (
    CENTRAL_HEADER_SIGNATURE,
    DATA_DESCRIPTOR_SIGNATURE,
    END_SIGNATURE,
    FLAG_DATA_DESCRIPTOR,
    LOCAL_HEADER,
    LOCAL_HEADER_SIGNATURE,
    ZIP32_LIMIT,
    ZIP64_EXTRA_ID,
)

DESCRIPTOR_SIGNATURE_BYTES = struct.pack("<I", DATA_DESCRIPTOR_SIGNATURE)


class PartSink:
    """An in-memory patchable sink cut into parts like the S3 upload (same
    :class:`PartCutter`): a part once sent is final, only a held range can be patched."""

    def __init__(self, part_size: int) -> None:
        self._cutter = PartCutter(lambda _number: part_size)
        self.sent: dict[int, bytes] = {}
        self.order: list[int] = []
        self.most_retained = 0

    def write(self, data: bytes) -> int:
        self._send(self._cutter.write(data))
        return len(data)

    def tell(self) -> int:
        return self._cutter.position

    def hold(self, offset: int, length: int) -> None:
        self._cutter.hold(offset, length)

    def patch(self, offset: int, data: bytes) -> None:
        self._send(self._cutter.patch(offset, data))

    def getvalue(self) -> bytes:
        """Close the stream and join the parts in part-number order (as S3 does)."""
        self._send(self._cutter.close())
        assert sorted(self.sent) == list(range(1, len(self.sent) + 1)), sorted(self.sent)
        return b"".join(self.sent[number] for number in sorted(self.sent))

    def _send(self, parts: list[Part]) -> None:
        self.most_retained = max(self.most_retained, self._cutter.retained)
        for part in parts:
            assert part.number not in self.sent, f"part {part.number} sent twice"
            self.sent[part.number] = part.data
            self.order.append(part.number)


@dataclass(frozen=True)
class LocalRecord:
    """One local header as a streaming reader sees it."""

    offset: int
    name: str
    flags: int
    method: int
    crc32: int
    compressed_size: int
    uncompressed_size: int
    data_end: int


def walk_local_headers(data: bytes) -> tuple[list[LocalRecord], int]:
    """Read the ZIP front to back by its local headers alone: (the records, the offset
    where the first non-local-header signature stands)."""
    records: list[LocalRecord] = []
    offset = 0
    while struct.unpack_from("<I", data, offset)[0] == LOCAL_HEADER_SIGNATURE:
        fields = LOCAL_HEADER.unpack_from(data, offset)
        _, _, flags, method, _, _, crc, compressed, uncompressed, name_len, extra_len = fields
        name_start = offset + LOCAL_HEADER.size
        extra = data[name_start + name_len : name_start + name_len + extra_len]
        if (compressed, uncompressed) == (ZIP32_LIMIT, ZIP32_LIMIT):
            uncompressed, compressed = _zip64_sizes(extra)
        data_start = name_start + name_len + extra_len
        record = LocalRecord(
            offset=offset,
            name=data[name_start : name_start + name_len].decode("utf-8"),
            flags=flags,
            method=method,
            crc32=crc,
            compressed_size=compressed,
            uncompressed_size=uncompressed,
            data_end=data_start + compressed,
        )
        records.append(record)
        offset = record.data_end
    return records, offset


def _zip64_sizes(extra: bytes) -> tuple[int, int]:
    position = 0
    while position + 4 <= len(extra):
        tag, size = struct.unpack_from("<HH", extra, position)
        if tag == ZIP64_EXTRA_ID:
            uncompressed, compressed = struct.unpack_from("<QQ", extra, position + 4)
            return uncompressed, compressed
        position += 4 + size
    raise AssertionError("local header has 0xFFFFFFFF sizes but no ZIP64 extra field")


def assert_no_data_descriptors(data: bytes) -> list[LocalRecord]:
    """Every local header has bit 3 clear and the true CRC and sizes, no data descriptor
    signature stands where an entry ends or anywhere outside member data, and the walk
    by local headers alone reaches the central directory with the same members zipfile
    lists. Returns the records."""
    records, end = walk_local_headers(data)
    for record in records:
        assert not record.flags & FLAG_DATA_DESCRIPTOR, f"{record.name}: bit 3 set"
        following = data[record.data_end : record.data_end + 4]
        assert following != DESCRIPTOR_SIGNATURE_BYTES, f"{record.name}: data descriptor follows"
    assert descriptor_signatures_outside_data(data, records) == []
    assert struct.unpack_from("<I", data, end)[0] in (CENTRAL_HEADER_SIGNATURE, END_SIGNATURE)
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        infos = archive.infolist()
    assert [(r.name, r.crc32, r.compressed_size, r.uncompressed_size) for r in records] == [
        (i.filename, i.CRC, i.compress_size, i.file_size) for i in infos
    ]
    return records


def descriptor_signatures_outside_data(data: bytes, records: list[LocalRecord]) -> list[int]:
    """Offsets of the data descriptor signature that do not lie inside a member's data
    (where random data may hold it by chance)."""
    spans = [(r.data_end - r.compressed_size, r.data_end) for r in records]
    hits: list[int] = []
    start = 0
    while (hit := data.find(DESCRIPTOR_SIGNATURE_BYTES, start)) != -1:
        if not any(low <= hit and hit + 4 <= high for low, high in spans):
            hits.append(hit)
        start = hit + 1
    return hits


def stream_unzip_contents(data: bytes, chunk_size: int = 65_536) -> dict[str, bytes]:
    """Every entry (directories and links too) as stream-unzip reads it from a stream."""
    chunks = (data[i : i + chunk_size] for i in range(0, len(data), chunk_size))
    return {
        name.decode("utf-8"): b"".join(entry_chunks)
        for name, _size, entry_chunks in stream_unzip(chunks)
    }


def zipfile_contents(data: bytes) -> dict[str, bytes]:
    """Every entry (directories and links too) as zipfile reads it (CRCs checked)."""
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return {info.filename: archive.read(info) for info in archive.infolist()}


def assert_command_line_readers_accept(path: Path) -> None:
    """``unzip -t``, ``7z t``, and ``bsdtar`` listing and extracting from a pipe (its
    streaming reader) all read every member without error."""
    for command, stdin in (
        (["unzip", "-tqq", str(path)], None),
        (["7z", "t", "-bd", str(path)], None),
        (["bsdtar", "-tvf", "-"], path),
        (["bsdtar", "-xOf", "-"], path),
    ):
        result = subprocess.run(
            command,
            input=path.read_bytes() if stdin else None,
            capture_output=True,
            check=False,
        )
        assert result.returncode == 0, (command, result.stdout[-2000:], result.stderr[-2000:])
