"""The S3 commit point under every order of faults (issue 8, item 4): an in-memory S3
whose CompleteMultipartUpload, HEAD and abort fail in generated ways, and another writer
that may replace the object right after the commit.

Whatever happens: ``succeeded`` only when the key holds this attempt's object; ``failed``
only when it does not, and then no upload is left open (when the abort can run); nothing
is ever deleted (the fake S3 has no DeleteObject); with a working HEAD and abort the
answer is never ``unverified``, unless S3 shows nothing the attempt can recognise its
object by (SSE-KMS ETags and no ChecksumCRC32). The other writer's object may have the
same size as this attempt's, and the server may let an upload be aborted after it was
completed (SeaweedFS 4.x) or not (AWS).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, cast

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError
from hypothesis import given, settings
from hypothesis import strategies as st

from handler.errors import CommitUnverifiedError, DestinationExistsError, TmpwardenError
from handler.locations.commit import Upload, complete, composite_crc32, multipart_etag
from handler.locations.multipart import crc32_checksum
from handler.locations.s3 import S3Client, S3Url

PARTS = [b"a" * 10, b"b" * 7]
MD5S = [hashlib.md5(p, usedforsecurity=False).digest() for p in PARTS]
PART_ETAGS = [f'"{m.hex()}"' for m in MD5S]
CRC32S = [crc32_checksum(p) for p in PARTS]
SIZE = sum(map(len, PARTS))
OURS = multipart_etag(MD5S)
KMS_PART_ETAGS = ['"' + "e1" * 16 + '"', '"' + "e2" * 16 + '"']  # not the parts' MD5s
KMS_OURS = '"' + "0f" * 16 + '-2"'  # S3's ETag of the object under SSE-KMS: not computable


@dataclass(frozen=True)
class Stored:
    """An object at the key: what HEAD shows of it."""

    etag: str
    checksum: str
    size: int


COMPLETES = (
    "ok",  # committed, answered 200 with the ETag
    "lost",  # committed, the answer lost (a 500 after the work, or a dropped connection)
    "dropped",  # committed, the connection dropped before the answer
    "unavailable",  # not committed, 503 after botocore's retries
    "rejected",  # not committed, 400 InvalidPart
    "gone-after-commit",  # committed by an earlier try; the retry answered NoSuchUpload
    "gone-while-open",  # not committed, yet answered NoSuchUpload
    "error-in-200",  # not committed, a 200 with an InternalError body (botocore raises)
)


def client_error(status: int, code: str, operation: str) -> ClientError:
    response: Any = {
        "Error": {"Code": code, "Message": "x"},
        "ResponseMetadata": {"HTTPStatusCode": status},
    }
    return ClientError(response, operation)


@dataclass
class FakeS3:
    complete_does: str
    replaced_after_commit: bool
    head_works: bool
    abort_works: bool
    ours: Stored
    other: Stored
    shows_checksums: bool
    lenient_abort: bool = False  # SeaweedFS 4.x: an abort after the Complete succeeds
    key: Stored | None = None
    upload_open: bool = True
    calls: list[str] = field(default_factory=list)

    def _commit(self) -> None:
        self.upload_open = False
        self.key = self.other if self.replaced_after_commit else self.ours

    def complete_multipart_upload(self, **kwargs: Any) -> dict[str, Any]:
        self.calls.append("complete")
        does = self.complete_does
        if not self.upload_open:
            raise client_error(404, "NoSuchUpload", "CompleteMultipartUpload")
        if does in ("ok", "lost", "dropped", "gone-after-commit"):
            self._commit()
        if does == "ok":
            return {"ETag": self.ours.etag}
        if does == "lost":
            raise client_error(500, "InternalError", "CompleteMultipartUpload")
        if does == "dropped":
            raise EndpointConnectionError(endpoint_url="http://127.0.0.1")
        if does == "unavailable":
            raise client_error(503, "ServiceUnavailable", "CompleteMultipartUpload")
        if does == "rejected":
            raise client_error(400, "InvalidPart", "CompleteMultipartUpload")
        if does in ("gone-after-commit", "gone-while-open"):
            raise client_error(404, "NoSuchUpload", "CompleteMultipartUpload")
        raise client_error(200, "InternalError", "CompleteMultipartUpload")

    def head_object(self, **kwargs: Any) -> dict[str, Any]:
        self.calls.append("head")
        if not self.head_works:
            raise client_error(503, "ServiceUnavailable", "HeadObject")
        if self.key is None:
            raise client_error(404, "404", "HeadObject")
        shown = {"ETag": self.key.etag, "ContentLength": self.key.size}
        if self.shows_checksums and kwargs.get("ChecksumMode") == "ENABLED":
            shown |= {"ChecksumCRC32": self.key.checksum, "ChecksumType": "COMPOSITE"}
        return shown

    def abort_multipart_upload(self, **kwargs: Any) -> dict[str, Any]:
        self.calls.append("abort")
        if not self.abort_works:
            raise client_error(500, "InternalError", "AbortMultipartUpload")
        if not self.upload_open and not (self.lenient_abort and self.key is not None):
            raise client_error(404, "NoSuchUpload", "AbortMultipartUpload")
        self.upload_open = False  # the object at the key stays
        return {}


@settings(max_examples=500)
@given(
    complete_does=st.sampled_from(COMPLETES),
    replaced=st.booleans(),
    head_works=st.booleans(),
    abort_works=st.booleans(),
    existing=st.booleans(),
    encrypted=st.booleans(),
    shows_checksums=st.booleans(),
    other_size=st.sampled_from([3, SIZE]),
    lenient_abort=st.booleans(),
)
def test_a_commit_is_never_ambiguous_and_never_deletes(
    complete_does: str,
    replaced: bool,
    head_works: bool,
    abort_works: bool,
    existing: bool,
    encrypted: bool,
    shows_checksums: bool,
    other_size: int,
    lenient_abort: bool,
) -> None:
    # encrypted: SSE-KMS, where neither the parts' nor the object's ETags are MD5s; the
    # composite CRC-32 then tells this attempt's object from another of the same size
    ours = Stored(KMS_OURS if encrypted else OURS, composite_crc32(CRC32S), SIZE)
    other = Stored('"another-writer-1"', "AAAAAA==-1", other_size)
    older = Stored('"an-older-object"', "BBBBBB==", other_size)
    s3 = FakeS3(
        complete_does,
        replaced,
        head_works,
        abort_works,
        ours=ours,
        other=other,
        shows_checksums=shows_checksums,
        lenient_abort=lenient_abort,
        key=older if existing else None,
    )
    upload = _attempts_upload(s3, encrypted=encrypted)
    try:
        etag = complete(upload)
    except CommitUnverifiedError:
        # said only when the look or the abort could not run, or when nothing the
        # attempt knows can recognise its object (SSE-KMS without checksums)
        assert not (head_works and abort_works) or (encrypted and not shows_checksums)
        return
    except TmpwardenError:
        assert s3.key is not ours  # failed: nothing of this attempt is at the key
        if abort_works:
            assert not s3.upload_open  # and no upload is left open
        return
    assert s3.key is ours  # succeeded: the key holds this attempt's object
    assert etag.strip('"') == ours.etag.strip('"')


def _attempts_upload(s3: FakeS3, *, encrypted: bool, if_exists: str = "overwrite") -> Upload:
    etags = KMS_PART_ETAGS if encrypted else PART_ETAGS
    return Upload(
        client=cast(S3Client, s3),
        url=S3Url("bucket", "out/m.zip"),
        upload_id="u-1",
        parts=[(1, etags[0]), (2, etags[1])],
        size=SIZE,
        part_crc32s=CRC32S,
        md5_etags=not encrypted,
        if_exists=if_exists,  # type: ignore[arg-type]
    )


@pytest.mark.parametrize("suffix", ["-2", ""], ids=["composite", "no-suffix-as-moto"])
def test_another_writers_object_with_our_crc32_but_not_our_etag_is_not_taken_for_ours(
    suffix: str,
) -> None:
    # A CRC-32 is 32 bits, not a digest: another writer's object of the same size may
    # show this attempt's composite CRC-32 (1 in 2**32 by chance, at will on purpose).
    # When the ETag is computable too (no SSE-KMS/SSE-C), it must match as well.
    crc = composite_crc32(CRC32S).partition("-")[0] + suffix
    other = Stored('"' + "ab" * 16 + '-2"', crc, SIZE)
    ours = Stored(OURS, composite_crc32(CRC32S), SIZE)
    s3 = FakeS3(
        "unavailable",  # not committed: the abort succeeds, the look decides
        replaced_after_commit=False,
        head_works=True,
        abort_works=True,
        ours=ours,
        other=other,
        shows_checksums=True,
        lenient_abort=True,
        key=other,
    )
    with pytest.raises(TmpwardenError) as failed:
        complete(_attempts_upload(s3, encrypted=False))
    print(f"{type(failed.value).__name__}: {failed.value}")
    assert s3.key is other and not s3.upload_open


class _RefusedIfNoneMatch(FakeS3):
    """CompleteMultipartUpload with ``If-None-Match: *`` refused: the key holds an object."""

    def complete_multipart_upload(self, **kwargs: Any) -> dict[str, Any]:
        self.calls.append("complete")
        raise client_error(412, "PreconditionFailed", "CompleteMultipartUpload")


@pytest.mark.parametrize("complete_does", ["precondition-failed", "unavailable"])
def test_an_object_of_another_size_is_not_ours_even_when_nothing_else_can_be_compared(
    complete_does: str,
) -> None:
    # SSE-KMS ETags and no ChecksumCRC32 shown: the hashes cannot tell, but an object of
    # another size is certainly not this attempt's: if_exists 'fail' says it exists (not
    # "unverified"), and a Complete that failed while its upload was open has failed
    older = Stored('"an-older-object"', "", 3)
    fake = _RefusedIfNoneMatch if complete_does == "precondition-failed" else FakeS3
    s3 = fake(
        complete_does,
        replaced_after_commit=False,
        head_works=True,
        abort_works=True,
        ours=Stored(KMS_OURS, composite_crc32(CRC32S), SIZE),
        other=older,
        shows_checksums=False,
        key=older,
    )
    if_exists = "fail" if complete_does == "precondition-failed" else "overwrite"
    with pytest.raises(TmpwardenError) as failed:
        complete(_attempts_upload(s3, encrypted=True, if_exists=if_exists))
    print(f"{type(failed.value).__name__}: {failed.value}")
    assert not isinstance(failed.value, CommitUnverifiedError)
    if complete_does == "precondition-failed":
        assert isinstance(failed.value, DestinationExistsError)
    assert s3.key is older and not s3.upload_open
