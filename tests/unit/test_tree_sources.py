"""Tree sources (a directory, an S3 prefix) read member by member: the same name safety
and limits as an archive's, pinned to what was listed, and accepted where sources are
named (the Lambda event, ``open_source``)."""

from __future__ import annotations

import io
import os
import tracemalloc
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, cast

import pytest

from handler.archive import Limits, StreamingExtractor
from handler.errors import ExtractionError, InputError, SourceReadError
from handler.events import EventValidationError, StrategyChoice, Target, parse_event
from handler.locations.directory import LocalDirectorySource
from handler.locations.listing import Listed, TreeSource
from handler.locations.local import open_source
from handler.members import MemberKind, TreeFormat
from handler.packaging import PackageOptions, package, package_target
from handler.settings import HandlerSettings
from tests.helpers import read_zip, write_tree

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client


class ListedOnly(TreeSource):
    """A tree source made of a hand-written listing; each file holds its size of b"x"."""

    format = TreeFormat.S3_PREFIX

    def __init__(self, entries: Sequence[Listed]) -> None:
        self.listed = tuple(entries)
        self.opened: list[str] = []

    @property
    def name(self) -> str:
        return "s3://bucket/models/"

    def entries(self) -> Iterator[Listed]:
        return iter(self.listed)

    def holds(self, location: str) -> bool:
        return location.startswith(self.name)

    def open_member(self, entry: Listed) -> BinaryIO:
        self.opened.append(entry.name)
        return io.BytesIO(b"x" * entry.size)


def _file(name: str, size: int = 4) -> Listed:
    return Listed(name, MemberKind.FILE, size)


def test_the_event_accepts_a_prefix_source_but_not_a_prefix_destination() -> None:
    event = parse_event(
        {"targets": [{"source": "s3://bkt/models/llama/", "destination": "s3://bkt/out/llama.zip"}]}
    )
    assert event.targets[0].source == "s3://bkt/models/llama/"
    with pytest.raises(EventValidationError, match="not a bucket or prefix"):
        parse_event(
            {"targets": [{"source": "s3://bkt/models/llama/", "destination": "s3://bkt/o/"}]}
        )
    with pytest.raises(EventValidationError, match=r"s3://bucket/prefix/"):
        parse_event({"targets": [{"source": "s3://bkt/", "destination": "s3://bkt/o.zip"}]})


def test_a_path_to_a_directory_opens_a_directory_source(tmp_path: Path) -> None:
    write_tree(tmp_path / "m", {"a.bin": b"abc", "d/b.bin": b"de"})
    source = open_source(tmp_path / "m")
    assert isinstance(source, LocalDirectorySource)
    assert (source.size(), source.file_count()) == (5, 2)  # from the listing, no data read
    with pytest.raises(InputError, match="is a directory, read member by member"):
        source.open_stream()


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("../escape.bin", "contains '..'"),
        ("/etc/passwd", "absolute path"),
        ("a\\b.bin", "backslash"),
        ("bell\x07.bin", "control characters"),
    ],
)
def test_listed_names_pass_the_archive_name_checks(name: str, reason: str, tmp_path: Path) -> None:
    source = ListedOnly([_file("ok.bin"), _file(name)])
    with pytest.raises(ExtractionError, match=reason):
        package(source, tmp_path / "out.zip")
    assert list(tmp_path.iterdir()) == []  # the destination is absent


def test_limits_are_checked_from_the_listing_before_any_data_is_read(tmp_path: Path) -> None:
    source = ListedOnly([_file("a.bin", 8), _file("b.bin", 8)])
    options = PackageOptions(limits=Limits(max_total_size=10))
    with pytest.raises(ExtractionError, match="unpacks to more than 10 B"):
        package(source, tmp_path / "out.zip", options)
    assert source.opened == []  # refused from the listing alone
    assert not (tmp_path / "out.zip").exists()
    many = ListedOnly([_file(f"{i}.bin") for i in range(4)])
    with pytest.raises(ExtractionError, match="more than 3 members"):
        package(many, tmp_path / "out.zip", PackageOptions(limits=Limits(max_members=3)))


def test_a_name_listed_twice_after_normalising_is_refused(tmp_path: Path) -> None:
    source = ListedOnly([_file("a/b.bin"), _file("a//b.bin")])  # S3 keys may do this
    with pytest.raises(ExtractionError, match="appears twice"):
        package(source, tmp_path / "out.zip")


def test_a_file_replaced_or_grown_after_the_listing_fails_clearly(tmp_path: Path) -> None:
    root = write_tree(tmp_path / "m", {"a.bin": b"abc", "b.bin": b"1234"})
    source = LocalDirectorySource(root)
    entries = {e.name: e for e in source.entries()}
    (root / "new").write_bytes(b"xyz")
    (root / "new").replace(root / "a.bin")  # another inode at the name
    with pytest.raises(SourceReadError, match="another file is at its name now"):
        source.open_member(entries["a.bin"])
    with (root / "b.bin").open("ab") as grown:
        grown.write(b"5")
    with pytest.raises(SourceReadError, match="held 4 bytes when listed and 5 now"):
        source.open_member(entries["b.bin"])


def test_a_tree_that_changes_between_the_plan_and_the_read_fails(tmp_path: Path) -> None:
    root = write_tree(tmp_path / "m", {"a.bin": b"abc"})
    source = LocalDirectorySource(root)
    assert source.totals() == (1, 3)  # the plan
    (root / "b.bin").write_bytes(b"added after the plan")
    with pytest.raises(SourceReadError, match="the plan listed 1 files of 3 bytes, the second"):
        package(source, tmp_path / "out.zip")
    assert not (tmp_path / "out.zip").exists()


def test_a_file_that_grows_while_it_is_read_fails_and_leaves_nothing(tmp_path: Path) -> None:
    root = write_tree(tmp_path / "m", {"a.bin": b"abc"})
    source = LocalDirectorySource(root)
    opened = source.open_member

    def open_then_grow(entry: Listed) -> BinaryIO:
        stream = opened(entry)
        with (root / entry.name).open("ab") as grown:
            grown.write(b"more")
        return stream

    source.open_member = open_then_grow  # type: ignore[method-assign]
    with pytest.raises(SourceReadError, match="holds more bytes than the 3 listed"):
        package(source, tmp_path / "out.zip")
    assert not (tmp_path / "out.zip").exists()


def test_fifos_are_refused_when_listed_and_non_utf8_names_before_any_file_is_read(
    tmp_path: Path,
) -> None:
    root = write_tree(tmp_path / "m", {"a.bin": b"a"})
    os.mkfifo(root / "pipe")
    with pytest.raises(ExtractionError, match="'pipe': it is a FIFO or socket"):
        list(LocalDirectorySource(root).entries())
    (root / "pipe").unlink()
    os.close(os.open(os.fsencode(root) + b"/caf\xe9.bin", os.O_CREAT | os.O_WRONLY))
    with pytest.raises(ExtractionError, match=r"'caf\\xe9.bin': its name is not valid UTF-8"):
        package(root, tmp_path / "out.zip")  # the longest name: refused from the plan
    assert not (tmp_path / "out.zip").exists()


def test_hard_links_are_stored_once_and_links_inside_are_kept(tmp_path: Path) -> None:
    root = write_tree(tmp_path / "m", {"a.bin": b"weights", "sub/c.txt": b"c"})
    os.link(root / "a.bin", root / "b.bin")
    (root / "sub" / "up").symlink_to("../a.bin")
    info = StreamingExtractor().get_archive_info(LocalDirectorySource(root))
    kinds = {m.name: (m.kind.value, m.link_target) for m in info.members}
    assert kinds["b.bin"] == ("hardlink", "a.bin")
    assert kinds["sub/up"] == ("symlink", "../a.bin")
    assert (info.format, info.file_count, info.total_size) == ("directory", 2, 8)
    package(root, tmp_path / "out.zip")
    assert read_zip(tmp_path / "out.zip")["a.bin"] == b"weights"
    # REVIEW2 item 14: every name of a hard-linked file is a file, so selecting only the
    # later name stores it as a file of its own
    package(root, tmp_path / "b.zip", PackageOptions(include=("b.bin",)))
    assert read_zip(tmp_path / "b.zip") == {"b.bin": b"weights"}


def test_listing_memory_does_not_grow_with_the_member_count(tmp_path: Path) -> None:
    # Each pass over the listing keeps only its totals (the member limit is 200,000: a
    # listing held whole, or a map of every inode, cost about 60 MiB more peak RSS there).
    root = tmp_path / "m"
    for index in range(20_000):
        shard = root / f"shard-{index // 1000:02d}"
        if index % 1000 == 0:
            shard.mkdir(parents=True)
        os.close(os.open(shard / f"file-{index:05d}.bin", os.O_CREAT | os.O_WRONLY, 0o644))
    source = LocalDirectorySource(root)
    blocks: list[int] = []
    tracemalloc.start()
    try:
        for listed, _ in enumerate(source.entries(), start=1):
            if listed in (2_000, 20_000):  # memory blocks the pass holds as it goes on
                snapshot = tracemalloc.take_snapshot()
                blocks.append(sum(stat.count for stat in snapshot.statistics("filename")))
    finally:
        tracemalloc.stop()
    growth = blocks[1] - blocks[0]
    print(f"listing {listed:,} entries: {growth:,} more memory blocks held at 20,000 than 2,000")
    assert listed == 20_020
    # Blocks, not bytes: the interpreter's table of interned names (pathlib interns each
    # name) may be reallocated larger once, in one block.
    assert growth < 1_000  # one directory's names at a time, not each entry's


def test_a_destination_inside_the_source_tree_is_refused(tmp_path: Path) -> None:
    root = write_tree(tmp_path / "m", {"a.bin": b"a"})
    with pytest.raises(InputError, match=r"is inside the source .*; write it outside"):
        package(root, root / "sub" / ".." / "m.zip")
    assert sorted(p.name for p in root.iterdir()) == ["a.bin"]
    prefix = ListedOnly([_file("a.bin")])
    with pytest.raises(InputError, match=r"is inside the source s3://bucket/models/"):
        package(prefix, "s3://bucket/models/m.zip", s3=cast("S3Client", object()))
    package(root, tmp_path / "m-sibling.zip")  # beside it (a shared name start) is fine


@pytest.mark.parametrize("strategy", ["auto", "extract"])
def test_a_directory_target_packages_with_either_strategy(tmp_path: Path, strategy: str) -> None:
    files = {"config.json": b"{}", "shards/a.bin": b"a" * 5000, "shards/b.bin": b"b"}
    root = write_tree(tmp_path / "m", files)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    result = package_target(
        Target(f"{root}/", str(tmp_path / "m.zip")),
        HandlerSettings(scratch_dir=str(scratch), tmp_critical=0.99),
        choice=StrategyChoice(strategy),
    )
    assert result.status == "succeeded", result.error
    assert result.strategy == ("stream" if strategy == "auto" else "extract")  # auto: no staging
    assert (result.files, result.bytes_in) == (3, 5003)
    assert read_zip(tmp_path / "m.zip") == files
    assert list(scratch.iterdir()) == []  # the scratch copy is gone
