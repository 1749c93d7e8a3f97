"""The shared state file is written and read safely (monitor/shared_state.py): the writer
never follows a planted link nor writes into another user's directory; the reader never
blocks, never reads more than MAX_STATE_BYTES and never raises on a hostile file.
Guards review 2, items 2 (state_symlink.py) and 6 (shared_state_fifo.py,
shared_state_garbage.py)."""

from __future__ import annotations

import json
import logging
import os
import re
import stat
import threading
import uuid
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest

from monitor import shared_state
from monitor.invocation import InvocationRecorder, LevelCrossing
from monitor.metrics import Level, Resource
from monitor.shared_state import (
    MAX_STATE_BYTES,
    SharedStateWriter,
    read_shared_state,
    read_state_file,
)

OTHER_UID = 54321
REPO = Path(__file__).resolve().parents[2]


def write_state(directory: Path, pid: int = 4242) -> SharedStateWriter:
    writer = SharedStateWriter(directory, pid=pid)
    writer.write(InvocationRecorder("req", 0.0))
    return writer


def victim(tmp_path: Path) -> Path:
    path = tmp_path / "precious.txt"
    path.write_text("user data\n")
    return path


@pytest.mark.parametrize(
    "planted", [".state-4242.json.tmp", "state-4242.json"], ids=["scratch", "state"]
)
def test_a_planted_link_is_never_followed(tmp_path: Path, planted: str) -> None:
    target = victim(tmp_path)
    folder = tmp_path / ".tmpwarden"
    folder.mkdir(mode=0o700)
    (folder / planted).symlink_to(target)
    write_state(folder)
    assert target.read_text() == "user data\n"
    written = folder / "state-4242.json"
    assert stat.S_ISREG(written.lstat().st_mode)
    assert json.loads(written.read_text())["request_id"] == "req"
    assert oct(stat.S_IMODE(written.stat().st_mode)) == oct(0o600)


def test_the_directory_is_made_private(tmp_path: Path) -> None:
    write_state(tmp_path / ".tmpwarden")
    assert oct(stat.S_IMODE((tmp_path / ".tmpwarden").stat().st_mode)) == oct(0o700)
    assert [p.name for p in (tmp_path / ".tmpwarden").iterdir()] == ["state-4242.json"]


def _linked(tmp_path: Path) -> Path:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(mode=0o700)
    (tmp_path / ".tmpwarden").symlink_to(elsewhere)
    return elsewhere


def _a_file(tmp_path: Path) -> Path:
    (tmp_path / ".tmpwarden").write_text("not a directory")
    (tmp_path / "empty").mkdir()
    return tmp_path / "empty"


def _others(tmp_path: Path) -> Path:
    if os.getuid() != 0:
        pytest.skip("chown to another uid needs root")
    folder = tmp_path / ".tmpwarden"
    folder.mkdir(mode=0o700)
    os.chown(folder, OTHER_UID, OTHER_UID)
    return folder


def _open(tmp_path: Path) -> Path:
    folder = tmp_path / ".tmpwarden"
    folder.mkdir()
    folder.chmod(0o777)
    return folder


@pytest.mark.parametrize(
    ("make", "why"),
    [
        (_linked, "not a directory"),
        (_a_file, "not a directory"),
        (_others, f"uid {OTHER_UID}"),
        (_open, "writable by others"),
    ],
    ids=["link", "a-file", "another-uid", "world-writable"],
)
def test_an_unsafe_directory_stops_sharing_with_one_warning(
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    make: Callable[[Path], Path],
    why: str,
) -> None:
    inside = make(tmp_path)
    with caplog.at_level(logging.WARNING, "tmpwarden.monitor"):
        writer = write_state(tmp_path / ".tmpwarden")
        for _ in range(3):
            writer.write(InvocationRecorder("req", 0.0), ended=True)
    assert list(inside.iterdir()) == []  # nothing written there
    assert writer.unsafe is not None and why in writer.unsafe
    [warning] = [r.getMessage() for r in caplog.records]
    assert "not sharing state" in warning and why in warning


def _fifo(path: Path) -> None:
    os.mkfifo(path)


def _dev_zero(path: Path) -> None:
    path.symlink_to("/dev/zero")


def _text(body: str | bytes) -> Callable[[Path], None]:
    def make(path: Path) -> None:
        path.write_bytes(body if isinstance(body, bytes) else body.encode())

    return make


def _foreign(path: Path) -> None:
    if os.getuid() != 0:
        pytest.skip("chown to another uid needs root")
    path.write_text('{"pid":1,"time":1}')
    os.chown(path, OTHER_UID, OTHER_UID)


HOSTILE: dict[str, tuple[Callable[[Path], None], str]] = {
    "fifo": (_fifo, "not a regular file"),
    "link to /dev/zero": (_dev_zero, "symbolic link"),
    "another owner": (_foreign, f"uid {OTHER_UID}"),
    "over the cap": (_text(b" " * (MAX_STATE_BYTES + 1) + b"{}"), "over 65536 bytes"),
    "64 MiB": (_text(b" " * (64 << 20)), "over 65536 bytes"),
    "Infinity": (_text('{"pid":1,"time":1,"peak_tmp_used":Infinity}'), "Infinity"),
    "NaN pid": (_text('{"pid":NaN,"time":1}'), "NaN"),
    "1e400 pid": (_text('{"pid":1e400,"time":1}'), "OverflowError"),
    "deep nesting": (_text("[" * 30000 + "]" * 30000), "nested too deeply"),
    "levels list": (_text('{"pid":1,"time":1,"levels":[1]}'), "levels"),
    "string time": (_text('{"pid":1,"time":"now"}'), "time"),
    "bad utf-8": (_text(b"\xff\xfe{"), "not a state document"),
    "a list": (_text("[1, 2]"), "not an object"),
}


@pytest.mark.parametrize("case", list(HOSTILE))
def test_a_hostile_state_file_is_ignored_with_one_log_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, case: str
) -> None:
    make, why = HOSTILE[case]
    make(tmp_path / "state-1.json")
    found: list[object] = []
    with caplog.at_level(logging.WARNING, "tmpwarden.monitor"):
        reader = threading.Thread(
            target=lambda: found.append(read_shared_state(tmp_path, 1)), daemon=True
        )
        reader.start()
        reader.join(timeout=10)
    assert not reader.is_alive(), "the reader blocked"
    assert found == [None]
    [line] = [r.getMessage() for r in caplog.records]
    assert "state-1.json" in line and why in line


def test_a_good_state_file_beside_a_hostile_one_is_read(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "state-1.json")
    write_state(tmp_path, pid=7)
    state = read_shared_state(tmp_path, 1)
    assert state is not None and (state.pid, state.request_id) == (7, "req")
    assert read_state_file(tmp_path / "state-2.json") is None  # missing: no error


def test_the_documented_size_of_the_state_file_is_the_measured_one(tmp_path: Path) -> None:
    """Review 2, item 20: README said about 150 bytes, the module docstring about 300."""
    readme = (REPO / "README.md").read_text()
    docstring = " ".join((shared_state.__doc__ or "").split())
    [(low, high)] = set(re.findall(r"state-<pid>\.json` \((\d+) to (\d+) bytes", readme))
    assert f"one file of {low} to {high} bytes" in docstring
    writer = SharedStateWriter(tmp_path, pid=4194304)  # the largest pid (pid_max)
    path = tmp_path / "state-4194304.json"
    recorder = InvocationRecorder(str(uuid.UUID(int=0)), 0.0)  # Lambda's request ids
    writer.write(recorder)
    sizes = {"start": path.stat().st_size}
    recorder.observe(500 * 2**30, 0.5, 10 * 2**30, 0.9)  # 512 GiB /tmp, 10 GiB memory
    recorder.state = replace(recorder.state, current_phase="compress")
    writer.write(recorder)
    sizes["phase"] = path.stat().st_size
    for resource, level in (
        (Resource.TMP, Level.PREDICTED_FULL),
        (Resource.MEMORY, Level.CRITICAL),
    ):
        recorder.events.append(LevelCrossing(0.0, level, resource, 0.99, None))
    writer.write(recorder, ended=True)
    sizes["levels"] = path.stat().st_size
    print(f"state file sizes (bytes): {sizes}")
    assert int(low) <= min(sizes.values()) and max(sizes.values()) <= int(high)
