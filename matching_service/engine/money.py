"""The money of one instrument's book: what orders must hold, fees, and the balance
changes a batch makes (docs/money.md).

Amounts are integers in an asset's smallest unit. A trade of ``q`` lots at ``p`` ticks
moves ``q x lot_units`` of the base asset and ``p x q x tick_lot_units`` (the notional)
of the quote: products, never a division. Only fees divide, and they round in the
exchange's favour: a charge up, a rebate towards zero, each fill on its own; a maker's
rebate is at most its trade's taker fee (book.OrderBook._settle), so the fee account
never pays out more than a trade brings in.

What an order holds, in the asset it pays with:

* a sell: its open quantity x ``lot_units``;
* a buy with a budget (a market buy's ``funds``): what is left of the budget;
* any other buy: its open quantity x ``unit(hold_price)``, the most one lot can cost
  at its hold price (the limit, or a market buy's protection price) with the largest
  fee it can pay, rounded up per lot. A fill at ``p <= hold_price`` of ``q`` lots pays
  ``p x q x tick_lot_units`` plus a fee of at most ``ceil(hold_price x q x
  tick_lot_units x bps / 10,000) <= q x`` the per-lot reserve; the rest of what those
  lots held (price improvement, unused fee reserve) goes back to available at once.

So after every change an order holds exactly what its open quantity can still spend,
and whatever it held beyond that is released in the same batch.

``Settlement`` collects a batch's changes of ``available`` and ``held`` per (account,
asset), netted, for the commit (matching_service/store.py) to apply in one update per
row, in (account, asset) order.
"""

from __future__ import annotations

from typing import Final, final

BASIS_POINTS: Final = 10_000
# A balance row's key in Settlement: account_id << ASSET_BITS | asset_id.
ASSET_BITS: Final = 16
ASSET_MASK: Final = (1 << ASSET_BITS) - 1


def fee(notional: int, bps: int) -> int:
    """The fee of ``notional`` at ``bps`` basis points, in the exchange's favour: a
    charge rounded up, a rebate (negative bps) rounded towards zero."""
    return -(-notional * bps // BASIS_POINTS)


@final
class Terms:
    """An instrument's money terms: its assets, the units of a lot and of a tick times a
    lot, and the account fees are paid to."""

    def __init__(self, base_asset: int, quote_asset: int, lot_units: int,
                 tick_lot_units: int, fee_account: int) -> None:
        self.base_asset = base_asset
        self.quote_asset = quote_asset
        self.lot_units = lot_units
        self.tick_lot_units = tick_lot_units
        self.fee_account = fee_account

    def unit(self, price: int, maker_bps: int, taker_bps: int) -> int:
        """What one lot of a buy holds at ``price``: its notional and the largest fee it
        can pay on it."""
        notional = price * self.tick_lot_units
        worst = maker_bps if maker_bps > taker_bps else taker_bps
        return notional + fee(notional, worst) if worst > 0 else notional

    def need(self, side_is_buy: bool, lots: int, hold_price: int, funds: int,
             maker_bps: int, taker_bps: int) -> int:
        """What an order of ``lots`` open lots must hold."""
        if not side_is_buy:
            return lots * self.lot_units
        if funds:
            return funds
        return lots * self.unit(hold_price, maker_bps, taker_bps)

    def affordable(self, price: int, budget: int, taker_bps: int, most: int) -> int:
        """How many lots (at most ``most``) a budget of ``budget`` buys at ``price``,
        the fee included."""
        per_lot = price * self.tick_lot_units
        if per_lot <= 0:
            return 0
        lots = budget * BASIS_POINTS // (per_lot * (BASIS_POINTS + taker_bps))
        if lots > most:
            lots = most
        # The rounded-up fee may take a unit more than the estimate allowed for.
        while lots > 0 and lots * per_lot + fee(lots * per_lot, taker_bps) > budget:
            lots -= 1
        while lots < most and ((lots + 1) * per_lot
                               + fee((lots + 1) * per_lot, taker_bps) <= budget):
            lots += 1
        return lots


@final
class Settlement:
    """A batch's changes of balances, netted per (account, asset)."""

    def __init__(self) -> None:
        self.available: dict[int, int] = {}
        self.held: dict[int, int] = {}

    def move(self, account_id: int, asset_id: int, available: int, held: int) -> None:
        key = account_id << ASSET_BITS | asset_id
        if available:
            self.available[key] = self.available.get(key, 0) + available
        if held:
            self.held[key] = self.held.get(key, 0) + held

    def drain(self) -> tuple[list[int], list[int], list[int], list[int]]:
        """(accounts, assets, available, held) of every row that changed, in (account,
        asset) order (the order the commit locks them in); then empty."""
        available, held = self.available, self.held
        keys = sorted(k for k in set(available) | set(held)
                      if available.get(k, 0) or held.get(k, 0))
        out = ([k >> ASSET_BITS for k in keys], [k & ASSET_MASK for k in keys],
               [available.get(k, 0) for k in keys], [held.get(k, 0) for k in keys])
        self.available = {}
        self.held = {}
        return out
