"""Walking a directory tree into a zipper (the zipper itself walks no directories).

:func:`add_tree` is what the extract strategy zips its scratch directory with;
:func:`create_zip_streaming` is the design's one-call form over it.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping
from pathlib import Path

from handler.codec import DEFAULT_LEVEL, Compression
from handler.zipwriter.records import ZipEntry
from handler.zipwriter.zipper import IncrementalZipper, ProgressCallback, ZipCounts


def add_tree(
    zipper: IncrementalZipper,
    source_dir: str | Path,
    *,
    hardlinks: Mapping[str, str] | None = None,
) -> ZipCounts:
    """Add a directory tree to ``zipper``: sorted, relative names, permissions and mtimes
    kept, symbolic links kept as links (never followed).

    ``hardlinks`` (name -> target name) says which names are hard links, as the
    archive the tree came from does; without it the first name of an inode met in
    sorted order is the file and the others link to it.
    """
    root = Path(source_dir)
    files = directories = links = size = 0
    first_path: dict[tuple[int, int], str] = {}  # hard links: (device, inode) -> arcname

    def fail(error: OSError) -> None:
        raise error

    for directory, subdirs, names in os.walk(root, onerror=fail):
        subdirs.sort()
        base = Path(directory)
        if base != root:
            info = base.stat()
            zipper.add_directory(
                base.relative_to(root).as_posix(),
                mode=stat.S_IMODE(info.st_mode),
                mtime=info.st_mtime,
            )
            directories += 1
        linked_dirs = [d for d in subdirs if (base / d).is_symlink()]
        for name in sorted(names) + linked_dirs:
            path = base / name
            arcname = path.relative_to(root).as_posix()
            info = path.lstat()
            key = (info.st_dev, info.st_ino)
            if path.is_symlink():
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
