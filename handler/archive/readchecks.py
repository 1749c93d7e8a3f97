"""What the stream wrappers of an archive pass call: error translators and the ratio check.

Each is a small standalone object holding only what it needs (the source's name, the
pass's :class:`Position`, a byte counter), never the reader that owns the streams. A
wrapper that held its owner (a bound method, say) would close a reference cycle through
the decompressor; ISA-L's gzip reader is a C type the garbage collector cannot traverse,
so such a cycle is never collected and each warm call would keep its buffers (8 MiB per
tar.gz, issue 8 item 1).
"""

from __future__ import annotations

from dataclasses import dataclass

from handler.archive.safety import MemberGuard
from handler.errors import ExtractionError, SourceReadError, TmpwardenError
from handler.memory import explain
from handler.streams import CountingReader

CORRUPT_ADVICE = "the archive is truncated or corrupt; fetch or rebuild it and try again"


@dataclass(slots=True)
class Position:
    """Where one pass over an archive is: the name of the member being read (None before
    the first member), for error messages."""

    member: str | None = None


class SourceReadErrors:
    """Translates a failure to read the source's bytes into :class:`SourceReadError`."""

    __slots__ = ("_source",)

    def __init__(self, source: str) -> None:
        self._source = source

    def __call__(self, exc: Exception) -> Exception:
        if isinstance(exc, TmpwardenError):
            return exc
        exhausted = explain(exc)  # short of memory or threads, not a failed read
        if exhausted is not None:
            return exhausted
        return SourceReadError(f"{self._source}: reading the source failed ({exc}); try again")


class CorruptArchiveErrors:
    """Translates a failure to decode the archive into :class:`ExtractionError` naming the
    member being read."""

    __slots__ = ("_position", "_source")

    def __init__(self, source: str, position: Position) -> None:
        self._source = source
        self._position = position

    def __call__(self, exc: Exception) -> Exception:
        if isinstance(exc, TmpwardenError):
            return exc
        exhausted = explain(exc)  # short of memory or threads, not a corrupt archive
        if exhausted is not None:
            return exhausted
        detail = str(exc) or type(exc).__name__
        return ExtractionError(
            self._source, self._position.member, f"reading failed ({detail})", CORRUPT_ADVICE
        )


class RatioCheck:
    """Called with the uncompressed byte count after each read: refuses a compression
    ratio over the limit against the source bytes ``compressed`` has counted (a zip bomb)."""

    __slots__ = ("_compressed", "_guard", "_position")

    def __init__(self, guard: MemberGuard, compressed: CountingReader, position: Position) -> None:
        self._guard = guard
        self._compressed = compressed
        self._position = position

    def __call__(self, uncompressed: int) -> None:
        self._guard.check_ratio(uncompressed, self._compressed.count, self._position.member)
