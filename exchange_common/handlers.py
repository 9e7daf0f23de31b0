"""Method handlers of a gRPC service, built from its proto service descriptor, that
survive request bodies which are not valid protobuf.

gRPC deserializes a request before the handler runs; the generated
``add_*Servicer_to_server`` functions use ``FromString``, whose ``DecodeError``
gRPC answers with UNKNOWN and the exception's text. Here the deserializer never
raises: a body that does not parse becomes a ``MalformedRequest`` (an
``InvalidArgument`` with reason ``MALFORMED_REQUEST``), and the handler answers
it with that status before the servicer sees anything:

- unary request: the call ends with INVALID_ARGUMENT / MALFORMED_REQUEST;
- request stream: iterating the requests raises the ``MalformedRequest`` at the
  bad message (the servicer's ``grpc_errors`` ends the call with it), unless the
  servicer method is decorated with ``malformed_messages_in_stream``: then the
  iterator yields the ``MalformedRequest`` in the bad message's place, the
  servicer answers it and the stream goes on (the order-entry session).

``response_serializers`` replaces the serializer of named methods (market data
streams yield bytes serialized once for every subscriber). A streamed response is
serialized here rather than by gRPC, so that one over ``max_message_bytes`` (a bug:
gRPC would fail its write and log that like a client going away, see
``exchange_common.logs``) is logged at ERROR and ends the call with
RESOURCE_EXHAUSTED / RESPONSE_TOO_LARGE.

Every call that ends is counted by method and status code in the process's
metrics (``exchange_common.metrics``), once they are installed.

``traced`` unary methods run in a server span (``exchange_common.tracing.server_span``)
when tracing is on; with tracing off their handlers are exactly the untraced ones.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Collection, Mapping
from typing import Any

import grpc
from google.protobuf import message_factory
from google.protobuf.descriptor import MethodDescriptor, ServiceDescriptor

from exchange_common import metrics, tracing
from exchange_common.errors import InvalidArgument, ResourceExhausted

log = logging.getLogger(__name__)
_INLINE = "_exchange_malformed_in_stream"


class MalformedRequest(InvalidArgument):
    """A request body (or one message of a request stream) that is not valid protobuf."""

    def __init__(self, type_name: str) -> None:
        super().__init__(f"the request is not a valid {type_name} message",
                         reason="MALFORMED_REQUEST", metadata={"message_type": type_name})


def malformed_messages_in_stream(method: Callable[..., Any]) -> Callable[..., Any]:
    """Mark a client-streaming servicer method as answering bad messages itself: its
    request iterator yields a ``MalformedRequest`` where a message did not parse."""
    setattr(method, _INLINE, True)
    return method


def safe_deserializer(message_class: Any) -> Callable[[bytes], Any]:
    """``message_class.FromString`` that returns a ``MalformedRequest`` instead of raising."""
    from_string = message_class.FromString
    type_name = message_class.DESCRIPTOR.full_name

    def deserialize(data: bytes) -> Any:
        try:
            return from_string(data)
        except Exception:  # noqa: BLE001 - any parse failure is the client's malformed body
            return MalformedRequest(type_name)

    return deserialize


async def _checked(requests: AsyncIterator[Any]) -> AsyncIterator[Any]:
    async for request in requests:
        if type(request) is MalformedRequest:
            raise request
        yield request


async def _abort(context: grpc.aio.ServicerContext, err: MalformedRequest) -> None:
    await context.abort_with_status(err.to_status())


def _handled(method: str, context: grpc.aio.ServicerContext,
             err: BaseException | None) -> None:
    """Count a call that ended (``exchange_grpc_server_handled``): its status is the
    one the servicer set (an abort sets it too), else OK, CANCELLED when the client went
    away, UNKNOWN for an exception that escaped."""
    counted = metrics.common()
    if counted is None:
        return
    code = context.code()
    if code is None and err is not None:
        gone = isinstance(err, (asyncio.CancelledError, GeneratorExit))
        code = grpc.StatusCode.CANCELLED if gone else grpc.StatusCode.UNKNOWN
    counted.handled(method, metrics.status_name(code))


def _unary_unary(behavior: Callable[..., Any], method: str) -> Callable[..., Any]:
    async def handle(request: Any, context: grpc.aio.ServicerContext) -> Any:
        try:
            if type(request) is MalformedRequest:
                await _abort(context, request)
            response = await behavior(request, context)
        except BaseException as err:
            _handled(method, context, err)
            raise
        _handled(method, context, None)
        return response
    return handle


def _stream_unary(behavior: Callable[..., Any], method: str) -> Callable[..., Any]:
    inline = getattr(behavior, _INLINE, False)

    async def handle(requests: AsyncIterator[Any], context: grpc.aio.ServicerContext) -> Any:
        try:
            response = await behavior(requests if inline else _checked(requests), context)
        except BaseException as err:
            _handled(method, context, err)
            raise
        _handled(method, context, None)
        return response
    return handle


async def _too_large(context: grpc.aio.ServicerContext, method: MethodDescriptor,
                     size: int, limit: int) -> None:
    log.error("%s: a response of %d bytes is over the %d-byte message limit "
              "(EXCHANGE_MAX_MESSAGE_BYTES); ending the call", method.full_name, size, limit)
    await context.abort_with_status(ResourceExhausted(
        f"a response would be larger than the {limit}-byte message limit",
        reason="RESPONSE_TOO_LARGE").to_status())


def _unary_stream(behavior: Callable[..., Any], method: MethodDescriptor,
                  serialize: Callable[[Any], bytes], limit: int) -> Callable[..., Any]:
    async def handle(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
        try:
            if type(request) is MalformedRequest:
                await _abort(context, request)
            async for response in behavior(request, context):
                data = serialize(response)
                if len(data) > limit:
                    await _too_large(context, method, len(data), limit)
                yield data
        except BaseException as err:
            _handled(method.name, context, err)
            raise
        _handled(method.name, context, None)
    return handle


def _stream_stream(behavior: Callable[..., Any], method: MethodDescriptor,
                   serialize: Callable[[Any], bytes], limit: int) -> Callable[..., Any]:
    requests_of = (lambda requests: requests) if getattr(behavior, _INLINE, False) else _checked

    async def handle(requests: AsyncIterator[Any],
                     context: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
        try:
            async for response in behavior(requests_of(requests), context):
                data = serialize(response)
                if len(data) > limit:
                    await _too_large(context, method, len(data), limit)
                yield data
        except BaseException as err:
            _handled(method.name, context, err)
            raise
        _handled(method.name, context, None)
    return handle


def _passthrough(data: bytes) -> bytes:
    return data


def _handler(method: MethodDescriptor, behavior: Callable[..., Any],
             serializer: Callable[[Any], bytes] | None,
             max_message_bytes: int, traced: bool = False) -> grpc.RpcMethodHandler:
    request_class = message_factory.GetMessageClass(method.input_type)
    serialize = serializer or message_factory.GetMessageClass(
        method.output_type).SerializeToString
    deserialize = safe_deserializer(request_class)
    if method.server_streaming:  # serialized by the handler: gRPC passes the bytes on
        wrap = _stream_stream if method.client_streaming else _unary_stream
        make = (grpc.stream_stream_rpc_method_handler if method.client_streaming
                else grpc.unary_stream_rpc_method_handler)
        return make(wrap(behavior, method, serialize, max_message_bytes),
                    request_deserializer=deserialize, response_serializer=_passthrough)
    if method.client_streaming:
        return grpc.stream_unary_rpc_method_handler(
            _stream_unary(behavior, method.name), request_deserializer=deserialize,
            response_serializer=serialize)
    handle = _unary_unary(behavior, method.name)
    if traced and tracing.ENABLED:
        handle = tracing.server_span(
            handle, f"{method.containing_service.full_name}/{method.name}")
    return grpc.unary_unary_rpc_method_handler(
        handle, request_deserializer=deserialize, response_serializer=serialize)


def method_handlers(
    service: ServiceDescriptor, servicer: object,
    response_serializers: Mapping[str, Callable[[Any], bytes]] | None = None,
    max_message_bytes: int = 4 * 1024 * 1024,
    traced: Collection[str] = (),
) -> dict[str, grpc.RpcMethodHandler]:
    """The handler of every method of ``service``, calling the servicer's method of the
    same name (asyncio coroutines; async generators for streamed responses), with safe
    deserializers; the unary methods named in ``traced`` in a server span when tracing
    is on."""
    serializers = dict(response_serializers or {})
    names = {m.name for m in service.methods}
    unknown = (set(serializers) | set(traced)) - names
    if unknown:
        raise ValueError(f"{service.full_name} has no method(s) {sorted(unknown)}")
    streamed = {m.name for m in service.methods
                if m.client_streaming or m.server_streaming} & set(traced)
    if streamed:
        raise ValueError(f"only unary methods are traced per call, not {sorted(streamed)}")
    return {m.name: _handler(m, getattr(servicer, m.name), serializers.get(m.name),
                             max_message_bytes, m.name in traced)
            for m in service.methods}


def add_to_server(
    server: grpc.aio.Server, service: ServiceDescriptor, servicer: object,
    response_serializers: Mapping[str, Callable[[Any], bytes]] | None = None,
    max_message_bytes: int = 4 * 1024 * 1024,
    traced: Collection[str] = (),
) -> None:
    """Register ``servicer`` as ``service`` on ``server`` (what the generated
    ``add_*Servicer_to_server`` does, with the handlers of ``method_handlers``)."""
    handlers = method_handlers(service, servicer, response_serializers, max_message_bytes,
                               traced)
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(service.full_name, handlers),))
    server.add_registered_method_handlers(service.full_name, handlers)
