"""Soak: 300 ``lambda_handler`` calls in one process leave memory, threads, file
descriptors and ``/tmp`` flat (issue 8: a warm function kept 8 MiB per tar.gz read).

The calls run in a child process (``python -m tests.soak``), so pytest's own log capture
and the S3 server's threads are not counted; ``make soak`` runs 2,000.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from monitor.units import KiB
from tests.helpers import python_env
from tests.s3server import CREDENTIALS, MotoS3
from tests.soak import MAX_SLOPE, SoakFigures

CALLS = 300


def test_300_warm_calls_leave_memory_threads_fds_and_tmp_flat(
    moto_s3: MotoS3, tmp_path: Path
) -> None:
    figures_path = tmp_path / "soak.json"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.soak",
            "--calls",
            str(CALLS),
            "--endpoint",
            moto_s3.url,
            "--json",
            str(figures_path),
        ],
        capture_output=True,
        text=True,
        env=python_env() | CREDENTIALS,
        timeout=300,
        check=False,
    )
    print(result.stdout)
    figures = SoakFigures(**json.loads(figures_path.read_text()))
    assert figures.calls == CALLS
    assert figures.wrong_responses == []
    assert set(figures.statuses) == {"succeeded", "failed", "partial"}
    assert figures.slope_bytes_per_call < MAX_SLOPE, (
        f"RSS grows {figures.slope_bytes_per_call / KiB:.1f} KiB per warm call"
    )
    assert figures.threads_end <= figures.threads_start
    assert figures.fds_end <= figures.fds_start
    assert figures.tmp_end == figures.tmp_baseline == []
    assert result.returncode == 0, result.stderr
