"""Deflate levels on weight-like data: ISA-L levels 0-3 beside zlib levels 1 and 6.

``python -m benchmarks.codec_levels [--size 64MiB] [--rounds 3]`` (part of ``make bench``)
compresses the sample artifact's float32 weights (:func:`handler.cli.sample.weight_chunks`,
normally distributed, as real checkpoints are) and its tokenizer JSON as raw deflate in
1 MiB chunks, each codec in turn inside every round (interleaved, so a noisy neighbour
slows them alike), and reports each codec's best CPU time of its own thread
(``time.thread_time``) as MB/s of input, and its output as a share of the input and of
zlib level 6's. These are the figures :mod:`handler.zipwriter.method` chooses levels by.
"""

from __future__ import annotations

import argparse
import sys
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import cast

from isal import isal_zlib

from handler.cli.sample import _config_files, weight_chunks
from handler.codec import RAW_DEFLATE_WBITS, Compressor, Decompressor
from monitor.units import MiB, parse_size

SPEEDUP_GOAL = 10.0
SIZE_GOAL = 0.01


@dataclass(frozen=True)
class Codec:
    label: str
    make: Callable[[], Compressor]


CODECS = (
    *(
        Codec(
            f"ISA-L level {level}",
            lambda level=level: isal_zlib.compressobj(level, isal_zlib.DEFLATED, RAW_DEFLATE_WBITS),  # type: ignore[misc]
        )
        for level in range(4)
    ),
    *(
        Codec(
            f"zlib level {level}",
            lambda level=level: zlib.compressobj(level, zlib.DEFLATED, RAW_DEFLATE_WBITS),  # type: ignore[misc]
        )
        for level in (1, 6)
    ),
)


def _compress(codec: Codec, chunks: Sequence[bytes]) -> tuple[float, int]:
    """(CPU seconds of this thread, compressed bytes) for one pass over ``chunks``."""
    compressor = codec.make()
    started = time.thread_time()
    size = sum(len(compressor.compress(chunk)) for chunk in chunks) + len(compressor.flush())
    return time.thread_time() - started, size


def best_of(chunks: Sequence[bytes], rounds: int) -> dict[str, tuple[float, int]]:
    """Each codec's (best CPU seconds, compressed bytes) over ``rounds`` interleaved rounds."""
    best: dict[str, tuple[float, int]] = {}
    for _ in range(rounds):
        for codec in CODECS:
            seconds, size = _compress(codec, chunks)
            if codec.label not in best or seconds < best[codec.label][0]:
                best[codec.label] = (seconds, size)
    return best


def rows(name: str, chunks: Sequence[bytes], best: dict[str, tuple[float, int]]) -> list[str]:
    """Markdown rows for one kind of data: each codec's best MB/s and its ratios."""
    total = sum(len(c) for c in chunks)
    reference = best["zlib level 6"][1]
    return [
        f"| {name} | {label} | {total / max(seconds, 1e-9) / 1e6:,.0f} | "
        f"{size / total:.4f} | {size / reference:.4f} |"
        for label, (seconds, size) in best.items()
    ]


def inflate_rows(chunks: Sequence[bytes], rounds: int) -> list[str]:
    """What verifying a raw-copied member costs: inflating it into nothing
    (:mod:`handler.archive.zip_raw`), by ISA-L and by zlib, best of ``rounds``."""
    compressor = isal_zlib.compressobj(1, isal_zlib.DEFLATED, RAW_DEFLATE_WBITS)
    deflated = [compressor.compress(c) for c in chunks] + [compressor.flush()]
    total = sum(len(c) for c in chunks)
    inflaters: dict[str, Callable[[], Decompressor]] = {
        "ISA-L": lambda: cast(Decompressor, isal_zlib.decompressobj(RAW_DEFLATE_WBITS)),
        "zlib": lambda: zlib.decompressobj(RAW_DEFLATE_WBITS),
    }
    best = dict.fromkeys(inflaters, float("inf"))
    for _ in range(rounds):
        for label, make in inflaters.items():
            inflater = make()
            started = time.thread_time()
            for block in deflated:
                inflater.decompress(block)
            best[label] = min(best[label], time.thread_time() - started)
    return [
        f"| float32 weights, ISA-L 1 | {label} | {total / max(s, 1e-9) / 1e6:,.0f} |"
        for label, s in best.items()
    ]


def main(argv: list[str] | None = None) -> list[str]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--size", type=parse_size, default=parse_size("64MiB"))
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    weights = list(weight_chunks(args.size, seed=1, chunk=1 * MiB))
    tokenizer = _config_files(1)["tokenizer.json"]
    text = [tokenizer[i : i + MiB] for i in range(0, len(tokenizer), MiB)] * 8
    on_weights = best_of(weights, args.rounds)
    (fast_s, fast_size), (zlib_s, zlib_size) = (
        on_weights["ISA-L level 3"],
        on_weights["zlib level 6"],
    )
    speedup, larger = zlib_s / max(fast_s, 1e-9), fast_size / zlib_size - 1
    met = speedup >= SPEEDUP_GOAL and larger <= SIZE_GOAL
    return [
        "| goal | measured | met |",
        "| --- | --- | --- |",
        f"| ISA-L level 3 (auto's to S3) at least {SPEEDUP_GOAL:.0f}x zlib level 6 on weights, "
        f"output at "
        f"most {SIZE_GOAL:.0%} larger | {speedup:.1f}x, {larger:+.2%} | "
        f"{'yes' if met else '**no**'} |",
        "",
        "| data | codec | MB/s (CPU) | output / input | output / zlib 6 |",
        "| --- | --- | ---: | ---: | ---: |",
        *rows(f"float32 weights, {args.size // MiB} MiB", weights, on_weights),
        *rows(
            f"tokenizer.json x8, {len(tokenizer) * 8 // 1024} KiB",
            text,
            best_of(text, args.rounds),
        ),
        "",
        "| data | inflate | MB/s (CPU, of output) |",
        "| --- | --- | ---: |",
        *inflate_rows(weights, args.rounds),
    ]


if __name__ == "__main__":
    print("\n".join(main(sys.argv[1:])))
