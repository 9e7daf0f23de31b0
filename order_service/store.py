"""What the order service reads from PostgreSQL: instruments, assets, orders, fills,
balances.

Instruments are cached, and the cache is dropped the moment the ``instruments``
table changes (``ChangeListener``): a halt is refused by the next call."""

from __future__ import annotations

import asyncio
import time

import asyncpg

from exchange.common.v1 import common_pb2 as cpb
from exchange.order.v1 import order_pb2 as opb
from exchange_common import tracing
from exchange_common.changes import ChangeListener
from exchange_common.db import OPEN_ORDERS_SQL
from exchange_common.instruments import InstrumentSpec, load_instruments
from order_service import ledger
from order_service.coalesce import Coalescer

MAKER, TAKER = cpb.LIQUIDITY_MAKER, cpb.LIQUIDITY_TAKER
# The span of a command's wait for its client_order_id look-up.
LOOKUP_SPAN = "client_order_id look-up"
STATUS_FILTER_SQL: dict[int, str] = {
    opb.ORDER_STATUS_FILTER_UNSPECIFIED: "",
    opb.ORDER_STATUS_FILTER_OPEN: f"AND {OPEN_ORDERS_SQL}",
    opb.ORDER_STATUS_FILTER_CLOSED: f"AND NOT {OPEN_ORDERS_SQL}",
}

# One row per fill: the account's side of each trade (a self-trade gives two).
FILLS_SELECT = f"""
SELECT f.*, o.client_order_id, o.side FROM (
    SELECT trade_id, instrument_id, price, quantity, created_at,
           maker_order_id AS order_id, {MAKER} AS liquidity, maker_fee AS fee
      FROM trades WHERE maker_account_id = $1
    UNION ALL
    SELECT trade_id, instrument_id, price, quantity, created_at,
           taker_order_id AS order_id, {TAKER} AS liquidity, taker_fee AS fee
      FROM trades WHERE taker_account_id = $1
) f JOIN orders o ON o.order_id = f.order_id
WHERE ($2::integer IS NULL OR f.instrument_id = $2)
  AND ($3::bigint IS NULL OR f.order_id = $3)
  AND (f.trade_id, f.liquidity) < ($4, $5)
ORDER BY f.trade_id DESC, f.liquidity DESC
LIMIT $6
"""

ORDER_FILLS = f"""
SELECT trade_id, price, quantity, created_at,
       CASE WHEN maker_order_id = $1 THEN {MAKER} ELSE {TAKER} END AS liquidity,
       CASE WHEN maker_order_id = $1 THEN maker_fee ELSE taker_fee END AS fee
  FROM trades WHERE maker_order_id = $1 OR taker_order_id = $1
 ORDER BY trade_id
"""


class ClientIdLookups(Coalescer[tuple[int, str], "asyncpg.Record | None"]):
    """Coalesces concurrent "which order has this client_order_id?" look-ups (GetOrder,
    CancelOrder and AmendOrder by client_order_id) into one query at a time
    (order_service/coalesce.py). (New orders look their client_order_ids up in the
    statement that takes their holds: order_service/holds.py.)

    When tracing, each caller's wait (for the query it joined, and the query) is a span
    of its own."""

    def __init__(self, pool: asyncpg.Pool, min_interval: float = 0.0) -> None:
        super().__init__(min_interval)
        self.pool = pool

    def lookup(self, account_id: int, client_order_id: str) -> asyncio.Future:
        """A future of the existing order row (or None)."""
        fut = self.submit((account_id, client_order_id))
        if tracing.ENABLED:
            tracing.span_until(fut, LOOKUP_SPAN, (None,))
        return fut

    async def execute(self, items: list[tuple[int, str]]) -> list[asyncpg.Record | None]:
        rows = await self.pool.fetch(
            """SELECT o.* FROM orders o
                 JOIN unnest($1::bigint[], $2::text[]) AS k(account_id, client_order_id)
                   ON o.account_id = k.account_id AND o.client_order_id = k.client_order_id
                  AND o.client_order_id <> ''""",
            [k[0] for k in items], [k[1] for k in items])
        found = {(r["account_id"], r["client_order_id"]): r for r in rows}
        return [found.get(key) for key in items]


def _ignore_failure(fut: asyncio.Future) -> None:
    if not fut.cancelled():
        fut.exception()  # retrieved: the next caller tries again


class Store:
    def __init__(self, pool: asyncpg.Pool, changes: ChangeListener, cache_ttl: float,
                 lookup_min_interval: float = 0.0) -> None:
        self.pool = pool
        self.changes = changes
        self.cache_ttl = cache_ttl
        self._by_symbol: dict[str, InstrumentSpec] = {}
        self._by_id: dict[int, InstrumentSpec] = {}
        self._instruments_at = float("-inf")
        self._assets: dict[str, asyncpg.Record] | None = None
        self._money: ledger.MoneyInstruments | None = None
        self._refreshing: asyncio.Future | None = None
        self.client_ids = ClientIdLookups(pool, lookup_min_interval)
        changes.on("instruments", self._instruments_changed)

    # -- cached reference data ---------------------------------------------

    def _instruments_changed(self) -> None:
        # Forget them all: the next call reads them again (a halt must not be missed by
        # a call that finds the old row in the cache).
        self._by_symbol = {}
        self._by_id = {}
        self._instruments_at = float("-inf")
        self._assets = None  # a new instrument may bring new assets
        self._money = None

    def _stale(self) -> bool:
        return (time.monotonic() - self._instruments_at
                >= self.changes.max_age(self.cache_ttl))

    async def _refresh_instruments(self) -> None:
        for _ in range(3):
            generation = self.changes.generation
            specs = await load_instruments(self.pool)
            if generation == self.changes.generation:
                break  # else something changed while reading: read again
        self._by_symbol = {s.symbol: s for s in specs}
        self._by_id = {s.instrument_id: s for s in specs}
        self._instruments_at = time.monotonic()
        self._money = None

    async def instrument(self, symbol: str) -> InstrumentSpec | None:
        if self._stale() or (symbol not in self._by_symbol
                             and time.monotonic() - self._instruments_at > 1.0):
            await self._refresh_instruments()
        return self._by_symbol.get(symbol)

    def cached_instrument(self, symbol: str) -> InstrumentSpec | None:
        """The instrument as cached (no database read), None if the cache does not
        hold it (the caller then takes the path that reads it). A stale cache is
        refreshed in the background meanwhile."""
        if self._stale():
            if self._refreshing is None or self._refreshing.done():
                self._refreshing = asyncio.ensure_future(self._refresh_instruments())
                self._refreshing.add_done_callback(_ignore_failure)
            return None
        return self._by_symbol.get(symbol)

    async def instrument_by_id(self, instrument_id: int) -> InstrumentSpec | None:
        if instrument_id not in self._by_id or self._stale():
            await self._refresh_instruments()
        return self._by_id.get(instrument_id)

    # -- orders and fills ----------------------------------------------------

    async def order(self, account_id: int, order_id: int) -> asyncpg.Record | None:
        return await self.pool.fetchrow(
            "SELECT * FROM orders WHERE order_id = $1 AND account_id = $2", order_id, account_id)

    async def order_by_client_id(self, account_id: int,
                                 client_order_id: str) -> asyncpg.Record | None:
        return await self.client_ids.lookup(account_id, client_order_id)

    async def order_fills(self, order_id: int) -> list[asyncpg.Record]:
        return await self.pool.fetch(ORDER_FILLS, order_id)

    async def list_orders(self, account_id: int, instrument_id: int | None, status: int,
                          before_order_id: int, limit: int) -> list[asyncpg.Record]:
        state_filter = STATUS_FILTER_SQL[status]
        return await self.pool.fetch(
            f"""SELECT * FROM orders
                 WHERE account_id = $1 AND ($2::integer IS NULL OR instrument_id = $2)
                   AND order_id < $3 {state_filter}
                 ORDER BY order_id DESC LIMIT $4""",
            account_id, instrument_id, before_order_id, limit)

    async def open_instruments(self, account_id: int, instrument_id: int | None,
                               side: int) -> list[int]:
        """The instruments where the account has open orders (of ``side``, 0: either),
        ``instrument_id`` only if given (index orders_account_open, migration 0008)."""
        rows = await self.pool.fetch(
            f"""SELECT DISTINCT instrument_id FROM orders
                 WHERE account_id = $1 AND {OPEN_ORDERS_SQL}
                   AND ($2::integer IS NULL OR instrument_id = $2)
                   AND ($3::smallint = 0 OR side = $3)
                 ORDER BY instrument_id""", account_id, instrument_id, side)
        return [r["instrument_id"] for r in rows]

    async def open_among(self, account_id: int, order_ids: list[int]) -> list[int]:
        """Which of ``order_ids`` (the account's) are still open."""
        rows = await self.pool.fetch(
            f"""SELECT order_id FROM orders
                 WHERE order_id = ANY($2::bigint[]) AND account_id = $1
                   AND {OPEN_ORDERS_SQL} ORDER BY order_id""", account_id, order_ids)
        return [r["order_id"] for r in rows]

    async def list_fills(self, account_id: int, instrument_id: int | None,
                         order_id: int | None, before: tuple[int, int],
                         limit: int) -> list[asyncpg.Record]:
        return await self.pool.fetch(FILLS_SELECT, account_id, instrument_id, order_id,
                                     before[0], before[1], limit)

    # -- money ----------------------------------------------------------------------

    async def assets(self) -> dict[str, asyncpg.Record]:
        """symbol -> the asset's row (asset_id, symbol, decimals), cached until the
        instruments change (a new instrument is what brings a new asset)."""
        if self._assets is None or self._stale():
            rows = await self.pool.fetch(
                "SELECT asset_id, symbol, decimals FROM assets ORDER BY symbol")
            self._assets = {r["symbol"]: r for r in rows}
        return self._assets

    async def money_instruments(self) -> ledger.MoneyInstruments:
        """The instruments that move money, for the ledger's statements."""
        if self._money is None or self._stale():
            if self._stale() or not self._by_id:
                await self._refresh_instruments()
            self._money = ledger.MoneyInstruments.of(list(self._by_id.values()),
                                                     await ledger.fee_account_id(self.pool))
        return self._money

    async def balances(self, account_id: int, asset_id: int | None) -> list[asyncpg.Record]:
        return await self.pool.fetch(
            """SELECT b.asset_id, b.available, b.held FROM balances b
                WHERE b.account_id = $1 AND ($2::smallint IS NULL OR b.asset_id = $2)
                ORDER BY b.asset_id""", account_id, asset_id)

    async def ledger_entries(self, account_id: int, asset_id: int | None,
                             before: list[int], limit: int) -> list[asyncpg.Record]:
        return await ledger.list_entries(self.pool, await self.money_instruments(),
                                         account_id, asset_id, before, limit)
