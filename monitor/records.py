"""The EMF record schema: every kind of record the monitor writes and every property name.

The monitor writes through these names (:mod:`monitor.emf`, :mod:`monitor.invocation`,
:mod:`monitor.sidecar`), the offline report reads through them
(:mod:`monitor.report.timeline`), and ``deploy/`` holds the saved Logs Insights queries
and the dashboard's log widgets against them (``python -m deploy.sync --check``), so a
rename here fails that check instead of silently emptying a query.

Spelling: EMF properties are PascalCase, as metric and dimension names are. A field
that the handler's JSON log lines carry too (the request id, the phase) is spelled the
same way there, so one Logs Insights query reads both without ``coalesce``. Log-only
fields are snake_case.

One record kind, one name: the classes that hold a record in memory carry the kind's
name (:class:`~monitor.invocation.LevelCrossing`, :class:`~monitor.invocation.PhaseSpan`,
:class:`~monitor.callbacks.CallbackRun`, :class:`~monitor.invocation.InvocationRecord`) on
the writing side and on the reading side.
"""

from __future__ import annotations

import enum
import re
from typing import Final

from monitor.metrics import (
    CLASSIFICATION_DIMENSION,
    FUNCTION_DIMENSION,
    PHASE_DIMENSION,
    REGISTRY,
)

RECORD_KIND: Final = "TmpwardenRecord"
"""The property naming a document's kind; its presence marks a tmpwarden document."""


class RecordKind(enum.StrEnum):
    """The documents the monitor writes (the value of :data:`RECORD_KIND`)."""

    SAMPLES = "samples"
    """A batch of up to 100 sample buckets (flushed every flush interval)."""
    INVOCATION = "invocation"
    """The end-of-invocation record: peaks, counts, the processing state, the lists below."""
    PHASE = "phase"
    """One phase's durations, with the ``Phase`` dimension."""
    LEVEL_CHANGE = "level_change"
    """One level crossing, written the moment it happens with the samples before it (the
    last word before an out-of-memory kill takes the unflushed samples; no metrics)."""
    INCIDENT = "incident"
    """An invocation that died (error, timeout, crash), written by the external extension
    (``monitor.extension``) with its last samples and a Classification; one ``Incidents``
    count with the ``Classification`` dimension."""


# -- context: on every document (and, spelled the same, on the handler's log lines) -------
REQUEST_ID: Final = "RequestId"
PHASE: Final = PHASE_DIMENSION
"""The phase: the dimension of phase records, the processing state's current phase on the
invocation record, and the ``Phase`` field of the handler's log lines."""
FUNCTION_NAME: Final = FUNCTION_DIMENSION

# -- limits the samples and the invocation record state ---------------------------------
TMP_PATH: Final = "TmpPath"
TMP_TOTAL_BYTES: Final = "TmpTotalBytes"
MEMORY_LIMIT_BYTES: Final = "MemoryLimitBytes"
TMP_WARNING_PERCENT: Final = "TmpWarningPercent"
TMP_CRITICAL_PERCENT: Final = "TmpCriticalPercent"
MEMORY_WARNING_PERCENT: Final = "MemoryWarningPercent"
MEMORY_CRITICAL_PERCENT: Final = "MemoryCriticalPercent"
LIMIT_PROPERTIES: Final = (
    TMP_PATH,
    TMP_TOTAL_BYTES,
    MEMORY_LIMIT_BYTES,
    TMP_WARNING_PERCENT,
    TMP_CRITICAL_PERCENT,
    MEMORY_WARNING_PERCENT,
    MEMORY_CRITICAL_PERCENT,
)

# -- a sample batch ------------------------------------------------------------------------
SAMPLE_START: Final = "SampleStart"
"""Epoch milliseconds of the batch's first bucket."""
SAMPLE_OFFSETS_MS: Final = "SampleOffsetsMs"
"""Each bucket's milliseconds after SampleStart, in the order of the metric values."""
TIME_TO_FULL_OFFSETS_MS: Final = "TimeToFullOffsetsMs"
"""The offsets of the buckets that have a TmpTimeToFullSeconds value."""

# -- the invocation record -----------------------------------------------------------------
INVOCATION_START: Final = "InvocationStart"
INVOCATION_END: Final = "InvocationEnd"
"""Epoch milliseconds."""
EVENTS: Final = "Events"
"""The level crossings (at most 50), each with :class:`CrossingField` fields."""
PHASES: Final = "Phases"
"""The finished phases (at most 50), each with :class:`PhaseField` fields."""
CALLBACKS: Final = "Callbacks"
"""The callback runs (at most 50), each with :class:`CallbackField` fields."""

MONITOR_CPU_SECONDS: Final = "MonitorCpuSeconds"
"""The monitor's own cost: CPU seconds its sampling thread used during the invocation
(the thread's CPU clock, ``pthread_getcpuclockid``); samples taken from the caller's
thread (phase boundaries, ``sample_now``) are in the caller's CPU time."""
SAMPLES_TAKEN: Final = "SamplesTaken"
"""Samples the monitor took during the invocation (the thread's and ``sample_now``'s)."""

# -- a level change: the crossing, and the samples before it ------------------------------
LEVEL: Final = "Level"
"""warning, predicted_full or critical."""
RESOURCE: Final = "Resource"
"""tmp or memory."""
LEVEL_PERCENT: Final = "LevelPercent"
"""The resource's use at the crossing, percent of its limit."""
SECONDS_TO_FULL: Final = "SecondsToFull"
"""The predicted seconds until ``/tmp`` is full at the crossing (null when not filling)."""
CROSSING_TIME: Final = "CrossingTime"
"""Epoch milliseconds of the sample that crossed."""
LAST_SAMPLES_START: Final = "LastSamplesStart"
"""Epoch milliseconds of the first of the last samples before the crossing."""
LAST_SAMPLES_OFFSETS_MS: Final = "LastSamplesOffsetsMs"
"""Each of the last samples' milliseconds after LastSamplesStart; the lists below follow."""
LAST_TMP_USED_BYTES: Final = "LastTmpUsedBytes"
LAST_TMP_AVAILABLE_BYTES: Final = "LastTmpAvailableBytes"
LAST_MEMORY_USED_BYTES: Final = "LastMemoryUsedBytes"
LAST_SAMPLES: Final = (
    LAST_SAMPLES_START,
    LAST_SAMPLES_OFFSETS_MS,
    LAST_TMP_USED_BYTES,
    LAST_TMP_AVAILABLE_BYTES,
    LAST_MEMORY_USED_BYTES,
)

# -- an incident: what the external extension saw when the invocation died -------------
CLASSIFICATION: Final = CLASSIFICATION_DIMENSION
"""out_of_memory, timeout, tmp_full or crash (the dimension of the Incidents count)."""
REASON: Final = "Reason"
"""One sentence: which evidence gave the classification."""
STATUS: Final = "Status"
"""The Telemetry API's status of the invocation (platform.runtimeDone / platform.report:
success, error, failure, timeout), null when only a SHUTDOWN event told."""
ERROR_TYPE: Final = "ErrorType"
"""The Telemetry API's errorType (e.g. Runtime.OutOfMemory), null when none."""
SHUTDOWN_REASON: Final = "ShutdownReason"
"""The Extensions API SHUTDOWN event's shutdownReason (spindown, timeout, failure), null
when the invocation's report came first."""
MAX_MEMORY_USED_MB: Final = "MaxMemoryUsedMB"
MEMORY_SIZE_MB: Final = "MemorySizeMB"
"""platform.report's metrics.maxMemoryUsedMB and metrics.memorySizeMB (megabytes)."""
RUNTIME_PID: Final = "RuntimePid"
"""The process whose resident memory the extension sampled."""
STATE_TIME: Final = "StateTime"
"""Epoch ms when the in-process monitor last wrote its shared state (null: none read);
the record's Phase and Level come from that state."""
EXTENSION_CPU_SECONDS: Final = "ExtensionCpuSeconds"
EXTENSION_PEAK_RSS_BYTES: Final = "ExtensionPeakRssBytes"
"""The extension's own cost: its CPU seconds and peak resident memory since it started."""

# -- the processing state, on the invocation record (monitor.metrics.ProcessingState) ----
FILES_PROCESSED: Final = "FilesProcessed"
TOTAL_FILES: Final = "TotalFiles"
DISK_USAGE_BYTES: Final = "DiskUsageBytes"
CLEANUP_PERFORMED: Final = "CleanupPerformed"
ESTIMATED_REMAINING_SECONDS: Final = "EstimatedRemainingSeconds"
STATE_PROPERTIES: Final = {
    "current_phase": PHASE,
    "files_processed": FILES_PROCESSED,
    "total_files": TOTAL_FILES,
    "disk_usage": DISK_USAGE_BYTES,
    "cleanup_performed": CLEANUP_PERFORMED,
    "estimated_remaining": ESTIMATED_REMAINING_SECONDS,
}
"""ProcessingState field -> the invocation record's property."""


class CrossingField(enum.StrEnum):
    """The fields of one item of :data:`EVENTS` (a level crossing)."""

    TIME = "time"
    LEVEL = "level"
    RESOURCE = "resource"
    PERCENT = "percent"
    SECONDS_TO_FULL = "seconds_to_full"


class PhaseField(enum.StrEnum):
    """The fields of one item of :data:`PHASES` (a finished phase)."""

    NAME = "name"
    START = "start"
    END = "end"
    DURATION_MS = "duration_ms"
    PEAK_TMP_BYTES = "peak_tmp_bytes"
    PEAK_RSS_BYTES = "peak_rss_bytes"
    ERROR = "error"


class CallbackField(enum.StrEnum):
    """The fields of one item of :data:`CALLBACKS` (a callback run)."""

    NAME = "name"
    LEVEL = "level"
    RESOURCE = "resource"
    EVENT_TIME = "event_time"
    STARTED = "started"
    DURATION_MS = "duration_ms"
    TMP_FREED = "tmp_freed"
    MEMORY_FREED = "memory_freed"
    ERROR = "error"


LIST_FIELDS: Final[dict[str, frozenset[str]]] = {
    EVENTS: frozenset(CrossingField),
    PHASES: frozenset(PhaseField),
    CALLBACKS: frozenset(CallbackField),
}
"""Each list property and the field names of its items."""

PROPERTIES: Final[dict[RecordKind, frozenset[str]]] = {
    RecordKind.SAMPLES: frozenset(
        {RECORD_KIND, REQUEST_ID, FUNCTION_NAME, *LIMIT_PROPERTIES}
        | {SAMPLE_START, SAMPLE_OFFSETS_MS, TIME_TO_FULL_OFFSETS_MS}
    ),
    RecordKind.INVOCATION: frozenset(
        {RECORD_KIND, REQUEST_ID, FUNCTION_NAME, *LIMIT_PROPERTIES, *STATE_PROPERTIES.values()}
        | {INVOCATION_START, INVOCATION_END, EVENTS, PHASES, CALLBACKS}
        | {MONITOR_CPU_SECONDS, SAMPLES_TAKEN}
    ),
    RecordKind.PHASE: frozenset({RECORD_KIND, REQUEST_ID, FUNCTION_NAME, PHASE}),
    RecordKind.LEVEL_CHANGE: frozenset(
        {RECORD_KIND, REQUEST_ID, FUNCTION_NAME, PHASE, *LIMIT_PROPERTIES, *LAST_SAMPLES}
        | {LEVEL, RESOURCE, LEVEL_PERCENT, SECONDS_TO_FULL, CROSSING_TIME}
    ),
    RecordKind.INCIDENT: frozenset(
        {RECORD_KIND, REQUEST_ID, FUNCTION_NAME, PHASE, LEVEL, RESOURCE, *LAST_SAMPLES}
        | {TMP_PATH, TMP_TOTAL_BYTES, MEMORY_LIMIT_BYTES}
        | {CLASSIFICATION, REASON, STATUS, ERROR_TYPE, SHUTDOWN_REASON}
        | {MAX_MEMORY_USED_MB, MEMORY_SIZE_MB, RUNTIME_PID, STATE_TIME}
        | {EXTENSION_CPU_SECONDS, EXTENSION_PEAK_RSS_BYTES}
    ),
}
"""The properties (besides metric values) each kind of record carries."""

ALL_PROPERTIES: Final = frozenset().union(*PROPERTIES.values())

_LIST_ITEM = re.compile(r"(?P<list>[A-Za-z]+)\.(?P<index>\d+)\.(?P<field>\w+)")


def is_record_field(name: str) -> bool:
    """Whether ``name`` is a field of some tmpwarden record as Logs Insights sees it: a
    property, a metric of :data:`monitor.metrics.REGISTRY`, or an item field flattened
    the way Logs Insights flattens lists (``Callbacks.0.name``)."""
    if name in ALL_PROPERTIES or name in REGISTRY:
        return True
    item = _LIST_ITEM.fullmatch(name)
    return item is not None and item["field"] in LIST_FIELDS.get(item["list"], frozenset())


def suggestion(name: str) -> str | None:
    """The closest schema name to a misspelt ``name``, if any is close."""
    import difflib  # noqa: PLC0415 - only on the error path

    item = _LIST_ITEM.fullmatch(name)
    if item is not None and item["list"] in LIST_FIELDS:
        near = difflib.get_close_matches(item["field"], sorted(LIST_FIELDS[item["list"]]), 1)
        return f"{item['list']}.{item['index']}.{near[0]}" if near else None
    known = sorted(ALL_PROPERTIES | set(REGISTRY) | set(LIST_FIELDS))
    near = difflib.get_close_matches(name, known, 1)
    return near[0] if near else None
