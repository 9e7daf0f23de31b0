"""The order: its row in the ``orders`` table, and the engine's live order.

``OrderRow`` is the record of one order from the engine to SQL: its fields are the
columns of ``orders`` (exchange_common/migrations/), less ``instrument_id``, which the
store adds; a field ``x_ns`` (nanoseconds since the epoch) is the ``timestamptz``
column ``x_at``. The store's SQL, recovery's snapshot conversion and the tests take the
column list from ``OrderRow.__init__`` (``matching_service.rows``), so a new column is
a parameter here, its migration, and (if snapshots must keep it) a ``BookOrder`` field
of the same name.

``Order`` is an ``OrderRow`` that the engine changes in place as the order rests,
fills and leaves; ``row()`` copies it into the plain record a batch hands over.
"""

from __future__ import annotations

from .enums import NEW, OPEN_STATES


class OrderRow:
    """One row of ``orders``: prices in ticks, quantities in lots, enums by their
    proto numbers (engine.enums), ``filled_notional`` the sum of price * quantity of
    the fills (a numeric column: it outgrows 64 bits)."""

    def __init__(self, order_id: int, account_id: int, client_order_id: str, side: int,
                 order_type: int, time_in_force: int, post_only: bool, price: int,
                 quantity: int, filled: int = 0, filled_notional: int = 0, state: int = NEW,
                 reason: str = "", priority: int = 0, last_sequence: int = 0,
                 created_ns: int = 0, updated_ns: int = 0, held: int = 0,
                 hold_placed: int = 0, hold_price: int = 0, funds: int = 0,
                 maker_fee_bps: int = 0, taker_fee_bps: int = 0, stop_price: int = 0,
                 expire_ns: int = 0, self_trade_prevention: int = 0) -> None:
        self.order_id = order_id
        self.account_id = account_id
        self.client_order_id = client_order_id
        self.side = side
        self.order_type = order_type
        self.time_in_force = time_in_force
        self.post_only = post_only
        self.price = price
        self.quantity = quantity
        self.filled = filled
        self.filled_notional = filled_notional
        self.state = state
        self.reason = reason
        # Time priority on the book: the sequence at which it (last) joined its level.
        self.priority = priority
        self.last_sequence = last_sequence
        self.created_ns = created_ns
        self.updated_ns = updated_ns
        # Money (engine.money): what it holds now and held when placed, the price a
        # buy's hold per lot is computed at, a market buy's budget, its fees.
        self.held = held
        self.hold_placed = hold_placed
        self.hold_price = hold_price
        self.funds = funds
        self.maker_fee_bps = maker_fee_bps
        self.taker_fee_bps = taker_fee_bps
        # A stop's trigger price (0: not a stop), a good-till-time order's expiry (0:
        # none), its self-trade prevention mode (engine.enums.STP_*).
        self.stop_price = stop_price
        self.expire_ns = expire_ns
        self.self_trade_prevention = self_trade_prevention

    def row(self) -> OrderRow:
        """A copy of the row as it is now (what a batch commits)."""
        return OrderRow(
            order_id=self.order_id, account_id=self.account_id,
            client_order_id=self.client_order_id, side=self.side, order_type=self.order_type,
            time_in_force=self.time_in_force, post_only=self.post_only, price=self.price,
            quantity=self.quantity, filled=self.filled, filled_notional=self.filled_notional,
            state=self.state, reason=self.reason, priority=self.priority,
            last_sequence=self.last_sequence, created_ns=self.created_ns,
            updated_ns=self.updated_ns, held=self.held, hold_placed=self.hold_placed,
            hold_price=self.hold_price, funds=self.funds, maker_fee_bps=self.maker_fee_bps,
            taker_fee_bps=self.taker_fee_bps, stop_price=self.stop_price,
            expire_ns=self.expire_ns, self_trade_prevention=self.self_trade_prevention)

    def __repr__(self) -> str:  # pragma: no cover - debugging aid
        return (f"{type(self).__name__}(id={self.order_id}, side={self.side}, "
                f"price={self.price}, qty={self.quantity}, filled={self.filled}, "
                f"state={self.state})")


class Order(OrderRow):
    """An order in the engine: its row, changed in place, and the batch that lists it
    among the changed orders (``OrderBook.batch``; None when none does)."""

    changed_in: object | None = None

    @property
    def remaining(self) -> int:
        return self.quantity - self.filled if self.state in OPEN_STATES else 0

    def same_request(self, side: int, order_type: int, time_in_force: int, price: int,
                     quantity: int, post_only: bool, funds: int = 0, stop_price: int = 0,
                     expire_ns: int = 0) -> bool:
        """Whether a new order with these contents repeats this one (a retry)."""
        return (self.side == side and self.order_type == order_type
                and self.time_in_force == time_in_force and self.price == price
                and self.quantity == quantity and self.post_only == post_only
                and self.funds == funds and self.stop_price == stop_price
                and self.expire_ns == expire_ns)
