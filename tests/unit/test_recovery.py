"""Snapshots and journal replay rebuild exactly the live book."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from matching_service.engine import (
    BUY,
    CANCEL_ONLY,
    EV_AMENDED,
    EV_TRADE,
    GTC,
    HALTED,
    IOC,
    LIMIT,
    MARKET,
    SELL,
    TRADING,
    JournalEvent,
    OrderBook,
    OrderRow,
)
from matching_service.recovery import (
    ReplayMismatch,
    decode_snapshot,
    encode_snapshot,
    replay,
)
from matching_service.rows import fields

commands = st.lists(st.tuples(
    st.sampled_from(["limit", "limit", "limit", "market", "cancel", "amend", "status"]),
    st.integers(1, 3), st.sampled_from([BUY, SELL]), st.integers(95, 105), st.integers(1, 9),
    st.integers(0, 999), st.booleans()), min_size=1, max_size=120)


def run(book: OrderBook, cmds, journal: list, t0: int = 1000) -> None:
    for i, (what, acct, side, price, qty, pick, coid) in enumerate(cmds):
        now = t0 + i * 1000
        if what == "status":
            book.set_status((TRADING, CANCEL_ONLY, HALTED)[pick % 3], now)
        elif what == "cancel":
            if book.orders:
                ids = sorted(book.orders)
                target = book.orders[ids[pick % len(ids)]]
                book.cancel(target.account_id, target.order_id, now)
        elif what == "amend":
            # a new price (which may cross), a new total, or both; refusals are fine
            if book.orders:
                ids = sorted(book.orders)
                target = book.orders[ids[pick % len(ids)]]
                book.amend(target.account_id, target.order_id, price if pick % 3 else 0,
                           qty if pick % 2 else 0, now)
        else:
            type_ = LIMIT if what == "limit" else MARKET
            book.new_order(acct, side, type_, GTC if type_ == LIMIT else IOC, price, qty,
                           f"c{pick % 5}" if coid else "", False, now)
        journal.extend(book.drain_changes().events)


def altered(event: JournalEvent, **changes) -> JournalEvent:
    """A copy of ``event`` with some fields changed."""
    return JournalEvent(**{f: changes.get(f, getattr(event, f)) for f in fields(JournalEvent)})


def same_book(a: OrderBook, b: OrderBook) -> None:
    assert a.sequence == b.sequence
    key = [(o.order_id, o.price, o.quantity, o.filled, o.priority, o.state, o.client_order_id)
           for o in a.resting()]
    assert key == [(o.order_id, o.price, o.quantity, o.filled, o.priority, o.state,
                    o.client_order_id) for o in b.resting()]
    assert a.depth(BUY) == b.depth(BUY) and a.depth(SELL) == b.depth(SELL)
    assert a.open_client_ids.keys() == b.open_client_ids.keys()
    assert a.open_by_account == b.open_by_account
    assert a.open_by_account == {acct: n for acct in {o.account_id for o in a.resting()}
                                 if (n := sum(o.account_id == acct for o in a.resting()))}
    assert a.status == b.status
    assert a.last_price == b.last_price


@settings(max_examples=200, deadline=None)
@given(commands, commands)
def test_snapshot_plus_journal_equals_live_book(first, second) -> None:
    live = OrderBook(7)
    journal: list = []
    run(live, first, journal)
    snapshot = encode_snapshot(live)
    cut = len(journal)
    run(live, second, journal, t0=10**9)

    from_scratch = OrderBook(7)
    replay(from_scratch, journal)
    same_book(from_scratch, live)

    seq, orders, status = decode_snapshot(snapshot)
    assert seq == cut
    from_snapshot = OrderBook(7, last_sequence=seq)
    from_snapshot.status = status
    from_snapshot.restore(orders)
    # The store reads the last trade's price from the trades table.
    from_snapshot.last_price = next(
        (e.price for e in reversed(journal[:cut]) if e.kind == EV_TRADE), None)
    replay(from_snapshot, journal[cut:])
    same_book(from_snapshot, live)


def test_replay_refuses_a_tampered_journal() -> None:
    book = OrderBook(1)
    journal: list = []
    run(book, [("limit", 1, SELL, 100, 5, 0, False), ("limit", 2, BUY, 100, 3, 0, False)],
        journal)
    trade = next(i for i, e in enumerate(journal) if e.kind == EV_TRADE)
    # a trade quantity the engine would not produce, or any other field changed
    for field, value in (("quantity", 4), ("other_order_id", 12345), ("client_order_id", "x"),
                         ("created_ns", 999)):
        forged = list(journal)
        forged[trade] = altered(journal[trade], **{field: value})
        with pytest.raises(ReplayMismatch):
            replay(OrderBook(1), forged)
    replay(OrderBook(1), journal)  # the journal as written replays
    with pytest.raises(ReplayMismatch):
        replay(OrderBook(1), journal[1:])  # a missing event


def test_replay_reexecutes_amendments() -> None:
    book = OrderBook(1)
    journal: list = []
    run(book, [("limit", 1, SELL, 103, 2, 0, False), ("limit", 2, BUY, 100, 5, 0, False),
               ("limit", 2, BUY, 100, 1, 0, False)], journal)
    bid = min(o for o in book.orders.values() if o.quantity == 5)
    book.amend(2, bid.order_id, 0, 7, 5000)  # to the back of its level
    book.amend(2, bid.order_id, 103, 0, 6000)  # crosses: trades 2 at 103
    journal.extend(book.drain_changes().events)
    assert [e.kind for e in journal[-3:]] == [EV_AMENDED, EV_AMENDED, EV_TRADE]
    rebuilt = OrderBook(1)
    assert replay(rebuilt, journal) == len(journal)
    same_book(rebuilt, book)

    # an amendment of an order that is not open cannot be re-executed
    amended = next(i for i, e in enumerate(journal) if e.kind == EV_AMENDED)
    forged = list(journal)
    forged[amended] = altered(journal[amended], order_id=journal[amended].order_id + 1000)
    with pytest.raises(ReplayMismatch):
        replay(OrderBook(1), forged)


def test_a_snapshot_keeps_every_field_of_the_resting_orders() -> None:
    """The snapshot's BookOrder conversion is generated from OrderRow's fields: every
    one of them comes back, except those a resting order never sets."""
    from matching_service.recovery import NOT_IN_SNAPSHOTS, SNAPSHOT_FIELDS

    book = OrderBook(2)
    run(book, [("limit", 1, SELL, 101, 9, 0, True), ("limit", 2, SELL, 102, 4, 1, False),
               ("limit", 3, BUY, 101, 5, 2, True), ("limit", 3, BUY, 99, 7, 3, False)], [])
    resting = book.resting()
    assert any(o.filled and o.client_order_id for o in resting)
    assert [f for f in fields(OrderRow) if f not in NOT_IN_SNAPSHOTS] == list(SNAPSHOT_FIELDS)
    assert all(getattr(o, f) == v for o in resting for f, v in NOT_IN_SNAPSHOTS.items())
    _, decoded, _ = decode_snapshot(encode_snapshot(book))

    def row(o):
        return tuple(getattr(o, f) for f in fields(OrderRow))

    assert [row(o) for o in decoded] == [row(o) for o in resting]


def test_a_snapshot_keeps_the_stops_expiries_and_self_trade_prevention() -> None:
    """Issue 14's fields come back from a snapshot, the untriggered stops with them, and
    GetBook lists the stops apart from the book."""
    from matching_service.engine import GTT, STP_DECREMENT, UNTRIGGERED
    from matching_service.recovery import book_response

    book = OrderBook(2)
    book.new_order(1, SELL, LIMIT, GTC, 100, 1, now_ns=1)
    book.new_order(2, BUY, LIMIT, IOC, 100, 1, now_ns=2)  # last price 100
    gtt = book.new_order(1, BUY, LIMIT, GTT, 99, 3, "g", now_ns=3,
                         self_trade_prevention=STP_DECREMENT, expire_ns=10**18).order
    stop = book.new_order(2, SELL, LIMIT, GTT, 95, 2, "s", now_ns=4, stop_price=96,
                          expire_ns=10**18 + 1).order
    assert gtt is not None and stop is not None and stop.state == UNTRIGGERED
    _, decoded, _ = decode_snapshot(encode_snapshot(book))

    def row(o):
        return tuple(getattr(o, f) for f in fields(OrderRow))

    assert [row(o) for o in decoded] == [row(gtt), row(stop)]
    copy = OrderBook(2, last_sequence=book.sequence)
    copy.restore(decoded)
    assert copy.untriggered()[0].order_id == stop.order_id
    assert copy.next_expiry() == 10**18 and copy.open_by_account == book.open_by_account
    response = book_response(book, 1)
    assert [o.order_id for o in response.bids] == [gtt.order_id] and not response.asks
    assert [(o.order_id, o.stop_price, o.expire_time_unix_nanos, o.state)
            for o in response.stops] == [(stop.order_id, 96, 10**18 + 1, UNTRIGGERED)]
    assert response.bids[0].self_trade_prevention == STP_DECREMENT
