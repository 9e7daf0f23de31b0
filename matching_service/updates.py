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
    EV_SELF_TRADE,
    EV_TIMED_OUT,
    EV_TRADE,
    EV_TRIGGERED,
    EXPIRED,
    FILLED,
    LIMIT,
    NEW,
    PARTIALLY_FILLED,
    REJECTED,
    UNTRIGGERED,
    Changes,
    JournalEvent,
    OrderRow,
    Terms,
)

TERMINAL = (FILLED, CANCELLED, EXPIRED, REJECTED)
GOOD_TILL_TIME = "GOOD_TILL_TIME"
# The kinds that concern one order (a trade concerns two; a status change none).
ORDER_KINDS = (EV_ACCEPTED, EV_CANCELLED, EV_EXPIRED, EV_REJECTED, EV_AMENDED,
               EV_TRIGGERED, EV_SELF_TRADE, EV_TIMED_OUT)


class OrderUpdateRow:
    """One row of ``order_updates``: ``sequence`` the row's place among its account's
    updates in the batch (the commit adds the account's sequence before it);
    ``journal_sequence`` the event's sequence (the order id carries the instrument); the
    and ``kind``; the order's state, price, total quantity, filled lots, filled notional,
    reason and hold right after the event (its time is the journal event's)."""

    __slots__ = ("account_id", "sequence", "journal_sequence", "kind", "order_id", "state",
                 "price", "quantity", "filled", "filled_notional", "reason", "held")

    def __init__(self, account_id: int, sequence: int, journal_sequence: int, kind: int,
                 order_id: int, state: int, price: int, quantity: int, filled: int,
                 filled_notional: int, reason: str, held: int) -> None:
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

    def __repr__(self) -> str:  # pragma: no cover - debugging aid
        return (f"OrderUpdateRow(account={self.account_id}, seq={self.sequence}, "
                f"kind={self.kind}, order={self.order_id}, state={self.state}, "
                f"filled={self.filled}/{self.quantity})")


# (price, quantity) of orders before the batch, by order id (see needs_before).
Before = Mapping[int, tuple[int, int]]


def needs_before(instrument_id: int, changes: Changes) -> list[int]:
    """The orders of the batch that rested before it, whose price or quantity the batch
    changes (an amendment, a self-trade decrement) while an earlier or later event of
    theirs needs it: their price and quantity before the batch are in no record of the
    batch (the caller reads them from ``orders``; rare: e.g. an order traded, then
    amended, in one batch)."""
    first_id = make_id(instrument_id, changes.first_sequence)
    total: dict[int, int] = {}  # order id -> its events in the batch (old orders only)
    changing: list[JournalEvent] = []
    for e in changes.events:
        kind = e.kind
        if kind == EV_TRADE:
            for oid in (e.other_order_id, e.order_id):
                if oid < first_id:
                    total[oid] = total.get(oid, 0) + 1
            continue
        if e.order_id < first_id:
            total[e.order_id] = total.get(e.order_id, 0) + 1
            if kind == EV_AMENDED or kind == EV_SELF_TRADE:
                changing.append(e)
    if not changing:
        return []
    out: list[int] = []
    seen: dict[int, int] = {}
    for e in changes.events:
        ids = (e.other_order_id, e.order_id) if e.kind == EV_TRADE else (e.order_id,)
        for oid in ids:
            if oid in total:
                n = seen[oid] = seen.get(oid, 0) + 1
                if oid in out or (e.kind != EV_AMENDED and e.kind != EV_SELF_TRADE):
                    continue
                # an amendment sets them (what came before it needs them); a decrement
                # changes them (any other event of the order needs them)
                if n > 1 if e.kind == EV_AMENDED else total[oid] > 1:
                    out.append(oid)
    return out


def build(changes: Changes, terms: Terms | None = None,
          before: Before | None = None) -> list[OrderUpdateRow]:
    """The batch's updates, in journal order (a trade's maker first), each numbered
    among its account's updates of the batch.

    On the matching pod's hot path (2-3 updates per order): one pass over the events,
    each update made from the order's previous one; then each order's last update takes
    its committed row, and (with money terms) the others their hold."""
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
    last: dict[int, OrderUpdateRow] = {}  # each order's latest update (or its start)
    counts: dict[int, int] = {}
    out: list[OrderUpdateRow] = []
    append = out.append
    budgets = False  # a market buy with a budget traded (its hold: what is left of it)

    def start(oid: int) -> OrderUpdateRow:
        """Where an order that rested before the batch stood before it."""
        row = rows[oid]
        filled = row.filled - lots.get(oid, 0)
        price, quantity = row.price, row.quantity
        if before is not None and oid in before:
            price, quantity = before[oid]
        return OrderUpdateRow(row.account_id, 0, 0, 0, oid,
                              PARTIALLY_FILLED if filled else NEW, price, quantity, filled,
                              row.filled_notional - value.get(oid, 0), "", 0)

    for e in events:
        kind = e.kind
        if kind == EV_TRADE:
            q, p, seq = e.quantity, e.price, e.sequence
            for oid in (e.other_order_id, e.order_id):
                prev = last.get(oid)
                if prev is None:
                    prev = start(oid)
                account = prev.account_id
                number = counts[account] = counts.get(account, 0) + 1
                filled = prev.filled + q
                quantity = prev.quantity
                update = last[oid] = OrderUpdateRow(
                    account, number, seq, EV_TRADE, oid,
                    FILLED if filled >= quantity else PARTIALLY_FILLED, prev.price, quantity,
                    filled, prev.filled_notional + p * q, prev.reason, prev.held)
                append(update)
                if oid == e.order_id and terms is not None and rows[oid].funds:
                    budgets = True
                    trade = next(t for t in changes.trades if t.sequence == seq)
                    update.held = (prev.held if prev.sequence else rows[oid].funds) - (
                        p * q * terms.tick_lot_units + trade.taker_fee)
            continue
        if kind not in ORDER_KINDS:
            continue
        oid = e.order_id
        if kind == EV_ACCEPTED or kind == EV_REJECTED:
            row = rows[oid]
            state = (REJECTED if kind == EV_REJECTED
                     else UNTRIGGERED if row.stop_price else NEW)
            update = OrderUpdateRow(row.account_id, 0, e.sequence, kind, oid, state, e.price,
                                    e.quantity, 0, 0, "", row.funds)
        else:
            prev = last.get(oid)
            if prev is None:
                prev = start(oid)
            update = OrderUpdateRow(prev.account_id, 0, e.sequence, kind, oid, prev.state,
                                    prev.price, prev.quantity, prev.filled,
                                    prev.filled_notional, prev.reason, prev.held)
            if kind == EV_AMENDED:
                update.price, update.quantity = e.price, e.quantity
            elif kind == EV_TRIGGERED:
                update.state = PARTIALLY_FILLED if update.filled else NEW
            elif kind == EV_SELF_TRADE:
                # A decrement; a removal is the order's last event (its row, below).
                update.quantity -= e.quantity
            elif kind == EV_CANCELLED:
                update.state = CANCELLED
            else:  # expired, timed out
                update.state = EXPIRED
                if kind == EV_TIMED_OUT:
                    update.reason = GOOD_TILL_TIME
        account = update.account_id
        update.sequence = counts[account] = counts.get(account, 0) + 1
        last[oid] = update
        append(update)
    for oid, update in last.items():
        # its last update: the order as the batch commits it
        row = rows[oid]
        update.state, update.price, update.quantity = row.state, row.price, row.quantity
        update.filled, update.filled_notional = row.filled, row.filled_notional
        update.reason, update.held = row.reason, row.held
    if terms is None:
        for update in out:
            update.held = rows[update.order_id].held
    else:
        for update in out:
            if last[update.order_id] is not update and not (
                    budgets and rows[update.order_id].funds):
                update.held = _held(terms, rows[update.order_id], update)
    return out


def _held(terms: Terms, row: OrderRow, update: OrderUpdateRow) -> int:
    """What an order holds in the state of ``update`` (engine.money: an open order holds
    what its open quantity can still spend; a closed one nothing)."""
    if update.state in TERMINAL:
        return 0
    lots = update.quantity - update.filled
    if row.side != BUY:
        return lots * terms.lot_units
    if row.funds:
        return row.funds
    hold_price = update.price if row.order_type == LIMIT else row.hold_price
    return lots * terms.unit(hold_price, row.maker_fee_bps, row.taker_fee_bps)


def accounts(updates: Sequence[OrderUpdateRow]
             ) -> tuple[list[int], list[int], list[int]]:
    """(accounts, how many updates each) of a batch, in account order (the commit
    advances their sequences in that order, after the balances: the lock order), and
    each update's account's place in that list (from 1)."""
    counts: dict[int, int] = {}
    for u in updates:
        counts[u.account_id] = u.sequence
    keys = sorted(counts)
    place = {k: i for i, k in enumerate(keys, 1)}
    return keys, [counts[k] for k in keys], [place[u.account_id] for u in updates]
