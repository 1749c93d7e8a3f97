"""Upload parts carry CRC32 checksums as current SDKs send them (issue 10, "Uploads"):
ChecksumAlgorithm CRC32 on CreateMultipartUpload, ChecksumCRC32 on each UploadPart, the
parts' checksums on CompleteMultipartUpload, with consecutive part numbers; both the real
server (SeaweedFS) and moto accept them, and the real server refuses a part whose bytes do
not match (moto does not check part checksums). The object's composite CRC-32 recognises
it when the Complete's answer is lost."""

from __future__ import annotations

import base64
import random
import uuid
import zlib
from typing import TYPE_CHECKING, Any, cast

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from handler.locations.multipart import S3MultipartWriter, crc32_checksum
from monitor.units import MiB

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

    from benchmarks.seaweed import SeaweedS3
    from tests.s3server import MotoS3

SIZE = 8 * MiB * 2 + 123  # two full 8 MiB parts and a short last one


def _payload() -> bytes:
    return random.Random(10).randbytes(SIZE)  # every part's bytes and CRC32 differ


class _Recording:
    """The client's calls, by operation, as the writer made them (a botocore event hook)."""

    def __init__(self, client: S3Client) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        client.meta.events.register("provide-client-params.s3.*", self._record)

    def _record(self, params: dict[str, Any], model: Any, **_: Any) -> None:
        self.calls.append((model.name, dict(params)))

    def of(self, operation: str) -> list[dict[str, Any]]:
        return [params for name, params in self.calls if name == operation]


@pytest.fixture(params=["moto", "seaweedfs"])
def server_client(
    request: pytest.FixtureRequest, moto_s3: MotoS3, seaweed: SeaweedS3
) -> tuple[S3Client, str]:
    client = moto_s3.client() if request.param == "moto" else seaweed.client()
    bucket = f"checksums-{uuid.uuid4().hex[:12]}"
    client.create_bucket(Bucket=bucket)
    return client, bucket


def test_parts_carry_crc32_and_the_server_accepts_them(server_client: tuple[S3Client, str]) -> None:
    client, bucket = server_client
    recording = _Recording(client)
    payload = _payload()
    writer = S3MultipartWriter(client, f"s3://{bucket}/out/a.zip", parts_in_flight=2)
    for offset in range(0, len(payload), MiB):
        writer.write(payload[offset : offset + MiB])
    writer.commit([])

    [created] = recording.of("CreateMultipartUpload")
    assert created["ChecksumAlgorithm"] == "CRC32"
    sent = sorted(recording.of("UploadPart"), key=lambda p: int(p["PartNumber"]))
    bodies = [payload[: 8 * MiB], payload[8 * MiB : 16 * MiB], payload[16 * MiB :]]
    assert [p["PartNumber"] for p in sent] == [1, 2, 3]
    assert [p["ChecksumCRC32"] for p in sent] == [
        base64.b64encode(zlib.crc32(body).to_bytes(4, "big")).decode() for body in bodies
    ]
    [completed] = recording.of("CompleteMultipartUpload")
    listed = completed["MultipartUpload"]["Parts"]
    assert [p["PartNumber"] for p in listed] == [1, 2, 3]  # consecutive, in order
    assert [p["ChecksumCRC32"] for p in listed] == [p["ChecksumCRC32"] for p in sent]
    body = client.get_object(Bucket=bucket, Key="out/a.zip")["Body"].read()
    assert body == payload
    print(f"{len(sent)} parts, CRC32 {[p['ChecksumCRC32'] for p in sent]}: accepted")


def test_a_part_whose_crc32_does_not_match_is_refused(seaweed: SeaweedS3) -> None:
    # the checksum is checked by the server, so a part corrupted on the way never lands
    client, bucket = seaweed.client(), f"checksums-{uuid.uuid4().hex[:12]}"
    client.create_bucket(Bucket=bucket)
    upload = client.create_multipart_upload(Bucket=bucket, Key="k", ChecksumAlgorithm="CRC32")
    with pytest.raises(ClientError) as refused:
        client.upload_part(
            Bucket=bucket,
            Key="k",
            UploadId=upload["UploadId"],
            PartNumber=1,
            Body=b"the bytes sent",
            ChecksumAlgorithm="CRC32",
            ChecksumCRC32=crc32_checksum(b"other bytes"),
        )
    print(refused.value.response["Error"])
    assert refused.value.response["Error"]["Code"] == "BadDigest"
    client.abort_multipart_upload(Bucket=bucket, Key="k", UploadId=upload["UploadId"])


class _AnswerLost:
    """The client, except that CompleteMultipartUpload's answer is lost after the upload
    was completed; with ``kms`` UploadPart answers as under SSE-KMS (ETags not MD5s)."""

    def __init__(self, client: S3Client, *, kms: bool) -> None:
        self._client = client
        self._kms = kms

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def upload_part(self, **kwargs: Any) -> Any:
        answer = dict(self._client.upload_part(**kwargs))
        if self._kms:
            answer["ServerSideEncryption"] = "aws:kms"
        return answer

    def complete_multipart_upload(self, **kwargs: Any) -> Any:
        self._client.complete_multipart_upload(**kwargs)
        raise EndpointConnectionError(endpoint_url="http://127.0.0.1")


@pytest.mark.parametrize("kms", [False, True], ids=["md5-etags", "sse-kms-etags"])
def test_an_upload_whose_answer_is_lost_is_recognised_without_hashing_its_parts(
    server_client: tuple[S3Client, str], kms: bool
) -> None:
    # The writer keeps no MD5 of its parts (1.4 CPU-s per GiB, issue 10): the object is
    # recognised by its composite CRC-32, which both servers show, and by the ETag
    # computed from the parts' ETags; under SSE-KMS the CRC-32 alone.
    client, bucket = server_client
    payload = _payload()
    lossy = cast("S3Client", _AnswerLost(client, kms=kms))
    writer = S3MultipartWriter(lossy, f"s3://{bucket}/out/lost.zip", parts_in_flight=2)
    for offset in range(0, len(payload), MiB):
        writer.write(payload[offset : offset + MiB])
    writer.commit([])
    head = client.head_object(Bucket=bucket, Key="out/lost.zip", ChecksumMode="ENABLED")
    print(f"ETag {head['ETag']}, ChecksumCRC32 {head.get('ChecksumCRC32')}: recognised")
    assert writer.etag == head["ETag"]
    assert client.get_object(Bucket=bucket, Key="out/lost.zip")["Body"].read() == payload
