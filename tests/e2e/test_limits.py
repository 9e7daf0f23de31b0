"""Rate limits and caps against the real services: per-account token buckets shared by
order-service processes, the open-order cap, failed authentications per address,
streams per connection and subscribers per process. Each refusal is
RESOURCE_EXHAUSTED with a reason and a RetryInfo, and places nothing."""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncpg
import grpc
import pytest
from e2e_helpers import meta
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from exchange.admin.v1 import admin_pb2 as apb
from exchange.admin.v1 import admin_pb2_grpc as apb_grpc
from exchange.common.v1 import common_pb2 as cpb
from exchange.marketdata.v1 import marketdata_pb2 as mdpb
from exchange.marketdata.v1 import marketdata_pb2_grpc as mdpb_grpc
from exchange.order.v1 import order_pb2 as opb
from exchange.order.v1 import order_pb2_grpc as opb_grpc
from exchange_common.errors import error_info
from exchange_dev.stack import Stack

LIMITS_ENV = {
    "EXCHANGE_MAX_FAILED_AUTH_PER_MINUTE": "5",
    "EXCHANGE_MAX_STREAMS_PER_CONNECTION": "2",
    "EXCHANGE_MAX_SUBSCRIBERS": "3",
}


@pytest.fixture
async def limited(database_url: str, redis_url: str, tmp_path: Path):
    keys = {"alice": "test-key-alice-0123456789", "bob": "test-key-bob-0123456789"}
    async with Stack(database_url=database_url, redis_url=redis_url, keys=keys,
                     log_dir=tmp_path / "logs", env=LIMITS_ENV).running(40) as s:
        yield s


def retry_delay(err: grpc.aio.AioRpcError) -> float | None:
    status = rpc_status.from_call(err)
    for detail in status.details if status else ():
        if detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            info = error_details_pb2.RetryInfo()
            detail.Unpack(info)
            return info.retry_delay.ToNanoseconds() / 1e9
    return None


def exhausted(err: BaseException, why: str) -> None:
    assert isinstance(err, grpc.aio.AioRpcError), err
    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, err
    assert error_info(err).reason == why, err
    assert retry_delay(err) is not None and retry_delay(err) > 0, err


def limit_order(i: int, price: str = "60000") -> opb.CreateOrderRequest:
    return opb.CreateOrderRequest(instrument="BTC-USD", side=cpb.SIDE_BUY,
                                  type=cpb.ORDER_TYPE_LIMIT, price=price, quantity="0.01",
                                  client_order_id=f"o-{i}")


async def new_trader(stack: Stack, name: str, tier: apb.RateTier) -> tuple[str, ...]:
    """An account in its own tier; its key as call metadata."""
    async with grpc.aio.insecure_channel(stack.order_addr) as channel:
        admin = apb_grpc.AdminServiceStub(channel)
        meta = (("x-admin-key", stack.admin_key),)
        await admin.SetRateTier(apb.SetRateTierRequest(tier=tier), metadata=meta, timeout=5)
        await admin.CreateAccount(apb.CreateAccountRequest(name=name, tier=tier.name),
                                  metadata=meta, timeout=5)
        made = await admin.CreateApiKey(apb.CreateApiKeyRequest(account=name),
                                        metadata=meta, timeout=5)
        # Money for far more orders than any limit lets through: the limits refuse them.
        await admin.Deposit(apb.TransferRequest(account=name, asset="USD", amount="100000000",
                                                idempotency_key=f"{name}-funding"),
                            metadata=meta, timeout=5)
    return (("x-api-key", made.secret),)


async def placed(stack: Stack, prefix: str) -> int:
    conn = await asyncpg.connect(stack.database_url)
    try:
        return await conn.fetchval(
            "SELECT count(*) FROM orders WHERE starts_with(client_order_id, $1)", prefix)
    finally:
        await conn.close()


async def test_rate_limit_is_shared_by_order_service_processes(limited: Stack) -> None:
    stack = limited
    other = stack.add_order("order-b")
    await stack.start_service("order-b")
    meta = await new_trader(stack, "dana", apb.RateTier(
        name="slow", orders_per_second=1, orders_burst=6, cancels_per_second=1,
        cancels_burst=1, queries_per_second=1, queries_burst=2))
    async with grpc.aio.insecure_channel(stack.order_addr) as ca, \
            grpc.aio.insecure_channel(other) as cb:
        a, b = opb_grpc.OrderServiceStub(ca), opb_grpc.OrderServiceStub(cb)
        results = []
        for i in range(8):  # alternately on both processes
            stub = a if i % 2 else b
            try:
                results.append(await stub.CreateOrder(limit_order(i), metadata=meta,
                                                      timeout=5))
            except grpc.aio.AioRpcError as err:
                results.append(err)
        ok = [r for r in results if not isinstance(r, Exception)]
        assert len(ok) == 6
        for err in results[6:]:
            exhausted(err, "RATE_LIMITED")
        assert await placed(stack, "o-") == 6
        # Queries have their own bucket.
        await a.ListOrders(opb.ListOrdersRequest(), metadata=meta, timeout=5)
        await b.ListOrders(opb.ListOrdersRequest(), metadata=meta, timeout=5)
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await a.GetOrder(opb.GetOrderRequest(order_id=ok[0].order.order_id),
                             metadata=meta, timeout=5)
        exhausted(refused.value, "RATE_LIMITED")


async def test_order_entry_message_is_limited_command_by_command(limited: Stack) -> None:
    stack = limited
    meta = await new_trader(stack, "erin", apb.RateTier(
        name="five", orders_per_second=1, orders_burst=5, cancels_per_second=100,
        cancels_burst=100, queries_per_second=100, queries_burst=100))
    async with grpc.aio.insecure_channel(stack.order_addr) as channel:
        call = opb_grpc.OrderServiceStub(channel).OrderEntry(metadata=meta)
        await call.write(opb.OrderEntryRequest(commands=[
            opb.OrderEntryCommand(create=limit_order(i)) for i in range(8)]))
        events = []
        while len(events) < 8:
            events.extend((await asyncio.wait_for(call.read(), 10)).events)
        call.cancel()
    good = sorted(e.client_order_id for e in events if e.HasField("order"))
    limited_ids = sorted(e.client_order_id for e in events if e.HasField("error"))
    assert len(good) == 5 and len(limited_ids) == 3
    for event in events:
        if event.HasField("error"):
            assert event.error.code == grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]
    assert await placed(stack, "o-") == 5


async def test_open_order_cap_per_instrument(limited: Stack) -> None:
    stack = limited
    meta = await new_trader(stack, "fred", apb.RateTier(
        name="capped", orders_per_second=100, orders_burst=100, cancels_per_second=100,
        cancels_burst=100, queries_per_second=100, queries_burst=100, max_open_orders=2))
    async with grpc.aio.insecure_channel(stack.order_addr) as channel:
        stub = opb_grpc.OrderServiceStub(channel)
        first = await stub.CreateOrder(limit_order(1), metadata=meta, timeout=5)
        await stub.CreateOrder(limit_order(2), metadata=meta, timeout=5)
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.CreateOrder(limit_order(3), metadata=meta, timeout=5)
        exhausted(refused.value, "OPEN_ORDER_LIMIT")
        # Other instruments have their own count; an order that cannot rest is no worry.
        eth = opb.CreateOrderRequest(instrument="ETH-USD", side=cpb.SIDE_BUY,
                                     type=cpb.ORDER_TYPE_LIMIT, price="3000", quantity="0.01",
                                     client_order_id="o-eth")
        await stub.CreateOrder(eth, metadata=meta, timeout=5)
        ioc = limit_order(4)
        ioc.time_in_force = cpb.TIME_IN_FORCE_IOC
        assert (await stub.CreateOrder(ioc, metadata=meta, timeout=5)).order.state == \
            cpb.ORDER_STATE_EXPIRED
        await stub.CancelOrder(opb.CancelOrderRequest(order_id=first.order.order_id),
                               metadata=meta, timeout=5)
        await stub.CreateOrder(limit_order(5), metadata=meta, timeout=5)
    assert await placed(stack, "o-3") == 0


async def test_failed_authentications_are_bounded_per_address(limited: Stack) -> None:
    stack = limited
    alice = meta(stack)
    async with grpc.aio.insecure_channel(stack.order_addr) as channel:
        stub = opb_grpc.OrderServiceStub(channel)
        await stub.ListOrders(opb.ListOrdersRequest(), metadata=alice, timeout=5)  # cached
        codes = []
        for i in range(8):
            try:
                await stub.ListOrders(opb.ListOrdersRequest(),
                                      metadata=(("x-api-key", f"guess-{i}"),), timeout=5)
            except grpc.aio.AioRpcError as err:
                codes.append((err.code(), error_info(err).reason))
                last = err
        assert codes[:5] == [(grpc.StatusCode.UNAUTHENTICATED, "API_KEY_INVALID")] * 5
        assert codes[5:] == [(grpc.StatusCode.RESOURCE_EXHAUSTED, "AUTH_RATE_LIMITED")] * 3
        exhausted(last, "AUTH_RATE_LIMITED")
        # A key the process already knows still works from that address.
        await stub.ListOrders(opb.ListOrdersRequest(), metadata=alice, timeout=5)


async def test_streams_per_connection_and_subscribers_per_process(limited: Stack) -> None:
    stack = limited
    alice = meta(stack)
    async with grpc.aio.insecure_channel(stack.order_addr) as one, \
            grpc.aio.insecure_channel(stack.order_addr,
                                      options=[("grpc.use_local_subchannel_pool", 1)]) as two:
        stub = opb_grpc.OrderServiceStub(one)
        sessions = [stub.OrderEntry(metadata=alice) for _ in range(2)]
        for s in sessions:  # opened: a message each way
            await s.write(opb.OrderEntryRequest(commands=[opb.OrderEntryCommand(
                cancel=opb.CancelOrderRequest(order_id="1"))]))
            await asyncio.wait_for(s.read(), 10)
        third = stub.OrderEntry(metadata=alice)
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await asyncio.wait_for(third.read(), 10)
        exhausted(refused.value, "STREAM_LIMIT")
        # Another connection has its own allowance.
        elsewhere = opb_grpc.OrderServiceStub(two).OrderEntry(metadata=alice)
        await elsewhere.write(opb.OrderEntryRequest(commands=[opb.OrderEntryCommand(
            cancel=opb.CancelOrderRequest(order_id="1"))]))
        await asyncio.wait_for(elsewhere.read(), 10)
        for s in [*sessions, elsewhere]:
            s.cancel()

    channels = [grpc.aio.insecure_channel(stack.marketdata_addr,
                                          options=[("grpc.use_local_subchannel_pool", 1)])
                for _ in range(4)]
    try:
        streams = []
        for channel in channels[:3]:
            s = mdpb_grpc.MarketDataServiceStub(channel).StreamOrderBook(
                mdpb.StreamOrderBookRequest(instrument="BTC-USD"))
            await asyncio.wait_for(s.read(), 10)  # the snapshot: subscribed
            streams.append(s)
        fourth = mdpb_grpc.MarketDataServiceStub(channels[3]).StreamTrades(
            mdpb.StreamTradesRequest(instrument="BTC-USD"))
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await asyncio.wait_for(fourth.read(), 10)
        exhausted(refused.value, "SUBSCRIBER_LIMIT")
        streams.pop().cancel()
        for _ in range(50):  # the slot is given back when the server sees the cancel
            again = mdpb_grpc.MarketDataServiceStub(channels[3]).StreamOrderBook(
                mdpb.StreamOrderBookRequest(instrument="BTC-USD"))
            try:
                await asyncio.wait_for(again.read(), 10)  # its snapshot
                break
            except grpc.aio.AioRpcError as err:
                assert error_info(err).reason == "SUBSCRIBER_LIMIT", err
                await asyncio.sleep(0.1)
        else:
            pytest.fail("the freed subscriber slot was not given back")
        again.cancel()
        for s in streams:
            s.cancel()
    finally:
        for channel in channels:
            await channel.close()
