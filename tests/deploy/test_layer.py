"""The monitor layer holds the sidecar and nothing of the offline report (matplotlib).

``sam build`` builds MonitorLayer (``ContentUri: deploy/layer/``, ``BuildMethod:
python3.12``) with aws-lambda-builders' python_pip workflow: pip installs
``requirements.txt`` (which needs PyPI, so not here) and ``CopySourceAction`` copies the
directory, following links and leaving out ``PythonPipWorkflow.EXCLUDED_FILES``. The
test runs that very copy action from the SAM CLI's own environment, then reads what it
copied: exactly what ``sam build`` puts beside the installed requirements.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from deploy.checks import load_template
from deploy.sources import REPO_ROOT

LAYER = REPO_ROOT / "deploy" / "layer"
SAM_PYTHON = REPO_ROOT / ".venv-sam" / "bin" / "python"
COPY = """
import sys
from aws_lambda_builders.actions import CopySourceAction
from aws_lambda_builders.workflows.python_pip.workflow import PythonPipWorkflow
CopySourceAction(sys.argv[1], sys.argv[2], excludes=PythonPipWorkflow.EXCLUDED_FILES).execute()
"""
MATPLOTLIB = re.compile(r"^\s*(import|from)\s+matplotlib\b", re.MULTILINE)


def _shipped() -> set[str]:
    """What of monitor/ belongs in the layer: every module and py.typed, not report/."""
    return {p.name for p in (REPO_ROOT / "monitor").iterdir() if p.suffix in (".py", ".typed")}


def test_the_layer_links_every_monitor_module_and_not_the_report() -> None:
    links = {p.name: p for p in (LAYER / "monitor").iterdir()}
    assert set(links) == _shipped(), "add a link in deploy/layer/monitor/ for a new module"
    for name, link in links.items():
        assert link.is_symlink() and link.resolve() == REPO_ROOT / "monitor" / name
    assert (REPO_ROOT / "monitor" / "report").is_dir() and "report" not in links


def test_the_template_builds_the_layer_from_deploy_layer_with_pip() -> None:
    _, template, problems = load_template(REPO_ROOT)
    assert template is not None, problems
    layer = template["Resources"]["MonitorLayer"]
    assert layer["Properties"]["ContentUri"] == "deploy/layer/"
    assert layer["Metadata"]["BuildMethod"].startswith("python3.")


def test_what_sam_build_copies_into_the_layer_holds_no_report_and_no_matplotlib(
    tmp_path: Path,
) -> None:
    if not SAM_PYTHON.exists():
        pytest.skip("the SAM CLI's environment (.venv-sam) is not installed here")
    built = tmp_path / "MonitorLayer"
    subprocess.run(
        [str(SAM_PYTHON), "-c", COPY, str(LAYER), str(built)],
        check=True,
        capture_output=True,
        timeout=120,
    )
    files = sorted(p.relative_to(built).as_posix() for p in built.rglob("*") if p.is_file())
    print(f"sam build copies {len(files)} files into the layer: {files}")
    assert {f"monitor/{name}" for name in _shipped()} <= set(files)
    assert not [f for f in files if "report" in f]
    python = [built / f for f in files if f.endswith(".py")]
    assert not [p for p in python if MATPLOTLIB.search(p.read_text(encoding="utf-8"))]
    requirements = (built / "requirements.txt").read_text(encoding="utf-8")
    assert "matplotlib" not in requirements.lower()
    # The layer's monitor works on its own, and says where the report lives (the
    # development install's editable finder is set aside: a Lambda has none).
    env = {**os.environ, "PYTHONPATH": str(built)}
    code = (
        "import sys\n"
        "sys.meta_path[:] = [f for f in sys.meta_path if 'Editable' not in repr(f)]\n"
        "import monitor, monitor.sidecar, monitor.cli\n"
        "assert monitor.__file__.startswith(sys.argv[1]), monitor.__file__\n"
        "assert 'matplotlib' not in sys.modules\n"
        "raise SystemExit(monitor.cli.main(['report', 'x.log', '-o', 'x.png']))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, str(built)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    assert "error: the report is not part of the monitor layer" in result.stderr
