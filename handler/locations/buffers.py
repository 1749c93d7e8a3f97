"""The memory one target's source and destination hold: read buffers, parts in flight.

The figures and their sources are in :mod:`handler.memory`'s note; this module adds up
what a (source, destination) pair holds, and loads the S3 modules (boto3) only for an
``s3://`` location.
"""

from __future__ import annotations

from handler.locations.local import READ_BUFFER, WRITE_BUFFER, Destination, is_s3
from handler.memory import (
    BASELINE_BYTES,
    EXTRACT_EXTRA_BYTES,
    READ_CHUNKS,
    MemoryPlan,
)

__all__ = ["plan_memory", "plan_upload"]


def _part_size_for(source: str, source_size: int) -> int:
    """The largest part the S3 writer uploads for the planned output (the same rule)."""
    from handler.locations.multipart import (  # noqa: PLC0415 - boto3 only for S3
        largest_part_size,
        plan_part_size,
        planned_output_bytes,
    )

    planned = planned_output_bytes(source, source_size)
    return largest_part_size(planned, plan_part_size(planned))


def plan_upload(destination: Destination, source: str, source_size: int) -> None:
    """Give an S3 destination the planned output size of ``source`` (``source_size`` bytes),
    which its parts are sized from (:func:`handler.locations.multipart.plan_part_size`)."""
    if not is_s3(destination.name):
        return
    from handler.locations.multipart import (  # noqa: PLC0415 - boto3 only for S3
        S3Destination,
        planned_output_bytes,
    )

    if isinstance(destination, S3Destination):
        destination.planned_bytes = planned_output_bytes(source, source_size)


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
        size = _part_size_for(source, source_size)
        return MemoryPlan(BASELINE_BYTES, parts, size, read_buffers, extracting)
    return MemoryPlan(BASELINE_BYTES, 1, WRITE_BUFFER, read_buffers, extracting)
