"""The level-change lines reach standard output before an out-of-memory kill (issue 11).

A child allocates until its memory limit and is SIGKILLed there, as Lambda kills a
function at its memory limit: nothing after the kill runs, so any line on its standard
output was written when the level changed, not at a flush or the end of the invocation.
"""

from __future__ import annotations

import signal
import subprocess
import sys

from monitor import records as r
from monitor.records import RecordKind
from tests.emf_schema import validate_emf_line
from tests.helpers import python_env

HEADROOM_MIB = 120


def test_the_level_changes_are_on_stdout_before_the_out_of_memory_kill() -> None:
    child = subprocess.run(
        [sys.executable, "-m", "tests.integration.last_word_child", str(HEADROOM_MIB)],
        capture_output=True,
        text=True,
        env=python_env(),
        timeout=60,
        check=False,
    )
    assert child.returncode == -signal.SIGKILL, child.stderr
    lines = child.stdout.splitlines()
    documents = [validate_emf_line(line) for line in lines]
    kinds = {d[r.RECORD_KIND] for d in documents}
    assert kinds == {RecordKind.LEVEL_CHANGE.value}, "only the level changes: nothing flushed"
    memory = {d[r.LEVEL]: d for d in documents if d[r.RESOURCE] == "memory"}
    assert set(memory) == {"warning", "critical"}
    critical = memory["critical"]
    assert critical[r.REQUEST_ID] == "req-oom"
    assert critical[r.LEVEL_PERCENT] >= 90.0
    climb = critical[r.LAST_MEMORY_USED_BYTES]
    limit = critical[r.MEMORY_LIMIT_BYTES]
    assert climb == sorted(climb), "resident memory only grows until the kill"
    assert climb[0] < 0.8 * limit <= 0.9 * limit <= climb[-1] < limit
    print(
        f"killed by SIGKILL; critical at {critical[r.LEVEL_PERCENT]}% of "
        f"{limit / 2**20:.0f} MiB written before it, with {len(climb)} samples from "
        f"{climb[0] / 2**20:.0f} to {climb[-1] / 2**20:.0f} MiB; lines of "
        f"{max(len(line.encode()) for line in lines)} bytes at most"
    )
