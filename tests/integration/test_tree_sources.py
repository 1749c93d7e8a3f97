"""Directory and S3 prefix sources (issue 10: "Sources may also be a directory or an S3
prefix ... listed and streamed member by member"), round-tripped through zipfile and
``unzip -t``: a local directory through the command line, an S3 prefix through moto
(the Lambda event and the library API) and through the real server (SeaweedFS)."""

from __future__ import annotations

import json
import random
import subprocess
import sys
import uuid
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

import pytest
from botocore.exceptions import ClientError

from benchmarks.seaweed import ACCESS_KEY, REGION, SECRET_KEY, SeaweedS3
from handler.app import lambda_handler
from handler.errors import RemoteServiceError, SourceNotFoundError
from handler.locations.listing import Listed
from handler.locations.prefix import S3PrefixSource
from handler.packaging import package
from monitor.units import MiB
from tests.helpers import python_env, read_zip, unzip_test, write_tree
from tests.integration.test_lambda_s3 import Context, scratch_entries
from tests.s3server import MotoS3

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

WEIGHTS = random.Random(10).randbytes(6 * MiB + 123)  # one ranged GET
SHARD = random.Random(11).randbytes(9 * MiB)  # two ranged GETs (8 MiB ranges)
FILES = {
    "config.json": b'{"hidden_size": 2048}\n' * 50,
    "model-00001-of-00002.safetensors": SHARD,
    "model-00002-of-00002.safetensors": WEIGHTS,
    "tokenizer/vocab.txt": b"hello\nworld\n" * 1000,
    "tokenizer/empty.txt": b"",
    "z/deep/er/leaf.bin": b"\x00\x01" * 10,
}


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "handler", *args],
        env=python_env() | (env or {}),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_directory_source_round_trips_through_the_command_line(tmp_path: Path) -> None:
    model = write_tree(tmp_path / "model-dir", FILES)
    (model / "tokenizer" / "unused").mkdir()  # an empty directory survives
    (model / "latest.safetensors").symlink_to("model-00002-of-00002.safetensors")
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    out = tmp_path / "out.zip"

    packaged = _run("package", "--json", str(model), str(out), env={"TMPDIR": str(scratch)})

    assert packaged.returncode == 0, packaged.stderr
    result = json.loads(packaged.stdout)
    assert (result["format"], result["files"], result["links"]) == ("directory", 6, 1)
    assert result["uncompressed_bytes"] == sum(map(len, FILES.values()))
    contents = read_zip(out)
    assert {n: contents[n] for n in FILES} == FILES  # names and bytes identical
    assert contents["latest.safetensors"] == b"model-00002-of-00002.safetensors"  # a link
    unzip_test(out)
    assert list(scratch.iterdir()) == []  # /tmp at baseline: nothing staged
    inspected = _run("inspect", "--json", f"{model}/")
    assert inspected.returncode == 0, inspected.stderr
    info = json.loads(inspected.stdout)
    assert (info["format"], info["files"], info["total_size"]) == (
        "directory",
        6,
        sum(map(len, FILES.values())),
    )
    names = [m["name"] for m in info["members"]]
    assert names == [
        "config.json",
        "latest.safetensors",
        "model-00001-of-00002.safetensors",
        "model-00002-of-00002.safetensors",
        "tokenizer",
        "tokenizer/empty.txt",
        "tokenizer/vocab.txt",
        "tokenizer/unused",
        "z",
        "z/deep",
        "z/deep/er",
        "z/deep/er/leaf.bin",
    ]  # stable: a directory's names sorted, then its subdirectories in order


def test_missing_directory_and_outside_link_are_one_clear_error(tmp_path: Path) -> None:
    missing = _run("package", f"{tmp_path}/no-such-model/", str(tmp_path / "out.zip"))
    assert missing.returncode != 0
    assert missing.stderr.strip().splitlines() == [
        f"error: {tmp_path}/no-such-model: no such directory; check the source path (a path "
        "that ends in '/' names a directory of members)"
    ]
    model = write_tree(tmp_path / "m", {"a.bin": b"a"})
    (model / "secrets").symlink_to("/etc")
    leaving = _run("package", str(model), str(tmp_path / "out.zip"))
    assert leaving.returncode != 0
    assert len(leaving.stderr.strip().splitlines()) == 1
    assert "'secrets': it is a symbolic link to '/etc', outside the directory" in leaving.stderr
    assert not (tmp_path / "out.zip").exists()


def _put_tree(client: S3Client, bucket: str, prefix: str) -> None:
    put = client.put_object
    for name, data in FILES.items():
        put(Bucket=bucket, Key=prefix + name, Body=data)
    put(Bucket=bucket, Key=prefix, Body=b"")  # the prefix's own folder marker: the root
    put(Bucket=bucket, Key=prefix + "tokenizer/unused/", Body=b"")  # an empty folder
    put(Bucket=bucket, Key=prefix.rstrip("/") + "-other/x.bin", Body=b"not under the prefix")


def test_s3_prefix_round_trips_through_the_lambda_event(
    s3_env: MotoS3, bucket: str, tmp_path: Path
) -> None:
    client = s3_env.client()
    _put_tree(client, bucket, "models/llama/")
    source, destination = f"s3://{bucket}/models/llama/", f"s3://{bucket}/packages/llama.zip"
    before = scratch_entries()

    response = lambda_handler(
        {"targets": [{"source": source, "destination": destination}]}, Context()
    )

    assert response["status"] == "succeeded", response
    target = response["targets"][0]
    assert target["status"] == "succeeded", target
    assert (target["strategy"], target["files"]) == ("stream", 6)
    assert target["bytes_in"] == sum(map(len, FILES.values()))
    local = tmp_path / "llama.zip"
    client.download_file(bucket, "packages/llama.zip", str(local))
    contents = read_zip(local)
    assert contents == FILES  # names relative to the prefix; the neighbour left out
    unzip_test(local)
    with zipfile.ZipFile(local) as archive:
        assert "tokenizer/unused/" in archive.namelist()  # the folder marker
    assert scratch_entries() == before


def test_s3_prefix_is_listed_page_by_page_through_the_library(
    s3_env: MotoS3, bucket: str, tmp_path: Path
) -> None:
    client = s3_env.client()
    _put_tree(client, bucket, "m/")
    source = S3PrefixSource(client, f"s3://{bucket}/m/", page_size=2)  # 4 pages

    result = package(source, tmp_path / "m.zip")

    assert (result.format, result.files, result.directories) == ("s3-prefix", 6, 1)
    assert source.totals() == (6, sum(map(len, FILES.values())))
    assert len(list(source.entries())) == 7  # and the folder marker
    assert read_zip(tmp_path / "m.zip") == FILES


def test_empty_prefix_is_one_clear_error(s3_env: MotoS3, bucket: str, tmp_path: Path) -> None:
    with pytest.raises(SourceNotFoundError) as caught:
        package(f"s3://{bucket}/nothing/here/", tmp_path / "out.zip", s3=s3_env.client())
    assert str(caught.value).startswith(
        f"s3://{bucket}/nothing/here/: no object has a key under this prefix; check the "
        "bucket and the prefix"
    )
    assert not (tmp_path / "out.zip").exists()


def replace_when_read(source: S3PrefixSource, name: str, body: bytes) -> None:
    """Put a new version of the object ``name`` between its listing and its GETs."""
    opened = source.open_member

    def open_member(entry: Listed) -> BinaryIO:
        if entry.name == name:
            source.client.put_object(Bucket=source.url.bucket, Key=source.url.key + name, Body=body)
        return opened(entry)

    source.open_member = open_member  # type: ignore[method-assign]


def test_an_object_replaced_mid_run_fails_with_if_match(
    s3_env: MotoS3, bucket: str, tmp_path: Path
) -> None:
    client = s3_env.client()
    _put_tree(client, bucket, "m/")
    source = S3PrefixSource(client, f"s3://{bucket}/m/")
    replace_when_read(source, "tokenizer/vocab.txt", b"a new version")

    with pytest.raises(RemoteServiceError) as caught:
        package(source, tmp_path / "out.zip")

    assert str(caught.value).startswith(
        f"s3://{bucket}/m/tokenizer/vocab.txt: the object changed while it was being read "
        "(its ETag no longer matches)"
    )
    assert isinstance(caught.value.__cause__, ClientError)
    assert caught.value.__cause__.response["Error"]["Code"] == "PreconditionFailed"
    assert not (tmp_path / "out.zip").exists()


def test_s3_prefix_round_trips_through_the_real_server(seaweed: SeaweedS3, tmp_path: Path) -> None:
    s3, bucket = seaweed.client(), f"models-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=bucket)
    _put_tree(s3, bucket, "models/llama/")
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    env = python_env() | {
        "AWS_ACCESS_KEY_ID": ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
        "AWS_DEFAULT_REGION": REGION,
        "TMPDIR": str(scratch),
    }
    env.pop("AWS_SESSION_TOKEN", None)
    source, dest = f"s3://{bucket}/models/llama/", f"s3://{bucket}/out/llama.zip"
    ends = (source, dest)

    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "handler",
            "package",
            "--json",
            "--endpoint-url",
            seaweed.url,
            *ends,
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["files"] == 6
    local = tmp_path / "llama.zip"
    s3.download_file(bucket, "out/llama.zip", str(local))
    assert read_zip(local) == FILES
    unzip_test(local)
    assert list(scratch.iterdir()) == []
    inspected = subprocess.run(
        [
            sys.executable,
            "-m",
            "handler",
            "inspect",
            "--json",
            "--endpoint-url",
            seaweed.url,
            source,
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert inspected.returncode == 0, inspected.stderr
    info = json.loads(inspected.stdout)
    assert (info["format"], info["files"], info["directories"], info["total_size"]) == (
        "s3-prefix",
        6,
        1,
        sum(map(len, FILES.values())),
    )
    replaced = S3PrefixSource(s3, source)
    replace_when_read(replaced, "config.json", b"{}")
    with pytest.raises(RemoteServiceError, match=r"config\.json: the object changed"):
        package(replaced, tmp_path / "again.zip")
    assert not (tmp_path / "again.zip").exists()


def test_the_lambda_retries_a_replaced_object_and_packages_one_version(
    s3_env: MotoS3, bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = s3_env.client()
    _put_tree(client, bucket, "m/")
    opened = S3PrefixSource.open_member
    replaced: list[str] = []

    def replace_once(source: S3PrefixSource, entry: Listed) -> BinaryIO:
        if entry.name == "config.json" and not replaced:
            replaced.append(entry.name)  # a writer replaces it after the listing, once
            client.put_object(Bucket=bucket, Key="m/config.json", Body=b'{"new": true}')
        return opened(source, entry)

    monkeypatch.setattr(S3PrefixSource, "open_member", replace_once)
    response = lambda_handler(
        {"targets": [{"source": f"s3://{bucket}/m/", "destination": f"s3://{bucket}/o.zip"}]},
        Context(),
    )

    target = response["targets"][0]
    assert (target["status"], target["attempts"]) == ("succeeded", 2), target
    local = tmp_path / "o.zip"
    client.download_file(bucket, "o.zip", str(local))
    assert read_zip(local) == FILES | {"config.json": b'{"new": true}'}  # the new version only


def test_a_prefix_named_without_its_slash_is_one_error_naming_the_prefix(
    s3_env: MotoS3, bucket: str, tmp_path: Path
) -> None:
    # REVIEW2 item 15: s3://bkt/models/llama answered "does not exist (404)" with no
    # hint that models/llama/ holds objects (a local directory works without the slash)
    s3_env.client().put_object(Bucket=bucket, Key="models/llama/a.bin", Body=b"a")
    with pytest.raises(SourceNotFoundError) as caught:
        package(f"s3://{bucket}/models/llama", tmp_path / "out.zip", s3=s3_env.client())
    assert str(caught.value) == (
        f"s3://{bucket}/models/llama: no object has this key, but objects have keys under "
        f"s3://{bucket}/models/llama/ (a prefix); to package them, name the prefix with its "
        f"trailing '/': s3://{bucket}/models/llama/"
    )
    with pytest.raises(SourceNotFoundError, match=r"does not exist \(404\); check the bucket"):
        package(f"s3://{bucket}/models/lla", tmp_path / "out.zip", s3=s3_env.client())
    assert not (tmp_path / "out.zip").exists()


def test_an_empty_folder_packages_like_an_empty_directory(
    s3_env: MotoS3, bucket: str, tmp_path: Path
) -> None:
    # REVIEW2 item 18: an empty directory packaged into an empty ZIP, an empty folder
    # (the console's "Create folder" marker) was an error; a mistyped prefix still is
    s3_env.client().put_object(Bucket=bucket, Key="models/empty/", Body=b"")
    (tmp_path / "empty").mkdir()
    for source in (f"s3://{bucket}/models/empty/", str(tmp_path / "empty")):
        result = package(source, tmp_path / "out.zip", s3=s3_env.client())
        assert (result.files, read_zip(tmp_path / "out.zip")) == (0, {})
        (tmp_path / "out.zip").unlink()
    with pytest.raises(SourceNotFoundError, match="no object has a key under this prefix"):
        package(f"s3://{bucket}/models/empt/", tmp_path / "out.zip", s3=s3_env.client())
