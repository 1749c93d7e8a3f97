"""Deterministic stand-ins for what is not deterministic: clocks and the /tmp probe."""

from __future__ import annotations

from dataclasses import dataclass

from monitor.sampler import Reading

MIB = 1024 * 1024


@dataclass
class FakeSystem:
    """A filesystem and a process whose usage the test sets; time the test advances."""

    total: int = 100 * MIB
    used: int = 0
    rss: int = 10 * MIB
    now: float = 1_800_000_000.0

    def probe(self) -> Reading:
        return Reading(self.total, self.total - self.used, self.used, self.rss)

    def clock(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds

    def fill_fraction(self, fraction: float) -> None:
        self.used = int(self.total * fraction)
