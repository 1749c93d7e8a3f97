"""Where archives come from and ZIPs go: local paths and ``s3://`` URLs.

A source is one archive, or a tree of members (a directory, or an
``s3://bucket/prefix/``: :mod:`handler.locations.listing`). A destination is complete and
verified, or absent. The S3 modules (boto3) load only when an ``s3://`` location is
opened.
"""

from handler.locations.directory import LocalDirectorySource
from handler.locations.listing import Listed, TreeSource
from handler.locations.local import (
    Destination,
    DestinationWriter,
    IfExists,
    LocalDestination,
    LocalSource,
    Source,
    check_location,
    is_s3,
    open_destination,
    open_source,
)

__all__ = [
    "Destination",
    "DestinationWriter",
    "IfExists",
    "Listed",
    "LocalDestination",
    "LocalDirectorySource",
    "LocalSource",
    "Source",
    "TreeSource",
    "check_location",
    "is_s3",
    "open_destination",
    "open_source",
]
