"""Raw deflate and gzip through the fastest standard implementation available.

ISA-L (the ``isal`` package) produces and reads the same standard deflate streams as
zlib, many times faster on weight-like data; zlib is the fallback where ``isal`` is
not installed. Everything here is injectable: the zipper takes a
:data:`CompressorFactory`, so tests and future worker threads can bring their own.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from typing import Literal, Protocol, cast

from handler.errors import CompressionError

try:  # pragma: no cover - which branch runs depends on the platform
    from isal import isal_zlib as _isal_zlib

    HAVE_ISAL = True
except ImportError:  # pragma: no cover
    HAVE_ISAL = False

RAW_DEFLATE_WBITS = -15
Compression = Literal["auto", "deflate", "store"]
"""``auto``: deflate at level 6 (ISA-L 3), incompressible members stored, well-deflated
ZIP members copied raw (:mod:`handler.zipwriter.method`); ``deflate``: every member
deflated; ``store``: none."""
COMPRESSIONS: tuple[Compression, ...] = ("auto", "deflate", "store")
DEFAULT_LEVEL = 6


class Compressor(Protocol):
    """A streaming compressor: ``compress`` chunks, then ``flush`` once at the end."""

    def compress(self, data: bytes, /) -> bytes: ...

    def flush(self) -> bytes: ...


class Decompressor(Protocol):
    """A streaming raw-inflate object (zlib's ``Decompress``): bounded output per call."""

    @property
    def unconsumed_tail(self) -> bytes: ...

    @property
    def unused_data(self) -> bytes: ...

    @property
    def eof(self) -> bool: ...

    def decompress(self, data: bytes, max_length: int = 0, /) -> bytes: ...

    def flush(self) -> bytes: ...


CompressorFactory = Callable[[int], Compressor]
"""Makes a fresh raw-deflate compressor for a zlib-style level 0-9."""


class StoreCompressor:
    """The identity 'compressor' for ZIP method 0 (stored)."""

    def compress(self, data: bytes, /) -> bytes:
        return data

    def flush(self) -> bytes:
        return b""


def isal_level_for(level: int) -> int:
    """Map a zlib level (1-9) to an ISA-L level: 1-2 (asked for speed) to ISA-L 2, 3-9 to
    ISA-L 3.

    Every zlib level finds a repeat anywhere in its 32 KiB window; ISA-L levels 1 and 2,
    whose window is 32 KiB too, hash too shallowly to find repeats a few hundred bytes
    back in varied data, ISA-L 3 finds them. Output / input on 4 MB of a random period
    repeated (review 2's inputs), with MB/s of one core on float32 weights, 2026-11-30
    (4 MB each, ``time.process_time``; the weights column is ``python -m
    benchmarks.codec_levels --size 32MiB --rounds 2``):

    ========  =========  =========  ==========  ==============
    codec     p=1,000 B  p=8,192 B  p=30,000 B  weights MB/s
    ========  =========  =========  ==========  ==============
    ISA-L 1   0.403      0.210      0.978       1,111
    ISA-L 2   0.388      0.182      0.986       1,064
    ISA-L 3   0.005      0.009      0.016       449
    zlib 1    0.007      0.013      0.018       44
    zlib 6    0.005      0.009      0.015       37
    ========  =========  =========  ==========  ==============

    On weights all three ISA-L levels give 0.927 of the input (0.999 of zlib 6's output);
    on tokenizer JSON ISA-L 2 is 1.0% smaller than zlib 6, ISA-L 3 2.0% larger. So 3-9
    (the default 6 included) go to ISA-L 3, still 12x zlib 6 on weights and never much
    larger than zlib; 1-2 keep the 2.4x faster ISA-L 2 for a user who asks for speed and
    accepts that. ISA-L's own level 0 grew the weights by 24% (1.243), which is why level 0
    never maps here (see :func:`fastest_deflate`).
    """
    if level <= 2:
        return 2
    return 3


def zlib_deflate(level: int) -> Compressor:
    """A raw-deflate compressor from the standard library's zlib."""
    return zlib.compressobj(level, zlib.DEFLATED, RAW_DEFLATE_WBITS)


def fastest_deflate(level: int) -> Compressor:
    """A raw-deflate compressor from ISA-L when available, else zlib.

    Level 0 (deflate's stored blocks) always goes to zlib: ISA-L's level 0 is a
    Huffman-only mode that can grow incompressible data.
    """
    check_level(level)
    if HAVE_ISAL and level > 0:
        return cast(
            Compressor,
            _isal_zlib.compressobj(isal_level_for(level), _isal_zlib.DEFLATED, RAW_DEFLATE_WBITS),
        )
    return zlib_deflate(level)


def raw_inflater() -> Decompressor:
    """A raw-inflate object from ISA-L when available (several times faster), else zlib."""
    if HAVE_ISAL:
        return cast(Decompressor, _isal_zlib.decompressobj(RAW_DEFLATE_WBITS))
    return cast(Decompressor, zlib.decompressobj(RAW_DEFLATE_WBITS))


def check_compression(compression: str) -> None:
    """Reject a compression other than deflate or store."""
    if compression not in COMPRESSIONS:
        raise CompressionError(
            f"compression {compression!r} is not supported; use 'auto', 'deflate' or 'store'"
        )


def check_level(level: int) -> None:
    """Reject a level outside deflate's 0-9."""
    if not 0 <= level <= 9:
        raise CompressionError(
            f"compression level {level} is out of range; use 0 (fastest) to 9 (smallest)"
        )


def crc32(data: bytes, value: int = 0) -> int:
    """CRC-32 as ZIP needs it, through ISA-L when available (several times faster)."""
    if HAVE_ISAL:
        return _isal_zlib.crc32(data, value)
    return zlib.crc32(data, value)
