"""A child that allocates until its memory limit and is SIGKILLed there, as Lambda's
out-of-memory kill ends a function: no flush, no end of invocation, no exit handler.

``python -m tests.integration.last_word_child HEADROOM_MIB``: the limit is the child's
resident memory at start plus HEADROOM_MIB. It touches 4 MiB at a time, every 5 ms far
from the thresholds and, from 70% of the limit, after two samples of the monitor's own
sampling thread per step (a fill the monitor can see, well under the worst rate), and
kills itself with SIGKILL once resident memory reaches the limit. Exit code 3: the
sampling thread stopped sampling.
"""

from __future__ import annotations

import os
import resource
import signal
import sys
import time
from pathlib import Path

from monitor.config import MonitorConfig
from monitor.sidecar import StorageMonitor

CHUNK = 4 * 1024 * 1024
PAGE = resource.getpagesize()
NEAR = 0.7
"""From this share of the limit on, each step waits for two samples of the monitor."""


def resident_bytes() -> int:
    return int(Path("/proc/self/statm").read_bytes().split()[1]) * PAGE


def main() -> int:
    limit = resident_bytes() + int(sys.argv[1]) * 1024 * 1024
    config = MonitorConfig.resolve(
        path="/tmp",
        sample_interval=0.01,
        flush_interval=60.0,  # no periodic flush before the kill
        tracing="off",
        actions=False,
        environ={},
    )
    monitor = StorageMonitor(config, memory_limit=limit, environ={})
    monitor.begin_invocation("req-oom")
    hoard: list[bytes] = []
    while True:
        hoard.append(b"x" * CHUNK)  # b"x" * n writes every page: resident at once
        resident = resident_bytes()
        if resident >= limit:
            os.kill(os.getpid(), signal.SIGKILL)
        if resident < NEAR * limit:
            time.sleep(0.005)  # far from the thresholds: the pace of a fast fill
            continue
        seen = monitor.samples_taken  # near them: a fill the monitor can see
        deadline = time.monotonic() + 5.0
        while monitor.samples_taken < seen + 2:
            if time.monotonic() > deadline:
                return 3
            time.sleep(0.002)


if __name__ == "__main__":
    sys.exit(main())
