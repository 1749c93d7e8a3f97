"""StreamingExtractor: formats by content, headers-only info, streams, and safety."""

from __future__ import annotations

import bz2
import functools
import gzip
import lzma
import shutil
import stat
import subprocess
import tarfile
import zipfile
from pathlib import Path

import pytest

from handler.archive import StreamingExtractor, matches
from handler.archive.safety import Limits
from handler.errors import (
    ExtractionError,
    SourceNotFoundError,
    UnsupportedArchiveError,
)
from handler.members import ArchiveFormat, Member, MemberKind
from handler.retry import is_transient
from tests.helpers import (
    ALL_FORMATS,
    ArchiveKind,
    build_archive,
    listing,
    open_members,
    tar_info,
    tar_with,
)

FILES = {
    "model/config.json": b'{"layers": 2}',
    "model/weights/shard-1.bin": bytes(range(256)) * 1000,
    "model/tokenizer.json": b'{"vocab": {}}',
    "README.md": b"# model\n",
}


@pytest.mark.parametrize("kind", ALL_FORMATS)
def test_format_is_detected_by_content_not_by_name(tmp_path: Path, kind: ArchiveKind) -> None:
    archive = build_archive(tmp_path / "misleading.name.txt", FILES, kind)
    info = StreamingExtractor().get_archive_info(archive)
    assert info.format is ArchiveFormat(kind)
    assert {m.name for m in info.members} == set(FILES)
    assert info.total_size == sum(len(v) for v in FILES.values())
    assert info.file_count == len(FILES)


@pytest.mark.parametrize("kind", ALL_FORMATS)
def test_reader_members_stream_each_member(tmp_path: Path, kind: ArchiveKind) -> None:
    archive = build_archive(tmp_path / "a", FILES, kind)
    seen: dict[str, bytes] = {}
    for opened in open_members(StreamingExtractor(), archive):
        parts = []
        while chunk := opened.stream.read(4096):
            assert len(chunk) <= 4096
            parts.append(chunk)
        seen[opened.member.name] = b"".join(parts)
    assert seen == FILES


@pytest.mark.parametrize("kind", ALL_FORMATS)
def test_a_member_stream_reads_like_a_file_across_the_readers_blocks(
    tmp_path: Path, kind: ArchiveKind
) -> None:
    """read() is the whole member and read(n) is n bytes until its end, wherever the
    decompressor's 1 MiB blocks fall: a library user parsing a safetensors header with
    read(8) then read(n) gets what it asked for (review 4: read() gave 1 of 3 MiB)."""
    weights = bytes(range(251)) * (3 * 1024 * 1024 // 251)
    archive = build_archive(tmp_path / "a", {"w.bin": weights, "x.bin": weights}, kind)
    members = open_members(StreamingExtractor(), archive)
    first = next(members)
    head = first.stream.read(1024 * 1024 - 600)
    across = first.stream.read(1000)  # the tar stream's first block ends in here
    assert len(across) == 1000
    assert head + across + first.stream.read() == weights
    assert next(members).stream.read() == weights


def test_zip_info_reads_only_the_central_directory(tmp_path: Path) -> None:
    archive = build_archive(tmp_path / "a.zip", FILES, "zip")
    data = bytearray(archive.read_bytes())
    offset = data.index(bytes(range(256)) * 2) if bytes(range(256)) * 2 in data else None
    with zipfile.ZipFile(archive) as z:
        info = z.getinfo("model/weights/shard-1.bin")
        start = info.header_offset + 30 + len(info.filename)
    data[start + 10 : start + 20] = b"\xff" * 10  # corrupt member data, not headers
    archive.write_bytes(bytes(data))
    assert offset is None  # the payload is compressed: the corruption hits deflate data
    info_read = StreamingExtractor().get_archive_info(archive)
    assert info_read.file_count == len(FILES)
    with pytest.raises(ExtractionError, match=r"shard-1\.bin"):
        for opened in open_members(StreamingExtractor(), archive):
            opened.stream.read()


def test_patterns_match_base_names_or_whole_paths() -> None:
    assert matches("model/weights/a.safetensors", ["*.safetensors"])
    assert matches("model/config.json", ["config.json"])
    assert not matches("model/config.json", ["other/config.json"])
    assert matches("model/config.json", ["model/*.json"])
    assert not matches("model/weights/x.bin", ["*.json"])


def test_reader_members_with_patterns(tmp_path: Path) -> None:
    archive = build_archive(tmp_path / "a.tgz", FILES, "tar.gz")
    names = [m.member.name for m in open_members(StreamingExtractor(), archive, ["*.json"])]
    assert names == ["model/config.json", "model/tokenizer.json"]


def test_extract_streaming_calls_back_after_each_file(tmp_path: Path) -> None:
    archive = build_archive(tmp_path / "a.tar", FILES, "tar")
    dest = tmp_path / "out"
    consumed: dict[str, bytes] = {}

    def consume(path: Path, member: Member) -> None:
        consumed[member.name] = path.read_bytes()
        path.unlink()  # the caller consumes and deletes: disk holds one member at a time

    summary = StreamingExtractor().extract_streaming(archive, dest, consume)
    assert consumed == FILES
    assert summary.files == len(FILES)
    assert not [p for p in dest.rglob("*") if p.is_file()]


def test_extract_selective_writes_only_matches(tmp_path: Path) -> None:
    archive = build_archive(tmp_path / "a.zip", FILES, "zip")
    dest = tmp_path / "out"
    StreamingExtractor().extract_selective(archive, ["*.json"], dest)
    assert {p.relative_to(dest).as_posix() for p in dest.rglob("*") if p.is_file()} == {
        "model/config.json",
        "model/tokenizer.json",
    }


def test_extract_keeps_links_inside_the_destination(tmp_path: Path) -> None:
    archive = tar_with(
        tmp_path / "links.tar",
        [
            (tar_info("dir/file.bin"), b"payload"),
            tar_info("dir/sym.bin", tarfile.SYMTYPE, "file.bin"),
            tar_info("hard.bin", tarfile.LNKTYPE, "dir/file.bin"),
        ],
    )
    dest = tmp_path / "out"
    StreamingExtractor().extract_streaming(archive, dest)
    assert (dest / "dir/sym.bin").is_symlink()
    assert (dest / "dir/sym.bin").read_bytes() == b"payload"
    assert (dest / "hard.bin").read_bytes() == b"payload"
    assert (dest / "hard.bin").stat().st_ino == (dest / "dir/file.bin").stat().st_ino


HOSTILE = [
    ("absolute", [(tar_info("/etc/evil"), b"x")], "/etc/evil", "absolute path"),
    ("dotdot", [(tar_info("a/../../evil"), b"x")], "a/../../evil", "'..'"),
    ("backslash", [(tar_info("..\\evil"), b"x")], "..\\evil", "backslash"),
    (
        "symlink-out",
        [tar_info("link", tarfile.SYMTYPE, "../../etc/passwd")],
        "link",
        "outside the destination",
    ),
    (
        "symlink-absolute",
        [tar_info("link", tarfile.SYMTYPE, "/etc/passwd")],
        "link",
        "absolute path",
    ),
    (
        "through-symlink",
        [tar_info("d", tarfile.SYMTYPE, "."), (tar_info("d/x"), b"x")],
        "d/x",
        "through the symbolic link",
    ),
    (
        "hardlink-missing",
        [tar_info("h", tarfile.LNKTYPE, "nothere")],
        "h",
        "not an earlier file member",
    ),
    ("device", [tar_info("dev", tarfile.CHRTYPE)], "dev", "device file"),
    ("block", [tar_info("blk", tarfile.BLKTYPE)], "blk", "device file"),
    ("fifo", [tar_info("pipe", tarfile.FIFOTYPE)], "pipe", "FIFO"),
    ("duplicate", [(tar_info("a"), b"1"), (tar_info("a"), b"2")], "a", "appears twice"),
    ("file-as-dir", [(tar_info("a"), b"1"), (tar_info("a/b"), b"2")], "a/b", "is a file"),
]


@pytest.mark.parametrize(
    ("label", "members", "culprit", "reason"), HOSTILE, ids=[h[0] for h in HOSTILE]
)
def test_hostile_members_are_refused_and_nothing_is_written_outside(
    tmp_path: Path,
    label: str,
    members: list[tarfile.TarInfo | tuple[tarfile.TarInfo, bytes]],
    culprit: str,
    reason: str,
) -> None:
    work = tmp_path / "work"
    work.mkdir()
    archive = tar_with(tmp_path / f"{label}.tar", members)
    before = listing(tmp_path)
    with pytest.raises(ExtractionError, match=reason) as caught:
        StreamingExtractor().extract_streaming(archive, work / "dest")
    assert caught.value.member == culprit
    assert repr(culprit) in str(caught.value)
    assert listing(tmp_path) - before <= {"work/dest"} | {
        p for p in listing(tmp_path) if p.startswith("work/dest/")
    }
    # and the headers-only pass refuses it too, before any data is read
    with pytest.raises(ExtractionError):
        StreamingExtractor().get_archive_info(archive)


def test_hostile_zip_names_are_refused(tmp_path: Path) -> None:
    archive = tmp_path / "evil.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("ok.txt", b"fine")
        z.writestr("../../escape.txt", b"evil")
    with pytest.raises(ExtractionError, match=r"'\.\.'") as caught:
        StreamingExtractor().extract_streaming(archive, tmp_path / "dest")
    assert caught.value.member == "../../escape.txt"
    assert not (tmp_path.parent / "escape.txt").exists()


def test_encrypted_zip_members_are_refused(tmp_path: Path) -> None:
    archive = tmp_path / "enc.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("secret.txt", b"data")
    data = bytearray(archive.read_bytes())
    # Set the 'encrypted' flag in the central directory record.
    central = data.rindex(b"PK\x01\x02")
    data[central + 8] |= 0x01
    archive.write_bytes(bytes(data))
    with pytest.raises(ExtractionError, match="encrypted"):
        StreamingExtractor().get_archive_info(archive)


def test_gzip_bomb_is_stopped_by_the_ratio_limit(tmp_path: Path) -> None:
    bomb = tmp_path / "bomb.tar.gz"
    with tarfile.open(bomb, "w:gz") as tar:
        info = tar_info("zeros.bin")
        info.size = 256 << 20

        class Zeros:
            def read(self, size: int) -> bytes:
                return bytes(size)

        tar.addfile(info, Zeros())  # type: ignore[arg-type]
    assert bomb.stat().st_size < 1 << 20
    with pytest.raises(ExtractionError, match="compression ratio") as caught:
        for opened in open_members(StreamingExtractor(), bomb):
            while opened.stream.read(1 << 20):
                pass
    assert caught.value.member == "zeros.bin"
    # A user who trusts the archive raises the limit.
    trusting = StreamingExtractor(limits=Limits(max_ratio=10_000))
    total = 0
    for opened in open_members(trusting, bomb):
        while chunk := opened.stream.read(1 << 20):
            total += len(chunk)
    assert total == 256 << 20


def test_zip_bomb_is_refused_from_the_central_directory(tmp_path: Path) -> None:
    bomb = tmp_path / "bomb.zip"
    with (
        zipfile.ZipFile(bomb, "w", compression=zipfile.ZIP_DEFLATED) as z,
        z.open("zeros", "w") as member,
    ):
        block = bytes(1 << 20)
        for _ in range(128):
            member.write(block)
    with pytest.raises(ExtractionError, match="compression ratio"):
        StreamingExtractor().get_archive_info(bomb)


def test_size_and_member_count_limits(tmp_path: Path) -> None:
    archive = build_archive(tmp_path / "a.tar", {f"f{i}": b"x" * 100 for i in range(20)}, "tar")
    with pytest.raises(ExtractionError, match="more than 10 members"):
        StreamingExtractor(limits=Limits(max_members=10)).get_archive_info(archive)
    with pytest.raises(ExtractionError, match="unpacks to more than"):
        StreamingExtractor(limits=Limits(max_total_size=1000)).get_archive_info(archive)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "is empty"),
        (b"just some text, not an archive" * 20, "not a supported archive"),
        (b"\x28\xb5\x2f\xfd" + bytes(600), "zstd-compressed"),
        (gzip.compress(b"plain text, no tar inside" * 50), "gz-compressed but holds no tar"),
        (bz2.compress(b"plain text" * 100), "bz2-compressed but holds no tar"),
        (lzma.compress(b"plain text" * 100), "xz-compressed but holds no tar"),
    ],
)
def test_not_an_archive_is_a_clear_error(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "input.tar.gz"
    path.write_bytes(content)
    with pytest.raises(UnsupportedArchiveError, match=message):
        StreamingExtractor().get_archive_info(path)


def test_missing_source_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(SourceNotFoundError, match="no such file"):
        StreamingExtractor().get_archive_info(tmp_path / "nope.tar.gz")


@pytest.mark.parametrize("kind", ALL_FORMATS)
def test_truncated_archives_fail_with_extraction_error(tmp_path: Path, kind: ArchiveKind) -> None:
    big = {"a.bin": bytes(range(256)) * 4000, "b.bin": b"tail"}
    archive = build_archive(tmp_path / "full", big, kind)
    cut = tmp_path / "cut"
    cut.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    with pytest.raises(ExtractionError, match="truncated or corrupt"):
        for opened in open_members(StreamingExtractor(), cut):
            while opened.stream.read(1 << 16):
                pass


def test_zip_with_a_bad_crc_fails_naming_the_member(tmp_path: Path) -> None:
    archive = tmp_path / "crc.zip"
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_STORED) as z:
        z.writestr("data.bin", b"A" * 1000)
    data = archive.read_bytes().replace(b"A" * 10, b"B" * 10, 1)
    archive.write_bytes(data)
    with pytest.raises(ExtractionError, match=r"data\.bin") as caught:
        for opened in open_members(StreamingExtractor(), archive):
            opened.stream.read()
    assert "CRC" in str(caught.value)


def test_member_kinds_and_safe_names(tmp_path: Path) -> None:
    archive = tar_with(
        tmp_path / "kinds.tar",
        [
            tar_info("./", tarfile.DIRTYPE),
            tar_info("./model", tarfile.DIRTYPE),
            (tar_info("./model/a.bin"), b"a"),
            tar_info("./model/l", tarfile.SYMTYPE, "a.bin"),
        ],
    )
    info = StreamingExtractor().get_archive_info(archive)
    # './' (the root itself) is no member of its own; './x' becomes 'x'.
    assert [(m.name, m.kind) for m in info.members] == [
        ("model", MemberKind.DIRECTORY),
        ("model/a.bin", MemberKind.FILE),
        ("model/l", MemberKind.SYMLINK),
    ]


def test_a_link_through_a_later_link_cannot_escape(tmp_path: Path) -> None:
    # 'esc' looks harmless (d/up/.. is d), until 'd/up' turns out to be a link to '..'
    archive = tar_with(
        tmp_path / "chain.tar",
        [
            tar_info("d", tarfile.DIRTYPE),
            tar_info("esc", tarfile.SYMTYPE, "d/up/.."),
            tar_info("d/up", tarfile.SYMTYPE, ".."),
        ],
    )
    with pytest.raises(ExtractionError, match="an earlier symbolic link's target goes through"):
        StreamingExtractor().get_archive_info(archive)
    archive = tar_with(
        tmp_path / "chain2.tar",
        [
            tar_info("d", tarfile.DIRTYPE),
            tar_info("d/up", tarfile.SYMTYPE, ".."),
            tar_info("esc", tarfile.SYMTYPE, "d/up/.."),
        ],
    )
    with pytest.raises(ExtractionError, match="goes through the symbolic link 'd/up'"):
        StreamingExtractor().get_archive_info(archive)


def test_a_file_reusing_an_implied_directory_name_is_refused(tmp_path: Path) -> None:
    archive = tar_with(tmp_path / "c.tar", [(tar_info("a/b"), b"1"), (tar_info("a"), b"2")])
    with pytest.raises(ExtractionError, match="uses the name as a directory"):
        StreamingExtractor().get_archive_info(archive)


def test_extracted_files_stay_owner_readable(tmp_path: Path) -> None:
    info = tar_info("secret.bin")
    info.mode = 0o200
    archive = tar_with(tmp_path / "m.tar", [(info, b"x")])
    StreamingExtractor().extract_streaming(archive, tmp_path / "out")
    assert stat.S_IMODE((tmp_path / "out" / "secret.bin").stat().st_mode) & stat.S_IRUSR


def test_members_read_in_part_or_not_at_all_leave_the_next_ones_whole(tmp_path: Path) -> None:
    """Member data is read from the tar stream itself (tar_members.TarMemberData): a member
    left half read or unread is skipped, and the next member's bytes are its own."""
    files = {
        "a.bin": bytes(range(256)) * 5000,
        "b.bin": b"\x01" * 777,
        "c.bin": bytes(reversed(range(256))) * 3001,
    }
    archive = build_archive(tmp_path / "three", files, "tar.gz")
    got: dict[str, bytes] = {}
    for opened in open_members(StreamingExtractor(), archive):
        if opened.member.name == "a.bin":
            got["a.bin"] = opened.stream.read(1000)
        elif opened.member.name == "c.bin":
            got["c.bin"] = b"".join(iter(functools.partial(opened.stream.read, 4096), b""))
    assert got == {"a.bin": files["a.bin"][:1000], "c.bin": files["c.bin"]}


@pytest.mark.skipif(shutil.which("tar") is None, reason="needs GNU tar to write sparse members")
@pytest.mark.parametrize("tar_format", ["gnu", "posix"])
def test_sparse_members_read_back_with_their_holes(tmp_path: Path, tar_format: str) -> None:
    """GNU tar's sparse members (old GNU headers, pax sparse 1.0) are read in order from
    a stream that only seeks forward, with the holes as zeros."""
    tree = tmp_path / "tree"
    tree.mkdir()
    sparse = tree / "embeddings.bin"
    with sparse.open("wb") as handle:
        handle.write(b"head" * 1024)
        handle.seek(3 * 1024 * 1024)
        handle.write(b"tail" * 1024)
        handle.truncate(5 * 1024 * 1024)
    (tree / "config.json").write_bytes(b'{"after": "the sparse member"}')
    archive = tmp_path / "sparse.tar.gz"
    subprocess.run(
        [
            "tar",
            "--sparse",
            f"--format={tar_format}",
            "-czf",
            str(archive),
            "-C",
            str(tree),
            "embeddings.bin",
            "config.json",
        ],
        check=True,
    )
    with tarfile.open(archive) as written:
        assert written.getmember("embeddings.bin").sparse  # holes, not 5 MiB of zeros
    seen = {
        opened.member.name: opened.stream.read()
        for opened in open_members(StreamingExtractor(), archive)
    }
    assert seen == {
        "embeddings.bin": sparse.read_bytes(),
        "config.json": b'{"after": "the sparse member"}',
    }


def _ustar_header(name: bytes, size_field: bytes, kind: bytes) -> bytes:
    """One ustar header block with a raw 12-byte size field (octal or base-256)."""
    header = bytearray(512)
    header[: len(name)] = name
    header[100:124] = b"0000644\0" + b"0000000\0" * 2
    header[124:136] = size_field
    header[136:148] = b"14623435200\0"
    header[156:157] = kind
    header[257:265] = b"ustar\x0000"
    header[148:156] = b" " * 8
    header[148:156] = b"%06o\0 " % sum(header)
    return bytes(header)


def _base256(value: int) -> bytes:
    """A tar size field in GNU's base-256 form (negative values in two's complement)."""
    return bytes([0xFF if value < 0 else 0x80]) + (value % 2**88).to_bytes(11, "big")


@pytest.mark.parametrize(
    "size",
    [-1024, 64 * 2**30, 2**80],
    ids=["negative", "64 GiB", "2**80 bytes"],
)
@pytest.mark.parametrize("kind", [b"x", b"L"], ids=["pax header", "GNU long name"])
@pytest.mark.parametrize("compressed", [False, True], ids=["tar", "tar.gz"])
def test_an_implausible_size_in_a_header_extension_is_a_corrupt_archive(
    tmp_path: Path, size: int, kind: bytes, compressed: bool
) -> None:
    """A header whose size field no archive could hold is the archive's fault: not a
    MemoryError (tarfile reads the extension whole), not a source error to retry."""
    body = _ustar_header(b"P", _base256(size), kind) + b"10 a=bcd\n".ljust(512, b"\0")
    body += b"\0" * 1024
    archive = tmp_path / ("bad.tar.gz" if compressed else "bad.tar")
    archive.write_bytes(gzip.compress(body) if compressed else body)
    with pytest.raises(ExtractionError, match="truncated or corrupt") as caught:
        for opened in open_members(StreamingExtractor(), archive):
            opened.stream.read()
    assert not is_transient(caught.value)
