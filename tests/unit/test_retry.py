"""RetryPolicy: the retry, fallback and deadline rules of one target, as a value."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from handler.deadline import OutOfTimeError, bounded
from handler.errors import (
    CommitUnverifiedError,
    ExtractionError,
    InsufficientStorageError,
    RemoteServiceError,
)
from handler.retry import RetryPolicy, Step
from handler.settings import HandlerSettings
from handler.storage import Strategy

FULL = InsufficientStorageError("/tmp", 10, 1, "use the stream strategy")
THROTTLED = RemoteServiceError("SlowDown", transient=True)


def test_the_settings_make_the_policy() -> None:
    tuned = HandlerSettings(max_attempts=5, time_margin=40.0, stall_timeout=20.0)
    policy = RetryPolicy.from_settings(tuned)
    assert (policy.max_attempts, policy.time_margin, policy.stall_timeout) == (5, 40.0, 20.0)
    defaults = RetryPolicy.from_settings(HandlerSettings())
    assert defaults == RetryPolicy()  # the policy's defaults are the settings' defaults


def test_only_an_automatic_extract_out_of_storage_falls_back() -> None:
    policy = RetryPolicy()
    auto = policy.after_failure(FULL, attempts=1, strategy=Strategy.EXTRACT, automatic=True)
    assert auto.step is Step.FALL_BACK and auto.fallback
    asked = policy.after_failure(FULL, attempts=1, strategy=Strategy.EXTRACT, automatic=False)
    assert asked.step is Step.GIVE_UP  # an explicit extract is the caller's choice
    stream = policy.after_failure(FULL, attempts=1, strategy=Strategy.STREAM, automatic=True)
    assert stream.step is Step.GIVE_UP
    relieved = policy.after_failure(
        FULL, attempts=1, strategy=Strategy.STREAM, automatic=True, space_relieved=True
    )
    assert relieved.step is Step.RETRY and relieved.transient
    no_fallback = RetryPolicy(fall_back_to_stream=False)
    assert (
        no_fallback.after_failure(FULL, attempts=1, strategy=Strategy.EXTRACT, automatic=True).step
        is Step.GIVE_UP
    )


def test_transient_failures_retry_until_the_attempts_run_out() -> None:
    policy = RetryPolicy(max_attempts=3)
    steps = [
        policy.after_failure(THROTTLED, attempts=n, strategy=Strategy.STREAM, automatic=True).step
        for n in (1, 2, 3)
    ]
    assert steps == [Step.RETRY, Step.RETRY, Step.GIVE_UP]
    hostile = ExtractionError("m.tar", "../x", "it leaves the destination", "rebuild it")
    verdict = policy.after_failure(hostile, attempts=1, strategy=None, automatic=True)
    assert verdict.step is Step.GIVE_UP and not verdict.transient
    # A commit that may have taken effect is never attempted again.
    unverified = CommitUnverifiedError("s3://b/k.zip: the commit could not be verified")
    assert (
        policy.after_failure(unverified, attempts=1, strategy=None, automatic=True).step
        is Step.GIVE_UP
    )


def test_no_attempt_starts_inside_the_time_margin() -> None:
    policy = RetryPolicy(time_margin=30.0)
    policy.check_time(None)  # no clock: no limit
    policy.check_time(lambda: 31.0)
    with pytest.raises(OutOfTimeError, match="30 s safety margin"):
        policy.check_time(lambda: 29.0)
    assert policy.deadline(None) is None
    assert RetryPolicy(time_margin=0).deadline(lambda: 5.0) is None  # margin 0: no deadline
    deadline = policy.deadline(lambda: 100.0)
    assert deadline is not None and deadline.left() == 70.0


@settings(max_examples=100)
@given(
    attempt=st.integers(min_value=1, max_value=12),
    left=st.floats(min_value=0, max_value=1000),
    seed=st.integers(min_value=0, max_value=2**32),
)
def test_a_backoff_is_jittered_capped_and_within_the_deadline(
    attempt: int, left: float, seed: int
) -> None:
    policy = RetryPolicy(base_delay=0.5, max_delay=20.0, time_margin=30.0)
    cap = min(20.0, 0.5 * 2 ** (attempt - 1))
    assert 0 <= policy.delay(attempt, random.Random(seed)) <= cap
    slept: list[float] = []
    with bounded(policy.deadline(lambda: left + 30.0)):
        policy.back_off(attempt, random.Random(seed), slept.append)
    assert 0 <= slept[0] <= min(cap, left) + 1e-9
