"""tmpwarden's packaging engine: archives to ZIPs by streaming, with bounded disk and memory."""

from handler.archive import Limits, StreamingExtractor
from handler.errors import (
    CleanupFailedError,
    CommitUnverifiedError,
    CompressionError,
    DestinationExistsError,
    DestinationReplacedError,
    ExtractionError,
    InsufficientStorageError,
    TmpwardenError,
)
from handler.packaging import PackageOptions, PackageResult, package
from handler.storage import CleanupContext, StorageManager, Strategy
from handler.zipwriter import IncrementalZipper

__all__ = [
    "CleanupContext",
    "CleanupFailedError",
    "CommitUnverifiedError",
    "CompressionError",
    "DestinationExistsError",
    "DestinationReplacedError",
    "ExtractionError",
    "IncrementalZipper",
    "InsufficientStorageError",
    "Limits",
    "PackageOptions",
    "PackageResult",
    "StorageManager",
    "Strategy",
    "StreamingExtractor",
    "TmpwardenError",
    "package",
]
