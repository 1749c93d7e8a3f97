"""``@monitored``: wrap a Lambda handler so every invocation is watched and flushed.

Put it closest to the function (innermost), below Powertools' decorators: its
end-of-invocation flush then happens before theirs, and its phase subsegments nest
in Powertools' handler subsegment.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import Callable
from typing import Any, TypeVar, overload

from monitor.attribution import RequestAttribution, TmpAttribution
from monitor.config import MonitorConfig
from monitor.metrics import PEAK_TMP_ATTRIBUTED_BYTES, TMP_ATTRIBUTED_BYTES
from monitor.sidecar import StorageMonitor

log = logging.getLogger("tmpwarden.monitor")

Handler = TypeVar("Handler", bound=Callable[..., Any])


@overload
def monitored(monitor: Handler) -> Handler: ...


@overload
def monitored(
    monitor: StorageMonitor | None = None, **settings: Any
) -> Callable[[Handler], Handler]: ...


def monitored(monitor: Any = None, **settings: Any) -> Any:
    """Decorate ``handler(event, context)``: start the monitor on the first invocation
    (it lives on across warm invocations), reset peaks per invocation, close phases
    and flush EMF at the end of each, whatever the handler did.

    ``@monitored``, ``@monitored()``, ``@monitored(mon)`` and
    ``@monitored(sample_interval=0.05)`` all work; settings are
    :class:`~monitor.config.MonitorConfig` fields, resolved over ``TMPWARDEN_*`` when the
    first invocation starts (an unknown one is a ConfigurationError then). On a Lambda
    Managed Instance the invocation record also gets ``TmpAttributedBytes`` and
    ``PeakTmpAttributedBytes``, the request's own growth of the shared ``/tmp`` (see
    :mod:`monitor.attribution`).
    """
    if callable(monitor) and not isinstance(monitor, StorageMonitor):
        return monitored()(monitor)

    def decorate(handler: Handler) -> Handler:
        holder: list[StorageMonitor | None] = [monitor]
        attributions: list[RequestAttribution] = []

        def current() -> StorageMonitor:
            created = holder[0]
            if created is None:
                created = holder[0] = StorageMonitor(MonitorConfig.resolve(settings))
            return created

        @functools.wraps(handler)
        def wrapper(event: Any, context: Any = None, *args: Any, **kwargs: Any) -> Any:
            mon = current()
            mon.begin_invocation(getattr(context, "aws_request_id", None))
            attribution = _attribution(mon, attributions)
            error: BaseException | None = None
            try:
                return handler(event, context, *args, **kwargs)
            except BaseException as exc:
                error = exc
                raise
            finally:
                try:
                    if attribution is not None:
                        with contextlib.suppress(OSError):  # /tmp unreadable: no figure
                            growth, peak = attribution.end()
                            mon.put_metric(TMP_ATTRIBUTED_BYTES, growth)
                            mon.put_metric(PEAK_TMP_ATTRIBUTED_BYTES, peak)
                    mon.end_invocation(error)
                except Exception:  # reporting must never change the handler's outcome
                    log.exception("tmpwarden monitor: end of invocation failed")

        wrapper.monitor = current  # type: ignore[attr-defined]
        return wrapper  # type: ignore[return-value]

    return decorate


def _attribution(
    monitor: StorageMonitor, attached: list[RequestAttribution]
) -> RequestAttribution | None:
    """On a Managed Instance (``/tmp`` shared with other processes), the request's own
    growth of ``/tmp`` (:mod:`monitor.attribution`), measured from now; else None.
    ``attached`` keeps the one attached to ``monitor``'s callbacks (made on first use)."""
    if not monitor.environment.shared:
        return None
    if not attached:
        tmp = TmpAttribution(monitor.config.path, monitor.cleanup_paths)
        attached.append(RequestAttribution(tmp).attach(monitor.add_callback))
    try:
        attached[0].begin()
    except OSError:
        log.warning("tmpwarden monitor: cannot read %s to attribute /tmp", monitor.config.path)
        return None
    return attached[0]
