"""Phase tracing behind a small interface, with an AWS X-Ray backend.

The X-Ray SDK reaches end of support on 2027-02-25; an OpenTelemetry backend only
has to implement :class:`PhaseTracer` to replace it, and no caller changes.
Spans are opened and closed on the calling thread (X-Ray's context is
thread-local); the sampling thread never touches tracing.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any, Protocol

log = logging.getLogger("tmpwarden.monitor")

ANNOTATION_NAMESPACE = "tmpwarden"
LAMBDA_TASK_ROOT_ENV = "LAMBDA_TASK_ROOT"
TRACE_ID_ENV = "_X_AMZN_TRACE_ID"
XRAY_ENABLED_ENV = "AWS_XRAY_SDK_ENABLED"


class TraceSpan(Protocol):
    """An open span for one phase."""

    def annotate(self, key: str, value: str | int | float | bool) -> None: ...

    def add_metadata(self, key: str, value: Mapping[str, Any]) -> None: ...

    def end(self, error: BaseException | None = None) -> None: ...


class PhaseTracer(Protocol):
    """Opens a span per phase."""

    def begin(self, name: str) -> TraceSpan: ...


class NoopSpan:
    """A span that records nothing."""

    def annotate(self, key: str, value: str | int | float | bool) -> None:
        pass

    def add_metadata(self, key: str, value: Mapping[str, Any]) -> None:
        pass

    def end(self, error: BaseException | None = None) -> None:
        pass


class NoopTracer:
    """Traces nothing (outside Lambda, or when tracing is off)."""

    def begin(self, name: str) -> TraceSpan:
        return NoopSpan()


class _XRaySpan:
    def __init__(self, recorder: Any, subsegment: Any) -> None:
        self._recorder = recorder
        self._subsegment = subsegment

    def annotate(self, key: str, value: str | int | float | bool) -> None:
        self._subsegment.put_annotation(key, value)

    def add_metadata(self, key: str, value: Mapping[str, Any]) -> None:
        self._subsegment.put_metadata(key, dict(value), ANNOTATION_NAMESPACE)

    def end(self, error: BaseException | None = None) -> None:
        if error is not None:
            self._subsegment.add_exception(error, [], remote=False)
        self._recorder.end_subsegment()


class XRayTracer:
    """A subsegment per phase through aws-xray-sdk's global recorder.

    Under Lambda's facade segment (which may not be annotated) the subsegments
    carry the annotations; under Powertools' handler subsegment they nest in it.
    """

    def __init__(self, recorder: Any | None = None) -> None:
        if recorder is None:
            from aws_xray_sdk.core import xray_recorder  # noqa: PLC0415 - import only when tracing

            recorder = xray_recorder
        self._recorder = recorder

    def begin(self, name: str) -> TraceSpan:
        try:
            subsegment = self._recorder.begin_subsegment(f"tmpwarden.{name}")
        except Exception:  # no segment to attach to: trace nothing, never fail the work
            log.debug("no X-Ray segment for phase %s", name, exc_info=True)
            subsegment = None
        if subsegment is None:
            return NoopSpan()
        return _XRaySpan(self._recorder, subsegment)


def default_tracer(mode: str, environ: Mapping[str, str] | None = None) -> PhaseTracer:
    """``on``: X-Ray; ``off``: nothing; ``auto``: X-Ray inside Lambda when the SDK is enabled."""
    env = os.environ if environ is None else environ
    if mode == "off":
        return NoopTracer()
    in_lambda = bool(env.get(LAMBDA_TASK_ROOT_ENV))
    enabled = env.get(XRAY_ENABLED_ENV, "true").lower() != "false"
    if mode == "on" or (in_lambda and enabled):
        return XRayTracer()
    return NoopTracer()
