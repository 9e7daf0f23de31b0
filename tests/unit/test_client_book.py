"""LocalOrderBook driven with decoded levels (``replace`` / ``change``), as a caller that
decodes one message once for many books does (bench/fanout.py)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from exchange.marketdata.v1 import marketdata_pb2
from exchange_client.book import Level, LocalOrderBook, SequenceGap, decode_levels


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
