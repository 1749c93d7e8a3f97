"""The shared state files of runtimes that are gone (monitor/shared_state.py): a writer
removes its own at exit, the extension and the next writer remove those of dead
processes, so ``/tmp`` returns to its baseline once the processes are gone."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

from monitor.invocation import InvocationRecorder
from monitor.shared_state import (
    STALE_SECONDS,
    SharedStateWriter,
    read_shared_state,
    remove_dead_states,
    state_dir,
)

REPO = Path(__file__).resolve().parents[2]

RUNTIME = textwrap.dedent(
    """
    import os, sys, time
    from monitor import MonitorConfig, StorageMonitor
    monitor = StorageMonitor(
        MonitorConfig.resolve(None, {"TMPWARDEN_PATH": sys.argv[1], "TMPWARDEN_EMF": "off"}),
        environ={"TMPWARDEN_SHARED_STATE": "on"},
    )
    monitor.begin_invocation("req-" + sys.argv[2])
    with monitor.phase("compress"):
        if sys.argv[2] == "killed":
            print("ready", flush=True)
            time.sleep(60)
    monitor.end_invocation()
    monitor.stop()
    """
)


def runtime(tmp: Path, how: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen(
        [sys.executable, "-c", RUNTIME, str(tmp), how], env=env, stdout=subprocess.PIPE, text=True
    )


def state(folder: Path, pid: int, *, when: float, ended: bool) -> Path:
    path = folder / f"state-{pid}.json"
    document = {"pid": pid, "time": when, "request_id": "r", "phase": "p", "ended": ended}
    path.write_text(json.dumps(document))
    return path


def test_a_runtime_that_exits_leaves_tmp_at_its_baseline(tmp_path: Path) -> None:
    baseline = sorted(p.name for p in tmp_path.iterdir())
    process = runtime(tmp_path, "exits")
    assert process.wait(timeout=60) == 0
    after = sorted(p.name for p in tmp_path.iterdir())
    print(f"/tmp entries: baseline {baseline}, after the runtime exited {after}")
    assert after == baseline  # no .tmpwarden left: its file and the emptied directory


def test_a_killed_runtime_s_state_stays_for_the_extension_then_is_removed(
    tmp_path: Path,
) -> None:
    process = runtime(tmp_path, "killed")
    assert process.stdout is not None and process.stdout.readline() == "ready\n"
    os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=10)
    folder = state_dir(tmp_path)
    left = folder / f"state-{process.pid}.json"
    assert left.exists()  # a kill runs no exit handler
    # the next runtime's writer keeps it: recent, not ended, an extension may report it
    writer = SharedStateWriter(folder)
    writer.write(_recorder())
    dead = read_shared_state(folder, process.pid)
    assert dead is not None and (dead.phase, dead.ended) == ("compress", False)
    # the extension, after its incident record: every dead process's state goes
    assert remove_dead_states(folder, keep=(None,)) == 1
    assert not left.exists()
    assert [p.name for p in folder.iterdir()] == [f"state-{os.getpid()}.json"]
    writer.close()
    assert not folder.exists()  # the writer's own file and the emptied directory


def test_a_new_writer_removes_only_what_no_extension_needs(tmp_path: Path) -> None:
    folder = tmp_path
    now = 10_000.0
    dead = {901: (now - 5, True), 902: (now - 5, False), 903: (now - STALE_SECONDS - 1, False)}
    paths = {pid: state(folder, pid, when=when, ended=ended) for pid, (when, ended) in dead.items()}
    live = state(folder, 904, when=now - STALE_SECONDS - 1, ended=False)
    scratch = folder / ".state-905.json.tmp"
    scratch.write_text("{half")
    stranger = folder / "notes.txt"
    stranger.write_text("not ours")
    removed = remove_dead_states(
        folder, keep=(1,), older_than=STALE_SECONDS, now=now, exists=lambda pid: pid == 904
    )
    assert removed == 3  # ended (901), stale (903), a dead writer's half-written scratch
    assert not paths[901].exists() and not paths[903].exists() and not scratch.exists()
    assert paths[902].exists()  # died 5 s ago mid-invocation: its incident may be pending
    assert live.exists() and stranger.exists()


def test_a_forked_child_does_not_remove_its_parent_s_file(tmp_path: Path) -> None:
    writer = SharedStateWriter(state_dir(tmp_path))
    writer.write(_recorder())
    child = os.fork()
    if child == 0:  # what the child's exit runs: the inherited finalizer
        writer.close()
        os._exit(0)
    os.waitpid(child, 0)
    assert writer.path.exists()
    writer.close()
    assert not writer.path.exists()


def _recorder() -> InvocationRecorder:
    return InvocationRecorder("req-next", 0.0)
