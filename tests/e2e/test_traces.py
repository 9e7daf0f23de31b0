"""Traces across the real services, exported over OTLP/gRPC to a receiver the test runs.

The stack runs with the variables the chart sets when ``otel.enabled`` (OTLP over gRPC to
an endpoint, a sampler, resource attributes); the receiver is a real
``opentelemetry.proto`` TraceService on a grpc.aio server. Orders sent with a
``traceparent`` of the test's own must come back as one trace: the order service's span
of the command, its look-up and its wait for matching, matching's span of the command,
the commit and the publish, and market data's application of the batch, each the child of
the one before it (as the services document), and the JSON log line of a refused order
carries the trace and span ids of that order's span.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from e2e_helpers import meta
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2 as tpb
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc as tpb_grpc
from opentelemetry.proto.trace.v1 import trace_pb2

from exchange.common.v1 import common_pb2 as cpb
from exchange.order.v1 import order_pb2 as opb
from exchange.order.v1 import order_pb2_grpc as opb_grpc
from exchange_dev.embedded import free_port
from exchange_dev.stack import Stack

pytestmark = pytest.mark.e2e

SYMBOL = "BTC-USD"
RECEIVER_PORT = free_port()
# What the chart's configmap sets when otel.enabled (deploy/k8s/templates/_helpers.tpl),
# with every trace sampled and a short export delay; JSON logs at DEBUG, so that a
# refused order's line can be read back.
STACK_ENV = {
    "OTEL_TRACES_EXPORTER": "otlp",
    "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{RECEIVER_PORT}",
    "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
    "OTEL_TRACES_SAMPLER": "always_on",
    "OTEL_BSP_SCHEDULE_DELAY": "100",
    "OTEL_RESOURCE_ATTRIBUTES": "deployment.environment.name=e2e",
    "EXCHANGE_LOG_FORMAT": "json",
    "EXCHANGE_LOG_LEVEL": "DEBUG",
}
ORDER_SPAN = "exchange.order.v1.OrderService/CreateOrder"
ENTRY_SPAN = "exchange.order.v1.OrderService/OrderEntry create"
EXECUTE_SPAN = "exchange.matching.v1.MatchingService/Execute"
HOLD_SPAN = "hold"
SERVER, CLIENT = trace_pb2.Span.SPAN_KIND_SERVER, trace_pb2.Span.SPAN_KIND_CLIENT


def _value(any_value: Any) -> Any:
    which = any_value.WhichOneof("value")
    return getattr(any_value, which) if which else None


class Receiver(tpb_grpc.TraceServiceServicer):
    """An OTLP trace receiver: every span exported to it, with its service's resource."""

    def __init__(self) -> None:
        self.spans: list[tuple[dict[str, Any], trace_pb2.Span]] = []

    async def Export(self, request: tpb.ExportTraceServiceRequest,
                     context: grpc.aio.ServicerContext) -> tpb.ExportTraceServiceResponse:
        for resource_spans in request.resource_spans:
            resource = {a.key: _value(a.value) for a in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                self.spans.extend((resource, span) for span in scope_spans.spans)
        return tpb.ExportTraceServiceResponse()

    def trace(self, trace_id: bytes) -> list[tuple[dict[str, Any], trace_pb2.Span]]:
        return [(r, s) for r, s in self.spans if s.trace_id == trace_id]

    async def wait_for(self, trace_id: bytes, names: list[str],
                       timeout: float = 30.0) -> dict[str, list[tuple[dict, trace_pb2.Span]]]:
        """The spans of ``trace_id`` by name, once every one of ``names`` is among them
        (as many times as it is listed)."""
        deadline = time.monotonic() + timeout
        while True:
            by_name: dict[str, list[tuple[dict, trace_pb2.Span]]] = {}
            for resource, span in self.trace(trace_id):
                by_name.setdefault(span.name, []).append((resource, span))
            if all(len(by_name.get(n, ())) >= names.count(n) for n in names):
                return by_name
            if time.monotonic() > deadline:
                got = sorted((s.name, r.get("service.name")) for r, s in self.trace(trace_id))
                raise AssertionError(f"trace {trace_id.hex()}: expected spans {names}, "
                                     f"got {got}")
            await asyncio.sleep(0.1)


@pytest.fixture(scope="module", autouse=True)
async def receiver() -> AsyncIterator[Receiver]:
    """Started before the module's stack (autouse), on the port STACK_ENV names."""
    server = grpc.aio.server()
    servicer = Receiver()
    tpb_grpc.add_TraceServiceServicer_to_server(servicer, server)
    assert server.add_insecure_port(f"127.0.0.1:{RECEIVER_PORT}") == RECEIVER_PORT
    await server.start()
    yield servicer
    await server.stop(None)


def attributes(span: trace_pb2.Span) -> dict[str, Any]:
    return {a.key: _value(a.value) for a in span.attributes}


def new_trace() -> tuple[bytes, bytes, str]:
    """A trace id and a parent span id of the test's own, and their traceparent."""
    trace_id, span_id = secrets.token_bytes(16), secrets.token_bytes(8)
    return trace_id, span_id, f"00-{trace_id.hex()}-{span_id.hex()}-01"


def only(by_name: dict[str, list[tuple[dict, trace_pb2.Span]]], name: str,
         service: str) -> trace_pb2.Span:
    (found,) = by_name[name]
    resource, span = found
    assert resource.get("service.name") == service, (name, resource)
    assert resource.get("deployment.environment.name") == "e2e", resource
    return span


def check_consistent(stack: Stack, spans: list[tuple[dict, trace_pb2.Span]],
                     root_parent: bytes) -> None:
    """Every span's parent is the test's own span or another span of the trace, and no
    attribute names an account or carries an API key."""
    ids = {span.span_id for _, span in spans}
    for _, span in spans:
        assert span.parent_span_id in ids | {root_parent}, (span.name, span.parent_span_id)
        for key, value in attributes(span).items():
            assert "account" not in key, (span.name, key)
            assert not any(k in str(value) for k in stack.keys.values()), (span.name, key)


async def test_one_order_is_one_trace_across_the_services(module_stack: Stack,
                                                          receiver: Receiver) -> None:
    stack = module_stack
    trace_id, parent_id, traceparent = new_trace()
    async with grpc.aio.insecure_channel(stack.order_addr) as channel:
        answer = await opb_grpc.OrderServiceStub(channel).CreateOrder(
            opb.CreateOrderRequest(instrument=SYMBOL, side=cpb.SIDE_BUY,
                                   type=cpb.ORDER_TYPE_LIMIT,
                                   time_in_force=cpb.TIME_IN_FORCE_GTC, price="60000.00",
                                   quantity="0.0100", client_order_id="traced-1"),
            metadata=meta(stack, "alice", ("traceparent", traceparent)), timeout=10)
    order_id = answer.order.order_id

    by_name = await receiver.wait_for(trace_id, [
        ORDER_SPAN, HOLD_SPAN, EXECUTE_SPAN, "match", "journal commit", "publish",
        "apply"])

    # The order service: the call continues the test's span; the hold (with the
    # client_order_id look-up) and the wait for matching are its children.
    server = only(by_name, ORDER_SPAN, "order-service")
    assert server.parent_span_id == parent_id and server.kind == SERVER
    assert {"exchange.instrument": SYMBOL, "exchange.side": "BUY",
            "exchange.order_type": "LIMIT", "exchange.order_id": order_id,
            "rpc.grpc.status_code": 0}.items() <= attributes(server).items()
    hold = only(by_name, HOLD_SPAN, "order-service")
    assert hold.parent_span_id == server.span_id
    execute = only(by_name, EXECUTE_SPAN, "order-service")
    assert execute.parent_span_id == server.span_id and execute.kind == CLIENT
    assert attributes(execute)["exchange.order_id"] == order_id

    # Matching: the command (its traceparent), then the batch's commit and publish.
    match = only(by_name, "match", "matching-service")
    assert match.parent_span_id == execute.span_id and match.kind == SERVER
    assert {"exchange.instrument": SYMBOL, "exchange.command": "new_order",
            "exchange.order_id": order_id}.items() <= attributes(match).items()
    commit = only(by_name, "journal commit", "matching-service")
    assert commit.parent_span_id == match.span_id
    assert attributes(commit)["exchange.batch.commands"] == 1
    publish = only(by_name, "publish", "matching-service")
    assert publish.parent_span_id == commit.span_id

    # Market data: the published batch carried its commit's context.
    apply = only(by_name, "apply", "marketdata-service")
    assert apply.parent_span_id == commit.span_id
    assert attributes(apply)["exchange.sequence.last"] == \
        attributes(commit)["exchange.sequence.last"]

    check_consistent(stack, receiver.trace(trace_id), parent_id)


async def test_order_entry_commands_are_spans_and_a_refusal_logs_their_ids(
        module_stack: Stack, receiver: Receiver) -> None:
    stack = module_stack
    trace_id, parent_id, traceparent = new_trace()

    def create(coid: str, price: str) -> opb.OrderEntryCommand:
        return opb.OrderEntryCommand(create=opb.CreateOrderRequest(
            instrument=SYMBOL, side=cpb.SIDE_SELL, type=cpb.ORDER_TYPE_LIMIT,
            time_in_force=cpb.TIME_IN_FORCE_GTC, price=price, quantity="0.0100",
            client_order_id=coid))

    async with grpc.aio.insecure_channel(stack.order_addr) as channel:
        call = opb_grpc.OrderServiceStub(channel).OrderEntry(
            metadata=meta(stack, "bob", ("traceparent", traceparent)))
        # One placed, one refused by the order service (a price off the tick).
        await call.write(opb.OrderEntryRequest(commands=[
            create("entry-ok", "90000.00"), create("entry-bad", "90000.001")]))
        events: dict[str, opb.OrderEntryEvent] = {}
        while len(events) < 2:
            response = await asyncio.wait_for(call.read(), 10)
            assert response is not grpc.aio.EOF
            events.update((e.client_order_id, e) for e in response.events)
        await call.done_writing()
    placed = events["entry-ok"].order.order_id
    assert placed and events["entry-bad"].WhichOneof("result") == "error"

    by_name = await receiver.wait_for(trace_id, [ENTRY_SPAN, ENTRY_SPAN, EXECUTE_SPAN,
                                                 "match"])
    commands = {attributes(s).get("exchange.order_id", "refused"): s
                for _, s in by_name[ENTRY_SPAN]}
    assert set(commands) == {placed, "refused"}
    for span in commands.values():
        assert span.parent_span_id == parent_id and span.kind == SERVER
    assert {"exchange.error.reason": "PRICE_OFF_TICK",
            "rpc.grpc.status_code": grpc.StatusCode.INVALID_ARGUMENT.value[0]}.items() \
        <= attributes(commands["refused"]).items()
    (execute,) = [s for _, s in by_name[EXECUTE_SPAN]]
    assert execute.parent_span_id == commands[placed].span_id
    (match,) = [s for _, s in by_name["match"]]
    assert match.parent_span_id == execute.span_id
    check_consistent(stack, receiver.trace(trace_id), parent_id)

    # The refusal's DEBUG line carries the ids of the refused command's span.
    refused = commands["refused"]
    deadline = time.monotonic() + 10
    while True:
        lines = [json.loads(line) for line in
                 stack.log_paths["order"].read_text().splitlines() if line.startswith("{")]
        mine = [e for e in lines if e.get("trace_id") == trace_id.hex()]
        if mine or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.1)
    assert [(e["level"], e["span_id"]) for e in mine if "PRICE_OFF_TICK" in e["msg"]] == \
        [("DEBUG", refused.span_id.hex())], mine
    # Nothing about the placed order above DEBUG.
    assert not [e for e in mine if e["level"] != "DEBUG"], mine
