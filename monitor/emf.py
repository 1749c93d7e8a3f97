"""CloudWatch Embedded Metric Format through aws-embedded-metrics.

Samples are aggregated into at most ``MAX_VALUES_PER_METRIC`` buckets per flush
(the maximum of each bucket: peaks are what matter for storage), so the log volume
does not grow with the sampling rate. Documents are built with the library's
``MetricsContext`` and ``LogSerializer`` directly, with namespace, dimensions and
timestamp set explicitly: nothing depends on the library's import-time
configuration, and it never probes EC2 metadata or an agent.
"""

from __future__ import annotations

import logging
import math
import os
import sys
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from aws_embedded_metrics.logger.metrics_context import MetricsContext
from aws_embedded_metrics.serializers.log_serializer import LogSerializer
from aws_embedded_metrics.storage_resolution import StorageResolution

from monitor import metrics as m
from monitor import records as r
from monitor.emf_rules import (
    check_dimension,
    check_namespace,
    clean_dimension_value,
    fit_lines,
    warn_once,
)
from monitor.errors import ConfigurationError
from monitor.metrics import FUNCTION_DIMENSION, PHASE_DIMENSION, MetricGroup, spec
from monitor.records import RecordKind
from monitor.sampler import Reading

if TYPE_CHECKING:
    from monitor.config import MonitorConfig

MAX_VALUES_PER_METRIC = 100
"""EMF's limit of values per metric per document (aws-embedded-metrics splits beyond)."""
MAX_DIMENSIONS_PER_SET = 30
"""CloudWatch's limit of dimensions per dimension set."""
MAX_TIME_TO_FULL = 3600.0
"""Predictions further out than this (a slow drift over an hour) are noise, not reported."""
KEPT_PROPERTIES = frozenset(
    {r.RECORD_KIND, r.REQUEST_ID, r.SAMPLE_START, r.SAMPLE_OFFSETS_MS}
    | {r.LEVEL, r.RESOURCE, r.CROSSING_TIME}
)
"""Properties kept when a document's properties do not fit a line even when capped."""

log = logging.getLogger("tmpwarden.monitor")


class LineSink(Protocol):
    """Where EMF lines go: one JSON document per line."""

    def write_line(self, line: str) -> None: ...


class StdoutSink:
    """Standard output, as Lambda's log capture expects: each line in one write."""

    _lock = threading.Lock()

    def write_line(self, line: str) -> None:
        data = (line + "\n").encode()
        with self._lock:
            try:
                fd = sys.stdout.fileno()
            except (AttributeError, OSError, ValueError):
                sys.stdout.write(line + "\n")
                sys.stdout.flush()
                return
            sys.stdout.flush()  # keep order with what was printed before
            os.write(fd, data)


@dataclass
class MemorySink:
    """Keeps lines in a list (for tests and for the report)."""

    lines: list[str] = field(default_factory=list)

    def write_line(self, line: str) -> None:
        self.lines.append(line)


class SampleBuffer:
    """Aggregates samples into buckets of ``bucket_seconds``, keeping each bucket's worst
    (most used, least available, most memory, soonest full).

    Buckets sit on a fixed grid from the first sample, each sample going to the
    nearest grid point, so clock jitter never merges or splits buckets.
    """

    def __init__(self, bucket_seconds: float) -> None:
        self.bucket_seconds = bucket_seconds
        self._origin = 0.0
        self._last_index = -1
        self._buckets: list[list[float]] = []  # [start, used, available, total, rss, ttf]

    def add(self, timestamp: float, reading: Reading, seconds_to_full: float | None = None) -> bool:
        """Aggregate one sample; True when it started a bucket that fills the buffer
        (MAX_VALUES_PER_METRIC buckets: a document's worth, time to flush)."""
        total, available, used, rss = reading
        ttf = math.inf if seconds_to_full is None else seconds_to_full
        buckets = self._buckets
        if not buckets:
            self._origin = timestamp
            self._last_index = -1
        index = round((timestamp - self._origin) / self.bucket_seconds)
        if index <= self._last_index:
            last = buckets[-1]
            if used > last[1]:
                last[1] = used
                last[3] = total
            last[2] = min(last[2], available)
            last[4] = max(last[4], rss)
            last[5] = min(last[5], ttf)
            return False
        self._last_index = index
        start = self._origin + index * self.bucket_seconds
        buckets.append([start, used, available, total, rss, ttf])
        return len(buckets) >= MAX_VALUES_PER_METRIC

    def __len__(self) -> int:
        return len(self._buckets)

    def take(self) -> list[list[float]]:
        buckets, self._buckets = self._buckets, []
        return buckets


def last_samples(
    history: Iterable[tuple[float, Reading]], until: float, window: float
) -> dict[str, object]:
    """The samples of the ``window`` seconds up to ``until`` (epoch seconds; ``history``
    ends there) as a level-change record's ``LastSamples*`` properties
    (:data:`monitor.records.LAST_SAMPLES`): at most MAX_VALUES_PER_METRIC buckets of
    ``window / 100`` seconds, each the worst its samples saw (as :class:`SampleBuffer`
    keeps them), oldest first; empty when no sample is in the window.

    ``history`` is (epoch seconds, reading) pairs, oldest first. The monitor passes the
    last 100 sample intervals, at most its flush interval, as ``window``: what an
    out-of-memory kill can take with it is the samples since the last flush, and 100
    buckets of one sample interval keep every sample of the climb. About 5 KB of JSON.
    """
    buffer = SampleBuffer(window / MAX_VALUES_PER_METRIC)
    for when, reading in history:
        if when >= until - window:  # a sample within the crossing's millisecond counts
            buffer.add(when, reading)
    buckets = buffer.take()[-MAX_VALUES_PER_METRIC:]
    if not buckets:
        return {}
    start = buckets[0][0]
    return {
        r.LAST_SAMPLES_START: round(start * 1000),
        r.LAST_SAMPLES_OFFSETS_MS: [round((b[0] - start) * 1000) for b in buckets],
        r.LAST_TMP_USED_BYTES: [int(b[1]) for b in buckets],
        r.LAST_TMP_AVAILABLE_BYTES: [int(b[2]) for b in buckets],
        r.LAST_MEMORY_USED_BYTES: [int(b[4]) for b in buckets],
    }


class EmfEmitter:
    """Builds and writes the monitor's EMF documents.

    The namespace and the dimensions are checked here (ConfigurationError naming the
    setting; see :mod:`monitor.emf_rules`). Each document is built and written on its
    own: one that cannot be (a bug, a failing sink) is logged and counted in
    :attr:`documents_failed`, and the others are still written. Property strings and
    lists are capped so that no line exceeds 256 KB; metrics are never dropped.
    """

    def __init__(
        self,
        sink: LineSink,
        *,
        namespace: str,
        function_name: str,
        extra_dimensions: Mapping[str, str] | None = None,
    ) -> None:
        self.sink = sink
        self.namespace = check_namespace(namespace)
        self.dimensions = {FUNCTION_DIMENSION: function_name, **(extra_dimensions or {})}
        if len(self.dimensions) + 1 > MAX_DIMENSIONS_PER_SET:
            raise ConfigurationError(
                f"at most {MAX_DIMENSIONS_PER_SET - 2} extra dimensions (CloudWatch allows "
                f"{MAX_DIMENSIONS_PER_SET} per metric, two are the monitor's own)"
            )
        for name, value in self.dimensions.items():
            setting = "function_name" if name == FUNCTION_DIMENSION else "extra_dimensions"
            check_dimension(name, value, setting)
        self.documents_failed = 0

    def emit_samples(
        self,
        buckets: Sequence[Sequence[float]],
        memory_limit: int,
        properties: Mapping[str, object],
    ) -> int:
        """Documents of sample arrays, each of at most MAX_VALUES_PER_METRIC buckets with its
        own SampleStart and offsets (so every line stands on its own); returns lines written."""
        written = 0
        for first in range(0, len(buckets), MAX_VALUES_PER_METRIC):
            batch = buckets[first : first + MAX_VALUES_PER_METRIC]
            try:
                written += self._emit_sample_batch(batch, memory_limit, properties)
            except Exception as exc:  # one batch's failure must not cost the next
                self._failed(MetricGroup.SAMPLES, exc)
        return written

    def _emit_sample_batch(
        self,
        buckets: Sequence[Sequence[float]],
        memory_limit: int,
        properties: Mapping[str, object],
    ) -> int:
        start = buckets[0][0]
        metrics: dict[str, list[float]] = {
            m.TMP_USED_BYTES: [int(b[1]) for b in buckets],
            m.TMP_AVAILABLE_BYTES: [int(b[2]) for b in buckets],
            m.TMP_USED_PERCENT: [round(100 * b[1] / b[3], 2) if b[3] else 100.0 for b in buckets],
            m.MEMORY_USED_BYTES: [int(b[4]) for b in buckets],
            m.MEMORY_USED_PERCENT: [
                round(100 * b[4] / memory_limit, 2) if memory_limit > 0 else 0.0 for b in buckets
            ],
        }
        offsets = [round((b[0] - start) * 1000) for b in buckets]
        extra: dict[str, object] = {}
        filling = [
            (offset, b[5])
            for offset, b in zip(offsets, buckets, strict=True)
            if b[5] <= MAX_TIME_TO_FULL
        ]
        if filling:
            metrics[m.TMP_TIME_TO_FULL_SECONDS] = [round(ttf, 1) for _, ttf in filling]
            extra[r.TIME_TO_FULL_OFFSETS_MS] = [offset for offset, _ in filling]
        return self._write(
            MetricGroup.SAMPLES,
            metrics,
            {
                **properties,
                **extra,
                r.RECORD_KIND: RecordKind.SAMPLES.value,
                r.SAMPLE_START: round(start * 1000),
                r.SAMPLE_OFFSETS_MS: offsets,
            },
            timestamp=start,
        )

    def emit_invocation(
        self, values: Mapping[str, float], properties: Mapping[str, object], timestamp: float
    ) -> int:
        """The end-of-invocation document: peaks, event counts, bytes freed."""
        return self._write(
            MetricGroup.INVOCATION,
            {name: [value] for name, value in values.items()},
            {**properties, r.RECORD_KIND: RecordKind.INVOCATION.value},
            timestamp=timestamp,
        )

    def emit_phases(
        self,
        durations_ms: Mapping[str, Sequence[float]],
        properties: Mapping[str, object],
        timestamp: float,
    ) -> int:
        """One document per phase: PhaseDuration with the Phase dimension (a name that is
        not a valid dimension value is cleaned, see :func:`clean_dimension_value`)."""
        by_dimension: dict[str, list[float]] = {}
        for phase, values in durations_ms.items():
            by_dimension.setdefault(clean_dimension_value(phase, "phase name"), []).extend(values)
        written = 0
        for phase, values in by_dimension.items():
            written += self._write(
                MetricGroup.PHASE,
                {m.PHASE_DURATION: [round(v, 3) for v in values]},
                {**properties, r.RECORD_KIND: RecordKind.PHASE.value},
                timestamp=timestamp,
                extra_dimensions={PHASE_DIMENSION: phase},
            )
        return written

    def emit_level_change(
        self,
        properties: Mapping[str, object],
        history: Iterable[tuple[float, Reading]],
        window: float,
    ) -> int:
        """A ``level_change`` document, written now: the crossing's ``properties`` (its
        :data:`~monitor.records.CROSSING_TIME` in epoch ms is the document's timestamp)
        and the samples of ``history`` in the ``window`` seconds before it
        (:func:`last_samples`), with no metric: the samples records carry the metrics,
        so nothing is counted twice in CloudWatch. Returns the lines written (1, or 0)."""
        crossed = properties[r.CROSSING_TIME]
        until = crossed / 1000 if isinstance(crossed, int | float) else 0.0
        return self._write(
            RecordKind.LEVEL_CHANGE,
            {},
            {
                **properties,
                **last_samples(history, until, window),
                r.RECORD_KIND: RecordKind.LEVEL_CHANGE.value,
            },
            timestamp=until,
        )

    def _write(
        self,
        group: MetricGroup | RecordKind,
        metrics: Mapping[str, Sequence[float]],
        properties: Mapping[str, object],
        *,
        timestamp: float,
        extra_dimensions: Mapping[str, str] | None = None,
    ) -> int:
        """Build and write one document (several lines if a metric has over 100 values);
        returns the lines written, 0 when it failed (logged, never raised)."""
        try:
            lines = self._serialize(group, metrics, properties, timestamp, extra_dimensions)
            for line in lines:
                self.sink.write_line(line)
        except Exception as exc:  # one document's failure must not cost another
            self._failed(group, exc)
            return 0
        return len(lines)

    def _failed(self, group: MetricGroup | RecordKind, exc: Exception) -> None:
        self.documents_failed += 1
        warn_once(
            ("emf-failure", group, type(exc).__name__),
            "tmpwarden monitor: an EMF %s document could not be written (%s: %s); "
            "the other documents are unaffected",
            group.value,
            type(exc).__name__,
            exc,
        )

    def _serialize(
        self,
        group: MetricGroup | RecordKind,
        metrics: Mapping[str, Sequence[float]],
        properties: Mapping[str, object],
        timestamp: float,
        extra_dimensions: Mapping[str, str] | None,
    ) -> list[str]:
        context = MetricsContext.empty()
        context.namespace = self.namespace
        dimensions = {**self.dimensions, **(extra_dimensions or {})}
        context.set_dimensions([{k: str(v) for k, v in dimensions.items()}], use_default=False)
        context.meta["Timestamp"] = round(timestamp * 1000)
        for name, values in metrics.items():
            definition = spec(name)
            if definition.group is not group:
                raise ValueError(f"metric {name} belongs to the {definition.group.value} group")
            resolution = (
                StorageResolution.HIGH if definition.high_resolution else StorageResolution.STANDARD
            )
            first, *rest = values
            # put_metric validates name, value, unit and resolution once; the other
            # values are this module's own finite numbers, appended as the library does.
            context.put_metric(name, first, definition.unit, resolution)
            metric = context.metrics[name]
            for value in rest:
                if not math.isfinite(value):
                    raise ValueError(f"metric {name} has the non-finite value {value}")
                metric.add_value(value)
        own = {k: v for k, v in properties.items() if k not in metrics and k not in dimensions}

        def serialize(capped: Mapping[str, object]) -> list[str]:
            context.properties = dict(capped)
            return LogSerializer.serialize(context)

        return fit_lines(own, KEPT_PROPERTIES, serialize)


def context_properties(
    config: MonitorConfig, request_id: str | None, tmp_total: int | None, memory_limit: int
) -> dict[str, object]:
    """The request and the limits, stated on every sample, invocation and level-change
    record (``tmp_total``: ``/tmp``'s size in bytes as last read; None before a sample)."""
    return {
        r.REQUEST_ID: request_id,
        r.TMP_PATH: config.path,
        r.TMP_TOTAL_BYTES: tmp_total,
        r.MEMORY_LIMIT_BYTES: memory_limit,
        r.TMP_WARNING_PERCENT: round(config.tmp_warning * 100, 2),
        r.TMP_CRITICAL_PERCENT: round(config.tmp_critical * 100, 2),
        r.MEMORY_WARNING_PERCENT: round(config.memory_warning * 100, 2),
        r.MEMORY_CRITICAL_PERCENT: round(config.memory_critical * 100, 2),
    }


def last_word_window(config: MonitorConfig) -> float:
    """Seconds of samples a level-change record carries: a flush interval's worth, at
    most MAX_VALUES_PER_METRIC samples."""
    return min(config.flush_interval, config.sample_interval * MAX_VALUES_PER_METRIC)
