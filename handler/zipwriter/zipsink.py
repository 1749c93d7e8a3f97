"""Where the zipper's bytes go, and how a local header written before its data gets its
CRC and sizes afterwards without a data descriptor.

Three kinds of sink:

* a :class:`PatchableSink` (an S3 multipart upload, see :mod:`handler.locations.parts`) keeps the
  bytes of a held range in memory until they are patched;
* a seekable file is patched in place by seeking back (:class:`SeekPatcher`);
* anything else (a pipe) cannot be patched: the values follow the data in a data
  descriptor (APPNOTE 6.3.10, 4.3.9), which some streaming readers refuse.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Protocol, runtime_checkable


class Sink(Protocol):
    """Where the ZIP's bytes go: a file, a pipe, an upload. Only ``write`` is required."""

    def write(self, data: bytes, /) -> object: ...


@runtime_checkable
class Patcher(Protocol):
    """Overwrites bytes already written, if told before they were written.

    ``hold(offset, length)`` comes before the range is written and ``patch(offset,
    data)`` (same offset, same length) after; offsets count bytes written to the sink.
    """

    def hold(self, offset: int, length: int, /) -> None: ...

    def patch(self, offset: int, data: bytes, /) -> None: ...


@runtime_checkable
class PatchableSink(Sink, Patcher, Protocol):
    """A sink that cannot seek but keeps a held range in memory until it is patched."""


class SeekPatcher:
    """Patches a seekable sink in place: seek back, write, seek to the end again."""

    def __init__(
        self, sink: Sink, seek: Callable[[int, int], object], tell: Callable[[], int]
    ) -> None:
        self._sink = sink
        self._seek = seek
        self._tell = tell

    def hold(self, offset: int, length: int, /) -> None:
        """Nothing to do: a file keeps every byte."""

    def patch(self, offset: int, data: bytes, /) -> None:
        end = self._tell()
        self._seek(offset, os.SEEK_SET)
        self._sink.write(data)
        self._seek(end, os.SEEK_SET)


def can_seek(sink: Sink) -> bool:
    """Whether the sink really seeks (files do; pipes and uploads do not)."""
    probe = getattr(sink, "seekable", None)
    try:
        able = bool(probe()) if callable(probe) else False
    except OSError:
        able = False
    return able and callable(getattr(sink, "seek", None)) and callable(getattr(sink, "tell", None))


def patcher_for(sink: Sink) -> Patcher | None:
    """How ``sink``'s local headers get patched: itself, by seeking, or not at all (None)."""
    if isinstance(sink, Patcher):
        return sink
    if can_seek(sink):
        return SeekPatcher(sink, sink.seek, sink.tell)  # type: ignore[attr-defined]
    return None
