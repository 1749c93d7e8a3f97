"""The report's reading and listing of ``incident`` records (monitor/records.py).

The external extension (monitor/extension) writes one incident record when an
invocation dies -- out of memory, a timeout, ``/tmp`` full, a crash -- with its
classification, the phase and level the in-process monitor last shared, and the samples
it took before the death (``LastSamples*``, as a level change record states them). Read
here through the schema's names into :class:`~monitor.report.model.Incident` (pure) and
listed as an HTML table; the chart marks them in :mod:`monitor.report.incident_chart`.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from monitor import records as r
from monitor.records import RecordKind
from monitor.report.level_changes import MalformedChange, last_samples_of, read_records
from monitor.report.model import Incident, LastSample
from monitor.units import format_size

REQUIRED = (r.CLASSIFICATION,)
"""Properties without which an incident record cannot be read (its time is the EMF
timestamp, else its last sample's)."""


def read_incidents(
    documents: Iterable[Mapping[str, Any]],
) -> tuple[list[Incident], int, dict[str, int]]:
    """The incidents among ``documents``, by time; the count of those that could not be
    read; and, per property :data:`REQUIRED` names, how many lacked it."""
    return read_records(documents, RecordKind.INCIDENT, incident_of)


def incident_of(doc: Mapping[str, Any]) -> Incident:
    """One ``incident`` record; MalformedChange when it cannot be read."""
    for name in REQUIRED:
        if name not in doc:
            raise MalformedChange(name, missing=name)
    samples = last_samples_of(doc)
    emf = doc.get("_aws")
    stamp = emf.get("Timestamp") if isinstance(emf, dict) else None
    if isinstance(stamp, int | float) and not isinstance(stamp, bool):
        time = float(stamp) / 1000
    elif samples:
        time = samples[-1].time
    else:
        raise MalformedChange("an incident record with neither a timestamp nor samples")
    return Incident(
        time=time,
        classification=_text(doc[r.CLASSIFICATION]) or "",
        reason=_text(doc.get(r.REASON)),
        request_id=_text(doc.get(r.REQUEST_ID)),
        phase=_text(doc.get(r.PHASE)),
        level=_text(doc.get(r.LEVEL)),
        resource=_text(doc.get(r.RESOURCE)),
        status=_text(doc.get(r.STATUS)),
        max_memory_used_mb=_number(doc.get(r.MAX_MEMORY_USED_MB)),
        memory_size_mb=_number(doc.get(r.MEMORY_SIZE_MB)),
        last_samples=samples,
    )


def _text(value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise MalformedChange(repr(value)[:80])
    return value


def _number(value: object) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise MalformedChange(repr(value)[:80])
    return float(value)


# -- HTML --------------------------------------------------------------------------------

COLUMNS = (
    "Ended (UTC)",
    "Classification",
    "Request ID",
    "Phase",
    "Level shared",
    "Lambda's word",
    "Last samples",
    "Why",
)


def incident_table(incidents: Sequence[Incident]) -> str:
    """The incidents as an HTML table, one row each: the classification, the request,
    the phase and level the in-process monitor last shared, Lambda's status and memory,
    and the last samples (how many, over what time, /tmp and memory at the first and the
    last)."""
    if not incidents:
        return '<p class="note">No incident records (the extension saw no invocation die).</p>'
    head = "".join(f"<th>{name}</th>" for name in COLUMNS)
    rows = [f"<table><thead><tr>{head}</tr></thead><tbody>"]
    for incident in incidents:
        level = ""
        if incident.level:
            where = "/tmp" if incident.resource == "tmp" else incident.resource or ""
            level = f"{where} {incident.level.replace('_', ' ')}".strip()
        cells = (
            datetime.fromtimestamp(incident.time, UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3],
            incident.classification.replace("_", " "),
            incident.request_id or "",
            incident.phase or "",
            level,
            _lambda_text(incident),
            _samples_text(incident),
            incident.reason or "",
        )
        body = "".join(f"<td>{html.escape(cell)}</td>" for cell in cells)
        rows.append(f'<tr class="critical">{body}</tr>')
    rows.append("</tbody></table>")
    return "\n".join(rows)


def _lambda_text(incident: Incident) -> str:
    parts = [f"status {incident.status}"] if incident.status else []
    if incident.max_memory_used_mb is not None:
        size = f" of {incident.memory_size_mb:.0f}" if incident.memory_size_mb else ""
        parts.append(f"max memory {incident.max_memory_used_mb:.0f}{size} MB")
    return ", ".join(parts)


def _samples_text(incident: Incident) -> str:
    samples = incident.last_samples
    if not samples:
        return "none"
    first, last = samples[0], samples[-1]
    span = last.time - first.time

    def one(sample: LastSample) -> str:
        memory = format_size(sample.memory_used)
        if sample.memory_percent is not None:
            memory += f" ({sample.memory_percent:.1f}%)"
        return f"/tmp {sample.tmp_percent:.1f}%, memory {memory}"

    return f"{len(samples)} over {span:.1f} s: {one(first)} to {one(last)}"
