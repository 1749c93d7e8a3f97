"""The Telemetry API (``2022-07-01``): a subscription, and the HTTP listener it feeds.

From AWS's published document ("Lambda Telemetry API",
https://docs.aws.amazon.com/lambda/latest/dg/telemetry-api-reference.html):
``PUT /2022-07-01/telemetry`` with the ``Lambda-Extension-Identifier`` header and
``{"schemaVersion": "2022-12-13", "types": ["platform"], "buffering": {...},
"destination": {"protocol": "HTTP", "URI": "http://sandbox.localdomain:<port>"}}``;
Lambda then POSTs JSON arrays of events (``{"time", "type", "record"}``) to the URI. In
the sandbox the listener binds the host name ``sandbox.localdomain`` (the document's
destination host); ``TMPWARDEN_EXTENSION_HOST`` overrides it (a local emulator: 127.0.0.1).

Buffering: the smallest the document allows (its ranges: ``timeoutMs`` 25 to 30,000,
``maxItems`` 1,000 to 10,000, ``maxBytes`` 262,144 to 1,048,576), so
``platform.runtimeDone`` / ``platform.report`` arrive within 25 ms: the extension only
subscribes to ``platform`` events, a few per invocation, so a batch never fills.
"""

from __future__ import annotations

import datetime
import http.client
import json
import math
import sys
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

from monitor.config import DEFAULT_EXTENSION_HOST
from monitor.extension.api import ID_HEADER, ExtensionsApiError

TELEMETRY_PATH = "/2022-07-01/telemetry"
SCHEMA_VERSION = "2022-12-13"
BUFFERING = {"maxItems": 1_000, "maxBytes": 262_144, "timeoutMs": 25}
DEFAULT_HOST = DEFAULT_EXTENSION_HOST
MAX_BATCH_BYTES = 1_048_576
"""The largest batch body read (the document's maxBytes ceiling); larger is refused."""

MAX_MEMORY_MB = 10**7
"""A memory figure above this (MB) is no figure (Lambda's largest is 10,240 MB)."""
PLATFORM_KINDS = ("platform.runtimeDone", "platform.report")

EventSink = Callable[[Mapping[str, Any]], None]


@dataclass(frozen=True, slots=True)
class PlatformRecord:
    """The fields of a ``platform.runtimeDone`` / ``platform.report`` event the incident
    record uses; each is None when absent or not of its documented type (a string; a
    finite number of MB from 0 to :data:`MAX_MEMORY_MB`; ``time`` ISO 8601 -> epoch s)."""

    kind: str
    request_id: str | None
    status: str | None
    error_type: str | None
    max_memory_used_mb: float | None
    memory_size_mb: float | None
    time: float | None


def parse_platform_event(event: object) -> PlatformRecord | None:
    """The record of a platform event the extension counts, None for any other value
    (another type, a record that is not an object). Never raises."""
    if not isinstance(event, Mapping):
        return None
    kind, record = event.get("type"), event.get("record")
    if kind not in PLATFORM_KINDS or not isinstance(record, Mapping):
        return None
    found = record.get("metrics")
    metrics: Mapping[str, object] = found if isinstance(found, Mapping) else {}
    return PlatformRecord(
        kind=str(kind),
        request_id=_text(record.get("requestId")),
        status=_text(record.get("status")),
        error_type=_text(record.get("errorType")),
        max_memory_used_mb=_megabytes(metrics.get("maxMemoryUsedMB")),
        memory_size_mb=_megabytes(metrics.get("memorySizeMB")),
        time=event_time(event),
    )


def event_time(event: Mapping[str, Any]) -> float | None:
    """A Telemetry API event's ``time`` (ISO 8601) as epoch seconds, None if absent or bad."""
    text = event.get("time")
    if not isinstance(text, str) or len(text) > 64:
        return None
    try:
        return datetime.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except (ValueError, OverflowError, OSError):
        return None


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _megabytes(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = float(value)
    except OverflowError:  # an int beyond any float
        return None
    return number if math.isfinite(number) and 0 <= number <= MAX_MEMORY_MB else None


class TelemetryListener:
    """An HTTP server on its own daemon thread; ``sink`` gets each event of each batch."""

    def __init__(self, host: str, port: int, sink: EventSink) -> None:
        deliver = sink

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                text = self.headers.get("Content-Length") or "0"
                length = int(text) if text.isdigit() and len(text) < 10 else -1
                if not 0 <= length <= MAX_BATCH_BYTES:
                    self.send_response(413)
                    self.end_headers()
                    return
                body = self.rfile.read(length)
                self.send_response(200)
                self.end_headers()
                try:
                    batch = json.loads(body)
                except (ValueError, RecursionError):
                    return
                for event in batch if isinstance(batch, list) else [batch]:
                    if isinstance(event, dict):
                        try:
                            deliver(event)
                        except Exception as exc:  # one event's fault; the next may be fine
                            sys.stderr.write(f"tmpwarden-monitor: event skipped: {exc!r}\n")

            def log_message(self, format: str, *args: Any) -> None:
                pass  # one line per batch would fill the function's log group

        self.server = HTTPServer((host, port), Handler)
        self.host = host
        self.port = int(self.server.server_address[1])
        self._thread = threading.Thread(
            target=self.server.serve_forever,
            kwargs={"poll_interval": 3600},
            name="tmpwarden-telemetry",
            daemon=True,
        )

    @property
    def uri(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop taking batches. The serving thread waits in ``select`` without a poll
        (no wakeups while idle), so it is not joined: it dies with the process, which
        exits right after SHUTDOWN."""
        self.server.socket.close()


def subscribe(runtime_api: str, extension_id: str, uri: str) -> None:
    """Subscribe to ``platform`` events, delivered to ``uri``; ExtensionsApiError if refused."""
    host, _, port = runtime_api.rpartition(":")
    body = {
        "schemaVersion": SCHEMA_VERSION,
        "types": ["platform"],
        "buffering": BUFFERING,
        "destination": {"protocol": "HTTP", "URI": uri},
    }
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        connection.request(
            "PUT",
            TELEMETRY_PATH,
            json.dumps(body).encode(),
            {ID_HEADER: extension_id, "Content-Type": "application/json"},
        )
        response = connection.getresponse()
        text = response.read()
    except OSError as exc:
        raise ExtensionsApiError(f"the Telemetry API subscription failed: {exc}") from exc
    finally:
        connection.close()
    if response.status != 200:
        raise ExtensionsApiError(
            f"the Telemetry API refused the subscription: HTTP {response.status} {text[:200]!r}"
        )
