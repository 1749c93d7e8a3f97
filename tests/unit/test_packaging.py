"""One target through package_target: the monitor hears of every file done."""

from __future__ import annotations

from pathlib import Path

import pytest

from handler.events import StrategyChoice, Target
from handler.packaging import package_target
from handler.settings import HandlerSettings
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
