"""The report's model: what a log says, as the records' kinds (monitor/records.py) name it.

The read-back forms of the record kinds the monitor writes: :class:`LevelCrossing`,
:class:`PhaseSpan`, :class:`CallbackRun` and :class:`InvocationRecord` carry the names of
the classes that wrote them (``monitor.invocation``, ``monitor.callbacks``), with the
request id each came with and values as logged (percent, milliseconds, plain strings).
:class:`Timeline` holds them all. Pure: no matplotlib.
"""

from __future__ import annotations

from dataclasses import dataclass

from monitor.metrics import ProcessingState


@dataclass(frozen=True, slots=True)
class Sample:
    """One sample bucket (the worst of the samples in it); time in epoch seconds."""

    time: float
    tmp_used: int
    tmp_available: int
    tmp_percent: float
    memory_used: int
    memory_percent: float
    request_id: str | None


@dataclass(frozen=True, slots=True)
class LevelCrossing:
    """A level event of an invocation: ``level`` warning, predicted_full or critical."""

    time: float
    level: str
    resource: str
    percent: float
    seconds_to_full: float | None
    request_id: str | None


@dataclass(frozen=True, slots=True)
class PhaseSpan:
    """A finished phase; start and end in epoch seconds."""

    name: str
    start: float
    end: float
    duration_ms: float
    peak_tmp_bytes: int
    peak_rss_bytes: int
    error: str | None
    request_id: str | None


@dataclass(frozen=True, slots=True)
class CallbackRun:
    """One callback run and what it freed; times in epoch seconds."""

    name: str
    level: str
    resource: str
    event_time: float
    started: float
    duration_ms: float
    tmp_freed: int
    memory_freed: int
    error: str | None
    request_id: str | None


@dataclass(frozen=True, slots=True)
class InvocationRecord:
    """One end-of-invocation record. Listed events, phases and callbacks are capped
    (at 50 each) by the emitter; ``event_counts`` are not."""

    request_id: str | None
    start: float
    end: float
    peak_tmp_percent: float
    peak_tmp_bytes: int
    peak_memory_percent: float
    peak_memory_bytes: int
    event_counts: tuple[tuple[str, str, int], ...]
    """(resource, level, count) for every count above zero."""
    callback_errors: int
    tmp_freed: int
    memory_freed: int
    state: ProcessingState
    events: tuple[LevelCrossing, ...]
    phases: tuple[PhaseSpan, ...]
    callbacks: tuple[CallbackRun, ...]

    @property
    def duration(self) -> float:
        return self.end - self.start

    @property
    def event_total(self) -> int:
        return sum(count for _, _, count in self.event_counts)


@dataclass(frozen=True, slots=True)
class LastSample:
    """One of the samples a level change record carries from before its crossing (each
    the worst of its bucket); time in epoch seconds, percents of the limits the record
    states (memory: of the process's budget where the record states one)."""

    time: float
    tmp_used: int
    tmp_available: int
    memory_used: int
    tmp_percent: float
    memory_percent: float | None
    """None when the record states no memory limit."""


@dataclass(frozen=True, slots=True)
class LevelChange:
    """A ``level_change`` record: a crossing written the moment it happened, with the
    samples before it; there even when an out-of-memory kill or a timeout took the
    invocation's record and its unflushed samples."""

    time: float
    level: str
    resource: str
    percent: float
    seconds_to_full: float | None
    phase: str | None
    request_id: str | None
    process_id: int | None
    last_samples: tuple[LastSample, ...]

    def last_percent(self, sample: LastSample) -> float | None:
        """``sample``'s use of the resource that crossed, percent."""
        return sample.tmp_percent if self.resource == "tmp" else sample.memory_percent


@dataclass(frozen=True, slots=True)
class Incident:
    """An ``incident`` record of the external extension (monitor/extension): an
    invocation that died, classified, with the samples the extension took before the
    death; there even when the runtime and its in-process monitor were killed. ``time``:
    epoch seconds the invocation ended (the record's EMF timestamp); ``phase``, ``level``
    and ``resource`` are what the in-process monitor last shared (None: nothing shared)."""

    time: float
    classification: str
    reason: str | None
    request_id: str | None
    phase: str | None
    level: str | None
    resource: str | None
    status: str | None
    max_memory_used_mb: float | None
    memory_size_mb: float | None
    last_samples: tuple[LastSample, ...]


@dataclass(frozen=True, slots=True)
class StatedLimits:
    """Sizes and thresholds (percent) the records state; the last value seen wins."""

    tmp_path: str | None = None
    tmp_total_bytes: int | None = None
    memory_limit_bytes: int | None = None
    tmp_warning: float | None = None
    tmp_critical: float | None = None
    memory_warning: float | None = None
    memory_critical: float | None = None
    memory_budget_bytes: int | None = None
    """The process's share of memory_limit_bytes that the memory percents are of (less
    than it on a Lambda Managed Instance, see monitor/environment.py)."""


@dataclass(frozen=True, slots=True)
class Timeline:
    """Everything a log says about /tmp and memory over time, samples sorted by time."""

    function_names: tuple[str, ...]
    samples: tuple[Sample, ...]
    invocations: tuple[InvocationRecord, ...]
    limits: StatedLimits
    records: int
    """tmpwarden documents read (each line of a split document counts)."""
    skipped: int = 0
    """Malformed tmpwarden records left out."""
    missing: tuple[tuple[str, str, int], ...] = ()
    """(record kind, property, records) for records lacking a property the schema
    (monitor/records.py) requires: a renamed property, or another version's records."""
    level_changes: tuple[LevelChange, ...] = ()
    """The level change records, by crossing time."""
    incidents: tuple[Incident, ...] = ()
    """The extension's incident records, by time."""

    @property
    def events(self) -> list[LevelCrossing]:
        return sorted((e for i in self.invocations for e in i.events), key=lambda e: e.time)

    @property
    def phases(self) -> list[PhaseSpan]:
        return sorted((p for i in self.invocations for p in i.phases), key=lambda p: p.start)

    @property
    def callbacks(self) -> list[CallbackRun]:
        return sorted((c for i in self.invocations for c in i.callbacks), key=lambda c: c.started)

    @property
    def event_count(self) -> int:
        return sum(i.event_total for i in self.invocations)

    @property
    def start(self) -> float:
        return min(self._times())

    @property
    def end(self) -> float:
        return max(self._times())

    @property
    def peak_tmp_percent(self) -> float | None:
        peaks = [s.tmp_percent for s in self.samples]
        peaks += [i.peak_tmp_percent for i in self.invocations]
        peaks += [s.tmp_percent for c in self.level_changes for s in c.last_samples]
        peaks += [s.tmp_percent for i in self.incidents for s in i.last_samples]
        return max(peaks, default=None)

    @property
    def peak_memory_percent(self) -> float | None:
        peaks = [s.memory_percent for s in self.samples]
        peaks += [i.peak_memory_percent for i in self.invocations]
        last = [s.memory_percent for c in self.level_changes for s in c.last_samples]
        last += [s.memory_percent for i in self.incidents for s in i.last_samples]
        peaks += [percent for percent in last if percent is not None]
        return max(peaks, default=None)

    def _times(self) -> list[float]:
        times = [s.time for s in self.samples]
        for invocation in self.invocations:
            times += [invocation.start, invocation.end]
        for change in self.level_changes:
            times += [change.time, *(sample.time for sample in change.last_samples)]
        for incident in self.incidents:
            times += [incident.time, *(sample.time for sample in incident.last_samples)]
        return times
