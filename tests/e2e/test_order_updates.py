"""Your own orders as they change (issue 14): StreamOrderUpdates, exactly once and
resumable, with real processes.

alice follows her account from sequence 0 (two subscribers at once) while she and bob
trade on BTC-USD and ETH-USD; the matching pod that owns BTC-USD is SIGKILLed (the
standby takes it over) and then the order service is restarted: the library's
``order_updates`` subscribes again after its last sequence each time. At the end each
subscriber's updates are exactly the rows of PostgreSQL for the account (sequences 1..N,
no gap, no duplicate), both subscribers got the same ones, they agree with ListFills and
GetOrder, and bob's subscriber never saw one of alice's orders.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import asyncpg
import grpc
import pytest
from e2e_helpers import matching_stacks, meta, run
from redis.asyncio import Redis

from exchange.common.v1 import common_pb2 as cpb
from exchange.order.v1 import order_pb2 as opb
from exchange.order.v1 import order_pb2_grpc as opb_grpc
from exchange_client.aio import AsyncExchangeClient
from exchange_client.errors import ExchangeError
from exchange_client.sync import ExchangeClient
from exchange_common.streams import ORDER_UPDATES_CHANNEL
from exchange_dev.stack import Stack

pytestmark = pytest.mark.e2e

KEYS = {"alice": "updates-key-alice-0123456789", "bob": "updates-key-bob-0123456789"}
BTC, ETH = 1, 2
COMMON = {"EXCHANGE_OWNER_SESSION_TIMEOUT": "3.0", "EXCHANGE_OWNERSHIP_POLL": "0.5"}


@pytest.fixture
async def two_matching(database_url: str, redis_url: str, tmp_path: Path
                       ) -> AsyncIterator[Callable[[], Awaitable[Stack]]]:
    """The stack with matching A (BTC-USD) and B (ETH-USD, and standby for BTC-USD)."""
    async with matching_stacks(database_url, redis_url, KEYS, tmp_path / "logs") as start:

        async def build() -> Stack:
            return await start(
                {"matching": {**COMMON, "EXCHANGE_MATCHING_INSTRUMENTS": "BTC-USD"},
                 "matching-b": {**COMMON, "EXCHANGE_MATCHING_INSTRUMENTS": "BTC-USD,ETH-USD"}})

        yield build


class Follower:
    """A subscriber through the client library, from ``after``."""

    def __init__(self, stack: Stack, who: str, after: int | None = 0) -> None:
        self.client = AsyncExchangeClient(stack.order_addr, api_key=stack.keys[who])
        self.updates: list[opb.OrderUpdate] = []
        self.task = asyncio.create_task(self._run(after))

    async def _run(self, after: int | None) -> None:
        async for update in self.client.order_updates(after, max_backoff=0.5):
            self.updates.append(update)

    async def until(self, sequence: int, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while not self.updates or self.updates[-1].sequence < sequence:
            assert not self.task.done(), self.task.exception()
            assert time.monotonic() < deadline, (
                f"at {self.updates[-1].sequence if self.updates else 0}, not {sequence}")
            await asyncio.sleep(0.05)

    async def close(self) -> None:
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task
        await self.client.close()


async def place(client: AsyncExchangeClient, coid: str, instrument: str, side: str,
                quantity: str, price: str | None, kind: str = "limit") -> None:
    """Until placed: the same client_order_id makes every retry safe."""
    deadline = time.monotonic() + 30
    while True:
        try:
            await client.create_order(instrument, side, quantity, price=price, type=kind,
                                      client_order_id=coid)
            return
        except ExchangeError as err:
            if err.code not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED,
                                grpc.StatusCode.RESOURCE_EXHAUSTED):
                raise
            assert time.monotonic() < deadline, f"{coid}: {err}"
            await asyncio.sleep(0.2)


async def trade_round(alice: AsyncExchangeClient, bob: AsyncExchangeClient, tag: str) -> None:
    """alice rests bids and asks on both instruments, bob takes some of each; alice
    cancels one; a market order expires its remainder."""
    for symbol, price in (("BTC-USD", "70000.00"), ("ETH-USD", "3000.00")):
        await place(alice, f"{tag}-{symbol}-bid", symbol, "buy", "0.02", price)
        await place(alice, f"{tag}-{symbol}-ask", symbol, "sell", "0.03",
                    str(int(price.split(".")[0]) + 10) + ".00")
        await place(bob, f"{tag}-{symbol}-hit", symbol, "sell", "0.01", price)
        await place(bob, f"{tag}-{symbol}-lift", symbol, "buy", "0.05", None, kind="market")
    deadline = time.monotonic() + 30
    while True:  # the bid is half filled: the cancel removes the rest
        try:
            await alice.cancel_order(client_order_id=f"{tag}-BTC-USD-bid")
            return
        except ExchangeError as err:
            if err.reason == "ORDER_NOT_OPEN":
                return  # a retry of a cancel that was committed
            if err.code != grpc.StatusCode.UNAVAILABLE:
                raise
            assert time.monotonic() < deadline, err
            await asyncio.sleep(0.2)


async def latest(conn: asyncpg.Connection, account_id: int) -> int:
    return await conn.fetchval(
        "SELECT coalesce(max(sequence), 0) FROM order_updates WHERE account_id = $1",
        account_id)


async def test_resumes_across_kill_and_restart_exactly_once(two_matching) -> None:
    async with asyncio.timeout(240):
        stack = await two_matching()
        conn = await asyncpg.connect(stack.database_url)
        alice_id, bob_id = stack.account_ids["alice"], stack.account_ids["bob"]
        followers = [Follower(stack, "alice"), Follower(stack, "alice"),
                     Follower(stack, "bob")]
        alice = AsyncExchangeClient(stack.order_addr, api_key=stack.keys["alice"])
        bob = AsyncExchangeClient(stack.order_addr, api_key=stack.keys["bob"])
        try:
            await trade_round(alice, bob, "r1")
            first = await latest(conn, alice_id)
            await followers[0].until(first)

            # BTC-USD's owner is killed in the middle of a round (once its first order
            # is committed): the standby takes it over, the round's orders retry.
            second = asyncio.create_task(trade_round(alice, bob, "r2"))
            await followers[0].until(first + 1)
            stack.kill_service("matching")
            await second

            await stack.stop_service("order")
            await stack.start_service("order")
            await trade_round(alice, bob, "r3")

            n = await latest(conn, alice_id)
            for follower in followers[:2]:
                await follower.until(n)
            await followers[2].until(await latest(conn, bob_id))
            rows = await conn.fetch(
                "SELECT sequence, order_id, kind FROM order_updates WHERE account_id = $1 "
                "ORDER BY sequence", alice_id)
            assert [r["sequence"] for r in rows] == list(range(1, n + 1))
            # Each round: 4 accepted, 2 fills of her bids, 2 of her asks, 1 cancel.
            assert n == 3 * 9
            for follower in followers[:2]:
                assert [u.sequence for u in follower.updates] == list(range(1, n + 1))
                assert [int(u.order.order_id) for u in follower.updates] == [
                    r["order_id"] for r in rows]
            assert followers[0].updates == followers[1].updates

            # As PostgreSQL renders them now (a fresh subscriber from 0).
            fresh = Follower(stack, "alice")
            await fresh.until(n)
            await fresh.close()
            assert fresh.updates == followers[0].updates

            # Each of alice's fills once; each order's last update is the order now.
            fills = [f async for f in alice.iter_fills()]
            streamed = [u.fill for u in followers[0].updates
                        if u.kind == opb.ORDER_UPDATE_KIND_FILL]
            assert sorted((f.trade_id, f.order_id) for f in streamed) == sorted(
                (f.trade_id, f.order_id) for f in fills)
            assert {(f.trade_id, f.order_id): f for f in streamed} == {
                (f.trade_id, f.order_id): f for f in fills}
            last = {u.order.order_id: u.order for u in followers[0].updates}
            for order_id, order in last.items():
                assert (await alice.get_order(order_id)).order == order
            kinds = {u.kind for u in followers[0].updates}
            assert {opb.ORDER_UPDATE_KIND_ACCEPTED, opb.ORDER_UPDATE_KIND_FILL,
                    opb.ORDER_UPDATE_KIND_CANCELLED} <= kinds

            bob_orders = {r["order_id"] for r in await conn.fetch(
                "SELECT order_id FROM orders WHERE account_id = $1", bob_id)}
            assert followers[2].updates
            assert {int(u.order.order_id) for u in followers[2].updates} <= bob_orders
        finally:
            for follower in followers:
                await follower.close()
            await alice.close()
            await bob.close()
            await conn.close()


async def test_after_sequence_rules_and_heartbeat(stack) -> None:
    async with grpc.aio.insecure_channel(stack.order_addr) as channel:
        stub = opb_grpc.OrderServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as bad:
            await stub.StreamOrderUpdates(
                opb.StreamOrderUpdatesRequest(after_sequence=-1),
                metadata=meta(stack, "alice"), timeout=10).read()
        assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        with pytest.raises(grpc.aio.AioRpcError) as ahead:
            await stub.StreamOrderUpdates(
                opb.StreamOrderUpdatesRequest(after_sequence=5),
                metadata=meta(stack, "alice"), timeout=10).read()
        assert ahead.value.code() == grpc.StatusCode.OUT_OF_RANGE
        # Nothing yet: the first message is a heartbeat with the latest sequence (0);
        # then a new order arrives as ACCEPTED, sequence 1, with the whole order.
        call = stub.StreamOrderUpdates(opb.StreamOrderUpdatesRequest(),
                                       metadata=meta(stack, "alice"), timeout=30)
        first = await call.read()
        assert (list(first.updates), first.last_sequence) == ([], 0)
        created = await stub.CreateOrder(opb.CreateOrderRequest(
            instrument="BTC-USD", side=cpb.SIDE_BUY, type=cpb.ORDER_TYPE_LIMIT,
            price="69000.00", quantity="0.01", client_order_id="u1"),
            metadata=meta(stack, "alice"), timeout=10)
        message = await call.read()
        assert [u.sequence for u in message.updates] == [1]
        update = message.updates[0]
        assert update.kind == opb.ORDER_UPDATE_KIND_ACCEPTED
        assert update.order == created.order
        assert message.last_sequence == 1
        call.cancel()


async def test_order_entry_session_carries_the_updates(stack) -> None:
    """SessionOptions.order_updates: the session's responses carry the account's updates
    (its own orders' and those another caller caused), as StreamOrderUpdates sends them;
    a bad updates_after_sequence is an error event and the session goes on."""
    async with grpc.aio.insecure_channel(stack.order_addr) as channel:
        stub = opb_grpc.OrderServiceStub(channel)
        session = stub.OrderEntry(metadata=meta(stack, "alice"), timeout=60)
        await session.write(opb.OrderEntryRequest(options=opb.SessionOptions(
            order_updates=True, updates_after_sequence=7)))
        refused = await session.read()
        assert refused.events[0].error.code == grpc.StatusCode.OUT_OF_RANGE.value[0]
        await session.write(opb.OrderEntryRequest(
            options=opb.SessionOptions(order_updates=True, updates_after_sequence=0),
            commands=[opb.OrderEntryCommand(create=opb.CreateOrderRequest(
                instrument="BTC-USD", side=cpb.SIDE_SELL, type=cpb.ORDER_TYPE_LIMIT,
                price="70000.00", quantity="0.02", client_order_id="s1"))]))
        updates: list[opb.OrderUpdate] = []
        events: list[opb.OrderEntryEvent] = []

        async def read_until(done) -> None:
            while not done():
                response = await session.read()
                updates.extend(response.updates)
                events.extend(response.events)
                if response.updates:
                    assert response.updates_last_sequence == response.updates[-1].sequence

        await read_until(lambda: events)  # alice's order rests
        # bob takes half of it, outside the session
        await stub.CreateOrder(opb.CreateOrderRequest(
            instrument="BTC-USD", side=cpb.SIDE_BUY, type=cpb.ORDER_TYPE_LIMIT,
            price="70000.00", quantity="0.01", client_order_id="b1"),
            metadata=meta(stack, "bob"), timeout=10)
        await read_until(lambda: len(updates) >= 2)
        assert [(u.sequence, u.kind) for u in updates] == [
            (1, opb.ORDER_UPDATE_KIND_ACCEPTED), (2, opb.ORDER_UPDATE_KIND_FILL)]
        assert updates[1].order.state == cpb.ORDER_STATE_PARTIALLY_FILLED
        assert updates[1].fill.liquidity == cpb.LIQUIDITY_MAKER
        assert events[0].order.order_id == updates[0].order.order_id
        # The same as a stream from 0.
        call = stub.StreamOrderUpdates(opb.StreamOrderUpdatesRequest(after_sequence=0),
                                       metadata=meta(stack, "alice"), timeout=10)
        assert list((await call.read()).updates) == updates
        call.cancel()
        await session.done_writing()


async def test_cli_and_blocking_client_replay_the_updates(stack) -> None:
    key = stack.keys["alice"]
    async with AsyncExchangeClient(stack.order_addr, api_key=key) as client:
        await client.create_order("BTC-USD", "buy", "0.01", price="69000", client_order_id="c1")
        await client.cancel_order(client_order_id="c1")
    proc = await run(stack, "order", "updates", "--after", "0", "--duration", "3", "--json",
                     key=key)
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [(u["sequence"], u["kind"], u["order"]["state"]) for u in lines] == [
        (1, "ORDER_UPDATE_KIND_ACCEPTED", "ORDER_STATE_NEW"),
        (2, "ORDER_UPDATE_KIND_CANCELLED", "ORDER_STATE_CANCELLED")]
    proc = await run(stack, "order", "updates", "--after", "1", "--duration", "2", key=key)
    assert proc.returncode == 0, proc.stderr
    assert "cancelled" in proc.stdout and "accepted" not in proc.stdout

    def blocking() -> list[int]:
        with ExchangeClient(stack.order_addr, api_key=key) as sync:
            updates = sync.order_updates(after=0)
            got = [next(updates).sequence, next(updates).sequence]
            updates.close()
            return got

    assert await asyncio.to_thread(blocking) == [1, 2]
    proc = await run(stack, "order", "updates", "--after", "9", key=key)
    assert proc.returncode == 1 and "OUT_OF_RANGE" in proc.stderr


async def test_a_lost_subscription_loses_no_update(stack) -> None:
    """The order service's Redis subscription (its wake-up) is killed, and the wake-ups
    published meanwhile are lost: the updates committed then still arrive, in order."""
    redis = Redis.from_url(stack.redis_url)
    wake_ups = redis.pubsub(ignore_subscribe_messages=True)
    await wake_ups.subscribe(ORDER_UPDATES_CHANNEL)
    follower = Follower(stack, "alice")
    try:
        async with AsyncExchangeClient(stack.order_addr, api_key=stack.keys["alice"]) as alice:
            await alice.create_order("BTC-USD", "buy", "0.01", price="69000",
                                     client_order_id="l1")
            await follower.until(1)
            # The matching pod published the wake-up: alice's account at sequence 1.
            account = stack.account_ids["alice"]
            message = None
            async with asyncio.timeout(30):
                while message is None:
                    message = await wake_ups.get_message(timeout=1)
            assert f"{account}:1".encode() in message["data"].split(b",")
            assert await redis.execute_command("CLIENT", "KILL", "TYPE", "pubsub") >= 1
            for i in range(3):
                await alice.create_order("BTC-USD", "buy", "0.01", price="69000",
                                         client_order_id=f"l{i + 2}")
            await follower.until(4)
        assert [u.sequence for u in follower.updates] == [1, 2, 3, 4]
    finally:
        await follower.close()
        await wake_ups.aclose()
        await redis.aclose()
