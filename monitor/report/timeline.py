"""The report's data: tmpwarden EMF documents in a log's text -> a :class:`Timeline`.

Pure functions, no matplotlib: EMF documents (read from log text by
:func:`monitor.report.documents.iter_documents`) ->
a :class:`Timeline` (:func:`build_timeline`). Drawing is in ``monitor.report.chart``,
files and the HTML page in ``monitor.report.page``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeGuard

from monitor.emf import RECORD_PROPERTY
from monitor.metrics import EVENT_METRICS, FUNCTION_DIMENSION

SAMPLE_COLUMNS = (
    "TmpUsedBytes",
    "TmpAvailableBytes",
    "TmpUsedPercent",
    "MemoryUsedBytes",
    "MemoryUsedPercent",
)
LEVEL_NAMES = {"warning": "warning", "predicted_full": "predicted full", "critical": "critical"}
RESOURCE_NAMES = {"tmp": "/tmp", "memory": "memory"}


class _Malformed(ValueError):
    """A tmpwarden record with a field of the wrong type (skipped and counted)."""


# -- the timeline ----------------------------------------------------------------------


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
class StatedLimits:
    """Sizes and thresholds (percent) the records state; the last value seen wins."""

    tmp_path: str | None = None
    tmp_total_bytes: int | None = None
    memory_limit_bytes: int | None = None
    tmp_warning: float | None = None
    tmp_critical: float | None = None
    memory_warning: float | None = None
    memory_critical: float | None = None


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
        return max(peaks, default=None)

    @property
    def peak_memory_percent(self) -> float | None:
        peaks = [s.memory_percent for s in self.samples]
        peaks += [i.peak_memory_percent for i in self.invocations]
        return max(peaks, default=None)

    def _times(self) -> list[float]:
        times = [s.time for s in self.samples]
        for invocation in self.invocations:
            times += [invocation.start, invocation.end]
        return times


# -- documents -> timeline --------------------------------------------------------------


def build_timeline(documents: Iterable[Mapping[str, Any]]) -> Timeline:
    """Assemble samples (joining documents split by the EMF library), invocations and
    limits; records of other kinds (``phase``) only count."""
    docs = list(documents)
    samples: list[Sample] = []
    invocations: list[InvocationRecord] = []
    skipped = 0
    for batch in _sample_batches(d for d in docs if d.get(RECORD_PROPERTY) == "samples"):
        try:
            samples += _samples_of(batch)
        except _Malformed:
            skipped += len(batch)
    for doc in docs:
        if doc.get(RECORD_PROPERTY) == "invocation":
            try:
                invocations.append(_invocation_of(doc))
            except _Malformed:
                skipped += 1
    names = [d.get(FUNCTION_DIMENSION) for d in docs]
    return Timeline(
        function_names=tuple(dict.fromkeys(n for n in names if isinstance(n, str))),
        samples=tuple(sorted(samples, key=lambda s: s.time)),
        invocations=tuple(sorted(invocations, key=lambda i: i.start)),
        limits=_limits_of(docs),
        records=len(docs),
        skipped=skipped,
    )


def _sample_batches(docs: Iterable[Mapping[str, Any]]) -> Iterator[list[Mapping[str, Any]]]:
    """Documents grouped into batches: the library splits a document with over 100
    values per metric into lines sharing ``SampleStart``, each repeating the offsets."""
    pending: dict[Any, list[Mapping[str, Any]]] = {}
    for doc in docs:
        key = doc.get("SampleStart")
        hashable = isinstance(key, int | float | str)
        batch = [*pending.pop(key, []), doc] if hashable else [doc]
        offsets = doc.get("SampleOffsetsMs")
        expected = len(offsets) if isinstance(offsets, list) else 0
        if not hashable or _value_count(batch) >= expected:
            yield batch
        else:
            pending[key] = batch
    yield from pending.values()  # incomplete: what arrived is still worth drawing


def _value_count(batch: Sequence[Mapping[str, Any]]) -> int:
    total = 0
    for doc in batch:
        with contextlib.suppress(_Malformed):
            total += len(_values(doc.get("TmpUsedBytes")))
    return total


def _samples_of(batch: Sequence[Mapping[str, Any]]) -> list[Sample]:
    first = batch[0]
    start_ms = _number(first.get("SampleStart"))
    offsets_value = first.get("SampleOffsetsMs", [0])
    if not isinstance(offsets_value, list):
        raise _Malformed("SampleOffsetsMs")
    offsets = [_number(o) for o in offsets_value]
    columns = {
        name: [v for doc in batch for v in _values(doc.get(name))] for name in SAMPLE_COLUMNS
    }
    count = min(len(offsets), *(len(c) for c in columns.values()))
    if count == 0:
        raise _Malformed("no values")
    request_id = _text(first.get("RequestId"))
    return [
        Sample(
            time=(start_ms + offsets[i]) / 1000,
            tmp_used=int(columns["TmpUsedBytes"][i]),
            tmp_available=int(columns["TmpAvailableBytes"][i]),
            tmp_percent=columns["TmpUsedPercent"][i],
            memory_used=int(columns["MemoryUsedBytes"][i]),
            memory_percent=columns["MemoryUsedPercent"][i],
            request_id=request_id,
        )
        for i in range(count)
    ]


def _invocation_of(doc: Mapping[str, Any]) -> InvocationRecord:
    request_id = _text(doc.get("RequestId"))
    counts = []
    for (resource, level), name in EVENT_METRICS.items():
        count = int(_scalar(doc.get(name), 0))
        if count:
            counts.append((resource.value, level.value, count))
    return InvocationRecord(
        request_id=request_id,
        start=_number(doc.get("InvocationStart")) / 1000,
        end=_number(doc.get("InvocationEnd")) / 1000,
        peak_tmp_percent=_scalar(doc.get("PeakTmpUsedPercent"), 0.0),
        peak_tmp_bytes=int(_scalar(doc.get("PeakTmpUsedBytes"), 0)),
        peak_memory_percent=_scalar(doc.get("PeakMemoryUsedPercent"), 0.0),
        peak_memory_bytes=int(_scalar(doc.get("PeakMemoryUsedBytes"), 0)),
        event_counts=tuple(counts),
        callback_errors=int(_scalar(doc.get("CallbackErrors"), 0)),
        tmp_freed=int(_scalar(doc.get("CleanupBytesFreed"), 0)),
        memory_freed=int(_scalar(doc.get("MemoryFreedBytes"), 0)),
        events=tuple(_crossing_of(e, request_id) for e in _items(doc.get("Events"))),
        phases=tuple(_phase_of(p, request_id) for p in _items(doc.get("Phases"))),
        callbacks=tuple(_callback_of(c, request_id) for c in _items(doc.get("Callbacks"))),
    )


def _crossing_of(item: Mapping[str, Any], request_id: str | None) -> LevelCrossing:
    ttf = item.get("seconds_to_full")
    return LevelCrossing(
        time=_number(item.get("time")),
        level=_required_text(item.get("level")),
        resource=_required_text(item.get("resource")),
        percent=_number(item.get("percent")),
        seconds_to_full=None if ttf is None else _number(ttf),
        request_id=request_id,
    )


def _phase_of(item: Mapping[str, Any], request_id: str | None) -> PhaseSpan:
    start, end = _number(item.get("start")), _number(item.get("end"))
    return PhaseSpan(
        name=_required_text(item.get("name")),
        start=start,
        end=end,
        duration_ms=_number(item.get("duration_ms", (end - start) * 1000)),
        peak_tmp_bytes=int(_number(item.get("peak_tmp_bytes", 0))),
        peak_rss_bytes=int(_number(item.get("peak_rss_bytes", 0))),
        error=_text(item.get("error")),
        request_id=request_id,
    )


def _callback_of(item: Mapping[str, Any], request_id: str | None) -> CallbackRun:
    return CallbackRun(
        name=_required_text(item.get("name")),
        level=_required_text(item.get("level")),
        resource=_required_text(item.get("resource")),
        event_time=_number(item.get("event_time")),
        started=_number(item.get("started")),
        duration_ms=_number(item.get("duration_ms", 0)),
        tmp_freed=int(_number(item.get("tmp_freed", 0))),
        memory_freed=int(_number(item.get("memory_freed", 0))),
        error=_text(item.get("error")),
        request_id=request_id,
    )


def _limits_of(docs: Sequence[Mapping[str, Any]]) -> StatedLimits:
    seen: dict[str, Any] = {}
    keys = {
        "TmpPath": "tmp_path",
        "TmpTotalBytes": "tmp_total_bytes",
        "MemoryLimitBytes": "memory_limit_bytes",
        "TmpWarningPercent": "tmp_warning",
        "TmpCriticalPercent": "tmp_critical",
        "MemoryWarningPercent": "memory_warning",
        "MemoryCriticalPercent": "memory_critical",
    }
    for doc in docs:
        for key, name in keys.items():
            value = doc.get(key)
            if name == "tmp_path" and isinstance(value, str):
                seen[name] = value
            elif name != "tmp_path" and _is_number(value):
                seen[name] = int(value) if name.endswith("bytes") else float(value)
    return StatedLimits(**seen)


def _is_number(value: object) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _number(value: Any) -> float:
    if not _is_number(value):
        raise _Malformed(repr(value))
    return float(value)


def _values(value: Any) -> list[float]:
    """A metric's values: the EMF library writes a single value as a bare number."""
    if value is None:
        return []
    if isinstance(value, list):
        return [_number(v) for v in value]
    return [_number(value)]


def _scalar(value: Any, default: float) -> float:
    values = _values(value)
    return values[0] if values else default


def _items(value: Any) -> list[Mapping[str, Any]]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise _Malformed(repr(value)[:80])
    return value


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise _Malformed(repr(value))
    return value


def _required_text(value: Any) -> str:
    text = _text(value)
    if text is None:
        raise _Malformed("missing text")
    return text


# -- formatting for people --------------------------------------------------------------


def format_utc(epoch_seconds: float) -> str:
    """``2026-11-18 11:06:52.400``: UTC, to the millisecond."""
    return datetime.fromtimestamp(epoch_seconds, UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def format_duration(seconds: float) -> str:
    """``850 ms``, ``41.2 s``, ``12 min 5 s``, ``3 h 20 min``."""
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 120:
        return f"{seconds:.1f} s"
    minutes, whole_seconds = divmod(round(seconds), 60)
    if minutes < 120:
        return f"{minutes} min {whole_seconds} s"
    return f"{minutes // 60} h {minutes % 60} min"


def describe_range(timeline: Timeline) -> str:
    """``2026-11-18 11:06:40 to 11:07:45 UTC (65.2 s)``."""
    start = datetime.fromtimestamp(timeline.start, UTC)
    end = datetime.fromtimestamp(timeline.end, UTC)
    end_format = "%H:%M:%S" if start.date() == end.date() else "%Y-%m-%d %H:%M:%S"
    return (
        f"{start:%Y-%m-%d %H:%M:%S} to {end.strftime(end_format)} UTC "
        f"({format_duration(timeline.end - timeline.start)})"
    )
