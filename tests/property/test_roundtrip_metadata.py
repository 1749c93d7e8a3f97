"""Property 2, beyond bytes: modes, empty directories and links survive packaging.

``test_roundtrip.py`` shows names and bytes for file trees of every format and level;
this adds what a file tree alone does not have: permission bits, directories (empty
ones too), symbolic links and tar hard links, through both strategies.
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
from hypothesis import given
from hypothesis import strategies as st

from handler.packaging import PackageResult
from tests.helpers import FIXED_MTIME, extract_locally, stream_locally

Kind = Literal["file", "dir", "symlink", "hardlink"]
TAR_MODES = {"tar": "w", "tar.gz": "w:gz", "tar.bz2": "w:bz2", "tar.xz": "w:xz"}
FILE_MODES = (0o644, 0o600, 0o755, 0o700, 0o640, 0o666, 0o444, 0o750)
"""Owner-readable: the extract strategy makes every file so (README: it is read back)."""
DIR_MODES = (0o755, 0o700, 0o750, 0o775)


@dataclass(frozen=True)
class Entry:
    kind: Kind
    name: str
    mode: int = 0o644
    data: bytes = b""
    target: str = ""


@st.composite
def trees(draw: st.DrawFn, fmt: str) -> list[Entry]:
    entries: list[Entry] = []
    kinds: dict[str, Kind] = {}
    choices: list[Kind] = ["file", "file", "dir", "symlink"]
    if fmt != "zip":  # ZIP has no hard links
        choices.append("hardlink")
    for _ in range(draw(st.integers(1, 8))):
        parts = draw(st.lists(st.sampled_from(["a", "b", "c.txt", "d"]), min_size=1, max_size=3))
        name = "/".join(parts)
        ancestors = ["/".join(parts[:i]) for i in range(1, len(parts))]
        if name in kinds or any(kinds.get(a, "dir") != "dir" for a in ancestors):
            continue
        kind = draw(st.sampled_from(choices))
        files = sorted(n for n, k in kinds.items() if k == "file")
        if kind in ("symlink", "hardlink") and not files:
            kind = "file"
        if kind == "file":
            entry = Entry(
                kind, name, draw(st.sampled_from(FILE_MODES)), draw(st.binary(max_size=64))
            )
        elif kind == "dir":
            entry = Entry(kind, name, draw(st.sampled_from(DIR_MODES)))
        else:
            target = draw(st.sampled_from(files))
            if kind == "symlink":
                target = posixpath.relpath(target, posixpath.dirname(name) or ".")
            entry = Entry(kind, name, 0o777, target=target)
        entries.append(entry)
        kinds[name] = kind
        for ancestor in ancestors:
            kinds.setdefault(ancestor, "dir")
    return entries


def _build(path: Path, entries: list[Entry], fmt: str) -> None:
    if fmt == "zip":
        types = {"file": stat.S_IFREG, "dir": stat.S_IFDIR, "symlink": stat.S_IFLNK}
        with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            for e in entries:
                info = zipfile.ZipInfo(
                    e.name + ("/" if e.kind == "dir" else ""), (2023, 11, 14, 22, 13, 20)
                )
                info.create_system = 3
                info.external_attr = (types[e.kind] | e.mode) << 16
                archive.writestr(info, e.target.encode() if e.kind == "symlink" else e.data)
        return
    types_tar = {
        "file": tarfile.REGTYPE,
        "dir": tarfile.DIRTYPE,
        "symlink": tarfile.SYMTYPE,
        "hardlink": tarfile.LNKTYPE,
    }
    with tarfile.open(path, TAR_MODES[fmt]) as tar:  # type: ignore[call-overload]
        for e in entries:
            member = tarfile.TarInfo(e.name)
            member.type = types_tar[e.kind]
            member.mode = e.mode
            member.mtime = FIXED_MTIME
            member.linkname = e.target
            member.size = len(e.data)
            tar.addfile(member, io.BytesIO(e.data))


Runner = Callable[[Path, Path, Path], PackageResult]


_stream = stream_locally
_extract = extract_locally


@given(data=st.data(), fmt=st.sampled_from(["tar", "tar.gz", "tar.bz2", "tar.xz", "zip"]))
@pytest.mark.parametrize("strategy", [_stream, _extract], ids=["stream", "extract"])
def test_property_2_round_trip_keeps_modes_directories_and_links(
    strategy: Runner, data: st.DataObject, fmt: str
) -> None:
    """Property 2: any tree of files (any permission bits), directories, symbolic links
    and hard links, in any source format, comes out of either strategy with the same
    names, bytes, modes, directories and links (a hard link as a relative link)."""
    entries = data.draw(trees(fmt))
    with tempfile.TemporaryDirectory() as work:
        root = Path(work)
        archive = root / f"in.{fmt}"
        _build(archive, entries, fmt)
        (root / "scratch").mkdir()
        strategy(archive, root / "out.zip", root / "scratch")
        with zipfile.ZipFile(root / "out.zip") as out:
            got: dict[str, tuple[object, ...]] = {}
            directories: dict[str, int] = {}
            for info in out.infolist():
                mode = info.external_attr >> 16
                if info.is_dir():
                    directories[info.filename.rstrip("/")] = stat.S_IMODE(mode)
                elif stat.S_ISLNK(mode):
                    got[info.filename] = ("symlink", out.read(info))
                else:
                    got[info.filename] = ("file", out.read(info), stat.S_IMODE(mode))
    expected: dict[str, tuple[object, ...]] = {}
    for e in entries:
        if e.kind == "file":
            expected[e.name] = ("file", e.data, e.mode)
        elif e.kind == "symlink":
            expected[e.name] = ("symlink", e.target.encode())
        elif e.kind == "hardlink":
            relative = posixpath.relpath(e.target, posixpath.dirname(e.name) or ".")
            expected[e.name] = ("symlink", relative.encode())
    assert got == expected
    explicit = {e.name: e.mode for e in entries if e.kind == "dir"}
    assert {name: directories.get(name) for name in explicit} == explicit
    names = [e.name for e in entries]
    implied = {"/".join(n.split("/")[:i]) for n in names for i in range(1, n.count("/") + 1)}
    assert set(directories) <= set(explicit) | implied
