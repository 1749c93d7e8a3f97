"""Three runtime processes of one Lambda Managed Instance sharing one ``/tmp``, one of which
fills it past critical (run by tests/integration/test_managed_instances.py inside a private
tmpfs mount; review2 item 1).

``python -m tests.integration.cleanup_scenario MOUNT OUT`` starts :data:`PROCESSES`
workers (``... worker INDEX MOUNT OUT``). Each is one request in its own process with a
``StorageMonitor`` whose default actions are on (the critical-``/tmp`` cleanup of its
registered scratch) and sampling every 10 ms. Workers 1 and 2 write :data:`WORK_BYTES`
of work in progress into their scratch and wait; worker 0 (the filler) then writes
:data:`FILL_BYTES` into its own scratch, past the critical level, and keeps the file open
until the others have seen the crossing and run their callbacks (so the space is still in
use when they measure, whatever their cleanup or its own does). Each writes
OUT/worker-INDEX.json: whether its scratch is still there with what it wrote, and its
callback runs.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from monitor import MonitorConfig, StorageMonitor
from monitor.emf import MemorySink
from monitor.environment import INITIALIZATION_TYPE_ENV, MAX_CONCURRENCY_ENV
from monitor.metrics import Level
from monitor.sampler import LAMBDA_MEMORY_ENV
from tests.integration.managed_scenario import wait_for

PROCESSES = 3
MIB = 1024 * 1024
MANAGED_ENV = {
    INITIALIZATION_TYPE_ENV: "lambda-managed-instances",
    MAX_CONCURRENCY_ENV: str(PROCESSES),
    LAMBDA_MEMORY_ENV: "2048",
}
FILL_BYTES = 60 * MIB
"""Of the 64 MiB tmpfs: past the 90% critical level with the others' work."""
WORK_BYTES = 1_000_000
MODULE = "tests.integration.cleanup_scenario"


def worker(index: int, mount: Path, out: Path) -> None:
    config = MonitorConfig.resolve(
        path=mount, sample_interval=0.01, sampling="fixed", tracing="off", environ={}
    )
    monitor = StorageMonitor(config, sink=MemorySink(), environ=MANAGED_ENV)
    scratch = monitor.register_cleanup(mount / f"request-{index}")
    scratch.mkdir()
    monitor.begin_invocation(f"req-{index}")
    work = os.urandom(WORK_BYTES)
    if index:
        (scratch / "half-extracted.bin").write_bytes(work)
        (out / f"ready-{index}").touch()
        deadline = time.monotonic() + 30
        while monitor.level("tmp") is not Level.CRITICAL and time.monotonic() < deadline:
            time.sleep(0.005)  # the filler's crossing, seen by this process's thread too
        assert monitor.drain_callbacks(), "the cleanup callback ran"
        (out / f"seen-{index}").touch()
    else:
        wait_for([out / f"ready-{i}" for i in range(1, PROCESSES)])
        with (scratch / "fill.bin").open("wb") as fill:
            block = os.urandom(MIB)
            for _ in range(FILL_BYTES // MIB):
                fill.write(block)
            fill.flush()
            monitor.sample_now()
            assert monitor.drain_callbacks(), "the cleanup callback ran"
            wait_for([out / f"seen-{i}" for i in range(1, PROCESSES)])
    record = monitor.end_invocation()
    kept = scratch / "half-extracted.bin"
    report = {
        "pid": os.getpid(),
        "scratch_exists": scratch.exists(),
        "work_intact": kept.exists()
        and hashlib.sha256(kept.read_bytes()).digest() == hashlib.sha256(work).digest(),
        "levels": [(e.resource.value, e.level.value) for e in record.events],
        "callbacks": [run.as_dict() for run in record.callbacks],
    }
    monitor.stop()
    (out / f"worker-{index}.json").write_text(json.dumps(report))


def main(mount: Path, out: Path) -> int:
    workers = [
        subprocess.Popen(
            [sys.executable, "-m", MODULE, "worker", str(i), str(mount), str(out)],
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(PROCESSES)
    ]
    failed = 0
    for process in workers:
        _, stderr = process.communicate(timeout=60)
        if process.returncode:
            failed += 1
            print(stderr, file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    if sys.argv[1] == "worker":
        worker(int(sys.argv[2]), Path(sys.argv[3]), Path(sys.argv[4]))
    else:
        sys.exit(main(Path(sys.argv[1]), Path(sys.argv[2])))
