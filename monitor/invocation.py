"""Per-invocation accounting: peaks, level events, phases and the summary at the end."""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from dataclasses import dataclass, field

from monitor.callbacks import CallbackRecord
from monitor.metrics import EVENT_METRICS, Level, Resource, StorageMetrics
from monitor.tracing import NoopSpan, PhaseSpan

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
class LevelEvent:
    """A crossing, as recorded for the invocation's log."""

    time: float
    level: Level
    resource: Resource
    fraction: float
    seconds_to_full: float | None

    def as_dict(self) -> dict[str, object]:
        ttf = self.seconds_to_full
        return {
            "time": round(self.time, 3),
            "level": self.level.value,
            "resource": self.resource.value,
            "percent": round(self.fraction * 100, 2),
            "seconds_to_full": round(ttf, 1) if ttf is not None and math.isfinite(ttf) else None,
        }


@dataclass(frozen=True, slots=True)
class PhaseRecord:
    """A finished phase."""

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
            "name": self.name,
            "start": round(self.start, 3),
            "end": round(self.end, 3),
            "duration_ms": round(self.duration_ms, 3),
            "peak_tmp_bytes": self.peaks.tmp_used,
            "peak_rss_bytes": self.peaks.memory_used,
            "error": self.error,
        }


@dataclass
class OpenPhase:
    """A phase in progress; its peaks grow with every sample."""

    name: str
    start: float
    start_metrics: StorageMetrics
    peaks: Peaks = field(default_factory=Peaks)
    span: PhaseSpan = field(default_factory=NoopSpan)


@dataclass
class InvocationSummary:
    """What one invocation saw; becomes the end-of-invocation EMF document."""

    request_id: str | None
    started: float
    ended: float
    peaks: Peaks
    events: list[LevelEvent]
    phases: list[PhaseRecord]
    callbacks: list[CallbackRecord]
    callbacks_unfinished: int
    extra_metrics: dict[str, float]

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
            "PeakTmpUsedBytes": self.peaks.tmp_used,
            "PeakTmpUsedPercent": round(self.peaks.tmp_fraction * 100, 2),
            "PeakMemoryUsedBytes": self.peaks.memory_used,
            "PeakMemoryUsedPercent": round(self.peaks.memory_fraction * 100, 2),
            "CallbackErrors": self.callback_errors,
            "CleanupBytesFreed": self.cleanup_bytes_freed,
            "MemoryFreedBytes": self.memory_freed,
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
        return {
            "RequestId": self.request_id,
            "InvocationStart": round(self.started * 1000),
            "InvocationEnd": round(self.ended * 1000),
            "Events": [e.as_dict() for e in self.events[:MAX_LISTED]],
            "Phases": [p.as_dict() for p in self.phases[:MAX_LISTED]],
            "Callbacks": [c.as_dict() for c in self.callbacks[:MAX_LISTED]],
        }
