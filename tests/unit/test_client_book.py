"""exchange_client.book.LocalOrderBook.to_snapshot: the local book in the wire format."""

from __future__ import annotations

import pytest
from google.protobuf import timestamp_pb2

from exchange.marketdata.v1 import marketdata_pb2
from exchange_client.book import LocalOrderBook


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
    book = LocalOrderBook()
    book.apply(received)
    snap = book.to_snapshot()
    # The same message: digits as received (no exponent, no normalising), best first.
    assert snap == received.snapshot
    assert _view(snap) == _view(received.snapshot)
    assert snap.time == when


def test_to_snapshot_after_deltas_and_with_a_depth():
    book = LocalOrderBook()
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
    book = LocalOrderBook()
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
