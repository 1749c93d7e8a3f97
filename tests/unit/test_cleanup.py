"""The critical-/tmp cleanup: on Lambda it removes every registered path; on a Managed
Instance only in a process whose request holds a meaningful share of the shared /tmp
(review2 item 1: one request filling /tmp made every process delete its own scratch)."""

from __future__ import annotations

import os
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from monitor.callbacks import MonitorEvent
from monitor.cleanup import ASSUMED_PROCESSES, CleanupRule, cleanup_paths
from monitor.environment import MAX_CONCURRENCY_ENV
from monitor.metrics import Level, Resource, StorageMetrics
from tests.fakes import MIB, FakeSystem

PAGE = 4096


def _event(used: int, total: int = 64 * MIB) -> MonitorEvent:
    metrics = StorageMetrics(total, total - used, used, 0.8, 0.9, 0.0)
    return MonitorEvent(Level.CRITICAL, Resource.TMP, metrics)


def _scratch(tmp_path: Path, name: str, size: int) -> Path:
    scratch = tmp_path / name
    scratch.mkdir()
    (scratch / "half-extracted.bin").write_bytes(os.urandom(size))
    return scratch


def _rule(tmp_path: Path, shared: bool, processes: int | None) -> CleanupRule:
    no_open_files = tmp_path / "fd"  # this test process's own open files are not the request's
    no_open_files.mkdir(exist_ok=True)
    return CleanupRule(shared, processes, str(tmp_path), str(no_open_files))


def test_a_process_holding_little_of_the_shared_tmp_keeps_its_scratch(tmp_path: Path) -> None:
    """Another request filled 60 of the 61 MiB in use; this one holds 1 MB, under the
    15.25 MiB it would need (half an even share of 2 processes): its work survives, and
    the record says why."""
    scratch = _scratch(tmp_path, "request-b", 1_000_000)
    cleanup = cleanup_paths(lambda: [scratch], _rule(tmp_path, True, 2))
    outcome = cleanup(_event(61 * MIB))
    assert scratch.exists() and (scratch / "half-extracted.bin").stat().st_size == 1_000_000
    print(outcome)
    assert isinstance(outcome, str) and outcome.startswith("kept 1 path(s)")
    assert "holds 1.0 MiB of 61.0 MiB used, under 15.2 MiB" in outcome


def test_the_process_whose_request_filled_the_shared_tmp_cleans(tmp_path: Path) -> None:
    scratch = _scratch(tmp_path, "request-a", 40 * MIB)
    cleanup = cleanup_paths(lambda: [scratch], _rule(tmp_path, True, 4))
    outcome = cleanup(_event(58 * MIB))
    assert not scratch.exists()
    assert isinstance(outcome, str) and outcome.startswith("removed 1 path(s)")
    assert "holds 40.0 MiB of 58.0 MiB used, at least 7.2 MiB" in outcome


def test_on_lambda_the_cleanup_removes_everything_as_before(tmp_path: Path) -> None:
    """One process, /tmp its own: whatever it holds, the crossing is its doing."""
    scratch = _scratch(tmp_path, "request", 4096)
    empty = tmp_path / "empty-dir"
    empty.mkdir()
    cleanup = cleanup_paths(lambda: [scratch, empty], _rule(tmp_path, False, 1))
    assert cleanup(_event(63 * MIB)) == "removed 2 path(s): this process has /tmp to itself"
    assert not scratch.exists() and not empty.exists()


def test_a_request_holding_nothing_never_cleans(tmp_path: Path) -> None:
    empty = tmp_path / "not-written-yet"
    empty.mkdir()
    outcome = cleanup_paths(lambda: [empty], _rule(tmp_path, True, 1600))(_event(0))
    assert empty.exists() and isinstance(outcome, str) and outcome.startswith("kept")


def test_an_unknown_process_count_assumes_two(tmp_path: Path) -> None:
    rule = _rule(tmp_path, True, None)
    assert ASSUMED_PROCESSES == 2
    assert rule.least_held(60 * MIB) == 15 * MIB
    scratch = _scratch(tmp_path, "request", 16 * MIB)
    outcome = cleanup_paths(lambda: [scratch], rule)(_event(60 * MIB))
    assert not scratch.exists() and "of 2 (assumed) processes" in str(outcome)


def test_no_registered_paths_is_said_so(tmp_path: Path) -> None:
    assert cleanup_paths(list, _rule(tmp_path, True, 2))(_event(MIB)) == "no registered paths"


@settings(max_examples=100, deadline=None)
@given(
    held=st.lists(st.integers(0, 1 << 40), min_size=1, max_size=64),
    unattributed=st.floats(0.0, 1.0),
)
def test_the_largest_holder_cleans_while_most_of_tmp_is_attributed(
    held: list[int], unattributed: float
) -> None:
    """However the requests share the space, while at least half of what is used is
    held by requests (the rest: caches, other processes' closed files), the request
    holding the most always cleans: a full /tmp never stays full for want of a cleaner."""
    attributed = sum(held)
    used = attributed + int(attributed * unattributed)  # at most half unattributed
    rule = CleanupRule(True, len(held), "/tmp")
    if attributed:
        assert max(held) >= rule.least_held(used)
    assert CleanupRule(False, 1, "/tmp").least_held(used) == 0


def test_a_monitor_on_a_managed_instance_records_why_it_kept_its_scratch(
    tmp_path: Path,
) -> None:
    """Through the monitor: the critical crossing of the environment's /tmp, caused by
    other processes, leaves this process's scratch and says so in the invocation record."""
    fake = FakeSystem(total=64 * MIB)
    monitor = fake.monitor(environ={MAX_CONCURRENCY_ENV: "2"}, path=str(tmp_path))
    scratch = monitor.register_cleanup(_scratch(tmp_path, "request-b", 100_000))
    monitor.begin_invocation("request-b")
    fake.fill_fraction(0.95)  # the other process's 60 MiB
    monitor.sample_now()
    record = monitor.end_invocation()
    [run] = [c for c in record.callbacks if c.name == "cleanup_registered_paths"]
    assert scratch.exists()
    assert run.outcome is not None and run.outcome.startswith("kept 1 path(s)")
    assert run.as_dict()["outcome"] == run.outcome
