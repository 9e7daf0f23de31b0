"""The order-by-order (L3) book of one instrument, in integer ticks and lots.

Plain Python with no I/O. It holds every resting order (id, side, price, open lots,
priority) and is advanced by ``MarketDataBatch.orders``: each changed order as it is after
the batch (0 lots: it left the book). ``apply`` turns those into the public changes: ADD
(a new order at the back of its level), CHANGE (its open quantity changed in place), REMOVE
(it left), and REMOVE then ADD when its priority changed (an amendment re-queued it). A
removal of an order it does not hold (a stop that never rested) changes nothing.
"""

from __future__ import annotations

import enum
import operator
from collections.abc import Iterable, Iterator
from typing import NamedTuple

from sortedcontainers import SortedDict

BUY = 1
SELL = 2


class L3Order(NamedTuple):
    order_id: int
    side: int  # exchange.common.v1.Side number
    price: int  # ticks
    quantity: int  # open lots
    priority: int  # the journal sequence at which it joined its level


class Kind(enum.IntEnum):
    """exchange.marketdata.v1.L3ChangeKind, by name."""

    ADD = 1
    CHANGE = 2
    REMOVE = 3


class L3Change(NamedTuple):
    kind: Kind
    order: L3Order


class L3Book:
    """Orders by id, and per side the levels (price -> {order id: order}) best first."""

    __slots__ = ("orders", "bids", "asks")

    def __init__(self, orders: Iterable[L3Order] = ()) -> None:
        self.orders: dict[int, L3Order] = {}
        self.bids: SortedDict = SortedDict(operator.neg)
        self.asks: SortedDict = SortedDict()
        for order in sorted(orders, key=lambda o: o.priority):
            self._add(order)

    def __len__(self) -> int:
        return len(self.orders)

    def _side(self, side: int) -> SortedDict:
        return self.bids if side == BUY else self.asks

    def _add(self, order: L3Order) -> None:
        self.orders[order.order_id] = order
        levels = self._side(order.side)
        level = levels.get(order.price)
        if level is None:
            levels[order.price] = {order.order_id: order}
        else:
            level[order.order_id] = order

    def _remove(self, order: L3Order) -> None:
        del self.orders[order.order_id]
        levels = self._side(order.side)
        level = levels[order.price]
        del level[order.order_id]
        if not level:
            del levels[order.price]

    def apply(self, changes: Iterable[L3Order]) -> list[L3Change]:
        """Apply orders as they are now (quantity 0: gone); returns the public changes."""
        out: list[L3Change] = []
        for new in changes:
            old = self.orders.get(new.order_id)
            if new.quantity <= 0:
                if old is not None:
                    self._remove(old)
                    out.append(L3Change(Kind.REMOVE, old))
                continue
            if old is None:
                self._add(new)
                out.append(L3Change(Kind.ADD, new))
            elif old.priority != new.priority or old.price != new.price or old.side != new.side:
                self._remove(old)
                out.append(L3Change(Kind.REMOVE, old))
                self._add(new)
                out.append(L3Change(Kind.ADD, new))
            elif old.quantity != new.quantity:
                self.orders[new.order_id] = new
                self._side(new.side)[new.price][new.order_id] = new
                out.append(L3Change(Kind.CHANGE, new))
        return out

    def side_orders(self, side: int) -> Iterator[L3Order]:
        """One side's orders, best price first, each price in time priority."""
        for level in self._side(side).values():
            # A level's dict keeps insertion order, which is priority order except after
            # a recovery that added them out of order: sort (levels are short).
            yield from sorted(level.values(), key=_priority)

    def aggregated(self, side: int) -> list[tuple[int, int, int]]:
        """(price, lots, orders) per level, best first: the L2 view of the same orders."""
        return [(price, sum(o.quantity for o in level.values()), len(level))
                for price, level in self._side(side).items()]


def _priority(order: L3Order) -> int:
    return order.priority
