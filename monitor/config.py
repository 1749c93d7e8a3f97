"""The monitor's settings: arguments, else ``TMPWARDEN_*`` variables, else defaults.

Resolved once, when a monitor is created; an invalid value is a ConfigurationError
naming the setting, never a failure inside the sampling thread.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

from monitor.emf_rules import check_dimension, check_namespace
from monitor.errors import ConfigurationError
from monitor.metrics import DEFAULT_NAMESPACE, FUNCTION_DIMENSION
from monitor.tracing import TRACING_MODES
from monitor.units import GiB, parse_size

PATH_ENV = "TMPWARDEN_PATH"
SAMPLE_INTERVAL_ENV = "TMPWARDEN_SAMPLE_INTERVAL_MS"
MAX_SAMPLE_INTERVAL_ENV = "TMPWARDEN_MAX_SAMPLE_INTERVAL_MS"
SAMPLING_ENV = "TMPWARDEN_SAMPLING"
WORST_FILL_RATE_ENV = "TMPWARDEN_WORST_FILL_RATE"
WORST_MEMORY_RATE_ENV = "TMPWARDEN_WORST_MEMORY_RATE"
FLUSH_INTERVAL_ENV = "TMPWARDEN_FLUSH_INTERVAL_S"
TMP_WARNING_ENV = "TMPWARDEN_TMP_WARNING"
TMP_CRITICAL_ENV = "TMPWARDEN_TMP_CRITICAL"
MEMORY_WARNING_ENV = "TMPWARDEN_MEMORY_WARNING"
MEMORY_CRITICAL_ENV = "TMPWARDEN_MEMORY_CRITICAL"
HYSTERESIS_ENV = "TMPWARDEN_HYSTERESIS"
HORIZON_ENV = "TMPWARDEN_PREDICT_HORIZON_S"
NAMESPACE_ENV = "TMPWARDEN_NAMESPACE"
ACTIONS_ENV = "TMPWARDEN_ACTIONS"
EMF_ENV = "TMPWARDEN_EMF"
TRACING_ENV = "TMPWARDEN_TRACING"
FUNCTION_NAME_ENV = "AWS_LAMBDA_FUNCTION_NAME"
SHARED_STATE_ENV = "TMPWARDEN_SHARED_STATE"
EXTENSION_INTERVAL_ENV = "TMPWARDEN_EXTENSION_INTERVAL_MS"
RUNTIME_API_ENV = "AWS_LAMBDA_RUNTIME_API"
EMULATOR_HOOKS = (
    "TMPWARDEN_EXTENSION_HOST",
    "TMPWARDEN_EXTENSION_PORT",
    "TMPWARDEN_RUNTIME_PID",
)
"""Variables a local emulator or a test sets, never a deployment: where the extension's
telemetry listener binds (Lambda's Telemetry API posts only to ``sandbox.localdomain``)
and which process it watches (in Lambda it finds the runtime). The template must not set
them (deploy/checks.py)."""
EXTENSION_HOST_ENV, EXTENSION_PORT_ENV, RUNTIME_PID_HOOK = EMULATOR_HOOKS
EXTENSION_SETTINGS = (SHARED_STATE_ENV, EXTENSION_INTERVAL_ENV)
"""The variables of :class:`ExtensionConfig` a deployment sets (template.yaml feeds them)."""

MIN_SAMPLE_INTERVAL = 0.001
SAMPLING_MODES = ("headroom", "fixed")


@dataclass(frozen=True, slots=True)
class MonitorConfig:
    """Every monitor setting, validated. Fractions are 0-1; times are seconds.

    ``namespace`` and ``function_name`` reach CloudWatch and follow its rules (see
    :mod:`monitor.emf_rules`): a namespace CloudWatch would not extract (``AWS/...``,
    spaces, parentheses) is a ConfigurationError here, not silently lost metrics.

    ``sampling`` is ``headroom`` (the default: the interval stretches from
    ``sample_interval`` up to ``max_sample_interval`` while every resource is far from
    its next threshold, see :mod:`monitor.headroom`) or ``fixed`` (every
    ``sample_interval``). ``worst_fill_rate`` and ``worst_memory_rate`` (bytes per
    second) are the fastest growth of ``/tmp`` and of memory that headroom-aware sampling
    still sees several samples before a threshold: two settings, because the two grow by
    different means (writes to a disk, allocations) and a function that knows its memory
    grows slowly can let a small memory limit stretch the interval too. A fill measured
    faster than its worst rate tightens the interval from its next sample on (its first
    stretched interval may overshoot). A ``max_sample_interval`` below
    ``sample_interval`` is raised to it.
    """

    path: str = "/tmp"
    sample_interval: float = 0.1
    max_sample_interval: float = 1.0
    sampling: str = "headroom"
    worst_fill_rate: float = float(GiB)
    worst_memory_rate: float = float(GiB)
    flush_interval: float = 10.0
    tmp_warning: float = 0.80
    tmp_critical: float = 0.90
    memory_warning: float = 0.80
    memory_critical: float = 0.90
    hysteresis: float = 0.05
    predict_horizon: float = 30.0
    namespace: str = DEFAULT_NAMESPACE
    actions: bool = True
    emf: bool = True
    tracing: str = "auto"
    function_name: str = "local"

    def __post_init__(self) -> None:
        _check(
            self.sample_interval >= MIN_SAMPLE_INTERVAL,
            "sample_interval",
            self.sample_interval,
            f"at least {MIN_SAMPLE_INTERVAL * 1000:g} ms",
        )
        _check(
            self.max_sample_interval >= MIN_SAMPLE_INTERVAL
            and math.isfinite(self.max_sample_interval),
            "max_sample_interval",
            self.max_sample_interval,
            f"at least {MIN_SAMPLE_INTERVAL * 1000:g} ms",
        )
        _check(
            self.sampling in SAMPLING_MODES,
            "sampling",
            self.sampling,
            f"one of {', '.join(SAMPLING_MODES)}",
        )
        for name in ("worst_fill_rate", "worst_memory_rate"):
            rate = getattr(self, name)
            _check(
                rate > 0 and math.isfinite(rate),
                name,
                rate,
                "a positive rate in bytes per second (e.g. 1GiB/s or 512MiB/s)",
            )
        _check(
            self.flush_interval >= self.sample_interval,
            "flush_interval",
            self.flush_interval,
            "at least the sample interval",
        )
        for name in ("tmp_warning", "tmp_critical", "memory_warning", "memory_critical"):
            value = getattr(self, name)
            _check(0 < value <= 1, name, value, "a fraction from 0 to 1 (or a percentage)")
        _check(
            self.tmp_warning <= self.tmp_critical,
            "tmp_warning",
            self.tmp_warning,
            "no higher than tmp_critical",
        )
        _check(
            self.memory_warning <= self.memory_critical,
            "memory_warning",
            self.memory_warning,
            "no higher than memory_critical",
        )
        _check(
            0 <= self.hysteresis < self.tmp_warning,
            "hysteresis",
            self.hysteresis,
            "between 0 and the warning threshold",
        )
        _check(
            self.predict_horizon > 0 and math.isfinite(self.predict_horizon),
            "predict_horizon",
            self.predict_horizon,
            "a positive number of seconds",
        )
        _check(
            self.tracing in TRACING_MODES,
            "tracing",
            self.tracing,
            f"one of {', '.join(TRACING_MODES)}",
        )
        check_namespace(self.namespace, f"namespace ({NAMESPACE_ENV})")
        check_dimension(
            FUNCTION_DIMENSION, self.function_name, f"function_name ({FUNCTION_NAME_ENV})"
        )

    @classmethod
    def resolve(
        cls,
        overrides: Mapping[str, Any] | None = None,
        environ: Mapping[str, str] | None = None,
        **settings: Any,
    ) -> MonitorConfig:
        """Arguments (``overrides`` and ``settings``, None meaning unset) over the
        environment (``environ``, else ``os.environ``) over defaults.

        ``MonitorConfig.resolve(path="/tmp", sample_interval=0.05)``; a path may be a
        :class:`~pathlib.Path`. An unknown or invalid setting is a ConfigurationError.
        """
        env = os.environ if environ is None else environ
        from_env: dict[str, Any] = {}
        readers: dict[str, tuple[str, Callable[[str, str], Any]]] = {
            "path": (PATH_ENV, _text),
            "sample_interval": (SAMPLE_INTERVAL_ENV, lambda n, v: _number(n, v) / 1000),
            "max_sample_interval": (MAX_SAMPLE_INTERVAL_ENV, lambda n, v: _number(n, v) / 1000),
            "sampling": (SAMPLING_ENV, lambda n, v: v.strip().lower()),
            "worst_fill_rate": (WORST_FILL_RATE_ENV, _rate),
            "worst_memory_rate": (WORST_MEMORY_RATE_ENV, _rate),
            "flush_interval": (FLUSH_INTERVAL_ENV, _number),
            "tmp_warning": (TMP_WARNING_ENV, parse_fraction),
            "tmp_critical": (TMP_CRITICAL_ENV, parse_fraction),
            "memory_warning": (MEMORY_WARNING_ENV, parse_fraction),
            "memory_critical": (MEMORY_CRITICAL_ENV, parse_fraction),
            "hysteresis": (HYSTERESIS_ENV, parse_fraction),
            "predict_horizon": (HORIZON_ENV, _number),
            "namespace": (NAMESPACE_ENV, _text),
            "actions": (ACTIONS_ENV, _switch),
            "emf": (EMF_ENV, _switch),
            "tracing": (TRACING_ENV, lambda n, v: v.strip().lower()),
            "function_name": (FUNCTION_NAME_ENV, _text),
        }
        for field_name, (variable, reader) in readers.items():
            raw = env.get(variable)
            if raw is not None and raw.strip():
                from_env[field_name] = reader(variable, raw)
        given = {**(overrides or {}), **settings}
        if isinstance(given.get("path"), os.PathLike):
            given["path"] = os.fspath(given["path"])
        chosen = {k: v for k, v in given.items() if v is not None}
        unknown = set(chosen) - {f.name for f in fields(cls)}
        if unknown:
            raise ConfigurationError(f"unknown monitor setting(s): {', '.join(sorted(unknown))}")
        try:
            return replace(cls(), **{**from_env, **chosen})
        except TypeError as exc:
            raise ConfigurationError(f"invalid monitor setting: {exc}") from exc


def _check(ok: bool, name: str, value: object, expected: str) -> None:
    if not ok:
        raise ConfigurationError(
            f"monitor setting {name}={value!r} is invalid; expected {expected}"
        )


def _text(name: str, value: str) -> str:
    return value.strip()


def _number(name: str, value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise ConfigurationError(f"{name}={value!r} is not a number") from None
    if not math.isfinite(number):
        raise ConfigurationError(f"{name}={value!r} is not a finite number")
    return number


def _rate(name: str, value: str) -> float:
    """``1GiB``, ``1GiB/s``, ``512M`` or ``1073741824``: bytes per second."""
    text = value.strip()
    if text.lower().endswith("/s"):
        text = text[:-2]
    return float(parse_size(text, setting=name))


def parse_fraction(name: str, value: str) -> float:
    """``0.8``, ``80`` and ``80%`` all mean 0.8: values above 1 are percentages."""
    text = value.strip()
    percent = text.endswith("%")
    number = _number(name, text.rstrip("%").strip())
    if percent or number > 1:
        number /= 100
    return number


def _switch(name: str, value: str) -> bool:
    text = value.strip().lower()
    if text in ("1", "true", "on", "yes"):
        return True
    if text in ("0", "false", "off", "no"):
        return False
    raise ConfigurationError(f"{name}={value!r} must be on or off")


SHARED_STATE_MODES = ("auto", "on", "off")
DEFAULT_EXTENSION_HOST = "sandbox.localdomain"
"""The host a Telemetry API subscriber listens on and names in its destination URI
(AWS Lambda Telemetry API guide: "sandbox.localdomain")."""
DEFAULT_EXTENSION_INTERVAL_MS = 500
"""The extension's longest sample interval, far from every threshold: a bare Python
thread costs about 0.195% of a core at 100 ms on Firecracker (issue 11), so about 0.04%
here, under the 0.1% goal; 20 samples in the last 10 s. Near a threshold, or in a climb
at up to the monitor's worst rates, the interval shrinks to the monitor's
``TMPWARDEN_SAMPLE_INTERVAL_MS`` (headroom-aware, unless ``TMPWARDEN_SAMPLING=fixed``).
Lambda freezes the sandbox between invocations, so idle time costs nothing there."""


@dataclass(frozen=True, slots=True)
class ExtensionConfig:
    """The settings of the monitor's link with the external extension (monitor.extension),
    from the environment only (the extension is a process of its own, with no arguments).

    ``shared_state`` (``TMPWARDEN_SHARED_STATE``): whether the in-process monitor shares
    its phase and state in ``<path>/.tmpwarden/`` (monitor.shared_state): ``on``, ``off``,
    or ``auto`` (the default: only in Lambda, where ``AWS_LAMBDA_RUNTIME_API`` is set).
    ``interval`` (``TMPWARDEN_EXTENSION_INTERVAL_MS``, 10 to 60,000 ms, default
    :data:`DEFAULT_EXTENSION_INTERVAL_MS`): the extension's longest sample interval, in
    seconds. ``host``, ``port`` and ``runtime_pid`` come from :data:`EMULATOR_HOOKS`
    (default: ``sandbox.localdomain``, any free port, the runtime found by scanning
    ``/proc``). A bad value is a ConfigurationError naming the variable.
    """

    shared_state: str = "auto"
    interval: float = DEFAULT_EXTENSION_INTERVAL_MS / 1000
    host: str = DEFAULT_EXTENSION_HOST
    port: int = 0
    runtime_pid: int | None = None

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> ExtensionConfig:
        env = os.environ if environ is None else environ
        return cls(
            shared_state=shared_state_mode(env),
            interval=whole_number(
                env, EXTENSION_INTERVAL_ENV, DEFAULT_EXTENSION_INTERVAL_MS, 10, 60_000
            )
            / 1000,
            host=env.get(EXTENSION_HOST_ENV, "").strip() or DEFAULT_EXTENSION_HOST,
            port=whole_number(env, EXTENSION_PORT_ENV, 0, 0, 65535),
            runtime_pid=whole_number(env, RUNTIME_PID_HOOK, 0, 1, 2**22) or None,
        )

    def shares_state(self, environ: Mapping[str, str]) -> bool:
        """Whether the in-process monitor writes its shared state (``auto``: in Lambda)."""
        if self.shared_state == "auto":
            return bool(environ.get(RUNTIME_API_ENV))
        return self.shared_state == "on"


def shared_state_mode(env: Mapping[str, str]) -> str:
    """``TMPWARDEN_SHARED_STATE`` (auto when unset); ConfigurationError if not auto, on, off."""
    mode = env.get(SHARED_STATE_ENV, "").strip().lower() or "auto"
    if mode not in SHARED_STATE_MODES:
        raise ConfigurationError(
            f"{SHARED_STATE_ENV}={env[SHARED_STATE_ENV]!r} must be one of "
            f"{', '.join(SHARED_STATE_MODES)}"
        )
    return mode


def whole_number(env: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    """Variable ``name`` of ``env`` as a whole number from ``low`` to ``high`` (``default``
    when unset or blank); ConfigurationError otherwise."""
    text = env.get(name, "").strip()
    if not text:
        return default
    if not text.isdigit() or not low <= int(text) <= high:
        raise ConfigurationError(f"{name}={text!r} is not a whole number from {low} to {high}")
    return int(text)
