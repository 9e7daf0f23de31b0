"""An account's ledger: every change of its balances, with its cause (docs/money.md).

Transfers (deposits, withdrawals, adjustments) and the holds that never became orders
are stored rows of ``ledger``; everything trading does is derived, the way fills are
derived from ``trades``:

* an order's **hold** at its creation (``hold_placed``: available -> held, in the quote
  asset for a buy, the base for a sell), and an amendment's extra hold (its journal
  event, kind AMENDED, ``held`` > 0);
* per fill, as the buyer: the notional out of held (TRADE), the fee (FEE: out of held,
  or a rebate into available), what the hold gave back (RELEASE: the price improvement
  and unused fee reserve, and a rebate's share of the hold), the base in (TRADE); as the
  seller: the base out of held, the notional in, the fee out (TRADE, TRADE, FEE); the
  fee account gets each side's fee (FEE);
* per order, one **release** of whatever it stopped holding other than through its
  fills (placement beyond need, amendments, cancel, expiry, the end of a fill): what
  it held, minus what its fills used, minus what it holds now; at its last update.

Per account and asset, the entries sum to the balance (available and held), except for
the holds still on their way to matching (``order_holds``), which have no entry yet;
``balances_check`` checks exactly that. Entries are newest first by (time, entry id);
an entry id names its source and is stable ("ledger:<id>", "order:<id>:hold",
"order:<id>:amend:<sequence>", "order:<id>:release", "trade:<id>:<part>"); an order's
release entry changes (amount and time) while the order lives.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import asyncpg

from exchange.common.v1 import common_pb2 as cpb
from exchange.order.v1 import order_pb2 as opb
from exchange_common.decimals import amount_str
from exchange_common.errors import InvalidArgument
from exchange_common.instruments import FEE_ACCOUNT, InstrumentSpec
from exchange_common.paging import INT64_MAX, PageTokens, page_size
from order_service.convert import ts_from_datetime

if TYPE_CHECKING:
    from order_service.auth import Caller
    from order_service.store import Store

BUY = cpb.SIDE_BUY
EV_AMENDED = 6  # journal kind (matching_service.engine.events)

# Sources of entries, in the order entries of the same time are listed (newest first:
# the highest first).
LEDGER, ORDER_HOLD, ORDER_RELEASE, TRADE = 1, 2, 3, 4

# The parts of a trade: (part, name, kind). The buyer's and the seller's, then the fee
# account's.
TRADE_PARTS = {
    1: "buyer-quote", 2: "buyer-fee", 3: "buyer-release", 4: "buyer-base",
    5: "seller-base", 6: "seller-quote", 7: "seller-fee",
    8: "fee-maker", 9: "fee-taker",
}

KINDS = {
    "deposit": opb.LEDGER_ENTRY_KIND_DEPOSIT,
    "withdrawal": opb.LEDGER_ENTRY_KIND_WITHDRAWAL,
    "adjustment": opb.LEDGER_ENTRY_KIND_ADJUSTMENT,
    "hold": opb.LEDGER_ENTRY_KIND_HOLD,
    "release": opb.LEDGER_ENTRY_KIND_RELEASE,
    "trade": opb.LEDGER_ENTRY_KIND_TRADE,
    "fee": opb.LEDGER_ENTRY_KIND_FEE,
}


@dataclass(frozen=True, slots=True)
class MoneyInstruments:
    """The instruments that move money (InstrumentSpec.has_money, as matching settles
    them), as the statement's first parameters ($1-$6)."""

    instrument_ids: list[int]
    base_ids: list[int]
    quote_ids: list[int]
    lot_units: list[int]
    tick_lot_units: list[int]
    fee_account_id: int

    @classmethod
    def of(cls, specs: Sequence[InstrumentSpec], fee_account_id: int) -> MoneyInstruments:
        money = [s for s in specs if s.has_money]
        return cls([s.instrument_id for s in money], [s.base_asset_id for s in money],
                   [s.quote_asset_id for s in money], [s.lot_units for s in money],
                   [s.tick_lot_units for s in money], fee_account_id)

    def params(self) -> tuple:
        return (self.instrument_ids, self.base_ids, self.quote_ids, self.lot_units,
                self.tick_lot_units, self.fee_account_id)


async def fee_account_id(conn: asyncpg.Connection | asyncpg.Pool) -> int:
    return await conn.fetchval("SELECT account_id FROM accounts WHERE name = $1",
                               FEE_ACCOUNT) or 0


def entries_sql(account: str) -> str:
    """The CTEs whose last, ``entries``, is every ledger entry of the accounts for which
    ``<account column> {account}`` holds (e.g. "= $7", or "IS NOT NULL": all), given the
    money instruments as $1-$6 (MoneyInstruments.params). Columns: account_id, t, src,
    sid, part, kind, asset_id, available, held, order_id, trade_id, reference."""
    return f"""
WITH im AS MATERIALIZED (
    SELECT * FROM unnest($1::integer[], $2::smallint[], $3::smallint[], $4::bigint[],
                         $5::bigint[])
        AS m(instrument_id, base_id, quote_id, lot_units, tick_lot_units)
), mine AS (
    SELECT t.*, true AS is_taker FROM trades t WHERE t.taker_account_id {account}
    UNION ALL
    SELECT t.*, false FROM trades t WHERE t.maker_account_id {account}
), sides AS MATERIALIZED (
    -- one row per side of a trade seen by one of the accounts (a self-trade: two)
    SELECT x.trade_id, x.created_at, m.base_id, m.quote_id,
           x.price * x.quantity * m.tick_lot_units AS n, x.quantity * m.lot_units AS base,
           CASE WHEN x.is_taker THEN x.taker_account_id ELSE x.maker_account_id END
               AS account_id,
           CASE WHEN x.is_taker THEN x.taker_order_id ELSE x.maker_order_id END AS order_id,
           CASE WHEN x.is_taker THEN x.taker_fee ELSE x.maker_fee END AS fee,
           x.is_taker = (x.taker_side = {BUY}) AS buyer,
           x.buyer_released
      FROM mine x JOIN im m ON m.instrument_id = x.instrument_id
), my_orders AS MATERIALIZED (
    SELECT o.order_id, o.account_id, o.created_at, o.updated_at, o.held, o.hold_placed,
           CASE WHEN o.side = {BUY} THEN m.quote_id ELSE m.base_id END AS asset_id
      FROM orders o JOIN im m ON m.instrument_id = o.instrument_id
     WHERE o.account_id {account}
), amends AS MATERIALIZED (
    SELECT j.order_id, j.sequence, j.held, j.created_at
      FROM journal j JOIN im m ON m.instrument_id = j.instrument_id
     WHERE j.account_id {account} AND j.kind = {EV_AMENDED} AND j.held > 0
), entries AS (
    SELECT l.account_id, l.created_at AS t, {LEDGER} AS src, l.entry_id AS sid,
           0::bigint AS part, l.kind, l.asset_id, l.available, l.held,
           0::bigint AS order_id, 0::bigint AS trade_id, l.reference
      FROM ledger l WHERE l.account_id {account}
    UNION ALL
    SELECT o.account_id, o.created_at, {ORDER_HOLD}, o.order_id, 0, 'hold', o.asset_id,
           -o.hold_placed, o.hold_placed, o.order_id, 0, ''
      FROM my_orders o WHERE o.hold_placed > 0
    UNION ALL
    SELECT o.account_id, a.created_at, {ORDER_HOLD}, o.order_id, a.sequence, 'hold',
           o.asset_id, -a.held, a.held, o.order_id, 0, 'amendment'
      FROM amends a JOIN my_orders o ON o.order_id = a.order_id
    UNION ALL
    SELECT o.account_id, o.updated_at, {ORDER_RELEASE}, o.order_id, 0, 'release',
           o.asset_id, r.x, -r.x, o.order_id, 0, ''
      FROM my_orders o
      CROSS JOIN LATERAL (
          SELECT (o.hold_placed
                 + coalesce((SELECT sum(a.held) FROM amends a
                              WHERE a.order_id = o.order_id), 0)
                 - coalesce((SELECT sum(CASE WHEN s.buyer THEN s.n + s.fee + s.buyer_released
                                             ELSE s.base END)
                               FROM sides s WHERE s.order_id = o.order_id), 0)
                 - o.held)::bigint AS x
      ) r
     WHERE r.x <> 0
    UNION ALL
    SELECT s.account_id, s.created_at, {TRADE}, s.trade_id, v.part, v.kind, v.asset_id,
           v.available, v.held, s.order_id, s.trade_id, ''
      FROM sides s CROSS JOIN LATERAL (VALUES
          (1, true, 'trade', s.quote_id, 0::bigint, -s.n),
          (2, true, 'fee', s.quote_id, greatest(-s.fee, 0), -greatest(s.fee, 0)),
          (3, true, 'release', s.quote_id, s.buyer_released + least(s.fee, 0),
           -(s.buyer_released + least(s.fee, 0))),
          (4, true, 'trade', s.base_id, s.base, 0),
          (5, false, 'trade', s.base_id, 0, -s.base),
          (6, false, 'trade', s.quote_id, s.n, 0),
          (7, false, 'fee', s.quote_id, -s.fee, 0)
      ) v(part, buyer, kind, asset_id, available, held)
     WHERE v.buyer = s.buyer AND (v.available <> 0 OR v.held <> 0 OR v.kind = 'trade')
    UNION ALL
    SELECT $6::bigint, t.created_at, {TRADE}, t.trade_id, v.part, 'fee', m.quote_id,
           v.fee, 0, 0, t.trade_id, ''
      FROM trades t JOIN im m ON m.instrument_id = t.instrument_id
      CROSS JOIN LATERAL (VALUES (8, t.maker_fee), (9, t.taker_fee)) v(part, fee)
     WHERE $6::bigint {account} AND v.fee <> 0
)"""


# $7 the account, $8 the asset (NULL: all), $9-$12 the position after which (newest
# first) the page starts, $13 how many.
LIST_SQL = entries_sql("= $7") + """
SELECT * FROM (
    SELECT e.*, (extract(epoch FROM e.t) * 1000000)::bigint AS t_us FROM entries e
     WHERE $8::smallint IS NULL OR e.asset_id = $8
) e
WHERE (e.t_us, e.src::bigint, e.sid, e.part) < ($9::bigint, $10::bigint, $11::bigint,
                                              $12::bigint)
ORDER BY e.t_us DESC, e.src DESC, e.sid DESC, e.part DESC
LIMIT $13
"""

# Every account's entries summed per (account, asset).
SUMS_SQL = entries_sql("IS NOT NULL") + """
SELECT account_id, asset_id, sum(available)::bigint AS available, sum(held)::bigint AS held
  FROM entries GROUP BY account_id, asset_id
"""


def entry_id(row: asyncpg.Record) -> str:
    src, sid, part = row["src"], row["sid"], row["part"]
    if src == LEDGER:
        return f"ledger:{sid}"
    if src == ORDER_HOLD:
        return f"order:{sid}:hold" if not part else f"order:{sid}:amend:{part}"
    if src == ORDER_RELEASE:
        return f"order:{sid}:release"
    return f"trade:{sid}:{TRADE_PARTS[part]}"


def position_of(row: asyncpg.Record) -> list[int]:
    """The page position of an entry: (time in microseconds, source, id, part)."""
    return [row["t_us"], row["src"], row["sid"], row["part"]]


async def list_entries(conn: asyncpg.Connection | asyncpg.Pool, money: MoneyInstruments,
                       account_id: int, asset_id: int | None, before: Sequence[int],
                       limit: int) -> list[asyncpg.Record]:
    """The account's entries (of ``asset_id`` only, if given) before ``before``, newest
    first, at most ``limit``."""
    return await conn.fetch(LIST_SQL, *money.params(), account_id, asset_id, *before, limit)


async def sums(conn: asyncpg.Connection | asyncpg.Pool,
               money: MoneyInstruments) -> dict[tuple[int, int], tuple[int, int]]:
    """(account, asset) -> (sum of available, sum of held) over every entry."""
    rows = await conn.fetch(SUMS_SQL, *money.params())
    return {(r["account_id"], r["asset_id"]): (r["available"], r["held"]) for r in rows}


def balance_message(symbol: str, decimals: int, available: int, held: int) -> opb.Balance:
    return opb.Balance(asset=symbol, available=amount_str(available, decimals),
                       held=amount_str(held, decimals),
                       total=amount_str(available + held, decimals))


class Ledger:
    """GetBalances and ListLedgerEntries: the caller's balances and ledger entries."""

    def __init__(self, store: Store, page_tokens: PageTokens) -> None:
        self.store = store
        self.page_tokens = page_tokens

    async def _asset(self, symbol: str) -> asyncpg.Record | None:
        """The asset filter's row (None: no filter); INVALID_ARGUMENT when unknown."""
        if not symbol:
            return None
        row = (await self.store.assets()).get(symbol)
        if row is None:
            raise InvalidArgument(f"unknown asset {symbol[:40]!r}", reason="ASSET_UNKNOWN",
                                  field="asset")
        return row

    async def balances(self, caller: Caller,
                       request: opb.GetBalancesRequest) -> opb.GetBalancesResponse:
        asset = await self._asset(request.asset)
        assets = {r["asset_id"]: r for r in (await self.store.assets()).values()}
        rows = await self.store.balances(caller.account_id,
                                         None if asset is None else asset["asset_id"])
        out = []
        for row in rows:
            a = assets.get(row["asset_id"])
            if a is not None:
                out.append(balance_message(a["symbol"], a["decimals"], row["available"],
                                           row["held"]))
        out.sort(key=lambda b: b.asset)
        return opb.GetBalancesResponse(balances=out)

    async def entries(self, caller: Caller,
                      request: opb.ListLedgerEntriesRequest) -> opb.ListLedgerEntriesResponse:
        size = page_size(request.page_size)
        asset = await self._asset(request.asset)
        asset_id = None if asset is None else asset["asset_id"]
        filters = ("ledger", caller.account_id, asset_id)
        position = self.page_tokens.decode(request.page_token, filters, (INT64_MAX,) * 4)
        rows = await self.store.ledger_entries(caller.account_id, asset_id,
                                               position or [INT64_MAX] * 4, size + 1)
        assets = {r["asset_id"]: r for r in (await self.store.assets()).values()}
        entries = []
        for row in rows[:size]:
            a = assets[row["asset_id"]]
            entry = opb.LedgerEntry(
                entry_id=entry_id(row), kind=KINDS[row["kind"]], asset=a["symbol"],
                available=amount_str(row["available"], a["decimals"]),
                held=amount_str(row["held"], a["decimals"]),
                order_id=str(row["order_id"]) if row["order_id"] else "",
                trade_id=str(row["trade_id"]) if row["trade_id"] else "",
                reference=row["reference"])
            entry.time.CopyFrom(ts_from_datetime(row["t"]))
            entries.append(entry)
        token = (self.page_tokens.encode(position_of(rows[size - 1]), filters)
                 if len(rows) > size else "")
        return opb.ListLedgerEntriesResponse(entries=entries, next_page_token=token)
