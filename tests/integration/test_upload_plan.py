"""The upload's planned size comes from the archive's content when the plan read its headers
(issue 10, "Uploads": parts sized from the planned output), not from the ``.gz`` name."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from handler import packaging
from handler.events import SUCCEEDED, StrategyChoice, Target
from handler.locations.buffers import plan_upload
from handler.locations.local import Destination
from handler.locations.multipart import S3Destination, planned_output_bytes
from handler.locations.s3 import make_client
from handler.settings import HandlerSettings
from monitor.units import KiB, MiB
from tests.helpers import build_archive
from tests.integration.conftest import upload
from tests.s3server import MotoS3


def test_the_planned_size_is_the_archives_content_not_twice_the_gz(
    s3_env: MotoS3, bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shards = random.Random(3)
    files = {f"model/shard-{i}.bin": shards.randbytes(4 * MiB) for i in range(5)}
    archive = build_archive(tmp_path / "m.tar.gz", files | {"model/config.json": b"{}"}, "tar.gz")
    source = upload(s3_env.client(), bucket, "models/m.tar.gz", archive)
    destination = f"s3://{bucket}/packages/m.zip"
    planned: list[int] = []

    def spy(dest: Destination, src: str, size: int, content_bytes: int | None = None) -> None:
        plan_upload(dest, src, size, content_bytes)
        assert isinstance(dest, S3Destination)
        planned.append(dest.planned_bytes)

    monkeypatch.setattr(packaging, "plan_upload", spy)
    result = packaging.package_target(
        Target(source, destination),
        HandlerSettings(),
        s3=make_client(s3_env.url),
        choice=StrategyChoice.AUTO,
    )
    assert result.status == SUCCEEDED, result.error
    written = s3_env.client().head_object(Bucket=bucket, Key="packages/m.zip")["ContentLength"]
    by_name = planned_output_bytes(source, archive.stat().st_size)
    print(f"ZIP {written} B; planned {planned[-1]} B from content, {by_name} B by the .gz name")
    assert written <= planned[-1] <= written * 1.01 + 64 * KiB
    assert by_name > 1.9 * written  # what the name's heuristic would have planned
