"""Candle boundaries and ranges (the aggregation itself is PostgreSQL's, tested end to end
in tests/e2e/test_marketdata_streams.py)."""

from __future__ import annotations

import datetime as dt

import pytest

from marketdata_service.candles import (
    INTERVALS,
    bucket_start,
    candle_range,
    first_start_at_or_after,
)
from marketdata_service.store import MAX_MICROS

EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
MINUTE = INTERVALS["CANDLE_INTERVAL_ONE_MINUTE"]
DAY = INTERVALS["CANDLE_INTERVAL_ONE_DAY"]


def micros(text: str) -> int:
    return (dt.datetime.fromisoformat(text) - EPOCH) // dt.timedelta(microseconds=1)


@pytest.mark.parametrize(("trade_time", "interval", "start"), [
    ("2026-12-05T00:01:00.000000+00:00", "CANDLE_INTERVAL_ONE_MINUTE",
     "2026-12-05T00:01:00+00:00"),
    ("2026-12-05T00:00:59.999999+00:00", "CANDLE_INTERVAL_ONE_MINUTE",
     "2026-12-05T00:00:00+00:00"),
    ("2026-12-05T00:04:59.999999+00:00", "CANDLE_INTERVAL_FIVE_MINUTES",
     "2026-12-05T00:00:00+00:00"),
    ("2026-12-05T00:05:00+00:00", "CANDLE_INTERVAL_FIVE_MINUTES", "2026-12-05T00:05:00+00:00"),
    ("2026-12-05T00:44:59+00:00", "CANDLE_INTERVAL_FIFTEEN_MINUTES",
     "2026-12-05T00:30:00+00:00"),
    ("2026-12-05T13:59:59.5+00:00", "CANDLE_INTERVAL_ONE_HOUR", "2026-12-05T13:00:00+00:00"),
    ("2026-12-05T23:59:59.999999+00:00", "CANDLE_INTERVAL_ONE_DAY",
     "2026-12-05T00:00:00+00:00"),
    ("2026-12-06T00:00:00+00:00", "CANDLE_INTERVAL_ONE_DAY", "2026-12-06T00:00:00+00:00"),
    # A day starts at 00:00 UTC whatever the zone the time is written in.
    ("2026-12-06T00:30:00+01:00", "CANDLE_INTERVAL_ONE_DAY", "2026-12-05T00:00:00+00:00"),
])
def test_a_trade_is_in_the_candle_that_starts_at_or_before_it(trade_time: str, interval: str,
                                                               start: str) -> None:
    assert bucket_start(micros(trade_time), INTERVALS[interval]) == micros(start)


@pytest.mark.parametrize(("start", "end", "expected"), [
    # Candle starts in [start, end): a range on the boundaries is itself.
    ("2026-12-05T00:01:00+00:00", "2026-12-05T00:03:00+00:00",
     ("2026-12-05T00:01:00+00:00", "2026-12-05T00:03:00+00:00")),
    # A start inside a minute leaves that minute's candle out (it starts before start).
    ("2026-12-05T00:01:00.000001+00:00", "2026-12-05T00:03:00+00:00",
     ("2026-12-05T00:02:00+00:00", "2026-12-05T00:03:00+00:00")),
    # An end inside a minute keeps that minute's candle (it starts before end).
    ("2026-12-05T00:01:00+00:00", "2026-12-05T00:02:30+00:00",
     ("2026-12-05T00:01:00+00:00", "2026-12-05T00:03:00+00:00")),
])
def test_candle_range(start: str, end: str, expected: tuple[str, str]) -> None:
    got = candle_range(MINUTE, micros(start) * 1000, micros(end) * 1000, MAX_MICROS)
    assert got == (micros(expected[0]), micros(expected[1]))


def test_candle_range_nanoseconds_and_open_ends() -> None:
    minute = micros("2026-12-05T00:01:00+00:00")
    # One nanosecond after a minute starts: that minute's candle starts before it.
    assert candle_range(MINUTE, minute * 1000 + 1, None, MAX_MICROS)[0] == minute + MINUTE
    assert candle_range(MINUTE, None, None, MAX_MICROS) == (0, MAX_MICROS)
    assert candle_range(DAY, -5, 0, MAX_MICROS) == (0, 0)
    assert first_start_at_or_after(1, DAY) == DAY
