"""How each member is compressed when the user does not fix it (``compression="auto"``).

Three choices, each from a measured figure:

* **The level from the bottleneck** (:func:`auto_level`, ISSUE 10: "deflate at the
  level that keeps up with it"): the strongest level whose one-core speed is at least
  :data:`KEEP_UP` times the rate the bottleneck lets bytes through, so compression never
  becomes the limit. To S3 the bottleneck is the network, at the target throughput
  (``TMPWARDEN_TARGET_MB_S``, 75 MB/s by default): ISA-L level 3 (our level 6, ~450 MB/s
  of one core on weights) keeps up six times over, and it finds what ``zip -6`` finds.
  At 3 Gbps (375 MB/s) it would not, so ISA-L 2 (our level 1, ~1,060 MB/s). Locally the
  bottleneck is the input's own inflate (one core, ~400 MB/s of output on this VM): only
  ISA-L 2 keeps up, and the local goal of ``make bench`` (at most 1.15x the inflate) needs
  it. What ISA-L 2 gives up: repeats a few hundred bytes back in varied data, which every
  zlib level finds (0.39 of the input against zlib 6's 0.005 at a period of 1,000 B, 0.99
  against 0.015 at 30,000 B, review 2); on weights and tokenizer JSON it is as good as
  zlib 6 (below). ``--level 6`` (or any level from 3) gets ISA-L 3 anywhere. Figures:
  ``python -m benchmarks.codec_levels --size 32MiB --rounds 2`` (the sample artifact's
  weights and 8 copies of its tokenizer, best of 2 interleaved rounds, CPU time of one
  thread) and, for the periodic inputs of review 2 (4 MB of a random period repeated),
  ``handler/codec.py``'s :func:`~handler.codec.isal_level_for` docstring; 2026-11-30:

  ============  ========  ================  ============  =========  =========
  codec         MB/s CPU  weights / zlib 6  JSON / zlib 6  p=1,000 B  p=30,000 B
  ============  ========  ================  ============  =========  =========
  ISA-L 1       1,111     0.999             1.007         0.403      0.978
  ISA-L 2       1,064     0.999             0.990         0.388      0.986
  ISA-L 3       449       0.999             1.020         0.005      0.016
  zlib 1        44        1.003             1.040         0.007      0.018
  zlib 6        37        1.000             1.000         0.005      0.015
  ============  ========  ================  ============  =========  =========

  (the p= columns are output / input.) On the sample artifact, dominated by its weights,
  ISA-L 2's and 3's output are within 0.1% of zlib 6's, inside the bench's 1% goal.

* **Members deflate cannot shrink are stored.** Before a large member's local header
  is written, the zipper holds its first :data:`~handler.zipwriter.zipper.BUFFER_LIMIT`
  bytes; :func:`incompressible` deflates all of them (:data:`SAMPLE_SIZE`, 1 MiB, not
  only the first 128 KiB: a member that starts with noise and goes on with text is
  judged by more than its noise) at :data:`SAMPLE_LEVEL`, the strongest compressor we
  deflate with, so the judge never misses what the compressor would find, and a ratio
  over :data:`STORE_RATIO` stores the member (already-compressed shards, quantized int4
  weights, media). A member that fits in the buffer is deflated whole and stored when
  that is not smaller (as Info-ZIP does). What remains: a member whose first MiB does
  not deflate is stored whole even when later bytes would (the bytes are already
  written by then); its output is never larger than its data.
* **Deflated members of a ZIP source are copied raw, when that is not much worse**
  (:func:`copies_raw`): under ``auto`` with no level, the member's bytes and CRC go
  through unchanged (the CRC still verified, see :mod:`handler.archive.zip_raw`) unless
  its first :data:`SAMPLE_SIZE` inflated bytes took more than :data:`RAW_COPY_SLACK`
  times what :data:`SAMPLE_LEVEL` makes of them (plus :data:`RAW_COPY_MARGIN` bytes):
  a member written with deflate's stored blocks (``zip -0``-like level 0: 6,800,525 B
  for 6.8 MB of JSON that level 6 makes 49,658 B, review 2), Huffman-only, or by a
  compressor that missed repeats is deflated again instead.

An explicit compression or level is always honoured: ``deflate`` deflates every member
(no sampling, no raw copy) at the given level, else at :data:`~handler.codec.DEFAULT_LEVEL`;
a level given with ``auto`` is used for every member that is deflated; and a given level
re-deflates a ZIP source's members at that level.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from handler.codec import DEFAULT_LEVEL, Compression, CompressorFactory, fastest_deflate
from handler.zipwriter.records import METHOD_DEFLATED
from monitor.units import MiB

THOROUGH_LEVEL = DEFAULT_LEVEL
"""Our level 6: ISA-L level 3, ~449 MB/s of one core on weights (the module docstring)."""
THOROUGH_MB_S = 449.0
"""MB/s of one core :data:`THOROUGH_LEVEL` deflates weights at (2026-11-30, this VM)."""
FAST_LEVEL = 1
"""Our level 1: ISA-L level 2, ~1,064 MB/s of one core on weights."""
KEEP_UP = 4.0
"""A level keeps up with a bottleneck when it is this many times faster on one core: it
then takes at most a quarter of a core at the bottleneck's rate."""
NETWORK_LEVEL = THOROUGH_LEVEL
"""Our level to S3 at the default target of 75 MB/s (:func:`auto_level`)."""
LOCAL_LEVEL = FAST_LEVEL
"""Our level to a local file, where the input's inflate is the bottleneck."""
SAMPLE_SIZE = 1 * MiB
"""Bytes of a large member's start that :func:`incompressible` deflates: all the zipper
holds (:data:`~handler.zipwriter.zipper.BUFFER_LIMIT`); also the inflated bytes of a ZIP
source's member :func:`copies_raw` compares."""
SAMPLE_LEVEL = 9
"""Deflates samples through ISA-L level 3 (zlib 9 without ISA-L): the strongest
compressor any level maps to, so a sample never looks worse than the member will."""
STORE_RATIO = 0.97
"""A sample that deflates to more than this share of its size is stored: the 3% or less
deflate would save is not worth its CPU and every reader's inflate."""
RAW_COPY_SLACK = 1.10
"""A ZIP source's deflated member is copied raw while its start took at most 10% more
bytes than :data:`SAMPLE_LEVEL` makes of it: zip -6's JSON is 2% smaller than ISA-L 3's,
zip -1's 2% larger (the module docstring's table), both copied; a stored-blocks member is
~20x larger on text and re-deflated."""
RAW_COPY_MARGIN = 64
"""Bytes added to the allowance: block headers and Huffman tables of a small member."""


class RawSample(Protocol):
    """A ZIP source member still compressed, that can show how well its start was
    compressed (:meth:`handler.archive.zip_raw.RawZipMember.inflated_start`)."""

    method: int

    def inflated_start(self, size: int) -> tuple[bytes, int] | None: ...


def auto_level(network_mb_s: float | None) -> int:
    """Our level under ``auto``: :data:`THOROUGH_LEVEL` when it keeps up (:data:`KEEP_UP`)
    with a network of ``network_mb_s`` MB/s (the destination is S3), else
    :data:`FAST_LEVEL`; ``None`` (a local destination, where the input's inflate is the
    bottleneck) gives :data:`FAST_LEVEL`."""
    if network_mb_s is not None and network_mb_s * KEEP_UP <= THOROUGH_MB_S:
        return THOROUGH_LEVEL
    return FAST_LEVEL


def resolve_level(
    compression: Compression, level: int | None, *, network_mb_s: float | None
) -> int:
    """The level to deflate at: ``level`` when the user gave one; under ``auto``
    :func:`auto_level` of the network's MB/s (``None``: the destination is local); under an
    explicit ``deflate`` (or ``store``) the documented default,
    :data:`~handler.codec.DEFAULT_LEVEL`, wherever the output goes."""
    if level is not None:
        return level
    if compression != "auto":
        return DEFAULT_LEVEL
    return auto_level(network_mb_s)


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


def deflated_size(sample: bytes, factory: CompressorFactory) -> int:
    """Bytes ``sample`` deflates to at :data:`SAMPLE_LEVEL` through ``factory``."""
    compressor = factory(SAMPLE_LEVEL)
    return len(compressor.compress(sample)) + len(compressor.flush())


def incompressible(sample: bytes, factory: CompressorFactory) -> bool:
    """Whether ``sample`` deflated at :data:`SAMPLE_LEVEL` by ``factory`` keeps more than
    :data:`STORE_RATIO` of its size (an empty sample is not: nothing says so)."""
    if not sample:
        return False
    return deflated_size(sample, factory) > STORE_RATIO * len(sample)


def copies_raw(
    compression: Compression,
    level: int | None,
    member: RawSample,
    factory: CompressorFactory = fastest_deflate,
) -> bool:
    """Whether a ZIP source's ``member`` is copied as it is: only under ``auto`` with no
    level given (an explicit ``deflate`` or level deflates every member at that level),
    only a deflated member (a stored one goes the usual way: stored again, or deflated
    when it compresses), and only when its first :data:`SAMPLE_SIZE` inflated bytes took
    at most :data:`RAW_COPY_SLACK` times (plus :data:`RAW_COPY_MARGIN`) the bytes
    :data:`SAMPLE_LEVEL` makes of them. A member whose start cannot be inflated is copied:
    the copy verifies it and fails with the reader's error."""
    if compression != "auto" or level is not None or member.method != METHOD_DEFLATED:
        return False
    start = member.inflated_start(SAMPLE_SIZE)
    if start is None:
        return True
    sample, compressed = start
    return compressed <= RAW_COPY_SLACK * deflated_size(sample, factory) + RAW_COPY_MARGIN
