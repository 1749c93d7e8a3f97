"""A copy of the deployable parts of the repository, to break on purpose."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from deploy.sources import REPO_ROOT

COPIED = ("template.yaml", "dashboards", "alarms", "statemachine")


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """template.yaml, dashboards/, alarms/ and statemachine/ copied to a temporary directory."""
    for name in COPIED:
        source = REPO_ROOT / name
        if source.is_dir():
            shutil.copytree(source, tmp_path / name)
        else:
            shutil.copy2(source, tmp_path / name)
    return tmp_path
