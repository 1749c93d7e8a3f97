"""tmpwarden's packaging engine: archives to ZIPs by streaming, with bounded disk and memory."""

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
from handler.extract import StreamingExtractor
from handler.packaging import PackageOptions, PackageResult, package
from handler.safety import Limits
from handler.storage import CleanupContext, StorageManager, Strategy
from handler.zipper import IncrementalZipper

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
