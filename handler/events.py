"""The Lambda event and result: parsing with errors that name the field, and the result shape.

Event::

    {"targets": [{"source": "s3://bucket/models/m.tar.gz",
                  "destination": "s3://bucket/packages/m.zip",
                  "include": ["*.safetensors", "config.json"],
                  "compression": "auto", "level": 6,
                  "name_encoding": "latin-1", "if_exists": "overwrite"}],
     "strategy": "auto"}

``compression`` (optional, default ``auto``) and ``level`` (optional, 0-9; default: from
the destination) are explained in :mod:`handler.zipwriter.method`.
``name_encoding`` (optional) is the codec of member names that are not UTF-8; without it
such names are refused (see :mod:`handler.archive.names`).

A target's result ``status`` is ``succeeded`` (the destination is this attempt's, verified),
``failed`` (nothing of this target was left at the destination) or ``unverified`` (the
object was written, perhaps replacing an older one, but could not be verified: check it
before running the target again; it is never retried).
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from handler.archive.names import check_name_encoding
from handler.codec import COMPRESSIONS, Compression
from handler.errors import InputError
from handler.locations.local import IF_EXISTS, IfExists, check_location
from handler.validation import location_problems, same_location, shown, shown_repr, text_problem
from monitor.errors import one_line

MAX_TARGETS = 1000
TARGET_KEYS = frozenset(
    {"source", "destination", "include", "compression", "level", "name_encoding", "if_exists"}
)
SUCCEEDED = "succeeded"
FAILED = "failed"
UNVERIFIED = "unverified"
"""A target's status when its object was written but could not be verified."""
EVENT_KEYS = frozenset({"targets", "strategy"})
PROBLEMS_SHOWN = 5
"""Problems an EventValidationError's message lists; ``problems`` holds them all."""
T = TypeVar("T")


class StrategyChoice(enum.StrEnum):
    """What the caller asks for; ``auto`` plans and picks ``extract`` or ``stream``."""

    AUTO = "auto"
    STREAM = "stream"
    EXTRACT = "extract"


class EventValidationError(InputError):
    """When the event is malformed. ``problems`` lists every invalid field as
    ``(field, problem)``; ``field`` names the first (``targets[1].level``). The message
    starts ``field: problem`` and lists up to PROBLEMS_SHOWN of them."""

    def __init__(
        self,
        field_path: str,
        problem: str,
        *,
        more: Sequence[tuple[str, str]] = (),
    ) -> None:
        self.problems = [(field_path, problem), *more]
        self.field = field_path
        parts = [f"{name}: {text}" for name, text in self.problems[:PROBLEMS_SHOWN]]
        message = " | ".join(parts)
        if len(self.problems) > 1:
            hidden = len(self.problems) - PROBLEMS_SHOWN
            left = f", {hidden} more not shown" if hidden > 0 else ""
            message += f" ({len(self.problems)} invalid fields{left})"
        super().__init__(message)

    @classmethod
    def of(cls, problems: Sequence[tuple[str, str]]) -> EventValidationError:
        """One error for several ``(field, problem)`` pairs (at least one)."""
        (first, problem), *more = problems
        return cls(first, problem, more=more)


class _Problems:
    """Collects the problems of several fields, so that all are reported at once."""

    def __init__(self) -> None:
        self.found: list[tuple[str, str]] = []

    def add(self, field_path: str, problem: str) -> None:
        self.found.append((field_path, problem))

    def check(self, parse: Callable[..., T], *args: Any, **kwargs: Any) -> T | None:
        """``parse(*args, **kwargs)``, or None with its problems recorded."""
        try:
            return parse(*args, **kwargs)
        except EventValidationError as exc:
            self.found.extend(exc.problems)
            return None

    def raise_any(self) -> None:
        if self.found:
            raise EventValidationError.of(self.found)


@dataclass(frozen=True, slots=True)
class Target:
    """One archive to package into one ZIP."""

    source: str
    destination: str
    include: tuple[str, ...] = ()
    compression: Compression = "auto"
    level: int | None = None
    """None: chosen from the destination (handler.zipwriter.method)."""
    name_encoding: str | None = None
    if_exists: IfExists = "overwrite"


@dataclass(frozen=True, slots=True)
class PackagingEvent:
    """A validated event."""

    targets: tuple[Target, ...]
    strategy: StrategyChoice = StrategyChoice.AUTO


def _location(value: Any, path: str, *, zip_destination: bool) -> str:
    if not isinstance(value, str) or not value.strip():
        raise EventValidationError(path, "must be a non-empty string (s3://bucket/key or a path)")
    problems = location_problems(value)
    if problems:
        raise EventValidationError.of([(path, problem) for problem in problems])
    try:
        return check_location(value, zip_destination=zip_destination)
    except InputError as exc:
        raise EventValidationError(path, str(exc)) from None


def _include(value: Any, path: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(p, str) for p in value):
        raise EventValidationError(path, "must be a list of glob strings, e.g. ['*.safetensors']")
    if not value:  # likely a caller's empty selection, not a wish for everything
        raise EventValidationError(
            path, "is an empty list, which selects nothing; omit it to package every member"
        )
    problems: list[tuple[str, str]] = []
    for index, pattern in enumerate(value):
        problem = "must not be empty" if not pattern.strip() else text_problem(pattern)
        if problem is not None:
            problems.append((f"{path}[{index}]", problem))
    if problems:
        raise EventValidationError.of(problems)
    return tuple(value)


def _compression(value: Any, path: str) -> Compression:
    if value is None:
        return "auto"
    if value not in COMPRESSIONS:
        raise EventValidationError(
            path, f"must be one of {', '.join(COMPRESSIONS)}; got {shown_repr(value)}"
        )
    return value  # type: ignore[no-any-return]


def _level(value: Any, path: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 9:
        raise EventValidationError(
            path, f"must be a whole number from 0 to 9; got {shown_repr(value)}"
        )
    return value


def _name_encoding(value: Any, path: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise EventValidationError(path, f"must be a codec name such as 'latin-1'; got {value!r}")
    try:
        return check_name_encoding(value)
    except InputError as exc:
        raise EventValidationError(path, str(exc)) from None


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
        problem = f"unknown field; allowed fields are {', '.join(sorted(allowed))}"
        raise EventValidationError.of([(f"{path}{shown(name)}", problem) for name in extra])


def parse_target(raw: Any, path: str) -> Target:
    """Validate one target object."""
    if not isinstance(raw, Mapping):
        raise EventValidationError(path, "must be an object with source and destination")
    # every field is checked first, so that one error names all the invalid ones
    found = _Problems()
    found.check(_unknown, raw.keys(), TARGET_KEYS, f"{path}.")
    for required in ("source", "destination"):
        if required not in raw:
            found.add(f"{path}.{required}", "is required")
    source = found.check(_location, raw.get("source"), f"{path}.source", zip_destination=False)
    destination = found.check(
        _location, raw.get("destination"), f"{path}.destination", zip_destination=True
    )
    if source is not None and destination is not None and same_location(source, destination):
        found.add(
            f"{path}.destination",
            f"is the source ({shown_repr(source)}); writing it would destroy the archive "
            "being read: choose another destination",
        )
    include = found.check(_include, raw.get("include"), f"{path}.include")
    compression = found.check(_compression, raw.get("compression"), f"{path}.compression")
    level = found.check(_level, raw.get("level"), f"{path}.level")
    name_encoding = found.check(_name_encoding, raw.get("name_encoding"), f"{path}.name_encoding")
    if_exists = found.check(_if_exists, raw.get("if_exists"), f"{path}.if_exists")
    found.raise_any()
    assert source is not None and destination is not None and include is not None
    assert compression is not None and if_exists is not None  # level None: auto
    return Target(
        source=source,
        destination=destination,
        include=include,
        compression=compression,
        level=level,
        name_encoding=name_encoding,
        if_exists=if_exists,
    )


def parse_event(raw: Any, *, default_strategy: str = "auto") -> PackagingEvent:
    """Validate an event; raises one EventValidationError naming every bad field."""
    if not isinstance(raw, Mapping):
        raise EventValidationError("event", "must be a JSON object with a 'targets' list")
    found = _Problems()
    found.check(_unknown, raw.keys(), EVENT_KEYS, "")
    targets = raw.get("targets")
    parsed: list[Target] = []
    if not isinstance(targets, list) or not targets:
        found.add("targets", "must be a non-empty list of target objects")
    elif len(targets) > MAX_TARGETS:
        found.add(
            "targets",
            f"has {len(targets)} entries; at most {MAX_TARGETS} (fan out with the "
            "state machine instead)",
        )
    else:
        for i, t in enumerate(targets):
            target = found.check(parse_target, t, f"targets[{i}]")
            if target is not None:
                _check_against_others(target, i, parsed, found)
                parsed.append(target)
    strategy = raw.get("strategy", default_strategy)
    try:
        choice = StrategyChoice(strategy)
    except (ValueError, TypeError):
        found.add("strategy", f"must be one of auto, stream, extract; got {shown_repr(strategy)}")
    found.raise_any()
    return PackagingEvent(tuple(parsed), choice)


def _check_against_others(
    target: Target, index: int, earlier: list[Target], found: _Problems
) -> None:
    """A destination written twice, or one target's destination another's source: the
    outcome would depend on the order the targets run in."""
    for other_index, other in enumerate(earlier):
        where = f"targets[{other_index}]"
        if same_location(other.destination, target.destination):
            found.add(
                f"targets[{index}].destination",
                f"is also {where}.destination; one would overwrite the other: give each "
                "target its own destination",
            )
        if same_location(other.source, target.destination):
            found.add(
                f"targets[{index}].destination",
                f"is {where}.source; writing it would replace an archive this event reads",
            )
        if same_location(other.destination, target.source):
            found.add(
                f"targets[{index}].source",
                f"is {where}.destination, which this event writes; package it in a later event",
            )


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
    """``{"type": ..., "message": ...}`` for a result; the message on one line, at most
    about MESSAGE_LIMIT characters."""
    return {"type": type(exc).__name__, "message": one_line(str(exc))}
