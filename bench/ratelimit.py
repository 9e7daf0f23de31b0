"""What the per-account rate limits cost the order service (order_service/limits.py).

    python -m bench.ratelimit [--seconds 10] [--rate 2000] [--accounts 50]

Three figures, against a real Redis (embedded unless EXCHANGE_REDIS_URL names one):

* ``check_us``: one ``RateLimiter.check`` while the process holds a lease (nearly every
  call), net of an empty coroutine call; and ``take100_us_per_order``: one
  ``take(n=100)`` (an OrderEntry message of 100 orders) per order;
* at the seed rate: ``--rate`` checks a second spread over ``--accounts`` accounts for
  ``--seconds``, paced in real time so that leases expire as they would, once with the
  tier the dev stack gives its accounts and once with the ``default`` tier of
  migration 0003 (50 orders/s each, burst 100; the paced rate per account stays under
  it): this process's CPU per check (limiter and Redis client included), Redis
  requests per 1,000 checks, refusals;
* ``refused_us``: one refused check while the refusal is remembered (a flood).

``--lease`` is ``EXCHANGE_RATE_LIMIT_LEASE``: a longer lease means fewer Redis requests for
accounts of a low rate.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from redis.asyncio import Redis

from bench.results import write_result
from exchange_common.config import OrderSettings
from exchange_common.errors import ResourceExhausted
from exchange_dev.accounts import DEV_TIER_LIMITS
from order_service.auth import Caller, Tier
from order_service.limits import ORDERS, RateLimiter

LEASE = OrderSettings.model_fields["rate_limit_lease"].default
DEFAULT_TIER = Tier("default", 50, 100, 100, 200, 20, 40, 500)
DEV_TIER = Tier("dev", *(DEV_TIER_LIMITS[c] for c in (
    "orders_per_second", "orders_burst", "cancels_per_second", "cancels_burst",
    "queries_per_second", "queries_burst", "max_open_orders")))


async def _noop(caller: Caller, kind: str) -> None:
    return None


async def hot_path(redis: Redis, calls: int, lease: float) -> dict[str, float]:
    limiter = RateLimiter(redis, lease=lease)
    caller = Caller(1, DEV_TIER)
    await limiter.check(caller, ORDERS)  # the first lease
    t0 = time.perf_counter()
    for _ in range(calls):
        await _noop(caller, ORDERS)
    floor = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(calls):
        await limiter.check(caller, ORDERS)
    checks = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(calls // 100):
        await limiter.take(caller, ORDERS, 100)
    batches = time.perf_counter() - t0
    return {"check_us": round((checks - floor) / calls * 1e6, 3),
            "await_floor_us": round(floor / calls * 1e6, 3),
            "take100_us_per_order": round(batches / calls * 1e6, 3)}


async def paced(redis: Redis, tier: Tier, rate: int, accounts: int, seconds: float,
                first_account: int, lease: float, enabled: bool = True
                ) -> dict[str, Any]:
    """``rate`` checks a second for ``seconds``, as the order service would make them."""
    limiter = RateLimiter(redis, lease=lease, enabled=enabled)
    callers = [Caller(first_account + i, tier) for i in range(accounts)]
    refused = checks = 0
    cpu0, start = time.process_time(), time.monotonic()
    tick = 0.005
    per_tick = rate * tick
    due = 0.0
    while time.monotonic() - start < seconds:
        due += per_tick
        while due >= 1:
            due -= 1
            try:
                await limiter.check(callers[checks % accounts], ORDERS)
            except ResourceExhausted:
                refused += 1
            checks += 1
        await asyncio.sleep(max(0.0, start + (checks / rate) - time.monotonic()))
    cpu = time.process_time() - cpu0
    return {"tier": tier.name, "checks": checks, "refused": refused,
            "redis_requests": limiter.redis_requests,
            "redis_requests_per_1000": round(limiter.redis_requests * 1000 / checks, 2),
            "cpu_us_per_check": round(cpu / checks * 1e6, 2),
            "seconds": round(time.monotonic() - start, 2)}


async def flood(redis: Redis, calls: int, lease: float) -> dict[str, float]:
    limiter = RateLimiter(redis, lease=lease)
    caller = Caller(10_000, Tier("tight", 1, 1, 1, 1, 1, 1, 0))
    await limiter.check(caller, ORDERS)
    t0 = time.perf_counter()
    for _ in range(calls):
        try:
            await limiter.check(caller, ORDERS)
        except ResourceExhausted:
            pass
    return {"refused_us": round((time.perf_counter() - t0) / calls * 1e6, 3),
            "redis_requests": limiter.redis_requests}


async def run(args: argparse.Namespace, url: str) -> dict:
    redis = Redis.from_url(url)
    try:
        await redis.flushdb()
        figures: dict[str, dict[str, Any]] = {
            "hot_path": await hot_path(redis, args.calls, args.lease)}
        # The same paced loop with the limiter switched off: the loop's own cost.
        floor = await paced(redis, DEV_TIER, args.rate, args.accounts, args.seconds, 1,
                            args.lease, enabled=False)
        figures["seed_floor"] = floor
        for name, tier, first in (("seed_dev_tier", DEV_TIER, 100),
                                  ("seed_default_tier", DEFAULT_TIER, 1000)):
            result = await paced(redis, tier, args.rate, args.accounts, args.seconds, first,
                                 args.lease)
            result["net_cpu_us_per_check"] = round(
                result["cpu_us_per_check"] - floor["cpu_us_per_check"], 2)
            figures[name] = result
        figures["flood"] = await flood(redis, args.calls // 10, args.lease)
        return figures
    finally:
        await redis.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rate", type=int, default=2000, help="checks per second (2000)")
    parser.add_argument("--accounts", type=int, default=50)
    parser.add_argument("--lease", type=float, default=LEASE,
                        help=f"seconds of rate leased at once (default {LEASE}, "
                             "EXCHANGE_RATE_LIMIT_LEASE)")
    parser.add_argument("--calls", type=int, default=200_000,
                        help="calls timed on the hot path (200,000)")
    args = parser.parse_args()
    url = os.environ.get("EXCHANGE_REDIS_URL")
    server = None
    if not url:
        from exchange_dev.embedded import EmbeddedRedis

        server = EmbeddedRedis(Path(tempfile.mkdtemp(prefix="bench-ratelimit-")))
        server.start()
        url = server.url()
    try:
        figures = asyncio.run(run(args, url))
    finally:
        if server is not None:
            server.stop()
    command = "python -m bench.ratelimit " + " ".join(sys.argv[1:])
    path = write_result("ratelimit", figures, command.strip())
    for name, values in figures.items():
        print(f"{name}: " + ", ".join(f"{k} {v}" for k, v in values.items()))
    print(f"written to {path}")


if __name__ == "__main__":
    main()
