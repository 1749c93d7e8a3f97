"""A one-line progress bar for terminals (the CLI shows none when output is not a TTY)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TextIO

from monitor.units import format_size

BAR_WIDTH = 30
REFRESH_SECONDS = 0.1


class ProgressBar:
    """Draws ``[#####.....]  42%  420.0 MiB / 1.0 GiB  310.2 MiB/s`` in place."""

    def __init__(
        self,
        stream: TextIO,
        label: str,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._stream = stream
        self._label = label
        self._clock = clock
        self._started = clock()
        self._last_draw = 0.0
        self._drawn = False

    def update(self, done: int, total: int) -> None:
        """Redraw at most every REFRESH_SECONDS, and always at 100%."""
        now = self._clock()
        if now - self._last_draw < REFRESH_SECONDS and done < total:
            return
        self._last_draw = now
        fraction = min(done / total, 1.0) if total else 0.0
        filled = int(fraction * BAR_WIDTH)
        rate = done / max(now - self._started, 1e-6)
        self._stream.write(
            f"\r{self._label} [{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {fraction:4.0%}  "
            f"{format_size(done)} / {format_size(total)}  {format_size(rate)}/s "
        )
        self._stream.flush()
        self._drawn = True

    def close(self) -> None:
        """End the line so later output starts on a fresh one."""
        if self._drawn:
            self._stream.write("\n")
            self._stream.flush()
