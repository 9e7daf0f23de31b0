"""The seeded order stream of one worker."""

from __future__ import annotations

import random

from bench.loadgen.spec import INSTRUMENT, Mix
from exchange.common.v1 import common_pb2 as cpb
from exchange.order.v1 import order_pb2 as opb


def price_str(cents: int) -> str:
    return f"{cents // 100}.{cents % 100:02d}"


def qty_str(lots: int) -> str:
    return f"{lots // 10_000}.{lots % 10_000:04d}"


class OrderMaker:
    """CreateOrderRequests of a mix, from a seeded random stream."""

    def __init__(self, mix: Mix, seed: int) -> None:
        self.mix = mix
        self.rng = random.Random(seed)

    def price(self, side: int) -> int:
        m = self.mix
        if m.non_crossing:
            if side == cpb.SIDE_BUY:
                return self.rng.randint(m.mid - m.half_width, m.mid - 1)
            return self.rng.randint(m.mid + 1, m.mid + m.half_width)
        return self.rng.randint(m.mid - m.half_width, m.mid + m.half_width)

    def create(self, client_order_id: str) -> opb.CreateOrderRequest:
        rng, m = self.rng, self.mix
        side = cpb.SIDE_BUY if rng.random() < 0.5 else cpb.SIDE_SELL
        qty = qty_str(rng.randint(m.qty_min, m.qty_max))
        if rng.random() < m.limit_fraction:
            return opb.CreateOrderRequest(
                instrument=INSTRUMENT, side=side, type=cpb.ORDER_TYPE_LIMIT,
                time_in_force=cpb.TIME_IN_FORCE_GTC, price=price_str(self.price(side)),
                quantity=qty, client_order_id=client_order_id)
        return opb.CreateOrderRequest(
            instrument=INSTRUMENT, side=side, type=cpb.ORDER_TYPE_MARKET,
            time_in_force=cpb.TIME_IN_FORCE_IOC, quantity=qty, client_order_id=client_order_id)


def resting_order(rng: random.Random, side: int, client_order_id: str,
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
