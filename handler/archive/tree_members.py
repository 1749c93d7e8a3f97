"""TreeReader: the members of a tree source (a directory or an S3 prefix), one at a time.

The tree source's plan (:meth:`~handler.locations.listing.TreeSource.totals`, one pass
over its listing) is checked against the limits before any data is read; the members
come from a second pass, whose totals must match the plan's (SourceReadError
otherwise: the tree changed while it was packaged), and each member passes
the same name checks (:func:`~handler.archive.safety.safe_name`) and the same
:class:`~handler.archive.safety.MemberGuard` (links inside, no duplicates, member count)
as an archive's. One member's stream is open at a time; it must deliver exactly the
bytes listed (SourceReadError otherwise: the file changed while it was read).
"""

from __future__ import annotations

import io
from collections.abc import Iterator, Sequence
from types import TracebackType
from typing import BinaryIO, Self, cast

from handler.archive.reader import matches
from handler.archive.safety import Limits, MemberGuard, safe_name
from handler.errors import ExtractionError, SourceReadError, TmpwardenError, shown_name
from handler.locations.listing import Listed, TreeSource
from handler.members import Member, MemberKind, OpenMember, TreeFormat
from handler.streams import CHUNK_SIZE, ReadOnlyStream

__all__ = ["TreeReader"]


class TreeReader:
    """One pass over a tree source; a context manager that closes the member stream it
    has open. Offers what :class:`~handler.archive.reader.ArchiveReader`'s callers use:
    ``source``, ``format``, ``chunk_size``, :attr:`source_bytes_read`, :meth:`members`."""

    def __init__(self, source: TreeSource, limits: Limits, chunk_size: int = CHUNK_SIZE) -> None:
        self.source = source
        self.format: TreeFormat = source.format
        self.chunk_size = chunk_size
        self._limits = limits
        self._current: BinaryIO | None = None
        self._read = 0

    @property
    def source_bytes_read(self) -> int:
        """Bytes of members read so far (for progress)."""
        return self._read

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._close_current()

    def _close_current(self) -> None:
        current, self._current = self._current, None
        if current is not None:
            current.close()

    def members(
        self, patterns: Sequence[str] | None = None, *, with_data: bool = True
    ) -> Iterator[OpenMember]:
        """Yield each member (matching ``patterns``, if any) with a stream of its data
        (empty unless ``with_data`` and a file), in the listing's order."""
        name = self.source.name
        planned = self.source.totals()
        guard = MemberGuard(name, self._limits)
        guard.check_total(planned[1], None)
        selected: set[str] = set()
        directories: set[str] = set()
        files = size = 0
        for entry in self.source.entries():
            if entry.kind is MemberKind.FILE:
                files, size = files + 1, size + entry.size
            is_dir = entry.kind is MemberKind.DIRECTORY
            path = safe_name(name, entry.name, is_dir=is_dir)
            if patterns and (is_dir or not matches(path, patterns)):
                guard.count(path)
                continue
            member = _member(entry, path)
            if patterns and member.kind is MemberKind.HARDLINK:
                _check_link_selected(name, member, selected)
            member = guard.admit(member)
            selected.add(member.name)
            if not member.name or (is_dir and member.name in directories):
                continue
            if is_dir:
                directories.add(member.name)
            if not with_data or member.kind is not MemberKind.FILE:
                yield OpenMember(member, cast(BinaryIO, io.BytesIO()))
                continue
            self._close_current()
            self._current = self.source.open_member(entry)
            yield OpenMember(member, cast(BinaryIO, _Exact(self, self._current, entry)))
            self._close_current()
        if (files, size) != planned:
            raise SourceReadError(
                f"{name}: changed while it was packaged: the plan listed {planned[0]:,} files "
                f"of {planned[1]:,} bytes, the second listing {files:,} of {size:,}; run "
                "again once nothing writes to it"
            )

    def counted(self, size: int) -> None:
        self._read += size


def _member(entry: Listed, path: str) -> Member:
    return Member(
        name=path,
        kind=entry.kind,
        size=entry.size if entry.kind is MemberKind.FILE else 0,
        mode=entry.mode,
        mtime=entry.mtime,
        link_target=entry.link_target,
    )


def _check_link_selected(source: str, member: Member, selected: set[str]) -> None:
    """A selected hard link needs its target selected too (it is written as a link)."""
    target = member.link_target or ""
    if target not in selected:
        raise ExtractionError(
            source,
            member.name,
            f"it is a hard link to {shown_name(target)}, which the include patterns leave out",
            f"add a pattern that matches {shown_name(target)} as well",
        )


class _Exact(ReadOnlyStream):
    """A member's stream that must end exactly at the size listed."""

    def __init__(self, reader: TreeReader, raw: BinaryIO, entry: Listed) -> None:
        self._reader = reader
        self._raw = raw
        self._entry = entry
        self._left = entry.size

    def read(self, size: int = -1) -> bytes:
        if self._left == 0:
            if self._raw.read(1):
                raise self._changed("more bytes than")
            return b""
        want = self._left if size < 0 else min(size, self._left)
        try:
            data = self._raw.read(want)
        except TmpwardenError:
            raise
        except OSError as exc:
            raise SourceReadError(
                f"{self._reader.source.name}: reading {shown_name(self._entry.name)} failed "
                f"({exc}); try again"
            ) from exc
        if not data:
            raise self._changed("fewer bytes than")
        self._left -= len(data)
        self._reader.counted(len(data))
        return data

    def _changed(self, how: str) -> SourceReadError:
        return SourceReadError(
            f"{self._reader.source.name}: {shown_name(self._entry.name)} holds {how} the "
            f"{self._entry.size:,} listed (it changed while it was read); run again once "
            "nothing writes to the source"
        )
