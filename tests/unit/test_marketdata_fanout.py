"""Subscriber queues and one instrument's fan-out, without servers."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest

from exchange.marketdata.v1 import marketdata_pb2 as md_pb2
from exchange.matching.v1 import matching_pb2
from exchange_common.instruments import InstrumentSpec
from marketdata_service.fanout import Subscriber, SubscriptionClosed
from marketdata_service.market import InstrumentMarket
from marketdata_service.store import InitialState
from marketdata_service.trades import TradeRecord


class Snapshots:
    def __init__(self) -> None:
        self.state = 0
        self.calls = 0

    def __call__(self, position: int) -> tuple[int, bytes | None]:
        self.calls += 1
        return self.state, f"snapshot@{self.state}".encode()


async def test_updates_in_order_then_wait():
    snaps = Snapshots()
    sub = Subscriber(4, snaps, position=0, initial=b"snapshot@0")
    assert sub.push(1, b"d1") == 0
    assert sub.push(2, b"d2") == 0
    assert [await sub.next() for _ in range(3)] == [b"snapshot@0", b"d1", b"d2"]
    assert sub.position == 2
    waiter = asyncio.ensure_future(sub.next())
    await asyncio.sleep(0)
    assert not waiter.done()
    sub.push(3, b"d3")
    assert await asyncio.wait_for(waiter, 1) == b"d3"
    assert snaps.calls == 0 and sub.dropped == 0


async def test_overflow_conflates_into_one_snapshot():
    snaps = Snapshots()
    sub = Subscriber(3, snaps, position=0)
    for seq in (1, 2, 3):
        assert sub.push(seq, b"d%d" % seq) == 0
    assert sub.push(4, b"d4") == 4  # the backlog (3) and this update
    assert len(sub) == 0 and sub.need_resync
    assert sub.push(5, b"d5") == 1  # nothing is queued until the snapshot is taken
    assert sub.dropped == 5
    snaps.state = 5
    assert await sub.next() == b"snapshot@5"
    assert sub.position == 5
    sub.push(6, b"d6")
    assert await sub.next() == b"d6"
    assert snaps.calls == 1


async def test_invalidate_and_close():
    snaps = Snapshots()
    sub = Subscriber(10, snaps, position=0)
    sub.push(1, b"d1")
    sub.invalidate()
    snaps.state = 9
    assert await sub.next() == b"snapshot@9"
    waiter = asyncio.ensure_future(sub.next())
    await asyncio.sleep(0)
    sub.close()
    with pytest.raises(SubscriptionClosed):
        await asyncio.wait_for(waiter, 1)


# -- one instrument --------------------------------------------------------------------------

SPEC = InstrumentSpec(
    instrument_id=1, symbol="BTC-USD", base_asset="BTC", quote_asset="USD",
    tick_size=Decimal("0.01"), lot_size=Decimal("0.0001"), min_quantity=Decimal("0.0001"),
    max_quantity=Decimal(1000), min_notional=Decimal(1), price_band_bps=0, status="trading",
    price_decimals=2, quantity_decimals=4)


def _batch(first, last, bids=(), asks=(), trades=()):
    return matching_pb2.MarketDataBatch(
        instrument_id=1, first_sequence=first, last_sequence=last, time_unix_nanos=last * 1000,
        bids=[matching_pb2.LevelUpdate(price=p, quantity=q, order_count=c) for p, q, c in bids],
        asks=[matching_pb2.LevelUpdate(price=p, quantity=q, order_count=c) for p, q, c in asks],
        trades=[matching_pb2.TradeEvent(trade_id=(1 << 44) | s, price=p, quantity=q,
                                        taker_side=1, time_unix_nanos=s, sequence=s)
                for s, p, q in trades])


def _market(sequence=10):
    state = InitialState(1, sequence, bids=[(10000, 5, 1)], asks=[(10100, 7, 2)],
                         trades=[TradeRecord((1 << 44) | 3, 3, 10050, 1, 2, 3)])
    return InstrumentMarket(SPEC, state, recent_trades=100)


def _parse(data: bytes) -> md_pb2.StreamOrderBookResponse:
    return md_pb2.StreamOrderBookResponse.FromString(data)


async def test_market_snapshot_then_one_shared_delta_per_apply():
    market = _market()
    a = market.subscribe_book(16)
    b = market.subscribe_book(16)
    snap = _parse(await a.next())
    assert snap.snapshot.sequence == 10
    assert [(lv.price, lv.quantity, lv.order_count) for lv in snap.snapshot.bids] == [
        ("100.00", "0.0005", 1)]
    gap = market.apply([
        (b"11-0", _batch(11, 11, bids=[(10000, 0, 0)])),
        (b"13-0", _batch(12, 13, asks=[(10100, 2, 1), (10200, 1, 1)],
                         trades=[(12, 10100, 5)])),
        (b"13-0", _batch(12, 13)),  # a repeat: skipped
    ])
    assert not gap
    assert market.sequence == 13 and market.stream_pos == b"13-0"
    delta_a = await a.next()
    await b.next()  # b's snapshot
    assert await b.next() is delta_a  # the very same bytes object
    delta = _parse(delta_a).delta
    assert (delta.first_sequence, delta.sequence) == (11, 13)
    assert [(lv.price, lv.quantity, lv.order_count) for lv in delta.bids] == [("100.00", "0", 0)]
    assert [(lv.price, lv.quantity) for lv in delta.asks] == [("101.00", "0.0002"),
                                                              ("102.00", "0.0001")]
    assert [t.sequence for t in market.trades.since(0)] == [3, 12]


async def test_market_gap_stops_applying_and_reset_resends_snapshots():
    market = _market()
    sub = market.subscribe_book(16)
    trades = market.subscribe_trades(16)
    await sub.next()
    assert market.apply([(b"11-0", _batch(11, 11, bids=[(9900, 1, 1)])),
                         (b"15-0", _batch(14, 15, bids=[(9800, 1, 1)]))])
    assert market.sequence == 11 and market.stream_pos == b"11-0"
    assert market.consecutive_gaps == 1
    assert _parse(await sub.next()).delta.sequence == 11
    rebuilt = InitialState(1, 15, bids=[(9800, 1, 1)], asks=[],
                           trades=[TradeRecord((1 << 44) | 3, 3, 10050, 1, 2, 3),
                                   TradeRecord((1 << 44) | 14, 14, 9900, 1, 2, 14)])
    market.reset(rebuilt)
    snap = _parse(await sub.next()).snapshot
    assert snap.sequence == 15
    assert [lv.price for lv in snap.bids] == ["98.00"] and not snap.asks
    # The trade subscriber gets the trade it missed, from the rebuilt recent trades.
    missed = md_pb2.StreamTradesResponse.FromString(await trades.next())
    assert [t.sequence for t in missed.trades] == [14]
    assert market.stream_pos == "15-0"


async def test_unreadable_entry_is_a_gap():
    market = _market()
    assert market.apply([(b"11-0", None)])
    assert market.sequence == 10


async def test_snapshot_bytes_are_built_once_per_state():
    market = _market()
    first = market.snapshot_bytes()
    assert market.snapshot_bytes() is first
    market.apply([(b"11-0", _batch(11, 11))])
    assert market.snapshot_bytes() is not first


def test_a_subscriber_too_far_behind_in_time_is_resynced() -> None:
    snapshots = []

    def resync(position):
        snapshots.append(position)
        return 99, b"snapshot"

    sub = Subscriber(100, resync, position=0, max_age=0.5)
    assert sub.push(1, b"d1", now=10.0) == 0
    assert sub.push(2, b"d2", now=10.4) == 0  # the oldest is 0.4 s old: fine
    assert sub.push(3, b"d3", now=10.6) == 3  # the oldest is 0.6 s old: conflate
    assert sub.need_resync and len(sub) == 0
    assert asyncio.run(sub.next()) == b"snapshot" and sub.position == 99
    assert sub.push(100, b"d4", now=11.0) == 0
