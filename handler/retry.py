"""Which failures are worth another attempt, and how long to wait before it."""

from __future__ import annotations

import random
from dataclasses import dataclass

from handler.errors import (
    CommitUnverifiedError,
    InsufficientStorageError,
    RemoteServiceError,
    SourceReadError,
    TmpwardenError,
)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Exponential backoff with full jitter: attempt n waits up to base * 2**(n-1), capped."""

    max_attempts: int = 3
    base_delay: float = 0.5
    max_delay: float = 20.0

    def delay(self, attempt: int, rng: random.Random) -> float:
        """Seconds to wait after failed attempt ``attempt`` (1-based)."""
        return rng.uniform(0, min(self.max_delay, self.base_delay * 2 ** (attempt - 1)))


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
