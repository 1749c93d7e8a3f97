"""Fixtures for tests against a real S3-compatible endpoint on 127.0.0.1."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from benchmarks.seaweed import SeaweedS3
from handler.app import reset_runtime
from handler.cli.sample import build_sample_artifact
from monitor.units import MiB
from tests.helpers import python_env
from tests.s3server import CREDENTIALS, MotoS3

REPO = Path(__file__).resolve().parents[2]

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client


@pytest.fixture(scope="session")
def moto_s3() -> Iterator[MotoS3]:
    server = MotoS3()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def seaweed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedS3]:
    """A real S3 server (SeaweedFS) on 127.0.0.1, for tests that need S3's real rules or
    speed; stopped by its process id when the session ends, also after a failure."""
    server = SeaweedS3(tmp_path_factory.mktemp("seaweedfs")).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def s3_env(moto_s3: MotoS3, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[MotoS3]:
    """AWS settings pointing at the local server, a scratch TMPDIR, a fresh handler runtime."""
    for key, value in CREDENTIALS.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_s3.url)
    monkeypatch.setenv("AWS_EMF_ENVIRONMENT", "Local")
    monkeypatch.setenv("TMPWARDEN_EMF", "off")
    monkeypatch.setenv("TMPWARDEN_TRACING", "off")
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setenv("TMPDIR", str(scratch))
    reset_runtime()
    yield moto_s3
    reset_runtime()


@pytest.fixture
def bucket(s3_env: MotoS3) -> str:
    name = f"models-{uuid.uuid4().hex[:12]}"
    s3_env.client().create_bucket(Bucket=name)
    return name


@pytest.fixture(scope="session")
def small_artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("artifacts") / "model-32m.tar.gz"
    return build_sample_artifact(path, 32 * MiB, seed=3)


def invoke_sandbox(
    tmp_path: Path, event: dict[str, Any], *args: str, env: dict[str, str] | None = None
) -> tuple[int, dict[str, Any], str, Path]:
    """Run ``python -m handler invoke`` on ``event``: (exit code, response, stderr, EMF log)."""
    event_path = REPO / "demo-output" / f"event-{tmp_path.name}.json"
    event_path.parent.mkdir(exist_ok=True)
    event_path.write_text(json.dumps(event))
    emf_log = REPO / "demo-output" / f"emf-{tmp_path.name}.log"
    emf_log.unlink(missing_ok=True)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "handler",
            "invoke",
            str(event_path),
            "--emf-log",
            str(emf_log),
            "--template",
            str(REPO / "template.yaml"),
            *args,
        ],
        capture_output=True,
        text=True,
        env=python_env() | (env or {}),
        timeout=600,
        check=False,
    )
    event_path.unlink()
    return result.returncode, json.loads(result.stdout), result.stderr, emf_log


def upload(client: S3Client, bucket: str, key: str, path: Path) -> str:
    client.upload_file(str(path), bucket, key)
    return f"s3://{bucket}/{key}"
