"""Headroom-aware sampling on a fake clock: every crossing is seen in time, whatever the fill.

The sampling thread's own loop (:meth:`SamplingThread.run`) runs on the test's thread
with a fake clock and a fake sleep that moves a fill along, so a simulated hour of
sampling takes milliseconds and nothing depends on the machine's load.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hypothesis import given, settings
from hypothesis import strategies as st

from monitor.callbacks import MonitorEvent
from monitor.headroom import Headroom, IntervalPlanner, next_interval
from monitor.sampling import LONGEST_SLEEP, SamplingThread, StopFlag
from monitor.units import GiB, MiB
from tests.fakes import FakeSystem

WORST_RATE = 1 * GiB  # TMPWARDEN_WORST_FILL_RATE's and _MEMORY_RATE's default
MAX_INTERVAL = 1.0  # TMPWARDEN_MAX_SAMPLE_INTERVAL_MS's default
THRESHOLDS = (0.8, 0.9)  # the default warning and critical levels
EPSILON = 1e-6


@dataclass
class Fill:
    """``resource`` grows from ``start`` bytes at ``rate`` bytes per second from ``begins``
    (seconds of the fake clock) until it is full."""

    resource: str
    capacity: int
    start: int
    rate: float
    begins: float
    sampled_at: list[float] = field(default_factory=list)

    def used(self, now: float) -> int:
        grown = self.start + self.rate * max(0.0, now - self.begins)
        return int(min(self.capacity, grown))

    def crossing(self, fraction: float) -> float:
        """When usage first reaches ``fraction`` of the capacity (fake-clock seconds)."""
        return self.begins + (fraction * self.capacity - self.start) / self.rate


def run_fill(fill: Fill, minimum: float) -> tuple[list[MonitorEvent], list[float]]:
    """Headroom-aware sampling of ``fill`` until just past the critical crossing: the
    callbacks' events and every interval the thread was given."""
    fake = FakeSystem(total=fill.capacity, now=1000.0)
    limit = fill.capacity if fill.resource == "memory" else 10 * GiB
    fake.rss = 0 if fill.resource == "memory" else MiB
    fill.begins += fake.now
    monitor = fake.monitor(
        actions=False,
        sample_interval=minimum,
        max_sample_interval=MAX_INTERVAL,
        sampling="headroom",
        worst_fill_rate=WORST_RATE,
        worst_memory_rate=WORST_RATE,
        memory_limit=limit,
        flush_interval=3600.0,
    )
    events: list[MonitorEvent] = []
    for level in ("warning", "critical"):
        monitor.add_callback(level, events.append, resource=fill.resource)
    intervals: list[float] = []
    stop = StopFlag()
    end = fill.crossing(THRESHOLDS[-1]) + 4 * minimum

    def move(now: float) -> None:
        if fill.resource == "memory":
            fake.rss = fill.used(now)
        else:
            fake.used = fill.used(now)

    def fake_sleep(seconds: float) -> None:
        assert 0 < seconds <= LONGEST_SLEEP
        fake.advance(seconds)
        move(fake.now)
        if fake.now > end:
            stop.stopped = True

    def sample() -> None:
        fill.sampled_at.append(fake.now)
        monitor.sample_now()

    def planned() -> float:
        interval = monitor.next_sample_interval()
        intervals.append(interval)
        return interval

    move(fake.now)
    monitor.sample_now()
    thread = SamplingThread(
        sample,
        monitor.flush,
        lambda: False,
        interval=minimum,
        flush_interval=3600.0,
        clock=fake.clock,
        sleep=fake_sleep,
        next_interval=planned,
    )
    thread.run(stop)
    assert monitor.drain_callbacks()
    assert thread.errors == 0
    return events, intervals


@settings(max_examples=100, deadline=None)
@given(
    resource=st.sampled_from(["tmp", "memory"]),
    capacity_mib=st.integers(128, 10 * 1024),
    headroom=st.floats(0.0, 0.79),
    rate=st.floats(20.0, 30.0).map(lambda exponent: 2.0**exponent),  # 1 MiB/s to 1 GiB/s
    begins=st.floats(0.0, 5.0),
    minimum=st.sampled_from([0.01, 0.1]),
)
def test_each_callback_comes_within_two_minimum_intervals_of_its_crossing(
    resource: str, capacity_mib: int, headroom: float, rate: float, begins: float, minimum: float
) -> None:
    # GIVEN a fill at any rate up to the worst, from any starting headroom, at any time
    # (of at most 2 simulated minutes: a slow fill of a large /tmp would take hours)
    capacity = max(128 * MiB, min(capacity_mib * MiB, int(rate * 120)))
    fill = Fill(resource, capacity, int(capacity * headroom), rate, begins)
    # WHEN headroom-aware sampling watches it
    events, intervals = run_fill(fill, minimum)
    # THEN warning then critical each fire once, within 2 minimum intervals of crossing
    assert [e.level.value for e in events] == ["warning", "critical"]
    for event, threshold in zip(events, THRESHOLDS, strict=True):
        late = event.metrics.timestamp - fill.crossing(threshold)
        assert -EPSILON <= late <= 2 * minimum + EPSILON, (threshold, late)
        # and the climb was sampled several times in the last 4 minimum intervals
        crossed = fill.crossing(threshold)
        if crossed - 1000.0 >= 5 * minimum:
            before = [t for t in fill.sampled_at if crossed - 4 * minimum <= t < crossed]
            assert len(before) >= 3, (threshold, before)
    # AND the interval stays within its bounds
    assert all(minimum - EPSILON <= i <= MAX_INTERVAL + EPSILON for i in intervals)


headrooms = st.builds(
    Headroom,
    used=st.floats(-1e12, 1e13, allow_nan=False),
    capacity=st.floats(-1.0, 1e13, allow_nan=False),
    thresholds=st.lists(st.floats(0.0, 1.0), max_size=3),
    worst_rate=st.floats(1.0, 1e12),
    rate=st.floats(-1e12, 1e13, allow_nan=False),
)


@settings(max_examples=200)
@given(
    resources=st.lists(headrooms, max_size=3),
    minimum=st.floats(0.001, 1.0),
    stretch=st.floats(1.0, 100.0),
)
def test_the_interval_never_leaves_its_bounds(
    resources: list[Headroom], minimum: float, stretch: float
) -> None:
    maximum = minimum * stretch
    interval = next_interval(resources, minimum=minimum, maximum=maximum)
    assert minimum <= interval <= maximum


@settings(max_examples=200)
@given(
    first=st.tuples(st.integers(0, 2**40), st.integers(0, 2**40), st.integers(0, 2**36)),
    second=st.tuples(st.integers(0, 2**40), st.integers(0, 2**40), st.integers(0, 2**36)),
    elapsed=st.floats(0.0, 10.0),
    memory_limit=st.integers(1, 2**36),
    thresholds=st.tuples(st.floats(0.0, 1.0), st.floats(0.0, 1.0)),
    worst=st.tuples(st.floats(1.0, 1e12), st.floats(1.0, 1e12)),
    minimum=st.sampled_from([0.001, 0.01, 0.1]),
)
def test_the_planners_interval_is_next_interval_of_the_last_sample(
    first: tuple[int, int, int],
    second: tuple[int, int, int],
    elapsed: float,
    memory_limit: int,
    thresholds: tuple[float, float],
    worst: tuple[float, float],
    minimum: float,
) -> None:
    # GIVEN the planner (its arithmetic inlined for the hot path) after two samples
    planner = IntervalPlanner(
        thresholds, thresholds, memory_limit, worst_rates=worst, minimum=minimum, maximum=1.0
    )
    planner.observe(100.0, *first)
    planner.observe(100.0 + elapsed, *second)
    # THEN its interval is exactly next_interval of the last sample's two Headroom
    used, total, rss = second
    tmp_rate, memory_rate = planner.rates
    expected = next_interval(
        (
            Headroom(used, total, thresholds, worst[0], tmp_rate),
            Headroom(rss, memory_limit, thresholds, worst[1], memory_rate),
        ),
        minimum=minimum,
        maximum=1.0,
    )
    assert planner.next_interval() == expected
