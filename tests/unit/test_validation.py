"""Exact decimal conversion and order validation against instrument rules."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from exchange.common.v1 import common_pb2 as cpb
from exchange.order.v1 import order_pb2 as opb
from exchange_common.decimals import (
    DecimalFormatError,
    OffGridError,
    average_price,
    format_units,
    parse_units,
)
from exchange_common.errors import ExchangeError, FailedPrecondition, InvalidArgument, clip
from exchange_common.instruments import InstrumentSpec
from order_service.holds import stop_protection, unit
from order_service.orders import hold_request
from order_service.validation import (
    FOK,
    GTC,
    GTT,
    IOC,
    LIMIT,
    MARKET,
    MAX_CLIENT_ORDER_ID,
    MAX_GTT_SECONDS,
    check_client_order_id,
    validate_amend,
    validate_new_order,
)

BTC = InstrumentSpec(
    instrument_id=1, symbol="BTC-USD", base_asset="BTC", quote_asset="USD",
    tick_size=Decimal("0.01"), lot_size=Decimal("0.0001"), min_quantity=Decimal("0.0001"),
    max_quantity=Decimal("1000"), min_notional=Decimal("1"), price_band_bps=0,
    status="trading", price_decimals=2, quantity_decimals=4,
)


@pytest.mark.parametrize("text,step,units", [
    ("70000.50", "0.01", 7000050), ("70000.5", "0.01", 7000050), ("70000", "0.01", 7000000),
    ("0.0001", "0.0001", 1), ("0.01000", "0.01", 1), ("1000", "0.0001", 10_000_000),
    ("999999999999999999", "1", 999999999999999999),
])
def test_parse_units_exact(text: str, step: str, units: int) -> None:
    assert parse_units(text, Decimal(step)) == units


@pytest.mark.parametrize("text", ["", "abc", "1e5", "1E5", "-1", "+1", " 1", "1 ", ".5", "5.",
                                  "1,5", "0x10", "NaN", "Infinity", "1.2.3", "١٢", "1" * 19,
                                  "0." + "1" * 19])
def test_parse_units_rejects_malformed(text: str) -> None:
    with pytest.raises(DecimalFormatError):
        parse_units(text, Decimal("0.01"))


def test_parse_units_rejects_off_grid() -> None:
    with pytest.raises(OffGridError):
        parse_units("70000.005", Decimal("0.01"))
    with pytest.raises(OffGridError):
        parse_units("0.00015", Decimal("0.0001"))


def test_format_and_average() -> None:
    assert format_units(7000050, Decimal("0.01"), 2) == "70000.50"
    assert format_units(1, Decimal("0.0001"), 4) == "0.0001"
    # (70000.00 * 0.0030 + 70000.50 * 0.1970) / 0.2 = 70000.4925
    notional = 7000000 * 30 + 7000050 * 1970
    assert average_price(notional, 2000, Decimal("0.01"), 6) == "70000.492500"
    assert average_price(0, 0, Decimal("0.01"), 6) == ""


def req(**kw) -> opb.CreateOrderRequest:
    base = dict(instrument="BTC-USD", side=1, type=LIMIT, price="70000", quantity="0.01")
    base.update(kw)
    return opb.CreateOrderRequest(**base)


def test_valid_orders() -> None:
    v = validate_new_order(req(), BTC)
    assert (v.price, v.quantity, v.time_in_force) == (7000000, 100, GTC)
    m = validate_new_order(req(type=MARKET, price=""), BTC)
    assert (m.price, m.time_in_force) == (0, IOC)
    f = validate_new_order(req(time_in_force=FOK), BTC)
    assert f.time_in_force == FOK


@pytest.mark.parametrize("kw,field,reason", [
    (dict(price="70000.001"), "price", "PRICE_OFF_TICK"),
    (dict(price="abc"), "price", "INVALID_DECIMAL"),
    (dict(price="7e4"), "price", "INVALID_DECIMAL"),
    (dict(price="-70000"), "price", "INVALID_DECIMAL"),
    (dict(price="0"), "price", "PRICE_NOT_POSITIVE"),
    (dict(price=""), "price", "PRICE_REQUIRED"),
    (dict(price="1" * 25), "price", "INVALID_DECIMAL"),
    (dict(quantity="0.00001"), "quantity", "QUANTITY_OFF_LOT"),
    (dict(quantity="0"), "quantity", "QUANTITY_NOT_POSITIVE"),
    (dict(quantity=""), "quantity", "QUANTITY_REQUIRED"),
    (dict(quantity="1e-2"), "quantity", "INVALID_DECIMAL"),
    (dict(quantity="1001"), "quantity", "QUANTITY_ABOVE_MAX"),
    (dict(price="1", quantity="0.5"), "quantity", "NOTIONAL_BELOW_MIN"),
    (dict(side=0), "side", "SIDE_INVALID"),
    (dict(side=7), "side", "SIDE_INVALID"),
    (dict(type=0), "type", "ORDER_TYPE_INVALID"),
    (dict(time_in_force=9), "time_in_force", "TIME_IN_FORCE_INVALID"),
    (dict(type=MARKET, price="70000"), "price", "PRICE_NOT_ALLOWED"),
    (dict(type=MARKET, price="", time_in_force=GTC), "time_in_force", "TIME_IN_FORCE_INVALID"),
    (dict(type=MARKET, price="", post_only=True), "post_only", "POST_ONLY_INVALID"),
    (dict(post_only=True, time_in_force=IOC), "post_only", "POST_ONLY_INVALID"),
    (dict(client_order_id="has space"), "client_order_id", "CLIENT_ORDER_ID_INVALID"),
    (dict(client_order_id="x" * 65), "client_order_id", "CLIENT_ORDER_ID_INVALID"),
])
def test_invalid_orders(kw: dict, field: str, reason: str) -> None:
    with pytest.raises(InvalidArgument) as err:
        validate_new_order(req(**kw), BTC)
    assert err.value.field == field
    assert err.value.reason == reason


def test_min_quantity() -> None:
    spec = InstrumentSpec(**{**{f: getattr(BTC, f) for f in BTC.__slots__},
                             "min_quantity": Decimal("0.01")})
    with pytest.raises(InvalidArgument) as err:
        validate_new_order(req(quantity="0.0099"), spec)
    assert err.value.reason == "QUANTITY_BELOW_MIN"


def test_halted_instrument() -> None:
    halted = InstrumentSpec(**{**{f: getattr(BTC, f) for f in BTC.__slots__}, "status": "halted"})
    with pytest.raises(FailedPrecondition) as err:
        validate_new_order(req(), halted)
    assert err.value.reason == "INSTRUMENT_HALTED"


def test_rich_status_carries_reason_and_field() -> None:
    status = InvalidArgument("bad price", reason="PRICE_OFF_TICK", field="price").to_status()
    assert status.code.name == "INVALID_ARGUMENT"
    assert isinstance(InvalidArgument("x"), ExchangeError)
    keys = [k for k, _ in status.trailing_metadata]
    assert "grpc-status-details-bin" in keys


def test_integer_conversion_agrees_with_decimal_arithmetic() -> None:
    """parse_units/format_units use integers only; check them against Decimal."""
    import random

    rng = random.Random(7)
    for step_text in ["0.01", "0.0001", "0.05", "1", "5", "0.25", "10"]:
        step = Decimal(step_text)
        places = max(0, -step.as_tuple().exponent)
        for _ in range(300):
            units = rng.randint(1, 10**9)
            text = format_units(units, step, places)
            assert Decimal(text) == units * step
            assert parse_units(text, step) == units
            assert parse_units(text + "000", step) == units if "." in text else True
            off = Decimal(text) + step / 7
            if off.as_tuple().exponent >= -18 and len(str(off)) < 36:
                with pytest.raises((OffGridError, DecimalFormatError)):
                    parse_units(f"{off:f}", step)


@given(st.text(max_size=MAX_CLIENT_ORDER_ID + 2))
def test_client_order_id_is_printable_ascii_without_spaces(value: str) -> None:
    allowed = len(value) <= MAX_CLIENT_ORDER_ID and all(33 <= ord(c) <= 126 for c in value)
    try:
        check_client_order_id(value)
    except InvalidArgument as err:
        assert not allowed and err.reason == "CLIENT_ORDER_ID_INVALID"
    else:
        assert allowed


def test_clip_keeps_short_values_and_cuts_long_ones() -> None:
    assert clip("BTC-USD") == "BTC-USD"
    assert clip("x" * 40) == "x" * 40
    assert clip("x" * 41) == "x" * 40 + "..."
    assert clip("é" * 100, 5) == "ééééé..."


@pytest.mark.parametrize("field", ["price", "quantity"])
def test_an_error_never_repeats_a_huge_value(field: str) -> None:
    """Before: a 1 MB price came back whole in the message (over the client's limit for
    the status it is sent in)."""
    huge = "7" * (1 << 20) + "x"
    request = opb.CreateOrderRequest(side=1, type=LIMIT, price="70000", quantity="0.01")
    setattr(request, field, huge)
    with pytest.raises(InvalidArgument) as err:
        validate_new_order(request, BTC)
    assert err.value.reason == "INVALID_DECIMAL"
    assert len(err.value.message) < 300 and "7" * 40 + "..." in err.value.message


# -- issue 14: self-trade prevention, stops, good-till-time ---------------------------------

NOW_NS = 1_800_000_000 * 1_000_000_000
SECOND = 1_000_000_000


MONEY = InstrumentSpec(**{**{f: getattr(BTC, f) for f in BTC.__slots__},
                         "price_band_bps": 500, "base_decimals": 8, "quote_decimals": 6,
                         "base_asset_id": 1, "quote_asset_id": 2, "fee_account_id": 3})


def at(ns: int) -> dict:
    return {"seconds": ns // SECOND, "nanos": ns % SECOND}


def gtt(offset_ns: int, **kw) -> opb.CreateOrderRequest:
    return req(time_in_force=GTT, expire_time=at(NOW_NS + offset_ns), **kw)


def test_trader_orders_valid() -> None:
    plain = validate_new_order(req(), BTC)
    assert plain.self_trade_prevention == cpb.SELF_TRADE_PREVENTION_CANCEL_RESTING
    assert (plain.stop_price, plain.expire_ns) == (0, 0)
    for mode in cpb.SelfTradePrevention.values():
        v = validate_new_order(req(self_trade_prevention=mode), BTC)
        assert v.self_trade_prevention == (mode or cpb.SELF_TRADE_PREVENTION_CANCEL_RESTING)
    stop_limit = validate_new_order(req(stop_price="70100.50"), BTC)
    assert (stop_limit.type, stop_limit.stop_price, stop_limit.price) == (LIMIT, 7010050,
                                                                         7000000)
    stop = validate_new_order(req(type=MARKET, price="", stop_price="69000"), BTC)
    assert (stop.type, stop.stop_price, stop.time_in_force) == (MARKET, 6900000, IOC)
    stop_funds = validate_new_order(req(type=MARKET, price="", quantity="", funds="100",
                                        stop_price="71000"), MONEY)
    assert (stop_funds.funds, stop_funds.stop_price) == (100_000_000, 7100000)
    timed = validate_new_order(gtt(SECOND + 1), BTC, NOW_NS)
    assert (timed.time_in_force, timed.expire_ns) == (GTT, NOW_NS + SECOND + 1)
    far = validate_new_order(gtt(MAX_GTT_SECONDS * SECOND), BTC, NOW_NS)
    assert far.expire_ns == NOW_NS + MAX_GTT_SECONDS * SECOND
    post = validate_new_order(gtt(SECOND, post_only=True), BTC, NOW_NS)
    assert post.post_only


@pytest.mark.parametrize("request_,field,reason", [
    (req(self_trade_prevention=6), "self_trade_prevention", "SELF_TRADE_PREVENTION_INVALID"),
    (req(self_trade_prevention=-1), "self_trade_prevention", "SELF_TRADE_PREVENTION_INVALID"),
    (req(stop_price="70000.001"), "stop_price", "STOP_PRICE_OFF_TICK"),
    (req(stop_price="0"), "stop_price", "STOP_PRICE_NOT_POSITIVE"),
    (req(stop_price="-5"), "stop_price", "INVALID_DECIMAL"),
    (req(stop_price="1e4"), "stop_price", "INVALID_DECIMAL"),
    (req(time_in_force=GTT), "expire_time", "EXPIRE_TIME_REQUIRED"),
    (req(expire_time=at(NOW_NS + SECOND)), "expire_time", "EXPIRE_TIME_NOT_ALLOWED"),
    (req(time_in_force=IOC, expire_time=at(NOW_NS + SECOND)), "expire_time",
     "EXPIRE_TIME_NOT_ALLOWED"),
    (gtt(0), "expire_time", "EXPIRE_TIME_PAST"),
    (gtt(-SECOND), "expire_time", "EXPIRE_TIME_PAST"),
    (gtt(MAX_GTT_SECONDS * SECOND + 1), "expire_time", "EXPIRE_TIME_TOO_FAR"),
    (gtt(SECOND, type=MARKET, price=""), "time_in_force", "TIME_IN_FORCE_INVALID"),
    (req(time_in_force=GTT, expire_time={"seconds": NOW_NS // SECOND + 5, "nanos": -1}),
     "expire_time", "EXPIRE_TIME_INVALID"),
])
def test_trader_orders_invalid(request_: opb.CreateOrderRequest, field: str,
                               reason: str) -> None:
    with pytest.raises(InvalidArgument) as err:
        validate_new_order(request_, BTC, NOW_NS)
    assert (err.value.field, err.value.reason) == (field, reason)


def test_stop_market_buy_holds_at_its_stop_price_protection() -> None:
    """A stop market buy holds quantity x the unit at the price band above its stop
    price (the market buy rule, from the stop price), and sends that protection price."""
    money = MONEY
    order = validate_new_order(req(type=MARKET, price="", stop_price="70000"), money)
    protection = stop_protection(money, order.stop_price)
    assert protection == 7350000  # 70000 + 5 %
    hold = hold_request(7, money, order, (10, 20))
    assert hold.market_lots == 0 and hold.asset_id == 2
    assert hold.amount == order.quantity * unit(money, protection, 20)
    sell = validate_new_order(req(side=2, type=MARKET, price="", stop_price="70000"), money)
    assert hold_request(7, money, sell, (10, 20)).amount == sell.quantity * money.lot_units
    stop_limit = validate_new_order(req(stop_price="69000"), money)
    assert (hold_request(7, money, stop_limit, (10, 20)).amount
            == stop_limit.quantity * unit(money, stop_limit.price, 20))


def test_an_untriggered_stop_is_not_amended() -> None:
    row = {"order_id": 5, "state": cpb.ORDER_STATE_UNTRIGGERED, "filled": 0, "price": 7000000,
           "quantity": 100}
    with pytest.raises(FailedPrecondition) as err:
        validate_amend(opb.AmendOrderRequest(order_id="5", quantity="0.02"), BTC, row)
    assert err.value.reason == "STOP_NOT_AMENDABLE"
    resting = {**row, "state": cpb.ORDER_STATE_NEW}
    assert validate_amend(opb.AmendOrderRequest(order_id="5", quantity="0.02"), BTC,
                          resting) == (0, 200)
