"""Headroom-aware sampling: long sleeps far from every threshold, the minimum near one."""

from __future__ import annotations

import json
import time

import pytest

from monitor import records as r
from monitor.emf import MemorySink
from monitor.headroom import SAMPLES_BEFORE_CROSSING, Headroom, next_interval
from monitor.units import GiB, MiB
from tests.fakes import FakeSystem


def big_tmp(used_fraction: float) -> FakeSystem:
    """A 10 GiB /tmp (Lambda's largest), ``used_fraction`` full."""
    fake = FakeSystem(total=10 * GiB, now=1000.0)
    fake.fill_fraction(used_fraction)
    return fake


def test_far_from_every_threshold_the_interval_stretches_to_the_maximum() -> None:
    fake = big_tmp(0.10)  # 7 GiB to the warning: 7 s at 1 GiB/s
    monitor = fake.monitor(actions=False, memory_limit=10 * GiB)  # 8 GiB to memory's
    monitor.sample_now()
    assert monitor.next_sample_interval() == 1.0


def test_a_small_memory_limit_keeps_the_interval_short_unless_memory_grows_slowly() -> None:
    fake = big_tmp(0.10)
    # 1 GiB of memory, 10 MiB used: 809 MiB to the warning, 0.79 s at 1 GiB/s
    monitor = fake.monitor(actions=False, memory_limit=1 * GiB)
    monitor.sample_now()
    gap = 0.8 * GiB - fake.rss
    assert monitor.next_sample_interval() == pytest.approx(gap / GiB / SAMPLES_BEFORE_CROSSING)
    slow = fake.monitor(actions=False, memory_limit=1 * GiB, worst_memory_rate=128 * MiB)
    slow.sample_now()
    assert slow.next_sample_interval() == 1.0


def test_near_a_threshold_the_interval_tightens_to_the_minimum() -> None:
    fake = big_tmp(0.799)  # 10 MiB to the warning: 10 ms at 1 GiB/s
    monitor = fake.monitor(actions=False, memory_limit=10 * GiB, sample_interval=0.01)
    monitor.sample_now()
    assert monitor.next_sample_interval() == 0.01


def test_between_the_bounds_it_is_a_quarter_of_the_time_to_cross_at_the_worst_rate() -> None:
    fake = big_tmp(0.79)  # 0.01 * 10 GiB = 102.4 MiB to the warning
    monitor = fake.monitor(actions=False, memory_limit=10 * GiB, sample_interval=0.001)
    monitor.sample_now()
    gap = 0.8 * 10 * GiB - int(0.79 * 10 * GiB)
    assert monitor.next_sample_interval() == pytest.approx(gap / GiB / SAMPLES_BEFORE_CROSSING)


def test_memory_close_to_its_threshold_tightens_it_too() -> None:
    fake = big_tmp(0.10)
    fake.rss = 81 * MiB  # of 100 MiB: past the warning, 9 MiB to critical
    monitor = fake.monitor(actions=False)
    monitor.sample_now()
    assert monitor.next_sample_interval() == 0.1


def test_a_fill_measured_faster_than_the_worst_rate_tightens_the_interval() -> None:
    fake = big_tmp(0.10)
    monitor = fake.monitor(actions=False, memory_limit=10 * GiB, worst_fill_rate=64 * MiB)
    monitor.sample_now()
    assert monitor.next_sample_interval() == 1.0  # 7 GiB at 64 MiB/s: 112 s
    fake.advance(0.1)
    fake.used += 400 * MiB  # 4 GiB/s
    monitor.sample_now()
    gap = 0.8 * 10 * GiB - fake.used
    expected = gap / (4000 * MiB) / SAMPLES_BEFORE_CROSSING
    assert monitor.next_sample_interval() == pytest.approx(expected, rel=1e-6)
    assert expected < 0.5


def test_fixed_sampling_keeps_the_sample_interval() -> None:
    fake = big_tmp(0.10)
    monitor = fake.monitor(actions=False, memory_limit=10 * GiB, sampling="fixed")
    monitor.sample_now()
    assert monitor.next_sample_interval() == 0.1


def test_past_full_or_with_no_capacity_there_is_no_headroom() -> None:
    assert Headroom(used=10, capacity=10, thresholds=(0.8, 0.9), worst_rate=GiB).gap() == 0.0
    assert Headroom(used=0, capacity=0, thresholds=(0.8,), worst_rate=GiB).gap() == 0.0
    full = [Headroom(used=11, capacity=10, thresholds=(), worst_rate=GiB)]
    assert next_interval(full, minimum=0.01, maximum=1.0) == 0.01


def test_the_invocation_record_carries_the_monitors_own_cost() -> None:
    # GIVEN a monitor with a real sampling thread at 5 ms
    fake, sink = FakeSystem(), MemorySink()
    monitor = fake.monitor(sink, fake_clocks=False, sample_interval=0.005, sampling="fixed")
    monitor.begin_invocation("req-cost")
    time.sleep(0.3)
    monitor.sample_now()
    # WHEN the invocation ends
    record = monitor.end_invocation()
    monitor.stop()
    # THEN its record says what the sampling cost: thread CPU seconds and samples taken
    assert record.samples_taken >= 20  # ~60 at 5 ms; a loaded machine delays some
    assert 0 < record.monitor_cpu_seconds < 0.3
    [line] = [x for x in sink.lines if '"TmpwardenRecord": "invocation"' in x]
    written = json.loads(line)
    assert written[r.SAMPLES_TAKEN] == record.samples_taken
    assert written[r.MONITOR_CPU_SECONDS] == pytest.approx(record.monitor_cpu_seconds, abs=1e-6)


def test_samples_taken_counts_this_invocations_samples_only() -> None:
    fake = FakeSystem()
    monitor = fake.monitor(actions=False)
    for _ in range(5):
        monitor.sample_now()  # before the invocation: not counted
    monitor.begin_invocation("req-1")  # one baseline sample
    for _ in range(3):
        fake.advance(0.1)
        monitor.sample_now()
    record = monitor.end_invocation()  # and one last sample
    assert record.samples_taken == 5
    assert record.monitor_cpu_seconds == 0.0  # the thread never ran: no CPU of its own
