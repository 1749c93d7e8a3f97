"""Run a command and measure wall time, peak RSS (with its children) and peak disk."""

from __future__ import annotations

import os
import subprocess
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import psutil

DISK_SAMPLE_SECONDS = 0.02
RSS_SAMPLE_SECONDS = 0.05
CHILDREN_SCAN_SECONDS = 0.5
"""Finding children scans all of /proc: done rarely, so the measuring does not slow the
measured (VmHWM is a high-water mark: reading it now and then loses nothing)."""


@dataclass(frozen=True)
class Measurement:
    """One run of one tool."""

    name: str
    seconds: float
    peak_rss_bytes: int
    peak_disk_bytes: int
    output_bytes: int
    returncode: int
    stderr: str


def tree_bytes(root: Path) -> int:
    """Bytes allocated on disk under ``root`` (blocks, like du)."""
    total = 0
    for directory, _, names in os.walk(root):
        for name in names:
            try:
                total += (Path(directory) / name).lstat().st_blocks * 512
            except OSError:
                continue  # removed while we looked
    return total


class DiskSampler:
    """Samples the bytes under a directory on a thread; keeps the peak."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> DiskSampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, tree_bytes(self.root))

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, tree_bytes(self.root))
            self._stop.wait(DISK_SAMPLE_SECONDS)


def high_water_rss(pid: int) -> int:
    """The process's peak resident memory (VmHWM), which starts afresh at exec.

    ``ru_maxrss`` from wait4 cannot be used: a child forked from a large parent
    inherits the parent's size as its starting peak.
    """
    try:
        with open(f"/proc/{pid}/status", "rb") as status:  # noqa: PTH123
            for line in status:
                if line.startswith(b"VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


class RssSampler:
    """Samples the peak RSS of a process and all its descendants on a thread."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        pids = [self.pid]
        next_scan = 0.0
        while not self._stop.is_set():
            if time.monotonic() >= next_scan:
                next_scan = time.monotonic() + CHILDREN_SCAN_SECONDS
                try:
                    root = psutil.Process(self.pid)
                    pids = [self.pid, *(c.pid for c in root.children(recursive=True))]
                except psutil.Error:
                    pids = [self.pid]
            for pid in pids:
                self.peak = max(self.peak, high_water_rss(pid))
            self._stop.wait(RSS_SAMPLE_SECONDS)


def measure(
    name: str,
    command: Sequence[str],
    workdir: Path,
    output: Path,
    *,
    env: dict[str, str] | None = None,
) -> Measurement:
    """Run ``command`` with ``workdir`` as its scratch space; measure it."""
    workdir.mkdir(parents=True, exist_ok=True)
    os.sync()  # the previous run's dirty pages must not be written back during this one
    with DiskSampler(workdir) as disk:
        started = time.perf_counter()
        process = subprocess.Popen(
            list(command), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env
        )
        assert process.stderr is not None
        with RssSampler(process.pid) as rss:
            stderr = process.stderr.read().decode(errors="replace")
            _, status = os.waitpid(process.pid, 0)
            seconds = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    return Measurement(
        name=name,
        seconds=seconds,
        peak_rss_bytes=rss.peak,
        peak_disk_bytes=disk.peak,
        output_bytes=output.stat().st_size if output.exists() else 0,
        returncode=process.returncode,
        stderr=stderr,
    )
