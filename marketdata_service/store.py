"""PostgreSQL reads of the market data service (the system of record it starts from)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import asyncpg

from exchange_common.db import RESTING_ORDERS_SQL
from exchange_common.ids import SEQUENCE_BITS
from exchange_common.instruments import InstrumentSpec, load_instruments
from marketdata_service.candles import CandleRecord, bucket_start
from marketdata_service.l3 import L3Order
from marketdata_service.ticker import MINUTE_NANOS, WINDOW_MINUTES, MinuteBucket
from marketdata_service.trades import TradeRecord

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_MICROSECOND = dt.timedelta(microseconds=1)

SIDE_BUY = 1
SIDE_SELL = 2


def unix_nanos(value: dt.datetime) -> int:
    """Exact (integer) nanoseconds since the epoch of a timestamptz."""
    return (value - _EPOCH) // _MICROSECOND * 1000


def from_micros(micros: int) -> dt.datetime:
    return _EPOCH + dt.timedelta(microseconds=micros)


# The latest time a timestamptz parameter here takes (the end of year 9999).
MAX_MICROS = (dt.datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=dt.UTC) - _EPOCH
              ) // _MICROSECOND
# Windows of trades one ListCandles page reads at most (each skips to the next trade).
_CANDLE_WINDOWS = 8


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
    # The resting orders (the L3 book) and the 24-hour window's minutes (ticker).
    orders: list[L3Order] = field(default_factory=list)
    minutes: list[MinuteBucket] = field(default_factory=list)


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
            orders = await conn.fetch(
                f"""SELECT order_id, side, price, quantity - filled AS open, priority
                    FROM orders WHERE instrument_id = $1 AND {RESTING_ORDERS_SQL}""",
                instrument_id, timeout=self._timeout)
            now = await conn.fetchval("SELECT now()", timeout=self._timeout)
            first_minute = unix_nanos(now) // MINUTE_NANOS - WINDOW_MINUTES
            minutes = await self._aggregate(conn, instrument_id, MINUTE_NANOS // 1000,
                                            first_minute * (MINUTE_NANOS // 1000),
                                            MAX_MICROS, WINDOW_MINUTES + 2)
        state = InitialState(instrument_id, sequence or 0, time_unix_nanos=unix_nanos(now))
        state.orders = [L3Order(r["order_id"], r["side"], r["price"], r["open"], r["priority"])
                        for r in orders]
        state.minutes = [MinuteBucket(c.start_micros * 1000 // MINUTE_NANOS, c.open, c.high,
                                      c.low, c.close, c.volume, c.quote_volume, c.trade_count,
                                      first, last)
                         for c, first, last in minutes]
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

    async def candles(self, instrument_id: int, interval_micros: int, start_micros: int,
                      end_micros: int, limit: int) -> tuple[list[CandleRecord], int | None]:
        """Up to ``limit`` candles, oldest first, of the trades with start_micros <= time
        < end_micros (both candle starts), and where the next page starts (None: the
        range is done). Skips the stretches without trades through the time index, and
        aggregates only the trades of the candles it returns (at most ``_CANDLE_WINDOWS``
        windows; a page may then hold fewer than ``limit``, as AIP-158 allows)."""
        out: list[CandleRecord] = []
        position = start_micros
        async with self._pool.acquire(timeout=self._timeout) as conn:
            for _ in range(_CANDLE_WINDOWS):
                if position >= end_micros or len(out) >= limit:
                    break
                first = await conn.fetchval(
                    """SELECT created_at FROM trades
                       WHERE instrument_id = $1 AND created_at >= $2 AND created_at < $3
                       ORDER BY created_at LIMIT 1""",
                    instrument_id, from_micros(position), from_micros(end_micros),
                    timeout=self._timeout)
                if first is None:
                    position = end_micros
                    break
                position = bucket_start(unix_nanos(first) // 1000, interval_micros)
                window_end = min(end_micros, position + (limit - len(out)) * interval_micros)
                rows = await self._aggregate(conn, instrument_id, interval_micros, position,
                                             window_end, limit - len(out))
                out.extend(c for c, _, _ in rows)
                position = window_end
        return out, (position if position < end_micros else None)

    async def _aggregate(self, conn: asyncpg.Connection, instrument_id: int,
                         interval_micros: int, start_micros: int, end_micros: int,
                         limit: int) -> list[tuple[CandleRecord, int, int]]:
        """(candle, first sequence, last sequence) per interval with trades in
        [start, end), oldest first; open and close read by trade id (the trade id is the
        instrument's id and the trade's sequence: exchange_common.ids)."""
        rows = await conn.fetch(
            """WITH b AS (
                   SELECT (extract(epoch FROM created_at) * 1000000)::bigint / $2 * $2
                              AS start,
                          min(sequence) AS first, max(sequence) AS last,
                          max(price) AS high, min(price) AS low,
                          sum(quantity) AS volume, sum(price::numeric * quantity) AS quote,
                          count(*) AS n
                   FROM trades
                   WHERE instrument_id = $1 AND created_at >= $3 AND created_at < $4
                   GROUP BY 1)
               SELECT b.*, o.price AS open, c.price AS close FROM b
               JOIN trades o ON o.trade_id = ($5::bigint | b.first)
               JOIN trades c ON c.trade_id = ($5::bigint | b.last)
               ORDER BY b.start LIMIT $6""",
            instrument_id, interval_micros, from_micros(start_micros),
            from_micros(end_micros), instrument_id << SEQUENCE_BITS, limit,
            timeout=self._timeout)
        return [(CandleRecord(r["start"], r["open"], r["high"], r["low"], r["close"],
                              int(r["volume"]), int(r["quote"]), r["n"]),
                 r["first"], r["last"]) for r in rows]
