"""Shared fixtures: Hypothesis profile, sample payloads."""

from __future__ import annotations

import os

# aws-embedded-metrics reads its configuration at import and, in an unknown environment,
# probes EC2 metadata and a TCP agent: name the environment before anything imports it.
os.environ.setdefault("AWS_EMF_ENVIRONMENT", "Local")

from hypothesis import HealthCheck, settings

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
