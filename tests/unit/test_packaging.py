"""One target through package_target: the monitor hears of every file done, and of the
whole processing state."""

from __future__ import annotations

import io
import json
import stat
import tarfile
import zipfile
from pathlib import Path

import pytest

from handler.archive import StreamingExtractor
from handler.errors import (
    CompressionError,
    ExtractionError,
)
from handler.events import StrategyChoice, Target
from handler.locations.local import LocalDestination, LocalSource
from handler.packaging import package_target
from handler.settings import HandlerSettings
from handler.storage import StorageManager
from handler.strategies import PackageOptions, run_extract, run_stream
from monitor import records
from monitor.config import MonitorConfig
from monitor.emf import MemorySink
from monitor.metrics import ProcessingState
from monitor.sidecar import StorageMonitor
from tests.fakes import FakeSystem
from tests.helpers import build_archive, read_zip, tar_info, tar_with

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


def test_a_selected_hard_link_whose_target_is_left_out_is_an_error(tmp_path: Path) -> None:
    archive = tar_with(
        tmp_path / "hl.tar",
        [
            (tar_info("weights.dat"), b"w" * 100),
            tar_info("model.bin", tarfile.LNKTYPE, "weights.dat"),
        ],
    )
    dest = LocalDestination(tmp_path / "out.zip")
    with pytest.raises(ExtractionError, match="include patterns leave out"):
        run_stream(LocalSource(archive), dest, PackageOptions(include=("*.bin",)))
    assert not (tmp_path / "out.zip").exists()
    run_stream(LocalSource(archive), dest, PackageOptions(include=("*.bin", "*.dat")))
    assert read_zip(tmp_path / "out.zip")["weights.dat"] == b"w" * 100


def test_both_strategies_store_hard_links_as_symbolic_links(tmp_path: Path) -> None:
    archive = tar_with(
        tmp_path / "hl.tar",
        [
            (tar_info("data/w.bin"), b"w" * 5000),
            tar_info("alias.bin", tarfile.LNKTYPE, "data/w.bin"),
        ],
    )
    kinds = {}
    for name, runner in (("stream", run_stream), ("extract", None)):
        out = tmp_path / f"{name}.zip"
        if runner is not None:
            runner(LocalSource(archive), LocalDestination(out), PackageOptions())
        else:
            scratch = tmp_path / "scratch"
            scratch.mkdir()
            run_extract(
                LocalSource(archive),
                LocalDestination(out),
                PackageOptions(),
                scratch_root=scratch,
                storage=StorageManager(scratch),
                critical=0.99,
            )
        with zipfile.ZipFile(out) as z:
            kinds[name] = sorted(
                (i.filename, stat.S_ISLNK(i.external_attr >> 16))
                for i in z.infolist()
                if not i.is_dir()
            )
    assert kinds["stream"] == [("alias.bin", True), ("data/w.bin", False)]
    assert len(kinds["extract"]) == 2 and sum(link for _, link in kinds["extract"]) == 1


def test_extract_never_zips_a_scratch_directory_that_lost_files(tmp_path: Path) -> None:
    archive = tar_with(tmp_path / "a.tar", [(tar_info("a.bin"), b"a"), (tar_info("b.bin"), b"b")])
    scratch = tmp_path / "scratch"
    scratch.mkdir()

    class Vandal:
        """Removes an extracted file when compression starts (as a cleanup once did)."""

        def phase(self, name: str) -> object:
            import contextlib

            if name == "compress":
                for path in scratch.rglob("a.bin"):
                    path.unlink()
            return contextlib.nullcontext()

        def file_done(self) -> None:
            pass

    with pytest.raises(CompressionError, match="1 files and 0 links were zipped but 2"):
        run_extract(
            LocalSource(archive),
            LocalDestination(tmp_path / "out.zip"),
            PackageOptions(),
            scratch_root=scratch,
            storage=StorageManager(scratch),
            critical=0.99,
            phases=Vandal(),  # type: ignore[arg-type]
        )
    assert not (tmp_path / "out.zip").exists() and list(scratch.iterdir()) == []


@pytest.mark.parametrize("mtime", [1e18, -1e18])
def test_a_member_with_an_absurd_mtime_still_packages(tmp_path: Path, mtime: float) -> None:
    info = tar_info("odd.bin")
    info.mtime = mtime
    info.size = 1
    archive = tmp_path / "odd.tar"
    with tarfile.open(archive, "w", format=tarfile.PAX_FORMAT) as tar:
        tar.addfile(info, io.BytesIO(b"x"))  # PAX stores the out-of-range mtime as text
    run_stream(LocalSource(archive), LocalDestination(tmp_path / "o.zip"), PackageOptions())
    assert read_zip(tmp_path / "o.zip") == {"odd.bin": b"x"}
    StreamingExtractor().extract_streaming(archive, tmp_path / "out")
    assert (tmp_path / "out" / "odd.bin").read_bytes() == b"x"


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
