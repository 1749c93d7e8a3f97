"""Four runtime processes of one Lambda Managed Instance sharing one ``/tmp`` (run by
tests/integration/test_managed_instances.py inside a private tmpfs mount).

``python -m tests.integration.managed_scenario MOUNT OUT`` starts :data:`PROCESSES`
workers (``... worker INDEX MOUNT OUT``) at once and exits non-zero if one fails. Each
worker is one request in its own process, as the Python runtime runs them: a
``StorageMonitor`` sampling every 10 ms on its own thread, the ``@monitored`` decorator,
a memory ballast of its own size, and its own pace of writes into its own scratch
directory (plus a file it holds open after unlinking it). The workers meet twice
(files in OUT, outside the mount): when all have written, so every process's last sample
sees the same ``/tmp``, and when all have ended, before any cleans up. Each writes
OUT/worker-INDEX.json: its pid, the sizes it wrote, its peak RSS, its EMF lines.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import IO, Any

from monitor import MonitorConfig, StorageMonitor, monitored
from monitor.emf import MemorySink
from monitor.environment import INITIALIZATION_TYPE_ENV, MAX_CONCURRENCY_ENV
from monitor.sampler import LAMBDA_MEMORY_ENV, peak_rss_bytes

PROCESSES = 4
MIB = 1024 * 1024
MANAGED_ENV = {
    INITIALIZATION_TYPE_ENV: "lambda-managed-instances",
    MAX_CONCURRENCY_ENV: str(PROCESSES),
    LAMBDA_MEMORY_ENV: "2048",
}
STEPS = 40
TMP_WARNING = 0.2
"""Of the 64 MiB tmpfs: the four requests together (about 14.5 MiB) cross it, none alone."""
MODULE = "tests.integration.managed_scenario"


def wait_for(paths: list[Path], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not all(p.exists() for p in paths):
        if time.monotonic() > deadline:
            raise TimeoutError(f"waited {timeout} s for {[str(p) for p in paths]}")
        time.sleep(0.005)


def everyone(out: Path, stage: str) -> list[Path]:
    return [out / f"{stage}-{index}" for index in range(PROCESSES)]


def worker(index: int, mount: Path, out: Path) -> None:
    sink = MemorySink()
    config = MonitorConfig.resolve(
        path=mount,
        sample_interval=0.01,
        sampling="fixed",
        tracing="off",
        actions=False,
        tmp_warning=TMP_WARNING,
    )
    monitor = StorageMonitor(config, sink=sink, environ=MANAGED_ENV)
    ballast = bytearray((index + 1) * 16 * MIB)
    for page in range(0, len(ballast), 4096):  # resident, not just reserved
        ballast[page] = 1
    held: list[IO[bytes]] = []
    sizes: list[int] = []

    @monitored(monitor)
    def handler(event: dict[str, Any], context: Any) -> None:
        scratch = monitor.register_cleanup(mount / f"request-{index}")
        scratch.mkdir()
        (out / f"ready-{index}").touch()
        wait_for([out / "go"])
        opened = (scratch / "held.bin").open("wb")  # unlinked, still taking space
        opened.write(os.urandom(100_001 + index))
        opened.flush()
        (scratch / "held.bin").unlink()
        held.append(opened)
        sizes.append(100_001 + index)
        (scratch / "one-byte.bin").write_bytes(b"x")
        sizes.append(1)
        chunk = 37_000 * (index + 1) + 123
        with (scratch / "data.bin").open("wb") as data:
            for _ in range(STEPS):  # each process at its own pace
                data.write(os.urandom(chunk))
                data.flush()
                time.sleep(0.004 * (index + 1))
        sizes.append(chunk * STEPS)
        (out / f"written-{index}").touch()
        wait_for(everyone(out, "written"))
        monitor.sample_now()

    handler({}, SimpleNamespace(aws_request_id=f"req-{index}"))
    (out / f"ended-{index}").touch()
    wait_for(everyone(out, "ended"))
    for opened in held:
        opened.close()
    shutil.rmtree(mount / f"request-{index}")
    monitor.stop()
    report = {
        "pid": os.getpid(),
        "sizes": sizes,
        "ballast": len(ballast),
        "peak_rss": peak_rss_bytes(),
        "lines": sink.lines,
    }
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
    wait_for(everyone(out, "ready"))
    (out / "go").touch()
    failed = 0
    for process in workers:
        _, stderr = process.communicate(timeout=120)
        if process.returncode:
            failed += 1
            print(stderr, file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    if sys.argv[1] == "worker":
        worker(int(sys.argv[2]), Path(sys.argv[3]), Path(sys.argv[4]))
    else:
        sys.exit(main(Path(sys.argv[1]), Path(sys.argv[2])))
