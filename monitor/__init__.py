"""tmpwarden's monitor: a sidecar thread that watches /tmp and memory inside any Lambda.

>>> from monitor import StorageMonitor, monitored
>>> @monitored
... def lambda_handler(event, context): ...

This package depends on nothing of ``handler``; ``handler`` uses it as its shared kernel
(``monitor.errors``, ``monitor.units``). The offline report (``monitor.report``) needs
matplotlib and is not part of the Lambda layer.

The names below are imported on first use (PEP 562 ``__getattr__``), so importing a
small part (``monitor.records``, the external extension ``monitor.extension``) does not
load the sidecar and its dependencies: the extension stays under 30 MiB resident.

``CallbackRecord`` and ``InvocationSummary`` are the former names of ``CallbackRun`` and
``InvocationRecord`` (the same classes; the names the EMF record schema uses, see
``monitor.records``).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from monitor.callbacks import CallbackRun, MonitorEvent
    from monitor.config import MonitorConfig
    from monitor.decorator import monitored
    from monitor.errors import ConfigurationError, TmpwardenError
    from monitor.invocation import InvocationRecord, Peaks
    from monitor.metrics import REGISTRY, Level, ProcessingState, Resource, StorageMetrics
    from monitor.sidecar import StorageMonitor

    CallbackRecord = CallbackRun
    InvocationSummary = InvocationRecord

_EXPORTS: dict[str, tuple[str, str]] = {
    "CallbackRun": ("monitor.callbacks", "CallbackRun"),
    "CallbackRecord": ("monitor.callbacks", "CallbackRun"),
    "MonitorEvent": ("monitor.callbacks", "MonitorEvent"),
    "MonitorConfig": ("monitor.config", "MonitorConfig"),
    "monitored": ("monitor.decorator", "monitored"),
    "ConfigurationError": ("monitor.errors", "ConfigurationError"),
    "TmpwardenError": ("monitor.errors", "TmpwardenError"),
    "InvocationRecord": ("monitor.invocation", "InvocationRecord"),
    "InvocationSummary": ("monitor.invocation", "InvocationRecord"),
    "Peaks": ("monitor.invocation", "Peaks"),
    "REGISTRY": ("monitor.metrics", "REGISTRY"),
    "Level": ("monitor.metrics", "Level"),
    "ProcessingState": ("monitor.metrics", "ProcessingState"),
    "Resource": ("monitor.metrics", "Resource"),
    "StorageMetrics": ("monitor.metrics", "StorageMetrics"),
    "StorageMonitor": ("monitor.sidecar", "StorageMonitor"),
}


def __getattr__(name: str) -> object:
    """Import an exported name on first use (and keep it, so this runs once per name)."""
    try:
        module, attribute = _EXPORTS[name]
    except KeyError:
        raise AttributeError(f"module 'monitor' has no attribute {name!r}") from None
    value = getattr(importlib.import_module(module), attribute)
    globals()[name] = value
    return value


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
