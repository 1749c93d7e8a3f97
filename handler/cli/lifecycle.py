"""One invocation in the local execution environment: init, invoke and shutdown, as
Lambda runs them (AWS Lambda Developer Guide, "Lambda execution environment" and the
Extensions API's lifecycle).

- Init: the namespaced supervisor (:mod:`handler.cli.sandbox_init`) starts the runtime
  and every extension; the init phase ends when each extension has registered and waits
  in ``event/next`` (at most ``INIT_TIMEOUT_S``, Lambda's 10 s; an extension that exits,
  fails to start or posts ``init/error`` fails the init).
- Invoke: ``platform.start``, INVOKE to the extensions, the handler runs; it ends with
  the response, the runtime's death, the resident-memory watchdog's kill at the limit
  (``Runtime.OutOfMemory``) or the timeout; then ``platform.runtimeDone`` and
  ``platform.report`` (``maxMemoryUsedMB``, ``status``, ``errorType``) are delivered.
- Shutdown: the runtime is stopped, then SHUTDOWN (``spindown``, ``timeout`` after a
  timeout, ``failure`` after a crash or an out-of-memory kill) goes to the extensions
  with Lambda's budget for external extensions, ``SHUTDOWN_BUDGET_S`` (2,000 ms);
  whatever outlives it is killed with SIGKILL.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import resource
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TextIO

from handler.cli.lambda_api import LambdaApi
from handler.cli.platform_events import (
    init_record,
    invocation_status,
    runtime_done,
    shutdown_reason,
)
from handler.cli.platform_events import report as platform_report
from handler.cli.relay import pump_output
from handler.cli.rss_watchdog import RssWatchdog, descendants
from handler.cli.sandbox_child import GO_FD_ENV, RESULT_FD_ENV
from handler.cli.sandbox_init import EXTENSIONS_ENV, STATUS_FD_ENV
from monitor.units import GiB, MiB

INIT_TIMEOUT_S = 10.0
SHUTDOWN_BUDGET_S = 2.0
RUNTIME_STOP_S = 0.5
POLL_S = 0.01
EXTENSION_HOST_ENV = "TMPWARDEN_EXTENSION_HOST"
RUNTIME_API_ENV = "AWS_LAMBDA_RUNTIME_API"


def address_space_backstop(memory_mb: int) -> int:
    """``RLIMIT_AS`` kept only as a far backstop behind the watchdog: 4x the function's
    memory plus 1 GiB (reserved address space of thread stacks and malloc arenas is far
    above resident memory; this only stops a runaway the watchdog could not)."""
    return 4 * memory_mb * MiB + GiB


@dataclass(frozen=True, slots=True)
class Settings:
    """What the environment needs besides the command: the function's figures."""

    memory_mb: int
    timeout: float
    function_name: str
    handler: str
    region: str
    extensions: tuple[str, ...] = ()  # paths as the namespace sees them
    address_space_mb: int | None = None  # RLIMIT_AS; None: address_space_backstop


@dataclass(frozen=True, slots=True)
class ExtensionOutcome:
    """One extension's life: ``exit_code`` negative when killed by that signal;
    ``shutdown_ms`` from SHUTDOWN to its exit (None: it did not exit after one)."""

    name: str
    registered: bool
    events: tuple[str, ...]
    exit_code: int | None
    shutdown_ms: float | None
    killed: bool
    error: str | None = None


@dataclass(frozen=True, slots=True)
class Outcome:
    """The invocation as the platform saw it (the ``platform.report`` figures)."""

    report: dict[str, Any]
    request_id: str
    status: str
    error_type: str | None
    duration_ms: float
    max_memory_mb: int
    out_of_memory: bool
    timed_out: bool
    runtime_exit: int | None
    emf_lines: int
    extensions: tuple[ExtensionOutcome, ...]
    init_error: str | None = None
    events: tuple[dict[str, Any], ...] = ()


@dataclass(slots=True)
class _State:
    runtime: int | None = None
    extensions: dict[str, int] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    exits: dict[int, tuple[int, float]] = field(default_factory=dict)
    result: bytes = b""
    emf_lines: int = 0


class Environment:
    """Runs ``argv`` (the namespaced supervisor) through one invocation."""

    def __init__(
        self,
        argv: Sequence[str],
        env: Mapping[str, str],
        settings: Settings,
        emf_out: TextIO,
        logs: TextIO,
    ) -> None:
        self.argv = list(argv)
        self.env = dict(env)
        self.settings = settings
        self.emf_out = emf_out
        self.logs = logs
        self.state = _State()
        self.changed = threading.Condition()
        self.done = threading.Event()
        self.oom = False
        self.shutdown_sent: float | None = None
        self.survivors: tuple[str, ...] = ()
        self.api = LambdaApi(settings.function_name, settings.memory_mb, settings.handler)

    # -- the supervisor's reports ----------------------------------------------------

    def _read_status(self, fd: int) -> None:
        with open(fd, encoding="utf-8") as lines:
            for line in lines:
                news = json.loads(line)
                with self.changed:
                    if "runtime" in news:
                        self.state.runtime = int(news["runtime"])
                        self.state.extensions = {k: int(v) for k, v in news["extensions"].items()}
                    elif "failed" in news:
                        self.state.failed[news["failed"]] = news["error"]
                    elif "exited" in news:
                        self.state.exits[int(news["exited"])] = (
                            int(news["code"]),
                            time.monotonic(),
                        )
                    self.changed.notify_all()
        with self.changed:
            self.changed.notify_all()

    def _read_result(self, fd: int) -> None:
        with open(fd, "rb") as result:
            self.state.result = result.read()
        self.done.set()

    def _alive(self, pid: int | None) -> bool:
        return pid is not None and pid not in self.state.exits

    def _roots(self) -> list[int]:
        with self.changed:
            pids = [self.state.runtime, *self.state.extensions.values()]
            return [pid for pid in pids if pid is not None and self._alive(pid)]

    def _kill_runtime(self) -> None:
        runtime = self.state.runtime
        if runtime is None:
            return
        for pid in descendants([runtime]):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def _out_of_memory(self, _total: int) -> None:
        self.oom = True
        self._kill_runtime()
        self.done.set()

    # -- the phases -------------------------------------------------------------------

    def run(self) -> Outcome:
        settings = self.settings
        self.api.start()
        go_read, go_write = os.pipe()
        result_read, result_write = os.pipe()
        status_read, status_write = os.pipe()
        env = {
            **self.env,
            RUNTIME_API_ENV: self.api.address,
            EXTENSION_HOST_ENV: "127.0.0.1",
            GO_FD_ENV: str(go_read),
            RESULT_FD_ENV: str(result_write),
            STATUS_FD_ENV: str(status_write),
            EXTENSIONS_ENV: json.dumps(list(settings.extensions)),
        }
        backstop = (
            settings.address_space_mb * MiB
            if settings.address_space_mb
            else address_space_backstop(settings.memory_mb)
        )
        init_started = time.monotonic()
        start = init_record(functionName=settings.function_name, functionVersion="$LATEST")
        del start["status"]
        self.api.emit("platform.initStart", start)
        process = subprocess.Popen(
            self.argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            pass_fds=(go_read, result_write, status_write),
            preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_AS, (backstop, backstop)),  # noqa: PLW1509 - setrlimit only
            start_new_session=True,
        )
        for fd in (go_read, result_write, status_write):
            os.close(fd)
        threads = [
            threading.Thread(target=self._pump, args=(process,), daemon=True),
            threading.Thread(target=self._read_status, args=(status_read,), daemon=True),
            threading.Thread(target=self._read_result, args=(result_read,), daemon=True),
        ]
        for thread in threads:
            thread.start()
        watchdog = RssWatchdog(settings.memory_mb * MiB, self._roots, self._out_of_memory)
        try:
            init_error = self._init(process, watchdog)
            init_ms = (time.monotonic() - init_started) * 1000
            if init_error is None:
                outcome = self._invoke(go_write, watchdog, init_ms)
            else:
                outcome = self._failed_init(init_error, init_ms)
            os.close(go_write)
            go_write = -1
            self._shutdown(outcome, process)
        finally:
            watchdog.stop()
            if go_write >= 0:
                os.close(go_write)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            for thread in threads:
                thread.join(timeout=5)
            self.api.close()
        events = tuple(self.api.events)
        extensions = tuple(
            self._extension_outcome(name) for name in (*self.state.extensions, *self.state.failed)
        )
        return replace(
            outcome, emf_lines=self.state.emf_lines, events=events, extensions=extensions
        )

    def _init(self, process: subprocess.Popen[bytes], watchdog: RssWatchdog) -> str | None:
        """Wait for the runtime and for every extension's registration and first
        ``next``; the init error (Lambda's ``errorType: errorMessage``) or None."""
        deadline = time.monotonic() + INIT_TIMEOUT_S
        with self.changed:
            while self.state.runtime is None:
                if process.poll() is not None or time.monotonic() > deadline:
                    return f"Runtime.ExitError: the sandbox did not start (exit {process.poll()})"
                self.changed.wait(POLL_S)
        watchdog.start()
        while not self.api.ready(len(self.state.extensions)):
            with self.changed:
                gone = [n for n, p in self.state.extensions.items() if not self._alive(p)]
            if self.api.init_error is not None:
                name, error_type = self.api.init_error
                return f"{error_type}: extension {name} reported an init error"
            if gone:
                return f"Extension.Crash: extension {', '.join(gone)} exited during init"
            if time.monotonic() > deadline:
                return (
                    f"Extension.TimedOut: {', '.join(self.state.extensions)} did not all "
                    f"register and wait for events within {INIT_TIMEOUT_S:g} s"
                )
            if self.oom:
                return "Runtime.OutOfMemory: the init reached the function's memory"
            time.sleep(POLL_S)
        if self.state.failed:
            failed = ", ".join(f"{n} ({e})" for n, e in self.state.failed.items())
            return f"Extension.LaunchError: cannot start {failed}"
        return None

    def _invoke(self, go: int, watchdog: RssWatchdog, init_ms: float) -> Outcome:
        settings = self.settings
        self.api.initializing = False
        self.api.emit("platform.initRuntimeDone", init_record())
        self.api.emit("platform.initReport", init_record(metrics={"durationMs": round(init_ms, 3)}))
        request_id = str(uuid.uuid4())
        deadline = time.time() + settings.timeout
        self.api.emit("platform.start", {"requestId": request_id, "version": "$LATEST"})
        self.api.send(
            {
                "eventType": "INVOKE",
                "deadlineMs": int(deadline * 1000),
                "requestId": request_id,
                "invokedFunctionArn": f"arn:aws:lambda:{settings.region}:000000000000:"
                f"function:{settings.function_name}",
                "tracing": {"type": "X-Amzn-Trace-Id", "value": _trace_id()},
            }
        )
        started = time.monotonic()
        os.write(go, (json.dumps({"requestId": request_id, "deadline": deadline}) + "\n").encode())
        timed_out = not self.done.wait(settings.timeout)  # killed at the timeout, as in Lambda
        if timed_out and not self.oom:
            self._kill_runtime()
            self.done.wait(RUNTIME_STOP_S * 4)
        duration_ms = (time.monotonic() - started) * 1000
        watchdog.stop()
        raw = self.state.result
        report: dict[str, Any] = json.loads(raw) if raw.strip() else {}
        response = report.get("response")
        status, error_type = invocation_status(self.oom, timed_out, response)
        if status == "timeout":
            duration_ms = min(duration_ms, settings.timeout * 1000)
        max_memory_mb = min(math.ceil(watchdog.peak / MiB), settings.memory_mb)
        self.api.emit(
            "platform.runtimeDone",
            runtime_done(request_id, status, error_type, duration_ms, response),
        )
        self.api.emit(
            "platform.report",
            platform_report(
                request_id,
                status,
                error_type,
                duration_ms=duration_ms,
                memory_mb=settings.memory_mb,
                max_memory_mb=max_memory_mb,
                init_ms=init_ms,
            ),
        )
        self.api.flush(SHUTDOWN_BUDGET_S)
        with self.changed:
            runtime_exit = self.state.exits.get(self.state.runtime or -1, (None, 0.0))[0]
        return Outcome(
            report=report,
            request_id=request_id,
            status=status,
            error_type=error_type,
            duration_ms=round(duration_ms, 3),
            max_memory_mb=max_memory_mb,
            out_of_memory=self.oom,
            timed_out=timed_out and not self.oom,
            runtime_exit=runtime_exit,
            emf_lines=0,
            extensions=(),
        )

    def _failed_init(self, error: str, init_ms: float) -> Outcome:
        error_type, _, message = error.partition(": ")
        self.api.emit(
            "platform.initReport",
            init_record("error", errorType=error_type, metrics={"durationMs": round(init_ms, 3)}),
        )
        self.api.flush(SHUTDOWN_BUDGET_S)
        return Outcome(
            report={"response": {"errorType": error_type, "errorMessage": message}},
            request_id="",
            status="failure",
            error_type=error_type,
            duration_ms=0.0,
            max_memory_mb=0,
            out_of_memory=error_type == "Runtime.OutOfMemory",
            timed_out=False,
            runtime_exit=None,
            emf_lines=0,
            extensions=(),
            init_error=error,
        )

    def _shutdown(self, outcome: Outcome, process: subprocess.Popen[bytes]) -> None:
        """Stop the runtime (its go pipe is closed: it exits, or is killed after
        ``RUNTIME_STOP_S``), then SHUTDOWN to the extensions within the budget."""
        runtime = self.state.runtime
        stop_by = time.monotonic() + RUNTIME_STOP_S
        while self._alive(runtime) and time.monotonic() < stop_by and process.poll() is None:
            time.sleep(POLL_S)
        if self._alive(runtime):
            self._kill_runtime()
        if not any(self._alive(p) for p in self.state.extensions.values()):
            return
        reason = shutdown_reason(outcome.status, outcome.error_type)
        sent = time.monotonic()
        self.shutdown_sent = sent
        self.api.send(
            {
                "eventType": "SHUTDOWN",
                "shutdownReason": reason,
                "deadlineMs": int((time.time() + SHUTDOWN_BUDGET_S) * 1000),
            }
        )
        while time.monotonic() < sent + SHUTDOWN_BUDGET_S:
            with self.changed:
                if not any(self._alive(p) for p in self.state.extensions.values()):
                    break
                self.changed.wait(POLL_S)
        self.survivors = tuple(n for n, p in self.state.extensions.items() if self._alive(p))
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)

    def _extension_outcome(self, name: str) -> ExtensionOutcome:
        registered = [e for e in self.api.extensions.values() if e.name == name]
        pid = self.state.extensions.get(name)
        exit_code, exited_at = self.state.exits.get(pid if pid is not None else -1, (None, None))
        killed = name in self.survivors
        shutdown_ms = None
        if self.shutdown_sent is not None and exited_at is not None and not killed:
            shutdown_ms = round((exited_at - self.shutdown_sent) * 1000, 1)
        return ExtensionOutcome(
            name=name,
            registered=bool(registered),
            events=tuple(registered[0].delivered) if registered else (),
            exit_code=exit_code,
            shutdown_ms=shutdown_ms,
            killed=killed,
            error=self.state.failed.get(name) or (registered[0].error_type if registered else None),
        )

    def _pump(self, process: subprocess.Popen[bytes]) -> None:
        self.state.emf_lines = pump_output(process, self.emf_out, self.logs)


def _trace_id() -> str:
    now = int(time.time())
    return f"Root=1-{now:08x}-{uuid.uuid4().hex[:24]};Parent={uuid.uuid4().hex[:16]};Sampled=0"


def executables(directory: Path | None) -> list[Path]:
    """The extensions Lambda would start from ``directory``: its executable files, in
    alphabetical order (as Lambda starts ``/opt/extensions``)."""
    if directory is None or not directory.is_dir():
        return []
    return sorted(p for p in directory.iterdir() if p.is_file() and os.access(p, os.X_OK))
