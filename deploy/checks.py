"""Checks of the dashboards, alarms and template against the monitor and against Lambda.

Every check is a pure function returning a list of ``Problem`` (empty when all is well);
``check_all`` runs them all on a repository (or a copy of one).

* ``check_registry`` (from ``deploy.usage``): every metric a widget or an alarm names is
  in the monitor's registry with its namespace, dimension set and, for alarms, its unit.
* ``check_record_fields`` (from ``deploy.record_fields``): every field a saved query or a
  dashboard log widget names is in the EMF record schema (``monitor/records.py``).
* ``check_references``: every ``${Name}`` names a parameter or resource of the template,
  the FunctionName dimension is the packaging function, every alarm is on an alarm widget.
* ``check_functions``: what cfn-lint does not check on SAM functions (memory, ephemeral
  storage, timeout, runtime) and that every dashboard body in the template is JSON.
* ``check_settings``: every ``TMPWARDEN_*`` setting is an environment variable of the
  packaging function fed by a Parameter whose default is the monitor's (or handler's).
* ``check_drift`` (from ``deploy.drift``): template.yaml's generated blocks are what
  ``deploy.sync`` writes from the sources; otherwise which resource differs, and where.

``metrics_used`` (from ``deploy.usage``) gives every (namespace, metric, dimension names,
unit) the dashboards and alarms use, for tests that compare them with what the code emits.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from types import ModuleType
from typing import Any

from deploy.cfn import load_yaml
from deploy.drift import check_drift
from deploy.generate import PLACEHOLDER
from deploy.problems import Problem
from deploy.record_fields import check_record_fields
from deploy.sources import REPO_ROOT, TEMPLATE, Sources, load_sources, strings
from deploy.usage import MetricUse, check_registry, collect_uses, metrics_used
from handler import settings as handler_settings
from monitor import config as monitor_config
from monitor.errors import ConfigurationError
from monitor.metrics import FUNCTION_DIMENSION

__all__ = [
    "MetricUse",
    "check_all",
    "check_drift",
    "check_functions",
    "check_record_fields",
    "check_references",
    "check_registry",
    "check_settings",
    "check_sources",
    "load_template",
    "metrics_used",
]

FUNCTION_PLACEHOLDER = "${PackagingFunction}"
"""The FunctionName dimension's value: the function's physical name (its Ref)."""
PACKAGING_FUNCTION = "PackagingFunction"
HANDLER = "handler.app.lambda_handler"

FUNCTION_TYPES = ("AWS::Serverless::Function", "AWS::Lambda::Function")
MEMORY_MB = (128, 10240)
EPHEMERAL_MB = (512, 10240)
TIMEOUT_S = (1, 900)
SUPPORTED_RUNTIMES = ("python3.11", "python3.12", "python3.13", "python3.14")
"""Lambda's Python runtimes that tmpwarden runs on (it needs Python 3.11 or newer)."""

PSEUDO_PARAMETERS = frozenset(
    {
        "AWS::AccountId",
        "AWS::NotificationARNs",
        "AWS::NoValue",
        "AWS::Partition",
        "AWS::Region",
        "AWS::StackId",
        "AWS::StackName",
        "AWS::URLSuffix",
    }
)

# --- references --------------------------------------------------------------------------


def _template_names(template: Mapping[str, Any], sources: Sources) -> set[str]:
    names = set(PSEUDO_PARAMETERS)
    names.update(template.get("Parameters") or {})
    names.update(template.get("Resources") or {})
    names.update(sources.origin())
    return names


def _placeholder_problems(where: str, texts: Sequence[str], known: set[str]) -> list[Problem]:
    problems = []
    for text in texts:
        for name in PLACEHOLDER.findall(text):
            if name.startswith("!"):
                continue  # Fn::Sub's escape for a literal ${...}
            if name.split(".", 1)[0] not in known:
                problems.append(
                    Problem(where, f"${{{name}}} names no parameter or resource of {TEMPLATE}")
                )
    return problems


def check_references(
    sources: Sources, template: Mapping[str, Any], uses: Sequence[MetricUse]
) -> list[Problem]:
    """Placeholders resolve, FunctionName is the packaging function, alarms are on a widget."""
    known = _template_names(template, sources)
    problems: list[Problem] = []
    for dashboard in sources.dashboards:
        problems += _placeholder_problems(dashboard.path, strings(dashboard.body), known)
    for alarm in sources.alarms:
        problems += _placeholder_problems(alarm.where, strings(alarm.properties), known)
    for use in uses:
        for name, value in use.dimension_values:
            if name == FUNCTION_DIMENSION and value not in (FUNCTION_PLACEHOLDER, ""):
                problems.append(
                    Problem(
                        use.where,
                        f"FunctionName is {value!r}; the metrics carry the deployed function's "
                        f"name, write {FUNCTION_PLACEHOLDER}",
                    )
                )
    on_widgets = {
        name
        for dashboard in sources.dashboards
        for widget in dashboard.body.get("widgets", [])
        if isinstance(widget, dict) and widget.get("type") == "alarm"
        for text in strings((widget.get("properties") or {}).get("alarms", []))
        for name in PLACEHOLDER.findall(text)
    }
    if sources.dashboards:
        for alarm in sources.alarms:
            if f"{alarm.logical_id}.Arn" not in on_widgets:
                problems.append(
                    Problem(
                        alarm.where,
                        f'is on no dashboard\'s alarm widget; add "${{{alarm.logical_id}.Arn}}"',
                    )
                )
    return problems


# --- the template: functions and settings ------------------------------------------------


def _parameter_default(template: Mapping[str, Any], value: object) -> object:
    """A literal, or the default of the parameter a ``Ref`` names (None if neither)."""
    if isinstance(value, dict) and list(value) == ["Ref"]:
        parameter = (template.get("Parameters") or {}).get(value["Ref"])
        return parameter.get("Default") if isinstance(parameter, dict) else None
    return value


def _number(value: object) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return value
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def _range_problem(
    where: str, key: str, value: object, bounds: tuple[int, int], unit: str
) -> list[Problem]:
    number = _number(value)
    low, high = bounds
    if value is None:
        return []
    if number is None or not low <= number <= high or number != int(number):
        return [Problem(where, f"{key} is {value!r}; Lambda allows {low}-{high} {unit}")]
    return []


def _function_properties(
    template: Mapping[str, Any], resource: Mapping[str, Any]
) -> dict[str, Any]:
    properties = dict(resource.get("Properties") or {})
    if resource.get("Type") == "AWS::Serverless::Function":
        globals_ = (template.get("Globals") or {}).get("Function") or {}
        properties = {**globals_, **properties}
    return properties


def check_functions(template: Mapping[str, Any]) -> list[Problem]:
    """Lambda's limits on every function (cfn-lint does not check them on SAM functions),
    and that every dashboard body is JSON."""
    problems: list[Problem] = []
    for logical_id, resource in (template.get("Resources") or {}).items():
        if not isinstance(resource, dict):
            continue
        where = f"{TEMPLATE}: {logical_id}"
        if resource.get("Type") == "AWS::CloudWatch::Dashboard":
            problems += _dashboard_json_problems(where, resource)
        if resource.get("Type") not in FUNCTION_TYPES:
            continue
        properties = _function_properties(template, resource)

        def value(key: str, props: Mapping[str, Any] = properties) -> object:
            return _parameter_default(template, props.get(key))

        problems += _range_problem(where, "MemorySize", value("MemorySize"), MEMORY_MB, "MB")
        storage = properties.get("EphemeralStorage")
        if isinstance(storage, dict):
            size = _parameter_default(template, storage.get("Size"))
            problems += _range_problem(where, "EphemeralStorage", size, EPHEMERAL_MB, "MB")
        problems += _range_problem(where, "Timeout", value("Timeout"), TIMEOUT_S, "seconds")
        if properties.get("PackageType") != "Image":
            runtime = value("Runtime")
            if runtime not in SUPPORTED_RUNTIMES:
                problems.append(
                    Problem(
                        where,
                        f"Runtime {runtime!r} is not a Lambda runtime tmpwarden supports "
                        f"({', '.join(SUPPORTED_RUNTIMES)})",
                    )
                )
    return problems


def _dashboard_json_problems(where: str, resource: Mapping[str, Any]) -> list[Problem]:
    body = (resource.get("Properties") or {}).get("DashboardBody")
    if isinstance(body, dict) and list(body) == ["Fn::Sub"]:
        body = body["Fn::Sub"]
    if not isinstance(body, str):
        return [Problem(where, "DashboardBody is a JSON string (or Fn::Sub of one)")]
    try:
        json.loads(body)
    except json.JSONDecodeError as exc:
        return [Problem(where, f"DashboardBody is not valid JSON (line {exc.lineno}): {exc.msg}")]
    return []


def _settings_of(module: ModuleType) -> list[str]:
    """The ``TMPWARDEN_*`` variables a module names as ``*_ENV`` constants."""
    return sorted(
        value
        for name, value in vars(module).items()
        if name.endswith("_ENV") and isinstance(value, str) and value.startswith("TMPWARDEN_")
    )


@dataclass(frozen=True, slots=True)
class Reader:
    """Who reads some TMPWARDEN_* variables, and how: ``read(environ)`` is the settings
    object it makes from them (a dataclass; ``ignored`` fields do not come from them)."""

    who: str
    variables: tuple[str, ...]
    read: Callable[[Mapping[str, str]], Any]
    ignored: tuple[str, ...] = ()


def setting_readers() -> tuple[Reader, ...]:
    """The monitor and the extension (monitor.config) and the handler (handler.settings)."""
    extension = set(monitor_config.EXTENSION_SETTINGS) | set(monitor_config.EMULATOR_HOOKS)
    return (
        Reader(
            "monitor",
            tuple(v for v in _settings_of(monitor_config) if v not in extension),
            lambda environ: monitor_config.MonitorConfig.resolve(environ=environ),
            ("function_name",),
        ),
        Reader(
            "extension",
            monitor_config.EXTENSION_SETTINGS,
            monitor_config.ExtensionConfig.from_environ,
        ),
        Reader(
            "handler",
            tuple(_settings_of(handler_settings)),
            handler_settings.HandlerSettings.from_env,
        ),
    )


def check_settings(
    template: Mapping[str, Any], readers: Sequence[Reader] | None = None
) -> list[Problem]:
    """Every TMPWARDEN_* setting is an environment variable of the packaging function, fed
    by a Parameter whose default is what the monitor or the handler defaults to."""
    where = f"{TEMPLATE}: {PACKAGING_FUNCTION}"
    resource = (template.get("Resources") or {}).get(PACKAGING_FUNCTION)
    if not isinstance(resource, dict):
        return [Problem(TEMPLATE, f"has no {PACKAGING_FUNCTION} resource")]
    properties = _function_properties(template, resource)
    problems: list[Problem] = []
    if properties.get("Handler") != HANDLER:
        problems.append(
            Problem(where, f"Handler is {properties.get('Handler')!r}; expected {HANDLER}")
        )
    variables = ((properties.get("Environment") or {}).get("Variables")) or {}
    parameters = template.get("Parameters") or {}
    readers = setting_readers() if readers is None else readers
    expected = {variable for reader in readers for variable in reader.variables}
    defaults: dict[str, tuple[str, str]] = {}
    for variable in sorted(expected):
        value = variables.get(variable)
        if value is None:
            problems.append(
                Problem(where, f"Environment has no {variable}; feed it from a Parameter")
            )
            continue
        if not (isinstance(value, dict) and list(value) == ["Ref"] and value["Ref"] in parameters):
            problems.append(Problem(where, f"{variable} is not a Ref to a Parameter"))
            continue
        parameter = parameters[value["Ref"]]
        if not isinstance(parameter, dict) or "Default" not in parameter:
            problems.append(Problem(where, f"Parameter {value['Ref']} ({variable}) has no Default"))
            continue
        defaults[variable] = (value["Ref"], str(parameter["Default"]))
    for variable in sorted(set(variables) - expected):
        if variable in monitor_config.EMULATOR_HOOKS:
            problems.append(
                Problem(where, f"{variable} is for local emulators; Lambda decides it: remove it")
            )
        elif variable.startswith("TMPWARDEN_"):
            problems.append(
                Problem(where, f"{variable} is read by neither the monitor nor the handler")
            )
    for reader in readers:
        problems += _default_problems(where, reader, defaults)
    return problems


def _default_problems(
    where: str, reader: Reader, defaults: Mapping[str, tuple[str, str]]
) -> list[Problem]:
    """Each variable, set alone to its Parameter's default, must leave the reader's settings
    at their built-in defaults."""
    builtin = reader.read({})
    problems = []
    for variable in reader.variables:
        if variable not in defaults:
            continue
        parameter, default = defaults[variable]
        said = f"Parameter {parameter} ({variable}) defaults to {default!r}"
        try:
            alone = reader.read({variable: default})
        except (ConfigurationError, ValueError) as exc:
            problems.append(Problem(where, f"{said}, which the {reader.who} refuses: {exc}"))
            continue
        for field in fields(builtin):
            ours, theirs = getattr(alone, field.name), getattr(builtin, field.name)
            if field.name not in reader.ignored and ours != theirs:
                problems.append(
                    Problem(
                        where,
                        f"{said}, which the {reader.who} reads as {field.name}={ours!r}; "
                        f"its default is {theirs!r}",
                    )
                )
    return problems


# --- everything ----------------------------------------------------------------------------


def load_template(root: Path) -> tuple[str, dict[str, Any] | None, list[Problem]]:
    """template.yaml's text, its value (None if unreadable), and why it is unreadable."""
    path = root / TEMPLATE
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        return "", None, [Problem(TEMPLATE, f"cannot read: {exc}")]
    try:
        template = load_yaml(text)
    except ValueError as exc:
        return text, None, [Problem(TEMPLATE, str(exc))]
    if not isinstance(template, dict):
        return text, None, [Problem(TEMPLATE, "a template is a mapping")]
    return text, template, []


def check_sources(sources: Sources, template: Mapping[str, Any]) -> list[Problem]:
    """The sources against the registry, the EMF record schema and the template's names
    (not drift)."""
    uses, problems = collect_uses(sources)
    problems += check_registry(uses)
    problems += check_record_fields(sources, template)
    problems += check_references(sources, template, uses)
    return problems


def check_all(root: Path = REPO_ROOT) -> list[Problem]:
    """Every check on the repository at ``root``: sources, template, settings and drift."""
    sources, problems = load_sources(root)
    text, template, unreadable = load_template(root)
    problems += unreadable
    if template is None:
        return problems
    problems += check_sources(sources, template)
    problems += check_functions(template)
    problems += check_settings(template)
    problems += check_drift(text, sources)
    return problems
