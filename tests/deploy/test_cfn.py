"""CloudFormation YAML: short tags read in long form; what the generator writes reads back."""

from __future__ import annotations

import string
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from deploy.cfn import find_blocks, load_yaml, render_mapping, replace_blocks
from deploy.generate import intrinsic


def test_short_tags_read_as_their_long_form() -> None:
    document = load_yaml(
        """
        a: !Ref Bucket
        b: !GetAtt Function.Arn
        c: !GetAtt [Function, Version.Version]
        d: !Sub "arn:${AWS::Partition}:s3:::${Bucket}/*"
        e: !If [HasEmail, !Ref Email, !Ref AWS::NoValue]
        f: !Not [!Equals [!Ref Email, ""]]
        g: !Condition HasEmail
        h: 2010-09-09
        """
    )
    assert document == {
        "a": {"Ref": "Bucket"},
        "b": {"Fn::GetAtt": ["Function", "Arn"]},
        "c": {"Fn::GetAtt": ["Function", "Version.Version"]},
        "d": {"Fn::Sub": "arn:${AWS::Partition}:s3:::${Bucket}/*"},
        "e": {"Fn::If": ["HasEmail", {"Ref": "Email"}, {"Ref": "AWS::NoValue"}]},
        "f": {"Fn::Not": [{"Fn::Equals": [{"Ref": "Email"}, ""]}]},
        "g": {"Condition": "HasEmail"},
        "h": "2010-09-09",
    }


def test_duplicate_keys_are_refused_with_their_line() -> None:
    with pytest.raises(ValueError, match="line 3, column 1: duplicate key 'a'"):
        load_yaml("a: 1\nb: 2\na: 3\n")


def test_invalid_yaml_names_the_line() -> None:
    with pytest.raises(ValueError, match="invalid YAML at line 2"):
        load_yaml("a: [1\nb: 2\n")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("${PackagingFunction}", {"Ref": "PackagingFunction"}),
        ("${AWS::StackName}", {"Ref": "AWS::StackName"}),
        ("${Alarm.Arn}", {"Fn::GetAtt": ["Alarm", "Arn"]}),
        ("${PackagingFunction}:live", {"Fn::Sub": "${PackagingFunction}:live"}),
        ("plain", "plain"),
    ],
)
def test_placeholders_become_ref_getatt_or_sub(text: str, expected: object) -> None:
    assert intrinsic(text) == expected


def test_a_json_body_is_written_as_a_literal_block() -> None:
    lines = render_mapping({"Body": {"Fn::Sub": '{\n  "a": "${X}"\n}\n'}, "Name": "on"})
    assert lines == ["Body: !Sub |", "  {", '    "a": "${X}"', "  }", 'Name: "on"']
    assert load_yaml("\n".join(lines)) == {
        "Body": {"Fn::Sub": '{\n  "a": "${X}"\n}\n'},
        "Name": "on",
    }


def test_blocks_are_found_and_replaced_at_their_indentation() -> None:
    text = "a:\n  # BEGIN GENERATED x: note\n  old: 1\n  # END GENERATED x\nb: 2\n"
    assert find_blocks(text)["x"].body == ("  old: 1",)
    assert replace_blocks(text, {"x": ["new: 2", "more:", "  - 3"]}) == (
        "a:\n  # BEGIN GENERATED x: note\n  new: 2\n  more:\n    - 3\n  # END GENERATED x\nb: 2\n"
    )


def test_unbalanced_markers_are_refused() -> None:
    with pytest.raises(ValueError, match="line 1: BEGIN GENERATED x without END"):
        find_blocks("# BEGIN GENERATED x\n")
    with pytest.raises(ValueError, match="line 1: END GENERATED y without BEGIN"):
        find_blocks("# END GENERATED y\n")


# --- writing then reading gives the same value, whatever the value -------------------------

KEYS = st.text(string.ascii_letters + string.digits + "_", min_size=1, max_size=12).filter(
    lambda key: key[0].isalpha()
)
TEXT = st.text(st.characters(exclude_categories=["Cs"]), max_size=40)
LINES = st.lists(
    st.text(st.characters(exclude_categories=["Cs", "Zl", "Zp", "Cc"]), min_size=0, max_size=20),
    min_size=2,
    max_size=5,
).map("\n".join)
SCALARS = st.one_of(
    TEXT,
    LINES,
    st.sampled_from(
        ["on", "off", "yes", "No", "null", "true", "1e3", "0x1F", "12:30", "- a", "#x"]
    ),
    st.integers(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.booleans(),
    st.builds(lambda name: {"Ref": name}, KEYS),
    st.builds(lambda a, b: {"Fn::GetAtt": [a, b]}, KEYS, KEYS),
    st.builds(lambda text: {"Fn::Sub": text}, st.one_of(TEXT, LINES)),
)


def _values(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(
        st.dictionaries(KEYS, children, min_size=1, max_size=4),
        st.lists(
            st.one_of(SCALARS, st.dictionaries(KEYS, children, min_size=1, max_size=3)), max_size=4
        ),
    )


VALUES = st.recursive(SCALARS, _values, max_leaves=12)


@given(st.dictionaries(KEYS, VALUES, min_size=1, max_size=5))
def test_what_is_written_reads_back_the_same(value: dict[str, Any]) -> None:
    assert load_yaml("\n".join(render_mapping(value)) + "\n") == value
