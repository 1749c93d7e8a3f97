"""Edits that break a copy of the repository on purpose, and the checks' view of it."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from deploy.checks import check_sources, load_template
from deploy.problems import Problem
from deploy.sources import load_sources

DASHBOARD = "dashboards/operations.json"
STORAGE_ALARMS = "alarms/storage.yaml"
PACKAGING_ALARMS = "alarms/packaging.yaml"


def replace_once(path: Path, old: str, new: str, *, after: str = "") -> None:
    """Replace the first ``old`` that follows ``after`` in ``path``; it must be there."""
    text = path.read_text(encoding="utf-8")
    start = text.index(after) if after else 0
    at = text.index(old, start)
    path.write_text(text[:at] + new + text[at + len(old) :], encoding="utf-8")


def edit_dashboard(root: Path, change: Callable[[dict[str, Any]], None]) -> None:
    """Load the dashboard body, let ``change`` edit it, write it back."""
    path = root / DASHBOARD
    body = json.loads(path.read_text(encoding="utf-8"))
    change(body)
    path.write_text(json.dumps(body, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def widget(body: dict[str, Any], title: str) -> dict[str, Any]:
    """The widget with ``title`` (its properties)."""
    for item in body["widgets"]:
        if item.get("properties", {}).get("title") == title:
            properties: dict[str, Any] = item["properties"]
            return properties
    raise KeyError(title)


def source_problems(root: Path) -> list[Problem]:
    """What is wrong with the sources under ``root`` (not counting drift)."""
    sources, problems = load_sources(root)
    _, template, unreadable = load_template(root)
    assert template is not None, unreadable
    return problems + check_sources(sources, template)
