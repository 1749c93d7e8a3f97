"""Cheap readings of the process's memory."""

from __future__ import annotations

import resource
from pathlib import Path

PROC_STATUS = Path("/proc/self/status")


def peak_rss_bytes() -> int:
    """This process's peak resident memory since it started (VmHWM).

    Unlike ``ru_maxrss``, VmHWM starts afresh at exec, so a process started from a
    large parent does not report the parent's size.
    """
    try:
        with PROC_STATUS.open("rb") as status:
            for line in status:
                if line.startswith(b"VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
