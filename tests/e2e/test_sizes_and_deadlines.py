"""Sizes and deadlines on the real services (one stack for the module, with limits that are
not gRPC's defaults, so that only the services' options can make them hold).

- Every service takes a request of exactly EXCHANGE_MAX_MESSAGE_BYTES and refuses one byte
  more (RESOURCE_EXHAUSTED from gRPC, no details); metadata just below
  EXCHANGE_MAX_METADATA_BYTES (over gRPC's default hard limit) is taken, just above refused.
- A caller's deadline is honoured: when it passes during a query, gRPC cancels the handler
  and with it the query in PostgreSQL; a create whose caller has gone places nothing; a
  deadline too short to reach matching is refused at once (DEADLINE_TOO_SHORT).
"""

from __future__ import annotations

import asyncio
import time

import asyncpg
import grpc
import pytest
from e2e_helpers import meta
from grpc_health.v1 import health_pb2, health_pb2_grpc

from exchange.common.v1 import common_pb2 as cpb
from exchange.marketdata.v1 import marketdata_pb2 as mdpb
from exchange.matching.v1 import matching_pb2 as mpb
from exchange.order.v1 import order_pb2 as opb
from exchange.order.v1 import order_pb2_grpc as opb_grpc
from exchange_common.errors import error_info
from exchange_dev.stack import Stack

pytestmark = pytest.mark.e2e

MESSAGE = 256 * 1024
METADATA = 24_000
STACK_ENV = {"EXCHANGE_MAX_MESSAGE_BYTES": str(MESSAGE),
             "EXCHANGE_MAX_METADATA_BYTES": str(METADATA)}
C = grpc.StatusCode
WAIT = 20.0  # seconds for something to happen before the test fails


def sized(message, field: str, size: int):
    """``message`` with ``field`` (a string) padded so that it serializes to ``size`` bytes."""
    for n in range(size - 12, size + 1):
        setattr(message, field, "x" * n)
        if message.ByteSize() == size:
            return message
    raise AssertionError(f"cannot make {type(message).__name__} of {size} bytes")


def targets(stack: Stack):
    """(address, method path, a request with a string field to pad) per service."""
    return [
        (stack.order_addr, "/exchange.order.v1.OrderService/GetOrder",
         opb.GetOrderRequest(), "client_order_id"),
        (stack.marketdata_addr, "/exchange.marketdata.v1.MarketDataService/GetOrderBook",
         mdpb.GetOrderBookRequest(), "instrument"),
        (stack.matching_addr, "/exchange.matching.v1.MatchingService/GetBook",
         mpb.GetBookRequest(instrument_id=99), None),
    ]


async def _call(channel: grpc.aio.Channel, path: str, body: bytes, metadata=()):
    return await channel.unary_unary(path)(body, metadata=metadata, timeout=10)


def _body(request, field: str | None, size: int) -> bytes:
    if field is not None:
        return sized(request, field, size).SerializeToString()
    data = request.SerializeToString()  # padded with an unknown field: 15, length-delimited
    pad = size - len(data)
    for payload in range(pad - 12, pad):
        if 1 + len(_varint(payload)) + payload == pad:
            return data + b"\x7a" + _varint(payload) + b"p" * payload
    raise AssertionError("cannot pad")


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


async def test_every_service_takes_a_message_of_the_limit_and_refuses_a_byte_more(
        module_stack: Stack) -> None:
    for addr, path, request, field in targets(module_stack):
        async with grpc.aio.insecure_channel(addr) as ch:
            body = _body(request, field, MESSAGE)
            assert len(body) == MESSAGE
            try:  # taken: the service answers (an error with a reason is an answer)
                await _call(ch, path, body, meta(module_stack))
            except grpc.aio.AioRpcError as err:
                assert error_info(err) is not None, (path, err.code(), err.details())
            body = _body(request, field, MESSAGE + 1)
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await _call(ch, path, body, meta(module_stack))
            assert err.value.code() == C.RESOURCE_EXHAUSTED and error_info(err.value) is None


async def test_every_service_takes_metadata_below_the_limit_and_refuses_it_above(
        module_stack: Stack) -> None:
    for addr in (module_stack.order_addr, module_stack.marketdata_addr,
                 module_stack.matching_addr):
        async with grpc.aio.insecure_channel(addr) as ch:
            health = health_pb2_grpc.HealthStub(ch)
            below = meta(module_stack, "alice", ("x-pad", "p" * (METADATA - 2_000)))
            reply = await health.Check(health_pb2.HealthCheckRequest(), metadata=below,
                                       timeout=10)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
            above = meta(module_stack, "alice", ("x-pad", "p" * (METADATA - 300)))
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await health.Check(health_pb2.HealthCheckRequest(), metadata=above,
                                   timeout=10)
            assert err.value.code() == C.RESOURCE_EXHAUSTED


async def _waiting_on_locks(conn: asyncpg.Connection) -> int:
    """Sessions of the services blocked on a lock."""
    return await conn.fetchval(
        """SELECT count(*) FROM pg_stat_activity
            WHERE datname = current_database() AND pid <> pg_backend_pid()
              AND wait_event_type = 'Lock'""")


async def _until(predicate, what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not await predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


async def test_a_query_stops_when_its_caller_is_gone(module_stack: Stack) -> None:
    """ListOrders blocked behind a lock on ``orders``: the caller's deadline passes, gRPC
    cancels the handler and asyncpg cancels the query, which stops waiting at once (a
    handler left running would wait for the lock as long as it is held)."""
    conn = await asyncpg.connect(module_stack.database_url)
    try:
        async with grpc.aio.insecure_channel(module_stack.order_addr) as ch:
            orders = opb_grpc.OrderServiceStub(ch)
            await orders.ListOrders(opb.ListOrdersRequest(), metadata=meta(module_stack),
                                    timeout=10)  # key and pool warm
            async with conn.transaction():
                await conn.execute("LOCK TABLE orders IN ACCESS EXCLUSIVE MODE")
                call = orders.ListOrders(opb.ListOrdersRequest(), metadata=meta(module_stack),
                                         timeout=2.0)
                await _until(lambda: _waiters(conn, 1), "the query to wait for the lock")
                with pytest.raises(grpc.aio.AioRpcError) as err:
                    await call
                assert err.value.code() == C.DEADLINE_EXCEEDED
                await _until(lambda: _waiters(conn, 0), "the query to be cancelled")
    finally:
        await conn.close()


async def _waiters(conn: asyncpg.Connection, count: int) -> bool:
    return await _waiting_on_locks(conn) == count


async def test_a_create_whose_caller_is_gone_places_nothing(module_stack: Stack) -> None:
    conn = await asyncpg.connect(module_stack.database_url)
    try:
        async with grpc.aio.insecure_channel(module_stack.order_addr) as ch:
            orders = opb_grpc.OrderServiceStub(ch)
            request = opb.CreateOrderRequest(
                instrument="BTC-USD", side=cpb.SIDE_BUY, type=cpb.ORDER_TYPE_LIMIT,
                price="60000.00", quantity="0.01", client_order_id="gone-before-placed")
            async with conn.transaction():
                await conn.execute("LOCK TABLE orders IN ACCESS EXCLUSIVE MODE")
                call = orders.CreateOrder(request, metadata=meta(module_stack), timeout=2.0)
                await _until(lambda: _waiters(conn, 1), "the look-up to wait for the lock")
                with pytest.raises(grpc.aio.AioRpcError) as err:
                    await call
                assert err.value.code() == C.DEADLINE_EXCEEDED
            # The lock is gone: anything still running for the caller would go on now.
            await _until(lambda: _waiters(conn, 0), "the look-up to finish")
            await _settled(orders, module_stack)
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await orders.GetOrder(opb.GetOrderRequest(
                    client_order_id="gone-before-placed"), metadata=meta(module_stack),
                    timeout=10)
            assert err.value.code() == C.NOT_FOUND
    finally:
        await conn.close()


async def _settled(orders: opb_grpc.OrderServiceStub, stack: Stack) -> None:
    """A create after the test's: answered only after anything queued before it."""
    await orders.CreateOrder(opb.CreateOrderRequest(
        instrument="BTC-USD", side=cpb.SIDE_BUY, type=cpb.ORDER_TYPE_LIMIT, price="50000.00",
        quantity="0.01"), metadata=meta(stack), timeout=10)


async def test_a_deadline_too_short_to_reach_matching_places_nothing(
        module_stack: Stack) -> None:
    """Before: UNAVAILABLE "no matching engine owns this instrument right now"."""
    async with grpc.aio.insecure_channel(module_stack.order_addr) as ch:
        orders = opb_grpc.OrderServiceStub(ch)
        await _settled(orders, module_stack)  # instrument and owner cached
        for i in range(5):
            coid = f"short-{i}"
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await orders.CreateOrder(opb.CreateOrderRequest(
                    instrument="BTC-USD", side=cpb.SIDE_BUY, type=cpb.ORDER_TYPE_LIMIT,
                    price="60000.00", quantity="0.01", client_order_id=coid),
                    metadata=meta(module_stack), timeout=0.045)
            assert err.value.code() == C.DEADLINE_EXCEEDED
            info = error_info(err.value)  # none when the client's own deadline came first
            assert info is None or info.reason == "DEADLINE_TOO_SHORT"
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await orders.GetOrder(opb.GetOrderRequest(client_order_id=coid),
                                      metadata=meta(module_stack), timeout=10)
            assert err.value.code() == C.NOT_FOUND
