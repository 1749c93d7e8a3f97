"""Parallel ranged reads of S3 sources that resume where they broke (issue 10, "Read and
write at the ceiling"), against moto's server behind the fault proxy on 127.0.0.1.

A connection reset, an early end of body or a stall at half the source resumes from the
byte reached inside the same attempt: the ZIP is identical to a clean run's, one
multipart upload is made, and the proxy sends at most 1.1x the object's bytes.
"""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path
from typing import Any

import pytest

from handler.cli.sample import build_sample_artifact
from handler.errors import RemoteServiceError, SourceReadError
from handler.events import StrategyChoice, Target, TargetResult
from handler.locations.s3 import S3Source, make_client
from handler.packaging import package_target
from handler.settings import HandlerSettings
from monitor.units import MiB
from tests.integration.conftest import upload
from tests.s3server import Fault, FaultProxy, MotoS3, cut_once, stall_gets

KEY = "models/resume.tar.gz"


def package(endpoint: str, source: str, destination: str, attempts: int = 1) -> TargetResult:
    return package_target(
        Target(source, destination),
        HandlerSettings(max_attempts=attempts, stall_timeout=1),
        s3=make_client(endpoint, stall_timeout=1),
        choice=StrategyChoice.STREAM,
    )


def stored_bytes(s3: MotoS3, bucket: str, key: str) -> bytes:
    body: Any = s3.client().get_object(Bucket=bucket, Key=key)["Body"]
    return bytes(body.read())


@pytest.fixture
def clean_zip(s3_env: MotoS3, bucket: str, small_artifact: Path) -> tuple[str, bytes]:
    """The source's URL and the ZIP a run without faults makes of it."""
    source = upload(s3_env.client(), bucket, KEY, small_artifact)
    result = package(s3_env.url, source, f"s3://{bucket}/clean.zip")
    assert result.status == "succeeded", result
    return source, stored_bytes(s3_env, bucket, "clean.zip")


@pytest.mark.parametrize(
    ("kind", "fault"),
    [
        ("reset", lambda at: Fault(200, reset_at=at)),
        ("early end", lambda at: Fault(200, end_at=at)),
        ("stall", lambda at: Fault(200, stall_after=at, stall_s=30)),
    ],
)
def test_a_fault_at_half_the_source_resumes_from_the_byte_reached(
    s3_env: MotoS3,
    bucket: str,
    small_artifact: Path,
    clean_zip: tuple[str, bytes],
    kind: str,
    fault: Any,
) -> None:
    # issue 10: a connection reset at half the source failed `package` (ConnectionResetError)
    source, clean = clean_zip
    size = small_artifact.stat().st_size
    proxy = FaultProxy(s3_env.url, range_rules=[cut_once(KEY, fault(size // 2))])
    try:
        result = package(proxy.url, source, f"s3://{bucket}/faulted.zip")
    finally:
        proxy.stop()
    sent = proxy.sent[f"/{bucket}/{KEY}"]
    gets = [p for m, p, _ in proxy.seen if m == "GET" and p.endswith(KEY)]
    uploads = [p for m, p, _ in proxy.seen if m == "POST" and p.endswith("?uploads")]
    print(f"{kind}: {sent} bytes read of {size} ({sent / size:.3f}x), {len(gets)} GETs")
    assert result.status == "succeeded" and result.attempts == 1, result
    assert len(uploads) == 1  # no new multipart upload
    assert stored_bytes(s3_env, bucket, "faulted.zip") == clean
    assert size <= sent <= 1.1 * size
    assert proxy.stalled or kind != "stall"


def test_a_range_that_keeps_failing_names_the_byte_offset(
    s3_env: MotoS3, bucket: str, small_artifact: Path
) -> None:
    source = upload(s3_env.client(), bucket, KEY, small_artifact)
    proxy = FaultProxy(s3_env.url, [stall_gets(KEY, after=3 * MiB)])
    try:
        result = package(proxy.url, source, f"s3://{bucket}/never.zip")
    finally:
        proxy.stop()
    print(result.error)
    assert result.status == "failed" and result.error is not None
    assert result.error["type"] == "SourceReadError"
    assert f"reading stopped at byte {3 * MiB} of" in result.error["message"]
    assert not s3_env.client().list_multipart_uploads(Bucket=bucket).get("Uploads")


def test_an_object_replaced_mid_read_fails_and_is_not_mixed(
    s3_env: MotoS3,
    bucket: str,
    small_artifact: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    source = upload(s3_env.client(), bucket, KEY, small_artifact)
    monkeypatch.setenv("TMPWARDEN_SOURCE_CONNECTIONS", "1")  # ranges in order, one at a time
    arrived, release = threading.Event(), threading.Event()
    count = [0]

    def third_get(method: str, path: str, query: dict[str, list[str]]) -> None:
        if method == "GET" and path.endswith(KEY):
            count[0] += 1
            if count[0] == 3:
                arrived.set()
                release.wait(60)

    proxy = FaultProxy(s3_env.url, [third_get])
    stream = S3Source(make_client(proxy.url), source).open_stream()
    read = bytearray()
    failure: list[BaseException] = []

    def reader() -> None:
        try:
            while chunk := stream.read(1 * MiB):
                read.extend(chunk)
        except BaseException as exc:
            failure.append(exc)

    thread = threading.Thread(target=reader)
    try:
        thread.start()
        assert arrived.wait(60)
        s3_env.client().put_object(Bucket=bucket, Key=KEY, Body=b"a new version")
        release.set()
        thread.join(60)
    finally:
        release.set()
        stream.close()
        proxy.stop()
    assert [type(f) for f in failure] == [RemoteServiceError], failure
    assert "ETag no longer matches" in str(failure[0])
    assert 412 in [status for m, _, status in proxy.seen if m == "GET"]
    assert bytes(read) == small_artifact.read_bytes()[: len(read)]  # nothing of the new one


def test_the_read_ahead_stays_under_its_byte_bound(
    s3_env: MotoS3, bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = hashlib.shake_256(b"range").digest(64 * MiB)
    s3_env.client().put_object(Bucket=bucket, Key="big.bin", Body=data)
    monkeypatch.setenv("TMPWARDEN_SOURCE_CONNECTIONS", "2")
    monkeypatch.setenv("TMPWARDEN_READ_AHEAD_MIB", "8")
    source = S3Source(make_client(s3_env.url), f"s3://{bucket}/big.bin")
    digest = hashlib.sha256()
    with source.open_stream() as stream:
        raw: Any = stream.raw  # type: ignore[attr-defined]
        while chunk := stream.read(1 * MiB):
            digest.update(chunk)
    print(f"64 MiB read through an 8 MiB read-ahead: ranges held at most {raw.peak_held} B")
    assert digest.digest() == hashlib.sha256(data).digest()
    assert 0 < raw.peak_held <= 8 * MiB  # tests/unit/test_ranged.py traces the allocations


def test_a_failed_read_names_its_offset_and_ends_its_threads(
    s3_env: MotoS3, bucket: str, small_artifact: Path
) -> None:
    source = upload(s3_env.client(), bucket, KEY, small_artifact)
    proxy = FaultProxy(s3_env.url, [stall_gets(KEY, after=0)])
    try:
        stream = S3Source(make_client(proxy.url, stall_timeout=1), source).open_stream()
        with pytest.raises(SourceReadError, match="reading stopped at byte 0 of"):
            stream.read(1 * MiB)
        stream.close()
    finally:
        proxy.stop()
    assert not [t for t in threading.enumerate() if t.name.startswith("tmpwarden-range")]


def test_a_zip_source_read_at_random_resumes_too(
    s3_env: MotoS3, bucket: str, tmp_path: Path
) -> None:
    archive = build_sample_artifact(tmp_path / "m.zip", 20 * MiB, fmt="zip", seed=5)
    source = upload(s3_env.client(), bucket, "models/m.zip", archive)
    counting = FaultProxy(s3_env.url)
    try:
        clean = package(counting.url, source, f"s3://{bucket}/clean.zip")
    finally:
        counting.stop()
    assert clean.status == "succeeded", clean
    size = archive.stat().st_size
    clean_sent = counting.sent[f"/{bucket}/models/m.zip"]
    proxy = FaultProxy(
        s3_env.url, range_rules=[cut_once("models/m.zip", Fault(200, reset_at=size // 2))]
    )
    try:
        result = package(proxy.url, source, f"s3://{bucket}/faulted.zip")
    finally:
        proxy.stop()
    sent = proxy.sent[f"/{bucket}/models/m.zip"]
    print(f"zip: {clean_sent} B read clean, {sent} B with a reset, of {size} B")
    assert result.status == "succeeded" and result.attempts == 1, result
    assert stored_bytes(s3_env, bucket, "faulted.zip") == stored_bytes(s3_env, bucket, "clean.zip")
    assert sent <= clean_sent + 0.1 * size
