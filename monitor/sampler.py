"""Cheap readings of ``/tmp`` (statvfs) and of the process's memory (RSS, limit).

One sample is a ``statvfs`` and a ``pread`` of a kept-open ``/proc/self/statm``:
about a microsecond each. Nothing here walks directories.
"""

from __future__ import annotations

import os
import resource
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

from monitor.errors import ConfigurationError

PROC_STATUS = Path("/proc/self/status")
PROC_STATM = "/proc/self/statm"
CGROUP_V2_LIMIT = Path("/sys/fs/cgroup/memory.max")
CGROUP_V1_LIMIT = Path("/sys/fs/cgroup/memory/memory.limit_in_bytes")
LAMBDA_MEMORY_ENV = "AWS_LAMBDA_FUNCTION_MEMORY_SIZE"
MEBIBYTE = 1024 * 1024


class Reading(NamedTuple):
    """Raw numbers of one sample, in bytes (a tuple: cheap to make on the hot path).

    ``total_space``, ``available_space`` and ``used_space`` are as :class:`DiskSpace`
    defines them: as this process sees the filesystem.
    """

    total_space: int
    available_space: int
    used_space: int
    memory_used: int


class DiskSpace(NamedTuple):
    """A filesystem's space as an unprivileged process sees it, in bytes; as df does.

    ``used`` is the blocks in use, ``(f_blocks - f_bfree) * f_frsize``;
    ``available`` what this process can still write, ``f_bavail * f_frsize``;
    ``total`` is ``used + available``, so ``used / total`` reaches 1.0 exactly when this
    process can write nothing more. Blocks reserved for root (ext4 keeps 5% by default:
    ``f_bfree - f_bavail``) are in none of them. See statvfs(3) and df's "Use%"
    (GNU coreutils: used / (used + available)).
    """

    total: int
    used: int
    available: int

    @property
    def used_fraction(self) -> float:
        """``used / total`` (1.0 when nothing is used and nothing is available)."""
        return self.used / self.total if self.total else 1.0


def disk_space(st: os.statvfs_result) -> DiskSpace:
    """:class:`DiskSpace` of one ``os.statvfs`` result: the one definition tmpwarden uses."""
    frsize = st.f_frsize
    used = (st.f_blocks - st.f_bfree) * frsize
    available = st.f_bavail * frsize
    return DiskSpace(used + available, used, available)


def peak_rss_bytes() -> int:
    """This process's peak resident memory since it started (VmHWM).

    Unlike ``ru_maxrss``, VmHWM starts afresh at exec, so a process started from a
    large parent does not report the parent's size.
    """
    try:
        with PROC_STATUS.open("rb") as status:
            for line in status:
                if line.startswith(b"VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def physical_memory_bytes() -> int:
    """The machine's RAM in bytes: pages times page size from ``sysconf`` (POSIX; on
    Linux the ``MemTotal`` of ``/proc/meminfo``, what psutil's ``virtual_memory().total``
    reads, without importing psutil: 15 ms of every cold start)."""
    return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))


def memory_limit_bytes(environ: dict[str, str] | None = None) -> int:
    """The memory the function may use: Lambda's configured size, else the cgroup
    limit, else the machine's RAM. An empty or blank ``AWS_LAMBDA_FUNCTION_MEMORY_SIZE``
    is an unset one."""
    env = os.environ if environ is None else environ
    configured = (env.get(LAMBDA_MEMORY_ENV) or "").strip()
    if configured:
        # ASCII digits only: int() would also take "-5", "1_000" and other scripts' digits
        megabytes = int(configured) if configured.isascii() and configured.isdigit() else 0
        if megabytes < 1:
            raise ConfigurationError(
                f"{LAMBDA_MEMORY_ENV}={configured!r} is not a positive whole number of "
                "megabytes; Lambda sets it to the function's memory: unset it elsewhere"
            )
        return megabytes * MEBIBYTE
    ram = physical_memory_bytes()
    for path in (CGROUP_V2_LIMIT, CGROUP_V1_LIMIT):
        try:
            text = path.read_text().strip()
        except OSError:
            continue
        if text.isdigit() and 0 < int(text) < ram:
            return int(text)
    return ram


_new_tuple = tuple.__new__


class SystemProbe:
    """Reads ``path``'s filesystem and this process's RSS; keep one and reuse it.

    Both files stay open for the probe's life: ``path`` as an ``O_PATH`` descriptor
    (``fstatvfs``: no path lookup per sample) and ``/proc/self/statm`` (``pread``: no
    open, no seek). :meth:`read` is the sampling thread's hot path, run cold after each
    sleep, where every Python operation costs several times what it costs in a loop:
    it is one flat function (:func:`disk_space`'s arithmetic inlined, the
    :class:`Reading` made without its Python-level ``__new__``).
    """

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        self._page_size = os.sysconf("SC_PAGE_SIZE")
        self._statm = os.open(PROC_STATM, os.O_RDONLY | os.O_CLOEXEC)
        self._dir = -1
        try:
            self._dir = os.open(self.path, os.O_PATH | os.O_CLOEXEC)
            self.read()  # fail now, with a clear error, not in the sampling thread
        except OSError as exc:
            self.close()
            raise ConfigurationError(
                f"cannot watch {self.path}: {exc.strerror}; give an existing directory"
            ) from exc

    def read(self) -> Reading:
        """One reading: ``fstatvfs`` of ``path`` and one ``pread`` of statm (RSS is its
        second field, in pages). The same figures as :func:`disk_space`."""
        st = os.statvfs(self._dir)
        frsize = st.f_frsize
        used = (st.f_blocks - st.f_bfree) * frsize
        available = st.f_bavail * frsize
        rss = int(os.pread(self._statm, 64, 0).split(None, 2)[1]) * self._page_size
        return _new_tuple(Reading, (used + available, available, used, rss))

    def __del__(self) -> None:
        self.close()

    def close(self) -> None:
        for name in ("_statm", "_dir"):
            fd = getattr(self, name, -1)
            if fd >= 0:
                os.close(fd)
                setattr(self, name, -1)


Probe = Callable[[], Reading]
"""Anything that returns a Reading: a SystemProbe's ``read``, or a fake in tests."""
