"""A ZIP source's deflated member copied raw (handler.archive.zip_raw): whatever the data,
the bytes after its deflate stream and the chunk size the copy reads in, the copy is the
whole stream and nothing after it (review 2 item 13), and the sample copies_raw judges by
is the member's start and no more compressed bytes than the whole stream."""

from __future__ import annotations

import io
import struct
import zipfile
import zlib

from hypothesis import given, settings
from hypothesis import strategies as st

from handler.archive.zip_raw import RawZipMember


def deflated_member(data: bytes, level: int, junk: bytes) -> tuple[bytes, bytes]:
    """``data`` deflated at ``level`` into a one-member ZIP, ``junk`` after the stream
    (inside the declared compressed size); returns the stream and the ZIP."""
    compressor = zlib.compressobj(level, zlib.DEFLATED, -15)
    stream = compressor.compress(data) + compressor.flush()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("m", data, zipfile.ZIP_DEFLATED, compresslevel=level)
    raw = bytearray(buffer.getvalue())
    assert raw.find(stream) == 31  # after the 30-byte local header and the name "m"
    # rebuild with junk: local header, stream + junk, central directory, end record
    size = len(stream) + len(junk)
    local = raw[:30] + b"m"
    local[18:22] = struct.pack("<I", size)
    central_at = raw.index(b"PK\x01\x02")
    central = raw[central_at : central_at + 47]
    central[20:24] = struct.pack("<I", size)
    end = raw[central_at + 47 :]
    end[16:20] = struct.pack("<I", len(local) + size)
    return stream, bytes(local + stream + junk + central + end)


@settings(max_examples=150, deadline=None)
@given(
    data=st.binary(max_size=4000)
    | st.builds(lambda n, b: b * n, st.integers(1, 3000), st.binary(min_size=1, max_size=40)),
    level=st.integers(0, 9),
    junk=st.binary(max_size=300),
    chunk=st.integers(1, 512),
    sample=st.integers(0, 5000),
)
def test_the_copy_is_the_stream_and_the_sample_its_start(
    data: bytes, level: int, junk: bytes, chunk: int, sample: int
) -> None:
    stream, archive = deflated_member(data, level, junk)
    handle = io.BytesIO(archive)
    info = zipfile.ZipFile(handle).getinfo("m")
    assert zipfile.ZipFile(handle).read("m") == data  # zipfile reads it, junk and all
    member = RawZipMember(handle, info, lambda exc: exc, chunk_size=chunk)
    assert b"".join(member) == stream  # junk left behind, at any chunk boundary
    assert (member.crc32, member.uncompressed_size) == (zlib.crc32(data), len(data))
    start = member.inflated_start(sample)
    assert start is not None
    inflated, compressed = start
    assert inflated == data[:sample]
    assert 0 <= compressed <= len(stream)
