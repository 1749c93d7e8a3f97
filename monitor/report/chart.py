"""The report's picture: a :class:`~monitor.report.timeline.Timeline` drawn as a PNG.

Two panels sharing the time axis, /tmp and memory in percent of their limits, with
threshold lines, phase bands, level events with what their callbacks did, level change
records with the samples before them, invocation boundaries, and idle time between
invocations collapsed. Imports matplotlib: only ``monitor.report.page`` imports this
module, and only when it draws.
"""

from __future__ import annotations

import io
import itertools
import math
import statistics
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import FixedFormatter, FixedLocator, PercentFormatter
from matplotlib.transforms import ScaledTranslation

from monitor.report.incident_chart import INCIDENT_LABEL, INCIDENT_SAMPLES_LABEL, draw_incidents
from monitor.report.level_change_chart import (
    CHANGE_LABEL,
    LAST_SAMPLES_LABEL,
    draw_level_changes,
    last_sample_peaks,
)
from monitor.report.time_axis import TimeAxis, clock_label
from monitor.report.timeline import (
    LEVEL_NAMES,
    RESOURCE_NAMES,
    CallbackRun,
    InvocationRecord,
    LevelCrossing,
    PhaseSpan,
    Sample,
    Timeline,
    describe_range,
    format_duration,
)
from monitor.units import format_size

WIDTH_PX, HEIGHT_PX, DPI = 1400, 800, 100
GAP_STEPS, MIN_GAP_SECONDS = 10, 5.0
"""The usage lines break where samples are further apart than this (a frozen sandbox)."""
MAX_GAP_LABELS = 20
NEAR_SHARE = 0.06
"""Labels closer than this share of the width are stacked, not overlapped."""
Y_TOP, CALLBACK_Y = 128, 110
LINE_UNITS = 6.5
"""The height of a line of label text, in percent of the panel's scale (about)."""
LEVEL_COLORS = {"warning": "#f28e2b", "predicted_full": "#9467bd", "critical": "#d62728"}
USAGE_COLORS = {"tmp": "#1f77b4", "memory": "#2ca02c"}
LEGEND_ORDER = [
    "/tmp used",
    "memory used",
    "warning threshold",
    "critical threshold",
    "predicted full event",
    "warning event",
    "critical event",
    CHANGE_LABEL,
    LAST_SAMPLES_LABEL,
    INCIDENT_LABEL,
    INCIDENT_SAMPLES_LABEL,
    "callback",
    "callback failed",
    "idle time left out",
]
PHASE_COLORS = ("#dbe9f6", "#fde6cc", "#dcefdc", "#eadcf2", "#fbf3c4", "#e4e4e4", "#f6dbe6")


def draw_chart(timeline: Timeline) -> bytes:
    """The timeline as a PNG of WIDTH_PX x HEIGHT_PX: /tmp and memory in two panels."""
    if not (
        timeline.samples or timeline.invocations or timeline.level_changes or timeline.incidents
    ):
        raise ValueError("a timeline without samples, invocations, level changes or incidents")
    # A bare Figure: no pyplot, no global backend switch, no display; savefig renders
    # PNG with the Agg canvas.
    figure = Figure(figsize=(WIDTH_PX / DPI, HEIGHT_PX / DPI), dpi=DPI, layout="constrained")
    _draw(figure, timeline, TimeAxis.of(timeline))
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI)
    return buffer.getvalue()


def _draw(figure: Figure, timeline: Timeline, time: TimeAxis) -> None:
    tmp_axes, memory_axes = figure.subplots(2, 1, sharex=True)
    limits = timeline.limits
    tmp_title = "/tmp"
    if limits.tmp_total_bytes:
        tmp_title += f" ({limits.tmp_path or '/tmp'}, {format_size(limits.tmp_total_bytes)})"
    memory_title = "memory"
    if limits.memory_limit_bytes:
        memory_title += f" (limit {format_size(limits.memory_limit_bytes)})"
    budget = limits.memory_budget_bytes
    if budget and limits.memory_limit_bytes and budget < limits.memory_limit_bytes:
        memory_title = f"memory of one process (its share {format_size(budget)} of the limit)"
    panels = (
        (tmp_axes, "tmp", tmp_title, limits.tmp_warning, limits.tmp_critical),
        (memory_axes, "memory", memory_title, limits.memory_warning, limits.memory_critical),
    )
    for axes, resource, title, warning, critical in panels:
        _prepare_panel(axes, resource, title + _peak_text(timeline, resource))
        _draw_usage(axes, timeline.samples, resource, time)
        _draw_thresholds(axes, warning, critical)
        events = [e for e in timeline.events if e.resource == resource]
        callbacks = [c for c in timeline.callbacks if c.resource == resource]
        _draw_events(axes, events, callbacks, time)
        _draw_callbacks(axes, callbacks, events, time)
        changes = [c for c in timeline.level_changes if c.resource == resource]
        draw_level_changes(axes, changes, events, time, LEVEL_COLORS)
        draw_incidents(axes, timeline.incidents, resource, time, labelled=axes is tmp_axes)
    _draw_phases(tmp_axes, memory_axes, timeline.phases, time)
    _draw_gaps((tmp_axes, memory_axes), time)
    if len(timeline.invocations) > 1:
        _draw_invocations((tmp_axes, memory_axes), timeline.invocations, time)
    _format_time_axis(memory_axes, timeline, time)
    figure.suptitle(_chart_title(timeline), fontsize=14, fontweight="bold")
    handles, labels = _legend_entries(tmp_axes, memory_axes)
    figure.legend(handles, labels, loc="outside lower center", ncols=min(len(labels), 7))


def _prepare_panel(axes: Axes, resource: str, title: str) -> None:
    axes.set_title(title, loc="left", fontsize=11, fontweight="bold")
    axes.set_ylabel(f"{RESOURCE_NAMES[resource]} used")
    axes.set_ylim(0, Y_TOP)  # room above 100% for phase names and callbacks
    axes.yaxis.set_major_locator(FixedLocator([0, 20, 40, 60, 80, 100]))
    axes.yaxis.set_major_formatter(PercentFormatter(100, decimals=0))
    axes.grid(True, axis="y", color="#dddddd", linewidth=0.8)
    axes.axhline(100, color="#999999", linewidth=0.8)


def _peak_text(timeline: Timeline, resource: str) -> str:
    samples = timeline.samples
    if not samples:
        peaks = [
            (i.peak_tmp_percent, i.peak_tmp_bytes)
            if resource == "tmp"
            else (i.peak_memory_percent, i.peak_memory_bytes)
            for i in timeline.invocations
        ]
        peaks += last_sample_peaks([*timeline.level_changes, *timeline.incidents], resource)
        percent, size = max(peaks, default=(0.0, 0))
        return f": peak {percent:.1f}% ({format_size(size)})"
    peak = max(samples, key=lambda s: _percent(s, resource))
    size = peak.tmp_used if resource == "tmp" else peak.memory_used
    return (
        f": peak {_percent(peak, resource):.1f}% ({format_size(size)}) "
        f"at {clock_label(peak.time, 0.1)} UTC"
    )


def _series(
    samples: Sequence[Sample], resource: str, time: TimeAxis
) -> tuple[list[float], list[float]]:
    """x and y of a usage line, with a break (NaN) across gaps and between invocations."""
    times = [s.time for s in samples]
    steps = [b - a for a, b in itertools.pairwise(times) if b > a]
    gap = max(GAP_STEPS * statistics.median(steps), MIN_GAP_SECONDS) if steps else MIN_GAP_SECONDS
    xs: list[float] = []
    ys: list[float] = []
    previous: Sample | None = None
    for sample in samples:
        if previous is not None and (
            sample.time - previous.time > gap or sample.request_id != previous.request_id
        ):
            xs.append(time.x((sample.time + previous.time) / 2))
            ys.append(math.nan)
        xs.append(time.x(sample.time))
        ys.append(_percent(sample, resource))
        previous = sample
    return xs, ys


def _percent(sample: Sample, resource: str) -> float:
    return sample.tmp_percent if resource == "tmp" else sample.memory_percent


def _draw_usage(axes: Axes, samples: Sequence[Sample], resource: str, time: TimeAxis) -> None:
    if not samples:
        axes.text(
            0.5,
            0.4,
            "no samples records in the log: only events, callbacks and level changes",
            transform=axes.transAxes,
            ha="center",
            color="#555555",
            bbox={"boxstyle": "round,pad=0.3", "fc": "white", "ec": "#cccccc"},
            zorder=7,
        )
        return
    xs, ys = _series(samples, resource, time)
    color = USAGE_COLORS[resource]
    label = f"{RESOURCE_NAMES[resource]} used"
    axes.plot(xs, ys, color=color, linewidth=1.8, label=label, marker="." if len(xs) < 40 else "")
    axes.fill_between(xs, ys, color=color, alpha=0.12, linewidth=0)


def _draw_thresholds(axes: Axes, warning: float | None, critical: float | None) -> None:
    for level, value in (("warning", warning), ("critical", critical)):
        if value is not None:
            axes.axhline(
                value,
                color=LEVEL_COLORS[level],
                linestyle="--",
                linewidth=1.2,
                label=f"{level} threshold",
            )


def _draw_events(
    axes: Axes,
    events: Sequence[LevelCrossing],
    callbacks: Sequence[CallbackRun],
    time: TimeAxis,
) -> None:
    """A dot where the level was crossed, a dotted line, and a label left of the dot
    naming the level and what its callbacks freed or that they failed. Labels of events
    close together are stacked downwards."""
    shift = axes.transData + ScaledTranslation(-6 / 72, 0, axes.figure.dpi_scale_trans)
    near = NEAR_SHARE * (time.x(time.ends[-1]) - time.x(time.starts[0]))
    previous_x, previous_bottom = -math.inf, math.inf
    for event in events:
        color = LEVEL_COLORS.get(event.level, "#7f7f7f")
        name = LEVEL_NAMES.get(event.level, event.level)
        x = time.x(event.time)
        axes.axvline(x, ymax=100 / Y_TOP, color=color, linestyle=":", linewidth=1.4)
        axes.plot(
            [x],
            [event.percent],
            marker="o",
            markersize=8,
            color=color,
            markeredgecolor="white",
            linestyle="",
            zorder=5,
            label=f"{name} event",
        )
        lines = [f"{name} {event.percent:.0f}%"]
        if event.level == "predicted_full" and event.seconds_to_full is not None:
            lines = [f"{name} in ~{event.seconds_to_full:.0f} s"]
        lines += [_effect(run) for run in callbacks if _answers(run, event) and _effect(run)]
        top = event.percent + 3
        if x - previous_x < near:
            top = min(top, previous_bottom - 1)
        previous_x, previous_bottom = x, top - LINE_UNITS * len(lines)
        axes.text(
            x,
            top,
            "\n".join(lines),
            transform=shift,
            ha="right",
            va="top",
            fontsize=8,
            color=color,
            bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.85},
            zorder=6,
        )


def _answers(run: CallbackRun, event: LevelCrossing) -> bool:
    """Whether ``run`` was the callback of ``event``."""
    return (run.level, run.resource) == (event.level, event.resource) and abs(
        run.event_time - event.time
    ) < 0.002


def _effect(run: CallbackRun) -> str:
    """``name freed 200.0 MiB``, ``name failed``, or "" when it changed nothing."""
    if run.error is not None:
        return f"{run.name} failed"
    freed = run.tmp_freed if run.resource == "tmp" else run.memory_freed
    return f"{run.name} freed {format_size(freed)}" if freed > 0 else ""


def _draw_callbacks(
    axes: Axes,
    callbacks: Sequence[CallbackRun],
    events: Sequence[LevelCrossing],
    time: TimeAxis,
) -> None:
    """A marker above 100% per run; runs whose event is not listed (the record lists
    at most 50) say what they did next to the marker."""
    for run in callbacks:
        x = time.x(run.started)
        failed = run.error is not None
        color = LEVEL_COLORS["critical"] if failed else "#333333"
        axes.plot(
            [x],
            [CALLBACK_Y],
            marker="X" if failed else "v",
            markersize=8,
            color=color,
            linestyle="",
            zorder=6,
            label="callback failed" if failed else "callback",
        )
        if _effect(run) and not any(_answers(run, event) for event in events):
            axes.annotate(
                _effect(run),
                (x, CALLBACK_Y),
                xytext=(7, 0),
                textcoords="offset points",
                va="center",
                fontsize=8,
                color=color,
                zorder=6,
            )


def _draw_phases(top: Axes, bottom: Axes, phases: Sequence[PhaseSpan], time: TimeAxis) -> None:
    colors: dict[str, str] = {}
    for index, phase in enumerate(phases):
        color = colors.setdefault(phase.name, PHASE_COLORS[len(colors) % len(PHASE_COLORS)])
        start, end = time.x(phase.start), time.x(max(phase.end, phase.start))
        for axes in (top, bottom):
            axes.axvspan(start, end, color=color, alpha=0.7, linewidth=0, zorder=0)
        label = phase.name + (" (failed)" if phase.error else "")
        top.text(
            start,
            0.985 - 0.06 * (index % 2),
            f" {label}",
            transform=top.get_xaxis_transform(),
            va="top",
            fontsize=9,
            color=LEVEL_COLORS["critical"] if phase.error else "#444444",
            clip_on=True,
        )


def _draw_gaps(panels: Sequence[Axes], time: TimeAxis) -> None:
    """Hatched narrow bands where idle time was left out."""
    gaps = time.gaps
    for index, (idle_start, idle_end) in enumerate(gaps):
        start, end = time.x(idle_start), time.x(idle_end)
        for axes in panels:
            axes.axvspan(
                start,
                end,
                facecolor="white",
                edgecolor="#aaaaaa",
                hatch="//",
                linewidth=0,
                zorder=3,
                label="idle time left out" if index == 0 else None,
            )
        if len(gaps) <= MAX_GAP_LABELS:
            panels[0].text(
                (start + end) / 2,
                0.5,
                f"idle {format_duration(idle_end - idle_start)}",
                transform=panels[0].get_xaxis_transform(),
                rotation=90,
                ha="center",
                va="center",
                fontsize=8,
                color="#555555",
                zorder=4,
                bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none"},
            )


def _draw_invocations(
    panels: Sequence[Axes], invocations: Sequence[InvocationRecord], time: TimeAxis
) -> None:
    for invocation in invocations:
        x = time.x(invocation.start)
        for axes in panels:
            axes.axvline(x, color="#555555", linewidth=1.2, zorder=1)
        panels[-1].text(
            x,
            0.03,
            f" {(invocation.request_id or 'no request id')[:13]}",
            transform=panels[-1].get_xaxis_transform(),
            fontsize=8,
            color="#555555",
            rotation=90,
            va="bottom",
        )


def _format_time_axis(axes: Axes, timeline: Timeline, time: TimeAxis) -> None:
    span = time.x(timeline.end) - time.x(timeline.start)
    pad = max(span * 0.02, 0.05)
    positions, labels = time.ticks(pad)
    axes.xaxis.set_major_locator(FixedLocator(positions))
    axes.xaxis.set_major_formatter(FixedFormatter(labels))
    axes.set_xlim(time.x(timeline.start) - pad, time.x(timeline.end) + pad)
    first = datetime.fromtimestamp(timeline.start, UTC).date()
    last = datetime.fromtimestamp(timeline.end, UTC).date()
    days = f"{first}" if first == last else f"{first} to {last}"
    axes.set_xlabel(f"time (UTC, {days})")


def _chart_title(timeline: Timeline) -> str:
    names = ", ".join(timeline.function_names) or "unknown function"
    return f"{names}: /tmp and memory, {describe_range(timeline)}"


def _legend_entries(*panels: Axes) -> tuple[list[Any], list[str]]:
    """One entry per label across the panels, in LEGEND_ORDER."""
    entries: dict[str, Any] = {}
    for axes in panels:
        handles, labels = axes.get_legend_handles_labels()
        for handle, label in zip(handles, labels, strict=True):
            entries.setdefault(label, handle)
    order = sorted(entries, key=lambda k: LEGEND_ORDER.index(k) if k in LEGEND_ORDER else 99)
    return [entries[k] for k in order], order
