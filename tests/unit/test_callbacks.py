"""The callback runner: callbacks on their own thread, each run recorded."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from monitor.callbacks import CallbackRegistry, CallbackRunner, MonitorEvent
from monitor.errors import ConfigurationError
from monitor.metrics import Level, Resource, StorageMetrics
from monitor.sampler import Reading
from tests.fakes import FakeSystem


def test_a_failing_probe_does_not_wedge_the_callback_runner() -> None:
    fake = FakeSystem()
    calls = {"n": 0}

    def flaky() -> Reading:
        calls["n"] += 1
        if calls["n"] == 1:
            raise OSError("statvfs failed")
        return fake.probe()

    runner = CallbackRunner(flaky)
    metrics = StorageMetrics(1, 1, 0, 0.8, 0.9, 0.0)
    ran: list[int] = []

    def callback_for(index: int) -> Callable[[MonitorEvent], None]:
        return lambda _event: ran.append(index)

    for index in range(3):
        runner.submit(callback_for(index), "cb", MonitorEvent(Level.WARNING, Resource.TMP, metrics))
    assert runner.drain(2.0)
    assert ran == [0, 1, 2]
    # the probe's failure is logged; the callbacks ran and succeeded, and nothing is stuck
    assert [r.error for r in runner.take_records()] == [None, None, None]
    assert runner.drain(0.1)


def test_the_registry_keeps_callbacks_per_crossing_in_order() -> None:
    registry = CallbackRegistry()

    def first(_event: MonitorEvent) -> None: ...
    def second(_event: MonitorEvent) -> None: ...

    registry.add("warning", first, "tmp")
    registry.add(Level.WARNING, second, Resource.TMP)
    registry.add("critical", first, "memory")
    assert [n for n, _ in registry.for_crossing(Level.WARNING, Resource.TMP)] == ["first", "second"]
    assert registry.for_crossing(Level.CRITICAL, Resource.TMP) == []
    with pytest.raises(ConfigurationError, match="does not apply to memory"):
        registry.add("predicted_full", first, "memory")


def test_a_string_a_callback_returns_is_its_runs_outcome_anything_else_is_ignored() -> None:
    runner = CallbackRunner(FakeSystem().probe)
    event = MonitorEvent(Level.CRITICAL, Resource.TMP, StorageMetrics(1, 1, 0, 0.8, 0.9, 0.0))
    runner.submit(lambda _event: "kept 2 path(s): not this request's doing", "says", event)
    runner.submit(lambda _event: 42, "returns a number", event)
    runner.submit(lambda _event: None, "says nothing", event)
    assert runner.drain(2.0)
    runs = runner.take_records()
    assert [run.outcome for run in runs] == ["kept 2 path(s): not this request's doing", None, None]
    assert runs[0].as_dict()["outcome"] == "kept 2 path(s): not this request's doing"
    assert runs[2].as_dict()["outcome"] is None
