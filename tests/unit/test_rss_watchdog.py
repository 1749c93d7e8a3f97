"""The resident-memory watchdog: the sum over a process tree, the kill at the limit."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading

from handler.cli.rss_watchdog import RssWatchdog, descendants, resident_bytes
from monitor.units import MiB

# a parent that starts a child; the child writes 64 MiB and waits
TREE = (
    "import subprocess, sys; "
    "subprocess.run([sys.executable, '-c', "
    "\"import sys, time; x = b'x' * (64 << 20); print('full', flush=True); time.sleep(30)\"])"
)


def test_the_tree_s_resident_memory_reaching_the_limit_fires_once() -> None:
    parent = subprocess.Popen([sys.executable, "-c", TREE], stdout=subprocess.PIPE, text=True)
    tree = [parent.pid]
    try:
        assert parent.stdout is not None and parent.stdout.readline() == "full\n"
        tree = descendants([parent.pid])
        assert len(tree) == 2 and tree[0] == parent.pid
        child_rss = resident_bytes(tree[1])
        assert child_rss >= 64 * MiB
        fired: list[int] = []
        done = threading.Event()

        def on_limit(total: int) -> None:
            fired.append(total)
            done.set()

        watchdog = RssWatchdog(48 * MiB, lambda: [parent.pid], on_limit)
        watchdog.start()
        assert done.wait(5)
        watchdog.stop()
        print(f"child {child_rss / MiB:.1f} MiB; the watchdog saw {fired[0] / MiB:.1f} MiB")
        assert len(fired) == 1 and fired[0] >= child_rss and watchdog.peak == fired[0]
        assert watchdog.fired
    finally:
        for pid in reversed(tree):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        parent.wait()


def test_a_gone_process_counts_nothing() -> None:
    assert resident_bytes(2**22 + 1) == 0 and descendants([2**22 + 1]) == [2**22 + 1]
