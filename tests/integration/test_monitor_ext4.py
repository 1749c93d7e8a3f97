"""On a real ext4 with root's 5% reserve, filled by an unprivileged writer until ENOSPC:
the monitor and StorageManager read 100% at ENOSPC, and critical (0.97) fires before it.

Guards issue 8, item 9: the monitor said 91.8% at ENOSPC (used over f_blocks, which
counts root's reserve as free space this process can never use).
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import python_env

pytestmark = pytest.mark.slow
NOBODY = 65534
IMAGE_MIB = 64


@pytest.fixture
def world_readable_dir() -> Iterator[Path]:
    """A mount point outside pytest's root-only tmp_path, so nobody can reach it."""
    path = Path(tempfile.mkdtemp(prefix="tmpwarden-ext4-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _require_tools() -> None:
    if os.geteuid() != 0:
        pytest.skip("loop-mounting an ext4 image needs root")
    for tool in ("mkfs.ext4", "unshare", "setpriv", "mount"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed")


def test_an_unprivileged_fill_of_ext4_reads_100_percent_at_enospc(
    tmp_path: Path, world_readable_dir: Path
) -> None:
    _require_tools()
    image = tmp_path / "ext4.img"
    with image.open("wb") as handle:
        handle.truncate(IMAGE_MIB * 1024 * 1024)
    subprocess.run(
        ["mkfs.ext4", "-F", "-q", "-m", "5", str(image)], check=True, capture_output=True
    )
    mount = world_readable_dir / "mnt"
    mount.mkdir()
    mount.chmod(0o755)
    repo = Path(__file__).resolve().parents[2]
    writer = [
        "setpriv",
        f"--reuid={NOBODY}",
        f"--regid={NOBODY}",
        "--clear-groups",
        sys.executable,
        "-m",
        "tests.integration.reserve_scenario",
        str(mount),
    ]
    script = (
        f"mount -o loop {shlex.quote(str(image))} {shlex.quote(str(mount))} "
        "|| { echo MOUNT-REFUSED >&2; exit 97; }; "
        f"chown {NOBODY}:{NOBODY} {shlex.quote(str(mount))} && cd {shlex.quote(str(repo))} "
        f"&& {shlex.join(writer)}"
    )
    env = python_env() | {"PYTHONDONTWRITEBYTECODE": "1", "AWS_EMF_ENVIRONMENT": "Local"}
    result = subprocess.run(
        ["unshare", "-m", "--propagation", "private", "sh", "-c", script],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    if result.returncode == 97 or "unshare failed" in result.stderr:
        pytest.skip(f"loop-mounting in a private mount namespace is not permitted: {result.stderr}")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    print(
        f"ext4 {IMAGE_MIB} MiB, -m 5, writer uid {report['uid']}: ENOSPC after "
        f"{report['written']} bytes; monitor {report['monitor_fraction']:.4%}, "
        f"StorageManager {report['manager_fraction']:.4%}, root's view "
        f"{report['root_view_fraction']:.4%} (reserve {report['reserved_bytes']} bytes); "
        f"critical fired at {report['critical'][0]['fraction']:.4%} "
        f"with {report['critical'][0]['available']} bytes still writable"
    )
    assert report["uid"] == NOBODY
    assert report["monitor_fraction"] >= 0.999
    assert report["manager_fraction"] == pytest.approx(report["monitor_fraction"], abs=1e-6)
    # What the fix is about: root's view would have been about 95% here.
    assert report["root_view_fraction"] < 0.99
    [critical] = report["critical"]
    assert 0.97 <= critical["fraction"] < 0.999
    assert critical["available"] > 0 and critical["at"] <= report["enospc_at"]
    assert report["manager_refused_at"] is not None
    assert report["manager_refused_at"] < report["written"]
