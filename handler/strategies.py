"""The two ways one target is packaged.

* ``stream``: archive member by member into the ZIP; nothing touches ``/tmp``.
* ``extract``: extract to a scratch directory, then zip it (the legacy path, for
  callers that need files on disk); the scratch directory is always removed.

Both write the destination through a writer that is committed (verified) on success
and aborted on failure, and report their work as monitor phases.
"""

from __future__ import annotations

import contextlib
import functools
import stat
import time
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from handler.archive import StreamingExtractor
from handler.archive.names import check_name_encoding
from handler.archive.safety import Limits
from handler.codec import Compression, check_compression, check_level
from handler.errors import CompressionError, InputError
from handler.locations.leftovers import LockedScratch, remove_stale_scratch, sources_in_use
from handler.locations.listing import TreeSource
from handler.locations.local import Destination, Source, is_s3
from handler.locations.throughput import UploadPlan
from handler.members import Member, MemberKind, OpenMember, RawData
from handler.storage import CleanupContext, StorageManager
from handler.zipwriter.method import copies_raw, resolve_level
from handler.zipwriter.pipeline import local_pipeline, release_free_memory
from handler.zipwriter.tree import add_tree
from handler.zipwriter.zipper import IncrementalZipper, ZipCounts, iter_chunks
from monitor.errors import shown, shown_repr
from monitor.sampler import peak_rss_bytes

SCRATCH_PREFIX = "tmpwarden-extract-"
SourceProgress = Callable[[int, int], None]
"""Called with (source bytes read, source size) as the work advances."""


class PhaseReporter(Protocol):
    """Marks phases of work and counts files done (the handler reports to its monitor;
    :class:`NoPhases` does nothing)."""

    def phase(self, name: str) -> AbstractContextManager[Any]: ...

    def file_done(self) -> None: ...


class NoPhases:
    def phase(self, name: str) -> AbstractContextManager[Any]:
        return contextlib.nullcontext()

    def file_done(self) -> None:
        pass


@dataclass(frozen=True, slots=True)
class PackageOptions:
    """What to put in the ZIP and how to compress it."""

    include: tuple[str, ...] = ()
    compression: Compression = "auto"
    level: int | None = None
    """The deflate level 0-9; None: chosen from the destination
    (:func:`handler.zipwriter.method.resolve_level`)."""
    limits: Limits = field(default_factory=Limits)
    name_encoding: str | None = None
    """The codec of member names that are not UTF-8 (None: refuse them); see
    handler.archive.names."""

    def __post_init__(self) -> None:
        check_compression(self.compression)
        if self.level is not None:
            check_level(self.level)
        check_name_encoding(self.name_encoding)
        for pattern in self.include:
            if not pattern.strip():
                raise InputError("an --include pattern is empty; give a glob such as '*.json'")

    def extractor(self) -> StreamingExtractor:
        """A reader of archives with these options' limits and name encoding."""
        return StreamingExtractor(limits=self.limits, name_encoding=self.name_encoding)


@dataclass(frozen=True, slots=True)
class PackageResult:
    """The outcome of one packaging, as the CLI's ``--json`` prints it."""

    status: str
    source: str
    destination: str
    format: str
    strategy: str
    files: int
    directories: int
    links: int
    bytes_in: int
    uncompressed_bytes: int
    bytes_out: int
    duration_s: float
    peak_rss_bytes: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def add_member(
    zipper: IncrementalZipper, opened: OpenMember, copies: Callable[[RawData], bool] | None = None
) -> int:
    """Stream one archive member into the zipper; returns its uncompressed bytes. A
    member whose compressed data the archive gives (``opened.raw``) by a method
    ``copies`` accepts is copied as it is (see :func:`handler.zipwriter.method.copies_raw`)."""
    member = opened.member
    raw = opened.raw
    if member.kind is MemberKind.FILE and raw is not None and copies and copies(raw):
        entry = zipper.add_precompressed(
            member.name,
            raw,
            size_hint=member.size,
            mode=stat.S_IFREG | member.mode,
            mtime=member.mtime,
        )
        return entry.uncompressed_size
    if member.kind is MemberKind.FILE:
        entry = zipper.add_stream(
            member.name,
            iter_chunks(opened.stream),
            size_hint=member.size,
            mode=member.mode,
            mtime=member.mtime,
        )
        return entry.uncompressed_size
    if member.kind is MemberKind.DIRECTORY:
        zipper.add_directory(member.name, mode=member.mode, mtime=member.mtime)
        return 0
    if member.kind is MemberKind.HARDLINK:
        zipper.add_hardlink(member.name, member.link_target or "", mtime=member.mtime)
    else:
        zipper.add_symlink(member.name, member.link_target or "", mtime=member.mtime)
    return 0


def transcode(
    members: Iterable[OpenMember],
    zipper: IncrementalZipper,
    file_done: Callable[[], None] | None = None,
    copies: Callable[[RawData], bool] | None = None,
) -> ZipCounts:
    """Stream each member from the archive reader into the zipper; nothing touches disk.
    ``file_done`` is called after each file member; ``copies`` says which compression
    methods are copied as they are (see :func:`add_member`)."""
    files = directories = links = size = 0
    for opened in members:
        size += add_member(zipper, opened, copies)
        kind = opened.member.kind
        if kind is MemberKind.FILE and file_done is not None:
            file_done()
        files += kind is MemberKind.FILE
        directories += kind is MemberKind.DIRECTORY
        links += kind in (MemberKind.SYMLINK, MemberKind.HARDLINK)
    return ZipCounts(files, directories, links, size)


def no_match_message(source: str, patterns: Iterable[str]) -> str:
    listed = shown(", ".join(shown_repr(p) for p in patterns))
    return (
        f"{shown(source)}: no file member matches --include {listed}; a pattern without '/' "
        "matches base names (*.safetensors), one with '/' matches whole paths; "
        "run 'python -m handler inspect' to list the members"
    )


def check_apart(src: Source, dest: Destination) -> None:
    """Refuse a destination inside a directory or prefix source (InputError): the ZIP
    would be listed as a member while it is written, or on the next run."""
    if isinstance(src, TreeSource) and src.holds(dest.name):
        raise InputError(
            f"{dest.name}: is inside the source {src.name}, so the ZIP would be packaged "
            "into itself; write it outside the source"
        )


def _network(dest: Destination) -> float | None:
    """MB/s the network lets through to ``dest`` (the target throughput, an S3
    destination), or None for a local one."""
    return UploadPlan.from_env().target_mb_s if is_s3(dest.name) else None


def write_zip(
    dest: Destination,
    opts: PackageOptions,
    reporter: PhaseReporter,
    fill: Callable[[IncrementalZipper], ZipCounts],
    *,
    progress_callback: Callable[[int, int], None] | None = None,
) -> tuple[ZipCounts, int]:
    """Write a ZIP that ``fill`` puts the members in: phase ``compress``, then ``upload``
    (commit and verify). The destination is aborted on any failure; returns the counts and
    the ZIP's size. A local file is written through :func:`local_pipeline` (deflate and
    writes on their own threads, joined before the commit or the abort)."""
    writer = dest.begin()
    try:
        with reporter.phase("compress"), local_pipeline(writer.sink) as (sink, factory):
            zipper = IncrementalZipper(
                sink,
                compression=opts.compression,
                level=resolve_level(opts.compression, opts.level, network_mb_s=_network(dest)),
                compressor_factory=factory,
                progress_callback=progress_callback,
            )
            counts = fill(zipper)
            bytes_out = zipper.finalize()
        with reporter.phase("upload"):
            writer.commit(zipper.entries)
    except BaseException:
        writer.abort()
        raise
    return counts, bytes_out


def run_stream(
    src: Source,
    dest: Destination,
    opts: PackageOptions,
    *,
    phases: PhaseReporter | None = None,
    progress: SourceProgress | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> PackageResult:
    """Archive to ZIP member by member. The destination is complete and verified when this
    returns, and absent when it raises."""
    reporter = phases or NoPhases()
    started = clock()
    check_apart(src, dest)
    source_size = src.size()
    with sources_in_use(src.name), opts.extractor().open_reader(src) as reader:
        report = None
        if progress is not None:
            callback = progress

            def report(_done: int, _total: int) -> None:
                callback(reader.source_bytes_read, source_size)

        def fill(zipper: IncrementalZipper) -> ZipCounts:
            counts = transcode(
                reader.members(opts.include or None),
                zipper,
                reporter.file_done,
                functools.partial(copies_raw, opts.compression, opts.level),
            )
            if opts.include and counts.files == 0:
                raise InputError(no_match_message(src.name, opts.include))
            return counts

        counts, bytes_out = write_zip(dest, opts, reporter, fill, progress_callback=report)
        fmt = str(reader.format)
    release_free_memory()  # what the reader's and the pipeline's threads freed
    if progress is not None:
        progress(source_size, source_size)
    return _result(src, dest, fmt, "stream", counts, source_size, bytes_out, clock() - started)


def run_extract(
    src: Source,
    dest: Destination,
    opts: PackageOptions,
    *,
    scratch_root: str | Path,
    storage: StorageManager,
    critical: float,
    phases: PhaseReporter | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> PackageResult:
    """Extract every selected member under a scratch directory, then zip the directory.

    Stops with InsufficientStorageError before ``/tmp`` reaches ``critical`` (a fraction);
    the scratch directory is removed whatever happens.
    """
    reporter = phases or NoPhases()
    started = clock()
    check_apart(src, dest)
    dest.check_writable()
    source_size = src.size()
    extractor = opts.extractor()
    with (
        sources_in_use(src.name),
        LockedScratch(scratch_root, SCRATCH_PREFIX) as locked,
        CleanupContext() as cleanup,
    ):
        # Not registered with the monitor's critical cleanup: removing it while it is
        # being zipped would lose members; it goes when this block ends, whatever happens.
        cleanup.register_cleanup(locked.path)
        remove_stale_scratch(scratch_root, SCRATCH_PREFIX)  # what killed runs left behind
        scratch = locked.tree  # beside the marker that shows tmpwarden made the directory

        hardlinks: dict[str, str] = {}  # the archive says which name is the link

        def check_space(_path: Path, member: Member) -> None:
            if member.kind is MemberKind.FILE:
                reporter.file_done()
            if member.kind is MemberKind.HARDLINK:
                hardlinks[member.name] = member.link_target or ""
            storage.monitor_usage(critical)

        with reporter.phase("extract"):
            summary = extractor.extract_streaming(
                src, scratch, check_space, patterns=opts.include or None
            )
        if opts.include and summary.files == 0:
            raise InputError(no_match_message(src.name, opts.include))

        def fill(zipper: IncrementalZipper) -> ZipCounts:
            counts = add_tree(zipper, scratch, hardlinks=hardlinks)
            if (counts.files, counts.links) != (summary.files, summary.links):
                raise CompressionError(
                    f"{scratch}: {counts.files} files and {counts.links} links were zipped "
                    f"but {summary.files} and {summary.links} were extracted; something "
                    "removed or added files in the scratch directory"
                )
            return counts

        counts, bytes_out = write_zip(dest, opts, reporter, fill)
        with reporter.phase("cleanup"):
            storage.cleanup_directory(scratch, remove_root=True)
    return _result(
        src, dest, summary.format, "extract", counts, source_size, bytes_out, clock() - started
    )


def _result(
    src: Source,
    dest: Destination,
    fmt: str,
    strategy: str,
    counts: ZipCounts,
    bytes_in: int,
    bytes_out: int,
    duration: float,
) -> PackageResult:
    return PackageResult(
        status="succeeded",
        source=src.name,
        destination=dest.name,
        format=fmt,
        strategy=strategy,
        files=counts.files,
        directories=counts.directories,
        links=counts.links,
        bytes_in=bytes_in,
        uncompressed_bytes=counts.uncompressed_bytes,
        bytes_out=bytes_out,
        duration_s=round(duration, 3),
        peak_rss_bytes=peak_rss_bytes(),
    )
