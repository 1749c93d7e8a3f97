"""A target's phases reported to the monitor (a :class:`~handler.strategies.PhaseReporter`),
with the monitor's ProcessingState kept current as the design asks: the phase, files done
of the plan's total, ``/tmp`` in use, whether the cleanup phase ran, and the seconds left."""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from handler.logs import log_context
from handler.storage import StorageManager
from monitor import records

if TYPE_CHECKING:
    from monitor.sidecar import StorageMonitor


class MonitorPhases:
    """Phases through the monitor, remembering the peaks of every phase of this target,
    and the monitor's ProcessingState kept current: the phase, files done of the plan's
    total, ``/tmp`` in use (bytes, measured at most every DISK_USAGE_EVERY seconds and
    at the end of every phase), whether the cleanup phase ran, and the seconds left at
    the files-per-second measured since the plan."""

    DISK_USAGE_EVERY = 0.1

    def __init__(
        self,
        monitor: StorageMonitor | None,
        storage: StorageManager | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._monitor = monitor
        self._storage = storage
        self._clock = clock
        self.peak_tmp = 0
        self.peak_rss = 0
        self.files_done = 0
        self.total_files: int | None = None
        self._started = clock()
        self._measured = -math.inf

    def planned(self, total_files: int | None) -> None:
        """The plan's file count; throughput is measured from now."""
        self.total_files = total_files
        self._started = self._clock()
        if self._monitor is not None and total_files is not None:
            self._monitor.update_state(total_files=total_files)

    def file_done(self) -> None:
        """One more file packaged (or extracted): the monitor's ProcessingState says so."""
        self.files_done += 1
        if self._monitor is None:
            return
        now = self._clock()
        changes: dict[str, Any] = {"files_processed": self.files_done}
        elapsed = now - self._started
        if self.total_files is not None and elapsed > 0:
            left = max(self.total_files - self.files_done, 0)
            changes["estimated_remaining"] = left * elapsed / self.files_done
        if now - self._measured >= self.DISK_USAGE_EVERY:
            changes.update(self._disk_usage(now))
        self._monitor.update_state(**changes)

    def _disk_usage(self, now: float) -> dict[str, Any]:
        if self._storage is None:
            return {}
        self._measured = now
        try:
            return {"disk_usage": self._storage.usage().used}
        except OSError:  # the scratch directory is gone: keep the last measure
            return {}

    def phase(self, name: str) -> Any:
        if self._monitor is None:
            return contextlib.nullcontext()
        monitor = self._monitor

        @contextlib.contextmanager
        def tracked() -> Any:
            with log_context(**{records.PHASE: name}), monitor.phase(name) as opened:
                try:
                    yield opened
                finally:
                    self.peak_tmp = max(self.peak_tmp, opened.peaks.tmp_used)
                    self.peak_rss = max(self.peak_rss, opened.peaks.memory_used)
            changes = self._disk_usage(self._clock())
            if name == "cleanup":
                changes["cleanup_performed"] = True
            monitor.update_state(**changes)

        return tracked()
