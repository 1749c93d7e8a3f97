"""A client of the Lambda Extensions API (``2020-01-01``), standard library only.

From AWS's published document ("Lambda Extensions API",
https://docs.aws.amazon.com/lambda/latest/dg/runtimes-extensions-api.html):

* ``POST /2020-01-01/extension/register`` with the header ``Lambda-Extension-Name`` (the
  executable's file name) and ``{"events": ["INVOKE", "SHUTDOWN"]}``; the response's
  ``Lambda-Extension-Identifier`` header names the extension in every later call;
* ``GET /2020-01-01/extension/event/next`` blocks until the next event: ``INVOKE``
  (``requestId``, ``deadlineMs``, ...) or ``SHUTDOWN`` (``shutdownReason``: spindown,
  timeout or failure; ``deadlineMs``);
* ``POST /2020-01-01/extension/init/error`` and ``.../exit/error`` with the header
  ``Lambda-Extension-Function-Error-Type`` (``Extension.<Reason>``) and
  ``{"errorMessage", "errorType", "stackTrace"}``: the extension failed to start or
  fails while running; Lambda then resets the environment.

The host and port come from ``AWS_LAMBDA_RUNTIME_API``.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from monitor.errors import TmpwardenError

API_VERSION = "2020-01-01"
NAME_HEADER = "Lambda-Extension-Name"
ID_HEADER = "Lambda-Extension-Identifier"
ERROR_TYPE_HEADER = "Lambda-Extension-Function-Error-Type"
EVENTS = ("INVOKE", "SHUTDOWN")
MAX_RESPONSE_BYTES = 1_048_576
"""The most of a response read (an event is a few hundred bytes); the rest is dropped."""


class ExtensionsApiError(TmpwardenError, OSError):
    """The Extensions API refused a call or could not be reached."""


@dataclass(frozen=True, slots=True)
class Event:
    """One event of ``/event/next``: ``kind`` is INVOKE or SHUTDOWN."""

    kind: str
    request_id: str | None
    deadline_ms: int | None
    shutdown_reason: str | None
    raw: Mapping[str, Any]

    @classmethod
    def parse(cls, body: object) -> Event:
        """Never raises: a field of the wrong type is None (an unknown kind is ``""``)."""
        found: Mapping[str, Any] = body if isinstance(body, Mapping) else {}
        deadline = found.get("deadlineMs")
        deadline_ms: int | None = None
        if isinstance(deadline, int) and not isinstance(deadline, bool):
            deadline_ms = deadline
        elif isinstance(deadline, float) and math.isfinite(deadline):
            deadline_ms = int(deadline)
        return cls(
            kind=_text(found.get("eventType")) or "",
            request_id=_text(found.get("requestId")),
            deadline_ms=deadline_ms,
            shutdown_reason=_text(found.get("shutdownReason")),
            raw=found,
        )


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


class ExtensionsClient:
    """Register, wait for events, report errors; one HTTP connection per call (the
    long poll of ``/event/next`` may last the whole life of the environment)."""

    def __init__(self, runtime_api: str, name: str) -> None:
        host, _, port = runtime_api.rpartition(":")
        if not host or not port.isdigit():
            raise ExtensionsApiError(
                f"AWS_LAMBDA_RUNTIME_API={runtime_api!r} is not host:port; "
                "Lambda sets it for extensions (an emulator must too)"
            )
        self.host, self.port, self.name = host, int(port), name
        self.extension_id: str | None = None

    def _call(
        self, method: str, path: str, body: object | None, headers: dict[str, str]
    ) -> tuple[int, dict[str, str], bytes]:
        connection = http.client.HTTPConnection(self.host, self.port, timeout=None)
        try:
            data = json.dumps(body).encode() if body is not None else None
            if data is not None:
                headers = {**headers, "Content-Type": "application/json"}
            connection.request(method, f"/{API_VERSION}/extension/{path}", data, headers)
            response = connection.getresponse()
            body = response.read(MAX_RESPONSE_BYTES + 1)  # one more: over the cap
            return response.status, dict(response.getheaders()), body
        except OSError as exc:
            raise ExtensionsApiError(
                f"the Extensions API at {self.host}:{self.port} failed on {path}: {exc}"
            ) from exc
        finally:
            connection.close()

    def _id_headers(self) -> dict[str, str]:
        if self.extension_id is None:
            raise ExtensionsApiError("register the extension before any other call")
        return {ID_HEADER: self.extension_id}

    def register(self) -> str:
        """Register for INVOKE and SHUTDOWN; returns (and keeps) the extension id."""
        status, headers, body = self._call(
            "POST", "register", {"events": list(EVENTS)}, {NAME_HEADER: self.name}
        )
        found = {k.lower(): v for k, v in headers.items()}.get(ID_HEADER.lower())
        if status != 200 or not found:
            raise ExtensionsApiError(
                f"registering {self.name!r} failed: HTTP {status} {body[:200]!r}; the name "
                "must be the executable's file name under /opt/extensions"
            )
        self.extension_id = found
        return found

    def next_event(self) -> Event:
        """Block until Lambda sends the next event; a body that is no JSON object (or over
        :data:`MAX_RESPONSE_BYTES`) is an event of kind ``""``, which the loop ignores."""
        status, _, body = self._call("GET", "event/next", None, self._id_headers())
        if status != 200:
            raise ExtensionsApiError(f"event/next failed: HTTP {status} {body[:200]!r}")
        if len(body) > MAX_RESPONSE_BYTES:
            return Event.parse(None)
        try:
            return Event.parse(json.loads(body))
        except (ValueError, RecursionError):
            return Event.parse(None)

    def report_error(self, when: str, reason: str, message: str) -> None:
        """POST ``init/error`` (``when="init"``) or ``exit/error`` (``when="exit"``) with
        ``Extension.<reason>``; a failure to report is not raised (the extension is
        exiting anyway)."""
        error_type = f"Extension.{reason}"
        body = {"errorMessage": message, "errorType": error_type, "stackTrace": []}
        with contextlib.suppress(ExtensionsApiError):
            self._call(
                "POST", f"{when}/error", body, {**self._id_headers(), ERROR_TYPE_HEADER: error_type}
            )
