"""The ``incident`` EMF document (:data:`monitor.records.RecordKind.INCIDENT`), built with
the standard library (the extension does not load aws-embedded-metrics).

One line: the ``Incidents`` count (1) with the dimensions FunctionName and
Classification, and the properties of :data:`monitor.records.PROPERTIES` for the kind,
the last samples as the level-change record states them (``LastSamples*``). Written to
standard output: an extension's output goes to the function's log group, where
CloudWatch extracts the metric (EMF specification:
https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/CloudWatch_Embedded_Metric_Format_Specification.html).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

from monitor import records as r
from monitor.extension.probe import Sample
from monitor.metrics import INCIDENTS, spec


def last_samples_properties(samples: Sequence[Sample]) -> dict[str, object]:
    """The ``LastSamples*`` properties of ``samples`` (oldest first); empty if none."""
    if not samples:
        return {}
    start = samples[0].time
    return {
        r.LAST_SAMPLES_START: round(start * 1000),
        r.LAST_SAMPLES_OFFSETS_MS: [round((s.time - start) * 1000) for s in samples],
        r.LAST_TMP_USED_BYTES: [s.tmp_used for s in samples],
        r.LAST_TMP_AVAILABLE_BYTES: [s.tmp_available for s in samples],
        r.LAST_MEMORY_USED_BYTES: [s.memory_used for s in samples],
    }


def incident_line(
    namespace: str,
    function_name: str,
    classification: str,
    timestamp: float,
    properties: Mapping[str, object],
) -> str:
    """One EMF line: ``Incidents`` = 1 for ``classification`` at ``timestamp`` (epoch s)."""
    metric = spec(INCIDENTS)
    document: dict[str, object] = {
        "_aws": {
            "Timestamp": round(timestamp * 1000),
            "CloudWatchMetrics": [
                {
                    "Namespace": namespace,
                    "Dimensions": [list(metric.dimensions)],
                    "Metrics": [{"Name": INCIDENTS, "Unit": metric.unit}],
                }
            ],
        },
        **properties,
        r.RECORD_KIND: r.RecordKind.INCIDENT.value,
        r.FUNCTION_NAME: function_name,
        r.CLASSIFICATION: classification,
        INCIDENTS: 1,
    }
    return json.dumps(document, separators=(",", ":"), default=str)
