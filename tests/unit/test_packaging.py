"""One target through package_target: the monitor hears of every file done, and of the
whole processing state."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from handler.events import StrategyChoice, Target
from handler.packaging import package_target
from handler.settings import HandlerSettings
from monitor import records
from monitor.config import MonitorConfig
from monitor.emf import MemorySink
from monitor.metrics import ProcessingState
from monitor.sidecar import StorageMonitor
from tests.fakes import FakeSystem
from tests.helpers import build_archive, read_zip

FILES = {f"model/shard-{i}.bin": bytes([i]) * 1000 for i in range(5)}


@pytest.mark.parametrize("strategy", [StrategyChoice.STREAM, StrategyChoice.EXTRACT])
def test_the_processing_state_counts_the_files_packaged(
    tmp_path: Path, strategy: StrategyChoice
) -> None:
    archive = build_archive(tmp_path / "m.tar.gz", FILES, "tar.gz")
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monitor = FakeSystem().monitor(actions=False)
    result = package_target(
        Target(str(archive), str(tmp_path / "m.zip")),
        HandlerSettings(scratch_dir=str(scratch), tmp_critical=0.99),
        monitor=monitor,
        choice=strategy,
    )
    assert result.status == "succeeded" and result.strategy == strategy.value
    assert monitor.state.files_processed == len(FILES) == result.files
    assert read_zip(tmp_path / "m.zip") == FILES
    monitor.stop()


def test_a_packagings_invocation_record_carries_the_whole_processing_state(
    tmp_path: Path,
) -> None:
    """The design's ProcessingState, alive: the handler sets all six fields and the final
    EMF invocation record carries them (values measured, not the defaults)."""
    archive = build_archive(tmp_path / "m.tar.gz", FILES, "tar.gz")
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    sink = MemorySink()
    config = MonitorConfig.resolve(path=scratch, tracing="off", actions=False, environ={})
    monitor = StorageMonitor(config, sink=sink, environ={})
    monitor.begin_invocation("req-state")
    result = package_target(
        Target(str(archive), str(tmp_path / "m.zip")),
        HandlerSettings(scratch_dir=str(scratch), tmp_critical=0.99),
        monitor=monitor,
        choice=StrategyChoice.AUTO,
    )
    monitor.end_invocation()
    monitor.stop()
    assert result.status == "succeeded" and result.strategy == "extract"
    [record] = [
        json.loads(line)
        for line in sink.lines
        if json.loads(line)[records.RECORD_KIND] == records.RecordKind.INVOCATION
    ]
    state = {name: record[prop] for name, prop in records.STATE_PROPERTIES.items()}
    print("ProcessingState in the invocation record:", state)
    assert state["current_phase"] == "cleanup"  # the last phase of the extract strategy
    assert state["files_processed"] == state["total_files"] == len(FILES)
    assert state["disk_usage"] > 0
    assert state["cleanup_performed"] is True
    assert state["estimated_remaining"] == 0.0  # all files done, at the measured rate
    defaults = ProcessingState()
    assert all(state[f] != getattr(defaults, f) for f in state)
