"""The three services as real processes on real PostgreSQL and Redis: two accounts
trade, and every view of the result agrees."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import grpc
import pytest
from book_checks import apply, book_view, levels
from e2e_helpers import meta
from grpc_health.v1 import health_pb2, health_pb2_grpc

from exchange.common.v1 import common_pb2 as cpb
from exchange.marketdata.v1 import marketdata_pb2 as mdpb
from exchange.marketdata.v1 import marketdata_pb2_grpc as mdpb_grpc
from exchange.order.v1 import order_pb2 as opb
from exchange.order.v1 import order_pb2_grpc as opb_grpc
from exchange_client.book import LocalOrderBook

pytestmark = pytest.mark.e2e

BUY, SELL = cpb.SIDE_BUY, cpb.SIDE_SELL
LIMIT, MARKET = cpb.ORDER_TYPE_LIMIT, cpb.ORDER_TYPE_MARKET


async def create(stub, stack, who, side, quantity, price="", type_=LIMIT, **kw):
    return await stub.CreateOrder(
        opb.CreateOrderRequest(instrument=kw.pop("instrument", "BTC-USD"), side=side,
                               type=type_, price=price, quantity=quantity, **kw),
        metadata=meta(stack, who), timeout=10)


async def test_two_accounts_trade_and_all_views_agree(stack) -> None:
    async with grpc.aio.insecure_channel(stack.order_addr) as och, \
            grpc.aio.insecure_channel(stack.marketdata_addr) as mch:
        orders = opb_grpc.OrderServiceStub(och)
        md = mdpb_grpc.MarketDataServiceStub(mch)

        # A subscriber from the start, before any order.
        stream = md.StreamOrderBook(mdpb.StreamOrderBookRequest(instrument="BTC-USD"))
        local = LocalOrderBook()
        assert apply(local, await stream.read()) == "snapshot"
        assert local.sequence is not None

        # alice makes a ladder of asks and one bid; bob takes.
        asks = [await create(orders, stack, "alice", SELL, q, p, client_order_id=f"a{i}")
                for i, (p, q) in enumerate([("70000.00", "0.5"), ("70001.00", "0.3"),
                                            ("70001.00", "0.2"), ("70010.50", "1")])]
        bid = await create(orders, stack, "alice", BUY, "0.25", "69990.00")
        assert all(r.order.state == cpb.ORDER_STATE_NEW for r in asks)
        assert bid.order.remaining_quantity == "0.2500"

        # bob's limit buy sweeps 70000 and part of 70001 (time priority: a1 before a2).
        take = await create(orders, stack, "bob", BUY, "0.7", "70001.00")
        assert take.order.state == cpb.ORDER_STATE_FILLED
        assert [(f.price, f.quantity, f.liquidity) for f in take.fills] == [
            ("70000.00", "0.5000", cpb.LIQUIDITY_TAKER),
            ("70001.00", "0.2000", cpb.LIQUIDITY_TAKER)]
        # average = (70000 * 0.5 + 70001 * 0.2) / 0.7
        assert Decimal(take.order.average_fill_price) == (
            (Decimal("70000") * Decimal("0.5") + Decimal("70001") * Decimal("0.2"))
            / Decimal("0.7")).quantize(Decimal("0.000001"))

        # bob's market sell hits alice's bid and expires the rest.
        sell = await create(orders, stack, "bob", SELL, "0.3", type_=MARKET)
        assert sell.order.state == cpb.ORDER_STATE_EXPIRED
        assert sell.order.filled_quantity == "0.2500"
        assert [f.price for f in sell.fills] == ["69990.00"]

        # bob: IOC that takes the 0.3 left at 70001 (a1's rest, then a2) and expires the
        # rest; FOK that cannot fill; post-only that would take.
        ioc = await create(orders, stack, "bob", BUY, "0.5", "70001.00",
                           time_in_force=cpb.TIME_IN_FORCE_IOC)
        assert (ioc.order.state, ioc.order.filled_quantity) == (cpb.ORDER_STATE_EXPIRED,
                                                                "0.3000")
        assert [(f.price, f.quantity) for f in ioc.fills] == [("70001.00", "0.1000"),
                                                               ("70001.00", "0.2000")]
        fok = await create(orders, stack, "bob", BUY, "5", "70010.50",
                           time_in_force=cpb.TIME_IN_FORCE_FOK)
        assert fok.order.state == cpb.ORDER_STATE_EXPIRED and not fok.fills
        po = await create(orders, stack, "bob", BUY, "0.1", "70010.50", post_only=True)
        assert po.order.state == cpb.ORDER_STATE_REJECTED
        assert po.order.reason == "POST_ONLY_WOULD_TAKE"

        # -- order states as each account sees them --------------------------
        a0 = await orders.GetOrder(opb.GetOrderRequest(order_id=asks[0].order.order_id),
                                   metadata=meta(stack, "alice"))
        assert a0.order.state == cpb.ORDER_STATE_FILLED and len(a0.fills) == 1
        assert a0.fills[0].liquidity == cpb.LIQUIDITY_MAKER
        a1 = await orders.GetOrder(opb.GetOrderRequest(client_order_id="a1"),
                                   metadata=meta(stack, "alice"))
        assert (a1.order.state, a1.order.filled_quantity) == (cpb.ORDER_STATE_FILLED, "0.3000")
        a2 = await orders.GetOrder(opb.GetOrderRequest(client_order_id="a2"),
                                   metadata=meta(stack, "alice"))
        assert (a2.order.state, a2.order.remaining_quantity) == (cpb.ORDER_STATE_FILLED,
                                                                 "0.0000")

        open_orders = await orders.ListOrders(
            opb.ListOrdersRequest(status=opb.ORDER_STATUS_FILTER_OPEN),
            metadata=meta(stack, "alice"))
        assert [o.client_order_id for o in open_orders.orders] == ["a3"]
        closed = await orders.ListOrders(
            opb.ListOrdersRequest(status=opb.ORDER_STATUS_FILTER_CLOSED),
            metadata=meta(stack, "alice"))
        assert len(closed.orders) == 4

        # paging through bob's orders one at a time gives every order once, newest first
        seen, token = [], ""
        while True:
            page = await orders.ListOrders(opb.ListOrdersRequest(page_size=1, page_token=token),
                                           metadata=meta(stack, "bob"))
            seen += [o.order_id for o in page.orders]
            token = page.next_page_token
            if not token:
                break
        assert seen == [r.order.order_id for r in (po, fok, ioc, sell, take)]

        # fills: both sides of every trade, and they agree with the market's trades
        alice_fills = (await orders.ListFills(opb.ListFillsRequest(page_size=100),
                                              metadata=meta(stack, "alice"))).fills
        bob_fills = (await orders.ListFills(opb.ListFillsRequest(page_size=100),
                                            metadata=meta(stack, "bob"))).fills
        assert len(alice_fills) == len(bob_fills) == 5
        assert all(f.liquidity == cpb.LIQUIDITY_MAKER for f in alice_fills)
        assert all(f.liquidity == cpb.LIQUIDITY_TAKER for f in bob_fills)
        assert ({(f.trade_id, f.price, f.quantity) for f in alice_fills}
                == {(f.trade_id, f.price, f.quantity) for f in bob_fills})

        trades = None
        for _ in range(50):  # market data follows the commit through Redis
            trades = (await md.ListTrades(mdpb.ListTradesRequest(instrument="BTC-USD"))).trades
            if len(trades) == 5:
                break
            await asyncio.sleep(0.1)
        assert [(t.trade_id, t.price, t.quantity) for t in trades] == [
            (f.trade_id, f.price, f.quantity) for f in bob_fills]
        assert [t.taker_side for t in trades] == [BUY, BUY, SELL, BUY, BUY]  # newest first

        # -- the book: GetOrderBook and a stream subscriber agree ------------------
        expected_asks = [("70010.50", "1.0000", 1)]
        book = None
        for _ in range(50):
            book = await md.GetOrderBook(mdpb.GetOrderBookRequest(instrument="BTC-USD"))
            if levels(book.asks) == expected_asks and not book.bids:
                break
            await asyncio.sleep(0.1)
        assert levels(book.asks) == expected_asks and not book.bids
        while local.sequence < book.sequence:
            apply(local, await asyncio.wait_for(stream.read(), 5))
        assert book_view(local) == book_view(book)
        stream.cancel()


async def test_client_order_id_is_idempotent(stack) -> None:
    async with grpc.aio.insecure_channel(stack.order_addr) as ch:
        orders = opb_grpc.OrderServiceStub(ch)
        first = await create(orders, stack, "alice", SELL, "0.1", "70000", client_order_id="k1")
        again = await create(orders, stack, "alice", SELL, "0.1", "70000", client_order_id="k1")
        assert again.order == first.order
        # bob fills it; a retry now returns the original order in its current state
        await create(orders, stack, "bob", BUY, "0.1", type_=MARKET)
        later = await create(orders, stack, "alice", SELL, "0.1", "70000", client_order_id="k1")
        assert later.order.order_id == first.order.order_id
        assert later.order.state == cpb.ORDER_STATE_FILLED and len(later.fills) == 1
        # concurrent retries of a new id make exactly one order
        results = await asyncio.gather(*[
            create(orders, stack, "alice", BUY, "0.1", "60000", client_order_id="k2")
            for _ in range(10)])
        assert len({r.order.order_id for r in results}) == 1
        listed = await orders.ListOrders(opb.ListOrdersRequest(status=1),
                                         metadata=meta(stack, "alice"))
        assert [o.client_order_id for o in listed.orders] == ["k2"]
        # different contents: ALREADY_EXISTS, on the same or another instrument
        for kw in (dict(price="70001"), dict(instrument="ETH-USD", price="3000")):
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await create(orders, stack, "alice", SELL, "0.1", client_order_id="k1",
                             **{"price": "70000", **kw})
            assert err.value.code() == grpc.StatusCode.ALREADY_EXISTS
        # another account may use the same id
        other = await create(orders, stack, "bob", SELL, "0.1", "70000", client_order_id="k1")
        assert other.order.order_id != first.order.order_id


async def test_health_and_reflection(stack) -> None:
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    expected = {stack.order_addr: "exchange.order.v1.OrderService",
                stack.marketdata_addr: "exchange.marketdata.v1.MarketDataService",
                stack.matching_addr: "exchange.matching.v1.MatchingService"}
    for addr, service in expected.items():
        async with grpc.aio.insecure_channel(addr) as ch:
            health = health_pb2_grpc.HealthStub(ch)
            for name in ("", service):
                r = await health.Check(health_pb2.HealthCheckRequest(service=name), timeout=5)
                assert r.status == health_pb2.HealthCheckResponse.SERVING
            refl = reflection_pb2_grpc.ServerReflectionStub(ch)
            call = refl.ServerReflectionInfo()
            await call.write(reflection_pb2.ServerReflectionRequest(list_services=""))
            resp = await call.read()
            names = {s.name for s in resp.list_services_response.service}
            assert service in names and "grpc.health.v1.Health" in names
            await call.done_writing()
