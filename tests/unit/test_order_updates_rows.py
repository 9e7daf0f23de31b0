"""The order updates of a batch (matching_service/updates.py), table-driven, and their
invariants under random command streams (hypothesis).

The book runs with money terms (a lot 100 base units, a tick times a lot 10 quote
units, 10 bps maker and 20 taker), so what an order holds after each update is checked
too: an open order holds what its open quantity can still spend, a closed one nothing.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from matching_service.engine import (
    BUY,
    CANCELLED,
    EV_ACCEPTED,
    EV_AMENDED,
    EV_CANCELLED,
    EV_EXPIRED,
    EV_REJECTED,
    EV_SELF_TRADE,
    EV_TIMED_OUT,
    EV_TRADE,
    EV_TRIGGERED,
    EXPIRED,
    FILLED,
    GTC,
    GTT,
    IOC,
    LIMIT,
    MARKET,
    NEW,
    PARTIALLY_FILLED,
    REJECTED,
    SELL,
    STP_CANCEL_BOTH,
    STP_CANCEL_INCOMING,
    STP_CANCEL_RESTING,
    STP_DECREMENT,
    STP_NONE,
    UNTRIGGERED,
    Changes,
    OrderBook,
    Terms,
)
from matching_service.updates import OrderUpdateRow, accounts, build, needs_before

TERMS = Terms(1, 2, lot_units=100, tick_lot_units=10, fee_account=99)
MAKER_BPS, TAKER_BPS = 10, 20
PROTECTION = 2000  # a market buy's protection price
A, B = 10, 20
TERMINAL = (FILLED, CANCELLED, EXPIRED, REJECTED)


class Desk:
    """A book with terms whose commands bring exactly the hold they need; ``batch()``
    drains its changes and builds their updates, as the commit does."""

    def __init__(self) -> None:
        self.book = OrderBook(1, terms=TERMS)
        self.ids: dict[str, int] = {}
        self.now = 1_000

    def new(self, label: str, account: int, side: int, quantity: int, price: int = 0,
            tif: int = GTC, post_only: bool = False, stp: int = STP_NONE, stop: int = 0,
            expire: int = 0) -> None:
        type_ = LIMIT if price else MARKET
        hold_price = price if side == BUY and price else PROTECTION if side == BUY else 0
        held = TERMS.need(side == BUY, quantity, hold_price, 0, MAKER_BPS, TAKER_BPS)
        out = self.book.new_order(account, side, type_, tif if price else IOC, price, quantity,
                                  label, post_only, self.now, held, hold_price, 0, MAKER_BPS,
                                  TAKER_BPS, stp, stop, expire)
        assert out.order is not None and not out.error, out.error_message
        self.ids[label] = out.order.order_id

    def expire(self, now: int) -> None:
        self.book.expire_due(now)

    def cancel(self, label: str) -> None:
        order = self.book.resting_order(self.ids[label]) or self.book.stops.get(self.ids[label])
        assert order is not None
        assert not self.book.cancel(order.account_id, order.order_id, self.now).error

    def amend(self, label: str, price: int = 0, quantity: int = 0) -> None:
        order = self.book.resting_order(self.ids[label])
        assert order is not None
        extra = max(0, TERMS.need(order.side == BUY, (quantity or order.quantity) - order.filled,
                                  price or order.price, 0, MAKER_BPS, TAKER_BPS) - order.held)
        out = self.book.amend(order.account_id, order.order_id, price, quantity, self.now,
                              extra)
        assert not out.error, out.error_message

    def batch(self, before: dict[int, tuple[int, int]] | None = None
              ) -> tuple[Changes, list[OrderUpdateRow]]:
        self.now += 1_000
        changes = self.book.drain_changes()
        return changes, build(changes, TERMS, before)


def held_for(update: OrderUpdateRow, side: int, order_type: int) -> int:
    """What an order holds in the state of ``update`` (docs/money.md)."""
    if update.state in TERMINAL:
        return 0
    lots = update.quantity - update.filled
    if side == SELL:
        return lots * TERMS.lot_units
    price = update.price if order_type == LIMIT else PROTECTION
    return TERMS.need(True, lots, price, 0, MAKER_BPS, TAKER_BPS)


def view(desk: Desk, updates: list[OrderUpdateRow]) -> list[tuple[Any, ...]]:
    names = {v: k for k, v in desk.ids.items()}
    return [(u.account_id, u.sequence, u.kind, names[u.order_id], u.state, u.quantity,
             u.filled) for u in updates]


# (name, setup commands in their own batch, commands of the batch checked, its updates:
# (account, sequence, kind, order, state, quantity, filled))
CASES: list[tuple[str, list[tuple], list[tuple], list[tuple[Any, ...]]]] = [
    ("accept rests", [], [("new", "a", A, BUY, 5, 1000)],
     [(A, 1, EV_ACCEPTED, "a", NEW, 5, 0)]),
    ("partial fills: maker then taker, each trade", [("new", "m", A, SELL, 10, 1000)],
     [("new", "t1", B, BUY, 3, 1000), ("new", "t2", B, BUY, 4, 1000)],
     [(B, 1, EV_ACCEPTED, "t1", NEW, 3, 0),
      (A, 1, EV_TRADE, "m", PARTIALLY_FILLED, 10, 3),
      (B, 2, EV_TRADE, "t1", FILLED, 3, 3),
      (B, 3, EV_ACCEPTED, "t2", NEW, 4, 0),
      (A, 2, EV_TRADE, "m", PARTIALLY_FILLED, 10, 7),
      (B, 4, EV_TRADE, "t2", FILLED, 4, 4)]),
    ("fill to the end across levels, the rest rests",
     [("new", "m1", A, SELL, 2, 1000), ("new", "m2", A, SELL, 3, 1001)],
     [("new", "t", B, BUY, 6, 1001)],
     [(B, 1, EV_ACCEPTED, "t", NEW, 6, 0),
      (A, 1, EV_TRADE, "m1", FILLED, 2, 2),
      (B, 2, EV_TRADE, "t", PARTIALLY_FILLED, 6, 2),
      (A, 2, EV_TRADE, "m2", FILLED, 3, 3),
      (B, 3, EV_TRADE, "t", PARTIALLY_FILLED, 6, 5)]),
    ("cancel", [("new", "a", A, BUY, 5, 1000)], [("cancel", "a")],
     [(A, 1, EV_CANCELLED, "a", CANCELLED, 5, 0)]),
    ("amend, then a fill at the new price",
     [("new", "a", A, BUY, 5, 1000)],
     [("amend", "a", 1002, 0), ("new", "s", B, SELL, 2, 1002)],
     [(A, 1, EV_AMENDED, "a", NEW, 5, 0),
      (B, 1, EV_ACCEPTED, "s", NEW, 2, 0),
      (A, 2, EV_TRADE, "a", PARTIALLY_FILLED, 5, 2),
      (B, 2, EV_TRADE, "s", FILLED, 2, 2)]),
    ("filled, then amended in the same batch (its price before the batch is read)",
     [("new", "a", A, BUY, 5, 1000)],
     [("new", "s", B, SELL, 2, 1000), ("amend", "a", 0, 4)],
     [(B, 1, EV_ACCEPTED, "s", NEW, 2, 0),
      (A, 1, EV_TRADE, "a", PARTIALLY_FILLED, 5, 2),
      (B, 2, EV_TRADE, "s", FILLED, 2, 2),
      (A, 2, EV_AMENDED, "a", PARTIALLY_FILLED, 4, 2)]),
    ("IOC remainder expires", [("new", "m", A, SELL, 2, 1000)],
     [("new", "t", B, BUY, 5, 1000, IOC)],
     [(B, 1, EV_ACCEPTED, "t", NEW, 5, 0),
      (A, 1, EV_TRADE, "m", FILLED, 2, 2),
      (B, 2, EV_TRADE, "t", PARTIALLY_FILLED, 5, 2),
      (B, 3, EV_EXPIRED, "t", EXPIRED, 5, 2)]),
    ("market order with nothing to take expires", [], [("new", "t", B, BUY, 5)],
     [(B, 1, EV_ACCEPTED, "t", NEW, 5, 0), (B, 2, EV_EXPIRED, "t", EXPIRED, 5, 0)]),
    ("post-only that would take is rejected", [("new", "m", A, SELL, 2, 1000)],
     [("new", "p", B, BUY, 1, 1000, GTC, True)],
     [(B, 1, EV_REJECTED, "p", REJECTED, 1, 0)]),
    ("a self-trade (no prevention) gives both updates to the account, maker first",
     [("new", "m", A, SELL, 2, 1000)], [("new", "t", A, BUY, 2, 1000)],
     [(A, 1, EV_ACCEPTED, "t", NEW, 2, 0),
      (A, 2, EV_TRADE, "m", FILLED, 2, 2),
      (A, 3, EV_TRADE, "t", FILLED, 2, 2)]),
    ("self-trade prevention cancels the resting order, the incoming one rests",
     [("new", "m", A, SELL, 2, 1000)],
     [("new", "t", A, BUY, 3, 1000, GTC, False, STP_CANCEL_RESTING)],
     [(A, 1, EV_ACCEPTED, "t", NEW, 3, 0),
      (A, 2, EV_SELF_TRADE, "m", CANCELLED, 2, 0)]),
    ("cancel incoming: the incoming order expires, the resting one stays",
     [("new", "m", A, SELL, 2, 1000)],
     [("new", "t", A, BUY, 3, 1000, GTC, False, STP_CANCEL_INCOMING)],
     [(A, 1, EV_ACCEPTED, "t", NEW, 3, 0),
      (A, 2, EV_SELF_TRADE, "t", EXPIRED, 3, 0)]),
    ("cancel both", [("new", "m", A, SELL, 2, 1000)],
     [("new", "t", A, BUY, 3, 1000, GTC, False, STP_CANCEL_BOTH)],
     [(A, 1, EV_ACCEPTED, "t", NEW, 3, 0),
      (A, 2, EV_SELF_TRADE, "m", CANCELLED, 2, 0),
      (A, 3, EV_SELF_TRADE, "t", EXPIRED, 3, 0)]),
    ("decrement: the bigger one goes on reduced, after a fill with another account",
     [("new", "m", A, SELL, 5, 1000), ("new", "o", B, SELL, 4, 1001)],
     [("new", "t", A, BUY, 7, 1001, GTC, False, STP_DECREMENT)],
     [(A, 1, EV_ACCEPTED, "t", NEW, 7, 0),
      (A, 2, EV_SELF_TRADE, "m", CANCELLED, 5, 0),
      (A, 3, EV_SELF_TRADE, "t", NEW, 2, 0),
      (B, 1, EV_TRADE, "o", PARTIALLY_FILLED, 4, 2),
      (A, 4, EV_TRADE, "t", FILLED, 2, 2)]),
    ("decrement a resting order traded earlier in the batch",
     [("new", "m", A, SELL, 6, 1000)],
     [("new", "x", B, BUY, 1, 1000),
      ("new", "t", A, BUY, 2, 1000, GTC, False, STP_DECREMENT)],
     [(B, 1, EV_ACCEPTED, "x", NEW, 1, 0),
      (A, 1, EV_TRADE, "m", PARTIALLY_FILLED, 6, 1),
      (B, 2, EV_TRADE, "x", FILLED, 1, 1),
      (A, 2, EV_ACCEPTED, "t", NEW, 2, 0),
      (A, 3, EV_SELF_TRADE, "m", PARTIALLY_FILLED, 4, 1),
      (A, 4, EV_SELF_TRADE, "t", EXPIRED, 2, 0)]),
    ("a stop fired by another's trade", [("new", "m", A, SELL, 3, 1001)],
     [("new", "s", B, BUY, 1, 1002, GTC, False, STP_NONE, 1001),
      ("new", "x", 30, BUY, 1, 1001)],
     [(B, 1, EV_ACCEPTED, "s", UNTRIGGERED, 1, 0),
      (30, 1, EV_ACCEPTED, "x", NEW, 1, 0),
      (A, 1, EV_TRADE, "m", PARTIALLY_FILLED, 3, 1),
      (30, 2, EV_TRADE, "x", FILLED, 1, 1),
      (B, 2, EV_TRIGGERED, "s", NEW, 1, 0),
      (A, 2, EV_TRADE, "m", PARTIALLY_FILLED, 3, 2),
      (B, 3, EV_TRADE, "s", FILLED, 1, 1)]),
    ("good-till-time expiry", [("new", "g", A, BUY, 2, 1000, GTT, False, STP_NONE, 0, 5_000)],
     [("expire", 10_000)],
     [(A, 1, EV_TIMED_OUT, "g", EXPIRED, 2, 0)]),
]


def run(desk: Desk, commands: list[tuple]) -> None:
    for command in commands:
        getattr(desk, command[0])(*command[1:])


@pytest.mark.parametrize("name,setup,commands,expected", CASES, ids=[c[0] for c in CASES])
def test_updates_of_a_batch(name, setup, commands, expected) -> None:
    desk = Desk()
    run(desk, setup)
    first, _ = desk.batch()
    rows = {o.order_id: (o.price, o.quantity) for o in first.orders}
    run(desk, commands)
    changes = desk.book.drain_changes()
    before = {oid: rows[oid] for oid in needs_before(1, changes)}
    updates = build(changes, TERMS, before)
    assert view(desk, updates) == expected
    # Every update's hold is what its state holds; each order's last is its row.
    final = {o.order_id: o for o in changes.orders}
    for u in updates:
        row = final[u.order_id]
        assert u.held == held_for(u, row.side, row.order_type), u
        assert u.journal_sequence in {e.sequence for e in changes.events}
    last = {u.order_id: u for u in updates}
    for oid, u in last.items():
        row = final[oid]
        assert (u.state, u.price, u.quantity, u.filled, u.filled_notional, u.reason,
                u.held) == (row.state, row.price, row.quantity, row.filled,
                            row.filled_notional, row.reason, row.held)
    keys, numbers, places = accounts(updates)
    assert keys == sorted(keys)
    assert dict(zip(keys, numbers, strict=True)) == {
        a: max(u.sequence for u in updates if u.account_id == a)
        for a in {u.account_id for u in updates}}
    assert [keys[p - 1] for p in places] == [u.account_id for u in updates]


def test_reasons_of_the_new_kinds() -> None:
    desk = Desk()
    desk.new("g", A, BUY, 2, 1000, GTT, expire=5_000)
    desk.new("m", A, SELL, 2, 1001)
    desk.batch()
    desk.expire(10_000)
    desk.new("t", A, BUY, 2, 1001, stp=STP_CANCEL_RESTING)
    _, updates = desk.batch()
    assert [(u.kind, u.reason) for u in updates] == [
        (EV_TIMED_OUT, "GOOD_TILL_TIME"), (EV_ACCEPTED, ""),
        (EV_SELF_TRADE, "SELF_TRADE_PREVENTED")]


def test_a_status_change_gives_no_update() -> None:
    desk = Desk()
    desk.book.set_status(2, 1)
    changes, updates = desk.batch()
    assert changes.events and updates == []


commands = st.lists(st.one_of(
    st.tuples(st.just("new"), st.sampled_from((A, B)), st.sampled_from((BUY, SELL)),
              st.integers(1, 6), st.sampled_from((0, 998, 999, 1000, 1001, 1002)),
              st.sampled_from((STP_NONE, STP_CANCEL_RESTING, STP_CANCEL_INCOMING,
                               STP_CANCEL_BOTH, STP_DECREMENT)),
              st.sampled_from((0, 0, 0, 999, 1001))),
    st.tuples(st.just("cancel"), st.integers(0, 40)),
    st.tuples(st.just("amend"), st.integers(0, 40), st.sampled_from((0, 999, 1001)),
              st.integers(0, 8)),
), min_size=1, max_size=40)


def play(script: list[tuple], batch_size: int) -> list[tuple[Any, ...]]:
    """The updates of ``script`` committed ``batch_size`` commands at a time, numbered per
    account across batches, with the orders by their place in the script."""
    desk = Desk()
    rows: dict[int, tuple[int, int]] = {}
    seq: dict[int, int] = {}
    out: list[tuple[Any, ...]] = []
    labels: list[str] = []

    def flush() -> None:
        changes = desk.book.drain_changes()
        before = {oid: rows[oid] for oid in needs_before(1, changes)}
        updates = build(changes, TERMS, before)
        final = {o.order_id: o for o in changes.orders}
        for u in updates:
            row = final[u.order_id]
            assert u.held == held_for(u, row.side, row.order_type), u
            seq[u.account_id] = seq.get(u.account_id, 0) + 1
            out.append((u.account_id, seq[u.account_id], u.kind, u.order_id, u.state,
                        u.price, u.quantity, u.filled, u.filled_notional, u.reason, u.held,
                        u.journal_sequence))
        rows.update((o.order_id, (o.price, o.quantity)) for o in changes.orders)

    for i, command in enumerate(script):
        if command[0] == "new":
            _, account, side, quantity, price, stp, stop = command
            label = f"o{i}"
            last = desk.book.last_price
            if stop and (last is not None and (last >= stop if side == BUY else last <= stop)):
                stop = 0  # it would trigger at once (STOP_WOULD_TRIGGER)
            desk.new(label, account, side, quantity, price, stp=stp, stop=stop)
            labels.append(label)
        elif labels:
            label = labels[command[1] % len(labels)]
            order = desk.book.resting_order(desk.ids[label])
            if command[0] == "cancel" and desk.book.stops.get(desk.ids[label]) is not None:
                desk.cancel(label)
            elif order is not None and command[0] == "cancel":
                desk.cancel(label)
            elif order is not None:
                _, _, price, quantity = command
                total = order.filled + quantity if quantity else 0
                if (price, total) != (0, 0) and (not total or total > order.filled):
                    desk.amend(label, price, total)
        if (i + 1) % batch_size == 0:
            flush()
    flush()
    return out


@settings(max_examples=1000, deadline=None)
@given(script=commands, batch_size=st.integers(2, 12))
def test_batching_does_not_change_the_updates(script, batch_size) -> None:
    """One command per commit or many: the same updates, in the same order, each with
    the order as it is right after its event."""
    assert play(script, batch_size) == play(script, 1)


@settings(max_examples=100, deadline=None)
@given(script=commands)
def test_every_order_event_has_its_update(script) -> None:
    desk = Desk()
    labels: list[str] = []
    for i, command in enumerate(script):
        if command[0] == "new":
            desk.new(f"o{i}", *command[1:5], stp=command[5])
            labels.append(f"o{i}")
    changes, updates = desk.batch()
    trades = sum(1 for e in changes.events if e.kind == EV_TRADE)
    others = sum(1 for e in changes.events if e.kind != EV_TRADE)
    assert len(updates) == 2 * trades + others
    filled: dict[int, int] = {}
    for u in updates:
        assert u.filled >= filled.get(u.order_id, 0)
        filled[u.order_id] = u.filled
    assert filled == {o.order_id: o.filled for o in changes.orders}
