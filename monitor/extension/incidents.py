"""From events to incident records: one record per failed invocation, at the first of
``platform.report`` (the final word, with ``maxMemoryUsedMB``), a SHUTDOWN with reason
failure or timeout, or the next INVOKE (a ``platform.runtimeDone`` error whose report
never came). Telemetry arrives on the listener's thread, events on the main thread: one
lock guards the account.
"""

from __future__ import annotations

import contextlib
import datetime
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
from monitor.shared_state import SharedState, read_shared_state

MEBIBYTE = 1024 * 1024
REPORT_WAIT_SECONDS = 0.3
"""How long a failed SHUTDOWN waits for the invocation's platform.report (delivered
within the subscription's 25 ms buffering); the shutdown budget is 2,000 ms."""


def event_time(event: Mapping[str, Any]) -> float | None:
    """A Telemetry API event's ``time`` (ISO 8601) as epoch seconds, None if absent."""
    text = event.get("time")
    if not isinstance(text, str):
        return None
    try:
        return datetime.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


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

    # -- events -------------------------------------------------------------------------

    def on_invoke(self, event: Event) -> None:
        """A new invocation: write what is pending of earlier ones (no report came)."""
        with self._lock:
            for request_id in [rid for rid in self._pending if rid != event.request_id]:
                self._emit(self._pending.pop(request_id))
            self.current = event.request_id

    def on_telemetry(self, event: Mapping[str, Any]) -> None:
        """One Telemetry API event (``platform.runtimeDone`` and ``platform.report`` count)."""
        kind = event.get("type")
        record = event.get("record")
        if kind not in ("platform.runtimeDone", "platform.report") or not isinstance(record, dict):
            return
        status = record.get("status")
        request_id = record.get("requestId")
        found = record.get("metrics")
        metrics: dict[str, Any] = found if isinstance(found, dict) else {}
        ended = event_time(event) or self._clock()
        with self._lock:
            if status not in FAILED_STATUSES:
                self._pending.pop(request_id, None)
                return
            if request_id in self._reported:
                return
            item = self._pending.setdefault(request_id, Pending(request_id))
            item.status = status
            item.error_type = record.get("errorType") or item.error_type
            if item.ended is None:
                item.ended = ended
                item.samples = self._samples_until(ended)
            if kind == "platform.report":
                item.max_memory_used_mb = _number(metrics.get("maxMemoryUsedMB"))
                item.memory_size_mb = _number(metrics.get("memorySizeMB"))
                self._emit(self._pending.pop(request_id))
                self._report_seen.notify_all()

    def on_shutdown(self, event: Event, wait: float = REPORT_WAIT_SECONDS) -> None:
        """SHUTDOWN: with reason failure or timeout, the current invocation died; its
        report may still be on the way (waits up to ``wait`` seconds for it)."""
        failed = event.shutdown_reason in ("failure", "timeout")
        with self._lock:
            current = self.current
            deadline = self._clock() + wait
            while failed and current not in self._reported and self._clock() < deadline:
                self._report_seen.wait(max(0.0, deadline - self._clock()))
            if failed and current not in self._reported:
                item = self._pending.pop(current, None) or Pending(current)
                item.shutdown_reason = event.shutdown_reason
                self._emit(item)
            for request_id in list(self._pending):
                self._emit(self._pending.pop(request_id))

    # -- the record (with the lock held) ------------------------------------------------

    def _samples_until(self, until: float) -> list[Sample]:
        with contextlib.suppress(OSError):
            self.sampler.sample()  # the moment of the event, if the sandbox still runs
        return self.sampler.last(until)

    def _emit(self, item: Pending) -> None:
        if item.request_id in self._reported:
            return
        self._reported.append(item.request_id)
        if item.ended is None:
            item.ended = self._clock()
            item.samples = self._samples_until(item.ended)
        limit = self.memory_limit
        if item.memory_size_mb:
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
            return
        shared = read_shared_state(self.state_dir, self.sampler.runtime_pid)
        if shared is not None and shared.request_id not in (None, item.request_id):
            shared = None  # another invocation's state
        self.write(
            incident_line(
                self.namespace,
                self.function_name,
                verdict.classification.value,
                item.ended,
                self._properties(item, verdict.reason, samples, limit, shared),
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


def _number(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) else None
