"""Instrument rules, loaded from PostgreSQL, with exact unit conversion."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

import asyncpg

from exchange.common.v1 import common_pb2 as cpb
from exchange_common.decimals import amount_str, decimals_of, format_units

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
    # Money (docs/money.md): the assets (ids and decimal places; 0 when the instrument's
    # asset is not in ``assets``), fees in basis points, the fee account.
    base_asset_id: int = 0
    quote_asset_id: int = 0
    base_decimals: int = 0
    quote_decimals: int = 0
    maker_fee_bps: int = 0
    taker_fee_bps: int = 0
    fee_account_id: int = 0
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

    @property
    def lot_units(self) -> int:
        """Smallest units of the base asset in one lot (0: not a whole number)."""
        return _whole(self.lot_size, self.base_decimals)

    @property
    def tick_lot_units(self) -> int:
        """Smallest units of the quote asset in one tick times one lot (0: not a whole
        number)."""
        return _whole(self.tick_size * self.lot_size, self.quote_decimals)

    @property
    def has_money(self) -> bool:
        """Whether both assets are known and a lot and a tick times a lot are whole
        numbers of their smallest units (what holds and settlement need)."""
        return bool(self.base_asset_id and self.quote_asset_id and self.lot_units
                    and self.tick_lot_units and self.fee_account_id)

    def quote_str(self, units: int) -> str:
        """An amount of the quote asset, in its smallest units, as a decimal string."""
        return amount_str(units, self.quote_decimals)

    def base_str(self, units: int) -> str:
        """An amount of the base asset, in its smallest units, as a decimal string."""
        return amount_str(units, self.base_decimals)

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
            # (rows read without the money columns, e.g. market data's, have none)
            base_asset_id=row.get("base_asset_id") or 0,
            quote_asset_id=row.get("quote_asset_id") or 0,
            base_decimals=row.get("base_decimals") or 0,
            quote_decimals=row.get("quote_decimals") or 0,
            maker_fee_bps=row.get("maker_fee_bps") or 0,
            taker_fee_bps=row.get("taker_fee_bps") or 0,
            fee_account_id=row.get("fee_account_id") or 0,
        )


# The fee account (an ordinary account, made by migration 0004).
FEE_ACCOUNT = "exchange-fees"

INSTRUMENTS_SELECT = f"""
SELECT i.*, b.asset_id AS base_asset_id, b.decimals AS base_decimals,
       q.asset_id AS quote_asset_id, q.decimals AS quote_decimals,
       (SELECT account_id FROM accounts WHERE name = '{FEE_ACCOUNT}') AS fee_account_id
  FROM instruments i
  LEFT JOIN assets b ON b.symbol = i.base_asset
  LEFT JOIN assets q ON q.symbol = i.quote_asset
"""


def _whole(amount: Decimal, decimals: int) -> int:
    units = amount.scaleb(decimals)
    return int(units) if units == units.to_integral_value() else 0


async def load_instruments(conn: asyncpg.Connection | asyncpg.Pool) -> list[InstrumentSpec]:
    rows = await conn.fetch(INSTRUMENTS_SELECT + " ORDER BY i.instrument_id")
    return [InstrumentSpec.from_row(r) for r in rows]
