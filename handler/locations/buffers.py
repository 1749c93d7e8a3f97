"""The memory one target's source and destination hold: read buffers, parts in flight.

The figures and their sources are in :mod:`handler.memory`'s note; this module adds up
what a (source, destination) pair holds, and loads the S3 modules (boto3) only for an
``s3://`` location.
"""

from __future__ import annotations

from handler.locations.local import READ_BUFFER, WRITE_BUFFER, is_s3
from handler.memory import (
    BASELINE_BYTES,
    EXTRACT_EXTRA_BYTES,
    READ_CHUNKS,
    MemoryPlan,
)

__all__ = ["plan_memory"]


def _part_size_for(output_bytes: int) -> int:
    from handler.locations.multipart import MAX_PARTS, part_size  # noqa: PLC0415 - boto3 only for S3

    written, number = 0, 1
    while number < MAX_PARTS and written + part_size(number) < output_bytes:
        written += part_size(number)
        number += 1
    return part_size(number)


def plan_memory(
    source: str, destination: str, source_size: int, *, extract: bool = False
) -> MemoryPlan:
    """The memory packaging ``source`` (``source_size`` bytes) into ``destination`` needs,
    with the stream strategy or (``extract``) the extract strategy; see
    :mod:`handler.memory`'s note for each figure."""
    read_buffers = READ_CHUNKS * READ_BUFFER
    extracting = EXTRACT_EXTRA_BYTES if extract else 0
    if is_s3(source) and source.lower().endswith(".zip"):
        from handler.locations.s3 import READAHEAD  # noqa: PLC0415

        read_buffers += READAHEAD
    elif is_s3(source):
        from handler.locations.ranged import ReadPlan  # noqa: PLC0415

        read_buffers += ReadPlan.from_env().bytes_held(source_size)
    if is_s3(destination):
        from handler.locations.multipart import MAX_IN_FLIGHT  # noqa: PLC0415

        parts = MAX_IN_FLIGHT + 3  # uploading, filling, being cut, held for its header
        size = _part_size_for(source_size)
        return MemoryPlan(BASELINE_BYTES, parts, size, read_buffers, extracting)
    return MemoryPlan(BASELINE_BYTES, 1, WRITE_BUFFER, read_buffers, extracting)
