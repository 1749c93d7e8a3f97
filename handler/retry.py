"""The retry, fallback and deadline rules of one target, as a value (as urllib3's ``Retry``).

:class:`RetryPolicy` answers every question the loop of
:func:`handler.packaging.package_target` asks: may an attempt start (the time margin),
what to do after a failure (fall back from ``extract`` to ``stream``, retry after a
backoff, or give up), how long to wait, and the deadline every S3 request keeps.
"""

from __future__ import annotations

import enum
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from handler.deadline import Deadline, OutOfTimeError, longest_wait, sleep_within
from handler.errors import (
    CommitUnverifiedError,
    InsufficientStorageError,
    RemoteServiceError,
    SourceReadError,
    TmpwardenError,
)
from handler.storage import Strategy

if TYPE_CHECKING:
    from handler.settings import HandlerSettings

RemainingSeconds = Callable[[], float]
"""The invocation's remaining time in seconds (the Lambda context's clock)."""


class Step(enum.Enum):
    """What follows a failed attempt."""

    FALL_BACK = "fall_back"  # the next attempt, now with the stream strategy
    RETRY = "retry"  # the next attempt, after a backoff
    GIVE_UP = "give_up"  # the target's result is this failure


@dataclass(frozen=True, slots=True)
class Verdict:
    """The policy's answer after a failure (logged as ``transient`` and ``fallback``)."""

    step: Step
    transient: bool

    @property
    def fallback(self) -> bool:
        return self.step is Step.FALL_BACK


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Attempts, backoff, transient errors, fallback and the time margin of one target.

    * ``max_attempts`` attempts in all (a fallback does not count against them; an
      attempt refused for lack of time is not counted);
    * exponential backoff with full jitter: after failed attempt n, wait up to
      ``base_delay * 2**(n-1)`` seconds, capped at ``max_delay`` (AWS Architecture Blog,
      "Exponential Backoff And Jitter", 2015), never past the deadline;
    * ``time_margin`` seconds before the invocation's end no attempt starts and no S3
      request is sent (0: no deadline); a request waits at most ``stall_timeout`` seconds
      for bytes (see :mod:`handler.deadline`);
    * ``fall_back_to_stream``: an automatically chosen ``extract`` that runs out of
      storage is run again with ``stream`` at once.
    """

    max_attempts: int = 3
    base_delay: float = 0.5
    max_delay: float = 20.0
    time_margin: float = 30.0
    stall_timeout: float = 10.0
    fall_back_to_stream: bool = True

    @classmethod
    def from_settings(cls, settings: HandlerSettings) -> RetryPolicy:
        """The policy the handler's settings (``TMPWARDEN_*``) describe."""
        return cls(
            max_attempts=settings.max_attempts,
            time_margin=settings.time_margin,
            stall_timeout=settings.stall_timeout,
        )

    def delay(self, attempt: int, rng: random.Random) -> float:
        """Seconds to wait after failed attempt ``attempt`` (1-based)."""
        return rng.uniform(0, min(self.max_delay, self.base_delay * 2 ** (attempt - 1)))

    def deadline(self, remaining: RemainingSeconds | None) -> Deadline | None:
        """The deadline every S3 request of the target keeps (none without a clock or
        margin)."""
        if remaining is None or self.time_margin <= 0:
            return None
        return Deadline(remaining, self.time_margin, longest_wait(self.stall_timeout))

    def check_time(self, remaining: RemainingSeconds | None) -> None:
        """Raise OutOfTimeError when an attempt may not start: under ``time_margin``
        seconds are left."""
        if remaining is None:
            return
        left = remaining()
        if left < self.time_margin:
            raise OutOfTimeError(
                f"only {left:.0f} s of the invocation are left, under the "
                f"{self.time_margin:.0f} s safety margin; run this target again in a new "
                "invocation (or raise the Timeout)"
            )

    def after_failure(
        self,
        exc: BaseException,
        *,
        attempts: int,
        strategy: Strategy | None,
        automatic: bool,
        space_relieved: bool = False,
    ) -> Verdict:
        """What follows ``exc``, the failure of attempt ``attempts`` run with ``strategy``
        (``automatic``: chosen by the plan, not by the caller)."""
        transient = is_transient(exc, space_relieved=space_relieved)
        if (
            self.fall_back_to_stream
            and automatic
            and strategy is Strategy.EXTRACT
            and isinstance(exc, InsufficientStorageError)
        ):
            return Verdict(Step.FALL_BACK, transient)
        if transient and attempts < self.max_attempts:
            return Verdict(Step.RETRY, transient)
        return Verdict(Step.GIVE_UP, transient)

    def back_off(
        self,
        attempts: int,
        rng: random.Random,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        """Sleep the backoff after failed attempt ``attempts``, never past the current
        deadline (the one :meth:`deadline` made current)."""
        sleep_within(self.delay(attempts, rng), sleep)


def is_transient(exc: BaseException, *, space_relieved: bool = False) -> bool:
    """S3 5xx, throttling and dropped connections are; a bad or hostile archive, a missing
    key, a denied access or an invalid event are not; a full disk is when cleanup
    relieved it. A commit that may have taken effect (CommitUnverifiedError) never is:
    another attempt would not start from nothing."""
    if isinstance(exc, CommitUnverifiedError):
        return False
    if isinstance(exc, RemoteServiceError):
        return exc.transient
    if isinstance(exc, SourceReadError):
        return True
    if isinstance(exc, InsufficientStorageError):
        return space_relieved
    if isinstance(exc, TmpwardenError):
        return False
    return isinstance(exc, ConnectionError | TimeoutError)
