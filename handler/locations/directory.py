"""A local directory as a source: listed with :func:`handler.zipwriter.tree.walk_tree`
(the walk the extract strategy zips its scratch directory with), then read file by file.

Symbolic links: none is ever followed. A link whose target stays inside the directory is
stored as a link (its target as written; :class:`handler.archive.safety.MemberGuard`
then checks it as it does an archive's: no link through a link); a link that is
absolute or leaves the directory is refused when listed, with the way round it (a
Hugging Face cache snapshot, whose files link to ``../../blobs``, is such a tree:
package a copy made with ``cp -rL``). The directory named as the source may itself be
a link.
Hard links: the first name of an inode (in the walk's order) is listed as the file, later
names as hard links to it, each with the file's size and pin (so
:class:`handler.archive.tree_members.TreeReader` can store a later name as a file of its
own when the first is not selected). FIFOs, sockets and devices are refused (a ZIP cannot
hold them, and reading a FIFO would block).

Names are listed as the file system gives them (``str`` with ``surrogateescape`` for
bytes that are not UTF-8); :class:`~handler.archive.tree_members.TreeReader` decides them
with ``--name-encoding``, as it does a tar member's.

Each file is opened without following a link (``O_NOFOLLOW``) and checked against the
device, inode and size listed: a file replaced or resized after the listing fails with
SourceReadError instead of packaging something other than what was planned. A file that
cannot be opened for any other reason (permission denied, an I/O error) is refused as
what it is, with ExtractionError naming it.

Memory: the walk holds one directory's names at a time, and the map from inode to first
name holds only inodes with more than one name.
"""

from __future__ import annotations

import errno
import io
import os
import posixpath
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, cast

from handler.errors import ExtractionError, SourceNotFoundError, SourceReadError
from handler.locations.listing import Listed, TreeSource
from handler.members import MemberKind, TreeFormat
from handler.zipwriter.tree import walk_tree

__all__ = ["LocalDirectorySource"]

UNREADABLE_ADVICE = "make every file and directory in it readable by this user"
LINK_ADVICE = (
    "package a directory that holds the link's target too, or copy the tree with its links "
    "resolved (cp -rL DIR COPY) and package the copy"
)
UNREADABLE_FILE_ADVICE = (
    "make the file readable by this user (chmod a+r FILE), or leave it out with --include"
)
OS_ERROR_ADVICE = "check the file system (the error is the operating system's) and run again"
SPECIAL_ADVICE = "move it out of the directory (a ZIP holds only files, directories and links)"


class LocalDirectorySource(TreeSource):
    """A directory on a local filesystem, listed by walking it (sorted at each level)."""

    format = TreeFormat.DIRECTORY

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        if not self.path.is_dir():
            what = "no such directory" if not self.path.exists() else "not a directory"
            raise SourceNotFoundError(
                f"{self.path}: {what}; check the source path (a path that ends in '/' names "
                "a directory of members)"
            )
        if not os.access(self.path, os.R_OK | os.X_OK):
            raise SourceNotFoundError(
                f"{self.path}: permission denied; make the directory readable by this user"
            )

    @property
    def name(self) -> str:
        return str(self.path)

    def holds(self, location: str) -> bool:
        if location.startswith("s3://"):
            return False
        inside = os.path.realpath(self.path).rstrip(os.sep) + os.sep
        return os.path.realpath(location).startswith(inside)

    def entries(self) -> Iterator[Listed]:
        first_name: dict[tuple[int, int], str] = {}  # (device, inode) -> the file's name
        walk = walk_tree(self.path)
        while True:
            try:
                path, name, info = next(walk)
            except StopIteration:
                return
            except OSError as exc:
                raise ExtractionError(
                    self.name,
                    _relative(self.path, exc.filename),
                    f"it cannot be read ({exc.strerror or exc})",
                    UNREADABLE_ADVICE,
                ) from exc
            yield self._entry(path, name, info, first_name)

    def _entry(
        self,
        path: Path,
        name: str,
        info: os.stat_result,
        first_name: dict[tuple[int, int], str],
    ) -> Listed:
        mode, mtime = stat.S_IMODE(info.st_mode), info.st_mtime
        if stat.S_ISDIR(info.st_mode):
            return Listed(name, MemberKind.DIRECTORY, 0, mode, mtime)
        if stat.S_ISLNK(info.st_mode):
            target = str(path.readlink())
            resolved = posixpath.normpath(posixpath.join(posixpath.dirname(name), target))
            if target.startswith("/") or resolved == ".." or resolved.startswith("../"):
                raise ExtractionError(
                    self.name,
                    name,
                    f"it is a symbolic link to {target!r}, outside the directory (links are "
                    "never followed)",
                    LINK_ADVICE,
                )
            return Listed(name, MemberKind.SYMLINK, 0, mode, mtime, target)
        if not stat.S_ISREG(info.st_mode):
            device = stat.S_ISBLK(info.st_mode) or stat.S_ISCHR(info.st_mode)
            what = "a device file" if device else "a FIFO or socket"
            raise ExtractionError(self.name, name, f"it is {what}", SPECIAL_ADVICE)
        pin = f"{info.st_dev}:{info.st_ino}"
        if info.st_nlink > 1:  # only inodes with several names are remembered
            key = (info.st_dev, info.st_ino)
            if key in first_name:
                first = first_name[key]
                return Listed(name, MemberKind.HARDLINK, info.st_size, mode, mtime, first, pin)
            first_name[key] = name
        return Listed(name, MemberKind.FILE, info.st_size, mode, mtime, pin=pin)

    def open_member(self, entry: Listed) -> BinaryIO:
        path = self.path / entry.name
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except FileNotFoundError as exc:
            raise self._changed(entry, "it is gone") from exc
        except OSError as exc:
            if exc.errno == errno.ELOOP:  # O_NOFOLLOW met a symbolic link at the name
                raise self._changed(entry, "a symbolic link is at its name now") from exc
            denied = exc.errno in (errno.EACCES, errno.EPERM)
            advice = UNREADABLE_FILE_ADVICE if denied else OS_ERROR_ADVICE
            raise ExtractionError(
                self.name, entry.name, f"it cannot be read ({exc.strerror or exc})", advice
            ) from exc
        try:
            info = os.fstat(fd)
            if f"{info.st_dev}:{info.st_ino}" != entry.pin or not stat.S_ISREG(info.st_mode):
                raise self._changed(entry, "another file is at its name now")
            if info.st_size != entry.size:
                raise self._changed(
                    entry, f"it held {entry.size:,} bytes when listed and {info.st_size:,} now"
                )
        except BaseException:
            os.close(fd)
            raise
        # unbuffered: the reader asks for whole chunks, and a buffer per file would be
        # allocated and freed once per member
        return cast(BinaryIO, io.FileIO(fd, "rb"))

    def _changed(self, entry: Listed, what: str) -> SourceReadError:
        return SourceReadError(
            f"{self.name}: {entry.name!r} changed after the directory was listed ({what}); "
            "run again once nothing writes to the directory"
        )


def _relative(root: Path, filename: object) -> str | None:
    """``filename`` (from an OSError) relative to ``root``, when it is under it."""
    if not isinstance(filename, str | os.PathLike):
        return None
    try:
        return Path(filename).relative_to(root).as_posix()
    except ValueError:
        return None
