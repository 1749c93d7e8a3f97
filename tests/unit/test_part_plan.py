"""Upload part size and count follow the planned output size (issue 10, "Uploads"),
computed without data: the rule of :mod:`handler.locations.multipart` fed to a PartCutter."""

from __future__ import annotations

from typing import Any

import pytest

from handler.locations.buffers import plan_memory, plan_upload
from handler.locations.multipart import (
    MAX_PART_SIZE,
    MAX_PARTS,
    S3Destination,
    largest_part_size,
    part_size,
    plan_part_size,
    planned_output_bytes,
)
from handler.locations.parts import Part
from monitor.units import GiB, MiB, TiB

MIN_PART_SIZE = 5 * MiB  # S3's smallest part but the last


def parts_for(output_bytes: int, planned_bytes: int) -> tuple[int, int, int]:
    """(first part size, parts, largest part) an output of ``output_bytes`` is cut into when
    ``planned_bytes`` was planned: arithmetic over the writer's rule, no data."""
    first = plan_part_size(planned_bytes)
    sizes: list[int] = []
    written = 0
    while written < output_bytes:
        size = min(part_size(len(sizes) + 1, first), output_bytes - written)
        sizes.append(size)
        written += size
    return first, len(sizes), max(sizes)


def test_a_60_gib_plan_stays_well_under_10000_parts() -> None:
    first, count, largest = parts_for(60 * GiB, 60 * GiB)
    print(f"60 GiB: {count} parts of {first // MiB} MiB")
    assert (first, count, largest) == (32 * MiB, 1920, 32 * MiB)
    assert count <= MAX_PARTS // 4


def test_the_largest_output_s3_allows_fits() -> None:
    output = int(48.8 * TiB)
    first, count, _ = parts_for(output, output)
    print(f"48.8 TiB: {count} parts of {first // GiB} GiB")
    assert first == MAX_PART_SIZE and count <= MAX_PARTS
    assert count == 9995


def test_an_output_4x_larger_than_planned_still_fits_by_doubling() -> None:
    for planned in (100 * MiB, 60 * GiB, 2 * TiB):
        first, count, largest = parts_for(4 * planned, planned)
        print(f"planned {planned // MiB} MiB, 4x written: {count} parts of {first // MiB}", end="")
        print(f" to {largest // MiB} MiB")
        assert count <= MAX_PARTS
    assert parts_for(240 * GiB, 60 * GiB)[1:] == (4295, 128 * MiB)


def test_small_outputs_keep_8_mib_parts() -> None:
    for planned in (0, 1, 100 * MiB, 19 * GiB):
        assert plan_part_size(planned) == 8 * MiB
    assert parts_for(100 * MiB, 100 * MiB) == (8 * MiB, 13, 8 * MiB)


def test_every_part_size_is_within_s3s_limits() -> None:
    for planned in (0, 1 * GiB, 60 * GiB, 1 * TiB, int(48.8 * TiB), 100 * TiB):
        first = plan_part_size(planned)
        sizes = [part_size(n, first) for n in range(1, MAX_PARTS + 1)]
        assert min(sizes) >= MIN_PART_SIZE and max(sizes) <= MAX_PART_SIZE
        assert sizes == sorted(sizes)  # never shrinks: the plan only grows past itself


def test_the_memory_plan_counts_the_parts_the_writer_uploads() -> None:
    planned = planned_output_bytes("s3://m/a.tar", 60 * GiB)
    memory = plan_memory("s3://m/a.tar", "s3://p/a.zip", 60 * GiB)
    assert memory.part_size == largest_part_size(planned, plan_part_size(planned)) == 32 * MiB


def test_a_gzip_source_plans_twice_its_size() -> None:
    assert planned_output_bytes("s3://m/a.tar.gz", 30 * GiB) == 60 * GiB
    assert planned_output_bytes("/x/a.tgz", 1) == 2
    assert planned_output_bytes("s3://m/a.tar", 30 * GiB) == 30 * GiB
    assert plan_memory("s3://m/a.tar.gz", "s3://p/a.zip", 30 * GiB).part_size == 32 * MiB


class _Client:
    def create_multipart_upload(self, **_: Any) -> dict[str, str]:
        return {"UploadId": "u-1"}

    def abort_multipart_upload(self, **_: Any) -> None:
        pass


def test_the_writer_cuts_its_parts_at_the_planned_size(monkeypatch: pytest.MonkeyPatch) -> None:
    destination = S3Destination(_Client(), "s3://p/a.zip")  # type: ignore[arg-type]
    plan_upload(destination, "s3://m/a.tar", 60 * GiB)
    writer = destination.begin()
    sent: list[tuple[int, int]] = []

    def record(part: Part) -> None:
        sent.append((part.number, len(part.data)))

    monkeypatch.setattr(writer, "_submit", record)
    writer.write(bytes(32 * MiB + 1))
    assert sent == [(1, 32 * MiB)]
    writer.abort()


def test_the_archives_content_size_replaces_the_gzip_heuristic() -> None:
    # a 30 GiB tar.gz of weights holding 33 GiB: 2x by name would plan 60 GiB (32 MiB parts)
    assert planned_output_bytes("s3://m/a.tar.gz", 30 * GiB, 33 * GiB) == 33 * GiB
    assert planned_output_bytes("s3://m/a.tar.gz", 30 * GiB, None) == 60 * GiB
    by_content = plan_memory("s3://m/a.tar.gz", "s3://p/a.zip", 30 * GiB, content_bytes=33 * GiB)
    assert by_content.part_size == 16 * MiB
    destination = S3Destination(_Client(), "s3://p/a.zip")  # type: ignore[arg-type]
    plan_upload(destination, "s3://m/a.tar.gz", 30 * GiB, 33 * GiB)
    assert destination.begin().first_part_size == 16 * MiB
