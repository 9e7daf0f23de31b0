"""One side of a book: its price levels, and their keys in price order (the ladder).

How a side is laid out, and why (matching spends nearly all its time here):

* a price level is its order when it holds one (most do), else a plain ``list`` of
  its orders in time priority: no container at all for a lone order (no allocation,
  one pointer less to follow in a deep book), and a list is the cheapest one to
  create, append to and pop from (a ``deque`` costs ~600 bytes even when it holds one
  order). A level's quantity is not kept: it is summed when the level is published
  (once per batch) or needed by FOK;
* key = price for asks and -price for bids, so that the best level has the smallest
  key and the matching code is the same for both sides;
* the keys are kept in order by a front and a price ladder. The front is one sorted
  list of the best keys (about ``FRONT_MAX`` of them: the levels near the touch,
  where nearly all the work is) with a parallel list of their levels, so that a level
  there is found by ``bisect`` (in C) in a short list that stays in cache, a new one
  is two ``list.insert``, and taking the best level away is ``del front[0]`` twice,
  with no hash look-up and no allocation; ``Side.best`` caches ``front[0]``. The keys
  behind the front wait in a two-level ladder: buckets of 1,024 consecutive keys, each
  a short sorted list, and a heap (``heapq``, in C) of the bucket numbers; their
  levels are in a ``dict`` (``far``). A key pushed out of a full front goes to its
  bucket; when the front empties, the best ``REFILL`` keys of the best bucket become
  the front (a few: in a deep book the levels placed next near the touch come before
  them all). (A single dict of all the levels costs cache misses in a deep book: a
  new level near the touch has a random key, so it probes a random line of a large
  table and often meets a deep level's entry there; one heap of all the levels costs
  a chain of cache misses per level taken; a ``SortedDict`` costs microseconds of
  Python per insert and delete; a bucket per level near the touch, as the ladder
  alone gives, costs a dict entry, a list and a heap push per level.)
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections.abc import Iterator
from heapq import heapify, heappop, heappush
from typing import Final

from .order import Order

# A side's best key when it has no orders: above every limit, so nothing crosses it.
EMPTY: Final = 1 << 63
# The price ladder's buckets hold 2**BUCKET_BITS consecutive keys.
BUCKET_BITS: Final = 10
# The front (the best keys, in one sorted list) holds about this many keys; the others
# wait in the ladder.
FRONT_MAX: Final = 64
# When the front empties, it gets this many keys from the ladder's best bucket (a few
# levels: in a deep book, a taker that empties the levels near the touch takes one or
# two more, and the levels placed next near the touch come before them all; a whole
# bucket would have to go back to the ladder key by key as they come).
REFILL: Final = 4
# Emptied buckets away from the top wait in the ladder; it is rebuilt when there are
# more of them than this and than buckets in use.
COMPACT_MIN_EMPTY: Final = 256

# A price level: its order when alone at its price (most are), else a list of two or
# more orders in time priority. ``isinstance(level, Order)`` tells which.
Level = Order | list[Order]


def level_orders(level: Level) -> list[Order]:
    """The orders of a level, in time priority."""
    return [level] if isinstance(level, Order) else level


def level_quantity(level: Level) -> int:
    """The open quantity of a level."""
    if isinstance(level, Order):
        return level.quantity - level.filled
    return sum([o.quantity - o.filled for o in level])


class Side:
    """One side of the book: its price levels by key, and their keys in order.

    key = price * ``sign`` (price for asks, -price for bids): on both sides the best
    level has the smallest key. ``front`` is the sorted list of the best keys and
    ``front_levels`` their levels, index for index. Every other key is above all of
    them, in the ladder: ``far`` maps key -> level for them, ``buckets`` maps
    key >> BUCKET_BITS -> the sorted keys of the levels in that bucket; ``heap`` holds
    the bucket numbers. The front is empty only when the whole side is. An emptied
    bucket stays (as an empty list, counted in ``empty``) until it reaches the top of
    the heap, so every bucket number is in the heap exactly once. ``best`` is the
    smallest key (``front[0]``), EMPTY when the side has no orders."""

    def __init__(self, sign: int) -> None:
        self.sign = sign
        # The keys of the best levels, sorted (at most about FRONT_MAX of them, or one
        # bucket's after a refill), and their levels; every key in the ladder is above
        # all of them. Empty only when the side is.
        self.front: list[int] = []
        self.front_levels: list[Level] = []
        # The levels of the keys in the ladder.
        self.far: dict[int, Level] = {}
        self.buckets: dict[int, list[int]] = {}
        self.heap: list[int] = []
        self.empty = 0
        self.best: int = EMPTY
        # Levels changed since the last drain_touched(): price -> the level, or None
        # if it is gone (kept as the level itself, so draining needs no look-up).
        self.touched: dict[int, Level | None] = {}

    def __len__(self) -> int:
        """Price levels with orders."""
        return len(self.front) + len(self.far)

    @property
    def levels(self) -> dict[int, Level]:
        """key -> level of every level: a new dict, for inspection (not the hot path)."""
        levels = dict(zip(self.front, self.front_levels, strict=True))
        levels.update(self.far)
        return levels

    def get(self, key: int) -> Level | None:
        """The level at ``key``, None if there is none."""
        front = self.front
        if front and key <= front[-1]:
            i = bisect_left(front, key)
            if front[i] == key:
                return self.front_levels[i]
            return None
        return self.far.get(key)

    def add_order(self, key: int, order: Order) -> None:
        """Rest ``order`` at ``key`` (its price times ``sign``), behind the orders there."""
        front = self.front
        level: Level
        if front and key <= front[-1]:
            i = bisect_left(front, key)
            if front[i] == key:
                level = self.front_levels[i]
                if isinstance(level, Order):
                    self.front_levels[i] = level = [level, order]
                else:
                    level.append(order)
                self.touched[order.price] = level
                return
            # A new level in the front.
            front.insert(i, key)
            self.front_levels.insert(i, order)
            self.touched[order.price] = order
            if not i:
                self.best = key
            if len(front) > FRONT_MAX:
                self.push_back()
            return
        heap = self.heap
        if front and (len(front) >= FRONT_MAX or heap and heap[0] <= key >> BUCKET_BITS):
            # Behind the front: in the ladder (the front is full, or the key is not
            # below the ladder's first bucket).
            level = self.far.setdefault(key, order)
            if level is order:  # a new level
                self.ladder_add(key)
            elif isinstance(level, Order):
                self.far[key] = level = [level, order]
            else:
                level.append(order)
            self.touched[order.price] = level
            return
        # A new level at the end of the front, below every key in the ladder (or the
        # first level of an empty side).
        front.append(key)
        self.front_levels.append(order)
        self.touched[order.price] = order
        if len(front) == 1:
            self.best = key

    def add_level(self, key: int, level: Level) -> None:
        """Put a new level (none at ``key`` yet) in its place."""
        front = self.front
        if front and key > front[-1]:
            # Behind the front: in the ladder, unless the front has room and the key
            # is below the ladder's first bucket.
            heap = self.heap
            if len(front) >= FRONT_MAX or heap and heap[0] <= key >> BUCKET_BITS:
                self.far[key] = level
                self.ladder_add(key)
            else:
                front.append(key)
                self.front_levels.append(level)
            return
        i = bisect_left(front, key)
        front.insert(i, key)
        self.front_levels.insert(i, level)
        self.best = front[0]
        if len(front) > FRONT_MAX:
            self.push_back()

    def push_back(self) -> None:
        """The front is over FRONT_MAX: its last key goes to the ladder."""
        key = self.front.pop()
        self.far[key] = self.front_levels.pop()
        self.ladder_add(key)

    def ladder_add(self, key: int) -> None:
        bucket = key >> BUCKET_BITS
        keys = self.buckets.get(bucket)
        if keys is None:
            self.buckets[bucket] = [key]
            heappush(self.heap, bucket)
        elif not keys:
            keys.append(key)
            self.empty -= 1
        else:
            insort(keys, key)

    def remove_level(self, key: int) -> None:
        """Forget the level at ``key`` (its last order is gone)."""
        front = self.front
        if key <= front[-1]:
            if key == front[0]:
                del front[0]
                del self.front_levels[0]
            else:
                i = bisect_left(front, key)
                del front[i]
                del self.front_levels[i]
            if front:
                self.best = front[0]
            else:
                self.refill()
            return
        del self.far[key]
        keys = self.buckets[key >> BUCKET_BITS]
        del keys[bisect_left(keys, key)]
        if not keys:
            self.empty += 1
            if self.empty > COMPACT_MIN_EMPTY and self.empty > len(self.buckets) // 2:
                self.compact()

    def pop_best(self) -> None:
        """Forget the best level (its last order is gone): remove_level for the best
        key, the common case of matching."""
        front = self.front
        del front[0]
        del self.front_levels[0]
        if front:
            self.best = front[0]
        else:
            self.refill()

    def refill(self) -> None:
        """The front has emptied: the best REFILL keys of the ladder's best bucket (or
        all of them, the bucket then dropped) become the front, their levels taken from
        ``far``; the emptied buckets before it are dropped."""
        heap, buckets = self.heap, self.buckets
        while heap:
            bucket = heap[0]
            keys = buckets[bucket]
            if keys:
                if len(keys) > REFILL:
                    front = keys[:REFILL]
                    del keys[:REFILL]
                else:
                    front = keys
                    heappop(heap)
                    del buckets[bucket]
                far = self.far
                self.front = front
                self.front_levels = [far.pop(key) for key in front]
                self.best = front[0]
                return
            heappop(heap)
            del buckets[bucket]
            self.empty -= 1
        self.best = EMPTY

    def compact(self) -> None:
        """Drop the emptied buckets (in place: callers may hold the containers)."""
        buckets = self.buckets
        for bucket in [b for b, keys in buckets.items() if not keys]:
            del buckets[bucket]
        self.heap[:] = buckets
        heapify(self.heap)
        self.empty = 0

    def rebuild(self) -> None:
        """Make the front and the ladder again from all the levels (after a bulk
        restore, which puts them in ``far``)."""
        far = self.far
        far.update(zip(self.front, self.front_levels, strict=True))
        buckets: dict[int, list[int]] = {}
        for key in far:
            keys = buckets.get(key >> BUCKET_BITS)
            if keys is None:
                buckets[key >> BUCKET_BITS] = [key]
            else:
                keys.append(key)
        for keys in buckets.values():
            keys.sort()
        self.buckets = buckets
        self.heap = list(buckets)
        heapify(self.heap)
        self.empty = 0
        self.front = []
        self.front_levels = []
        self.refill()

    def keys_in_order(self) -> Iterator[int]:
        yield from self.front
        buckets = self.buckets
        for bucket in sorted(buckets):
            yield from buckets[bucket]

    def levels_in_order(self) -> Iterator[Level]:
        yield from self.front_levels
        buckets, far = self.buckets, self.far
        for bucket in sorted(buckets):
            for key in buckets[bucket]:
                yield far[key]

    def sorted_levels(self) -> list[list[Order]]:
        """The orders of each level, levels best first."""
        return [level_orders(level) for level in self.levels_in_order()]

    def fillable(self, limit: int, need: int) -> bool:
        """Whether the levels with key <= ``limit`` hold ``need`` lots (for FOK)."""
        total = 0
        for key, level in zip(self.keys_in_order(), self.levels_in_order(), strict=True):
            if key > limit:
                return False
            total += level_quantity(level)
            if total >= need:
                return True
        return False

    def fillable_for(self, limit: int, need: int, account_id: int, stop_at_own: bool
                     ) -> bool:
        """Whether the orders in the levels with key <= ``limit`` not of ``account_id``
        hold ``need`` lots; with ``stop_at_own``, only those before the first order of
        ``account_id`` in priority order (for FOK under self-trade prevention)."""
        total = 0
        for key, level in zip(self.keys_in_order(), self.levels_in_order(), strict=True):
            if key > limit:
                return False
            for order in level_orders(level):
                if order.account_id == account_id:
                    if stop_at_own:
                        return False
                    continue
                total += order.quantity - order.filled
                if total >= need:
                    return True
        return False

    def drain_touched(self) -> list[tuple[int, int, int]]:
        """(price, quantity, order count) of each touched level, by price; 0, 0 if gone."""
        touched = self.touched
        out: list[tuple[int, int, int]] = []
        for price in sorted(touched):
            level = touched[price]
            if level is None:
                out.append((price, 0, 0))
            elif isinstance(level, Order):
                out.append((price, level.quantity - level.filled, 1))
            else:
                out.append((price, level_quantity(level), len(level)))
        touched.clear()
        return out
