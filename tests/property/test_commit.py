"""The S3 commit point under every order of faults (issue 8, item 4): an in-memory S3
whose CompleteMultipartUpload, HEAD and abort fail in generated ways, and another writer
that may replace the object right after the commit.

Whatever happens: ``succeeded`` only when the key holds this attempt's object; ``failed``
only when it does not, and then no upload is left open (when the abort can run); nothing
is ever deleted (the fake S3 has no DeleteObject); with a working HEAD and abort the
answer is never ``unverified``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, cast

from botocore.exceptions import ClientError, EndpointConnectionError
from hypothesis import given, settings
from hypothesis import strategies as st

from handler.errors import CommitUnverifiedError, TmpwardenError
from handler.locations.commit import Upload, complete, multipart_etag
from handler.locations.s3 import S3Client, S3Url

PARTS = [b"a" * 10, b"b" * 7]
MD5S = [hashlib.md5(p, usedforsecurity=False).digest() for p in PARTS]
OURS = multipart_etag(MD5S)
SIZE = sum(map(len, PARTS))

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
    key: str | None = None  # the ETag at the key
    upload_open: bool = True
    calls: list[str] = field(default_factory=list)

    def _commit(self) -> None:
        self.upload_open = False
        self.key = OURS
        if self.replaced_after_commit:
            self.key = '"another-writer-1"'

    def complete_multipart_upload(self, **kwargs: Any) -> dict[str, Any]:
        self.calls.append("complete")
        does = self.complete_does
        if not self.upload_open:
            raise client_error(404, "NoSuchUpload", "CompleteMultipartUpload")
        if does in ("ok", "lost", "dropped", "gone-after-commit"):
            self._commit()
        if does == "ok":
            return {"ETag": OURS}
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
        return {"ETag": self.key, "ContentLength": SIZE if self.key == OURS else 3}

    def abort_multipart_upload(self, **kwargs: Any) -> dict[str, Any]:
        self.calls.append("abort")
        if not self.abort_works:
            raise client_error(500, "InternalError", "AbortMultipartUpload")
        if not self.upload_open:
            raise client_error(404, "NoSuchUpload", "AbortMultipartUpload")
        self.upload_open = False
        return {}


@settings(max_examples=300)
@given(
    complete_does=st.sampled_from(COMPLETES),
    replaced=st.booleans(),
    head_works=st.booleans(),
    abort_works=st.booleans(),
    existing=st.sampled_from([None, '"an-older-object"']),
)
def test_a_commit_is_never_ambiguous_and_never_deletes(
    complete_does: str, replaced: bool, head_works: bool, abort_works: bool, existing: str | None
) -> None:
    s3 = FakeS3(complete_does, replaced, head_works, abort_works, key=existing)
    upload = Upload(
        client=cast(S3Client, s3),
        url=S3Url("bucket", "out/m.zip"),
        upload_id="u-1",
        parts=[(1, "e1"), (2, "e2")],
        part_md5s=MD5S,
        size=SIZE,
    )
    try:
        etag = complete(upload)
    except CommitUnverifiedError:
        # said only when the look or the abort could not run
        assert not (head_works and abort_works)
        return
    except TmpwardenError:
        assert s3.key != OURS  # failed: nothing of this attempt is at the key
        if abort_works:
            assert not s3.upload_open  # and no upload is left open
        return
    assert etag.strip('"') == OURS.strip('"') == str(s3.key).strip('"')  # succeeded: ours
