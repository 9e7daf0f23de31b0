"""Conversions at the client edge, shared by the async and sync clients.

Prices and quantities travel as exact decimal strings. The clients accept
``Decimal``, ``str`` or ``int`` and never ``float``: a float such as 0.1 is
not the number it looks like, so passing one raises ``TypeError``. Strings
are checked and sent in plain positional notation ("1E+3" -> "1000"); their
digits are kept as written ("0.010" stays "0.010"). Whether a value is on
the instrument's grid is the server's decision (INVALID_ARGUMENT).
"""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal, InvalidOperation
from typing import Any, cast

from google.protobuf.internal.enum_type_wrapper import EnumTypeWrapper
from google.protobuf.timestamp_pb2 import Timestamp

from exchange.common.v1 import common_pb2
from exchange.marketdata.v1 import marketdata_pb2
from exchange.order.v1 import order_pb2

DecimalLike = Decimal | str | int


def decimal_string(value: DecimalLike, name: str) -> str:
    """``value`` as an exact decimal string; TypeError for float, ValueError for junk."""
    if isinstance(value, float):
        raise TypeError(
            f"{name} must be a Decimal or str, not float ({value!r}): floats are inexact; "
            f"pass Decimal({str(value)!r}) or {str(value)!r}"
        )
    if isinstance(value, bool) or not isinstance(value, Decimal | str | int):
        raise TypeError(f"{name} must be a Decimal or str, not {type(value).__name__}")
    if isinstance(value, Decimal):
        number = value
    else:
        text = str(value).strip()
        try:
            number = Decimal(text)
        except InvalidOperation:
            raise ValueError(f"{name}: {value!r} is not a decimal number") from None
    if not number.is_finite():
        raise ValueError(f"{name}: {value!r} is not a finite number")
    return format(number, "f")


def _enum(value: Any, wrapper: EnumTypeWrapper, prefix: str, name: str,
          aliases: dict[str, int] | None = None) -> int:
    """An enum value from a short name ("buy"), a full name ("SIDE_BUY") or the number."""
    choices = {n.removeprefix(prefix).lower(): v for n, v in wrapper.items() if v != 0}
    choices.update(aliases or {})
    if isinstance(value, int) and not isinstance(value, bool):
        if value in choices.values():
            return value
    elif isinstance(value, str):
        key = value.strip().lower().removeprefix(prefix.lower())
        if key in choices:
            return choices[key]
    raise ValueError(f"{name}: {value!r} is not one of {', '.join(sorted(choices))}")


def short_name(wrapper: EnumTypeWrapper, value: int, prefix: str) -> str:
    """SIDE_BUY -> "buy"; an unknown number is shown as a number."""
    try:
        return wrapper.Name(value).removeprefix(prefix).lower()
    except ValueError:
        return str(value)


def side(value: Any) -> common_pb2.Side:
    return cast(common_pb2.Side, _enum(value, common_pb2.Side, "SIDE_", "side"))


def order_type(value: Any) -> common_pb2.OrderType:
    return cast(common_pb2.OrderType, _enum(value, common_pb2.OrderType, "ORDER_TYPE_", "type"))


def time_in_force(value: Any) -> common_pb2.TimeInForce:
    if value is None:
        return common_pb2.TIME_IN_FORCE_UNSPECIFIED
    return cast(common_pb2.TimeInForce,
                _enum(value, common_pb2.TimeInForce, "TIME_IN_FORCE_", "time_in_force"))


def self_trade_prevention(value: Any) -> common_pb2.SelfTradePrevention:
    """"cancel_resting", "none", "cancel_incoming", "cancel_both", "decrement" (or the
    full name, or the number); None: the server's default (cancel resting)."""
    if value is None:
        return common_pb2.SELF_TRADE_PREVENTION_UNSPECIFIED
    return cast(common_pb2.SelfTradePrevention, _enum(
        value, common_pb2.SelfTradePrevention, "SELF_TRADE_PREVENTION_",
        "self_trade_prevention"))


TimeLike = dt.datetime | str


def timestamp(value: TimeLike, name: str) -> Timestamp:
    """A timezone-aware ``datetime`` or an ISO 8601 string with its offset
    ("2026-12-05T10:00:00Z") as a Timestamp; a time without a zone is refused (which
    zone was meant is a guess)."""
    if isinstance(value, str):
        try:
            value = dt.datetime.fromisoformat(value.strip())
        except ValueError:
            raise ValueError(f"{name}: {value!r} is not an ISO 8601 time") from None
    if not isinstance(value, dt.datetime):
        raise TypeError(f"{name} must be a datetime or an ISO 8601 string")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name}: {value.isoformat()} has no time zone (add one, e.g. "
                         "'Z' or +00:00)")
    ts = Timestamp()
    ts.FromDatetime(value.astimezone(dt.UTC))
    return ts


def gtt_if_expiring(time_in_force_: Any, expire_time: TimeLike | None) -> Any:
    """The time in force to send: "gtt" when an expire_time comes without one."""
    return "gtt" if time_in_force_ is None and expire_time is not None else time_in_force_


def status_filter(value: Any) -> order_pb2.OrderStatusFilter:
    return cast(order_pb2.OrderStatusFilter, _enum(
        value, order_pb2.OrderStatusFilter, "ORDER_STATUS_FILTER_", "status",
        aliases={"all": order_pb2.ORDER_STATUS_FILTER_UNSPECIFIED}))


def _one_id(order_id: str | None, client_order_id: str | None) -> dict[str, str]:
    if bool(order_id) == bool(client_order_id):
        raise ValueError("give exactly one of order_id or client_order_id")
    return {"order_id": str(order_id or ""), "client_order_id": client_order_id or ""}


def new_client_order_id() -> str:
    return uuid.uuid4().hex


def create_order_request(
    instrument: str, side_: Any, quantity: DecimalLike | None, *, price: DecimalLike | None,
    type_: Any, time_in_force_: Any, client_order_id: str | None, post_only: bool,
    funds: DecimalLike | None = None, self_trade_prevention_: Any = None,
    stop_price: DecimalLike | None = None, expire_time: TimeLike | None = None,
) -> order_pb2.CreateOrderRequest:
    kind = order_type(type_)
    if kind == common_pb2.ORDER_TYPE_LIMIT and price is None:
        raise ValueError("a limit order needs a price (or use type='market')")
    if kind == common_pb2.ORDER_TYPE_MARKET and price is not None:
        raise ValueError("a market order takes no price")
    return order_pb2.CreateOrderRequest(
        instrument=instrument,
        side=side(side_),
        type=kind,
        time_in_force=time_in_force(time_in_force_),
        price="" if price is None else decimal_string(price, "price"),
        quantity="" if quantity is None else decimal_string(quantity, "quantity"),
        client_order_id=new_client_order_id() if client_order_id is None else client_order_id,
        post_only=bool(post_only),
        funds="" if funds is None else decimal_string(funds, "funds"),
        self_trade_prevention=self_trade_prevention(self_trade_prevention_),
        stop_price="" if stop_price is None else decimal_string(stop_price, "stop_price"),
        expire_time=None if expire_time is None else timestamp(expire_time, "expire_time"),
    )


def amend_order_request(order_id: str | None, client_order_id: str | None,
                        price: DecimalLike | None, quantity: DecimalLike | None
                        ) -> order_pb2.AmendOrderRequest:
    if price is None and quantity is None:
        raise ValueError("give a new price and/or a new quantity")
    return order_pb2.AmendOrderRequest(
        **_one_id(order_id, client_order_id),
        price="" if price is None else decimal_string(price, "price"),
        quantity="" if quantity is None else decimal_string(quantity, "quantity"))


def cancel_all_orders_request(instrument: str | None, side_: Any
                              ) -> order_pb2.CancelAllOrdersRequest:
    return order_pb2.CancelAllOrdersRequest(
        instrument=instrument or "",
        side=common_pb2.SIDE_UNSPECIFIED if side_ is None else side(side_))


def cancel_order_request(order_id: str | None, client_order_id: str | None
                         ) -> order_pb2.CancelOrderRequest:
    return order_pb2.CancelOrderRequest(**_one_id(order_id, client_order_id))


def get_order_request(order_id: str | None, client_order_id: str | None
                      ) -> order_pb2.GetOrderRequest:
    return order_pb2.GetOrderRequest(**_one_id(order_id, client_order_id))


def list_orders_request(instrument: str | None, status: Any, page_size: int, page_token: str
                        ) -> order_pb2.ListOrdersRequest:
    return order_pb2.ListOrdersRequest(
        instrument=instrument or "", status=status_filter(status), page_size=page_size,
        page_token=page_token or "",
    )


def list_fills_request(instrument: str | None, order_id: str | None, page_size: int,
                       page_token: str) -> order_pb2.ListFillsRequest:
    return order_pb2.ListFillsRequest(
        instrument=instrument or "", order_id=str(order_id or ""), page_size=page_size,
        page_token=page_token or "",
    )


def list_trades_request(instrument: str, page_size: int, page_token: str
                        ) -> marketdata_pb2.ListTradesRequest:
    return marketdata_pb2.ListTradesRequest(
        instrument=instrument, page_size=page_size, page_token=page_token or ""
    )


def page_size_for(page_size: int, limit: int | None) -> int:
    """The page size to ask for when at most ``limit`` items are wanted."""
    if limit is not None and (page_size == 0 or page_size > limit):
        return max(1, min(limit, 1000))
    return page_size


# -- candles --------------------------------------------------------------------------------

CANDLE_INTERVALS = {
    "1m": marketdata_pb2.CANDLE_INTERVAL_ONE_MINUTE,
    "5m": marketdata_pb2.CANDLE_INTERVAL_FIVE_MINUTES,
    "15m": marketdata_pb2.CANDLE_INTERVAL_FIFTEEN_MINUTES,
    "1h": marketdata_pb2.CANDLE_INTERVAL_ONE_HOUR,
    "1d": marketdata_pb2.CANDLE_INTERVAL_ONE_DAY,
}


def candle_interval(value: Any) -> marketdata_pb2.CandleInterval:
    """ "1m", "5m", "15m", "1h", "1d", or the enum's name."""
    if isinstance(value, str) and value.strip().lower() in CANDLE_INTERVALS:
        return CANDLE_INTERVALS[value.strip().lower()]
    return cast(marketdata_pb2.CandleInterval, _enum(value, marketdata_pb2.CandleInterval,
                                                     "CANDLE_INTERVAL_", "interval"))


def list_candles_request(instrument: str, interval: Any, start: TimeLike | None,
                         end: TimeLike | None, page_size: int, page_token: str
                         ) -> marketdata_pb2.ListCandlesRequest:
    request = marketdata_pb2.ListCandlesRequest(
        instrument=instrument, interval=candle_interval(interval), page_size=page_size,
        page_token=page_token or "")
    if start is not None:
        request.start_time.CopyFrom(timestamp(start, "start"))
    if end is not None:
        request.end_time.CopyFrom(timestamp(end, "end"))
    return request
