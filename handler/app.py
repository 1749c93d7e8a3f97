"""The packaging Lambda: validate the event, run each target, return per-target results.

Thin by design: settings, the S3 client and the monitor are made once per cold start
(on the first invocation, not at import); the work is in :mod:`handler.packaging`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from handler.errors import TmpwardenError
from handler.events import InvocationResult, error_dict, parse_event
from handler.locations.local import is_s3
from handler.logs import configure, log_context
from handler.memory import explain, limit_malloc_arenas
from handler.packaging import package_target
from handler.settings import HandlerSettings
from monitor import MonitorConfig, StorageMonitor, monitored, records
from monitor.metrics import PACKAGED_BYTES, TARGETS_FAILED, TARGETS_SUCCEEDED

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

log = logging.getLogger("tmpwarden.handler")


@dataclass
class Runtime:
    """What lives across warm invocations."""

    settings: HandlerSettings
    monitor: StorageMonitor
    s3: S3Client | None = None

    def client(self) -> S3Client:
        if self.s3 is None:
            from handler.locations.s3 import make_client  # noqa: PLC0415

            self.s3 = make_client(
                self.settings.endpoint_url, stall_timeout=self.settings.stall_timeout
            )
        return self.s3


_cold_start: dict[str, Runtime] = {}


def runtime() -> Runtime:
    """The cold-start state, made on first use."""
    if "runtime" not in _cold_start:
        settings = HandlerSettings.from_env()
        configure(settings.log_level)
        limit_malloc_arenas()  # before the work's threads: RSS stays near the buffers
        _cold_start["runtime"] = Runtime(
            settings, StorageMonitor(MonitorConfig.resolve(path=settings.scratch_dir))
        )
    return _cold_start["runtime"]


def reset_runtime() -> None:
    """Forget the cold-start state (tests; a changed environment)."""
    state = _cold_start.pop("runtime", None)
    if state is not None:
        state.monitor.stop()


def _remaining_seconds(context: Any) -> Callable[[], float] | None:
    """The context's remaining-time clock in seconds (None for a context without one)."""
    getter = getattr(context, "get_remaining_time_in_millis", None)
    if getter is None:
        return None
    return lambda: float(getter()) / 1000.0


def lambda_handler(event: Any, context: Any) -> dict[str, Any]:
    """Package every target of ``event``; see :mod:`handler.events` for both shapes."""
    state = runtime()
    try:
        return monitored(state.monitor)(_handle)(event, context)
    except (MemoryError, RuntimeError) as exc:  # e.g. the monitor's thread could not start
        exhausted = explain(exc)
        if exhausted is None:
            raise
        log.error(
            "out of resources", extra={"event": "resource_exhausted", "error": str(exhausted)}
        )
        return InvocationResult(error=error_dict(exhausted)).as_dict()


def _handle(event: Any, context: Any) -> dict[str, Any]:
    state = runtime()
    started = time.monotonic()
    request_id = getattr(context, "aws_request_id", None)
    result = InvocationResult()
    with log_context(**{records.REQUEST_ID: request_id}):
        try:
            parsed = parse_event(event, default_strategy=state.settings.strategy.value)
        except TmpwardenError as exc:
            log.error("invalid event", extra={"event": "invalid_event", "error_message": str(exc)})
            result.error = error_dict(exc)
            return result.as_dict()
        remaining = _remaining_seconds(context)
        log.info(
            "invocation started",
            extra={
                "event": "invocation_started",
                "targets": len(parsed.targets),
                "strategy": parsed.strategy.value,
            },
        )
        for index, target in enumerate(parsed.targets):
            if remaining is not None and remaining() < state.settings.time_margin:
                result.remaining += parsed.targets[index:]
                log.warning(
                    "out of time",
                    extra={"event": "targets_left_undone", "count": len(result.remaining)},
                )
                break
            outcome = package_target(
                target,
                state.settings,
                s3=state.client() if _needs_s3(target.source, target.destination) else None,
                monitor=state.monitor,
                choice=parsed.strategy,
                remaining_seconds=remaining,
            )
            result.targets.append(outcome)
            if outcome.error is not None and outcome.error["type"] == "OutOfTimeError":
                result.remaining.append(target)  # cut short by time: run it again
            succeeded = outcome.status == "succeeded"
            state.monitor.put_metric(TARGETS_SUCCEEDED if succeeded else TARGETS_FAILED, 1)
            if succeeded:
                state.monitor.put_metric(PACKAGED_BYTES, outcome.bytes_out)
        response = result.as_dict()
        log.info(
            "invocation finished",
            extra={
                "event": "invocation_finished",
                "status": response["status"],
                "duration_s": round(time.monotonic() - started, 3),
            },
        )
        return response


def _needs_s3(*locations: str) -> bool:
    return any(is_s3(location) for location in locations)
