"""Under ``auto``, members whose sampled start does not deflate are stored
(handler.zipwriter.method): the ZIP always reads back identical, and storing never makes
a member larger than deflating it by more than the sample's threshold allows."""

from __future__ import annotations

import io
import math
import random
from dataclasses import dataclass

from hypothesis import event, given, settings
from hypothesis import strategies as st

from handler.codec import fastest_deflate
from handler.zipwriter.method import STORE_RATIO
from handler.zipwriter.records import METHOD_STORED
from handler.zipwriter.zipper import BUFFER_LIMIT, IncrementalZipper
from monitor.units import KiB, MiB
from tests.streaming_readers import PartSink, zipfile_contents

BLOCK = 4 * KiB
PERIOD = 32  # blocks: a member repeats its mix every 128 KiB; the 1 MiB sample holds 8
SLACK = 64  # bytes: deflate's block headers where a member's mix ends mid-period


@dataclass(frozen=True)
class MemberSpec:
    random_blocks: int  # of every PERIOD blocks, how many are random bytes (the rest text)
    size: int
    seed: int

    def data(self) -> bytes:
        rng = random.Random(self.seed)
        text = b"".join(b'{"layer": %d, "scale": 0.02}\n' % i for i in range(200))
        blocks = [
            rng.randbytes(BLOCK) if i % PERIOD < self.random_blocks else text[:BLOCK]
            for i in range(math.ceil(self.size / BLOCK))
        ]
        return b"".join(blocks)[: self.size]


member_specs = st.builds(
    MemberSpec,
    random_blocks=st.sampled_from([0, 8, 16, 28, 31, 32]) | st.integers(0, PERIOD),
    size=st.integers(0, 64 * KiB) | st.integers(BUFFER_LIMIT + 1, BUFFER_LIMIT + 512 * KiB),
    seed=st.integers(0, 2**32 - 1),
)


def _zip(
    members: dict[str, bytes], compression: str, patched: bool
) -> tuple[bytes, dict[str, int]]:
    sink = PartSink(5 * MiB) if patched else io.BytesIO()
    with IncrementalZipper(sink, compression=compression, level=1) as zipper:  # type: ignore[arg-type]
        for name, data in members.items():
            zipper.add_stream(name, (data[i : i + MiB] for i in range(0, len(data), MiB)))
    sizes = {e.name: e.compressed_size for e in zipper.entries}
    methods = {e.name: e.method for e in zipper.entries}
    return sink.getvalue(), sizes | {f"{n}#method": m for n, m in methods.items()}


@settings(max_examples=100, deadline=None)
@given(specs=st.lists(member_specs, min_size=1, max_size=4), patched=st.booleans())
def test_auto_reads_back_and_storing_costs_at_most_the_threshold(
    specs: list[MemberSpec], patched: bool
) -> None:
    # GIVEN a random mix of random, compressible and striped members, small and large
    members = {f"m{i}.bin": spec.data() for i, spec in enumerate(specs)}
    # WHEN zipped under auto and under an explicit deflate at the same level
    auto, auto_info = _zip(members, "auto", patched)
    deflated, deflate_info = _zip(members, "deflate", patched)
    # THEN the auto ZIP reads back identical
    assert zipfile_contents(auto) == members
    for name, data in members.items():
        stored = auto_info[f"{name}#method"] == METHOD_STORED
        allowed = deflate_info[name]
        size_class = "large" if len(data) > BUFFER_LIMIT else "small"
        event(f"{size_class} {'stored' if stored else 'deflated'}")
        if stored and data:
            # stored only when the sample deflated to more than STORE_RATIO of itself
            allowed = math.ceil(deflate_info[name] / STORE_RATIO) + SLACK
        assert auto_info[name] <= allowed, (name, len(data), auto_info[name], deflate_info[name])
    assert len(auto) <= len(deflated) + sum(
        math.ceil(len(d) * (1 / STORE_RATIO - 1)) + SLACK for d in members.values()
    )


def test_fastest_deflate_is_what_the_property_compares_against() -> None:
    # the comparison above is fair only if auto's deflated members are deflate's bytes
    data = MemberSpec(4, BUFFER_LIMIT + 1000, 1).data()
    compressor = fastest_deflate(1)
    expected = compressor.compress(data) + compressor.flush()
    auto, _ = _zip({"a": data}, "auto", patched=False)
    assert expected in auto
