"""StreamingExtractor: safe, streaming reads of tar, tar.gz, tar.bz2, tar.xz and zip.

The door to reading archives: :meth:`~StreamingExtractor.get_archive_info` (headers
only), :meth:`~StreamingExtractor.extract_streaming` (members to disk, one at a time),
:meth:`~StreamingExtractor.extract_selective` (the same, for matching names) and
:meth:`~StreamingExtractor.open` (members with their data streams, for zipping without
disk); :meth:`~StreamingExtractor.open_reader` also opens a directory or an S3 prefix
(:mod:`handler.archive.tree_members`). Every member passes
:class:`~handler.archive.safety.MemberGuard` before its data is touched.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from handler.archive.reader import ArchiveReader
from handler.archive.safety import Limits
from handler.archive.to_disk import CleanupCallback, ExtractionSummary, write_members
from handler.archive.tree_members import TreeReader
from handler.locations.listing import TreeSource
from handler.locations.local import Source, open_source
from handler.members import ArchiveInfo
from handler.streams import CHUNK_SIZE

ArchiveLike = Source | str | os.PathLike[str]


class StreamingExtractor:
    """Reads archives member by member, checking each one, never holding a whole member."""

    def __init__(
        self,
        *,
        limits: Limits | None = None,
        chunk_size: int = CHUNK_SIZE,
        name_encoding: str | None = None,
    ) -> None:
        """``name_encoding``: the codec of names that are not UTF-8 (see
        :mod:`handler.archive.names`)."""
        self.limits = limits or Limits()
        self.chunk_size = chunk_size
        self.name_encoding = name_encoding

    def open(self, source: ArchiveLike) -> ArchiveReader:
        """A reader for one pass over ``source``; use it as a context manager."""
        return ArchiveReader(_as_source(source), self.limits, self.chunk_size, self.name_encoding)

    def open_reader(self, source: ArchiveLike) -> ArchiveReader | TreeReader:
        """A reader for one pass over ``source``: an archive (:meth:`open`), or a directory
        or an S3 prefix (:class:`~handler.archive.tree_members.TreeReader`); use it as a
        context manager."""
        opened = _as_source(source)
        if isinstance(opened, TreeSource):
            return TreeReader(opened, self.limits, self.chunk_size, self.name_encoding)
        return self.open(opened)

    def get_archive_info(
        self, source: ArchiveLike, patterns: Sequence[str] | None = None
    ) -> ArchiveInfo:
        """Members (those matching ``patterns``, if any) and totals from headers only: the
        zip central directory, or one streaming pass over the tar headers that writes
        nothing."""
        with self.open_reader(source) as reader:
            members = tuple(m.member for m in reader.members(patterns, with_data=False))
            assert reader.format is not None
            return ArchiveInfo(
                source=reader.source.name,
                format=reader.format,
                archive_size=reader.source.size(),
                members=members,
            )

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
        with self.open_reader(archive) as reader:
            return write_members(reader, root, cleanup_callback, patterns)

    def extract_selective(
        self,
        archive: ArchiveLike,
        patterns: Sequence[str],
        dest_dir: str | Path,
        cleanup_callback: CleanupCallback | None = None,
    ) -> ExtractionSummary:
        """Extract only the members matching ``patterns`` (see
        :func:`~handler.archive.reader.matches`): a thin wrapper over
        :meth:`extract_streaming`."""
        return self.extract_streaming(archive, dest_dir, cleanup_callback, patterns=patterns)


def _as_source(source: ArchiveLike) -> Source:
    if isinstance(source, str | os.PathLike):
        return open_source(os.fspath(source))
    return source
