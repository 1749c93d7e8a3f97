"""The report's reading and listing of ``level_change`` records (monitor/records.py).

The monitor writes a level change the moment a sample crosses a level, with the samples
before it (:meth:`monitor.emf.EmfEmitter.emit_level_change`), so that the climb is in the
log even when an out-of-memory kill or a timeout takes the invocation's record and its
unflushed samples. Read here through the schema's names into
:class:`~monitor.report.model.LevelChange` (pure), and listed as an HTML table; the chart
draws them in :mod:`monitor.report.level_change_chart`.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar

from monitor import records as r
from monitor.records import RecordKind
from monitor.report.model import LastSample, LevelChange
from monitor.units import format_size

REQUIRED = (r.CROSSING_TIME, r.LEVEL, r.RESOURCE, r.LEVEL_PERCENT)
"""Properties without which a level change record cannot be read."""
LAST_COLUMNS = (r.LAST_TMP_USED_BYTES, r.LAST_TMP_AVAILABLE_BYTES, r.LAST_MEMORY_USED_BYTES)


class _HasTime(Protocol):
    @property
    def time(self) -> float: ...


Timed = TypeVar("Timed", bound=_HasTime)


class MalformedChange(ValueError):
    """A level change record with a field missing (``missing`` names it) or mistyped."""

    def __init__(self, detail: str, missing: str | None = None) -> None:
        super().__init__(detail)
        self.missing = missing


def read_records(
    documents: Iterable[Mapping[str, Any]],
    kind: RecordKind,
    parse: Callable[[Mapping[str, Any]], Timed],
) -> tuple[list[Timed], int, dict[str, int]]:
    """The records of ``kind`` among ``documents``, read by ``parse``, by time; the count
    of those ``parse`` refused (MalformedChange); and, per missing property, how many
    lacked it."""
    read: list[Timed] = []
    skipped = 0
    missing: dict[str, int] = {}
    for doc in documents:
        if doc.get(r.RECORD_KIND) != kind:
            continue
        try:
            read.append(parse(doc))
        except MalformedChange as exc:
            skipped += 1
            if exc.missing is not None:
                missing[exc.missing] = missing.get(exc.missing, 0) + 1
    return sorted(read, key=lambda record: record.time), skipped, missing


def read_level_changes(
    documents: Iterable[Mapping[str, Any]],
) -> tuple[list[LevelChange], int, dict[str, int]]:
    """The level changes among ``documents``, by crossing time; the count of those that
    could not be read; and, per property :data:`REQUIRED` names, how many lacked it."""
    return read_records(documents, RecordKind.LEVEL_CHANGE, level_change_of)


def level_change_of(doc: Mapping[str, Any]) -> LevelChange:
    """One ``level_change`` record; MalformedChange when it cannot be read."""
    for name in REQUIRED:
        if name not in doc:
            raise MalformedChange(name, missing=name)
    ttf, process = doc.get(r.SECONDS_TO_FULL), doc.get(r.PROCESS_ID)
    return LevelChange(
        time=_number(doc[r.CROSSING_TIME]) / 1000,
        level=_text(doc[r.LEVEL]),
        resource=_text(doc[r.RESOURCE]),
        percent=_number(doc[r.LEVEL_PERCENT]),
        seconds_to_full=None if ttf is None else _number(ttf),
        phase=None if doc.get(r.PHASE) is None else _text(doc[r.PHASE]),
        request_id=None if doc.get(r.REQUEST_ID) is None else _text(doc[r.REQUEST_ID]),
        process_id=int(_number(process)) if process is not None else None,
        last_samples=last_samples_of(doc),
    )


def last_samples_of(doc: Mapping[str, Any]) -> tuple[LastSample, ...]:
    """The ``LastSamples*`` of a level change or incident record, oldest first (percents
    of the limit the record states); MalformedChange when the lists do not agree."""
    if r.LAST_SAMPLES_START not in doc:
        return ()  # no sample in the window: the record says so by leaving them out
    start = _number(doc[r.LAST_SAMPLES_START]) / 1000
    offsets = _numbers(doc.get(r.LAST_SAMPLES_OFFSETS_MS))
    tmp_used, available, memory = (_numbers(doc.get(name)) for name in LAST_COLUMNS)
    if not len(offsets) == len(tmp_used) == len(available) == len(memory):
        raise MalformedChange("the last samples' lists differ in length")
    budget = doc.get(r.PROCESS_MEMORY_BUDGET_BYTES, doc.get(r.MEMORY_LIMIT_BYTES))
    limit = _number(budget) if budget is not None else 0.0
    return tuple(
        LastSample(
            time=start + offset / 1000,
            tmp_used=int(used),
            tmp_available=int(free),
            memory_used=int(rss),
            tmp_percent=100 * used / (used + free) if used + free else 100.0,
            memory_percent=100 * rss / limit if limit else None,
        )
        for offset, used, free, rss in zip(offsets, tmp_used, available, memory, strict=True)
    )


def _number(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise MalformedChange(repr(value)[:80])
    return float(value)


def _numbers(value: object) -> list[float]:
    if not isinstance(value, list):
        raise MalformedChange(repr(value)[:80])
    return [_number(v) for v in value]


def _text(value: object) -> str:
    if not isinstance(value, str):
        raise MalformedChange(repr(value)[:80])
    return value


# -- HTML --------------------------------------------------------------------------------

COLUMNS = (
    "Crossed (UTC)",
    "Request ID",
    "Process",
    "Phase",
    "Resource",
    "Level",
    "Use",
    "Samples before it",
)


def level_change_table(changes: Sequence[LevelChange]) -> str:
    """The level changes as an HTML table, one row each with the samples before it
    (how many, over what time, the use at the first and the last)."""
    if not changes:
        return '<p class="note">No level change records.</p>'
    head = "".join(f"<th>{name}</th>" for name in COLUMNS)
    rows = [f"<table><thead><tr>{head}</tr></thead><tbody>"]
    for change in changes:
        use = f"{change.percent:.1f}%"
        if change.seconds_to_full is not None:
            use += f", full in ~{change.seconds_to_full:.0f} s"
        cells = (
            datetime.fromtimestamp(change.time, UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3],
            change.request_id or "",
            "" if change.process_id is None else str(change.process_id),
            change.phase or "",
            "/tmp" if change.resource == "tmp" else change.resource,
            change.level.replace("_", " "),
            use,
            _climb_text(change),
        )
        body = "".join(f"<td>{html.escape(cell)}</td>" for cell in cells)
        rows.append(f'<tr class="{html.escape(change.level)}">{body}</tr>')
    rows.append("</tbody></table>")
    return "\n".join(rows)


def _climb_text(change: LevelChange) -> str:
    samples = change.last_samples
    if not samples:
        return "none in the window"
    first, last = samples[0], samples[-1]
    span = change.time - first.time
    values = []
    for sample in (first, last):
        percent = change.last_percent(sample)
        size = sample.tmp_used if change.resource == "tmp" else sample.memory_used
        values.append(format_size(size) + ("" if percent is None else f" ({percent:.1f}%)"))
    return f"{len(samples)} over {span:.1f} s: {values[0]} to {values[1]}"
