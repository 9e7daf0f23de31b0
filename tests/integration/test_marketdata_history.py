"""Candles over a long history and the ticker's window at start-up, on a real market-data
server reading real PostgreSQL: trades written here at chosen times (boundaries included),
candles compared with an aggregation written here, paged two at a time."""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import AsyncIterator

import asyncpg
import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from exchange.marketdata.v1 import marketdata_pb2 as md_pb2
from exchange.marketdata.v1 import marketdata_pb2_grpc as md_grpc
from exchange_common.config import MarketDataSettings
from exchange_common.ids import make_id
from marketdata_service.server import start

pytestmark = pytest.mark.integration

BTC = 1
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
DAY0 = dt.datetime(2024, 5, 1, tzinfo=dt.UTC)
INTERVALS = {md_pb2.CANDLE_INTERVAL_ONE_MINUTE: 60, md_pb2.CANDLE_INTERVAL_FIVE_MINUTES: 300,
             md_pb2.CANDLE_INTERVAL_FIFTEEN_MINUTES: 900, md_pb2.CANDLE_INTERVAL_ONE_HOUR: 3600,
             md_pb2.CANDLE_INTERVAL_ONE_DAY: 86400}


def us(when: dt.datetime) -> int:
    return (when - EPOCH) // dt.timedelta(microseconds=1)


def ts(micros: int) -> Timestamp:
    return Timestamp(seconds=micros // 1_000_000, nanos=micros % 1_000_000 * 1000)


async def insert(conn: asyncpg.Connection, account: int, trades: list[tuple[int, int, int, int]]
                 ) -> None:
    """(sequence, price ticks, lots, time µs) trades of BTC-USD."""
    await conn.executemany(
        """INSERT INTO trades (trade_id, instrument_id, sequence, price, quantity, taker_side,
               maker_order_id, taker_order_id, maker_account_id, taker_account_id, created_at)
           VALUES ($1, $2, $3, $4, $5, 1, $6, $6, $7, $7, $8)""",
        [(make_id(BTC, s), BTC, s, p, q, make_id(BTC, 1), account,
          EPOCH + dt.timedelta(microseconds=t)) for s, p, q, t in trades])
    await conn.execute("UPDATE instrument_state SET last_sequence = $2 WHERE instrument_id = $1",
                       BTC, max(s for s, *_ in trades))


def expected(trades: list[tuple[int, int, int, int]], seconds: int) -> list[tuple]:
    size = seconds * 1_000_000
    groups: dict[int, list[tuple[int, int, int, int]]] = {}
    for t in trades:
        groups.setdefault(t[3] // size * size, []).append(t)
    out = []
    for first in sorted(groups):
        g = sorted(groups[first])
        out.append((first, g[0][1], max(t[1] for t in g), min(t[1] for t in g), g[-1][1],
                    sum(t[2] for t in g), sum(t[1] * t[2] for t in g), len(g)))
    return out


def as_units(c: md_pb2.Candle) -> tuple:
    """Back to ticks and lots (BTC-USD: 0.01 and 0.0001), exactly."""
    def units(text: str, places: int) -> int:
        whole, _, frac = text.partition(".")
        assert len(frac) == places, text
        return int(whole + frac)
    return (c.start_time.seconds * 1_000_000 + c.start_time.nanos // 1000, units(c.open, 2),
            units(c.high, 2), units(c.low, 2), units(c.close, 2), units(c.volume, 4),
            units(c.quote_volume, 6), c.trade_count)


@pytest.fixture
async def stub(database_url: str, redis_url: str) -> AsyncIterator[tuple]:
    conn = await asyncpg.connect(database_url)
    account = await conn.fetchval("INSERT INTO accounts (name) VALUES ('h') RETURNING account_id")
    rng = random.Random(7)
    day0 = us(DAY0)
    trades = []
    seq = 10
    # Boundaries: the last microsecond of a minute, a trade exactly on the next one.
    for t in (day0 + 59_999_999, day0 + 60_000_000, day0 + 86_400_000_000 - 1,
              day0 + 86_400_000_000):
        seq += 1
        trades.append((seq, 10_000 + seq, 1 + seq % 7, t))
    t = day0
    for _ in range(300):  # three days of sparse trades, several in some minutes
        t += rng.choice((1, 20, 500, 59_000, 3_600_000, 40_000_000_000 // 1000)) * 1000
        seq += 1
        trades.append((seq, rng.randint(9_000, 11_000), rng.randint(1, 50), t))
    # The ticker's window at start: one trade just inside it, one just outside.
    now = us(dt.datetime.now(dt.UTC))
    minute = now // 60_000_000
    seq += 1
    outside = (seq, 12_345, 3, (minute - 1441) * 60_000_000 + 59_999_999)
    seq += 1
    inside = (seq, 12_346, 4, (minute - 1440) * 60_000_000 + 5)
    seq += 1
    latest = (seq, 12_000, 2, now - 1_000_000)
    trades.sort(key=lambda x: x[3])
    trades = [(i + 1, p, q, tt) for i, (_, p, q, tt) in enumerate(trades)]
    n = len(trades)
    window = [(n + 2, *inside[1:]), (n + 3, *latest[1:])]
    trades += [(n + 1, *outside[1:]), *window]
    await insert(conn, account, trades)
    await conn.close()
    app = await start(MarketDataSettings(
        database_url=database_url, redis_url=redis_url, marketdata_listen="127.0.0.1:0",
        shutdown_grace=1.0, log_format="text"), block_ms=100)
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{app.port}")
    try:
        await app.feed.ready.wait()
        yield md_grpc.MarketDataServiceStub(channel), trades, window, minute
    finally:
        await channel.close()
        await app.close()


async def test_candles_page_by_page_equal_an_independent_aggregation(stub) -> None:
    md, trades, *_ = stub
    history = [t for t in trades if t[3] < us(DAY0) + 4 * 86_400_000_000]
    for interval, seconds in INTERVALS.items():
        got, token = [], ""
        while True:
            page = await md.ListCandles(md_pb2.ListCandlesRequest(
                instrument="BTC-USD", interval=interval, page_size=2, page_token=token,
                end_time=ts(us(DAY0) + 4 * 86_400_000_000)))
            assert len(page.candles) <= 2
            got += [as_units(c) for c in page.candles]
            token = page.next_page_token
            if not token:
                break
        assert got == expected(history, seconds), interval
    minute = await md.ListCandles(md_pb2.ListCandlesRequest(
        instrument="BTC-USD", interval=md_pb2.CANDLE_INTERVAL_ONE_MINUTE,
        start_time=ts(us(DAY0)), end_time=ts(us(DAY0) + 120_000_000)))
    # 00:00:59.999999 is in the 00:00 candle, 00:01:00.000000 in the 00:01 one.
    assert [as_units(c)[0] - us(DAY0) for c in minute.candles] == [0, 60_000_000]
    assert [c.trade_count for c in minute.candles][0] >= 1


async def test_a_range_inside_a_minute_and_a_token_for_other_filters(stub) -> None:
    md, trades, *_ = stub
    start = us(DAY0) + 60_000_001  # after the 00:01 candle's start: it is not included
    page = await md.ListCandles(md_pb2.ListCandlesRequest(
        instrument="BTC-USD", interval=md_pb2.CANDLE_INTERVAL_ONE_MINUTE, page_size=1,
        start_time=ts(start), end_time=ts(us(DAY0) + 86_400_000_000)))
    assert all(as_units(c)[0] >= start for c in page.candles)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await md.ListCandles(md_pb2.ListCandlesRequest(
            instrument="BTC-USD", interval=md_pb2.CANDLE_INTERVAL_ONE_HOUR,
            page_token=page.next_page_token))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_ticker_window_loaded_from_postgresql(stub) -> None:
    md, trades, window, minute = stub
    ticker = (await md.GetTicker(md_pb2.GetTickerRequest(instrument="BTC-USD"))).ticker
    after = us(dt.datetime.now(dt.UTC)) // 60_000_000
    inside, latest = window
    if after != minute:
        # The minute turned since the trades were written: the window moved past "inside".
        assert ticker.trade_count_24h in (1, 2)
        return
    assert ticker.trade_count_24h == 2
    assert (ticker.open_24h, ticker.high_24h, ticker.low_24h) == ("123.46", "123.46", "120.00")
    assert ticker.volume_24h == "0.0006"
    assert ticker.quote_volume_24h == "0.073384"  # 123.46 x 0.0004 + 120.00 x 0.0002
    assert (ticker.last_price, ticker.last_quantity) == ("120.00", "0.0002")
    assert ticker.sequence == latest[0]
