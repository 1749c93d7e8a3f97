"""Which incident killed an invocation: a pure function of what the extension saw.

Evidence comes from the Telemetry API (``platform.runtimeDone`` / ``platform.report``:
status, errorType, ``metrics.maxMemoryUsedMB`` and ``metrics.memorySizeMB``), the
Extensions API (the SHUTDOWN event's ``shutdownReason``) and the extension's own last
samples of ``/tmp`` and of the runtime's resident memory. The rules, first match wins:

1. no incident: the status is ``success`` (or unknown) and no SHUTDOWN said
   ``failure`` or ``timeout``;
2. ``out_of_memory``: the errorType names OutOfMemory (``Runtime.OutOfMemory``); or
   ``maxMemoryUsedMB`` reached ``memorySizeMB`` -- Lambda reports a kill at the memory
   cap with status ``timeout`` too (DataDog/datadog-lambda-extension issue #1237); or the
   runtime's sampled RSS reached :data:`MEMORY_AT_LIMIT` of the limit;
3. ``tmp_full``: ``/tmp`` reached :data:`TMP_FULL` used (of used + available, as df) in
   the last samples, or the error names ENOSPC / "No space left on device";
4. ``timeout``: the status or the shutdown reason is ``timeout``;
5. ``crash``: anything else (status ``error`` / ``failure``, SHUTDOWN ``failure``).

Out of memory comes before timeout because a kill at the cap can be reported as a
timeout; before ``tmp_full`` because a tmpfs ``/tmp`` counts against memory.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

MEMORY_AT_LIMIT = 0.98
"""Sampled runtime RSS at or above this share of the limit counts as out of memory
(the runtime's RSS is below the sandbox's total by the extension's own few MiB)."""
TMP_FULL = 0.99
"""``/tmp`` used at or above this share counts as full (a writer fails with ENOSPC when
its next write does not fit, before the last block is used)."""
FAILED_STATUSES = frozenset({"error", "failure", "timeout"})
FAILED_SHUTDOWNS = frozenset({"failure", "timeout"})


class Classification(enum.StrEnum):
    """The kind of incident (the ``Classification`` dimension of ``Incidents``)."""

    OUT_OF_MEMORY = "out_of_memory"
    TIMEOUT = "timeout"
    TMP_FULL = "tmp_full"
    CRASH = "crash"


@dataclass(frozen=True, slots=True)
class Evidence:
    """What is known of one invocation's end; None means not known."""

    status: str | None = None
    error_type: str | None = None
    shutdown_reason: str | None = None
    max_memory_used_mb: float | None = None
    memory_size_mb: float | None = None
    peak_rss_fraction: float | None = None
    """The highest sampled runtime RSS of the last samples, share of the memory limit."""
    peak_tmp_fraction: float | None = None
    """The highest ``/tmp`` use of the last samples, share of used + available."""

    @property
    def failed(self) -> bool:
        return self.status in FAILED_STATUSES or self.shutdown_reason in FAILED_SHUTDOWNS


@dataclass(frozen=True, slots=True)
class Verdict:
    classification: Classification
    reason: str
    """One sentence naming the evidence that decided."""


def _memory_at_cap(e: Evidence) -> str | None:
    if e.error_type and "outofmemory" in e.error_type.lower():
        return f"errorType {e.error_type}"
    used, size = e.max_memory_used_mb, e.memory_size_mb
    if used is not None and size and used >= size:
        return f"maxMemoryUsedMB {used:g} reached memorySizeMB {size:g}"
    if e.peak_rss_fraction is not None and e.peak_rss_fraction >= MEMORY_AT_LIMIT:
        return f"the runtime's RSS reached {e.peak_rss_fraction:.1%} of the memory limit"
    return None


def _tmp_full(e: Evidence) -> str | None:
    text = (e.error_type or "").lower()
    if "enospc" in text or "no space left" in text:
        return f"errorType {e.error_type}"
    if e.peak_tmp_fraction is not None and e.peak_tmp_fraction >= TMP_FULL:
        return f"/tmp reached {e.peak_tmp_fraction:.1%} used"
    return None


def _ended(e: Evidence) -> str:
    said = []
    if e.status is not None:
        said.append(f"status {e.status}")
    if e.shutdown_reason is not None:
        said.append(f"SHUTDOWN {e.shutdown_reason}")
    return " and ".join(said) or "no status"


def classify(e: Evidence) -> Verdict | None:
    """The incident ``e`` shows, or None when the invocation did not fail (see the
    module docstring for the rules and their order)."""
    if not e.failed:
        return None
    ended = _ended(e)
    memory = _memory_at_cap(e)
    if memory is not None:
        return Verdict(Classification.OUT_OF_MEMORY, f"{ended}; {memory}")
    tmp = _tmp_full(e)
    if tmp is not None:
        return Verdict(Classification.TMP_FULL, f"{ended}; {tmp}")
    if e.status == "timeout" or e.shutdown_reason == "timeout":
        return Verdict(Classification.TIMEOUT, f"{ended}; memory and /tmp below their limits")
    detail = f" ({e.error_type})" if e.error_type else ""
    return Verdict(Classification.CRASH, f"{ended}{detail}; no limit reached")
