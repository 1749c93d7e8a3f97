"""Fill a filesystem until ENOSPC as an unprivileged writer (run by test_monitor_ext4).

``python -m tests.integration.reserve_scenario DIR`` writes ``DIR/fill.bin`` in shrinking
chunks until not even one byte more fits, sampling the monitor and StorageManager after
every chunk, and prints one JSON object: the critical event, the fractions at ENOSPC
(the monitor's, StorageManager's and root's view for comparison) and when
StorageManager's ``monitor_usage(0.97)`` first refused.
"""

from __future__ import annotations

import errno
import json
import os
import sys
import time
from pathlib import Path

from handler.errors import InsufficientStorageError
from handler.storage import StorageManager
from monitor import MonitorConfig, MonitorEvent, StorageMonitor
from monitor.emf import MemorySink

CRITICAL = 0.97
CHUNKS = (256 * 1024, 4096, 1)


def main(directory: str) -> None:
    root = Path(directory)
    monitor = StorageMonitor(
        MonitorConfig.resolve(
            {
                "path": root,
                "sample_interval": 0.05,
                "tmp_warning": 0.9,
                "tmp_critical": CRITICAL,
                "tracing": "off",
                "actions": False,
            },
            environ={},
        ),
        sink=MemorySink(),
        environ={},
    )
    manager = StorageManager(root)
    critical: list[dict[str, float]] = []

    def record(event: MonitorEvent) -> None:
        critical.append(
            {
                "at": time.time(),
                "fraction": event.metrics.used_fraction,
                "available": event.metrics.available_space,
            }
        )

    monitor.add_callback("critical", record)
    monitor.begin_invocation("reserve")
    refused_at: int | None = None
    written = 0
    enospc_at = 0.0
    with (root / "fill.bin").open("wb", buffering=0) as out:
        for size in CHUNKS:
            chunk = b"\xa5" * size
            while True:
                try:
                    done = out.write(chunk)
                except OSError as exc:
                    if exc.errno != errno.ENOSPC:
                        raise
                    enospc_at = time.time()
                    break
                written += done or 0
                monitor.sample_now()
                if refused_at is None:
                    try:
                        manager.monitor_usage(CRITICAL)
                    except InsufficientStorageError:
                        refused_at = written
    monitor.drain_callbacks(5)
    at_full = monitor.sample_now()
    usage = manager.usage()
    st = os.statvfs(root)
    monitor.end_invocation()
    monitor.stop()
    print(
        json.dumps(
            {
                "uid": os.getuid(),
                "written": written,
                "enospc_at": enospc_at,
                "critical": critical,
                "monitor_fraction": at_full.used_fraction,
                "monitor_available": at_full.available_space,
                "manager_fraction": usage.fraction_used,
                "root_view_fraction": (st.f_blocks - st.f_bfree) / st.f_blocks,
                "reserved_bytes": (st.f_bfree - st.f_bavail) * st.f_frsize,
                "manager_refused_at": refused_at,
            }
        )
    )


if __name__ == "__main__":
    main(sys.argv[1])
