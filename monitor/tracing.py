"""Phase tracing behind a small interface, with OpenTelemetry and AWS X-Ray backends.

OpenTelemetry comes first: the X-Ray SDK reaches end of support on 2027-02-25, and
AWS's own path forward is OpenTelemetry (the ADOT Lambda layer, which exports to X-Ray
among others). Both backends implement :class:`PhaseTracer`, so no caller changes; the
``tracing`` setting (:func:`default_tracer`) chooses. Spans are opened and closed on
the calling thread (X-Ray's context is thread-local, OpenTelemetry's is a context
variable); the sampling thread never touches tracing. Neither SDK is imported until a
tracer of its kind is made: the monitor works without them.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping
from typing import Any, Protocol

from monitor.errors import ConfigurationError

log = logging.getLogger("tmpwarden.monitor")

ANNOTATION_NAMESPACE = "tmpwarden"
LAMBDA_TASK_ROOT_ENV = "LAMBDA_TASK_ROOT"
TRACE_ID_ENV = "_X_AMZN_TRACE_ID"
XRAY_ENABLED_ENV = "AWS_XRAY_SDK_ENABLED"
TRACING_MODES = ("auto", "otel", "xray", "on", "off")
"""The ``tracing`` setting's values; ``on`` is the old name of ``xray``."""

EXEC_WRAPPER_ENV = "AWS_LAMBDA_EXEC_WRAPPER"
ADOT_WRAPPER_PREFIX = "/opt/otel"
"""The ADOT Lambda layers' wrapper scripts: ``/opt/otel-instrument`` (Python, and the
optimized AWSOpenTelemetryDistro layers), ``/opt/otel-handler``, ``/opt/otel-proxy-handler``,
``/opt/otel-stream-handler``, ``/opt/otel-sqs-handler`` (aws-otel.github.io, Lambda)."""
OTEL_SDK_DISABLED_ENV = "OTEL_SDK_DISABLED"
OTEL_TRACES_EXPORTER_ENV = "OTEL_TRACES_EXPORTER"
OTEL_ENDPOINT_ENVS = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
"""OpenTelemetry's SDK environment variables (opentelemetry.io, SDK configuration)."""
OTEL_INSTRUMENTATION = "tmpwarden.monitor"
XRAY_ANNOTATIONS_ATTRIBUTE = "aws.xray.annotations"
"""The span attribute listing the attributes X-Ray keeps as (searchable) annotations
rather than metadata, when ADOT or a collector exports the spans to X-Ray (AWS X-Ray
Developer Guide, migrating to OpenTelemetry)."""


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


class _OTelSpan:
    """One phase's OpenTelemetry span, current (so nested phases and the work's own spans
    nest under it) until it ends. Annotations are attributes listed in
    ``aws.xray.annotations``; metadata is flattened to ``<key>.<field>`` attributes."""

    def __init__(self, span: Any, token: Any) -> None:
        self._span = span
        self._token = token
        self._annotations: list[str] = []

    def annotate(self, key: str, value: str | int | float | bool) -> None:
        self._span.set_attribute(key, value)
        if key not in self._annotations:
            self._annotations.append(key)

    def add_metadata(self, key: str, value: Mapping[str, Any]) -> None:
        for field, item in value.items():
            if isinstance(item, str | int | float | bool):
                self._span.set_attribute(f"{key}.{field}", item)

    def end(self, error: BaseException | None = None) -> None:
        from opentelemetry import context  # noqa: PLC0415 - imported with the tracer
        from opentelemetry.trace import StatusCode  # noqa: PLC0415

        span = self._span
        if self._annotations:
            span.set_attribute(XRAY_ANNOTATIONS_ATTRIBUTE, list(self._annotations))
        if error is not None:
            span.record_exception(error)
            span.set_status(StatusCode.ERROR, f"{type(error).__name__}: {error}")
        try:
            span.end()
        finally:
            context.detach(self._token)


class OTelTracer:
    """A span per phase (``tmpwarden.<phase>``) through the OpenTelemetry API, under the
    current span if any (the ADOT layer's invocation span, or the application's).

    ``tracer``: an OpenTelemetry ``Tracer``; by default the global tracer provider's
    (the ADOT layer's or the application's), resolved at each span, so a provider set
    after the monitor was made is still used. Needs ``opentelemetry-api``
    (``pip install tmpwarden[otel]``); without it, a ConfigurationError.
    """

    def __init__(self, tracer: Any | None = None) -> None:
        try:
            from opentelemetry import trace  # noqa: PLC0415 - import only when tracing
        except ImportError as exc:
            raise ConfigurationError(
                "tracing=otel needs the OpenTelemetry API: pip install 'tmpwarden[otel]' "
                "(or opentelemetry-api), or set TMPWARDEN_TRACING to xray or off"
            ) from exc
        self._tracer = tracer if tracer is not None else trace.get_tracer(OTEL_INSTRUMENTATION)

    def begin(self, name: str) -> TraceSpan:
        from opentelemetry import context, trace  # noqa: PLC0415 - imported in __init__

        try:
            span = self._tracer.start_span(f"{ANNOTATION_NAMESPACE}.{name}")
            token = context.attach(trace.set_span_in_context(span))
        except Exception:  # a broken provider: trace nothing, never fail the work
            log.debug("no OpenTelemetry span for phase %s", name, exc_info=True)
            return NoopSpan()
        return _OTelSpan(span, token)


def otel_configured(environ: Mapping[str, str] | None = None) -> bool:
    """Whether OpenTelemetry tracing is configured for this process.

    Not when ``OTEL_SDK_DISABLED=true`` or ``OTEL_TRACES_EXPORTER=none``. Otherwise yes
    when the ADOT layer's wrapper runs the function (``AWS_LAMBDA_EXEC_WRAPPER`` under
    ``/opt/otel``), when ``OTEL_TRACES_EXPORTER`` or an OTLP endpoint
    (``OTEL_EXPORTER_OTLP_ENDPOINT``, ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``) is set, or
    when the process has already set a global tracer provider of its own. Imports nothing.
    """
    env = os.environ if environ is None else environ
    exporter = env.get(OTEL_TRACES_EXPORTER_ENV, "").strip().lower()
    if env.get(OTEL_SDK_DISABLED_ENV, "").strip().lower() == "true" or exporter == "none":
        return False
    if env.get(EXEC_WRAPPER_ENV, "").startswith(ADOT_WRAPPER_PREFIX) or exporter:
        return True
    if any(env.get(name, "").strip() for name in OTEL_ENDPOINT_ENVS):
        return True
    trace = sys.modules.get("opentelemetry.trace")
    if trace is None:
        return False
    provider = trace.get_tracer_provider()
    return not isinstance(provider, trace.ProxyTracerProvider | trace.NoOpTracerProvider)


def _otel_importable() -> bool:
    try:
        import opentelemetry.trace  # noqa: F401, PLC0415 - only asks whether it is installed
    except ImportError:
        return False
    return True


def default_tracer(mode: str, environ: Mapping[str, str] | None = None) -> PhaseTracer:
    """The tracer the ``tracing`` setting names (``environ``: where the variables are read).

    ``otel``: OpenTelemetry; ``xray`` (or its old name ``on``): the X-Ray SDK; ``off``:
    nothing. ``auto`` (the default): OpenTelemetry when it is configured
    (:func:`otel_configured`) and ``opentelemetry-api`` is installed, else X-Ray inside
    Lambda (``LAMBDA_TASK_ROOT`` set) unless ``AWS_XRAY_SDK_ENABLED=false``, else nothing.
    """
    env = os.environ if environ is None else environ
    if mode == "off":
        return NoopTracer()
    if mode == "otel":
        return OTelTracer()
    if mode in ("xray", "on"):
        return XRayTracer()
    if otel_configured(env):
        if _otel_importable():
            return OTelTracer()
        log.warning(
            "tmpwarden monitor: OpenTelemetry is configured but opentelemetry-api is not "
            "installed (pip install 'tmpwarden[otel]'); phases are not traced with it"
        )
    in_lambda = bool(env.get(LAMBDA_TASK_ROOT_ENV))
    enabled = env.get(XRAY_ENABLED_ENV, "true").lower() != "false"
    if in_lambda and enabled:
        return XRayTracer()
    return NoopTracer()
