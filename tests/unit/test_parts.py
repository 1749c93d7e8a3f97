"""PartCutter: multipart-upload parts in stream order, one held part patched before it goes."""

from __future__ import annotations

import pytest

from handler.locations.parts import Part, PartCutter


def cutter(size: int = 10) -> PartCutter:
    return PartCutter(lambda _number: size)


def test_parts_are_cut_at_the_part_size_and_numbered_in_order() -> None:
    parts = cutter().write(b"a" * 25)
    assert parts == [Part(1, b"a" * 10), Part(2, b"a" * 10)]


def test_growing_part_sizes_are_asked_per_part_number() -> None:
    growing = PartCutter(lambda number: 4 * number)
    assert [len(p.data) for p in growing.write(bytes(30))] == [4, 8, 12]


def test_the_held_part_goes_after_later_parts_with_its_patch() -> None:
    parts = cutter()
    assert parts.write(b"0123") == []
    parts.hold(4, 3)
    ready = parts.write(b"HHH" + b"d" * 30)
    assert [p.number for p in ready] == [2, 3]  # part 1 (holding offset 4) is kept back
    assert parts.patch(4, b"xyz") == [Part(1, b"0123xyzddd")]
    assert parts.close() == [Part(4, b"d" * 7)]


def test_a_held_range_is_never_split_between_parts() -> None:
    parts = cutter()
    parts.write(b"12345678")
    parts.hold(8, 5)  # would straddle the boundary at 10
    assert parts.write(b"HHHHH" + b"t" * 12) == [Part(2, b"t" * 10)]
    assert parts.patch(8, b"abcde") == [Part(1, b"12345678abcde")]
    assert parts.close() == [Part(3, b"tt")]


def test_a_range_patched_before_its_part_is_cut_is_patched_in_the_buffer() -> None:
    parts = cutter()
    parts.hold(0, 2)
    parts.write(b"HH--")
    assert parts.patch(0, b"ok") == []
    assert parts.write(b"a" * 6) == [Part(1, b"ok--aaaaaa")]


def test_misuse_is_refused() -> None:
    parts = cutter()
    parts.write(b"x" * 12)  # part 1 (offsets 0-9) is cut
    with pytest.raises(ValueError, match="already cut"):
        parts.hold(5, 2)
    parts.hold(12, 2)
    with pytest.raises(ValueError, match="already held"):
        parts.hold(13, 1)
    with pytest.raises(ValueError, match="not written yet"):
        parts.patch(12, b"ab")
    parts.write(b"HH")
    with pytest.raises(ValueError, match="not the held range"):
        parts.patch(12, b"abc")
    with pytest.raises(ValueError, match="never patched"):
        parts.close()


def test_an_empty_stream_is_one_empty_part() -> None:
    assert cutter().close() == [Part(1, b"")]


def test_a_stream_ending_on_a_part_boundary_adds_no_empty_part() -> None:
    parts = cutter()
    assert len(parts.write(b"z" * 20)) == 2
    assert parts.close() == []
    assert parts.position == 20
