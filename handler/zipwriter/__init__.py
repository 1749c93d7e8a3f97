"""Writing ZIPs: members in, ZIP bytes out (APPNOTE.TXT 6.3.10 records).

:class:`IncrementalZipper` is the door (``add_file_streaming``, ``add_stream``,
``finalize``); :func:`create_zip_streaming` walks a directory into one.
"""

from handler.zipwriter.records import ZipEntry
from handler.zipwriter.tree import add_tree, create_zip_streaming
from handler.zipwriter.zipper import IncrementalZipper, ZipCounts
from handler.zipwriter.zipsink import PatchableSink, Sink

__all__ = [
    "IncrementalZipper",
    "PatchableSink",
    "Sink",
    "ZipCounts",
    "ZipEntry",
    "add_tree",
    "create_zip_streaming",
]
