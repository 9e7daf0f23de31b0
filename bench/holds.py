"""Money in PostgreSQL: what pre-trade holds and settlement would cost (issue 13's design).

No service holds or settles money yet; this measures the design of docs/money.md on
the PostgreSQL of the dev stack before it is built. It creates the design's tables
(``balances``, ``order_holds``, ``ledger``) in a database of its own and runs the seed
mix (70% limit / 30% market, 0.01-0.5 BTC, limit prices 68,000-72,000) paced like the
seed scenario: a batch of ``--batch`` orders every ``--interval`` seconds per pod (10
every 5 ms = 2,000 orders/s), each batch going

1. through the order path's hold: ONE conditional statement per batch, which is also
   the batch's ``client_order_id`` look-up (``ClientIdLookups`` today): lock the
   batch's balance rows in (account, asset) order, grant each order whose running
   total for its account and asset fits the available amount, move it from available
   to held, record the hold (``order_holds``); a refused order never reaches the book;
2. through the matching engine (the granted orders only);
3. into the matching commit: the statement ``matching_service/store.py`` runs, with
   the settlement as more CTEs of it, all behind the same fence: the trades' base and
   quote movements, the fees, the holds released (fills, price improvement, expiry),
   netted to one update per (account, asset), the rows locked in sorted order first.

Runs (``--runs``, a list):

- ``plain``: today: the order path's ``client_order_id`` look-up (the statement of
  ``ClientIdLookups``) in place of step 1, and step 3 without money: the reference;
- ``money``: steps 1-3, ledger entries derived (the trades and orders are the entries);
- ``ledger``: steps 1-3, plus one ``ledger`` row per movement written in both
  statements;
- ``plain-pods``: ``plain`` with the two pods of ``pods``, the reference of the runs below;
- ``pods``: two pods (instruments BTC-USD and ETH-USD, sharing the USD asset) at the
  same time, each at half the rate (a batch every other interval), orders from many
  accounts;
- ``hot``: the same two pods, every order from one of ``--hot`` accounts: their USD rows
  are in nearly every statement of both pods (cross-shard contention);
- ``unsorted``: ``hot`` with the row locks taken in random order (what the sorted order
  prevents: PostgreSQL finds a deadlock and aborts a statement, after deadlock_timeout).

Each run reports PostgreSQL CPU per order (every process of the server), this
process's CPU per order (engine, encoding, the settlement's arithmetic), the latency
of the order path's statement (hold and look-up; ``plain``: the look-up) and of the
commit (P50/P99), refusals, and checks at its end: per
asset, the sum of every balance (the fee account's too) equals what was deposited; no
balance is negative; every account's held amount equals what its open orders still
need; and (one pod) every grant and refusal, and every balance, equals a Python model.

    python -m bench.holds --seconds 20

Uses an embedded PostgreSQL (fsync and synchronous_commit on) unless
EXCHANGE_DATABASE_URL names a server; either way in a database created and dropped by
the run.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import asyncpg

from bench.commit import postgres_processes
from bench.cpu import own_seconds, processes_seconds
from bench.database import database_url, scratch_database
from bench.results import write_result
from exchange_common import db
from matching_service.engine import (
    BUY,
    GTC,
    IOC,
    LIMIT,
    MARKET,
    OPEN_STATES,
    SELL,
    OrderBook,
)
from matching_service.store import Store

# Assets (smallest units): BTC and ETH in 1e-8, USD in 1e-6, so that a tick (0.01 USD)
# times a lot (0.0001 BTC, 0.001 ETH) is a whole number of quote units.
BTC, USD, ETH = 1, 2, 3
ASSETS = [(BTC, "BTC", 8), (USD, "USD", 6), (ETH, "ETH", 8)]
# instrument -> (base asset, quote asset, base units per lot, quote units per tick * lot)
INSTRUMENTS = {1: (BTC, USD, 10_000, 1), 2: (ETH, USD, 100_000, 1)}
# The highest price a market buy may pay (the price band's top): its hold is
# quantity x this, plus the largest fee.
PROTECTION = 7_400_000
# Ledger entry kinds.
DEPOSIT, HOLD, RELEASE, TRADE, FEE = 1, 2, 3, 4, 5
RICH = {BTC: 100_000 * 10**8, ETH: 1_000_000 * 10**8, USD: 10**9 * 10**6}
POOR = {BTC: 5 * 10**6, ETH: 5 * 10**7, USD: 2_000 * 10**6}  # 0.05 BTC, 0.5 ETH, 2,000 USD

SCHEMA = """
CREATE TABLE assets (
    asset_id  smallint PRIMARY KEY,
    symbol    text NOT NULL UNIQUE,
    decimals  smallint NOT NULL CHECK (decimals BETWEEN 0 AND 18)
);
CREATE TABLE balances (
    account_id  bigint NOT NULL,
    asset_id    smallint NOT NULL,
    available   bigint NOT NULL DEFAULT 0 CHECK (available >= 0),
    held        bigint NOT NULL DEFAULT 0 CHECK (held >= 0),
    PRIMARY KEY (account_id, asset_id)
);
CREATE TABLE order_holds (
    account_id       bigint NOT NULL,
    client_order_id  text NOT NULL,
    asset_id         smallint NOT NULL,
    amount           bigint NOT NULL CHECK (amount > 0),
    held_at          timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (account_id, client_order_id)
);
CREATE TABLE ledger (
    entry_id    bigint GENERATED ALWAYS AS IDENTITY,
    account_id  bigint NOT NULL,
    asset_id    smallint NOT NULL,
    kind        smallint NOT NULL,
    available   bigint NOT NULL,
    held        bigint NOT NULL,
    ref         bigint NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (account_id, entry_id)
);
"""


# The order service's batched client_order_id look-up (order_service/store.py,
# ClientIdLookups), today's one statement per batch in the order path.
LOOKUP_SQL = """SELECT o.* FROM orders o
     JOIN unnest($1::bigint[], $2::text[]) AS k(account_id, client_order_id)
       ON o.account_id = k.account_id AND o.client_order_id = k.client_order_id
      AND o.client_order_id <> ''"""


def hold_sql(ledger: bool, order: str = "b.account_id, b.asset_id") -> str:
    """The order path's statement: $1 accounts, $2 assets, $3 amounts, $4 client order
    ids, $5 the asset each order would receive, one element per order in arrival order.
    It is the order service's ``client_order_id`` look-up too (ClientIdLookups): an order
    whose id is taken (by an order, or by a hold whose order is still on its way) is not
    held again. Returns (ordinal, 0) for each granted order (ordinals are 1-based) and
    (ordinal, order id) for each whose id an order has. ``order``: the order the balance
    rows are locked in."""
    ledger_cte = f""", hold_entries AS (
    INSERT INTO ledger (account_id, asset_id, kind, available, held, ref)
    SELECT account_id, asset_id, {HOLD}, -amount, amount, n FROM granted
)""" if ledger else ""
    return f"""
WITH input AS (
    SELECT * FROM unnest($1::bigint[], $2::smallint[], $3::bigint[], $4::text[],
                         $5::smallint[])
        WITH ORDINALITY AS r(account_id, asset_id, amount, client_order_id, receives, n)
), found AS MATERIALIZED (
    SELECT i.n, o.order_id FROM input i
      JOIN orders o ON o.account_id = i.account_id AND o.client_order_id = i.client_order_id
                   AND o.client_order_id <> ''
), req AS (
    SELECT * FROM input i
     WHERE NOT EXISTS (SELECT 1 FROM found f WHERE f.n = i.n)
       AND NOT EXISTS (SELECT 1 FROM order_holds h WHERE h.account_id = i.account_id
                                                      AND h.client_order_id = i.client_order_id)
), locked AS MATERIALIZED (
    SELECT b.account_id, b.asset_id, b.available FROM balances b
     WHERE (b.account_id, b.asset_id) IN (SELECT account_id, asset_id FROM req)
     ORDER BY {order} FOR UPDATE
), granted AS MATERIALIZED (
    SELECT r.account_id, r.asset_id, r.amount, r.client_order_id, r.receives, r.n
      FROM (SELECT *, sum(amount) OVER (PARTITION BY account_id, asset_id ORDER BY n)
                      AS running FROM req) r
      JOIN locked l ON l.account_id = r.account_id AND l.asset_id = r.asset_id
     WHERE r.running <= l.available
), moved AS (
    UPDATE balances b SET available = b.available - g.total, held = b.held + g.total
      FROM (SELECT account_id, asset_id, sum(amount) AS total FROM granted
             GROUP BY account_id, asset_id) g
     WHERE b.account_id = g.account_id AND b.asset_id = g.asset_id
       AND (SELECT count(*) FROM locked) > 0  -- every lock taken before any change
), receiving AS (
    INSERT INTO balances (account_id, asset_id)
    SELECT DISTINCT account_id, receives FROM granted ORDER BY account_id, receives
    ON CONFLICT DO NOTHING
), hold_rows AS (
    INSERT INTO order_holds (account_id, client_order_id, asset_id, amount)
    SELECT account_id, client_order_id, asset_id, amount FROM granted
){ledger_cte}
SELECT n, 0::bigint AS order_id FROM granted
UNION ALL SELECT n, order_id FROM found
"""


def settlement_sql(commit: str, ledger: bool, order: str = "b.account_id, b.asset_id") -> str:
    """The matching commit (``commit``, the statement of matching_service/store.py, whose
    parameters end at $8) with the settlement as more CTEs behind the same fence: $9-$12
    one delta per (account, asset): available, held; $13-$14 the holds that became
    orders (account, client order id); $15-$20 the ledger rows when ``ledger``. The
    balance rows are locked in ``order`` before any is changed; every one exists (the
    order path made the row of the asset an order receives). Returns the fence's count
    and the number of balance rows changed."""
    head, tail = commit.rsplit("SELECT count(*) FROM fence", 1)
    assert not tail.strip(), "the commit statement ends with its fence count"
    ledger_cte = """, entries AS (
    INSERT INTO ledger (account_id, asset_id, kind, available, held, ref)
    SELECT * FROM unnest($15::bigint[], $16::smallint[], $17::smallint[], $18::bigint[],
                         $19::bigint[], $20::bigint[])
     WHERE EXISTS (SELECT 1 FROM fence)
)""" if ledger else ""
    return head.rstrip() + f"""
, money_locked AS MATERIALIZED (
    SELECT b.account_id FROM balances b
     WHERE (b.account_id, b.asset_id) IN (SELECT * FROM unnest($9::bigint[], $10::smallint[]))
       AND EXISTS (SELECT 1 FROM fence)
     ORDER BY {order} FOR UPDATE
), settled AS (
    UPDATE balances b SET available = b.available + d.available, held = b.held + d.held
      FROM unnest($9::bigint[], $10::smallint[], $11::bigint[], $12::bigint[])
               AS d(account_id, asset_id, available, held)
     WHERE b.account_id = d.account_id AND b.asset_id = d.asset_id
       AND (SELECT count(*) FROM money_locked) > 0
    RETURNING 1
), holds_placed AS (
    DELETE FROM order_holds h
     USING unnest($13::bigint[], $14::text[]) AS k(account_id, client_order_id)
     WHERE h.account_id = k.account_id AND h.client_order_id = k.client_order_id
       AND EXISTS (SELECT 1 FROM fence)
){ledger_cte}
SELECT (SELECT count(*) FROM fence) AS fenced, (SELECT count(*) FROM settled) AS settled
"""


def fee(numerator: int) -> int:
    """A fee in smallest units from its numerator (notional x basis points): rounded up,
    which is towards the exchange for a charge (more) and for a rebate (a negative
    numerator: rounded towards zero, less)."""
    return -(-numerator // 10_000)


@dataclass
class Live:
    """What the bench (as the matching pod would) knows of one order's money."""

    account_id: int
    side: int
    limit: int  # the price its hold was computed at (market buy: PROTECTION)
    held: int  # what is still on hold for it
    fee_numerator: int = 0  # sum of notional x bps of its fills


@dataclass
class Stats:
    hold_ms: list[float] = field(default_factory=list)
    commit_ms: list[float] = field(default_factory=list)
    orders: int = 0
    granted: int = 0
    refused: int = 0
    trades: int = 0
    model_mismatches: int = 0
    deadlocks: int = 0
    late_batches: int = 0


class Pod:
    """One instrument's order path and matching loop, with the money bookkeeping."""

    def __init__(self, instrument_id: int, store: Store, order_conn: asyncpg.Connection,
                 accounts: list[int], fee_account: int, taker_bps: int, maker_bps: int,
                 money: bool, ledger: bool, lock_order: str, model: dict | None,
                 seed: int) -> None:
        self.instrument_id = instrument_id
        self.base, self.quote, self.lot_units, self.tick_lot_units = INSTRUMENTS[instrument_id]
        self.store, self.conn = store, order_conn
        self.accounts, self.fee_account = accounts, fee_account
        self.taker_bps, self.maker_bps = taker_bps, maker_bps
        self.max_bps = max(taker_bps, maker_bps, 0)
        self.money, self.ledger = money, ledger
        self.hold = hold_sql(ledger, "random()" if lock_order == "random" else
                             "b.account_id, b.asset_id")
        self.lock_order = lock_order
        self.commit_sql = ""
        self.model = model  # (account, asset) -> [available, held], one pod only
        self.book = OrderBook(instrument_id)  # its sequence: start()
        self.tag = uuid.uuid4().hex[:8]  # client order ids unique across runs
        self.rng = random.Random(seed)
        self.live: dict[int, Live] = {}
        self.stats = Stats()
        self.count = 0

    def notional(self, price: int, lots: int) -> int:
        return price * lots * self.tick_lot_units

    def hold_of(self, side: int, order_type: int, price: int, lots: int) -> tuple[int, int]:
        """(asset, amount) an order must hold: a buy its limit (a market buy the
        protection price) x quantity plus the largest fee; a sell its base quantity."""
        if side == SELL:
            return self.base, lots * self.lot_units
        limit = price if order_type == LIMIT else PROTECTION
        n = self.notional(limit, lots)
        return self.quote, n + fee(n * self.max_bps)

    async def batch(self, size: int) -> None:
        now = time.time_ns() // 1000 * 1000
        orders = []
        for _ in range(size):
            self.count += 1
            side = self.rng.choice((BUY, SELL))
            lots = self.rng.randint(100, 5000)
            if self.rng.random() < 0.7:
                order_type, tif, price = LIMIT, GTC, self.rng.randint(6_800_000, 7_200_000)
            else:
                order_type, tif, price = MARKET, IOC, 0
            coid = f"{self.tag}-{self.count}"
            orders.append((self.rng.choice(self.accounts), side, order_type, tif, price, lots,
                           coid))
        self.stats.orders += len(orders)
        if self.money:
            holds = [self.hold_of(o[1], o[2], o[4], o[5]) for o in orders]
            t0 = time.perf_counter()
            rows = await self.conn.fetch(
                self.hold, [o[0] for o in orders], [h[0] for h in holds],
                [h[1] for h in holds], [o[6] for o in orders],
                [self.base if o[1] == BUY else self.quote for o in orders])
            self.stats.hold_ms.append((time.perf_counter() - t0) * 1000)
            granted = {r["n"] - 1 for r in rows if r["order_id"] == 0}
            if self.model is not None:
                self._check_grants(orders, holds, granted)
        else:  # today's order path: the client_order_id look-up alone
            holds = [(0, 0)] * len(orders)
            t0 = time.perf_counter()
            await self.conn.fetch(LOOKUP_SQL, [o[0] for o in orders], [o[6] for o in orders])
            self.stats.hold_ms.append((time.perf_counter() - t0) * 1000)
            granted = set(range(len(orders)))
        self.stats.granted += len(granted)
        self.stats.refused += len(orders) - len(granted)
        deltas: dict[tuple[int, int], list[int]] = defaultdict(lambda: [0, 0])
        entries: list[tuple[int, int, int, int, int, int]] = []
        placed: list[tuple[int, str]] = []
        for i, (account, side, order_type, tif, price, lots, coid) in enumerate(orders):
            if i not in granted:
                continue
            outcome = self.book.new_order(account, side, order_type, tif, price, lots, coid,
                                          False, now)
            if not self.money:
                continue
            placed.append((account, coid))
            if outcome.order is None:  # refused by the engine: the whole hold goes back
                self._move(deltas, entries, account, holds[i][0], holds[i][1], -holds[i][1],
                           RELEASE, 0)
                continue
            limit = price if order_type == LIMIT else PROTECTION
            self.live[outcome.order.order_id] = Live(account, side, limit, holds[i][1])
        changes = self.book.drain_changes()
        self.stats.trades += len(changes.trades)
        args: list = []
        if self.money:
            for t in changes.trades:
                self._settle(t, deltas, entries)
            for o in changes.orders:
                if o.state not in OPEN_STATES and o.order_id in self.live:
                    live = self.live.pop(o.order_id)
                    asset = self.quote if live.side == BUY else self.base
                    if live.held:
                        self._move(deltas, entries, live.account_id, asset, live.held,
                                   -live.held, RELEASE, o.order_id)
            keys = sorted(k for k, v in deltas.items() if v != [0, 0])
            args = [[k[0] for k in keys], [k[1] for k in keys],
                    [deltas[k][0] for k in keys], [deltas[k][1] for k in keys],
                    [p[0] for p in placed], [p[1] for p in placed]]
            if self.ledger:
                args += [list(col) for col in zip(*entries, strict=True)] if entries else \
                    [[], [], [], [], [], []]
            if self.model is not None:
                for k in keys:
                    m = self.model.setdefault(k, [0, 0])
                    m[0] += deltas[k][0]
                    m[1] += deltas[k][1]
        t0 = time.perf_counter()
        await self._commit(changes, args)
        self.stats.commit_ms.append((time.perf_counter() - t0) * 1000)

    def _check_grants(self, orders: list, holds: list, granted: set[int]) -> None:
        """Compare the statement's grants with the model's: in arrival order, an order is
        granted while the running total of its account's holds on the asset in this
        statement fits what was available before it."""
        running: dict[tuple[int, int], int] = defaultdict(int)
        assert self.model is not None
        for i, (account, *_rest) in enumerate(orders):
            key = (account, holds[i][0])
            running[key] += holds[i][1]
            expect = running[key] <= self.model.get(key, [0, 0])[0]
            if expect != (i in granted):
                self.stats.model_mismatches += 1
        for i in granted:
            m = self.model.setdefault((orders[i][0], holds[i][0]), [0, 0])
            m[0] -= holds[i][1]
            m[1] += holds[i][1]

    @staticmethod
    def _move(deltas: dict, entries: list, account: int, asset: int, available: int,
              held: int, kind: int, ref: int) -> None:
        d = deltas[account, asset]
        d[0] += available
        d[1] += held
        entries.append((account, asset, kind, available, held, ref))

    def _settle(self, t, deltas: dict, entries: list) -> None:  # noqa: ANN001 - a Trade
        """One trade's movements: base from seller to buyer, quote from buyer to seller,
        each side's fee (difference of the ceilings of its order's running numerator) to
        the fee account; the buyer's hold gives back the price improvement at once."""
        notional = self.notional(t.price, t.quantity)
        base = t.quantity * self.lot_units
        maker, taker = self.live[t.maker_order_id], self.live[t.taker_order_id]
        fees = {}
        for live, bps in ((maker, self.maker_bps), (taker, self.taker_bps)):
            before = fee(live.fee_numerator)
            live.fee_numerator += notional * bps
            fees[id(live)] = fee(live.fee_numerator) - before
        buyer, seller = (taker, maker) if t.taker_side == BUY else (maker, taker)
        fb, fs = fees[id(buyer)], fees[id(seller)]
        # buyer: the hold pays limit x q and the fee if positive; the improvement
        # (limit - price) x q and any rebate go to available
        from_hold = self.notional(buyer.limit, t.quantity) + max(fb, 0)
        buyer.held -= from_hold
        self._move(deltas, entries, buyer.account_id, self.quote,
                   from_hold - notional - fb, -from_hold, TRADE, t.trade_id)
        self._move(deltas, entries, buyer.account_id, self.base, base, 0, TRADE, t.trade_id)
        seller.held -= base
        self._move(deltas, entries, seller.account_id, self.base, 0, -base, TRADE, t.trade_id)
        self._move(deltas, entries, seller.account_id, self.quote, notional - fs, 0, TRADE,
                   t.trade_id)
        self._move(deltas, entries, self.fee_account, self.quote, fb + fs, 0, FEE, t.trade_id)
        assert buyer.held >= 0 and seller.held >= 0, "a hold never goes below what it paid"

    async def _commit(self, changes, args: list) -> None:  # noqa: ANN001 - Changes
        if not self.money:
            await self.store.commit(self.instrument_id, 1, changes)
            return
        # Store.commit's own arguments, then the settlement's (the same SQL shape)
        from exchange_common.ids import make_id
        iid = self.instrument_id
        async with self.store.pool.acquire() as conn:
            sql = await self.store.statements(conn)
            if not self.commit_sql:
                self.commit_sql = settlement_sql(
                    sql.commit, self.ledger,
                    "random()" if self.lock_order == "random" else "b.account_id, b.asset_id")
            if changes.last_sequence < changes.first_sequence:
                return
            first_id = make_id(iid, changes.first_sequence)
            new = [o for o in changes.orders if o.order_id >= first_id]
            changed = [o for o in changes.orders if o.order_id < first_id]
            row = await conn.fetchrow(
                self.commit_sql, iid, 1, changes.last_sequence, changes.first_sequence - 1,
                sql.journal.rows(changes.events, instrument_id=iid, owner_epoch=1),
                sql.orders.rows(new, instrument_id=iid), sql.orders.rows(changed,
                                                                         instrument_id=iid),
                sql.trades.rows(changes.trades, instrument_id=iid), *args)
        assert row["fenced"], "the bench owns its instruments"
        assert row["settled"] == len(args[0]), "every balance row to change exists"


def percentile(values: list[float], p: float) -> float:
    if not values:
        return 0.0
    s = sorted(values)
    return round(s[min(len(s) - 1, int(p / 100 * len(s)))], 2)


async def setup(url: str, accounts: int, poor_every: int) -> tuple[list[int], int, dict]:
    """The design's tables, the accounts and their deposits; (accounts, the fee
    account, deposits per asset)."""
    conn = await asyncpg.connect(url)
    try:
        await db.migrate(conn)
        await db.seed_instruments(conn)
        await conn.execute(SCHEMA)
        await conn.executemany("INSERT INTO assets VALUES ($1, $2, $3)", ASSETS)
        await conn.execute("UPDATE instrument_state SET owner_epoch = 1, last_sequence = 0")
        ids = [r["account_id"] for r in await conn.fetch(
            """INSERT INTO accounts (name) SELECT 'bench-holds-' || i
                 FROM generate_series(1, $1) i RETURNING account_id""", accounts)]
        fee_account = await conn.fetchval(
            "INSERT INTO accounts (name) VALUES ('fees') RETURNING account_id")
        rows = []
        for i, a in enumerate(sorted(ids)):
            funds = POOR if poor_every and i % poor_every == 0 else RICH
            rows += [(a, asset, funds[asset]) for asset in funds]
        rows += [(fee_account, asset, 0) for asset, _, _ in ASSETS]
        await conn.executemany(
            "INSERT INTO balances (account_id, asset_id, available) VALUES ($1, $2, $3)", rows)
        await conn.executemany(
            """INSERT INTO ledger (account_id, asset_id, kind, available, held, ref)
               VALUES ($1, $2, $3, $4, 0, 0)""", [(a, s, DEPOSIT, v) for a, s, v in rows])
        deposits: dict[int, int] = defaultdict(int)
        for _, asset, v in rows:
            deposits[asset] += v
        return sorted(ids), fee_account, dict(deposits)
    finally:
        await conn.close()


async def reset(url: str) -> None:
    """Balances back to the deposits; the orders, trades and journal of earlier runs
    stay (a real exchange's tables are not empty: on an empty, analyzed ``orders`` the
    planner scans it whole for every look-up, which cost 100-200 us per order more in
    the first measurements), and the statistics are fresh."""
    conn = await asyncpg.connect(url)
    await conn.execute("TRUNCATE order_holds")
    await conn.execute("DELETE FROM ledger WHERE kind <> $1", DEPOSIT)
    await conn.execute("""UPDATE balances b SET available = l.amount, held = 0
                            FROM (SELECT account_id, asset_id, sum(available) AS amount
                                    FROM ledger GROUP BY 1, 2) l
                           WHERE b.account_id = l.account_id AND b.asset_id = l.asset_id""")
    await conn.execute("VACUUM ANALYZE")
    await conn.execute("CHECKPOINT")
    await conn.close()


async def check(url: str, deposits: dict[int, int], pods: list[Pod],
                model: dict | None) -> dict:
    """The invariants after a run (see docs/money.md, "check-balances")."""
    conn = await asyncpg.connect(url)
    try:
        sums = {r["asset_id"]: int(r["total"]) for r in await conn.fetch(
            "SELECT asset_id, sum(available + held) AS total FROM balances GROUP BY 1")}
        negative = await conn.fetchval(
            "SELECT count(*) FROM balances WHERE available < 0 OR held < 0")
        held = {(r["account_id"], r["asset_id"]): r["held"] for r in await conn.fetch(
            "SELECT account_id, asset_id, held FROM balances WHERE held <> 0")}
        pending = await conn.fetchval("SELECT count(*) FROM order_holds")
        balances = {(r["account_id"], r["asset_id"]): [r["available"], r["held"]]
                    for r in await conn.fetch("SELECT * FROM balances")}
    finally:
        await conn.close()
    need: dict[tuple[int, int], int] = defaultdict(int)
    for pod in pods:
        for live in pod.live.values():
            asset = pod.quote if live.side == BUY else pod.base
            need[live.account_id, asset] += live.held
    held_mismatches = sum(1 for k in set(held) | set(need) if held.get(k, 0) != need.get(k, 0))
    out = {"sums_equal_deposits": all(sums.get(a, 0) == v for a, v in deposits.items()),
           "negative_balances": negative, "held_mismatches": held_mismatches,
           "pending_holds": pending}
    if model is not None:
        out["balance_mismatches"] = sum(
            1 for k in set(balances) | set(model)
            if balances.get(k, [0, 0]) != model.get(k, [0, 0]))
    return out


async def run_one(url: str, port: int, name: str, args: argparse.Namespace,
                  accounts: list[int], fee_account: int, deposits: dict[int, int]) -> dict:
    await reset(url)
    money = not name.startswith("plain")
    two = name in ("plain-pods", "pods", "hot", "unsorted")
    who = accounts[:args.hot] if name in ("hot", "unsorted") else accounts
    lock_order = "random" if name == "unsorted" else "sorted"
    model = None
    if not two and money:
        conn = await asyncpg.connect(url)
        model = {(r["account_id"], r["asset_id"]): [r["available"], r["held"]]
                 for r in await conn.fetch("SELECT * FROM balances")}
        await conn.close()
    pods, pools, conns = [], [], []
    for k, iid in enumerate((1, 2) if two else (1,)):
        pool = await db.create_pool(url, min_size=1, max_size=1)
        conn = await asyncpg.connect(url)
        await pool.fetchval("SELECT 1")
        pools.append(pool)
        conns.append(conn)
        pods.append(Pod(iid, Store(pool), conn, who, fee_account, args.taker_bps,
                        args.maker_bps, money, name == "ledger", lock_order, model,
                        args.seed + k))
    # Two pods share the seed rate: each sends a batch every other interval.
    interval = args.interval * len(pods)
    batches = max(1, round(args.seconds / interval))
    conn = await asyncpg.connect(url)
    for pod in pods:  # an empty book, after the sequences of the earlier runs
        last = await conn.fetchval(
            "SELECT last_sequence FROM instrument_state WHERE instrument_id = $1",
            pod.instrument_id)
        pod.book = OrderBook(pod.instrument_id, last_sequence=last)
    await conn.close()
    procs = postgres_processes(port)
    pg0, me0, t0 = processes_seconds(procs), own_seconds(), time.perf_counter()

    async def drive(pod: Pod) -> None:
        due = time.perf_counter()
        for _ in range(batches):
            wait = due - time.perf_counter()
            if wait > 0:
                await asyncio.sleep(wait)
            elif wait < -interval:
                pod.stats.late_batches += 1
            try:
                await pod.batch(args.batch)
            except asyncpg.DeadlockDetectedError:
                pod.stats.deadlocks += 1
                return  # the batch was not written: this pod's model is no longer valid
            due += interval

    await asyncio.gather(*(drive(p) for p in pods))
    wall = time.perf_counter() - t0
    me1, pg1 = own_seconds(), processes_seconds(procs)
    for pool in pools:
        await pool.close()
    for conn in conns:
        await conn.close()
    orders = sum(p.stats.orders for p in pods)
    hold_ms = [x for p in pods for x in p.stats.hold_ms]
    commit_ms = [x for p in pods for x in p.stats.commit_ms]
    row = {
        "run": name, "pods": len(pods), "accounts": len(who), "orders": orders,
        "orders_per_second": round(orders / wall),
        "granted": sum(p.stats.granted for p in pods),
        "refused": sum(p.stats.refused for p in pods),
        "trades": sum(p.stats.trades for p in pods),
        "postgres_cpu_us_per_order": round((pg1 - pg0) * 1e6 / orders, 1),
        "bench_cpu_us_per_order": round((me1 - me0) * 1e6 / orders, 1),
        "order_path_ms_p50": percentile(hold_ms, 50),
        "order_path_ms_p99": percentile(hold_ms, 99),
        "commit_ms_p50": percentile(commit_ms, 50),
        "commit_ms_p99": percentile(commit_ms, 99),
        "late_batches": sum(p.stats.late_batches for p in pods),
        "deadlocks": sum(p.stats.deadlocks for p in pods),
    }
    if model is not None:
        row["grant_mismatches"] = pods[0].stats.model_mismatches
    if money and not row["deadlocks"]:
        row.update(await check(url, deposits, pods, model))
    return row


async def run(server_url: str, args: argparse.Namespace) -> list[dict]:
    async with scratch_database(server_url, "bench_holds") as url:
        port = urlsplit(server_url).port or 5432
        accounts, fee_account, deposits = await setup(url, args.accounts, args.poor_every)
        if args.warmup > 0:
            # A run of "money" first, not reported: the tables get rows and statistics
            # (on an empty orders table every look-up is planned as a scan), the caches
            # and the server warm up.
            warm = argparse.Namespace(**{**vars(args), "seconds": args.warmup})
            await run_one(url, port, "money", warm, accounts, fee_account,
                          deposits)
        out = []
        for run_name in args.runs:
            row = await run_one(url, port, run_name, args, accounts,
                                fee_account, deposits)
            print("  ".join(f"{k}={v}" for k, v in row.items()), flush=True)
            out.append(row)
        return out


RUNS = ("plain", "money", "ledger", "plain-pods", "pods", "hot", "unsorted")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", default="plain,money,ledger,plain-pods,pods,hot,unsorted",
                   type=lambda s: [x for x in s.split(",") if x],
                   help=f"a list of {', '.join(RUNS)} (default all)")
    p.add_argument("--seconds", type=float, default=20.0, help="length of each run")
    p.add_argument("--batch", type=int, default=10, help="orders per statement (default 10)")
    p.add_argument("--interval", type=float, default=0.005,
                   help="seconds between batches of one pod (default 0.005)")
    p.add_argument("--accounts", type=int, default=1000)
    p.add_argument("--hot", type=int, default=10, help="accounts of the hot runs")
    p.add_argument("--poor-every", type=int, default=20,
                   help="every n-th account is funded with little (0 = none)")
    p.add_argument("--taker-bps", type=int, default=10)
    p.add_argument("--maker-bps", type=int, default=10)
    p.add_argument("--warmup", type=float, default=15.0,
                   help="seconds of an unreported money run first (default 15)")
    p.add_argument("--seed", type=int, default=1)
    return p


async def main_async(args: argparse.Namespace) -> list[dict]:
    with database_url("bench-holds-") as url:
        return await run(url, args)


def main() -> None:
    args = parser().parse_args()
    for r in args.runs:
        if r not in RUNS:
            raise SystemExit(f"unknown run {r!r}: one of {', '.join(RUNS)}")
    rows = asyncio.run(main_async(args))
    command = ("python -m bench.holds " + " ".join(
        f"--{k.replace('_', '-')} {','.join(v) if isinstance(v, list) else v}"
        for k, v in vars(args).items()))
    path = write_result("holds", {"runs": rows}, command)
    print(f"written to {path}")


if __name__ == "__main__":
    main()
