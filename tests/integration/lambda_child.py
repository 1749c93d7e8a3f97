"""A monitored handler run as Lambda would run it (the X-Ray and Powertools tests start it).

``python -m tests.integration.lambda_child plain|powertools TMPDIR``: the environment
(``LAMBDA_TASK_ROOT``, ``_X_AMZN_TRACE_ID``, ``AWS_XRAY_DAEMON_ADDRESS``, ...) comes
from the test. It prints what the handler prints, then a final ``RESULT {...}`` line.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from monitor import MonitorConfig, StorageMonitor, monitored


class FakeContext:
    """The attributes of Lambda's context object that handlers and Powertools read."""

    function_name = "packager"
    function_version = "$LATEST"
    memory_limit_in_mb = 3008
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:packager"
    aws_request_id = "req-0001"
    log_group_name = "/aws/lambda/packager"
    log_stream_name = "stream"

    def get_remaining_time_in_millis(self) -> int:
        return 900_000


def work(monitor: StorageMonitor, scratch: Path) -> dict[str, Any]:
    with monitor.phase("download"):
        (scratch / "archive.bin").write_bytes(b"x" * (2 << 20))
    with monitor.phase("extract"):
        (scratch / "member.bin").write_bytes(b"y" * (1 << 20))
        (scratch / "archive.bin").unlink()
    (scratch / "member.bin").unlink()
    return {"status": "succeeded"}


def plain(scratch: Path) -> Any:
    monitor = StorageMonitor(MonitorConfig.resolve(path=scratch, sample_interval=0.01))

    @monitored(monitor)
    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        return work(monitor, scratch)

    return handler({}, FakeContext())


def powertools(scratch: Path) -> Any:
    from aws_lambda_powertools import Logger, Metrics, Tracer
    from aws_lambda_powertools.metrics import MetricUnit

    logger = Logger(service="packaging")
    tracer = Tracer(service="packaging")
    metrics = Metrics(namespace="ml-platform", service="packaging")
    monitor = StorageMonitor(MonitorConfig.resolve(path=scratch, sample_interval=0.01))

    @metrics.log_metrics
    @tracer.capture_lambda_handler
    @logger.inject_lambda_context
    @monitored(monitor)
    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        logger.info("packaging started")
        metrics.add_metric(name="ModelsPackaged", unit=MetricUnit.Count, value=1)
        result = work(monitor, scratch)
        logger.info("packaging finished")
        return result

    return handler({}, FakeContext())


if __name__ == "__main__":
    scenario, scratch = sys.argv[1], Path(sys.argv[2])
    outcome = plain(scratch) if scenario == "plain" else powertools(scratch)
    sys.stdout.flush()
    print("RESULT " + json.dumps(outcome), flush=True)
