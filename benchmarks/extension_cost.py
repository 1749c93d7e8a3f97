"""The external extension's own cost: CPU share of one core and peak resident memory.

``python -m benchmarks.extension_cost [--seconds S]`` starts the extension's executable
(deploy/layer/extensions/tmpwarden-monitor) against the tests' fake Extensions and
Telemetry API on 127.0.0.1, sends one INVOKE (so it samples as during an invocation,
at its default interval) and reads its process's CPU time (schedstat of each of
its threads) over S seconds, its peak RSS (VmHWM) at the end, and, in the same
window, a bare thread's floor at the same interval in this process (sleep + statvfs +
pread: what any sampler pays). Then SHUTDOWN, timed against Lambda's 2,000 ms budget.
Goals: issue 11 (under 0.1% of a core, under 30 MiB RSS).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from benchmarks.monitor_overhead import floor_overhead
from monitor.extension.main import DEFAULT_INTERVAL_MS
from tests.fake_extensions_api import FakeExtensionsApi

REPO = Path(__file__).resolve().parents[1]
EXECUTABLE = REPO / "deploy" / "layer" / "extensions" / "tmpwarden-monitor"
CPU_GOAL_PERCENT = 0.1
RSS_GOAL_MIB = 30.0
SHUTDOWN_BUDGET_S = 2.0


def _cpu_seconds(pid: int) -> float:
    """CPU seconds of every thread of ``pid``: the first field of each
    /proc/<pid>/task/<tid>/schedstat, nanoseconds on a CPU (proc(5); finer than the
    10 ms clock ticks of utime + stime)."""
    return sum(
        int((task / "schedstat").read_text().split()[0]) / 1e9
        for task in Path(f"/proc/{pid}/task").iterdir()
    )


def _peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def main(argv: list[str] | None = None) -> list[str]:
    """Measure, print and return the table rows."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=60.0)
    args = parser.parse_args(argv)
    api = FakeExtensionsApi()
    with tempfile.TemporaryDirectory() as tmp:
        env = {
            "PATH": os.environ.get("PATH", ""),
            "AWS_LAMBDA_RUNTIME_API": api.address,
            "TMPWARDEN_EXTENSION_HOST": "127.0.0.1",
            "TMPWARDEN_RUNTIME_PID": str(os.getpid()),
            "TMPWARDEN_PATH": tmp,
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "1024",
        }
        process = subprocess.Popen([sys.executable, str(EXECUTABLE)], env=env)
        try:
            if not api.subscribed.wait(30):
                raise SystemExit("the extension did not subscribe")
            api.invoke("bench")
            time.sleep(0.5)
            floor: list[float] = []
            side = threading.Thread(
                target=lambda: floor.append(
                    floor_overhead(DEFAULT_INTERVAL_MS / 1000, args.seconds)
                )
            )
            cpu0, wall0 = _cpu_seconds(process.pid), time.monotonic()
            side.start()
            side.join()
            cpu = _cpu_seconds(process.pid) - cpu0
            wall = time.monotonic() - wall0
            rss = _peak_rss_mib(process.pid)
            api.shutdown_event("spindown")
            asked = time.monotonic()
            process.wait(timeout=10)
            shutdown = time.monotonic() - asked
        finally:
            if process.poll() is None:
                process.kill()
            api.close()
    share = 100 * cpu / wall
    rows = [
        "| measure | measured | goal | met |",
        "| --- | ---: | ---: | --- |",
        f"| extension process, sampling every {DEFAULT_INTERVAL_MS} ms during an invocation "
        f"({cpu:.3f} CPU s in {wall:.0f} s) | {share:.3f}% of a core | < {CPU_GOAL_PERCENT}% | "
        f"{'yes' if share < CPU_GOAL_PERCENT else '**no**'} |",
        f"| floor at {DEFAULT_INTERVAL_MS} ms in the same window: a bare thread doing only "
        f"sleep + statvfs + pread | {floor[0]:.3f}% of a core | | |",
        f"| extension peak RSS (VmHWM) | {rss:.1f} MiB | < {RSS_GOAL_MIB:.0f} MiB | "
        f"{'yes' if rss < RSS_GOAL_MIB else '**no**'} |",
        f"| extension exit after SHUTDOWN | {shutdown * 1000:.0f} ms | "
        f"< {SHUTDOWN_BUDGET_S * 1000:.0f} ms | "
        f"{'yes' if shutdown < SHUTDOWN_BUDGET_S else '**no**'} |",
    ]
    print("\n".join(rows))
    return rows


if __name__ == "__main__":
    main()
