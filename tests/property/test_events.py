"""Property: whatever the event, the handler answers; an invalid one gets a validation
error that names the field, never an unhandled exception."""

from __future__ import annotations

import json
import os
import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from handler.app import lambda_handler, reset_runtime
from handler.events import EventValidationError, parse_event

FIELD = re.compile(
    r"^(event|strategy|targets(\[\d+\](\.(source|destination|include|compression|level)(\[\d+\])?)?)?|[^:\s]+):"
)

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-5, 20)
    | st.floats(allow_nan=False)
    | st.sampled_from(
        [
            "",
            "s3://b/k.tar.gz",
            "s3://models/k.tar.gz",
            "s3://models/out.zip",
            "s3://b",
            "x.zip",
            "s3://b/out/",
            "deflate",
            "store",
            "auto",
            "stream",
            "*.json",
            "ftp://h/f",
        ]
    ),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.sampled_from(["source", "destination", "include", "compression", "level", "extra"]),
            children,
            max_size=5,
        )
    ),
    max_leaves=12,
)
targets = st.dictionaries(
    st.sampled_from(["source", "destination", "include", "compression", "level", "oops"]),
    json_values,
    max_size=6,
)
events = st.one_of(
    json_values,
    st.fixed_dictionaries(
        {"targets": st.one_of(json_values, st.lists(targets, max_size=4))},
        optional={"strategy": json_values, "extra": json_values},
    ),
)


@given(event=events)
def test_property_9_every_invalid_event_is_named(event: Any) -> None:
    """Property 9: an event either validates or is refused naming the field."""
    try:
        parsed = parse_event(event)
    except EventValidationError as exc:
        assert FIELD.match(str(exc)), str(exc)
        assert str(exc).startswith(exc.field + ":")
        return
    assert parsed.targets


class Context:
    aws_request_id = "prop"

    def get_remaining_time_in_millis(self) -> int:
        return 5_000  # less than the margin: a valid event starts no target


@pytest.fixture(scope="module", autouse=True)
def _quiet_handler() -> Any:
    saved = dict(os.environ)
    os.environ.update(
        {
            "TMPWARDEN_EMF": "off",
            "TMPWARDEN_TRACING": "off",
            "TMPWARDEN_LOG_LEVEL": "ERROR",
            "AWS_EMF_ENVIRONMENT": "Local",
        }
    )
    reset_runtime()
    yield
    reset_runtime()
    os.environ.clear()
    os.environ.update(saved)


@given(event=events)
def test_property_9_the_handler_never_raises(event: Any) -> None:
    """Property 9: whatever the event, the handler answers and never raises."""
    response = lambda_handler(event, Context())
    assert response["status"] in ("succeeded", "partial", "failed")
    if "error" in response:
        assert response["error"]["type"] == "EventValidationError"
        assert FIELD.match(response["error"]["message"])
    else:
        # valid, but no time left: every target is reported as left undone
        assert response["targets"] == [] and response["remaining"]


BAD_VALUES: dict[str, list[Any]] = {
    "source": [
        "s3://models/a\x00.tar.gz",
        "s3://models/caf\ud800",
        "s3://x/k",
        "ftp://h/f",
        "s3://models/" + "k" * 1025,
        7,
    ],
    "destination": [
        "same",
        "s3://packages/" + "é" * 513,
        "out/\x00.zip",
        "s3://packages/",
        "s3://Bad_/k.zip",
        None,
    ],
    "include": [[""], ["*.json", "\ud83d"], "*.json", [1]],
    "compression": ["lz4", 1, ["deflate"]],
    "level": [10, -1, "6", True, 2.5],
    "oops": [1],
}


@st.composite
def events_with_bad_fields(draw: st.DrawFn) -> tuple[dict[str, Any], set[str]]:
    """A valid event of 1-4 targets with 2 or more fields made invalid; the bad fields."""
    count = draw(st.integers(1, 4))
    targets: list[dict[str, Any]] = [
        {"source": f"s3://models/m{i}.tar.gz", "destination": f"s3://packages/m{i}.zip"}
        for i in range(count)
    ]
    choices = [(i, name) for i in range(count) for name in BAD_VALUES] + [(-1, "strategy")]
    chosen = draw(st.lists(st.sampled_from(choices), min_size=2, max_size=8, unique=True))
    expected: set[str] = set()
    for index, name in sorted(chosen, key=lambda c: (c[0], c[1] == "destination")):
        if index < 0:
            expected.add("strategy")
            continue
        value = draw(st.sampled_from(BAD_VALUES[name]))
        if value == "same":
            value = targets[index].get("source", "out/\x00.zip")
        if draw(st.booleans()) and name in ("source", "destination"):
            del targets[index][name]  # missing instead of invalid
        else:
            targets[index][name] = value
        expected.add(f"targets[{index}].{name}")
    event: dict[str, Any] = {"targets": targets}
    if "strategy" in expected:
        event["strategy"] = draw(st.sampled_from(["fast", "", 3, ["auto"]]))
    return event, expected


@settings(max_examples=100)
@given(case=events_with_bad_fields())
def test_several_bad_fields_give_one_error_naming_all_of_them(
    case: tuple[dict[str, Any], set[str]],
) -> None:
    event, expected = case
    with pytest.raises(EventValidationError) as caught:
        parse_event(event)
    error = caught.value
    named = {re.sub(r"\[\d+\]$", "", field) for field, _ in error.problems}
    assert named == expected, (named, expected)
    message = str(error)
    assert message.startswith(error.field + ":")
    assert f"({len(error.problems)} invalid fields" in message


RESPONSE_BOUND = 64 * 1024
"""Bytes of a response: 8 KiB of error message, plus each target's valid locations
(at most 4 x 2 x 4 KiB) when they are listed as remaining."""
LOG_LINE_BOUND = 8 * 1024

sizes = st.one_of(st.sampled_from([0, 1000, 1024, 1025, 4096, 200_000]), st.integers(0, 300_000))


@st.composite
def events_with_large_values(draw: st.DrawFn) -> dict[str, Any]:
    """Events (valid or not) whose strings are of any size up to 300 KB."""

    def big(prefix: str) -> str:
        return prefix + draw(st.sampled_from("ké/")) * draw(sizes)

    targets = [
        {
            "source": draw(
                st.sampled_from([big("s3://models/"), big("/data/"), "s3://models/m.tgz"])
            ),
            "destination": draw(st.sampled_from([big("s3://packages/"), big("out/"), "out/m.zip"])),
            **draw(
                st.fixed_dictionaries(
                    {},
                    optional={
                        "include": st.builds(lambda p: [p], st.just(big("*"))),
                        "compression": st.just(big("z")),
                        big("unknown"): st.just(1),
                    },
                )
            ),
        }
        for _ in range(draw(st.integers(1, 4)))
    ]
    event: dict[str, Any] = {"targets": targets}
    if draw(st.booleans()):
        event["strategy"] = big("s")
    return event


@settings(max_examples=100)
@given(event=events_with_large_values())
def test_no_response_or_log_line_grows_with_the_size_of_a_value(
    event: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    # issue 8: a 200 KB key was echoed into a 400 KB response and 1 MB of logs
    capsys.readouterr()
    response = lambda_handler(event, Context())
    assert len(json.dumps(response)) <= RESPONSE_BOUND
    lines = capsys.readouterr().out.splitlines()
    assert all(len(line) <= LOG_LINE_BOUND for line in lines), max(map(len, lines))


@given(value=json_values | st.sampled_from(["overwrite", "fail", "Fail", "skip"]))
def test_if_exists_is_overwrite_or_fail_or_an_error_naming_it(value: Any) -> None:
    event = {"targets": [{"source": "a.tgz", "destination": "b.zip", "if_exists": value}]}
    if value in ("overwrite", "fail", None):
        assert parse_event(event).targets[0].if_exists == (value or "overwrite")
        return
    with pytest.raises(EventValidationError) as caught:
        parse_event(event)
    assert caught.value.field == "targets[0].if_exists"
    assert "overwrite, fail" in str(caught.value)
