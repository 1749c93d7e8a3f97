"""What may reach an EMF document: CloudWatch's rules, checked where a value enters.

Settings that break a rule (the namespace, the function name, extra dimensions) are a
:class:`~monitor.errors.ConfigurationError` naming the setting, raised when the monitor
is made. Values that arrive while work runs (phase names, metric values, error texts)
are cleaned, with one warning per distinct value, so one bad value never costs a
document. Property strings and lists are capped so that no line exceeds a CloudWatch
Logs event; metrics are never dropped.

Sources of the rules:

- Namespace: 1-255 characters of ``0-9 A-Z a-z . - _ / # :``, and not beginning with
  ``AWS/`` (reserved for AWS services). CloudWatch API Reference, PutMetricData,
  ``Namespace``
  (https://docs.aws.amazon.com/AmazonCloudWatch/latest/APIReference/API_PutMetricData.html)
  and the namespace check of aws-embedded-metrics (``VALID_NAMESPACE_REGEX``).
- Dimensions: names 1-255 ASCII characters (aws-embedded-metrics allows 250), not
  starting with ``:``; values 1-1024 ASCII characters; both with a non-whitespace
  character and no control characters. CloudWatch API Reference, ``Dimension``
  (https://docs.aws.amazon.com/AmazonCloudWatch/latest/APIReference/API_Dimension.html).
- Values: finite, within -2^360 to 2^360. CloudWatch API Reference, ``MetricDatum``
  (https://docs.aws.amazon.com/AmazonCloudWatch/latest/APIReference/API_MetricDatum.html).
- Size: an EMF document is one CloudWatch Logs event, at most 256 KB. Embedded metric
  format specification
  (https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/CloudWatch_Embedded_Metric_Format_Specification.html).
"""

from __future__ import annotations

import logging
import math
import numbers
import re
import threading
import unicodedata
from collections.abc import Callable, Mapping

from monitor.errors import ConfigurationError

log = logging.getLogger("tmpwarden.monitor")

MAX_EVENT_BYTES = 256 * 1024
"""A CloudWatch Logs event, and so one EMF line (the newline included)."""
MAX_NAMESPACE_LENGTH = 255
NAMESPACE_PATTERN = re.compile(r"[0-9A-Za-z.\-_/#:]{1,255}")
RESERVED_NAMESPACE_PREFIX = "AWS/"
MAX_DIMENSION_NAME_LENGTH = 250
"""CloudWatch allows 255; aws-embedded-metrics 250: the smaller passes both."""
MAX_DIMENSION_VALUE_LENGTH = 1024
MAX_METRIC_VALUE = 2.0**360
MAX_PROPERTY_TEXT = 1024
"""Characters of any one property string (an error text, a request id) at first."""
MAX_PROPERTY_ITEMS = 50
"""Items of any one property list at first."""
UNNAMED = "unnamed"
MAX_WARNED = 100
"""Distinct cleaned values warned about per process; later ones are cleaned silently."""


class WarnOnce:
    """Logs one warning per distinct key (at most ``MAX_WARNED`` keys, then none)."""

    def __init__(self) -> None:
        self._seen: set[object] = set()
        self._lock = threading.Lock()

    def __call__(self, key: object, message: str, *args: object) -> None:
        with self._lock:
            if key in self._seen or len(self._seen) >= MAX_WARNED:
                return
            self._seen.add(key)
        log.warning(message, *args)


warn_once = WarnOnce()


def _setting_error(setting: str, value: str, problem: str) -> ConfigurationError:
    shown = value if len(value) <= 80 else value[:77] + "..."
    return ConfigurationError(f"monitor setting {setting}={shown!r} is invalid: {problem}")


def check_namespace(namespace: str, setting: str = "namespace") -> str:
    """``namespace`` if CloudWatch accepts it as a custom namespace; else a
    ConfigurationError naming ``setting`` and the rule."""
    if not NAMESPACE_PATTERN.fullmatch(namespace):
        raise _setting_error(
            setting,
            namespace,
            "a CloudWatch namespace is 1-255 characters of letters, digits and . - _ / # : "
            "(no spaces or other characters); CloudWatch would extract no metrics",
        )
    if namespace.upper().startswith(RESERVED_NAMESPACE_PREFIX):
        raise _setting_error(
            setting, namespace, "namespaces beginning with AWS/ are reserved for AWS services"
        )
    return namespace


def _dimension_text_problem(text: str, limit: int) -> str | None:
    if not text.strip():
        return "it needs at least one non-whitespace character"
    if len(text) > limit:
        return f"it is {len(text)} characters; at most {limit}"
    if not all(" " <= c <= "~" for c in text):
        return "only printable ASCII characters are allowed"
    return None


def check_dimension(name: str, value: str, setting: str) -> None:
    """A ConfigurationError naming ``setting`` unless ``name``/``value`` is a valid
    CloudWatch dimension."""
    problem = _dimension_text_problem(name, MAX_DIMENSION_NAME_LENGTH)
    if problem is None and name.startswith(":"):
        problem = "it must not start with ':'"
    if problem is not None:
        raise _setting_error(setting, name, f"not a CloudWatch dimension name: {problem}")
    problem = _dimension_text_problem(value, MAX_DIMENSION_VALUE_LENGTH)
    if problem is not None:
        raise _setting_error(
            setting, value, f"not a CloudWatch dimension value of {name}: {problem}"
        )


def _escape(char: str) -> str:
    code = ord(char)
    if code <= 0xFF:
        return f"\\x{code:02x}"
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def clean_dimension_value(value: object, what: str) -> str:
    """``value`` as a valid dimension value: accents dropped (``téléchargement`` becomes
    ``telechargement``), other non-ASCII and control characters escaped (``\\u65e5``),
    at most 1024 characters; empty or only whitespace becomes ``unnamed``.
    A changed value is warned about once, naming ``what`` it is."""
    text = value if isinstance(value, str) else str(value)
    if _dimension_text_problem(text, MAX_DIMENSION_VALUE_LENGTH) is None:
        return text
    decomposed = unicodedata.normalize("NFKD", text)
    kept = "".join(c for c in decomposed if not unicodedata.combining(c))
    cleaned = "".join(c if " " <= c <= "~" else _escape(c) for c in kept)
    cleaned = cleaned[:MAX_DIMENSION_VALUE_LENGTH]
    if not cleaned.strip():
        cleaned = UNNAMED
    warn_once(
        (what, text),
        "tmpwarden monitor: %s %r is not a valid CloudWatch dimension value "
        "(1-1024 printable ASCII characters); it is reported as %r",
        what,
        text[:200],
        cleaned[:200],
    )
    return cleaned


def clean_metric_value(name: str, value: float) -> float | None:
    """``value`` as CloudWatch accepts it: None (to be left out, with a warning) when
    it is NaN or infinite; clamped to +-2^360 when beyond. Raises ConfigurationError
    when it is not a number at all."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ConfigurationError(
            f"the value of metric {name} must be a number, not {type(value).__name__}"
        )
    try:
        number = float(value)
    except OverflowError:  # an int beyond any float: beyond the range too
        number = 2 * MAX_METRIC_VALUE if value > 0 else -2 * MAX_METRIC_VALUE
    if not math.isfinite(number):
        warn_once(
            ("metric", name, repr(number)),
            "tmpwarden monitor: metric %s got %r; CloudWatch takes only finite numbers, "
            "so this value is left out",
            name,
            number,
        )
        return None
    if abs(number) > MAX_METRIC_VALUE:
        warn_once(
            ("metric-range", name),
            "tmpwarden monitor: metric %s got %g, beyond CloudWatch's range of +-2^360; "
            "it is reported as the limit",
            name,
            number,
        )
        return math.copysign(MAX_METRIC_VALUE, number)
    return number


def _cap(value: object, text_limit: int, item_limit: int) -> object:
    """A JSON-safe copy of ``value``: strings cut to ``text_limit`` characters (lone
    surrogates replaced), lists of anything but numbers to ``item_limit`` items,
    non-finite floats as None, anything else as its capped ``str``."""
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, str):
        text = value.encode("utf-8", "replace").decode("utf-8")
        if len(text) > text_limit:
            dropped = len(text) - text_limit
            text = f"{text[:text_limit]}...[{dropped} more characters]"
        return text
    if isinstance(value, Mapping):
        return {
            str(_cap(str(k), text_limit, item_limit)): _cap(v, text_limit, item_limit)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        if all(isinstance(item, int | float) for item in value):
            # Numbers that go with the metrics (offsets): never cut, at most 100 anyway.
            return [_cap(item, text_limit, item_limit) for item in value]
        return [_cap(item, text_limit, item_limit) for item in value[:item_limit]]
    return _cap(str(value), text_limit, item_limit)


BUDGET_STEPS = ((MAX_PROPERTY_TEXT, MAX_PROPERTY_ITEMS), (256, 20), (64, 5), (16, 1))


def fit_lines(
    properties: Mapping[str, object],
    keep: frozenset[str],
    serialize: Callable[[Mapping[str, object]], list[str]],
) -> list[str]:
    """Serialize with ``properties`` capped so every line is at most MAX_EVENT_BYTES
    (with its newline): first strings to 1024 characters and lists to 50 items (a
    cut list ``X`` gets ``XOmitted``, the count left out), then tighter caps, at last
    only the ``keep`` properties. Metrics are never touched."""
    lines: list[str] = []
    for text_limit, item_limit in BUDGET_STEPS:
        capped = {str(k): _cap(v, text_limit, item_limit) for k, v in properties.items()}
        for key, value in properties.items():
            cut = capped[str(key)]
            if isinstance(value, list | tuple) and isinstance(cut, list) and len(cut) < len(value):
                capped[f"{key}Omitted"] = len(value) - len(cut)
        lines = serialize(capped)
        if all(len(line.encode()) < MAX_EVENT_BYTES for line in lines):
            return lines
    kept = {str(k): _cap(v, 16, 1) for k, v in properties.items() if k in keep}
    return serialize(kept)
