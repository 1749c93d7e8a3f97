"""From Telemetry API and Extensions API events to incident records
(monitor/extension/incidents.py), the state the in-process monitor shares with it
(monitor/shared_state.py), and how the extension finds the runtime (probe.py)."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import pytest

from monitor import records
from monitor.config import MonitorConfig
from monitor.extension.api import Event
from monitor.extension.incidents import IncidentTracker
from monitor.extension.probe import Sample, find_runtime_pid
from monitor.records import RecordKind
from monitor.shared_state import SharedStateWriter, read_shared_state, state_dir
from monitor.sidecar import StorageMonitor
from tests.emf_schema import validate_emf_line

MiB = 1024 * 1024


class FakeSampler:
    """The last samples: /tmp at 40% of 100 MiB, the runtime at ``rss`` bytes."""

    def __init__(self, rss: int = 50 * MiB) -> None:
        self.runtime_pid: int | None = 4242
        self.rss = rss

    def sample(self) -> Sample:
        return Sample(1000.0, 40 * MiB, 60 * MiB, self.rss)

    def last(self, until: float | None = None) -> list[Sample]:
        return [Sample(990.0 + i, 40 * MiB, 60 * MiB, self.rss) for i in range(10)]


def tracker(tmp_path: Path, rss: int = 50 * MiB) -> tuple[IncidentTracker, list[str]]:
    lines: list[str] = []
    made = IncidentTracker(
        FakeSampler(rss),  # type: ignore[arg-type]
        lines.append,
        namespace="tmpwarden",
        function_name="fn",
        tmp_path=str(tmp_path),
        state_dir=str(state_dir(tmp_path)),
        memory_limit=128 * MiB,
        clock=lambda: 1000.0,
    )
    return made, lines


def invoke(request_id: str) -> Event:
    return Event.parse({"eventType": "INVOKE", "requestId": request_id, "deadlineMs": 1})


def shutdown(reason: str) -> Event:
    return Event.parse({"eventType": "SHUTDOWN", "shutdownReason": reason, "deadlineMs": 1})


def platform(kind: str, request_id: str, status: str, **metrics: float) -> dict[str, Any]:
    record = {"requestId": request_id, "status": status, "metrics": metrics}
    return {"time": "2026-11-30T05:00:00.000Z", "type": f"platform.{kind}", "record": record}


def documents(lines: list[str]) -> list[dict[str, Any]]:
    found = [validate_emf_line(line) for line in lines]
    for doc in found:
        assert doc[records.RECORD_KIND] == RecordKind.INCIDENT
        assert set(doc) - {"_aws", "Incidents"} <= records.PROPERTIES[RecordKind.INCIDENT]
    return found


def test_runtime_done_then_report_make_one_record_with_the_report_s_memory(
    tmp_path: Path,
) -> None:
    made, lines = tracker(tmp_path)
    made.on_invoke(invoke("r1"))
    made.on_telemetry(platform("runtimeDone", "r1", "error"))
    assert lines == []  # the report is the final word: wait for it
    made.on_telemetry(platform("report", "r1", "error", maxMemoryUsedMB=128, memorySizeMB=128))
    made.on_shutdown(shutdown("failure"), wait=0)
    [doc] = documents(lines)
    assert doc[records.CLASSIFICATION] == "out_of_memory"
    assert doc[records.MAX_MEMORY_USED_MB] == 128
    assert doc[records.STATUS] == "error"
    assert doc[records.SHUTDOWN_REASON] is None  # the record was written at the report
    assert len(doc[records.LAST_MEMORY_USED_BYTES]) == 10


def test_a_runtime_done_whose_report_never_came_is_written_at_the_next_invoke(
    tmp_path: Path,
) -> None:
    made, lines = tracker(tmp_path)
    made.on_invoke(invoke("r1"))
    made.on_telemetry(platform("runtimeDone", "r1", "failure"))
    made.on_invoke(invoke("r2"))
    [doc] = documents(lines)
    assert (doc[records.REQUEST_ID], doc[records.CLASSIFICATION]) == ("r1", "crash")


def test_a_shutdown_after_the_report_adds_no_second_record(tmp_path: Path) -> None:
    made, lines = tracker(tmp_path)
    made.on_invoke(invoke("r1"))
    made.on_telemetry(platform("report", "r1", "timeout", maxMemoryUsedMB=60, memorySizeMB=128))
    made.on_shutdown(shutdown("timeout"), wait=0)
    [doc] = documents(lines)
    assert doc[records.CLASSIFICATION] == "timeout"


def test_a_shutdown_without_telemetry_classifies_from_the_samples(tmp_path: Path) -> None:
    made, lines = tracker(tmp_path, rss=127 * MiB)
    made.on_invoke(invoke("r1"))
    made.on_shutdown(shutdown("failure"), wait=0)
    [doc] = documents(lines)
    assert doc[records.CLASSIFICATION] == "out_of_memory"
    assert "RSS reached 99.2%" in doc[records.REASON]
    assert doc[records.SHUTDOWN_REASON] == "failure"


def test_success_and_spindown_write_nothing(tmp_path: Path) -> None:
    made, lines = tracker(tmp_path)
    made.on_invoke(invoke("r1"))
    made.on_telemetry(platform("runtimeDone", "r1", "success"))
    made.on_telemetry(platform("report", "r1", "success", maxMemoryUsedMB=128, memorySizeMB=128))
    made.on_shutdown(shutdown("spindown"), wait=0)
    assert lines == []


def test_the_record_carries_the_phase_and_level_the_in_process_monitor_shared(
    tmp_path: Path,
) -> None:
    monitor = StorageMonitor(
        MonitorConfig.resolve(None, {"TMPWARDEN_PATH": str(tmp_path), "TMPWARDEN_EMF": "off"}),
        environ={"TMPWARDEN_SHARED_STATE": "on"},
    )
    monitor.begin_invocation("r1")
    with monitor.phase("compress"):
        made, lines = tracker(tmp_path)
        made.sampler.runtime_pid = os.getpid()  # the runtime is this live process
        made.on_invoke(invoke("r1"))
        made.on_shutdown(shutdown("timeout"), wait=0)
    monitor.stop()
    [doc] = documents(lines)
    assert doc[records.PHASE] == "compress"
    assert doc[records.STATE_TIME] is not None


def test_the_shared_state_is_off_outside_lambda_and_written_atomically_when_on(
    tmp_path: Path,
) -> None:
    assert SharedStateWriter.from_environ(tmp_path, {}) is None
    assert SharedStateWriter.from_environ(tmp_path, {"AWS_LAMBDA_RUNTIME_API": "h:1"})
    off = {"AWS_LAMBDA_RUNTIME_API": "h:1", "TMPWARDEN_SHARED_STATE": "off"}
    assert SharedStateWriter.from_environ(tmp_path, off) is None
    monitor = StorageMonitor(
        MonitorConfig.resolve(None, {"TMPWARDEN_PATH": str(tmp_path), "TMPWARDEN_EMF": "off"}),
        environ={"TMPWARDEN_SHARED_STATE": "on"},
    )
    monitor.begin_invocation("r9")
    with monitor.phase("download"):
        state = read_shared_state(state_dir(tmp_path), os.getpid())
        assert state is not None
        assert (state.request_id, state.phase, state.ended) == ("r9", "download", False)
    monitor.end_invocation()
    monitor.stop()
    folder = state_dir(tmp_path)
    assert [p.name for p in folder.iterdir()] == [f"state-{os.getpid()}.json"]  # no scratch
    size = (folder / f"state-{os.getpid()}.json").stat().st_size
    print(f"shared state file: {size} bytes")
    assert size < 512
    ended = read_shared_state(folder)
    assert ended is not None and ended.ended and ended.phase == "download"
    (folder / "state-1.json").write_text("{torn")
    assert read_shared_state(folder, 1) == ended  # a torn file is skipped, not an error


def _proc(root: Path, pid: int, ppid: int, rss_pages: int) -> None:
    (root / str(pid)).mkdir()
    (root / str(pid) / "stat").write_text(f"{pid} (py thon) S {ppid} 1 1 0\n")
    (root / str(pid) / "statm").write_text(f"{rss_pages * 3} {rss_pages} 0 0 0 0 0\n")


@pytest.mark.parametrize(
    ("procs", "expected"),
    [
        # init(1) -> extension(10), runtime(11, large), another extension(12, small)
        ([(1, 0, 100), (10, 1, 500), (11, 1, 9000), (12, 1, 700), (2, 0, 0)], 11),
        # no sibling: the largest that is not the extension or its ancestors
        ([(1, 0, 100), (5, 1, 50), (10, 5, 500), (20, 1, 800), (21, 1, 300)], 20),
    ],
)
def test_the_runtime_is_the_largest_sibling(
    tmp_path: Path, procs: list[tuple[int, int, int]], expected: int
) -> None:
    for pid, ppid, rss in procs:
        _proc(tmp_path, pid, ppid, rss)
    assert find_runtime_pid(own_pid=10, proc=str(tmp_path)) == expected


MALFORMED = {  # review 2, item 10 (repro/telemetry_malformed.py): the record was lost
    "memorySizeMB 1e400": {
        "requestId": "r1",
        "status": "timeout",
        "metrics": {"memorySizeMB": 1e400, "maxMemoryUsedMB": 128},
    },
    "memorySizeMB NaN": {
        "requestId": "r1",
        "status": "error",
        "metrics": {"memorySizeMB": float("nan")},
    },
    "requestId a list": {"requestId": [1], "status": "error"},
    "requestId a dict": {"requestId": {"a": 1}, "status": "error"},
    "metrics a list": {"requestId": "r1", "status": "error", "metrics": [1, 2]},
    "status a number": {"requestId": "r1", "status": 3},
    "errorType a list": {"requestId": "r1", "status": "error", "errorType": ["x"]},
    "no fields": {},
}


@pytest.mark.parametrize("case", list(MALFORMED))
@pytest.mark.parametrize("kind", ["runtimeDone", "report"])
def test_a_malformed_telemetry_record_never_loses_the_incident_record(
    tmp_path: Path, case: str, kind: str
) -> None:
    made, lines = tracker(tmp_path)
    made.on_invoke(invoke("r1"))
    event = {"time": "yesterday", "type": f"platform.{kind}", "record": MALFORMED[case]}
    made.on_telemetry(event)
    made.on_shutdown(shutdown("timeout"), wait=0)
    found = documents(lines)
    assert len(found) in (1, 2)  # the malformed one (if it is an incident) + the current
    assert all(d[records.CLASSIFICATION] in ("timeout", "crash", "out_of_memory") for d in found)
    assert "r1" in {d[records.REQUEST_ID] for d in found}


def test_a_fifo_as_state_file_does_not_hold_up_shutdown(tmp_path: Path) -> None:
    """Review 2, item 6 (repro/shared_state_fifo.py): the read blocked under the lock."""
    made, lines = tracker(tmp_path)
    made.sampler.runtime_pid = os.getpid()  # a live runtime: its state is kept
    state_dir(tmp_path).mkdir(mode=0o700)
    os.mkfifo(state_dir(tmp_path) / f"state-{os.getpid()}.json")
    made.on_invoke(invoke("r1"))
    done = threading.Thread(target=made.on_shutdown, args=(shutdown("timeout"), 0), daemon=True)
    done.start()
    done.join(timeout=10)
    assert not done.is_alive(), "SHUTDOWN blocked on the FIFO"
    [doc] = documents(lines)
    assert (doc[records.CLASSIFICATION], doc[records.PHASE]) == ("timeout", None)


def test_odd_proc_files_are_skipped_not_raised_or_waited_on(tmp_path: Path) -> None:
    """Review 2, item 6, whole kind: a /proc entry the extension cannot parse or that would
    block (a FIFO) is no runtime; the scan still finds the one that is."""
    for pid, ppid, rss in [(1, 0, 100), (10, 1, 500), (11, 1, 9000)]:
        _proc(tmp_path, pid, ppid, rss)
    (tmp_path / "12").mkdir()
    (tmp_path / "12" / "stat").write_text("12 (x) S notanumber 1 1\n")
    (tmp_path / "12" / "statm").write_text("1 99999 0\n")
    (tmp_path / "13").mkdir()
    os.mkfifo(tmp_path / "13" / "stat")
    assert find_runtime_pid(own_pid=10, proc=str(tmp_path)) == 11
