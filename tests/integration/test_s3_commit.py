"""The S3 commit point (issue 8, item 4), against moto's server behind a fault proxy.

CompleteMultipartUpload is the commit: a target is ``succeeded`` only when the object
at the key is the one it completed (by ETag), ``failed`` only when nothing of it is
there, and ``unverified`` when it was written but could not be checked. Nothing is
deleted that the attempt cannot prove is its own.
"""

from __future__ import annotations

import hashlib
import io
import json
import threading
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from handler.app import lambda_handler
from handler.cli.main import EXIT_UNVERIFIED, main
from handler.cli.sample import build_sample_artifact
from handler.events import StrategyChoice, Target, TargetResult
from handler.locations.commit import multipart_etag
from handler.locations.multipart import FIRST_PART_SIZE
from handler.locations.s3 import make_client
from handler.packaging import package_target
from handler.settings import HandlerSettings
from monitor.units import MiB
from tests.helpers import archive_digests
from tests.integration.conftest import upload
from tests.s3server import (
    Fault,
    FaultProxy,
    MotoS3,
    completes_of,
    faults_in_turn,
    heads_of,
    hold,
)


class Context:
    aws_request_id = "req-commit"

    def get_remaining_time_in_millis(self) -> int:
        return 600_000


def no_uploads(s3: MotoS3, bucket: str) -> bool:
    return not s3.client().list_multipart_uploads(Bucket=bucket).get("Uploads")


def stored(s3: MotoS3, bucket: str, key: str, tmp_path: Path) -> tuple[str, dict[str, str]]:
    """(ETag, member digests) of the object at the key."""
    local = tmp_path / f"stored-{key.replace('/', '_')}"
    s3.client().download_file(bucket, key, str(local))
    return str(s3.client().head_object(Bucket=bucket, Key=key)["ETag"]), archive_digests(local)


def etag_of_parts(data: bytes) -> str:
    """What S3 makes a multipart object's ETag from tmpwarden's 8 MiB parts."""
    parts = [data[i : i + FIRST_PART_SIZE] for i in range(0, len(data), FIRST_PART_SIZE)]
    return multipart_etag([hashlib.md5(p, usedforsecurity=False).digest() for p in parts])


@pytest.fixture
def other_artifact(tmp_path: Path) -> Path:
    return build_sample_artifact(tmp_path / "other.tar.gz", 12 * MiB, seed=9)


def run(endpoint: str, source: str, destination: str, if_exists: str = "overwrite") -> TargetResult:
    return package_target(
        Target(source, destination, if_exists=if_exists),  # type: ignore[arg-type]
        HandlerSettings(max_attempts=2),
        s3=make_client(endpoint),
        choice=StrategyChoice.STREAM,
    )


def test_two_writers_never_report_succeeded_for_an_object_that_is_gone(
    s3_env: MotoS3, bucket: str, small_artifact: Path, other_artifact: Path, tmp_path: Path
) -> None:
    # issue 8 item 4: X's late size check deleted Y's object after Y reported succeeded
    client = s3_env.client()
    source_x = upload(client, bucket, "models/x.tar.gz", small_artifact)
    source_y = upload(client, bucket, "models/y.tar.gz", other_artifact)
    destination = f"s3://{bucket}/packages/shared.zip"
    x_at_check, y_done = threading.Event(), threading.Event()
    # X completes, then its check (HEAD of the destination) waits until Y has finished
    proxy = FaultProxy(
        s3_env.url,
        [hold(lambda m, p, q: m == "HEAD" and p.endswith("/shared.zip"), x_at_check, y_done)],
    )
    results: dict[str, TargetResult] = {}
    writer_x = threading.Thread(
        target=lambda: results.__setitem__("x", run(proxy.url, source_x, destination))
    )
    try:
        writer_x.start()
        assert x_at_check.wait(120), "X never reached its check"
        results["y"] = run(s3_env.url, source_y, destination)  # Y: straight to S3, after X
        y_done.set()
        writer_x.join(120)
    finally:
        y_done.set()
        proxy.stop()
    x, y = results["x"], results["y"]
    print(f"X: {x.status} {x.error}; Y: {y.status}")
    assert y.status == "succeeded"
    assert x.status == "failed" and x.error is not None
    assert x.error["type"] == "DestinationReplacedError" and x.attempts == 1
    assert "another writer replaced" in x.error["message"]
    etag, digests = stored(s3_env, bucket, "packages/shared.zip", tmp_path)
    assert digests == archive_digests(other_artifact)  # Y's object is in place
    assert f"the key holds ETag {etag}" in x.error["message"]
    assert not any(method == "DELETE" for method, _, _ in proxy.seen)
    assert no_uploads(s3_env, bucket)


def test_a_head_failing_after_complete_is_unverified_with_the_object_in_place(
    s3_env: MotoS3,
    bucket: str,
    small_artifact: Path,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    source = upload(s3_env.client(), bucket, "models/m.tar.gz", small_artifact)
    proxy = FaultProxy(s3_env.url, [heads_of("/out/m.zip", Fault(503, "ServiceUnavailable"))])
    monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)
    try:
        response = lambda_handler(
            {"targets": [{"source": source, "destination": f"s3://{bucket}/out/m.zip"}]},
            Context(),
        )
    finally:
        proxy.stop()
    target = response["targets"][0]
    print(json.dumps(target["error"]))
    assert response["status"] == "unverified" and target["status"] == "unverified"
    assert target["attempts"] == 1  # written: never retried as if nothing happened
    assert target["error"]["type"] == "CommitUnverifiedError"
    etag, digests = stored(s3_env, bucket, "out/m.zip", tmp_path)
    assert etag in target["error"]["message"]  # names the ETag to check
    assert digests == archive_digests(small_artifact)  # the object is in place
    assert no_uploads(s3_env, bucket)


@pytest.mark.parametrize(
    "faults",
    [
        # committed, the answer lost; the retry is answered NoSuchUpload (some S3-compatible
        # servers; AWS answers 200)
        (Fault(500, forward=True), Fault(404, "NoSuchUpload")),
        # committed, then every retry fails: the abort finds no upload, the look decides
        (Fault(500, forward=True), *[Fault(503, "SlowDown")] * 3),
        # a 200 carrying an error body (botocore raises for it), then the retry passes
        (Fault(200, "InternalError"),),
    ],
    ids=["retry-NoSuchUpload", "retries-exhausted", "200-with-error-body"],
)
def test_a_complete_whose_answer_is_lost_looks_before_it_concludes(
    s3_env: MotoS3, bucket: str, small_artifact: Path, tmp_path: Path, faults: tuple[Fault, ...]
) -> None:
    source = upload(s3_env.client(), bucket, "models/m.tar.gz", small_artifact)
    proxy = FaultProxy(s3_env.url, [faults_in_turn(completes_of("/out/c.zip"), *faults)])
    try:
        result = run(proxy.url, source, f"s3://{bucket}/out/c.zip")
    finally:
        proxy.stop()
    print(result.status, result.attempts, [s for m, _, s in proxy.seen if m == "POST"])
    assert result.status == "succeeded", result.error
    assert result.attempts == 1
    etag, digests = stored(s3_env, bucket, "out/c.zip", tmp_path)
    assert digests == archive_digests(small_artifact)
    data = io.BytesIO()
    s3_env.client().download_fileobj(bucket, "out/c.zip", data)
    assert etag == etag_of_parts(data.getvalue())  # the ETag the writer computes
    assert no_uploads(s3_env, bucket)


def test_no_such_upload_while_the_upload_is_open_is_failed_and_aborted(
    s3_env: MotoS3, bucket: str, small_artifact: Path
) -> None:
    source = upload(s3_env.client(), bucket, "models/m.tar.gz", small_artifact)
    # the Complete never reached S3; its answer says NoSuchUpload; the look finds nothing
    proxy = FaultProxy(
        s3_env.url, [faults_in_turn(completes_of("/out/n.zip"), Fault(404, "NoSuchUpload"))]
    )
    try:
        result = run(proxy.url, source, f"s3://{bucket}/out/n.zip")
    finally:
        proxy.stop()
    assert result.status == "succeeded" and result.attempts == 2  # aborted, then retried
    assert no_uploads(s3_env, bucket)


def test_if_exists_fail_keeps_the_existing_object(
    s3_env: MotoS3, bucket: str, small_artifact: Path
) -> None:
    client = s3_env.client()
    source = upload(client, bucket, "models/m.tar.gz", small_artifact)
    client.put_object(Bucket=bucket, Key="out/once.zip", Body=b"the published package")
    before = client.head_object(Bucket=bucket, Key="out/once.zip")["ETag"]
    result = run(s3_env.url, source, f"s3://{bucket}/out/once.zip", if_exists="fail")
    assert result.status == "failed" and result.attempts == 1
    assert result.error is not None and result.error["type"] == "DestinationExistsError"
    assert "out/once.zip" in result.error["message"]
    assert "if_exists" in result.error["message"]
    assert client.head_object(Bucket=bucket, Key="out/once.zip")["ETag"] == before
    assert no_uploads(s3_env, bucket)


def test_if_exists_fail_refuses_at_the_complete_when_another_writer_got_there_first(
    s3_env: MotoS3, bucket: str, small_artifact: Path
) -> None:
    client = s3_env.client()
    source = upload(client, bucket, "models/m.tar.gz", small_artifact)
    at_complete, other_wrote = threading.Event(), threading.Event()
    proxy = FaultProxy(s3_env.url, [hold(completes_of("/out/race.zip"), at_complete, other_wrote)])
    results: list[TargetResult] = []
    writer = threading.Thread(
        target=lambda: results.append(
            run(proxy.url, source, f"s3://{bucket}/out/race.zip", if_exists="fail")
        )
    )
    try:
        writer.start()  # passes the check before the upload: the key is free
        assert at_complete.wait(120)
        client.put_object(Bucket=bucket, Key="out/race.zip", Body=b"the other writer's")
        other_wrote.set()
        writer.join(120)
    finally:
        other_wrote.set()
        proxy.stop()
    result = results[0]
    assert result.status == "failed" and result.error is not None
    assert result.error["type"] == "DestinationExistsError"
    assert any(m == "POST" and status == 412 for m, _, status in proxy.seen)  # If-None-Match
    body = client.get_object(Bucket=bucket, Key="out/race.zip")["Body"].read()
    assert body == b"the other writer's"
    assert no_uploads(s3_env, bucket)


def test_the_cli_exits_3_with_json_when_the_commit_is_unverified(
    s3_env: MotoS3, bucket: str, small_artifact: Path
) -> None:
    proxy = FaultProxy(s3_env.url, [heads_of("/out/cli.zip", Fault(500))])
    out, err = io.StringIO(), io.StringIO()
    try:
        code = main(
            [
                "package",
                str(small_artifact),
                f"s3://{bucket}/out/cli.zip",
                "--endpoint-url",
                proxy.url,
                "--json",
            ],
            out=out,
            err=err,
        )
    finally:
        proxy.stop()
    assert code == EXIT_UNVERIFIED == 3
    shown = json.loads(out.getvalue())
    assert shown["status"] == "unverified" and shown["error"]["type"] == "CommitUnverifiedError"
    assert err.getvalue().startswith("error: ") and err.getvalue().count("\n") == 1
    head = s3_env.client().head_object(Bucket=bucket, Key="out/cli.zip")
    assert shown["etag"] == head["ETag"]


def test_the_cli_if_exists_fail_keeps_a_local_file(tmp_path: Path, small_artifact: Path) -> None:
    existing = tmp_path / "m.zip"
    existing.write_bytes(b"published")
    err = io.StringIO()
    code = main(
        ["package", str(small_artifact), str(existing), "--if-exists", "fail"],
        out=io.StringIO(),
        err=err,
    )
    assert code == 1 and existing.read_bytes() == b"published"
    assert "--if-exists fail" in err.getvalue()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.zip"]


def test_head_object_error_code_is_what_the_proxy_says(s3_env: MotoS3, bucket: str) -> None:
    """The proxy's faults reach botocore as S3 errors (a check of the test's own tool)."""
    proxy = FaultProxy(s3_env.url, [heads_of("/k", Fault(404, "NoSuchKey"))])
    try:
        with pytest.raises(ClientError) as caught:
            make_client(proxy.url).head_object(Bucket=bucket, Key="k")
    finally:
        proxy.stop()
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
