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
from marketdata_service.candles import CandleRecord
from marketdata_service.l3 import Kind, L3Change, L3Order
from marketdata_service.ticker import WindowStats
from marketdata_service.trades import TradeRecord

_NANOS = 1_000_000_000
_L3_KINDS = {Kind.ADD: md_pb2.L3_CHANGE_KIND_ADD, Kind.CHANGE: md_pb2.L3_CHANGE_KIND_CHANGE,
             Kind.REMOVE: md_pb2.L3_CHANGE_KIND_REMOVE}


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

    __slots__ = ("spec", "price", "qty", "quote")

    def __init__(self, spec: InstrumentSpec) -> None:
        self.spec = spec
        self.price = UnitFormatter(spec.tick_size, spec.price_decimals)
        self.qty = UnitFormatter(spec.lot_size, spec.quantity_decimals)
        # Ticks x lots in the quote asset, exactly (every digit of both steps).
        self.quote = UnitFormatter(spec.tick_size * spec.lot_size,
                                   spec.price_decimals + spec.quantity_decimals)

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

    def snapshot(self, book: L2Book, time_unix_nanos: int, checksum: int = 0
                 ) -> md_pb2.StreamOrderBookResponse:
        return self.snapshot_levels(book.sequence, book.bid_levels(), book.ask_levels(),
                                    time_unix_nanos, checksum)

    def snapshot_levels(self, sequence: int, bids: Iterable[tuple[int, int, int]],
                        asks: Iterable[tuple[int, int, int]], time_unix_nanos: int,
                        checksum: int = 0) -> md_pb2.StreamOrderBookResponse:
        return md_pb2.StreamOrderBookResponse(
            instrument=self.spec.symbol,
            snapshot=md_pb2.OrderBookSnapshot(
                sequence=sequence,
                bids=self.levels(bids),
                asks=self.levels(asks),
                time=timestamp(time_unix_nanos),
                checksum=checksum,
            ),
        )

    def delta(self, first_sequence: int, sequence: int,
              bids: Iterable[tuple[int, int, int]], asks: Iterable[tuple[int, int, int]],
              time_unix_nanos: int, checksum: int = 0) -> md_pb2.StreamOrderBookResponse:
        return md_pb2.StreamOrderBookResponse(
            instrument=self.spec.symbol,
            delta=md_pb2.OrderBookDelta(
                first_sequence=first_sequence,
                sequence=sequence,
                bids=self.levels(bids),
                asks=self.levels(asks),
                time=timestamp(time_unix_nanos),
                checksum=checksum,
            ),
        )

    def book_heartbeat(self, sequence: int, time_unix_nanos: int
                       ) -> md_pb2.StreamOrderBookResponse:
        return md_pb2.StreamOrderBookResponse(
            instrument=self.spec.symbol,
            heartbeat=md_pb2.Heartbeat(sequence=sequence, time=timestamp(time_unix_nanos)))

    # -- L3 ---------------------------------------------------------------------------------

    def l3_order(self, o: L3Order) -> md_pb2.L3Order:
        return md_pb2.L3Order(order_id=str(o.order_id), side=cast(cpb.Side, o.side),
                              price=self.price(o.price), quantity=self.qty(o.quantity),
                              priority=o.priority)

    def l3_snapshot(self, sequence: int, bids: Iterable[L3Order], asks: Iterable[L3Order],
                    time_unix_nanos: int) -> md_pb2.StreamOrderBookL3Response:
        return md_pb2.StreamOrderBookL3Response(
            instrument=self.spec.symbol,
            snapshot=md_pb2.OrderBookL3Snapshot(
                sequence=sequence, bids=[self.l3_order(o) for o in bids],
                asks=[self.l3_order(o) for o in asks], time=timestamp(time_unix_nanos)))

    def l3_change(self, change: L3Change) -> md_pb2.L3Change:
        o = change.order
        if change.kind is Kind.REMOVE:
            order = md_pb2.L3Order(order_id=str(o.order_id), side=cast(cpb.Side, o.side))
        else:
            order = self.l3_order(o)
        return md_pb2.L3Change(kind=_L3_KINDS[change.kind], order=order)

    def l3_delta(self, first_sequence: int, sequence: int, changes: Iterable[L3Change],
                 time_unix_nanos: int) -> md_pb2.StreamOrderBookL3Response:
        return md_pb2.StreamOrderBookL3Response(
            instrument=self.spec.symbol,
            delta=md_pb2.OrderBookL3Delta(
                first_sequence=first_sequence, sequence=sequence,
                changes=[self.l3_change(c) for c in changes], time=timestamp(time_unix_nanos)))

    def l3_heartbeat(self, sequence: int, time_unix_nanos: int
                     ) -> md_pb2.StreamOrderBookL3Response:
        return md_pb2.StreamOrderBookL3Response(
            instrument=self.spec.symbol,
            heartbeat=md_pb2.Heartbeat(sequence=sequence, time=timestamp(time_unix_nanos)))

    # -- ticker and candles -----------------------------------------------------------------

    def ticker(self, sequence: int, time_unix_nanos: int, last: TradeRecord | None,
               best_bid: Level | None, best_ask: Level | None, window: WindowStats | None
               ) -> md_pb2.Ticker:
        t = md_pb2.Ticker(instrument=self.spec.symbol, sequence=sequence,
                          time=timestamp(time_unix_nanos), volume_24h=self.qty(0),
                          quote_volume_24h=self.quote(0))
        if last is not None:
            t.last_price = self.price(last.price)
            t.last_quantity = self.qty(last.quantity)
            t.last_trade_time.CopyFrom(timestamp(last.time_unix_nanos))
        if best_bid is not None:
            t.best_bid = self.price(best_bid.price)
            t.best_bid_quantity = self.qty(best_bid.quantity)
        if best_ask is not None:
            t.best_ask = self.price(best_ask.price)
            t.best_ask_quantity = self.qty(best_ask.quantity)
        if window is not None:
            t.open_24h = self.price(window.open)
            t.high_24h = self.price(window.high)
            t.low_24h = self.price(window.low)
            t.volume_24h = self.qty(window.volume)
            t.quote_volume_24h = self.quote(window.quote_volume)
            t.trade_count_24h = window.trade_count
        return t

    def candle(self, c: CandleRecord) -> md_pb2.Candle:
        return md_pb2.Candle(
            start_time=timestamp(c.start_micros * 1000), open=self.price(c.open),
            high=self.price(c.high), low=self.price(c.low), close=self.price(c.close),
            volume=self.qty(c.volume), quote_volume=self.quote(c.quote_volume),
            trade_count=c.trade_count)

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
