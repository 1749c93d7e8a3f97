"""Property: whatever a user supplies, every EMF document is written, valid and <= 256 KB.

Guards issue 8, item 8 (one bad phase name or NaN cost the invocation document; long
error texts made a 2.09 MB line).
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from monitor.emf import MemorySink
from monitor.emf_rules import MAX_EVENT_BYTES
from tests.emf_schema import validate_emf_line
from tests.fakes import MIB, FakeSystem

os.environ.setdefault("AWS_EMF_ENVIRONMENT", "Local")

any_text = st.text(
    st.characters(codec=None, exclude_categories=())
    | st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF, exclude_categories=())
    | st.sampled_from(" \t\n\x00\x7féü日"),
    max_size=40,
)
"""Any code point: lone surrogates, control characters and whitespace included."""
long_text = st.tuples(any_text, st.integers(0, 50) | st.sampled_from([300, 3000, 20_000])).map(
    lambda t: t[0] * t[1]
)
"""Up to 800,000 characters: error texts and request ids far over any line."""
metric_values = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(-(2**1100), 2**1100),
)
attempts = st.lists(
    st.tuples(any_text, st.none() | long_text, metric_values),
    max_size=25,
)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(request_id=st.none() | long_text, steps=attempts)
def test_every_document_is_written_valid_and_within_256_kb(
    request_id: str | None, steps: list[tuple[str, str | None, float]]
) -> None:
    fake = FakeSystem(total=100 * MIB, used=1 * MIB)
    sink = MemorySink()
    monitor = fake.monitor(sink)
    monitor.begin_invocation(request_id)
    for index, (name, error, value) in enumerate(steps):
        try:
            with monitor.phase(name):
                fake.used = (index + 2) * MIB
                fake.advance(0.01)
                if error is not None:
                    raise RuntimeError(error)
        except RuntimeError:
            pass
        monitor.put_metric("PackagedBytes", value)
    summary = monitor.end_invocation()

    documents = []
    for line in sink.lines:
        assert len((line + "\n").encode()) <= MAX_EVENT_BYTES
        documents.append(validate_emf_line(line))
    emitter = monitor._emitter
    assert emitter is not None and emitter.documents_failed == 0
    records = [d["TmpwardenRecord"] for d in documents]
    assert records.count("invocation") == 1 and records.count("samples") >= 1
    [invocation] = [d for d in documents if d["TmpwardenRecord"] == "invocation"]
    assert invocation["PeakTmpUsedBytes"] == summary.peaks.tmp_used == (len(steps) + 1) * MIB
    durations = [
        value
        for d in documents
        if d["TmpwardenRecord"] == "phase"
        for value in (
            d["PhaseDuration"] if isinstance(d["PhaseDuration"], list) else [d["PhaseDuration"]]
        )
    ]
    assert len(durations) == len(steps)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    request_id=st.none() | long_text,
    phase=any_text.filter(str.strip),
    interval_ms=st.integers(1, 1000),
    flush_s=st.integers(1, 60),
    usage=st.lists(st.tuples(st.floats(0, 1), st.floats(0, 1.2)), min_size=1, max_size=300),
)
def test_every_level_change_is_written_at_once_valid_and_within_256_kb(
    request_id: str | None,
    phase: str,
    interval_ms: int,
    flush_s: int,
    usage: list[tuple[float, float]],
) -> None:
    """Issue 11: a level change is written by the sample that saw it (no flush, no end),
    whatever the names, intervals and climb; its samples are at most 100 and end there."""
    interval = interval_ms / 1000
    fake, sink = FakeSystem(), MemorySink()
    monitor = fake.monitor(sink, sample_interval=interval, flush_interval=max(flush_s, interval))
    monitor.begin_invocation(request_id)
    monitor.stop()  # only this test's samples: the thread's, at real intervals, would race
    with monitor.phase(phase):
        for tmp, memory in usage:
            fake.advance(interval)
            fake.fill_fraction(tmp)
            fake.rss = int(100 * MIB * memory)
            events, lines = len(monitor.events), len(sink.lines)
            monitor.sample_now()
            new = [validate_emf_line(line) for line in sink.lines[lines:]]
            assert len(new) == len(monitor.events) - events
            for document, line in zip(new, sink.lines[lines:], strict=True):
                assert document["TmpwardenRecord"] == "level_change"
                assert len(line.encode()) + 1 <= MAX_EVENT_BYTES
                used, rss = document["LastTmpUsedBytes"], document["LastMemoryUsedBytes"]
                assert 1 <= len(used) == len(rss) <= 100
                assert used[-1] >= fake.used and rss[-1] >= fake.rss  # the bucket's worst
                assert document["LastSamplesOffsetsMs"][-1] <= 1000 * max(flush_s, interval)
