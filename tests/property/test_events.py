"""Property: whatever the event, the handler answers; an invalid one gets a validation
error that names the field, never an unhandled exception."""

from __future__ import annotations

import os
import re
from typing import Any

import pytest
from hypothesis import given
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
