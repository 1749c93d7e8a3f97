"""Tar members, read front to back: source -> decompressor -> tar headers, seeking only forward.

A plain tar, or one compressed with gzip, bzip2 or xz (POSIX.1-2001 pax, GNU and ustar
headers, as :mod:`tarfile` reads them). tarfile reads in its seeking mode ``r:`` over a
:class:`~handler.streams.ForwardReader`, which seeks only forward; its stream mode ``r|``
joined and sliced every block in its own buffer (0.43 CPU-s per GiB on the ZIP's thread,
the bench's 1 GiB artifact, 2026-11-30).
"""

from __future__ import annotations

import bz2
import io
import lzma
import stat
import tarfile
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, BinaryIO, cast

from handler.archive.formats import SNIFF_SIZE, SUPPORTED, is_tar_start
from handler.archive.names import Name
from handler.archive.readchecks import RatioCheck
from handler.archive.safety import safe_name
from handler.archive.unpackable import tar_refusal
from handler.errors import ExtractionError, TmpwardenError, UnsupportedArchiveError, shown_name
from handler.inflate import open_gzip_reader
from handler.members import ArchiveFormat, Member, MemberKind, OpenMember
from handler.streams import (
    CountingReader,
    ForwardReader,
    GuardedReader,
    PrefixedReader,
    Readable,
    ReadOnlyStream,
    read_full,
    read_head,
)

if TYPE_CHECKING:
    from handler.archive.reader import ArchiveReader


def open_tar(
    reader: ArchiveReader, raw: CountingReader, head: bytes, fmt: ArchiveFormat
) -> tarfile.TarFile:
    """The tar stream over ``raw`` (whose first bytes, ``head``, were read to sniff it),
    decompressed for ``fmt``; every stream goes on the reader's stack."""
    stream: BinaryIO = cast(BinaryIO, PrefixedReader(head, raw))
    decompressors: dict[ArchiveFormat, Callable[[BinaryIO], BinaryIO]] = {
        ArchiveFormat.TAR_GZ: lambda s: open_gzip_reader(s, block_size=reader.chunk_size),
        ArchiveFormat.TAR_BZ2: lambda s: cast(BinaryIO, bz2.BZ2File(s)),
        ArchiveFormat.TAR_XZ: lambda s: cast(BinaryIO, lzma.LZMAFile(s)),
    }
    if fmt in decompressors:
        stream = reader.stack.enter_context(decompressors[fmt](stream))
    guarded = GuardedReader(stream, reader.corrupt)
    decompressed = CountingReader(guarded, RatioCheck(reader.guard, raw, reader.position))
    inner_head = read_head(decompressed, SNIFF_SIZE)
    if not is_tar_start(inner_head):  # the same rule as for a plain tar
        raise UnsupportedArchiveError(
            f"{reader.source.name}: the file is {fmt.value.removeprefix('tar.')}-compressed "
            f"but holds no tar archive; supported formats are {SUPPORTED}"
        )
    tar_stream = cast(BinaryIO, ForwardReader(PrefixedReader(inner_head, decompressed)))
    try:
        return reader.stack.enter_context(
            tarfile.open(
                fileobj=tar_stream,
                mode="r:",
                encoding="utf-8",  # names come back as bytes in handler.archive.names
                errors="surrogateescape",
            )
        )
    except TmpwardenError:
        raise
    except Exception as exc:  # tarfile's own, or ForwardReader's refusal of a size field
        raise reader.corrupt(exc) from exc


def tar_members(
    reader: ArchiveReader,
    tar: tarfile.TarFile,
    patterns: Sequence[str] | None,
    with_data: bool,
) -> Iterator[OpenMember]:
    """Yield each admitted member of ``tar`` with a stream of its data (empty unless
    ``with_data`` and a file)."""
    while True:
        try:
            info = tar.next()
        except TmpwardenError:
            raise
        except Exception as exc:
            raise reader.corrupt(exc) from exc
        _forget_seen_headers(tar)
        if info is None:
            return
        name = reader.names.tar_name(info.name)
        if reader.passed_over(name, info.isdir(), tar_refusal(info), patterns):
            continue
        member = reader.admit(_tar_member(reader, info, name), patterns)
        if member is None:
            continue
        stream: BinaryIO = cast(BinaryIO, io.BytesIO())
        if with_data and member.kind is MemberKind.FILE:
            extracted: Readable | None = (
                TarMemberData(tar, info) if info.sparse is None else tar.extractfile(info)
            )
            assert extracted is not None
            stream = cast(BinaryIO, GuardedReader(extracted, reader.corrupt))
        yield OpenMember(member, stream)


class TarMemberData(ReadOnlyStream):
    """A regular (not sparse) member's data, read from the tar stream itself.

    What :meth:`tarfile.TarFile.extractfile` does for such a member (seek the stream to
    the member's data, read at most its size, ``ReadError`` if the stream ends first),
    without its :class:`io.BufferedReader`, which copied every MiB of member data once
    more on the ZIP's thread (``perf``, 1 GiB artifact, 2026-11-30). ``read(size)``
    returns ``size`` bytes unless the member ends first, as a file's does; ``read1`` is
    one read of the stream (:meth:`~handler.streams.ForwardReader.read1`), possibly
    short, so a whole block of the inflate thread passes on as it is, without a copy
    (:func:`handler.zipwriter.zipdata.iter_chunks` reads that way).
    """

    def __init__(self, tar: tarfile.TarFile, info: tarfile.TarInfo) -> None:
        self._stream: ForwardReader = tar.fileobj  # type: ignore[assignment]
        self._offset = info.offset_data
        self._size = info.size
        self._position = 0

    def read(self, size: int = -1) -> bytes:
        if size < 0:
            return self.readall()
        return read_full(self.read1, size)

    def read1(self, size: int = -1) -> bytes:
        left = self._size - self._position
        size = left if size < 0 else min(size, left)
        if size <= 0:
            return b""
        self._stream.seek(self._offset + self._position)  # forward only: a no-op or a skip
        data = self._stream.read1(size)
        if not data:
            raise tarfile.ReadError("unexpected end of data")
        self._position += len(data)
        return data


def _tar_member(reader: ArchiveReader, info: tarfile.TarInfo, name: Name) -> Member:
    """A file, directory or link (others are refused by :mod:`handler.archive.unpackable`)."""
    source = reader.source.name
    if info.isreg():
        kind, target = MemberKind.FILE, None
    elif info.isdir():
        kind, target = MemberKind.DIRECTORY, None
    elif info.issym():
        kind = MemberKind.SYMLINK
        target = reader.names.tar_link_target(info.linkname, name.given)
    elif info.islnk():
        kind = MemberKind.HARDLINK
        linked = reader.names.tar_link_target(info.linkname, name.given)
        target = _hardlink_target(source, linked, name.given)
    else:  # pragma: no cover - tar_refusal passed over or refused it
        raise AssertionError(f"unpackable tar member {info.name!r} reached _tar_member")
    return Member(
        name=safe_name(source, name.path, is_dir=kind is MemberKind.DIRECTORY),
        kind=kind,
        size=info.size if kind is MemberKind.FILE else 0,
        mode=stat.S_IMODE(info.mode) & 0o777,
        mtime=float(info.mtime),
        link_target=target,
    )


def _hardlink_target(source: str, target: str, link: str) -> str:
    """A hard link's ``target`` made safe; a refusal names ``link``, the member at fault."""
    try:
        return safe_name(source, target)
    except ExtractionError as exc:
        raise ExtractionError(
            source,
            link,
            f"it is a hard link to {shown_name(target)}: "
            + exc.reason.replace("the name", "the target", 1),
            exc.advice,
        ) from exc


def _forget_seen_headers(tar: tarfile.TarFile) -> None:
    """tarfile keeps every header it has read, so memory grows with the member count;
    nothing here needs them (hard links are resolved by name), so drop them."""
    tar.members.clear()  # type: ignore[attr-defined]
