"""Log text -> tmpwarden's EMF documents: local captures and CloudWatch Logs exports.

Pure (no matplotlib). A document is any JSON object carrying the record-kind property
(:data:`monitor.records.RECORD_KIND`); everything else in the log is skipped.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from monitor.records import RECORD_KIND

MAX_JSON_STARTS = 4
"""How many ``{`` of one line are tried as the start of its JSON (prefixes rarely hold any)."""
MAX_NESTING = 3
"""How deep ``message`` fields are unwrapped (a CloudWatch event holding a prefixed line)."""
_DECODER = json.JSONDecoder()


def iter_documents(text: str) -> Iterator[dict[str, Any]]:
    """Every tmpwarden EMF document in a log's text, in order; everything else skipped.

    Accepts one JSON object per line (with or without a prefix such as a timestamp),
    CloudWatch Logs events whose ``message`` holds the line, and a whole
    ``aws logs filter-log-events`` document (``{"events": [...]}``).
    """
    if RECORD_KIND not in text:
        return
    whole = _whole_document(text)
    if whole is not None:
        for item in whole:
            yield from _unwrap(item, 0)
        return
    for line in text.splitlines():
        if RECORD_KIND in line:  # cheap test first: exports are mostly other lines
            yield from _unwrap(_json_in(line), 0)


def _whole_document(text: str) -> list[Any] | None:
    """The items of a file that is one JSON document (an events export), else None."""
    stripped = text.strip()
    if not stripped.startswith(("{", "[")):
        return None
    try:
        value = json.loads(stripped)
    except (ValueError, RecursionError):
        return None  # JSON lines, or not JSON at all
    if isinstance(value, dict):
        events = value.get("events")
        return events if isinstance(events, list) else [value]
    return value if isinstance(value, list) else None


def _json_in(line: str) -> Any:
    """The JSON object a line holds after any prefix, else None."""
    start = line.find("{")
    for _ in range(MAX_JSON_STARTS):
        if start < 0:
            return None
        try:
            value, _end = _DECODER.raw_decode(line, start)
        except (ValueError, RecursionError):
            start = line.find("{", start + 1)
            continue
        return value if isinstance(value, dict) else None
    return None


def _unwrap(value: Any, depth: int) -> Iterator[dict[str, Any]]:
    """A tmpwarden document itself, or the one inside a log event's ``message``."""
    if not isinstance(value, dict) or depth > MAX_NESTING:
        return
    if isinstance(value.get(RECORD_KIND), str):
        yield value
        return
    message = value.get("message")
    if isinstance(message, str) and RECORD_KIND in message:
        yield from _unwrap(_json_in(message), depth + 1)
    elif isinstance(message, dict):
        yield from _unwrap(message, depth + 1)
