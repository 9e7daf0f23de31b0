"""The instruments file of ``exchange-migrate --instruments FILE``: instruments to create
when they do not exist (the Helm chart's ``instruments`` value, so that the instruments its
matching groups name exist).

The file is JSON: a list of objects with the chart's (camelCase) keys::

    [{"symbol": "SOL-USD", "base": "SOL", "quote": "USD", "tickSize": "0.001",
      "lotSize": "0.01", "minQuantity": "0.01", "maxQuantity": "100000",
      "minNotional": "1", "priceBandBps": 0, "makerFeeBps": 10, "takerFeeBps": 10}]

``symbol``, ``base``, ``quote``, ``tickSize``, ``lotSize``, ``minQuantity`` and
``maxQuantity`` are required; ``minNotional`` defaults to "0", ``priceBandBps`` to 0 (no
band), the fees to 10 bps. Decimals are strings (a YAML or JSON number could lose digits).
The rules are the admin API's CreateInstrument rules. An object with ``symbol`` alone names
an instrument made elsewhere (the admin API): it must exist.

An instrument that exists (by symbol) is never changed, whatever the file says: change
its rules with the admin API (UpdateInstrument). A new one gets the next free id, status
trading, and an ``admin_audit`` row by ``exchange-migrate``.
"""

from __future__ import annotations

import json
import re
from decimal import Decimal
from typing import Any, NamedTuple

from exchange_common.decimals import DecimalFormatError, parse_decimal

SYMBOL = re.compile(r"^[A-Z0-9][A-Z0-9-]{0,31}\Z")
ASSET = re.compile(r"^[A-Z0-9]{1,16}\Z")
MAX_BAND_BPS = 10_000
MAX_FEE_BPS = 10_000


class InstrumentFileError(ValueError):
    """The file is not a valid instruments file, or names an instrument that is missing."""


class NewInstrument(NamedTuple):
    """One instrument to create; the fields are the columns of ``instruments``."""

    symbol: str
    base_asset: str
    quote_asset: str
    tick_size: Decimal
    lot_size: Decimal
    min_quantity: Decimal
    max_quantity: Decimal
    min_notional: Decimal
    price_band_bps: int
    maker_fee_bps: int
    taker_fee_bps: int


# The file's keys, in the order of NewInstrument's fields.
KEYS = ("symbol", "base", "quote", "tickSize", "lotSize", "minQuantity", "maxQuantity",
        "minNotional", "priceBandBps", "makerFeeBps", "takerFeeBps")
REQUIRED = KEYS[:7]
DEFAULTS: dict[str, Any] = {"minNotional": "0", "priceBandBps": 0, "makerFeeBps": 10,
                            "takerFeeBps": 10}


class InstrumentFile(NamedTuple):
    new: list[NewInstrument]
    # Symbols named alone: made elsewhere, they must exist.
    existing: list[str]


def _decimal(value: Any, key: str, where: str) -> Decimal:
    if not isinstance(value, str):
        raise InstrumentFileError(f"{where}: {key} must be a decimal string such as "
                                  f"\"0.01\", not {value!r}")
    try:
        number = parse_decimal(value)
    except DecimalFormatError as err:
        raise InstrumentFileError(f"{where}: {key}: {err}") from None
    return number


def _integer(value: Any, key: str, where: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InstrumentFileError(f"{where}: {key} must be a whole number from {low} to "
                                  f"{high}, not {value!r}")
    return value


def _instrument(entry: dict[str, Any], where: str) -> NewInstrument:
    missing = [k for k in REQUIRED if k not in entry]
    if missing:
        raise InstrumentFileError(f"{where}: missing {', '.join(missing)} (give every one "
                                  "of them, or the symbol alone for an existing instrument)")
    e = {**DEFAULTS, **entry}
    for key in ("base", "quote"):
        if not isinstance(e[key], str) or not ASSET.match(e[key]):
            raise InstrumentFileError(f"{where}: {key} {e[key]!r} is not an asset "
                                      "(1-16 capital letters and digits)")
    if e["base"] == e["quote"]:
        raise InstrumentFileError(f"{where}: base and quote must differ")
    tick, lot, min_q, max_q, min_n = (
        _decimal(e[k], k, where)
        for k in ("tickSize", "lotSize", "minQuantity", "maxQuantity", "minNotional"))
    for key, step in (("tickSize", tick), ("lotSize", lot), ("minQuantity", min_q)):
        if step <= 0:
            raise InstrumentFileError(f"{where}: {key} must be positive")
    for key, quantity in (("minQuantity", min_q), ("maxQuantity", max_q)):
        if quantity % lot:
            raise InstrumentFileError(f"{where}: {key} {quantity} is not a multiple of "
                                      f"lotSize {lot}")
    if max_q < min_q:
        raise InstrumentFileError(f"{where}: maxQuantity is below minQuantity")
    band = _integer(e["priceBandBps"], "priceBandBps", where, 0, MAX_BAND_BPS)
    taker = _integer(e["takerFeeBps"], "takerFeeBps", where, 0, MAX_FEE_BPS)
    maker = _integer(e["makerFeeBps"], "makerFeeBps", where, -taker, MAX_FEE_BPS)
    return NewInstrument(e["symbol"], e["base"], e["quote"], tick, lot, min_q, max_q, min_n,
                         band, maker, taker)


def parse(text: str) -> InstrumentFile:
    """The instruments of a file's text; InstrumentFileError naming the entry and the key
    for anything wrong."""
    try:
        entries = json.loads(text)
    except json.JSONDecodeError as err:
        raise InstrumentFileError(f"not JSON: {err}") from None
    if not isinstance(entries, list):
        raise InstrumentFileError("must be a JSON list of instruments")
    out = InstrumentFile([], [])
    seen: set[str] = set()
    for i, entry in enumerate(entries):
        where = f"instruments[{i}]"
        if not isinstance(entry, dict):
            raise InstrumentFileError(f"{where}: must be an object, not {entry!r}")
        symbol = entry.get("symbol")
        if not isinstance(symbol, str) or not SYMBOL.match(symbol):
            raise InstrumentFileError(f"{where}: symbol {symbol!r} is not a symbol (capital "
                                      "letters, digits and '-', at most 32)")
        where = f"{where} ({symbol})"
        unknown = sorted(set(entry) - set(KEYS))
        if unknown:
            raise InstrumentFileError(f"{where}: unknown key(s) {', '.join(unknown)}; the "
                                      f"keys are {', '.join(KEYS)}")
        if symbol in seen:
            raise InstrumentFileError(f"{where}: {symbol} is given twice")
        seen.add(symbol)
        if set(entry) == {"symbol"}:
            out.existing.append(symbol)
        else:
            out.new.append(_instrument(entry, where))
    return out
