"""The seekable S3 reader of ZIP sources (handler.locations.s3.S3RangeReader) over a fake
GetObject: any mix of seeks and reads gives the object's bytes, sequential reads go
through one window of parallel ranges, the memory it holds stays bounded, and a broken
body resumes from the byte reached."""

from __future__ import annotations

import gc
import hashlib
import io
import threading
import time
import tracemalloc
import zipfile
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from handler.locations.ranged import READ_PIECE, ReadPlan
from handler.locations.s3 import RANDOM_READ, S3RangeReader, S3Url
from monitor.units import KiB, MiB
from tests.unit.test_ranged import FakeS3


class FakeClient:
    """``get_object`` with a Range over :class:`FakeS3`; counts GETs in flight at once
    (a body is in flight until it is closed)."""

    def __init__(self, fake: FakeS3, size: int) -> None:
        self.fake = fake
        self.size = size
        self.lock = threading.Lock()
        self.open = 0
        self.most_open = 0
        self.latency = 0.0

    def get_object(self, **kwargs: Any) -> dict[str, Any]:
        assert kwargs["IfMatch"] == '"etag"'
        first, last = (int(x) for x in kwargs["Range"].removeprefix("bytes=").split("-"))
        last = min(last, self.size - 1)
        body = self.fake.get_range(first, last)
        with self.lock:
            self.open += 1
            self.most_open = max(self.most_open, self.open)
        time.sleep(self.latency)  # the first byte's latency
        return {"Body": Counted(self, body), "ContentRange": f"bytes {first}-{last}/{self.size}"}


class Counted:
    """A body that tells its client when it is closed."""

    def __init__(self, client: FakeClient, body: Any) -> None:
        self._client = client
        self._body = body

    def read(self, size: int) -> bytes:
        return bytes(self._body.read(size))

    def close(self) -> None:
        with self._client.lock:
            self._client.open -= 1
        self._body.close()


def reader(data: bytes, plan: ReadPlan, **breaks: Any) -> tuple[S3RangeReader, FakeClient]:
    client = FakeClient(FakeS3(data, **breaks), len(data))
    url = S3Url("bkt", "m.zip")
    return S3RangeReader(client, url, len(data), '"etag"', plan), client  # type: ignore[arg-type]


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 70 * KiB), st.integers(-1, 20 * KiB), st.booleans()),
        max_size=25,
    ),
    st.integers(1, 4),
)
def test_any_seeks_and_reads_give_the_objects_bytes(
    steps: list[tuple[int, int, bool]], connections: int
) -> None:
    data = hashlib.shake_256(b"random access").digest(64 * KiB + 7)
    plan = ReadPlan(connections, read_ahead=16 * KiB, range_size=4 * KiB)
    handle, _ = reader(data, plan)
    position = 0
    for offset, size, seek in steps:  # seek then read, or read on from where it is
        if seek:
            position = handle.seek(offset)
        got = handle.read(size)
        end = len(data) if size < 0 else min(position + size, len(data))
        assert got == data[position:end]
        position = max(position, end)
        assert handle.tell() == position
    handle.close()
    assert not [t for t in threading.enumerate() if t.name.startswith("tmpwarden-range")]


def test_a_member_read_in_order_goes_through_one_window_of_parallel_gets() -> None:
    member = hashlib.shake_256(b"member").digest(24 * MiB)
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_STORED) as out:
        out.writestr("config.json", b"{}")
        out.writestr("model.safetensors", member)
    data = archive.getvalue()
    plan = ReadPlan(connections=4, read_ahead=16 * MiB, range_size=4 * MiB)
    handle, client = reader(data, plan)
    client.latency = 0.02
    got = {}
    with zipfile.ZipFile(handle) as source:
        for info in source.infolist():
            with source.open(info) as stream:
                digest = hashlib.sha256()
                while chunk := stream.read(1 * MiB):
                    digest.update(chunk)
            got[info.filename] = digest.digest()
    handle.close()
    assert got == {
        n: hashlib.sha256(d).digest()
        for n, d in [("config.json", b"{}"), ("model.safetensors", member)]
    }
    served = client.fake.served
    print(f"{len(data)} B: {handle.requests} GETs, {handle.windows} windows, {served} B served")
    assert client.most_open >= 2  # several ranged GETs at once
    assert served <= len(data) + 1 * KiB  # the end records and central directory again
    assert handle.windows <= 3


def test_a_broken_body_in_the_window_resumes_from_the_byte_reached() -> None:
    data = hashlib.shake_256(b"break").digest(6 * MiB)
    plan = ReadPlan(connections=2, read_ahead=2 * MiB, range_size=1 * MiB)
    window = 100 + RANDOM_READ  # a read past the random read's bytes opens it there
    handle, client = reader(data, plan, breaks={window + 3 * MiB: 512 * KiB + 3})
    handle.seek(100)
    assert handle.read(10) == data[100:110]  # at random
    out = bytearray(handle.read(10))  # still in the random read's bytes
    while chunk := handle.read(300 * KiB):
        out += chunk
    handle.close()
    assert bytes(out) == data[110:]
    assert (window + 3 * MiB + 512 * KiB + 3, window + 4 * MiB - 1) in client.fake.asked
    assert client.fake.served == len(data) - 100  # no byte twice, the resume included


def test_a_large_member_read_in_order_holds_at_most_the_read_ahead() -> None:
    member = hashlib.shake_256(b"bound").digest(48 * MiB)
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_STORED) as out:
        out.writestr("model.safetensors", member)
    data = archive.getvalue()
    del archive
    plan = ReadPlan(connections=2, read_ahead=8 * MiB, range_size=2 * MiB)
    handle, _ = reader(data, plan)
    digest = hashlib.sha256()
    gc.collect()
    tracemalloc.start()
    try:
        with zipfile.ZipFile(handle) as source, source.open("model.safetensors") as stream:
            while chunk := stream.read(1 * MiB):
                digest.update(chunk)
        handle.close()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    print(f"48 MiB member through an 8 MiB read-ahead: traced peak {peak} B")
    assert digest.digest() == hashlib.sha256(member).digest()
    # the ranges, each connection's piece, a random read, the reads' copies out (zipfile's
    # and ours, 1 MiB each) and 3 MiB for what else runs in this process
    assert peak <= 8 * MiB + 2 * READ_PIECE + RANDOM_READ + 2 * MiB + 3 * MiB


class Unseekable(io.RawIOBase):
    """A write-only sink: zipfile then writes each member with a data descriptor."""

    def __init__(self) -> None:
        self.data = bytearray()

    def writable(self) -> bool:
        return True

    def write(self, b: Any) -> int:
        self.data += b
        return len(b)


def test_members_with_data_descriptors_are_read_through_one_window() -> None:
    sink = Unseekable()
    members = {f"shard-{i}.bin": hashlib.shake_256(bytes([i])).digest(3 * MiB) for i in range(4)}
    with zipfile.ZipFile(sink, "w", zipfile.ZIP_STORED) as out:
        for name, body in members.items():
            with out.open(name, "w") as member:
                member.write(body)
    data = bytes(sink.data)
    plan = ReadPlan(connections=4, read_ahead=4 * MiB, range_size=1 * MiB)
    handle, client = reader(data, plan)
    with zipfile.ZipFile(handle) as source:
        assert all(i.flag_bits & 0x08 for i in source.infolist())  # APPNOTE 4.3.9
        got = {i.filename: source.read(i) for i in source.infolist()}
    handle.close()
    print(f"{len(data)} B, 4 members: {handle.windows} windows, {client.fake.served} B served")
    assert got == members
    assert handle.windows == 1  # each descriptor's gap is skipped within the window
    assert client.fake.served <= len(data) + 1 * KiB
