"""The benchmarks' (and the tests') seeded orders: one maker for every bench.

Prices are integer ticks and quantities integer lots until they become the API's
decimal strings (``decimal_str``); no float ever holds a price or a quantity.

- ``Mix`` / ``MIXES``: the order mixes (the seed scenario: 70% limit GTC / 30% market
  IOC, 0.01-0.5 BTC, limit prices uniform within +-2,000.00 of 70,000.00, both sides);
- ``OrderMaker``: a mix's ``CreateOrderRequest`` stream from a seed (``bench.loadgen``,
  ``bench.fanout``);
- ``resting_order``: a limit order for a deep book, outside the seed band;
- ``near_touch_order``: a limit order a few price units from a mid, resting or
  crossing (``tests/e2e/test_outages.py``).

The ghz configurations (``bench/ghz/*.json``) say the seed mix in ghz's template
language; ``tests/unit/test_ghz_configs.py`` checks them against ``MIXES["seed"]``.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from exchange.common.v1 import common_pb2 as cpb
from exchange.order.v1 import order_pb2 as opb

INSTRUMENT = "BTC-USD"
# BTC-USD as seeded (exchange_common.db.DEFAULT_INSTRUMENTS): tick 0.01, lot 0.0001.
PRICE_DECIMALS = 2
QTY_DECIMALS = 4


@dataclass(frozen=True)
class Market:
    """An instrument's symbol and the decimals of its tick and lot."""

    symbol: str
    price_decimals: int
    qty_decimals: int


BTC_USD = Market("BTC-USD", PRICE_DECIMALS, QTY_DECIMALS)
ETH_USD = Market("ETH-USD", 2, 3)
# The instruments a multi-instrument load spreads over, in order (``--instruments N``
# takes the first N): the two that every exchange seeds (exchange_common.db), then two that
# the benchmark's own exchange creates at set-up with BTC-USD's terms (bench.loadgen.targets
# ``BENCH_INSTRUMENTS``; ``make run`` never has them).
CAP3_USD = Market("CAP3-USD", PRICE_DECIMALS, QTY_DECIMALS)
CAP4_USD = Market("CAP4-USD", PRICE_DECIMALS, QTY_DECIMALS)
BENCH_MARKETS = (BTC_USD, ETH_USD, CAP3_USD, CAP4_USD)


def rescale(units: int, from_decimals: int, to_decimals: int) -> int:
    """``units`` of 10**-from_decimals in units of 10**-to_decimals, rounded down (an
    integer on the coarser grid; never below 1 for a positive input)."""
    if to_decimals >= from_decimals:
        return units * 10 ** (to_decimals - from_decimals)
    return max(1, units // 10 ** (from_decimals - to_decimals)) if units > 0 else 0


def decimal_str(units: int, decimals: int) -> str:
    """``units`` of 10**-decimals as the API's decimal string: (123, 2) -> "1.23"."""
    if decimals == 0:
        return str(units)
    sign, units = ("-", -units) if units < 0 else ("", units)
    whole, frac = divmod(units, 10 ** decimals)
    return f"{sign}{whole}.{frac:0{decimals}d}"


def price_str(cents: int) -> str:
    """BTC-USD ticks (cents) as a price string."""
    return decimal_str(cents, PRICE_DECIMALS)


def qty_str(lots: int) -> str:
    """BTC-USD lots (0.0001) as a quantity string."""
    return decimal_str(lots, QTY_DECIMALS)


@dataclass(frozen=True)
class Mix:
    """The orders of a run. Prices in cents (ticks), quantities in lots."""

    name: str
    limit_fraction: float = 0.7  # the rest are market orders (IOC)
    qty_min: int = 100  # 0.01 BTC
    qty_max: int = 5000  # 0.5 BTC
    mid: int = 7_000_000  # 70,000.00
    half_width: int = 200_000  # +-2,000.00
    # Bids strictly below mid and asks strictly above: limit orders never cross.
    non_crossing: bool = False
    # Fraction of the orders that rest (NEW / PARTIALLY_FILLED on their
    # answer) that are cancelled ``cancel_delay_ms`` after the answer.
    cancel_fraction: float = 0.0
    cancel_delay_ms: float = 100.0


MIXES = {
    # The seed scenario: 70% limit / 30% market, 0.01-0.5 BTC, limit prices
    # uniform within +-2,000 of 70,000, both sides.
    "seed": Mix("seed"),
    # Most orders rest and are cancelled soon after: non-crossing limit orders
    # (90%), a few market orders that trade against them (10%); 90% of the
    # resting orders are cancelled 100 ms after their acknowledgement.
    "cancel-heavy": Mix("cancel-heavy", limit_fraction=0.9, non_crossing=True,
                        cancel_fraction=0.9, cancel_delay_ms=100.0),
}
SEED_MIX = MIXES["seed"]


class OrderMaker:
    """CreateOrderRequests of a mix, from a seeded random stream."""

    def __init__(self, mix: Mix = SEED_MIX, seed: int = 1) -> None:
        self.mix = mix
        self.rng = random.Random(seed)

    def price(self, side: cpb.Side) -> int:
        m = self.mix
        if m.non_crossing:
            if side == cpb.SIDE_BUY:
                return self.rng.randint(m.mid - m.half_width, m.mid - 1)
            return self.rng.randint(m.mid + 1, m.mid + m.half_width)
        return self.rng.randint(m.mid - m.half_width, m.mid + m.half_width)

    def create(self, client_order_id: str,
               market: Market = BTC_USD) -> opb.CreateOrderRequest:
        """The next order of the mix on ``market``: the mix's prices (cents) and
        quantities (BTC-USD lots) put on that instrument's grid (``rescale``), so
        every instrument gets the seed scenario in its own ticks and lots."""
        rng, m = self.rng, self.mix
        side = cpb.SIDE_BUY if rng.random() < 0.5 else cpb.SIDE_SELL
        lots = rng.randint(m.qty_min, m.qty_max)
        if market == BTC_USD:
            qty = qty_str(lots)
        else:
            qty = decimal_str(rescale(lots, QTY_DECIMALS, market.qty_decimals),
                              market.qty_decimals)
        if rng.random() < m.limit_fraction:
            cents = self.price(side)
            price = (price_str(cents) if market == BTC_USD else decimal_str(
                rescale(cents, PRICE_DECIMALS, market.price_decimals), market.price_decimals))
            return opb.CreateOrderRequest(
                instrument=market.symbol, side=side, type=cpb.ORDER_TYPE_LIMIT,
                time_in_force=cpb.TIME_IN_FORCE_GTC, price=price,
                quantity=qty, client_order_id=client_order_id)
        return opb.CreateOrderRequest(
            instrument=market.symbol, side=side, type=cpb.ORDER_TYPE_MARKET,
            time_in_force=cpb.TIME_IN_FORCE_IOC, quantity=qty, client_order_id=client_order_id)


def resting_order(rng: random.Random, side: cpb.Side, client_order_id: str,
                  near: int = 6_800_000, far: int = 6_000_000) -> opb.CreateOrderRequest:
    """A limit order for a deep book: bids between ``far`` and ``near`` (60,000-
    67,999.99), asks mirrored above 70,000 (72,000.01-80,000), outside the
    seed band so that the timed run's prices are not changed by it."""
    if side == cpb.SIDE_BUY:
        cents = rng.randint(far, near - 1)
    else:
        cents = rng.randint(2 * 7_000_000 - near + 1, 2 * 7_000_000 - far)
    return opb.CreateOrderRequest(
        instrument=INSTRUMENT, side=side, type=cpb.ORDER_TYPE_LIMIT,
        time_in_force=cpb.TIME_IN_FORCE_GTC, price=price_str(cents),
        quantity=qty_str(rng.randint(100, 5000)), client_order_id=client_order_id)


def near_touch_order(rng: random.Random, client_order_id: str, market: Market, mid: int,
                     crossing: bool, qty_min: int = 10, qty_max: int = 300
                     ) -> opb.CreateOrderRequest:
    """A GTC limit order near ``mid`` (in ticks) on either side: resting 1-25 whole price
    units away from it (bids below, asks above), or, with ``crossing``, 30-40 units on
    the other side of it (buys high, sells low: it trades with what rests)."""
    side = rng.choice([cpb.SIDE_BUY, cpb.SIDE_SELL])
    lots = rng.randint(qty_min, qty_max)
    offset = -rng.randint(30, 40) if crossing else rng.randint(1, 25)
    ticks = offset * 10 ** market.price_decimals
    price = mid - ticks if side == cpb.SIDE_BUY else mid + ticks
    return opb.CreateOrderRequest(
        instrument=market.symbol, side=side, type=cpb.ORDER_TYPE_LIMIT,
        time_in_force=cpb.TIME_IN_FORCE_GTC,
        price=decimal_str(price, market.price_decimals),
        quantity=decimal_str(lots, market.qty_decimals), client_order_id=client_order_id)
