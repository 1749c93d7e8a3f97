"""The report's data: tmpwarden EMF documents in a log's text -> a :class:`Timeline`.

Pure functions, no matplotlib: EMF documents (read from log text by
:func:`monitor.report.documents.iter_documents`) ->
a :class:`Timeline` (:func:`build_timeline`). Drawing is in ``monitor.report.chart``,
files and the HTML page in ``monitor.report.page``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, TypeGuard

from monitor import metrics as m
from monitor import records as r
from monitor.metrics import EVENT_METRICS, FUNCTION_DIMENSION, ProcessingState
from monitor.records import CallbackField, CrossingField, PhaseField, RecordKind
from monitor.report.incidents import read_incidents
from monitor.report.level_changes import read_level_changes
from monitor.report.model import (
    CallbackRun,
    InvocationRecord,
    LevelCrossing,
    PhaseSpan,
    Sample,
    StatedLimits,
    Timeline,
)

__all__ = [
    "LEVEL_NAMES",
    "RESOURCE_NAMES",
    "CallbackRun",
    "InvocationRecord",
    "LevelCrossing",
    "PhaseSpan",
    "Sample",
    "StatedLimits",
    "Timeline",
    "build_timeline",
    "describe_range",
    "format_duration",
    "format_utc",
]

SAMPLE_COLUMNS = (
    m.TMP_USED_BYTES,
    m.TMP_AVAILABLE_BYTES,
    m.TMP_USED_PERCENT,
    m.MEMORY_USED_BYTES,
    m.MEMORY_USED_PERCENT,
)
REQUIRED: dict[RecordKind, tuple[str, ...]] = {
    RecordKind.SAMPLES: (r.SAMPLE_START, r.SAMPLE_OFFSETS_MS, *SAMPLE_COLUMNS),
    RecordKind.INVOCATION: (r.INVOCATION_START, r.INVOCATION_END, m.PEAK_TMP_USED_PERCENT),
}
"""Properties without which a record of the kind cannot be read (monitor/records.py)."""
LEVEL_NAMES = {"warning": "warning", "predicted_full": "predicted full", "critical": "critical"}
RESOURCE_NAMES = {"tmp": "/tmp", "memory": "memory"}


class _Malformed(ValueError):
    """A tmpwarden record with a field of the wrong type (skipped and counted)."""


class _Missing(_Malformed):
    """A record lacking a property the schema requires: written under another name."""

    def __init__(self, kind: RecordKind, name: str) -> None:
        super().__init__(name)
        self.kind = kind
        self.name = name


# -- documents -> timeline --------------------------------------------------------------


def build_timeline(documents: Iterable[Mapping[str, Any]]) -> Timeline:
    """Assemble samples (joining documents split by the EMF library), invocations,
    level changes, the extension's incidents and limits; records of other kinds
    (``phase``) only count."""
    docs = list(documents)
    samples: list[Sample] = []
    invocations: list[InvocationRecord] = []
    skipped = 0
    missing: dict[tuple[str, str], int] = {}
    kind = r.RECORD_KIND
    for batch in _sample_batches(d for d in docs if d.get(kind) == RecordKind.SAMPLES):
        try:
            _require(RecordKind.SAMPLES, batch[0])
            samples += _samples_of(batch)
        except _Missing as exc:
            missing[exc.kind, exc.name] = missing.get((exc.kind, exc.name), 0) + len(batch)
            skipped += len(batch)
        except _Malformed:
            skipped += len(batch)
    for doc in docs:
        if doc.get(kind) == RecordKind.INVOCATION:
            try:
                _require(RecordKind.INVOCATION, doc)
                invocations.append(_invocation_of(doc))
            except _Missing as exc:
                missing[exc.kind, exc.name] = missing.get((exc.kind, exc.name), 0) + 1
                skipped += 1
            except _Malformed:
                skipped += 1
    changes, unreadable, lacking = read_level_changes(docs)
    for name, count in lacking.items():
        missing[RecordKind.LEVEL_CHANGE, name] = count
    incidents, unread, lacks = read_incidents(docs)
    for name, count in lacks.items():
        missing[RecordKind.INCIDENT, name] = count
    names = [d.get(FUNCTION_DIMENSION) for d in docs]
    return Timeline(
        function_names=tuple(dict.fromkeys(n for n in names if isinstance(n, str))),
        samples=tuple(sorted(samples, key=lambda s: s.time)),
        invocations=tuple(sorted(invocations, key=lambda i: i.start)),
        limits=_limits_of(docs),
        records=len(docs),
        skipped=skipped + unreadable + unread,
        missing=tuple((k, name, count) for (k, name), count in missing.items()),
        level_changes=tuple(changes),
        incidents=tuple(incidents),
    )


def _require(kind: RecordKind, doc: Mapping[str, Any]) -> None:
    for name in REQUIRED[kind]:
        if name not in doc:
            raise _Missing(kind, name)


def _sample_batches(docs: Iterable[Mapping[str, Any]]) -> Iterator[list[Mapping[str, Any]]]:
    """Documents grouped into batches: the library splits a document with over 100
    values per metric into lines sharing ``SampleStart``, each repeating the offsets."""
    pending: dict[Any, list[Mapping[str, Any]]] = {}
    for doc in docs:
        key = doc.get(r.SAMPLE_START)
        hashable = isinstance(key, int | float | str)
        batch = [*pending.pop(key, []), doc] if hashable else [doc]
        offsets = doc.get(r.SAMPLE_OFFSETS_MS)
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
            total += len(_values(doc.get(m.TMP_USED_BYTES)))
    return total


def _samples_of(batch: Sequence[Mapping[str, Any]]) -> list[Sample]:
    first = batch[0]
    start_ms = _number(first.get(r.SAMPLE_START))
    offsets_value = first.get(r.SAMPLE_OFFSETS_MS, [0])
    if not isinstance(offsets_value, list):
        raise _Malformed(r.SAMPLE_OFFSETS_MS)
    offsets = [_number(o) for o in offsets_value]
    columns = {
        name: [v for doc in batch for v in _values(doc.get(name))] for name in SAMPLE_COLUMNS
    }
    count = min(len(offsets), *(len(c) for c in columns.values()))
    if count == 0:
        raise _Malformed("no values")
    request_id = _text(first.get(r.REQUEST_ID))
    return [
        Sample(
            time=(start_ms + offsets[i]) / 1000,
            tmp_used=int(columns[m.TMP_USED_BYTES][i]),
            tmp_available=int(columns[m.TMP_AVAILABLE_BYTES][i]),
            tmp_percent=columns[m.TMP_USED_PERCENT][i],
            memory_used=int(columns[m.MEMORY_USED_BYTES][i]),
            memory_percent=columns[m.MEMORY_USED_PERCENT][i],
            request_id=request_id,
        )
        for i in range(count)
    ]


def _invocation_of(doc: Mapping[str, Any]) -> InvocationRecord:
    request_id = _text(doc.get(r.REQUEST_ID))
    counts = []
    for (resource, level), name in EVENT_METRICS.items():
        count = int(_scalar(doc.get(name), 0))
        if count:
            counts.append((resource.value, level.value, count))
    return InvocationRecord(
        request_id=request_id,
        start=_number(doc.get(r.INVOCATION_START)) / 1000,
        end=_number(doc.get(r.INVOCATION_END)) / 1000,
        peak_tmp_percent=_scalar(doc.get(m.PEAK_TMP_USED_PERCENT), 0.0),
        peak_tmp_bytes=int(_scalar(doc.get(m.PEAK_TMP_USED_BYTES), 0)),
        peak_memory_percent=_scalar(doc.get(m.PEAK_MEMORY_USED_PERCENT), 0.0),
        peak_memory_bytes=int(_scalar(doc.get(m.PEAK_MEMORY_USED_BYTES), 0)),
        event_counts=tuple(counts),
        callback_errors=int(_scalar(doc.get(m.CALLBACK_ERRORS), 0)),
        tmp_freed=int(_scalar(doc.get(m.CLEANUP_BYTES_FREED), 0)),
        memory_freed=int(_scalar(doc.get(m.MEMORY_FREED_BYTES), 0)),
        state=_state_of(doc),
        events=tuple(_crossing_of(e, request_id) for e in _items(doc.get(r.EVENTS))),
        phases=tuple(_phase_of(p, request_id) for p in _items(doc.get(r.PHASES))),
        callbacks=tuple(_callback_of(c, request_id) for c in _items(doc.get(r.CALLBACKS))),
    )


def _state_of(doc: Mapping[str, Any]) -> ProcessingState:
    """The processing state an invocation record states (records of earlier versions
    state none: the defaults)."""
    total = doc.get(r.TOTAL_FILES)
    remaining = doc.get(r.ESTIMATED_REMAINING_SECONDS)
    return ProcessingState(
        current_phase=_text(doc.get(r.PHASE)),
        files_processed=int(_scalar(doc.get(r.FILES_PROCESSED), 0)),
        total_files=None if total is None else int(_number(total)),
        disk_usage=int(_scalar(doc.get(r.DISK_USAGE_BYTES), 0)),
        cleanup_performed=doc.get(r.CLEANUP_PERFORMED) is True,
        estimated_remaining=None if remaining is None else _number(remaining),
    )


def _crossing_of(item: Mapping[str, Any], request_id: str | None) -> LevelCrossing:
    ttf = item.get(CrossingField.SECONDS_TO_FULL)
    return LevelCrossing(
        time=_number(item.get(CrossingField.TIME)),
        level=_required_text(item.get(CrossingField.LEVEL)),
        resource=_required_text(item.get(CrossingField.RESOURCE)),
        percent=_number(item.get(CrossingField.PERCENT)),
        seconds_to_full=None if ttf is None else _number(ttf),
        request_id=request_id,
    )


def _phase_of(item: Mapping[str, Any], request_id: str | None) -> PhaseSpan:
    start, end = _number(item.get(PhaseField.START)), _number(item.get(PhaseField.END))
    return PhaseSpan(
        name=_required_text(item.get(PhaseField.NAME)),
        start=start,
        end=end,
        duration_ms=_number(item.get(PhaseField.DURATION_MS, (end - start) * 1000)),
        peak_tmp_bytes=int(_number(item.get(PhaseField.PEAK_TMP_BYTES, 0))),
        peak_rss_bytes=int(_number(item.get(PhaseField.PEAK_RSS_BYTES, 0))),
        error=_text(item.get(PhaseField.ERROR)),
        request_id=request_id,
    )


def _callback_of(item: Mapping[str, Any], request_id: str | None) -> CallbackRun:
    return CallbackRun(
        name=_required_text(item.get(CallbackField.NAME)),
        level=_required_text(item.get(CallbackField.LEVEL)),
        resource=_required_text(item.get(CallbackField.RESOURCE)),
        event_time=_number(item.get(CallbackField.EVENT_TIME)),
        started=_number(item.get(CallbackField.STARTED)),
        duration_ms=_number(item.get(CallbackField.DURATION_MS, 0)),
        tmp_freed=int(_number(item.get(CallbackField.TMP_FREED, 0))),
        memory_freed=int(_number(item.get(CallbackField.MEMORY_FREED, 0))),
        error=_text(item.get(CallbackField.ERROR)),
        request_id=request_id,
    )


def _limits_of(docs: Sequence[Mapping[str, Any]]) -> StatedLimits:
    seen: dict[str, Any] = {}
    keys = {
        r.TMP_PATH: "tmp_path",
        r.TMP_TOTAL_BYTES: "tmp_total_bytes",
        r.MEMORY_LIMIT_BYTES: "memory_limit_bytes",
        r.TMP_WARNING_PERCENT: "tmp_warning",
        r.TMP_CRITICAL_PERCENT: "tmp_critical",
        r.MEMORY_WARNING_PERCENT: "memory_warning",
        r.MEMORY_CRITICAL_PERCENT: "memory_critical",
        r.PROCESS_MEMORY_BUDGET_BYTES: "memory_budget_bytes",
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
