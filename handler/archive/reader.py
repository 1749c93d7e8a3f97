"""ArchiveReader: one front-to-back pass over one archive; it owns the stream stack.

The source is sniffed (:mod:`handler.archive.formats`), then read by the format's member
reader (:mod:`handler.archive.tar_members` front to back through a pipe of streams,
seeking only forward, so a non-seekable source such as an S3 body works;
:mod:`handler.archive.zip_members` through the central directory, which needs random
access). Every member passes :class:`~handler.archive.safety.MemberGuard` here before
its data is touched.
"""

from __future__ import annotations

import contextlib
import posixpath
import tarfile
from collections.abc import Iterator, Sequence
from fnmatch import fnmatchcase
from types import TracebackType
from typing import Self

from handler.archive.formats import SNIFF_SIZE, detect_format
from handler.archive.names import MemberNames, Name
from handler.archive.readchecks import CorruptArchiveErrors, Position, SourceReadErrors
from handler.archive.safety import Limits, MemberGuard, safe_name
from handler.archive.tar_members import open_tar, tar_members
from handler.archive.unpackable import Refusal
from handler.archive.zip_members import zip_members
from handler.errors import ExtractionError, shown_name
from handler.locations.local import Source
from handler.members import ArchiveFormat, Member, MemberKind, OpenMember
from handler.streams import CHUNK_SIZE, CountingReader, GuardedReader, read_head


def matches(name: str, patterns: Sequence[str]) -> bool:
    """Whether ``name`` matches a glob: a pattern without ``/`` matches the base name
    (``*.safetensors``, ``config.json``), one with ``/`` matches the whole path."""
    base = posixpath.basename(name)
    return any(fnmatchcase(name if "/" in p else base, p) for p in patterns)


class ArchiveReader:
    """One front-to-back pass over one archive; a context manager that owns the streams.

    No stream below it holds the reader (the wrappers get the standalone objects of
    :mod:`handler.archive.readchecks`), and leaving the context drops every stream, so a
    finished reader is freed by reference counting alone. The member readers use
    ``names``, ``corrupt``, ``guard``, ``stack``, :meth:`admit` and :meth:`passed_over`.
    """

    def __init__(
        self,
        source: Source,
        limits: Limits,
        chunk_size: int = CHUNK_SIZE,
        name_encoding: str | None = None,
    ) -> None:
        self.source = source
        self.chunk_size = chunk_size
        self.guard = MemberGuard(source.name, limits)
        self.names = MemberNames(source.name, name_encoding)
        self.stack = contextlib.ExitStack()
        self._raw: CountingReader | None = None
        self._raw_count = 0
        self.position = Position()
        self.corrupt = CorruptArchiveErrors(source.name, self.position)
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
            raw = self.stack.enter_context(self.source.open_stream())
            self._raw = CountingReader(GuardedReader(raw, SourceReadErrors(self.source.name)))
            head = read_head(self._raw, SNIFF_SIZE)
            self.format = detect_format(head, self.source.name)
            if self.format is ArchiveFormat.ZIP:
                raw.close()  # zip is read by random access; stop this stream (an S3 GET) now
            else:
                self._tar = open_tar(self, self._raw, head, self.format)
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
            self.stack.close()
        finally:
            self._raw_count = self.source_bytes_read
            self._raw = None
            self._tar = None

    def members(
        self, patterns: Sequence[str] | None = None, *, with_data: bool = True
    ) -> Iterator[OpenMember]:
        """Yield each member (matching ``patterns``, if any) with a stream of its data."""
        if self.format is ArchiveFormat.ZIP:
            yield from zip_members(self, patterns, with_data)
        else:
            assert self._tar is not None
            yield from tar_members(self, self._tar, patterns, with_data)

    def admit(self, member: Member, patterns: Sequence[str] | None) -> Member | None:
        """Check a selected ``member`` against every member written before it; None when
        it is not to be yielded (the root, or a directory listed twice)."""
        if patterns:
            self._check_link_selected(member)
        member = self.guard.admit(member)
        self.position.member = member.name
        if not member.name:
            return None
        if member.kind is MemberKind.DIRECTORY:
            if member.name in self._directories:
                return None  # listed twice (tar -r, tar cf x.tar d d): one ZIP entry
            self._directories.add(member.name)
        return member

    def passed_over(
        self, name: Name, is_dir: bool, refusal: Refusal | None, patterns: Sequence[str] | None
    ) -> bool:
        """Whether ``patterns`` leave the member out (a directory is never selected: the
        ones a selected member needs are implied). An unselected member gets only the
        whole-archive checks of :mod:`handler.archive.unpackable`; a selected one that
        cannot be unpacked (``refusal`` says why) is refused."""
        if refusal is None and not patterns:
            return False
        path = safe_name(self.source.name, name.path, is_dir=is_dir, given=name.given)
        self.position.member = path
        if patterns and (is_dir or not matches(path, patterns)):
            self.guard.count(path)
            return True
        if refusal is None:
            return False
        self.guard.count(path)
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
