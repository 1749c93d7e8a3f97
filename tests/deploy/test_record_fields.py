"""Saved queries and dashboard log widgets name only fields of the EMF record schema.

Each test breaks one name in a copy of the repository (or in the schema) and checks that
the checker reports exactly that; the first shows the real files pass.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from deploy.checks import check_all, load_template
from deploy.problems import Problem
from deploy.record_fields import check_record_fields, query_fields
from deploy.sources import REPO_ROOT, load_sources
from monitor import records
from tests.deploy.helpers import DASHBOARD, edit_dashboard, replace_once, source_problems, widget

CLOSEST = "dashboards/queries/closest-to-tmp-limit.query"
CALLBACKS = "dashboards/queries/callbacks-fired.query"
TIMELINE = "dashboards/queries/phase-timeline.query"
CLOSEST_WIDGET = "Invocations closest to the /tmp limit"


def schema_problems(root: Path) -> list[Problem]:
    sources, problems = load_sources(root)
    _, template, unreadable = load_template(root)
    assert not problems and template is not None, problems + unreadable
    return check_record_fields(sources, template)


def test_the_real_queries_and_widgets_name_only_schema_fields() -> None:
    sources, _ = load_sources(REPO_ROOT)
    _, template, _ = load_template(REPO_ROOT)
    assert check_record_fields(sources, template) == []
    assert check_all(REPO_ROOT) == []


def test_a_renamed_property_in_a_saved_query_is_reported(repo: Path) -> None:
    replace_once(repo / CLOSEST, "TmpTotalBytes", "TmpTotalSize")
    assert source_problems(repo) == [
        Problem(
            CLOSEST,
            "field 'TmpTotalSize' is not in the EMF record schema (monitor/records.py); "
            "did you mean 'TmpTotalBytes'?",
        )
    ]


def test_a_renamed_list_item_field_in_a_saved_query_is_reported(repo: Path) -> None:
    replace_once(repo / CALLBACKS, "`Callbacks.0.tmp_freed`", "`Callbacks.0.bytes_freed`")
    assert source_problems(repo) == [
        Problem(
            CALLBACKS,
            "field 'Callbacks.0.bytes_freed' is not in the EMF record schema "
            "(monitor/records.py); did you mean 'Callbacks.0.tmp_freed'?",
        )
    ]


def test_a_renamed_property_in_a_dashboard_log_widget_is_reported(repo: Path) -> None:
    def rename(body: dict[str, Any]) -> None:
        properties = widget(body, CLOSEST_WIDGET)
        properties["query"] = properties["query"].replace("RequestId", "RequestID")

    edit_dashboard(repo, rename)
    assert source_problems(repo) == [
        Problem(
            f"{DASHBOARD}: widget 14 ('{CLOSEST_WIDGET}')",
            "field 'RequestID' is not in the EMF record schema (monitor/records.py); "
            "did you mean 'RequestId'?",
        )
    ]


def test_a_renamed_property_in_the_templates_generated_query_is_reported(repo: Path) -> None:
    replace_once(
        repo / "template.yaml",
        "TmpPredictedFullEvents",
        "TmpPredictedFull",
        after="ClosestToTmpLimitQuery:",
    )
    assert schema_problems(repo) == [
        Problem(
            "template.yaml: ClosestToTmpLimitQuery",
            "field 'TmpPredictedFull' is not in the EMF record schema (monitor/records.py); "
            "did you mean 'TmpPredictedFullEvents'?",
        )
    ]


def test_a_property_renamed_in_the_schema_fails_the_queries_that_use_it(
    repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The code side of a rename: the schema no longer names ``RequestId``."""
    monkeypatch.setattr(records, "ALL_PROPERTIES", records.ALL_PROPERTIES - {"RequestId"})
    wheres = {p.where for p in source_problems(repo)}
    assert {CLOSEST, CALLBACKS, TIMELINE} <= wheres
    assert f"{DASHBOARD}: widget 14 ('{CLOSEST_WIDGET}')" in wheres


def test_query_fields_skip_strings_comments_and_log_fields() -> None:
    text = (
        "# RequestId in a comment is not read\n"
        "fields @timestamp, event, target, `Callbacks.0.name`, Phase\n"
        '| filter RequestId = "SomeValue" and level = "ERROR"\n'
        "| sort PeakTmpUsedPercent desc\n"
    )
    assert query_fields(text) == ["Callbacks.0.name", "Phase", "RequestId", "PeakTmpUsedPercent"]


def test_no_saved_query_needs_coalesce() -> None:
    """One spelling per field (log lines and EMF records alike): no query joins two."""
    sources, _ = load_sources(REPO_ROOT)
    texts = [q.text for q in sources.queries]
    texts += [
        w["properties"]["query"]
        for d in sources.dashboards
        for w in d.body["widgets"]
        if w.get("type") == "log"
    ]
    assert texts and not any("coalesce" in text for text in texts)


INCIDENTS_QUERY = "dashboards/queries/incidents.query"


def test_the_incidents_query_reads_what_an_incident_record_carries() -> None:
    """Every field it names is on the extension's incident record (a field of another
    kind would stay empty), and it shows the classification, the request, the phase and
    the last samples, the template saving it as generated."""
    text = (REPO_ROOT / INCIDENTS_QUERY).read_text()
    assert 'filter TmpwardenRecord = "incident"' in text
    names = set(query_fields(text))
    carried = records.PROPERTIES[records.RecordKind.INCIDENT]
    assert names <= carried, sorted(names - carried)
    needed = {records.CLASSIFICATION, records.REQUEST_ID, records.PHASE, *records.LAST_SAMPLES}
    assert needed <= names
    _, template, _ = load_template(REPO_ROOT)
    assert template is not None
    saved = template["Resources"]["IncidentsQuery"]["Properties"]["QueryString"]
    assert saved.strip() == text.strip()


def test_a_renamed_field_in_the_incidents_query_is_reported(repo: Path) -> None:
    replace_once(repo / INCIDENTS_QUERY, "ShutdownReason,", "ShutdownCause,", after="| fields")
    assert source_problems(repo) == [
        Problem(
            INCIDENTS_QUERY,
            "field 'ShutdownCause' is not in the EMF record schema (monitor/records.py); "
            "did you mean 'ShutdownReason'?",
        )
    ]
