"""Regressions found in review: each test is a scenario that once went wrong."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from monitor.callbacks import CallbackRunner, MonitorEvent
from monitor.metrics import Level, Resource, StorageMetrics
from monitor.sampler import Reading
from tests.fakes import FakeSystem


def test_a_failing_probe_does_not_wedge_the_callback_runner() -> None:
    fake = FakeSystem()
    calls = {"n": 0}

    def flaky() -> Reading:
        calls["n"] += 1
        if calls["n"] == 1:
            raise OSError("statvfs failed")
        return fake.probe()

    runner = CallbackRunner(flaky)
    metrics = StorageMetrics(1, 1, 0, 0.8, 0.9, 0.0)
    ran: list[int] = []

    def callback_for(index: int) -> Callable[[MonitorEvent], None]:
        return lambda _event: ran.append(index)

    for index in range(3):
        runner.submit(callback_for(index), "cb", MonitorEvent(Level.WARNING, Resource.TMP, metrics))
    assert runner.drain(2.0)
    assert ran == [0, 1, 2]
    # the probe's failure is logged; the callbacks ran and succeeded, and nothing is stuck
    assert [r.error for r in runner.take_records()] == [None, None, None]
    assert runner.drain(0.1)


def test_stop_then_start_leaves_one_sampling_thread() -> None:
    fake = FakeSystem()
    before = set(threading.enumerate())  # other tests' monitors may still be running
    monitor = fake.monitor(fake_clocks=False, sample_interval=0.01)
    for _ in range(3):
        monitor.start()
        monitor.stop()
    monitor.start()
    time.sleep(0.2)
    alive = [t for t in set(threading.enumerate()) - before if t.name == "tmpwarden-monitor"]
    monitor.stop()
    assert len(alive) == 1
