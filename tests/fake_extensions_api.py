"""A tiny fake of Lambda's Extensions and Telemetry APIs on 127.0.0.1, for the extension's
end-to-end tests: it registers, hands out queued events from ``/event/next``, records the
telemetry subscription and error reports, and posts telemetry batches to the subscriber.
Written from AWS's published API documents (see monitor/extension/api.py, telemetry.py).
"""

from __future__ import annotations

import json
import queue
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

EXTENSION_ID = "ext-0123-4567"


class FakeExtensionsApi:
    """``address`` is what AWS_LAMBDA_RUNTIME_API holds; queue events with :meth:`send`."""

    def __init__(self) -> None:
        self.events: queue.Queue[dict[str, Any]] = queue.Queue()
        self.registered: dict[str, Any] = {}
        self.subscription: dict[str, Any] = {}
        self.errors: list[tuple[str, dict[str, str], dict[str, Any]]] = []
        self.handed_out: list[tuple[float, dict[str, Any]]] = []
        self.subscribed = threading.Event()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def _body(self) -> dict[str, Any]:
                length = int(self.headers.get("Content-Length") or 0)
                return json.loads(self.rfile.read(length)) if length else {}

            def _reply(self, status: int, body: object, headers: dict[str, str]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self) -> None:
                body = self._body()
                if self.path == "/2020-01-01/extension/register":
                    fake.registered = {
                        "name": self.headers.get("Lambda-Extension-Name"),
                        "events": body.get("events"),
                    }
                    ident = {"Lambda-Extension-Identifier": EXTENSION_ID}
                    self._reply(200, {"functionName": "fn", "handler": "h"}, ident)
                elif self.path.endswith("/error"):
                    fake.errors.append((self.path, dict(self.headers), body))
                    self._reply(202, {"status": "OK"}, {})
                else:
                    self._reply(404, {}, {})

            def do_PUT(self) -> None:
                ok = self.headers.get("Lambda-Extension-Identifier") == EXTENSION_ID
                if self.path == "/2022-07-01/telemetry" and ok:
                    fake.subscription = self._body()
                    fake.subscribed.set()
                    self._reply(200, "OK", {})
                else:
                    self._reply(400, {}, {})

            def do_GET(self) -> None:
                if self.path != "/2020-01-01/extension/event/next":
                    self._reply(404, {}, {})
                    return
                event = fake.events.get()
                fake.handed_out.append((time.monotonic(), event))
                self._reply(200, event, {"Lambda-Extension-Event-Identifier": "e"})

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.address = f"127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def send(self, event: dict[str, Any]) -> None:
        self.events.put(event)

    def invoke(self, request_id: str) -> None:
        deadline = int(time.time() * 1000) + 3000
        self.send({"eventType": "INVOKE", "requestId": request_id, "deadlineMs": deadline})

    def shutdown_event(self, reason: str) -> None:
        deadline = int(time.time() * 1000) + 2000
        self.send({"eventType": "SHUTDOWN", "shutdownReason": reason, "deadlineMs": deadline})

    def post_telemetry(self, batch: list[dict[str, Any]]) -> None:
        """POST ``batch`` to the subscriber's destination, as Lambda does."""
        uri = self.subscription["destination"]["URI"]
        request = urllib.request.Request(
            uri, json.dumps(batch).encode(), {"Content-Type": "application/json"}, method="POST"
        )
        with urllib.request.urlopen(request, timeout=5) as response:
            assert response.status == 200

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
