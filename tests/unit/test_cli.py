"""The command line: package and inspect, and one clean line for every bad input."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from handler.cli.main import main
from handler.cli.progress import ProgressBar
from handler.packaging import PackageOptions, package
from tests.helpers import (
    ALL_FORMATS,
    ArchiveKind,
    build_archive,
    python_env,
    read_zip,
    tar_info,
    tar_with,
    unzip_test,
)

FILES = {
    "model/config.json": b'{"layers": 2}',
    "model/weights.safetensors": bytes(range(256)) * 2000,
    "model/tokenizer.json": b'{"vocab": {"a": 1}}' * 100,
}


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), out=out, err=err)
    return code, out.getvalue(), err.getvalue()


@pytest.mark.parametrize("kind", ALL_FORMATS)
def test_package_round_trips_every_format(tmp_path: Path, kind: ArchiveKind) -> None:
    archive = build_archive(tmp_path / f"m.{kind}", FILES, kind)
    dest = tmp_path / "out.zip"
    code, out, err = run("package", str(archive), str(dest), "--json")
    assert (code, err) == (0, "")
    result = json.loads(out)
    assert result["status"] == "succeeded"
    assert result["files"] == 3
    assert result["bytes_in"] == archive.stat().st_size
    assert result["bytes_out"] == dest.stat().st_size
    assert result["uncompressed_bytes"] == sum(len(v) for v in FILES.values())
    assert result["peak_rss_bytes"] > 0 and result["duration_s"] >= 0
    assert read_zip(dest) == FILES
    unzip_test(dest)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([archive.name, "out.zip"])


def test_include_store_and_level(tmp_path: Path) -> None:
    archive = build_archive(tmp_path / "m.tgz", FILES, "tar.gz")
    dest = tmp_path / "json-only.zip"
    code, out, _ = run(
        "package", str(archive), str(dest), "--include", "*.json", "--compression", "store"
    )
    assert code == 0 and "packaged 2 files" in out
    assert set(read_zip(dest)) == {"model/config.json", "model/tokenizer.json"}


def test_include_that_matches_nothing_is_an_error_and_writes_nothing(tmp_path: Path) -> None:
    archive = build_archive(tmp_path / "m.tgz", FILES, "tar.gz")
    dest = tmp_path / "none.zip"
    code, _, err = run("package", str(archive), str(dest), "--include", "*.onnx")
    assert code == 1
    assert err.startswith("error: ") and "no file member matches" in err
    assert not dest.exists() and len(list(tmp_path.iterdir())) == 1


def test_inspect_lists_members_and_space_per_strategy(tmp_path: Path) -> None:
    archive = build_archive(tmp_path / "m.zip", FILES, "zip")
    code, out, _ = run("inspect", str(archive), "--json")
    assert code == 0
    report = json.loads(out)
    assert report["format"] == "zip"
    assert report["files"] == 3
    assert report["space_needed"]["stream"]["scratch_bytes"] == 0
    assert report["space_needed"]["extract"]["scratch_bytes"] >= report["total_size"]
    assert {m["name"] for m in report["members"]} == set(FILES)
    code, out, _ = run("inspect", str(archive))
    assert code == 0 and "model/weights.safetensors" in out and "extract" in out


def _bad_inputs(tmp_path: Path) -> dict[str, tuple[list[str], str]]:
    good = build_archive(tmp_path / "good.tgz", FILES, "tar.gz")
    truncated = tmp_path / "truncated.tgz"
    truncated.write_bytes(good.read_bytes()[:-200])
    text = tmp_path / "notes.txt"
    text.write_text("not an archive at all\n" * 40)
    hostile = tar_with(tmp_path / "hostile.tar", [(tar_info("../../etc/cron.d/x"), b"x")])
    out = tmp_path / "out"
    out.mkdir()
    return {
        "missing": (["package", str(tmp_path / "nope.tgz"), str(out / "a.zip")], "no such file"),
        "not an archive": (["package", str(text), str(out / "a.zip")], "not a supported archive"),
        "truncated": (["package", str(truncated), str(out / "a.zip")], "truncated or corrupt"),
        "hostile": (["package", str(hostile), str(out / "a.zip")], "'..'"),
        "no directory": (["package", str(good), str(tmp_path / "nodir/a.zip")], "does not exist"),
        "dest is a dir": (["package", str(good), str(out)], "is a directory"),
        "bad level": (["package", str(good), str(out / "a.zip"), "--level", "12"], "level"),
    }


@pytest.mark.parametrize(
    "case",
    ["missing", "not an archive", "truncated", "hostile", "no directory", "dest is a dir"],
)
def test_bad_input_is_one_error_line_and_no_partial_output(tmp_path: Path, case: str) -> None:
    argv, expected = _bad_inputs(tmp_path)[case]
    before = sorted(p.name for p in (tmp_path / "out").iterdir())
    result = subprocess.run(
        [sys.executable, "-m", "handler", *argv], capture_output=True, text=True, check=False
    )
    assert result.returncode == 1
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert expected in lines[0]
    assert "Traceback" not in result.stderr
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == before


def test_usage_errors_exit_2(tmp_path: Path) -> None:
    argv, _ = _bad_inputs(tmp_path)["bad level"]
    with pytest.raises(SystemExit) as caught:
        main(argv, out=io.StringIO(), err=io.StringIO())
    assert caught.value.code == 2


def test_a_failure_midway_leaves_no_destination(tmp_path: Path) -> None:
    """A corrupt member late in the archive: the ZIP was half written, then removed."""
    archive = tmp_path / "late-corruption.tar"
    with tarfile.open(archive, "w") as tar:
        for name, data in FILES.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        info = tar_info("/absolute/at/the/end")
        tar.addfile(info)
    dest = tmp_path / "out.zip"
    with pytest.raises(Exception, match="absolute path"):
        package(archive, dest, PackageOptions())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["late-corruption.tar"]


def test_progress_bar_draws_in_place_and_ends_the_line() -> None:
    stream = io.StringIO()
    clock = iter([0.0, 0.5, 1.0, 2.0])
    bar = ProgressBar(stream, "packaging", clock=lambda: next(clock))
    bar.update(50, 100)
    bar.update(100, 100)
    bar.close()
    text = stream.getvalue()
    assert text.count("\r") == 2 and text.endswith("\n")
    assert " 50%" in text and "100%" in text


def test_no_progress_bar_when_output_is_not_a_terminal(tmp_path: Path) -> None:
    archive = build_archive(tmp_path / "m.tar", FILES, "tar")
    code, out, err = run("package", str(archive), str(tmp_path / "o.zip"))
    assert code == 0 and err == "" and "\r" not in out


def sha256(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("how", ["same path", "dot path", "symlink", "hard link"])
def test_a_destination_that_is_the_source_is_refused_and_the_source_untouched(
    tmp_path: Path, how: str
) -> None:
    # issue 8: `python -m handler package self.tar.gz self.tar.gz` exited 0, the file a ZIP
    from tests.helpers import python_env

    archive = build_archive(tmp_path / "x.tar.gz", FILES, "tar.gz")
    before = sha256(archive)
    dest = {
        "same path": "x.tar.gz",
        "dot path": "./sub/../x.tar.gz",
        "symlink": "link.zip",
        "hard link": "hard.zip",
    }[how]
    (tmp_path / "sub").mkdir()
    (tmp_path / "link.zip").symlink_to("x.tar.gz")
    (tmp_path / "hard.zip").hardlink_to(archive)
    result = subprocess.run(
        [sys.executable, "-m", "handler", "package", "x.tar.gz", dest],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=python_env(),
        check=False,
        timeout=60,
    )
    print(how, result.returncode, result.stderr.strip(), before)
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.startswith("error: dest: is the source") and result.stderr.count("\n") == 1
    assert sha256(archive) == before
    assert tarfile.is_tarfile(archive)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "hard.zip",
        "link.zip",
        "sub",
        "x.tar.gz",
    ]


@pytest.mark.parametrize(
    ("dest", "message"),
    [
        ("d" * 300 + ".zip", "dest: a path component is 304 bytes; file names hold at most 255"),
        ("s3://my-bucket/" + "k" * 2000, "dest: the key is 2,000 bytes of UTF-8"),
        ("s3://my-bucket/" + "é" * 600, "dest: the key is 1,200 bytes of UTF-8"),
        ("s3://Bad_Bucket_/k.zip", "dest: bucket 'Bad_Bucket_' is not a valid S3 bucket name"),
        ("s3://my-bucket/caf\udce9.zip", "dest: contains an unpaired surrogate"),
    ],
)
def test_a_destination_the_target_cannot_hold_is_refused_naming_it(
    tmp_path: Path, dest: str, message: str
) -> None:
    archive = build_archive(tmp_path / "x.tar.gz", FILES, "tar.gz")
    code, out, err = run("package", str(archive), dest)
    assert (code, out) == (1, "")
    assert err.startswith(f"error: {message}") and len(err) < 2048, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.tar.gz"]


def test_a_local_path_with_undecodable_bytes_is_a_valid_file_name(tmp_path: Path) -> None:
    # PEP 383: argv holds a Latin-1 file name's byte as U+DCE9; it names a real file
    archive = build_archive(tmp_path / "x.tar.gz", FILES, "tar.gz")
    dest = tmp_path / "caf\udce9.zip"
    code, _, err = run("package", str(archive), str(dest))
    assert (code, err) == (0, "")
    assert read_zip(dest) == FILES


def test_the_same_s3_key_as_source_and_dest_is_refused_before_any_request() -> None:
    code, out, err = run(
        "package",
        "s3://models/m.tar.gz",
        "s3://models/m.tar.gz",
        "--endpoint-url",
        "http://127.0.0.1:9",  # nothing listens: a request would fail differently
    )
    assert (code, out) == (1, "")
    assert err.startswith("error: dest: is the source ('s3://models/m.tar.gz')")


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
