"""The client library's conversions for the trader features (self-trade prevention,
stops, good-till-time, amend, mass cancel), the OrderEntry session's correlation of
answers to commands, and ``exchange session``'s command lines."""

from __future__ import annotations

import datetime as dt
from concurrent.futures import Future

import pytest
from google.rpc import code_pb2, status_pb2

from exchange.common.v1 import common_pb2 as cpb
from exchange.order.v1 import order_pb2 as opb
from exchange_client import _convert as cv
from exchange_client.errors import FailedPrecondition, InvalidArgument, NotFound
from exchange_client.session import Correlator, cancel_command, create_command
from exchange_client.session_cli import RENEW, LineError, parse_line, parse_time
from exchange_common import errors as server_errors

NOW = dt.datetime(2026, 12, 5, 10, 0, tzinfo=dt.UTC)


@pytest.mark.parametrize("value,expected", [
    (None, cpb.SELF_TRADE_PREVENTION_UNSPECIFIED),
    ("none", cpb.SELF_TRADE_PREVENTION_NONE),
    ("cancel_resting", cpb.SELF_TRADE_PREVENTION_CANCEL_RESTING),
    ("CANCEL_INCOMING", cpb.SELF_TRADE_PREVENTION_CANCEL_INCOMING),
    ("SELF_TRADE_PREVENTION_CANCEL_BOTH", cpb.SELF_TRADE_PREVENTION_CANCEL_BOTH),
    ("decrement", cpb.SELF_TRADE_PREVENTION_DECREMENT),
    (5, cpb.SELF_TRADE_PREVENTION_DECREMENT),
])
def test_self_trade_prevention_names(value, expected) -> None:
    assert cv.self_trade_prevention(value) == expected


@pytest.mark.parametrize("value", ["bogus", 9, 1.0, "cancel"])
def test_self_trade_prevention_refuses_others(value) -> None:
    with pytest.raises(ValueError):
        cv.self_trade_prevention(value)


def test_create_request_carries_stop_gtt_and_stp() -> None:
    request = cv.create_order_request(
        "BTC-USD", "buy", "0.01", price="69000", type_="limit",
        time_in_force_=cv.gtt_if_expiring(None, "2026-12-05T10:30:00Z"),
        client_order_id="o1", post_only=False, self_trade_prevention_="cancel_both",
        stop_price="69500.5", expire_time="2026-12-05T10:30:00Z")
    assert request.time_in_force == cpb.TIME_IN_FORCE_GTT
    assert request.stop_price == "69500.5"
    assert request.self_trade_prevention == cpb.SELF_TRADE_PREVENTION_CANCEL_BOTH
    assert request.expire_time.ToDatetime(tzinfo=dt.UTC) == NOW + dt.timedelta(minutes=30)
    plain = cv.create_order_request("BTC-USD", "buy", "0.01", price="1", type_="limit",
                                    time_in_force_=None, client_order_id="o2",
                                    post_only=False)
    assert not plain.HasField("expire_time") and plain.stop_price == ""
    assert cv.gtt_if_expiring("ioc", NOW) == "ioc"  # the server refuses that pair


@pytest.mark.parametrize("value,error", [
    ("2026-12-05T10:00:00", ValueError),  # no zone: which one?
    (dt.datetime(2026, 12, 5, 10), ValueError),
    ("tomorrow", ValueError),
    (1800000000, TypeError),
])
def test_timestamps_need_a_zone(value, error) -> None:
    with pytest.raises(error):
        cv.timestamp(value, "expire_time")


def test_timestamp_converts_offsets_to_utc() -> None:
    ts = cv.timestamp("2026-12-05T12:00:00+02:00", "expire_time")
    assert ts.ToDatetime(tzinfo=dt.UTC) == NOW
    with pytest.raises(TypeError):
        cv.create_order_request("BTC-USD", "buy", "0.01", price="1", type_="limit",
                                time_in_force_=None, client_order_id="o", post_only=False,
                                stop_price=69000.5)  # type: ignore[arg-type]


def test_amend_and_cancel_all_requests() -> None:
    amend = cv.amend_order_request(None, "o1", None, "0.02")
    assert (amend.client_order_id, amend.price, amend.quantity) == ("o1", "", "0.02")
    with pytest.raises(ValueError):
        cv.amend_order_request("1", None, None, None)
    with pytest.raises(ValueError):
        cv.amend_order_request("1", "o1", "1", None)
    assert cv.cancel_all_orders_request(None, None) == opb.CancelAllOrdersRequest()
    assert cv.cancel_all_orders_request("ETH-USD", "sell") == opb.CancelAllOrdersRequest(
        instrument="ETH-USD", side=cpb.SIDE_SELL)


# -- the session's correlation ----------------------------------------------------------


def _order_event(coid: str, order_id: str) -> opb.OrderEntryEvent:
    return opb.OrderEntryEvent(client_order_id=coid, order=opb.Order(
        order_id=order_id, client_order_id=coid, state=cpb.ORDER_STATE_NEW))


def _error_event(coid: str, err: server_errors.ExchangeError) -> opb.OrderEntryEvent:
    return opb.OrderEntryEvent(client_order_id=coid, error=err.to_status_proto())


def test_one_command_in_flight_per_order() -> None:
    """A cancel of an order whose create is unanswered waits for that answer; answers
    go to their own commands whatever their order."""
    c = Correlator()
    create_o1, cancel_o1, create_o2 = Future(), Future(), Future()
    assert c.submit(create_command("BTC-USD", "buy", "1", price="1", client_order_id="o1"),
                    create_o1)
    assert not c.submit(cancel_command(client_order_id="o1"), cancel_o1)
    assert c.submit(create_command("BTC-USD", "buy", "1", price="1", client_order_id="o2"),
                    create_o2)
    assert c.resolve(_order_event("o2", "20")) == []
    assert create_o2.result().order.order_id == "20"
    released = c.resolve(_order_event("o1", "10"))
    assert [r.cancel.client_order_id for r in released] == ["o1"]
    assert create_o1.result().order.order_id == "10" and not cancel_o1.done()
    c.resolve(_error_event("o1", server_errors.FailedPrecondition(
        "not open", reason="ORDER_NOT_OPEN")))
    with pytest.raises(FailedPrecondition):
        cancel_o1.result()
    assert c.pending == 0


def test_commands_by_order_id_go_one_at_a_time() -> None:
    """Errors of commands by order id carry no client_order_id: one such command at a
    time, and its success is recognised by the order id."""
    c = Correlator()
    first, second, create = Future(), Future(), Future()
    assert c.submit(cancel_command("100"), first)
    assert not c.submit(cancel_command("200"), second)
    assert c.submit(create_command("BTC-USD", "buy", "1", price="1", client_order_id="x"),
                    create)
    # An order event for x (not order 100) answers the create, not the cancel.
    c.resolve(_order_event("x", "300"))
    assert create.done() and not first.done()
    released = c.resolve(_order_event("c-100", "100"))
    assert first.result().order.order_id == "100"
    assert [r.cancel.order_id for r in released] == ["200"]
    c.resolve(_error_event("", server_errors.NotFound("no such order",
                                                      reason="ORDER_NOT_FOUND")))
    with pytest.raises(NotFound):
        second.result()


def test_fail_all_fails_waiting_commands() -> None:
    c = Correlator()
    a, b = Future(), Future()
    c.submit(cancel_command(client_order_id="o1"), a)
    c.submit(cancel_command(client_order_id="o1"), b)
    c.fail_all(InvalidArgument("gone"))
    assert isinstance(a.exception(), InvalidArgument)
    assert isinstance(b.exception(), InvalidArgument)
    assert c.pending == 0


def test_error_status_round_trip() -> None:
    from exchange_client.errors import from_status_proto

    status = server_errors.InvalidArgument("stop_price bad", reason="STOP_PRICE_OFF_TICK",
                                           field="stop_price").to_status_proto()
    err = from_status_proto(status)
    assert isinstance(err, InvalidArgument) and err.reason == "STOP_PRICE_OFF_TICK"
    assert [v.field for v in err.field_violations] == ["stop_price"]
    unknown = from_status_proto(status_pb2.Status(code=999, message="?"))
    assert unknown.code_name == "UNKNOWN"
    assert from_status_proto(status_pb2.Status(code=code_pb2.NOT_FOUND)).code_name == "NOT_FOUND"


# -- exchange session's lines -------------------------------------------------------------


def _create(line: str) -> opb.CreateOrderRequest:
    command = parse_line(line, NOW)
    assert isinstance(command, opb.OrderEntryCommand)
    return command.create


@pytest.mark.parametrize("line,fields", [
    ("buy BTC-USD 0.01 @ 69000 id=o1",
     dict(side=cpb.SIDE_BUY, type=cpb.ORDER_TYPE_LIMIT, price="69000", quantity="0.01",
          client_order_id="o1")),
    ("SELL btc-usd 0.5 id=m1", dict(side=cpb.SIDE_SELL, type=cpb.ORDER_TYPE_MARKET,
                                    price="", instrument="btc-usd")),
    ("buy BTC-USD funds=100 id=f1", dict(type=cpb.ORDER_TYPE_MARKET, quantity="",
                                         funds="100")),
    ("sell BTC-USD 0.01 @ 68000 stop=68500 id=s1", dict(stop_price="68500",
                                                        type=cpb.ORDER_TYPE_LIMIT)),
    ("buy BTC-USD 0.01 stop=71000 tif=fok id=s2",
     dict(stop_price="71000", type=cpb.ORDER_TYPE_MARKET,
          time_in_force=cpb.TIME_IN_FORCE_FOK)),
    ("buy BTC-USD 0.01 @ 69000 expire=+30m stp=cancel_both post_only id=g1",
     dict(time_in_force=cpb.TIME_IN_FORCE_GTT, post_only=True,
          self_trade_prevention=cpb.SELF_TRADE_PREVENTION_CANCEL_BOTH)),
    ("buy BTC-USD 0.01 @ 69000 tif=gtt expire=2026-12-06T00:00:00Z  # tomorrow",
     dict(time_in_force=cpb.TIME_IN_FORCE_GTT)),
])
def test_order_lines(line: str, fields: dict) -> None:
    create = _create(line)
    for name, value in fields.items():
        assert getattr(create, name) == value, name


def test_relative_and_absolute_times() -> None:
    assert _create("buy BTC-USD 1 @ 1 expire=+30m").expire_time.ToDatetime(
        tzinfo=dt.UTC) == NOW + dt.timedelta(minutes=30)
    assert parse_time("+2h", NOW) == NOW + dt.timedelta(hours=2)
    assert parse_time("+90s", NOW) == NOW + dt.timedelta(seconds=90)
    assert parse_time("+1d", NOW) == NOW + dt.timedelta(days=1)
    assert parse_time("2026-12-05T11:00:00+01:00") == NOW
    for bad in ("+30", "30m", "+-1m", "2026-12-05T10:00:00", "soon"):
        with pytest.raises(ValueError):
            parse_time(bad, NOW)


def test_cancel_amend_renew_and_blank_lines() -> None:
    cancel = parse_line("cancel o1")
    assert isinstance(cancel, opb.OrderEntryCommand)
    assert cancel.cancel == opb.CancelOrderRequest(client_order_id="o1")
    by_id = parse_line("cancel order=123")
    assert isinstance(by_id, opb.OrderEntryCommand)
    assert by_id.cancel == opb.CancelOrderRequest(order_id="123")
    amend = parse_line("amend o1 qty=0.02 price=69100")
    assert isinstance(amend, opb.OrderEntryCommand)
    assert amend.amend == opb.AmendOrderRequest(client_order_id="o1", quantity="0.02",
                                                price="69100")
    assert parse_line("renew") == RENEW
    assert parse_line("") is None and parse_line("   # a comment") is None


@pytest.mark.parametrize("line", [
    "hold BTC-USD 1",  # unknown verb
    "buy",  # no instrument
    "buy BTC-USD",  # no quantity, no funds
    "buy BTC-USD 1 @",  # @ without a price
    "buy BTC-USD 1 2",  # two quantities
    "buy BTC-USD 1 @ 1 colour=red",  # unknown key
    "buy BTC-USD 1 @ 1 id=a id=b",  # twice
    "buy BTC-USD 1 @ 1 stp=sometimes",
    "buy BTC-USD 1 @ 1 expire=later",
    "sell BTC-USD 1 @ 1 type=market",  # market with a price
    "cancel",  # no reference
    "cancel o1 order=5",  # both
    "amend o1",  # nothing to change
    "renew now",
])
def test_bad_lines(line: str) -> None:
    with pytest.raises(LineError):
        parse_line(line, NOW)
