"""The EMF record schema (monitor/records.py) is what the monitor writes, no more, no less."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from monitor import records
from monitor.emf import MemorySink
from monitor.metrics import REGISTRY
from monitor.records import RecordKind
from tests.fakes import FakeSystem


def _documents(tmp_path: Path) -> list[dict[str, Any]]:
    """Every kind of record and list item: a filling /tmp (time to full), a critical
    crossing with its cleanup callback, two phases (one failing) and a processing state."""
    fake, sink = FakeSystem(), MemorySink()
    monitor = fake.monitor(sink, predict_horizon=30)
    monitor.register_cleanup(tmp_path / "cache")
    monitor.begin_invocation("req-schema")
    with monitor.phase("download"):
        for step in range(40):
            fake.advance(0.1)
            fake.fill_fraction(0.3 + step * 0.017)
            monitor.sample_now()
    try:
        with monitor.phase("compress"):
            monitor.update_state(
                files_processed=3, total_files=4, disk_usage=1, cleanup_performed=True
            )
            raise RuntimeError("boom")
    except RuntimeError:
        pass
    monitor.drain_callbacks()
    monitor.end_invocation()
    return [json.loads(line) for line in sink.lines]


def test_every_property_written_is_in_the_schema_of_its_record_kind(tmp_path: Path) -> None:
    documents = _documents(tmp_path)
    kinds = {doc[records.RECORD_KIND] for doc in documents}
    # incident records come from the external extension (tests/unit/test_incidents.py)
    assert kinds == {kind.value for kind in RecordKind} - {RecordKind.INCIDENT}
    for doc in documents:
        kind = RecordKind(doc[records.RECORD_KIND])
        unnamed = set(doc) - {"_aws"} - set(REGISTRY) - records.PROPERTIES[kind]
        assert unnamed == set(), f"{kind} writes properties the schema does not name"
    [invocation] = [d for d in documents if d[records.RECORD_KIND] == RecordKind.INVOCATION]
    assert records.PROPERTIES[RecordKind.INVOCATION] <= set(invocation)
    for listed, fields in records.LIST_FIELDS.items():
        assert invocation[listed], f"the run should have listed {listed}"
        for item in invocation[listed]:
            assert set(item) == fields
    samples = [d for d in documents if d[records.RECORD_KIND] == RecordKind.SAMPLES]
    assert any(records.TIME_TO_FULL_OFFSETS_MS in d for d in samples)
    changes = [d for d in documents if d[records.RECORD_KIND] == RecordKind.LEVEL_CHANGE]
    assert changes, "the /tmp climb crosses levels"
    for change in changes:
        assert records.PROPERTIES[RecordKind.LEVEL_CHANGE] <= set(change)


def test_every_field_logs_insights_can_see_is_known() -> None:
    assert records.is_record_field("RequestId")
    assert records.is_record_field("PeakTmpUsedPercent")  # a metric value
    assert records.is_record_field("Callbacks.12.tmp_freed")
    assert not records.is_record_field("Callbacks.0.bytes_freed")
    assert not records.is_record_field("RequestID")
    assert records.suggestion("RequestID") == "RequestId"
    assert records.suggestion("Events.0.percnt") == "Events.0.percent"
