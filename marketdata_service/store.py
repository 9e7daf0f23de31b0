"""PostgreSQL reads of the market data service (the system of record it starts from)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import asyncpg

from exchange_common.db import RESTING_ORDERS_SQL
from exchange_common.instruments import InstrumentSpec, load_instruments
from marketdata_service.trades import TradeRecord

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_MICROSECOND = dt.timedelta(microseconds=1)

SIDE_BUY = 1
SIDE_SELL = 2


def unix_nanos(value: dt.datetime) -> int:
    """Exact (integer) nanoseconds since the epoch of a timestamptz."""
    return (value - _EPOCH) // _MICROSECOND * 1000


@dataclass(slots=True)
class InitialState:
    """One instrument as of one journal sequence."""

    instrument_id: int
    sequence: int
    bids: list[tuple[int, int, int]] = field(default_factory=list)  # (price, lots, orders)
    asks: list[tuple[int, int, int]] = field(default_factory=list)
    # Newest last; at most the number asked for.
    trades: list[TradeRecord] = field(default_factory=list)
    # True when ``trades`` holds every trade of the instrument.
    all_trades: bool = False
    time_unix_nanos: int = 0


def _trade(row: asyncpg.Record) -> TradeRecord:
    return TradeRecord(row["trade_id"], row["sequence"], row["price"], row["quantity"],
                       row["taker_side"], unix_nanos(row["created_at"]))


_MAX_ID = (1 << 63) - 1
_TRADE_COLUMNS = "trade_id, sequence, price, quantity, taker_side, created_at"


class MarketStore:
    """Queries behind a small interface, so the feed can be tested with another one."""

    def __init__(self, pool: asyncpg.Pool, *, timeout: float = 10.0) -> None:
        self._pool = pool
        self._timeout = timeout

    async def instruments(self) -> list[InstrumentSpec]:
        async with self._pool.acquire(timeout=self._timeout) as conn:
            return await load_instruments(conn)

    async def committed_sequences(self) -> dict[int, int]:
        """The last committed journal sequence of every instrument."""
        async with self._pool.acquire(timeout=self._timeout) as conn:
            rows = await conn.fetch("SELECT instrument_id, last_sequence FROM instrument_state",
                                    timeout=self._timeout)
        return {r["instrument_id"]: r["last_sequence"] for r in rows}

    async def initial_state(self, instrument_id: int, recent_trades: int) -> InitialState:
        """Resting orders aggregated per level, last sequence and newest trades, all read in
        one REPEATABLE READ snapshot so that they agree with each other."""
        async with self._pool.acquire(timeout=self._timeout) as conn, conn.transaction(
                isolation="repeatable_read", readonly=True):
            sequence = await conn.fetchval(
                "SELECT last_sequence FROM instrument_state WHERE instrument_id = $1",
                instrument_id, timeout=self._timeout)
            levels = await conn.fetch(
                f"""SELECT side, price, sum(quantity - filled)::bigint AS lots,
                           count(*)::integer AS orders
                    FROM orders WHERE instrument_id = $1 AND {RESTING_ORDERS_SQL}
                    GROUP BY side, price""",
                instrument_id, timeout=self._timeout)
            rows = await conn.fetch(
                f"""SELECT {_TRADE_COLUMNS} FROM trades WHERE instrument_id = $1
                    ORDER BY trade_id DESC LIMIT $2""",
                instrument_id, recent_trades, timeout=self._timeout)
            now = await conn.fetchval("SELECT now()", timeout=self._timeout)
        state = InitialState(instrument_id, sequence or 0, time_unix_nanos=unix_nanos(now))
        for r in levels:
            level = (r["price"], r["lots"], r["orders"])
            if r["side"] == SIDE_BUY:
                state.bids.append(level)
            elif r["side"] == SIDE_SELL:
                state.asks.append(level)
        state.trades = [_trade(r) for r in reversed(rows)]
        state.all_trades = len(rows) < recent_trades
        return state

    async def trades_before(self, instrument_id: int, before_trade_id: int | None,
                            max_sequence: int, limit: int) -> list[TradeRecord]:
        """Up to ``limit`` trades, newest first, older than ``before_trade_id`` (if given) and
        not after ``max_sequence`` (what the served book reflects)."""
        async with self._pool.acquire(timeout=self._timeout) as conn:
            rows = await conn.fetch(
                f"""SELECT {_TRADE_COLUMNS} FROM trades
                    WHERE instrument_id = $1 AND trade_id < $2 AND sequence <= $3
                    ORDER BY trade_id DESC LIMIT $4""",
                instrument_id, before_trade_id if before_trade_id is not None else _MAX_ID,
                max_sequence, limit, timeout=self._timeout)
        return [_trade(r) for r in rows]
