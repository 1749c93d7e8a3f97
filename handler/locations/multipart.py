"""Write a ZIP to S3 while it is produced: a multipart upload, completed after the last
byte and verified (:mod:`handler.locations.commit`), or aborted on any failure, so no partial
object ever appears.

Parts are sized from the planned output (:func:`plan_part_size`): the plan fits in
``PLANNED_PARTS`` (2,500) parts of at least 8 MiB, so large outputs get few large parts; past
the plan they double every 1,000 parts (:func:`part_size`), so an output that outgrows its
plan (even 4x) still fits in S3's 10,000 parts while memory stays at a few parts. Parts
upload on background threads while the next one fills, as many at once as the target
throughput wants (:class:`handler.locations.throughput.UploadPlan`: one per 85 MB/s, at
least 2). Each part carries its CRC32 as current SDKs send it (``ChecksumAlgorithm`` CRC32
on CreateMultipartUpload, ``ChecksumCRC32`` on each UploadPart, the parts' checksums on
CompleteMultipartUpload), computed once on the part's buffer, so S3 checks every part.
No MD5 of a part is computed (it cost 1.4 CPU-s per GiB, 14% of the S3 path's CPU, issue
10): the object is recognised by the composite CRC-32 and the parts' ETags
(:mod:`handler.locations.commit`).
The part holding a member's local header is held back until the zipper patches the
header's CRC and sizes (:class:`handler.locations.parts.PartCutter`), so the ZIP needs no data
descriptors; memory is then at most one held part, the parts in flight and the one filling.
"""

from __future__ import annotations

import base64
import bisect
import concurrent.futures
import logging
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, BinaryIO, Literal, cast

from botocore.exceptions import ClientError

from handler.codec import crc32
from handler.errors import CompressionError, DestinationExistsError
from handler.locations.commit import (
    ENCRYPTED_ETAGS,
    Upload,
    abort_upload,
    complete,
    exists_message,
)
from handler.locations.parts import Part, PartCutter
from handler.locations.s3 import (
    DENIED_CODES,
    NOT_FOUND_CODES,
    S3Client,
    S3Url,
    call,
    error_code,
    translate,
)
from handler.locations.throughput import UploadPlan
from handler.memory import explain
from handler.zipwriter.records import ZipEntry
from monitor.units import GiB, MiB, TiB

if TYPE_CHECKING:
    from handler.locations.local import IfExists

log = logging.getLogger("tmpwarden.handler")

FIRST_PART_SIZE = 8 * MiB
PARTS_PER_DOUBLING = 1000
MAX_PART_SIZE = 5 * GiB
MAX_PARTS = 10_000
MAX_OBJECT_SIZE = 5 * TiB
CHECKSUM_ALGORITHM: Literal["CRC32"] = "CRC32"


PLANNED_PARTS = 2_500
GZIP_OUTPUT_FACTOR = 2


def planned_output_bytes(source: str, source_size: int, content_bytes: int | None = None) -> int:
    """The ZIP size, in bytes, planned for ``source`` (``source_size`` bytes) before the work:
    ``content_bytes`` when the plan measured it from the archive's headers (the files'
    declared sizes with the ZIP's records: :func:`handler.locations.buffers.zip_bytes_for`);
    else the source's size, times ``GZIP_OUTPUT_FACTOR`` (2) for a gzip-compressed source,
    whose uncompressed size is unknown until it is read (model weights shrink only 7-18%
    under deflate, so 2x over-covers them; an output past the plan is covered by the
    doubling)."""
    if content_bytes is not None:
        return max(0, content_bytes)
    name = source.lower().rstrip("/")
    gzipped = name.endswith((".gz", ".tgz"))
    return max(0, source_size) * (GZIP_OUTPUT_FACTOR if gzipped else 1)


def plan_part_size(planned_bytes: int) -> int:
    """The first part size, in bytes, for an output of ``planned_bytes``: the smallest of
    8 MiB x 2^k that fits the plan in ``PLANNED_PARTS`` (2,500) parts, at most 5 GiB.
    S3's limits (https://docs.aws.amazon.com/AmazonS3/latest/userguide/qfacts.html): parts
    5 MiB to 5 GiB, at most 10,000 parts, so 5 GiB x 10,000 = 48.8 TiB is the largest plan."""
    size = FIRST_PART_SIZE
    while size < MAX_PART_SIZE and size * PLANNED_PARTS < planned_bytes:
        size *= 2
    return min(size, MAX_PART_SIZE)


def crc32_checksum(data: bytes) -> str:
    """``ChecksumCRC32`` of ``data``: the base64 of its CRC-32 (ISO-HDLC, zlib's), 4 bytes
    big-endian, as S3 and the SDKs write it ("Checking object integrity", S3 User Guide).
    One pass over the buffer (:func:`handler.codec.crc32`: ISA-L's, else zlib's)."""
    return base64.b64encode(crc32(data).to_bytes(4, "big")).decode("ascii")


def part_size(part_number: int, first: int = FIRST_PART_SIZE) -> int:
    """The size of part ``part_number`` (1-based), in bytes: ``first`` (from
    :func:`plan_part_size`) for the planned ``PLANNED_PARTS``, then doubling every 1,000
    parts (a safety net for an output larger than planned), at most 5 GiB."""
    past_plan = part_number - 1 - PLANNED_PARTS
    doublings = 0 if past_plan < 0 else past_plan // PARTS_PER_DOUBLING + 1
    return min(first << doublings, MAX_PART_SIZE)


def largest_part_size(output_bytes: int, first: int) -> int:
    """The size, in bytes, of the part that holds byte ``output_bytes`` of the output
    (the largest part an output that size uploads) with :func:`part_size` from ``first``."""
    written, number = 0, 1
    while number < MAX_PARTS and written + part_size(number, first) < output_bytes:
        written += part_size(number, first)
        number += 1
    return part_size(number, first)


class _UploadSink:
    """The file-like face of the upload that the zipper writes to: not seekable, but a
    :class:`handler.zipwriter.zipsink.PatchableSink` (a held range is patched before it is sent)."""

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

    def __init__(
        self,
        client: S3Client,
        location: str,
        if_exists: IfExists = "overwrite",
        *,
        planned_bytes: int = 0,
        parts_in_flight: int = UploadPlan().parts_in_flight,
    ) -> None:
        self._client = client
        self._url = S3Url.parse(location)
        self.name = location
        self._if_exists = if_exists
        created = call(
            location,
            lambda: client.create_multipart_upload(
                Bucket=self._url.bucket,
                Key=self._url.key,
                ContentType="application/zip",
                ChecksumAlgorithm=CHECKSUM_ALGORITHM,
            ),
            reading_source=False,
        )
        self.upload_id = created["UploadId"]
        first = plan_part_size(planned_bytes)
        self.first_part_size = first
        self._cutter = PartCutter(lambda number: part_size(number, first))
        self.parts_in_flight = max(1, parts_in_flight)
        self._parts: list[tuple[int, concurrent.futures.Future[str]]] = []
        self._pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=self.parts_in_flight, thread_name_prefix="tmpwarden-upload"
        )
        self._slots = threading.BoundedSemaphore(self.parts_in_flight)
        self.bytes_written = 0
        self._closed = False
        self._md5_etags = True
        self._part_crc32s: dict[int, str] = {}
        self.etag: str | None = None

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
        self._slots.acquire()  # back-pressure: at most parts_in_flight parts uploading
        try:
            future = self._pool.submit(self._upload_part, part.number, part.data)
        except RuntimeError as exc:  # a worker thread could not start
            self._slots.release()
            raise (explain(exc) or exc) from exc
        future.add_done_callback(lambda _f: self._slots.release())
        # a held part is sent after later ones: keep the list in part-number order
        bisect.insort(self._parts, (part.number, future), key=lambda entry: entry[0])

    def _upload_part(self, number: int, chunk: bytes) -> str:
        checksum = crc32_checksum(chunk)
        self._part_crc32s[number] = checksum
        response = call(
            f"{self.name} (part {number})",
            lambda: self._client.upload_part(
                Bucket=self._url.bucket,
                Key=self._url.key,
                UploadId=self.upload_id,
                PartNumber=number,
                Body=chunk,
                ChecksumAlgorithm=CHECKSUM_ALGORITHM,
                ChecksumCRC32=checksum,
            ),
            reading_source=False,
        )
        if response.get("ServerSideEncryption") in ENCRYPTED_ETAGS or response.get(
            "SSECustomerAlgorithm"
        ):
            self._md5_etags = False  # the object's ETag cannot be computed from the parts'
        return str(response["ETag"])

    def _raise_failed_part(self) -> None:
        for _, future in self._parts:
            if future.done() and future.exception() is not None:
                raise cast(BaseException, future.exception())

    def commit(self, entries: Sequence[ZipEntry]) -> None:
        """Upload the last part, then the commit point (:func:`handler.locations.commit.complete`):
        returns when the object at the key is verified to be this attempt's; raises
        CommitUnverifiedError when it was written but cannot be verified."""
        try:
            for part in self._cutter.close():
                self._submit(part)
            parts = [(n, f.result()) for n, f in self._parts]
        except BaseException:
            self.abort()
            raise
        self._closed = True  # from here on the upload is completed or aborted by complete()
        self._pool.shutdown(wait=True)
        self.etag = complete(
            Upload(
                client=self._client,
                url=self._url,
                upload_id=self.upload_id,
                parts=parts,
                part_crc32s=[self._part_crc32s[n] for n, _ in parts],
                md5_etags=self._md5_etags,
                size=self.bytes_written,
                if_exists=self._if_exists,
            )
        )

    def abort(self) -> None:
        """Stop the upload and make S3 drop its parts; safe to call more than once.
        Runs past the invocation's deadline (handler.deadline)."""
        if self._closed:
            return
        self._closed = True
        for _, future in self._parts:
            future.cancel()
        self._pool.shutdown(wait=True, cancel_futures=True)
        try:
            abort_upload(self._client, self._url, self.upload_id)
        except Exception as exc:  # the lifecycle rule removes what this cannot
            log.error(
                "could not abort multipart upload %s of %s: %s", self.upload_id, self.name, exc
            )


class S3Destination:
    """A ZIP written to S3 by multipart upload; ``if_exists="fail"`` never replaces an object."""

    def __init__(self, client: S3Client, location: str, if_exists: IfExists = "overwrite") -> None:
        self.client = client
        self._location = location
        self.if_exists = if_exists
        self.planned_bytes = 0  # the planned ZIP size (planned_output_bytes); 0: unknown
        self.upload_plan = UploadPlan.from_env()  # parts in flight from TMPWARDEN_TARGET_MB_S

    @property
    def name(self) -> str:
        return self._location

    def check_writable(self) -> None:
        """With ``if_exists="fail"``, refuse an existing key before any work (the Complete's
        ``If-None-Match: *`` still guards the race); a 403 (no s3:ListBucket) cannot tell,
        and leaves it to the Complete. The rest is checked when the upload is created."""
        if self.if_exists != "fail":
            return
        url = S3Url.parse(self._location)
        try:
            self.client.head_object(Bucket=url.bucket, Key=url.key)
        except ClientError as exc:
            if error_code(exc) in NOT_FOUND_CODES or error_code(exc) in DENIED_CODES:
                return
            raise translate(exc, self._location, reading_source=False) from exc
        except Exception as exc:
            raise translate(exc, self._location, reading_source=False) from exc
        raise DestinationExistsError(exists_message(self._location))

    def begin(self) -> S3MultipartWriter:
        self.check_writable()
        return S3MultipartWriter(
            self.client,
            self._location,
            self.if_exists,
            planned_bytes=self.planned_bytes,
            parts_in_flight=self.upload_plan.parts_in_flight,
        )
