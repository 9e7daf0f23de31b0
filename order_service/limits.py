"""Per-account rate limits: token buckets shared by every order-service process.

Each account has three buckets (orders, cancels, queries) with the rate and burst
of its tier. The buckets live in Redis (a Lua script refills and takes atomically,
with Redis's clock), so the limit holds across replicas and workers. A process
does not ask Redis for every call: it leases ``lease`` seconds of the account's
rate at once (at least one token, at most the burst) and counts calls against the
lease in memory, so a call costs a dictionary look-up and a subtraction, and Redis
sees one request per lease. The limit then holds to within one lease per process.
Leases of many accounts wanted at the same moment go to Redis in one pipeline.

Accuracy: Redis never grants more than the bucket holds, so over time the account's
rate is never exceeded; a process holds at most one lease of an account's tokens, so a
burst may exceed the tier's by at most one lease per process. A lease left unused for
``LEASE_TTL`` is dropped, so an account spread thinly over many processes may be
refused a little before its rate (by at most a lease per process per ``LEASE_TTL``).

A refusal is remembered until the bucket would have a token again, so a flood of
refused calls costs no Redis request either. If Redis cannot be reached, each
process keeps the buckets in memory for a while (the limit then holds per
process) rather than refusing everyone; that is logged once when it begins and once when
Redis answers again, not at every retry.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import time
from dataclasses import dataclass

from redis.asyncio import Redis
from redis.exceptions import NoScriptError, RedisError

from exchange_common.errors import ResourceExhausted
from order_service.auth import Caller

log = logging.getLogger(__name__)

ORDERS, CANCELS, QUERIES = "orders", "cancels", "queries"
KEY_PREFIX = "exchange:rl:"
# A lease left unused for this long is dropped: its tokens were taken from the shared
# bucket, and an account that went quiet should not keep them for its next burst.
LEASE_TTL = 2.0
# After Redis fails, buckets are kept in memory for this long before asking it again.
REDIS_RETRY = 5.0
MAX_ENTRIES = 100_000

# KEYS[1]: the bucket. ARGV: rate (tokens/s), burst (tokens), tokens wanted.
# State: m = micro-tokens in the bucket, t = Redis time (microseconds) of the last take.
# Returns {tokens granted, microseconds until the next token when short}.
TAKE_SCRIPT = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local want = tonumber(ARGV[3])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local cap = burst * 1000000
local state = redis.call('HMGET', KEYS[1], 'm', 't')
local m = tonumber(state[1])
local last = tonumber(state[2])
if m == nil or last == nil then
  m = cap
  last = now
end
if now > last then
  m = math.min(cap, m + (now - last) * rate)
end
local grant = math.min(want, math.floor(m / 1000000))
m = m - grant * 1000000
redis.call('HSET', KEYS[1], 'm', m, 't', now)
redis.call('PEXPIRE', KEYS[1], math.ceil(burst * 1000 / rate) + 1000)
local wait = 0
if grant < want then
  wait = math.ceil((1000000 - m) / rate)
end
return {grant, wait}
"""


def limits_of(caller: Caller, kind: str) -> tuple[int, int]:
    """(rate per second, burst) of ``kind`` for ``caller``; rate 0 = no limit."""
    tier = caller.tier
    if kind == ORDERS:
        return tier.orders_per_second, max(tier.orders_burst, 1)
    if kind == CANCELS:
        return tier.cancels_per_second, max(tier.cancels_burst, 1)
    return tier.queries_per_second, max(tier.queries_burst, 1)


@dataclass(slots=True)
class _Lease:
    tokens: int = 0
    expires: float = 0.0
    # Refused until then (monotonic): nothing left in the shared bucket.
    refused_until: float = 0.0
    # Resolved when the lease request in flight is answered (callers of the same bucket
    # share it); None when there is none. Never done while set.
    fetching: asyncio.Future | None = None


class _LocalBucket:
    """A bucket in memory, while Redis is away."""

    __slots__ = ("tokens", "last")

    def __init__(self, burst: int) -> None:
        self.tokens = float(burst)
        self.last = time.monotonic()

    def take(self, rate: int, burst: int, want: int) -> tuple[int, float]:
        now = time.monotonic()
        self.tokens = min(burst, self.tokens + (now - self.last) * rate)
        self.last = now
        grant = min(want, int(self.tokens))
        self.tokens -= grant
        wait = 0.0 if grant == want else (1 - self.tokens % 1) / rate
        return grant, wait


class RateLimiter:
    def __init__(self, redis: Redis, *, lease: float, enabled: bool = True) -> None:
        self.redis = redis
        self.lease = lease
        self.enabled = enabled
        self._sha = hashlib.sha1(TAKE_SCRIPT.encode()).hexdigest()
        self._leases: dict[tuple[int, str], _Lease] = {}
        # Lease requests waiting for the next pipeline: (key, rate, burst, want, lease).
        self._queue: list[tuple[str, int, int, int, _Lease]] = []
        self._redis_down_until = 0.0
        # Redis is unreachable (logged when that begins, and when it ends).
        self.redis_down = False
        self._local: dict[str, _LocalBucket] = {}
        # Figures (bench/ratelimit.py, tests).
        self.redis_requests = 0
        self.refused = 0

    async def check(self, caller: Caller, kind: str) -> None:
        """Take one token of ``kind`` or raise RESOURCE_EXHAUSTED (RATE_LIMITED)."""
        if not self.enabled:
            return
        lease = self._leases.get((caller.account_id, kind))
        if lease is not None and lease.tokens:
            now = time.monotonic()
            if now < lease.expires:
                lease.tokens -= 1  # the common case: no await, no Redis
                lease.expires = now + LEASE_TTL
                return
        granted, wait = await self.take(caller, kind, 1)
        if not granted:
            raise self.refusal(kind, wait)

    def refusal(self, kind: str, wait: float) -> ResourceExhausted:
        self.refused += 1
        return ResourceExhausted(
            f"rate limit of the account's tier reached for {kind}; retry in "
            f"{max(wait, 0.001):.3f} s", reason="RATE_LIMITED", metadata={"limit": kind},
            retry_after=wait)

    async def take(self, caller: Caller, kind: str, want: int) -> tuple[int, float]:
        """Take up to ``want`` tokens: (how many were granted, seconds until the next
        one when short)."""
        rate, burst = limits_of(caller, kind)
        if not self.enabled or rate <= 0 or want <= 0:
            return want, 0.0
        key = (caller.account_id, kind)
        lease = self._leases.get(key)
        if lease is None:
            if len(self._leases) >= MAX_ENTRIES:
                self._leases.clear()
            lease = self._leases[key] = _Lease()
        granted = 0
        while True:
            now = time.monotonic()
            if now >= lease.expires:
                lease.tokens = 0
            take = min(lease.tokens, want - granted)
            lease.tokens -= take
            granted += take
            if take:
                lease.expires = now + LEASE_TTL
            if granted == want:
                return granted, 0.0
            if now < lease.refused_until:
                return granted, lease.refused_until - now
            if lease.fetching is None:
                size = max(want - granted, min(burst, math.ceil(rate * self.lease)))
                self._fetch(lease, f"{KEY_PREFIX}{caller.account_id}:{kind}", rate, burst,
                            size)
            if lease.fetching is not None:
                # Shielded: a caller that goes away does not cancel the others' wait.
                await asyncio.shield(lease.fetching)

    def _leased(self, lease: _Lease, size: int, got: int, wait: float) -> None:
        """A lease request answered: its tokens (and a refusal) go in before any waiter
        looks again."""
        now = time.monotonic()
        lease.tokens += got
        lease.expires = now + LEASE_TTL
        if got < size:
            lease.refused_until = now + wait
        fetching, lease.fetching = lease.fetching, None
        if fetching is not None and not fetching.done():
            fetching.set_result(None)

    def _fetch(self, lease: _Lease, key: str, rate: int, burst: int, want: int) -> None:
        """Ask for ``want`` tokens for ``lease``: from the next pipeline to Redis (the
        waiters wait on ``lease.fetching``), or at once while Redis is away."""
        if time.monotonic() < self._redis_down_until:
            self._leased(lease, want, *self._take_locally(key, rate, burst, want))
            return
        loop = asyncio.get_running_loop()
        lease.fetching = loop.create_future()
        if not self._queue:
            loop.call_soon(self._flush)
        self._queue.append((key, rate, burst, want, lease))

    def _take_locally(self, key: str, rate: int, burst: int, want: int) -> tuple[int, float]:
        bucket = self._local.get(key)
        if bucket is None:
            if len(self._local) >= MAX_ENTRIES:
                self._local.clear()
            bucket = self._local[key] = _LocalBucket(burst)
        return bucket.take(rate, burst, want)

    def _flush(self) -> None:
        queue, self._queue = self._queue, []
        if queue:
            asyncio.ensure_future(self._run(queue))

    async def _evaluate(self, queue: list[tuple[str, int, int, int, _Lease]]) -> list:
        """One pipeline of the script, by its hash (loaded once, and again after Redis
        lost it)."""
        for attempt in range(2):
            async with self.redis.pipeline(transaction=False) as pipe:
                for key, rate, burst, want, _ in queue:
                    pipe.evalsha(self._sha, 1, key, rate, burst, want)
                replies = await pipe.execute(raise_on_error=False)
            self.redis_requests += 1
            if attempt or not any(isinstance(r, NoScriptError) for r in replies):
                break
            await self.redis.script_load(TAKE_SCRIPT)
        for reply in replies:
            if isinstance(reply, Exception):
                raise reply
        return replies

    async def _run(self, queue: list[tuple[str, int, int, int, _Lease]]) -> None:
        try:
            replies = await self._evaluate(queue)
        except (RedisError, OSError) as err:
            if not self.redis_down:
                self.redis_down = True
                log.warning("Redis unreachable (%s): rate limits are counted per process "
                            "until it answers again (asked every %.0f s)", err, REDIS_RETRY)
            self._redis_down_until = time.monotonic() + REDIS_RETRY
            for key, rate, burst, want, lease in queue:
                self._leased(lease, want, *self._take_locally(key, rate, burst, want))
            return
        except BaseException:  # cancelled while stopping: no waiter is left waiting
            for *_, lease in queue:
                self._leased(lease, 0, 0, 0.0)
            raise
        if self.redis_down:
            self.redis_down = False
            log.info("Redis reachable again: rate limits are shared again")
        for (_, _, _, want, lease), (grant, wait_us) in zip(queue, replies, strict=True):
            self._leased(lease, want, int(grant), int(wait_us) / 1e6)
