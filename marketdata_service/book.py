"""The aggregated (L2) order book of one instrument, in integer ticks and lots.

Plain Python with no I/O: the feed applies the matching pods' level updates to it, the
servicer reads levels from it. Each level holds the total resting lots and the number of
orders at a price. ``sequence`` is the last journal sequence applied.
"""

from __future__ import annotations

import enum
import operator
from collections.abc import Iterable, Iterator
from itertools import islice
from typing import NamedTuple

from sortedcontainers import SortedDict


class Level(NamedTuple):
    price: int
    quantity: int
    order_count: int


class ApplyResult(enum.Enum):
    APPLIED = "applied"
    # Everything in the update is already reflected (a repeat or an older entry).
    SKIPPED = "skipped"
    # The update starts after sequence + 1: something in between is missing.
    GAP = "gap"


class L2Book:
    """Bids best (highest) first, asks best (lowest) first."""

    __slots__ = ("bids", "asks", "sequence")

    def __init__(self, sequence: int = 0) -> None:
        # price ticks -> (lots, order_count); bids keyed by -price so both iterate best first.
        self.bids: SortedDict = SortedDict(operator.neg)
        self.asks: SortedDict = SortedDict()
        self.sequence = sequence

    @classmethod
    def from_levels(cls, sequence: int, bids: Iterable[tuple[int, int, int]],
                    asks: Iterable[tuple[int, int, int]]) -> L2Book:
        book = cls(sequence)
        for price, qty, count in bids:
            book._set(book.bids, price, qty, count)
        for price, qty, count in asks:
            book._set(book.asks, price, qty, count)
        return book

    @staticmethod
    def _set(side: SortedDict, price: int, quantity: int, order_count: int) -> None:
        if quantity <= 0:
            side.pop(price, None)
        else:
            side[price] = (quantity, order_count)

    def apply(self, first_sequence: int, last_sequence: int,
              bids: Iterable[tuple[int, int, int]],
              asks: Iterable[tuple[int, int, int]]) -> ApplyResult:
        """Apply one update covering journal sequences first..last (inclusive).

        Levels are (price, new total lots, order count); 0 lots removes the level.
        """
        if last_sequence <= self.sequence:
            return ApplyResult.SKIPPED
        if first_sequence != self.sequence + 1:
            return ApplyResult.GAP
        for price, qty, count in bids:
            self._set(self.bids, price, qty, count)
        for price, qty, count in asks:
            self._set(self.asks, price, qty, count)
        self.sequence = last_sequence
        return ApplyResult.APPLIED

    def bid_levels(self, depth: int = 0) -> Iterator[Level]:
        return self._levels(self.bids, depth)

    def ask_levels(self, depth: int = 0) -> Iterator[Level]:
        return self._levels(self.asks, depth)

    @staticmethod
    def _levels(side: SortedDict, depth: int) -> Iterator[Level]:
        items = side.items()
        if depth > 0:
            items = islice(items, depth)
        for price, (qty, count) in items:
            yield Level(price, qty, count)

    def best_bid(self) -> Level | None:
        return next(self.bid_levels(1), None)

    def best_ask(self) -> Level | None:
        return next(self.ask_levels(1), None)

    def level(self, is_bid: bool, price: int) -> Level | None:
        entry = (self.bids if is_bid else self.asks).get(price)
        return None if entry is None else Level(price, entry[0], entry[1])

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, L2Book):
            return NotImplemented
        return (self.sequence == other.sequence and dict(self.bids) == dict(other.bids)
                and dict(self.asks) == dict(other.asks))

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return (f"L2Book(sequence={self.sequence}, bids={list(self.bid_levels())}, "
                f"asks={list(self.ask_levels())})")
