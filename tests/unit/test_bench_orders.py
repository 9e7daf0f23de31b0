"""bench.orders: the one order maker of the benchmarks (and of tests/e2e/test_outages.py)."""

from __future__ import annotations

import random
from decimal import Decimal

import pytest

from bench.orders import (
    ETH_USD,
    MIXES,
    SEED_MIX,
    OrderMaker,
    decimal_str,
    near_touch_order,
    resting_order,
)
from exchange.common.v1 import common_pb2 as cpb


def test_the_seed_stream_is_pinned():
    # The loadgen and fanout streams of seed 1 (as before bench.orders held the maker).
    maker = OrderMaker(SEED_MIX, 1)
    got = [(r.side, r.type, r.price, r.quantity)
           for r in (maker.create(f"c-{i}") for i in range(4))]
    assert got == [(cpb.SIDE_BUY, cpb.ORDER_TYPE_LIMIT, "70597.50", "0.0616"),
                   (cpb.SIDE_SELL, cpb.ORDER_TYPE_LIMIT, "69100.76", "0.3968"),
                   (cpb.SIDE_BUY, cpb.ORDER_TYPE_MARKET, "", "0.0332"),
                   (cpb.SIDE_BUY, cpb.ORDER_TYPE_LIMIT, "69396.33", "0.0117")]


@pytest.mark.parametrize("name", sorted(MIXES))
def test_orders_stay_in_their_mix(name):
    mix = MIXES[name]
    maker = OrderMaker(mix, 3)
    orders = [maker.create(f"c-{i}") for i in range(2000)]
    mid = Decimal(decimal_str(mix.mid, 2))
    for o in orders:
        assert decimal_str(mix.qty_min, 4) <= o.quantity <= decimal_str(mix.qty_max, 4)
        if o.type == cpb.ORDER_TYPE_LIMIT:
            assert abs(Decimal(o.price) - mid) <= Decimal(decimal_str(mix.half_width, 2))
            if mix.non_crossing:
                assert (Decimal(o.price) < mid) == (o.side == cpb.SIDE_BUY)
    limits = sum(o.type == cpb.ORDER_TYPE_LIMIT for o in orders) / len(orders)
    assert abs(limits - mix.limit_fraction) < 0.05


def test_decimal_strings():
    assert decimal_str(7_000_000, 2) == "70000.00"
    assert decimal_str(5, 4) == "0.0005"
    assert decimal_str(-150, 2) == "-1.50"
    assert decimal_str(12, 0) == "12"


def test_resting_orders_stay_outside_the_seed_band():
    rng = random.Random(1)
    for i in range(500):
        side = cpb.SIDE_BUY if i % 2 == 0 else cpb.SIDE_SELL
        price = Decimal(resting_order(rng, side, f"r-{i}").price)
        assert price < 68_000 if side == cpb.SIDE_BUY else price > 72_000


def test_near_touch_orders_rest_or_cross():
    rng = random.Random(2)
    got = [near_touch_order(rng, f"n-{i}", ETH_USD, 350_000, crossing=i == 2) for i in range(3)]
    assert [(o.instrument, o.side, o.price, o.quantity) for o in got] == [
        ("ETH-USD", cpb.SIDE_BUY, "3497.00", "0.056"),
        ("ETH-USD", cpb.SIDE_SELL, "3524.00", "0.096"),
        ("ETH-USD", cpb.SIDE_SELL, "3461.00", "0.138")]  # a sell below the mid: crosses
