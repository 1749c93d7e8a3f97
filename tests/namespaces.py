"""Run a command with size-limited tmpfs mounts in a private mount namespace.

As root this needs only ``unshare -m``; otherwise a user namespace (``unshare -r -m``)
is tried. Where neither is permitted the calling test is skipped with the reason.
"""

from __future__ import annotations

import shlex
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

from handler.cli.sandbox import namespace_prefix


def unshare_prefix() -> tuple[str, ...] | None:
    """The unshare invocation that works here (the sandbox's own probe), or None."""
    return namespace_prefix()


def require_namespaces() -> tuple[str, ...]:
    prefix = unshare_prefix()
    if prefix is None:
        pytest.skip(
            "mounting a tmpfs in a private mount namespace is not permitted here "
            "(needs root or unprivileged user namespaces, and util-linux unshare)"
        )
    return prefix


def run_with_tmpfs(
    command: Sequence[str],
    mounts: Mapping[Path, str],
    *,
    env: Mapping[str, str] | None = None,
    after: str = "",
    timeout: float = 600,
) -> subprocess.CompletedProcess[str]:
    """Mount a tmpfs of each size at each path, run ``command``, then the shell ``after``.

    The command's exit status is the result's; ``after`` runs inside the namespace
    (to list what the command left on the mounts) and prints to stdout.
    """
    prefix = require_namespaces()
    script = " && ".join(
        f"mount -t tmpfs -o size={size} tmpfs {shlex.quote(str(path))}"
        for path, size in mounts.items()
    )
    script += f" && {{ {shlex.join(command)}; status=$?; {after or 'true'}; exit $status; }}"
    return subprocess.run(
        [*prefix, "sh", "-c", script],
        capture_output=True,
        text=True,
        env=dict(env) if env is not None else None,
        timeout=timeout,
        check=False,
    )
