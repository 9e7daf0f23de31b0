"""The matching engine: one price-time-priority order book per instrument.

Plain Python with no I/O, driven by one writer. Prices are integer ticks,
quantities integer lots. Every command is turned into journal events, each
with the next per-instrument sequence number:

* ACCEPTED  - a new order passed the engine's checks (its id comes from this
              event's sequence);
* TRADE     - one fill between a resting maker and the incoming taker, at the
              maker's price (the trade id comes from this event's sequence);
* CANCELLED - a resting order was cancelled (quantity removed);
* EXPIRED   - the unfilled rest of an IOC, FOK or market order;
* REJECTED  - a new order refused outright (post-only that would take);
* AMENDED   - a resting order got a new price and/or total quantity (the
              event carries the new values); trades it causes follow it;
* STATUS    - the instrument's status changed (trading, cancel-only, halted;
              the event's quantity is the new status). The engine only records
              it (``OrderBook.status``): which commands a status refuses is the
              caller's rule (matching_service/loop.py), so replaying the journal,
              which holds only what was accepted, never depends on it.

Rules: price-time priority; partial fills; the trade price is the resting
order's price; LIMIT+GTC rests, IOC fills what it can and expires the rest,
FOK fills completely or expires with no fill; MARKET never rests; post-only
rejects a limit order that would take liquidity. ``client_order_id`` is
deduplicated per account: a retry of the same order returns the original,
different contents are refused. Amending keeps the order's time priority only
when it just lowers the quantity at the same price; a new price or a larger
quantity sends it to the back of its (new) level, and a new price that
crosses the book trades first, as a taker.

The engine records what changed (orders, price levels) so the caller can
commit a whole batch of commands at once (group commit) and publish the
level changes to market data.

How the book is laid out, and why (this is the hot path of the exchange):

* a price level is its order when it holds one (most do), else a plain
  ``list`` of its orders in time priority: no container at all for a lone
  order (no allocation, one pointer less to follow in a deep book), and a list
  is the cheapest one to create, append to and pop from (a ``deque`` costs
  ~600 bytes even when it holds one order). A level's quantity is not kept: it
  is summed when the level is published (once per batch) or needed by FOK;
* on each side, key = price for asks and -price for bids, so that the best
  level has the smallest key and the matching code is the same for both;
* the keys are kept in order by a front and a price ladder. The front is one
  sorted list of the best keys (about ``FRONT_MAX`` of them: the levels near
  the touch, where nearly all the work is) with a parallel list of their levels,
  so that a level there is found by ``bisect`` (in C) in a short list that stays
  in cache, a new one is two ``list.insert``, and taking the best level away is
  ``del front[0]`` twice, with no hash look-up and no allocation; ``Side.best``
  caches ``front[0]``. The keys behind the front wait in a two-level ladder:
  buckets of 1,024 consecutive keys, each a short sorted list, and a heap
  (``heapq``, in C) of the bucket numbers; their levels are in a ``dict`` (``far``).
  A key pushed out of a full front goes to its bucket; when the front empties,
  the best ``REFILL`` keys of the best bucket become the front (a few: in a deep
  book the levels placed next near the touch come before them all). (A single
  dict of all the levels costs cache misses in a deep book: a new level near the
  touch has a random key, so it probes a random line of a large table and often
  meets a deep level's entry there; one heap of all the levels costs a chain of
  cache misses per level taken; a ``SortedDict`` costs microseconds of Python per
  insert and delete; a bucket per level near the touch, as the ladder alone gives, costs a dict
  entry, a list and a heap push per level.)
* the resting orders by id are two dicts: ``recent``, the ones placed lately (at
  most ``RECENT_MAX``), and ``older``, which the recent ones join in one pass when
  ``recent`` is full. Most orders leave the book soon after they come, so in a deep
  book nearly every insert and delete is in the small table, which stays in cache,
  not in the large one (``OrderBook.orders`` is a merged copy, for inspection);
* the orders changed in a batch are a list, each listed once: an order's
  ``changed_in`` is the token of the batch that lists it (``OrderBook.batch``,
  a new one per drain), cheaper than a dict keyed by order id;
* ``Order`` is not tracked by the garbage collector in the compiled build
  (``@cython.no_gc``): the engine sets its fields to ints, strings and bools,
  which hold no reference cycle (a cycle made through a field set by hand would
  be leaked, never freed wrongly), so the collector never walks the resting orders;
* ``Fill`` and ``Outcome`` are named tuples built with ``tuple.__new__``: one
  of each per fill and per command, at a fraction of a class's ``__init__``;
  a ``Fill`` starts with the trade record the store writes, so a batch's
  trades are handed over as they are.

Compiled or interpreted: this file is the engine, and it runs as it is. When the
package was installed with Cython and a C compiler at hand, setup.py has also
compiled this same file (with the field and local declarations of engine.pxd,
where prices and quantities stay Python ints) into ``matching_service._engine_c``,
and importing this module gives that compiled module instead, but only if it was
built from exactly the engine.py and engine.pxd beside it (``SOURCE_DIGEST``); an
edited engine runs interpreted, with a warning, until it is rebuilt
(``pip install -e .``). ``COMPILED`` tells which one runs;
``EXCHANGE_ENGINE=python`` forces the interpreted one.
"""

from __future__ import annotations

import hashlib
import os
import sys
import warnings
from bisect import bisect_left, insort
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from heapq import heapify, heappop, heappush
from operator import attrgetter
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import NamedTuple

from exchange_common.ids import SEQUENCE_BITS, SEQUENCE_MASK

try:  # only to tell the compiled build (engine.pxd declares _C there); not a dependency
    import cython
    _C = cython.compiled
except ImportError:  # pragma: no cover - Cython is not installed at run time
    _C = False

    # The Cython decorators used below, as no-ops (set through globals(): the
    # compiler reads the name ``cython`` as its own).
    globals()["cython"] = SimpleNamespace(cclass=lambda cls: cls, no_gc=lambda cls: cls)

# Whether this is the compiled build of this file (setup.py sets it to True there).
COMPILED = False

# Enum numbers equal the exchange.common.v1 proto enums (and database columns).
BUY, SELL = 1, 2
LIMIT, MARKET = 1, 2
GTC, IOC, FOK = 1, 2, 3
NEW, PARTIALLY_FILLED, FILLED, CANCELLED, EXPIRED, REJECTED = 1, 2, 3, 4, 5, 6
MAKER, TAKER = 1, 2
# exchange.common.v1.InstrumentStatus
TRADING, HALTED, CANCEL_ONLY = 1, 2, 3

# Journal event kinds (database column journal.kind).
EV_ACCEPTED, EV_TRADE, EV_CANCELLED, EV_EXPIRED, EV_REJECTED, EV_AMENDED = 1, 2, 3, 4, 5, 6
EV_STATUS = 7

OPEN_STATES = (NEW, PARTIALLY_FILLED)

# The resting orders placed lately are kept by id in a dict of their own, of at most
# this many (OrderBook.recent): most orders leave the book soon after they come, and
# a small table stays in cache where one of all the resting orders of a deep book
# does not.
RECENT_MAX = 4096
_RECENT_MAX = RECENT_MAX  # a C constant in the compiled build (engine.pxd)

# Closed orders remembered for client_order_id retries (older ones are found
# in the database by the order service before it routes a retry).
RECENT_CLOSED = 100_000

# A key limit beyond any price: a market order takes whatever the other side has.
NO_LIMIT = 1 << 62
# Side.best of an empty side: above every limit, so nothing crosses it.
EMPTY = 1 << 63
# The price ladder's buckets hold 2**BUCKET_BITS consecutive keys.
BUCKET_BITS = 10
# A side's front (its best keys, in one sorted list) holds about this many keys; the
# others wait in the ladder.
FRONT_MAX = 64
_FRONT_MAX = FRONT_MAX  # a C constant in the compiled build (engine.pxd)
# When the front empties, it gets this many keys from the ladder's best bucket (a
# few levels: in a deep book, a taker that empties the levels near the touch takes
# one or two more, and the levels placed next near the touch come before them all;
# a whole bucket would have to go back to the ladder key by key as they come).
REFILL = 4
_REFILL = REFILL  # a C constant in the compiled build (engine.pxd)
# Emptied buckets away from the top wait in the ladder; it is rebuilt when there
# are more of them than this and than buckets in use.
COMPACT_MIN_EMPTY = 256

_tuple_new = tuple.__new__  # builds a named tuple without its Python-level __new__
# The compiled build makes Fill and Outcome tuples in one allocation instead, with
# _new_fill/_new_outcome (C helpers declared in engine.pxd): ``if _C`` branches.


@cython.no_gc
@cython.cclass
class Order:
    __slots__ = (
        "order_id", "account_id", "client_order_id", "side", "type", "tif", "post_only",
        "price", "quantity", "filled", "notional", "state", "reason", "priority",
        "created_ns", "updated_ns", "last_sequence", "changed_in",
    )

    def __init__(self, order_id: int, account_id: int, client_order_id: str, side: int,
                 type_: int, tif: int, post_only: bool, price: int, quantity: int,
                 created_ns: int) -> None:
        self.order_id = order_id
        self.account_id = account_id
        self.client_order_id = client_order_id
        self.side = side
        self.type = type_
        self.tif = tif
        self.post_only = post_only
        self.price = price
        self.quantity = quantity
        self.filled = 0
        self.notional = 0
        self.state = NEW
        self.reason = ""
        self.priority = order_id & SEQUENCE_MASK
        self.created_ns = created_ns
        self.updated_ns = created_ns
        self.last_sequence = 0
        # The batch (OrderBook.batch) whose changed orders list it, if any.
        self.changed_in = None

    @property
    def remaining(self) -> int:
        return self.quantity - self.filled if self.state in OPEN_STATES else 0

    def same_request(self, side: int, type_: int, tif: int, price: int, quantity: int,
                     post_only: bool) -> bool:
        return (self.side, self.type, self.tif, self.price, self.quantity, self.post_only) == (
            side, type_, tif, price, quantity, post_only)

    def __repr__(self) -> str:  # pragma: no cover - debugging aid
        return (f"Order(id={self.order_id}, side={self.side}, price={self.price}, "
                f"qty={self.quantity}, filled={self.filled}, state={self.state})")


class Fill(NamedTuple):
    """One fill. The first ten fields are the trade record the store writes
    (``Changes.trades``); ``maker`` and ``taker`` are the orders themselves."""

    trade_id: int
    sequence: int
    price: int
    quantity: int
    taker_side: int
    maker_order_id: int
    taker_order_id: int
    maker_account_id: int
    taker_account_id: int
    time_ns: int
    maker: Order
    taker: Order


NO_FILLS: tuple = ()


class Outcome(NamedTuple):
    """What one command did. ``order`` is None when the command failed, except for
    the failures that concern an existing order (a client_order_id used by another
    order, an amend refused): then it is that order, unchanged."""

    order: Order | None
    # The fills the command made, in order (the empty tuple NO_FILLS when none).
    fills: list[Fill] | tuple = NO_FILLS
    # The command repeated an existing client_order_id with the same contents.
    duplicate: bool = False
    # For failures: a machine-readable reason (see matching.v1.ErrorCode).
    error: str = ""
    error_message: str = ""


# Failure reasons returned in Outcome.error.
ERR_ORDER_NOT_OPEN = "ORDER_NOT_OPEN"
ERR_DUPLICATE = "DUPLICATE_CLIENT_ORDER_ID"
ERR_INVALID = "INVALID"
ERR_POST_ONLY_WOULD_TAKE = "POST_ONLY_WOULD_TAKE"

# The order rows drain_changes() hands over, read in C rather than attribute by attribute.
_ORDER_ROW = attrgetter(
    "order_id", "account_id", "client_order_id", "side", "type", "tif", "post_only", "price",
    "quantity", "filled", "notional", "state", "reason", "priority", "last_sequence",
    "created_ns", "updated_ns")


# A price level: its order when alone at its price (most are), else a list of
# two or more orders in time priority. ``type(level) is Order`` tells which.
Level = Order | list[Order]


def level_orders(level: Level) -> list[Order]:
    """The orders of a level, in time priority."""
    return [level] if type(level) is Order else level


def level_quantity(level: Level) -> int:
    if type(level) is Order:
        return level.quantity - level.filled
    return sum([o.quantity - o.filled for o in level])


class Side:
    """One side of the book: its price levels by key, and their keys in order.

    key = price * ``sign`` (price for asks, -price for bids): on both sides the
    best level has the smallest key. ``front`` is the sorted list of the best keys
    and ``front_levels`` their levels, index for index (no dict: the levels near
    the touch, where nearly all the work is, are found by ``bisect`` in a short
    list that stays in cache, not in a large hash table). Every other key is above
    all of them, in the ladder: ``far`` maps key -> level for them, ``buckets`` maps
    key >> BUCKET_BITS -> the sorted keys of the levels in that bucket; ``heap``
    holds the bucket numbers. A level is an Order, or a list of two or more orders.
    The front is empty only when the whole side is. An emptied bucket stays (as an
    empty list, counted in ``empty``) until it reaches the top of the heap, so every
    bucket number is in the heap exactly once. ``best`` is the smallest key
    (``front[0]``), EMPTY when the side has no orders."""

    __slots__ = ("sign", "far", "front", "front_levels", "buckets", "heap", "empty", "best",
                 "touched")

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
        self.best = EMPTY
        # Levels changed since the last drain_changes(): price -> the level, or None
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

    def set(self, key: int, level: Level) -> None:
        """Replace the level at ``key`` (which has one)."""
        front = self.front
        if key <= front[-1]:
            self.front_levels[bisect_left(front, key)] = level
        else:
            self.far[key] = level

    def add_order(self, key: int, order: Order) -> None:
        """Rest ``order`` at ``key`` (its price times ``sign``), behind the orders there."""
        front = self.front
        if front and key <= front[-1]:
            i = bisect_left(front, key)
            if front[i] == key:
                level = self.front_levels[i]
                if type(level) is Order:
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
            if len(front) > _FRONT_MAX:
                self.push_back()
            return
        heap = self.heap
        if front and (len(front) >= _FRONT_MAX or heap and heap[0] <= key >> BUCKET_BITS):
            # Behind the front: in the ladder (the front is full, or the key is not
            # below the ladder's first bucket).
            level = self.far.setdefault(key, order)
            if level is order:  # a new level
                self.ladder_add(key)
            elif type(level) is Order:
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
            if len(front) >= _FRONT_MAX or heap and heap[0] <= key >> BUCKET_BITS:
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
        if len(front) > _FRONT_MAX:
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

    def refill(self) -> None:
        """The front has emptied: the best REFILL keys of the ladder's best bucket (or
        all of them, the bucket then dropped) become the front, their levels taken
        from ``far``; the emptied buckets before it are dropped."""
        heap, buckets = self.heap, self.buckets
        while heap:
            bucket = heap[0]
            keys = buckets[bucket]
            if keys:
                if len(keys) > _REFILL:
                    front = keys[:_REFILL]
                    del keys[:_REFILL]
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

    def drain_touched(self) -> list[tuple[int, int, int]]:
        """(price, quantity, order count) of each touched level, by price; 0, 0 if gone."""
        touched = self.touched
        out = []
        for price in sorted(touched):
            level = touched[price]
            if level is None:
                out.append((price, 0, 0))
            elif type(level) is Order:
                order = level  # typed in the compiled build: its fields read directly
                out.append((price, order.quantity - order.filled, 1))
            else:
                out.append((price, level_quantity(level), len(level)))
        self.touched.clear()
        return out


class OrderBook:
    """Price-time-priority book of one instrument, with its journal sequence."""

    def __init__(self, instrument_id: int, last_sequence: int = 0) -> None:
        self.instrument_id = instrument_id
        self.sequence = last_sequence
        self.bids = Side(-1)
        self.asks = Side(1)
        # The resting orders by id: the ones placed lately (at most about RECENT_MAX),
        # then the others (see ``orders``).
        self.recent: dict[int, Order] = {}
        self.older: dict[int, Order] = {}
        self.open_client_ids: dict[tuple[int, str], Order] = {}
        # Resting orders per account (for the open-order cap).
        self.open_by_account: dict[int, int] = {}
        # The instrument's status (journaled by set_status) and the last trade's price
        # (None before the first trade): the reference of the price band.
        self.status = TRADING
        self.last_price: int | None = None
        self.closed_client_ids: OrderedDict[tuple[int, str], Order] = OrderedDict()
        # Changes since the last drain_changes(): for group commit and market data.
        self.events: list[tuple] = []
        # The orders changed since then, each once, in the order of their first change;
        # ``batch`` is the token of this batch, set in Order.changed_in when listed.
        self.changed: list[Order] = []
        self.batch = object()
        self.trades: list[Fill] = []
        self.first_sequence = last_sequence + 1
        # The sequence of the snapshot this book was recovered from (0: none).
        self.snapshot_sequence = 0
        # Ids are instrument_id << SEQUENCE_BITS | sequence (exchange_common.ids.make_id).
        self._id_base = instrument_id << SEQUENCE_BITS

    # -- commands ------------------------------------------------------------

    def new_order(self, account_id: int, side: int, type_: int, tif: int, price: int,
                  quantity: int, client_order_id: str = "", post_only: bool = False,
                  now_ns: int = 0) -> Outcome:
        if (side != BUY and side != SELL) or quantity <= 0:
            return Outcome(None, error=ERR_INVALID, error_message="malformed order")
        # ``other`` is the side this order takes from: the levels with key <= ``limit``
        # (a limit order that rests does so at key -limit on its own side).
        if type_ == LIMIT:
            if price <= 0:
                return Outcome(None, error=ERR_INVALID,
                               error_message="limit order needs a price")
            if tif != GTC and tif != IOC and tif != FOK:
                tif = GTC
            if side == BUY:
                other, limit = self.asks, price
            else:
                other, limit = self.bids, -price
        elif type_ == MARKET:
            price = 0
            if tif != IOC and tif != FOK:
                tif = IOC
            if post_only:
                return Outcome(None, error=ERR_INVALID,
                               error_message="post_only applies to limit orders only")
            other = self.asks if side == BUY else self.bids
            limit = NO_LIMIT
        else:
            return Outcome(None, error=ERR_INVALID, error_message="malformed order")

        if client_order_id:
            key = (account_id, client_order_id)
            existing = self.open_client_ids.get(key) or self.closed_client_ids.get(key)
            if existing is not None:
                if existing.same_request(side, type_, tif, price, quantity, post_only):
                    return Outcome(existing, duplicate=True)
                return Outcome(existing, error=ERR_DUPLICATE,
                               error_message=f"client_order_id {client_order_id!r} is already "
                                             f"used by order {existing.order_id}")

        seq = self.sequence = self.sequence + 1
        order_id = self._id_base | seq
        # Order.__init__ inlined (the same fields, set directly: no call).
        order = Order.__new__(Order)
        order.order_id = order_id
        order.account_id = account_id
        order.client_order_id = client_order_id
        order.side = side
        order.type = type_
        order.tif = tif
        order.post_only = post_only
        order.price = price
        order.quantity = quantity
        order.filled = 0
        order.notional = 0
        order.state = NEW
        order.reason = ""
        # order_id & SEQUENCE_MASK, which is seq itself below the mask (no new int)
        order.priority = seq if seq <= SEQUENCE_MASK else order_id & SEQUENCE_MASK
        order.created_ns = now_ns
        order.updated_ns = now_ns
        order.last_sequence = seq
        order.changed_in = self.batch
        self.changed.append(order)
        crosses = other.best <= limit

        if post_only and crosses:
            order.state = REJECTED
            order.reason = "POST_ONLY_WOULD_TAKE"
            self.events.append((seq, EV_REJECTED, order_id, 0, price, quantity, account_id,
                                side, type_, tif, post_only, client_order_id, now_ns))
            self._remember_closed(order)
            if _C:
                return _new_outcome(Outcome, order, NO_FILLS)  # noqa: F821 - engine.pxd
            return _tuple_new(Outcome, (order, NO_FILLS, False, "", ""))

        self.events.append((seq, EV_ACCEPTED, order_id, 0, price, quantity, account_id, side,
                            type_, tif, post_only, client_order_id, now_ns))

        if tif == FOK and not (crosses and other.fillable(limit, quantity)):
            self._expire(order, "FOK_NOT_FILLABLE", now_ns)
            if _C:
                return _new_outcome(Outcome, order, NO_FILLS)  # noqa: F821 - engine.pxd
            return _tuple_new(Outcome, (order, NO_FILLS, False, "", ""))

        fills = self._take(order, other, limit, now_ns) if crosses else NO_FILLS
        if order.state == FILLED:
            if client_order_id:
                self._remember_closed(order)
        elif type_ == LIMIT and tif == GTC:
            # Rest: _rest() inlined, this is the most common path of all.
            own = self.bids if side == BUY else self.asks
            own.add_order(-limit, order)
            recent = self.recent
            recent[order_id] = order
            if len(recent) > _RECENT_MAX:
                self._age()
            counts = self.open_by_account
            counts[account_id] = counts.get(account_id, 0) + 1
            if client_order_id:
                self.open_client_ids[(account_id, client_order_id)] = order
        else:
            self._expire(order, "NO_LIQUIDITY" if type_ == MARKET and not fills else
                         "IOC_REMAINDER" if tif == IOC else "MARKET_REMAINDER", now_ns)
        if _C:
            return _new_outcome(Outcome, order, fills)  # noqa: F821 - engine.pxd
        return _tuple_new(Outcome, (order, fills, False, "", ""))

    def cancel(self, account_id: int, order_id: int, now_ns: int = 0) -> Outcome:
        order = self.resting_order(order_id)
        if order is None or order.account_id != account_id:
            return Outcome(None, error=ERR_ORDER_NOT_OPEN, error_message="order is not open")
        self._unrest(order)
        seq = self.sequence = self.sequence + 1
        removed = order.quantity - order.filled
        self._event(seq, EV_CANCELLED, order, 0, order.price, removed, now_ns)
        order.state = CANCELLED
        order.reason = "CANCELLED_BY_USER"
        order.updated_ns = now_ns
        order.last_sequence = seq
        self._mark_changed(order)
        self._close_client_id(order)
        if _C:
            return _new_outcome(Outcome, order, NO_FILLS)  # noqa: F821 - engine.pxd
        return _tuple_new(Outcome, (order, NO_FILLS, False, "", ""))

    def amend(self, account_id: int, order_id: int, price: int, quantity: int,
              now_ns: int = 0) -> Outcome:
        """Change a resting order of ``account_id``: ``price`` 0 keeps the price,
        ``quantity`` 0 keeps the total quantity (the new total, including what has
        filled, so it must stay above ``filled``).

        Lowering the quantity at the same price keeps the order's time priority.
        A new price or a larger quantity loses it: the order leaves its level and
        comes back with priority = this amendment's sequence, trading first as a
        taker if its new price crosses the book (a post-only order is refused
        instead, unchanged). Changing nothing succeeds with no event, so a retried
        amendment is harmless. The AMENDED event (new price, new total) comes
        before the trades it causes."""
        order = self.resting_order(order_id)
        if order is None or order.account_id != account_id:
            return Outcome(None, error=ERR_ORDER_NOT_OPEN, error_message="order is not open")
        if price < 0 or quantity < 0:
            return Outcome(order, error=ERR_INVALID,
                           error_message="price and quantity cannot be negative")
        new_price = price or order.price
        new_quantity = quantity or order.quantity
        if new_quantity <= order.filled:
            return Outcome(order, error=ERR_INVALID,
                           error_message=f"the new quantity {new_quantity} must be above the "
                                         f"{order.filled} lots already filled")
        old_price = order.price
        if new_price == old_price and new_quantity == order.quantity:
            return Outcome(order)
        if order.side == BUY:
            own, other, limit = self.bids, self.asks, new_price
        else:
            own, other, limit = self.asks, self.bids, -new_price

        if new_price == old_price and new_quantity < order.quantity:
            # In place: same level, same priority.
            seq = self.sequence = self.sequence + 1
            self._event(seq, EV_AMENDED, order, 0, new_price, new_quantity, now_ns)
            order.quantity = new_quantity
            order.updated_ns = now_ns
            order.last_sequence = seq
            self._mark_changed(order)
            own.touched[new_price] = own.get(new_price * own.sign)
            return Outcome(order)

        crosses = other.best <= limit
        if crosses and order.post_only:
            return Outcome(order, error=ERR_POST_ONLY_WOULD_TAKE,
                           error_message=f"post-only order {order_id} would take liquidity "
                                         f"at price {new_price}")
        self._unrest(order)
        seq = self.sequence = self.sequence + 1
        self._event(seq, EV_AMENDED, order, 0, new_price, new_quantity, now_ns)
        order.price = new_price
        order.quantity = new_quantity
        order.priority = seq
        order.updated_ns = now_ns
        order.last_sequence = seq
        self._mark_changed(order)
        fills = self._take(order, other, limit, now_ns) if crosses else NO_FILLS
        if order.state == FILLED:
            self._close_client_id(order)
        else:
            self._rest(order, own, -limit)
        return Outcome(order, fills)

    # -- queries -------------------------------------------------------------

    @property
    def orders(self) -> dict[int, Order]:
        """The resting orders by id: a new dict, for inspection (the engine keeps them
        in ``recent`` and ``older``)."""
        orders = dict(self.older)
        orders.update(self.recent)
        return orders

    @property
    def order_count(self) -> int:
        """How many orders rest on the book."""
        return len(self.recent) + len(self.older)

    def open_orders(self, account_id: int) -> int:
        """How many orders of ``account_id`` rest on the book."""
        return self.open_by_account.get(account_id, 0)

    def set_status(self, status: int, now_ns: int = 0) -> bool:
        """Record a new status (a STATUS event); False, and no event, if it is the
        current one."""
        if status == self.status:
            return False
        seq = self.sequence = self.sequence + 1
        self.events.append((seq, EV_STATUS, 0, 0, 0, status, 0, 0, 0, 0, False, "", now_ns))
        self.status = status
        return True

    def resting_order(self, order_id: int) -> Order | None:
        """The resting order with this id, None if there is none."""
        order = self.recent.get(order_id)
        if order is None:
            order = self.older.get(order_id)
        return order

    def best_bid(self) -> int | None:
        best = self.bids.best
        return None if best == EMPTY else -best

    def best_ask(self) -> int | None:
        best = self.asks.best
        return None if best == EMPTY else best

    def level(self, side: int, price: int) -> tuple[int, int, int] | None:
        """(price, quantity, order count) of one level, None if nobody rests there."""
        book = self.bids if side == BUY else self.asks
        level = book.get(price * book.sign)
        if level is None:
            return None
        return (price, level_quantity(level), len(level_orders(level)))

    def depth(self, side: int) -> list[tuple[int, int, int]]:
        """(price, quantity, order count) per level, best first."""
        book = self.bids if side == BUY else self.asks
        return [(lv[0].price, level_quantity(lv), len(lv)) for lv in book.sorted_levels()]

    def resting(self) -> list[Order]:
        """Resting orders: bids best first then asks best first, each level in time priority."""
        out: list[Order] = []
        for book in (self.bids, self.asks):
            for level in book.sorted_levels():
                out.extend(level)
        return out

    # -- recovery ------------------------------------------------------------

    def restore(self, orders: list[Order]) -> None:
        """Put resting orders back on an empty book (in any order: time priority
        comes from ``priority``). Built level by level, then each ladder made once."""
        assert not self.recent and not self.older, "restore needs an empty book"
        for order in sorted(orders, key=lambda o: o.priority):
            book = self.bids if order.side == BUY else self.asks
            key = order.price * book.sign
            levels = book.far  # Side.rebuild() below makes the front from it
            level = levels.get(key)
            if level is None:
                levels[key] = order
            elif type(level) is Order:
                levels[key] = [level, order]
            else:
                level.append(order)
            self.older[order.order_id] = order
            counts = self.open_by_account
            counts[order.account_id] = counts.get(order.account_id, 0) + 1
            if order.client_order_id:
                self.open_client_ids[(order.account_id, order.client_order_id)] = order
        self.bids.rebuild()
        self.asks.rebuild()

    # -- batch support -------------------------------------------------------

    def drain_changes(self) -> Changes:
        """Everything that changed since the last drain, as plain records."""
        changes = Changes(
            first_sequence=self.first_sequence,
            last_sequence=self.sequence,
            events=self.events,
            orders=[(order.order_id, order.account_id, order.client_order_id, order.side,
                     order.type, order.tif, order.post_only, order.price, order.quantity,
                     order.filled, order.notional, order.state, order.reason, order.priority,
                     order.last_sequence, order.created_ns, order.updated_ns)
                    for order in self.changed],
            trades=self.trades,
            bids=self.bids.drain_touched(),
            asks=self.asks.drain_touched(),
        )
        self.events = []
        self.changed = []
        self.batch = object()
        self.trades = []
        self.first_sequence = self.sequence + 1
        return changes

    # -- internals -----------------------------------------------------------

    def _event(self, seq: int, kind: int, order: Order, other: int, price: int, qty: int,
               now_ns: int) -> None:
        self.events.append((seq, kind, order.order_id, other, price, qty, order.account_id,
                            order.side, order.type, order.tif, order.post_only,
                            order.client_order_id, now_ns))

    def _take(self, taker: Order, other: Side, limit: int, now_ns: int) -> list[Fill]:
        """Match ``taker`` against the levels of ``other`` with key <= ``limit``, best
        first, each in time priority. The caller has checked that the best level
        is within the limit. Everything the loop needs is in local variables: this
        is the innermost loop of the exchange."""
        touched = other.touched
        recent, changed, batch = self.recent, self.changed, self.batch
        events, trades = self.events, self.trades
        base = self._id_base
        seq = self.sequence
        taker_id, account, side = taker.order_id, taker.account_id, taker.side
        type_, tif, post_only = taker.type, taker.tif, taker.post_only
        client_id = taker.client_order_id
        qty = taker.quantity - taker.filled
        notional = taker.notional
        fills: list[Fill] = []
        key = other.best
        while True:
            level = other.front_levels[0]  # the level at ``key``, the best one
            # ``queue``: the level's list of orders, None when its order is alone
            if type(level) is Order:
                maker, queue = level, None
            else:
                maker, queue = level[0], level
            price = maker.price
            while True:
                # Each new int is an allocation (and a cache miss in a deep book): the
                # branches below reuse an int already there where the result is one.
                made = maker.filled
                open_qty = maker.quantity - made if made else maker.quantity
                if qty < open_qty:
                    fill = qty
                    qty = 0
                    maker.filled = made + fill
                else:
                    fill = open_qty
                    qty -= fill
                    maker.filled = maker.quantity
                seq += 1
                maker_id = maker.order_id
                events.append((seq, EV_TRADE, taker_id, maker_id, price, fill, account, side,
                               type_, tif, post_only, client_id, now_ns))
                value = price * fill
                made = maker.notional
                maker.notional = made + value if made else value
                maker.updated_ns = now_ns
                maker.last_sequence = seq
                if maker.changed_in is not batch:
                    maker.changed_in = batch
                    changed.append(maker)
                notional = notional + value if notional else value
                if _C:
                    f = _new_fill(Fill, base | seq, seq, price, fill, side,  # noqa: F821
                                  maker_id, taker_id, maker.account_id, account, now_ns,
                                  maker, taker)
                else:
                    f = _tuple_new(Fill, (base | seq, seq, price, fill, side, maker_id,
                                          taker_id, maker.account_id, account, now_ns, maker,
                                          taker))
                fills.append(f)
                trades.append(f)
                if fill < open_qty:
                    maker.state = PARTIALLY_FILLED
                    touched[price] = level
                    break  # the taker is done
                maker.state = FILLED
                if recent.pop(maker_id, None) is None:
                    del self.older[maker_id]
                self._one_less(maker.account_id)
                if maker.client_order_id:
                    self._close_client_id(maker)
                if queue is None or len(queue) == 1:
                    # The level is gone: the best key moves on (Side.remove_level
                    # inlined for the best key: the common case).
                    touched[price] = None
                    keys = other.front
                    del keys[0]
                    del other.front_levels[0]
                    if keys:
                        other.best = keys[0]
                    else:
                        other.refill()
                    break
                del queue[0]
                if not qty:
                    touched[price] = level
                    break
                maker = queue[0]
            if not qty:
                break
            key = other.best
            if key > limit:
                break
        self.sequence = seq
        self.last_price = price
        taker.filled = taker.quantity - qty if qty else taker.quantity
        taker.notional = notional
        taker.last_sequence = seq
        taker.updated_ns = now_ns
        taker.state = PARTIALLY_FILLED if qty else FILLED
        return fills

    def _age(self) -> None:
        """``recent`` is full: its orders join ``older`` (in one pass, by id: the
        table's slots are filled in order), and it starts again empty."""
        self.older.update(self.recent)
        self.recent = {}

    def _mark_changed(self, order: Order) -> None:
        if order.changed_in is not self.batch:
            order.changed_in = self.batch
            self.changed.append(order)

    def _rest(self, order: Order, own: Side, key: int) -> None:
        own.add_order(key, order)
        self.recent[order.order_id] = order
        if len(self.recent) > _RECENT_MAX:
            self._age()
        counts = self.open_by_account
        counts[order.account_id] = counts.get(order.account_id, 0) + 1

    def _one_less(self, account_id: int) -> None:
        """An order of ``account_id`` left the book."""
        counts = self.open_by_account
        left = counts[account_id] - 1
        if left:
            counts[account_id] = left
        else:
            del counts[account_id]

    def _unrest(self, order: Order) -> None:
        """Take a resting order off its level. In a list, finding the order is a scan
        (in C, by identity) of the orders ahead of it, short in practice."""
        book = self.bids if order.side == BUY else self.asks
        key = order.price * book.sign
        level = book.get(key)
        if level is order or len(level) == 1:
            book.remove_level(key)
            book.touched[order.price] = None
        else:
            level.remove(order)
            book.touched[order.price] = level
        if self.recent.pop(order.order_id, None) is None:
            del self.older[order.order_id]
        self._one_less(order.account_id)

    def _expire(self, order: Order, reason: str, now_ns: int) -> None:
        seq = self.sequence = self.sequence + 1
        self.events.append((seq, EV_EXPIRED, order.order_id, 0, order.price,
                            order.quantity - order.filled, order.account_id, order.side,
                            order.type, order.tif, order.post_only, order.client_order_id,
                            now_ns))
        order.state = EXPIRED
        order.reason = reason
        order.updated_ns = now_ns
        order.last_sequence = seq
        if order.client_order_id:
            self._remember_closed(order)

    def _close_client_id(self, order: Order) -> None:
        if order.client_order_id:
            self.open_client_ids.pop((order.account_id, order.client_order_id), None)
            self._remember_closed(order)

    def _remember_closed(self, order: Order) -> None:
        if order.client_order_id:
            recent = self.closed_client_ids
            recent[(order.account_id, order.client_order_id)] = order
            if len(recent) > RECENT_CLOSED:
                recent.popitem(last=False)


@dataclass(slots=True)
class Changes:
    """One batch's effects, ready to be committed and published."""

    first_sequence: int
    last_sequence: int
    # (sequence, kind, order_id, other_order_id, price, quantity, account_id, side,
    #  type, time_in_force, post_only, client_order_id, time_ns): see JOURNAL_COLUMNS
    events: list[tuple]
    # order rows: see OrderBook.drain_changes for the field order
    orders: list[tuple]
    # Fill tuples: (trade_id, sequence, price, quantity, taker_side, maker_order_id,
    #  taker_order_id, maker_account_id, taker_account_id, time_ns, maker, taker)
    trades: list[Fill]
    bids: list[tuple[int, int, int]]  # (price, quantity, count) after the batch
    asks: list[tuple[int, int, int]]


# -- the compiled build ----------------------------------------------------------

def source_digest(directory: Path | None = None) -> str:
    """SHA-256 of engine.py and engine.pxd in ``directory`` (default: this package's),
    as setup.py records it in the compiled build."""
    directory = Path(__file__).resolve().parent if directory is None else directory
    h = hashlib.sha256()
    for name in ("engine.py", "engine.pxd"):
        try:
            h.update((directory / name).read_bytes())
        except OSError:
            return ""
        h.update(b"\0")
    return h.hexdigest()


def compiled_engine() -> ModuleType | None:
    """The compiled build of this very source, None if there is none (no compiler at
    install time, ``EXCHANGE_ENGINE=python``) or if it is stale (built from another
    engine.py or engine.pxd: then with a warning)."""
    if os.environ.get("EXCHANGE_ENGINE", "").lower() == "python":
        return None
    try:
        from matching_service import _engine_c
    except ImportError:
        return None
    digest = source_digest()
    if not digest or getattr(_engine_c, "SOURCE_DIGEST", None) != digest:
        warnings.warn(
            "matching_service/_engine_c was compiled from another version of engine.py or "
            "engine.pxd: the interpreted engine is used (rebuild: pip install -e .)",
            RuntimeWarning, stacklevel=2)
        return None
    return _engine_c


if __name__ == "matching_service.engine" and not COMPILED:
    # Importing the engine gives its compiled build when it is current (see the top).
    _compiled = compiled_engine()
    if _compiled is not None:
        sys.modules[__name__] = _compiled
