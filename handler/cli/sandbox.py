"""Run one handler invocation locally under Lambda's limits.

The child runs in a private mount namespace: a tmpfs of the function's
EphemeralStorage at ``/tmp``, the rest of the filesystem read-only (except the
directories of local destinations named in the event), ``RLIMIT_AS`` at the
function's memory, a wall-clock timeout, Lambda's environment variables and a
context with a real remaining-time clock. Defaults come from the function in
``template.yaml``. Where mount namespaces are not permitted it refuses, rather than
running without the limits.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import resource
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from handler.cli.sandbox_child import DEADLINE_ENV, RESULT_FD_ENV
from handler.errors import InputError, TmpwardenError
from handler.validation import location_problems
from monitor.units import MiB

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_TEMPLATE = REPO_ROOT / "template.yaml"
HANDLER_NAME = "handler.app.lambda_handler"
REMAP_CANDIDATES = ("/mnt", "/media", "/srv", "/opt")
PASSED_PREFIXES = ("AWS_", "TMPWARDEN_")
KILL_GRACE_SECONDS = 2.0


class SandboxError(TmpwardenError, RuntimeError):
    """When the sandbox cannot be set up (no mount namespaces, a bad template)."""


@dataclass(frozen=True, slots=True)
class FunctionLimits:
    """The limits one invocation runs under (as the template deploys them)."""

    tmp_size: int = 512 * MiB
    memory_mb: int = 128
    timeout: float = 3.0
    environment: Mapping[str, str] = field(default_factory=dict)
    function_name: str = "tmpwarden-local"


@dataclass(frozen=True, slots=True)
class Invocation:
    """What came out of one sandboxed invocation."""

    response: dict[str, Any]
    tmp_before: dict[str, Any]
    tmp_after: dict[str, Any]
    duration_s: float
    timed_out: bool
    emf_lines: int


def _resolve(value: Any, parameters: Mapping[str, Any]) -> Any:
    """A template value with ``!Ref Parameter`` replaced by the parameter's default."""
    if isinstance(value, dict) and set(value) == {"Ref"}:
        return parameters.get(value["Ref"], {}).get("Default")
    return value


def limits_from_template(template: Path = DEFAULT_TEMPLATE) -> FunctionLimits:
    """The packaging function's EphemeralStorage, MemorySize, Timeout and environment."""
    # The one CloudFormation YAML loader (short tags in long form) is deploy.cfn's; the
    # sandbox runs from a checkout, where deploy/ sits beside handler/.
    from deploy.cfn import load_yaml  # noqa: PLC0415 - only the sandbox reads templates

    try:
        document = load_yaml(template.read_text())
    except (OSError, ValueError) as exc:
        raise SandboxError(f"{template}: cannot read the template ({exc})") from exc
    parameters = document.get("Parameters", {}) or {}
    globals_ = (document.get("Globals", {}) or {}).get("Function", {}) or {}
    for name, resource_ in (document.get("Resources", {}) or {}).items():
        props = {**globals_, **(resource_.get("Properties", {}) or {})}
        if (
            resource_.get("Type") == "AWS::Serverless::Function"
            and props.get("Handler") == HANDLER_NAME
        ):
            storage = _resolve((props.get("EphemeralStorage") or {}).get("Size", 512), parameters)
            declared = (props.get("Environment") or {}).get("Variables") or {}
            resolved = {key: _resolve(value, parameters) for key, value in declared.items()}
            variables = {
                key: str(value)
                for key, value in resolved.items()
                if value is not None and not isinstance(value, dict)  # skip unresolved !Sub etc.
            }
            return FunctionLimits(
                tmp_size=int(storage) * MiB,
                memory_mb=int(_resolve(props.get("MemorySize", 128), parameters)),
                timeout=float(_resolve(props.get("Timeout", 3), parameters)),
                environment=variables,
                function_name=str(name),
            )
    raise SandboxError(f"{template}: no AWS::Serverless::Function with Handler {HANDLER_NAME}")


@functools.cache
def namespace_prefix() -> tuple[str, ...] | None:
    """The ``unshare`` invocation that can mount a tmpfs here (root, or a user namespace)."""
    if shutil.which("unshare") is None:
        return None
    for prefix in (
        ("unshare", "-m", "--propagation", "private"),
        ("unshare", "-r", "-m", "--propagation", "private"),
    ):
        probe = subprocess.run(
            [*prefix, "sh", "-c", "mount -t tmpfs -o size=1m tmpfs /tmp"],
            capture_output=True,
            check=False,
        )
        if probe.returncode == 0:
            return prefix
    return None


def _remap_root() -> str:
    for candidate in REMAP_CANDIDATES:
        if Path(candidate).is_dir():
            return candidate
    raise SandboxError(
        "the code or interpreter lives under /tmp, which the sandbox hides, and there is no "
        f"directory among {', '.join(REMAP_CANDIDATES)} to show it through; move the checkout"
    )


def _under_tmp(path: Path) -> bool:
    return path == Path("/tmp") or Path("/tmp") in path.parents


def local_destination_dirs(event: Any) -> list[Path]:
    """Directories of local destinations named in the event (they stay writable); values
    no path can hold are left for the handler's own validation to report."""
    dirs: list[Path] = []
    targets = event.get("targets") if isinstance(event, dict) else None
    for target in targets if isinstance(targets, list) else []:
        if not isinstance(target, dict):
            continue
        source, destination = (
            value if isinstance(value, str) and not location_problems(value) else None
            for value in (target.get("source"), target.get("destination"))
        )
        if isinstance(source, str) and "://" not in source and _under_tmp(Path(source).resolve()):
            raise InputError(
                f"{source}: a local source under /tmp is hidden by the sandbox's own /tmp; "
                "put it elsewhere or upload it to S3"
            )
        if isinstance(destination, str) and destination and "://" not in destination:
            directory = Path(destination).resolve().parent
            if _under_tmp(directory):
                raise InputError(
                    f"{destination}: a local destination under /tmp would be written to the "
                    "sandbox's own /tmp and vanish with it, as in Lambda; choose another directory"
                )
            if not directory.is_dir():
                raise InputError(f"{destination}: the directory {directory} does not exist")
            dirs.append(directory)
    return dirs


def build_script(
    tmp_size: int, writable: Sequence[Path], command: Sequence[str], remap: str | None
) -> str:
    """The shell run inside the namespace: mounts, then ``exec`` of the command."""
    steps = []
    if remap is not None:
        steps.append(f"mount --bind /tmp {shlex.quote(remap)}")
    steps.append(f"mount -t tmpfs -o size={tmp_size},mode=1777 tmpfs /tmp")
    steps += [f"mount --bind {shlex.quote(str(d))} {shlex.quote(str(d))}" for d in writable]
    steps.append("mount -o remount,bind,ro /")
    return " && ".join(steps) + " && exec " + shlex.join(command)


def _moved(path: Path, remap: str | None) -> str:
    if remap is not None and _under_tmp(path):
        return str(Path(remap) / path.relative_to("/tmp"))
    return str(path)


def invoke(
    event_path: Path,
    limits: FunctionLimits,
    *,
    emf_log: Path,
    log_stream: TextIO | None = None,
    environ: Mapping[str, str] | None = None,
) -> Invocation:
    """Run the handler once on ``event_path`` under ``limits``; EMF lines go to ``emf_log``."""
    prefix = namespace_prefix()
    if prefix is None:
        raise SandboxError(
            "mount namespaces are not permitted here (needs root, or unprivileged user "
            "namespaces, and util-linux unshare); refusing to run without Lambda's limits"
        )
    try:
        event = json.loads(event_path.read_text())
    except (OSError, ValueError) as exc:
        raise InputError(f"{event_path}: cannot read the event as JSON ({exc})") from exc
    writable = local_destination_dirs(event)
    code_paths = [REPO_ROOT, Path(sys.prefix), Path(sys.base_prefix), event_path.resolve()]
    remap = _remap_root() if any(_under_tmp(p) for p in code_paths) else None
    command = [
        _moved(Path(sys.executable), remap),
        "-m",
        "handler.cli.sandbox_child",
        _moved(event_path.resolve(), remap),
    ]
    try:
        emf_out = emf_log.open("a", encoding="utf-8")
    except OSError as exc:
        raise InputError(f"{emf_log}: cannot write the EMF log ({exc.strerror})") from exc
    read_fd, write_fd = os.pipe()
    env = _child_env(limits, environ or os.environ, remap, time.time() + limits.timeout, write_fd)
    started = time.monotonic()
    with emf_out:
        emf_count, timed_out, exit_code = _run_child(
            [*prefix, "sh", "-c", build_script(limits.tmp_size, writable, command, remap)],
            env,
            write_fd,
            limits,
            emf_out,
            log_stream or sys.stderr,
        )
    with os.fdopen(read_fd) as result:
        raw = result.read()
    report = json.loads(raw) if raw.strip() else {}
    response = report.get("response")
    if timed_out or response is None:
        message = (
            f"Task timed out after {limits.timeout:.2f} seconds"
            if timed_out
            else f"the sandboxed process ended without a response (exit {exit_code}; "
            "out of memory under RLIMIT_AS?)"
        )
        response = {
            "errorType": "Sandbox.Timedout" if timed_out else "Runtime.ExitError",
            "errorMessage": message,
        }
    return Invocation(
        response=response,
        tmp_before=report.get("tmp_before", {}),
        tmp_after=report.get("tmp_after", {}),
        duration_s=round(time.monotonic() - started, 3),
        timed_out=timed_out,
        emf_lines=emf_count,
    )


def _run_child(
    argv: list[str],
    env: dict[str, str],
    result_fd: int,
    limits: FunctionLimits,
    emf_out: TextIO,
    logs: TextIO,
) -> tuple[int, bool, int]:
    """Start the namespaced child, relay its output, kill it at the timeout; returns
    (EMF lines, timed out, exit code). It is never left running behind us."""
    memory = limits.memory_mb * MiB

    def limit_memory() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (memory, memory))

    process = subprocess.Popen(
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        pass_fds=(result_fd,),
        preexec_fn=limit_memory,  # noqa: PLW1509 - setrlimit only, before exec
        start_new_session=True,
    )
    os.close(result_fd)
    expired = threading.Event()

    def kill() -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)

    def kill_on_timeout() -> None:
        expired.set()
        kill()

    watchdog = threading.Timer(limits.timeout + KILL_GRACE_SECONDS, kill_on_timeout)
    watchdog.start()
    try:
        emf_count = _pump_output(process, emf_out, logs)
        process.wait()
    except BaseException:
        kill()
        process.wait()
        raise
    finally:
        watchdog.cancel()
    return emf_count, expired.is_set(), process.returncode


def _child_env(
    limits: FunctionLimits,
    parent: Mapping[str, str],
    remap: str | None,
    deadline: float,
    result_fd: int,
) -> dict[str, str]:
    passed = {k: v for k, v in parent.items() if k.startswith(PASSED_PREFIXES)}
    env = {
        "PATH": parent.get("PATH", "/usr/bin:/bin"),
        "LANG": "C.UTF-8",
        "TZ": "UTC",
        "PYTHONPATH": _moved(REPO_ROOT, remap),
        "PYTHONDONTWRITEBYTECODE": "1",
        "MALLOC_ARENA_MAX": "2",
        "LAMBDA_TASK_ROOT": _moved(REPO_ROOT, remap),
        "AWS_LAMBDA_FUNCTION_NAME": limits.function_name,
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(limits.memory_mb),
        "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{limits.function_name}",
        "AWS_LAMBDA_LOG_STREAM_NAME": "sandbox",
        "AWS_REGION": parent.get("AWS_REGION", parent.get("AWS_DEFAULT_REGION", "us-east-1")),
        "AWS_EXECUTION_ENV": "AWS_Lambda_python3.12",
        **limits.environment,
        "TMPWARDEN_TRACING": "off",  # no X-Ray daemon here; pass TMPWARDEN_TRACING=on to override
        **passed,
        RESULT_FD_ENV: str(result_fd),
        DEADLINE_ENV: repr(deadline),
    }
    env.pop("TMPDIR", None)
    return env


def _pump_output(process: subprocess.Popen[bytes], out: TextIO, logs: TextIO) -> int:
    """EMF lines (JSON with ``_aws``) to the EMF log; everything else to ``logs``."""
    assert process.stdout is not None and process.stderr is not None
    count = 0
    stderr_thread = threading.Thread(
        target=lambda: [logs.write(line.decode(errors="replace")) for line in process.stderr],  # type: ignore[union-attr]
        daemon=True,
    )
    stderr_thread.start()
    for raw in process.stdout:
        line = raw.decode(errors="replace")
        if line.startswith("{") and '"_aws"' in line:
            out.write(line if line.endswith("\n") else line + "\n")
            count += 1
        else:
            logs.write(line)
    stderr_thread.join()
    logs.flush()
    return count
