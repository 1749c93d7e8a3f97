"""CloudFormation YAML: load templates with short tags; write the generated blocks.

Loading turns ``!Ref X`` into ``{"Ref": "X"}``, ``!GetAtt A.B`` into
``{"Fn::GetAtt": ["A", "B"]}`` and every other ``!Name`` into ``{"Fn::Name": ...}``, the
long forms CloudFormation itself uses, so templates and generated data compare as plain
values. Writing is the inverse for the few shapes the generator produces, as readable YAML
(short tags, JSON bodies as literal blocks); a round trip gives back the same value.

The generated blocks sit in template.yaml between two marker comments::

    # BEGIN GENERATED <name> ...
    ...
    # END GENERATED <name>

and take the indentation of the BEGIN line.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import yaml

_TIMESTAMP_TAG = "tag:yaml.org,2002:timestamp"
# Strings YAML 1.1 would read as something else: written quoted.
_YAML11_WORDS = frozenset(
    ("y", "n", "yes", "no", "on", "off", "true", "false", "null", "~", ".nan", ".inf", "-.inf")
)
_PLAIN = re.compile(r"[A-Za-z_][A-Za-z0-9_./-]*(?:::?[A-Za-z0-9_./-]+)*")  # AWS::X::Y too
_KEY = re.compile(r"[A-Za-z][A-Za-z0-9_:.-]*")
_LOGICAL_ID = re.compile(r"[A-Za-z0-9]+")
# Characters a YAML scalar may hold as they are (YAML's printable set, without the line
# breaks NEL, LS and PS, which a reader folds); the others are written as escapes.
_UNSAFE = re.compile("[^\t\n\r\x20-\x7e\xa0-\u2027\u202a-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_LITERAL_UNSAFE = re.compile(
    "[^\n\x20-\x7e\xa0-\u2027\u202a-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]"
)
_BEGIN = re.compile(r"^(?P<indent> *)# BEGIN GENERATED (?P<name>[a-z][a-z0-9-]*)\b")
_END = re.compile(r"^ *# END GENERATED (?P<name>[a-z][a-z0-9-]*)\s*$")


class CfnLoader(yaml.SafeLoader):
    """A SafeLoader for CloudFormation: short tags in long form, dates left as text,
    duplicate keys refused (CloudFormation refuses them too)."""

    def construct_mapping(self, node: Any, deep: bool = False) -> dict[Hashable, Any]:
        seen: set[object] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if not isinstance(key, Hashable):
                continue  # the base class reports unhashable keys
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark
                )
            seen.add(key)
        mapping: dict[Hashable, Any] = super().construct_mapping(node, deep=deep)
        return mapping


def _construct_short_tag(loader: CfnLoader, suffix: str, node: Any) -> dict[str, Any]:
    value: Any
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    if suffix in ("Ref", "Condition"):
        return {suffix: value}
    if suffix == "GetAtt" and isinstance(value, str):
        value = value.split(".", 1)
    return {f"Fn::{suffix}": value}


CfnLoader.add_multi_constructor("!", _construct_short_tag)
CfnLoader.yaml_implicit_resolvers = {
    first: [(tag, pattern) for tag, pattern in resolvers if tag != _TIMESTAMP_TAG]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def load_yaml(text: str) -> Any:
    """The value of a YAML document, with CloudFormation's short tags in long form.

    Raises ``ValueError`` whose message names the line and the problem.
    """
    try:
        return yaml.load(text, Loader=CfnLoader)  # CfnLoader is a SafeLoader
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        line = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        raise ValueError(f"invalid YAML at {line}{exc.problem or exc}") from None
    except yaml.YAMLError as exc:
        raise ValueError(f"invalid YAML: {exc}") from None


# --- writing ---------------------------------------------------------------------------


def _quoted(text: str) -> str:
    """``text`` as a YAML double-quoted scalar: a JSON string is one, once the characters
    YAML reads as line breaks or refuses are escaped too."""
    return _UNSAFE.sub(lambda m: f"\\u{ord(m[0]):04x}", json.dumps(text, ensure_ascii=False))


def _scalar(text: str) -> str:
    if _PLAIN.fullmatch(text) and text.lower() not in _YAML11_WORDS:
        return text
    return _quoted(text)


def _intrinsic_inline(value: Mapping[str, Any]) -> str | None:
    """The short form of an intrinsic function that fits on one line, or None."""
    if len(value) != 1:
        return None
    ((name, argument),) = value.items()
    if name == "Ref" and isinstance(argument, str):
        return f"!Ref {_scalar(argument)}"
    if (
        name == "Fn::GetAtt"
        and isinstance(argument, list)
        and len(argument) == 2
        and all(isinstance(part, str) for part in argument)
        and _LOGICAL_ID.fullmatch(argument[0])
        and _PLAIN.fullmatch(argument[1])
    ):
        return f"!GetAtt {argument[0]}.{argument[1]}"
    if name == "Fn::Sub" and isinstance(argument, str) and "\n" not in argument:
        return f"!Sub {_scalar(argument)}"
    return None


def _inline(value: object) -> str | None:
    """``value`` on one line, or None when it needs a block."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return repr(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"cannot write {value!r} as YAML")
        text = repr(value)  # YAML 1.1 reads 1e+20 as text: it wants 1.0e+20
        return text.replace("e", ".0e", 1) if "e" in text and "." not in text else text
    if isinstance(value, str):
        return None if "\n" in value else _scalar(value)
    if isinstance(value, Mapping):
        return "{}" if not value else _intrinsic_inline(value)
    if isinstance(value, Sequence):
        return "[]" if not value else None
    raise TypeError(f"cannot write {type(value).__name__} as YAML")


def _literal_fits(text: str) -> bool:
    """Whether a literal block scalar gives ``text`` back exactly."""
    lines = text.removesuffix("\n").split("\n")
    return (
        len(lines) > 1
        and not _LITERAL_UNSAFE.search(text)
        and not text.startswith(" ")
        and bool(lines[0])
        and bool(lines[-1])
        and all(line == line.rstrip() for line in lines)
    )


def _literal(text: str, indent: int) -> tuple[str, list[str]]:
    """The block-scalar indicator and the indented lines of a multi-line string."""
    indicator = "|" if text.endswith("\n") else "|-"
    pad = " " * indent
    return indicator, [pad + line if line else "" for line in text.removesuffix("\n").split("\n")]


def _block_value(value: object, indent: int) -> tuple[str, list[str]]:
    """What follows ``key:`` on its line, and the lines below it."""
    inline = _inline(value)
    if inline is not None:
        return " " + inline, []
    if isinstance(value, str):
        if not _literal_fits(value):
            return " " + _quoted(value), []
        indicator, lines = _literal(value, indent + 2)
        return " " + indicator, lines
    if isinstance(value, Mapping):
        if not _is_plain_mapping(value):
            text = value["Fn::Sub"]
            if not _literal_fits(text):
                return " !Sub " + _quoted(text), []
            indicator, lines = _literal(text, indent + 2)
            return f" !Sub {indicator}", lines
        return "", render_mapping(value, indent + 2)
    assert isinstance(value, Sequence)
    return "", render_sequence(value, indent + 2)


def render_mapping(mapping: Mapping[str, Any], indent: int = 0) -> list[str]:
    """``mapping`` as YAML lines at ``indent`` spaces."""
    lines: list[str] = []
    pad = " " * indent
    for key, value in mapping.items():
        if not isinstance(key, str):
            raise ValueError(f"cannot write the key {key!r}")
        plain = _KEY.fullmatch(key) and key.lower() not in _YAML11_WORDS
        head, below = _block_value(value, indent)
        lines.append(f"{pad}{key if plain else _quoted(key)}:{head}")
        lines.extend(below)
    return lines


def render_sequence(items: Sequence[Any], indent: int = 0) -> list[str]:
    """``items`` as a YAML block sequence at ``indent`` spaces."""
    lines: list[str] = []
    pad = " " * indent
    for item in items:
        if isinstance(item, Mapping) and item and _is_plain_mapping(item):
            below = render_mapping(item, indent + 2)
            lines.append(f"{pad}- {below[0].lstrip()}")
            lines.extend(below[1:])
        else:
            head, below = _block_value(item, indent)
            lines.append(f"{pad}-{head}")
            lines.extend(below)
    return lines


def _is_plain_mapping(value: Mapping[str, Any]) -> bool:
    """Not an intrinsic function that has a short form (those are written with their tag)."""
    if _intrinsic_inline(value) is not None:
        return False
    return not (list(value) == ["Fn::Sub"] and isinstance(value["Fn::Sub"], str))


# --- generated blocks ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Block:
    """A generated block of template.yaml: ``body`` is the lines between the markers."""

    name: str
    indent: int
    begin: int
    """Index of the BEGIN marker line."""
    end: int
    """Index of the END marker line."""
    body: tuple[str, ...]

    def dedented(self) -> str:
        """The body as a YAML document of its own."""
        return "\n".join(line[self.indent :] for line in self.body) + "\n"


def find_blocks(text: str) -> dict[str, Block]:
    """The generated blocks of ``text`` by name. ``ValueError`` names a marker out of place."""
    lines = text.split("\n")
    blocks: dict[str, Block] = {}
    open_block: tuple[str, int, int] | None = None
    for number, line in enumerate(lines):
        begin, end = _BEGIN.match(line), _END.match(line)
        if begin:
            if open_block is not None:
                raise ValueError(f"line {number + 1}: BEGIN GENERATED inside {open_block[0]!r}")
            open_block = (begin["name"], len(begin["indent"]), number)
        elif end:
            if open_block is None or end["name"] != open_block[0]:
                raise ValueError(f"line {number + 1}: END GENERATED {end['name']} without BEGIN")
            name, indent, start = open_block
            if name in blocks:
                raise ValueError(f"line {start + 1}: a second generated block {name!r}")
            body = tuple(lines[start + 1 : number])
            blocks[name] = Block(name, indent, start, number, body)
            open_block = None
    if open_block is not None:
        raise ValueError(f"line {open_block[2] + 1}: BEGIN GENERATED {open_block[0]} without END")
    return blocks


def replace_blocks(text: str, bodies: Mapping[str, Sequence[str]]) -> str:
    """``text`` with each named block's body replaced by ``bodies[name]`` (lines written at
    indent 0, indented here like the block's BEGIN marker)."""
    blocks = find_blocks(text)
    missing = sorted(set(bodies) - set(blocks))
    if missing:
        raise ValueError(f"no generated block named {', '.join(missing)}")
    lines = text.split("\n")
    for block in sorted(blocks.values(), key=lambda b: b.begin, reverse=True):
        if block.name not in bodies:
            continue
        pad = " " * block.indent
        new = [pad + line if line else "" for line in bodies[block.name]]
        lines[block.begin + 1 : block.end] = new
    return "\n".join(lines)
