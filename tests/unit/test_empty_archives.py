"""One rule for empty archives in every format (issue 8 item 10: an empty tar of 10,240 zero
bytes was "not a supported archive" while an empty tar.gz became an empty ZIP, because the
format sniffing read fewer bytes than its own rule looked at).

The rule (handler.archive.formats.is_empty_tar): a tar stream, plain or decompressed, whose first
whole 512-byte block is zeros is an empty archive, as GNU tar and bsdtar list it; one
shorter than a block is not a tar archive. An empty ZIP is its end record alone.
"""

from __future__ import annotations

import bz2
import gzip
import io
import json
import lzma
import shutil
import subprocess
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from handler.archive.formats import SNIFF_SIZE, detect_format
from handler.cli.main import main
from handler.events import StrategyChoice, Target
from handler.packaging import package_target
from handler.settings import HandlerSettings
from tests.helpers import ALL_FORMATS, ArchiveKind, build_archive

COMPRESS: dict[str, Callable[[bytes], bytes]] = {
    "tar": lambda data: data,
    "tar.gz": gzip.compress,
    "tar.bz2": bz2.compress,
    "tar.xz": lzma.compress,
}
SIZES = (512, 10_240)
"""A lone end-of-archive block, and a whole record of them (what ``tar cf`` writes)."""


def empty_archive(directory: Path, kind: ArchiveKind, size: int) -> Path:
    """An empty, well-formed archive: ``size`` zero bytes of tar (compressed as ``kind``
    says), or an empty ZIP (its end record, with a comment padding it to ``size``)."""
    path = directory / f"empty-{size}.{kind}"
    if kind == "zip":
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as archive:
            archive.comment = b"c" * (size - 22) if size > 512 else b""
        path.write_bytes(buffer.getvalue())
    else:
        path.write_bytes(COMPRESS[kind](bytes(size)))
    return path


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), out=out, err=err)
    return code, out.getvalue(), err.getvalue()


@pytest.mark.parametrize("tool", ["tar", "bsdtar"])
def test_the_inputs_are_empty_archives_to_gnu_tar_and_bsdtar(tmp_path: Path, tool: str) -> None:
    if shutil.which(tool) is None:
        pytest.skip(f"{tool} is not installed")
    for kind in COMPRESS:
        for size in SIZES:
            archive = empty_archive(tmp_path, kind, size)  # type: ignore[arg-type]
            listed = subprocess.run([tool, "-tf", str(archive)], capture_output=True, check=False)
            assert (listed.returncode, listed.stdout) == (0, b""), (kind, size, listed.stderr)


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("kind", ALL_FORMATS)
def test_an_empty_archive_packages_into_an_empty_zip_and_inspect_agrees(
    tmp_path: Path, kind: ArchiveKind, size: int
) -> None:
    archive = empty_archive(tmp_path, kind, size)
    dest = tmp_path / "out.zip"
    code, out, err = run("package", str(archive), str(dest), "--json")
    assert (code, err) == (0, "")
    assert json.loads(out)["files"] == 0
    with zipfile.ZipFile(dest) as written:
        assert written.infolist() == []
        assert written.testzip() is None
    code, out, err = run("inspect", str(archive), "--json")
    assert (code, err) == (0, "")
    listed = json.loads(out)
    assert (listed["format"], listed["files"], listed["members"]) == (kind, 0, [])


@pytest.mark.parametrize("strategy", [StrategyChoice.STREAM, StrategyChoice.EXTRACT])
@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("kind", ALL_FORMATS)
def test_both_strategies_treat_an_empty_archive_alike(
    tmp_path: Path, kind: ArchiveKind, size: int, strategy: StrategyChoice
) -> None:
    archive = empty_archive(tmp_path, kind, size)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    result = package_target(
        Target(str(archive), str(tmp_path / "out.zip")),
        HandlerSettings(scratch_dir=str(scratch), tmp_critical=0.99),
        choice=strategy,
    )
    assert (result.status, result.files, result.error) == ("succeeded", 0, None)
    assert zipfile.ZipFile(tmp_path / "out.zip").namelist() == []
    assert list(scratch.iterdir()) == []


@pytest.mark.parametrize("size", [0, 100, 511])
@pytest.mark.parametrize("kind", list(COMPRESS))
def test_less_than_one_tar_block_is_not_an_archive_in_any_tar_format(
    tmp_path: Path, kind: str, size: int
) -> None:
    path = tmp_path / f"short.{kind}"
    path.write_bytes(COMPRESS[kind](bytes(size)))
    code, _, err = run("package", str(path), str(tmp_path / "out.zip"))
    assert code != 0
    assert err.startswith("error: ") and err.count("\n") == 1
    assert "empty" in err or "no tar archive" in err or "not a supported archive" in err
    assert not (tmp_path / "out.zip").exists()


def archives() -> st.SearchStrategy[bytes]:
    """Every format, empty or holding a few small members."""
    names = st.lists(st.from_regex(r"[a-z]{1,8}(/[a-z]{1,8})?", fullmatch=True), max_size=3)
    kinds = st.sampled_from(ALL_FORMATS)
    return st.builds(_archive_bytes, kinds, names, st.sampled_from([*SIZES, 1024]))


def _archive_bytes(kind: ArchiveKind, names: list[str], empty_size: int) -> bytes:
    scratch = Path(tempfile.mkdtemp())
    try:
        if not names:
            return empty_archive(scratch, kind, empty_size).read_bytes()
        files = {name: name.encode() * 3 for name in dict.fromkeys(names)}
        return build_archive(scratch / f"a.{kind}", files, kind).read_bytes()
    finally:
        shutil.rmtree(scratch)


@settings(max_examples=100)
@given(archives())
def test_format_detection_needs_no_more_than_the_sniffed_bytes(data: bytes) -> None:
    """Whatever the format, the first SNIFF_SIZE bytes decide it: the rule never looks
    further than what the readers sniff."""
    assert detect_format(data[:SNIFF_SIZE], "a") is detect_format(data, "a")
