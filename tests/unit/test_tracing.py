"""exchange_common.tracing: off installs nothing, on is configured by the OTEL_* variables
through the SDK, and the pieces the services build their traces with.

``setup`` runs in a fresh interpreter (as a service's start does): a process has one
global tracer provider, and the test's own must stay untouched.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
from opentelemetry.trace import SpanContext, TraceFlags

from exchange_common import tracing

# Start as a service does, then say what is installed.
PROBE = """
import json, sys
from exchange_common import tracing
from opentelemetry import trace
tracing.setup("order-service")
provider = trace.get_tracer_provider()
out = {"enabled": tracing.ENABLED, "provider": type(provider).__module__ + "." +
       type(provider).__name__, "sdk_imported": "opentelemetry.sdk" in sys.modules}
if tracing.ENABLED:
    out["resource"] = dict(provider.resource.attributes)
    out["sampler"] = provider.sampler.get_description()
print(json.dumps(out, default=str))
"""


def probe(**env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    return subprocess.run([sys.executable, "-c", PROBE], env={**clean, **env},
                          capture_output=True, text=True, timeout=60)


def installed(**env: str) -> dict:
    proc = probe(**env)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


@pytest.mark.parametrize("env", [
    {},
    {"OTEL_TRACES_EXPORTER": "none"},
    {"OTEL_TRACES_EXPORTER": " None "},
    {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_SDK_DISABLED": "true"},
], ids=["unset", "none", "None", "sdk-disabled"])
def test_off_installs_no_sdk_tracer_provider(env: dict[str, str]) -> None:
    assert installed(**env) == {"enabled": False,
                                "provider": "opentelemetry.trace.ProxyTracerProvider",
                                "sdk_imported": False}


def test_on_the_sdk_reads_the_sampler_and_the_resource_from_the_variables() -> None:
    got = installed(OTEL_TRACES_EXPORTER="console", OTEL_TRACES_SAMPLER="traceidratio",
                    OTEL_TRACES_SAMPLER_ARG="0.25",
                    OTEL_RESOURCE_ATTRIBUTES="k8s.pod.name=order-0,service.namespace=exchange")
    assert got["enabled"] is True and got["sdk_imported"] is True
    assert got["provider"] == "opentelemetry.sdk.trace.TracerProvider"
    assert got["sampler"] == "TraceIdRatioBased{0.25}"
    assert {"service.name": "order-service", "k8s.pod.name": "order-0",
            "service.namespace": "exchange"}.items() <= got["resource"].items()
    # The variables name the service: they win over the service's own default.
    named = installed(OTEL_TRACES_EXPORTER="console", OTEL_SERVICE_NAME="orders-eu")
    assert named["resource"]["service.name"] == "orders-eu"
    assert named["sampler"].startswith("ParentBased{root:AlwaysOnSampler")  # the default


@pytest.mark.parametrize("env,message", [
    ({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"},
     "OTEL_EXPORTER_OTLP_PROTOCOL='http/json'"),
    ({"OTEL_TRACES_EXPORTER": "zipkin"}, "no trace exporter 'zipkin' is installed"),
])
def test_a_setting_it_cannot_honour_stops_the_service(env: dict[str, str],
                                                      message: str) -> None:
    proc = probe(**env)
    assert proc.returncode != 0 and message in proc.stderr, proc.stderr


def test_traceparent_round_trip_and_malformed_values() -> None:
    ctx = SpanContext(0x0AF7651916CD43DD8448EB211C80319C, 0xB7AD6B7169203331, is_remote=False,
                      trace_flags=TraceFlags(1))
    value = tracing.traceparent(ctx)
    assert value == "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    parsed = tracing.parse_traceparent(value)
    assert parsed is not None and parsed.is_remote
    assert (parsed.trace_id, parsed.span_id, parsed.trace_flags.sampled) == (
        ctx.trace_id, ctx.span_id, True)
    assert tracing.traceparent(None) == ""
    for bad in ["", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331",
                "00-00000000000000000000000000000000-b7ad6b7169203331-01",
                "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",
                "01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
                "00-0af7651916cd43dd8448eb211c80319z-b7ad6b7169203331-01"]:
        assert tracing.parse_traceparent(bad) is None, bad


def test_metadata_carries_the_callers_context() -> None:
    metadata = (("x-api-key", "secret"),
                ("traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
                ("x-bin", b"\x00"))
    span = trace.get_current_span(tracing.from_metadata(metadata))
    assert span.get_span_context().span_id == 0xB7AD6B7169203331
    empty = trace.get_current_span(tracing.from_metadata((("x-api-key", "k"),)))
    assert not empty.get_span_context().is_valid


@pytest.fixture
def spans(monkeypatch: pytest.MonkeyPatch) -> InMemorySpanExporter:
    """tracing's spans go to memory (a provider of the test's own, not the global one)."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider(sampler=ParentBased(TraceIdRatioBased(1.0)),
                              shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    monkeypatch.setattr(tracing, "_tracer", provider.get_tracer("test"))
    return exporter


def _ctx(n: int, sampled: bool) -> SpanContext:
    return SpanContext(n, n, is_remote=True, trace_flags=TraceFlags(int(sampled)))


def test_a_batch_span_is_the_child_of_the_first_sampled_item_and_links_the_others(
        spans: InMemorySpanExporter) -> None:
    items = [None, _ctx(1, False), _ctx(2, True), _ctx(3, True), _ctx(4, True)]
    tracing.batch_span("commit", items, tracing.INTERNAL).end()
    (span,) = spans.get_finished_spans()
    assert span.parent is not None and span.parent.span_id == 2
    assert span.context.trace_id == 2
    assert [link.context.span_id for link in span.links] == [3, 4]


def test_a_batch_span_follows_the_items_decision_or_starts_a_trace(
        spans: InMemorySpanExporter) -> None:
    # Every item sampled out: so is the span (parent-based sampling).
    dropped = tracing.batch_span("commit", [_ctx(1, False), _ctx(2, False)],
                                 tracing.INTERNAL)
    assert not dropped.is_recording() and dropped.get_span_context().trace_id == 1
    dropped.end()
    # No item traced (a status change alone): a trace of its own.
    tracing.batch_span("commit", [], tracing.INTERNAL).end()
    (root,) = spans.get_finished_spans()
    assert root.parent is None


def test_children_of_a_sampled_out_span_cost_nothing(spans: InMemorySpanExporter) -> None:
    parent = tracing.start("order", _ctx(7, False))
    assert not parent.is_recording()
    assert tracing.child("look-up", parent) is parent
    recorded = tracing.start("order", _ctx(8, True))
    child = tracing.child("look-up", recorded)
    assert child is not recorded and child.is_recording()
    child.end()
    recorded.end()
    assert [s.name for s in spans.get_finished_spans()] == ["look-up", "order"]
