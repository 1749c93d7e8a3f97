"""The monitor's cost: CPU time of its thread as a share of one core, and one sample's cost.

``python -m benchmarks.monitor_overhead [--seconds S]`` runs the monitor at a fixed
100 ms and 10 ms beside a bare thread's floor at the same interval (the goal is a
ratio: the monitor's thread at most :data:`FLOOR_RATIO_GOAL` times the floor), then at
its defaults (headroom-aware sampling) idle far from every threshold, with EMF
aggregation, serialization and threshold checks included (lines go to a sink that drops
them), then times single samples. Goals: issue 11.
"""

from __future__ import annotations

import argparse
import os
import time
from dataclasses import dataclass

os.environ.setdefault("AWS_EMF_ENVIRONMENT", "Local")

from monitor.config import MonitorConfig
from monitor.sampler import SystemProbe
from monitor.sidecar import StorageMonitor
from monitor.units import GiB

FIXED_INTERVALS = (0.1, 0.01)
"""Fixed sample intervals (s) measured beside the bare-thread floor."""
FLOOR_RATIO_GOAL = 1.25
"""At a fixed interval, the monitor's thread CPU at most this many times the floor's."""
IDLE_GOAL_PERCENT = 0.05
"""Headroom-aware defaults, idle far from every threshold: CPU share (% of one core)."""
IDLE_MEMORY_LIMIT = 10 * GiB
"""The idle row's memory limit: Lambda's largest, so memory is far from its threshold
at the default worst memory rate (1 GiB/s) as /tmp is (this machine's disk)."""
SAMPLE_GOAL_US = 20.0


class DropSink:
    """Counts EMF lines and bytes; writes nothing."""

    def __init__(self) -> None:
        self.lines = 0
        self.bytes = 0

    def write_line(self, line: str) -> None:
        self.lines += 1
        self.bytes += len(line) + 1


@dataclass(frozen=True)
class OverheadResult:
    interval: float
    seconds: float
    cpu_share_percent: float
    samples: int
    emf_bytes_per_minute: float


def thread_overhead(
    interval: float | None, seconds: float, memory_limit: int | None = None
) -> OverheadResult:
    """The monitor's thread over ``seconds``: at a fixed ``interval``, or at its
    defaults (headroom-aware sampling) when ``interval`` is None."""
    sink = DropSink()
    settings: dict[str, object] = {"path": "/tmp", "tracing": "off"}
    if interval is not None:
        settings |= {"sample_interval": interval, "sampling": "fixed"}
    config = MonitorConfig.resolve(settings)
    monitor = StorageMonitor(config, sink=sink, memory_limit=memory_limit)
    monitor.begin_invocation("benchmark")
    started = time.monotonic()
    time.sleep(seconds)
    elapsed = time.monotonic() - started
    cpu = monitor.thread_cpu_seconds
    samples = monitor.samples_taken
    monitor.stop()
    return OverheadResult(
        interval if interval is not None else elapsed / max(samples, 1),
        elapsed,
        100 * cpu / elapsed,
        samples,
        sink.bytes / elapsed * 60,
    )


def floor_overhead(interval: float, seconds: float) -> float:
    """CPU share (% of a core) of the least any sampler thread must do: sleep, statvfs,
    pread of /proc/self/statm; nothing else. The platform's floor, for comparison."""
    import threading  # noqa: PLC0415

    result: list[float] = []

    def loop() -> None:
        fd = os.open("/proc/self/statm", os.O_RDONLY)
        started, cpu = time.monotonic(), time.thread_time()
        while time.monotonic() - started < seconds:
            time.sleep(interval)
            os.statvfs("/tmp")
            os.pread(fd, 64, 0)
        result.append(100 * (time.thread_time() - cpu) / (time.monotonic() - started))
        os.close(fd)

    thread = threading.Thread(target=loop)
    thread.start()
    thread.join()
    return result[0]


def sample_cost_us(count: int = 20_000) -> tuple[float, float]:
    """(one raw probe, one full sample_now) in microseconds of CPU."""
    probe = SystemProbe("/tmp")
    started = time.thread_time()
    for _ in range(count):
        probe.read()
    raw = (time.thread_time() - started) / count * 1e6
    monitor = StorageMonitor(
        MonitorConfig.resolve(path="/tmp", sample_interval=1.0, tracing="off"), sink=DropSink()
    )
    started = time.thread_time()
    for _ in range(count):
        monitor.sample_now()
    full = (time.thread_time() - started) / count * 1e6
    return raw, full


def main(argv: list[str] | None = None) -> list[str]:
    """Measure, print and return the table rows."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args(argv)
    raw, full = sample_cost_us()
    rows = [
        "| measure | measured | goal | met |",
        "| --- | ---: | ---: | --- |",
        f"| one reading (statvfs + pread of /proc/self/statm) | {raw:.1f} µs | "
        f"< {SAMPLE_GOAL_US:.0f} µs | {'yes' if raw < SAMPLE_GOAL_US else '**no**'} |",
        f"| one full sample (reading, levels, trend, EMF buffer) | {full:.1f} µs | | |",
    ]
    for interval in FIXED_INTERVALS:
        result = thread_overhead(interval, args.seconds)
        floor = floor_overhead(interval, args.seconds)
        ratio = result.cpu_share_percent / floor if floor > 0 else float("inf")
        rows.append(
            f"| monitor thread at a fixed {interval * 1000:g} ms ({result.samples} samples "
            f"in {result.seconds:.0f} s) | {result.cpu_share_percent:.3f}% of a core | | |"
        )
        rows.append(
            f"| floor at {interval * 1000:g} ms: a bare thread doing only sleep + statvfs + "
            f"pread | {floor:.3f}% of a core | | |"
        )
        rows.append(
            f"| monitor thread / floor at {interval * 1000:g} ms | {ratio:.2f}x | "
            f"<= {FLOOR_RATIO_GOAL}x | {'yes' if ratio <= FLOOR_RATIO_GOAL else '**no**'} |"
        )
        rows.append(
            f"| EMF log volume at {interval * 1000:g} ms | "
            f"{result.emf_bytes_per_minute / 1024:.1f} KiB/min | | |"
        )
    idle = thread_overhead(None, args.seconds, memory_limit=IDLE_MEMORY_LIMIT)
    met = idle.cpu_share_percent < IDLE_GOAL_PERCENT
    rows.append(
        f"| monitor thread at its defaults (headroom-aware, 100-1,000 ms), idle far from "
        f"every threshold ({idle.samples} samples in {idle.seconds:.0f} s, one every "
        f"{idle.interval * 1000:.0f} ms; {IDLE_MEMORY_LIMIT // GiB} GiB memory limit) | "
        f"{idle.cpu_share_percent:.3f}% of a core | < {IDLE_GOAL_PERCENT}% | "
        f"{'yes' if met else '**no**'} |"
    )
    idle_floor = floor_overhead(idle.interval, args.seconds)
    rows.append(
        f"| floor at {idle.interval * 1000:.0f} ms: a bare thread doing only sleep + statvfs "
        f"+ pread | {idle_floor:.3f}% of a core | | |"
    )
    rows.append(
        f"| EMF log volume at the defaults, idle | "
        f"{idle.emf_bytes_per_minute / 1024:.1f} KiB/min | | |"
    )
    print("\n".join(rows))
    return rows


if __name__ == "__main__":
    main()
