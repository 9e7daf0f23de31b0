"""GetBook shows only committed state, even while batches are being committed."""

from __future__ import annotations

import asyncio
import random

import asyncpg
import grpc
import pytest
from e2e_helpers import meta

from exchange.common.v1 import common_pb2 as cpb
from exchange.matching.v1 import matching_pb2 as mpb
from exchange.matching.v1 import matching_pb2_grpc as mpb_grpc
from exchange.order.v1 import order_pb2 as opb
from exchange.order.v1 import order_pb2_grpc as opb_grpc

pytestmark = pytest.mark.e2e


async def test_getbook_never_ahead_of_the_commit(stack) -> None:
    stop = asyncio.Event()

    async def load(who: str, seed: int) -> None:
        rng = random.Random(seed)
        async with grpc.aio.insecure_channel(stack.order_addr) as ch:
            orders = opb_grpc.OrderServiceStub(ch)
            metadata = meta(stack, who)
            while not stop.is_set():
                await orders.CreateOrder(opb.CreateOrderRequest(
                    instrument="BTC-USD", side=rng.choice([cpb.SIDE_BUY, cpb.SIDE_SELL]),
                    type=cpb.ORDER_TYPE_LIMIT, price=f"{rng.randint(69990, 70010)}",
                    quantity="0.01"), metadata=metadata, timeout=10)

    loaders = [asyncio.create_task(load(w, i)) for i, w in enumerate(["alice", "bob"] * 4)]
    conn = await asyncpg.connect(stack.database_url)
    polls = ahead = 0
    try:
        async with stack.matching_channel() as ch:
            matching = mpb_grpc.MatchingServiceStub(ch)
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 4
            while loop.time() < deadline:
                book = await matching.GetBook(mpb.GetBookRequest(instrument_id=1), timeout=5)
                committed = await conn.fetchval(
                    "SELECT last_sequence FROM instrument_state WHERE instrument_id = 1")
                polls += 1
                if book.sequence > committed:
                    ahead += 1
                # the book it shows is internally consistent with its sequence
                assert all(o.last_sequence <= book.sequence for o in [*book.bids, *book.asks])
    finally:
        stop.set()
        await asyncio.gather(*loaders, return_exceptions=True)
        await conn.close()
    assert polls > 20 and book.sequence > 50, (polls, book.sequence)
    assert ahead == 0, f"GetBook was ahead of the committed sequence in {ahead}/{polls} polls"
