"""Property tests of the book's invariants on random order streams."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from matching_service.engine import (
    BUY,
    EV_ACCEPTED,
    EV_CANCELLED,
    EV_EXPIRED,
    EV_REJECTED,
    EV_TRADE,
    FOK,
    GTC,
    IOC,
    LIMIT,
    MARKET,
    SELL,
    OrderBook,
)

new_order = st.tuples(
    st.just("new"),
    st.integers(1, 4),  # account
    st.sampled_from([BUY, SELL]),
    st.sampled_from([LIMIT, LIMIT, LIMIT, MARKET]),
    st.sampled_from([GTC, GTC, IOC, FOK]),
    st.integers(95, 105),  # price
    st.integers(1, 10),  # quantity
    st.booleans(),  # post only
)
cancel = st.tuples(st.just("cancel"), st.integers(0, 200))
streams = st.lists(st.one_of(new_order, new_order, cancel), min_size=1, max_size=150)


def run(commands):
    book = OrderBook(instrument_id=1)
    placed = []  # every order, in creation order
    outcomes = []
    for cmd in commands:
        if cmd[0] == "new":
            _, acct, side, type_, tif, price, qty, post_only = cmd
            out = book.new_order(acct, side, type_, tif, price, qty, "",
                                 post_only and type_ == LIMIT)
            if out.order is not None:
                placed.append(out.order)
        else:
            if not placed:
                continue
            target = placed[cmd[1] % len(placed)]
            out = book.cancel(target.account_id, target.order_id)
        outcomes.append((book, out, book.best_bid(), book.best_ask()))
    return book, placed, outcomes


@settings(max_examples=300, deadline=None)
@given(streams)
def test_book_never_crossed(commands) -> None:
    _, _, outcomes = run(commands)
    for _, _, bid, ask in outcomes:
        assert bid is None or ask is None or bid < ask


@settings(max_examples=300, deadline=None)
@given(streams)
def test_quantity_conserved(commands) -> None:
    book, placed, _ = run(commands)
    events = book.drain_changes().events
    traded = {}
    removed = {}
    for _, kind, oid, other, _, qty, *_ in events:
        if kind == EV_TRADE:
            traded[oid] = traded.get(oid, 0) + qty
            traded[other] = traded.get(other, 0) + qty
        elif kind in (EV_CANCELLED, EV_EXPIRED, EV_REJECTED):
            removed[oid] = removed.get(oid, 0) + qty
    for o in placed:
        # filled + remaining + expired/cancelled/rejected == ordered
        assert o.filled == traded.get(o.order_id, 0)
        assert o.filled + o.remaining + removed.get(o.order_id, 0) == o.quantity
        assert o.filled <= o.quantity and o.remaining >= 0
    # the book holds exactly the open remainders
    book_total = sum(q for _, q, _ in book.depth(BUY)) + sum(q for _, q, _ in book.depth(SELL))
    assert book_total == sum(o.remaining for o in placed)


@settings(max_examples=300, deadline=None)
@given(streams)
def test_price_time_priority(commands) -> None:
    """Every fill takes the best-priced, then oldest, resting order of the other side."""
    book = OrderBook(instrument_id=1)
    placed = []
    for cmd in commands:
        if cmd[0] == "cancel":
            if placed:
                t = placed[cmd[1] % len(placed)]
                book.cancel(t.account_id, t.order_id)
            continue
        _, acct, side, type_, tif, price, qty, post_only = cmd
        # priority order of the opposite side before the command
        before = [o for o in book.resting() if o.side != side]
        before.sort(key=lambda o: ((o.price if side == BUY else -o.price), o.priority))
        open_before = {o.order_id: o.quantity - o.filled for o in before}
        out = book.new_order(acct, side, type_, tif, price, qty, "", post_only and type_ == LIMIT)
        if out.order is None:
            continue
        placed.append(out.order)
        # fills must consume `before` as a prefix, in order
        queue = list(before)
        for f in out.fills:
            while queue and open_before[queue[0].order_id] == 0:
                queue.pop(0)
            assert queue, "fill without a resting order"
            assert f.maker.order_id == queue[0].order_id
            assert f.price == queue[0].price
            if type_ == LIMIT:
                assert f.price <= price if side == BUY else f.price >= price
            open_before[queue[0].order_id] -= f.quantity
            assert open_before[queue[0].order_id] >= 0


@settings(max_examples=200, deadline=None)
@given(streams)
def test_sequence_gapless_and_ids_unique(commands) -> None:
    book, placed, _ = run(commands)
    events = book.drain_changes().events
    assert [e[0] for e in events] == list(range(1, len(events) + 1))
    assert len({o.order_id for o in placed}) == len(placed)
    accepted = {e[2] for e in events if e[1] in (EV_ACCEPTED, EV_REJECTED)}
    assert accepted == {o.order_id for o in placed}


@settings(max_examples=200, deadline=None)
@given(streams)
def test_restore_equals_live_book(commands) -> None:
    book, _, _ = run(commands)
    copy = OrderBook(1, last_sequence=book.sequence)
    copy.restore(book.resting())
    assert copy.depth(BUY) == book.depth(BUY)
    assert copy.depth(SELL) == book.depth(SELL)
    assert [o.order_id for o in copy.resting()] == [o.order_id for o in book.resting()]
