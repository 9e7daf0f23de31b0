"""Building public proto messages from matching reports and database rows."""

from __future__ import annotations

import datetime as dt

from google.protobuf.timestamp_pb2 import Timestamp

from exchange.common.v1 import common_pb2 as cpb
from exchange.matching.v1 import matching_pb2 as mpb
from exchange.order.v1 import order_pb2 as opb
from exchange_common.decimals import average_price
from exchange_common.instruments import InstrumentSpec

OPEN_STATES = (cpb.ORDER_STATE_NEW, cpb.ORDER_STATE_PARTIALLY_FILLED,
               cpb.ORDER_STATE_UNTRIGGERED)
AVERAGE_PRICE_EXTRA_DIGITS = 4


def ts_from_ns(ns: int) -> dict[str, int]:
    """A google.protobuf.Timestamp as the dict a message constructor takes (cheaper
    than building a Timestamp that the constructor would copy)."""
    seconds, nanos = divmod(ns, 1_000_000_000)
    return {"seconds": seconds, "nanos": nanos}


def ts_from_datetime(value: dt.datetime) -> Timestamp:
    t = Timestamp()
    t.FromDatetime(value)
    return t


def _avg(spec: InstrumentSpec, notional: int, filled: int) -> str:
    return average_price(notional, filled, spec.tick_size,
                         spec.price_decimals + AVERAGE_PRICE_EXTRA_DIGITS)


def order_from_report(spec: InstrumentSpec, report: mpb.OrderReport) -> opb.Order:
    """The order as matching committed it: a report carries the whole order."""
    remaining = report.quantity - report.filled if report.state in OPEN_STATES else 0
    return opb.Order(
        order_id=str(report.order_id), client_order_id=report.client_order_id,
        instrument=spec.symbol, side=report.side, type=report.type,
        time_in_force=report.time_in_force,
        price=spec.price_str(report.price) if report.price else "",
        quantity=spec.qty_str(report.quantity),
        filled_quantity=spec.qty_str(report.filled), remaining_quantity=spec.qty_str(remaining),
        average_fill_price=_avg(spec, int(report.filled_notional), report.filled),
        state=report.state, post_only=report.post_only, reason=report.reason,
        create_time=ts_from_ns(report.create_time_unix_nanos),
        update_time=ts_from_ns(report.update_time_unix_nanos),
        funds=spec.quote_str(report.funds) if report.funds else "",
        held=_held(spec, report.side, report.held),
        stop_price=spec.price_str(report.stop_price) if report.stop_price else "",
        expire_time=(ts_from_ns(report.expire_time_unix_nanos)
                     if report.expire_time_unix_nanos else None),
        self_trade_prevention=report.self_trade_prevention,
    )


def _held(spec: InstrumentSpec, side: int, held: int) -> str:
    """What an order holds, in its asset (quote for a buy, base for a sell)."""
    return spec.quote_str(held) if side == cpb.SIDE_BUY else spec.base_str(held)


def fills_from_report(spec: InstrumentSpec, order: opb.Order,
                      report: mpb.OrderReport) -> list[opb.Fill]:
    return [opb.Fill(trade_id=str(f.trade_id), order_id=order.order_id,
                     client_order_id=order.client_order_id, instrument=spec.symbol,
                     side=order.side, price=spec.price_str(f.price),
                     quantity=spec.qty_str(f.quantity), liquidity=f.liquidity,
                     time=ts_from_ns(f.time_unix_nanos), fee=spec.quote_str(f.fee),
                     fee_asset=spec.quote_asset)
            for f in report.fills]


def order_from_row(spec: InstrumentSpec, row) -> opb.Order:
    state = row["state"]
    remaining = row["quantity"] - row["filled"] if state in OPEN_STATES else 0
    return opb.Order(
        order_id=str(row["order_id"]), client_order_id=row["client_order_id"],
        instrument=spec.symbol, side=row["side"], type=row["order_type"],
        time_in_force=row["time_in_force"],
        price=spec.price_str(row["price"]) if row["price"] else "",
        quantity=spec.qty_str(row["quantity"]), filled_quantity=spec.qty_str(row["filled"]),
        remaining_quantity=spec.qty_str(remaining),
        average_fill_price=_avg(spec, int(row["filled_notional"]), row["filled"]),
        state=state, post_only=row["post_only"], reason=row["reason"],
        create_time=ts_from_datetime(row["created_at"]),
        update_time=ts_from_datetime(row["updated_at"]),
        funds=spec.quote_str(row["funds"]) if row["funds"] else "",
        held=_held(spec, row["side"], row["held"]),
        stop_price=spec.price_str(row["stop_price"]) if row["stop_price"] else "",
        expire_time=ts_from_datetime(row["expire_at"]) if row["expire_at"] else None,
        self_trade_prevention=row["self_trade_prevention"],
    )


def fill_from_row(spec: InstrumentSpec, order: opb.Order | None, row) -> opb.Fill:
    """A fill row from Queries.list_fills (with order columns) or order_fills (with ``order``)."""
    if order is not None:
        order_id, client_order_id, side = order.order_id, order.client_order_id, order.side
    else:
        order_id, client_order_id, side = str(row["order_id"]), row["client_order_id"], row["side"]
    return opb.Fill(trade_id=str(row["trade_id"]), order_id=order_id,
                    client_order_id=client_order_id, instrument=spec.symbol, side=side,
                    price=spec.price_str(row["price"]), quantity=spec.qty_str(row["quantity"]),
                    liquidity=row["liquidity"], time=ts_from_datetime(row["created_at"]),
                    fee=spec.quote_str(row["fee"]), fee_asset=spec.quote_asset)


# journal.kind (matching_service/engine/enums.py) -> the public kind of an order update.
UPDATE_KINDS = {
    1: opb.ORDER_UPDATE_KIND_ACCEPTED,  # EV_ACCEPTED
    2: opb.ORDER_UPDATE_KIND_FILL,  # EV_TRADE
    3: opb.ORDER_UPDATE_KIND_CANCELLED,  # EV_CANCELLED
    4: opb.ORDER_UPDATE_KIND_EXPIRED,  # EV_EXPIRED
    5: opb.ORDER_UPDATE_KIND_REJECTED,  # EV_REJECTED
    6: opb.ORDER_UPDATE_KIND_AMENDED,  # EV_AMENDED
    8: opb.ORDER_UPDATE_KIND_TRIGGERED,  # EV_TRIGGERED
    9: opb.ORDER_UPDATE_KIND_SELF_TRADE_PREVENTED,  # EV_SELF_TRADE
    10: opb.ORDER_UPDATE_KIND_EXPIRED,  # EV_TIMED_OUT
}


def update_from_row(spec: InstrumentSpec, row) -> opb.OrderUpdate:
    """An order update from a row of order_service/updates.py's UPDATES_SELECT: the
    order's unchanging columns from ``orders`` (``o``), what the update changed from
    ``order_updates``, a fill's from ``trades``."""
    order_row = dict(row["o"])
    for name in ("state", "price", "quantity", "filled", "filled_notional", "reason", "held"):
        order_row[name] = row[name]
    order_row["updated_at"] = row["created_at"]
    order = order_from_row(spec, order_row)
    update = opb.OrderUpdate(sequence=row["sequence"],
                             kind=UPDATE_KINDS.get(row["kind"], opb.ORDER_UPDATE_KIND_UNSPECIFIED),
                             order=order, time=ts_from_datetime(row["created_at"]))
    if row["trade_id"] is not None:
        update.fill.CopyFrom(fill_from_row(spec, order, {
            "trade_id": row["trade_id"], "price": row["trade_price"],
            "quantity": row["trade_quantity"], "liquidity": row["liquidity"],
            "created_at": row["created_at"], "fee": row["fee"]}))
    return update
