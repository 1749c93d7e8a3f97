"""Incident records on the report's chart (called by :mod:`monitor.report.chart`).

Each ``incident`` record (:class:`~monitor.report.model.Incident`) is marked on both
panels at the time the invocation ended: a vertical line in the critical colour, its
classification written on the /tmp panel, and the samples the extension took before the
death as a dotted line on each panel (the climb as seen from outside the runtime, there
even when the in-process monitor's samples died with it). Imports matplotlib, like the
chart.
"""

from __future__ import annotations

from collections.abc import Sequence

from matplotlib.axes import Axes

from monitor.report.model import Incident, LastSample
from monitor.report.time_axis import TimeAxis

INCIDENT_LABEL = "incident (extension)"
INCIDENT_SAMPLES_LABEL = "samples before an incident"
INCIDENT_COLOR = "#b30000"
LABEL_Y = 104
"""Where the classification is written, in percent of the panel (above 100%)."""


def draw_incidents(
    axes: Axes,
    incidents: Sequence[Incident],
    resource: str,
    time: TimeAxis,
    *,
    labelled: bool,
) -> None:
    """Mark ``incidents`` on ``axes``, the panel of ``resource`` (``tmp`` or
    ``memory``); ``labelled``: write each classification on this panel."""
    for incident in incidents:
        points = [
            (time.x(sample.time), percent)
            for sample in incident.last_samples
            if (percent := _percent(sample, resource)) is not None
        ]
        if points:
            axes.plot(
                [x for x, _ in points],
                [y for _, y in points],
                color=INCIDENT_COLOR,
                linestyle=":",
                linewidth=1.2,
                marker=".",
                markersize=3,
                zorder=4,
                label=INCIDENT_SAMPLES_LABEL,
            )
        x = time.x(incident.time)
        axes.axvline(
            x, color=INCIDENT_COLOR, linewidth=1.6, linestyle="-", zorder=5, label=INCIDENT_LABEL
        )
        if labelled:
            axes.annotate(
                incident.classification.replace("_", " "),
                (x, LABEL_Y),
                xytext=(-4, 0),
                textcoords="offset points",
                ha="right",
                va="bottom",
                fontsize=9,
                fontweight="bold",
                color=INCIDENT_COLOR,
                zorder=6,
            )


def _percent(sample: LastSample, resource: str) -> float | None:
    return sample.tmp_percent if resource == "tmp" else sample.memory_percent
