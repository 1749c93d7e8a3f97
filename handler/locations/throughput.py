"""How many parts of an S3 upload are in flight at once: from the throughput wanted.

AWS's guidance is one concurrent request per 85-90 MB/s wanted ("Performance design
patterns for Amazon S3", Amazon S3 User Guide; issue 10), so a target of ``T`` MB/s uploads
``ceil(T / 85)`` parts at once, at least 4: each part's request leaves a gap of its own
(its first-byte latency, the server storing the part, its response), and the parts in
flight are the only bytes made ahead of the network, so they must also cover a moment the
packaging falls behind (on a busy machine, a slice of CPU it waited for).
``TMPWARDEN_TARGET_MB_S`` sets the target (default 75 MB/s: a function's usual 600 Mbps,
4 parts; 375 MB/s for the 3 Gbps of a 10 GB function, 5 parts). Measured on 2026-11-30,
S3 to S3 of the 1 GiB sample through SeaweedFS and the ``lambda-600mbps`` profile of
:mod:`benchmarks.shaping`, variants interleaved on one server, median of 4 runs each: 4
parts in flight 1.117x the modelled floor (1.114-1.122) against 3 parts 1.144x
(1.122-1.175), and 5 parts no faster than 4 (1.119x against 1.118x); earlier, 2 parts
1.18x and 1.19x against 3 parts 1.14x and 1.12x. A function under
:data:`SMALL_FUNCTION_MB` (``AWS_LAMBDA_FUNCTION_MEMORY_SIZE``) keeps 2: a third part
raises the default memory plan from 167 to 175 MiB (a fourth to 183), more than a 192 MB
function has room for. Memory follows: each part in flight holds one part's bytes
(:func:`handler.locations.buffers.plan_memory`). No I/O and no boto3 here.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass

from handler.errors import ConfigurationError

__all__ = [
    "DEFAULT_TARGET_MB_S",
    "MB_S_PER_CONNECTION",
    "MIN_PARTS_IN_FLIGHT",
    "TARGET_ENV",
    "UploadPlan",
]

TARGET_ENV = "TMPWARDEN_TARGET_MB_S"
DEFAULT_TARGET_MB_S = 75.0
"""MB/s (10^6 bytes) a function moves sustained at 600 Mbps (issue 10)."""
MB_S_PER_CONNECTION = 85.0
"""MB/s one connection to S3 carries (AWS: 85-90 MB/s; the lower end, so targets are met)."""
MIN_PARTS_IN_FLIGHT = 4
SMALL_FUNCTION_MB = 256
"""Below this much memory a function uploads at least 2 parts at once, not 4."""
MEMORY_ENV = "AWS_LAMBDA_FUNCTION_MEMORY_SIZE"
MAX_TARGET_MB_S = 1250.0
"""10 Gbps: more than any function's network (3 Gbps at 10 GB of memory in 2026)."""


@dataclass(frozen=True, slots=True)
class UploadPlan:
    """How an S3 destination is written: ``target_mb_s`` MB/s wanted, hence
    :attr:`parts_in_flight` parts uploading at once."""

    target_mb_s: float = DEFAULT_TARGET_MB_S
    memory_mb: int | None = None
    """The function's memory (MB), when known: under :data:`SMALL_FUNCTION_MB` the least
    is 2 parts in flight."""

    @property
    def parts_in_flight(self) -> int:
        """``max(4, ceil(target / 85))`` (2 for a function under 256 MB): 4 at 75 MB/s,
        5 at 375 MB/s, 15 at 1,250 MB/s."""
        wanted = math.ceil(self.target_mb_s / MB_S_PER_CONNECTION - 1e-9)
        small = self.memory_mb is not None and self.memory_mb < SMALL_FUNCTION_MB
        return max(2 if small else MIN_PARTS_IN_FLIGHT, wanted)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> UploadPlan:
        """From ``TMPWARDEN_TARGET_MB_S`` (ConfigurationError names a bad value) and the
        function's memory (``AWS_LAMBDA_FUNCTION_MEMORY_SIZE``, when set)."""
        env = os.environ if environ is None else environ
        text = env.get(TARGET_ENV, "").strip() or f"{DEFAULT_TARGET_MB_S:g}"
        try:
            target = float(text)
        except ValueError:
            raise ConfigurationError(
                f"{TARGET_ENV}={text!r} must be a number of MB/s, e.g. 75 (600 Mbps) "
                "or 375 (3 Gbps)"
            ) from None
        if not 1 <= target <= MAX_TARGET_MB_S:
            raise ConfigurationError(
                f"{TARGET_ENV}={target:g} must be from 1 to {MAX_TARGET_MB_S:g} MB/s "
                "(the throughput wanted; one upload connection per 85 MB/s)"
            )
        memory = env.get(MEMORY_ENV, "").strip()
        return cls(target, int(memory) if memory.isdigit() else None)
