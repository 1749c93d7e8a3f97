"""Handlers for the sandbox's incident scenarios (``invoke --handler MODULE.FUNCTION``).

Each dies as a function dies in Lambda: ``allocate`` touches memory until the
resident-memory limit kills it, ``fill_tmp`` writes ``/tmp`` until ENOSPC and lets the
error end the invocation, ``sleep`` outlives the timeout. The event may set ``chunk_mib``
and ``pause_s`` (allocate, fill_tmp) or ``seconds`` (sleep); ``fill_then_sleep`` writes
``fill_mib`` to /tmp, then sleeps. The ``*_monitored`` handlers run
under the in-process monitor.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from monitor import monitored

MiB = 1024 * 1024


def allocate(event: dict[str, Any], context: Any) -> dict[str, Any]:
    chunk = int(event.get("chunk_mib", 4)) * MiB
    hoard: list[bytes] = []
    while True:
        hoard.append(b"x" * chunk)  # every page written: resident at once
        time.sleep(float(event.get("pause_s", 0.01)))


def fill_tmp(event: dict[str, Any], context: Any) -> dict[str, Any]:
    chunk = b"x" * (int(event.get("chunk_mib", 1)) * MiB)
    with Path("/tmp/fill.bin").open("wb") as out:
        while True:
            out.write(chunk)
            out.flush()  # ENOSPC at the write that does not fit
            time.sleep(float(event.get("pause_s", 0.005)))


def sleep(event: dict[str, Any], context: Any) -> dict[str, Any]:
    time.sleep(float(event.get("seconds", 60)))
    return {"status": "succeeded"}


def fill_then_sleep(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Write ``fill_mib`` MiB to /tmp, a MiB every ``pause_s``, then sleep ``seconds``."""
    chunk = b"x" * MiB
    with Path("/tmp/part.bin").open("wb") as out:
        for _ in range(int(event.get("fill_mib", 1))):
            out.write(chunk)
            out.flush()
            time.sleep(float(event.get("pause_s", 0.02)))
    return sleep(event, context)


def _monitored(handler: Any) -> Any:
    """``handler`` under the in-process monitor, sampling at 10 ms (the minimum interval),
    no periodic flush (a line before the end is a level change, written at once)."""
    return monitored(sample_interval=0.01, flush_interval=60.0, tracing="off")(handler)


allocate_monitored = _monitored(allocate)
fill_tmp_monitored = _monitored(fill_tmp)
sleep_monitored = _monitored(sleep)
fill_then_sleep_monitored = _monitored(fill_then_sleep)
