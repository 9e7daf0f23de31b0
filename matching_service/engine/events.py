"""What the engine hands out: journal events, trades, each command's outcome, and a
batch's changes.

``JournalEvent`` and ``Trade`` are the records of the ``journal`` and ``trades`` tables
from the engine to SQL, like ``OrderRow`` (order.py): their fields are the columns
(less ``instrument_id``, and the journal's ``owner_epoch``, which the store adds; a
field ``x_ns`` is the ``timestamptz`` column ``x_at``), and the store's SQL is generated
from them (``matching_service.rows``). They are plain classes rather than named tuples:
built in the hot path, a compiled class costs a fraction of a tuple subclass.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final, final

from .order import Order, OrderRow


@final
class JournalEvent:
    """One journal row. Every event has the instrument's next sequence number.
    ``kind`` is one of engine.enums.EV_*; ``order_id`` the order it concerns (a trade's
    taker); ``other_order_id`` a trade's maker; ``price`` and ``quantity`` what the kind
    says (a trade's, the quantity removed by a cancel or expiry, an amendment's new
    values, a status change's new status); the account, side, type, time in force,
    post-only and client order id are the order's, so that accepted and rejected events
    carry the whole command and the book can be rebuilt from the journal alone."""

    def __init__(self, sequence: int, kind: int, order_id: int = 0, other_order_id: int = 0,
                 price: int = 0, quantity: int = 0, account_id: int = 0, side: int = 0,
                 order_type: int = 0, time_in_force: int = 0, post_only: bool = False,
                 client_order_id: str = "", created_ns: int = 0, held: int = 0,
                 hold_price: int = 0, funds: int = 0, maker_fee_bps: int = 0,
                 taker_fee_bps: int = 0, stop_price: int = 0, expire_ns: int = 0,
                 self_trade_prevention: int = 0) -> None:
        self.sequence = sequence
        self.kind = kind
        self.order_id = order_id
        self.other_order_id = other_order_id
        self.price = price
        self.quantity = quantity
        self.account_id = account_id
        self.side = side
        self.order_type = order_type
        self.time_in_force = time_in_force
        self.post_only = post_only
        self.client_order_id = client_order_id
        self.created_ns = created_ns
        # An accepted or rejected order's money (its command's hold, hold price,
        # budget and fees); an amendment's extra hold.
        self.held = held
        self.hold_price = hold_price
        self.funds = funds
        self.maker_fee_bps = maker_fee_bps
        self.taker_fee_bps = taker_fee_bps
        # An accepted or rejected order's stop price, expiry and self-trade prevention.
        self.stop_price = stop_price
        self.expire_ns = expire_ns
        self.self_trade_prevention = self_trade_prevention

    def __repr__(self) -> str:  # pragma: no cover - debugging aid
        return (f"JournalEvent(sequence={self.sequence}, kind={self.kind}, "
                f"order_id={self.order_id}, price={self.price}, quantity={self.quantity})")


@final
class Trade:
    """One fill, and its row of ``trades``: at the maker's price, the trade id made from
    this event's sequence (exchange_common.ids)."""

    def __init__(self, trade_id: int, sequence: int, price: int, quantity: int,
                 taker_side: int, maker_order_id: int, taker_order_id: int,
                 maker_account_id: int, taker_account_id: int, created_ns: int,
                 maker_fee: int = 0, taker_fee: int = 0, buyer_released: int = 0) -> None:
        self.trade_id = trade_id
        self.sequence = sequence
        self.price = price
        self.quantity = quantity
        self.taker_side = taker_side
        self.maker_order_id = maker_order_id
        self.taker_order_id = taker_order_id
        self.maker_account_id = maker_account_id
        self.taker_account_id = taker_account_id
        self.created_ns = created_ns
        # Fees in quote units (negative: a rebate), and what the buyer's hold gave back
        # to available on this fill (engine.money).
        self.maker_fee = maker_fee
        self.taker_fee = taker_fee
        self.buyer_released = buyer_released

    def __repr__(self) -> str:  # pragma: no cover - debugging aid
        return (f"Trade(trade_id={self.trade_id}, price={self.price}, "
                f"quantity={self.quantity}, maker={self.maker_order_id}, "
                f"taker={self.taker_order_id})")


# The fills of a command that made none (shared: no allocation).
NO_FILLS: Final[tuple[Trade, ...]] = ()

# Failure reasons (Outcome.error; see matching.v1.ErrorCode).
ERR_ORDER_NOT_OPEN: Final = "ORDER_NOT_OPEN"
ERR_DUPLICATE: Final = "DUPLICATE_CLIENT_ORDER_ID"
ERR_INVALID: Final = "INVALID"
ERR_POST_ONLY_WOULD_TAKE: Final = "POST_ONLY_WOULD_TAKE"
ERR_INSUFFICIENT_FUNDS: Final = "INSUFFICIENT_FUNDS"


@final
class Outcome:
    """What one command did. ``order`` is None when the command failed, except for the
    failures that concern an existing order (a client_order_id used by another order,
    an amend refused): then it is that order, unchanged. ``fills`` are the command's
    trades in order (NO_FILLS when none); ``duplicate``: the command repeated an
    existing client_order_id with the same contents; ``error`` a reason above and
    ``error_message`` its text, for failures."""

    def __init__(self, order: Order | None, fills: Sequence[Trade] = NO_FILLS,
                 duplicate: bool = False, error: str = "", error_message: str = "") -> None:
        self.order = order
        self.fills = fills
        self.duplicate = duplicate
        self.error = error
        self.error_message = error_message


@dataclass(slots=True)
class Changes:
    """One batch's effects, ready to be committed and published."""

    first_sequence: int
    last_sequence: int
    events: list[JournalEvent]
    # The orders changed in the batch, each once, as they are at its end.
    orders: list[OrderRow]
    trades: list[Trade]
    # (price, quantity, order count) of each level the batch changed, after it (0, 0:
    # the level is gone), by price.
    bids: list[tuple[int, int, int]]
    asks: list[tuple[int, int, int]]
    # The balance changes of the batch, netted per (account, asset), in that order
    # (engine.money.Settlement.drain); empty when the book keeps no money.
    money: tuple[list[int], list[int], list[int], list[int]] = field(
        default_factory=lambda: ([], [], [], []))
    # The order path's holds the batch's commands took over (accounts, hold keys): the
    # commit deletes them (their money now belongs to the orders). Set by the caller.
    holds_used: tuple[list[int], list[str]] = field(default_factory=lambda: ([], []))
    # The price market buys' protection is computed from after the batch (the last
    # trade's, else the best ask, else the best bid; None: no price). Set by the caller.
    reference_price: int | None = None
