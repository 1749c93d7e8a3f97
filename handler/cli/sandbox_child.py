"""Inside the sandbox: run one invocation of the handler and report it on a pipe.

Started by :mod:`handler.cli.sandbox_init` in the sandbox's private mount namespace
(tmpfs at /tmp, the rest read-only), watched by the parent's resident-memory watchdog.
As Lambda's runtime does, it loads the handler (``TMPWARDEN_SANDBOX_HANDLER``, default
``handler.app.lambda_handler``) during init, then waits for its invocation: one JSON
line ``{"requestId": ID, "deadline": EPOCH_S}`` on the file descriptor named by
``TMPWARDEN_SANDBOX_GO_FD`` (end of file instead: the init failed, nothing runs). The
response goes to the file descriptor named by ``TMPWARDEN_SANDBOX_RESULT_FD``; stdout
carries the function's logs and EMF lines, as in Lambda. Then it stays, as a runtime
waits for its next invocation, until the go pipe closes (the shutdown).
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import time
import traceback
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

RESULT_FD_ENV = "TMPWARDEN_SANDBOX_RESULT_FD"
GO_FD_ENV = "TMPWARDEN_SANDBOX_GO_FD"
HANDLER_ENV = "TMPWARDEN_SANDBOX_HANDLER"
DEFAULT_HANDLER = "handler.app.lambda_handler"
TMP = "/tmp"


class SandboxContext:
    """Lambda's context object, with a real remaining-time clock."""

    def __init__(self, deadline: float, request_id: str | None = None) -> None:
        self._deadline = deadline
        self.aws_request_id = request_id or str(uuid.uuid4())
        self.function_name = os.environ.get("AWS_LAMBDA_FUNCTION_NAME", "tmpwarden-local")
        self.function_version = os.environ.get("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        self.memory_limit_in_mb = int(os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128"))
        self.invoked_function_arn = (
            f"arn:aws:lambda:{os.environ.get('AWS_REGION', 'us-east-1')}:000000000000:"
            f"function:{self.function_name}"
        )
        self.log_group_name = os.environ.get("AWS_LAMBDA_LOG_GROUP_NAME", "")
        self.log_stream_name = os.environ.get("AWS_LAMBDA_LOG_STREAM_NAME", "")

    def get_remaining_time_in_millis(self) -> int:
        return max(int((self._deadline - time.time()) * 1000), 0)


def tmp_usage() -> dict[str, Any]:
    from monitor.sampler import disk_space  # noqa: PLC0415 - import inside the limits

    space = disk_space(os.statvfs(TMP))
    return {
        "used_bytes": space.used,
        "total_bytes": space.total,
        "entries": sorted(p.name for p in Path(TMP).iterdir()),
    }


def load_handler(name: str) -> Callable[..., Any]:
    """``module.function`` -> the function (Lambda's Handler setting)."""
    module, _, function = name.rpartition(".")
    handler: Callable[..., Any] = getattr(importlib.import_module(module), function)
    return handler


def read_line(fd: int) -> bytes:
    """One line from ``fd`` (b"" at end of file), read a byte at a time so nothing past
    it is taken from the pipe."""
    line = b""
    while not line.endswith(b"\n"):
        byte = os.read(fd, 1)
        if not byte:
            break
        line += byte
    return line


def error_response(exc: BaseException) -> dict[str, Any]:
    """What Lambda reports for an unhandled error."""
    return {
        "errorType": type(exc).__name__,
        "errorMessage": str(exc),
        "stackTrace": traceback.format_exception(exc)[-5:],
    }


def main(event_path: str) -> int:
    result_fd = int(os.environ[RESULT_FD_ENV])
    go_fd = int(os.environ[GO_FD_ENV])
    handler: Callable[..., Any] | None = None
    init_error: BaseException | None = None
    tmp_usage()  # its import too belongs to the init phase, not to the invocation's duration
    try:  # the init phase: the handler's module is imported before the invocation
        handler = load_handler(os.environ.get(HANDLER_ENV, DEFAULT_HANDLER))
    except BaseException as exc:  # reported at the invocation, as Runtime.ImportModuleError
        init_error = exc
    go = read_line(go_fd)
    if not go:
        return 0
    invocation = json.loads(go)
    before = tmp_usage()
    report: dict[str, Any] = {"tmp_before": before}
    try:
        event = json.loads(Path(event_path).read_text())
        if handler is None:
            assert init_error is not None
            raise init_error
        context = SandboxContext(float(invocation["deadline"]), invocation["requestId"])
        report["response"] = handler(event, context)
    except BaseException as exc:  # what Lambda reports for an unhandled error
        report["response"] = error_response(exc)
    finally:
        sys.stdout.flush()
        report["tmp_after"] = tmp_usage()
        with os.fdopen(result_fd, "w") as result:
            json.dump(report, result)
    while os.read(go_fd, 4096):  # idle until the shutdown closes the pipe
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
