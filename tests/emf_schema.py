"""An EMF line checker written from the CloudWatch Embedded Metric Format specification.

https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/CloudWatch_Embedded_Metric_Format_Specification.html
Independent of aws-embedded-metrics: it reads the JSON as CloudWatch would.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

MAX_EVENT_BYTES = 256 * 1024  # a CloudWatch Logs event
MAX_METRICS_PER_DIRECTIVE = 100
MAX_VALUES_PER_METRIC = 100
MAX_DIMENSIONS_PER_SET = 30
NAMESPACE_PATTERN = re.compile(r"^[a-zA-Z0-9._#:/-]{1,255}$")
MAX_DIMENSION_NAME = 255  # CloudWatch API Reference, Dimension
MAX_DIMENSION_VALUE = 1024
MAX_METRIC_VALUE = 2.0**360  # CloudWatch API Reference, MetricDatum
UNITS = {
    "Seconds",
    "Microseconds",
    "Milliseconds",
    "Bytes",
    "Kilobytes",
    "Megabytes",
    "Gigabytes",
    "Terabytes",
    "Bits",
    "Kilobits",
    "Megabits",
    "Gigabits",
    "Terabits",
    "Percent",
    "Count",
    "Bytes/Second",
    "Kilobytes/Second",
    "Megabytes/Second",
    "Gigabytes/Second",
    "Terabytes/Second",
    "Bits/Second",
    "Kilobits/Second",
    "Megabits/Second",
    "Gigabits/Second",
    "Terabits/Second",
    "Count/Second",
    "None",
}


class EmfViolation(AssertionError):
    """A line breaks the EMF specification."""


def _fail(problem: str, line: str) -> EmfViolation:
    return EmfViolation(f"{problem}: {line[:300]}")


def is_emf(line: str) -> bool:
    """Whether a log line is meant as EMF (a JSON object with an ``_aws`` member)."""
    try:
        document = json.loads(line)
    except ValueError:
        return False
    return isinstance(document, dict) and "_aws" in document


def _not_json(constant: str) -> Any:
    raise ValueError(f"{constant} is not a JSON value")


def validate_emf_line(line: str) -> dict[str, Any]:
    """Parse one line and check it against the specification; returns the document."""
    if "\n" in line.rstrip("\n"):
        raise _fail("an EMF document must be a single line", line)
    if len((line.rstrip("\n") + "\n").encode()) > MAX_EVENT_BYTES:
        raise _fail("the line is larger than a CloudWatch Logs event", line)
    try:
        # NaN and Infinity are Python's extension, not JSON (RFC 8259): refused.
        document = json.loads(line, parse_constant=_not_json)
    except ValueError as exc:
        raise _fail(f"not JSON ({exc})", line) from exc
    if not isinstance(document, dict):
        raise _fail("the root must be an object", line)
    meta = document.get("_aws")
    if not isinstance(meta, dict):
        raise _fail("_aws must be an object", line)
    timestamp = meta.get("Timestamp")
    if not isinstance(timestamp, int) or isinstance(timestamp, bool) or timestamp < 0:
        raise _fail("_aws.Timestamp must be a non-negative integer (epoch ms)", line)
    directives = meta.get("CloudWatchMetrics")
    if not isinstance(directives, list):
        raise _fail("_aws.CloudWatchMetrics must be an array", line)
    for directive in directives:
        _check_directive(directive, document, line)
    return document


def _check_directive(directive: Any, document: dict[str, Any], line: str) -> None:
    if not isinstance(directive, dict):
        raise _fail("a metric directive must be an object", line)
    namespace = directive.get("Namespace")
    if not isinstance(namespace, str) or not NAMESPACE_PATTERN.match(namespace):
        raise _fail(f"invalid Namespace {namespace!r}", line)
    if namespace.upper().startswith("AWS/"):
        raise _fail(f"Namespace {namespace!r}: AWS/ is reserved for AWS services", line)
    dimension_sets = directive.get("Dimensions")
    if not isinstance(dimension_sets, list):
        raise _fail("Dimensions must be an array of dimension sets", line)
    for dimension_set in dimension_sets:
        if not isinstance(dimension_set, list) or len(dimension_set) > MAX_DIMENSIONS_PER_SET:
            raise _fail("a dimension set must be an array of at most 30 names", line)
        for name in dimension_set:
            if not isinstance(name, str) or not isinstance(document.get(name), str):
                raise _fail(f"dimension {name!r} must name a top-level string member", line)
            _check_dimension(name, document[name], line)
    metrics = directive.get("Metrics")
    if not isinstance(metrics, list) or len(metrics) > MAX_METRICS_PER_DIRECTIVE:
        raise _fail("Metrics must be an array of at most 100 definitions", line)
    for metric in metrics:
        _check_metric(metric, document, line)


def _check_dimension(name: str, value: str, line: str) -> None:
    """CloudWatch API Reference, Dimension: name 1-255 and value 1-1024 ASCII characters,
    each with a non-whitespace character, no control characters; a name not starting
    with a colon."""
    for text, limit in ((name, MAX_DIMENSION_NAME), (value, MAX_DIMENSION_VALUE)):
        if not 1 <= len(text) <= limit or not text.strip():
            raise _fail(f"dimension {name!r}: {text!r} must be 1-{limit} characters", line)
        if not all(" " <= c <= "~" for c in text):
            raise _fail(f"dimension {name!r}: {text!r} must be printable ASCII", line)
    if name.startswith(":"):
        raise _fail(f"dimension name {name!r} must not start with ':'", line)


def _check_metric(metric: Any, document: dict[str, Any], line: str) -> None:
    if not isinstance(metric, dict) or not isinstance(metric.get("Name"), str):
        raise _fail("a metric definition needs a Name", line)
    name = metric["Name"]
    if not 1 <= len(name) <= 1024:
        raise _fail(f"metric name {name!r} must be 1-1024 characters", line)
    unit = metric.get("Unit", "None")
    if unit not in UNITS:
        raise _fail(f"metric {name}: unknown Unit {unit!r}", line)
    resolution = metric.get("StorageResolution", 60)
    if resolution not in (1, 60):
        raise _fail(f"metric {name}: StorageResolution must be 1 or 60", line)
    value = document.get(name)
    values = value if isinstance(value, list) else [value]
    if len(values) > MAX_VALUES_PER_METRIC:
        raise _fail(f"metric {name} has {len(values)} values; at most 100", line)
    for item in values:
        if isinstance(item, bool) or not isinstance(item, int | float) or not math.isfinite(item):
            raise _fail(f"metric {name} must be a number or an array of numbers", line)
        if abs(item) > MAX_METRIC_VALUE:
            raise _fail(f"metric {name}: {item} is beyond CloudWatch's +-2^360", line)


def metric_values(document: dict[str, Any], name: str) -> list[float]:
    """A metric's values as a list (EMF allows a scalar for a single value)."""
    value = document[name]
    return list(value) if isinstance(value, list) else [value]
