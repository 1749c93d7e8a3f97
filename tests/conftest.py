"""Shared fixtures: Hypothesis profile, sample payloads."""

from __future__ import annotations

import os

# aws-embedded-metrics reads its configuration at import and, in an unknown environment,
# probes EC2 metadata and a TCP agent: name the environment before anything imports it.
os.environ.setdefault("AWS_EMF_ENVIRONMENT", "Local")

from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, settings

from monitor.emf_rules import warn_once

# Every property test runs at least 100 examples; no deadline on a shared, noisy machine.
settings.register_profile(
    "tmpwarden",
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "tmpwarden"))


def pytest_configure(config: object) -> None:
    import logging

    # moto's server logs every request through werkzeug; the tests read S3 themselves.
    logging.getLogger("werkzeug").setLevel(logging.ERROR)


@pytest.fixture(autouse=True)
def _fresh_warnings() -> Iterator[None]:
    """Each test starts with the monitor's warn-once memory empty: it lives for the whole
    process on purpose (a warm function warns once per cleaned value, not per call)."""
    seen = warn_once._seen
    saved = set(seen)
    seen.clear()
    yield
    seen.clear()
    seen.update(saved)
