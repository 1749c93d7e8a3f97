"""No attempt outlives its invocation (issue 8, item 6): the settings' rule, the deadline,
and the S3 client's bounded waits."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from handler import deadline
from handler.deadline import (
    CONNECT_TIMEOUT_S,
    Deadline,
    OutOfTimeError,
    after_deadline,
    bounded,
    longest_wait,
    margin_needed,
    sleep_within,
)
from handler.locations.s3 import make_client
from handler.settings import HandlerSettings
from monitor.errors import ConfigurationError
from tests.s3server import CREDENTIALS

UNREACHABLE = "http://127.0.0.1:9"  # discard port: nothing listens, a connect is refused


@pytest.fixture(autouse=True)
def _credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in CREDENTIALS.items():
        monkeypatch.setenv(key, value)


def test_the_default_margin_covers_the_wait_in_flight_and_the_abort() -> None:
    defaults = HandlerSettings.from_env({})
    assert (defaults.stall_timeout, defaults.time_margin) == (10.0, 30.0)
    assert longest_wait(10) == 12.0 and margin_needed(10) == 26.0 <= defaults.time_margin


def test_a_margin_shorter_than_two_waits_is_refused_naming_both_settings() -> None:
    with pytest.raises(ConfigurationError) as caught:
        HandlerSettings.from_env({"TMPWARDEN_STALL_TIMEOUT_S": "20"})  # needs 46 s
    message = str(caught.value)
    assert "TMPWARDEN_TIME_MARGIN_S=30" in message and "TMPWARDEN_STALL_TIMEOUT_S=20" in message
    assert "46" in message
    assert HandlerSettings.from_env({"TMPWARDEN_TIME_MARGIN_S": "0"}).time_margin == 0  # off


@pytest.mark.parametrize("value", ["0", "-1", "121", "soon", "nan", "inf"])
def test_a_bad_stall_timeout_is_a_configuration_error(value: str) -> None:
    with pytest.raises(ConfigurationError, match="TMPWARDEN_STALL_TIMEOUT_S"):
        HandlerSettings.from_env({"TMPWARDEN_STALL_TIMEOUT_S": value})


def test_the_client_waits_at_most_the_stall_timeout_for_a_read() -> None:
    config: Any = make_client(UNREACHABLE, stall_timeout=3).meta.config
    assert (config.read_timeout, config.connect_timeout) == (3, CONNECT_TIMEOUT_S)
    default: Any = make_client(UNREACHABLE).meta.config
    assert default.read_timeout == 10  # not botocore's 60


class Clock:
    def __init__(self, left: float) -> None:
        self.left = left

    def __call__(self) -> float:
        return self.left


def test_no_request_starts_inside_the_margin_but_cleanup_does_while_a_wait_fits() -> None:
    clock = Clock(45.0)
    client = make_client(UNREACHABLE, stall_timeout=10)
    with bounded(Deadline(clock, margin=30, wait=12)):
        with pytest.raises(Exception) as refused_by_network:
            client.head_object(Bucket="b", Key="k")  # 15 s before the margin: it goes
        assert not isinstance(refused_by_network.value, OutOfTimeError)
        clock.left = 31.0  # a request may start, but no retry whose backoff could overrun
        with pytest.raises(OutOfTimeError, match="retrying S3 HeadObject after") as no_retry:
            client.head_object(Bucket="b", Key="k")
        assert no_retry.value.__cause__ is not None  # the refused connect, kept
        clock.left = 29.5
        with pytest.raises(OutOfTimeError, match=r"^S3 HeadObject: .* 30 s time margin"):
            client.head_object(Bucket="b", Key="k")
        with after_deadline(), pytest.raises(Exception) as cleanup:
            client.abort_multipart_upload(Bucket="b", Key="k", UploadId="u")
        assert not isinstance(cleanup.value, OutOfTimeError)  # 29.5 s >= 12 + 9 + 2
        clock.left = 13.0
        with after_deadline(), pytest.raises(OutOfTimeError):
            client.abort_multipart_upload(Bucket="b", Key="k", UploadId="u")
    assert deadline.current() is None


@settings(max_examples=100)
@given(
    left=st.floats(min_value=-100, max_value=1000),
    margin=st.floats(min_value=0, max_value=600),
    delay=st.floats(min_value=0, max_value=60),
)
def test_a_backoff_never_sleeps_past_the_deadline(left: float, margin: float, delay: float) -> None:
    slept: list[float] = []
    with bounded(Deadline(Clock(left), margin=margin, wait=12)):
        sleep_within(delay, slept.append)
    assert 0 <= slept[0] <= delay
    assert slept[0] <= max(0.0, left - margin)


@pytest.mark.parametrize("value", ["-1", "nan", "inf"])
def test_a_margin_that_is_no_number_of_seconds_is_refused(value: str) -> None:
    with pytest.raises(ConfigurationError, match="TMPWARDEN_TIME_MARGIN_S"):
        HandlerSettings.from_env({"TMPWARDEN_TIME_MARGIN_S": value})
