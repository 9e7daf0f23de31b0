"""Good-till-time expiries: when each open GTT order of a book is due.

A heap of (expire time, order id), so that the due ones come out in expiry order, then
order id. An order that leaves the book some other way (filled, cancelled) keeps its
entry, and it is skipped when it comes out (the book checks that the order is still
open with that expiry): nothing in the matching path pays for expiries. The heap is
compacted when the skipped entries could outgrow the live ones (``Expiries.due_for``).
"""

from __future__ import annotations

from heapq import heapify, heappop, heappush
from typing import Final

# The heap is compacted when it grows past this, or twice its size after the last
# compaction.
COMPACT_MIN: Final = 1024


class Expiries:
    """The (expire time, order id) of every open good-till-time order, and some stale
    entries of orders that have gone."""

    def __init__(self) -> None:
        self.heap: list[tuple[int, int]] = []
        self.limit = COMPACT_MIN

    def __len__(self) -> int:
        return len(self.heap)

    def add(self, expire_ns: int, order_id: int) -> None:
        heappush(self.heap, (expire_ns, order_id))

    def next(self) -> int:
        """The earliest expire time (possibly of an order that has gone), 0 if none."""
        return self.heap[0][0] if self.heap else 0

    def pop_due(self, now_ns: int) -> list[tuple[int, int]]:
        """Take out the entries due at ``now_ns`` (expire time <= it), in order."""
        heap = self.heap
        out: list[tuple[int, int]] = []
        while heap and heap[0][0] <= now_ns:
            out.append(heappop(heap))
        return out

    def pop_first(self) -> None:
        heappop(self.heap)

    def needs_compacting(self) -> bool:
        return len(self.heap) > self.limit

    def keep(self, live: list[tuple[int, int]]) -> None:
        """Replace the entries by ``live`` (the ones whose order is still open)."""
        heapify(live)
        self.heap = live
        self.limit = max(COMPACT_MIN, 2 * len(live))
