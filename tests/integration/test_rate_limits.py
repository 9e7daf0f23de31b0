"""The rate limiter against a real Redis: shared buckets, leases, refusals, Redis away."""

from __future__ import annotations

import asyncio

import pytest
from redis.asyncio import Redis

from exchange_common.errors import ResourceExhausted
from exchange_dev.embedded import free_port
from order_service.auth import Caller, Tier
from order_service.limits import CANCELS, ORDERS, RateLimiter


def caller(account: int, rate: int, burst: int, max_open: int = 0) -> Caller:
    return Caller(account, Tier("t", rate, burst, rate, burst, rate, burst, max_open))


@pytest.fixture
async def redis(redis_url: str):
    client = Redis.from_url(redis_url)
    yield client
    await client.aclose()


async def granted(limiter: RateLimiter, who: Caller, n: int, kind: str = ORDERS) -> int:
    ok = 0
    for _ in range(n):
        try:
            await limiter.check(who, kind)
            ok += 1
        except ResourceExhausted as err:
            assert err.reason == "RATE_LIMITED" and err.retry_after > 0
    return ok


async def test_two_processes_share_one_bucket(redis: Redis) -> None:
    # Two limiters are two order-service processes; 1 token/s, burst 10.
    a, b = RateLimiter(redis, lease=0.05), RateLimiter(redis, lease=0.05)
    who = caller(1, 1, 10)
    assert await granted(a, who, 6) + await granted(b, who, 6) == 10
    with pytest.raises(ResourceExhausted) as refused:
        await a.check(who, ORDERS)
    assert 0 < refused.value.retry_after <= 1.0
    # Other kinds and accounts have their own buckets.
    assert await granted(a, who, 3, CANCELS) == 3
    assert await granted(b, caller(2, 1, 10), 4) == 4


async def test_concurrent_takers_get_exactly_the_burst(redis: Redis) -> None:
    limiter = RateLimiter(redis, lease=0.05)
    who = caller(3, 1, 100)
    results = await asyncio.wait_for(asyncio.gather(
        *(limiter.check(who, ORDERS) for _ in range(250)), return_exceptions=True), 10)
    assert sum(r is None for r in results) == 100
    assert all(isinstance(r, ResourceExhausted) for r in results if r is not None)


async def test_a_lease_serves_many_calls_and_a_refusal_is_remembered(redis: Redis) -> None:
    limiter = RateLimiter(redis, lease=0.05)
    generous = caller(4, 1_000_000, 1_000_000)
    assert await granted(limiter, generous, 10_000) == 10_000
    assert limiter.redis_requests == 1  # one lease of 50,000 tokens
    tight = caller(5, 1, 2)
    assert await granted(limiter, tight, 2) == 2
    before = limiter.redis_requests
    assert await granted(limiter, tight, 50) == 0
    assert limiter.redis_requests == before + 1  # the first refusal asked; the rest did not


async def test_take_grants_part_of_a_batch(redis: Redis) -> None:
    limiter = RateLimiter(redis, lease=0.05)
    who = caller(6, 1, 5)
    got, wait = await limiter.take(who, ORDERS, 8)
    assert (got, wait > 0) == (5, True)
    assert await limiter.take(who, ORDERS, 3) == (0, pytest.approx(wait, abs=0.05))


async def test_no_limit_and_switched_off(redis: Redis) -> None:
    assert await granted(RateLimiter(redis, lease=0.05), caller(7, 0, 0), 100) == 100
    off = RateLimiter(redis, lease=0.05, enabled=False)
    assert await granted(off, caller(8, 1, 1), 100) == 100
    assert off.redis_requests == 0


async def test_redis_away_counts_per_process() -> None:
    down = Redis.from_url(f"redis://127.0.0.1:{free_port()}/0", socket_connect_timeout=1)
    try:
        limiter = RateLimiter(down, lease=0.05)
        who = caller(9, 1, 5)
        assert await asyncio.wait_for(granted(limiter, who, 8), 10) == 5
    finally:
        await down.aclose()
