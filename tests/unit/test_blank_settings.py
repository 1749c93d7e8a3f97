"""A variable set but empty (or blank) is an unset one, in every setting read from the
environment (review2 item 17's kind: an empty AWS_LAMBDA_MAX_CONCURRENCY was taken for a
Managed Instance; an empty TMPWARDEN_MAX_ATTEMPTS was "must be numbers")."""

from __future__ import annotations

import pytest

from handler.settings import (
    LOG_LEVEL_ENV,
    MAX_ATTEMPTS_ENV,
    STRATEGY_ENV,
    TIME_MARGIN_ENV,
    HandlerSettings,
)
from monitor.config import MonitorConfig


@pytest.mark.parametrize("blank", ["", "   "])
@pytest.mark.parametrize("name", [STRATEGY_ENV, LOG_LEVEL_ENV, MAX_ATTEMPTS_ENV, TIME_MARGIN_ENV])
def test_a_blank_handler_setting_is_its_default(name: str, blank: str) -> None:
    assert HandlerSettings.from_env({name: blank}) == HandlerSettings.from_env({})


def test_a_blank_monitor_setting_is_its_default() -> None:
    blanks = dict.fromkeys(("TMPWARDEN_TMP_CRITICAL", "TMPWARDEN_SAMPLING", "TMPWARDEN_PATH"), " ")
    assert MonitorConfig.resolve(environ=blanks) == MonitorConfig.resolve(environ={})
