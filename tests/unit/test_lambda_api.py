"""The emulated Extensions and Telemetry APIs, spoken to over HTTP as an extension does."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

import pytest

from handler.cli.lambda_api import LambdaApi, subscription_problem
from handler.cli.platform_events import invocation_status, report, shutdown_reason


@pytest.fixture
def api() -> Iterator[LambdaApi]:
    server = LambdaApi("fn", 512, "handler.app.lambda_handler")
    server.start()
    yield server
    server.close()


def call(
    api: LambdaApi, method: str, path: str, body: Any = None, **headers: str
) -> tuple[int, dict[str, str], Any]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        f"http://{api.address}{path}", data=data, method=method, headers=headers
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as answer:
            return answer.status, dict(answer.headers), json.loads(answer.read())
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), json.loads(error.read())


def register(api: LambdaApi, events: list[str] | None = None) -> str:
    status, headers, body = call(
        api,
        "POST",
        "/2020-01-01/extension/register",
        {"events": events or ["INVOKE", "SHUTDOWN"]},
        **{"Lambda-Extension-Name": "probe"},
    )
    assert status == 200 and body == {
        "functionName": "fn",
        "functionVersion": "$LATEST",
        "handler": "handler.app.lambda_handler",
    }
    return headers["Lambda-Extension-Identifier"]


def test_registration_next_and_the_events_an_extension_registered_for(api: LambdaApi) -> None:
    identifier = register(api)
    only_shutdown = register(api, ["SHUTDOWN"])
    got: dict[str, Any] = {}

    def poll(key: str, ext: str) -> None:
        got[key] = call(
            api, "GET", "/2020-01-01/extension/event/next", **{"Lambda-Extension-Identifier": ext}
        )

    threads = [
        threading.Thread(target=poll, args=("both", identifier)),
        threading.Thread(target=poll, args=("shutdown", only_shutdown)),
    ]
    for thread in threads:
        thread.start()
    while not api.ready(2):
        threading.Event().wait(0.01)
    invoke = {"eventType": "INVOKE", "requestId": "r", "deadlineMs": 1, "invokedFunctionArn": "a"}
    assert api.send(invoke) == ["probe"]  # not to the one registered only for SHUTDOWN
    threads[0].join(5)
    status, headers, body = got["both"]
    assert status == 200 and body == invoke and headers["Lambda-Extension-Event-Identifier"]
    shutdown = {"eventType": "SHUTDOWN", "shutdownReason": "spindown", "deadlineMs": 2}
    assert api.send(shutdown) == ["probe", "probe"]
    threads[1].join(5)
    assert got["shutdown"][2] == shutdown


def test_unregistered_callers_and_late_registrations_are_refused(api: LambdaApi) -> None:
    status, _, body = call(
        api, "GET", "/2020-01-01/extension/event/next", **{"Lambda-Extension-Identifier": "x"}
    )
    assert status == 403 and body["errorType"] == "Extension.Unregistered"
    api.initializing = False
    status, _, body = call(
        api,
        "POST",
        "/2020-01-01/extension/register",
        {"events": ["INVOKE"]},
        **{"Lambda-Extension-Name": "late"},
    )
    assert status == 403 and body["errorType"] == "Extension.InitPhaseOver"


def test_init_and_exit_errors_are_recorded(api: LambdaApi) -> None:
    identifier = register(api)
    for kind in ("init", "exit"):
        status, _, body = call(
            api,
            "POST",
            f"/2020-01-01/extension/{kind}/error",
            {},
            **{
                "Lambda-Extension-Identifier": identifier,
                "Lambda-Extension-Function-Error-Type": f"Extension.{kind}",
            },
        )
        assert status == 202 and body == {"status": "OK"}
    assert api.init_error == ("probe", "Extension.init")
    assert api.exit_errors == [("probe", "Extension.exit")]


class _Receiver(BaseHTTPRequestHandler):
    batches: ClassVar[list[list[dict[str, Any]]]] = []

    def do_POST(self) -> None:
        self.batches.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
        self.send_response(200)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        return


def test_telemetry_subscribers_get_the_init_events_and_what_follows(api: LambdaApi) -> None:
    receiver = ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    _Receiver.batches = []
    try:
        api.emit("platform.initStart", {"phase": "init"})
        identifier = register(api)
        subscription = {
            "schemaVersion": "2022-12-13",
            "types": ["platform"],
            "buffering": {"timeoutMs": 25},
            "destination": {
                "protocol": "HTTP",
                "URI": f"http://127.0.0.1:{receiver.server_address[1]}/",
            },
        }
        status, _, body = call(
            api,
            "PUT",
            "/2022-07-01/telemetry",
            subscription,
            **{"Lambda-Extension-Identifier": identifier},
        )
        assert status == 200 and body == "OK"
        api.emit(
            "platform.report",
            report(
                "r", "success", None, duration_ms=1.2, memory_mb=512, max_memory_mb=70, init_ms=3
            ),
        )
        assert api.flush(5)
        got = [event for batch in _Receiver.batches for event in batch]
        assert [e["type"] for e in got] == [
            "platform.initStart",
            "platform.telemetrySubscription",
            "platform.report",
        ]
        assert got[-1]["record"]["metrics"]["billedDurationMs"] == 2
        assert got[0]["time"].endswith("Z") and len(got[0]["time"]) == 24
    finally:
        receiver.shutdown()
        receiver.server_close()


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"schemaVersion": "2021-01-01"}, "schemaVersion"),
        ({"destination": {"protocol": "TCP", "URI": "http://127.0.0.1:1"}}, "TCP"),
        ({"destination": {"protocol": "HTTP", "URI": "http://sandbox.localdomain:1"}}, "127.0.0.1"),
        ({"types": ["logs"]}, "types"),
        ({"buffering": {"timeoutMs": "soon"}}, "buffering"),
    ],
)
def test_bad_subscriptions_name_the_field(change: dict[str, Any], problem: str) -> None:
    good = {
        "schemaVersion": "2022-07-01",
        "types": ["platform"],
        "destination": {"protocol": "HTTP", "URI": "http://127.0.0.1:9/"},
    }
    assert subscription_problem(good) is None
    message = subscription_problem({**good, **change})
    assert message is not None and problem in message


def test_the_status_and_shutdown_reason_of_each_ending() -> None:
    assert invocation_status(True, True, None) == ("error", "Runtime.OutOfMemory")
    assert invocation_status(False, True, None) == ("timeout", None)
    assert invocation_status(False, False, None) == ("error", "Runtime.ExitError")
    assert invocation_status(False, False, {"errorType": "OSError"}) == ("error", "OSError")
    assert invocation_status(False, False, {"status": "failed"}) == ("success", None)
    assert shutdown_reason("timeout", None) == "timeout"
    assert shutdown_reason("error", "Runtime.OutOfMemory") == "failure"
    assert shutdown_reason("failure", "Extension.Crash") == "failure"
    assert shutdown_reason("error", "OSError") == "spindown"
    assert shutdown_reason("success", None) == "spindown"
