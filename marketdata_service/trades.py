"""Recent trades of one instrument, kept in memory (plain Python, no I/O)."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from typing import NamedTuple


class TradeRecord(NamedTuple):
    trade_id: int
    sequence: int
    price: int  # ticks
    quantity: int  # lots
    taker_side: int  # exchange.common.v1.Side number
    time_unix_nanos: int


class TradeRing:
    """The newest ``capacity`` trades, oldest first.

    ``complete`` is true while the ring holds every trade the instrument ever had (it was loaded
    with fewer trades than it can hold and nothing has been evicted since); then a page that
    runs past the oldest trade in memory is still whole, and no database read is needed.
    """

    __slots__ = ("_items", "capacity", "complete")

    def __init__(self, capacity: int, trades: Iterable[TradeRecord] = (),
                 complete: bool = False) -> None:
        self.capacity = capacity
        self._items: deque[TradeRecord] = deque(maxlen=capacity)
        self.complete = complete
        self.extend(trades)

    def __len__(self) -> int:
        return len(self._items)

    def extend(self, trades: Iterable[TradeRecord]) -> None:
        """Append trades, which must be newer than every trade held."""
        items = self._items
        for t in trades:
            if len(items) == self.capacity:
                self.complete = False
            items.append(t)

    def newest(self) -> TradeRecord | None:
        return self._items[-1] if self._items else None

    def since(self, sequence: int) -> list[TradeRecord]:
        """Trades with a sequence above ``sequence``, oldest first."""
        out: list[TradeRecord] = []
        for t in reversed(self._items):
            if t.sequence <= sequence:
                break
            out.append(t)
        out.reverse()
        return out

    def page(self, before_trade_id: int | None, limit: int) -> list[TradeRecord] | None:
        """Up to ``limit`` trades older than ``before_trade_id`` (None: the newest), newest
        first, or None when memory cannot answer for sure (the page reaches past the oldest
        trade held and older ones may exist)."""
        out: list[TradeRecord] = []
        for t in reversed(self._items):
            if before_trade_id is not None and t.trade_id >= before_trade_id:
                continue
            out.append(t)
            if len(out) == limit:
                return out
        return out if self.complete else None
