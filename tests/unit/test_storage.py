"""StorageManager and CleanupContext."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from handler.errors import CleanupFailedError, InsufficientStorageError
from handler.members import ArchiveFormat, ArchiveInfo, Member, MemberKind
from handler.storage import BLOCK_SIZE, CleanupContext, StorageManager, Strategy
from monitor.units import GiB, MiB


def fake_statvfs(total: int, free: int) -> os.statvfs_result:
    block = 4096
    return os.statvfs_result(
        (block, block, total // block, free // block, free // block, 0, 0, 0, 0, 255)
    )


INFO = ArchiveInfo(
    source="model.tar.gz",
    format=ArchiveFormat.TAR_GZ,
    archive_size=900 * MiB,
    members=(
        Member("model", MemberKind.DIRECTORY, 0),
        Member("model/w.bin", MemberKind.FILE, 1 * GiB),
        Member("model/config.json", MemberKind.FILE, 100),
    ),
)


def test_usage_and_available_space_come_from_statvfs() -> None:
    manager = StorageManager("/tmp", probe=lambda _p: fake_statvfs(512 * MiB, 412 * MiB))
    usage = manager.usage()
    assert (usage.total, usage.used, usage.available) == (512 * MiB, 100 * MiB, 412 * MiB)
    assert manager.get_available_space() == 412 * MiB


def test_monitor_usage_raises_past_the_threshold() -> None:
    manager = StorageManager("/tmp", probe=lambda _p: fake_statvfs(100 * MiB, 5 * MiB))
    with pytest.raises(InsufficientStorageError, match="95%"):
        manager.monitor_usage(0.9)
    assert manager.monitor_usage(0.99).fraction_used == pytest.approx(0.95)


def test_estimates_per_strategy() -> None:
    manager = StorageManager("/tmp")
    stream = manager.estimate_space_needed(INFO, Strategy.STREAM)
    extract = manager.estimate_space_needed(INFO, "extract")
    naive = manager.estimate_space_needed(INFO, Strategy.NAIVE)
    files_on_disk = 1 * GiB + BLOCK_SIZE + BLOCK_SIZE  # config.json rounds up; one directory
    assert stream.scratch_bytes == 0
    assert extract.scratch_bytes == files_on_disk
    assert naive.scratch_bytes >= 900 * MiB + files_on_disk + 1 * GiB
    # The naive path needs about three times the artifact: the problem in numbers.
    assert naive.scratch_bytes / INFO.total_size > 2.5
    assert stream.output_bytes >= INFO.total_size


def test_ensure_space_says_what_to_do() -> None:
    manager = StorageManager("/tmp", probe=lambda _p: fake_statvfs(512 * MiB, 500 * MiB))
    with pytest.raises(InsufficientStorageError, match="use the stream strategy") as caught:
        manager.ensure_space(manager.estimate_space_needed(INFO, Strategy.EXTRACT))
    assert caught.value.needed is not None and caught.value.needed > GiB
    manager.ensure_space(manager.estimate_space_needed(INFO, Strategy.STREAM))


def test_cleanup_directory_empties_it_and_reports_bytes(tmp_path: Path) -> None:
    (tmp_path / "a/b").mkdir(parents=True)
    (tmp_path / "a/b/f").write_bytes(b"x" * 10_000)
    (tmp_path / "g").write_bytes(b"y")
    freed = StorageManager(tmp_path).cleanup_directory(tmp_path)
    assert freed >= 10_000
    assert list(tmp_path.iterdir()) == []


def test_cleanup_directory_can_remove_the_directory_itself(tmp_path: Path) -> None:
    # The extract strategy's scratch removal: remove_root=True once raised
    # FileNotFoundError listing what remained of a directory that was gone.
    scratch = tmp_path / "scratch"
    (scratch / "d").mkdir(parents=True)
    (scratch / "d/f").write_bytes(b"x" * 10_000)
    freed = StorageManager(tmp_path).cleanup_directory(scratch, remove_root=True)
    assert freed >= 10_000
    assert not scratch.exists()


def test_cleanup_context_cleans_on_success_and_on_error(tmp_path: Path) -> None:
    with CleanupContext() as cleanup:
        scratch = cleanup.register_cleanup(tmp_path / "ok")
        scratch.mkdir()
        (scratch / "f").write_bytes(b"1")
    assert not scratch.exists()

    with pytest.raises(RuntimeError, match="boom"), CleanupContext() as cleanup:
        scratch = cleanup.register_cleanup(tmp_path / "failed")
        scratch.mkdir()
        (scratch / "f").write_bytes(b"1")
        raise RuntimeError("boom")
    assert not scratch.exists()


def test_force_cleanup_reports_what_remains(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stuck = tmp_path / "stuck"
    stuck.mkdir()
    (stuck / "f").write_bytes(b"1")

    def refuse(path: object, *args: object, **kwargs: object) -> None:
        raise PermissionError(13, "Permission denied", str(path))

    # Root ignores permissions, so simulate the one failure a real filesystem would give.
    monkeypatch.setattr(shutil, "rmtree", refuse)
    cleanup = CleanupContext()
    cleanup.register_cleanup(stuck)
    with pytest.raises(CleanupFailedError, match="stuck") as caught:
        cleanup.force_cleanup()
    assert caught.value.remaining == [stuck]


def test_cleanup_failure_after_a_body_error_keeps_the_body_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stuck = tmp_path / "stuck"
    stuck.mkdir()

    def refuse(path: object, *args: object, **kwargs: object) -> None:
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(shutil, "rmtree", refuse)
    with pytest.raises(ValueError, match="original") as caught, CleanupContext() as cleanup:
        cleanup.register_cleanup(stuck)
        raise ValueError("original")
    assert any("cleanup left 1 path(s) behind" in note for note in caught.value.__notes__)
