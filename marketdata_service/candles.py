"""Candles: the intervals, their alignment, and one candle's record (plain Python).

A candle of interval I starting at s holds the trades with s <= time < s + I, where s is a
multiple of I since the epoch (UTC; every interval divides a day, so days start at 00:00
UTC and hours on the hour). Times are PostgreSQL's ``trades.created_at`` (microseconds), so
a trade at exactly 00:01:00.000000 is in the 00:01 candle. Open and close are the first and
last trade of the interval by sequence; volumes are exact integers (lots, and ticks x lots).

Candles are aggregated in PostgreSQL from the trades table (``store.candles``; migration
0007 indexes trades by (instrument_id, created_at)), so they are correct across restarts
and Redis loss with nothing to rebuild; a page reads only the trades of the candles it
returns.
"""

from __future__ import annotations

from typing import NamedTuple

MICROS = 1_000_000
MINUTE_MICROS = 60 * MICROS

# exchange.marketdata.v1.CandleInterval name -> microseconds.
INTERVALS = {
    "CANDLE_INTERVAL_ONE_MINUTE": MINUTE_MICROS,
    "CANDLE_INTERVAL_FIVE_MINUTES": 5 * MINUTE_MICROS,
    "CANDLE_INTERVAL_FIFTEEN_MINUTES": 15 * MINUTE_MICROS,
    "CANDLE_INTERVAL_ONE_HOUR": 60 * MINUTE_MICROS,
    "CANDLE_INTERVAL_ONE_DAY": 1440 * MINUTE_MICROS,
}


class CandleRecord(NamedTuple):
    start_micros: int  # the interval's start, microseconds since the epoch
    open: int  # ticks
    high: int
    low: int
    close: int
    volume: int  # lots
    quote_volume: int  # ticks x lots
    trade_count: int


def bucket_start(time_micros: int, interval_micros: int) -> int:
    """The start of the candle that holds ``time_micros``."""
    return time_micros // interval_micros * interval_micros


def first_start_at_or_after(time_micros: int, interval_micros: int) -> int:
    """The first candle start >= ``time_micros``: a range [start, end) of candle starts is
    the range [first_start_at_or_after(start), first_start_at_or_after(end)) of trade
    times."""
    return -(-time_micros // interval_micros) * interval_micros


def candle_range(interval_micros: int, start_nanos: int | None, end_nanos: int | None,
                 max_micros: int) -> tuple[int, int]:
    """The trade times [from, to) (microseconds) of the candles whose start lies in
    [start, end) (nanoseconds; None: from the first trade, up to now and on)."""
    start = 0 if start_nanos is None else max(0, -(-start_nanos // 1000))
    end = max_micros if end_nanos is None else max(0, -(-end_nanos // 1000))
    return (first_start_at_or_after(start, interval_micros),
            min(first_start_at_or_after(end, interval_micros), max_micros))
