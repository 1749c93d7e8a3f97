"""User values checked against each other and against what the target system can hold,
and the one way a user value is shown back (shortened).

Every check returns problems as text (``[]`` when the value is fine) so a caller can
report every invalid field at once. Figures and their sources:

- S3 object keys: at most 1,024 bytes of UTF-8 (S3 User Guide, "Naming Amazon S3 objects").
- S3 bucket names: 3 to 63 characters of lowercase letters, digits, dots and hyphens,
  beginning and ending with a letter or digit, no ``..``, not shaped like an IP address
  (S3 User Guide, "General purpose bucket naming rules"). Names made in us-east-1 before
  March 2018 may also hold uppercase letters and underscores and be up to 255 characters
  long ("Legacy bucket naming rules"); those are accepted, as botocore accepts them.
- Local paths: at most 4,095 bytes, each component at most 255 bytes (Linux ``PATH_MAX``
  and ``NAME_MAX`` in ``<linux/limits.h>``).
- A NUL byte fits in no path (the kernel ends a path at it) and no S3 key request; an
  unpaired surrogate is not Unicode and has no UTF-8 encoding. On the command line, the
  surrogates U+DC80..U+DCFF stand for a local file name's undecodable bytes (PEP 383) and
  are accepted in local paths.

Source and destination are one place when they are the same bucket and key (a command
line or event uses one endpoint for both, ``--endpoint-url`` or ``AWS_ENDPOINT_URL``, so
an endpoint difference cannot arise), or the same local file: ``os.path.samefile`` when
both exist (symbolic and hard links included), else the same resolved path.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from monitor.errors import DISPLAY_LIMIT, shown, shown_repr

__all__ = [
    "DISPLAY_LIMIT",
    "S3_MAX_KEY_BYTES",
    "location_problems",
    "same_location",
    "shown",
    "shown_repr",
    "text_problem",
]

S3_MAX_KEY_BYTES = 1024
S3_MIN_BUCKET = 3
S3_MAX_BUCKET = 63
S3_MAX_LEGACY_BUCKET = 255
PATH_MAX_BYTES = 4095
NAME_MAX_BYTES = 255

_SURROGATE = re.compile("[\ud800-\udfff]")
_ESCAPED_BYTE = re.compile("[\udc80-\udcff]")
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]*[a-z0-9]$")
_LEGACY_BUCKET = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*[A-Za-z0-9]$")
_IP_ADDRESS = re.compile(r"^\d{1,3}(\.\d{1,3}){3}$")


def text_problem(value: str, *, escaped_bytes: bool = False) -> str | None:
    """What makes ``value`` unusable as text for a path or key: a NUL byte or an unpaired
    surrogate; None when it is fine. ``escaped_bytes`` accepts U+DC80..U+DCFF (PEP 383)."""
    index = value.find("\x00")
    if index >= 0:
        return f"contains a NUL byte at character {index}, which no path or S3 key can hold"
    for match in _SURROGATE.finditer(value):
        if escaped_bytes and _ESCAPED_BYTE.match(match.group()):
            continue
        return (
            f"contains an unpaired surrogate ({match.group()!r} at character {match.start()}), "
            "which is not Unicode and has no UTF-8 form; fix how the string was encoded"
        )
    return None


def _bucket_problem(bucket: str) -> str | None:
    if S3_MIN_BUCKET <= len(bucket) <= S3_MAX_BUCKET and _BUCKET.match(bucket):
        if ".." in bucket:
            return f"bucket {shown_repr(bucket)} holds '..', which S3 bucket names may not"
        if _IP_ADDRESS.match(bucket):
            return f"bucket {shown_repr(bucket)} is shaped like an IP address; S3 refuses that"
        return None
    if S3_MIN_BUCKET <= len(bucket) <= S3_MAX_LEGACY_BUCKET and _LEGACY_BUCKET.match(bucket):
        return None  # a legacy us-east-1 name (uppercase, underscores, up to 255)
    return (
        f"bucket {shown_repr(bucket)} is not a valid S3 bucket name (3 to 63 lowercase "
        "letters, digits, dots and hyphens, beginning and ending with a letter or digit)"
    )


def _key_problem(key: str) -> str | None:
    size = len(key.encode("utf-8"))
    if size > S3_MAX_KEY_BYTES:
        return (
            f"the key is {size:,} bytes of UTF-8; S3 keys hold at most {S3_MAX_KEY_BYTES:,}: "
            "use a shorter key"
        )
    return None


def _path_problem(path: str) -> str | None:
    encoded = os.fsencode(path)
    if len(encoded) > PATH_MAX_BYTES:
        return f"the path is {len(encoded):,} bytes; paths hold at most {PATH_MAX_BYTES:,}"
    longest = max(encoded.split(b"/"), key=len)
    if len(longest) > NAME_MAX_BYTES:
        return (
            f"a path component is {len(longest):,} bytes; file names hold at most {NAME_MAX_BYTES}"
        )
    return None


def location_problems(location: str, *, escaped_bytes: bool = False) -> list[str]:
    """Why ``location`` (``s3://bucket/key`` or a local path) cannot be represented where it
    points; ``[]`` when it can. Shapes (``s3://bucket`` with no key) are
    :func:`handler.locations.local.check_location`'s job."""
    local = not location.startswith("s3://")
    problem = text_problem(location, escaped_bytes=escaped_bytes and local)
    if problem is not None:
        return [problem]
    if local:
        found = _path_problem(location)
        return [found] if found else []
    bucket, _, key = location.removeprefix("s3://").partition("/")
    return [p for p in (_bucket_problem(bucket), _key_problem(key)) if p is not None]


def same_location(source: str, destination: str) -> bool:
    """Whether writing ``destination`` would write over ``source`` (see the module's note)."""
    if source.startswith("s3://") or destination.startswith("s3://"):
        return source.strip() == destination.strip()
    try:
        return Path(source).samefile(destination)
    except (OSError, ValueError):
        pass
    try:
        return os.path.realpath(source) == os.path.realpath(destination)
    except (OSError, ValueError):
        return False


def check_arguments(source: str, dest: str | None = None) -> None:
    """Refuse command-line locations that cannot be represented where they point, or a
    ``dest`` that is the ``source``: one InputError naming every bad argument."""
    from handler.errors import InputError  # noqa: PLC0415 - keeps this module import-light

    problems = [f"source: {p}" for p in location_problems(source, escaped_bytes=True)]
    if dest is not None:
        problems += [f"dest: {p}" for p in location_problems(dest, escaped_bytes=True)]
        if not problems and same_location(source, dest):
            problems.append(
                f"dest: is the source ({shown_repr(source)}); writing it would destroy the "
                "archive being read: choose another destination"
            )
    if problems:
        raise InputError(" | ".join(problems))
