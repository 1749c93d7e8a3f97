"""The extension's process: register, subscribe, sample, and wait for events.

See :mod:`monitor.extension` for the environment it reads and its exit status.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from monitor.config import MonitorConfig
from monitor.errors import ConfigurationError, TmpwardenError
from monitor.extension.api import ExtensionsApiError, ExtensionsClient
from monitor.extension.incidents import IncidentTracker
from monitor.extension.probe import Sampler, find_runtime_pid
from monitor.extension.telemetry import DEFAULT_HOST, TelemetryListener, subscribe
from monitor.headroom import IntervalPlanner
from monitor.shared_state import state_dir

RUNTIME_API_ENV = "AWS_LAMBDA_RUNTIME_API"
HOST_ENV = "TMPWARDEN_EXTENSION_HOST"
PORT_ENV = "TMPWARDEN_EXTENSION_PORT"
RUNTIME_PID_ENV = "TMPWARDEN_RUNTIME_PID"
INTERVAL_ENV = "TMPWARDEN_EXTENSION_INTERVAL_MS"
MEMORY_ENV = "AWS_LAMBDA_FUNCTION_MEMORY_SIZE"
DEFAULT_INTERVAL_MS = 500
"""The longest sample interval, far from every threshold: a bare Python thread costs
about 0.195% of a core at 100 ms on Firecracker (issue 11), so about 0.04% here, under the
0.1% goal; 20 samples in the last 10 s. Near a threshold, or in a climb at up to the
monitor's worst rates, the interval shrinks to the monitor's ``TMPWARDEN_SAMPLE_INTERVAL_MS``
(headroom-aware, :class:`monitor.headroom.IntervalPlanner`, unless
``TMPWARDEN_SAMPLING=fixed``). Lambda freezes the sandbox between invocations, so idle
time costs nothing there."""
WINDOW_SECONDS = 10.0
"""The last samples an incident record carries."""
MEBIBYTE = 1024 * 1024


@dataclass(frozen=True, slots=True)
class ExtensionSettings:
    """The extension's settings, read from the environment (see :mod:`monitor.extension`)."""

    host: str
    port: int
    runtime_pid: int | None
    interval: float
    monitor: MonitorConfig
    memory_limit: int

    @classmethod
    def from_environ(cls, env: Mapping[str, str]) -> ExtensionSettings:
        """ConfigurationError names the variable and what to write."""
        return cls(
            host=env.get(HOST_ENV) or DEFAULT_HOST,
            port=_whole(env, PORT_ENV, 0, 0, 65535),
            runtime_pid=_whole(env, RUNTIME_PID_ENV, 0, 1, 2**22) or None,
            interval=_whole(env, INTERVAL_ENV, DEFAULT_INTERVAL_MS, 10, 60_000) / 1000,
            monitor=MonitorConfig.resolve(None, env),
            memory_limit=_whole(env, MEMORY_ENV, 0, 1, 10**7) * MEBIBYTE or _machine_memory(),
        )

    def planner(self) -> IntervalPlanner | None:
        """Headroom-aware sampling as the monitor's settings say (None: fixed)."""
        cfg = self.monitor
        if cfg.sampling != "headroom":
            return None
        return IntervalPlanner(
            (cfg.tmp_warning, cfg.tmp_critical),
            (cfg.memory_warning, cfg.memory_critical),
            self.memory_limit,
            worst_rates=(cfg.worst_fill_rate, cfg.worst_memory_rate),
            minimum=min(cfg.sample_interval, self.interval),
            maximum=self.interval,
        )


def _machine_memory() -> int:
    """MemTotal of /proc/meminfo (bytes): the limit outside Lambda."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def _whole(env: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    text = env.get(name, "").strip()
    if not text:
        return default
    if not text.isdigit() or not low <= int(text) <= high:
        raise ConfigurationError(f"{name}={text!r} is not a whole number from {low} to {high}")
    return int(text)


def run(argv: Sequence[str], env: Mapping[str, str], out: TextIO, err: TextIO) -> int:
    """The extension's life; returns the exit status."""
    runtime_api = env.get(RUNTIME_API_ENV)
    if not runtime_api:
        err.write(f"error: {RUNTIME_API_ENV} is not set; Lambda (or an emulator) sets it\n")
        return 2
    try:
        client = ExtensionsClient(runtime_api, Path(argv[0]).name)
        client.register()
    except ExtensionsApiError as exc:
        err.write(f"error: {exc}\n")
        return 1
    try:
        settings = ExtensionSettings.from_environ(env)
        sampler = Sampler(
            settings.monitor.path,
            settings.interval,
            WINDOW_SECONDS,
            planner=settings.planner(),
        )
        sampler.watch(settings.runtime_pid)
        sampler.sample()
    except (TmpwardenError, OSError) as exc:
        client.report_error("init", "ConfigurationError", str(exc))
        err.write(f"error: {exc}\n")
        return 1

    def write(line: str) -> None:
        out.write(line + "\n")
        out.flush()

    tracker = IncidentTracker(
        sampler,
        write,
        namespace=settings.monitor.namespace,
        function_name=settings.monitor.function_name,
        tmp_path=settings.monitor.path,
        state_dir=str(state_dir(settings.monitor.path)),
        memory_limit=settings.memory_limit,
    )
    listener: TelemetryListener | None = None
    try:
        listener = TelemetryListener(settings.host, settings.port, tracker.on_telemetry)
        listener.start()
        assert client.extension_id is not None
        subscribe(runtime_api, client.extension_id, listener.uri)
    except (OSError, ExtensionsApiError) as exc:  # SHUTDOWN still tells of failures
        err.write(f"tmpwarden-monitor: no telemetry ({exc}); SHUTDOWN events only\n")
    sampler.start()
    try:
        while True:
            event = client.next_event()
            if event.kind == "INVOKE":
                if settings.runtime_pid is not None:
                    sampler.watch(settings.runtime_pid)
                elif not sampler.runtime_alive():
                    sampler.watch(find_runtime_pid())
                tracker.on_invoke(event)
            elif event.kind == "SHUTDOWN":
                tracker.on_shutdown(event)
                return 0
    except Exception as exc:
        client.report_error("exit", type(exc).__name__, str(exc))
        err.write(f"error: tmpwarden-monitor failed: {type(exc).__name__}: {exc}\n")
        return 1
    finally:
        sampler.stop()
        if listener is not None:
            listener.stop()


def main(argv: Sequence[str] | None = None) -> int:
    return run(sys.argv if argv is None else argv, os.environ, sys.stdout, sys.stderr)
