"""Drift: template.yaml's generated blocks against what ``deploy.sync`` writes from the
sources (dashboards/, alarms/); a difference names the resource and where it differs."""

from __future__ import annotations

import json
from collections.abc import Mapping

from deploy.cfn import find_blocks, load_yaml
from deploy.generate import ROLLBACK_BLOCK, generated_blocks, generated_data
from deploy.problems import Problem
from deploy.sources import TEMPLATE, Sources


def _show(value: object) -> str:
    text = json.dumps(value, ensure_ascii=False) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _as_json(value: object) -> object:
    """A Fn::Sub'd or plain JSON body as its value, else ``value``."""
    text = value["Fn::Sub"] if isinstance(value, dict) and list(value) == ["Fn::Sub"] else value
    if isinstance(text, str) and text.lstrip().startswith("{"):
        try:
            return json.loads(text)
        except json.JSONDecodeError:
            return value
    return value


def first_difference(
    expected: object, actual: object, path: str = ""
) -> tuple[str, object, object] | None:
    """Where two values first differ: (path, expected part, actual part), or None."""
    expected, actual = _as_json(expected), _as_json(actual)
    if isinstance(expected, dict) and isinstance(actual, dict):
        for key in list(expected) + [k for k in actual if k not in expected]:
            here = f"{path}.{key}" if path else str(key)
            if key not in actual:
                return here, expected[key], "(missing)"
            if key not in expected:
                return here, "(missing)", actual[key]
            found = first_difference(expected[key], actual[key], here)
            if found:
                return found
        return None
    if isinstance(expected, list) and isinstance(actual, list):
        for index, (mine, theirs) in enumerate(zip(expected, actual, strict=False)):
            found = first_difference(mine, theirs, f"{path}[{index}]")
            if found:
                return found
        if len(expected) != len(actual):
            return f"{path} (length)", len(expected), len(actual)
        return None
    if expected != actual or type(expected) is not type(actual):
        return path, expected, actual
    return None


def check_drift(template_text: str, sources: Sources) -> list[Problem]:
    """template.yaml's generated blocks are exactly what ``deploy.sync`` writes from ``sources``."""
    fix = "run `python -m deploy.sync` (edit dashboards/ and alarms/, never the generated block)"
    try:
        blocks = find_blocks(template_text)
    except ValueError as exc:
        return [Problem(TEMPLATE, f"generated-block markers: {exc}")]
    wanted_lines = generated_blocks(sources)
    wanted_data = generated_data(sources)
    origin = sources.origin()
    problems: list[Problem] = []
    for name, lines in wanted_lines.items():
        block = blocks.get(name)
        if block is None:
            problems.append(
                Problem(TEMPLATE, f"has no '# BEGIN GENERATED {name}' ... '# END GENERATED {name}'")
            )
            continue
        if [line[block.indent :] for line in block.body] == lines:
            continue
        try:
            actual = load_yaml(block.dedented())
        except ValueError as exc:
            problems.append(
                Problem(TEMPLATE, f"the generated block {name!r} is not YAML ({exc}); {fix}")
            )
            continue
        found = _block_differences(name, wanted_data[name], actual, origin)
        if not found:
            found = [f"the generated block {name!r} is not written as deploy.sync writes it"]
        problems += [Problem(TEMPLATE, f"{message}; {fix}") for message in found]
    return problems


def _block_differences(
    name: str, expected: object, actual: object, origin: Mapping[str, str]
) -> list[str]:
    if name == ROLLBACK_BLOCK or not isinstance(expected, dict) or not isinstance(actual, dict):
        difference = first_difference(expected, actual)
        if difference is None:
            return []
        where, mine, theirs = difference
        return [
            f"the generated block {name!r} differs at {where or 'the top'}: the sources give "
            f"{_show(mine)}, {TEMPLATE} has {_show(theirs)}"
        ]
    messages = []
    for logical_id in list(expected) + [key for key in actual if key not in expected]:
        source = origin.get(logical_id, "")
        if logical_id not in actual:
            messages.append(f"{logical_id} (from {source}) is missing from {TEMPLATE}")
        elif logical_id not in expected:
            messages.append(
                f"{logical_id} is in {TEMPLATE}'s generated block but in no source file"
            )
        else:
            difference = first_difference(expected[logical_id], actual[logical_id])
            if difference is not None:
                where, mine, theirs = difference
                messages.append(
                    f"{logical_id} differs from {source} at {where}: the source has "
                    f"{_show(mine)}, {TEMPLATE} has {_show(theirs)}"
                )
    return messages
