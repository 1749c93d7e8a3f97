"""Property 1: an artifact larger than /tmp packages through it without filling it.

The artifacts are generated as they are read (never stored, like an S3 body) and are
larger than the size-limited tmpfs that is the worker's ``/tmp``; the worker samples that
tmpfs while it packages. The 1 GiB version through a 512 MiB ``/tmp`` is marked slow.
"""

from __future__ import annotations

import functools
import io
import math
import uuid
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import event, given
from hypothesis import strategies as st

from handler.cli.sample import build_sample_artifact
from monitor.units import GiB, KiB, MiB
from tests.helpers import python_env
from tests.lazy_archive import LazyMember
from tests.namespaces import require_namespaces
from tests.property.namespace_worker import NamespaceWorker
from tests.s3server import CREDENTIALS, MotoS3

SMALL_TMP = 4 * MiB
PAGE = 4 * KiB
"""tmpfs allocates whole pages: a file of n bytes takes n rounded up to 4 KiB."""
BUCKET = "packages"


def _round_up(size: int) -> int:
    return -(-size // PAGE) * PAGE


@pytest.fixture(scope="module")
def moto_s3() -> Iterator[MotoS3]:
    server = MotoS3()
    server.client().create_bucket(Bucket=BUCKET)
    yield server
    server.stop()


def _worker_env(s3: MotoS3 | None) -> dict[str, str]:
    env = python_env() | {"TMPWARDEN_EMF": "off", "TMPWARDEN_TRACING": "off"}
    if s3 is not None:
        env |= CREDENTIALS | {"AWS_ENDPOINT_URL": s3.url}
    return env


@pytest.fixture(scope="module")
def small_tmp_worker(
    tmp_path_factory: pytest.TempPathFactory, moto_s3: MotoS3
) -> Iterator[tuple[NamespaceWorker, Path]]:
    prefix = require_namespaces()
    root = tmp_path_factory.mktemp("bounded-tmp")
    tmp, out = root / "tmp", root / "out"
    tmp.mkdir()
    out.mkdir()
    worker = NamespaceWorker(prefix, {tmp: f"{SMALL_TMP}", out: "128m"}, _worker_env(moto_s3))
    yield worker, out
    worker.stop()


@functools.lru_cache(maxsize=64)
def _sha256(size: int, seed: int) -> str:
    return LazyMember("", size, seed).sha256()


small = st.lists(st.integers(0, 256 * KiB), max_size=3)
sizes = st.tuples(small, st.integers(SMALL_TMP + 1 * MiB, 32 * MiB), small).map(
    lambda parts: [*parts[0], parts[1], *parts[2]]
)
"""One member larger than /tmp by itself, among small ones."""
places = st.sampled_from(["outside /tmp", "in /tmp", "s3"])


@given(
    member_sizes=sizes,
    gzip=st.booleans(),
    place=places,
    store=st.booleans(),
    seed=st.integers(0, 3),
)
def test_property_1_bounded_tmp_for_artifacts_larger_than_tmp(
    small_tmp_worker: tuple[NamespaceWorker, Path],
    moto_s3: MotoS3,
    member_sizes: list[int],
    gzip: bool,
    place: str,
    store: bool,
    seed: int,
) -> None:
    """Property 1: for any artifact larger than /tmp, packaging (strategy ``auto``) needs
    no /tmp where the destination is outside it (a local path or S3), and at most the
    output's size where the destination is in /tmp: never archive + extracted + zip."""
    worker, out = small_tmp_worker
    members = [(f"model/part-{i}.bin", size, seed + i) for i, size in enumerate(member_sizes)]
    key = f"model-{uuid.uuid4().hex[:8]}.zip"
    destination = {
        "outside /tmp": str(out / key),
        "in /tmp": str(worker.tmp / key),
        "s3": f"s3://{BUCKET}/{key}",
    }[place]
    compression = "store" if store and place == "outside /tmp" else "deflate"
    reply = worker.run(
        {
            "members": members,
            "gzip": gzip,
            "destination": destination,
            "strategy": "auto",
            "compression": compression,
        }
    )
    assert reply["ok"], reply
    assert reply["strategy"] == "stream"
    used = reply["peak_tmp"] - reply["tmp_before"]
    if place == "in /tmp":
        assert used <= _round_up(reply["bytes_out"]), reply
        assert reply["tmp_listing"] == [key]
    else:
        assert used == 0, reply
        assert reply["tmp_listing"] == []
    ratio = used / reply["artifact_bytes"]
    shown = "= 0" if used == 0 else f"<= {math.ceil(ratio * 100)}%"
    event(f"{place}: peak /tmp / artifact {shown}")
    expected = {name: _sha256(size, s) for name, size, s in members}
    if place == "s3":
        body = moto_s3.client().get_object(Bucket=BUCKET, Key=key)["Body"].read()
        moto_s3.client().delete_object(Bucket=BUCKET, Key=key)
        with zipfile.ZipFile(io.BytesIO(body)) as archive:
            assert archive.testzip() is None
            assert {i.filename for i in archive.infolist() if not i.is_dir()} == set(expected)
    else:
        assert reply["digests"] == expected


@pytest.mark.slow
def test_property_1_a_1_gib_artifact_through_a_512_mib_tmp(tmp_path: Path) -> None:
    """Property 1 at full size: a real 1 GiB artifact (tar.gz of weight-like data, about
    950 MiB compressed, both larger than /tmp) packages through a 512 MiB /tmp
    (tmpfs) with no /tmp used at all."""
    prefix = require_namespaces()
    artifact = build_sample_artifact(tmp_path / "model-1g.tar.gz", 1 * GiB, seed=11)
    assert artifact.stat().st_size > 512 * MiB
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    worker = NamespaceWorker(prefix, {tmp: "512m"}, _worker_env(None))
    try:
        reply: dict[str, Any] = worker.run(
            {
                "source": str(artifact),
                "artifact_bytes": 1 * GiB,
                "destination": str(tmp_path / "model.zip"),
                "strategy": "auto",
                "compression": "deflate",
                "digests": False,
            }
        )
    finally:
        worker.stop()
    assert reply["ok"], reply
    assert reply["strategy"] == "stream"
    assert reply["peak_tmp"] == reply["tmp_before"] == reply["tmp_after"]
    assert reply["tmp_listing"] == []
    assert reply["dest_listing"] == ["model-1g.tar.gz", "model.zip", "tmp"]
    print(
        f"1 GiB artifact, 512 MiB /tmp: peak /tmp use {reply['peak_tmp'] - reply['tmp_before']} B"
    )
