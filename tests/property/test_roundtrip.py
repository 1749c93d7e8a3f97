"""Properties: any file tree survives archive -> package -> ZIP byte for byte."""

from __future__ import annotations

import io
import posixpath
import tempfile
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from handler.packaging import PackageOptions, package
from handler.zipwriter.zipper import IncrementalZipper
from tests.helpers import ALL_FORMATS, ArchiveKind, build_archive, read_zip, write_tree

segment = st.text(
    alphabet="abcdefghijklmnopqrstuvwxyz0123456789_-.é", min_size=1, max_size=12
).filter(lambda s: s not in (".", ".."))
path = st.lists(segment, min_size=1, max_size=4).map("/".join)
content = st.one_of(
    st.binary(max_size=2048),
    st.tuples(st.binary(min_size=1, max_size=64), st.integers(1, 5000)).map(lambda t: t[0] * t[1]),
)


def _no_file_is_a_directory(files: dict[str, bytes]) -> bool:
    names = set(files)
    for name in names:
        parent = posixpath.dirname(name)
        while parent:
            if parent in names:
                return False
            parent = posixpath.dirname(parent)
    return True


trees = st.dictionaries(path, content, min_size=1, max_size=12).filter(_no_file_is_a_directory)


@given(files=trees, kind=st.sampled_from(ALL_FORMATS), level=st.integers(0, 9))
def test_property_2_round_trip_fidelity(
    files: dict[str, bytes], kind: ArchiveKind, level: int
) -> None:
    """Property 2: any file tree, in any source format and at any level, comes out as a
    ZIP with identical names and bytes."""
    with tempfile.TemporaryDirectory() as work:
        archive = build_archive(Path(work) / "in", files, kind)
        dest = Path(work) / "out.zip"
        result = package(archive, dest, PackageOptions(level=level))
        assert read_zip(dest) == files
        assert result.files == len(files)
        assert result.uncompressed_bytes == sum(len(v) for v in files.values())


class _Pipe:
    def __init__(self) -> None:
        self.buffer = io.BytesIO()

    def write(self, data: bytes) -> int:
        return self.buffer.write(data)


@given(
    files=trees,
    chunk=st.integers(1, 4096),
    seekable=st.booleans(),
    compression=st.sampled_from(["deflate", "store"]),
)
def test_zipper_output_reads_back_whatever_the_chunking(
    files: dict[str, bytes], chunk: int, seekable: bool, compression: str
) -> None:
    pipe = _Pipe()
    sink = pipe.buffer if seekable else pipe
    zipper = IncrementalZipper(sink, compression=compression)  # type: ignore[arg-type]
    for name, data in files.items():
        pieces = [data[i : i + chunk] for i in range(0, len(data), chunk)]
        zipper.add_stream(name, pieces, size_hint=len(data) if seekable else None)
    zipper.finalize()
    assert read_zip(io.BytesIO(pipe.buffer.getvalue())) == files


@given(files=trees, level=st.integers(0, 9))
def test_property_2_holds_for_a_directory_source(files: dict[str, bytes], level: int) -> None:
    """Property 2 for a directory source (issue 10): the tree's files come out with
    identical names and bytes, and the plan's figures are the listing's."""
    with tempfile.TemporaryDirectory() as work:
        root = write_tree(Path(work) / "tree", files)
        dest = Path(work) / "out.zip"
        result = package(root, dest, PackageOptions(level=level))
        assert read_zip(dest) == files
        assert (result.format, result.files) == ("directory", len(files))
        assert result.bytes_in == result.uncompressed_bytes == sum(map(len, files.values()))
