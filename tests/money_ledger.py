"""The engine's money as the money tests see it: a Python ledger of balances that takes
the order path's holds and applies each batch's ``Changes.money``, and what an order
needs on hold, computed here with fractions rather than with engine.money.

Importable from every test directory (pytest puts ``tests/``, where the shared conftest
lives, on ``sys.path``).
"""

from __future__ import annotations

import math
from fractions import Fraction

from matching_service.engine import BUY, Terms

Key = tuple[int, int]  # (account, asset)


def expected_fee(notional: int, bps: int) -> int:
    """``notional x bps / 10,000`` in the exchange's favour: a charge up, a rebate
    towards zero."""
    exact = Fraction(notional * bps, 10_000)
    return math.ceil(exact) if bps >= 0 else math.trunc(exact)


def lot_hold(terms: Terms, price: int, maker_bps: int, taker_bps: int) -> int:
    """What one lot of a buy holds at ``price``: its notional and the largest fee on it."""
    notional = price * terms.tick_lot_units
    return notional + expected_fee(notional, max(maker_bps, taker_bps, 0))


def need(terms: Terms, side: int, lots: int, hold_price: int, funds: int = 0,
         maker_bps: int = 0, taker_bps: int = 0) -> int:
    """What an order of ``lots`` open lots must hold (``hold_price``: a buy's limit, or
    a market buy's protection price)."""
    if side != BUY:
        return lots * terms.lot_units
    if funds:
        return funds
    return lots * lot_hold(terms, hold_price, maker_bps, taker_bps)


def pays_with(terms: Terms, side: int) -> int:
    """The asset an order of ``side`` holds."""
    return terms.quote_asset if side == BUY else terms.base_asset


class Ledger:
    """Balances per (account, asset): ``available`` and ``held``, as the database keeps
    them. ``hold`` and ``unhold`` are the order path's (a hold taken before a command
    reaches the book, given back when matching refuses the command); ``apply`` is the
    matching commit's (one batch's netted changes)."""

    def __init__(self, funded: dict[Key, int] | None = None) -> None:
        self.available: dict[Key, int] = dict(funded or {})
        self.held: dict[Key, int] = {}
        self.funded = dict(self.available)

    def hold(self, account: int, asset: int, amount: int) -> bool:
        """Move ``amount`` to held if it is available (False, nothing moved, if not)."""
        key = (account, asset)
        if self.available.get(key, 0) < amount:
            return False
        self.available[key] = self.available.get(key, 0) - amount
        self.held[key] = self.held.get(key, 0) + amount
        return True

    def unhold(self, account: int, asset: int, amount: int) -> None:
        key = (account, asset)
        self.available[key] += amount
        self.held[key] -= amount

    def apply(self, money: tuple[list[int], list[int], list[int], list[int]]) -> None:
        """Apply one batch's changes, checking them: one row per (account, asset), in
        that order, none empty; per asset they sum to zero; no balance goes negative."""
        accounts, assets, available, held = money
        keys = list(zip(accounts, assets, strict=True))
        assert keys == sorted(set(keys)), keys
        assert len(available) == len(held) == len(keys)
        assert all(a or h for a, h in zip(available, held, strict=True))
        per_asset: dict[int, int] = {}
        for (account, asset), a, h in zip(keys, available, held, strict=True):
            per_asset[asset] = per_asset.get(asset, 0) + a + h
            key = (account, asset)
            self.available[key] = self.available.get(key, 0) + a
            self.held[key] = self.held.get(key, 0) + h
        assert all(v == 0 for v in per_asset.values()), per_asset
        assert all(v >= 0 for v in self.available.values()), self.available
        assert all(v >= 0 for v in self.held.values()), self.held

    def changes(self) -> dict[Key, tuple[int, int]]:
        """(available, held) of every balance that is not what it was funded with, as
        differences from its funding."""
        out = {}
        for key in sorted(set(self.available) | set(self.held)):
            a = self.available.get(key, 0) - self.funded.get(key, 0)
            h = self.held.get(key, 0)
            if a or h:
                out[key] = (a, h)
        return out
