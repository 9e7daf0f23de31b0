"""Property tests of the engine's money on random command streams (new limit, market
and budget orders, under every self-trade prevention mode, some of them stops or
good-till-time orders; cancels, mass cancels, amendments, the clock moving so that GTT
orders expire; in batches), against a Python ledger that takes
the order path's holds and applies each batch's ``Changes.money`` (money_ledger):

* every batch moves, per asset, exactly nothing in all (the fee account included);
* from funded balances no ``available`` or ``held`` ever goes negative;
* after every batch each account holds, per asset, exactly what its open orders (resting,
  and stops waiting for their trigger) hold, and every one holds exactly what its open
  lots need;
* each fill's fees are its maker's and taker's bps of the notional, rounded in the
  exchange's favour, never above ``ceil(notional x max bps / 10,000)``;
* a budget is never overspent;
* the levels each batch reports changed keep a copy of the book equal to the book;
* replaying the journal on a fresh book with the same terms gives the same resting
  orders, money and all, and the same events.
"""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import given, settings
from hypothesis import strategies as st
from money_ledger import Ledger, expected_fee, need, pays_with

from matching_service.engine import (
    BUY,
    FOK,
    GTC,
    GTT,
    IOC,
    LIMIT,
    MARKET,
    OPEN_STATES,
    SELL,
    JournalEvent,
    Order,
    OrderBook,
    OrderRow,
    Terms,
)
from matching_service.recovery import replay
from matching_service.rows import fields

BASE, QUOTE = 1, 2
FEES = 9  # the fee account
ACCOUNTS = (1, 2, 3, 4)


@dataclass
class World:
    """What a stream runs on: the terms, each account's fees (maker, taker) and funding
    (base lots, quote units)."""

    terms: Terms
    fees: dict[int, tuple[int, int]]
    funding: dict[int, tuple[int, int]]


@st.composite
def worlds(draw: st.DrawFn) -> World:
    terms = Terms(BASE, QUOTE, draw(st.integers(1, 1_000)), draw(st.integers(1, 50)), FEES)
    # Every maker's rebate is at most every taker's fee (the fee schedules' rule, made
    # to hold between accounts too): the fee account never pays out more than it takes.
    least_taker = draw(st.integers(0, 30))
    # now and then the largest fee, 100%
    largest = st.integers(0, 19).map(lambda n: 10_000 if n == 0 else None)
    fees = {a: (draw(largest) or draw(st.integers(-least_taker, 40)),
                draw(largest) or draw(st.integers(least_taker, 40)))
            for a in ACCOUNTS}
    # funded for some 10 to 60 lots of each asset, now and then for none
    lots = st.integers(0, 9).flatmap(lambda n: st.just(0) if n == 0 else st.integers(10, 60))
    per_lot = 110 * terms.tick_lot_units
    funding = {a: (draw(lots), draw(lots) * per_lot + draw(st.integers(0, per_lot)))
               for a in ACCOUNTS}
    return World(terms, fees, funding)


KINDS = [(LIMIT, GTC)] * 5 + [(LIMIT, IOC), (LIMIT, FOK), (MARKET, IOC), (MARKET, FOK),
                              ("funds", IOC), (LIMIT, GTT)]
new_order = st.tuples(
    st.just("new"),
    st.sampled_from(ACCOUNTS),
    st.sampled_from([BUY, SELL]),
    st.sampled_from(KINDS),
    st.integers(97, 103),  # price; a market buy's protection price
    st.integers(1, 10),  # quantity
    st.integers(0, 4).map(lambda n: n == 0),  # post only (limit GTC only)
    st.one_of(st.just(0), st.just(0), st.integers(1, 500)),  # held beyond the need
    st.one_of(st.just(0), st.integers(1, 4_000)),  # funds / tick_lot_units; market: 0 no price
    st.integers(0, 5),  # self-trade prevention (0: the default)
    st.one_of(st.just(0), st.just(0), st.just(0), st.integers(96, 104)),  # stop price
    st.integers(1, 20),  # a GTT's lifetime in clock ticks
)
cancel = st.tuples(st.just("cancel"), st.integers(0, 200))
amend = st.tuples(
    st.just("amend"),
    st.integers(0, 200),  # which order
    st.one_of(st.just(0), st.integers(97, 103)),  # new price, 0 keeps
    st.one_of(st.just(0), st.integers(1, 12)),  # new total quantity, 0 keeps
    st.one_of(st.just(0), st.just(0), st.integers(1, 300)),  # extra held beyond the need
)
drain = st.tuples(st.just("drain"))
# Mostly new orders (one_of would count a strategy given twice once): a book deep
# enough to trade against.
cancel_all = st.tuples(st.just("cancel_all"), st.sampled_from(ACCOUNTS),
                       st.sampled_from([0, BUY, SELL]))
clock = st.tuples(st.just("time"), st.integers(1, 10))
command = st.integers(0, 11).flatmap(
    lambda n: new_order if n < 6 else cancel if n == 6 else amend if n < 9 else drain
    if n == 9 else cancel_all if n == 10 else clock)
streams = st.lists(command, min_size=20, max_size=120)


def pick(book: OrderBook, n: int, stops: bool = False) -> Order | None:
    orders = book.orders
    if stops:
        orders.update((o.order_id, o) for o in book.untriggered())
    if not orders:
        return None
    ids = sorted(orders)
    return orders[ids[n % len(ids)]]


class Run:
    """A stream applied to a book with terms, and the ledger of its accounts."""

    def __init__(self, world: World) -> None:
        self.world = world
        terms = self.terms = world.terms
        self.book = OrderBook(1, terms=terms)
        funded = {}
        for a, (lots, quote) in world.funding.items():
            funded[(a, BASE)] = lots * terms.lot_units
            funded[(a, QUOTE)] = quote
        self.ledger = Ledger(funded)
        self.journal: list[JournalEvent] = []
        self.max_bps = max(max(f) for f in world.fees.values())
        self.spent: dict[int, int] = {}  # a budget order's spending, by order id
        self.budget: dict[int, int] = {}
        self.levels: dict[int, dict[int, tuple[int, int]]] = {BUY: {}, SELL: {}}
        self.now = 0

    def command(self, cmd: tuple) -> None:
        self.now += cmd[1] if cmd[0] == "time" else 1
        self.book.expire_due(self.now)  # as the matching loop, at a batch's start
        if cmd[0] == "new":
            self.new(*cmd[1:])
        elif cmd[0] == "cancel":
            target = pick(self.book, cmd[1], stops=True)
            if target is not None:
                out = self.book.cancel(target.account_id, target.order_id, self.now)
                assert out.error == ""
        elif cmd[0] == "amend":
            self.amend(*cmd[1:])
        elif cmd[0] == "cancel_all":
            self.book.cancel_all(cmd[1], cmd[2], self.now)
        elif cmd[0] == "drain":
            self.commit()

    def new(self, account: int, side: int, kind: tuple, price: int, qty: int,
            post_only: bool, excess: int, amount: int, stp: int, stop: int,
            life: int) -> None:
        terms, (maker_bps, taker_bps) = self.terms, self.world.fees[account]
        type_, tif = kind
        funds = hold_price = 0
        if type_ == "funds":
            if side != BUY or not amount:
                return
            type_, funds = MARKET, amount * terms.tick_lot_units
        elif type_ == MARKET:
            hold_price = price if amount else 0
            price = 0
        post_only = post_only and type_ == LIMIT and tif in (GTC, GTT)
        held = need(terms, side, qty, price or hold_price, funds, maker_bps,
                    taker_bps) + excess
        asset = pays_with(terms, side)
        if not self.ledger.hold(account, asset, held):
            return  # the order path refuses it: insufficient funds
        out = self.book.new_order(account, side, type_, tif, price, qty, "", post_only,
                                  self.now, held, hold_price, funds, maker_bps, taker_bps,
                                  stp, stop, self.now + life if tif == GTT else 0)
        assert out.error == "" and out.order is not None, out.error_message
        if funds:
            self.budget[out.order.order_id] = funds

    def amend(self, n: int, price: int, qty: int, more: int) -> None:
        order = pick(self.book, n)
        if order is None:
            return
        maker_bps, taker_bps = self.world.fees[order.account_id]
        open_lots = (qty or order.quantity) - order.filled
        extra = more
        if open_lots > 0:
            extra += max(0, need(self.terms, order.side, open_lots, price or order.price, 0,
                                 maker_bps, taker_bps) - order.held)
        asset = pays_with(self.terms, order.side)
        if not self.ledger.hold(order.account_id, asset, extra):
            return
        out = self.book.amend(order.account_id, order.order_id, price, qty, self.now, extra)
        if out.error:  # refused (not for funds): the order path gives the hold back
            assert out.error != "INSUFFICIENT_FUNDS"
            self.ledger.unhold(order.account_id, asset, extra)

    def commit(self) -> None:
        changes = self.book.drain_changes()
        self.journal.extend(changes.events)
        fees_before = self.ledger.available.get((FEES, QUOTE), 0)
        self.ledger.apply(changes.money)
        terms, fees = self.terms, self.world.fees
        charged = 0
        for t in changes.trades:
            notional = t.price * t.quantity * terms.tick_lot_units
            assert t.maker_fee == expected_fee(notional, fees[t.maker_account_id][0])
            assert t.taker_fee == expected_fee(notional, fees[t.taker_account_id][1])
            assert max(t.maker_fee, t.taker_fee) <= expected_fee(notional, self.max_bps)
            assert t.buyer_released >= 0
            charged += t.maker_fee + t.taker_fee
            if t.taker_order_id in self.budget:
                spent = self.spent.get(t.taker_order_id, 0) + notional + t.taker_fee
                assert spent <= self.budget[t.taker_order_id]
                self.spent[t.taker_order_id] = spent
        assert self.ledger.available.get((FEES, QUOTE), 0) - fees_before == charged
        for row in changes.orders:  # an order that left the book holds nothing
            if row.state not in OPEN_STATES:
                assert row.held == 0, row
        self.check_holds()
        # the levels the batch reports changed keep a copy of the book (market data's)
        for side, levels in ((BUY, changes.bids), (SELL, changes.asks)):
            view = self.levels[side]
            for price, qty, count in levels:
                if qty:
                    view[price] = (qty, count)
                else:
                    view.pop(price, None)
            assert view == {p: (q, c) for p, q, c in self.book.depth(side)}

    def check_holds(self) -> None:
        terms = self.terms
        resting: dict[tuple[int, int], int] = {}
        for o in self.book.resting() + self.book.untriggered():
            maker_bps, taker_bps = self.world.fees[o.account_id]
            if o.side == BUY and o.order_type == LIMIT:
                assert o.hold_price == o.price
            if not o.funds:
                assert o.held == need(terms, o.side, o.remaining, o.hold_price, 0,
                                      maker_bps, taker_bps)
            key = (o.account_id, pays_with(terms, o.side))
            resting[key] = resting.get(key, 0) + o.held
        held = {k: v for k, v in self.ledger.held.items() if v}
        assert held == {k: v for k, v in resting.items() if v}

    def check_totals(self) -> None:
        """Per asset, all balances together are what was funded."""
        ledger = self.ledger
        for asset in (BASE, QUOTE):
            total = sum(v for (_, a), v in ledger.available.items() if a == asset)
            total += sum(v for (_, a), v in ledger.held.items() if a == asset)
            assert total == sum(v for (_, a), v in ledger.funded.items() if a == asset)


def run(world: World, commands: list[tuple]) -> Run:
    r = Run(world)
    for cmd in commands:
        r.command(cmd)
    r.commit()
    return r


@settings(max_examples=300, deadline=None)
@given(worlds(), streams)
def test_money_is_conserved_and_holds_are_exact(world: World, commands: list[tuple]) -> None:
    r = run(world, commands)
    r.check_totals()


@settings(max_examples=200, deadline=None)
@given(worlds(), streams)
def test_replay_rebuilds_the_money(world: World, commands: list[tuple]) -> None:
    r = run(world, commands)
    t = world.terms
    copy = OrderBook(1, terms=Terms(t.base_asset, t.quote_asset, t.lot_units,
                                    t.tick_lot_units, t.fee_account))
    assert replay(copy, r.journal) == len(r.journal)
    assert copy.sequence == r.book.sequence
    names = fields(OrderRow)

    def rows(book: OrderBook) -> list[tuple]:
        return [tuple(getattr(o, f) for f in names)
                for o in book.resting() + book.untriggered()]

    assert rows(copy) == rows(r.book)
