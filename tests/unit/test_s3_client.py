"""The S3 client's signing of uploaded bodies: SHA-256 of every byte only where it guards
something (issue 10: the CPU per GiB of the S3 path). botocore hashes a body whose checksum
the caller computed even over HTTPS, where it sends UNSIGNED-PAYLOAD for one it computes.

Each request is caught before it is sent (botocore's ``before-send`` event answers it), so
what is checked is the signed request itself: its ``x-amz-content-sha256`` header, and the
part's CRC-32 header, which S3 verifies whether the payload is signed or not.
"""

from __future__ import annotations

import hashlib
import threading
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from botocore.awsrequest import AWSPreparedRequest, AWSResponse

from handler.locations.multipart import crc32_checksum
from handler.locations.ranged import ReadPlan
from handler.locations.s3 import make_client
from handler.locations.throughput import TARGET_ENV, UploadPlan
from tests.s3server import CREDENTIALS

BODY = bytes(range(256)) * 4096  # 1 MiB
UNSIGNED = "UNSIGNED-PAYLOAD"


@pytest.fixture(autouse=True)
def _credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in CREDENTIALS.items():
        monkeypatch.setenv(key, value)
    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "HTTP_PROXY", "http_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")  # no endpoint_url from a profile


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
    [
        "http://127.0.0.1:8333",
        "http://localhost:9000",
        "http://LOCALHOST:9000",
        "http://[::1]:9000",
        "http://[::ffff:127.0.0.1]:9000",  # IPv4-mapped
        "http://127.8.9.1",
    ],
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


@pytest.mark.parametrize(
    ("variable", "value"),
    [("AWS_ENDPOINT_URL_S3", "http://10.0.0.5:9000"), ("AWS_CONFIG_FILE", "endpoint_url")],
)
def test_an_http_endpoint_botocore_finds_itself_keeps_the_signed_payload(
    variable: str, value: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # no --endpoint-url nor AWS_ENDPOINT_URL: botocore still takes an endpoint from
    # AWS_ENDPOINT_URL_S3 or the config file's endpoint_url, here plain HTTP across a network,
    # where an unsigned body could be changed on the way unseen
    if variable == "AWS_CONFIG_FILE":
        config = tmp_path / "config"
        config.write_text("[default]\nendpoint_url = http://10.0.0.5:9000\n")
        value = str(config)
    monkeypatch.setenv(variable, value)
    assert make_client().meta.endpoint_url == "http://10.0.0.5:9000"
    headers = sent_headers(None)
    assert headers["x-amz-content-sha256"] == hashlib.sha256(BODY).hexdigest()


def test_an_https_endpoint_botocore_finds_itself_is_not_hashed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "https://minio.internal:9000")
    assert sent_headers(None)["x-amz-content-sha256"] == UNSIGNED


def test_a_loopback_endpoint_reached_through_a_proxy_keeps_the_signed_payload(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # HTTP_PROXY sends the plain-HTTP request to another host first (botocore honours it
    # unless NO_PROXY names the endpoint): the bytes leave loopback
    monkeypatch.setenv("HTTP_PROXY", "http://10.9.9.9:3128")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    headers = sent_headers("http://127.0.0.1:8333")
    assert headers["x-amz-content-sha256"] == hashlib.sha256(BODY).hexdigest()
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    assert sent_headers("http://127.0.0.1:8333")["x-amz-content-sha256"] == UNSIGNED


class _HeldEndpoint:
    """An HTTP endpoint on 127.0.0.1 answering each request (200, empty) once ``together``
    requests are open at once; it counts the TCP connections it accepted."""

    def __init__(self, together: int) -> None:
        barrier = threading.Barrier(together, timeout=10)
        self.connections = 0
        counting = threading.Lock()
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()
                with counting:
                    endpoint.connections += 1

            def do_HEAD(self) -> None:
                barrier.wait()
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.mark.parametrize("target_mb_s", ["75", "375", "1250"])
def test_every_request_in_flight_at_once_keeps_its_connection(
    target_mb_s: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # each source connection, each part uploading (4 at 75 MB/s, 5 at 375, 15 at 1,250) and
    # one request of the job's own (a ZIP's random read, the Complete): a pool smaller than
    # that (8) dropped a connection after each round ("Connection pool is full, discarding
    # connection") and opened a new one, a new TLS handshake on AWS, for the next request
    monkeypatch.setenv(TARGET_ENV, target_mb_s)
    together = ReadPlan.from_env().connections + UploadPlan.from_env().parts_in_flight + 1
    endpoint = _HeldEndpoint(together)
    try:
        client = make_client(endpoint.url)
        with ThreadPoolExecutor(together) as pool:
            for _ in range(3):
                heads = [
                    pool.submit(client.head_object, Bucket="models", Key=f"k{n}")
                    for n in range(together)
                ]
                for head in heads:
                    head.result()
    finally:
        endpoint.close()
    assert endpoint.connections == together
