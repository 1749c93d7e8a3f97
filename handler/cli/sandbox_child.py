"""Inside the sandbox: run one invocation of the handler and report it on a pipe.

Started by :mod:`handler.cli.sandbox` in a private mount namespace (tmpfs at /tmp, the
rest read-only, RLIMIT_AS set). The response goes to the file descriptor named by
``TMPWARDEN_SANDBOX_RESULT_FD``; stdout carries the function's logs and EMF lines,
as in Lambda.
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
import uuid
from pathlib import Path
from typing import Any

RESULT_FD_ENV = "TMPWARDEN_SANDBOX_RESULT_FD"
DEADLINE_ENV = "TMPWARDEN_SANDBOX_DEADLINE"
TMP = "/tmp"


class SandboxContext:
    """Lambda's context object, with a real remaining-time clock."""

    def __init__(self, deadline: float) -> None:
        self._deadline = deadline
        self.aws_request_id = str(uuid.uuid4())
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


def main(event_path: str) -> int:
    result_fd = int(os.environ[RESULT_FD_ENV])
    deadline = float(os.environ[DEADLINE_ENV])
    before = tmp_usage()
    report: dict[str, Any] = {"tmp_before": before}
    try:
        event = json.loads(Path(event_path).read_text())
        from handler.app import lambda_handler  # noqa: PLC0415 - import inside the limits

        report["response"] = lambda_handler(event, SandboxContext(deadline))
    except BaseException as exc:  # what Lambda reports for an unhandled error
        report["response"] = {
            "errorType": type(exc).__name__,
            "errorMessage": str(exc),
            "stackTrace": traceback.format_exception(exc)[-5:],
        }
    finally:
        sys.stdout.flush()
        report["tmp_after"] = tmp_usage()
        with os.fdopen(result_fd, "w") as result:
            json.dump(report, result)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
