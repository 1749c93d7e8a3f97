"""What every check returns: a list of problems, each naming where it is and what is wrong."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True, order=True)
class Problem:
    """One thing wrong.

    ``where`` is a path relative to the repository, maybe with a name after it
    (``alarms/storage.yaml: TmpPeakCriticalAlarm``); ``message`` says what is wrong and
    what to do about it.
    """

    where: str
    message: str

    def __str__(self) -> str:
        return f"{self.where}: {self.message}"
