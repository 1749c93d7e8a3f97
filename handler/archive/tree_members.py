"""TreeReader: the members of a tree source (a directory or an S3 prefix), one at a time.

The tree source's plan (:meth:`~handler.locations.listing.TreeSource.plan`, one pass
over its listing) is checked against every limit it can break before any member is
opened: the member count, the total size, the longest name and the longest part of a
name. The members come from a second pass, whose figures must match the plan's
(SourceReadError otherwise: the tree changed while it was packaged). Each name is decided
from its bytes as a tar name is (:meth:`~handler.archive.names.MemberNames.tree_name`:
UTF-8, else ``--name-encoding``), then passes the same checks
(:func:`~handler.archive.safety.safe_name`) and the same
:class:`~handler.archive.safety.MemberGuard` (links inside, no duplicates, member count)
as an archive's, with advice worded for the source's kind. One member's stream is open
at a time; it must deliver exactly the bytes listed (SourceReadError otherwise: the file
changed while it was read).

Hard links (a directory's later names of one inode): every name is a file, so a hard link
is stored as a link only when the file it names was selected and written earlier, else
as a file of its own (``--include 'shards/*'`` selects ``shards/model.bin`` whatever
other name its inode has).

Memory grows with the member count, never with a member's size. Per member, with names
of about 40 bytes, packaging holds about 330 bytes: its name in the
:class:`~handler.archive.safety.MemberGuard` tree (about 100 bytes per distinct path
component), its central directory record (46 bytes plus the name, APPNOTE 4.3.12, packed
in :class:`handler.zipwriter.centraldir.CentralRecords`) and the ZIP writer's set of
names (about 125 bytes); a directory seen costs its name once more, a non-ASCII name its
normalized form (:class:`~handler.archive.names.MemberNames`). Measured peak RSS of
``python -m handler package DIR OUT.zip`` for trees of empty files (1,000 per directory,
CPython 3.11): 26.5 MiB for 10 files, 31 MiB for 10,000, 63 MiB for 100,000, so about
75 MiB more at the default member limit of 200,000 (``--max-members``). The listing itself
holds nothing per entry (:mod:`handler.locations.listing`).
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterator, Sequence
from dataclasses import replace
from types import TracebackType
from typing import BinaryIO, Self, cast

from handler.archive.advice import source_noun, trusted_advice
from handler.archive.names import MemberNames
from handler.archive.reader import matches
from handler.archive.safety import Limits, MemberGuard, safe_name
from handler.errors import ExtractionError, SourceReadError, TmpwardenError, shown_name
from handler.locations.listing import Listed, Plan, TreeSource
from handler.members import Member, MemberKind, OpenMember, TreeFormat
from handler.streams import CHUNK_SIZE, ReadOnlyStream

__all__ = ["TreeReader"]


class TreeReader:
    """One pass over a tree source; a context manager that closes the member stream it
    has open. Offers what :class:`~handler.archive.reader.ArchiveReader`'s callers use:
    ``source``, ``format``, ``chunk_size``, :attr:`source_bytes_read`, :meth:`members`."""

    def __init__(
        self,
        source: TreeSource,
        limits: Limits,
        chunk_size: int = CHUNK_SIZE,
        name_encoding: str | None = None,
    ) -> None:
        """``name_encoding``: the codec of a directory's names that are not UTF-8 (see
        :mod:`handler.archive.names`; an S3 key is always UTF-8)."""
        self.source = source
        self.format: TreeFormat = source.format
        self.chunk_size = chunk_size
        self._limits = limits
        self._name_encoding = name_encoding
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
        names = MemberNames(name, self._name_encoding, self.format)
        guard = MemberGuard(name, self._limits, self.format)
        planned = self.source.plan()
        self._check_plan(planned, names)
        directories: set[str] = set()
        entries = files = size = 0
        for entry in self.source.entries():
            entries += 1
            if entry.kind is MemberKind.FILE:
                files, size = files + 1, size + entry.size
            member = self._member(entry, names)
            is_dir = member.kind is MemberKind.DIRECTORY
            if patterns and (is_dir or not matches(member.name, patterns)):
                guard.count(member.name)
                continue
            if member.kind is MemberKind.HARDLINK and not guard.holds_file(
                member.link_target or ""
            ):  # every name is a file: its own copy unless its target is written first
                member = replace(member, kind=MemberKind.FILE, size=entry.size, link_target=None)
            member = guard.admit(member)
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
        if (entries, files, size) != (planned.entries, planned.files, planned.size):
            raise SourceReadError(
                f"{name}: changed while it was packaged: the plan listed {planned.files:,} "
                f"files of {planned.size:,} bytes, the second listing {files:,} of {size:,} "
                f"({planned.entries:,} entries, then {entries:,}); run again once nothing "
                "writes to it"
            )

    def _check_plan(self, plan: Plan, names: MemberNames) -> None:
        """Refuse, before any member is opened, what the plan already breaks: the member
        count, the total size, the name lengths (PATH_MAX, NAME_MAX)."""
        source, limit = self.source.name, self._limits.max_members
        if plan.entries > limit:
            raise ExtractionError(
                source,
                None,
                f"the {source_noun(self.format)} has more than {limit:,} members "
                f"({plan.entries:,} listed)",
                trusted_advice("--max-members", self.format),
            )
        MemberGuard(source, self._limits, self.format).check_total(plan.size, None)
        for listed in dict.fromkeys((plan.longest, plan.widest)):
            if listed:
                decided = names.tree_name(os.fsencode(listed))
                safe_name(source, decided.path, given=decided.given, kind=self.format)

    def _member(self, entry: Listed, names: MemberNames) -> Member:
        """The member ``entry`` is, its name (and a link's target) decided and checked."""
        decided = names.tree_name(os.fsencode(entry.name))
        is_dir = entry.kind is MemberKind.DIRECTORY
        path = safe_name(
            self.source.name, decided.path, is_dir=is_dir, given=decided.given, kind=self.format
        )
        target = entry.link_target
        if target is not None:
            target = names.tree_link_target(os.fsencode(target), decided.given)
            if entry.kind is MemberKind.HARDLINK:
                target = safe_name(self.source.name, target, kind=self.format)
        return Member(
            name=path,
            kind=entry.kind,
            size=entry.size if entry.kind is MemberKind.FILE else 0,
            mode=entry.mode,
            mtime=entry.mtime,
            link_target=target,
        )

    def counted(self, size: int) -> None:
        self._read += size


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
