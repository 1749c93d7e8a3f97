"""Only names tmpwarden made are taken for its leftovers (guards the review of issue 8's
fixes: `tmpwarden-extract-mine` and `.out.zip.0123abcd.tmpwarden-partial`, a user's
directory and source, were removed for their names alone)."""

from __future__ import annotations

import re
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from handler.locations.leftovers import (
    PARTIAL_SUFFIX,
    _check,  # the value under test
    is_partial_name,
    is_scratch_name,
    partial_name,
    scratch_name,
)
from handler.strategies import SCRATCH_PREFIX

file_names = st.text(
    st.characters(exclude_categories=["Cs"], exclude_characters="/\0"), min_size=1
).filter(lambda name: name not in (".", ".."))
hex_token = st.text("0123456789abcdef", min_size=8, max_size=8)


@settings(max_examples=200)
@given(final=file_names, other=file_names)
def test_a_made_name_is_recognised_only_for_its_own_destination(final: str, other: str) -> None:
    made = partial_name(Path(final))
    assert is_partial_name(Path(final), made)
    assert is_partial_name(Path(other), made) == (other == final)
    assert is_scratch_name(SCRATCH_PREFIX, scratch_name(SCRATCH_PREFIX))


@settings(max_examples=200)
@given(final=file_names, random_part=hex_token, check=hex_token, mine=file_names)
def test_names_a_user_could_write_are_not_taken_for_leftovers(
    final: str, random_part: str, check: str, mine: str
) -> None:
    """A hand-made token counts only with its check value (one in 2**32 by chance); the
    shape before checks (8 hex digits) and any other name never."""
    token = f"{random_part}-{check}"
    partial = f".{final}.{token}{PARTIAL_SUFFIX}"
    assert is_partial_name(Path(final), partial) == (check == _check(final, random_part))
    scratch = f"{SCRATCH_PREFIX}{token}"
    assert is_scratch_name(SCRATCH_PREFIX, scratch) == (
        check == _check(SCRATCH_PREFIX, random_part)
    )
    assert not is_partial_name(Path(final), f".{final}.{random_part}{PARTIAL_SUFFIX}")
    assert not is_scratch_name(SCRATCH_PREFIX, f"{SCRATCH_PREFIX}{random_part}")
    if not re.fullmatch("[0-9a-f]{8}-[0-9a-f]{8}", mine):
        assert not is_scratch_name(SCRATCH_PREFIX, f"{SCRATCH_PREFIX}{mine}")
