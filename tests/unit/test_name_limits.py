"""Names and link targets no destination can represent are refused up front, each with its
own advice (issue 8 review: a 64 KB tar name took 1 GB to inspect, one over 65,535 bytes
exited 70 with ``ushort format requires 0 <= number <= 65535``, and the extract strategy
surfaced a raw ``[Errno 36] File name too long``; tar link targets over 4 KiB were
accepted while ZIP ones were refused)."""

from __future__ import annotations

import io
import stat
import tarfile
import zipfile
from pathlib import Path

import pytest

from handler.archive import StreamingExtractor
from handler.archive.safety import MAX_COMPONENT_BYTES, MAX_PATH_BYTES, safe_name
from handler.cli.main import main
from handler.errors import ExtractionError
from handler.events import StrategyChoice, Target
from handler.packaging import package_target
from handler.settings import HandlerSettings
from tests.helpers import tar_info, tar_with


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), out=out, err=err)
    return code, out.getvalue(), err.getvalue()


def deep(size: int) -> str:
    """A name of exactly ``size`` bytes: ``d/d/.../x`` (``xy`` at the end when even)."""
    leaf = "x" if size % 2 else "xy"
    name = "d/" * ((size - len(leaf)) // 2) + leaf
    assert len(name) == size
    return name


def one_member(path: Path, name: str, fmt: str) -> Path:
    if fmt == "tar":
        return tar_with(path, [(tar_info(name), b"x")])
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(name, b"x")
    return path


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        (deep(MAX_PATH_BYTES + 1), "4,097 bytes long, over the 4,096 bytes"),
        (deep(64_002), "64,002 bytes long, over the 4,096 bytes"),
        ("a/" + "y" * 256, "a part of the name is 256 bytes long, over the 255"),
        ("é" * 128 + "/b", "a part of the name is 256 bytes long"),  # bytes, not letters
        ("é" * 2049, "4,098 bytes long"),
    ],
)
def test_names_over_path_max_or_name_max_are_refused(name: str, reason: str) -> None:
    with pytest.raises(ExtractionError, match=reason) as refused:
        safe_name("m.tar", name)
    advice = refused.value.advice
    assert ("255 bytes" in advice) == ("part of the name" in reason)
    assert "shorter paths" in advice or "255 bytes" in advice


@pytest.mark.parametrize(
    "name",
    [deep(MAX_PATH_BYTES), "a/" + "y" * MAX_COMPONENT_BYTES, "é" * 127 + "/" + "é" * 127],
)
def test_names_at_the_limits_are_kept(name: str) -> None:
    assert safe_name("m.tar", name) == name


@pytest.mark.parametrize(
    ("fmt", "name"), [("tar", deep(70_000)), ("tar", deep(64_000)), ("zip", deep(60_000))]
)
def test_the_cli_refuses_an_overlong_name_in_one_line(tmp_path: Path, fmt: str, name: str) -> None:
    archive = one_member(tmp_path / f"deep.{fmt}", name, fmt)
    for command in ("inspect", "package"):
        code, _, err = run(
            command, str(archive), *([str(tmp_path / "o.zip")] * (command == "package"))
        )
        assert code == 1, err
        assert err.startswith("error: ") and err.count("\n") == 1
        assert "bytes a path may have on Linux (PATH_MAX)" in err
    assert not (tmp_path / "o.zip").exists()


def symlink_archive(path: Path, target: str, fmt: str) -> Path:
    if fmt == "tar":
        return tar_with(path, [tar_info("link", tarfile.SYMTYPE, target)])
    with zipfile.ZipFile(path, "w") as archive:
        entry = zipfile.ZipInfo("link")
        entry.create_system = 3
        entry.external_attr = (stat.S_IFLNK | 0o777) << 16
        archive.writestr(entry, target.encode())
    return path


@pytest.mark.parametrize("fmt", ["tar", "zip"])
def test_link_targets_have_one_limit_in_every_format(tmp_path: Path, fmt: str) -> None:
    longest = deep(MAX_PATH_BYTES)
    info = StreamingExtractor().get_archive_info(symlink_archive(tmp_path / "ok", longest, fmt))
    assert [m.link_target for m in info.members] == [longest]
    too_long = symlink_archive(tmp_path / "long", deep(MAX_PATH_BYTES + 2), fmt)
    with pytest.raises(ExtractionError) as refused:
        StreamingExtractor().get_archive_info(too_long)
    assert refused.value.reason == (
        "it is a symbolic link with a 4,098-byte target, over the 4,096 bytes Linux allows "
        "(PATH_MAX)"
    )
    assert refused.value.advice == "rebuild the archive with link targets of at most 4,096 bytes"


def test_a_name_too_long_for_the_scratch_directory_is_an_extraction_error(
    tmp_path: Path,
) -> None:
    """A legal name under a deep scratch directory passes PATH_MAX on disk: ENAMETOOLONG
    becomes one clear error naming the member and the stream strategy, never a raw OSError."""
    scratch = tmp_path.joinpath(*["s" * 250] * 8)  # about 2,000 bytes deep
    scratch.mkdir(parents=True)
    name = "/".join(["n" * 250] * 12) + "/w.bin"  # 3,018 bytes: a legal name
    archive = tar_with(tmp_path / "m.tar", [(tar_info(name), b"weights")])
    with pytest.raises(ExtractionError, match="ENAMETOOLONG") as refused:
        StreamingExtractor().extract_streaming(archive, scratch.with_name("direct"))
    assert refused.value.member == name
    assert "stream strategy" in refused.value.advice
    result = package_target(
        Target(str(archive), str(tmp_path / "m.zip")),
        HandlerSettings(scratch_dir=str(scratch), tmp_critical=0.99),
        choice=StrategyChoice.EXTRACT,
    )
    assert result.status == "failed"
    assert result.error is not None and result.error["type"] == "ExtractionError"
    assert "ENAMETOOLONG" in result.error["message"]
    assert "Errno 36" not in result.error["message"]
    assert list(scratch.iterdir()) == []
    stream = package_target(
        Target(str(archive), str(tmp_path / "m.zip")),
        HandlerSettings(scratch_dir=str(scratch), tmp_critical=0.99),
        choice=StrategyChoice.STREAM,
    )
    assert (stream.status, stream.error) == ("succeeded", None)
