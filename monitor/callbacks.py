"""Callbacks: the events they receive, the thread that runs them, and the default actions.

Callbacks run on their own thread, so one that hangs never stops sampling; one that
raises is logged and counted. Each run is recorded with its effect on ``/tmp`` and
on memory.
"""

from __future__ import annotations

import gc
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from monitor.errors import ConfigurationError
from monitor.metrics import Level, Resource, StorageMetrics
from monitor.records import CallbackField
from monitor.sampler import Probe, Reading

log = logging.getLogger("tmpwarden.monitor")

PENDING_LIMIT = 64


@dataclass(frozen=True, slots=True)
class MonitorEvent:
    """A level crossing, as a callback receives it."""

    level: Level
    resource: Resource
    metrics: StorageMetrics
    seconds_to_full: float | None = None


Callback = Callable[[MonitorEvent], object]
"""A callback. What it returns is ignored, except a string: the run's ``outcome`` (what it
did, or why it did nothing), recorded with the run."""


@dataclass(frozen=True, slots=True)
class CallbackRun:
    """One callback run and its measured effect."""

    name: str
    level: Level
    resource: Resource
    event_time: float
    started: float
    duration: float
    tmp_used_before: int
    tmp_used_after: int
    rss_before: int
    rss_after: int
    error: str | None = None
    outcome: str | None = None

    @property
    def tmp_freed(self) -> int:
        return max(self.tmp_used_before - self.tmp_used_after, 0)

    @property
    def memory_freed(self) -> int:
        return max(self.rss_before - self.rss_after, 0)

    def as_dict(self) -> dict[str, object]:
        """The run as an item of the invocation record's ``Callbacks`` list."""
        return {
            CallbackField.NAME: self.name,
            CallbackField.LEVEL: self.level.value,
            CallbackField.RESOURCE: self.resource.value,
            CallbackField.EVENT_TIME: round(self.event_time, 3),
            CallbackField.STARTED: round(self.started, 3),
            CallbackField.DURATION_MS: round(self.duration * 1000, 3),
            CallbackField.TMP_FREED: self.tmp_freed,
            CallbackField.MEMORY_FREED: self.memory_freed,
            CallbackField.ERROR: self.error,
            CallbackField.OUTCOME: self.outcome,
        }


@dataclass
class _Job:
    callback: Callback
    name: str
    event: MonitorEvent
    queued: float = field(default=0.0)


class CallbackRunner:
    """Runs callbacks one at a time on a daemon thread, recording each run."""

    def __init__(self, probe: Probe, wall_clock: Callable[[], float] = time.time) -> None:
        self._probe = probe
        self._clock = wall_clock
        self._jobs: queue.Queue[_Job | None] = queue.Queue(PENDING_LIMIT)
        self._records: list[CallbackRun] = []
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._pending = 0
        self.dropped = 0
        self._thread: threading.Thread | None = None

    def submit(self, callback: Callback, name: str, event: MonitorEvent) -> None:
        """Queue a run; drops it (and counts it) when PENDING_LIMIT runs are waiting."""
        self._ensure_thread()
        with self._lock:
            self._pending += 1
        try:
            self._jobs.put_nowait(_Job(callback, name, event, self._clock()))
        except queue.Full:
            with self._lock:
                self._pending -= 1
                self.dropped += 1
            log.error("callback %s dropped: %d callbacks already waiting", name, PENDING_LIMIT)

    def drain(self, timeout: float) -> bool:
        """Wait until every queued callback has run; False if ``timeout`` passed first."""
        deadline = time.monotonic() + timeout
        with self._idle:
            while self._pending:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._idle.wait(remaining)
        return True

    def take_records(self) -> list[CallbackRun]:
        """The runs recorded since the last call."""
        with self._lock:
            records, self._records = self._records, []
        return records

    def _ensure_thread(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(
                target=self._run, name="tmpwarden-callbacks", daemon=True
            )
            self._thread.start()

    def _run(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            record = None
            try:
                record = self._execute(job)
            finally:
                with self._idle:
                    if record is not None:
                        self._records.append(record)
                    self._pending -= 1
                    self._idle.notify_all()

    def _measure(self, name: str) -> Reading | None:
        """A reading for the record of a callback run; None (logged) if the probe fails."""
        try:
            return self._probe()
        except Exception:
            log.exception("tmpwarden monitor: probe around callback %s failed", name)
            return None

    def _execute(self, job: _Job) -> CallbackRun:
        before = self._measure(job.name)
        started = self._clock()
        timer = time.perf_counter()
        error = outcome = None
        try:
            returned = job.callback(job.event)
            outcome = returned if isinstance(returned, str) else None
        except Exception as exc:  # a callback must never kill the runner
            error = f"{type(exc).__name__}: {exc}"
            log.exception(
                "callback %s failed on %s %s", job.name, job.event.resource, job.event.level
            )
        duration = time.perf_counter() - timer
        after = self._measure(job.name)
        before = before or after
        after = after or before
        return CallbackRun(
            name=job.name,
            level=job.event.level,
            resource=job.event.resource,
            event_time=job.event.metrics.timestamp,
            started=started,
            duration=duration,
            tmp_used_before=before.used_space if before else 0,
            tmp_used_after=after.used_space if after else 0,
            rss_before=before.memory_used if before else 0,
            rss_after=after.memory_used if after else 0,
            error=error,
            outcome=outcome,
        )


CALLBACK_LEVELS = {
    Resource.TMP: (Level.WARNING, Level.PREDICTED_FULL, Level.CRITICAL),
    Resource.MEMORY: (Level.WARNING, Level.CRITICAL),
}
"""The levels each resource has callbacks for."""


class CallbackRegistry:
    """Which callbacks run on which crossing, and the paths the cleanup action removes.

    Not locked: its owner (:class:`~monitor.sidecar.StorageMonitor`) holds its lock.
    """

    def __init__(self) -> None:
        self._callbacks: dict[tuple[Level, Resource], list[tuple[str, Callback]]] = {}
        self.cleanup: list[Path] = []

    def add(self, level: Level | str, callback: Callback, resource: Resource | str) -> None:
        """Register ``callback`` for ``level`` of ``resource``; ConfigurationError naming
        the valid levels and resources otherwise."""
        try:
            chosen_resource = Resource(resource)
            chosen_level = Level(level)
        except ValueError:
            raise ConfigurationError(
                f"no callbacks for level {level!r} of resource {resource!r}; levels are "
                "warning, critical, predicted_full (tmp only); resources are tmp, memory"
            ) from None
        if chosen_level not in CALLBACK_LEVELS[chosen_resource]:
            raise ConfigurationError(
                f"level {chosen_level.value!r} does not apply to {chosen_resource.value}"
            )
        name = getattr(callback, "__name__", repr(callback))
        self._callbacks.setdefault((chosen_level, chosen_resource), []).append((name, callback))

    def for_crossing(self, level: Level, resource: Resource) -> list[tuple[str, Callback]]:
        """The (name, callback) pairs for one crossing, in the order they were added."""
        return self._callbacks.get((level, resource), [])


def collect_garbage(event: MonitorEvent) -> None:
    """The default memory-warning action: a full garbage collection."""
    gc.collect()
