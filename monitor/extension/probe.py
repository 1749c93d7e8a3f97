"""The extension's own samples: ``/tmp`` by statvfs and the runtime's RSS from ``/proc``.

Which process is the runtime: ``TMPWARDEN_RUNTIME_PID`` when set; else, scanning
``/proc``, the sibling of the extension (same parent: in Lambda the sandbox's init
starts the extensions and the runtime) with the largest resident memory; when there is
no sibling, the largest process that is neither the extension nor one of its ancestors.
The scan runs at an INVOKE when no runtime is known or the known one has gone (the
runtime is restarted after a crash), never per sample.

``/tmp`` is read as the in-process monitor reads it (:func:`monitor.sampler.disk_space`
semantics: used = (f_blocks - f_bfree) * f_frsize, available = f_bavail * f_frsize).
"""

from __future__ import annotations

import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from monitor.headroom import IntervalPlanner

PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
MAX_PROC_BYTES = 64 * 1024
"""The most of a ``/proc`` file read (``status`` and ``meminfo`` are a few KiB)."""


def read_proc(path: str | Path) -> bytes:
    """At most :data:`MAX_PROC_BYTES` of a ``/proc`` file; OSError when unreadable."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        return os.read(fd, MAX_PROC_BYTES)
    finally:
        os.close(fd)


class Sample(NamedTuple):
    """One sample: epoch seconds; bytes."""

    time: float
    tmp_used: int
    tmp_available: int
    memory_used: int


def _stat(pid: int, proc: str) -> tuple[int, int] | None:
    """(parent pid, resident bytes) of ``pid``, None when it is gone or unreadable."""
    try:
        folder = Path(proc, str(pid))
        fields = read_proc(folder / "stat").rsplit(b")", 1)[1].split()
        resident = int(read_proc(folder / "statm").split()[1]) * PAGE_SIZE
        return int(fields[1]), resident
    except (OSError, IndexError, ValueError):
        return None


def _pids(proc: str) -> Iterator[int]:
    try:
        names = [entry.name for entry in Path(proc).iterdir()]
    except OSError:
        return
    yield from (int(name) for name in names if name.isdigit())


def find_runtime_pid(own_pid: int | None = None, proc: str = "/proc") -> int | None:
    """The runtime's pid by the rule of the module docstring (no override here)."""
    own = os.getpid() if own_pid is None else own_pid
    ancestors = {own}
    current = own
    while current > 1:
        stat = _stat(current, proc)
        if stat is None:
            break
        current = stat[0]
        ancestors.add(current)
    parent = _stat(own, proc)
    parent_pid = parent[0] if parent else -1
    siblings: list[tuple[int, int]] = []
    others: list[tuple[int, int]] = []
    for pid in _pids(proc):
        if pid in ancestors:
            continue
        stat = _stat(pid, proc)
        if stat is None or stat[1] == 0:  # kernel threads have no resident set
            continue
        (siblings if stat[0] == parent_pid else others).append((stat[1], pid))
    chosen = max(siblings or others, default=None)
    return chosen[1] if chosen else None


def peak_rss_bytes() -> int:
    """This process's peak resident memory (VmHWM: unlike ``ru_maxrss``, it starts afresh
    at exec, so a large parent that started the extension does not count)."""
    try:
        for line in read_proc("/proc/self/status").decode(errors="replace").splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


class Sampler:
    """Samples ``/tmp`` and the runtime's RSS on a daemon thread into a ring of the last
    ``window`` seconds; :meth:`last` reads it. The interval is ``interval`` seconds, or,
    with a ``planner``, headroom-aware as the in-process monitor's
    (:class:`monitor.headroom.IntervalPlanner`): the minimum near a threshold or in a
    fast climb, up to its maximum far from every one."""

    def __init__(
        self,
        tmp_path: str,
        interval: float,
        window: float,
        clock: Callable[[], float] = time.time,
        planner: IntervalPlanner | None = None,
    ) -> None:
        self.tmp_path = tmp_path
        self.interval = interval
        self.window = window
        self._clock = clock
        self.planner = planner
        shortest = planner.minimum if planner is not None else interval
        self._ring: deque[Sample] = deque(maxlen=max(2, int(window / shortest) + 2))
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._statm = -1
        self.runtime_pid: int | None = None
        self.samples_taken = 0
        self._thread = threading.Thread(target=self._run, name="tmpwarden-sampler", daemon=True)

    def watch(self, pid: int | None) -> None:
        """Sample ``pid``'s RSS from now on (None: no runtime known; RSS reads 0)."""
        with self._lock:
            if pid == self.runtime_pid and self._statm >= 0:
                return
            if self._statm >= 0:
                os.close(self._statm)
                self._statm = -1
            self.runtime_pid = pid
            if pid is not None:
                try:
                    self._statm = os.open(f"/proc/{pid}/statm", os.O_RDONLY | os.O_CLOEXEC)
                except OSError:
                    self.runtime_pid = None

    def runtime_alive(self) -> bool:
        with self._lock:
            if self._statm < 0:
                return False
            try:
                return bool(os.pread(self._statm, 64, 0))
            except OSError:
                return False

    def sample(self) -> Sample:
        """Take one sample now (also from other threads: at an event)."""
        st = os.statvfs(self.tmp_path)
        used = (st.f_blocks - st.f_bfree) * st.f_frsize
        available = st.f_bavail * st.f_frsize
        with self._lock:
            rss = 0
            if self._statm >= 0:
                try:
                    rss = int(os.pread(self._statm, 64, 0).split(maxsplit=2)[1]) * PAGE_SIZE
                except (OSError, IndexError, ValueError):
                    rss = 0  # the runtime has gone: rescanned at the next INVOKE
            taken = Sample(self._clock(), used, available, rss)
            self._ring.append(taken)
            if self.planner is not None:
                self.planner.observe(time.monotonic(), used, used + available, rss)
            self.samples_taken += 1
        return taken

    def last(self, until: float | None = None) -> list[Sample]:
        """The samples of the ``window`` seconds up to ``until`` (default: the newest)."""
        with self._lock:
            samples = list(self._ring)
        if not samples:
            return []
        end = samples[-1].time if until is None else until
        slack = self.planner.maximum if self.planner is not None else self.interval
        return [s for s in samples if end - self.window <= s.time <= end + slack]

    def _run(self) -> None:
        planner = self.planner
        while not self._stop.wait(planner.next_interval() if planner else self.interval):
            try:
                self.sample()
            except OSError:
                continue  # /tmp unreadable for a moment: the next sample tries again

    def start(self) -> None:
        self.sample()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
