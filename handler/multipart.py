"""Write a ZIP to S3 while it is produced: a multipart upload, completed after the last
byte and verified, or aborted on any failure, so no partial object ever appears.

Parts start at 8 MiB and double every 1,000 parts, so an object of up to 5 TB fits in
S3's 10,000 parts while memory stays at a few parts for any realistic artifact. Parts
upload on background threads (at most ``MAX_IN_FLIGHT`` at once) while the next one fills.
The part holding a member's local header is held back until the zipper patches the
header's CRC and sizes (:class:`handler.parts.PartCutter`), so the ZIP needs no data
descriptors; memory is then at most one held part, the parts in flight and the one filling.
"""

from __future__ import annotations

import bisect
import concurrent.futures
import logging
import threading
from collections.abc import Sequence
from typing import BinaryIO, cast

from botocore.exceptions import ClientError

from handler.errors import CompressionError, RemoteServiceError
from handler.memory import explain
from handler.parts import Part, PartCutter
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
    """The file-like face of the upload that the zipper writes to: not seekable, but a
    :class:`handler.zipsink.PatchableSink` (a held range is patched before it is sent)."""

    def __init__(self, writer: S3MultipartWriter) -> None:
        self._writer = writer

    def write(self, data: bytes) -> int:
        self._writer.write(data)
        return len(data)

    def seekable(self) -> bool:
        return False

    def tell(self) -> int:
        return self._writer.bytes_written

    def hold(self, offset: int, length: int) -> None:
        self._writer.hold(offset, length)

    def patch(self, offset: int, data: bytes) -> None:
        self._writer.patch(offset, data)


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
        self._cutter = PartCutter(part_size)
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
        self.bytes_written += len(data)
        for part in self._cutter.write(data):
            self._submit(part)

    def hold(self, offset: int, length: int) -> None:
        """Keep the part that will hold these bytes until :meth:`patch` (see PartCutter)."""
        self._cutter.hold(offset, length)

    def patch(self, offset: int, data: bytes) -> None:
        """Overwrite the held bytes, then upload the part that holds them."""
        self._raise_failed_part()
        for part in self._cutter.patch(offset, data):
            self._submit(part)

    def _submit(self, part: Part) -> None:
        if part.number > MAX_PARTS:
            raise CompressionError(f"{self.name}: the ZIP outgrew S3's 10,000 parts (5 TB)")
        self._slots.acquire()  # back-pressure: at most MAX_IN_FLIGHT parts in memory
        try:
            future = self._pool.submit(self._upload_part, part.number, part.data)
        except RuntimeError as exc:  # a worker thread could not start
            self._slots.release()
            raise (explain(exc) or exc) from exc
        future.add_done_callback(lambda _f: self._slots.release())
        # a held part is sent after later ones: keep the list in part-number order
        bisect.insort(self._parts, (part.number, future), key=lambda entry: entry[0])

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
            for part in self._cutter.close():
                self._submit(part)
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
