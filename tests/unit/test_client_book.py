"""exchange_client.book.LocalOrderBook: the local book in the wire format (to_snapshot), and
books kept from levels decoded once (decode_levels, replace, change)."""

from __future__ import annotations

from decimal import Decimal

import pytest
from google.protobuf import timestamp_pb2

from exchange.marketdata.v1 import marketdata_pb2
from exchange_client.book import Level, LocalOrderBook, SequenceGap, decode_levels


def _levels(*levels: tuple[str, str, int]) -> list[marketdata_pb2.PriceLevel]:
    return [marketdata_pb2.PriceLevel(price=p, quantity=q, order_count=n) for p, q, n in levels]


def _snapshot(seq: int, bids=(), asks=(), time=None) -> marketdata_pb2.StreamOrderBookResponse:
    return marketdata_pb2.StreamOrderBookResponse(snapshot=marketdata_pb2.OrderBookSnapshot(
        sequence=seq, bids=_levels(*bids), asks=_levels(*asks), time=time))


def _delta(first: int, seq: int, bids=(), asks=()) -> marketdata_pb2.StreamOrderBookResponse:
    return marketdata_pb2.StreamOrderBookResponse(delta=marketdata_pb2.OrderBookDelta(
        first_sequence=first, sequence=seq, bids=_levels(*bids), asks=_levels(*asks)))


def _view(msg) -> tuple[int, list[tuple[str, str, int]], list[tuple[str, str, int]]]:
    return (msg.sequence, [(lv.price, lv.quantity, lv.order_count) for lv in msg.bids],
            [(lv.price, lv.quantity, lv.order_count) for lv in msg.asks])


def test_to_snapshot_gives_back_what_was_received_best_first():
    when = timestamp_pb2.Timestamp(seconds=1_700_000_000, nanos=5)
    received = _snapshot(
        7, time=when,
        bids=[("70000.00", "0.5000", 2), ("9999.50", "1", 1), ("0.01", "0.0000001", 1)],
        asks=[("70000.01", "2.0", 1), ("100000.00", "0.25", 3)])
    book = LocalOrderBook(verify=False)  # messages made here carry no checksum
    book.apply(received)
    snap = book.to_snapshot()
    # The same message: digits as received (no exponent, no normalising), best first.
    assert snap == received.snapshot
    assert _view(snap) == _view(received.snapshot)
    assert snap.time == when


def test_to_snapshot_after_deltas_and_with_a_depth():
    book = LocalOrderBook(verify=False)
    book.apply(_snapshot(10, bids=[("100.00", "1.0", 1), ("99.00", "2.0", 2)],
                         asks=[("101.00", "3.0", 1)]))
    book.apply(_delta(11, 12, bids=[("100.00", "0", 0), ("99.50", "0.5", 1)],
                      asks=[("100.50", "4.00", 2)]))
    assert _view(book.to_snapshot()) == (
        12, [("99.50", "0.5", 1), ("99.00", "2.0", 2)],
        [("100.50", "4.00", 2), ("101.00", "3.0", 1)])
    assert _view(book.to_snapshot(depth=1)) == (12, [("99.50", "0.5", 1)],
                                                [("100.50", "4.00", 2)])
    assert not book.to_snapshot().HasField("time")


def test_to_snapshot_is_a_copy():
    book = LocalOrderBook(verify=False)
    book.apply(_snapshot(3, bids=[("1.00", "1", 1)],
                         time=timestamp_pb2.Timestamp(seconds=1)))
    snap = book.to_snapshot()
    snap.bids[0].quantity = "9"
    snap.time.seconds = 2
    assert _view(book.to_snapshot()) == (3, [("1.00", "1", 1)], [])
    assert book.to_snapshot().time.seconds == 1


def test_to_snapshot_before_any_snapshot_raises():
    book = LocalOrderBook("BTC-USD")
    with pytest.raises(ValueError, match="no snapshot"):
        book.to_snapshot()
    book.apply(_snapshot(1))
    book.reset()
    with pytest.raises(ValueError):
        book.to_snapshot()


def levels(*rows: tuple[str, str, int]) -> list[marketdata_pb2.PriceLevel]:
    return [marketdata_pb2.PriceLevel(price=p, quantity=q, order_count=n) for p, q, n in rows]


def test_decoded_levels_give_the_same_book_as_the_messages():
    snap = marketdata_pb2.OrderBookSnapshot(
        sequence=10, bids=levels(("100.00", "1.5", 2), ("99.00", "2", 1)),
        asks=levels(("101.00", "0.5", 1)))
    delta = marketdata_pb2.OrderBookDelta(
        first_sequence=11, sequence=12, bids=levels(("99.00", "0", 0), ("100.50", "3", 1)),
        asks=levels(("101.00", "0.25", 1)))
    by_message, by_levels = LocalOrderBook("X"), LocalOrderBook("X")
    by_message.apply_snapshot(snap)
    by_message.apply_delta(delta)
    by_levels.replace(snap.sequence, decode_levels(snap.bids), decode_levels(snap.asks))
    by_levels.change(delta.first_sequence, delta.sequence, decode_levels(delta.bids),
                     decode_levels(delta.asks))
    for book in (by_message, by_levels):
        assert book.sequence == 12 and book.snapshots == 1 and book.deltas == 1
        assert book.bids() == [Level(Decimal("100.50"), Decimal("3"), 1),
                               Level(Decimal("100.00"), Decimal("1.5"), 2)]
        assert book.asks() == [Level(Decimal("101.00"), Decimal("0.25"), 1)]


def test_a_decoded_delta_that_does_not_follow_on_is_a_gap_and_changes_nothing():
    book = LocalOrderBook()
    with pytest.raises(SequenceGap):
        book.change(1, 1, (), ())
    book.replace(5, decode_levels(levels(("10", "1", 1))), ())
    with pytest.raises(SequenceGap) as gap:
        book.change(7, 8, decode_levels(levels(("10", "0", 0))), ())
    assert (gap.value.expected, gap.value.first_sequence) == (6, 7)
    assert book.sequence == 5 and book.best_bid == Level(Decimal("10"), Decimal("1"), 1)


def test_books_may_share_decoded_levels():
    shared = decode_levels(levels(("10", "1", 1)))
    a, b = LocalOrderBook(), LocalOrderBook()
    a.replace(1, shared, ())
    b.replace(1, shared, ())
    a.change(2, 2, decode_levels(levels(("10", "0", 0))), ())
    assert a.best_bid is None and b.best_bid == shared[0]
