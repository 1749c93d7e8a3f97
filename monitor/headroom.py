"""Headroom-aware sampling: how long the sampling thread may sleep before its next sample.

A fill can only cross a threshold after it has covered the gap to it, and at the worst
rate it can cover that gap no faster than ``gap / worst_rate`` seconds. Sleeping
``gap / (SAMPLES_BEFORE_CROSSING * rate)`` therefore never steps over a crossing while
the gap is wide, and each sample shrinks the sleep with the gap, down to the minimum
interval, so the fill is sampled several times on its way and the crossing itself is
seen within one minimum interval (the callback, a sample later at most, within two).

``rate`` is the resource's worst rate (bytes per second: ``TMPWARDEN_WORST_FILL_RATE``
for ``/tmp``, ``TMPWARDEN_WORST_MEMORY_RATE`` for memory) or the measured one when a fill
is faster than that. Pure: no clock, no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from monitor.config import MonitorConfig

SAMPLES_BEFORE_CROSSING = 4
"""The interval is at most this fraction (a quarter) of the time the nearest threshold
takes at the worst rate: a fill at up to that rate is then sampled at least 3 times in the
last 4 minimum intervals before it crosses (tests/property/test_headroom_sampling.py)."""


@dataclass(frozen=True, slots=True)
class Headroom:
    """One resource as the last sample saw it.

    ``used`` and ``capacity`` are bytes (``/tmp``'s used and total; RSS and the memory
    limit); ``thresholds`` are fractions 0-1 at which a level fires (warning, critical;
    full, 1.0, is always one); ``worst_rate`` is the fastest fill to be seen in time and
    ``rate`` the measured one, bytes per second (negative when usage falls).
    """

    used: float
    capacity: float
    thresholds: Sequence[float]
    worst_rate: float
    rate: float = 0.0

    def gap(self) -> float:
        """Bytes from ``used`` to the next threshold above it (0 at or past full)."""
        if self.capacity <= 0:
            return 0.0
        fraction = self.used / self.capacity
        above = [t for t in (*self.thresholds, 1.0) if t > fraction]
        return (min(above) - fraction) * self.capacity if above else 0.0


def next_interval(resources: Iterable[Headroom], *, minimum: float, maximum: float) -> float:
    """Seconds until the next sample: within ``[minimum, maximum]``.

    For each resource, the time its gap to the next threshold takes at the faster of its
    worst rate (> 0) and its measured rate, divided by :data:`SAMPLES_BEFORE_CROSSING`;
    the shortest of them, clamped. ``minimum`` and ``maximum`` are seconds
    (``0 < minimum <= maximum``).
    """
    shortest = maximum
    for resource in resources:
        rate = max(resource.worst_rate, resource.rate)
        shortest = min(shortest, resource.gap() / (SAMPLES_BEFORE_CROSSING * rate))
    if math.isnan(shortest):
        return minimum
    return min(maximum, max(minimum, shortest))


class IntervalPlanner:
    """Headroom-aware sampling for one monitor: measures the fill rates and plans the
    next interval from the last sample (see :func:`next_interval`).

    Thresholds are fractions (warning, critical) of ``/tmp`` and of ``memory_limit``
    (bytes); ``worst_rates`` bytes per second (``/tmp``, memory); ``minimum`` and
    ``maximum`` seconds. Rates are measured between samples at least ``minimum`` apart,
    so two samples taken back to back (a phase's end and the next one's start) do not
    make a rate of noise. :meth:`observe` plans the next interval at once (the same
    figure as :func:`next_interval` of the sample's two :class:`Headroom`, computed
    without making them: it runs on every sample; tests/unit/test_headroom.py checks
    both agree) and :meth:`next_interval` returns it.
    Not locked: :meth:`observe` runs under its owner's lock, and :meth:`next_interval`
    reads one attribute, so it sees one sample's plan or the next, never half of one.
    """

    def __init__(
        self,
        tmp_thresholds: Sequence[float],
        memory_thresholds: Sequence[float],
        memory_limit: int,
        *,
        worst_rates: tuple[float, float],
        minimum: float,
        maximum: float,
    ) -> None:
        self.tmp_thresholds = tuple(tmp_thresholds)
        self.memory_thresholds = tuple(memory_thresholds)
        self.memory_limit = memory_limit
        self.worst_rates = worst_rates
        self.minimum = minimum
        self.maximum = max(minimum, maximum)
        self._base: tuple[float, int, int] | None = None  # (seconds, /tmp used, RSS)
        self.rates = (0.0, 0.0)
        """The measured fill rates, bytes per second: ``/tmp``, memory."""
        self._tmp_levels = tuple(sorted({*self.tmp_thresholds, 1.0}))
        self._memory_levels = tuple(sorted({*self.memory_thresholds, 1.0}))
        self._divisors = (
            SAMPLES_BEFORE_CROSSING * worst_rates[0],
            SAMPLES_BEFORE_CROSSING * worst_rates[1],
        )
        self._interval = minimum  # nothing observed yet: no headroom known

    @classmethod
    def of(cls, config: MonitorConfig, memory_limit: int) -> IntervalPlanner | None:
        """The planner for ``config`` (None when its sampling is ``fixed``)."""
        if config.sampling != "headroom":
            return None
        return cls(
            (config.tmp_warning, config.tmp_critical),
            (config.memory_warning, config.memory_critical),
            memory_limit,
            worst_rates=(config.worst_fill_rate, config.worst_memory_rate),
            minimum=config.sample_interval,
            maximum=config.max_sample_interval,
        )

    def observe(self, now: float, used: int, total: int, rss: int) -> None:
        """Take one sample (``now`` in seconds of the monitor's clock; bytes) and plan
        the next interval from it."""
        base = self._base
        if base is None or now < base[0]:
            self._base = (now, used, rss)
        else:
            elapsed = now - base[0]
            if elapsed >= self.minimum:
                self.rates = ((used - base[1]) / elapsed, (rss - base[2]) / elapsed)
                self._base = (now, used, rss)
        tmp_rate, memory_rate = self.rates
        tmp_divisor, memory_divisor = self._divisors
        # A measured rate faster than the worst one takes its place (see next_interval).
        tmp_divisor = max(tmp_divisor, tmp_rate * SAMPLES_BEFORE_CROSSING)
        memory_divisor = max(memory_divisor, memory_rate * SAMPLES_BEFORE_CROSSING)
        # Both gaps (Headroom.gap), inlined: a call costs more than the loop on a cold sample.
        shortest = self.maximum
        if total > 0:
            fraction = used / total
            for level in self._tmp_levels:
                if level > fraction:
                    shortest = min(shortest, (level - fraction) * total / tmp_divisor)
                    break
            else:
                shortest = 0.0
        else:
            shortest = 0.0
        limit = self.memory_limit
        if limit > 0:
            fraction = rss / limit
            for level in self._memory_levels:
                if level > fraction:
                    shortest = min(shortest, (level - fraction) * limit / memory_divisor)
                    break
            else:
                shortest = 0.0
        else:
            shortest = 0.0
        self._interval = shortest if shortest > self.minimum else self.minimum

    def next_interval(self) -> float:
        """Seconds until the next sample, from the last one observed."""
        return self._interval
