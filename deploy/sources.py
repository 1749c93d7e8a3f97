"""The files a person edits: dashboards/*.json, dashboards/queries/*.query, alarms/*.yaml.

Loading checks their shape (valid JSON and YAML, required fields, unique names) and
returns what it could read with a list of problems; what the metrics mean is checked
against the monitor's registry in ``deploy.checks``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deploy.cfn import load_yaml
from deploy.problems import Problem

REPO_ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = "template.yaml"
DASHBOARDS = "dashboards"
QUERIES = "dashboards/queries"
ALARMS = "alarms"

SEVERITIES = ("critical", "warning")
"""critical: pages (CriticalAlarmTopic) and rolls a canary back; warning: WarningAlarmTopic."""
GENERATED_ALARM_KEYS = ("AlarmActions", "OKActions", "InsufficientDataActions")
"""Set from Severity; an alarm file that sets them is refused."""
MAX_DESCRIPTION = 1024
"""CloudWatch's limit on AlarmDescription."""

_STEM = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")
_LOGICAL_ID = re.compile(r"[A-Za-z][A-Za-z0-9]{0,254}")


@dataclass(frozen=True, slots=True)
class Dashboard:
    """One dashboard body: ``dashboards/<name>.json`` becomes resource ``<Name>Dashboard``."""

    path: str
    name: str
    logical_id: str
    body: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Query:
    """One saved Logs Insights query: ``dashboards/queries/<name>.query``."""

    path: str
    name: str
    logical_id: str
    text: str


@dataclass(frozen=True, slots=True)
class Alarm:
    """One alarm: its logical id, severity and the CloudWatch properties as written."""

    path: str
    logical_id: str
    severity: str
    properties: dict[str, Any]

    @property
    def where(self) -> str:
        return f"{self.path}: {self.logical_id}"


SourceFile = Dashboard | Query | Alarm
"""One file of dashboards/ or alarms/ (not handler.locations.Source, an archive)."""


@dataclass(frozen=True, slots=True)
class Sources:
    dashboards: tuple[Dashboard, ...] = ()
    queries: tuple[Query, ...] = ()
    alarms: tuple[Alarm, ...] = ()

    def origin(self) -> dict[str, str]:
        """The source file of every generated resource, by logical id."""
        found: dict[str, str] = {}
        items: list[SourceFile] = [*self.dashboards, *self.queries, *self.alarms]
        for item in items:
            found[item.logical_id] = item.path
        return found


def camel(stem: str) -> str:
    """``closest-to-tmp-limit`` -> ``ClosestToTmpLimit``."""
    return "".join(part.capitalize() for part in stem.split("-"))


def _relative(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix()


def _read(path: Path, root: Path, problems: list[Problem]) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        problems.append(Problem(_relative(path, root), f"cannot read: {exc}"))
        return None


def _stem_ok(path: Path, root: Path, problems: list[Problem]) -> bool:
    if _STEM.fullmatch(path.stem):
        return True
    problems.append(
        Problem(
            _relative(path, root),
            "name the file in lower case words joined by '-' (it becomes a resource name)",
        )
    )
    return False


def load_dashboards(root: Path, problems: list[Problem]) -> list[Dashboard]:
    found: list[Dashboard] = []
    for path in sorted((root / DASHBOARDS).glob("*.json")):
        where = _relative(path, root)
        text = _read(path, root, problems)
        if text is None or not _stem_ok(path, root, problems):
            continue
        try:
            body = json.loads(text)
        except json.JSONDecodeError as exc:
            problems.append(
                Problem(
                    where,
                    f"not valid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}",
                )
            )
            continue
        if not isinstance(body, dict) or not isinstance(body.get("widgets"), list):
            problems.append(Problem(where, 'a dashboard body is an object with a "widgets" list'))
            continue
        for index, widget in enumerate(body["widgets"]):
            problems.extend(_widget_shape(f"{where}: widget {index}", widget))
        found.append(Dashboard(where, path.stem, camel(path.stem) + "Dashboard", body))
    if not found and not problems:
        problems.append(Problem(DASHBOARDS, "no dashboard body (*.json) found"))
    return found


def _widget_shape(where: str, widget: object) -> list[Problem]:
    if not isinstance(widget, dict):
        return [Problem(where, "a widget is an object")]
    problems = []
    for key in ("type", "properties"):
        if key not in widget:
            problems.append(Problem(where, f'has no "{key}"'))
    for key, low, high in (("x", 0, 23), ("y", 0, 10_000), ("width", 1, 24), ("height", 1, 1000)):
        value = widget.get(key)
        if value is not None and (not isinstance(value, int) or not low <= value <= high):
            problems.append(Problem(where, f'"{key}" is {value!r}; expected {low}-{high}'))
    return problems


def load_queries(root: Path, problems: list[Problem]) -> list[Query]:
    found: list[Query] = []
    for path in sorted((root / QUERIES).glob("*.query")):
        text = _read(path, root, problems)
        if text is None or not _stem_ok(path, root, problems):
            continue
        lines = [line.rstrip() for line in text.strip("\n").split("\n")]
        if not any(line and not line.lstrip().startswith("#") for line in lines):
            problems.append(Problem(_relative(path, root), "the query is empty"))
            continue
        found.append(
            Query(
                _relative(path, root),
                path.stem,
                camel(path.stem) + "Query",
                "\n".join(lines) + "\n",
            )
        )
    return found


def load_alarms(root: Path, problems: list[Problem]) -> list[Alarm]:
    found: list[Alarm] = []
    for path in sorted((root / ALARMS).glob("*.yaml")):
        where = _relative(path, root)
        text = _read(path, root, problems)
        if text is None:
            continue
        try:
            document = load_yaml(text)
        except ValueError as exc:
            problems.append(Problem(where, str(exc)))
            continue
        if document is None:
            continue
        if not isinstance(document, dict):
            problems.append(Problem(where, "an alarm file maps logical ids to alarms"))
            continue
        for logical_id, properties in document.items():
            alarm = _alarm(where, logical_id, properties, problems)
            if alarm is not None:
                found.append(alarm)
    if not found and not problems:
        problems.append(Problem(ALARMS, "no alarm (*.yaml) found"))
    return found


def _alarm(
    path: str, logical_id: object, properties: object, problems: list[Problem]
) -> Alarm | None:
    if not isinstance(logical_id, str) or not _LOGICAL_ID.fullmatch(logical_id):
        problems.append(Problem(path, f"{logical_id!r} is not a logical id (letters and digits)"))
        return None
    where = f"{path}: {logical_id}"
    if not isinstance(properties, dict):
        problems.append(Problem(where, "an alarm is a mapping of properties"))
        return None
    before = len(problems)
    severity = properties.get("Severity")
    if severity not in SEVERITIES:
        problems.append(
            Problem(where, f"Severity is {severity!r}; expected one of {', '.join(SEVERITIES)}")
        )
    description = properties.get("AlarmDescription")
    if not isinstance(description, str) or not description.strip():
        problems.append(Problem(where, "AlarmDescription is required: say what to do"))
    elif len(description) > MAX_DESCRIPTION:
        problems.append(
            Problem(where, f"AlarmDescription has {len(description)} characters; at most 1024")
        )
    for key in GENERATED_ALARM_KEYS:
        if key in properties:
            problems.append(Problem(where, f"{key} is set from Severity; remove it"))
    single = "MetricName" in properties
    if single == ("Metrics" in properties):
        problems.append(Problem(where, "give either MetricName (one metric) or Metrics (math)"))
    if len(problems) > before:
        return None
    rest = {key: value for key, value in properties.items() if key != "Severity"}
    return Alarm(path, logical_id, str(severity), rest)


def load_sources(root: Path = REPO_ROOT) -> tuple[Sources, list[Problem]]:
    """Everything under dashboards/ and alarms/, and the problems found reading it."""
    problems: list[Problem] = []
    dashboards = load_dashboards(root, problems)
    queries = load_queries(root, problems)
    alarms = load_alarms(root, problems)
    seen: dict[str, str] = {}
    items: list[SourceFile] = [*dashboards, *queries, *alarms]
    for item in items:
        if item.logical_id in seen:
            problems.append(
                Problem(item.path, f"{item.logical_id} is also defined in {seen[item.logical_id]}")
            )
        seen.setdefault(item.logical_id, item.path)
    return Sources(tuple(dashboards), tuple(queries), tuple(alarms)), problems


def strings(value: object) -> list[str]:
    """Every string inside ``value`` (keys excluded), depth first."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, Mapping):
        return [text for item in value.values() for text in strings(item)]
    if isinstance(value, list | tuple):
        return [text for item in value for text in strings(item)]
    return []
