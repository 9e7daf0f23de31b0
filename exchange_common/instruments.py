"""Instrument rules, loaded from PostgreSQL, with exact unit conversion."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

import asyncpg

from exchange.common.v1 import common_pb2 as cpb
from exchange_common.decimals import decimals_of, format_units

TEXT_CACHE_SIZE = 100_000

# instruments.status (text in SQL) <-> exchange.common.v1.InstrumentStatus (the same
# numbers as exchange.marketdata.v1.InstrumentStatus).
STATUS_BY_NAME = {
    "trading": cpb.INSTRUMENT_STATUS_TRADING,
    "cancel_only": cpb.INSTRUMENT_STATUS_CANCEL_ONLY,
    "halted": cpb.INSTRUMENT_STATUS_HALTED,
}
STATUS_NAMES = {number: name for name, number in STATUS_BY_NAME.items()}


def _format(texts: dict[int, str], units: int, step: Decimal, places: int) -> str:
    """Format ``units`` and remember it in ``texts`` (emptied when full)."""
    if len(texts) >= TEXT_CACHE_SIZE:
        texts.clear()
    text = texts[units] = format_units(units, step, places)
    return text


@dataclass(frozen=True, slots=True)
class InstrumentSpec:
    instrument_id: int
    symbol: str
    base_asset: str
    quote_asset: str
    tick_size: Decimal
    lot_size: Decimal
    min_quantity: Decimal
    max_quantity: Decimal
    min_notional: Decimal
    price_band_bps: int
    status: str
    price_decimals: int
    quantity_decimals: int
    # Formatted prices and quantities: a book's orders share a few thousand values
    # and formatting is on every answer's path.
    _texts: tuple[dict[int, str], dict[int, str]] = field(
        default_factory=lambda: ({}, {}), compare=False, repr=False)

    @property
    def trading(self) -> bool:
        return self.status == "trading"

    @property
    def status_number(self) -> int:
        """The status as an exchange.common.v1.InstrumentStatus number."""
        return STATUS_BY_NAME[self.status]

    def price_str(self, ticks: int) -> str:
        return self._texts[0].get(ticks) or _format(self._texts[0], ticks, self.tick_size,
                                                    self.price_decimals)

    def qty_str(self, lots: int) -> str:
        return self._texts[1].get(lots) or _format(self._texts[1], lots, self.lot_size,
                                                   self.quantity_decimals)

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> InstrumentSpec:
        tick = Decimal(row["tick_size"])
        lot = Decimal(row["lot_size"])
        return cls(
            instrument_id=row["instrument_id"],
            symbol=row["symbol"],
            base_asset=row["base_asset"],
            quote_asset=row["quote_asset"],
            tick_size=tick,
            lot_size=lot,
            min_quantity=Decimal(row["min_quantity"]),
            max_quantity=Decimal(row["max_quantity"]),
            min_notional=Decimal(row["min_notional"]),
            price_band_bps=row["price_band_bps"],
            status=row["status"],
            price_decimals=decimals_of(tick),
            quantity_decimals=decimals_of(lot),
        )


async def load_instruments(conn: asyncpg.Connection | asyncpg.Pool) -> list[InstrumentSpec]:
    rows = await conn.fetch("SELECT * FROM instruments ORDER BY instrument_id")
    return [InstrumentSpec.from_row(r) for r in rows]
