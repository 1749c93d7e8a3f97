"""Lambda Managed Instances: 4 runtime processes, each with a monitor, sharing one tmpfs
``/tmp`` and one environment's memory (tests/integration/managed_scenario.py).

Each process's records say what they measured: its own RSS (``MemoryScope`` process),
the environment's ``/tmp`` (``TmpScope`` environment), the environment's memory limit and
the process's share of it, and the request's own growth of ``/tmp``
(``TmpAttributedBytes``), which matches what the request wrote within page rounding.
"""

from __future__ import annotations

import itertools
import json
import math
import re
import sys
from pathlib import Path
from typing import Any

from monitor import records as r
from monitor.metrics import (
    MEMORY_USED_BYTES,
    PEAK_MEMORY_USED_BYTES,
    PEAK_MEMORY_USED_PERCENT,
    PEAK_TMP_ATTRIBUTED_BYTES,
    TMP_ATTRIBUTED_BYTES,
    TMP_USED_BYTES,
)
from monitor.records import RecordKind
from tests.helpers import python_env
from tests.integration.managed_scenario import MIB, PROCESSES, TMP_WARNING
from tests.namespaces import run_with_tmpfs

PAGE = 4096
HWM_LAG = 1 * MIB


def _values(value: Any) -> list[float]:
    return value if isinstance(value, list) else [value]


def test_four_processes_sharing_a_tmpfs_each_say_what_they_measured(tmp_path: Path) -> None:
    mount, out = tmp_path / "tmp", tmp_path / "out"
    mount.mkdir()
    out.mkdir()
    result = run_with_tmpfs(
        [sys.executable, "-m", "tests.integration.managed_scenario", str(mount), str(out)],
        {mount: "64m"},
        env=python_env(),
        timeout=120,
    )
    assert result.returncode == 0, result.stderr  # no process crashed
    reports = [json.loads((out / f"worker-{i}.json").read_text()) for i in range(PROCESSES)]
    assert len({report["pid"] for report in reports}) == PROCESSES

    last_used, attributed, peaks = [], [], []
    for index, report in enumerate(reports):
        docs = [json.loads(line) for line in report["lines"]]  # every line is a document
        mine = [d for d in docs if d.get(r.REQUEST_ID) == f"req-{index}"]
        [invocation] = [d for d in mine if d[r.RECORD_KIND] == RecordKind.INVOCATION]
        samples = [d for d in mine if d[r.RECORD_KIND] == RecordKind.SAMPLES]
        assert samples, "the sampling thread ran alongside three others"
        # the shared /tmp crossed the warning level with the four requests' files: every
        # process saw the environment's crossing and wrote its own level change
        changes = [d for d in mine if d[r.RECORD_KIND] == RecordKind.LEVEL_CHANGE]
        [warning] = [d for d in changes if (d[r.RESOURCE], d[r.LEVEL]) == ("tmp", "warning")]
        assert warning[r.LEVEL_PERCENT] >= TMP_WARNING * 100
        assert not [d for d in changes if d[r.RESOURCE] == "memory"]  # within its share
        for doc in [invocation, *samples, *changes]:
            # what each figure covers, stated by the process that measured it
            assert doc[r.PROCESS_ID] == report["pid"]
            assert doc[r.EXECUTION_MODEL] == "managed-instances"
            assert doc[r.ENVIRONMENT_PROCESSES] == PROCESSES
            assert doc[r.MEMORY_SCOPE] == "process"
            assert doc[r.TMP_SCOPE] == "environment"
            assert doc[r.MEMORY_LIMIT_BYTES] == 2048 * MIB  # the environment's
            assert doc[r.PROCESS_MEMORY_BUDGET_BYTES] == 512 * MIB  # its share
            assert doc[r.TMP_TOTAL_BYTES] == 64 * MIB  # the one shared /tmp

        # its own RSS: at least its own ballast, at most its own high-water mark (VmHWM,
        # which the kernel syncs from per-thread counters in batches: a few pages behind)
        peak = invocation[PEAK_MEMORY_USED_BYTES]
        high = report["peak_rss"] + HWM_LAG
        assert report["ballast"] < peak <= high, (index, peak, report)
        assert max(max(_values(s[MEMORY_USED_BYTES])) for s in samples) <= high
        assert invocation[PEAK_MEMORY_USED_PERCENT] == round(100 * peak / (512 * MIB), 2)
        peaks.append(peak)

        # its own /tmp growth: what it wrote, within a page per file
        sizes = report["sizes"]
        pages = sum(math.ceil(size / PAGE) * PAGE for size in sizes)
        got = invocation[TMP_ATTRIBUTED_BYTES]
        print(f"process {index}: wrote {sum(sizes)} B, attributed {got} B, pages {pages} B")
        assert abs(got - sum(sizes)) < PAGE * len(sizes)
        assert got == pages  # tmpfs allocates whole pages
        # measured again at the crossings (no cleanup here): the end was the largest
        assert invocation[PEAK_TMP_ATTRIBUTED_BYTES] == got
        assert "attribute_tmp_to_request" in [c["name"] for c in invocation[r.CALLBACKS]]
        attributed.append(got)
        last_used.append(_values(samples[-1][TMP_USED_BYTES])[-1])

    # each process holds 16 MiB more ballast than the one before: the RSS is its own
    assert all(b - a > 8 * MIB for a, b in itertools.pairwise(peaks)), peaks
    # every process's last sample came after all had written: the same environment-wide
    # /tmp, which is the sum of what the four requests were attributed
    print(f"last TmpUsedBytes per process {last_used}; attributed {attributed}")
    assert len(set(last_used)) == 1, last_used
    assert abs(last_used[0] - sum(attributed)) <= PAGE * PROCESSES


def test_one_request_filling_the_shared_tmp_cleans_only_its_own_scratch(tmp_path: Path) -> None:
    """Review2 item 1: the filler's crossing fires in every process of the environment;
    only the filler's cleanup removes its scratch, the others' work in progress survives
    intact, and each callback record says why (tests/integration/cleanup_scenario.py)."""
    mount, out = tmp_path / "tmp", tmp_path / "out"
    mount.mkdir()
    out.mkdir()
    result = run_with_tmpfs(
        [sys.executable, "-m", "tests.integration.cleanup_scenario", str(mount), str(out)],
        {mount: "64m"},
        env=python_env(),
        timeout=90,
    )
    assert result.returncode == 0, result.stderr
    reports = [json.loads((out / f"worker-{i}.json").read_text()) for i in range(3)]
    for index, report in enumerate(reports):
        assert ["tmp", "critical"] in report["levels"], (index, report)  # all saw it
        assert report["scratch_exists"] == (index != 0), (index, report)  # the filler's only
        [run] = [c for c in report["callbacks"] if c["name"] == "cleanup_registered_paths"]
        print(f"process {index}: {run['outcome']} (freed {run['tmp_freed']} B)")
        assert run["error"] is None
        held, used, least = map(float, re.findall(r"([\d.]+) MiB", run["outcome"]))
        if index == 0:  # the filler: it held most of /tmp when it crossed
            assert run["outcome"].startswith("removed 1 path(s): this request holds")
            assert held >= least and held > used - 3
        else:
            assert report["work_intact"], (index, report)
            assert run["outcome"].startswith("kept 1 path(s): this request holds 1.0 MiB")
            assert held < least and run["tmp_freed"] == 0
