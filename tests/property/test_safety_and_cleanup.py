"""Properties: names never escape; cleanup leaves nothing, wherever the body fails."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from handler.archive.safety import check_link_target, safe_name
from handler.errors import ExtractionError
from handler.storage import CleanupContext

names = st.text(alphabet="ab./\\:\x00.. ", max_size=24)


@given(raw=names)
def test_a_safe_name_always_stays_inside_the_destination(raw: str) -> None:
    try:
        name = safe_name("archive", raw)
    except ExtractionError as exc:
        assert exc.member == raw
        return
    root = Path("/dest")
    resolved = (root / name).resolve()
    assert resolved == root or root in resolved.parents
    assert ".." not in name.split("/") and not name.startswith("/")


@given(member=st.text(alphabet="ab/.", min_size=1, max_size=12), target=names)
def test_an_accepted_link_target_stays_inside(member: str, target: str) -> None:
    try:
        member_name = safe_name("archive", member)
        resolved = check_link_target("archive", member_name, target)
    except ExtractionError:
        return
    assert not resolved.startswith("../") and resolved != ".."


class Boom(Exception):
    pass


step = st.sampled_from(["dir", "file", "nested", "register-file"])


@given(steps=st.lists(step, min_size=1, max_size=15), fail_at=st.integers(0, 15))
def test_property_4_cleanup_completeness(steps: list[str], fail_at: int) -> None:
    """Property 4: CleanupContext leaves nothing when its body raises at any point."""
    with tempfile.TemporaryDirectory() as work:
        root = Path(work)
        created: list[Path] = []
        with pytest.raises(Boom), CleanupContext() as cleanup:
            for index, kind in enumerate(steps):
                if index == fail_at:
                    raise Boom
                target = root / f"p{index}"
                if kind == "dir":
                    cleanup.register_cleanup(target).mkdir()
                elif kind == "nested":
                    cleanup.register_cleanup(target)
                    (target / "a" / "b").mkdir(parents=True)
                    (target / "a" / "b" / "f").write_bytes(b"x" * index)
                elif kind == "file":
                    cleanup.register_cleanup(target).write_bytes(b"data")
                else:
                    target.write_bytes(b"late")
                    cleanup.register_cleanup(target)
                created.append(target)
            raise Boom
        assert list(root.iterdir()) == []
