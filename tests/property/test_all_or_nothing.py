"""Property 6: whatever fails while the ZIP is written, the destination is complete and
verified, or absent; nothing partial stays behind and /tmp is back at its baseline.

Local faults are real ones, in a private mount namespace (see ``namespace_worker``): the
destination's tmpfs filled until only ``f`` bytes are free (ENOSPC), or ``RLIMIT_FSIZE``
cutting the write at byte ``f`` (EFBIG). S3 faults: moto's S3 with a client whose
UploadPart fails for one part, or whose CompleteMultipartUpload fails.
"""

from __future__ import annotations

import functools
import hashlib
import io
import tempfile
import uuid
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError, EndpointConnectionError
from hypothesis import event, example, given
from hypothesis import strategies as st
from moto import mock_aws

from handler.errors import TmpwardenError
from handler.locations.multipart import FIRST_PART_SIZE, S3Destination
from handler.storage import StorageManager
from handler.strategies import PackageOptions, run_extract, run_stream
from monitor.units import KiB, MiB
from tests.helpers import python_env
from tests.lazy_archive import LazyMember, LazyTar
from tests.namespaces import require_namespaces
from tests.property.namespace_worker import NamespaceWorker
from tests.s3server import CREDENTIALS

BUCKET = "packages"
LOCAL_ERRORS = {"InsufficientStorageError", "DestinationError"}


@functools.lru_cache(maxsize=256)
def _sha256(size: int, seed: int) -> str:
    return LazyMember("", size, seed).sha256()


# -- local destinations --------------------------------------------------------------


@pytest.fixture(scope="module")
def disk_worker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[NamespaceWorker, Path]]:
    prefix = require_namespaces()
    root = tmp_path_factory.mktemp("all-or-nothing")
    tmp, out = root / "tmp", root / "out"
    tmp.mkdir()
    out.mkdir()
    env = python_env() | {"TMPWARDEN_EMF": "off", "TMPWARDEN_TRACING": "off"}
    worker = NamespaceWorker(prefix, {tmp: "64m", out: "16m"}, env)
    yield worker, out
    worker.stop()


local_members = st.lists(
    st.tuples(st.integers(0, 1 * MiB), st.integers(0, 9)), min_size=1, max_size=4
)
"""(size, seed) of each member: a ZIP of up to about 4 MiB (stored) or 80 KiB (deflated)."""


@given(
    members=local_members,
    fault=st.sampled_from(["disk full", "write fails"]),
    at_byte=st.integers(0, 4 * MiB + 64 * KiB),
    strategy=st.sampled_from(["stream", "extract"]),
    compression=st.sampled_from(["store", "deflate"]),
    gzip=st.booleans(),
)
# Found by this property: a scratch file cut short by the file size limit (EFBIG) escaped
# as a bare OSError from the extract strategy.
@example(
    members=[(1, 0)],
    fault="write fails",
    at_byte=0,
    strategy="extract",
    compression="store",
    gzip=False,
)
def test_property_6_all_or_nothing_on_a_local_disk(
    disk_worker: tuple[NamespaceWorker, Path],
    members: list[tuple[int, int]],
    fault: str,
    at_byte: int,
    strategy: str,
    compression: str,
    gzip: bool,
) -> None:
    """Property 6 (local): for a fault at any byte of the output (disk full, or a write
    failing), the ZIP is complete and verified, or absent; no ``*.tmpwarden-partial``
    remains; /tmp is at its baseline."""
    worker, out = disk_worker
    named = [(f"m/{i}.bin", size, seed) for i, (size, seed) in enumerate(members)]
    key = f"model-{uuid.uuid4().hex[:8]}.zip"
    request: dict[str, Any] = {
        "members": named,
        "gzip": gzip,
        "destination": str(out / key),
        "strategy": strategy,
        "compression": compression,
    }
    request["leave" if fault == "disk full" else "fsize"] = at_byte
    reply = worker.run(request)
    if reply["ok"]:
        assert reply["dest_listing"] == [key]
        assert reply["digests"] == {name: _sha256(size, seed) for name, size, seed in named}
        assert reply["bytes_out"] <= at_byte + 4 * KiB  # it fitted (tmpfs counts pages)
        event(f"{fault}: complete and verified")
    else:
        assert reply["error_type"] in LOCAL_ERRORS, reply
        assert "\n" not in reply["error"]
        assert reply["dest_listing"] == [], reply  # neither the ZIP nor a partial file
        event(f"{fault}: absent ({reply['error_type']})")
    assert reply["tmp_after"] == reply["tmp_before"]
    assert reply["tmp_listing"] == []


# -- S3 destinations -----------------------------------------------------------------


class FaultyS3:
    """An S3 client whose UploadPart fails for part ``fail_part``, or whose
    CompleteMultipartUpload fails; everything else goes to the real (moto) client."""

    def __init__(self, client: Any, fail_part: int | None, fail_complete: bool, error: str):
        self._client = client
        self._fail_part = fail_part
        self._fail_complete = fail_complete
        self._error = error
        self.failed = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def _fault(self, operation: str) -> Exception:
        self.failed = True
        if self._error == "connection":
            return EndpointConnectionError(endpoint_url="http://127.0.0.1:9/")
        code, status = {"internal": ("InternalError", 500), "slow down": ("SlowDown", 503)}[
            self._error
        ]
        response: Any = {
            "Error": {"Code": code, "Message": "injected fault"},
            "ResponseMetadata": {"HTTPStatusCode": status},
        }
        return ClientError(response, operation)

    def upload_part(self, **kwargs: Any) -> Any:
        if kwargs["PartNumber"] == self._fail_part:
            raise self._fault("UploadPart")
        return self._client.upload_part(**kwargs)

    def complete_multipart_upload(self, **kwargs: Any) -> Any:
        if self._fail_complete:
            raise self._fault("CompleteMultipartUpload")
        return self._client.complete_multipart_upload(**kwargs)


@pytest.fixture(scope="module")
def s3_client() -> Iterator[Any]:
    with pytest.MonkeyPatch.context() as env, mock_aws():
        for key, value in CREDENTIALS.items():
            env.setenv(key, value)
        env.delenv("AWS_ENDPOINT_URL", raising=False)
        env.setenv("MOTO_S3_DEFAULT_KEY_BUFFER_SIZE", str(64 * MiB))  # moto keeps parts in memory
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket=BUCKET)
        yield client


@pytest.fixture(scope="module")
def scratch_tmp() -> Iterator[Path]:
    """A /tmp of this test's own (tempfile's directory), to see that it returns to empty."""
    with tempfile.TemporaryDirectory() as scratch, pytest.MonkeyPatch.context() as patch:
        patch.setattr(tempfile, "tempdir", scratch)
        yield Path(scratch)


s3_members = st.lists(
    st.tuples(
        st.one_of(st.integers(0, 64 * KiB), st.integers(1 * MiB, 18 * MiB)), st.integers(0, 9)
    ),
    min_size=1,
    max_size=3,
).filter(lambda m: sum(size for size, _ in m) <= 20 * MiB)


@given(
    members=s3_members,
    fault=st.sampled_from(["part", "complete", "none"]),
    part_at_byte=st.integers(0, 20 * MiB),
    error=st.sampled_from(["internal", "slow down", "connection"]),
    strategy=st.sampled_from(["stream", "extract"]),
)
def test_property_6_all_or_nothing_on_s3(
    s3_client: Any,
    scratch_tmp: Path,
    members: list[tuple[int, int]],
    fault: str,
    part_at_byte: int,
    error: str,
    strategy: str,
) -> None:
    """Property 6 (S3): for a part upload failing at any byte of the output (the part that
    holds it), or a failing CompleteMultipartUpload, the object is complete and verified,
    or absent, and no multipart upload stays open; /tmp is at its baseline."""
    named = [(f"m/{i}.bin", size, seed) for i, (size, seed) in enumerate(members)]
    key = f"model-{uuid.uuid4().hex[:8]}.zip"
    fail_part = part_at_byte // FIRST_PART_SIZE + 1 if fault == "part" else None
    client = FaultyS3(s3_client, fail_part, fault == "complete", error)
    source = LazyTar([LazyMember(n, size, seed) for n, size, seed in named])
    destination = S3Destination(client, f"s3://{BUCKET}/{key}")  # type: ignore[arg-type]
    options = PackageOptions(compression="store")
    try:
        if strategy == "stream":
            run_stream(source, destination, options)
        else:
            run_extract(
                source,
                destination,
                options,
                scratch_root=scratch_tmp,
                storage=StorageManager(scratch_tmp),
                critical=1.0,
            )
    except TmpwardenError as exc:
        assert client.failed, exc
        with pytest.raises(ClientError) as missing:
            s3_client.head_object(Bucket=BUCKET, Key=key)
        assert missing.value.response["Error"]["Code"] in ("404", "NoSuchKey")
        event(f"fault in {fault}: absent")
    else:
        assert not client.failed
        body = s3_client.get_object(Bucket=BUCKET, Key=key)["Body"].read()
        s3_client.delete_object(Bucket=BUCKET, Key=key)
        with zipfile.ZipFile(io.BytesIO(body)) as archive:
            digests = {
                i.filename: hashlib.sha256(archive.read(i)).hexdigest()
                for i in archive.infolist()
                if not i.is_dir()
            }
        assert digests == {name: _sha256(size, seed) for name, size, seed in named}
        event("complete and verified")
    uploads = s3_client.list_multipart_uploads(Bucket=BUCKET).get("Uploads", [])
    assert [u for u in uploads if u["Key"] == key] == []
    assert list(scratch_tmp.iterdir()) == []
