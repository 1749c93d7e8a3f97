"""The errors the packaging engine raises; all derive from :class:`TmpwardenError`.

Each subclass also inherits the built-in exception it refines, so callers that
already catch ``OSError`` or ``ValueError`` keep working. Messages name the input,
what was wrong and what to do. The whole tree, handler's and monitor's (the same as
README.md's "Errors"; tests/unit/test_structure.py holds both to the code)::

    TmpwardenError(Exception)
    │   The root (monitor/errors.py): catch it to catch every error of ours
    ├── ConfigurationError(ValueError)
    │       When a setting (an argument or a TMPWARDEN_* variable) is invalid (monitor/errors.py)
    ├── ReportError(ValueError)
    │       When the report's log is unreadable or holds no records (monitor/report.py)
    ├── ExtensionsApiError(OSError)
    │       When Lambda's Extensions or Telemetry API refuses a call (monitor/extension/api.py)
    ├── InputError(ValueError)
    │   │   When an input (a path, an option, a pattern) is unusable as given
    │   ├── SourceNotFoundError(FileNotFoundError)
    │   │       When the source archive does not exist
    │   ├── UnsupportedArchiveError
    │   │       When the source is no archive in a supported format
    │   └── EventValidationError
    │           When the event is malformed; lists every bad field (handler/events.py)
    ├── ExtractionError(ValueError)
    │       When an archive is corrupt, truncated or hostile; names the member
    ├── SourceReadError(OSError)
    │       When reading the source fails midway (I/O, network); often transient
    ├── RemoteServiceError(OSError)
    │       When S3 fails a request; .transient says whether a retry may help
    ├── AccessDeniedError(PermissionError)
    │       When the role may not read the source or write the destination
    ├── DestinationError(OSError)
    │   │   When the destination cannot be written
    │   ├── DestinationExistsError
    │   │       When if_exists is "fail" and the destination exists (left as it is)
    │   └── DestinationReplacedError
    │           When another writer replaced the object right after this commit
    ├── CommitUnverifiedError
    │       When the upload may have been committed but could not be verified
    ├── CompressionError
    │       When the ZIP cannot be written as asked (a member too large, a bad level)
    ├── InsufficientStorageError(OSError)
    │       When a filesystem has (or would have) too little space for the work
    ├── CleanupFailedError(OSError)
    │       When cleanup could not remove everything; lists what remains
    ├── ResourceExhaustedError(MemoryError)
    │       When the process runs short of memory or threads; says what to raise
    ├── OutOfTimeError(TimeoutError)
    │       When too little of the invocation is left to start (handler/deadline.py)
    └── SandboxError(RuntimeError)
            When the local sandbox cannot be set up (handler/cli/sandbox.py)

Defined here unless the line names another module.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from monitor.errors import ConfigurationError, TmpwardenError, shown
from monitor.units import format_size

__all__ = [
    "AccessDeniedError",
    "CleanupFailedError",
    "CommitUnverifiedError",
    "CompressionError",
    "ConfigurationError",
    "DestinationError",
    "DestinationExistsError",
    "DestinationReplacedError",
    "ExtractionError",
    "InputError",
    "InsufficientStorageError",
    "RemoteServiceError",
    "ResourceExhaustedError",
    "SourceNotFoundError",
    "SourceReadError",
    "TmpwardenError",
    "UnsupportedArchiveError",
]


class RemoteServiceError(TmpwardenError, OSError):
    """When S3 (or another service) fails a request; ``transient`` says a retry may help."""

    def __init__(self, message: str, *, transient: bool) -> None:
        self.transient = transient
        super().__init__(message)


class AccessDeniedError(TmpwardenError, PermissionError):
    """When the function's role may not read the source or write the destination."""


class InputError(TmpwardenError, ValueError):
    """When an input (a path, an option, a pattern) is unusable as given."""


class SourceNotFoundError(InputError, FileNotFoundError):
    """When the source archive does not exist or cannot be read."""


class UnsupportedArchiveError(InputError):
    """When the source is not an archive in a supported format."""


class SourceReadError(TmpwardenError, OSError):
    """When reading the source fails midway (an I/O or network error); often transient."""


class ExtractionError(TmpwardenError, ValueError):
    """When an archive is corrupt, truncated or hostile; names the member and the reason."""

    def __init__(self, source: str, member: str | None, reason: str, advice: str) -> None:
        self.source = source
        self.member = member
        self.reason = reason
        self.advice = advice
        where = f"{source}: member {shown_name(member)}" if member else source
        super().__init__(f"{where}: {reason}; {advice}")


_SURROGATE_ESCAPE = re.compile(r"(?<!\\)((?:\\\\)*)\\udc([89a-f][0-9a-f])")


def shown_name(name: str) -> str:
    """``name`` quoted and escaped as Python's ``repr`` shows it (control characters as
    ``\\x01``), except that bytes which were not valid in the name's encoding (kept as
    PEP 383 surrogate escapes) show as the bytes they are: ``'caf\\xe9.txt'``."""
    return shown(_SURROGATE_ESCAPE.sub(r"\1\\x\2", repr(name)))


class CompressionError(TmpwardenError):
    """When the ZIP cannot be written as asked (a member outgrows its format, a bad level)."""


class DestinationError(TmpwardenError, OSError):
    """When the destination cannot be written (missing directory, no permission)."""


class DestinationExistsError(DestinationError):
    """When ``if_exists`` is ``fail`` and the destination already exists; it is left as it is."""


class DestinationReplacedError(DestinationError):
    """When another writer replaced (or removed) the object right after this attempt
    completed it: nothing of this attempt is at the key, and nothing was deleted."""


class CommitUnverifiedError(TmpwardenError):
    """When the upload may have been committed (the object is probably in place, perhaps
    replacing an older one) but it could not be verified: not retried as if nothing happened.
    ``etag`` is the ETag this attempt's object has (or would have), when known."""

    def __init__(self, message: str, *, etag: str | None = None) -> None:
        self.etag = etag
        super().__init__(message)


class InsufficientStorageError(TmpwardenError, OSError):
    """When a filesystem has (or would have) too little space for the work."""

    def __init__(self, path: str | Path, needed: int | None, available: int, advice: str) -> None:
        self.path = str(path)
        self.needed = needed
        self.available = available
        if needed is None:
            problem = f"no space left ({format_size(available)} available)"
        else:
            problem = f"needs {format_size(needed)}, {format_size(available)} available"
        super().__init__(f"{path}: {problem}; {advice}")


class CleanupFailedError(TmpwardenError, OSError):
    """When cleanup could not remove everything it was asked to; lists what remains."""

    def __init__(self, remaining: Sequence[Path], reasons: Sequence[str] = ()) -> None:
        self.remaining = list(remaining)
        shown = ", ".join(str(p) for p in self.remaining[:5])
        more = f" and {len(self.remaining) - 5} more" if len(self.remaining) > 5 else ""
        why = f" ({'; '.join(reasons[:3])})" if reasons else ""
        super().__init__(
            f"cleanup left {len(self.remaining)} path(s) behind: {shown}{more}{why}; "
            "remove them by hand and check their permissions"
        )


class ResourceExhaustedError(TmpwardenError, MemoryError):
    """When the process runs short of memory or threads (``resource``: ``"memory"`` or
    ``"threads"``); names how much the work needs (``needed`` bytes, from the plan, None
    when unknown), the function's limit (``limit`` bytes, None outside Lambda) and the
    setting to raise. Never transient: the same work under the same limit fails again."""

    def __init__(
        self,
        resource: str,
        *,
        needed: int | None = None,
        limit: int | None = None,
        detail: str = "",
        advice: str = "",
    ) -> None:
        self.resource = resource
        self.needed = needed
        self.limit = limit
        self.detail = detail
        self.advice = advice
        what = f"short of {resource}" + (f" ({detail})" if detail else "")
        if needed is not None:
            what += f"; the work needs about {format_size(needed)}"
        if limit is not None:
            what += f", the function has {format_size(limit)}"
        super().__init__(f"{what}; {advice}" if advice else what)
