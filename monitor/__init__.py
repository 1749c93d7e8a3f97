"""tmpwarden's monitor: a sidecar thread that watches /tmp and memory inside any Lambda.

>>> from monitor import StorageMonitor, monitored
>>> @monitored
... def lambda_handler(event, context): ...

This package depends on nothing of ``handler``; ``handler`` uses it as its shared kernel
(``monitor.errors``, ``monitor.units``). The offline report (``monitor.report``) needs
matplotlib and is not part of the Lambda layer.

``CallbackRecord`` and ``InvocationSummary`` are the former names of ``CallbackRun`` and
``InvocationRecord`` (the same classes; the names the EMF record schema uses, see
``monitor.records``).
"""

from monitor.callbacks import CallbackRun, MonitorEvent
from monitor.config import MonitorConfig
from monitor.decorator import monitored
from monitor.errors import ConfigurationError, TmpwardenError
from monitor.invocation import InvocationRecord, Peaks
from monitor.metrics import REGISTRY, Level, ProcessingState, Resource, StorageMetrics
from monitor.sidecar import StorageMonitor

CallbackRecord = CallbackRun
InvocationSummary = InvocationRecord

__all__ = [
    "REGISTRY",
    "CallbackRecord",
    "CallbackRun",
    "ConfigurationError",
    "InvocationRecord",
    "InvocationSummary",
    "Level",
    "MonitorConfig",
    "MonitorEvent",
    "Peaks",
    "ProcessingState",
    "Resource",
    "StorageMetrics",
    "StorageMonitor",
    "TmpwardenError",
    "monitored",
]
