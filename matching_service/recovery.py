"""Book snapshots and journal replay: how a book is rebuilt after a crash.

Recovery = the latest snapshot (the resting orders after some sequence S)
+ the journal events after S. Replay re-executes the commands the journal
recorded (accepted and rejected orders, cancels, amendments) on the engine,
which is deterministic, and checks that every event it produces (trades,
expiries) is exactly the one in the journal. A mismatch stops recovery loudly
rather than producing a book that differs from the one that was acknowledged.
"""

from __future__ import annotations

from collections.abc import Iterable

from exchange.matching.v1 import matching_pb2 as mpb
from matching_service.engine import (
    BUY,
    EV_ACCEPTED,
    EV_AMENDED,
    EV_CANCELLED,
    EV_REJECTED,
    EV_STATUS,
    TRADING,
    Order,
    OrderBook,
)


class ReplayMismatch(Exception):
    """The journal and the engine disagree: the book cannot be trusted."""


def to_book_order(o: Order) -> mpb.BookOrder:
    return mpb.BookOrder(
        order_id=o.order_id, account_id=o.account_id, client_order_id=o.client_order_id,
        side=o.side, type=o.type, time_in_force=o.tif, post_only=o.post_only, price=o.price,
        quantity=o.quantity, filled=o.filled, filled_notional=str(o.notional), state=o.state,
        priority=o.priority, last_sequence=o.last_sequence,
        create_time_unix_nanos=o.created_ns, update_time_unix_nanos=o.updated_ns,
    )


def from_book_order(b: mpb.BookOrder) -> Order:
    o = Order(b.order_id, b.account_id, b.client_order_id, b.side, b.type, b.time_in_force,
              b.post_only, b.price, b.quantity, b.create_time_unix_nanos)
    o.filled = b.filled
    o.notional = int(b.filled_notional)
    o.state = b.state
    o.priority = b.priority
    o.last_sequence = b.last_sequence
    o.updated_ns = b.update_time_unix_nanos
    return o


def book_response(book: OrderBook, epoch: int) -> mpb.GetBookResponse:
    resting = book.resting()
    return mpb.GetBookResponse(
        instrument_id=book.instrument_id, sequence=book.sequence, owner_epoch=epoch,
        bids=[to_book_order(o) for o in resting if o.side == BUY],
        asks=[to_book_order(o) for o in resting if o.side != BUY],
        status=book.status,
    )


def encode_snapshot(book: OrderBook) -> bytes:
    snap = mpb.BookSnapshot(instrument_id=book.instrument_id, sequence=book.sequence,
                            orders=[to_book_order(o) for o in book.resting()],
                            status=book.status)
    return snap.SerializeToString()


def decode_snapshot(data: bytes) -> tuple[int, list[Order], int]:
    """(sequence, resting orders, instrument status) of a snapshot."""
    snap = mpb.BookSnapshot.FromString(data)
    return snap.sequence, [from_book_order(b) for b in snap.orders], snap.status or TRADING


# Journal rows as read by the store: (sequence, kind, order_id, other_order_id,
# price, quantity, account_id, side, order_type, time_in_force, post_only,
# client_order_id, time_ns), in sequence order.
def replay(book: OrderBook, rows: Iterable[tuple]) -> int:
    """Re-execute journal ``rows`` (all after ``book.sequence``) on ``book``.
    Returns the number of events replayed."""
    book.drain_changes()
    journal: list[tuple] = []
    for row in rows:
        seq, kind, order_id, _, price, qty, account, side, type_, tif, post_only, coid, t = row
        journal.append(row)
        if kind in (EV_ACCEPTED, EV_REJECTED):
            if seq != book.sequence + 1:
                raise ReplayMismatch(f"sequence {seq}: expected a command at {book.sequence + 1}")
            out = book.new_order(account, side, type_, tif, price, qty, coid, post_only, t)
            if out.order is None or out.order.order_id != order_id or out.duplicate:
                raise ReplayMismatch(f"sequence {seq}: order {order_id} was not reproduced")
        elif kind == EV_CANCELLED:
            if seq != book.sequence + 1:
                raise ReplayMismatch(f"sequence {seq}: expected a cancel at {book.sequence + 1}")
            out = book.cancel(account, order_id, t)
            if out.order is None:
                raise ReplayMismatch(f"sequence {seq}: order {order_id} was not open to cancel")
        elif kind == EV_STATUS:
            if seq != book.sequence + 1:
                raise ReplayMismatch(f"sequence {seq}: expected a status at {book.sequence + 1}")
            book.set_status(qty, t)
            if book.sequence != seq:
                raise ReplayMismatch(f"sequence {seq}: status {qty} is no change")
        elif kind == EV_AMENDED:
            # The event holds the new price and total quantity: re-executed as is.
            if seq != book.sequence + 1:
                raise ReplayMismatch(f"sequence {seq}: expected an amend at {book.sequence + 1}")
            out = book.amend(account, order_id, price, qty, t)
            if out.order is None or out.error:
                raise ReplayMismatch(f"sequence {seq}: order {order_id} could not be amended "
                                     f"({out.error or 'not open'})")
    produced = book.drain_changes().events
    if len(produced) != len(journal):
        raise ReplayMismatch(f"replay produced {len(produced)} events, the journal has "
                             f"{len(journal)}")
    for mine, theirs in zip(produced, journal, strict=True):
        if mine[:6] != tuple(theirs[:6]):
            raise ReplayMismatch(f"sequence {theirs[0]}: journal {tuple(theirs[:6])} but "
                                 f"replay {mine[:6]}")
    return len(journal)
