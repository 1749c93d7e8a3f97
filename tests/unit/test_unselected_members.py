"""Members ``--include`` leaves out are not refused for what only unpacking them would need
(issue 8 item 10: including only the regular files of an archive that also holds a device
file was refused for the device it would skip). See handler/archive/unpackable.py for the rule."""

from __future__ import annotations

import io
import stat
import struct
import tarfile
import zipfile
from pathlib import Path

import pytest

from handler.archive import StreamingExtractor
from handler.archive.safety import Limits
from handler.cli.main import main
from handler.errors import ExtractionError
from handler.events import StrategyChoice, Target
from handler.packaging import package_target
from handler.settings import HandlerSettings
from tests.helpers import read_zip, tar_info, tar_with

FILES = {"model/config.json": b'{"layers": 2}', "model/tokenizer.json": b'{"v": 1}'}


def device_tar(path: Path, *, device_name: str = "dev/null") -> Path:
    """Regular files beside a character device, a block device and a FIFO."""
    members: list[tarfile.TarInfo | tuple[tarfile.TarInfo, bytes]] = [
        (tar_info(name), data) for name, data in FILES.items()
    ]
    members += [
        tar_info(device_name, tarfile.CHRTYPE),
        tar_info("dev/sda", tarfile.BLKTYPE),
        tar_info("run/pipe", tarfile.FIFOTYPE),
    ]
    return tar_with(path, members)


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), out=out, err=err)
    return code, out.getvalue(), err.getvalue()


@pytest.mark.parametrize(
    "strategy", [StrategyChoice.STREAM, StrategyChoice.EXTRACT, StrategyChoice.AUTO]
)
def test_including_only_regular_files_passes_over_devices_and_fifos(
    tmp_path: Path, strategy: StrategyChoice
) -> None:
    archive = device_tar(tmp_path / "m.tar")
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    result = package_target(
        Target(str(archive), str(tmp_path / "m.zip"), include=("*.json",)),
        HandlerSettings(scratch_dir=str(scratch), tmp_critical=0.99),
        choice=strategy,
    )
    assert (result.status, result.error) == ("succeeded", None)
    assert read_zip(tmp_path / "m.zip") == FILES


def test_the_cli_packages_the_selection_and_lists_only_it(tmp_path: Path) -> None:
    archive = device_tar(tmp_path / "m.tar")
    code, _, err = run("package", str(archive), str(tmp_path / "m.zip"), "--include", "*.json")
    assert (code, err) == (0, "")
    assert read_zip(tmp_path / "m.zip") == FILES
    info = StreamingExtractor().get_archive_info(archive, ["*.json"])
    assert {m.name for m in info.members} == set(FILES)


@pytest.mark.parametrize(
    ("include", "culprit"), [((), "dev/null"), (("null",), "dev/null"), (("*",), "dev/null")]
)
def test_a_selected_device_is_still_refused(
    tmp_path: Path, include: tuple[str, ...], culprit: str
) -> None:
    archive = device_tar(tmp_path / "m.tar")
    with pytest.raises(ExtractionError, match="device file") as caught:
        StreamingExtractor().extract_streaming(archive, tmp_path / "out", patterns=include)
    assert caught.value.member == culprit
    code, _, err = run(
        "package",
        str(archive),
        str(tmp_path / "m.zip"),
        *(a for p in include for a in ("--include", p)),
    )
    assert code != 0 and "device file" in err and err.startswith("error: ")
    assert not (tmp_path / "m.zip").exists()


@pytest.mark.parametrize("name", ["../escape", "/dev/null", "a/../../b"])
def test_an_unselected_device_with_a_hostile_name_is_still_refused(
    tmp_path: Path, name: str
) -> None:
    archive = device_tar(tmp_path / "m.tar", device_name=name)
    with pytest.raises(ExtractionError, match=r"'\.\.'|absolute") as caught:
        StreamingExtractor().extract_streaming(archive, tmp_path / "out", patterns=["*.json"])
    assert caught.value.member == name


def test_unselected_members_still_count_towards_the_member_limit(tmp_path: Path) -> None:
    archive = device_tar(tmp_path / "m.tar")  # 2 files + 3 unpackable members
    limited = StreamingExtractor(limits=Limits(max_members=4))
    with pytest.raises(ExtractionError, match="more than 4 members"):
        limited.extract_streaming(archive, tmp_path / "out", patterns=["*.json"])


def patch_central_header(
    path: Path, name: str, *, flags: int = 0, method: int | None = None
) -> None:
    """Set flag bits or the compression method of ``name``'s central directory record."""
    data = bytearray(path.read_bytes())
    position = data.index(b"PK\x01\x02")
    while True:
        name_length = struct.unpack_from("<H", data, position + 28)[0]
        if data[position + 46 : position + 46 + name_length] == name.encode():
            break
        extra, comment = struct.unpack_from("<HH", data, position + 30)
        position = data.index(b"PK\x01\x02", position + 46 + name_length + extra + comment)
    struct.pack_into(
        "<H", data, position + 8, struct.unpack_from("<H", data, position + 8)[0] | flags
    )
    if method is not None:
        struct.pack_into("<H", data, position + 10, method)
    path.write_bytes(bytes(data))


def odd_zip(path: Path) -> Path:
    """Regular files beside a FIFO, an encrypted entry and one compressed by method 99."""
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in FILES.items():
            archive.writestr(name, data)
        fifo = zipfile.ZipInfo("run/pipe")
        fifo.external_attr = (stat.S_IFIFO | 0o644) << 16
        archive.writestr(fifo, b"")
        archive.writestr("secret/key.bin", b"k")
        archive.writestr("aes/weights.bin", b"w")
    patch_central_header(path, "secret/key.bin", flags=0x1)
    patch_central_header(path, "aes/weights.bin", method=99)
    return path


def test_zip_entries_that_cannot_be_read_are_passed_over_when_unselected(tmp_path: Path) -> None:
    archive = odd_zip(tmp_path / "m.zip")
    code, _, err = run("package", str(archive), str(tmp_path / "out.zip"), "--include", "*.json")
    assert (code, err) == (0, "")
    assert read_zip(tmp_path / "out.zip") == FILES


@pytest.mark.parametrize(
    ("include", "reason"),
    [("key.bin", "encrypted"), ("weights.bin", "compression method 99"), ("pipe", "FIFO")],
)
def test_zip_entries_that_cannot_be_read_are_refused_when_selected(
    tmp_path: Path, include: str, reason: str
) -> None:
    archive = odd_zip(tmp_path / "m.zip")
    code, _, err = run("package", str(archive), str(tmp_path / "out.zip"), "--include", include)
    assert code != 0 and reason in err
    assert not (tmp_path / "out.zip").exists()


def hostile_tar(path: Path) -> Path:
    """The review's two cases in one archive: a hard link to a device, and a symbolic
    link out of the destination, beside the one file a user wants."""
    return tar_with(
        path,
        [
            tar_info("dev", tarfile.CHRTYPE),
            tar_info("link", tarfile.LNKTYPE, "dev"),
            tar_info("evil", tarfile.SYMTYPE, "../../etc/passwd"),
            tar_info("abs", tarfile.LNKTYPE, "/etc/shadow"),
            (tar_info("a.txt"), b"wanted"),
        ],
    )


@pytest.mark.parametrize(
    "strategy", [StrategyChoice.STREAM, StrategyChoice.EXTRACT, StrategyChoice.AUTO]
)
def test_unselected_links_are_passed_over_whatever_they_point_at(
    tmp_path: Path, strategy: StrategyChoice
) -> None:
    """Issue 8 review: --include a.txt failed for 'link' (a hard link to the unselected
    device 'dev') and for 'evil' -> ../../etc/passwd, neither of which it would write."""
    archive = hostile_tar(tmp_path / "m.tar")
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    result = package_target(
        Target(str(archive), str(tmp_path / "m.zip"), include=("a.txt",)),
        HandlerSettings(scratch_dir=str(scratch), tmp_critical=0.99),
        choice=strategy,
    )
    assert (result.status, result.error) == ("succeeded", None)
    assert read_zip(tmp_path / "m.zip") == {"a.txt": b"wanted"}
    code, _, err = run("package", str(archive), str(tmp_path / "c.zip"), "--include", "a.txt")
    assert (code, err) == (0, "")


@pytest.mark.parametrize(
    ("include", "culprit", "reason"),
    [
        ("evil", "evil", "outside the destination"),
        ("link", "link", "which the include patterns leave out"),
        ("abs", "abs", "absolute path"),
        ("*", "dev", "device file"),
    ],
)
def test_selected_hostile_links_are_still_refused(
    tmp_path: Path, include: str, culprit: str, reason: str
) -> None:
    archive = hostile_tar(tmp_path / "m.tar")
    with pytest.raises(ExtractionError, match=reason) as refused:
        StreamingExtractor().extract_streaming(archive, tmp_path / "out", patterns=[include])
    assert refused.value.member == culprit


def test_a_selected_chain_through_selected_links_is_still_refused(tmp_path: Path) -> None:
    """d/up -> .. is harmless alone; l -> d/up/.. walks through it out of the root."""
    archive = tar_with(
        tmp_path / "m.tar",
        [
            tar_info("d", tarfile.DIRTYPE),
            tar_info("d/up", tarfile.SYMTYPE, ".."),
            tar_info("l", tarfile.SYMTYPE, "d/up/.."),
            (tar_info("a.txt"), b"x"),
        ],
    )
    with pytest.raises(ExtractionError, match="goes through the symbolic link") as refused:
        StreamingExtractor().extract_streaming(archive, tmp_path / "out", patterns=["*"])
    assert refused.value.member == "l"
    # left out, d/up is not written, so l's text points at nothing: it is kept as written
    info = StreamingExtractor().get_archive_info(archive, ["l", "a.txt"])
    assert [(m.name, m.link_target) for m in info.members] == [("l", "d/up/.."), ("a.txt", None)]


@pytest.mark.parametrize(
    "strategy", [StrategyChoice.STREAM, StrategyChoice.EXTRACT, StrategyChoice.AUTO]
)
def test_a_hard_link_to_a_hard_link_ends_at_the_file(
    tmp_path: Path, strategy: StrategyChoice
) -> None:
    """c -> b -> a (tar -h, or a file hard-linked twice, writes such chains): c is a link
    to the file a, as b is; it used to be refused as 'not an earlier file member'."""
    archive = tar_with(
        tmp_path / "m.tar",
        [
            (tar_info("a"), b"weights"),
            tar_info("b", tarfile.LNKTYPE, "a"),
            tar_info("c", tarfile.LNKTYPE, "b"),
        ],
    )
    info = StreamingExtractor().get_archive_info(archive)
    assert [(m.name, m.link_target) for m in info.members] == [
        ("a", None),
        ("b", "a"),
        ("c", "a"),
    ]
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    result = package_target(
        Target(str(archive), str(tmp_path / "m.zip")),
        HandlerSettings(scratch_dir=str(scratch), tmp_critical=0.99),
        choice=strategy,
    )
    assert (result.status, result.error) == ("succeeded", None)
    assert read_zip(tmp_path / "m.zip") == {"a": b"weights", "b": b"a", "c": b"a"}
