"""StreamOrderBook views (depth, interval), their checksums and heartbeats, without
servers: subscribers read ``fanout.Subscriber`` queues and keep the client library's
LocalOrderBook, which verifies every checksum."""

from __future__ import annotations

import asyncio
import random
import time
from decimal import Decimal

import pytest

from exchange.marketdata.v1 import marketdata_pb2 as md_pb2
from exchange.matching.v1 import matching_pb2
from exchange_client.book import LocalOrderBook
from exchange_common.instruments import InstrumentSpec
from marketdata_service.fanout import Subscriber
from marketdata_service.market import InstrumentMarket
from marketdata_service.store import InitialState

SPEC = InstrumentSpec(
    instrument_id=1, symbol="BTC-USD", base_asset="BTC", quote_asset="USD",
    tick_size=Decimal("0.01"), lot_size=Decimal("0.0001"), min_quantity=Decimal("0.0001"),
    max_quantity=Decimal(1000), min_notional=Decimal(1), price_band_bps=0, status="trading",
    price_decimals=2, quantity_decimals=4)


def batch(first: int, last: int, bids=(), asks=()) -> matching_pb2.MarketDataBatch:
    return matching_pb2.MarketDataBatch(
        instrument_id=1, first_sequence=first, last_sequence=last, time_unix_nanos=last,
        bids=[matching_pb2.LevelUpdate(price=p, quantity=q, order_count=c) for p, q, c in bids],
        asks=[matching_pb2.LevelUpdate(price=p, quantity=q, order_count=c) for p, q, c in asks])


def market(bids=(), asks=(), sequence: int = 10, **kw) -> InstrumentMarket:
    return InstrumentMarket(SPEC, InitialState(1, sequence, bids=list(bids), asks=list(asks)),
                            recent_trades=10, **kw)


async def drain(sub: Subscriber, local: LocalOrderBook) -> list[str]:
    kinds = []
    while len(sub) or sub.need_resync:
        msg = md_pb2.StreamOrderBookResponse.FromString(await sub.next())
        local.apply(msg)  # raises on a gap or a checksum mismatch
        kinds.append(msg.WhichOneof("update"))
    return kinds


def top(m: InstrumentMarket, depth: int) -> tuple[list, list]:
    return ([(lv.price, lv.quantity) for lv in m.book.bid_levels(depth)],
            [(lv.price, lv.quantity) for lv in m.book.ask_levels(depth)])


def held(local: LocalOrderBook) -> tuple[list, list]:
    def ticks(levels):
        return [(int(lv.price * 100), int(lv.quantity * 10000)) for lv in levels]
    return ticks(local.bids()), ticks(local.asks())


async def test_a_level_that_enters_the_top_is_sent() -> None:
    m = market(bids=[(10000 - i, 1 + i, 1) for i in range(8)])
    sub = m.subscribe_book(100, depth=3)
    local = LocalOrderBook()
    assert await drain(sub, local) == ["snapshot"]
    assert held(local) == ([(10000, 1), (9999, 2), (9998, 3)], [])
    # The best bid leaves: 9997 enters the top 3 and must be sent, though it did not change.
    m.apply([(b"11-0", batch(11, 11, bids=[(10000, 0, 0)]))])
    msgs = [md_pb2.StreamOrderBookResponse.FromString(await sub.next())]
    delta = msgs[0].delta
    assert [(lv.price, lv.quantity) for lv in delta.bids] == [("100.00", "0"),
                                                            ("99.97", "0.0004")]
    local.apply(msgs[0])
    assert held(local) == top(m, 3)
    # A change below the top: a delta with no level (the sequence moves on).
    m.apply([(b"12-0", batch(12, 12, bids=[(9990, 1, 1)]))])
    msg = md_pb2.StreamOrderBookResponse.FromString(await sub.next())
    assert (msg.delta.first_sequence, msg.delta.sequence) == (12, 12) and not msg.delta.bids
    local.apply(msg)
    # A better level pushes the third one out.
    m.apply([(b"13-0", batch(13, 13, bids=[(10005, 7, 1)]))])
    await drain(sub, local)
    assert held(local) == top(m, 3) and local.sequence == 13


async def test_views_share_bytes_and_the_default_view_is_unchanged() -> None:
    m = market(bids=[(10000, 5, 1)], asks=[(10100, 7, 2)])
    a, b = m.subscribe_book(16), m.subscribe_book(16)
    c, d = m.subscribe_book(16, depth=1), m.subscribe_book(16, depth=1)
    assert len(m.views) == 2
    for sub in (a, b, c, d):
        await sub.next()
    m.apply([(b"11-0", batch(11, 11, bids=[(9900, 1, 1)]))])
    assert await a.next() is await b.next()
    assert await c.next() is await d.next()
    m.unsubscribe(c)
    m.unsubscribe(d)
    assert list(m.views) == [(0, 0.0)]


async def test_interval_merges_changes_and_heartbeats_carry_the_sequence() -> None:
    m = market(bids=[(10000, 5, 1)])
    sub = m.subscribe_book(100, depth=5, interval=0.05)
    local = LocalOrderBook()
    await drain(sub, local)
    m.apply([(b"11-0", batch(11, 11, bids=[(10000, 4, 1)]))])  # after a quiet spell: at once
    m.apply([(b"12-0", batch(12, 12, bids=[(10000, 3, 1)]))])
    m.apply([(b"14-0", batch(13, 14, asks=[(10100, 1, 1)]))])
    assert await drain(sub, local) == ["delta"]
    assert local.sequence == 11
    await asyncio.sleep(0.08)
    assert await drain(sub, local) == ["delta"]  # 12-14 merged
    assert local.sequence == 14 and held(local) == top(m, 5)
    # Idle: a heartbeat with the sequence the stream is at.
    m.tick(time.monotonic() + 1.0, 0, idle=1.0)
    msg = md_pb2.StreamOrderBookResponse.FromString(await asyncio.wait_for(sub.next(), 5))
    assert msg.WhichOneof("update") == "heartbeat" and msg.heartbeat.sequence == 14
    local.apply(msg)
    assert local.heartbeats == 1


async def test_a_new_subscriber_of_a_paced_view_starts_from_the_views_last_message() -> None:
    m = market(bids=[(10000, 5, 1)])
    first = m.subscribe_book(100, depth=2, interval=0.05)
    m.apply([(b"11-0", batch(11, 11, bids=[(9999, 1, 1)]))])  # sent at once
    m.apply([(b"12-0", batch(12, 12, bids=[(9998, 1, 1), (10000, 0, 0)]))])  # waits
    late = m.subscribe_book(100, depth=2, interval=0.05)
    books = [LocalOrderBook(), LocalOrderBook()]
    await drain(first, books[0])
    await drain(late, books[1])
    assert books[1].sequence == 11  # the view's state, not the book's
    await asyncio.sleep(0.08)
    for sub, local in zip((first, late), books, strict=True):
        await drain(sub, local)
        assert local.sequence == 12 and held(local) == top(m, 2)


@pytest.mark.parametrize("seed", range(6))
async def test_random_updates_every_view_rebuilds_its_top_levels(seed: int) -> None:
    """Random level changes, subscribers of random views joining and reading at random:
    each one's book (checksums verified at every message) ends equal to the top of the
    market's book."""
    rng = random.Random(seed)
    m = market(book_interval=0.005)
    subs: list[tuple[int, Subscriber, LocalOrderBook]] = []
    seq = 10
    for _ in range(200):
        r = rng.random()
        if r < 0.1 or not subs:
            depth = rng.choice((0, 1, 3, 10, 12))
            interval = rng.choice((0.0, 0.0, 0.01))
            subs.append((depth, m.subscribe_book(1000, depth=depth, interval=interval),
                         LocalOrderBook()))
        elif r < 0.8:
            span = rng.randint(1, 3)
            bids = [(rng.randint(80, 100) * 100, rng.choice((0, 0, 1, 2, 5)), 1)
                    for _ in range(rng.randint(0, 5))]
            asks = [(rng.randint(101, 120) * 100, rng.choice((0, 0, 1, 2, 5)), 1)
                    for _ in range(rng.randint(0, 5))]
            m.apply([(b"%d-0" % (seq + span), batch(seq + 1, seq + span, bids, asks))])
            seq += span
        else:
            _, sub, local = rng.choice(subs)
            await drain(sub, local)
        await asyncio.sleep(rng.choice((0, 0, 0.003, 0.012)))
    await asyncio.sleep(0.03)
    for depth, sub, local in subs:
        await drain(sub, local)
        assert local.sequence == seq
        assert held(local) == top(m, depth)
