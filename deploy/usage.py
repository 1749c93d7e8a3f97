"""Which metrics the dashboards and alarms use, and whether the monitor emits them so.

``collect_uses`` reads every metric a widget (metric rows, SEARCH expressions) or an alarm
(one metric, or each MetricStat of metric math) names; ``check_registry`` compares each
with the monitor's registry (``monitor.metrics.REGISTRY``): name, namespace, dimension
set and, for alarms, unit. Lambda's own metrics are checked against ``AWS_METRICS``.
``metrics_used`` is the set of (namespace, metric, dimension names, unit) for tests that
compare the dashboards and alarms with the EMF the code writes.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deploy.problems import Problem
from deploy.sources import REPO_ROOT, Alarm, Dashboard, Sources, load_sources
from monitor.metrics import DEFAULT_NAMESPACE, REGISTRY, MetricSpec

NAMESPACE_PLACEHOLDER = "${MetricNamespace}"
"""How the sources write the monitor's namespace: the MetricNamespace parameter, which
also feeds TMPWARDEN_NAMESPACE, so the dashboard and alarms follow it."""

AWS_METRICS: dict[str, dict[str, str]] = {
    "AWS/Lambda": {
        "Invocations": "Count",
        "Errors": "Count",
        "Throttles": "Count",
        "Duration": "Milliseconds",
        "ConcurrentExecutions": "Count",
        "UnreservedConcurrentExecutions": "Count",
    },
}
"""AWS metrics the dashboards and alarms may use, with their units."""
AWS_DIMENSION_SETS: dict[str, tuple[frozenset[str], ...]] = {
    "AWS/Lambda": (
        frozenset(),
        frozenset({"FunctionName"}),
        frozenset({"FunctionName", "Resource"}),
        frozenset({"FunctionName", "ExecutedVersion"}),
    ),
}

_SEARCH = re.compile(r"SEARCH\(\s*'((?:[^'\\]|\\.)*)'")
_SCHEMA = re.compile(r"\{((?:\$\{[^}]*\}|[^{}])*)\}")  # {...} that may hold ${...}
_TERM = re.compile(r'(\w+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s"()]+))')


@dataclass(frozen=True, slots=True)
class MetricUse:
    """A metric as a widget or an alarm names it."""

    namespace: str
    """Resolved: ``${MetricNamespace}`` is the monitor's namespace."""
    name: str
    dimensions: tuple[str, ...]
    """Dimension names, sorted."""
    unit: str | None
    """The alarm's Unit; None for widgets (they carry none) and alarms without one."""
    where: str
    written_namespace: str
    dimension_values: tuple[tuple[str, str], ...] = ()
    """(name, value) as written; a SEARCH gives only the values it filters on."""
    in_alarm: bool = False

    @property
    def key(self) -> tuple[str, str, tuple[str, ...], str | None]:
        return (self.namespace, self.name, self.dimensions, self.unit)


# --- which metrics the sources use -------------------------------------------------------


def _resolve_namespace(written: str, namespace: str) -> str:
    return namespace if written == NAMESPACE_PLACEHOLDER else written


def _use(
    written_ns: str,
    name: str,
    dimensions: Sequence[tuple[str, str]],
    unit: str | None,
    where: str,
    namespace: str,
    in_alarm: bool,
) -> MetricUse:
    return MetricUse(
        namespace=_resolve_namespace(written_ns, namespace),
        name=name,
        dimensions=tuple(sorted(key for key, _ in dimensions)),
        unit=unit,
        where=where,
        written_namespace=written_ns,
        dimension_values=tuple(dimensions),
        in_alarm=in_alarm,
    )


def _metric_rows(rows: Sequence[object]) -> Iterator[tuple[int, list[object] | None, Any]]:
    """Each row of a widget's "metrics": (index, labels with "." and "..." expanded, or None
    for a malformed row, and the options object or None)."""
    previous: list[object] = []
    for index, row in enumerate(rows):
        if not isinstance(row, list) or not row:
            yield index, None, None
            continue
        options = row[-1] if isinstance(row[-1], dict) else None
        labels = row[:-1] if options is not None else list(row)
        if labels and labels[0] == "...":
            keep = len(previous) - (len(labels) - 1)
            labels = previous[: max(keep, 0)] + labels[1:]
        labels = [
            previous[i] if item == "." and i < len(previous) else item
            for i, item in enumerate(labels)
        ]
        if labels:
            previous = labels
        yield index, labels, options


def _search_uses(
    expression: str, where: str, namespace: str
) -> tuple[list[MetricUse], list[Problem]]:
    uses: list[MetricUse] = []
    problems: list[Problem] = []
    for match in _SEARCH.finditer(expression):
        text = match[1].replace("\\'", "'")
        schema = _SCHEMA.search(text)
        terms = {
            term[1]: term[2] if term[2] is not None else term[3] for term in _TERM.finditer(text)
        }
        metric = terms.get("MetricName")
        if schema is None or metric is None:
            problems.append(
                Problem(
                    where,
                    'a SEARCH needs a {Namespace,Dimension,...} schema and MetricName="..." '
                    "to be checked against the registry",
                )
            )
            continue
        names = [part.strip().strip('"') for part in schema[1].split(",")]
        written_ns, dimension_names = names[0], names[1:]
        values = [(name, terms.get(name, "")) for name in dimension_names]
        uses.append(_use(written_ns, metric, values, None, where, namespace, in_alarm=False))
    return uses, problems


def dashboard_uses(
    dashboard: Dashboard, namespace: str = DEFAULT_NAMESPACE
) -> tuple[list[MetricUse], list[Problem]]:
    """The metrics one dashboard's widgets use, and the rows that cannot be read."""
    uses: list[MetricUse] = []
    problems: list[Problem] = []
    for w_index, widget in enumerate(dashboard.body.get("widgets", [])):
        if not isinstance(widget, dict) or widget.get("type") != "metric":
            continue
        properties = widget.get("properties") or {}
        title = properties.get("title", "")
        rows = properties.get("metrics", [])
        widget_where = f"{dashboard.path}: widget {w_index} ({title!r})"
        if not isinstance(rows, list):
            problems.append(Problem(widget_where, '"metrics" is a list of rows'))
            continue
        for r_index, labels, options in _metric_rows(rows):
            where = f"{widget_where} metric row {r_index}"
            if labels == [] and isinstance(options, dict) and "expression" in options:
                found, unreadable = _search_uses(str(options["expression"]), where, namespace)
                uses.extend(found)
                problems.extend(unreadable)
                continue
            if (
                labels is None
                or len(labels) < 2
                or len(labels) % 2
                or not all(isinstance(label, str) for label in labels)
            ):
                problems.append(
                    Problem(
                        where,
                        "a metric row is [namespace, metric, dimension, value, ..., {options}]",
                    )
                )
                continue
            texts = [str(label) for label in labels]
            pairs = list(zip(texts[2::2], texts[3::2], strict=True))
            uses.append(_use(texts[0], texts[1], pairs, None, where, namespace, in_alarm=False))
    return uses, problems


def _dimension_pairs(value: object) -> list[tuple[str, str]]:
    if isinstance(value, Mapping):
        return [(str(k), str(v)) for k, v in value.items()]
    if isinstance(value, list):
        return [
            (str(item.get("Name")), str(item.get("Value")))
            for item in value
            if isinstance(item, dict)
        ]
    return []


def alarm_uses(
    alarm: Alarm, namespace: str = DEFAULT_NAMESPACE
) -> tuple[list[MetricUse], list[Problem]]:
    """The metrics one alarm watches (one, or each MetricStat of a metric-math alarm)."""
    properties = alarm.properties
    if "MetricName" in properties:
        unit = properties.get("Unit")
        use = _use(
            str(properties.get("Namespace", "")),
            str(properties["MetricName"]),
            _dimension_pairs(properties.get("Dimensions", {})),
            str(unit) if unit is not None else None,
            alarm.where,
            namespace,
            in_alarm=True,
        )
        return [use], []
    uses: list[MetricUse] = []
    problems: list[Problem] = []
    for query in properties.get("Metrics", []):
        if not isinstance(query, dict) or "MetricStat" not in query:
            continue
        stat = query["MetricStat"]
        metric = stat.get("Metric", {}) if isinstance(stat, dict) else {}
        where = f"{alarm.where} ({query.get('Id', '?')})"
        if not isinstance(metric, dict) or "MetricName" not in metric:
            problems.append(Problem(where, "MetricStat.Metric needs Namespace and MetricName"))
            continue
        unit = stat.get("Unit")
        uses.append(
            _use(
                str(metric.get("Namespace", "")),
                str(metric["MetricName"]),
                _dimension_pairs(metric.get("Dimensions", {})),
                str(unit) if unit is not None else None,
                where,
                namespace,
                in_alarm=True,
            )
        )
    return uses, problems


def collect_uses(
    sources: Sources, namespace: str = DEFAULT_NAMESPACE
) -> tuple[list[MetricUse], list[Problem]]:
    """Every metric the dashboards and alarms use, and what could not be read."""
    uses: list[MetricUse] = []
    problems: list[Problem] = []
    for dashboard in sources.dashboards:
        found, unreadable = dashboard_uses(dashboard, namespace)
        uses.extend(found)
        problems.extend(unreadable)
    for alarm in sources.alarms:
        found, unreadable = alarm_uses(alarm, namespace)
        uses.extend(found)
        problems.extend(unreadable)
    return uses, problems


def metrics_used(
    root: Path = REPO_ROOT, namespace: str = DEFAULT_NAMESPACE
) -> set[tuple[str, str, tuple[str, ...], str | None]]:
    """Every (namespace, metric name, sorted dimension names, unit) that the dashboards and
    alarms under ``root`` use; unit is None where a widget names the metric (widgets carry
    no unit). ``${MetricNamespace}`` reads as ``namespace``. AWS namespaces are included:
    filter on ``namespace`` for the monitor's own. ``ValueError`` if the sources cannot be read."""
    sources, problems = load_sources(root)
    uses, unreadable = collect_uses(sources, namespace)
    problems += unreadable
    if problems:
        raise ValueError("; ".join(str(problem) for problem in problems))
    return {use.key for use in uses}


# --- registry -------------------------------------------------------------------------------


def _names(names: Sequence[str] | frozenset[str]) -> str:
    return "[" + ", ".join(sorted(names)) + "]"


def _registry_problems(use: MetricUse, registry: Mapping[str, MetricSpec]) -> list[Problem]:
    spec = registry.get(use.name)
    if spec is None:
        close = difflib.get_close_matches(use.name, list(registry), n=1, cutoff=0.8)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        return [
            Problem(
                use.where,
                f"metric {use.name!r} is not in the monitor's registry (monitor/metrics.py){hint}",
            )
        ]
    problems = []
    if set(use.dimensions) != set(spec.dimensions):
        problems.append(
            Problem(
                use.where,
                f"{use.name} has dimensions {_names(use.dimensions)} here, but the monitor "
                f"emits it with {_names(spec.dimensions)}: no datapoint would match",
            )
        )
    if use.in_alarm and use.unit is None:
        problems.append(
            Problem(use.where, f"{use.name} needs Unit: {spec.unit} (the registry's unit)")
        )
    elif use.unit is not None and use.unit != spec.unit:
        problems.append(
            Problem(
                use.where,
                f"{use.name} has unit {use.unit!r} here, but the monitor emits it in "
                f"{spec.unit!r}: an alarm with another unit never sees a datapoint",
            )
        )
    return problems


def _aws_problems(use: MetricUse) -> list[Problem]:
    units = AWS_METRICS[use.written_namespace]
    if use.name not in units:
        return [
            Problem(
                use.where,
                f"{use.written_namespace} metric {use.name!r} is not one of "
                f"{_names(list(units))} (deploy.usage.AWS_METRICS)",
            )
        ]
    problems = []
    allowed = AWS_DIMENSION_SETS[use.written_namespace]
    if frozenset(use.dimensions) not in allowed:
        sets = ", ".join(_names(s) for s in allowed)
        problems.append(
            Problem(
                use.where,
                f"{use.name} has dimensions {_names(use.dimensions)}; "
                f"{use.written_namespace} publishes it with {sets}",
            )
        )
    if use.unit is not None and use.unit != units[use.name]:
        problems.append(
            Problem(
                use.where,
                f"{use.name} has unit {use.unit!r} here, but {use.written_namespace} "
                f"publishes it in {units[use.name]!r}",
            )
        )
    return problems


def check_registry(
    uses: Sequence[MetricUse], registry: Mapping[str, MetricSpec] = REGISTRY
) -> list[Problem]:
    """Each use names a metric the monitor emits, as it emits it (or a known AWS metric)."""
    problems: list[Problem] = []
    for use in uses:
        written = use.written_namespace
        if written == NAMESPACE_PLACEHOLDER:
            problems += _registry_problems(use, registry)
        elif written in AWS_METRICS:
            problems += _aws_problems(use)
        elif written == DEFAULT_NAMESPACE:
            problems.append(
                Problem(
                    use.where,
                    f"namespace {written!r} is written out; write {NAMESPACE_PLACEHOLDER} so "
                    "the dashboard and alarms follow the MetricNamespace parameter",
                )
            )
            problems += _registry_problems(use, registry)
        else:
            problems.append(
                Problem(
                    use.where,
                    f"namespace {written!r} is neither the monitor's ({NAMESPACE_PLACEHOLDER}, "
                    f"by default {DEFAULT_NAMESPACE!r}) nor one of {_names(list(AWS_METRICS))}",
                )
            )
    return problems
