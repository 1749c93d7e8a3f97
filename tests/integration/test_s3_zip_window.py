"""A ZIP source in S3 read through several ranged GETs at once (issue 10, "S3 sources of
every format are read through several ranged GETs at once"), against moto's server
behind the fault proxy on 127.0.0.1.

The members' data, read in the central directory's order, comes through a window of
ranges fetched in parallel (:class:`handler.locations.s3.S3RangeReader`); a reset, an
early end or a stall resumes from the byte reached, and a replaced object fails clearly.
"""

from __future__ import annotations

import hashlib
import threading
import zipfile
from pathlib import Path
from typing import Any

import pytest

from handler.errors import RemoteServiceError
from handler.events import StrategyChoice, Target, TargetResult
from handler.locations.s3 import S3Source, make_client
from handler.packaging import package_target
from handler.settings import HandlerSettings
from monitor.units import KiB, MiB
from tests.integration.conftest import upload
from tests.s3server import Fault, FaultProxy, MotoS3, cut_once

KEY = "models/big-member.zip"
MEMBER = 24 * MiB


@pytest.fixture(scope="module")
def big_member_zip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A ZIP of a small file and one 24 MiB member that does not compress."""
    path = tmp_path_factory.mktemp("zips") / "big-member.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        archive.writestr("config.json", b'{"model_type": "test"}')
        archive.writestr("model.safetensors", hashlib.shake_256(b"weights").digest(MEMBER))
    return path


def package(endpoint: str, source: str, destination: str) -> TargetResult:
    return package_target(
        Target(source, destination),
        HandlerSettings(max_attempts=1, stall_timeout=1),
        s3=make_client(endpoint, stall_timeout=1),
        choice=StrategyChoice.STREAM,
    )


def stored_bytes(s3: MotoS3, bucket: str, key: str) -> bytes:
    body: Any = s3.client().get_object(Bucket=bucket, Key=key)["Body"]
    return bytes(body.read())


@pytest.mark.parametrize(
    ("kind", "fault"),
    [
        ("reset", lambda at: Fault(200, reset_at=at)),
        ("early end", lambda at: Fault(200, end_at=at)),
        ("stall", lambda at: Fault(200, stall_after=at, stall_s=30)),
    ],
)
def test_a_zip_source_cut_at_half_resumes_and_reads_about_the_object_once(
    s3_env: MotoS3, bucket: str, big_member_zip: Path, kind: str, fault: Any
) -> None:
    # issue 10: a ZIP source was read serially; a reset must resume, not restart
    source = upload(s3_env.client(), bucket, KEY, big_member_zip)
    clean = package(s3_env.url, source, f"s3://{bucket}/clean.zip")
    assert clean.status == "succeeded", clean
    size = big_member_zip.stat().st_size
    proxy = FaultProxy(s3_env.url, range_rules=[cut_once(KEY, fault(size // 2))])
    try:
        result = package(proxy.url, source, f"s3://{bucket}/faulted.zip")
    finally:
        proxy.stop()
    sent = proxy.sent[f"/{bucket}/{KEY}"]
    gets = [p for m, p, _ in proxy.seen if m == "GET" and p.endswith(KEY)]
    uploads = [p for m, p, _ in proxy.seen if m == "POST" and p.endswith("?uploads")]
    print(f"zip {kind}: {sent} bytes read of {size} ({sent / size:.3f}x), {len(gets)} GETs")
    assert result.status == "succeeded" and result.attempts == 1, result
    assert len(uploads) == 1  # no new multipart upload
    assert stored_bytes(s3_env, bucket, "faulted.zip") == stored_bytes(s3_env, bucket, "clean.zip")
    assert size <= sent <= 1.1 * size
    assert proxy.stalled or kind != "stall"


def test_a_large_zip_member_is_read_through_several_gets_at_once(
    s3_env: MotoS3, bucket: str, big_member_zip: Path
) -> None:
    source = upload(s3_env.client(), bucket, KEY, big_member_zip)
    data_end = big_member_zip.stat().st_size - 1 * MiB  # not the end records
    lock = threading.Condition()
    holding = [0]
    most = [0]

    def meet(method: str, path: str, first: int, end: int) -> None:
        """Hold each GET of the member's data until another one is held too, or 5 s: a
        serial reader never has two held at once."""
        if method != "GET" or not path.endswith(KEY) or not 256 * KiB <= first < data_end:
            return
        with lock:
            holding[0] += 1
            most[0] = max(most[0], holding[0])
            lock.notify_all()
            lock.wait_for(lambda: most[0] >= 2, timeout=5)  # then the rest pass
            holding[0] -= 1

    proxy = FaultProxy(s3_env.url, range_rules=[meet])
    digest = hashlib.sha256()
    try:  # as packaging reads it (handler.archive.zip_members)
        with (
            S3Source(make_client(proxy.url), source).open_random_access() as handle,
            zipfile.ZipFile(handle) as archive,
            archive.open("model.safetensors") as member,
        ):
            while chunk := member.read(1 * MiB):
                digest.update(chunk)
    finally:
        proxy.stop()
    gets = [p for m, p, _ in proxy.seen if m == "GET" and p.endswith(KEY)]
    print(f"{MEMBER} B member: {len(gets)} GETs, at most {most[0]} held in flight at once")
    assert digest.digest() == hashlib.sha256(hashlib.shake_256(b"weights").digest(MEMBER)).digest()
    assert most[0] >= 2


def test_a_zip_source_replaced_mid_read_fails_clearly_and_is_not_mixed(
    s3_env: MotoS3, bucket: str, big_member_zip: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = upload(s3_env.client(), bucket, KEY, big_member_zip)
    monkeypatch.setenv("TMPWARDEN_SOURCE_CONNECTIONS", "1")  # ranges in order, one at a time
    arrived, release = threading.Event(), threading.Event()

    def hold_data(method: str, path: str, first: int, end: int) -> None:
        in_data = 8 * MiB <= first < 16 * MiB  # not the end records
        if method == "GET" and path.endswith(KEY) and in_data and not arrived.is_set():
            arrived.set()
            release.wait(60)

    proxy = FaultProxy(s3_env.url, range_rules=[hold_data])
    handle = S3Source(make_client(proxy.url), source).open_random_access()
    read = bytearray()
    failure: list[BaseException] = []

    def reader() -> None:
        try:
            with zipfile.ZipFile(handle) as archive, archive.open("model.safetensors") as member:
                while chunk := member.read(1 * MiB):
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
        handle.close()
        proxy.stop()
    print(failure)
    assert [type(f) for f in failure] == [RemoteServiceError], failure
    assert "ETag no longer matches" in str(failure[0])
    assert 412 in [status for m, _, status in proxy.seen if m == "GET"]
    original = hashlib.shake_256(b"weights").digest(MEMBER)
    assert 8 * MiB <= len(read) < MEMBER and bytes(read) == original[: len(read)]
    assert not [t for t in threading.enumerate() if t.name.startswith("tmpwarden-range")]


def test_a_replaced_zip_source_fails_the_target_with_one_clear_error(
    s3_env: MotoS3, bucket: str, big_member_zip: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = upload(s3_env.client(), bucket, KEY, big_member_zip)
    monkeypatch.setenv("TMPWARDEN_SOURCE_CONNECTIONS", "1")  # a GET after the replacement
    monkeypatch.setenv("TMPWARDEN_READ_AHEAD_MIB", "8")
    replaced = threading.Event()

    def replace_once(method: str, path: str, first: int, end: int) -> None:
        in_data = 8 * MiB <= first < 16 * MiB  # not the end records
        if method == "GET" and path.endswith(KEY) and in_data and not replaced.is_set():
            replaced.set()
            s3_env.client().put_object(Bucket=bucket, Key=KEY, Body=b"a new version")

    proxy = FaultProxy(s3_env.url, range_rules=[replace_once])
    try:
        result = package(proxy.url, source, f"s3://{bucket}/replaced.zip")
    finally:
        proxy.stop()
    print(result.error)
    assert result.status == "failed" and result.error is not None
    assert result.error["type"] == "RemoteServiceError"
    assert "ETag no longer matches" in result.error["message"]
    listed = s3_env.client().list_objects_v2(Bucket=bucket, Prefix="replaced.zip")
    assert not listed.get("Contents")  # nothing half-written
    assert not s3_env.client().list_multipart_uploads(Bucket=bucket).get("Uploads")
