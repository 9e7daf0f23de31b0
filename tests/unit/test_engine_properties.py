"""Property tests of the book's invariants on random order streams: new orders, cancels
and amendments; and richer streams with self-trade prevention modes, stops, good-till-time
orders expired as the clock moves (as the matching loop does at each batch's start) and
mass cancels, which must also replay (from scratch, and from a snapshot) to the live
book."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from matching_service.engine import (
    BUY,
    EV_ACCEPTED,
    EV_AMENDED,
    EV_CANCELLED,
    EV_EXPIRED,
    EV_REJECTED,
    EV_SELF_TRADE,
    EV_TIMED_OUT,
    EV_TRADE,
    FOK,
    GTC,
    GTT,
    IOC,
    LIMIT,
    MARKET,
    RESTING_STATES,
    SELL,
    STP_NONE,
    UNTRIGGERED,
    OrderBook,
    OrderRow,
)
from matching_service.recovery import decode_snapshot, encode_snapshot, replay
from matching_service.rows import fields

new_order = st.tuples(
    st.just("new"),
    st.integers(1, 4),  # account
    st.sampled_from([BUY, SELL]),
    st.sampled_from([LIMIT, LIMIT, LIMIT, MARKET]),
    st.sampled_from([GTC, GTC, IOC, FOK]),
    st.integers(95, 105),  # price
    st.integers(1, 10),  # quantity
    st.booleans(),  # post only
)
cancel = st.tuples(st.just("cancel"), st.integers(0, 200))
amend = st.tuples(
    st.just("amend"),
    st.integers(0, 200),  # which order
    st.one_of(st.just(0), st.integers(95, 105)),  # new price, 0 keeps
    st.one_of(st.just(0), st.integers(1, 12)),  # new total quantity, 0 keeps
)
streams = st.lists(st.one_of(new_order, new_order, cancel, amend), min_size=1, max_size=150)


def amend_target(book, placed, pick):
    """A resting order when there is one (most picks would hit closed orders)."""
    if book.orders:
        ids = sorted(book.orders)
        return book.orders[ids[pick % len(ids)]]
    return placed[pick % len(placed)] if placed else None


def check_levels(book) -> None:
    """Each level holds open orders of its price, in priority order, and the
    published level figures agree with them."""
    for side in (BUY, SELL):
        by_price = {}
        for o in book.resting():
            if o.side == side:
                by_price.setdefault(o.price, []).append(o)
        for price, orders in by_price.items():
            assert [o.priority for o in orders] == sorted(o.priority for o in orders)
            assert all(o.remaining > 0 for o in orders)
            assert book.level(side, price) == (price, sum(o.remaining for o in orders),
                                               len(orders))


def run(commands):
    book = OrderBook(instrument_id=1)
    placed = []  # every order, in creation order
    outcomes = []
    for cmd in commands:
        if cmd[0] == "new":
            _, acct, side, type_, tif, price, qty, post_only = cmd
            out = book.new_order(acct, side, type_, tif, price, qty, "",
                                 post_only and type_ == LIMIT, 0, 0, 0, 0, 0, 0,
                                 STP_NONE)
            if out.order is not None:
                placed.append(out.order)
        elif cmd[0] == "cancel":
            if not placed:
                continue
            target = placed[cmd[1] % len(placed)]
            out = book.cancel(target.account_id, target.order_id)
        else:
            target = amend_target(book, placed, cmd[1])
            if target is None:
                continue
            out = book.amend(target.account_id, target.order_id, cmd[2], cmd[3])
        outcomes.append((book, out, book.best_bid(), book.best_ask()))
    return book, placed, outcomes


@settings(max_examples=300, deadline=None)
@given(streams)
def test_book_never_crossed(commands) -> None:
    _, _, outcomes = run(commands)
    for _, _, bid, ask in outcomes:
        assert bid is None or ask is None or bid < ask


@settings(max_examples=300, deadline=None)
@given(streams)
def test_amend_events_and_priority(commands) -> None:
    """An accepted amendment emits AMENDED (new price, new total) before its trades;
    the order's priority is kept only by a lower quantity at the same price, else it
    becomes the AMENDED event's sequence. A refused one changes nothing."""
    book = OrderBook(instrument_id=1)
    placed = []
    for cmd in commands:
        if cmd[0] == "new":
            _, acct, side, type_, tif, price, qty, post_only = cmd
            out = book.new_order(acct, side, type_, tif, price, qty, "",
                                 post_only and type_ == LIMIT, 0, 0, 0, 0, 0, 0,
                                 STP_NONE)
            if out.order is not None:
                placed.append(out.order)
            continue
        if cmd[0] == "cancel":
            continue
        target = amend_target(book, placed, cmd[1])
        if target is None:
            continue
        book.drain_changes()
        was = (target.price, target.quantity, target.filled, target.priority, target.state)
        seq = book.sequence
        out = book.amend(target.account_id, target.order_id, cmd[2], cmd[3])
        events = book.drain_changes().events
        if out.error or (cmd[2] or was[0], cmd[3] or was[1]) == was[:2]:
            assert events == [] and book.sequence == seq
            if out.order is not None:
                assert (out.order.price, out.order.quantity, out.order.filled,
                        out.order.priority, out.order.state) == was
            continue
        assert [e.kind for e in events] == [EV_AMENDED] + [EV_TRADE] * len(out.fills)
        assert events[0].order_id == target.order_id
        assert (events[0].price, events[0].quantity) == (target.price, target.quantity)
        assert target.price == (cmd[2] or was[0]) and target.quantity == (cmd[3] or was[1])
        keeps = target.price == was[0] and target.quantity < was[1]
        assert target.priority == (was[3] if keeps else seq + 1)
        check_levels(book)


@settings(max_examples=300, deadline=None)
@given(streams)
def test_quantity_conserved(commands) -> None:
    book, placed, _ = run(commands)
    events = book.drain_changes().events
    traded = {}
    removed = {}
    ordered = {}  # the total quantity: accepted, then as amended
    for e in events:
        kind, oid, other, qty = e.kind, e.order_id, e.other_order_id, e.quantity
        if kind == EV_TRADE:
            traded[oid] = traded.get(oid, 0) + qty
            traded[other] = traded.get(other, 0) + qty
        elif kind in (EV_CANCELLED, EV_EXPIRED, EV_REJECTED):
            removed[oid] = removed.get(oid, 0) + qty
        if kind in (EV_ACCEPTED, EV_REJECTED, EV_AMENDED):
            ordered[oid] = qty
    for o in placed:
        # filled + remaining + expired/cancelled/rejected == ordered
        assert o.quantity == ordered[o.order_id]
        assert o.filled == traded.get(o.order_id, 0)
        assert o.filled + o.remaining + removed.get(o.order_id, 0) == o.quantity
        assert o.filled <= o.quantity and o.remaining >= 0
    # the book holds exactly the open remainders
    book_total = sum(q for _, q, _ in book.depth(BUY)) + sum(q for _, q, _ in book.depth(SELL))
    assert book_total == sum(o.remaining for o in placed)


@settings(max_examples=300, deadline=None)
@given(streams)
def test_price_time_priority(commands) -> None:
    """Every fill takes the best-priced, then oldest, resting order of the other side."""
    book = OrderBook(instrument_id=1)
    placed = []
    for cmd in commands:
        if cmd[0] == "cancel":
            if placed:
                t = placed[cmd[1] % len(placed)]
                book.cancel(t.account_id, t.order_id)
            continue
        if cmd[0] == "amend":
            target = amend_target(book, placed, cmd[1])
            if target is None:
                continue
            # an amended order that crosses is a taker at its new price
            side, type_ = target.side, LIMIT
            price = cmd[2] or target.price
        else:
            _, acct, side, type_, tif, price, qty, post_only = cmd
        # priority order of the opposite side before the command
        before = [o for o in book.resting() if o.side != side]
        before.sort(key=lambda o: ((o.price if side == BUY else -o.price), o.priority))
        open_before = {o.order_id: o.quantity - o.filled for o in before}
        if cmd[0] == "amend":
            out = book.amend(target.account_id, target.order_id, cmd[2], cmd[3])
        else:
            out = book.new_order(acct, side, type_, tif, price, qty, "",
                                 post_only and type_ == LIMIT, 0, 0, 0, 0, 0, 0,
                                 STP_NONE)
            if out.order is None:
                continue
            placed.append(out.order)
        check_levels(book)
        # fills must consume `before` as a prefix, in order
        queue = list(before)
        for f in out.fills:
            while queue and open_before[queue[0].order_id] == 0:
                queue.pop(0)
            assert queue, "fill without a resting order"
            assert f.maker_order_id == queue[0].order_id
            assert f.price == queue[0].price
            if type_ == LIMIT:
                assert f.price <= price if side == BUY else f.price >= price
            open_before[queue[0].order_id] -= f.quantity
            assert open_before[queue[0].order_id] >= 0


@settings(max_examples=200, deadline=None)
@given(streams)
def test_sequence_gapless_and_ids_unique(commands) -> None:
    book, placed, _ = run(commands)
    events = book.drain_changes().events
    assert [e.sequence for e in events] == list(range(1, len(events) + 1))
    assert len({o.order_id for o in placed}) == len(placed)
    accepted = {e.order_id for e in events if e.kind in (EV_ACCEPTED, EV_REJECTED)}
    assert accepted == {o.order_id for o in placed}


@settings(max_examples=200, deadline=None)
@given(streams)
def test_restore_equals_live_book(commands) -> None:
    book, _, _ = run(commands)
    copy = OrderBook(1, last_sequence=book.sequence)
    copy.restore(book.resting())
    assert copy.depth(BUY) == book.depth(BUY)
    assert copy.depth(SELL) == book.depth(SELL)
    assert [o.order_id for o in copy.resting()] == [o.order_id for o in book.resting()]


# -- richer streams: self-trade prevention, stops, good-till-time, mass cancel -----------

rich_order = st.tuples(
    st.just("new"),
    st.integers(1, 3),  # account (few: self-trades are common)
    st.sampled_from([BUY, SELL]),
    st.sampled_from([LIMIT, LIMIT, LIMIT, MARKET]),
    st.sampled_from([GTC, GTC, IOC, FOK, GTT]),
    st.integers(95, 105),  # price
    st.integers(1, 10),  # quantity
    st.integers(0, 5).map(lambda n: n == 0),  # post only
    st.integers(0, 5),  # self-trade prevention (0: the default)
    st.one_of(st.just(0), st.just(0), st.just(0), st.integers(94, 106)),  # stop price
    st.integers(1, 30),  # a GTT's lifetime, in clock ticks
)
rich_command = st.integers(0, 19).flatmap(
    lambda n: rich_order if n < 12 else cancel if n < 14 else amend if n < 16
    else st.tuples(st.just("cancel_all"), st.integers(1, 3), st.sampled_from([0, BUY, SELL]))
    if n < 17 else st.tuples(st.just("time"), st.integers(1, 15)) if n < 19
    else st.tuples(st.just("snapshot")))
rich_streams = st.lists(rich_command, min_size=1, max_size=150)


class RichRun:
    """A rich stream on a book: the clock moves a tick per command (more with "time"),
    and due GTT orders expire before each command, as in the matching loop."""

    def __init__(self) -> None:
        self.book = OrderBook(instrument_id=1)
        self.placed: list = []
        self.journal: list = []
        self.snapshots: list[tuple[int, bytes, int | None]] = []
        self.crossed = False
        self.now = 0

    def command(self, cmd: tuple) -> None:
        book = self.book
        self.now += cmd[1] if cmd[0] == "time" else 1
        book.expire_due(self.now)
        if cmd[0] == "new":
            _, acct, side, type_, tif, price, qty, post_only, stp, stop, life = cmd
            out = book.new_order(acct, side, type_, tif, price, qty, "",
                                 post_only and type_ == LIMIT, self.now, 0, 0, 0, 0, 0, stp,
                                 stop, self.now + life if tif == GTT else 0)
            if out.order is not None:
                self.placed.append(out.order)
        elif cmd[0] == "cancel":
            open_orders = book.resting() + book.untriggered()
            if open_orders:
                target = open_orders[cmd[1] % len(open_orders)]
                assert book.cancel(target.account_id, target.order_id, self.now).error == ""
        elif cmd[0] == "amend":
            target = amend_target(book, self.placed, cmd[1])
            if target is not None:
                book.amend(target.account_id, target.order_id, cmd[2], cmd[3], self.now)
        elif cmd[0] == "cancel_all":
            book.cancel_all(cmd[1], cmd[2], self.now)
        elif cmd[0] == "snapshot":
            self.journal.extend(book.drain_changes().events)
            self.snapshots.append((len(self.journal), encode_snapshot(book), book.last_price))
        bid, ask = book.best_bid(), book.best_ask()
        if bid is not None and ask is not None and bid >= ask:
            self.crossed = True

    def finish(self) -> None:
        self.journal.extend(self.book.drain_changes().events)


def run_rich(commands) -> RichRun:
    r = RichRun()
    for cmd in commands:
        r.command(cmd)
    r.finish()
    return r


def open_rows(book: OrderBook) -> tuple:
    names = fields(OrderRow)
    return ([tuple(getattr(o, f) for f in names) for o in book.resting()],
            [tuple(getattr(o, f) for f in names) for o in book.untriggered()],
            book.sequence, book.last_price, book.open_by_account, book.next_expiry())


@settings(max_examples=300, deadline=None)
@given(rich_streams)
def test_rich_streams_never_cross_and_conserve_quantity(commands) -> None:
    r = run_rich(commands)
    book = r.book
    assert not r.crossed
    traded: dict[int, int] = {}
    total: dict[int, int] = {}
    removed: dict[int, int] = {}
    for e in r.journal:
        kind, oid, qty = e.kind, e.order_id, e.quantity
        if kind == EV_TRADE:
            traded[oid] = traded.get(oid, 0) + qty
            traded[e.other_order_id] = traded.get(e.other_order_id, 0) + qty
            # a self-trade prints only when the taker's mode is NONE
            taker = next(o for o in r.placed if o.order_id == oid)
            maker = next(o for o in r.placed if o.order_id == e.other_order_id)
            assert taker.account_id != maker.account_id \
                or taker.self_trade_prevention == STP_NONE
        elif kind in (EV_ACCEPTED, EV_AMENDED):
            total[oid], removed[oid] = qty, 0
        elif kind == EV_REJECTED:
            total[oid], removed[oid] = qty, qty
        elif kind in (EV_CANCELLED, EV_EXPIRED, EV_SELF_TRADE, EV_TIMED_OUT):
            removed[oid] += qty
    for o in r.placed:
        assert o.filled == traded.get(o.order_id, 0)
        # filled + open + removed (cancelled, expired, self-trade prevented, timed out)
        assert o.filled + o.remaining + removed[o.order_id] == total[o.order_id]
        assert o.filled <= o.quantity <= total[o.order_id]
        if o.state == UNTRIGGERED:
            assert o.filled == 0 and o in book.untriggered()
    on_book = sum(q for _, q, _ in book.depth(BUY)) + sum(q for _, q, _ in book.depth(SELL))
    assert on_book == sum(o.remaining for o in r.placed if o.state in RESTING_STATES)
    # GTT orders past their expiry are gone
    assert all(not o.expire_ns or o.expire_ns > r.now
               for o in book.resting() + book.untriggered())
    assert [e.sequence for e in r.journal] == list(range(1, len(r.journal) + 1))


@settings(max_examples=300, deadline=None)
@given(rich_streams)
def test_rich_streams_replay_to_the_live_book(commands) -> None:
    """From scratch, and from every snapshot taken along the way plus the journal after
    it: the same open orders field for field, sequence, last price, open-order counts and
    next expiry."""
    r = run_rich(commands)
    want = open_rows(r.book)
    copy = OrderBook(1)
    assert replay(copy, r.journal) == len(r.journal)
    assert open_rows(copy) == want
    for cut, data, last_price in r.snapshots:
        seq, orders, status = decode_snapshot(data)
        book = OrderBook(1, last_sequence=seq)
        book.status = status
        book.last_price = last_price
        book.restore(orders)
        replay(book, r.journal[cut:])
        assert open_rows(book) == want
