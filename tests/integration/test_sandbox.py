"""The local Lambda: a real tmpfs /tmp, a read-only filesystem, a memory cap, a timeout."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest

from handler.cli.sample import build_sample_artifact
from handler.cli.sandbox import limits_from_template, namespace_prefix
from monitor.units import MiB
from tests.emf_schema import validate_emf_line
from tests.helpers import archive_digests, python_env
from tests.integration.conftest import invoke_sandbox as invoke
from tests.integration.conftest import upload
from tests.s3server import FaultProxy, MotoS3, stall_gets

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _needs_namespaces() -> None:
    if namespace_prefix() is None:
        pytest.skip("mount namespaces are not permitted here (needs root or user namespaces)")


@pytest.fixture(scope="module")
def artifact_256(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_sample_artifact(
        tmp_path_factory.mktemp("sandbox") / "model.tar.gz", 256 * MiB, seed=11
    )


def outside_tmp() -> str:
    for candidate in ("/var/tmp", str(Path.home())):
        if Path(candidate).is_dir() and not candidate.startswith("/tmp"):
            return candidate
    pytest.skip("no writable directory outside /tmp for a local destination")


def sandbox_line(stderr: str) -> str:
    return next(line for line in stderr.splitlines() if line.startswith("sandbox:"))


def assert_tmp_back_to_baseline(stderr: str) -> None:
    """Nothing the job wrote is left in /tmp: it is empty, or holds only the in-process
    monitor's shared state for the layer's extension (monitor.shared_state: one file of
    one block in .tmpwarden, written in Lambda, where AWS_LAMBDA_RUNTIME_API is set)."""
    line = sandbox_line(stderr)
    assert (
        "/tmp used before 0 B, after 0 B;" in line
        or "/tmp used before 0 B, after 4.0 KiB (.tmpwarden);" in line
    ), line


def test_defaults_come_from_the_template() -> None:
    limits = limits_from_template(REPO / "template.yaml")
    assert (limits.memory_mb, limits.timeout, limits.tmp_size) == (3008, 900.0, 8192 * MiB)


def test_s3_to_s3_of_four_times_the_sandbox_tmp_keeps_tmp_under_16_mib(
    s3_env: MotoS3, bucket: str, artifact_256: Path, tmp_path: Path
) -> None:
    source = upload(s3_env.client(), bucket, "models/big.tar.gz", artifact_256)
    destination = f"s3://{bucket}/packages/big.zip"
    env = {"AWS_ENDPOINT_URL": s3_env.url, "TMPWARDEN_EMF": "on"}
    code, response, stderr, emf_log = invoke(
        tmp_path,
        {"targets": [{"source": source, "destination": destination}]},
        "--tmp-size",
        "64M",
        "--memory",
        "1024",
        env=env,
    )
    assert code == 0, stderr
    target = response["targets"][0]
    assert response["status"] == "succeeded" and target["strategy"] == "stream"
    assert target["peak_tmp_bytes"] < 16 * MiB
    local = tmp_path / "big.zip"
    s3_env.client().download_file(bucket, "packages/big.zip", str(local))
    assert archive_digests(local) == archive_digests(artifact_256)
    assert "/tmp 64 MiB" in sandbox_line(stderr)
    lines = emf_log.read_text().splitlines()
    assert lines and all(validate_emf_line(line) for line in lines)
    emf_log.unlink()


def test_extract_that_cannot_fit_fails_fast_and_leaves_tmp_clean(
    s3_env: MotoS3, bucket: str, artifact_256: Path, tmp_path: Path
) -> None:
    source = upload(s3_env.client(), bucket, "models/big.tar.gz", artifact_256)
    code, response, stderr, emf_log = invoke(
        tmp_path,
        {
            "targets": [{"source": source, "destination": f"s3://{bucket}/p/x.zip"}],
            "strategy": "extract",
        },
        "--tmp-size",
        "64M",
        "--memory",
        "1024",
        env={"AWS_ENDPOINT_URL": s3_env.url},
    )
    assert code == 1
    target = response["targets"][0]
    assert target["error"]["type"] == "InsufficientStorageError"
    assert "use the stream strategy" in target["error"]["message"]
    assert target["attempts"] == 1 and target["duration_s"] < 30
    assert_tmp_back_to_baseline(stderr)
    emf_log.unlink(missing_ok=True)


def test_auto_extracts_when_it_fits_and_cleans_up(
    s3_env: MotoS3, bucket: str, small_artifact: Path, tmp_path: Path
) -> None:
    source = upload(s3_env.client(), bucket, "models/small.tar.gz", small_artifact)
    code, response, stderr, emf_log = invoke(
        tmp_path,
        {"targets": [{"source": source, "destination": f"s3://{bucket}/p/s.zip"}]},
        "--tmp-size",
        "128M",
        "--memory",
        "1024",
        env={"AWS_ENDPOINT_URL": s3_env.url},
    )
    assert code == 0, stderr
    assert response["targets"][0]["strategy"] == "extract"
    assert response["targets"][0]["peak_tmp_bytes"] >= 32 * MiB
    assert_tmp_back_to_baseline(stderr)
    emf_log.unlink(missing_ok=True)


def test_a_timeout_kills_the_invocation(
    s3_env: MotoS3, bucket: str, artifact_256: Path, tmp_path: Path
) -> None:
    source = upload(s3_env.client(), bucket, "models/big.tar.gz", artifact_256)
    code, response, _, emf_log = invoke(
        tmp_path,
        {
            "targets": [{"source": source, "destination": f"s3://{bucket}/p/t.zip"}],
            "strategy": "stream",
        },
        "--tmp-size",
        "64M",
        "--memory",
        "1024",
        "--timeout",
        "1",
        env={"AWS_ENDPOINT_URL": s3_env.url, "TMPWARDEN_TIME_MARGIN_S": "0"},
    )
    assert code == 1
    assert response["errorType"] == "Sandbox.Timedout"
    assert "timed out after 1.00 seconds" in response["errorMessage"]
    emf_log.unlink(missing_ok=True)


def run_with_a_stalled_get(
    s3_env: MotoS3,
    bucket: str,
    artifact: Path,
    tmp_path: Path,
    timeout: int,
    settings: dict[str, str],
) -> tuple[int, dict[str, Any], FaultProxy]:
    """Package ``artifact`` from S3 while every GET of it stalls after 24 MiB of its body."""
    source = upload(s3_env.client(), bucket, "models/stalls.tar.gz", artifact)
    proxy = FaultProxy(s3_env.url, [stall_gets("/models/stalls.tar.gz", after=24 * MiB)])
    event = {
        "targets": [{"source": source, "destination": f"s3://{bucket}/p/stalled.zip"}],
        "strategy": "stream",
    }
    try:
        code, response, stderr, emf_log = invoke(
            tmp_path,
            event,
            "--tmp-size",
            "64M",
            "--memory",
            "1024",
            "--timeout",
            str(timeout),
            env={"AWS_ENDPOINT_URL": proxy.url, **settings},
        )
    finally:
        proxy.stop()
    emf_log.unlink(missing_ok=True)
    took = float(sandbox_line(stderr).split("took ")[1].split(" s")[0])
    print(f"timeout {timeout} s, {settings}: took {took} s; {json.dumps(response)[:600]}")
    assert took < timeout
    return code, response, proxy


def assert_a_result_and_no_open_upload(
    s3_env: MotoS3, bucket: str, code: int, response: dict[str, Any], proxy: FaultProxy
) -> None:
    assert "errorType" not in response, response  # not Sandbox.Timedout: a response
    target = response["targets"][0]
    assert code == 1 and target["status"] == "failed"
    assert target["error"]["type"] in ("OutOfTimeError", "SourceReadError")
    if target["error"]["type"] == "OutOfTimeError":
        assert [r["destination"] for r in response["remaining"]] == [target["destination"]]
    assert proxy.stalled  # the GET did stall
    parts = [p for m, p, _ in proxy.seen if m == "PUT" and "partNumber=" in p]
    aborts = [p for m, p, _ in proxy.seen if m == "DELETE" and "uploadId=" in p]
    print(f"{len(parts)} parts uploaded, {len(aborts)} aborts")
    assert aborts  # an upload was open, and was aborted
    assert not s3_env.client().list_multipart_uploads(Bucket=bucket).get("Uploads")


def test_a_stalled_get_gives_a_result_before_the_timeout_and_no_open_upload(
    s3_env: MotoS3, bucket: str, small_artifact: Path, tmp_path: Path
) -> None:
    # issue 8 item 6, at smaller figures by the same rule: margin = 2 x (2 + stall) + 2
    code, response, proxy = run_with_a_stalled_get(
        s3_env,
        bucket,
        small_artifact,
        tmp_path,
        20,
        {"TMPWARDEN_STALL_TIMEOUT_S": "3", "TMPWARDEN_TIME_MARGIN_S": "12"},
    )
    assert_a_result_and_no_open_upload(s3_env, bucket, code, response, proxy)


def test_a_stalled_get_inside_a_45_s_invocation_at_the_default_settings(
    s3_env: MotoS3, bucket: str, small_artifact: Path, tmp_path: Path
) -> None:
    # issue 8 item 6: botocore's 60 s read timeout outlived the 30 s margin; Sandbox.Timedout
    code, response, proxy = run_with_a_stalled_get(s3_env, bucket, small_artifact, tmp_path, 45, {})
    assert_a_result_and_no_open_upload(s3_env, bucket, code, response, proxy)
    assert response["targets"][0]["duration_s"] < 45 - 12  # the stall noticed in 10 s


def test_local_destinations_stay_writable_and_tmp_paths_are_refused(
    small_artifact: Path, tmp_path: Path
) -> None:
    # outside /tmp (the sandbox's /tmp is its own tmpfs), even when the checkout is under it
    work = Path(tempfile.mkdtemp(prefix="tmpwarden-sandbox-test-", dir=outside_tmp()))
    source = work / "m.tar.gz"
    source.write_bytes(small_artifact.read_bytes())
    try:
        code, _response, stderr, emf_log = invoke(
            tmp_path,
            {"targets": [{"source": str(source), "destination": str(work / "m.zip")}]},
            "--tmp-size",
            "16M",
            "--memory",
            "1024",
        )
        assert code == 0, stderr
        assert archive_digests(work / "m.zip") == archive_digests(small_artifact)
        emf_log.unlink(missing_ok=True)
        # /tmp inside the sandbox is its own tmpfs: a path there would vanish, as in Lambda
        event = REPO / "demo-output" / f"bad-{tmp_path.name}.json"
        event.write_text(
            json.dumps(
                {"targets": [{"source": str(source), "destination": str(tmp_path / "m.zip")}]}
            )
        )
        refused = subprocess.run(
            [sys.executable, "-m", "handler", "invoke", str(event)],
            capture_output=True,
            text=True,
            env=python_env(),
            check=False,
        )
        event.unlink()
        assert refused.returncode == 1
        assert refused.stderr.startswith("error: ") and "under /tmp" in refused.stderr
    finally:
        for path in work.iterdir():
            path.unlink()
        work.rmdir()


@pytest.mark.parametrize(
    ("memory", "address_space", "when"),
    [
        ("128", (), "short of memory (checked before starting"),
        ("192", ("--address-space", "192"), "short of memory (MemoryError"),
    ],
)
def test_too_little_memory_is_named_with_the_need_and_the_setting(
    s3_env: MotoS3,
    bucket: str,
    small_artifact: Path,
    tmp_path: Path,
    memory: str,
    address_space: tuple[str, ...],
    when: str,
) -> None:
    # issue 8: at 128 MB `RuntimeError: can't start new thread`; at 160 `RemoteServiceError:
    # ...: MemoryError:`. 128 is refused by the plan's estimate (167 MiB with 10% kept free,
    # 33 MiB of it the S3 source's read-ahead: handler.locations.ranged); 192 passes it. The
    # sandbox limits resident memory as Lambda does (issue 11), under which this job fits in
    # 192 MB (test_the_job_refused_at_128_mb_fits_192_mb_of_resident_memory); the failure of
    # a real allocation is reached with an address-space cap at 192 MB (RLIMIT_AS: each
    # thread reserves its stack), here a range's buffer of the read-ahead (allocated before
    # its reading thread starts; until 2026-11-30 the thread's start failed first: "short
    # of threads"), and must be reported as the same error
    source = upload(s3_env.client(), bucket, "models/m.tar.gz", small_artifact)
    code, response, stderr, emf_log = invoke(
        tmp_path,
        {
            "targets": [{"source": source, "destination": f"s3://{bucket}/p/m.zip"}],
            "strategy": "stream",
        },
        "--tmp-size",
        "64M",
        "--memory",
        memory,
        *address_space,
        env={"AWS_ENDPOINT_URL": s3_env.url},
    )
    assert code == 1, stderr
    target = response["targets"][0]
    print(memory, target["error"])
    assert response["status"] == "failed" and target["attempts"] == 1
    assert target["error"]["type"] == "ResourceExhaustedError"
    message = target["error"]["message"]
    assert message.startswith(when)
    assert "the work needs about 167.0 MiB" in message
    assert f"the function has {memory}.0 MiB" in message
    assert "raise the function's MemorySize in template.yaml" in message
    assert "invoke --memory MB) to at least" in message
    client = s3_env.client()
    assert not client.list_multipart_uploads(Bucket=bucket).get("Uploads")
    assert "Contents" not in client.list_objects_v2(Bucket=bucket, Prefix="p/")
    assert_tmp_back_to_baseline(stderr)
    emf_log.unlink(missing_ok=True)


def test_the_job_refused_at_128_mb_fits_192_mb_of_resident_memory(
    s3_env: MotoS3, bucket: str, small_artifact: Path, tmp_path: Path
) -> None:
    # issue 11: RLIMIT_AS failed this job at 192 MB (MemoryError at 67 MB resident of 100);
    # Lambda limits resident memory: the runtime's peak stays under the plan's 167 MiB, and
    # with the layer's extension (its memory counts, as in Lambda) under 192 MB
    source = upload(s3_env.client(), bucket, "models/m.tar.gz", small_artifact)
    code, response, stderr, emf_log = invoke(
        tmp_path,
        {
            "targets": [{"source": source, "destination": f"s3://{bucket}/p/m.zip"}],
            "strategy": "stream",
        },
        "--tmp-size",
        "64M",
        "--memory",
        "192",
        env={"AWS_ENDPOINT_URL": s3_env.url},
    )
    platform = next(line for line in stderr.splitlines() if line.startswith("platform:"))
    print(platform)
    assert code == 0 and response["status"] == "succeeded", stderr
    used = int(platform.split("max memory used ")[1].split(" MB")[0])  # with the extensions
    assert response["targets"][0]["peak_rss_bytes"] / MiB < 167 and used < 192
    emf_log.unlink(missing_ok=True)
