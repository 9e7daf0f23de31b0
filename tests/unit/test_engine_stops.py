"""Stop and stop-limit orders: where they wait, which way each triggers, in what order,
the cascade, the STOP_WOULD_TRIGGER boundary, cancels, money, and replay.

Trades are made by B and C (their own STP is irrelevant: different accounts); the stops
are A's. After every command engine_desk.Desk checks that every open order, stops
included, holds exactly what its open lots need.
"""

from __future__ import annotations

import pytest
from engine_desk import A, B, C, Desk

from matching_service.engine import (
    BUY,
    CANCELLED,
    ERR_INVALID,
    EV_ACCEPTED,
    EV_CANCELLED,
    EV_REJECTED,
    EV_TRADE,
    EV_TRIGGERED,
    EXPIRED,
    FILLED,
    GTC,
    IOC,
    LIMIT,
    MARKET,
    PARTIALLY_FILLED,
    REJECTED,
    SELL,
    UNTRIGGERED,
    Order,
)


def trade(desk: Desk, price: int, qty: int = 1) -> None:
    """B rests a sell at ``price`` and C buys it: one trade at ``price``."""
    desk.limit(B, SELL, price, qty)
    out = desk.new(C, BUY, LIMIT, IOC, price, qty)
    assert [f.price for f in out.fills] == [price] * (1 if qty else 0)


def stop(desk: Desk, side: int, stop_price: int, qty: int = 1, price: int = 0,
         **kw) -> Order:
    """A's stop (MARKET; LIMIT with ``price``)."""
    type_ = LIMIT if price else MARKET
    tif = kw.pop("tif", GTC if price else IOC)
    hold_price = kw.pop("hold_price", stop_price + 20 if side == BUY and not price else 0)
    out = desk.new(A, side, type_, tif, price, qty, stop=stop_price, hold_price=hold_price,
                   **kw)
    assert out.order is not None and out.error == "", out.error_message
    return out.order


def triggered(desk: Desk) -> list[tuple[int, int]]:
    """(order id, price) of the TRIGGERED events of the last command, in order."""
    return [(e.order_id, e.price) for e in desk.last_events if e.kind == EV_TRIGGERED]


@pytest.mark.parametrize("money", [True, False], ids=["money", "no-money"])
def test_a_stop_waits_off_the_book_holding_its_funds(money: bool) -> None:
    desk = Desk(money)
    trade(desk, 100)
    s = stop(desk, BUY, 105, 3, price=106)
    assert s.state == UNTRIGGERED and s.stop_price == 105
    assert [e.kind for e in desk.last_events] == [EV_ACCEPTED]
    assert desk.last_events[0].stop_price == 105
    assert desk.book.resting() == [] and desk.book.best_bid() is None
    assert desk.book.untriggered() == [s]
    assert desk.book.open_orders(A) == 1
    if money:
        assert s.held > 0  # Desk checks it is exactly 3 lots at 106
    desk.check_replay()


@pytest.mark.parametrize("side,below,at,above", [
    # a buy stop at 105 fires at >= 105; a sell stop at 95 fires at <= 95
    (BUY, 104, 105, 106),
    (SELL, 96, 95, 94),
])
def test_trigger_direction(side: int, below: int, at: int, above: int) -> None:
    for fire_at in (at, above):
        desk = Desk()
        trade(desk, 100)
        s = stop(desk, side, at)
        trade(desk, below)  # not yet
        assert s.state == UNTRIGGERED and triggered(desk) == []
        # liquidity for the stop, away from the trades
        desk.limit(B if side == BUY else C, SELL if side == BUY else BUY,
                   120 if side == BUY else 80, 5)
        trade(desk, fire_at)
        assert triggered(desk) == [(s.order_id, fire_at)]
        assert s.state != UNTRIGGERED and desk.book.untriggered() == []
        desk.check_replay()


def test_stops_fire_in_placement_order_within_and_across_stop_prices() -> None:
    desk = Desk()
    trade(desk, 100)
    desk.limit(B, SELL, 110, 50)  # what the stop buys take
    s1 = stop(desk, BUY, 103)
    s2 = stop(desk, BUY, 101)
    s3 = stop(desk, BUY, 103)
    s4 = stop(desk, BUY, 102)
    s5 = stop(desk, BUY, 115)  # not reached (the stops buy at 110)
    # one taker trading at 101, 102 and 103: the trade at 101 fires s2, at 102 s4,
    # at 103 s1 and s3 (in placement order); each enters when fired
    for p in (101, 102, 103):
        desk.limit(B, SELL, p, 1)
    out = desk.new(C, BUY, LIMIT, IOC, 103, 3)
    assert [f.price for f in out.fills] == [101, 102, 103]
    assert triggered(desk) == [(s2.order_id, 101), (s4.order_id, 102), (s1.order_id, 103),
                               (s3.order_id, 103)]
    # each triggered stop trades right after its TRIGGERED event, at 110
    kinds = [(e.kind, e.order_id) for e in desk.last_events if e.kind in (EV_TRIGGERED,
                                                                           EV_TRADE)]
    fired = [oid for kind, oid in kinds if kind == EV_TRIGGERED]
    for oid in fired:
        i = kinds.index((EV_TRIGGERED, oid))
        assert kinds[i + 1] == (EV_TRADE, oid)
    assert s5.state == UNTRIGGERED
    assert all(s.state == FILLED for s in (s1, s2, s3, s4))
    desk.check_replay()


def test_a_cascade_is_deterministic() -> None:
    """A sell stop's fill prints lower, which fires the next sell stop, and so on."""
    desk = Desk()
    trade(desk, 100)
    for price in (99, 98, 97, 96):
        desk.limit(C, BUY, price, 1)
    s1 = stop(desk, SELL, 99)
    s2 = stop(desk, SELL, 98)
    s3 = stop(desk, SELL, 97)
    trade_sell = desk.new(B, SELL, LIMIT, IOC, 99, 1)  # takes the bid at 99
    assert [f.price for f in trade_sell.fills] == [99]
    # s1 sells into 98, which fires s2, which sells into 97, which fires s3
    assert triggered(desk) == [(s1.order_id, 99), (s2.order_id, 98), (s3.order_id, 97)]
    assert [s.state for s in (s1, s2, s3)] == [FILLED] * 3
    assert desk.book.last_price == 96
    desk.check_replay()


@pytest.mark.parametrize("side,last,stop_price,rejected", [
    (BUY, 100, 100, True),  # equal: already reached
    (BUY, 100, 99, True),
    (BUY, 100, 101, False),
    (SELL, 100, 100, True),
    (SELL, 100, 101, True),
    (SELL, 100, 99, False),
])
def test_a_stop_the_last_trade_already_reached_is_rejected(
        side: int, last: int, stop_price: int, rejected: bool) -> None:
    desk = Desk()
    trade(desk, last)
    out = desk.new(A, side, LIMIT, GTC, stop_price, 1, stop=stop_price)
    assert out.order is not None
    if rejected:
        assert (out.order.state, out.order.reason) == (REJECTED, "STOP_WOULD_TRIGGER")
        assert [e.kind for e in desk.last_events] == [EV_REJECTED]
        assert out.order.held == 0
    else:
        assert out.order.state == UNTRIGGERED
    desk.check_replay()


def test_before_any_trade_every_stop_is_accepted() -> None:
    desk = Desk()
    assert stop(desk, BUY, 1).state == UNTRIGGERED
    assert stop(desk, SELL, 10**6).state == UNTRIGGERED


@pytest.mark.parametrize("money", [True, False], ids=["money", "no-money"])
def test_stop_limit_rests_and_stop_market_expires_its_remainder(money: bool) -> None:
    desk = Desk(money)
    trade(desk, 100)
    desk.limit(B, SELL, 104, 2)
    limit_stop = stop(desk, BUY, 103, 5, price=104)
    market_stop = stop(desk, BUY, 103, 5, hold_price=130)
    trade(desk, 103)
    # the stop-limit fired first: it took the 2 lots at 104 and rests 3 at 104, with
    # the priority of its TRIGGERED event; the stop market then found no ask: expired
    assert (limit_stop.state, limit_stop.filled) == (PARTIALLY_FILLED, 2)
    assert desk.book.best_bid() == 104
    assert limit_stop.priority == next(e.sequence for e in desk.journal
                                       if e.kind == EV_TRIGGERED
                                       and e.order_id == limit_stop.order_id)
    assert (market_stop.state, market_stop.reason) == (EXPIRED, "NO_LIQUIDITY")
    desk.check_replay()


@pytest.mark.parametrize("money", [True, False], ids=["money", "no-money"])
def test_cancel_an_untriggered_stop(money: bool) -> None:
    desk = Desk(money)
    trade(desk, 100)
    s = stop(desk, SELL, 90, 4, price=89, client_order_id="s1")
    out = desk.cancel(s)
    assert out.error == "" and s.state == CANCELLED and s.held == 0
    assert [(e.kind, e.quantity) for e in desk.last_events] == [(EV_CANCELLED, 4)]
    assert desk.book.untriggered() == [] and desk.book.open_orders(A) == 0
    assert desk.cancel(s).error  # once
    trade(desk, 80)  # a cancelled stop never fires
    assert triggered(desk) == []
    desk.check_replay()


def test_an_untriggered_stop_cannot_be_amended() -> None:
    desk = Desk()
    s = stop(desk, BUY, 105, 2, price=106)
    out = desk.amend(s, 107, 0)
    assert out.error == ERR_INVALID and "cancel and replace" in out.error_message
    assert s.state == UNTRIGGERED and s.price == 106


def test_post_only_stop_limit_that_would_take_at_its_trigger_expires() -> None:
    desk = Desk()
    trade(desk, 100)
    desk.limit(B, SELL, 104, 1)
    s = stop(desk, BUY, 102, 1, price=105, post_only=True)
    assert s.state == UNTRIGGERED
    trade(desk, 102)
    assert (s.state, s.reason) == (EXPIRED, "POST_ONLY_WOULD_TAKE")
    assert desk.book.best_ask() == 104
    desk.check_replay()


def test_a_triggered_stop_sell_of_the_same_account_is_under_its_own_stp() -> None:
    """A's stop sell fires into A's own bid: its default, CANCEL_RESTING, cancels it."""
    desk = Desk()
    trade(desk, 100)
    own_bid = desk.limit(A, BUY, 95, 1)
    desk.limit(C, BUY, 94, 1)
    s = stop(desk, SELL, 96, 1)
    desk.limit(B, SELL, 96, 1)
    desk.limit(C, BUY, 96, 1)  # trades at 96: fires s
    assert own_bid.state == CANCELLED and own_bid.reason == "SELF_TRADE_PREVENTED"
    assert s.state == FILLED and s.filled_notional == 94
    desk.check_replay()


def test_a_snapshot_keeps_the_stops_and_a_restored_stop_fires() -> None:
    desk = Desk()
    trade(desk, 100)
    s1 = stop(desk, BUY, 105, 1, price=106)
    s2 = stop(desk, SELL, 95, 1, price=94)
    desk.snapshot()
    desk.check_replay()
    desk.limit(B, SELL, 106, 1)
    trade(desk, 105)
    assert s1.state == FILLED and s2.state == UNTRIGGERED
    assert desk.book.open_orders(A) == 1
    desk.check_replay()
