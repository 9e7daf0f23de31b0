"""The order path's holds when no order takes them (order_service/holds.py).

- matching refuses an order for certain (outside the price band): the order service gives
  its hold back at once, and the ledger shows the hold and its release;
- a hold whose command never reached a book (the order service died in between) is
  released by the sweeper once it is older than the TTL, and not before;
- a market buy on a book that never had an ask or a trade has no reference price: it
  holds nothing and expires, as a market order on an empty book always did.
"""

from __future__ import annotations

import asyncio

import asyncpg
import grpc
import pytest
from e2e_helpers import meta, money_problems, wait_for_metric

from exchange.admin.v1 import admin_pb2 as apb
from exchange.admin.v1 import admin_pb2_grpc as apb_grpc
from exchange.common.v1 import common_pb2 as cpb
from exchange.order.v1 import order_pb2 as opb
from exchange.order.v1 import order_pb2_grpc as opb_grpc
from exchange_common import db
from exchange_common.errors import error_info
from exchange_common.instruments import load_instruments
from exchange_dev.stack import Stack
from order_service.holds import HOLD_SQL, HoldRequest, Holds, Sweeper, hold_columns

pytestmark = pytest.mark.e2e


def limit(side: int, price: str, quantity: str, coid: str) -> opb.CreateOrderRequest:
    return opb.CreateOrderRequest(instrument="BTC-USD", side=side, type=cpb.ORDER_TYPE_LIMIT,
                                  price=price, quantity=quantity, client_order_id=coid)


async def usd(conn: asyncpg.Connection, account: int) -> tuple[int, int]:
    row = await conn.fetchrow(
        """SELECT available, held FROM balances b JOIN assets s USING (asset_id)
            WHERE b.account_id = $1 AND s.symbol = 'USD'""", account)
    return row["available"], row["held"]


async def test_a_refused_order_gives_its_hold_back(stack: Stack) -> None:
    alice = stack.account_ids["alice"]
    conn = await asyncpg.connect(stack.database_url)
    try:
        async with grpc.aio.insecure_channel(stack.order_addr) as ch:
            orders = opb_grpc.OrderServiceStub(ch)
            admin = apb_grpc.AdminServiceStub(ch)
            await admin.UpdateInstrument(
                apb.UpdateInstrumentRequest(symbol="BTC-USD", price_band_bps=100),
                metadata=(("x-admin-key", stack.admin_key),), timeout=5)
            # a trade at 70,000 sets the band's reference
            await orders.CreateOrder(limit(cpb.SIDE_SELL, "70000.00", "0.0100", "band-s"),
                                     metadata=meta(stack, "bob"), timeout=5)
            await orders.CreateOrder(limit(cpb.SIDE_BUY, "70000.00", "0.0100", "band-b"),
                                     metadata=meta(stack, "alice"), timeout=5)
            before = await usd(conn, alice)
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await orders.CreateOrder(limit(cpb.SIDE_BUY, "75000.00", "0.0100", "band-x"),
                                         metadata=meta(stack, "alice"), timeout=5)
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert error_info(refused.value).reason == "PRICE_OUTSIDE_BAND"
        for _ in range(50):  # given back in the background, at once
            if not await conn.fetchval("SELECT count(*) FROM order_holds"):
                break
            await asyncio.sleep(0.1)
        assert await usd(conn, alice) == before
        kinds = [(r["kind"], r["available"], r["held"]) for r in await conn.fetch(
            """SELECT kind, available, held FROM ledger
                WHERE account_id = $1 AND reference = 'hold band-x' ORDER BY entry_id""", alice)]
        # 0.01 BTC at 75,000.00 with the 10 bps fee reserve rounded up per lot
        assert kinds == [("hold", -750_750_000, 750_750_000),
                         ("release", 750_750_000, -750_750_000)]
        assert await money_problems(conn) == []
        await wait_for_metric(stack.metrics_url("order"), "exchange_holds_released_total", 1,
                              why="refused")
    finally:
        await conn.close()


async def test_the_sweeper_releases_a_hold_no_order_took(stack: Stack) -> None:
    alice = stack.account_ids["alice"]
    conn = await asyncpg.connect(stack.database_url)
    pool = await db.create_pool(stack.database_url, min_size=1, max_size=2)
    try:
        spec = next(s for s in await load_instruments(conn) if s.symbol == "BTC-USD")
        before = await usd(conn, alice)
        # the order path's hold of an order whose order service died before routing it
        request = HoldRequest(alice, "orphan-1", spec.quote_asset_id, 123_456,
                              spec.base_asset_id, spec.instrument_id)
        (row,) = await conn.fetch(HOLD_SQL, *hold_columns([request]))
        assert row["need"] == 123_456
        assert await usd(conn, alice) == (before[0] - 123_456, before[1] + 123_456)
        sweeper = Sweeper(pool, Holds(pool), ttl=60)
        assert await sweeper.sweep() == 0  # too young
        await conn.execute("UPDATE order_holds SET held_at = now() - interval '61 seconds'")
        assert await sweeper.sweep() == 1
        assert await sweeper.sweep() == 0  # released once
        assert await usd(conn, alice) == before
        assert await money_problems(conn) == []
    finally:
        await pool.close()
        await conn.close()


async def test_a_market_buy_with_no_reference_price_holds_nothing_and_expires(
        stack: Stack) -> None:
    conn = await asyncpg.connect(stack.database_url)
    try:
        before = await usd(conn, stack.account_ids["alice"])
        async with grpc.aio.insecure_channel(stack.order_addr) as ch:
            answer = await opb_grpc.OrderServiceStub(ch).CreateOrder(opb.CreateOrderRequest(
                instrument="ETH-USD", side=cpb.SIDE_BUY, type=cpb.ORDER_TYPE_MARKET,
                quantity="1.000", client_order_id="no-reference"),
                metadata=meta(stack, "alice"), timeout=5)
        assert answer.order.state == cpb.ORDER_STATE_EXPIRED
        assert answer.order.reason == "NO_REFERENCE_PRICE"
        assert await usd(conn, stack.account_ids["alice"]) == before
        assert await money_problems(conn) == []
    finally:
        await conn.close()


async def test_an_order_too_large_to_hold_is_refused_on_its_own(stack: Stack) -> None:
    """In one OrderEntry message, an order whose hold would outgrow 64 bits is refused
    (INVALID_ARGUMENT) and the order beside it is placed."""
    huge = limit(cpb.SIDE_BUY, "1000000000000.00", "1000", "too-large")
    fine = limit(cpb.SIDE_BUY, "60000.00", "0.0100", "beside-it")
    events: dict[str, opb.OrderEntryEvent] = {}
    async with grpc.aio.insecure_channel(stack.order_addr) as ch:
        call = opb_grpc.OrderServiceStub(ch).OrderEntry(metadata=meta(stack, "alice"),
                                                         timeout=10)
        await call.write(opb.OrderEntryRequest(commands=[
            opb.OrderEntryCommand(create=huge), opb.OrderEntryCommand(create=fine)]))
        while len(events) < 2:
            response = await call.read()
            events.update((e.client_order_id, e) for e in response.events)
        await call.done_writing()
    refused = events["too-large"]
    assert refused.WhichOneof("result") == "error"
    assert refused.error.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert events["beside-it"].WhichOneof("result") == "order"
    assert events["beside-it"].order.state == cpb.ORDER_STATE_NEW
