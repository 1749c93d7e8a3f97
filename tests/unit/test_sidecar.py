"""StorageMonitor with a fake /tmp and injected clocks: no sleeps, no flakiness."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from monitor import MonitorEvent, StorageMonitor, monitored
from monitor.emf import MemorySink
from monitor.metrics import REGISTRY, Level
from tests.emf_schema import metric_values, validate_emf_line
from tests.fakes import MIB, FakeSystem


@pytest.fixture(autouse=True)
def _emf_local(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_EMF_ENVIRONMENT", "Local")


def make_monitor(fake: FakeSystem, sink: MemorySink, **settings: Any) -> StorageMonitor:
    return fake.monitor(sink, **settings)


def step(monitor: StorageMonitor, fake: FakeSystem, fraction: float, dt: float = 0.1) -> None:
    fake.advance(dt)
    fake.fill_fraction(fraction)
    monitor.sample_now()


def test_callbacks_fire_once_per_crossing_in_level_order() -> None:
    fake, sink = FakeSystem(), MemorySink()
    monitor = make_monitor(fake, sink, actions=False)
    seen: list[tuple[str, str]] = []
    for level in ("warning", "critical"):
        monitor.add_callback(level, lambda e: seen.append((e.resource.value, e.level.value)))
    for fraction in (0.5, 0.85, 0.86, 0.79, 0.83, 0.95, 0.96, 0.5, 0.92):
        step(monitor, fake, fraction)
    assert monitor.drain_callbacks()
    assert seen == [
        ("tmp", "warning"),
        ("tmp", "critical"),
        ("tmp", "warning"),  # re-armed after falling to 0.5
        ("tmp", "critical"),
    ]


def test_callback_comes_within_two_intervals_of_the_crossing() -> None:
    fake, sink = FakeSystem(), MemorySink()
    interval = 0.1
    monitor = make_monitor(fake, sink, actions=False, sample_interval=interval)
    events: list[MonitorEvent] = []
    monitor.add_callback("critical", events.append)
    monitor.sample_now()
    # /tmp crosses 90% at t_cross, a third of the way between two samples
    t_cross = fake.now + interval / 3
    fake.advance(interval)
    fake.fill_fraction(0.93)
    monitor.sample_now()
    assert monitor.drain_callbacks()
    assert len(events) == 1
    assert events[0].metrics.timestamp - t_cross <= 2 * interval


def test_default_actions_clean_registered_paths_and_collect_garbage(tmp_path: Path) -> None:
    fake, sink = FakeSystem(), MemorySink()
    monitor = make_monitor(fake, sink)
    scratch = monitor.register_cleanup(tmp_path / "scratch")
    (scratch / "sub").mkdir(parents=True)
    (scratch / "sub" / "weights.bin").write_bytes(b"x" * 1000)
    lone_file = monitor.register_cleanup(tmp_path / "download.tar.gz")
    lone_file.write_bytes(b"y")
    monitor.begin_invocation("req-1")
    fake.rss = 85 * MIB  # memory warning -> gc
    step(monitor, fake, 0.95)  # /tmp critical -> cleanup
    summary = monitor.end_invocation()
    assert not scratch.exists() and not lone_file.exists()
    names = {(r.name, r.level.value, r.resource.value) for r in summary.callbacks}
    assert ("cleanup_registered_paths", "critical", "tmp") in names
    assert ("collect_garbage", "warning", "memory") in names
    assert all(r.error is None for r in summary.callbacks)


def test_a_raising_callback_is_logged_and_counted_and_sampling_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    fake, sink = FakeSystem(), MemorySink()
    monitor = make_monitor(fake, sink, actions=False)
    later: list[MonitorEvent] = []

    def broken(event: MonitorEvent) -> None:
        raise RuntimeError("disk cleaner crashed")

    monitor.add_callback("warning", broken)
    monitor.add_callback("critical", later.append)
    monitor.begin_invocation("req-1")
    step(monitor, fake, 0.85)
    step(monitor, fake, 0.95)
    summary = monitor.end_invocation()
    assert summary.callback_errors == 1
    assert len(later) == 1
    assert "disk cleaner crashed" in caplog.text
    invocation = next(
        json.loads(line) for line in sink.lines if '"TmpwardenRecord": "invocation"' in line
    )
    assert invocation["CallbackErrors"] == 1


def test_a_hanging_callback_does_not_stop_sampling() -> None:
    fake = FakeSystem()
    release = threading.Event()
    monitor = fake.monitor(fake_clocks=False, sample_interval=0.01, actions=False)
    monitor.add_callback("warning", lambda _e: release.wait(10))
    fake.fill_fraction(0.85)
    monitor.start()
    try:
        deadline = time.monotonic() + 5
        while not monitor.events and time.monotonic() < deadline:
            time.sleep(0.01)
        before = monitor.samples_taken
        time.sleep(0.3)
        assert monitor.samples_taken - before >= 5  # still sampling while the callback hangs
    finally:
        release.set()
        monitor.stop()


def test_unknown_levels_and_resources_are_refused() -> None:
    monitor = make_monitor(FakeSystem(), MemorySink())
    from monitor.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match="levels are warning, critical, predicted_full"):
        monitor.add_callback("panic", print)
    with pytest.raises(ConfigurationError, match="does not apply to memory"):
        monitor.add_callback("predicted_full", print, resource="memory")


def test_phases_have_peaks_spans_and_durations() -> None:
    fake, sink = FakeSystem(), MemorySink()
    monitor = make_monitor(fake, sink)
    monitor.begin_invocation("req-7")
    with monitor.phase("extract") as extract:
        assert monitor.state.current_phase == "extract"
        step(monitor, fake, 0.6)
        step(monitor, fake, 0.3)
    with monitor.phase("compress"):
        step(monitor, fake, 0.2)
    summary = monitor.end_invocation()
    assert monitor.state.current_phase is None
    assert [p.name for p in summary.phases] == ["extract", "compress"]
    assert extract.peaks.tmp_used == int(0.6 * fake.total)
    assert summary.phases[1].peaks.tmp_used == int(0.3 * fake.total)
    phase_lines = [json.loads(line) for line in sink.lines if '"TmpwardenRecord": "phase"' in line]
    assert {d["Phase"] for d in phase_lines} == {"extract", "compress"}
    assert all(d["RequestId"] == "req-7" for d in phase_lines)


def test_every_emf_line_is_valid_and_uses_the_registry() -> None:
    fake, sink = FakeSystem(), MemorySink()
    monitor = make_monitor(fake, sink, sample_interval=0.01, function_name="packager")
    monitor.begin_invocation("req-9")
    with monitor.phase("extract"):
        for index in range(1500):  # 15 s at 10 ms: 1.5 flush intervals
            step(monitor, fake, min(0.3 + index / 2000, 0.99), dt=0.01)
            if index == 1000:
                monitor.flush()
    monitor.put_metric("TargetsSucceeded", 1)
    monitor.end_invocation()
    assert sink.lines
    records = set()
    for line in sink.lines:
        document = validate_emf_line(line)
        records.add(document["TmpwardenRecord"])
        assert document["FunctionName"] == "packager"
        for directive in document["_aws"]["CloudWatchMetrics"]:
            assert directive["Namespace"] == "tmpwarden"
            for metric in directive["Metrics"]:
                spec = REGISTRY[metric["Name"]]
                assert metric["Unit"] == spec.unit
                assert directive["Dimensions"] == [list(spec.dimensions)]
                assert metric.get("StorageResolution", 60) == (1 if spec.high_resolution else 60)
                assert len(metric_values(document, metric["Name"])) <= 100
    assert records == {"samples", "invocation", "phase", "level_change"}
    invocation = next(json.loads(line) for line in sink.lines if '"invocation"' in line)
    assert invocation["RequestId"] == "req-9"
    assert invocation["TargetsSucceeded"] == 1
    assert invocation["TmpCriticalEvents"] == 1 and invocation["TmpWarningEvents"] == 1
    assert invocation["PeakTmpUsedPercent"] >= 90


def test_samples_are_aggregated_so_log_volume_does_not_grow_with_the_rate() -> None:
    def emf_bytes(interval: float) -> int:
        fake, sink = FakeSystem(), MemorySink()
        monitor = make_monitor(fake, sink, sample_interval=interval)
        monitor.begin_invocation("r")
        for _ in range(int(10 / interval)):
            step(monitor, fake, 0.3, dt=interval)
        monitor.flush()
        return sum(len(line) for line in sink.lines if '"samples"' in line)

    assert emf_bytes(0.01) <= emf_bytes(0.1) * 1.1


def test_the_decorator_flushes_every_invocation_even_when_the_handler_raises() -> None:
    fake, sink = FakeSystem(), MemorySink()
    monitor = make_monitor(fake, sink)

    class Context:
        def __init__(self, request_id: str) -> None:
            self.aws_request_id = request_id

    @monitored(monitor)
    def handler(event: dict[str, object], context: object) -> str:
        fake.fill_fraction(float(event["fill"]))  # type: ignore[arg-type]
        monitor.sample_now()
        if event.get("fail"):
            raise ValueError("bad target")
        return "ok"

    assert handler({"fill": 0.95}, Context("a")) == "ok"
    fake.fill_fraction(0.1)  # the first invocation's files are gone before the second starts
    with pytest.raises(ValueError, match="bad target"):
        handler({"fill": 0.2, "fail": True}, Context("b"))
    invocations = [json.loads(line) for line in sink.lines if '"invocation"' in line]
    assert [d["RequestId"] for d in invocations] == ["a", "b"]
    # peaks are per invocation: the second one never saw the first one's 95%
    assert invocations[0]["PeakTmpUsedPercent"] >= 95
    assert invocations[1]["PeakTmpUsedPercent"] < 30
    assert handler.monitor() is monitor  # type: ignore[attr-defined]
    monitor.stop()


def test_latest_history_and_levels() -> None:
    fake, sink = FakeSystem(), MemorySink()
    monitor = make_monitor(fake, sink, actions=False)
    step(monitor, fake, 0.85)
    latest = monitor.latest
    assert latest is not None and latest.used_fraction == pytest.approx(0.85)
    assert latest.threshold_warning == 0.8 and latest.memory_limit == 100 * MIB
    assert monitor.level("tmp") is Level.WARNING
    assert monitor.history[-1] == latest


def test_emf_never_asks_the_library_to_detect_its_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """No EC2 metadata probe and no TCP agent: documents are built and written by us."""
    from aws_embedded_metrics.environment import environment_detector

    def forbidden(*args: object, **kwargs: object) -> None:
        raise AssertionError("environment detection must not run")

    monkeypatch.setattr(environment_detector, "resolve_environment", forbidden)
    monkeypatch.setattr(environment_detector, "resolve_environment_sync", forbidden)
    monkeypatch.delenv("AWS_EMF_ENVIRONMENT", raising=False)
    fake, sink = FakeSystem(), MemorySink()
    monitor = make_monitor(fake, sink)
    monitor.begin_invocation("r")
    step(monitor, fake, 0.5)
    monitor.end_invocation()
    assert len(sink.lines) >= 2 and all(validate_emf_line(line) for line in sink.lines)
