"""A real packaging's EMF lines carry every metric the dashboard and the alarms use,
with the same namespace, dimensions and unit."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from deploy.checks import metrics_used
from handler.cli.sample import build_sample_artifact
from handler.cli.sandbox import namespace_prefix
from monitor.metrics import REGISTRY, MetricGroup
from monitor.units import MiB
from tests.emf_schema import validate_emf_line
from tests.integration.conftest import invoke_sandbox, upload
from tests.s3server import MotoS3

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]


def emitted(lines: list[str]) -> set[tuple[str, str, tuple[str, ...], str]]:
    """(namespace, metric, dimension names, unit) of every metric in the EMF lines."""
    found = set()
    for line in lines:
        document: dict[str, Any] = validate_emf_line(line)
        for directive in document["_aws"]["CloudWatchMetrics"]:
            for dimensions in directive["Dimensions"]:
                for metric in directive["Metrics"]:
                    found.add(
                        (
                            directive["Namespace"],
                            metric["Name"],
                            tuple(sorted(dimensions)),
                            metric.get("Unit", "None"),
                        )
                    )
    return found


def test_every_dashboard_and_alarm_metric_appears_in_a_real_run(
    s3_env: MotoS3, bucket: str, tmp_path: Path
) -> None:
    if namespace_prefix() is None:
        pytest.skip("mount namespaces are not permitted here (needs root or user namespaces)")
    # Extracting 256 MiB into a 512 MiB /tmp fills it fast enough for a time-to-full
    # prediction (a short horizon makes the trend window short); a missing key fails.
    artifact = build_sample_artifact(tmp_path / "m.tar.gz", 256 * MiB, seed=21)
    source = upload(s3_env.client(), bucket, "models/m.tar.gz", artifact)
    event = {
        "targets": [
            {"source": source, "destination": f"s3://{bucket}/out/m.zip"},
            {
                "source": f"s3://{bucket}/models/missing.tar.gz",
                "destination": f"s3://{bucket}/out/x.zip",
            },
        ]
    }
    env = {
        "AWS_ENDPOINT_URL": s3_env.url,
        "TMPWARDEN_SAMPLE_INTERVAL_MS": "20",
        "TMPWARDEN_PREDICT_HORIZON_S": "3",
        "TMPWARDEN_EMF": "on",
    }
    _, response, stderr, emf_log = invoke_sandbox(
        tmp_path, event, "--tmp-size", "512M", "--memory", "2048", env=env
    )
    try:
        assert response["status"] == "partial", stderr
        assert response["targets"][0]["strategy"] == "extract"
        lines = emf_log.read_text().splitlines()
    finally:
        emf_log.unlink(missing_ok=True)

    found = emitted(lines)
    namespaces = {namespace for namespace, *_ in found}
    assert namespaces == {"tmpwarden"}
    for namespace, name, dimensions, unit in metrics_used():
        if namespace != "tmpwarden":
            continue  # AWS/Lambda's own metrics come from Lambda, not from us
        if REGISTRY[name].group is MetricGroup.INCIDENT:
            continue  # the extension writes these (tests/integration/test_extension.py)
        expected_unit = unit or REGISTRY[name].unit
        assert (namespace, name, tuple(sorted(dimensions)), expected_unit) in found, (
            f"{name} {dimensions} {expected_unit} is used by the dashboard or an alarm "
            "but was not emitted"
        )
