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

import http.client
import json
import threading
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

from monitor.extension.api import ID_HEADER, ExtensionsApiError

TELEMETRY_PATH = "/2022-07-01/telemetry"
SCHEMA_VERSION = "2022-12-13"
BUFFERING = {"maxItems": 1_000, "maxBytes": 262_144, "timeoutMs": 25}
DEFAULT_HOST = "sandbox.localdomain"
MAX_BATCH_BYTES = 1_048_576
"""The largest batch body read (the document's maxBytes ceiling); larger is refused."""

EventSink = Callable[[Mapping[str, Any]], None]


class TelemetryListener:
    """An HTTP server on its own daemon thread; ``sink`` gets each event of each batch."""

    def __init__(self, host: str, port: int, sink: EventSink) -> None:
        deliver = sink

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if length > MAX_BATCH_BYTES:
                    self.send_response(413)
                    self.end_headers()
                    return
                body = self.rfile.read(length)
                self.send_response(200)
                self.end_headers()
                try:
                    batch = json.loads(body)
                except ValueError:
                    return
                for event in batch if isinstance(batch, list) else [batch]:
                    if isinstance(event, dict):
                        deliver(event)

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
