"""The S3 commit point: CompleteMultipartUpload and what it proves, with three outcomes.

* succeeded: the object at the key is the one this attempt completed. The ETag that
  CompleteMultipartUpload returned is the ETag HEAD shows, and the size is the size
  written. When the Complete's answer was lost, the object is recognised by what this
  attempt can compute from its parts without hashing them again: the composite CRC-32
  (the CRC-32 of the parts' CRC-32s, then ``-`` and the part count, as S3 makes it for
  an upload created with ChecksumAlgorithm CRC32; HEAD with ``ChecksumMode=ENABLED``
  shows it) and the ETag (the MD5 of the parts' ETags, then ``-`` and the part count;
  each part's ETag is the MD5 of its bytes unless SSE-KMS or SSE-C encrypts it), each
  that is known (a CRC-32 alone is 32 bits), with the size.
* failed: nothing of this attempt is at the key (the upload was aborted before it took
  effect, or another writer replaced the object it had completed).
* :class:`CommitUnverifiedError`: the upload may have taken effect (and replaced an
  older object) but this attempt could not prove what is at the key.

Nothing is ever deleted: an object this attempt cannot prove is its own may be another
writer's. A CompleteMultipartUpload that fails is never taken at its word: a repeated
Complete answers 200 on AWS and ``NoSuchUpload`` on some S3-compatible servers, and a
200 may carry an error body (botocore raises for it), so the writer aborts the upload and
looks (HEAD: the size, the checksum and the ETag, each that is known). On AWS an abort
that succeeds proves the Complete never took effect, but SeaweedFS 4.x also aborts a
completed upload and keeps its object, so the look decides.

``if_exists="fail"`` sends ``If-None-Match: *`` on the Complete (S3's conditional
writes, 2024), so a publish-once caller never replaces an object.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from handler.deadline import after_deadline
from handler.errors import (
    CommitUnverifiedError,
    DestinationExistsError,
    DestinationReplacedError,
    RemoteServiceError,
    TmpwardenError,
)
from handler.locations.s3 import NOT_FOUND_CODES, S3Client, S3Url, error_code, translate

if TYPE_CHECKING:
    from mypy_boto3_s3.type_defs import CompletedPartTypeDef

    from handler.locations.local import IfExists

log = logging.getLogger("tmpwarden.handler")

UNDECIDED_CODES = frozenset(
    {"NoSuchUpload", "PreconditionFailed", "RequestTimeout", "ConditionalRequestConflict"}
)
"""4xx answers to a Complete that do not prove it had no effect."""


ENCRYPTED_ETAGS = frozenset({"aws:kms", "aws:kms:dsse"})
"""UploadPart's ``ServerSideEncryption`` values under which a part's ETag is not the MD5
of its bytes (as under SSE-C, ``SSECustomerAlgorithm``): "Objects encrypted by SSE-C or
SSE-KMS have ETags that are not an MD5 digest of their object data" (S3 API reference,
Object). SSE-S3 (``AES256``, S3's default) keeps MD5 ETags."""


def multipart_etag(part_md5s: Sequence[bytes]) -> str:
    """S3's ETag of a multipart object: ``"<md5 of the parts' binary MD5s>-<parts>"``."""
    digest = hashlib.md5(b"".join(part_md5s), usedforsecurity=False).hexdigest()
    return f'"{digest}-{len(part_md5s)}"'


def etag_md5(etag: str) -> bytes | None:
    """The 16 bytes of an ETag that is an MD5 (32 hex digits, quoted or not), else None."""
    text = etag.strip('"')
    if len(text) != 32:
        return None
    try:
        return bytes.fromhex(text)
    except ValueError:
        return None


def composite_crc32(part_crc32s: Sequence[str]) -> str:
    """S3's ``ChecksumCRC32`` of a multipart object whose parts carry these base64
    CRC-32s: the base64 of the CRC-32 of their 4 bytes each, then ``-`` and the count
    ("Checking object integrity", S3 User Guide: composite checksums)."""
    joined = b"".join(base64.b64decode(c) for c in part_crc32s)
    value = base64.b64encode(zlib.crc32(joined).to_bytes(4, "big")).decode("ascii")
    return f"{value}-{len(part_crc32s)}"


def same_checksum(found: str, expected: str) -> bool:
    """Whether a HEAD's ``ChecksumCRC32`` is the composite ``expected``; a server that
    leaves out the ``-<parts>`` suffix (moto) is compared on the value alone."""
    if "-" in found:
        return found == expected
    return found == expected.partition("-")[0]


def same_etag(a: str | None, b: str | None) -> bool:
    return a is not None and b is not None and a.strip('"') == b.strip('"')


def exists_message(name: str) -> str:
    return (
        f"{name}: an object already exists there and if_exists is 'fail' (--if-exists fail); "
        "it was left as it is; write to another key, or use if_exists 'overwrite' to replace it"
    )


@dataclass(frozen=True, slots=True)
class Upload:
    """One multipart upload, ready to complete: what this attempt sent."""

    client: S3Client
    url: S3Url
    upload_id: str
    parts: Sequence[tuple[int, str]]
    """(part number, ETag UploadPart returned), in order."""
    size: int
    if_exists: IfExists = "overwrite"
    part_crc32s: Sequence[str] | None = None
    """Each part's ``ChecksumCRC32`` (base64), in the order of ``parts``, when the upload was
    created with ChecksumAlgorithm CRC32; S3 then wants them on the Complete."""
    md5_etags: bool = True
    """Whether each part's ETag is the MD5 of its bytes (False when UploadPart said SSE-KMS
    or SSE-C: :data:`ENCRYPTED_ETAGS`), so that the object's ETag can be computed."""

    def completed_parts(self) -> list[CompletedPartTypeDef]:
        """The Complete's ``Parts``: number, ETag and (with checksums) ``ChecksumCRC32``."""
        if self.part_crc32s is None:
            return [{"PartNumber": n, "ETag": e} for n, e in self.parts]
        return [
            {"PartNumber": n, "ETag": e, "ChecksumCRC32": c}
            for (n, e), c in zip(self.parts, self.part_crc32s, strict=True)
        ]

    @property
    def name(self) -> str:
        return str(self.url)

    @property
    def expected_etag(self) -> str | None:
        """The object's ETag computed from the parts' (None when it cannot be)."""
        digests = [etag_md5(etag) for _, etag in self.parts] if self.md5_etags else [None]
        known = [d for d in digests if d is not None]
        return multipart_etag(known) if len(known) == len(digests) else None

    @property
    def expected_checksum(self) -> str | None:
        """The object's composite ``ChecksumCRC32`` (None without part checksums)."""
        return None if self.part_crc32s is None else composite_crc32(self.part_crc32s)


def complete(upload: Upload) -> str:
    """Commit ``upload``; returns the ETag of the verified object (succeeded).

    Raises CommitUnverifiedError (written, unverified), DestinationExistsError,
    DestinationReplacedError or the translated error of a Complete that never took
    effect (failed; its upload aborted)."""
    conditions: dict[str, Any] = {"IfNoneMatch": "*"} if upload.if_exists == "fail" else {}
    try:
        response = upload.client.complete_multipart_upload(
            Bucket=upload.url.bucket,
            Key=upload.url.key,
            UploadId=upload.upload_id,
            MultipartUpload={"Parts": upload.completed_parts()},
            **conditions,
        )
    except Exception as exc:
        return _after_failed_complete(upload, exc)
    etag = str(response.get("ETag") or "") or upload.expected_etag
    if etag is None:
        raise CommitUnverifiedError(
            f"{upload.name}: the upload was completed but S3 returned no ETag, so the "
            "object cannot be matched to this attempt; check it before writing it again"
        )
    if upload.expected_etag is not None and not same_etag(etag, upload.expected_etag):
        log.warning(
            "complete returned an unexpected ETag",
            extra={"event": "etag_unexpected", "etag": etag, "expected": upload.expected_etag},
        )
    checksum = str(response.get("ChecksumCRC32") or "")
    expected = upload.expected_checksum
    if checksum and expected is not None and not same_checksum(checksum, expected):
        log.warning(
            "complete returned an unexpected checksum",
            extra={"event": "checksum_unexpected", "checksum": checksum, "expected": expected},
        )
    return verify(upload, etag)


def verify(upload: Upload, etag: str) -> str:
    """HEAD the key: the object must be this attempt's (``etag``), of the size written."""
    with after_deadline():
        try:
            head = upload.client.head_object(Bucket=upload.url.bucket, Key=upload.url.key)
        except Exception as exc:
            if isinstance(exc, ClientError) and error_code(exc) in NOT_FOUND_CODES:
                raise DestinationReplacedError(
                    f"{upload.name}: the object this attempt completed (ETag {etag}) was "
                    "removed right after; another writer or a rule deleted it; nothing of "
                    "this attempt is left at the key"
                ) from exc
            raise CommitUnverifiedError(
                f"{upload.name}: the upload was completed (ETag {etag}) but the check "
                f"after it failed ({_reason(exc)}); the object is probably in place; "
                f"check that the key has ETag {etag} before writing it again",
                etag=etag,
            ) from exc
    found = str(head.get("ETag"))
    if not same_etag(found, etag):
        raise DestinationReplacedError(
            f"{upload.name}: another writer replaced the object right after this attempt "
            f"completed it (the key holds ETag {found}, this attempt wrote {etag}); nothing "
            "was deleted; give each job its own key, or use if_exists 'fail'"
        )
    size = int(head.get("ContentLength", -1))
    if size != upload.size:
        raise CommitUnverifiedError(
            f"{upload.name}: the object this attempt completed (ETag {etag}) has {size} "
            f"bytes, {upload.size} were written; it was not deleted; delete it and run "
            "again",
            etag=etag,
        )
    return etag


def _after_failed_complete(upload: Upload, exc: Exception) -> str:
    """The Complete failed or its answer was lost: find out whether it took effect."""
    code = error_code(exc) if isinstance(exc, ClientError) else None
    status = _status(exc)
    if code == "PreconditionFailed" and upload.if_exists == "fail":
        found = _holds_ours(upload, exc)
        if found is not None:  # this attempt's own earlier Complete
            return found
        _try_abort(upload)
        raise DestinationExistsError(exists_message(upload.name)) from exc
    if code == "NoSuchUpload":
        return _look_after_gone(upload, exc)
    if 400 <= status < 500 and code not in UNDECIDED_CODES:
        # rejected as asked (InvalidPart, EntityTooSmall, AccessDenied...): no effect
        _try_abort(upload)
        raise translate(exc, upload.name, reading_source=False) from exc
    # 5xx, an error in a 200 body, a dropped connection, a timeout, out of time: the
    # abort decides; it succeeds only while the upload was never completed
    try:
        aborted = abort_upload(upload.client, upload.url, upload.upload_id)
    except Exception as abort_exc:
        raise CommitUnverifiedError(
            f"{upload.name}: completing the upload failed ({_reason(exc)}) and aborting it "
            f"failed too ({_reason(abort_exc)}); the object may or may not be in place "
            f"(this attempt's ETag: {upload.expected_etag or 'unknown'}); the bucket's "
            "lifecycle rule removes the upload if it is still open",
            etag=upload.expected_etag,
        ) from exc
    if aborted:
        # AWS refuses to abort a completed upload (NoSuchUpload), so there this proves the
        # Complete never took effect; SeaweedFS 4.x aborts it and keeps the object: look
        found = _confirmed(upload, exc, "its object after the abort")
        if found is not None:
            return found
        raise translate(exc, upload.name, reading_source=False) from exc
    return _look_after_gone(upload, exc)


def _confirmed(upload: Upload, exc: Exception, by: str) -> str | None:
    """The ETag of this attempt's object at the key (:func:`_holds_ours`), logged as the
    Complete confirmed ``by`` what was seen; None when it is not there."""
    found = _holds_ours(upload, exc)
    if found is not None:
        log.info(
            f"complete confirmed by {by}",
            extra={"event": "commit_confirmed", "etag": found, "error_message": _reason(exc)},
        )
    return found


def _look_after_gone(upload: Upload, exc: Exception) -> str:
    """The upload no longer exists: completed by this attempt's Complete, or aborted."""
    found = _confirmed(upload, exc, "its ETag")
    if found is not None:
        return found
    if _try_abort(upload):  # it was not gone after all
        raise RemoteServiceError(
            f"{upload.name}: completing the upload failed ({_reason(exc)}) while the upload "
            "was still open; it was aborted, nothing of this attempt is at the key",
            transient=True,
        ) from exc
    raise DestinationReplacedError(
        f"{upload.name}: the upload is gone ({_reason(exc)}) and the key does not hold this "
        f"attempt's object (ETag {upload.expected_etag}); it was aborted, or another writer "
        "replaced the object; nothing was deleted"
    ) from exc


def _holds_ours(upload: Upload, cause: Exception) -> str | None:
    """The key's ETag when it is this attempt's object: its size, and its composite CRC-32
    when HEAD shows one and its ETag when computable (both when both: a CRC-32 is 32 bits,
    another writer's object can show it); None when it is absent or another's (another
    size is enough). CommitUnverifiedError when that cannot be told."""
    with after_deadline():
        try:
            head = upload.client.head_object(
                Bucket=upload.url.bucket, Key=upload.url.key, ChecksumMode="ENABLED"
            )
        except ClientError as exc:
            if error_code(exc) in NOT_FOUND_CODES:
                return None
            raise _unverified(upload, cause, exc) from exc
        except Exception as exc:
            raise _unverified(upload, cause, exc) from exc
    found = str(head.get("ETag"))
    checksum = str(head.get("ChecksumCRC32") or "")
    composite = head.get("ChecksumType", "COMPOSITE") == "COMPOSITE"
    if int(head.get("ContentLength", -1)) != upload.size:
        return None  # another size: not this attempt's object, whatever else is shown
    same: list[bool] = []
    if checksum and composite and upload.expected_checksum is not None:
        same.append(same_checksum(checksum, upload.expected_checksum))
    if upload.expected_etag is not None:
        same.append(same_etag(found, upload.expected_etag))
    if not same:
        raise _unverified(upload, cause, None)
    return found if all(same) else None


def _unverified(upload: Upload, cause: Exception, look: Exception | None) -> CommitUnverifiedError:
    why = (
        f"looking at the key failed ({_reason(look)})"
        if look is not None
        else "S3 shows neither a checksum nor an ETag computable from the parts (SSE-KMS "
        "or SSE-C, and no ChecksumCRC32)"
    )
    return CommitUnverifiedError(
        f"{upload.name}: completing the upload gave no clear answer ({_reason(cause)}) and "
        f"{why}; the object may be in place; check it before writing it again",
        etag=upload.expected_etag,
    )


def abort_upload(client: S3Client, url: S3Url, upload_id: str) -> bool:
    """Abort the upload: True when S3 dropped it, False when it no longer existed
    (completed or aborted before). Runs past the deadline (see handler.deadline)."""
    with after_deadline():
        try:
            client.abort_multipart_upload(Bucket=url.bucket, Key=url.key, UploadId=upload_id)
        except ClientError as exc:
            if error_code(exc) == "NoSuchUpload":
                return False
            raise
    return True


def _try_abort(upload: Upload) -> bool | None:
    """:func:`abort_upload`, logging a failure (None) for the bucket's lifecycle rule."""
    try:
        return abort_upload(upload.client, upload.url, upload.upload_id)
    except Exception as exc:
        log.error(
            "could not abort multipart upload %s of %s: %s", upload.upload_id, upload.name, exc
        )
        return None


def _status(exc: Exception) -> int:
    if isinstance(exc, ClientError):
        return int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
    return 0


def _reason(exc: BaseException | None) -> str:
    if isinstance(exc, ClientError):
        return f"S3 error {error_code(exc)}"
    if isinstance(exc, TmpwardenError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"
