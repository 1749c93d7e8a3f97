"""The in-process monitor's phase and state, shared with the external extension by a file.

The in-process monitor (:class:`~monitor.sidecar.StorageMonitor`) writes a small JSON
document at each change of its account -- an invocation begins, a phase opens or closes,
a level is crossed, the invocation ends -- never per sample; the external extension
(``monitor.extension``) reads it on each event, so its incident record says which phase
and level the function was in when it died, even if the function was killed.

Where: ``<TMPWARDEN_PATH>/.tmpwarden/state-<pid>.json`` (default
``/tmp/.tmpwarden/state-<pid>.json``), one file per process (Lambda Managed Instances run
several Python processes per environment). Cost: one file of 160 to 240 bytes (one
block of ``/tmp``) per process -- measured by tests/unit/test_shared_state_safety.py with
a UUID request id, the largest pid and 512 GiB of ``/tmp``: 167 at an invocation's
start, 194 in a phase, 235 with both resources' levels -- and per change one ``write`` of
a temporary file and one ``rename`` (atomic: the reader sees the old document or the new
one, never half of one), tens of microseconds.

Safety (``/tmp`` is shared with whatever else runs as any user): the directory is created
with mode 0700 and used only when ``lstat`` shows a real directory of this process's
uid that no one else can write; otherwise sharing stops with one warning (the function
never fails for it). The temporary file has a random name and is created with
``O_CREAT | O_EXCL | O_NOFOLLOW``, so a planted link is never followed. The reader
(:func:`read_state_file`) opens with ``O_NOFOLLOW | O_NONBLOCK`` and reads only a
regular file of the expected uid, at most :data:`MAX_STATE_BYTES`, and ignores a bad
document with one log line.

When: on when ``TMPWARDEN_SHARED_STATE`` (:class:`monitor.config.ExtensionConfig`) is
``on``; with ``auto`` (the default) only in Lambda (``AWS_LAMBDA_RUNTIME_API`` set),
where an extension can read it; ``off`` never.
A write that fails (``/tmp`` full) is skipped: the monitor never fails the function.

Cleanup: a writer removes its own file (and the directory, when it is left empty) when it
is closed, garbage-collected or its process exits normally (``weakref.finalize``, which
``atexit`` runs; a forked child never removes its parent's file). A runtime killed
(out of memory, timeout, SIGKILL) cannot, so its file stays until someone who outlives it
removes it with :func:`remove_dead_states`: the extension after each event, once it has
written the incident record that reads the file; and each new writer at its first write,
for files it can tell no extension still needs (ended normally, or older than
:data:`STALE_SECONDS`). So ``/tmp`` holds at most one state file per live process, and
returns to its baseline when the processes are gone: the handler's promise that ``/tmp``
returns to its baseline covers its scratch files; ``.tmpwarden`` is the monitor's, the
one entry it adds while a process with a writer lives.

The setting is read by :class:`monitor.config.ExtensionConfig`. Besides the standard
library, imports only monitor.config, which the extension loads anyway.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import re
import stat
import time
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from monitor.config import ExtensionConfig, shared_state_mode

if TYPE_CHECKING:
    from monitor.invocation import InvocationRecorder

STATE_DIR_NAME = ".tmpwarden"
STATE_PREFIX = "state-"
STALE_SECONDS = 960.0
"""A dead process's state older than this (Lambda's longest timeout, 900 s, plus a
minute for the extension to report it) is removed by a new writer even if it did not end
normally: its invocation is over and its incident record written."""
MAX_STATE_BYTES = 64 * 1024
"""The largest state file read (a real one is a few hundred bytes): a larger one, or
anything that is not a regular file of the expected owner, is ignored with one log line."""
_STATE_NAME = re.compile(r"\.?state-(?P<pid>\d+)\.json(?:\.[0-9a-f]+)?(?:\.tmp)?")
log = logging.getLogger("tmpwarden.monitor")


def state_dir(tmp_path: str | Path) -> Path:
    """The monitor's own directory under the watched path: ``<tmp_path>/.tmpwarden``."""
    return Path(tmp_path) / STATE_DIR_NAME


@dataclass(frozen=True, slots=True)
class SharedState:
    """What one process's monitor last wrote. Times are epoch seconds, sizes bytes."""

    pid: int
    time: float
    request_id: str | None
    phase: str | None
    levels: dict[str, str]
    """resource (tmp, memory) -> its highest level crossed in the invocation."""
    peak_tmp_used: int
    peak_memory_used: int
    ended: bool
    """The invocation ended normally (the monitor wrote its invocation record)."""

    @property
    def worst_level(self) -> str | None:
        """The highest level of any resource, as ``resource:level``; None when none."""
        order = ("warning", "predicted_full", "critical")
        ranked = [(order.index(v), f"{k}:{v}") for k, v in self.levels.items() if v in order]
        return max(ranked)[1] if ranked else None


class SharedStateWriter:
    """Writes this process's :class:`SharedState` file; see the module docstring."""

    def __init__(self, directory: str | Path, pid: int | None = None) -> None:
        self.pid = os.getpid() if pid is None else pid
        self.directory = Path(directory)
        self.path = self.directory / f"{STATE_PREFIX}{self.pid}.json"
        self.failed = 0
        self.unsafe: str | None = None
        """Why the directory is not safe to write in (sharing stopped), None while it is."""
        self._swept = False
        self._finalizer = weakref.finalize(self, _remove_own, self.pid, self.path, self.directory)

    def close(self) -> None:
        """Remove this process's file (and the directory if empty); later writes recreate it."""
        self._finalizer()
        self._finalizer = weakref.finalize(self, _remove_own, self.pid, self.path, self.directory)

    @classmethod
    def from_environ(
        cls, tmp_path: str | Path, environ: Mapping[str, str] | None = None
    ) -> SharedStateWriter | None:
        """A writer under ``tmp_path`` when sharing is on (see the module docstring and
        :class:`monitor.config.ExtensionConfig`); ConfigurationError for a bad setting."""
        env = os.environ if environ is None else environ
        if not ExtensionConfig(shared_state=shared_state_mode(env)).shares_state(env):
            return None
        return cls(state_dir(tmp_path))

    def write(self, recorder: InvocationRecorder, *, ended: bool = False) -> None:
        """Replace the file with ``recorder``'s account (called under the monitor's lock)."""
        levels: dict[str, str] = {}
        for crossing in recorder.events:
            levels[crossing.resource.value] = crossing.level.value
        document = {
            "pid": self.pid,
            "time": round(time.time(), 3),
            "request_id": recorder.request_id,
            "phase": recorder.state.current_phase or recorder.last_phase,
            "levels": levels,
            "peak_tmp_used": recorder.peaks.tmp_used,
            "peak_memory_used": recorder.peaks.memory_used,
            "ended": ended,
        }
        if self.unsafe is not None:
            return
        try:
            folder = _open_directory(self.directory)
        except _Unsafe as exc:
            self.unsafe = str(exc)
            log.warning(
                "tmpwarden: not sharing state with the extension: %s; remove it or set "
                "TMPWARDEN_SHARED_STATE=off",
                self.unsafe,
            )
            return
        except OSError:
            self.failed += 1  # /tmp full or gone: the extension samples on its own
            return
        try:
            if not self._swept:  # once: the files of runtimes that died before this one
                self._swept = True
                remove_dead_states(self.directory, keep=(self.pid,), older_than=STALE_SECONDS)
            _write_new(folder, self.pid, json.dumps(document, separators=(",", ":")))
        except OSError:
            self.failed += 1
        finally:
            os.close(folder)


class _Unsafe(Exception):
    """The state directory is not this process's own (the message says why)."""


def _open_directory(directory: Path) -> int:
    """Create ``directory`` (mode 0700) if missing and open it (never through a link);
    _Unsafe when it is not a real directory of this uid that only it can write, OSError
    when it cannot be made (``/tmp`` full or gone)."""
    with contextlib.suppress(FileExistsError):
        directory.mkdir(mode=0o700)
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            raise _Unsafe(f"{directory} is not a directory (a link or a file)") from None
        raise
    found = os.fstat(fd)
    uid = os.getuid()
    problem = None
    if found.st_uid != uid:
        problem = f"{directory} belongs to uid {found.st_uid}, not to this process's {uid}"
    elif found.st_mode & 0o022:
        problem = f"{directory} is writable by others (mode {stat.S_IMODE(found.st_mode):o})"
    if problem is not None:
        os.close(fd)
        raise _Unsafe(problem)
    return fd


def _write_new(folder: int, pid: int, text: str) -> None:
    """Write ``text`` to a new file of a random name in the directory open as ``folder``
    (never an existing file or link: O_EXCL | O_NOFOLLOW) and rename it over
    ``state-<pid>.json`` (atomic)."""
    scratch = f".{STATE_PREFIX}{pid}.json.{os.urandom(8).hex()}.tmp"
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(scratch, flags, 0o600, dir_fd=folder)
    try:
        try:
            os.write(fd, text.encode())
        finally:
            os.close(fd)
        os.replace(scratch, f"{STATE_PREFIX}{pid}.json", src_dir_fd=folder, dst_dir_fd=folder)
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(scratch, dir_fd=folder)
        raise


def _remove_own(pid: int, path: Path, directory: Path) -> None:
    if os.getpid() != pid:
        return  # a forked child: the file is its parent's
    with contextlib.suppress(OSError):
        path.unlink(missing_ok=True)
    with contextlib.suppress(OSError):  # other processes' files remain, or it is gone
        directory.rmdir()


def process_exists(pid: int) -> bool:
    """Whether process ``pid`` exists (signal 0; another user's process counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # EPERM: it exists
    return True


def remove_dead_states(
    directory: str | Path,
    *,
    keep: tuple[int | None, ...] = (),
    older_than: float | None = None,
    now: float | None = None,
    exists: Callable[[int], bool] = process_exists,
) -> int:
    """Remove the state files (and half-written temporaries) of processes that no longer
    exist, except those of ``keep``; returns how many files were removed.

    ``older_than`` (seconds): keep a dead process's state unless it ended normally or was
    written more than this long before ``now`` (epoch s): an extension may still have to
    report it. None removes every dead process's state. Errors are skipped (another
    process may remove the same file first)."""
    folder = Path(directory)
    clock = time.time() if now is None else now
    try:
        names = [p for p in folder.iterdir() if _STATE_NAME.fullmatch(p.name)]
    except OSError:
        return 0
    removed = 0
    for path in names:
        match = _STATE_NAME.fullmatch(path.name)
        assert match is not None
        pid = int(match["pid"])
        if pid in keep or exists(pid):
            continue
        if older_than is not None and not path.name.startswith("."):
            state = read_state_file(path)
            if state is not None and not state.ended and clock - state.time <= older_than:
                continue
        try:
            path.unlink()
            removed += 1
        except OSError:
            continue
    return removed


class _Refused(ValueError):
    """A state file that is not what a writer leaves (the message says why)."""


def _refuse_constant(name: str) -> object:
    raise _Refused(f"it holds {name}, which JSON does not allow")


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _whole(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _Refused(f"a number is {type(value).__name__}")
    return int(value)  # OverflowError for a huge float, caught by _parse


def _parse(raw: bytes) -> SharedState:
    """The document, or _Refused naming what is wrong with it."""
    try:
        doc = json.loads(raw, parse_constant=_refuse_constant)
        if not isinstance(doc, dict):
            raise _Refused(f"it is a JSON {type(doc).__name__}, not an object")
        levels = doc.get("levels") or {}
        if not isinstance(levels, dict):
            raise _Refused("its levels are not an object")
        when = doc.get("time")
        if isinstance(when, bool) or not isinstance(when, int | float):
            raise _Refused("its time is not a number")
        return SharedState(
            pid=_whole(doc.get("pid")),
            time=float(when),
            request_id=_text(doc.get("request_id")),
            phase=_text(doc.get("phase")),
            levels={str(k): str(v) for k, v in levels.items()},
            peak_tmp_used=_whole(doc.get("peak_tmp_used") or 0),
            peak_memory_used=_whole(doc.get("peak_memory_used") or 0),
            ended=doc.get("ended") is True,
        )
    except _Refused:
        raise
    except RecursionError:
        raise _Refused("it is nested too deeply") from None
    except (ValueError, OverflowError, TypeError) as exc:
        raise _Refused(f"it is not a state document ({type(exc).__name__})") from None


def read_state_file(path: str | Path, owner: int | None = None) -> SharedState | None:
    """One state file, or None when it is missing (no log) or not what a writer of uid
    ``owner`` (default: this process's) leaves: not a regular file (a link, a FIFO, a
    device), another owner's, over :data:`MAX_STATE_BYTES`, not a state document (bad
    JSON, Infinity/NaN, nested too deeply, wrong types) -- then one log line names it.
    Never blocks (O_NONBLOCK) and never follows a link (O_NOFOLLOW)."""
    uid = os.getuid() if owner is None else owner
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as exc:  # ELOOP: a link
        log.warning("tmpwarden: ignored the state file %s: %s", path, exc.strerror or exc)
        return None
    try:
        found = os.fstat(fd)
        if not stat.S_ISREG(found.st_mode):
            raise _Refused("it is not a regular file")
        if found.st_uid != uid:
            raise _Refused(f"it belongs to uid {found.st_uid}, not {uid}")
        raw = os.read(fd, MAX_STATE_BYTES + 1)
        if len(raw) > MAX_STATE_BYTES:
            raise _Refused(f"it is over {MAX_STATE_BYTES} bytes")
        return _parse(raw)
    except _Refused as exc:
        log.warning("tmpwarden: ignored the state file %s: %s", path, exc)
        return None
    except OSError:
        return None  # removed or unreadable while read: no state
    finally:
        os.close(fd)


def read_shared_state(directory: str | Path, pid: int | None = None) -> SharedState | None:
    """The state of process ``pid`` if it wrote one, else the most recent of any process;
    None when there is none or it cannot be read (a missing or torn file is no error;
    see :func:`read_state_file` for what is ignored)."""
    folder = Path(directory)
    own = f"{STATE_PREFIX}{pid}.json"
    if pid is not None:
        state = read_state_file(folder / own)
        if state is not None:
            return state
    newest: SharedState | None = None
    try:
        candidates = [
            p for p in folder.iterdir() if p.name.startswith(STATE_PREFIX) and p.name != own
        ]
    except OSError:
        return None
    for path in candidates:
        state = read_state_file(path)
        if state is not None and (newest is None or state.time > newest.time):
            newest = state
    return newest
