"""The order service with ``EXCHANGE_ORDER_WORKERS=2``: two real processes on one port.

- Connections land on both workers (seen from the kernel's socket table) and every one of
  them trades; each says SERVING.
- A worker killed with SIGKILL under load is started again by worker 0, and clients that
  retry with the same ``client_order_id`` get each order exactly once.
- When worker 0 is killed with SIGKILL, the other worker stops by itself.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import grpc
import pytest
from e2e_helpers import (
    established_on,
    gone,
    meta,
    own_channel,
    scrape,
    wait_for,
    wait_for_metric,
    worker_pids,
)
from grpc_health.v1 import health_pb2, health_pb2_grpc

from exchange.common.v1 import common_pb2 as cpb
from exchange.order.v1 import order_pb2 as opb
from exchange.order.v1 import order_pb2_grpc as opb_grpc
from exchange_common.config import CommonSettings
from exchange_dev.stack import Stack

pytestmark = pytest.mark.e2e

KEYS = {"alice": "order-workers-key-alice-0123456789"}
CONNECTIONS = 16
WAIT = 20.0  # seconds for anything to happen before the test fails
RETRYABLE = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED,
             grpc.StatusCode.CANCELLED)


@pytest.fixture
async def stack(database_url: str, redis_url: str, tmp_path: Path) -> AsyncIterator[Stack]:
    async with Stack(database_url=database_url, redis_url=redis_url, keys=KEYS,
                     log_dir=tmp_path / "logs", order_workers="2").running(40) as s:
        yield s






def order(client_order_id: str, i: int) -> opb.CreateOrderRequest:
    side = cpb.SIDE_BUY if i % 2 == 0 else cpb.SIDE_SELL
    price = 60_000 - i % 500 if side == cpb.SIDE_BUY else 80_000 + i % 500
    return opb.CreateOrderRequest(
        instrument="BTC-USD", side=side, type=cpb.ORDER_TYPE_LIMIT,
        time_in_force=cpb.TIME_IN_FORCE_GTC, price=f"{price}.00", quantity="0.0100",
        client_order_id=client_order_id)


async def orders_by_client_id(stack: Stack, prefix: str) -> dict[str, list[int]]:
    conn = await asyncpg.connect(stack.database_url)
    try:
        rows = await conn.fetch(
            "SELECT client_order_id, order_id FROM orders WHERE account_id = $1 "
            "AND client_order_id LIKE $2", stack.account_ids["alice"], prefix + "%")
    finally:
        await conn.close()
    found: dict[str, list[int]] = {}
    for r in rows:
        found.setdefault(r["client_order_id"], []).append(r["order_id"])
    return found


async def test_connections_are_spread_over_both_workers_and_all_trade(stack: Stack):
    parent = stack.processes["order"].pid
    port = int(stack.order_addr.rpartition(":")[2])
    children = worker_pids(stack, "order")
    assert len(children) == 1, children
    channels = [own_channel(stack.order_addr) for _ in range(CONNECTIONS)]
    try:
        for i, channel in enumerate(channels):
            health = await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service="exchange.order.v1.OrderService"),
                timeout=10)
            assert health.status == health_pb2.HealthCheckResponse.SERVING
            placed = await opb_grpc.OrderServiceStub(channel).CreateOrder(
                order(f"spread-{i}", i), metadata=meta(stack, "alice"), timeout=10)
            assert placed.order.state == cpb.ORDER_STATE_NEW
        on_parent = established_on(parent, port)
        on_child = established_on(children[0], port)
        # SO_REUSEPORT hashes each connection to one listener: with 16 connections both get
        # some (all on one side has a chance of 2 in 65,536).
        assert on_parent >= 1 and on_child >= 1, (on_parent, on_child)
        assert on_parent + on_child >= CONNECTIONS
    finally:
        for c in channels:
            await c.close()
    assert len(await orders_by_client_id(stack, "spread-")) == CONNECTIONS
    # One scrape of worker 0's endpoint counts the orders of both workers (prometheus_client's
    # multiprocess mode), and the sampled gauges of both (one pool each).
    samples = await scrape(stack.metrics_url("order"))
    assert samples.value("exchange_orders_accepted_total", instrument="BTC-USD") == CONNECTIONS
    assert samples.value("exchange_grpc_server_handled_total", method="CreateOrder",
                         code="OK") == CONNECTIONS
    pool_max = CommonSettings.model_fields["db_pool_max"].default
    await wait_for_metric(stack.metrics_url("order"), "exchange_db_pool_max_connections",
                          2 * pool_max, pool="order")


async def test_a_killed_worker_is_started_again_and_retries_place_each_order_once(
        stack: Stack):
    (child,) = worker_pids(stack, "order")
    port = int(stack.order_addr.rpartition(":")[2])
    channels = [own_channel(stack.order_addr) for _ in range(CONNECTIONS)]
    answers: dict[str, str] = {}  # client_order_id -> the order id the client was given
    retried: list[str] = []
    stop = asyncio.Event()

    async def client(index: int, channel: grpc.aio.Channel) -> None:
        stub = opb_grpc.OrderServiceStub(channel)
        i = 0
        while not stop.is_set():
            request = order(f"kill-{index}-{i}", index * 1000 + i)
            deadline = time.monotonic() + WAIT
            while True:
                try:
                    placed = await stub.CreateOrder(request, metadata=meta(stack, "alice"),
                                                    timeout=5)
                    break
                except grpc.aio.AioRpcError as err:
                    assert err.code() in RETRYABLE, err
                    assert time.monotonic() < deadline, f"{request.client_order_id} never placed"
                    retried.append(request.client_order_id)
                    await asyncio.sleep(0.05)
            answers[request.client_order_id] = placed.order.order_id
            i += 1

    try:
        for channel in channels:
            await channel.channel_ready()
        await wait_for(lambda: established_on(child, port) >= 1,
                       "a connection on the worker to kill")
        tasks = [asyncio.create_task(client(i, c)) for i, c in enumerate(channels)]
        await asyncio.sleep(1.0)
        before = len(answers)
        os.kill(child, signal.SIGKILL)
        await wait_for(lambda: worker_pids(stack, "order") not in ([], [child]),
                       "worker 0 to start the worker again")
        await asyncio.sleep(2.0)
        stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks), WAIT * 2)
    finally:
        stop.set()
        for c in channels:
            await c.close()
    assert before > 0 and len(answers) > before
    assert retried, "no call was cut by the kill (the test proves nothing)"
    found = await orders_by_client_id(stack, "kill-")
    assert set(found) == set(answers)
    for client_order_id, order_ids in found.items():
        assert len(order_ids) == 1, f"{client_order_id} placed {len(order_ids)} times"
        assert str(order_ids[0]) == answers[client_order_id]
    # The new worker serves: new connections reach it and trade.
    (new_child,) = worker_pids(stack, "order")
    late: list[grpc.aio.Channel] = []
    try:
        deadline = time.monotonic() + WAIT
        while established_on(new_child, port) == 0:
            assert time.monotonic() < deadline, "no connection reached the new worker"
            late.append(own_channel(stack.order_addr))
            await late[-1].channel_ready()
        for i, channel in enumerate(late):
            placed = await opb_grpc.OrderServiceStub(channel).CreateOrder(
                order(f"late-{i}", i), metadata=meta(stack, "alice"), timeout=10)
            assert placed.order.state == cpb.ORDER_STATE_NEW
    finally:
        for c in late:
            await c.close()


async def test_workers_stop_when_worker_0_is_killed(stack: Stack):
    (child,) = worker_pids(stack, "order")
    stack.kill_service("order")
    await wait_for(lambda: gone(child), "the worker to stop after worker 0 (it outlived it)",
                   WAIT)
