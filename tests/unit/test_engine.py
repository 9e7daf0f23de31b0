"""Matching rules, table-driven, on the pure engine (no server)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from exchange_common.ids import instrument_of, sequence_of
from matching_service.engine import (
    BUY,
    CANCELLED,
    ERR_DUPLICATE,
    ERR_ORDER_NOT_OPEN,
    EV_ACCEPTED,
    EV_CANCELLED,
    EV_EXPIRED,
    EV_REJECTED,
    EV_TRADE,
    EXPIRED,
    FILLED,
    FOK,
    GTC,
    IOC,
    LIMIT,
    MARKET,
    NEW,
    PARTIALLY_FILLED,
    REJECTED,
    SELL,
    OrderBook,
)

A, B = 10, 20  # two accounts


def limit(book, side, price, qty, tif=GTC, account=A, coid="", post_only=False):
    return book.new_order(account, side, LIMIT, tif, price, qty, coid, post_only, now_ns=1)


def market(book, side, qty, account=B, tif=IOC):
    return book.new_order(account, side, MARKET, tif, 0, qty, "", False, now_ns=1)


@dataclass
class Case:
    name: str
    resting: list[tuple[int, int, int]]  # (side, price, qty), placed in this order
    taker: tuple  # (type, side, price, qty, tif, post_only)
    fills: list[tuple[int, int]]  # (price, qty) in order
    state: int
    bids: list[tuple[int, int, int]]  # book after: (price, qty, count)
    asks: list[tuple[int, int, int]]


CASES = [
    Case("limit rests on empty book", [], (LIMIT, BUY, 100, 5, GTC, False), [], NEW,
         [(100, 5, 1)], []),
    Case("limit does not cross", [(SELL, 101, 5)], (LIMIT, BUY, 100, 5, GTC, False), [], NEW,
         [(100, 5, 1)], [(101, 5, 1)]),
    Case("full fill at maker price", [(SELL, 99, 5)], (LIMIT, BUY, 100, 5, GTC, False),
         [(99, 5)], FILLED, [], []),
    Case("partial fill then rest", [(SELL, 99, 3)], (LIMIT, BUY, 100, 5, GTC, False),
         [(99, 3)], PARTIALLY_FILLED, [(100, 2, 1)], []),
    Case("sweeps levels best first", [(SELL, 102, 2), (SELL, 100, 2), (SELL, 101, 2)],
         (LIMIT, BUY, 101, 5, GTC, False), [(100, 2), (101, 2)], PARTIALLY_FILLED,
         [(101, 1, 1)], [(102, 2, 1)]),
    Case("time priority within a level", [(SELL, 100, 2), (SELL, 100, 3)],
         (LIMIT, BUY, 100, 4, GTC, False), [(100, 2), (100, 2)], FILLED, [], [(100, 1, 1)]),
    Case("sell taker hits highest bid", [(BUY, 98, 1), (BUY, 99, 1)],
         (LIMIT, SELL, 98, 2, GTC, False), [(99, 1), (98, 1)], FILLED, [], []),
    Case("ioc fills and expires the rest", [(SELL, 100, 2)], (LIMIT, BUY, 100, 5, IOC, False),
         [(100, 2)], EXPIRED, [], []),
    Case("ioc with nothing to take expires", [], (LIMIT, BUY, 100, 5, IOC, False), [], EXPIRED,
         [], []),
    Case("fok fills completely", [(SELL, 100, 2), (SELL, 101, 3)],
         (LIMIT, BUY, 101, 5, FOK, False), [(100, 2), (101, 3)], FILLED, [], []),
    Case("fok not fillable: no fill at all", [(SELL, 100, 2), (SELL, 102, 3)],
         (LIMIT, BUY, 101, 5, FOK, False), [], EXPIRED, [], [(100, 2, 1), (102, 3, 1)]),
    Case("market sweeps everything", [(SELL, 100, 2), (SELL, 150, 2)],
         (MARKET, BUY, 0, 3, IOC, False), [(100, 2), (150, 1)], FILLED, [], [(150, 1, 1)]),
    Case("market remainder expires", [(BUY, 100, 2)], (MARKET, SELL, 0, 5, IOC, False),
         [(100, 2)], EXPIRED, [], []),
    Case("market into empty book expires", [], (MARKET, BUY, 0, 5, IOC, False), [], EXPIRED,
         [], []),
    Case("market fok not fillable", [(SELL, 100, 2)], (MARKET, BUY, 0, 5, FOK, False), [],
         EXPIRED, [], [(100, 2, 1)]),
    Case("post-only rests when passive", [(SELL, 101, 1)], (LIMIT, BUY, 100, 5, GTC, True), [],
         NEW, [(100, 5, 1)], [(101, 1, 1)]),
    Case("post-only rejected when it would take", [(SELL, 100, 1)],
         (LIMIT, BUY, 100, 5, GTC, True), [], REJECTED, [], [(100, 1, 1)]),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_matching_rules(case: Case) -> None:
    book = OrderBook(instrument_id=1)
    makers = [limit(book, side, price, qty, account=A).order for side, price, qty in case.resting]
    type_, side, price, qty, tif, post_only = case.taker
    out = book.new_order(B, side, type_, tif, price, qty, "", post_only, now_ns=2)
    assert out.error == ""
    assert [(f.price, f.quantity) for f in out.fills] == case.fills
    assert out.order.state == case.state
    assert out.order.filled == sum(q for _, q in case.fills)
    assert book.depth(BUY) == case.bids
    assert book.depth(SELL) == case.asks
    for f in out.fills:
        assert f.maker in makers and f.taker is out.order
    # the trade price is always the maker's price
    assert all(f.price == f.maker.price for f in out.fills)


def test_sequences_and_ids_are_gapless() -> None:
    book = OrderBook(instrument_id=3, last_sequence=41)
    m = limit(book, SELL, 100, 2).order
    t = limit(book, BUY, 100, 5, IOC, account=B)
    ch = book.drain_changes()
    assert (ch.first_sequence, ch.last_sequence) == (42, 45)
    assert [e[0] for e in ch.events] == [42, 43, 44, 45]
    assert [e[1] for e in ch.events] == [EV_ACCEPTED, EV_ACCEPTED, EV_TRADE, EV_EXPIRED]
    assert instrument_of(m.order_id) == 3 and sequence_of(m.order_id) == 42
    assert t.fills[0].trade_id == (3 << 44) | 44
    assert [tr[0] for tr in ch.trades] == [t.fills[0].trade_id]
    assert ch.asks == [(100, 0, 0)]
    assert sorted(o[0] for o in ch.orders) == sorted([m.order_id, t.order.order_id])
    # next batch continues the sequence
    limit(book, BUY, 90, 1)
    assert book.drain_changes().first_sequence == 46


def test_cancel() -> None:
    book = OrderBook(1)
    o = limit(book, BUY, 100, 5).order
    limit(book, BUY, 100, 1)
    assert book.cancel(B, o.order_id).error == ERR_ORDER_NOT_OPEN  # not B's order
    out = book.cancel(A, o.order_id)
    assert out.order.state == CANCELLED
    assert book.depth(BUY) == [(100, 1, 1)]
    assert book.cancel(A, o.order_id).error == ERR_ORDER_NOT_OPEN  # already cancelled
    ev = book.drain_changes().events
    assert ev[-1][1] == EV_CANCELLED and ev[-1][5] == 5


def test_cancel_partially_filled_removes_only_the_rest() -> None:
    book = OrderBook(1)
    o = limit(book, SELL, 100, 5).order
    market(book, BUY, 2)
    out = book.cancel(A, o.order_id)
    assert out.order.filled == 2 and out.order.state == CANCELLED
    assert book.depth(SELL) == []
    assert book.drain_changes().events[-1][5] == 3


def test_client_order_id_idempotent() -> None:
    book = OrderBook(1)
    first = limit(book, BUY, 100, 5, coid="c1")
    again = limit(book, BUY, 100, 5, coid="c1")
    assert again.duplicate and again.order is first.order
    assert book.depth(BUY) == [(100, 5, 1)]
    clash = limit(book, BUY, 101, 5, coid="c1")
    assert clash.error == ERR_DUPLICATE
    # another account may use the same id
    other = limit(book, BUY, 100, 5, coid="c1", account=B)
    assert not other.duplicate and other.order is not first.order
    # still deduplicated after the order closed
    book.cancel(A, first.order.order_id)
    assert limit(book, BUY, 100, 5, coid="c1").duplicate


def test_rejected_and_failed_commands() -> None:
    book = OrderBook(1)
    seq = book.sequence
    assert book.new_order(A, BUY, LIMIT, GTC, 0, 5).error  # no price
    assert book.new_order(A, BUY, LIMIT, GTC, 100, 0).error  # no quantity
    assert book.new_order(A, BUY, MARKET, IOC, 0, 5, post_only=True).error
    assert book.sequence == seq  # failures consume no sequence
    limit(book, SELL, 100, 1)
    r = limit(book, BUY, 100, 1, post_only=True)
    assert r.order.state == REJECTED and r.order.reason == "POST_ONLY_WOULD_TAKE"
    assert book.drain_changes().events[-1][1] == EV_REJECTED


def test_restore_rebuilds_same_book() -> None:
    book = OrderBook(1)
    for i, (side, price) in enumerate([(BUY, 100), (BUY, 100), (SELL, 105), (BUY, 99)]):
        limit(book, side, price, 3 + i, coid=f"c{i}")
    market(book, BUY, 2)
    resting = book.resting()
    copy = OrderBook(1, last_sequence=book.sequence)
    copy.restore(list(reversed(resting)))  # order of the input must not matter
    assert [o.order_id for o in copy.resting()] == [o.order_id for o in resting]
    assert copy.depth(BUY) == book.depth(BUY) and copy.depth(SELL) == book.depth(SELL)
    assert limit(copy, BUY, 100, 3, coid="c0").duplicate
