"""The order book of one instrument: the commands, the matching, the journal sequence.

Rules: price-time priority; partial fills; the trade price is the resting order's
price; LIMIT+GTC rests, IOC fills what it can and expires the rest, FOK fills
completely or expires with no fill; MARKET never rests; post-only rejects a limit
order that would take liquidity. ``client_order_id`` is deduplicated per account: a
retry of the same order returns the original, different contents are refused.
Amending keeps the order's time priority only when it just lowers the quantity at the
same price; a new price or a larger quantity sends it to the back of its (new) level,
and a new price that crosses the book trades first, as a taker.

Every command is turned into journal events (events.JournalEvent), each with the next
per-instrument sequence number; order ids and trade ids are made from the sequence of
the event that created them. The book records what changed (events, orders, trades,
price levels) so the caller can commit a whole batch of commands at once (group commit)
and publish the level changes to market data: ``drain_changes``.

How the book keeps its orders, and why:

* the price levels of each side are a ``Side`` (side.py);
* the resting orders by id are two dicts: ``recent``, the ones placed lately (at most
  ``RECENT_MAX``), and ``older``, which the recent ones join in one pass when
  ``recent`` is full. Most orders leave the book soon after they come, so in a deep
  book nearly every insert and delete is in the small table, which stays in cache,
  not in the large one (``OrderBook.orders`` is a merged copy, for inspection);
* the orders changed in a batch are a list, each listed once: an order's
  ``changed_in`` is the token of the batch that lists it (``OrderBook.batch``, a new
  one per drain), cheaper than a dict keyed by order id.

The instrument's status (trading, cancel-only, halted) is only recorded here
(``set_status``, a STATUS event): which commands a status refuses is the caller's rule
(matching_service/loop.py), so replaying the journal, which holds only what was
accepted, never depends on it.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from typing import Final

from exchange_common.ids import SEQUENCE_BITS, SEQUENCE_MASK

from .enums import (
    BUY,
    CANCELLED,
    EV_ACCEPTED,
    EV_AMENDED,
    EV_CANCELLED,
    EV_EXPIRED,
    EV_REJECTED,
    EV_SELF_TRADE,
    EV_STATUS,
    EV_TIMED_OUT,
    EV_TRADE,
    EV_TRIGGERED,
    EXPIRED,
    FILLED,
    FOK,
    GTC,
    GTT,
    IOC,
    LIMIT,
    MARKET,
    NEW,
    PARTIALLY_FILLED,
    REJECTED,
    SELL,
    STP_CANCEL_INCOMING,
    STP_CANCEL_RESTING,
    STP_DECREMENT,
    STP_NONE,
    STP_UNSPECIFIED,
    TRADING,
    UNTRIGGERED,
)
from .events import (
    ERR_DUPLICATE,
    ERR_INSUFFICIENT_FUNDS,
    ERR_INVALID,
    ERR_ORDER_NOT_OPEN,
    ERR_POST_ONLY_WOULD_TAKE,
    NO_FILLS,
    Changes,
    JournalEvent,
    Outcome,
    Trade,
)
from .expiry import Expiries
from .money import Settlement, Terms, fee
from .order import Order
from .side import EMPTY, Side, level_orders, level_quantity
from .stops import StopBook, priority_of, would_trigger

# At most this many resting orders are kept in ``OrderBook.recent`` (see the top).
RECENT_MAX: Final = 4096
# Closed orders remembered for client_order_id retries (older ones are found in the
# database by the order service before it routes a retry).
RECENT_CLOSED: Final = 100_000
# A key limit beyond any price: a market order takes whatever the other side has.
NO_LIMIT: Final = 1 << 62


def order_id_of(order: Order) -> int:
    return order.order_id


class OrderBook:
    """Price-time-priority book of one instrument, with its journal sequence."""

    def __init__(self, instrument_id: int, last_sequence: int = 0,
                 terms: Terms | None = None) -> None:
        self.instrument_id = instrument_id
        # The instrument's money terms (engine.money); None: a book without money (every
        # order is taken as funded), as the engine's own tests drive it.
        self.terms = terms
        self.settlement = Settlement()
        self.sequence = last_sequence
        self.bids = Side(-1)
        self.asks = Side(1)
        # The resting orders by id: the ones placed lately (at most about RECENT_MAX),
        # then the others (see ``orders``).
        self.recent: dict[int, Order] = {}
        self.older: dict[int, Order] = {}
        self.open_client_ids: dict[tuple[int, str], Order] = {}
        # Open orders (resting, and untriggered stops) per account (for the open-order
        # cap).
        self.open_by_account: dict[int, int] = {}
        # Untriggered stops (stops.py) and the expiries of open GTT orders (expiry.py).
        self.stops = StopBook()
        self.expiries = Expiries()
        # The instrument's status (journaled by set_status) and the last trade's price
        # (None before the first trade): the reference of the price band.
        self.status = TRADING
        self.last_price: int | None = None
        self.closed_client_ids: OrderedDict[tuple[int, str], Order] = OrderedDict()
        # Changes since the last drain_changes(): for group commit and market data.
        self.events: list[JournalEvent] = []
        # The orders changed since then, each once, in the order of their first change;
        # ``batch`` is the token of this batch, set in Order.changed_in when listed.
        self.changed: list[Order] = []
        self.batch = object()
        self.trades: list[Trade] = []
        self.first_sequence = last_sequence + 1
        # The sequence of the snapshot this book was recovered from (0: none).
        self.snapshot_sequence = 0
        # Ids are instrument_id << SEQUENCE_BITS | sequence (exchange_common.ids.make_id).
        self.id_base = instrument_id << SEQUENCE_BITS

    # -- commands ------------------------------------------------------------

    def new_order(self, account_id: int, side: int, order_type: int, time_in_force: int,
                  price: int, quantity: int, client_order_id: str = "",
                  post_only: bool = False, now_ns: int = 0, held: int = 0,
                  hold_price: int = 0, funds: int = 0, maker_fee_bps: int = 0,
                  taker_fee_bps: int = 0, self_trade_prevention: int = 0,
                  stop_price: int = 0, expire_ns: int = 0) -> Outcome:
        """A new order. With money terms, ``held`` is what the order path put on hold
        for it; an order that needs more is refused (INSUFFICIENT_FUNDS, no event), and
        what it holds beyond its need is released at once. ``hold_price`` is a market
        buy's protection price: it pays no more than that (0: no reference price, so
        it cannot trade); ``funds`` a market buy's budget instead.

        ``self_trade_prevention`` is what happens when it would trade with an order of
        its own account (``_prevent``; 0: CANCEL_RESTING). ``stop_price`` > 0 makes a
        stop (MARKET) or stop-limit (LIMIT) order: it waits UNTRIGGERED in the stop
        book (``_place_stop``). ``expire_ns`` is a GTT order's expiry (required with
        GTT, refused otherwise); one already due at ``now_ns`` is rejected
        (GOOD_TILL_TIME)."""
        if (side != BUY and side != SELL) or quantity <= 0 or stop_price < 0:
            return Outcome(None, error=ERR_INVALID, error_message="malformed order")
        stp = self_trade_prevention
        if stp == STP_UNSPECIFIED:
            stp = STP_CANCEL_RESTING
        elif stp < STP_NONE or stp > STP_DECREMENT:
            return Outcome(None, error=ERR_INVALID,
                           error_message="unknown self-trade prevention mode")
        # ``other`` is the side this order takes from: the levels with key <= ``limit``
        # (a limit order that rests does so at key -limit on its own side).
        other: Side
        if order_type == LIMIT:
            if price <= 0:
                return Outcome(None, error=ERR_INVALID,
                               error_message="limit order needs a price")
            if (time_in_force != GTC and time_in_force != IOC and time_in_force != FOK
                    and time_in_force != GTT):
                time_in_force = GTC
            if side == BUY:
                other, limit = self.asks, price
            else:
                other, limit = self.bids, -price
        elif order_type == MARKET:
            price = 0
            if time_in_force != IOC and time_in_force != FOK:
                time_in_force = IOC
            if post_only:
                return Outcome(None, error=ERR_INVALID,
                               error_message="post_only applies to limit orders only")
            other = self.asks if side == BUY else self.bids
            limit = NO_LIMIT
            if side == BUY and self.terms is not None and not funds:
                limit = hold_price  # the protection price (0: nothing crosses)
        else:
            return Outcome(None, error=ERR_INVALID, error_message="malformed order")
        if funds and (side != BUY or order_type != MARKET or time_in_force == FOK):
            return Outcome(None, error=ERR_INVALID,
                           error_message="funds apply to IOC market buys only")
        if (time_in_force == GTT) != (expire_ns > 0):
            return Outcome(None, error=ERR_INVALID,
                           error_message="an expire time goes with time in force GTT, "
                                         "and only with it")

        if client_order_id:
            key = (account_id, client_order_id)
            existing = self.open_client_ids.get(key) or self.closed_client_ids.get(key)
            if existing is not None:
                if existing.same_request(side, order_type, time_in_force, price, quantity,
                                         post_only, funds, stop_price, expire_ns):
                    return Outcome(existing, duplicate=True)
                return Outcome(existing, error=ERR_DUPLICATE,
                               error_message=f"client_order_id {client_order_id!r} is already "
                                             f"used by order {existing.order_id}")

        terms = self.terms
        need = 0
        if terms is not None:
            if side == SELL:
                hold_price = 0
            elif order_type == LIMIT:
                hold_price = price
            elif funds:
                hold_price = 0
            need = terms.need(side == BUY, quantity, hold_price, funds, maker_fee_bps,
                              taker_fee_bps)
            if held < need:
                return Outcome(None, error=ERR_INSUFFICIENT_FUNDS,
                               error_message=f"the order needs {need} on hold, it brought "
                                             f"{held}")
        seq = self.sequence = self.sequence + 1
        order_id = self.id_base | seq
        order = Order(order_id=order_id, account_id=account_id,
                      client_order_id=client_order_id, side=side, order_type=order_type,
                      time_in_force=time_in_force, post_only=post_only, price=price,
                      quantity=quantity, priority=order_id & SEQUENCE_MASK,
                      last_sequence=seq, created_ns=now_ns, updated_ns=now_ns,
                      held=held, hold_placed=held, hold_price=hold_price, funds=funds,
                      maker_fee_bps=maker_fee_bps, taker_fee_bps=taker_fee_bps,
                      stop_price=stop_price, expire_ns=expire_ns, self_trade_prevention=stp)
        order.changed_in = self.batch
        self.changed.append(order)
        if expire_ns and expire_ns <= now_ns:
            self._reject(order, "GOOD_TILL_TIME", now_ns)
            return Outcome(order)
        if stop_price:
            self._place_stop(order, need, now_ns)
            return Outcome(order)
        crosses = other.best <= limit

        if post_only and crosses:
            self._reject(order, "POST_ONLY_WOULD_TAKE", now_ns)
            return Outcome(order)

        self._event(seq, EV_ACCEPTED, order, 0, price, quantity, now_ns)
        if held > need:  # what it brought beyond its need goes back at once
            self._release(order, held - need)
        fills = self._enter(order, other, limit, crosses, now_ns)
        if fills and self.stops.orders:
            self._trigger_stops(fills, now_ns)
        return Outcome(order, fills)

    def _enter(self, order: Order, other: Side, limit: int, crosses: bool,
               now_ns: int) -> Sequence[Trade]:
        """An accepted (or triggered) order takes what it may from ``other`` and then
        rests (GTC, GTT) or expires (the rest); its fills."""
        time_in_force = order.time_in_force
        if time_in_force == FOK and not (crosses and self._fillable(order, other, limit)):
            self._expire(order, "NO_REFERENCE_PRICE" if limit == 0 else "FOK_NOT_FILLABLE",
                         now_ns)
            return NO_FILLS
        fills = self._take(order, other, limit, now_ns) if crosses else NO_FILLS
        state = order.state
        if state == FILLED:
            if order.client_order_id:
                self._close_client_id(order)
            if order.held:
                self._release(order)
        elif state == EXPIRED:  # self-trade prevention ended it (``_prevent``)
            self._close_client_id(order)
        elif order.order_type == LIMIT and (time_in_force == GTC or time_in_force == GTT):
            self._rest(order, self.bids if order.side == BUY else self.asks, -limit)
            if order.client_order_id:
                self.open_client_ids[(order.account_id, order.client_order_id)] = order
            if order.expire_ns and not order.stop_price:  # a stop's is kept from placement
                self._schedule(order)
        else:
            funds = order.funds
            self._expire(order, "NO_REFERENCE_PRICE" if limit == 0 else
                         "FUNDS_EXHAUSTED" if funds and other.best <= limit else
                         "NO_LIQUIDITY" if order.order_type == MARKET and not fills else
                         "IOC_REMAINDER" if time_in_force == IOC else "MARKET_REMAINDER",
                         now_ns)
        return fills

    def _fillable(self, order: Order, other: Side, limit: int) -> bool:
        """Whether a FOK order can fill whole now. Under self-trade prevention it counts
        only what it may take: not its own orders with CANCEL_RESTING (they would be
        cancelled, not traded), nothing from its first own order on with CANCEL_INCOMING
        or CANCEL_BOTH (it would stop there); with DECREMENT its own orders count (each
        uses up as much of it as a fill would), as with NONE."""
        need = order.quantity - order.filled
        stp = order.self_trade_prevention
        if stp == STP_NONE or stp == STP_DECREMENT:
            return other.fillable(limit, need)
        return other.fillable_for(limit, need, order.account_id, stp != STP_CANCEL_RESTING)

    def _reject(self, order: Order, reason: str, now_ns: int) -> None:
        """Refuse a new order outright (a REJECTED event; it holds nothing)."""
        order.state = REJECTED
        order.reason = reason
        self._event(order.last_sequence, EV_REJECTED, order, 0, order.price, order.quantity,
                    now_ns)
        self._remember_closed(order)
        self._release(order)

    def _place_stop(self, order: Order, need: int, now_ns: int) -> None:
        """A stop waits UNTRIGGERED in the stop book, holding what it needs, unless the
        last trade has already reached its stop price: then it is rejected
        (STOP_WOULD_TRIGGER). Before any trade every stop is accepted."""
        last = self.last_price
        if last is not None and would_trigger(order.side, order.stop_price, last):
            self._reject(order, "STOP_WOULD_TRIGGER", now_ns)
            return
        order.state = UNTRIGGERED
        self._event(order.last_sequence, EV_ACCEPTED, order, 0, order.price, order.quantity,
                    now_ns)
        if order.held > need:
            self._release(order, order.held - need)
        self._hold_stop(order)

    def _hold_stop(self, order: Order) -> None:
        """Put an untriggered stop in the stop book (it counts as an open order)."""
        self.stops.add(order)
        counts = self.open_by_account
        counts[order.account_id] = counts.get(order.account_id, 0) + 1
        if order.client_order_id:
            self.open_client_ids[(order.account_id, order.client_order_id)] = order
        if order.expire_ns:
            self._schedule(order)

    def _trigger_stops(self, fills: Sequence[Trade], now_ns: int) -> None:
        """Fire the stops that ``fills`` reach, and the ones their fills reach, and so
        on: each trade in sequence order fires its stops in placement order; a fired
        stop enters the book at once, after the stops fired before it."""
        fired: list[Order] = []
        prices: list[int] = []
        self._fired_by(fills, fired, prices)
        i = 0
        while i < len(fired):
            more = self._trigger(fired[i], prices[i], now_ns)
            i += 1
            if more and self.stops.orders:
                self._fired_by(more, fired, prices)

    def _fired_by(self, fills: Sequence[Trade], fired: list[Order], prices: list[int]
                  ) -> None:
        stops = self.stops
        for trade in fills:
            if not stops.orders:
                return
            for order in stops.fire(trade.price):
                fired.append(order)
                prices.append(trade.price)

    def _trigger(self, order: Order, price: int, now_ns: int) -> Sequence[Trade]:
        """A stop (already out of the stop book) fires at trade ``price``: a TRIGGERED
        event, then it enters as a new taker with priority = that event's sequence. A
        post-only stop-limit that would take expires instead (POST_ONLY_WOULD_TAKE)."""
        seq = self.sequence = self.sequence + 1
        self._event(seq, EV_TRIGGERED, order, 0, price, order.quantity - order.filled, now_ns)
        order.state = NEW
        order.priority = seq
        order.last_sequence = seq
        order.updated_ns = now_ns
        self._mark_changed(order)
        self._one_less(order.account_id)  # counted again if it rests
        other: Side
        if order.side == BUY:
            other = self.asks
            limit = order.price if order.order_type == LIMIT else self._market_limit(order)
        else:
            other = self.bids
            limit = -order.price if order.order_type == LIMIT else NO_LIMIT
        crosses = other.best <= limit
        if order.post_only and crosses:
            self._expire(order, "POST_ONLY_WOULD_TAKE", now_ns)
            return NO_FILLS
        return self._enter(order, other, limit, crosses, now_ns)

    def _market_limit(self, order: Order) -> int:
        """A market buy's limit: its protection price when the book keeps money and it
        has no budget, else none."""
        if self.terms is not None and not order.funds:
            return order.hold_price
        return NO_LIMIT

    def cancel(self, account_id: int, order_id: int, now_ns: int = 0) -> Outcome:
        """Cancel an open order of ``account_id``: a resting one, or an untriggered
        stop."""
        order = self.resting_order(order_id)
        if order is None:
            order = self.stops.get(order_id)
            if order is None or order.account_id != account_id:
                return Outcome(None, error=ERR_ORDER_NOT_OPEN,
                               error_message="order is not open")
            self.stops.remove(order)
            self._one_less(account_id)
        elif order.account_id != account_id:
            return Outcome(None, error=ERR_ORDER_NOT_OPEN, error_message="order is not open")
        else:
            self._unrest(order)
        self._close(order, EV_CANCELLED, CANCELLED, "CANCELLED_BY_USER", now_ns)
        return Outcome(order)

    def cancel_all(self, account_id: int, side: int = 0, now_ns: int = 0) -> list[Order]:
        """Cancel every open order of ``account_id`` (resting, and untriggered stops),
        of one side when ``side`` is BUY or SELL: one CANCELLED event each, in order id
        order. Returns them (empty: none was open). Finding them is a pass over the
        book's orders: mass cancels are rare, and an index per account would cost every
        order that rests."""
        if not self.open_by_account.get(account_id):
            return []
        mine = [o for orders in (self.recent, self.older, self.stops.orders)
                for o in orders.values()
                if o.account_id == account_id and (not side or o.side == side)]
        mine.sort(key=order_id_of)
        for order in mine:
            self.cancel(account_id, order.order_id, now_ns)
        return mine

    def time_out(self, order_id: int, now_ns: int = 0) -> Outcome:
        """Expire an open good-till-time order (a TIMED_OUT event, reason
        GOOD_TILL_TIME): the owning pod's clock reached its expiry
        (``expire_due``), or a replay re-executes the event."""
        order = self.resting_order(order_id)
        if order is None:
            order = self.stops.get(order_id)
            if order is None or not order.expire_ns:
                return Outcome(None, error=ERR_ORDER_NOT_OPEN,
                               error_message="order is not open")
            self.stops.remove(order)
            self._one_less(order.account_id)
        elif not order.expire_ns:
            return Outcome(None, error=ERR_INVALID,
                           error_message="the order has no expire time")
        else:
            self._unrest(order)
        self._close(order, EV_TIMED_OUT, EXPIRED, "GOOD_TILL_TIME", now_ns)
        return Outcome(order)

    def expire_due(self, now_ns: int) -> list[Order]:
        """Expire every open GTT order whose expiry is <= ``now_ns``, in expiry order
        then order id: the matching loop calls it at the start of each batch, before
        any command, so an order past its expiry never trades."""
        expiries = self.expiries
        if not expiries.heap or expiries.heap[0][0] > now_ns:
            return []
        out: list[Order] = []
        for expire_ns, order_id in expiries.pop_due(now_ns):
            order = self._open_order(order_id)
            if order is not None and order.expire_ns == expire_ns:
                self.time_out(order_id, now_ns)
                out.append(order)
        return out

    def next_expiry(self) -> int:
        """When the next open GTT order expires (0: none)."""
        expiries = self.expiries
        while expiries.heap:
            expire_ns, order_id = expiries.heap[0]
            order = self._open_order(order_id)
            if order is not None and order.expire_ns == expire_ns:
                return expire_ns
            expiries.pop_first()
        return 0

    def amend(self, account_id: int, order_id: int, price: int, quantity: int,
              now_ns: int = 0, extra_held: int = 0) -> Outcome:
        """Change a resting order of ``account_id``: ``price`` 0 keeps the price,
        ``quantity`` 0 keeps the total quantity (the new total, including what has
        filled, so it must stay above ``filled``).

        Lowering the quantity at the same price keeps the order's time priority. A new
        price or a larger quantity loses it: the order leaves its level and comes back
        with priority = this amendment's sequence, trading first as a taker if its new
        price crosses the book (a post-only order is refused instead, unchanged).
        Changing nothing succeeds with no event, so a retried amendment is harmless.
        The AMENDED event (new price, new total) comes before the trades it causes.

        With money terms, the order must then hold what its new open quantity needs at
        its new price: ``extra_held``, a hold the order path took for the amendment, is
        added to what it holds, an amendment whose need exceeds both is refused
        (INSUFFICIENT_FUNDS), and what it holds beyond its need is released."""
        order = self.resting_order(order_id)
        if order is None:
            stop = self.stops.get(order_id)
            if stop is not None and stop.account_id == account_id:
                return Outcome(stop, error=ERR_INVALID,
                               error_message="cancel and replace a stop order")
            return Outcome(None, error=ERR_ORDER_NOT_OPEN, error_message="order is not open")
        if order.account_id != account_id:
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
        terms = self.terms
        if new_price == old_price and new_quantity == order.quantity:
            if extra_held and terms is not None:
                order.held += extra_held
                self._release(order, extra_held)
            return Outcome(order)
        need = 0
        if terms is not None:
            need = terms.need(order.side == BUY, new_quantity - order.filled, new_price,
                              order.funds, order.maker_fee_bps, order.taker_fee_bps)
            if need > order.held + extra_held:
                return Outcome(order, error=ERR_INSUFFICIENT_FUNDS,
                               error_message=f"the amended order needs {need} on hold, it "
                                             f"holds {order.held} and brought {extra_held}")
        if order.side == BUY:
            own, other, limit = self.bids, self.asks, new_price
        else:
            own, other, limit = self.asks, self.bids, -new_price

        if new_price == old_price and new_quantity < order.quantity:
            # In place: same level, same priority.
            seq = self.sequence = self.sequence + 1
            self._event(seq, EV_AMENDED, order, 0, new_price, new_quantity, now_ns,
                        extra_held)
            order.quantity = new_quantity
            order.updated_ns = now_ns
            order.last_sequence = seq
            self._mark_changed(order)
            own.touched[new_price] = own.get(new_price * own.sign)
            self._rehold(order, extra_held, need)
            return Outcome(order)

        crosses = other.best <= limit
        if crosses and order.post_only:
            return Outcome(order, error=ERR_POST_ONLY_WOULD_TAKE,
                           error_message=f"post-only order {order_id} would take liquidity "
                                         f"at price {new_price}")
        self._unrest(order)
        seq = self.sequence = self.sequence + 1
        self._event(seq, EV_AMENDED, order, 0, new_price, new_quantity, now_ns, extra_held)
        order.price = new_price
        order.quantity = new_quantity
        order.priority = seq
        order.updated_ns = now_ns
        order.last_sequence = seq
        self._mark_changed(order)
        if terms is not None:
            if order.side == BUY:
                order.hold_price = new_price
            self._rehold(order, extra_held, need)
        fills = self._take(order, other, limit, now_ns) if crosses else NO_FILLS
        if order.state == FILLED:
            self._close_client_id(order)
            if order.held:
                self._release(order)
        elif order.state == EXPIRED:  # self-trade prevention ended it
            self._close_client_id(order)
        else:
            self._rest(order, own, -limit)
        if fills and self.stops.orders:
            self._trigger_stops(fills, now_ns)
        return Outcome(order, fills)

    def set_status(self, status: int, now_ns: int = 0) -> bool:
        """Record a new status (a STATUS event); False, and no event, if it is the
        current one."""
        if status == self.status:
            return False
        seq = self.sequence = self.sequence + 1
        self.events.append(JournalEvent(sequence=seq, kind=EV_STATUS, quantity=status,
                                        created_ns=now_ns))
        self.status = status
        return True

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
        """How many orders of ``account_id`` are open: resting on the book, or stops
        waiting for their trigger."""
        return self.open_by_account.get(account_id, 0)

    def resting_order(self, order_id: int) -> Order | None:
        """The resting order with this id, None if there is none."""
        order = self.recent.get(order_id)
        if order is None:
            order = self.older.get(order_id)
        return order

    def _open_order(self, order_id: int) -> Order | None:
        """The open order with this id (resting, or an untriggered stop)."""
        order = self.resting_order(order_id)
        if order is None:
            order = self.stops.get(order_id)
        return order

    def untriggered(self) -> list[Order]:
        """The stops waiting for their trigger, in placement order (not on the book:
        neither in ``resting`` nor in the levels)."""
        return self.stops.in_order()

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
        """Resting orders: bids best first then asks best first, each level in time
        priority."""
        out: list[Order] = []
        for book in (self.bids, self.asks):
            for level in book.sorted_levels():
                out.extend(level)
        return out

    # -- recovery and batches -----------------------------------------------------

    def restore(self, orders: list[Order]) -> None:
        """Put open orders back on an empty book (in any order: time priority comes
        from ``priority``): resting ones on their levels (built level by level, then
        each ladder made once), UNTRIGGERED ones in the stop book; the expiries of GTT
        orders are scheduled again."""
        assert not self.recent and not self.older and not self.stops.orders, \
            "restore needs an empty book"
        for order in sorted(orders, key=priority_of):
            if order.state == UNTRIGGERED:
                self._hold_stop(order)
                continue
            if order.expire_ns:
                self._schedule(order)
            book = self.bids if order.side == BUY else self.asks
            key = order.price * book.sign
            levels = book.far  # Side.rebuild() below makes the front from it
            level = levels.get(key)
            if level is None:
                levels[key] = order
            elif isinstance(level, Order):
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

    def drain_changes(self) -> Changes:
        """Everything that changed since the last drain, as records."""
        changes = Changes(
            first_sequence=self.first_sequence,
            last_sequence=self.sequence,
            events=self.events,
            orders=[order.row() for order in self.changed],
            trades=self.trades,
            bids=self.bids.drain_touched(),
            asks=self.asks.drain_touched(),
            money=self.settlement.drain(),
        )
        self.events = []
        self.changed = []
        self.batch = object()
        self.trades = []
        self.first_sequence = self.sequence + 1
        return changes

    # -- internals -----------------------------------------------------------

    def _event(self, seq: int, kind: int, order: Order, other_order_id: int, price: int,
               quantity: int, now_ns: int, held: int = 0) -> None:
        """A journal event about ``order``, carrying its command's fields (an accepted
        or rejected order's: its money, stop price, expiry and self-trade prevention
        too; an amendment's: ``held``, its extra hold)."""
        if kind == EV_ACCEPTED or kind == EV_REJECTED:
            self.events.append(JournalEvent(
                sequence=seq, kind=kind, order_id=order.order_id,
                other_order_id=other_order_id, price=price, quantity=quantity,
                account_id=order.account_id, side=order.side, order_type=order.order_type,
                time_in_force=order.time_in_force, post_only=order.post_only,
                client_order_id=order.client_order_id, created_ns=now_ns,
                held=order.hold_placed, hold_price=order.hold_price, funds=order.funds,
                maker_fee_bps=order.maker_fee_bps, taker_fee_bps=order.taker_fee_bps,
                stop_price=order.stop_price, expire_ns=order.expire_ns,
                self_trade_prevention=order.self_trade_prevention))
            return
        self.events.append(JournalEvent(
            sequence=seq, kind=kind, order_id=order.order_id, other_order_id=other_order_id,
            price=price, quantity=quantity, account_id=order.account_id, side=order.side,
            order_type=order.order_type, time_in_force=order.time_in_force,
            post_only=order.post_only, client_order_id=order.client_order_id,
            created_ns=now_ns, held=held))

    def _rehold(self, order: Order, extra_held: int, need: int) -> None:
        """An amended order takes ``extra_held`` (the amendment's hold) and then holds
        exactly ``need``: the rest goes back."""
        if self.terms is None:
            return
        order.held += extra_held
        if order.held > need:
            self._release(order, order.held - need)

    def _release(self, order: Order, amount: int = -1) -> None:
        """Give back ``amount`` of what ``order`` holds (all of it by default)."""
        terms = self.terms
        if terms is None:
            return
        if amount < 0:
            amount = order.held
        if not amount:
            return
        order.held -= amount
        asset = terms.quote_asset if order.side == BUY else terms.base_asset
        self.settlement.move(order.account_id, asset, amount, -amount)

    def _settle(self, trade: Trade, maker: Order, taker: Order) -> None:
        """One fill's money (engine.money): base from seller to buyer, the notional
        from buyer to seller, each side's fee to the fee account; what the buyer's hold
        held for these lots beyond what they cost goes back to its available."""
        terms = self.terms
        assert terms is not None
        notional = trade.price * trade.quantity * terms.tick_lot_units
        base = trade.quantity * terms.lot_units
        maker_fee = fee(notional, maker.maker_fee_bps)
        taker_fee = fee(notional, taker.taker_fee_bps)
        if maker_fee < 0 and -maker_fee > taker_fee:
            # A rebate is paid out of its trade's taker fee, never more (a maker's rebate
            # rate may exceed a taker's fee rate when either has an account override):
            # the fee account never pays out more than it takes.
            maker_fee = -taker_fee
        trade.maker_fee = maker_fee
        trade.taker_fee = taker_fee
        if taker.side == BUY:
            buyer, buyer_fee, seller, seller_fee = taker, taker_fee, maker, maker_fee
        else:
            buyer, buyer_fee, seller, seller_fee = maker, maker_fee, taker, taker_fee
        if buyer.funds:
            used = notional + buyer_fee
        else:
            used = trade.quantity * terms.unit(buyer.hold_price, buyer.maker_fee_bps,
                                               buyer.taker_fee_bps)
        released = used - notional - buyer_fee
        trade.buyer_released = released
        buyer.held -= used
        seller.held -= base
        move = self.settlement.move
        quote = terms.quote_asset
        move(buyer.account_id, quote, released, -used)
        move(buyer.account_id, terms.base_asset, base, 0)
        move(seller.account_id, terms.base_asset, 0, -base)
        move(seller.account_id, quote, notional - seller_fee, 0)
        move(terms.fee_account, quote, buyer_fee + seller_fee, 0)

    def _take(self, taker: Order, other: Side, limit: int, now_ns: int) -> list[Trade]:
        """Match ``taker`` against the levels of ``other`` with key <= ``limit``, best
        first, each in time priority. The caller has checked that the best level is
        within the limit. This is the innermost loop of the exchange: what it reads
        more than once is in a local variable.

        A maker of the taker's own account is not traded with unless the taker's
        self-trade prevention is NONE: ``_prevent`` applies the mode (one comparison
        per maker: ``own`` is -1, no account, under NONE). A taker it ends is EXPIRED
        when this returns."""
        touched = other.touched
        recent, changed, batch = self.recent, self.changed, self.batch
        trades = self.trades
        taker_id, account, side = taker.order_id, taker.account_id, taker.side
        own = account if taker.self_trade_prevention != STP_NONE else -1
        seq = self.sequence
        qty = taker.quantity - taker.filled
        notional = taker.filled_notional
        fills: list[Trade] = []
        price = 0
        terms = self.terms
        # A budget (a market buy's funds) may stop the taker before its quantity does.
        budget = terms is not None and taker.funds > 0
        exhausted = False
        killed = False  # self-trade prevention ended the taker
        while True:
            level = other.front_levels[0]  # the best level
            # ``queue``: the level's list of orders, None when its order is alone
            queue: list[Order] | None
            if isinstance(level, Order):
                maker, queue = level, None
            else:
                maker, queue = level[0], level
            price = maker.price
            while True:
                open_qty = maker.quantity - maker.filled
                if maker.account_id == own:
                    self.sequence = seq
                    qty = self._prevent(taker, maker, qty, open_qty, now_ns)
                    seq = self.sequence
                    killed = taker.state == EXPIRED
                    if maker.state != CANCELLED:  # it stays (the taker is ended)
                        touched[price] = level
                        break
                    if queue is None or len(queue) == 1:
                        touched[price] = None
                        other.pop_best()
                        break
                    del queue[0]
                    touched[price] = level
                    if killed:
                        break
                    maker = queue[0]
                    continue
                fill = qty if qty < open_qty else open_qty
                if budget:
                    assert terms is not None
                    affordable = terms.affordable(price, taker.held, taker.taker_fee_bps,
                                                  fill)
                    if affordable < fill:
                        exhausted = True
                        fill = affordable
                        if not fill:
                            break
                qty -= fill
                maker.filled += fill
                seq += 1
                maker_id = maker.order_id
                self._event(seq, EV_TRADE, taker, maker_id, price, fill, now_ns)
                value = price * fill
                maker.filled_notional += value
                maker.updated_ns = now_ns
                maker.last_sequence = seq
                if maker.changed_in is not batch:
                    maker.changed_in = batch
                    changed.append(maker)
                notional += value
                trade = Trade(trade_id=self.id_base | seq, sequence=seq, price=price,
                              quantity=fill, taker_side=side, maker_order_id=maker_id,
                              taker_order_id=taker_id, maker_account_id=maker.account_id,
                              taker_account_id=account, created_ns=now_ns)
                fills.append(trade)
                trades.append(trade)
                if terms is not None:
                    self._settle(trade, maker, taker)
                if exhausted:
                    if fill < open_qty:
                        maker.state = PARTIALLY_FILLED
                        touched[price] = level
                        break
                elif fill < open_qty:
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
                    touched[price] = None  # the level is gone
                    other.pop_best()
                    break
                del queue[0]
                touched[price] = level  # it lost an order (a budget may stop at the next)
                if not qty or exhausted:
                    break
                maker = queue[0]
            if not qty or exhausted or killed or other.best > limit:
                break
        self.sequence = seq
        if fills:
            self.last_price = fills[-1].price
        taker.filled = taker.quantity - qty
        taker.filled_notional = notional
        taker.last_sequence = seq
        taker.updated_ns = now_ns
        if not killed:
            taker.state = (PARTIALLY_FILLED if taker.filled else NEW) if qty else FILLED
        return fills

    def _prevent(self, taker: Order, maker: Order, qty: int, open_qty: int,
                 now_ns: int) -> int:
        """A prevented self-trade between ``taker`` (``qty`` lots still to match) and
        its own resting ``maker`` (``open_qty`` open), by the taker's mode: the maker is
        cancelled (CANCEL_RESTING), the taker ended (CANCEL_INCOMING), both
        (CANCEL_BOTH), or both reduced by the smaller open quantity and the one that
        reaches zero removed (DECREMENT). Each removal or reduction is a SELF_TRADE
        event, the resting order's first; nothing trades. A removed maker is CANCELLED
        and off the book; an ended taker EXPIRED (the caller stops matching it). Returns
        the taker's lots still to match."""
        mode = taker.self_trade_prevention
        if mode == STP_DECREMENT:
            cut = qty if qty < open_qty else open_qty
            if cut == open_qty:
                self._stp_cancel(maker, taker, now_ns)
            else:
                self._stp_reduce(maker, taker.order_id, maker.price, cut, now_ns)
            if cut == qty:
                self._stp_end(taker, maker, qty, now_ns)
                return qty
            self._stp_reduce(taker, maker.order_id, maker.price, cut, now_ns)
            return qty - cut
        if mode != STP_CANCEL_INCOMING:
            self._stp_cancel(maker, taker, now_ns)
        if mode != STP_CANCEL_RESTING:
            self._stp_end(taker, maker, qty, now_ns)
        return qty

    def _stp_cancel(self, maker: Order, taker: Order, now_ns: int) -> None:
        """Self-trade prevention cancels a resting order (the caller takes it off its
        level)."""
        seq = self.sequence = self.sequence + 1
        self._event(seq, EV_SELF_TRADE, maker, taker.order_id, maker.price,
                    maker.quantity - maker.filled, now_ns)
        maker.state = CANCELLED
        maker.reason = "SELF_TRADE_PREVENTED"
        maker.updated_ns = now_ns
        maker.last_sequence = seq
        self._mark_changed(maker)
        if self.recent.pop(maker.order_id, None) is None:
            del self.older[maker.order_id]
        self._one_less(maker.account_id)
        self._close_client_id(maker)
        self._release(maker)

    def _stp_end(self, taker: Order, maker: Order, qty: int, now_ns: int) -> None:
        """Self-trade prevention ends the taking order: its ``qty`` lots left expire."""
        seq = self.sequence = self.sequence + 1
        self._event(seq, EV_SELF_TRADE, taker, maker.order_id, maker.price, qty, now_ns)
        taker.state = EXPIRED
        taker.reason = "SELF_TRADE_PREVENTED"
        self._release(taker)

    def _stp_reduce(self, order: Order, other_id: int, price: int, cut: int,
                    now_ns: int) -> None:
        """DECREMENT lowers ``order``'s total quantity by ``cut`` lots (keeping its
        priority, like an amendment down) and releases what they held."""
        seq = self.sequence = self.sequence + 1
        self._event(seq, EV_SELF_TRADE, order, other_id, price, cut, now_ns)
        order.quantity -= cut
        order.updated_ns = now_ns
        order.last_sequence = seq
        self._mark_changed(order)
        terms = self.terms
        if terms is not None and not order.funds:
            self._release(order, terms.need(order.side == BUY, cut, order.hold_price, 0,
                                            order.maker_fee_bps, order.taker_fee_bps))

    def _mark_changed(self, order: Order) -> None:
        if order.changed_in is not self.batch:
            order.changed_in = self.batch
            self.changed.append(order)

    def _rest(self, order: Order, own: Side, key: int) -> None:
        own.add_order(key, order)
        recent = self.recent
        recent[order.order_id] = order
        if len(recent) > RECENT_MAX:
            # ``recent`` is full: its orders join ``older`` (in one pass, by id: the
            # table's slots are filled in order), and it starts again empty.
            self.older.update(recent)
            self.recent = {}
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
        if level is None or isinstance(level, Order) or len(level) == 1:
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
        self._event(seq, EV_EXPIRED, order, 0, order.price, order.quantity - order.filled,
                    now_ns)
        order.state = EXPIRED
        order.reason = reason
        order.updated_ns = now_ns
        order.last_sequence = seq
        if order.client_order_id:
            self._close_client_id(order)
        self._release(order)

    def _close(self, order: Order, kind: int, state: int, reason: str, now_ns: int) -> None:
        """An open order, already off the book (or the stop book), leaves: an event of
        ``kind`` removing its open quantity, its new state and reason, its hold
        released."""
        seq = self.sequence = self.sequence + 1
        self._event(seq, kind, order, 0, order.price, order.quantity - order.filled, now_ns)
        order.state = state
        order.reason = reason
        order.updated_ns = now_ns
        order.last_sequence = seq
        self._mark_changed(order)
        self._close_client_id(order)
        self._release(order)

    def _schedule(self, order: Order) -> None:
        """Remember when a GTT order expires; compact the expiries when the entries of
        orders gone could outgrow the others."""
        expiries = self.expiries
        expiries.add(order.expire_ns, order.order_id)
        if expiries.needs_compacting():
            live: list[tuple[int, int]] = []
            for expire_ns, order_id in expiries.heap:
                other = self._open_order(order_id)
                if other is not None and other.expire_ns == expire_ns:
                    live.append((expire_ns, order_id))
            expiries.keep(live)

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
