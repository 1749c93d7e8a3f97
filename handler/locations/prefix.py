"""An S3 prefix as a source: ``s3://bucket/models/llama/`` (an ``s3://`` source whose key
ends in ``/``), listed with ListObjectsV2, then read object by object.

The rule: a source URL whose key ends in ``/`` is a prefix, every object whose key
starts with it is a member, named by the rest of its key (``models/llama/a/b.bin`` is
``a/b.bin``), in the listing's order (a general purpose bucket lists keys in UTF-8
binary order; a directory bucket's order is not defined, though the same between two
listings of an unchanged prefix). A URL without the ``/`` is one archive object, as
before; when no object has that key but objects have keys under it and a ``/``, the error
names the prefix form to use (:func:`missing_object_error`). It is not taken as the prefix
silently: the same URL would then mean one archive or a whole tree depending on what the
bucket holds, and a mistyped archive key would package a tree the user did not ask for.

A prefix with no object under it is an error that names it, because S3 has no folders:
an empty listing cannot tell an empty "folder" from a mistyped prefix, and a ZIP of
nothing would hide the typo. A prefix whose own folder marker exists (the S3 console's
"Create folder") is a folder the user made: with nothing else under it, it packages into
an empty ZIP, as an empty directory does (the directory exists, so the user named it on
purpose). The prefix is listed twice:
once for the plan (file count, bytes) and once as it is read; nothing of a listing is
kept but its plan, so the listing costs no memory per object (at 1,000 keys per page,
listing 200,000 keys is 200 requests each time); what packaging keeps per member (about
330 bytes) is in :mod:`handler.archive.tree_members`.

Each object is read as an archive source is (:mod:`handler.locations.ranged`: ranged
GETs, several at once for a large object, each resumed where it broke), every GET
pinned with ``IfMatch`` to the ETag the listing gave: an object replaced after the
listing answers 412 PreconditionFailed, reported as RemoteServiceError naming the
object, never a ZIP that mixes versions.

"Directory markers" (a zero-byte key ending in ``/``, as the S3 console's "Create
folder" writes) become directory entries, so empty folders survive; the prefix's own
marker is the root and is skipped. A marker that holds data is refused.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, BinaryIO, cast

from handler.errors import ExtractionError, SourceNotFoundError
from handler.locations.listing import Listed, TreeSource
from handler.locations.ranged import ParallelRangeStream, RangeFetcher, ReadPlan
from handler.locations.s3 import S3Url, range_getter, translate
from handler.members import MemberKind, TreeFormat

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

__all__ = ["LIST_PAGE_SIZE", "S3PrefixSource", "is_prefix", "missing_object_error"]

LIST_PAGE_SIZE = 1000
"""Keys per ListObjectsV2 page: S3's maximum (``MaxKeys``, Amazon S3 API Reference)."""
FILE_MODE = 0o644
DIRECTORY_MODE = 0o755


def is_prefix(location: str) -> bool:
    """Whether ``location`` is an ``s3://bucket/prefix/`` source (its key ends in ``/``)."""
    return location.startswith("s3://") and location.endswith("/")


def missing_object_error(
    client: S3Client, location: str, error: SourceNotFoundError
) -> SourceNotFoundError:
    """``error`` (``s3://bucket/key`` does not exist), or, when objects have keys under
    ``key/``, one error that names the prefix form ``s3://bucket/key/`` to package them
    (one ListObjectsV2 request of one key; if it fails, ``error`` as it was)."""
    url = S3Url.parse(location)
    try:
        page = client.list_objects_v2(Bucket=url.bucket, Prefix=url.key + "/", MaxKeys=1)
    except Exception:  # the hint is optional: the 404 stands
        return error
    if not page.get("Contents"):
        return error
    return SourceNotFoundError(
        f"{location}: no object has this key, but objects have keys under {location}/ "
        f"(a prefix); to package them, name the prefix with its trailing '/': {location}/"
    )


class S3PrefixSource(TreeSource):
    """The objects under one prefix of a bucket, listed page by page."""

    format = TreeFormat.S3_PREFIX

    def __init__(self, client: S3Client, location: str, *, page_size: int = LIST_PAGE_SIZE) -> None:
        self.client = client
        self.url = S3Url.parse(location)
        self.page_size = page_size
        self._plan = ReadPlan.from_env()

    @property
    def name(self) -> str:
        return str(self.url)

    def holds(self, location: str) -> bool:
        return location.startswith(self.name)

    def entries(self) -> Iterator[Listed]:
        listed = False
        for entry in self._list():
            listed = True
            if entry is not None:
                yield entry
        if not listed:
            raise SourceNotFoundError(
                f"{self.name}: no object has a key under this prefix; check the bucket "
                "and the prefix (a source ending in '/' packages every object whose key "
                "starts with it), or drop the trailing '/' to name one archive object"
            )

    def _pages(self) -> Iterator[dict[str, Any]]:
        paginator = self.client.get_paginator("list_objects_v2")
        pages = paginator.paginate(
            Bucket=self.url.bucket,
            Prefix=self.url.key,
            PaginationConfig={"PageSize": self.page_size},
        )
        try:
            for page in pages:
                yield cast(dict[str, Any], page)
        except Exception as exc:
            raise translate(exc, self.name, reading_source=True) from exc

    def _list(self) -> Iterator[Listed | None]:
        """The entries under the prefix; None for the prefix's own folder marker."""
        prefix = self.url.key
        for page in self._pages():
            for listed in page.get("Contents", []):
                key = str(listed["Key"])
                name = key[len(prefix) :]
                size = int(listed.get("Size", 0))
                mtime = listed["LastModified"].timestamp() if "LastModified" in listed else 0.0
                if key.endswith("/"):
                    if size:
                        raise ExtractionError(
                            self.name,
                            name,
                            f"its key ends in '/' (a folder marker) but it holds {size:,} bytes",
                            "rename the object without the trailing '/'",
                        )
                    # the prefix's own marker is the root: it exists, it is no member
                    yield (
                        Listed(name, MemberKind.DIRECTORY, 0, DIRECTORY_MODE, mtime)
                        if name
                        else None
                    )
                    continue
                etag = str(listed.get("ETag", ""))
                yield Listed(name, MemberKind.FILE, size, FILE_MODE, mtime, pin=etag)

    def open_member(self, entry: Listed) -> BinaryIO:
        """The object ``entry`` names, front to back through ranged GETs pinned to its
        listed ETag (see :class:`handler.locations.ranged.ParallelRangeStream`)."""
        url = S3Url(self.url.bucket, self.url.key + entry.name)
        fetcher = RangeFetcher(str(url), entry.size, range_getter(self.client, url, entry.pin))
        stream = ParallelRangeStream(fetcher, entry.size, self._plan)
        return cast(BinaryIO, stream)  # ranges are buffers already: no second buffer
