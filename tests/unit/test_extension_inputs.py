"""What the extension reads from outside -- Telemetry API batches, Extensions API
responses -- is bounded in size and never raises out of its loop (review 2, item 6,
whole kind; the state files are in test_shared_state_safety.py)."""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections.abc import Iterator, Mapping
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import pytest

from monitor.extension.api import MAX_RESPONSE_BYTES, ExtensionsClient
from monitor.extension.telemetry import TelemetryListener


@pytest.fixture
def listener() -> Iterator[tuple[TelemetryListener, list[Mapping[str, Any]]]]:
    got: list[Mapping[str, Any]] = []

    def sink(event: Mapping[str, Any]) -> None:
        if event.get("type") == "boom":
            raise ValueError("a sink that fails on one event")
        got.append(event)

    made = TelemetryListener("127.0.0.1", 0, sink)
    made.start()
    yield made, got
    made.stop()


def post(port: int, body: bytes, length: str | None = None) -> int:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    connection.putrequest("POST", "/")
    connection.putheader("Content-Length", str(len(body)) if length is None else length)
    connection.endheaders(body)
    status = connection.getresponse().status
    connection.close()
    return status


def delivered(got: list[Mapping[str, Any]], count: int) -> None:
    """Wait for the listener's thread (it answers 200 before it delivers)."""
    deadline = time.monotonic() + 10
    while len(got) < count and time.monotonic() < deadline:
        time.sleep(0.01)


@pytest.mark.parametrize("length", ["-1", "abc", "99999999999", str(2 << 20)])
def test_a_batch_of_no_allowed_length_is_refused_unread(
    listener: tuple[TelemetryListener, list[Mapping[str, Any]]], length: str
) -> None:
    made, got = listener
    assert post(made.port, b"[]", length) == 413
    assert post(made.port, b'[{"type": "platform.report"}]') == 200  # still serving
    delivered(got, 1)
    assert got == [{"type": "platform.report"}]


def test_a_deep_or_failing_batch_skips_only_itself(
    listener: tuple[TelemetryListener, list[Mapping[str, Any]]],
) -> None:
    made, got = listener
    assert post(made.port, b"[" * 100_000 + b"]" * 100_000) == 200
    assert post(made.port, b'[{"type": "boom"}, {"type": "next"}]') == 200
    delivered(got, 1)
    assert got == [{"type": "next"}]


class _Api(BaseHTTPRequestHandler):
    body = b""

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.mark.parametrize(
    ("body", "kind"),
    [
        (b"not json", ""),
        (b"[" * 100_000, ""),
        (b"[1, 2]", ""),
        (json.dumps({"eventType": "INVOKE", "requestId": [1], "deadlineMs": 1e400}), "INVOKE"),
        (b'{"eventType":"SHUTDOWN","deadlineMs":NaN}' + b" " * MAX_RESPONSE_BYTES, ""),
    ],
    ids=["not-json", "deep", "a-list", "odd-fields", "over-the-cap"],
)
def test_an_odd_event_is_an_event_of_no_known_kind(body: str | bytes, kind: str) -> None:
    handler = type("Api", (_Api,), {"body": body.encode() if isinstance(body, str) else body})
    server = HTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        client = ExtensionsClient(f"127.0.0.1:{server.server_address[1]}", "tmpwarden-monitor")
        client.extension_id = "id"
        event = client.next_event()
    finally:
        server.shutdown()
        server.server_close()
    assert event.kind == kind  # the loop ignores "" and waits for the next event
    assert event.request_id is None and event.deadline_ms is None
