"""Calls that arrive faster than the order service takes them (EXCHANGE_GRPC_MAX_PENDING_CALLS).

gRPC holds such calls for the server; beyond the limit it refuses some at random, and every
one beyond three times the limit. A refused call never reached the service, so nothing was
placed. The burst is made for real: the order service is paused (SIGSTOP) while the calls
are sent, then resumed, so they all arrive at once.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

import grpc
import pytest
from e2e_helpers import meta

from exchange.common.v1 import common_pb2 as cpb
from exchange.order.v1 import order_pb2 as opb
from exchange.order.v1 import order_pb2_grpc as opb_grpc
from exchange_dev.stack import Stack

pytestmark = pytest.mark.e2e

BURST = 60
REFUSED = (grpc.StatusCode.CANCELLED, grpc.StatusCode.RESOURCE_EXHAUSTED)


async def burst(stack: Stack, prefix: str) -> tuple[Counter, set[str]]:
    """BURST creates sent while the order service is paused; (outcome codes, the
    client_order_ids that were refused)."""
    alice = meta(stack)
    async with grpc.aio.insecure_channel(stack.order_addr) as ch:
        orders = opb_grpc.OrderServiceStub(ch)
        await orders.CreateOrder(opb.CreateOrderRequest(  # connected and warm
            instrument="BTC-USD", side=cpb.SIDE_BUY, type=cpb.ORDER_TYPE_LIMIT,
            price="1000", quantity="0.01", client_order_id=f"{prefix}-warm"), metadata=alice)

        async def create(i: int) -> grpc.StatusCode:
            try:
                await orders.CreateOrder(opb.CreateOrderRequest(
                    instrument="BTC-USD", side=cpb.SIDE_BUY, type=cpb.ORDER_TYPE_LIMIT,
                    price="1000", quantity="0.01", client_order_id=f"{prefix}-{i}"),
                    metadata=alice, timeout=30)
                return grpc.StatusCode.OK
            except grpc.aio.AioRpcError as err:
                return err.code()

        stack.pause_service("order")
        try:
            calls = [asyncio.create_task(create(i)) for i in range(BURST)]
            await asyncio.sleep(1.0)  # every call is written to the paused server
        finally:
            stack.resume_service("order")
        codes = await asyncio.gather(*calls)
        refused = {f"{prefix}-{i}" for i, code in enumerate(codes) if code in REFUSED}
        # Nothing refused was placed; everything answered OK was.
        for i, code in enumerate(codes):
            coid = f"{prefix}-{i}"
            try:
                await orders.GetOrder(opb.GetOrderRequest(client_order_id=coid), metadata=alice)
                found = True
            except grpc.aio.AioRpcError as err:
                assert err.code() == grpc.StatusCode.NOT_FOUND, err
                found = False
            assert found == (code == grpc.StatusCode.OK), (coid, code)
        return Counter(codes), refused


async def test_a_burst_beyond_the_limit_is_refused_and_nothing_refused_is_placed(
        database_url: str, redis_url: str, tmp_path: Path) -> None:
    async with Stack(database_url=database_url, redis_url=redis_url,
                     keys={"alice": "overload-key-alice-0123456789"}, log_dir=tmp_path / "logs",
                     service_env={"order": {"EXCHANGE_GRPC_MAX_PENDING_CALLS": "2"}},
                     ).running(60) as stack:
        codes, refused = await burst(stack, "small")
    assert refused, codes
    assert codes[grpc.StatusCode.OK] >= 1, codes
    assert set(codes) <= {grpc.StatusCode.OK, *REFUSED}, codes


async def test_the_default_limit_takes_the_same_burst(stack: Stack) -> None:
    codes, refused = await burst(stack, "default")
    assert codes == Counter({grpc.StatusCode.OK: BURST}), codes
    assert not refused
