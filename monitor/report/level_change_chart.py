"""Level change records on the report's chart (called by :mod:`monitor.report.chart`).

Each ``level_change`` record (:class:`~monitor.report.model.LevelChange`) is drawn on the
panel of the resource that crossed: a diamond at the crossing, and the samples the record
carries from before it as a dashed line, the climb as the monitor wrote it the moment it
happened. A crossing that no invocation record lists (the invocation was killed, or its
record was lost) is labelled, since nothing else on the chart shows it. Imports
matplotlib, like the chart.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from matplotlib.axes import Axes

from monitor.report.model import Incident, LevelChange, LevelCrossing
from monitor.report.time_axis import TimeAxis

CHANGE_LABEL = "level change record"
LAST_SAMPLES_LABEL = "samples before a level change"
LAST_SAMPLES_COLOR = "#444444"
SAME_CROSSING_SECONDS = 0.002
"""An invocation record's event and a level change record of the same crossing carry the
same sample's time, each rounded to the millisecond."""


def draw_level_changes(
    axes: Axes,
    changes: Sequence[LevelChange],
    events: Sequence[LevelCrossing],
    time: TimeAxis,
    colors: Mapping[str, str],
) -> None:
    """Draw ``changes`` (of this panel's resource) on ``axes``; ``events`` are the
    panel's crossings listed by invocation records, ``colors`` the level colours."""
    for change in changes:
        color = colors.get(change.level, "#7f7f7f")
        points = [
            (time.x(sample.time), percent)
            for sample in change.last_samples
            if (percent := change.last_percent(sample)) is not None
        ]
        if points:
            axes.plot(
                [x for x, _ in points],
                [y for _, y in points],
                color=LAST_SAMPLES_COLOR,
                linestyle="--",
                linewidth=1.0,
                marker=".",
                markersize=3,
                zorder=4,
                label=LAST_SAMPLES_LABEL,
            )
        x = time.x(change.time)
        axes.plot(
            [x],
            [change.percent],
            marker="D",
            markersize=7,
            color=color,
            markeredgecolor="black",
            linestyle="",
            zorder=6,
            label=CHANGE_LABEL,
        )
        if not any(is_listed(change, event) for event in events):
            axes.annotate(
                f"{change.level.replace('_', ' ')} {change.percent:.0f}%\n(no invocation record)",
                (x, change.percent),
                xytext=(6, -4),
                textcoords="offset points",
                va="top",
                fontsize=8,
                color=color,
                zorder=6,
            )


def last_sample_peaks(
    changes: Sequence[LevelChange | Incident], resource: str
) -> list[tuple[float, int]]:
    """(percent, bytes) of ``resource`` in every sample the level changes (and
    incidents) carry: the peaks a log without samples records still shows."""
    peaks: list[tuple[float, int]] = []
    for change in changes:
        for sample in change.last_samples:
            if resource == "tmp":
                peaks.append((sample.tmp_percent, sample.tmp_used))
            elif sample.memory_percent is not None:
                peaks.append((sample.memory_percent, sample.memory_used))
    return peaks


def is_listed(change: LevelChange, event: LevelCrossing) -> bool:
    """Whether ``event`` (from an invocation record) is the crossing ``change`` wrote."""
    return (event.level, event.resource) == (change.level, change.resource) and abs(
        event.time - change.time
    ) < SAME_CROSSING_SECONDS
