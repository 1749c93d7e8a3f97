"""One target: an archive in, a verified ZIP out, streamed member by member."""

from __future__ import annotations

import os
import posixpath
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from handler.codec import COMPRESSIONS, DEFAULT_LEVEL, Compression, check_level
from handler.errors import CompressionError, InputError
from handler.extract import StreamingExtractor
from handler.locations import Destination, Source, open_destination, open_source
from handler.members import MemberKind, OpenMember
from handler.safety import Limits
from handler.zipper import IncrementalZipper, iter_chunks
from monitor.sampler import peak_rss_bytes

SourceProgress = Callable[[int, int], None]
"""Called with (source bytes read, source size) as the work advances."""


@dataclass(frozen=True, slots=True)
class PackageOptions:
    """What to put in the ZIP and how to compress it."""

    include: tuple[str, ...] = ()
    compression: Compression = "deflate"
    level: int = DEFAULT_LEVEL
    limits: Limits = field(default_factory=Limits)

    def __post_init__(self) -> None:
        if self.compression not in COMPRESSIONS:
            raise CompressionError(
                f"compression {self.compression!r} is not supported; use 'deflate' or 'store'"
            )
        check_level(self.level)
        for pattern in self.include:
            if not pattern.strip():
                raise InputError("an --include pattern is empty; give a glob such as '*.json'")


@dataclass(frozen=True, slots=True)
class TranscodeCounts:
    """What went into the ZIP."""

    files: int = 0
    directories: int = 0
    links: int = 0
    uncompressed_bytes: int = 0


@dataclass(frozen=True, slots=True)
class PackageResult:
    """The outcome of one packaging, as the CLI's ``--json`` prints it."""

    status: str
    source: str
    destination: str
    format: str
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


def transcode(members: Iterable[OpenMember], zipper: IncrementalZipper) -> TranscodeCounts:
    """Stream each member from the archive reader into the zipper; nothing touches disk."""
    files = directories = links = size = 0
    for opened in members:
        member = opened.member
        if member.kind is MemberKind.FILE:
            entry = zipper.add_stream(
                member.name,
                iter_chunks(opened.stream),
                size_hint=member.size,
                mode=member.mode,
                mtime=member.mtime,
            )
            files += 1
            size += entry.uncompressed_size
        elif member.kind is MemberKind.DIRECTORY:
            zipper.add_directory(member.name, mode=member.mode, mtime=member.mtime)
            directories += 1
        else:
            target = member.link_target or ""
            if member.kind is MemberKind.HARDLINK:
                # ZIP has no hard links; keep it as a relative symbolic link to the file.
                target = posixpath.relpath(target, posixpath.dirname(member.name) or ".")
            zipper.add_symlink(member.name, target, mtime=member.mtime)
            links += 1
    return TranscodeCounts(files, directories, links, size)


def package(
    source: Source | str | os.PathLike[str],
    destination: Destination | str | os.PathLike[str],
    options: PackageOptions | None = None,
    *,
    progress: SourceProgress | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> PackageResult:
    """Turn the archive at ``source`` into a ZIP at ``destination`` by streaming.

    The destination is complete and verified when this returns, and absent when it raises.
    """
    opts = options or PackageOptions()
    started = clock()
    src = open_source(os.fspath(source)) if isinstance(source, str | os.PathLike) else source
    dest = (
        open_destination(os.fspath(destination))
        if isinstance(destination, str | os.PathLike)
        else destination
    )
    dest.check_writable()
    source_size = src.size()
    extractor = StreamingExtractor(limits=opts.limits)
    writer = dest.begin()
    try:
        with extractor.open(src) as reader:
            report = None
            if progress is not None:
                callback = progress

                def report(_done: int, _total: int) -> None:
                    callback(reader.source_bytes_read, source_size)

            zipper = IncrementalZipper(
                writer.sink,
                compression=opts.compression,
                level=opts.level,
                progress_callback=report,
            )
            counts = transcode(reader.members(opts.include or None), zipper)
            if opts.include and counts.files == 0:
                raise InputError(_no_match_message(src.name, opts.include))
            bytes_out = zipper.finalize()
            fmt = reader.format
        writer.commit(zipper.entries)
    except BaseException:
        writer.abort()
        raise
    if progress is not None:
        progress(source_size, source_size)
    return PackageResult(
        status="succeeded",
        source=src.name,
        destination=dest.name,
        format=str(fmt),
        files=counts.files,
        directories=counts.directories,
        links=counts.links,
        bytes_in=source_size,
        uncompressed_bytes=counts.uncompressed_bytes,
        bytes_out=bytes_out,
        duration_s=round(clock() - started, 3),
        peak_rss_bytes=peak_rss_bytes(),
    )


def _no_match_message(source: str, patterns: Sequence[str]) -> str:
    shown = ", ".join(repr(p) for p in patterns)
    return (
        f"{source}: no file member matches --include {shown}; a pattern without '/' "
        "matches base names (*.safetensors), one with '/' matches whole paths; "
        "run 'python -m handler inspect' to list the members"
    )
