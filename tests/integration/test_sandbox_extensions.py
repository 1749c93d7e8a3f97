"""The local Lambda's Extensions and Telemetry APIs and its deaths (issue 11): a test
extension registers, subscribes to telemetry and prints what it receives; handlers that
exhaust memory, fill /tmp or outlive the timeout produce the telemetry Lambda sends."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from handler.cli.sandbox import namespace_prefix
from tests.integration.conftest import invoke_sandbox

REPO = Path(__file__).resolve().parents[2]
HANDLERS = "tests.integration.sandbox_handlers"
PREFIX = "test-extension: "

# Registers for INVOKE and SHUTDOWN, subscribes to platform telemetry at
# TMPWARDEN_EXTENSION_HOST, prints each event and each telemetry batch as one line, and
# exits on SHUTDOWN (after ``linger`` seconds: a stubborn extension lingers past the budget).
TEST_EXTENSION = """#!/usr/bin/env python3
import http.server, json, os, sys, threading, time, urllib.request

API = "http://" + os.environ["AWS_LAMBDA_RUNTIME_API"]
HOST = os.environ["TMPWARDEN_EXTENSION_HOST"]
NAME = os.path.basename(sys.argv[0])
LINGER = {linger}

def say(kind, body):
    line = {{"kind": kind, "at_ms": time.time() * 1000, "body": body}}
    print("{prefix}" + json.dumps(line), flush=True)

class Telemetry(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        batch = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        say("telemetry", batch)
        self.send_response(200)
        self.end_headers()
    def log_message(self, *args):
        pass

server = http.server.ThreadingHTTPServer((HOST, 0), Telemetry)
threading.Thread(target=server.serve_forever, daemon=True).start()
request = urllib.request.Request(API + "/2020-01-01/extension/register", method="POST",
    data=json.dumps({{"events": ["INVOKE", "SHUTDOWN"]}}).encode(),
    headers={{"Lambda-Extension-Name": NAME}})
with urllib.request.urlopen(request) as answer:
    identifier = answer.headers["Lambda-Extension-Identifier"]
    say("registered", json.loads(answer.read()))
subscription = {{"schemaVersion": "2022-12-13", "types": ["platform"],
    "buffering": {{"maxItems": 1000, "maxBytes": 262144, "timeoutMs": 25}},
    "destination": {{"protocol": "HTTP", "URI": "http://%s:%d/" % (HOST, server.server_port)}}}}
request = urllib.request.Request(API + "/2022-07-01/telemetry", method="PUT",
    data=json.dumps(subscription).encode(), headers={{"Lambda-Extension-Identifier": identifier}})
with urllib.request.urlopen(request) as answer:
    say("subscribed", answer.status)
say("sees", {{"tmp": sorted(os.listdir("/tmp")),
    "runtime_cmdline": open("/proc/%s/cmdline" % os.environ["TMPWARDEN_RUNTIME_PID"]).read()}})
while True:
    request = urllib.request.Request(API + "/2020-01-01/extension/event/next",
        headers={{"Lambda-Extension-Identifier": identifier}})
    with urllib.request.urlopen(request) as answer:
        event = json.loads(answer.read())
    say("event", event)
    if event["eventType"] == "SHUTDOWN":
        time.sleep(LINGER)
        say("exiting", {{"tmp": sorted(os.listdir("/tmp"))}})
        sys.exit(0)
"""


@pytest.fixture(autouse=True)
def _needs_namespaces() -> None:
    if namespace_prefix() is None:
        pytest.skip("mount namespaces are not permitted here (needs root or user namespaces)")


def extensions_dir(directory: Path, linger: float = 0.0) -> Path:
    """A directory with the test extension. Its interpreter is found on PATH, as the
    layer's extension finds it: a checkout under /tmp (and its virtualenv) is hidden in
    the sandbox, whose /tmp is a fresh tmpfs."""
    directory.mkdir(exist_ok=True)
    script = directory / "test-extension"
    script.write_text(TEST_EXTENSION.format(linger=linger, prefix=PREFIX))
    script.chmod(0o755)
    return directory


def said(stderr: str) -> list[dict[str, Any]]:
    """What the test extension printed, in order."""
    return [
        json.loads(line[len(PREFIX) :]) for line in stderr.splitlines() if line.startswith(PREFIX)
    ]


def telemetry(lines: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The platform events the extension received, by type (the last of each)."""
    return {e["type"]: e for line in lines if line["kind"] == "telemetry" for e in line["body"]}


def platform_line(stderr: str) -> str:
    return next(line for line in stderr.splitlines() if line.startswith("platform:"))


def run(
    tmp_path: Path, handler: str, event: dict[str, Any], *args: str, linger: float = 0.0
) -> tuple[int, dict[str, Any], str, list[dict[str, Any]]]:
    started = time.monotonic()
    code, response, stderr, emf_log = invoke_sandbox(
        tmp_path,
        event,
        "--handler",
        f"{HANDLERS}.{handler}",
        "--extensions",
        str(extensions_dir(tmp_path / "extensions", linger)),
        *args,
    )
    emf_log.unlink(missing_ok=True)
    print(f"{handler}: {time.monotonic() - started:.1f} s; {platform_line(stderr)}")
    return code, response, stderr, said(stderr)


def events(lines: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The Extensions API events the extension received, by eventType, with ``at_ms``."""
    return {
        line["body"]["eventType"]: {**line["body"], "at_ms": line["at_ms"]}
        for line in lines
        if line["kind"] == "event"
    }


def assert_one_invocation(lines: list[dict[str, Any]], status: str, reason: str) -> dict[str, Any]:
    """Registration, INVOKE, runtimeDone and report of that request with ``status``
    (received before SHUTDOWN), SHUTDOWN with ``reason`` and a 2,000 ms budget, a clean
    exit; returns the platform.report record."""
    kinds = [line["kind"] for line in lines if line["kind"] != "telemetry"]
    assert kinds[:3] == ["registered", "subscribed", "sees"], kinds
    assert lines[0]["body"]["functionName"] and lines[0]["body"]["handler"].startswith(HANDLERS)
    received = events(lines)
    invoke, shutdown = received["INVOKE"], received["SHUTDOWN"]
    assert invoke["invokedFunctionArn"].startswith("arn:aws:lambda:")
    got = telemetry(lines)
    assert {
        "platform.initStart",
        "platform.start",
        "platform.runtimeDone",
        "platform.report",
    } <= set(got)
    done, report = got["platform.runtimeDone"]["record"], got["platform.report"]["record"]
    assert done["requestId"] == report["requestId"] == invoke["requestId"]
    assert done["status"] == report["status"] == status, (done, report)
    last_telemetry = max(line["at_ms"] for line in lines if line["kind"] == "telemetry")
    assert last_telemetry <= shutdown["at_ms"]  # the report reaches the extension before SHUTDOWN
    assert shutdown["shutdownReason"] == reason
    budget = shutdown["deadlineMs"] - shutdown["at_ms"]
    print(f"SHUTDOWN {reason}: budget left when received {budget:.0f} ms")
    assert 1500 < budget <= 2000
    assert kinds[-1] == "exiting"
    return dict(report)


def test_an_extension_registers_is_invoked_gets_the_report_and_shuts_down_in_budget(
    tmp_path: Path,
) -> None:
    code, response, stderr, lines = run(
        tmp_path, "sleep", {"seconds": 0.3}, "--memory", "256", "--timeout", "5"
    )
    assert code == 0 and response == {"status": "succeeded"}, stderr
    report = assert_one_invocation(lines, "success", "spindown")
    invoke = events(lines)["INVOKE"]
    assert 4000 < invoke["deadlineMs"] - invoke["at_ms"] <= 5000
    metrics = report["metrics"]
    print(metrics)
    assert metrics["memorySizeMB"] == 256 and 0 < metrics["maxMemoryUsedMB"] < 256
    assert (
        300 <= metrics["durationMs"] < 2000 and metrics["billedDurationMs"] >= metrics["durationMs"]
    )
    sees = next(line["body"] for line in lines if line["kind"] == "sees")
    assert "handler.cli.sandbox_child" in sees["runtime_cmdline"]  # the runtime's /proc
    line = platform_line(stderr)
    assert "status success" in line and "test-extension [INVOKE SHUTDOWN] exit 0" in line
    after = float(line.split("exit 0 ")[1].split(" ms after SHUTDOWN")[0])
    assert after < 2000


def test_a_handler_that_allocates_is_killed_at_the_limit_as_out_of_memory(tmp_path: Path) -> None:
    # issue 11: RLIMIT_AS raised MemoryError at 67 MB resident of 100; now resident memory
    # reaches the limit and the invocation is killed there, as Lambda's is
    code, response, stderr, lines = run(
        tmp_path, "allocate", {"chunk_mib": 2}, "--memory", "128", "--timeout", "10"
    )
    assert code == 1
    assert response["errorType"] == "Runtime.OutOfMemory", response
    report = assert_one_invocation(lines, "error", "failure")
    assert report["errorType"] == "Runtime.OutOfMemory"
    assert report["metrics"]["maxMemoryUsedMB"] == report["metrics"]["memorySizeMB"] == 128
    assert telemetry(lines)["platform.runtimeDone"]["record"]["errorType"] == "Runtime.OutOfMemory"
    assert "MemoryError" not in stderr


def test_a_handler_that_fills_tmp_ends_with_enospc_the_extension_sees_the_same_tmp(
    tmp_path: Path,
) -> None:
    code, response, stderr, lines = run(
        tmp_path, "fill_tmp", {}, "--tmp-size", "16M", "--memory", "256", "--timeout", "10"
    )
    assert code == 1
    assert response["errorType"] == "OSError" and "No space left" in response["errorMessage"]
    report = assert_one_invocation(lines, "error", "spindown")
    assert report["errorType"] == "OSError"
    assert lines[-1]["body"]["tmp"] == ["fill.bin"]  # the extension's /tmp is the handler's
    assert (
        "after 16.0 MiB" in stderr or "after 16 MiB" in stderr or "/tmp used before 0 B" in stderr
    )


def test_a_handler_that_sleeps_past_the_timeout_is_reported_as_a_timeout(tmp_path: Path) -> None:
    code, response, _, lines = run(
        tmp_path, "sleep", {"seconds": 60}, "--memory", "256", "--timeout", "1"
    )
    assert code == 1 and response["errorType"] == "Sandbox.Timedout"
    report = assert_one_invocation(lines, "timeout", "timeout")
    assert "errorType" not in report and report["metrics"]["durationMs"] == 1000
    received = events(lines)  # killed at the timeout, as Lambda does, not later
    after = received["SHUTDOWN"]["at_ms"] - received["INVOKE"]["at_ms"]
    print(f"SHUTDOWN {after:.0f} ms after INVOKE")
    assert 1000 <= after < 2000


def test_an_extension_that_outlives_the_shutdown_budget_is_killed(tmp_path: Path) -> None:
    started = time.monotonic()
    code, _, stderr, lines = run(tmp_path, "sleep", {"seconds": 0}, "--memory", "256", linger=30)
    took = time.monotonic() - started
    assert code == 0
    assert "SHUTDOWN" in events(lines) and lines[-1]["kind"] == "event"  # never got to exit
    assert "test-extension [INVOKE SHUTDOWN] killed after the shutdown budget" in platform_line(
        stderr
    )
    assert took < 15


def test_an_extension_that_dies_before_registering_fails_the_init(tmp_path: Path) -> None:
    directory = extensions_dir(tmp_path / "extensions")
    crash = directory / "crashes"
    crash.write_text("#!/usr/bin/env python3\nimport sys\nsys.exit(7)\n")
    crash.chmod(0o755)
    code, response, stderr, emf_log = invoke_sandbox(
        tmp_path,
        {"seconds": 0},
        "--handler",
        f"{HANDLERS}.sleep",
        "--extensions",
        str(directory),
    )
    emf_log.unlink(missing_ok=True)
    print(response, platform_line(stderr))
    assert code == 1 and response["errorType"] == "Extension.Crash"
    assert "crashes exited during init" in response["errorMessage"]
    assert "crashes [] not registered (exit 7)" in platform_line(stderr)
    lines = said(stderr)  # the other extension still gets its SHUTDOWN, as failure
    assert events(lines)["SHUTDOWN"]["shutdownReason"] == "failure"
    assert "INVOKE" not in events(lines)


def test_the_in_process_monitor_s_level_changes_come_before_the_out_of_memory_kill(
    tmp_path: Path,
) -> None:
    # issue 11: under RLIMIT_AS, MemoryError came at 67 MB resident of 100, below the 80%
    # warning, so no level change could ever be seen; resident memory now reaches the limit
    code, response, stderr, emf_log = invoke_sandbox(
        tmp_path,
        {"chunk_mib": 2},
        "--handler",
        f"{HANDLERS}.allocate_monitored",
        "--no-extensions",
        "--memory",
        "256",
        "--timeout",
        "10",
    )
    lines = [json.loads(line) for line in emf_log.read_text().splitlines()]
    emf_log.unlink()
    print(platform_line(stderr), [(d["Resource"], d["Level"], d["LevelPercent"]) for d in lines])
    assert code == 1 and response["errorType"] == "Runtime.OutOfMemory"
    assert "max memory used 256 MB" in platform_line(stderr)
    assert {d["TmpwardenRecord"] for d in lines} == {"level_change"}  # nothing flushed after
    memory = {d["Level"]: d for d in lines if d["Resource"] == "memory"}
    assert set(memory) == {"warning", "critical"}
    assert memory["critical"]["LevelPercent"] >= 90.0
