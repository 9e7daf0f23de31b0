"""Pre-trade holds: the order path's side of the money (docs/money.md).

Before an order is routed to matching, its funds go on hold: one conditional statement
per batch of orders (``Holds``, coalesced like the client_order_id look-up it replaces)
locks the batch's balance rows in (account, asset) order, grants each order whose
running total for its account and asset fits what is available, moves what it grants
from available to held, and records each hold in ``order_holds`` under (account,
client_order_id). The same statement finds the orders that exist already (a retry,
answered from the database) and the ones whose hold is still on its way to matching.
PostgreSQL's row lock is the arbiter: two order services, or two matching pods, can never
grant the same funds twice.

The matching commit that places the order takes its hold over (deletes the row: the money
is the order's now, ``orders.held``). When matching refuses a command for certain
(halted, outside the band, a duplicate, ...), ``release`` gives its hold back at once;
when the outcome is unknown (a timeout, a lost stream), the hold stays until the
``Sweeper`` releases it: holds older than ``HOLD_TTL`` that no order took. Matching
refuses a command whose hold is older than half that (loop.HOLD_MAX_AGE_NS), so a hold
is never swept while its command may still be committed.

What an order holds (``need``): a sell its quantity in base units; a buy its quantity x
the most a lot can cost at its limit, fee included (engine.money.Terms.unit); a market
buy its ``funds``, or else its quantity x the unit at the protection price: the
instrument's reference price (the last trade's; instrument_state.reference_price) plus
its price band (or ``DEFAULT_PROTECTION_BPS`` when it has none), rounded up to a tick.
That price is computed in the statement, from the reference as of the latest commit.
A stop order holds what it will need once triggered: a stop-limit like its limit order,
a stop market sell its base, a stop market buy its funds or else its quantity x the unit
at the protection price of its stop price (``stop_protection``, computed here: the
reference price plays no part).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import asyncpg

from exchange_common.changes import ChangeListener
from exchange_common.errors import Unavailable
from exchange_common.instruments import InstrumentSpec
from order_service.coalesce import Coalescer

log = logging.getLogger(__name__)

BASIS_POINTS = 10_000
INT64_MAX = (1 << 63) - 1
# A market buy without funds pays at most this far above the reference price when its
# instrument has no price band.
DEFAULT_PROTECTION_BPS = 1000
# Holds no order took are released after this long (seconds), by the sweeper.
HOLD_TTL = 60.0
SWEEP_INTERVAL = 10.0
# The sweeper's advisory lock: one sweeper at a time across all order services.
SWEEP_LOCK = 0x6578_686F_6C64  # "exhold"

# What the statement says of each order (its ``status`` column).
GRANTED, EXISTS, PENDING, REFUSED = 1, 2, 3, 4

HOLD_SQL = f"""
WITH input AS (
    SELECT * FROM unnest($1::bigint[], $2::smallint[], $3::bigint[], $4::text[],
                         $5::smallint[], $6::integer[], $7::bigint[], $8::bigint[],
                         $9::bigint[], $10::bigint[])
        WITH ORDINALITY AS r(account_id, asset_id, amount, hold_key, receives, instrument_id,
                             market_lots, tick_lot_units, band_bps, fee_bps, n)
), priced AS (
    SELECT i.*, p.protection,
           CASE WHEN i.market_lots = 0 THEN i.amount
                WHEN p.protection IS NULL THEN 0
                ELSE least({INT64_MAX}, i.market_lots * (p.protection * i.tick_lot_units
                     + ceil(p.protection::numeric * i.tick_lot_units * i.fee_bps
                            / {BASIS_POINTS})))
           END::bigint AS need
      FROM input i
      LEFT JOIN LATERAL (
          SELECT ceil(s.reference_price::numeric * ({BASIS_POINTS} + i.band_bps)
                      / {BASIS_POINTS})::bigint AS protection
            FROM instrument_state s
           WHERE s.instrument_id = i.instrument_id AND i.market_lots > 0
      ) p ON true
), found AS MATERIALIZED (
    -- (client_order_id <> '': the unique index on it is partial; without the condition
    -- the planner cannot use it and scans all orders)
    SELECT i.n, o.order_id FROM input i
      JOIN orders o ON o.account_id = i.account_id AND o.client_order_id = i.hold_key
                   AND o.client_order_id <> ''
), pending AS MATERIALIZED (
    -- a hold on its way to matching already has the key (its amount and time: a retry
    -- goes with it), or an earlier order of this statement does (amount 0)
    SELECT i.n, coalesce(h.amount, 0) AS amount, h.protection, h.held_at FROM input i
      LEFT JOIN order_holds h ON h.account_id = i.account_id AND h.hold_key = i.hold_key
     WHERE NOT EXISTS (SELECT 1 FROM found f WHERE f.n = i.n)
       AND (h.hold_key IS NOT NULL
            OR EXISTS (SELECT 1 FROM input j WHERE j.account_id = i.account_id
                                               AND j.hold_key = i.hold_key AND j.n < i.n))
), req AS (
    SELECT * FROM priced p
     WHERE NOT EXISTS (SELECT 1 FROM found f WHERE f.n = p.n)
       AND NOT EXISTS (SELECT 1 FROM pending q WHERE q.n = p.n)
), locked AS MATERIALIZED (
    SELECT b.account_id, b.asset_id, b.available FROM balances b
     WHERE (b.account_id, b.asset_id) IN (SELECT account_id, asset_id FROM req)
     ORDER BY b.account_id, b.asset_id FOR UPDATE
), granted AS MATERIALIZED (
    SELECT r.* FROM (
        SELECT *, sum(need) OVER (PARTITION BY account_id, asset_id ORDER BY n) AS running
          FROM req) r
      JOIN locked l ON l.account_id = r.account_id AND l.asset_id = r.asset_id
     WHERE r.running <= l.available
), moved AS (
    -- The UPDATE checks the row again as it writes it (the newest version, whatever the
    -- lock phase read): a group that no longer fits moves nothing and is refused.
    UPDATE balances b SET available = b.available - g.total, held = b.held + g.total
      FROM (SELECT account_id, asset_id, sum(need) AS total FROM granted
             GROUP BY account_id, asset_id) g
     WHERE b.account_id = g.account_id AND b.asset_id = g.asset_id
       AND b.available >= g.total
       AND (SELECT count(*) FROM locked) > 0  -- every lock taken before any change
    RETURNING b.account_id, b.asset_id
), taken AS MATERIALIZED (
    SELECT g.* FROM granted g
     WHERE EXISTS (SELECT 1 FROM moved m
                    WHERE m.account_id = g.account_id AND m.asset_id = g.asset_id)
), receiving AS (
    -- only the rows missing: an insert that meets an existing row waits for whoever is
    -- changing it, a lock taken outside the sorted lock phase (a deadlock with another
    -- hold statement was seen under load before this NOT EXISTS)
    INSERT INTO balances (account_id, asset_id)
    SELECT DISTINCT t.account_id, t.receives FROM taken t
     WHERE NOT EXISTS (SELECT 1 FROM balances b
                        WHERE b.account_id = t.account_id AND b.asset_id = t.receives)
     ORDER BY t.account_id, t.receives
    ON CONFLICT DO NOTHING
), hold_rows AS (
    -- in key order too: two statements holding the same keys (a client retrying on
    -- another order-service process) wait for each other in one order, never in a cycle
    INSERT INTO order_holds (account_id, hold_key, asset_id, amount, protection)
    SELECT account_id, hold_key, asset_id, need, coalesce(protection, 0) FROM taken
     WHERE need > 0 ORDER BY account_id, hold_key
)
SELECT n, {GRANTED} AS status, need, protection, 0::bigint AS order_id,
       0::bigint AS available, NULL::timestamptz AS held_at FROM taken
UNION ALL SELECT n, {EXISTS}, 0, NULL, order_id, 0, NULL FROM found
UNION ALL
SELECT n, {PENDING}, amount, protection, 0, 0, held_at FROM pending
UNION ALL
SELECT r.n, {REFUSED}, r.need, r.protection, 0, coalesce(l.available, 0), NULL FROM req r
  LEFT JOIN locked l ON l.account_id = r.account_id AND l.asset_id = r.asset_id
 WHERE NOT EXISTS (SELECT 1 FROM taken g WHERE g.n = r.n)
"""

# Give holds back: $1 accounts, $2 keys ($3: only those older than this many seconds).
# Each hold deleted is credited back once (a release repeated finds no row), and both of
# its movements are written to the ledger (a hold that never became an order).
RELEASE_SQL = """
WITH locked AS MATERIALIZED (
    -- the balance rows first, in order, as every statement that changes balances does;
    -- then the holds (the matching commit also locks balances before order_holds)
    SELECT b.account_id FROM balances b
     WHERE (b.account_id, b.asset_id) IN (
               SELECT h.account_id, h.asset_id FROM order_holds h
                 JOIN unnest($1::bigint[], $2::text[]) AS k(account_id, hold_key)
                   ON h.account_id = k.account_id AND h.hold_key = k.hold_key)
     ORDER BY b.account_id, b.asset_id FOR UPDATE
), gone AS MATERIALIZED (
    DELETE FROM order_holds h
     USING unnest($1::bigint[], $2::text[]) AS k(account_id, hold_key)
     WHERE h.account_id = k.account_id AND h.hold_key = k.hold_key
       AND (SELECT count(*) FROM locked) >= 0
    RETURNING h.account_id, h.asset_id, h.amount, h.hold_key, h.held_at
), credited AS (
    UPDATE balances b SET available = b.available + g.total, held = b.held - g.total
      FROM (SELECT account_id, asset_id, sum(amount) AS total FROM gone
             GROUP BY account_id, asset_id) g
     WHERE b.account_id = g.account_id AND b.asset_id = g.asset_id
), entries AS (
    INSERT INTO ledger (account_id, asset_id, kind, available, held, reference, created_at)
    SELECT account_id, asset_id, 'hold', -amount, amount, 'hold ' || hold_key, held_at
      FROM gone
    UNION ALL
    SELECT account_id, asset_id, 'release', amount, -amount, 'hold ' || hold_key, now()
      FROM gone
)
SELECT count(*) FROM gone
"""

SWEEP_KEYS_SQL = """
SELECT account_id, hold_key FROM order_holds
 WHERE held_at < now() - make_interval(secs => $1) ORDER BY held_at LIMIT 10000
"""


@dataclass(frozen=True, slots=True)
class HoldRequest:
    """One order's hold: ``amount`` of ``asset_id`` (for a market buy without funds,
    ``market_lots`` instead: the statement prices it), under (account, ``key``)."""

    account_id: int
    key: str
    asset_id: int
    amount: int
    receives: int
    instrument_id: int
    market_lots: int = 0
    tick_lot_units: int = 0
    band_bps: int = 0
    fee_bps: int = 0


@dataclass(frozen=True, slots=True)
class HoldResult:
    """What the statement did for one order. PENDING: a hold with the same key is on
    its way to matching (a retry, or a second command with the key in one statement):
    the order goes with that hold (``need``; 0 for the second of one statement), and
    matching answers it as a retry of the order the hold placed, or places it with that
    hold if the first never arrived; the commit that places it checks that the hold is
    still there (matching_service/store.py), so a hold is never used twice."""

    status: int  # GRANTED, EXISTS, PENDING or REFUSED
    need: int = 0  # what it holds (GRANTED, PENDING) or needed (REFUSED)
    protection: int = 0  # a market buy's protection price (0: none)
    order_id: int = 0  # EXISTS: the order that has the key
    available: int = 0  # REFUSED: what was available
    held_at_ns: int = 0


EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def ns_of(at: dt.datetime) -> int:
    """A timestamptz as nanoseconds since the epoch (exactly: PostgreSQL keeps
    microseconds)."""
    return (at - EPOCH) // dt.timedelta(microseconds=1) * 1000


def hold_columns(requests: Sequence[HoldRequest]) -> tuple[list, ...]:
    """``HOLD_SQL``'s ten parameters: one array per field of ``requests``."""
    return ([r.account_id for r in requests], [r.asset_id for r in requests],
            [r.amount for r in requests], [r.key for r in requests],
            [r.receives for r in requests], [r.instrument_id for r in requests],
            [r.market_lots for r in requests], [r.tick_lot_units for r in requests],
            [r.band_bps for r in requests], [r.fee_bps for r in requests])


def unit(spec: InstrumentSpec, price: int, fee_bps: int) -> int:
    """What one lot of a buy holds at ``price`` (engine.money.Terms.unit)."""
    notional = price * spec.tick_lot_units
    return notional + (-(-notional * fee_bps // BASIS_POINTS) if fee_bps > 0 else 0)


def protection_bps(spec: InstrumentSpec) -> int:
    return spec.price_band_bps or DEFAULT_PROTECTION_BPS


def stop_protection(spec: InstrumentSpec, stop_price: int) -> int:
    """A stop market buy's protection price: the rule of a market buy (the price band,
    or ``DEFAULT_PROTECTION_BPS``, above the reference, rounded up to a tick) applied to
    its stop price, the price it becomes a market order at. Ticks."""
    return -(-stop_price * (BASIS_POINTS + protection_bps(spec)) // BASIS_POINTS)


class Holds(Coalescer[Sequence[HoldRequest], list[HoldResult]]):
    """Coalesces the holds of concurrent orders into one statement (``HOLD_SQL``) at a
    time (order_service/coalesce.py)."""

    def __init__(self, pool: asyncpg.Pool, min_interval: float = 0.0) -> None:
        super().__init__(min_interval)
        self.pool = pool
        # Told how many holds were given back, and why ("refused", "swept"): metrics.
        self.released: Callable[[str, int], None] = lambda why, count: None

    def take(self, requests: Sequence[HoldRequest]) -> asyncio.Future[list[HoldResult]]:
        """A future of the list of HoldResult of ``requests``, in their order."""
        return self.submit(requests)

    async def execute(self, groups: list[Sequence[HoldRequest]]) -> list[list[HoldResult]]:
        requests = [r for group in groups for r in group]
        held_at = time.time_ns()
        rows = await self._execute(requests)
        results = [HoldResult(GRANTED)] * len(requests)
        for row in rows:
            at = row["held_at"]
            results[row["n"] - 1] = HoldResult(
                row["status"], row["need"], row["protection"] or 0, row["order_id"],
                row["available"], held_at if at is None else ns_of(at))
        out, start = [], 0
        for group in groups:
            out.append(results[start:start + len(group)])
            start += len(group)
        return out

    async def _execute(self, requests: list[HoldRequest]) -> list[asyncpg.Record]:
        columns = hold_columns(requests)
        for attempt in (1, 2, 3):
            try:
                return await self.pool.fetch(HOLD_SQL, *columns)
            except (asyncpg.UniqueViolationError, asyncpg.DeadlockDetectedError) as err:
                # Two order services held the same new client_order_id at once (or, had
                # an ordering been missed, waited for each other): this statement wrote
                # nothing; run it again (the key is pending now).
                log.info("hold statement run again (attempt %d): %s", attempt, err)
        raise Unavailable("the funds could not be put on hold; retry", reason="HOLD_CONFLICT",
                          retry_after=0.05)

    async def release(self, keys: Sequence[tuple[int, str]]) -> int:
        """Give back the holds of commands matching refused (or that were never sent):
        (account, key) pairs. Returns how many holds were still there."""
        if not keys:
            return 0
        count: int = await self.pool.fetchval(RELEASE_SQL, [k[0] for k in keys],
                                              [k[1] for k in keys])
        self.released("refused", count)
        return count

    def release_soon(self, keys: Sequence[tuple[int, str]]) -> None:
        """``release`` in the background (a failure leaves the holds to the sweeper)."""
        task = asyncio.ensure_future(self.release(keys))
        task.add_done_callback(_log_release_failure)


def _log_release_failure(task: asyncio.Future) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.warning("releasing holds failed (the sweeper will): %s", task.exception())


class Fees:
    """Each account's fee overrides (``account_fees``), cached per account and dropped
    the moment the table changes."""

    def __init__(self, pool: asyncpg.Pool, changes: ChangeListener) -> None:
        self.pool = pool
        self._by_account: dict[int, dict[int, tuple[int, int]]] = {}
        changes.on("account_fees", self._changed)
        changes.on("instruments", self._changed)

    def _changed(self) -> None:
        self._by_account = {}

    async def of(self, account_id: int, spec: InstrumentSpec) -> tuple[int, int]:
        """(maker bps, taker bps) of ``account_id`` on the instrument."""
        overrides = self._by_account.get(account_id)
        if overrides is None:
            rows = await self.pool.fetch(
                """SELECT instrument_id, maker_fee_bps, taker_fee_bps FROM account_fees
                    WHERE account_id = $1""", account_id)
            overrides = {r[0]: (r[1], r[2]) for r in rows}
            if len(self._by_account) > 100_000:
                self._by_account = {}
            self._by_account[account_id] = overrides
        return overrides.get(spec.instrument_id, (spec.maker_fee_bps, spec.taker_fee_bps))


class Sweeper:
    """Releases the holds no order took within ``ttl`` seconds (an order service that
    crashed between the hold and the answer, a command whose fate was unknown): every
    ``interval`` seconds, on one order service at a time (an advisory lock)."""

    def __init__(self, pool: asyncpg.Pool, holds: Holds, ttl: float = HOLD_TTL,
                 interval: float = SWEEP_INTERVAL) -> None:
        self.pool, self.holds = pool, holds
        self.ttl, self.interval = ttl, interval
        self.task: asyncio.Task | None = None
        self.released = 0

    def start(self) -> None:
        self.task = asyncio.create_task(self._run(), name="hold-sweeper")

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            try:
                await self.task
            except asyncio.CancelledError:
                pass

    async def sweep(self) -> int:
        """One sweep; how many holds it released (0 when another sweeper runs)."""
        async with self.pool.acquire() as conn:
            if not await conn.fetchval("SELECT pg_try_advisory_lock($1)", SWEEP_LOCK):
                return 0
            try:
                keys = [(r[0], r[1]) for r in await conn.fetch(SWEEP_KEYS_SQL, self.ttl)]
                released = await conn.fetchval(
                    RELEASE_SQL, [k[0] for k in keys], [k[1] for k in keys]) if keys else 0
            finally:
                await conn.execute("SELECT pg_advisory_unlock($1)", SWEEP_LOCK)
        if released:
            log.info("released %d holds older than %.0f s that no order took", released,
                     self.ttl)
            self.holds.released("swept", released)
        self.released += released
        return released

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.sweep()
            except (asyncpg.PostgresError, OSError, asyncpg.InterfaceError) as err:
                log.warning("sweeping holds failed: %s", err)
