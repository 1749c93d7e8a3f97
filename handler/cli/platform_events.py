"""The platform's view of one invocation: its status and the Telemetry API records.

Shapes from the Telemetry API's event schema reference (AWS Lambda Developer Guide,
``telemetry-schema-reference.html``): ``platform.runtimeDone`` carries ``requestId``,
``status`` (``success`` | ``error`` | ``timeout`` | ``failure``), ``errorType`` when not
a success and ``metrics`` (``durationMs``, ``producedBytes``); ``platform.report`` the
same status and ``metrics`` (``durationMs``, ``billedDurationMs``, ``memorySizeMB``,
``maxMemoryUsedMB``, ``initDurationMs`` on a cold start). An out-of-memory kill is
``status: error`` with ``errorType: Runtime.OutOfMemory`` (the REPORT line's ``Status:
error`` and ``Error Type: Runtime.OutOfMemory``); a timeout is ``status: timeout``.
"""

from __future__ import annotations

import json
import math
from typing import Any

OUT_OF_MEMORY = "Runtime.OutOfMemory"
EXIT_ERROR = "Runtime.ExitError"


def invocation_status(oom: bool, timed_out: bool, response: Any) -> tuple[str, str | None]:
    """(status, errorType) of an invocation, as ``platform.runtimeDone`` gives them."""
    if oom:
        return "error", OUT_OF_MEMORY
    if timed_out:
        return "timeout", None
    if response is None:
        return "error", EXIT_ERROR
    if isinstance(response, dict) and "errorType" in response:
        return "error", str(response["errorType"])
    return "success", None


def shutdown_reason(status: str, error_type: str | None) -> str:
    """The SHUTDOWN event's ``shutdownReason`` after an invocation that ended so:
    ``timeout`` after a timeout, ``failure`` when the runtime died (out of memory, exit,
    failed init), ``spindown`` otherwise (a response, even an error response)."""
    if status == "timeout":
        return "timeout"
    if status == "failure" or error_type in (OUT_OF_MEMORY, EXIT_ERROR):
        return "failure"
    return "spindown"


def init_record(status: str = "success", **extra: Any) -> dict[str, Any]:
    """The record of ``platform.initStart`` / ``initRuntimeDone`` / ``initReport``."""
    return {"initializationType": "on-demand", "phase": "init", "status": status, **extra}


def runtime_done(
    request_id: str, status: str, error_type: str | None, duration_ms: float, response: Any
) -> dict[str, Any]:
    """The record of ``platform.runtimeDone``."""
    produced = len(json.dumps(response)) if response is not None else 0
    return {
        "requestId": request_id,
        "status": status,
        **({"errorType": error_type} if error_type else {}),
        "metrics": {"durationMs": round(duration_ms, 3), "producedBytes": produced},
    }


def report(
    request_id: str,
    status: str,
    error_type: str | None,
    *,
    duration_ms: float,
    memory_mb: int,
    max_memory_mb: int,
    init_ms: float,
) -> dict[str, Any]:
    """The record of ``platform.report`` (billed per started millisecond)."""
    return {
        "requestId": request_id,
        "status": status,
        **({"errorType": error_type} if error_type else {}),
        "metrics": {
            "durationMs": round(duration_ms, 3),
            "billedDurationMs": math.ceil(duration_ms),
            "memorySizeMB": memory_mb,
            "maxMemoryUsedMB": max_memory_mb,
            "initDurationMs": round(init_ms, 3),
        },
    }
