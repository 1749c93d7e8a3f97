"""Where archives come from and ZIPs go: local paths and ``s3://`` URLs.

A destination is complete and verified, or absent. The S3 modules (boto3) load only when
an ``s3://`` location is opened.
"""

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
    "LocalDestination",
    "LocalSource",
    "Source",
    "check_location",
    "is_s3",
    "open_destination",
    "open_source",
]
