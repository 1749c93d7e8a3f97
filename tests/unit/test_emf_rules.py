"""What reaches EMF is checked where it enters; no document takes another with it.

Guards issue 8, item 8: a phase named "téléchargement" or "", or a NaN metric, made the
end-of-invocation flush fail and lost the invocation document; "AWS/Lambda" was
accepted as a namespace; 20 failed attempts made a 2.09 MB line.
"""

from __future__ import annotations

import io
import json
import logging
import math
from pathlib import Path
from typing import Any

import pytest

from monitor import cli as monitor_cli
from monitor.config import MonitorConfig
from monitor.emf import EmfEmitter, MemorySink
from monitor.emf_rules import MAX_EVENT_BYTES, MAX_METRIC_VALUE
from monitor.errors import EXIT_ERROR, ConfigurationError
from monitor.sidecar import StorageMonitor
from tests.emf_schema import validate_emf_line
from tests.fakes import MIB, FakeSystem


@pytest.fixture(autouse=True)
def _emf_local(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_EMF_ENVIRONMENT", "Local")


def documents(sink: MemorySink) -> list[dict[str, Any]]:
    """Every line, checked against the EMF specification and the event size."""
    return [validate_emf_line(line) for line in sink.lines]


def by_record(sink: MemorySink, record: str) -> list[dict[str, Any]]:
    return [d for d in documents(sink) if d["TmpwardenRecord"] == record]


@pytest.mark.parametrize(
    "namespace", ["AWS/Lambda", "aws/lambda", "My Team (prod)", "ml platform", "x" * 256, "é"]
)
def test_a_namespace_cloudwatch_would_not_extract_is_a_configuration_error(
    namespace: str,
) -> None:
    with pytest.raises(ConfigurationError, match="TMPWARDEN_NAMESPACE") as caught:
        MonitorConfig.resolve(environ={"TMPWARDEN_NAMESPACE": namespace})
    assert "namespace" in str(caught.value)
    with pytest.raises(ConfigurationError):
        EmfEmitter(MemorySink(), namespace=namespace, function_name="f")


@pytest.mark.parametrize("namespace", ["tmpwarden", "ml/packaging", "Team_1.prod#a:b-c", "x" * 255])
def test_valid_namespaces_are_accepted(namespace: str) -> None:
    assert MonitorConfig.resolve(environ={"TMPWARDEN_NAMESPACE": namespace}).namespace == namespace


@pytest.mark.parametrize("function_name", ["my function é", ":x" * 600, "tab\there"])
def test_a_function_name_that_is_no_dimension_value_is_a_configuration_error(
    function_name: str,
) -> None:
    with pytest.raises(ConfigurationError, match="AWS_LAMBDA_FUNCTION_NAME"):
        MonitorConfig.resolve(environ={"AWS_LAMBDA_FUNCTION_NAME": function_name})


def test_extra_dimensions_are_checked_when_the_emitter_is_made() -> None:
    with pytest.raises(ConfigurationError, match="extra_dimensions"):
        EmfEmitter(MemorySink(), namespace="t", function_name="f", extra_dimensions={"Env": "é"})
    with pytest.raises(ConfigurationError, match="extra_dimensions"):
        EmfEmitter(MemorySink(), namespace="t", function_name="f", extra_dimensions={":x": "y"})


BAD_PHASES = {
    "téléchargement": "telechargement",
    "": "unnamed",
    "   ": "unnamed",
    "日本": "\\u65e5\\u672c",
    "tab\tand\nnewline": "tab\\x09and\\x0anewline",
}


def test_bad_phase_names_and_a_nan_metric_cost_no_document(
    caplog: pytest.LogCaptureFixture,
) -> None:
    fake = FakeSystem(total=100 * MIB, used=30 * MIB)
    sink = MemorySink()
    monitor = fake.monitor(sink)
    monitor.begin_invocation("req-bad")
    with caplog.at_level(logging.WARNING, logger="tmpwarden.monitor"):
        for name in [*BAD_PHASES, "téléchargement", "x" * 5000, "ok"]:
            with monitor.phase(name):
                fake.advance(0.1)
        fake.used = 70 * MIB
        monitor.put_metric("PackagedBytes", float("nan"))
        monitor.put_metric("PackagedBytes", 1000)
        monitor.put_metric("PackagedBytes", math.inf)
        monitor.put_metric("TargetsSucceeded", 2.0**400)
        summary = monitor.end_invocation()
    [invocation] = by_record(sink, "invocation")
    assert invocation["PeakTmpUsedBytes"] == 70 * MIB == summary.peaks.tmp_used
    assert invocation["PeakTmpUsedPercent"] == 70.0
    assert invocation["PackagedBytes"] == 1000
    assert invocation["TargetsSucceeded"] == MAX_METRIC_VALUE
    phases = {d["Phase"]: d["PhaseDuration"] for d in by_record(sink, "phase")}
    assert set(phases) == {*BAD_PHASES.values(), "x" * 1024, "ok"}
    assert phases["telechargement"] == [100.0, 100.0]
    assert phases["unnamed"] == [100.0, 100.0]
    # One warning per distinct value, not one per use.
    warned = [r.getMessage() for r in caplog.records if "téléchargement" in r.getMessage()]
    assert len(warned) == 1 and "telechargement" in warned[0]
    assert sum("PackagedBytes got nan" in r.getMessage() for r in caplog.records) == 1


def test_put_metric_refuses_what_is_no_metric_where_it_is_called() -> None:
    monitor = FakeSystem().monitor()
    monitor.begin_invocation("r")
    with pytest.raises(ConfigurationError, match="not a per-invocation metric"):
        monitor.put_metric("NoSuchMetric", 1)
    with pytest.raises(ConfigurationError, match="not a per-invocation metric"):
        monitor.put_metric("TmpUsedBytes", 1)  # a sample metric, not the caller's
    with pytest.raises(ConfigurationError, match="must be a number"):
        monitor.put_metric("PackagedBytes", "12")  # type: ignore[arg-type]
    monitor.put_metric("PackagedBytes", 10**400)  # beyond any float: clamped
    assert monitor.end_invocation().metric_values()["PackagedBytes"] == MAX_METRIC_VALUE


def test_twenty_failed_attempts_with_50_kb_errors_fit_in_lines_of_256_kb() -> None:
    fake = FakeSystem(total=100 * MIB, used=10 * MIB)
    sink = MemorySink()
    monitor = fake.monitor(sink)
    monitor.begin_invocation("req-" + "r" * 100_000)
    for attempt in range(20):
        try:
            with monitor.phase(f"attempt-{attempt}"):
                fake.used += MIB
                fake.advance(0.1)
                raise RuntimeError(f"attempt {attempt}: " + "é" * 50_000)
        except RuntimeError:
            pass
    summary = monitor.end_invocation()
    sizes = [len((line + "\n").encode()) for line in sink.lines]
    print(f"20 failed attempts with 50 KB error texts: {len(sizes)} lines, largest {max(sizes)} B")
    assert max(sizes) <= MAX_EVENT_BYTES
    [invocation] = by_record(sink, "invocation")
    assert invocation["PeakTmpUsedBytes"] == 30 * MIB == summary.peaks.tmp_used
    assert len(invocation["Phases"]) == 20
    assert all(p["error"].startswith("RuntimeError: attempt") for p in invocation["Phases"])
    assert invocation["RequestId"].startswith("req-rrr")
    assert len(by_record(sink, "phase")) == 20


def test_a_document_that_fails_takes_no_other_with_it() -> None:
    class FlakySink(MemorySink):
        failures = 1

        def write_line(self, line: str) -> None:
            if json.loads(line)["TmpwardenRecord"] == "samples" and self.failures:
                self.failures -= 1
                raise OSError("stdout is gone")
            super().write_line(line)

    class Unprintable:
        def __str__(self) -> str:
            raise RuntimeError("no text")

    fake = FakeSystem(used=5 * MIB)
    sink = FlakySink()
    monitor = fake.monitor(sink)
    monitor.begin_invocation("r")
    with monitor.phase("extract"):
        fake.advance(0.1)
    monitor.end_invocation()
    assert by_record(sink, "invocation") and by_record(sink, "phase")
    assert not by_record(sink, "samples")
    emitter = monitor._emitter
    assert emitter is not None and emitter.documents_failed == 1
    # A property that cannot be written loses its own document only.
    assert emitter.emit_invocation({"PackagedBytes": 1}, {"Bad": Unprintable()}, 1.8e9) == 0
    assert emitter.emit_invocation({"PackagedBytes": 2}, {"Good": "yes"}, 1.8e9) == 1
    assert emitter.documents_failed == 2


def test_the_monitor_is_refused_before_it_starts_with_a_bad_namespace() -> None:
    with pytest.raises(ConfigurationError, match="reserved for AWS"):
        StorageMonitor(
            MonitorConfig.resolve(path="/tmp", namespace="AWS/Lambda", tracing="off", environ={})
        )


def test_when_capped_strings_still_do_not_fit_lists_are_cut_and_counted() -> None:
    fake = FakeSystem(total=100 * MIB, used=10 * MIB)
    sink = MemorySink()
    monitor = fake.monitor(sink)
    monitor.begin_invocation("r")
    for _attempt in range(50):
        try:
            with monitor.phase("attempt"):
                raise RuntimeError("é" * 50_000)
        except RuntimeError:
            pass
    monitor.put_metric("TargetsFailed", 50)
    monitor.end_invocation()
    assert max(len((line + "\n").encode()) for line in sink.lines) <= MAX_EVENT_BYTES
    [invocation] = by_record(sink, "invocation")
    assert invocation["TargetsFailed"] == 50 and "PeakTmpUsedBytes" in invocation
    assert len(invocation["Phases"]) + invocation["PhasesOmitted"] == 50
    [phase] = by_record(sink, "phase")
    assert len(phase["PhaseDuration"]) == 50  # metrics are never cut


def test_a_sample_batch_that_cannot_be_built_costs_only_itself() -> None:
    emitter = EmfEmitter(MemorySink(), namespace="t", function_name="f")
    good = [1.8e9, 10.0, 90.0, 100.0, 5.0, math.inf]
    # a used size of NaN cannot be a byte count: that batch fails alone. (A memory_limit
    # of 0 used to be the way to fail one; it is now "no limit known", memory at 0%.)
    bad = [1.8e9, math.nan, 90.0, 100.0, 5.0, math.inf]
    assert emitter.emit_samples([bad], 100, {}) == 0
    assert emitter.documents_failed == 1
    assert emitter.emit_samples([good], 100, {}) == 1
    assert emitter.emit_samples([good], 0, {}) == 1 and emitter.documents_failed == 1


def test_the_command_line_says_which_setting_is_wrong_in_one_line(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("TMPWARDEN_NAMESPACE", "My Team (prod)")
    out, err = io.StringIO(), io.StringIO()
    assert monitor_cli.main(["watch", str(tmp_path)], out=out, err=err) == EXIT_ERROR
    [line] = err.getvalue().splitlines()
    assert line.startswith("error: monitor setting namespace (TMPWARDEN_NAMESPACE)=")
