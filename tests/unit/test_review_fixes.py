"""Regressions found in review: each test is a scenario that once went wrong."""

from __future__ import annotations

import io
import math
import stat
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError, NoCredentialsError, ParamValidationError

from handler.errors import (
    AccessDeniedError,
    CompressionError,
    ExtractionError,
    InputError,
    RemoteServiceError,
)
from handler.extract import StreamingExtractor
from handler.locations import LocalDestination, LocalSource
from handler.s3 import translate
from handler.storage import StorageManager
from handler.strategies import PackageOptions, run_extract, run_stream
from handler.zipformat import dos_datetime
from tests.helpers import python_env, read_zip, tar_info, tar_with


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


def test_a_selected_hard_link_whose_target_is_left_out_is_an_error(tmp_path: Path) -> None:
    archive = tar_with(
        tmp_path / "hl.tar",
        [
            (tar_info("weights.dat"), b"w" * 100),
            tar_info("model.bin", tarfile.LNKTYPE, "weights.dat"),
        ],
    )
    dest = LocalDestination(tmp_path / "out.zip")
    with pytest.raises(ExtractionError, match="include patterns leave out"):
        run_stream(LocalSource(archive), dest, PackageOptions(include=("*.bin",)))
    assert not (tmp_path / "out.zip").exists()
    run_stream(LocalSource(archive), dest, PackageOptions(include=("*.bin", "*.dat")))
    assert read_zip(tmp_path / "out.zip")["weights.dat"] == b"w" * 100


def test_both_strategies_store_hard_links_as_symbolic_links(tmp_path: Path) -> None:
    archive = tar_with(
        tmp_path / "hl.tar",
        [
            (tar_info("data/w.bin"), b"w" * 5000),
            tar_info("alias.bin", tarfile.LNKTYPE, "data/w.bin"),
        ],
    )
    kinds = {}
    for name, runner in (("stream", run_stream), ("extract", None)):
        out = tmp_path / f"{name}.zip"
        if runner is not None:
            runner(LocalSource(archive), LocalDestination(out), PackageOptions())
        else:
            scratch = tmp_path / "scratch"
            scratch.mkdir()
            run_extract(
                LocalSource(archive),
                LocalDestination(out),
                PackageOptions(),
                scratch_root=scratch,
                storage=StorageManager(scratch),
                critical=0.99,
            )
        with zipfile.ZipFile(out) as z:
            kinds[name] = sorted(
                (i.filename, stat.S_ISLNK(i.external_attr >> 16))
                for i in z.infolist()
                if not i.is_dir()
            )
    assert kinds["stream"] == [("alias.bin", True), ("data/w.bin", False)]
    assert len(kinds["extract"]) == 2 and sum(link for _, link in kinds["extract"]) == 1


def test_extract_never_zips_a_scratch_directory_that_lost_files(tmp_path: Path) -> None:
    archive = tar_with(tmp_path / "a.tar", [(tar_info("a.bin"), b"a"), (tar_info("b.bin"), b"b")])
    scratch = tmp_path / "scratch"
    scratch.mkdir()

    class Vandal:
        """Removes an extracted file when compression starts (as a cleanup once did)."""

        def phase(self, name: str) -> object:
            import contextlib

            if name == "compress":
                for path in scratch.rglob("a.bin"):
                    path.unlink()
            return contextlib.nullcontext()

        def file_done(self) -> None:
            pass

    with pytest.raises(CompressionError, match="1 files and 0 links were zipped but 2"):
        run_extract(
            LocalSource(archive),
            LocalDestination(tmp_path / "out.zip"),
            PackageOptions(),
            scratch_root=scratch,
            storage=StorageManager(scratch),
            critical=0.99,
            phases=Vandal(),  # type: ignore[arg-type]
        )
    assert not (tmp_path / "out.zip").exists() and list(scratch.iterdir()) == []


def test_extracted_files_stay_owner_readable(tmp_path: Path) -> None:
    info = tar_info("secret.bin")
    info.mode = 0o200
    archive = tar_with(tmp_path / "m.tar", [(info, b"x")])
    StreamingExtractor().extract_streaming(archive, tmp_path / "out")
    assert stat.S_IMODE((tmp_path / "out" / "secret.bin").stat().st_mode) & stat.S_IRUSR


@pytest.mark.parametrize("mtime", [1e18, -1e18, math.nan, math.inf])
def test_unrepresentable_mtimes_clamp_to_the_dos_range(mtime: float) -> None:
    _, date = dos_datetime(mtime)
    assert 1980 <= (date >> 9) + 1980 <= 2107


@pytest.mark.parametrize("mtime", [1e18, -1e18])
def test_a_member_with_an_absurd_mtime_still_packages(tmp_path: Path, mtime: float) -> None:
    info = tar_info("odd.bin")
    info.mtime = mtime
    info.size = 1
    archive = tmp_path / "odd.tar"
    with tarfile.open(archive, "w", format=tarfile.PAX_FORMAT) as tar:
        tar.addfile(info, io.BytesIO(b"x"))  # PAX stores the out-of-range mtime as text
    run_stream(LocalSource(archive), LocalDestination(tmp_path / "o.zip"), PackageOptions())
    assert read_zip(tmp_path / "o.zip") == {"odd.bin": b"x"}
    StreamingExtractor().extract_streaming(archive, tmp_path / "out")
    assert (tmp_path / "out" / "odd.bin").read_bytes() == b"x"


def test_non_network_s3_errors_are_permanent_and_say_what_to_do() -> None:
    denied = translate(NoCredentialsError(), "s3://b/k", reading_source=True)
    assert isinstance(denied, AccessDeniedError) and "credentials" in str(denied)
    invalid = translate(
        ParamValidationError(report="Invalid bucket name"), "s3://b/k", reading_source=False
    )
    assert isinstance(invalid, InputError)
    response: Any = {
        "Error": {"Code": "PreconditionFailed"},
        "ResponseMetadata": {"HTTPStatusCode": 412},
    }
    changed = translate(ClientError(response, "GetObject"), "s3://b/k", reading_source=True)
    assert isinstance(changed, RemoteServiceError) and changed.transient
    assert "changed while it was being read" in str(changed)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["sample", "/nonexistent-dir/x.tar.gz", "--size", "1M"], "does not exist"),
        (["package", "{archive}", "s3://bucket-only"], "must name an object"),
        (["package", "{archive}", "s3://b/k.zip", "--endpoint-url", "notaurl"], "http://"),
        (
            ["invoke", "{event}", "--emf-log", "/nonexistent-dir/run.log", "--tmp-size", "16M"],
            "cannot write the EMF log",
        ),
    ],
)
def test_cli_input_errors_are_one_line(tmp_path: Path, argv: list[str], message: str) -> None:
    archive = tar_with(tmp_path / "a.tar", [(tar_info("a"), b"a")])
    event = tmp_path.parent / f"{tmp_path.name}-event.json"
    event.write_text('{"targets": [{"source": "s3://b/k.tar", "destination": "s3://b/o.zip"}]}')
    args = [a.format(archive=archive, event=event) for a in argv]
    result = subprocess.run(
        [sys.executable, "-m", "handler", *args],
        capture_output=True,
        text=True,
        env=python_env()
        | {
            "AWS_ACCESS_KEY_ID": "x",
            "AWS_SECRET_ACCESS_KEY": "x",
            "AWS_DEFAULT_REGION": "us-east-1",
        },
        check=False,
        timeout=60,
    )
    event.unlink()
    lines = result.stderr.splitlines()
    assert result.returncode == 1 and len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ") and message in lines[0]
