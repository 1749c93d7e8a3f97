"""A plain copy to compare with: the source object's bytes copied S3 to S3, no packaging.

Run as ``python -m benchmarks.copy_s3 ENDPOINT BUCKET SOURCE_KEY DESTINATION_KEY``
(credentials from the usual AWS variables): boto3's managed transfers, a download into a
pipe and an upload from its other end, at once (boto3's defaults: 8 MiB parts, 10
threads each way). It moves the same bytes in and out as tmpwarden does through the same
proxy, without inflating, deflating or zipping them: how the test bed (the server, the
proxy and a client sharing 2 cores) treats a client that only moves bytes, with the tool
users run today. It is not a floor: boto3 starts its upload late (from a pipe it reads
ahead first: CreateMultipartUpload 1.3 s into a 15 s run on 2026-11-30), then keeps 10
parts in flight.

The client skips the SHA-256 of each body for its signature on this loopback endpoint, as
tmpwarden does (:mod:`handler.locations.signing`).
"""

from __future__ import annotations

import os
import sys
import threading
from typing import BinaryIO, cast

import boto3
from botocore.config import Config


class _PipeSource:
    """The pipe's read end as the upload's source: its end of file is the object's end only
    if the download succeeded; after a failed one it raises, so the upload is abandoned (its
    multipart upload aborted) and no destination is written."""

    def __init__(self, pipe: BinaryIO, failed: list[BaseException]) -> None:
        self.pipe, self.failed = pipe, failed

    def read(self, size: int = -1) -> bytes:
        data = self.pipe.read(size)
        if not data and self.failed:
            raise RuntimeError("the download failed: the copy is abandoned") from self.failed[0]
        return data


def main(endpoint: str, bucket: str, source_key: str, destination_key: str) -> None:
    client = boto3.client(
        "s3",
        endpoint_url=endpoint,
        config=Config(
            s3={"addressing_style": "path", "payload_signing_enabled": False},
            max_pool_connections=20,
        ),
    )
    read_end, write_end = os.pipe()
    failed: list[BaseException] = []

    def download() -> None:
        with os.fdopen(write_end, "wb") as sink:
            try:
                client.download_fileobj(bucket, source_key, sink)
            except BaseException as exc:  # noted before the pipe closes: the uploader sees it
                failed.append(exc)

    reader = threading.Thread(target=download)
    reader.start()
    with os.fdopen(read_end, "rb") as source:
        upload_source = cast("BinaryIO", _PipeSource(source, failed))  # read() is all it uses
        client.upload_fileobj(upload_source, bucket, destination_key)
    reader.join()
    if failed:
        raise failed[0]


if __name__ == "__main__":
    main(*sys.argv[1:5])
