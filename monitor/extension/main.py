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

from monitor.config import (
    DEFAULT_EXTENSION_INTERVAL_MS,
    EMULATOR_HOOKS,
    EXTENSION_INTERVAL_ENV,
    RUNTIME_API_ENV,
    ExtensionConfig,
    MonitorConfig,
    whole_number,
)
from monitor.errors import TmpwardenError
from monitor.extension.api import ExtensionsApiError, ExtensionsClient
from monitor.extension.incidents import IncidentTracker
from monitor.extension.probe import Sampler, find_runtime_pid, read_proc
from monitor.extension.telemetry import TelemetryListener, subscribe
from monitor.headroom import IntervalPlanner
from monitor.shared_state import state_dir

MEMORY_ENV = "AWS_LAMBDA_FUNCTION_MEMORY_SIZE"
WINDOW_SECONDS = 10.0
"""The last samples an incident record carries."""
MEBIBYTE = 1024 * 1024
DEFAULT_INTERVAL_MS = DEFAULT_EXTENSION_INTERVAL_MS
HOST_ENV, PORT_ENV, RUNTIME_PID_ENV = EMULATOR_HOOKS
INTERVAL_ENV = EXTENSION_INTERVAL_ENV
"""The variables' names, as monitor.config defines them (an emulator sets the first three)."""


@dataclass(frozen=True, slots=True)
class ExtensionSettings:
    """The extension's settings, read from the environment (see :mod:`monitor.extension`):
    its own (:class:`~monitor.config.ExtensionConfig`), the monitor's, the memory limit."""

    host: str
    port: int
    runtime_pid: int | None
    interval: float
    monitor: MonitorConfig
    memory_limit: int

    @classmethod
    def from_environ(cls, env: Mapping[str, str]) -> ExtensionSettings:
        """ConfigurationError names the variable and what to write."""
        own = ExtensionConfig.from_environ(env)
        return cls(
            host=own.host,
            port=own.port,
            runtime_pid=own.runtime_pid,
            interval=own.interval,
            monitor=MonitorConfig.resolve(None, env),
            memory_limit=whole_number(env, MEMORY_ENV, 0, 1, 10**7) * MEBIBYTE or _machine_memory(),
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
        for line in read_proc("/proc/meminfo").decode(errors="replace").splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


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
