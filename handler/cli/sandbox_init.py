"""Inside the sandbox's namespace: start the runtime and the extensions, report on them.

Started by :mod:`handler.cli.sandbox` once the mounts are made (so the runtime and the
extensions share the tmpfs ``/tmp`` and see each other in ``/proc``, as in Lambda's
execution environment). It starts the runtime (:mod:`handler.cli.sandbox_child`, which
loads the handler and then waits for its invocation), then each extension with
``RUNTIME_PID_ENV`` set to the runtime's pid, and writes JSON lines to the file
descriptor named by ``STATUS_FD_ENV``: ``{"runtime": PID, "extensions": {NAME: PID}}``,
``{"failed": NAME, "error": TEXT}`` for an extension that cannot start, then
``{"exited": PID, "code": N}`` as each child ends (``N`` negative: killed by signal
``-N``). It ends when its last child has.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import TextIO

from handler.cli.sandbox_child import GO_FD_ENV, RESULT_FD_ENV

STATUS_FD_ENV = "TMPWARDEN_SANDBOX_STATUS_FD"
EXTENSIONS_ENV = "TMPWARDEN_SANDBOX_EXTENSIONS"
RUNTIME_PID_ENV = "TMPWARDEN_RUNTIME_PID"
"""The runtime's pid, for extensions that sample it (no ``/proc`` search needed)."""
PRIVATE = (STATUS_FD_ENV, EXTENSIONS_ENV, GO_FD_ENV, RESULT_FD_ENV)


def _report(status: TextIO, **fields: object) -> None:
    status.write(json.dumps(fields) + "\n")
    status.flush()


def main(event_path: str) -> int:
    status = os.fdopen(int(os.environ[STATUS_FD_ENV]), "w", encoding="utf-8")
    passed = (int(os.environ[GO_FD_ENV]), int(os.environ[RESULT_FD_ENV]))
    runtime = subprocess.Popen(
        [sys.executable, "-m", "handler.cli.sandbox_child", event_path],
        pass_fds=passed,
        stdin=subprocess.DEVNULL,
    )
    for fd in passed:
        os.close(fd)  # the runtime holds them: EOF on the result pipe means it is done
    children = {runtime.pid: runtime}
    extension_env = {k: v for k, v in os.environ.items() if k not in PRIVATE}
    extension_env[RUNTIME_PID_ENV] = str(runtime.pid)
    started: dict[str, int] = {}
    for path in json.loads(os.environ.get(EXTENSIONS_ENV, "[]")):
        name = Path(path).name
        try:
            child = subprocess.Popen(
                [path], env=extension_env, stdin=subprocess.DEVNULL, cwd=Path(path).parent
            )
        except OSError as exc:
            _report(status, failed=name, error=f"{exc.strerror or exc}")
            continue
        children[child.pid] = child
        started[name] = child.pid
    _report(status, runtime=runtime.pid, extensions=started)
    while children:
        try:
            pid, wait_status = os.wait()
        except ChildProcessError:
            break
        code = os.waitstatus_to_exitcode(wait_status)
        if pid in children:
            children.pop(pid).returncode = code
        _report(status, exited=pid, code=code)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
