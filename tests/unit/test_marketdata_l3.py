"""The L3 book: each order's change becomes ADD, CHANGE, REMOVE (or REMOVE then ADD), and
the book aggregated per level is the L2 book of the same orders."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from marketdata_service.l3 import BUY, SELL, Kind, L3Book, L3Order

A = L3Order(1, BUY, 100, 5, 1)
B = L3Order(2, BUY, 100, 3, 2)
C = L3Order(3, SELL, 101, 4, 3)


@pytest.mark.parametrize(("name", "changes", "expected", "bids"), [
    ("a new order is added at the back", [L3Order(4, BUY, 100, 1, 9)],
     [(Kind.ADD, 4)], [1, 2, 4]),
    ("a fill changes the quantity in place", [A._replace(quantity=2)],
     [(Kind.CHANGE, 1)], [1, 2]),
    ("quantity 0 removes", [A._replace(quantity=0)], [(Kind.REMOVE, 1)], [2]),
    ("a new priority is a requeue", [A._replace(priority=7, quantity=6)],
     [(Kind.REMOVE, 1), (Kind.ADD, 1)], [2, 1]),
    ("a new price is a requeue", [A._replace(price=99, priority=8)],
     [(Kind.REMOVE, 1), (Kind.ADD, 1)], [2, 1]),
    ("removing an unknown order changes nothing", [L3Order(42, BUY, 100, 0, 42)], [], [1, 2]),
    ("an unchanged order changes nothing", [A], [], [1, 2]),
])
def test_apply(name: str, changes: list[L3Order], expected: list[tuple[Kind, int]],
               bids: list[int]) -> None:
    book = L3Book([C, B, A])
    out = book.apply(changes)
    assert [(c.kind, c.order.order_id) for c in out] == expected, name
    assert [o.order_id for o in book.side_orders(BUY)] == bids, name
    assert [o.order_id for o in book.side_orders(SELL)] == [3]


def test_levels_best_first_in_time_priority() -> None:
    book = L3Book([L3Order(5, BUY, 99, 1, 5), B, A, L3Order(6, SELL, 102, 1, 6), C])
    assert [o.order_id for o in book.side_orders(BUY)] == [1, 2, 5]
    assert [o.order_id for o in book.side_orders(SELL)] == [3, 6]
    assert book.aggregated(BUY) == [(100, 8, 2), (99, 1, 1)]


ops = st.lists(st.tuples(st.integers(1, 12), st.sampled_from((BUY, SELL)),
                         st.integers(95, 105), st.integers(0, 5), st.booleans()),
               max_size=80)


@given(ops)
def test_aggregation_equals_an_l2_book_kept_from_the_same_changes(steps) -> None:
    """Replaying the public changes on a copy gives the same book, and the L3 book per
    level equals an L2 book kept from the changes' quantities."""
    book = L3Book()
    replica: dict[int, L3Order] = {}
    priority = 0
    for order_id, side, price, qty, requeue in steps:
        priority += 1
        old = book.orders.get(order_id)
        if old is not None:
            side, price = old.side, (price if requeue else old.price)
        new_priority = priority if old is None or requeue else old.priority
        for change in book.apply([L3Order(order_id, side, price, qty, new_priority)]):
            if change.kind is Kind.REMOVE:
                del replica[change.order.order_id]
            elif change.kind is Kind.ADD:
                assert change.order.order_id not in replica
                replica[change.order.order_id] = change.order
            else:
                assert change.order.order_id in replica
                replica[change.order.order_id] = change.order
    assert replica == book.orders
    for side in (BUY, SELL):
        levels: dict[int, list[int]] = {}
        for o in replica.values():
            if o.side == side:
                levels.setdefault(o.price, []).append(o.quantity)
        expected = sorted(((p, sum(q), len(q)) for p, q in levels.items()),
                          reverse=side == BUY)
        assert book.aggregated(side) == expected
        orders = list(book.side_orders(side))
        assert orders == sorted(orders, key=lambda o: ((-o.price if side == BUY else o.price),
                                                       o.priority))
