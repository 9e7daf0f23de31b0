"""Every metric that the chart's alerts and dashboard name is in a live scrape.

The rules are rendered from the chart (the ``helm`` fixture) and the dashboard is read
from deploy/k8s/dashboards/exchange.json; tests/promql_checks.py parses their expressions
and takes the metric names out of them. A real stack then gets a little traffic, so that
the labelled series exist (a labelled counter or histogram has no sample before its first
event): two orders that trade, one that rests and is cancelled, one refused, a book and a
trades subscription, and one fenced journal commit (the instrument's owner epoch raised in
PostgreSQL, as a pod taking it over does) for ``exchange_journal_commit_failures_total``.
The three /metrics endpoints are scraped, and each name must be a sample there of a family
of the right type: ``_total`` of a counter, ``_bucket`` / ``_sum`` / ``_count`` of a
histogram, the bare name of a gauge.
"""

from __future__ import annotations

import asyncio
import urllib.request

import asyncpg
import grpc
import pytest
import yaml
from e2e_helpers import meta, wait_for_metric
from prometheus_client.parser import text_string_to_metric_families
from promql_checks import (
    CHART,
    dashboard_queries,
    family_of,
    load_dashboard,
    metric_names,
    rule_queries,
)

from exchange.common.v1 import common_pb2 as cpb
from exchange.marketdata.v1 import marketdata_pb2 as mdpb
from exchange.marketdata.v1 import marketdata_pb2_grpc as mdpb_grpc
from exchange.order.v1 import order_pb2 as opb
from exchange.order.v1 import order_pb2_grpc as opb_grpc
from exchange_dev.stack import Stack

pytestmark = pytest.mark.e2e

SYMBOL = "BTC-USD"
FENCED = "ETH-USD"  # the instrument whose commit is fenced out


def limit(instrument: str, side: int, price: str, quantity: str,
          client_order_id: str) -> opb.CreateOrderRequest:
    return opb.CreateOrderRequest(
        instrument=instrument, side=side, type=cpb.ORDER_TYPE_LIMIT,
        time_in_force=cpb.TIME_IN_FORCE_GTC, price=price, quantity=quantity,
        client_order_id=client_order_id)


async def families(url: str) -> dict[str, tuple[str, set[str]]]:
    """One scrape: family name -> (type, the names of its samples)."""
    def get() -> str:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.read().decode()
    return {f.name: (f.type, {s.name for s in f.samples})
            for f in text_string_to_metric_families(await asyncio.to_thread(get))}


async def fence(stack: Stack, symbol: str) -> int:
    """Raise the instrument's owner epoch, as a pod taking it over would: the owner's
    next commit is refused. The epoch before."""
    conn = await asyncpg.connect(stack.database_url)
    try:
        return await conn.fetchval(
            "UPDATE instrument_state s SET owner_epoch = s.owner_epoch + 1 FROM instruments i "
            "WHERE i.instrument_id = s.instrument_id AND i.symbol = $1 "
            "RETURNING s.owner_epoch - 1", symbol)
    finally:
        await conn.close()


async def traffic(stack: Stack) -> None:
    urls = {name: stack.metrics_url(name) for name in ("matching", "marketdata")}
    async with grpc.aio.insecure_channel(stack.order_addr) as channel, \
            grpc.aio.insecure_channel(stack.marketdata_addr) as md_channel:
        orders = opb_grpc.OrderServiceStub(channel)
        md = mdpb_grpc.MarketDataServiceStub(md_channel)
        book = md.StreamOrderBook(mdpb.StreamOrderBookRequest(instrument=SYMBOL))
        await book.read()  # the snapshot: the subscription is open
        trades = md.StreamTrades(mdpb.StreamTradesRequest(instrument=SYMBOL))
        await wait_for_metric(urls["marketdata"], "exchange_marketdata_subscribers", 1,
                              kind="trades")

        await orders.CreateOrder(limit(SYMBOL, cpb.SIDE_BUY, "60000.00", "0.0100", "n-buy"),
                                 metadata=meta(stack, "alice"), timeout=10)
        sold = await orders.CreateOrder(
            limit(SYMBOL, cpb.SIDE_SELL, "60000.00", "0.0100", "n-sell"),
            metadata=meta(stack, "bob"), timeout=10)
        assert sold.order.state == cpb.ORDER_STATE_FILLED
        assert (await trades.read()).trades  # the trade, streamed
        resting = await orders.CreateOrder(
            limit(SYMBOL, cpb.SIDE_BUY, "50000.00", "0.0100", "n-rest"),
            metadata=meta(stack, "alice"), timeout=10)
        await orders.CancelOrder(opb.CancelOrderRequest(order_id=resting.order.order_id),
                                 metadata=meta(stack, "alice"), timeout=10)
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await orders.CreateOrder(limit(SYMBOL, cpb.SIDE_BUY, "60000.001", "0.0100", "n-bad"),
                                     metadata=meta(stack, "alice"), timeout=10)
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT

        # A fenced commit: the owner gives the instrument up, takes it again (a new
        # epoch), and the order service sends the order again to it.
        epoch = await fence(stack, FENCED)
        placed = await orders.CreateOrder(
            limit(FENCED, cpb.SIDE_BUY, "3000.00", "0.010", "n-fenced"),
            metadata=meta(stack, "alice"), timeout=10)
        assert placed.order.state == cpb.ORDER_STATE_NEW
        await wait_for_metric(urls["matching"], "exchange_journal_commit_failures_total", 1,
                              kind="fenced")
        conn = await asyncpg.connect(stack.database_url)
        try:
            now = await conn.fetchval(
                "SELECT s.owner_epoch FROM instrument_state s JOIN instruments i "
                "USING (instrument_id) WHERE i.symbol = $1", FENCED)
        finally:
            await conn.close()
        assert now >= epoch + 2  # raised here, then by the pod taking it again
        book.cancel()
        trades.cancel()


async def test_every_metric_the_alerts_and_dashboard_use_is_scraped(stack: Stack,
                                                                    helm) -> None:
    rendered = helm("template", "rel", str(CHART), "--namespace", "trading",
                    "--set", "metrics.prometheusRule.enabled=true",
                    "--show-only", "templates/prometheusrule.yaml")
    used = metric_names(rule_queries(yaml.safe_load(rendered.stdout))
                        + dashboard_queries(load_dashboard()))
    assert len(used) >= 20, sorted(used)  # the extraction found the queries' metrics

    await traffic(stack)
    scraped: dict[str, tuple[str, set[str]]] = {}
    for name in ("order", "matching", "marketdata"):
        for family, (kind, samples) in (await families(stack.metrics_url(name))).items():
            seen = scraped.setdefault(family, (kind, set()))
            assert seen[0] == kind, f"{family} is a {kind} here and a {seen[0]} elsewhere"
            seen[1].update(samples)

    problems = []
    types = {family: kind for family, (kind, _) in scraped.items()}
    for name, where in sorted(used.items()):
        found = family_of(name, types)
        if found is None:
            problems.append(f"{name} (used by {where[0]}): no such family in any scrape")
        elif name not in scraped[found[0]][1]:
            problems.append(f"{name} (used by {where[0]}): the {found[1]} {found[0]} has no "
                            f"sample {name} (samples: {sorted(scraped[found[0]][1])})")
    assert not problems, "\n".join(problems)
