"""The packaging Lambda against a real S3 HTTP endpoint (moto's server on 127.0.0.1)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from handler.app import lambda_handler
from handler.cli.sample import build_sample_artifact
from monitor import records
from monitor.units import MiB
from tests.helpers import archive_digests
from tests.integration.conftest import upload
from tests.s3server import FaultProxy, MotoS3, Rule, fail_first_gets, fail_upload_parts_from


class Context:
    aws_request_id = "req-test"

    def __init__(self, remaining_ms: int = 600_000) -> None:
        self.remaining_ms = remaining_ms

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms


def download_digests(s3: MotoS3, url: str, tmp_path: Path) -> dict[str, str]:
    bucket, _, key = url.removeprefix("s3://").partition("/")
    local = tmp_path / Path(key).name
    s3.client().download_file(bucket, key, str(local))
    return archive_digests(local)


def no_uploads_and_no_object(s3: MotoS3, bucket: str, key: str) -> None:
    client = s3.client()
    assert not client.list_multipart_uploads(Bucket=bucket).get("Uploads")
    with pytest.raises(ClientError) as caught:
        client.head_object(Bucket=bucket, Key=key)
    assert caught.value.response["Error"]["Code"] in ("404", "NoSuchKey")


def scratch_entries() -> list[str]:
    import os

    return sorted(p.name for p in Path(os.environ["TMPDIR"]).iterdir())


def test_s3_to_s3_streams_and_verifies(
    s3_env: MotoS3, bucket: str, small_artifact: Path, tmp_path: Path
) -> None:
    source = upload(s3_env.client(), bucket, "models/m.tar.gz", small_artifact)
    destination = f"s3://{bucket}/packages/m.zip"
    response = lambda_handler(
        {"targets": [{"source": source, "destination": destination}], "strategy": "stream"},
        Context(),
    )
    assert response["status"] == "succeeded", response
    target = response["targets"][0]
    assert target["strategy"] == "stream" and target["attempts"] == 1
    assert target["files"] == 8 and target["bytes_in"] == small_artifact.stat().st_size
    assert download_digests(s3_env, destination, tmp_path) == archive_digests(small_artifact)
    assert scratch_entries() == []


def test_zip_sources_are_read_with_ranged_gets(s3_env: MotoS3, bucket: str, tmp_path: Path) -> None:
    archive = build_sample_artifact(tmp_path / "m.zip", 20 * MiB, fmt="zip", seed=5)
    source = upload(s3_env.client(), bucket, "models/m.zip", archive)
    destination = f"s3://{bucket}/packages/from-zip.zip"
    response = lambda_handler(
        {"targets": [{"source": source, "destination": destination, "include": ["*.json"]}]},
        Context(),
    )
    assert response["status"] == "succeeded", response
    digests = download_digests(s3_env, destination, tmp_path)
    assert set(digests) == {
        "model/config.json",
        "model/generation_config.json",
        "model/tokenizer.json",
    }
    assert digests.items() <= archive_digests(archive).items()


def test_one_bad_target_among_three_is_partial(
    s3_env: MotoS3, bucket: str, small_artifact: Path
) -> None:
    source = upload(s3_env.client(), bucket, "models/m.tar.gz", small_artifact)
    event = {
        "targets": [
            {"source": source, "destination": f"s3://{bucket}/out/a.zip"},
            {
                "source": f"s3://{bucket}/models/missing.tar.gz",
                "destination": f"s3://{bucket}/out/b.zip",
            },
            {"source": source, "destination": f"s3://{bucket}/out/c.zip", "include": ["*.json"]},
        ]
    }
    response = lambda_handler(event, Context())
    assert response["status"] == "partial"
    statuses = [t["status"] for t in response["targets"]]
    assert statuses == ["succeeded", "failed", "succeeded"]
    failed = response["targets"][1]
    assert failed["error"]["type"] == "SourceNotFoundError"
    assert "missing.tar.gz" in failed["error"]["message"]
    assert failed["attempts"] == 1  # a missing key is permanent: no retries
    no_uploads_and_no_object(s3_env, bucket, "out/b.zip")


def test_a_part_upload_failing_midway_leaves_nothing_behind(
    s3_env: MotoS3, bucket: str, small_artifact: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = upload(s3_env.client(), bucket, "models/m.tar.gz", small_artifact)
    proxy = FaultProxy(s3_env.url, [fail_upload_parts_from(2)])
    monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)
    monkeypatch.setenv("TMPWARDEN_MAX_ATTEMPTS", "2")
    before = scratch_entries()
    try:
        response = lambda_handler(
            {"targets": [{"source": source, "destination": f"s3://{bucket}/out/m.zip"}]},
            Context(),
        )
    finally:
        proxy.stop()
    target = response["targets"][0]
    assert response["status"] == "failed"
    assert target["attempts"] == 2  # a 5xx is transient: retried, then given up
    assert target["error"]["type"] == "RemoteServiceError"
    assert any(status == 500 for _, path, status in proxy.seen if "partNumber=2" in path)
    no_uploads_and_no_object(s3_env, bucket, "out/m.zip")
    assert scratch_entries() == before


def test_transient_read_errors_are_retried_with_backoff(
    s3_env: MotoS3,
    bucket: str,
    small_artifact: Path,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    source = upload(s3_env.client(), bucket, "models/flaky.tar.gz", small_artifact)
    # botocore itself retries 4 times; the fifth failure reaches the handler's own retry
    proxy = FaultProxy(s3_env.url, [fail_first_gets(5, "/models/flaky.tar.gz")])
    monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)
    # one connection: the five failures all fall on the first range's request (with four
    # at once they spread over four requests, and botocore's own retries absorb them)
    monkeypatch.setenv("TMPWARDEN_SOURCE_CONNECTIONS", "1")
    destination = f"s3://{bucket}/out/flaky.zip"
    try:
        response = lambda_handler(
            {"targets": [{"source": source, "destination": destination}], "strategy": "stream"},
            Context(),
        )
    finally:
        proxy.stop()
    target = response["targets"][0]
    assert response["status"] == "succeeded", response
    assert target["attempts"] == 2
    assert download_digests(s3_env, destination, tmp_path) == archive_digests(small_artifact)


def test_no_target_starts_without_the_time_margin(
    s3_env: MotoS3, bucket: str, small_artifact: Path
) -> None:
    source = upload(s3_env.client(), bucket, "models/m.tar.gz", small_artifact)
    event = {
        "targets": [
            {"source": source, "destination": f"s3://{bucket}/out/{i}.zip"} for i in range(3)
        ]
    }
    response = lambda_handler(event, Context(remaining_ms=10_000))  # margin is 30 s
    assert response["status"] == "failed"
    assert response["targets"] == []
    assert [r["destination"] for r in response["remaining"]] == [
        f"s3://{bucket}/out/{i}.zip" for i in range(3)
    ]


@pytest.mark.parametrize(
    ("event", "field"),
    [
        ({}, "targets"),
        ({"targets": [{"source": "s3://b/k.tar.gz"}]}, "targets[0].destination"),
        ({"targets": [{"source": "s3://b", "destination": "s3://b/o.zip"}]}, "targets[0].source"),
        (
            {"targets": [{"source": "a.tgz", "destination": "b.zip", "level": 12}]},
            "targets[0].level",
        ),
        (
            {"targets": [{"source": "a.tgz", "destination": "b.zip"}], "strategy": "fast"},
            "strategy",
        ),
    ],
)
def test_an_invalid_event_is_a_validation_error_naming_the_field(
    s3_env: MotoS3, event: dict[str, Any], field: str
) -> None:
    response = lambda_handler(event, Context())
    assert response["status"] == "failed"
    assert response["error"]["type"] == "EventValidationError"
    assert response["error"]["message"].startswith(field + ":")


def test_logs_are_json_lines_with_the_request_and_the_strategy_decision(
    s3_env: MotoS3, bucket: str, small_artifact: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = upload(s3_env.client(), bucket, "models/m.tar.gz", small_artifact)
    lambda_handler(
        {"targets": [{"source": source, "destination": f"s3://{bucket}/out/log.zip"}]}, Context()
    )
    entries = [
        json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")
    ]
    chosen = next(e for e in entries if e.get("event") == "strategy_chosen")
    # the request id is spelled as the monitor's EMF records spell it (monitor/records.py)
    assert chosen[records.REQUEST_ID] == "req-test"
    assert chosen["target"] == source
    assert chosen["strategy"] in ("stream", "extract") and "reason" in chosen
    finished = next(e for e in entries if e.get("event") == "target_finished")
    assert finished["status"] == "succeeded" and finished["attempts"] == 1


def test_a_destination_that_is_the_source_is_refused_and_the_object_untouched(
    s3_env: MotoS3, bucket: str, small_artifact: Path
) -> None:
    # issue 8: the Lambda packaged an S3 key over itself and reported `succeeded`
    import hashlib

    source = upload(s3_env.client(), bucket, "models/m.tar.gz", small_artifact)
    client = s3_env.client()
    before = client.head_object(Bucket=bucket, Key="models/m.tar.gz")["ETag"]
    digest = hashlib.sha256(small_artifact.read_bytes()).hexdigest()
    response = lambda_handler(
        {"targets": [{"source": source, "destination": source}], "strategy": "stream"},
        Context(),
    )
    print(response["error"]["message"], digest)
    assert response["status"] == "failed" and response["targets"] == []
    assert response["error"]["type"] == "EventValidationError"
    assert response["error"]["message"].startswith("targets[0].destination: is the source")
    body = client.get_object(Bucket=bucket, Key="models/m.tar.gz")
    assert body["ETag"] == before
    assert hashlib.sha256(body["Body"].read()).hexdigest() == digest
    assert not client.list_multipart_uploads(Bucket=bucket).get("Uploads")


class ClockContext(Context):
    """A context whose remaining time runs down for real from ``seconds``."""

    def __init__(self, seconds: float) -> None:
        import time

        super().__init__()
        self._clock = time.monotonic
        self._end = time.monotonic() + seconds

    def get_remaining_time_in_millis(self) -> int:
        return max(int((self._end - self._clock()) * 1000), 0)


def slow_parts(seconds: float) -> Rule:
    """Every UploadPart takes ``seconds`` more (a slow link)."""
    import time

    def rule(method: str, path: str, query: dict[str, list[str]]) -> None:
        if method == "PUT" and "partNumber" in query:
            time.sleep(seconds)

    return rule


def test_time_running_out_mid_attempt_aborts_the_upload_and_lists_the_target(
    s3_env: MotoS3, bucket: str, small_artifact: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # issue 8 item 6: no request starts, and no body read, past remaining - margin
    import time

    source = upload(s3_env.client(), bucket, "models/m.tar.gz", small_artifact)
    destination = f"s3://{bucket}/out/late.zip"
    proxy = FaultProxy(s3_env.url, [slow_parts(1.5)])
    monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)
    started = time.monotonic()
    try:
        response = lambda_handler(
            {"targets": [{"source": source, "destination": destination}], "strategy": "stream"},
            ClockContext(31.5),  # 1.5 s of work before the 30 s margin; the target needs more
        )
    finally:
        proxy.stop()
    took = time.monotonic() - started
    target = response["targets"][0]
    print(f"took {took:.1f} s: {target['error']}")
    assert took < 5
    assert target["status"] == "failed" and target["attempts"] == 1
    assert target["error"]["type"] == "OutOfTimeError"
    assert "30 s time margin" in target["error"]["message"]
    assert [r["destination"] for r in response["remaining"]] == [destination]
    no_uploads_and_no_object(s3_env, bucket, "out/late.zip")
