"""Named units for sizes and times, and parsing of human-written sizes."""

from __future__ import annotations

import re

from monitor.errors import ConfigurationError

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB
TiB = 1024 * GiB

SECONDS = 1.0
MILLISECONDS = 0.001

_SIZE_PATTERN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(i?b?)\s*$", re.IGNORECASE)
_SIZE_FACTORS = {"": 1, "k": KiB, "m": MiB, "g": GiB, "t": TiB}


def parse_size(text: str, *, setting: str = "size") -> int:
    """Parse ``"512M"``, ``"1GiB"``, ``"64 MiB"`` or ``"1048576"`` into bytes (powers of 1024)."""
    match = _SIZE_PATTERN.match(text)
    if match is None:
        raise ConfigurationError(
            f"{setting}: {text!r} is not a size; write bytes or a number with a unit "
            "such as 512M, 1G or 64MiB"
        )
    number, unit, _ = match.groups()
    return int(float(number) * _SIZE_FACTORS[unit.lower()])


def format_size(size: int | float) -> str:
    """Format bytes for people: ``1.5 GiB``, ``12.0 MiB``, ``512 B``."""
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(value) < 1024 or unit == "GiB":
            return f"{int(value)} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")  # pragma: no cover
