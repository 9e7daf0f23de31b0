"""The numbers the engine speaks in, by name.

The order enums equal the ``exchange.common.v1`` proto enums (and the numbers the
``orders``, ``trades`` and ``journal`` tables hold); the journal event kinds are the
``journal.kind`` column. Code and SQL use these names, never the numbers.
"""

from __future__ import annotations

from typing import Final

# exchange.common.v1.Side
BUY: Final = 1
SELL: Final = 2
# exchange.common.v1.OrderType
LIMIT: Final = 1
MARKET: Final = 2
# exchange.common.v1.TimeInForce
GTC: Final = 1
IOC: Final = 2
FOK: Final = 3
GTT: Final = 4  # good till time: rests like GTC until its expire time (limit orders)
# exchange.common.v1.OrderState
NEW: Final = 1
PARTIALLY_FILLED: Final = 2
FILLED: Final = 3
CANCELLED: Final = 4
EXPIRED: Final = 5
REJECTED: Final = 6
UNTRIGGERED: Final = 7  # a stop waiting off the book for its trigger (open)
# exchange.common.v1.Liquidity
MAKER: Final = 1
TAKER: Final = 2
# exchange.common.v1.InstrumentStatus
TRADING: Final = 1
HALTED: Final = 2
CANCEL_ONLY: Final = 3
# exchange.common.v1.SelfTradePrevention (decided by the taking order; UNSPECIFIED is
# stored as CANCEL_RESTING, the default)
STP_UNSPECIFIED: Final = 0
STP_NONE: Final = 1
STP_CANCEL_RESTING: Final = 2
STP_CANCEL_INCOMING: Final = 3
STP_CANCEL_BOTH: Final = 4
STP_DECREMENT: Final = 5

# Journal event kinds (journal.kind).
EV_ACCEPTED: Final = 1  # a new order passed the engine's checks (its id is this sequence)
EV_TRADE: Final = 2  # one fill, at the maker's price (the trade id is this sequence)
EV_CANCELLED: Final = 3  # a resting order was cancelled (quantity: what was removed)
EV_EXPIRED: Final = 4  # the unfilled rest of an IOC, FOK or market order
EV_REJECTED: Final = 5  # a new order refused outright (post-only that would take)
EV_AMENDED: Final = 6  # a resting order's new price and/or total quantity
EV_STATUS: Final = 7  # the instrument's new status, in the event's quantity
# Derived: a stop order's trigger fired (price: the trade price that fired it); the
# order then enters the book as a taker.
EV_TRIGGERED: Final = 8
# Derived: self-trade prevention removed ``quantity`` open lots from ``order_id``
# (``other_order_id``: the other order of the prevented trade).
EV_SELF_TRADE: Final = 9
# A command (the owning pod's clock decided it): a good-till-time order expired
# (quantity: what was removed).
EV_TIMED_OUT: Final = 10

# The states of an order that rests on the book.
RESTING_STATES: Final = (NEW, PARTIALLY_FILLED)
# The states of an open order: resting, or a stop waiting for its trigger.
OPEN_STATES: Final = (NEW, PARTIALLY_FILLED, UNTRIGGERED)
