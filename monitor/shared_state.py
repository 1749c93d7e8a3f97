"""The in-process monitor's phase and state, shared with the external extension by a file.

The in-process monitor (:class:`~monitor.sidecar.StorageMonitor`) writes a small JSON
document at each change of its account -- an invocation begins, a phase opens or closes,
a level is crossed, the invocation ends -- never per sample; the external extension
(``monitor.extension``) reads it on each event, so its incident record says which phase
and level the function was in when it died, even if the function was killed.

Where: ``<TMPWARDEN_PATH>/.tmpwarden/state-<pid>.json`` (default
``/tmp/.tmpwarden/state-<pid>.json``), one file per process (Lambda Managed Instances run
several Python processes per environment). Cost: one file of about 300 bytes (one block
of ``/tmp``) per process, and per change one ``write`` of a temporary file and one
``rename`` (atomic: the reader sees the old document or the new one, never half of one),
tens of microseconds. The directory is created with mode 0700.

When: on when ``TMPWARDEN_SHARED_STATE`` is ``on``; with ``auto`` (the default) only in
Lambda (``AWS_LAMBDA_RUNTIME_API`` set), where an extension can read it; ``off`` never.
A write that fails (``/tmp`` full) is skipped: the monitor never fails the function.

Standard library only: the extension imports this module too.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from monitor.invocation import InvocationRecorder

STATE_DIR_NAME = ".tmpwarden"
STATE_PREFIX = "state-"
SHARED_STATE_ENV = "TMPWARDEN_SHARED_STATE"
RUNTIME_API_ENV = "AWS_LAMBDA_RUNTIME_API"


def state_dir(tmp_path: str | Path) -> Path:
    """The monitor's own directory under the watched path: ``<tmp_path>/.tmpwarden``."""
    return Path(tmp_path) / STATE_DIR_NAME


@dataclass(frozen=True, slots=True)
class SharedState:
    """What one process's monitor last wrote. Times are epoch seconds, sizes bytes."""

    pid: int
    time: float
    request_id: str | None
    phase: str | None
    levels: dict[str, str]
    """resource (tmp, memory) -> its highest level crossed in the invocation."""
    peak_tmp_used: int
    peak_memory_used: int
    ended: bool
    """The invocation ended normally (the monitor wrote its invocation record)."""

    @property
    def worst_level(self) -> str | None:
        """The highest level of any resource, as ``resource:level``; None when none."""
        order = ("warning", "predicted_full", "critical")
        ranked = [(order.index(v), f"{k}:{v}") for k, v in self.levels.items() if v in order]
        return max(ranked)[1] if ranked else None


class SharedStateWriter:
    """Writes this process's :class:`SharedState` file; see the module docstring."""

    def __init__(self, directory: str | Path, pid: int | None = None) -> None:
        self.pid = os.getpid() if pid is None else pid
        self.directory = Path(directory)
        self.path = self.directory / f"{STATE_PREFIX}{self.pid}.json"
        self._scratch = self.directory / f".{STATE_PREFIX}{self.pid}.json.tmp"
        self.failed = 0

    @classmethod
    def from_environ(
        cls, tmp_path: str | Path, environ: Mapping[str, str] | None = None
    ) -> SharedStateWriter | None:
        """A writer under ``tmp_path`` when sharing is on (see the module docstring)."""
        env = os.environ if environ is None else environ
        mode = env.get(SHARED_STATE_ENV, "auto").strip().lower()
        if mode == "off" or (mode != "on" and not env.get(RUNTIME_API_ENV)):
            return None
        return cls(state_dir(tmp_path))

    def write(self, recorder: InvocationRecorder, *, ended: bool = False) -> None:
        """Replace the file with ``recorder``'s account (called under the monitor's lock)."""
        levels: dict[str, str] = {}
        for crossing in recorder.events:
            levels[crossing.resource.value] = crossing.level.value
        document = {
            "pid": self.pid,
            "time": round(time.time(), 3),
            "request_id": recorder.request_id,
            "phase": recorder.state.current_phase or recorder.last_phase,
            "levels": levels,
            "peak_tmp_used": recorder.peaks.tmp_used,
            "peak_memory_used": recorder.peaks.memory_used,
            "ended": ended,
        }
        try:
            self.directory.mkdir(mode=0o700, exist_ok=True)
            self._scratch.write_bytes(json.dumps(document, separators=(",", ":")).encode())
            self._scratch.replace(self.path)
        except OSError:
            self.failed += 1  # /tmp full or gone: the extension samples on its own


def _parse(raw: bytes) -> SharedState | None:
    try:
        doc = json.loads(raw)
        levels = doc.get("levels") or {}
        return SharedState(
            pid=int(doc["pid"]),
            time=float(doc["time"]),
            request_id=doc.get("request_id"),
            phase=doc.get("phase"),
            levels={str(k): str(v) for k, v in levels.items()},
            peak_tmp_used=int(doc.get("peak_tmp_used") or 0),
            peak_memory_used=int(doc.get("peak_memory_used") or 0),
            ended=bool(doc.get("ended")),
        )
    except (ValueError, TypeError, KeyError, AttributeError):
        return None


def read_shared_state(directory: str | Path, pid: int | None = None) -> SharedState | None:
    """The state of process ``pid`` if it wrote one, else the most recent of any process;
    None when there is none or it cannot be read (a missing or torn file is no error)."""
    folder = Path(directory)
    if pid is not None:
        try:
            state = _parse((folder / f"{STATE_PREFIX}{pid}.json").read_bytes())
        except OSError:
            state = None
        if state is not None:
            return state
    newest: SharedState | None = None
    try:
        candidates = [p for p in folder.iterdir() if p.name.startswith(STATE_PREFIX)]
    except OSError:
        return None
    for path in candidates:
        try:
            state = _parse(path.read_bytes())
        except OSError:
            continue
        if state is not None and (newest is None or state.time > newest.time):
            newest = state
    return newest
