"""Matching rules, table-driven, on the pure engine (no server)."""

from __future__ import annotations

import random
from dataclasses import dataclass

import pytest

from exchange_common.ids import instrument_of, sequence_of
from matching_service.engine import (
    BUCKET_BITS,
    BUY,
    CANCELLED,
    COMPACT_MIN_EMPTY,
    EMPTY,
    ERR_DUPLICATE,
    ERR_INVALID,
    ERR_ORDER_NOT_OPEN,
    ERR_POST_ONLY_WOULD_TAKE,
    EV_ACCEPTED,
    EV_AMENDED,
    EV_CANCELLED,
    EV_EXPIRED,
    EV_REJECTED,
    EV_TRADE,
    EXPIRED,
    FILLED,
    FOK,
    FRONT_MAX,
    GTC,
    IOC,
    LIMIT,
    MARKET,
    NEW,
    PARTIALLY_FILLED,
    RECENT_MAX,
    REFILL,
    REJECTED,
    SELL,
    Order,
    OrderBook,
    Side,
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
    by_id = {m.order_id: m for m in makers}
    for f in out.fills:
        assert f.maker_order_id in by_id and f.taker_order_id == out.order.order_id
        assert (f.maker_account_id, f.taker_account_id, f.taker_side) == (A, B, side)
    # the trade price is always the maker's price
    assert all(f.price == by_id[f.maker_order_id].price for f in out.fills)


def test_sequences_and_ids_are_gapless() -> None:
    book = OrderBook(instrument_id=3, last_sequence=41)
    m = limit(book, SELL, 100, 2).order
    t = limit(book, BUY, 100, 5, IOC, account=B)
    ch = book.drain_changes()
    assert (ch.first_sequence, ch.last_sequence) == (42, 45)
    assert [e.sequence for e in ch.events] == [42, 43, 44, 45]
    assert [e.kind for e in ch.events] == [EV_ACCEPTED, EV_ACCEPTED, EV_TRADE, EV_EXPIRED]
    assert instrument_of(m.order_id) == 3 and sequence_of(m.order_id) == 42
    assert t.fills[0].trade_id == (3 << 44) | 44
    assert ch.trades == list(t.fills)
    assert ch.asks == [(100, 0, 0)]
    assert sorted(o.order_id for o in ch.orders) == sorted([m.order_id, t.order.order_id])
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
    assert ev[-1].kind == EV_CANCELLED and ev[-1].quantity == 5


def test_cancel_partially_filled_removes_only_the_rest() -> None:
    book = OrderBook(1)
    o = limit(book, SELL, 100, 5).order
    market(book, BUY, 2)
    out = book.cancel(A, o.order_id)
    assert out.order.filled == 2 and out.order.state == CANCELLED
    assert book.depth(SELL) == []
    assert book.drain_changes().events[-1].quantity == 3


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
    assert book.drain_changes().events[-1].kind == EV_REJECTED


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
    for side in (copy.bids, copy.asks):
        assert side.front and side.front[0] == side.best
        assert list(side.keys_in_order()) == sorted(side.levels)
    # the restored ladder is taken from, best level first (the orders are the same
    # objects in both books: only the copy trades)
    swept = [(f.price, f.quantity) for f in market(copy, SELL, 100).fills]
    assert swept == [(100, 3), (100, 4), (99, 6)]
    assert copy.bids.best == EMPTY and not copy.bids.front


# -- amend -------------------------------------------------------------------


@dataclass
class AmendCase:
    name: str
    # (side, price, qty, account, post_only), placed in this order; the first
    # order placed by account A is the one amended
    resting: list[tuple]
    amend: tuple[int, int]  # (price, quantity) as sent: 0 keeps
    error: str  # "" when accepted
    fills: list[tuple[int, int]]  # (price, qty) the amended order traded
    after: tuple[int, int, int, int]  # the order after: (price, quantity, filled, state)
    priority: str  # "kept", "lost" (= the AMENDED event's sequence) or "-" (unchanged)
    bids: list[tuple[int, int, int]]
    asks: list[tuple[int, int, int]]
    queue: list[int] | None = None  # at the order's level: placement indexes in time order


AMEND_CASES = [
    AmendCase("lower quantity keeps priority",
              [(BUY, 100, 5, A, False), (BUY, 100, 3, B, False)], (0, 2), "", [],
              (100, 2, 0, NEW), "kept", [(100, 5, 2)], [], queue=[0, 1]),
    AmendCase("lower quantity with the same price given keeps priority",
              [(BUY, 100, 5, A, False), (BUY, 100, 3, B, False)], (100, 4), "", [],
              (100, 4, 0, NEW), "kept", [(100, 7, 2)], [], queue=[0, 1]),
    AmendCase("larger quantity loses priority",
              [(BUY, 100, 5, A, False), (BUY, 100, 3, B, False)], (0, 8), "", [],
              (100, 8, 0, NEW), "lost", [(100, 11, 2)], [], queue=[1, 0]),
    AmendCase("new price loses priority",
              [(BUY, 100, 5, A, False), (BUY, 100, 3, B, False)], (99, 0), "", [],
              (99, 5, 0, NEW), "lost", [(100, 3, 1), (99, 5, 1)], []),
    AmendCase("new price joins the back of an existing level",
              [(BUY, 100, 5, A, False), (BUY, 101, 3, B, False)], (101, 0), "", [],
              (101, 5, 0, NEW), "lost", [(101, 8, 2)], [], queue=[1, 0]),
    AmendCase("new price and lower quantity loses priority",
              [(SELL, 105, 5, A, False), (SELL, 104, 1, B, False)], (104, 2), "", [],
              (104, 2, 0, NEW), "lost", [], [(104, 3, 2)], queue=[1, 0]),
    AmendCase("nothing to change: accepted, nothing happens",
              [(BUY, 100, 5, A, False), (BUY, 100, 3, B, False)], (100, 5), "", [],
              (100, 5, 0, NEW), "-", [(100, 8, 2)], [], queue=[0, 1]),
    AmendCase("crossing price trades first as a taker, the rest rests",
              [(BUY, 100, 5, A, False), (SELL, 101, 2, B, False), (SELL, 102, 9, B, False)],
              (101, 0), "", [(101, 2)], (101, 5, 2, PARTIALLY_FILLED), "lost",
              [(101, 3, 1)], [(102, 9, 1)]),
    AmendCase("crossing price sweeps levels at the makers' prices",
              [(SELL, 110, 6, A, False), (BUY, 104, 2, B, False), (BUY, 103, 3, B, False),
               (BUY, 101, 1, B, False)], (103, 0), "", [(104, 2), (103, 3)],
              (103, 6, 5, PARTIALLY_FILLED), "lost", [(101, 1, 1)], [(103, 1, 1)]),
    AmendCase("crossing price fills the order completely",
              [(BUY, 100, 4, A, False), (SELL, 101, 9, B, False)], (101, 0), "", [(101, 4)],
              (101, 4, 4, FILLED), "lost", [], [(101, 5, 1)]),
    AmendCase("larger quantity of a partially filled order keeps what filled",
              [(SELL, 100, 2, B, False), (BUY, 100, 5, A, False), (BUY, 100, 1, B, False)],
              (0, 9), "", [], (100, 9, 2, PARTIALLY_FILLED), "lost", [(100, 8, 2)], [],
              queue=[2, 1]),
    AmendCase("quantity down to just above what filled",
              [(SELL, 100, 2, B, False), (BUY, 100, 5, A, False)], (0, 3), "", [],
              (100, 3, 2, PARTIALLY_FILLED), "kept", [(100, 1, 1)], []),
    AmendCase("quantity down to what filled is refused",
              [(SELL, 100, 2, B, False), (BUY, 100, 5, A, False)], (0, 2), ERR_INVALID, [],
              (100, 5, 2, PARTIALLY_FILLED), "-", [(100, 3, 1)], []),
    AmendCase("quantity below what filled is refused",
              [(SELL, 100, 2, B, False), (BUY, 100, 5, A, False)], (0, 1), ERR_INVALID, [],
              (100, 5, 2, PARTIALLY_FILLED), "-", [(100, 3, 1)], []),
    AmendCase("negative price is refused",
              [(BUY, 100, 5, A, False)], (-1, 0), ERR_INVALID, [], (100, 5, 0, NEW), "-",
              [(100, 5, 1)], []),
    AmendCase("negative quantity is refused",
              [(BUY, 100, 5, A, False)], (0, -3), ERR_INVALID, [], (100, 5, 0, NEW), "-",
              [(100, 5, 1)], []),
    AmendCase("post-only that would take is refused, unchanged",
              [(BUY, 100, 5, A, True), (BUY, 100, 1, B, False), (SELL, 101, 2, B, False)],
              (101, 0), ERR_POST_ONLY_WOULD_TAKE, [], (100, 5, 0, NEW), "-",
              [(100, 6, 2)], [(101, 2, 1)], queue=[0, 1]),
    AmendCase("post-only may move while it stays passive",
              [(BUY, 100, 5, A, True), (SELL, 102, 2, B, False)], (101, 0), "", [],
              (101, 5, 0, NEW), "lost", [(101, 5, 1)], [(102, 2, 1)]),
    AmendCase("sell side: a lower crossing price takes the best bid first",
              [(SELL, 105, 4, A, False), (BUY, 103, 1, B, False), (BUY, 104, 2, B, False)],
              (103, 0), "", [(104, 2), (103, 1)], (103, 4, 3, PARTIALLY_FILLED), "lost",
              [], [(103, 1, 1)]),
]


def place(book: OrderBook, resting: list[tuple]) -> list:
    return [book.new_order(account, side, LIMIT, GTC, price, qty, "", post_only,
                           now_ns=1).order for side, price, qty, account, post_only in resting]


@pytest.mark.parametrize("case", AMEND_CASES, ids=[c.name for c in AMEND_CASES])
def test_amend_rules(case: AmendCase) -> None:
    book = OrderBook(instrument_id=1)
    placed = place(book, case.resting)
    order = next(o for o, r in zip(placed, case.resting, strict=True) if r[3] == A)
    priority_before = order.priority
    book.drain_changes()
    seq_before = book.sequence
    out = book.amend(A, order.order_id, *case.amend, now_ns=7)
    ch = book.drain_changes()

    assert out.error == case.error
    assert out.order is order  # the order concerned, even when refused
    assert [(f.price, f.quantity) for f in out.fills] == case.fills
    assert all(f.taker_order_id == order.order_id != f.maker_order_id for f in out.fills)
    assert (order.price, order.quantity, order.filled, order.state) == case.after
    assert book.depth(BUY) == case.bids
    assert book.depth(SELL) == case.asks
    if case.queue is not None:
        level = [o.order_id for o in book.resting() if o.price == order.price]
        assert level == [placed[i].order_id for i in case.queue]

    if case.error or case.priority == "-":
        # refused or a no-op: no event, no sequence, nothing to commit
        assert book.sequence == seq_before and ch.events == [] and ch.orders == []
        assert order.priority == priority_before
        return
    kinds = [e.kind for e in ch.events]
    assert kinds == [EV_AMENDED] + [EV_TRADE] * len(case.fills)
    amended = ch.events[0]
    assert amended.sequence == seq_before + 1 and amended.order_id == order.order_id
    assert (amended.price, amended.quantity) == (order.price, order.quantity)  # the new values
    assert order.priority == (priority_before if case.priority == "kept" else amended.sequence)
    assert order.last_sequence == ch.events[-1].sequence and order.updated_ns == 7
    assert order.order_id in [row.order_id for row in ch.orders]
    assert [e.sequence for e in ch.events] == list(range(seq_before + 1, book.sequence + 1))


def test_amend_needs_an_open_order_of_the_account() -> None:
    book = OrderBook(1)
    o = limit(book, BUY, 100, 5).order
    assert book.amend(B, o.order_id, 0, 3).error == ERR_ORDER_NOT_OPEN  # not B's order
    assert book.amend(A, o.order_id + 1000, 0, 3).error == ERR_ORDER_NOT_OPEN  # unknown
    book.cancel(A, o.order_id)
    out = book.amend(A, o.order_id, 0, 3)
    assert out.error == ERR_ORDER_NOT_OPEN and out.order is None
    filled = limit(book, SELL, 100, 2).order
    market(book, BUY, 2)
    assert book.amend(A, filled.order_id, 0, 5).error == ERR_ORDER_NOT_OPEN


def test_amend_touches_the_levels_it_changes() -> None:
    """Market data hears about the level the order left and the one it joined."""
    book = OrderBook(1)
    o = limit(book, BUY, 100, 5).order
    limit(book, BUY, 100, 1, account=B)
    limit(book, SELL, 103, 2, account=B)
    book.drain_changes()
    book.amend(A, o.order_id, 0, 4)  # in place
    assert book.drain_changes().bids == [(100, 5, 2)]
    book.amend(A, o.order_id, 101, 0)  # moves
    ch = book.drain_changes()
    assert ch.bids == [(100, 1, 1), (101, 4, 1)] and ch.asks == []
    book.amend(A, o.order_id, 103, 6)  # crosses: takes 2 at 103, rests 4 at 103
    ch = book.drain_changes()
    assert ch.bids == [(101, 0, 0), (103, 4, 1)] and ch.asks == [(103, 0, 0)]
    assert [(t.price, t.quantity) for t in ch.trades] == [(103, 2)]
    assert book.best_bid() == 103 and book.best_ask() is None


def test_amend_that_fills_closes_the_client_order_id() -> None:
    book = OrderBook(1)
    o = limit(book, BUY, 100, 2, coid="x").order
    limit(book, SELL, 101, 5, account=B)
    out = book.amend(A, o.order_id, 101, 0)
    assert out.order.state == FILLED and ("x" not in {k[1] for k in book.open_client_ids})
    # still remembered, with its contents as amended: a create with the original
    # contents is a clash (the order service finds the order by its id)
    again = limit(book, BUY, 101, 2, coid="x")
    assert again.duplicate and again.order is o
    clash = limit(book, BUY, 100, 2, coid="x")
    assert clash.error == ERR_DUPLICATE and clash.order is o
    assert book.amend(A, o.order_id, 0, 3).error == ERR_ORDER_NOT_OPEN


def test_amended_book_restores_in_the_same_priority() -> None:
    book = OrderBook(1)
    first = limit(book, BUY, 100, 5).order
    limit(book, BUY, 100, 3, account=B)
    book.amend(A, first.order_id, 0, 9)  # to the back
    copy = OrderBook(1, last_sequence=book.sequence)
    copy.restore(list(reversed(book.resting())))
    assert [o.order_id for o in copy.resting()] == [o.order_id for o in book.resting()]
    assert copy.resting()[-1] is first


# -- the price ladder ----------------------------------------------------------


def check_front(side: Side) -> None:
    """The front is sorted, holds the best key, and every ladder key is behind it."""
    front = side.front
    assert front == sorted(front) and len(set(front)) == len(front)
    assert side.best == (front[0] if front else EMPTY)
    assert len(front) <= max(FRONT_MAX + 1, 1 << BUCKET_BITS)
    ladder = [key for keys in side.buckets.values() for key in keys]
    if ladder:
        assert front and max(front) < min(ladder)


@pytest.mark.parametrize("spread", [50, 5_000, 3_000_000], ids=["one-bucket", "some", "many"])
def test_price_ladder_keeps_keys_in_order(spread: int) -> None:
    """Side's front + buckets + heap against a plain sorted list, through many levels
    appearing and disappearing (the best one and others), keys moving from the front
    to the ladder and back, empty buckets and compactions."""
    rng = random.Random(spread)
    side = Side(1)
    compactions = 0
    marker = Order(1, 1, "", SELL, LIMIT, GTC, False, 1, 1, 0)
    live: set[int] = set()
    for step in range(6_000):
        if live and rng.random() < (0.3 if step < 3_000 else 0.7):
            key = min(live) if rng.random() < 0.4 else rng.choice(sorted(live))
            live.discard(key)
            empty_before = side.empty
            side.remove_level(key)
            # a compaction drops every emptied bucket at once (Side.compact)
            compactions += (empty_before >= COMPACT_MIN_EMPTY and side.empty == 0
                            and all(side.buckets.values()))
        else:
            key = rng.randrange(1, spread)
            if key in live:
                continue
            live.add(key)
            side.add_level(key, marker)
        assert side.best == (min(live) if live else EMPTY)
        if step % 97 == 0 or not live:
            check_front(side)
            assert list(side.keys_in_order()) == sorted(live)
            assert len(side) == len(live) == len(side.levels)
            # a level is found by its key, in the front (bisect) or the ladder (far)
            assert all(side.get(key) is marker for key in live)
            assert side.get(spread + 1) is None and side.get(0) is None
            assert sorted(side.far) == sorted(live)[len(side.front):]
            assert side.empty == sum(1 for keys in side.buckets.values() if not keys)
            assert side.empty <= max(COMPACT_MIN_EMPTY, len(side.buckets) // 2)
            assert sorted(side.heap) == sorted(side.buckets)
    assert (compactions > 0) == (spread == 3_000_000)
    while live:
        key = min(live)
        live.discard(key)
        side.remove_level(key)
    assert side.best == EMPTY and not side.heap and not side.buckets and side.empty == 0
    assert not side.front


@pytest.mark.parametrize("spread", [300, 40_000, 5_000_000], ids=["dense", "buckets", "wide"])
def test_deep_book_matches_in_price_time_priority(spread: int) -> None:
    """Many more levels than the front holds (FRONT_MAX): resting orders placed,
    cancelled and amended anywhere in a deep book, then swept by market orders, fill
    in price-time priority (against a plain sorted list of the open orders)."""
    rng = random.Random(spread)
    book = OrderBook(1)
    mid = 10 * spread
    open_: dict[int, tuple[int, int, int]] = {}  # order id -> (side, price, remaining)
    for step in range(3_000):
        r = rng.random()
        if open_ and r < 0.15:
            oid = rng.choice(sorted(open_))
            assert not book.cancel(A, oid, now_ns=1).error
            del open_[oid]
        elif open_ and r < 0.25:
            oid = rng.choice(sorted(open_))
            side, price, _ = open_[oid]
            new_price = price + rng.randrange(-spread // 10 - 1, spread // 10 + 2)
            new_price = min(mid - 1, new_price) if side == BUY else max(mid + 1, new_price)
            new_qty = rng.randint(1, 9)
            out = book.amend(A, oid, new_price, new_qty, now_ns=1)
            assert not out.error and not out.fills
            open_[oid] = (side, new_price, new_qty)
        else:
            side = rng.choice((BUY, SELL))
            price = mid - rng.randint(1, spread) if side == BUY else mid + rng.randint(1, spread)
            qty = rng.randint(1, 9)
            out = limit(book, side, price, qty)
            assert not out.fills
            open_[out.order.order_id] = (side, price, qty)
        if step % 250 == 0:
            book.drain_changes()
            for side_book in (book.bids, book.asks):
                check_front(side_book)
                assert list(side_book.keys_in_order()) == sorted(side_book.levels)
    for side, taker in ((BUY, SELL), (SELL, BUY)):
        # best price first (highest bid, lowest ask), then time priority (the last
        # placement or priority-losing amendment; order ids follow sequence)
        expect = sorted(((price if side == SELL else -price), book.orders[oid].priority, oid)
                        for oid, (s, price, _) in open_.items() if s == side)
        assert book.best_bid() if side == BUY else book.best_ask()
        got: list[int] = []
        while book.best_bid() if side == BUY else book.best_ask():
            got.extend(f.maker_order_id for f in market(book, taker, rng.randint(1, 40)).fills
                       if book.resting_order(f.maker_order_id) is None)
        assert got == [oid for _, _, oid in expect]
        check_front(book.bids if side == BUY else book.asks)


def test_resting_orders_age_from_recent_to_older() -> None:
    """More resting orders than RECENT_MAX: the older ones move from ``recent`` to
    ``older`` and stay found by id (cancel, amend) and by matching."""
    book = OrderBook(1)
    ids = [limit(book, BUY, 1_000 + i % 500, 1).order.order_id
           for i in range(RECENT_MAX + 300)]
    assert len(book.recent) + len(book.older) == len(ids) == len(book.orders) == book.order_count
    assert book.older and len(book.recent) <= RECENT_MAX
    first, second, last = ids[0], ids[1], ids[-1]
    assert first in book.older and last in book.recent
    assert book.resting_order(first).order_id == first
    assert not book.cancel(A, first, now_ns=1).error
    assert book.resting_order(first) is None and first not in book.orders
    assert book.cancel(A, first, now_ns=1).error == ERR_ORDER_NOT_OPEN
    assert not book.amend(A, second, 1_600, 0, now_ns=1).error  # to the top of the book
    assert not book.cancel(A, last, now_ns=1).error
    fills = market(book, SELL, len(ids)).fills
    assert fills[0].maker_order_id == second
    assert sorted(f.maker_order_id for f in fills) == sorted(set(ids) - {first, last})
    assert not book.orders and not book.recent and not book.older and book.order_count == 0
    assert book.best_bid() is None


def test_refill_takes_a_few_keys_of_the_best_bucket() -> None:
    """An emptied front gets the REFILL best keys of the ladder's best bucket; the
    rest of that bucket stays in the ladder, found and taken in order."""
    side = Side(1)
    marker = Order(1, 1, "", SELL, LIMIT, GTC, False, 1, 1, 0)
    keys = list(range(1, FRONT_MAX + REFILL + 10))
    for key in keys:
        side.add_level(key, marker)
    for key in keys[:FRONT_MAX]:
        side.remove_level(key)
    assert side.front == keys[FRONT_MAX:FRONT_MAX + REFILL]
    assert len(side.front_levels) == REFILL and side.best == keys[FRONT_MAX]
    assert sorted(side.far) == keys[FRONT_MAX + REFILL:]
    assert all(side.get(key) is marker for key in keys[FRONT_MAX:])
    assert list(side.keys_in_order()) == keys[FRONT_MAX:]
    for key in keys[FRONT_MAX:]:
        assert side.best == key
        side.remove_level(key)
    assert side.best == EMPTY and not side.front and not side.far and not side.buckets
