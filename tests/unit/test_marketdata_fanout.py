"""Subscriber queues and one instrument's fan-out, without servers."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest
from book_checks import apply, book_view

from exchange.marketdata.v1 import marketdata_pb2 as md_pb2
from exchange.matching.v1 import matching_pb2
from exchange_client.book import LocalOrderBook
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


# -- time coalescing --------------------------------------------------------------------------

async def _take_all(sub: Subscriber, local: LocalOrderBook) -> int:
    n = 0
    while len(sub) or sub.need_resync:
        apply(local, _parse(await sub.next()))
        n += 1
    return n


def _get_order_book(market: InstrumentMarket) -> md_pb2.GetOrderBookResponse:
    """What GetOrderBook answers (the servicer calls exactly this)."""
    return market.wire.order_book(market.book, 0, market.time_unix_nanos)


async def test_interval_shrinks_for_few_subscribers():
    market = InstrumentMarket(SPEC, InitialState(1, 10, bids=[], asks=[], trades=[]),
                              recent_trades=100, book_interval=0.05,
                              interval_per_subscriber=0.0001)
    assert market.current_interval() == 0  # nobody to send to
    subs = [market.subscribe_book(16) for _ in range(100)]
    assert market.current_interval() == pytest.approx(0.01)
    subs += [market.subscribe_book(16) for _ in range(900)]
    assert market.current_interval() == 0.05  # capped by book_interval
    for sub in subs[1:]:
        market.unsubscribe(sub)
    assert market.current_interval() == pytest.approx(0.0001)


async def test_book_deltas_are_merged_per_interval_and_shared():
    market = InstrumentMarket(SPEC, InitialState(1, 10, bids=[(10000, 5, 1)],
                                                 asks=[(10100, 7, 2)], trades=[]),
                              recent_trades=100, book_interval=0.05)
    a, b = market.subscribe_book(16), market.subscribe_book(16)
    book_a, book_b = LocalOrderBook(), LocalOrderBook()
    apply(book_a, _parse(await a.next()))
    apply(book_b, _parse(await b.next()))
    # After a quiet period the first change goes out at once.
    market.apply([(b"11-0", _batch(11, 11, bids=[(10000, 4, 1)]))])
    assert len(a) == 1 and len(b) == 1
    first = await a.next()
    assert await b.next() is first
    assert (_parse(first).delta.first_sequence, _parse(first).delta.sequence) == (11, 11)
    apply(book_a, _parse(first))
    apply(book_b, _parse(first))
    # Changes within the interval wait for its end, then go out as one merged delta.
    market.apply([(b"12-0", _batch(12, 12, bids=[(10000, 3, 1), (9900, 1, 1)]))])
    market.apply([(b"14-0", _batch(13, 14, bids=[(10000, 0, 0)], asks=[(10100, 6, 2)]))])
    market.apply([(b"15-0", _batch(15, 15, bids=[(9900, 2, 2)]))])
    assert len(a) == 0 and len(b) == 0
    merged = await asyncio.wait_for(a.next(), 1)
    assert await b.next() is merged
    delta = _parse(merged).delta
    assert (delta.first_sequence, delta.sequence) == (12, 15)
    # The latest total per price, each price once.
    assert [(lv.price, lv.quantity, lv.order_count) for lv in delta.bids] == [
        ("100.00", "0", 0), ("99.00", "0.0002", 2)]
    assert [(lv.price, lv.quantity) for lv in delta.asks] == [("101.00", "0.0006")]
    apply(book_a, _parse(merged))
    assert book_view(book_a) == book_view(_get_order_book(market))
    assert market.deltas_built == 2


async def test_subscriber_joining_inside_an_interval_gets_a_delta_from_its_snapshot():
    market = InstrumentMarket(SPEC, InitialState(1, 10, bids=[(10000, 5, 1)],
                                                 asks=[(10100, 7, 2)], trades=[]),
                              recent_trades=100, book_interval=0.05)
    early = market.subscribe_book(16)
    market.apply([(b"11-0", _batch(11, 11, bids=[(9900, 1, 1)]))])  # sent at once
    market.apply([(b"12-0", _batch(12, 12, bids=[(9800, 1, 1)]))])  # waits
    late = market.subscribe_book(16)  # its snapshot reflects 12
    market.apply([(b"13-0", _batch(13, 13, bids=[(9900, 0, 0)], asks=[(10200, 3, 1)]))])
    books = {}
    for name, sub in (("early", early), ("late", late)):
        books[name] = LocalOrderBook()
        apply(books[name], _parse(await sub.next()))  # the snapshot
    await asyncio.sleep(0.08)
    assert await _take_all(early, books["early"]) == 2  # 11, then 12-13
    assert await _take_all(late, books["late"]) == 1  # 13 only, same levels
    for local in books.values():
        assert book_view(local) == book_view(_get_order_book(market))
    assert market.deltas_built == 3  # 11; 12-13; 13-13 for the late one


async def test_trades_are_never_coalesced():
    market = InstrumentMarket(SPEC, InitialState(1, 10, bids=[], asks=[], trades=[]),
                              recent_trades=100, book_interval=10.0)
    trades = market.subscribe_trades(16)
    market.apply([(b"11-0", _batch(11, 11, trades=[(11, 10000, 1)]))])
    market.apply([(b"12-0", _batch(12, 12, trades=[(12, 10001, 2)]))])
    got = [md_pb2.StreamTradesResponse.FromString(await trades.next()) for _ in range(2)]
    assert [[t.sequence for t in m.trades] for m in got] == [[11], [12]]


@pytest.mark.parametrize("seed", range(5))
async def test_coalesced_stream_rebuilds_the_book_for_every_subscriber(seed):
    """Random updates at random times, subscribers joining and reading at random: every
    subscriber's deltas follow on from each other and its book ends equal to GetOrderBook."""
    import random

    rng = random.Random(seed)
    market = InstrumentMarket(SPEC, InitialState(1, 0, bids=[], asks=[], trades=[]),
                              recent_trades=100, book_interval=0.01)
    subs: list[tuple[Subscriber, LocalOrderBook]] = []
    seq = 0
    applies = 0
    for _step in range(150):
        r = rng.random()
        if r < 0.1 or not subs:
            subs.append((market.subscribe_book(1000), LocalOrderBook()))
        elif r < 0.8:
            span = rng.randint(1, 3)
            bids = [(rng.randint(90, 100) * 100, rng.choice((0, 1, 2, 5)), rng.randint(1, 3))
                    for _ in range(rng.randint(0, 4))]
            asks = [(rng.randint(101, 110) * 100, rng.choice((0, 1, 2, 5)), rng.randint(1, 3))
                    for _ in range(rng.randint(0, 4))]
            market.apply([(b"%d-0" % (seq + span), _batch(seq + 1, seq + span, bids, asks))])
            seq += span
            applies += 1
        else:
            sub, local = rng.choice(subs)
            await _take_all(sub, local)
        await asyncio.sleep(rng.choice((0, 0, 0.002, 0.006)))
    await asyncio.sleep(0.03)
    expected = _get_order_book(market)
    assert expected.sequence == seq
    for sub, local in subs:
        await _take_all(sub, local)
        assert book_view(local) == book_view(expected)
    # Fewer deltas than updates were built: they were merged.
    assert market.deltas_built < applies
