"""The Lambda event and result: parsing with errors that name the field, and the result shape.

Event::

    {"targets": [{"source": "s3://bucket/models/m.tar.gz",
                  "destination": "s3://bucket/packages/m.zip",
                  "include": ["*.safetensors", "config.json"],
                  "compression": "deflate", "level": 6, "if_exists": "overwrite"}],
     "strategy": "auto"}

A target's result ``status`` is ``succeeded`` (the destination is this attempt's, verified),
``failed`` (nothing of this target was left at the destination) or ``unverified`` (the
object was written, perhaps replacing an older one, but could not be verified: check it
before running the target again; it is never retried).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from handler.codec import COMPRESSIONS, DEFAULT_LEVEL, Compression
from handler.errors import InputError
from handler.locations import IF_EXISTS, IfExists, check_location

MAX_TARGETS = 1000
TARGET_KEYS = frozenset({"source", "destination", "include", "compression", "level", "if_exists"})
SUCCEEDED = "succeeded"
FAILED = "failed"
UNVERIFIED = "unverified"
"""A target's status when its object was written but could not be verified."""
EVENT_KEYS = frozenset({"targets", "strategy"})


class StrategyChoice(enum.StrEnum):
    """What the caller asks for; ``auto`` plans and picks ``extract`` or ``stream``."""

    AUTO = "auto"
    STREAM = "stream"
    EXTRACT = "extract"


class EventValidationError(InputError):
    """When the event is malformed; ``field`` names the offending field (``targets[1].level``)."""

    def __init__(self, field_path: str, problem: str) -> None:
        self.field = field_path
        super().__init__(f"{field_path}: {problem}")


@dataclass(frozen=True, slots=True)
class Target:
    """One archive to package into one ZIP."""

    source: str
    destination: str
    include: tuple[str, ...] = ()
    compression: Compression = "deflate"
    level: int = DEFAULT_LEVEL
    if_exists: IfExists = "overwrite"


@dataclass(frozen=True, slots=True)
class PackagingEvent:
    """A validated event."""

    targets: tuple[Target, ...]
    strategy: StrategyChoice = StrategyChoice.AUTO


def _location(value: Any, path: str, *, zip_destination: bool) -> str:
    if not isinstance(value, str) or not value.strip():
        raise EventValidationError(path, "must be a non-empty string (s3://bucket/key or a path)")
    try:
        return check_location(value, zip_destination=zip_destination)
    except InputError as exc:
        raise EventValidationError(path, str(exc)) from None


def _include(value: Any, path: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(p, str) for p in value):
        raise EventValidationError(path, "must be a list of glob strings, e.g. ['*.safetensors']")
    for index, pattern in enumerate(value):
        if not pattern.strip():
            raise EventValidationError(f"{path}[{index}]", "must not be empty")
    return tuple(value)


def _compression(value: Any, path: str) -> Compression:
    if value is None:
        return "deflate"
    if value not in COMPRESSIONS:
        raise EventValidationError(path, f"must be one of {', '.join(COMPRESSIONS)}; got {value!r}")
    return value  # type: ignore[no-any-return]


def _level(value: Any, path: str) -> int:
    if value is None:
        return DEFAULT_LEVEL
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 9:
        raise EventValidationError(path, f"must be a whole number from 0 to 9; got {value!r}")
    return value


def _if_exists(value: Any, path: str) -> IfExists:
    if value is None:
        return "overwrite"
    if value not in IF_EXISTS:
        raise EventValidationError(
            path, f"must be one of {', '.join(IF_EXISTS)} (default overwrite); got {value!r}"
        )
    return value  # type: ignore[no-any-return]


def _unknown(keys: Any, allowed: frozenset[str], path: str) -> None:
    extra = sorted(str(k) for k in keys if k not in allowed)
    if extra:
        raise EventValidationError(
            f"{path}{extra[0]}" if path else extra[0],
            f"unknown field; allowed fields are {', '.join(sorted(allowed))}",
        )


def parse_target(raw: Any, path: str) -> Target:
    """Validate one target object."""
    if not isinstance(raw, Mapping):
        raise EventValidationError(path, "must be an object with source and destination")
    _unknown(raw.keys(), TARGET_KEYS, f"{path}.")
    for required in ("source", "destination"):
        if required not in raw:
            raise EventValidationError(f"{path}.{required}", "is required")
    return Target(
        source=_location(raw["source"], f"{path}.source", zip_destination=False),
        destination=_location(raw["destination"], f"{path}.destination", zip_destination=True),
        include=_include(raw.get("include"), f"{path}.include"),
        compression=_compression(raw.get("compression"), f"{path}.compression"),
        level=_level(raw.get("level"), f"{path}.level"),
        if_exists=_if_exists(raw.get("if_exists"), f"{path}.if_exists"),
    )


def parse_event(raw: Any, *, default_strategy: str = "auto") -> PackagingEvent:
    """Validate an event; raises EventValidationError naming the first bad field."""
    if not isinstance(raw, Mapping):
        raise EventValidationError("event", "must be a JSON object with a 'targets' list")
    _unknown(raw.keys(), EVENT_KEYS, "")
    targets = raw.get("targets")
    if not isinstance(targets, list) or not targets:
        raise EventValidationError("targets", "must be a non-empty list of target objects")
    if len(targets) > MAX_TARGETS:
        raise EventValidationError(
            "targets",
            f"has {len(targets)} entries; at most {MAX_TARGETS} (fan out with the "
            "state machine instead)",
        )
    parsed = tuple(parse_target(t, f"targets[{i}]") for i, t in enumerate(targets))
    strategy = raw.get("strategy", default_strategy)
    try:
        choice = StrategyChoice(strategy)
    except ValueError:
        raise EventValidationError(
            "strategy", f"must be one of auto, stream, extract; got {strategy!r}"
        ) from None
    return PackagingEvent(parsed, choice)


@dataclass
class TargetResult:
    """The outcome of one target, as the response lists it."""

    source: str
    destination: str
    status: str = "failed"
    strategy: str | None = None
    attempts: int = 0
    files: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    peak_tmp_bytes: int = 0
    peak_rss_bytes: int = 0
    duration_s: float = 0.0
    error: dict[str, str] | None = None

    def as_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "status": self.status,
            "source": self.source,
            "destination": self.destination,
            "strategy": self.strategy,
            "attempts": self.attempts,
            "files": self.files,
            "bytes_in": self.bytes_in,
            "bytes_out": self.bytes_out,
            "peak_tmp_bytes": self.peak_tmp_bytes,
            "peak_rss_bytes": self.peak_rss_bytes,
            "duration_s": round(self.duration_s, 3),
        }
        if self.error is not None:
            data["error"] = self.error
        return data


@dataclass
class InvocationResult:
    """The response: overall status, per-target results, targets left undone."""

    targets: list[TargetResult] = field(default_factory=list)
    remaining: list[Target] = field(default_factory=list)
    error: dict[str, str] | None = None

    @property
    def status(self) -> str:
        """``succeeded``; else ``unverified`` when any target is (check those before
        running anything again); else ``partial`` or ``failed``."""
        succeeded = sum(1 for t in self.targets if t.status == SUCCEEDED)
        if self.error is None and succeeded == len(self.targets) and not self.remaining:
            return SUCCEEDED
        if any(t.status == UNVERIFIED for t in self.targets):
            return UNVERIFIED
        return "partial" if succeeded else FAILED

    def as_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "status": self.status,
            "targets": [t.as_dict() for t in self.targets],
            "remaining": [
                {"source": t.source, "destination": t.destination} for t in self.remaining
            ],
        }
        if self.error is not None:
            data["error"] = self.error
        return data


def error_dict(exc: BaseException) -> dict[str, str]:
    """``{"type": ..., "message": ...}`` for a result."""
    return {"type": type(exc).__name__, "message": " ".join(str(exc).split())}
