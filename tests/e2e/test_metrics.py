"""The services' Prometheus endpoints after real traffic through the real services.

Every figure is read from a live scrape (``EXCHANGE_METRICS_LISTEN``, what ``make run``
and the chart set) before and after the traffic, and must have moved by exactly what
the traffic did: orders accepted equal the orders placed, rejections counted by reason,
trades and notional equal what PostgreSQL holds, the matching queue back to 0, the
subscription counted while it is open.
"""

from __future__ import annotations

import asyncpg
import grpc
import pytest
from e2e_helpers import meta, scrape, wait_for_metric

from exchange.common.v1 import common_pb2 as cpb
from exchange.marketdata.v1 import marketdata_pb2 as mdpb
from exchange.marketdata.v1 import marketdata_pb2_grpc as mdpb_grpc
from exchange.order.v1 import order_pb2 as opb
from exchange.order.v1 import order_pb2_grpc as opb_grpc
from exchange_dev.stack import Stack

pytestmark = pytest.mark.e2e

SYMBOL = "BTC-USD"
RESTING = 5  # alice's buys that rest
CROSSING = 3  # bob's sells that each fill one of them


def limit(side: int, price: str, quantity: str, client_order_id: str) -> opb.CreateOrderRequest:
    return opb.CreateOrderRequest(
        instrument=SYMBOL, side=side, type=cpb.ORDER_TYPE_LIMIT,
        time_in_force=cpb.TIME_IN_FORCE_GTC, price=price, quantity=quantity,
        client_order_id=client_order_id)


async def test_metrics_move_by_what_the_traffic_did(stack: Stack) -> None:
    urls = {name: stack.metrics_url(name) for name in ("order", "matching", "marketdata")}
    before = {name: await scrape(url) for name, url in urls.items()}
    async with grpc.aio.insecure_channel(stack.order_addr) as channel, \
            grpc.aio.insecure_channel(stack.marketdata_addr) as md_channel:
        orders = opb_grpc.OrderServiceStub(channel)
        book = mdpb_grpc.MarketDataServiceStub(md_channel).StreamOrderBook(
            mdpb.StreamOrderBookRequest(instrument=SYMBOL))
        await book.read()  # the snapshot: the subscription is open
        await wait_for_metric(urls["marketdata"], "exchange_marketdata_subscribers", 1,
                              kind="book")

        placed = []
        for i in range(RESTING):
            placed.append(await orders.CreateOrder(
                limit(cpb.SIDE_BUY, "60000.00", "0.0100", f"m-buy-{i}"),
                metadata=meta(stack, "alice"), timeout=10))
        for i in range(CROSSING):
            answer = await orders.CreateOrder(
                limit(cpb.SIDE_SELL, "60000.00", "0.0100", f"m-sell-{i}"),
                metadata=meta(stack, "bob"), timeout=10)
            assert answer.order.state == cpb.ORDER_STATE_FILLED
        # Refused by the order service's validation: a price off the tick.
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await orders.CreateOrder(limit(cpb.SIDE_BUY, "60000.001", "0.0100", "m-bad"),
                                     metadata=meta(stack, "alice"), timeout=10)
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        await orders.CancelOrder(opb.CancelOrderRequest(order_id=placed[-1].order.order_id),
                                 metadata=meta(stack, "alice"), timeout=10)
        book.cancel()

    conn = await asyncpg.connect(stack.database_url)
    try:
        trades, notional = await conn.fetchrow(
            "SELECT count(*), coalesce(sum(price * quantity), 0) FROM trades t "
            "JOIN instruments i USING (instrument_id) WHERE i.symbol = $1", SYMBOL)
        refusals = await conn.fetchval("SELECT count(*) FROM orders WHERE client_order_id = "
                                       "'m-bad'")
    finally:
        await conn.close()
    assert trades == CROSSING and refusals == 0

    after = {name: await scrape(url) for name, url in urls.items()}

    def moved(service: str, name: str, **labels: str) -> float:
        return after[service].value(name, **labels) - before[service].value(name, **labels)

    sent = RESTING + CROSSING
    assert moved("order", "exchange_orders_accepted_total", instrument=SYMBOL) == sent
    assert moved("order", "exchange_orders_rejected_total", reason="PRICE_OFF_TICK") == 1
    assert moved("order", "exchange_orders_cancelled_total", instrument=SYMBOL) == 1
    assert moved("order", "exchange_order_latency_seconds_count", method="CreateOrder",
                 type="LIMIT", outcome="OK") == sent
    assert moved("order", "exchange_order_latency_seconds_count", method="CreateOrder",
                 type="LIMIT", outcome="INVALID_ARGUMENT") == 1
    assert moved("order", "exchange_grpc_server_handled_total", method="CreateOrder",
                 code="OK") == sent
    assert moved("order", "exchange_grpc_server_handled_total", method="CreateOrder",
                 code="INVALID_ARGUMENT") == 1
    assert moved("order", "exchange_grpc_server_handled_total", method="CancelOrder",
                 code="OK") == 1

    # Matching: the placed orders and the cancel, in batches; the trades and their
    # notional (price x quantity in ticks x lots) exactly as PostgreSQL has them.
    assert moved("matching", "exchange_matching_commands_total", instrument=SYMBOL) == sent + 1
    assert moved("matching", "exchange_matching_batch_commands_sum") == sent + 1
    commits = moved("matching", "exchange_journal_commit_seconds_count")
    assert 1 <= commits <= sent + 1
    assert moved("matching", "exchange_matching_batch_commands_count") == commits
    assert moved("matching", "exchange_trades_total", instrument=SYMBOL) == trades
    assert moved("matching", "exchange_traded_notional_units_total",
                 instrument=SYMBOL) == notional
    assert after["matching"].value("exchange_matching_owner_epoch", instrument=SYMBOL) >= 1
    assert after["matching"].value("exchange_instruments_without_owner") == 0
    assert moved("matching", "exchange_marketdata_publish_lag_seconds_count") >= 1
    await wait_for_metric(urls["matching"], "exchange_matching_queue_depth", 0,
                          instrument=SYMBOL)

    # Market data: the subscription was counted, and is no longer once it ended.
    await wait_for_metric(urls["marketdata"], "exchange_marketdata_subscribers", 0,
                          kind="book")
    assert moved("marketdata", "exchange_marketdata_apply_lag_seconds_count") >= 1
    assert after["marketdata"].value("exchange_marketdata_subscriber_limit") > 0

    # Every process reports its database pool.
    for service, pool in (("order", "order"), ("matching", "matching"),
                          ("marketdata", "marketdata")):
        assert after[service].value("exchange_db_pool_max_connections", pool=pool) >= 1, service


async def test_a_reused_client_order_id_is_counted_by_its_reason(stack: Stack) -> None:
    """A refusal found after the order service's own checks (the client_order_id is
    taken, in the matching engine's memory or in PostgreSQL) is counted by its reason."""
    url = stack.metrics_url("order")
    before = await scrape(url)
    async with grpc.aio.insecure_channel(stack.order_addr) as channel:
        orders = opb_grpc.OrderServiceStub(channel)
        await orders.CreateOrder(limit(cpb.SIDE_SELL, "90000.00", "0.0100", "dup-1"),
                                 metadata=meta(stack, "alice"), timeout=10)
        # The same client_order_id with other terms.
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await orders.CreateOrder(limit(cpb.SIDE_SELL, "91000.00", "0.0100", "dup-1"),
                                     metadata=meta(stack, "alice"), timeout=10)
    assert refused.value.code() == grpc.StatusCode.ALREADY_EXISTS
    after = await scrape(url)
    for reason, count in (("CLIENT_ORDER_ID_IN_USE", 1), ("PRICE_OFF_TICK", 0)):
        assert after.value("exchange_orders_rejected_total", reason=reason) - before.value(
            "exchange_orders_rejected_total", reason=reason) == count, reason
    assert after.value("exchange_orders_accepted_total", instrument=SYMBOL) - before.value(
        "exchange_orders_accepted_total", instrument=SYMBOL) == 1
