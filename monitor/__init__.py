"""tmpwarden's monitor: a sidecar thread that watches /tmp and memory inside any Lambda.

>>> from monitor import StorageMonitor, monitored
>>> @monitored
... def lambda_handler(event, context): ...
"""

from monitor.callbacks import CallbackRecord, MonitorEvent
from monitor.config import MonitorConfig
from monitor.decorator import monitored
from monitor.errors import ConfigurationError, TmpwardenError
from monitor.invocation import InvocationSummary, Peaks
from monitor.metrics import REGISTRY, Level, ProcessingState, Resource, StorageMetrics
from monitor.sidecar import StorageMonitor

__all__ = [
    "REGISTRY",
    "CallbackRecord",
    "ConfigurationError",
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
