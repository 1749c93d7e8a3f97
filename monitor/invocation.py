"""Per-invocation accounting: peaks, level crossings, phases, the processing state, and
the record written at the end (:class:`InvocationRecord`, the ``invocation`` EMF record).

Each record kind is named as in :mod:`monitor.records`, and written through its
property names. :class:`InvocationRecorder` keeps one invocation's running account;
it is not locked (its owner, :class:`~monitor.sidecar.StorageMonitor`, holds its lock).
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from dataclasses import dataclass, field, fields, replace
from typing import TYPE_CHECKING, Any

from monitor import metrics as m
from monitor import records as r
from monitor.callbacks import CallbackRun
from monitor.emf_rules import MAX_METRIC_VALUE
from monitor.metrics import EVENT_METRICS, Level, ProcessingState, Resource, StorageMetrics
from monitor.records import CrossingField, PhaseField
from monitor.tracing import NoopSpan, TraceSpan

if TYPE_CHECKING:
    from monitor.shared_state import SharedStateWriter

MAX_LISTED = 50


@dataclass(frozen=True, slots=True)
class Peaks:
    """The highest usage seen (bytes and fractions of the limit)."""

    tmp_used: int = 0
    tmp_fraction: float = 0.0
    memory_used: int = 0
    memory_fraction: float = 0.0

    def merged(
        self, tmp_used: int, tmp_fraction: float, memory_used: int, memory_fraction: float
    ) -> Peaks:
        """These peaks raised by one sample (the same object when nothing is higher)."""
        if (
            tmp_used <= self.tmp_used
            and memory_used <= self.memory_used
            and tmp_fraction <= self.tmp_fraction
            and memory_fraction <= self.memory_fraction
        ):
            return self
        return Peaks(
            max(self.tmp_used, tmp_used),
            max(self.tmp_fraction, tmp_fraction),
            max(self.memory_used, memory_used),
            max(self.memory_fraction, memory_fraction),
        )

    @classmethod
    def of(cls, metrics: StorageMetrics) -> Peaks:
        return cls(
            metrics.used_space, metrics.used_fraction, metrics.memory_used, metrics.memory_fraction
        )


@dataclass(frozen=True, slots=True)
class LevelCrossing:
    """A level crossing, as the invocation record lists it (``Events``)."""

    time: float
    level: Level
    resource: Resource
    fraction: float
    seconds_to_full: float | None

    def as_dict(self) -> dict[str, object]:
        ttf = self.seconds_to_full
        return {
            CrossingField.TIME: round(self.time, 3),
            CrossingField.LEVEL: self.level.value,
            CrossingField.RESOURCE: self.resource.value,
            CrossingField.PERCENT: round(self.fraction * 100, 2),
            CrossingField.SECONDS_TO_FULL: round(ttf, 1)
            if ttf is not None and math.isfinite(ttf)
            else None,
        }

    def level_change_properties(self) -> dict[str, object]:
        """The crossing as a ``level_change`` record states it (names from
        :mod:`monitor.records`; the time in epoch milliseconds)."""
        item = self.as_dict()
        return {
            r.LEVEL: item[CrossingField.LEVEL],
            r.RESOURCE: item[CrossingField.RESOURCE],
            r.LEVEL_PERCENT: item[CrossingField.PERCENT],
            r.SECONDS_TO_FULL: item[CrossingField.SECONDS_TO_FULL],
            r.CROSSING_TIME: round(self.time * 1000),
        }


@dataclass(frozen=True, slots=True)
class PhaseSpan:
    """A finished phase, as the invocation record lists it (``Phases``)."""

    name: str
    start: float
    end: float
    peaks: Peaks
    error: str | None = None

    @property
    def duration_ms(self) -> float:
        return (self.end - self.start) * 1000

    def as_dict(self) -> dict[str, object]:
        return {
            PhaseField.NAME: self.name,
            PhaseField.START: round(self.start, 3),
            PhaseField.END: round(self.end, 3),
            PhaseField.DURATION_MS: round(self.duration_ms, 3),
            PhaseField.PEAK_TMP_BYTES: self.peaks.tmp_used,
            PhaseField.PEAK_RSS_BYTES: self.peaks.memory_used,
            PhaseField.ERROR: self.error,
        }


@dataclass
class OpenPhase:
    """A phase in progress; its peaks grow with every sample."""

    name: str
    start: float
    start_metrics: StorageMetrics
    peaks: Peaks = field(default_factory=Peaks)
    span: TraceSpan = field(default_factory=NoopSpan)


@dataclass
class InvocationRecord:
    """What one invocation saw; becomes the ``invocation`` EMF record."""

    request_id: str | None
    started: float
    ended: float
    peaks: Peaks
    events: list[LevelCrossing]
    phases: list[PhaseSpan]
    callbacks: list[CallbackRun]
    callbacks_unfinished: int
    extra_metrics: dict[str, float]
    state: ProcessingState = field(default_factory=ProcessingState)
    """The processing state at the end (its phase: the last one entered, if none is open)."""
    monitor_cpu_seconds: float = 0.0
    """CPU seconds the sampling thread used during the invocation (its thread CPU clock)."""
    samples_taken: int = 0
    """Samples taken during the invocation (the thread's and ``sample_now``'s)."""

    @property
    def event_counts(self) -> Counter[tuple[Resource, Level]]:
        return Counter((e.resource, e.level) for e in self.events)

    @property
    def callback_errors(self) -> int:
        return sum(1 for r in self.callbacks if r.error) + self.callbacks_unfinished

    @property
    def cleanup_bytes_freed(self) -> int:
        return sum(r.tmp_freed for r in self.callbacks if r.resource is Resource.TMP)

    @property
    def memory_freed(self) -> int:
        return sum(r.memory_freed for r in self.callbacks if r.resource is Resource.MEMORY)

    def metric_values(self) -> dict[str, float]:
        counts = self.event_counts
        values: dict[str, float] = {
            m.PEAK_TMP_USED_BYTES: self.peaks.tmp_used,
            m.PEAK_TMP_USED_PERCENT: round(self.peaks.tmp_fraction * 100, 2),
            m.PEAK_MEMORY_USED_BYTES: self.peaks.memory_used,
            m.PEAK_MEMORY_USED_PERCENT: round(self.peaks.memory_fraction * 100, 2),
            m.CALLBACK_ERRORS: self.callback_errors,
            m.CLEANUP_BYTES_FREED: self.cleanup_bytes_freed,
            m.MEMORY_FREED_BYTES: self.memory_freed,
        }
        for key, name in EVENT_METRICS.items():
            values[name] = counts.get(key, 0)
        values.update(self.extra_metrics)
        return values

    def phase_durations(self) -> dict[str, list[float]]:
        durations: dict[str, list[float]] = defaultdict(list)
        for phase in self.phases:
            durations[phase.name].append(phase.duration_ms)
        return dict(durations)

    def properties(self) -> dict[str, object]:
        """The record's own properties (names from :mod:`monitor.records`)."""
        state = self.state
        remaining = state.estimated_remaining
        return {
            r.REQUEST_ID: self.request_id,
            r.INVOCATION_START: round(self.started * 1000),
            r.INVOCATION_END: round(self.ended * 1000),
            r.PHASE: state.current_phase,
            r.FILES_PROCESSED: state.files_processed,
            r.TOTAL_FILES: state.total_files,
            r.DISK_USAGE_BYTES: state.disk_usage,
            r.CLEANUP_PERFORMED: state.cleanup_performed,
            r.ESTIMATED_REMAINING_SECONDS: (
                round(remaining, 3) if remaining is not None and math.isfinite(remaining) else None
            ),
            r.MONITOR_CPU_SECONDS: round(self.monitor_cpu_seconds, 6),
            r.SAMPLES_TAKEN: self.samples_taken,
            r.EVENTS: [e.as_dict() for e in self.events[:MAX_LISTED]],
            r.PHASES: [p.as_dict() for p in self.phases[:MAX_LISTED]],
            r.CALLBACKS: [c.as_dict() for c in self.callbacks[:MAX_LISTED]],
        }


STATE_FIELDS = frozenset(f.name for f in fields(ProcessingState))


class InvocationRecorder:
    """One invocation's running account: peaks, crossings, open and finished phases,
    per-invocation metrics and the processing state. Times are wall-clock epoch seconds.

    ``share``: where the account is shared with the external extension at each change
    (begin, crossing, phase open and close, record; never per sample), or None."""

    def __init__(
        self, request_id: str | None, started: float, share: SharedStateWriter | None = None
    ) -> None:
        self.share = share
        self.request_id = request_id
        self.started = started
        self.peaks = Peaks()
        self.events: list[LevelCrossing] = []
        self.phases: list[PhaseSpan] = []
        self.open_phases: list[OpenPhase] = []
        self.extra_metrics: dict[str, float] = {}
        self.state = ProcessingState()
        self.last_phase: str | None = None
        self._shared()

    def _shared(self, *, ended: bool = False) -> None:
        if self.share is not None:
            self.share.write(self, ended=ended)

    def observe(self, used: int, tmp_fraction: float, rss: int, memory_fraction: float) -> None:
        """Raise the invocation's and every open phase's peaks by one sample."""
        peaks = self.peaks
        if used > peaks.tmp_used or rss > peaks.memory_used:
            self.peaks = peaks.merged(used, tmp_fraction, rss, memory_fraction)
        for opened in self.open_phases:
            opened.peaks = opened.peaks.merged(used, tmp_fraction, rss, memory_fraction)

    def crossed(self, crossing: LevelCrossing) -> None:
        self.events.append(crossing)
        self._shared()

    def open(self, opened: OpenPhase) -> None:
        self.open_phases.append(opened)
        self.last_phase = opened.name
        self.state = replace(self.state, current_phase=opened.name)
        self._shared()

    def is_open(self, opened: OpenPhase) -> bool:
        return opened in self.open_phases

    def close(self, opened: OpenPhase, ended: float, error: BaseException | None) -> PhaseSpan:
        """Finish ``opened``: the current phase becomes its parent's (or none)."""
        self.open_phases.remove(opened)
        parent = self.open_phases[-1].name if self.open_phases else None
        self.state = replace(self.state, current_phase=parent)
        span = PhaseSpan(
            opened.name,
            opened.start,
            ended,
            opened.peaks,
            f"{type(error).__name__}: {error}" if error is not None else None,
        )
        self.phases.append(span)
        self._shared()
        return span

    def add_metric(self, name: str, value: float) -> None:
        """Add ``value`` to the per-invocation metric ``name`` (clamped to CloudWatch's range)."""
        total = self.extra_metrics.get(name, 0) + value
        self.extra_metrics[name] = max(-MAX_METRIC_VALUE, min(total, MAX_METRIC_VALUE))

    def update_state(self, changes: dict[str, Any]) -> ProcessingState:
        self.state = replace(self.state, **changes)
        return self.state

    def record(
        self,
        ended: float,
        callbacks: list[CallbackRun],
        callbacks_unfinished: int,
        *,
        monitor_cpu_seconds: float = 0.0,
        samples_taken: int = 0,
    ) -> InvocationRecord:
        """The invocation record as it stands at ``ended`` (with the monitor's own cost:
        its sampling thread's CPU seconds and the samples taken, during the invocation)."""
        state = self.state
        if state.current_phase is None and self.last_phase is not None:
            state = replace(state, current_phase=self.last_phase)
        self._shared(ended=True)
        return InvocationRecord(
            request_id=self.request_id,
            started=self.started,
            ended=ended,
            peaks=self.peaks,
            events=list(self.events),
            phases=list(self.phases),
            callbacks=callbacks,
            callbacks_unfinished=callbacks_unfinished,
            extra_metrics=dict(self.extra_metrics),
            state=state,
            monitor_cpu_seconds=monitor_cpu_seconds,
            samples_taken=samples_taken,
        )
