"""The extension's classification of a dead invocation (monitor/extension/classify.py)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from monitor.extension.classify import (
    MEMORY_AT_LIMIT,
    TMP_FULL,
    Classification,
    Evidence,
    classify,
)

OOM, TIMEOUT, TMP, CRASH = (
    Classification.OUT_OF_MEMORY,
    Classification.TIMEOUT,
    Classification.TMP_FULL,
    Classification.CRASH,
)


@pytest.mark.parametrize(
    ("evidence", "expected"),
    [
        # Datadog reports this as a plain timeout (DataDog/datadog-lambda-extension#1237)
        (Evidence(status="timeout", max_memory_used_mb=1024, memory_size_mb=1024), OOM),
        (Evidence(status="error", error_type="Runtime.OutOfMemory"), OOM),
        (Evidence(status="timeout", max_memory_used_mb=600, memory_size_mb=1024), TIMEOUT),
        (Evidence(shutdown_reason="timeout"), TIMEOUT),
        (Evidence(shutdown_reason="failure", peak_rss_fraction=0.99), OOM),
        (Evidence(status="error", peak_tmp_fraction=0.995), TMP),
        (Evidence(status="error", error_type="OSError: [Errno 28] No space left on device"), TMP),
        (Evidence(status="timeout", peak_tmp_fraction=1.0, peak_rss_fraction=0.5), TMP),
        (Evidence(status="error", error_type="Runtime.ExitError"), CRASH),
        (Evidence(status="failure"), CRASH),
        (Evidence(shutdown_reason="failure"), CRASH),
        (Evidence(status="success", max_memory_used_mb=1024, memory_size_mb=1024), None),
        (Evidence(shutdown_reason="spindown"), None),
        (Evidence(), None),
    ],
)
def test_each_kind_of_death_is_classified(
    evidence: Evidence, expected: Classification | None
) -> None:
    verdict = classify(evidence)
    assert (verdict.classification if verdict else None) == expected
    if verdict is not None:
        assert verdict.reason  # names its evidence


STATUSES = st.sampled_from([None, "success", "error", "failure", "timeout"])
SHUTDOWNS = st.sampled_from([None, "spindown", "failure", "timeout"])
FRACTIONS = st.none() | st.floats(0, 1.2)


@st.composite
def evidence(draw: st.DrawFn) -> Evidence:
    size = draw(st.none() | st.integers(128, 10240))
    return Evidence(
        status=draw(STATUSES),
        error_type=draw(st.sampled_from([None, "Runtime.ExitError", "Runtime.OutOfMemory"])),
        shutdown_reason=draw(SHUTDOWNS),
        max_memory_used_mb=draw(st.none() | st.integers(1, 10240)),
        memory_size_mb=size,
        peak_rss_fraction=draw(FRACTIONS),
        peak_tmp_fraction=draw(FRACTIONS),
    )


@settings(max_examples=200)
@given(evidence())
def test_every_failed_invocation_gets_one_classification_and_no_success_does(
    e: Evidence,
) -> None:
    verdict = classify(e)
    failed = e.status in ("error", "failure", "timeout") or e.shutdown_reason in (
        "failure",
        "timeout",
    )
    assert (verdict is not None) == failed
    if verdict is None:
        return
    at_cap = (
        e.error_type == "Runtime.OutOfMemory"
        or (
            (e.max_memory_used_mb is not None and bool(e.memory_size_mb))
            and e.max_memory_used_mb >= (e.memory_size_mb or 0)
        )
        or (e.peak_rss_fraction or 0) >= MEMORY_AT_LIMIT
    )
    # memory at the cap wins over everything, whatever the status says (a timeout too)
    assert (verdict.classification is OOM) == at_cap
    if not at_cap and (e.peak_tmp_fraction or 0) >= TMP_FULL:
        assert verdict.classification is TMP
    if verdict.classification is TIMEOUT:
        assert "timeout" in (e.status, e.shutdown_reason)


@settings(max_examples=100)
@given(evidence(), st.integers(128, 10240))
def test_max_memory_at_the_size_turns_any_failure_into_out_of_memory(
    e: Evidence, size: int
) -> None:
    from dataclasses import replace

    capped = replace(e, max_memory_used_mb=size, memory_size_mb=size)
    verdict = classify(capped)
    assert verdict is None or verdict.classification is OOM
