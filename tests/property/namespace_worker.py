"""A packaging worker that runs inside a private mount namespace with small tmpfs mounts.

Property tests cannot mount a filesystem per example, so :class:`NamespaceWorker` starts
this module once, under ``unshare -m`` with its tmpfs mounts, and sends it one JSON line
per example; it answers with one JSON line: what happened, the peak of ``/tmp`` (its
``TMPDIR``) sampled while it worked, what was left on the mounts, and the sha256 of every
member of the ZIP it wrote. Faults are real: a destination filled until only
``leave`` bytes are free (ENOSPC), or ``RLIMIT_FSIZE`` cutting writes at a byte (EFBIG).
"""

from __future__ import annotations

import json
import os
import resource
import shlex
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any

from handler.archive import StreamingExtractor
from handler.events import StrategyChoice
from handler.locations.local import LocalSource, Source, open_destination
from handler.packaging import plan
from handler.storage import StorageManager, Strategy
from handler.strategies import PackageOptions, run_extract, run_stream
from tests.helpers import archive_digests
from tests.lazy_archive import LazyMember, LazyTar

CRITICAL = 0.9
FILLER = ".filler"
SAMPLE_EVERY = 0.0005


def used_bytes(path: str) -> int:
    st = os.statvfs(path)
    return (st.f_blocks - st.f_bfree) * st.f_frsize


class PeakSampler:
    """Samples the bytes used on one filesystem until stopped; keeps the largest."""

    def __init__(self, path: str) -> None:
        self._path = path
        self.peak = used_bytes(path)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, used_bytes(self._path))
            time.sleep(SAMPLE_EVERY)

    def __enter__(self) -> PeakSampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, used_bytes(self._path))


def _fill(directory: Path, leave: int) -> None:
    """Write a filler file until only ``leave`` bytes (rounded to pages) stay free."""
    st = os.statvfs(directory)
    size = max(st.f_bavail * st.f_frsize - leave, 0)
    with (directory / FILLER).open("wb") as filler:
        block = bytes(1 << 20)
        while size > 0:
            size -= filler.write(block[: min(size, len(block))])


def _listing(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name != FILLER)


def handle(request: Mapping[str, Any]) -> dict[str, Any]:
    """Package one lazily generated artifact as ``request`` says; report what happened."""
    tmp = tempfile.gettempdir()
    source: Source
    if "source" in request:  # a real archive file
        source = LocalSource(request["source"])
        artifact = request["artifact_bytes"]
    else:
        members = [LazyMember(name, size, seed) for name, size, seed in request["members"]]
        source = LazyTar(members, gzip=request["gzip"])
        artifact = source.uncompressed_bytes
    destination = request["destination"]
    local = not destination.startswith("s3://")
    out_dir = Path(destination).parent
    if local and request.get("leave") is not None:
        _fill(out_dir, request["leave"])
    options = PackageOptions(compression=request["compression"])
    storage = StorageManager(tmp)
    reply: dict[str, Any] = {"artifact_bytes": artifact, "ok": True}
    tmp_before = used_bytes(tmp)
    limit = resource.getrlimit(resource.RLIMIT_FSIZE)
    with PeakSampler(tmp) as sampler:
        try:
            dest = open_destination(destination)
            choice = StrategyChoice(request["strategy"])
            chosen = plan(source, choice, storage, CRITICAL, StreamingExtractor()).strategy
            reply["strategy"] = chosen.value
            if request.get("fsize") is not None:
                resource.setrlimit(resource.RLIMIT_FSIZE, (request["fsize"], limit[1]))
            if chosen is Strategy.STREAM:
                result = run_stream(source, dest, options)
            else:
                result = run_extract(
                    source, dest, options, scratch_root=tmp, storage=storage, critical=CRITICAL
                )
            reply["bytes_out"] = result.bytes_out
        except Exception as exc:
            reply.update(ok=False, error_type=type(exc).__name__, error=str(exc))
        finally:
            resource.setrlimit(resource.RLIMIT_FSIZE, limit)
    reply.update(
        tmp_before=tmp_before,
        peak_tmp=sampler.peak,
        tmp_after=used_bytes(tmp),
        tmp_listing=sorted(p.name for p in Path(tmp).iterdir()),
    )
    if local:
        reply["dest_listing"] = _listing(out_dir)
        if reply["ok"] and request.get("digests", True):
            reply["digests"] = archive_digests(Path(destination))
        Path(destination).unlink(missing_ok=True)
        (out_dir / FILLER).unlink(missing_ok=True)
    return reply


def main(stdin: IO[str] = sys.stdin, stdout: IO[str] = sys.stdout) -> None:
    for line in stdin:
        stdout.write(json.dumps(handle(json.loads(line))) + "\n")
        stdout.flush()


class NamespaceWorker:
    """This module running under ``unshare -m`` with a tmpfs of each size at each path;
    the first mount is its ``TMPDIR``. Send requests with :meth:`run`; :meth:`stop` ends it."""

    def __init__(
        self, prefix: tuple[str, ...], mounts: Mapping[Path, str], env: Mapping[str, str]
    ) -> None:
        script = " && ".join(
            f"mount -t tmpfs -o size={size} tmpfs {shlex.quote(str(path))}"
            for path, size in mounts.items()
        )
        command = shlex.join([sys.executable, "-m", "tests.property.namespace_worker"])
        self.tmp = next(iter(mounts))
        self._process = subprocess.Popen(
            [*prefix, "sh", "-c", f"{script} && exec {command}"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env={**env, "TMPDIR": str(self.tmp)},
        )

    def run(self, request: Mapping[str, Any]) -> dict[str, Any]:
        assert self._process.stdin is not None and self._process.stdout is not None
        self._process.stdin.write(json.dumps(request) + "\n")
        self._process.stdin.flush()
        line = self._process.stdout.readline()
        if not line:
            raise RuntimeError(f"the namespace worker ended (exit {self._process.wait()})")
        reply: dict[str, Any] = json.loads(line)
        return reply

    def stop(self) -> None:
        assert self._process.stdin is not None
        self._process.stdin.close()
        try:
            self._process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()


if __name__ == "__main__":
    main()
