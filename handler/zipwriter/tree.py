"""Walking a directory tree into a zipper (the zipper itself walks no directories).

:func:`add_tree` is what the extract strategy zips its scratch directory with;
:func:`create_zip_streaming` is the design's one-call form over it.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator, Mapping
from pathlib import Path

from handler.codec import DEFAULT_LEVEL, Compression
from handler.zipwriter.records import ZipEntry
from handler.zipwriter.zipper import IncrementalZipper, ProgressCallback, ZipCounts


def walk_tree(source_dir: str | Path) -> Iterator[tuple[Path, str, os.stat_result]]:
    """Each entry under ``source_dir`` as (path, relative POSIX name, ``lstat`` result), in
    a stable order: a directory (never the root itself), then its names sorted, then its
    subdirectories in sorted order, each the same way (``os.walk`` top-down).

    Symbolic links are listed, never followed (a link to a directory comes after the
    names beside it and is not entered). An unreadable directory raises its OSError.
    """
    root = Path(source_dir)

    def fail(error: OSError) -> None:
        raise error

    for directory, subdirs, names in os.walk(root, onerror=fail):
        subdirs.sort()
        base = Path(directory)
        if base != root:
            yield base, base.relative_to(root).as_posix(), base.lstat()
        linked_dirs = [d for d in subdirs if (base / d).is_symlink()]
        for name in sorted(names) + linked_dirs:
            path = base / name
            yield path, path.relative_to(root).as_posix(), path.lstat()


def add_tree(
    zipper: IncrementalZipper,
    source_dir: str | Path,
    *,
    hardlinks: Mapping[str, str] | None = None,
) -> ZipCounts:
    """Add a directory tree to ``zipper`` in :func:`walk_tree`'s order: relative names,
    permissions and mtimes kept, symbolic links kept as links (never followed).

    ``hardlinks`` (name -> target name) says which names are hard links, as the
    archive the tree came from does; without it the first name of an inode met in
    sorted order is the file and the others link to it.
    """
    files = directories = links = size = 0
    first_path: dict[tuple[int, int], str] = {}  # hard links: (device, inode) -> arcname
    for path, arcname, info in walk_tree(source_dir):
        key = (info.st_dev, info.st_ino)
        if stat.S_ISDIR(info.st_mode):
            zipper.add_directory(arcname, mode=stat.S_IMODE(info.st_mode), mtime=info.st_mtime)
            directories += 1
        elif stat.S_ISLNK(info.st_mode):
            zipper.add_symlink(arcname, str(path.readlink()))
            links += 1
        elif hardlinks is not None and arcname in hardlinks:
            zipper.add_hardlink(arcname, hardlinks[arcname])
            links += 1
        elif hardlinks is None and info.st_nlink > 1 and key in first_path:
            zipper.add_hardlink(arcname, first_path[key])
            links += 1
        else:
            first_path[key] = arcname
            size += zipper.add_file_streaming(path, arcname).uncompressed_size
            files += 1
    return ZipCounts(files, directories, links, size)


def create_zip_streaming(
    source_dir: str | Path,
    zip_path: str | Path,
    progress_callback: ProgressCallback | None = None,
    *,
    compression: Compression = "deflate",
    level: int = DEFAULT_LEVEL,
) -> list[ZipEntry]:
    """Zip a directory tree file by file into ``zip_path`` (see :func:`add_tree`); returns
    the entries written. ``progress_callback`` gets (bytes done, bytes total).

    Writes ``zip_path`` directly; use :mod:`handler.locations` for an atomic, verified
    destination.
    """
    root = Path(source_dir)
    total = sum(p.stat().st_size for p in root.rglob("*") if p.is_file() and not p.is_symlink())
    with Path(zip_path).open("wb") as out:
        zipper = IncrementalZipper(
            out,
            compression=compression,
            level=level,
            progress_callback=progress_callback,
            total_bytes=total,
        )
        add_tree(zipper, root)
        zipper.finalize()
    return list(zipper.entries)
