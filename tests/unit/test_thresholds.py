"""Levels with hysteresis and the time-to-full prediction (pure logic)."""

from __future__ import annotations

import math

import pytest

from monitor.metrics import Level, Resource
from monitor.thresholds import (
    LevelSettings,
    LevelTracker,
    LevelWatch,
    PredictiveAlarm,
    Thresholds,
    TrendPredictor,
)

MIB = 1024 * 1024


def test_a_level_fires_once_per_crossing_and_rearms_below_the_margin() -> None:
    tracker = LevelTracker(Thresholds(warning=0.8, critical=0.9, hysteresis=0.05))
    assert tracker.update(0.5) == []
    assert tracker.update(0.81) == [Level.WARNING]
    assert tracker.update(0.79) == []  # hovering: still within the margin, no re-arm
    assert tracker.update(0.82) == []  # so no second warning
    assert tracker.level.value == "warning"
    assert tracker.update(0.74) == []  # below 0.8 - 0.05: re-armed
    assert tracker.level.value == "ok"
    assert tracker.update(0.95) == [Level.WARNING, Level.CRITICAL]
    assert str(tracker.level) == "critical"


def test_the_trend_predicts_time_to_full_from_a_steady_fill() -> None:
    predictor = TrendPredictor(window=5.0, min_samples=5, min_span=0.5)
    total = 100 * MIB
    prediction = None
    for step in range(20):
        t = step * 0.1
        used = 10 * MIB + int(2 * MIB * t)  # 2 MiB/s
        prediction = predictor.add(t, used, total - used)
    assert prediction is not None
    assert prediction.rate == pytest.approx(2 * MIB, rel=0.01)
    remaining = total - (10 * MIB + int(2 * MIB * 1.9))
    assert prediction.seconds_to_full == pytest.approx(remaining / (2 * MIB), rel=0.01)


def test_the_trend_waits_for_enough_history_and_forgets_after_a_gap() -> None:
    predictor = TrendPredictor(window=5.0, min_samples=5, min_span=0.5, max_gap=2.0)
    assert predictor.add(0.0, 0, 100) is None
    for step in range(1, 6):
        predictor.add(step * 0.2, step * 10, 100 - step * 10)
    assert predictor.add(1.2, 60, 40) is not None
    # a frozen Lambda thaws 60 s later: the old points must not bend the new trend
    assert predictor.add(61.2, 60, 40) is None


def test_a_flat_or_falling_trend_never_predicts_full() -> None:
    predictor = TrendPredictor(window=5.0, min_samples=3, min_span=0.1)
    prediction = None
    for step in range(10):
        prediction = predictor.add(step * 0.1, 1000 - step, 9000 + step)
    assert prediction is not None and prediction.seconds_to_full == math.inf


def test_predictive_alarm_fires_once_and_never_while_critical() -> None:
    from monitor.thresholds import Prediction

    alarm = PredictiveAlarm(horizon=30)
    assert not alarm.update(Prediction(1.0, 100), critical_active=False)
    assert alarm.update(Prediction(1.0, 20), critical_active=False)
    assert not alarm.update(Prediction(1.0, 10), critical_active=False)  # once
    assert not alarm.update(Prediction(1.0, 90), critical_active=False)  # re-armed beyond 2x
    assert not alarm.update(Prediction(1.0, 10), critical_active=True)  # silent while critical


def test_level_watch_fires_each_crossing_once_in_order_without_a_clock() -> None:
    settings = LevelSettings(
        tmp=Thresholds(0.8, 0.9, 0.05),
        memory=Thresholds(0.8, 0.9, 0.05),
        predict_horizon=30.0,
        sample_interval=0.1,
    )
    watch = LevelWatch(settings)
    total = 1000
    fired = []
    for step, used in enumerate((100, 850, 950, 960, 500, 850)):
        now = step * 1.0
        fired.append(watch.observe(now, used, total - used, used / total, 0.1))
    assert fired == [
        [],
        [(Resource.TMP, Level.WARNING)],
        [(Resource.TMP, Level.CRITICAL)],
        [],
        [],  # back below both thresholds minus the margin: re-armed
        [(Resource.TMP, Level.WARNING)],
    ]
    assert watch.level(Resource.TMP) is Level.WARNING
    assert watch.observe(10.0, 0, total, 0.0, 0.95) == [
        (Resource.MEMORY, Level.WARNING),
        (Resource.MEMORY, Level.CRITICAL),
    ]
