"""Property 3: memory held while streaming does not grow with a member's size."""

from __future__ import annotations

import tempfile
import tracemalloc
from pathlib import Path

from hypothesis import event, given
from hypothesis import strategies as st

from handler.inflate import INFLATE_AHEAD, RAW_BUFFER
from handler.locations.local import LocalDestination
from handler.packaging import PackageOptions, package
from handler.streams import CHUNK_SIZE
from handler.zipwriter.records import ZipEntry
from monitor.units import KiB, MiB
from tests.lazy_archive import LazyMember, LazyTar

TAR_BOUND = 8 * CHUNK_SIZE
"""A plain tar: a few 1 MiB chunks (tar stream buffer, member reader, compressor input and
output, the destination's write buffer) and the generator that feeds it."""
GZIP_BOUND = TAR_BOUND + RAW_BUFFER + (INFLATE_AHEAD + 2) * CHUNK_SIZE
"""Plus the inflate thread's raw buffer, the blocks it may run ahead, the one it is
filling and the one the reader holds (:mod:`handler.inflate`)."""
LARGEST = 56 * MiB
"""Well past either bound, below the 64 MiB where the zip-bomb ratio check starts."""


class _DiscardingPipe:
    """A non-seekable sink (a pipe, an upload) that keeps nothing."""

    def __init__(self) -> None:
        self.size = 0

    def write(self, data: bytes) -> int:
        self.size += len(data)
        return len(data)


class _PipeDestination:
    """A destination whose writer streams into a :class:`_DiscardingPipe`."""

    name = "pipe"

    def __init__(self) -> None:
        self.pipe = _DiscardingPipe()

    def check_writable(self) -> None:
        pass

    def begin(self) -> _PipeDestination:
        return self

    @property
    def sink(self) -> _DiscardingPipe:
        return self.pipe

    def commit(self, entries: list[ZipEntry]) -> None:
        pass

    def abort(self) -> None:
        pass


small_sizes = st.lists(st.integers(0, 64 * KiB), max_size=3)
member_sizes = st.tuples(small_sizes, st.integers(GZIP_BOUND + 1, LARGEST), small_sizes).map(
    lambda parts: [*parts[0], parts[1], *parts[2]]
)
"""One member larger than either bound, among small ones before and after it."""
chunkings = st.one_of(st.none(), st.integers(4 * KiB, 4 * MiB))


@given(
    sizes=member_sizes,
    max_read=chunkings,
    gzip=st.booleans(),
    seekable=st.booleans(),
    compression=st.sampled_from(["deflate", "store"]),
)
def test_property_3_bounded_memory_while_streaming(
    sizes: list[int], max_read: int | None, gzip: bool, seekable: bool, compression: str
) -> None:
    """Property 3: for any member sizes and read chunkings, no buffer the pipeline holds
    grows with a member's size: every read asked of the source is bounded, and the
    traced peak stays under a bound smaller than the largest member."""
    members = [LazyMember(f"m/{i}.bin", size, seed=i) for i, size in enumerate(sizes)]
    source = LazyTar(members, gzip=gzip, max_read=max_read)
    source.size()  # measured before tracing: an S3 HEAD, not part of the pipeline
    options = PackageOptions(compression=compression)  # type: ignore[arg-type]
    with tempfile.TemporaryDirectory() as work:
        destination = LocalDestination(Path(work) / "out.zip") if seekable else _PipeDestination()
        tracemalloc.start()
        try:
            result = package(source, destination, options)  # type: ignore[arg-type]
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert result.uncompressed_bytes == sum(sizes)
    requests = [size for stream in source.streams for size in stream.requests]
    assert all(0 < size <= (RAW_BUFFER if gzip else CHUNK_SIZE) for size in requests), max(requests)
    bound = GZIP_BOUND if gzip else TAR_BOUND
    event(f"traced peak under {peak // (4 * MiB) * 4 + 4} MiB")
    assert peak <= bound, f"traced peak {peak / MiB:.1f} MiB over {bound / MiB:.0f} MiB"
