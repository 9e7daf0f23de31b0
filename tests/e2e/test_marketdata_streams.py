"""Ticker, candles, the L3 book and book integrity on the whole stack in real processes,
after trading through the real order service.

- Candles of every interval equal an aggregation written here (with decimal.Decimal) of all
  the trades ListTrades pages through, and still do after the market-data service restarts
  and after Redis loses everything (FLUSHALL).
- GetTicker equals what ListTrades implies for 24 hours and the book's best bid and ask.
- The L3 snapshot equals matching's GetBook order by order, and an L3 follower stays equal
  to it; the public L3 order has no account.
- A StreamOrderBook subscriber with depth 5 and interval 200 ms rebuilds GetOrderBook(depth
  5) at the same sequence, every checksum verified, while levels leave and enter its top.
- Idle streams get heartbeats with their sequence; bad input is INVALID_ARGUMENT.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import time
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Any

import grpc
import pytest
import redis.asyncio as redis_asyncio
from e2e_helpers import run, run_json

from exchange.common.v1 import common_pb2 as cpb
from exchange.marketdata.v1 import marketdata_pb2 as md_pb2
from exchange.marketdata.v1 import marketdata_pb2_grpc as md_grpc
from exchange.matching.v1 import matching_pb2 as mpb
from exchange.matching.v1 import matching_pb2_grpc as mpb_grpc
from exchange.order.v1 import order_pb2 as opb
from exchange.order.v1 import order_pb2_grpc as opb_grpc
from exchange_client import AsyncExchangeClient, LocalL3Book, LocalOrderBook
from exchange_common.errors import error_info, field_violations
from exchange_dev.stack import Stack

pytestmark = pytest.mark.e2e

STACK_ENV = {"EXCHANGE_MARKETDATA_HEARTBEAT": "0.3"}
SYMBOL = "BTC-USD"
TICK, LOT = Decimal("0.01"), Decimal("0.0001")
WAIT = 30.0
INTERVALS = {"1m": 60, "5m": 300, "15m": 900, "1h": 3600, "1d": 86400}


async def until(check: Callable[[], Awaitable[Any]], what: str, timeout: float = WAIT) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = await check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


def client(stack: Stack, who: str = "alice") -> AsyncExchangeClient:
    return AsyncExchangeClient(stack.order_addr, stack.marketdata_addr, api_key=stack.keys[who])


def micros(ts) -> int:
    return ts.seconds * 1_000_000 + ts.nanos // 1000


async def all_trades(c: AsyncExchangeClient) -> list[md_pb2.Trade]:
    return [t async for t in c.iter_trades(SYMBOL, page_size=7)]


def aggregate(trades: list[md_pb2.Trade], seconds: int) -> list[tuple]:
    """Candles from trades, independently: (start µs, open, high, low, close, volume,
    quote volume, count), oldest first."""
    size = seconds * 1_000_000
    buckets: dict[int, list[md_pb2.Trade]] = {}
    for t in trades:
        buckets.setdefault(micros(t.time) // size * size, []).append(t)
    out = []
    for start in sorted(buckets):
        group = sorted(buckets[start], key=lambda t: t.sequence)
        prices = [Decimal(t.price) for t in group]
        out.append((start, prices[0], max(prices), min(prices), prices[-1],
                    sum(Decimal(t.quantity) for t in group),
                    sum(Decimal(t.price) * Decimal(t.quantity) for t in group), len(group)))
    return out


def candle_tuple(c: md_pb2.Candle) -> tuple:
    return (micros(c.start_time), Decimal(c.open), Decimal(c.high), Decimal(c.low),
            Decimal(c.close), Decimal(c.volume), Decimal(c.quote_volume), c.trade_count)


async def settled(c: AsyncExchangeClient, stack: Stack) -> int:
    """Wait until market data reflects everything matching committed; the sequence."""
    async with stack.matching_channel() as ch:
        book = await mpb_grpc.MatchingServiceStub(ch).GetBook(
            mpb.GetBookRequest(instrument_id=1), timeout=5)

    async def caught_up() -> bool:
        return (await c.get_order_book(SYMBOL, depth=1)).sequence >= book.sequence

    await until(caught_up, "market data to catch up")
    return book.sequence


async def check_candles(c: AsyncExchangeClient) -> list[md_pb2.Trade]:
    trades = await all_trades(c)
    assert trades
    for name, seconds in INTERVALS.items():
        got = [candle_tuple(x) async for x in c.iter_candles(SYMBOL, name, page_size=1)]
        assert got == aggregate(trades, seconds), name
        # A range: the candles starting in [first start, first start + 1 interval).
        first = got[0][0]
        start = dt.datetime.fromtimestamp(first / 1_000_000, dt.UTC)
        ranged = [candle_tuple(x) async for x in c.iter_candles(
            SYMBOL, name, start=start, end=start + dt.timedelta(seconds=seconds))]
        assert ranged == got[:1], name
    return trades


async def check_ticker(c: AsyncExchangeClient) -> None:
    trades = sorted(await all_trades(c), key=lambda t: t.sequence)
    book = await c.get_order_book(SYMBOL, depth=1)
    ticker = await c.get_ticker(SYMBOL)
    assert ticker.sequence == book.sequence
    last = trades[-1]
    prices = [Decimal(t.price) for t in trades]  # all within the last 24 hours
    assert (ticker.last_price, ticker.last_quantity) == (last.price, last.quantity)
    assert ticker.last_trade_time == last.time
    assert Decimal(ticker.open_24h) == prices[0]
    assert (Decimal(ticker.high_24h), Decimal(ticker.low_24h)) == (max(prices), min(prices))
    assert Decimal(ticker.volume_24h) == sum(Decimal(t.quantity) for t in trades)
    assert Decimal(ticker.quote_volume_24h) == sum(
        Decimal(t.price) * Decimal(t.quantity) for t in trades)
    assert ticker.trade_count_24h == len(trades)
    assert (ticker.best_bid, ticker.best_bid_quantity) == (
        (book.bids[0].price, book.bids[0].quantity) if book.bids else ("", ""))
    assert (ticker.best_ask, ticker.best_ask_quantity) == (
        (book.asks[0].price, book.asks[0].quantity) if book.asks else ("", ""))


async def trade_some(alice: AsyncExchangeClient, bob: AsyncExchangeClient, n: int,
                     base: int) -> None:
    """n trades at different prices (bob rests, alice takes), and a resting bid and ask."""
    for i in range(n):
        price = Decimal(base + (i * 37) % 50)
        await bob.create_order(SYMBOL, "sell", f"0.{1 + i % 5:04d}", price=price)
        await alice.create_order(SYMBOL, "buy", f"0.{1 + i % 5:04d}", price=price,
                                 time_in_force="ioc")


async def test_candles_and_ticker_from_trades_across_restart_and_redis_loss(
        module_stack: Stack) -> None:
    stack = module_stack
    async with client(stack) as alice, client(stack, "bob") as bob:
        await trade_some(alice, bob, 24, 70000)
        await bob.create_order(SYMBOL, "sell", "0.5", price="71000")
        await alice.create_order(SYMBOL, "buy", "0.5", price="69000")
        await settled(alice, stack)
        await check_candles(alice)
        await check_ticker(alice)

    # Restarted: candles and the ticker's window come from PostgreSQL.
    stack.kill_service("marketdata")
    await stack.start_service("marketdata")
    async with client(stack) as alice:
        await check_candles(alice)
        await check_ticker(alice)

    # Redis loses everything: more trades, and everything still agrees.
    r = redis_asyncio.from_url(stack.redis_url)
    try:
        await r.flushall()
    finally:
        await r.aclose()
    async with client(stack) as alice, client(stack, "bob") as bob:
        await trade_some(alice, bob, 6, 70100)
        await settled(alice, stack)
        trades = await check_candles(alice)
        assert any(Decimal(t.price) >= 70100 for t in trades)
        await check_ticker(alice)
        first = await alice.get_ticker(SYMBOL)
        async with contextlib.aclosing(alice.stream_ticker(SYMBOL, interval_ms=100)) as stream:
            streamed = await anext(stream)
        first.ClearField("time")
        streamed.ClearField("time")
        assert streamed == first


async def test_l3_book_equals_matchings_book_order_by_order(module_stack: Stack) -> None:
    stack = module_stack
    assert set(md_pb2.L3Order.DESCRIPTOR.fields_by_name) == {
        "order_id", "side", "price", "quantity", "priority"}
    async with client(stack) as alice, client(stack, "bob") as bob:
        watcher = LocalL3Book(SYMBOL)

        async def follow() -> None:
            async for _ in alice.watch_order_book_l3(SYMBOL, book=watcher):
                pass

        task = asyncio.create_task(follow())
        try:
            for i in range(4):  # several orders per level, both sides
                await bob.create_order(SYMBOL, "sell", "0.0100", price=f"{70500 + i % 2}")
                await alice.create_order(SYMBOL, "buy", "0.0200", price=f"{69500 - i % 2}")
            partial = await bob.create_order(SYMBOL, "sell", "0.0300", price="70400")
            await alice.create_order(SYMBOL, "buy", "0.0100", price="70400",
                                     time_in_force="ioc")  # partially fills it
            moved = await alice.create_order(SYMBOL, "buy", "0.0100", price="69400")
            async with grpc.aio.insecure_channel(stack.order_addr) as ch:  # a re-queue
                await opb_grpc.OrderServiceStub(ch).AmendOrder(
                    opb.AmendOrderRequest(order_id=moved.order.order_id, price="69401"),
                    metadata=(("x-api-key", stack.keys["alice"]),), timeout=10)
            gone = await bob.create_order(SYMBOL, "sell", "0.0100", price="70600")
            await bob.cancel_order(gone.order.order_id)
            # A stop-limit far from the last price waits off the book: never in L2 or L3.
            stop = await bob.create_order(SYMBOL, "sell", "0.0100", price="60000.00",
                                          stop_price="60000.00")
            assert stop.order.state == cpb.ORDER_STATE_UNTRIGGERED
            sequence = await settled(alice, stack)

            async with stack.matching_channel() as ch:
                book = await mpb_grpc.MatchingServiceStub(ch).GetBook(
                    mpb.GetBookRequest(instrument_id=1), timeout=5)
            assert book.sequence == sequence

            def expected(side_orders) -> list[tuple]:
                return [(str(o.order_id), Decimal(o.price) * TICK,
                         Decimal(o.quantity - o.filled) * LOT, o.priority) for o in side_orders]

            def local(side_orders) -> list[tuple]:
                return [(o.order_id, o.price, o.quantity, o.priority) for o in side_orders]

            # A new subscriber's snapshot, order by order.
            async with contextlib.aclosing(alice.stream_order_book_l3(SYMBOL)) as stream:
                snapshot = (await anext(stream)).snapshot
            assert snapshot.sequence == sequence
            fresh = LocalL3Book()
            fresh.apply(md_pb2.StreamOrderBookL3Response(snapshot=snapshot))
            assert local(fresh.bids()) == expected(book.bids)
            assert local(fresh.asks()) == expected(book.asks)
            assert partial.order.order_id in fresh.orders
            assert stop.order.order_id not in fresh.orders
            l2 = await alice.get_order_book(SYMBOL)
            assert "60000.00" not in [lv.price for lv in l2.asks]

            # The follower that saw every change since its own snapshot.
            await until(lambda: asyncio.sleep(0, watcher.sequence == sequence),
                        "the L3 follower to reach the sequence")
            assert local(watcher.bids()) == expected(book.bids)
            assert local(watcher.asks()) == expected(book.asks)
            assert watcher.resubscribes == 0 and watcher.deltas > 0
            assert stop.order.order_id not in watcher.orders
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def test_depth_and_interval_view_with_checksums(module_stack: Stack) -> None:
    stack = module_stack
    async with client(stack) as alice, client(stack, "bob") as bob:
        watcher = LocalOrderBook(SYMBOL)
        messages = 0

        async def follow() -> None:
            nonlocal messages
            async for _ in alice.watch_order_book(SYMBOL, book=watcher, depth=5,
                                                  interval_ms=200):
                messages += 1

        task = asyncio.create_task(follow())
        try:
            await until(lambda: asyncio.sleep(0, watcher.ready), "the first snapshot")
            ids = []
            for i in range(8):  # eight levels a side near the spread
                ids.append((await bob.create_order(
                    SYMBOL, "sell", "0.0100", price=f"{70300 + i}")).order.order_id)
                ids.append((await alice.create_order(
                    SYMBOL, "buy", "0.0100", price=f"{69700 - i}")).order.order_id)
            for order_id in ids[:6]:  # the best three of each side leave: others enter
                await (bob if ids.index(order_id) % 2 == 0 else alice).cancel_order(order_id)
            sequence = await settled(alice, stack)
            await until(lambda: asyncio.sleep(0, watcher.sequence == sequence),
                        "the depth-5 follower to reach the sequence")
            expected = await alice.get_order_book(SYMBOL, depth=5)
            assert expected.sequence == sequence
            got = watcher.to_snapshot()
            assert [(lv.price, lv.quantity, lv.order_count) for lv in got.bids] == [
                (lv.price, lv.quantity, lv.order_count) for lv in expected.bids]
            assert [(lv.price, lv.quantity, lv.order_count) for lv in got.asks] == [
                (lv.price, lv.quantity, lv.order_count) for lv in expected.asks]
            assert len(got.bids) == 5 and len(got.asks) == 5
            assert watcher.checksum_mismatches == 0 and watcher.resubscribes == 0
            assert watcher.deltas > 0 and messages > 0
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def test_idle_streams_get_heartbeats_with_their_sequence(module_stack: Stack) -> None:
    stack = module_stack
    async with grpc.aio.insecure_channel(stack.marketdata_addr) as ch:
        md = md_grpc.MarketDataServiceStub(ch)
        for depth in (0, 5):
            call = md.StreamOrderBook(md_pb2.StreamOrderBookRequest(instrument=SYMBOL,
                                                                    depth=depth), timeout=10)
            snapshot = (await call.read()).snapshot
            beat = await call.read()
            assert beat.WhichOneof("update") == "heartbeat"
            assert beat.heartbeat.sequence == snapshot.sequence
            call.cancel()
        call = md.StreamOrderBookL3(md_pb2.StreamOrderBookL3Request(instrument=SYMBOL),
                                    timeout=10)
        snapshot = (await call.read()).snapshot
        beat = await call.read()
        assert beat.WhichOneof("update") == "heartbeat"
        assert beat.heartbeat.sequence == snapshot.sequence
        call.cancel()
        ticker = md.StreamTicker(md_pb2.StreamTickerRequest(instrument=SYMBOL,
                                                            interval_ms=100), timeout=10)
        first, again = (await ticker.read()).ticker, (await ticker.read()).ticker
        assert again.sequence == first.sequence  # the same ticker, nothing changed
        ticker.cancel()


@pytest.mark.parametrize(("call", "request_", "field", "reason"), [
    ("ListCandles", md_pb2.ListCandlesRequest(instrument=SYMBOL), "interval",
     "INVALID_INTERVAL"),
    ("ListCandles", md_pb2.ListCandlesRequest(instrument=SYMBOL, interval=99), "interval",
     "INVALID_INTERVAL"),
    ("ListCandles", md_pb2.ListCandlesRequest(
        instrument=SYMBOL, interval=md_pb2.CANDLE_INTERVAL_ONE_HOUR,
        start_time={"seconds": 1_800_000_000}, end_time={"seconds": 1_700_000_000}),
     "end_time", "INVALID_TIME_RANGE"),
    ("ListCandles", md_pb2.ListCandlesRequest(
        instrument=SYMBOL, interval=md_pb2.CANDLE_INTERVAL_ONE_MINUTE, page_size=-1),
     "page_size", "PAGE_SIZE_INVALID"),
    ("ListCandles", md_pb2.ListCandlesRequest(
        instrument=SYMBOL, interval=md_pb2.CANDLE_INTERVAL_ONE_MINUTE, page_token="x.y"),
     "page_token", "PAGE_TOKEN_INVALID"),
    ("ListCandles", md_pb2.ListCandlesRequest(
        instrument=SYMBOL, interval=md_pb2.CANDLE_INTERVAL_ONE_MINUTE,
        start_time={"seconds": 1, "nanos": -5}), "start_time", "INVALID_TIMESTAMP"),
    ("GetTicker", md_pb2.GetTickerRequest(), "instrument", "INSTRUMENT_REQUIRED"),
    ("StreamOrderBook", md_pb2.StreamOrderBookRequest(instrument=SYMBOL, depth=-1), "depth",
     "INVALID_DEPTH"),
    ("StreamOrderBook", md_pb2.StreamOrderBookRequest(instrument=SYMBOL, interval_ms=5),
     "interval_ms", "INVALID_INTERVAL"),
    ("StreamOrderBook", md_pb2.StreamOrderBookRequest(instrument=SYMBOL, interval_ms=60_001),
     "interval_ms", "INVALID_INTERVAL"),
    ("StreamTicker", md_pb2.StreamTickerRequest(instrument=SYMBOL, interval_ms=50),
     "interval_ms", "INVALID_INTERVAL"),
])
async def test_bad_input_is_invalid_argument(module_stack: Stack, call: str, request_: Any,
                                             field: str, reason: str) -> None:
    async with grpc.aio.insecure_channel(module_stack.marketdata_addr) as ch:
        method = getattr(md_grpc.MarketDataServiceStub(ch), call)
        with pytest.raises(grpc.aio.AioRpcError) as info:
            if call.startswith("Stream"):
                await method(request_, timeout=10).read()
            else:
                await method(request_, timeout=10)
    err = info.value
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, err
    assert error_info(err).reason == reason
    assert [v.field for v in field_violations(err)] == [field]


async def test_unknown_instrument_is_not_found(module_stack: Stack) -> None:
    async with client(module_stack) as c:
        with pytest.raises(Exception) as info:
            await c.get_ticker("NOPE-USD")
    assert getattr(info.value, "reason", None) == "INSTRUMENT_NOT_FOUND"


async def test_the_command_line(module_stack: Stack) -> None:
    stack = module_stack
    async with client(stack) as alice, client(stack, "bob") as bob:
        await trade_some(alice, bob, 2, 70000)
        await bob.create_order(SYMBOL, "sell", "0.5", price="71000")
        await alice.create_order(SYMBOL, "buy", "0.5", price="69000")
        sequence = await settled(alice, stack)
        trades = await all_trades(alice)
    ticker = await run_json(stack, "ticker", SYMBOL)
    assert ticker["sequence"] >= sequence and ticker["last_price"]
    candles = await run_json(stack, "candles", SYMBOL, "--interval", "1h", "--limit", "5")
    assert sum(int(c["trade_count"]) for c in candles["candles"]) == len(trades)
    l3 = await run_json(stack, "book", SYMBOL, "--l3")
    assert l3["sequence"] >= sequence and l3["bids"] and l3["asks"]
    proc = await run(stack, "book", SYMBOL, "--depth", "3", "--interval-ms", "200", "--watch",
                     "--duration", "1", "--json")
    assert proc.returncode == 0, proc.stderr
    states = [json.loads(line) for line in proc.stdout.splitlines()]
    assert states and all(len(s["bids"]) <= 3 for s in states)
    proc = await run(stack, "ticker", SYMBOL, "--watch", "--duration", "1")
    assert proc.returncode == 0 and "last" in proc.stdout, proc.stderr
    proc = await run(stack, "candles", SYMBOL, "--interval", "2m")
    assert proc.returncode == 2  # not an interval: argparse refuses it
