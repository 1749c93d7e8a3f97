"""The root of every error tmpwarden raises.

It lives in ``monitor`` because ``handler`` depends on ``monitor`` and never the
other way round; both packages raise subclasses of :class:`TmpwardenError`.
"""

from __future__ import annotations

import os
import traceback
from collections.abc import Callable
from typing import TextIO

EXIT_ERROR = 1
EXIT_INTERNAL = 70
EXIT_INTERRUPTED = 130
DEBUG_ENV = "TMPWARDEN_DEBUG"
DISPLAY_LIMIT = 1024
"""Characters of one user value that a message, result or log line shows."""
DISPLAY_TAIL = 256
MESSAGE_LIMIT = 8 * 1024
"""Characters of one error message a command line, result or log line shows."""


class TmpwardenError(Exception):
    """Base class of every error a user of tmpwarden can meet.

    The message names the input, what was wrong with it and what to do.
    """


class ConfigurationError(TmpwardenError, ValueError):
    """When a setting (argument or ``TMPWARDEN_*`` variable) has an invalid value."""


def shown(value: object, limit: int = DISPLAY_LIMIT) -> str:
    """``str(value)``, at most about ``limit`` characters: its head and tail around a
    marker that says how much was left out (the one way a user value is shown back)."""
    text = value if isinstance(value, str) else str(value)
    if len(text) <= limit:
        return text
    tail = min(DISPLAY_TAIL, limit // 4)
    head = limit - tail
    return f"{text[:head]}...[{len(text) - head - tail} characters left out]...{text[-tail:]}"


def shown_repr(value: object, limit: int = DISPLAY_LIMIT) -> str:
    """``repr(value)`` shortened like :func:`shown` (quotes and escapes kept visible)."""
    return shown(repr(value), limit)


def one_line(text: str) -> str:
    """``text`` with its whitespace folded onto one line, at most about MESSAGE_LIMIT
    characters (each user value in it is already at most DISPLAY_LIMIT)."""
    return shown(" ".join(text.split()), MESSAGE_LIMIT)


def run_reporting_errors(command: Callable[[], int], stderr: TextIO) -> int:
    """Run a command-line ``command``; turn any error into one ``error:`` line on
    ``stderr`` and an exit status (a traceback only with ``TMPWARDEN_DEBUG=1``)."""
    try:
        return command()
    except TmpwardenError as exc:
        stderr.write(f"error: {one_line(str(exc))}\n")
        return EXIT_ERROR
    except KeyboardInterrupt:
        stderr.write("error: interrupted; nothing was left behind\n")
        return EXIT_INTERRUPTED
    except Exception as exc:  # a bug or an unforeseen condition: still one line
        if os.environ.get(DEBUG_ENV):
            traceback.print_exc(file=stderr)
        stderr.write(
            f"error: unexpected {type(exc).__name__}: {one_line(str(exc))} "
            f"(set {DEBUG_ENV}=1 for a traceback)\n"
        )
        return EXIT_INTERNAL
