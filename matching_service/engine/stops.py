"""The stop book: stop and stop-limit orders waiting off the book for their trigger.

A buy stop fires when a trade prints at or above its stop price, a sell stop when one
prints at or below it. As in a ``Side``, each side keeps its stops under a key that
makes "fires at this price" one comparison for both: key = stop price for buys and
-stop price for sells, and a trade at ``p`` fires the buy stops with key <= p and the
sell stops with key <= -p. The keys are one sorted list per side (``bisect``), each
key's stops a list in placement order.

Stops are few next to resting orders and the matching loop only asks the stop book
anything when it holds some (``orders`` is empty otherwise), so this is plain code,
not tuned like ``side``.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from typing import Final

from .enums import BUY
from .order import Order

# A side's first key when it holds no stop: above every trade price.
NONE_ARMED: Final = 1 << 63


class StopSide:
    """The stops of one side by key (key = stop price x ``sign``)."""

    def __init__(self, sign: int) -> None:
        self.sign = sign
        self.keys: list[int] = []
        self.levels: dict[int, list[Order]] = {}

    def add(self, order: Order) -> None:
        key = order.stop_price * self.sign
        level = self.levels.get(key)
        if level is None:
            self.levels[key] = [order]
            self.keys.insert(bisect_left(self.keys, key), key)
        else:
            level.append(order)

    def remove(self, order: Order) -> None:
        key = order.stop_price * self.sign
        level = self.levels[key]
        level.remove(order)
        if not level:
            del self.levels[key]
            del self.keys[bisect_left(self.keys, key)]

    def first(self) -> int:
        """The smallest key, NONE_ARMED when the side holds no stop."""
        return self.keys[0] if self.keys else NONE_ARMED

    def pop_upto(self, limit: int, out: list[Order]) -> None:
        """Take every stop with key <= ``limit`` out of the side, into ``out``."""
        keys = self.keys
        n = bisect_right(keys, limit)
        if not n:
            return
        levels = self.levels
        for key in keys[:n]:
            out.extend(levels.pop(key))
        del keys[:n]


class StopBook:
    """The untriggered stops of one instrument: by id, and by trigger on each side."""

    def __init__(self) -> None:
        self.orders: dict[int, Order] = {}
        self.buys = StopSide(1)
        self.sells = StopSide(-1)

    def __len__(self) -> int:
        return len(self.orders)

    def add(self, order: Order) -> None:
        self.orders[order.order_id] = order
        (self.buys if order.side == BUY else self.sells).add(order)

    def remove(self, order: Order) -> None:
        del self.orders[order.order_id]
        (self.buys if order.side == BUY else self.sells).remove(order)

    def get(self, order_id: int) -> Order | None:
        return self.orders.get(order_id)

    def fire(self, price: int) -> list[Order]:
        """Take out the stops a trade at ``price`` fires, in placement order
        (priority: the sequence that accepted each)."""
        fired: list[Order] = []
        if self.buys.first() <= price:
            self.buys.pop_upto(price, fired)
        if self.sells.first() <= -price:
            self.sells.pop_upto(-price, fired)
        for order in fired:
            del self.orders[order.order_id]
        if len(fired) > 1:
            fired.sort(key=priority_of)
        return fired

    def in_order(self) -> list[Order]:
        """Every stop, in placement order."""
        return sorted(self.orders.values(), key=priority_of)


def priority_of(order: Order) -> int:
    return order.priority


def would_trigger(side: int, stop_price: int, last_price: int) -> bool:
    """Whether a trade at ``last_price`` has already reached ``stop_price`` for a stop
    of ``side`` (a buy stop: at or above it; a sell stop: at or below it)."""
    return last_price >= stop_price if side == BUY else last_price <= stop_price
