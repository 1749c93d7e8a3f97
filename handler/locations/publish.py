"""How a local ZIP is put in place: which file it replaces, and publishing it without
replacing anything.

* :func:`write_target`: a local destination is written only as a regular file. One that
  exists as a directory, device, FIFO or socket is refused, never replaced (``package
  m.tgz /dev/null`` as root would otherwise replace the host's ``/dev/null``). A symbolic
  link to a regular file is written through, as its user expects: the ZIP replaces the
  link's target, atomically, from a partial file beside the target, and the link stays.
  A link to anything else, or to nothing (dangling), is refused.
* :func:`rename_noreplace`: ``if_exists="fail"`` publishes with ``link(2)``, which never
  replaces; on filesystems without hard links (vfat, exFAT, some FUSE mounts) with
  ``renameat2(RENAME_NOREPLACE)``; where neither exists, a DestinationError that says so.
"""

from __future__ import annotations

import ctypes
import errno
import functools
import os
import stat
from pathlib import Path
from typing import Any

from handler.errors import DestinationError, DestinationExistsError


def exists_message(path: Path) -> str:
    """The refusal of ``if_exists="fail"`` when ``path`` exists."""
    return (
        f"{path}: the file already exists and if_exists is 'fail' (--if-exists fail); it was "
        "left as it is; write to another path, or use if_exists 'overwrite' to replace it"
    )


def _kind(mode: int) -> str:
    """What a file of ``mode`` is, for messages: "a directory", "a FIFO (named pipe)"..."""
    kinds = (
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISFIFO, "a FIFO (named pipe)"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISLNK, "a symbolic link"),
    )
    return next((name for test, name in kinds if test(mode)), "not a regular file")


def write_target(path: Path) -> Path:
    """The file a ZIP written to ``path`` replaces: ``path`` when it is a regular file or
    absent, the resolved target when it is a symbolic link to a regular file; else
    DestinationError naming what is there (a directory, device, FIFO, socket, or a link to
    one of them or to nothing)."""
    advice = "give the path of a ZIP file (a new name, or an existing regular file)"
    try:
        found = os.lstat(path)
    except FileNotFoundError:
        return path
    except (OSError, ValueError) as exc:
        raise DestinationError(f"{path}: cannot be written ({_reason(exc)}); {advice}") from exc
    if stat.S_ISREG(found.st_mode):
        return path
    if stat.S_ISDIR(found.st_mode):
        raise DestinationError(f"{path}: is a directory; give the full path of the ZIP to write")
    if not stat.S_ISLNK(found.st_mode):
        raise DestinationError(
            f"{path}: is {_kind(found.st_mode)}, not a regular file; tmpwarden writes a ZIP "
            f"only as a regular file and never replaces anything else; {advice}"
        )
    target = Path(os.path.realpath(path))
    try:
        followed = path.stat()
    except FileNotFoundError:
        raise DestinationError(
            f"{path}: is a symbolic link to {target}, which does not exist (a dangling link); "
            f"create the target, remove the link, or {advice}"
        ) from None
    except OSError as exc:
        raise DestinationError(
            f"{path}: is a symbolic link that cannot be followed ({_reason(exc)}); {advice}"
        ) from exc
    if not stat.S_ISREG(followed.st_mode):
        what = _kind(followed.st_mode)
        raise DestinationError(
            f"{path}: is a symbolic link to {target}, {what}, not a regular file; {advice}"
        )
    return target


def _reason(exc: BaseException) -> str:
    return (exc.strerror if isinstance(exc, OSError) else None) or str(exc)


NO_HARD_LINKS = frozenset(
    {errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK, errno.ENOSYS}
)
"""``link(2)`` errors of filesystems without hard links (vfat and exFAT give EPERM, some
FUSE mounts ENOTSUP or ENOSYS; link(2) and its man page)."""
_AT_FDCWD = -100
_RENAME_NOREPLACE = 1
"""From ``<linux/fcntl.h>`` and ``<linux/fs.h>``; see rename(2), renameat2 since Linux 3.15
and glibc 2.28."""


@functools.cache
def _libc_renameat2() -> Any:
    """glibc's ``renameat2`` (a ctypes function), or None where the C library lacks it."""
    try:
        function = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):
        return None
    function.argtypes = (
        ctypes.c_int,
        ctypes.c_char_p,
        ctypes.c_int,
        ctypes.c_char_p,
        ctypes.c_uint,
    )
    function.restype = ctypes.c_int
    return function


def renameat2_noreplace(source: Path, target: Path) -> None:
    """``renameat2(source, target, RENAME_NOREPLACE)``: atomic, never replaces (OSError
    EEXIST when ``target`` exists); OSError ENOSYS where the C library lacks it, EINVAL
    where the filesystem does not support the flag."""
    function = _libc_renameat2()
    if function is None:
        raise OSError(errno.ENOSYS, os.strerror(errno.ENOSYS))
    result: int = function(
        _AT_FDCWD, os.fsencode(source), _AT_FDCWD, os.fsencode(target), _RENAME_NOREPLACE
    )
    if result != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code), str(target))


def rename_noreplace(partial: Path, final: Path, *, shown: Path) -> None:
    """Rename ``partial`` to ``final`` unless ``final`` exists, atomically, for a
    filesystem without hard links: DestinationExistsError when it exists; DestinationError
    with advice when the filesystem cannot do that either (the caller removes the
    partial)."""
    try:
        renameat2_noreplace(partial, final)
    except FileExistsError:
        raise DestinationExistsError(exists_message(shown)) from None
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EOPNOTSUPP):
            raise
        raise DestinationError(
            f"{shown}: this filesystem cannot publish a file without the risk of replacing "
            "one (it has neither hard links nor RENAME_NOREPLACE), so if_exists 'fail' "
            "(--if-exists fail) cannot be kept there; nothing was written; write to a "
            "filesystem such as ext4, xfs or tmpfs, or use if_exists 'overwrite'"
        ) from exc
