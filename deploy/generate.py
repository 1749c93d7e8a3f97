"""From the sources to CloudFormation: the resources and lines of template.yaml's generated blocks.

Two blocks are generated:

* ``resources`` (under ``Resources:``): one ``AWS::CloudWatch::Dashboard`` per
  dashboards/*.json, one ``AWS::Logs::QueryDefinition`` per dashboards/queries/*.query and
  one ``AWS::CloudWatch::Alarm`` per alarm in alarms/*.yaml;
* ``rollback-alarms`` (the packaging function's ``DeploymentPreference.Alarms``): a
  ``!Ref`` to every critical alarm, so a canary rolls back on exactly those.

Strings in the sources may hold ``${Name}`` placeholders: ``"${X}"`` alone becomes
``!Ref X``, ``"${X.Attr}"`` alone ``!GetAtt X.Attr``, any other text with a placeholder
``!Sub``. ``${!Literal}`` is Fn::Sub's escape for a literal ``${Literal}``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from deploy.cfn import render_mapping, render_sequence, replace_blocks
from deploy.sources import Alarm, Dashboard, Query, Sources

RESOURCES_BLOCK = "resources"
ROLLBACK_BLOCK = "rollback-alarms"
TOPICS = {"critical": "CriticalAlarmTopic", "warning": "WarningAlarmTopic"}
LOG_GROUP = "PackagingLogGroup"
QUERY_FOLDER = "tmpwarden/${AWS::StackName}/"

PLACEHOLDER = re.compile(r"\$\{([^}]*)\}")
_WHOLE_REF = re.compile(r"\$\{([A-Za-z0-9:]+)\}")
_WHOLE_GETATT = re.compile(r"\$\{([A-Za-z0-9]+)\.([A-Za-z0-9.]+)\}")


def intrinsic(text: str) -> object:
    """``text`` as CloudFormation: a Ref, a GetAtt, a Sub or the text itself."""
    if ref := _WHOLE_REF.fullmatch(text):
        return {"Ref": ref[1]}
    if attribute := _WHOLE_GETATT.fullmatch(text):
        return {"Fn::GetAtt": [attribute[1], attribute[2]]}
    if PLACEHOLDER.search(text):
        return {"Fn::Sub": text}
    return text


def _cfn_value(value: Any) -> Any:
    """A source value in CloudFormation's terms: strings through ``intrinsic``, Dimensions
    written as a mapping turned into CloudWatch's list of Name/Value pairs."""
    if isinstance(value, str):
        return intrinsic(value)
    if isinstance(value, Mapping):
        converted: dict[str, Any] = {}
        for key, item in value.items():
            if key == "Dimensions" and isinstance(item, Mapping):
                converted[key] = [
                    {"Name": name, "Value": _cfn_value(dimension)}
                    for name, dimension in item.items()
                ]
            else:
                converted[key] = _cfn_value(item)
        return converted
    if isinstance(value, list):
        return [_cfn_value(item) for item in value]
    return value


def dashboard_body(dashboard: Dashboard) -> str:
    """The body as deployed: the source's JSON, written the one way the generator writes it."""
    return json.dumps(dashboard.body, indent=2, ensure_ascii=False) + "\n"


def dashboard_resource(dashboard: Dashboard) -> dict[str, Any]:
    body = dashboard_body(dashboard)
    return {
        "Type": "AWS::CloudWatch::Dashboard",
        "Properties": {
            "DashboardName": {"Fn::Sub": "${AWS::StackName}-" + dashboard.name},
            "DashboardBody": {"Fn::Sub": body} if PLACEHOLDER.search(body) else body,
        },
    }


def query_resource(query: Query) -> dict[str, Any]:
    return {
        "Type": "AWS::Logs::QueryDefinition",
        "Properties": {
            "Name": {"Fn::Sub": QUERY_FOLDER + query.name},
            "LogGroupNames": [{"Ref": LOG_GROUP}],
            "QueryString": query.text,
        },
    }


def alarm_resource(alarm: Alarm) -> dict[str, Any]:
    properties: dict[str, Any] = _cfn_value(alarm.properties)
    topic = {"Ref": TOPICS[alarm.severity]}
    converted: dict[str, Any] = {
        "AlarmName": properties.get(
            "AlarmName", intrinsic("${AWS::StackName}-" + alarm.logical_id)
        ),
        "AlarmDescription": alarm.properties["AlarmDescription"].strip(),
        "ActionsEnabled": True,
        "AlarmActions": [topic],
    }
    if alarm.severity == "critical":
        converted["OKActions"] = [topic]
    for key, value in properties.items():
        converted.setdefault(key, value)
    return {"Type": "AWS::CloudWatch::Alarm", "Properties": converted}


def generated_resources(sources: Sources) -> dict[str, dict[str, Any]]:
    """Every generated resource by logical id, in the order they are written."""
    resources: dict[str, dict[str, Any]] = {}
    for dashboard in sources.dashboards:
        resources[dashboard.logical_id] = dashboard_resource(dashboard)
    for query in sources.queries:
        resources[query.logical_id] = query_resource(query)
    for alarm in sources.alarms:
        resources[alarm.logical_id] = alarm_resource(alarm)
    return resources


def rollback_alarms(sources: Sources) -> list[dict[str, str]]:
    """``!Ref`` to every critical alarm: the canary's rollback alarms."""
    return [{"Ref": alarm.logical_id} for alarm in sources.alarms if alarm.severity == "critical"]


def generated_data(sources: Sources) -> dict[str, Any]:
    """Each block's content as a value (what loading the block's YAML gives back)."""
    return {RESOURCES_BLOCK: generated_resources(sources), ROLLBACK_BLOCK: rollback_alarms(sources)}


def generated_blocks(sources: Sources) -> dict[str, list[str]]:
    """Each block's lines, at indent 0."""
    lines: list[str] = []
    for logical_id, resource in generated_resources(sources).items():
        if lines:
            lines.append("")
        lines.extend(render_mapping({logical_id: resource}))
    return {RESOURCES_BLOCK: lines, ROLLBACK_BLOCK: render_sequence(rollback_alarms(sources))}


def sync_template(text: str, sources: Sources) -> str:
    """``text`` (template.yaml) with its generated blocks rewritten from ``sources``."""
    return replace_blocks(text, generated_blocks(sources))
