"""``make bench``: tmpwarden against the packaging paths users run today, side by side.

On one generated artifact (1 GiB of float32 weight shards plus config and tokenizer
files, as tar.gz) it runs, one after the other on the same machine:

* tmpwarden: ``python -m handler package ARCHIVE OUT.zip``
* naive Python: copy ("download"), ``tarfile.extractall``, ``shutil.make_archive``
* ``tar xzf ARCHIVE && zip -r -6``: the shell habit

and records wall time, peak RSS and peak disk of each, then tmpwarden again on a
256 MiB artifact to show its memory does not grow with the artifact, then tmpwarden
against single-threaded ISA-L inflate of the same file (:mod:`benchmarks.local_floor`).
Then issue 10's network goals on the same artifacts, S3 to S3 through a model of the
network (:mod:`benchmarks.network_goals`; ``--no-network`` skips them). Results go to
``benchmarks/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from benchmarks import (
    codec_levels,
    extension_cost,
    local_floor,
    monitor_overhead,
    monitor_slowdown,
    network_goals,
)
from benchmarks.measure import Measurement, measure
from handler.cli.sample import build_sample_artifact
from monitor.units import MiB, format_size, parse_size

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
RSS_GOAL = 150 * MiB
MONITOR_INTRO = """
## The monitor's overhead

`python -m benchmarks.monitor_slowdown` and `python -m benchmarks.monitor_overhead`
(both part of `make bench`). The first packages the 1/4 size artifact (local to local,
in one process, as the Lambda does) with the monitor on at its defaults and off, in
interleaved pairs. The second reads the sampling thread's CPU time (its own thread
clock, read from outside it) while it samples /tmp and memory, checks thresholds and
the trend, and aggregates and serializes EMF (to a sink that drops the lines), in
rounds interleaved with a floor: a bare thread that only sleeps and makes the two
system calls every sampler needs, at the same interval. On this Firecracker VM each
wakeup and each system call after a sleep costs tens of microseconds of CPU, which no
Python sampler avoids; every goal is a ratio to that floor or is stated beside it.

"""
CODEC_INTRO = """
## Deflate levels on weight-like data

`python -m benchmarks.codec_levels --size 64MiB` (part of `make bench`): each codec's best
CPU time of one thread over 3 interleaved rounds, on the sample artifact's float32
weights and 8 copies of its tokenizer. `handler/zipwriter/method.py` chooses levels by
these figures (`auto`: the strongest level that keeps up with the bottleneck: ISA-L
level 3 to S3 at 75 MB/s, level 2 at 3 Gbps and locally); the inflate rows are what
verifying a raw-copied ZIP member costs. Goal: ISA-L level 3 deflates weights at least
10x faster than zlib level 6, output within 1%.

"""
EXTENSION_INTRO = """
## The extension's cost

`python -m benchmarks.extension_cost --seconds 60` (part of `make bench`): the external
extension's process (deploy/layer/extensions/tmpwarden-monitor) against a fake
Extensions and Telemetry API, after one INVOKE, at its defaults, for a 10,240 MB function
(far from every threshold) and a 128 MB one; its CPU time from the schedstat of each of
its threads, its peak RSS (VmHWM), and a bare thread's floor at 500 ms in the same window.

"""
FLOOR_INTRO = """
## Local tar.gz against the inflate floor

`python -m benchmarks.local_floor --archive ARCHIVE` (part of `make bench`, on the 1 GiB
artifact): single-threaded ISA-L inflate of the same file (`python -m isal.igzip -d -c
ARCHIVE > /dev/null`, the slowest stage of tmpwarden's stream path) and `python -m handler
package ARCHIVE OUT.zip`, in turns. Both times include their interpreter's start.

"""
THROUGHPUT_GOAL = 5.0
"""Issue 10: the defaults at least 5x faster than ``tar xzf && zip -r -6`` (was 3x)."""
SIZE_GOAL = 1.01


@dataclass(frozen=True)
class Goal:
    text: str
    measured: str
    met: bool


def _artifact(workdir: Path, size: int) -> Path:
    path = workdir / "artifacts" / f"model-{size // MiB}MiB.tar.gz"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".partial")
        build_sample_artifact(partial, size, seed=1)
        partial.replace(path)
    return path


def _fresh(directory: Path) -> Path:
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    return directory


def run_tmpwarden(archive: Path, workdir: Path, label: str) -> Measurement:
    scratch = _fresh(workdir / label)
    out = scratch / "package.zip"
    env = dict(os.environ, TMPDIR=str(scratch))
    return measure(
        label,
        [sys.executable, "-m", "handler", "package", str(archive), str(out)],
        scratch,
        out,
        env=env,
    )


def run_naive(archive: Path, workdir: Path) -> Measurement:
    scratch = _fresh(workdir / "naive")
    return measure(
        "naive Python (extractall + make_archive)",
        [sys.executable, "-m", "benchmarks.naive", str(archive), str(scratch)],
        scratch,
        scratch / "package.zip",
    )


def run_tar_zip(archive: Path, workdir: Path) -> Measurement:
    scratch = _fresh(workdir / "tar-zip")
    script = (
        f"mkdir -p {scratch}/x && tar xzf {archive} -C {scratch}/x && "
        f"cd {scratch}/x && zip -r -6 -q ../package.zip ."
    )
    return measure("tar xzf && zip -r -6", ["sh", "-c", script], scratch, scratch / "package.zip")


def _report_progress(result: Measurement) -> Measurement:
    if result.returncode != 0:
        raise SystemExit(f"{result.name} failed ({result.returncode}): {result.stderr}")
    print(f"  {result.name}: {result.seconds:.1f} s", flush=True)
    return result


def _verify_zip(path: Path) -> None:
    subprocess.run(["unzip", "-tqq", str(path)], check=True)


def _row(result: Measurement, size: int) -> str:
    rate = size / result.seconds / MiB
    return (
        f"| {result.name} | {result.seconds:.1f} | {rate:.0f} | "
        f"{format_size(result.peak_rss_bytes)} | {format_size(result.peak_disk_bytes)} | "
        f"{format_size(result.output_bytes)} |"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--size", type=parse_size, default=parse_size("1GiB"))
    parser.add_argument("--small", type=parse_size, default=parse_size("256MiB"))
    parser.add_argument("--workdir", type=Path, default=HERE / "work")
    parser.add_argument("--results", type=Path, default=HERE / "RESULTS.md")
    parser.add_argument("--monitor-seconds", type=float, default=30.0)
    parser.add_argument("--no-network", action="store_true", help="skip issue 10's goals")
    args = parser.parse_args(argv)
    workdir: Path = args.workdir
    print(f"generating artifacts in {workdir}/artifacts ...", flush=True)
    big, small = _artifact(workdir, args.size), _artifact(workdir, args.small)
    # First, before the baselines write their 5 GB of trees: after them, on this VM,
    # tmpwarden's rounds took 3.9-4.6 s instead of 2.9-3.0 s and, minutes later, the floor
    # itself 3.8 s instead of 2.7 s (2026-11-30)
    print("measuring tmpwarden against the inflate floor ...", flush=True)
    floor_rows, floor_met = local_floor.rows(big, workdir)

    tmpwarden = _report_progress(run_tmpwarden(big, workdir, "tmpwarden"))
    naive = _report_progress(run_naive(big, workdir))
    shutil.rmtree(workdir / "naive", ignore_errors=True)  # measured: its 2.9 GB can go
    tar_zip = _report_progress(run_tar_zip(big, workdir))
    shutil.rmtree(workdir / "tar-zip", ignore_errors=True)
    small_run = _report_progress(run_tmpwarden(small, workdir, "tmpwarden-small"))
    results = [tmpwarden, naive, tar_zip]
    _verify_zip(workdir / "tmpwarden" / "package.zip")

    speedup = tar_zip.seconds / tmpwarden.seconds
    size_ratio = tmpwarden.output_bytes / tar_zip.output_bytes
    rss_growth = tmpwarden.peak_rss_bytes - small_run.peak_rss_bytes
    goals = [
        Goal(
            "peak RSS under 150 MiB",
            format_size(tmpwarden.peak_rss_bytes),
            tmpwarden.peak_rss_bytes < RSS_GOAL,
        ),
        Goal(
            f"RSS flat in the artifact's size ({format_size(args.small)} vs "
            f"{format_size(args.size)})",
            f"{format_size(small_run.peak_rss_bytes)} vs {format_size(tmpwarden.peak_rss_bytes)}",
            rss_growth < 16 * MiB,
        ),
        Goal(
            "no disk but the output",
            f"peak {format_size(tmpwarden.peak_disk_bytes)}, "
            f"output {format_size(tmpwarden.output_bytes)}",
            tmpwarden.peak_disk_bytes <= tmpwarden.output_bytes + 1 * MiB,
        ),
        Goal(
            f"at least {THROUGHPUT_GOAL:.0f}x the throughput of tar xzf && zip -r -6",
            f"{speedup:.1f}x",
            speedup >= THROUGHPUT_GOAL,
        ),
        Goal(
            "output at most 1% larger than zip -6",
            f"{(size_ratio - 1) * 100:+.2f}%",
            size_ratio <= SIZE_GOAL,
        ),
    ]
    network: list[network_goals.NetworkGoal] = []
    if not args.no_network:
        print("S3 to S3 through a model of the network (SeaweedFS, shaping proxy) ...", flush=True)
        network = network_goals.run_goals(big, small, args.size, args.small, workdir / "network")
    print("measuring the monitor's overhead ...", flush=True)
    slowdown_rows = monitor_slowdown.main(["--archive", str(small), "--workdir", str(workdir)])
    overhead_rows = monitor_overhead.main(["--seconds", str(args.monitor_seconds)])
    monitor_rows = [*overhead_rows[:2], *slowdown_rows, *overhead_rows[2:]]
    print("measuring deflate levels ...", flush=True)
    codec_rows = codec_levels.main(["--size", "64MiB"])
    print("measuring the extension's cost ...", flush=True)
    extension_rows = extension_cost.main(["--seconds", str(2 * args.monitor_seconds)])
    text = (
        _report(args.size, results, small_run, goals)
        + FLOOR_INTRO
        + "\n".join(floor_rows)
        + "\n"
        + ("\n".join(network_goals.report(network)) + "\n" if network else "")
        + MONITOR_INTRO
        + "\n".join(monitor_rows)
        + "\n"
        + CODEC_INTRO
        + "\n".join(codec_rows)
        + "\n"
        + EXTENSION_INTRO
        + "\n".join(extension_rows)
        + "\n"
    )
    args.results.write_text(text)
    print(text)
    return 0 if all(g.met for g in goals) and floor_met and all(g.met for g in network) else 1


def _report(
    size: int, results: list[Measurement], small_run: Measurement, goals: list[Goal]
) -> str:
    lines = [
        "# Benchmark results",
        "",
        f"Generated by `make bench` on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}: "
        f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}.",
        f"Artifact: {format_size(size)} uncompressed (float32 weight shards, config, tokenizer) "
        "as tar.gz; every tool reads it from the page cache and writes into its own "
        "scratch directory. Peak disk is the most the scratch directory held (sampled every "
        "20 ms), output included; peak RSS includes child processes.",
        "",
        "| tool | wall s | MiB/s (uncompressed) | peak RSS | peak disk | output |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
        *(_row(r, size) for r in results),
        _row(small_run, size // 4).replace("tmpwarden-small", "tmpwarden, 1/4 size artifact"),
        "",
        "| goal | measured | met |",
        "| --- | --- | --- |",
        *(f"| {g.text} | {g.measured} | {'yes' if g.met else '**no**'} |" for g in goals),
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
