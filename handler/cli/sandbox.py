"""Run one handler invocation locally under Lambda's limits.

The runtime and the extensions run in a private mount namespace: a tmpfs of the
function's EphemeralStorage at ``/tmp``, the rest of the filesystem read-only (except
the directories of local destinations named in the event), the function's memory as a
limit on resident memory (a watchdog, :mod:`handler.cli.rss_watchdog`; ``RLIMIT_AS``
only as a far backstop), a wall-clock timeout, Lambda's environment variables, a
context with a real remaining-time clock, and Lambda's Extensions and Telemetry APIs
(:mod:`handler.cli.lambda_api`) through init, invoke and shutdown
(:mod:`handler.cli.lifecycle`). Defaults come from the function in ``template.yaml``;
the extensions from the layer's ``extensions/`` directory in a checkout. Where mount
namespaces are not permitted it refuses, rather than running without the limits.
"""

from __future__ import annotations

import functools
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from handler.cli.lifecycle import Environment, ExtensionOutcome, Settings, executables
from handler.cli.sandbox_child import DEFAULT_HANDLER, HANDLER_ENV
from handler.errors import InputError, TmpwardenError
from handler.validation import location_problems
from monitor.units import MiB

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_TEMPLATE = REPO_ROOT / "template.yaml"
HANDLER_NAME = DEFAULT_HANDLER
LAYER_EXTENSIONS = REPO_ROOT / "deploy" / "layer" / "extensions"
REMAP_CANDIDATES = ("/mnt", "/media", "/srv", "/opt")
PASSED_PREFIXES = ("AWS_", "TMPWARDEN_")


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
    status: str = "success"
    error_type: str | None = None
    max_memory_mb: int = 0
    out_of_memory: bool = False
    extensions: tuple[ExtensionOutcome, ...] = ()
    events: tuple[dict[str, Any], ...] = ()


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
    extensions_dir: Path | None = None,
    handler: str = HANDLER_NAME,
    address_space_mb: int | None = None,
) -> Invocation:
    """Run ``handler`` once on ``event_path`` under ``limits``, with the extensions in
    ``extensions_dir`` (None: none); EMF lines go to ``emf_log``. ``address_space_mb``
    caps each process's address space too (``RLIMIT_AS``: allocations fail instead of
    the out-of-memory kill; None: only a far backstop)."""
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
    if extensions_dir is not None and not extensions_dir.is_dir():
        raise InputError(f"{extensions_dir}: the extensions directory does not exist")
    extensions = executables(extensions_dir)
    writable = local_destination_dirs(event)
    code_paths = [REPO_ROOT, Path(sys.prefix), Path(sys.base_prefix), event_path.resolve()]
    code_paths += [path.resolve() for path in extensions]
    remap = _remap_root() if any(_under_tmp(p) for p in code_paths) else None
    command = [
        _moved(Path(sys.executable), remap),
        "-m",
        "handler.cli.sandbox_init",
        _moved(event_path.resolve(), remap),
    ]
    try:
        emf_out = emf_log.open("a", encoding="utf-8")
    except OSError as exc:
        raise InputError(f"{emf_log}: cannot write the EMF log ({exc.strerror})") from exc
    env = _child_env(limits, environ or os.environ, remap)
    env[HANDLER_ENV] = handler
    settings = Settings(
        memory_mb=limits.memory_mb,
        timeout=limits.timeout,
        function_name=limits.function_name,
        handler=handler,
        region=env["AWS_REGION"],
        extensions=tuple(_moved(path.resolve(), remap) for path in extensions),
        address_space_mb=address_space_mb,
    )
    started = time.monotonic()
    with emf_out:
        outcome = Environment(
            [*prefix, "sh", "-c", build_script(limits.tmp_size, writable, command, remap)],
            env,
            settings,
            emf_out,
            log_stream or sys.stderr,
        ).run()
    report = outcome.report
    response = report.get("response")
    if outcome.out_of_memory:
        response = {
            "errorType": "Runtime.OutOfMemory",
            "errorMessage": "Runtime exited with error: signal: killed (resident memory "
            f"reached the function's {limits.memory_mb} MB)",
        }
    elif outcome.timed_out:
        response = {
            "errorType": "Sandbox.Timedout",
            "errorMessage": f"Task timed out after {limits.timeout:.2f} seconds",
        }
    elif response is None:
        response = {
            "errorType": "Runtime.ExitError",
            "errorMessage": "the sandboxed runtime ended without a response "
            f"(exit {outcome.runtime_exit})",
        }
    return Invocation(
        response=response,
        tmp_before=report.get("tmp_before", {}),
        tmp_after=report.get("tmp_after", {}),
        duration_s=round(time.monotonic() - started, 3),
        timed_out=outcome.timed_out,
        emf_lines=outcome.emf_lines,
        status=outcome.status,
        error_type=outcome.error_type,
        max_memory_mb=outcome.max_memory_mb,
        out_of_memory=outcome.out_of_memory,
        extensions=outcome.extensions,
        events=outcome.events,
    )


def _child_env(
    limits: FunctionLimits, parent: Mapping[str, str], remap: str | None
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
    }
    env.pop("TMPDIR", None)
    return env
