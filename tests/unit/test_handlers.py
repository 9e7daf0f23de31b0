"""exchange_common.handlers on a real grpc.aio server: request bodies that are not protobuf
get INVALID_ARGUMENT / MALFORMED_REQUEST on every kind of method, and streamed responses are
held to the message size limit."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import grpc
import pytest

from exchange.marketdata.v1 import marketdata_pb2 as mdpb
from exchange.matching.v1 import matching_pb2 as mpb
from exchange.order.v1 import order_pb2 as opb
from exchange_common import handlers
from exchange_common.errors import error_info, grpc_errors
from exchange_common.handlers import MalformedRequest, malformed_messages_in_stream

C = grpc.StatusCode
NOT_PROTOBUF = b"\x0a\x05ab"  # field 1, length 5, but only 2 bytes follow


class Orders:
    """Just enough of an OrderService: CreateOrder echoes, OrderEntry answers bad
    messages inside the stream (marked), the others are never called here."""

    @grpc_errors
    async def CreateOrder(self, request, context):
        return opb.CreateOrderResponse(order=opb.Order(instrument=request.instrument))

    @grpc_errors
    @malformed_messages_in_stream
    async def OrderEntry(self, requests, context):
        async for request in requests:
            if isinstance(request, MalformedRequest):
                yield opb.OrderEntryResponse(events=[opb.OrderEntryEvent(
                    error=request.to_status_proto())])
                continue
            yield opb.OrderEntryResponse(events=[
                opb.OrderEntryEvent(client_order_id=c.create.client_order_id)
                for c in request.commands])

    CancelOrder = AmendOrder = GetOrder = ListOrders = ListFills = CreateOrder
    GetBalances = ListLedgerEntries = CancelAllOrders = CreateOrder
    StreamOrderUpdates = OrderEntry


class Matching:
    """Execute is not marked: a bad message ends the call (after earlier answers)."""

    @grpc_errors
    async def Execute(self, requests, context):
        async for request in requests:
            yield mpb.ExecuteResponse(results=[mpb.Result(request_id=c.request_id)
                                               for c in request.commands])

    @grpc_errors
    async def GetBook(self, request, context):
        return mpb.GetBookResponse()


class MarketData:
    def __init__(self, size: int = 10) -> None:
        self.size = size

    @grpc_errors
    async def StreamTrades(self, request, context) -> AsyncIterator[bytes]:
        yield b"\x0a" + bytes([self.size - 2]) + b"t" * (self.size - 2)  # pre-serialized
        yield mdpb.StreamTradesResponse(trades=[mdpb.Trade(instrument=request.instrument)])

    @grpc_errors
    async def ListInstruments(self, request, context):
        return mdpb.ListInstrumentsResponse()

    GetOrderBook = ListTrades = GetTicker = ListCandles = ListInstruments
    StreamOrderBook = StreamTicker = StreamOrderBookL3 = StreamTrades


def _serialize(response) -> bytes:
    return response if isinstance(response, bytes) else response.SerializeToString()


@pytest.fixture
async def channel() -> AsyncIterator[grpc.aio.Channel]:
    server = grpc.aio.server()
    handlers.add_to_server(server, opb.DESCRIPTOR.services_by_name["OrderService"], Orders())
    handlers.add_to_server(server, mpb.DESCRIPTOR.services_by_name["MatchingService"],
                           Matching())
    handlers.add_to_server(server, mdpb.DESCRIPTOR.services_by_name["MarketDataService"],
                           MarketData(size=100), max_message_bytes=200,
                           response_serializers={"StreamTrades": _serialize,
                                                 "StreamOrderBook": _serialize})
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as ch:
            yield ch
    finally:
        await server.stop(0)


def _raw(ch, kind: str, method: str):
    return getattr(ch, kind)(method, request_serializer=None, response_deserializer=None)


def _is_malformed(err: grpc.aio.AioRpcError, type_name: str) -> None:
    assert err.code() == C.INVALID_ARGUMENT
    info = error_info(err)
    assert info is not None and info.reason == "MALFORMED_REQUEST"
    assert info.metadata["message_type"] == type_name
    assert "DecodeError" not in err.details() and "Unexpected" not in err.details()


async def test_a_unary_body_that_is_not_protobuf(channel) -> None:
    create = _raw(channel, "unary_unary", "/exchange.order.v1.OrderService/CreateOrder")
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await create(NOT_PROTOBUF, timeout=5)
    _is_malformed(err.value, "exchange.order.v1.CreateOrderRequest")
    # a good body still reaches the servicer
    reply = await create(opb.CreateOrderRequest(instrument="BTC-USD").SerializeToString(),
                         timeout=5)
    assert opb.CreateOrderResponse.FromString(reply).order.instrument == "BTC-USD"


async def test_invalid_utf8_in_a_string_field_is_malformed_too(channel) -> None:
    create = _raw(channel, "unary_unary", "/exchange.order.v1.OrderService/CreateOrder")
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await create(b"\x0a\x02\xff\xfe", timeout=5)
    _is_malformed(err.value, "exchange.order.v1.CreateOrderRequest")


async def test_a_server_stream_request_that_is_not_protobuf(channel) -> None:
    stream = _raw(channel, "unary_stream",
                  "/exchange.marketdata.v1.MarketDataService/StreamTrades")(NOT_PROTOBUF,
                                                                            timeout=5)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stream.read()
    _is_malformed(err.value, "exchange.marketdata.v1.StreamTradesRequest")


async def test_a_bad_message_ends_an_unmarked_request_stream_after_the_answers_before_it(
        channel) -> None:
    call = _raw(channel, "stream_stream", "/exchange.matching.v1.MatchingService/Execute")(
        timeout=5)
    await call.write(mpb.ExecuteRequest(commands=[mpb.Command(request_id=7)])
                     .SerializeToString())
    first = mpb.ExecuteResponse.FromString(await call.read())
    assert [r.request_id for r in first.results] == [7]
    await call.write(NOT_PROTOBUF)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call.read()
    _is_malformed(err.value, "exchange.matching.v1.ExecuteRequest")


async def test_a_marked_stream_answers_a_bad_message_and_goes_on(channel) -> None:
    call = _raw(channel, "stream_stream", "/exchange.order.v1.OrderService/OrderEntry")(
        timeout=5)
    await call.write(NOT_PROTOBUF)
    bad = opb.OrderEntryResponse.FromString(await call.read()).events[0]
    assert bad.WhichOneof("result") == "error"
    assert bad.error.code == C.INVALID_ARGUMENT.value[0]
    await call.write(opb.OrderEntryRequest(commands=[opb.OrderEntryCommand(
        create=opb.CreateOrderRequest(client_order_id="after"))]).SerializeToString())
    good = opb.OrderEntryResponse.FromString(await call.read()).events[0]
    assert good.client_order_id == "after"
    await call.done_writing()
    assert await call.code() == C.OK


async def test_streamed_responses_are_held_to_the_size_limit(channel, caplog) -> None:
    """The bytes a servicer yields pass as they are; a response over the limit ends the
    call with RESOURCE_EXHAUSTED / RESPONSE_TOO_LARGE and an ERROR in the log (gRPC itself
    would fail the write and log it like a client going away)."""
    stream = _raw(channel, "unary_stream",
                  "/exchange.marketdata.v1.MarketDataService/StreamTrades")(
        mdpb.StreamTradesRequest(instrument="x" * 300).SerializeToString(), timeout=5)
    first = await stream.read()
    assert first == b"\x0a\x62" + b"t" * 98  # the pre-serialized bytes, untouched
    with caplog.at_level(logging.ERROR, logger="exchange_common.handlers"):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stream.read()
    assert err.value.code() == C.RESOURCE_EXHAUSTED
    assert error_info(err.value).reason == "RESPONSE_TOO_LARGE"
    assert any("over the 200-byte message limit" in r.getMessage() for r in caplog.records)


def test_serializers_must_name_methods_of_the_service() -> None:
    with pytest.raises(ValueError, match="StreamQuotes"):
        handlers.method_handlers(mdpb.DESCRIPTOR.services_by_name["MarketDataService"],
                                 MarketData(), {"StreamQuotes": _serialize})
