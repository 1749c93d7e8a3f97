"""How each member is compressed when the user does not fix it (``compression="auto"``).

Three choices, each from a measured figure:

* **The level follows the bottleneck.** To S3 the network is the limit (about 75 MB/s
  from one Lambda function, ISSUE 10): :data:`NETWORK_LEVEL` (our 1, ISA-L level 1,
  see :func:`handler.codec.isal_level_for`) compresses float32 weights at about
  1,000 MB/s of one core and still saves 7.3% of the bytes to send, so it costs
  almost nothing and shortens the upload. Locally the CPU and the disk are the limit:
  :data:`LOCAL_LEVEL` (our 6, ISA-L level 2) runs at the same ~1,000 MB/s on weights
  as ISA-L 1 and is 1.7% smaller on tokenizer JSON (ISA-L 3 is 2.4x slower, no smaller
  on weights and larger on JSON). Figures: ``python -m benchmarks.codec_levels --size
  64MiB`` (the sample artifact's weights and 8 copies of its tokenizer, best of 3
  interleaved rounds, CPU time of one thread, 2026-11-30; ``make bench`` writes the
  table to ``benchmarks/RESULTS.md``):

  ============  ========  ================  ===================  ================
  codec         MB/s CPU  weights out / in  weights / zlib 6     JSON / zlib 6
  ============  ========  ================  ===================  ================
  ISA-L 0       451       1.243             1.340 (Huffman only) 1.191
  ISA-L 1       1,067     0.927             0.999                1.007
  ISA-L 2       1,070     0.927             0.999                0.990
  ISA-L 3       437       0.927             0.999                1.020
  zlib 1        43        0.931             1.003                1.040
  zlib 6        37        0.928             1.000                1.000
  ============  ========  ================  ===================  ================

* **Members deflate cannot shrink are stored.** Before a large member's local header
  is written, the zipper holds its first :data:`~handler.zipwriter.zipper.BUFFER_LIMIT`
  bytes; :func:`incompressible` deflates the first :data:`SAMPLE_SIZE` of them at
  :data:`SAMPLE_LEVEL` and a ratio over :data:`STORE_RATIO` stores the member
  (already-compressed shards, quantized int4 weights, media). A member that fits in
  the buffer is deflated whole and stored when that is not smaller (as Info-ZIP does).
* **Deflated members of a ZIP source are copied raw** (:func:`copies_raw`): the
  output wants deflate, the source has it, so its bytes and CRC go through unchanged
  (the CRC still verified, see :mod:`handler.archive.zip_raw`).

An explicit compression or level is always honoured: ``deflate`` deflates every member
(no sampling) at the given level, else at :data:`~handler.codec.DEFAULT_LEVEL` as
before ``auto`` existed; a level given with ``auto`` is used for every member that is
deflated; and a given level re-deflates a ZIP source's members at that level.
"""

from __future__ import annotations

from collections.abc import Iterable

from handler.codec import DEFAULT_LEVEL, Compression, CompressorFactory
from handler.zipwriter.records import METHOD_DEFLATED
from monitor.units import KiB

NETWORK_LEVEL = 1
"""Our level when the destination is S3: ISA-L level 1, ~1,000 MB/s per core on weights,
over ten times the ~75 MB/s a function sends (figures in the module docstring)."""
LOCAL_LEVEL = DEFAULT_LEVEL
"""Our level when the destination is local: ISA-L level 2, as fast as level 1 on
weights and 1.7% smaller on JSON (figures in the module docstring)."""
SAMPLE_SIZE = 128 * KiB
"""Bytes of a large member's start that :func:`incompressible` deflates."""
SAMPLE_LEVEL = 1
STORE_RATIO = 0.97
"""A sample that deflates to more than this share of its size is stored: the 3% or less
deflate would save is not worth its CPU and every reader's inflate."""


def resolve_level(compression: Compression, level: int | None, *, network_bound: bool) -> int:
    """The level to deflate at: ``level`` when the user gave one; under ``auto``
    :data:`NETWORK_LEVEL` when the destination is across the network (S3), else
    :data:`LOCAL_LEVEL`; under an explicit ``deflate`` (or ``store``) the documented
    default, :data:`~handler.codec.DEFAULT_LEVEL`, wherever the output goes."""
    if level is not None:
        return level
    if compression != "auto":
        return DEFAULT_LEVEL
    return NETWORK_LEVEL if network_bound else LOCAL_LEVEL


def sample_of(blocks: Iterable[bytes], size: int = SAMPLE_SIZE) -> bytes:
    """The first ``size`` bytes of ``blocks`` (fewer when they hold fewer); reads only
    as many blocks as it needs."""
    taken: list[bytes] = []
    remaining = size
    for block in blocks:
        if remaining <= 0:
            break
        piece = block[:remaining]
        taken.append(piece)
        remaining -= len(piece)
    return b"".join(taken)


def incompressible(sample: bytes, factory: CompressorFactory) -> bool:
    """Whether ``sample`` deflated at :data:`SAMPLE_LEVEL` by ``factory`` keeps more than
    :data:`STORE_RATIO` of its size (an empty sample is not: nothing says so)."""
    if not sample:
        return False
    compressor = factory(SAMPLE_LEVEL)
    deflated = len(compressor.compress(sample)) + len(compressor.flush())
    return deflated > STORE_RATIO * len(sample)


def copies_raw(compression: Compression, level: int | None, source_method: int) -> bool:
    """Whether a ZIP source's member compressed by ``source_method`` is copied as it is:
    it is deflated, the output wants deflate (``auto`` or ``deflate``) and the user fixed
    no level to re-compress it at. (A stored source member goes the usual way: stored
    again, or deflated when it compresses, at no more cost than a copy.)"""
    return level is None and compression != "store" and source_method == METHOD_DEFLATED
