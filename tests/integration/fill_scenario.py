"""A constant-rate fill of a real tmpfs under a running monitor (run by the integration test).

``python -m tests.integration.fill_scenario DIR RATE_MIB_S HORIZON_S`` prints one JSON
object: the callbacks seen (with times), the writer's timeline, the cleanup records.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from monitor import MonitorConfig, MonitorEvent, StorageMonitor
from monitor.emf import MemorySink
from monitor.sampler import disk_space

MIB = 1024 * 1024
INTERVAL = 0.05


def main(directory: str, rate: float, horizon: float) -> None:
    root = Path(directory)
    cache = root / "cache"
    cache.mkdir()
    for index in range(8):
        (cache / f"shard-{index}.bin").write_bytes(os.urandom(MIB))
    monitor = StorageMonitor(
        MonitorConfig.resolve(
            path=root, sample_interval=INTERVAL, predict_horizon=horizon, tracing="off"
        ),
        sink=MemorySink(),
    )
    monitor.register_cleanup(cache)
    seen: list[dict[str, object]] = []

    def record(event: MonitorEvent) -> None:
        seen.append(
            {
                "level": event.level.value,
                "at": time.time(),
                "sample_time": event.metrics.timestamp,
                "percent": event.metrics.used_fraction * 100,
            }
        )

    for level in ("warning", "predicted_full", "critical"):
        monitor.add_callback(level, record)
    timeline: list[tuple[float, float]] = []
    chunk = os.urandom(MIB)
    monitor.begin_invocation("fill")
    started = time.monotonic()
    with (root / "fill.bin").open("wb", buffering=0) as out:
        written = 0
        while not any(e["level"] == "critical" for e in seen):
            due = started + written / (rate * MIB)
            time.sleep(max(due - time.monotonic(), 0))
            out.write(chunk)
            written += MIB
            timeline.append((time.time(), disk_space(os.statvfs(root)).used_fraction))
            if time.monotonic() - started > 60:
                break
    monitor.drain_callbacks(5)
    summary = monitor.end_invocation()
    monitor.stop()
    print(
        json.dumps(
            {
                "events": seen,
                "timeline": timeline,
                "cache_exists": cache.exists(),
                "callbacks": [r.as_dict() for r in summary.callbacks],
                "interval": INTERVAL,
            }
        )
    )


if __name__ == "__main__":
    main(sys.argv[1], float(sys.argv[2]), float(sys.argv[3]))
