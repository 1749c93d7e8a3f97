"""The external extension end to end, as Lambda runs it: its executable against a fake
Extensions and Telemetry API on 127.0.0.1 (tests/fake_extensions_api.py)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from deploy.checks import metrics_used
from monitor import records
from monitor.metrics import INCIDENTS, REGISTRY, MetricGroup
from monitor.records import RecordKind
from tests.emf_schema import validate_emf_line
from tests.fake_extensions_api import EXTENSION_ID, FakeExtensionsApi

REPO = Path(__file__).resolve().parents[2]
EXECUTABLE = REPO / "deploy" / "layer" / "extensions" / "tmpwarden-monitor"
SHUTDOWN_BUDGET_S = 2.0
"""Lambda's shutdown phase with external extensions registered: 2,000 ms."""


@pytest.fixture
def api() -> Iterator[FakeExtensionsApi]:
    fake = FakeExtensionsApi()
    yield fake
    fake.close()


def start_extension(api: FakeExtensionsApi, tmp_path: Path, **extra: str) -> subprocess.Popen[str]:
    env = {
        "PATH": os.environ.get("PATH", ""),
        "AWS_LAMBDA_RUNTIME_API": api.address,
        "TMPWARDEN_EXTENSION_HOST": "127.0.0.1",
        "TMPWARDEN_RUNTIME_PID": str(os.getpid()),
        "TMPWARDEN_EXTENSION_INTERVAL_MS": "50",
        "TMPWARDEN_PATH": str(tmp_path),
        "AWS_LAMBDA_FUNCTION_NAME": "packaging-fn",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "128",
        **extra,
    }
    process = subprocess.Popen(
        [sys.executable, str(EXECUTABLE)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    if not api.subscribed.wait(10):
        process.kill()
        raise AssertionError(f"no subscription: {process.communicate()}")
    return process


def finish(
    api: FakeExtensionsApi, process: subprocess.Popen[str], reason: str
) -> tuple[list[dict[str, Any]], str, float]:
    """SHUTDOWN with ``reason``; the EMF documents written, stderr, seconds to exit."""
    api.shutdown_event(reason)
    out, err = process.communicate(timeout=10)
    exited = time.monotonic()
    handed = next(when for when, event in api.handed_out if event["eventType"] == "SHUTDOWN")
    assert process.returncode == 0, err
    return [validate_emf_line(line) for line in out.splitlines()], err, exited - handed


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def test_a_timeout_at_the_memory_cap_is_recorded_as_out_of_memory(
    api: FakeExtensionsApi, tmp_path: Path
) -> None:
    # Datadog misses it: a timeout at max memory (DataDog/datadog-lambda-extension#1237)
    process = start_extension(api, tmp_path)
    assert api.registered == {"name": "tmpwarden-monitor", "events": ["INVOKE", "SHUTDOWN"]}
    assert api.subscription["types"] == ["platform"]
    assert api.subscription["buffering"]["timeoutMs"] == 25
    assert api.subscription["destination"]["URI"].startswith("http://127.0.0.1:")
    api.invoke("req-oom")
    time.sleep(0.6)  # about 12 samples at 50 ms
    now = time.time()
    api.post_telemetry(
        [
            {
                "time": iso(now),
                "type": "platform.runtimeDone",
                "record": {"requestId": "req-oom", "status": "timeout", "metrics": {}},
            },
            {
                "time": iso(now),
                "type": "platform.report",
                "record": {
                    "requestId": "req-oom",
                    "status": "timeout",
                    "metrics": {
                        "durationMs": 3000.0,
                        "billedDurationMs": 3000,
                        "memorySizeMB": 128,
                        "maxMemoryUsedMB": 128,
                    },
                },
            },
        ]
    )
    documents, err, took = finish(api, process, "spindown")
    print(f"incident records: {len(documents)}; exit {took * 1000:.0f} ms after SHUTDOWN")
    assert len(documents) == 1, err
    [incident] = documents
    assert incident[records.RECORD_KIND] == RecordKind.INCIDENT
    assert incident[records.CLASSIFICATION] == "out_of_memory"
    assert incident[records.REQUEST_ID] == "req-oom"
    assert incident[INCIDENTS] == 1
    assert "maxMemoryUsedMB 128 reached memorySizeMB 128" in incident[records.REASON]
    directive = incident["_aws"]["CloudWatchMetrics"][0]
    assert directive["Dimensions"] == [["FunctionName", "Classification"]]
    assert incident["FunctionName"] == "packaging-fn"
    # the last samples: several, ours (this test process's RSS), ending at the report
    offsets = incident[records.LAST_SAMPLES_OFFSETS_MS]
    assert len(offsets) >= 5 and offsets == sorted(offsets)
    assert min(incident[records.LAST_MEMORY_USED_BYTES]) > 0
    assert incident[records.RUNTIME_PID] == os.getpid()
    assert set(incident) - {"_aws", INCIDENTS} <= records.PROPERTIES[RecordKind.INCIDENT]
    assert took < SHUTDOWN_BUDGET_S


def test_a_shutdown_after_a_timeout_records_the_phase_the_in_process_monitor_shared(
    api: FakeExtensionsApi, tmp_path: Path
) -> None:
    from monitor import StorageMonitor
    from monitor.config import MonitorConfig

    process = start_extension(api, tmp_path)
    api.invoke("req-slow")
    monitor = StorageMonitor(
        MonitorConfig.resolve(None, {"TMPWARDEN_PATH": str(tmp_path), "TMPWARDEN_EMF": "off"}),
        environ={"TMPWARDEN_SHARED_STATE": "on"},
    )
    monitor.begin_invocation("req-slow")
    with monitor.phase("download"):
        time.sleep(0.3)
        documents, _, took = finish(api, process, "timeout")
    monitor.stop()
    [incident] = documents
    assert incident[records.CLASSIFICATION] == "timeout"
    assert incident[records.SHUTDOWN_REASON] == "timeout"
    assert incident[records.PHASE] == "download"
    assert incident[records.STATE_TIME] is not None
    assert took < SHUTDOWN_BUDGET_S


def test_a_clean_spindown_writes_nothing_and_exits_at_once(
    api: FakeExtensionsApi, tmp_path: Path
) -> None:
    process = start_extension(api, tmp_path)
    api.invoke("req-ok")
    api.post_telemetry(
        [{"type": "platform.report", "record": {"requestId": "req-ok", "status": "success"}}]
    )
    documents, _, took = finish(api, process, "spindown")
    assert documents == []
    assert took < 0.5


def test_a_bad_setting_is_reported_to_init_error(api: FakeExtensionsApi, tmp_path: Path) -> None:
    env = {
        "PATH": os.environ.get("PATH", ""),
        "AWS_LAMBDA_RUNTIME_API": api.address,
        "TMPWARDEN_EXTENSION_INTERVAL_MS": "fast",
    }
    result = subprocess.run(
        [sys.executable, str(EXECUTABLE)],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 1
    assert "TMPWARDEN_EXTENSION_INTERVAL_MS='fast' is not a whole number" in result.stderr
    [(path, headers, body)] = api.errors
    assert path == "/2020-01-01/extension/init/error"
    assert headers["Lambda-Extension-Identifier"] == EXTENSION_ID
    assert body["errorType"] == "Extension.ConfigurationError"


def test_the_incident_metrics_of_the_dashboard_and_alarms_are_the_ones_written() -> None:
    incident = {n for n, s in REGISTRY.items() if s.group is MetricGroup.INCIDENT}
    used = {(name, tuple(sorted(dims))) for ns, name, dims, _ in metrics_used() if name in incident}
    assert used == {(INCIDENTS, ("Classification", "FunctionName"))}
