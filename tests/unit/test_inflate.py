"""The inflate thread: what it reads back, how far ahead it runs, how it ends and fails."""

from __future__ import annotations

import gc
import gzip
import io
import os
import threading
import time
import weakref
from typing import cast

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from isal import isal_zlib

from handler import inflate
from handler.inflate import INFLATE_THREAD, InflatingReader
from handler.streams import CountingReader
from monitor.units import KiB

BLOCK = 64 * KiB
ISAL_ERROR = cast(type[Exception], isal_zlib.error)


def inflate_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == INFLATE_THREAD]


def gzip_members(*payloads: bytes) -> bytes:
    """A gzip file of one member per payload (``cat a.gz b.gz``, which gunzip reads whole)."""
    return b"".join(gzip.compress(payload, compresslevel=1) for payload in payloads)


@settings(max_examples=100, deadline=None)
@given(
    payloads=st.lists(st.binary(max_size=3 * BLOCK), min_size=1, max_size=3),
    sizes=st.lists(st.integers(1, 3 * BLOCK), min_size=1, max_size=8),
)
def test_reads_of_any_size_give_back_every_member_in_order(
    payloads: list[bytes], sizes: list[int]
) -> None:
    reader = InflatingReader(io.BytesIO(gzip_members(*payloads)), block_size=BLOCK)
    with reader:
        parts, turn = [], 0
        while data := reader.read(sizes[turn % len(sizes)]):
            assert len(data) <= sizes[turn % len(sizes)]
            parts.append(data)
            turn += 1
    assert b"".join(parts) == b"".join(payloads)


def test_readinto_and_read_all_agree_with_gzip() -> None:
    payload = os.urandom(5 * BLOCK + 123)
    with InflatingReader(io.BytesIO(gzip_members(payload)), block_size=BLOCK) as reader:
        buffer = bytearray(1000)
        head = bytes(buffer[: reader.readinto(buffer)])
        rest = reader.read()
    assert head + rest == payload


class _Decoder:
    """A decoder that gives out the blocks it is made with, then fails if told to (an
    ``IsalError`` of corrupt data, say). Its ``read`` does not refer to the decoder, as
    ISA-L's C reader's frameless ``read`` does not: the error's traceback holds no
    reference to it of its own."""

    def __init__(self, blocks: list[bytes], error: Exception | None = None) -> None:
        pending = list(blocks)

        def read(size: int) -> bytes:
            if pending:
                return pending.pop(0)
            if error is not None:
                raise error
            return b""

        self.read = read


def test_a_read_of_a_whole_block_is_that_block_without_a_copy(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A member's data passes from the inflate thread to the zipper as the thread's own
    bytes objects: a read of at least the rest of a block, at its start, is that block."""
    blocks = [os.urandom(BLOCK) for _ in range(3)]
    monkeypatch.setattr(inflate, "_decoder", lambda raw, size: _Decoder(blocks))
    with InflatingReader(io.BytesIO(), block_size=BLOCK) as reader:
        first = reader.read(4 * BLOCK)
        second = reader.read(100)  # part of a block: a slice
        third = reader.read(4 * BLOCK)  # the rest of that block
        fourth = reader.read(BLOCK)
        assert reader.read(BLOCK) == b""
    assert first is blocks[0] and fourth is blocks[2]
    assert second + third == blocks[1]


def test_a_failed_pass_lets_go_of_the_decoder_without_the_cycle_collector(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The error kept for the reader holds the thread's frame in its traceback; the
    frame must not keep the decoder (ISA-L's 2 MiB input buffer) alive in a warm process."""
    decoder = _Decoder([os.urandom(BLOCK)], error=ValueError("corrupt data"))
    gone = weakref.ref(decoder)
    made = [decoder]
    monkeypatch.setattr(inflate, "_decoder", lambda raw, size: made.pop())
    del decoder
    gc.collect()
    gc.disable()
    try:
        reader = InflatingReader(io.BytesIO(), block_size=BLOCK)
        monkeypatch.undo()
        with reader, pytest.raises(ValueError, match="corrupt data"):
            while reader.read(BLOCK):
                pass
        assert gone() is None
    finally:
        gc.enable()


def test_a_read_of_nothing_returns_at_once_without_waiting_for_the_source() -> None:
    release = threading.Event()

    class _Stalled(io.RawIOBase):
        def readable(self) -> bool:
            return True

        def readinto(self, buffer: memoryview | bytearray) -> int:  # type: ignore[override]
            release.wait(10)
            return 0

    with InflatingReader(_Stalled(), block_size=BLOCK) as reader:
        started = time.monotonic()
        assert reader.read(0) == b""
        assert reader.readinto(bytearray()) == 0
        waited = time.monotonic() - started
        release.set()
    assert waited < 1


@pytest.mark.parametrize("setting", ["block_size", "ahead", "raw_buffer"])
def test_sizes_below_one_are_refused(setting: str) -> None:
    sizes = {"block_size": BLOCK, "ahead": 2, "raw_buffer": BLOCK} | {setting: 0}
    with pytest.raises(ValueError, match=setting):
        InflatingReader(io.BytesIO(gzip_members(b"x")), **sizes)


def test_the_thread_runs_a_bounded_number_of_blocks_ahead() -> None:
    """Memory stays bounded when the reader stops reading: the thread takes at most its
    raw buffer and ``ahead`` blocks (plus the one in its hands) from the source."""
    payload = os.urandom(64 * BLOCK)  # does not compress: raw bytes ~ inflated bytes
    raw = CountingReader(io.BytesIO(gzip_members(payload)))
    with InflatingReader(raw, block_size=BLOCK, ahead=4, raw_buffer=2 * BLOCK) as reader:
        reader.read(1)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and raw.count < 6 * BLOCK:
            time.sleep(0.01)
        time.sleep(0.1)
        assert raw.count <= 2 * BLOCK + (4 + 2) * BLOCK + 1 * KiB
        assert reader.read() == payload[1:]


def test_close_in_the_middle_stops_and_joins_the_thread() -> None:
    payload = os.urandom(64 * BLOCK)
    before = len(inflate_threads())
    reader = InflatingReader(io.BytesIO(gzip_members(payload)), block_size=BLOCK, ahead=2)
    reader.read(BLOCK)
    reader.close()
    assert len(inflate_threads()) == before
    with pytest.raises(ValueError):
        reader.read(BLOCK)


def test_a_reader_dropped_without_close_lets_its_thread_end() -> None:
    """A warm process that loses a reader on an error path does not keep its thread and
    blocks for good (IOBase closes a stream it collects)."""
    payload = os.urandom(64 * BLOCK)
    before = len(inflate_threads())
    reader = InflatingReader(io.BytesIO(gzip_members(payload)), block_size=BLOCK, ahead=2)
    reader.read(BLOCK)
    del reader
    gc.collect()
    deadline = time.monotonic() + 5
    while len(inflate_threads()) > before and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(inflate_threads()) == before


def test_a_truncated_stream_raises_eoferror_at_the_read_that_reaches_it() -> None:
    whole = gzip_members(os.urandom(3 * BLOCK))
    source = io.BytesIO(whole[: len(whole) // 2])
    with InflatingReader(source, block_size=BLOCK) as reader, pytest.raises(EOFError):
        while reader.read(BLOCK):
            pass


def test_corrupt_data_raises_the_decoders_error() -> None:
    whole = bytearray(gzip_members(b"weights " * 50_000))
    whole[40:60] = b"\xff" * 20  # inside the deflate stream
    reader = InflatingReader(io.BytesIO(bytes(whole)), block_size=BLOCK)
    with reader, pytest.raises((ISAL_ERROR, OSError, EOFError)):
        while reader.read(BLOCK):
            pass


class _FailingSource(io.RawIOBase):
    """A source whose second read fails, as a dropped network connection does."""

    def __init__(self, data: bytes) -> None:
        self._data = io.BytesIO(data)
        self._reads = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview | bytearray) -> int:  # type: ignore[override]
        self._reads += 1
        if self._reads > 1:
            raise ConnectionResetError("the source went away")
        return self._data.readinto(buffer)


def test_an_error_of_the_source_reaches_the_reader_as_the_same_exception() -> None:
    source = _FailingSource(gzip_members(os.urandom(8 * BLOCK)))
    reader = InflatingReader(source, block_size=BLOCK, raw_buffer=2 * BLOCK)
    with reader, pytest.raises(ConnectionResetError, match="went away"):
        while reader.read(BLOCK):
            pass
