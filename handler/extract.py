"""StreamingExtractor: safe, streaming reads of tar, tar.gz, tar.bz2, tar.xz and zip.

Tar formats are read front to back through a pipe of streams (source -> decompressor
-> tar headers), never seeking, so a non-seekable source (an S3 body) works; zip is
read through its central directory, which needs random access. Every member passes
:class:`~handler.safety.MemberGuard` before its data is touched.
"""

from __future__ import annotations

import bz2
import contextlib
import errno
import io
import lzma
import os
import posixpath
import stat
import tarfile
import time
import zipfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path
from types import TracebackType
from typing import BinaryIO, Self, cast

from handler.codec import open_gzip_reader
from handler.errors import (
    ExtractionError,
    InsufficientStorageError,
    TmpwardenError,
    UnsupportedArchiveError,
    shown_name,
)
from handler.formats import SNIFF_SIZE, SUPPORTED, detect_format, is_tar_start
from handler.locations import Source, open_source
from handler.members import ArchiveFormat, ArchiveInfo, Member, MemberKind, OpenMember
from handler.names import MemberNames, Name
from handler.readchecks import (
    CORRUPT_ADVICE,
    CorruptArchiveErrors,
    Position,
    RatioCheck,
    SourceReadErrors,
)
from handler.safety import (
    LONG_TARGET_ADVICE,
    MAX_SYMLINK_TARGET,
    Limits,
    MemberGuard,
    safe_name,
)
from handler.storage import available_bytes
from handler.streams import CountingReader, GuardedReader, PrefixedReader, read_head
from handler.unpackable import Refusal, tar_refusal, zip_refusal
from monitor.units import MiB

CHUNK_SIZE = 1 * MiB
CleanupCallback = Callable[[Path, Member], None]
"""Called after each member is written to disk, so the caller can consume and delete it."""

ArchiveLike = Source | str | os.PathLike[str]


def matches(name: str, patterns: Sequence[str]) -> bool:
    """Whether ``name`` matches a glob: a pattern without ``/`` matches the base name
    (``*.safetensors``, ``config.json``), one with ``/`` matches the whole path."""
    base = posixpath.basename(name)
    return any(fnmatchcase(name if "/" in p else base, p) for p in patterns)


@dataclass(frozen=True, slots=True)
class ExtractionSummary:
    """What an extraction wrote."""

    format: str
    files: int
    directories: int
    links: int
    bytes_written: int


class ArchiveReader:
    """One front-to-back pass over one archive; a context manager that owns the streams.

    No stream below it holds the reader (the wrappers get the standalone objects of
    :mod:`handler.readchecks`), and leaving the context drops every stream, so a finished
    reader is freed by reference counting alone.
    """

    def __init__(
        self,
        source: Source,
        limits: Limits,
        chunk_size: int = CHUNK_SIZE,
        name_encoding: str | None = None,
    ) -> None:
        self.source = source
        self._limits = limits
        self._chunk_size = chunk_size
        self._guard = MemberGuard(source.name, limits)
        self._names = MemberNames(source.name, name_encoding)
        self._stack = contextlib.ExitStack()
        self._raw: CountingReader | None = None
        self._raw_count = 0
        self._position = Position()
        self._corrupt = CorruptArchiveErrors(source.name, self._position)
        self._tar: tarfile.TarFile | None = None
        self._selected: set[str] = set()
        self._directories: set[str] = set()
        self.format: ArchiveFormat | None = None

    @property
    def source_bytes_read(self) -> int:
        """Bytes of the source read so far (for progress and the ratio check)."""
        return self._raw.count if self._raw is not None else self._raw_count

    def __enter__(self) -> Self:
        try:
            raw = self._stack.enter_context(self.source.open_stream())
            self._raw = CountingReader(GuardedReader(raw, SourceReadErrors(self.source.name)))
            head = read_head(self._raw, SNIFF_SIZE)
            self.format = detect_format(head, self.source.name)
            if self.format is ArchiveFormat.ZIP:
                raw.close()  # zip is read by random access; stop this stream (an S3 GET) now
            else:
                self._tar = self._open_tar(head, self.format)
        except BaseException:
            self._close()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._close()

    def _close(self) -> None:
        """Close every stream and let go of them (the count of source bytes stays)."""
        try:
            self._stack.close()
        finally:
            self._raw_count = self.source_bytes_read
            self._raw = None
            self._tar = None

    def members(
        self, patterns: Sequence[str] | None = None, *, with_data: bool = True
    ) -> Iterator[OpenMember]:
        """Yield each member (matching ``patterns``, if any) with a stream of its data."""
        if self.format is ArchiveFormat.ZIP:
            yield from self._zip_members(patterns, with_data)
        else:
            yield from self._tar_members(patterns, with_data)

    # -- tar --------------------------------------------------------------------------

    def _open_tar(self, head: bytes, fmt: ArchiveFormat) -> tarfile.TarFile:
        assert self._raw is not None
        stream: BinaryIO = cast(BinaryIO, PrefixedReader(head, self._raw))
        decompressors: dict[ArchiveFormat, Callable[[BinaryIO], BinaryIO]] = {
            ArchiveFormat.TAR_GZ: lambda s: open_gzip_reader(s, block_size=self._chunk_size),
            ArchiveFormat.TAR_BZ2: lambda s: cast(BinaryIO, bz2.BZ2File(s)),
            ArchiveFormat.TAR_XZ: lambda s: cast(BinaryIO, lzma.LZMAFile(s)),
        }
        if fmt in decompressors:
            stream = self._stack.enter_context(decompressors[fmt](stream))
        guarded = GuardedReader(stream, self._corrupt)
        decompressed = CountingReader(guarded, RatioCheck(self._guard, self._raw, self._position))
        inner_head = read_head(decompressed, SNIFF_SIZE)
        if not is_tar_start(inner_head):  # the same rule as for a plain tar
            raise UnsupportedArchiveError(
                f"{self.source.name}: the file is {fmt.value.removeprefix('tar.')}-compressed "
                f"but holds no tar archive; supported formats are {SUPPORTED}"
            )
        tar_stream = cast(BinaryIO, PrefixedReader(inner_head, decompressed))
        try:
            return self._stack.enter_context(
                tarfile.open(
                    fileobj=tar_stream,
                    mode="r|",
                    bufsize=self._chunk_size,
                    encoding="utf-8",  # names come back as bytes in handler.names
                    errors="surrogateescape",
                )
            )
        except tarfile.TarError as exc:
            raise self._corrupt(exc) from exc

    def _tar_members(self, patterns: Sequence[str] | None, with_data: bool) -> Iterator[OpenMember]:
        tar = self._tar
        assert tar is not None
        while True:
            try:
                info = tar.next()
            except TmpwardenError:
                raise
            except Exception as exc:
                raise self._corrupt(exc) from exc
            _forget_seen_headers(tar)
            if info is None:
                return
            name = self._names.tar_name(info.name)
            if self._passed_over(name, info.isdir(), tar_refusal(info), patterns):
                continue
            member = self._admit(self._tar_member(info, name), patterns)
            if member is None:
                continue
            stream: BinaryIO = cast(BinaryIO, io.BytesIO())
            if with_data and member.kind is MemberKind.FILE:
                extracted = tar.extractfile(info)
                assert extracted is not None
                stream = cast(BinaryIO, GuardedReader(extracted, self._corrupt))
            yield OpenMember(member, stream)

    def _tar_member(self, info: tarfile.TarInfo, name: Name) -> Member:
        """A file, directory or link (others are refused by :mod:`handler.unpackable`)."""
        source = self.source.name
        if info.isreg():
            kind, target = MemberKind.FILE, None
        elif info.isdir():
            kind, target = MemberKind.DIRECTORY, None
        elif info.issym():
            kind = MemberKind.SYMLINK
            target = self._names.tar_link_target(info.linkname, name.given)
        elif info.islnk():
            kind = MemberKind.HARDLINK
            linked = self._names.tar_link_target(info.linkname, name.given)
            target = self._hardlink_target(linked, name.given)
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

    def _hardlink_target(self, target: str, link: str) -> str:
        """A hard link's ``target`` made safe; a refusal names ``link``, the member at fault."""
        try:
            return safe_name(self.source.name, target)
        except ExtractionError as exc:
            raise ExtractionError(
                self.source.name,
                link,
                f"it is a hard link to {shown_name(target)}: "
                + exc.reason.replace("the name", "the target", 1),
                exc.advice,
            ) from exc

    # -- zip --------------------------------------------------------------------------

    def _zip_members(self, patterns: Sequence[str] | None, with_data: bool) -> Iterator[OpenMember]:
        handle = self._stack.enter_context(self.source.open_random_access())
        try:
            archive = self._stack.enter_context(zipfile.ZipFile(handle))
            infos = archive.infolist()
        except UnicodeDecodeError as exc:  # zipfile reads every name up front
            raise self._names.flagged_but_not_utf8(exc) from exc
        except (zipfile.BadZipFile, EOFError, ValueError) as exc:
            raise ExtractionError(
                self.source.name,
                None,
                f"its ZIP central directory is unreadable ({exc})",
                CORRUPT_ADVICE,
            ) from exc
        declared = sum(i.file_size for i in infos)
        self._guard.check_total(declared, None)
        self._guard.check_ratio(declared, sum(i.compress_size for i in infos), None)
        for info in infos:
            name = self._names.zip_name(info)
            is_dir = name.path.endswith("/") or stat.S_ISDIR(info.external_attr >> 16)
            if self._passed_over(name, is_dir, zip_refusal(info), patterns):
                continue
            member = self._admit(self._zip_member(archive, info, name), patterns)
            if member is None:
                continue
            stream: BinaryIO = cast(BinaryIO, io.BytesIO())
            if with_data and member.kind is MemberKind.FILE:
                try:
                    opened = archive.open(info)
                except (zipfile.BadZipFile, OSError, EOFError) as exc:
                    raise self._corrupt(exc) from exc
                stream = cast(BinaryIO, GuardedReader(opened, self._corrupt))
            yield OpenMember(member, stream)

    def _zip_member(self, archive: zipfile.ZipFile, info: zipfile.ZipInfo, name: Name) -> Member:
        """A file, directory or link that can be read (others are refused by
        :mod:`handler.unpackable`)."""
        source = self.source.name
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
                raise self._corrupt(exc) from exc
            target = self._names.zip_link_target(info, data)
        else:
            kind = MemberKind.FILE
        mode = stat.S_IMODE(unix_mode) & 0o777
        if not mode:
            mode = 0o755 if kind is MemberKind.DIRECTORY else 0o644
        return Member(
            name=safe_name(
                source, name.path, is_dir=kind is MemberKind.DIRECTORY, given=name.given
            ),
            kind=kind,
            size=info.file_size if kind is MemberKind.FILE else 0,
            mode=mode,
            mtime=time.mktime((*info.date_time, 0, 0, -1)),
            link_target=target,
            compressed_size=info.compress_size,
        )

    # -- shared -----------------------------------------------------------------------

    def _admit(self, member: Member, patterns: Sequence[str] | None) -> Member | None:
        """Check a selected ``member`` against every member written before it; None when
        it is not to be yielded (the root, or a directory listed twice)."""
        if patterns:
            self._check_link_selected(member)
        member = self._guard.admit(member)
        self._position.member = member.name
        if not member.name:
            return None
        if member.kind is MemberKind.DIRECTORY:
            if member.name in self._directories:
                return None  # listed twice (tar -r, tar cf x.tar d d): one ZIP entry
            self._directories.add(member.name)
        return member

    def _passed_over(
        self, name: Name, is_dir: bool, refusal: Refusal | None, patterns: Sequence[str] | None
    ) -> bool:
        """Whether ``patterns`` leave the member out (a directory is never selected: the
        ones a selected member needs are implied). An unselected member gets only the
        whole-archive checks of :mod:`handler.unpackable`; a selected one that cannot be
        unpacked (``refusal`` says why) is refused."""
        if refusal is None and not patterns:
            return False
        path = safe_name(self.source.name, name.path, is_dir=is_dir, given=name.given)
        self._position.member = path
        if patterns and (is_dir or not matches(path, patterns)):
            self._guard.count(path)
            return True
        if refusal is None:
            return False
        self._guard.count(path)
        reason, advice = refusal
        raise ExtractionError(self.source.name, name.given, reason, advice)

    def _check_link_selected(self, member: Member) -> None:
        """A selected hard link needs its target selected too (it is written as a link)."""
        target = member.link_target or ""
        if member.kind is MemberKind.HARDLINK and target not in self._selected:
            raise ExtractionError(
                self.source.name,
                member.name,
                f"it is a hard link to {shown_name(target)}, which the include patterns leave out",
                f"add a pattern that matches {shown_name(target)} as well",
            )
        if member.kind is not MemberKind.DIRECTORY:
            self._selected.add(member.name)


class StreamingExtractor:
    """Reads archives member by member, checking each one, never holding a whole member."""

    def __init__(
        self,
        *,
        limits: Limits | None = None,
        chunk_size: int = CHUNK_SIZE,
        name_encoding: str | None = None,
    ) -> None:
        """``name_encoding``: the codec of names that are not UTF-8 (see handler.names)."""
        self.limits = limits or Limits()
        self.chunk_size = chunk_size
        self.name_encoding = name_encoding

    def open(self, source: ArchiveLike) -> ArchiveReader:
        """A reader for one pass over ``source``; use it as a context manager."""
        return ArchiveReader(_as_source(source), self.limits, self.chunk_size, self.name_encoding)

    def get_archive_info(
        self, source: ArchiveLike, patterns: Sequence[str] | None = None
    ) -> ArchiveInfo:
        """Members (those matching ``patterns``, if any) and totals from headers only: the
        zip central directory, or one streaming pass over the tar headers that writes
        nothing."""
        with self.open(source) as reader:
            members = tuple(m.member for m in reader.members(patterns, with_data=False))
            assert reader.format is not None
            return ArchiveInfo(
                source=reader.source.name,
                format=reader.format,
                archive_size=reader.source.size(),
                members=members,
            )

    def iter_members(
        self, source: ArchiveLike, patterns: Sequence[str] | None = None
    ) -> Iterator[OpenMember]:
        """Yield members one at a time, each with a stream to read before the next."""
        with self.open(source) as reader:
            yield from reader.members(patterns)

    def extract_streaming(
        self,
        archive: ArchiveLike,
        dest_dir: str | Path,
        cleanup_callback: CleanupCallback | None = None,
        *,
        patterns: Sequence[str] | None = None,
    ) -> ExtractionSummary:
        """Extract one member at a time under ``dest_dir``, calling ``cleanup_callback``
        after each file or link is written."""
        root = Path(dest_dir)
        root.mkdir(parents=True, exist_ok=True)
        with self.open(archive) as reader:
            files, directories, links, written = self._extract_all(
                reader, root, cleanup_callback, patterns
            )
            return ExtractionSummary(str(reader.format), files, directories, links, written)

    def _extract_all(
        self,
        reader: ArchiveReader,
        root: Path,
        cleanup_callback: CleanupCallback | None,
        patterns: Sequence[str] | None,
    ) -> tuple[int, int, int, int]:
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
                    written += _write_file(path, opened, self.chunk_size)
                    files += 1
                elif member.kind is MemberKind.SYMLINK:
                    path.symlink_to(member.link_target or "")
                    links += 1
                else:
                    os.link(root / (member.link_target or ""), path)
                    links += 1
            if cleanup_callback is not None:
                cleanup_callback(path, member)
        return files, directories, links, written

    def extract_selective(
        self,
        archive: ArchiveLike,
        patterns: Sequence[str],
        dest_dir: str | Path,
        cleanup_callback: CleanupCallback | None = None,
    ) -> ExtractionSummary:
        """Extract only the members matching ``patterns`` (see :func:`matches`)."""
        return self.extract_streaming(archive, dest_dir, cleanup_callback, patterns=patterns)


def _forget_seen_headers(tar: tarfile.TarFile) -> None:
    """Stream mode keeps every header it has read, so memory grows with the member count;
    nothing here needs them (hard links are resolved by name), so drop them."""
    tar.members.clear()  # type: ignore[attr-defined]


def _as_source(source: ArchiveLike) -> Source:
    if isinstance(source, str | os.PathLike):
        return open_source(os.fspath(source))
    return source


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


def _write_file(path: Path, opened: OpenMember, chunk_size: int) -> int:
    """Write one member's data to a new file (never following links), checking space first."""
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
