"""Deterministic stand-ins for what is not deterministic: clocks and the /tmp probe."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from monitor.config import MonitorConfig
from monitor.emf import MemorySink
from monitor.sampler import Reading
from monitor.sidecar import StorageMonitor

MIB = 1024 * 1024
MONITOR_PARTS = ("sink", "tracer", "probe", "memory_limit", "clock", "wall_clock", "environ")
"""StorageMonitor's injected parts; every other option is a MonitorConfig setting."""


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

    def monitor(
        self, sink: MemorySink | None = None, *, fake_clocks: bool = True, **settings: Any
    ) -> StorageMonitor:
        """A monitor of this system (no tracing, no environment), on its clock unless
        ``fake_clocks`` is false (for tests of the real sampling thread)."""
        options: dict[str, Any] = {
            "sample_interval": 0.1,
            "tracing": "off",
            "memory_limit": 100 * MIB,
            "environ": {},
            "sink": sink if sink is not None else MemorySink(),
            "probe": self.probe,
        }
        if fake_clocks:
            options |= {"clock": self.clock, "wall_clock": self.clock}
        chosen = options | settings
        parts = {name: chosen.pop(name) for name in MONITOR_PARTS if name in chosen}
        config = MonitorConfig.resolve({"path": "/tmp", **chosen}, parts.get("environ"))
        return StorageMonitor(config, **parts)
