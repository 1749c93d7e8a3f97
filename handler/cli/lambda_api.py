"""Lambda's Extensions API and Telemetry API on 127.0.0.1, for the local sandbox.

From AWS's published API documents (AWS Lambda Developer Guide):

- Extensions API (``runtimes-extensions-api.html``), version ``2020-01-01``:
  ``POST /2020-01-01/extension/register`` (header ``Lambda-Extension-Name``, body
  ``{"events": ["INVOKE", "SHUTDOWN"]}``) answers 200 with the header
  ``Lambda-Extension-Identifier`` and ``{functionName, functionVersion, handler}``;
  ``GET /2020-01-01/extension/event/next`` long-polls for the next event, ``INVOKE``
  (``requestId``, ``deadlineMs``, ``invokedFunctionArn``, ``tracing``) or ``SHUTDOWN``
  (``shutdownReason`` ``spindown`` | ``timeout`` | ``failure``, ``deadlineMs``), with the
  header ``Lambda-Extension-Event-Identifier``; ``POST .../extension/init/error`` and
  ``.../extension/exit/error`` (header ``Lambda-Extension-Function-Error-Type``) answer 202.
- Telemetry API (``telemetry-api-reference.html``): ``PUT /2022-07-01/telemetry`` with
  ``schemaVersion``, ``destination`` (``protocol`` ``HTTP``, ``URI``), ``types`` and
  ``buffering`` (``maxItems`` 1,000..10,000, ``maxBytes``, ``timeoutMs`` 25..30,000,
  default 1,000) answers 200; events are then POSTed to the URI as JSON arrays of
  ``{"time", "type", "record"}`` (``telemetry-schema-reference.html``). Events of the
  init phase are buffered and delivered to subscribers that come during init, as
  Lambda does. Only the ``HTTP`` protocol is emulated (``TCP`` is refused with 400).

Deviation: the destination is ``127.0.0.1`` (or ``localhost``) instead of
``sandbox.localdomain``, which does not resolve off Lambda; extensions learn it from
``TMPWARDEN_EXTENSION_HOST``.
"""

from __future__ import annotations

import json
import queue
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

EXTENSIONS_API = "/2020-01-01/extension"
TELEMETRY_API = "/2022-07-01/telemetry"
SCHEMA_VERSIONS = ("2022-07-01", "2022-12-13", "2025-01-29")
TELEMETRY_TYPES = ("platform", "function", "extension")
LOCAL_HOSTS = ("127.0.0.1", "localhost")
DEFAULT_BUFFER_TIMEOUT_MS = 1000
MIN_BUFFER_TIMEOUT_MS = 25
DELIVERY_TIMEOUT_S = 2.0


def telemetry_time(epoch_s: float | None = None) -> str:
    """An event's ``time``: ISO 8601 UTC with milliseconds, as in the schema reference."""
    moment = datetime.fromtimestamp(time.time() if epoch_s is None else epoch_s, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


@dataclass(slots=True)
class Extension:
    """One registered external extension and the events waiting for it."""

    name: str
    identifier: str
    events: frozenset[str]
    inbox: queue.Queue[dict[str, Any] | None] = field(default_factory=queue.Queue)
    waiting: bool = False
    next_calls: int = 0
    error_type: str | None = None
    delivered: list[str] = field(default_factory=list)


@dataclass(slots=True)
class Subscriber:
    """One Telemetry API subscription: where to POST which types, how often."""

    extension: str
    uri: str
    types: frozenset[str]
    timeout_s: float
    max_items: int
    pending: list[dict[str, Any]] = field(default_factory=list)
    sent: int = 0
    failures: int = 0


class LambdaApi:
    """The Extensions and Telemetry APIs of one local execution environment.

    ``start()`` binds 127.0.0.1 on a free port (``address`` is ``HOST:PORT``, the value
    of ``AWS_LAMBDA_RUNTIME_API``); ``emit`` records a platform event and hands it to
    the subscribers; ``send`` queues an INVOKE or SHUTDOWN event for the extensions that
    registered for it; ``flush`` waits until every subscriber has been sent all events.
    """

    def __init__(self, function_name: str, memory_mb: int, handler: str) -> None:
        self.function_name = function_name
        self.memory_mb = memory_mb
        self.handler = handler
        self.extensions: dict[str, Extension] = {}
        self.subscribers: list[Subscriber] = []
        self.events: list[dict[str, Any]] = []
        self.init_error: tuple[str, str] | None = None
        self.exit_errors: list[tuple[str, str]] = []
        self.initializing = True
        self.changed = threading.Condition()
        self._closed = False
        self._threads: list[threading.Thread] = []
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._server.daemon_threads = True
        self._server.api = self  # type: ignore[attr-defined]

    @property
    def address(self) -> str:
        host, port = self._server.server_address[:2]
        return f"{host!s}:{port}"

    def start(self) -> None:
        thread = threading.Thread(target=self._server.serve_forever, name="lambda-api", daemon=True)
        thread.start()
        self._threads.append(thread)

    def ready(self, expected: int) -> bool:
        """All ``expected`` extensions registered and each waits in ``event/next``
        (Lambda's init phase ends when every extension has called ``next``)."""
        with self.changed:
            return len(self.extensions) >= expected and all(
                ext.next_calls > 0 for ext in self.extensions.values()
            )

    def emit(self, kind: str, record: Mapping[str, Any]) -> None:
        """Record a ``platform.*`` event now and queue it for the subscribers."""
        event = {"time": telemetry_time(), "type": kind, "record": dict(record)}
        with self.changed:
            self.events.append(event)
            for subscriber in self.subscribers:
                if "platform" in subscriber.types:
                    subscriber.pending.append(event)
            self.changed.notify_all()

    def send(self, event: Mapping[str, Any]) -> list[str]:
        """Queue ``event`` (``eventType`` INVOKE or SHUTDOWN) for each extension that
        registered for it; returns their names."""
        names = []
        with self.changed:
            for ext in self.extensions.values():
                if event["eventType"] in ext.events:
                    ext.inbox.put(dict(event))
                    names.append(ext.name)
        return names

    def flush(self, timeout: float) -> bool:
        """Wait until every subscriber has been sent every event (True) or ``timeout``."""
        deadline = time.monotonic() + timeout
        with self.changed:
            self.changed.notify_all()
            while any(s.pending for s in self.subscribers):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.changed.wait(left)
        return True

    def close(self) -> None:
        """Stop serving; long polls still open are answered with an error."""
        with self.changed:
            self._closed = True
            for ext in self.extensions.values():
                ext.inbox.put(None)
            self.changed.notify_all()
        self._server.shutdown()
        self._server.server_close()
        for thread in self._threads:
            thread.join(timeout=DELIVERY_TIMEOUT_S + 1)

    # -- called by the request handler -------------------------------------------------

    def register(self, name: str, events: list[str]) -> Extension:
        with self.changed:
            ext = Extension(name, str(uuid.uuid4()), frozenset(events))
            self.extensions[ext.identifier] = ext
            self.changed.notify_all()
            return ext

    def subscribe(self, ext: Extension, body: Mapping[str, Any]) -> Subscriber:
        destination = body.get("destination") or {}
        buffering = body.get("buffering") or {}
        timeout_ms = max(
            int(buffering.get("timeoutMs", DEFAULT_BUFFER_TIMEOUT_MS)), MIN_BUFFER_TIMEOUT_MS
        )
        subscriber = Subscriber(
            extension=ext.name,
            uri=str(destination["URI"]),
            types=frozenset(body["types"]),
            timeout_s=timeout_ms / 1000,
            max_items=int(buffering.get("maxItems", 1000)),
        )
        with self.changed:
            if "platform" in subscriber.types:
                subscriber.pending.extend(self.events)  # the init phase's events, buffered
            self.subscribers.append(subscriber)
        thread = threading.Thread(
            target=self._deliver, args=(subscriber,), name=f"telemetry-{ext.name}", daemon=True
        )
        thread.start()
        self._threads.append(thread)
        self.emit(
            "platform.telemetrySubscription",
            {"name": ext.name, "state": "Subscribed", "types": sorted(subscriber.types)},
        )
        return subscriber

    def _deliver(self, subscriber: Subscriber) -> None:
        """POST the subscriber's events as they come, up to ``maxItems`` a batch (Lambda
        may hold them up to ``timeoutMs``; sooner is within the contract, and the
        invocation's report then reaches the extensions before SHUTDOWN, as in Lambda)."""
        while True:
            with self.changed:
                if not subscriber.pending and not self._closed:
                    self.changed.wait(subscriber.timeout_s)
                if not subscriber.pending:
                    if self._closed:
                        return
                    continue
                batch = subscriber.pending[: subscriber.max_items]
            _post(subscriber, batch)
            with self.changed:
                del subscriber.pending[: len(batch)]
                subscriber.sent += len(batch)
                self.changed.notify_all()


def _post(subscriber: Subscriber, batch: list[dict[str, Any]]) -> None:
    request = urllib.request.Request(
        subscriber.uri,
        data=json.dumps(batch).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=DELIVERY_TIMEOUT_S) as answer:
            answer.read()
    except (OSError, urllib.error.URLError):
        subscriber.failures += 1  # Lambda drops what a subscriber does not take


class _Handler(BaseHTTPRequestHandler):
    server_version = "tmpwarden-local-lambda"
    protocol_version = "HTTP/1.1"

    @property
    def api(self) -> LambdaApi:
        return self.server.api  # type: ignore[attr-defined, no-any-return]

    def log_message(self, format: str, *args: Any) -> None:
        return  # quiet: the sandbox's log is the function's

    def _body(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        return json.loads(raw) if raw.strip() else {}

    def _answer(self, status: int, body: Any, headers: Mapping[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    def _error(self, status: int, error_type: str, message: str) -> None:
        self._answer(status, {"errorType": error_type, "errorMessage": message})

    def _extension(self) -> Extension | None:
        identifier = self.headers.get("Lambda-Extension-Identifier", "")
        ext = self.api.extensions.get(identifier)
        if ext is None:
            self._error(403, "Extension.Unregistered", f"no extension with id {identifier!r}")
        return ext

    def do_POST(self) -> None:
        path = self.path.rstrip("/")
        try:
            body = self._body()
        except ValueError:
            self._error(400, "InvalidRequest", "the body is not JSON")
            return
        if path == f"{EXTENSIONS_API}/register":
            self._register(body)
        elif path in (f"{EXTENSIONS_API}/init/error", f"{EXTENSIONS_API}/exit/error"):
            ext = self._extension()
            if ext is None:
                return
            error_type = self.headers.get("Lambda-Extension-Function-Error-Type", "Unknown")
            ext.error_type = error_type
            with self.api.changed:
                if path.endswith("init/error"):
                    self.api.init_error = (ext.name, error_type)
                else:
                    self.api.exit_errors.append((ext.name, error_type))
                self.api.changed.notify_all()
            self._answer(202, {"status": "OK"})
        else:
            self._error(404, "NotFound", f"no POST {self.path}")

    def _register(self, body: Any) -> None:
        name = self.headers.get("Lambda-Extension-Name", "")
        events = body.get("events", []) if isinstance(body, dict) else None
        if not name or not isinstance(events, list) or not set(events) <= {"INVOKE", "SHUTDOWN"}:
            self._error(
                400, "InvalidRequest", "needs Lambda-Extension-Name and events ⊆ INVOKE, SHUTDOWN"
            )
            return
        if not self.api.initializing:
            self._error(403, "Extension.InitPhaseOver", "registration is open only during init")
            return
        ext = self.api.register(name, events)
        self._answer(
            200,
            {
                "functionName": self.api.function_name,
                "functionVersion": "$LATEST",
                "handler": self.api.handler,
            },
            {"Lambda-Extension-Identifier": ext.identifier},
        )

    def do_GET(self) -> None:
        if self.path.rstrip("/") != f"{EXTENSIONS_API}/event/next":
            self._error(404, "NotFound", f"no GET {self.path}")
            return
        ext = self._extension()
        if ext is None:
            return
        with self.api.changed:
            ext.next_calls += 1
            ext.waiting = True
            self.api.changed.notify_all()
        event = ext.inbox.get()
        with self.api.changed:
            ext.waiting = False
        if event is None:
            self._error(500, "Sandbox.Closed", "the execution environment is gone")
            return
        ext.delivered.append(str(event["eventType"]))
        self._answer(200, event, {"Lambda-Extension-Event-Identifier": str(uuid.uuid4())})

    def do_PUT(self) -> None:
        if self.path.rstrip("/") != TELEMETRY_API:
            self._error(404, "NotFound", f"no PUT {self.path}")
            return
        ext = self._extension()
        if ext is None:
            return
        try:
            body = self._body()
        except ValueError:
            self._error(400, "InvalidRequest", "the body is not JSON")
            return
        problem = subscription_problem(body)
        if problem:
            self._error(400, "ValidationError", problem)
            return
        self.api.subscribe(ext, body)
        self._answer(200, "OK")


def subscription_problem(body: Any) -> str | None:
    """What is wrong with a Telemetry API subscription body, or None."""
    if not isinstance(body, dict):
        return "the subscription must be a JSON object"
    if body.get("schemaVersion") not in SCHEMA_VERSIONS:
        return f"schemaVersion must be one of {', '.join(SCHEMA_VERSIONS)}"
    destination = body.get("destination")
    if not isinstance(destination, dict) or destination.get("protocol") != "HTTP":
        return "destination.protocol must be HTTP (TCP is not emulated here)"
    uri = urlsplit(str(destination.get("URI", "")))
    if uri.scheme != "http" or uri.hostname not in LOCAL_HOSTS:
        return "destination.URI must be http://127.0.0.1:PORT/... (TMPWARDEN_EXTENSION_HOST)"
    types = body.get("types")
    if not isinstance(types, list) or not types or not set(types) <= set(TELEMETRY_TYPES):
        return f"types must be a non-empty list of {', '.join(TELEMETRY_TYPES)}"
    buffering = body.get("buffering", {})
    if not isinstance(buffering, dict) or not all(isinstance(v, int) for v in buffering.values()):
        return "buffering must map maxItems, maxBytes and timeoutMs to integers"
    return None
