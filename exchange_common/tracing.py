"""Traces: OpenTelemetry, set up from the standard ``OTEL_*`` variables, off by default.

Off (``OTEL_TRACES_EXPORTER`` unset or ``none``, or ``OTEL_SDK_DISABLED=true``) costs
nothing: the SDK is not imported, no tracer provider is installed, and ``ENABLED`` stays
False. Every hot path checks that one module-level boolean before it does any span or
context work, so an order makes no span, not even a no-op one.

On, ``setup`` installs the SDK's tracer provider and leaves the configuration to the SDK
wherever it has one: the sampler from ``OTEL_TRACES_SAMPLER`` / ``_ARG`` (the
TracerProvider reads them), the resource from ``OTEL_SERVICE_NAME`` and
``OTEL_RESOURCE_ATTRIBUTES`` (``Resource.create``; the service's own name when neither
names it), batching from ``OTEL_BSP_*``, and one exporter per name in
``OTEL_TRACES_EXPORTER``, found among the exporters' entry points as the SDK's own
auto-configuration finds them (``otlp`` is OTLP over gRPC, or over HTTP when
``OTEL_EXPORTER_OTLP[_TRACES]_PROTOCOL`` says ``http/protobuf`` and that exporter is
installed; ``console`` prints spans); each exporter reads its own variables
(``OTEL_EXPORTER_OTLP_ENDPOINT``, ``_HEADERS``, ``_TIMEOUT``...). ``shutdown`` flushes
what is left when the service stops.

Why spans by hand rather than the gRPC instrumentors: the unit of work is an order
command, not a call. An OrderEntry message carries many commands, and one ``Execute``
stream carries the commands of many orders to a matching pod for as long as both live;
an instrumentor makes one span per call, which for those streams is one span per session.
So the context travels per command instead: a unary order call continues the caller's
``traceparent`` metadata; an OrderEntry command continues its stream's; the internal
``Command`` message carries the order service's ``traceparent`` to matching, and the
published ``MarketDataBatch`` carries the context of the commit that made it to market
data.

Work done once for many commands (a journal commit, a Redis publish, market data's
application of several batches) is one span, not one per command: its parent is the
first sampled command's span, so that command's trace runs end to end (order service,
matching, commit, publish, market data), and it links to the other commands' spans
(``batch_span``). A span has one parent; a span per command for one shared commit would
multiply the cost by the batch size for the same information.

Span attributes stay bounded and carry no secrets: instrument, side, order type, order
id, counts and sequences; never an account id or an API key.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any

import grpc
from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.trace import (
    Link,
    NonRecordingSpan,
    Span,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
)

from exchange.common.v1 import common_pb2 as cpb

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider

log = logging.getLogger(__name__)

# The switch every hot path reads: True once ``setup`` installed a tracer provider.
ENABLED = False

SERVER, CLIENT, INTERNAL = SpanKind.SERVER, SpanKind.CLIENT, SpanKind.INTERNAL
PRODUCER, CONSUMER = SpanKind.PRODUCER, SpanKind.CONSUMER

# The parent of a span that starts a trace of its own (whatever span is current).
NEW_TRACE = otel_context.Context()
# A span of work shared by many commands links to at most this many of them (the SDK's
# default limit of links per span, OTEL_SPAN_LINK_COUNT_LIMIT).
MAX_LINKS = 128
# Seconds ``shutdown`` waits for the last spans to be exported.
SHUTDOWN_TIMEOUT = 5.0
# gRPC status codes that are the server's fault (the span's status is ERROR); a refusal
# of the caller's request (bad input, a halted market, a rate limit) is not an error of
# the service (OpenTelemetry's semantic conventions for gRPC servers).
SERVER_FAULTS = frozenset({"UNKNOWN", "DEADLINE_EXCEEDED", "UNIMPLEMENTED", "INTERNAL",
                           "UNAVAILABLE", "DATA_LOSS"})

_EXPORTER_GROUP = "opentelemetry_traces_exporter"
_OTLP_BY_PROTOCOL = {"grpc": "otlp_proto_grpc", "http/protobuf": "otlp_proto_http"}

_tracer: trace.Tracer = trace.NoOpTracer()
_provider: TracerProvider | None = None


def _env(name: str) -> str:
    return os.environ.get(name, "").strip()


def exporter_names() -> list[str]:
    """The exporters ``OTEL_TRACES_EXPORTER`` asks for (none: tracing is off)."""
    if _env("OTEL_SDK_DISABLED").lower() == "true":
        return []
    names = [n.strip().lower() for n in _env("OTEL_TRACES_EXPORTER").split(",")]
    return [n for n in names if n and n != "none"]


def _exporter(name: str) -> Any:
    """An exporter by its ``OTEL_TRACES_EXPORTER`` name, from the installed entry points."""
    if name == "otlp":
        protocol = (_env("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
                    or _env("OTEL_EXPORTER_OTLP_PROTOCOL") or "grpc")
        if protocol not in _OTLP_BY_PROTOCOL:
            raise SystemExit(f"OTEL_EXPORTER_OTLP_PROTOCOL={protocol!r}: traces are exported "
                             "with OTLP over grpc (or http/protobuf where its exporter is "
                             "installed)")
        name = _OTLP_BY_PROTOCOL[protocol]
    found = list(entry_points(group=_EXPORTER_GROUP, name=name))
    if not found:
        installed = sorted(e.name for e in entry_points(group=_EXPORTER_GROUP))
        raise SystemExit(f"OTEL_TRACES_EXPORTER: no trace exporter {name!r} is installed "
                         f"(installed: {', '.join(installed)}; 'otlp' is OTLP over gRPC)")
    return found[0].load()()


def setup(service_name: str) -> None:
    """Install the SDK's tracer provider when ``OTEL_TRACES_EXPORTER`` names an exporter
    (``service_name``: the resource's service.name unless the variables name one). Call it
    once, at start, before any server is built; a bad setting stops the process."""
    global ENABLED, _tracer, _provider
    names = exporter_names()
    if not names:
        return
    # The SDK only now: a service that does not trace never imports it.
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    exporters = [_exporter(name) for name in names]
    resource = Resource.create()
    if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: service_name}))
    # Flushed by ``shutdown`` when the service stops, not at interpreter exit (where an
    # unreachable collector would hold the exit for the exporter's whole timeout).
    provider = TracerProvider(resource=resource, shutdown_on_exit=False)
    for exporter in exporters:
        provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    _provider = provider
    _tracer = provider.get_tracer("exchange")
    ENABLED = True
    log.info("traces on: %s to %s, sampler %s", ", ".join(names),
             _env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or _env("OTEL_EXPORTER_OTLP_ENDPOINT")
             or "the exporter's default endpoint", provider.sampler.get_description())


async def shutdown(timeout: float = SHUTDOWN_TIMEOUT) -> None:
    """Export the spans still queued and stop the exporters (at most ``timeout`` seconds:
    a collector that does not answer must not hold the stop)."""
    provider = _provider
    if provider is None:
        return
    loop = asyncio.get_running_loop()
    done = loop.create_future()

    def finished() -> None:
        if not done.done():
            done.set_result(None)

    def run() -> None:
        try:
            provider.shutdown()
        finally:
            with contextlib.suppress(RuntimeError):  # the loop is gone: nobody waits
                loop.call_soon_threadsafe(finished)

    # A daemon thread rather than the loop's executor, whose threads the interpreter
    # waits for at exit.
    threading.Thread(target=run, name="otel-shutdown", daemon=True).start()
    try:
        await asyncio.wait_for(done, timeout)
    except TimeoutError:
        log.warning("traces: the last spans were not exported within %.0f s", timeout)


# -- spans --------------------------------------------------------------------------------

Parent = Span | SpanContext | otel_context.Context | None


def _context(parent: Parent) -> otel_context.Context | None:
    """The context a span of ``parent`` starts in (None: the current one)."""
    if parent is None or isinstance(parent, otel_context.Context):
        return parent
    if isinstance(parent, SpanContext):
        parent = NonRecordingSpan(parent)
    return trace.set_span_in_context(parent)


def start(name: str, parent: Parent = None, kind: SpanKind = INTERNAL,
          attributes: Mapping[str, Any] | None = None,
          links: Sequence[Link] | None = None, start_time: int | None = None) -> Span:
    """A span started now (or at ``start_time``, ns since the epoch) as a child of
    ``parent``: a span, a span context, a context, or None for the current context."""
    return _tracer.start_span(name, _context(parent), kind, attributes, links,
                              start_time=start_time)


def child(name: str, parent: Span | None = None, kind: SpanKind = INTERNAL,
          attributes: Mapping[str, Any] | None = None) -> Span:
    """A child of ``parent`` (None: the current span), or, when ``parent`` is not
    recorded (sampled out), ``parent`` itself: nothing below an unsampled span is
    recorded, and the work of making spans nobody keeps is saved. Ending that is a no-op,
    and its context still carries the sampling decision onwards."""
    if parent is None:
        parent = trace.get_current_span()
    if not parent.is_recording():
        return parent
    return start(name, parent, kind, attributes)


def current_span() -> Span:
    return trace.get_current_span()


def attach(span: Span) -> object:
    """Make ``span`` the current span; ``detach`` the token returned to undo it."""
    return otel_context.attach(trace.set_span_in_context(span))


def detach(token: object) -> None:
    otel_context.detach(token)  # type: ignore[arg-type]


@contextlib.contextmanager
def current(span: Span) -> Iterator[Span]:
    """``span`` is the current span inside (not ended on the way out)."""
    token = attach(span)
    try:
        yield span
    finally:
        detach(token)


def end(span: Span, error: BaseException | None = None) -> None:
    """End ``span``; with ``error`` (an exception that is not an answer the caller was
    meant to get), its status is ERROR."""
    if error is not None and span.is_recording():
        if isinstance(error, asyncio.CancelledError):
            span.set_attribute("exchange.cancelled", True)
        else:
            span.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {error}"))
    span.end()


def answered(span: Span, code: str, reason: str = "", message: str = "") -> None:
    """Record on ``span`` the gRPC status code (its name) a command was answered with,
    and the refusal's reason; ERROR when the code says the service failed."""
    if not span.is_recording():
        return
    span.set_attribute("rpc.grpc.status_code", _CODE_NUMBERS.get(code, 2))
    if reason:
        span.set_attribute("exchange.error.reason", reason)
    if code in SERVER_FAULTS:
        span.set_status(Status(StatusCode.ERROR, f"{code} {reason}: {message}"))


def refused(code: str, reason: str, message: str) -> None:
    """The current span's command was refused (``exchange_common.errors`` calls it where
    a refusal becomes its answer)."""
    answered(trace.get_current_span(), code, reason, message)


def batch_span(name: str, items: Iterable[Span | SpanContext | None], kind: SpanKind,
               attributes: Mapping[str, Any] | None = None) -> Span:
    """One span of work done for many traced items at once (a commit, a publish): its
    parent is the first sampled item, so that item's trace holds it, and it links to the
    other sampled ones (up to MAX_LINKS). With no sampled item it follows the first
    item's decision (or starts a trace of its own when there is none)."""
    first: SpanContext | None = None
    sampled: list[SpanContext] = []
    for item in items:
        if item is None:
            continue
        ctx = item if isinstance(item, SpanContext) else item.get_span_context()
        if not ctx.is_valid:
            continue
        if first is None:
            first = ctx
        if ctx.trace_flags.sampled:
            sampled.append(ctx)
    parent = sampled[0] if sampled else first
    links = [Link(ctx) for ctx in sampled[1:MAX_LINKS + 1]]
    context = _context(parent) if parent is not None else NEW_TRACE
    return _tracer.start_span(name, context, kind, attributes, links or None)


def span_until(fut: asyncio.Future[Any], name: str, parents: Iterable[Span | None],
               attributes: Mapping[str, Any] | None = None) -> None:
    """A child span of each of ``parents`` (None: the current span) from now until
    ``fut`` is done (ERROR when it failed): the wait for work that answers many callers
    at once, as each of them saw it."""
    spans = [child(name, parent, INTERNAL, attributes) for parent in parents]

    def done(f: asyncio.Future[Any]) -> None:
        err = None if f.cancelled() else f.exception()
        for span in spans:
            end(span, err)

    fut.add_done_callback(done)


# -- context on the wire ------------------------------------------------------------------

def from_metadata(metadata: Iterable[tuple[str, str | bytes]] | None) -> otel_context.Context:
    """The caller's context from gRPC call metadata (``traceparent``, ``tracestate``; the
    propagators of OTEL_PROPAGATORS, W3C trace context by default); an empty context
    (a new trace) when it carries none."""
    carrier = {key: value for key, value in metadata or ()
               if isinstance(value, str)}
    return propagate.extract(carrier, context=otel_context.Context())


def traceparent(item: Span | SpanContext | None) -> str:
    """The W3C ``traceparent`` of a span ("" for none or an invalid one)."""
    if item is None:
        return ""
    ctx = item if isinstance(item, SpanContext) else item.get_span_context()
    if not ctx.is_valid:
        return ""
    return f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{int(ctx.trace_flags):02x}"


def parse_traceparent(value: str) -> SpanContext | None:
    """The remote span context of a W3C ``traceparent`` (None when empty or malformed:
    the span it would have parented starts a trace of its own)."""
    parts = value.split("-")
    if len(parts) != 4 or parts[0] != "00" or len(parts[1]) != 32 or len(parts[2]) != 16 \
            or len(parts[3]) != 2:
        return None
    try:
        trace_id, span_id, flags = int(parts[1], 16), int(parts[2], 16), int(parts[3], 16)
    except ValueError:
        return None
    if not trace_id or not span_id:
        return None
    return SpanContext(trace_id, span_id, is_remote=True, trace_flags=TraceFlags(flags & 1))


# -- what the services put on their spans -------------------------------------------------

_CODE_NUMBERS = {code.name: code.value[0] for code in grpc.StatusCode}
_SIDES = {v: n.removeprefix("SIDE_") for n, v in cpb.Side.items() if v}
_TYPES = {v: n.removeprefix("ORDER_TYPE_") for n, v in cpb.OrderType.items() if v}


def order_attributes(instrument: str, side: int = 0, order_type: int = 0) -> dict[str, Any]:
    """An order's span attributes: its instrument, and its side and type by name."""
    attributes: dict[str, Any] = {"exchange.instrument": instrument}
    if side:
        attributes["exchange.side"] = _SIDES.get(side, str(side))
    if order_type:
        attributes["exchange.order_type"] = _TYPES.get(order_type, str(order_type))
    return attributes


def server_span(handle: Callable[[Any, Any], Awaitable[Any]],
                full_method: str) -> Callable[[Any, Any], Awaitable[Any]]:
    """``handle`` (a unary handler: request, context) run in a SERVER span named
    ``full_method`` ("package.Service/Method") that continues the caller's context
    (``from_metadata``) and is the current span meanwhile, so that the handler's own
    spans are its children and its log lines carry its ids. The span ends with the
    call's status code. Only built when tracing is on (``exchange_common.handlers``)."""
    service, _, method = full_method.rpartition("/")
    base = {"rpc.system": "grpc", "rpc.service": service, "rpc.method": method}

    async def traced(request: Any, context: Any) -> Any:
        parent = from_metadata(context.invocation_metadata())
        span = _tracer.start_span(full_method, parent, SERVER, base)
        token = otel_context.attach(trace.set_span_in_context(span, parent))
        try:
            response = await handle(request, context)
        except BaseException as err:
            code = context.code()
            name = (code.name if code is not None
                    else "CANCELLED" if isinstance(err, asyncio.CancelledError) else "UNKNOWN")
            answered(span, name, message=str(context.details() or ""))
            raise
        else:
            answered(span, "OK")
            return response
        finally:
            otel_context.detach(token)
            span.end()

    return traced
