"""How much memory a target's work needs, checked against the function's limit before the
work starts; running short of memory or threads, wherever it surfaces, as one clear error.

The estimate, in bytes, is ``BASELINE_BYTES + parts in flight x part size + read buffers``:

- ``BASELINE_BYTES`` (90 MiB) was measured on 2026-11-30 with ``python -m handler invoke
  --memory 192`` to ``512`` on S3 to S3 (moto on 127.0.0.1, a 32 MiB tar.gz, the stream
  strategy, Python 3.11, boto3 1.3x): the targets' ``peak_rss_bytes`` were 117 to 126 MiB
  over six runs, less the 36 MiB of parts and read buffers below. It is the interpreter,
  boto3 and its client, the monitor and the threads' own memory, and the gzip decoder's
  10 MiB: then python-isal's threaded reader (an 8 MiB input buffer and 2 blocks of
  1 MiB), now :class:`handler.inflate.InflatingReader` (``RAW_BUFFER`` of 2 MiB and up
  to ``INFLATE_AHEAD``, 8, blocks of 1 MiB).
- ``EXTRACT_EXTRA_BYTES`` (20 MiB): the extract strategy's peaks in the same runs were
  140 to 146 MiB, 20 MiB over the stream strategy's (files written, then read back).
- Parts in flight, for an S3 destination: the parts uploading at once (one per 85 MB/s of
  ``TMPWARDEN_TARGET_MB_S``, at least 4 (2 for a function under 256 MB): 4 at the default
  75 MB/s, 5 at 375 MB/s;
  :class:`handler.locations.throughput.UploadPlan`), one filling, one being cut from the
  buffer, and one held back until the local header it carries is filled in
  (:mod:`handler.locations.multipart`, :mod:`handler.locations.parts`), each of the largest
  part the planned output reaches (the ZIP's size from the archive's headers when the plan
  read them, else the source's size, twice it for gzip:
  :func:`handler.locations.multipart.plan_part_size`, 8 MiB up to about 20 GiB). A local
  destination holds one ``WRITE_BUFFER`` instead; its deflate and writer threads
  (:mod:`handler.zipwriter.pipeline`) hold at most one 1 MiB block each, the blocks the
  zipper held itself before (measured: the traced peak of a 24 MiB member +0.3 MiB).
- Read buffers: ``READ_BUFFER``, the tar reader's and the gzip decoder's chunks and the
  zipper's (1 MiB each; a tar header's extension, read whole, is refused over
  :data:`handler.streams.MAX_FORWARD_READ`), plus for an S3 source the ranges read ahead
  (``TMPWARDEN_READ_AHEAD_MIB``, 32 MiB by default, less for a smaller object) and each
  connection's 256 KiB piece (:meth:`handler.locations.ranged.ReadPlan.bytes_held`), and
  for a ZIP in S3 its last read outside that window (``RANDOM_READ``, 64 KiB).

The buffers are freed to the operating system only if the C library can: glibc gives
each thread that contends for malloc its own arena (up to 8 per core), and buffers of
several MiB freed in one arena stay in it while another thread allocates in the next, so
peak RSS ran 50-60 MiB above the buffers (S3 to S3 of a 256 MiB artifact through
``lambda-600mbps``, 2026-11-30: 210-243 MiB; with one arena 178-180 MiB at the same CPU
time, 3.0 s). :func:`limit_malloc_arenas` keeps one arena at a cold start, unless
``MALLOC_ARENA_MAX`` is set.

``HEADROOM`` (10%) of the function's memory is kept free for the allocator's
fragmentation and the spread of the measured peaks. The function's memory is
``AWS_LAMBDA_FUNCTION_MEMORY_SIZE`` (its MemorySize, in MiB); outside Lambda nothing is
checked before the work, and exhaustion is still reported by :func:`explain`.
"""

from __future__ import annotations

import ctypes
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass

from handler.errors import ResourceExhaustedError
from monitor.units import MiB, format_size

__all__ = [
    "BASELINE_BYTES",
    "HEADROOM",
    "MemoryPlan",
    "check_memory",
    "explain",
    "function_memory_limit",
    "limit_malloc_arenas",
]

BASELINE_BYTES = 90 * MiB
EXTRACT_EXTRA_BYTES = 20 * MiB
READ_CHUNKS = 4
HEADROOM = 0.10
LAMBDA_MEMORY_ENV = "AWS_LAMBDA_FUNCTION_MEMORY_SIZE"
LAMBDA_MAX_MEMORY_MB = 10_240
MEMORY_STEP_MB = 64
MALLOC_ARENAS = 1
M_ARENA_MAX = -8
"""mallopt's parameter for the most arenas (glibc's malloc.h)."""
ARENA_ENV = "MALLOC_ARENA_MAX"
THREAD_START_MESSAGES = ("can't start new thread", "can't create new thread")
SETTING = (
    "the function's MemorySize in template.yaml (locally: python -m handler invoke --memory MB)"
)


@dataclass(frozen=True, slots=True)
class MemoryPlan:
    """The memory one target's work needs, in bytes, by part."""

    baseline: int
    parts: int
    part_size: int
    read_buffers: int
    extracting: int = 0

    @property
    def total(self) -> int:
        return self.baseline + self.parts * self.part_size + self.read_buffers + self.extracting

    def describe(self) -> str:
        """``90 MiB baseline + 4 parts of 8 MiB + 4 MiB of read buffers``."""
        held = (
            f"{self.parts} parts of {format_size(self.part_size)}"
            if self.parts > 1
            else f"a {format_size(self.part_size)} write buffer"
        )
        extracting = (
            f" + {format_size(self.extracting)} for the extract strategy" if self.extracting else ""
        )
        return (
            f"{format_size(self.baseline)} baseline + {held} + "
            f"{format_size(self.read_buffers)} of read buffers{extracting}"
        )


def limit_malloc_arenas(
    count: int = MALLOC_ARENAS, environ: Mapping[str, str] | None = None
) -> bool:
    """Cap glibc's malloc arenas at ``count`` (``mallopt(M_ARENA_MAX)``), so freed buffers
    go back to one heap the next buffer reuses; see the note above. Leaves a
    ``MALLOC_ARENA_MAX`` the environment sets alone. Returns whether the cap was applied
    (False without glibc)."""
    env = os.environ if environ is None else environ
    if env.get(ARENA_ENV):
        return False
    try:
        libc = ctypes.CDLL(None)  # the C library the interpreter runs on
        return bool(libc.mallopt(M_ARENA_MAX, count))
    except (OSError, AttributeError):  # no dlopen, or a C library without mallopt
        return False


def function_memory_limit(environ: Mapping[str, str] | None = None) -> int | None:
    """The function's memory in bytes (its MemorySize); None outside Lambda."""
    env = os.environ if environ is None else environ
    text = env.get(LAMBDA_MEMORY_ENV, "").strip()
    return int(text) * MiB if text.isdigit() and int(text) > 0 else None


def _advice(needed: int | None, limit: int | None) -> str:
    """The setting to raise, and to what: the need with HEADROOM free, in 64 MB steps; when
    the work ran short under a limit that should have sufficed, half as much again."""
    if needed is None:
        return f"raise {SETTING}"
    wanted = needed / (1 - HEADROOM)
    if limit is not None and wanted <= limit:
        wanted = limit * 1.5
    megabytes = math.ceil(wanted / MiB / MEMORY_STEP_MB) * MEMORY_STEP_MB
    return f"raise {SETTING} to at least {min(megabytes, LAMBDA_MAX_MEMORY_MB)} MB"


def check_memory(plan: MemoryPlan, limit: int | None) -> None:
    """Refuse, before any work, a plan that does not fit ``limit`` less HEADROOM."""
    if limit is None or plan.total <= limit * (1 - HEADROOM):
        return
    raise ResourceExhaustedError(
        "memory",
        needed=plan.total,
        limit=limit,
        detail=f"checked before starting: {plan.describe()}, with {HEADROOM:.0%} kept free",
        advice=_advice(plan.total, limit),
    )


def _exhaustion(exc: BaseException) -> tuple[str, str] | None:
    """(resource, detail) when ``exc`` or an exception it was raised from is a failure to
    allocate memory or start a thread."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, ResourceExhaustedError):
            return current.resource, current.detail
        if isinstance(current, MemoryError):
            return "memory", f"{type(current).__name__} {current}".strip()
        if isinstance(current, RuntimeError) and any(
            message in str(current) for message in THREAD_START_MESSAGES
        ):
            return "threads", f"{current}: a thread's stack is memory too"
        current = current.__cause__ or current.__context__
    return None


def explain(
    exc: BaseException, plan: MemoryPlan | None = None, limit: int | None = None
) -> ResourceExhaustedError | None:
    """The clear error for a memory or thread-start failure anywhere in ``exc``'s chain
    (with the plan's need and the setting to raise), or None for any other failure."""
    found = _exhaustion(exc)
    if found is None:
        return None
    resource, detail = found
    if isinstance(exc, ResourceExhaustedError) and exc.needed is not None:
        return exc
    needed = plan.total if plan is not None else None
    if plan is not None:
        detail = f"{detail}; {plan.describe()}" if detail else plan.describe()
    limit = limit if limit is not None else function_memory_limit()
    return ResourceExhaustedError(
        resource, needed=needed, limit=limit, detail=detail, advice=_advice(needed, limit)
    )
