"""On real, size-limited tmpfs mounts: big artifacts through a small /tmp, and full disks."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from handler.cli.sample import build_sample_artifact
from monitor.units import MiB
from tests.helpers import python_env, read_zip_names, unzip_test
from tests.namespaces import run_with_tmpfs

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def artifact_256(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("artifact") / "model.tar.gz"
    return build_sample_artifact(path, 256 * MiB, seed=7)


def test_a_256_mib_artifact_packages_with_a_32_mib_tmpdir(
    artifact_256: Path, tmp_path: Path
) -> None:
    small_tmp = tmp_path / "small-tmp"
    small_tmp.mkdir()
    out = tmp_path / "model.zip"
    env = python_env() | {"TMPDIR": str(small_tmp)}
    result = run_with_tmpfs(
        [sys.executable, "-m", "handler", "package", str(artifact_256), str(out), "--json"],
        {small_tmp: "32m"},
        env=env,
        after=f"echo left-on-tmpfs=$(ls -A {small_tmp} | wc -l)",
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.splitlines()[0])
    assert report["uncompressed_bytes"] == 256 * MiB
    assert "left-on-tmpfs=0" in result.stdout
    assert report["peak_rss_bytes"] < 150 * MiB
    assert len(read_zip_names(out)) == report["files"] + report["directories"]
    unzip_test(out)


def test_destination_disk_full_is_one_error_line_and_leaves_nothing(
    artifact_256: Path, tmp_path: Path
) -> None:
    small_out = tmp_path / "small-out"
    small_out.mkdir()
    result = run_with_tmpfs(
        [sys.executable, "-m", "handler", "package", str(artifact_256), str(small_out / "m.zip")],
        {small_out: "16m"},
        env=python_env(),
        after=f"echo left-on-destination=$(ls -A {small_out} | wc -l)",
    )
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "no space left" in lines[0] and str(small_out / "m.zip") in lines[0]
    assert "left-on-destination=0" in result.stdout


def test_disk_full_while_patching_a_small_members_header_is_still_one_clean_line(
    tmp_path: Path,
) -> None:
    """Small stored members fill the disk when the header patch flushes, not on a write."""
    from tests.helpers import tar_info, tar_with

    archive = tar_with(
        tmp_path / "many.tar",
        [(tar_info(f"m/{i:04d}.bin"), bytes(range(256)) * 64) for i in range(200)],
    )
    small_out = tmp_path / "tiny-out"
    small_out.mkdir()
    result = run_with_tmpfs(
        [
            sys.executable,
            "-m",
            "handler",
            "package",
            str(archive),
            str(small_out / "m.zip"),
            "--compression",
            "store",
        ],
        {small_out: "1m"},
        env=python_env(),
        after=f"echo left-on-destination=$(ls -A {small_out} | wc -l)",
    )
    lines = result.stderr.splitlines()
    assert result.returncode == 1 and len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ") and "no space left" in lines[0]
    assert "left-on-destination=0" in result.stdout
