"""Tree sources (a directory, an S3 prefix) refuse what they must before any file is
opened, say what is wrong in words that fit the source (no "rebuild the archive" for a
file or an S3 key), and read every name the way an archive's is read (REVIEW2 items 5,
11, 12, 14, 15)."""

from __future__ import annotations

import errno
import io
import os
import tracemalloc
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, BinaryIO

import pytest

from handler.archive import Limits
from handler.archive.tree_members import TreeReader
from handler.errors import ExtractionError
from handler.locations.directory import LocalDirectorySource
from handler.locations.listing import Listed, TreeSource
from handler.members import MemberKind, TreeFormat
from handler.packaging import PackageOptions, package
from tests.helpers import read_zip, write_tree


class Recorded(TreeSource):
    """A hand-written listing of ``format``; records each member opened."""

    def __init__(self, entries: Sequence[Listed], kind: TreeFormat) -> None:
        self.listed = tuple(entries)
        self.format = kind
        self.opened: list[str] = []

    @property
    def name(self) -> str:
        return "s3://bucket/models/" if self.format is TreeFormat.S3_PREFIX else "/srv/models"

    def entries(self) -> Iterator[Listed]:
        return iter(self.listed)

    def holds(self, location: str) -> bool:
        return False

    def open_member(self, entry: Listed) -> BinaryIO:
        self.opened.append(entry.name)
        return io.BytesIO(b"x" * entry.size)


def _files(*names: str) -> list[Listed]:
    return [Listed(name, MemberKind.FILE, 4) for name in names]


@pytest.mark.parametrize(
    ("last", "limits", "refusal"),
    [
        ("ok.bin", Limits(max_members=3), r"has more than 3 members \(4 listed\)"),
        ("ok.bin", Limits(max_total_size=15), "unpacks to more than 15 B"),
        ("d/" * 2100 + "deep.bin", Limits(), "over the 4,096 bytes a path may have"),
        ("n" * 300 + ".bin", Limits(), "over the 255 bytes a file or directory name may have"),
    ],
)
def test_every_limit_the_listing_shows_is_refused_before_any_member_is_opened(
    last: str, limits: Limits, refusal: str, tmp_path: Path
) -> None:
    # REVIEW2 item 5: the member limit was checked only as members were read
    source = Recorded(_files("a.bin", "b.bin", "c.bin", last), TreeFormat.S3_PREFIX)
    with pytest.raises(ExtractionError, match=refusal):
        package(source, tmp_path / "out.zip", PackageOptions(limits=limits))
    assert source.opened == []  # no member's data was read
    assert list(tmp_path.iterdir()) == []


def test_a_directory_over_the_member_limit_opens_no_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = write_tree(tmp_path / "many", {f"f{i:03d}": b"data" for i in range(300)})
    opened: list[str] = []
    real_open = LocalDirectorySource.open_member

    def recording(self: LocalDirectorySource, entry: Listed) -> BinaryIO:
        opened.append(entry.name)
        return real_open(self, entry)

    monkeypatch.setattr(LocalDirectorySource, "open_member", recording)
    with pytest.raises(ExtractionError) as caught:
        package(root, tmp_path / "m.zip", PackageOptions(limits=Limits(max_members=299)))
    print(f"files opened before the refusal: {len(opened)}")
    assert opened == []
    assert str(caught.value) == (
        f"{root}: the directory has more than 299 members (300 listed); raise the member "
        "limit (--max-members) if this directory is trusted"
    )


@pytest.mark.parametrize(
    ("error", "refusal", "advice"),
    [
        (errno.EACCES, "it cannot be read (Permission denied)", "make the file readable by this"),
        (errno.EIO, "it cannot be read (Input/output error)", "check the file system"),
    ],
)
def test_a_file_that_cannot_be_opened_is_refused_as_what_it_is(
    error: int, refusal: str, advice: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # REVIEW2 item 11: an unreadable file was reported as "changed after the directory
    # was listed"; root reads any file, so the operating system's answer is stood in for
    root = write_tree(tmp_path / "m", {"a.bin": b"a", "unread": b"u"})
    real_open = os.open

    def denying(path: Any, flags: int, *args: Any, **kwargs: Any) -> int:
        if str(path).endswith("/unread"):
            raise OSError(error, os.strerror(error), str(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", denying)
    with pytest.raises(ExtractionError) as caught:
        package(root, tmp_path / "out.zip")
    message = str(caught.value)
    assert message.startswith(f"{root}: member 'unread': {refusal}; {advice}"), message
    assert "changed" not in message
    assert not (tmp_path / "out.zip").exists()


def test_a_directory_with_latin1_names_packages_with_name_encoding(tmp_path: Path) -> None:
    # REVIEW2 item 12: --name-encoding was ignored for directory sources
    root = write_tree(tmp_path / "m", {"a.bin": b"a"})
    latin1 = os.open(os.fsencode(root) + b"/caf\xe9.bin", os.O_CREAT | os.O_WRONLY, 0o644)
    os.write(latin1, b"cafe")
    os.close(latin1)
    with pytest.raises(ExtractionError) as caught:
        package(root, tmp_path / "out.zip")
    assert "pass --name-encoding ENC" in str(caught.value)
    assert "archive" not in str(caught.value)  # the advice is to rename the files
    package(root, tmp_path / "out.zip", PackageOptions(name_encoding="latin-1"))
    assert read_zip(tmp_path / "out.zip") == {"a.bin": b"a", "caf\u00e9.bin": b"cafe"}


def test_an_included_name_of_a_hard_linked_file_is_a_file(tmp_path: Path) -> None:
    # REVIEW2 item 14: --include 'shards/*' failed because another name of the inode,
    # outside the selection, was walked first
    weights = os.urandom(1000)
    root = write_tree(tmp_path / "hl", {"model.bin": weights})
    (root / "shards").mkdir()
    os.link(root / "model.bin", root / "shards" / "model.bin")
    package(root, tmp_path / "shards.zip", PackageOptions(include=("shards/*",)))
    assert read_zip(tmp_path / "shards.zip") == {"shards/model.bin": weights}
    package(root, tmp_path / "all.zip")  # both selected: the later name is a link to it
    assert read_zip(tmp_path / "all.zip") == {
        "model.bin": weights,
        "shards/model.bin": b"../model.bin",  # a ZIP link's data is its target
    }


S3_NAMES = [
    ("/x", "absolute path (its key has '//' where the prefix ends)"),
    ("../evil", "contains '..'"),
    ("a\\b", "backslash"),
    ("bell\x07", "control characters"),
    ("d/" * 2100 + "x", "over the 4,096 bytes"),
]


@pytest.mark.parametrize(("key", "reason"), S3_NAMES)
def test_an_s3_key_is_refused_with_advice_about_keys(key: str, reason: str, tmp_path: Path) -> None:
    # REVIEW2 item 15: key m//x was told to "rebuild the archive (tar -C DIR .)"
    source = Recorded(_files("ok.bin", key), TreeFormat.S3_PREFIX)
    with pytest.raises(ExtractionError) as caught:
        package(source, tmp_path / "out.zip")
    message = str(caught.value)
    assert reason in message
    assert "archive" not in message and "tar " not in message
    assert "copy the object to a" in message


def test_two_keys_for_one_member_are_refused_with_advice_about_keys(tmp_path: Path) -> None:
    for names in (("a/b.bin", "a//b.bin"), ("a", "a/b")):
        source = Recorded(_files(*names), TreeFormat.S3_PREFIX)
        with pytest.raises(ExtractionError) as caught:
            package(source, tmp_path / "out.zip")
        assert "archive" not in str(caught.value)
        assert "copy one object to another key" in str(caught.value)


def test_two_keys_that_differ_only_by_normalization_are_refused_as_keys(tmp_path: Path) -> None:
    source = Recorded(_files("caf\u00e9.bin", "cafe\u0301.bin"), TreeFormat.S3_PREFIX)
    with pytest.raises(ExtractionError) as caught:
        package(source, tmp_path / "out.zip")
    assert "only by Unicode normalization" in str(caught.value)
    assert str(caught.value).endswith(
        "copy one of the two objects to a key whose name differs visibly, or package a "
        "prefix that holds one"
    )


def test_a_directory_name_is_refused_with_advice_about_files(tmp_path: Path) -> None:
    root = write_tree(tmp_path / "m", {"a\\b.bin": b"x", "ok.bin": b"y"})
    with pytest.raises(ExtractionError) as caught:
        package(root, tmp_path / "out.zip")
    assert str(caught.value) == (
        f"{root}: member 'a\\\\b.bin': the name contains a backslash (a Windows path "
        "separator); rename the file (a ZIP reader would misread the name), or move it out "
        "of the directory"
    )


def test_reading_a_tree_keeps_only_the_name_checks_per_member() -> None:
    # REVIEW2 item 8: memory grew with the member count beyond what the checks need (a
    # set of every selected name, kept only for hard links); what is left per member is
    # the MemberGuard's name tree (about 100 bytes for a one-part name)
    names = [f"model-weights-file-{index:06d}.bin" for index in range(20_000)]
    source = Recorded(_files(*names), TreeFormat.S3_PREFIX)
    reader = TreeReader(source, Limits())
    held: list[int] = []
    tracemalloc.start()
    try:
        for count, _ in enumerate(reader.members(with_data=False), start=1):
            if count in (2_000, 20_000):
                held.append(tracemalloc.get_traced_memory()[0])
    finally:
        tracemalloc.stop()
    per_member = (held[1] - held[0]) / 18_000
    print(f"reading a tree holds {per_member:,.0f} more bytes per member")
    assert per_member < 150  # 209 before
