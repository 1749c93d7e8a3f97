"""The handler's settings, from ``TMPWARDEN_*`` variables, resolved once per cold start."""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field

from handler.deadline import (
    DEFAULT_STALL_TIMEOUT_S,
    STALL_TIMEOUT_ENV,
    margin_needed,
    stall_timeout_from_env,
)
from handler.events import StrategyChoice
from handler.locations.ranged import CONNECTIONS_ENV, ReadPlan
from handler.locations.throughput import TARGET_ENV, UploadPlan
from monitor.config import MonitorConfig
from monitor.errors import ConfigurationError

STRATEGY_ENV = "TMPWARDEN_STRATEGY"
MAX_ATTEMPTS_ENV = "TMPWARDEN_MAX_ATTEMPTS"
TIME_MARGIN_ENV = "TMPWARDEN_TIME_MARGIN_S"
LOG_LEVEL_ENV = "TMPWARDEN_LOG_LEVEL"
ENDPOINT_ENV = "AWS_ENDPOINT_URL"
SOURCE_CONNECTIONS_ENV = CONNECTIONS_ENV
TARGET_THROUGHPUT_ENV = TARGET_ENV
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


@dataclass(frozen=True, slots=True)
class HandlerSettings:
    """How targets run: default strategy, retries, time margin, scratch space, logging."""

    strategy: StrategyChoice = StrategyChoice.AUTO
    max_attempts: int = 3
    time_margin: float = 30.0
    """Seconds of the invocation kept free: no target, attempt or S3 request starts inside
    them; they cover the wait in flight and the upload's abort
    (:func:`handler.deadline.margin_needed`). 0 turns the guard off."""
    stall_timeout: float = DEFAULT_STALL_TIMEOUT_S
    """Seconds a read may wait for data before it counts as stalled (botocore's
    read_timeout; its own default, 60 s, is longer than the margin)."""
    scratch_dir: str = "/tmp"
    tmp_critical: float = 0.9
    log_level: str = "INFO"
    endpoint_url: str | None = None
    read_plan: ReadPlan = field(default_factory=ReadPlan)
    """How S3 sources are read: ``TMPWARDEN_SOURCE_CONNECTIONS`` ranged GETs at once
    (default 4), ``TMPWARDEN_READ_AHEAD_MIB`` read ahead (:mod:`handler.locations.ranged`)."""
    upload_plan: UploadPlan = field(default_factory=UploadPlan)
    """How S3 destinations are written: ``TMPWARDEN_TARGET_MB_S`` MB/s wanted (default 75),
    one part in flight per 85 MB/s, at least 2 (:mod:`handler.locations.throughput`)."""

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> HandlerSettings:
        env = os.environ if environ is None else environ
        strategy = env.get(STRATEGY_ENV, "").strip().lower() or "auto"  # empty: unset
        if strategy not in {s.value for s in StrategyChoice}:
            raise ConfigurationError(f"{STRATEGY_ENV}={strategy!r} must be auto, stream or extract")
        level = env.get(LOG_LEVEL_ENV, "").strip().upper() or "INFO"
        if level not in LOG_LEVELS:
            raise ConfigurationError(
                f"{LOG_LEVEL_ENV}={level!r} must be one of {', '.join(LOG_LEVELS)}"
            )
        try:
            attempts = int(env.get(MAX_ATTEMPTS_ENV, "").strip() or "3")
            margin = float(env.get(TIME_MARGIN_ENV, "").strip() or "30")
        except ValueError as exc:
            raise ConfigurationError(
                f"{MAX_ATTEMPTS_ENV} and {TIME_MARGIN_ENV} must be numbers ({exc})"
            ) from None
        if not 1 <= attempts <= 10:
            raise ConfigurationError(f"{MAX_ATTEMPTS_ENV}={attempts} must be from 1 to 10")
        if not 0 <= margin < math.inf:
            raise ConfigurationError(f"{TIME_MARGIN_ENV}={margin} must be 0 or more seconds")
        stall = stall_timeout_from_env(env)
        if 0 < margin < margin_needed(stall):
            raise ConfigurationError(
                f"{TIME_MARGIN_ENV}={margin:g} is too short for {STALL_TIMEOUT_ENV}={stall:g}: "
                f"the margin must cover the wait in flight and the upload's abort, at least "
                f"{margin_needed(stall):g} s; raise {TIME_MARGIN_ENV} or lower "
                f"{STALL_TIMEOUT_ENV} (0 turns the time guard off)"
            )
        monitor = MonitorConfig.resolve(environ=env)
        return cls(
            strategy=StrategyChoice(strategy),
            max_attempts=attempts,
            time_margin=margin,
            stall_timeout=stall,
            scratch_dir=env.get("TMPDIR") or tempfile.gettempdir(),
            tmp_critical=monitor.tmp_critical,
            log_level=level,
            endpoint_url=env.get(ENDPOINT_ENV) or None,
            read_plan=ReadPlan.from_env(env),
            upload_plan=UploadPlan.from_env(env),
        )
