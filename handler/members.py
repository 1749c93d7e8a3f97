"""What the engine knows of an archive member and of a whole archive (value objects)."""

from __future__ import annotations

import enum
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import BinaryIO, Protocol


class MemberKind(enum.StrEnum):
    """The kinds of archive member the engine handles."""

    FILE = "file"
    DIRECTORY = "directory"
    SYMLINK = "symlink"
    HARDLINK = "hardlink"


class ArchiveFormat(enum.StrEnum):
    """Archive formats, detected by content."""

    TAR = "tar"
    TAR_GZ = "tar.gz"
    TAR_BZ2 = "tar.bz2"
    TAR_XZ = "tar.xz"
    ZIP = "zip"


class TreeFormat(enum.StrEnum):
    """Sources that are a tree of members rather than one archive, listed then read
    member by member (:mod:`handler.archive.tree_members`)."""

    DIRECTORY = "directory"
    S3_PREFIX = "s3-prefix"


@dataclass(frozen=True, slots=True)
class Member:
    """One archive member, with its name made safe (relative, POSIX, no ``..``)."""

    name: str
    kind: MemberKind
    size: int
    mode: int = 0o644
    mtime: float = 0.0
    link_target: str | None = None
    compressed_size: int | None = None


class RawData(Protocol):
    """A member's data as its archive compressed it (by ZIP ``method``), verified by the
    end of iteration against ``crc32`` and ``uncompressed_size``."""

    method: int

    def __iter__(self) -> Iterator[bytes]: ...

    @property
    def crc32(self) -> int: ...

    @property
    def uncompressed_size(self) -> int: ...

    def inflated_start(self, size: int) -> tuple[bytes, int] | None:
        """The first ``size`` bytes of the data inflated and the compressed bytes they
        took, or None when they cannot be inflated."""
        ...


@dataclass(frozen=True, slots=True)
class OpenMember:
    """A member and a stream of its data; read it (or ``raw``) before asking for the next
    member."""

    member: Member
    stream: BinaryIO
    raw: RawData | None = None
    """The data still compressed, when the archive can give it (a ZIP's deflated member):
    read either this or ``stream``, not both."""


@dataclass(frozen=True, slots=True)
class ArchiveInfo:
    """An archive's members and totals, read from headers only."""

    source: str
    format: ArchiveFormat | TreeFormat
    archive_size: int
    members: tuple[Member, ...] = field(repr=False)

    @property
    def total_size(self) -> int:
        """Uncompressed bytes of all file members."""
        return sum(m.size for m in self.members if m.kind is MemberKind.FILE)

    @property
    def file_count(self) -> int:
        return sum(1 for m in self.members if m.kind is MemberKind.FILE)

    @property
    def directory_count(self) -> int:
        return sum(1 for m in self.members if m.kind is MemberKind.DIRECTORY)
