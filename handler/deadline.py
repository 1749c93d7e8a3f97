"""The invocation's deadline inside an attempt: no network wait outlives the invocation.

Lambda runs one invocation at a time per process, so the deadline is process-wide: the
upload threads and botocore's request hook see it without being handed it. It is set
for the span of a target (:func:`bounded`) and checked

* before every S3 request, botocore's own retries included (a ``before-send`` hook
  installed by :func:`install`), so no request (and no retry after a backoff) starts
  once ``remaining - margin`` is spent;
* before every read of a GetObject body (``handler.locations.ranged``, where a stalled
  read resumes from the byte it reached).

Each wait that has started is bounded by the client's timeouts (connect
:data:`CONNECT_TIMEOUT_S`, read ``TMPWARDEN_STALL_TIMEOUT_S``), so the last one ends
within :func:`longest_wait` of the deadline. Cleanup requests (abort, the look after a
commit) run :func:`after_deadline`, while at least one more wait fits before the
invocation ends; the margin must cover two waits (the one in flight and the abort),
which ``handler.settings`` checks.
"""

from __future__ import annotations

import contextlib
import math
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextvars import ContextVar
from typing import Any

from handler.errors import ConfigurationError, TmpwardenError

CONNECT_TIMEOUT_S = 2.0
"""Seconds to open a connection: the AWS SDK for Java's default connection timeout (an S3
endpoint answers a connect in milliseconds; botocore's own default is 60 s)."""
MAX_BACKOFF_S = 9.0
"""botocore's standard retry mode with 4 attempts sleeps at most 1 * 2**2 s before its
last retry, plus up to 5 s more when S3 sends ``x-amz-retry-after``
(botocore.retries.standard.ExponentialBackoff): no retry is taken with less than this
left before the deadline (a ``needs-retry`` hook), so a backoff never overruns it."""
REPORT_RESERVE_S = 2.0
"""Seconds kept after the last cleanup request to write the result and flush metrics."""


class OutOfTimeError(TmpwardenError, TimeoutError):
    """When too little of the invocation's time is left to start (another attempt at,
    or another request of) a target."""


def longest_wait(stall_timeout: float) -> float:
    """The longest single network wait, in seconds: a connect, then a read that stalls
    (a backoff sleep never runs past the deadline)."""
    return CONNECT_TIMEOUT_S + stall_timeout


def margin_needed(stall_timeout: float) -> float:
    """The smallest time margin that lets the wait in flight at the deadline end, and the
    upload's abort run, before the invocation does: two waits and the report reserve
    (26 s for the default 10 s stall timeout)."""
    return 2 * longest_wait(stall_timeout) + REPORT_RESERVE_S


class Deadline:
    """``remaining()`` seconds are left in the invocation; work stops ``margin`` before
    the end, cleanup while one more wait of ``wait`` seconds fits."""

    def __init__(self, remaining: Callable[[], float], margin: float, wait: float) -> None:
        self._remaining = remaining
        self.margin = margin
        self.wait = wait

    def left(self) -> float:
        """Seconds left before the deadline (``remaining - margin``); may be negative."""
        return self._remaining() - self.margin

    def check(self, what: str, *, then_wait: float = 0.0) -> None:
        """Raise OutOfTimeError when ``what`` (after ``then_wait`` seconds) may not start."""
        if _cleanup.get():
            left = self._remaining() - then_wait
            if left >= self.wait + REPORT_RESERVE_S:
                return
            raise OutOfTimeError(
                f"{what}: only {left:.1f} s of the invocation are left, too little for "
                "one more request"
            )
        left = self.left() - then_wait
        if left <= 0:
            wait = f" (after a backoff of up to {then_wait:g} s)" if then_wait else ""
            raise OutOfTimeError(
                f"{what}{wait}: the invocation has {self._remaining():.1f} s left, inside the "
                f"{self.margin:.0f} s time margin (TMPWARDEN_TIME_MARGIN_S); stopped, run this "
                "target again in a new invocation (or raise the function's Timeout)"
            )


_lock = threading.Lock()
_current: list[Deadline | None] = [None]
_cleanup: ContextVar[bool] = ContextVar("tmpwarden_cleanup", default=False)


def current() -> Deadline | None:
    """The deadline of the target being run, if any."""
    return _current[0]


def check(what: str, *, then_wait: float = 0.0) -> None:
    """Raise OutOfTimeError when the current deadline (if any) forbids ``what``."""
    deadline = _current[0]
    if deadline is not None:
        deadline.check(what, then_wait=then_wait)


def seconds_left() -> float:
    """Seconds before the current deadline (infinite without one)."""
    deadline = _current[0]
    return math.inf if deadline is None else deadline.left()


@contextlib.contextmanager
def bounded(deadline: Deadline | None) -> Iterator[None]:
    """Make ``deadline`` the current one for the block (None: unbounded)."""
    with _lock:
        previous, _current[0] = _current[0], deadline
    try:
        yield
    finally:
        with _lock:
            _current[0] = previous


@contextlib.contextmanager
def after_deadline() -> Iterator[None]:
    """Cleanup that must run even past the deadline (an abort, the look after a commit),
    while one more wait fits in the invocation; for this thread only."""
    token = _cleanup.set(True)
    try:
        yield
    finally:
        _cleanup.reset(token)


def _before_send(event_name: str = "before-send.s3.request", **_kwargs: Any) -> None:
    """botocore ``before-send`` hook: refuse a request (or a retry) past the deadline.

    botocore hands the exception back as the request's outcome; it is not retryable, so
    the client call raises it."""
    check(f"S3 {event_name.rsplit('.', 1)[-1]}")


RETRIED_CODES = frozenset(
    {
        "RequestTimeout",
        "RequestTimeoutException",
        "PriorRequestNotComplete",
        "InternalError",
        "SlowDown",
        "Throttling",
        "ThrottlingException",
        "ServiceUnavailable",
    }
)
"""Error codes botocore's standard mode retries whatever the HTTP status (with 5xx, 429)."""


def _needs_retry(
    event_name: str = "needs-retry.s3.request",
    response: Any = None,
    caught_exception: BaseException | None = None,
    **_kwargs: Any,
) -> None:
    """botocore ``needs-retry`` hook (called after every request): when a retry may
    follow, refuse it unless its backoff sleep fits before the deadline (raised here, the
    exception ends the call before botocore sleeps)."""
    if isinstance(caught_exception, OutOfTimeError):  # refused by the before-send hook
        raise caught_exception
    if caught_exception is None:
        if not response:
            return
        status = getattr(response[0], "status_code", 0)
        code = (
            (response[1].get("Error") or {}).get("Code") if isinstance(response[1], dict) else None
        )
        if status < 500 and status != 429 and code not in RETRIED_CODES:
            return
    what = f"retrying S3 {event_name.rsplit('.', 1)[-1]}"
    if caught_exception is not None:
        what += f" after {type(caught_exception).__name__}: {caught_exception}"
    try:
        check(what, then_wait=MAX_BACKOFF_S)
    except OutOfTimeError as exc:
        raise exc from caught_exception


def install(client: Any) -> None:
    """Hook the deadline into an S3 client's every request, retry and backoff."""
    client.meta.events.register("before-send.s3", _before_send)
    client.meta.events.register_first("needs-retry.s3", _needs_retry)


def sleep_within(seconds: float, sleep: Callable[[float], None] = time.sleep) -> None:
    """Sleep ``seconds``, but never past the current deadline."""
    sleep(max(0.0, min(seconds, seconds_left())))


STALL_TIMEOUT_ENV = "TMPWARDEN_STALL_TIMEOUT_S"
DEFAULT_STALL_TIMEOUT_S = 10.0


def stall_timeout_from_env(environ: Mapping[str, str] | None = None) -> float:
    """``TMPWARDEN_STALL_TIMEOUT_S`` (default 10 s): seconds from 1 to 120."""
    env = os.environ if environ is None else environ
    text = env.get(STALL_TIMEOUT_ENV, "").strip() or f"{DEFAULT_STALL_TIMEOUT_S:g}"
    try:
        value = float(text)
    except ValueError:
        raise ConfigurationError(
            f"{STALL_TIMEOUT_ENV}={text!r} must be a number of seconds, e.g. 10"
        ) from None
    if not 1 <= value <= 120:
        raise ConfigurationError(f"{STALL_TIMEOUT_ENV}={value:g} must be from 1 to 120 seconds")
    return value
