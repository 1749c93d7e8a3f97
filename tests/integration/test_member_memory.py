"""Memory per member: the default limit of 200,000 members packages from a local tar into a
local ZIP within 150 MiB peak RSS (issue 8 item 10: 199,000 empty files peaked at 276 MiB,
half of it the read-back check rebuilding the central directory through ``zipfile``)."""

from __future__ import annotations

import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from handler.archive.safety import Limits
from monitor.units import MiB
from tests.helpers import FIXED_MTIME, python_env

MAX_PEAK_RSS = 150 * MiB
# VmHWM, not ru_maxrss: the latter carries this (large) parent's peak across the exec.
MEASURED_CHILD = (
    "import sys\n"
    "from handler.cli.main import main\n"
    "from monitor.sampler import peak_rss_bytes\n"
    "code = main(sys.argv[1:])\n"
    "print(f'peak_rss_bytes={peak_rss_bytes()}', file=sys.stderr)\n"
    "sys.exit(code)\n"
)


def many_empty_files(path: Path, count: int) -> Path:
    """A plain tar of ``count`` empty files, 1,000 to a directory."""
    with tarfile.open(path, "w", format=tarfile.GNU_FORMAT) as tar:
        for index in range(count):
            info = tarfile.TarInfo(f"model/shard-{index // 1000:03d}/file-{index:06d}.bin")
            info.mtime = FIXED_MTIME
            tar.addfile(info)
    return path


@pytest.mark.slow
def test_the_default_member_limit_fits_in_150_mib(tmp_path: Path) -> None:
    count = Limits().max_members
    assert count == 200_000
    archive = many_empty_files(tmp_path / "many.tar", count)
    out = tmp_path / "many.zip"
    result = subprocess.run(
        [sys.executable, "-c", MEASURED_CHILD, "package", str(archive), str(out)],
        capture_output=True,
        text=True,
        env=python_env(),
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    peak = int(result.stderr.rsplit("peak_rss_bytes=", 1)[1])
    print(f"{count:,} members, local tar -> local zip: peak RSS {peak / MiB:.1f} MiB")
    assert peak < MAX_PEAK_RSS
    with zipfile.ZipFile(out) as written:
        names = written.namelist()
    assert len(names) == count and names[-1] == f"model/shard-199/file-{count - 1:06d}.bin"
