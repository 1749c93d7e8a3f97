"""The parallel ranged reader (handler.locations.ranged) over a fake GetObject: order,
memory bound, resume from the byte reached, the settings."""

from __future__ import annotations

import contextlib
import gc
import hashlib
import threading
import time
import tracemalloc
from collections.abc import Iterator, Sequence
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from handler.errors import ConfigurationError, SourceReadError
from handler.locations.ranged import (
    MAX_RESUMES,
    READ_PIECE,
    ParallelRangeStream,
    RangeFetcher,
    ReadPlan,
)
from monitor.units import MiB


class Body:
    """A GetObject body over ``data[first:last + 1]`` that breaks after ``break_after``
    bytes (ConnectionResetError) when given."""

    def __init__(
        self, data: memoryview, first: int, last: int, break_after: int | None, fake: Any = None
    ) -> None:
        self._view = data[first : last + 1]
        self._position = 0
        self._break_after = break_after
        self._fake = fake

    def read(self, size: int) -> bytes:
        if self._break_after is not None and self._position >= self._break_after:
            raise ConnectionResetError("connection reset by peer")
        end = self._position + size
        if self._break_after is not None:
            end = min(end, self._break_after)
        chunk = bytes(self._view[self._position : end])
        self._position += len(chunk)
        if self._fake is not None:
            with self._fake.lock:
                self._fake.served += len(chunk)
        return chunk

    def close(self) -> None:
        self._view.release()


class FakeS3:
    """Ranged GETs of ``data``; ``breaks`` maps a first byte to where its body breaks,
    ``in_turn`` says where the n-th request's body breaks (None: it does not)."""

    def __init__(
        self,
        data: bytes,
        breaks: dict[int, int] | None = None,
        in_turn: Sequence[int | None] | None = None,
    ) -> None:
        self.view = memoryview(data)
        self.breaks = dict(breaks or {})
        self.in_turn = list(in_turn or [])
        self.asked: list[tuple[int, int]] = []
        self.served = 0
        self.lock = threading.Lock()

    def get_range(self, first: int, last: int) -> Any:
        with self.lock:
            self.asked.append((first, last))
            broken = self.breaks.pop(first, None)
            if self.in_turn:
                broken = self.in_turn.pop(0)
        return Body(self.view, first, last, broken, self)


def read_all(stream: ParallelRangeStream, size: int = 1 * MiB) -> bytes:
    out = bytearray()
    while chunk := stream.read(size):
        out += chunk
    return bytes(out)


def test_the_read_ahead_in_memory_stays_under_its_byte_bound() -> None:
    data = hashlib.shake_256(b"bound").digest(64 * MiB)
    fake = FakeS3(data)
    plan = ReadPlan(connections=2, read_ahead=8 * MiB, range_size=2 * MiB)
    digest = hashlib.sha256()
    gc.collect()
    tracemalloc.start()
    try:
        stream = ParallelRangeStream(
            RangeFetcher("s3://b/k", len(data), fake.get_range), len(data), plan
        )
        while chunk := stream.read(256 * 1024):
            digest.update(chunk)
        stream.close()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    print(f"64 MiB read through an 8 MiB read-ahead: traced peak {peak} B")
    assert digest.digest() == hashlib.sha256(data).digest()
    assert stream.peak_held <= 8 * MiB
    # the ranges, each connection's piece being copied in, the reads' copies out and 2 MiB
    # for what else runs in this process
    assert peak <= 8 * MiB + 2 * READ_PIECE + 2 * MiB


def test_a_broken_range_resumes_from_the_byte_it_reached() -> None:
    data = hashlib.shake_256(b"resume").digest(10 * MiB)
    fake = FakeS3(data, breaks={4 * MiB: 3 * MiB + 5})
    fetcher = RangeFetcher("s3://b/k", len(data), fake.get_range)
    plan = ReadPlan(connections=2, read_ahead=8 * MiB, range_size=4 * MiB)
    stream = ParallelRangeStream(fetcher, len(data), plan)
    assert read_all(stream) == data
    stream.close()
    assert (7 * MiB + 5, 8 * MiB - 1) in fake.asked  # from the byte reached, to the range's end
    # the head range, the ramp's 3 (to 1, 2 and 4 MiB), 2 whole ranges, a resume
    assert fetcher.resumes == 1 and fetcher.requests == 7


def test_a_range_that_never_completes_names_the_offset() -> None:
    data = bytes(3 * MiB)
    fetcher = RangeFetcher(
        "s3://b/k", len(data), lambda first, last: Body(memoryview(data), first, last, 0)
    )
    with pytest.raises(
        SourceReadError,
        match=r"s3://b/k: reading stopped at byte 1048576 of 3145728 after 5 resumes",
    ):
        fetcher.fetch(1 * MiB, 1 * MiB)


@settings(max_examples=100, deadline=None)
@given(
    size=st.integers(0, 100_000),
    range_size=st.integers(1_000, 40_000),
    window=st.integers(1, 5),
    connections=st.integers(1, 4),
    read_size=st.integers(100, 50_000),
    breaks=st.lists(st.integers(0, 40_000), max_size=5),
)
def test_any_plan_and_any_breaks_give_the_object_in_order(
    size: int,
    range_size: int,
    window: int,
    connections: int,
    read_size: int,
    breaks: list[int],
) -> None:
    # the first len(breaks) requests break (ConnectionResetError) after so many bytes
    data = hashlib.shake_256(b"order").digest(size) if size else b""
    fake = FakeS3(data, in_turn=breaks)
    plan = ReadPlan(connections=connections, read_ahead=window * range_size, range_size=range_size)
    stream = ParallelRangeStream(RangeFetcher("s3://b/k", size, fake.get_range), size, plan)
    try:
        assert read_all(stream, read_size) == data
        assert stream.peak_held <= plan.read_ahead
        assert fake.served == size  # each resume from the byte reached: nothing sent twice
    finally:
        stream.close()


def test_the_settings_are_checked() -> None:
    assert ReadPlan.from_env({}) == ReadPlan(4, 32 * MiB, 8 * MiB)
    # 3 MiB is read in 4 ranges (256 KiB, to 1, 2 and 3 MiB), one connection each
    assert ReadPlan().bytes_held(3 * MiB) == 8 * MiB + 4 * READ_PIECE
    assert ReadPlan().bytes_held(100) == 8 * MiB + READ_PIECE
    assert ReadPlan.from_env({"TMPWARDEN_SOURCE_CONNECTIONS": "8"}).read_ahead == 64 * MiB
    small = ReadPlan.from_env({"TMPWARDEN_READ_AHEAD_MIB": "2"})
    assert (small.read_ahead, small.range_size, small.window) == (2 * MiB, 2 * MiB, 1)
    for bad in (
        {"TMPWARDEN_SOURCE_CONNECTIONS": "0"},
        {"TMPWARDEN_SOURCE_CONNECTIONS": "x"},
        {"TMPWARDEN_READ_AHEAD_MIB": "0.5"},
    ):
        with pytest.raises(ConfigurationError, match="TMPWARDEN_"):
            ReadPlan.from_env(bad)


def _asked_at_least(fake: FakeS3, count: int, timeout: float = 3.0) -> int:
    """The GETs asked once ``count`` were (or ``timeout`` seconds passed)."""
    deadline = time.monotonic() + timeout
    while len(fake.asked) < count and time.monotonic() < deadline:
        time.sleep(0.01)
    return len(fake.asked)


@pytest.mark.parametrize("size", [3 * MiB, 8 * MiB, 64 * MiB])
def test_an_object_of_one_range_size_is_read_ahead_as_a_larger_one(size: int) -> None:
    # the ramp cuts even one range_size into 5 ranges (256 KiB, to 1, 2, 4, 8 MiB): the
    # window counted whole range_sizes (1 for 8 MiB), so each small range waited for the
    # one before it to be read whole, one first-byte latency each with no overlap
    data = hashlib.shake_256(b"small").digest(size)
    fake = FakeS3(data)
    stream = ParallelRangeStream(RangeFetcher("s3://b/k", size, fake.get_range), size, ReadPlan())
    try:
        head = stream.read(READ_PIECE)
        head += stream.read(1)  # into the second range: the read-ahead opens
        asked = _asked_at_least(fake, 3)
        print(f"{size} B object, reading its second range: {asked} GETs asked")
        assert asked >= 3  # the head, the range being read, one fetched ahead at least
        assert head + read_all(stream) == data
    finally:
        stream.close()


def _range_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("tmpwarden-range")]


@contextlib.contextmanager
def _traced_without_gc() -> Iterator[None]:
    """tracemalloc on and the cycle collector off inside: what is still traced when the
    block reads it is held by references alone, not waiting for a gc."""
    gc.collect()
    gc.disable()
    tracemalloc.start()
    try:
        yield
    finally:
        tracemalloc.stop()
        gc.enable()
        gc.collect()


def test_a_stream_dropped_unclosed_frees_its_ranges_and_threads_without_a_gc() -> None:
    # a fetch's done-callback held the stream (future -> bound method -> stream -> future):
    # an unclosed stream dropped on an error path kept its ranges and threads until a gc
    data = bytes(16 * MiB)
    fake = FakeS3(data)
    with _traced_without_gc():
        stream = ParallelRangeStream(
            RangeFetcher("s3://b/k", len(data), fake.get_range), len(data), ReadPlan()
        )
        stream.read(READ_PIECE)
        stream.read(10)  # into the second range: the read-ahead opens
        _asked_at_least(fake, 4)
        del stream
        deadline = time.monotonic() + 3
        while _range_threads() and time.monotonic() < deadline:
            time.sleep(0.01)
        held, _ = tracemalloc.get_traced_memory()
        threads = len(_range_threads())
    print(f"dropped unclosed, no gc: {held} B traced, {threads} range threads")
    assert held < READ_PIECE
    assert threads == 0


def test_a_failed_range_keeps_no_buffer_after_close_without_a_gc() -> None:
    # the reader's frame held the range's future, which held the error, whose traceback
    # held the frame: the range's buffer (768 KiB here) stayed until a gc
    data = bytes(4 * MiB)
    fake = FakeS3(data, in_turn=[None, 100] + [0] * MAX_RESUMES)
    with _traced_without_gc():
        stream = ParallelRangeStream(
            RangeFetcher("s3://b/k", len(data), fake.get_range), len(data), ReadPlan()
        )
        assert stream.read(READ_PIECE) == data[:READ_PIECE]
        assert stream.read(100) == data[READ_PIECE : READ_PIECE + 100]  # before the break
        with pytest.raises(SourceReadError, match=f"stopped at byte {READ_PIECE + 100} "):
            stream.read(READ_PIECE)
        stream.close()
        del stream
        held, _ = tracemalloc.get_traced_memory()
    print(f"a failed range, closed, no gc: {held} B traced")
    assert held < READ_PIECE
