"""Book snapshots and journal replay: how a book is rebuilt after a crash.

Recovery = the latest snapshot (the open orders after some sequence S: resting,
and untriggered stops) + the journal events after S. Replay re-executes the
commands the journal recorded (accepted and rejected orders, cancels, amendments,
statuses, good-till-time expiries) on the engine, which is deterministic, and
checks that every event it produces (trades, expiries, stop triggers, self-trade
preventions) is exactly the one in the journal. A mismatch stops recovery loudly
rather than producing a book that differs from the one that was acknowledged.
"""

from __future__ import annotations

import gc
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from operator import attrgetter
from typing import Any, cast

from exchange.common.v1 import common_pb2 as cpb
from exchange.matching.v1 import matching_pb2 as mpb
from matching_service.engine import (
    BUY,
    EV_ACCEPTED,
    EV_AMENDED,
    EV_CANCELLED,
    EV_REJECTED,
    EV_STATUS,
    EV_TIMED_OUT,
    TRADING,
    JournalEvent,
    Order,
    OrderBook,
    OrderRow,
)
from matching_service.rows import fields


class ReplayMismatch(Exception):
    """The journal and the engine disagree: the book cannot be trusted."""


# A snapshot's BookOrder has the fields of an OrderRow, by the same names but these
# (the proto's names follow the API's), and not those a resting order never sets (they
# come back with these values). The proto holds the notional as a decimal string (it
# outgrows 64 bits).
PROTO_NAMES = {"order_type": "type", "created_ns": "create_time_unix_nanos",
               "updated_ns": "update_time_unix_nanos",
               "expire_ns": "expire_time_unix_nanos"}
NOT_IN_SNAPSHOTS: dict[str, Any] = {"reason": ""}
AS_TEXT = ("filled_notional",)
SNAPSHOT_FIELDS = tuple(f for f in fields(OrderRow) if f not in NOT_IN_SNAPSHOTS)
_PROTO_FIELDS = tuple(PROTO_NAMES.get(f, f) for f in SNAPSHOT_FIELDS)
_AS_TEXT_AT = tuple(SNAPSHOT_FIELDS.index(f) for f in AS_TEXT)
# Where the fields a snapshot leaves out go back among the constructor's arguments.
_LEFT_OUT_AT = tuple((i, NOT_IN_SNAPSHOTS[f]) for i, f in enumerate(fields(OrderRow))
                     if f in NOT_IN_SNAPSHOTS)
_ORDER_VALUES = attrgetter(*SNAPSHOT_FIELDS)
_PROTO_VALUES = attrgetter(*_PROTO_FIELDS)


def to_book_order(o: Order) -> mpb.BookOrder:
    values: list[Any] = list(_ORDER_VALUES(o))
    for i in _AS_TEXT_AT:
        values[i] = str(values[i])
    return mpb.BookOrder(**dict(zip(_PROTO_FIELDS, values, strict=True)))


def from_book_order(b: mpb.BookOrder) -> Order:
    values: list[Any] = list(_PROTO_VALUES(b))
    for i in _AS_TEXT_AT:
        values[i] = int(values[i])
    for i, value in _LEFT_OUT_AT:
        values.insert(i, value)
    return Order(*values)  # the constructor's arguments are fields(OrderRow), in order


def book_response(book: OrderBook, epoch: int) -> mpb.GetBookResponse:
    """The book as GetBook answers it: the resting orders as bids and asks, the
    untriggered stops apart (``stops``)."""
    resting = book.resting()
    return mpb.GetBookResponse(
        instrument_id=book.instrument_id, sequence=book.sequence, owner_epoch=epoch,
        bids=[to_book_order(o) for o in resting if o.side == BUY],
        asks=[to_book_order(o) for o in resting if o.side != BUY],
        status=cast(cpb.InstrumentStatus, book.status),
        stops=[to_book_order(o) for o in book.untriggered()],
    )


def encode_snapshot(book: OrderBook) -> bytes:
    """The open orders: the resting ones, then the untriggered stops (their state
    tells them apart when restored)."""
    orders = [to_book_order(o) for o in book.resting()]
    orders += [to_book_order(o) for o in book.untriggered()]
    snap = mpb.BookSnapshot(instrument_id=book.instrument_id, sequence=book.sequence,
                            orders=orders, status=cast(cpb.InstrumentStatus, book.status))
    return snap.SerializeToString()


def decode_snapshot(data: bytes) -> tuple[int, list[Order], int]:
    """(sequence, open orders, instrument status) of a snapshot."""
    snap = mpb.BookSnapshot.FromString(data)
    return snap.sequence, [from_book_order(b) for b in snap.orders], snap.status or TRADING


@contextmanager
def collector_paused() -> Iterator[None]:
    """The garbage collector paused while a book is rebuilt (synchronous code: nothing
    else runs meanwhile). The orders and events it makes hold no reference cycle, and
    as they pile up the collector would walk them all again and again: about 40% of
    the time of a long replay."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


_EVENT_VALUES = attrgetter(*fields(JournalEvent))
# The journal kinds that are commands (re-executed); the others (trades, expiries of
# takers, stop triggers, self-trade preventions) are what the commands derive.
COMMANDS = frozenset((EV_ACCEPTED, EV_REJECTED, EV_CANCELLED, EV_STATUS, EV_AMENDED,
                      EV_TIMED_OUT))


def replay(book: OrderBook, events: Iterable[JournalEvent]) -> int:
    """Re-execute the journal ``events`` (all after ``book.sequence``, in sequence
    order) on ``book``: every event the engine produces must be the journal's, field
    for field. Returns the number of events replayed."""
    book.drain_changes()
    journal: list[JournalEvent] = []
    for e in events:
        journal.append(e)
        seq, kind = e.sequence, e.kind
        if kind in COMMANDS:
            if seq != book.sequence + 1:
                raise ReplayMismatch(f"sequence {seq}: expected a command at "
                                     f"{book.sequence + 1}")
        if kind in (EV_ACCEPTED, EV_REJECTED):
            out = book.new_order(e.account_id, e.side, e.order_type, e.time_in_force, e.price,
                                 e.quantity, e.client_order_id, e.post_only, e.created_ns,
                                 e.held, e.hold_price, e.funds, e.maker_fee_bps,
                                 e.taker_fee_bps, e.self_trade_prevention, e.stop_price,
                                 e.expire_ns)
            if out.order is None or out.order.order_id != e.order_id or out.duplicate:
                raise ReplayMismatch(f"sequence {seq}: order {e.order_id} was not reproduced")
        elif kind == EV_CANCELLED:
            out = book.cancel(e.account_id, e.order_id, e.created_ns)
            if out.order is None:
                raise ReplayMismatch(f"sequence {seq}: order {e.order_id} was not open to "
                                     f"cancel")
        elif kind == EV_TIMED_OUT:
            out = book.time_out(e.order_id, e.created_ns)
            if out.order is None or out.error:
                raise ReplayMismatch(f"sequence {seq}: order {e.order_id} was not open to "
                                     f"expire")
        elif kind == EV_STATUS:
            book.set_status(e.quantity, e.created_ns)
            if book.sequence != seq:
                raise ReplayMismatch(f"sequence {seq}: status {e.quantity} is no change")
        elif kind == EV_AMENDED:
            # The event holds the new price and total quantity: re-executed as is.
            out = book.amend(e.account_id, e.order_id, e.price, e.quantity, e.created_ns,
                             e.held)
            if out.order is None or out.error:
                raise ReplayMismatch(f"sequence {seq}: order {e.order_id} could not be "
                                     f"amended ({out.error or 'not open'})")
    produced = book.drain_changes().events
    if len(produced) != len(journal):
        raise ReplayMismatch(f"replay produced {len(produced)} events, the journal has "
                             f"{len(journal)}")
    for mine, theirs in zip(produced, journal, strict=True):
        if _EVENT_VALUES(mine) != _EVENT_VALUES(theirs):
            raise ReplayMismatch(f"sequence {theirs.sequence}: journal "
                                 f"{_EVENT_VALUES(theirs)} but replay {_EVENT_VALUES(mine)}")
    return len(journal)
