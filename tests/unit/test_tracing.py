"""Phase tracing: OpenTelemetry first (spans captured by the SDK's in-memory exporter),
X-Ray as the fallback, and the ``auto`` rule that chooses between them (issue 11)."""

from __future__ import annotations

import sys
from collections.abc import Iterator, Mapping
from typing import Any

import opentelemetry.trace
import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from monitor.config import MonitorConfig
from monitor.emf import MemorySink
from monitor.errors import ConfigurationError
from monitor.tracing import (
    XRAY_ANNOTATIONS_ATTRIBUTE,
    NoopTracer,
    OTelTracer,
    PhaseTracer,
    XRayTracer,
    default_tracer,
)
from tests.fakes import MIB, FakeSystem

ANNOTATED = ("phase", "peak_tmp_bytes", "peak_rss_bytes")


@pytest.fixture
def otel() -> Iterator[tuple[TracerProvider, InMemorySpanExporter]]:
    """A provider of its own (the global one is set once per process): spans in memory."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider, exporter
    provider.shutdown()


def _by_name(exporter: InMemorySpanExporter) -> dict[str, ReadableSpan]:
    spans = exporter.get_finished_spans()
    names = [span.name for span in spans]
    assert len(names) == len(set(names)), f"one span per phase, got {names}"
    return {span.name: span for span in spans}


def test_a_span_per_phase_with_the_x_ray_backends_attributes_nested_under_the_current_span(
    otel: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    provider, exporter = otel
    fake = FakeSystem()
    monitor = fake.monitor(MemorySink(), tracer=OTelTracer(provider.get_tracer("test")))
    monitor.begin_invocation("req-otel")
    with provider.get_tracer("test").start_as_current_span("handler") as handler:
        with monitor.phase("download"):
            fake.fill_fraction(0.4)
            fake.rss = 30 * MIB
            monitor.sample_now()
            fake.fill_fraction(0.2)
        with monitor.phase("extract"), monitor.phase("verify"):
            fake.advance(0.1)
            monitor.sample_now()
        with pytest.raises(ValueError, match="bad member"), monitor.phase("compress"):
            raise ValueError("bad member")
    record = monitor.end_invocation()

    spans = _by_name(exporter)
    assert set(spans) == {
        "handler",
        "tmpwarden.download",
        "tmpwarden.extract",
        "tmpwarden.verify",
        "tmpwarden.compress",
    }
    phases = {phase.name: phase for phase in record.phases}
    for name, phase in phases.items():
        attributes: dict[str, Any] = dict(spans[f"tmpwarden.{name}"].attributes or {})
        assert attributes["phase"] == name
        assert attributes["peak_tmp_bytes"] == phase.peaks.tmp_used
        assert attributes["peak_rss_bytes"] == phase.peaks.memory_used
        assert tuple(attributes[XRAY_ANNOTATIONS_ATTRIBUTE]) == ANNOTATED
        assert attributes["storage_start.used_space"] <= attributes["storage_end.used_space"]
        assert "storage_start.memory_limit" in attributes
    download = dict(spans["tmpwarden.download"].attributes or {})
    assert download["peak_tmp_bytes"] == 40 * MIB  # the peak, not the end (20 MiB)
    assert download["peak_rss_bytes"] == 30 * MIB

    handler_id = handler.get_span_context().span_id
    parents = {name: span.parent.span_id if span.parent else None for name, span in spans.items()}
    assert parents["tmpwarden.download"] == handler_id
    assert parents["tmpwarden.extract"] == handler_id
    assert parents["tmpwarden.verify"] == spans["tmpwarden.extract"].context.span_id
    assert parents["tmpwarden.compress"] == handler_id
    failed = spans["tmpwarden.compress"]
    assert failed.status.status_code is StatusCode.ERROR
    assert failed.status.description == "ValueError: bad member"
    assert [event.name for event in failed.events] == ["exception"]
    assert opentelemetry.trace.get_current_span() is opentelemetry.trace.INVALID_SPAN


def test_without_a_current_span_phases_are_root_spans(
    otel: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    provider, exporter = otel
    monitor = FakeSystem().monitor(tracer=OTelTracer(provider.get_tracer("test")))
    with monitor:
        with monitor.phase("download"):
            pass
        with monitor.phase("upload"):
            pass
    spans = _by_name(exporter)
    assert set(spans) == {"tmpwarden.download", "tmpwarden.upload"}
    assert all(span.parent is None for span in spans.values())
    assert len({span.context.trace_id for span in spans.values()}) == 2


IN_LAMBDA = {"LAMBDA_TASK_ROOT": "/var/task"}
ADOT = {"AWS_LAMBDA_EXEC_WRAPPER": "/opt/otel-instrument"}
OTLP = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}


@pytest.mark.parametrize(
    ("mode", "environ", "chosen"),
    [
        ("auto", {}, NoopTracer),
        ("auto", IN_LAMBDA, XRayTracer),
        ("auto", IN_LAMBDA | {"AWS_XRAY_SDK_ENABLED": "false"}, NoopTracer),
        ("auto", ADOT, OTelTracer),
        ("auto", IN_LAMBDA | ADOT, OTelTracer),  # OpenTelemetry first
        ("auto", IN_LAMBDA | {"AWS_LAMBDA_EXEC_WRAPPER": "/opt/otel-handler"}, OTelTracer),
        ("auto", IN_LAMBDA | {"AWS_LAMBDA_EXEC_WRAPPER": "/opt/other-wrapper"}, XRayTracer),
        ("auto", OTLP, OTelTracer),
        ("auto", {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:4318"}, OTelTracer),
        ("auto", {"OTEL_TRACES_EXPORTER": "otlp"}, OTelTracer),
        ("auto", IN_LAMBDA | ADOT | {"OTEL_TRACES_EXPORTER": "none"}, XRayTracer),
        ("auto", IN_LAMBDA | OTLP | {"OTEL_SDK_DISABLED": "true"}, XRayTracer),
        ("otel", {}, OTelTracer),
        ("xray", IN_LAMBDA | ADOT, XRayTracer),
        ("on", {}, XRayTracer),  # the old name of xray
        ("off", IN_LAMBDA | ADOT, NoopTracer),
    ],
)
def test_the_tracing_setting_chooses_the_backend(
    mode: str, environ: Mapping[str, str], chosen: type[PhaseTracer]
) -> None:
    assert type(default_tracer(mode, environ)) is chosen


def test_auto_picks_opentelemetry_when_the_process_set_a_tracer_provider(
    otel: tuple[TracerProvider, InMemorySpanExporter], monkeypatch: pytest.MonkeyPatch
) -> None:
    provider, _ = otel
    assert type(default_tracer("auto", IN_LAMBDA)) is XRayTracer
    monkeypatch.setattr(opentelemetry.trace, "get_tracer_provider", lambda: provider)
    assert type(default_tracer("auto", IN_LAMBDA)) is OTelTracer


def test_without_opentelemetry_installed_auto_falls_back_and_otel_is_one_clear_error(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    for name in [n for n in sys.modules if n == "opentelemetry" or n.startswith("opentelemetry.")]:
        monkeypatch.setitem(sys.modules, name, None)
    assert type(default_tracer("auto", IN_LAMBDA | ADOT)) is XRayTracer
    assert "opentelemetry-api is not installed" in caplog.text
    assert type(default_tracer("auto", ADOT)) is NoopTracer
    with pytest.raises(ConfigurationError, match=r"tmpwarden\[otel\]"):
        default_tracer("otel", {})
    # the monitor itself works without it, OpenTelemetry configured or not
    fake = FakeSystem()
    monitor = fake.monitor(tracing="auto", environ=ADOT)
    monitor.begin_invocation("req-no-otel")
    with monitor.phase("extract"):
        fake.fill_fraction(0.1)
    assert [phase.name for phase in monitor.end_invocation().phases] == ["extract"]


def test_the_setting_accepts_otel_and_xray_and_names_its_values() -> None:
    assert MonitorConfig.resolve(environ={"TMPWARDEN_TRACING": "OTel"}).tracing == "otel"
    assert MonitorConfig.resolve(tracing="xray", environ={}).tracing == "xray"
    with pytest.raises(ConfigurationError, match="auto, otel, xray, on, off"):
        MonitorConfig.resolve(tracing="jaeger", environ={})
