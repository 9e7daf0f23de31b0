"""Bad input over the real API: each case gets its status code, reason and field,
and the services stay healthy."""

from __future__ import annotations

import grpc
import pytest
from e2e_helpers import meta
from grpc_health.v1 import health_pb2, health_pb2_grpc

from exchange.admin.v1 import admin_pb2 as apb
from exchange.common.v1 import common_pb2 as cpb
from exchange.marketdata.v1 import marketdata_pb2 as mdpb
from exchange.marketdata.v1 import marketdata_pb2_grpc as mdpb_grpc
from exchange.matching.v1 import matching_pb2 as mpb
from exchange.order.v1 import order_pb2 as opb
from exchange.order.v1 import order_pb2_grpc as opb_grpc
from exchange_common.errors import error_info, field_violations
from exchange_common.paging import PageTokens

pytestmark = pytest.mark.e2e

C = grpc.StatusCode
GOOD = dict(instrument="BTC-USD", side=cpb.SIDE_BUY, type=cpb.ORDER_TYPE_LIMIT,
            price="70000.00", quantity="0.01")

CREATE_CASES = [
    # (changes to a good order, code, reason, field)
    (dict(price="70000.001"), C.INVALID_ARGUMENT, "PRICE_OFF_TICK", "price"),
    (dict(price="seventy"), C.INVALID_ARGUMENT, "INVALID_DECIMAL", "price"),
    (dict(price="7e4"), C.INVALID_ARGUMENT, "INVALID_DECIMAL", "price"),
    (dict(price="-70000"), C.INVALID_ARGUMENT, "INVALID_DECIMAL", "price"),
    (dict(price="0"), C.INVALID_ARGUMENT, "PRICE_NOT_POSITIVE", "price"),
    (dict(price="0.00"), C.INVALID_ARGUMENT, "PRICE_NOT_POSITIVE", "price"),
    (dict(price="70000.123456789012345678901"), C.INVALID_ARGUMENT, "INVALID_DECIMAL", "price"),
    (dict(price="12345678901234567890"), C.INVALID_ARGUMENT, "INVALID_DECIMAL", "price"),
    (dict(price=""), C.INVALID_ARGUMENT, "PRICE_REQUIRED", "price"),
    (dict(quantity="0.00001"), C.INVALID_ARGUMENT, "QUANTITY_OFF_LOT", "quantity"),
    (dict(quantity="0"), C.INVALID_ARGUMENT, "QUANTITY_NOT_POSITIVE", "quantity"),
    (dict(quantity="-1"), C.INVALID_ARGUMENT, "INVALID_DECIMAL", "quantity"),
    (dict(quantity="1e-2"), C.INVALID_ARGUMENT, "INVALID_DECIMAL", "quantity"),
    (dict(quantity="lots"), C.INVALID_ARGUMENT, "INVALID_DECIMAL", "quantity"),
    (dict(quantity="5000"), C.INVALID_ARGUMENT, "QUANTITY_ABOVE_MAX", "quantity"),
    (dict(price="1.00", quantity="0.5"), C.INVALID_ARGUMENT, "NOTIONAL_BELOW_MIN", "quantity"),
    (dict(side=cpb.SIDE_UNSPECIFIED), C.INVALID_ARGUMENT, "SIDE_INVALID", "side"),
    (dict(type=cpb.ORDER_TYPE_UNSPECIFIED), C.INVALID_ARGUMENT, "ORDER_TYPE_INVALID", "type"),
    (dict(type=cpb.ORDER_TYPE_MARKET), C.INVALID_ARGUMENT, "PRICE_NOT_ALLOWED", "price"),
    (dict(type=cpb.ORDER_TYPE_MARKET, price="", post_only=True), C.INVALID_ARGUMENT,
     "POST_ONLY_INVALID", "post_only"),
    (dict(client_order_id="no spaces please"), C.INVALID_ARGUMENT, "CLIENT_ORDER_ID_INVALID",
     "client_order_id"),
    (dict(instrument=""), C.INVALID_ARGUMENT, "INSTRUMENT_REQUIRED", "instrument"),
    (dict(instrument="DOGE-USD"), C.NOT_FOUND, "INSTRUMENT_NOT_FOUND", None),
]


async def expect(call, code, reason, field=None):
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call
    e = err.value
    assert e.code() == code, e.details()
    info = error_info(e)
    assert info is not None and info.reason == reason and info.domain == "exchange"
    if field is not None:
        assert [v.field for v in field_violations(e)] == [field]
    assert "Traceback" not in (e.details() or "")
    return e


async def test_create_order_validation(stack) -> None:
    async with grpc.aio.insecure_channel(stack.order_addr) as ch:
        orders = opb_grpc.OrderServiceStub(ch)
        for changes, code, reason, field in CREATE_CASES:
            request = opb.CreateOrderRequest(**{**GOOD, **changes})
            await expect(orders.CreateOrder(request, metadata=meta(stack), timeout=10),
                         code, reason, field)
        # nothing reached the book
        listed = await orders.ListOrders(opb.ListOrdersRequest(), metadata=meta(stack))
        assert list(listed.orders) == []
        # still healthy and still trading
        ok = await orders.CreateOrder(opb.CreateOrderRequest(**GOOD), metadata=meta(stack))
        assert ok.order.state == cpb.ORDER_STATE_NEW


async def test_authentication_and_ownership(stack) -> None:
    async with grpc.aio.insecure_channel(stack.order_addr) as ch:
        orders = opb_grpc.OrderServiceStub(ch)
        request = opb.CreateOrderRequest(**GOOD)
        await expect(orders.CreateOrder(request), C.UNAUTHENTICATED, "API_KEY_MISSING")
        await expect(orders.CreateOrder(request, metadata=(("x-api-key", "nope"),)),
                     C.UNAUTHENTICATED, "API_KEY_INVALID")
        await expect(orders.ListOrders(opb.ListOrdersRequest()), C.UNAUTHENTICATED,
                     "API_KEY_MISSING")

        mine = (await orders.CreateOrder(request, metadata=meta(stack))).order
        # bob can neither see nor cancel alice's order
        await expect(orders.GetOrder(opb.GetOrderRequest(order_id=mine.order_id),
                                     metadata=meta(stack, "bob")), C.NOT_FOUND, "ORDER_NOT_FOUND")
        await expect(orders.CancelOrder(opb.CancelOrderRequest(order_id=mine.order_id),
                                        metadata=meta(stack, "bob")),
                     C.NOT_FOUND, "ORDER_NOT_FOUND")
        bob_list = await orders.ListOrders(opb.ListOrdersRequest(), metadata=meta(stack, "bob"))
        assert list(bob_list.orders) == []

        # cancel, then cancel again
        done = await orders.CancelOrder(opb.CancelOrderRequest(order_id=mine.order_id),
                                        metadata=meta(stack))
        assert done.order.state == cpb.ORDER_STATE_CANCELLED
        await expect(orders.CancelOrder(opb.CancelOrderRequest(order_id=mine.order_id),
                                        metadata=meta(stack)),
                     C.FAILED_PRECONDITION, "ORDER_NOT_OPEN")


async def test_reference_and_paging_errors(stack) -> None:
    async with grpc.aio.insecure_channel(stack.order_addr) as ch:
        orders = opb_grpc.OrderServiceStub(ch)
        m = meta(stack)
        await expect(orders.GetOrder(opb.GetOrderRequest(order_id="abc"), metadata=m),
                     C.INVALID_ARGUMENT, "ORDER_ID_INVALID", "order_id")
        await expect(orders.GetOrder(opb.GetOrderRequest(), metadata=m),
                     C.INVALID_ARGUMENT, "ORDER_REFERENCE_INVALID", "order_id")
        await expect(orders.GetOrder(opb.GetOrderRequest(order_id="1", client_order_id="x"),
                                     metadata=m),
                     C.INVALID_ARGUMENT, "ORDER_REFERENCE_INVALID", "order_id")
        await expect(orders.GetOrder(opb.GetOrderRequest(order_id=str(1 << 44 | 999)),
                                     metadata=m), C.NOT_FOUND, "ORDER_NOT_FOUND")
        await expect(orders.GetOrder(opb.GetOrderRequest(client_order_id="unknown"),
                                     metadata=m), C.NOT_FOUND, "ORDER_NOT_FOUND")
        await expect(orders.CancelOrder(opb.CancelOrderRequest(order_id=str(99 << 44 | 1)),
                                        metadata=m), C.NOT_FOUND, "ORDER_NOT_FOUND")
        await expect(orders.ListOrders(opb.ListOrdersRequest(page_size=-1), metadata=m),
                     C.INVALID_ARGUMENT, "PAGE_SIZE_INVALID", "page_size")
        # AIP-158: a page size above the maximum is coerced, not refused
        big = await orders.ListOrders(opb.ListOrdersRequest(page_size=5000), metadata=m)
        assert big.next_page_token == ""
        await expect(orders.ListOrders(opb.ListOrdersRequest(page_token="garbage!"), metadata=m),
                     C.INVALID_ARGUMENT, "PAGE_TOKEN_INVALID", "page_token")
        await expect(orders.ListOrders(opb.ListOrdersRequest(instrument="NOPE"), metadata=m),
                     C.NOT_FOUND, "INSTRUMENT_NOT_FOUND")
        await expect(orders.ListFills(opb.ListFillsRequest(order_id="x1"), metadata=m),
                     C.INVALID_ARGUMENT, "ORDER_ID_INVALID", "order_id")

        # a token from one filter cannot be used with another
        for i in range(3):
            await orders.CreateOrder(opb.CreateOrderRequest(**{**GOOD, "price": f"6000{i}"}),
                                     metadata=m)
        page = await orders.ListOrders(opb.ListOrdersRequest(page_size=1), metadata=m)
        assert page.next_page_token
        await expect(orders.ListOrders(opb.ListOrdersRequest(
            page_size=1, page_token=page.next_page_token, status=1), metadata=m),
            C.INVALID_ARGUMENT, "PAGE_TOKEN_INVALID", "page_token")


async def test_market_data_errors_and_health(stack) -> None:
    async with grpc.aio.insecure_channel(stack.marketdata_addr) as ch:
        md = mdpb_grpc.MarketDataServiceStub(ch)
        await expect(md.GetOrderBook(mdpb.GetOrderBookRequest(instrument="NOPE")),
                     C.NOT_FOUND, "INSTRUMENT_NOT_FOUND")
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await md.GetOrderBook(mdpb.GetOrderBookRequest(instrument="BTC-USD", depth=-1))
        assert err.value.code() == C.INVALID_ARGUMENT
        stream = md.StreamOrderBook(mdpb.StreamOrderBookRequest(instrument="NOPE"))
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stream.read()
        assert err.value.code() == C.NOT_FOUND
    for addr in (stack.order_addr, stack.marketdata_addr, stack.matching_addr):
        async with grpc.aio.insecure_channel(addr) as ch:
            r = await health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest())
            assert r.status == health_pb2.HealthCheckResponse.SERVING
    for name, proc in stack.processes.items():
        assert proc.poll() is None, f"{name} died"


NOT_PROTOBUF = b"\x0a\x05ab"  # field 1, length 5, but only 2 bytes follow


def _malformed(err: grpc.aio.AioRpcError) -> None:
    assert err.code() == C.INVALID_ARGUMENT, err.details()
    info = error_info(err)
    assert info is not None and info.reason == "MALFORMED_REQUEST"
    assert "DecodeError" not in err.details() and "Unexpected" not in err.details()


async def test_bodies_that_are_not_protobuf_on_every_method(stack) -> None:
    """Before: UNKNOWN with the text of protobuf's DecodeError, on every unary method."""
    services = [(stack.order_addr, opb.DESCRIPTOR.services_by_name["OrderService"]),
                (stack.order_addr, apb.DESCRIPTOR.services_by_name["AdminService"]),
                (stack.marketdata_addr, mdpb.DESCRIPTOR.services_by_name["MarketDataService"]),
                (stack.matching_addr, mpb.DESCRIPTOR.services_by_name["MatchingService"])]
    for addr, service in services:
        # Matching only lets an order service's calls reach its handlers.
        internal = addr == stack.matching_addr
        async with (stack.matching_channel() if internal
                    else grpc.aio.insecure_channel(addr)) as ch:
            for method in service.methods:
                path = f"/{service.full_name}/{method.name}"
                if method.client_streaming:
                    call = ch.stream_stream(path)(metadata=meta(stack), timeout=10)
                    await call.write(NOT_PROTOBUF)
                    if method.name == "OrderEntry":
                        continue  # answered inside the session: see below
                elif method.server_streaming:
                    call = ch.unary_stream(path)(NOT_PROTOBUF, metadata=meta(stack),
                                                 timeout=10)
                else:
                    call = ch.unary_unary(path)(NOT_PROTOBUF, metadata=meta(stack), timeout=10)
                with pytest.raises(grpc.aio.AioRpcError) as err:
                    if method.server_streaming:
                        await call.read()
                    else:
                        await call
                _malformed(err.value)


async def test_a_malformed_message_in_an_order_entry_session_is_answered(stack) -> None:
    async with grpc.aio.insecure_channel(stack.order_addr) as ch:
        session = ch.stream_stream("/exchange.order.v1.OrderService/OrderEntry",
                                   response_deserializer=opb.OrderEntryResponse.FromString)
        call = session(metadata=meta(stack), timeout=10)
        await call.write(NOT_PROTOBUF)
        event = (await call.read()).events[0]
        assert event.WhichOneof("result") == "error"
        assert event.error.code == C.INVALID_ARGUMENT.value[0]
        assert "MALFORMED_REQUEST" in str(event.error.details[0].value)
        # the session goes on
        await call.write(opb.OrderEntryRequest(commands=[opb.OrderEntryCommand(
            create=opb.CreateOrderRequest(**GOOD, client_order_id="after-garbage"))])
            .SerializeToString())
        event = (await call.read()).events[0]
        assert event.order.state == cpb.ORDER_STATE_NEW
        await call.done_writing()
        assert await call.code() == C.OK


MEGABYTE_STRING = "\u202e" * ((1 << 20) // 3) + "7" * 100  # about 1 MB of UTF-8


def _huge_requests():
    """Every string field of every public request, in turn, about 1 MB long."""
    for message, method in [
            (opb.CreateOrderRequest(**GOOD), "CreateOrder"),
            (opb.CancelOrderRequest(), "CancelOrder"), (opb.AmendOrderRequest(), "AmendOrder"),
            (opb.GetOrderRequest(), "GetOrder"), (opb.ListOrdersRequest(), "ListOrders"),
            (opb.ListFillsRequest(), "ListFills"), (mdpb.GetOrderBookRequest(), "GetOrderBook"),
            (mdpb.ListTradesRequest(), "ListTrades"),
            (mdpb.StreamOrderBookRequest(), "StreamOrderBook"),
            (mdpb.StreamTradesRequest(), "StreamTrades")]:
        for field in message.DESCRIPTOR.fields:
            if field.type == field.TYPE_STRING:
                request = type(message)()
                request.CopyFrom(message)
                setattr(request, field.name, MEGABYTE_STRING)
                yield method, field.name, request


async def test_a_huge_string_in_any_field_gets_a_small_status(stack) -> None:
    """Before: an unknown 1 MB instrument came back whole in the NOT_FOUND message and its
    ErrorInfo, over the client's limit for trailers (the client saw RESOURCE_EXHAUSTED
    "received metadata size exceeds hard limit" instead of the answer)."""
    async with (grpc.aio.insecure_channel(stack.order_addr) as och,
                grpc.aio.insecure_channel(stack.marketdata_addr) as mch):
        orders, md = opb_grpc.OrderServiceStub(och), mdpb_grpc.MarketDataServiceStub(mch)
        for method, field, request in _huge_requests():
            stub = orders if hasattr(orders, method) else md
            call = getattr(stub, method)(request, metadata=meta(stack), timeout=10)
            with pytest.raises(grpc.aio.AioRpcError) as err:
                if method.startswith("Stream"):
                    await call.read()
                else:
                    await call
            e = err.value
            assert e.code() in (C.INVALID_ARGUMENT, C.NOT_FOUND), (method, field, e.code())
            info = error_info(e)
            assert info is not None and info.reason, (method, field)
            assert len(e.details()) < 600, (method, field, len(e.details()))
            assert all(len(v) < 100 for v in info.metadata.values()), (method, field)


async def test_page_tokens_are_bound_to_the_account_and_checked_for_range(stack) -> None:
    """Page tokens are signed: a token of bob's is refused for alice and shows her
    nothing; a position of the wrong shape or outside int64, signed with the stack's own
    key as a forger who had it would, is refused before any query (before: INTERNAL from
    ListOrders and ListFills for a cursor edited past int64)."""
    async with (grpc.aio.insecure_channel(stack.order_addr) as och,
                grpc.aio.insecure_channel(stack.marketdata_addr) as mch):
        orders, md = opb_grpc.OrderServiceStub(och), mdpb_grpc.MarketDataServiceStub(mch)
        for i in range(2):  # bob's two asks, alice takes both: two fills each, two trades
            await orders.CreateOrder(opb.CreateOrderRequest(
                **{**GOOD, "side": cpb.SIDE_SELL, "price": f"7000{i}"}),
                metadata=meta(stack, "bob"), timeout=10)
        await orders.CreateOrder(opb.CreateOrderRequest(
            instrument="BTC-USD", side=cpb.SIDE_BUY, type=cpb.ORDER_TYPE_MARKET,
            quantity="0.02"), metadata=meta(stack), timeout=10)
        bobs_orders = await orders.ListOrders(opb.ListOrdersRequest(page_size=1),
                                              metadata=meta(stack, "bob"), timeout=10)
        bobs_fills = await orders.ListFills(opb.ListFillsRequest(page_size=1),
                                            metadata=meta(stack, "bob"), timeout=10)
        assert bobs_orders.next_page_token and bobs_fills.next_page_token
        await expect(orders.ListOrders(opb.ListOrdersRequest(
            page_size=1, page_token=bobs_orders.next_page_token), metadata=meta(stack)),
            C.INVALID_ARGUMENT, "PAGE_TOKEN_INVALID", "page_token")
        await expect(orders.ListFills(opb.ListFillsRequest(
            page_size=1, page_token=bobs_fills.next_page_token), metadata=meta(stack)),
            C.INVALID_ARGUMENT, "PAGE_TOKEN_INVALID", "page_token")
        # bob's own token still works for him
        rest = await orders.ListOrders(opb.ListOrdersRequest(
            page_size=1, page_token=bobs_orders.next_page_token), metadata=meta(stack, "bob"))
        assert len(rest.orders) == 1

        tokens = PageTokens(stack.page_token_key.encode())
        alice = stack.account_ids["alice"]
        for position in ([1 << 63], [-1], [1, 2, 3], [], ["1"]):
            await expect(orders.ListOrders(opb.ListOrdersRequest(
                page_token=tokens.encode(position, ("orders", alice, None, 0))),
                metadata=meta(stack)), C.INVALID_ARGUMENT, "PAGE_TOKEN_INVALID", "page_token")
        for position in ([1 << 63, 1], [1, 1 << 40], [5], [5, 3]):
            await expect(orders.ListFills(opb.ListFillsRequest(
                page_token=tokens.encode(position, ("fills", alice, None, None))),
                metadata=meta(stack)), C.INVALID_ARGUMENT, "PAGE_TOKEN_INVALID", "page_token")
        for position in ([1 << 63], [1, 2]):
            await expect(md.ListTrades(mdpb.ListTradesRequest(
                instrument="BTC-USD", page_token=tokens.encode(position, ("trades", 1)))),
                C.INVALID_ARGUMENT, "PAGE_TOKEN_INVALID", "page_token")
        # a well-formed position signed with the key is taken (the key is the services')
        page = await orders.ListOrders(opb.ListOrdersRequest(
            page_token=tokens.encode([(1 << 63) - 1], ("orders", alice, None, 0))),
            metadata=meta(stack))
        assert len(page.orders) == 1
