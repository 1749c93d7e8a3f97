"""Soak: many ``lambda_handler`` calls in one warm process, and what they leave behind.

Runs a fixed rotation of events (every source format, both strategies, S3 and local
sources and destinations, successes and failures: a corrupt archive, a hostile member, a
missing key, a missing file, an invalid event, a partly failing event), checks each
response, and records after every call the process's resident memory, its threads
(``/proc/self/task``) and open file descriptors (``/proc/self/fd``), and the entries of
``TMPDIR``. The RSS slope is a least-squares fit over the calls after the warm-up.

``python -m tests.soak --calls 2000`` (``make soak``) starts moto's S3 server in a child
process on 127.0.0.1 and prints the figures; ``tests/integration/test_soak.py`` runs 300
calls. Guards issue 8 item 1 (a warm function kept 8 MiB per tar.gz read, for good).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from monitor.units import KiB, MiB
from tests.helpers import ALL_FORMATS, build_archive
from tests.s3server import CREDENTIALS, client_for

MAX_SLOPE = 16 * KiB
"""Bytes of RSS per call the fitted slope may show after the warm-up (issue 8)."""
FILES = {
    "model/config.json": b'{"layers": 2}',
    "model/tokenizer.json": b'{"vocab": {"a": 1}}' * 50,
    # Incompressible, so each read fills the decompressors' buffers as a real shard does.
    "model/weights.bin": random.Random(8).randbytes(256 * KiB),
    "README.md": b"# model\n",
}
ENVIRONMENT = {
    "AWS_EMF_ENVIRONMENT": "Local",
    "TMPWARDEN_TRACING": "off",
    "TMPWARDEN_MAX_ATTEMPTS": "1",
}


@dataclass(frozen=True, slots=True)
class Scenario:
    """One event and the overall status its response must have."""

    label: str
    event: dict[str, Any]
    status: str


@dataclass
class SoakFigures:
    """What a soak measured; sizes in bytes."""

    calls: int
    warmup: int
    seconds: float
    rss_start: int
    rss_end: int
    rss_max: int
    slope_bytes_per_call: float
    threads_start: int
    threads_end: int
    threads_max_after_warmup: int
    fds_start: int
    fds_end: int
    fds_max_after_warmup: int
    tmp_baseline: list[str]
    tmp_end: list[str]
    statuses: dict[str, int] = field(default_factory=dict)
    wrong_responses: list[str] = field(default_factory=list)

    def problems(self) -> list[str]:
        """Each way the figures break the promise; empty when memory, threads, fds and
        ``/tmp`` stayed flat and every response was right."""
        found = []
        if self.slope_bytes_per_call >= MAX_SLOPE:
            found.append(
                f"RSS grows {self.slope_bytes_per_call / KiB:.1f} KiB per call "
                f"(limit {MAX_SLOPE / KiB:.0f})"
            )
        if self.threads_end > self.threads_start:
            found.append(f"threads grew from {self.threads_start} to {self.threads_end}")
        if self.fds_end > self.fds_start:
            found.append(f"open fds grew from {self.fds_start} to {self.fds_end}")
        if self.tmp_end != self.tmp_baseline:
            found.append(f"TMPDIR holds {self.tmp_end}, baseline {self.tmp_baseline}")
        found += self.wrong_responses[:5]
        return found

    def report(self) -> str:
        """The figures, one per line, for a person to read and quote."""
        return "\n".join(
            [
                f"calls: {self.calls} (warm-up {self.warmup}) in {self.seconds:.1f} s",
                f"RSS after warm-up: {self.rss_start / MiB:.1f} MiB; at the end: "
                f"{self.rss_end / MiB:.1f} MiB; max {self.rss_max / MiB:.1f} MiB",
                f"RSS slope after warm-up: {self.slope_bytes_per_call / KiB:.2f} KiB/call "
                f"(limit {MAX_SLOPE / KiB:.0f})",
                f"threads: {self.threads_start} -> {self.threads_end} "
                f"(max {self.threads_max_after_warmup} after warm-up)",
                f"open fds: {self.fds_start} -> {self.fds_end} "
                f"(max {self.fds_max_after_warmup} after warm-up)",
                f"TMPDIR entries: baseline {len(self.tmp_baseline)}, end {len(self.tmp_end)}",
                "responses: " + ", ".join(f"{k} {v}" for k, v in sorted(self.statuses.items())),
                f"wrong responses: {len(self.wrong_responses)}",
            ]
        )


def least_squares_slope(values: list[int]) -> float:
    """The slope of the least-squares line through ``(i, values[i])``; 0 for under 2 points."""
    n = len(values)
    if n < 2:
        return 0.0
    mean_x = (n - 1) / 2
    mean_y = sum(values) / n
    covariance = sum((i - mean_x) * (y - mean_y) for i, y in enumerate(values))
    variance = sum((i - mean_x) ** 2 for i in range(n))
    return covariance / variance


def rss_bytes() -> int:
    with Path("/proc/self/statm").open() as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def thread_count() -> int:
    """The process's threads as the kernel lists them, once threads that Python has
    already joined have finished exiting (waits at most 0.1 s for them)."""
    deadline = time.monotonic() + 0.1
    while True:
        count = sum(1 for _ in Path("/proc/self/task").iterdir())
        if count <= threading.active_count() or time.monotonic() > deadline:
            return count
        time.sleep(0.005)


def fd_count() -> int:
    return sum(1 for _ in Path("/proc/self/fd").iterdir())


def build_inputs(work: Path, endpoint: str, bucket: str) -> list[Scenario]:
    """Write the artifacts (ok, truncated, hostile, per format), upload some to S3, and
    return the rotation of scenarios."""
    artifacts = work / "artifacts"
    out = work / "out"
    artifacts.mkdir()
    out.mkdir()
    client = client_for(endpoint)
    client.create_bucket(Bucket=bucket)
    scenarios: list[Scenario] = []
    for fmt in ALL_FORMATS:
        ok = build_archive(artifacts / f"ok.{fmt}", FILES, fmt)
        cut = artifacts / f"corrupt.{fmt}"
        whole = build_archive(artifacts / f"whole.{fmt}", {**FILES, "z.bin": bytes(40_000)}, fmt)
        cut.write_bytes(whole.read_bytes()[: whole.stat().st_size * 2 // 3])
        hostile = build_archive(artifacts / f"hostile.{fmt}", {**FILES, "../evil.txt": b"x"}, fmt)
        client.upload_file(str(ok), bucket, f"models/ok.{fmt}")
        s3_ok = f"s3://{bucket}/models/ok.{fmt}"
        name = fmt.replace(".", "-")
        scenarios += [
            Scenario(
                f"{fmt} local auto",
                {"targets": [{"source": str(ok), "destination": str(out / f"{name}.zip")}]},
                "succeeded",
            ),
            Scenario(
                f"{fmt} local stream --include",
                {
                    "targets": [
                        {
                            "source": str(ok),
                            "destination": str(out / f"{name}-json.zip"),
                            "include": ["*.json"],
                        }
                    ],
                    "strategy": "stream",
                },
                "succeeded",
            ),
            Scenario(
                f"{fmt} s3 to s3 ({'stream' if fmt != 'tar.xz' else 'extract'})",
                {
                    "targets": [{"source": s3_ok, "destination": f"s3://{bucket}/out/{name}.zip"}],
                    "strategy": "stream" if fmt != "tar.xz" else "extract",
                },
                "succeeded",
            ),
            Scenario(
                f"{fmt} corrupt",
                {"targets": [{"source": str(cut), "destination": str(out / "corrupt.zip")}]},
                "failed",
            ),
            Scenario(
                f"{fmt} hostile member",
                {
                    "targets": [{"source": str(hostile), "destination": str(out / "hostile.zip")}],
                    "strategy": "stream" if fmt in ("tar", "zip") else "extract",
                },
                "failed",
            ),
        ]
    scenarios += [
        Scenario(
            "missing S3 key",
            {
                "targets": [
                    {
                        "source": f"s3://{bucket}/models/missing.tar.gz",
                        "destination": f"s3://{bucket}/out/missing.zip",
                    }
                ]
            },
            "failed",
        ),
        Scenario(
            "missing local file",
            {
                "targets": [
                    {"source": str(artifacts / "nope.tar.gz"), "destination": str(out / "n.zip")}
                ]
            },
            "failed",
        ),
        Scenario("invalid event", {"targets": [{"source": "s3://only-a-bucket"}]}, "failed"),
        Scenario(
            "one of two targets hostile",
            {
                "targets": [
                    {"source": str(artifacts / "ok.tar.gz"), "destination": str(out / "p.zip")},
                    {"source": str(artifacts / "hostile.zip"), "destination": str(out / "q.zip")},
                ]
            },
            "partial",
        ),
    ]
    return scenarios


class Context:
    """The parts of Lambda's context object the handler reads."""

    def __init__(self, number: int) -> None:
        self.aws_request_id = f"soak-{number}"

    def get_remaining_time_in_millis(self) -> int:
        return 900_000


def run_soak(calls: int, work: Path, endpoint: str, *, warmup: int | None = None) -> SoakFigures:
    """Call ``lambda_handler`` ``calls`` times in this process (scratch space and outputs
    under ``work``, S3 at ``endpoint``) and measure; the handler's logs go to /dev/null."""
    # Imported once the environment is set: the EMF library reads it at import.
    from handler.app import lambda_handler, reset_runtime

    scratch = work / "tmp"
    scratch.mkdir(parents=True)
    settings = {**ENVIRONMENT, "AWS_ENDPOINT_URL": endpoint, "TMPDIR": str(scratch)}
    with _environment(settings):
        tempfile.tempdir = None  # TMPDIR is read again
        scenarios = build_inputs(work, endpoint, f"soak-{os.getpid()}")
        reset_runtime()
        skip = warmup if warmup is not None else max(len(scenarios) * 2, calls // 5)
        rss: list[int] = []
        threads: list[int] = []
        fds: list[int] = []
        statuses: Counter[str] = Counter()
        wrong: list[str] = []
        tmp_baseline = _entries(scratch)
        started = time.monotonic()
        with Path(os.devnull).open("w") as devnull, contextlib.redirect_stdout(devnull):
            for number in range(calls):
                scenario = scenarios[number % len(scenarios)]
                response = lambda_handler(scenario.event, Context(number))
                statuses[response["status"]] += 1
                if response["status"] != scenario.status:
                    wrong.append(f"call {number} ({scenario.label}): {json.dumps(response)}")
                rss.append(rss_bytes())
                threads.append(thread_count())
                fds.append(fd_count())
        seconds = time.monotonic() - started
        tmp_end = _entries(scratch)
        reset_runtime()
    after = slice(skip, None)
    return SoakFigures(
        calls=calls,
        warmup=skip,
        seconds=seconds,
        rss_start=rss[skip],
        rss_end=rss[-1],
        rss_max=max(rss),
        slope_bytes_per_call=least_squares_slope(rss[after]),
        threads_start=threads[skip],
        threads_end=threads[-1],
        threads_max_after_warmup=max(threads[after]),
        fds_start=fds[skip],
        fds_end=fds[-1],
        fds_max_after_warmup=max(fds[after]),
        tmp_baseline=tmp_baseline,
        tmp_end=tmp_end,
        statuses=dict(statuses),
        wrong_responses=wrong,
    )


def _entries(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


@contextlib.contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@contextlib.contextmanager
def moto_server() -> Iterator[str]:
    """moto's S3 server in a child process on 127.0.0.1 (so its threads and sockets are not
    counted as this process's); yields its URL and stops it by its process id."""
    script = (
        "import logging, sys\n"
        "from tests.s3server import MotoS3\n"
        "logging.getLogger('werkzeug').setLevel(logging.ERROR)\n"
        "server = MotoS3()\n"
        "print(server.url, flush=True)\n"
        "sys.stdin.read()\n"
        "server.stop()\n"
    )
    child = subprocess.Popen(
        [sys.executable, "-c", script],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, **CREDENTIALS},
    )
    try:
        assert child.stdout is not None
        yield child.stdout.readline().strip()
    finally:
        if child.stdin is not None:
            child.stdin.close()
        try:
            child.wait(timeout=10)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.soak", description=__doc__)
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--warmup", type=int, default=None, help="calls left out of the fit")
    parser.add_argument("--endpoint", help="an S3 endpoint to use instead of starting moto")
    parser.add_argument("--json", type=Path, help="also write the figures here as JSON")
    args = parser.parse_args(argv)
    os.environ.update(CREDENTIALS)
    with (
        tempfile.TemporaryDirectory(prefix="tmpwarden-soak-") as work,
        contextlib.ExitStack() as stack,
    ):
        endpoint = args.endpoint or stack.enter_context(moto_server())
        figures = run_soak(args.calls, Path(work), endpoint, warmup=args.warmup)
    print(figures.report())
    if args.json is not None:
        args.json.write_text(json.dumps(asdict(figures), indent=2))
    problems = figures.problems()
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
