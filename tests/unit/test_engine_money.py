"""The engine's money, table-driven (engine.money, docs/money.md): what every kind of
order holds and gives back, fees and their rounding, budgets.

The book runs with terms: a lot is 100 base units, a tick times a lot 10 quote units;
every order pays 10 bps as a maker and 20 as a taker. At 1000 ticks a lot costs 10,000
quote units and holds 10,020 (the taker fee, the larger); at 1001, 10,010 + 21 = 10,031
(20.02 rounded up); at 999, 9,990 + 20 = 10,010 (19.98 up). A ``Ledger`` (money_ledger)
takes the order path's hold for each command, applies each batch's ``money`` and checks
it (one row per account and asset, every asset summing to zero, nothing negative); the
cases state the balances after, as differences from the funding, in exact integers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, NamedTuple

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from money_ledger import Key, Ledger, expected_fee, need, pays_with

from matching_service.engine import (
    BUY,
    CANCELLED,
    ERR_INSUFFICIENT_FUNDS,
    ERR_INVALID,
    EV_ACCEPTED,
    EXPIRED,
    FILLED,
    FOK,
    GTC,
    IOC,
    LIMIT,
    MARKET,
    NEW,
    PARTIALLY_FILLED,
    REJECTED,
    SELL,
    STP_NONE,
    Changes,
    Order,
    OrderBook,
    Outcome,
    Terms,
    fee,
)

BASE, QUOTE = 1, 2
FEES = 99  # the fee account
A, B = 10, 20  # A places the resting orders, B the one each case is about
MAKER_BPS, TAKER_BPS = 10, 20
TERMS = Terms(BASE, QUOTE, lot_units=100, tick_lot_units=10, fee_account=FEES)
FUNDS = 10**9  # what A and B start with of each asset
NO_MONEY: tuple[list[int], list[int], list[int], list[int]] = ([], [], [], [])


class Desk:
    """A book with terms and the ledger of its accounts: each command takes its hold in
    the ledger first (as the order path does), gives it back if the book refuses the
    command, and is its own batch."""

    def __init__(self, terms: Terms = TERMS) -> None:
        self.terms = terms
        self.book = OrderBook(1, terms=terms)
        self.ledger = Ledger({(acct, asset): FUNDS for acct in (A, B)
                              for asset in (terms.base_asset, terms.quote_asset)})
        self.last: Changes = self.book.drain_changes()
        self.now = 0

    def new(self, account: int, side: int, type_: int, tif: int, price: int, qty: int,
            held: int | None = None, hold_price: int = 0, funds: int = 0,
            post_only: bool = False, maker_bps: int = MAKER_BPS,
            taker_bps: int = TAKER_BPS, stp: int = 0) -> Outcome:
        """A new order holding ``held`` (None: exactly its need)."""
        if held is None:
            held = need(self.terms, side, qty, price if type_ == LIMIT else hold_price,
                        funds, maker_bps, taker_bps)
        asset = pays_with(self.terms, side)
        assert self.ledger.hold(account, asset, held)
        self.now += 1
        out = self.book.new_order(account, side, type_, tif, price, qty, "", post_only,
                                  self.now, held, hold_price, funds, maker_bps, taker_bps,
                                  stp)
        if out.error:
            self.ledger.unhold(account, asset, held)
        self.commit()
        return out

    def amend(self, order: Order, price: int, qty: int, extra: int) -> Outcome:
        asset = pays_with(self.terms, order.side)
        assert self.ledger.hold(order.account_id, asset, extra)
        self.now += 1
        out = self.book.amend(order.account_id, order.order_id, price, qty, self.now, extra)
        if out.error:
            self.ledger.unhold(order.account_id, asset, extra)
        self.commit()
        return out

    def cancel(self, order: Order) -> Outcome:
        self.now += 1
        out = self.book.cancel(order.account_id, order.order_id, self.now)
        self.commit()
        return out

    def commit(self) -> None:
        self.last = self.book.drain_changes()
        self.ledger.apply(self.last.money)
        self.check_holds()

    def check_holds(self) -> None:
        """What each account holds is what its resting orders hold: nothing else."""
        resting: dict[Key, int] = {}
        for o in self.book.resting():
            key = (o.account_id, pays_with(self.terms, o.side))
            resting[key] = resting.get(key, 0) + o.held
        held = {k: v for k, v in self.ledger.held.items() if v}
        assert held == {k: v for k, v in resting.items() if v}


class Cmd(NamedTuple):
    """B's order (``held`` None: exactly what it needs)."""

    side: int
    type_: int
    tif: int
    price: int
    qty: int
    held: int | None = None
    hold_price: int = 0
    funds: int = 0
    post_only: bool = False


def buy(price: int, qty: int, tif: int = GTC, **kw: Any) -> Cmd:
    return Cmd(BUY, LIMIT, tif, price, qty, **kw)


def sell(price: int, qty: int, tif: int = GTC, **kw: Any) -> Cmd:
    return Cmd(SELL, LIMIT, tif, price, qty, **kw)


def market(side: int, qty: int, tif: int = IOC, **kw: Any) -> Cmd:
    return Cmd(side, MARKET, tif, 0, qty, **kw)


@dataclass
class Case:
    name: str
    resting: list[tuple[int, int, int]]  # A's orders (side, price, qty), each holding its need
    order: Cmd  # then B's
    fills: list[tuple[int, int]]  # (price, qty) B's order traded
    state: int  # B's order's, at the end
    held: int  # what B's order holds at the end
    # (available, held) of each balance that changed, as differences from the funding
    balances: dict[Key, tuple[int, int]]
    reason: str = ""
    cancel: bool = False  # then B cancels its order
    account: int = B  # who places ``order``
    stp: int = 0  # its self-trade prevention


CASES = [
    Case("limit buy rests: holds quantity x (notional + the larger fee)", [],
         buy(1000, 5), [], NEW, 50_100, {(B, QUOTE): (-50_100, 50_100)}),
    Case("limit buy cancelled: the whole hold back", [],
         buy(1000, 5), [], CANCELLED, 0, {}, cancel=True),
    Case("limit sell rests: holds its base", [],
         sell(1000, 5), [], NEW, 500, {(B, BASE): (-500, 500)}),
    Case("limit sell cancelled: its base back", [],
         sell(1000, 5), [], CANCELLED, 0, {}, cancel=True),
    # 2 lots at 1000: notional 20,000, taker fee 40, maker fee 20; the 2 lots held
    # 2 x 10,020 = 20,040: nothing left over
    Case("partial fill: the rest still holds its lots", [(SELL, 1000, 2)],
         buy(1000, 5), [(1000, 2)], PARTIALLY_FILLED, 30_060,
         {(A, BASE): (-200, 0), (A, QUOTE): (19_980, 0), (B, BASE): (200, 0),
          (B, QUOTE): (-50_100, 30_060), (FEES, QUOTE): (60, 0)}),
    Case("partial fill then cancel: the rest's hold back", [(SELL, 1000, 2)],
         buy(1000, 5), [(1000, 2)], CANCELLED, 0,
         {(A, BASE): (-200, 0), (A, QUOTE): (19_980, 0), (B, BASE): (200, 0),
          (B, QUOTE): (-20_040, 0), (FEES, QUOTE): (60, 0)}, cancel=True),
    # held 5 x 10,031 = 50,155; 3 lots at 999: notional 29,970, taker fee 60 (59.94 up),
    # maker fee 30 (29.97 up); those lots held 30,093: 63 back at once, 20,062 rests
    Case("price improvement back at once while the rest rests", [(SELL, 999, 3)],
         buy(1001, 5), [(999, 3)], PARTIALLY_FILLED, 20_062,
         {(A, BASE): (-300, 0), (A, QUOTE): (29_940, 0), (B, BASE): (300, 0),
          (B, QUOTE): (-50_092, 20_062), (FEES, QUOTE): (90, 0)}),
    Case("IOC remainder expires: its hold back", [(SELL, 1000, 2)],
         buy(1000, 5, IOC), [(1000, 2)], EXPIRED, 0,
         {(A, BASE): (-200, 0), (A, QUOTE): (19_980, 0), (B, BASE): (200, 0),
          (B, QUOTE): (-20_040, 0), (FEES, QUOTE): (60, 0)}, reason="IOC_REMAINDER"),
    Case("FOK not fillable: no trade, the whole hold back", [(SELL, 1000, 2)],
         buy(1000, 5, FOK), [], EXPIRED, 0, {(A, BASE): (-200, 200)},
         reason="FOK_NOT_FILLABLE"),
    # 2 at 999: 19,980 + fee 40 (39.96 up), held 20,040: 20 back; 3 at 1000: 30,000 + 60
    Case("FOK fills over two levels", [(SELL, 999, 2), (SELL, 1000, 3)],
         buy(1000, 5, FOK), [(999, 2), (1000, 3)], FILLED, 0,
         {(A, BASE): (-500, 0), (A, QUOTE): (49_930, 0), (B, BASE): (500, 0),
          (B, QUOTE): (-50_080, 0), (FEES, QUOTE): (150, 0)}),
    # A's bids hold 20,040 and 20,020; as makers they pay 10 bps (20, then 10 on 9,990):
    # 20 and 10 of their taker-fee reserve come back
    Case("market sell: the buyers' unused fee reserve back", [(BUY, 1000, 2), (BUY, 999, 2)],
         market(SELL, 3), [(1000, 2), (999, 1)], FILLED, 0,
         {(A, BASE): (300, 0), (A, QUOTE): (-40_030, 10_010), (B, BASE): (-300, 0),
          (B, QUOTE): (29_930, 0), (FEES, QUOTE): (90, 0)}),
    Case("market sell remainder expires: its base back", [(BUY, 1000, 2)],
         market(SELL, 5), [(1000, 2)], EXPIRED, 0,
         {(A, BASE): (200, 0), (A, QUOTE): (-20_020, 0), (B, BASE): (-200, 0),
          (B, QUOTE): (19_960, 0), (FEES, QUOTE): (60, 0)}, reason="IOC_REMAINDER"),
    # held 5 x 10,031 at the protection price 1001: 2 at 999 (42 back), 2 at 1000 (22
    # back), 1002 is beyond: the last lot's 10,031 back
    Case("market buy stops at its protection price, the rest back",
         [(SELL, 999, 2), (SELL, 1000, 2), (SELL, 1002, 2)],
         market(BUY, 5, hold_price=1001), [(999, 2), (1000, 2)], EXPIRED, 0,
         {(A, BASE): (-600, 200), (A, QUOTE): (39_940, 0), (B, BASE): (400, 0),
          (B, QUOTE): (-40_060, 0), (FEES, QUOTE): (120, 0)}, reason="IOC_REMAINDER"),
    Case("market buy FOK within its protection price fills",
         [(SELL, 999, 2), (SELL, 1002, 2)],
         market(BUY, 2, FOK, hold_price=1001), [(999, 2)], FILLED, 0,
         {(A, BASE): (-400, 200), (A, QUOTE): (19_960, 0), (B, BASE): (200, 0),
          (B, QUOTE): (-20_020, 0), (FEES, QUOTE): (60, 0)}),
    Case("market buy FOK beyond its protection price: all back",
         [(SELL, 999, 2), (SELL, 1002, 2)],
         market(BUY, 3, FOK, hold_price=1001), [], EXPIRED, 0, {(A, BASE): (-400, 400)},
         reason="FOK_NOT_FILLABLE"),
    Case("market buy without a reference price: nothing trades, all back",
         [(SELL, 1000, 2)], market(BUY, 5, held=1_000), [], EXPIRED, 0,
         {(A, BASE): (-200, 200)}, reason="NO_REFERENCE_PRICE"),
    Case("market FOK buy without a reference price: nothing trades, all back",
         [(SELL, 1000, 2)], market(BUY, 1, FOK, held=1_000), [], EXPIRED, 0,
         {(A, BASE): (-200, 200)}, reason="NO_REFERENCE_PRICE"),
    # funds 35,000: 2 at 999 cost 19,980 + 40; then 14,980 buys 1 at 1000 (10,020), not
    # 2 (20,040); 4,960 back
    Case("market buy with funds: whole lots while affordable, fees included",
         [(SELL, 999, 2), (SELL, 1000, 3)], market(BUY, 10, funds=35_000),
         [(999, 2), (1000, 1)], EXPIRED, 0,
         {(A, BASE): (-500, 200), (A, QUOTE): (29_950, 0), (B, BASE): (300, 0),
          (B, QUOTE): (-30_040, 0), (FEES, QUOTE): (90, 0)}, reason="FUNDS_EXHAUSTED"),
    Case("market buy with funds spent to the last unit",
         [(SELL, 999, 2), (SELL, 1000, 3)], market(BUY, 10, funds=30_040),
         [(999, 2), (1000, 1)], EXPIRED, 0,
         {(A, BASE): (-500, 200), (A, QUOTE): (29_950, 0), (B, BASE): (300, 0),
          (B, QUOTE): (-30_040, 0), (FEES, QUOTE): (90, 0)}, reason="FUNDS_EXHAUSTED"),
    Case("market buy with funds one unit short of the next lot",
         [(SELL, 999, 2), (SELL, 1000, 3)], market(BUY, 10, funds=30_039),
         [(999, 2)], EXPIRED, 0,
         {(A, BASE): (-500, 300), (A, QUOTE): (19_960, 0), (B, BASE): (200, 0),
          (B, QUOTE): (-20_020, 0), (FEES, QUOTE): (60, 0)}, reason="FUNDS_EXHAUSTED"),
    Case("market buy with funds that buy no lot at all: all back",
         [(SELL, 999, 2)], market(BUY, 10, funds=10_009), [], EXPIRED, 0,
         {(A, BASE): (-200, 200)}, reason="FUNDS_EXHAUSTED"),
    Case("market buy with funds filled before its budget: the rest back",
         [(SELL, 999, 2)], market(BUY, 1, funds=35_000), [(999, 1)], FILLED, 0,
         {(A, BASE): (-200, 100), (A, QUOTE): (9_980, 0), (B, BASE): (100, 0),
          (B, QUOTE): (-10_010, 0), (FEES, QUOTE): (30, 0)}),
    Case("market buy with funds into an empty book: all back", [],
         market(BUY, 1, funds=35_000), [], EXPIRED, 0, {}, reason="NO_LIQUIDITY"),
    Case("post-only that would take is rejected: its hold back", [(SELL, 1000, 2)],
         buy(1000, 5, post_only=True), [], REJECTED, 0, {(A, BASE): (-200, 200)},
         reason="POST_ONLY_WOULD_TAKE"),
    Case("a buy's excess hold back at placement", [],
         buy(1000, 5, held=60_000), [], NEW, 50_100, {(B, QUOTE): (-50_100, 50_100)}),
    Case("a sell's excess hold back at placement", [],
         sell(1000, 5, held=900), [], NEW, 500, {(B, BASE): (-500, 500)}),
    Case("a filled order's excess hold back", [(SELL, 1000, 2)],
         buy(1000, 2, held=30_000), [(1000, 2)], FILLED, 0,
         {(A, BASE): (-200, 0), (A, QUOTE): (19_980, 0), (B, BASE): (200, 0),
          (B, QUOTE): (-20_040, 0), (FEES, QUOTE): (60, 0)}),
    # A's bid at 1001 holds 20,062; as a maker it pays 21 (20.02 up): 21 back; B's sell
    # pays 41 (40.04 up) and gets its unsold lot back
    Case("limit sell IOC takes a better bid", [(BUY, 1001, 2)],
         sell(1000, 3, IOC), [(1001, 2)], EXPIRED, 0,
         {(A, BASE): (200, 0), (A, QUOTE): (-20_041, 0), (B, BASE): (-200, 0),
          (B, QUOTE): (19_979, 0), (FEES, QUOTE): (62, 0)}, reason="IOC_REMAINDER"),
    Case("self-trade allowed (NONE): base and notional net out, the fees remain",
         [(SELL, 1000, 2)], buy(1000, 2), [(1000, 2)], FILLED, 0,
         {(A, QUOTE): (-60, 0), (FEES, QUOTE): (60, 0)}, account=A, stp=STP_NONE),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_holds_and_releases(case: Case) -> None:
    desk = Desk()
    for side, price, qty in case.resting:
        out = desk.new(A, side, LIMIT, GTC, price, qty)
        assert out.error == "" and out.order is not None and out.order.state == NEW
    c = case.order
    out = desk.new(case.account, c.side, c.type_, c.tif, c.price, c.qty, c.held,
                   c.hold_price, c.funds, c.post_only, stp=case.stp)
    assert out.error == "" and out.order is not None
    fees = sum(t.maker_fee + t.taker_fee for t in out.fills)
    if case.cancel:
        assert desk.cancel(out.order).error == ""
    order = out.order
    assert [(t.price, t.quantity) for t in out.fills] == case.fills
    assert (order.state, order.held) == (case.state, case.held)
    if case.reason:
        assert order.reason == case.reason
    assert desk.ledger.changes() == case.balances
    assert desk.ledger.available.get((FEES, QUOTE), 0) == fees
    for t in out.fills:  # each fill's fees: the maker's 10 bps, the taker's 20
        notional = t.price * t.quantity * TERMS.tick_lot_units
        assert (t.maker_fee, t.taker_fee) == (expected_fee(notional, MAKER_BPS),
                                              expected_fee(notional, TAKER_BPS))
    if c.funds:
        spent = sum(t.price * t.quantity * TERMS.tick_lot_units + t.taker_fee
                    for t in out.fills)
        assert spent <= c.funds


def test_price_improvement_per_fill() -> None:
    """What each fill gives back of a buy's hold is on the trade: the lots' hold less
    the notional and the buyer's fee."""
    desk = Desk()
    desk.new(A, SELL, LIMIT, GTC, 999, 3)
    desk.new(A, SELL, LIMIT, GTC, 1000, 1)
    out = desk.new(B, BUY, LIMIT, GTC, 1001, 4)
    # 3 x 10,031 - 29,970 - 60 and 10,031 - 10,000 - 20
    assert [t.buyer_released for t in out.fills] == [63, 11]
    assert [(t.maker_fee, t.taker_fee) for t in out.fills] == [(30, 60), (10, 20)]
    assert out.order is not None and out.order.state == FILLED and out.order.held == 0


@pytest.mark.parametrize(("side", "held"), [(BUY, 50_099), (SELL, 499), (BUY, 0)],
                         ids=["buy one unit short", "sell one unit short", "buy nothing held"])
def test_insufficient_hold_is_refused_with_no_event(side: int, held: int) -> None:
    desk = Desk()
    seq = desk.book.sequence
    out = desk.new(B, side, LIMIT, GTC, 1000, 5, held=held)
    assert out.order is None and out.error == ERR_INSUFFICIENT_FUNDS
    assert desk.book.sequence == seq
    assert desk.last.events == [] and desk.last.orders == [] and desk.last.money == NO_MONEY
    assert desk.ledger.changes() == {}
    assert desk.book.resting() == []


def test_exact_hold_is_enough() -> None:
    desk = Desk()
    out = desk.new(B, BUY, LIMIT, GTC, 1000, 5, held=50_100)
    assert out.error == "" and out.order is not None and out.order.held == 50_100
    assert [e.kind for e in desk.last.events] == [EV_ACCEPTED]
    assert desk.last.events[0].held == 50_100


# -- amend ---------------------------------------------------------------------


@dataclass
class AmendCase:
    name: str
    order: tuple[int, int, int]  # A's resting order: (side, price, qty)
    amend: tuple[int, int, int]  # (price, quantity, extra held) as sent: 0 keeps
    error: str  # "" when accepted
    held: int  # what A's order holds after
    balances: dict[Key, tuple[int, int]]
    fills: list[tuple[int, int]] = field(default_factory=list)
    others: list[tuple[int, int, int]] = field(default_factory=list)  # B's, placed after


AMEND_CASES = [
    AmendCase("buy quantity down: the lots removed back", (BUY, 1000, 5), (0, 3, 0), "",
              30_060, {(A, QUOTE): (-30_060, 30_060)}),
    AmendCase("buy quantity up with the exact extra", (BUY, 1000, 5), (0, 7, 20_040), "",
              70_140, {(A, QUOTE): (-70_140, 70_140)}),
    AmendCase("buy quantity up with more extra than needed: only the excess back",
              (BUY, 1000, 5), (0, 7, 25_000), "", 70_140, {(A, QUOTE): (-70_140, 70_140)}),
    AmendCase("buy quantity up one unit short: refused, nothing changes",
              (BUY, 1000, 5), (0, 7, 20_039), ERR_INSUFFICIENT_FUNDS, 50_100,
              {(A, QUOTE): (-50_100, 50_100)}),
    AmendCase("buy price up takes the extra per lot", (BUY, 1000, 5), (1001, 0, 55), "",
              50_155, {(A, QUOTE): (-50_155, 50_155)}),
    AmendCase("buy price up one unit short: refused, nothing changes",
              (BUY, 1000, 5), (1001, 0, 54), ERR_INSUFFICIENT_FUNDS, 50_100,
              {(A, QUOTE): (-50_100, 50_100)}),
    AmendCase("buy price down: the difference back", (BUY, 1000, 5), (999, 0, 0), "",
              50_050, {(A, QUOTE): (-50_050, 50_050)}),
    AmendCase("buy price and quantity down: both back", (BUY, 1000, 5), (999, 2, 0), "",
              20_020, {(A, QUOTE): (-20_020, 20_020)}),
    # 5 x 10,041 at 1002 (20.04 up): 105 more; 2 lots at 1002 as a taker: 20,040 + 41,
    # 1 of the 20,082 they held back; B's maker fee 21
    AmendCase("buy price up crosses: trades as a taker, the rest rests", (BUY, 1000, 5),
              (1002, 0, 105), "", 30_123,
              {(A, BASE): (200, 0), (A, QUOTE): (-50_204, 30_123), (B, BASE): (-200, 0),
               (B, QUOTE): (20_019, 0), (FEES, QUOTE): (62, 0)},
              fills=[(1002, 2)], others=[(SELL, 1002, 2)]),
    AmendCase("buy price up crosses and fills: nothing left held", (BUY, 1000, 2),
              (1002, 0, 42), "", 0,
              {(A, BASE): (200, 0), (A, QUOTE): (-20_081, 0), (B, BASE): (-300, 100),
               (B, QUOTE): (20_019, 0), (FEES, QUOTE): (62, 0)},
              fills=[(1002, 2)], others=[(SELL, 1002, 3)]),
    # B's sell takes 2 lots of A's bid (A the maker: 20 of fee reserve back); amended to
    # 4 lots, 2 open: 20,040 held
    AmendCase("partially filled buy amended down holds its open lots only",
              (BUY, 1000, 5), (0, 4, 0), "", 20_040,
              {(A, BASE): (200, 0), (A, QUOTE): (-40_060, 20_040), (B, BASE): (-200, 0),
               (B, QUOTE): (19_960, 0), (FEES, QUOTE): (60, 0)},
              others=[(SELL, 1000, 2)]),
    AmendCase("sell quantity down: the base removed back", (SELL, 1000, 5), (0, 2, 0), "",
              200, {(A, BASE): (-200, 200)}),
    AmendCase("sell quantity up with the extra base", (SELL, 1000, 5), (0, 8, 300), "",
              800, {(A, BASE): (-800, 800)}),
    AmendCase("sell quantity up without it: refused", (SELL, 1000, 5), (0, 8, 299),
              ERR_INSUFFICIENT_FUNDS, 500, {(A, BASE): (-500, 500)}),
    AmendCase("sell price change: the same base held", (SELL, 1000, 5), (1005, 0, 0), "",
              500, {(A, BASE): (-500, 500)}),
    AmendCase("no change with an extra hold: the extra back", (BUY, 1000, 5), (0, 0, 100),
              "", 50_100, {(A, QUOTE): (-50_100, 50_100)}),
    AmendCase("quantity down to what filled: refused, nothing changes", (BUY, 1000, 5),
              (0, 2, 0), ERR_INVALID, 30_060,
              {(A, BASE): (200, 0), (A, QUOTE): (-50_080, 30_060), (B, BASE): (-200, 0),
               (B, QUOTE): (19_960, 0), (FEES, QUOTE): (60, 0)},
              others=[(SELL, 1000, 2)]),
]


@pytest.mark.parametrize("case", AMEND_CASES, ids=[c.name for c in AMEND_CASES])
def test_amend_holds(case: AmendCase) -> None:
    desk = Desk()
    side, price, qty = case.order
    order = desk.new(A, side, LIMIT, GTC, price, qty).order
    assert order is not None
    for other_side, other_price, other_qty in case.others:
        assert desk.new(B, other_side, LIMIT, GTC, other_price, other_qty).error == ""
    before = (order.price, order.quantity, order.filled, order.held, order.priority)
    seq = desk.book.sequence
    new_price, new_qty, extra = case.amend
    out = desk.amend(order, new_price, new_qty, extra)
    assert out.error == case.error
    assert [(t.price, t.quantity) for t in out.fills] == case.fills
    assert order.held == case.held
    assert desk.ledger.changes() == case.balances
    if case.error:
        assert (order.price, order.quantity, order.filled, order.held,
                order.priority) == before
        assert desk.book.sequence == seq
        assert desk.last.events == [] and desk.last.money == NO_MONEY
        return
    if order.state != FILLED:  # the order holds exactly what its open lots need
        assert order.held == need(TERMS, side, order.quantity - order.filled, order.price,
                                  0, MAKER_BPS, TAKER_BPS)


def test_no_change_amend_releases_the_extra_with_no_event() -> None:
    desk = Desk()
    order = desk.new(A, BUY, LIMIT, GTC, 1000, 5).order
    assert order is not None
    out = desk.amend(order, 1000, 5, 100)
    assert out.error == "" and order.held == 50_100
    assert desk.last.events == []
    assert desk.last.money == ([A], [QUOTE], [100], [-100])


def test_amend_event_carries_the_extra_hold() -> None:
    desk = Desk()
    order = desk.new(A, BUY, LIMIT, GTC, 1000, 5).order
    assert order is not None
    desk.amend(order, 0, 7, 25_000)
    (event,) = desk.last.events
    assert (event.quantity, event.held) == (7, 25_000)
    # the order path's 25,000 taken over, 4,960 of it back at once
    assert desk.last.money == ([A], [QUOTE], [4_960], [-4_960])


# -- fees and their rounding ----------------------------------------------------


@pytest.mark.parametrize(("notional", "bps", "expected"), [
    (50_000, 20, 100),  # exact: 1,000,000 / 10,000
    (10_000, 1, 1),  # exact, the smallest
    (9_999, 1, 1),  # 0.9999: a charge rounds up
    (10_001, 1, 2),  # 1.0001: up
    (19_999, 1, 2),
    (5_000, 3, 2),  # 1.5
    (50_000, -20, -100),  # an exact rebate
    (9_999, -1, 0),  # -0.9999: a rebate rounds towards zero
    (10_001, -1, -1),  # -1.0001: towards zero
    (19_999, -1, -1),
    (12_345, 0, 0),  # no fee
    (0, 20, 0),  # nothing traded
    (12_345, 10_000, 12_345),  # the largest fee: all of it
    (12_345, -10_000, -12_345),  # the largest rebate
    (2**70 + 1, 1, 2**70 // 10_000 + 1),  # beyond 64 bits
], ids=lambda v: str(v))
def test_fee_rounding(notional: int, bps: int, expected: int) -> None:
    assert fee(notional, bps) == expected == expected_fee(notional, bps)


@settings(max_examples=500, deadline=None)
@given(st.integers(0, 10**15), st.integers(-10_000, 10_000))
def test_fee_is_the_exchange_favoured_rounding(notional: int, bps: int) -> None:
    exact = Fraction(notional * bps, 10_000)
    assert fee(notional, bps) == (math.ceil(exact) if bps >= 0 else math.trunc(exact))


# A trade of one lot of one base unit at a price of one quote unit per tick: the
# notional is the price.
UNIT_TERMS = Terms(BASE, QUOTE, lot_units=1, tick_lot_units=1, fee_account=FEES)


@pytest.mark.parametrize("maker_side", [SELL, BUY], ids=["maker sells", "maker buys"])
@pytest.mark.parametrize(("price", "maker_bps", "taker_bps", "maker_fee", "taker_fee"), [
    (10_000, 10, 20, 10, 20),
    (9_999, 1, 1, 1, 1),
    (10_001, 1, 1, 2, 2),
    (9_999, -1, 1, 0, 1),
    (10_001, -1, 1, -1, 2),
    (20_000, -5, 5, -10, 10),
    (12_345, 0, 0, 0, 0),
    (12_345, 10_000, 10_000, 12_345, 12_345),
    (12_345, -10_000, 10_000, -12_345, 12_345),
    (20_000, -20, 5, -10, 10),
], ids=["exact", "just below a unit", "just above a unit", "rebate just below a unit",
        "rebate just above a unit", "exact rebate", "no fees", "largest fees",
        "largest rebate", "rebate capped at the taker fee"])
def test_trade_fees(maker_side: int, price: int, maker_bps: int, taker_bps: int,
                    maker_fee: int, taker_fee: int) -> None:
    """One trade's fees, and where the money goes: the buyer pays the notional and its
    fee out of its hold (the rest of the hold back), the seller gets the notional less
    its fee, the fee account both fees."""
    desk = Desk(UNIT_TERMS)
    taker_side = BUY if maker_side == SELL else SELL
    desk.new(A, maker_side, LIMIT, GTC, price, 1, maker_bps=maker_bps, taker_bps=taker_bps)
    out = desk.new(B, taker_side, LIMIT, IOC, price, 1, maker_bps=maker_bps,
                   taker_bps=taker_bps)
    (trade,) = out.fills
    assert (trade.maker_fee, trade.taker_fee) == (maker_fee, taker_fee)
    buyer, buyer_fee = (A, maker_fee) if maker_side == BUY else (B, taker_fee)
    seller, seller_fee = (B, taker_fee) if maker_side == BUY else (A, maker_fee)
    held = need(UNIT_TERMS, BUY, 1, price, 0, maker_bps, taker_bps)
    assert trade.buyer_released == held - price - buyer_fee
    assert desk.ledger.changes() == {
        k: v for k, v in {
            (buyer, BASE): (1, 0), (buyer, QUOTE): (-price - buyer_fee, 0),
            (seller, BASE): (-1, 0), (seller, QUOTE): (price - seller_fee, 0),
            (FEES, QUOTE): (maker_fee + taker_fee, 0)}.items() if v != (0, 0)}


def test_fee_reserve_per_lot_covers_a_fill_of_many() -> None:
    """A buy holds the fee rounded up per lot; a fill of many lots pays the fee on
    their notional rounded once, so the reserve is never short."""
    desk = Desk(UNIT_TERMS)
    desk.new(A, SELL, LIMIT, GTC, 3, 7, maker_bps=0, taker_bps=1)
    out = desk.new(B, BUY, LIMIT, GTC, 3, 7, maker_bps=0, taker_bps=1)
    (trade,) = out.fills
    # each lot holds 3 + ceil(0.0003) = 4; the fill pays 21 + ceil(0.0021) = 22 of 28
    assert (trade.taker_fee, trade.buyer_released) == (1, 6)
    assert desk.ledger.changes()[(B, QUOTE)] == (-22, 0)


# -- budgets ---------------------------------------------------------------------


def brute_affordable(terms: Terms, price: int, budget: int, bps: int, most: int) -> int:
    lot = price * terms.tick_lot_units
    return max(q for q in range(most + 1)
               if q * lot + expected_fee(q * lot, bps) <= budget)


@settings(max_examples=500, deadline=None)
@given(st.integers(1, 2_000), st.integers(1, 50), st.integers(0, 10**6),
       st.one_of(st.integers(0, 50), st.integers(0, 10_000), st.integers(-9_999, -1)),
       st.integers(0, 60))
def test_affordable_is_the_most_the_budget_pays_for(price: int, tick_lot_units: int,
                                                   budget: int, bps: int, most: int) -> None:
    """Taker rebates (negative bps) too, which the fee schedules do not allow today."""
    terms = Terms(BASE, QUOTE, 1, tick_lot_units, FEES)
    lots = terms.affordable(price, budget, bps, most)
    assert lots == brute_affordable(terms, price, budget, bps, most)
    cost = lots * price * tick_lot_units
    assert cost + fee(cost, bps) <= budget


def test_affordable_at_a_fee_boundary() -> None:
    """3 lots of 5,000 at 1 bps cost 15,000 + 2 (1.5 up): a budget of 15,001 buys 2."""
    terms = Terms(BASE, QUOTE, 1, 1, FEES)
    assert terms.affordable(5_000, 15_002, 1, 10) == 3
    assert terms.affordable(5_000, 15_001, 1, 10) == 2
    assert terms.affordable(5_000, 10_001, 1, 10) == 2
    assert terms.affordable(5_000, 10_000, 1, 10) == 1
    assert terms.affordable(5_000, 5_000, 1, 10) == 0
    assert terms.affordable(5_000, 10**9, 1, 10) == 10


def test_budget_that_stops_inside_a_level_publishes_the_level() -> None:
    """A budget that fills the first order of a level and cannot pay for a lot of the
    next: the level lost an order, and the batch says so (market data follows
    ``Changes.asks``)."""
    desk = Desk()
    desk.new(A, SELL, LIMIT, GTC, 999, 2)
    desk.new(A, SELL, LIMIT, GTC, 999, 2)
    out = desk.new(B, BUY, MARKET, IOC, 0, 10, funds=20_020)  # 2 lots at 999 and fees
    assert [(t.price, t.quantity) for t in out.fills] == [(999, 2)]
    assert out.order is not None and out.order.reason == "FUNDS_EXHAUSTED"
    assert desk.book.depth(SELL) == [(999, 2, 1)]
    assert desk.last.asks == [(999, 2, 1)]
