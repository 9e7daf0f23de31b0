"""Building the public messages from the integer domain state.

Integer ticks and lots become decimal strings here, exactly: ``UnitFormatter`` does it with
integer arithmetic only (the same strings as ``InstrumentSpec.price_str`` / ``qty_str``, a few
times faster, which matters for full snapshots of deep books).
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal
from typing import cast

from google.protobuf.timestamp_pb2 import Timestamp

from exchange.common.v1 import common_pb2 as cpb
from exchange.marketdata.v1 import marketdata_pb2 as md_pb2
from exchange_common.decimals import format_decimal
from exchange_common.instruments import InstrumentSpec
from marketdata_service.book import L2Book, Level
from marketdata_service.trades import TradeRecord

_NANOS = 1_000_000_000


class UnitFormatter:
    """``units * step`` as a string with exactly ``places`` digits after the point."""

    __slots__ = ("_multiplier", "_places", "_shift")

    def __init__(self, step: Decimal, places: int) -> None:
        scaled = step.scaleb(places)
        if scaled != scaled.to_integral_value():
            raise ValueError(f"step {step} has more than {places} decimal places")
        self._multiplier = int(scaled)
        self._places = places

    def __call__(self, units: int) -> str:
        n = units * self._multiplier
        places = self._places
        if places == 0:
            return str(n)
        sign = "-" if n < 0 else ""
        digits = str(-n if n < 0 else n).rjust(places + 1, "0")
        return f"{sign}{digits[:-places]}.{digits[-places:]}"


def timestamp(time_unix_nanos: int) -> Timestamp:
    seconds, nanos = divmod(time_unix_nanos, _NANOS)
    return Timestamp(seconds=seconds, nanos=nanos)


class Wire:
    """Message builders for one instrument."""

    __slots__ = ("spec", "price", "qty")

    def __init__(self, spec: InstrumentSpec) -> None:
        self.spec = spec
        self.price = UnitFormatter(spec.tick_size, spec.price_decimals)
        self.qty = UnitFormatter(spec.lot_size, spec.quantity_decimals)

    def levels(self, levels: Iterable[Level | tuple[int, int, int]]) -> list[md_pb2.PriceLevel]:
        """Price levels; a level with no quantity left (in a delta) has quantity "0"."""
        price, qty, make = self.price, self.qty, md_pb2.PriceLevel
        return [make(price=price(p), quantity=qty(q) if q > 0 else "0",
                     order_count=c if q > 0 else 0) for p, q, c in levels]

    def order_book(self, book: L2Book, depth: int, time_unix_nanos: int
                   ) -> md_pb2.GetOrderBookResponse:
        return md_pb2.GetOrderBookResponse(
            instrument=self.spec.symbol,
            sequence=book.sequence,
            bids=self.levels(book.bid_levels(depth)),
            asks=self.levels(book.ask_levels(depth)),
            time=timestamp(time_unix_nanos),
        )

    def snapshot(self, book: L2Book, time_unix_nanos: int) -> md_pb2.StreamOrderBookResponse:
        return md_pb2.StreamOrderBookResponse(
            instrument=self.spec.symbol,
            snapshot=md_pb2.OrderBookSnapshot(
                sequence=book.sequence,
                bids=self.levels(book.bid_levels()),
                asks=self.levels(book.ask_levels()),
                time=timestamp(time_unix_nanos),
            ),
        )

    def delta(self, first_sequence: int, sequence: int,
              bids: Iterable[tuple[int, int, int]], asks: Iterable[tuple[int, int, int]],
              time_unix_nanos: int) -> md_pb2.StreamOrderBookResponse:
        return md_pb2.StreamOrderBookResponse(
            instrument=self.spec.symbol,
            delta=md_pb2.OrderBookDelta(
                first_sequence=first_sequence,
                sequence=sequence,
                bids=self.levels(bids),
                asks=self.levels(asks),
                time=timestamp(time_unix_nanos),
            ),
        )

    def trade(self, t: TradeRecord) -> md_pb2.Trade:
        return md_pb2.Trade(
            trade_id=str(t.trade_id),
            instrument=self.spec.symbol,
            price=self.price(t.price),
            quantity=self.qty(t.quantity),
            taker_side=cast(cpb.Side, t.taker_side),
            time=timestamp(t.time_unix_nanos),
            sequence=t.sequence,
        )

    def trades(self, trades: Iterable[TradeRecord]) -> md_pb2.StreamTradesResponse:
        return md_pb2.StreamTradesResponse(trades=[self.trade(t) for t in trades])

    def instrument(self) -> md_pb2.Instrument:
        s = self.spec
        return md_pb2.Instrument(
            symbol=s.symbol,
            base_asset=s.base_asset,
            quote_asset=s.quote_asset,
            tick_size=format_decimal(s.tick_size, s.price_decimals),
            lot_size=format_decimal(s.lot_size, s.quantity_decimals),
            min_quantity=format_decimal(s.min_quantity, s.quantity_decimals),
            max_quantity=format_decimal(s.max_quantity, s.quantity_decimals),
            min_notional=format_decimal(s.min_notional, s.price_decimals),
            price_decimals=s.price_decimals,
            quantity_decimals=s.quantity_decimals,
            status=cast(md_pb2.InstrumentStatus, s.status_number),
            price_band_bps=s.price_band_bps,
        )
