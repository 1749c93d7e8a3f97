"""Memory grows with the bytes of distinct names, not with the square of a name's depth
(issue 8 review: a 70 KB tar holding one name of 32,000 ``d/`` levels took 1,044 MB of
peak RSS to inspect; a 240 KB zip with two such names, 1.8 GB)."""

from __future__ import annotations

import io
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

from monitor.units import MiB
from tests.helpers import FIXED_MTIME, python_env
from tests.integration.test_member_memory import MEASURED_CHILD

REFUSAL_PEAK = 80 * MiB
"""An interpreter with the handler imported peaks near 45 MiB; refusing may add little."""
DEEP_MEMBERS = 1_000
DEEP_LEVELS = 2_000
DEEP_PEAK = 400 * MiB
"""1,000 names of 2,000 fresh levels: 2 million components at about 125 bytes each (peak
290 MiB measured; the quadratic bookkeeping kept every parent's whole path: about 4 GB)."""


def measured(*argv: str) -> tuple[int, str, int]:
    """Exit code, stderr and peak RSS (VmHWM) of ``python -m handler ARGV`` in a child."""
    result = subprocess.run(
        [sys.executable, "-c", MEASURED_CHILD, *argv],
        capture_output=True,
        text=True,
        env=python_env(),
        timeout=600,
        check=False,
    )
    head, _, peak = result.stderr.rpartition("peak_rss_bytes=")
    return result.returncode, head, int(peak)


def test_a_32000_level_name_is_refused_cheaply(tmp_path: Path) -> None:
    archive = tmp_path / "deep.tar"
    with tarfile.open(archive, "w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("d/" * 32_000 + "x")
        info.size = 1
        tar.addfile(info, io.BytesIO(b"x"))
    code, err, peak = measured("inspect", str(archive))
    print(f"64,001-byte tar name: exit {code}, peak RSS {peak / MiB:.1f} MiB")
    assert code == 1 and err.startswith("error: ") and err.count("\n") == 1
    assert "(PATH_MAX)" in err
    assert peak < REFUSAL_PEAK


def test_two_60000_byte_zip_names_are_refused_cheaply(tmp_path: Path) -> None:
    archive = tmp_path / "deep.zip"
    with zipfile.ZipFile(archive, "w") as written:
        written.writestr("d/" * 30_000 + "a", b"a")
        written.writestr("d/" * 30_000 + "b", b"b")
    out = tmp_path / "out.zip"
    code, err, peak = measured("package", str(archive), str(out))
    print(f"two 60,001-byte zip names: exit {code}, peak RSS {peak / MiB:.1f} MiB")
    assert code == 1 and "(PATH_MAX)" in err
    assert peak < REFUSAL_PEAK
    assert not out.exists()


def test_many_deep_legal_names_keep_memory_linear(tmp_path: Path) -> None:
    """Each member starts a fresh chain of 2,000 levels (4,006 bytes, within PATH_MAX), so
    nothing is shared between members: the worst case for the implied directories."""
    archive = tmp_path / "deep.tar"
    chain = "d/" * DEEP_LEVELS
    with tarfile.open(archive, "w", format=tarfile.PAX_FORMAT) as tar:
        for index in range(DEEP_MEMBERS):
            info = tarfile.TarInfo(f"{index:04d}/{chain}f")
            info.mtime = FIXED_MTIME
            tar.addfile(info)
    code, err, peak = measured("inspect", str(archive))
    print(
        f"{DEEP_MEMBERS:,} members of {DEEP_LEVELS:,} fresh levels: exit {code}, "
        f"peak RSS {peak / MiB:.1f} MiB"
    )
    assert code == 0, err
    assert peak < DEEP_PEAK
