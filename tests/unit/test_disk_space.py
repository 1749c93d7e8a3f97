"""One definition of "used" for the monitor and StorageManager: the process's view, as df.

Guards issue 8, item 9: with root's reserve counted as free, a full filesystem read 91.8%.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from handler.storage import StorageManager, available_bytes
from monitor.errors import ConfigurationError
from monitor.sampler import SystemProbe, disk_space

BLOCK = 4096


def statvfs(blocks: int, bfree: int, bavail: int) -> os.statvfs_result:
    """A statvfs result of 4 KiB blocks (f_bsize, f_frsize, f_blocks, f_bfree, f_bavail...)."""
    return os.statvfs_result((BLOCK, BLOCK, blocks, bfree, bavail, 0, 0, 0, 0, 255))


@pytest.mark.parametrize(
    ("blocks", "bfree", "bavail", "used", "available", "fraction"),
    [
        (1000, 1000, 950, 0, 950, 0.0),  # empty ext4 with a 5% reserve
        (1000, 100, 50, 900, 50, 900 / 950),  # df: used / (used + avail)
        (1000, 50, 0, 950, 0, 1.0),  # an unprivileged writer's ENOSPC: 100%
        (1000, 20, 0, 980, 0, 1.0),  # root wrote into the reserve: still 100%
        (1000, 400, 400, 600, 400, 0.6),  # tmpfs: no reserve, the old and new views agree
        (0, 0, 0, 0, 0, 1.0),  # a filesystem that reports no size
    ],
)
def test_used_is_the_share_of_what_this_process_could_have(
    blocks: int, bfree: int, bavail: int, used: int, available: int, fraction: float
) -> None:
    st = statvfs(blocks, bfree, bavail)
    space = disk_space(st)
    assert (space.used, space.available) == (used * BLOCK, available * BLOCK)
    assert space.total == space.used + space.available
    assert space.used_fraction == pytest.approx(fraction)
    usage = StorageManager("/x", probe=lambda _p: st).usage()
    assert (usage.total, usage.used, usage.available) == tuple(space)
    assert usage.fraction_used == pytest.approx(fraction)


def test_the_monitor_probe_and_storage_manager_read_the_same_numbers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    st = statvfs(1000, 50, 0)
    monkeypatch.setattr(os, "statvfs", lambda _path: st)
    reading = SystemProbe("/").read()
    assert (reading.total_space, reading.used_space, reading.available_space) == (
        950 * BLOCK,
        950 * BLOCK,
        0,
    )
    assert available_bytes("/") == 0
    assert StorageManager("/", probe=os.statvfs).usage().fraction_used == 1.0


def test_monitor_usage_stops_extraction_at_the_threshold_of_the_process_view() -> None:
    # 93% of f_blocks in use but 97.9% of what this process could have: the old view
    # let extraction go on past a 0.97 limit.
    manager = StorageManager("/x", probe=lambda _p: statvfs(1000, 70, 20))
    with pytest.raises(Exception, match="98%"):
        manager.monitor_usage(0.97)


def _open_fds() -> set[str]:
    return {fd.name for fd in Path("/proc/self/fd").iterdir()}


def test_the_probe_reads_what_statvfs_and_statm_say_and_closes_what_it_opened(
    tmp_path: Path,
) -> None:
    # GIVEN a probe kept open on a directory (its descriptors: the directory and statm)
    before = _open_fds()
    probe = SystemProbe(tmp_path)
    # WHEN it reads
    reading = probe.read()
    # THEN its figures are the path's statvfs (as df) and this process's RSS
    space = disk_space(os.statvfs(tmp_path))
    assert reading.total_space == pytest.approx(space.total, rel=0.01)
    resident = int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    assert reading.memory_used == pytest.approx(resident, rel=0.5)
    # AND closing it gives its descriptors back; a path that is not there is one clear error
    probe.close()
    assert _open_fds() <= before
    with pytest.raises(ConfigurationError, match=r"cannot watch .*missing.*existing directory"):
        SystemProbe(tmp_path / "missing")
    assert _open_fds() <= before
