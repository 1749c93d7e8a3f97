"""Names survive: each member's name in the ZIP is, byte for byte, what unzip, zipfile and
libarchive show for it, or the member is refused with the name escaped and advice that fits.

Issue 8 item 2 found: an Info-ZIP (Linux) ZIP's ``café.txt`` came out as ``caf├⌐.txt``; a
Latin-1 tar name exited 70 (``UnicodeEncodeError``); ``model\\config.json`` from Windows
was refused as unsafe; control characters passed through.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from handler.archive import StreamingExtractor
from handler.archive.names import check_name_encoding
from handler.cli.main import main
from handler.errors import ExtractionError, InputError
from handler.events import EventValidationError, StrategyChoice, parse_event
from handler.locations.local import open_destination, open_source
from handler.packaging import PackageOptions, package, package_target
from handler.settings import HandlerSettings
from handler.storage import StorageManager
from handler.strategies import run_extract
from tests.helpers import python_env, tar_info, tar_with
from tests.zipbytes import (
    MADE_BY_MSDOS,
    MADE_BY_NTFS,
    MADE_BY_UNIX,
    RawMember,
    unicode_path_extra,
    write_raw_zip,
)

CAFE = "café.txt".encode()  # b"caf\xc3\xa9.txt"
UTF8_LOCALE = {**os.environ, "LC_ALL": "C.UTF-8"}


def shown_by_readers(path: Path) -> dict[str, list[bytes]]:
    """The member names of the ZIP at ``path`` as bytes, as three independent readers show
    them: Info-ZIP ``unzip -Z1``, Python's ``zipfile`` and libarchive's ``bsdtar -t``."""
    for tool in ("unzip", "bsdtar"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed (scripts/system-deps installs it)")
    with zipfile.ZipFile(path) as archive:
        from_zipfile = [info.filename.encode() for info in archive.infolist()]
    listings = {
        tool: subprocess.run(argv, capture_output=True, check=True, env=UTF8_LOCALE).stdout
        for tool, argv in {
            "unzip": ["unzip", "-Z1", str(path)],
            "bsdtar": ["bsdtar", "-tf", str(path)],
        }.items()
    }
    return {
        "unzip": listings["unzip"].splitlines(),
        "zipfile": from_zipfile,
        "bsdtar": listings["bsdtar"].splitlines(),
    }


def central_names(path: Path) -> list[tuple[bytes, bool]]:
    """Each member's name bytes in the central directory and whether the UTF-8 flag is set."""
    with zipfile.ZipFile(path) as archive:
        return [
            (
                info.orig_filename.encode("utf-8" if info.flag_bits & 0x800 else "cp437"),
                bool(info.flag_bits & 0x800),
            )
            for info in archive.infolist()
        ]


def packaged(source: Path, **options: str) -> Path:
    out = source.with_name(source.name + ".out.zip")
    package(source, out, PackageOptions(**options))  # type: ignore[arg-type]
    return out


def assert_names(out: Path, *expected: bytes) -> None:
    """Every reader shows exactly ``expected``; non-ASCII names carry the UTF-8 flag."""
    assert shown_by_readers(out) == {r: list(expected) for r in ("unzip", "zipfile", "bsdtar")}
    assert central_names(out) == [(name, not name.isascii()) for name in expected]


# -- (a) ZIP names --------------------------------------------------------------------


def test_info_zip_on_linux_utf8_name_without_flag_survives(tmp_path: Path) -> None:
    """Info-ZIP zip 3.0 on Linux writes the name's UTF-8 bytes and no UTF-8 flag."""
    if shutil.which("zip") is None:
        pytest.skip("Info-ZIP zip is not installed (scripts/system-deps installs it)")
    (tmp_path / "café.txt").write_bytes(b"x")
    source = tmp_path / "infozip.zip"
    subprocess.run(["zip", "-q", str(source), "café.txt"], cwd=tmp_path, check=True)
    with zipfile.ZipFile(source) as archive:
        (info,) = archive.infolist()
    assert (info.flag_bits & 0x800, info.create_system) == (0, MADE_BY_UNIX)
    assert info.filename == "caf├⌐.txt"  # what zipfile alone makes of it (the bug)
    assert_names(packaged(source), CAFE)


def test_utf8_bytes_without_flag_survive_from_raw_bytes(tmp_path: Path) -> None:
    source = write_raw_zip(tmp_path / "raw.zip", [RawMember(CAFE, b"x", system=MADE_BY_UNIX)])
    assert_names(packaged(source), CAFE)


def test_unicode_path_extra_field_gives_the_name(tmp_path: Path) -> None:
    """APPNOTE 4.6.9: header name in a code page, the field holds it in UTF-8."""
    header = b"caf\x82.txt"  # CP437
    members = [
        RawMember(header, b"x", system=MADE_BY_MSDOS, extra=unicode_path_extra(header, "café.txt")),
        # 'ß' in the field wins over the header's plain 'ss'
        RawMember(b"strasse.txt", b"y", extra=unicode_path_extra(b"strasse.txt", "straße.txt")),
    ]
    source = write_raw_zip(tmp_path / "unicode-path.zip", members)
    assert_names(packaged(source), CAFE, "straße.txt".encode())


def test_a_stale_unicode_path_field_is_ignored(tmp_path: Path) -> None:
    """A field whose CRC-32 is not that of the header's name (renamed later) is ignored."""
    stale = unicode_path_extra(b"old-name.txt", "old-näme.txt")
    source = write_raw_zip(tmp_path / "stale.zip", [RawMember(b"new.txt", b"x", extra=stale)])
    assert_names(packaged(source), b"new.txt")


def test_cp437_names_from_an_ms_dos_made_zip(tmp_path: Path) -> None:
    members = [
        RawMember(b"caf\x82.txt", b"x", system=MADE_BY_MSDOS),  # 0x82: e acute
        RawMember(b"\x8eRGER.TXT", b"y", system=MADE_BY_MSDOS),  # 0x8E: A umlaut
    ]
    source = write_raw_zip(tmp_path / "dos.zip", members)
    assert_names(packaged(source), CAFE, "ÄRGER.TXT".encode())


def test_legacy_bytes_from_a_unix_made_zip_need_the_encoding(tmp_path: Path) -> None:
    source = write_raw_zip(tmp_path / "latin1.zip", [RawMember(b"caf\xe9.txt", b"x")])
    with pytest.raises(ExtractionError, match=r"--name-encoding") as caught:
        packaged(source)
    assert r"member 'caf\xe9.txt': its name is not valid UTF-8" in str(caught.value)
    assert not source.with_name("latin1.zip.out.zip").exists()
    assert_names(packaged(source, name_encoding="latin-1"), CAFE)


def test_names_survive_the_extract_strategy_too(tmp_path: Path) -> None:
    """Files on disk in between: the names still come out as decided."""
    members = [
        RawMember(b"model\\caf\x82.txt", b"x", system=MADE_BY_MSDOS),
        RawMember(b"tok\xc3\xa9.json", b"y", system=MADE_BY_UNIX),
    ]
    source = write_raw_zip(tmp_path / "mixed.zip", members)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    out = tmp_path / "out.zip"
    run_extract(
        open_source(str(source)),
        open_destination(str(out)),
        PackageOptions(),
        scratch_root=scratch,
        storage=StorageManager(scratch),
        critical=1.0,
    )
    assert_names(out, "toké.json".encode(), b"model/", "model/café.txt".encode())
    assert list(scratch.iterdir()) == []


def test_a_name_flagged_utf8_that_is_not_is_refused_as_such(tmp_path: Path) -> None:
    """zipfile cannot read past it; bsdtar skips it ("cannot be converted from UTF-8")."""
    source = write_raw_zip(tmp_path / "f.zip", [RawMember(b"caf\xe9.txt", b"x", flags=0x800)])
    with pytest.raises(ExtractionError) as caught:
        packaged(source)
    assert str(caught.value) == (
        f"{source}: member 'caf\\xe9.txt': its name is marked UTF-8 (general purpose bit 11) "
        "but byte 3 is not valid UTF-8; the archive was written wrongly; rebuild it with a "
        "tool that writes UTF-8 names (zip 3.0, 7-Zip, Python's zipfile)"
    )


# -- (b) tar names --------------------------------------------------------------------


def latin1_tar(path: Path) -> Path:
    """A GNU tar whose names are Latin-1 bytes, as GNU tar writes them in a Latin-1 locale."""
    with tarfile.open(path, "w", format=tarfile.GNU_FORMAT, encoding="latin-1") as tar:
        info = tarfile.TarInfo("café.txt")
        info.size = 1
        tar.addfile(info, io.BytesIO(b"x"))
        tar.addfile(tar_info("lien", tarfile.SYMTYPE, "café.txt"))
    return path


@pytest.mark.parametrize("command", ["package", "inspect"])
def test_a_latin1_tar_name_is_refused_by_default_with_the_name_escaped(
    tmp_path: Path, command: str
) -> None:
    source = latin1_tar(tmp_path / "latin1.tar")
    listed = subprocess.run(["bsdtar", "-tf", str(source)], capture_output=True, check=True)
    assert listed.stdout.splitlines()[0] == rb"caf\351.txt"  # not UTF-8, by libarchive too
    argv = [command, str(source)] + ([str(tmp_path / "out.zip")] if command == "package" else [])
    result = subprocess.run(
        [sys.executable, "-m", "handler", *argv],
        capture_output=True,
        text=True,
        check=False,
        env=python_env(),
    )
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == (
        f"error: {source}: member 'caf\\xe9.txt': its name is not valid UTF-8; if you know "
        "the encoding the archive was made in, pass --name-encoding ENC (the event field "
        "name_encoding), e.g. latin-1, cp1252 or cp932; or rebuild the archive with UTF-8 "
        "names\n"
    )
    assert not (tmp_path / "out.zip").exists()


def test_a_latin1_tar_name_is_transcoded_with_name_encoding(tmp_path: Path) -> None:
    source = latin1_tar(tmp_path / "latin1.tar")
    out = tmp_path / "out.zip"
    code = main(
        ["package", str(source), str(out), "--name-encoding", "latin-1"],
        out=io.StringIO(),
        err=io.StringIO(),
    )
    assert code == 0
    assert_names(out, CAFE, b"lien")
    with zipfile.ZipFile(out) as archive:
        assert archive.read("lien") == CAFE  # the link's target is transcoded too
    listing = io.StringIO()
    assert main(["inspect", str(source), "--name-encoding", "latin-1"], out=listing) == 0
    assert "café.txt" in listing.getvalue()


def test_a_pax_name_with_hdrcharset_binary_follows_the_same_rules(tmp_path: Path) -> None:
    """pax names are UTF-8 unless the header says hdrcharset=BINARY (POSIX.1-2008 pax)."""
    source = tmp_path / "binary.tar"
    with tarfile.open(source, "w", format=tarfile.PAX_FORMAT, errors="surrogateescape") as tar:
        info = tarfile.TarInfo("caf\udce9.txt")  # the bytes b"caf\xe9.txt"
        info.size = 1
        tar.addfile(info, io.BytesIO(b"x"))
    assert b"hdrcharset=BINARY" in source.read_bytes()
    with pytest.raises(ExtractionError, match=r"member 'caf\\xe9\.txt': its name is not valid"):
        packaged(source)
    assert_names(packaged(source, name_encoding="latin-1"), CAFE)


@pytest.mark.parametrize("strategy", [StrategyChoice.STREAM, StrategyChoice.EXTRACT])
def test_the_event_field_name_encoding_reaches_the_reader(
    tmp_path: Path, strategy: StrategyChoice
) -> None:
    source = latin1_tar(tmp_path / "latin1.tar")
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    settings = HandlerSettings(scratch_dir=str(scratch), tmp_critical=0.99)
    target = {"source": str(source), "destination": str(tmp_path / "out.zip")}
    refused = package_target(parse_event({"targets": [target]}).targets[0], settings)
    assert refused.status == "failed" and refused.error is not None
    assert "member 'caf\\xe9.txt'" in refused.error["message"]
    event = parse_event({"targets": [{**target, "name_encoding": "latin-1"}]})
    result = package_target(event.targets[0], settings, choice=strategy)
    assert (result.status, result.strategy) == ("succeeded", strategy.value)
    assert_names(tmp_path / "out.zip", CAFE, b"lien")


def test_name_encoding_is_validated_where_it_enters() -> None:
    with pytest.raises(EventValidationError) as caught:
        parse_event(
            {"targets": [{"source": "a.tar", "destination": "b.zip", "name_encoding": "nope"}]}
        )
    assert caught.value.field == "targets[0].name_encoding"
    assert "'nope' is not a text encoding" in str(caught.value)
    event = parse_event(
        {"targets": [{"source": "a.tar", "destination": "b.zip", "name_encoding": "latin-1"}]}
    )
    assert event.targets[0].name_encoding == "latin-1"
    with pytest.raises(InputError, match="not a text encoding"):
        check_name_encoding("rot13")  # a codec, but not of bytes to text
    with pytest.raises(SystemExit) as exited:
        main(["inspect", "a.tar", "--name-encoding", "nope"], err=io.StringIO())
    assert exited.value.code == 2


# -- (c) Windows-made ZIPs --------------------------------------------------------------


@pytest.mark.parametrize("system", [MADE_BY_MSDOS, MADE_BY_NTFS])
def test_backslashes_of_a_windows_made_zip_are_separators(tmp_path: Path, system: int) -> None:
    members = [
        RawMember(b"model\\", system=system),
        RawMember(b"model\\config.json", b"{}", system=system),
        RawMember(b"model\\weights\\shard-1.bin", b"w", system=system),
    ]
    source = write_raw_zip(tmp_path / "windows.zip", members)
    assert_names(packaged(source), b"model/", b"model/config.json", b"model/weights/shard-1.bin")


@pytest.mark.parametrize(
    ("raw", "reason", "advice"),
    [
        (b"..\\evil.txt", "contains '..'", "no '..' components"),
        (b"model\\..\\..\\evil.txt", "contains '..'", "no '..' components"),
        (b"\\evil.txt", "absolute path", "relative to its top directory"),
        (b"C:\\evil.txt", "drive letter", "relative to its top directory"),
    ],
)
def test_a_windows_made_zip_still_cannot_escape(
    tmp_path: Path, raw: bytes, reason: str, advice: str
) -> None:
    source = write_raw_zip(tmp_path / "evil.zip", [RawMember(raw, b"x", system=MADE_BY_MSDOS)])
    out = tmp_path / "out.zip"
    with pytest.raises(ExtractionError) as caught:
        package(source, out)
    assert caught.value.member == raw.decode()  # shown as the archive writes it
    assert f"member {raw.decode()!r}: the name " in str(caught.value)
    assert reason in caught.value.reason and advice in str(caught.value)
    assert not out.exists()


def test_a_backslash_from_a_unix_made_archive_stays_refused(tmp_path: Path) -> None:
    source = write_raw_zip(tmp_path / "unix.zip", [RawMember(b"a\\b.txt", b"x")])
    with pytest.raises(ExtractionError, match=r"backslash.*only ZIPs that say they were made"):
        package(source, tmp_path / "out.zip")


# -- (d) control characters and other hostile names -----------------------------------


@pytest.mark.parametrize(
    ("name", "shown"),
    [
        ("a\x1b[31mred.txt", r"'a\x1b[31mred.txt'"),  # C0: a terminal escape
        ("line\nbreak.txt", r"'line\nbreak.txt'"),
        ("del\x7f.txt", r"'del\x7f.txt'"),
        ("c1\x85.txt", r"'c1\x85.txt'"),  # C1: NEXT LINE
    ],
)
def test_control_characters_are_refused_and_shown_escaped(
    tmp_path: Path, name: str, shown: str
) -> None:
    sources = [
        tar_with(tmp_path / "ctl.tar", [(tar_info(name), b"x")]),
        write_raw_zip(tmp_path / "ctl.zip", [RawMember(name.encode(), b"x")]),
    ]
    for source in sources:
        with pytest.raises(ExtractionError) as caught:
            package(source, tmp_path / "out.zip")
        message = str(caught.value)
        assert f"member {shown}: the name contains control characters" in message
        assert "rename the member without control characters" in message
        assert not (tmp_path / "out.zip").exists()


def test_a_control_character_in_a_link_target_is_refused(tmp_path: Path) -> None:
    source = tar_with(tmp_path / "t.tar", [tar_info("link", tarfile.SYMTYPE, "a\x1bb")])
    with pytest.raises(ExtractionError, match=r"link target 'a\\x1bb' contains control"):
        StreamingExtractor().get_archive_info(source)


def test_names_that_differ_only_by_normalization_are_refused(tmp_path: Path) -> None:
    nfc, nfd = "caf\u00e9.txt", "cafe\u0301.txt"
    source = tar_with(tmp_path / "nf.tar", [(tar_info(nfc), b"1"), (tar_info(nfd), b"2")])
    with pytest.raises(ExtractionError, match="only by Unicode normalization") as caught:
        StreamingExtractor().get_archive_info(source)
    assert caught.value.member == nfd
    # one spelling alone keeps its own bytes: never normalized by us
    alone = packaged(tar_with(tmp_path / "nfd.tar", [(tar_info("dir/" + nfd), b"2")]))
    assert central_names(alone) == [(("dir/" + nfd).encode(), True)]
    shown = shown_by_readers(alone)
    assert shown["unzip"] == shown["zipfile"] == [("dir/" + nfd).encode()]
    assert shown["bsdtar"] == [("dir/" + nfc).encode()]  # libarchive shows names as NFC


@pytest.mark.parametrize(
    ("first", "second", "shown"),
    [
        (
            "caf\u00e9.txt",
            "cafe\u0301.txt",
            "'cafe\\u0301.txt' differs from the earlier 'caf\\xe9.txt'",
        ),
        (
            "d\u00e9j\u00e0/a",
            "de\u0301j\u00e0/b",
            "'de\\u0301j\\xe0' differs from the earlier 'd\\xe9j\\xe0'",
        ),
    ],
)
def test_a_normalization_refusal_shows_the_two_names_differently(
    tmp_path: Path, first: str, second: str, shown: str
) -> None:
    """Issue 8 review: both spellings printed as 'é.txt', which look identical."""
    source = tar_with(tmp_path / "nf.tar", [(tar_info(first), b"1"), (tar_info(second), b"2")])
    with pytest.raises(ExtractionError) as caught:
        StreamingExtractor().get_archive_info(source)
    assert caught.value.reason.startswith(shown)
    err = io.StringIO()
    assert main(["inspect", str(source)], out=io.StringIO(), err=err) == 1
    assert shown in err.getvalue() and err.getvalue().count("\n") == 1


def test_each_refusal_reason_has_its_own_advice(tmp_path: Path) -> None:
    """One generic advice served absolute paths, '..', devices and links alike."""
    cases: dict[str, list[tarfile.TarInfo | tuple[tarfile.TarInfo, bytes]]] = {
        "absolute": [(tar_info("/etc/evil"), b"x")],
        "dotdot": [(tar_info("../evil"), b"x")],
        "control": [(tar_info("a\x07"), b"x")],
        "device": [tar_info("dev", tarfile.CHRTYPE)],
        "fifo": [tar_info("pipe", tarfile.FIFOTYPE)],
        "link escaping": [tar_info("l", tarfile.SYMTYPE, "../../etc/passwd")],
        "hard link": [tar_info("h", tarfile.LNKTYPE, "nothere")],
        "backslash": [(tar_info("a\\b"), b"x")],
    }
    advice: dict[str, str] = {}
    for label, members in cases.items():
        source = tar_with(tmp_path / f"{len(advice)}.tar", members)
        with pytest.raises(ExtractionError) as caught:
            StreamingExtractor().get_archive_info(source)
        advice[label] = str(caught.value).split("; ", 1)[1]
    source = write_raw_zip(tmp_path / "u.zip", [RawMember(b"\xff.txt", b"x")])
    with pytest.raises(ExtractionError) as caught:
        StreamingExtractor().get_archive_info(source)
    advice["undecodable"] = str(caught.value).split("; ", 1)[1]
    source = write_raw_zip(tmp_path / "e.zip", [RawMember(b"secret.txt", b"x", flags=0x1)])
    with pytest.raises(ExtractionError, match="encrypted") as caught:
        StreamingExtractor().get_archive_info(source)
    advice["encrypted"] = str(caught.value).split("; ", 1)[1]
    assert len(set(advice.values())) == len(advice), advice
