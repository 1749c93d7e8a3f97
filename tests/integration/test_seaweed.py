"""The real S3 server of the test bed (SeaweedFS on 127.0.0.1): it enforces the rules moto
lets pass, and tmpwarden packages S3 to S3 through it."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

import psutil
import pytest
from botocore.exceptions import ClientError

from benchmarks.seaweed import ACCESS_KEY, REGION, SECRET_KEY, SeaweedS3
from monitor.units import MiB
from tests.helpers import archive_digests, python_env

if TYPE_CHECKING:
    from mypy_boto3_s3.type_defs import CompletedPartTypeDef


def _bucket(server: SeaweedS3) -> str:
    name = f"models-{uuid.uuid4().hex[:12]}"
    server.client().create_bucket(Bucket=name)
    return name


def _run(module_and_args: list[str], tmp: Path | None = None) -> subprocess.CompletedProcess[str]:
    """``python -m MODULE ARGS...`` with the server's credentials (no session token), and
    ``TMPDIR`` at ``tmp`` when given."""
    env = python_env() | {
        "AWS_ACCESS_KEY_ID": ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
        "AWS_DEFAULT_REGION": REGION,
    }
    if tmp is not None:
        env["TMPDIR"] = str(tmp)
    env.pop("AWS_SESSION_TOKEN", None)
    return subprocess.run(
        [sys.executable, "-m", *module_and_args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_non_last_part_under_5_mib_is_refused_with_entity_too_small(seaweed: SeaweedS3) -> None:
    # S3's minimum part size (5 MiB except the last part); moto accepts such uploads.
    s3, bucket = seaweed.client(), _bucket(seaweed)
    upload = s3.create_multipart_upload(Bucket=bucket, Key="k")["UploadId"]
    parts: list[CompletedPartTypeDef] = [
        {
            "PartNumber": number,
            "ETag": s3.upload_part(
                Bucket=bucket, Key="k", UploadId=upload, PartNumber=number, Body=body
            )["ETag"],
        }
        for number, body in ((1, b"a" * MiB), (2, b"b" * 10))
    ]
    with pytest.raises(ClientError) as refused:
        s3.complete_multipart_upload(
            Bucket=bucket, Key="k", UploadId=upload, MultipartUpload={"Parts": parts}
        )
    assert refused.value.response["Error"]["Code"] == "EntityTooSmall"
    s3.abort_multipart_upload(Bucket=bucket, Key="k", UploadId=upload)
    with pytest.raises(ClientError) as named:
        s3.create_bucket(Bucket="ab")  # bucket names have 3 to 63 characters
    assert named.value.response["Error"]["Code"] == "InvalidBucketName"


def test_package_s3_to_s3_round_trips_through_the_real_server(
    seaweed: SeaweedS3, small_artifact: Path, tmp_path: Path
) -> None:
    s3, bucket = seaweed.client(), _bucket(seaweed)
    s3.upload_file(str(small_artifact), bucket, "in/model.tar.gz")
    source, dest = f"s3://{bucket}/in/model.tar.gz", f"s3://{bucket}/out/model.zip"
    result = _run(["handler", "package", "--endpoint-url", seaweed.url, source, dest], tmp_path)
    assert result.returncode == 0, result.stderr
    packaged = tmp_path / "model.zip"
    s3.download_file(bucket, "out/model.zip", str(packaged))
    assert archive_digests(packaged) == archive_digests(small_artifact)
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


def test_the_copy_of_make_bench_copies_every_byte(seaweed: SeaweedS3) -> None:
    # benchmarks/copy_s3.py is the copy tmpwarden's S3 timings are shown beside: one that
    # lost or reordered bytes would flatter the copy
    s3, bucket = seaweed.client(), _bucket(seaweed)
    body = os.urandom(MiB) * 19 + os.urandom(12_345)  # 3 parts of boto3's 8 MiB
    s3.put_object(Bucket=bucket, Key="in/model.tar.gz", Body=body)
    result = _run(["benchmarks.copy_s3", seaweed.url, bucket, "in/model.tar.gz", "out/copy.bin"])
    assert result.returncode == 0, result.stderr
    assert s3.get_object(Bucket=bucket, Key="out/copy.bin")["Body"].read() == body


def test_the_copy_floor_fails_and_writes_nothing_when_its_download_fails(
    seaweed: SeaweedS3,
) -> None:
    # the download's end closed the pipe like a finished one: the uploader took the EOF as
    # the end of the object and stored an empty (or truncated) out/copy.bin before failing
    s3, bucket = seaweed.client(), _bucket(seaweed)
    result = _run(["benchmarks.copy_s3", seaweed.url, bucket, "in/missing.tar.gz", "out/copy.bin"])
    assert result.returncode != 0
    assert "404" in result.stderr
    assert s3.list_objects_v2(Bucket=bucket, Prefix="out/").get("KeyCount") == 0
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


def test_listens_only_on_127_0_0_1_and_stop_ends_it_with_its_sockets(tmp_path: Path) -> None:
    server = SeaweedS3(tmp_path / "weed").start()
    pid = server.pid
    assert pid is not None
    try:
        listening = {
            (c.laddr.ip, c.laddr.port)
            for c in psutil.Process(pid).net_connections(kind="inet")
            if c.status == psutil.CONN_LISTEN
        }
    finally:
        server.stop()
    assert {ip for ip, _ in listening} == {"127.0.0.1"}
    assert set(server.ports.values()) <= {port for _, port in listening}
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert not list(Path("/tmp").glob(f"seaweedfs-*-grpc-{server.ports['s3.grpc']}.sock"))


def test_the_server_dies_with_the_process_that_started_it(tmp_path: Path) -> None:
    # pytest-timeout ends a stuck session with os._exit: no finally, no atexit runs
    code = (
        "import os, sys; from pathlib import Path; from benchmarks.seaweed import SeaweedS3\n"
        "s = SeaweedS3(Path(sys.argv[1])).start()\n"
        "print(s.pid, *s.ports.values(), flush=True)\n"
        "os._exit(1)\n"
    )
    started = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "weed")],
        env=python_env(),
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    pid, *ports = (int(word) for word in started.stdout.split())
    for port in ports:  # what os._exit left behind
        for name in ("master", "volume", "filer", "s3"):
            Path(f"/tmp/seaweedfs-{name}-grpc-{port}.sock").unlink(missing_ok=True)
    deadline = time.monotonic() + 10
    while psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
        assert time.monotonic() < deadline, f"weed {pid} outlived its parent"
        time.sleep(0.1)
