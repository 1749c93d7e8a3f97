"""Levels with hysteresis, and the time-to-full prediction.

A level fires once when usage reaches its threshold and re-arms only after usage
falls below the threshold minus the hysteresis margin, so a value hovering at the
threshold does not flap. Pure logic: no clock, no I/O; times are passed in.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

from monitor.metrics import Level, Resource


@dataclass(frozen=True, slots=True)
class Thresholds:
    """Warning and critical thresholds (fractions 0-1) and the re-arm margin."""

    warning: float
    critical: float
    hysteresis: float


class LevelTracker:
    """Turns a stream of usage fractions into level crossings (warning, critical)."""

    def __init__(self, thresholds: Thresholds) -> None:
        self.thresholds = thresholds
        self._armed = {Level.WARNING: True, Level.CRITICAL: True}
        self.level = Level.OK

    @property
    def quiet_below(self) -> float:
        """Below this usage an update changes nothing while every level is armed."""
        return self.thresholds.warning - self.thresholds.hysteresis

    @property
    def all_armed(self) -> bool:
        return self._armed[Level.WARNING] and self._armed[Level.CRITICAL]

    def _threshold(self, level: Level) -> float:
        return self.thresholds.warning if level is Level.WARNING else self.thresholds.critical

    def update(self, fraction: float) -> list[Level]:
        """Feed one sample; returns the levels that fire now (lowest first)."""
        fired: list[Level] = []
        for level in (Level.WARNING, Level.CRITICAL):
            threshold = self._threshold(level)
            if fraction >= threshold and self._armed[level]:
                self._armed[level] = False
                fired.append(level)
            elif fraction < threshold - self.thresholds.hysteresis:
                self._armed[level] = True
        if not self._armed[Level.CRITICAL]:
            self.level = Level.CRITICAL
        elif not self._armed[Level.WARNING]:
            self.level = Level.WARNING
        else:
            self.level = Level.OK
        return fired


@dataclass(frozen=True, slots=True)
class Prediction:
    """Where the trend leads: bytes per second, and seconds until full (inf if not filling)."""

    rate: float
    seconds_to_full: float


class TrendPredictor:
    """Least-squares trend of used bytes over a sliding window of recent samples.

    It predicts only from ``min_samples`` samples spanning at least ``min_span``
    seconds, and starts over after a gap (a Lambda frozen between invocations).
    Sums are kept incrementally, so each sample costs O(1) whatever the window.
    """

    def __init__(
        self,
        window: float,
        *,
        min_samples: int = 5,
        min_span: float = 0.5,
        max_gap: float = 5.0,
    ) -> None:
        self.window = window
        self.min_samples = min_samples
        self.min_span = min_span
        self.max_gap = max_gap
        self._points: deque[tuple[float, float]] = deque()
        self._base_t = 0.0
        self._base_v = 0.0
        self._sums = [0.0, 0.0, 0.0, 0.0]  # t, v, t*t, t*v (relative, v in MiB)

    def reset(self) -> None:
        self._points.clear()
        self._sums = [0.0, 0.0, 0.0, 0.0]

    def _push(self, t: float, v: float) -> None:
        self._points.append((t, v))
        sums = self._sums
        sums[0] += t
        sums[1] += v
        sums[2] += t * t
        sums[3] += t * v

    def _pop(self) -> None:
        t, v = self._points.popleft()
        sums = self._sums
        sums[0] -= t
        sums[1] -= v
        sums[2] -= t * t
        sums[3] -= t * v

    def add(self, when: float, used: float, available: float) -> Prediction | None:
        """Feed one sample; returns a prediction once there is enough history."""
        points = self._points
        if points and when - (points[-1][0] + self._base_t) > self.max_gap:
            self.reset()
        if not points:
            self._base_t, self._base_v = when, used
        self._push(when - self._base_t, (used - self._base_v) / _MIB)
        newest = when - self._base_t
        while newest - points[0][0] > self.window:
            self._pop()
        if len(points) < self.min_samples or newest - points[0][0] < self.min_span:
            return None
        n = len(points)
        sum_t, sum_v, sum_tt, sum_tv = self._sums
        spread = n * sum_tt - sum_t * sum_t
        if spread <= 0:
            return Prediction(0.0, math.inf)
        rate = (n * sum_tv - sum_t * sum_v) / spread * _MIB
        if rate <= 0:
            return Prediction(rate, math.inf)
        return Prediction(rate, available / rate)


_MIB = 1024.0 * 1024.0


class PredictiveAlarm:
    """Fires ``predicted_full`` once when full is due within the horizon, before critical.

    It re-arms when the prediction moves beyond twice the horizon (or the trend
    stops rising), and stays silent while the critical level is active, so on a
    steady fill it never comes after the critical crossing.
    """

    def __init__(self, horizon: float) -> None:
        self.horizon = horizon
        self._armed = True

    @property
    def armed(self) -> bool:
        return self._armed

    def update(self, prediction: Prediction | None, critical_active: bool) -> bool:
        if prediction is None:
            return False
        if prediction.seconds_to_full > 2 * self.horizon:
            self._armed = True
            return False
        if critical_active:
            self._armed = False
            return False
        if prediction.seconds_to_full <= self.horizon and self._armed:
            self._armed = False
            return True
        return False


MAX_TREND_WINDOW = 10.0
"""The trend looks back at most this many seconds."""
TREND_POINTS = 20
"""Points of the time-to-full trend per window (samples in between only aggregate)."""


@dataclass(frozen=True, slots=True)
class LevelSettings:
    """What :class:`LevelWatch` needs of the monitor's configuration (fractions 0-1,
    seconds); made from a :class:`~monitor.config.MonitorConfig` by its caller."""

    tmp: Thresholds
    memory: Thresholds
    predict_horizon: float
    sample_interval: float
    max_sample_interval: float = 0.0
    """The longest headroom-aware interval (0: fixed sampling); the trend does not take a
    wait this long for a gap."""


class LevelWatch:
    """Both resources' levels and the ``/tmp`` trend, from one sample at a time.

    :meth:`observe` takes a sample's fractions, the ``/tmp`` bytes and the time (the
    caller's clock, seconds) and returns the crossings that fire, in the order
    warning, predicted full, critical (``/tmp``) then memory's. Pure: no clock, no I/O.
    """

    def __init__(self, settings: LevelSettings) -> None:
        self.tmp = LevelTracker(settings.tmp)
        self.memory = LevelTracker(settings.memory)
        interval = settings.sample_interval
        window = min(max(settings.predict_horizon / 3, 5 * interval), MAX_TREND_WINDOW)
        self.trend = TrendPredictor(
            window,
            min_samples=5,
            min_span=window / 4,
            max_gap=max(10 * interval, 2.0, 2 * settings.max_sample_interval),
        )
        self.predictive = PredictiveAlarm(settings.predict_horizon)
        self.prediction: Prediction | None = None
        self._trend_spacing = max(window / TREND_POINTS, interval) * 0.999
        self._next_trend = 0.0
        # Precomputed for the hot path's "nothing can fire" test.
        self._quiet = True
        self._tmp_quiet_below = self.tmp.quiet_below
        self._memory_quiet_below = self.memory.quiet_below
        self._horizon = 2 * settings.predict_horizon

    def reset_trend(self) -> None:
        """Forget the trend (a new invocation starts from its own baseline)."""
        self.trend.reset()

    def observe(
        self, now: float, used: int, available: int, tmp_fraction: float, memory_fraction: float
    ) -> list[tuple[Resource, Level]]:
        prediction = None
        if now >= self._next_trend:
            # The trend spans seconds: about TREND_POINTS points per window are plenty.
            self._next_trend = now + self._trend_spacing
            prediction = self.prediction = self.trend.add(now, used, available)
        if (
            self._quiet
            and tmp_fraction < self._tmp_quiet_below
            and memory_fraction < self._memory_quiet_below
            and (prediction is None or prediction.seconds_to_full > self._horizon)
        ):
            return []  # nothing can fire: every level is armed and usage is below them
        fired = self._evaluate(tmp_fraction, memory_fraction, prediction)
        self._quiet = self.tmp.all_armed and self.memory.all_armed and self.predictive.armed
        return fired

    def _evaluate(
        self, tmp_fraction: float, memory_fraction: float, prediction: Prediction | None
    ) -> list[tuple[Resource, Level]]:
        critical_before = self.tmp.level is Level.CRITICAL
        tmp = self.tmp.update(tmp_fraction)
        predicted = self.predictive.update(prediction, critical_active=critical_before)
        fired: list[tuple[Resource, Level]] = []
        if Level.WARNING in tmp:
            fired.append((Resource.TMP, Level.WARNING))
        if predicted:
            fired.append((Resource.TMP, Level.PREDICTED_FULL))
        if Level.CRITICAL in tmp:
            fired.append((Resource.TMP, Level.CRITICAL))
        fired.extend((Resource.MEMORY, lv) for lv in self.memory.update(memory_fraction))
        return fired

    def level(self, resource: Resource) -> Level:
        return (self.tmp if resource is Resource.TMP else self.memory).level
