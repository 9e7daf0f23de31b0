"""Market data with ``EXCHANGE_MARKETDATA_WORKERS=2``: two real processes on one port.

- Subscribers on separate connections land on both workers (seen from the kernel's socket
  table), and every one of them follows the book to what GetOrderBook says.
- A worker killed with SIGKILL is started again by worker 0; a subscriber that was on it gets
  UNAVAILABLE and its resubscription is served.
- When worker 0 is killed with SIGKILL, the other worker stops by itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import grpc
import pytest
from book_checks import Levels, apply, book_view
from e2e_helpers import established_on, gone, meta, own_channel, wait_for, worker_pids

from exchange.common.v1 import common_pb2 as cpb
from exchange.marketdata.v1 import marketdata_pb2 as md_pb2
from exchange.marketdata.v1 import marketdata_pb2_grpc as md_grpc
from exchange.order.v1 import order_pb2 as opb
from exchange.order.v1 import order_pb2_grpc as opb_grpc
from exchange_client.book import LocalOrderBook
from exchange_dev.stack import Stack

pytestmark = pytest.mark.e2e

KEYS = {"alice": "workers-key-alice-0123456789"}
SUBSCRIBERS = 16
WAIT = 20.0  # seconds for anything to happen before the test fails


@pytest.fixture
async def stack(database_url: str, redis_url: str, tmp_path: Path) -> AsyncIterator[Stack]:
    async with Stack(database_url=database_url, redis_url=redis_url, keys=KEYS,
                     log_dir=tmp_path / "logs",
                     service_env={"marketdata": {"EXCHANGE_MARKETDATA_WORKERS": "2"}}
                     ).running(40) as s:
        yield s



class Follower:
    """One StreamOrderBook subscriber keeping the L2 book; a gap in the stream ends it
    (``SequenceGap``), so it never reaches the sequence a test waits for."""

    def __init__(self, addr: str) -> None:
        self.channel = own_channel(addr)
        self.book = LocalOrderBook("BTC-USD")
        self.ready = asyncio.Event()  # the first snapshot is applied
        self.error: grpc.aio.AioRpcError | None = None
        self.task = asyncio.create_task(self._follow())

    async def _follow(self) -> None:
        stub = md_grpc.MarketDataServiceStub(self.channel)
        try:
            async for msg in stub.StreamOrderBook(
                    md_pb2.StreamOrderBookRequest(instrument="BTC-USD")):
                apply(self.book, msg)
                self.ready.set()
        except grpc.aio.AioRpcError as err:
            self.error = err

    def levels(self) -> tuple[Levels, Levels]:
        _, bids, asks = book_view(self.book)
        return bids, asks

    async def close(self) -> None:
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task
        await self.channel.close()





async def place_orders(stack: Stack, count: int) -> None:
    async with grpc.aio.insecure_channel(stack.order_addr) as channel:
        stub = opb_grpc.OrderServiceStub(channel)
        for i in range(count):
            side = cpb.SIDE_BUY if i % 2 == 0 else cpb.SIDE_SELL
            price = 69_000 - i if side == cpb.SIDE_BUY else 71_000 + i
            await stub.CreateOrder(opb.CreateOrderRequest(
                instrument="BTC-USD", side=side, type=cpb.ORDER_TYPE_LIMIT,
                time_in_force=cpb.TIME_IN_FORCE_GTC, price=f"{price}.00", quantity="0.0100",
                client_order_id=f"w-{time.monotonic_ns()}-{i}"),
                metadata=meta(stack, "alice"), timeout=10)


async def committed_sequence(stack: Stack, instrument_id: int = 1) -> int:
    conn = await asyncpg.connect(stack.database_url)
    try:
        return await conn.fetchval(
            "SELECT last_sequence FROM instrument_state WHERE instrument_id = $1",
            instrument_id)
    finally:
        await conn.close()


async def current_book(stack: Stack) -> tuple[int, tuple[Levels, Levels]]:
    """GetOrderBook's sequence, and its bids and asks as sent."""
    async with own_channel(stack.marketdata_addr) as channel:
        r = await md_grpc.MarketDataServiceStub(channel).GetOrderBook(
            md_pb2.GetOrderBookRequest(instrument="BTC-USD"), timeout=10)
    sequence, bids, asks = book_view(r)
    return sequence, (bids, asks)


async def test_subscribers_are_spread_over_both_workers_and_follow_the_book(stack: Stack):
    parent = stack.processes["marketdata"].pid
    port = int(stack.marketdata_addr.rpartition(":")[2])
    children = worker_pids(stack, "marketdata")
    assert len(children) == 1, children
    followers = [Follower(stack.marketdata_addr) for _ in range(SUBSCRIBERS)]
    try:
        await asyncio.wait_for(asyncio.gather(*(f.ready.wait() for f in followers)), WAIT)
        on_parent = established_on(parent, port)
        on_child = established_on(children[0], port)
        # SO_REUSEPORT hashes each connection to one listener: with 16 connections both get
        # some (all on one side has a chance of 2 in 65,536).
        assert on_parent >= 1 and on_child >= 1, (on_parent, on_child)
        assert on_parent + on_child >= SUBSCRIBERS

        await place_orders(stack, 20)
        sequence, _ = await current_book(stack)
        await wait_for(lambda: all(f.book.sequence >= sequence for f in followers),
                       "every subscriber to reach the last sequence")
        _, book = await current_book(stack)
        assert len(book[0]) == 10 and len(book[1]) == 10
        for f in followers:
            assert f.error is None
            assert f.levels() == book
    finally:
        for f in followers:
            await f.close()


async def test_a_killed_worker_is_started_again(stack: Stack):
    port = int(stack.marketdata_addr.rpartition(":")[2])
    (child,) = worker_pids(stack, "marketdata")
    followers = [Follower(stack.marketdata_addr) for _ in range(SUBSCRIBERS)]
    try:
        await asyncio.wait_for(asyncio.gather(*(f.ready.wait() for f in followers)), WAIT)
        assert established_on(child, port) >= 1
        os.kill(child, signal.SIGKILL)
        # The subscribers that were on it are told to come back.
        await wait_for(lambda: any(f.error is not None for f in followers),
                       "the killed worker's subscribers to see their streams end")
        for f in followers:
            if f.error is not None:
                assert f.error.code() == grpc.StatusCode.UNAVAILABLE
        await wait_for(lambda: worker_pids(stack, "marketdata") not in ([], [child]),
                       "worker 0 to start the worker again")
        # Resubscribing works, and new connections reach the new worker once it is serving.
        (new_child,) = worker_pids(stack, "marketdata")
        await place_orders(stack, 4)
        # The book as committed: market data follows asynchronously, so read it until
        # the process answering has applied everything placed.
        committed = await committed_sequence(stack)
        deadline = time.monotonic() + WAIT
        while (found := await current_book(stack))[0] < committed:
            assert time.monotonic() < deadline, "market data never reached the commit"
            await asyncio.sleep(0.05)
        sequence, book = found

        def spread() -> bool:
            return established_on(new_child, port) >= 1

        late: list[Follower] = []
        deadline = time.monotonic() + WAIT
        while not spread():
            assert time.monotonic() < deadline, "no connection reached the new worker"
            f = Follower(stack.marketdata_addr)
            late.append(f)
            followers.append(f)
            # Refused (UNAVAILABLE) while the new worker is still loading: try another.
            await asyncio.wait([asyncio.ensure_future(f.ready.wait()), f.task], timeout=5,
                               return_when=asyncio.FIRST_COMPLETED)
        ready = [f for f in late if f.ready.is_set()]
        assert ready
        for f in ready:
            assert f.book.sequence >= sequence
            assert f.levels() == book
    finally:
        for f in followers:
            await f.close()


async def test_workers_stop_when_worker_0_is_killed(stack: Stack):
    (child,) = worker_pids(stack, "marketdata")
    stack.kill_service("marketdata")
    await wait_for(lambda: gone(child), "the worker to stop after worker 0 (it outlived it)",
                   WAIT)


async def test_stopping_worker_0_stops_the_others(stack: Stack):
    (child,) = worker_pids(stack, "marketdata")
    assert await stack.stop_service("marketdata") == 0
    assert gone(child)


@pytest.fixture
async def stack_without_token_key(database_url: str, redis_url: str, tmp_path: Path
                                  ) -> AsyncIterator[Stack]:
    async with Stack(database_url=database_url, redis_url=redis_url, keys=KEYS,
                     log_dir=tmp_path / "logs",
                     service_env={"marketdata": {"EXCHANGE_MARKETDATA_WORKERS": "2",
                                                 "EXCHANGE_PAGE_TOKEN_KEY": ""}}
                     ).running(40) as s:
        yield s


async def test_a_page_token_from_one_worker_works_on_the_other(stack_without_token_key):
    """Without EXCHANGE_PAGE_TOKEN_KEY, worker 0 signs with a random key and gives it to
    its workers, so a client's next page may reach either."""
    stack = stack_without_token_key
    port = int(stack.marketdata_addr.rpartition(":")[2])
    async with grpc.aio.insecure_channel(stack.order_addr) as channel:
        orders = opb_grpc.OrderServiceStub(channel)
        for i in range(3):
            await orders.CreateOrder(opb.CreateOrderRequest(
                instrument="BTC-USD", side=cpb.SIDE_BUY, type=cpb.ORDER_TYPE_LIMIT,
                price=f"{69_000 + i}.00", quantity="0.0100"), metadata=meta(stack, "alice"),
                timeout=10)
        # Alice trades with herself: allowed only without self-trade prevention.
        await orders.CreateOrder(opb.CreateOrderRequest(
            instrument="BTC-USD", side=cpb.SIDE_SELL, type=cpb.ORDER_TYPE_MARKET,
            quantity="0.0300", self_trade_prevention=cpb.SELF_TRADE_PREVENTION_NONE),
            metadata=meta(stack, "alice"), timeout=10)
    channels = [own_channel(stack.marketdata_addr) for _ in range(SUBSCRIBERS)]
    try:
        stubs = [md_grpc.MarketDataServiceStub(c) for c in channels]
        first: md_pb2.ListTradesResponse | None = None
        deadline = time.monotonic() + WAIT
        while first is None or not first.next_page_token:  # until market data has them
            assert time.monotonic() < deadline, "market data never showed the trades"
            first = await stubs[0].ListTrades(md_pb2.ListTradesRequest(
                instrument="BTC-USD", page_size=1), timeout=10)
        for stub in stubs[1:]:
            await stub.ListInstruments(md_pb2.ListInstrumentsRequest(), timeout=10)
        (child,) = worker_pids(stack, "marketdata")
        parent = stack.processes["marketdata"].pid
        # Both workers hold some of the connections (all on one has a chance of 2 in 65,536).
        assert established_on(parent, port) >= 1 and established_on(child, port) >= 1
        for stub in stubs:
            page = await stub.ListTrades(md_pb2.ListTradesRequest(
                instrument="BTC-USD", page_size=1, page_token=first.next_page_token),
                timeout=10)
            assert len(page.trades) == 1
            assert int(page.trades[0].trade_id) < int(first.trades[0].trade_id)
    finally:
        for c in channels:
            await c.close()
