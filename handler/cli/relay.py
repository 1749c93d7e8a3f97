"""The function's output, relayed as Lambda relays it to CloudWatch Logs."""

from __future__ import annotations

import subprocess
import threading
from typing import TextIO


def pump_output(process: subprocess.Popen[bytes], out: TextIO, logs: TextIO) -> int:
    """EMF lines (JSON with ``_aws``) to the EMF log; everything else to ``logs``."""
    assert process.stdout is not None and process.stderr is not None
    count = 0
    stderr_thread = threading.Thread(
        target=lambda: [logs.write(line.decode(errors="replace")) for line in process.stderr],  # type: ignore[union-attr]
        daemon=True,
    )
    stderr_thread.start()
    for raw in process.stdout:
        line = raw.decode(errors="replace")
        if line.startswith("{") and '"_aws"' in line:
            out.write(line if line.endswith("\n") else line + "\n")
            count += 1
        else:
            logs.write(line)
    stderr_thread.join()
    logs.flush()
    return count
