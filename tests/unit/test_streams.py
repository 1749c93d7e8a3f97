"""handler/streams.py: the adapters' ``readinto`` gives the same bytes as ``read`` and
reads a file straight into the caller's buffer (no bytes object in between); a stream
that cannot seek seeks forward as a file does."""

from __future__ import annotations

import io

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from handler.streams import CountingReader, ForwardReader, GuardedReader, PrefixedReader


class ReadRefused(io.BytesIO):
    """A file whose ``read`` must not be used: the adapters go through ``readinto``."""

    def read(self, size: int | None = -1, /) -> bytes:
        raise AssertionError("read() used where readinto() reads straight into the buffer")


def _chain(head: bytes, rest: io.BytesIO) -> tuple[PrefixedReader, CountingReader]:
    counted = CountingReader(GuardedReader(rest, lambda exc: exc))
    return PrefixedReader(head, counted), counted


@settings(max_examples=100)
@given(
    data=st.binary(max_size=4096),
    head_size=st.integers(min_value=0, max_value=64),
    sizes=st.lists(st.integers(min_value=1, max_value=700), min_size=1, max_size=20),
)
def test_readinto_gives_the_bytes_read_gives(data: bytes, head_size: int, sizes: list[int]) -> None:
    head, rest = data[:head_size], data[head_size:]
    stream, counted = _chain(head, ReadRefused(rest))
    got = bytearray()
    turn = 0
    while True:
        buffer = bytearray(sizes[turn % len(sizes)])
        turn += 1
        count = stream.readinto(buffer)
        if count == 0:
            break
        got += buffer[:count]
    assert bytes(got) == data
    assert counted.count == len(rest)


def test_an_error_in_readinto_is_translated() -> None:
    class Broken(io.RawIOBase):
        def readinto(self, buffer: object, /) -> int:
            raise OSError("disk gone")

    stream = GuardedReader(Broken(), lambda exc: ValueError(f"source: {exc}"))
    with pytest.raises(ValueError, match=r"^source: disk gone$"):
        stream.readinto(bytearray(8))


class OneWay(io.BytesIO):
    """A stream that cannot seek, as a socket's body or a decompressor's output."""

    def seekable(self) -> bool:
        return False

    def seek(self, offset: int, whence: int = 0, /) -> int:
        raise io.UnsupportedOperation("seek")


@settings(max_examples=100)
@given(
    data=st.binary(max_size=4096),
    steps=st.lists(
        st.tuples(st.sampled_from(["read", "readinto", "seek"]), st.integers(0, 900)),
        max_size=25,
    ),
)
def test_a_forward_reader_seeks_forward_like_a_file(
    data: bytes, steps: list[tuple[str, int]]
) -> None:
    """What tarfile's seeking mode asks of its file (read, readinto, tell, seek ahead)
    gives what a real file gives, from a stream that cannot seek."""
    reference = io.BytesIO(data)
    stream = ForwardReader(OneWay(data))
    for step, size in steps:
        if step == "read":
            assert stream.read(size) == reference.read(size)
        elif step == "readinto":
            mine, theirs = bytearray(size), bytearray(size)
            assert stream.readinto(mine) == reference.readinto(theirs)
            assert mine == theirs
        else:
            target = stream.tell() + size
            stream.seek(target)
            reference.seek(min(target, len(data)))  # a seek past the end stops there
        assert stream.tell() == reference.tell()
    assert stream.read() == reference.read()


def test_a_forward_reader_refuses_to_seek_back() -> None:
    stream = ForwardReader(OneWay(b"0123456789"))
    stream.seek(4)
    with pytest.raises(io.UnsupportedOperation, match="forward only"):
        stream.seek(3)
    assert stream.read() == b"456789"


class Trickle(io.BytesIO):
    """A stream whose reads return at most ``most`` bytes, as a raw socket or pipe may."""

    def __init__(self, data: bytes, most: int) -> None:
        super().__init__(data)
        self._most = most

    def read(self, size: int | None = -1, /) -> bytes:
        limit = self._most if size is None or size < 0 else min(size, self._most)
        return super().read(limit)


@settings(max_examples=100)
@given(
    data=st.binary(max_size=4096),
    most=st.integers(min_value=1, max_value=600),
    sizes=st.lists(st.integers(min_value=0, max_value=1500), min_size=1, max_size=12),
)
def test_a_forward_reader_reads_whole_sizes_over_short_reads(
    data: bytes, most: int, sizes: list[int]
) -> None:
    """tarfile takes a short read for the archive's end: read(n) gives n bytes unless
    the stream ends first, however little each read of the source returns."""
    stream = ForwardReader(Trickle(data, most))
    position = 0
    for size in sizes:
        expected = data[position : position + size]
        assert stream.read(size) == expected
        position += len(expected)
        assert stream.tell() == position


@pytest.mark.parametrize("size", [-2, -1024, 9 * 1024 * 1024])
def test_a_forward_reader_refuses_a_size_no_header_could_mean(size: int) -> None:
    stream = ForwardReader(io.BytesIO(b"x" * 100), max_read=8 * 1024 * 1024)
    with pytest.raises(ValueError, match=f"asks for {size:,} bytes at byte 0"):
        stream.read(size)
    assert stream.read() == b"x" * 100  # -1 still reads to the end


def test_one_read_of_a_forward_reader_stays_within_its_largest_read() -> None:
    """A member's data is read with read1 (one read of the source, short reads passed
    on); a 10 GiB member asked for whole is still read at most max_read at a time."""
    source = Trickle(b"y" * 5000, 5000)
    stream = ForwardReader(source, max_read=1024)
    assert stream.read1(1 << 40) == b"y" * 1024
    assert stream.read1(-1) == b""  # no size: nothing, not the whole rest
    assert stream.tell() == 1024
