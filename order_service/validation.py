"""Validation of a CreateOrderRequest against its instrument's rules.

Pure functions: a request and an InstrumentSpec in, integer ticks and lots
out, or an InvalidArgument naming the field and a machine-readable reason.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from decimal import Decimal

from exchange.common.v1 import common_pb2 as cpb
from exchange.order.v1 import order_pb2 as opb
from exchange_common.decimals import (
    DecimalFormatError,
    OffGridError,
    format_decimal,
    parse_amount,
    parse_units,
)
from exchange_common.errors import FailedPrecondition, InvalidArgument, clip
from exchange_common.instruments import InstrumentSpec

BUY, SELL = cpb.SIDE_BUY, cpb.SIDE_SELL
LIMIT, MARKET = cpb.ORDER_TYPE_LIMIT, cpb.ORDER_TYPE_MARKET
GTC, IOC, FOK = cpb.TIME_IN_FORCE_GTC, cpb.TIME_IN_FORCE_IOC, cpb.TIME_IN_FORCE_FOK
GTT = cpb.TIME_IN_FORCE_GTT
CANCEL_RESTING = cpb.SELF_TRADE_PREVENTION_CANCEL_RESTING

INT64_MAX = (1 << 63) - 1
MAX_CLIENT_ORDER_ID = 64
# A good-till-time order's expire_time is at most this far ahead (a later one is surely
# a mistake: a unit error, or a GTC in disguise that should say so).
MAX_GTT_SECONDS = 90 * 24 * 3600
NANOS = 1_000_000_000


@dataclass(frozen=True, slots=True)
class ValidOrder:
    side: cpb.Side
    type: cpb.OrderType
    time_in_force: cpb.TimeInForce
    price: int  # ticks; 0 for market orders
    quantity: int  # lots
    client_order_id: str
    post_only: bool
    funds: int = 0  # a market buy's budget, quote units; 0: none
    self_trade_prevention: cpb.SelfTradePrevention = CANCEL_RESTING
    stop_price: int = 0  # ticks; non-zero: a stop (market) or stop-limit (limit) order
    expire_ns: int = 0  # a good-till-time order's expiry, ns since the epoch; 0: none


def check_client_order_id(value: str, field: str = "client_order_id") -> None:
    # Printable ASCII without spaces is '!' (33) to '~' (126); str methods, not a loop.
    if (len(value) > MAX_CLIENT_ORDER_ID or not value.isascii() or not value.isprintable()
            or " " in value):
        raise InvalidArgument(
            f"{field} must be 1-{MAX_CLIENT_ORDER_ID} printable ASCII characters without spaces",
            reason="CLIENT_ORDER_ID_INVALID", field=field)


def _units(text: str, step: Decimal, field: str, what: str) -> int:
    if not text:
        raise InvalidArgument(f"{field} is required", reason=f"{what}_REQUIRED", field=field)
    try:
        units = parse_units(text, step)
    except DecimalFormatError:
        raise InvalidArgument(
            f"{field} {clip(text)!r} is not a plain decimal number (digits, optional '.' and "
            f"decimals; no sign, exponent or spaces; at most 18 digits each side)",
            reason="INVALID_DECIMAL", field=field) from None
    except OffGridError:
        raise InvalidArgument(
            f"{field} {clip(text)} is not a multiple of the {what.lower()} step "
            f"{format_decimal(step)}",
            reason="QUANTITY_OFF_LOT" if what == "QUANTITY" else f"{what}_OFF_TICK",
            field=field) from None
    if units <= 0:
        raise InvalidArgument(f"{field} must be greater than zero",
                              reason=f"{what}_NOT_POSITIVE", field=field)
    if units > INT64_MAX:
        raise InvalidArgument(f"{field} {clip(text)} is out of range",
                              reason=f"{what}_OUT_OF_RANGE", field=field)
    return units


def _check_trading(spec: InstrumentSpec) -> None:
    """New orders and amendments need an instrument that is trading."""
    if spec.status == "halted":
        raise FailedPrecondition(f"trading in {spec.symbol} is halted",
                                 reason="INSTRUMENT_HALTED",
                                 metadata={"instrument": spec.symbol})
    if spec.status != "trading":
        raise FailedPrecondition(f"{spec.symbol} accepts cancels only",
                                 reason="INSTRUMENT_CANCEL_ONLY",
                                 metadata={"instrument": spec.symbol})


def check_cancel_allowed(spec: InstrumentSpec) -> None:
    """Cancels need an instrument that is not halted (cancel-only takes them)."""
    if spec.status == "halted":
        raise FailedPrecondition(f"trading in {spec.symbol} is halted, cancels included",
                                 reason="INSTRUMENT_HALTED",
                                 metadata={"instrument": spec.symbol})


def validate_new_order(req: opb.CreateOrderRequest, spec: InstrumentSpec,
                       now_ns: int | None = None) -> ValidOrder:
    """``now_ns``: the time a good-till-time order's expire_time is checked against
    (default: now)."""
    _check_trading(spec)
    if req.side not in (BUY, SELL):
        raise InvalidArgument("side must be SIDE_BUY or SIDE_SELL", reason="SIDE_INVALID",
                              field="side")
    if req.type not in (LIMIT, MARKET):
        raise InvalidArgument("type must be ORDER_TYPE_LIMIT or ORDER_TYPE_MARKET",
                              reason="ORDER_TYPE_INVALID", field="type")
    tif = req.time_in_force
    if tif not in (cpb.TIME_IN_FORCE_UNSPECIFIED, GTC, IOC, FOK, GTT):
        raise InvalidArgument("time_in_force must be GTC, IOC, FOK or GTT",
                              reason="TIME_IN_FORCE_INVALID", field="time_in_force")
    if req.client_order_id:
        check_client_order_id(req.client_order_id)
    stp = _self_trade_prevention(req.self_trade_prevention)
    stop = (_units(req.stop_price, spec.tick_size, "stop_price", "STOP_PRICE")
            if req.stop_price else 0)
    expire_ns = _expire_ns(req, now_ns)

    funds = 0
    if req.funds:
        if req.type != MARKET or req.side != BUY:
            raise InvalidArgument("funds apply to market buys only", reason="FUNDS_NOT_ALLOWED",
                                  field="funds")
        if tif == FOK:
            raise InvalidArgument("a market buy with funds is IOC (it fills what the funds "
                                  "pay for)", reason="TIME_IN_FORCE_INVALID",
                                  field="time_in_force")
        funds = _amount(req.funds, spec.quote_decimals, "funds")
    if funds and not req.quantity:
        # As much as the funds pay for, up to the instrument's largest order.
        quantity = int(spec.max_quantity / spec.lot_size)
    else:
        quantity = _quantity(req.quantity, spec)

    if req.type == MARKET:
        if req.price:
            raise InvalidArgument("market orders take no price", reason="PRICE_NOT_ALLOWED",
                                  field="price")
        if tif == GTC:
            raise InvalidArgument("market orders cannot rest: use IOC or FOK",
                                  reason="TIME_IN_FORCE_INVALID", field="time_in_force")
        if req.post_only:
            raise InvalidArgument("post_only applies to limit orders only",
                                  reason="POST_ONLY_INVALID", field="post_only")
        return ValidOrder(req.side, MARKET, tif or IOC, 0, quantity, req.client_order_id, False,
                          funds, stp, stop)

    price = _units(req.price, spec.tick_size, "price", "PRICE")
    tif = tif or GTC
    if req.post_only and tif not in (GTC, GTT):
        raise InvalidArgument("post_only orders must be GTC or GTT", reason="POST_ONLY_INVALID",
                              field="post_only")
    _check_notional(price, quantity, spec)
    return ValidOrder(req.side, LIMIT, tif, price, quantity, req.client_order_id, req.post_only,
                      0, stp, stop, expire_ns)


def _self_trade_prevention(value: int) -> cpb.SelfTradePrevention:
    """The order's mode; UNSPECIFIED is the default, CANCEL_RESTING (said explicitly, so
    that the order shows the mode it trades with)."""
    if value not in cpb.SelfTradePrevention.values():
        raise InvalidArgument(
            "self_trade_prevention must be a SelfTradePrevention value (NONE, CANCEL_RESTING, "
            "CANCEL_INCOMING, CANCEL_BOTH or DECREMENT)",
            reason="SELF_TRADE_PREVENTION_INVALID", field="self_trade_prevention")
    return value or CANCEL_RESTING  # type: ignore[return-value]


def _expire_ns(req: opb.CreateOrderRequest, now_ns: int | None) -> int:
    """A good-till-time order's expiry: required with GTT (a limit order's), refused
    otherwise, in the future and at most ``MAX_GTT_SECONDS`` ahead."""
    has_time = req.HasField("expire_time")
    if req.time_in_force != GTT:
        if has_time:
            raise InvalidArgument("expire_time goes with time_in_force GTT only",
                                  reason="EXPIRE_TIME_NOT_ALLOWED", field="expire_time")
        return 0
    if req.type != LIMIT:
        raise InvalidArgument("good-till-time is for limit orders (a market order never "
                              "rests)", reason="TIME_IN_FORCE_INVALID", field="time_in_force")
    if not has_time:
        raise InvalidArgument("time_in_force GTT needs an expire_time",
                              reason="EXPIRE_TIME_REQUIRED", field="expire_time")
    ts = req.expire_time
    if not 0 <= ts.nanos < NANOS:
        raise InvalidArgument("expire_time is not a valid timestamp",
                              reason="EXPIRE_TIME_INVALID", field="expire_time")
    expire_ns = ts.seconds * NANOS + ts.nanos
    now = time.time_ns() if now_ns is None else now_ns
    if expire_ns <= now:
        raise InvalidArgument("expire_time must be in the future",
                              reason="EXPIRE_TIME_PAST", field="expire_time")
    if expire_ns > now + MAX_GTT_SECONDS * NANOS:
        raise InvalidArgument(f"expire_time must be at most {MAX_GTT_SECONDS // 86400} days "
                              "ahead", reason="EXPIRE_TIME_TOO_FAR", field="expire_time")
    return expire_ns


def validate_amend(req: opb.AmendOrderRequest, spec: InstrumentSpec, row) -> tuple[int, int]:
    """(new price in ticks or 0, new total quantity in lots or 0) for an amend of the
    order in ``row``; whether it is still open is the matching engine's to say."""
    _check_trading(spec)
    if row["state"] == cpb.ORDER_STATE_UNTRIGGERED:
        raise FailedPrecondition(
            f"order {row['order_id']} is a stop waiting for its trigger: cancel it and place "
            "a new one (an untriggered stop cannot be amended)",
            reason="STOP_NOT_AMENDABLE", metadata={"order_id": str(row["order_id"])})
    if not req.price and not req.quantity:
        raise InvalidArgument("give a new price and/or a new quantity", reason="AMEND_EMPTY",
                              field="price")
    price = _units(req.price, spec.tick_size, "price", "PRICE") if req.price else 0
    quantity = _quantity(req.quantity, spec) if req.quantity else 0
    if quantity and quantity <= row["filled"]:
        raise InvalidArgument(
            f"quantity {clip(req.quantity)} must be more than the filled quantity "
            f"{spec.qty_str(row['filled'])}", reason="QUANTITY_NOT_ABOVE_FILLED",
            field="quantity")
    _check_notional(price or row["price"], quantity or row["quantity"], spec)
    return price, quantity


def _amount(text: str, decimals: int, field: str) -> int:
    """A positive amount of an asset with ``decimals`` places, in its smallest units."""
    try:
        units = parse_amount(text, decimals)
    except DecimalFormatError:
        raise InvalidArgument(f"{field} {clip(text)!r} is not a plain decimal number",
                              reason="INVALID_DECIMAL", field=field) from None
    except OffGridError:
        raise InvalidArgument(f"{field} {clip(text)} has more than {decimals} decimal places",
                              reason="AMOUNT_TOO_PRECISE", field=field) from None
    if units <= 0 or units > INT64_MAX:
        raise InvalidArgument(f"{field} must be greater than zero and at most "
                              f"{INT64_MAX} smallest units", reason="AMOUNT_OUT_OF_RANGE",
                              field=field)
    return units


def _quantity(text: str, spec: InstrumentSpec) -> int:
    quantity = _units(text, spec.lot_size, "quantity", "QUANTITY")
    qty_decimal = quantity * spec.lot_size
    if qty_decimal < spec.min_quantity:
        raise InvalidArgument(
            f"quantity {clip(text)} is below the minimum {format_decimal(spec.min_quantity)}",
            reason="QUANTITY_BELOW_MIN", field="quantity")
    if qty_decimal > spec.max_quantity:
        raise InvalidArgument(
            f"quantity {clip(text)} is above the maximum {format_decimal(spec.max_quantity)}",
            reason="QUANTITY_ABOVE_MAX", field="quantity")
    return quantity


def _check_notional(price: int, quantity: int, spec: InstrumentSpec) -> None:
    notional = price * spec.tick_size * quantity * spec.lot_size
    if notional < spec.min_notional:
        raise InvalidArgument(
            f"order value {format_decimal(notional)} is below the minimum notional "
            f"{format_decimal(spec.min_notional)}", reason="NOTIONAL_BELOW_MIN", field="quantity")
