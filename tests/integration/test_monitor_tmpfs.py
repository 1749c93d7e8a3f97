"""On a real 64 MiB tmpfs: warning, then the predictive warning, then critical and cleanup."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from tests.helpers import python_env
from tests.namespaces import run_with_tmpfs

pytestmark = pytest.mark.slow
MIB = 1024 * 1024


def test_a_constant_rate_fill_warns_predicts_then_goes_critical_and_cleans(
    tmp_path: Path,
) -> None:
    mount = tmp_path / "tmp"
    mount.mkdir()
    # 8 MiB/s into 64 MiB: the trend says "full in 1.2 s" with about 9.6 MiB left,
    # which is between the warning (80%) and the critical (90%) thresholds.
    result = run_with_tmpfs(
        [sys.executable, "-m", "tests.integration.fill_scenario", str(mount), "8", "1.2"],
        {mount: "64m"},
        env=python_env() | {"AWS_EMF_ENVIRONMENT": "Local"},
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    levels = [e["level"] for e in report["events"]]
    assert levels == ["warning", "predicted_full", "critical"], report["events"]

    # the critical default action removed the registered cache and freed its 8 MiB
    assert report["cache_exists"] is False
    cleanups = [c for c in report["callbacks"] if c["name"] == "cleanup_registered_paths"]
    assert len(cleanups) == 1 and cleanups[0]["tmp_freed"] >= 8 * MIB

    # each threshold callback follows the writer's crossing closely (the exact bound of
    # two intervals is proven with an injected clock in the unit tests; here the real
    # scheduler on a shared machine adds its own delay)
    for level, threshold in (("warning", 80.0), ("critical", 90.0)):
        crossed = next(t for t, used in report["timeline"] if used * 100 >= threshold)
        fired = next(e["at"] for e in report["events"] if e["level"] == level)
        assert 0 <= fired - crossed < 1.0, (level, fired - crossed)
