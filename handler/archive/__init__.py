"""Reading archives: an archive's bytes in, checked members out.

:class:`StreamingExtractor` is the door (``get_archive_info``, ``extract_streaming``,
``extract_selective``, ``open``); :class:`ArchiveReader` is one pass over one archive,
reading members with :mod:`~handler.archive.tar_members` or
:mod:`~handler.archive.zip_members`; :mod:`~handler.archive.to_disk` writes them out.
"""

from handler.archive.extractor import ArchiveLike, StreamingExtractor
from handler.archive.reader import ArchiveReader, matches
from handler.archive.safety import Limits, MemberGuard
from handler.archive.to_disk import CleanupCallback, ExtractionSummary
from handler.streams import CHUNK_SIZE

__all__ = [
    "CHUNK_SIZE",
    "ArchiveLike",
    "ArchiveReader",
    "CleanupCallback",
    "ExtractionSummary",
    "Limits",
    "MemberGuard",
    "StreamingExtractor",
    "matches",
]
