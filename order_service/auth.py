"""Who is calling: an API key to its account and rate tier.

Keys are looked up by their SHA-256 and cached, found or not; the cache is dropped
the moment a key, an account or a tier changes anywhere (``ChangeListener``), so a
revoked key is refused by the next call on every replica, and a key restored is
accepted by the next one. A look-up that raced with a change is not cached.

Guessing keys is bounded per peer address: after ``max_failed_per_minute``
failures (an unknown, revoked or malformed key) a peer's calls with keys this
process does not already know are refused with RESOURCE_EXHAUSTED
(``AUTH_RATE_LIMITED``, with a RetryInfo) without a look-up, until its budget
refills (``max_failed_per_minute`` per minute).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import asyncpg
import grpc

from exchange_common.changes import ChangeListener
from exchange_common.errors import PermissionDenied, ResourceExhausted, Unauthenticated
from exchange_common.keys import MAX_KEY_LENGTH, key_hash

API_KEY_HEADER = "x-api-key"
# Entries kept at most (cache and failure budgets); emptied when full.
MAX_ENTRIES = 100_000

CALLER_SELECT = """
SELECT k.account_id, a.disabled_at IS NOT NULL AS disabled, t.name AS tier,
       t.orders_per_second, t.orders_burst, t.cancels_per_second, t.cancels_burst,
       t.queries_per_second, t.queries_burst, t.max_open_orders
  FROM api_keys k
  JOIN accounts a ON a.account_id = k.account_id
  JOIN rate_tiers t ON t.name = a.tier
 WHERE k.key_sha256 = $1 AND k.revoked_at IS NULL
"""


@dataclass(frozen=True, slots=True)
class Tier:
    """An account's limits (``rate_tiers``; 0 means no limit)."""

    name: str
    orders_per_second: int
    orders_burst: int
    cancels_per_second: int
    cancels_burst: int
    queries_per_second: int
    queries_burst: int
    max_open_orders: int


@dataclass(frozen=True, slots=True)
class Caller:
    account_id: int
    tier: Tier
    disabled: bool = False


def peer_host(context: grpc.aio.ServicerContext) -> str:
    """The caller's address without its port ("ipv4:10.0.0.7:53000" -> "ipv4:10.0.0.7")."""
    peer = context.peer() or ""
    host, sep, port = peer.rpartition(":")
    return host if sep and port.isdigit() else peer


def api_key_of(context: grpc.aio.ServicerContext) -> str:
    """The one x-api-key of the call, or Unauthenticated."""
    keys = [value for key, value in context.invocation_metadata() or ()
            if key == API_KEY_HEADER]
    if not keys or not keys[0]:
        raise Unauthenticated(f"missing API key: send it as metadata '{API_KEY_HEADER}'",
                              reason="API_KEY_MISSING")
    if len(keys) > 1:
        raise Unauthenticated(f"send one '{API_KEY_HEADER}', not {len(keys)}",
                              reason="API_KEY_REPEATED")
    key = keys[0]
    if not isinstance(key, str):  # a "-bin" style value: never one of ours
        raise Unauthenticated("unknown or revoked API key", reason="API_KEY_INVALID")
    return key


class FailureBudget:
    """Failed authentications per peer: a token bucket each (``per_minute`` burst,
    refilled at ``per_minute`` a minute)."""

    def __init__(self, per_minute: int) -> None:
        self.burst = per_minute
        self.rate = per_minute / 60.0
        self._peers: dict[str, tuple[float, float]] = {}

    def _level(self, peer: str, now: float) -> float:
        tokens, last = self._peers.get(peer, (self.burst, now))
        return min(self.burst, tokens + (now - last) * self.rate)

    def exhausted(self, peer: str) -> float:
        """Seconds until ``peer`` may try again; 0 when it may now."""
        now = time.monotonic()
        tokens = self._level(peer, now)
        return 0.0 if tokens >= 1 else (1 - tokens) / self.rate

    def failed(self, peer: str) -> None:
        now = time.monotonic()
        tokens = self._level(peer, now)
        if len(self._peers) >= MAX_ENTRIES:
            self._peers.clear()
        self._peers[peer] = (max(0.0, tokens - 1), now)


class Authenticator:
    def __init__(self, pool: asyncpg.Pool, changes: ChangeListener, *, ttl: float,
                 max_failed_per_minute: int) -> None:
        self.pool = pool
        self.changes = changes
        self.ttl = ttl
        self.failures = FailureBudget(max_failed_per_minute)
        # key -> (caller or None, monotonic time cached)
        self._cache: dict[str, tuple[Caller | None, float]] = {}
        for table in ("api_keys", "accounts", "rate_tiers"):
            changes.on(table, self._cache.clear)

    async def caller(self, context: grpc.aio.ServicerContext) -> Caller:
        """The authenticated caller of ``context``, or the error to answer with."""
        key = api_key_of(context)
        now = time.monotonic()
        hit = self._cache.get(key)
        if hit is not None and now - hit[1] < self.changes.max_age(self.ttl):
            caller = hit[0]
        else:
            caller = await self._look_up(key, context)
        if caller is None:
            self.failures.failed(peer_host(context))
            raise Unauthenticated("unknown or revoked API key", reason="API_KEY_INVALID")
        if caller.disabled:
            raise PermissionDenied("the account is disabled", reason="ACCOUNT_DISABLED")
        return caller

    async def _look_up(self, key: str, context: grpc.aio.ServicerContext) -> Caller | None:
        peer = peer_host(context)
        wait = self.failures.exhausted(peer)
        if wait:
            raise ResourceExhausted(
                "too many failed authentications from this address; try again later",
                reason="AUTH_RATE_LIMITED", retry_after=wait)
        if len(key) > MAX_KEY_LENGTH or not key.isascii() or not key.isprintable():
            return None
        generation = self.changes.generation
        row = await self.pool.fetchrow(CALLER_SELECT, key_hash(key))
        caller = None if row is None else Caller(
            row["account_id"],
            Tier(row["tier"], row["orders_per_second"], row["orders_burst"],
                 row["cancels_per_second"], row["cancels_burst"], row["queries_per_second"],
                 row["queries_burst"], row["max_open_orders"]),
            row["disabled"])
        if generation == self.changes.generation:  # no change since the look-up began
            if len(self._cache) >= MAX_ENTRIES:
                self._cache.clear()
            self._cache[key] = (caller, time.monotonic())
        return caller
