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


SHARED_STATE_RUN = """
import json, sys
from pathlib import Path
from tests.soak import run_soak
work = Path(sys.argv[1])
figures = run_soak(8, work, sys.argv[2], warmup=2)
print(json.dumps({"baseline": figures.tmp_baseline, "end": figures.tmp_end,
                  "wrong": figures.wrong_responses}))
"""


def test_in_lambda_the_monitor_s_state_is_its_only_entry_and_leaves_with_the_process(
    moto_s3: MotoS3, tmp_path: Path
) -> None:
    """With the extension's shared state on (in Lambda: AWS_LAMBDA_RUNTIME_API set), the
    handler's calls leave TMPDIR at its baseline but for ``.tmpwarden`` (the monitor's
    own directory, one file of this process); when the process exits it is gone too."""
    environment = python_env() | CREDENTIALS | {"AWS_LAMBDA_RUNTIME_API": "127.0.0.1:9"}
    result = subprocess.run(
        [sys.executable, "-c", SHARED_STATE_RUN, str(tmp_path), moto_s3.url],
        capture_output=True,
        text=True,
        env=environment,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    print(f"TMPDIR: baseline {figures['baseline']}, after 8 calls {figures['end']}")
    assert figures["wrong"] == []
    assert figures["baseline"] == [] and figures["end"] == [".tmpwarden"]
    assert sorted(p.name for p in (tmp_path / "tmp").iterdir()) == []  # the process is gone
