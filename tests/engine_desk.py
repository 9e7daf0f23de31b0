"""A book to drive in the engine's tests of issue 14 (self-trade prevention, stops,
good-till-time, mass cancel), with or without money.

Each command is its own batch: the order path's hold is taken in a ``Ledger``
(money_ledger) first and given back if the book refuses the command, the batch's
``Changes.money`` is applied, and then every open order (resting, or a stop waiting)
must hold exactly what its open lots need and the accounts hold exactly that. The
events are kept, so that ``check_replay`` can rebuild the book from the journal alone
(and from a snapshot plus the journal after it) and compare it, field for field.

Importable from every test directory (pytest puts ``tests/`` on ``sys.path``).
"""

from __future__ import annotations

from money_ledger import Ledger, need, pays_with

from matching_service.engine import (
    BUY,
    GTC,
    LIMIT,
    JournalEvent,
    Order,
    OrderBook,
    OrderRow,
    Outcome,
    Terms,
)
from matching_service.recovery import decode_snapshot, encode_snapshot, replay
from matching_service.rows import fields

BASE, QUOTE = 1, 2
FEES = 99
A, B, C = 10, 20, 30
MAKER_BPS, TAKER_BPS = 10, 20
FUNDS = 10**12


def terms() -> Terms:
    """A lot is 100 base units, a tick times a lot 10 quote units."""
    return Terms(BASE, QUOTE, lot_units=100, tick_lot_units=10, fee_account=FEES)


def row(o: OrderRow) -> tuple:
    return tuple(getattr(o, f) for f in fields(OrderRow))


class Desk:
    def __init__(self, money: bool = True) -> None:
        self.terms = terms() if money else None
        self.book = OrderBook(1, terms=self.terms)
        self.ledger = Ledger({(a, asset): FUNDS for a in (A, B, C)
                              for asset in (BASE, QUOTE)})
        self.journal: list[JournalEvent] = []
        self.last_events: list[JournalEvent] = []
        self.now = 1_000
        # (journal length, snapshot) taken by ``snapshot``
        self.snapshots: list[tuple[int, bytes, int | None]] = []

    def tick(self, now: int | None) -> int:
        self.now = self.now + 1 if now is None else now
        return self.now

    def new(self, account: int, side: int, type_: int, tif: int, price: int, qty: int, *,
            stp: int = 0, stop: int = 0, expire: int = 0, post_only: bool = False,
            hold_price: int = 0, funds: int = 0, extra: int = 0, now: int | None = None,
            client_order_id: str = "") -> Outcome:
        held = 0
        asset = QUOTE if side == BUY else BASE
        if self.terms is not None:
            held = need(self.terms, side, qty, price if type_ == LIMIT else hold_price,
                        funds, MAKER_BPS, TAKER_BPS) + extra
            asset = pays_with(self.terms, side)
            assert self.ledger.hold(account, asset, held)
        out = self.book.new_order(account, side, type_, tif, price, qty, client_order_id,
                                  post_only, self.tick(now), held, hold_price, funds,
                                  MAKER_BPS, TAKER_BPS, stp, stop, expire)
        if out.error or out.duplicate:
            self.ledger.unhold(account, asset, held)
        self.commit()
        return out

    def limit(self, account: int, side: int, price: int, qty: int, **kw) -> Order:
        out = self.new(account, side, LIMIT, kw.pop("tif", GTC), price, qty, **kw)
        assert out.order is not None, out.error_message
        return out.order

    def cancel(self, order: Order, now: int | None = None) -> Outcome:
        out = self.book.cancel(order.account_id, order.order_id, self.tick(now))
        self.commit()
        return out

    def cancel_all(self, account: int, side: int = 0, now: int | None = None) -> list[Order]:
        out = self.book.cancel_all(account, side, self.tick(now))
        self.commit()
        return out

    def amend(self, order: Order, price: int, qty: int, now: int | None = None) -> Outcome:
        extra = 0
        asset = QUOTE if order.side == BUY else BASE
        if self.terms is not None:
            open_lots = (qty or order.quantity) - order.filled
            if open_lots > 0:
                extra = max(0, need(self.terms, order.side, open_lots, price or order.price, 0,
                                    MAKER_BPS, TAKER_BPS) - order.held)
            asset = pays_with(self.terms, order.side)
            assert self.ledger.hold(order.account_id, asset, extra)
        out = self.book.amend(order.account_id, order.order_id, price, qty, self.tick(now),
                              extra)
        if out.error:
            self.ledger.unhold(order.account_id, asset, extra)
        self.commit()
        return out

    def expire(self, now: int) -> list[Order]:
        out = self.book.expire_due(self.tick(now))
        self.commit()
        return out

    def snapshot(self) -> None:
        self.snapshots.append((len(self.journal), encode_snapshot(self.book),
                               self.book.last_price))

    def commit(self) -> None:
        changes = self.book.drain_changes()
        self.last_events = changes.events
        self.journal.extend(changes.events)
        if self.terms is not None:
            self.ledger.apply(changes.money)
            self.check_holds()
        for o in changes.orders:
            if o.state not in (1, 2, 7):
                assert o.held == 0, o

    def open_orders(self) -> list[Order]:
        return self.book.resting() + self.book.untriggered()

    def check_holds(self) -> None:
        """Every open order holds what its open lots need (a budget: what is left of it,
        never more than given); the accounts hold exactly what their open orders do."""
        assert self.terms is not None
        held: dict[tuple[int, int], int] = {}
        for o in self.open_orders():
            if not o.funds:
                assert o.held == need(self.terms, o.side, o.quantity - o.filled, o.hold_price,
                                      0, MAKER_BPS, TAKER_BPS), o
            key = (o.account_id, pays_with(self.terms, o.side))
            held[key] = held.get(key, 0) + o.held
        assert {k: v for k, v in self.ledger.held.items() if v} == \
            {k: v for k, v in held.items() if v}
        for asset in (BASE, QUOTE):
            total = sum(v for (_, a), v in self.ledger.available.items() if a == asset)
            total += sum(v for (_, a), v in self.ledger.held.items() if a == asset)
            assert total == sum(v for (_, a), v in self.ledger.funded.items() if a == asset)

    def fresh(self) -> OrderBook:
        t = self.terms
        return OrderBook(1, terms=None if t is None else terms())

    def check_replay(self) -> None:
        """The journal alone, and each snapshot plus the journal after it, rebuild this
        book: the same open orders, field for field, the same sequence and last price."""
        want = ([row(o) for o in self.book.resting()], [row(o) for o in self.book.untriggered()],
                self.book.sequence, self.book.last_price, self.book.open_by_account)
        copy = self.fresh()
        assert replay(copy, self.journal) == len(self.journal)
        assert ([row(o) for o in copy.resting()], [row(o) for o in copy.untriggered()],
                copy.sequence, copy.last_price, copy.open_by_account) == want
        for cut, data, last_price in self.snapshots:
            seq, orders, status = decode_snapshot(data)
            book = OrderBook(1, last_sequence=seq, terms=copy.terms)
            book.status = status
            book.last_price = last_price
            book.restore(orders)
            replay(book, self.journal[cut:])
            assert ([row(o) for o in book.resting()], [row(o) for o in book.untriggered()],
                    book.sequence, book.last_price, book.open_by_account) == want
            assert book.next_expiry() == self.book.next_expiry()
