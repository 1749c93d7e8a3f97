"""The default critical-``/tmp`` action: remove the registered scratch paths, on a shared
``/tmp`` only in the processes whose requests hold the space.

On Lambda one process has ``/tmp`` to itself: a critical crossing is its request's doing,
and the action removes every path registered with
:meth:`~monitor.sidecar.StorageMonitor.register_cleanup`, as it always has.

On a Lambda Managed Instance each concurrent request runs in a process of its own with a
monitor of its own, and all of them watch the one shared ``/tmp``
(:mod:`monitor.environment`): a crossing caused by one request fires in every process.
Removing every process's scratch would destroy the work in progress of requests that did
not fill ``/tmp`` (and free little: the filler's files stay). So the action first measures
what this process's request holds on the filesystem,
:func:`~monitor.attribution.held_bytes` of its registered paths and open files (its
attributed bytes), and removes its paths only when that is a meaningful share of the space
in use at the crossing (the rule, :meth:`CleanupRule.decide`)::

    held >= used_space * MEANINGFUL_SHARE / processes

that is at least half of an even share among the environment's processes
(``AWS_LAMBDA_MAX_CONCURRENCY``; :data:`ASSUMED_PROCESSES` when Lambda did not say). A
request that filled ``/tmp`` holds far more than that and cleans; one that holds little
of it keeps its files. When every request holds about as much (they filled it together)
each holds about an even share, above the half, and all clean. A request holding nothing
never cleans; one whose holding cannot be read keeps its files (a wrong removal loses
work, a missed one leaves ``/tmp`` as the filler made it).

What cannot be attributed (:mod:`monitor.attribution`: files outside the registered paths,
closed) is in the used space and in no request's share, so it raises no one's share.

Every run says what it did and why in its callback record's ``outcome``
(:class:`~monitor.records.CallbackField`), e.g. ``kept 1 path(s): this request holds
1.0 MiB of 61.0 MiB used, under 15.3 MiB (half an even share of 2 processes)``.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from monitor.attribution import PROC_FD, held_bytes
from monitor.callbacks import Callback, MonitorEvent
from monitor.environment import ExecutionEnvironment

log = logging.getLogger("tmpwarden.monitor")

MEANINGFUL_SHARE = 0.5
"""Of an even share of the used space: the least a request must hold for its process to
clean on a shared ``/tmp``."""
ASSUMED_PROCESSES = 2
"""The processes assumed to share ``/tmp`` when ``AWS_LAMBDA_MAX_CONCURRENCY`` is unset
on a Managed Instance: the fewest that share it (so a request cleans at a quarter)."""
_MIB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class CleanupRule:
    """Whether this process removes its registered paths at a critical ``/tmp`` crossing.

    ``shared``: other processes use the same ``/tmp`` (on Lambda: False, always clean);
    ``processes``: how many (None: unknown); ``filesystem``: the watched path;
    ``proc_fd``: this process's open files (injectable for tests).
    """

    shared: bool
    processes: int | None
    filesystem: str
    proc_fd: str = PROC_FD

    @classmethod
    def of(cls, environment: ExecutionEnvironment, filesystem: str) -> CleanupRule:
        return cls(environment.shared, environment.processes, filesystem)

    def least_held(self, used_space: int) -> int:
        """Bytes a request must hold of ``used_space`` (bytes) to clean (0 if unshared)."""
        if not self.shared:
            return 0
        return int(used_space * MEANINGFUL_SHARE / (self.processes or ASSUMED_PROCESSES))

    def decide(self, paths: list[Path], event: MonitorEvent) -> tuple[bool, str]:
        """(clean?, why) for ``paths`` at ``event``'s crossing; see the module docstring."""
        if not self.shared:
            return True, "this process has /tmp to itself"
        try:
            held = held_bytes(paths, self.filesystem, self.proc_fd)
        except OSError as exc:
            return False, f"cannot measure what this request holds ({exc.strerror})"
        used = event.metrics.used_space
        least = self.least_held(used)
        count = self.processes or f"{ASSUMED_PROCESSES} (assumed)"
        share = f"half an even share of {count} processes"
        figures = f"this request holds {held / _MIB:.1f} MiB of {used / _MIB:.1f} MiB used"
        if held > 0 and held >= least:
            return True, f"{figures}, at least {least / _MIB:.1f} MiB ({share})"
        return False, f"{figures}, under {least / _MIB:.1f} MiB ({share})"


def cleanup_paths(paths: Callable[[], list[Path]], rule: CleanupRule | None = None) -> Callback:
    """The default critical-``/tmp`` action: remove every path ``paths()`` lists (file or
    directory tree, links not followed) when ``rule`` says so (None: always). Returns its
    outcome (``removed N path(s): why`` or ``kept N path(s): why``) for the run's record."""

    def cleanup_registered_paths(event: MonitorEvent) -> str:
        registered = paths()
        if not registered:
            return "no registered paths"
        clean, why = rule.decide(registered, event) if rule is not None else (True, "")
        if not clean:
            log.warning("critical /tmp usage: kept %d registered path(s): %s", len(registered), why)
            return f"kept {len(registered)} path(s): {why}"
        for path in registered:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
        log.warning("critical /tmp usage: removed %d registered path(s)", len(registered))
        return f"removed {len(registered)} path(s)" + (f": {why}" if why else "")

    return cleanup_registered_paths
