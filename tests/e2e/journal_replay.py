"""An independent replay of an instrument's journal: the book it implies.

Deliberately written without ``matching_service`` (no engine, no store code):
it reads the ``journal`` rows of one instrument in sequence order from
PostgreSQL and follows each order through its events:

* ACCEPTED (1): a new order, with side/type/time in force/price/quantity/
  account/client_order_id/stop price from the row; its priority is this event's
  sequence; a stop (stop price > 0) waits untriggered, off the book;
* TRADE (2): ``order_id`` is the taker, ``other_order_id`` the maker,
  ``quantity`` the fill: both lose that much open quantity;
* CANCELLED (3) / EXPIRED (4): the quantity given is removed (it must be all
  that was left);
* REJECTED (5): the order never rests;
* AMENDED (6): ``price`` and ``quantity`` are the order's new price and total;
  a new price or a larger total sends it to the back (priority = this sequence);
* STATUS (7): the instrument's status became ``quantity`` (1 trading, 2 halted,
  3 cancel-only); while it is not trading no order is accepted or amended, and
  while halted nothing is cancelled either (a good-till-time expiry is not a
  trader's command: it may happen in any status);
* TRIGGERED (8): an untriggered stop fires and becomes the taker (priority = this
  sequence);
* SELF_TRADE (9): self-trade prevention removes ``quantity`` from the order: all
  it has open closes it (the taker of the moment expires, a resting order is
  cancelled), less lowers its total quantity;
* TIMED_OUT (10): a good-till-time order expires; the quantity given is removed.

An order rests if it is a LIMIT GTC or GTT order, triggered if it is a stop, with
open quantity left after all of its events. While reading, the replay checks that
the journal is consistent (sequences 1..N without gaps, ids derived from the
creating event's sequence, fills never larger than what is open, trades against
resting makers at the maker's price) and that the ``trades`` table holds exactly the journal's
trades (trade_id = instrument_id << 44 | sequence, same sequence, price,
quantity, maker and taker). Anything wrong goes to ``Replay.problems``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import asyncpg

SEQUENCE_BITS = 44
SEQUENCE_MASK = (1 << SEQUENCE_BITS) - 1

ACCEPTED, TRADE, CANCELLED, EXPIRED, REJECTED, AMENDED, STATUS = 1, 2, 3, 4, 5, 6, 7
TRIGGERED, SELF_TRADE, TIMED_OUT = 8, 9, 10
TRADING, HALTED, CANCEL_ONLY = 1, 2, 3
BUY, SELL = 1, 2
LIMIT, MARKET = 1, 2
GTC, GTT = 1, 4

KIND_NAMES = {ACCEPTED: "ACCEPTED", TRADE: "TRADE", CANCELLED: "CANCELLED",
              EXPIRED: "EXPIRED", REJECTED: "REJECTED", AMENDED: "AMENDED", STATUS: "STATUS",
              TRIGGERED: "TRIGGERED", SELF_TRADE: "SELF_TRADE", TIMED_OUT: "TIMED_OUT"}


def make_id(instrument_id: int, sequence: int) -> int:
    return (instrument_id << SEQUENCE_BITS) | sequence


@dataclass
class ReplayOrder:
    order_id: int
    account_id: int
    client_order_id: str
    side: int
    type: int
    tif: int
    post_only: bool
    price: int
    quantity: int
    priority: int  # sequence of the ACCEPTED (or REJECTED) event
    open: int  # quantity still open (0 once closed)
    filled: int = 0
    notional: int = 0
    rejected: bool = False
    cancelled: bool = False
    expired: bool = False
    last_sequence: int = 0
    stop_price: int = 0
    triggered: bool = False

    @property
    def untriggered(self) -> bool:
        return (self.stop_price > 0 and not self.triggered and not self.rejected
                and self.open > 0)

    @property
    def rests(self) -> bool:
        return (not self.rejected and self.type == LIMIT and self.tif in (GTC, GTT)
                and self.open > 0 and not self.untriggered)

    @property
    def state(self) -> int:
        """The order state (proto/database numbering) the events imply."""
        if self.rejected:
            return 6
        if self.cancelled:
            return 4
        if self.expired:
            return 5
        if self.filled == self.quantity:
            return 3
        if self.untriggered:
            return 7
        if self.type == LIMIT and self.tif in (GTC, GTT):
            return 2 if self.filled else 1
        return -1  # a non-resting order that is neither filled nor expired: incomplete


@dataclass
class ReplayTrade:
    trade_id: int
    sequence: int
    taker_order_id: int
    maker_order_id: int
    price: int
    quantity: int


# The journal's columns the replay reads.
JOURNAL_COLUMNS = ("sequence, kind, order_id, other_order_id, price, quantity, account_id, side, "
                   "order_type, time_in_force, post_only, client_order_id, stop_price")

# (order_id, price, open quantity, priority)
BookEntry = tuple[int, int, int, int]


@dataclass
class Replay:
    instrument_id: int
    last_sequence: int = 0
    bids: list[BookEntry] = field(default_factory=list)  # best first, then time priority
    asks: list[BookEntry] = field(default_factory=list)
    orders: dict[int, ReplayOrder] = field(default_factory=dict)
    trades: list[ReplayTrade] = field(default_factory=list)
    # client order ids seen: (account_id, client_order_id) -> order ids created for it
    client_ids: dict[tuple[int, str], list[int]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def book(self) -> tuple[list[BookEntry], list[BookEntry]]:
        return self.bids, self.asks


def sort_book(entries: list[tuple[int, int, int, int, int]]
              ) -> tuple[list[BookEntry], list[BookEntry]]:
    """(side, order_id, price, open, priority) rows -> (bids, asks), each best price
    first and in time priority within a price."""
    bids = sorted((e for e in entries if e[0] == BUY), key=lambda e: (-e[2], e[4]))
    asks = sorted((e for e in entries if e[0] == SELL), key=lambda e: (e[2], e[4]))
    return ([(e[1], e[2], e[3], e[4]) for e in bids],
            [(e[1], e[2], e[3], e[4]) for e in asks])


def replay_rows(instrument_id: int, rows, trade_rows=None,
                upto: int | None = None) -> Replay:
    """Replay journal rows (dict-like, ordered by sequence). ``trade_rows``: the
    instrument's rows of the ``trades`` table, checked against the journal
    (skipped when None). ``upto``: stop after this sequence."""
    r = Replay(instrument_id)
    orders = r.orders
    problems = r.problems
    expected = 1
    status = TRADING
    taker = 0  # the order of the command (or trigger) being matched
    for row in rows:
        seq = row["sequence"]
        if upto is not None and seq > upto:
            break
        if seq != expected:
            problems.append(f"journal sequence {seq} where {expected} was expected (gap or "
                            f"duplicate)")
            expected = seq
        expected += 1
        r.last_sequence = seq
        kind = row["kind"]
        oid = row["order_id"]
        qty = row["quantity"]
        where = f"seq {seq} {KIND_NAMES.get(kind, kind)}"
        if kind == STATUS:
            if qty not in (TRADING, HALTED, CANCEL_ONLY) or qty == status:
                problems.append(f"{where}: status {qty} after {status}")
            status = qty
            continue
        if status != TRADING and ((status == HALTED and kind != TIMED_OUT)
                                  or kind in (ACCEPTED, REJECTED, AMENDED)):
            problems.append(f"{where}: accepted while the status was {status}")
        if kind in (ACCEPTED, REJECTED):
            if oid != make_id(instrument_id, seq):
                problems.append(f"{where}: order id {oid} is not instrument<<44|sequence")
            if oid in orders:
                problems.append(f"{where}: order {oid} created twice")
                continue
            o = ReplayOrder(
                order_id=oid, account_id=row["account_id"],
                client_order_id=row["client_order_id"], side=row["side"],
                type=row["order_type"], tif=row["time_in_force"], post_only=row["post_only"],
                price=row["price"], quantity=qty, priority=seq,
                open=qty if kind == ACCEPTED else 0, rejected=kind == REJECTED,
                last_sequence=seq, stop_price=_get(row, "stop_price"))
            taker = oid
            if o.side not in (BUY, SELL) or o.type not in (LIMIT, MARKET) or qty <= 0:
                problems.append(f"{where}: malformed order {o}")
            orders[oid] = o
            if o.client_order_id:
                r.client_ids.setdefault((o.account_id, o.client_order_id), []).append(oid)
        elif kind == TRADE:
            taker = orders.get(oid)
            maker = orders.get(row["other_order_id"])
            if taker is None or maker is None:
                problems.append(f"{where}: unknown taker {oid} or maker {row['other_order_id']}")
                continue
            price = row["price"]
            if taker.side == maker.side:
                problems.append(f"{where}: taker and maker on the same side")
            if not maker.rests or maker.order_id == taker.order_id:
                problems.append(f"{where}: maker {maker.order_id} is not resting")
            if price != maker.price:
                problems.append(f"{where}: trade price {price} is not the maker's {maker.price}")
            if taker.type == LIMIT and (price > taker.price if taker.side == BUY
                                        else price < taker.price):
                problems.append(f"{where}: trade price {price} beyond the taker's limit "
                                f"{taker.price}")
            if qty <= 0 or qty > taker.open or qty > maker.open:
                problems.append(f"{where}: fill {qty} exceeds open quantity (taker "
                                f"{taker.open}, maker {maker.open})")
            for o in (taker, maker):
                o.open -= qty
                o.filled += qty
                o.notional += price * qty
                o.last_sequence = seq
            r.trades.append(ReplayTrade(make_id(instrument_id, seq), seq, taker.order_id,
                                        maker.order_id, price, qty))
        elif kind in (CANCELLED, EXPIRED, TIMED_OUT):
            o = orders.get(oid)
            if o is None:
                problems.append(f"{where}: unknown order {oid}")
                continue
            if qty != o.open:
                problems.append(f"{where}: removes {qty} but {o.open} is open")
            if kind != EXPIRED and not (o.rests or o.untriggered):
                problems.append(f"{where}: order {oid} was not open")
            if kind == TIMED_OUT and o.tif != GTT:
                problems.append(f"{where}: order {oid} is not good-till-time")
            o.open -= qty
            o.last_sequence = seq
            if kind == CANCELLED:
                o.cancelled = True
            else:
                o.expired = True
        elif kind == TRIGGERED:
            o = orders.get(oid)
            if o is None or not o.untriggered:
                problems.append(f"{where}: order {oid} is not an untriggered stop")
                continue
            price = row["price"]
            if not (price >= o.stop_price if o.side == BUY else price <= o.stop_price):
                problems.append(f"{where}: a trade at {price} does not reach stop price "
                                f"{o.stop_price}")
            o.triggered = True
            o.priority = seq
            o.last_sequence = seq
            taker = oid
        elif kind == SELF_TRADE:
            o = orders.get(oid)
            other = orders.get(row["other_order_id"])
            if o is None or other is None or o.account_id != other.account_id:
                problems.append(f"{where}: not two orders of one account")
                continue
            if qty <= 0 or qty > o.open:
                problems.append(f"{where}: removes {qty} of {o.open} open")
            o.open -= qty
            o.last_sequence = seq
            if o.open == 0:
                if oid == taker:
                    o.expired = True
                else:
                    o.cancelled = True
            else:
                o.quantity -= qty
        elif kind == AMENDED:
            # price = the new price, quantity = the new total; a new price or a larger
            # total moves the order to the back (priority = this sequence).
            o = orders.get(oid)
            if o is None or not o.rests or o.open <= 0:
                problems.append(f"{where}: amended order {oid} was not resting")
                continue
            if qty <= o.filled:
                problems.append(f"{where}: new total {qty} not above filled {o.filled}")
            if row["price"] != o.price or qty > o.quantity:
                o.priority = seq
            o.price = row["price"]
            o.open = qty - o.filled
            o.quantity = qty
            o.last_sequence = seq
            taker = oid
        else:
            problems.append(f"{where}: unknown event kind")

    entries = [(o.side, o.order_id, o.price, o.open, o.priority)
               for o in orders.values() if o.rests]
    r.bids, r.asks = sort_book(entries)
    for o in orders.values():
        if o.open < 0:
            problems.append(f"order {o.order_id}: open quantity {o.open} < 0")
        if not o.rests and o.open > 0 and not o.rejected and not o.untriggered:
            problems.append(f"order {o.order_id} (type {o.type}, tif {o.tif}) left with "
                            f"{o.open} open after its events (never expired)")
    if trade_rows is not None:
        _check_trades(r, trade_rows, upto)
    return r


def _get(row, column: str) -> int:
    """A column the caller may not have selected (0 then)."""
    try:
        return row[column]
    except (KeyError, IndexError):
        return 0


def _check_trades(r: Replay, trade_rows, upto: int | None) -> None:
    by_id: dict[int, object] = {}
    seqs: set[int] = set()
    for t in trade_rows:
        if upto is not None and t["sequence"] > upto:
            continue
        if t["trade_id"] in by_id:
            r.problems.append(f"trade id {t['trade_id']} twice in the trades table")
        if t["sequence"] in seqs:
            r.problems.append(f"trade sequence {t['sequence']} twice in the trades table")
        by_id[t["trade_id"]] = t
        seqs.add(t["sequence"])
    journal_ids = set()
    for jt in r.trades:
        journal_ids.add(jt.trade_id)
        t = by_id.get(jt.trade_id)
        if t is None:
            r.problems.append(f"journal trade at seq {jt.sequence} (id {jt.trade_id}) missing "
                              f"from the trades table")
            continue
        got = (t["sequence"], t["price"], t["quantity"], t["taker_order_id"],
               t["maker_order_id"])
        want = (jt.sequence, jt.price, jt.quantity, jt.taker_order_id, jt.maker_order_id)
        if got != want:
            r.problems.append(f"trade {jt.trade_id}: table has (sequence, price, qty, taker, "
                              f"maker) {got}, journal says {want}")
    for tid in by_id.keys() - journal_ids:
        r.problems.append(f"trade {tid} in the trades table has no journal TRADE event")


async def fetch_rows(conn: asyncpg.Connection, instrument_id: int):
    """The journal and trades rows of an instrument (use one transaction for both)."""
    journal = await conn.fetch(
        f"""SELECT {JOURNAL_COLUMNS}
           FROM journal WHERE instrument_id = $1 ORDER BY sequence""", instrument_id)
    trades = await conn.fetch(
        """SELECT trade_id, sequence, price, quantity, maker_order_id, taker_order_id
           FROM trades WHERE instrument_id = $1 ORDER BY sequence""", instrument_id)
    return journal, trades


async def replay_journal(conn: asyncpg.Connection, instrument_id: int,
                         upto: int | None = None) -> Replay:
    """Read the instrument's journal (and trades) in one snapshot and replay it."""
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        journal, trades = await fetch_rows(conn, instrument_id)
    return replay_rows(instrument_id, journal, trades, upto)
