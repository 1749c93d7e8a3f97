"""What a run leaves on disk while it works (a partial file beside a local destination, a
scratch directory for the extract strategy), locked so a later run can tell a dead run's
leftovers from a live run's work.

A run killed mid-write (SIGKILL, an out-of-memory kill, a platform timeout) leaves its
partial file and scratch directory behind (issue 8 item 10). Several processes may work
side by side (Lambda Managed Instances run several over one ``/tmp``), so a leftover is
stale only when no process holds it: its maker holds an exclusive ``flock(2)`` on it from
before anyone could take it for stale until it is renamed into place or removed, and the
kernel drops the lock when the process dies, however it dies.

A leftover is removed only when tmpwarden can show it made it, never by a name alone (a
user's ``tmpwarden-extract-mine`` directory or ``.out.zip.0123abcd.tmpwarden-partial``
file is theirs):

* its name carries a token ``<8 hex random>-<8 hex check>`` whose check is a keyed
  BLAKE2s digest of the random part and the rest of the name (the destination's name, or
  the scratch prefix), so no ordinary or accidental name matches;
* a scratch directory also holds an empty marker file, created with it, whose name
  (:func:`marker_name`) carries a check value of the directory's name (the extracted
  members live in its ``tree`` subdirectory, so no member can be or replace the marker;
  empty, so a file size limit or a full disk cannot stop it being written);
* no process holds its lock; and
* it is not, and does not hold, a source of the current run (:func:`sources_in_use`).
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import re
import shutil
import stat
from collections.abc import Iterator
from contextvars import ContextVar
from pathlib import Path

try:  # CPython's BLAKE2, the one hashlib.blake2s is, without loading OpenSSL for hashlib
    from _blake2 import blake2s  # (10-17 ms of every cold start, 2026-11-30)
except ImportError:  # pragma: no cover - other interpreters
    from hashlib import blake2s

log = logging.getLogger("tmpwarden.handler")

PARTIAL_SUFFIX = ".tmpwarden-partial"
SCRATCH_MARKER = ".tmpwarden-scratch"
"""The start of the marker file's name inside a scratch directory (:func:`marker_name`)."""
SCRATCH_TREE = "tree"
"""The subdirectory of a scratch directory that members are extracted into."""
TOKEN_BYTES = 4
CREATE_ATTEMPTS = 8
_CHECK_KEY = b"tmpwarden leftover name v1"
_TOKEN = f"([0-9a-f]{{{2 * TOKEN_BYTES}}})-([0-9a-f]{{{2 * TOKEN_BYTES}}})"
_in_use: ContextVar[tuple[str, ...]] = ContextVar("tmpwarden_sources_in_use", default=())


def _check(context: str, random_part: str) -> str:
    """The check half of a token: keyed BLAKE2s (RFC 7693) of ``context`` and the random
    half, 4 bytes as hex."""
    digest = blake2s(
        os.fsencode(context) + b"\0" + random_part.encode("ascii"),
        key=_CHECK_KEY,
        digest_size=TOKEN_BYTES,
    )
    return digest.hexdigest()


def _new_token(context: str) -> str:
    random_part = os.urandom(TOKEN_BYTES).hex()
    return f"{random_part}-{_check(context, random_part)}"


def _is_token(match: re.Match[str] | None, context: str) -> bool:
    # A plain comparison: the key is no secret (it is above); the check only tells
    # tmpwarden's names from everyone else's.
    return match is not None and match.group(2) == _check(context, match.group(1))


def partial_name(final_path: Path) -> str:
    """A fresh hidden name beside ``final_path``:
    ``.<name>.<8 hex random>-<8 hex check>.tmpwarden-partial``."""
    return f".{final_path.name}.{_new_token(final_path.name)}{PARTIAL_SUFFIX}"


def is_partial_name(final_path: Path, name: str) -> bool:
    """Whether ``name`` is one :func:`partial_name` makes for ``final_path`` (its check
    value matches), not merely one that looks like it."""
    pattern = re.escape(f".{final_path.name}.") + _TOKEN + re.escape(PARTIAL_SUFFIX)
    return _is_token(re.fullmatch(pattern, name), final_path.name)


def scratch_name(prefix: str) -> str:
    """A fresh scratch directory name: ``<prefix><8 hex random>-<8 hex check>``."""
    return f"{prefix}{_new_token(prefix)}"


def is_scratch_name(prefix: str, name: str) -> bool:
    """Whether ``name`` is one :func:`scratch_name` makes for ``prefix``."""
    return _is_token(re.fullmatch(re.escape(prefix) + _TOKEN, name), prefix)


def marker_name(directory: Path) -> str:
    """The marker file's name inside the scratch directory ``directory``:
    ``.tmpwarden-scratch-<8 hex check of the directory's name>``."""
    return f"{SCRATCH_MARKER}-{_check(SCRATCH_MARKER, directory.name)}"


@contextlib.contextmanager
def sources_in_use(*locations: str) -> Iterator[None]:
    """While the block runs, no leftover removal touches a path that is, or holds, one of
    ``locations`` (local paths; ``s3://`` URLs are ignored): the current run's source is
    never a leftover, whatever its name."""
    local = tuple(loc for loc in locations if "://" not in loc)
    token = _in_use.set(_in_use.get() + local)
    try:
        yield
    finally:
        _in_use.reset(token)


def _holds_a_source(path: Path, fd: int, *, directory: bool) -> bool:
    """Whether ``path`` (open as ``fd``) is a source in use, or (a directory) holds one."""
    try:
        here = os.path.realpath(path)
        opened = os.fstat(fd)
    except (OSError, ValueError):
        return True  # cannot tell: keep it
    for location in _in_use.get():
        try:
            source = os.path.realpath(location)
            if source == here or (directory and source.startswith(here.rstrip(os.sep) + os.sep)):
                return True
            found = Path(location).stat()
        except (OSError, ValueError):
            continue
        if (found.st_dev, found.st_ino) == (opened.st_dev, opened.st_ino):
            return True
    return False


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
    """A new scratch directory ``<root>/<prefix><token>`` holding its marker file and an
    empty :attr:`tree` to extract into, exclusively locked by this process until the
    ``with`` block ends (remove it inside the block); raises OSError when it cannot be
    created."""

    def __init__(self, root: str | Path, prefix: str) -> None:
        for _ in range(CREATE_ATTEMPTS):
            path = Path(root) / scratch_name(prefix)
            try:
                path.mkdir(0o700)
            except FileExistsError:
                continue
            fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            if not _locked(fd, path):
                continue
            try:
                _write_marker(path, fd)
                (path / SCRATCH_TREE).mkdir(0o700)
            except BaseException:
                os.close(fd)
                shutil.rmtree(path, ignore_errors=True)
                raise
            self.path = path
            self.tree = path / SCRATCH_TREE
            self._fd = fd
            return
        raise OSError(f"{root}: could not create a scratch directory in it")

    def __enter__(self) -> LockedScratch:
        return self

    def __exit__(self, *_exc: object) -> None:
        os.close(self._fd)


def _write_marker(path: Path, dir_fd: int) -> None:
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    os.close(os.open(marker_name(path), flags, 0o600, dir_fd=dir_fd))


def _has_marker(path: Path, dir_fd: int) -> bool:
    """Whether the directory open as ``dir_fd`` holds the empty marker of ``path``."""
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    try:
        fd = os.open(marker_name(path), flags, dir_fd=dir_fd)
    except OSError:
        return False
    try:
        found = os.fstat(fd)
    finally:
        os.close(fd)
    return stat.S_ISREG(found.st_mode) and found.st_size == 0


def remove_stale_scratch(root: str | Path, prefix: str) -> list[Path]:
    """Remove the scratch directories under ``root`` that tmpwarden made for ``prefix``
    (token and marker) and no process holds (left by killed runs, with whatever they
    held); returns what was removed."""
    removed: list[Path] = []
    try:
        candidates = [p for p in Path(root).iterdir() if is_scratch_name(prefix, p.name)]
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
    """Remove the partial files tmpwarden made for ``final_path`` (their token checks)
    that no process holds (left by killed runs); a live run's partial, locked, is left
    alone. Returns what was removed."""
    removed: list[Path] = []
    try:
        candidates = [p for p in final_path.parent.iterdir() if is_partial_name(final_path, p.name)]
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
        if directory and not _has_marker(path, fd):
            return False
        if _holds_a_source(path, fd, directory=directory):
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
