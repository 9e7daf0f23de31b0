"""Orders that arrive faster than the exchange carries them.

- Overload control (order_service/admission.py): offered three times what the exchange
  carries, for 20 s, every call is answered within its deadline, placed or refused with
  RESOURCE_EXHAUSTED (reason OVERLOADED, a RetryInfo delay), and no refused order exists.
  Matching is made the bottleneck (a small batch and a slow commit: about 250 orders/s),
  as a busy instrument is in production, where order services have cores to spare.
- Calls that arrive faster than the order service takes them (EXCHANGE_GRPC_MAX_PENDING_CALLS):
  gRPC holds such calls for the server; beyond the limit it refuses some at random, and
  every one beyond three times the limit. A refused call never reached the service, so
  nothing was placed. The burst is made for real: the order service is paused (SIGSTOP)
  while the calls are sent, then resumed, so they all arrive at once.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path

import asyncpg
import grpc
import pytest
from e2e_helpers import meta
from google.rpc import error_details_pb2
from grpc_status import rpc_status

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


# -- overload control ---------------------------------------------------------------------------

# Matching carries about 5 orders per commit, 50 commits a second.
SLOW_MATCHING = {"EXCHANGE_MATCHING_BATCH_MAX": "5", "EXCHANGE_COMMIT_MIN_INTERVAL": "0.02"}
MATCHING_CARRIES = 5 * 50
OFFER_SECONDS = 20.0
DEADLINE = 5.0


def resting(client_order_id: str, i: int) -> opb.CreateOrderRequest:
    return opb.CreateOrderRequest(
        instrument="BTC-USD", side=cpb.SIDE_BUY, type=cpb.ORDER_TYPE_LIMIT,
        price=f"{1000 + i % 100}", quantity="0.01", client_order_id=client_order_id)


def overloaded(err: grpc.aio.AioRpcError) -> bool:
    """RESOURCE_EXHAUSTED with reason OVERLOADED and a RetryInfo delay."""
    status = rpc_status.from_call(err)
    if err.code() != grpc.StatusCode.RESOURCE_EXHAUSTED or status is None:
        return False
    reasons, retry = set(), False
    for detail in status.details:
        info = error_details_pb2.ErrorInfo()
        if detail.Unpack(info):
            reasons.add(info.reason)
        retry = retry or detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR)
    return reasons == {"OVERLOADED"} and retry


async def test_three_times_the_carried_rate_is_placed_or_refused_and_answered_in_time(
        database_url: str, redis_url: str, tmp_path: Path) -> None:
    async with Stack(database_url=database_url, redis_url=redis_url,
                     keys={"alice": "overload-key-alice-0123456789"}, log_dir=tmp_path / "logs",
                     service_env={"matching": SLOW_MATCHING}).running(60) as stack:
        async with grpc.aio.insecure_channel(stack.order_addr) as channel:
            orders = opb_grpc.OrderServiceStub(channel)
            alice = meta(stack)
            outcomes: dict[str, str] = {}  # client_order_id -> "ok" / "refused" / a code
            placed_ms: list[float] = []  # how long the placed orders of the offer took

            async def create(client_order_id: str, i: int) -> None:
                started = time.monotonic()
                try:
                    await orders.CreateOrder(resting(client_order_id, i), metadata=alice,
                                             timeout=DEADLINE)
                    outcomes[client_order_id] = "ok"
                    if client_order_id.startswith("offer-"):
                        placed_ms.append((time.monotonic() - started) * 1000)
                except grpc.aio.AioRpcError as err:
                    outcomes[client_order_id] = ("refused" if overloaded(err)
                                                 else f"{err.code().name}: {err.details()}")
                assert time.monotonic() - started < DEADLINE + 1

            # The carried rate: as many orders as 64 callers get placed in 3 s.
            stop = time.monotonic() + 3.0

            async def caller(k: int) -> None:
                n = 0
                while time.monotonic() < stop:
                    await create(f"carry-{k}-{n}", n)
                    n += 1

            await asyncio.gather(*(caller(k) for k in range(64)))
            carried = sum(1 for c, o in outcomes.items() if o == "ok") / 3.0
            assert carried > 0, outcomes
            # Callers that wait for their answers measure the order path's latency as much
            # as what it carries: in the full suite 64 of them measured 99/s against the
            # 240/s matching places, and "three times" that did not overload it. So at
            # least three times what the slowed matching carries.
            carried = max(carried, MATCHING_CARRIES)

            # Three times that, open loop, for 20 s.
            rate = 3 * carried
            calls = []
            start = time.monotonic()
            for i in range(int(rate * OFFER_SECONDS)):
                delay = start + i / rate - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                calls.append(asyncio.create_task(create(f"offer-{i}", i)))
            await asyncio.gather(*calls)

        offered = {c: o for c, o in outcomes.items() if c.startswith("offer-")}
        counts = Counter(offered.values())
        placed_ms.sort()
        p99 = placed_ms[int(0.99 * len(placed_ms))] if placed_ms else None
        # Figures for bench/RESULTS.md (pytest -s shows them); not asserted (speed is for
        # benchmarks).
        print(f"carried {carried:.0f}/s closed loop; offered {rate:.0f}/s for "
              f"{OFFER_SECONDS:.0f} s: {counts}, placed {counts['ok'] / OFFER_SECONDS:.0f}/s, "
              f"P99 of the placed {p99:.0f} ms" if p99 is not None else f"{counts}")
        assert set(counts) <= {"ok", "refused"}, counts  # no CANCELLED, no deadline missed
        assert counts["refused"] >= len(offered) / 3, counts  # overloaded indeed
        assert counts["ok"] >= carried * OFFER_SECONDS / 4, (counts, carried)  # still carried
        conn = await asyncpg.connect(stack.database_url)
        try:
            placed = {r["client_order_id"] for r in await conn.fetch(
                "SELECT client_order_id FROM orders WHERE account_id = $1",
                stack.account_ids["alice"])}
        finally:
            await conn.close()
        assert placed == {c for c, o in outcomes.items() if o == "ok"}
