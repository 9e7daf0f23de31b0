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
* REJECTED  - a new order refused outright (post-only that would take).

Rules: price-time priority; partial fills; the trade price is the resting
order's price; LIMIT+GTC rests, IOC fills what it can and expires the rest,
FOK fills completely or expires with no fill; MARKET never rests; post-only
rejects a limit order that would take liquidity. ``client_order_id`` is
deduplicated per account: a retry of the same order returns the original,
different contents are refused.

The engine records what changed (orders, price levels) so the caller can
commit a whole batch of commands at once (group commit) and publish the
level changes to market data.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

from sortedcontainers import SortedDict

from exchange_common.ids import make_id

# Enum numbers equal the exchange.common.v1 proto enums (and database columns).
BUY, SELL = 1, 2
LIMIT, MARKET = 1, 2
GTC, IOC, FOK = 1, 2, 3
NEW, PARTIALLY_FILLED, FILLED, CANCELLED, EXPIRED, REJECTED = 1, 2, 3, 4, 5, 6
MAKER, TAKER = 1, 2

# Journal event kinds (database column journal.kind).
EV_ACCEPTED, EV_TRADE, EV_CANCELLED, EV_EXPIRED, EV_REJECTED = 1, 2, 3, 4, 5

OPEN_STATES = (NEW, PARTIALLY_FILLED)

# Closed orders remembered for client_order_id retries (older ones are found
# in the database by the order service before it routes a retry).
RECENT_CLOSED = 100_000


class Order:
    __slots__ = (
        "order_id", "account_id", "client_order_id", "side", "type", "tif", "post_only",
        "price", "quantity", "filled", "notional", "state", "reason", "priority",
        "created_ns", "updated_ns", "last_sequence",
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
        self.priority = order_id & ((1 << 44) - 1)
        self.created_ns = created_ns
        self.updated_ns = created_ns
        self.last_sequence = 0

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


class Level:
    """The orders resting at one price, in time priority."""

    __slots__ = ("price", "orders", "quantity")

    def __init__(self, price: int) -> None:
        self.price = price
        self.orders: OrderedDict[int, Order] = OrderedDict()
        self.quantity = 0


@dataclass(slots=True)
class Fill:
    trade_id: int
    sequence: int
    price: int
    quantity: int
    maker: Order
    taker: Order
    time_ns: int


@dataclass(slots=True)
class Outcome:
    """What one command did. ``order`` is None when the command failed."""

    order: Order | None
    fills: list[Fill] = field(default_factory=list)
    # The command repeated an existing client_order_id with the same contents.
    duplicate: bool = False
    # For failures: a machine-readable reason (see matching.v1.ErrorCode).
    error: str = ""
    error_message: str = ""


# Failure reasons returned in Outcome.error.
ERR_ORDER_NOT_OPEN = "ORDER_NOT_OPEN"
ERR_DUPLICATE = "DUPLICATE_CLIENT_ORDER_ID"
ERR_INVALID = "INVALID"


class OrderBook:
    """Price-time-priority book of one instrument, with its journal sequence."""

    def __init__(self, instrument_id: int, last_sequence: int = 0) -> None:
        self.instrument_id = instrument_id
        self.sequence = last_sequence
        self.bids: SortedDict = SortedDict()  # price -> Level, best = last
        self.asks: SortedDict = SortedDict()  # price -> Level, best = first
        self.orders: dict[int, Order] = {}  # resting orders by id
        self.open_client_ids: dict[tuple[int, str], Order] = {}
        self.closed_client_ids: OrderedDict[tuple[int, str], Order] = OrderedDict()
        # Changes since the last drain_changes(): for group commit and market data.
        self.events: list[tuple] = []
        self.changed: dict[int, Order] = {}
        self.trades: list[Fill] = []
        self.touched_bids: set[int] = set()
        self.touched_asks: set[int] = set()
        self.first_sequence = last_sequence + 1
        # The sequence of the snapshot this book was recovered from (0: none).
        self.snapshot_sequence = 0

    # -- commands ------------------------------------------------------------

    def new_order(self, account_id: int, side: int, type_: int, tif: int, price: int,
                  quantity: int, client_order_id: str = "", post_only: bool = False,
                  now_ns: int = 0) -> Outcome:
        if side not in (BUY, SELL) or type_ not in (LIMIT, MARKET) or quantity <= 0:
            return Outcome(None, error=ERR_INVALID, error_message="malformed order")
        if type_ == LIMIT:
            if price <= 0:
                return Outcome(None, error=ERR_INVALID, error_message="limit order needs a price")
            if tif not in (GTC, IOC, FOK):
                tif = GTC
        else:
            price = 0
            if tif not in (IOC, FOK):
                tif = IOC
            if post_only:
                return Outcome(None, error=ERR_INVALID,
                               error_message="post_only applies to limit orders only")

        if client_order_id:
            key = (account_id, client_order_id)
            existing = self.open_client_ids.get(key) or self.closed_client_ids.get(key)
            if existing is not None:
                if existing.same_request(side, type_, tif, price, quantity, post_only):
                    return Outcome(existing, duplicate=True)
                return Outcome(existing, error=ERR_DUPLICATE,
                               error_message=f"client_order_id {client_order_id!r} is already "
                                             f"used by order {existing.order_id}")

        seq = self._next_seq()
        order = Order(make_id(self.instrument_id, seq), account_id, client_order_id, side,
                      type_, tif, post_only, price, quantity, now_ns)
        order.last_sequence = seq
        self.changed[order.order_id] = order

        if post_only and self._crosses(side, price):
            order.state = REJECTED
            order.reason = "POST_ONLY_WOULD_TAKE"
            self._event(seq, EV_REJECTED, order, 0, price, quantity, now_ns)
            self._remember_closed(order)
            return Outcome(order)

        self._event(seq, EV_ACCEPTED, order, 0, price, quantity, now_ns)

        if tif == FOK and self._fillable(side, price if type_ == LIMIT else None) < quantity:
            self._expire(order, "FOK_NOT_FILLABLE", now_ns)
            return Outcome(order)

        fills = self._take(order, now_ns)

        remaining = order.quantity - order.filled
        if remaining == 0:
            order.state = FILLED
            self._remember_closed(order)
        elif type_ == LIMIT and tif == GTC:
            self._rest(order)
            if client_order_id:
                self.open_client_ids[(account_id, client_order_id)] = order
        else:
            self._expire(order, "NO_LIQUIDITY" if type_ == MARKET and not fills else
                         "IOC_REMAINDER" if tif == IOC else "MARKET_REMAINDER", now_ns)
        return Outcome(order, fills)

    def cancel(self, account_id: int, order_id: int, now_ns: int = 0) -> Outcome:
        order = self.orders.get(order_id)
        if order is None or order.account_id != account_id:
            return Outcome(None, error=ERR_ORDER_NOT_OPEN, error_message="order is not open")
        self._unrest(order)
        seq = self._next_seq()
        removed = order.quantity - order.filled
        self._event(seq, EV_CANCELLED, order, 0, order.price, removed, now_ns)
        order.state = CANCELLED
        order.reason = "CANCELLED_BY_USER"
        order.updated_ns = now_ns
        order.last_sequence = seq
        self.changed[order_id] = order
        self._close_client_id(order)
        return Outcome(order)

    # -- queries -------------------------------------------------------------

    def best_bid(self) -> int | None:
        return self.bids.peekitem(-1)[0] if self.bids else None

    def best_ask(self) -> int | None:
        return self.asks.peekitem(0)[0] if self.asks else None

    def level(self, side: int, price: int) -> Level | None:
        return (self.bids if side == BUY else self.asks).get(price)

    def depth(self, side: int) -> list[tuple[int, int, int]]:
        """(price, quantity, order count) per level, best first."""
        book = self.bids if side == BUY else self.asks
        prices = reversed(book.keys()) if side == BUY else iter(book.keys())
        return [(p, book[p].quantity, len(book[p].orders)) for p in prices]

    def resting(self) -> list[Order]:
        """Resting orders: bids best first then asks best first, each level in time priority."""
        out: list[Order] = []
        for side in (BUY, SELL):
            book = self.bids if side == BUY else self.asks
            prices = reversed(book.keys()) if side == BUY else iter(book.keys())
            for p in prices:
                out.extend(book[p].orders.values())
        return out

    # -- recovery ------------------------------------------------------------

    def restore(self, orders: list[Order]) -> None:
        """Put resting orders back on an empty book (in any order: time priority
        comes from ``priority``). Built level by level, then each side sorted once."""
        assert not self.orders, "restore needs an empty book"
        sides: tuple[dict[int, Level], dict[int, Level]] = ({}, {})
        for order in sorted(orders, key=lambda o: o.priority):
            levels = sides[0] if order.side == BUY else sides[1]
            level = levels.get(order.price)
            if level is None:
                level = levels[order.price] = Level(order.price)
            level.orders[order.order_id] = order
            level.quantity += order.quantity - order.filled
            self.orders[order.order_id] = order
            if order.client_order_id:
                self.open_client_ids[(order.account_id, order.client_order_id)] = order
        self.bids.update(sides[0])
        self.asks.update(sides[1])

    # -- batch support -------------------------------------------------------

    def drain_changes(self) -> Changes:
        """Everything that changed since the last drain, as plain records."""
        changes = Changes(
            first_sequence=self.first_sequence,
            last_sequence=self.sequence,
            events=self.events,
            orders=[(o.order_id, o.account_id, o.client_order_id, o.side, o.type, o.tif,
                     o.post_only, o.price, o.quantity, o.filled, o.notional, o.state,
                     o.reason, o.priority, o.last_sequence, o.created_ns, o.updated_ns)
                    for o in self.changed.values()],
            trades=[(f.trade_id, f.sequence, f.price, f.quantity, f.taker.side,
                     f.maker.order_id, f.taker.order_id, f.maker.account_id,
                     f.taker.account_id, f.time_ns) for f in self.trades],
            bids=[self._level_state(self.bids, p) for p in sorted(self.touched_bids)],
            asks=[self._level_state(self.asks, p) for p in sorted(self.touched_asks)],
        )
        self.events = []
        self.changed = {}
        self.trades = []
        self.touched_bids = set()
        self.touched_asks = set()
        self.first_sequence = self.sequence + 1
        return changes

    # -- internals -----------------------------------------------------------

    def _next_seq(self) -> int:
        self.sequence += 1
        return self.sequence

    def _event(self, seq: int, kind: int, order: Order, other: int, price: int, qty: int,
               now_ns: int) -> None:
        self.events.append((seq, kind, order.order_id, other, price, qty, order.account_id,
                            order.side, order.type, order.tif, order.post_only,
                            order.client_order_id, now_ns))

    def _crosses(self, side: int, price: int) -> bool:
        if side == BUY:
            return bool(self.asks) and self.asks.peekitem(0)[0] <= price
        return bool(self.bids) and self.bids.peekitem(-1)[0] >= price

    def _fillable(self, side: int, limit: int | None) -> int:
        """Lots available to a taker on ``side`` at prices no worse than ``limit``."""
        total = 0
        if side == BUY:
            for price, level in self.asks.items():
                if limit is not None and price > limit:
                    break
                total += level.quantity
        else:
            for price in reversed(self.bids.keys()):
                if limit is not None and price < limit:
                    break
                total += self.bids[price].quantity
        return total

    def _take(self, taker: Order, now_ns: int) -> list[Fill]:
        fills: list[Fill] = []
        if taker.side == BUY:
            book, touched, best_index = self.asks, self.touched_asks, 0
        else:
            book, touched, best_index = self.bids, self.touched_bids, -1
        limit = taker.price if taker.type == LIMIT else None
        qty = taker.quantity - taker.filled
        while qty and book:
            price, level = book.peekitem(best_index)
            if limit is not None and (price > limit if taker.side == BUY else price < limit):
                break
            touched.add(price)
            orders = level.orders
            while qty and orders:
                maker = next(iter(orders.values()))
                open_qty = maker.quantity - maker.filled
                fill = qty if qty < open_qty else open_qty
                qty -= fill
                seq = self._next_seq()
                trade_id = make_id(self.instrument_id, seq)
                self._event(seq, EV_TRADE, taker, maker.order_id, price, fill, now_ns)
                maker.filled += fill
                maker.notional += price * fill
                maker.updated_ns = now_ns
                maker.last_sequence = seq
                taker.filled += fill
                taker.notional += price * fill
                taker.last_sequence = seq
                level.quantity -= fill
                self.changed[maker.order_id] = maker
                if maker.filled == maker.quantity:
                    maker.state = FILLED
                    orders.popitem(last=False)
                    del self.orders[maker.order_id]
                    self._close_client_id(maker)
                else:
                    maker.state = PARTIALLY_FILLED
                f = Fill(trade_id, seq, price, fill, maker, taker, now_ns)
                fills.append(f)
                self.trades.append(f)
            if not orders:
                del book[price]
        taker.updated_ns = now_ns
        if taker.filled and taker.filled < taker.quantity:
            taker.state = PARTIALLY_FILLED
        return fills

    def _rest(self, order: Order) -> None:
        if order.side == BUY:
            book, touched = self.bids, self.touched_bids
        else:
            book, touched = self.asks, self.touched_asks
        level = book.get(order.price)
        if level is None:
            level = book[order.price] = Level(order.price)
        level.orders[order.order_id] = order
        level.quantity += order.quantity - order.filled
        self.orders[order.order_id] = order
        touched.add(order.price)

    def _unrest(self, order: Order) -> None:
        if order.side == BUY:
            book, touched = self.bids, self.touched_bids
        else:
            book, touched = self.asks, self.touched_asks
        level = book[order.price]
        del level.orders[order.order_id]
        level.quantity -= order.quantity - order.filled
        if not level.orders:
            del book[order.price]
        del self.orders[order.order_id]
        touched.add(order.price)

    def _expire(self, order: Order, reason: str, now_ns: int) -> None:
        seq = self._next_seq()
        self._event(seq, EV_EXPIRED, order, 0, order.price, order.quantity - order.filled,
                    now_ns)
        order.state = EXPIRED
        order.reason = reason
        order.updated_ns = now_ns
        order.last_sequence = seq
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

    @staticmethod
    def _level_state(book: SortedDict, price: int) -> tuple[int, int, int]:
        level = book.get(price)
        if level is None:
            return (price, 0, 0)
        return (price, level.quantity, len(level.orders))


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
    # (trade_id, sequence, price, quantity, taker_side, maker_order_id,
    #  taker_order_id, maker_account_id, taker_account_id, time_ns)
    trades: list[tuple]
    bids: list[tuple[int, int, int]]  # (price, quantity, count) after the batch
    asks: list[tuple[int, int, int]]
