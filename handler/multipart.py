"""Write a ZIP to S3 while it is produced: a multipart upload, completed after the last
byte and verified, or aborted on any failure, so no partial object ever appears.

Parts start at 8 MiB and double every 1,000 parts, so an object of up to 5 TB fits in
S3's 10,000 parts while memory stays at a few parts for any realistic artifact. Parts
upload on background threads (at most ``MAX_IN_FLIGHT`` at once) while the next one fills.
"""

from __future__ import annotations

import concurrent.futures
import logging
import threading
from collections.abc import Sequence
from typing import BinaryIO, cast

from botocore.exceptions import ClientError

from handler.errors import CompressionError, RemoteServiceError
from handler.memory import explain
from handler.s3 import S3Client, S3Url, call, error_code
from handler.zipformat import ZipEntry
from monitor.units import GiB, MiB, TiB

log = logging.getLogger("tmpwarden.handler")

FIRST_PART_SIZE = 8 * MiB
PARTS_PER_DOUBLING = 1000
MAX_PART_SIZE = 5 * GiB
MAX_PARTS = 10_000
MAX_OBJECT_SIZE = 5 * TiB
MAX_IN_FLIGHT = 2


def part_size(part_number: int) -> int:
    """The size of part ``part_number`` (1-based): 8 MiB, doubling every 1,000 parts."""
    doublings = (part_number - 1) // PARTS_PER_DOUBLING
    return min(FIRST_PART_SIZE << doublings, MAX_PART_SIZE)


class _UploadSink:
    """The file-like face of the upload that the zipper writes to (not seekable)."""

    def __init__(self, writer: S3MultipartWriter) -> None:
        self._writer = writer

    def write(self, data: bytes) -> int:
        self._writer.write(data)
        return len(data)

    def seekable(self) -> bool:
        return False


class S3MultipartWriter:
    """One attempt at one S3 destination."""

    def __init__(self, client: S3Client, location: str) -> None:
        self._client = client
        self._url = S3Url.parse(location)
        self.name = location
        created = call(
            location,
            lambda: client.create_multipart_upload(
                Bucket=self._url.bucket, Key=self._url.key, ContentType="application/zip"
            ),
            reading_source=False,
        )
        self.upload_id = created["UploadId"]
        self._buffer = bytearray()
        self._part_number = 1
        self._parts: list[tuple[int, concurrent.futures.Future[str]]] = []
        self._pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=MAX_IN_FLIGHT, thread_name_prefix="tmpwarden-upload"
        )
        self._slots = threading.BoundedSemaphore(MAX_IN_FLIGHT)
        self.bytes_written = 0
        self._closed = False

    @property
    def sink(self) -> BinaryIO:
        return cast(BinaryIO, _UploadSink(self))

    def write(self, data: bytes) -> None:
        self._raise_failed_part()
        self._buffer += data
        self.bytes_written += len(data)
        while len(self._buffer) >= part_size(self._part_number):
            size = part_size(self._part_number)
            chunk = bytes(self._buffer[:size])
            del self._buffer[:size]
            self._submit(chunk)

    def _submit(self, chunk: bytes) -> None:
        if self._part_number > MAX_PARTS:
            raise CompressionError(f"{self.name}: the ZIP outgrew S3's 10,000 parts (5 TB)")
        self._slots.acquire()  # back-pressure: at most MAX_IN_FLIGHT parts in memory
        number = self._part_number
        try:
            future = self._pool.submit(self._upload_part, number, chunk)
        except RuntimeError as exc:  # a worker thread could not start
            self._slots.release()
            raise (explain(exc) or exc) from exc
        self._part_number += 1
        future.add_done_callback(lambda _f: self._slots.release())
        self._parts.append((number, future))

    def _upload_part(self, number: int, chunk: bytes) -> str:
        response = call(
            f"{self.name} (part {number})",
            lambda: self._client.upload_part(
                Bucket=self._url.bucket,
                Key=self._url.key,
                UploadId=self.upload_id,
                PartNumber=number,
                Body=chunk,
            ),
            reading_source=False,
        )
        return str(response["ETag"])

    def _raise_failed_part(self) -> None:
        for _, future in self._parts:
            if future.done() and future.exception() is not None:
                raise cast(BaseException, future.exception())

    def commit(self, entries: Sequence[ZipEntry]) -> None:
        """Upload the last part, complete the upload, check the object's size."""
        try:
            if self._buffer or not self._parts:
                self._submit(bytes(self._buffer))
                self._buffer.clear()
            parts = [{"PartNumber": n, "ETag": f.result()} for n, f in self._parts]
            call(
                self.name,
                lambda: self._client.complete_multipart_upload(
                    Bucket=self._url.bucket,
                    Key=self._url.key,
                    UploadId=self.upload_id,
                    MultipartUpload={"Parts": parts},  # type: ignore[typeddict-item]
                ),
                reading_source=False,
            )
        except BaseException:
            self.abort()
            raise
        self._closed = True
        self._pool.shutdown(wait=True)
        self._verify()

    def _verify(self) -> None:
        head = call(
            self.name,
            lambda: self._client.head_object(Bucket=self._url.bucket, Key=self._url.key),
            reading_source=False,
        )
        size = int(head["ContentLength"])
        if size != self.bytes_written:
            call(
                self.name,
                lambda: self._client.delete_object(Bucket=self._url.bucket, Key=self._url.key),
                reading_source=False,
            )
            raise RemoteServiceError(
                f"{self.name}: the stored object has {size} bytes, {self.bytes_written} were "
                "written; it was deleted, try again",
                transient=True,
            )

    def abort(self) -> None:
        """Stop the upload and make S3 drop its parts; safe to call more than once."""
        if self._closed:
            return
        self._closed = True
        for _, future in self._parts:
            future.cancel()
        self._pool.shutdown(wait=True, cancel_futures=True)
        try:
            self._client.abort_multipart_upload(
                Bucket=self._url.bucket, Key=self._url.key, UploadId=self.upload_id
            )
        except Exception as exc:  # the lifecycle rule removes what this cannot
            if not (isinstance(exc, ClientError) and error_code(exc) == "NoSuchUpload"):
                log.error(
                    "could not abort multipart upload %s of %s: %s", self.upload_id, self.name, exc
                )


class S3Destination:
    """A ZIP written to S3 by multipart upload."""

    def __init__(self, client: S3Client, location: str) -> None:
        self.client = client
        self._location = location

    @property
    def name(self) -> str:
        return self._location

    def check_writable(self) -> None:
        """Checked when the upload is created (the first thing ``begin`` does)."""

    def begin(self) -> S3MultipartWriter:
        return S3MultipartWriter(self.client, self._location)
