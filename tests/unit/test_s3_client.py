"""The S3 client's signing of uploaded bodies: SHA-256 of every byte only where it guards
something (issue 10: the CPU per GiB of the S3 path). botocore hashes a body whose checksum
the caller computed even over HTTPS, where it sends UNSIGNED-PAYLOAD for one it computes.

Each request is caught before it is sent (botocore's ``before-send`` event answers it), so
what is checked is the signed request itself: its ``x-amz-content-sha256`` header, and the
part's CRC-32 header, which S3 verifies whether the payload is signed or not.
"""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
from botocore.awsrequest import AWSPreparedRequest, AWSResponse

from handler.locations.multipart import crc32_checksum
from handler.locations.s3 import make_client
from tests.s3server import CREDENTIALS

BODY = bytes(range(256)) * 4096  # 1 MiB
UNSIGNED = "UNSIGNED-PAYLOAD"


@pytest.fixture(autouse=True)
def _credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in CREDENTIALS.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)


class _Response:
    """Enough of an HTTP response for botocore to parse an UploadPart's answer."""

    def __init__(self) -> None:
        self.headers = {"ETag": '"0"'}

    def stream(self, *_: Any, **__: Any) -> Any:
        return iter(())


def sent_headers(endpoint: str | None) -> dict[str, str]:
    """The headers of one UploadPart of :data:`BODY` as tmpwarden sends it to ``endpoint``."""
    client = make_client(endpoint)
    seen: dict[str, str] = {}

    def answer(request: AWSPreparedRequest, **_: Any) -> AWSResponse:
        for name, value in request.headers.items():
            seen[name.lower()] = value.decode() if isinstance(value, bytes) else str(value)
        return AWSResponse(request.url, 200, {"ETag": '"0"'}, _Response())  # type: ignore[arg-type]

    client.meta.events.register("before-send.s3.UploadPart", answer)  # type: ignore[arg-type]
    client.upload_part(
        Bucket="models",
        Key="m.zip",
        UploadId="u",
        PartNumber=1,
        Body=BODY,
        ChecksumAlgorithm="CRC32",
        ChecksumCRC32=crc32_checksum(BODY),
    )
    return seen


@pytest.mark.parametrize(
    "endpoint",
    ["http://127.0.0.1:8333", "http://localhost:9000", "http://[::1]:9000", "http://127.8.9.1"],
)
def test_a_part_sent_to_a_loopback_endpoint_is_not_hashed_for_its_signature(
    endpoint: str,
) -> None:
    # over plain HTTP botocore would hash every uploaded byte with SHA-256 (about 1 CPU-s per
    # GiB on the test bed) to guard a network that loopback does not cross
    headers = sent_headers(endpoint)
    assert headers["x-amz-content-sha256"] == UNSIGNED
    assert headers["x-amz-checksum-crc32"] == crc32_checksum(BODY)  # S3 still checks the bytes
    signed = headers["authorization"].partition("SignedHeaders=")[2].partition(",")[0]
    assert {"x-amz-checksum-crc32", "x-amz-content-sha256"} <= set(signed.split(";"))


@pytest.mark.parametrize("endpoint", ["http://10.0.0.5:9000", "http://minio.internal:9000"])
def test_a_part_sent_over_plain_http_across_a_network_keeps_its_signed_payload(
    endpoint: str,
) -> None:
    headers = sent_headers(endpoint)
    assert headers["x-amz-content-sha256"] == hashlib.sha256(BODY).hexdigest()


@pytest.mark.parametrize("endpoint", [None, "https://minio.internal:9000"])
def test_a_part_sent_over_https_is_not_hashed_for_its_signature(endpoint: str | None) -> None:
    # None: AWS, as in Lambda. botocore 1.44 hashed these bodies: its rule (HTTPS and a
    # checksum header, botocore.auth.S3SigV4Auth) does not see a checksum the caller sent
    headers = sent_headers(endpoint)
    assert headers["x-amz-content-sha256"] == UNSIGNED
    assert headers["x-amz-checksum-crc32"] == crc32_checksum(BODY)
