"""Tree sources: a directory or an S3 prefix, listed, then read member by member.

A tree source is listed before any data is read, so the plan (:class:`Plan`: member and
file counts, total bytes, the longest name and path component) comes from the listing
alone, and every limit those figures can break is checked before any member is opened;
it is listed again, member by member, as it is read. Each
entry of that listing is pinned to the version listed (a local file's device and inode,
an S3 object's ETag): a member replaced after it was listed fails with a clear error
instead of mixing versions. The names in a listing are as found (relative,
``/``-separated, not yet checked); :mod:`handler.archive.tree_members` makes them safe
exactly as it does an archive's.

A tree source also has the two methods of :class:`handler.locations.local.Source`, which
refuse (it has no single stream), so it passes wherever a source's name and size are
all that is needed.
"""

from __future__ import annotations

import abc
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

from handler.errors import InputError
from handler.members import MemberKind, TreeFormat

__all__ = ["Listed", "Plan", "TreeSource"]


@dataclass(frozen=True, slots=True)
class Listed:
    """One entry of a listing: ``name`` relative to the tree's root (``/``-separated, as
    found), its kind, size in bytes (files only), permission bits, mtime (seconds since
    the epoch), a link's target, and ``pin``, what reading it is held to (an ETag, or
    ``"device:inode"``)."""

    name: str
    kind: MemberKind
    size: int = 0
    mode: int = 0o644
    mtime: float = 0.0
    link_target: str | None = None
    pin: str = ""


@dataclass(frozen=True, slots=True)
class Plan:
    """What one pass over a listing found, no data read: ``entries`` (every entry: files,
    directories, links), ``files`` and their ``size`` in bytes, and the names that are
    the longest as a whole (``longest``) and in one ``/``-separated part (``widest``),
    in the file system's bytes (``os.fsencode``) or UTF-8, so the name-length limits
    can be checked before any member is opened."""

    entries: int = 0
    files: int = 0
    size: int = 0
    longest: str = ""
    widest: str = ""


def _name_bytes(name: str) -> int:
    return len(name) if name.isascii() else len(name.encode("utf-8", "surrogateescape"))


def _widest_part(name: str) -> int:
    return max(map(_name_bytes, name.split("/")), default=0)


class TreeSource(abc.ABC):
    """A source made of many members, listed member by member (:meth:`entries`) and read
    one member at a time (:meth:`open_member`).

    Nothing of a listing is kept but its :class:`Plan`: the plan (:meth:`plan`) is one
    pass over the listing, and reading is another, which
    :class:`handler.archive.tree_members.TreeReader` checks against the plan, so the
    listing itself costs no memory per entry (what packaging keeps per member is
    listed in :mod:`handler.archive.tree_members`)."""

    format: TreeFormat
    _listed_plan: Plan | None = None

    @property
    @abc.abstractmethod
    def name(self) -> str:
        """The source as the user named it (a path, or ``s3://bucket/prefix/``)."""

    @abc.abstractmethod
    def entries(self) -> Iterator[Listed]:
        """One pass over the listing, in a stable order (each call lists again)."""

    @abc.abstractmethod
    def open_member(self, entry: Listed) -> BinaryIO:
        """A stream of ``entry``'s bytes, as listed (its pin checked)."""

    @abc.abstractmethod
    def holds(self, location: str) -> bool:
        """Whether ``location`` (a destination) is inside this tree: its ZIP would be
        listed with the members on the next run, or while it is written."""

    def plan(self) -> Plan:
        """One pass over the listing, no data read; the first figures are kept (they are
        the plan)."""
        if self._listed_plan is None:
            entries = files = size = longest = widest = 0
            longest_name = widest_name = ""
            for entry in self.entries():
                entries += 1
                if entry.kind is MemberKind.FILE:
                    files += 1
                    size += entry.size
                length = _name_bytes(entry.name)
                if length > longest:
                    longest, longest_name = length, entry.name
                if length > widest and (part := _widest_part(entry.name)) > widest:
                    widest, widest_name = part, entry.name
            self._listed_plan = Plan(entries, files, size, longest_name, widest_name)
        return self._listed_plan

    def totals(self) -> tuple[int, int]:
        """(files, bytes of all the files) of the :meth:`plan`."""
        plan = self.plan()
        return plan.files, plan.size

    def size(self) -> int:
        """Bytes of all the files listed (the plan's input size)."""
        return self.totals()[1]

    def file_count(self) -> int:
        """Files listed."""
        return self.totals()[0]

    def open_stream(self) -> BinaryIO:
        raise self._not_one_archive()

    def open_random_access(self) -> BinaryIO:
        raise self._not_one_archive()

    def _not_one_archive(self) -> InputError:
        return InputError(
            f"{self.name}: is a {self.format.value}, read member by member, not one archive"
        )
