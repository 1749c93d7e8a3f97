"""Property: a name of valid UTF-8 text without control characters survives byte for byte,
from a tar (pax), a ZIP with the UTF-8 flag, or a ZIP with UTF-8 bytes and no flag (as
Info-ZIP zip writes on Linux) -- issue 8 item 2."""

from __future__ import annotations

import io
import tarfile
import tempfile
import zipfile
from pathlib import Path
from typing import Literal

from hypothesis import given, settings
from hypothesis import strategies as st

from handler.packaging import package
from tests.zipbytes import MADE_BY_UNIX, RawMember, write_raw_zip

SourceKind = Literal["tar", "zip-flagged", "zip-unflagged"]

component = st.text(
    # every character but controls (Cc), lone surrogates (Cs) and the separators
    alphabet=st.characters(blacklist_categories=("Cc", "Cs"), blacklist_characters="/\\"),
    min_size=1,
    max_size=12,
).filter(lambda part: part not in (".", ".."))


def no_drive_letter(name: str) -> bool:
    return not (len(name) >= 2 and name[1] == ":" and name[0].isalpha())


names = st.lists(component, min_size=1, max_size=4).map("/".join).filter(no_drive_letter)


def write_source(path: Path, kind: SourceKind, name: str) -> Path:
    if kind == "tar":
        with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
            info = tarfile.TarInfo(name)
            info.size = 4
            tar.addfile(info, io.BytesIO(b"data"))
    elif kind == "zip-flagged":
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr(name, b"data")
    else:
        write_raw_zip(path, [RawMember(name.encode(), b"data", system=MADE_BY_UNIX)])
    return path


@settings(max_examples=100, deadline=None)
@given(name=names, kind=st.sampled_from(["tar", "zip-flagged", "zip-unflagged"]))
def test_a_utf8_name_survives_byte_for_byte(name: str, kind: SourceKind) -> None:
    with tempfile.TemporaryDirectory() as work:
        source = write_source(Path(work) / "source", kind, name)
        out = Path(work) / "out.zip"
        package(source, out)
        with zipfile.ZipFile(out) as archive:
            (info,) = archive.infolist()
            flagged = bool(info.flag_bits & 0x800)
            raw = info.orig_filename.encode("utf-8" if flagged else "cp437")
            assert archive.read(info) == b"data"
        assert raw == name.encode("utf-8")
        assert info.filename == name
        assert flagged == (not name.isascii())
