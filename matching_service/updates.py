"""The order updates of a batch: one row per (account, journal event that concerns one of
its orders), the order as it is right after that event.

``OrderUpdateRow`` is the record of ``order_updates`` (migration 0006) from the matching
pod to SQL, like the engine's records (matching_service/rows.py): its ``sequence`` is the
row's place among the batch's updates of its account (1, 2, ...), and the commit adds
the account's last sequence before the batch (store.py), so the numbers are assigned in
the fenced statement that writes the journal, with no gap.

Which updates: an accepted, rejected, cancelled, expired, amended, triggered, self-trade
prevented or timed-out event gives one, to the order's account; a trade gives two, the
maker's then the taker's (a self-trade gives both to the one account). A status change
gives none.

The order after each event: an order's last event in the batch is followed by the row
the batch commits for it (``Changes.orders``), exactly; its earlier events are walked
forward from where the order stood before the batch: from its accepted (or rejected)
event for a new order, else from its committed row less the batch's fills (an order
amended later in the batch needs its price and quantity from before the batch: the
caller reads them, ``needs_before``). What an open order holds follows from its open
quantity (the engine keeps it so: engine.money); without money terms it is what the
order brought.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from exchange_common.ids import make_id
from matching_service.engine import (
    BUY,
    CANCELLED,
    EV_ACCEPTED,
    EV_AMENDED,
    EV_CANCELLED,
    EV_EXPIRED,
    EV_REJECTED,
    EV_TRADE,
    EXPIRED,
    FILLED,
    LIMIT,
    NEW,
    PARTIALLY_FILLED,
    REJECTED,
    Changes,
    JournalEvent,
    OrderRow,
    Terms,
)

# The engine's kinds of issue 14 (engine/enums.py), by the numbers agreed for them: a
# stop's trigger fired, self-trade prevention removed open quantity, a good-till-time
# order expired. Until the engine defines them no event carries them.
EV_TRIGGERED = 8
EV_SELF_TRADE = 9
EV_TIMED_OUT = 10
# exchange.common.v1.OrderState UNTRIGGERED: a stop waiting off the book.
UNTRIGGERED = 7
TERMINAL = (FILLED, CANCELLED, EXPIRED, REJECTED)
SELF_TRADE_PREVENTED = "SELF_TRADE_PREVENTED"
GOOD_TILL_TIME = "GOOD_TILL_TIME"
# The kinds that concern one order (a trade concerns two; a status change none).
ORDER_KINDS = (EV_ACCEPTED, EV_CANCELLED, EV_EXPIRED, EV_REJECTED, EV_AMENDED,
               EV_TRIGGERED, EV_SELF_TRADE, EV_TIMED_OUT)


class OrderUpdateRow:
    """One row of ``order_updates`` (less ``instrument_id``, which the store adds):
    ``sequence`` the row's place among its account's updates in the batch (the commit
    adds the account's sequence before it); ``kind`` the journal event's kind and
    ``journal_sequence`` its sequence; the order's state, price, total quantity, filled
    lots, filled notional, reason and hold right after the event."""

    __slots__ = ("account_id", "sequence", "journal_sequence", "kind", "order_id", "state",
                 "price", "quantity", "filled", "filled_notional", "reason", "held",
                 "created_ns")

    def __init__(self, account_id: int, sequence: int, journal_sequence: int, kind: int,
                 order_id: int, state: int, price: int, quantity: int, filled: int,
                 filled_notional: int, reason: str, held: int, created_ns: int) -> None:
        self.account_id = account_id
        self.sequence = sequence
        self.journal_sequence = journal_sequence
        self.kind = kind
        self.order_id = order_id
        self.state = state
        self.price = price
        self.quantity = quantity
        self.filled = filled
        self.filled_notional = filled_notional
        self.reason = reason
        self.held = held
        self.created_ns = created_ns

    def __repr__(self) -> str:  # pragma: no cover - debugging aid
        return (f"OrderUpdateRow(account={self.account_id}, seq={self.sequence}, "
                f"kind={self.kind}, order={self.order_id}, state={self.state}, "
                f"filled={self.filled}/{self.quantity})")


class _Walk:
    """An order's state while the batch's events are walked."""

    __slots__ = ("row", "price", "quantity", "filled", "notional", "state", "reason",
                 "spent", "last")

    def __init__(self, row: OrderRow, price: int, quantity: int, filled: int,
                 notional: int, state: int) -> None:
        self.row = row
        self.price = price
        self.quantity = quantity
        self.filled = filled
        self.notional = notional
        self.state = state
        self.reason = ""
        # What a market buy with a budget has spent (its hold is the rest).
        self.spent = 0
        # The order's latest update so far (overwritten by its committed row at the end).
        self.last: OrderUpdateRow | None = None


# (price, quantity) of orders before the batch, by order id (see needs_before).
Before = Mapping[int, tuple[int, int]]


def needs_before(instrument_id: int, changes: Changes) -> list[int]:
    """The orders of the batch that rested before it and have an event before an
    amendment in it: their price and quantity before the batch are not in the batch
    (the caller reads them from ``orders``; rare: an order traded, then amended, in one
    batch)."""
    first_id = make_id(instrument_id, changes.first_sequence)
    seen: set[int] = set()
    out: list[int] = []
    for e in changes.events:
        kind = e.kind
        if kind == EV_AMENDED:
            if e.order_id < first_id and e.order_id in seen and e.order_id not in out:
                out.append(e.order_id)
            seen.add(e.order_id)
        elif kind == EV_TRADE:
            seen.add(e.order_id)
            seen.add(e.other_order_id)
        else:
            seen.add(e.order_id)
    return out


def build(changes: Changes, terms: Terms | None = None,
          before: Before | None = None) -> list[OrderUpdateRow]:
    """The batch's updates, in journal order (a trade's maker first), each numbered
    among its account's updates of the batch."""
    events: Sequence[JournalEvent] = changes.events
    if not events:
        return []
    rows = {o.order_id: o for o in changes.orders}
    # The batch's fills per order: lots and notional (to start a resting order's walk
    # from its committed row less them).
    lots: dict[int, int] = {}
    value: dict[int, int] = {}
    for t in changes.trades:
        n = t.price * t.quantity
        for oid in (t.maker_order_id, t.taker_order_id):
            lots[oid] = lots.get(oid, 0) + t.quantity
            value[oid] = value.get(oid, 0) + n
    fees = {t.sequence: t for t in changes.trades}
    walks: dict[int, _Walk] = {}
    counts: dict[int, int] = {}
    out: list[OrderUpdateRow] = []

    def walk(oid: int) -> _Walk:
        w = walks.get(oid)
        if w is None:
            row = rows[oid]
            filled = row.filled - lots.get(oid, 0)
            price, quantity = row.price, row.quantity
            if before is not None and oid in before:
                price, quantity = before[oid]
            state = PARTIALLY_FILLED if filled else NEW
            w = walks[oid] = _Walk(row, price, quantity, filled,
                                   row.filled_notional - value.get(oid, 0), state)
        return w

    def emit(w: _Walk, e: JournalEvent) -> None:
        row = w.row
        account = row.account_id
        n = counts[account] = counts.get(account, 0) + 1
        update = OrderUpdateRow(account, n, e.sequence, e.kind, row.order_id, w.state,
                                w.price, w.quantity, w.filled, w.notional, w.reason,
                                _held(terms, w), e.created_ns)
        out.append(update)
        w.last = update

    for e in events:
        kind = e.kind
        if kind == EV_TRADE:
            trade = fees.get(e.sequence)
            q, p = e.quantity, e.price
            for oid, maker in ((e.other_order_id, True), (e.order_id, False)):
                w = walk(oid)
                w.filled += q
                w.notional += p * q
                w.state = FILLED if w.filled >= w.quantity else PARTIALLY_FILLED
                if trade is not None and not maker and terms is not None:
                    w.spent += p * q * terms.tick_lot_units + trade.taker_fee
                emit(w, e)
            continue
        if kind not in ORDER_KINDS:
            continue
        oid = e.order_id
        if kind == EV_ACCEPTED or kind == EV_REJECTED:
            row = rows[oid]
            w = walks[oid] = _Walk(row, e.price, e.quantity, 0, 0, NEW)
            if kind == EV_REJECTED:
                w.state = REJECTED
            elif getattr(row, "stop_price", 0):
                w.state = UNTRIGGERED
        else:
            w = walk(oid)
            if kind == EV_AMENDED:
                w.price, w.quantity = e.price, e.quantity
            elif kind == EV_TRIGGERED:
                w.state = PARTIALLY_FILLED if w.filled else NEW
            elif kind == EV_SELF_TRADE:
                w.quantity -= e.quantity
                if w.filled >= w.quantity:
                    w.state, w.reason = CANCELLED, SELF_TRADE_PREVENTED
            elif kind == EV_CANCELLED:
                w.state = CANCELLED
            else:  # expired, timed out
                w.state = EXPIRED
                w.reason = GOOD_TILL_TIME if kind == EV_TIMED_OUT else w.reason
        emit(w, e)
    for w in walks.values():
        update = w.last
        if update is not None:  # its last update: the order as the batch commits it
            row = w.row
            update.state, update.price, update.quantity = row.state, row.price, row.quantity
            update.filled, update.filled_notional = row.filled, row.filled_notional
            update.reason, update.held = row.reason, row.held
    return out


def _held(terms: Terms | None, w: _Walk) -> int:
    """What the order holds in state ``w`` (engine.money: an open order holds what its
    open quantity can still spend; a closed one nothing)."""
    row = w.row
    if terms is None:
        return row.held
    if w.state in TERMINAL:
        return 0
    lots = w.quantity - w.filled
    if row.side != BUY:
        return lots * terms.lot_units
    if row.funds:
        return row.funds - w.spent
    hold_price = w.price if row.order_type == LIMIT else row.hold_price
    return lots * terms.unit(hold_price, row.maker_fee_bps, row.taker_fee_bps)


def accounts(updates: Sequence[OrderUpdateRow]) -> tuple[list[int], list[int]]:
    """(accounts, how many updates each) of a batch, in account order: the commit
    advances their sequences in that order (after the balances: the lock order)."""
    counts: dict[int, int] = {}
    for u in updates:
        counts[u.account_id] = u.sequence
    keys = sorted(counts)
    return keys, [counts[k] for k in keys]

