"""The saved Logs Insights queries and the dashboard's log widgets against the EMF schema.

A query names record fields as Logs Insights sees them: a property
(``RequestId``), a metric value (``PeakTmpUsedPercent``), or an item of a listed
property flattened with its index (```Callbacks.0.name```). Every such name must be in
:mod:`monitor.records` (or the metric registry): a property renamed in the code would
otherwise leave the query silently empty.

Which names are record fields: by the schema's spelling rule (see :mod:`monitor.records`)
EMF properties are PascalCase, the handler's log-only fields snake_case, Logs Insights'
own fields start with ``@`` and its commands and functions are lower case. So every
PascalCase name, and every backquoted ``List.N.field``, is checked; string literals and
``#`` comments are not read. A field the handler's logs and the records share (the
request id, the phase) is spelled the EMF way in both, so no query needs ``coalesce``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from typing import Any

from deploy.problems import Problem
from deploy.sources import Sources
from monitor.records import is_record_field, suggestion

QUERY_TYPE = "AWS::Logs::QueryDefinition"
DASHBOARD_TYPE = "AWS::CloudWatch::Dashboard"
SCHEMA = "monitor/records.py"

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'')
_QUOTED_NAME = re.compile(r"`([^`]+)`")
_NAME = re.compile(r"(?<![\w@.$])([A-Za-z_][A-Za-z0-9_]*)(?![\w.])")
_PASCAL = re.compile(r"[A-Z][A-Za-z0-9]*[a-z][A-Za-z0-9]*")


def query_fields(text: str) -> list[str]:
    """The record-field names a Logs Insights query uses, in order, each once."""
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    code = _STRING.sub('""', "\n".join(lines))
    names = _QUOTED_NAME.findall(code)
    bare = _QUOTED_NAME.sub(" ", code)
    names += [n for n in _NAME.findall(bare) if _PASCAL.fullmatch(n)]
    return list(dict.fromkeys(names))


def field_problems(where: str, text: str) -> list[Problem]:
    """A problem for every field of the query ``text`` that the schema does not name."""
    problems = []
    for name in query_fields(text):
        if is_record_field(name):
            continue
        near = suggestion(name)
        hint = f"; did you mean {near!r}?" if near else ""
        problems.append(
            Problem(where, f"field {name!r} is not in the EMF record schema ({SCHEMA}){hint}")
        )
    return problems


def _log_widgets(body: Mapping[str, Any]) -> Iterator[tuple[int, str, str]]:
    """(index, title, query) of every log widget of a dashboard body."""
    for index, widget in enumerate(body.get("widgets", [])):
        if not isinstance(widget, dict) or widget.get("type") != "log":
            continue
        properties = widget.get("properties", {})
        query = properties.get("query") if isinstance(properties, dict) else None
        if isinstance(query, str):
            yield index, str(properties.get("title", "")), query


def _template_texts(template: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    """(where, query) of every saved query and dashboard log widget in the template."""
    resources = template.get("Resources", {})
    if not isinstance(resources, dict):
        return
    for logical_id, resource in resources.items():
        if not isinstance(resource, dict):
            continue
        properties = resource.get("Properties", {})
        if not isinstance(properties, dict):
            continue
        where = f"template.yaml: {logical_id}"
        if resource.get("Type") == QUERY_TYPE and isinstance(properties.get("QueryString"), str):
            yield where, properties["QueryString"]
        elif resource.get("Type") == DASHBOARD_TYPE:
            body = properties.get("DashboardBody")
            if isinstance(body, dict):
                body = body.get("Fn::Sub")
            try:
                value = json.loads(body) if isinstance(body, str) else None
            except ValueError:
                continue  # check_functions reports a body that is not JSON
            if isinstance(value, dict):
                for index, title, query in _log_widgets(value):
                    yield f"{where}: widget {index} ({title!r})", query


def check_record_fields(
    sources: Sources, template: Mapping[str, Any] | None = None
) -> list[Problem]:
    """Every saved query and every dashboard log widget (in ``dashboards/`` and, when
    given, in the template's generated blocks) names only fields of the EMF schema."""
    problems: list[Problem] = []
    for query in sources.queries:
        problems += field_problems(query.path, query.text)
    for dashboard in sources.dashboards:
        for index, title, text in _log_widgets(dashboard.body):
            problems += field_problems(f"{dashboard.path}: widget {index} ({title!r})", text)
    if template is not None:
        for where, text in _template_texts(template):
            problems += field_problems(where, text)
    return problems
