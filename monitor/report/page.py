"""Post-incident report: tmpwarden's EMF log lines -> a timeline picture (PNG) or a page (HTML).

``python -m monitor report LOG -o OUT.png|OUT.html``. The log may be a local capture or a
CloudWatch Logs export (plain, gzip, or ``aws logs filter-log-events`` JSON). Reading is
in ``monitor.report.timeline`` (pure, no matplotlib), drawing in ``monitor.report.chart``
(imported only when a report is drawn, so ``import monitor`` never loads matplotlib).
"""

from __future__ import annotations

import base64
import gzip
import html
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from monitor.errors import TmpwardenError
from monitor.metrics import ProcessingState
from monitor.records import RECORD_KIND
from monitor.report.documents import iter_documents
from monitor.report.incidents import incident_table
from monitor.report.level_changes import level_change_table
from monitor.report.timeline import (
    LEVEL_NAMES,
    RESOURCE_NAMES,
    InvocationRecord,
    PhaseSpan,
    StatedLimits,
    Timeline,
    build_timeline,
    describe_range,
    format_duration,
    format_utc,
)
from monitor.units import format_size

OUTPUT_SUFFIXES = (".png", ".html")
GZIP_MAGIC = b"\x1f\x8b"


class ReportError(TmpwardenError, ValueError):
    """When the log cannot be read or holds no tmpwarden records, or the output is not
    ``.png`` or ``.html``."""


@dataclass(frozen=True, slots=True)
class ReportSummary:
    """What a report holds, for the one line the CLI prints."""

    output: Path
    invocations: int
    samples: int
    events: int
    peak_tmp_percent: float | None
    peak_memory_percent: float | None
    skipped: int = 0
    level_changes: int = 0
    incidents: int = 0

    def __str__(self) -> str:
        parts = [
            _plural(self.invocations, "invocation"),
            _plural(self.samples, "sample"),
            _plural(self.events, "event"),
        ]
        if self.level_changes:
            parts.append(_plural(self.level_changes, "level change record"))
        if self.incidents:
            parts.append(_plural(self.incidents, "incident"))
        if self.peak_tmp_percent is not None:
            parts.append(f"peak /tmp {self.peak_tmp_percent:.1f}%")
        if self.peak_memory_percent is not None:
            parts.append(f"peak memory {self.peak_memory_percent:.1f}%")
        if self.skipped:
            parts.append(f"{_plural(self.skipped, 'malformed record')} skipped")
        return ", ".join(parts)


def read_log(log: Path) -> Timeline:
    """The timeline in ``log`` (plain or gzip, as CloudWatch Logs exports to S3)."""
    try:
        data = log.read_bytes()
    except OSError as exc:
        raise ReportError(
            f"{log}: cannot read the log ({exc.strerror or exc}); give a file holding the "
            "function's log lines or a CloudWatch Logs export"
        ) from exc
    if data.startswith(GZIP_MAGIC):
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as exc:
            raise ReportError(
                f"{log}: not a readable gzip file ({exc}); download the export again or "
                "give the uncompressed log"
            ) from exc
    timeline = build_timeline(iter_documents(data.decode("utf-8-sig", errors="replace")))
    if timeline.records == 0:
        raise ReportError(
            f"{log}: no tmpwarden EMF records found (looked for JSON lines with "
            f"{RECORD_KIND}); capture the function's log or export it from CloudWatch Logs"
        )
    read = {"samples": len(timeline.samples), "invocation": len(timeline.invocations)}
    read["level_change"] = len(timeline.level_changes)
    read["incident"] = len(timeline.incidents)
    for kind, name, count in timeline.missing:
        if read.get(kind):
            continue  # a few odd records among readable ones: skipped and counted
        raise ReportError(
            f"{log}: {count} {kind} record(s) lack the property {name!r} that "
            "monitor/records.py names (renamed, or written by another version of the "
            "monitor); report the log with the monitor version that wrote it"
        )
    if not (
        timeline.samples or timeline.invocations or timeline.level_changes or timeline.incidents
    ):
        raise ReportError(
            f"{log}: {_plural(timeline.records, 'tmpwarden record')} but no samples, "
            "invocation, level change or incident records that could be read; export the "
            "whole log stream, not only some of its lines"
        )
    return timeline


# -- HTML --------------------------------------------------------------------------------

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; }
img { max-width: 100%; height: auto; border: 1px solid #ccc; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: left; vertical-align: top; }
th { background: #f0f0f0; }
tr.critical td { background: #fde2e2; }
tr.warning td { background: #fff1dc; }
.note { color: #555; }
"""

_INVOCATION_COLUMNS = (
    "Request ID",
    "Start (UTC)",
    "Duration",
    "Peak /tmp",
    "Peak /tmp bytes",
    "Peak memory",
    "Events",
    "Callbacks run",
    "Callback errors",
    "Freed",
    "Phases",
    "Progress",
)


def render_html(timeline: Timeline, chart_png: bytes, *, source: str) -> str:
    """One self-contained page: the chart (embedded PNG), a table of invocations and
    a chronological list of what happened."""
    names = ", ".join(timeline.function_names) or "unknown function"
    image = base64.b64encode(chart_png).decode("ascii")
    notes = [
        f"Log: {source}",
        describe_range(timeline),
        f"{_plural(len(timeline.invocations), 'invocation')}, "
        f"{_plural(len(timeline.samples), 'sample')}",
        _limits_text(timeline.limits),
    ]
    if timeline.skipped:
        notes.append(f"{_plural(timeline.skipped, 'malformed record')} skipped")
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>tmpwarden report: {_e(names)}</title>",
        f"<style>{_STYLE}</style></head><body>",
        f"<h1>tmpwarden report: {_e(names)}</h1>",
        f'<p class="note">{" &middot; ".join(_e(n) for n in notes if n)}</p>',
        f'<img src="data:image/png;base64,{image}" '
        f'alt="/tmp and memory usage of {_e(names)} over time">',
        "<h2>Invocations</h2>",
        _invocation_table(timeline.invocations),
        "<h2>What happened</h2>",
        _happenings_table(timeline),
        "<h2>Incidents, as the extension saw the invocation die</h2>",
        incident_table(timeline.incidents),
        "<h2>Level changes, as written at the crossing</h2>",
        level_change_table(timeline.level_changes),
        "</body></html>",
    ]
    return "\n".join(parts) + "\n"


def _invocation_table(invocations: Sequence[InvocationRecord]) -> str:
    if not invocations:
        return '<p class="note">No end-of-invocation records in the log.</p>'
    head = "".join(f"<th>{_e(c)}</th>" for c in _INVOCATION_COLUMNS)
    rows = [f"<table><thead><tr>{head}</tr></thead><tbody>"]
    for inv in invocations:
        cells = (
            inv.request_id or "(none)",
            format_utc(inv.start),
            format_duration(inv.duration),
            f"{inv.peak_tmp_percent:.1f}%",
            format_size(inv.peak_tmp_bytes),
            f"{inv.peak_memory_percent:.1f}% ({format_size(inv.peak_memory_bytes)})",
            _counts_text(inv),
            str(len(inv.callbacks)),
            str(inv.callback_errors),
            f"/tmp {format_size(inv.tmp_freed)}, memory {format_size(inv.memory_freed)}",
            ", ".join(_phase_text(p) for p in inv.phases) or "none",
            _state_text(inv.state),
        )
        level = next(
            (lv for lv in ("critical", "warning") if any(c[1] == lv for c in inv.event_counts)),
            "",
        )
        row_class = f' class="{level}"' if level else ""
        rows.append(f"<tr{row_class}>" + "".join(f"<td>{_e(c)}</td>" for c in cells) + "</tr>")
    rows.append("</tbody></table>")
    return "\n".join(rows)


def _happenings_table(timeline: Timeline) -> str:
    """Events, callback runs and failed phases in time order."""
    rows: list[tuple[float, str, str, str]] = []
    for event in timeline.events:
        what = f"{RESOURCE_NAMES.get(event.resource, event.resource)} " + LEVEL_NAMES.get(
            event.level, event.level
        )
        detail = f"{event.percent:.1f}% used"
        if event.seconds_to_full is not None:
            detail += f", full in about {event.seconds_to_full:.0f} s at that rate"
        rows.append((event.time, event.request_id or "", what, detail))
    for run in timeline.callbacks:
        detail = f"after {run.duration_ms:.0f} ms: freed /tmp {format_size(run.tmp_freed)}, "
        detail += f"memory {format_size(run.memory_freed)}"
        if run.error:
            detail = f"failed: {run.error}"
        rows.append((run.started, run.request_id or "", f"callback {run.name}", detail))
    for phase in timeline.phases:
        if phase.error:
            rows.append((phase.end, phase.request_id or "", f"phase {phase.name}", phase.error))
    if not rows:
        return '<p class="note">No level events, callbacks or failed phases.</p>'
    head = "".join(f"<th>{c}</th>" for c in ("Time (UTC)", "Request ID", "What", "Detail"))
    body = [
        "<tr>" + "".join(f"<td>{_e(c)}</td>" for c in (format_utc(t), rid, what, detail)) + "</tr>"
        for t, rid, what, detail in sorted(rows, key=lambda r: r[0])
    ]
    return "\n".join([f"<table><thead><tr>{head}</tr></thead><tbody>", *body, "</tbody></table>"])


def _counts_text(invocation: InvocationRecord) -> str:
    parts = []
    for resource in ("tmp", "memory"):
        levels = [
            f"{count} {LEVEL_NAMES.get(level, level)}"
            for r, level, count in invocation.event_counts
            if r == resource
        ]
        if levels:
            parts.append(f"{RESOURCE_NAMES[resource]}: {', '.join(levels)}")
    return "; ".join(parts) or "none"


def _state_text(state: ProcessingState) -> str:
    """``cleanup: 12 of 12 files, 3.0 MiB on disk, cleaned up, 0.0 s left`` (the
    processing state the invocation record states)."""
    files = (
        f"{state.files_processed} of {state.total_files} files"
        if state.total_files
        else (f"{state.files_processed} files")
    )
    parts = [files, f"{format_size(state.disk_usage)} on disk"]
    if state.cleanup_performed:
        parts.append("cleaned up")
    if state.estimated_remaining is not None:
        parts.append(f"{format_duration(state.estimated_remaining)} left")
    return f"{state.current_phase or 'no phase'}: {', '.join(parts)}"


def _phase_text(phase: PhaseSpan) -> str:
    text = f"{phase.name} {format_duration(phase.duration_ms / 1000)}"
    return text + f" (failed: {phase.error})" if phase.error else text


def _limits_text(limits: StatedLimits) -> str:
    parts = []
    if limits.tmp_warning is not None and limits.tmp_critical is not None:
        parts.append(f"/tmp warning {limits.tmp_warning:g}%, critical {limits.tmp_critical:g}%")
    if limits.memory_warning is not None and limits.memory_critical is not None:
        parts.append(
            f"memory warning {limits.memory_warning:g}%, critical {limits.memory_critical:g}%"
        )
    return "; ".join(parts)


# -- the command ------------------------------------------------------------------------


def render_report(log: Path, output: Path) -> ReportSummary:
    """Read ``log`` and write the report to ``output`` (``.png`` or ``.html``)."""
    suffix = output.suffix.lower()
    if suffix not in OUTPUT_SUFFIXES:
        raise ReportError(
            f"{output}: unknown report format {suffix or '(no suffix)'!r}; name the output "
            "OUT.png for the chart or OUT.html for the chart with a table per invocation"
        )
    _require_matplotlib(output)
    timeline = read_log(log)
    from monitor.report.chart import draw_chart  # noqa: PLC0415 - matplotlib loads only here

    chart = draw_chart(timeline)
    data = chart if suffix == ".png" else render_html(timeline, chart, source=log.name).encode()
    try:
        output.write_bytes(data)
    except OSError as exc:
        raise ReportError(
            f"{output}: cannot write the report ({exc.strerror or exc}); choose a path in a "
            "writable directory"
        ) from exc
    return ReportSummary(
        output=output,
        invocations=len(timeline.invocations),
        samples=len(timeline.samples),
        events=timeline.event_count,
        peak_tmp_percent=timeline.peak_tmp_percent,
        peak_memory_percent=timeline.peak_memory_percent,
        skipped=timeline.skipped,
        level_changes=len(timeline.level_changes),
        incidents=len(timeline.incidents),
    )


def _require_matplotlib(output: Path) -> None:
    try:
        import matplotlib  # noqa: F401, PLC0415
    except ImportError as exc:
        raise ReportError(
            f"{output}: drawing the report needs matplotlib, which is not installed; "
            "pip install 'tmpwarden[report]' (or pip install matplotlib)"
        ) from exc


def _e(text: str) -> str:
    return html.escape(text, quote=True)


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" + ("" if count == 1 else "s")
