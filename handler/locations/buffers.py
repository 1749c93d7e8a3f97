"""The memory one target's source and destination hold: read buffers, parts in flight.

The figures and their sources are in :mod:`handler.memory`'s note; this module adds up
what a (source, destination) pair holds, and loads the S3 modules (boto3) only for an
``s3://`` location.
"""

from __future__ import annotations

from handler.locations.local import READ_BUFFER, WRITE_BUFFER, Destination, is_s3
from handler.locations.throughput import UploadPlan
from handler.members import ArchiveInfo, MemberKind
from handler.memory import (
    BASELINE_BYTES,
    EXTRACT_EXTRA_BYTES,
    READ_CHUNKS,
    MemoryPlan,
)

__all__ = ["plan_memory", "plan_upload", "zip_bytes_for"]

RECORDS_PER_MEMBER = 256
"""Bytes of ZIP records per member besides its name (written twice): local header (30)
and central header (46) with their Zip64 and other extra fields (APPNOTE 4.3.7, 4.3.12,
4.5.3), rounded up."""
DEFLATE_SLACK = 1000
"""Deflate may grow data that does not compress by up to 5 bytes per 64 KiB stored block
(RFC 1951 3.2.4) plus a few bytes per stream: one byte per 1,000 covers it."""
END_RECORDS = 1024
"""The end of the central directory with its Zip64 records (APPNOTE 4.3.14-4.3.16)."""


def zip_bytes_for(info: ArchiveInfo) -> int:
    """The most bytes the ZIP of ``info``'s members takes, from their declared sizes and
    names (tar headers or a ZIP's central directory, read by the plan): each file's size
    (deflate's worst growth included) and each member's records."""
    total = END_RECORDS
    for member in info.members:
        total += RECORDS_PER_MEMBER + 2 * len(member.name.encode("utf-8"))
        if member.kind is MemberKind.FILE:
            total += member.size + member.size // DEFLATE_SLACK
    return total


def _part_size_for(source: str, source_size: int, content_bytes: int | None) -> int:
    """The largest part the S3 writer uploads for the planned output (the same rule)."""
    from handler.locations.multipart import (  # noqa: PLC0415 - boto3 only for S3
        largest_part_size,
        plan_part_size,
        planned_output_bytes,
    )

    planned = planned_output_bytes(source, source_size, content_bytes)
    return largest_part_size(planned, plan_part_size(planned))


def plan_upload(
    destination: Destination, source: str, source_size: int, content_bytes: int | None = None
) -> None:
    """Give an S3 destination the planned output size of ``source`` (``source_size`` bytes;
    ``content_bytes``, the ZIP's size from the archive's headers when the plan read them:
    :func:`zip_bytes_for`), which its parts are sized from
    (:func:`handler.locations.multipart.plan_part_size`)."""
    if not is_s3(destination.name):
        return
    from handler.locations.multipart import (  # noqa: PLC0415 - boto3 only for S3
        S3Destination,
        planned_output_bytes,
    )

    if isinstance(destination, S3Destination):
        destination.planned_bytes = planned_output_bytes(source, source_size, content_bytes)


def plan_memory(
    source: str,
    destination: str,
    source_size: int,
    *,
    extract: bool = False,
    content_bytes: int | None = None,
) -> MemoryPlan:
    """The memory packaging ``source`` (``source_size`` bytes; ``content_bytes`` as for
    :func:`plan_upload`) into ``destination`` needs, with the stream strategy or
    (``extract``) the extract strategy; see :mod:`handler.memory`'s note for each figure."""
    read_buffers = READ_CHUNKS * READ_BUFFER
    extracting = EXTRACT_EXTRA_BYTES if extract else 0
    if is_s3(source):
        from handler.locations.ranged import ReadPlan  # noqa: PLC0415

        read_buffers += ReadPlan.from_env().bytes_held(source_size)
        if source.lower().endswith(".zip"):  # and its last read outside the window
            from handler.locations.s3 import RANDOM_READ  # noqa: PLC0415

            read_buffers += RANDOM_READ
    if is_s3(destination):
        # uploading (one per 85 MB/s wanted), filling, being cut, held for its header
        parts = UploadPlan.from_env().parts_in_flight + 3
        size = _part_size_for(source, source_size, content_bytes)
        return MemoryPlan(BASELINE_BYTES, parts, size, read_buffers, extracting)
    return MemoryPlan(BASELINE_BYTES, 1, WRITE_BUFFER, read_buffers, extracting)
