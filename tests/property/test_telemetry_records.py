"""Any JSON value the Telemetry API could send as a platform event is parsed without an
exception, and the incident it makes is one of the four classifications or none; the
tracker keeps the current invocation's record whatever came before it. Guards review 2,
item 10 (repro/telemetry_malformed.py: memorySizeMB 1e400 or NaN, a list as requestId)."""

from __future__ import annotations

import os
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from monitor import records as r
from monitor.extension.api import Event
from monitor.extension.classify import Classification, Evidence, classify
from monitor.extension.telemetry import MAX_MEMORY_MB, parse_platform_event
from tests.unit.test_incidents import documents, invoke, shutdown, tracker

os.environ.setdefault("AWS_EMF_ENVIRONMENT", "Local")

scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=10**308, max_value=10**400)
    | st.floats()  # NaN and the infinities included (json.loads reads them)
    | st.text(max_size=20)
    | st.sampled_from(["error", "failure", "timeout", "success", "Runtime.OutOfMemory"])
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=12,
)
statuses = st.sampled_from(["error", "failure", "timeout", "success"])
METRICS = ("maxMemoryUsedMB", "memorySizeMB", "durationMs")
metrics = st.dictionaries(st.sampled_from(METRICS), json_values) | json_values
records = (
    st.fixed_dictionaries(
        {},
        optional={
            "requestId": json_values,
            "status": statuses | json_values,
            "errorType": json_values,
            "metrics": metrics,
        },
    )
    | json_values
)
events = (
    st.fixed_dictionaries(
        {"type": st.sampled_from(["platform.runtimeDone", "platform.report"]) | json_values},
        optional={"record": records, "time": json_values},
    )
    | json_values
)


@settings(max_examples=300, deadline=None)
@given(event=events, shutdown_reason=st.sampled_from([None, "failure", "timeout", "spindown"]))
def test_any_platform_event_parses_and_classifies(event: Any, shutdown_reason: str | None) -> None:
    found = parse_platform_event(event)
    if found is None:
        return
    for text in (found.request_id, found.status, found.error_type):
        assert text is None or isinstance(text, str)
    for number in (found.max_memory_used_mb, found.memory_size_mb):
        assert number is None or 0 <= number <= MAX_MEMORY_MB
    verdict = classify(
        Evidence(
            status=found.status,
            error_type=found.error_type,
            shutdown_reason=shutdown_reason,
            max_memory_used_mb=found.max_memory_used_mb,
            memory_size_mb=found.memory_size_mb,
        )
    )
    assert verdict is None or verdict.classification in set(Classification)


@settings(max_examples=100, deadline=None)
@given(event=events)
def test_the_tracker_keeps_the_current_record_after_any_event(
    tmp_path_factory: pytest.TempPathFactory, event: Any
) -> None:
    made, lines = tracker(tmp_path_factory.getbasetemp())
    made.on_invoke(invoke("current"))
    made.on_telemetry(event if isinstance(event, dict) else {"record": event})
    made.on_shutdown(shutdown("timeout"), wait=0)
    docs = documents(lines)
    assert "current" in {d[r.REQUEST_ID] for d in docs}


@settings(max_examples=100, deadline=None)
@given(body=json_values)
def test_any_extensions_api_body_parses_to_an_event(body: Any) -> None:
    event = Event.parse(body)
    assert isinstance(event.kind, str)
    assert event.request_id is None or isinstance(event.request_id, str)
    assert event.shutdown_reason is None or isinstance(event.shutdown_reason, str)
