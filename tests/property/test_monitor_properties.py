"""Properties of the monitor's levels: no flapping, and prediction before critical."""

from __future__ import annotations

import os

from hypothesis import given
from hypothesis import strategies as st

from monitor.metrics import Level, Resource
from monitor.thresholds import LevelTracker, Thresholds
from tests.fakes import MIB, FakeSystem

os.environ.setdefault("AWS_EMF_ENVIRONMENT", "Local")

fractions = st.lists(st.floats(0.0, 1.0, allow_nan=False), min_size=1, max_size=200)
thresholds = st.tuples(st.floats(0.2, 0.85), st.floats(0.0, 0.1), st.floats(0.01, 0.14)).map(
    lambda t: Thresholds(warning=t[0], critical=min(t[0] + t[1], 0.99), hysteresis=t[2])
)


@given(samples=fractions, limits=thresholds)
def test_property_7_one_callback_per_crossing(samples: list[float], limits: Thresholds) -> None:
    """Property 7: each crossing of a threshold fires exactly one callback per level."""
    tracker = LevelTracker(limits)
    fired = [tracker.update(value) for value in samples]
    for level, threshold in ((Level.WARNING, limits.warning), (Level.CRITICAL, limits.critical)):
        rearmed = True  # nothing fired yet
        for value, levels in zip(samples, fired, strict=True):
            fires = level in levels
            # A crossing (at or over the threshold while armed) fires exactly once...
            assert fires == (value >= threshold and rearmed)
            if fires:
                rearmed = False
            # ...and only a fall below threshold - hysteresis re-arms it.
            elif value < threshold - limits.hysteresis:
                rearmed = True


steps = st.lists(st.integers(0, 3 * MIB), min_size=5, max_size=120)


@given(increments=steps, interval=st.sampled_from([0.01, 0.05, 0.1]), horizon=st.floats(1, 60))
def test_property_8_prediction_before_critical(
    increments: list[int], interval: float, horizon: float
) -> None:
    """Property 8: on a monotonic fill, the prediction never comes after critical."""
    fake = FakeSystem(total=100 * MIB, used=0)
    monitor = fake.monitor(
        sample_interval=interval, predict_horizon=horizon, actions=False, memory_limit=1000 * MIB
    )
    for increment in increments:
        fake.advance(interval)
        fake.used = min(fake.used + increment, fake.total)
        monitor.sample_now()
    order = [e.level for e in monitor.events if e.resource is Resource.TMP]
    if Level.PREDICTED_FULL in order and Level.CRITICAL in order:
        assert order.index(Level.PREDICTED_FULL) < order.index(Level.CRITICAL)
    assert order.count(Level.CRITICAL) <= 1 and order.count(Level.PREDICTED_FULL) <= 1
