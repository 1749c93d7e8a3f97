"""S3 plumbing: URLs, the client, error translation, and S3 sources.

A source is read through ranged GETs (:mod:`handler.locations.ranged`): as a stream of
ranges fetched several at once for tar formats, and for zip at random (end records and
central directory first) then through the same parallel ranges from each member on while
the members are read in order (:class:`S3RangeReader`), each pinned to the ETag seen at
the start so a concurrent overwrite cannot mix two objects, and each resumed where it
broke.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, BinaryIO, TypeVar, cast

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    NoCredentialsError,
    NoRegionError,
    ParamValidationError,
    PartialCredentialsError,
)

from handler.deadline import CONNECT_TIMEOUT_S, stall_timeout_from_env
from handler.deadline import install as install_deadline
from handler.errors import (
    AccessDeniedError,
    InputError,
    RemoteServiceError,
    SourceNotFoundError,
    SourceReadError,
    TmpwardenError,
)
from handler.locations.ranged import GetRange, ParallelRangeStream, RangeFetcher, ReadPlan
from handler.locations.signing import set_payload_signing
from handler.locations.throughput import UploadPlan
from handler.memory import explain
from handler.streams import ReadOnlyStream
from monitor.units import KiB, MiB

if TYPE_CHECKING:
    from botocore.config import _S3Dict
    from mypy_boto3_s3 import S3Client
else:
    S3Client = Any

__all__ = [
    "S3Client",
    "S3RangeReader",
    "S3Source",
    "S3Url",
    "call",
    "error_code",
    "make_client",
    "translate",
]

ENDPOINT_ENV = "AWS_ENDPOINT_URL"
RANDOM_READ = 64 * KiB
"""The least a read outside the sequential window fetches: the ZIP end records, a
local header read again; the central directory is read in one request of its size."""
NOT_FOUND_CODES = frozenset({"NoSuchKey", "NoSuchBucket", "404", "NotFound"})
DENIED_CODES = frozenset(
    {
        "AccessDenied",
        "403",
        "Forbidden",
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "AllAccessDisabled",
        "InvalidToken",
        "ExpiredToken",
    }
)
TRANSIENT_CODES = frozenset(
    {
        "SlowDown",
        "Throttling",
        "ThrottlingException",
        "RequestTimeout",
        "RequestTimeTooSkewed",
        "InternalError",
        "ServiceUnavailable",
        "ConditionalRequestConflict",  # 409 on a conditional Complete: start the upload again
        "500",
        "502",
        "503",
        "504",
    }
)
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class S3Url:
    """``s3://bucket/key``."""

    bucket: str
    key: str

    @classmethod
    def parse(cls, text: str) -> S3Url:
        bucket, _, key = text.removeprefix("s3://").partition("/")
        return cls(bucket, key)

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.key}"


def make_client(endpoint_url: str | None = None, *, stall_timeout: float | None = None) -> S3Client:
    """An S3 client; ``endpoint_url`` (or ``AWS_ENDPOINT_URL``) selects an S3-compatible
    endpoint, addressed path-style. Retries: botocore's standard mode (4 attempts).

    Every wait is bounded: a connect by :data:`handler.deadline.CONNECT_TIMEOUT_S`, a read
    that stalls by ``stall_timeout`` seconds (default ``TMPWARDEN_STALL_TIMEOUT_S``, 10),
    and no request or retry starts past the invocation's deadline (handler.deadline)."""
    endpoint = endpoint_url or os.environ.get(ENDPOINT_ENV) or None
    if endpoint is not None and not endpoint.startswith(("http://", "https://")):
        raise InputError(
            f"endpoint URL {endpoint!r} must start with http:// or https:// "
            f"(from --endpoint-url or {ENDPOINT_ENV})"
        )
    config = Config(
        retries={"mode": "standard", "max_attempts": 4},
        max_pool_connections=pool_connections(),
        s3=s3_options(endpoint),
        connect_timeout=CONNECT_TIMEOUT_S,
        read_timeout=stall_timeout if stall_timeout is not None else stall_timeout_from_env(),
    )
    client: S3Client = boto3.session.Session().client("s3", endpoint_url=endpoint, config=config)
    set_payload_signing(client)
    install_deadline(client)
    return client


def pool_connections() -> int:
    """Connections the client keeps open for reuse: every request a job has in flight at
    once, each source connection (``TMPWARDEN_SOURCE_CONNECTIONS``), each part uploading
    (:class:`handler.locations.throughput.UploadPlan`: 4 at the default 75 MB/s, 15 at
    1,250) and one of the job's own (a ZIP's random read, the Complete); at least 8. A
    smaller pool drops a connection each time more are in use ("Connection pool is full,
    discarding connection") and the next request opens one again (on AWS a TLS handshake).
    """
    return max(8, ReadPlan.from_env().connections + UploadPlan.from_env().parts_in_flight + 1)


def s3_options(endpoint: str | None) -> _S3Dict:
    """botocore's ``s3`` options for ``endpoint`` (None: AWS's own): an S3-compatible
    endpoint is addressed path-style. Payload signing is set on the client made
    (:func:`handler.locations.signing.set_payload_signing`)."""
    return {"addressing_style": "path"} if endpoint else {}


def error_code(exc: ClientError) -> str:
    error = exc.response.get("Error", {})
    code = str(error.get("Code", ""))
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return code or str(status or "")


def translate(exc: Exception, what: str, *, reading_source: bool) -> TmpwardenError:
    """A TmpwardenError that says what failed, whether it is worth retrying, and what to do."""
    if isinstance(exc, TmpwardenError):
        return exc
    exhausted = explain(exc)
    if exhausted is not None:  # botocore's MemoryError is not S3's fault
        return exhausted
    if isinstance(exc, ClientError):
        code = error_code(exc)
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
        if code in NOT_FOUND_CODES:
            if reading_source:
                return SourceNotFoundError(
                    f"{what}: does not exist ({code}); check the bucket and key"
                )
            return RemoteServiceError(
                f"{what}: bucket not found ({code}); check the destination", transient=False
            )
        if code in DENIED_CODES:
            if reading_source:
                return AccessDeniedError(
                    f"{what}: access denied ({code}); check that the key exists and grant the "
                    "function's role s3:GetObject (and s3:ListBucket on the prefix, without "
                    "which S3 answers a missing key with 403)"
                )
            return AccessDeniedError(
                f"{what}: access denied ({code}); grant the function's role s3:PutObject, "
                "s3:AbortMultipartUpload and s3:GetObject on the destination prefix"
            )
        if code == "PreconditionFailed":
            return RemoteServiceError(
                f"{what}: the object changed while it was being read (its ETag no longer "
                "matches); the next attempt reads the new version",
                transient=True,
            )
        transient = code in TRANSIENT_CODES or status >= 500
        return RemoteServiceError(f"{what}: S3 error {code}: {exc}", transient=transient)
    if isinstance(exc, NoCredentialsError | PartialCredentialsError):
        return AccessDeniedError(
            f"{what}: no AWS credentials were found; set AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY, a profile, or run where a role provides them"
        )
    if isinstance(exc, NoRegionError):
        return InputError(f"{what}: no AWS region is set; set AWS_REGION or AWS_DEFAULT_REGION")
    if isinstance(exc, ParamValidationError):
        return InputError(f"{what}: the request is invalid ({exc}); check the bucket and key")
    if isinstance(exc, BotoCoreError | ConnectionError | TimeoutError | OSError):
        if reading_source:
            return SourceReadError(f"{what}: reading failed ({exc}); try again")
        return RemoteServiceError(f"{what}: request failed ({exc})", transient=True)
    return RemoteServiceError(f"{what}: {type(exc).__name__}: {exc}", transient=False)


def call(what: str, action: Callable[[], T], *, reading_source: bool) -> T:
    """Run one S3 call, translating its failure."""
    try:
        return action()
    except Exception as exc:
        raise translate(exc, what, reading_source=reading_source) from exc


def range_getter(client: S3Client, url: S3Url, etag: str) -> GetRange:
    """Ranged GetObjects of ``url`` pinned to ``etag`` (IfMatch: 412 once it is replaced)."""
    name = str(url)

    def get_range(first: int, last: int) -> Any:
        response = call(
            name,
            lambda: client.get_object(
                Bucket=url.bucket, Key=url.key, Range=f"bytes={first}-{last}", IfMatch=etag
            ),
            reading_source=True,
        )
        answered = str(response.get("ContentRange") or "")
        if not answered.startswith(f"bytes {first}-"):  # a server that ignored the Range
            response["Body"].close()
            raise SourceReadError(
                f"{name}: asked for bytes {first}-{last}, the answer held {answered or 'all'}; "
                "the endpoint must support ranged GETs"
            )
        return response["Body"]

    return get_range


class S3RangeReader(ReadOnlyStream):
    """A seekable view of an object through ranged GETs pinned to its ETag, each resumed
    where it broke (:class:`handler.locations.ranged.RangeFetcher`).

    A read that goes on from where the last one ended (a ZIP's members read in the
    central directory's order, as packaging does) is served by a window of ranges
    fetched ``plan.connections`` at once from that byte onward
    (:class:`handler.locations.ranged.ParallelRangeStream`, at most ``plan.read_ahead``
    bytes ahead); so is a read that goes on past the last random read's bytes (the
    window starts where they end). A read at most that far ahead of the window skips to
    it (the gap of a data descriptor, a member passed over). Any other read (the end
    records, the central directory, a local header read again) is one GET of at least
    :data:`RANDOM_READ` bytes, and the window stays for the reads that go back to it; a
    sequential read from elsewhere replaces it. ``close()`` ends the window's threads.
    """

    def __init__(
        self, client: S3Client, url: S3Url, size: int, etag: str, plan: ReadPlan | None = None
    ) -> None:
        self._name = str(url)
        self._fetcher = RangeFetcher(self._name, size, range_getter(client, url, etag))
        self._size = size
        self._plan = plan if plan is not None else ReadPlan.from_env()
        self._position = 0
        self._last_end = -1
        self._buffer = bytearray()  # the last random read
        self._buffer_start = 0
        self._window: ParallelRangeStream | None = None
        self._range = memoryview(b"")  # the window's range being read
        self._range_start = 0
        self.windows = 0
        """Windows opened so far (each a run of sequential reads)."""

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self._size}[whence]
        self._position = max(base + offset, 0)
        return self._position

    def read(self, size: int = -1) -> bytes:
        if self.closed:
            raise ValueError("read of a closed stream")
        if size < 0:
            size = self._size - self._position
        start, end = self._position, min(self._position + size, self._size)
        if end <= start:
            return b""
        offset = start - self._buffer_start
        buffered = self._buffer_start + len(self._buffer)
        if offset >= 0 and end <= buffered:
            data = bytes(memoryview(self._buffer)[offset : offset + end - start])
        elif 0 <= offset <= len(self._buffer) and not self._in_window(start):
            # on past the random read: the window starts where its bytes end
            data = bytes(memoryview(self._buffer)[offset:]) + self._read_window(buffered, end)
        elif start == self._last_end or self._in_window(start):
            data = self._read_window(start, end)
        else:
            self._buffer = bytearray()  # let go of the old range first
            self._buffer = self._fetcher.fetch(start, max(end - start, RANDOM_READ))
            self._buffer_start = start
            data = bytes(memoryview(self._buffer)[: end - start])
        self._position = self._last_end = start + len(data)
        return data

    def _in_window(self, start: int) -> bool:
        """Whether the window holds ``start`` or reaches it within its read-ahead."""
        reached = self._range_start + len(self._range)
        return self._window is not None and (
            self._range_start <= start < reached + self._plan.read_ahead
        )

    def _read_window(self, start: int, end: int) -> bytes:
        """Bytes ``[start, end)`` from the window (opened at ``start`` unless it reaches it)."""
        if not self._in_window(start):
            self._close_window()
            self._window = ParallelRangeStream(self._fetcher, self._size, self._plan, start)
            self._range_start = start
            self.windows += 1
        window = cast(ParallelRangeStream, self._window)
        pieces: list[bytes] = []
        position = start
        while position < end:
            reached = self._range_start + len(self._range)
            if position >= reached:
                self._range = memoryview(b"")  # let go of the range before the next one
                self._range = window.read_range()
                self._range_start = reached
                if not self._range:
                    raise EOFError(f"{self._name}: the window ended at byte {reached}")
                continue
            taken = self._range[position - self._range_start : end - self._range_start]
            pieces.append(bytes(taken))
            position += len(taken)
        return pieces[0] if len(pieces) == 1 else b"".join(pieces)

    def _close_window(self) -> None:
        self._range = memoryview(b"")
        self._range_start = 0
        if self._window is not None:
            self._window.close()
            self._window = None

    def close(self) -> None:
        if not self.closed:
            self._close_window()
            self._buffer = bytearray()
        super().close()

    @property
    def requests(self) -> int:
        """GetObject requests made so far (resumes included)."""
        return self._fetcher.requests


class S3Source:
    """An archive in S3, pinned to the ETag it had when first looked at."""

    def __init__(self, client: S3Client, location: str) -> None:
        self.client = client
        self.url = S3Url.parse(location)
        head = call(
            location,
            lambda: self.client.head_object(Bucket=self.url.bucket, Key=self.url.key),
            reading_source=True,
        )
        self._size = int(head["ContentLength"])
        self._etag = str(head["ETag"])
        self._plan = ReadPlan.from_env()

    @property
    def name(self) -> str:
        return str(self.url)

    def size(self) -> int:
        return self._size

    def open_stream(self) -> BinaryIO:
        """The object front to back, through ``TMPWARDEN_SOURCE_CONNECTIONS`` ranged GETs
        at once, each resumed where it broke (:mod:`handler.locations.ranged`)."""
        fetcher = RangeFetcher(
            self.name, self._size, range_getter(self.client, self.url, self._etag)
        )
        stream = ParallelRangeStream(fetcher, self._size, self._plan)
        return cast(BinaryIO, io.BufferedReader(stream, 1 * MiB))

    def open_random_access(self) -> BinaryIO:
        return cast(BinaryIO, S3RangeReader(self.client, self.url, self._size, self._etag))
