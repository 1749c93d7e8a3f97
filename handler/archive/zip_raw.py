"""A ZIP source member's compressed bytes as they are, for copying into the output ZIP
without inflating and deflating them again (:func:`handler.zipwriter.method.copies_raw`).

The bytes are copied, not trusted: as they stream, they are inflated into a counter and
a CRC and the inflated bytes are dropped, so a copied member is verified exactly as a
re-compressed one is (zipfile checks CRC-32 and size at the end of a member). Trusting the
source's CRC would cost nothing but would copy a damaged member into an output that then
verifies against its own directory. The cost is one ISA-L inflate: 482 MB/s of one core on
the sample's weights, against zlib's inflate (244 MB/s, what zipfile reads a member with)
plus ISA-L level 1's deflate (1,067 MB/s; ISA-L 3, what level 6 maps to now, 449 MB/s) on
the re-compressing path, so about 2.4x less
CPU per byte, and the output bytes are the source's (``python -m benchmarks.codec_levels``,
64 MiB, CPU time of one thread, best of 3, 2026-11-30). End to end, ``python -m handler
sample model.zip --size 128MiB --format zip`` then ``python -m handler package model.zip
out.zip`` took 0.46 and 0.51 user-s (output: the source's 124,243,062 bytes exactly, each
member's 1 MiB sample for :func:`~handler.zipwriter.method.copies_raw` included) against
1.10 and 1.17 user-s with ``--level 6`` (re-deflated by ISA-L 3 to 124,108,333 bytes),
interleaved, 2 rounds, 2026-11-30 (review 2 session).
Bytes after the end of the deflate stream (inside the declared compressed size; zipfile,
``unzip -t`` and ``--level 6`` all accept such a member, review 2 item 13) are not copied:
the inflate that verifies each block finds where the stream ends, the block is cut there
and the rest of the member is not read, so the output member holds the complete,
verified stream and its own compressed size. That beats both other ways out: falling back
to re-deflating is impossible once blocks are written (the inflate finds the end only
as it goes), and failing would refuse a member every reader takes.
Whether a member is worth copying at all is :func:`handler.zipwriter.method.copies_raw`'s
decision, from :meth:`RawZipMember.inflated_start`.
A member that inflates past its declared size (a zip bomb or a lie), ends early, or
whose CRC-32 differs fails with the same :class:`~handler.errors.ExtractionError` the
re-compressing path gives; the output ZIP is then aborted by its writer.
"""

from __future__ import annotations

import struct
import zipfile
import zlib
from collections.abc import Callable, Iterator
from typing import BinaryIO, cast

from handler.codec import RAW_DEFLATE_WBITS, crc32, raw_inflater
from handler.streams import CHUNK_SIZE

LOCAL_HEADER = struct.Struct("<4s22xHH")
"""A local file header's signature and the lengths of its name and extra field
(APPNOTE.TXT 4.3.7: 30 bytes, the lengths at offsets 26 and 28)."""
LOCAL_SIGNATURE = b"PK\x03\x04"


class RawZipMember:
    """The compressed bytes of one deflated member of a ZIP read through ``handle``
    (a :class:`~handler.zipwriter.zipdata.PrecompressedMember`).

    ``crc32`` and ``uncompressed_size`` are the central directory's, and are verified
    against the data by the time iteration ends; ``corrupt`` turns a failure into the
    reader's error naming the member. Holds at most one chunk of compressed and one of
    inflated data, and between :meth:`inflated_start` and the copy the compressed bytes
    that sample read (about its size: 1 MiB).
    """

    def __init__(
        self,
        handle: BinaryIO,
        info: zipfile.ZipInfo,
        corrupt: Callable[[Exception], Exception],
        chunk_size: int = CHUNK_SIZE,
    ) -> None:
        self.method = info.compress_type
        self._handle = handle
        self._info = info
        self._corrupt = corrupt
        self._chunk_size = chunk_size
        self._head: list[bytes] = []  # compressed bytes inflated_start read, from the data's start
        self._head_end = 0  # the source offset after them

    @property
    def crc32(self) -> int:
        return self._info.CRC

    @property
    def uncompressed_size(self) -> int:
        return self._info.file_size

    def __iter__(self) -> Iterator[bytes]:
        try:
            yield from self._blocks()
        except (OSError, EOFError, ValueError, zipfile.BadZipFile) as exc:
            raise self._corrupt(exc) from exc

    def _blocks(self) -> Iterator[bytes]:
        info = self._info
        head, self._head = self._head, []
        position = self._head_end if head else self._data_offset()
        remaining = info.compress_size - sum(map(len, head))
        check = _InflateCheck(info, self._chunk_size)
        for block in head:  # the sample's bytes first: the source is read once, in order
            trailing = check.feed(block)
            yield block[: len(block) - trailing]
            if check.ended:
                break
        while remaining > 0 and not check.ended:
            self._handle.seek(position)
            block = self._handle.read(min(self._chunk_size, remaining))
            if not block:
                raise EOFError(f"the data of {info.filename!r} ends {remaining} bytes early")
            position += len(block)
            remaining -= len(block)
            trailing = check.feed(block)
            yield block[: len(block) - trailing]  # bytes after the stream's end stay behind
        check.finish()

    def inflated_start(self, size: int) -> tuple[bytes, int] | None:
        """The member's first ``size`` inflated bytes (fewer for a smaller member) and
        about how many compressed bytes they took (to within the inflater's bit buffer),
        or None when the start does not inflate (the copy then fails with the reader's
        error). Reads the compressed data in chunks until ``size`` bytes come out: a
        bomb's start is one chunk of compressed bytes."""
        try:
            return self._inflated_start(size)
        except (OSError, EOFError, ValueError, zipfile.BadZipFile, zlib.error):
            return None

    def _inflated_start(self, size: int) -> tuple[bytes, int]:
        # zlib's, not ISA-L's: ISA-L takes input ahead of its output (32 KiB more than a
        # 1 MiB sample needed), zlib leaves what it did not use in unconsumed_tail
        # The compressed bytes read are kept (about ``size`` of them, the blocks the copy
        # starts with), so a copy that follows reads on from where this stopped: on S3 a
        # read back from the data's start would open a second window over the same bytes.
        inflater = zlib.decompressobj(RAW_DEFLATE_WBITS)
        position = self._data_offset()
        remaining = self._info.compress_size
        out: list[bytes] = []
        produced = fed = 0
        pending = b""
        self._head = []
        while produced < size and not inflater.eof:
            if not pending:
                if remaining <= 0:
                    break
                self._handle.seek(position)
                pending = self._handle.read(min(self._chunk_size, remaining))
                if not pending:
                    break
                self._head.append(pending)
                position += len(pending)
                remaining -= len(pending)
                fed += len(pending)
                self._head_end = position
            piece = inflater.decompress(pending, size - produced)
            pending = inflater.unconsumed_tail
            out.append(piece)
            produced += len(piece)
        consumed = fed - len(pending) - len(inflater.unused_data)
        return b"".join(out), consumed

    def _data_offset(self) -> int:
        """Where the member's data starts: after its local header's name and extra field
        (which may differ from the central directory's extra field)."""
        self._handle.seek(self._info.header_offset)
        header = self._handle.read(LOCAL_HEADER.size)
        if len(header) < LOCAL_HEADER.size:
            raise EOFError(f"the local header of {self._info.filename!r} is cut short")
        signature, name_length, extra_length = cast(
            "tuple[bytes, int, int]", LOCAL_HEADER.unpack(header)
        )
        if signature != LOCAL_SIGNATURE:
            raise zipfile.BadZipFile(f"bad local header signature for {self._info.filename!r}")
        return self._info.header_offset + LOCAL_HEADER.size + name_length + extra_length


class _InflateCheck:
    """Inflates what it is fed into a CRC-32 and a count, keeping none of it."""

    def __init__(self, info: zipfile.ZipInfo, chunk_size: int) -> None:
        self._info = info
        self._chunk_size = chunk_size
        self._inflater = raw_inflater()
        self._crc = 0
        self._size = 0

    @property
    def ended(self) -> bool:
        """Whether the deflate stream's last block has been inflated."""
        return bool(self._inflater.eof)

    def feed(self, block: bytes) -> int:
        """Inflate ``block``; returns how many of its bytes follow the stream's end."""
        data = block
        while True:  # bounded output per call: a zip bomb never lands in memory
            out = self._inflater.decompress(data, self._chunk_size)
            self._count(out)
            data = self._inflater.unconsumed_tail
            if self._inflater.eof:
                return len(self._inflater.unused_data)
            if not data and len(out) < self._chunk_size:
                return 0

    def finish(self) -> None:
        self._count(self._inflater.flush())
        info = self._info
        if not self._inflater.eof:
            raise zipfile.BadZipFile(
                f"the deflate stream of {info.filename!r} is cut short: its "
                f"{info.compress_size:,} compressed bytes end before it does"
            )
        if self._size != info.file_size:
            raise zipfile.BadZipFile(
                f"{info.filename!r} inflates to {self._size:,} bytes, not the "
                f"{info.file_size:,} its header declares"
            )
        if self._crc != info.CRC:
            raise zipfile.BadZipFile(f"Bad CRC-32 for file {info.filename!r}")

    def _count(self, out: bytes) -> None:
        self._size += len(out)
        if self._size > self._info.file_size:
            raise zipfile.BadZipFile(
                f"{self._info.filename!r} inflates past the {self._info.file_size:,} bytes "
                "its header declares"
            )
        self._crc = crc32(out, self._crc)
