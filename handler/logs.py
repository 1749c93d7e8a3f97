"""Structured JSON log lines through the standard ``logging`` module.

Every line carries the invocation's context (request id, target, phase, strategy,
attempt) from a context variable, so the post-incident queries can slice by any of
them. Level from ``TMPWARDEN_LOG_LEVEL``.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import sys
import time
from collections.abc import Iterator
from typing import Any

from handler.validation import shown
from monitor.units import KiB

LOGGER_NAME = "tmpwarden"
_context: contextvars.ContextVar[dict[str, Any]] = contextvars.ContextVar(
    "tmpwarden_log_context",
    default={},  # noqa: B039 - never mutated, always replaced
)
_RESERVED = frozenset(vars(logging.makeLogRecord({})))
TRACEBACK_LIMIT = 16 * KiB
"""Characters of a traceback a line keeps; every other string field keeps DISPLAY_LIMIT."""


def _bounded(value: Any) -> Any:
    """``value`` with every string in it shortened for display (user values echo 1 KiB)."""
    if isinstance(value, str):
        return shown(value)
    if isinstance(value, dict):
        return {shown(str(k)): _bounded(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_bounded(v) for v in value]
    if isinstance(value, bool | int | float) or value is None:
        return value
    return shown(str(value))


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, message, context, extra fields; every string
    in it at most about 1 KiB (``handler.validation.shown``), a traceback 16 KiB."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            **_context.get(),
        }
        for key, value in vars(record).items():
            if key not in _RESERVED and not key.startswith("_"):
                entry[key] = value
        bounded: dict[str, Any] = _bounded(entry)
        if record.exc_info and record.exc_info[0] is not None:
            bounded["exception"] = shown(self.formatException(record.exc_info), TRACEBACK_LIMIT)
        return json.dumps(bounded)


class _StdoutHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stdout`` is at the time (Lambda's runtime may replace it)."""

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stdout
        super().emit(record)


def configure(level: str = "INFO") -> logging.Logger:
    """Send ``tmpwarden.*`` logs to stdout as JSON lines (idempotent)."""
    logger = logging.getLogger(LOGGER_NAME)
    if not any(getattr(h, "_tmpwarden", False) for h in logger.handlers):
        handler = _StdoutHandler(sys.stdout)
        handler.setFormatter(JsonFormatter())
        handler._tmpwarden = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
        logger.propagate = False
    logger.setLevel(level.upper())
    return logger


@contextlib.contextmanager
def log_context(**fields: Any) -> Iterator[None]:
    """Add fields to every log line written inside the block."""
    token = _context.set({**_context.get(), **{k: v for k, v in fields.items() if v is not None}})
    try:
        yield
    finally:
        _context.reset(token)
