"""``python -m deploy.sync [--check]`` as a person runs it."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

from deploy.sources import REPO_ROOT
from deploy.sync import main
from tests.deploy.helpers import STORAGE_ALARMS, replace_once


def run(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    status = main(list(args), out=out, err=err)
    return status, out.getvalue(), err.getvalue()


def test_check_passes_on_the_repository() -> None:
    status, out, err = run("--check")
    assert (status, err) == (0, "")
    assert out.startswith("ok: template.yaml matches dashboards/ and alarms/")


def test_check_exits_1_and_names_the_drift(repo: Path) -> None:
    replace_once(repo / STORAGE_ALARMS, "Threshold: 80", "Threshold: 75")
    status, out, err = run("--check", "--root", str(repo))
    assert (status, out) == (1, "")
    assert err.splitlines() == [
        "error: template.yaml: TmpPeakWarningAlarm differs from alarms/storage.yaml at "
        "Properties.Threshold: the source has 75, template.yaml has 80; run "
        "`python -m deploy.sync` (edit dashboards/ and alarms/, never the generated block)",
        "1 problem; fix them (the generated blocks come from dashboards/ and alarms/: edit "
        "those, then run `python -m deploy.sync`)",
    ]


def test_sync_writes_the_template_then_has_nothing_to_do(repo: Path) -> None:
    replace_once(repo / STORAGE_ALARMS, "Threshold: 80", "Threshold: 75")
    assert run("--root", str(repo)) == (
        0,
        "wrote template.yaml: 1 dashboard(s), 4 saved queries, 10 alarm(s)\n",
        "",
    )
    assert "Threshold: 75" in (repo / "template.yaml").read_text(encoding="utf-8")
    assert run("--root", str(repo)) == (0, "template.yaml is up to date\n", "")
    assert run("--check", "--root", str(repo))[0] == 0


def test_the_module_runs_from_the_command_line(repo: Path) -> None:
    replace_once(repo / STORAGE_ALARMS, "Threshold: 80", "Threshold: 75")
    result = subprocess.run(
        [sys.executable, "-m", "deploy.sync", "--check", "--root", str(repo)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 1
    assert "TmpPeakWarningAlarm differs from alarms/storage.yaml" in result.stderr
