"""IncrementalZipper: ZIPs that independent readers accept, on files and on pipes."""

from __future__ import annotations

import io
import math
import random
import stat
import subprocess
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from handler.codec import Compressor, crc32, fastest_deflate, zlib_deflate
from handler.errors import (
    CompressionError,
)
from handler.zipwriter.records import (
    FLAG_DATA_DESCRIPTOR,
    METHOD_DEFLATED,
    METHOD_STORED,
    ZIP32_LIMIT,
    dos_datetime,
)
from handler.zipwriter.tree import create_zip_streaming
from handler.zipwriter.zipper import BUFFER_LIMIT, IncrementalZipper
from tests.helpers import read_zip, unzip_test, write_tree
from tests.streaming_readers import (
    PartSink,
    assert_no_data_descriptors,
    stream_unzip_contents,
    zipfile_contents,
)


class PipeSink:
    """A sink that cannot seek or tell, like a pipe or an S3 multipart upload."""

    def __init__(self) -> None:
        self.buffer = io.BytesIO()

    def write(self, data: bytes) -> int:
        return self.buffer.write(data)

    def seekable(self) -> bool:
        return False


MEMBERS = {
    "config.json": b'{"hidden_size": 2048}\n' * 10,
    "weights/shard-1.bin": bytes(range(256)) * 4096,
    "empty.txt": b"",
    "caf\u00e9/na\u00efve.txt": b"utf-8 names survive",
}


def _write_members(zipper: IncrementalZipper, *, finalize: bool = True) -> None:
    for name, data in MEMBERS.items():
        chunks = [data[i : i + 1000] for i in range(0, len(data), 1000)]
        zipper.add_stream(name, chunks, size_hint=len(data))
    if finalize:
        zipper.finalize()


def test_seekable_file_round_trips_through_zipfile_and_unzip(tmp_path: Path) -> None:
    out = tmp_path / "out.zip"
    with out.open("wb") as handle:
        _write_members(IncrementalZipper(handle))
    assert read_zip(out) == MEMBERS
    unzip_test(out)
    with zipfile.ZipFile(out) as archive:
        # On a seekable file the local headers carry the real sizes: no data descriptors.
        assert all(not info.flag_bits & 0x08 for info in archive.infolist())


@pytest.mark.parametrize("compression", ["deflate", "store"])
def test_a_pipe_gets_a_data_descriptor_only_after_a_large_member_and_never_for_stored_data(
    tmp_path: Path, compression: str
) -> None:
    """Members within the buffering bound carry CRC and sizes in their local header even
    on a pipe; a larger one needs a data descriptor there, and is then deflated (level 0
    for 'store'), since a stored member with a data descriptor cannot be streamed
    (stream-unzip NotStreamUnzippable; Java ZipInputStream refuses it)."""
    sink = PipeSink()
    zipper = IncrementalZipper(sink, compression=compression)  # type: ignore[arg-type]
    zipper.add_directory("model")
    zipper.add_symlink("model/latest", "weights.bin")
    _write_members(zipper, finalize=False)
    big = bytes(range(256)) * (BUFFER_LIMIT // 256 + 1)
    zipper.add_stream("model/weights.bin", [big], size_hint=len(big))
    zipper.finalize()
    data = sink.buffer.getvalue()
    out = tmp_path / "piped.zip"
    out.write_bytes(data)
    expected = {"model/": b"", "model/latest": b"weights.bin", **MEMBERS, "model/weights.bin": big}
    assert zipfile_contents(data) == expected
    assert stream_unzip_contents(data) == expected
    unzip_test(out)
    with zipfile.ZipFile(out) as archive:
        infos = {i.filename: i for i in archive.infolist()}
    with_descriptor = {name for name, i in infos.items() if i.flag_bits & FLAG_DATA_DESCRIPTOR}
    assert with_descriptor == {"model/weights.bin"}  # shard-1.bin is exactly BUFFER_LIMIT
    assert infos["model/weights.bin"].compress_type == METHOD_DEFLATED
    stored = {name for name, i in infos.items() if i.compress_type == METHOD_STORED}
    assert stored >= {"model/", "model/latest", "empty.txt"}
    assert all(i.compress_type == METHOD_STORED for i in infos.values() if i.file_size < 100)


def test_a_small_member_deflate_cannot_shrink_is_stored() -> None:
    sink = io.BytesIO()
    zipper = IncrementalZipper(sink)
    noise = random.Random(8).randbytes(50_000)  # incompressible
    small = zipper.add_stream("noise.bin", [noise], size_hint=len(noise))
    text = zipper.add_stream("text.txt", [b"abc" * 1000], size_hint=3000)
    zipper.finalize()
    assert (small.method, small.compressed_size) == (METHOD_STORED, len(noise))
    assert text.method == METHOD_DEFLATED and text.compressed_size < 100
    assert read_zip(sink) == {"noise.bin": noise, "text.txt": b"abc" * 1000}


def test_a_large_stored_precompressed_member_on_a_pipe_is_refused() -> None:
    class Stored:
        method = METHOD_STORED
        crc32 = 0
        uncompressed_size = 0

        def __iter__(self) -> Iterator[bytes]:
            yield bytes(BUFFER_LIMIT + 1)

    zipper = IncrementalZipper(PipeSink())
    with pytest.raises(CompressionError, match="stored and larger than 1048576 bytes"):
        zipper.add_precompressed("raw.bin", Stored())


@pytest.mark.parametrize("size_hint", [None, 3 * BUFFER_LIMIT])
def test_a_patchable_sink_gets_the_header_patched_in_the_held_part(size_hint: int | None) -> None:
    """The part holding a large member's local header is sent last, patched: no data
    descriptor, and ZIP64 sizes reserved up front when the size is not announced."""
    sink = PartSink(part_size=256 * 1024)
    zipper = IncrementalZipper(sink, compression="store")
    zipper.add_stream("small.txt", [b"before"])
    data = bytes(range(256)) * (3 * BUFFER_LIMIT // 256)
    chunks = [data[i : i + 100_000] for i in range(0, len(data), 100_000)]
    entry = zipper.add_stream("big.bin", chunks, size_hint=size_hint)
    zipper.add_stream("after.txt", [b"after"])
    zipper.finalize()
    archive = sink.getvalue()
    assert sink.order[:12] == [*range(2, 13), 1]  # part 1 held until big.bin ended
    records = assert_no_data_descriptors(archive)
    assert [r.method for r in records] == [METHOD_STORED] * 3
    assert entry.zip64 is (size_hint is None)
    expected = {"small.txt": b"before", "big.bin": data, "after.txt": b"after"}
    assert stream_unzip_contents(archive) == expected == zipfile_contents(archive)


@pytest.mark.parametrize("level", range(10))
def test_every_deflate_level_gives_a_readable_zip(level: int) -> None:
    sink = io.BytesIO()
    _write_members(IncrementalZipper(sink, level=level))
    assert read_zip(sink) == MEMBERS


def test_store_keeps_bytes_uncompressed() -> None:
    sink = io.BytesIO()
    _write_members(IncrementalZipper(sink, compression="store"))
    with zipfile.ZipFile(sink) as archive:
        assert {i.compress_type for i in archive.infolist()} == {zipfile.ZIP_STORED}
    assert read_zip(sink) == MEMBERS


def test_deflate_output_is_standard_method_8_and_compresses() -> None:
    sink = io.BytesIO()
    data = b"tokenizer vocabulary " * 50_000
    zipper = IncrementalZipper(sink)
    entry = zipper.add_stream("vocab.txt", [data])
    zipper.finalize()
    assert entry.method == METHOD_DEFLATED
    assert entry.compressed_size < len(data) // 20
    assert (
        zlib.decompress(_member_payload(sink.getvalue(), entry.offset, entry.compressed_size), -15)
        == data
    )


def _member_payload(zip_bytes: bytes, offset: int, size: int) -> bytes:
    name_length = int.from_bytes(zip_bytes[offset + 26 : offset + 28], "little")
    extra_length = int.from_bytes(zip_bytes[offset + 28 : offset + 30], "little")
    start = offset + 30 + name_length + extra_length
    return zip_bytes[start : start + size]


def test_injected_compressor_is_used() -> None:
    used: list[int] = []

    def factory(level: int) -> Compressor:
        used.append(level)
        return zlib_deflate(level)

    sink = io.BytesIO()
    zipper = IncrementalZipper(sink, level=3, compressor_factory=factory)
    zipper.add_stream("a.txt", [b"hello"])
    zipper.finalize()
    assert used == [3]
    assert read_zip(sink) == {"a.txt": b"hello"}


def test_members_compressed_elsewhere_append_in_order() -> None:
    """Blocks of one member compressed separately (as worker threads would) form one member."""
    blocks = [b"block one " * 1000, b"block two " * 1000, b"block three"]

    class Precompressed:
        method = METHOD_DEFLATED

        def __init__(self) -> None:
            self.crc32 = 0
            self.uncompressed_size = 0

        def __iter__(self) -> Iterator[bytes]:
            for index, block in enumerate(blocks):
                compressor = fastest_deflate(6)
                last = index == len(blocks) - 1
                # Each block ends byte-aligned (full flush); only the last one ends the stream.
                data = compressor.compress(block) + (
                    compressor.flush() if last else compressor.flush(zlib.Z_FULL_FLUSH)  # type: ignore[call-arg]
                )
                self.crc32 = crc32(block, self.crc32)
                self.uncompressed_size += len(block)
                yield data

    sink = io.BytesIO()
    zipper = IncrementalZipper(sink)
    zipper.add_precompressed("joined.txt", Precompressed())
    zipper.finalize()
    assert read_zip(sink) == {"joined.txt": b"".join(blocks)}


def test_directories_and_symlinks_are_kept(tmp_path: Path) -> None:
    out = tmp_path / "links.zip"
    with out.open("wb") as handle:
        zipper = IncrementalZipper(handle)
        zipper.add_directory("model", mode=0o750)
        zipper.add_stream("model/weights.bin", [b"w" * 10], mode=0o600)
        zipper.add_symlink("model/latest.bin", "weights.bin")
        zipper.finalize()
    unzip_test(out)
    with zipfile.ZipFile(out) as archive:
        infos = {i.filename: i for i in archive.infolist()}
    assert infos["model/"].is_dir()
    assert stat.S_IMODE(infos["model/"].external_attr >> 16) == 0o750
    assert stat.S_IMODE(infos["model/weights.bin"].external_attr >> 16) == 0o600
    assert stat.S_ISLNK(infos["model/latest.bin"].external_attr >> 16)
    target = tmp_path / "unzipped"
    subprocess.run(["unzip", "-q", str(out), "-d", str(target)], check=True)
    assert (target / "model/latest.bin").is_symlink()
    assert (target / "model/latest.bin").read_bytes() == b"w" * 10


def test_progress_reports_bytes_done_and_total(tmp_path: Path) -> None:
    source = write_tree(tmp_path / "tree", {"a.bin": b"a" * 3_000_000, "b/c.bin": b"c" * 5})
    seen: list[tuple[int, int]] = []
    create_zip_streaming(source, tmp_path / "t.zip", lambda d, t: seen.append((d, t)))
    assert seen[-1] == (3_000_005, 3_000_005)
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)
    assert read_zip(tmp_path / "t.zip") == {"a.bin": b"a" * 3_000_000, "b/c.bin": b"c" * 5}


def test_add_file_streaming_keeps_mode(tmp_path: Path) -> None:
    script = tmp_path / "run.sh"
    script.write_bytes(b"#!/bin/sh\n")
    script.chmod(0o755)
    sink = io.BytesIO()
    zipper = IncrementalZipper(sink)
    zipper.add_file_streaming(script)
    zipper.finalize()
    with zipfile.ZipFile(sink) as archive:
        assert stat.S_IMODE(archive.getinfo("run.sh").external_attr >> 16) == 0o755


def test_refuses_duplicate_names_bad_levels_and_use_after_finalize() -> None:
    zipper = IncrementalZipper(io.BytesIO())
    zipper.add_stream("a", [b"1"])
    with pytest.raises(CompressionError, match="already in the ZIP"):
        zipper.add_stream("a", [b"2"])
    zipper.finalize()
    with pytest.raises(CompressionError, match="already finalized"):
        zipper.add_stream("b", [b"3"])
    with pytest.raises(CompressionError, match="level 11 is out of range"):
        IncrementalZipper(io.BytesIO(), level=11)


class NullSink:
    """Counts bytes and keeps none (for members too large to keep in a test)."""

    def write(self, data: bytes) -> int:
        return len(data)


def test_a_member_that_outgrows_its_announced_size_is_an_error() -> None:
    zipper = IncrementalZipper(NullSink(), compression="store")

    def lying_chunks() -> Iterator[bytes]:
        block = bytes(64 << 20)
        for _ in range(65):
            yield block

    # Announced as tiny (no ZIP64 fields), it passes 4 GiB: refused, not a corrupt ZIP.
    with pytest.raises(CompressionError, match="grew past 4 GiB"):
        zipper.add_stream("liar.bin", lying_chunks(), size_hint=10)


@pytest.mark.slow
def test_zip64_for_65535_members_and_more(tmp_path: Path) -> None:
    out = tmp_path / "many.zip"
    count = 70_000
    with out.open("wb") as handle:
        zipper = IncrementalZipper(handle, compression="store")
        for index in range(count):
            zipper.add_stream(f"f/{index}", [b"x"], size_hint=1)
        zipper.finalize()
    with zipfile.ZipFile(out) as archive:
        assert len(archive.infolist()) == count
        assert archive.read("f/69999") == b"x"
    unzip_test(out)


@pytest.mark.slow
@pytest.mark.parametrize("seekable", [True, False])
def test_zip64_for_a_member_of_4_gib_and_more(tmp_path: Path, seekable: bool) -> None:
    size = ZIP32_LIMIT + 1 + (1 << 20)
    block = bytes(64 << 20)

    def chunks() -> Iterator[bytes]:
        remaining = size
        while remaining:
            n = min(remaining, len(block))
            yield block[:n]
            remaining -= n

    out = tmp_path / "big.zip"
    with out.open("wb") as handle:
        zipper = IncrementalZipper(handle if seekable else PipeSink())
        zipper.add_stream("small.txt", [b"before"], size_hint=6)
        entry = zipper.add_stream("zeros.bin", chunks(), size_hint=size)
        zipper.add_stream("after.txt", [b"after"], size_hint=5)
        zipper.finalize()
        if not seekable:
            handle.write(zipper._sink.buffer.getvalue())  # type: ignore[attr-defined]
    assert entry.zip64 and entry.uncompressed_size == size
    with zipfile.ZipFile(out) as archive:
        info = archive.getinfo("zeros.bin")
        assert (info.file_size, info.CRC) == (size, _crc_of_zeros(size))
        assert archive.read("after.txt") == b"after"
    unzip_test(out)  # inflates every member and checks its CRC


def _crc_of_zeros(size: int) -> int:
    block = bytes(64 << 20)
    crc = 0
    for start in range(0, size, len(block)):
        crc = zlib.crc32(block[: min(len(block), size - start)], crc)
    return crc


def test_zip64_offsets_past_4_gib(tmp_path: Path) -> None:
    """Members that start beyond 4 GiB get ZIP64 offsets (a sparse prefix costs no disk)."""
    out = tmp_path / "offset.zip"
    with out.open("wb") as handle:
        handle.seek(ZIP32_LIMIT + 4096)
        zipper = IncrementalZipper(handle)
        zipper.add_stream("far.txt", [b"far away"], size_hint=8)
        zipper.finalize()
    with zipfile.ZipFile(out) as archive:
        info = archive.getinfo("far.txt")
        assert info.header_offset == ZIP32_LIMIT + 4096
        assert archive.read(info) == b"far away"
    unzip_test(out)


@pytest.mark.parametrize("mtime", [1e18, -1e18, math.nan, math.inf])
def test_unrepresentable_mtimes_clamp_to_the_dos_range(mtime: float) -> None:
    _, date = dos_datetime(mtime)
    assert 1980 <= (date >> 9) + 1980 <= 2107
