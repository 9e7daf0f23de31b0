"""What a matching pod publishes for the L3 book (``MarketDataBatch.orders``): the batch's
changed orders that are or were on the book, as they are after it."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from exchange_common.ids import make_id
from matching_service.engine.enums import (
    CANCELLED,
    EXPIRED,
    FILLED,
    NEW,
    PARTIALLY_FILLED,
    REJECTED,
    UNTRIGGERED,
)
from matching_service.engine.order import OrderRow
from matching_service.loop import _order_changes

FIRST = 100  # the batch's first sequence


def row(sequence: int, state: int, filled: int = 0, priority: int | None = None) -> OrderRow:
    return OrderRow(order_id=make_id(1, sequence), account_id=7, client_order_id="", side=2,
                    order_type=1, time_in_force=1, post_only=False, price=7_000_000,
                    quantity=10, filled=filled, state=state,
                    priority=sequence if priority is None else priority)


@pytest.mark.parametrize(("name", "order", "expected"), [
    ("a new resting order", row(101, NEW), (10, 101)),
    ("a resting order partly filled", row(50, PARTIALLY_FILLED, filled=4), (6, 50)),
    ("a re-queued order keeps its new priority", row(50, NEW, priority=103), (10, 103)),
    ("an older order filled", row(50, FILLED, filled=10), (0, 50)),
    ("an older order cancelled", row(50, CANCELLED), (0, 50)),
    ("an older order expired (good till time)", row(50, EXPIRED), (0, 50)),
    ("an order of this batch that filled at once never showed", row(101, FILLED), None),
    ("an order of this batch that expired never showed", row(102, EXPIRED), None),
    ("an order of this batch that was rejected", row(102, REJECTED), None),
    ("an untriggered stop is not on the book", row(101, UNTRIGGERED), None),
    ("nor an older one", row(50, UNTRIGGERED), None),
])
def test_order_changes(name: str, order: OrderRow, expected: tuple[int, int] | None) -> None:
    out = _order_changes(SimpleNamespace(first_sequence=FIRST, orders=[order]))  # type: ignore[arg-type]
    if expected is None:
        assert out == [], name
        return
    (change,) = out
    assert (change.order_id, change.side, change.price) == (order.order_id, 2, 7_000_000)
    assert (change.quantity, change.priority) == expected, name
