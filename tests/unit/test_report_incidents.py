"""``python -m monitor report`` reads the external extension's incident records
(monitor/report/incidents.py, incident_chart.py): a table with the classification, the
request, the phase and the last samples, and a marker on the timeline -- also for a log
where the runtime was killed before its monitor wrote anything but its level changes."""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import pytest

from monitor import records
from monitor.config import MonitorConfig
from monitor.extension.incidents import IncidentTracker
from monitor.extension.probe import Sample
from monitor.report import read_log, render_report
from monitor.report.documents import iter_documents
from monitor.report.timeline import Timeline, build_timeline
from monitor.shared_state import state_dir
from monitor.sidecar import StorageMonitor
from tests.unit.test_incidents import invoke, platform

MiB = 1024 * 1024
ENDED = 1_796_014_800.0  # 2026-11-30T05:00:00Z, the telemetry events' time


class ClimbingSampler:
    """The extension's last samples: memory climbing 8 MiB a second to the 128 MiB limit,
    /tmp steady at 40 MiB used of 100 MiB."""

    runtime_pid: int | None = os.getpid()

    def sample(self) -> Sample:
        return self.last()[-1]

    def last(self, until: float | None = None) -> list[Sample]:
        return [Sample(ENDED - 9 + i, 40 * MiB, 60 * MiB, (56 + 8 * i) * MiB) for i in range(10)]


def incident_lines(tmp_path: Path) -> list[str]:
    """One out-of-memory incident record, written by the extension's own code, with the
    phase the in-process monitor shared."""
    lines: list[str] = []
    monitor = StorageMonitor(
        MonitorConfig.resolve(None, {"TMPWARDEN_PATH": str(tmp_path), "TMPWARDEN_EMF": "off"}),
        environ={"TMPWARDEN_SHARED_STATE": "on"},
    )
    tracker = IncidentTracker(
        ClimbingSampler(),  # type: ignore[arg-type]
        lines.append,
        namespace="tmpwarden",
        function_name="packaging-fn",
        tmp_path=str(tmp_path),
        state_dir=str(state_dir(tmp_path)),
        memory_limit=128 * MiB,
        clock=lambda: ENDED,
    )
    monitor.begin_invocation("req-oom")
    with monitor.phase("compress"):
        tracker.on_invoke(invoke("req-oom"))
        tracker.on_telemetry(platform("runtimeDone", "req-oom", "error"))
        report = platform("report", "req-oom", "error", maxMemoryUsedMB=128, memorySizeMB=128)
        report["record"]["errorType"] = "Runtime.OutOfMemory"
        tracker.on_telemetry(report)
    monitor.stop()
    assert len(lines) == 1
    return lines


def timeline_of(lines: list[str]) -> Timeline:
    return build_timeline(iter_documents("\n".join(lines)))


def test_an_incident_is_read_with_its_classification_phase_and_last_samples(
    tmp_path: Path,
) -> None:
    timeline = timeline_of(incident_lines(tmp_path))
    [incident] = timeline.incidents
    assert incident.time == ENDED
    assert (incident.classification, incident.request_id) == ("out_of_memory", "req-oom")
    assert (incident.phase, incident.status) == ("compress", "error")
    assert (incident.max_memory_used_mb, incident.memory_size_mb) == (128, 128)
    samples = incident.last_samples
    assert [s.time for s in samples] == [ENDED - 9 + i for i in range(10)]
    assert [s.memory_percent for s in samples] == [100 * (56 + 8 * i) / 128 for i in range(10)]
    assert {s.tmp_percent for s in samples} == {40.0}
    assert timeline.peak_memory_percent == 100 * 128 / 128
    assert timeline.skipped == 0


def test_a_log_of_only_an_incident_makes_a_report_with_its_table(tmp_path: Path) -> None:
    """Killed before anything else was written: the extension's record alone is the report."""
    log = tmp_path / "function.log"
    log.write_text("START RequestId: req-oom\n" + "\n".join(incident_lines(tmp_path)) + "\n")
    assert len(read_log(log).incidents) == 1
    out = tmp_path / "killed.html"
    summary = render_report(log, out)
    print(summary)
    assert str(summary).startswith("0 invocations, 0 samples, 0 events, 1 incident")
    assert summary.incidents == 1
    page = out.read_text()
    assert "Incidents, as the extension saw the invocation die" in page
    [row] = re.findall(r'<tr class="critical">(.*?)</tr>', page)
    cells = re.findall(r"<td>(.*?)</td>", row)
    assert cells[:4] == ["2026-11-30 05:00:00.000", "out of memory", "req-oom", "compress"]
    assert cells[5] == "status error, max memory 128 of 128 MB"
    assert cells[6].startswith("10 over 9.0 s: /tmp 40.0%, memory 56.0 MiB (43.8%) to ")
    assert cells[6].endswith("memory 128.0 MiB (100.0%)")
    render_report(log, tmp_path / "killed.png")
    assert (tmp_path / "killed.png").read_bytes().startswith(b"\x89PNG")


def test_the_chart_marks_the_incident_on_both_panels_with_its_last_samples(
    tmp_path: Path,
) -> None:
    from matplotlib.figure import Figure

    from monitor.report import chart
    from monitor.report.incident_chart import INCIDENT_LABEL, INCIDENT_SAMPLES_LABEL
    from monitor.report.time_axis import TimeAxis

    timeline = timeline_of(incident_lines(tmp_path))
    [incident] = timeline.incidents
    time = TimeAxis.of(timeline)
    figure = Figure()
    chart._draw(figure, timeline, time)
    tmp_axes, memory_axes = figure.axes[:2]
    for axes, resource in ((tmp_axes, "tmp"), (memory_axes, "memory")):
        [mark] = [line for line in axes.get_lines() if line.get_label() == INCIDENT_LABEL]
        assert np.asarray(mark.get_xdata()).tolist() == [time.x(incident.time)] * 2
        [climb] = [line for line in axes.get_lines() if line.get_label() == INCIDENT_SAMPLES_LABEL]
        ys = np.asarray(climb.get_ydata()).tolist()
        expected = [
            s.tmp_percent if resource == "tmp" else s.memory_percent for s in incident.last_samples
        ]
        assert ys == pytest.approx(expected)
    assert [t.get_text() for t in tmp_axes.texts if t.get_text() == "out of memory"] == [
        "out of memory"
    ]
    _, labels = chart._legend_entries(tmp_axes, memory_axes)
    assert INCIDENT_LABEL in labels and INCIDENT_SAMPLES_LABEL in labels


def test_an_unreadable_incident_is_skipped_and_counted(tmp_path: Path) -> None:
    [line] = incident_lines(tmp_path)
    renamed = line.replace(f'"{records.CLASSIFICATION}":', '"Kind":')
    mistyped = line.replace('"Phase":"compress"', '"Phase":7')
    timeline = timeline_of([renamed, mistyped, line])
    assert len(timeline.incidents) == 1
    assert timeline.skipped == 2
    assert timeline.missing == (("incident", records.CLASSIFICATION, 1),)
