"""Exact conversion between public decimal strings and internal integers.

Inside the exchange, prices are integer ticks and quantities integer lots.
Decimal strings ("70000.50") exist only at the public edge. Conversion is
exact: a value that is not a whole number of units is rejected, never
rounded, and floats are never involved.
"""

from __future__ import annotations

import re
from decimal import Decimal
from functools import lru_cache

# Plain positional notation only: no sign, no exponent, no spaces, no
# leading dot. At most 18 integer digits keeps every value inside int64.
_DECIMAL_RE = re.compile(r"^([0-9]{1,18})(?:\.([0-9]{1,18}))?\Z")


class DecimalFormatError(ValueError):
    """The string is not a plain non-negative decimal number."""


class OffGridError(ValueError):
    """The value is not a whole number of units (ticks or lots)."""


@lru_cache(maxsize=256)
def decimals_of(step: Decimal) -> int:
    """Digits after the point of a step such as Decimal("0.01") -> 2."""
    exponent = step.normalize().as_tuple().exponent
    assert isinstance(exponent, int)
    return max(0, -exponent)


@lru_cache(maxsize=256)
def _scaled(step: Decimal) -> tuple[int, int]:
    """``step`` as (integer mantissa, decimals): Decimal("0.05") -> (5, 2)."""
    places = decimals_of(step)
    return int(step.scaleb(places)), places


def parse_units(text: str, step: Decimal) -> int:
    """Return ``text / step`` as an int; raise if malformed or off the grid.

    ``step`` is the tick size or lot size, e.g. Decimal("0.01"). Integer
    arithmetic only (this runs for every order).
    """
    m = _DECIMAL_RE.match(text)
    if m is None:
        raise DecimalFormatError(f"{text!r} is not a plain decimal number")
    integer, fraction = m.group(1), m.group(2) or ""
    mantissa, places = _scaled(step)
    fraction = fraction.rstrip("0")
    if len(fraction) > places:
        raise OffGridError(f"{text} is not a multiple of {format_decimal(step)}")
    value = int(integer + fraction.ljust(places, "0"))  # text in units of 10**-places
    units, remainder = divmod(value, mantissa)
    if remainder:
        raise OffGridError(f"{text} is not a multiple of {format_decimal(step)}")
    return units


def format_units(units: int, step: Decimal, places: int) -> str:
    """``units * step`` as a decimal string with exactly ``places`` digits after the point."""
    mantissa, step_places = _scaled(step)
    if step_places > places:
        return format_decimal(Decimal(units) * step, places)
    value = units * mantissa * 10 ** (places - step_places)  # in units of 10**-places
    if places == 0:
        return str(value)
    whole, frac = divmod(value, 10**places)
    return f"{whole}.{frac:0{places}d}"


def format_decimal(value: Decimal, places: int | None = None) -> str:
    """Positional (never exponent) form; fixed ``places`` when given."""
    if places is not None:
        value = value.quantize(Decimal(1).scaleb(-places))
        return f"{value:f}"
    text = f"{value.normalize():f}"
    return text


def average_price(notional_units: int, quantity_units: int, tick: Decimal, places: int) -> str:
    """Volume-weighted average price of fills, rounded half-even to ``places`` digits.

    ``notional_units`` is the sum of price_ticks * quantity_lots.
    """
    if quantity_units == 0:
        return ""
    # price = (notional_ticks_lots / qty_lots) * tick
    value = Decimal(notional_units) * tick / Decimal(quantity_units)
    return format_decimal(value, places)


def parse_decimal(text: str) -> Decimal:
    """A plain non-negative decimal string ("0.01") as a Decimal; DecimalFormatError if it
    is anything else (sign, exponent, spaces, "NaN", more than 18 digits a side)."""
    if _DECIMAL_RE.match(text) is None:
        raise DecimalFormatError(f"{text[:40]!r} is not a plain decimal number")
    return Decimal(text)


def amount_str(units: int, decimals: int) -> str:
    """An amount of an asset (``units`` of 10^-decimals, signed) as a decimal string with
    exactly ``decimals`` places: 123456789, 8 -> "1.23456789"."""
    sign, units = ("-", -units) if units < 0 else ("", units)
    if decimals == 0:
        return f"{sign}{units}"
    whole, frac = divmod(units, 10**decimals)
    return f"{sign}{whole}.{frac:0{decimals}d}"


def parse_amount(text: str, decimals: int, *, signed: bool = False) -> int:
    """A decimal string of an asset's amount in its smallest units (10^-decimals); a
    leading '-' only when ``signed``. Raises DecimalFormatError or OffGridError (more
    places than the asset has)."""
    negative = signed and text.startswith("-")
    units = parse_units(text[1:] if negative else text, Decimal(1).scaleb(-decimals))
    return -units if negative else units
