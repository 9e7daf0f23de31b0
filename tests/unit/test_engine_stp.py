"""Self-trade prevention, table-driven: every mode against an own resting order when the
incoming one is bigger, smaller or equal, own orders among others' in a level and
between others' levels, FOK, and amendments that cross; each with money and without.

A (account 10) places the incoming order; the resting orders are A's and B's. A case
lists what the incoming command journals, in order: ``T<i>/<q>`` a trade of q lots with
resting order i, ``R<i>/<q>`` self-trade prevention removing q lots from resting order i,
``I/<q>`` removing q from the incoming one, ``X/<q>`` the incoming remainder expired
(IOC); then the open quantity of every order left open, and the incoming order's state.
Whatever the mode, nothing A trades with A prints (except NONE), and every order still
open holds exactly what its open lots need (engine_desk.Desk checks it after each
command, with the ledger's totals); the journal replays to the same book.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from engine_desk import A, B, Desk

from matching_service.engine import (
    BUY,
    CANCELLED,
    ERR_INVALID,
    EV_EXPIRED,
    EV_SELF_TRADE,
    EV_TRADE,
    EXPIRED,
    FILLED,
    FOK,
    GTC,
    IOC,
    LIMIT,
    MARKET,
    NEW,
    PARTIALLY_FILLED,
    SELL,
    STP_CANCEL_BOTH,
    STP_CANCEL_INCOMING,
    STP_CANCEL_RESTING,
    STP_DECREMENT,
    STP_NONE,
    STP_UNSPECIFIED,
)

NAMES = {STP_NONE: "none", STP_CANCEL_RESTING: "cancel-resting",
         STP_CANCEL_INCOMING: "cancel-incoming", STP_CANCEL_BOTH: "cancel-both",
         STP_DECREMENT: "decrement", STP_UNSPECIFIED: "default"}


@dataclass
class Case:
    name: str
    resting: list[tuple[int, int, int, int]]  # (account, side, price, qty), in order
    incoming: tuple[int, int, int, int, int]  # A's (side, type, tif, price, qty)
    mode: int
    events: list[str]
    left: dict[str, int]  # "0", "1", ... and "I": open lots of the orders left open
    state: int  # the incoming order's
    quantity: int = 0  # the incoming order's total after (0: as placed)
    resting_states: dict[int, int] = field(default_factory=dict)


def buy(price: int, qty: int, tif: int = GTC, type_: int = LIMIT) -> tuple:
    return (BUY, type_, tif, price if type_ == LIMIT else 0, qty)


ONE_BIGGER = [(A, SELL, 100, 2)]
ONE_SMALLER = [(A, SELL, 100, 5)]
LEVEL = [(B, SELL, 100, 2), (A, SELL, 100, 3), (B, SELL, 100, 4)]
LEVELS = [(B, SELL, 100, 2), (A, SELL, 101, 3), (B, SELL, 102, 4)]

CASES = [
    # one own resting order, the incoming one bigger
    Case("bigger", ONE_BIGGER, buy(100, 5), STP_NONE, ["T0/2"], {"I": 3}, PARTIALLY_FILLED),
    Case("bigger", ONE_BIGGER, buy(100, 5), STP_UNSPECIFIED, ["R0/2"], {"I": 5}, NEW,
         resting_states={0: CANCELLED}),
    Case("bigger", ONE_BIGGER, buy(100, 5), STP_CANCEL_RESTING, ["R0/2"], {"I": 5}, NEW,
         resting_states={0: CANCELLED}),
    Case("bigger", ONE_BIGGER, buy(100, 5), STP_CANCEL_INCOMING, ["I/5"], {"0": 2}, EXPIRED),
    Case("bigger", ONE_BIGGER, buy(100, 5), STP_CANCEL_BOTH, ["R0/2", "I/5"], {}, EXPIRED,
         resting_states={0: CANCELLED}),
    Case("bigger", ONE_BIGGER, buy(100, 5), STP_DECREMENT, ["R0/2", "I/2"], {"I": 3}, NEW,
         quantity=3, resting_states={0: CANCELLED}),
    # the incoming one smaller
    Case("smaller", ONE_SMALLER, buy(100, 2), STP_NONE, ["T0/2"], {"0": 3}, FILLED),
    Case("smaller", ONE_SMALLER, buy(100, 2), STP_CANCEL_RESTING, ["R0/5"], {"I": 2}, NEW),
    Case("smaller", ONE_SMALLER, buy(100, 2), STP_CANCEL_INCOMING, ["I/2"], {"0": 5}, EXPIRED),
    Case("smaller", ONE_SMALLER, buy(100, 2), STP_CANCEL_BOTH, ["R0/5", "I/2"], {}, EXPIRED),
    Case("smaller", ONE_SMALLER, buy(100, 2), STP_DECREMENT, ["R0/2", "I/2"], {"0": 3}, EXPIRED,
         resting_states={0: NEW}),
    # equal
    Case("equal", ONE_SMALLER, buy(100, 5), STP_NONE, ["T0/5"], {}, FILLED),
    Case("equal", ONE_SMALLER, buy(100, 5), STP_CANCEL_RESTING, ["R0/5"], {"I": 5}, NEW),
    Case("equal", ONE_SMALLER, buy(100, 5), STP_CANCEL_INCOMING, ["I/5"], {"0": 5}, EXPIRED),
    Case("equal", ONE_SMALLER, buy(100, 5), STP_CANCEL_BOTH, ["R0/5", "I/5"], {}, EXPIRED),
    Case("equal", ONE_SMALLER, buy(100, 5), STP_DECREMENT, ["R0/5", "I/5"], {}, EXPIRED,
         resting_states={0: CANCELLED}),
    # an own order between others' in one level
    Case("in a level", LEVEL, buy(100, 10), STP_NONE, ["T0/2", "T1/3", "T2/4"], {"I": 1},
         PARTIALLY_FILLED),
    Case("in a level", LEVEL, buy(100, 10), STP_CANCEL_RESTING, ["T0/2", "R1/3", "T2/4"],
         {"I": 4}, PARTIALLY_FILLED),
    Case("in a level", LEVEL, buy(100, 10), STP_CANCEL_INCOMING, ["T0/2", "I/8"],
         {"1": 3, "2": 4}, EXPIRED),
    Case("in a level", LEVEL, buy(100, 10), STP_CANCEL_BOTH, ["T0/2", "R1/3", "I/8"],
         {"2": 4}, EXPIRED),
    Case("in a level", LEVEL, buy(100, 10), STP_DECREMENT, ["T0/2", "R1/3", "I/3", "T2/4"],
         {"I": 1}, PARTIALLY_FILLED, quantity=7),
    # an own level between others' levels
    Case("between levels", LEVELS, buy(102, 10), STP_CANCEL_RESTING, ["T0/2", "R1/3", "T2/4"],
         {"I": 4}, PARTIALLY_FILLED),
    Case("between levels", LEVELS, buy(102, 10), STP_CANCEL_INCOMING, ["T0/2", "I/8"],
         {"1": 3, "2": 4}, EXPIRED),
    Case("between levels", LEVELS, buy(102, 10), STP_DECREMENT,
         ["T0/2", "R1/3", "I/3", "T2/4"], {"I": 1}, PARTIALLY_FILLED, quantity=7),
    # IOC and market takers: a remainder expires as ever
    Case("IOC", LEVELS, buy(102, 10, IOC), STP_CANCEL_RESTING, ["T0/2", "R1/3", "T2/4", "X/4"],
         {}, EXPIRED),
    Case("market", LEVELS, buy(0, 4, IOC, MARKET), STP_DECREMENT, ["T0/2", "R1/2", "I/2"],
         {"1": 1, "2": 4}, EXPIRED),
    # FOK counts only what it may take (docs/orders.md)
    Case("FOK", LEVEL, buy(100, 6, FOK), STP_CANCEL_RESTING, ["T0/2", "R1/3", "T2/4"], {},
         FILLED),
    Case("FOK", LEVEL, buy(100, 7, FOK), STP_CANCEL_RESTING, ["X/7"], {"0": 2, "1": 3, "2": 4},
         EXPIRED),
    Case("FOK", LEVEL, buy(100, 2, FOK), STP_CANCEL_INCOMING, ["T0/2"], {"1": 3, "2": 4},
         FILLED),
    Case("FOK", LEVEL, buy(100, 3, FOK), STP_CANCEL_BOTH, ["X/3"], {"0": 2, "1": 3, "2": 4},
         EXPIRED),
    Case("FOK", LEVEL, buy(100, 9, FOK), STP_DECREMENT, ["T0/2", "R1/3", "I/3", "T2/4"], {},
         FILLED, quantity=6),
    Case("FOK", LEVEL, buy(100, 10, FOK), STP_DECREMENT, ["X/10"], {"0": 2, "1": 3, "2": 4},
         EXPIRED),
]


def labels(events, resting_ids: list[int], incoming_id: int) -> list[str]:
    index = {oid: i for i, oid in enumerate(resting_ids)}
    out = []
    for e in events:
        if e.kind == EV_TRADE:
            assert e.order_id == incoming_id
            out.append(f"T{index[e.other_order_id]}/{e.quantity}")
        elif e.kind == EV_SELF_TRADE:
            who = "I" if e.order_id == incoming_id else f"R{index[e.order_id]}"
            out.append(f"{who}/{e.quantity}")
        elif e.kind == EV_EXPIRED:
            out.append(f"X/{e.quantity}")
    return out


@pytest.mark.parametrize("money", [True, False], ids=["money", "no-money"])
@pytest.mark.parametrize("case", CASES, ids=[f"{c.name}-{NAMES[c.mode]}-{i}"
                                              for i, c in enumerate(CASES)])
def test_self_trade_prevention(case: Case, money: bool) -> None:
    desk = Desk(money)
    resting = [desk.limit(acct, side, price, qty) for acct, side, price, qty in case.resting]
    side, type_, tif, price, qty = case.incoming
    out = desk.new(A, side, type_, tif, price, qty, stp=case.mode,
                   hold_price=110 if type_ == MARKET else 0)
    order = out.order
    assert out.error == "" and order is not None
    assert labels(desk.last_events, [o.order_id for o in resting], order.order_id) == \
        case.events
    # nothing A trades with A prints, unless it asked for NONE
    assert all(t.maker_account_id != t.taker_account_id or case.mode == STP_NONE
               for t in out.fills)
    left = {str(i): o.quantity - o.filled for i, o in enumerate(resting) if o.state in (1, 2)}
    if order.state in (NEW, PARTIALLY_FILLED):
        left["I"] = order.quantity - order.filled
    assert left == case.left
    assert order.state == case.state
    assert order.quantity == (case.quantity or qty)
    assert order.filled == sum(f.quantity for f in out.fills)
    if case.state == EXPIRED and any(x.startswith("I/") for x in case.events):
        assert order.reason == "SELF_TRADE_PREVENTED"
    for i, state in case.resting_states.items():
        assert resting[i].state == state
        if state == CANCELLED:
            assert resting[i].reason == "SELF_TRADE_PREVENTED" and resting[i].held == 0
    # the book as the orders say
    assert sorted(o.order_id for o in desk.book.resting()) == sorted(
        o.order_id for o in [*resting, order] if o.state in (1, 2))
    desk.check_replay()


@pytest.mark.parametrize("money", [True, False], ids=["money", "no-money"])
@pytest.mark.parametrize("mode,events,amended", [
    (STP_CANCEL_RESTING, ["R0/2", "T1/3"], (PARTIALLY_FILLED, 1)),
    (STP_CANCEL_INCOMING, ["I/4"], (EXPIRED, 0)),
    (STP_DECREMENT, ["R0/2", "I/2", "T1/2"], (FILLED, 0)),
    (STP_NONE, ["T0/2", "T1/2"], (FILLED, 0)),
])
def test_an_amendment_that_crosses_takes_with_the_orders_own_mode(
        mode: int, events: list[str], amended: tuple[int, int], money: bool) -> None:
    desk = Desk(money)
    asks = [desk.limit(A, SELL, 101, 2), desk.limit(B, SELL, 101, 3)]
    bid = desk.limit(A, BUY, 99, 4, stp=mode)
    assert bid.self_trade_prevention == mode
    out = desk.amend(bid, 101, 0)
    assert out.error == ""
    assert labels([e for e in desk.last_events if e.kind != 6],
                  [o.order_id for o in asks], bid.order_id) == events
    assert (bid.state, bid.quantity - bid.filled if bid.state in (1, 2) else 0) == amended
    desk.check_replay()


def test_unspecified_is_stored_as_cancel_resting_and_an_unknown_mode_is_refused() -> None:
    desk = Desk()
    order = desk.limit(A, BUY, 99, 1)
    assert order.self_trade_prevention == STP_CANCEL_RESTING
    assert desk.last_events[0].self_trade_prevention == STP_CANCEL_RESTING
    out = desk.new(A, BUY, LIMIT, GTC, 99, 1, stp=9)
    assert out.order is None and out.error == ERR_INVALID
