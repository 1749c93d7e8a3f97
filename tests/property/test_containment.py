"""Property 5: hostile names and links never write outside the destination.

Absolute names point into a canary directory beside the work area (``@ROOT@`` below), and
``..`` chains are at most a few deep, so an escape, were there one, lands where the test
sees it instead of in the machine's own directories.
"""

from __future__ import annotations

import io
import posixpath
import stat
import tarfile
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pytest
from hypothesis import event, example, given
from hypothesis import strategies as st

from handler.errors import ExtractionError
from tests.helpers import FIXED_MTIME, extract_locally, listing, stream_locally

Kind = Literal["file", "dir", "symlink", "hardlink"]
ROOT = "@ROOT@"
MAX_LINK_DEPTH = 40


@dataclass(frozen=True)
class Spec:
    """One member as written into the archive, before any tool cleans its name."""

    kind: Kind
    name: str
    target: str = ""


component = st.sampled_from(["a", "b", "c", "..", ".", ""])
relative_names = st.lists(component, min_size=1, max_size=3).map("/".join)
plain_names = st.lists(st.sampled_from(["a", "b", "c"]), min_size=1, max_size=3).map("/".join)
hostile_names = st.one_of(
    relative_names,
    relative_names.map(lambda n: "/" + n),
    relative_names.map(lambda n: f"{ROOT}/outside/{n}"),
)
targets = st.one_of(
    plain_names,
    relative_names,
    st.sampled_from(["..", "../..", "../../..", "a/../..", "/etc", f"{ROOT}/outside"]),
    relative_names.map(lambda n: f"{ROOT}/outside/{n}"),
)
kinds = st.sampled_from(["file", "dir", "symlink", "hardlink", "file", "symlink"])


def _spec(kind: Kind, name: str, target: str) -> Spec:
    return Spec(kind, name, target if kind in ("symlink", "hardlink") else "")


def _insert(members: list[Spec], extra: Spec | None, at: int) -> list[Spec]:
    return members if extra is None else [*members[:at], extra, *members[at:]]


specs = st.builds(
    _insert,
    st.lists(st.builds(_spec, kinds, plain_names, targets), min_size=1, max_size=6),
    st.none() | st.builds(_spec, kinds, hostile_names, targets),
    st.integers(0, 6),
)
"""Members with plain names whose links may point anywhere, and maybe one hostile name."""


def _build_tar(path: Path, members: list[Spec]) -> None:
    types = {
        "file": tarfile.REGTYPE,
        "dir": tarfile.DIRTYPE,
        "symlink": tarfile.SYMTYPE,
        "hardlink": tarfile.LNKTYPE,
    }
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        for spec in members:
            info = tarfile.TarInfo(spec.name)
            info.type = types[spec.kind]
            info.linkname = spec.target
            info.mtime = FIXED_MTIME
            info.mode = 0o755 if spec.kind == "dir" else 0o644
            data = f"data of {spec.name}".encode() if spec.kind == "file" else b""
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def _build_zip(path: Path, members: list[Spec]) -> None:
    modes = {"file": stat.S_IFREG | 0o644, "dir": stat.S_IFDIR | 0o755}
    with zipfile.ZipFile(path, "w") as archive:
        for spec in members:
            if spec.kind == "hardlink":  # ZIP has no hard links
                continue
            name = (
                spec.name + "/" if spec.kind == "dir" and not spec.name.endswith("/") else spec.name
            )
            info = zipfile.ZipInfo(name, (2023, 11, 14, 22, 13, 20))
            info.create_system = 3
            info.external_attr = modes.get(spec.kind, stat.S_IFLNK | 0o777) << 16
            data = spec.target if spec.kind == "symlink" else f"data of {spec.name}"
            archive.writestr(info, "" if spec.kind == "dir" else data)


class _Loop(Exception):
    """ELOOP: the lookup ends with an error, so it reaches nothing, inside or out."""


def _resolve(
    links: dict[str, str], parts: list[str], target: str, budget: list[int] | None = None
) -> list[str] | None:
    """Where ``target``, followed from the directory ``parts`` through the ZIP's own links
    the way a filesystem follows them, ends up; None when it leaves the extraction root.
    Like the kernel, give up after MAX_LINK_DEPTH links: the whole lookup fails (ELOOP)
    and resolves nowhere, which :func:`_contained` counts as contained."""
    budget = [MAX_LINK_DEPTH] if budget is None else budget
    if target.startswith("/"):
        return None
    walked = list(parts)
    for piece in target.split("/"):
        if piece in ("", "."):
            continue
        if piece == "..":
            if not walked:
                return None
            walked.pop()
            continue
        walked.append(piece)
        here = "/".join(walked)
        if here in links:
            budget[0] -= 1
            if budget[0] < 0:
                raise _Loop(here)
            resolved = _resolve(links, walked[:-1], links[here], budget)
            if resolved is None:
                return None
            walked = resolved
    return walked


def _assert_zip_is_contained(path: Path) -> None:
    with zipfile.ZipFile(path) as archive:
        infos = archive.infolist()
        links = {
            i.filename: archive.read(i).decode()
            for i in infos
            if stat.S_ISLNK(i.external_attr >> 16)
        }
    for info in infos:
        name = info.filename.rstrip("/")
        assert not name.startswith("/") and ".." not in name.split("/"), name
        parent = posixpath.dirname(name)
        while parent:
            assert parent not in links, f"{name} is written through the link {parent}"
            parent = posixpath.dirname(parent)
    for name, target in links.items():
        directory = [p for p in posixpath.dirname(name).split("/") if p]
        assert _contained(links, directory, target), (name, target)


def _contained(links: dict[str, str], directory: list[str], target: str) -> bool:
    try:
        return _resolve(links, directory, target) is not None
    except _Loop:  # b/a -> a/../.. resolves through itself: ELOOP, nothing is reached
        return True


Runner = Callable[[Path, Path, Path], object]


_stream = stream_locally
_extract = extract_locally


@pytest.mark.filterwarnings("ignore:Duplicate name")  # duplicates are part of the hostility
@given(members=specs, fmt=st.sampled_from(["tar", "zip"]))
# Found by this property: a directory listed twice failed the stream strategy with
# CompressionError; a hard link's unsafe target was refused naming the target as the
# member; a ZIP member with an empty name raised IndexError.
@example(members=[Spec("dir", "a"), Spec("dir", "a")], fmt="tar")
@example(members=[Spec("hardlink", "a", f"{ROOT}/outside/a")], fmt="tar")
@example(members=[Spec("file", "")], fmt="zip")
@example(members=[Spec("symlink", "b/a", "a/../..")], fmt="zip")
@pytest.mark.parametrize("strategy", [_stream, _extract], ids=["stream", "extract"])
def test_property_5_containment(strategy: Runner, members: list[Spec], fmt: str) -> None:
    """Property 5: for any archive of hostile names and links, nothing is written outside
    the destination, and every refusal is one ExtractionError naming the member."""
    with tempfile.TemporaryDirectory() as work:
        root = Path(work)
        placed = [
            Spec(m.kind, m.name.replace(ROOT, work), m.target.replace(ROOT, work)) for m in members
        ]
        (root / "outside").mkdir()
        (root / "outside" / "canary").write_bytes(b"canary")
        scratch = root / "w1" / "w2" / "w3" / "scratch"
        scratch.mkdir(parents=True)
        out_dir = root / "w1" / "w2" / "w3" / "out"
        out_dir.mkdir()
        archive = root / f"in.{fmt}"
        (_build_tar if fmt == "tar" else _build_zip)(archive, placed)
        before = listing(root)
        out = out_dir / "out.zip"
        try:
            strategy(archive, out, scratch)
        except ExtractionError as exc:
            # named as written, or as cleaned ("a/." is "a")
            named = {m.name.rstrip("/") for m in placed}
            named |= {"/".join(p for p in n.split("/") if p not in ("", ".")) for n in named}
            assert exc.member is not None and exc.member.rstrip("/") in named, str(exc)
            assert str(exc).count("\n") == 0
            assert not out.exists()
            event("refused")
        else:
            _assert_zip_is_contained(out)
            out.unlink()
            event("packaged")
        assert listing(root) == before
        assert (root / "outside" / "canary").read_bytes() == b"canary"
