"""Zip members, read through the central directory (APPNOTE.TXT 4.3.12), which needs
random access: a local file, or an S3 object through ranged GETs."""

from __future__ import annotations

import io
import stat
import time
import zipfile
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, BinaryIO, cast

from handler.archive.advice import LONG_TARGET_ADVICE
from handler.archive.names import Name
from handler.archive.readchecks import CORRUPT_ADVICE
from handler.archive.safety import MAX_SYMLINK_TARGET, safe_name
from handler.archive.unpackable import zip_refusal
from handler.archive.zip_raw import RawZipMember
from handler.errors import ExtractionError
from handler.members import Member, MemberKind, OpenMember
from handler.streams import GuardedReader

if TYPE_CHECKING:
    from handler.archive.reader import ArchiveReader


def zip_members(
    reader: ArchiveReader, patterns: Sequence[str] | None, with_data: bool
) -> Iterator[OpenMember]:
    """Yield each admitted member with a stream of its data (empty unless ``with_data``
    and a file); the declared totals are checked against the limits first."""
    handle = reader.stack.enter_context(reader.source.open_random_access())
    try:
        archive = reader.stack.enter_context(zipfile.ZipFile(handle))
        infos = archive.infolist()
    except UnicodeDecodeError as exc:  # zipfile reads every name up front
        raise reader.names.flagged_but_not_utf8(exc) from exc
    except (zipfile.BadZipFile, EOFError, ValueError) as exc:
        raise ExtractionError(
            reader.source.name,
            None,
            f"its ZIP central directory is unreadable ({exc})",
            CORRUPT_ADVICE,
        ) from exc
    declared = sum(i.file_size for i in infos)
    reader.guard.check_total(declared, None)
    reader.guard.check_ratio(declared, sum(i.compress_size for i in infos), None)
    for info in infos:
        name = reader.names.zip_name(info)
        is_dir = name.path.endswith("/") or stat.S_ISDIR(info.external_attr >> 16)
        if reader.passed_over(name, is_dir, zip_refusal(info), patterns):
            continue
        member = reader.admit(_zip_member(reader, archive, info, name), patterns)
        if member is None:
            continue
        stream: BinaryIO = cast(BinaryIO, io.BytesIO())
        raw = None
        if with_data and member.kind is MemberKind.FILE:
            try:
                opened = archive.open(info)
            except (zipfile.BadZipFile, OSError, EOFError) as exc:
                raise reader.corrupt(exc) from exc
            stream = cast(BinaryIO, GuardedReader(opened, reader.corrupt))
            if info.compress_type == zipfile.ZIP_DEFLATED:
                raw = RawZipMember(handle, info, reader.corrupt)
        yield OpenMember(member, stream, raw)


def _zip_member(
    reader: ArchiveReader, archive: zipfile.ZipFile, info: zipfile.ZipInfo, name: Name
) -> Member:
    """A file, directory or link that can be read (others are refused by
    :mod:`handler.archive.unpackable`)."""
    source = reader.source.name
    unix_mode = info.external_attr >> 16
    target = None
    # not ZipInfo.is_dir(): it fails on an empty name, which safe_name refuses below
    if name.path.endswith("/") or stat.S_ISDIR(unix_mode):
        kind = MemberKind.DIRECTORY
    elif stat.S_ISLNK(unix_mode):
        kind = MemberKind.SYMLINK
        if info.file_size > MAX_SYMLINK_TARGET:
            raise ExtractionError(
                source,
                name.given,
                f"it is a symbolic link with a {info.file_size:,}-byte target, over the "
                f"{MAX_SYMLINK_TARGET:,} bytes Linux allows (PATH_MAX)",
                LONG_TARGET_ADVICE,
            )
        try:
            data = archive.read(info)
        except (zipfile.BadZipFile, OSError, EOFError) as exc:
            raise reader.corrupt(exc) from exc
        target = reader.names.zip_link_target(info, data)
    else:
        kind = MemberKind.FILE
    mode = stat.S_IMODE(unix_mode) & 0o777
    if not mode:
        mode = 0o755 if kind is MemberKind.DIRECTORY else 0o644
    return Member(
        name=safe_name(source, name.path, is_dir=kind is MemberKind.DIRECTORY, given=name.given),
        kind=kind,
        size=info.file_size if kind is MemberKind.FILE else 0,
        mode=mode,
        mtime=time.mktime((*info.date_time, 0, 0, -1)),
        link_target=target,
        compressed_size=info.compress_size,
    )
