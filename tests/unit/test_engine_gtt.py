"""Good-till-time orders: open strictly before their expiry, expired at it (by
``expire_due``, which the matching loop calls at the start of each batch), in expiry
order then order id, exactly once, with their holds released; past at arrival they are
rejected; replay re-executes TIMED_OUT events."""

from __future__ import annotations

import pytest
from engine_desk import A, B, C, Desk

from matching_service.engine import (
    BUY,
    ERR_INVALID,
    EV_REJECTED,
    EV_TIMED_OUT,
    EXPIRED,
    GTC,
    GTT,
    IOC,
    LIMIT,
    NEW,
    REJECTED,
    SELL,
    UNTRIGGERED,
    OrderBook,
)
from matching_service.recovery import ReplayMismatch, replay

T = 5_000_000_000  # an expiry


@pytest.mark.parametrize("money", [True, False], ids=["money", "no-money"])
def test_open_before_its_expiry_and_expired_at_it(money: bool) -> None:
    desk = Desk(money)
    order = desk.limit(A, BUY, 100, 3, tif=GTT, expire=T, now=T - 10)
    assert (order.state, order.expire_ns, order.time_in_force) == (NEW, T, GTT)
    assert desk.expire(T - 1) == [] and order.state == NEW  # 1 ns before: open
    # it still trades 1 ns before its expiry
    out = desk.new(B, SELL, LIMIT, IOC, 100, 1, now=T - 1)
    assert [f.quantity for f in out.fills] == [1]
    assert desk.expire(T) == [order]
    assert (order.state, order.reason, order.held) == (EXPIRED, "GOOD_TILL_TIME", 0)
    assert [(e.kind, e.order_id, e.quantity) for e in desk.last_events] == [
        (EV_TIMED_OUT, order.order_id, 2)]
    assert desk.book.resting() == [] and desk.book.open_orders(A) == 0
    desk.check_replay()


def test_expired_in_expiry_order_then_order_id_exactly_once() -> None:
    desk = Desk()
    late = desk.limit(A, BUY, 90, 1, tif=GTT, expire=T + 2)
    first = desk.limit(B, SELL, 110, 1, tif=GTT, expire=T)
    second = desk.limit(C, BUY, 91, 1, tif=GTT, expire=T + 1)
    tie = desk.limit(A, SELL, 111, 1, tif=GTT, expire=T + 1)
    never = desk.limit(A, BUY, 89, 1)  # GTC
    gone = desk.limit(B, BUY, 92, 1, tif=GTT, expire=T)
    assert desk.cancel(gone).error == ""
    assert desk.book.next_expiry() == T
    assert desk.expire(T + 1) == [first, second, tie]
    assert [e.order_id for e in desk.last_events] == [first.order_id, second.order_id,
                                                      tie.order_id]
    assert desk.expire(T + 1) == []  # exactly once
    assert desk.book.next_expiry() == T + 2
    assert desk.expire(T + 10) == [late]
    assert desk.book.next_expiry() == 0 and never.state == NEW
    desk.check_replay()


def test_an_order_past_its_expiry_at_arrival_is_rejected() -> None:
    desk = Desk()
    out = desk.new(A, BUY, LIMIT, GTT, 100, 1, expire=T, now=T)
    assert out.order is not None
    assert (out.order.state, out.order.reason) == (REJECTED, "GOOD_TILL_TIME")
    assert [e.kind for e in desk.last_events] == [EV_REJECTED] and out.order.held == 0
    assert desk.new(A, BUY, LIMIT, GTT, 100, 1, expire=T + 1, now=T).order.state == NEW
    desk.check_replay()


def test_an_expire_time_goes_with_gtt_only() -> None:
    desk = Desk()
    assert desk.new(A, BUY, LIMIT, GTT, 100, 1).error == ERR_INVALID
    assert desk.new(A, BUY, LIMIT, GTC, 100, 1, expire=T).error == ERR_INVALID


def test_a_gtt_stop_limit_expires_untriggered_or_after_its_trigger() -> None:
    desk = Desk()
    desk.limit(B, SELL, 100, 1)
    desk.new(C, BUY, LIMIT, IOC, 100, 1)  # last price 100
    waiting = desk.new(A, BUY, LIMIT, GTT, 106, 1, stop=105, expire=T).order
    fired = desk.new(A, SELL, LIMIT, GTT, 99, 1, stop=99, expire=T + 1).order
    assert waiting.state == fired.state == UNTRIGGERED
    desk.limit(C, BUY, 99, 1)
    desk.new(B, SELL, LIMIT, IOC, 99, 1)  # trades at 99: fires the sell stop-limit
    assert fired.state == NEW and desk.book.best_ask() == 99
    assert desk.expire(T + 1) == [waiting, fired]
    assert desk.book.untriggered() == [] and desk.book.resting() == []
    desk.check_replay()


def test_snapshot_keeps_the_expiries() -> None:
    desk = Desk()
    a = desk.limit(A, BUY, 100, 1, tif=GTT, expire=T)
    desk.snapshot()
    b = desk.limit(B, SELL, 120, 1, tif=GTT, expire=T - 5)
    desk.check_replay()  # the expiries, rebuilt from the snapshot and the journal
    assert desk.expire(T) == [b, a]
    desk.check_replay()


def test_replay_re_executes_timed_out_and_refuses_a_forged_one() -> None:
    desk = Desk()
    order = desk.limit(A, BUY, 100, 1, tif=GTT, expire=T)
    desk.expire(T + 7)
    assert desk.journal[-1].kind == EV_TIMED_OUT and desk.journal[-1].created_ns == T + 7
    copy = desk.fresh()
    assert replay(copy, desk.journal) == len(desk.journal)
    assert copy.orders == {} and copy.next_expiry() == 0
    # an expiry of an order that is not open cannot be re-executed
    forged = list(desk.journal[:-1])
    forged.append(desk.journal[-1])
    forged.append(desk.journal[-1])
    with pytest.raises(ReplayMismatch):
        replay(OrderBook(1, terms=desk.fresh().terms), forged)
    assert order.state == EXPIRED


def test_gtc_orders_are_never_in_the_expiries() -> None:
    desk = Desk()
    for i in range(5):
        desk.limit(A, BUY, 90 + i, 1, tif=GTC)
    assert desk.book.next_expiry() == 0 and len(desk.book.expiries) == 0
