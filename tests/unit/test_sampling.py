"""The sampling thread: one thread per monitor, alive whatever a sample does."""

from __future__ import annotations

import threading
import time

from monitor.sampling import THREAD_NAME, SamplingThread
from monitor.units import GiB, MiB
from tests.fakes import FakeSystem


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


def test_a_failing_sample_is_counted_and_the_thread_goes_on() -> None:
    calls: list[int] = []
    flushed: list[int] = []

    def sample() -> None:
        calls.append(1)
        if len(calls) % 2:
            raise OSError("statvfs failed")

    thread = SamplingThread(
        sample, lambda: flushed.append(1), lambda: False, interval=0.005, flush_interval=0.02
    )
    thread.start()
    thread.start()  # idempotent
    deadline = time.monotonic() + 5
    while len(calls) < 10 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert thread.running
    names = [t.name for t in threading.enumerate()].count(THREAD_NAME)
    assert thread.stop() and not thread.stop()
    assert len(calls) >= 10 and thread.errors >= 5
    assert flushed and names >= 1
    assert thread.cpu_seconds >= 0.0


def test_stop_cuts_a_stretched_interval_short() -> None:
    # GIVEN headroom-aware sampling far from every threshold: a 5 s interval
    fake = FakeSystem(total=10 * GiB)
    monitor = fake.monitor(
        fake_clocks=False,
        memory_limit=10 * GiB,
        max_sample_interval=5.0,
        flush_interval=60.0,
        worst_fill_rate=64 * MiB,
        worst_memory_rate=64 * MiB,
    )
    monitor.start()
    deadline = time.monotonic() + 5
    while monitor.samples_taken < 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert monitor.next_sample_interval() == 5.0
    taken = monitor.samples_taken
    time.sleep(0.3)
    # WHEN the monitor stops in the middle of the wait
    started = time.monotonic()
    monitor.stop()
    # THEN it does not wait out the interval, and no sample was taken meanwhile
    assert time.monotonic() - started < 1.0
    assert not monitor.running
    assert monitor.samples_taken == taken
