"""From events to incident records: one record per failed invocation, at the first of
``platform.report`` (the final word, with ``maxMemoryUsedMB``), a SHUTDOWN with reason
failure or timeout, or the next INVOKE (a ``platform.runtimeDone`` error whose report
never came). Telemetry arrives on the listener's thread, events on the main thread: one
lock guards the account.
"""

from __future__ import annotations

import contextlib
import math
import resource
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from monitor import records as r
from monitor.extension.api import Event
from monitor.extension.classify import FAILED_STATUSES, Evidence, classify
from monitor.extension.probe import Sample, Sampler, peak_rss_bytes
from monitor.extension.record import incident_line, last_samples_properties
from monitor.extension.telemetry import parse_platform_event
from monitor.shared_state import SharedState, read_shared_state, remove_dead_states

MEBIBYTE = 1024 * 1024
REPORT_WAIT_SECONDS = 0.3
"""How long a failed SHUTDOWN waits for the invocation's platform.report (delivered
within the subscription's 25 ms buffering); the shutdown budget is 2,000 ms."""


@dataclass
class Pending:
    """What is known of one failed invocation before its record is written."""

    request_id: str | None
    status: str | None = None
    error_type: str | None = None
    max_memory_used_mb: float | None = None
    memory_size_mb: float | None = None
    shutdown_reason: str | None = None
    ended: float | None = None
    samples: list[Sample] = field(default_factory=list)


class IncidentTracker:
    """Keeps the pending failures and writes each one's record once (``write`` gets the line)."""

    def __init__(
        self,
        sampler: Sampler,
        write: Callable[[str], None],
        *,
        namespace: str,
        function_name: str,
        tmp_path: str,
        state_dir: str,
        memory_limit: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.sampler = sampler
        self.write = write
        self.namespace, self.function_name = namespace, function_name
        self.tmp_path, self.state_dir = tmp_path, state_dir
        self.memory_limit = memory_limit
        self._clock = clock
        self._lock = threading.Lock()
        self._reported: deque[str | None] = deque(maxlen=64)
        self._pending: dict[str | None, Pending] = {}
        self._report_seen = threading.Condition(self._lock)
        self.current: str | None = None
        self.written = 0
        self._writing = 0
        """Records decided and not yet written (SHUTDOWN waits for them)."""

    # -- events -------------------------------------------------------------------------

    def on_invoke(self, event: Event) -> None:
        """A new invocation: write what is pending of earlier ones (no report came)."""
        with self._lock:
            ready = [
                self._take(self._pending.pop(rid))
                for rid in [rid for rid in self._pending if rid != event.request_id]
            ]
            self.current = event.request_id
        self._finish(ready)

    def on_telemetry(self, event: Mapping[str, Any]) -> None:
        """One Telemetry API event (``platform.runtimeDone`` and ``platform.report`` count;
        a field of the wrong type counts as absent, see
        :func:`~monitor.extension.telemetry.parse_platform_event`)."""
        found = parse_platform_event(event)
        if found is None:
            return
        ended = found.time or self._clock()
        ready: list[_Ready | None] = []
        with self._lock:
            if found.status not in FAILED_STATUSES:
                self._pending.pop(found.request_id, None)
                return
            if found.request_id in self._reported:
                return
            item = self._pending.setdefault(found.request_id, Pending(found.request_id))
            item.status = found.status
            item.error_type = found.error_type or item.error_type
            if item.ended is None:
                item.ended = ended
                item.samples = self._samples_until(ended)
            if found.kind == "platform.report":
                item.max_memory_used_mb = found.max_memory_used_mb
                item.memory_size_mb = found.memory_size_mb
                ready.append(self._take(self._pending.pop(found.request_id)))
                self._report_seen.notify_all()
        self._finish(ready)

    def on_shutdown(self, event: Event, wait: float = REPORT_WAIT_SECONDS) -> None:
        """SHUTDOWN: with reason failure or timeout, the current invocation died; its
        report may still be on the way (waits up to ``wait`` seconds for it, and for
        the record of a report being written)."""
        failed = event.shutdown_reason in ("failure", "timeout")
        ready: list[_Ready | None] = []
        with self._lock:
            current = self.current
            deadline = self._clock() + wait
            while failed and current not in self._reported and self._clock() < deadline:
                self._report_seen.wait(max(0.0, deadline - self._clock()))
            if failed and current not in self._reported:
                item = self._pending.pop(current, None) or Pending(current)
                item.shutdown_reason = event.shutdown_reason
                ready.append(self._take(item))
            for request_id in list(self._pending):
                ready.append(self._take(self._pending.pop(request_id)))
        self._finish(ready)
        with self._lock:  # a report's record written on the listener's thread
            while self._writing and self._clock() < deadline:
                self._report_seen.wait(max(0.0, deadline - self._clock()))

    def _remove_dead_states(self) -> None:
        """Remove the shared state files of runtimes that died, once no incident is
        pending (its record reads the dead runtime's state): ``/tmp`` keeps none of them."""
        with self._lock:
            pending = bool(self._pending) or self._writing > 0
        if not pending:
            remove_dead_states(self.state_dir)

    # -- the record: decided with the lock held, written after --------------------------

    def _samples_until(self, until: float) -> list[Sample]:
        with contextlib.suppress(OSError):
            self.sampler.sample()  # the moment of the event, if the sandbox still runs
        return self.sampler.last(until)

    def _take(self, item: Pending) -> _Ready | None:
        """Classify ``item`` (lock held); None when it was written or is no incident."""
        if item.request_id in self._reported:
            return None
        self._reported.append(item.request_id)
        if item.ended is None:
            item.ended = self._clock()
            item.samples = self._samples_until(item.ended)
        limit = self.memory_limit
        if item.memory_size_mb and math.isfinite(item.memory_size_mb):
            limit = int(item.memory_size_mb * MEBIBYTE)
        samples = item.samples
        peak_rss = max((s.memory_used for s in samples), default=0)
        peak_tmp = max(
            (s.tmp_used / (s.tmp_used + s.tmp_available) for s in samples if s.tmp_used),
            default=None,
        )
        evidence = Evidence(
            status=item.status,
            error_type=item.error_type,
            shutdown_reason=item.shutdown_reason,
            max_memory_used_mb=item.max_memory_used_mb,
            memory_size_mb=item.memory_size_mb,
            peak_rss_fraction=peak_rss / limit if limit and peak_rss else None,
            peak_tmp_fraction=peak_tmp,
        )
        verdict = classify(evidence)
        if verdict is None:
            return None
        self._writing += 1
        return _Ready(item, verdict.classification.value, verdict.reason, samples, limit)

    def _finish(self, ready: list[_Ready | None]) -> None:
        """Read the shared state and write each record (lock not held), then remove the
        state files of dead runtimes."""
        for each in ready:
            if each is None:
                continue
            try:
                self._write_record(each)
            finally:
                with self._lock:
                    self._writing -= 1
                    self._report_seen.notify_all()
        self._remove_dead_states()

    def _write_record(self, ready: _Ready) -> None:
        item = ready.item
        assert item.ended is not None
        shared = read_shared_state(self.state_dir, self.sampler.runtime_pid)
        if shared is not None and shared.request_id not in (None, item.request_id):
            shared = None  # another invocation's state
        self.write(
            incident_line(
                self.namespace,
                self.function_name,
                ready.classification,
                item.ended,
                self._properties(item, ready.reason, ready.samples, ready.limit, shared),
            )
        )
        self.written += 1

    def _properties(
        self,
        item: Pending,
        reason: str,
        samples: list[Sample],
        limit: int,
        shared: SharedState | None,
    ) -> dict[str, object]:
        worst = shared.worst_level if shared is not None else None
        resource_name, _, level = worst.partition(":") if worst else (None, "", None)
        usage = resource.getrusage(resource.RUSAGE_SELF)  # CPU; the peak RSS from VmHWM
        last = samples[-1] if samples else None
        return {
            r.REQUEST_ID: item.request_id,
            r.REASON: reason,
            r.STATUS: item.status,
            r.ERROR_TYPE: item.error_type,
            r.SHUTDOWN_REASON: item.shutdown_reason,
            r.MAX_MEMORY_USED_MB: item.max_memory_used_mb,
            r.MEMORY_SIZE_MB: item.memory_size_mb,
            r.MEMORY_LIMIT_BYTES: limit,
            r.TMP_PATH: self.tmp_path,
            r.TMP_TOTAL_BYTES: last.tmp_used + last.tmp_available if last else None,
            r.RUNTIME_PID: self.sampler.runtime_pid,
            r.PHASE: shared.phase if shared is not None else None,
            r.LEVEL: level,
            r.RESOURCE: resource_name,
            r.STATE_TIME: round(shared.time * 1000) if shared is not None else None,
            r.EXTENSION_CPU_SECONDS: round(usage.ru_utime + usage.ru_stime, 3),
            r.EXTENSION_PEAK_RSS_BYTES: peak_rss_bytes(),
            **last_samples_properties(samples),
        }


@dataclass(frozen=True, slots=True)
class _Ready:
    """An incident decided under the lock, its record to be written after."""

    item: Pending
    classification: str
    reason: str
    samples: list[Sample]
    limit: int
