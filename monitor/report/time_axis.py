"""The report's time axis: epoch seconds to x, with idle stretches collapsed.

Pure (no matplotlib): :class:`TimeAxis` places active segments side by side and picks
tick labels at round clock times.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from monitor.report.model import Timeline

DAY = 86_400.0
TICK_STEPS: tuple[float, ...] = (0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900)
TICK_STEPS += (1800, 3600, 7200, 10_800, 21_600, 43_200, DAY)
"""Tick steps that divide a day, so ticks fall on round clock times."""
MAX_TICKS = 12
MIN_IDLE_SECONDS, IDLE_SHARE, GAP_SHARE = 20.0, 0.25, 0.03
"""Idle stretches longer than 20 s and a quarter of the active time are drawn 3% wide."""


@dataclass(frozen=True, slots=True)
class TimeAxis:
    """Maps epoch seconds to x (seconds of activity since the first). Idle stretches
    between active segments (a sandbox frozen between invocations) are collapsed to
    ``gap_width``, so invocations minutes apart stay readable side by side."""

    starts: tuple[float, ...]
    ends: tuple[float, ...]
    offsets: tuple[float, ...]
    gap_width: float

    @classmethod
    def of(cls, timeline: Timeline) -> TimeAxis:
        spans = [(s.time, s.time) for s in timeline.samples]
        spans += [(i.start, i.end) for i in timeline.invocations]
        spans += [
            (min(c.time, *(s.time for s in c.last_samples)), c.time) for c in timeline.level_changes
        ]
        spans += [
            (min(i.time, *(s.time for s in i.last_samples)), i.time) for i in timeline.incidents
        ]
        segments = merge_spans(sorted(spans), MIN_IDLE_SECONDS)
        active = sum(end - start for start, end in segments)
        segments = merge_spans(segments, max(MIN_IDLE_SECONDS, IDLE_SHARE * active))
        active = sum(end - start for start, end in segments)
        gap_width = max(GAP_SHARE * active, 0.5)
        offsets = [0.0]
        for start, end in segments[:-1]:
            offsets.append(offsets[-1] + (end - start) + gap_width)
        return cls(
            tuple(s for s, _ in segments), tuple(e for _, e in segments), tuple(offsets), gap_width
        )

    @property
    def gaps(self) -> list[tuple[float, float]]:
        """The collapsed idle stretches, as epoch seconds."""
        return list(zip(self.ends, self.starts[1:], strict=False))

    def x(self, when: float) -> float:
        index = max(bisect.bisect_right(self.starts, when) - 1, 0)
        if when <= self.ends[index] or index == len(self.starts) - 1:
            return self.offsets[index] + when - self.starts[index]
        idle = (when - self.ends[index]) / (self.starts[index + 1] - self.ends[index])
        return self.offsets[index + 1] - self.gap_width * (1 - idle)

    def ticks(self, pad: float) -> tuple[list[float], list[str]]:
        """Ticks at round clock times and at the start of every segment, thinned so
        that labels do not run into each other (segment starts win)."""
        total = self.x(self.ends[-1]) - self.x(self.starts[0]) + 2 * pad
        step = next((s for s in TICK_STEPS if total / s <= MAX_TICKS), DAY)
        candidates: list[tuple[float, str, bool]] = []  # x, label, starts a segment
        last = len(self.starts) - 1
        for index, (start, end) in enumerate(zip(self.starts, self.ends, strict=True)):
            candidates.append((self.x(start), clock_label(start, min(step, 1.0)), True))
            tick = math.ceil((start - (pad if index == 0 else 0)) / step) * step
            while tick <= end + (pad if index == last else 0):
                candidates.append((self.x(tick), clock_label(tick, step), False))
                tick += step
        kept: list[tuple[float, str, bool]] = []
        for candidate in sorted(candidates):
            if not kept or candidate[0] - kept[-1][0] >= total / (MAX_TICKS + 2):
                kept.append(candidate)
            elif candidate[2] and not kept[-1][2]:
                kept[-1] = candidate
        return [x for x, _, _ in kept], [label for _, label, _ in kept]


def merge_spans(spans: Sequence[tuple[float, float]], gap: float) -> list[tuple[float, float]]:
    merged: list[tuple[float, float]] = []
    for start, end in spans:
        if merged and start - merged[-1][1] <= gap:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def clock_label(when: float, step: float) -> str:
    moment = datetime.fromtimestamp(when, UTC)
    if step < 1:
        return moment.strftime("%H:%M:%S.%f")[:-5]
    if step < 60:
        return moment.strftime("%H:%M:%S")
    return moment.strftime("%H:%M" if step < DAY else "%m-%d %H:%M")
