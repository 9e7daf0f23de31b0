"""Pure tests of the market data domain: the L2 book, recent trades, exact formatting."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from exchange_common.instruments import InstrumentSpec
from marketdata_service.book import ApplyResult, L2Book, Level
from marketdata_service.trades import TradeRecord, TradeRing
from marketdata_service.wire import UnitFormatter


def test_levels_best_first_and_depth():
    book = L2Book.from_levels(
        7,
        bids=[(100, 5, 1), (102, 1, 1), (101, 3, 2)],
        asks=[(105, 2, 1), (103, 4, 3), (104, 1, 1)],
    )
    assert book.sequence == 7
    assert list(book.bid_levels()) == [Level(102, 1, 1), Level(101, 3, 2), Level(100, 5, 1)]
    assert list(book.ask_levels()) == [Level(103, 4, 3), Level(104, 1, 1), Level(105, 2, 1)]
    assert list(book.bid_levels(2)) == [Level(102, 1, 1), Level(101, 3, 2)]
    assert list(book.ask_levels(1)) == [Level(103, 4, 3)]
    assert list(book.ask_levels(10)) == list(book.ask_levels())
    assert book.best_bid() == Level(102, 1, 1)
    assert book.best_ask() == Level(103, 4, 3)


def test_empty_book():
    book = L2Book()
    assert book.sequence == 0
    assert book.best_bid() is None and book.best_ask() is None
    assert list(book.bid_levels()) == [] and list(book.ask_levels(3)) == []


def test_initial_levels_with_zero_quantity_are_dropped():
    book = L2Book.from_levels(1, bids=[(100, 0, 0)], asks=[(101, 1, 1)])
    assert list(book.bid_levels()) == []


@pytest.mark.parametrize(
    ("first", "last", "expected", "sequence_after"),
    [
        (11, 11, ApplyResult.APPLIED, 11),
        (11, 15, ApplyResult.APPLIED, 15),
        (10, 10, ApplyResult.SKIPPED, 10),  # already reflected (a repeat)
        (5, 9, ApplyResult.SKIPPED, 10),  # older
        (12, 12, ApplyResult.GAP, 10),  # 11 is missing
        (9, 11, ApplyResult.GAP, 10),  # overlaps: cannot be applied partially
    ],
)
def test_apply_sequence_rules(first, last, expected, sequence_after):
    book = L2Book.from_levels(10, bids=[(100, 5, 1)], asks=[])
    before = list(book.bid_levels())
    result = book.apply(first, last, [(100, 7, 2)], [(110, 1, 1)])
    assert result is expected
    assert book.sequence == sequence_after
    if expected is ApplyResult.APPLIED:
        assert list(book.bid_levels()) == [Level(100, 7, 2)]
        assert list(book.ask_levels()) == [Level(110, 1, 1)]
    else:
        assert list(book.bid_levels()) == before
        assert list(book.ask_levels()) == []


def test_apply_sets_new_totals_and_removes_zero_levels():
    book = L2Book.from_levels(1, bids=[(100, 5, 1), (99, 2, 1)], asks=[(101, 3, 1)])
    assert book.apply(2, 3, bids=[(100, 0, 0), (98, 4, 2)], asks=[(101, 1, 1), (102, 6, 3)]) \
        is ApplyResult.APPLIED
    assert list(book.bid_levels()) == [Level(99, 2, 1), Level(98, 4, 2)]
    assert list(book.ask_levels()) == [Level(101, 1, 1), Level(102, 6, 3)]
    # Removing a level that does not exist is harmless.
    assert book.apply(4, 4, bids=[(50, 0, 0)], asks=[]) is ApplyResult.APPLIED
    assert list(book.bid_levels()) == [Level(99, 2, 1), Level(98, 4, 2)]


def test_equality_compares_sequence_and_levels():
    a = L2Book.from_levels(3, [(1, 1, 1)], [(2, 1, 1)])
    b = L2Book.from_levels(3, [(1, 1, 1)], [(2, 1, 1)])
    assert a == b
    b.apply(4, 4, [], [])
    assert a != b


level_updates = st.lists(
    st.tuples(st.integers(1, 40), st.integers(0, 5), st.integers(1, 3)), max_size=8)


@given(st.lists(st.tuples(level_updates, level_updates, st.integers(1, 3)), max_size=30))
def test_book_matches_a_dict_model(batches):
    """Applying updates equals overwriting a plain dict per side; levels stay sorted."""
    book = L2Book()
    model: dict[str, dict[int, tuple[int, int]]] = {"bid": {}, "ask": {}}
    for bids, asks, span in batches:
        first = book.sequence + 1
        assert book.apply(first, first + span - 1, bids, asks) is ApplyResult.APPLIED
        for side, updates in (("bid", bids), ("ask", asks)):
            for price, qty, count in updates:
                if qty == 0:
                    model[side].pop(price, None)
                else:
                    model[side][price] = (qty, count)
    assert book.sequence == sum(span for _, _, span in batches)
    assert [(p, q, c) for p, q, c in book.bid_levels()] == [
        (p, q, c) for p, (q, c) in sorted(model["bid"].items(), reverse=True)]
    assert [(p, q, c) for p, q, c in book.ask_levels()] == [
        (p, q, c) for p, (q, c) in sorted(model["ask"].items())]


# -- recent trades ---------------------------------------------------------------------------

def _trade(seq: int) -> TradeRecord:
    return TradeRecord(trade_id=(1 << 44) | seq, sequence=seq, price=100 + seq, quantity=1,
                       taker_side=1, time_unix_nanos=seq)


def test_trade_ring_pages_newest_first():
    ring = TradeRing(5, [_trade(s) for s in (1, 2, 3)], complete=True)
    assert [t.sequence for t in ring.page(None, 2)] == [3, 2]
    assert [t.sequence for t in ring.page(_trade(2).trade_id, 5)] == [1]
    # Complete: a short page is the whole truth.
    assert [t.sequence for t in ring.page(None, 10)] == [3, 2, 1]
    assert ring.page(_trade(1).trade_id, 10) == []


def test_trade_ring_cannot_answer_past_its_oldest_trade_once_it_evicted():
    ring = TradeRing(3, [_trade(s) for s in (1, 2, 3)], complete=True)
    ring.extend([_trade(4)])  # evicts 1
    assert not ring.complete
    assert len(ring) == 3
    assert [t.sequence for t in ring.page(None, 3)] == [4, 3, 2]
    assert ring.page(None, 4) is None
    assert ring.page(_trade(3).trade_id, 2) is None
    assert ring.newest() == _trade(4)


def test_trade_ring_loaded_partially_is_not_complete():
    ring = TradeRing(10, [_trade(s) for s in (5, 6)], complete=False)
    assert ring.page(None, 2) is not None
    assert ring.page(None, 3) is None


def test_trade_ring_since():
    ring = TradeRing(10, [_trade(s) for s in (2, 4, 6, 8)])
    assert [t.sequence for t in ring.since(4)] == [6, 8]
    assert [t.sequence for t in ring.since(0)] == [2, 4, 6, 8]
    assert ring.since(8) == []


# -- exact decimal strings -------------------------------------------------------------------

def _spec(tick: str, lot: str) -> InstrumentSpec:
    row = {
        "instrument_id": 1, "symbol": "X-Y", "base_asset": "X", "quote_asset": "Y",
        "tick_size": Decimal(tick), "lot_size": Decimal(lot), "min_quantity": Decimal(lot),
        "max_quantity": Decimal(1000), "min_notional": Decimal(0), "price_band_bps": 0,
        "status": "trading",
    }
    return InstrumentSpec.from_row(row)  # type: ignore[arg-type]


@pytest.mark.parametrize("tick", ["0.01", "0.0001", "0.05", "0.5", "1", "5", "10", "0.00000001"])
@given(units=st.integers(0, 10**15))
def test_unit_formatter_equals_instrument_spec(tick, units):
    spec = _spec(tick, tick)
    fmt = UnitFormatter(spec.tick_size, spec.price_decimals)
    assert fmt(units) == spec.price_str(units)


def test_unit_formatter_examples():
    spec = _spec("0.01", "0.0001")
    price = UnitFormatter(spec.tick_size, spec.price_decimals)
    qty = UnitFormatter(spec.lot_size, spec.quantity_decimals)
    assert price(7000050) == "70000.50"
    assert price(1) == "0.01"
    assert price(0) == "0.00"
    assert qty(1) == "0.0001"
    assert qty(12345) == "1.2345"
    assert qty(0) == "0.0000"
