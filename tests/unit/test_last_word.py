"""A last word before death: each level change is written at once, with the samples before it.

Issue 11: Lambda's out-of-memory kill takes the monitor's thread and up to a flush
interval of unflushed samples with it, including the climb that explains the death.
"""

from __future__ import annotations

import json
from typing import Any

from monitor import records as r
from monitor.emf import MAX_VALUES_PER_METRIC, MemorySink, last_samples
from monitor.records import RecordKind
from monitor.sampler import Reading
from tests.emf_schema import MAX_EVENT_BYTES, validate_emf_line
from tests.fakes import MIB, FakeSystem


def _kinds(lines: list[str]) -> list[str]:
    return [json.loads(line)[r.RECORD_KIND] for line in lines]


def test_each_crossing_is_in_the_sink_at_once_with_the_climb_before_it() -> None:
    fake, sink = FakeSystem(), MemorySink()
    monitor = fake.monitor(sink, flush_interval=10.0)
    monitor.begin_invocation("req-climb")
    seen_tmp: list[int] = [fake.used]
    seen_rss: list[int] = [fake.rss]
    crossings: list[tuple[str, str]] = []
    with monitor.phase("download"):
        for step in range(1, 20):  # 5% of /tmp and of memory every 100 ms, up to 95%
            fake.advance(0.1)
            fake.fill_fraction(0.05 * step)
            fake.rss = int(100 * MIB * 0.05 * step)
            before = len(sink.lines)
            events_before = len(monitor.events)
            monitor.sample_now()
            seen_tmp.append(fake.used)
            seen_rss.append(fake.rss)
            new_lines = sink.lines[before:]
            new_events = monitor.events[events_before:]
            # What crossed is written by the sample that saw it, one line per crossing,
            # and nothing else: no flush has happened.
            assert _kinds(new_lines) == [RecordKind.LEVEL_CHANGE.value] * len(new_events)
            for line, event in zip(new_lines, new_events, strict=True):
                document = validate_emf_line(line)
                assert len(line.encode()) < MAX_EVENT_BYTES
                assert document[r.LEVEL] == event.level.value
                assert document[r.RESOURCE] == event.resource.value
                assert document[r.REQUEST_ID] == "req-climb"
                assert document[r.PHASE] == "download"
                assert document[r.LEVEL_PERCENT] == round(event.fraction * 100, 2)
                # The samples before it, oldest first, ending with the one that crossed.
                # (the phase's start sample shares a bucket with the baseline)
                assert document[r.LAST_TMP_USED_BYTES] == seen_tmp[-len(seen_tmp) :]
                assert document[r.LAST_MEMORY_USED_BYTES] == seen_rss
                assert document[r.LAST_SAMPLES_OFFSETS_MS] == [100 * i for i in range(step + 1)]
                assert document[r.CROSSING_TIME] == round(fake.now * 1000)
                assert document["_aws"]["CloudWatchMetrics"][0]["Metrics"] == []
                crossings.append((event.resource.value, event.level.value))
    assert {("tmp", "warning"), ("tmp", "critical"), ("memory", "warning")} <= set(crossings)
    assert ("memory", "critical") in crossings
    print(f"level changes written at once: {crossings}")
    assert RecordKind.SAMPLES.value not in _kinds(sink.lines)  # all of it before any flush
    monitor.end_invocation()
    assert RecordKind.SAMPLES.value in _kinds(sink.lines)


def test_the_last_samples_are_bounded_to_a_flush_interval_and_100_values() -> None:
    """At 10 ms sampling, 10 s of history is 1,000 samples: the record keeps 100 buckets
    of 100 ms, each the worst of its samples, so the line stays about 5 KB."""
    history = [
        (1000.0 + i * 0.01, Reading(10 * MIB, 10 * MIB - i * 1000, i * 1000, i * 2000))
        for i in range(1500)
    ]
    until = history[-1][0]
    found: dict[str, Any] = last_samples(history, until, 10.0)
    assert len(found[r.LAST_TMP_USED_BYTES]) == MAX_VALUES_PER_METRIC
    assert found[r.LAST_TMP_USED_BYTES][-1] == 1499 * 1000  # the newest sample is kept
    assert found[r.LAST_MEMORY_USED_BYTES][-1] == 1499 * 2000
    assert found[r.LAST_SAMPLES_START] >= round((until - 10.0) * 1000)
    assert found[r.LAST_SAMPLES_OFFSETS_MS][-1] <= 10_000
    assert len(json.dumps(found)) < 8 * 1024
    assert last_samples(history, until + 100.0, 10.0) == {}


def test_a_predicted_full_is_written_at_once_with_its_seconds_to_full() -> None:
    fake, sink = FakeSystem(), MemorySink()
    monitor = fake.monitor(sink, predict_horizon=30)
    monitor.begin_invocation("req-trend")
    for step in range(1, 40):  # /tmp fills by 10% a second from 10%
        fake.advance(0.1)
        fake.fill_fraction(0.1 + 0.01 * step)
        monitor.sample_now()
        if monitor.events:
            break
    [event] = monitor.events
    [line] = sink.lines
    document = validate_emf_line(line)
    assert (document[r.RESOURCE], document[r.LEVEL]) == ("tmp", "predicted_full")
    assert document[r.SECONDS_TO_FULL] == round(event.seconds_to_full or -1, 1)
    assert 0 < document[r.SECONDS_TO_FULL] <= 30
    assert document[r.LAST_TMP_USED_BYTES][-1] == fake.used
    print(f"predicted_full at {document[r.LEVEL_PERCENT]}%: {document[r.SECONDS_TO_FULL]} s")
