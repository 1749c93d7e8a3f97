"""What a run leaves on disk while it works (a partial file beside a local destination, a
scratch directory for the extract strategy), locked so a later run can tell a dead run's
leftovers from a live run's work.

A run killed mid-write (SIGKILL, an out-of-memory kill, a platform timeout) leaves its
partial file and scratch directory behind (issue 8 item 10). Several processes may work
side by side (Lambda Managed Instances run several over one ``/tmp``), so a leftover is
stale only when no process holds it: its maker holds an exclusive ``flock(2)`` on it from
before anyone could take it for stale until it is renamed into place or removed, and the
kernel drops the lock when the process dies, however it dies. The next run to the same
destination (or scratch root) removes the leftovers whose lock it can take, and never one
whose lock is held.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import re
import secrets
import shutil
import stat
import tempfile
from pathlib import Path

log = logging.getLogger("tmpwarden.handler")

PARTIAL_SUFFIX = ".tmpwarden-partial"
TOKEN_BYTES = 4
CREATE_ATTEMPTS = 8


def partial_name(final_path: Path) -> str:
    """A fresh hidden name beside ``final_path``: ``.<name>.<8 hex digits>.tmpwarden-partial``."""
    return f".{final_path.name}.{secrets.token_hex(TOKEN_BYTES)}{PARTIAL_SUFFIX}"


def _partial_pattern(final_path: Path) -> re.Pattern[str]:
    token = f"[0-9a-f]{{{2 * TOKEN_BYTES}}}"
    return re.compile(re.escape(f".{final_path.name}.") + token + re.escape(PARTIAL_SUFFIX))


def _locked(fd: int, path: Path) -> bool:
    """Lock a new leftover (``fd`` open on ``path``) for this process; False when another
    run removed it between its creation and the lock (then make a new one). Closes ``fd``
    unless it returns True."""
    try:
        # Blocks only while another run, taking the new leftover for stale, holds it for
        # the moment it needs to remove it.
        fcntl.flock(fd, fcntl.LOCK_EX)
        if _names_this_file(path, fd):
            return True
    except BaseException:
        os.close(fd)
        raise
    os.close(fd)
    return False


class LockedPartial:
    """A new, empty partial file beside ``final_path``, exclusively locked by this process
    until :meth:`release`; raises OSError when it cannot be created."""

    def __init__(self, final_path: Path) -> None:
        for _ in range(CREATE_ATTEMPTS):
            path = final_path.with_name(partial_name(final_path))
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
            if _locked(fd, path):
                self.path = path
                self._fd: int | None = fd
                return
        raise OSError(f"{final_path}: could not create a partial file beside it")

    def open_for_writing(self) -> int:
        """A new descriptor of the partial for writing; the lock lives until :meth:`release`
        whether or not this one is closed."""
        if self._fd is None:
            raise ValueError(f"{self.path}: the partial file was released")
        return os.dup(self._fd)

    def release(self) -> None:
        """Drop the lock (after the partial is renamed or removed); safe to call again."""
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)


class LockedScratch:
    """A new scratch directory ``<root>/<prefix><random>``, exclusively locked by this
    process until the ``with`` block ends (remove it inside the block)."""

    def __init__(self, root: str | Path, prefix: str) -> None:
        for _ in range(CREATE_ATTEMPTS):
            path = Path(tempfile.mkdtemp(prefix=prefix, dir=root))
            fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            if _locked(fd, path):
                self.path = path
                self._fd = fd
                return
        raise OSError(f"{root}: could not create a scratch directory in it")

    def __enter__(self) -> LockedScratch:
        return self

    def __exit__(self, *_exc: object) -> None:
        os.close(self._fd)


def remove_stale_scratch(root: str | Path, prefix: str) -> list[Path]:
    """Remove the scratch directories ``<root>/<prefix>*`` that no process holds (left by
    killed runs, with whatever they held); returns what was removed."""
    removed: list[Path] = []
    try:
        candidates = [p for p in Path(root).iterdir() if p.name.startswith(prefix)]
    except OSError:
        return removed
    for path in candidates:
        if _remove_if_unheld(path, directory=True):
            removed.append(path)
            log.info(
                "removed a stale scratch directory",
                extra={"event": "stale_scratch_removed", "path": str(path)},
            )
    return removed


def remove_stale_partials(final_path: Path) -> list[Path]:
    """Remove the partial files of ``final_path`` that no process holds (left by killed
    runs); a live run's partial, locked, is left alone. Returns what was removed."""
    pattern = _partial_pattern(final_path)
    removed: list[Path] = []
    try:
        candidates = [p for p in final_path.parent.iterdir() if pattern.fullmatch(p.name)]
    except OSError:
        return removed
    for path in candidates:
        if _remove_if_unheld(path):
            removed.append(path)
            log.info(
                "removed a stale partial file",
                extra={"event": "stale_partial_removed", "path": str(path)},
            )
    return removed


def _remove_if_unheld(path: Path, *, directory: bool = False) -> bool:
    flags = os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK
    try:
        fd = os.open(path, flags | (os.O_DIRECTORY if directory else 0))
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        kind = stat.S_ISDIR if directory else stat.S_ISREG
        if not (kind(os.fstat(fd).st_mode) and _names_this_file(path, fd)):
            return False
        if directory:
            shutil.rmtree(path)
        else:
            path.unlink()
    except OSError:  # held by a live run (EWOULDBLOCK), or gone, or not ours to remove
        return False
    finally:
        os.close(fd)
    return True


def _names_this_file(path: Path, fd: int) -> bool:
    """Whether ``path`` still names the file open as ``fd`` (no one removed or replaced it)."""
    with contextlib.suppress(OSError):
        by_name, by_fd = path.lstat(), os.fstat(fd)
        return (by_name.st_dev, by_name.st_ino) == (by_fd.st_dev, by_fd.st_ino)
    return False
