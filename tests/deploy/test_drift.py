"""template.yaml deploys exactly dashboards/ and alarms/: drift is reported, sync repairs it."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from deploy.checks import check_all, check_drift
from deploy.generate import generated_resources, rollback_alarms
from deploy.problems import Problem
from deploy.sources import REPO_ROOT, load_sources
from deploy.sync import main
from tests.deploy.helpers import DASHBOARD, STORAGE_ALARMS, edit_dashboard, replace_once, widget

FIX = "run `python -m deploy.sync` (edit dashboards/ and alarms/, never the generated block)"


def sync(root: Path) -> int:
    return main(["--root", str(root)], out=io.StringIO(), err=io.StringIO())


def test_the_real_template_has_not_drifted() -> None:
    sources, problems = load_sources(REPO_ROOT)
    assert problems == []
    text = (REPO_ROOT / "template.yaml").read_text(encoding="utf-8")
    assert check_drift(text, sources) == []


def test_an_edited_dashboard_that_was_not_synced_is_reported(repo: Path) -> None:
    def retitle(body: dict[str, Any]) -> None:
        widget(body, "/tmp used (% of its size)")["title"] = "/tmp used (percent)"

    edit_dashboard(repo, retitle)
    assert check_all(repo) == [
        Problem(
            "template.yaml",
            f"OperationsDashboard differs from {DASHBOARD} at "
            "Properties.DashboardBody.widgets[3].properties.title: the source has "
            f"'/tmp used (percent)', template.yaml has '/tmp used (% of its size)'; {FIX}",
        )
    ]
    assert sync(repo) == 0
    assert check_all(repo) == []


def test_an_edited_alarm_that_was_not_synced_is_reported(repo: Path) -> None:
    replace_once(
        repo / STORAGE_ALARMS, "Threshold: 90", "Threshold: 95", after="TmpPeakCriticalAlarm:"
    )
    assert check_all(repo) == [
        Problem(
            "template.yaml",
            f"TmpPeakCriticalAlarm differs from {STORAGE_ALARMS} at Properties.Threshold: the "
            f"source has 95, template.yaml has 90; {FIX}",
        )
    ]
    assert sync(repo) == 0
    assert check_all(repo) == []


def test_a_hand_edit_of_the_generated_block_is_reported(repo: Path) -> None:
    replace_once(
        repo / "template.yaml", "Threshold: 90", "Threshold: 85", after="TmpPeakCriticalAlarm:"
    )
    assert check_all(repo) == [
        Problem(
            "template.yaml",
            f"TmpPeakCriticalAlarm differs from {STORAGE_ALARMS} at Properties.Threshold: the "
            f"source has 90, template.yaml has 85; {FIX}",
        )
    ]


def test_a_reformatted_generated_block_is_reported(repo: Path) -> None:
    replace_once(
        repo / "template.yaml",
        "Namespace: !Ref MetricNamespace",
        'Namespace: {"Ref": "MetricNamespace"}',
    )
    assert check_all(repo) == [
        Problem(
            "template.yaml",
            f"the generated block 'resources' is not written as deploy.sync writes it; {FIX}",
        )
    ]


def test_a_new_critical_alarm_must_be_synced_and_rolls_back(repo: Path) -> None:
    alarms = repo / STORAGE_ALARMS
    text = alarms.read_text(encoding="utf-8")
    start = text.index("TmpPeakCriticalAlarm:")
    copy = text[start : text.index("\n\n", start)].replace("TmpPeakCriticalAlarm", "TmpFullAlarm")
    alarms.write_text(text + "\n" + copy.replace("Threshold: 90", "Threshold: 99") + "\n")

    def show(body: dict[str, Any]) -> None:
        body["widgets"][1]["properties"]["alarms"].append("${TmpFullAlarm.Arn}")

    edit_dashboard(repo, show)
    problems = check_all(repo)
    assert (
        Problem(
            "template.yaml",
            f"TmpFullAlarm (from {STORAGE_ALARMS}) is missing from template.yaml; {FIX}",
        )
        in problems
    )
    assert any("'rollback-alarms'" in problem.message for problem in problems)

    assert sync(repo) == 0
    assert check_all(repo) == []
    sources, _ = load_sources(repo)
    assert {"Ref": "TmpFullAlarm"} in rollback_alarms(sources)
    assert "TmpFullAlarm" in generated_resources(sources)


def test_a_removed_alarm_is_reported_until_synced(repo: Path) -> None:
    text = (repo / STORAGE_ALARMS).read_text(encoding="utf-8")
    start = text.index("CallbackErrorsWarningAlarm:")
    (repo / STORAGE_ALARMS).write_text(text[:start], encoding="utf-8")

    def hide(body: dict[str, Any]) -> None:
        body["widgets"][1]["properties"]["alarms"].remove("${CallbackErrorsWarningAlarm.Arn}")

    edit_dashboard(repo, hide)
    problems = check_all(repo)
    assert (
        Problem(
            "template.yaml",
            "CallbackErrorsWarningAlarm is in template.yaml's generated block but in no "
            f"source file; {FIX}",
        )
        in problems
    )
    assert sync(repo) == 0
    assert check_all(repo) == []


def test_a_missing_end_marker_is_reported(repo: Path) -> None:
    replace_once(repo / "template.yaml", "# END GENERATED rollback-alarms", "# the end")
    lines = (repo / "template.yaml").read_text(encoding="utf-8").split("\n")
    next_begin = next(n for n, line in enumerate(lines, 1) if "# BEGIN GENERATED resources" in line)
    assert check_all(repo) == [
        Problem(
            "template.yaml",
            f"generated-block markers: line {next_begin}: BEGIN GENERATED inside 'rollback-alarms'",
        )
    ]


def test_sync_leaves_the_template_alone_when_a_source_is_wrong(repo: Path) -> None:
    before = (repo / "template.yaml").read_text(encoding="utf-8")
    replace_once(
        repo / STORAGE_ALARMS, "Unit: Percent", "Unit: Bytes", after="TmpPeakCriticalAlarm:"
    )
    err = io.StringIO()
    assert main(["--root", str(repo)], out=io.StringIO(), err=err) == 1
    assert (repo / "template.yaml").read_text(encoding="utf-8") == before
    assert "PeakTmpUsedPercent has unit 'Bytes' here" in err.getvalue()
    assert "template.yaml was left unchanged" in err.getvalue()
