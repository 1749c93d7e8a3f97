"""Writing members to disk: one member at a time under a root, never following links,
checking space before each file."""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from handler.archive.reader import ArchiveReader
from handler.archive.tree_members import TreeReader
from handler.errors import ExtractionError, InsufficientStorageError
from handler.members import Member, MemberKind, OpenMember
from handler.storage import available_bytes

CleanupCallback = Callable[[Path, Member], None]
"""Called after each member is written to disk, so the caller can consume and delete it."""


@dataclass(frozen=True, slots=True)
class ExtractionSummary:
    """What an extraction wrote."""

    format: str
    files: int
    directories: int
    links: int
    bytes_written: int


def write_members(
    reader: ArchiveReader | TreeReader,
    root: Path,
    cleanup_callback: CleanupCallback | None,
    patterns: Sequence[str] | None,
) -> ExtractionSummary:
    """Write every member ``reader`` yields (matching ``patterns``, if any) under ``root``,
    calling ``cleanup_callback`` after each file or link."""
    files = directories = links = written = 0
    for opened in reader.members(patterns):
        member = opened.member
        path = root / member.name
        with _name_fits(reader.source.name, member, root):
            if member.kind is MemberKind.DIRECTORY:
                path.mkdir(parents=True, exist_ok=True)
                path.chmod(member.mode | stat.S_IRWXU)
                directories += 1
                continue
            path.parent.mkdir(parents=True, exist_ok=True)
            if member.kind is MemberKind.FILE:
                written += write_file(path, opened, reader.chunk_size)
                files += 1
            elif member.kind is MemberKind.SYMLINK:
                path.symlink_to(member.link_target or "")
                links += 1
            else:
                os.link(root / (member.link_target or ""), path)
                links += 1
        if cleanup_callback is not None:
            cleanup_callback(path, member)
    return ExtractionSummary(str(reader.format), files, directories, links, written)


@contextlib.contextmanager
def _name_fits(source: str, member: Member, root: Path) -> Iterator[None]:
    """Turn the scratch file system's refusal of a name (ENAMETOOLONG: the scratch path
    plus the name passes PATH_MAX, or the file system's NAME_MAX is below 255 bytes) into
    an :class:`ExtractionError` naming the member."""
    try:
        yield
    except OSError as exc:
        if exc.errno != errno.ENAMETOOLONG:
            raise
        raise ExtractionError(
            source,
            member.name,
            f"its name is too long for the scratch file system under {str(root)!r} "
            f"(ENAMETOOLONG, {len(os.fsencode(root / member.name)):,} bytes with the "
            "scratch directory)",
            "use the stream strategy, which writes no scratch files, or rebuild the archive "
            "with shorter paths",
        ) from exc


def write_file(path: Path, opened: OpenMember, chunk_size: int) -> int:
    """Write one member's data to a new file (never following links), checking space
    first; returns the bytes written. Raises InsufficientStorageError when the disk (or
    ``ulimit -f``) cannot hold it."""
    member = opened.member
    available = available_bytes(path.parent)
    if member.size > available:
        raise InsufficientStorageError(
            path,
            member.size,
            available,
            "extracting needs space for every member; use the stream strategy (no disk "
            "needed) or give the function more ephemeral storage",
        )
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(path, flags, 0o600)
    written = 0
    try:
        with open(fd, "wb", closefd=True) as out:  # noqa: PTH123 - an fd, not a path
            while chunk := opened.stream.read(chunk_size):
                out.write(chunk)
                written += len(chunk)
        # Owner-readable whatever the archive says: it is read back to be zipped.
        path.chmod(member.mode | stat.S_IRUSR)
        with contextlib.suppress(OverflowError, OSError, ValueError):
            os.utime(path, (member.mtime, member.mtime))
    except BaseException as exc:
        with contextlib.suppress(OSError):
            path.unlink()
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise InsufficientStorageError(
                path,
                member.size,
                available_bytes(path.parent),
                "the disk filled while extracting; use the stream strategy or give the "
                "function more ephemeral storage",
            ) from exc
        if isinstance(exc, OSError) and exc.errno == errno.EFBIG:
            raise InsufficientStorageError(
                path,
                member.size,
                available_bytes(path.parent),
                "the file is larger than the filesystem or the process's file size limit "
                "(ulimit -f) allows; use the stream strategy, which writes no scratch files",
            ) from exc
        raise
    return written
