"""Dashboards and alarms name only metrics the monitor emits, as it emits them.

Each test breaks one thing in a copy of the repository and checks that the checker
reports exactly that problem; the first shows the real files pass.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from deploy.checks import check_all, metrics_used
from deploy.problems import Problem
from deploy.sources import REPO_ROOT
from monitor.metrics import DEFAULT_NAMESPACE, REGISTRY
from tests.deploy.helpers import (
    DASHBOARD,
    PACKAGING_ALARMS,
    STORAGE_ALARMS,
    edit_dashboard,
    replace_once,
    source_problems,
    widget,
)

TMP_WIDGET = f"{DASHBOARD}: widget 2 ('/tmp used and available')"
PHASE_WIDGET = f"{DASHBOARD}: widget 8 ('Phase durations (p95, per phase)') metric row 0"
TMP_CRITICAL = f"{STORAGE_ALARMS}: TmpPeakCriticalAlarm"


def test_the_real_files_pass_every_check() -> None:
    assert check_all(REPO_ROOT) == []


def test_an_untouched_copy_passes(repo: Path) -> None:
    assert check_all(repo) == []


# --- a renamed metric ----------------------------------------------------------------------


def test_a_renamed_metric_in_an_alarm_is_reported(repo: Path) -> None:
    replace_once(
        repo / STORAGE_ALARMS,
        "MetricName: PeakTmpUsedPercent",
        "MetricName: PeakTmpUsedPercentage",
        after="TmpPeakCriticalAlarm:",
    )
    assert source_problems(repo) == [
        Problem(
            TMP_CRITICAL,
            "metric 'PeakTmpUsedPercentage' is not in the monitor's registry "
            "(monitor/metrics.py); did you mean 'PeakTmpUsedPercent'?",
        )
    ]


def test_a_renamed_metric_in_a_widget_is_reported(repo: Path) -> None:
    def rename(body: dict[str, Any]) -> None:
        widget(body, "/tmp used and available")["metrics"][1][1] = "TmpAvailableByte"

    edit_dashboard(repo, rename)
    assert source_problems(repo) == [
        Problem(
            f"{TMP_WIDGET} metric row 1",
            "metric 'TmpAvailableByte' is not in the monitor's registry (monitor/metrics.py); "
            "did you mean 'TmpAvailableBytes'?",
        )
    ]


def test_a_renamed_metric_in_a_search_expression_is_reported(repo: Path) -> None:
    replace_once(
        repo / DASHBOARD, 'MetricName=\\"PhaseDuration\\"', 'MetricName=\\"PhaseDurations\\"'
    )
    assert source_problems(repo) == [
        Problem(
            PHASE_WIDGET,
            "metric 'PhaseDurations' is not in the monitor's registry (monitor/metrics.py); "
            "did you mean 'PhaseDuration'?",
        )
    ]


def test_a_metric_math_alarm_checks_each_metric(repo: Path) -> None:
    replace_once(repo / PACKAGING_ALARMS, "MetricName: TargetsSucceeded", "MetricName: TargetsOk")
    assert source_problems(repo) == [
        Problem(
            f"{PACKAGING_ALARMS}: PackagingFailureRateCriticalAlarm (succeeded)",
            "metric 'TargetsOk' is not in the monitor's registry (monitor/metrics.py)",
        )
    ]


def test_an_unknown_lambda_metric_is_reported(repo: Path) -> None:
    replace_once(repo / PACKAGING_ALARMS, "MetricName: Errors", "MetricName: Error")
    assert source_problems(repo) == [
        Problem(
            f"{PACKAGING_ALARMS}: FunctionErrorsCriticalAlarm",
            "AWS/Lambda metric 'Error' is not one of [ConcurrentExecutions, Duration, Errors, "
            "Invocations, Throttles, UnreservedConcurrentExecutions] (deploy.usage.AWS_METRICS)",
        )
    ]


# --- a wrong unit ----------------------------------------------------------------------------


def test_a_wrong_unit_on_an_alarm_is_reported(repo: Path) -> None:
    replace_once(
        repo / STORAGE_ALARMS, "Unit: Percent", "Unit: Bytes", after="TmpPeakCriticalAlarm:"
    )
    assert source_problems(repo) == [
        Problem(
            TMP_CRITICAL,
            "PeakTmpUsedPercent has unit 'Bytes' here, but the monitor emits it in 'Percent': "
            "an alarm with another unit never sees a datapoint",
        )
    ]


def test_a_wrong_unit_in_a_metric_math_alarm_is_reported(repo: Path) -> None:
    replace_once(repo / PACKAGING_ALARMS, "Unit: Count", "Unit: Percent", after="Id: failed")
    assert source_problems(repo) == [
        Problem(
            f"{PACKAGING_ALARMS}: PackagingFailureRateCriticalAlarm (failed)",
            "TargetsFailed has unit 'Percent' here, but the monitor emits it in 'Count': "
            "an alarm with another unit never sees a datapoint",
        )
    ]


def test_an_alarm_without_a_unit_is_reported(repo: Path) -> None:
    replace_once(repo / STORAGE_ALARMS, "  Unit: Percent\n", "", after="TmpPeakCriticalAlarm:")
    assert source_problems(repo) == [
        Problem(TMP_CRITICAL, "PeakTmpUsedPercent needs Unit: Percent (the registry's unit)")
    ]


def test_a_wrong_unit_on_a_lambda_metric_is_reported(repo: Path) -> None:
    replace_once(repo / PACKAGING_ALARMS, "Unit: Count", "Unit: Seconds", after="Errors")
    assert source_problems(repo) == [
        Problem(
            f"{PACKAGING_ALARMS}: FunctionErrorsCriticalAlarm",
            "Errors has unit 'Seconds' here, but AWS/Lambda publishes it in 'Count'",
        )
    ]


# --- a wrong dimension set -------------------------------------------------------------------


def test_a_wrong_dimension_set_on_an_alarm_is_reported(repo: Path) -> None:
    replace_once(
        repo / STORAGE_ALARMS,
        "    FunctionName: ${PackagingFunction}\n",
        "    FunctionName: ${PackagingFunction}\n    Phase: extract\n",
        after="TmpPeakCriticalAlarm:",
    )
    assert source_problems(repo) == [
        Problem(
            TMP_CRITICAL,
            "PeakTmpUsedPercent has dimensions [FunctionName, Phase] here, but the monitor "
            "emits it with [FunctionName]: no datapoint would match",
        )
    ]


def test_a_wrong_dimension_set_in_a_widget_is_reported(repo: Path) -> None:
    def drop_dimension(body: dict[str, Any]) -> None:
        row = widget(body, "/tmp used and available")["metrics"][0]
        del row[2:4]  # FunctionName and its value

    edit_dashboard(repo, drop_dimension)
    assert source_problems(repo) == [
        Problem(
            f"{TMP_WIDGET} metric row 0",
            "TmpUsedBytes has dimensions [] here, but the monitor emits it with [FunctionName]: "
            "no datapoint would match",
        )
    ]


def test_a_search_without_the_phase_dimension_is_reported(repo: Path) -> None:
    replace_once(repo / DASHBOARD, ",FunctionName,Phase}", ",FunctionName}")
    assert source_problems(repo) == [
        Problem(
            PHASE_WIDGET,
            "PhaseDuration has dimensions [FunctionName] here, but the monitor emits it with "
            "[FunctionName, Phase]: no datapoint would match",
        )
    ]


def test_a_lambda_metric_with_an_unknown_dimension_set_is_reported(repo: Path) -> None:
    replace_once(
        repo / PACKAGING_ALARMS, "Resource:", "Alias:", after="FunctionErrorsCriticalAlarm"
    )
    assert source_problems(repo) == [
        Problem(
            f"{PACKAGING_ALARMS}: FunctionErrorsCriticalAlarm",
            "Errors has dimensions [Alias, FunctionName]; AWS/Lambda publishes it with [], "
            "[FunctionName], [FunctionName, Resource], [ExecutedVersion, FunctionName]",
        )
    ]


def test_a_function_name_written_out_is_reported(repo: Path) -> None:
    def hard_code(body: dict[str, Any]) -> None:
        widget(body, "/tmp used and available")["metrics"][0][3] = "tmpwarden-prod"

    edit_dashboard(repo, hard_code)
    assert source_problems(repo) == [
        Problem(
            f"{TMP_WIDGET} metric row 0",
            "FunctionName is 'tmpwarden-prod'; the metrics carry the deployed function's name, "
            "write ${PackagingFunction}",
        )
    ]


# --- a wrong namespace -----------------------------------------------------------------------


def test_a_wrong_namespace_in_a_widget_is_reported(repo: Path) -> None:
    def rename(body: dict[str, Any]) -> None:
        widget(body, "/tmp used and available")["metrics"][0][0] = "tmpwarden-prod"

    edit_dashboard(repo, rename)
    assert source_problems(repo) == [
        Problem(
            f"{TMP_WIDGET} metric row 0",
            "namespace 'tmpwarden-prod' is neither the monitor's (${MetricNamespace}, by default "
            "'tmpwarden') nor one of [AWS/Lambda]",
        )
    ]


def test_a_wrong_namespace_on_an_alarm_is_reported(repo: Path) -> None:
    replace_once(
        repo / STORAGE_ALARMS,
        "Namespace: ${MetricNamespace}",
        "Namespace: TmpWarden",
        after="TmpPeakCriticalAlarm:",
    )
    assert source_problems(repo) == [
        Problem(
            TMP_CRITICAL,
            "namespace 'TmpWarden' is neither the monitor's (${MetricNamespace}, by default "
            "'tmpwarden') nor one of [AWS/Lambda]",
        )
    ]


def test_the_default_namespace_written_out_is_reported(repo: Path) -> None:
    """It works until someone sets the MetricNamespace parameter."""
    replace_once(
        repo / STORAGE_ALARMS,
        "Namespace: ${MetricNamespace}",
        "Namespace: tmpwarden",
        after="TmpPeakCriticalAlarm:",
    )
    assert source_problems(repo) == [
        Problem(
            TMP_CRITICAL,
            "namespace 'tmpwarden' is written out; write ${MetricNamespace} so the dashboard "
            "and alarms follow the MetricNamespace parameter",
        )
    ]


# --- other mistakes in the sources ------------------------------------------------------------


def test_an_unknown_placeholder_is_reported(repo: Path) -> None:
    replace_once(repo / DASHBOARD, "## tmpwarden: ${PackagingFunction}", "## ${PackagingFunctoin}")
    assert source_problems(repo) == [
        Problem(DASHBOARD, "${PackagingFunctoin} names no parameter or resource of template.yaml")
    ]


def test_an_alarm_missing_from_the_alarm_widget_is_reported(repo: Path) -> None:
    def drop(body: dict[str, Any]) -> None:
        alarms = body["widgets"][1]["properties"]["alarms"]
        alarms.remove("${CallbackErrorsWarningAlarm.Arn}")

    edit_dashboard(repo, drop)
    assert source_problems(repo) == [
        Problem(
            f"{STORAGE_ALARMS}: CallbackErrorsWarningAlarm",
            'is on no dashboard\'s alarm widget; add "${CallbackErrorsWarningAlarm.Arn}"',
        )
    ]


def test_a_dashboard_that_is_not_json_is_reported(repo: Path) -> None:
    replace_once(repo / DASHBOARD, '"start": "-PT3H",', '"start": "-PT3H"')
    assert source_problems(repo) == [
        Problem(DASHBOARD, "not valid JSON at line 3, column 3: Expecting ',' delimiter")
    ]


def test_an_alarm_without_a_description_is_reported(repo: Path) -> None:
    replace_once(
        repo / STORAGE_ALARMS, "AlarmDescription:", "Comment:", after="TmpPeakCriticalAlarm:"
    )
    assert source_problems(repo) == [
        Problem(TMP_CRITICAL, "AlarmDescription is required: say what to do")
    ]


def test_an_alarm_with_its_own_actions_is_refused(repo: Path) -> None:
    replace_once(
        repo / STORAGE_ALARMS,
        "  Severity: critical\n",
        "  Severity: critical\n  AlarmActions: [arn:aws:sns:us-east-1:1:x]\n",
        after="TmpPeakCriticalAlarm:",
    )
    assert source_problems(repo) == [
        Problem(TMP_CRITICAL, "AlarmActions is set from Severity; remove it")
    ]


def test_a_duplicate_alarm_is_reported(repo: Path) -> None:
    text = (repo / STORAGE_ALARMS).read_text(encoding="utf-8")
    start = text.index("TmpPeakCriticalAlarm:")
    end = text.index("\n\n", start)
    (repo / "alarms" / "again.yaml").write_text(text[start:end] + "\n", encoding="utf-8")
    assert source_problems(repo) == [
        Problem(STORAGE_ALARMS, "TmpPeakCriticalAlarm is also defined in alarms/again.yaml")
    ]


# --- metrics_used, for tests that compare with the EMF the code writes ----------------------


def test_metrics_used_lists_namespace_name_dimensions_and_unit() -> None:
    used = metrics_used()
    assert ("tmpwarden", "PeakTmpUsedPercent", ("FunctionName",), "Percent") in used
    assert ("tmpwarden", "PeakTmpUsedPercent", ("FunctionName",), None) in used  # a widget
    assert ("tmpwarden", "PhaseDuration", ("FunctionName", "Phase"), None) in used
    assert ("tmpwarden", "TargetsFailed", ("FunctionName",), "Count") in used
    assert ("AWS/Lambda", "Errors", ("FunctionName", "Resource"), "Count") in used


def test_metrics_used_agree_with_the_registry() -> None:
    for namespace, name, dimensions, unit in metrics_used():
        if namespace != DEFAULT_NAMESPACE:
            assert namespace.startswith("AWS/")
            continue
        spec = REGISTRY[name]
        assert dimensions == tuple(sorted(spec.dimensions))
        assert unit in (None, spec.unit)


def test_metrics_used_follows_the_namespace() -> None:
    namespaces = {namespace for namespace, *_ in metrics_used(namespace="team/tmpwarden")}
    assert namespaces == {"team/tmpwarden", "AWS/Lambda"}


def test_metrics_used_refuses_unreadable_sources(repo: Path) -> None:
    replace_once(repo / DASHBOARD, '"start": "-PT3H",', '"start": "-PT3H"')
    with pytest.raises(ValueError, match="not valid JSON"):
        metrics_used(repo)
