"""What the monitor costs a packaging job: wall time with the monitor on vs off, in pairs.

``python -m benchmarks.monitor_slowdown [--pairs N] [--archive PATH]`` packages one
artifact (by default the 256 MiB sample, local to local: a job of a few seconds; its
scratch directory and output on a RAM-backed /dev/shm when there is one, so disk
writeback does not swamp the figure) in this process, as the Lambda does, ``N`` times
with a :class:`~monitor.sidecar.StorageMonitor` at its defaults watching the invocation
(its thread running, EMF to a sink that drops the lines) and ``N`` times without one,
interleaved (on/off, then off/on, so a drift in the machine's load falls on both
sides). The figure is the median of the per-pair ratios on/off: on a shared machine
each pair's two runs see about the same load, where absolute times do not. Goal
(issue 11): median slowdown under 1%.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("AWS_EMF_ENVIRONMENT", "Local")

from benchmarks.monitor_overhead import DropSink
from handler.cli.sample import build_sample_artifact
from handler.events import Target
from handler.packaging import package_target
from handler.settings import HandlerSettings
from monitor.config import MonitorConfig
from monitor.sidecar import StorageMonitor
from monitor.units import MiB, format_size

HERE = Path(__file__).resolve().parent
PAIRS = 7
SLOWDOWN_GOAL_PERCENT = 1.0
"""Median slowdown of a packaging job with the monitor on (defaults) vs off (issue 11)."""
SAMPLE_SIZE = 256 * MiB
SHM = "/dev/shm"


@dataclass(frozen=True)
class Slowdown:
    """Per-pair wall times and CPU times of the process (seconds), on and off."""

    on: list[float]
    off: list[float]
    cpu_on: list[float]
    cpu_off: list[float]

    @property
    def ratios(self) -> list[float]:
        return [a / b for a, b in zip(self.on, self.off, strict=True)]

    @property
    def median_percent(self) -> float:
        return (statistics.median(self.ratios) - 1) * 100

    @property
    def cpu_percent(self) -> float:
        """The median per-pair ratio of the process's CPU time (every thread), on/off."""
        ratios = [a / b for a, b in zip(self.cpu_on, self.cpu_off, strict=True)]
        return (statistics.median(ratios) - 1) * 100


def package_once(archive: Path, scratch: Path, monitored: bool) -> tuple[float, float]:
    """Wall and CPU seconds (this process, every thread) of one packaging job of
    ``archive`` into ``scratch``; with a monitor at its defaults (its thread started, one
    invocation) when ``monitored``."""
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    settings = HandlerSettings.from_env({"TMPDIR": str(scratch)})
    target = Target(str(archive), str(scratch / "package.zip"))
    monitor = (
        StorageMonitor(MonitorConfig.resolve(path=str(scratch), tracing="off"), sink=DropSink())
        if monitored
        else None
    )
    started, cpu = time.monotonic(), time.process_time()
    if monitor is None:
        result = package_target(target, settings)
    else:
        with monitor:
            result = package_target(target, settings, monitor=monitor)
    elapsed, cpu = time.monotonic() - started, time.process_time() - cpu
    if result.status != "succeeded":
        raise SystemExit(f"packaging {archive} failed: {result.error}")
    return elapsed, cpu


def measure(archive: Path, scratch: Path, pairs: int = PAIRS) -> Slowdown:
    """``pairs`` interleaved pairs; the first pair's order alternates with the next."""
    package_once(archive, scratch, monitored=False)  # warm the page cache and imports
    runs: dict[bool, list[tuple[float, float]]] = {True: [], False: []}
    for pair in range(pairs):
        for monitored in (True, False) if pair % 2 == 0 else (False, True):
            runs[monitored].append(package_once(archive, scratch, monitored))
    shutil.rmtree(scratch, ignore_errors=True)
    on, off = runs[True], runs[False]
    return Slowdown(
        [w for w, _ in on], [w for w, _ in off], [c for _, c in on], [c for _, c in off]
    )


def rows(result: Slowdown, archive: Path) -> list[str]:
    """The table rows (``| measure | measured | goal | met |``)."""
    ratios = result.ratios
    median = result.median_percent
    met = median < SLOWDOWN_GOAL_PERCENT
    return [
        f"| packaging job ({format_size(archive.stat().st_size)} tar.gz, local to local on "
        f"tmpfs, "
        f"{len(ratios)} interleaved pairs): wall time with the monitor on (defaults) / off, "
        f"median of the pairs (spread {(min(ratios) - 1) * 100:+.2f}% to "
        f"{(max(ratios) - 1) * 100:+.2f}%) | {median:+.2f}% | < {SLOWDOWN_GOAL_PERCENT:g}% | "
        f"{'yes' if met else '**no**'} |",
        f"| the same jobs' median wall time, monitor off / on | "
        f"{statistics.median(result.off):.2f} s / {statistics.median(result.on):.2f} s | | |",
        f"| the same pairs' CPU time of the process (every thread, the monitor's included), "
        f"on / off, median of the pairs | {result.cpu_percent:+.2f}% | | |",
    ]


def main(argv: list[str] | None = None) -> list[str]:
    """Measure, print and return the table rows."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--pairs", type=int, default=PAIRS)
    parser.add_argument("--archive", type=Path, default=None)
    parser.add_argument("--workdir", type=Path, default=HERE / "work")
    args = parser.parse_args(argv)
    archive: Path | None = args.archive
    if archive is None:
        archive = args.workdir / "artifacts" / f"model-{SAMPLE_SIZE // MiB}MiB.tar.gz"
        if not archive.exists():
            archive.parent.mkdir(parents=True, exist_ok=True)
            build_sample_artifact(archive, SAMPLE_SIZE, seed=1)
    # A RAM-backed scratch directory: the job's own disk writes (and the other tenants'
    # writeback) would make each run's time vary far more than the monitor's cost.
    shm = Path(SHM)
    scratch = (
        Path(tempfile.mkdtemp(prefix="tmpwarden-slowdown-", dir=shm)) / "scratch"
        if shm.is_dir()
        else args.workdir / "monitor-slowdown"
    )
    try:
        result = measure(archive, scratch, args.pairs)
    finally:
        shutil.rmtree(scratch.parent if shm.is_dir() else scratch, ignore_errors=True)
    table = rows(result, archive)
    print("\n".join(table))
    return table


if __name__ == "__main__":
    main()
