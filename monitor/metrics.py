"""What the monitor measures: value objects, and the one registry of metric names.

Dashboards, alarms and the EMF emitter use only names defined here; a test fails
when they drift apart.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

DEFAULT_NAMESPACE = "tmpwarden"
FUNCTION_DIMENSION = "FunctionName"
PHASE_DIMENSION = "Phase"
CLASSIFICATION_DIMENSION = "Classification"
"""The incident's kind, as the external extension classifies it
(:class:`monitor.extension.classify.Classification`)."""


class Level(enum.StrEnum):
    """How close a resource is to its limit. ``predicted_full`` is the trend's warning."""

    OK = "ok"
    WARNING = "warning"
    PREDICTED_FULL = "predicted_full"
    CRITICAL = "critical"


class Resource(enum.StrEnum):
    """What is watched: the scratch filesystem, or the process's memory."""

    TMP = "tmp"
    MEMORY = "memory"


@dataclass(frozen=True, slots=True)
class StorageMetrics:
    """One sample of ``/tmp`` and memory. Sizes in bytes; thresholds as fractions (0-1).

    The ``/tmp`` sizes are as the monitored process sees the filesystem (see
    :class:`monitor.sampler.DiskSpace`), as df reports them: ``used_space`` is the
    blocks in use, ``available_space`` what this process can still write (statvfs
    ``f_bavail``), and ``total_space`` is their sum, which leaves out blocks reserved
    for root. So ``used_fraction`` is 1.0 exactly when this process can write no more.
    """

    total_space: int
    available_space: int
    used_space: int
    threshold_warning: float
    threshold_critical: float
    timestamp: float
    memory_used: int = 0
    memory_limit: int = 0

    @property
    def used_fraction(self) -> float:
        """Share of ``/tmp`` in use, ``used / (used + available)`` (1.0 when the
        filesystem reports no size)."""
        return self.used_space / self.total_space if self.total_space else 1.0

    @property
    def memory_fraction(self) -> float:
        """Share of the memory limit in use."""
        return self.memory_used / self.memory_limit if self.memory_limit else 0.0

    def fraction(self, resource: Resource) -> float:
        return self.used_fraction if resource is Resource.TMP else self.memory_fraction

    def as_dict(self) -> dict[str, float | int]:
        return {
            "total_space": self.total_space,
            "available_space": self.available_space,
            "used_space": self.used_space,
            "threshold_warning": self.threshold_warning,
            "threshold_critical": self.threshold_critical,
            "timestamp": self.timestamp,
            "memory_used": self.memory_used,
            "memory_limit": self.memory_limit,
        }


@dataclass(frozen=True, slots=True)
class ProcessingState:
    """What the monitored code is doing, as it reports it."""

    current_phase: str | None = None
    files_processed: int = 0
    total_files: int | None = None
    disk_usage: int = 0
    cleanup_performed: bool = False
    estimated_remaining: float | None = None
    """Seconds of work left, if the code can tell."""


class MetricGroup(enum.Enum):
    """Metrics emitted together in one EMF document share a group (and its dimensions)."""

    SAMPLES = "samples"
    INVOCATION = "invocation"
    PHASE = "phase"
    INCIDENT = "incident"
    """Written by the external extension (``monitor.extension``), not the in-process one."""


GROUP_DIMENSIONS: dict[MetricGroup, tuple[str, ...]] = {
    MetricGroup.SAMPLES: (FUNCTION_DIMENSION,),
    MetricGroup.INVOCATION: (FUNCTION_DIMENSION,),
    MetricGroup.PHASE: (FUNCTION_DIMENSION, PHASE_DIMENSION),
    MetricGroup.INCIDENT: (FUNCTION_DIMENSION, CLASSIFICATION_DIMENSION),
}


@dataclass(frozen=True, slots=True)
class MetricSpec:
    """A metric's name, CloudWatch unit, group and meaning."""

    name: str
    unit: str
    group: MetricGroup
    description: str

    @property
    def dimensions(self) -> tuple[str, ...]:
        return GROUP_DIMENSIONS[self.group]

    @property
    def high_resolution(self) -> bool:
        """Samples are stored at 1-second resolution; per-invocation values at 60 s."""
        return self.group is MetricGroup.SAMPLES


def _specs(group: MetricGroup, *rows: tuple[str, str, str]) -> dict[str, MetricSpec]:
    return {name: MetricSpec(name, unit, group, text) for name, unit, text in rows}


# Metric names: code uses these constants (or REGISTRY), never the strings.
TMP_USED_BYTES = "TmpUsedBytes"
TMP_AVAILABLE_BYTES = "TmpAvailableBytes"
TMP_USED_PERCENT = "TmpUsedPercent"
MEMORY_USED_BYTES = "MemoryUsedBytes"
MEMORY_USED_PERCENT = "MemoryUsedPercent"
TMP_TIME_TO_FULL_SECONDS = "TmpTimeToFullSeconds"
PEAK_TMP_USED_BYTES = "PeakTmpUsedBytes"
PEAK_TMP_USED_PERCENT = "PeakTmpUsedPercent"
PEAK_MEMORY_USED_BYTES = "PeakMemoryUsedBytes"
PEAK_MEMORY_USED_PERCENT = "PeakMemoryUsedPercent"
TMP_WARNING_EVENTS = "TmpWarningEvents"
TMP_CRITICAL_EVENTS = "TmpCriticalEvents"
TMP_PREDICTED_FULL_EVENTS = "TmpPredictedFullEvents"
MEMORY_WARNING_EVENTS = "MemoryWarningEvents"
MEMORY_CRITICAL_EVENTS = "MemoryCriticalEvents"
CALLBACK_ERRORS = "CallbackErrors"
CLEANUP_BYTES_FREED = "CleanupBytesFreed"
MEMORY_FREED_BYTES = "MemoryFreedBytes"
TARGETS_SUCCEEDED = "TargetsSucceeded"
TARGETS_FAILED = "TargetsFailed"
PACKAGED_BYTES = "PackagedBytes"
PHASE_DURATION = "PhaseDuration"
INCIDENTS = "Incidents"

REGISTRY: dict[str, MetricSpec] = {
    **_specs(
        MetricGroup.SAMPLES,
        (TMP_USED_BYTES, "Bytes", "/tmp in use, one value per sample bucket"),
        (TMP_AVAILABLE_BYTES, "Bytes", "/tmp still writable"),
        (TMP_USED_PERCENT, "Percent", "/tmp in use, percent of used + available (as df)"),
        (MEMORY_USED_BYTES, "Bytes", "resident memory of the function's process"),
        (MEMORY_USED_PERCENT, "Percent", "resident memory, percent of the memory limit"),
        (TMP_TIME_TO_FULL_SECONDS, "Seconds", "predicted seconds until /tmp is full, when filling"),
    ),
    **_specs(
        MetricGroup.INVOCATION,
        (PEAK_TMP_USED_BYTES, "Bytes", "highest /tmp use in the invocation"),
        (PEAK_TMP_USED_PERCENT, "Percent", "highest /tmp use in the invocation, percent"),
        (PEAK_MEMORY_USED_BYTES, "Bytes", "highest resident memory in the invocation"),
        (PEAK_MEMORY_USED_PERCENT, "Percent", "highest memory use, percent of the limit"),
        (TMP_WARNING_EVENTS, "Count", "/tmp crossed the warning threshold"),
        (TMP_CRITICAL_EVENTS, "Count", "/tmp crossed the critical threshold"),
        (TMP_PREDICTED_FULL_EVENTS, "Count", "the trend said /tmp fills within the horizon"),
        (MEMORY_WARNING_EVENTS, "Count", "memory crossed the warning threshold"),
        (MEMORY_CRITICAL_EVENTS, "Count", "memory crossed the critical threshold"),
        (CALLBACK_ERRORS, "Count", "callbacks that raised or timed out"),
        (CLEANUP_BYTES_FREED, "Bytes", "bytes the cleanup actions freed on /tmp"),
        (MEMORY_FREED_BYTES, "Bytes", "resident memory the gc action gave back"),
        (TARGETS_SUCCEEDED, "Count", "packaging targets that succeeded"),
        (TARGETS_FAILED, "Count", "packaging targets that failed"),
        (PACKAGED_BYTES, "Bytes", "uncompressed bytes packaged into ZIPs"),
    ),
    **_specs(
        MetricGroup.PHASE,
        (PHASE_DURATION, "Milliseconds", "time spent in one phase (dimension Phase)"),
    ),
    **_specs(
        MetricGroup.INCIDENT,
        (INCIDENTS, "Count", "invocations that died, by Classification (the extension)"),
    ),
}

EVENT_METRICS: dict[tuple[Resource, Level], str] = {
    (Resource.TMP, Level.WARNING): TMP_WARNING_EVENTS,
    (Resource.TMP, Level.CRITICAL): TMP_CRITICAL_EVENTS,
    (Resource.TMP, Level.PREDICTED_FULL): TMP_PREDICTED_FULL_EVENTS,
    (Resource.MEMORY, Level.WARNING): MEMORY_WARNING_EVENTS,
    (Resource.MEMORY, Level.CRITICAL): MEMORY_CRITICAL_EVENTS,
}


def spec(name: str) -> MetricSpec:
    """The registered metric called ``name``; KeyError names the unknown metric."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise KeyError(f"{name!r} is not a registered tmpwarden metric") from None
