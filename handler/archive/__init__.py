"""Reading archives: an archive's bytes in, checked members out.

:class:`StreamingExtractor` is the door (``get_archive_info``, ``extract_streaming``,
``extract_selective``, ``open``); :class:`ArchiveReader` is one pass over one archive.
"""

from handler.archive.reader import (
    CHUNK_SIZE,
    ArchiveReader,
    ExtractionSummary,
    StreamingExtractor,
    matches,
)
from handler.archive.safety import Limits, MemberGuard

__all__ = [
    "CHUNK_SIZE",
    "ArchiveReader",
    "ExtractionSummary",
    "Limits",
    "MemberGuard",
    "StreamingExtractor",
    "matches",
]
