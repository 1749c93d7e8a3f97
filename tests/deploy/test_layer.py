"""The monitor layer holds the sidecar and the extension, and nothing of the offline
report (matplotlib), each where Lambda looks for it.

``sam build`` builds MonitorLayer (``ContentUri: deploy/layer/``, ``BuildMethod:
makefile``) by running ``make build-MonitorLayer`` in deploy/layer with ``ARTIFACTS_DIR``
set. Lambda extracts the layer to /opt: the monitor package must be under ``python/``
(``/opt/python`` is on the runtime's path) and the extension under ``extensions/``
(Lambda starts each executable of ``/opt/extensions``); with ``BuildMethod: python3.12``
everything landed under ``python/`` and an extension would never run. The tests run that
very Makefile into a temporary directory (``PIP=true``: no PyPI here) and read the result.
"""

from __future__ import annotations

import os
import re
import stat
import subprocess
import sys
from pathlib import Path

from deploy.checks import load_template
from deploy.sources import REPO_ROOT

LAYER = REPO_ROOT / "deploy" / "layer"
MATPLOTLIB = re.compile(r"^\s*(import|from)\s+matplotlib\b", re.MULTILINE)
EXTENSION = "extensions/tmpwarden-monitor"


def _shipped() -> set[str]:
    """What of monitor/ belongs in the layer: every module, py.typed and every subpackage
    but report/."""
    return {
        p.name
        for p in (REPO_ROOT / "monitor").iterdir()
        if p.suffix in (".py", ".typed") or ((p / "__init__.py").is_file() and p.name != "report")
    }


def _build(tmp_path: Path) -> tuple[Path, list[str]]:
    built = tmp_path / "MonitorLayer"
    subprocess.run(
        ["make", "-C", str(LAYER), "build-MonitorLayer", f"ARTIFACTS_DIR={built}", "PIP=true"],
        check=True,
        capture_output=True,
        timeout=120,
    )
    files = sorted(p.relative_to(built).as_posix() for p in built.rglob("*") if p.is_file())
    return built, files


def test_the_layer_links_every_monitor_module_and_not_the_report() -> None:
    links = {p.name: p for p in (LAYER / "monitor").iterdir()}
    assert set(links) == _shipped(), "add a link in deploy/layer/monitor/ for a new module"
    for name, link in links.items():
        assert link.is_symlink() and link.resolve() == REPO_ROOT / "monitor" / name
    assert (REPO_ROOT / "monitor" / "report").is_dir() and "report" not in links


def test_the_template_builds_the_layer_from_deploy_layer_with_its_makefile() -> None:
    _, template, problems = load_template(REPO_ROOT)
    assert template is not None, problems
    layer = template["Resources"]["MonitorLayer"]
    assert layer["Properties"]["ContentUri"] == "deploy/layer/"
    assert layer["Metadata"]["BuildMethod"] == "makefile"
    assert "build-MonitorLayer:" in (LAYER / "Makefile").read_text(encoding="utf-8")
    function = template["Resources"]["PackagingFunction"]["Properties"]
    assert {"Ref": "MonitorLayer"} in function["Layers"]


def test_the_build_puts_the_monitor_in_python_and_the_extension_in_extensions(
    tmp_path: Path,
) -> None:
    built, files = _build(tmp_path)
    print(f"the layer holds {len(files)} files: {files}")
    assert {f"python/monitor/{name}" for name in _shipped() if "." in name} <= set(files)
    assert "python/monitor/extension/main.py" in files
    assert EXTENSION in files
    assert not [f for f in files if f.startswith("python/extensions")]
    assert {f.split("/")[0] for f in files} == {"python", "extensions"}
    mode = (built / EXTENSION).stat().st_mode
    assert mode & stat.S_IXUSR and mode & stat.S_IXOTH, "Lambda runs it: it must be executable"
    assert (built / EXTENSION).read_text(encoding="utf-8").startswith("#!/usr/bin/env python3\n")
    assert not [f for f in files if "report" in f or "__pycache__" in f]
    python = [built / f for f in files if f.endswith(".py")]
    assert not [p for p in python if MATPLOTLIB.search(p.read_text(encoding="utf-8"))]
    requirements = (built / "python" / "requirements.txt").read_text(encoding="utf-8")
    assert "matplotlib" not in requirements.lower()


def test_the_layer_monitor_works_alone_and_the_extension_finds_it_in_opt_python(
    tmp_path: Path,
) -> None:
    built, _ = _build(tmp_path)
    # The layer's monitor works on its own, and says where the report lives (the
    # development install's editable finder is set aside: a Lambda has none).
    env = {**os.environ, "PYTHONPATH": str(built / "python")}
    code = (
        "import sys\n"
        "sys.meta_path[:] = [f for f in sys.meta_path if 'Editable' not in repr(f)]\n"
        "import monitor, monitor.sidecar, monitor.cli\n"
        "assert monitor.__file__.startswith(sys.argv[1]), monitor.__file__\n"
        "assert 'matplotlib' not in sys.modules\n"
        "raise SystemExit(monitor.cli.main(['report', 'x.log', '-o', 'x.png']))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, str(built / "python")],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    assert "error: the report is not part of the monitor layer" in result.stderr
    # /opt/extensions/tmpwarden-monitor imports /opt/python/monitor (here: the build's),
    # not a checkout's; without AWS_LAMBDA_RUNTIME_API it says so and exits 2.
    probe = (
        "import runpy, sys\n"
        "sys.meta_path[:] = [f for f in sys.meta_path if 'Editable' not in repr(f)]\n"
        "sys.argv = [sys.argv[1]]\n"
        "try:\n"
        "    runpy.run_path(sys.argv[0], run_name='__main__')\n"
        "except SystemExit as done:\n"
        "    print(sys.modules['monitor'].__file__, done.code)\n"
    )
    clean = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH",)}
    clean.pop("AWS_LAMBDA_RUNTIME_API", None)
    ran = subprocess.run(
        [sys.executable, "-c", probe, str(built / EXTENSION)],
        capture_output=True,
        text=True,
        env=clean,
        cwd=tmp_path,
        timeout=60,
        check=False,
    )
    where, code_ = ran.stdout.split()
    assert where == str(built / "python" / "monitor" / "__init__.py")
    assert code_ == "2"
    assert "error: AWS_LAMBDA_RUNTIME_API is not set" in ran.stderr
