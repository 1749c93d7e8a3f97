"""The report: EMF lines written by a real StorageMonitor, read back in every shape a
log reaches us (raw, prefixed, CloudWatch events, an events export, gzip), drawn."""

from __future__ import annotations

import base64
import gzip
import html
import io
import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pytest

from monitor import records
from monitor.callbacks import MonitorEvent
from monitor.cli import main
from monitor.config import MonitorConfig
from monitor.emf import MemorySink
from monitor.errors import TmpwardenError
from monitor.invocation import InvocationRecord
from monitor.metrics import ProcessingState
from monitor.report import ReportError, ReportSummary, read_log, render_report
from monitor.report.documents import iter_documents
from monitor.report.timeline import Timeline, build_timeline, format_duration
from monitor.sampler import Reading
from monitor.sidecar import StorageMonitor

MIB = 1024 * 1024
T0 = 1_795_000_000.0  # 2026-11-18T11:06:40Z
STEP = 0.2  # two 100 ms buckets: every sample gets a bucket of its own, on the grid
FUNCTION = "model-packager"
NOISE = [
    "START RequestId: 1f2e3d4c-0000-4000-8000-000000000001 Version: $LATEST",
    "packaging s3://models/llama.tar.gz -> s3://models/llama.zip",
    '{"level": "INFO", "message": "extracting", "service": "packager"}',
    '{"_aws": {"Timestamp": 1795000000000, "CloudWatchMetrics": [{"Namespace": "orders", '
    '"Dimensions": [["service"]], "Metrics": [{"Name": "Orders", "Unit": "Count"}]}]}, '
    '"service": "orders", "Orders": [1.0]}',
    "[1, 2, 3]",
    '{"TmpwardenRecord": "samples", "SampleStart": 17950',  # cut short
    "END RequestId: 1f2e3d4c-0000-4000-8000-000000000001",
    "REPORT RequestId: 1f2e3d4c-0000-4000-8000-000000000001\tDuration: 41234.56 ms\t"
    "Max Memory Used: 912 MB",
]


@pytest.fixture(autouse=True)
def _local_emf(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_EMF_ENVIRONMENT", "Local")


# -- a real monitor on a fake host ---------------------------------------------------------


@dataclass
class FakeHost:
    """A /tmp and a process whose usage the test sets; time the test advances."""

    total: int = 512 * MIB
    used: int = 8 * MIB
    rss: int = 96 * MIB
    now: float = T0
    seen: dict[float, tuple[int, int]] = field(default_factory=dict)
    """Sample time -> the highest (tmp used, rss) sampled then."""

    def read(self) -> Reading:
        return Reading(self.total, self.total - self.used, self.used, self.rss)

    def clock(self) -> float:
        return self.now


@dataclass
class Run:
    """What a monitored run wrote, and what the monitor itself said about it."""

    host: FakeHost
    monitor: StorageMonitor
    sink: MemorySink
    summaries: list[InvocationRecord] = field(default_factory=list)

    def sample(self, *, tmp: int = 0, rss: int = 0) -> None:
        """Advance one step, change usage, take a sample and let callbacks finish."""
        host = self.host
        host.now += STEP
        host.used = min(host.used + tmp, host.total)
        host.rss += rss
        used, rss_seen = host.seen.get(host.now, (0, 0))
        host.seen[host.now] = (max(used, host.used), max(rss_seen, host.rss))
        self.monitor.sample_now()
        assert self.monitor.drain_callbacks(5.0)  # callbacks change usage after the sample


def make_run(monkeypatch: pytest.MonkeyPatch, *, callbacks: bool = True) -> Run:
    host = FakeHost()
    sink = MemorySink()
    config = MonitorConfig.resolve(
        path="/tmp",
        sample_interval=0.1,
        tracing="off",
        predict_horizon=10,
        function_name=FUNCTION,
        environ={},
    )
    monitor = StorageMonitor(
        config,
        sink=sink,
        probe=host.read,
        memory_limit=1024 * MIB,
        clock=host.clock,
        wall_clock=host.clock,
        environ={},
    )
    # No sampling thread: every sample is the test's, at the test's time.
    monkeypatch.setattr(monitor, "start", lambda: monitor)
    run = Run(host, monitor, sink)
    if callbacks:

        def free_scratch(event: MonitorEvent) -> None:
            host.used -= 200 * MIB

        def drop_caches(event: MonitorEvent) -> None:
            host.rss -= 150 * MIB

        def page_oncall(event: MonitorEvent) -> None:
            raise RuntimeError("pager <unreachable> & retrying")

        monitor.add_callback("critical", free_scratch, resource="tmp")
        monitor.add_callback("warning", page_oncall, resource="tmp")
        monitor.add_callback("warning", drop_caches, resource="memory")
    return run


def begin(run: Run, request_id: str) -> None:
    run.monitor.begin_invocation(request_id)
    run.host.seen.setdefault(run.host.now, (run.host.used, run.host.rss))


def end(run: Run) -> InvocationRecord:
    run.host.now += STEP
    summary = run.monitor.end_invocation()
    run.host.seen[run.host.now] = (run.host.used, run.host.rss)
    run.summaries.append(summary)
    return summary


def incident(run: Run) -> None:
    """/tmp fills during extract (predicted full, warning, critical, cleanup), memory
    climbs during compress (warning, caches dropped): over 100 buckets, split lines."""
    begin(run, "req-1")
    with run.monitor.phase("plan"):
        for _ in range(4):
            run.sample()
    with run.monitor.phase("download"):
        for _ in range(24):
            run.sample(tmp=2 * MIB, rss=MIB)
    with run.monitor.phase("extract"):
        for _ in range(40):
            run.sample(tmp=12 * MIB)
        for _ in range(16):
            run.sample(tmp=MIB)
    with run.monitor.phase("compress"):
        for _ in range(64):
            run.sample(rss=12 * MIB)
    with run.monitor.phase("upload"):
        for _ in range(20):
            run.sample(tmp=-8 * MIB, rss=-20 * MIB)
    end(run)


def quiet(run: Run, request_id: str = "req-2", gap: float = 30.0) -> None:
    """A short invocation after a pause, far below every threshold."""
    run.host.now += gap
    run.host.used, run.host.rss = 20 * MIB, 120 * MIB
    begin(run, request_id)
    with run.monitor.phase("plan"):
        for _ in range(6):
            run.sample(tmp=MIB)
    end(run)


@pytest.fixture
def incident_run(monkeypatch: pytest.MonkeyPatch) -> Run:
    run = make_run(monkeypatch)
    incident(run)
    quiet(run)
    return run


# -- the shapes a log comes in ---------------------------------------------------------------


def _stamp(line: str) -> datetime:
    """The EMF document's timestamp; noise lines get the start of the run."""
    try:
        millis = json.loads(line)["_aws"]["Timestamp"]
    except (ValueError, KeyError, TypeError):
        millis = T0 * 1000
    return datetime.fromtimestamp(millis / 1000, UTC)


def with_noise(lines: list[str]) -> list[str]:
    mixed = list(NOISE[:3])
    for index, line in enumerate(lines):
        mixed.append(line)
        mixed.append(NOISE[3 + index % (len(NOISE) - 3)])
    return mixed


def tab_prefixed(lines: list[str]) -> str:
    return "\n".join(
        f"{_stamp(line).isoformat(timespec='milliseconds')[:-6]}Z\t{line}" for line in lines
    )


def stream_prefixed(lines: list[str]) -> str:
    stream = "2026/11/18/[$LATEST]0f1e2d3c4b5a69788796a5b4c3d2e1f0"
    return "\n".join(f"{_stamp(line):%Y-%m-%dT%H:%M:%S} {stream} {line}" for line in lines)


def cloudwatch_events(lines: list[str]) -> list[dict[str, object]]:
    return [
        {
            "logStreamName": "2026/11/18/[$LATEST]0f1e2d3c",
            "timestamp": int(_stamp(line).timestamp() * 1000),
            "message": line + "\n",
            "ingestionTime": int(_stamp(line).timestamp() * 1000) + 300,
            "eventId": str(index),
        }
        for index, line in enumerate(lines)
    ]


def event_lines(lines: list[str]) -> str:
    return "\n".join(json.dumps(event) for event in cloudwatch_events(lines))


def filter_log_events(lines: list[str]) -> str:
    return json.dumps({"events": cloudwatch_events(lines), "searchedLogStreams": []}, indent=4)


def timeline_of(text: str) -> Timeline:
    return build_timeline(iter_documents(text))


def write_log(tmp_path: Path, lines: list[str], name: str = "function.log") -> Path:
    log = tmp_path / name
    log.write_text("\n".join(with_noise(lines)) + "\n")
    return log


# -- reading -------------------------------------------------------------------------------


def test_raw_lines_give_every_sample_invocation_and_limit(incident_run: Run) -> None:
    timeline = timeline_of("\n".join(incident_run.sink.lines))
    host = incident_run.host
    assert timeline.function_names == (FUNCTION,)
    assert [i.request_id for i in timeline.invocations] == ["req-1", "req-2"]
    assert timeline.skipped == 0
    # Every sample time, once, with the highest usage sampled then.
    assert [round(s.time, 3) for s in timeline.samples] == sorted(round(t, 3) for t in host.seen)
    for sample in timeline.samples:
        used, rss = host.seen[min(host.seen, key=lambda t: abs(t - sample.time))]
        assert (sample.tmp_used, sample.memory_used) == (used, rss)
        assert sample.tmp_available == host.total - used
        assert sample.tmp_percent == pytest.approx(100 * used / host.total, abs=0.01)
        assert sample.memory_percent == pytest.approx(100 * rss / (1024 * MIB), abs=0.01)
    limits = timeline.limits
    assert (limits.tmp_path, limits.tmp_total_bytes, limits.memory_limit_bytes) == (
        "/tmp",
        512 * MIB,
        1024 * MIB,
    )
    assert (limits.tmp_warning, limits.tmp_critical) == (80.0, 90.0)
    assert (limits.memory_warning, limits.memory_critical) == (80.0, 90.0)


@pytest.mark.parametrize(
    "shape",
    [tab_prefixed, stream_prefixed, event_lines, filter_log_events],
    ids=["tab-prefix", "stream-prefix", "cloudwatch-events", "filter-log-events"],
)
def test_every_line_shape_reads_the_same(
    incident_run: Run, shape: Callable[[list[str]], str]
) -> None:
    lines = incident_run.sink.lines
    expected = timeline_of("\n".join(lines))
    assert timeline_of(shape(with_noise(lines))) == expected


def test_message_holding_a_prefixed_line_and_json_log_format(incident_run: Run) -> None:
    lines = incident_run.sink.lines
    expected = timeline_of("\n".join(lines))
    prefixed = tab_prefixed(lines).splitlines()
    wrapped = "\n".join(json.dumps({"timestamp": 0, "message": p}) for p in prefixed)
    assert timeline_of(wrapped) == expected
    as_objects = "\n".join(json.dumps({"message": json.loads(line)}) for line in lines)
    assert timeline_of(as_objects) == expected


def test_gzip_export_is_read(incident_run: Run, tmp_path: Path) -> None:
    lines = incident_run.sink.lines
    log = tmp_path / "000000.gz"
    log.write_bytes(gzip.compress(tab_prefixed(with_noise(lines)).encode()))
    assert read_log(log) == timeline_of("\n".join(lines))


def test_noise_is_ignored_and_malformed_records_are_counted(incident_run: Run) -> None:
    lines = incident_run.sink.lines
    expected = timeline_of("\n".join(lines))
    odd = [
        '{"TmpwardenRecord": "samples", "SampleStart": "yesterday", "TmpUsedBytes": 1}',
        '{"TmpwardenRecord": "invocation", "InvocationStart": null}',
        '{"TmpwardenRecord": "future-kind", "Anything": [1, 2]}',
        'prefix {not json} {"TmpwardenRecord": "phase", "PhaseDuration": 1.0}',
    ]
    timeline = timeline_of("\n".join(with_noise(lines) + odd))
    assert timeline.samples == expected.samples
    assert timeline.invocations == expected.invocations
    assert timeline.skipped == 2
    assert timeline.records == expected.records + len(odd)
    assert timeline_of("\n".join(NOISE)).records == 0


def test_a_single_value_is_a_bare_number(monkeypatch: pytest.MonkeyPatch) -> None:
    run = make_run(monkeypatch, callbacks=False)
    run.host.used = 100 * MIB
    begin(run, "req-one")
    run.monitor.end_invocation()  # same instant: one bucket
    samples_line = next(line for line in run.sink.lines if '"samples"' in line)
    document = json.loads(samples_line)
    assert isinstance(document["TmpUsedBytes"], int)
    assert isinstance(document["MemoryUsedPercent"], float)
    invocation = json.loads(next(line for line in run.sink.lines if '"invocation"' in line))
    assert isinstance(invocation["PeakTmpUsedBytes"], int)
    timeline = timeline_of("\n".join(run.sink.lines))
    assert [(s.time, s.tmp_used, s.tmp_percent) for s in timeline.samples] == [
        (T0, 100 * MIB, 19.53)
    ]
    assert timeline.invocations[0].peak_tmp_bytes == 100 * MIB


@pytest.mark.parametrize("buckets", [101, 250])
def test_split_documents_are_joined(monkeypatch: pytest.MonkeyPatch, buckets: int) -> None:
    run = make_run(monkeypatch, callbacks=False)
    begin(run, "req-long")
    for _ in range(buckets - 1):
        run.sample(tmp=MIB)
    run.monitor.flush()
    documents = [json.loads(line) for line in run.sink.lines]
    assert len(documents) == -(-buckets // 100)  # at most 100 values per document
    assert documents[0]["SampleStart"] == round(T0 * 1000)
    for document in documents:  # each document stands on its own: start, offsets, values
        values = document["TmpUsedBytes"]
        count = len(values) if isinstance(values, list) else 1
        assert len(document["SampleOffsetsMs"]) == count <= 100
    # Other documents and noise between the parts do not matter.
    other = make_run(monkeypatch, callbacks=False)
    other.host.now = T0 + 1000
    begin(other, "req-other")
    other.monitor.end_invocation()
    mixed = [run.sink.lines[0], *NOISE, *other.sink.lines, *run.sink.lines[1:]]
    timeline = timeline_of("\n".join(mixed))
    mine = [s for s in timeline.samples if s.request_id == "req-long"]
    assert len(mine) == buckets
    assert [round(s.time, 3) for s in mine] == sorted(round(t, 3) for t in run.host.seen)
    assert [s.tmp_used for s in mine] == [used for _, (used, _) in sorted(run.host.seen.items())]
    assert timeline.skipped == 0


def test_an_incomplete_split_document_keeps_what_arrived(monkeypatch: pytest.MonkeyPatch) -> None:
    run = make_run(monkeypatch, callbacks=False)
    begin(run, "req-cut")
    for _ in range(149):
        run.sample(tmp=MIB)
    run.monitor.flush()
    timeline = timeline_of(run.sink.lines[0])  # the second part was lost
    assert len(timeline.samples) == 100
    assert timeline.samples[-1].time == pytest.approx(T0 + 99 * STEP)


def test_events_phases_and_callbacks_at_their_times(incident_run: Run) -> None:
    timeline = timeline_of("\n".join(incident_run.sink.lines))
    first, second = timeline.invocations
    summary = incident_run.summaries[0]
    assert (first.start, first.end) == pytest.approx((summary.started, summary.ended), abs=1e-3)
    assert [(e.level, e.resource) for e in first.events] == [
        ("predicted_full", "tmp"),
        ("warning", "tmp"),
        ("critical", "tmp"),
        ("predicted_full", "tmp"),  # re-armed by the cleanup, /tmp fills again
        ("warning", "memory"),
    ]
    for parsed, event in zip(first.events, summary.events, strict=True):
        assert parsed.time == pytest.approx(event.time, abs=1e-3)
        assert parsed.percent == pytest.approx(event.fraction * 100, abs=0.01)
        assert parsed.request_id == "req-1"
    # The samples at those times show the crossing.
    at = {round(s.time, 3): s for s in timeline.samples}
    critical = next(e for e in first.events if e.level == "critical")
    assert at[round(critical.time, 3)].tmp_percent >= 90
    memory = next(e for e in first.events if e.resource == "memory")
    assert at[round(memory.time, 3)].memory_percent >= 80
    assert [p.name for p in first.phases] == ["plan", "download", "extract", "compress", "upload"]
    for parsed_phase, phase in zip(first.phases, summary.phases, strict=True):
        assert (parsed_phase.start, parsed_phase.end) == pytest.approx(
            (phase.start, phase.end), abs=1e-3
        )
        assert parsed_phase.peak_tmp_bytes == phase.peaks.tmp_used
    extract = first.phases[2]
    assert extract.start <= critical.time <= extract.end
    runs = {c.name: c for c in first.callbacks}
    assert runs["free_scratch"].tmp_freed == 200 * MIB
    assert runs["free_scratch"].started == pytest.approx(critical.time, abs=1e-3)
    assert runs["drop_caches"].memory_freed == 150 * MIB
    assert runs["page_oncall"].error == "RuntimeError: pager <unreachable> & retrying"
    assert (first.tmp_freed, first.memory_freed, first.callback_errors) == (200 * MIB, 150 * MIB, 1)
    assert first.event_counts == (
        ("tmp", "warning", 1),
        ("tmp", "critical", 1),
        ("tmp", "predicted_full", 2),
        ("memory", "warning", 1),
    )
    assert (second.request_id, second.events, second.event_total) == ("req-2", (), 0)
    assert timeline.event_count == 5
    assert timeline.peak_tmp_percent == pytest.approx(summary.peaks.tmp_fraction * 100, abs=0.01)


# -- errors --------------------------------------------------------------------------------


def test_no_records_is_a_clear_error(tmp_path: Path) -> None:
    log = tmp_path / "other-function.log"
    log.write_text("\n".join(NOISE) + "\n")
    out = tmp_path / "out.png"
    with pytest.raises(ReportError) as caught:
        render_report(log, out)
    message = str(caught.value)
    assert message.startswith(f"{log}: no tmpwarden EMF records found")
    assert "TmpwardenRecord" in message and "CloudWatch Logs" in message
    assert isinstance(caught.value, TmpwardenError) and isinstance(caught.value, ValueError)
    assert not out.exists()


def test_empty_log_is_a_clear_error(tmp_path: Path) -> None:
    log = tmp_path / "empty.log"
    log.write_text("")
    with pytest.raises(ReportError, match="no tmpwarden EMF records"):
        read_log(log)


def test_records_without_samples_or_invocations_are_an_error(tmp_path: Path) -> None:
    log = tmp_path / "phases.log"
    log.write_text('{"TmpwardenRecord": "phase", "PhaseDuration": 12.5}\n')
    with pytest.raises(ReportError, match="1 tmpwarden record but no samples"):
        read_log(log)


# -- the schema (monitor/records.py) -----------------------------------------------------


@pytest.mark.parametrize(
    ("written", "renamed", "kind"),
    [
        (records.INVOCATION_START, "InvocationBegin", "invocation"),
        (records.SAMPLE_OFFSETS_MS, "SampleOffsetMs", "samples"),
    ],
)
def test_a_renamed_property_fails_the_report_naming_it(
    incident_run: Run, tmp_path: Path, written: str, renamed: str, kind: str
) -> None:
    """A property renamed on the writing side (or a log of another schema) is not read
    as an empty report: the reader names the property the schema requires."""
    lines = [line.replace(f'"{written}"', f'"{renamed}"') for line in incident_run.sink.lines]
    assert any(renamed in line for line in lines)
    with pytest.raises(ReportError) as caught:
        read_log(write_log(tmp_path, lines))
    message = str(caught.value)
    assert f"{kind} record(s) lack the property {written!r}" in message
    assert "monitor/records.py" in message


def test_a_few_records_lacking_a_property_are_skipped_not_fatal(
    incident_run: Run, tmp_path: Path
) -> None:
    lines = [*incident_run.sink.lines, '{"TmpwardenRecord": "invocation", "RequestId": "x"}']
    timeline = read_log(write_log(tmp_path, lines))
    assert len(timeline.invocations) == 2
    assert timeline.missing == (("invocation", records.INVOCATION_START, 1),)


def test_the_processing_state_is_read_back_as_written(monkeypatch: pytest.MonkeyPatch) -> None:
    run = make_run(monkeypatch, callbacks=False)
    begin(run, "req-state")
    with run.monitor.phase("compress"):
        run.sample(tmp=MIB)
        run.monitor.update_state(
            files_processed=7,
            total_files=9,
            disk_usage=3 * MIB,
            cleanup_performed=True,
            estimated_remaining=1.25,
        )
    written = end(run).state
    [invocation] = timeline_of("\n".join(run.sink.lines)).invocations
    assert invocation.state == written
    assert written == ProcessingState("compress", 7, 9, 3 * MIB, True, 1.25)


@pytest.mark.parametrize("name", ["missing.log", "a-directory"])
def test_unreadable_log_is_a_clear_error(tmp_path: Path, name: str) -> None:
    (tmp_path / "a-directory").mkdir()
    log = tmp_path / name
    with pytest.raises(ReportError, match=re.escape(f"{log}: cannot read the log")):
        render_report(log, tmp_path / "out.html")


def test_broken_gzip_is_a_clear_error(tmp_path: Path) -> None:
    log = tmp_path / "000000.gz"
    log.write_bytes(gzip.compress(b'{"TmpwardenRecord": "samples"}\n' * 50)[:40])
    with pytest.raises(ReportError, match="not a readable gzip file"):
        read_log(log)


@pytest.mark.parametrize("name", ["out.pdf", "out.svg", "out", "out.png.txt"])
def test_unknown_output_suffix_is_a_clear_error(tmp_path: Path, name: str) -> None:
    out = tmp_path / name
    # Checked first: the log is not even read.
    with pytest.raises(ReportError, match="unknown report format") as caught:
        render_report(tmp_path / "missing.log", out)
    assert str(caught.value).startswith(f"{out}:")
    assert "OUT.png" in str(caught.value) and "OUT.html" in str(caught.value)
    assert not out.exists()


def test_unwritable_output_is_a_clear_error(incident_run: Run, tmp_path: Path) -> None:
    log = write_log(tmp_path, incident_run.sink.lines)
    out = tmp_path / "no-such-dir" / "out.png"
    with pytest.raises(ReportError, match="cannot write the report"):
        render_report(log, out)


def test_missing_matplotlib_says_what_to_install(
    incident_run: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = write_log(tmp_path, incident_run.sink.lines)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    out = tmp_path / "out.png"
    with pytest.raises(ReportError, match=re.escape("pip install 'tmpwarden[report]'")) as caught:
        render_report(log, out)
    assert str(caught.value).startswith(f"{out}: drawing the report needs matplotlib")


def test_importing_monitor_does_not_load_matplotlib() -> None:
    code = (
        "import sys, monitor, monitor.report, monitor.report.timeline, monitor.cli; "
        "assert 'matplotlib' not in sys.modules, 'matplotlib imported'"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False, env=env
    )
    assert result.returncode == 0, result.stderr


# -- output --------------------------------------------------------------------------------


def test_png_is_a_real_picture(incident_run: Run, tmp_path: Path) -> None:
    from matplotlib.image import imread

    log = write_log(tmp_path, incident_run.sink.lines)
    out = tmp_path / "incident.png"
    summary = render_report(log, out)
    data = out.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    assert 30_000 < len(data) < 2_000_000
    pixels = imread(out)
    assert pixels.shape[:2] == (800, 1400)
    assert pixels.std() > 0.05  # not a blank canvas
    assert summary == ReportSummary(
        output=out,
        invocations=2,
        samples=len(incident_run.host.seen),
        events=5,
        peak_tmp_percent=summary.peak_tmp_percent,
        peak_memory_percent=summary.peak_memory_percent,
        level_changes=5,
    )
    assert summary.peak_tmp_percent is not None and summary.peak_tmp_percent > 90


def test_png_suffix_is_case_insensitive(incident_run: Run, tmp_path: Path) -> None:
    log = write_log(tmp_path, incident_run.sink.lines)
    render_report(log, tmp_path / "INCIDENT.PNG")
    assert (tmp_path / "INCIDENT.PNG").read_bytes().startswith(b"\x89PNG")


def _embedded_png(page: str) -> bytes:
    match = re.search(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert match is not None, "no embedded PNG"
    return base64.b64decode(match.group(1))


def test_html_is_self_contained_with_a_row_per_invocation(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    run = make_run(monkeypatch)
    incident(run)
    quiet(run, request_id='<script>alert("x")</script>&req')
    log = write_log(tmp_path, run.sink.lines, name="<odd> & name.log")
    out = tmp_path / "incident.html"
    render_report(log, out)
    page = out.read_text()
    assert page.startswith("<!DOCTYPE html>")
    assert _embedded_png(page).startswith(b"\x89PNG")
    # No external assets, and nothing from the log left unescaped.
    assert not re.search(r"<(script|link|iframe)\b", page)
    assert "http://" not in page and "https://" not in page
    escaped_id = html.escape('<script>alert("x")</script>&req')
    assert "<td>req-1</td>" in page
    assert f"<td>{escaped_id}</td>" in page
    assert html.escape("<odd> & name.log") in page
    assert html.escape("RuntimeError: pager <unreachable> & retrying") in page
    assert "<unreachable>" not in page
    rows = re.findall(r"<tr( class=\"\w+\")?><td>", page)
    assert len(rows) >= 2
    assert '<tr class="critical"><td>req-1</td>' in page
    for text in (
        "/tmp: 1 warning, 1 critical, 2 predicted full",
        "memory: 1 warning",
        "/tmp 200.0 MiB, memory 150.0 MiB",
        "plan ",
        "extract ",
        "compress ",
        "callback free_scratch",
        "/tmp warning 80%, critical 90%",
    ):
        assert html.escape(text) in page, text


def test_html_for_a_log_without_invocation_records(incident_run: Run, tmp_path: Path) -> None:
    samples_only = [line for line in incident_run.sink.lines if '"samples"' in line]
    log = write_log(tmp_path, samples_only)
    out = tmp_path / "samples.html"
    summary = render_report(log, out)
    assert summary.invocations == 0 and summary.samples == len(incident_run.host.seen)
    assert "No end-of-invocation records" in out.read_text()


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0.85, "850 ms"),
        (41.24, "41.2 s"),
        (179.6, "3 min 0 s"),
        (725, "12 min 5 s"),
        (12_000, "3 h 20 min"),
    ],
)
def test_durations_for_people(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


def test_summary_line() -> None:
    summary = ReportSummary(Path("out.png"), 3, 412, 5, 91.23, 40.06)
    assert (
        str(summary) == "3 invocations, 412 samples, 5 events, peak /tmp 91.2%, peak memory 40.1%"
    )
    one = ReportSummary(Path("out.png"), 1, 1, 1, None, None, skipped=1)
    assert str(one) == "1 invocation, 1 sample, 1 event, 1 malformed record skipped"


# -- through the command line --------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".png", ".html"])
def test_cli_writes_the_report(incident_run: Run, tmp_path: Path, suffix: str) -> None:
    log = tmp_path / "export.json"
    log.write_text(filter_log_events(with_noise(incident_run.sink.lines)))
    out = tmp_path / f"report{suffix}"
    stdout, stderr = io.StringIO(), io.StringIO()
    assert main(["report", str(log), "-o", str(out)], out=stdout, err=stderr) == 0
    assert stderr.getvalue() == ""
    assert out.stat().st_size > 10_000
    assert stdout.getvalue().startswith(f"wrote {out}: 2 invocations, ")
    assert "5 events, 5 level change records, peak /tmp 9" in stdout.getvalue()


def test_cli_reports_errors_in_one_line(tmp_path: Path) -> None:
    log = tmp_path / "noise.log"
    log.write_text("\n".join(NOISE))
    stdout, stderr = io.StringIO(), io.StringIO()
    code = main(["report", str(log), "-o", str(tmp_path / "out.png")], out=stdout, err=stderr)
    assert code == 1
    assert stderr.getvalue().count("\n") == 1
    assert stderr.getvalue().startswith(f"error: {log}: no tmpwarden EMF records found")


# -- level change records: the last word before an out-of-memory kill ----------------------


def _level_change_lines(run: Run) -> list[str]:
    kind = f'"{records.RECORD_KIND}": "{records.RecordKind.LEVEL_CHANGE.value}"'
    return [line for line in run.sink.lines if kind in line]


def test_level_changes_are_read_with_the_samples_before_them(incident_run: Run) -> None:
    timeline = timeline_of("\n".join(incident_run.sink.lines))
    first = timeline.invocations[0]
    changes = timeline.level_changes
    assert [(c.level, c.resource) for c in changes] == [(e.level, e.resource) for e in first.events]
    for change, event in zip(changes, first.events, strict=True):
        assert change.time == pytest.approx(event.time, abs=1e-3)
        assert change.percent == pytest.approx(event.percent, abs=0.01)
        assert (change.request_id, change.process_id) == ("req-1", os.getpid())
        samples = change.last_samples
        # the climb up to the crossing: oldest first, none after it, the last one crossed
        assert len(samples) >= 10
        assert [s.time for s in samples] == sorted(s.time for s in samples)
        assert samples[-1].time == pytest.approx(change.time, abs=1e-3)
        last = change.last_percent(samples[-1])
        assert last == pytest.approx(change.percent, abs=0.01)
        # each as the host was when sampled
        for sample in samples:
            used, rss = incident_run.host.seen[
                min(incident_run.host.seen, key=lambda t: abs(t - sample.time))
            ]
            assert (sample.tmp_used, sample.memory_used) == (used, rss)
    critical = next(c for c in changes if c.level == "critical")
    assert critical.phase == "extract"
    assert critical.last_samples[0].tmp_percent < critical.last_samples[-1].tmp_percent


def test_a_log_of_only_level_changes_still_shows_the_climb(
    incident_run: Run, tmp_path: Path
) -> None:
    """The incident the records exist for: killed before any flush, the invocation's
    record and samples lost; the level changes alone make the report."""
    lines = _level_change_lines(incident_run)
    assert len(lines) == 5
    log = write_log(tmp_path, lines)
    timeline = read_log(log)
    assert (len(timeline.samples), len(timeline.invocations)) == (0, 0)
    assert len(timeline.level_changes) == 5
    out = tmp_path / "killed.html"
    summary = render_report(log, out)
    assert str(summary).startswith("0 invocations, 0 samples, 0 events, 5 level change records")
    # the peaks are the climbs' (the critical crossing's sample, the memory warning's):
    # the invocation's own peaks, which its lost record would have said
    peaks = incident_run.summaries[0].peaks
    assert summary.peak_tmp_percent == pytest.approx(peaks.tmp_fraction * 100, abs=0.01)
    assert summary.peak_memory_percent == pytest.approx(peaks.memory_fraction * 100, abs=0.01)
    page = out.read_text()
    assert "Level changes, as written at the crossing" in page
    rows = re.findall(r'<tr class="(\w+)"><td>[^<]*</td><td>req-1</td>', page)
    assert rows == ["predicted_full", "warning", "critical", "predicted_full", "warning"]
    critical = next(c for c in timeline.level_changes if c.level == "critical")
    assert f"{len(critical.last_samples)} over " in page
    render_report(log, tmp_path / "killed.png")
    assert (tmp_path / "killed.png").read_bytes().startswith(b"\x89PNG")


@pytest.mark.parametrize("only_changes", [False, True], ids=["whole log", "killed"])
def test_the_chart_marks_each_level_change_and_draws_its_samples(
    incident_run: Run, only_changes: bool
) -> None:
    import numpy as np
    from matplotlib.figure import Figure

    from monitor.report import chart
    from monitor.report.level_change_chart import CHANGE_LABEL, LAST_SAMPLES_LABEL
    from monitor.report.time_axis import TimeAxis

    lines = _level_change_lines(incident_run) if only_changes else incident_run.sink.lines
    timeline = timeline_of("\n".join(lines))
    figure = Figure()
    chart._draw(figure, timeline, TimeAxis.of(timeline))
    tmp_axes, memory_axes = figure.axes[:2]
    for axes, resource in ((tmp_axes, "tmp"), (memory_axes, "memory")):
        changes = [c for c in timeline.level_changes if c.resource == resource]
        marks = [line for line in axes.get_lines() if line.get_label() == CHANGE_LABEL]
        climbs = [line for line in axes.get_lines() if line.get_label() == LAST_SAMPLES_LABEL]
        assert [np.asarray(m.get_ydata()).tolist() for m in marks] == [[c.percent] for c in changes]
        drawn = [np.asarray(line.get_xdata()).size for line in climbs]
        assert drawn == [len(c.last_samples) for c in changes]
        unlisted = [t for t in axes.texts if "(no invocation record)" in t.get_text()]
        assert len(unlisted) == (len(changes) if only_changes else 0)
    _, labels = chart._legend_entries(tmp_axes, memory_axes)
    assert CHANGE_LABEL in labels and LAST_SAMPLES_LABEL in labels


def test_an_unreadable_level_change_is_skipped_and_counted(incident_run: Run) -> None:
    lines = _level_change_lines(incident_run)
    broken = lines[0].replace(f'"{records.CROSSING_TIME}"', '"CrossedAt"')
    mistyped = lines[1].replace(f'"{records.LEVEL}": "', f'"{records.LEVEL}": 1, "x": "')
    timeline = timeline_of("\n".join([broken, mistyped, *lines[2:]]))
    assert len(timeline.level_changes) == 3
    assert timeline.skipped == 2
    assert timeline.missing == (("level_change", records.CROSSING_TIME, 1),)


def test_a_managed_instance_log_says_the_memory_is_one_process_share() -> None:
    """On a Lambda Managed Instance the memory percents are of the process's share of the
    environment's memory (monitor/environment.py): the chart says so, not "limit"."""
    from matplotlib.figure import Figure

    from monitor.report import chart
    from monitor.report.time_axis import TimeAxis
    from tests.fakes import FakeSystem

    sink = MemorySink()
    monitor = FakeSystem(rss=20 * MIB).monitor(
        sink, environ={"AWS_LAMBDA_MAX_CONCURRENCY": "4"}, memory_limit=100 * MIB
    )
    monitor.begin_invocation("req-1")
    monitor.end_invocation()
    timeline = timeline_of("\n".join(sink.lines))
    limits = timeline.limits
    assert (limits.memory_limit_bytes, limits.memory_budget_bytes) == (100 * MIB, 25 * MIB)
    assert timeline.samples[0].memory_percent == 80.0  # 20 MiB of its 25 MiB share
    figure = Figure()
    chart._draw(figure, timeline, TimeAxis.of(timeline))
    title = figure.axes[1].get_title(loc="left")
    assert title.startswith("memory of one process (its share 25.0 MiB of the limit)")
