"""Mass cancel: every open order of one account (resting and untriggered stops),
optionally one side only, one CANCELLED event each in order id order; other accounts
untouched; replayed as the cancels it journaled."""

from __future__ import annotations

import pytest
from engine_desk import A, B, Desk

from matching_service.engine import (
    BUY,
    CANCELLED,
    EV_CANCELLED,
    IOC,
    LIMIT,
    MARKET,
    NEW,
    SELL,
    UNTRIGGERED,
)


def setup(desk: Desk):
    desk.limit(B, SELL, 100, 1)
    desk.new(B, BUY, LIMIT, IOC, 100, 1)  # a last price: 100
    mine = [desk.limit(A, BUY, 95, 2), desk.limit(A, SELL, 105, 3),
            desk.limit(A, BUY, 94, 1, client_order_id="a-bid"),
            desk.new(A, SELL, MARKET, IOC, 0, 2, stop=90).order,
            desk.new(A, BUY, LIMIT, 4, 111, 1, stop=110, expire=10**12).order]
    theirs = [desk.limit(B, BUY, 95, 4), desk.limit(B, SELL, 106, 5),
              desk.new(B, BUY, MARKET, IOC, 0, 1, stop=108, hold_price=130).order]
    return mine, theirs


@pytest.mark.parametrize("money", [True, False], ids=["money", "no-money"])
@pytest.mark.parametrize("side", [0, BUY, SELL], ids=["both", "buy", "sell"])
def test_cancel_all_of_one_account(side: int, money: bool) -> None:
    desk = Desk(money)
    mine, theirs = setup(desk)
    assert mine[3].state == mine[4].state == UNTRIGGERED
    expected = sorted((o for o in mine if not side or o.side == side),
                      key=lambda o: o.order_id)
    cancelled = desk.cancel_all(A, side)
    assert cancelled == expected
    assert [(e.kind, e.order_id, e.quantity) for e in desk.last_events] == [
        (EV_CANCELLED, o.order_id, o.quantity) for o in expected]
    for o in mine:
        if o in expected:
            assert (o.state, o.reason, o.held) == (CANCELLED, "CANCELLED_BY_USER", 0)
        else:
            assert o.state in (NEW, UNTRIGGERED)
    assert all(o.state in (NEW, UNTRIGGERED) for o in theirs)
    assert desk.book.open_orders(A) == len(mine) - len(expected)
    assert desk.book.open_orders(B) == len(theirs)
    if not side:
        assert desk.cancel_all(A) == [] and desk.last_events == []  # nothing left
    desk.check_replay()


def test_cancel_all_frees_the_client_order_ids() -> None:
    desk = Desk()
    mine, _ = setup(desk)
    desk.cancel_all(A)
    assert desk.book.open_client_ids == {}
    again = desk.limit(A, BUY, 94, 1, client_order_id="a-bid")  # a retry: the original
    assert again is mine[2]


def test_cancel_all_of_an_account_with_no_order_is_empty() -> None:
    desk = Desk()
    setup(desk)
    assert desk.cancel_all(99) == [] and desk.last_events == []
